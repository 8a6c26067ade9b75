//! The headless front end as a script or a user meets it: the `ready` event, config errors,
//! bad commands, quitting, stdin EOF, SIGTERM, junk on the SIP port, and secrets kept out of
//! every output.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::headless::{Headless, HeadlessOptions, config_with_account, options_probe};
use serde_json::Value;

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

fn assert_answers_options(sipterm: &Headless, context: &str) {
    let response = options_probe(sipterm.addr(), Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{context}: no answer to OPTIONS: {e}"));
    assert_eq!(
        status_line(&response),
        "SIP/2.0 200 OK",
        "{context}: {response}"
    );
}

/// Runs sipterm with a config file that must be refused; returns (exit code, stderr).
fn refused_config(config: &str) -> (Option<i32>, String, String) {
    let mut sipterm =
        Headless::launch("sipterm", &HeadlessOptions::with_config(config)).expect("spawn sipterm");
    let status = sipterm.guard().wait_timeout(EXIT_TIMEOUT);
    let path = sipterm.dir().join("config.toml").display().to_string();
    let stderr = sipterm.stderr_text();
    assert!(
        status.is_some(),
        "sipterm kept running with a broken config; stderr: {stderr}"
    );
    (status.and_then(|s| s.code()), stderr, path)
}

#[test]
fn ready_reports_the_real_port() {
    let sipterm = Headless::spawn("sipterm", &HeadlessOptions::default()).expect("sipterm ready");
    let listen = sipterm.addr();
    println!("ready: listen = {listen}");
    assert_eq!(listen.ip().to_string(), "127.0.0.1");
    assert_ne!(listen.port(), 0, "ready must name the port really bound");
    // The port is real: something answers SIP there, over UDP and over TCP.
    assert_answers_options(&sipterm, "the port from ready");
    TcpStream::connect_timeout(&listen, Duration::from_secs(2))
        .expect("TCP on the same port as UDP");
}

#[test]
fn broken_config_exits_2_naming_file_line_column() {
    // Line 3, column 9: a value is missing after `=`.
    let (code, stderr, path) = refused_config("[sip]\nlisten = \"127.0.0.1:0\"\nt1_ms = \n");
    println!("stderr: {stderr}");
    assert_eq!(code, Some(2), "exit code; stderr: {stderr}");
    assert!(
        stderr.contains(&format!("{path}:3:")),
        "stderr must say FILE:LINE:COLUMN ({path}:3:…): {stderr}"
    );
    let after = stderr
        .split(&format!("{path}:3:"))
        .nth(1)
        .unwrap_or_default();
    let column: String = after.chars().take_while(char::is_ascii_digit).collect();
    assert!(
        column.parse::<u32>().is_ok_and(|c| c >= 1),
        "a column number follows the line: {stderr}"
    );
}

#[test]
fn unknown_key_is_named_with_its_position() {
    let config = "[sip]\nlisten = \"127.0.0.1:0\"\n\n[[account]]\nname = \"alice\"\nuri = \"sip:alice@sipterm.test\"\npasword = \"secret\"\n";
    let (code, stderr, path) = refused_config(config);
    println!("stderr: {stderr}");
    assert_eq!(code, Some(2), "exit code; stderr: {stderr}");
    assert!(
        stderr.contains("pasword"),
        "the unknown key is named: {stderr}"
    );
    assert!(
        stderr.contains(&format!("{path}:7:")),
        "the key's line is given: {stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "the misspelt password's value is not echoed: {stderr}"
    );
}

#[test]
fn bad_commands_get_error_events_and_the_process_keeps_going() {
    let mut sipterm =
        Headless::spawn("sipterm", &HeadlessOptions::default()).expect("sipterm ready");
    // Each of these is a mistake; each must produce one error event, in order.
    let mistakes = [
        ("frobnicate", "frobnicate"),
        ("hangup two", "two"),
        ("dial", "usage"),
        ("dtmf 12x", "usage"),
        ("register now", "register"),
        // No call exists: the engine refuses, not the parser.
        ("hangup", "no call"),
        ("answer", "no call"),
        ("dtmf 5", "no call"),
        // The built-in local account has no registrar.
        ("register", "registrar"),
    ];
    for (line, needle) in mistakes {
        sipterm.send(line).expect("send a command");
        let event = sipterm
            .expect_event(
                &format!("an error for `{line}`"),
                |e| e["event"] == "error",
                EVENT_TIMEOUT,
            )
            .unwrap_or_else(|e| panic!("`{line}`: {e}"));
        let message = event["message"].as_str().unwrap_or_default();
        println!("{line:>14} -> {message}");
        assert!(
            message.to_lowercase().contains(needle),
            "`{line}`: error should mention {needle:?}: {message}"
        );
        assert!(
            sipterm.guard().try_exit_status().is_none(),
            "sipterm died after `{line}`"
        );
    }
    assert_answers_options(&sipterm, "after bad commands");
    let started = Instant::now();
    let status = sipterm.quit(EXIT_TIMEOUT).expect("quit ends sipterm");
    println!("quit took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(0));
}

#[test]
fn quit_ends_the_process_with_exit_0() {
    let mut sipterm =
        Headless::spawn("sipterm", &HeadlessOptions::default()).expect("sipterm ready");
    // One command answered first, so the stdin reader is surely blocked in its next read when
    // `quit` comes (that read once kept the process alive until stdin closed).
    sipterm.send("mute").expect("send");
    sipterm
        .expect_event(
            "an error for mute",
            |e| e["event"] == "error",
            EVENT_TIMEOUT,
        )
        .expect("mute without a call is an error");
    let started = Instant::now();
    let status = sipterm.quit(EXIT_TIMEOUT);
    let took = started.elapsed();
    println!("quit -> exit in {took:?}");
    let status = status.expect("sipterm must end within 5 s of `quit`");
    assert_eq!(status.code(), Some(0));
    // Nothing but JSON objects on stdout.
    for line in sipterm.stdout_text().lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
        assert!(value["event"].is_string(), "{line}");
    }
}

#[test]
fn stdin_eof_keeps_it_running_and_sigterm_ends_it_cleanly() {
    let mut sipterm =
        Headless::spawn("sipterm", &HeadlessOptions::default()).expect("sipterm ready");
    sipterm.guard().close_stdin();
    // Several probes spread over a second: it keeps serving after EOF.
    for round in 0..4 {
        assert_answers_options(&sipterm, &format!("probe {round} after stdin EOF"));
        assert!(
            sipterm.guard().try_exit_status().is_none(),
            "sipterm exited after stdin EOF"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let started = Instant::now();
    let pid = sipterm.guard().pid().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let status = sipterm
        .guard()
        .wait_timeout(EXIT_TIMEOUT)
        .expect("SIGTERM must end sipterm within 5 s");
    println!("SIGTERM -> exit {status} in {:?}", started.elapsed());
    assert_eq!(status.code(), Some(0), "a clean exit, not death by signal");
}

#[test]
fn junk_datagrams_and_streams_do_not_kill_it() {
    let mut sipterm =
        Headless::spawn("sipterm", &HeadlessOptions::default()).expect("sipterm ready");
    let target = sipterm.addr();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // Deterministic pseudo-random junk.
    let mut state: u32 = 0x1234_5678;
    let mut junk = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    };
    socket.send_to(&junk(512), target).expect("send garbage");
    socket
        .send_to(b"INVITE sip:x SIP/2.0\r\nVia: \r\n\r\n", target)
        .expect("send a stub");
    // ~1 MB of junk in maximum-size UDP datagrams.
    let max_datagram = 65_507;
    let mut sent = 0usize;
    for _ in 0..16 {
        socket
            .send_to(&junk(max_datagram), target)
            .expect("send a large datagram");
        sent += max_datagram;
    }
    // A header section that never ends, as big as a datagram gets.
    let mut endless = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n".to_vec();
    while endless.len() < max_datagram - 40 {
        endless.extend_from_slice(b"X-Junk: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    socket.send_to(&endless, target).expect("send endless");
    sent += endless.len();
    // And 1 MB of junk down a TCP connection.
    let mut tcp = TcpStream::connect_timeout(&target, Duration::from_secs(2)).expect("TCP");
    tcp.set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut tcp_sent = 0usize;
    for _ in 0..16 {
        match tcp.write_all(&junk(65_536)) {
            Ok(()) => tcp_sent += 65_536,
            // sipterm may close a connection that makes no sense: fine.
            Err(_) => break,
        }
    }
    println!("sent {sent} bytes of junk over UDP, {tcp_sent} over TCP");
    drop(tcp);
    assert!(
        sipterm.guard().try_exit_status().is_none(),
        "sipterm died of junk"
    );
    assert_answers_options(&sipterm, "after junk");
    // Junk never produces a response to the junk's sender beyond maybe a 400.
    let replies = socket.set_read_timeout(Some(Duration::from_millis(300)));
    assert!(replies.is_ok());
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned();
        assert!(
            text.starts_with("SIP/2.0 4"),
            "junk got a non-error answer: {text}"
        );
    }
    let status = sipterm.quit(EXIT_TIMEOUT).expect("quit");
    assert_eq!(status.code(), Some(0));
    // stdout stayed one JSON object per line through all that.
    for line in sipterm.stdout_text().lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "non-JSON stdout line: {line:.200}"
        );
    }
}

/// A registrar in the test: 401 challenge, then 200 to whatever comes back; the unregister
/// gets 200 too. Returns every REGISTER it received.
fn tiny_registrar(socket: UdpSocket, until: Instant) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        if socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_err()
        {
            break;
        }
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            break;
        };
        let text = String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned();
        if !text.starts_with("REGISTER ") {
            continue;
        }
        let copy: Vec<&str> = text
            .split("\r\n")
            .filter(|l| {
                let name = l
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"]
                    .contains(&name.as_str())
            })
            .collect();
        let authorized = text.contains("\r\nAuthorization:");
        let mut reply = if authorized {
            "SIP/2.0 200 OK\r\n".to_owned()
        } else {
            "SIP/2.0 401 Unauthorized\r\n".to_owned()
        };
        for line in copy {
            let lower = line.to_ascii_lowercase();
            if (lower.starts_with("to:") || lower.starts_with("t:")) && !lower.contains("tag=") {
                reply.push_str(&format!("{line};tag=reg1\r\n"));
            } else {
                reply.push_str(line);
                reply.push_str("\r\n");
            }
        }
        if authorized {
            reply.push_str("Expires: 600\r\n");
        } else {
            reply.push_str(
                "WWW-Authenticate: Digest realm=\"sipterm.test\", nonce=\"n0nce1\", qop=\"auth\", algorithm=MD5\r\n",
            );
        }
        reply.push_str("Content-Length: 0\r\n\r\n");
        let _ = socket.send_to(reply.as_bytes(), from);
        let unregister = text.contains("Expires: 0\r\n") || text.contains(";expires=0");
        seen.push(text);
        if authorized && unregister {
            break;
        }
    }
    seen
}

