//! The voice processing pipeline (`media::voice`) measured on speech, as the issue asks:
//! espeak-ng speaks the test sentences (made here, offline); the echo path is simulated
//! (delay 50-250 ms, -6 to -20 dB, a short reverberation tail), noise is added at 5 dB SNR.
//! Everything runs on the 48 kHz (Opus) path, frame by frame as the media task drives it.
//!
//! Figures are printed (`cargo test --test voice_processing -- --nocapture`) and asserted:
//! - echo return loss enhancement after 2 s of convergence, single talk: >= 30 dB;
//! - near-end speech during double talk loses at most 6 dB;
//! - a jump of the echo delay reconverges within 1 s (>= 30 dB from then on);
//! - noise suppression improves the SNR (white and babble noise at 5 dB);
//! - quiet speech at -40 dBFS comes out within 3 dB of the gain control's target level.
//!
//! Needs `espeak-ng` (the Makefile's TEST_DEPS): fails, never skips, without it.

mod common;

use std::path::Path;
use std::process::Command;

use sipterm::media::resample::Resampler;
use sipterm::media::samples_per_frame;
use sipterm::media::voice::{AGC_TARGET_DBFS, VoiceProcessor, VoiceSettings};

const RATE: u32 = 48_000;
const FRAME: usize = (RATE / 50) as usize;

const FAR_TEXT: &str = "The quick brown fox jumps over the lazy dog. Please call me back when \
    you get this message, the meeting has been moved to Thursday afternoon at three o'clock. We \
    will discuss the budget, the schedule and the new office.";
const NEAR_TEXT: &str = "Hello, can you hear me? I am speaking from the near end of the line \
    while the other person is talking, and the echo canceller must keep my voice.";

