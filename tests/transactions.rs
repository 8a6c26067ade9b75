//! RFC 3261 §17 transaction timer paths and matching, on virtual time: a base `Instant` plus
//! offsets, advanced to each `poll_timeout`. No sleeps, no sockets.

use std::time::{Duration, Instant};

use sipterm::sip::message::{Message, Method, Request, Response};
use sipterm::sip::transaction::{
    Destination, Routed, Timer, TimerConfig, TimerTable, TransactionLayer, TransportKind, TsxEvent,
    TsxId,
};
use sipterm::sip::uri::Uri;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn peer(transport: TransportKind) -> Destination {
    Destination {
        addr: "127.0.0.1:5060".parse().expect("literal address"),
        transport,
    }
}

fn udp() -> Destination {
    peer(TransportKind::Udp)
}

fn tcp() -> Destination {
    peer(TransportKind::Tcp)
}

fn request(method: Method, branch: &str) -> Request {
    let mut request = Request::new(method.clone(), Uri::sip(Some("bob"), "biloxi.com", None));
    request.headers.push(
        "Via",
        format!("SIP/2.0/UDP pc33.atlanta.com;branch={branch}"),
    );
    request.headers.push("Max-Forwards", "70");
    request.headers.push("Route", "<sip:p1.example.com;lr>");
    request.headers.push("Route", "<sip:p2.example.com;lr>");
    request
        .headers
        .push("From", "Alice <sip:alice@atlanta.com>;tag=1928301774");
    request.headers.push("To", "Bob <sip:bob@biloxi.com>");
    request
        .headers
        .push("Call-ID", "a84b4c76e66710@pc33.atlanta.com");
    request.headers.push("CSeq", format!("314159 {method}"));
    request
        .headers
        .push("Contact", "<sip:alice@pc33.atlanta.com>");
    request
}

/// A response as the UAS would build it: Via list, From, To (tagged unless 100), Call-ID, CSeq.
fn response_to(request: &Request, code: u16) -> Response {
    let mut response = Response::new(code, sipterm::sip::message::reason_phrase(code));
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for value in request.headers.get_all(name) {
            let value = if name == "To" && code > 100 {
                format!("{value};tag=a6c85cf")
            } else {
                value.to_string()
            };
            response.headers.push(name, value);
        }
    }
    response
}

fn ack_for(invite: &Request, final_response: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    for name in ["Via", "From", "Call-ID"] {
        ack.headers
            .push(name, invite.headers.get(name).expect("test request header"));
    }
    ack.headers
        .push("To", final_response.headers.get("To").expect("test To"));
    ack.headers.push("CSeq", "314159 ACK");
    ack
}

fn transmits(layer: &mut TransactionLayer) -> Vec<Message> {
    std::iter::from_fn(|| layer.poll_transmit())
        .map(|t| t.message)
        .collect()
}

fn events(layer: &mut TransactionLayer) -> Vec<TsxEvent> {
    std::iter::from_fn(|| layer.poll_event()).collect()
}

/// Advances virtual time timer by timer up to `until`, recording when something was sent.
fn run_until(
    layer: &mut TransactionLayer,
    base: Instant,
    until: Duration,
) -> Vec<(Duration, Message)> {
    let mut sent = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at > base + until {
            break;
        }
        layer.handle_timeout(at);
        for message in transmits(layer) {
            sent.push((at - base, message));
        }
    }
    sent
}

fn instants(sent: &[(Duration, Message)]) -> Vec<Duration> {
    sent.iter().map(|(at, _)| *at).collect()
}

fn code_of(message: &Message) -> Option<u16> {
    match message {
        Message::Response(r) => Some(r.code),
        Message::Request(_) => None,
    }
}

fn method_of(message: &Message) -> Option<&Method> {
    match message {
        Message::Request(r) => Some(&r.method),
        Message::Response(_) => None,
    }
}

fn secs(list: &[f64]) -> Vec<Duration> {
    list.iter().map(|s| Duration::from_secs_f64(*s)).collect()
}

// ---------------------------------------------------------------- client INVITE

