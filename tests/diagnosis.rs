//! The live diagnosis, provoked for real on 127.0.0.1: a headless sipterm meets a registrar
//! that refuses its password or user, wants another expiry, or does not answer over UDP or
//! TCP; names without DNS records; TLS servers with bad certificates; callees (sipp) that
//! refuse calls with 488, 420, 421, 403, 408, 480 and 486; a caller with codecs we lack; a peer
//! whose SRTP key is not the one it uses; a peer waiting for ICE; a peer behind a lossy,
//! jittery, slow link; a microphone at digital silence and one that does not exist. Each test
//! waits for the `diagnosis` event and checks its code and that its message names the cause.
//! (tests/diagnosis_lab.rs has the faults that need a network: NAT, firewalls, dead SRV
//! servers.)

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::bad_link::{BadLink, Faults};
use common::certs::{Certs, make_certs, toml_path};
use common::headless::{Headless, HeadlessOptions};
use common::peers::{Kamailio, Sipp};
use common::ports::{free_port_pair, free_udp_port};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SIGNALLING: Duration = Duration::from_secs(15);
/// No audio for 5 s, reported every 2 s: the finding comes within about 8 s of the answer.
const MEDIA_FINDING: Duration = Duration::from_secs(25);

fn account(name: &str, extra: &str) -> String {
    format!(
        "[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@127.0.0.1\"\nsrtp = \"off\"\n{extra}"
    )
}

fn spawn(name: &str, config: String) -> Result<Headless, Box<dyn std::error::Error>> {
    Ok(Headless::spawn(
        name,
        &HeadlessOptions {
            config_toml: Some(config),
            ..HeadlessOptions::default()
        },
    )?)
}

/// Waits for a `diagnosis` event making `code` active (for `call`, when given) and prints it.
fn finding(
    sipterm: &mut Headless,
    code: &str,
    call: Option<&str>,
    timeout: Duration,
) -> Result<Value, Box<dyn std::error::Error>> {
    let found = sipterm.expect_event(
        &format!("diagnosis {code}"),
        |e| {
            e["event"] == "diagnosis"
                && e["state"] == "active"
                && e["code"] == code
                && call.is_none_or(|c| e["call"] == c)
        },
        timeout,
    )?;
    println!("{}: {}", sipterm.name(), found);
    Ok(found)
}

fn message(finding: &Value) -> &str {
    finding["message"].as_str().unwrap_or_default()
}

