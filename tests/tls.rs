//! SIP over TLS: two headless sipterms calling each other over TLS (test CA and certificate
//! made here with rcgen), certificate failures, `tls_insecure`, CRLF keep-alives (pong on
//! TCP and TLS, pings from sipterm's client connections), and registration to Kamailio over
//! TLS (needs kamailio-tls-modules, installed by the Makefile).
//!
//! Run with `--nocapture` to see the figures (frequencies, ping intervals).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::audio::assert_hears;
use common::certs::{Certs, make_certs, toml_path};
use common::headless::{
    Headless, HeadlessOptions, local_account, no_panic, sine, tls_listen, write_wav,
};
use common::peers::Kamailio;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SIGNALLING: Duration = Duration::from_secs(10);
const CALLER_TONE: f32 = 440.0;
const CALLEE_TONE: f32 = 1000.0;
const FILE_RATE: u32 = 48_000;

/// `[sip]` of a callee that accepts TLS on an ephemeral port.
fn tls_server_sip(certs: &Certs) -> String {
    format!(
        "[sip]\ntls_listen = \"127.0.0.1:0\"\ntls_cert = {}\ntls_key = {}\n",
        toml_path(&certs.cert_pem),
        toml_path(&certs.key_pem)
    )
}

fn spawn(
    name: &str,
    config: String,
    audio: Option<(PathBuf, PathBuf)>,
    auto_answer_ms: Option<u64>,
    extra_args: Vec<String>,
) -> Result<Headless, Box<dyn std::error::Error>> {
    let (audio_in, audio_out) = match audio {
        Some((i, o)) => (Some(i), Some(o)),
        None => (None, None),
    };
    Ok(Headless::spawn(
        name,
        &HeadlessOptions {
            audio_in,
            audio_out,
            auto_answer_ms,
            config_toml: Some(config),
            extra_args,
            ..HeadlessOptions::default()
        },
    )?)
}

/// Two sipterms over TLS: the caller trusts the test CA (`tls_ca_file`), dials the callee's
/// TLS listener by `sips:` URI at 127.0.0.1 (verified against the IP SAN, no SNI); audio both
/// ways; the callee hangs up, so its BYE must find its way back over the connection the
/// caller opened (the caller has no TLS listener).
#[test]
fn tls_call_with_test_ca_two_way_audio() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let files = certs.dir.path();
    let caller_in = files.join("caller-in.wav");
    let callee_in = files.join("callee-in.wav");
    write_wav(
        &caller_in,
        FILE_RATE,
        &sine(CALLER_TONE, FILE_RATE, 6.0, 8000.0),
    )?;
    write_wav(
        &callee_in,
        FILE_RATE,
        &sine(CALLEE_TONE, FILE_RATE, 6.0, 8000.0),
    )?;
    let caller_out = files.join("caller-out.wav");
    let callee_out = files.join("callee-out.wav");
    let callee_pcap = files.join("callee.pcap");
    let caller_pcap = files.join("caller.pcap");

    let mut callee = spawn(
        "callee",
        tls_server_sip(&certs) + &local_account("callee", ""),
        Some((callee_in, callee_out.clone())),
        Some(0),
        vec![format!("--pcap-out={}", callee_pcap.display())],
    )?;
    let callee_tls = tls_listen(&callee)?;
    assert_ne!(callee_tls.port(), callee.listen.port());
    let mut caller = spawn(
        "caller",
        format!("[sip]\ntls_ca_file = {}\n", toml_path(&certs.ca_pem))
            + &local_account("caller", "transport = \"tls\"\n"),
        Some((caller_in, caller_out.clone())),
        None,
        vec![format!("--pcap-out={}", caller_pcap.display())],
    )?;
    caller.send(&format!("dial sips:callee@{callee_tls}"))?;
    caller.expect_call_state("confirmed", SIGNALLING)?;
    callee.expect_call_state("confirmed", SIGNALLING)?;
    for side in [&mut caller, &mut callee] {
        side.expect_event(
            "media with >= 75 packets received",
            |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) >= 75,
            SIGNALLING,
        )?;
    }
    callee.send("hangup")?;
    callee.expect_call_state("terminated", SIGNALLING)?;
    let ended = caller.expect_call_state("terminated", SIGNALLING)?;
    println!("caller saw the end: {ended}");

    // Every SIP message of the caller went to the callee's TLS listener, over one connection.
    let peer_of = |e: &&Value| e["peer"].as_str().unwrap_or_default().to_string();
    let caller_sip = caller.events_of("sip");
    assert!(!caller_sip.is_empty());
    for event in &caller_sip {
        assert_eq!(peer_of(event), callee_tls.to_string(), "caller: {event}");
    }
    let caller_in_bye = caller_sip
        .iter()
        .any(|e| e["dir"] == "in" && e["summary"].as_str().unwrap_or("").starts_with("BYE"));
    assert!(caller_in_bye, "the callee's BYE reached the caller");
    // The callee saw one peer: the caller's side of that connection (not its UDP port).
    let callee_peers: std::collections::HashSet<String> =
        callee.events_of("sip").iter().map(peer_of).collect();
    println!(
        "callee's peers: {callee_peers:?}; caller listens on {}",
        caller.listen
    );
    assert_eq!(callee_peers.len(), 1, "{callee_peers:?}");
    assert!(!callee_peers.contains(&caller.listen.to_string()));

    for side in [&mut caller, &mut callee] {
        side.quit(Duration::from_secs(5));
        no_panic(side);
    }
    // Via says TLS in what went over the wire (the pcap holds the SIP text).
    for pcap in [&caller_pcap, &callee_pcap] {
        let bytes = std::fs::read(pcap)?;
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("Via: SIP/2.0/TLS 127.0.0.1:"),
            "{}: no TLS Via",
            pcap.display()
        );
        assert!(
            !text.contains("SIP/2.0/UDP"),
            "{}: a UDP Via",
            pcap.display()
        );
        assert!(
            text.contains("Contact: <sips:"),
            "{}: no sips Contact",
            pcap.display()
        );
    }
    assert_hears(&caller_out, "caller", CALLEE_TONE)?;
    assert_hears(&callee_out, "callee", CALLER_TONE)?;
    Ok(())
}

