//! Where requests go, on virtual time (no sockets, no DNS server): the outbound proxy as a
//! preloaded route outside dialogs only (RFC 3261 §8.1.2), ACK and BYE along the dialog's route
//! set or straight to the remote target (§12.2.1.1, §13.2.2.4), strict routers, host names
//! resolved by the driver (RFC 3263) with failover to the next server on a timeout, a transport
//! error or a 503 (§4.3) and answers cached for their TTL, and the local address each
//! destination sees when sipterm listens on a wildcard address.
//!
//! Addresses are documentation ranges: nothing here touches the network.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sim::{AccountSpec, addr, after, events, reply, requests, run_until, user_agent};
use sipterm::sdp::{Codec, Direction, LocalMedia};
use sipterm::sip::message::{Message, Method, Request};
use sipterm::sip::registration::RegistrationState;
use sipterm::sip::transaction::{Destination, TransportKind};
use sipterm::sip::ua::{
    AcceptFrom, CallState, Command, HopKey, LocalRoutes, ROUTE_CHECK_INTERVAL, UaEvent, UserAgent,
};

const PROXY: &str = "192.0.2.10:5060";
const BOB: &str = "198.51.100.20:5060";

fn udp(a: &str) -> Destination {
    Destination {
        addr: addr(a),
        transport: TransportKind::Udp,
    }
}

fn media(ip: &str) -> LocalMedia {
    LocalMedia {
        address: ip.parse().expect("ip"),
        rtp_port: 40_000,
        codecs: vec![Codec::Pcmu],
        direction: Direction::SendRecv,
        session_id: 0,
        session_version: 0,
        srtp: Default::default(),
        ice: None,
    }
}

const ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\n\
                      t=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// Dials `target` with our usual media.
fn dial(ua: &mut UserAgent, target: &str, now: Instant) {
    ua.handle_command(
        Command::Dial {
            target: target.parse().expect("uri"),
            media: media("192.0.2.50"),
        },
        now,
    );
}

/// The 200 for `invite`, with Bob's Contact and these Record-Route values.
fn ok_from_bob(invite: &Request, record_route: &[&str]) -> Vec<u8> {
    let mut extra = vec![
        ("Contact", format!("<sip:bob@{BOB}>")),
        ("Content-Type", "application/sdp".to_string()),
    ];
    for rr in record_route {
        extra.push(("Record-Route", rr.to_string()));
    }
    let mut bytes = reply(invite, 200, "OK", &extra);
    // `reply` ends the head with an empty Content-Length; put the SDP in.
    let text = String::from_utf8(bytes).expect("utf8");
    let text = text.replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{ANSWER}", ANSWER.len()),
    );
    bytes = text.into_bytes();
    bytes
}

fn alice_with_proxy() -> UserAgent {
    user_agent(&AccountSpec {
        registrar: None,
        outbound_proxy: Some("sip:192.0.2.10:5060"),
        local: "192.0.2.50:5062",
        ..AccountSpec::default()
    })
}

fn only(out: Vec<(Destination, Request)>, method: Method) -> Vec<(Destination, Request)> {
    out.into_iter()
        .filter(|(_, r)| r.method == method)
        .collect()
}

fn routes(request: &Request) -> Vec<String> {
    request
        .headers
        .get_all("Route")
        .map(str::to_string)
        .collect()
}

/// Dials `target` and answers the INVITE with a 200 (Bob's Contact, `record_route`); returns
/// what Alice sent after the 200 and the INVITE as sent.
fn answered_call(
    ua: &mut UserAgent,
    now: Instant,
    target: &str,
    record_route: &[&str],
) -> (Vec<(Destination, Request)>, (Destination, Request)) {
    dial(ua, target, now);
    let invite = only(requests(ua), Method::Invite).remove(0);
    ua.handle_datagram(invite.0, &ok_from_bob(&invite.1, record_route), now);
    (requests(ua), invite)
}