#[test]
fn invite_over_udp_is_retransmitted_at_doubling_intervals_until_timer_b() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let tsx = layer.send_request(request(Method::Invite, "z9hG4bKinv1"), udp(), base);
    assert_eq!(transmits(&mut layer).len(), 1, "sent at once");

    let sent = run_until(&mut layer, base, Duration::from_secs(60));
    // Timer A: T1, 2T1, 4T1, ... (RFC 3261 §17.1.1.2 does not cap INVITE at T2); B at 64*T1.
    assert_eq!(
        instants(&sent),
        secs(&[0.5, 1.5, 3.5, 7.5, 15.5, 31.5]),
        "INVITE retransmission instants"
    );
    assert!(
        sent.iter()
            .all(|(_, m)| method_of(m) == Some(&Method::Invite))
    );
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Timeout { tsx }, TsxEvent::Terminated { tsx }]
    );
    assert_eq!(layer.poll_timeout(), None);
    assert!(layer.request_of(tsx).is_none());
}

#[test]
fn timer_b_fires_at_64_t1_of_a_custom_t1() {
    let base = Instant::now();
    let config = TimerConfig {
        t1: ms(100),
        ..TimerConfig::default()
    };
    let mut layer = TransactionLayer::new(config);
    let tsx = layer.send_request(request(Method::Invite, "z9hG4bKinv2"), tcp(), base);
    transmits(&mut layer);
    assert_eq!(layer.poll_timeout(), Some(base + ms(6400)));
    layer.handle_timeout(base + ms(6399));
    assert!(events(&mut layer).is_empty());
    layer.handle_timeout(base + ms(6400));
    assert_eq!(events(&mut layer)[0], TsxEvent::Timeout { tsx });
}

#[test]
fn invite_over_reliable_transport_is_never_retransmitted() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let tsx = layer.send_request(request(Method::Invite, "z9hG4bKinv3"), tcp(), base);
    assert_eq!(transmits(&mut layer).len(), 1);
    let sent = run_until(&mut layer, base, Duration::from_secs(60));
    assert!(sent.is_empty(), "no retransmission over TCP: {sent:?}");
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Timeout { tsx }, TsxEvent::Terminated { tsx }]
    );
}

#[test]
fn provisional_stops_invite_retransmissions_and_timer_b() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let invite = request(Method::Invite, "z9hG4bKinv4");
    let tsx = layer.send_request(invite.clone(), udp(), base);
    transmits(&mut layer);
    let ringing = response_to(&invite, 180);
    assert_eq!(
        layer.handle_message(Message::Response(ringing.clone()), udp(), base + ms(200)),
        Routed::Client(tsx)
    );
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Response {
            tsx,
            response: ringing
        }]
    );
    let sent = run_until(&mut layer, base, Duration::from_secs(120));
    assert!(sent.is_empty());
    assert!(events(&mut layer).is_empty(), "no timeout in Proceeding");
    assert!(layer.request_of(tsx).is_some());
}

#[test]
fn non_2xx_final_is_acked_by_the_transaction_and_again_on_each_retransmission() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let invite = request(Method::Invite, "z9hG4bKinv5");
    let tsx = layer.send_request(invite.clone(), udp(), base);
    transmits(&mut layer);

    let mut busy = response_to(&invite, 486);
    // A proxy on the way added its own Via below ours: the ACK must carry only our top Via.
    busy.headers
        .push("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp");
    layer.handle_message(Message::Response(busy.clone()), udp(), base + ms(300));
    let sent = transmits(&mut layer);
    assert_eq!(sent.len(), 1);
    let Message::Request(ack) = &sent[0] else {
        panic!("expected the ACK, got {sent:?}");
    };
    assert_eq!(ack.method, Method::Ack);
    assert_eq!(ack.uri, invite.uri);
    assert_eq!(
        ack.headers.get_all("Via").collect::<Vec<_>>(),
        ["SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKinv5"]
    );
    assert_eq!(ack.headers.get("To"), busy.headers.get("To"));
    assert!(
        ack.headers
            .get("To")
            .is_some_and(|to| to.ends_with(";tag=a6c85cf"))
    );
    assert_eq!(ack.headers.get("From"), invite.headers.get("From"));
    assert_eq!(ack.headers.get("Call-ID"), invite.headers.get("Call-ID"));
    assert_eq!(ack.headers.get("CSeq"), Some("314159 ACK"));
    assert_eq!(
        ack.headers.get_all("Route").collect::<Vec<_>>(),
        ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    );
    assert!(!ack.headers.contains("Contact"));
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Response {
            tsx,
            response: busy.clone()
        }]
    );

    // Retransmitted 486 (our ACK was lost): ACK again, TU not told twice.
    assert_eq!(
        layer.handle_message(Message::Response(busy), udp(), base + ms(800)),
        Routed::Client(tsx)
    );
    assert_eq!(transmits(&mut layer), [Message::Request(ack.clone())]);
    assert!(events(&mut layer).is_empty());

    // Timer D: 32 s after the final.
    assert_eq!(
        layer.poll_timeout(),
        Some(base + ms(300) + Duration::from_secs(32))
    );
    run_until(&mut layer, base, Duration::from_secs(40));
    assert_eq!(events(&mut layer), [TsxEvent::Terminated { tsx }]);
}