/// `text` spoken by espeak-ng, at 48 kHz, peak-normalised to `peak`.
fn speech(dir: &Path, name: &str, voice: &str, text: &str, peak: f32) -> Vec<f32> {
    let path = dir.join(format!("{name}.wav"));
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "160", "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .expect("running espeak-ng (install it: make test-deps)");
    assert!(status.success(), "espeak-ng failed");
    let (rate, samples) = common::headless::read_wav(&path).expect("espeak-ng's WAV");
    let mut resampler = Resampler::new(rate, RATE).expect("resampler");
    let mut out = Vec::new();
    for chunk in samples.chunks_exact(samples_per_frame(rate)) {
        resampler.process(chunk, &mut out).expect("resample");
    }
    let max = out
        .iter()
        .map(|v| v.unsigned_abs())
        .max()
        .unwrap_or(1)
        .max(1);
    out.iter()
        .map(|&v| f32::from(v) / f32::from(max) * peak)
        .collect()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// A room: the direct echo at `delay_ms` and `gain_db`, then a 60 ms decaying tail.
fn echo_path(delay_ms: f32, gain_db: f32) -> Vec<(usize, f32)> {
    let delay = (delay_ms / 1000.0 * RATE as f32) as usize;
    let gain = 10f32.powf(gain_db / 20.0);
    let mut rng = Rng(0x5eed);
    let mut taps = vec![(delay, gain)];
    let tail = RATE as usize * 60 / 1000;
    for k in (12..tail).step_by(24) {
        let decay = (-(k as f32) / (RATE as f32 * 0.015)).exp();
        taps.push((delay + k, gain * 0.3 * rng.next() * decay));
    }
    taps
}

fn convolve(x: &[f32], taps: &[(usize, f32)]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for &(k, g) in taps {
        for i in k..x.len() {
            y[i] += g * x[i - k];
        }
    }
    y
}

fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn to_f32(x: &[i16]) -> Vec<f32> {
    x.iter().map(|&v| f32::from(v) / 32768.0).collect()
}

/// Drives the processor like the media task: the frame played, then the frame captured.
fn process(settings: VoiceSettings, far: &[f32], mic: &[f32]) -> Vec<f32> {
    let mut processor = VoiceProcessor::new(RATE, settings).expect("processor");
    let (far, mic) = (to_i16(far), to_i16(mic));
    let mut out = Vec::with_capacity(mic.len());
    for (f, m) in far.chunks_exact(FRAME).zip(mic.chunks_exact(FRAME)) {
        processor.handle_played(f);
        let mut frame = m.to_vec();
        processor.process_capture(&mut frame);
        out.extend_from_slice(&frame);
    }
    to_f32(&out)
}

fn power(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

fn db(ratio: f64) -> f64 {
    10.0 * ratio.max(1e-20).log10()
}

fn seconds(s: f64) -> usize {
    (s * f64::from(RATE)) as usize
}

/// Echo return loss enhancement over [from, to) s: echo power in the microphone over residual
/// power in the output, counting the 10 ms blocks where there is echo.
fn erle(echo: &[f32], out: &[f32], from: f64, to: f64) -> f64 {
    let block = FRAME / 2;
    let (mut e, mut o) = (0.0, 0.0);
    let end = seconds(to).min(out.len());
    for k in (seconds(from)..end.saturating_sub(block)).step_by(block) {
        let pe = power(&echo[k..k + block]);
        if db(pe / block as f64) > -60.0 {
            e += pe;
            o += power(&out[k..k + block]);
        }
    }
    db(e / o.max(1e-20))
}

fn far_speech(dir: &Path) -> Vec<f32> {
    let far = speech(dir, "far", "en-us", FAR_TEXT, 0.6);
    // Twice, for a long single-talk stretch.
    far.iter().chain(far.iter()).copied().collect()
}

fn with_mic_noise(x: &[f32]) -> Vec<f32> {
    // A real microphone's noise floor (about -75 dBFS).
    let mut rng = Rng(77);
    x.iter().map(|&v| v + 0.0003 * rng.next()).collect()
}

#[test]
fn echo_is_cancelled_by_30_db_in_single_talk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let far = far_speech(dir.path());
    let far = &far[..seconds(14.0).min(far.len())];
    let on = VoiceSettings {
        echo_cancel: true,
        ..VoiceSettings::OFF
    };
    let mut worst = f64::MAX;
    for delay in [50.0, 150.0, 250.0] {
        for gain in [-6.0, -20.0] {
            let echo = convolve(far, &echo_path(delay, gain));
            let out = process(on, far, &with_mic_noise(&echo));
            let converged = erle(&echo, &out, 2.0, 14.0);
            println!(
                "single talk, echo delay {delay} ms at {gain} dB: ERLE {converged:.1} dB after 2 s ({:.1} dB in the first 2 s)",
                erle(&echo, &out, 0.0, 2.0)
            );
            worst = worst.min(converged);
        }
    }
    assert!(
        worst >= 30.0,
        "ERLE after 2 s is at least 30 dB in single talk (worst {worst:.1} dB)"
    );
}

#[test]
fn near_end_speech_loses_at_most_6_db_in_double_talk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let far = far_speech(dir.path());
    let near_speech = speech(dir.path(), "near", "en+f3", NEAR_TEXT, 0.5);
    let start = seconds(6.0);
    let len = (start + near_speech.len()).min(far.len());
    let far = &far[..len];
    let mut near = vec![0.0f32; len];
    near[start..].copy_from_slice(&near_speech[..len - start]);
    let on = VoiceSettings {
        echo_cancel: true,
        ..VoiceSettings::OFF
    };
    let mut worst = 0.0f64;
    for gain in [-6.0, -12.0, -20.0] {
        let echo = convolve(far, &echo_path(150.0, gain));
        let mic: Vec<f32> = echo.iter().zip(&near).map(|(e, n)| e + n).collect();
        let out = process(on, far, &with_mic_noise(&mic));
        // Level of the output against the near-end speech alone, over the 20 ms blocks where
        // both talk: what the far end hears of the near-end talker.
        let (mut near_power, mut out_power, mut echo_power) = (0.0, 0.0, 0.0);
        for k in (start..len - FRAME).step_by(FRAME) {
            let pn = power(&near[k..k + FRAME]);
            let pe = power(&echo[k..k + FRAME]);
            if db(pn / FRAME as f64) > -45.0 && db(pe / FRAME as f64) > -60.0 {
                near_power += pn;
                echo_power += pe;
                out_power += power(&out[k..k + FRAME]);
            }
        }
        let loss = db(near_power / out_power);
        println!(
            "double talk, echo at {gain} dB ({:.1} dB against the near end): near-end speech loses {loss:.1} dB",
            db(echo_power / near_power)
        );
        worst = worst.max(loss);
    }
    assert!(
        worst <= 6.0,
        "near-end speech loses at most 6 dB in double talk (worst {worst:.1} dB)"
    );
}

