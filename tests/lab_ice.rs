//! ICE (RFC 8445) with STUN and TURN between two headless sipterms, each behind a NAT of its
//! own (tests/common/lab.rs), signalling through a Kamailio registrar that Record-Routes, a
//! coturn STUN/TURN server on the "internet" segment. Every call checks audio both ways (each
//! side sends its own tone and must hear the other's) and which candidate pair carried it (the
//! `ice` part of the `media` event). Figures (time from 200 OK to first audio, the relay's
//! added delay) are printed for the note; nothing is asserted on the wall clock.
//!
//! Root only (network namespaces). CI runs as root and fails rather than skips otherwise;
//! coturn (`turnserver`) comes with `make test-deps` and its absence fails the test.

mod common;

use std::error::Error;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::audio::assert_hears;
use common::certs::{Certs, make_certs_for, toml_path};
use common::headless::{Headless, HeadlessOptions, sine, write_wav};
use common::lab::{DnsRecord, Host, KamailioLab, Lab, NatKind, Router, root_or_skip};
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

const SIGNALLING: Duration = Duration::from_secs(20);
const RATE: u32 = 48_000;
const TONE_SECONDS: f32 = 40.0;
const AMPLITUDE: f32 = 8000.0;
const TURN_IP: &str = "203.0.113.30";
const TURN_USER: &str = "icetest";
const TURN_PASSWORD: &str = "Relay-pass-42";
/// coturn's TLS port (RFC 8656 §3.1) when the lab gives it a certificate.
const TURNS_PORT: u16 = 5349;

struct Phone {
    sipterm: Headless,
    out: PathBuf,
}

/// The lab: two homes behind NATs of the given kinds, a registrar, DNS, coturn.
struct IceLab {
    lab: Lab,
    alice_host: Host,
    bob_host: Host,
    nat_a: Router,
    _nat_b: Router,
}

impl IceLab {
    /// Alice (calling, 440 Hz) and Bob (answering, 1000 Hz), each with `extra` account lines.
    fn phones(&self, alice_extra: &str, bob_extra: &str) -> Result<(Phone, Phone), Box<dyn Error>> {
        let alice = phone(
            &self.lab,
            "alice",
            &self.alice_host,
            440.0,
            account("alice", alice_extra),
            false,
        )?;
        let bob = phone(
            &self.lab,
            "bob",
            &self.bob_host,
            1000.0,
            account("bob", bob_extra),
            true,
        )?;
        Ok((alice, bob))
    }
}

fn ice_lab(kind_a: NatKind, kind_b: NatKind) -> Result<IceLab, Box<dyn Error>> {
    ice_lab_with(kind_a, kind_b, false, None)
}

/// `nat_helper`: Kamailio reaches registered Contacts at their source address (for a peer
/// that, unlike sipterm, puts its private address there). `turn_tls`: coturn also serves
/// TURN over TLS on 5349 with this certificate.
fn ice_lab_with(
    kind_a: NatKind,
    kind_b: NatKind,
    nat_helper: bool,
    turn_tls: Option<&Certs>,
) -> Result<IceLab, Box<dyn Error>> {
    let lab = Lab::new()?;
    let home_a = lab.segment("homea")?;
    let home_b = lab.segment("homeb")?;
    let wan = lab.segment("wan")?;
    let nat_a = lab.nat_router(
        "nata",
        &home_a,
        "10.0.1.1/24",
        &wan,
        "203.0.113.1/24",
        kind_a,
    )?;
    let nat_b = lab.nat_router(
        "natb",
        &home_b,
        "10.0.2.1/24",
        &wan,
        "203.0.113.2/24",
        kind_b,
    )?;
    let ns = lab.host("ns", &wan, &["203.0.113.53/24"], &[])?;
    let registrar = lab.host("registrar", &wan, &["203.0.113.10/24"], &[])?;
    let turn = lab.host("turn", &wan, &[&format!("{TURN_IP}/24")], &[])?;
    let alice_host = lab.host("alice", &home_a, &["10.0.1.10/24"], &["10.0.1.1"])?;
    let bob_host = lab.host("bob", &home_b, &["10.0.2.20/24"], &["10.0.2.1"])?;
    // The TURN server is also found by SRV (`_turn._udp.atlanta.test`, RFC 8656 §3.1).
    let dns = lab.dns(
        &ns,
        &[
            DnsRecord::host("atlanta.test", &registrar.addrs()),
            DnsRecord::host("relay.atlanta.test", &turn.addrs()),
            DnsRecord::srv("_turn._udp.atlanta.test", "relay.atlanta.test", 3478, 0, 0),
        ],
    )?;
    for host in [&registrar, &alice_host, &bob_host] {
        lab.use_dns(host, dns.ip()?)?;
    }
    lab.kamailio(
        &registrar,
        &KamailioLab {
            domain: "atlanta.test",
            listen: &["203.0.113.10:5060".parse()?],
            users: &[("alice", "secret"), ("bob", "secret")],
            record_route: true,
            nat_helper,
            ..KamailioLab::default()
        },
    )?;
    start_coturn(&lab, &turn, turn_tls)?;
    Ok(IceLab {
        lab,
        alice_host,
        bob_host,
        nat_a,
        _nat_b: nat_b,
    })
}

