//! Two `sipterm --headless` processes on 127.0.0.1 calling each other with WAV files as
//! microphone and speaker. The caller sends 440 Hz, the callee 1000 Hz (distinct tones catch
//! crossed wires); each side's recording must hold its peer's tone.
//!
//! Run with `--nocapture` to see the measured figures (levels, frequencies, latency).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::audio::{ToneBlocks, assert_hears, tone_blocks};
use common::headless::{Headless, HeadlessOptions, read_wav, sine, write_wav};
use serde_json::Value;
use sipterm::media::tones::{cross_correlation_lag, dominant_frequency, rms};

const CALLER_TONE: f32 = 440.0;
const CALLEE_TONE: f32 = 1000.0;
/// Peak of the sent tones (-12 dBFS): RMS 5657.
const AMPLITUDE: f32 = 8000.0;
/// Rate of the WAV files we send (sipterm resamples to the codec's rate).
const FILE_RATE: u32 = 48_000;
/// Signalling waits: generous, a debug build on two shared cores.
const SIGNALLING: Duration = Duration::from_secs(10);

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// One side of a test call: its process, what it sends, where it records.
struct Side {
    sipterm: Headless,
    out: PathBuf,
}

/// Two sipterms and their files. The temp dir goes last (fields drop in order).
struct Pair {
    caller: Side,
    callee: Side,
    _dir: tempfile::TempDir,
}

#[derive(Clone, Copy)]
struct PairOptions<'a> {
    /// Account `codecs` list for both sides; None: the built-in default (opus first).
    codecs: Option<&'a str>,
    /// Callee's `--auto-answer=MS`; None: it waits for `answer`.
    auto_answer_ms: Option<u64>,
    /// Seconds of tone each side sends.
    seconds: f32,
    /// `srtp = "off"` on both sides (the default `optional` encrypts between two sipterms).
    plain_rtp: bool,
}

impl Default for PairOptions<'_> {
    fn default() -> Self {
        PairOptions {
            codecs: None,
            auto_answer_ms: Some(0),
            seconds: 8.0,
            plain_rtp: false,
        }
    }
}

fn config_with_codecs(name: &str, codecs: &str) -> String {
    format!("[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@127.0.0.1\"\ncodecs = [{codecs}]\n")
}

/// The account config `options` ask for; `None`: the built-in local account.
fn account_config(name: &str, options: &PairOptions<'_>) -> Option<String> {
    let mut text = match options.codecs {
        Some(codecs) => config_with_codecs(name, codecs),
        None if options.plain_rtp => {
            format!("[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@127.0.0.1\"\n")
        }
        None => return None,
    };
    if options.plain_rtp {
        text.push_str("srtp = \"off\"\n");
    }
    Some(text)
}

fn start_pair(options: PairOptions<'_>) -> Result<Pair, Box<dyn std::error::Error>> {
    let dir = tempfile::Builder::new()
        .prefix("sipterm-calls-")
        .tempdir()?;
    let side = |name: &str,
                tone: f32,
                auto_answer: Option<u64>|
     -> Result<Side, Box<dyn std::error::Error>> {
        let input = dir.path().join(format!("{name}-in.wav"));
        write_wav(
            &input,
            FILE_RATE,
            &sine(tone, FILE_RATE, options.seconds, AMPLITUDE),
        )?;
        let out = dir.path().join(format!("{name}-out.wav"));
        let sipterm = Headless::spawn(
            name,
            &HeadlessOptions {
                audio_in: Some(input),
                audio_out: Some(out.clone()),
                auto_answer_ms: auto_answer,
                config_toml: account_config(name, &options),
                extra_args: Vec::new(),
                ..HeadlessOptions::default()
            },
        )?;
        Ok(Side { sipterm, out })
    };
    let caller = side("caller", CALLER_TONE, None)?;
    let callee = side("callee", CALLEE_TONE, options.auto_answer_ms)?;
    Ok(Pair {
        caller,
        callee,
        _dir: dir,
    })
}

