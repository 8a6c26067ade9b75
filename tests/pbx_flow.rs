//! PBX and carrier call features between sans-IO user agents in virtual time (issue 15):
//! reliable provisional responses (RFC 3262), UPDATE (RFC 3311), session timers (RFC 4028),
//! early media, transfers with REFER (RFC 3515) and Replaces (RFC 3891, RFC 5589), do-not-
//! disturb, call forwarding and DTMF by INFO. Peers are other UAs on the simulated wire
//! (tests/common/pair.rs) or hand-played from raw messages. No sockets, no sleeps.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::pair::*;
use common::sim::reply;
use sipterm::sdp::{self, Codec};
use sipterm::sip::message::{Method, Request};
use sipterm::sip::ua::{CallPolicy, CallState, Command, Rel100, UaEvent};
use sipterm::sip::uri::Uri;

const A_RTP: u16 = 40000;
const B_RTP: u16 = 40002;
const C_RTP: u16 = 40004;
/// A hand-played peer (a PBX or carrier): what the UAs send it lands in `wire.unrouted`.
const PEER: &str = "127.0.0.1:5098";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn policy(change: impl FnOnce(&mut CallPolicy)) -> impl FnOnce(&mut sipterm::sip::ua::UaConfig) {
    move |config| change(&mut config.calls)
}

fn has_state(node: &Node, state: CallState) -> bool {
    node.call_states().contains(&state)
}

fn header<'a>(r: &'a Record, name: &str) -> Option<&'a str> {
    r.msg.headers().get(name)
}

fn body(r: &Record) -> String {
    String::from_utf8_lossy(r.msg.body()).into_owned()
}

fn labels(pair: &Pair, from: usize) -> Vec<String> {
    pair.wire.log[from..]
        .iter()
        .filter(|r| !r.dropped)
        .map(Record::label)
        .filter(|l| !l.starts_with("100 "))
        .collect()
}

/// alice calls bob, bob answers; both confirmed.
fn established(mut pair: Pair) -> Pair {
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| has_state(
            &p.b,
            CallState::Incoming
        )),
        "bob never rang:\n{pair:?}"
    );
    pair.answer(Side::B, B_RTP);
    assert!(
        pair.run_until_cond(Duration::from_secs(5), |p| p.a.last_state()
            == Some(CallState::Confirmed)
            && p.b.last_state() == Some(CallState::Confirmed)),
        "call not established:\n{pair:?}"
    );
    pair.run_secs(1.0);
    pair
}

fn media_updates(node: &Node) -> Vec<sdp::MediaParams> {
    node.events
        .iter()
        .filter_map(|e| match e {
            UaEvent::MediaUpdate { params, .. } => Some(params.clone()),
            _ => None,
        })
        .collect()
}

