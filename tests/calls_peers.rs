//! Calls between a headless sipterm and real peers on 127.0.0.1: sipp
//! scenarios (answer, digest challenge, incoming call, CANCEL, remote BYE),
//! baresip (audio both ways through PCMU) and a call through Kamailio
//! (registration, 407 on INVITE, Record-Route honoured by the BYE).
//!
//! Every peer is required: a missing sipp/kamailio/baresip fails the test
//! (the Makefile installs them).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::peers::{Baresip, Kamailio, Sipp};
use common::ports::free_udp_port;
use common::sipterm::{Account, Options, Sipterm};
use serde_json::Value;
use sipterm::media::tones::{dominant_frequency, goertzel_power, rms};

/// How long a SIP exchange on loopback may take before we call it hung.
const SIGNALLING: Duration = Duration::from_secs(15);
/// How long each call carries audio before it is hung up.
const TALK: Duration = Duration::from_secs(3);
/// sipterm's tone and the peer's tone (distinct, both well inside 8 kHz telephony).
const SIPTERM_TONE: f32 = 1000.0;
const PEER_TONE: f32 = 440.0;

// ------------------------------------------------------------- helpers ----

/// A test's scratch directory (removed at the end; failures print the logs).
fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("sipterm-calls-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// Writes `seconds` of a sine at `frequency` (16 bit, `rate` Hz, the same
/// signal in each of `channels`).
fn write_tone(
    path: &Path,
    frequency: f32,
    (rate, channels): (u32, u16),
    seconds: f32,
    amplitude: f32,
) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create tone WAV");
    let count = (seconds * rate as f32) as u32;
    for n in 0..count {
        let phase = std::f32::consts::TAU * frequency * n as f32 / rate as f32;
        for _ in 0..channels {
            writer
                .write_sample((amplitude * phase.sin()) as i16)
                .expect("write tone sample");
        }
    }
    writer.finalize().expect("finalize tone WAV");
}

/// The first channel of a 16-bit WAV and its rate (baresip's opus dumps are stereo).
fn read_wav(path: &Path) -> (u32, Vec<i16>) {
    let mut reader = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .step_by(channels)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("bad samples in {}: {e}", path.display()));
    (spec.sample_rate, samples)
}

/// Checks that a recording holds at least 0.5 s of `expected` Hz (in 20 ms
/// windows louder than silence), and returns (voiced seconds, measured Hz, RMS).
fn assert_tone(what: &str, path: &Path, expected: f32) -> (f32, f32, f32) {
    let (rate, samples) = read_wav(path);
    let window = (rate / 50) as usize;
    let voiced: Vec<i16> = samples
        .chunks(window)
        .filter(|w| w.len() == window && rms(w) > 500.0)
        .flatten()
        .copied()
        .collect();
    let voiced_seconds = voiced.len() as f32 / rate as f32;
    // Analyse 0.25 s from the middle of the sound (enough for a 4 Hz resolution, cheap in
    // debug builds): past the codec and jitter-buffer start-up and past a ringtone blip
    // before an auto-answer, which lands in the recording first on a loaded machine.
    let start = (voiced.len() / 2).max(rate as usize / 10).min(voiced.len());
    let end = (start + rate as usize / 4).min(voiced.len());
    let piece = voiced.get(start..end).unwrap_or_default();
    let frequency = dominant_frequency(piece, rate);
    let level = rms(piece);
    let other = if (expected - SIPTERM_TONE).abs() < 1.0 {
        PEER_TONE
    } else {
        SIPTERM_TONE
    };
    let wanted_power = goertzel_power(piece, rate, expected);
    let other_power = goertzel_power(piece, rate, other);
    println!(
        "{what}: {} samples at {rate} Hz in {}, {voiced_seconds:.2} s above silence, \
         dominant {frequency:.1} Hz, RMS {level:.0}, power {expected} Hz {wanted_power:.2e} vs {other} Hz {other_power:.2e}",
        samples.len(),
        path.display()
    );
    assert!(
        voiced_seconds >= 0.5,
        "{what}: only {voiced_seconds:.2} s of sound in {} ({} samples at {rate} Hz)",
        path.display(),
        samples.len()
    );
    assert!(
        (frequency - expected).abs() <= 10.0,
        "{what}: dominant frequency {frequency:.1} Hz, expected {expected} Hz ({})",
        path.display()
    );
    (voiced_seconds, frequency, level)
}