/// Caller dials callee (auto-answering); both must reach `confirmed`.
fn connect(pair: &mut Pair) -> TestResult {
    let target = pair.callee.sipterm.uri("callee");
    pair.caller.sipterm.send(&format!("dial {target}"))?;
    let caller = pair
        .caller
        .sipterm
        .expect_call_state("confirmed", SIGNALLING)?;
    let callee = pair
        .callee
        .sipterm
        .expect_call_state("confirmed", SIGNALLING)?;
    // Both ends name the same SIP Call-ID, on every call event from the first one on (the
    // TUI pairs calls with their messages by it).
    let id = caller["sip_call_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !id.is_empty(),
        "caller's call event has no sip_call_id: {caller}"
    );
    assert_eq!(callee["sip_call_id"], caller["sip_call_id"], "{callee}");
    for side in [&pair.caller.sipterm, &pair.callee.sipterm] {
        for event in side.events_of("call") {
            assert_eq!(event["sip_call_id"].as_str(), Some(id.as_str()), "{event}");
        }
    }
    Ok(())
}

/// Waits for a `media` event of `side` showing at least `packets` received (they come every
/// 2 s of call), so that much audio is on record without a fixed sleep.
fn wait_media(side: &mut Headless, packets: u64) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(side.expect_event(
        &format!("a media event with >= {packets} packets received"),
        |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) >= packets,
        SIGNALLING,
    )?)
}

/// Both sides' last `media` event: codec, packets sent and received, all nonzero.
fn check_media_events(side: &Headless, codec: &str) -> TestResult {
    let media = side.events_of("media");
    let last = media
        .last()
        .ok_or_else(|| format!("{}: no media event", side.name()))?;
    println!("{}: last media event {last}", side.name());
    assert_eq!(last["codec"], codec, "{}: codec", side.name());
    assert!(
        last["sent"].as_u64().unwrap_or(0) > 50,
        "{}: too few packets sent: {last}",
        side.name()
    );
    assert!(
        last["received"].as_u64().unwrap_or(0) > 50,
        "{}: too few packets received: {last}",
        side.name()
    );
    Ok(())
}

/// One side hangs up; both must see `terminated`, so both WAVs are complete.
fn hang_up(
    pair: &mut Pair,
    caller_hangs_up: bool,
) -> Result<(Value, Value), Box<dyn std::error::Error>> {
    let (hanger, other) = if caller_hangs_up {
        (&mut pair.caller.sipterm, &mut pair.callee.sipterm)
    } else {
        (&mut pair.callee.sipterm, &mut pair.caller.sipterm)
    };
    hanger.send("hangup")?;
    let a = hanger.expect_call_state("terminated", SIGNALLING)?;
    let b = other.expect_call_state("terminated", SIGNALLING)?;
    Ok((a, b))
}

/// Checks audio both ways after a call has ended.
fn assert_two_way_audio(pair: &Pair) -> TestResult {
    assert_hears(&pair.caller.out, "caller", CALLEE_TONE)?;
    assert_hears(&pair.callee.out, "callee", CALLER_TONE)?;
    Ok(())
}

/// A full call with `codecs` forced on both sides: audio both ways, `media` events with
/// the expected codec and packet counts.
fn codec_call(codecs: Option<&str>, expected_codec: &str, expected_rate: u32) -> TestResult {
    let mut pair = start_pair(PairOptions {
        codecs,
        ..PairOptions::default()
    })?;
    connect(&mut pair)?;
    wait_media(&mut pair.callee.sipterm, 75)?;
    wait_media(&mut pair.caller.sipterm, 75)?;
    hang_up(&mut pair, true)?;
    check_media_events(&pair.caller.sipterm, expected_codec)?;
    check_media_events(&pair.callee.sipterm, expected_codec)?;
    let caller = assert_hears(&pair.caller.out, "caller", CALLEE_TONE)?;
    let callee = assert_hears(&pair.callee.out, "callee", CALLER_TONE)?;
    for heard in [caller, callee] {
        assert_eq!(
            heard.rate, expected_rate,
            "recording rate follows the codec"
        );
    }
    Ok(())
}