/// Without the test CA the callee's certificate is from an unknown issuer: the call fails with
/// an error saying so, and sipterm carries on (the echo service still answers).
#[test]
fn tls_unknown_issuer_fails_with_clear_error() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let callee = spawn(
        "callee",
        tls_server_sip(&certs) + &local_account("callee", ""),
        None,
        Some(0),
        Vec::new(),
    )?;
    let callee_tls = tls_listen(&callee)?;
    let mut caller = spawn(
        "caller",
        local_account("caller", "transport = \"tls\"\n"),
        None,
        None,
        Vec::new(),
    )?;
    for attempt in 0..2 {
        let started = Instant::now();
        caller.send(&format!("dial sips:callee@{callee_tls}"))?;
        let error = caller.expect_event(
            "an error about the certificate",
            |e| e["event"] == "error",
            SIGNALLING,
        )?;
        let message = error["message"].as_str().unwrap_or_default();
        println!("attempt {attempt}: {message} after {:?}", started.elapsed());
        assert!(message.starts_with("TLS"), "{message}");
        assert!(
            message.contains("invalid peer certificate") && message.contains("UnknownIssuer"),
            "{message}"
        );
        let ended = caller.expect_call_state("terminated", SIGNALLING)?;
        println!("call ended: {ended}");
    }
    // Still alive and working.
    caller.send("dial echo")?;
    caller.expect_call_state("confirmed", SIGNALLING)?;
    caller.send("hangup")?;
    caller.expect_call_state("terminated", SIGNALLING)?;
    no_panic(&caller);
    no_panic(&callee);
    Ok(())
}

/// `tls_insecure = true`: no CA, yet the call goes through; a warning at start says
/// verification is off.
#[test]
fn tls_insecure_connects_and_warns() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let mut callee = spawn(
        "callee",
        tls_server_sip(&certs) + &local_account("callee", ""),
        None,
        Some(0),
        Vec::new(),
    )?;
    let callee_tls = tls_listen(&callee)?;
    let mut caller = spawn(
        "caller",
        "[sip]\ntls_insecure = true\n".to_string()
            + &local_account("caller", "transport = \"tls\"\n"),
        None,
        None,
        Vec::new(),
    )?;
    let warning = caller.expect_event(
        "the tls_insecure warning",
        |e| e["event"] == "warning" && e["message"].as_str().unwrap_or("").contains("tls_insecure"),
        SIGNALLING,
    )?;
    let warning = warning["message"].as_str().unwrap_or_default();
    println!("warning: {warning}");
    assert!(warning.contains("NOT verified"), "{warning}");
    caller.send(&format!("dial sips:callee@{callee_tls}"))?;
    caller.expect_call_state("confirmed", SIGNALLING)?;
    callee.expect_call_state("confirmed", SIGNALLING)?;
    caller.send("hangup")?;
    caller.expect_call_state("terminated", SIGNALLING)?;
    callee.expect_call_state("terminated", SIGNALLING)?;
    assert!(
        caller.events_of("error").is_empty(),
        "{:?}",
        caller.events_of("error")
    );
    Ok(())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A raw TLS client trusting the test CA, verifying the name "localhost".
