//! Call flows between sans-IO user agents in virtual time (tests/common/pair.rs): the RFC 3261
//! message sequences on the wire and the call events a user sees, including loss, glare,
//! redirects, digest challenges and timeouts. No sockets, no sleeps; every wait is bounded in
//! virtual time.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::pair::*;
use common::sim::reply;
use sipterm::sdp::{self, Codec, Direction};
use sipterm::sip::auth;
use sipterm::sip::message::{Method, Request};
use sipterm::sip::ua::{CallState, Command, NO_ANSWER_TIMEOUT, UaEvent};

const T1: f64 = 0.5;
const A_RTP: u16 = 40000;
const B_RTP: u16 = 40002;
const C_RTP: u16 = 40004;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn tag_of(value: Option<&str>) -> Option<String> {
    let value = value?;
    value
        .split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_string))
}

fn from_tag(r: &Record) -> String {
    tag_of(r.msg.headers().get("From")).expect("From tag")
}

fn to_tag(r: &Record) -> Option<String> {
    tag_of(r.msg.headers().get("To"))
}

fn branch(r: &Record) -> String {
    r.msg
        .headers()
        .top_via()
        .expect("Via")
        .branch()
        .expect("branch")
        .to_string()
}

fn call_id(r: &Record) -> String {
    r.msg.headers().call_id().expect("Call-ID").to_string()
}

fn contact_uri(r: &Record) -> String {
    r.msg
        .headers()
        .contacts()
        .expect("Contact")
        .into_iter()
        .next()
        .expect("one Contact")
        .uri
        .to_string()
}

fn body(r: &Record) -> String {
    String::from_utf8_lossy(r.msg.body()).into_owned()
}

/// Delivered messages, ignoring 100 Trying (optional by RFC 3261 §8.2.6.1 when the TU answers
/// quickly).
fn seq_without_trying(pair: &Pair) -> Vec<(String, String)> {
    pair.sequence()
        .into_iter()
        .filter(|(_, l)| !l.starts_with("100 "))
        .collect()
}

fn s(who: &str, what: &str) -> (String, String) {
    (who.to_string(), what.to_string())
}

fn media_starts(node: &Node) -> Vec<sipterm::sdp::MediaParams> {
    node.events
        .iter()
        .filter_map(|e| match e {
            UaEvent::MediaStart { params, .. } => Some(params.clone()),
            _ => None,
        })
        .collect()
}

fn media_updates(node: &Node) -> Vec<sipterm::sdp::MediaParams> {
    node.events
        .iter()
        .filter_map(|e| match e {
            UaEvent::MediaUpdate { params, .. } => Some(params.clone()),
            _ => None,
        })
        .collect()
}

fn has_state(node: &Node, state: CallState) -> bool {
    node.call_states().contains(&state)
}

/// alice dials bob, bob answers; both confirmed.
fn established() -> Pair {
    let mut pair = Pair::new();
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| has_state(
            &p.a,
            CallState::Ringing
        )),
        "alice never heard ringing:\n{pair:?}"
    );
    pair.answer(Side::B, B_RTP);
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| p.a.last_state()
            == Some(CallState::Confirmed)
            && p.b.last_state() == Some(CallState::Confirmed)),
        "call not confirmed:\n{pair:?}"
    );
    // Let the 2xx/ACK settle.
    pair.run_secs(1.0);
    pair
}

/// A request inside the alice-bob dialog written by hand as if alice sent it, with its Via
/// pointing at `via` (an address no UA owns, so the answer lands in `wire.unrouted`).
fn alice_request(pair: &Pair, method: &str, cseq: u32, via: SocketAddr, extra: &str) -> String {
    let invite = pair.wire.find(|r| r.is_request(&Method::Invite))[0].clone();
    let ok = pair.wire.find(|r| r.is_response(200, &Method::Invite))[0].clone();
    let from = invite.msg.headers().get("From").expect("From").to_string();
    let to = ok.msg.headers().get("To").expect("To").to_string();
    format!(
        "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch=z9hG4bKhand{cseq}{method}\r\n\
         Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@{A_ADDR}>\r\n{extra}",
        target = contact_uri(&ok),
        cid = call_id(&invite),
    )
}

fn with_body(head: String, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "{head}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn without_body(head: String) -> Vec<u8> {
    format!("{head}Content-Length: 0\r\n\r\n").into_bytes()
}

// ------------------------------------------------------------------------------------ basic

#[test]
fn basic_call_sequence_tags_cseq_and_targets() {
    let mut pair = established();
    assert_eq!(
        seq_without_trying(&pair),
        vec![
            s("alice", "INVITE"),
            s("bob", "180 INVITE"),
            s("bob", "200 INVITE"),
            s("alice", "ACK"),
        ],
        "{pair:?}"
    );
    let invite = pair.wire.find(|r| r.is_request(&Method::Invite))[0].clone();
    let ringing = pair.wire.find(|r| r.is_response(180, &Method::Invite))[0].clone();
    let ok = pair.wire.find(|r| r.is_response(200, &Method::Invite))[0].clone();
    let ack = pair.wire.find(|r| r.is_request(&Method::Ack))[0].clone();

    // Dialog identifiers: alice's From tag throughout, bob's To tag from the 180 on.
    assert_eq!(to_tag(&invite), None, "an initial INVITE has no To tag");
    let a_tag = from_tag(&invite);
    let b_tag = to_tag(&ringing).expect("180 carries bob's tag");
    assert_eq!(
        to_tag(&ok).as_deref(),
        Some(b_tag.as_str()),
        "same tag in 180 and 200"
    );
    assert_eq!(from_tag(&ok), a_tag);
    assert_eq!(from_tag(&ack), a_tag);
    assert_eq!(to_tag(&ack).as_deref(), Some(b_tag.as_str()));
    assert!(
        [&ringing, &ok, &ack]
            .iter()
            .all(|r| call_id(r) == call_id(&invite)),
        "one Call-ID for the dialog"
    );
    // CSeq: the ACK for a 2xx carries the INVITE's number with method ACK.
    assert_eq!(invite.cseq(), (1, Method::Invite));
    assert_eq!(ok.cseq(), (1, Method::Invite));
    assert_eq!(ack.cseq(), (1, Method::Ack));
    // The ACK of a 2xx is a new transaction (new branch) sent to the remote target.
    assert_ne!(branch(&ack), branch(&invite));
    assert_eq!(contact_uri(&invite), format!("sip:alice@{A_ADDR}"));
    assert_eq!(contact_uri(&ok), format!("sip:bob@{B_ADDR}"));
    assert_eq!(
        ack.request().expect("ACK").uri.to_string(),
        contact_uri(&ok),
        "the ACK goes to bob's Contact (the remote target)"
    );
    assert_eq!(ack.to, addr(B_ADDR));
    // 200 and ACK both carry SDP handling: offer in INVITE, answer in 200.
    assert!(body(&invite).contains("m=audio 40000"), "{}", body(&invite));
    assert!(body(&ok).contains("m=audio 40002"), "{}", body(&ok));

    // What the users see.
    assert_eq!(
        pair.a.call_codes(),
        vec![
            (CallState::Calling, None),
            (CallState::Ringing, Some(180)),
            (CallState::Confirmed, Some(200))
        ]
    );
    assert_eq!(
        pair.b.call_states(),
        vec![CallState::Incoming, CallState::Confirmed]
    );
    let a_media = media_starts(&pair.a);
    let b_media = media_starts(&pair.b);
    assert_eq!(a_media.len(), 1);
    assert_eq!(b_media.len(), 1);
    assert_eq!(a_media[0].remote, addr("127.0.0.1:40002"));
    assert_eq!(b_media[0].remote, addr("127.0.0.1:40000"));
    assert_eq!(a_media[0].codec, Codec::Opus);
    assert_eq!(b_media[0].codec, Codec::Opus);

    // alice hangs up: BYE with the next CSeq, to bob's Contact, answered 200.
    let before = pair.wire.log.len();
    pair.command(Side::A, Command::Hangup { call: None });
    pair.run_secs(40.0);
    let after: Vec<_> = pair.wire.log[before..].to_vec();
    assert_eq!(
        after.iter().map(Record::label).collect::<Vec<_>>(),
        vec!["BYE", "200 BYE"],
        "exactly one BYE and its 200, nothing retransmitted:\n{pair:?}"
    );
    let bye = &after[0];
    assert_eq!(bye.cseq(), (2, Method::Bye));
    assert_eq!(from_tag(bye), a_tag);
    assert_eq!(to_tag(bye).as_deref(), Some(b_tag.as_str()));
    assert_eq!(
        bye.request().expect("BYE").uri.to_string(),
        contact_uri(&ok)
    );
    assert_eq!(call_id(bye), call_id(&invite));
    assert_eq!(pair.a.last_state(), Some(CallState::Terminated));
    assert_eq!(pair.b.last_state(), Some(CallState::Terminated));
    for node in [&pair.a, &pair.b] {
        assert!(
            node.events
                .iter()
                .any(|e| matches!(e, UaEvent::MediaStop { .. })),
            "{} got no MediaStop",
            node.name
        );
        assert_eq!(node.ua.call_count(), 0);
        assert!(node.errors().is_empty(), "{:?}", node.errors());
    }
    pair.print_ladder("basic call");
}

