//! Secure calls: SIP over TLS with SRTP media (`transport = "tls"`, `srtp = "mandatory"`).
//! Two headless sipterms (test CA made here with rcgen, tests/common/certs.rs), the same
//! through Kamailio's TLS listener, and a mandatory caller refused by a plain callee.
//!
//! Run with `--nocapture` to see the figures (frequencies, media counters).

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::certs::{Certs, make_certs};
use common::headless::{Headless, HeadlessOptions, read_wav, sine, write_wav};
use common::peers::Kamailio;
use serde_json::Value;
use sipterm::media::tones::{dominant_frequency, rms};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SIGNALLING: Duration = Duration::from_secs(10);
const CALLER_TONE: f32 = 440.0;
const CALLEE_TONE: f32 = 1000.0;
const FILE_RATE: u32 = 48_000;
const SUITE: &str = "AES_CM_128_HMAC_SHA1_80";

fn toml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// Debug logging (the log file then holds every SIP message, keys masked) plus `[sip]` lines.
fn sip_section(sip: &str) -> String {
    format!("[log]\nlevel = \"debug\"\n[sip]\n{sip}")
}

/// `[sip]` lines of a callee that accepts TLS on an ephemeral port.
fn tls_server(certs: &Certs) -> String {
    format!(
        "tls_listen = \"127.0.0.1:0\"\ntls_cert = {}\ntls_key = {}\n",
        toml_path(&certs.cert_pem),
        toml_path(&certs.key_pem)
    )
}

fn trust(certs: &Certs) -> String {
    format!("tls_ca_file = {}\n", toml_path(&certs.ca_pem))
}

fn account(name: &str, extra: &str) -> String {
    format!("[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@127.0.0.1\"\n{extra}")
}

/// A sipterm sending `tone` (6 s) and recording to `<dir>/<name>-out.wav`.
fn spawn(
    dir: &Path,
    name: &str,
    config: String,
    tone: f32,
    auto_answer: bool,
    extra_args: Vec<String>,
) -> Result<(Headless, PathBuf), Box<dyn std::error::Error>> {
    let input = dir.join(format!("{name}-in.wav"));
    write_wav(&input, FILE_RATE, &sine(tone, FILE_RATE, 6.0, 8000.0))?;
    let out = dir.join(format!("{name}-out.wav"));
    let sipterm = Headless::spawn(
        name,
        &HeadlessOptions {
            audio_in: Some(input),
            audio_out: Some(out.clone()),
            auto_answer_ms: auto_answer.then_some(0),
            config_toml: Some(config),
            extra_args,
            ..HeadlessOptions::default()
        },
    )?;
    Ok((sipterm, out))
}

/// The TLS listener from the `ready` event.
fn tls_listen(side: &Headless) -> Result<SocketAddr, Box<dyn std::error::Error>> {
    let ready = side.events_of("ready");
    let addr = ready
        .first()
        .and_then(|e| e["tls_listen"].as_str())
        .ok_or_else(|| format!("ready has no tls_listen: {ready:?}"))?;
    Ok(addr.parse()?)
}

/// A `media` event with at least 75 packets received (1.5 s of audio; one comes every 2 s).
fn wait_media(side: &mut Headless) -> Result<Value, Box<dyn std::error::Error>> {
    let media = side.expect_event(
        "a media event with >= 75 packets received",
        |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) >= 75,
        SIGNALLING,
    )?;
    println!("{}: {media}", side.name());
    Ok(media)
}

/// `keys`: how this side's SDES keys travelled, `"tls"` (the `SRTP/TLS` badge) or `"clear"`
/// (`SRTP/clear-keys`: its SIP hop was UDP or TCP).
fn assert_encrypted(media: &Value, keys: &str) {
    assert_eq!(media["encrypted"], true, "{media}");
    assert_eq!(media["srtp"]["suite"], SUITE, "{media}");
    assert_eq!(media["srtp"]["auth_failures"], 0, "{media}");
    assert_eq!(media["srtp"]["keys"], keys, "{media}");
}

/// The recording's dominant frequency (middle of its sound) must be `tone`, for >= 1 s.
fn assert_hears(path: &Path, who: &str, tone: f32) -> TestResult {
    let (rate, samples) = read_wav(path)?;
    let frame = sipterm::media::samples_per_frame(rate);
    let loud: Vec<usize> = samples
        .chunks(frame)
        .enumerate()
        .filter(|(_, c)| rms(c) > 500.0)
        .map(|(i, _)| i)
        .collect();
    let (Some(&first), Some(&last)) = (loud.first(), loud.last()) else {
        return Err(format!("{who}: no sound in {}", path.display()).into());
    };
    let center = first + (last + 1 - first) / 2;
    let half = ((last + 1 - first) / 4).clamp(1, 12);
    let window = &samples[(center - half) * frame..((center + half) * frame).min(samples.len())];
    let frequency = dominant_frequency(window, rate);
    let seconds = loud.len() as f32 * 0.02;
    println!(
        "{who} heard {frequency:.1} Hz at RMS {:.0} for {seconds:.2} s (expected {tone} Hz)",
        rms(window)
    );
    assert!(
        (frequency - tone).abs() < tone * 0.02,
        "{who} heard {frequency} Hz, expected {tone} Hz"
    );
    assert!(seconds >= 1.0, "{who}: only {seconds} s of sound");
    Ok(())
}