#[test]
fn opus_call_carries_audio_both_ways() -> TestResult {
    codec_call(None, "opus/48000", 48_000)
}

#[test]
fn pcmu_call_carries_audio_both_ways() -> TestResult {
    codec_call(Some("\"pcmu\""), "pcmu/8000", 8000)
}

#[test]
fn pcma_call_carries_audio_both_ways() -> TestResult {
    codec_call(Some("\"pcma\""), "pcma/8000", 8000)
}

#[test]
fn caller_hangs_up_and_both_see_terminated() -> TestResult {
    let mut pair = start_pair(PairOptions::default())?;
    connect(&mut pair)?;
    wait_media(&mut pair.callee.sipterm, 75)?;
    let (caller_end, callee_end) = hang_up(&mut pair, true)?;
    println!("caller: {caller_end}\ncallee: {callee_end}");
    check_media_events(&pair.caller.sipterm, "opus/48000")?;
    check_media_events(&pair.callee.sipterm, "opus/48000")?;
    assert_two_way_audio(&pair)
}

#[test]
fn callee_hangs_up_and_both_see_terminated() -> TestResult {
    let mut pair = start_pair(PairOptions::default())?;
    connect(&mut pair)?;
    wait_media(&mut pair.caller.sipterm, 75)?;
    let (callee_end, caller_end) = hang_up(&mut pair, false)?;
    println!("caller: {caller_end}\ncallee: {callee_end}");
    check_media_events(&pair.caller.sipterm, "opus/48000")?;
    check_media_events(&pair.callee.sipterm, "opus/48000")?;
    assert_two_way_audio(&pair)
}

#[test]
fn caller_cancels_while_ringing() -> TestResult {
    let mut pair = start_pair(PairOptions {
        auto_answer_ms: None,
        ..PairOptions::default()
    })?;
    let target = pair.callee.sipterm.uri("callee");
    pair.caller.sipterm.send(&format!("dial {target}"))?;
    pair.callee
        .sipterm
        .expect_call_state("incoming", SIGNALLING)?;
    pair.caller
        .sipterm
        .expect_call_state("ringing", SIGNALLING)?;
    pair.caller.sipterm.send("hangup")?;
    let caller_end = pair
        .caller
        .sipterm
        .expect_call_state("terminated", SIGNALLING)?;
    let callee_end = pair
        .callee
        .sipterm
        .expect_call_state("terminated", SIGNALLING)?;
    println!("caller: {caller_end}\ncallee: {callee_end}");
    assert_eq!(
        caller_end["code"], 487,
        "caller's INVITE ends 487: {caller_end}"
    );
    // Nobody ever reached `confirmed`.
    for side in [&pair.caller.sipterm, &pair.callee.sipterm] {
        assert!(
            !side
                .events_of("call")
                .iter()
                .any(|e| e["state"] == "confirmed"),
            "{}: a cancelled call was confirmed",
            side.name()
        );
    }
    Ok(())
}

#[test]
fn callee_rejects_with_486() -> TestResult {
    let mut pair = start_pair(PairOptions {
        auto_answer_ms: None,
        ..PairOptions::default()
    })?;
    let target = pair.callee.sipterm.uri("callee");
    pair.caller.sipterm.send(&format!("dial {target}"))?;
    pair.callee
        .sipterm
        .expect_call_state("incoming", SIGNALLING)?;
    pair.callee.sipterm.send("reject")?;
    let caller_end = pair
        .caller
        .sipterm
        .expect_call_state("terminated", SIGNALLING)?;
    let callee_end = pair
        .callee
        .sipterm
        .expect_call_state("terminated", SIGNALLING)?;
    println!("caller: {caller_end}\ncallee: {callee_end}");
    assert_eq!(
        caller_end["code"], 486,
        "caller sees Busy Here: {caller_end}"
    );
    Ok(())
}

