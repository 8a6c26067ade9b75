//! PBX and carrier features against real peers on 127.0.0.1 (issue 15): sipp scenarios that
//! require 100rel, play early media, want session timers refreshed (or stop refreshing),
//! send UPDATE with new SDP, refuse DTMF other than INFO; baresip and other sipterms for
//! attended transfer and the three-way conference; do-not-disturb and forwarding. Where the
//! point is audio, the recordings are checked (tones, not wall-clock timing).
//!
//! Every peer is required: a missing sipp or baresip fails the test (`make test` installs
//! them).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::audio::{SOUND_RMS, analyse, tone_blocks};
use common::headless::{Headless, HeadlessOptions, read_wav, sine, write_wav};
use common::peers::{Baresip, BaresipConfig, Sipp};
use common::ports::free_udp_port;
use common::rtp_stream::{ToneStream, write_rtp_pcap};
use serde_json::Value;
use sipterm::media::tones::{goertzel_power, rms};

/// How long a SIP exchange on loopback may take before we call it hung.
const SIGNALLING: Duration = Duration::from_secs(15);
/// What sipp's scenarios take at most (their own pauses and timeouts included).
const SCENARIO: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("sipterm-pbx-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// A tone WAV (20 s, longer than any call here) at `rate`.
fn tone_wav(dir: &Path, name: &str, frequency: f32, rate: u32) -> PathBuf {
    let path = dir.join(name);
    write_wav(&path, rate, &sine(frequency, rate, 20.0, 8000.0)).expect("tone WAV");
    path
}

/// A headless sipterm with one account `name` and the extra account keys `keys`.
fn sipterm(
    name: &str,
    keys: &str,
    audio_in: Option<PathBuf>,
    audio_out: Option<PathBuf>,
    auto_answer_ms: Option<u64>,
) -> Headless {
    let config = format!("[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@127.0.0.1\"\n{keys}");
    let options = HeadlessOptions {
        audio_in,
        audio_out,
        auto_answer_ms,
        config_toml: Some(config),
        ..HeadlessOptions::default()
    };
    Headless::spawn(name, &options).unwrap_or_else(|e| panic!("sipterm {name} did not start: {e}"))
}

fn send(sipterm: &mut Headless, line: &str) {
    if let Err(e) = sipterm.send(line) {
        panic!(
            "{}: cannot send `{line}`: {e}\n{}",
            sipterm.name(),
            sipterm.recent_output()
        );
    }
}

fn expect(sipterm: &mut Headless, what: &str, matches: impl FnMut(&Value) -> bool) -> Value {
    match sipterm.expect_event(what, matches, SIGNALLING) {
        Ok(event) => event,
        Err(e) => panic!("{}: {e}\n{}", sipterm.name(), sipterm.recent_output()),
    }
}

fn expect_call(sipterm: &mut Headless, call: &str, state: &str) -> Value {
    expect(sipterm, &format!("call {call} {state}"), |e| {
        e["event"] == "call" && e["call"] == call && e["state"] == state
    })
}

/// Waits until every `(call, state)` was reported, in any order (earlier events count).
fn expect_calls(sipterm: &mut Headless, wanted: &[(&str, &str)]) {
    let deadline = std::time::Instant::now() + SIGNALLING;
    loop {
        let missing: Vec<&(&str, &str)> = wanted
            .iter()
            .filter(|(call, state)| {
                !sipterm
                    .events_of("call")
                    .iter()
                    .any(|e| e["call"] == *call && e["state"] == *state)
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            panic!(
                "{}: never saw {missing:?}\n{}",
                sipterm.name(),
                sipterm.recent_output()
            );
        }
        let _ = sipterm.expect_event("any event", |_| true, left);
    }
}

fn wait_sipp(sipp: &mut Sipp, sipterm: &Headless) {
    if let Err(e) = sipp.wait_success(SCENARIO) {
        panic!(
            "sipp did not succeed: {e}\n--- sipterm ---\n{}",
            sipterm.recent_output()
        );
    }
}

fn quit(sipterm: &mut Headless) {
    let status = sipterm.quit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "{} did not quit cleanly: {status:?}\n{}",
        sipterm.name(),
        sipterm.recent_output()
    );
}

/// A sipp scenario template from tests/data/sipp with `@NAME@` placeholders filled in, written
/// to `dir`.
fn scenario_from(template: &str, dir: &Path, fill: &[(&str, String)]) -> PathBuf {
    let mut text = std::fs::read_to_string(Sipp::scenario(template)).expect("scenario template");
    for (name, value) in fill {
        text = text.replace(&format!("@{name}@"), value);
    }
    let path = dir.join(template);
    std::fs::write(&path, text).expect("scenario copy");
    path
}

fn sip_out(sipterm: &Headless, prefix: &str) -> usize {
    sipterm
        .events_of("sip")
        .iter()
        .filter(|e| {
            e["dir"] == "out" && e["summary"].as_str().is_some_and(|s| s.starts_with(prefix))
        })
        .count()
}

/// For each 100 ms block with sound: the share of its power at each of `frequencies` (a pure
/// tone is 1.0 at its frequency, two equal tones 0.5 each).
fn tone_shares(path: &Path, frequencies: &[f32]) -> Vec<Vec<f32>> {
    let (rate, samples) = read_wav(path).expect("recording");
    samples
        .chunks(rate as usize / 10)
        .filter(|block| rms(block) > SOUND_RMS)
        .map(|block| {
            // goertzel_power gives (A/32768)^2 / 4 for a sine of peak A; its power is half of
            // (A/32768)^2, i.e. twice that.
            let power = (rms(block) / 32768.0).powi(2);
            frequencies
                .iter()
                .map(|f| 2.0 * goertzel_power(block, rate, *f) / power.max(f32::MIN_POSITIVE))
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------- 100rel, early media

/// A PBX answers with a reliable 183 and plays an announcement (sipp plays a 700 Hz pcap)
/// before it answers: sipterm PRACKs it, says "early", and plays the peer's audio, never its
/// own ringback (425 Hz).
#[test]
fn reliable_183_early_media_plays_the_peers_audio_instead_of_ringback() {
    let dir = scratch("early-media");
    let pcap = dir.path().join("announcement.pcap");
    let packets = ToneStream::new(700.0, 0x5eed).packets(150);
    write_rtp_pcap(
        &pcap,
        &packets,
        "127.0.0.1:6000".parse().expect("address"),
        "127.0.0.1:6002".parse().expect("address"),
    )
    .expect("pcap");
    let scenario = scenario_from(
        "uas_100rel_early_media.xml",
        dir.path(),
        &[("PCAP", pcap.display().to_string())],
    );
    let port = free_udp_port().expect("port");
    let mut sipp = Sipp::uas_without_echo(&scenario, port, &[]).expect("sipp");
    let heard = dir.path().join("heard.wav");
    let mut alice = sipterm("alice", "", None, Some(heard.clone()), None);
    send(&mut alice, &format!("dial sip:pbx@127.0.0.1:{port}"));
    let early = expect_call(&mut alice, "1", "early");
    assert_eq!(early["code"], 183);
    expect_call(&mut alice, "1", "confirmed");
    expect_call(&mut alice, "1", "terminated");
    wait_sipp(&mut sipp, &alice);
    assert_eq!(
        sip_out(&alice, "PRACK "),
        1,
        "one PRACK for the reliable 183"
    );
    quit(&mut alice);
    let blocks = tone_blocks(&heard, 700.0, 425.0).expect("recording");
    println!("early media: {blocks:?} (100 ms blocks)");
    assert!(
        blocks.wanted >= 25,
        "the announcement was not played: {blocks:?}"
    );
    assert_eq!(
        blocks.other, 0,
        "ringback was played over early media: {blocks:?}"
    );
}

/// A carrier calls in requiring 100rel, asks for a 60 s session (422: our Min-SE is 90),
/// retries with 90 s, PRACKs our reliable 180, gets the session timer in the 200 and moves
/// the media with an UPDATE; sipterm sends its RTP to the new port.
#[test]
fn carrier_call_with_100rel_422_session_timer_and_update() {
    let port = free_udp_port().expect("port");
    let mut alice = sipterm("alice", "", None, None, Some(2000));
    let mut sipp = Sipp::uac(
        &Sipp::scenario("uac_100rel_timer_update.xml"),
        port,
        alice.listen,
        &["-s", "alice"],
    )
    .expect("sipp");
    expect_call(&mut alice, "1", "incoming");
    expect_call(&mut alice, "1", "confirmed");
    expect_call(&mut alice, "1", "terminated");
    wait_sipp(&mut sipp, &alice);
    let media = alice.events_of("media");
    let last = media
        .last()
        .unwrap_or_else(|| panic!("no media event\n{}", alice.recent_output()));
    let moved = format!("127.0.0.1:{}", sipp.media_port + 2);
    assert_eq!(
        last["remote"],
        moved.as_str(),
        "RTP did not follow the UPDATE: {last}"
    );
    assert_eq!(sip_out(&alice, "SIP/2.0 422"), 1);
    quit(&mut alice);
}

// ---------------------------------------------------------------- session timers

/// The callee asks for a 4 s session refreshed by us: sipp sees two UPDATE refreshes (each
/// within the interval) before it hangs up.
#[test]
fn session_timer_refreshes_seen_by_sipp() {
    let port = free_udp_port().expect("port");
    let mut sipp =
        Sipp::uas(&Sipp::scenario("uas_session_timer_refresh.xml"), port, &[]).expect("sipp");
    let mut alice = sipterm("alice", "", None, None, None);
    send(&mut alice, &format!("dial sip:pbx@127.0.0.1:{port}"));
    expect_call(&mut alice, "1", "confirmed");
    expect_call(&mut alice, "1", "terminated");
    wait_sipp(&mut sipp, &alice);
    assert_eq!(sip_out(&alice, "UPDATE "), 2, "two refreshes");
    quit(&mut alice);
}

/// The callee takes the refreshing on itself and never refreshes a 6 s session: sipterm
/// hangs up 2 s before it would expire. Measured in the recording: sipp echoes our tone for
/// as long as the call lasts (about 4 s).
#[test]
fn session_timer_bye_when_the_peer_stops_refreshing() {
    let dir = scratch("no-refresh");
    let port = free_udp_port().expect("port");
    let mut sipp = Sipp::uas(
        &Sipp::scenario("uas_session_timer_no_refresh.xml"),
        port,
        &[],
    )
    .expect("sipp");
    let heard = dir.path().join("heard.wav");
    let tone = tone_wav(dir.path(), "tone.wav", 1000.0, 8000);
    let mut alice = sipterm("alice", "", Some(tone), Some(heard.clone()), None);
    send(&mut alice, &format!("dial sip:pbx@127.0.0.1:{port}"));
    expect_call(&mut alice, "1", "confirmed");
    let ended = expect_call(&mut alice, "1", "terminated");
    assert!(
        ended["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Session expired")),
        "{ended}"
    );
    wait_sipp(&mut sipp, &alice);
    quit(&mut alice);
    let heard = analyse(&heard).expect("recording");
    println!("session lasted (echo heard): {heard:?}");
    assert!(
        (3.0..=4.6).contains(&heard.sound_seconds),
        "BYE should come 4 s into a 6 s session; the echo lasted {} s",
        heard.sound_seconds
    );
}

// ---------------------------------------------------------------- DND, forwarding, DTMF

fn refused_call(keys: &str, command: Option<&str>, code: u16) -> (Headless, String) {
    let dir = scratch("refused");
    let mut bob = sipterm("bob", keys, None, None, None);
    if let Some(command) = command {
        send(&mut bob, command);
        expect(&mut bob, "dnd on", |e| {
            e["event"] == "dnd" && e["on"] == true
        });
    }
    let scenario = scenario_from("uac_refused.xml", dir.path(), &[("CODE", code.to_string())]);
    let port = free_udp_port().expect("port");
    let mut sipp = Sipp::uac(&scenario, port, bob.listen, &["-s", "bob"]).expect("sipp");
    wait_sipp(&mut sipp, &bob);
    let missed = expect(&mut bob, "a missed call", |e| e["event"] == "missed");
    assert_eq!(missed["code"], code, "{missed}");
    assert!(
        bob.events_of("call").is_empty(),
        "a refused call must not ring"
    );
    (bob, sipp.messages())
}

#[test]
fn do_not_disturb_answers_480_from_the_config_and_486_from_the_command() {
    let (mut bob, _) = refused_call("dnd = true\ndnd_code = 480\n", None, 480);
    quit(&mut bob);
    let (mut bob, _) = refused_call("", Some("dnd on"), 486);
    // Off again: the next call rings.
    send(&mut bob, "dnd off");
    expect(&mut bob, "dnd off", |e| {
        e["event"] == "dnd" && e["on"] == false
    });
    quit(&mut bob);
}

#[test]
fn forward_always_redirects_with_302() {
    let (mut bob, messages) =
        refused_call("forward_to = \"sip:voicemail@127.0.0.1:5999\"\n", None, 302);
    assert!(
        messages.contains("Contact: <sip:voicemail@127.0.0.1:5999>"),
        "302 without the target:\n{messages}"
    );
    quit(&mut bob);
}

/// The callee has no telephone-event: sipterm's DTMF goes as SIP INFO, one digit per request,
/// in order (sipp checks each Signal).
#[test]
fn dtmf_by_info_when_the_peer_has_no_telephone_event() {
    let port = free_udp_port().expect("port");
    let mut sipp = Sipp::uas(&Sipp::scenario("uas_info_dtmf.xml"), port, &[]).expect("sipp");
    let mut alice = sipterm("alice", "", None, None, None);
    send(&mut alice, &format!("dial sip:pbx@127.0.0.1:{port}"));
    expect_call(&mut alice, "1", "confirmed");
    send(&mut alice, "dtmf 12#");
    for _ in 0..3 {
        expect(&mut alice, "200 to INFO", |e| {
            e["event"] == "sip" && e["dir"] == "in" && e["summary"] == "SIP/2.0 200 OK"
        });
    }
    send(&mut alice, "hangup");
    expect_call(&mut alice, "1", "terminated");
    wait_sipp(&mut sipp, &alice);
    assert_eq!(sip_out(&alice, "INFO "), 3);
    quit(&mut alice);
}

/// `dtmf = "inband"`: the digit is its two tones in the audio (another sipterm records it).
#[test]
fn dtmf_inband_puts_the_dual_tone_in_the_audio() {
    let dir = scratch("inband");
    let heard = dir.path().join("bob.wav");
    let mut bob = sipterm("bob", "", None, Some(heard.clone()), Some(0));
    let mut alice = sipterm(
        "alice",
        "dtmf = \"inband\"\ncodecs = [\"pcmu\"]\n",
        None,
        None,
        None,
    );
    send(&mut alice, &format!("dial {}", bob.uri("bob")));
    expect_call(&mut alice, "1", "confirmed");
    expect_call(&mut bob, "1", "confirmed");
    // Let the media settle, then key 5 (770 + 1336 Hz).
    std::thread::sleep(Duration::from_millis(500));
    send(&mut alice, "dtmf 5");
    std::thread::sleep(Duration::from_millis(800));
    send(&mut alice, "hangup");
    expect_call(&mut bob, "1", "terminated");
    quit(&mut alice);
    quit(&mut bob);
    let (rate, samples) = read_wav(&heard).expect("recording");
    let frame = rate as usize / 50;
    let digit_frames = samples
        .chunks(frame)
        .filter(|f| rms(f) > SOUND_RMS)
        .filter(|f| {
            // The digit's row and column tones against the neighbouring rows and columns
            // (a 20 ms window leaks about 1/20 of a tone's power into a bin 73 Hz away).
            let p = |hz| goertzel_power(f, rate, hz);
            let (low, high) = (p(770.0), p(1336.0));
            let neighbour = [697.0, 852.0, 1209.0, 1477.0]
                .into_iter()
                .map(p)
                .fold(0.0f32, f32::max);
            low > 5.0 * neighbour && high > 5.0 * neighbour
        })
        .count();
    println!("frames with 770+1336 Hz: {digit_frames}");
    assert!(
        (3..=6).contains(&digit_frames),
        "expected about 100 ms of the digit's tones, found {digit_frames} frames of 20 ms"
    );
}

// ---------------------------------------------------------------- attended transfer

/// The -dec.wav baresip recorded last (its newest call).
fn newest_dump(baresip: &Baresip, dir: &Path) -> PathBuf {
    baresip
        .received_audio_files(Some(dir))
        .last()
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "baresip recorded nothing in {}\n{}",
                dir.display(),
                baresip.log()
            )
        })
}