/// The call id of the newest `call` event.
fn last_call(sipterm: &Headless) -> String {
    sipterm
        .events_of("call")
        .last()
        .and_then(|e| e["call"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn assert_names(finding: &Value, words: &[&str]) {
    let text = message(finding);
    for word in words {
        assert!(text.contains(word), "`{word}` missing in: {text}");
    }
}

/// Kamailio as registrar: Alice's password is wrong, Mallory is unknown to it, Bob asks for
/// 7200 s and gets its maximum, 3600.
#[test]
fn registration_wrong_password_unknown_user_and_a_shorter_expiry() -> TestResult {
    let port = free_udp_port()?;
    let kamailio = Kamailio::start(&[("alice", "alicepw"), ("bob", "bobpw")], port)?;
    let registrar = format!("registrar = \"sip:127.0.0.1:{}\"\n", kamailio.port);
    let mut alice = spawn(
        "alice",
        account("alice", &format!("{registrar}password = \"not-alicepw\"\n")),
    )?;
    let mut mallory = spawn(
        "mallory",
        account("mallory", &format!("{registrar}password = \"whatever\"\n")),
    )?;
    let mut bob = spawn(
        "bob",
        account(
            "bob",
            &format!("{registrar}password = \"bobpw\"\nexpires = 7200\n"),
        ),
    )?;
    let wrong = finding(&mut alice, "registration.wrong_password", None, SIGNALLING)?;
    assert_names(&wrong, &["password", "challenged again", "realm 127.0.0.1"]);
    assert_eq!(wrong["evidence"]["answered_challenge"], "true");
    let unknown = finding(&mut mallory, "registration.unknown_user", None, SIGNALLING)?;
    assert_names(&unknown, &["403 Unknown user", "sip:mallory@127.0.0.1"]);
    let expiry = finding(&mut bob, "registration.expiry_changed", None, SIGNALLING)?;
    assert_names(&expiry, &["shortened", "3600 s", "7200 s"]);
    assert_eq!(expiry["severity"], "info");
    drop(kamailio);
    Ok(())
}

/// A registrar that wants at least 900 s answers the 600 s we ask with 423.
#[test]
fn registration_longer_expiry_after_423() -> TestResult {
    let port = free_udp_port()?;
    let sipp = Sipp::uas(&Sipp::scenario("uas_registrar_423.xml"), port, &[])?;
    let mut alice = spawn(
        "alice-423",
        account(
            "alice",
            &format!("registrar = \"sip:{}\"\nexpires = 600\n", sipp.addr()),
        ),
    )?;
    let expiry = finding(&mut alice, "registration.expiry_changed", None, SIGNALLING)?;
    assert_names(&expiry, &["at least 900 s", "423", "600 s"]);
    Ok(())
}

/// Registrars that are not there: a closed UDP port (ICMP), a closed TCP port (connection
/// refused), and one that swallows every REGISTER (timeout, with a short T1).
#[test]
fn registrar_unreachable_over_udp_tcp_and_one_that_never_answers() -> TestResult {
    let closed_udp = free_udp_port()?;
    let closed_tcp = {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.local_addr()?.port()
    };
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let hole = black_hole.local_addr()?;
    let mut udp = spawn(
        "unreachable-udp",
        account(
            "alice",
            &format!("registrar = \"sip:127.0.0.1:{closed_udp}\"\n"),
        ),
    )?;
    let mut tcp = spawn(
        "unreachable-tcp",
        account(
            "alice",
            &format!("registrar = \"sip:127.0.0.1:{closed_tcp}\"\ntransport = \"tcp\"\n"),
        ),
    )?;
    let mut silent = spawn(
        "unreachable-timeout",
        "[sip]\nt1_ms = 50\n".to_string()
            + &account("alice", &format!("registrar = \"sip:{hole}\"\n")),
    )?;
    let icmp = finding(&mut udp, "registration.unreachable", None, SIGNALLING)?;
    assert_names(
        &icmp,
        &[
            &format!("127.0.0.1:{closed_udp} over UDP"),
            "ICMP",
            "nothing listens",
        ],
    );
    let refused = finding(&mut tcp, "registration.unreachable", None, SIGNALLING)?;
    assert_names(
        &refused,
        &[
            &format!("127.0.0.1:{closed_tcp} over TCP"),
            "connection failed",
        ],
    );
    // Timer F is 64 T1 = 3.2 s here.
    let timeout = finding(&mut silent, "registration.unreachable", None, SIGNALLING)?;
    assert_names(&timeout, &[&format!("{hole} over UDP"), "no answer"]);
    drop(black_hole);
    Ok(())
}

/// Names that do not exist (`.invalid` never reaches a DNS server): the registrar's is a
/// finding at once, a dialled one with its call.
#[test]
fn dns_names_without_records() -> TestResult {
    let mut alice = spawn(
        "dns",
        account("alice", "registrar = \"sip:pbx.provider.invalid\"\n"),
    )?;
    let registrar = finding(&mut alice, "dns.no_records", None, SIGNALLING)?;
    assert_names(&registrar, &["pbx.provider.invalid", "no such domain"]);
    alice.send("dial sip:carol@nowhere.invalid")?;
    alice.expect_call_state("terminated", SIGNALLING)?;
    let call = last_call(&alice);
    let dialled = finding(&mut alice, "dns.no_records", Some(&call), SIGNALLING)?;
    assert_names(&dialled, &["nowhere.invalid has no SIP server"]);
    Ok(())
}

/// One certificate (and server configuration) per TLS fault.
struct TlsServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsServer {
    /// Accepts connections and runs the handshake (which fails on sipterm's side).
    fn start(config: Arc<rustls::ServerConfig>) -> Result<TlsServer, Box<dyn std::error::Error>> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        let _ = sock.set_nonblocking(false);
                        let _ = sock.set_read_timeout(Some(Duration::from_secs(2)));
                        if let Ok(conn) = rustls::ServerConnection::new(config.clone()) {
                            let mut tls = rustls::StreamOwned::new(conn, sock);
                            let mut buf = [0u8; 1024];
                            let _ = std::io::Read::read(&mut tls, &mut buf);
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(TlsServer {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate for `names`, signed by the test CA (`certs`) or by a CA of its own, valid
/// until `expired` says otherwise; and a server configuration presenting it.
fn server_with(
    certs: &Certs,
    names: &[&str],
    own_ca: bool,
    expired: bool,
    client_auth: bool,
) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    // Each certificate gets a CA made here, trusted through `tls_ca_file` (the file
    // `trusted.pem` next to the test CA) unless `own_ca` asks for one nobody trusts.
    let (ca_params, ca_key) = {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            DnType::CommonName,
            if own_ca { "a private CA" } else { "trusted" },
        );
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params, KeyPair::generate()?)
    };
    let ca_cert = ca_params.self_signed(&ca_key)?;
    if !own_ca {
        // Trusted: appended to the CA file sipterm reads.
        let path = certs.dir.path().join("trusted.pem");
        let mut pem = std::fs::read_to_string(&path).unwrap_or_default();
        pem.push_str(&ca_cert.pem());
        std::fs::write(&path, pem)?;
    }
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, &issuer)?;
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let config = if client_auth {
        // Mutual TLS, TLS 1.2: the server refuses the handshake before it ends for a client
        // without a certificate (TLS 1.3 would let the client finish first).
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certs.ca_der.clone())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()?;
        rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, private)?
    } else {
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, private)?
    };
    Ok(Arc::new(config))
}

