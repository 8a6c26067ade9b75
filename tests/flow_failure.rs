//! Lost connections in virtual time (sans-IO user agent, no sockets):
//! - a transport error on the initial INVITE's transaction, which lives on ~32 s after the 2xx
//!   (RFC 6026 Accepted), must not end a call whose ACK was sent/received;
//! - RFC 5626 §4.4: when the flow (TCP/TLS connection) to the registrar fails, the
//!   registration refreshes at once, with back-off when flows keep dying; UDP has no flows.
//!
//! Run with `--nocapture` for the timelines.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::pair::*;
use common::sim::{self, reply, requests};
use sipterm::sdp::Codec;
use sipterm::sip::auth::Password;
use sipterm::sip::message::{Method, Request};
use sipterm::sip::registration::{FIRST_BACKOFF, FLOW_STABLE_AFTER, RegistrationState};
use sipterm::sip::transaction::{Destination, TimerConfig, TransportKind};
use sipterm::sip::ua::{AccountParams, CallState, Command, UaConfig, UaEvent, UserAgent};

const A_RTP: u16 = 40000;
const B_RTP: u16 = 40002;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn udp(s: &str) -> Destination {
    sim::udp(s)
}

fn tcp(s: &str) -> Destination {
    Destination {
        addr: addr(s),
        transport: TransportKind::Tcp,
    }
}

fn has_state(node: &Node, state: CallState) -> bool {
    node.call_states().contains(&state)
}

/// alice dials bob, bob answers, the ACK arrives; both confirmed.
fn established() -> Pair {
    let mut pair = Pair::new();
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
        &p.b,
        CallState::Incoming
    )));
    pair.answer(Side::B, B_RTP);
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| p.a.last_state()
            == Some(CallState::Confirmed)
            && p.b.last_state() == Some(CallState::Confirmed)),
        "call not confirmed:\n{pair:?}"
    );
    assert_eq!(
        pair.wire.find(|r| r.is_request(&Method::Ack)).len(),
        1,
        "{pair:?}"
    );
    pair.run_secs(0.5);
    pair
}

/// Both INVITE transactions are still in RFC 6026 Accepted (0.5 s after the 200; they last
/// 64*T1 = 32 s) when the transport to the other side fails on both ends. Neither call ends,
/// not even after the transactions would have timed out, and the dialog still works: alice
/// hangs up with a BYE that bob answers. (Was: both ended at once, "503 transport error", with
/// no BYE, although nobody hung up.)
#[test]
fn transport_error_after_the_ack_keeps_the_call() {
    let mut pair = established();
    let now = pair.now;
    // bob's INVITE server transaction (it sent the 200 to alice), alice's client one.
    pair.b.ua.handle_transport_error(udp(A_ADDR), now);
    pair.a.ua.handle_transport_error(udp(B_ADDR), now);
    pair.run_secs(40.0);
    for node in [&pair.a, &pair.b] {
        assert_eq!(
            node.last_state(),
            Some(CallState::Confirmed),
            "{} lost the call: {:?}",
            node.name,
            node.call_codes()
        );
        assert!(node.errors().is_empty(), "{:?}", node.errors());
    }
    assert!(pair.wire.find(|r| r.is_request(&Method::Bye)).is_empty());

    pair.command(Side::A, Command::Hangup { call: None });
    pair.run_secs(2.0);
    assert_eq!(pair.a.last_state(), Some(CallState::Terminated));
    assert_eq!(
        pair.b.last_state(),
        Some(CallState::Terminated),
        "bob never heard the BYE"
    );
    assert_eq!(
        pair.wire.find(|r| r.is_response(200, &Method::Bye)).len(),
        1
    );
}

/// Before the ACK the dialog is not confirmed: a transport error on the INVITE server
/// transaction (its 200 could not be delivered) still ends bob's call.
#[test]
fn transport_error_before_the_ack_ends_the_call() {
    let mut pair = Pair::new();
    pair.wire.drop_when(|r| r.is_request(&Method::Ack));
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
        &p.b,
        CallState::Incoming
    )));
    pair.answer(Side::B, B_RTP);
    pair.run_secs(0.1);
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed));
    let now = pair.now;
    pair.b.ua.handle_transport_error(udp(A_ADDR), now);
    pair.run_secs(0.1);
    let codes = pair.b.call_codes();
    println!("bob: {codes:?}");
    assert_eq!(codes.last(), Some(&(CallState::Terminated, Some(503))));
}