#[test]
fn a_jump_of_the_echo_delay_reconverges_within_1_s() {
    let dir = tempfile::tempdir().expect("temp dir");
    let far = far_speech(dir.path());
    let far = &far[..seconds(16.0).min(far.len())];
    let change = 8.0;
    let on = VoiceSettings {
        echo_cancel: true,
        ..VoiceSettings::OFF
    };
    let mut worst = f64::MAX;
    for (before, after) in [(100.0, 220.0), (220.0, 60.0)] {
        let first = convolve(far, &echo_path(before, -10.0));
        let second = convolve(far, &echo_path(after, -10.0));
        let echo: Vec<f32> = (0..far.len())
            .map(|i| {
                if i < seconds(change) {
                    first[i]
                } else {
                    second[i]
                }
            })
            .collect();
        let out = process(on, far, &with_mic_noise(&echo));
        let windows: Vec<String> = (0..12)
            .map(|q| {
                let from = change + q as f64 * 0.25;
                format!("{:.0}", erle(&echo, &out, from, from + 0.25))
            })
            .collect();
        let reconverged = erle(&echo, &out, change + 1.0, change + 6.0);
        println!(
            "echo delay {before} -> {after} ms: ERLE before {:.1} dB; per 250 ms after the jump: {}; from 1 s after: {reconverged:.1} dB",
            erle(&echo, &out, 2.0, change),
            windows.join(" ")
        );
        worst = worst.min(reconverged);
    }
    assert!(
        worst >= 30.0,
        "ERLE is back above 30 dB 1 s after a delay jump (worst {worst:.1} dB)"
    );
}

/// SNR of `out`, using the clean speech to tell speech from pauses: the noise is the mean
/// power of `out` in the 20 ms blocks where the clean speech is silent, the speech what the
/// blocks with speech carry above that. (Returns the SNR and the speech level.) `lag`: the
/// processing delay.
fn snr(clean: &[f32], out: &[f32], lag: usize) -> (f64, f64) {
    let (mut speech, mut speech_blocks, mut noise, mut noise_blocks) = (0.0, 0, 0.0, 0);
    let loudest = clean.chunks_exact(FRAME).map(power).fold(0.0f64, f64::max);
    for k in (seconds(3.0)..clean.len() - FRAME - lag).step_by(FRAME) {
        let c = power(&clean[k..k + FRAME]);
        let o = power(&out[k + lag..k + lag + FRAME]);
        if c < loudest * 1e-6 {
            noise += o;
            noise_blocks += 1;
        } else if c > loudest * 1e-2 {
            speech += o;
            speech_blocks += 1;
        }
    }
    let noise = noise / f64::from(noise_blocks.max(1));
    let speech = (speech / f64::from(speech_blocks.max(1)) - noise).max(1e-20);
    (db(speech / noise.max(1e-20)), db(speech))
}

/// The delay the pipeline adds (band-split filters): where the output best matches the input.
fn processing_lag(clean: &[f32], out: &[f32]) -> usize {
    let range = seconds(3.0)..seconds(6.0);
    (0..2000)
        .max_by(|&a, &b| {
            let c = |lag: usize| -> f64 {
                range
                    .clone()
                    .map(|i| f64::from(clean[i]) * f64::from(out[i + lag]))
                    .sum()
            };
            c(a).total_cmp(&c(b))
        })
        .unwrap_or(0)
}