fn media_starts(node: &Node) -> Vec<sdp::MediaParams> {
    node.events
        .iter()
        .filter_map(|e| match e {
            UaEvent::MediaStart { params, .. } => Some(params.clone()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- a hand-played peer

/// The peer's side of a dialog alice opened with an INVITE to `PEER`.
struct HandPeer {
    invite: Request,
    tag: String,
    seq: u32,
}

impl HandPeer {
    /// alice dials the peer; returns it with her INVITE.
    fn called_by_alice(pair: &mut Pair) -> HandPeer {
        let target: Uri = format!("sip:pbx@{PEER}").parse().expect("uri");
        pair.dial(Side::A, target, A_RTP);
        pair.run_secs(0.05);
        let invite = last_unrouted(pair, &Method::Invite);
        HandPeer {
            invite,
            tag: "srv1".into(),
            seq: 100,
        }
    }

    fn answer_sdp(&self, port: u16) -> String {
        let offer = String::from_utf8_lossy(&self.invite.body).into_owned();
        sdp::answer_offer(&offer, &local_media(port, &[Codec::Pcmu]))
            .expect("answer")
            .0
    }

    /// A response to alice's INVITE (`reply` adds our To tag).
    fn respond(
        &self,
        pair: &mut Pair,
        code: u16,
        reason: &str,
        extra: &[(&str, String)],
        body: Option<String>,
    ) {
        let mut extra: Vec<(&str, String)> = extra.to_vec();
        extra.push(("Contact", format!("<sip:pbx@{PEER}>")));
        let mut bytes = reply(&self.invite, code, reason, &extra);
        if let Some(body) = body {
            bytes = with_body(&bytes, "application/sdp", &body);
        }
        pair.inject(addr(PEER), addr(A_ADDR), &bytes);
    }

    /// A request of the peer in the dialog (to alice's Contact).
    fn request(
        &mut self,
        pair: &mut Pair,
        method: &str,
        extra: &[(&str, String)],
        body: Option<(&str, String)>,
    ) {
        self.seq += 1;
        let from = self.invite.headers.get("To").expect("To");
        let to = self.invite.headers.get("From").expect("From");
        let call_id = self.invite.headers.call_id().expect("Call-ID");
        let target = self
            .invite
            .headers
            .contacts()
            .expect("Contact")
            .into_iter()
            .next()
            .expect("one Contact")
            .uri;
        let mut text = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKpeer{seq}\r\n\
             From: {from};tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\n\
             Contact: <sip:pbx@{PEER}>\r\nMax-Forwards: 70\r\n",
            seq = self.seq,
            tag = self.tag,
        );
        for (name, value) in extra {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        match body {
            Some((kind, body)) => text.push_str(&format!(
                "Content-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => text.push_str("Content-Length: 0\r\n\r\n"),
        }
        pair.inject(addr(PEER), addr(A_ADDR), text.as_bytes());
    }
}

fn with_body(message: &[u8], kind: &str, body: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    let head: Vec<&str> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length"))
        .collect();
    format!(
        "{}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
        head.join("\r\n"),
        body.len()
    )
    .into_bytes()
}

fn unrouted(pair: &Pair, pred: impl Fn(&Record) -> bool) -> Vec<Record> {
    pair.wire
        .unrouted
        .iter()
        .filter(|r| pred(r))
        .cloned()
        .collect()
}

/// What the UAs sent the hand-played peer, one record per transaction (its retransmissions,
/// unanswered by the peer, left out).
fn unrouted_once(pair: &Pair, pred: impl Fn(&Record) -> bool) -> Vec<Record> {
    let mut seen = std::collections::HashSet::new();
    unrouted(pair, pred)
        .into_iter()
        .filter(|r| {
            let branch = r
                .msg
                .headers()
                .top_via()
                .ok()
                .and_then(|v| v.branch().map(str::to_string));
            seen.insert((branch, r.label()))
        })
        .collect()
}

fn last_unrouted(pair: &Pair, method: &Method) -> Request {
    unrouted(pair, |r| r.is_request(method))
        .last()
        .and_then(|r| r.request().cloned())
        .unwrap_or_else(|| panic!("no {method} to the peer:\n{pair:?}"))
}

/// Answers alice's non-INVITE request with 200.
fn ok_to(pair: &mut Pair, request: &Request) {
    pair.inject(addr(PEER), addr(A_ADDR), &reply(request, 200, "OK", &[]));
}

// ---------------------------------------------------------------- 100rel (RFC 3262)

#[test]
fn reliable_180_is_pracked_and_the_call_goes_on_in_sequence() {
    let mut pair = Pair::new();
    pair.b.reconfigure(policy(|p| p.rel100 = Rel100::Required));
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    pair.run_secs(1.0);
    let invite = &pair.wire.find(|r| r.is_request(&Method::Invite))[0];
    assert!(
        header(invite, "Supported").is_some_and(|s| s.contains("100rel")),
        "{:?}",
        header(invite, "Supported")
    );
    let ringing = pair.wire.find(|r| r.is_response(180, &Method::Invite));
    assert_eq!(ringing.len(), 1, "{pair:?}");
    assert_eq!(header(ringing[0], "Require"), Some("100rel"));
    let rseq: u32 = header(ringing[0], "RSeq")
        .expect("RSeq")
        .parse()
        .expect("number");
    let prack = pair.wire.find(|r| r.is_request(&Method::Prack));
    assert_eq!(prack.len(), 1, "{pair:?}");
    assert_eq!(
        header(prack[0], "RAck"),
        Some(format!("{rseq} 1 INVITE").as_str())
    );
    assert_eq!(prack[0].cseq(), (2, Method::Prack));
    assert_eq!(
        pair.wire.find(|r| r.is_response(200, &Method::Prack)).len(),
        1
    );
    // Acknowledged: no retransmission of the 180 while bob keeps ringing.
    pair.run_secs(10.0);
    assert_eq!(
        pair.wire
            .find(|r| r.is_response(180, &Method::Invite))
            .len(),
        1
    );
    pair.answer(Side::B, B_RTP);
    pair.run_secs(1.0);
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed));
    // The confirmed dialog goes on from the early one's CSeq (the PRACK was 2).
    pair.command(Side::A, Command::Hangup { call: None });
    pair.run_secs(1.0);
    let bye = pair.wire.find(|r| r.is_request(&Method::Bye));
    assert_eq!(bye[0].cseq(), (3, Method::Bye), "{pair:?}");
    assert_eq!(
        pair.wire.find(|r| r.is_response(200, &Method::Bye)).len(),
        1
    );
}

#[test]
fn a_lost_prack_brings_the_reliable_180_again_and_only_one_prack_transaction() {
    let mut pair = Pair::new();
    pair.b.reconfigure(policy(|p| p.rel100 = Rel100::Required));
    let mut dropped = false;
    pair.wire.drop_when(move |r| {
        if r.is_request(&Method::Prack) && !dropped {
            dropped = true;
            return true;
        }
        false
    });
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    pair.run_secs(5.0);
    let ringing = pair.wire.find(|r| r.is_response(180, &Method::Invite));
    assert!(ringing.len() >= 2, "180 not retransmitted:\n{pair:?}");
    let pracks = pair.wire.find(|r| r.is_request(&Method::Prack));
    let branches: std::collections::HashSet<String> = pracks
        .iter()
        .map(|r| {
            r.msg
                .headers()
                .top_via()
                .expect("Via")
                .branch()
                .expect("branch")
                .to_string()
        })
        .collect();
    assert_eq!(
        branches.len(),
        1,
        "a repeated 180 got a new PRACK:\n{pair:?}"
    );
    assert!(
        !pair
            .wire
            .find(|r| r.is_response(200, &Method::Prack))
            .is_empty()
    );
    // Once PRACKed, the 180 stops.
    let count = pair
        .wire
        .find(|r| r.is_response(180, &Method::Invite))
        .len();
    pair.run_secs(20.0);
    assert_eq!(
        pair.wire
            .find(|r| r.is_response(180, &Method::Invite))
            .len(),
        count
    );
}

#[test]
fn require_100rel_against_a_phone_without_it_gets_420() {
    let mut pair = Pair::new();
    pair.a.reconfigure(policy(|p| p.rel100 = Rel100::Required));
    pair.b.reconfigure(policy(|p| p.rel100 = Rel100::Off));
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    pair.run_secs(2.0);
    let invite = &pair.wire.find(|r| r.is_request(&Method::Invite))[0];
    assert_eq!(header(invite, "Require"), Some("100rel"));
    let refused = pair.wire.find(|r| r.is_response(420, &Method::Invite));
    assert_eq!(refused.len(), 1, "{pair:?}");
    assert_eq!(header(refused[0], "Unsupported"), Some("100rel"));
    assert_eq!(
        pair.a.call_codes().last(),
        Some(&(CallState::Terminated, Some(420)))
    );
    assert!(!has_state(&pair.b, CallState::Incoming));
    // bob does not claim 100rel when it is off.
    let options_supported = pair.b.ua.supported();
    assert!(!options_supported.contains("100rel"), "{options_supported}");
    assert!(options_supported.contains("timer") && options_supported.contains("replaces"));
}

#[test]
fn no_prack_within_64_t1_refuses_the_call_with_504() {
    let mut pair = Pair::new();
    let invite = format!(
        "INVITE sip:bob@{B_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKnoprack\r\n\
         From: <sip:pbx@{PEER}>;tag=p1\r\nTo: <sip:bob@{B_ADDR}>\r\nCall-ID: noprack@pbx\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:pbx@{PEER}>\r\nRequire: 100rel\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    pair.inject(addr(PEER), addr(B_ADDR), invite.as_bytes());
    pair.run_secs(40.0);
    let ringing = unrouted(&pair, |r| r.is_response(180, &Method::Invite));
    // 0, 0.5, 1.5, 3.5, 7.5, 15.5 s: the first and five retransmissions before 32 s.
    assert!(
        (5..=7).contains(&ringing.len()),
        "{} 180s:\n{pair:?}",
        ringing.len()
    );
    assert!(
        ringing
            .iter()
            .all(|r| header(r, "RSeq") == header(&ringing[0], "RSeq"))
    );
    let refused = unrouted_once(&pair, |r| r.is_response(504, &Method::Invite));
    assert_eq!(refused.len(), 1, "{pair:?}");
    let after = (refused[0].at - pair.start).as_secs_f64();
    assert!((31.9..=32.5).contains(&after), "504 at {after} s");
    assert_eq!(pair.b.last_state(), Some(CallState::Terminated));
}

// ---------------------------------------------------------------- early media, UPDATE

#[test]
fn reliable_183_with_sdp_starts_early_media_and_an_early_update_moves_it() {
    let mut pair = Pair::new();
    let mut peer = HandPeer::called_by_alice(&mut pair);
    let invite_supported = peer
        .invite
        .headers
        .get("Supported")
        .unwrap_or("")
        .to_string();
    assert!(invite_supported.contains("100rel") && invite_supported.contains("timer"));
    let early = peer.answer_sdp(30000);
    peer.respond(
        &mut pair,
        183,
        "Session Progress",
        &[
            ("Require", "100rel".into()),
            ("RSeq", "77".into()),
            ("Allow", "INVITE, ACK, BYE, PRACK, UPDATE".into()),
        ],
        Some(early),
    );
    pair.run_secs(0.1);
    let prack = last_unrouted(&pair, &Method::Prack);
    assert_eq!(prack.headers.get("RAck"), Some("77 1 INVITE"));
    assert_eq!(pair.a.last_state(), Some(CallState::Early));
    let starts = media_starts(&pair.a);
    assert_eq!(
        starts.len(),
        1,
        "early media did not start: {:?}",
        pair.a.events
    );
    assert_eq!(starts[0].remote.port(), 30000);
    ok_to(&mut pair, &prack);
    // A retransmission of the same 183 gets no second PRACK.
    peer.respond(
        &mut pair,
        183,
        "Session Progress",
        &[("Require", "100rel".into()), ("RSeq", "77".into())],
        Some(peer.answer_sdp(30000)),
    );
    pair.run_secs(0.1);
    assert_eq!(unrouted(&pair, |r| r.is_request(&Method::Prack)).len(), 1);
    // The PBX moves its announcement to another port with an UPDATE in the early dialog.
    let offer = sdp::build_offer(&local_media(30010, &[Codec::Pcmu]));
    peer.request(&mut pair, "UPDATE", &[], Some(("application/sdp", offer)));
    pair.run_secs(0.1);
    let answer = unrouted(&pair, |r| r.is_response(200, &Method::Update));
    assert_eq!(answer.len(), 1, "{pair:?}");
    assert!(
        body(&answer[0]).contains("m=audio 40000"),
        "{}",
        body(&answer[0])
    );
    let updates = media_updates(&pair.a);
    assert_eq!(
        updates.last().map(|p| p.remote.port()),
        Some(30010),
        "{:?}",
        pair.a.events
    );
    assert_eq!(
        pair.a.last_state(),
        Some(CallState::Early),
        "an early UPDATE confirms nothing"
    );
    // Answered: confirmed, and the dialog's CSeq goes on after the PRACK.
    peer.respond(&mut pair, 200, "OK", &[], Some(peer.answer_sdp(30010)));
    pair.run_secs(0.1);
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed));
    pair.command(Side::A, Command::Hangup { call: None });
    pair.run_secs(0.1);
    let bye = last_unrouted(&pair, &Method::Bye);
    assert_eq!(bye.headers.cseq().expect("CSeq").seq, 3, "PRACK was 2");
}

#[test]
fn the_peers_update_in_a_confirmed_call_is_answered_and_can_hold() {
    let mut pair = Pair::new();
    let mut peer = HandPeer::called_by_alice(&mut pair);
    peer.respond(&mut pair, 200, "OK", &[], Some(peer.answer_sdp(30000)));
    pair.run_secs(0.1);
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed));
    let mut held = local_media(30020, &[Codec::Pcmu]);
    held.direction = sdp::Direction::SendOnly;
    peer.request(
        &mut pair,
        "UPDATE",
        &[],
        Some(("application/sdp", sdp::build_offer(&held))),
    );
    pair.run_secs(0.1);
    let ok = unrouted(&pair, |r| r.is_response(200, &Method::Update));
    assert_eq!(ok.len(), 1, "{pair:?}");
    assert!(body(&ok[0]).contains("a=recvonly"), "{}", body(&ok[0]));
    assert_eq!(pair.a.last_state(), Some(CallState::Held));
    assert_eq!(
        media_updates(&pair.a).last().map(|p| p.remote.port()),
        Some(30020)
    );
    // Without a body an UPDATE only refreshes: 200, no media change.
    let before = media_updates(&pair.a).len();
    peer.request(&mut pair, "UPDATE", &[], None);
    pair.run_secs(0.1);
    let ok = unrouted(&pair, |r| r.is_response(200, &Method::Update));
    assert_eq!(ok.len(), 2);
    assert!(ok[1].msg.body().is_empty());
    assert_eq!(media_updates(&pair.a).len(), before);
    // An unusable offer gets 488 and changes nothing.
    peer.request(
        &mut pair,
        "UPDATE",
        &[],
        Some(("application/sdp", "v=0\r\n".into())),
    );
    pair.run_secs(0.1);
    assert_eq!(
        unrouted(&pair, |r| r.is_response(488, &Method::Update)).len(),
        1
    );
    assert_eq!(pair.a.last_state(), Some(CallState::Held));
}

#[test]
fn an_update_offer_while_our_reinvite_is_out_gets_491() {
    let mut pair = Pair::new();
    let mut peer = HandPeer::called_by_alice(&mut pair);
    peer.respond(&mut pair, 200, "OK", &[], Some(peer.answer_sdp(30000)));
    pair.run_secs(0.1);
    pair.command(Side::A, Command::Hold { call: None });
    pair.run_secs(0.05);
    assert_eq!(unrouted(&pair, |r| r.is_request(&Method::Invite)).len(), 2);
    let offer = sdp::build_offer(&local_media(30030, &[Codec::Pcmu]));
    peer.request(&mut pair, "UPDATE", &[], Some(("application/sdp", offer)));
    pair.run_secs(0.05);
    assert_eq!(
        unrouted(&pair, |r| r.is_response(491, &Method::Update)).len(),
        1,
        "{pair:?}"
    );
}

#[test]
fn holding_an_early_media_call_goes_by_update() {
    let mut pair = Pair::new();
    let peer = HandPeer::called_by_alice(&mut pair);
    peer.respond(
        &mut pair,
        183,
        "Session Progress",
        &[("Allow", "INVITE, ACK, BYE, UPDATE".into())],
        Some(peer.answer_sdp(30000)),
    );
    pair.run_secs(0.1);
    assert_eq!(pair.a.last_state(), Some(CallState::Early));
    pair.command(Side::A, Command::Hold { call: None });
    pair.run_secs(0.05);
    let update = last_unrouted(&pair, &Method::Update);
    let offer = String::from_utf8_lossy(&update.body).into_owned();
    assert!(offer.contains("a=sendonly"), "{offer}");
    assert_eq!(
        unrouted(&pair, |r| r.is_request(&Method::Invite)).len(),
        1,
        "no re-INVITE before the 2xx"
    );
    let answer = {
        let mut media = local_media(30000, &[Codec::Pcmu]);
        media.session_version = 2;
        sdp::answer_offer(&offer, &media).expect("answer").0
    };
    let bytes = with_body(&reply(&update, 200, "OK", &[]), "application/sdp", &answer);
    pair.inject(addr(PEER), addr(A_ADDR), &bytes);
    pair.run_secs(0.05);
    // We hold: the media task sends nothing (sendonly on the wire, inactive for it).
    assert!(
        media_updates(&pair.a)
            .last()
            .is_some_and(|p| p.direction == sdp::Direction::Inactive),
        "{:?}",
        pair.a.events
    );
}

// ---------------------------------------------------------------- session timers (RFC 4028)

#[test]
fn session_timer_is_agreed_and_the_caller_refreshes_by_update_at_half_time() {
    let mut pair = Pair::new();
    for side in [Side::A, Side::B] {
        pair.node(side)
            .reconfigure(policy(|p| p.session_expires = Some(90)));
    }
    let mut pair = established(pair);
    let invite = pair.wire.find(|r| r.is_request(&Method::Invite))[0].clone();
    assert_eq!(header(&invite, "Session-Expires"), Some("90"));
    assert_eq!(header(&invite, "Min-SE"), Some("90"));
    let ok = pair.wire.find(|r| r.is_response(200, &Method::Invite))[0].clone();
    assert_eq!(header(&ok, "Session-Expires"), Some("90;refresher=uac"));
    assert_eq!(header(&ok, "Require"), Some("timer"));
    pair.run_secs(200.0);
    let updates = pair.wire.find(|r| r.is_request(&Method::Update));
    assert!(
        updates.len() >= 4,
        "{} refreshes in 200 s:\n{pair:?}",
        updates.len()
    );
    assert!(
        updates
            .iter()
            .all(|u| u.from == addr(A_ADDR) && u.msg.body().is_empty())
    );
    assert_eq!(
        header(updates[0], "Session-Expires"),
        Some("90;refresher=uac")
    );
    let first = (updates[0].at - pair.start).as_secs_f64();
    let second = (updates[1].at - pair.start).as_secs_f64();
    assert!(
        (second - first - 45.0).abs() < 0.1,
        "refreshes {first} and {second}"
    );
    assert_eq!(
        pair.wire
            .find(|r| r.is_response(200, &Method::Update))
            .len(),
        updates.len()
    );
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed));
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed));
    assert!(pair.wire.find(|r| r.is_request(&Method::Bye)).is_empty());
}