#[test]
fn callee_hangs_up() {
    let mut pair = established();
    let ok = pair.wire.find(|r| r.is_response(200, &Method::Invite))[0].clone();
    let invite = pair.wire.find(|r| r.is_request(&Method::Invite))[0].clone();
    let before = pair.wire.log.len();
    pair.command(Side::B, Command::Hangup { call: None });
    pair.run_secs(40.0);
    let after: Vec<_> = pair.wire.log[before..].to_vec();
    assert_eq!(
        after.iter().map(Record::label).collect::<Vec<_>>(),
        vec!["BYE", "200 BYE"],
        "{pair:?}"
    );
    let bye = &after[0];
    assert_eq!(bye.from, addr(B_ADDR));
    // bob's first own request in the dialog: his CSeq space is independent of alice's.
    assert_eq!(bye.cseq().1, Method::Bye);
    // From/To swap: bob's tag in From, alice's in To.
    assert_eq!(Some(from_tag(bye)), to_tag(&ok));
    assert_eq!(to_tag(bye), Some(from_tag(&invite)));
    assert_eq!(
        bye.request().expect("BYE").uri.to_string(),
        contact_uri(&invite),
        "bob's BYE goes to alice's Contact"
    );
    assert_eq!(pair.a.last_state(), Some(CallState::Terminated));
    assert_eq!(pair.b.last_state(), Some(CallState::Terminated));
    assert_eq!(pair.a.ua.call_count(), 0);
    assert_eq!(pair.b.ua.call_count(), 0);
}

// ------------------------------------------------------------------------ cancel and reject

#[test]
fn cancel_while_ringing() {
    let mut pair = Pair::new();
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
        &p.a,
        CallState::Ringing
    )));
    pair.command(Side::A, Command::Hangup { call: None });
    pair.run_secs(40.0);
    assert_eq!(
        seq_without_trying(&pair),
        vec![
            s("alice", "INVITE"),
            s("bob", "180 INVITE"),
            s("alice", "CANCEL"),
            s("bob", "200 CANCEL"),
            s("bob", "487 INVITE"),
            s("alice", "ACK"),
        ],
        "{pair:?}"
    );
    let invite = pair.wire.find(|r| r.is_request(&Method::Invite))[0].clone();
    let cancel = pair.wire.find(|r| r.is_request(&Method::Cancel))[0].clone();
    let terminated = pair.wire.find(|r| r.is_response(487, &Method::Invite))[0].clone();
    let ack = pair.wire.find(|r| r.is_request(&Method::Ack))[0].clone();
    // RFC 3261 §9.1: the CANCEL matches the INVITE: same branch, Request-URI, Call-ID, From,
    // CSeq number, and no To tag.
    assert_eq!(branch(&cancel), branch(&invite));
    assert_eq!(cancel.request().unwrap().uri, invite.request().unwrap().uri);
    assert_eq!(cancel.cseq(), (1, Method::Cancel));
    assert_eq!(call_id(&cancel), call_id(&invite));
    assert_eq!(from_tag(&cancel), from_tag(&invite));
    assert_eq!(to_tag(&cancel), None);
    // §17.1.1.3: the ACK for a non-2xx belongs to the INVITE transaction.
    assert_eq!(branch(&ack), branch(&invite));
    assert_eq!(ack.cseq(), (1, Method::Ack));
    assert_eq!(to_tag(&ack), to_tag(&terminated));
    assert_eq!(ack.request().unwrap().uri, invite.request().unwrap().uri);

    assert_eq!(pair.a.last_state(), Some(CallState::Terminated));
    assert_eq!(
        pair.b.call_codes().last(),
        Some(&(CallState::Terminated, Some(487)))
    );
    assert_eq!(pair.a.ua.call_count(), 0);
    assert_eq!(pair.b.ua.call_count(), 0);
    pair.print_ladder("cancel");
}

#[test]
fn hangup_before_any_provisional_cancels_once_one_arrives() {
    let mut pair = Pair::new();
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    // Same instant: nothing has come back yet, so a CANCEL may not be sent (RFC 3261 §9.1).
    pair.command(Side::A, Command::Hangup { call: None });
    assert!(
        pair.wire.find(|r| r.is_request(&Method::Cancel)).is_empty(),
        "CANCEL before any provisional response:\n{pair:?}"
    );
    pair.run_secs(40.0);
    assert_eq!(
        seq_without_trying(&pair),
        vec![
            s("alice", "INVITE"),
            s("bob", "180 INVITE"),
            s("alice", "CANCEL"),
            s("bob", "200 CANCEL"),
            s("bob", "487 INVITE"),
            s("alice", "ACK"),
        ],
        "{pair:?}"
    );
    assert_eq!(pair.a.last_state(), Some(CallState::Terminated));
    assert_eq!(pair.b.last_state(), Some(CallState::Terminated));
    assert_eq!(pair.a.ua.call_count() + pair.b.ua.call_count(), 0);
}

#[test]
fn cancel_crossing_the_200_ends_the_call_with_bye() {
    let mut pair = Pair::new();
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
        &p.a,
        CallState::Ringing
    )));
    // bob answers while alice's CANCEL is on its way.
    let now = pair.now;
    pair.a
        .ua
        .handle_command(Command::Hangup { call: None }, now);
    pair.b.ua.handle_command(
        Command::Answer {
            call: None,
            media: local_media(B_RTP, &[Codec::Opus]),
        },
        now,
    );
    pair.run_secs(40.0);
    pair.print_ladder("CANCEL crossing 200");
    let byes = pair.wire.find(|r| r.is_request(&Method::Bye));
    assert_eq!(
        byes.len(),
        1,
        "alice ends the answered call with one BYE:\n{pair:?}"
    );
    assert_eq!(byes[0].from, addr(A_ADDR));
    assert!(
        pair.wire
            .find(|r| r.is_response(487, &Method::Invite))
            .is_empty()
    );
    let acks = pair.wire.find(|r| r.is_request(&Method::Ack));
    assert_eq!(acks.len(), 1, "the 200 is ACKed before the BYE");
    assert_eq!(
        pair.wire.find(|r| r.is_response(200, &Method::Bye)).len(),
        1
    );
    assert!(
        !pair.a.call_states().contains(&CallState::Confirmed),
        "alice hung up; she is never shown a connected call: {:?}",
        pair.a.call_states()
    );
    assert_eq!(pair.a.last_state(), Some(CallState::Terminated));
    assert_eq!(pair.b.last_state(), Some(CallState::Terminated));
    assert_eq!(pair.a.ua.call_count() + pair.b.ua.call_count(), 0);
    // No 200 retransmissions after the ACK.
    assert_eq!(
        pair.wire
            .find(|r| r.is_response(200, &Method::Invite))
            .len(),
        1
    );
}