/// RMS of a recording between two times since its start.
fn level_between(samples: &[i16], rate: u32, from: Duration, to: Duration) -> f32 {
    let at = |t: Duration| ((t.as_secs_f64() * f64::from(rate)) as usize).min(samples.len());
    let (a, b) = (at(from), at(to));
    assert!(
        b > a + rate as usize / 5,
        "window {from:?}..{to:?} too short"
    );
    rms(&samples[a..b])
}

#[test]
fn hold_stops_audio_and_resume_brings_it_back() -> TestResult {
    let mut pair = start_pair(PairOptions {
        seconds: 12.0,
        ..PairOptions::default()
    })?;
    connect(&mut pair)?;
    // The recordings start with the media (about when `confirmed` is seen); times below are
    // measured from here, and windows keep 300 ms margins around each change.
    let start = Instant::now();
    wait_media(&mut pair.caller.sipterm, 75)?;
    let hold_sent = start.elapsed();
    pair.caller.sipterm.send("hold")?;
    let held = pair.caller.sipterm.expect_call_state("held", SIGNALLING)?;
    let held_at = start.elapsed();
    println!("caller: {held} after {:?}", held_at - hold_sent);
    // What the held side is told (informational).
    let callee_state = pair.callee.sipterm.expect_event(
        "the callee's call event after hold",
        |e| e["event"] == "call",
        SIGNALLING,
    )?;
    println!("callee during hold: {callee_state}");
    std::thread::sleep(Duration::from_secs(2));
    let resume_sent = start.elapsed();
    pair.caller.sipterm.send("resume")?;
    pair.caller
        .sipterm
        .expect_call_state("confirmed", SIGNALLING)?;
    let resumed_at = start.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let hangup_at = start.elapsed();
    hang_up(&mut pair, true)?;

    let margin = Duration::from_millis(300);
    for (who, path, tone) in [
        (
            "callee (held side, hears the holder)",
            &pair.callee.out,
            CALLER_TONE,
        ),
        (
            "caller (holder, hears the held side)",
            &pair.caller.out,
            CALLEE_TONE,
        ),
    ] {
        let (rate, samples) = read_wav(path)?;
        let before = level_between(&samples, rate, margin * 2, hold_sent - margin);
        let during = level_between(&samples, rate, held_at + margin, resume_sent);
        let after = level_between(&samples, rate, resumed_at + margin, hangup_at - margin);
        println!("{who}: RMS before hold {before:.0}, during {during:.0}, after resume {after:.0}");
        assert!(before > 2000.0, "{who}: no audio before hold ({before})");
        assert!(
            during < before / 20.0,
            "{who}: audio did not stop during hold (RMS {during:.0} vs {before:.0} before)"
        );
        assert!(
            after > 2000.0,
            "{who}: audio not back after resume ({after})"
        );
        let after_window = &samples
            [((resumed_at + margin).as_secs_f64() * f64::from(rate)) as usize..]
            [..rate as usize / 2];
        let frequency = dominant_frequency(after_window, rate);
        assert!(
            (frequency - tone).abs() < tone * 0.02,
            "{who}: after resume heard {frequency} Hz, expected {tone}"
        );
    }
    Ok(())
}

/// The stranger's tone: neither side's (440 / 1000 Hz), well inside PCMU's band.
const STRANGER_TONE: f32 = 1700.0;