fn tls_client(
    certs: &Certs,
    addr: SocketAddr,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, Box<dyn std::error::Error>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.ca_der.clone())?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost")?)?;
    let sock = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// Sends a CRLFCRLF ping and expects exactly one CRLF back.
fn ping_pong(stream: &mut impl ReadWrite, what: &str) -> TestResult {
    let started = Instant::now();
    stream.write_all(b"\r\n\r\n")?;
    stream.flush()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while got.len() < 2 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    println!("{what}: pong {got:?} after {:?}", started.elapsed());
    assert_eq!(got, b"\r\n", "{what}: the pong is one CRLF");
    Ok(())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// RFC 5626 §3.5.1 on the server side: a CRLFCRLF ping gets a CRLF pong, over TLS (the TLS
/// listener, name "localhost" verified) and over TCP (the listen port), twice on one
/// connection.
#[test]
fn crlf_ping_gets_pong_over_tls_and_tcp() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let sipterm = spawn(
        "server",
        tls_server_sip(&certs) + &local_account("server", ""),
        None,
        None,
        Vec::new(),
    )?;
    let mut tls = tls_client(&certs, tls_listen(&sipterm)?)?;
    ping_pong(&mut tls, "TLS")?;
    ping_pong(&mut tls, "TLS again")?;
    let mut tcp = TcpStream::connect_timeout(&sipterm.listen, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    ping_pong(&mut tcp, "TCP")?;
    no_panic(&sipterm);
    Ok(())
}

/// A rustls server config presenting the test certificate.
fn server_config(certs: &Certs) -> Result<Arc<rustls::ServerConfig>, Box<dyn std::error::Error>> {
    Ok(Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![certs.cert_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certs.key_der.clone())),
            )?,
    ))
}

/// Waits (bounded) for sipterm to connect to `listener` (non-blocking) and wraps the socket.
fn accept_tls(
    listener: &TcpListener,
    config: Arc<rustls::ServerConfig>,
) -> Result<rustls::StreamOwned<rustls::ServerConnection, TcpStream>, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + SIGNALLING;
    let sock = loop {
        match listener.accept() {
            Ok((sock, _)) => break sock,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("sipterm never connected: {e}").into()),
        }
    };
    sock.set_nonblocking(false)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(rustls::StreamOwned::new(
        rustls::ServerConnection::new(config)?,
        sock,
    ))
}

/// Reads from a test server's TLS stream until a blank line (a message head), bounded.
fn read_head(
    tls: &mut rustls::StreamOwned<rustls::ServerConnection, TcpStream>,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + SIGNALLING;
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// The TLS name is the registrar's host name, sent as SNI and verified against the
/// certificate's DNS entry: `sips:localhost:PORT` reaches a server run here that sees
/// SNI "localhost" and a REGISTER over TLS. When that connection drops, the REGISTER fails
/// (a `registration` event says so) and the next one opens a new connection.
#[test]
fn sni_is_the_registrar_host_name() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let mut alice = spawn(
        "alice",
        format!("[sip]\ntls_ca_file = {}\n", toml_path(&certs.ca_pem))
            + &local_account(
                "alice",
                &format!("registrar = \"sips:localhost:{port}\"\ntransport = \"tls\"\n"),
            ),
        None,
        None,
        Vec::new(),
    )?;
    let config = server_config(&certs)?;
    let mut tls = accept_tls(&listener, config.clone())?;
    let text = read_head(&mut tls)?;
    println!(
        "SNI {:?}; {}",
        tls.conn.server_name(),
        text.lines().next().unwrap_or("")
    );
    assert_eq!(tls.conn.server_name(), Some("localhost"));
    assert!(text.starts_with("REGISTER sips:localhost:"), "{text}");
    assert!(text.contains("Via: SIP/2.0/TLS"), "{text}");

    // The server goes away mid-transaction: the REGISTER fails, sipterm carries on.
    tls.conn.send_close_notify();
    let _ = tls.flush();
    drop(tls);
    let failed = alice.expect_event(
        "registration failed",
        |e| e["event"] == "registration" && e["state"] == "failed",
        SIGNALLING,
    )?;
    println!("after the drop: {failed}");
    // The next REGISTER opens a new connection (SNI again).
    alice.send("register")?;
    let mut again = accept_tls(&listener, config)?;
    let text = read_head(&mut again)?;
    assert!(text.starts_with("REGISTER sips:localhost:"), "{text}");
    assert_eq!(again.conn.server_name(), Some("localhost"));
    assert!(
        alice.events_of("error").is_empty(),
        "{:?}",
        alice.events_of("error")
    );
    no_panic(&alice);
    Ok(())
}