/// A caller at `VIA` (where responses go: its connection) whose Contact is `CONTACT` (where
/// in-dialog requests go) calls bob and ACKs. Bob holds: the re-INVITE goes to `CONTACT` and
/// is in flight when the transport to `VIA` fails, which fails bob's INVITE server transaction.
/// That failure is not the re-INVITE's: no BYE, and the re-INVITE's 200 puts the call on hold.
/// (Was: any INVITE failure while a re-INVITE was in flight counted as the re-INVITE's, and
/// bob hung up: the "Hung up" a closed TLS connection caused in tests/tls_hardening.rs.)
#[test]
fn invite_server_transaction_failure_is_not_the_reinvites() {
    const VIA: &str = "127.0.0.1:5070";
    const CONTACT: &str = "127.0.0.1:5072";
    let mut pair = Pair::new();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40010 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let head = |method: &str, cseq: u32, branch: &str, to: &str| {
        format!(
            "{method} sip:bob@{B_ADDR} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {VIA};branch=z9hG4bK-{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:carol@{VIA}>;tag=carol1\r\n\
             To: {to}\r\n\
             Call-ID: split-1@127.0.0.1\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:carol@{CONTACT}>\r\n"
        )
    };
    let invite = format!(
        "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        head("INVITE", 1, "inv", &format!("<sip:bob@{B_ADDR}>")),
        sdp.len()
    );
    pair.inject(addr(VIA), addr(B_ADDR), invite.as_bytes());
    assert!(has_state(&pair.b, CallState::Incoming), "{pair:?}");
    pair.answer(Side::B, B_RTP);
    let ok = pair
        .wire
        .unrouted
        .iter()
        .find(|r| r.is_response(200, &Method::Invite))
        .cloned()
        .expect("bob's 200");
    assert_eq!(ok.to, addr(VIA));
    let to = ok.msg.headers().get("To").expect("To").to_string();
    let ack = format!("{}Content-Length: 0\r\n\r\n", head("ACK", 1, "ack", &to));
    pair.inject(addr(VIA), addr(B_ADDR), ack.as_bytes());
    pair.run_secs(0.5);

    pair.command(Side::B, Command::Hold { call: None });
    let reinvite = pair
        .wire
        .unrouted
        .iter()
        .rev()
        .find(|r| r.is_request(&Method::Invite))
        .cloned()
        .expect("bob's re-INVITE");
    assert_eq!(reinvite.to, addr(CONTACT));
    let now = pair.now;
    pair.b.ua.handle_transport_error(udp(VIA), now);
    pair.run_secs(0.1);
    assert!(
        pair.wire.find(|r| r.is_request(&Method::Bye)).is_empty(),
        "bob hung up: {:?}",
        pair.b.call_codes()
    );
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed));

    // carol answers the re-INVITE: the call is held.
    let request = reinvite.request().expect("request").clone();
    let answer_sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 40010 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\n";
    let mut ok = String::from_utf8(reply(
        &request,
        200,
        "OK",
        &[
            ("Contact", format!("<sip:carol@{CONTACT}>")),
            ("Content-Type", "application/sdp".into()),
        ],
    ))
    .expect("utf-8");
    // `reply` ends with an empty body; put the SDP in.
    ok = ok.replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{answer_sdp}", answer_sdp.len()),
    );
    pair.inject(addr(CONTACT), addr(B_ADDR), ok.as_bytes());
    pair.run_secs(0.5);
    println!("bob: {:?}", pair.b.call_codes());
    assert_eq!(pair.b.last_state(), Some(CallState::Held), "{pair:?}");
    assert!(pair.wire.find(|r| r.is_request(&Method::Bye)).is_empty());
}

// ------------------------------------------------------------------ RFC 5626 flow recovery

const LOCAL: &str = "127.0.0.1:5062";
const REGISTRAR: &str = "127.0.0.1:5060";

/// A UA registering over `transport` with 127.0.0.1:5060 as registrar and next hop.
fn registering_ua(transport: TransportKind) -> UserAgent {
    let aor: sipterm::sip::uri::Uri = "sip:alice@127.0.0.1".parse().expect("aor");
    let registrar = match transport {
        TransportKind::Tcp => format!("sip:{REGISTRAR};transport=tcp"),
        _ => format!("sip:{REGISTRAR}"),
    };
    UserAgent::new(UaConfig {
        account: AccountParams {
            name: "alice".into(),
            auth_username: "alice".into(),
            aor,
            display_name: None,
            password: Some(Password::new("secret")),
            registrar: Some(registrar.parse().expect("registrar")),
            outbound_proxy: None,
            expires: 600,
            transport,
        },
        local: LOCAL.parse().expect("local"),
        user_agent: "sipterm-test".into(),
        timers: TimerConfig::default(),
        seed: 7.into(),
        codecs: vec![Codec::Pcmu],
        busy_when_in_call: false,
        srtp: sipterm::sdp::SrtpPolicy::Off,
        calls: Default::default(),
        messaging: Default::default(),
        call_numbers: Default::default(),
    })
}

fn registers(sent: &[(Destination, Request)]) -> Vec<(Destination, Request)> {
    sent.iter()
        .filter(|(_, r)| r.method == Method::Register)
        .cloned()
        .collect()
}

/// Answers `register` with 200 (Expires: 600) from the registrar.
fn grant(ua: &mut UserAgent, register: &Request, now: Instant) {
    let ok = reply(register, 200, "OK", &[("Expires", "600".into())]);
    ua.handle_datagram(tcp(REGISTRAR), &ok, now);
}

fn registered_events(ua: &mut UserAgent) -> usize {
    sim::events(ua)
        .iter()
        .filter(|e| {
            matches!(
                e,
                UaEvent::Registration {
                    state: RegistrationState::Registered,
                    ..
                }
            )
        })
        .count()
}

