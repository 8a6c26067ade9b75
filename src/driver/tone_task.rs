//! The tone player: the ringtone while a call is `incoming`, ringback while an outgoing call
//! rings without early media, a busy tone after 486/600. Tones play when no call has media, so
//! the output device is free: the player opens it like a call's media task would (a sound
//! device, or the `--audio-out` WAV file), plays 20 ms frames from the generators in
//! `media::tones`, and closes it as soon as the tone stops. The SIP task owns at most one
//! player and stops it (and waits for the device to be released) before a call's media starts.
//!
//! A WAV output records the tone; when the call's media then starts it keeps the tone at the
//! head of the file (`MediaIo::append_output`), so a test can find the ringback before the
//! call audio.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::media_task::AudioEndpoint;
use crate::event::Event;
use crate::media::audio::AudioDevice;
use crate::media::samples_per_frame;
use crate::media::tones::{LoopedClip, ToneGenerator, ToneRegion};
use crate::media::wav::{SourceStatus, WavSink, WavSource};

/// Rate of every tone (and of a WAV output the player writes).
pub const TONE_RATE: u32 = 16_000;
/// sipterm's own ringtone (a two-tone trill; made by assets/ringtone.py).
pub static BUILTIN_RINGTONE: &[u8] = include_bytes!("../../assets/ringtone.wav");
/// Silence between two plays of the ringtone.
const RINGTONE_GAP: Duration = Duration::from_secs(2);
/// How long the busy tone plays.
pub const BUSY_TONE: Duration = Duration::from_secs(3);
/// No tone plays longer than this (a call that rings forever does not hold the device).
const MAX_TONE: Duration = Duration::from_secs(300);
/// Longest ringtone file used (the rest is cut).
const MAX_RINGTONE: Duration = Duration::from_secs(30);

/// `[audio] ringtone`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ringtone {
    Off,
    #[default]
    Builtin,
    File(PathBuf),
}

/// What the tones sound like (from `[audio]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToneSettings {
    pub ringtone: Ringtone,
    pub region: ToneRegion,
    /// `[audio] ring_device`: the ringtone plays here when calls use a sound device.
    pub ring_device: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToneKind {
    Ringtone,
    Ringback,
    Busy,
}

/// A playing tone. Dropping `stop` (or `stop()`) ends it.
pub struct ToneHandle {
    pub kind: ToneKind,
    stop: Option<oneshot::Sender<()>>,
    /// Ends once the output is closed; true when the tone went into a WAV file.
    task: JoinHandle<bool>,
}

impl ToneHandle {
    /// Stops the tone and waits (bounded) until the output is closed. True when the tone was
    /// recorded into the WAV output.
    pub async fn stop(mut self) -> bool {
        drop(self.stop.take());
        matches!(
            tokio::time::timeout(Duration::from_secs(2), &mut self.task).await,
            Ok(Ok(true))
        )
    }
}

enum Source {
    Generated(ToneGenerator),
    Clip(LoopedClip),
}

impl Source {
    fn fill(&mut self, out: &mut Vec<i16>, count: usize) {
        match self {
            Source::Generated(g) => g.fill(out, count),
            Source::Clip(c) => c.fill(out, count),
        }
    }
}

