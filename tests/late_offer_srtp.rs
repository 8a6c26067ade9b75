//! Late offer (INVITE without SDP) to an account with `srtp = "mandatory"`: our offer goes in
//! the 200, the answer comes in the ACK. An ACK whose answer has no usable keys leaves the call
//! without media, so sipterm hangs up with BYE and says why. Virtual time
//! on the sans-IO user agent (tests/common/sim.rs), plus a live sipterm against a sipp UAC
//! (tests/data/sipp/uac_late_offer_keyless_ack.xml).

mod common;

use std::time::{Duration, Instant};

use common::headless::{Headless, HeadlessOptions};
use common::peers::Sipp;
use common::ports::free_udp_port;
use common::sim::{AccountSpec, events, requests, responses, udp, user_agent_with_srtp};
use sipterm::sdp::{Codec, Direction, LocalMedia, LocalSrtp, SrtpPolicy};
use sipterm::sip::message::{Method, Response};
use sipterm::sip::ua::{CallState, Command, UaEvent, UserAgent};

const PEER: &str = "127.0.0.1:5070";

/// A key for the peer's answer (40 characters of base64: 30 bytes of key and salt).
const PEER_KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

fn mandatory_ua() -> UserAgent {
    user_agent_with_srtp(
        &AccountSpec {
            registrar: None,
            outbound_proxy: None,
            ..AccountSpec::default()
        },
        SrtpPolicy::Mandatory,
    )
}