/// A 20 s mono tone WAV (longer than any call here) in `dir`.
fn tone_file(dir: &Path, name: &str, frequency: f32, rate: u32) -> PathBuf {
    let path = dir.join(name);
    write_tone(&path, frequency, (rate, 1), 20.0, 8000.0);
    path
}

fn account(name: &str) -> Account {
    Account::new(name, &format!("sip:{name}@127.0.0.1"))
}

fn start_sipterm(name: &str, options: &Options) -> Sipterm {
    Sipterm::start(name, options).unwrap_or_else(|e| panic!("sipterm {name} did not start: {e}"))
}

/// Unwraps a harness result, adding sipterm's log to the panic.
fn check<T>(result: Result<T, common::HarnessError>, sipterm: &Sipterm) -> T {
    result.unwrap_or_else(|e| panic!("{e}\n{}", sipterm.log()))
}

/// Waits for the call's `terminated` event.
fn expect_terminated(sipterm: &mut Sipterm) -> Value {
    let result = sipterm.expect_call_state("terminated", SIGNALLING);
    check(result, sipterm)
}

fn count_sip(sipterm: &Sipterm, dir: &str, prefix: &str) -> usize {
    sipterm
        .sip_trace()
        .iter()
        .filter(|(d, _, summary)| d == dir && summary.starts_with(prefix))
        .count()
}

/// The last media statistics of the session (sent/received packets).
fn last_media(sipterm: &Sipterm) -> Option<Value> {
    sipterm
        .events()
        .iter()
        .rev()
        .find(|e| e["event"] == "media")
        .cloned()
}

/// Quits sipterm (finishing its --audio-out WAV) and prints its media figures.
fn finish(sipterm: &mut Sipterm, what: &str) {
    let status = sipterm.quit(Duration::from_secs(8));
    println!(
        "{what}: sipterm exit {status:?}, last media event {}",
        last_media(sipterm).map_or_else(|| "none".to_owned(), |m| m.to_string())
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "{what}: sipterm did not exit cleanly after `quit`: {status:?}\n{}",
        sipterm.log()
    );
}

fn wait_sipp(sipp: &mut Sipp, sipterm: &Sipterm) {
    if let Err(e) = sipp.wait_success(SIGNALLING) {
        panic!("sipp did not succeed: {e}\n{}", sipterm.log());
    }
}

// --------------------------------------------------------------- sipp ----

/// sipterm calls a sipp UAS that echoes RTP: the call is confirmed, sipterm
/// hears its own tone back, hangs up, and sipp's scenario completes.
#[test]
fn sipterm_calls_sipp_and_hears_the_echo() {
    let dir = scratch("echo");
    let sipp_port = free_udp_port().expect("port");
    let mut sipp = Sipp::uas(&Sipp::scenario("uas_answer.xml"), sipp_port, &[]).expect("sipp");
    let audio_out = dir.path().join("heard.wav");
    let mut alice = start_sipterm(
        "alice",
        &Options {
            account: Some(account("alice")),
            audio_in: Some(tone_file(dir.path(), "tone.wav", SIPTERM_TONE, 8000)),
            audio_out: Some(audio_out.clone()),
            ..Options::default()
        },
    );
    let started = Instant::now();
    check(
        alice.send(&format!("dial sip:bob@127.0.0.1:{sipp_port}")),
        &alice,
    );
    let confirmed = check(alice.expect_call_state("confirmed", SIGNALLING), &alice);
    println!("dial -> confirmed in {:?}: {confirmed}", started.elapsed());
    assert!(
        confirmed["remote"]
            .as_str()
            .unwrap_or_default()
            .contains("bob"),
        "remote should name bob: {confirmed}"
    );
    std::thread::sleep(TALK);
    check(alice.send("hangup"), &alice);
    expect_terminated(&mut alice);
    wait_sipp(&mut sipp, &alice);
    assert_eq!(
        count_sip(&alice, "out", "BYE "),
        1,
        "{:?}",
        alice.sip_trace()
    );
    finish(&mut alice, "echo");
    assert_tone("sipterm heard the sipp echo", &audio_out, SIPTERM_TONE);
}