#[test]
fn non_2xx_final_over_tcp_terminates_at_once_after_the_ack() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let invite = request(Method::Invite, "z9hG4bKinv6");
    let tsx = layer.send_request(invite.clone(), tcp(), base);
    transmits(&mut layer);
    layer.handle_message(Message::Response(response_to(&invite, 404)), tcp(), base);
    assert_eq!(transmits(&mut layer).len(), 1, "the ACK");
    let got = events(&mut layer);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1], TsxEvent::Terminated { tsx });
    assert_eq!(layer.poll_timeout(), None);
}

#[test]
fn every_2xx_reaches_the_tu_in_accepted_and_the_transaction_does_not_ack_them() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let invite = request(Method::Invite, "z9hG4bKinv7");
    let tsx = layer.send_request(invite.clone(), udp(), base);
    transmits(&mut layer);
    let ok = response_to(&invite, 200);
    layer.handle_message(Message::Response(ok.clone()), udp(), base + ms(100));
    layer.handle_message(Message::Response(ok.clone()), udp(), base + ms(600));
    assert!(
        transmits(&mut layer).is_empty(),
        "ACK for 2xx is the UA core's"
    );
    assert_eq!(
        events(&mut layer),
        [
            TsxEvent::Response {
                tsx,
                response: ok.clone()
            },
            TsxEvent::Response { tsx, response: ok }
        ]
    );
    // Timer M (RFC 6026): 64*T1 after the first 2xx.
    assert_eq!(
        layer.poll_timeout(),
        Some(base + ms(100) + Duration::from_secs(32))
    );
    assert!(run_until(&mut layer, base, Duration::from_secs(40)).is_empty());
    assert_eq!(events(&mut layer), [TsxEvent::Terminated { tsx }]);
}

// ---------------------------------------------------------------- client non-INVITE

#[test]
fn non_invite_retransmissions_double_then_cap_at_t2_until_timer_f() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let tsx = layer.send_request(request(Method::Register, "z9hG4bKreg1"), udp(), base);
    transmits(&mut layer);
    let sent = run_until(&mut layer, base, Duration::from_secs(60));
    assert_eq!(
        instants(&sent),
        secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    );
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Timeout { tsx }, TsxEvent::Terminated { tsx }]
    );
}

#[test]
fn non_invite_in_proceeding_retransmits_every_t2() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let register = request(Method::Register, "z9hG4bKreg2");
    let tsx = layer.send_request(register.clone(), udp(), base);
    transmits(&mut layer);
    // First retransmission at 0.5 s, then a 100 Trying at 0.7 s; E was already armed for 1.5 s.
    let sent = run_until(&mut layer, base, ms(600));
    assert_eq!(instants(&sent), secs(&[0.5]));
    layer.handle_message(
        Message::Response(response_to(&register, 100)),
        udp(),
        base + ms(700),
    );
    assert!(matches!(
        events(&mut layer)[..],
        [TsxEvent::Response { .. }]
    ));
    let sent = run_until(&mut layer, base, Duration::from_secs(60));
    assert_eq!(
        instants(&sent),
        secs(&[1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5])
    );
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Timeout { tsx }, TsxEvent::Terminated { tsx }]
    );
}

#[test]
fn non_invite_final_absorbs_retransmissions_until_timer_k() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let options = request(Method::Options, "z9hG4bKopt1");
    let tsx = layer.send_request(options.clone(), udp(), base);
    transmits(&mut layer);
    let ok = response_to(&options, 200);
    layer.handle_message(Message::Response(ok.clone()), udp(), base + ms(100));
    layer.handle_message(Message::Response(ok.clone()), udp(), base + ms(900));
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Response { tsx, response: ok }]
    );
    // No more retransmissions of the request; K = T4 after the final.
    assert_eq!(layer.poll_timeout(), Some(base + ms(5100)));
    assert!(run_until(&mut layer, base, Duration::from_secs(10)).is_empty());
    assert_eq!(events(&mut layer), [TsxEvent::Terminated { tsx }]);
}