/// TLS servers whose certificate is from an unknown CA, for another name, expired, and one
/// that refuses a client without a certificate: each finding names the cause.
#[test]
fn tls_unknown_issuer_name_mismatch_expired_and_refused() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let unknown = TlsServer::start(server_with(&certs, &["localhost"], true, false, false)?)?;
    let mismatch = TlsServer::start(server_with(
        &certs,
        &["sip.atlanta.test"],
        false,
        false,
        false,
    )?)?;
    let expired = TlsServer::start(server_with(&certs, &["localhost"], false, true, false)?)?;
    let refusing = TlsServer::start(server_with(&certs, &["localhost"], false, false, true)?)?;
    let trusted = certs.dir.path().join("trusted.pem");
    let mut alice = spawn(
        "tls",
        format!("[sip]\ntls_ca_file = {}\n", toml_path(&trusted)) + &account("alice", ""),
    )?;
    let cases: [(&TlsServer, &str, &[&str]); 4] = [
        (&unknown, "tls.unknown_issuer", &["does not trust"]),
        (
            &mismatch,
            "tls.name_mismatch",
            &["is for sip.atlanta.test, not for localhost"],
        ),
        (&expired, "tls.expired", &["expired", "day(s) ago"]),
        (
            &refusing,
            "tls.handshake_refused",
            &["refused the TLS handshake"],
        ),
    ];
    for (server, code, words) in cases {
        alice.send(&format!("dial sips:bob@localhost:{}", server.port))?;
        let found = finding(&mut alice, code, None, SIGNALLING)?;
        assert_names(&found, words);
        assert_names(&found, &[&format!("127.0.0.1:{}", server.port)]);
        alice.expect_call_state("terminated", SIGNALLING)?;
    }
    // No second finding blames the callee for what TLS did.
    assert!(
        alice
            .events_of("diagnosis")
            .iter()
            .all(|e| e["code"] != "call.unreachable"),
        "{:?}",
        alice.events_of("diagnosis")
    );
    Ok(())
}