/// Issue 11, "a stranger's RTP is played": while the caller holds (the callee hears nothing
/// from it), a stranger on another loopback address sends the callee's RTP port 3 s of
/// well-formed PCMU carrying its own tone, with its own SSRC. The callee must play none of it
/// (before the fix it filled most of the held call's voiced blocks), must still have played
/// the caller before the hold, and must count every dropped packet in its `media` event.
#[test]
fn a_strangers_rtp_is_not_played_while_the_peer_holds() -> TestResult {
    use common::rtp_stream::{ToneStream, send_pcmu_tone};
    const STRANGER_PACKETS: usize = 150;
    // 127.0.0.2 is another host as far as the callee can tell (Linux routes all of 127/8 to lo).
    let stranger = std::net::UdpSocket::bind("127.0.0.2:0")?;
    let mut pair = start_pair(PairOptions {
        codecs: Some("\"pcmu\""),
        seconds: 20.0,
        plain_rtp: true,
        ..PairOptions::default()
    })?;
    connect(&mut pair)?;
    // The callee plays the caller for a while (the recording works, the caller's stream is
    // known); its `media` event names the RTP socket the stranger aims at.
    let media = wait_media(&mut pair.callee.sipterm, 50)?;
    let port: std::net::SocketAddr = media["local"]
        .as_str()
        .ok_or_else(|| format!("no `local` address in {media}"))?
        .parse()?;
    println!("callee before hold: {media}");
    assert_eq!(
        media["encrypted"], false,
        "plain RTP is what a stranger can fake"
    );
    pair.caller.sipterm.send("hold")?;
    pair.caller.sipterm.expect_call_state("held", SIGNALLING)?;
    pair.callee.sipterm.expect_event(
        "the callee's call event after hold",
        |e| e["event"] == "call",
        SIGNALLING,
    )?;
    let sent = send_pcmu_tone(
        &stranger,
        port,
        &ToneStream::new(STRANGER_TONE, 0x5742_4E47),
        STRANGER_PACKETS,
    )?;
    // Every packet the stranger sent is counted (media events come every 2 s).
    let counted = pair.callee.sipterm.expect_event(
        "a media event counting the stranger's packets",
        |e| e["event"] == "media" && e["foreign"].as_u64().unwrap_or(0) >= sent as u64,
        SIGNALLING,
    );
    hang_up(&mut pair, true)?;

    let ToneBlocks {
        voiced,
        wanted: caller_blocks,
        other: stranger_blocks,
    } = tone_blocks(&pair.callee.out, CALLER_TONE, STRANGER_TONE)?;
    println!(
        "callee's recording: {voiced} voiced 100 ms blocks, {caller_blocks} of the caller's \
         tone, {stranger_blocks} of the stranger's ({:.0} %)",
        100.0 * stranger_blocks as f64 / voiced.max(1) as f64
    );
    assert!(
        caller_blocks >= 5,
        "the callee did not even play the caller before the hold ({caller_blocks} blocks)"
    );
    assert_eq!(
        stranger_blocks, 0,
        "the callee played the stranger's {STRANGER_TONE} Hz in {stranger_blocks} of \
         {voiced} voiced blocks"
    );
    let counted = counted?;
    println!("callee after the stranger: {counted}");
    assert_eq!(
        counted["foreign"].as_u64(),
        Some(sent as u64),
        "exactly the stranger's packets are counted: {counted}"
    );
    Ok(())
}

#[test]
fn dtmf_digits_arrive_in_order() -> TestResult {
    let mut pair = start_pair(PairOptions::default())?;
    connect(&mut pair)?;
    pair.caller.sipterm.send("dtmf 159#")?;
    let mut digits = String::new();
    let sent = Instant::now();
    while digits.len() < 4 {
        let event = pair.callee.sipterm.expect_event(
            "a dtmf event",
            |e| e["event"] == "dtmf",
            SIGNALLING,
        )?;
        digits.push_str(event["digit"].as_str().unwrap_or("?"));
    }
    println!("callee got DTMF {digits:?} within {:?}", sent.elapsed());
    assert_eq!(digits, "159#");
    wait_media(&mut pair.callee.sipterm, 75)?;
    hang_up(&mut pair, true)?;
    // No stray digit after the four.
    let all: Vec<&str> = pair
        .callee
        .sipterm
        .events_of("dtmf")
        .iter()
        .filter_map(|e| e["digit"].as_str())
        .collect();
    assert_eq!(all, ["1", "5", "9", "#"]);
    assert_two_way_audio(&pair)
}

