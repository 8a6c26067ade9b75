//! A call's audio between the codec and the outside world: the sound devices (switched during
//! the call, or moved to the default device when one disappears), voice processing (echo
//! cancellation, noise suppression, gain control) and recording. The media task calls it once
//! per 20 ms tick: [`CallAudio::capture`] before encoding, [`CallAudio::play`] after decoding.
//!
//! Opening a device takes the backend up to seconds, so it happens on a blocking thread while
//! the call goes on with the old device (or silence); the result comes back through the
//! channel the media task polls ([`CallAudio::handle_opened`]).

use std::path::PathBuf;
use std::time::Instant;

use tokio::sync::mpsc;

use super::command::AudioCommand;
use super::voice_thread::{Done, VoiceWorker};
use crate::event::Event;
use crate::media::audio::{AudioDevice, AudioIo, Capture, DeviceNews, Direction, Playback};
use crate::media::record::{CallRecorder, default_recording_path};
use crate::media::voice::VoiceSettings;

/// A lost device is replaced by the default one at most this often per call and direction
/// (the default itself may be the device that keeps failing).
const MAX_FALLBACKS: u32 = 3;

/// The `[audio]` processing keys: `None` = automatic (on with sound devices, off with files).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessingConfig {
    pub echo_cancel: Option<bool>,
    pub noise_suppression: Option<bool>,
    pub auto_gain: Option<bool>,
}

impl ProcessingConfig {
    /// The stages to run: echo cancellation needs both a microphone and a speaker, noise
    /// suppression and gain control a microphone; set keys override.
    pub fn resolve(self, device_input: bool, device_output: bool) -> VoiceSettings {
        VoiceSettings {
            echo_cancel: self.echo_cancel.unwrap_or(device_input && device_output),
            noise_suppression: self.noise_suppression.unwrap_or(device_input),
            auto_gain: self.auto_gain.unwrap_or(device_input),
        }
    }
}

/// A device open that finished on its blocking thread.
pub enum Opened {
    Input {
        result: Result<Option<Capture>, String>,
        requested: String,
        /// Set when this replaces a lost device: when it was lost.
        lost_at: Option<Instant>,
    },
    Output {
        result: Result<Option<Playback>, String>,
        requested: String,
        lost_at: Option<Instant>,
    },
}

pub struct CallAudio {
    call: u64,
    codec_rate: u32,
    device: Option<AudioIo>,
    settings: VoiceSettings,
    voice: Option<VoiceWorker>,
    recorder: Option<CallRecorder>,
    /// The reference for the echo canceller this tick.
    played: Vec<i16>,
    opened: mpsc::UnboundedSender<Opened>,
    fallbacks: [u32; 2],
    /// Something the front end shows changed: send an `audio` event.
    changed: bool,
    /// Frames the microphone had not delivered in full even after the wait.
    capture_late: u64,
}

impl CallAudio {
    pub fn new(
        call: u64,
        codec_rate: u32,
        device: Option<AudioIo>,
        settings: VoiceSettings,
        opened: mpsc::UnboundedSender<Opened>,
    ) -> (CallAudio, Vec<String>) {
        let mut audio = CallAudio {
            call,
            codec_rate,
            device,
            settings,
            voice: None,
            recorder: None,
            played: Vec::with_capacity(2048),
            opened,
            fallbacks: [0; 2],
            changed: true,
            capture_late: 0,
        };
        let warnings = audio.build_voice().into_iter().collect();
        (audio, warnings)
    }

    fn build_voice(&mut self) -> Option<String> {
        if !self.settings.any() {
            self.voice = None;
            return None;
        }
        match &mut self.voice {
            Some(voice) if voice.codec_rate() == self.codec_rate => {
                voice.set_settings(self.settings);
                None
            }
            _ => match VoiceWorker::start(self.codec_rate, self.settings) {
                Ok(voice) => {
                    self.voice = Some(voice);
                    None
                }
                Err(e) => {
                    self.voice = None;
                    Some(format!("voice processing is off: {e}"))
                }
            },
        }
    }

    pub fn device_mut(&mut self) -> Option<&mut AudioIo> {
        self.device.as_mut()
    }

    /// The codec changed: frames come at another rate now.
    pub fn set_codec_rate(&mut self, rate: u32) -> Vec<String> {
        let mut warnings = Vec::new();
        self.codec_rate = rate;
        if let Some(device) = &mut self.device
            && let Err(e) = device.set_codec_rate(rate)
        {
            warnings.push(format!("sound devices: {e}; using silence"));
            self.device = None;
        }
        warnings.extend(self.build_voice());
        warnings
    }

    /// False while the microphone has not delivered this tick's frame yet: reading now would
    /// send silence, and the frame would come a tick late.
    pub fn capture_ready(&self) -> bool {
        self.device.as_ref().is_none_or(AudioIo::capture_ready)
    }