#[test]
fn a_peer_that_should_refresh_and_does_not_gets_bye_before_the_session_expires() {
    let mut pair = Pair::new();
    let peer = HandPeer::called_by_alice(&mut pair);
    peer.respond(
        &mut pair,
        200,
        "OK",
        &[
            ("Session-Expires", "90;refresher=uas".into()),
            ("Require", "timer".into()),
        ],
        Some(peer.answer_sdp(30000)),
    );
    let answered = pair.now;
    pair.run_secs(100.0);
    let byes = unrouted_once(&pair, |r| r.is_request(&Method::Bye));
    assert_eq!(byes.len(), 1, "{pair:?}");
    // RFC 4028 §10: a third of the interval (30 s, less than 32 s) before it expires.
    let at = (byes[0].at - answered).as_secs_f64();
    assert!((59.9..60.2).contains(&at), "BYE after {at} s");
    assert!(
        unrouted(&pair, |r| r.is_request(&Method::Update)
            || r.is_request(&Method::Invite))
        .len()
            == 1
    );
    assert!(pair.a.events.iter().any(|e| matches!(e,
        UaEvent::Call { state: CallState::Terminated, reason: Some(r), .. } if r.contains("Session expired"))));
}

#[test]
fn without_update_in_allow_the_refresh_is_a_reinvite_with_the_same_sdp() {
    let mut pair = Pair::new();
    let peer = HandPeer::called_by_alice(&mut pair);
    peer.respond(
        &mut pair,
        200,
        "OK",
        &[
            ("Session-Expires", "120;refresher=uac".into()),
            ("Allow", "INVITE, ACK, BYE".into()),
        ],
        Some(peer.answer_sdp(30000)),
    );
    pair.run_secs(61.0);
    let invites = unrouted_once(&pair, |r| r.is_request(&Method::Invite));
    assert_eq!(invites.len(), 2, "{pair:?}");
    let refresh = invites[1].request().expect("request").clone();
    assert_eq!(
        refresh.headers.get("Session-Expires"),
        Some("120;refresher=uac")
    );
    let version = |r: &Request| {
        String::from_utf8_lossy(&r.body)
            .lines()
            .find(|l| l.starts_with("o="))
            .map(str::to_string)
    };
    assert_eq!(
        version(&refresh),
        version(&peer.invite),
        "a refresh keeps the session version"
    );
    assert!((invites[1].at - pair.start).as_secs_f64() > 59.0);
}