/// Registered for 600 s over TCP; the connection to the registrar closes. A new REGISTER goes
/// out at once (not 540 s later at the refresh); its 200 keeps the binding. Flows that keep
/// dying soon after re-registering wait 30 s, then 60 s; a flow that lived longer than
/// FLOW_STABLE_AFTER re-registers at once again. Failures of other connections (a call's
/// peer) change nothing.
#[test]
fn tcp_flow_failure_re_registers_at_once_then_backs_off() {
    let start = Instant::now();
    let mut now = start;
    let mut ua = registering_ua(TransportKind::Tcp);
    ua.handle_command(Command::Register, now);
    let first = registers(&requests(&mut ua));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, tcp(REGISTRAR));
    grant(&mut ua, &first[0].1, now);
    assert_eq!(registered_events(&mut ua), 1);

    // Another connection (say a call's peer) closing is not the registrar's flow.
    now += Duration::from_secs(5);
    ua.handle_flow_failed(tcp("127.0.0.1:5099"), now);
    assert!(registers(&requests(&mut ua)).is_empty());

    let mut timeline = Vec::new();
    let mut last = first[0].1.clone();
    // (time of the failure after the last grant, expected wait before the REGISTER)
    let plan = [
        (Duration::from_secs(1), Duration::ZERO),
        (Duration::from_secs(1), FIRST_BACKOFF),
        (Duration::from_secs(1), FIRST_BACKOFF * 2),
        (FLOW_STABLE_AFTER + Duration::from_secs(1), Duration::ZERO),
    ];
    for (after, wait) in plan {
        now += after;
        let failed_at = now;
        ua.handle_flow_failed(tcp(REGISTRAR), now);
        let mut sent = registers(&requests(&mut ua));
        if wait > Duration::ZERO {
            assert!(sent.is_empty(), "re-registered at once, want {wait:?}");
            // Nothing before the back-off is over...
            let out = sim::run_until(
                &mut ua,
                &mut now,
                failed_at + wait - Duration::from_millis(10),
            );
            assert!(
                out.iter()
                    .all(|(_, m)| !matches!(m, sipterm::sip::message::Message::Request(_))),
                "sent during the back-off"
            );
            // ...then the REGISTER.
            let out = sim::run_until(
                &mut ua,
                &mut now,
                failed_at + wait + Duration::from_millis(10),
            );
            sent = out
                .into_iter()
                .filter_map(|(d, m)| match m {
                    sipterm::sip::message::Message::Request(r) if r.method == Method::Register => {
                        Some((d, r))
                    }
                    _ => None,
                })
                .collect();
        }
        assert_eq!(sent.len(), 1, "one REGISTER after the flow failed");
        let (dest, register) = &sent[0];
        assert_eq!(*dest, tcp(REGISTRAR));
        let cseq = |r: &Request| r.headers.cseq().map(|c| c.seq).expect("CSeq");
        assert!(cseq(register) > cseq(&last));
        assert_eq!(register.headers.get("Expires"), Some("600"));
        timeline.push(format!(
            "flow failed at {:.0} s, REGISTER at {:.2} s",
            (failed_at - start).as_secs_f64(),
            (now - start).as_secs_f64()
        ));
        grant(&mut ua, register, now);
        assert_eq!(registered_events(&mut ua), 1);
        last = register.clone();
    }
    for line in &timeline {
        println!("{line}");
    }
    assert_eq!(ua.registration_state(), Some(RegistrationState::Registered));
}

/// While a REGISTER is in flight, a flow failure adds no second one (one at a time); a
/// registration that failed keeps its back-off.
#[test]
fn flow_failure_while_registering_sends_nothing_more() {
    let mut now = Instant::now();
    let mut ua = registering_ua(TransportKind::Tcp);
    ua.handle_command(Command::Register, now);
    assert_eq!(registers(&requests(&mut ua)).len(), 1);
    now += Duration::from_millis(100);
    ua.handle_flow_failed(tcp(REGISTRAR), now);
    assert!(registers(&requests(&mut ua)).is_empty());
}

/// UDP has no flows: a "failed" UDP next hop does not trigger a REGISTER.
#[test]
fn udp_is_unaffected() {
    let mut now = Instant::now();
    let mut ua = registering_ua(TransportKind::Udp);
    ua.handle_command(Command::Register, now);
    let first = registers(&requests(&mut ua));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, udp(REGISTRAR));
    let ok = reply(&first[0].1, 200, "OK", &[("Expires", "600".into())]);
    ua.handle_datagram(udp(REGISTRAR), &ok, now);
    assert_eq!(registered_events(&mut ua), 1);
    now += Duration::from_secs(1);
    ua.handle_flow_failed(udp(REGISTRAR), now);
    assert!(registers(&requests(&mut ua)).is_empty());
    // The next REGISTER is the refresh, 60 s before the 600 s run out.
    let until = now + Duration::from_secs(530);
    let out = sim::run_until(&mut ua, &mut now, until);
    assert!(
        out.iter()
            .all(|(_, m)| !matches!(m, sipterm::sip::message::Message::Request(_))),
        "{out:?}"
    );
}