/// coturn with one long-term-credential user, STUN and TURN on UDP and TCP 3478, and with
/// `tls` TURN over TLS on TCP 5349 (else no TLS).
fn start_coturn(lab: &Lab, host: &Host, tls: Option<&Certs>) -> TestResult {
    let mut command = host.command("/usr/bin/turnserver");
    match tls {
        Some(certs) => {
            command.args([
                format!("--cert={}", certs.cert_pem.display()),
                format!("--pkey={}", certs.key_pem.display()),
                format!("--tls-listening-port={TURNS_PORT}"),
            ]);
        }
        None => {
            command.arg("--no-tls");
        }
    }
    command.args([
        "-n",
        "--no-cli",
        "--no-dtls",
        "--fingerprint",
        "--lt-cred-mech",
        "--realm=lab.test",
        &format!("--user={TURN_USER}:{TURN_PASSWORD}"),
        &format!("--listening-ip={TURN_IP}"),
        &format!("--relay-ip={TURN_IP}"),
        "--listening-port=3478",
        "--min-port=50000",
        "--max-port=50100",
        "--log-file=stdout",
        "--simple-log",
        "--verbose",
    ]);
    lab.spawn("coturn", command)?;
    // Ready when its TCP listeners accept (UDP starts with them).
    let ports = if tls.is_some() {
        vec![3478, TURNS_PORT]
    } else {
        vec![3478]
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in ports {
        let target: SocketAddr = format!("{TURN_IP}:{port}").parse()?;
        loop {
            let connected = host.enter(move || {
                TcpStream::connect_timeout(&target, Duration::from_millis(200)).map(|_| ())
            });
            if connected.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("coturn did not start:\n{}", lab.logs()).into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

fn account(name: &str, extra: &str) -> String {
    format!(
        "[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@atlanta.test\"\npassword = \"secret\"\n\
         registrar = \"sip:atlanta.test\"\nsrtp = \"off\"\n{extra}"
    )
}

fn turn_lines() -> String {
    format!(
        "stun_server = \"{TURN_IP}:3478\"\nturn_server = \"turn:{TURN_IP}:3478\"\n\
         turn_username = \"{TURN_USER}\"\nturn_password_command = \"echo {TURN_PASSWORD}\"\n"
    )
}

fn phone(
    lab: &Lab,
    name: &str,
    host: &Host,
    tone: f32,
    config: String,
    answering: bool,
) -> Result<Phone, Box<dyn Error>> {
    let input = lab.dir().join(format!("{name}-in.wav"));
    write_wav(&input, RATE, &sine(tone, RATE, TONE_SECONDS, AMPLITUDE))?;
    let out = lab.dir().join(format!("{name}-out.wav"));
    let mut sipterm = Headless::spawn_with(
        name,
        &HeadlessOptions {
            audio_in: Some(input),
            audio_out: Some(out.clone()),
            auto_answer_ms: answering.then_some(0),
            config_toml: Some(config),
            extra_args: Vec::new(),
            netns: Some(host.netns().to_string()),
            listen: Some("0.0.0.0:5060".to_string()),
        },
        &[("RUST_LOG", std::ffi::OsStr::new("info,rice_proto=info"))],
        false,
    )?;
    sipterm.expect_event(
        "registration `registered`",
        |e| e["event"] == "registration" && e["state"] == "registered",
        SIGNALLING,
    )?;
    Ok(Phone { sipterm, out })
}

/// A media event showing `packets` received; returns it.
fn media_flowing(phone: &mut Phone, packets: u64) -> Result<Value, Box<dyn Error>> {
    Ok(phone.sipterm.expect_event(
        &format!("a media event with >= {packets} packets received"),
        |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) >= packets,
        SIGNALLING,
    )?)
}

/// Alice (the caller) dials Bob (auto-answering); both hear the other's tone; Alice hangs up.
/// Returns both sides' last media events and the time from `confirmed` to the caller's first
/// media event with audio received (a figure for the note; media events come every 2 s, so
/// it is coarse by that much).
fn call(alice: &mut Phone, bob: &mut Phone) -> Result<(Value, Value), Box<dyn Error>> {
    alice.sipterm.send("dial sip:bob@atlanta.test")?;
    alice.sipterm.expect_call_state("confirmed", SIGNALLING)?;
    let confirmed = Instant::now();
    bob.sipterm.expect_call_state("confirmed", SIGNALLING)?;
    let first = media_flowing(alice, 1)?;
    println!(
        "first media event with audio at the caller {:?} after 200 OK: {first}",
        confirmed.elapsed()
    );
    let a = media_flowing(alice, 75)?;
    let b = media_flowing(bob, 75)?;
    alice.sipterm.send("hangup")?;
    alice.sipterm.expect_call_state("terminated", SIGNALLING)?;
    bob.sipterm.expect_call_state("terminated", SIGNALLING)?;
    assert_hears(&alice.out, "alice", 1000.0)?;
    assert_hears(&bob.out, "bob", 440.0)?;
    println!("alice media: {a}\nbob media: {b}");
    // Two sipterms multiplex RTCP: one component, no RTCP pair (the caller's RTCP
    // candidates were dropped when the answer said rtcp-mux).
    for media in [&a, &b] {
        assert!(media["ice"].get("rtcp").is_none(), "rtcp-mux: {media}");
    }
    Ok((a, b))
}

fn path(media: &Value) -> String {
    media["ice"]["path"].as_str().unwrap_or("none").to_owned()
}

fn run(
    test: &str,
    kinds: (NatKind, NatKind),
    alice_extra: &str,
    bob_extra: &str,
    block_udp_to_turn: bool,
) -> Result<Option<(Value, Value)>, Box<dyn Error>> {
    if !root_or_skip(test) {
        return Ok(None);
    }
    let lab = ice_lab(kinds.0, kinds.1)?;
    if block_udp_to_turn {
        lab.nat_a.block_udp_to(TURN_IP.parse::<IpAddr>()?)?;
    }
    let (mut alice, mut bob) = lab.phones(alice_extra, bob_extra)?;
    let result = call(&mut alice, &mut bob);
    if result.is_err() {
        print_ice_logs(&lab, &alice, &bob);
    }
    Ok(Some(result?))
}

/// The lab's logs and both sipterms' ICE lines, for a failed call.
fn print_ice_logs(lab: &IceLab, alice: &Phone, bob: &Phone) {
    println!("{}", lab.lab.logs());
    for phone in [alice, bob] {
        let log = std::fs::read_to_string(phone.sipterm.log_dir().join("sipterm.log"))
            .unwrap_or_default();
        for line in log
            .lines()
            .filter(|l| l.contains("ICE") || l.contains("rice") || l.contains("turns"))
        {
            println!("{}: {line}", phone.sipterm.name());
        }
    }
}

/// Case 1: two cone NATs: the checks find a server-reflexive path; no relay is needed.
#[test]
fn two_cone_nats_carry_audio_over_a_server_reflexive_pair() -> TestResult {
    let extra = turn_lines();
    let Some((a, b)) = run(
        "ice_cone",
        (NatKind::Cone, NatKind::Cone),
        &extra,
        &extra,
        false,
    )?
    else {
        return Ok(());
    };
    for media in [&a, &b] {
        let path = path(media);
        assert!(
            path == "srflx" || path == "prflx",
            "a reflexive pair through the NATs, not {path}: {media}"
        );
    }
    Ok(())
}

/// Case 2: two symmetric NATs (a new port per destination): only the TURN relay works.
#[test]
fn two_symmetric_nats_carry_audio_through_the_turn_relay() -> TestResult {
    let extra = turn_lines();
    let Some((a, b)) = run(
        "ice_symmetric",
        (NatKind::Symmetric, NatKind::Symmetric),
        &extra,
        &extra,
        false,
    )?
    else {
        return Ok(());
    };
    for media in [&a, &b] {
        assert_eq!(path(media), "relay", "{media}");
        // Where our side is the relay, the event names how we reach the TURN server.
        if pair_end(media, "local").starts_with("relay") {
            assert!(
                media["ice"]["relay"] == "udp" || media["ice"]["relay"] == "tcp",
                "{media}"
            );
        }
    }
    Ok(())
}

/// Case 3: Alice's NAT drops UDP to the TURN server: her relay is allocated over TCP. Her
/// `turn_server` is the bare domain `atlanta.test`, found by SRV `_turn._udp`.
#[test]
fn turn_over_tcp_carries_the_call_when_udp_to_the_server_is_blocked() -> TestResult {
    let extra = turn_lines();
    let by_srv = extra.replace(&format!("turn:{TURN_IP}:3478"), "atlanta.test");
    assert_ne!(by_srv, extra);
    let Some((a, b)) = run(
        "ice_turn_tcp",
        (NatKind::Symmetric, NatKind::Symmetric),
        &by_srv,
        &extra,
        true,
    )?
    else {
        return Ok(());
    };
    for media in [&a, &b] {
        assert_eq!(path(media), "relay", "{media}");
    }
    // Alice's own relay (her only one: UDP to the server is blocked) is reached over TCP.
    if pair_end(&a, "local").starts_with("relay") {
        assert_eq!(a["ice"]["relay"], "tcp", "{a}");
    }
    Ok(())
}

/// Case 3 over TLS: Alice's NAT drops UDP and plain TCP to the TURN server, which also
/// serves TURN over TLS (a certificate from the test CA, which Alice trusts through `[sip]
/// tls_ca_file`). Her `turn_server = "turns:..."`: her relay is allocated over TLS, and the
/// `media` event says so.
#[test]
fn turn_over_tls_carries_the_call_when_udp_and_tcp_to_the_server_are_blocked() -> TestResult {
    if !root_or_skip("ice_turn_tls") {
        return Ok(());
    }
    let turn_ip: IpAddr = TURN_IP.parse()?;
    let certs = make_certs_for("relay.atlanta.test", &[turn_ip]).map_err(|e| e.to_string())?;
    let lab = ice_lab_with(NatKind::Symmetric, NatKind::Symmetric, false, Some(&certs))?;
    lab.nat_a.block_udp_to(turn_ip)?;
    lab.nat_a.block_tcp_to(turn_ip, 3478)?;
    let bob_extra = turn_lines();
    let alice_extra = bob_extra.replace(
        &format!("turn_server = \"turn:{TURN_IP}:3478\""),
        &format!("turn_server = \"turns:{TURN_IP}:{TURNS_PORT}\""),
    );
    assert_ne!(alice_extra, bob_extra);
    let alice_config = format!(
        "[sip]\ntls_ca_file = {}\n\n{}",
        toml_path(&certs.ca_pem),
        account("alice", &alice_extra)
    );
    let alice = phone(
        &lab.lab,
        "alice",
        &lab.alice_host,
        440.0,
        alice_config,
        false,
    );
    let bob = phone(
        &lab.lab,
        "bob",
        &lab.bob_host,
        1000.0,
        account("bob", &bob_extra),
        true,
    );
    let (mut alice, mut bob) = match (alice, bob) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            println!("{}", lab.lab.logs());
            return Err(format!("phones: {:?} {:?}", a.err(), b.err()).into());
        }
    };
    let result = call(&mut alice, &mut bob);
    if result.is_err() {
        print_ice_logs(&lab, &alice, &bob);
    }
    let (a, b) = result?;
    for media in [&a, &b] {
        assert_eq!(path(media), "relay", "{media}");
    }
    // Alice can send nothing but TLS to the TURN server's address (Bob's relay is there
    // too): her end of the pair is her own relay, reached over TLS.
    assert!(pair_end(&a, "local").starts_with("relay"), "{a}");
    assert_eq!(a["ice"]["relay"], "tls", "{a}");
    println!(
        "TURN over TLS: alice pair {} -> {}, rtt {} ms; bob pair {} -> {}, rtt {} ms",
        pair_end(&a, "local"),
        pair_end(&a, "remote"),
        a["rtt_ms"],
        pair_end(&b, "local"),
        pair_end(&b, "remote"),
        b["rtt_ms"]
    );
    Ok(())
}

/// Case 4: Alice has `ice = false`: Bob falls back to her `c=` address, which STUN and
/// the NATs' filtering (each side sends first) make work through two cone NATs, as before.
#[test]
fn a_peer_without_ice_still_gets_audio_through_cone_nats() -> TestResult {
    let stun = format!("stun_server = \"{TURN_IP}:3478\"\n");
    let Some((a, b)) = run(
        "ice_off",
        (NatKind::Cone, NatKind::Cone),
        &format!("{stun}ice = false\n"),
        &stun,
        false,
    )?
    else {
        return Ok(());
    };
    assert!(a.get("ice").is_none() && b.get("ice").is_none(), "{a}\n{b}");
    Ok(())
}

/// The `ice.remote` (or `ice.local`) of a media event.
fn pair_end(media: &Value, end: &str) -> String {
    media["ice"][end].as_str().unwrap_or("").to_owned()
}

/// A media event of `phone` on a selected pair whose remote end satisfies `remote`, with
/// `more` packets received beyond `since`; returns it.
fn flowing_on(
    phone: &mut Phone,
    what: &str,
    since: u64,
    more: u64,
    remote: impl Fn(&str) -> bool,
) -> Result<Value, Box<dyn Error>> {
    Ok(phone.sipterm.expect_event(
        what,
        |e| {
            e["event"] == "media"
                && remote(&pair_end(e, "remote"))
                && e["received"].as_u64().unwrap_or(0) >= since + more
        },
        SIGNALLING,
    )?)
}

/// Case 6: the call runs on a server-reflexive pair through two cone NATs; then Alice's NAT
/// gets a new public address (as when a router reconnects: the kernel drops every mapping
/// masqueraded with the old address, so the pair is dead both ways). Alice restarts ICE
/// (`ice-restart`: new credentials and candidates in a re-INVITE through the registrar);
/// Bob answers with new credentials of his own, both gather and check again, and audio flows
/// both ways on a pair that names her new address, in the same call.
#[test]
fn an_ice_restart_in_a_reinvite_keeps_the_call_after_the_nat_changed_address() -> TestResult {
    if !root_or_skip("ice_restart") {
        return Ok(());
    }
    let lab = ice_lab(NatKind::Cone, NatKind::Cone)?;
    let extra = turn_lines();
    let (mut alice, mut bob) = lab.phones(&extra, &extra)?;
    let result = (|| -> TestResult {
        alice.sipterm.send("dial sip:bob@atlanta.test")?;
        alice.sipterm.expect_call_state("confirmed", SIGNALLING)?;
        bob.sipterm.expect_call_state("confirmed", SIGNALLING)?;
        let before_a = flowing_on(&mut alice, "alice hears bob", 0, 75, |r| {
            r.contains("203.0.113.2")
        })?;
        let before_b = flowing_on(&mut bob, "bob hears alice", 0, 75, |r| {
            r.contains("203.0.113.1:")
        })?;
        println!("before: alice {before_a}\nbob {before_b}");

        // Alice's NAT reconnects with a new public address.
        let wan = lab.nat_a.wan_interface().to_owned();
        let nat = lab.nat_a.host();
        nat.run_ip(&["addr", "del", "203.0.113.1/24", "dev", &wan])?;
        nat.run_ip(&["addr", "add", "203.0.113.3/24", "dev", &wan])?;
        let changed = Instant::now();

        alice.sipterm.send("ice-restart")?;
        let reinvite = alice.sipterm.expect_event(
            "the restart's re-INVITE",
            |e| {
                e["event"] == "sip"
                    && e["dir"] == "out"
                    && e["summary"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("INVITE "))
            },
            SIGNALLING,
        )?;
        let answered = Instant::now();
        println!(
            "re-INVITE out {:?} after the change: {reinvite}",
            changed.elapsed()
        );
        let a0 = before_a["received"].as_u64().unwrap_or(0);
        let b0 = before_b["received"].as_u64().unwrap_or(0);
        // Both sides on a new session; Bob's pair reaches Alice's new address. 4 s of audio
        // after the restart: the recordings' sound then outlasts what came before it and the
        // gap, so `assert_hears` (the middle of the sound) measures the restarted audio.
        let after_b = flowing_on(&mut bob, "bob hears alice again", b0, 200, |r| {
            r.contains("203.0.113.3:")
        })?;
        let after_a = flowing_on(&mut alice, "alice hears bob again", a0, 200, |r| {
            r.contains("203.0.113.2")
        })?;
        println!(
            "after the restart ({:?} after its re-INVITE):\nalice {after_a}\nbob {after_b}",
            answered.elapsed()
        );
        for media in [&after_a, &after_b] {
            let path = path(media);
            assert!(
                path == "srflx" || path == "prflx",
                "a reflexive pair after the restart, not {path}: {media}"
            );
        }
        // Still the first call: no second call came up, none ended.
        for phone in [&alice, &bob] {
            let calls: Vec<_> = phone
                .sipterm
                .events_of("call")
                .into_iter()
                .filter_map(|e| e["call"].as_str())
                .collect();
            assert!(calls.iter().all(|c| *c == calls[0]), "{calls:?}");
            assert!(
                !phone
                    .sipterm
                    .events_of("call")
                    .iter()
                    .any(|e| e["state"] == "terminated"),
                "the call survived the restart"
            );
        }
        alice.sipterm.send("hangup")?;
        alice.sipterm.expect_call_state("terminated", SIGNALLING)?;
        bob.sipterm.expect_call_state("terminated", SIGNALLING)?;
        assert_hears(&alice.out, "alice", 1000.0)?;
        assert_hears(&bob.out, "bob", 440.0)?;
        Ok(())
    })();
    if result.is_err() {
        println!("{}", lab.lab.logs());
    }
    // Our own ICE lines always (for the note); rice-proto's too when the test failed.
    for phone in [&alice, &bob] {
        let log = std::fs::read_to_string(phone.sipterm.log_dir().join("sipterm.log"))
            .unwrap_or_default();
        for line in log.lines().filter(|l| {
            l.contains("sipterm::driver::ice_task")
                || l.contains("sipterm::ice")
                || (result.is_err() && l.contains("rice"))
        }) {
            println!("{}: {line}", phone.sipterm.name());
        }
    }
    result
}

/// Consent lost (RFC 7675), repaired without the user: the call runs on a server-reflexive
/// pair, then Alice's NAT gets a new public address and nobody types `ice-restart`. After
/// 30 s without answers to her consent checks Alice (the caller, controlling) stops sending,
/// says why (the `media.ice_consent_lost` finding) and restarts ICE once by herself: the
/// re-INVITE goes out, audio flows both ways again on a pair naming her new address, in the
/// same call, and the finding clears.
#[test]
fn lost_consent_is_diagnosed_and_the_caller_restarts_ice_by_itself() -> TestResult {
    if !root_or_skip("ice_consent_restart") {
        return Ok(());
    }
    let lab = ice_lab(NatKind::Cone, NatKind::Cone)?;
    let extra = turn_lines();
    let (mut alice, mut bob) = lab.phones(&extra, &extra)?;
    let result = (|| -> TestResult {
        alice.sipterm.send("dial sip:bob@atlanta.test")?;
        alice.sipterm.expect_call_state("confirmed", SIGNALLING)?;
        bob.sipterm.expect_call_state("confirmed", SIGNALLING)?;
        let before_b = flowing_on(&mut bob, "bob hears alice", 0, 75, |r| {
            r.contains("203.0.113.1:")
        })?;
        let wan = lab.nat_a.wan_interface().to_owned();
        let nat = lab.nat_a.host();
        nat.run_ip(&["addr", "del", "203.0.113.1/24", "dev", &wan])?;
        nat.run_ip(&["addr", "add", "203.0.113.3/24", "dev", &wan])?;
        let changed = Instant::now();
        let mark = alice.sipterm.history().len();
        // Consent expires 30 s after the last answer; media events come every 2 s.
        let consent = Duration::from_secs(45);
        let lost = alice.sipterm.expect_event(
            "the consent-lost finding",
            |e| {
                e["event"] == "diagnosis"
                    && e["state"] == "active"
                    && e["code"] == "media.ice_consent_lost"
            },
            consent,
        )?;
        println!(
            "consent lost {:?} after the change: {lost}",
            changed.elapsed()
        );
        let message = lost["message"].as_str().unwrap_or_default();
        assert!(message.contains("consent"), "{lost}");
        let is_reinvite = |e: &Value| {
            e["event"] == "sip"
                && e["dir"] == "out"
                && e["summary"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("INVITE "))
        };
        // The restart may go out before the media report that raises the finding.
        let seen = alice.sipterm.history()[mark..]
            .iter()
            .find(|e| is_reinvite(e))
            .cloned();
        let reinvite = match seen {
            Some(e) => e,
            None => alice.sipterm.expect_event(
                "the automatic restart's re-INVITE",
                is_reinvite,
                SIGNALLING,
            )?,
        };
        let restarted = Instant::now();
        println!(
            "re-INVITE {:?} after the change: {reinvite}",
            changed.elapsed()
        );
        let b0 = before_b["received"].as_u64().unwrap_or(0);
        let after_b = flowing_on(&mut bob, "bob hears alice again", b0, 75, |r| {
            r.contains("203.0.113.3:")
        })?;
        let cleared = alice.sipterm.expect_event(
            "the finding cleared",
            |e| {
                e["event"] == "diagnosis"
                    && e["state"] == "cleared"
                    && e["code"] == "media.ice_consent_lost"
            },
            SIGNALLING,
        )?;
        let a_now = alice
            .sipterm
            .events_of("media")
            .last()
            .and_then(|e| e["received"].as_u64())
            .unwrap_or(0);
        let after_a = flowing_on(&mut alice, "alice hears bob again", a_now, 75, |r| {
            r.contains("203.0.113.2")
        })?;
        println!(
            "after the automatic restart ({:?} after its re-INVITE):\nalice {after_a}\nbob {after_b}\n{cleared}",
            restarted.elapsed()
        );
        for phone in [&alice, &bob] {
            assert!(
                !phone
                    .sipterm
                    .events_of("call")
                    .iter()
                    .any(|e| e["state"] == "terminated"),
                "the call survived"
            );
        }
        alice.sipterm.send("hangup")?;
        alice.sipterm.expect_call_state("terminated", SIGNALLING)?;
        bob.sipterm.expect_call_state("terminated", SIGNALLING)?;
        Ok(())
    })();
    for phone in [&alice, &bob] {
        let log = std::fs::read_to_string(phone.sipterm.log_dir().join("sipterm.log"))
            .unwrap_or_default();
        for line in log.lines().filter(|l| {
            l.contains("sipterm::driver::ice_task") || (result.is_err() && l.contains("ICE"))
        }) {
            println!("{}: {line}", phone.sipterm.name());
        }
    }
    if result.is_err() {
        println!("{}", lab.lab.logs());
    }
    result
}

/// baresip in Bob's home (its `ice` and `stun` modules, `medianat=ice`), registered at the lab's
/// Kamailio; driven through its console (stdin), its output read line by line.
struct BaresipPeer {
    guard: common::process::ChildGuard,
    dumps: PathBuf,
}

/// `medianat`: `ice` or `stun` (baresip's account parameter).
fn start_baresip(
    lab: &IceLab,
    auto_answer: bool,
    medianat: &str,
) -> Result<BaresipPeer, Box<dyn Error>> {
    let dir = lab.lab.dir().join("baresip");
    let dumps = dir.join("dumps");
    std::fs::create_dir_all(&dumps)?;
    let tone = dir.join("bob-in.wav");
    write_wav(&tone, 8000, &sine(1000.0, 8000, TONE_SECONDS, AMPLITUDE))?;
    let config = format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t10.0.2.20:5060\n\
         call_local_timeout\t120\n\
         audio_player\t\talsa,null\n\
         audio_source\t\taufile,{tone}\n\
         audio_alert\t\talsa,null\n\
         rtp_stats\t\tyes\n\
         module_path\t\t{modules}\n\
         module\t\t\tstdio.so\n\
         module\t\t\tg711.so\n\
         module\t\t\taufile.so\n\
         module\t\t\talsa.so\n\
         module\t\t\tsndfile.so\n\
         module\t\t\tstun.so\n\
         module\t\t\tturn.so\n\
         module\t\t\tice.so\n\
         module_tmp\t\tuuid.so\n\
         module_tmp\t\taccount.so\n\
         module_app\t\tmenu.so\n\
         snd_path\t\t{dumps}\n\
         ice_debug\t\tyes\n",
        tone = tone.display(),
        modules = common::peers::BARESIP_MODULE_PATH,
        dumps = dumps.display(),
    );
    let answer = if auto_answer { "auto" } else { "manual" };
    let account = format!(
        "<sip:bob@atlanta.test>;auth_pass=secret;regint=600;answermode={answer};\
         medianat={medianat};stunserver=stun:{TURN_IP}:3478\n"
    );
    std::fs::write(dir.join("config"), config)?;
    std::fs::write(dir.join("accounts"), account)?;
    std::fs::write(dir.join("contacts"), "")?;
    let mut command = lab.bob_host.command("baresip");
    // -s: its SIP trace (with the SDP) in stdout.log, for the note.
    command.arg("-s").arg("-f").arg(&dir).current_dir(&dir);
    let mut guard = common::process::ChildGuard::spawn(
        "baresip",
        command,
        common::process::Stdout::Lines,
        Some(&dir),
    )?;
    guard.expect_line_described(
        "baresip registered",
        &mut |l: &str| l.contains("200 OK") && l.contains("bob@atlanta.test"),
        SIGNALLING,
    )?;
    Ok(BaresipPeer { guard, dumps })
}