    /// One 20 ms frame from the microphone (when there is one; else `pcm` keeps what the
    /// WAV source gave) into `pcm`. True: ready to send. False: it went to the voice
    /// processing, and [`Self::processed`] / [`Self::take_processed`] bring it back.
    pub fn capture(&mut self, pcm: &mut Vec<i16>) -> bool {
        self.played.clear();
        let mut from_device = false;
        if let Some(device) = &mut self.device {
            device.read_frame(pcm);
            from_device = device.read_played(&mut self.played);
        }
        match &mut self.voice {
            Some(voice) => {
                if from_device {
                    voice.handle_played(&self.played);
                }
                voice.submit(pcm);
                false
            }
            None => true,
        }
    }

    /// The next frame back from the voice processing; never, without it (a `select!` branch).
    pub async fn processed(&mut self) -> Option<Done> {
        match &mut self.voice {
            Some(voice) => voice.processed().await,
            None => std::future::pending().await,
        }
    }

    /// Puts a processed frame into `pcm`; false when it is not the frame last captured.
    pub fn take_processed(&mut self, done: Done, pcm: &mut [i16]) -> bool {
        self.voice
            .as_mut()
            .is_some_and(|voice| voice.take(done, pcm))
    }

    /// The microphone had not delivered the whole frame after the wait: it goes with
    /// silence where the samples were missing (logged at powers of two).
    pub fn capture_late(&mut self) {
        self.capture_late += 1;
        if self.capture_late.is_power_of_two() {
            tracing::warn!(
                call = self.call,
                "sound input late {} time(s): frame sent with silence",
                self.capture_late
            );
        }
    }

    /// The frame last captured was not processed in time: it goes out as it is.
    pub fn processing_late(&mut self) {
        if let Some(voice) = &mut self.voice {
            voice.note_late();
        }
    }

    /// What goes to the far end this tick (`None`: nothing, muted or on hold): the left
    /// channel of a recording.
    pub fn sent(&mut self, pcm: Option<&[i16]>) {
        if let Some(recorder) = &mut self.recorder {
            let silence;
            let frame = match pcm {
                Some(pcm) => pcm,
                None => {
                    silence = vec![0i16; crate::media::samples_per_frame(self.codec_rate)];
                    &silence
                }
            };
            recorder.write_sent(frame, self.codec_rate);
        }
    }

    /// Plays one decoded frame; without a speaker it is the echo reference itself.
    pub fn play(&mut self, pcm: &[i16]) -> Option<String> {
        let has_playback = match &mut self.device {
            Some(device) => {
                device.write_frame(pcm);
                device.has_playback()
            }
            None => false,
        };
        if !has_playback && let Some(voice) = &mut self.voice {
            voice.handle_played(pcm);
        }
        let recorder = self.recorder.as_mut()?;
        let error = recorder.write_played(pcm, self.codec_rate).err()?;
        let path = recorder.path().display().to_string();
        self.recorder = None;
        self.changed = true;
        Some(format!("recording to {path} stopped: {error}"))
    }

    /// Once per tick: device trouble. A lost device is closed and the default one opened in
    /// its place (in the background); the returned messages are warnings for the user.
    pub fn poll(&mut self) -> Option<String> {
        let news = self.device.as_mut()?.poll()?;
        match news {
            DeviceNews::Warning(w) => Some(w.0),
            DeviceNews::Lost {
                direction,
                name,
                why,
            } => {
                self.changed = true;
                let side = match direction {
                    Direction::Input => 0,
                    Direction::Output => 1,
                };
                let what = match direction {
                    Direction::Input => "input",
                    Direction::Output => "output",
                };
                if self.fallbacks[side] >= MAX_FALLBACKS {
                    return Some(format!(
                        "sound {what} `{name}` failed: {why}; no more fallbacks, that direction is silent"
                    ));
                }
                self.fallbacks[side] += 1;
                self.open(direction, "default".into(), Some(Instant::now()));
                Some(format!(
                    "sound {what} `{name}` failed: {why}; moving to the default device"
                ))
            }
        }
    }

    fn open(&self, direction: Direction, name: String, lost_at: Option<Instant>) {
        let opened = self.opened.clone();
        tokio::task::spawn_blocking(move || {
            let message = match direction {
                Direction::Input => Opened::Input {
                    result: Capture::open(&name),
                    requested: name,
                    lost_at,
                },
                Direction::Output => Opened::Output {
                    result: Playback::open(&name),
                    requested: name,
                    lost_at,
                },
            };
            let _ = opened.send(message);
        });
    }