/// sipp answers the first INVITE with 401: sipterm re-sends it with the
/// account's credentials (sipp's verifyauth accepts them) and the call is set up.
#[test]
fn sipterm_answers_a_401_on_invite() {
    let sipp_port = free_udp_port().expect("port");
    let mut sipp = Sipp::uas(&Sipp::scenario("uas_answer_auth.xml"), sipp_port, &[]).expect("sipp");
    let mut alice = start_sipterm(
        "alice",
        &Options {
            account: Some(Account {
                password: Some("secret".to_owned()),
                ..account("alice")
            }),
            ..Options::default()
        },
    );
    check(
        alice.send(&format!("dial sip:bob@127.0.0.1:{sipp_port}")),
        &alice,
    );
    check(alice.expect_call_state("confirmed", SIGNALLING), &alice);
    assert_eq!(
        count_sip(&alice, "in", "SIP/2.0 401"),
        1,
        "{:?}",
        alice.sip_trace()
    );
    assert_eq!(
        count_sip(&alice, "out", "INVITE "),
        2,
        "{:?}",
        alice.sip_trace()
    );
    check(alice.send("hangup"), &alice);
    expect_terminated(&mut alice);
    wait_sipp(&mut sipp, &alice);
    // The credentials went into the second INVITE (sipp would have sent 403).
    let messages = sipp.messages();
    assert!(
        messages.contains("Authorization: Digest"),
        "no Authorization header reached sipp:\n{messages}"
    );
    finish(&mut alice, "401");
}

/// sipp calls sipterm (auto-answer): incoming, confirmed, sipp's BYE ends it.
#[test]
fn sipp_calls_sipterm_which_auto_answers() {
    let mut alice = start_sipterm(
        "alice",
        &Options {
            account: Some(account("alice")),
            auto_answer_ms: Some(0),
            ..Options::default()
        },
    );
    let sipp_port = free_udp_port().expect("port");
    let mut sipp = Sipp::uac(
        &Sipp::scenario("uac_invite.xml"),
        sipp_port,
        alice.listen,
        &["-s", "alice"],
    )
    .expect("sipp");
    let incoming = check(alice.expect_call_state("incoming", SIGNALLING), &alice);
    assert!(
        incoming["remote"]
            .as_str()
            .unwrap_or_default()
            .contains("sipp"),
        "remote should name the caller: {incoming}"
    );
    let started = Instant::now();
    check(alice.expect_call_state("confirmed", SIGNALLING), &alice);
    let ended = expect_terminated(&mut alice);
    println!(
        "confirmed -> remote BYE after {:?}: {ended}",
        started.elapsed()
    );
    assert_eq!(
        count_sip(&alice, "in", "BYE "),
        1,
        "{:?}",
        alice.sip_trace()
    );
    assert_eq!(
        count_sip(&alice, "out", "SIP/2.0 200"),
        2,
        "200 for the INVITE and for the BYE: {:?}",
        alice.sip_trace()
    );
    wait_sipp(&mut sipp, &alice);
    finish(&mut alice, "incoming");
}

/// sipp calls and cancels while sipterm rings: terminated with 487.
#[test]
fn sipp_cancels_a_ringing_call() {
    let mut alice = start_sipterm(
        "alice",
        &Options {
            account: Some(account("alice")),
            ..Options::default()
        },
    );
    let sipp_port = free_udp_port().expect("port");
    let mut sipp = Sipp::uac(
        &Sipp::scenario("uac_cancel.xml"),
        sipp_port,
        alice.listen,
        &["-s", "alice"],
    )
    .expect("sipp");
    check(alice.expect_call_state("incoming", SIGNALLING), &alice);
    let ended = expect_terminated(&mut alice);
    assert_eq!(ended["code"], 487, "terminated event: {ended}");
    assert_eq!(
        count_sip(&alice, "in", "CANCEL "),
        1,
        "{:?}",
        alice.sip_trace()
    );
    assert_eq!(
        count_sip(&alice, "out", "SIP/2.0 487"),
        1,
        "{:?}",
        alice.sip_trace()
    );
    wait_sipp(&mut sipp, &alice);
    // A late `answer` must not resurrect the cancelled call.
    check(alice.send("answer"), &alice);
    finish(&mut alice, "cancel");
    assert_eq!(
        count_sip(&alice, "out", "SIP/2.0 200"),
        1,
        "only the CANCEL gets a 200: {:?}",
        alice.sip_trace()
    );
}

