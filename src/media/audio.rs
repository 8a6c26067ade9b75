//! Sound devices through cpal: the only cpal code in sipterm.
//!
//! A dedicated thread owns the cpal streams (they are not `Send` on every host) and keeps them
//! alive until the `AudioIo` is dropped. The realtime callbacks only convert samples and move
//! them through lock-free `rtrb` rings: capture turns any device format (rate, channels, sample
//! type) into mono `f32` at the device rate; playback pops mono samples, copies them to every
//! channel and plays silence on underrun. Callbacks never lock, allocate, log or print; they
//! count overruns, underruns and errors in atomics.
//!
//! The media task side (`AudioIo`) reads and writes 20 ms frames at the codec rate, resampling
//! with [`Resampler`] outside the callbacks. A device that fails (cannot open, goes away
//! mid-call) turns into a [`Warning`] and that direction continues as the null device.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{BufferSize, ErrorKind, FromSample, SampleFormat, SizedSample, StreamConfig};
use rtrb::{Consumer, Producer, RingBuffer};

use super::backlog::{BacklogTrim, RecentMax};
use super::resample::Resampler;
use super::{MediaError, samples_per_frame};

/// Ring capacity: half a second of mono samples at the device rate.
const RING_MS: u32 = 500;
/// Device buffer asked for: 5 ms (PulseAudio's default is 2 s buffers, see tests/data/pulse).
const BUFFER_MS: u32 = 5;
/// Capture: a frame is read once it is all there (the media task waits a few milliseconds for
/// it when the send tick comes first). What the ring holds beyond it, lastingly (over
/// `TRIM_WINDOW` ticks), is latency: it is cut down to `CAPTURE_SLACK_MS` or one device
/// period, whichever is larger (the next chunk must still find what it needs). Measured on
/// PulseAudio null sinks: 5 ms of slack left 6-7 ms waiting on average, 1 ms leaves 2.
const CAPTURE_SLACK_MS: u32 = 1;
/// Playback: the callback starts (again) once a frame and the slack are queued; a lasting
/// backlog before our write beyond the slack is cut from the frame being written, a lasting
/// shortfall padded back (`PLAYBACK_PAD_TOLERANCE_MS`). The slack is what absorbs
/// a late media tick before the device runs dry: it starts at `PLAYBACK_SLACK_MS` and each
/// underrun widens it by `PLAYBACK_SLACK_STEP_MS`, up to `PLAYBACK_SLACK_MAX_MS`.
/// 7 ms: with the shortfall padded back, 10 ms mostly added latency, but 5 ms let a late tick
/// run the device dry about once in 10 minutes (measured on PulseAudio null sinks).
const PLAYBACK_SLACK_MS: u32 = 7;
const PLAYBACK_SLACK_STEP_MS: u32 = 5;
const PLAYBACK_SLACK_MAX_MS: u32 = 40;
/// A playback backlog below the slack by more than this for a whole window is padded back,
/// by stretching the frames written by at most `PLAYBACK_PAD_PER_FRAME` of their length (a
/// device clock faster than ours; PulseAudio's null sinks here run about 0.1 % fast).
const PLAYBACK_PAD_TOLERANCE_MS: u32 = 3;
const PLAYBACK_PAD_PER_FRAME: usize = 40;
/// One second of 20 ms ticks: the window over which a backlog must last to be cut.
const TRIM_WINDOW: u32 = 50;
/// How long a backend may take to set up a stream.
const BUILD_TIMEOUT: Duration = Duration::from_secs(3);
/// Backend error warnings at most once per this many `poll_warning` calls (20 ms each: 10 s).
const BACKEND_WARN_EVERY: u64 = 500;

/// Something the user should read: a device could not be used or misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("cannot start the audio thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the audio thread ended before opening the devices")]
    ThreadGone,
}

/// Counters the callbacks update (one set per direction).
#[derive(Debug, Default)]
pub struct SideStatus {
    /// Samples dropped because a ring was full (capture) or ignored (playback backlog).
    pub overruns: AtomicU64,
    /// Callbacks that found too little audio and played silence.
    pub underruns: AtomicU64,
    /// `BackendError`s: noisy but not fatal (the ALSA `pulse` plugin fires hundreds a second).
    pub backend_errors: AtomicU64,
    /// Callbacks so far: a stream whose count stops moving has stalled (a device unplugged
    /// without an error from the backend).
    pub callbacks: AtomicU64,
    /// The backend's latency at the last callback, in microseconds: capture time to callback
    /// (capture), callback to playback time (playback). 0 when the backend does not say.
    pub device_latency_us: AtomicU64,
    /// The largest callback since the media task last took it, in frames: the device's
    /// period, which the backend may choose larger than `BUFFER_MS` (PulseAudio's null sinks
    /// deliver 20 ms at a time).
    pub period_frames: AtomicU64,
    /// Playback: samples to gather before starting (again after an underrun): a frame and the
    /// slack, so that the device finds the slack there before every write. Set by the writer.
    prime_samples: AtomicU64,
    /// Set once by a fatal stream error; the message is in `failure`.
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
}