#[test]
fn a_422_makes_the_caller_ask_for_the_peers_min_se() {
    let mut pair = Pair::new();
    let peer = HandPeer::called_by_alice(&mut pair);
    assert_eq!(peer.invite.headers.get("Session-Expires"), Some("1800"));
    peer.respond(
        &mut pair,
        422,
        "Session Interval Too Small",
        &[("Min-SE", "3600".into())],
        None,
    );
    pair.run_secs(0.1);
    let invites = unrouted(&pair, |r| r.is_request(&Method::Invite));
    assert_eq!(invites.len(), 2, "{pair:?}");
    assert_eq!(header(&invites[1], "Session-Expires"), Some("3600"));
    assert_eq!(header(&invites[1], "Min-SE"), Some("3600"));
    assert_eq!(invites[1].cseq(), (2, Method::Invite));
    assert_ne!(pair.a.last_state(), Some(CallState::Terminated));
}

#[test]
fn an_invite_below_our_min_se_gets_422_and_one_without_a_timer_gets_ours() {
    let mut pair = Pair::new();
    pair.b.reconfigure(policy(|p| {
        p.min_se = 120;
        p.session_expires = Some(120);
    }));
    let invite = |branch: &str, call_id: &str, extra: &str| {
        format!(
            "INVITE sip:bob@{B_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bK{branch}\r\n\
             From: <sip:pbx@{PEER}>;tag=p1\r\nTo: <sip:bob@{B_ADDR}>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:pbx@{PEER}>\r\n{extra}Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    let short = invite(
        "short",
        "short@pbx",
        "Supported: timer\r\nSession-Expires: 90\r\n",
    );
    pair.inject(addr(PEER), addr(B_ADDR), short.as_bytes());
    pair.run_secs(0.1);
    let refused = unrouted(&pair, |r| r.is_response(422, &Method::Invite));
    assert_eq!(refused.len(), 1, "{pair:?}");
    assert_eq!(header(&refused[0], "Min-SE"), Some("120"));
    assert!(
        !has_state(&pair.b, CallState::Incoming),
        "a refused call must not ring"
    );
    // A caller without session timers: bob asks for its own and refreshes itself.
    let plain = invite("plain", "plain@pbx", "");
    pair.inject(addr(PEER), addr(B_ADDR), plain.as_bytes());
    pair.run_secs(0.1);
    pair.answer(Side::B, B_RTP);
    pair.run_secs(0.1);
    let ok = unrouted_once(&pair, |r| r.is_response(200, &Method::Invite));
    assert_eq!(ok.len(), 1, "{pair:?}");
    assert_eq!(header(&ok[0], "Session-Expires"), Some("120;refresher=uas"));
    assert_eq!(
        header(&ok[0], "Require"),
        None,
        "only a refreshing caller is told to"
    );
    let ack = format!(
        "ACK sip:bob@{B_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKack\r\n\
         From: <sip:pbx@{PEER}>;tag=p1\r\nTo: {to}\r\nCall-ID: plain@pbx\r\nCSeq: 1 ACK\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        to = header(&ok[0], "To").expect("To")
    );
    pair.inject(addr(PEER), addr(B_ADDR), ack.as_bytes());
    pair.run_secs(61.0);
    // No UPDATE in the caller's Allow (it sent none): bob refreshes with a re-INVITE at 60 s.
    let refresh = unrouted_once(&pair, |r| {
        r.is_request(&Method::Invite) && r.from == addr(B_ADDR)
    });
    assert_eq!(refresh.len(), 1, "{pair:?}");
    assert_eq!(
        header(&refresh[0], "Session-Expires"),
        Some("120;refresher=uac")
    );
}

// ---------------------------------------------------------------- transfers

/// alice talks to bob (call 1) and to carol (call 2, bob on hold).
fn alice_with_bob_and_carol() -> Pair {
    let mut pair = established(Pair::new().with_carol());
    pair.command(Side::A, Command::Hold { call: None });
    pair.run_secs(1.0);
    let carol = pair.node(Side::C).uri();
    pair.dial(Side::A, carol, C_RTP);
    assert!(pair.run_until_cond(Duration::from_secs(5), |p| has_state(
        p.c.as_ref().expect("carol"),
        CallState::Incoming
    )));
    pair.answer(Side::C, C_RTP);
    pair.run_secs(1.0);
    assert_eq!(pair.node(Side::C).last_state(), Some(CallState::Confirmed));
    pair
}

fn transfer_asked(node: &Node) -> Option<Uri> {
    node.events.iter().rev().find_map(|e| match e {
        UaEvent::TransferAsked { target, .. } => Some(target.clone()),
        _ => None,
    })
}

fn transfer_requested(node: &Node) -> Option<Uri> {
    node.events.iter().rev().find_map(|e| match e {
        UaEvent::TransferRequested { target, .. } => Some(target.clone()),
        _ => None,
    })
}

#[test]
fn attended_transfer_joins_bob_and_carol_and_replaces_the_consultation() {
    let mut pair = alice_with_bob_and_carol();
    let (bob_call, carol_call) = (1, 2);
    pair.command(
        Side::A,
        Command::AttendedTransfer {
            call: Some(bob_call),
            consult: Some(carol_call),
        },
    );
    pair.run_secs(0.5);
    let refer = pair.wire.find(|r| r.is_request(&Method::Refer))[0].clone();
    let refer_to = header(&refer, "Refer-To").expect("Refer-To").to_string();
    assert!(
        refer_to.starts_with(&format!("<sip:carol@{C_ADDR}?Replaces=")),
        "{refer_to}"
    );
    assert!(
        refer_to.contains("%3Bto-tag%3D") && refer_to.contains("%3Bfrom-tag%3D"),
        "{refer_to}"
    );
    // bob is asked, says yes; his front end places the call as the REFER says.
    let target = transfer_asked(&pair.b).expect("bob asked");
    pair.command(
        Side::B,
        Command::TransferAnswer {
            call: None,
            accept: true,
        },
    );
    pair.run_secs(0.1);
    assert_eq!(transfer_requested(&pair.b), Some(target.clone()));
    let media = local_media(B_RTP + 10, &[Codec::Opus, Codec::Pcmu, Codec::Pcma]);
    pair.command(Side::B, Command::Dial { target, media });
    pair.run_secs(0.5);
    let invite = pair
        .wire
        .find(|r| r.is_request(&Method::Invite) && r.from == addr(B_ADDR))
        .last()
        .map(|r| (*r).clone())
        .expect("bob's INVITE to carol");
    let replaces = header(&invite, "Replaces").expect("Replaces").to_string();
    assert!(
        replaces.contains(";to-tag=") && replaces.contains(";from-tag="),
        "{replaces}"
    );
    assert!(
        invite.request().is_some_and(|r| r.uri.headers.is_empty()),
        "no URI headers in the Request-URI"
    );
    // carol's front end is told to answer at once (no ringing for a replacement).
    let carol = pair.c.as_ref().expect("carol");
    let (new_call, replaced) = carol
        .events
        .iter()
        .find_map(|e| match e {
            UaEvent::Replacing { call, replaced } => Some((*call, *replaced)),
            _ => None,
        })
        .expect("carol sees a replacement");
    assert_eq!(replaced, 1, "carol's call with alice is her call 1");
    pair.command(
        Side::C,
        Command::Answer {
            call: Some(new_call),
            media: local_media(C_RTP + 10, &[Codec::Opus]),
        },
    );
    pair.run_secs(1.0);
    // carol ends the replaced call with alice; bob reports success, alice ends hers with bob.
    assert!(pair.b.ua.last_call_id().is_some(), "bob's new call");
    pair.command(
        Side::B,
        Command::TransferProgress {
            call: bob_call,
            code: 200,
            last: true,
        },
    );
    pair.run_secs(3.0);
    let byes: Vec<(SocketAddr, SocketAddr)> = pair
        .wire
        .find(|r| r.is_request(&Method::Bye))
        .iter()
        .map(|r| (r.from, r.to))
        .collect();
    assert!(
        byes.contains(&(addr(C_ADDR), addr(A_ADDR))),
        "carol must end the consultation: {byes:?}\n{pair:?}"
    );
    assert!(
        byes.contains(&(addr(A_ADDR), addr(B_ADDR))),
        "alice must end the transferred call: {byes:?}"
    );
    assert_eq!(byes.len(), 2, "no crossing BYEs: {byes:?}");
    assert_eq!(pair.a.ua.call_count(), 0, "alice is out of both calls");
    assert_eq!(pair.b.ua.call_count(), 1);
    assert_eq!(pair.node(Side::C).ua.call_count(), 1);
    assert!(pair.a.events.iter().any(|e| matches!(
        e,
        UaEvent::TransferStatus {
            code: 200,
            done: true,
            ..
        }
    )));
}

#[test]
fn a_refused_transfer_notifies_603_and_the_calls_stay() {
    let mut pair = established(Pair::new());
    let carol: Uri = format!("sip:carol@{C_ADDR}").parse().expect("uri");
    pair.command(
        Side::A,
        Command::Transfer {
            call: None,
            target: carol,
        },
    );
    pair.run_secs(0.5);
    pair.command(
        Side::B,
        Command::TransferAnswer {
            call: None,
            accept: false,
        },
    );
    pair.run_secs(0.5);
    let notify = pair.wire.find(|r| r.is_request(&Method::Notify));
    assert_eq!(notify.len(), 1);
    assert!(
        body(notify[0]).starts_with("SIP/2.0 603"),
        "{}",
        body(notify[0])
    );
    assert!(header(notify[0], "Subscription-State").is_some_and(|s| s.starts_with("terminated")));
    assert!(pair.a.events.iter().any(|e| matches!(
        e,
        UaEvent::TransferStatus {
            code: 603,
            done: true,
            ..
        }
    )));
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed));
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed));
    assert!(transfer_requested(&pair.b).is_none());
}

