//! Call recording: one stereo WAV per recording, left what we send (after echo cancellation,
//! noise suppression and gain; silence while muted or on hold), right what we play.
//!
//! Frames come in pairs per 20 ms tick (sent, then played); a frame at another rate than the
//! file's (the codec changed mid-call) is resampled to it.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavSpec, WavWriter};

use super::resample::Resampler;
use super::{MediaError, samples_per_frame};

/// A stereo WAV being written.
pub struct CallRecorder {
    path: PathBuf,
    rate: u32,
    writer: WavWriter<BufWriter<File>>,
    /// The sent frame of this tick, waiting for its played partner.
    sent: Vec<i16>,
    /// To the file's rate, when the call's rate differs.
    sent_resampler: Option<Resampler>,
    played_resampler: Option<Resampler>,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for CallRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallRecorder")
            .field("path", &self.path)
            .field("rate", &self.rate)
            .finish()
    }
}

impl CallRecorder {
    /// Creates `path` (and its directory) for audio at `rate`.
    pub fn create(path: &Path, rate: u32) -> Result<Self, MediaError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(hound::Error::IoError)?;
        }
        let spec = WavSpec {
            channels: 2,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let file = BufWriter::new(File::create(path).map_err(hound::Error::IoError)?);
        Ok(CallRecorder {
            path: path.to_path_buf(),
            rate,
            writer: WavWriter::new(file, spec)?,
            sent: Vec::with_capacity(samples_per_frame(rate)),
            sent_resampler: None,
            played_resampler: None,
            scratch: Vec::with_capacity(samples_per_frame(rate)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn to_file_rate(
        resampler: &mut Option<Resampler>,
        file_rate: u32,
        rate: u32,
        frame: &[i16],
        out: &mut Vec<i16>,
    ) {
        out.clear();
        if rate == file_rate {
            out.extend_from_slice(frame);
            return;
        }
        if resampler
            .as_ref()
            .is_none_or(|r| r.input_rate() != rate || r.output_rate() != file_rate)
        {
            *resampler = Resampler::new(rate, file_rate).ok();
        }
        let ok = resampler
            .as_mut()
            .is_some_and(|r| r.process(frame, out).is_ok());
        if !ok {
            out.clear();
            out.resize(samples_per_frame(file_rate), 0);
        }
    }

    /// This tick's sent frame at `rate` (the left channel).
    pub fn write_sent(&mut self, frame: &[i16], rate: u32) {
        let mut sent = std::mem::take(&mut self.sent);
        Self::to_file_rate(&mut self.sent_resampler, self.rate, rate, frame, &mut sent);
        self.sent = sent;
    }

    /// This tick's played frame at `rate` (the right channel); writes the pair.
    pub fn write_played(&mut self, frame: &[i16], rate: u32) -> Result<(), MediaError> {
        let mut played = std::mem::take(&mut self.scratch);
        Self::to_file_rate(
            &mut self.played_resampler,
            self.rate,
            rate,
            frame,
            &mut played,
        );
        let len = played.len().max(self.sent.len());
        let mut result = Ok(());
        for i in 0..len {
            let left = self.sent.get(i).copied().unwrap_or(0);
            let right = played.get(i).copied().unwrap_or(0);
            if let Err(e) = self
                .writer
                .write_sample(left)
                .and_then(|()| self.writer.write_sample(right))
            {
                result = Err(e.into());
                break;
            }
        }
        self.sent.clear();
        self.scratch = played;
        result
    }

    /// Writes the header's lengths and closes the file.
    pub fn finalize(self) -> Result<PathBuf, MediaError> {
        self.writer.finalize()?;
        Ok(self.path)
    }
}

/// `$XDG_DATA_HOME/sipterm/recordings/call-<call>-<UTC time>.wav`: where a recording goes when
/// the user names no file.
pub fn default_recording_path(call: u64, unix_seconds: u64) -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "sipterm")?;
    Some(
        dirs.data_dir()
            .join("recordings")
            .join(format!("call-{call}-{}.wav", utc_stamp(unix_seconds))),
    )
}

/// `YYYYMMDD-HHMMSS` in UTC (days to civil date: Howard Hinnant's algorithm).
fn utc_stamp(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64;
    let rest = unix_seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_times() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_709_210_096), "20240229-123456");
    }

    #[test]
    fn left_is_sent_right_is_played_at_the_file_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/call.wav");
        let mut recorder = CallRecorder::create(&path, 8_000).unwrap();
        for _ in 0..10 {
            recorder.write_sent(&[1000; 160], 8_000);
            recorder.write_played(&[-2000; 160], 8_000).unwrap();
        }
        // The codec changed to 48 kHz: resampled to the file's 8 kHz.
        for _ in 0..10 {
            recorder.write_sent(&[0; 960], 48_000);
            recorder.write_played(&[0; 960], 48_000).unwrap();
        }
        assert_eq!(recorder.finalize().unwrap(), path);
        let mut reader = hound::WavReader::open(&path).unwrap();
        let spec = reader.spec();
        assert_eq!((spec.channels, spec.sample_rate), (2, 8_000));
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(samples.len(), 2 * 160 * 20);
        assert_eq!((samples[0], samples[1]), (1000, -2000));
    }
}
