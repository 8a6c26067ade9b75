//! Scanner protection in the sans-IO user agent, on virtual time: `accept_from = "proxy"` (403
//! to everyone but the proxy, in-dialog requests from the peer still fine), the per-IP response
//! rate limit with its warning, the bound on unanswered incoming calls (per source and
//! overall), and which call a plain `hangup` ends.
//!
//! The addresses are documentation ranges (192.0.2.x the proxy, 198.51.100.x real phones,
//! 203.0.113.x scanners): nothing here touches a socket, and the rate limit spares loopback.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::sim::{AccountSpec, events, sent, udp, user_agent};
use sipterm::sdp::{Codec, Direction, LocalMedia};
use sipterm::sip::message::{Message, Method, Response};
use sipterm::sip::ua::{
    AcceptFrom, CallState, Command, DROP_WARNING_INTERVAL, MAX_RINGING, MAX_RINGING_PER_SOURCE,
    RESPONSE_BURST, RESPONSE_RATE, UaEvent, UserAgent,
};

const PROXY: &str = "192.0.2.10:5060";
const LOCAL: &str = "192.0.2.50:5062";
const PHONE: &str = "198.51.100.5:5060";
const SCANNER: &str = "203.0.113.7:5060";

fn ua(policy: Option<AcceptFrom>) -> UserAgent {
    let mut ua = user_agent(&AccountSpec {
        registrar: Some("sip:192.0.2.10"),
        outbound_proxy: Some("sip:192.0.2.10:5060"),
        local: LOCAL,
        ..AccountSpec::default()
    });
    if let Some(policy) = policy {
        let proxy: SocketAddr = PROXY.parse().expect("addr");
        ua.set_source_policy(policy, [proxy.ip()]);
    }
    ua
}

/// A request from `from` (Via, Contact) to us; `to_tag`/`from_tag`/`call_id` pick the dialog.
fn request(method: &str, from: &str, call_id: &str, branch: u64, to_tag: Option<&str>) -> Vec<u8> {
    request_with(method, from, from, call_id, branch, to_tag, "f1", 1)
}

