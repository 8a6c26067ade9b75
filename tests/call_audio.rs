//! A call's audio end to end, with headless sipterms and baresip:
//! - G.722 against baresip's g722 module, both directions, with tones at 6 kHz (which only a
//!   wideband codec carries: G.711 stops at 4 kHz);
//! - recording: `record <file>` / `record stop` write a stereo WAV, left what we send, right
//!   what we play, and the `audio` events say so.
//!
//! baresip is required (the Makefile's TEST_DEPS): a missing one fails the test.

mod common;

use std::path::Path;
use std::time::Duration;

use common::headless::{Headless, HeadlessOptions, read_wav, sine, write_wav};
use common::peers::{Baresip, BaresipConfig};
use common::ports::free_udp_port;
use sipterm::media::tones::{dominant_frequency, goertzel_power, rms};

const SIGNALLING: Duration = Duration::from_secs(10);
const TALK: Duration = Duration::from_secs(3);
/// Above narrowband: only G.722 (or Opus) carries these.
const SIPTERM_TONE: f32 = 6000.0;
const BARESIP_TONE: f32 = 5500.0;

fn g722_config() -> String {
    "[[account]]\nname = \"alice\"\nuri = \"sip:alice@127.0.0.1\"\ncodecs = [\"g722\"]\n".into()
}

fn tone_wav(path: &Path, frequency: f32, rate: u32) {
    write_wav(path, rate, &sine(frequency, rate, 8.0, 10_000.0)).expect("write tone");
}

/// The dominant frequency of the last second of a WAV (mono, or the left channel).
fn heard(path: &Path) -> (u32, f32, f32) {
    let (rate, samples) = read_wav(path).expect("read WAV");
    let tail = &samples[samples.len().saturating_sub(rate as usize)..];
    (rate, dominant_frequency(tail, rate), rms(tail))
}

fn baresip_g722(dir: &Path, auto_answer: bool, tone: &Path) -> Baresip {
    let port = free_udp_port().expect("port");
    Baresip::start_with(
        &dir.join("baresip"),
        Some(&dir.join("dumps")),
        &BaresipConfig {
            sip_port: port,
            user: "baresip".into(),
            audio_in: Some(tone.to_path_buf()),
            auto_answer,
            codecs: vec!["g722"],
            registration: None,
            mediaenc: None,
        },
    )
    .expect("baresip starts")
}

fn check_both_ways(dir: &Path, baresip: &Baresip, sipterm_heard: &Path) {
    let (rate, freq, level) = heard(sipterm_heard);
    println!("sipterm heard {freq:.0} Hz (rms {level:.0}) at {rate} Hz");
    assert_eq!(rate, 16_000, "G.722 audio is 16 kHz");
    assert!(
        (freq - BARESIP_TONE).abs() < 60.0 && level > 1000.0,
        "sipterm hears baresip's {BARESIP_TONE} Hz tone: {freq:.0} Hz, rms {level:.0}"
    );
    let dumps = baresip.received_audio_files(Some(&dir.join("dumps")));
    let dump = dumps.first().expect("baresip wrote its received audio");
    let (rate, freq, level) = heard(dump);
    println!("baresip heard {freq:.0} Hz (rms {level:.0}) at {rate} Hz");
    assert!(
        (freq - SIPTERM_TONE).abs() < 60.0 && level > 1000.0,
        "baresip hears sipterm's {SIPTERM_TONE} Hz tone: {freq:.0} Hz, rms {level:.0}"
    );
}

#[test]
fn g722_with_baresip_carries_6_khz_both_ways_when_sipterm_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("dumps")).expect("dumps");
    let (ours, theirs) = (dir.path().join("ours.wav"), dir.path().join("theirs.wav"));
    tone_wav(&ours, SIPTERM_TONE, 16_000);
    tone_wav(&theirs, BARESIP_TONE, 16_000);
    let mut baresip = baresip_g722(dir.path(), true, &theirs);
    let heard_path = dir.path().join("heard.wav");
    let mut alice = Headless::spawn(
        "alice-g722",
        &HeadlessOptions {
            audio_in: Some(ours),
            audio_out: Some(heard_path.clone()),
            config_toml: Some(g722_config()),
            ..Default::default()
        },
    )
    .expect("sipterm starts");
    alice
        .send(&format!("dial sip:baresip@127.0.0.1:{}", baresip.sip_port))
        .unwrap();
    alice
        .expect_call_state("confirmed", SIGNALLING)
        .expect("call confirmed");
    let media = alice
        .expect_event("a media report", |e| e["event"] == "media", SIGNALLING)
        .expect("media report");
    assert_eq!(
        media["codec"], "g722/8000",
        "G.722 says 8000 (RFC 3551): {media}"
    );
    std::thread::sleep(TALK);
    alice.send("hangup").unwrap();
    alice
        .expect_call_state("terminated", SIGNALLING)
        .expect("terminated");
    let _ = baresip.wait_output("terminated", SIGNALLING);
    alice.quit(Duration::from_secs(5));
    let _ = baresip.quit(Duration::from_secs(5));
    check_both_ways(dir.path(), &baresip, &heard_path);
}