#[test]
fn the_outbound_proxy_is_a_preloaded_route_outside_dialogs_only() {
    let mut ua = alice_with_proxy();
    let now = Instant::now();
    let (after_ok, (invite_dest, invite)) = answered_call(&mut ua, now, "sip:bob@biloxi.test", &[]);
    // The INVITE goes to the proxy with `Route: <proxy;lr>`; its Request-URI stays Bob's.
    assert_eq!(invite_dest, udp(PROXY));
    assert_eq!(routes(&invite), vec!["<sip:192.0.2.10:5060;lr>"]);
    assert_eq!(invite.uri.to_string(), "sip:bob@biloxi.test");
    // No Record-Route: the ACK goes to Bob's Contact, end to end, without Route.
    let acks = only(after_ok, Method::Ack);
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].0, udp(BOB));
    assert!(routes(&acks[0].1).is_empty(), "{:?}", acks[0].1);
    assert_eq!(acks[0].1.uri.to_string(), format!("sip:bob@{BOB}"));
    // And so does the BYE.
    ua.handle_command(Command::Hangup { call: None }, now);
    let byes = only(requests(&mut ua), Method::Bye);
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].0, udp(BOB));
    assert!(routes(&byes[0].1).is_empty());
}

#[test]
fn record_routed_dialogs_send_ack_and_bye_through_the_proxies_in_reverse_order() {
    let mut ua = alice_with_proxy();
    let now = Instant::now();
    // Bob's proxy record-routed first (it is last in the list the 200 carries back).
    let (after_ok, _) = answered_call(
        &mut ua,
        now,
        "sip:bob@biloxi.test",
        &["<sip:203.0.113.9;lr>", "<sip:192.0.2.10:5060;lr>"],
    );
    let acks = only(after_ok, Method::Ack);
    assert_eq!(acks[0].0, udp(PROXY));
    assert_eq!(
        routes(&acks[0].1),
        vec!["<sip:192.0.2.10:5060;lr>", "<sip:203.0.113.9;lr>"]
    );
    assert_eq!(acks[0].1.uri.to_string(), format!("sip:bob@{BOB}"));
    ua.handle_command(Command::Hangup { call: None }, now);
    let byes = only(requests(&mut ua), Method::Bye);
    assert_eq!(byes[0].0, udp(PROXY));
    assert_eq!(routes(&byes[0].1), routes(&acks[0].1));
}

#[test]
fn a_strict_router_gets_the_request_uri_and_the_remote_target_goes_last() {
    let mut ua = alice_with_proxy();
    let now = Instant::now();
    let (after_ok, _) = answered_call(
        &mut ua,
        now,
        "sip:bob@biloxi.test",
        &["<sip:203.0.113.9;lr>", "<sip:192.0.2.77:5070>"],
    );
    let acks = only(after_ok, Method::Ack);
    // RFC 3261 §12.2.1.1: the strict router is first; it is the Request-URI and the next hop.
    assert_eq!(acks[0].0, udp("192.0.2.77:5070"));
    assert_eq!(acks[0].1.uri.to_string(), "sip:192.0.2.77:5070");
    assert_eq!(
        routes(&acks[0].1),
        vec![
            "<sip:203.0.113.9;lr>".to_string(),
            format!("<sip:bob@{BOB}>")
        ]
    );
}