fn start_baresip(dir: &Path, dumps: &Path, tone: &Path) -> Baresip {
    let config = BaresipConfig {
        sip_port: free_udp_port().expect("port"),
        user: "baresip".into(),
        audio_in: Some(tone.to_path_buf()),
        auto_answer: true,
        codecs: vec!["g711"],
        registration: None,
        mediaenc: None,
    };
    Baresip::start_with(&dir.join("baresip"), Some(dumps), &config).expect("baresip")
}

/// alice (sipterm) talks to baresip, holds it, consults carol (another sipterm), then
/// transfers baresip to carol: baresip follows the REFER with an INVITE that replaces
/// carol's call with alice (baresip 1.0 puts the Replaces in the Request-URI); carol takes it
/// without ringing, alice is out of both calls, and baresip and carol hear each other.
#[test]
fn attended_transfer_of_baresip_to_another_sipterm() {
    let dir = scratch("attended-baresip");
    let dumps = dir.path().join("dumps");
    std::fs::create_dir_all(&dumps).expect("dumps");
    let baresip_tone = tone_wav(dir.path(), "baresip.wav", 600.0, 8000);
    let mut baresip = start_baresip(dir.path(), &dumps, &baresip_tone);
    let carol_heard = dir.path().join("carol.wav");
    let carol_tone = tone_wav(dir.path(), "carol-tone.wav", 900.0, 48000);
    // No auto-answer for carol: she answers alice by hand, the replacing call by itself.
    let mut carol = sipterm(
        "carol",
        "",
        Some(carol_tone),
        Some(carol_heard.clone()),
        None,
    );
    let mut alice = sipterm("alice", "", None, None, None);
    send(
        &mut alice,
        &format!("dial sip:baresip@127.0.0.1:{}", baresip.sip_port),
    );
    expect_call(&mut alice, "1", "confirmed");
    send(&mut alice, "hold 1");
    expect_call(&mut alice, "1", "held");
    send(&mut alice, &format!("dial {}", carol.uri("carol")));
    expect_call(&mut carol, "1", "incoming");
    send(&mut carol, "answer");
    expect_call(&mut alice, "2", "confirmed");
    expect_call(&mut carol, "1", "confirmed");
    send(&mut alice, "attended-transfer 1 2");
    // carol: the replacing call comes in and is answered at once; her call with alice ends.
    let replaces = expect(&mut carol, "a replacing call", |e| e["event"] == "replaces");
    assert_eq!(replaces["replaces"], "1", "{replaces}");
    expect_calls(&mut carol, &[("2", "confirmed"), ("1", "terminated")]);
    // alice: baresip reports success, alice hangs up; both her calls are over.
    expect_calls(&mut alice, &[("1", "terminated"), ("2", "terminated")]);
    let done: Vec<&Value> = alice
        .events_of("transfer")
        .into_iter()
        .filter(|e| e["done"] == true)
        .collect();
    assert!(
        done.iter().any(|e| e["code"] == 200),
        "no successful transfer report: {done:?}"
    );
    // baresip and carol talk.
    std::thread::sleep(Duration::from_secs(3));
    send(&mut carol, "hangup");
    expect_call(&mut carol, "2", "terminated");
    let _ = baresip.wait_output("terminated", SIGNALLING);
    quit(&mut alice);
    quit(&mut carol);
    let _ = baresip.quit(Duration::from_secs(5));
    let heard =
        common::audio::assert_hears(&carol_heard, "carol", 600.0).expect("carol's recording");
    println!("carol heard baresip: {heard:?}");
    let dump = newest_dump(&baresip, &dumps);
    let heard = common::audio::assert_hears(&dump, "baresip", 900.0).expect("baresip's recording");
    println!("baresip heard carol: {heard:?}");
}