/// The debug log has the SIP messages with their `a=crypto` lines, every key masked.
fn assert_log_masks_keys(side: &Headless) {
    let log = std::fs::read_to_string(side.log_dir().join("sipterm.log")).unwrap_or_default();
    let keys: Vec<&str> = log.split("inline:").skip(1).collect();
    println!("{}: {} inline keys in the log", side.name(), keys.len());
    // Our offer (2 lines) or answer (1) and the peer's: at least 3.
    assert!(
        keys.len() >= 3,
        "{}: SIP messages missing from the debug log",
        side.name()
    );
    for key in keys {
        assert!(
            key.starts_with("REDACTED"),
            "{}: key in clear in the log: inline:{}",
            side.name(),
            &key[..key.len().min(12)]
        );
    }
}

fn no_panic(side: &Headless) {
    let output = side.recent_output();
    assert!(
        !output.contains("panicked"),
        "{} panicked:\n{output}",
        side.name()
    );
}

fn peers_of(side: &Headless) -> HashSet<String> {
    side.events_of("sip")
        .iter()
        .map(|e| e["peer"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Two mandatory sipterms over TLS: SRTP media with the 80-bit suite, audio both ways, every
/// SIP message of the caller to the callee's TLS port, TLS Vias on the wire, no key in clear
/// in either debug log.
#[test]
fn tls_and_srtp_between_two_sipterms() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let dir = certs.dir.path();
    let caller_pcap = dir.join("caller.pcap");
    let (mut callee, callee_out) = spawn(
        dir,
        "callee",
        sip_section(&tls_server(&certs)) + &account("callee", "srtp = \"mandatory\"\n"),
        CALLEE_TONE,
        true,
        Vec::new(),
    )?;
    let callee_tls = tls_listen(&callee)?;
    let (mut caller, caller_out) = spawn(
        dir,
        "caller",
        sip_section(&trust(&certs))
            + &account("caller", "transport = \"tls\"\nsrtp = \"mandatory\"\n"),
        CALLER_TONE,
        false,
        vec![format!("--pcap-out={}", caller_pcap.display())],
    )?;
    let started = Instant::now();
    caller.send(&format!("dial sips:callee@{callee_tls}"))?;
    caller.expect_call_state("confirmed", SIGNALLING)?;
    println!("confirmed after {:?}", started.elapsed());
    callee.expect_call_state("confirmed", SIGNALLING)?;
    let a = wait_media(&mut caller)?;
    let b = wait_media(&mut callee)?;
    assert_encrypted(&a, "tls");
    assert_encrypted(&b, "tls");
    caller.send("hangup")?;
    caller.expect_call_state("terminated", SIGNALLING)?;
    callee.expect_call_state("terminated", SIGNALLING)?;

    let caller_peers = peers_of(&caller);
    println!("caller's SIP peers: {caller_peers:?} (callee TLS {callee_tls})");
    assert_eq!(
        caller_peers,
        HashSet::from([callee_tls.to_string()]),
        "every SIP message went to the TLS listener"
    );
    let callee_peers = peers_of(&callee);
    assert_eq!(
        callee_peers.len(),
        1,
        "one TLS connection: {callee_peers:?}"
    );
    assert!(!callee_peers.contains(&caller.listen.to_string()));

    for side in [&mut caller, &mut callee] {
        side.quit(Duration::from_secs(5));
        no_panic(side);
        assert_log_masks_keys(side);
    }
    let pcap = std::fs::read(&caller_pcap)?;
    let text = String::from_utf8_lossy(&pcap);
    assert!(text.contains("Via: SIP/2.0/TLS 127.0.0.1:"), "no TLS Via");
    assert!(
        !text.contains("SIP/2.0/UDP"),
        "a UDP Via in the caller's pcap"
    );
    assert!(text.contains("RTP/SAVP"), "the offer is RTP/SAVP");
    assert_hears(&caller_out, "caller", CALLEE_TONE)?;
    assert_hears(&callee_out, "callee", CALLER_TONE)?;
    Ok(())
}

/// Kamailio with a TLS listener: alice registers over TLS (srtp mandatory), bob over UDP
/// (srtp mandatory) calls her through Kamailio, which relays the INVITE over alice's TLS
/// connection; SRTP audio both ways; bob hangs up; alice unregisters, still over TLS.
#[test]
fn tls_and_srtp_through_kamailio() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let dir = certs.dir.path();
    let (kamailio, port, tls_port) =
        Kamailio::start_with_test_tls(&[("alice", "alicepw"), ("bob", "bobpw")], &certs)?;
    let (mut alice, alice_out) = spawn(
        dir,
        "alice",
        sip_section(&trust(&certs))
            + &account(
                "alice",
                &format!(
                    "password = \"alicepw\"\nregistrar = \"sip:127.0.0.1:{tls_port};transport=tls\"\n\
                     transport = \"tls\"\nexpires = 60\nsrtp = \"mandatory\"\n"
                ),
            ),
        CALLEE_TONE,
        true,
        Vec::new(),
    )?;
    let registered = alice
        .expect_event(
            "alice registered",
            |e| e["event"] == "registration" && e["state"] != "registering",
            SIGNALLING,
        )
        .map_err(|e| format!("{e}\nkamailio:\n{}", kamailio.log()))?;
    assert_eq!(registered["state"], "registered", "{registered}");
    let (mut bob, bob_out) = spawn(
        dir,
        "bob",
        sip_section("")
            + &account(
                "bob",
                &format!(
                    "password = \"bobpw\"\nregistrar = \"sip:127.0.0.1:{port}\"\nsrtp = \"mandatory\"\n"
                ),
            ),
        CALLER_TONE,
        false,
        Vec::new(),
    )?;
    bob.expect_event(
        "bob registered",
        |e| e["event"] == "registration" && e["state"] == "registered",
        SIGNALLING,
    )?;
    // alice's Contact refresh (Kamailio's rport) must be through before she is called.
    alice.settle_registrations(2, SIGNALLING);
    bob.send(&format!("dial sip:alice@127.0.0.1:{port}"))?;
    bob.expect_call_state("confirmed", SIGNALLING)
        .map_err(|e| format!("{e}\nkamailio:\n{}", kamailio.log()))?;
    alice.expect_call_state("confirmed", SIGNALLING)?;
    let a = wait_media(&mut bob)?;
    let b = wait_media(&mut alice)?;
    // bob talks UDP to Kamailio, alice TLS: his SDP (keys) crossed his hop in clear.
    assert_encrypted(&a, "clear");
    assert_encrypted(&b, "tls");
    bob.send("hangup")?;
    bob.expect_call_state("terminated", SIGNALLING)?;
    alice.expect_call_state("terminated", SIGNALLING)?;
    alice.send("unregister")?;
    let unregistered = alice.expect_event(
        "alice unregistered",
        |e| e["event"] == "registration" && e["state"] == "unregistered",
        SIGNALLING,
    )?;
    println!("{unregistered}");
    let tls_peer = format!("127.0.0.1:{tls_port}");
    let alice_peers = peers_of(&alice);
    println!(
        "alice's SIP peers: {alice_peers:?}; bob's: {:?}",
        peers_of(&bob)
    );
    assert_eq!(
        alice_peers,
        HashSet::from([tls_peer]),
        "all of alice's SIP (REGISTER, INVITE, BYE, unregister) over Kamailio's TLS port"
    );
    assert_eq!(
        peers_of(&bob),
        HashSet::from([format!("127.0.0.1:{port}")]),
        "bob talks UDP to Kamailio"
    );
    for side in [&mut alice, &mut bob] {
        side.quit(Duration::from_secs(5));
        no_panic(side);
        assert_log_masks_keys(side);
    }
    assert_hears(&bob_out, "bob", CALLEE_TONE)?;
    assert_hears(&alice_out, "alice", CALLER_TONE)?;
    Ok(())
}

/// A mandatory caller over TLS and a TLS callee with `srtp = "off"`: the callee refuses the
/// RTP/SAVP offer with 488 (sent back over TLS), the caller's call ends with that code and
/// the callee never rings.
#[test]
fn tls_mandatory_caller_gets_488_from_a_plain_callee() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let dir = certs.dir.path();
    let (mut callee, _) = spawn(
        dir,
        "callee",
        sip_section(&tls_server(&certs)) + &account("callee", "srtp = \"off\"\n"),
        CALLEE_TONE,
        true,
        Vec::new(),
    )?;
    let callee_tls = tls_listen(&callee)?;
    let (mut caller, _) = spawn(
        dir,
        "caller",
        sip_section(&trust(&certs))
            + &account("caller", "transport = \"tls\"\nsrtp = \"mandatory\"\n"),
        CALLER_TONE,
        false,
        Vec::new(),
    )?;
    caller.send(&format!("dial sips:callee@{callee_tls}"))?;
    let end = caller.expect_call_state("terminated", SIGNALLING)?;
    println!("mandatory over TLS -> plain callee: {end}");
    assert_eq!(end["code"], 488, "{end}");
    let got_488 = caller.events_of("sip").iter().any(|e| {
        e["dir"] == "in"
            && e["peer"] == callee_tls.to_string().as_str()
            && e["summary"]
                .as_str()
                .unwrap_or("")
                .starts_with("SIP/2.0 488")
    });
    assert!(
        got_488,
        "the 488 came over TLS: {:?}",
        caller.events_of("sip")
    );
    let _ = callee.expect_event("nothing", |_| false, Duration::from_millis(300));
    assert!(
        callee.events_of("call").is_empty(),
        "the callee must not ring: {:?}",
        callee.events_of("call")
    );
    assert!(caller.events_of("media").is_empty(), "no media");
    for side in [&mut caller, &mut callee] {
        side.quit(Duration::from_secs(5));
        no_panic(side);
    }
    Ok(())
}