#[test]
fn a_callee_sends_its_bye_along_the_record_route_in_order() {
    let mut ua = user_agent(&AccountSpec {
        registrar: None,
        outbound_proxy: Some("sip:192.0.2.10:5060"),
        local: "192.0.2.50:5062",
        ..AccountSpec::default()
    });
    let now = Instant::now();
    let invite = format!(
        "INVITE sip:alice@192.0.2.50:5062 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKproxy1\r\n\
         Via: SIP/2.0/UDP {BOB};branch=z9hG4bKbob1\r\n\
         Record-Route: <sip:192.0.2.10:5060;lr>\r\n\
         Record-Route: <sip:203.0.113.9;lr>\r\n\
         Max-Forwards: 69\r\n\
         From: <sip:bob@biloxi.test>;tag=b1\r\n\
         To: <sip:alice@atlanta.test>\r\n\
         Call-ID: rr-callee\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:bob@{BOB}>\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{ANSWER}",
        ANSWER.len()
    );
    ua.handle_datagram(udp(PROXY), invite.as_bytes(), now);
    ua.handle_command(
        Command::Answer {
            call: None,
            media: media("192.0.2.50"),
        },
        now,
    );
    ua.handle_command(Command::Hangup { call: None }, now);
    let byes = only(requests(&mut ua), Method::Bye);
    // UAS: the route set is the Record-Route list in order (RFC 3261 §12.1.1).
    assert_eq!(byes[0].0, udp(PROXY));
    assert_eq!(
        routes(&byes[0].1),
        vec!["<sip:192.0.2.10:5060;lr>", "<sip:203.0.113.9;lr>"]
    );
    assert_eq!(byes[0].1.uri.to_string(), format!("sip:bob@{BOB}"));
}

/// A UA with no proxy: requests go where their URI says.
fn direct_ua() -> UserAgent {
    user_agent(&AccountSpec {
        registrar: None,
        outbound_proxy: None,
        local: "192.0.2.50:5062",
        ..AccountSpec::default()
    })
}

fn key(host: &str) -> HopKey {
    HopKey {
        host: host.into(),
        port: None,
        transport: None,
        secure: false,
    }
}