#[test]
fn reject_busy_and_decline() {
    for code in [486u16, 603] {
        let mut pair = Pair::new();
        let bob = pair.b.uri();
        pair.dial(Side::A, bob, A_RTP);
        assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
            &p.b,
            CallState::Incoming
        )));
        pair.command(Side::B, Command::Reject { call: None, code });
        pair.run_secs(40.0);
        let final_label = format!("{code} INVITE");
        assert_eq!(
            seq_without_trying(&pair),
            vec![
                s("alice", "INVITE"),
                s("bob", "180 INVITE"),
                s("bob", &final_label),
                s("alice", "ACK"),
            ],
            "{pair:?}"
        );
        let invite = pair.wire.find(|r| r.is_request(&Method::Invite))[0].clone();
        let ack = pair.wire.find(|r| r.is_request(&Method::Ack))[0].clone();
        assert_eq!(branch(&ack), branch(&invite));
        assert_eq!(
            pair.a.call_codes().last(),
            Some(&(CallState::Terminated, Some(code))),
            "alice is told why: {:?}",
            pair.a.events
        );
        assert_eq!(pair.b.last_state(), Some(CallState::Terminated));
        assert_eq!(pair.a.ua.call_count(), 0);
        assert_eq!(pair.b.ua.call_count(), 0);
    }
}

#[test]
fn no_common_codec_is_488_without_ringing() {
    let mut pair = Pair::with_codecs(&[Codec::Pcma], &[Codec::Opus]);
    let bob = pair.b.uri();
    pair.command(
        Side::A,
        Command::Dial {
            target: bob,
            media: local_media(A_RTP, &[Codec::Pcma]),
        },
    );
    pair.run_secs(40.0);
    let invite = pair.wire.find(|r| r.is_request(&Method::Invite))[0].clone();
    assert!(body(&invite).contains("PCMA/8000") && !body(&invite).contains("opus"));
    assert_eq!(
        seq_without_trying(&pair),
        vec![
            s("alice", "INVITE"),
            s("bob", "488 INVITE"),
            s("alice", "ACK")
        ],
        "{pair:?}"
    );
    assert!(
        pair.b.call_states().is_empty(),
        "bob's phone must not ring: {:?}",
        pair.b.events
    );
    assert_eq!(
        pair.a.call_codes().last(),
        Some(&(CallState::Terminated, Some(488)))
    );
    assert!(media_starts(&pair.a).is_empty());
}

// ------------------------------------------------------------------- 2xx retransmission

#[test]
fn ok_is_retransmitted_until_the_ack_arrives() {
    let mut pair = Pair::new();
    // Lose alice's first three ACKs.
    let mut acks = 0;
    pair.wire.drop_when(move |r| {
        if r.is_request(&Method::Ack) {
            acks += 1;
            acks <= 3
        } else {
            false
        }
    });
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
        &p.b,
        CallState::Incoming
    )));
    pair.answer(Side::B, B_RTP);
    pair.run_secs(40.0);
    let oks = pair.wire.find(|r| r.is_response(200, &Method::Invite));
    let times: Vec<f64> = oks
        .iter()
        .map(|r| (r.at - oks[0].at).as_secs_f64())
        .collect();
    println!("200 OK sent at {times:?} s (first three ACKs lost)");
    // T1, 2T1, 4T1 after the first (RFC 3261 §13.3.1.4), then the fourth ACK gets through.
    assert_eq!(oks.len(), 4, "{pair:?}");
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([T1, 2.0 * T1, 4.0 * T1]) {
        assert!((gap - want).abs() < 0.02, "gaps {gaps:?}");
    }
    let acks = pair.wire.find(|r| r.is_request(&Method::Ack));
    assert_eq!(acks.len(), 4, "one ACK per 200 received");
    assert!(acks.iter().all(|a| a.cseq() == (1, Method::Ack)));
    assert!(
        pair.wire.find(|r| r.is_request(&Method::Bye)).is_empty(),
        "{pair:?}"
    );
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed));
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed));
    // Retransmitted 200s re-ACK silently: alice sees one answer and starts media once.
    assert_eq!(
        pair.a.call_states(),
        vec![CallState::Calling, CallState::Ringing, CallState::Confirmed]
    );
    assert_eq!(media_starts(&pair.a).len(), 1);
    assert!(media_updates(&pair.a).is_empty());
}

#[test]
fn callee_sends_bye_when_no_ack_ever_comes() {
    let mut pair = Pair::new();
    pair.wire.drop_when(|r| r.is_request(&Method::Ack));
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
        &p.b,
        CallState::Incoming
    )));
    pair.answer(Side::B, B_RTP);
    pair.run_secs(60.0);
    let oks = pair.wire.find(|r| r.is_response(200, &Method::Invite));
    let first_ok = oks[0].at;
    let times: Vec<f64> = oks
        .iter()
        .map(|r| (r.at - first_ok).as_secs_f64())
        .collect();
    println!("200 OK sent at {times:?} s (every ACK lost)");
    // Intervals double from T1 and cap at T2 = 4 s.
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, gap) in gaps.iter().enumerate() {
        let want = (T1 * f64::from(1u32 << i.min(3))).min(4.0);
        assert!((gap - want).abs() < 0.02, "gaps {gaps:?}");
    }
    let byes = pair
        .wire
        .find(|r| r.is_request(&Method::Bye) && r.from == addr(B_ADDR));
    assert!(!byes.is_empty(), "bob never gave up:\n{pair:?}");
    let bye_after = (byes[0].at - first_ok).as_secs_f64();
    println!("bob's BYE {bye_after:.3} s after his first 200");
    // RFC 3261 §13.3.1.4: after 64*T1 without ACK the session is ended with BYE.
    assert!(
        (bye_after - 64.0 * T1).abs() < 0.05,
        "BYE {bye_after} s after the 200, want 64*T1 = 32 s"
    );
    assert!(
        times.iter().all(|t| *t < 64.0 * T1 + 0.01),
        "no 200 after giving up: {times:?}"
    );
    assert_eq!(pair.b.last_state(), Some(CallState::Terminated));
    assert_eq!(
        pair.a.last_state(),
        Some(CallState::Terminated),
        "alice hears the BYE"
    );
    assert!(pair.wire.find(|r| r.is_response(200, &Method::Bye)).len() == 1);
}

// ------------------------------------------------------------------------------ hold/resume