/// sipp refuses calls in every way the issue lists; each failure is explained in words.
#[test]
fn call_failures_explained() -> TestResult {
    let mut alice = spawn(
        "caller",
        account("alice", "codecs = [\"opus\", \"pcmu\"]\n"),
    )?;
    // 488 with the codecs the callee takes.
    let port = free_udp_port()?;
    let mut sipp = Sipp::uas(&Sipp::scenario("uas_reject_488_sdp.xml"), port, &[])?;
    alice.send(&format!("dial sip:bob@{}", sipp.addr()))?;
    let codecs = finding(&mut alice, "call.codec_mismatch", None, SIGNALLING)?;
    assert_names(&codecs, &["488", "opus and PCMU", "G729 and G722"]);
    sipp.wait_success(SIGNALLING)?;
    let cases: [(u16, &str, &str, &str, &[&str]); 6] = [
        (
            420,
            "Bad Extension",
            "Unsupported: foo-ext",
            "call.extension_unsupported",
            &["foo-ext"],
        ),
        (
            421,
            "Extension Required",
            "Require: 100rel",
            "call.extension_required",
            &["100rel"],
        ),
        (
            403,
            "Forbidden",
            "Warning: 399 pbx \"No international calls\"",
            "call.forbidden",
            &["403 Forbidden", "sipp-reject"],
        ),
        (
            408,
            "Request Timeout",
            "X-Test: none",
            "call.no_response",
            &["408", "offline"],
        ),
        (
            480,
            "Temporarily Unavailable",
            "X-Test: none",
            "call.unavailable",
            &["480", "not registered"],
        ),
        (
            486,
            "Busy Here",
            "X-Test: none",
            "call.busy",
            &["486 Busy Here", "busy"],
        ),
    ];
    let template = std::fs::read_to_string(Sipp::scenario("uas_reject.xml"))?;
    let scenarios = tempfile::tempdir()?;
    for (code, reason, header, finding_code, words) in cases {
        let port = free_udp_port()?;
        let scenario = scenarios.path().join(format!("reject_{code}.xml"));
        std::fs::write(
            &scenario,
            template.replace("SIP/2.0 CODE REASON", &format!("SIP/2.0 {code} {reason}")),
        )?;
        let mut sipp = Sipp::uas(&scenario, port, &["-key", "header", header])?;
        alice.send(&format!("dial sip:bob@{}", sipp.addr()))?;
        let found = finding(&mut alice, finding_code, None, SIGNALLING)
            .map_err(|e| format!("{e}\nsipp: {}", sipp.log()))?;
        assert_names(&found, words);
        assert_names(&found, &["sip:bob@127.0.0.1"]);
        sipp.wait_success(SIGNALLING)?;
    }
    // A caller with only G.729: sipterm refuses it and says what each side had.
    let port = free_udp_port()?;
    let mut caller = Sipp::uac(
        &Sipp::scenario("uac_invite_g729.xml"),
        port,
        alice.listen,
        &["-s", "alice"],
    )?;
    let refused = finding(&mut alice, "call.codec_mismatch", None, SIGNALLING)?;
    assert_names(
        &refused,
        &["sipterm refused the call", "offered G729", "opus and PCMU"],
    );
    caller.wait_success(SIGNALLING)?;
    Ok(())
}

/// The RFC 4568 example key: what the peer announces; it then sends us back our own packets
/// (sipp's RTP echo), protected with our key, not this one: SRTP authentication fails.
const PEER_KEY: &str =
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

#[test]
fn no_audio_because_the_peer_s_srtp_key_is_not_the_one_it_uses() -> TestResult {
    let (media, _) = free_port_pair()?;
    let media_text = media.to_string();
    let port = free_udp_port()?;
    let _sipp = Sipp::uas(
        &Sipp::scenario("uas_answer_sdp.xml"),
        port,
        &[
            "-mp",
            &media_text,
            "-key",
            "port",
            &media_text,
            "-key",
            "proto",
            "RTP/SAVP",
            "-key",
            "attr1",
            PEER_KEY,
            "-key",
            "attr2",
            "a=sendrecv",
        ],
    )?;
    let mut alice = spawn(
        "srtp",
        account("alice", "codecs = [\"pcmu\"]\n").replace("srtp = \"off\"", "srtp = \"mandatory\""),
    )?;
    alice.send(&format!("dial sip:bob@127.0.0.1:{port}"))?;
    alice.expect_call_state("confirmed", SIGNALLING)?;
    let call = last_call(&alice);
    let found = finding(
        &mut alice,
        "media.no_audio.srtp",
        Some(&call),
        MEDIA_FINDING,
    )?;
    assert_names(&found, &["failed SRTP authentication", "another key"]);
    assert_no_score_for_silence(&alice);
    alice.send("hangup")?;
    Ok(())
}