#[test]
fn an_unanswered_transfer_request_is_refused_after_a_minute() {
    let mut pair = established(Pair::new());
    let carol: Uri = format!("sip:carol@{C_ADDR}").parse().expect("uri");
    pair.command(
        Side::A,
        Command::Transfer {
            call: None,
            target: carol,
        },
    );
    pair.run_secs(59.0);
    assert!(pair.wire.find(|r| r.is_request(&Method::Notify)).is_empty());
    pair.run_secs(2.0);
    let notify = pair.wire.find(|r| r.is_request(&Method::Notify));
    assert_eq!(notify.len(), 1, "{pair:?}");
    assert!(body(notify[0]).starts_with("SIP/2.0 603"));
}

#[test]
fn auto_accept_and_refer_sub_false_follow_at_once_without_notify() {
    let mut pair = Pair::new();
    pair.a
        .reconfigure(policy(|p| p.auto_accept_transfer = true));
    let mut peer = HandPeer::called_by_alice(&mut pair);
    peer.respond(&mut pair, 200, "OK", &[], Some(peer.answer_sdp(30000)));
    pair.run_secs(0.1);
    peer.request(
        &mut pair,
        "REFER",
        &[
            ("Refer-To", format!("<sip:carol@{C_ADDR}>")),
            ("Refer-Sub", "false".into()),
        ],
        None,
    );
    pair.run_secs(0.5);
    let accepted = unrouted(&pair, |r| r.is_response(202, &Method::Refer));
    assert_eq!(accepted.len(), 1, "{pair:?}");
    assert_eq!(header(&accepted[0], "Refer-Sub"), Some("false"));
    assert!(
        transfer_requested(&pair.a).is_some(),
        "auto_accept_transfer follows at once"
    );
    assert!(transfer_asked(&pair.a).is_none());
    assert!(unrouted(&pair, |r| r.is_request(&Method::Notify)).is_empty());
}