#[test]
fn hold_and_resume() {
    let mut pair = established();
    let before = pair.wire.log.len();
    pair.command(Side::A, Command::Hold { call: None });
    pair.run_secs(2.0);
    let hold: Vec<_> = pair.wire.log[before..].to_vec();
    assert_eq!(
        hold.iter()
            .filter(|r| !r.label().starts_with("100"))
            .map(Record::label)
            .collect::<Vec<_>>(),
        vec!["INVITE", "200 INVITE", "ACK"],
        "{pair:?}"
    );
    let reinvite = &hold[0];
    let ok = hold
        .iter()
        .find(|r| r.is_response(200, &Method::Invite))
        .unwrap();
    let ack = hold.iter().find(|r| r.is_request(&Method::Ack)).unwrap();
    assert_eq!(reinvite.cseq(), (2, Method::Invite));
    assert_eq!(ack.cseq(), (2, Method::Ack));
    assert!(
        to_tag(reinvite).is_some(),
        "a re-INVITE is inside the dialog"
    );
    assert!(body(reinvite).contains("a=sendonly"), "{}", body(reinvite));
    assert!(body(ok).contains("a=recvonly"), "{}", body(ok));
    assert_eq!(pair.a.last_state(), Some(CallState::Held));
    assert_eq!(pair.b.last_state(), Some(CallState::Held));
    // The SDP says sendonly (RFC 3264 hold), but with no music on hold the holder's media
    // task sends nothing: the held party must not hear the holder's microphone.
    assert_eq!(
        media_updates(&pair.a).last().unwrap().direction,
        Direction::Inactive
    );
    assert_eq!(
        media_updates(&pair.b).last().unwrap().direction,
        Direction::RecvOnly
    );

    let before = pair.wire.log.len();
    pair.command(Side::A, Command::Resume { call: None });
    pair.run_secs(2.0);
    let resume: Vec<_> = pair.wire.log[before..].to_vec();
    let reinvite2 = resume
        .iter()
        .find(|r| r.is_request(&Method::Invite))
        .unwrap();
    let ok2 = resume
        .iter()
        .find(|r| r.is_response(200, &Method::Invite))
        .unwrap();
    assert_eq!(reinvite2.cseq(), (3, Method::Invite));
    assert!(body(reinvite2).contains("a=sendrecv"));
    assert!(body(ok2).contains("a=sendrecv"));
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed));
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed));
    assert_eq!(
        media_updates(&pair.a).last().unwrap().direction,
        Direction::SendRecv
    );
    assert_eq!(
        media_updates(&pair.b).last().unwrap().direction,
        Direction::SendRecv
    );
    // o= version grows with each offer (RFC 3264 §8).
    let version = |r: &Record| -> u64 {
        body(r)
            .lines()
            .find(|l| l.starts_with("o="))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse().ok())
            .expect("o= version")
    };
    let invite = pair.wire.find(|r| r.is_request(&Method::Invite))[0].clone();
    assert!(version(&invite) < version(reinvite) && version(reinvite) < version(reinvite2));
    assert!(pair.a.errors().is_empty() && pair.b.errors().is_empty());
    pair.print_ladder("hold/resume");
}

/// The held side sees its call as held too, but cannot resume what the peer holds: a resume
/// there sends nothing and says why (it used to be silently ignored, a key press with no effect).
#[test]
fn resuming_a_call_the_peer_holds_says_only_the_peer_can() {
    let mut pair = established();
    pair.command(Side::A, Command::Hold { call: None });
    pair.run_secs(2.0);
    assert_eq!(pair.b.last_state(), Some(CallState::Held));
    let before = pair.wire.log.len();
    pair.command(Side::B, Command::Resume { call: None });
    pair.run_secs(2.0);
    assert_eq!(pair.wire.log.len(), before, "nothing sent: {pair:?}");
    assert!(
        pair.b
            .errors()
            .iter()
            .any(|e| e.contains("only it can resume")),
        "{:?}",
        pair.b.errors()
    );
    assert_eq!(pair.b.last_state(), Some(CallState::Held));
}

#[test]
fn lost_ack_of_a_reinvite_is_resent_and_the_hold_stays() {
    let mut pair = established();
    let mut acks = 0;
    pair.wire.drop_when(move |r| {
        if r.is_request(&Method::Ack) {
            acks += 1;
            acks == 1
        } else {
            false
        }
    });
    let events_before = pair.a.events.len();
    let b_events_before = pair.b.events.len();
    pair.command(Side::A, Command::Hold { call: None });
    pair.run_secs(40.0);
    let oks = pair
        .wire
        .find(|r| r.is_response(200, &Method::Invite) && r.cseq().0 == 2);
    assert_eq!(oks.len(), 2, "one retransmission of the 200:\n{pair:?}");
    let gap = (oks[1].at - oks[0].at).as_secs_f64();
    assert!((gap - T1).abs() < 0.02, "retransmitted after {gap} s");
    let acks = pair
        .wire
        .find(|r| r.is_request(&Method::Ack) && r.cseq() == (2, Method::Ack));
    assert_eq!(acks.len(), 2, "{pair:?}");
    assert!(pair.wire.find(|r| r.is_request(&Method::Bye)).is_empty());
    assert_eq!(pair.a.last_state(), Some(CallState::Held));
    assert_eq!(pair.b.last_state(), Some(CallState::Held));
    // The retransmitted 200 is not a second state change for alice.
    let a_new: Vec<_> = pair.a.events[events_before..].to_vec();
    assert_eq!(
        a_new
            .iter()
            .filter(|e| matches!(e, UaEvent::MediaUpdate { .. }))
            .count(),
        1,
        "{a_new:?}"
    );
    assert_eq!(
        a_new
            .iter()
            .filter(|e| matches!(e, UaEvent::Call { .. }))
            .count(),
        1,
        "{a_new:?}"
    );
    let b_new: Vec<_> = pair.b.events[b_events_before..].to_vec();
    assert_eq!(
        b_new
            .iter()
            .filter(|e| matches!(e, UaEvent::MediaUpdate { .. }))
            .count(),
        1,
        "{b_new:?}"
    );
}

#[test]
fn glare_both_reinvite_then_491_and_retry() {
    let mut pair = established();
    let before = pair.wire.log.len();
    // Both hold at the same instant: the re-INVITEs cross on the wire.
    let now = pair.now;
    pair.a.ua.handle_command(Command::Hold { call: None }, now);
    pair.b.ua.handle_command(Command::Hold { call: None }, now);
    pair.run_secs(10.0);
    pair.print_ladder("glare");
    let log: Vec<_> = pair.wire.log[before..].to_vec();
    let rejections: Vec<_> = log
        .iter()
        .filter(|r| r.is_response(491, &Method::Invite))
        .collect();
    assert_eq!(
        rejections.len(),
        2,
        "each side answers the other's re-INVITE with 491"
    );
    for r491 in &rejections {
        // The side that got the 491 ACKs it (same transaction) and retries 2.1-4 s later.
        let who = r491.to;
        let ack = log
            .iter()
            .find(|r| r.is_request(&Method::Ack) && r.from == who && r.at >= r491.at)
            .expect("491 ACKed");
        assert_eq!(ack.cseq().0, r491.cseq().0);
        let retry = log
            .iter()
            .find(|r| r.is_request(&Method::Invite) && r.from == who && r.at > r491.at)
            .expect("retried re-INVITE");
        let wait = (retry.at - r491.at).as_secs_f64() - LATENCY.as_secs_f64();
        println!("{who} retried {wait:.3} s after its 491");
        // RFC 3261 §14.1: the Call-ID's owner (alice, the caller) waits 2.1-4 s, bob 0-2 s.
        if who == addr(A_ADDR) {
            assert!((2.1..=4.0).contains(&wait), "alice retried after {wait} s");
        } else {
            assert!((0.0..=2.0).contains(&wait), "bob retried after {wait} s");
        }
        assert!(retry.cseq().0 > r491.cseq().0, "a retry is a new request");
        let ok = log
            .iter()
            .find(|r| {
                r.is_response(200, &Method::Invite) && r.cseq() == retry.cseq() && r.to == who
            })
            .expect("retry answered 200");
        assert!(body(ok).contains("a=recvonly") || body(ok).contains("a=inactive"));
    }
    assert!(log.iter().all(|r| !r.is_request(&Method::Bye)));
    assert_eq!(pair.a.last_state(), Some(CallState::Held));
    assert_eq!(pair.b.last_state(), Some(CallState::Held));
    assert_eq!(pair.a.ua.call_count(), 1);
}