fn call_states(events: &[UaEvent]) -> Vec<(CallState, Option<u16>, Option<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Call {
                state,
                code,
                reason,
                ..
            } => Some((*state, *code, reason.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_host_name_waits_for_dns_and_the_answer_is_cached_for_its_ttl() {
    let mut ua = direct_ua();
    let now = Instant::now();
    dial(&mut ua, "sip:bob@Biloxi.TEST", now);
    assert!(
        requests(&mut ua).is_empty(),
        "nothing goes before DNS answers"
    );
    assert_eq!(ua.poll_resolve(), Some(key("biloxi.test")));
    assert_eq!(ua.poll_resolve(), None);
    ua.handle_resolved(
        &key("biloxi.test"),
        Ok((vec![udp(BOB)], Duration::from_secs(300))),
        now,
    );
    let invites = only(requests(&mut ua), Method::Invite);
    assert_eq!(invites.len(), 1);
    assert_eq!(invites[0].0, udp(BOB));
    ua.handle_command(Command::Hangup { call: None }, now);
    // A second call within the TTL asks DNS nothing.
    let later = after(now, 299.0);
    dial(&mut ua, "sip:carol@biloxi.test", later);
    assert_eq!(ua.poll_resolve(), None);
    assert_eq!(only(requests(&mut ua), Method::Invite)[0].0, udp(BOB));
    // Past it, the name is resolved again.
    dial(&mut ua, "sip:dave@biloxi.test", after(now, 301.0));
    assert_eq!(ua.poll_resolve(), Some(key("biloxi.test")));
}

#[test]
fn a_name_without_records_fails_the_call_with_the_reason() {
    let mut ua = direct_ua();
    let now = Instant::now();
    dial(&mut ua, "sip:bob@nowhere.test", now);
    let key = ua.poll_resolve().expect("a lookup");
    ua.handle_resolved(
        &key,
        Err("nowhere.test: no NAPTR, SRV, A or AAAA records".into()),
        now,
    );
    let states = call_states(&events(&mut ua));
    let last = states.last().expect("a call event");
    assert_eq!(last.0, CallState::Terminated);
    assert_eq!(last.1, Some(503));
    let reason = last.2.clone().unwrap_or_default();
    assert!(
        reason.contains("nowhere.test") && reason.contains("no NAPTR"),
        "{reason}"
    );
    assert!(requests(&mut ua).is_empty());
}

#[test]
fn hanging_up_while_dns_runs_sends_no_invite() {
    let mut ua = direct_ua();
    let now = Instant::now();
    dial(&mut ua, "sip:bob@slow.test", now);
    let key = ua.poll_resolve().expect("a lookup");
    ua.handle_command(Command::Hangup { call: None }, now);
    assert_eq!(
        call_states(&events(&mut ua)).last().map(|s| s.0),
        Some(CallState::Terminated)
    );
    ua.handle_resolved(&key, Ok((vec![udp(BOB)], Duration::from_secs(60))), now);
    assert!(requests(&mut ua).is_empty(), "the INVITE never goes");
}

#[test]
fn a_dead_first_server_times_out_and_the_next_one_gets_the_invite() {
    let mut ua = direct_ua();
    let mut now = Instant::now();
    let start = now;
    dial(&mut ua, "sip:bob@biloxi.test", now);
    let key = ua.poll_resolve().expect("a lookup");
    let (dead, alive) = (udp("198.51.100.1:5060"), udp("198.51.100.2:5060"));
    ua.handle_resolved(&key, Ok((vec![dead, alive], Duration::from_secs(600))), now);
    // Timer B (64*T1 = 32 s) runs out on the dead one; then the INVITE goes to the next,
    // with a new branch.
    let out = run_until(&mut ua, &mut now, after(start, 40.0));
    let invites: Vec<(Destination, Request)> = out
        .into_iter()
        .filter_map(|(d, m)| match m {
            Message::Request(r) if r.method == Method::Invite => Some((d, r)),
            _ => None,
        })
        .collect();
    assert!(invites.iter().any(|(d, _)| *d == dead));
    let to_alive: Vec<_> = invites.iter().filter(|(d, _)| *d == alive).collect();
    assert!(!to_alive.is_empty(), "{invites:?}");
    let branch = |r: &Request| {
        r.headers
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
    };
    assert_ne!(branch(&invites[0].1), branch(&to_alive[0].1));
    assert_eq!(
        call_states(&events(&mut ua)).last().map(|s| s.0),
        Some(CallState::Calling),
        "the call goes on"
    );
}

#[test]
fn a_503_or_a_transport_error_moves_on_at_once_and_the_live_server_goes_first_next_time() {
    let mut ua = user_agent(&AccountSpec {
        registrar: Some("sip:atlanta.test"),
        outbound_proxy: None,
        password: None,
        local: "192.0.2.50:5062",
        expires: 600,
        ..AccountSpec::default()
    });
    let now = Instant::now();
    ua.handle_command(Command::Register, now);
    let key = ua.poll_resolve().expect("the registrar's lookup");
    assert_eq!(key.host, "atlanta.test");
    let (a, b, c) = (
        udp("192.0.2.1:5060"),
        udp("192.0.2.2:5060"),
        udp("192.0.2.3:5060"),
    );
    ua.handle_resolved(&key, Ok((vec![a, b, c], Duration::from_secs(3600))), now);
    let first = only(requests(&mut ua), Method::Register).remove(0);
    assert_eq!(first.0, a);
    // `a` is overloaded: 503 -> `b` at once.
    ua.handle_datagram(a, &reply(&first.1, 503, "Service Unavailable", &[]), now);
    let second = only(requests(&mut ua), Method::Register).remove(0);
    assert_eq!(second.0, b);
    // `b` is unreachable (ICMP, a closed connection): -> `c` at once.
    ua.handle_transport_error(b, now);
    let third = only(requests(&mut ua), Method::Register).remove(0);
    assert_eq!(third.0, c);
    let contact = "<sip:alice@192.0.2.50:5062>;expires=600".to_string();
    ua.handle_datagram(c, &reply(&third.1, 200, "OK", &[("Contact", contact)]), now);
    assert_eq!(ua.registration_state(), Some(RegistrationState::Registered));
    assert_eq!(ua.registration_flow(), Some(c));
    // The refresh goes to `c` first, not to the dead servers again.
    ua.handle_command(Command::Register, after(now, 1.0));
    assert_eq!(only(requests(&mut ua), Method::Register)[0].0, c);
}

#[test]
fn a_registrar_that_cannot_be_resolved_fails_with_the_reason_and_is_tried_again() {
    let mut ua = user_agent(&AccountSpec {
        registrar: Some("sip:atlanta.test"),
        outbound_proxy: None,
        local: "192.0.2.50:5062",
        ..AccountSpec::default()
    });
    let mut now = Instant::now();
    let start = now;
    ua.handle_command(Command::Register, now);
    let key = ua.poll_resolve().expect("a lookup");
    ua.handle_resolved(
        &key,
        Err("atlanta.test: DNS server did not answer".into()),
        now,
    );
    let failed = events(&mut ua)
        .into_iter()
        .find_map(|e| match e {
            UaEvent::Registration {
                state: RegistrationState::Failed,
                reason,
                ..
            } => reason,
            _ => None,
        })
        .expect("a failed registration");
    assert!(failed.contains("atlanta.test"), "{failed}");
    // Back-off, then a new lookup (the laptop may be online by now).
    run_until(&mut ua, &mut now, after(start, 31.0));
    assert_eq!(ua.poll_resolve(), Some(key));
}

#[test]
fn the_proxy_addresses_dns_gives_are_trusted_for_incoming_calls() {
    let mut ua = user_agent(&AccountSpec {
        registrar: Some("sip:atlanta.test"),
        outbound_proxy: None,
        password: None,
        local: "192.0.2.50:5062",
        ..AccountSpec::default()
    });
    ua.set_source_policy(AcceptFrom::Proxy, std::iter::empty());
    let now = Instant::now();
    let invite = |branch: &str| {
        format!(
            "INVITE sip:alice@192.0.2.50:5062 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 69\r\n\
             From: <sip:bob@biloxi.test>;tag=b1\r\n\
             To: <sip:alice@atlanta.test>\r\n\
             Call-ID: trust-{branch}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:bob@{BOB}>\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let codes = |ua: &mut UserAgent| -> Vec<u16> {
        common::sim::responses(ua)
            .into_iter()
            .map(|(_, r)| r.code)
            .collect()
    };
    ua.handle_datagram(udp("192.0.2.1:5060"), invite("a").as_bytes(), now);
    assert_eq!(codes(&mut ua), vec![403], "unknown before DNS");
    ua.handle_command(Command::Register, now);
    let key = ua.poll_resolve().expect("the registrar's lookup");
    ua.handle_resolved(
        &key,
        Ok((vec![udp("192.0.2.1:5060")], Duration::from_secs(60))),
        now,
    );
    requests(&mut ua);
    ua.handle_datagram(udp("192.0.2.1:5060"), invite("b").as_bytes(), now);
    assert_eq!(codes(&mut ua), vec![180]);
}

/// A routing table for the UA: which local IP goes where (changeable, like a laptop's).
#[derive(Clone, Default)]
struct Table(Arc<Mutex<HashMap<IpAddr, IpAddr>>>);

impl Table {
    fn set(&self, dest: &str, local: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(dest.parse().expect("ip"), local.parse().expect("ip"));
        }
    }
}

impl LocalRoutes for Table {
    fn local_ip_toward(&self, dest: IpAddr) -> Option<IpAddr> {
        self.0.lock().ok()?.get(&dest).copied()
    }
}

fn via_host(request: &Request) -> String {
    let via = request.headers.top_via().expect("via");
    format!("{}:{}", via.host, via.port.unwrap_or(5060))
}

#[test]
fn on_a_wildcard_address_each_destination_gets_the_interface_that_routes_to_it() {
    let table = Table::default();
    table.set("192.168.1.20", "192.168.1.10");
    table.set("10.8.0.1", "10.8.0.2");
    let mut ua = user_agent(&AccountSpec {
        registrar: None,
        outbound_proxy: None,
        local: "0.0.0.0:5060",
        ..AccountSpec::default()
    });
    ua.set_local_routes(Box::new(table.clone()));
    let now = Instant::now();
    for (peer, local) in [("192.168.1.20", "192.168.1.10"), ("10.8.0.1", "10.8.0.2")] {
        ua.handle_command(
            Command::Dial {
                target: format!("sip:bob@{peer}").parse().expect("uri"),
                media: media("0.0.0.0"),
            },
            now,
        );
        let (dest, invite) = only(requests(&mut ua), Method::Invite).remove(0);
        assert_eq!(dest.addr.ip().to_string(), peer);
        assert_eq!(via_host(&invite), format!("{local}:5060"));
        let contact = invite
            .headers
            .get("Contact")
            .unwrap_or_default()
            .to_string();
        assert_eq!(contact, format!("<sip:alice@{local}:5060>"));
        let sdp = String::from_utf8_lossy(&invite.body).to_string();
        assert!(sdp.contains(&format!("c=IN IP4 {local}")), "{sdp}");
        assert!(sdp.contains("o=- ") && !sdp.contains("0.0.0.0"), "{sdp}");
        ua.handle_command(Command::Hangup { call: None }, now);
        requests(&mut ua);
    }
}

#[test]
fn a_new_network_renews_the_registration_with_the_new_address() {
    let table = Table::default();
    table.set("192.0.2.1", "192.168.1.10");
    let mut ua = user_agent(&AccountSpec {
        registrar: Some("sip:192.0.2.1"),
        outbound_proxy: None,
        password: None,
        local: "0.0.0.0:5060",
        ..AccountSpec::default()
    });
    ua.set_local_routes(Box::new(table.clone()));
    let mut now = Instant::now();
    let start = now;
    ua.handle_command(Command::Register, now);
    let (dest, register) = only(requests(&mut ua), Method::Register).remove(0);
    assert_eq!(
        register.headers.get("Contact"),
        Some("<sip:alice@192.168.1.10:5060>;expires=600")
    );
    ua.handle_datagram(
        dest,
        &reply(
            &register,
            200,
            "OK",
            &[(
                "Contact",
                "<sip:alice@192.168.1.10:5060>;expires=600".to_string(),
            )],
        ),
        now,
    );
    assert_eq!(ua.registration_state(), Some(RegistrationState::Registered));
    // Nothing changes: no REGISTER until the refresh.
    let quiet = run_until(&mut ua, &mut now, after(start, 20.0));
    assert!(quiet.is_empty(), "{quiet:?}");
    // The laptop joins another network.
    table.set("192.0.2.1", "10.0.0.7");
    let out = run_until(
        &mut ua,
        &mut now,
        after(start, 20.0) + ROUTE_CHECK_INTERVAL + Duration::from_millis(1),
    );
    let register = out
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::Request(r) if r.method == Method::Register => Some(r),
            _ => None,
        })
        .expect("a REGISTER after the change");
    assert_eq!(
        register.headers.get("Contact"),
        Some("<sip:alice@10.0.0.7:5060>;expires=600")
    );
    assert!(via_host(&register).starts_with("10.0.0.7:"));
    assert!(events(&mut ua).iter().any(|e| matches!(
        e,
        UaEvent::LocalAddressChanged { old, new }
            if old.to_string() == "192.168.1.10" && new.to_string() == "10.0.0.7"
    )));
}

#[test]
fn the_media_task_learns_where_the_peer_signals_from() {
    let mut ua = alice_with_proxy();
    let now = Instant::now();
    answered_call(&mut ua, now, "sip:bob@biloxi.test", &[]);
    let peers = events(&mut ua)
        .into_iter()
        .find_map(|e| match e {
            UaEvent::MediaStart { params, .. } => Some(params.peer_signalling),
            _ => None,
        })
        .expect("media starts");
    // Bob's Contact: behind a NAT his RTP comes from there, and may be latched onto.
    assert_eq!(peers, vec!["198.51.100.20".parse::<IpAddr>().expect("ip")]);
}