/// sipterm's own TLS connection pings every `keepalive_secs`: a TLS server run here accepts
/// the INVITE's connection, then counts CRLFCRLF pings and answers each with CRLF.
#[test]
fn tls_client_sends_crlf_keepalive_pings() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let config = server_config(&certs)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let server = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let mut caller = spawn(
        "caller",
        format!("[sip]\ntls_ca_file = {}\n", toml_path(&certs.ca_pem))
            + &local_account("caller", "transport = \"tls\"\nkeepalive_secs = 1\n"),
        None,
        None,
        Vec::new(),
    )?;
    caller.send(&format!("dial sips:nobody@{server}"))?;
    let mut tls = accept_tls(&listener, config)?;
    let mut invite = Vec::new();
    let mut pings = Vec::new();
    let started = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    while started.elapsed() < Duration::from_millis(4500) {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let chunk = &buf[..n];
                if chunk == b"\r\n\r\n" && !invite.is_empty() {
                    pings.push(started.elapsed());
                    tls.write_all(b"\r\n")?;
                    tls.flush()?;
                } else {
                    invite.extend_from_slice(chunk);
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.into()),
        }
    }
    let text = String::from_utf8_lossy(&invite);
    assert!(text.starts_with("INVITE sips:nobody@"), "{text}");
    assert_eq!(tls.conn.server_name(), None, "no SNI for an IP literal");
    assert!(text.contains("Via: SIP/2.0/TLS"), "{text}");
    println!("pings at {pings:?}");
    assert!(
        (2..=6).contains(&pings.len()),
        "expected a ping about every second, got {pings:?}"
    );
    assert!(
        caller.events_of("error").is_empty(),
        "{:?}",
        caller.events_of("error")
    );
    caller.send("hangup")?;
    no_panic(&caller);
    Ok(())
}

/// Registration to Kamailio over TLS with digest auth: sipterm trusts the test CA, the
/// registrar is `sip:127.0.0.1:PORT;transport=tls` (IP SAN check). Then bob, registered over
/// UDP, calls alice: Kamailio relays the INVITE over alice's TLS connection (Contact from
/// `received`/`rport`), alice answers, bob hangs up; finally alice unregisters.
#[test]
fn kamailio_register_over_tls() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let (kamailio, port, tls_port) =
        Kamailio::start_with_test_tls(&[("alice", "alicepw"), ("bob", "bobpw")], &certs)?;
    let mut alice = spawn(
        "alice",
        format!("[sip]\ntls_ca_file = {}\n", toml_path(&certs.ca_pem))
            + &local_account(
                "alice",
                &format!(
                    "password = \"alicepw\"\nregistrar = \"sip:127.0.0.1:{tls_port};transport=tls\"\n\
                     transport = \"tls\"\nexpires = 60\n"
                ),
            ),
        None,
        Some(0),
        Vec::new(),
    )?;
    let registered = alice
        .expect_event(
            "registered",
            |e| e["event"] == "registration" && e["state"] != "registering",
            SIGNALLING,
        )
        .map_err(|e| format!("{e}\nkamailio:\n{}", kamailio.log()))?;
    println!("{registered}");
    assert_eq!(
        registered["state"],
        "registered",
        "{registered}\n{}",
        kamailio.log()
    );
    let tls_peer = format!("127.0.0.1:{tls_port}");
    let sip = alice.events_of("sip");
    let summaries: Vec<String> = sip
        .iter()
        .map(|e| format!("{} {} {}", e["dir"], e["peer"], e["summary"]))
        .collect();
    println!("{}", summaries.join("\n"));
    assert!(sip.iter().all(|e| e["peer"] == tls_peer.as_str()));
    let sip_count = sip.len();
    assert!(
        sip.iter()
            .any(|e| e["dir"] == "in" && e["summary"] == "SIP/2.0 401 Unauthorized"),
        "digest challenge over TLS"
    );
    // bob over UDP calls alice, who is reachable only over her TLS connection.
    let mut bob = spawn(
        "bob",
        local_account(
            "bob",
            &format!("password = \"bobpw\"\nregistrar = \"sip:127.0.0.1:{port}\"\n"),
        ),
        None,
        None,
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
        .map_err(|e| {
            format!(
                "{e}
kamailio:
{}",
                kamailio.log()
            )
        })?;
    alice.expect_call_state("confirmed", SIGNALLING)?;
    bob.send("hangup")?;
    bob.expect_call_state("terminated", SIGNALLING)?;
    alice.expect_call_state("terminated", SIGNALLING)?;
    let alice_invites: Vec<String> = alice
        .events_of("sip")
        .iter()
        .filter(|e| e["dir"] == "in" && e["summary"].as_str().unwrap_or("").starts_with("INVITE"))
        .map(|e| e["peer"].as_str().unwrap_or_default().to_string())
        .collect();
    println!(
        "alice got INVITEs from {alice_invites:?}; bob's trace: {:?}",
        bob.events_of("sip")
            .iter()
            .map(|e| format!("{} {}", e["dir"], e["summary"]))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        alice_invites,
        vec![tls_peer.clone()],
        "INVITE over TLS from Kamailio"
    );
    alice.send("unregister")?;
    let unregistered = alice.expect_event(
        "unregistered",
        |e| e["event"] == "registration" && e["state"] == "unregistered",
        SIGNALLING,
    )?;
    println!("{unregistered}");
    assert!(
        alice
            .events_of("sip")
            .iter()
            .skip(sip_count)
            .all(|e| e["peer"] == tls_peer.as_str()),
        "everything of alice's went over TLS"
    );
    no_panic(&alice);
    no_panic(&bob);
    Ok(())
}