#[test]
fn reinvite_without_sdp_offer_in_200_answer_in_ack() {
    let mut pair = established();
    let hand = addr("127.0.0.1:5099");
    let reinvite = without_body(alice_request(&pair, "INVITE", 2, hand, ""));
    pair.inject(hand, addr(B_ADDR), &reinvite);
    pair.run_secs(0.1);
    let ok = pair
        .wire
        .unrouted
        .iter()
        .find(|r| r.is_response(200, &Method::Invite))
        .cloned()
        .unwrap_or_else(|| panic!("no 200 for the bodiless re-INVITE:\n{pair:?}"));
    let offer = body(&ok);
    assert!(
        offer.contains("m=audio 40002"),
        "bob offers in the 200: {offer}"
    );
    assert!(offer.contains("a=sendrecv"));
    let updates_before = media_updates(&pair.b).len();
    // alice answers in the ACK, moving her media and picking PCMU.
    let alice_media = local_media(41000, &[Codec::Pcmu]);
    let (answer, _) = sdp::answer_offer(&offer, &alice_media).expect("answer");
    let ack = with_body(
        alice_request(&pair, "ACK", 2, hand, "").replace("z9hG4bKhand2ACK", "z9hG4bKhand2ACKx"),
        "application/sdp",
        &answer,
    );
    pair.inject(hand, addr(B_ADDR), &ack);
    pair.run_secs(5.0);
    let updates = media_updates(&pair.b);
    assert_eq!(updates.len(), updates_before + 1, "{:?}", pair.b.events);
    let update = updates.last().unwrap();
    assert_eq!(update.remote, addr("127.0.0.1:41000"));
    assert_eq!(update.codec, Codec::Pcmu);
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed));
    let oks = pair
        .wire
        .find(|r| r.is_response(200, &Method::Invite) && r.cseq().0 == 2);
    assert_eq!(
        oks.len(),
        1,
        "the ACK stops the 200's retransmission:\n{pair:?}"
    );
}

#[test]
fn reinvite_200_is_retransmitted_to_where_the_reinvite_came_from() {
    // RFC 3261 §18.2.2: responses, 2xx retransmissions included, follow the Via (the source
    // here), not the dialog's remote target: a peer behind NAT only hears them there.
    let mut pair = established();
    let hand = addr("127.0.0.1:5099");
    let reinvite = without_body(alice_request(&pair, "INVITE", 2, hand, ""));
    pair.inject(hand, addr(B_ADDR), &reinvite);
    // No ACK: bob retransmits his 200.
    pair.run_secs(1.0);
    let oks = pair
        .wire
        .find(|r| r.is_response(200, &Method::Invite) && r.cseq().0 == 2);
    assert!(oks.len() >= 2, "{pair:?}");
    assert!(
        oks.iter().all(|r| r.to == hand),
        "200 retransmissions went to {:?}:\n{pair:?}",
        oks.iter().map(|r| r.to).collect::<Vec<_>>()
    );
}

// ------------------------------------------------------------------------ INFO and REFER

#[test]
fn info_dtmf_relay_is_a_dtmf_event() {
    let mut pair = established();
    let hand = addr("127.0.0.1:5099");
    let info = with_body(
        alice_request(&pair, "INFO", 2, hand, ""),
        "application/dtmf-relay",
        "Signal=5\r\nDuration=160\r\n",
    );
    pair.inject(hand, addr(B_ADDR), &info);
    pair.run_secs(1.0);
    assert!(
        pair.wire
            .unrouted
            .iter()
            .any(|r| r.is_response(200, &Method::Info)),
        "{pair:?}"
    );
    let digits: Vec<char> = pair
        .b
        .events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Dtmf { digit, .. } => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, vec!['5']);
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed));
}

#[test]
fn refer_gets_202_notify_sipfrag_and_transfer_event() {
    let mut pair = established();
    let carol: sipterm::sip::uri::Uri = format!("sip:carol@{C_ADDR}").parse().unwrap();
    let before = pair.wire.log.len();
    pair.command(
        Side::A,
        Command::Transfer {
            call: None,
            target: carol.clone(),
        },
    );
    pair.run_secs(2.0);
    let log: Vec<_> = pair.wire.log[before..].to_vec();
    let labels: Vec<String> = log.iter().map(Record::label).collect();
    // bob is asked first: 202, but no NOTIFY and no transfer until he says yes.
    assert_eq!(labels, vec!["REFER", "202 REFER"], "{pair:?}");
    let refer = &log[0];
    assert_eq!(
        refer.msg.headers().get("Refer-To"),
        Some(format!("<{carol}>").as_str())
    );
    assert_eq!(
        refer.msg.headers().get("Referred-By"),
        Some(format!("<sip:alice@{A_ADDR}>").as_str())
    );
    assert_eq!(refer.cseq(), (2, Method::Refer));
    assert!(
        pair.b.events.iter().any(|e| matches!(e,
            UaEvent::TransferAsked { target, .. } if *target == carol)),
        "{:?}",
        pair.b.events
    );
    assert!(
        !pair
            .b
            .events
            .iter()
            .any(|e| matches!(e, UaEvent::TransferRequested { .. })),
        "followed before bob said yes"
    );
    let before = pair.wire.log.len();
    pair.command(
        Side::B,
        Command::TransferAnswer {
            call: None,
            accept: true,
        },
    );
    pair.run_secs(2.0);
    let log: Vec<_> = pair.wire.log[before..].to_vec();
    assert_eq!(
        log.iter().map(Record::label).collect::<Vec<_>>(),
        vec!["NOTIFY", "200 NOTIFY"],
        "{pair:?}"
    );
    let notify = &log[0];
    assert_eq!(notify.msg.headers().get("Event"), Some("refer"));
    assert!(
        notify
            .msg
            .headers()
            .content_type()
            .is_some_and(|c| c.starts_with("message/sipfrag")),
        "{:?}",
        notify.msg.headers().content_type()
    );
    assert!(body(notify).starts_with("SIP/2.0 100"), "{}", body(notify));
    assert!(
        pair.b.events.iter().any(|e| matches!(e,
            UaEvent::TransferRequested { target, .. } if *target == carol)),
        "{:?}",
        pair.b.events
    );
    // bob's front end reports the outcome: a final NOTIFY ends the subscription.
    let call = pair.b.ua.last_call_id().unwrap();
    let before = pair.wire.log.len();
    pair.command(
        Side::B,
        Command::TransferProgress {
            call,
            code: 200,
            last: true,
        },
    );
    pair.run_secs(1.0);
    let log: Vec<_> = pair.wire.log[before..].to_vec();
    // RFC 5589 §6.1: on the 2xx the transferor (alice) hangs up the transferred call.
    assert_eq!(
        log.iter().map(Record::label).collect::<Vec<_>>(),
        vec!["NOTIFY", "200 NOTIFY", "BYE", "200 BYE"],
        "{pair:?}"
    );
    assert_eq!(log[2].from, addr(A_ADDR));
    assert!(
        pair.a.events.iter().any(|e| matches!(
            e,
            UaEvent::TransferStatus {
                code: 200,
                done: true,
                ..
            }
        )),
        "{:?}",
        pair.a.events
    );
    assert_eq!(pair.b.last_state(), Some(CallState::Terminated));
    assert!(body(&log[0]).starts_with("SIP/2.0 200"));
    assert!(
        log[0]
            .msg
            .headers()
            .get("Subscription-State")
            .is_some_and(|s| s.starts_with("terminated"))
    );
    assert!(log[0].cseq().0 > notify.cseq().0);
}

// ------------------------------------------------------------- redirect and authentication