/// The peer's INVITE without a body, to alice at the UA's address.
fn invite_without_sdp() -> Vec<u8> {
    format!(
        "INVITE sip:alice@127.0.0.1:5062 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PEER};branch=z9hG4bKlate1\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:peer@{PEER}>;tag=peer1\r\n\
         To: <sip:alice@127.0.0.1:5062>\r\n\
         Call-ID: late-offer-1@{PEER}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:peer@{PEER}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The ACK for `ok` with `body` (application/sdp) or none.
fn ack_for(ok: &Response, body: Option<&str>) -> Vec<u8> {
    let to = ok.headers.get("To").expect("To in the 200");
    let body = body.unwrap_or("");
    let content_type = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".to_string()
    };
    format!(
        "ACK sip:alice@127.0.0.1:5062 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PEER};branch=z9hG4bKlate2\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:peer@{PEER}>;tag=peer1\r\n\
         To: {to}\r\n\
         Call-ID: late-offer-1@{PEER}\r\n\
         CSeq: 1 ACK\r\n\
         {content_type}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An SDP answer to our RTP/SAVP offer: `profile` and optional `a=crypto` line.
fn answer_sdp(profile: &str, crypto: Option<&str>) -> String {
    let mut sdp = format!(
        "v=0\r\no=peer 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio 30000 {profile} 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    );
    if let Some(line) = crypto {
        sdp.push_str(line);
        sdp.push_str("\r\n");
    }
    sdp
}

/// Rings alice with a late-offer INVITE, answers it; returns the 200 (our offer) and the
/// virtual clock.
fn answered_late_offer(ua: &mut UserAgent) -> (Response, Instant) {
    let now = Instant::now();
    ua.handle_datagram(udp(PEER), &invite_without_sdp(), now);
    let incoming = events(ua);
    assert!(
        incoming.iter().any(|e| matches!(
            e,
            UaEvent::Call {
                state: CallState::Incoming,
                ..
            }
        )),
        "{incoming:?}"
    );
    let _ = responses(ua);
    ua.handle_command(
        Command::Answer {
            call: None,
            media: LocalMedia {
                address: "127.0.0.1".parse().expect("ip"),
                rtp_port: 40000,
                codecs: vec![Codec::Pcmu],
                direction: Direction::SendRecv,
                session_id: 0,
                session_version: 0,
                srtp: LocalSrtp::new(SrtpPolicy::Mandatory),
                ice: None,
            },
        },
        now,
    );
    let sent = responses(ua);
    let ok = sent
        .into_iter()
        .map(|(_, r)| r)
        .find(|r| r.code == 200)
        .expect("a 200 to the INVITE");
    let offer = String::from_utf8_lossy(&ok.body).into_owned();
    println!("our offer in the 200:\n{offer}");
    assert!(offer.contains("RTP/SAVP"), "mandatory offers RTP/SAVP");
    assert!(offer.contains("a=crypto:"), "mandatory offers keys");
    (ok, now)
}

/// What the UA did after the ACK: the BYEs it sent and its call events.
fn after_ack(ua: &mut UserAgent, ack: &[u8], now: Instant) -> (usize, Vec<UaEvent>) {
    ua.handle_datagram(udp(PEER), ack, now);
    let byes = requests(ua)
        .into_iter()
        .filter(|(dest, r)| {
            r.method == Method::Bye && dest.addr == PEER.parse().expect("peer address")
        })
        .count();
    (byes, events(ua))
}

fn terminated_reason(events: &[UaEvent]) -> Option<String> {
    events.iter().find_map(|e| match e {
        UaEvent::Call {
            state: CallState::Terminated,
            reason,
            ..
        } => Some(reason.clone().unwrap_or_default()),
        _ => None,
    })
}

fn media_started(events: &[UaEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e, UaEvent::MediaStart { .. }))
}

#[test]
fn keyless_answer_in_the_ack_hangs_up_with_the_reason() {
    let mut ua = mandatory_ua();
    let (ok, now) = answered_late_offer(&mut ua);
    let ack = ack_for(&ok, Some(&answer_sdp("RTP/AVP", None)));
    let (byes, events) = after_ack(&mut ua, &ack, now + Duration::from_millis(50));
    println!("after a keyless ACK: {byes} BYE, events {events:?}");
    assert_eq!(byes, 1, "the call is hung up with one BYE to the peer");
    assert!(!media_started(&events), "no media without keys");
    let reason = terminated_reason(&events).expect("the call ends for the user");
    assert!(
        reason.contains("crypto"),
        "the reason names the missing keys: {reason}"
    );
    // The 200 is not retransmitted after the ACK, and nothing else is left to send.
    let (mut later, mut at) = (Vec::new(), now);
    for _ in 0..100 {
        match ua.poll_timeout() {
            Some(t) if t <= now + Duration::from_secs(40) => {
                at = t.max(at);
                ua.handle_timeout(at);
                later.extend(
                    common::sim::sent(&mut ua)
                        .into_iter()
                        .map(|(_, m)| format!("{m:?}").chars().take(40).collect::<String>()),
                );
            }
            _ => break,
        }
    }
    assert!(
        later.iter().all(|m| !m.contains("200")),
        "no 200 retransmission after the ACK: {later:?}"
    );
}

/// The control: the same flow with keys in the ACK starts encrypted media and keeps the call.
#[test]
fn keyed_answer_in_the_ack_starts_srtp_media() {
    let mut ua = mandatory_ua();
    let (ok, now) = answered_late_offer(&mut ua);
    let crypto = format!("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{PEER_KEY}");
    let ack = ack_for(&ok, Some(&answer_sdp("RTP/SAVP", Some(&crypto))));
    let (byes, events) = after_ack(&mut ua, &ack, now);
    assert_eq!(byes, 0, "{events:?}");
    assert_eq!(terminated_reason(&events), None, "{events:?}");
    let params = events
        .iter()
        .find_map(|e| match e {
            UaEvent::MediaStart { params, .. } => Some(params.clone()),
            _ => None,
        })
        .expect("media starts with the ACK's answer");
    println!("media from the ACK: {params:?}");
    assert!(params.srtp.is_some(), "the media is SRTP: {params:?}");
    assert_eq!(params.codec, Codec::Pcmu);
}

/// A live mandatory sipterm answering sipp's late-offer INVITE: sipp's ACK has an RTP/AVP
/// answer without a=crypto; sipterm must send BYE (the scenario waits for it and answers 200)
/// and end the call with a reason naming a=crypto.
#[test]
fn live_sipterm_hangs_up_on_a_keyless_ack() -> Result<(), Box<dyn std::error::Error>> {
    let mut sipterm = Headless::spawn(
        "callee",
        &HeadlessOptions {
            auto_answer_ms: Some(0),
            config_toml: Some(
                "[log]\nlevel = \"debug\"\n[[account]]\nname = \"callee\"\n\
                 uri = \"sip:callee@127.0.0.1\"\ncodecs = [\"pcmu\"]\nsrtp = \"mandatory\"\n"
                    .to_string(),
            ),
            ..HeadlessOptions::default()
        },
    )?;
    let port = free_udp_port()?;
    let mut sipp = Sipp::uac(
        &Sipp::scenario("uac_late_offer_keyless_ack.xml"),
        port,
        sipterm.listen,
        &["-s", "callee"],
    )?;
    let signalling = Duration::from_secs(10);
    sipterm.expect_call_state("confirmed", signalling)?;
    let end = sipterm.expect_call_state("terminated", signalling)?;
    println!("sipterm: {end}");
    let reason = end["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("a=crypto"), "{end}");
    sipp.wait_success(signalling)
        .map_err(|e| format!("sipp did not get its BYE: {e}"))?;
    let messages = sipp.messages();
    assert!(
        messages.contains("RTP/SAVP") && messages.contains("a=crypto:"),
        "sipterm's 200 offered SRTP"
    );
    assert!(sipterm.events_of("media").is_empty(), "no media ran");
    sipterm.quit(Duration::from_secs(5));
    assert!(!sipterm.recent_output().contains("panicked"));
    Ok(())
}