/// Three sipterms: alice transfers bob to carol; bob is asked (`transfer_request`), accepts,
/// and sends a standard Replaces header; audio checked between bob and carol.
#[test]
fn attended_transfer_between_sipterms_with_the_transferee_asked_first() {
    let dir = scratch("attended-sipterms");
    let bob_heard = dir.path().join("bob.wav");
    let carol_heard = dir.path().join("carol.wav");
    let mut bob = sipterm(
        "bob",
        "",
        Some(tone_wav(dir.path(), "bob.tone.wav", 500.0, 48000)),
        Some(bob_heard.clone()),
        Some(0),
    );
    let mut carol = sipterm(
        "carol",
        "",
        Some(tone_wav(dir.path(), "carol.tone.wav", 1100.0, 48000)),
        Some(carol_heard.clone()),
        Some(0),
    );
    let mut alice = sipterm("alice", "", None, None, None);
    send(&mut alice, &format!("dial {}", bob.uri("bob")));
    expect_call(&mut alice, "1", "confirmed");
    send(&mut alice, "hold 1");
    expect_call(&mut alice, "1", "held");
    send(&mut alice, &format!("dial {}", carol.uri("carol")));
    expect_call(&mut alice, "2", "confirmed");
    send(&mut alice, "attended-transfer");
    let asked = expect(&mut bob, "a transfer request", |e| {
        e["event"] == "transfer_request"
    });
    assert!(
        asked["target"]
            .as_str()
            .is_some_and(|t| t.contains("?Replaces=")),
        "{asked}"
    );
    assert!(
        asked["referred_by"]
            .as_str()
            .is_some_and(|r| r.contains("alice")),
        "{asked}"
    );
    send(&mut bob, "accept-transfer");
    expect(&mut carol, "a replacing call", |e| e["event"] == "replaces");
    expect_calls(&mut carol, &[("2", "confirmed"), ("1", "terminated")]);
    expect_calls(&mut bob, &[("2", "confirmed"), ("1", "terminated")]);
    expect_calls(&mut alice, &[("1", "terminated"), ("2", "terminated")]);
    std::thread::sleep(Duration::from_secs(3));
    send(&mut bob, "hangup");
    expect_call(&mut carol, "2", "terminated");
    quit(&mut alice);
    quit(&mut bob);
    quit(&mut carol);
    common::audio::assert_hears(&carol_heard, "carol", 500.0).expect("carol heard bob");
    let bob_heard = common::audio::analyse(&bob_heard).expect("bob's recording");
    println!("bob heard: {bob_heard:?}");
    assert!(
        (bob_heard.frequency - 1100.0).abs() < 22.0,
        "bob heard {bob_heard:?}"
    );
}

