//! Sample-rate conversion of mono 20 ms frames (rubato's synchronous FFT resampler with both
//! sides fixed, so 960 samples at 48 kHz always become exactly 160 at 8 kHz).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};

use super::{MediaError, samples_per_frame};

/// Converts 20 ms mono frames from one rate to another; equal rates pass through untouched.
pub struct Resampler {
    input_rate: u32,
    output_rate: u32,
    /// `None` when the rates are equal.
    inner: Option<Fft<f32>>,
    input_scratch: Vec<f32>,
    output_scratch: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("input_rate", &self.input_rate)
            .field("output_rate", &self.output_rate)
            .finish()
    }
}

fn check_rate(rate: u32) -> Result<(), MediaError> {
    // A 20 ms frame must be a whole number of samples.
    if rate == 0 || !rate.is_multiple_of(50) {
        return Err(MediaError::UnsupportedRate(rate));
    }
    Ok(())
}

impl Resampler {
    pub fn new(input_rate: u32, output_rate: u32) -> Result<Self, MediaError> {
        check_rate(input_rate)?;
        check_rate(output_rate)?;
        let input_len = samples_per_frame(input_rate);
        let output_len = samples_per_frame(output_rate);
        let inner = if input_rate == output_rate {
            None
        } else {
            let fft = Fft::<f32>::new(
                input_rate as usize,
                output_rate as usize,
                input_len,
                1,
                FixedSync::Both,
            )?;
            // FixedSync::Both rounds the chunk to the rates' common block; for rates that are
            // multiples of 50 Hz one 20 ms frame is such a block, so this must hold.
            if fft.input_frames_next() != input_len || fft.output_frames_next() != output_len {
                return Err(MediaError::UnsupportedRate(input_rate));
            }
            Some(fft)
        };
        Ok(Self {
            input_rate,
            output_rate,
            inner,
            input_scratch: vec![0.0; input_len],
            output_scratch: vec![0.0; output_len],
        })
    }

    pub fn input_rate(&self) -> u32 {
        self.input_rate
    }

    pub fn output_rate(&self) -> u32 {
        self.output_rate
    }

    /// Samples per input frame (20 ms at the input rate).
    pub fn input_frame_len(&self) -> usize {
        samples_per_frame(self.input_rate)
    }

    /// Samples per output frame (20 ms at the output rate).
    pub fn output_frame_len(&self) -> usize {
        samples_per_frame(self.output_rate)
    }

    /// Delay the conversion adds, in output samples (0 for pass-through).
    pub fn delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |fft| fft.output_delay())
    }

    /// Converts one 20 ms frame, appending exactly [`Self::output_frame_len`] samples to `out`.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) -> Result<(), MediaError> {
        let expected = self.input_frame_len();
        if input.len() != expected {
            return Err(MediaError::FrameSize {
                expected,
                got: input.len(),
            });
        }
        let Some(fft) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return Ok(());
        };
        for (scratch, &sample) in self.input_scratch.iter_mut().zip(input) {
            *scratch = f32::from(sample) / 32768.0;
        }
        let input_len = self.input_scratch.len();
        let output_len = self.output_scratch.len();
        let input_adapter =
            InterleavedSlice::new(&self.input_scratch[..], 1, input_len).map_err(|_| {
                MediaError::FrameSize {
                    expected,
                    got: input_len,
                }
            })?;
        let mut output_adapter =
            InterleavedSlice::new_mut(&mut self.output_scratch[..], 1, output_len).map_err(
                |_| MediaError::FrameSize {
                    expected: output_len,
                    got: output_len,
                },
            )?;
        fft.process_into_buffer(&input_adapter, &mut output_adapter, None)?;
        out.extend(self.output_scratch.iter().map(|&sample| {
            (sample * 32768.0)
                .round()
                .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tones::{SineGenerator, dominant_frequency, rms};

    #[test]
    fn equal_rates_pass_through_unchanged() {
        let mut resampler = Resampler::new(8000, 8000).unwrap();
        let input: Vec<i16> = (0..160).map(|n| n * 100).collect();
        let mut out = Vec::new();
        resampler.process(&input, &mut out).unwrap();
        assert_eq!(out, input);
        assert_eq!(resampler.delay(), 0);
    }

    #[test]
    fn frame_sizes_are_exact_for_common_rates() {
        for (from, to) in [
            (48_000, 8_000),
            (8_000, 48_000),
            (44_100, 48_000),
            (16_000, 44_100),
        ] {
            let mut resampler = Resampler::new(from, to).unwrap();
            let mut out = Vec::new();
            for _ in 0..3 {
                resampler
                    .process(&vec![0; resampler.input_frame_len()], &mut out)
                    .unwrap();
            }
            assert_eq!(
                out.len(),
                3 * resampler.output_frame_len(),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn a_440hz_tone_survives_48k_to_8k_and_back() {
        let mut down = Resampler::new(48_000, 8_000).unwrap();
        let mut up = Resampler::new(8_000, 48_000).unwrap();
        let mut generator = SineGenerator::new(440.0, 48_000, 10_000.0);
        let mut narrow = Vec::new();
        let mut restored = Vec::new();
        for _ in 0..25 {
            let mut frame = Vec::new();
            generator.fill(&mut frame, 960);
            let start = narrow.len();
            down.process(&frame, &mut narrow).unwrap();
            up.process(narrow.get(start..).unwrap(), &mut restored)
                .unwrap();
        }
        assert_eq!(narrow.len(), 25 * 160);
        assert_eq!(restored.len(), 25 * 960);
        let steady = restored.get(10 * 960..).unwrap();
        let frequency = dominant_frequency(steady, 48_000);
        assert!((frequency - 440.0).abs() < 1.0, "found {frequency} Hz");
        // Level survives within 1 dB.
        let level = rms(steady);
        assert!((level / 7071.0 - 1.0).abs() < 0.12, "rms {level}");
        assert!((dominant_frequency(narrow.get(1600..).unwrap(), 8000) - 440.0).abs() < 1.0);
    }

    #[test]
    fn rejects_rates_without_whole_20ms_frames_and_wrong_lengths() {
        assert!(matches!(
            Resampler::new(11_025, 8_000),
            Err(MediaError::UnsupportedRate(11_025))
        ));
        assert!(Resampler::new(8_000, 0).is_err());
        let mut resampler = Resampler::new(48_000, 8_000).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            resampler.process(&[0; 160], &mut out),
            Err(MediaError::FrameSize {
                expected: 960,
                got: 160
            })
        ));
    }
}
