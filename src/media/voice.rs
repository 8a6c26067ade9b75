//! Voice processing of the microphone signal: echo cancellation, noise suppression and
//! automatic gain control (WebRTC's AEC3, NS and AGC2, as ported to Rust by the `aec3` crate).
//!
//! Pure and deterministic like the rest of `media/`: the media task hands in what was played
//! (the far-end reference, [`VoiceProcessor::handle_played`]) and each captured frame
//! ([`VoiceProcessor::process_capture`]); nothing here reads a clock or touches a device.
//!
//! The reference is the signal *as played*: the playback callback copies every sample it gives
//! the device (silence on underrun included) into a ring that the media task drains, so ring
//! backlogs and dropped frames on our side never shift it. What remains between reference and
//! echo is the device path (cpal buffers, the sound server's latency, the room), which AEC3
//! finds with its own delay estimator. When that path jumps (another device, a sound server
//! that re-buffers), AEC3 on its own needs 2 s or more to trust a new delay; the
//! [`EchoPathMonitor`] sees the jump in the signal envelopes within about half a second and
//! restarts the canceller, which then converges again in a few hundred milliseconds.

use aec3::api::config::EchoCanceller3Config;
use aec3::graph::NodeControlState;
use aec3::nodes::audio::AudioFormat;
use aec3::pipelines::linear::{self, LinearPipeline};

use super::resample::Resampler;
use super::{MediaError, samples_per_frame};

/// Which stages run. Each can be switched during a call without losing the others' state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoiceSettings {
    pub echo_cancel: bool,
    pub noise_suppression: bool,
    pub auto_gain: bool,
}

impl VoiceSettings {
    pub const OFF: VoiceSettings = VoiceSettings {
        echo_cancel: false,
        noise_suppression: false,
        auto_gain: false,
    };
    pub const ON: VoiceSettings = VoiceSettings {
        echo_cancel: true,
        noise_suppression: true,
        auto_gain: true,
    };

    pub fn any(self) -> bool {
        self.echo_cancel || self.noise_suppression || self.auto_gain
    }

    /// Short form for the calls panel and events: `AEC NS AGC`, or `-` for none.
    pub fn label(self) -> String {
        let parts: Vec<&str> = [
            (self.echo_cancel, "AEC"),
            (self.noise_suppression, "NS"),
            (self.auto_gain, "AGC"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(" ")
        }
    }
}

/// Where the gain control brings speech (active speech level, dBFS).
pub const AGC_TARGET_DBFS: f32 = -20.0;

/// Processing runs on 10 ms blocks at one of these rates; 8 kHz audio is processed at 16 kHz.
fn processing_rate(codec_rate: u32) -> u32 {
    match codec_rate {
        16_000 | 32_000 | 48_000 => codec_rate,
        r if r < 16_000 => 16_000,
        _ => 48_000,
    }
}

/// Echo cancellation, noise suppression and gain control for one call's microphone.
pub struct VoiceProcessor {
    settings: VoiceSettings,
    codec_rate: u32,
    rate: u32,
    pipeline: LinearPipeline,
    /// Codec rate to processing rate and back, when they differ (G.711).
    capture_up: Option<Resampler>,
    capture_down: Option<Resampler>,
    render_up: Option<Resampler>,
    /// Reference samples (codec rate) waiting for a whole 20 ms frame.
    played: Vec<i16>,
    /// Scratch buffers, kept to avoid allocating per frame.
    frame_f32: Vec<f32>,
    out_f32: Vec<f32>,
    scratch: Vec<i16>,
    monitor: EchoPathMonitor,
    /// Times the canceller was restarted because the echo path jumped.
    restarts: u64,
    gain: GainControl,
    /// 10 ms blocks since the far end last played something audible.
    blocks_since_far: u32,
}

impl std::fmt::Debug for VoiceProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceProcessor")
            .field("settings", &self.settings)
            .field("codec_rate", &self.codec_rate)
            .field("rate", &self.rate)
            .finish()
    }
}