#[test]
fn no_audio_from_a_peer_waiting_for_ice() -> TestResult {
    let port = free_udp_port()?;
    let _sipp = Sipp::uas(
        &Sipp::scenario("uas_answer_sdp.xml"),
        port,
        &[
            // Port 9 (discard): nothing answers, nothing comes back.
            "-key",
            "port",
            "9",
            "-key",
            "proto",
            "RTP/AVP",
            "-key",
            "attr1",
            "a=candidate:1 1 UDP 2130706431 127.0.0.1 9 typ host",
            "-key",
            "attr2",
            "a=candidate:2 1 UDP 1694498815 198.51.100.7 40000 typ srflx",
        ],
    )?;
    let mut alice = spawn("ice", account("alice", "codecs = [\"pcmu\"]\n"))?;
    alice.send(&format!("dial sip:bob@127.0.0.1:{port}"))?;
    alice.expect_call_state("confirmed", SIGNALLING)?;
    let call = last_call(&alice);
    let found = finding(&mut alice, "media.no_audio.ice", Some(&call), MEDIA_FINDING)?;
    assert_names(&found, &["ICE", "srflx 198.51.100.7:40000 udp"]);
    assert_no_score_for_silence(&alice);
    alice.send("hangup")?;
    let cleared = alice.expect_event(
        "the finding cleared with the call",
        |e| {
            e["event"] == "diagnosis"
                && e["state"] == "cleared"
                && e["code"] == "media.no_audio.ice"
        },
        SIGNALLING,
    )?;
    println!("{cleared}");
    Ok(())
}

/// The MOS fix: a media report with no audio received has no score at all.
fn assert_no_score_for_silence(sipterm: &Headless) {
    let reports = sipterm.events_of("media");
    let silent: Vec<&&Value> = reports.iter().filter(|e| e["received"] == 0).collect();
    assert!(!silent.is_empty(), "no media report while silent");
    for report in silent {
        assert!(report.get("mos").is_none(), "MOS for silence: {report}");
    }
}

/// A peer behind a bad link: 10 % of the packets lost each way, up to 150 ms late, its
/// reports 600 ms late. Every quality finding comes, each naming its figure and direction.
#[test]
fn quality_loss_jitter_and_round_trip_in_each_direction() -> TestResult {
    let link = BadLink::start(Faults {
        loss_every: 10,
        jitter: Duration::from_millis(150),
        report_delay: Duration::from_millis(600),
    })?;
    let port = free_udp_port()?;
    let link_port = link.port.to_string();
    let _sipp = Sipp::uas(
        &Sipp::scenario("uas_answer_sdp.xml"),
        port,
        &[
            "-key",
            "port",
            &link_port,
            "-key",
            "proto",
            "RTP/AVP",
            "-key",
            "attr1",
            "a=sendrecv",
            "-key",
            "attr2",
            "a=ptime:20",
        ],
    )?;
    let mut alice = spawn("quality", account("alice", "codecs = [\"pcmu\"]\n"))?;
    alice.send(&format!("dial sip:bob@127.0.0.1:{port}"))?;
    alice.expect_call_state("confirmed", SIGNALLING)?;
    let call = last_call(&alice);
    let started = Instant::now();
    let mut seen = Vec::new();
    for (code, words) in [
        (
            "quality.loss_in",
            &["of the audio from the peer is lost"][..],
        ),
        ("quality.loss_out", &["The peer loses", "of your audio"][..]),
        ("quality.jitter_in", &["arrives unevenly", "ms jitter"][..]),
        ("quality.jitter_out", &["reaches the peer unevenly"][..]),
        ("quality.round_trip", &["round trip to the peer takes"][..]),
    ] {
        let found = match alice
            .history()
            .iter()
            .find(|e| e["event"] == "diagnosis" && e["code"] == code)
        {
            Some(found) => found.clone(),
            None => finding(&mut alice, code, Some(&call), MEDIA_FINDING)?,
        };
        assert_names(&found, words);
        seen.push(found);
    }
    println!("all five within {:?}", started.elapsed());
    for found in &seen {
        println!("{found}");
    }
    let loss: f64 = seen[0]["evidence"]["loss_pct"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        (5.0..20.0).contains(&loss),
        "loss in {loss} %, the link loses 10 %"
    );
    let rtt: f64 = seen[4]["evidence"]["rtt_ms"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(rtt >= 600.0, "round trip {rtt} ms, the link adds 600 ms");
    alice.send("hangup")?;
    Ok(())
}

fn pulse_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pulse")
}