impl SideStatus {
    /// Called at the start of every callback (realtime: atomics only): counts it and keeps
    /// the device period and the backend's latency.
    fn note_callback(&self, frames: usize, latency: Duration) {
        self.callbacks.fetch_add(1, Ordering::Relaxed);
        self.period_frames
            .fetch_max(frames as u64, Ordering::Relaxed);
        self.device_latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    fn on_error(&self, error: cpal::Error) {
        match error.kind() {
            ErrorKind::BackendError | ErrorKind::Xrun => {
                self.backend_errors.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                if !self.failed.swap(true, Ordering::AcqRel)
                    && let Ok(mut slot) = self.failure.lock()
                {
                    *slot = Some(error.to_string());
                }
            }
        }
    }
}

/// Audio captured from a device: mono samples at the device rate.
pub struct CaptureReader {
    consumer: Consumer<f32>,
    rate: u32,
    trim: BacklogTrim,
    /// The device's recent period.
    period: RecentMax,
    name: String,
    status: Arc<SideStatus>,
}

/// Audio for a device: mono samples at the device rate.
pub struct PlaybackWriter {
    producer: Producer<f32>,
    /// What the callback actually played, sample for sample (silence on underrun): the echo
    /// canceller's reference.
    played: Consumer<f32>,
    rate: u32,
    trim: BacklogTrim,
    /// The device's recent period.
    period: RecentMax,
    /// Underruns already answered by widening the slack.
    underruns_seen: u64,
    /// Samples of excess backlog still to cut: only the frame being written can be cut, so
    /// a backlog longer than a frame (a stalled sound server) goes over the next ticks.
    owed: usize,
    name: String,
    status: Arc<SideStatus>,
}

impl CaptureReader {
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// A whole frame is waiting: `read_frame` would not return silence.
    pub fn frame_ready(&self) -> bool {
        self.consumer.slots() >= samples_per_frame(self.rate)
    }