#[test]
fn the_password_never_appears_in_events_stderr_or_the_log() {
    const PASSWORD: &str = "Zq7-unguessable-Pw";
    let registrar_socket = UdpSocket::bind("127.0.0.1:0").expect("bind registrar");
    let registrar: SocketAddr = registrar_socket.local_addr().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(20);
    let registrar_thread = std::thread::spawn(move || tiny_registrar(registrar_socket, deadline));
    let config = config_with_account(
        "",
        &format!("password = \"{PASSWORD}\"\nregistrar = \"sip:{registrar}\"\nexpires = 600\n"),
    );
    let mut sipterm = Headless::spawn("sipterm", &HeadlessOptions::with_config(config).arg("-v"))
        .expect("sipterm ready");
    sipterm
        .expect_event(
            "registered",
            |e| e["event"] == "registration" && e["state"] == "registered",
            EVENT_TIMEOUT,
        )
        .expect("registration with the test registrar");
    let status = sipterm.quit(EXIT_TIMEOUT).expect("quit");
    assert_eq!(status.code(), Some(0));
    let registers = registrar_thread.join().expect("registrar thread");
    println!("the registrar got {} REGISTERs", registers.len());
    assert!(
        registers
            .iter()
            .any(|r| r.contains("\r\nAuthorization: Digest ")),
        "the password was used: a REGISTER carried digest credentials"
    );

    let stdout = sipterm.stdout_text();
    let stderr = sipterm.stderr_text();
    let log_path = stderr
        .lines()
        .find_map(|l| l.strip_prefix("sipterm: logging to "))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| sipterm.log_file());
    let log = std::fs::read_to_string(&log_path)
        .unwrap_or_else(|e| panic!("log file {}: {e}", log_path.display()));
    println!(
        "stdout {} bytes, stderr {} bytes, log {} bytes ({})",
        stdout.len(),
        stderr.len(),
        log.len(),
        log_path.display()
    );
    assert!(!log.is_empty(), "-v writes a log");
    for (what, text) in [("stdout", &stdout), ("stderr", &stderr), ("log", &log)] {
        assert!(
            !text.contains(PASSWORD),
            "the password leaked into {what}:\n{text}"
        );
    }
    // The JSON carries summaries only, never raw messages (no header lines, no digest).
    assert!(
        stdout.contains("\"summary\":\"REGISTER sip:"),
        "sip events are there: {stdout}"
    );
    for header in ["Authorization", "WWW-Authenticate", "response=", "nonce="] {
        assert!(
            !stdout.contains(header),
            "raw SIP ({header}) in the JSON events: {stdout}"
        );
    }
}