/// sipp answers and hangs up after 3 s: sipterm reports the call terminated.
#[test]
fn sipp_hangs_up_on_sipterm() {
    let sipp_port = free_udp_port().expect("port");
    let mut sipp = Sipp::uas(&Sipp::scenario("uas_bye.xml"), sipp_port, &[]).expect("sipp");
    let mut alice = start_sipterm(
        "alice",
        &Options {
            account: Some(account("alice")),
            ..Options::default()
        },
    );
    check(
        alice.send(&format!("dial sip:bob@127.0.0.1:{sipp_port}")),
        &alice,
    );
    check(alice.expect_call_state("confirmed", SIGNALLING), &alice);
    let started = Instant::now();
    let ended = expect_terminated(&mut alice);
    println!(
        "remote BYE {:?} after confirmed: {ended}",
        started.elapsed()
    );
    assert_eq!(
        count_sip(&alice, "in", "BYE "),
        1,
        "{:?}",
        alice.sip_trace()
    );
    assert_eq!(
        count_sip(&alice, "out", "BYE "),
        0,
        "{:?}",
        alice.sip_trace()
    );
    wait_sipp(&mut sipp, &alice);
    finish(&mut alice, "remote bye");
}

// ------------------------------------------------------------ baresip ----

/// The received-audio dump baresip wrote for its (only) call.
fn baresip_dump(baresip: &Baresip, dir: &Path) -> PathBuf {
    let files = baresip.received_audio_files(Some(dir));
    files.last().cloned().unwrap_or_else(|| {
        panic!(
            "baresip wrote no -dec.wav in {}\n{}",
            dir.display(),
            baresip.log()
        )
    })
}

/// sipterm calls baresip (auto answer, PCMU: the harness loads only g711):
/// each side records the other's tone.
#[test]
fn sipterm_calls_baresip_audio_both_ways() {
    let dir = scratch("to-baresip");
    let dumps = dir.path().join("dumps");
    std::fs::create_dir_all(&dumps).expect("dump dir");
    let baresip_port = free_udp_port().expect("port");
    let peer_tone = tone_file(dir.path(), "peer.wav", PEER_TONE, 8000);
    let mut baresip = Baresip::start(
        &dir.path().join("baresip"),
        baresip_port,
        Some(&peer_tone),
        Some(&dumps),
        true,
    )
    .expect("baresip");
    let audio_out = dir.path().join("heard.wav");
    let mut alice = start_sipterm(
        "alice",
        &Options {
            account: Some(account("alice")),
            audio_in: Some(tone_file(dir.path(), "tone.wav", SIPTERM_TONE, 8000)),
            audio_out: Some(audio_out.clone()),
            ..Options::default()
        },
    );
    check(
        alice.send(&format!("dial sip:baresip@127.0.0.1:{baresip_port}")),
        &alice,
    );
    let confirmed = check(alice.expect_call_state("confirmed", SIGNALLING), &alice);
    println!("baresip answered: {confirmed}");
    std::thread::sleep(TALK);
    check(alice.send("hangup"), &alice);
    expect_terminated(&mut alice);
    if let Err(e) = baresip.wait_output("terminated", SIGNALLING) {
        panic!("baresip did not see the BYE: {e}");
    }
    finish(&mut alice, "to baresip");
    let quit = baresip.quit(Duration::from_secs(5));
    println!("baresip quit: {quit:?}");
    assert_tone("sipterm heard baresip", &audio_out, PEER_TONE);
    assert_tone(
        "baresip heard sipterm",
        &baresip_dump(&baresip, &dumps),
        SIPTERM_TONE,
    );
}