#[test]
fn non_invite_over_tcp_sends_once_and_ends_with_the_final() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let options = request(Method::Options, "z9hG4bKopt2");
    let tsx = layer.send_request(options.clone(), tcp(), base);
    assert_eq!(transmits(&mut layer).len(), 1);
    assert_eq!(
        layer.poll_timeout(),
        Some(base + Duration::from_secs(32)),
        "only F"
    );
    layer.handle_message(
        Message::Response(response_to(&options, 200)),
        tcp(),
        base + ms(50),
    );
    let got = events(&mut layer);
    assert_eq!(
        got.last(),
        Some(&TsxEvent::Terminated { tsx }),
        "K = 0 on TCP"
    );
    assert!(layer.is_empty());
}

// ---------------------------------------------------------------- server INVITE

fn receive_invite(
    layer: &mut TransactionLayer,
    branch: &str,
    source: Destination,
    now: Instant,
) -> (TsxId, Request) {
    let invite = request(Method::Invite, branch);
    let Routed::ServerNew(tsx) =
        layer.handle_message(Message::Request(invite.clone()), source, now)
    else {
        panic!("INVITE did not create a server transaction");
    };
    assert_eq!(
        events(layer),
        [TsxEvent::Request {
            tsx,
            request: invite.clone(),
            source
        }]
    );
    (tsx, invite)
}

#[test]
fn server_sends_100_trying_itself_when_the_tu_is_silent_for_200_ms() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let (_, invite) = receive_invite(&mut layer, "z9hG4bKsrv1", udp(), base);
    assert_eq!(layer.poll_timeout(), Some(base + ms(200)));
    layer.handle_timeout(base + ms(199));
    assert!(transmits(&mut layer).is_empty());
    layer.handle_timeout(base + ms(200));
    let sent = transmits(&mut layer);
    assert_eq!(sent, [Message::Response(response_to(&invite, 100))]);

    // A retransmitted INVITE gets the 100 again, and no new TU event.
    let routed = layer.handle_message(Message::Request(invite.clone()), udp(), base + ms(500));
    assert!(matches!(routed, Routed::ServerRetransmission(_)));
    assert_eq!(transmits(&mut layer), sent);
    assert!(events(&mut layer).is_empty());
}

#[test]
fn no_auto_100_when_the_tu_answers_within_200_ms() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let (tsx, invite) = receive_invite(&mut layer, "z9hG4bKsrv2", udp(), base);
    let ringing = response_to(&invite, 180);
    layer.send_response(tsx, ringing.clone(), base + ms(100));
    assert_eq!(transmits(&mut layer), [Message::Response(ringing.clone())]);
    let sent = run_until(&mut layer, base, Duration::from_secs(5));
    assert!(sent.is_empty(), "{sent:?}");
    // The retransmitted INVITE is answered with the last provisional.
    layer.handle_message(Message::Request(invite), udp(), base + ms(600));
    assert_eq!(transmits(&mut layer), [Message::Response(ringing)]);
}

#[test]
fn server_retransmits_non_2xx_with_timer_g_until_timer_h() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let (tsx, invite) = receive_invite(&mut layer, "z9hG4bKsrv3", udp(), base);
    layer.send_response(tsx, response_to(&invite, 486), base);
    assert_eq!(transmits(&mut layer).len(), 1);
    let sent = run_until(&mut layer, base, Duration::from_secs(60));
    assert_eq!(
        instants(&sent),
        secs(&[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    );
    assert!(sent.iter().all(|(_, m)| code_of(m) == Some(486)));
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Timeout { tsx }, TsxEvent::Terminated { tsx }]
    );
}

#[test]
fn ack_stops_timer_g_and_timer_i_absorbs_ack_retransmissions() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let (tsx, invite) = receive_invite(&mut layer, "z9hG4bKsrv4", udp(), base);
    let busy = response_to(&invite, 486);
    layer.send_response(tsx, busy.clone(), base);
    transmits(&mut layer);
    let sent = run_until(&mut layer, base, ms(1000));
    assert_eq!(instants(&sent), secs(&[0.5]));

    let ack = ack_for(&invite, &busy);
    assert_eq!(
        layer.handle_message(Message::Request(ack.clone()), udp(), base + ms(1000)),
        Routed::ServerRetransmission(tsx)
    );
    assert!(
        events(&mut layer).is_empty(),
        "the ACK of a non-2xx is not the TU's"
    );
    // Timer I = T4 after the ACK; a retransmitted ACK in Confirmed is absorbed too.
    assert_eq!(layer.poll_timeout(), Some(base + ms(6000)));
    assert_eq!(
        layer.handle_message(Message::Request(ack), udp(), base + ms(2000)),
        Routed::ServerRetransmission(tsx)
    );
    assert!(run_until(&mut layer, base, Duration::from_secs(60)).is_empty());
    assert_eq!(events(&mut layer), [TsxEvent::Terminated { tsx }]);
}

