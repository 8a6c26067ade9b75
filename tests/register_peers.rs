//! Registration of a headless sipterm against real registrars (sipp, Kamailio), a dead one,
//! OPTIONS answered with rport, and registration over TCP.
//!
//! These tests need sipp and kamailio (the Makefile installs them); without them they fail.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::headless::{Headless, HeadlessOptions, config_with_account, recv_text};
use common::peers::{Kamailio, Sipp};
use common::ports::free_udp_port;
use serde_json::Value;

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

fn is_registration(state: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["event"] == "registration" && e["state"] == state
}

fn is_final_registration(e: &Value) -> bool {
    e["event"] == "registration" && (e["state"] == "registered" || e["state"] == "failed")
}

/// The REGISTERs sipterm reported sending: (peer, summary).
fn registers_sent(sipterm: &Headless) -> Vec<(String, String)> {
    sipterm
        .sip_events("out")
        .into_iter()
        .filter(|e| {
            e["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("REGISTER "))
        })
        .map(|e| {
            (
                e["peer"].as_str().unwrap_or_default().to_owned(),
                e["summary"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Starts Kamailio on a free port, retrying when the port was taken meanwhile.
fn start_kamailio(users: &[(&str, &str)]) -> Kamailio {
    let mut last = None;
    for _ in 0..3 {
        let port = free_udp_port().expect("free port");
        match Kamailio::start(users, port) {
            Ok(k) => return k,
            Err(e) => last = Some(e),
        }
    }
    panic!("kamailio did not start: {last:?}");
}

#[test]
fn registers_to_sipp_through_the_outbound_proxy_and_unregisters_on_quit() {
    let port = free_udp_port().expect("free port");
    let mut sipp = Sipp::uas(&Sipp::scenario("uas_register_401.xml"), port, &[]).expect("sipp");
    let proxy = sipp.addr();
    let config = config_with_account(
        "",
        &format!(
            "password = \"secret\"\nregistrar = \"sip:sipterm.test\"\n\
             outbound_proxy = \"sip:{proxy}\"\nexpires = 600\n"
        ),
    );
    let mut sipterm =
        Headless::spawn("sipterm", &HeadlessOptions::with_config(config)).expect("sipterm");
    let started = Instant::now();
    let event = sipterm
        .expect_event(
            "a final registration state",
            is_final_registration,
            EVENT_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}\nsipp: {}", sipp.log()));
    println!("registered in {:?}: {event}", started.elapsed());
    assert_eq!(
        event["state"],
        "registered",
        "{event}\nsipp: {}",
        sipp.log()
    );
    assert_eq!(event["code"], 200);
    assert_eq!(event["account"], "alice");

    let registers = registers_sent(&sipterm);
    println!("REGISTERs: {registers:?}");
    assert_eq!(registers.len(), 2, "one challenged, one with credentials");
    for (peer, summary) in &registers {
        assert_eq!(summary, "REGISTER sip:sipterm.test SIP/2.0");
        assert_eq!(
            peer,
            &proxy.to_string(),
            "the REGISTER goes to the outbound proxy, not to a lookup of sipterm.test"
        );
    }

    let started = Instant::now();
    let status = sipterm.quit(EXIT_TIMEOUT).expect("quit must end sipterm");
    println!("quit (with unregister) took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(0));
    assert!(
        sipterm
            .history()
            .iter()
            .any(|e| is_registration("unregistered")(e) && e["code"] == 200),
        "the unregister was answered 200: {:?}",
        sipterm.history()
    );
    sipp.wait_success(Duration::from_secs(10))
        .expect("sipp saw the challenge answered and the Expires: 0 unregister");
    let messages = sipp.messages();
    assert!(
        messages.contains("Route: <sip:127.0.0.1:"),
        "the REGISTER carried the preloaded route to the outbound proxy"
    );
}

#[test]
fn kamailio_right_password_registers() {
    let kamailio = start_kamailio(&[("alice", "secret")]);
    let registrar = kamailio.addr();
    let config = config_with_account(
        "",
        &format!("password = \"secret\"\nregistrar = \"sip:{registrar}\"\nexpires = 120\n"),
    );
    let mut sipterm =
        Headless::spawn("sipterm", &HeadlessOptions::with_config(config)).expect("sipterm");
    let event = sipterm
        .expect_event(
            "a final registration state",
            is_final_registration,
            EVENT_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}\nkamailio: {}", kamailio.log()));
    println!("kamailio: {event}");
    assert_eq!(event["state"], "registered", "{event}\n{}", kamailio.log());
    assert_eq!(event["code"], 200);
    assert_eq!(event["expires"], 120, "Kamailio grants what was asked");
    let status = sipterm.quit(EXIT_TIMEOUT).expect("quit");
    assert_eq!(status.code(), Some(0));
    assert!(
        sipterm
            .history()
            .iter()
            .any(|e| is_registration("unregistered")(e) && e["code"] == 200),
        "the binding was removed on quit: {:?}",
        sipterm.history()
    );
}

#[test]
fn kamailio_wrong_password_fails_without_a_retry_storm() {
    let kamailio = start_kamailio(&[("alice", "secret")]);
    let registrar = kamailio.addr();
    let config = config_with_account(
        "",
        &format!("password = \"wrong\"\nregistrar = \"sip:{registrar}\"\n"),
    );
    let mut sipterm =
        Headless::spawn("sipterm", &HeadlessOptions::with_config(config)).expect("sipterm");
    let started = Instant::now();
    let event = sipterm
        .expect_event(
            "a final registration state",
            is_final_registration,
            EVENT_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}\nkamailio: {}", kamailio.log()));
    println!("wrong password -> {event} after {:?}", started.elapsed());
    assert_eq!(event["state"], "failed", "{event}");
    let code = event["code"].as_u64();
    assert!(
        matches!(code, Some(401 | 403)),
        "failed with 401 or 403: {event}"
    );
    // Watch the next 5 s: at most 2 REGISTERs in total (the first and the one with the
    // wrong credentials), no retry storm.
    let later = sipterm.collect_for(Duration::from_secs(5));
    let registers = registers_sent(&sipterm);
    println!(
        "REGISTERs sent in {:?}: {} ({} events in the 5 s window)",
        started.elapsed(),
        registers.len(),
        later.len()
    );
    assert!(
        registers.len() <= 2,
        "retry storm: {} REGISTERs: {registers:?}",
        registers.len()
    );
    assert!(
        !later.iter().any(|e| is_registration("registered")(e)),
        "never registered with a wrong password"
    );
}

#[test]
fn dead_registrar_fails_with_408_after_timer_f() {
    // A registrar that receives and never answers.
    let dead = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead_addr: SocketAddr = dead.local_addr().expect("addr");
    let config = config_with_account(
        "t1_ms = 50",
        &format!("password = \"secret\"\nregistrar = \"sip:{dead_addr}\"\n"),
    );
    let listener = std::thread::spawn(move || {
        let mut arrivals = Vec::new();
        let until = Instant::now() + Duration::from_secs(12);
        while Instant::now() < until {
            match recv_text(&dead, Duration::from_millis(200)) {
                Ok(text) if text.starts_with("REGISTER ") => {
                    arrivals.push((Instant::now(), text));
                }
                Ok(_) => {}
                Err(_) if arrivals.len() >= 7 => {
                    // Quiet after the expected 7 sends: give late ones a moment, then stop.
                    if arrivals
                        .last()
                        .is_some_and(|(t, _)| t.elapsed() > Duration::from_secs(2))
                    {
                        break;
                    }
                }
                Err(_) => {}
            }
        }
        arrivals
    });
    let mut sipterm =
        Headless::spawn("sipterm", &HeadlessOptions::with_config(config)).expect("sipterm");
    let event = sipterm
        .expect_event(
            "a final registration state",
            is_final_registration,
            Duration::from_secs(15),
        )
        .expect("registration must fail by itself");
    let failed_at = Instant::now();
    println!("dead registrar -> {event}");
    assert_eq!(event["state"], "failed");
    assert_eq!(event["code"], 408);
    let arrivals = listener.join().expect("listener");
    let first = arrivals.first().map(|(t, _)| *t).expect("some REGISTER");
    let gaps: Vec<u128> = arrivals
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).as_millis())
        .collect();
    let to_failure = failed_at.saturating_duration_since(first);
    println!(
        "{} REGISTERs, gaps {gaps:?} ms, failed {to_failure:?} after the first",
        arrivals.len()
    );
    // One transaction: every transmission is the same request (same branch).
    let branch = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("Via:"))
            .and_then(|l| l.split("branch=").nth(1))
            .map(|b| b.split(';').next().unwrap_or(b).to_owned())
    };
    let first_branch = branch(&arrivals[0].1);
    assert!(
        arrivals.iter().all(|(_, t)| branch(t) == first_branch),
        "retransmissions keep the branch"
    );
    // T1 = 50 ms: sends at 0, 50, 150, 350, 750, 1550, 3150 ms; Timer F at 64*T1 = 3200 ms.
    assert_eq!(
        arrivals.len(),
        7,
        "initial + 6 retransmissions, gaps {gaps:?}"
    );
    // Offsets from the first send, so one late timer does not shift the verdict on the next.
    let offsets: Vec<u128> = arrivals
        .iter()
        .map(|(t, _)| (*t - first).as_millis())
        .collect();
    let nominal = [0u128, 50, 150, 350, 750, 1550, 3150];
    for (offset, want) in offsets.iter().zip(nominal) {
        // A timer never fires early; a busy machine may fire it somewhat late, but a schedule
        // without doubling (e.g. every 500 ms) lands far outside these windows.
        let slack = (want / 2).max(250);
        assert!(
            *offset + 5 >= want && *offset <= want + slack,
            "send at {offset} ms, expected {want} ms (T1 doubling): offsets {offsets:?}"
        );
    }
    assert!(
        to_failure >= Duration::from_millis(3150),
        "408 before Timer F: {to_failure:?}"
    );
    assert!(
        to_failure < Duration::from_secs(10),
        "408 long after Timer F (64*T1 = 3.2 s): {to_failure:?}"
    );
}

#[test]
fn options_gets_200_with_capabilities_sent_to_the_source_port() {
    let sipterm = Headless::spawn("sipterm", &HeadlessOptions::default()).expect("sipterm");
    let target = sipterm.addr();
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let local = socket.local_addr().expect("addr");
    // The Via names port 9 (discard); with rport the answer must come to our real port.
    let request = format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-opt-{port};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@127.0.0.1>;tag=opt{port}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: opt-{port}@127.0.0.1\r\n\
         CSeq: 7 OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n",
        port = local.port()
    );
    let sent = Instant::now();
    socket.send_to(request.as_bytes(), target).expect("send");
    let response = recv_text(&socket, Duration::from_secs(5))
        .expect("the response comes back to the source port (rport)");
    println!("OPTIONS round trip {:?}:\n{response}", sent.elapsed());
    let header = |name: &str| -> Option<String> {
        response.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    assert!(response.starts_with("SIP/2.0 200 "), "{response}");
    let allow = header("Allow").expect("Allow");
    for method in ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"] {
        assert!(allow.contains(method), "Allow lacks {method}: {allow}");
    }
    let accept = header("Accept").expect("Accept");
    assert!(accept.contains("application/sdp"), "{accept}");
    assert!(header("Supported").is_some(), "Supported is present");
    let via = header("Via").expect("Via");
    assert!(
        via.contains(&format!("rport={}", local.port())),
        "rport filled in with our port: {via}"
    );
    assert_eq!(header("CSeq").as_deref(), Some("7 OPTIONS"));
    assert!(header("To").is_some_and(|t| t.contains("tag=")), "To tag");
}

/// TCP connections from `local_port` to `remote_port` on 127.0.0.1 that are ESTABLISHED.
fn tcp_established(local_port: u16, remote_port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let port_of = |f: &str| {
            f.split_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
        };
        fields.len() > 3
            && fields[3] == "01"
            && port_of(fields[2]) == Some(remote_port)
            && (port_of(fields[1]) == Some(local_port) || local_port == 0)
    })
}