impl VoiceProcessor {
    /// A processor for 20 ms frames at `codec_rate` (8, 16, 32 or 48 kHz).
    pub fn new(codec_rate: u32, settings: VoiceSettings) -> Result<Self, MediaError> {
        let rate = processing_rate(codec_rate);
        let resampler = |from, to| -> Result<Option<Resampler>, MediaError> {
            if from == to {
                Ok(None)
            } else {
                Resampler::new(from, to).map(Some)
            }
        };
        let mut processor = VoiceProcessor {
            settings,
            codec_rate,
            rate,
            pipeline: build_pipeline(rate)?,
            capture_up: resampler(codec_rate, rate)?,
            capture_down: resampler(rate, codec_rate)?,
            render_up: resampler(codec_rate, rate)?,
            played: Vec::with_capacity(samples_per_frame(codec_rate) * 4),
            frame_f32: vec![0.0; samples_per_frame(rate)],
            out_f32: vec![0.0; samples_per_frame(rate)],
            scratch: Vec::with_capacity(samples_per_frame(rate)),
            monitor: EchoPathMonitor::new(),
            restarts: 0,
            gain: GainControl::new(),
            blocks_since_far: u32::MAX,
        };
        processor.apply_settings()?;
        Ok(processor)
    }

    pub fn settings(&self) -> VoiceSettings {
        self.settings
    }

    pub fn codec_rate(&self) -> u32 {
        self.codec_rate
    }

    /// How often the echo canceller restarted because the echo path jumped.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Switches stages on or off; the others keep their state (a converged echo canceller
    /// stays converged while noise suppression is toggled).
    pub fn set_settings(&mut self, settings: VoiceSettings) -> Result<(), MediaError> {
        if settings != self.settings {
            let echo_back_on = settings.echo_cancel && !self.settings.echo_cancel;
            self.settings = settings;
            self.apply_settings()?;
            if echo_back_on {
                self.reset_echo_path();
            }
        }
        Ok(())
    }

    fn apply_settings(&mut self) -> Result<(), MediaError> {
        let state = |on: bool| {
            if on {
                NodeControlState::Active
            } else {
                NodeControlState::Bypassed
            }
        };
        let handles = *self.pipeline.handles();
        let mut stages = vec![(handles.aec3.node_id(), self.settings.echo_cancel)];
        if let Some(ns) = handles.noise_suppression {
            stages.push((ns.node_id(), self.settings.noise_suppression));
        }
        if let Some(agc) = handles.gain_controller2 {
            stages.push((agc.node_id(), self.settings.auto_gain));
        }
        for (node, on) in stages {
            self.pipeline
                .set_node_state(node, state(on))
                .map_err(MediaError::Voice)?;
        }
        Ok(())
    }

    /// The echo path changed in a way we know of (another output or input device): start the
    /// canceller afresh instead of letting it find out.
    pub fn reset_echo_path(&mut self) {
        if self.pipeline.reset_aec3().is_ok() {
            self.restarts += 1;
        }
        self.monitor = EchoPathMonitor::new();
    }

    /// What the speaker played (codec rate, any length, in order): the echo reference.
    pub fn handle_played(&mut self, samples: &[i16]) {
        self.played.extend_from_slice(samples);
        let frame = samples_per_frame(self.codec_rate);
        let mut start = 0;
        while self.played.len() - start >= frame {
            let chunk = start..start + frame;
            start += frame;
            self.scratch.clear();
            match &mut self.render_up {
                Some(up) => {
                    if up.process(&self.played[chunk], &mut self.scratch).is_err() {
                        continue;
                    }
                }
                None => self.scratch.extend_from_slice(&self.played[chunk]),
            }
            let block = samples_per_frame(self.rate) / 2;
            for half in 0..2 {
                let Some(samples) = self.scratch.get(half * block..(half + 1) * block) else {
                    break;
                };
                for (slot, &s) in self.frame_f32[..block].iter_mut().zip(samples) {
                    *slot = f32::from(s) / 32768.0;
                }
                self.monitor.handle_render(&self.frame_f32[..block]);
                if block_dbfs(&self.frame_f32[..block]) > FAR_ACTIVE_DBFS {
                    self.blocks_since_far = 0;
                }
                // A render error only means this block is not used as reference.
                let _ = self.pipeline.handle_render_frame(&self.frame_f32[..block]);
            }
        }
        self.played.drain(..start);
        // Never hold more than a second of unprocessed reference (a stalled caller).
        let limit = self.codec_rate as usize;
        if self.played.len() > limit {
            let excess = self.played.len() - limit;
            self.played.drain(..excess);
        }
    }

