//! Real sound devices end to end: a private PulseAudio daemon with null sinks
//! (tests/data/pulse/, started in a temp dir) stands in for the sound card. One headless
//! sipterm uses `pulseaudio:sipterm_in.monitor` as microphone and `pulseaudio:sipterm_out` as
//! speaker through cpal; a second one (WAV files) is its far end.
//! - capture: the test plays 700 Hz into `sipterm_in` with paplay; the far end must record it;
//! - playback: the far end sends 1000 Hz; parecord on `sipterm_out.monitor` must hear it.
//!
//! Needs `pulseaudio pulseaudio-utils` (the Makefile's TEST_DEPS): fails, never skips, without.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::headless::{Headless, HeadlessOptions, read_wav, sine, write_wav};
use common::process::{ChildGuard, Stdout};
use sipterm::media::tones::{dominant_frequency, goertzel_power, rms};

const SIGNALLING: Duration = Duration::from_secs(10);
const MIC_TONE: f32 = 700.0;
const FAR_TONE: f32 = 1000.0;

fn pulse_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pulse")
}

/// A private PulseAudio daemon; stopped (pa-stop.sh) on drop.
struct Pulse {
    dir: tempfile::TempDir,
}

impl Pulse {
    fn start() -> Pulse {
        // Short path: the socket path must stay under 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("sipterm-pa-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let out = Command::new(pulse_dir().join("pa-start.sh"))
            .arg(dir.path())
            .output()
            .expect(
                "running tests/data/pulse/pa-start.sh (is pulseaudio installed? make test-deps)",
            );
        assert!(
            out.status.success(),
            "pa-start.sh failed (install pulseaudio pulseaudio-utils: make test-deps): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Pulse { dir }
    }

    fn server(&self) -> String {
        format!("unix:{}/pulse/native", self.dir.path().display())
    }

    fn cookie(&self) -> PathBuf {
        self.dir.path().join("home/.config/pulse/cookie")
    }

    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("PULSE_SERVER", self.server())
            .env("PULSE_COOKIE", self.cookie());
        command
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = Command::new(pulse_dir().join("pa-stop.sh"))
            .arg(self.dir.path())
            .output();
    }
}

fn write_tone(path: &Path, frequency: f32, seconds: f32) {
    write_wav(path, 48_000, &sine(frequency, 48_000, seconds, 12_000.0)).expect("write WAV");
}