impl BaresipPeer {
    fn wait(&mut self, what: &str, needle: &str) -> TestResult {
        self.guard
            .expect_line_described(what, &mut |l: &str| l.contains(needle), SIGNALLING)?;
        Ok(())
    }

    fn received_wav(&self) -> Option<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dumps)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .collect();
        files.sort();
        files.pop()
    }
}

/// The SDP both ways and baresip's ICE lines, from its SIP trace (for the note).
fn print_baresip_trace(bob: &BaresipPeer) {
    let trace = std::fs::read_to_string(bob.guard.log_dir().join("stdout.log")).unwrap_or_default();
    for line in trace.lines().filter(|l| {
        [
            "c=IN",
            "m=audio",
            "a=ice",
            "a=candidate",
            "a=rtcp",
            "ice",
            "ICE",
            "a=send",
        ]
        .iter()
        .any(|k| l.contains(k))
    }) {
        println!("baresip: {line}");
    }
}

/// Packets to receive before hanging up so that the recording's sound outlasts the silence
/// before it (`assert_hears` measures the middle of the span from the first sound, which can
/// be our ring tone, to the last): 1.5 s of audio, or more when audio took `to_audio` to
/// start (baresip 1.0's ICE nominates only once every pair's check ended, ~10 s with pairs
/// that time out), at 50 packets a second.
fn packets_to_hear(to_audio: Duration) -> u64 {
    75.max((to_audio.as_secs_f64() * 50.0) as u64 + 100)
}