    /// Processes one 20 ms captured frame (codec rate) in place. Frames of another length, or
    /// any processing error, leave it as it was.
    pub fn process_capture(&mut self, frame: &mut [i16]) {
        if !self.settings.any() || frame.len() != samples_per_frame(self.codec_rate) {
            return;
        }
        self.scratch.clear();
        match &mut self.capture_up {
            Some(up) => {
                if up.process(frame, &mut self.scratch).is_err() {
                    return;
                }
            }
            None => self.scratch.extend_from_slice(frame),
        }
        let block = samples_per_frame(self.rate) / 2;
        if self.scratch.len() != 2 * block {
            return;
        }
        for half in 0..2 {
            let range = half * block..(half + 1) * block;
            for (slot, &s) in self.frame_f32[..block]
                .iter_mut()
                .zip(&self.scratch[range.clone()])
            {
                *slot = f32::from(s) / 32768.0;
            }
            if self.settings.echo_cancel && self.monitor.handle_capture(&self.frame_f32[..block]) {
                self.reset_echo_path();
            }
            self.blocks_since_far = self.blocks_since_far.saturating_add(1);
            // The graph holds a block back only while it fills (Ok(false)): that one, and any
            // error, passes through unprocessed.
            let processed = (self.settings.echo_cancel || self.settings.noise_suppression)
                && matches!(
                    self.pipeline.process_capture_frame(
                        &self.frame_f32[..block],
                        &mut self.out_f32[..block]
                    ),
                    Ok(true)
                );
            if !processed {
                self.out_f32[..block].copy_from_slice(&self.frame_f32[..block]);
            }
            if self.settings.auto_gain {
                // While the far end plays (and a second after), what the microphone has may be
                // residual echo, which is no talker to adjust to: the gain holds. (Tried: letting
                // blocks the canceller barely touched adapt; its quiet residual passed that test
                // and the gain lifted it by up to 30 dB on the device path.)
                let far_active =
                    self.settings.echo_cancel && self.blocks_since_far < FAR_HANGOVER_BLOCKS;
                self.gain.process(&mut self.out_f32[..block], !far_active);
            }
            for (slot, &v) in self.scratch[range].iter_mut().zip(&self.out_f32[..block]) {
                *slot = (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
            }
        }
        match &mut self.capture_down {
            Some(down) => {
                let processed = std::mem::take(&mut self.scratch);
                let mut out = Vec::with_capacity(frame.len());
                if down.process(&processed, &mut out).is_ok() && out.len() == frame.len() {
                    frame.copy_from_slice(&out);
                }
                self.scratch = processed;
            }
            None => frame.copy_from_slice(&self.scratch),
        }
    }
}

fn build_pipeline(rate: u32) -> Result<LinearPipeline, MediaError> {
    let format = AudioFormat::ten_ms(rate, 1);
    let mut config = EchoCanceller3Config::default();
    // A laptop's echo tail is short (a small room, speakers next to the microphone): the
    // default reverberation assumption (0.83 per block) keeps suppressing near-end speech
    // long after the far end stops.
    config.ep_strength.default_len = 0.5;
    config.ep_strength.nearend_len = 0.5;
    linear::builder(format, format)
        .aec3_config(config)
        // Gain control is ours (`GainControl`): AGC2 raises the canceller's residual echo
        // as if it were a quiet talker (measured: 31.8 dB of echo loss fell to 11.5 dB).
        .enable_gain_controller2(false)
        .build()
        .map_err(MediaError::Voice)
}

/// The far end counts as playing for this long after its last audible block: the echo tail
/// plus the device path and the capture backlog (a few hundred ms), with a margin.
const FAR_HANGOVER_BLOCKS: u32 = 100;
/// A reference block above this is audible far-end audio.
const FAR_ACTIVE_DBFS: f32 = -55.0;

/// Gain control limits: the most it amplifies or attenuates, how fast it moves (dB per 10 ms
/// block: 6 dB/s up, 20 dB/s down), and what counts as speech.
const GAIN_MAX_DB: f32 = 30.0;
const GAIN_MIN_DB: f32 = -12.0;
const GAIN_UP_PER_BLOCK: f32 = 0.06;
const GAIN_DOWN_PER_BLOCK: f32 = 0.2;
const SPEECH_ABOVE_NOISE_DB: f32 = 9.0;
/// Quieter blocks are no speech to adjust to (a -40 dBFS talker's syllables are louder; a
/// canceller's residual echo is quieter).
const SPEECH_MIN_DBFS: f32 = -55.0;
/// The noise floor, after gain, stays below this.
const GAIN_NOISE_CEILING_DBFS: f32 = -50.0;
/// Output peaks stay below this (a hard limiter behind the gain).
const LIMIT: f32 = 0.9;

fn block_dbfs(block: &[f32]) -> f32 {
    let power = block.iter().map(|v| v * v).sum::<f32>() / block.len().max(1) as f32;
    10.0 * (power + 1e-12).log10()
}

/// Automatic gain: brings the active speech level to [`AGC_TARGET_DBFS`], adapting only on
/// blocks that hold near-end speech (well above the noise floor, and not echo that the
/// canceller removed), moving slowly up and faster down, never lifting the noise floor above
/// `GAIN_NOISE_CEILING_DBFS`, with a limiter against clipping.
#[derive(Debug)]
pub struct GainControl {
    gain_db: f32,
    /// Smoothed level of speech blocks (dBFS), once there was speech.
    speech_dbfs: Option<f32>,
    noise_dbfs: f32,
}

impl Default for GainControl {
    fn default() -> Self {
        Self::new()
    }
}

impl GainControl {
    pub fn new() -> Self {
        GainControl {
            gain_db: 0.0,
            speech_dbfs: None,
            noise_dbfs: -70.0,
        }
    }

