//! WAV files as the audio device of headless runs and tests: a source that yields 20 ms mono
//! frames at the rate the caller wants, a sink that records 16-bit mono frames, and null
//! variants of both. The caller paces them (one frame per tick); nothing here reads a clock.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use hound::{SampleFormat, WavReader, WavSpec, WavWriter};

use super::resample::Resampler;
use super::{MediaError, samples_per_frame};

/// Channel counts above this are refused: downmixing reads every channel of every frame, and no
/// sane voice prompt has more.
const MAX_CHANNELS: u16 = 8;

/// What a source's last frame was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    /// The frame carries file audio (possibly padded with silence at its end).
    Playing,
    /// The file is exhausted; the frame is silence, and so will every later one be.
    Ended,
}

/// A readable stream that hound can use; boxed so that files and in-memory buffers share a type.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// Reads a WAV file (any rate that is a multiple of 50 Hz, any channel count up to 8, integer
/// PCM up to 32 bits or 32-bit float) as 20 ms mono frames at a requested rate.
pub struct WavSource {
    reader: WavReader<Box<dyn ReadSeek>>,
    channels: usize,
    format: SampleFormat,
    bits_per_sample: u16,
    file_frame: Vec<i16>,
    resampler: Resampler,
    file_exhausted: bool,
    /// Frames of silence still to push through the resampler so its delayed tail comes out.
    flush_frames_left: usize,
}

impl std::fmt::Debug for WavSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("spec", &self.reader.spec())
            .field("resampler", &self.resampler)
            .field("file_exhausted", &self.file_exhausted)
            .finish()
    }
}

impl WavSource {
    /// Opens `path`; frames come out at `output_rate`.
    pub fn open(path: impl AsRef<Path>, output_rate: u32) -> Result<Self, MediaError> {
        let file = BufReader::new(File::open(path).map_err(hound::Error::IoError)?);
        Self::from_reader(Box::new(file), output_rate)
    }

    pub fn from_reader(reader: Box<dyn ReadSeek>, output_rate: u32) -> Result<Self, MediaError> {
        let reader = WavReader::new(reader)?;
        let spec = reader.spec();
        if spec.channels == 0 || spec.channels > MAX_CHANNELS {
            return Err(MediaError::WavFormat("channel count must be 1 to 8"));
        }
        match (spec.sample_format, spec.bits_per_sample) {
            (SampleFormat::Int, 1..=32) | (SampleFormat::Float, 32) => {}
            _ => {
                return Err(MediaError::WavFormat(
                    "samples must be integer PCM or 32-bit float",
                ));
            }
        }
        let resampler = Resampler::new(spec.sample_rate, output_rate)?;
        let flush_frames_left = resampler.delay().div_ceil(resampler.output_frame_len());
        Ok(Self {
            channels: usize::from(spec.channels),
            format: spec.sample_format,
            bits_per_sample: spec.bits_per_sample,
            file_frame: Vec::with_capacity(resampler.input_frame_len()),
            resampler,
            reader,
            file_exhausted: false,
            flush_frames_left,
        })
    }

    /// The file's own sample rate.
    pub fn file_rate(&self) -> u32 {
        self.reader.spec().sample_rate
    }

    /// Samples per frame this source appends (20 ms at the requested rate).
    pub fn frame_len(&self) -> usize {
        self.resampler.output_frame_len()
    }

    /// Appends one 20 ms frame to `out`. At the end of the file the last frame is padded with
    /// silence; afterwards frames are silence and the status is [`SourceStatus::Ended`].
    pub fn next_frame(&mut self, out: &mut Vec<i16>) -> Result<SourceStatus, MediaError> {
        if self.file_exhausted {
            if self.flush_frames_left == 0 {
                out.extend(std::iter::repeat_n(0, self.frame_len()));
                return Ok(SourceStatus::Ended);
            }
            self.flush_frames_left -= 1;
        }
        self.read_file_frame()?;
        self.resampler.process(&self.file_frame, out)?;
        Ok(SourceStatus::Playing)
    }

    /// Fills `file_frame` with one 20 ms mono frame at the file's rate.
    fn read_file_frame(&mut self) -> Result<(), MediaError> {
        let wanted = self.resampler.input_frame_len();
        self.file_frame.clear();
        let channels = self.channels;
        let mut accumulator = 0.0f32;
        let mut channel = 0;
        if !self.file_exhausted {
            // Scale integers of any width to ±1.0, then average the channels.
            let scale = 1.0 / (1u64 << (self.bits_per_sample.clamp(1, 32) - 1)) as f32;
            let mut push = |value: f32, frame: &mut Vec<i16>| {
                accumulator += value;
                channel += 1;
                if channel == channels {
                    let mono = accumulator / channels as f32;
                    frame.push((mono * 32768.0).round().clamp(-32768.0, 32767.0) as i16);
                    accumulator = 0.0;
                    channel = 0;
                }
            };
            let samples_wanted = wanted * channels;
            match self.format {
                SampleFormat::Float => {
                    for sample in self.reader.samples::<f32>().take(samples_wanted) {
                        push(sample?, &mut self.file_frame);
                    }
                }
                // The common case (16-bit mono, what sipterm itself writes) skips the float
                // round trip: it was most of the media task's own CPU after libopus.
                SampleFormat::Int if self.bits_per_sample == 16 && channels == 1 => {
                    for sample in self.reader.samples::<i16>().take(samples_wanted) {
                        self.file_frame.push(sample?);
                    }
                }
                SampleFormat::Int => {
                    for sample in self.reader.samples::<i32>().take(samples_wanted) {
                        push(sample? as f32 * scale, &mut self.file_frame);
                    }
                }
            }
            if self.file_frame.len() < wanted {
                self.file_exhausted = true;
            }
        }
        self.file_frame.resize(wanted, 0);
        Ok(())
    }
}

