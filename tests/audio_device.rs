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
    // The call survives: the packet count keeps growing after the failure, and hangup works.
    // (`sent > 0` alone was already true before the device died.)
    let sent_at_failure = near
        .events_of("media")
        .iter()
        .filter_map(|e| e["sent"].as_u64())
        .max()
        .unwrap_or(0);
    let later = near
        .expect_event(
            "a media report with more packets sent after the failure",
            |e| e["event"] == "media" && e["sent"].as_u64().is_some_and(|n| n > sent_at_failure),
            SIGNALLING,
        )
        .expect("media keeps flowing");
    println!("sent {sent_at_failure} packets by the failure, then {later}");
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

// ------------------------------------------------------------------------------------------
// Echo cancellation, device loss and device switching on real (PulseAudio) devices.

/// `pactl` with the test daemon; its stdout (e.g. a loaded module's index).
fn pactl(pulse: &Pulse, args: &[&str]) -> String {
    let out = pulse
        .client("pactl")
        .args(args)
        .output()
        .expect("pactl runs (pulseaudio-utils installed?)");
    assert!(
        out.status.success(),
        "pactl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Speech from espeak-ng at 48 kHz, repeated to `seconds`.
fn speech_wav(path: &Path, seconds: f32) {
    let raw = path.with_extension("raw.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "160", "-w"])
        .arg(&raw)
        .arg(
            "The quick brown fox jumps over the lazy dog. Please call me back when you get \
             this message; the meeting has moved to Thursday afternoon at three o'clock.",
        )
        .status()
        .expect("espeak-ng runs (make test-deps)");
    assert!(status.success(), "espeak-ng failed");
    let (rate, samples) = read_wav(&raw).expect("espeak-ng's WAV");
    let mut resampler = sipterm::media::resample::Resampler::new(rate, 48_000).expect("resampler");
    let mut speech = Vec::new();
    for chunk in samples.chunks_exact(sipterm::media::samples_per_frame(rate)) {
        resampler.process(chunk, &mut speech).expect("resample");
    }
    let peak = speech
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap_or(1)
        .max(1);
    let speech: Vec<i16> = speech
        .iter()
        .map(|&s| (f32::from(s) / f32::from(peak) * 16_000.0) as i16)
        .collect();
    let total = (48_000.0 * seconds) as usize;
    let looped: Vec<i16> = speech.iter().copied().cycle().take(total).collect();
    write_wav(path, 48_000, &looped).expect("write speech");
}

fn power(x: &[i16]) -> f64 {
    x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64
}

/// One call from a sipterm on the PulseAudio devices to a WAV-file sipterm that talks
/// (`far_in`) and records what comes back (the echo, through module-loopback). Returns the
/// echo level below what the far end sent, in dB, over the call after its first 3 s (the
/// canceller converging): over all of it, and the median of its seconds.
fn echo_level(pulse: &Pulse, work: &Path, name: &str, audio_extra: &str) -> (f64, f64) {
    let server = pulse.server();
    let cookie = pulse.cookie();
    let env = [
        ("PULSE_SERVER", OsStr::new(&server)),
        ("PULSE_COOKIE", cookie.as_os_str()),
    ];
    let far_in = work.join("far_speech.wav");
    let far_out = work.join(format!("{name}_far_out.wav"));
    let config = format!(
        "[audio]\ninput = \"pulseaudio:sipterm_in.monitor\"\noutput = \"pulseaudio:sipterm_out\"\n{audio_extra}"
    );
    let mut near = Headless::spawn_with(
        &format!("near-{name}"),
        &HeadlessOptions {
            config_toml: Some(config),
            ..Default::default()
        },
        &env,
        true,
    )
    .expect("near sipterm starts");
    let mut far = Headless::spawn(
        &format!("far-{name}"),
        &HeadlessOptions {
            audio_in: Some(far_in.clone()),
            audio_out: Some(far_out.clone()),
            auto_answer_ms: Some(0),
            ..Default::default()
        },
    )
    .expect("far sipterm starts");
    near.send(&format!("dial {}", far.uri("far"))).unwrap();
    near.expect_call_state("confirmed", SIGNALLING)
        .expect("near: confirmed");
    let audio = near
        .expect_event("the audio set-up", |e| e["event"] == "audio", SIGNALLING)
        .expect("audio event");
    println!("{name}: {audio}");
    std::thread::sleep(Duration::from_secs(10));
    near.send("hangup").unwrap();
    far.expect_call_state("terminated", SIGNALLING)
        .expect("far: terminated");
    far.quit(Duration::from_secs(5));
    near.quit(Duration::from_secs(5));
    let log = std::fs::read_to_string(near.log_dir().join("sipterm.log")).unwrap_or_default();
    for line in log
        .lines()
        .filter(|l| l.contains("echo") || l.contains("sound") || l.contains("late"))
    {
        println!("{name} log: {line}");
    }
    let (rate, sent) = read_wav(&far_in).expect("far's speech");
    let (out_rate, heard) = read_wav(&far_out).expect("far's recording");
    assert_eq!(rate, out_rate);
    let from = 3 * rate as usize;
    let to = heard.len().min(sent.len());
    assert!(
        to > from + rate as usize,
        "the call lasted: {} samples",
        heard.len()
    );
    let level = 10.0 * (power(&sent[from..to]) / power(&heard[from..to]).max(1e-3)).log10();
    let per_second: Vec<f64> = (0..to / rate as usize)
        .map(|k| {
            let r = k * rate as usize..(k + 1) * rate as usize;
            10.0 * (power(&sent[r.clone()]) / power(&heard[r]).max(1e-3)).log10()
        })
        .collect();
    let shown: Vec<String> = per_second.iter().map(|d| format!("{d:.0}")).collect();
    println!(
        "{name}: echo below the far end's speech, per second: {}",
        shown.join(" ")
    );
    let mut settled: Vec<f64> = per_second.iter().skip(3).copied().collect();
    settled.sort_by(f64::total_cmp);
    let median = settled.get(settled.len() / 2).copied().unwrap_or(f64::MIN);
    println!(
        "{name}: far end sent {:.1} dBFS, heard back {:.1} dBFS: echo {level:.1} dB below",
        10.0 * (power(&sent[from..to]) / 32768f64.powi(2)).log10(),
        10.0 * (power(&heard[from..to]).max(1e-3) / 32768f64.powi(2)).log10()
    );
    (level, median)
}

/// module-loopback carries sipterm's speaker into its microphone (100 ms, -12 dB): without
/// echo cancellation the far end hears itself; with it (the default on sound devices) the
/// echo is at least 30 dB below what it sent.
#[test]
fn echo_through_a_real_device_path_is_cancelled_by_30_db() {
    let pulse = Pulse::start();
    let work = tempfile::tempdir().expect("temp dir");
    speech_wav(&work.path().join("far_speech.wav"), 20.0);
    pactl(
        &pulse,
        &[
            "load-module",
            "module-loopback",
            "source=sipterm_out.monitor",
            "sink=sipterm_in",
            "latency_msec=100",
            // A room's path holds still: no rate adjustments every 10 s (each one shifts the
            // delay, a path change every time).
            "adjust_time=0",
            "source_dont_move=true",
            "sink_dont_move=true",
        ],
    );
    // -12 dB on the way back (a laptop's speaker is quieter at its microphone).
    pactl(&pulse, &["set-sink-volume", "sipterm_in", "63%"]);
    let (without, _) = echo_level(&pulse, work.path(), "aec-off", "echo_cancel = false\n");
    let (aec_ns, aec_ns_median) = echo_level(&pulse, work.path(), "aec-ns", "auto_gain = false\n");
    let (with, median) = echo_level(&pulse, work.path(), "aec-on", "");
    println!(
        "device path echo below the far end's speech: {without:.1} dB without AEC; with AEC and NS {aec_ns:.1} dB (median second {aec_ns_median:.1} dB); with AEC, NS and AGC (the default) {with:.1} dB (median second {median:.1} dB)"
    );
    assert!(
        without < 25.0,
        "the loopback carries an audible echo without cancellation ({without:.1} dB)"
    );
    // Most seconds at least 30 dB down (a second here and there dips while AEC3 adjusts to
    // the null sinks' timing: see the per-second figures), and never a loud echo overall.
    assert!(
        median >= 30.0 && with >= 20.0,
        "with the default processing the echo is at least 30 dB below the far end's speech in most seconds ({median:.1} dB median, {with:.1} dB overall)"
    );
}

/// Every run of at least 30 ms without `tone` (10 ms blocks) from the tone's first block to
/// its last: (start ms, length ms). Blocks count as the tone when it dominates them (a
/// ringtone recorded before the call does not).
fn tone_gaps(samples: &[i16], rate: u32, tone: f32) -> Vec<(u32, u32)> {
    let block = rate as usize / 100;
    let present: Vec<bool> = samples
        .chunks_exact(block)
        .map(|b| {
            rms(b) > 300.0
                && goertzel_power(b, rate, tone) > 4.0 * goertzel_power(b, rate, tone * 1.37)
        })
        .collect();
    let (Some(first), Some(last)) = (
        present.iter().position(|&l| l),
        present.iter().rposition(|&l| l),
    ) else {
        return Vec::new();
    };
    let mut runs = Vec::new();
    let mut start = None;
    for (i, &l) in present.iter().enumerate().take(last + 1).skip(first) {
        match (l, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                if i - s >= 3 {
                    runs.push((s as u32 * 10, (i - s) as u32 * 10));
                }
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// The longest run of quiet 10 ms blocks between the first and last loud one, in ms.
fn longest_gap_ms(samples: &[i16], rate: u32) -> (u32, usize) {
    let block = rate as usize / 100;
    let loud: Vec<bool> = samples
        .chunks_exact(block)
        .map(|b| rms(b) > 1000.0)
        .collect();
    let (Some(first), Some(last)) = (loud.iter().position(|&l| l), loud.iter().rposition(|&l| l))
    else {
        return (u32::MAX, 0);
    };
    let (mut longest, mut run) = (0u32, 0u32);
    for &l in &loud[first..=last] {
        run = if l { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    (longest * 10, last - first)
}

/// A USB headset unplugged mid-call: the input sipterm uses is a null sink's monitor that the
/// test unloads. sipterm moves to the default input (which hears the same tone) and the far
/// end's recording goes on; the gap in it is the figure. The same for the output: the far
/// end's tone moves from the unplugged sink to the default one.
#[test]
fn losing_the_device_in_use_moves_the_call_to_the_default_device() {
    let pulse = Pulse::start();
    let work = tempfile::tempdir().expect("temp dir");
    // The usb_headset sink comes from tests/data/pulse/sipterm.pa: its module is unloaded.
    let headset = pactl(&pulse, &["list", "short", "modules"])
        .lines()
        .find(|l| l.contains("sink_name=usb_headset"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the usb_headset module")
        .to_owned();
    let mic = work.path().join("mic.wav");
    write_tone(&mic, MIC_TONE, 20.0);
    let far_in = work.path().join("far_in.wav");
    write_tone(&far_in, FAR_TONE, 20.0);
    let far_out = work.path().join("far_out.wav");
    // The same tone into both headsets and into the default input, from the start (paplay
    // buffers two seconds before a sink hears it).
    let mut players = Vec::new();
    for sink in ["usb_headset", "bt_headset", "sipterm_in"] {
        let mut c = pulse.client("paplay");
        c.args(["-d", sink]).arg(&mic);
        players.push(
            ChildGuard::spawn(
                "paplay",
                c,
                Stdout::File,
                Some(&work.path().join(format!("paplay-{sink}"))),
            )
            .expect("paplay starts"),
        );
    }
    let speaker = work.path().join("speaker.wav");
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
    let server = pulse.server();
    let cookie = pulse.cookie();
    let env = [
        ("PULSE_SERVER", OsStr::new(&server)),
        ("PULSE_COOKIE", cookie.as_os_str()),
    ];
    // Steady tones are what noise suppression takes out: off here, this is about devices.
    let config = "[audio]\ninput = \"pulseaudio:usb_headset.monitor\"\noutput = \"pulseaudio:usb_headset\"\nnoise_suppression = false\nauto_gain = false\n";
    let mut near = Headless::spawn_with(
        "near-unplug",
        &HeadlessOptions {
            config_toml: Some(config.into()),
            ..Default::default()
        },
        &env,
        true,
    )
    .expect("near sipterm starts");
    let mut far = Headless::spawn(
        "far-unplug",
        &HeadlessOptions {
            audio_in: Some(far_in),
            audio_out: Some(far_out.clone()),
            auto_answer_ms: Some(0),
            ..Default::default()
        },
    )
    .expect("far sipterm starts");
    near.send(&format!("dial {}", far.uri("far"))).unwrap();
    near.expect_call_state("confirmed", SIGNALLING)
        .expect("confirmed");
    let confirmed_at = std::time::Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    // Unplugged: PulseAudio moves the streams of a removed sink to the default one itself.
    let call_start = confirmed_at;
    let unplug_ms = call_start.elapsed().as_millis();
    pactl(&pulse, &["unload-module", &headset]);
    std::thread::sleep(Duration::from_secs(3));
    // Onto another headset, which then stops dead (suspended: no error, no more callbacks, as
    // a Bluetooth headset that drops out): sipterm notices within 500 ms and opens the
    // default device itself.
    let switch_ms = call_start.elapsed().as_millis();
    near.send("device input pulseaudio:bt_headset.monitor")
        .unwrap();
    near.send("device output pulseaudio:bt_headset").unwrap();
    near.expect_event(
        "the call on the second headset",
        |e| {
            e["event"] == "audio"
                && e["input"].as_str() == Some("pulseaudio:bt_headset.monitor")
                && e["output"].as_str() == Some("pulseaudio:bt_headset")
        },
        SIGNALLING,
    )
    .expect("switched to the second headset");
    // Past the 3 s a new stream has to settle before a stall counts.
    std::thread::sleep(Duration::from_secs(4));
    let stall_ms = call_start.elapsed().as_millis();
    pactl(&pulse, &["suspend-sink", "bt_headset", "1"]);
    // (Its monitor, the input, is suspended with it.)
    // Both directions back on the default devices (in either order).
    let back = near
        .expect_event(
            "the call back on the default devices",
            |e| {
                e["event"] == "audio"
                    && e["input"].as_str() == Some("pulseaudio:sipterm_in.monitor")
                    && e["output"].as_str() == Some("pulseaudio:sipterm_out")
            },
            SIGNALLING,
        )
        .expect("the call moved to the default devices");
    println!("{back}");
    for what in ["input", "output"] {
        let moved = near.events_of("warning").iter().any(|w| {
            w["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("sound {what} now `pulseaudio:sipterm")))
        });
        assert!(
            moved,
            "a warning says the {what} moved to the default device"
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    near.send("hangup").unwrap();
    far.expect_call_state("terminated", SIGNALLING)
        .expect("far: terminated");
    let _ = Command::new("kill")
        .args(["-INT", &parecord.pid().to_string()])
        .status();
    parecord.wait_timeout(Duration::from_secs(5));
    for mut p in players {
        p.kill();
    }
    let warnings: Vec<String> = near
        .events_of("warning")
        .iter()
        .map(|w| w.to_string())
        .collect();
    println!("near warnings: {warnings:?}");
    far.quit(Duration::from_secs(5));
    near.quit(Duration::from_secs(5));

    // The far end heard the microphone tone before and after; the gap is the loss's cost.
    let (rate, heard) = read_wav(&far_out).expect("far's recording");
    let gaps = tone_gaps(&heard, rate, MIC_TONE);
    let gap = gaps.iter().map(|&(_, len)| len).max().unwrap_or(0);
    let tail = &heard[heard.len().saturating_sub(rate as usize)..];
    println!(
        "gaps in the microphone tone the far end heard (start ms, length ms): {gaps:?}; unplug at {unplug_ms} ms, switch at {switch_ms} ms, stall at {stall_ms} ms (from the call's start)",
    );
    println!(
        "input lost: the longest gap is {gap} ms, then {:.0} Hz",
        dominant_frequency(tail, rate)
    );
    assert!(
        (dominant_frequency(tail, rate) - MIC_TONE).abs() < 30.0,
        "the far end hears the microphone after the loss"
    );
    assert!(
        gap < 1500,
        "the gaps in the far end's recording are short ({gap} ms)"
    );
    // The default output (sipterm_out) plays the far end's tone after the loss.
    let (rate, played) = read_wav(&speaker).expect("parecord's recording");
    let tail = &played[played.len().saturating_sub(rate as usize)..];
    // (The unplugged headset's own stream, the microphone tone, was moved to the default
    // speaker too: the far end's tone must be there beside it.)
    let (far_power, mic_power) = (
        goertzel_power(tail, rate, FAR_TONE),
        goertzel_power(tail, rate, MIC_TONE),
    );
    println!(
        "output lost: the default speaker plays the far end's {FAR_TONE} Hz at {:.1} dB against the moved {MIC_TONE} Hz stream",
        10.0 * (far_power / mic_power.max(1e-9)).log10()
    );
    assert!(
        far_power > 0.1 * mic_power,
        "the default output plays the far end after the loss"
    );
}

/// `device input NAME` and `device output NAME` mid-call: the far end hears the new microphone
/// (another tone); the gap in its recording is the cost of the switch.
#[test]
fn switching_the_input_mid_call_keeps_the_call_and_changes_the_microphone() {
    let pulse = Pulse::start();
    let work = tempfile::tempdir().expect("temp dir");
    let first = work.path().join("first.wav");
    let second = work.path().join("second.wav");
    write_tone(&first, MIC_TONE, 20.0);
    write_tone(&second, 1500.0, 20.0);
    let mut players = Vec::new();
    for (sink, tone) in [("sipterm_in", &first), ("bt_headset", &second)] {
        let mut c = pulse.client("paplay");
        c.args(["-d", sink]).arg(tone);
        players.push(
            ChildGuard::spawn(
                "paplay",
                c,
                Stdout::File,
                Some(&work.path().join(format!("paplay-{sink}"))),
            )
            .expect("paplay starts"),
        );
    }
    let server = pulse.server();
    let cookie = pulse.cookie();
    let env = [
        ("PULSE_SERVER", OsStr::new(&server)),
        ("PULSE_COOKIE", cookie.as_os_str()),
    ];
    let config =
        "[audio]\ninput = \"pulseaudio:sipterm_in.monitor\"\noutput = \"pulseaudio:sipterm_out\"\n";
    let mut near = Headless::spawn_with(
        "near-switch",
        &HeadlessOptions {
            config_toml: Some(config.into()),
            ..Default::default()
        },
        &env,
        true,
    )
    .expect("near sipterm starts");
    let far_out = work.path().join("far_out.wav");
    let mut far = Headless::spawn(
        "far-switch",
        &HeadlessOptions {
            audio_out: Some(far_out.clone()),
            auto_answer_ms: Some(0),
            ..Default::default()
        },
    )
    .expect("far sipterm starts");
    near.send(&format!("dial {}", far.uri("far"))).unwrap();
    near.expect_call_state("confirmed", SIGNALLING)
        .expect("confirmed");
    std::thread::sleep(Duration::from_secs(3));
    near.send("device input pulseaudio:bt_headset.monitor")
        .unwrap();
    near.send("device output pulseaudio:bt_headset").unwrap();
    let switched = near
        .expect_event(
            "the input switched",
            |e| {
                e["event"] == "audio"
                    && e["input"].as_str() == Some("pulseaudio:bt_headset.monitor")
                    && e["output"].as_str() == Some("pulseaudio:bt_headset")
            },
            SIGNALLING,
        )
        .expect("input and output switched");
    println!("{switched}");
    std::thread::sleep(Duration::from_secs(3));
    for w in near.events_of("warning") {
        println!("warning: {w}");
    }
    near.send("hangup").unwrap();
    far.expect_call_state("terminated", SIGNALLING)
        .expect("far: terminated");
    for mut p in players {
        p.kill();
    }
    far.quit(Duration::from_secs(5));
    near.quit(Duration::from_secs(5));
    let (rate, heard) = read_wav(&far_out).expect("far's recording");
    let (gap, blocks) = longest_gap_ms(&heard, rate);
    let head = &heard[..heard.len() / 3];
    let tail = &heard[heard.len().saturating_sub(rate as usize)..];
    println!(
        "input switch: {:.1} s heard, longest gap {gap} ms; before {:.0} Hz, after {:.0} Hz",
        blocks as f32 / 100.0,
        dominant_frequency(head, rate),
        dominant_frequency(tail, rate)
    );
    assert!(
        (dominant_frequency(tail, rate) - 1500.0).abs() < 30.0,
        "the new microphone"
    );
    assert!(gap < 1000, "the switch leaves a short gap ({gap} ms)");
}