    /// Replaces `out` with one 20 ms frame at the device rate; silence (and `false`) while the
    /// device has not delivered enough yet.
    pub fn read_frame(&mut self, out: &mut Vec<i16>) -> bool {
        let frame = samples_per_frame(self.rate);
        out.clear();
        let mut available = self.consumer.slots();
        let period = self
            .period
            .observe(self.status.period_frames.swap(0, Ordering::Relaxed) as usize);
        self.trim.keep_at_least(frame + period);
        // A stall, a late start or a device clock faster than ours leaves more than a frame
        // waiting: that is latency, cut once it lasted a second (`media::backlog`).
        let skip = self.trim.observe(available);
        if skip > 0 {
            if let Ok(chunk) = self.consumer.read_chunk(skip.min(available)) {
                chunk.commit_all();
            }
            self.status
                .overruns
                .fetch_add(skip as u64, Ordering::Relaxed);
            available = self.consumer.slots();
        }
        if available < frame {
            self.trim.reset();
            out.resize(frame, 0);
            return false;
        }
        if let Ok(chunk) = self.consumer.read_chunk(frame) {
            out.extend(chunk.into_iter().map(to_i16));
        }
        out.resize(frame, 0);
        true
    }
}

impl PlaybackWriter {
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Queues one frame (device rate) for playback; drops it when the device is far behind.
    pub fn write_frame(&mut self, samples: &[i16]) {
        let backlog = self.producer.buffer().capacity() - self.producer.slots();
        let underruns = self.status.underruns.load(Ordering::Relaxed);
        if underruns > self.underruns_seen {
            self.underruns_seen = underruns;
            // The ring ran dry: nothing is left to cut.
            self.owed = 0;
            let ms = |ms: u32| samples_per_frame(self.rate) * ms as usize / 20;
            self.trim
                .widen(ms(PLAYBACK_SLACK_STEP_MS), ms(PLAYBACK_SLACK_MAX_MS));
            tracing::info!(
                device = %self.name,
                underruns,
                slack_ms = self.trim.target() * 20 / samples_per_frame(self.rate).max(1),
                "sound playback ran dry: slack widened"
            );
        }
        let period = self
            .period
            .observe(self.status.period_frames.swap(0, Ordering::Relaxed) as usize);
        self.trim.keep_at_least(period);
        // A (re)start waits for a frame and the slack: the backlog the trim keeps is then
        // really there, not just allowed.
        self.status.prime_samples.store(
            (samples.len() + self.trim.target()) as u64,
            Ordering::Relaxed,
        );
        // What waits in the ring before this frame is latency beyond the slack; a lasting
        // excess is cut from this frame's start, and the next frames' when it is longer
        // (`media::backlog`).
        self.owed += self.trim.observe(backlog);
        let cut = self.owed.min(samples.len());
        self.owed -= cut;
        if cut > 0 {
            self.status
                .overruns
                .fetch_add(cut as u64, Ordering::Relaxed);
        }
        let samples = samples.get(cut..).unwrap_or_default();
        // A lasting shortfall comes back as a frame stretched by a few samples (at most
        // 1/PLAYBACK_PAD_PER_FRAME of it: a pitch change of 2.5 % for 20 ms, not a gap).
        let pad = if cut == 0 {
            self.trim
                .take_deficit(samples.len() / PLAYBACK_PAD_PER_FRAME)
        } else {
            0
        };
        let length = samples.len() + pad;
        if self.producer.slots() < length {
            self.status
                .overruns
                .fetch_add(samples.len() as u64, Ordering::Relaxed);
            return;
        }
        if let Ok(mut chunk) = self.producer.write_chunk_uninit(length) {
            let (a, b) = chunk.as_mut_slices();
            for (index, slot) in a.iter_mut().chain(b.iter_mut()).enumerate() {
                slot.write(stretched(samples, length, index) / 32768.0);
            }
            // SAFETY: the loop wrote every slot of the chunk (`length` of them).
            unsafe { chunk.commit_all() };
        }
    }
}

/// Sample `index` of `samples` stretched to `length` (linear interpolation; the samples
/// themselves when the lengths match).
fn stretched(samples: &[i16], length: usize, index: usize) -> f32 {
    let sample = |i: usize| samples.get(i).map_or(0.0, |&s| f32::from(s));
    if length == samples.len() || length < 2 {
        return sample(index);
    }
    let position = index as f64 * (samples.len() - 1) as f64 / (length - 1) as f64;
    let before = position.floor() as usize;
    let fraction = (position - before as f64) as f32;
    sample(before) * (1.0 - fraction) + sample(before + 1) * fraction
}

fn to_i16(s: f32) -> i16 {
    (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Keeps one cpal stream alive on its own thread (streams are not `Send` on every host) until
/// dropped.
struct StreamKeeper {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StreamKeeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Opens a stream with `open` on a new thread and keeps it there. `Ok(None)`: the `null` device.
fn keep_on_thread<T: Send + 'static>(
    open: impl FnOnce() -> Opened<T> + Send + 'static,
) -> Result<Option<(T, StreamKeeper)>, String> {
    let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("sipterm-audio".into())
        .spawn(move || match open() {
            Ok(Some((stream, end))) => {
                let _ = ready_tx.send(Ok(Some(end)));
                // Keep the stream alive until the keeper drops its sender.
                let _ = stop_rx.recv();
                drop(stream);
            }
            Ok(None) => {
                let _ = ready_tx.send(Ok(None));
            }
            Err(message) => {
                let _ = ready_tx.send(Err(message));
            }
        })
        .map_err(|e| format!("cannot start the audio thread: {e}"))?;
    let keeper = StreamKeeper {
        stop: Some(stop),
        thread: Some(thread),
    };
    match ready_rx.recv() {
        Ok(Ok(Some(end))) => Ok(Some((end, keeper))),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(message)) => Err(message),
        Err(_) => Err("the audio thread ended before opening the device".into()),
    }
}

/// An open capture device: its ring and the thread that keeps its stream.
pub struct Capture {
    reader: CaptureReader,
    /// Polls since it opened, and since the callback count last moved (a stall detector).
    polls: u32,
    still_polls: u32,
    last_callbacks: u64,
    _keeper: StreamKeeper,
}

/// An open playback device: its rings and the thread that keeps its stream.
pub struct Playback {
    writer: PlaybackWriter,
    polls: u32,
    still_polls: u32,
    last_callbacks: u64,
    _keeper: StreamKeeper,
}

impl Capture {
    /// Opens `name` (see [`AudioDevice::open`]); `Ok(None)` for `null`. Blocks up to seconds.
    pub fn open(name: &str) -> Result<Option<Capture>, String> {
        let name = name.to_owned();
        Ok(
            keep_on_thread(move || open_capture(&name))?.map(|(reader, keeper)| Capture {
                reader,
                polls: 0,
                still_polls: 0,
                last_callbacks: 0,
                _keeper: keeper,
            }),
        )
    }

    pub fn name(&self) -> &str {
        &self.reader.name
    }
}

impl Playback {
    /// Opens `name` (see [`AudioDevice::open`]); `Ok(None)` for `null`. Blocks up to seconds.
    pub fn open(name: &str) -> Result<Option<Playback>, String> {
        let name = name.to_owned();
        Ok(
            keep_on_thread(move || open_playback(&name))?.map(|(writer, keeper)| Playback {
                writer,
                polls: 0,
                still_polls: 0,
                last_callbacks: 0,
                _keeper: keeper,
            }),
        )
    }

    pub fn name(&self) -> &str {
        &self.writer.name
    }
}

/// Polls (20 ms each) without a single callback before a running stream counts as stalled:
/// 500 ms, well above any buffer a 10 ms stream should see, yet a short gap in a call.
const STALL_POLLS: u32 = 25;
/// A stream's first polls are not judged: a sound server may take a while to settle a new
/// stream into a device that is already playing (PulseAudio re-configures its latency).
const STALL_GRACE_POLLS: u32 = 150;

/// Which way a device carries sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
}

/// What [`AudioIo::poll`] has to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceNews {
    /// Something to tell the user; audio goes on.
    Warning(Warning),
    /// The device of that direction failed or stalled and is closed (that direction is null
    /// now): `name` is the device, `why` what happened.
    Lost {
        direction: Direction,
        name: String,
        why: String,
    },
}