/// Where a call's outgoing audio comes from when there is no sound card.
#[derive(Debug)]
pub enum FrameSource {
    Wav(Box<WavSource>),
    /// Endless silence of `frame_len` samples per frame.
    Null {
        frame_len: usize,
    },
}

impl FrameSource {
    /// A silent source for `rate` Hz.
    pub fn null(rate: u32) -> Self {
        Self::Null {
            frame_len: samples_per_frame(rate),
        }
    }

    pub fn next_frame(&mut self, out: &mut Vec<i16>) -> Result<SourceStatus, MediaError> {
        match self {
            Self::Wav(source) => source.next_frame(out),
            Self::Null { frame_len } => {
                out.extend(std::iter::repeat_n(0, *frame_len));
                Ok(SourceStatus::Playing)
            }
        }
    }
}

/// A writable stream that hound can use.
pub trait WriteSeek: Write + Seek + Send {}
impl<T: Write + Seek + Send> WriteSeek for T {}

/// Records 16-bit mono frames at a fixed rate.
pub struct WavSink {
    writer: WavWriter<Box<dyn WriteSeek>>,
    samples_written: u64,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink")
            .field("spec", &self.writer.spec())
            .field("samples_written", &self.samples_written)
            .finish()
    }
}

impl WavSink {
    pub fn create(path: impl AsRef<Path>, rate: u32) -> Result<Self, MediaError> {
        let file = BufWriter::new(File::create(path).map_err(hound::Error::IoError)?);
        Self::from_writer(Box::new(file), rate)
    }

    pub fn from_writer(writer: Box<dyn WriteSeek>, rate: u32) -> Result<Self, MediaError> {
        let spec = WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        Ok(Self {
            writer: WavWriter::new(writer, spec)?,
            samples_written: 0,
        })
    }

    pub fn write_frame(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        let mut writer = self.writer.get_i16_writer(samples.len() as u32);
        for &sample in samples {
            writer.write_sample(sample);
        }
        writer.flush()?;
        self.samples_written += samples.len() as u64;
        Ok(())
    }

    /// Records `count` samples of silence, for gaps where nothing was played.
    pub fn write_silence(&mut self, count: usize) -> Result<(), MediaError> {
        const CHUNK: [i16; 960] = [0; 960];
        let mut left = count;
        while left > 0 {
            let now = left.min(CHUNK.len());
            self.write_frame(CHUNK.get(..now).unwrap_or_default())?;
            left -= now;
        }
        Ok(())
    }

    pub fn samples_written(&self) -> u64 {
        self.samples_written
    }

    /// Writes the final header lengths. Dropping the sink does this too, but silently.
    pub fn finalize(self) -> Result<(), MediaError> {
        Ok(self.writer.finalize()?)
    }
}

/// Where a call's incoming audio goes when there is no sound card.
#[derive(Debug)]
pub enum FrameSink {
    Wav(Box<WavSink>),
    /// Discards audio, counting samples so that tests can still check the flow.
    Null {
        samples_discarded: u64,
    },
}

impl FrameSink {
    pub fn null() -> Self {
        Self::Null {
            samples_discarded: 0,
        }
    }

    pub fn write_frame(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        match self {
            Self::Wav(sink) => sink.write_frame(samples),
            Self::Null { samples_discarded } => {
                *samples_discarded += samples.len() as u64;
                Ok(())
            }
        }
    }

    pub fn write_silence(&mut self, count: usize) -> Result<(), MediaError> {
        match self {
            Self::Wav(sink) => sink.write_silence(count),
            Self::Null { samples_discarded } => {
                *samples_discarded += count as u64;
                Ok(())
            }
        }
    }