#[test]
fn replaces_that_names_no_call_gets_481_and_early_only_on_a_confirmed_call_486() {
    let mut pair = established(Pair::new());
    let (call_id, bob_tag, alice_tag) = {
        let ok = pair.wire.find(|r| r.is_response(200, &Method::Invite))[0].clone();
        let tag = |v: Option<&str>| {
            v.and_then(|v| v.split(";tag=").nth(1))
                .map(str::to_string)
                .expect("tag")
        };
        (
            ok.msg.headers().call_id().expect("Call-ID").to_string(),
            tag(header(&ok, "To")),
            tag(header(&ok, "From")),
        )
    };
    let invite = |branch: &str, replaces: &str| {
        format!(
            "INVITE sip:bob@{B_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bK{branch}\r\n\
             From: <sip:carol@{PEER}>;tag=c9\r\nTo: <sip:bob@{B_ADDR}>\r\nCall-ID: {branch}@x\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:carol@{PEER}>\r\nReplaces: {replaces}\r\n\
             Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    pair.inject(
        addr(PEER),
        addr(B_ADDR),
        invite("nope", "unknown@x;to-tag=a;from-tag=b").as_bytes(),
    );
    let early_only = format!("{call_id};to-tag={bob_tag};from-tag={alice_tag};early-only");
    pair.inject(
        addr(PEER),
        addr(B_ADDR),
        invite("early", &early_only).as_bytes(),
    );
    pair.run_secs(0.1);
    assert_eq!(
        unrouted(&pair, |r| r.is_response(481, &Method::Invite)).len(),
        1,
        "{pair:?}"
    );
    assert_eq!(
        unrouted(&pair, |r| r.is_response(486, &Method::Invite)).len(),
        1,
        "{pair:?}"
    );
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed));
}