/// An SDP answer for alice's offer from a hand-played peer.
fn hand_answer(invite: &Request, port: u16) -> String {
    let offer = String::from_utf8_lossy(&invite.body).into_owned();
    sdp::answer_offer(&offer, &local_media(port, &[Codec::Pcmu]))
        .expect("answer")
        .0
}

fn unrouted_requests(pair: &Pair, method: &Method, to: SocketAddr) -> Vec<Request> {
    pair.wire
        .unrouted
        .iter()
        .filter(|r| r.to == to && r.is_request(method))
        .map(|r| r.request().unwrap().clone())
        .collect()
}

#[test]
fn redirect_3xx_is_followed_once_to_the_contact() {
    let mut pair = Pair::new().with_carol();
    let redirector = addr("127.0.0.1:5098");
    let target = format!("sip:bob@{redirector}").parse().unwrap();
    pair.dial(Side::A, target, A_RTP);
    pair.run_secs(0.1);
    let invites = unrouted_requests(&pair, &Method::Invite, redirector);
    assert_eq!(invites.len(), 1);
    let carol_contact = format!("<sip:carol@{C_ADDR}>");
    pair.inject(
        redirector,
        addr(A_ADDR),
        &reply(
            &invites[0],
            302,
            "Moved Temporarily",
            &[("Contact", carol_contact.clone())],
        ),
    );
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| has_state(
            p.c.as_ref().unwrap(),
            CallState::Incoming
        )),
        "carol never rang:\n{pair:?}"
    );
    // The 302 was ACKed in its transaction.
    let acks = unrouted_requests(&pair, &Method::Ack, redirector);
    assert_eq!(acks.len(), 1);
    assert_eq!(
        acks[0].headers.top_via().unwrap().branch(),
        invites[0].headers.top_via().unwrap().branch()
    );
    pair.answer(Side::C, C_RTP);
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| p.a.last_state()
            == Some(CallState::Confirmed))
    );
    let to_carol = pair
        .wire
        .find(|r| r.to == addr(C_ADDR) && r.is_request(&Method::Invite))[0]
        .clone();
    let first = &invites[0];
    let second = to_carol.request().unwrap();
    assert_eq!(second.uri.to_string(), format!("sip:carol@{C_ADDR}"));
    assert_eq!(
        second.headers.call_id().unwrap(),
        first.headers.call_id().unwrap()
    );
    assert_eq!(
        second.headers.cseq().unwrap().seq,
        first.headers.cseq().unwrap().seq + 1
    );
    assert_eq!(
        second.headers.from().unwrap().tag(),
        first.headers.from().unwrap().tag()
    );
    assert_eq!(media_starts(&pair.a)[0].remote, addr("127.0.0.1:40004"));
    pair.print_ladder("redirect");

    // Followed once only: a second redirect ends the call with the 3xx.
    let mut pair = Pair::new();
    let hop1 = addr("127.0.0.1:5098");
    let hop2 = addr("127.0.0.1:5097");
    pair.dial(Side::A, format!("sip:bob@{hop1}").parse().unwrap(), A_RTP);
    pair.run_secs(0.1);
    let first = unrouted_requests(&pair, &Method::Invite, hop1)[0].clone();
    pair.inject(
        hop1,
        addr(A_ADDR),
        &reply(
            &first,
            302,
            "Moved Temporarily",
            &[("Contact", format!("<sip:bob@{hop2}>"))],
        ),
    );
    pair.run_secs(0.1);
    let second = unrouted_requests(&pair, &Method::Invite, hop2)[0].clone();
    pair.inject(
        hop2,
        addr(A_ADDR),
        &reply(
            &second,
            302,
            "Moved Temporarily",
            &[("Contact", format!("<sip:bob@{hop1}>"))],
        ),
    );
    pair.run_secs(40.0);
    assert_eq!(
        unrouted_requests(&pair, &Method::Invite, hop1).len(),
        1,
        "no second redirect:\n{pair:?}"
    );
    assert_eq!(
        pair.a.call_codes().last(),
        Some(&(CallState::Terminated, Some(302)))
    );
}

const CHALLENGE: &str = r#"Digest realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth", algorithm=MD5"#;

#[test]
fn invite_401_is_answered_with_credentials() {
    let mut pair = Pair::new();
    let peer = addr("127.0.0.1:5098");
    pair.dial(Side::A, format!("sip:bob@{peer}").parse().unwrap(), A_RTP);
    pair.run_secs(0.1);
    let first = unrouted_requests(&pair, &Method::Invite, peer)[0].clone();
    assert!(first.headers.get("Authorization").is_none());
    pair.inject(
        peer,
        addr(A_ADDR),
        &reply(
            &first,
            401,
            "Unauthorized",
            &[("WWW-Authenticate", CHALLENGE.to_string())],
        ),
    );
    pair.run_secs(0.1);
    let acks = unrouted_requests(&pair, &Method::Ack, peer);
    assert_eq!(acks.len(), 1, "the 401 is ACKed");
    let invites = unrouted_requests(&pair, &Method::Invite, peer);
    assert_eq!(invites.len(), 2, "{pair:?}");
    let second = &invites[1];
    let authorization = second
        .headers
        .get("Authorization")
        .expect("credentials on the retry");
    assert!(
        auth::verify(authorization, "INVITE", "secret").expect("well-formed"),
        "wrong digest: {authorization}"
    );
    assert_eq!(second.headers.cseq().unwrap().seq, 2);
    assert_eq!(
        second.headers.call_id().unwrap(),
        first.headers.call_id().unwrap()
    );
    assert_eq!(
        second.headers.from().unwrap().tag(),
        first.headers.from().unwrap().tag()
    );
    assert_ne!(
        second.headers.top_via().unwrap().branch(),
        first.headers.top_via().unwrap().branch()
    );
    // The peer accepts: 180 then 200 with an answer.
    let contact = format!("<sip:bob@{peer}>");
    pair.inject(
        peer,
        addr(A_ADDR),
        &reply(second, 180, "Ringing", &[("Contact", contact.clone())]),
    );
    let answer = hand_answer(second, 42000);
    let mut ok = String::from_utf8(reply(
        second,
        200,
        "OK",
        &[
            ("Contact", contact),
            ("Content-Type", "application/sdp".to_string()),
        ],
    ))
    .unwrap();
    // `reply` ends with an empty body; put the answer in.
    ok = ok.replace(
        "Content-Length: 0\r\n\r\n",
        &format!("Content-Length: {}\r\n\r\n{answer}", answer.len()),
    );
    pair.inject(peer, addr(A_ADDR), ok.as_bytes());
    pair.run_secs(1.0);
    assert_eq!(
        pair.a.last_state(),
        Some(CallState::Confirmed),
        "{:?}",
        pair.a.events
    );
    let acks = unrouted_requests(&pair, &Method::Ack, peer);
    assert_eq!(acks.len(), 2);
    assert_eq!(acks[1].headers.cseq().unwrap().seq, 2);
    assert_eq!(media_starts(&pair.a)[0].remote, addr("127.0.0.1:42000"));
    assert_eq!(media_starts(&pair.a)[0].codec, Codec::Pcmu);
}

// --------------------------------------------------------------------------------- timers

#[test]
fn unanswered_call_is_cancelled_after_the_no_answer_timeout() {
    let mut pair = Pair::new();
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    pair.run_for(NO_ANSWER_TIMEOUT + Duration::from_secs(40));
    let ringing = pair.wire.find(|r| r.is_response(180, &Method::Invite))[0].at;
    let cancels = pair.wire.find(|r| r.is_request(&Method::Cancel));
    assert_eq!(cancels.len(), 1, "{pair:?}");
    let waited = cancels[0].at - ringing;
    println!("CANCEL {:.3} s after the 180", waited.as_secs_f64());
    assert!(
        waited >= NO_ANSWER_TIMEOUT && waited < NO_ANSWER_TIMEOUT + Duration::from_millis(100),
        "{waited:?}"
    );
    assert!(
        !pair
            .wire
            .find(|r| r.is_response(487, &Method::Invite))
            .is_empty()
    );
    assert_eq!(pair.a.last_state(), Some(CallState::Terminated));
    assert_eq!(
        pair.b.call_codes().last(),
        Some(&(CallState::Terminated, Some(487)))
    );
    assert_eq!(pair.a.ua.call_count(), 0);
    assert_eq!(pair.b.ua.call_count(), 0);
}