    pub fn gain_db(&self) -> f32 {
        self.gain_db
    }

    /// Applies the gain to one block (10 ms) in place; `may_adapt`: the block may be the
    /// near-end talker (false for echo the canceller removed).
    pub fn process(&mut self, block: &mut [f32], may_adapt: bool) {
        let level = block_dbfs(block);
        // Noise floor: follows quiet blocks at once, rises slowly (0.5 dB/s) through speech.
        self.noise_dbfs = if level < self.noise_dbfs {
            level.max(-90.0)
        } else {
            (self.noise_dbfs + 0.005).min(level)
        };
        let speech = level > SPEECH_MIN_DBFS && level > self.noise_dbfs + SPEECH_ABOVE_NOISE_DB;
        if may_adapt && speech {
            // The mean power of speech blocks (as the active speech level is measured), over
            // about 0.5 s of speech: loud syllables and quiet ones average out.
            let power = 10f32.powf(level / 10.0);
            let smoothed = match self.speech_dbfs {
                Some(s) => {
                    let mean = 10f32.powf(s / 10.0);
                    mean + 0.02 * (power - mean)
                }
                None => power,
            };
            self.speech_dbfs = Some(10.0 * (smoothed + 1e-12).log10());
        }
        let wanted = self
            .speech_dbfs
            .map_or(0.0, |s| AGC_TARGET_DBFS - s)
            .min(GAIN_NOISE_CEILING_DBFS - self.noise_dbfs)
            .clamp(GAIN_MIN_DB, GAIN_MAX_DB);
        let previous = self.gain_db;
        if may_adapt {
            self.gain_db = if wanted > previous {
                (previous + GAIN_UP_PER_BLOCK).min(wanted)
            } else {
                (previous - GAIN_DOWN_PER_BLOCK).max(wanted)
            };
        }
        let (from, to) = (db_to_linear(previous), db_to_linear(self.gain_db));
        let peak = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // The limiter: this block's peak must fit under LIMIT after the gain.
        let loudest = peak * to.max(from);
        let ceiling = if loudest > LIMIT {
            LIMIT / loudest
        } else {
            1.0
        };
        let n = block.len().max(1) as f32;
        for (i, v) in block.iter_mut().enumerate() {
            // A ramp across the block: no step in the gain, no click.
            let g = from + (to - from) * (i as f32 + 1.0) / n;
            *v *= g * ceiling;
        }
    }
}

fn db_to_linear(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Envelope frames (10 ms) the monitor correlates over, and the largest lag it looks for.
const MONITOR_WINDOW: usize = 60;
const MONITOR_MAX_LAG: usize = 50;
/// Evaluate every this many frames.
const MONITOR_EVERY: usize = 5;
/// Normalized correlation that counts as "the microphone hears the speaker at this lag".
const MONITOR_MIN_CORRELATION: f64 = 0.7;
/// A lag this far (frames) from the established one is a jump...
const MONITOR_JUMP_FRAMES: i64 = 3;
/// ...once seen in this many evaluations in a row.
const MONITOR_CONFIRMATIONS: u32 = 2;

/// Watches the log-energy envelopes of reference and microphone for a jump in the echo delay
/// (tens of milliseconds or more). It only ever restarts the canceller, never steers it:
/// small drifts are AEC3's own business.
#[derive(Debug)]
pub struct EchoPathMonitor {
    render: Vec<f64>,
    capture: Vec<f64>,
    frames: usize,
    established: Option<i64>,
    candidate: Option<(i64, u32)>,
}

impl Default for EchoPathMonitor {
    fn default() -> Self {
        Self::new()
    }
}

impl EchoPathMonitor {
    pub fn new() -> Self {
        let len = MONITOR_WINDOW + MONITOR_MAX_LAG;
        EchoPathMonitor {
            render: Vec::with_capacity(len),
            capture: Vec::with_capacity(len),
            frames: 0,
            established: None,
            candidate: None,
        }
    }

    fn push(history: &mut Vec<f64>, block: &[f32]) {
        let energy: f64 = block
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            / block.len().max(1) as f64;
        if history.len() == MONITOR_WINDOW + MONITOR_MAX_LAG {
            history.remove(0);
        }
        history.push(10.0 * (energy + 1e-10).log10());
    }

    pub fn handle_render(&mut self, block: &[f32]) {
        Self::push(&mut self.render, block);
    }

    /// Adds one captured 10 ms block; true when the echo path jumped.
    pub fn handle_capture(&mut self, block: &[f32]) -> bool {
        Self::push(&mut self.capture, block);
        self.frames += 1;
        if !self.frames.is_multiple_of(MONITOR_EVERY)
            || self.capture.len() < MONITOR_WINDOW
            || self.render.len() < MONITOR_WINDOW + MONITOR_MAX_LAG
        {
            return false;
        }
        let Some(lag) = self.strongest_lag() else {
            self.candidate = None;
            return false;
        };
        match self.established {
            None => {
                self.established = Some(lag);
                false
            }
            Some(known) if (lag - known).abs() < MONITOR_JUMP_FRAMES => {
                self.candidate = None;
                false
            }
            Some(_) => {
                let seen = match self.candidate {
                    Some((candidate, n)) if (candidate - lag).abs() < MONITOR_JUMP_FRAMES => n + 1,
                    _ => 1,
                };
                self.candidate = Some((lag, seen));
                if seen >= MONITOR_CONFIRMATIONS {
                    self.established = Some(lag);
                    self.candidate = None;
                    true
                } else {
                    false
                }
            }
        }
    }

    /// The lag (in 10 ms frames) at which the last `MONITOR_WINDOW` captured frames correlate
    /// best with the reference, when the correlation is clear; `None` in silence or double talk.
    fn strongest_lag(&self) -> Option<i64> {
        let capture = &self.capture[self.capture.len() - MONITOR_WINDOW..];
        let render_end = self.render.len();
        // Silence on the far end tells nothing about the path.
        let loud = capture.iter().fold(f64::MIN, |a, &b| a.max(b));
        if loud < -70.0 {
            return None;
        }
        let (c_mean, c_norm) = centered_norm(capture);
        let mut best: Option<(i64, f64)> = None;
        for lag in 0..=MONITOR_MAX_LAG {
            let end = render_end - lag;
            let render = &self.render[end - MONITOR_WINDOW..end];
            let (r_mean, r_norm) = centered_norm(render);
            if r_norm < 1.0 || c_norm < 1.0 {
                continue;
            }
            let dot: f64 = capture
                .iter()
                .zip(render)
                .map(|(c, r)| (c - c_mean) * (r - r_mean))
                .sum();
            let correlation = dot / (c_norm * r_norm);
            if best.is_none_or(|(_, b)| correlation > b) {
                best = Some((lag as i64, correlation));
            }
        }
        best.filter(|&(_, c)| c >= MONITOR_MIN_CORRELATION)
            .map(|(lag, _)| lag)
    }
}

fn centered_norm(values: &[f64]) -> (f64, f64) {
    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
    let norm = values
        .iter()
        .map(|v| (v - mean).powi(2))
        .sum::<f64>()
        .sqrt();
    (mean, norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64, amplitude: f32) -> Vec<i16> {
        let mut state = seed | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                (unit * amplitude) as i16
            })
            .collect()
    }