    /// A device opened in the background: put it in place. Returns what to tell the user.
    pub fn handle_opened(&mut self, opened: Opened) -> Option<String> {
        self.changed = true;
        if self.device.is_none() {
            // The call had no devices at all (files): a device switch starts them.
            match AudioDevice::open("null", "null") {
                Ok((mut device, _)) => {
                    if device.set_codec_rate(self.codec_rate).is_err() {
                        return Some("sound devices: unusable codec rate".into());
                    }
                    self.device = Some(device);
                }
                Err(e) => return Some(format!("sound devices: {e}")),
            }
        }
        let device = self.device.as_mut()?;
        let (what, requested, lost_at, replaced) = match opened {
            Opened::Input {
                result,
                requested,
                lost_at,
            } => match result {
                Ok(capture) => (
                    "input",
                    requested,
                    lost_at,
                    device.replace_capture(capture).map(drop_later),
                ),
                Err(why) => return Some(format!("sound input `{requested}`: {why}")),
            },
            Opened::Output {
                result,
                requested,
                lost_at,
            } => match result {
                Ok(playback) => (
                    "output",
                    requested,
                    lost_at,
                    device.replace_playback(playback).map(drop_later),
                ),
                Err(why) => return Some(format!("sound output `{requested}`: {why}")),
            },
        };
        if let Err(e) = replaced {
            return Some(format!("sound {what} `{requested}`: {e}"));
        }
        // Another device, another echo path: the canceller starts over rather than finding out.
        if let Some(voice) = &self.voice {
            voice.reset_echo_path();
        }
        let now_using = match what {
            "input" => device.input_name(),
            _ => device.output_name(),
        }
        .unwrap_or("null")
        .to_owned();
        Some(match lost_at {
            Some(at) => format!(
                "sound {what} now `{now_using}`, {} ms after the device was lost",
                at.elapsed().as_millis()
            ),
            None => format!("sound {what} now `{now_using}`"),
        })
    }

    /// A user's change. Returns what to tell the user.
    pub fn handle_command(&mut self, command: AudioCommand, unix_seconds: u64) -> Option<String> {
        self.changed = true;
        match command {
            AudioCommand::Record(path) => {
                let path = match path.or_else(|| default_recording_path(self.call, unix_seconds)) {
                    Some(path) => path,
                    None => return Some("recording: no data directory (set XDG_DATA_HOME)".into()),
                };
                if let Some(old) = self.recorder.take() {
                    let _ = old.finalize();
                }
                match CallRecorder::create(&path, self.codec_rate) {
                    Ok(recorder) => {
                        self.recorder = Some(recorder);
                        None
                    }
                    Err(e) => Some(format!("cannot record to {}: {e}", path.display())),
                }
            }
            AudioCommand::RecordStop => self
                .stop_recording()
                .map(|p| format!("recording saved: {}", p.display())),
            AudioCommand::Processing {
                echo_cancel,
                noise_suppression,
                auto_gain,
            } => {
                self.settings = VoiceSettings {
                    echo_cancel: echo_cancel.unwrap_or(self.settings.echo_cancel),
                    noise_suppression: noise_suppression.unwrap_or(self.settings.noise_suppression),
                    auto_gain: auto_gain.unwrap_or(self.settings.auto_gain),
                };
                self.build_voice()
            }
            AudioCommand::Devices { input, output } => {
                if let Some(name) = input {
                    self.open(Direction::Input, name, None);
                }
                if let Some(name) = output {
                    self.open(Direction::Output, name, None);
                }
                None
            }
        }
    }

    /// Ends the recording (at the end of the call too); the file's path when there was one.
    pub fn stop_recording(&mut self) -> Option<PathBuf> {
        let recorder = self.recorder.take()?;
        self.changed = true;
        recorder.finalize().ok()
    }

    /// The `audio` event, when something it says changed since the last one.
    pub fn poll_event(&mut self) -> Option<Event> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        Some(Event::Audio {
            call: self.call.to_string(),
            processing: self
                .voice
                .as_ref()
                .map_or(VoiceSettings::OFF, VoiceWorker::settings)
                .label(),
            recording: self
                .recorder
                .as_ref()
                .map(|r| r.path().display().to_string()),
            input: self
                .device
                .as_ref()
                .and_then(|d| d.input_name().map(str::to_owned)),
            output: self
                .device
                .as_ref()
                .and_then(|d| d.output_name().map(str::to_owned)),
        })
    }
}

/// Drops a replaced device off the async runtime: dropping joins its stream thread.
fn drop_later<T: Send + 'static>(old: Option<T>) {
    if let Some(old) = old {
        tokio::task::spawn_blocking(move || drop(old));
    }
}

impl Drop for CallAudio {
    fn drop(&mut self) {
        if let Some(recorder) = self.recorder.take() {
            let _ = recorder.finalize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processing_is_on_with_sound_devices_and_off_with_files_unless_configured() {
        let auto = ProcessingConfig::default();
        assert_eq!(auto.resolve(true, true), VoiceSettings::ON);
        assert_eq!(auto.resolve(false, false), VoiceSettings::OFF);
        // A microphone with a WAV output: nothing to cancel, but noise and gain still apply.
        let mic_only = auto.resolve(true, false);
        assert!(!mic_only.echo_cancel && mic_only.noise_suppression && mic_only.auto_gain);
        let forced = ProcessingConfig {
            echo_cancel: Some(true),
            noise_suppression: Some(false),
            auto_gain: None,
        };
        let settings = forced.resolve(false, false);
        assert!(settings.echo_cancel && !settings.noise_suppression && !settings.auto_gain);
    }
}