/// A private PulseAudio daemon with the null sinks of tests/data/pulse (as tests/audio_device.rs
/// uses); stopped on drop.
struct Pulse {
    dir: tempfile::TempDir,
}

impl Pulse {
    fn start() -> Result<Pulse, Box<dyn std::error::Error>> {
        let dir = tempfile::Builder::new()
            .prefix("sipterm-pa-")
            .tempdir_in("/tmp")?;
        let out = std::process::Command::new(pulse_dir().join("pa-start.sh"))
            .arg(dir.path())
            .output()
            .map_err(|e| format!("pa-start.sh (is pulseaudio installed? make test-deps): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pa-start.sh failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(Pulse { dir })
    }

    fn env(&self) -> [(&'static str, std::ffi::OsString); 2] {
        [
            (
                "PULSE_SERVER",
                format!("unix:{}/pulse/native", self.dir.path().display()).into(),
            ),
            (
                "PULSE_COOKIE",
                self.dir.path().join("home/.config/pulse/cookie").into(),
            ),
        ]
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = std::process::Command::new(pulse_dir().join("pa-stop.sh"))
            .arg(self.dir.path())
            .output();
    }
}

/// A real sound server: one microphone is the monitor of a sink nothing plays into (digital
/// silence), the other does not exist.
#[test]
fn microphone_at_digital_silence_and_one_that_does_not_exist() -> TestResult {
    let pulse = Pulse::start()?;
    let env = pulse.env();
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    let spawn_with_mic = |name: &str, input: &str| {
        Headless::spawn_with(
            name,
            &HeadlessOptions {
                config_toml: Some(format!("[audio]\ninput = \"{input}\"\noutput = \"null\"\n")),
                ..HeadlessOptions::default()
            },
            &env,
            true,
        )
    };
    let mut silent = spawn_with_mic("mic-silent", "pulseaudio:sipterm_in.monitor")?;
    let mut missing = spawn_with_mic("mic-missing", "pulseaudio:no_such_microphone")?;
    // The built-in echo service answers each: no other phone needed.
    silent.send("dial echo")?;
    missing.send("dial echo")?;
    let quiet = finding(&mut silent, "media.mic_silent", None, MEDIA_FINDING)?;
    assert_names(
        &quiet,
        &["pulseaudio:sipterm_in.monitor", "digital silence"],
    );
    let failed = finding(&mut missing, "media.mic_failed", None, MEDIA_FINDING)?;
    assert_names(&failed, &["no_such_microphone", "cannot be used"]);
    // Muted is no fault: the finding clears and does not come back while muted.
    silent.send("mute")?;
    silent.expect_event(
        "the silence finding clears once muted",
        |e| e["event"] == "diagnosis" && e["state"] == "cleared" && e["code"] == "media.mic_silent",
        MEDIA_FINDING,
    )?;
    silent.send("hangup")?;
    missing.send("hangup")?;
    Ok(())
}

#[test]
fn diagnosis_events_reach_the_headless_front_end_with_the_documented_fields() -> TestResult {
    let mut alice = spawn("fields", account("alice", ""))?;
    alice.send("dial sip:carol@nowhere.invalid")?;
    let found = finding(&mut alice, "dns.no_records", None, SIGNALLING)?;
    for field in [
        "state", "code", "severity", "message", "advice", "evidence", "call",
    ] {
        assert!(found.get(field).is_some(), "{field} missing in {found}");
    }
    alice.send("dial echo")?;
    let cleared = alice.expect_event(
        "the old call's finding cleared when the next call starts",
        |e| e["event"] == "diagnosis" && e["state"] == "cleared" && e["code"] == "dns.no_records",
        SIGNALLING,
    )?;
    assert_eq!(cleared["message"], found["message"]);
    alice.expect_call_state("confirmed", SIGNALLING)?;
    alice.send("hangup")?;
    Ok(())
}