#[test]
fn noise_suppression_raises_the_snr_of_speech_in_noise() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clean = speech(dir.path(), "clean", "en-us", FAR_TEXT, 0.3);
    let speech_power = power(&clean) / clean.len() as f64;
    let mut rng = Rng(4242);
    let white: Vec<f32> = (0..clean.len()).map(|_| rng.next()).collect();
    // Babble: four other talkers at once, shifted.
    let others = [
        speech(dir.path(), "b1", "en+m3", NEAR_TEXT, 0.3),
        speech(dir.path(), "b2", "en+f2", FAR_TEXT, 0.3),
        speech(dir.path(), "b3", "en+m7", NEAR_TEXT, 0.3),
        speech(dir.path(), "b4", "en+f4", FAR_TEXT, 0.3),
    ];
    let babble: Vec<f32> = (0..clean.len())
        .map(|i| {
            others
                .iter()
                .enumerate()
                .map(|(n, o)| o[(i + n * seconds(1.3)) % o.len()])
                .sum()
        })
        .collect();
    let ns = VoiceSettings {
        noise_suppression: true,
        ..VoiceSettings::OFF
    };
    let silence = vec![0.0f32; clean.len()];
    let mut gains = Vec::new();
    for (name, noise) in [("white", white), ("babble", babble)] {
        // Scale the noise for 5 dB SNR.
        let scale = (speech_power / 10f64.powf(0.5) / (power(&noise) / noise.len() as f64)).sqrt();
        let noisy: Vec<f32> = clean
            .iter()
            .zip(&noise)
            .map(|(c, n)| c + n * scale as f32)
            .collect();
        let (before, speech_before) = snr(&clean, &noisy, 0);
        let out = process(ns, &silence, &noisy);
        let lag = processing_lag(&clean, &out);
        let (after, speech_after) = snr(&clean, &out, lag);
        println!(
            "noise suppression, {name} noise: SNR {before:.1} dB -> {after:.1} dB (gain {:.1} dB; speech level {:+.1} dB)",
            after - before,
            speech_after - speech_before
        );
        gains.push((name, after - before));
    }
    for (name, gain) in gains {
        // A stationary-noise suppressor (WebRTC's) cannot take other talkers out; it must
        // not make babble worse either.
        let floor = if name == "white" { 6.0 } else { 0.0 };
        assert!(
            gain >= floor,
            "{name} noise: SNR gain {gain:.1} dB (at least {floor} dB)"
        );
    }
}

#[test]
fn quiet_speech_comes_out_near_the_gain_target() {
    let dir = tempfile::tempdir().expect("temp dir");
    let talk = speech(dir.path(), "quiet", "en-us", FAR_TEXT, 0.3);
    let talk: Vec<f32> = talk.iter().chain(talk.iter()).copied().collect();
    let active = |x: &[f32], from: usize| -> f64 {
        // Active speech level: the RMS of the 20 ms blocks within 20 dB of the loudest.
        let blocks: Vec<f64> = x[from..]
            .chunks_exact(FRAME)
            .map(|b| power(b) / FRAME as f64)
            .collect();
        let loudest = blocks.iter().copied().fold(0.0, f64::max);
        let loud: Vec<f64> = blocks
            .into_iter()
            .filter(|&p| p > loudest / 100.0)
            .collect();
        db(loud.iter().sum::<f64>() / loud.len().max(1) as f64)
    };
    let agc = VoiceSettings {
        auto_gain: true,
        ..VoiceSettings::OFF
    };
    let silence = vec![0.0f32; talk.len()];
    let mut worst = 0.0f64;
    for input_dbfs in [-40.0, -25.0] {
        let scale = 10f64.powf((input_dbfs - active(&talk, 0)) / 20.0) as f32;
        let quiet: Vec<f32> = talk.iter().map(|v| v * scale).collect();
        let out = process(agc, &silence, &with_mic_noise(&quiet));
        // After 8 s of adaptation.
        let level = active(&out, seconds(8.0));
        println!(
            "gain control: speech at {:.1} dBFS comes out at {level:.1} dBFS (target {AGC_TARGET_DBFS} dBFS)",
            active(&quiet, 0)
        );
        worst = worst.max((level - f64::from(AGC_TARGET_DBFS)).abs());
    }
    assert!(
        worst <= 3.0,
        "speech comes out within 3 dB of {AGC_TARGET_DBFS} dBFS (worst {worst:.1} dB off)"
    );
}