#[test]
fn pulseaudio_device_captures_and_plays_a_call() {
    let pulse = Pulse::start();
    let work = tempfile::tempdir().expect("temp dir");
    let mic = work.path().join("mic.wav");
    let far_in = work.path().join("far_in.wav");
    let far_out = work.path().join("far_out.wav");
    let speaker = work.path().join("speaker.wav");
    write_tone(&mic, MIC_TONE, 8.0);
    write_tone(&far_in, FAR_TONE, 8.0);

    let server = pulse.server();
    let cookie = pulse.cookie();
    let env = [
        ("PULSE_SERVER", OsStr::new(&server)),
        ("PULSE_COOKIE", cookie.as_os_str()),
    ];
    let config =
        "[audio]\ninput = \"pulseaudio:sipterm_in.monitor\"\noutput = \"pulseaudio:sipterm_out\"\n";
    let mut near = Headless::spawn_with(
        "near",
        &HeadlessOptions {
            config_toml: Some(config.into()),
            ..Default::default()
        },
        &env,
        true,
    )
    .expect("near sipterm starts");
    let mut far = Headless::spawn(
        "far",
        &HeadlessOptions {
            audio_in: Some(far_in),
            audio_out: Some(far_out.clone()),
            auto_answer_ms: Some(0),
            ..Default::default()
        },
    )
    .expect("far sipterm starts");

    // The microphone: paplay into the sink whose monitor sipterm captures.
    let mut paplay = ChildGuard::spawn(
        "paplay",
        {
            let mut c = pulse.client("paplay");
            c.args(["-d", "sipterm_in"]).arg(&mic);
            c
        },
        Stdout::File,
        Some(&work.path().join("paplay-logs")),
    )
    .expect("paplay starts (pulseaudio-utils installed?)");
    // The speaker: parecord from the monitor of the sink sipterm plays into.
    let mut parecord = ChildGuard::spawn(
        "parecord",
        {
            let mut c = pulse.client("parecord");
            c.args([
                "--latency-msec=20",
                "-d",
                "sipterm_out.monitor",
                "--file-format=wav",
                "--rate=48000",
                "--channels=1",
            ])
            .arg(&speaker);
            c
        },
        Stdout::File,
        Some(&work.path().join("parecord-logs")),
    )
    .expect("parecord starts");

    near.send(&format!("dial {}", far.uri("far"))).unwrap();
    near.expect_call_state("confirmed", SIGNALLING)
        .expect("near: call confirmed");
    far.expect_call_state("confirmed", SIGNALLING)
        .expect("far: call confirmed");
    std::thread::sleep(Duration::from_secs(4));
    near.send("hangup").unwrap();
    near.expect_call_state("terminated", SIGNALLING)
        .expect("near: terminated");
    far.expect_call_state("terminated", SIGNALLING)
        .expect("far: terminated");

    // parecord writes the WAV header's length on SIGINT.
    let _ = Command::new("kill")
        .args(["-INT", &parecord.pid().to_string()])
        .status();
    parecord.wait_timeout(Duration::from_secs(5));
    paplay.kill();
    let warnings: Vec<String> = near
        .events_of("warning")
        .iter()
        .map(|w| w.to_string())
        .collect();
    println!("near warnings: {warnings:?}");
    far.quit(Duration::from_secs(5));
    near.quit(Duration::from_secs(5));
    let log = std::fs::read_to_string(near.log_dir().join("sipterm.log")).unwrap_or_default();
    for line in log.lines().filter(|l| l.contains("sound ")) {
        println!("near log: {line}");
    }
    assert!(
        warnings.is_empty(),
        "the devices opened without warnings: {warnings:?}"
    );

    // Capture: the far end recorded the tone played into the near end's microphone.
    let (rate, far_heard) = read_wav(&far_out).expect("far end's recording");
    let tail = &far_heard[far_heard.len().saturating_sub(rate as usize * 2)..];
    let far_freq = dominant_frequency(tail, rate);
    println!(
        "far end heard: {} samples at {rate} Hz, rms {:.0}, dominant {far_freq:.0} Hz",
        far_heard.len(),
        rms(tail)
    );
    assert!(
        (far_freq - MIC_TONE).abs() < 30.0,
        "far end hears the captured {MIC_TONE} Hz tone, got {far_freq} Hz (rms {})",
        rms(tail)
    );

    // Playback: the near end's speaker carried the far end's tone.
    let (rate, played) = read_wav(&speaker).expect("parecord's recording");
    let loud: Vec<i16> = played.clone();
    let freq = dominant_frequency(&loud, rate);
    let power_far = goertzel_power(&loud, rate, FAR_TONE);
    let power_mic = goertzel_power(&loud, rate, MIC_TONE);
    println!(
        "speaker: {} samples at {rate} Hz, rms {:.0}, dominant {freq:.0} Hz, power {FAR_TONE} Hz {power_far:.3e} vs {MIC_TONE} Hz {power_mic:.3e}",
        played.len(),
        rms(&loud)
    );
    assert!(
        rms(&loud) > 300.0,
        "the speaker played audio (rms {})",
        rms(&loud)
    );
    assert!(
        (freq - FAR_TONE).abs() < 30.0,
        "the speaker plays the far end's {FAR_TONE} Hz tone, got {freq} Hz"
    );
}