#[test]
fn call_completes_under_30_percent_loss() {
    let mut total_dropped = 0;
    for seed in 1u64..=12 {
        let mut pair = Pair::new();
        pair.wire.set_loss(0.3, seed);
        let bob = pair.b.uri();
        pair.dial(Side::A, bob, A_RTP);
        assert!(
            pair.run_until_cond(Duration::from_secs(30), |p| has_state(
                &p.b,
                CallState::Incoming
            )),
            "seed {seed}: bob never rang\n{pair:?}"
        );
        pair.answer(Side::B, B_RTP);
        assert!(
            pair.run_until_cond(Duration::from_secs(30), |p| p.a.last_state()
                == Some(CallState::Confirmed)),
            "seed {seed}: alice never confirmed\n{pair:?}"
        );
        let confirmed_at = pair.elapsed();
        // Let the ACK get through (or the 200 retransmissions run out) before hanging up.
        pair.run_secs(40.0);
        assert_eq!(
            pair.b.last_state(),
            Some(CallState::Confirmed),
            "seed {seed}: bob lost the call\n{pair:?}"
        );
        assert_eq!(
            pair.a.last_state(),
            Some(CallState::Confirmed),
            "seed {seed}"
        );
        // Hold and resume by re-INVITE under the same loss.
        pair.command(Side::A, Command::Hold { call: None });
        assert!(
            pair.run_until_cond(Duration::from_secs(40), |p| p.a.last_state()
                == Some(CallState::Held)
                && p.b.last_state() == Some(CallState::Held)),
            "seed {seed}: hold did not complete\n{pair:?}"
        );
        pair.run_secs(40.0);
        pair.command(Side::A, Command::Resume { call: None });
        assert!(
            pair.run_until_cond(Duration::from_secs(40), |p| p.a.last_state()
                == Some(CallState::Confirmed)
                && p.b.last_state() == Some(CallState::Confirmed)),
            "seed {seed}: resume did not complete\n{pair:?}"
        );
        pair.run_secs(40.0);
        assert_eq!(
            pair.b.last_state(),
            Some(CallState::Confirmed),
            "seed {seed}\n{pair:?}"
        );
        pair.command(Side::A, Command::Hangup { call: None });
        assert!(
            pair.run_until_cond(Duration::from_secs(40), |p| p.b.last_state()
                == Some(CallState::Terminated)),
            "seed {seed}: bob never heard the BYE\n{pair:?}"
        );
        pair.run_secs(40.0);
        let sent = pair.wire.log.len();
        let dropped = pair.wire.log.iter().filter(|r| r.dropped).count();
        println!(
            "seed {seed}: confirmed after {confirmed_at:.3} s, {sent} datagrams, {dropped} lost"
        );
        total_dropped += dropped;
        for node in [&pair.a, &pair.b] {
            assert_eq!(
                node.ua.call_count(),
                0,
                "seed {seed}: {} kept a call",
                node.name
            );
            assert!(
                !node.call_codes().iter().any(|(_, c)| *c == Some(408)),
                "seed {seed}: {} timed out: {:?}",
                node.name,
                node.events
            );
        }
    }
    println!("{total_dropped} datagrams lost over all seeds");
    assert!(total_dropped >= 12, "loss injection barely happened");
}

// --------------------------------------------------------------------------- odd requests

#[test]
fn bye_for_unknown_dialog_is_481() {
    let mut pair = Pair::new();
    let hand = addr("127.0.0.1:5099");
    let bye = format!(
        "BYE sip:bob@{B_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP {hand};branch=z9hG4bKnodialog\r\n\
         Max-Forwards: 70\r\nFrom: <sip:mallory@127.0.0.1>;tag=m1\r\n\
         To: <sip:bob@{B_ADDR}>;tag=nosuchtag\r\nCall-ID: nosuchcall@127.0.0.1\r\n\
         CSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    pair.inject(hand, addr(B_ADDR), bye.as_bytes());
    pair.run_secs(1.0);
    let answers: Vec<_> = pair.wire.unrouted.iter().map(Record::label).collect();
    assert_eq!(answers, vec!["481 BYE"], "{pair:?}");
    assert!(pair.b.events.is_empty(), "{:?}", pair.b.events);
}

#[test]
fn second_incoming_call_rings_while_in_a_call() {
    let mut pair = established().with_carol();
    let bob = pair.b.uri();
    pair.dial(Side::C, bob, C_RTP);
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| {
            p.c.as_ref().unwrap().last_state() == Some(CallState::Ringing)
        }),
        "carol hears no ringing:\n{pair:?}"
    );
    let incoming: Vec<u64> = pair
        .b
        .events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Call {
                call,
                state: CallState::Incoming,
                ..
            } => Some(*call),
            _ => None,
        })
        .collect();
    assert_eq!(
        incoming.len(),
        2,
        "bob sees the second call: {:?}",
        pair.b.events
    );
    assert_ne!(incoming[0], incoming[1]);
    assert_eq!(pair.b.ua.call_count(), 2);
    // Answering takes the ringing call; the first one stays up.
    pair.answer(Side::B, 40006);
    assert!(pair.run_until_cond(
        Duration::from_secs(5),
        |p| p.c.as_ref().unwrap().last_state() == Some(CallState::Confirmed)
    ));
    pair.run_secs(2.0);
    assert_eq!(pair.b.ua.call_count(), 2);
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed));
    assert!(pair.wire.find(|r| r.is_request(&Method::Bye)).is_empty());
    let b_media = media_starts(&pair.b);
    assert_eq!(b_media.len(), 2);
    assert_eq!(b_media[1].remote, addr("127.0.0.1:40004"));
}

fn ice_media(rtp_port: u16, seed: u8) -> sdp::LocalMedia {
    let mut media = local_media(rtp_port, &[Codec::Opus, Codec::Pcmu]);
    media.ice = Some(sdp::LocalIce {
        credentials: sdp::IceCredentials::from_random([seed; 32]),
        candidates: vec![format!("1 1 UDP 2130706431 127.0.0.1 {rtp_port} typ host")],
    });
    media
}