#[test]
fn server_invite_over_tcp_does_not_retransmit_and_ends_on_ack() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let (tsx, invite) = receive_invite(&mut layer, "z9hG4bKsrv5", tcp(), base);
    let busy = response_to(&invite, 603);
    layer.send_response(tsx, busy.clone(), base);
    transmits(&mut layer);
    assert_eq!(
        layer.poll_timeout(),
        Some(base + Duration::from_secs(32)),
        "only H"
    );
    layer.handle_message(
        Message::Request(ack_for(&invite, &busy)),
        tcp(),
        base + ms(10),
    );
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Terminated { tsx }],
        "I = 0 on TCP"
    );
    assert!(transmits(&mut layer).is_empty());
}

#[test]
fn server_2xx_is_sent_once_then_accepted_passes_acks_up_until_timer_l() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let (tsx, invite) = receive_invite(&mut layer, "z9hG4bKsrv6", udp(), base);
    let ok = response_to(&invite, 200);
    layer.send_response(tsx, ok.clone(), base + ms(50));
    assert_eq!(transmits(&mut layer), [Message::Response(ok.clone())]);
    assert!(
        run_until(&mut layer, base, Duration::from_secs(2)).is_empty(),
        "the UA core, not the transaction, retransmits 2xx"
    );

    // INVITE retransmission absorbed silently; the core's 2xx retransmission goes out.
    layer.handle_message(Message::Request(invite.clone()), udp(), base + ms(2100));
    assert!(transmits(&mut layer).is_empty());
    layer.send_response(tsx, ok.clone(), base + ms(2200));
    assert_eq!(transmits(&mut layer), [Message::Response(ok.clone())]);

    // An ACK matching the transaction (same branch, as RFC 2543 peers do) goes to the TU.
    let ack = ack_for(&invite, &ok);
    assert_eq!(
        layer.handle_message(Message::Request(ack.clone()), udp(), base + ms(2300)),
        Routed::Ack
    );
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Ack {
            request: ack,
            source: udp()
        }]
    );
    // Timer L: 64*T1 after the 2xx.
    assert_eq!(
        layer.poll_timeout(),
        Some(base + ms(50) + Duration::from_secs(32))
    );
    run_until(&mut layer, base, Duration::from_secs(40));
    assert_eq!(events(&mut layer), [TsxEvent::Terminated { tsx }]);
}

#[test]
fn server_invite_timer_h_fires_without_ack_over_tcp_too() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let (tsx, invite) = receive_invite(&mut layer, "z9hG4bKsrv7", tcp(), base);
    layer.send_response(tsx, response_to(&invite, 480), base);
    transmits(&mut layer);
    assert!(run_until(&mut layer, base, Duration::from_secs(40)).is_empty());
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Timeout { tsx }, TsxEvent::Terminated { tsx }]
    );
}

// ---------------------------------------------------------------- server non-INVITE

#[test]
fn server_non_invite_absorbs_then_replays_final_until_timer_j() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let options = request(Method::Options, "z9hG4bKsopt1");
    let Routed::ServerNew(tsx) =
        layer.handle_message(Message::Request(options.clone()), udp(), base)
    else {
        panic!("no server transaction");
    };
    events(&mut layer);
    assert_eq!(layer.poll_timeout(), None, "no auto 100 for non-INVITE");

    // Retransmission in Trying: absorbed silently.
    assert_eq!(
        layer.handle_message(Message::Request(options.clone()), udp(), base + ms(500)),
        Routed::ServerRetransmission(tsx)
    );
    assert!(transmits(&mut layer).is_empty());
    assert!(events(&mut layer).is_empty());

    let ok = response_to(&options, 200);
    layer.send_response(tsx, ok.clone(), base + ms(600));
    assert_eq!(transmits(&mut layer), [Message::Response(ok.clone())]);
    layer.handle_message(Message::Request(options), udp(), base + ms(1500));
    assert_eq!(transmits(&mut layer), [Message::Response(ok)]);

    // Timer J: 64*T1 after the final.
    assert_eq!(
        layer.poll_timeout(),
        Some(base + ms(600) + Duration::from_secs(32))
    );
    run_until(&mut layer, base, Duration::from_secs(40));
    assert_eq!(events(&mut layer), [TsxEvent::Terminated { tsx }]);
}