    /// Finishes the file (no-op for the null sink).
    pub fn finalize(self) -> Result<(), MediaError> {
        match self {
            Self::Wav(sink) => sink.finalize(),
            Self::Null { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tones::{SineGenerator, dominant_frequency, rms};
    use std::io::Cursor;

    fn wav_bytes(
        spec: WavSpec,
        write: impl FnOnce(&mut WavWriter<&mut Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        {
            let mut writer = WavWriter::new(&mut cursor, spec).unwrap();
            write(&mut writer);
            writer.finalize().unwrap();
        }
        cursor.into_inner()
    }

    fn read_all(mut source: WavSource, max_frames: usize) -> (Vec<i16>, usize) {
        let mut out = Vec::new();
        for frame in 0..max_frames {
            if source.next_frame(&mut out).unwrap() == SourceStatus::Ended {
                return (out, frame);
            }
        }
        panic!("source did not end within {max_frames} frames");
    }

    #[test]
    fn mono_16bit_at_the_same_rate_comes_out_unchanged_then_ends() {
        let spec = WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let samples: Vec<i16> = (0..400).map(|n| (n * 50) as i16).collect();
        let bytes = wav_bytes(spec, |writer| {
            for &s in &samples {
                writer.write_sample(s).unwrap();
            }
        });
        let source = WavSource::from_reader(Box::new(Cursor::new(bytes)), 8000).unwrap();
        let (out, frames_played) = read_all(source, 10);
        // 400 samples = 2.5 frames: three frames of audio, the last padded, then the end.
        assert_eq!(frames_played, 3);
        assert_eq!(out.len(), 4 * 160);
        assert_eq!(out.get(..400).unwrap(), &samples[..]);
        assert!(out.get(400..).unwrap().iter().all(|&s| s == 0));
    }

    #[test]
    fn stereo_float_44k1_is_downmixed_and_resampled() {
        let spec = WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 32,
            sample_format: SampleFormat::Float,
        };
        // Left carries a 440 Hz tone, right is silent: the downmix halves the level.
        let bytes = wav_bytes(spec, |writer| {
            for n in 0..44_100 {
                let value = 0.5 * (std::f32::consts::TAU * 440.0 * n as f32 / 44_100.0).sin();
                writer.write_sample(value).unwrap();
                writer.write_sample(0.0f32).unwrap();
            }
        });
        let source = WavSource::from_reader(Box::new(Cursor::new(bytes)), 8000).unwrap();
        let (out, frames_played) = read_all(source, 100);
        assert!((50..=52).contains(&frames_played), "{frames_played}");
        let middle = out.get(2000..6000).unwrap();
        assert!((dominant_frequency(middle, 8000) - 440.0).abs() < 1.0);
        // 0.25 full scale peak -> rms 0.177 * 32768 = 5793.
        assert!(
            (rms(middle) / 5793.0 - 1.0).abs() < 0.1,
            "rms {}",
            rms(middle)
        );
    }

    #[test]
    fn eight_bit_and_24_bit_integers_are_scaled_to_16_bits() {
        for bits in [8u16, 24] {
            let spec = WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: bits,
                sample_format: SampleFormat::Int,
            };
            let half_scale = 1i32 << (bits - 2);
            let bytes = wav_bytes(spec, |writer| {
                for _ in 0..160 {
                    writer.write_sample(half_scale).unwrap();
                }
            });
            let mut source = WavSource::from_reader(Box::new(Cursor::new(bytes)), 8000).unwrap();
            let mut out = Vec::new();
            source.next_frame(&mut out).unwrap();
            assert!(
                out.iter().all(|&s| s == 16384),
                "{bits} bits: {:?}",
                out.first()
            );
        }
    }

    #[test]
    fn rejects_garbage_and_unsupported_rates() {
        let garbage = Box::new(Cursor::new(b"RIFF\x04\0\0\0WAVEjunk".to_vec()));
        assert!(WavSource::from_reader(garbage, 8000).is_err());
        let spec = WavSpec {
            channels: 1,
            sample_rate: 11_025,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let bytes = wav_bytes(spec, |writer| writer.write_sample(0i16).unwrap());
        assert!(matches!(
            WavSource::from_reader(Box::new(Cursor::new(bytes)), 8000),
            Err(MediaError::UnsupportedRate(11_025))
        ));
    }

    #[test]
    fn sink_records_frames_and_silence_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let mut sink = FrameSink::Wav(Box::new(WavSink::create(&path, 48_000).unwrap()));
        let mut generator = SineGenerator::new(1000.0, 48_000, 8000.0);
        let mut frame = Vec::new();
        generator.fill(&mut frame, 960);
        sink.write_frame(&frame).unwrap();
        sink.write_silence(1500).unwrap();
        sink.write_frame(&frame).unwrap();
        sink.finalize().unwrap();

        let mut reader = WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().sample_rate, 48_000);
        assert_eq!(reader.spec().channels, 1);
        let written: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(written.len(), 960 + 1500 + 960);
        assert_eq!(written.get(..960).unwrap(), &frame[..]);
        assert!(written.get(960..2460).unwrap().iter().all(|&s| s == 0));

        // The source reads back what the sink wrote.
        let source = WavSource::open(&path, 48_000).unwrap();
        let (read_back, _) = read_all(source, 10);
        assert_eq!(read_back.get(..written.len()).unwrap(), &written[..]);
    }

    #[test]
    fn null_source_and_sink() {
        let mut source = FrameSource::null(16_000);
        let mut out = Vec::new();
        assert_eq!(source.next_frame(&mut out).unwrap(), SourceStatus::Playing);
        assert_eq!(out, vec![0; 320]);
        let mut sink = FrameSink::null();
        sink.write_frame(&out).unwrap();
        sink.write_silence(100).unwrap();
        assert!(matches!(
            sink,
            FrameSink::Null {
                samples_discarded: 420
            }
        ));
    }
}