#[test]
fn missing_device_warns_and_the_call_goes_on() {
    let pulse = Pulse::start();
    let server = pulse.server();
    let cookie = pulse.cookie();
    let env = [
        ("PULSE_SERVER", OsStr::new(&server)),
        ("PULSE_COOKIE", cookie.as_os_str()),
    ];
    let config = "[audio]\ninput = \"pulseaudio:no_such_source\"\noutput = \"no such speaker\"\n";
    let mut near = Headless::spawn_with(
        "near-missing",
        &HeadlessOptions {
            config_toml: Some(config.into()),
            ..Default::default()
        },
        &env,
        true,
    )
    .expect("near sipterm starts");
    let mut far = Headless::spawn(
        "far-missing",
        &HeadlessOptions {
            auto_answer_ms: Some(0),
            ..Default::default()
        },
    )
    .expect("far sipterm starts");
    near.send(&format!("dial {}", far.uri("far"))).unwrap();
    near.expect_call_state("confirmed", SIGNALLING)
        .expect("call confirmed despite missing devices");
    let input = near
        .expect_event(
            "a warning about the input device",
            |e| {
                e["event"] == "warning"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("no_such_source"))
            },
            SIGNALLING,
        )
        .expect("input warning");
    println!("input warning: {input}");
    let output = near
        .expect_event(
            "a warning about the output device",
            |e| {
                e["event"] == "warning"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("no such speaker"))
            },
            SIGNALLING,
        )
        .expect("output warning");
    println!("output warning: {output}");
    // Media still flows (silence) in both directions.
    let media = near
        .expect_event(
            "a media report with packets sent",
            |e| e["event"] == "media" && e["sent"].as_u64().unwrap_or(0) > 0,
            SIGNALLING,
        )
        .expect("media keeps flowing");
    println!("media: {media}");
    near.send("hangup").unwrap();
    far.expect_call_state("terminated", SIGNALLING)
        .expect("far: terminated");
    near.quit(Duration::from_secs(5));
}

#[test]
fn sound_server_dying_mid_call_warns_and_the_call_goes_on() {
    let pulse = Pulse::start();
    let server = pulse.server();
    let cookie = pulse.cookie();
    let env = [
        ("PULSE_SERVER", OsStr::new(&server)),
        ("PULSE_COOKIE", cookie.as_os_str()),
    ];
    let config =
        "[audio]\ninput = \"pulseaudio:sipterm_in.monitor\"\noutput = \"pulseaudio:sipterm_out\"\n";
    let mut near = Headless::spawn_with(
        "near-dying",
        &HeadlessOptions {
            config_toml: Some(config.into()),
            ..Default::default()
        },
        &env,
        true,
    )
    .expect("near sipterm starts");
    let mut far = Headless::spawn(
        "far-dying",
        &HeadlessOptions {
            auto_answer_ms: Some(0),
            ..Default::default()
        },
    )
    .expect("far sipterm starts");
    near.send(&format!("dial {}", far.uri("far"))).unwrap();
    near.expect_call_state("confirmed", SIGNALLING)
        .expect("call confirmed");
    std::thread::sleep(Duration::from_secs(1));
    drop(pulse); // pa-stop.sh: the sound server goes away mid-call
    let warning = near
        .expect_event(
            "a warning that a sound device failed",
            |e| {
                e["event"] == "warning"
                    && e["message"].as_str().is_some_and(|m| m.contains("failed"))
            },
            SIGNALLING,
        )
        .expect("device failure is reported");
    println!("warning: {warning}");
    // The call survives: media reports keep coming and hangup works.
    let before = near.events_of("media").len();
    near.expect_event(
        "a media report after the failure",
        |e| e["event"] == "media" && e["sent"].as_u64().unwrap_or(0) > 0,
        SIGNALLING,
    )
    .expect("media keeps flowing");
    println!("media reports before the check: {before}");
    near.send("hangup").unwrap();
    near.expect_call_state("terminated", SIGNALLING)
        .expect("near: terminated");
    far.expect_call_state("terminated", SIGNALLING)
        .expect("far: terminated");
    let status = near.quit(Duration::from_secs(5));
    assert!(
        status.is_some_and(|s| s.success()),
        "sipterm exits cleanly after losing its sound server: {status:?}"
    );
}