#[allow(clippy::too_many_arguments)]
fn request_with(
    method: &str,
    via: &str,
    contact: &str,
    call_id: &str,
    branch: u64,
    to_tag: Option<&str>,
    from_tag: &str,
    cseq: u32,
) -> Vec<u8> {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:alice@{LOCAL} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {via};branch=z9hG4bK{branch:x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:caller@{contact}>;tag={from_tag}\r\n\
         To: <sip:alice@{LOCAL}>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:caller@{contact}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn responses(out: &[(sipterm::sip::transaction::Destination, Message)]) -> Vec<(SocketAddr, u16)> {
    out.iter()
        .filter_map(|(d, m)| match m {
            Message::Response(r) => Some((d.addr, r.code)),
            Message::Request(_) => None,
        })
        .collect()
}

fn response_list(out: &[(sipterm::sip::transaction::Destination, Message)]) -> Vec<Response> {
    out.iter()
        .filter_map(|(_, m)| match m {
            Message::Response(r) => Some(r.clone()),
            Message::Request(_) => None,
        })
        .collect()
}

fn incoming_calls(evs: &[UaEvent]) -> Vec<u64> {
    evs.iter()
        .filter_map(|e| match e {
            UaEvent::Call {
                call,
                state: CallState::Incoming,
                ..
            } => Some(*call),
            _ => None,
        })
        .collect()
}

fn terminated(evs: &[UaEvent]) -> Vec<(u64, Option<u16>)> {
    evs.iter()
        .filter_map(|e| match e {
            UaEvent::Call {
                call,
                state: CallState::Terminated,
                code,
                ..
            } => Some((*call, *code)),
            _ => None,
        })
        .collect()
}

fn warnings(evs: &[UaEvent]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match e {
            UaEvent::Warning { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn media() -> LocalMedia {
    LocalMedia {
        address: "192.0.2.50".parse().expect("ip"),
        rtp_port: 40_000,
        codecs: vec![Codec::Pcmu],
        direction: Direction::SendRecv,
        session_id: 0,
        session_version: 0,
        srtp: Default::default(),
        ice: None,
    }
}

/// Feeds one datagram and returns what went out at once, plus the events.
fn feed(
    ua: &mut UserAgent,
    from: &str,
    bytes: &[u8],
    now: Instant,
) -> (
    Vec<(sipterm::sip::transaction::Destination, Message)>,
    Vec<UaEvent>,
) {
    ua.handle_datagram(udp(from), bytes, now);
    (sent(ua), events(ua))
}

// --------------------------------------------------------------------------- accept_from

#[test]
fn accept_from_proxy_refuses_scanners_and_never_rings() {
    let mut ua = ua(Some(AcceptFrom::Proxy));
    let now = Instant::now();
    for (i, method) in ["INVITE", "MESSAGE", "OPTIONS", "SUBSCRIBE", "CANCEL"]
        .iter()
        .enumerate()
    {
        let (out, evs) = feed(
            &mut ua,
            SCANNER,
            &request(method, SCANNER, &format!("scan-{i}"), i as u64, None),
            now,
        );
        let answers = response_list(&out);
        assert_eq!(
            answers.iter().map(|r| r.code).collect::<Vec<_>>(),
            vec![403],
            "{method} from a scanner"
        );
        // Nothing that names the software to a scanner.
        assert!(
            answers[0].headers.get("Server").is_none(),
            "{method}: {answers:?}"
        );
        assert!(incoming_calls(&evs).is_empty(), "{method} rang: {evs:?}");
    }
    // A BYE with invented tags: 403 too (not 481, which would tell the scanner less, but
    // confirms nothing either way).
    let (out, _) = feed(
        &mut ua,
        SCANNER,
        &request("BYE", SCANNER, "scan-bye", 99, Some("guess")),
        now,
    );
    assert_eq!(responses(&out), vec![(udp(SCANNER).addr, 403)]);

    // The proxy: OPTIONS (its keep-alive) gets 200, an INVITE rings.
    let (out, _) = feed(
        &mut ua,
        PROXY,
        &request("OPTIONS", PROXY, "ping", 100, None),
        now,
    );
    assert_eq!(responses(&out), vec![(udp(PROXY).addr, 200)]);
    let (out, evs) = feed(
        &mut ua,
        PROXY,
        &request("INVITE", PROXY, "real", 101, None),
        now,
    );
    assert_eq!(responses(&out), vec![(udp(PROXY).addr, 180)]);
    assert_eq!(incoming_calls(&evs).len(), 1, "{evs:?}");
}

#[test]
fn accept_from_any_takes_calls_from_anyone() {
    // The default of the core (and of an account without registrar/proxy).
    for policy in [None, Some(AcceptFrom::Any)] {
        let mut ua = ua(policy);
        let (out, evs) = feed(
            &mut ua,
            SCANNER,
            &request("INVITE", SCANNER, "direct", 1, None),
            Instant::now(),
        );
        assert_eq!(
            responses(&out),
            vec![(udp(SCANNER).addr, 180)],
            "{policy:?}"
        );
        assert_eq!(incoming_calls(&evs).len(), 1, "{policy:?}");
    }
}

/// A call that came through the proxy; its peer (Contact 198.51.100.5) then talks to us
/// directly (no Record-Route): in-dialog requests that match the dialog pass, from the peer's
/// Contact address or from another one (a peer behind NAT sends from its public address);
/// a BYE with guessed tags from a scanner gets 403 and the call stays up.
#[test]
fn in_dialog_requests_from_the_peer_pass() {
    let mut ua = ua(Some(AcceptFrom::Proxy));
    let mut now = Instant::now();
    let invite = request_with("INVITE", PROXY, PHONE, "call-1", 1, None, "peer", 1);
    let (out, evs) = feed(&mut ua, PROXY, &invite, now);
    let ringing = response_list(&out);
    assert_eq!(
        ringing.iter().map(|r| r.code).collect::<Vec<_>>(),
        vec![180]
    );
    let call = incoming_calls(&evs)[0];
    ua.handle_command(
        Command::Answer {
            call: Some(call),
            media: media(),
        },
        now,
    );
    let ok = response_list(&sent(&mut ua));
    let our_tag = ok
        .iter()
        .find(|r| r.code == 200)
        .and_then(|r| {
            r.headers
                .to()
                .ok()
                .and_then(|t| t.tag().map(str::to_string))
        })
        .expect("200 with a To tag");
    let ack = request_with("ACK", PHONE, PHONE, "call-1", 2, Some(&our_tag), "peer", 1);
    ua.handle_datagram(udp(PHONE), &ack, now);
    events(&mut ua);
    now += Duration::from_secs(1);

    let bye = |via: &str, cseq: u32| {
        request_with(
            "BYE",
            via,
            PHONE,
            "call-1",
            10 + u64::from(cseq),
            Some(&our_tag),
            "peer",
            cseq,
        )
    };
    let guessed = request_with(
        "BYE",
        SCANNER,
        SCANNER,
        "call-1",
        11,
        Some("guess"),
        "peer",
        2,
    );
    let (out, evs) = feed(&mut ua, SCANNER, &guessed, now);
    assert_eq!(responses(&out), vec![(udp(SCANNER).addr, 403)]);
    assert!(
        terminated(&evs).is_empty(),
        "a scanner's BYE ended the call"
    );
    // An INFO from the peer's NATed public address (not its Contact): matches, passes.
    let nat = "198.51.100.200:40000";
    let mut info = String::from_utf8(request_with(
        "INFO",
        nat,
        PHONE,
        "call-1",
        12,
        Some(&our_tag),
        "peer",
        3,
    ))
    .expect("utf8");
    let body = "Signal=5\r\nDuration=160\r\n";
    info = info.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/dtmf-relay\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    let (out, evs) = feed(&mut ua, nat, info.as_bytes(), now);
    assert_eq!(responses(&out), vec![(udp(nat).addr, 200)], "{evs:?}");
    assert!(evs.contains(&UaEvent::Dtmf { call, digit: '5' }), "{evs:?}");
    let (out, evs) = feed(&mut ua, PHONE, &bye(PHONE, 4), now);
    assert_eq!(responses(&out), vec![(udp(PHONE).addr, 200)]);
    assert_eq!(terminated(&evs).len(), 1, "{evs:?}");
}

// --------------------------------------------------------------------------- rate limit

/// A scanner sends 200 OPTIONS/s for 25 s (virtual): it gets the burst, then 20 answers a
/// second; the rest are dropped silently, with a `warning` at most every 10 s whose counts add
/// up. The proxy and another source sending at the same time are answered every time.
#[test]
fn responses_to_a_flooding_source_are_rate_limited() {
    let mut ua = ua(Some(AcceptFrom::Any));
    let start = Instant::now();
    let scanner: IpAddr = udp(SCANNER).addr.ip();
    let (mut to_scanner, mut to_proxy, mut to_phone) = (0u64, 0u64, 0u64);
    let mut warning_times = Vec::new();
    let mut warned_total = 0u64;
    let seconds = 25u64;
    let mut sent_requests = 0u64;
    for i in 0..(seconds * 200) {
        let now = start + Duration::from_millis(5 * i);
        if i % 20 == 0 {
            ua.handle_timeout(now);
        }
        let bytes = request("OPTIONS", SCANNER, &format!("flood-{i}"), i, None);
        ua.handle_datagram(udp(SCANNER), &bytes, now);
        sent_requests += 1;
        if i % 20 == 0 {
            let ping = request("OPTIONS", PROXY, &format!("ping-{i}"), 1_000_000 + i, None);
            ua.handle_datagram(udp(PROXY), &ping, now);
            let real = request("OPTIONS", PHONE, &format!("phone-{i}"), 2_000_000 + i, None);
            ua.handle_datagram(udp(PHONE), &real, now);
        }
        for (dest, code) in responses(&sent(&mut ua)) {
            assert_eq!(code, 200);
            match dest.ip() {
                ip if ip == scanner => to_scanner += 1,
                ip if ip == udp(PROXY).addr.ip() => to_proxy += 1,
                _ => to_phone += 1,
            }
        }
        for w in warnings(&events(&mut ua)) {
            warning_times.push(now - start);
            let count: u64 = w
                .split_whitespace()
                .nth(3)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count in {w:?}"));
            assert!(w.contains("203.0.113.7"), "{w}");
            warned_total += count;
        }
    }
    // Whatever is still pending is reported once the interval is over.
    let end = start + Duration::from_secs(seconds) + DROP_WARNING_INTERVAL;
    ua.handle_timeout(end);
    for w in warnings(&events(&mut ua)) {
        warning_times.push(end - start);
        warned_total += w
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse::<u64>().ok())
            .expect("count");
    }
    let expected = RESPONSE_BURST + RESPONSE_RATE * (seconds as f64);
    println!(
        "flood of {sent_requests} OPTIONS in {seconds} s: {to_scanner} answered (limit ≈ {expected}), \
         {} dropped, warnings at {warning_times:?}; proxy {to_proxy}, phone {to_phone} answered",
        ua.dropped_responses()
    );
    assert!(
        (to_scanner as f64 - expected).abs() <= 2.0,
        "{to_scanner} answers to the scanner, expected about {expected}"
    );
    assert_eq!(to_scanner + ua.dropped_responses(), sent_requests);
    assert_eq!(to_proxy, seconds * 10, "the proxy is never limited");
    assert_eq!(to_phone, seconds * 10, "another source is not limited");
    assert_eq!(
        warned_total,
        ua.dropped_responses(),
        "warnings count every drop"
    );
    assert!(warning_times.len() >= 3, "{warning_times:?}");
    for pair in warning_times.windows(2) {
        assert!(
            pair[1] - pair[0] >= DROP_WARNING_INTERVAL,
            "warnings closer than 10 s: {warning_times:?}"
        );
    }
}

// --------------------------------------------------------------------------- ringing bound

/// A scanner's INVITE flood (fresh Call-IDs, one address) leaves at most
/// MAX_RINGING_PER_SOURCE calls ringing; a real call from elsewhere still rings; past
/// MAX_RINGING unanswered calls everything gets 486 until one is answered.
#[test]
fn unanswered_calls_are_bounded_per_source_and_overall() {
    let mut ua = ua(Some(AcceptFrom::Any));
    let now = Instant::now();
    let mut rang = Vec::new();
    let mut busy = 0;
    for i in 0..30u64 {
        let (out, evs) = feed(
            &mut ua,
            SCANNER,
            &request("INVITE", SCANNER, &format!("flood-{i}"), i, None),
            now,
        );
        rang.extend(incoming_calls(&evs));
        busy += responses(&out).iter().filter(|(_, c)| *c == 486).count();
    }
    println!("30 flooded INVITEs: {} ring, {busy} got 486", rang.len());
    assert_eq!(rang.len(), MAX_RINGING_PER_SOURCE);
    assert_eq!(busy, 30 - MAX_RINGING_PER_SOURCE);

    // The real caller rings.
    let (out, evs) = feed(
        &mut ua,
        PHONE,
        &request("INVITE", PHONE, "real", 100, None),
        now,
    );
    assert_eq!(responses(&out), vec![(udp(PHONE).addr, 180)]);
    let real = incoming_calls(&evs);
    assert_eq!(real.len(), 1);

    // Other sources fill the overall bound; then even a new source gets 486.
    let mut codes = Vec::new();
    for (i, from) in ["203.0.113.8:5060", "203.0.113.9:5060", "203.0.113.10:5060"]
        .iter()
        .enumerate()
    {
        let (out, _) = feed(
            &mut ua,
            from,
            &request("INVITE", from, &format!("other-{i}"), 200 + i as u64, None),
            now,
        );
        codes.extend(responses(&out).into_iter().map(|(_, c)| c));
    }
    let ringing_now = MAX_RINGING_PER_SOURCE + 1;
    let room = MAX_RINGING - ringing_now;
    assert_eq!(
        codes.iter().filter(|c| **c == 180).count(),
        room,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == 486).count(),
        3 - room,
        "{codes:?}"
    );

    // Answering the real call makes room again.
    ua.handle_command(
        Command::Answer {
            call: real.first().copied(),
            media: media(),
        },
        now,
    );
    sent(&mut ua);
    let (out, _) = feed(
        &mut ua,
        "198.51.100.6:5060",
        &request("INVITE", "198.51.100.6:5060", "second", 300, None),
        now,
    );
    assert_eq!(
        responses(&out),
        vec![("198.51.100.6:5060".parse().expect("a"), 180)]
    );
}

/// Every call comes through the proxy: it is not held to the per-source bound, only to the
/// overall one.
#[test]
fn the_proxy_is_only_held_to_the_overall_bound() {
    let mut ua = ua(Some(AcceptFrom::Proxy));
    let now = Instant::now();
    let mut codes = Vec::new();
    for i in 0..(MAX_RINGING as u64 + 2) {
        let (out, _) = feed(
            &mut ua,
            PROXY,
            &request("INVITE", PROXY, &format!("via-proxy-{i}"), i, None),
            now,
        );
        codes.extend(responses(&out).into_iter().map(|(_, c)| c));
    }
    assert_eq!(
        codes,
        [vec![180; MAX_RINGING], vec![486; 2]].concat(),
        "responses to the proxy"
    );
}

// --------------------------------------------------------------------------- hangup

/// With a confirmed call and phantom ringing calls (newer), `hangup` without an id ends the
/// confirmed call (BYE), not a ringing one; the next `hangup` then rejects a ringing call.
#[test]
fn hangup_without_id_prefers_the_confirmed_call() {
    let mut ua = ua(Some(AcceptFrom::Any));
    let now = Instant::now();
    let (_, evs) = feed(
        &mut ua,
        PHONE,
        &request("INVITE", PHONE, "real", 1, None),
        now,
    );
    let real = incoming_calls(&evs)[0];
    ua.handle_command(
        Command::Answer {
            call: Some(real),
            media: media(),
        },
        now,
    );
    sent(&mut ua);
    events(&mut ua);
    let mut phantoms = Vec::new();
    for i in 0..2u64 {
        let (_, evs) = feed(
            &mut ua,
            SCANNER,
            &request("INVITE", SCANNER, &format!("phantom-{i}"), 10 + i, None),
            now,
        );
        phantoms.extend(incoming_calls(&evs));
    }
    assert_eq!(phantoms.len(), 2);
    // An outgoing call being placed ranks after the confirmed one, before the ringing ones.
    ua.handle_command(
        Command::Dial {
            target: "sip:bob@198.51.100.9".parse().expect("uri"),
            media: LocalMedia {
                rtp_port: 40_002,
                ..media()
            },
        },
        now,
    );
    sent(&mut ua);
    let outgoing = events(&mut ua)
        .iter()
        .find_map(|e| match e {
            UaEvent::Call {
                call,
                state: CallState::Calling,
                ..
            } => Some(*call),
            _ => None,
        })
        .expect("a calling event");

    ua.handle_command(Command::Hangup { call: None }, now);
    let out = sent(&mut ua);
    let byes: Vec<_> = out
        .iter()
        .filter(|(_, m)| matches!(m, Message::Request(r) if r.method == Method::Bye))
        .collect();
    assert_eq!(byes.len(), 1, "a BYE for the confirmed call: {out:?}");
    assert!(
        matches!(&byes[0].1, Message::Request(r) if r.headers.get("Call-ID") == Some("real")),
        "{byes:?}"
    );
    assert_eq!(terminated(&events(&mut ua)), vec![(real, None)]);

    // Next: the outgoing call (no answer yet: the CANCEL waits for a provisional response, so
    // it stays up), then the ringing ones, newest first, 486 to each.
    ua.handle_command(Command::Hangup { call: None }, now);
    sent(&mut ua);
    assert!(
        terminated(&events(&mut ua)).is_empty(),
        "a ringing call was picked"
    );
    let mut ended = Vec::new();
    for _ in 0..2 {
        ua.handle_command(Command::Hangup { call: None }, now);
        sent(&mut ua);
        ended.extend(terminated(&events(&mut ua)));
    }
    assert!(!ended.iter().any(|(c, _)| *c == outgoing), "{ended:?}");
    let mut expected: Vec<_> = phantoms.iter().rev().map(|p| (*p, Some(486))).collect();
    expected.truncate(2);
    assert_eq!(
        ended, expected,
        "the phantom calls, newest first, rejected with 486"
    );
}