#[test]
fn a_replaces_in_the_request_uri_replaces_the_call() {
    let mut pair = established(Pair::new());
    let ok = pair.wire.find(|r| r.is_response(200, &Method::Invite))[0].clone();
    let tag = |v: Option<&str>| {
        v.and_then(|v| v.split(";tag=").nth(1))
            .map(str::to_string)
            .expect("tag")
    };
    let call_id = ok.msg.headers().call_id().expect("Call-ID").to_string();
    let (bob_tag, alice_tag) = (tag(header(&ok, "To")), tag(header(&ok, "From")));
    // bob has DND on: a replacement still comes through.
    pair.command(Side::B, Command::SetDoNotDisturb(Some(486)));
    // Byte for byte what baresip 1.0 sent in the lab: libre turned the escaped `;` and `=`
    // of the Refer-To into `?`.
    let escaped = format!("{call_id}?to-tag?{bob_tag}?from-tag?{alice_tag}");
    let invite = format!(
        "INVITE sip:bob@{B_ADDR}?Replaces={escaped} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKuri\r\n\
         From: <sip:carol@{PEER}>;tag=c9\r\nTo: <sip:bob@{B_ADDR}>\r\nCall-ID: uri@x\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:carol@{PEER}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    pair.inject(addr(PEER), addr(B_ADDR), invite.as_bytes());
    pair.run_secs(0.1);
    let replacing = pair.b.events.iter().find_map(|e| match e {
        UaEvent::Replacing { call, replaced } => Some((*call, *replaced)),
        _ => None,
    });
    assert_eq!(replacing, Some((2, 1)), "{:?}", pair.b.events);
    pair.command(
        Side::B,
        Command::Answer {
            call: Some(2),
            media: local_media(B_RTP + 10, &[Codec::Pcmu]),
        },
    );
    pair.run_secs(0.5);
    assert_eq!(
        unrouted_once(&pair, |r| r.is_response(200, &Method::Invite)).len(),
        1
    );
    let bye = pair.wire.find(|r| r.is_request(&Method::Bye));
    assert_eq!(bye.len(), 1, "{pair:?}");
    assert_eq!((bye[0].from, bye[0].to), (addr(B_ADDR), addr(A_ADDR)));
    assert_eq!(pair.a.last_state(), Some(CallState::Terminated));
}

// ---------------------------------------------------------------- DND, forwarding, INFO

#[test]
fn do_not_disturb_refuses_without_ringing_with_the_chosen_code() {
    for code in [486u16, 480] {
        let mut pair = Pair::new();
        pair.command(Side::B, Command::SetDoNotDisturb(Some(code)));
        let bob = pair.b.uri();
        pair.dial(Side::A, bob, A_RTP);
        pair.run_secs(1.0);
        assert!(
            pair.wire
                .find(|r| r.is_response(180, &Method::Invite))
                .is_empty()
        );
        assert_eq!(
            pair.wire
                .find(|r| r.is_response(code, &Method::Invite))
                .len(),
            1,
            "{pair:?}"
        );
        assert_eq!(
            pair.a.call_codes().last(),
            Some(&(CallState::Terminated, Some(code)))
        );
        assert!(
            pair.b
                .events
                .iter()
                .any(|e| matches!(e, UaEvent::Missed { code: c, .. } if *c == code))
        );
        assert!(!has_state(&pair.b, CallState::Incoming));
        // Off again: calls ring.
        pair.command(Side::B, Command::SetDoNotDisturb(None));
        let bob = pair.b.uri();
        pair.dial(Side::A, bob, A_RTP + 100);
        pair.run_secs(1.0);
        assert!(has_state(&pair.b, CallState::Incoming));
    }
}

#[test]
fn forward_always_sends_the_caller_to_the_target() {
    let mut pair = Pair::new().with_carol();
    let carol = pair.node(Side::C).uri();
    pair.command(Side::B, Command::SetForward(Some(carol.clone())));
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    pair.run_secs(1.0);
    let moved = pair.wire.find(|r| r.is_response(302, &Method::Invite));
    assert_eq!(moved.len(), 1, "{pair:?}");
    assert_eq!(
        header(moved[0], "Contact"),
        Some(format!("<{carol}>").as_str())
    );
    assert!(
        has_state(pair.c.as_ref().expect("carol"), CallState::Incoming),
        "{pair:?}"
    );
    assert!(!has_state(&pair.b, CallState::Incoming));
    assert!(
        pair.b
            .events
            .iter()
            .any(|e| matches!(e, UaEvent::Missed { code: 302, .. }))
    );
}

#[test]
fn info_dtmf_goes_one_digit_per_request_in_order() {
    let mut pair = established(Pair::new());
    let before = pair.wire.log.len();
    pair.command(
        Side::A,
        Command::InfoDtmf {
            call: None,
            digits: "1#9".into(),
        },
    );
    pair.run_secs(2.0);
    assert_eq!(
        labels(&pair, before),
        ["INFO", "200 INFO", "INFO", "200 INFO", "INFO", "200 INFO"],
        "one INFO at a time"
    );
    let infos = pair.wire.find(|r| r.is_request(&Method::Info));
    assert_eq!(
        header(infos[0], "Content-Type"),
        Some("application/dtmf-relay")
    );
    assert_eq!(body(infos[0]), "Signal=1\r\nDuration=160\r\n");
    let digits: Vec<char> = pair
        .b
        .events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Dtmf { digit, .. } => Some(*digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, ['1', '#', '9']);
    pair.command(
        Side::A,
        Command::InfoDtmf {
            call: None,
            digits: "5".repeat(65),
        },
    );
    assert!(
        pair.a.errors().iter().any(|e| e.contains("too many DTMF")),
        "{:?}",
        pair.a.errors()
    );
}

// ---------------------------------------------------------------- malformed input

/// Broken PBX headers get a clear answer and change nothing else; the UA goes on.
#[test]
fn malformed_pbx_headers_get_clear_answers() {
    let mut pair = established(Pair::new());
    let invite = |branch: &str, extra: &str| {
        format!(
            "INVITE sip:bob@{B_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bK{branch}\r\n\
             From: <sip:pbx@{PEER}>;tag=p{branch}\r\nTo: <sip:bob@{B_ADDR}>\r\nCall-ID: {branch}@pbx\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:pbx@{PEER}>\r\n{extra}Max-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        )
    };
    // A Replaces without tags: 400. An unreadable Session-Expires counts as none: it rings.
    pair.inject(
        addr(PEER),
        addr(B_ADDR),
        invite("badrepl", "Replaces: only-a-call-id\r\n").as_bytes(),
    );
    pair.inject(
        addr(PEER),
        addr(B_ADDR),
        invite("badse", "Session-Expires: soon;refresher=nobody\r\n").as_bytes(),
    );
    pair.run_secs(0.1);
    assert_eq!(
        unrouted_once(&pair, |r| r.is_response(400, &Method::Invite)).len(),
        1,
        "{pair:?}"
    );
    assert!(
        pair.b
            .events
            .iter()
            .filter(|e| matches!(
                e,
                UaEvent::Call {
                    state: CallState::Incoming,
                    ..
                }
            ))
            .count()
            == 2,
        "the call with a broken Session-Expires must still ring"
    );
    // In alice's call with bob: a PRACK with a broken RAck, a REFER to a mailto: URI.
    let call_id = pair.wire.find(|r| r.is_request(&Method::Invite))[0]
        .msg
        .headers()
        .call_id()
        .expect("Call-ID")
        .to_string();
    let ok = pair.wire.find(|r| r.is_response(200, &Method::Invite))[0].clone();
    let from = header(&ok, "To").expect("To").to_string();
    let to = header(&ok, "From").expect("From").to_string();
    for (method, seq, extra) in [
        ("PRACK", 10, "RAck: one two INVITE\r\n"),
        ("REFER", 11, "Refer-To: <mailto:carol@example.com>\r\n"),
        (
            "NOTIFY",
            12,
            "Event: refer\r\nContent-Type: message/sipfrag\r\n",
        ),
    ] {
        let request = format!(
            "{method} sip:alice@{A_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP {B_ADDR};branch=z9hG4bKbad{seq}\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {seq} {method}\r\n\
             Max-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        pair.inject(addr(B_ADDR), addr(A_ADDR), request.as_bytes());
    }
    pair.run_secs(0.1);
    let answered = |code: u16, method: &Method| {
        pair.wire
            .find(|r| r.from == addr(A_ADDR) && r.is_response(code, method))
            .len()
    };
    assert_eq!(answered(481, &Method::Prack), 1, "{pair:?}");
    assert_eq!(answered(400, &Method::Refer), 1, "{pair:?}");
    assert_eq!(answered(200, &Method::Notify), 1, "{pair:?}");
    assert!(
        !pair.a.events.iter().any(|e| matches!(
            e,
            UaEvent::TransferAsked { .. } | UaEvent::TransferStatus { .. }
        )),
        "{:?}",
        pair.a.events
    );
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed));
}

/// A scanner's INVITE flood while do-not-disturb is on: every INVITE is refused, but only
/// `MAX_MISSED_EVENTS` missed-call events reach the front end per window.
#[test]
fn missed_call_events_are_bounded_under_a_flood() {
    let mut pair = Pair::new();
    pair.command(Side::B, Command::SetDoNotDisturb(Some(486)));
    for n in 0..50 {
        let invite = format!(
            "INVITE sip:bob@{B_ADDR} SIP/2.0\r\nVia: SIP/2.0/UDP {PEER};branch=z9hG4bKflood{n}\r\n\
             From: <sip:scan@{PEER}>;tag=f{n}\r\nTo: <sip:bob@{B_ADDR}>\r\nCall-ID: flood{n}@x\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:scan@{PEER}>\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        pair.inject(addr(PEER), addr(B_ADDR), invite.as_bytes());
    }
    pair.run_secs(0.1);
    let missed = |node: &Node| {
        node.events
            .iter()
            .filter(|e| matches!(e, UaEvent::Missed { .. }))
            .count()
    };
    assert_eq!(
        missed(&pair.b),
        sipterm::sip::ua::MAX_MISSED_EVENTS as usize
    );
    assert!(!has_state(&pair.b, CallState::Incoming));
    // A later window reports again.
    pair.run_for(sipterm::sip::ua::MISSED_WINDOW);
    let bob = pair.b.uri();
    pair.dial(Side::A, bob, A_RTP);
    pair.run_secs(0.5);
    assert_eq!(
        missed(&pair.b),
        sipterm::sip::ua::MAX_MISSED_EVENTS as usize + 1
    );
}

/// A refused session refresh (a re-INVITE with the same SDP) changes no hold state: a hold
/// afterwards still goes out.
#[test]
fn a_refused_refresh_leaves_hold_as_it_was() {
    let mut pair = Pair::new();
    let peer = HandPeer::called_by_alice(&mut pair);
    peer.respond(
        &mut pair,
        200,
        "OK",
        &[
            ("Session-Expires", "90;refresher=uac".into()),
            ("Allow", "INVITE, ACK, BYE".into()),
        ],
        Some(peer.answer_sdp(30000)),
    );
    pair.run_secs(46.0);
    let refresh = last_unrouted(&pair, &Method::Invite);
    assert_eq!(refresh.headers.cseq().expect("CSeq").seq, 2, "{pair:?}");
    pair.inject(
        addr(PEER),
        addr(A_ADDR),
        &reply(&refresh, 500, "Server Internal Error", &[]),
    );
    pair.run_secs(0.1);
    pair.command(Side::A, Command::Hold { call: None });
    pair.run_secs(0.1);
    let hold = last_unrouted(&pair, &Method::Invite);
    assert_eq!(hold.headers.cseq().expect("CSeq").seq, 3, "{pair:?}");
    assert!(String::from_utf8_lossy(&hold.body).contains("a=sendonly"));
}