#[test]
fn echo_test_returns_own_tone() -> TestResult {
    let dir = tempfile::Builder::new().prefix("sipterm-echo-").tempdir()?;
    let input = dir.path().join("in.wav");
    write_wav(
        &input,
        FILE_RATE,
        &sine(CALLER_TONE, FILE_RATE, 6.0, AMPLITUDE),
    )?;
    let out = dir.path().join("out.wav");
    let mut sipterm = Headless::spawn(
        "echo-user",
        &HeadlessOptions {
            audio_in: Some(input),
            audio_out: Some(out.clone()),
            ..HeadlessOptions::default()
        },
    )?;
    sipterm.send("dial echo")?;
    sipterm.expect_call_state("confirmed", SIGNALLING)?;
    wait_media(&mut sipterm, 75)?;
    sipterm.send("hangup")?;
    sipterm.expect_call_state("terminated", SIGNALLING)?;
    check_media_events(&sipterm, "opus/48000")?;
    assert_hears(&out, "echo caller", CALLER_TONE)?;
    drop(sipterm);
    Ok(())
}

#[test]
fn bad_commands_give_errors_and_calls_still_work() -> TestResult {
    let mut pair = start_pair(PairOptions::default())?;
    for bad in ["dial", "frobnicate", "hangup two"] {
        pair.caller.sipterm.send(bad)?;
        let error = pair.caller.sipterm.expect_event(
            &format!("an error for `{bad}`"),
            |e| e["event"] == "error",
            SIGNALLING,
        )?;
        println!("`{bad}` -> {error}");
        assert!(
            !error["message"].as_str().unwrap_or_default().is_empty(),
            "empty error message for `{bad}`"
        );
    }
    // A command that needs a call, without one.
    pair.caller.sipterm.send("dtmf 1")?;
    pair.caller.sipterm.expect_event(
        "an error for dtmf without a call",
        |e| e["event"] == "error",
        SIGNALLING,
    )?;
    connect(&mut pair)?;
    wait_media(&mut pair.callee.sipterm, 75)?;
    hang_up(&mut pair, true)?;
    assert_two_way_audio(&pair)
}

/// A 100 ms linear chirp, 300 Hz to 3 kHz, under a Hann window: one sharp correlation peak.
fn chirp(rate: u32) -> Vec<i16> {
    let n = rate as usize / 10;
    let duration = n as f64 / f64::from(rate);
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let (f0, f1) = (300.0, 3000.0);
            let phase = std::f64::consts::TAU * (f0 * t + (f1 - f0) * t * t / (2.0 * duration));
            let window = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
            (16000.0 * window * phase.sin()) as i16
        })
        .collect()
}