/// baresip calls sipterm (auto answer): same audio checks; baresip hangs up.
#[test]
fn baresip_calls_sipterm_audio_both_ways() {
    let dir = scratch("from-baresip");
    let dumps = dir.path().join("dumps");
    std::fs::create_dir_all(&dumps).expect("dump dir");
    let audio_out = dir.path().join("heard.wav");
    let mut alice = start_sipterm(
        "alice",
        &Options {
            account: Some(account("alice")),
            audio_in: Some(tone_file(dir.path(), "tone.wav", SIPTERM_TONE, 8000)),
            audio_out: Some(audio_out.clone()),
            auto_answer_ms: Some(0),
        },
    );
    let baresip_port = free_udp_port().expect("port");
    let peer_tone = tone_file(dir.path(), "peer.wav", PEER_TONE, 8000);
    let mut baresip = Baresip::start(
        &dir.path().join("baresip"),
        baresip_port,
        Some(&peer_tone),
        Some(&dumps),
        false,
    )
    .expect("baresip");
    baresip
        .dial(&format!("sip:alice@{}", alice.listen))
        .expect("baresip /dial");
    let incoming = check(alice.expect_call_state("incoming", SIGNALLING), &alice);
    println!("incoming from baresip: {incoming}");
    check(alice.expect_call_state("confirmed", SIGNALLING), &alice);
    if let Err(e) = baresip.wait_output("Call established", SIGNALLING) {
        panic!("baresip did not establish the call: {e}\n{}", alice.log());
    }
    std::thread::sleep(TALK);
    baresip.hangup().expect("baresip /hangup");
    let ended = expect_terminated(&mut alice);
    println!("baresip hung up: {ended}");
    assert_eq!(
        count_sip(&alice, "in", "BYE "),
        1,
        "{:?}",
        alice.sip_trace()
    );
    finish(&mut alice, "from baresip");
    let quit = baresip.quit(Duration::from_secs(5));
    println!("baresip quit: {quit:?}");
    assert_tone("sipterm heard baresip", &audio_out, PEER_TONE);
    assert_tone(
        "baresip heard sipterm",
        &baresip_dump(&baresip, &dumps),
        SIPTERM_TONE,
    );
}

// ----------------------------------------------------------- Kamailio ----

/// Two sipterms register with Kamailio; alice calls bob through it (407 on
/// the INVITE, Record-Route); audio flows both ways; alice's BYE goes to
/// Kamailio, not straight to bob.
#[test]
fn call_through_kamailio_with_record_route() {
    let dir = scratch("kamailio");
    let kamailio_port = free_udp_port().expect("port");
    let kamailio = Kamailio::start(&[("alice", "alicepw"), ("bob", "bobpw")], kamailio_port)
        .expect("kamailio");
    let proxy = kamailio.addr().to_string();
    let registered_account = |name: &str, password: &str| Account {
        password: Some(password.to_owned()),
        registrar: Some(format!("sip:127.0.0.1:{kamailio_port}")),
        ..Account::new(name, &format!("sip:{name}@127.0.0.1:{kamailio_port}"))
    };
    let alice_heard = dir.path().join("alice-heard.wav");
    let bob_heard = dir.path().join("bob-heard.wav");
    let mut alice = start_sipterm(
        "alice",
        &Options {
            account: Some(registered_account("alice", "alicepw")),
            audio_in: Some(tone_file(dir.path(), "alice.wav", SIPTERM_TONE, 8000)),
            audio_out: Some(alice_heard.clone()),
            ..Options::default()
        },
    );
    let mut bob = start_sipterm(
        "bob",
        &Options {
            account: Some(registered_account("bob", "bobpw")),
            audio_in: Some(tone_file(dir.path(), "bob.wav", PEER_TONE, 8000)),
            audio_out: Some(bob_heard.clone()),
            auto_answer_ms: Some(0),
        },
    );
    for sipterm in [&mut alice, &mut bob] {
        let registered = sipterm.expect_event(
            "registration registered",
            |e| e["event"] == "registration" && e["state"] == "registered",
            SIGNALLING,
        );
        let registered = registered.unwrap_or_else(|e| {
            panic!(
                "{e}\n{}\n--- kamailio ---\n{}",
                sipterm.log(),
                kamailio.log()
            )
        });
        println!("registered: {registered}");
    }
    let started = Instant::now();
    check(
        alice.send(&format!("dial sip:bob@127.0.0.1:{kamailio_port}")),
        &alice,
    );
    check(bob.expect_call_state("incoming", SIGNALLING), &bob);
    let confirmed = alice.expect_call_state("confirmed", SIGNALLING);
    let confirmed = confirmed
        .unwrap_or_else(|e| panic!("{e}\n{}\n--- kamailio ---\n{}", alice.log(), kamailio.log()));
    println!("alice confirmed after {:?}: {confirmed}", started.elapsed());
    check(bob.expect_call_state("confirmed", SIGNALLING), &bob);
    std::thread::sleep(TALK);
    check(alice.send("hangup"), &alice);
    expect_terminated(&mut alice);
    expect_terminated(&mut bob);

    // Signalling: the INVITE challenge was answered, and every request of
    // alice's went to Kamailio (the BYE by its Record-Route).
    let trace = alice.sip_trace();
    assert_eq!(count_sip(&alice, "in", "SIP/2.0 407"), 1, "{trace:?}");
    assert_eq!(count_sip(&alice, "out", "INVITE "), 2, "{trace:?}");
    let byes: Vec<_> = trace
        .iter()
        .filter(|(d, _, s)| d == "out" && s.starts_with("BYE "))
        .collect();
    assert_eq!(byes.len(), 1, "{trace:?}");
    assert_eq!(
        byes[0].1,
        proxy,
        "the BYE must go to Kamailio: {trace:?}\n{}",
        alice.log()
    );
    let bob_trace = bob.sip_trace();
    let bob_bye: Vec<_> = bob_trace
        .iter()
        .filter(|(d, _, s)| d == "in" && s.starts_with("BYE "))
        .collect();
    assert_eq!(bob_bye.len(), 1, "{bob_trace:?}");
    assert_eq!(
        bob_bye[0].1, proxy,
        "bob's BYE came via Kamailio: {bob_trace:?}"
    );

    finish(&mut alice, "kamailio alice");
    finish(&mut bob, "kamailio bob");
    assert_tone("alice heard bob", &alice_heard, PEER_TONE);
    assert_tone("bob heard alice", &bob_heard, SIPTERM_TONE);
}