/// The device ends of one call. Dropping it stops the streams.
pub struct AudioIo {
    capture: Option<Capture>,
    playback: Option<Playback>,
    codec_rate: u32,
    up: Option<Resampler>,
    down: Option<Resampler>,
    /// Device output rate to codec rate, for the played reference.
    played_down: Option<Resampler>,
    /// Played samples (device rate) waiting for a whole 20 ms frame.
    played_pending: Vec<i16>,
    scratch: Vec<i16>,
    polls: u64,
    backend_reported: u64,
    backend_warned_at: Option<u64>,
}

impl fmt::Debug for AudioIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioIo")
            .field(
                "capture",
                &self
                    .capture
                    .as_ref()
                    .map(|c| (&c.reader.name, c.reader.rate)),
            )
            .field(
                "playback",
                &self
                    .playback
                    .as_ref()
                    .map(|p| (&p.writer.name, p.writer.rate)),
            )
            .field("codec_rate", &self.codec_rate)
            .finish()
    }
}

/// Opens sound devices by name.
pub struct AudioDevice;

impl AudioDevice {
    /// Opens `input` for capture and `output` for playback: `"default"` (the default host's
    /// default device), `"null"` (nothing), a cpal device id (`pulseaudio:sipterm_out`,
    /// `alsa:default`, as `sipterm --list-devices` prints) or a device's description. A device
    /// that cannot be opened becomes a warning and that direction stays null. Blocks for up to
    /// a few seconds (backends are slow to start): call it from a blocking context.
    pub fn open(input: &str, output: &str) -> Result<(AudioIo, Vec<Warning>), AudioError> {
        let mut warnings = Vec::new();
        let capture = match Capture::open(input) {
            Ok(capture) => capture,
            Err(message) => {
                warnings.push(Warning(format!(
                    "sound input `{input}`: {message}; sending silence"
                )));
                None
            }
        };
        let playback = match Playback::open(output) {
            Ok(playback) => playback,
            Err(message) => {
                warnings.push(Warning(format!(
                    "sound output `{output}`: {message}; received audio is discarded"
                )));
                None
            }
        };
        Ok((
            AudioIo {
                capture,
                playback,
                codec_rate: 0,
                up: None,
                down: None,
                played_down: None,
                played_pending: Vec::with_capacity(1920),
                scratch: Vec::with_capacity(960),
                polls: 0,
                backend_reported: 0,
                backend_warned_at: None,
            },
            warnings,
        ))
    }
}

impl AudioIo {
    pub fn has_capture(&self) -> bool {
        self.capture.is_some()
    }

    pub fn has_playback(&self) -> bool {
        self.playback.is_some()
    }

    /// The devices in use (their ids), for the user.
    pub fn input_name(&self) -> Option<&str> {
        self.capture.as_ref().map(Capture::name)
    }

    pub fn output_name(&self) -> Option<&str> {
        self.playback.as_ref().map(Playback::name)
    }

    /// The capture and playback counters, when that direction is open.
    pub fn capture_status(&self) -> Option<&SideStatus> {
        self.capture.as_ref().map(|c| &*c.reader.status)
    }

    pub fn playback_status(&self) -> Option<&SideStatus> {
        self.playback.as_ref().map(|p| &*p.writer.status)
    }

    /// Puts another capture device in place (or none); returns the old one, to be dropped
    /// off the async runtime (dropping joins its thread).
    pub fn replace_capture(
        &mut self,
        capture: Option<Capture>,
    ) -> Result<Option<Capture>, MediaError> {
        self.up = match (&capture, self.codec_rate) {
            (Some(c), rate) if rate > 0 => Some(Resampler::new(c.reader.rate, rate)?),
            _ => None,
        };
        Ok(std::mem::replace(&mut self.capture, capture))
    }

    /// Puts another playback device in place (or none); returns the old one.
    pub fn replace_playback(
        &mut self,
        playback: Option<Playback>,
    ) -> Result<Option<Playback>, MediaError> {
        (self.down, self.played_down) = match (&playback, self.codec_rate) {
            (Some(p), rate) if rate > 0 => (
                Some(Resampler::new(rate, p.writer.rate)?),
                Some(Resampler::new(p.writer.rate, rate)?),
            ),
            _ => (None, None),
        };
        self.played_pending.clear();
        Ok(std::mem::replace(&mut self.playback, playback))
    }