// ---------------------------------------------------------------- conference

/// alice (sipterm, 500 Hz) calls baresip (800 Hz) and carol (sipterm, 1200 Hz) and joins the
/// calls: baresip hears alice and carol but not itself, carol hears alice and baresip but not
/// herself. Then baresip's leg is hung up: carol goes on hearing alice alone.
#[test]
fn three_way_conference_each_peer_hears_the_other_two_not_itself() {
    let dir = scratch("conference");
    let dumps = dir.path().join("dumps");
    std::fs::create_dir_all(&dumps).expect("dumps");
    let mut baresip = start_baresip(
        dir.path(),
        &dumps,
        &tone_wav(dir.path(), "b.wav", 800.0, 8000),
    );
    let carol_heard = dir.path().join("carol.wav");
    let mut carol = sipterm(
        "carol",
        "",
        Some(tone_wav(dir.path(), "c.wav", 1200.0, 48000)),
        Some(carol_heard.clone()),
        Some(0),
    );
    let mut alice = sipterm(
        "alice",
        "",
        Some(tone_wav(dir.path(), "a.wav", 500.0, 48000)),
        None,
        None,
    );
    send(
        &mut alice,
        &format!("dial sip:baresip@127.0.0.1:{}", baresip.sip_port),
    );
    expect_call(&mut alice, "1", "confirmed");
    send(&mut alice, &format!("dial {}", carol.uri("carol")));
    expect_call(&mut alice, "2", "confirmed");
    // carol waits on hold (baresip 1.0 stops recording at a re-INVITE that restarts its
    // player, so baresip's call is not the one held); joining resumes her.
    send(&mut alice, "hold 2");
    expect_call(&mut alice, "2", "held");
    send(&mut alice, "conference");
    let conference = expect(&mut alice, "the conference", |e| e["event"] == "conference");
    assert_eq!(
        conference["calls"],
        serde_json::json!(["1", "2"]),
        "{conference}"
    );
    expect_call(&mut alice, "2", "confirmed");
    std::thread::sleep(Duration::from_secs(4));
    send(&mut alice, "hangup 1");
    // The leg's media stops first: the conference ends, then the call.
    expect(&mut alice, "the conference's end", |e| {
        e["event"] == "conference" && e["calls"] == serde_json::json!([])
    });
    expect_call(&mut alice, "1", "terminated");
    std::thread::sleep(Duration::from_secs(2));
    send(&mut alice, "hangup 2");
    expect_call(&mut carol, "1", "terminated");
    let _ = baresip.wait_output("terminated", SIGNALLING);
    quit(&mut alice);
    quit(&mut carol);
    let _ = baresip.quit(Duration::from_secs(5));

    // baresip: alice and carol together, never its own 800 Hz.
    for file in baresip.received_audio_files(Some(&dumps)) {
        println!(
            "baresip dump {}: {:?}",
            file.display(),
            analyse(&file).map_err(|e| e.to_string())
        );
    }
    let dump = newest_dump(&baresip, &dumps);
    let shares = tone_shares(&dump, &[500.0, 1200.0, 800.0]);
    let both = shares.iter().filter(|s| s[0] > 0.1 && s[1] > 0.1).count();
    let itself = shares.iter().filter(|s| s[2] > 0.05).count();
    println!(
        "baresip: {} voiced blocks, {both} with alice and carol, {itself} with itself",
        shares.len()
    );
    assert!(
        both >= 25,
        "baresip did not hear alice and carol together ({both} blocks)"
    );
    assert_eq!(itself, 0, "baresip heard itself");
    // carol: alice and baresip together, never her own 1200 Hz; then alice alone.
    let shares = tone_shares(&carol_heard, &[500.0, 800.0, 1200.0]);
    let both = shares.iter().filter(|s| s[0] > 0.1 && s[1] > 0.1).count();
    let itself = shares.iter().filter(|s| s[2] > 0.05).count();
    let last_baresip = shares.iter().rposition(|s| s[1] > 0.1).unwrap_or(0);
    let alice_after = shares[last_baresip + 1..]
        .iter()
        .filter(|s| s[0] > 0.5 && s[1] < 0.01)
        .count();
    println!(
        "carol: {} voiced blocks, {both} with alice and baresip, {itself} with herself, {alice_after} with alice alone after baresip left",
        shares.len()
    );
    assert!(
        both >= 25,
        "carol did not hear alice and baresip together ({both} blocks)"
    );
    assert_eq!(itself, 0, "carol heard herself");
    assert!(
        alice_after >= 10,
        "after baresip left, carol should hear alice alone"
    );
}