/// One-way latency caller -> callee in ms, and the correlation peak: the caller's file is
/// silence with a chirp 1 s in; the callee's recording (which starts with its media, about when
/// the caller's does) holds the chirp that much later.
fn measure_latency(
    codecs: Option<&str>,
    rate: u32,
) -> Result<(f64, f32), Box<dyn std::error::Error>> {
    let dir = tempfile::Builder::new()
        .prefix("sipterm-latency-")
        .tempdir()?;
    let offset = rate as usize; // 1 s
    let burst = chirp(rate);
    let mut signal = vec![0i16; offset];
    signal.extend_from_slice(&burst);
    signal.resize(rate as usize * 4, 0);
    let caller_in = dir.path().join("caller-in.wav");
    write_wav(&caller_in, rate, &signal)?;
    let callee_out = dir.path().join("callee-out.wav");
    let config = |name: &str| codecs.map(|c| config_with_codecs(name, c));
    let mut callee = Headless::spawn(
        "latency-callee",
        &HeadlessOptions {
            audio_out: Some(callee_out.clone()),
            auto_answer_ms: Some(0),
            config_toml: config("callee"),
            ..HeadlessOptions::default()
        },
    )?;
    let mut caller = Headless::spawn(
        "latency-caller",
        &HeadlessOptions {
            audio_in: Some(caller_in),
            config_toml: config("caller"),
            ..HeadlessOptions::default()
        },
    )?;
    caller.send(&format!("dial {}", callee.uri("callee")))?;
    caller.expect_call_state("confirmed", SIGNALLING)?;
    callee.expect_call_state("confirmed", SIGNALLING)?;
    wait_media(&mut callee, 75)?;
    caller.send("hangup")?;
    caller.expect_call_state("terminated", SIGNALLING)?;
    callee.expect_call_state("terminated", SIGNALLING)?;

    let (out_rate, recorded) = read_wav(&callee_out)?;
    assert_eq!(out_rate, rate, "the file rate was chosen to be the codec's");
    // Search from 100 ms before the chirp's place in the file, up to 500 ms after.
    let early = rate as usize / 10;
    let region = recorded
        .get(offset - early..)
        .ok_or("callee recording shorter than 1 s")?;
    let (lag, peak) = cross_correlation_lag(&burst, region, rate as usize * 6 / 10);
    Ok(((lag as f64 - early as f64) * 1000.0 / f64::from(rate), peak))
}

/// The chirp must come through recognisably (its shape kept), and after it was sent.
#[test]
fn one_way_latency_on_loopback() -> TestResult {
    for (codecs, name, rate) in [(None, "opus", 48_000), (Some("\"pcmu\""), "pcmu", 8000)] {
        let (latency_ms, peak) = measure_latency(codecs, rate)?;
        println!(
            "one-way latency caller -> callee ({name}, loopback): {latency_ms:.1} ms \
             (correlation peak {peak:.2})"
        );
        assert!(
            peak > 0.7,
            "{name}: chirp not found in the callee's recording (peak {peak})"
        );
        assert!(
            latency_ms > 0.0,
            "{name}: the chirp arrived before it was sent? {latency_ms} ms"
        );
    }
    Ok(())
}

/// Clock ticks per second for /proc/PID/stat times.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU time of each sipterm over a 30 s Opus call (tone both ways). Not part of `make test`:
/// run with `cargo test --test calls_loopback -- --ignored --nocapture cpu`.
#[test]
#[ignore = "benchmark: 30 s call, prints CPU figures"]
fn cpu_time_of_a_30_s_opus_call() -> TestResult {
    let mut pair = start_pair(PairOptions {
        seconds: 32.0,
        ..PairOptions::default()
    })?;
    let idle = [
        pair.caller.sipterm.cpu_ticks().ok_or("no /proc stat")?,
        pair.callee.sipterm.cpu_ticks().ok_or("no /proc stat")?,
    ];
    connect(&mut pair)?;
    let started = Instant::now();
    // Media events come every 2 s; 1500 packets is 30 s.
    pair.caller.sipterm.expect_event(
        "30 s of media",
        |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) >= 1500,
        Duration::from_secs(45),
    )?;
    let call_seconds = started.elapsed().as_secs_f64();
    let busy = [
        pair.caller.sipterm.cpu_ticks().ok_or("no /proc stat")?,
        pair.callee.sipterm.cpu_ticks().ok_or("no /proc stat")?,
    ];
    hang_up(&mut pair, true)?;
    let tick = clock_ticks_per_second();
    for (i, who) in ["caller", "callee"].iter().enumerate() {
        let seconds = (busy[i] - idle[i]) as f64 / tick;
        println!(
            "{who}: {seconds:.2} s CPU (utime+stime) over a {call_seconds:.1} s opus call = {:.1} % of one core \
             (start-up before the call: {:.2} s)",
            100.0 * seconds / call_seconds,
            idle[i] as f64 / tick
        );
    }
    assert_two_way_audio(&pair)
}