    /// Sets the codec's rate; frames are resampled between it and the device rates.
    pub fn set_codec_rate(&mut self, rate: u32) -> Result<(), MediaError> {
        if rate == self.codec_rate {
            return Ok(());
        }
        self.up = match &self.capture {
            Some(c) => Some(Resampler::new(c.reader.rate, rate)?),
            None => None,
        };
        (self.down, self.played_down) = match &self.playback {
            Some(p) => (
                Some(Resampler::new(rate, p.writer.rate)?),
                Some(Resampler::new(p.writer.rate, rate)?),
            ),
            None => (None, None),
        };
        self.played_pending.clear();
        self.codec_rate = rate;
        Ok(())
    }

    /// False while a capture device has not delivered a whole frame yet (true without one).
    pub fn capture_ready(&self) -> bool {
        self.capture.as_ref().is_none_or(|c| c.reader.frame_ready())
    }

    /// Replaces `out` with one captured 20 ms frame at the codec rate. Returns false (and
    /// leaves `out` alone) when there is no capture device.
    pub fn read_frame(&mut self, out: &mut Vec<i16>) -> bool {
        let (Some(capture), Some(up)) = (&mut self.capture, &mut self.up) else {
            return false;
        };
        capture.reader.read_frame(&mut self.scratch);
        out.clear();
        if up.process(&self.scratch, out).is_err() {
            out.clear();
            out.resize(samples_per_frame(self.codec_rate), 0);
        }
        true
    }

    /// Plays one 20 ms frame at the codec rate (nothing without a playback device).
    pub fn write_frame(&mut self, samples: &[i16]) {
        let (Some(playback), Some(down)) = (&mut self.playback, &mut self.down) else {
            return;
        };
        self.scratch.clear();
        if down.process(samples, &mut self.scratch).is_ok() {
            playback.writer.write_frame(&self.scratch);
        }
    }

    /// Appends what the speaker played since the last call (codec rate, whole 20 ms frames):
    /// the echo reference. False without a playback device.
    pub fn read_played(&mut self, out: &mut Vec<i16>) -> bool {
        let (Some(playback), Some(resampler)) = (&mut self.playback, &mut self.played_down) else {
            return false;
        };
        let available = playback.writer.played.slots();
        if let Ok(chunk) = playback.writer.played.read_chunk(available) {
            self.played_pending.extend(chunk.into_iter().map(to_i16));
        }
        let frame = samples_per_frame(playback.writer.rate);
        let mut start = 0;
        while self.played_pending.len() - start >= frame {
            let _ = resampler.process(&self.played_pending[start..start + frame], out);
            start += frame;
        }
        self.played_pending.drain(..start);
        true
    }

    /// Call once per 20 ms frame: a device that failed or stalled is closed (that direction
    /// goes on as null) and reported as lost; backend error storms give at most one warning
    /// per 10 s.
    pub fn poll(&mut self) -> Option<DeviceNews> {
        self.polls += 1;
        if let Some(c) = &mut self.capture
            && let Some(why) = side_trouble(
                &c.reader.status,
                &mut c.polls,
                &mut c.still_polls,
                &mut c.last_callbacks,
            )
        {
            let name = c.reader.name.clone();
            self.capture = None;
            self.up = None;
            return Some(DeviceNews::Lost {
                direction: Direction::Input,
                name,
                why,
            });
        }
        if let Some(p) = &mut self.playback
            && let Some(why) = side_trouble(
                &p.writer.status,
                &mut p.polls,
                &mut p.still_polls,
                &mut p.last_callbacks,
            )
        {
            let name = p.writer.name.clone();
            self.playback = None;
            self.down = None;
            self.played_down = None;
            return Some(DeviceNews::Lost {
                direction: Direction::Output,
                name,
                why,
            });
        }
        let backend: u64 = [self.capture_status(), self.playback_status()]
            .into_iter()
            .flatten()
            .map(|s| s.backend_errors.load(Ordering::Relaxed))
            .sum();
        let due = self
            .backend_warned_at
            .is_none_or(|at| self.polls - at >= BACKEND_WARN_EVERY);
        if backend > self.backend_reported && due {
            let new = backend - self.backend_reported;
            self.backend_reported = backend;
            self.backend_warned_at = Some(self.polls);
            return Some(DeviceNews::Warning(Warning(format!(
                "sound device reported {new} backend error(s) (audio continues)"
            ))));
        }
        None
    }

    /// [`AudioIo::poll`] as a warning only (a lost device is described and closed).
    pub fn poll_warning(&mut self) -> Option<Warning> {
        match self.poll()? {
            DeviceNews::Warning(w) => Some(w),
            DeviceNews::Lost {
                direction: Direction::Input,
                name,
                why,
            } => Some(Warning(format!(
                "sound input `{name}` failed: {why}; sending silence"
            ))),
            DeviceNews::Lost {
                direction: Direction::Output,
                name,
                why,
            } => Some(Warning(format!(
                "sound output `{name}` failed: {why}; received audio is discarded"
            ))),
        }
    }
}