#[test]
fn server_non_invite_over_tcp_ends_with_the_final() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let bye = request(Method::Bye, "z9hG4bKsbye1");
    let Routed::ServerNew(tsx) = layer.handle_message(Message::Request(bye.clone()), tcp(), base)
    else {
        panic!("no server transaction");
    };
    events(&mut layer);
    layer.send_response(tsx, response_to(&bye, 200), base);
    assert_eq!(transmits(&mut layer).len(), 1);
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Terminated { tsx }],
        "J = 0 on TCP"
    );
}

// ---------------------------------------------------------------- matching

#[test]
fn rfc_2543_request_without_cookie_is_matched_by_its_fields() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let (tsx, invite) = receive_invite(&mut layer, "old2543branch", udp(), base);
    let busy = response_to(&invite, 486);
    layer.send_response(tsx, busy.clone(), base);
    transmits(&mut layer);

    assert_eq!(
        layer.handle_message(Message::Request(invite.clone()), udp(), base + ms(100)),
        Routed::ServerRetransmission(tsx)
    );
    assert_eq!(transmits(&mut layer), [Message::Response(busy.clone())]);

    // The ACK carries our To tag and CSeq method ACK, yet matches and stops Timer G.
    assert_eq!(
        layer.handle_message(
            Message::Request(ack_for(&invite, &busy)),
            udp(),
            base + ms(200)
        ),
        Routed::ServerRetransmission(tsx)
    );
    assert!(run_until(&mut layer, base, Duration::from_secs(60)).is_empty());

    // The same INVITE with another CSeq is a new transaction.
    let mut next = invite.clone();
    next.headers.set("CSeq", "314160 INVITE");
    assert!(matches!(
        layer.handle_message(
            Message::Request(next),
            udp(),
            base + Duration::from_secs(61)
        ),
        Routed::ServerNew(_)
    ));
}

#[test]
fn cancel_is_a_transaction_of_its_own_that_points_to_the_invite() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let (invite_tsx, invite) = receive_invite(&mut layer, "z9hG4bKcan1", udp(), base);
    let mut cancel = request(Method::Cancel, "z9hG4bKcan1");
    cancel.headers.remove("Route");
    let Routed::ServerNew(cancel_tsx) =
        layer.handle_message(Message::Request(cancel.clone()), udp(), base + ms(100))
    else {
        panic!("CANCEL must create its own transaction");
    };
    assert_ne!(cancel_tsx, invite_tsx);
    assert_eq!(layer.cancel_target(&cancel), Some(invite_tsx));

    // UA core: 200 to the CANCEL, 487 to the INVITE, each on its own transaction.
    layer.send_response(cancel_tsx, response_to(&cancel, 200), base + ms(100));
    layer.send_response(invite_tsx, response_to(&invite, 487), base + ms(100));
    let codes: Vec<_> = transmits(&mut layer).iter().filter_map(code_of).collect();
    assert_eq!(codes, [200, 487]);
}

#[test]
fn client_cancel_and_invite_responses_reach_their_own_transactions() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let invite = request(Method::Invite, "z9hG4bKccan");
    let invite_tsx = layer.send_request(invite.clone(), udp(), base);
    let cancel = request(Method::Cancel, "z9hG4bKccan");
    let cancel_tsx = layer.send_request(cancel.clone(), udp(), base + ms(100));
    assert_eq!(
        layer.handle_message(
            Message::Response(response_to(&cancel, 200)),
            udp(),
            base + ms(150)
        ),
        Routed::Client(cancel_tsx)
    );
    assert_eq!(
        layer.handle_message(
            Message::Response(response_to(&invite, 487)),
            udp(),
            base + ms(160)
        ),
        Routed::Client(invite_tsx)
    );
}

