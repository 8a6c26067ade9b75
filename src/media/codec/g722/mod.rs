//! G.722 at 64 kbit/s (mode 1): 16 kHz audio in, one byte per two samples out, 160 bytes per
//! 20 ms frame. The ADPCM itself is SpanDSP's public-domain code in Rust (`libg722`, vendored);
//! this is the wrapper behind sipterm's codec traits, with a simple concealment for lost
//! frames (the last frame again, fading out).

mod libg722;

use super::{Decoder, Encoder};
use crate::media::MediaError;
use libg722::Bitrate;

/// PCM samples per 20 ms frame (16 kHz).
const FRAME: usize = 320;

pub struct G722Encoder {
    inner: libg722::encoder::Encoder,
}

impl G722Encoder {
    pub fn new() -> Self {
        G722Encoder {
            inner: libg722::encoder::Encoder::new(Bitrate::Mode1_64000, false, false),
        }
    }
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder for G722Encoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), MediaError> {
        // Two samples make one code byte: any even length works (ptime other than 20 ms).
        if pcm.is_empty() || !pcm.len().is_multiple_of(2) {
            return Err(MediaError::FrameSize {
                expected: FRAME,
                got: pcm.len(),
            });
        }
        out.extend_from_slice(&self.inner.encode(pcm));
        Ok(())
    }
}

pub struct G722Decoder {
    inner: libg722::decoder::Decoder,
    /// The last good frame and how often it was repeated since (concealment).
    last: Vec<i16>,
    repeats: u32,
}

impl G722Decoder {
    pub fn new() -> Self {
        G722Decoder {
            inner: libg722::decoder::Decoder::new(Bitrate::Mode1_64000, false, false),
            last: vec![0; FRAME],
            repeats: 0,
        }
    }
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder for G722Decoder {
    fn decode(&mut self, payload: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), MediaError> {
        match payload {
            Some(payload) => {
                let pcm = self.inner.decode(payload);
                out.extend_from_slice(&pcm);
                self.last = pcm;
                self.repeats = 0;
            }
            None => {
                // Repeat the last frame at half the level each time: a click-free fade.
                self.repeats += 1;
                let shift = self.repeats.min(15);
                out.extend(self.last.iter().map(|&s| s >> shift));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tones::{dominant_frequency, rms};

    fn tone(frequency: f32, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                (8000.0 * (2.0 * std::f32::consts::PI * frequency * i as f32 / 16_000.0).sin())
                    as i16
            })
            .collect()
    }

    #[test]
    fn a_6_khz_tone_survives_the_round_trip() {
        // 6 kHz is above what narrowband (G.711) can carry at all.
        let input = tone(6000.0, 16_000);
        let mut encoder = G722Encoder::new();
        let mut decoder = G722Decoder::new();
        let mut output = Vec::new();
        for frame in input.chunks_exact(FRAME) {
            let mut payload = Vec::new();
            encoder.encode(frame, &mut payload).unwrap();
            assert_eq!(payload.len(), 160);
            decoder.decode(Some(&payload), &mut output).unwrap();
        }
        let tail = &output[8000..];
        assert!((dominant_frequency(tail, 16_000) - 6000.0).abs() < 50.0);
        assert!(rms(tail) > 0.5 * rms(&input[8000..]), "rms {}", rms(tail));
    }

    #[test]
    fn lost_frames_fade_out() {
        let mut decoder = G722Decoder::new();
        let mut encoder = G722Encoder::new();
        let mut payload = Vec::new();
        encoder.encode(&tone(1000.0, FRAME), &mut payload).unwrap();
        let mut out = Vec::new();
        decoder.decode(Some(&payload), &mut out).unwrap();
        let mut lost = Vec::new();
        decoder.decode(None, &mut lost).unwrap();
        decoder.decode(None, &mut lost).unwrap();
        assert_eq!(lost.len(), 2 * FRAME);
        assert!(rms(&lost[FRAME..]) < rms(&lost[..FRAME]));
    }
}