/// Why a running stream is unusable: a fatal error, or no callback for `STALL_POLLS` polls.
fn side_trouble(
    status: &SideStatus,
    polls: &mut u32,
    still: &mut u32,
    last: &mut u64,
) -> Option<String> {
    if status.failed.load(Ordering::Acquire) {
        return Some(failure_text(status));
    }
    *polls = polls.saturating_add(1);
    let callbacks = status.callbacks.load(Ordering::Relaxed);
    if callbacks != *last {
        *last = callbacks;
        *still = 0;
        return None;
    }
    *still += 1;
    // Only a stream that has run, and settled, counts as stalled.
    (callbacks > 0 && *polls > STALL_GRACE_POLLS && *still >= STALL_POLLS)
        .then(|| "the device stopped (unplugged?)".into())
}

fn failure_text(status: &SideStatus) -> String {
    status
        .failure
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .unwrap_or_else(|| "stream error".into())
}

impl Drop for AudioIo {
    fn drop(&mut self) {
        for (side, status) in [
            ("capture", self.capture_status()),
            ("playback", self.playback_status()),
        ] {
            if let Some(s) = status {
                tracing::info!(
                    "sound {side}: {} samples dropped (overrun), {} underruns, {} backend errors, device latency {} us",
                    s.overruns.load(Ordering::Relaxed),
                    s.underruns.load(Ordering::Relaxed),
                    s.backend_errors.load(Ordering::Relaxed),
                    s.device_latency_us.load(Ordering::Relaxed)
                );
            }
        }
    }
}

fn find_device(name: &str, input: bool) -> Result<cpal::Device, String> {
    let dir = if input { "input" } else { "output" };
    if name.eq_ignore_ascii_case("default") {
        let host = cpal::default_host();
        let device = if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        };
        return device.ok_or_else(|| format!("no default {dir} device ({} host)", host.id()));
    }
    if let Ok(id) = name.parse::<cpal::DeviceId>() {
        let host = cpal::host_from_id(id.host()).map_err(|e| format!("{}: {e}", id.host()))?;
        if let Some(device) = host.device_by_id(&id) {
            return Ok(device);
        }
    }
    for host_id in cpal::available_hosts() {
        let Ok(host) = cpal::host_from_id(host_id) else {
            continue;
        };
        let devices = match (input, host.input_devices(), host.output_devices()) {
            (true, Ok(d), _) => d.collect::<Vec<_>>(),
            (false, _, Ok(d)) => d.collect(),
            _ => continue,
        };
        for device in devices {
            let id_matches = device
                .id()
                .is_ok_and(|id| id.to_string() == name || id.id() == name);
            let description_matches = device.description().is_ok_and(|d| d.name() == name);
            if id_matches || description_matches {
                return Ok(device);
            }
        }
    }
    Err(format!(
        "no {dir} device named `{name}` (sipterm --list-devices shows them)"
    ))
}

/// The device's config, with a rate the 20 ms framing can use and a 10 ms fixed buffer.
fn choose_config(
    device: &cpal::Device,
    input: bool,
) -> Result<(StreamConfig, SampleFormat), String> {
    let default = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    }
    .map_err(|e| e.to_string())?;
    let mut supported = default;
    if !supported.sample_rate().is_multiple_of(50) {
        let configs: Vec<_> = if input {
            device.supported_input_configs().map(|c| c.collect())
        } else {
            device.supported_output_configs().map(|c| c.collect())
        }
        .unwrap_or_default();
        supported = configs
            .into_iter()
            .find_map(|c| c.try_with_sample_rate(48_000))
            .ok_or_else(|| format!("sample rate {} Hz is unusable", supported.sample_rate()))?;
    }
    let rate = supported.sample_rate();
    let mut frames = rate * BUFFER_MS / 1000;
    if let cpal::SupportedBufferSize::Range { min, max } = *supported.buffer_size() {
        frames = frames.clamp(min, max.max(min));
    }
    let config = StreamConfig {
        channels: supported.channels(),
        sample_rate: rate,
        buffer_size: BufferSize::Fixed(frames),
    };
    Ok((config, supported.sample_format()))
}

fn device_label(device: &cpal::Device) -> String {
    device
        .id()
        .map(|id| id.to_string())
        .unwrap_or_else(|_| device.to_string())
}

type Opened<T> = Result<Option<(cpal::Stream, T)>, String>;