#[test]
fn stray_responses_are_dropped_except_2xx_to_invite() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let invite = request(Method::Invite, "z9hG4bKgone");
    assert_eq!(
        layer.handle_message(Message::Response(response_to(&invite, 180)), udp(), base),
        Routed::Stray
    );
    assert!(events(&mut layer).is_empty());

    let ok = response_to(&invite, 200);
    assert_eq!(
        layer.handle_message(Message::Response(ok.clone()), udp(), base),
        Routed::Stray
    );
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Unmatched2xx {
            response: ok,
            source: udp()
        }]
    );
}

#[test]
fn messages_without_via_or_cseq_are_stray_not_panics() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let mut no_via = request(Method::Invite, "z9hG4bKx");
    no_via.headers.remove("Via");
    assert_eq!(
        layer.handle_message(Message::Request(no_via.clone()), udp(), base),
        Routed::Stray
    );
    let mut no_cseq = request(Method::Options, "z9hG4bKy");
    no_cseq.headers.remove("CSeq");
    assert_eq!(
        layer.handle_message(Message::Request(no_cseq.clone()), udp(), base),
        Routed::Stray
    );
    assert_eq!(
        layer.handle_message(Message::Response(response_to(&no_via, 200)), udp(), base),
        Routed::Stray
    );
    assert_eq!(
        layer.handle_message(Message::Response(response_to(&no_cseq, 200)), udp(), base),
        Routed::Stray
    );
    assert!(events(&mut layer).is_empty());
    assert!(layer.is_empty());
}

#[test]
fn ack_matching_nothing_goes_to_the_dialog_layer() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let ack = request(Method::Ack, "z9hG4bKack2xx");
    assert_eq!(
        layer.handle_message(Message::Request(ack.clone()), udp(), base),
        Routed::Ack
    );
    assert_eq!(
        events(&mut layer),
        [TsxEvent::Ack {
            request: ack,
            source: udp()
        }]
    );
    assert!(layer.is_empty());
}

#[test]
fn transport_error_ends_the_transaction_with_an_event() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let tsx = layer.send_request(request(Method::Invite, "z9hG4bKte"), tcp(), base);
    transmits(&mut layer);
    layer.handle_transport_error(tsx, base + ms(10));
    assert_eq!(
        events(&mut layer),
        [
            TsxEvent::TransportError { tsx },
            TsxEvent::Terminated { tsx }
        ]
    );
    assert_eq!(layer.poll_timeout(), None);
    // Late input for the dead id is ignored.
    layer.handle_transport_error(tsx, base + ms(20));
    assert!(events(&mut layer).is_empty());
}

#[test]
fn a_dead_destination_fails_only_the_transactions_sending_there() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    let dead = tcp();
    let elsewhere = Destination {
        addr: "127.0.0.1:6000".parse().expect("address"),
        transport: TransportKind::Tcp,
    };
    let doomed = layer.send_request(request(Method::Options, "z9hG4bKd1"), dead, base);
    let fine = layer.send_request(request(Method::Options, "z9hG4bKd2"), elsewhere, base);
    transmits(&mut layer);
    layer.handle_destination_error(dead, base + ms(5));
    assert_eq!(
        events(&mut layer),
        [
            TsxEvent::TransportError { tsx: doomed },
            TsxEvent::Terminated { tsx: doomed }
        ]
    );
    assert!(
        layer.request_of(fine).is_some(),
        "the other transaction lives on"
    );
}

#[test]
fn flood_of_new_requests_is_refused_past_the_bound() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    layer.set_max_transactions(2);
    let first = request(Method::Options, "z9hG4bKf1");
    layer.handle_message(Message::Request(first.clone()), udp(), base);
    layer.handle_message(
        Message::Request(request(Method::Options, "z9hG4bKf2")),
        udp(),
        base,
    );
    assert_eq!(
        layer.handle_message(
            Message::Request(request(Method::Options, "z9hG4bKf3")),
            udp(),
            base
        ),
        Routed::Overloaded
    );
    assert_eq!(layer.len(), 2);
    // Existing transactions keep working.
    assert!(matches!(
        layer.handle_message(Message::Request(first), udp(), base),
        Routed::ServerRetransmission(_)
    ));
}

#[test]
fn timer_table_fires_in_deadline_order_when_called_late() {
    let base = Instant::now();
    let mut table = TimerTable::new();
    table.set(Timer::B, base, Duration::from_secs(32));
    table.set(Timer::A, base, ms(500));
    assert_eq!(table.earliest(), Some(base + ms(500)));
    assert_eq!(table.take_expired(base), None);
    let late = base + Duration::from_secs(40);
    assert_eq!(table.take_expired(late), Some(Timer::A));
    assert_eq!(table.take_expired(late), Some(Timer::B));
    assert_eq!(table.take_expired(late), None);
    assert_eq!(table.earliest(), None);
}