#[test]
fn g722_with_baresip_carries_6_khz_both_ways_when_baresip_calls() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("dumps")).expect("dumps");
    let (ours, theirs) = (dir.path().join("ours.wav"), dir.path().join("theirs.wav"));
    tone_wav(&ours, SIPTERM_TONE, 16_000);
    tone_wav(&theirs, BARESIP_TONE, 16_000);
    let heard_path = dir.path().join("heard.wav");
    let mut alice = Headless::spawn(
        "alice-g722-in",
        &HeadlessOptions {
            audio_in: Some(ours),
            audio_out: Some(heard_path.clone()),
            auto_answer_ms: Some(0),
            config_toml: Some(g722_config()),
            ..Default::default()
        },
    )
    .expect("sipterm starts");
    let mut baresip = baresip_g722(dir.path(), false, &theirs);
    baresip
        .dial(&format!("sip:alice@127.0.0.1:{}", alice.listen.port()))
        .unwrap();
    alice
        .expect_call_state("confirmed", SIGNALLING)
        .expect("call confirmed");
    std::thread::sleep(TALK);
    baresip.hangup().unwrap();
    alice
        .expect_call_state("terminated", SIGNALLING)
        .expect("terminated");
    alice.quit(Duration::from_secs(5));
    let _ = baresip.quit(Duration::from_secs(5));
    check_both_ways(dir.path(), &baresip, &heard_path);
}

/// `record FILE` then `record stop`: a stereo WAV with our tone on the left (sent) and the
/// peer's on the right (played); the `audio` events carry the path while recording.
#[test]
fn record_writes_sent_left_and_played_right() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ours, theirs) = (dir.path().join("ours.wav"), dir.path().join("theirs.wav"));
    write_wav(&ours, 48_000, &sine(700.0, 48_000, 8.0, 10_000.0)).unwrap();
    write_wav(&theirs, 48_000, &sine(1300.0, 48_000, 8.0, 10_000.0)).unwrap();
    let mut far = Headless::spawn(
        "far-rec",
        &HeadlessOptions {
            audio_in: Some(theirs),
            auto_answer_ms: Some(0),
            ..Default::default()
        },
    )
    .expect("far starts");
    let mut near = Headless::spawn(
        "near-rec",
        &HeadlessOptions {
            audio_in: Some(ours),
            ..Default::default()
        },
    )
    .expect("near starts");
    near.send(&format!("dial {}", far.uri("far"))).unwrap();
    near.expect_call_state("confirmed", SIGNALLING)
        .expect("confirmed");
    let file = dir.path().join("rec/call.wav");
    near.send(&format!("record {}", file.display())).unwrap();
    let recording = near
        .expect_event(
            "an audio event naming the recording",
            |e| e["event"] == "audio" && e["recording"].is_string(),
            SIGNALLING,
        )
        .expect("recording starts");
    println!("{recording}");
    std::thread::sleep(Duration::from_secs(2));
    near.send("record stop").unwrap();
    near.expect_event(
        "an audio event without a recording",
        |e| e["event"] == "audio" && e.get("recording").is_none(),
        SIGNALLING,
    )
    .expect("recording stops");
    near.send("hangup").unwrap();
    near.expect_call_state("terminated", SIGNALLING)
        .expect("terminated");
    far.quit(Duration::from_secs(5));
    near.quit(Duration::from_secs(5));

    let mut reader = hound::WavReader::open(&file).expect("the recording");
    let spec = reader.spec();
    assert_eq!(spec.channels, 2, "stereo");
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap_or(0)).collect();
    let rate = spec.sample_rate;
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let seconds = left.len() as f32 / rate as f32;
    println!("recording: {seconds:.2} s at {rate} Hz");
    assert!(
        (1.5..3.0).contains(&seconds),
        "about 2 s recorded: {seconds}"
    );
    let tail = |x: &[i16]| x[x.len() / 2..].to_vec();
    let (l, r) = (tail(&left), tail(&right));
    println!(
        "left: {:.0} Hz, right: {:.0} Hz",
        dominant_frequency(&l, rate),
        dominant_frequency(&r, rate)
    );
    assert!(
        goertzel_power(&l, rate, 700.0) > 100.0 * goertzel_power(&l, rate, 1300.0),
        "left carries what we send (700 Hz)"
    );
    assert!(
        goertzel_power(&r, rate, 1300.0) > 100.0 * goertzel_power(&r, rate, 700.0),
        "right carries what we play (1300 Hz)"
    );
}