fn open_capture(name: &str) -> Opened<CaptureReader> {
    if name.eq_ignore_ascii_case("null") {
        return Ok(None);
    }
    let device = find_device(name, true)?;
    let (config, format) = choose_config(&device, true)?;
    let rate = config.sample_rate;
    let (producer, consumer) = RingBuffer::new(samples_per_frame(rate) * (RING_MS / 20) as usize);
    let status = Arc::new(SideStatus::default());
    let stream = match format {
        SampleFormat::F32 => build_capture::<f32>(&device, config, producer, &status),
        SampleFormat::I16 => build_capture::<i16>(&device, config, producer, &status),
        SampleFormat::I32 => build_capture::<i32>(&device, config, producer, &status),
        SampleFormat::U16 => build_capture::<u16>(&device, config, producer, &status),
        SampleFormat::U8 => build_capture::<u8>(&device, config, producer, &status),
        SampleFormat::I8 => build_capture::<i8>(&device, config, producer, &status),
        SampleFormat::F64 => build_capture::<f64>(&device, config, producer, &status),
        other => return Err(format!("sample format {other} is not supported")),
    }
    .map_err(|e| e.to_string())?;
    stream.play().map_err(|e| e.to_string())?;
    Ok(Some((
        stream,
        CaptureReader {
            consumer,
            rate,
            trim: BacklogTrim::new(
                samples_per_frame(rate) * (20 + CAPTURE_SLACK_MS) as usize / 20,
                TRIM_WINDOW,
            ),
            period: RecentMax::new(TRIM_WINDOW),
            name: device_label(&device),
            status,
        },
    )))
}

fn open_playback(name: &str) -> Opened<PlaybackWriter> {
    if name.eq_ignore_ascii_case("null") {
        return Ok(None);
    }
    let device = find_device(name, false)?;
    let (config, format) = choose_config(&device, false)?;
    let rate = config.sample_rate;
    let (producer, consumer) = RingBuffer::new(samples_per_frame(rate) * (RING_MS / 20) as usize);
    let status = Arc::new(SideStatus::default());
    let (played_producer, played) =
        RingBuffer::new(samples_per_frame(rate) * (RING_MS / 20) as usize);
    let rings = PlaybackRings {
        queue: consumer,
        played: played_producer,
        prime: samples_per_frame(rate) * (20 + PLAYBACK_SLACK_MS) as usize / 20,
    };
    let stream = match format {
        SampleFormat::F32 => build_playback::<f32>(&device, config, rings, &status),
        SampleFormat::I16 => build_playback::<i16>(&device, config, rings, &status),
        SampleFormat::I32 => build_playback::<i32>(&device, config, rings, &status),
        SampleFormat::U16 => build_playback::<u16>(&device, config, rings, &status),
        SampleFormat::U8 => build_playback::<u8>(&device, config, rings, &status),
        SampleFormat::I8 => build_playback::<i8>(&device, config, rings, &status),
        SampleFormat::F64 => build_playback::<f64>(&device, config, rings, &status),
        other => return Err(format!("sample format {other} is not supported")),
    }
    .map_err(|e| e.to_string())?;
    stream.play().map_err(|e| e.to_string())?;
    Ok(Some((
        stream,
        PlaybackWriter {
            producer,
            played,
            rate,
            trim: BacklogTrim::new(
                samples_per_frame(rate) * PLAYBACK_SLACK_MS as usize / 20,
                TRIM_WINDOW,
            )
            .with_padding(samples_per_frame(rate) * PLAYBACK_PAD_TOLERANCE_MS as usize / 20),
            period: RecentMax::new(TRIM_WINDOW),
            underruns_seen: 0,
            owed: 0,
            name: device_label(&device),
            status,
        },
    )))
}

fn build_capture<T>(
    device: &cpal::Device,
    config: StreamConfig,
    mut producer: Producer<f32>,
    status: &Arc<SideStatus>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let scale = 1.0 / channels as f32;
    let data_status = Arc::clone(status);
    let error_status = Arc::clone(status);
    device.build_input_stream::<T, _, _>(
        config,
        move |data: &[T], info: &cpal::InputCallbackInfo| {
            // Realtime: no allocation, lock or I/O here.
            let frames = data.len() / channels;
            let stamp = info.timestamp();
            data_status.note_callback(frames, stamp.callback.duration_since(stamp.capture));
            let n = frames.min(producer.slots());
            if n < frames {
                data_status
                    .overruns
                    .fetch_add((frames - n) as u64, Ordering::Relaxed);
            }
            if let Ok(mut chunk) = producer.write_chunk_uninit(n) {
                let (a, b) = chunk.as_mut_slices();
                for (slot, frame) in a
                    .iter_mut()
                    .chain(b.iter_mut())
                    .zip(data.chunks_exact(channels))
                {
                    let sum: f32 = frame.iter().map(|s| s.to_sample::<f32>()).sum();
                    slot.write(sum * scale);
                }
                // SAFETY: the zip covers all n slots: data has at least n whole frames.
                unsafe { chunk.commit_all() };
            }
        },
        move |error| error_status.on_error(error),
        Some(BUILD_TIMEOUT),
    )
}

/// The playback callback's rings: what to play, and where it reports what it played.
struct PlaybackRings {
    queue: Consumer<f32>,
    played: Producer<f32>,
    /// Samples to gather before the first start, until the writer sets `prime_samples`.
    prime: usize,
}