#[test]
fn registers_over_tcp_to_kamailio() {
    let kamailio = start_kamailio(&[("alice", "secret")]);
    let registrar = kamailio.addr();
    let config = config_with_account(
        "",
        &format!(
            "password = \"secret\"\nregistrar = \"sip:{registrar}\"\ntransport = \"tcp\"\nexpires = 120\n"
        ),
    );
    let mut sipterm =
        Headless::spawn("sipterm", &HeadlessOptions::with_config(config)).expect("sipterm");
    let event = sipterm
        .expect_event(
            "a final registration state",
            is_final_registration,
            EVENT_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}\nkamailio: {}", kamailio.log()));
    println!("TCP registration: {event}");
    assert_eq!(event["state"], "registered", "{event}\n{}", kamailio.log());
    assert_eq!(event["code"], 200);
    // It really went over TCP: a connection to Kamailio's port is up.
    assert!(
        tcp_established(0, registrar.port()),
        "no TCP connection to Kamailio"
    );
    let status = sipterm.quit(EXIT_TIMEOUT).expect("quit");
    assert_eq!(status.code(), Some(0));
    assert!(
        sipterm
            .history()
            .iter()
            .any(|e| is_registration("unregistered")(e) && e["code"] == 200),
        "the binding was removed over TCP too: {:?}",
        sipterm.history()
    );
}