/// Split: alice joins bob and carol (sipterms), then splits the conference keeping carol:
/// bob goes on hold (he sees it), carol hears alice alone again.
#[test]
fn split_conference_keeps_one_call_and_holds_the_other() {
    let dir = scratch("split");
    let carol_heard = dir.path().join("carol.wav");
    let mut bob = sipterm(
        "bob",
        "",
        Some(tone_wav(dir.path(), "b.wav", 800.0, 48000)),
        None,
        Some(0),
    );
    let mut carol = sipterm(
        "carol",
        "",
        Some(tone_wav(dir.path(), "c.wav", 1200.0, 48000)),
        Some(carol_heard.clone()),
        Some(0),
    );
    let mut alice = sipterm(
        "alice",
        "",
        Some(tone_wav(dir.path(), "a.wav", 500.0, 48000)),
        None,
        None,
    );
    send(&mut alice, &format!("dial {}", bob.uri("bob")));
    expect_call(&mut alice, "1", "confirmed");
    send(&mut alice, &format!("dial {}", carol.uri("carol")));
    expect_call(&mut alice, "2", "confirmed");
    send(&mut alice, "conference 1 2");
    expect(&mut alice, "the conference", |e| e["event"] == "conference");
    std::thread::sleep(Duration::from_secs(3));
    send(&mut alice, "split 2");
    expect(&mut alice, "the split", |e| {
        e["event"] == "conference" && e["calls"] == serde_json::json!([])
    });
    expect_call(&mut alice, "1", "held");
    expect_call(&mut bob, "1", "held");
    std::thread::sleep(Duration::from_secs(2));
    send(&mut alice, "hangup 2");
    expect_call(&mut carol, "1", "terminated");
    send(&mut alice, "hangup 1");
    expect_call(&mut bob, "1", "terminated");
    quit(&mut alice);
    quit(&mut bob);
    quit(&mut carol);
    let shares = tone_shares(&carol_heard, &[500.0, 800.0, 1200.0]);
    let both = shares.iter().filter(|s| s[0] > 0.1 && s[1] > 0.1).count();
    let last_bob = shares.iter().rposition(|s| s[1] > 0.1).unwrap_or(0);
    let alice_after = shares[last_bob + 1..]
        .iter()
        .filter(|s| s[0] > 0.5 && s[1] < 0.01)
        .count();
    println!(
        "carol: {} voiced blocks, {both} with alice and bob, {alice_after} with alice alone after the split",
        shares.len()
    );
    assert!(
        both >= 20,
        "carol did not hear the conference ({both} blocks)"
    );
    assert!(
        alice_after >= 10,
        "after the split carol should hear alice alone"
    );
}