/// A TLS listener whose certificate file is missing: an `error` event naming the file, no
/// `tls_listen` in `ready`, and sipterm goes on working (UDP calls to the echo service).
#[test]
fn missing_certificate_file_is_an_error_not_a_crash() -> TestResult {
    let certs = make_certs().map_err(|e| e as Box<dyn std::error::Error>)?;
    let missing = certs.dir.path().join("no-such-cert.pem");
    let mut sipterm = spawn(
        "server",
        format!(
            "[sip]\ntls_listen = \"127.0.0.1:0\"\ntls_cert = {}\ntls_key = {}\n",
            toml_path(&missing),
            toml_path(&certs.key_pem)
        ) + &local_account("server", ""),
        None,
        None,
        Vec::new(),
    )?;
    let error = sipterm.expect_event("an error event", |e| e["event"] == "error", SIGNALLING)?;
    let message = error["message"].as_str().unwrap_or_default();
    println!("{message}");
    assert!(message.starts_with("TLS: tls_cert"), "{message}");
    assert!(message.contains("no-such-cert.pem"), "{message}");
    assert!(sipterm.events_of("ready")[0].get("tls_listen").is_none());
    sipterm.send("dial echo")?;
    sipterm.expect_call_state("confirmed", SIGNALLING)?;
    sipterm.send("hangup")?;
    sipterm.expect_call_state("terminated", SIGNALLING)?;
    no_panic(&sipterm);
    Ok(())
}

/// Found with Kamailio over TLS: the registrar's rport makes sipterm refresh its Contact right
/// after registering; an `unregister` while that REGISTER was in flight was lost (the binding
/// stayed). Now the REGISTER with Expires: 0 goes out once the one in flight is answered.
#[test]
fn unregister_while_register_in_flight_still_unregisters() {
    use common::sim::{AccountSpec, reply, requests, user_agent};
    use sipterm::sip::registration::RegistrationState;
    use sipterm::sip::ua::{Command, UaEvent};
    let mut ua = user_agent(&AccountSpec::default());
    let now = Instant::now();
    ua.handle_command(Command::Register, now);
    let first = requests(&mut ua);
    assert_eq!(first.len(), 1);
    let (dest, register) = first.into_iter().next().expect("one REGISTER");
    ua.handle_command(Command::Unregister, now);
    assert!(
        requests(&mut ua).is_empty(),
        "one REGISTER at a time: the unregister waits"
    );
    ua.handle_datagram(dest, &reply(&register, 200, "OK", &[]), now);
    let next = requests(&mut ua);
    let (_, unregister) = next.first().expect("the deferred unregister is sent");
    assert_eq!(unregister.headers.get("Expires"), Some("0"));
    ua.handle_datagram(dest, &reply(unregister, 200, "OK", &[]), now);
    let mut states = Vec::new();
    while let Some(event) = ua.poll_event() {
        if let UaEvent::Registration { state, .. } = event {
            states.push(state);
        }
    }
    assert_eq!(
        states.last(),
        Some(&RegistrationState::Unregistered),
        "{states:?}"
    );
    assert!(
        !states.contains(&RegistrationState::Registered),
        "{states:?}"
    );
}