/// Answers a new OPTIONS with 200 at `at`; returns its transaction.
fn answered_options(layer: &mut TransactionLayer, branch: &str, at: Instant) -> TsxId {
    let options = request(Method::Options, branch);
    let Routed::ServerNew(tsx) = layer.handle_message(Message::Request(options.clone()), udp(), at)
    else {
        panic!("no server transaction for {branch}");
    };
    events(layer);
    layer.send_response(tsx, response_to(&options, 200), at);
    transmits(layer);
    tsx
}

#[test]
fn completed_non_invite_server_transactions_are_bounded_oldest_first() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    layer.set_max_completed(2);
    let first = answered_options(&mut layer, "z9hG4bKc1", base);
    answered_options(&mut layer, "z9hG4bKc2", base + ms(1));
    assert!(events(&mut layer).is_empty());
    answered_options(&mut layer, "z9hG4bKc3", base + ms(2));
    // The third completed one pushes the oldest out before its Timer J.
    assert_eq!(events(&mut layer), [TsxEvent::Terminated { tsx: first }]);
    assert_eq!(layer.len(), 2);
    // The next timer is the second one's Timer J, not the dropped one's.
    assert_eq!(
        layer.poll_timeout(),
        Some(base + ms(1) + Duration::from_secs(32))
    );
    // A late retransmission of the dropped one is a new request again (the TU answers it).
    assert!(matches!(
        layer.handle_message(
            Message::Request(request(Method::Options, "z9hG4bKc1")),
            udp(),
            base + ms(500)
        ),
        Routed::ServerNew(_)
    ));
    // The others still absorb theirs with the stored final.
    layer.handle_message(
        Message::Request(request(Method::Options, "z9hG4bKc3")),
        udp(),
        base + ms(600),
    );
    let resent = transmits(&mut layer);
    assert!(
        matches!(resent.as_slice(), [Message::Response(r)] if r.code == 200),
        "{resent:?}"
    );
    // Timer J still ends the rest, and nothing is left armed.
    run_until(&mut layer, base, Duration::from_secs(40));
    assert_eq!(layer.len(), 1, "only the unanswered re-request lives");
}

#[test]
fn a_full_layer_drops_a_completed_transaction_before_refusing_a_new_request() {
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    layer.set_max_transactions(2);
    let done = answered_options(&mut layer, "z9hG4bKfull1", base);
    // One still in Trying (the TU has not answered): never dropped.
    layer.handle_message(
        Message::Request(request(Method::Options, "z9hG4bKfull2")),
        udp(),
        base,
    );
    events(&mut layer);
    assert!(layer.is_full());
    let invite = request(Method::Invite, "z9hG4bKfull3");
    assert!(matches!(
        layer.handle_message(Message::Request(invite), udp(), base + ms(5)),
        Routed::ServerNew(_)
    ));
    let evs = events(&mut layer);
    assert!(
        evs.contains(&TsxEvent::Terminated { tsx: done }),
        "the completed OPTIONS made room: {evs:?}"
    );
    // Now only live work is left: the next new request is refused.
    assert_eq!(
        layer.handle_message(
            Message::Request(request(Method::Options, "z9hG4bKfull4")),
            udp(),
            base + ms(6)
        ),
        Routed::Overloaded
    );
}

#[test]
fn many_transactions_keep_timers_in_order() {
    // The timer index must give exactly what a scan of every transaction gave.
    let base = Instant::now();
    let mut layer = TransactionLayer::new(TimerConfig::default());
    for i in 0..500u64 {
        answered_options(&mut layer, &format!("z9hG4bKmany{i}"), base + ms(i));
    }
    assert_eq!(layer.len(), 500);
    let mut ended = 0;
    let mut last = base;
    while let Some(at) = layer.poll_timeout() {
        assert!(at >= last, "timers went backwards");
        last = at;
        layer.handle_timeout(at);
        ended += events(&mut layer)
            .iter()
            .filter(|e| matches!(e, TsxEvent::Terminated { .. }))
            .count();
    }
    assert_eq!(ended, 500);
    assert!(layer.is_empty());
    assert_eq!(last, base + ms(499) + Duration::from_secs(32));
}