    /// Bursty noise: on 300 ms, off 200 ms (an envelope the monitor can lock onto).
    fn bursts(n: usize, rate: usize) -> Vec<i16> {
        let mut x = noise(n, 3, 8000.0);
        for (i, v) in x.iter_mut().enumerate() {
            if (i * 1000 / rate) % 500 >= 300 {
                *v = 0;
            }
        }
        x
    }

    fn echo_of(far: &[i16], delay: usize, gain: f32) -> Vec<i16> {
        (0..far.len())
            .map(|i| {
                i.checked_sub(delay)
                    .map_or(0, |j| (f32::from(far[j]) * gain) as i16)
            })
            .collect()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    fn run(processor: &mut VoiceProcessor, far: &[i16], mic: &[i16]) -> Vec<i16> {
        let frame = samples_per_frame(processor.codec_rate());
        let mut out = Vec::with_capacity(mic.len());
        for (f, m) in far.chunks_exact(frame).zip(mic.chunks_exact(frame)) {
            processor.handle_played(f);
            let mut m = m.to_vec();
            processor.process_capture(&mut m);
            out.extend_from_slice(&m);
        }
        out
    }

    #[test]
    fn settings_label_names_the_stages_that_run() {
        assert_eq!(VoiceSettings::ON.label(), "AEC NS AGC");
        assert_eq!(VoiceSettings::OFF.label(), "-");
        let ns_only = VoiceSettings {
            noise_suppression: true,
            ..VoiceSettings::OFF
        };
        assert_eq!(ns_only.label(), "NS");
    }

    #[test]
    fn all_off_passes_the_microphone_through_untouched() {
        let mut processor = VoiceProcessor::new(16_000, VoiceSettings::OFF).unwrap();
        let far = noise(16_000, 1, 5000.0);
        let mic = noise(16_000, 2, 3000.0);
        assert_eq!(run(&mut processor, &far, &mic), mic);
    }

    #[test]
    fn echo_of_noise_is_cancelled_at_every_codec_rate() {
        for rate in [8_000u32, 16_000, 48_000] {
            let settings = VoiceSettings {
                echo_cancel: true,
                ..VoiceSettings::OFF
            };
            let mut processor = VoiceProcessor::new(rate, settings).unwrap();
            let n = rate as usize * 6;
            let far = bursts(n, rate as usize);
            let mic = echo_of(&far, rate as usize / 10, 0.3);
            let out = run(&mut processor, &far, &mic);
            let tail = n - rate as usize * 2..n;
            let erle = 20.0 * (rms(&mic[tail.clone()]) / rms(&out[tail]).max(1e-3)).log10();
            assert!(erle > 20.0, "{rate} Hz: ERLE {erle:.1} dB");
        }
    }

    #[test]
    fn monitor_reports_a_jump_in_the_echo_delay_once() {
        let rate = 16_000usize;
        let block = rate / 100;
        let far = bursts(rate * 8, rate);
        let first = echo_of(&far, rate / 10, 0.5);
        let second = echo_of(&far, rate / 4, 0.5);
        let mut monitor = EchoPathMonitor::new();
        let mut jumps = Vec::new();
        for (k, f) in far.chunks_exact(block).enumerate() {
            let mic = if k < 400 { &first } else { &second };
            let to_f32 =
                |x: &[i16]| -> Vec<f32> { x.iter().map(|&v| f32::from(v) / 32768.0).collect() };
            monitor.handle_render(&to_f32(f));
            if monitor.handle_capture(&to_f32(&mic[k * block..(k + 1) * block])) {
                jumps.push(k);
            }
        }
        assert_eq!(jumps.len(), 1, "one jump reported: {jumps:?}");
        assert!(
            (400..460).contains(&jumps[0]),
            "reported within 600 ms of the change: frame {}",
            jumps[0]
        );
    }
}