/// Case 5 (both directions): sipterm (Alice: ICE, STUN, TURN) and baresip 1.0 (Bob, its
/// `medianat` = `ice` or `stun`), each behind a cone NAT, through the registrar. Audio both
/// ways each time; returns sipterm's media event of each call.
fn baresip_calls(medianat: &str) -> Result<Option<(Value, Value)>, Box<dyn Error>> {
    if !root_or_skip("ice_baresip") {
        return Ok(None);
    }
    let lab = ice_lab_with(NatKind::Cone, NatKind::Cone, true, None)?;
    let mut alice = phone(
        &lab.lab,
        "alice",
        &lab.alice_host,
        440.0,
        account("alice", &format!("{}codecs = [\"pcmu\"]\n", turn_lines())),
        true,
    )?;
    let mut bob = start_baresip(&lab, true, medianat)?;
    // With ICE, RTCP has a pair of its own that baresip nominates late (~10 s, with the media
    // pair): a round-trip time needs one of our sender reports answered after that, so the
    // media event taken is the first that has one (reports come every ~5 s; bounded wait).
    let with_rtt = medianat == "ice";
    let settled = |e: &Value| !with_rtt || e["rtt_ms"].is_number();
    let settled_what = if with_rtt {
        " and a round-trip time"
    } else {
        ""
    };
    // A failed audio assertion panics: the traces below are printed first all the same.
    let calls = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> Result<(Value, Value), Box<dyn Error>> {
            // baresip calls sipterm (auto-answering).
            bob.guard.send_line("/dial sip:alice@atlanta.test")?;
            alice.sipterm.expect_call_state("confirmed", SIGNALLING)?;
            let confirmed = Instant::now();
            let first = media_flowing(&mut alice, 1)?;
            let to_audio = confirmed.elapsed();
            println!("from baresip: first audio {to_audio:?} after 200 OK: {first}");
            let enough = packets_to_hear(to_audio);
            let from_baresip = alice.sipterm.expect_event(
                &format!("the first call's media with {enough} packets{settled_what}"),
                |e| {
                    e["event"] == "media"
                        && e["received"].as_u64().unwrap_or(0) >= enough
                        && settled(e)
                },
                SIGNALLING,
            )?;
            println!("from baresip: {from_baresip}");
            bob.guard.send_line("/hangup")?;
            alice.sipterm.expect_call_state("terminated", SIGNALLING)?;
            bob.wait("baresip ended the first call", "terminated")?;
            assert_hears(&alice.out, "alice", 1000.0)?;

            // sipterm calls baresip (auto-answering).
            alice.sipterm.send("dial sip:bob@atlanta.test")?;
            alice.sipterm.expect_call_state("confirmed", SIGNALLING)?;
            let confirmed = Instant::now();
            let first = alice.sipterm.expect_event(
                "the second call's first audio",
                |e| {
                    e["event"] == "media"
                        && e["call"] != from_baresip["call"]
                        && e["received"].as_u64().unwrap_or(0) >= 1
                },
                SIGNALLING,
            )?;
            let to_audio = confirmed.elapsed();
            println!("to baresip: first audio {to_audio:?} after 200 OK: {first}");
            let enough = packets_to_hear(to_audio);
            let to_baresip = alice.sipterm.expect_event(
                &format!("the second call's media with {enough} packets{settled_what}"),
                |e| {
                    e["event"] == "media"
                        && e["call"] != from_baresip["call"]
                        && e["received"].as_u64().unwrap_or(0) >= enough
                        && settled(e)
                },
                SIGNALLING,
            )?;
            println!("to baresip: {to_baresip}");
            alice.sipterm.send("hangup")?;
            alice.sipterm.expect_call_state("terminated", SIGNALLING)?;
            bob.wait("baresip saw the BYE", "terminated")?;
            // baresip's recording of the second call (its file is complete once baresip closed
            // it: a bounded wait for that).
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let heard_by_bob = bob.received_wav().ok_or("baresip wrote no -dec.wav")?;
                match common::audio::analyse(&heard_by_bob) {
                    Ok(heard) if heard.sound_seconds > 1.0 => {
                        assert_hears(&heard_by_bob, "baresip", 440.0)?;
                        break;
                    }
                    _ if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(200))
                    }
                    _ => {
                        assert_hears(&heard_by_bob, "baresip", 440.0)?;
                        break;
                    }
                }
            }
            Ok((from_baresip, to_baresip))
        },
    ));
    let failed = !matches!(calls, Ok(Ok(_)));
    if failed {
        println!("{}", lab.lab.logs());
        println!("baresip:\n{}", bob.guard.recent_output());
    }
    print_baresip_trace(&bob);
    let log =
        std::fs::read_to_string(alice.sipterm.log_dir().join("sipterm.log")).unwrap_or_default();
    for line in log.lines().filter(|l| {
        l.contains("sipterm::driver::ice_task")
            || l.contains("sipterm::ice")
            || l.contains("does no ICE")
            || (failed && l.contains("rice"))
    }) {
        println!("alice: {line}");
    }
    match calls {
        Ok(result) => Ok(Some(result?)),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Case 5 with baresip's ICE (`medianat=ice`). baresip 1.0 ignores `a=rtcp-mux` and checks
/// an RTCP component (2) too: sipterm offers RTCP candidates beside rtcp-mux (RFC 5761
/// §5.1.3) and keeps that component when the answer does not multiplex, and answers
/// baresip's offer (no rtcp-mux) with them. Both directions: audio both ways over the pair
/// ICE selected, and RTCP on a pair of its own (round-trip time measured from it).
#[test]
fn sipterm_and_baresip_with_ice_behind_two_nats_both_directions() -> TestResult {
    let Some((from, to)) = baresip_calls("ice")? else {
        return Ok(());
    };
    for (direction, media) in [("from baresip", &from), ("to baresip", &to)] {
        println!(
            "ICE {direction}: path {}, pair {} -> {}, RTCP pair {}, rtt {}",
            path(media),
            media["ice"]["local"],
            media["ice"]["remote"],
            media["ice"]["rtcp"],
            media["rtt_ms"]
        );
        assert!(
            ["host", "srflx", "prflx", "relay"].contains(&path(media).as_str()),
            "{direction}: media over an ICE pair: {media}"
        );
        assert!(
            media["ice"]["rtcp"].is_string(),
            "{direction}: RTCP on its own pair: {media}"
        );
        assert!(
            media["rtt_ms"].is_number(),
            "{direction}: RTCP both ways (a round-trip time): {media}"
        );
    }
    Ok(())
}

/// Case 5, the fallback that works with baresip 1.0: baresip without ICE (`medianat=stun`, its
/// public address in `c=`), sipterm with ICE: sipterm sees no ICE in the peer's SDP and sends
/// plain RTP to the `c=` address; both directions, audio both ways through the two NATs.
#[test]
fn sipterm_with_ice_and_baresip_with_stun_behind_two_nats_both_directions() -> TestResult {
    let Some((from, to)) = baresip_calls("stun")? else {
        return Ok(());
    };
    for media in [&from, &to] {
        assert!(media.get("ice").is_none(), "plain RTP without ICE: {media}");
    }
    Ok(())
}

/// Consent freshness (RFC 7675) through TURN: the TCP-relayed call of case 3 (Alice's relay over
/// TCP, Bob's over UDP) runs past the 30 s consent timeout; both sides keep consent (their
/// checks and answers go through the relays, wrapped in ChannelData or Data indications) and
/// audio keeps flowing on the relayed pair.
#[test]
fn consent_holds_over_turn_relays_past_30_seconds() -> TestResult {
    if !root_or_skip("ice_consent") {
        return Ok(());
    }
    let lab = ice_lab(NatKind::Symmetric, NatKind::Symmetric)?;
    lab.nat_a.block_udp_to(TURN_IP.parse::<IpAddr>()?)?;
    let extra = turn_lines();
    let (mut alice, mut bob) = lab.phones(&extra, &extra)?;
    alice.sipterm.send("dial sip:bob@atlanta.test")?;
    alice.sipterm.expect_call_state("confirmed", SIGNALLING)?;
    bob.sipterm.expect_call_state("confirmed", SIGNALLING)?;
    // 36 s of packets sent (50 a second): past the 30 s timeout, still relayed and heard.
    let past = Duration::from_secs(60);
    for phone in [&mut alice, &mut bob] {
        let media = phone.sipterm.expect_event(
            "a media event 36 s into the call",
            |e| e["event"] == "media" && e["sent"].as_u64().unwrap_or(0) >= 1800,
            past,
        )?;
        println!("{}: {media}", phone.sipterm.name());
        assert_eq!(path(&media), "relay", "{media}");
        let before = media["received"].as_u64().unwrap_or(0);
        assert!(before >= 1500, "audio all along: {media}");
        let next = media_flowing(phone, before + 50)?;
        assert_eq!(path(&next), "relay", "{next}");
    }
    for phone in [&alice, &bob] {
        assert!(
            !phone
                .sipterm
                .history()
                .iter()
                .any(|e| e["event"] == "warning"
                    && e["message"].as_str().is_some_and(|m| m.contains("consent"))),
            "no consent warning"
        );
    }
    alice.sipterm.send("hangup")?;
    alice.sipterm.expect_call_state("terminated", SIGNALLING)?;
    Ok(())
}