fn build_playback<T>(
    device: &cpal::Device,
    config: StreamConfig,
    rings: PlaybackRings,
    status: &Arc<SideStatus>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    let data_status = Arc::clone(status);
    let error_status = Arc::clone(status);
    let PlaybackRings {
        queue: mut consumer,
        mut played,
        prime,
    } = rings;
    let mut primed = false;
    device.build_output_stream::<T, _, _>(
        config,
        move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
            // Realtime: no allocation, lock or I/O here.
            let frames = data.len() / channels;
            let stamp = info.timestamp();
            data_status.note_callback(frames, stamp.playback.duration_since(stamp.callback));
            let prime = match data_status.prime_samples.load(Ordering::Relaxed) {
                0 => prime,
                set => set as usize,
            };
            if !primed && consumer.slots() >= prime {
                primed = true;
            }
            let n = if primed {
                frames.min(consumer.slots())
            } else {
                0
            };
            if primed && n < frames {
                data_status.underruns.fetch_add(1, Ordering::Relaxed);
                primed = false;
            }
            let silence = T::EQUILIBRIUM;
            // The echo reference gets exactly what this callback plays; when the media task
            // does not drain it (no echo canceller) it fills up and the rest is not copied.
            let reference = played.slots().min(frames);
            let mut reference_chunk = played.write_chunk_uninit(reference).ok();
            let mut reference_slots = reference_chunk.as_mut().map(|c| {
                let (a, b) = c.as_mut_slices();
                a.iter_mut().chain(b.iter_mut())
            });
            let mut out = data.chunks_exact_mut(channels);
            if let Ok(chunk) = consumer.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                for (&v, frame) in a.iter().chain(b.iter()).zip(out.by_ref()) {
                    frame.fill(T::from_sample(v));
                    if let Some(slot) = reference_slots.as_mut().and_then(Iterator::next) {
                        slot.write(v);
                    }
                }
                chunk.commit_all();
            }
            for frame in out {
                frame.fill(silence);
                if let Some(slot) = reference_slots.as_mut().and_then(Iterator::next) {
                    slot.write(0.0);
                }
            }
            if let Some(chunk) = reference_chunk {
                // SAFETY: the two loops above wrote one slot per played frame, `frames` in
                // all, and the chunk holds at most `frames` slots: every slot is written.
                unsafe { chunk.commit_all() };
            }
        },
        move |error| error_status.on_error(error),
        Some(BUILD_TIMEOUT),
    )
}

/// The ids of every host's input and output devices (what `--list-devices` lists), for the
/// TUI's device picker.
pub fn device_ids() -> (Vec<String>, Vec<String>) {
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for host_id in cpal::available_hosts() {
        let Ok(host) = cpal::host_from_id(host_id) else {
            continue;
        };
        if let Ok(devices) = host.input_devices() {
            inputs.extend(devices.map(|d| device_label(&d)));
        }
        if let Ok(devices) = host.output_devices() {
            outputs.extend(devices.map(|d| device_label(&d)));
        }
    }
    (inputs, outputs)
}

/// Every host's input and output devices, defaults marked with `*`, for `--list-devices`.
pub fn list_devices() -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let default_host = cpal::default_host().id();
    for host_id in cpal::available_hosts() {
        let mark = if host_id == default_host {
            " (default host)"
        } else {
            ""
        };
        let _ = writeln!(text, "{}{mark}:", host_id.name());
        let host = match cpal::host_from_id(host_id) {
            Ok(h) => h,
            Err(e) => {
                let _ = writeln!(text, "  unavailable: {e}");
                continue;
            }
        };
        let id_of = |d: Option<cpal::Device>| d.and_then(|d| d.id().ok()).map(|i| i.to_string());
        let default_in = id_of(host.default_input_device());
        let default_out = id_of(host.default_output_device());
        for (title, devices, default) in [
            (
                "input",
                host.input_devices().map(|d| d.collect::<Vec<_>>()),
                &default_in,
            ),
            (
                "output",
                host.output_devices().map(|d| d.collect::<Vec<_>>()),
                &default_out,
            ),
        ] {
            let _ = writeln!(text, "  {title} devices:");
            match devices {
                Ok(devices) if !devices.is_empty() => {
                    for device in devices {
                        let id = device_label(&device);
                        let star = if Some(&id) == default.as_ref() {
                            "*"
                        } else {
                            " "
                        };
                        let description = device
                            .description()
                            .map(|d| format!("  ({})", d.name()))
                            .unwrap_or_default();
                        let _ = writeln!(text, "   {star} {id}{description}");
                    }
                }
                Ok(_) => {
                    let _ = writeln!(text, "    (none)");
                }
                Err(e) => {
                    let _ = writeln!(text, "    cannot list: {e}");
                }
            }
        }
    }
    text.push_str("Use an id (or description) as [audio] input/output, or `default`/`null`.\n");
    text
}