/// sipterm calls baresip with Opus only on baresip's side (48 kHz aufile):
/// the call negotiates opus/48000 and each side records the other's tone.
#[test]
fn sipterm_calls_baresip_with_opus() {
    let dir = scratch("baresip-opus");
    let dumps = dir.path().join("dumps");
    std::fs::create_dir_all(&dumps).expect("dump dir");
    let baresip_port = free_udp_port().expect("port");
    let config = common::peers::BaresipConfig {
        sip_port: baresip_port,
        user: "baresip".to_owned(),
        // baresip's opus is opus/48000/2 and its aufile wants the codec's channel count.
        audio_in: Some({
            let path = dir.path().join("peer.wav");
            write_tone(&path, PEER_TONE, (48000, 2), 20.0, 8000.0);
            path
        }),
        auto_answer: true,
        codecs: vec!["opus"],
        registration: None,
        mediaenc: None,
    };
    let mut baresip =
        Baresip::start_with(&dir.path().join("baresip"), Some(&dumps), &config).expect("baresip");
    let audio_out = dir.path().join("heard.wav");
    let mut alice = start_sipterm(
        "alice",
        &Options {
            account: Some(account("alice")),
            audio_in: Some(tone_file(dir.path(), "tone.wav", SIPTERM_TONE, 48000)),
            audio_out: Some(audio_out.clone()),
            ..Options::default()
        },
    );
    check(
        alice.send(&format!("dial sip:baresip@127.0.0.1:{baresip_port}")),
        &alice,
    );
    if let Err(e) = alice.expect_call_state("confirmed", SIGNALLING) {
        panic!("{e}\n--- baresip ---\n{}", baresip.log());
    }
    std::thread::sleep(TALK);
    check(alice.send("hangup"), &alice);
    expect_terminated(&mut alice);
    if let Err(e) = baresip.wait_output("terminated", SIGNALLING) {
        panic!("baresip did not see the BYE: {e}");
    }
    finish(&mut alice, "opus to baresip");
    let media = last_media(&alice).expect("a media event");
    assert_eq!(media["codec"], "opus/48000", "{media}");
    let quit = baresip.quit(Duration::from_secs(5));
    println!("baresip quit: {quit:?}");
    assert_tone("sipterm heard baresip (opus)", &audio_out, PEER_TONE);
    assert_tone(
        "baresip heard sipterm (opus)",
        &baresip_dump(&baresip, &dumps),
        SIPTERM_TONE,
    );
}