/// ICE restart (RFC 8445 §9, RFC 8839 §4.4.1.1): alice's re-INVITE offers new credentials and
/// a new default candidate; bob answers with new credentials of his own (not the first
/// session's), and both sides' media updates carry the new session; the call stays up.
#[test]
fn an_ice_restart_reinvite_is_answered_with_new_credentials() {
    let mut pair = Pair::new();
    let bob = pair.b.uri();
    let media = ice_media(A_RTP, 1);
    pair.command(Side::A, Command::Dial { target: bob, media });
    assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
        &p.b,
        CallState::Incoming
    )));
    pair.command(
        Side::B,
        Command::Answer {
            call: None,
            media: ice_media(B_RTP, 2),
        },
    );
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| p.a.last_state()
            == Some(CallState::Confirmed)
            && p.b.last_state() == Some(CallState::Confirmed)),
        "call not confirmed:\n{pair:?}"
    );
    pair.run_secs(1.0);
    let first_a = media_starts(&pair.a)[0]
        .ice
        .clone()
        .expect("ICE negotiated");
    let first_b = media_starts(&pair.b)[0]
        .ice
        .clone()
        .expect("ICE negotiated");
    assert_eq!(first_a.remote.credentials, first_b.local);

    let call = pair.a.ua.last_call_id().expect("a call");
    let fresh = sdp::IceCredentials::from_random([3; 32]);
    pair.command(
        Side::A,
        Command::RestartIce {
            call,
            ice: sdp::LocalIce {
                credentials: fresh.clone(),
                candidates: vec![
                    "2 1 UDP 1694498815 192.0.2.7 41000 typ srflx raddr 127.0.0.1 rport 40000"
                        .to_owned(),
                ],
            },
            address: "192.0.2.7".parse().expect("ip"),
            rtp_port: 41000,
        },
    );
    pair.run_secs(2.0);
    let offers = pair.wire.find(|r| r.is_request(&Method::Invite));
    assert_eq!(offers.len(), 2, "the restart is a re-INVITE:\n{pair:?}");
    let offer = body(offers[1]);
    assert!(
        offer.contains(&format!("a=ice-ufrag:{}", fresh.ufrag)),
        "{offer}"
    );
    assert!(
        offer.contains("c=IN IP4 192.0.2.7") && offer.contains("m=audio 41000 "),
        "{offer}"
    );

    let update_b = media_updates(&pair.b)
        .last()
        .cloned()
        .expect("bob's update");
    let update_a = media_updates(&pair.a)
        .last()
        .cloned()
        .expect("alice's update");
    let (ice_a, ice_b) = (update_a.ice.expect("ICE"), update_b.ice.expect("ICE"));
    assert_eq!(
        ice_b.remote.credentials, fresh,
        "bob checks alice's new session"
    );
    assert_ne!(
        ice_b.local, first_b.local,
        "bob's answer changes his credentials too"
    );
    assert_eq!(ice_a.remote.credentials, ice_b.local);
    assert_eq!(ice_a.local, fresh);
    assert!(
        ice_b
            .remote
            .candidates
            .iter()
            .any(|c| c.contains("192.0.2.7 41000")),
        "{:?}",
        ice_b.remote
    );
    // A later re-INVITE without a restart (hold) keeps bob's credentials.
    pair.command(Side::A, Command::Hold { call: Some(call) });
    pair.run_secs(2.0);
    let held_b = media_updates(&pair.b).last().cloned().expect("update");
    assert_eq!(held_b.ice.expect("ICE").local, ice_b.local);
    assert_eq!(pair.a.last_state(), Some(CallState::Held), "{pair:?}");
    assert!(!has_state(&pair.b, CallState::Terminated));
}

/// The call of `an_ice_restart_reinvite_is_answered_with_new_credentials`, confirmed with ICE
/// on both sides; returns the call's id at alice and her first ICE credentials.
fn confirmed_ice_call(pair: &mut Pair) -> (u64, sdp::IceCredentials) {
    let bob = pair.b.uri();
    pair.command(
        Side::A,
        Command::Dial {
            target: bob,
            media: ice_media(A_RTP, 1),
        },
    );
    assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
        &p.b,
        CallState::Incoming
    )));
    pair.command(
        Side::B,
        Command::Answer {
            call: None,
            media: ice_media(B_RTP, 2),
        },
    );
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| p.a.last_state()
            == Some(CallState::Confirmed)
            && p.b.last_state() == Some(CallState::Confirmed)),
        "call not confirmed:\n{pair:?}"
    );
    pair.run_secs(1.0);
    let first = media_starts(&pair.a)[0]
        .ice
        .clone()
        .expect("ICE negotiated");
    (pair.a.ua.last_call_id().expect("a call"), first.local)
}

fn restart_command(call: u64, fresh: &sdp::IceCredentials) -> Command {
    Command::RestartIce {
        call,
        ice: sdp::LocalIce {
            credentials: fresh.clone(),
            candidates: vec![
                "2 1 UDP 1694498815 192.0.2.7 41000 typ srflx raddr 127.0.0.1 rport 40000"
                    .to_owned(),
            ],
        },
        address: "192.0.2.7".parse().expect("ip"),
        rtp_port: 41000,
    }
}

/// The peer refuses our ICE restart (488 to its re-INVITE): the call must not stay without
/// media on a session the peer never took. Alice's UA says so (`IceRestartRefused`: the
/// driver's agent goes back to the session before), the call stays up and is not taken for
/// held, and her next offer (hold) carries the first session's credentials and address again,
/// so that bob's ICE goes on unchanged.
#[test]
fn a_refused_ice_restart_goes_back_to_the_previous_session() {
    let mut pair = Pair::new();
    let (call, first) = confirmed_ice_call(&mut pair);
    let fresh = sdp::IceCredentials::from_random([3; 32]);
    let restart_ufrag = format!("a=ice-ufrag:{}", fresh.ufrag);
    let dropped_ufrag = restart_ufrag.clone();
    // Bob "refuses": the restart's re-INVITE never reaches him, a 488 comes back instead.
    pair.wire
        .drop_when(move |r| r.is_request(&Method::Invite) && body(r).contains(&dropped_ufrag));
    pair.command(Side::A, restart_command(call, &fresh));
    pair.run_secs(0.1);
    let restart = pair
        .wire
        .find(|r| r.dropped && r.is_request(&Method::Invite))
        .first()
        .and_then(|r| r.request().cloned())
        .expect("the restart's re-INVITE");
    pair.wire.clear_drop_rule();
    let refusal = reply(&restart, 488, "Not Acceptable Here", &[]);
    let (from, to) = (pair.b.addr, pair.a.addr);
    pair.inject(from, to, &refusal);
    pair.run_secs(1.0);
    assert!(
        pair.a
            .events
            .iter()
            .any(|e| matches!(e, UaEvent::IceRestartRefused { call: c } if *c == call)),
        "the driver is told to go back:\n{pair:?}"
    );
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed), "{pair:?}");
    assert!(!has_state(&pair.a, CallState::Terminated));

    // The next offer is the first session's again, and the hold goes through.
    pair.command(Side::A, Command::Hold { call: Some(call) });
    pair.run_secs(2.0);
    let offers: Vec<String> = pair
        .wire
        .find(|r| !r.dropped && r.is_request(&Method::Invite))
        .into_iter()
        .map(body)
        .collect();
    let hold = offers.last().expect("the hold re-INVITE");
    assert!(
        hold.contains(&format!("a=ice-ufrag:{}", first.ufrag)) && !hold.contains(&restart_ufrag),
        "{hold}"
    );
    assert!(hold.contains(&format!("m=audio {A_RTP} ")), "{hold}");
    assert_eq!(pair.a.last_state(), Some(CallState::Held), "{pair:?}");
    let held_b = media_updates(&pair.b)
        .last()
        .cloned()
        .expect("bob's update");
    assert_eq!(
        held_b.ice.expect("ICE").remote.credentials,
        first,
        "bob's ICE goes on with alice's first session"
    );
}

/// A restart asked while another offer of ours is pending cannot go out: the UA tells the
/// driver to go back (its agent restarted already), and the pending offer is unaffected.
#[test]
fn an_ice_restart_that_cannot_go_out_is_rolled_back() {
    let mut pair = Pair::new();
    let (call, _) = confirmed_ice_call(&mut pair);
    pair.command(Side::A, Command::Hold { call: Some(call) });
    pair.command(
        Side::A,
        restart_command(call, &sdp::IceCredentials::from_random([3; 32])),
    );
    assert!(
        pair.a
            .events
            .iter()
            .any(|e| matches!(e, UaEvent::IceRestartRefused { call: c } if *c == call)),
        "{pair:?}"
    );
    pair.run_secs(2.0);
    assert_eq!(pair.a.last_state(), Some(CallState::Held), "{pair:?}");
}