/// Decodes a ringtone WAV (any rate/channels `WavSource` reads) into a loop at `rate`.
pub fn ringtone_clip(source: WavSource, rate: u32) -> Result<LoopedClip, String> {
    let mut source = source;
    let mut samples = Vec::new();
    let limit = samples_per_frame(rate) * (MAX_RINGTONE.as_millis() / 20) as usize;
    while samples.len() < limit {
        match source.next_frame(&mut samples) {
            Ok(SourceStatus::Playing) => {}
            Ok(SourceStatus::Ended) => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    // Trailing silence (resampler flush, padding) would only lengthen the gap.
    while samples.last() == Some(&0) {
        samples.pop();
    }
    if samples.is_empty() {
        return Err("the file holds no sound".into());
    }
    let gap = rate as usize * RINGTONE_GAP.as_millis() as usize / 1000;
    Ok(LoopedClip::new(samples, gap))
}

fn builtin_ringtone(rate: u32) -> Result<LoopedClip, String> {
    let source = WavSource::from_reader(Box::new(std::io::Cursor::new(BUILTIN_RINGTONE)), rate)
        .map_err(|e| e.to_string())?;
    ringtone_clip(source, rate)
}

/// Starts a tone on `output`; `None` when there is nothing to play (null output, ringtone
/// off). `device_warned` makes a failing sound device warn once per process, not per ring.
pub fn spawn(
    kind: ToneKind,
    settings: &ToneSettings,
    output: &AudioEndpoint,
    device_warned: Arc<AtomicBool>,
    events: mpsc::Sender<Event>,
) -> Option<ToneHandle> {
    if *output == AudioEndpoint::Null
        || (kind == ToneKind::Ringtone && settings.ringtone == Ringtone::Off)
    {
        return None;
    }
    let (stop, stop_rx) = oneshot::channel();
    let settings = settings.clone();
    let output = tone_output(kind, &settings, output);
    let task =
        tokio::spawn(
            async move { play(kind, settings, output, device_warned, events, stop_rx).await },
        );
    Some(ToneHandle {
        kind,
        stop: Some(stop),
        task,
    })
}

/// Where a tone plays: the ringtone goes to `[audio] ring_device` (the speakers while calls use
/// the headset) when calls use a sound device; a WAV output (a test's recording) keeps all.
fn tone_output(kind: ToneKind, settings: &ToneSettings, output: &AudioEndpoint) -> AudioEndpoint {
    match (kind, &settings.ring_device, output) {
        (ToneKind::Ringtone, Some(ring), AudioEndpoint::Device(_)) => {
            AudioEndpoint::Device(ring.clone())
        }
        _ => output.clone(),
    }
}

async fn play(
    kind: ToneKind,
    settings: ToneSettings,
    output: AudioEndpoint,
    device_warned: Arc<AtomicBool>,
    events: mpsc::Sender<Event>,
    mut stop: oneshot::Receiver<()>,
) -> bool {
    let mut source = match kind {
        ToneKind::Ringback => Source::Generated(settings.region.ringback(TONE_RATE)),
        ToneKind::Busy => Source::Generated(settings.region.busy(TONE_RATE)),
        ToneKind::Ringtone => {
            let clip = match &settings.ringtone {
                Ringtone::File(path) => match WavSource::open(path, TONE_RATE)
                    .map_err(|e| e.to_string())
                    .and_then(|s| ringtone_clip(s, TONE_RATE))
                {
                    Ok(clip) => Ok(clip),
                    Err(e) => {
                        warn(
                            &events,
                            format!("ringtone {}: {e}; playing the built-in one", path.display()),
                        )
                        .await;
                        builtin_ringtone(TONE_RATE)
                    }
                },
                _ => builtin_ringtone(TONE_RATE),
            };
            match clip {
                Ok(clip) => Source::Clip(clip),
                Err(e) => {
                    warn(&events, format!("built-in ringtone: {e}")).await;
                    return false;
                }
            }
        }
    };
    let mut wav = None;
    let mut device = None;
    match &output {
        AudioEndpoint::Null => return false,
        AudioEndpoint::Wav(path) => match WavSink::create(path, TONE_RATE) {
            Ok(sink) => wav = Some(sink),
            Err(e) => {
                warn(
                    &events,
                    format!("cannot write {}: {e}; no tone", path.display()),
                )
                .await;
                return false;
            }
        },
        AudioEndpoint::Device(name) => {
            let name = name.clone();
            let opening = tokio::task::spawn_blocking(move || AudioDevice::open("null", &name));
            // Backends can take seconds to open: a stop meanwhile must not wait for them (the
            // SIP task waits for this player before the call's media opens the device). What
            // opens late is dropped, and so closed, by the blocking task itself.
            let opened = tokio::select! {
                opened = opening => opened,
                _ = &mut stop => return false,
            };
            let mut problems = Vec::new();
            match opened {
                Ok(Ok((mut io, warnings))) => {
                    problems.extend(warnings.into_iter().map(|w| w.0));
                    match io.set_codec_rate(TONE_RATE) {
                        Ok(()) if io.has_playback() => device = Some(io),
                        Ok(()) => {}
                        Err(e) => problems.push(format!("sound output: {e}")),
                    }
                }
                Ok(Err(e)) => problems.push(format!("sound output: {e}")),
                Err(e) => problems.push(format!("sound output: {e}")),
            }
            if device.is_none() {
                if !device_warned.swap(true, Ordering::AcqRel) {
                    let text = if problems.is_empty() {
                        "no sound output".to_string()
                    } else {
                        problems.join("; ")
                    };
                    warn(
                        &events,
                        format!("ringing and call tones are silent: {text}"),
                    )
                    .await;
                }
                return false;
            }
        }
    }
    let frame = samples_per_frame(TONE_RATE);
    let limit = match kind {
        ToneKind::Busy => BUSY_TONE,
        _ => MAX_TONE,
    };
    let frames = (limit.as_millis() / 20) as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut pcm = Vec::with_capacity(frame);
    for _ in 0..frames {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        pcm.clear();
        source.fill(&mut pcm, frame);
        if let Some(sink) = &mut wav
            && let Err(e) = sink.write_frame(&pcm)
        {
            warn(&events, format!("tone: cannot write the audio file: {e}")).await;
            wav = None;
            break;
        }
        if let Some(io) = &mut device {
            if let Some(warning) = io.poll_warning() {
                if !device_warned.swap(true, Ordering::AcqRel) {
                    warn(&events, warning.0).await;
                }
                break;
            }
            io.write_frame(&pcm);
        }
    }
    // Release the device now (its thread joins on drop), off the async threads.
    if let Some(io) = device.take() {
        let _ = tokio::task::spawn_blocking(move || drop(io)).await;
    }
    match wav {
        Some(sink) => match sink.finalize() {
            Ok(()) => true,
            Err(e) => {
                warn(&events, format!("tone: cannot finish the audio file: {e}")).await;
                false
            }
        },
        None => false,
    }
}

async fn warn(events: &mpsc::Sender<Event>, message: String) {
    tracing::warn!("{message}");
    let _ = events.send(Event::Warning { message }).await;
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_ringtone_plays_on_the_ring_device_when_calls_use_sound_devices() {
        let settings = ToneSettings {
            ring_device: Some("speakers".into()),
            ..ToneSettings::default()
        };
        let headset = AudioEndpoint::Device("headset".into());
        assert_eq!(
            tone_output(ToneKind::Ringtone, &settings, &headset),
            AudioEndpoint::Device("speakers".into())
        );
        // Ringback and busy belong to the call being placed: the headset.
        assert_eq!(
            tone_output(ToneKind::Ringback, &settings, &headset),
            headset
        );
        // A WAV output records everything, the ringtone too.
        let wav = AudioEndpoint::Wav("out.wav".into());
        assert_eq!(tone_output(ToneKind::Ringtone, &settings, &wav), wav);
        assert_eq!(
            tone_output(ToneKind::Ringtone, &ToneSettings::default(), &headset),
            headset
        );
    }

    use super::*;
    use crate::media::tones::{cadence, goertzel_power};

    #[test]
    fn builtin_ringtone_is_a_two_tone_trill() {
        let mut clip = builtin_ringtone(TONE_RATE).expect("decodes");
        let mut samples = Vec::new();
        clip.fill(&mut samples, TONE_RATE as usize * 5);
        // First 0.8 s: C6/E6 trill; both notes strong, little elsewhere.
        let trill = &samples[..TONE_RATE as usize * 8 / 10];
        let c6 = goertzel_power(trill, TONE_RATE, 1046.5);
        let e6 = goertzel_power(trill, TONE_RATE, 1318.5);
        let off = goertzel_power(trill, TONE_RATE, 700.0);
        assert!(c6 > 0.005 && e6 > 0.005, "{c6} {e6}");
        assert!(c6 > 50.0 * off && e6 > 50.0 * off, "{c6} {e6} {off}");
        // trill 0.8 s, pause 0.4 s, trill 0.8 s, then the 2 s gap before it repeats.
        let runs = cadence(&samples, TONE_RATE, 50, 500.0);
        let head: Vec<(bool, u32)> = runs.iter().take(4).copied().collect();
        assert_eq!(
            head,
            vec![(true, 800), (false, 400), (true, 800), (false, 2000)],
            "{runs:?}"
        );
        assert!(runs.get(4).is_some_and(|r| r.0), "{runs:?}");
    }

    #[test]
    fn builtin_ringtone_resamples_to_codec_rates() {
        for rate in [8000, 48_000] {
            let mut clip = builtin_ringtone(rate).expect("decodes");
            let mut samples = Vec::new();
            clip.fill(&mut samples, rate as usize / 2);
            let c6 = goertzel_power(&samples, rate, 1046.5);
            assert!(c6 > 0.005, "{rate}: {c6}");
        }
    }
}
