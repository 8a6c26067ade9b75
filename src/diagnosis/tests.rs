//! A test per rule, on made-up events and a virtual clock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::event::{Direction, MicReport, PeerReport, RegistrationState, SrtpStats};

const PROXY: &str = "203.0.113.10:5060";
const ME: &str = "10.0.0.10:5060";

/// A diagnoser on a virtual clock, with helpers that play the engine's events.
struct Rig {
    diagnoser: Diagnoser,
    t0: Instant,
    now: Instant,
    changes: Vec<Change>,
    /// Media reports so far (the counters of `media_for` go on from here).
    reports: u64,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(Setup {
            account: "sip:alice@atlanta.test".into(),
            codecs: vec!["opus".into(), "PCMU".into(), "PCMA".into()],
            registrar: Some("sip:atlanta.test".into()),
            outbound_proxy: None,
            has_password: true,
            keepalive_secs: None,
            keepalive_off: false,
        })
    }

    fn with(setup: Setup) -> Rig {
        let t0 = crate::test_clock::t0();
        Rig {
            diagnoser: Diagnoser::new(setup),
            t0,
            now: t0,
            changes: Vec::new(),
            reports: 0,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    fn drain(&mut self) {
        while let Some(change) = self.diagnoser.poll_change() {
            self.changes.push(change);
        }
    }

    fn event(&mut self, event: Event) {
        self.diagnoser.handle_event(&event, self.now);
        self.drain();
    }

    fn fact(&mut self, fact: Fact) {
        self.diagnoser.handle_fact(fact, self.now);
        self.drain();
    }

    fn sip(&mut self, dir: Direction, peer: &str, text: &str) {
        let raw = text.replace('\n', "\r\n");
        self.event(Event::Sip {
            dir,
            peer: peer.into(),
            summary: crate::event::first_line(raw.as_bytes()),
            raw: Arc::from(raw.as_bytes()),
        });
    }

    fn call(&mut self, call: u64, state: CallState, code: Option<u16>, reason: Option<&str>) {
        self.event(Event::Call {
            call: call.to_string(),
            state,
            remote: "sip:bob@biloxi.test".into(),
            code,
            reason: reason.map(str::to_string),
            sip_call_id: Some(format!("call{call}@h")),
            account: None,
        });
    }

    fn registration(&mut self, state: RegistrationState, code: Option<u16>, expires: Option<u32>) {
        self.event(Event::Registration {
            account: "alice".into(),
            state,
            code,
            reason: None,
            expires,
        });
    }

    fn media(&mut self, call: u64, sample: Media) {
        self.event(sample.event(call));
    }

    fn active(&self, code: &str, call: Option<u64>) -> Option<&Finding> {
        self.diagnoser
            .active()
            .find(|f| f.code == code && f.call == call)
    }

    fn expect(&self, code: &str, call: Option<u64>) -> &Finding {
        self.active(code, call).unwrap_or_else(|| {
            panic!(
                "{code} not active; active: {:?}",
                self.diagnoser.active().map(|f| f.code).collect::<Vec<_>>()
            )
        })
    }

    fn raised(&self, code: &str) -> usize {
        self.changes
            .iter()
            .filter(|c| c.state == FindingState::Active && c.finding.code == code)
            .count()
    }

    fn cleared(&self, code: &str) -> bool {
        self.changes
            .iter()
            .any(|c| c.state == FindingState::Cleared && c.finding.code == code)
    }
}

/// The figures of one `media` event.
#[derive(Clone, Default)]
struct Media {
    sent: u64,
    received: u64,
    lost: u64,
    jitter_ms: f64,
    rtt_ms: Option<f64>,
    foreign: u64,
    foreign_from: Option<String>,
    auth_failures: Option<u64>,
    peer: Option<PeerReport>,
    mic: Option<MicReport>,
    ice: Option<crate::event::IceReport>,
}

impl Media {
    fn event(self, call: u64) -> Event {
        Event::Media {
            call: call.to_string(),
            codec: "pcmu/8000".into(),
            sent: self.sent,
            received: self.received,
            lost: self.lost,
            jitter_ms: self.jitter_ms,
            loss_pct: 0.0,
            rtt_ms: self.rtt_ms,
            mos: None,
            remote: Some("10.0.0.5:4000".into()),
            local: Some("192.0.2.101:20000".into()),
            foreign: self.foreign,
            encrypted: self.auth_failures.is_some(),
            srtp: self.auth_failures.map(|n| SrtpStats {
                suite: "AES_CM_128_HMAC_SHA1_80",
                auth_failures: n,
                keys: crate::event::KeyTransport::Clear,
            }),
            foreign_from: self.foreign_from,
            peer: self.peer,
            mic: self.mic,
            ice: self.ice.map(Box::new),
        }
    }
}

fn invite(call: u64, sdp: &str) -> String {
    let body = sdp.replace('\n', "\r\n");
    format!(
        "INVITE sip:bob@biloxi.test SIP/2.0\nVia: SIP/2.0/UDP {ME};branch=z9hG4bK{call}\n\
         From: <sip:alice@atlanta.test>;tag=a\nTo: <sip:bob@biloxi.test>\nCall-ID: call{call}@h\n\
         CSeq: 1 INVITE\nContent-Type: application/sdp\nContent-Length: {}\n\n{sdp}",
        body.len()
    )
}

fn response(call: u64, code: u16, reason: &str, extra: &str, sdp: &str) -> String {
    let body = sdp.replace('\n', "\r\n");
    let content = if sdp.is_empty() {
        String::new()
    } else {
        "Content-Type: application/sdp\n".to_string()
    };
    format!(
        "SIP/2.0 {code} {reason}\nVia: SIP/2.0/UDP {ME};branch=z9hG4bK{call}\n\
         From: <sip:alice@atlanta.test>;tag=a\nTo: <sip:bob@biloxi.test>;tag=b\n\
         Call-ID: call{call}@h\nCSeq: 1 INVITE\n{extra}{content}Content-Length: {}\n\n{sdp}",
        body.len()
    )
}

fn sdp(address: &str, codecs: &str, extra: &str) -> String {
    format!(
        "v=0\no=- 1 1 IN IP4 {address}\ns=-\nc=IN IP4 {address}\nt=0 0\n\
         m=audio 4000 RTP/AVP {codecs}\n{extra}a=sendrecv\n"
    )
}

/// An answered call 1 whose peer's SDP (from the proxy) is `their_sdp`.
fn answered_call(rig: &mut Rig, their_sdp: &str) {
    rig.call(1, CallState::Calling, None, None);
    rig.sip(
        Direction::Out,
        PROXY,
        &invite(1, &sdp("192.0.2.101", "0 8", "")),
    );
    rig.sip(Direction::In, PROXY, &response(1, 200, "OK", "", their_sdp));
    rig.call(1, CallState::Confirmed, Some(200), Some("OK"));
}

/// Media events every 2 s for `seconds`: we send 100 packets per report, the peer's figures
/// come from `each(report number)` (counted from the call's first report).
fn media_for(rig: &mut Rig, seconds: u64, each: impl Fn(u64) -> Media) {
    for _ in 0..seconds / 2 {
        rig.reports += 1;
        let n = rig.reports;
        rig.advance(Duration::from_secs(2));
        let mut sample = each(n);
        sample.sent = 100 * n;
        rig.media(1, sample);
    }
}

#[test]
fn findings_are_raised_once_updated_quietly_and_cleared() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("10.0.0.5", "0", ""));
    media_for(&mut rig, 12, |_| Media::default());
    assert_eq!(
        rig.raised(media::NO_AUDIO_PRIVATE),
        1,
        "one change, not one per report"
    );
    let finding = rig.expect(media::NO_AUDIO_PRIVATE, Some(1));
    assert_eq!(
        finding.evidence.get("silent_for"),
        Some("12 s"),
        "evidence follows"
    );
    // Audio comes: the condition ends.
    media_for(&mut rig, 2, |_| Media {
        received: 100,
        ..Media::default()
    });
    assert!(rig.cleared(media::NO_AUDIO_PRIVATE));
    assert!(rig.active(media::NO_AUDIO_PRIVATE, Some(1)).is_none());
}

#[test]
fn no_audio_from_a_private_sdp_address_names_it() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("10.0.0.5", "0", ""));
    media_for(&mut rig, 4, |_| Media::default());
    assert!(
        rig.active(media::NO_AUDIO_PRIVATE, Some(1)).is_none(),
        "not before 5 s"
    );
    media_for(&mut rig, 2, |_| Media::default());
    let finding = rig.expect(media::NO_AUDIO_PRIVATE, Some(1));
    assert!(
        finding.message.contains("private address 10.0.0.5"),
        "{}",
        finding.message
    );
    assert_eq!(finding.evidence.get("sdp_address"), Some("10.0.0.5:4000"));
}

#[test]
fn a_private_address_on_our_own_lan_is_not_blamed() {
    let mut rig = Rig::new();
    rig.call(1, CallState::Calling, None, None);
    rig.sip(
        Direction::Out,
        "10.0.0.5:5060",
        &invite(1, &sdp("10.0.0.10", "0", "")),
    );
    rig.sip(
        Direction::In,
        "10.0.0.5:5060",
        &response(1, 200, "OK", "", &sdp("10.0.0.5", "0", "")),
    );
    rig.call(1, CallState::Confirmed, Some(200), None);
    media_for(&mut rig, 6, |_| Media::default());
    let finding = rig.expect(media::NO_AUDIO_NOTHING, Some(1));
    assert!(
        finding.message.contains("reach us at 10.0.0.10:4000"),
        "{}",
        finding.message
    );
}

#[test]
fn no_audio_with_packets_from_elsewhere_names_the_source() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("10.0.0.5", "0", ""));
    media_for(&mut rig, 6, |n| Media {
        foreign: 100 * n,
        foreign_from: Some("203.0.113.1:4000".into()),
        ..Media::default()
    });
    let finding = rig.expect(media::NO_AUDIO_FOREIGN, Some(1));
    assert!(
        finding.message.contains("203.0.113.1:4000") && finding.message.contains("10.0.0.5:4000"),
        "{}",
        finding.message
    );
}

#[test]
fn no_audio_with_srtp_failures_blames_the_keys() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
    media_for(&mut rig, 6, |n| Media {
        auth_failures: Some(100 * n),
        ..Media::default()
    });
    let finding = rig.expect(media::NO_AUDIO_SRTP, Some(1));
    assert!(finding.message.contains("SRTP"), "{}", finding.message);
    assert_eq!(finding.evidence.get("srtp_auth_failures"), Some("300"));
}

#[test]
fn no_audio_from_an_ice_peer_lists_its_candidates() {
    let mut rig = Rig::new();
    let ice = "a=ice-ufrag:x\na=candidate:1 1 UDP 2130706431 10.0.0.5 4000 typ host\n\
               a=candidate:2 1 UDP 1694498815 198.51.100.7 40000 typ srflx\n";
    answered_call(&mut rig, &sdp("10.0.0.5", "0", ice));
    media_for(&mut rig, 6, |_| Media::default());
    let finding = rig.expect(media::NO_AUDIO_ICE, Some(1));
    assert!(
        finding.message.contains("srflx 198.51.100.7:40000 udp"),
        "{}",
        finding.message
    );
}

#[test]
fn no_audio_is_expected_when_the_peer_said_it_sends_nothing_or_we_do_not_send() {
    let mut rig = Rig::new();
    answered_call(
        &mut rig,
        &sdp("192.0.2.50", "0", "").replace("a=sendrecv", "a=recvonly"),
    );
    media_for(&mut rig, 8, |_| Media::default());
    assert!(rig.diagnoser.active().next().is_none());
    // We send nothing (muted or on hold): no finding either.
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
    for _ in 0..4 {
        rig.advance(Duration::from_secs(2));
        rig.media(1, Media::default());
    }
    assert!(rig.diagnoser.active().next().is_none());
}

#[test]
fn media_findings_clear_when_the_call_ends() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
    media_for(&mut rig, 6, |_| Media::default());
    rig.expect(media::NO_AUDIO_NOTHING, Some(1));
    rig.call(1, CallState::Terminated, None, Some("Hung up"));
    assert!(rig.cleared(media::NO_AUDIO_NOTHING));
    assert_eq!(rig.diagnoser.active().count(), 0);
}

#[test]
fn the_peer_hearing_nothing_is_read_from_its_reports() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
    // Its reports come every ~5 s and never report on our stream.
    media_for(&mut rig, 12, |n| Media {
        received: 100 * n,
        peer: Some(PeerReport {
            reports: n / 2,
            about_us: 0,
            ..PeerReport::default()
        }),
        ..Media::default()
    });
    let finding = rig.expect(media::PEER_HEARS_NOTHING, Some(1));
    assert!(
        finding.message.contains("10.0.0.5:4000"),
        "{}",
        finding.message
    );
    assert!(rig.active(media::NO_AUDIO_NOTHING, Some(1)).is_none());
    // Its reports start naming our stream, with a moving sequence number: over.
    media_for(&mut rig, 4, |n| Media {
        received: 1000 + 100 * n,
        peer: Some(PeerReport {
            reports: 10 + n,
            about_us: n,
            highest_seq: Some(100 * n as u32),
            ..PeerReport::default()
        }),
        ..Media::default()
    });
    assert!(rig.cleared(media::PEER_HEARS_NOTHING));
}

/// ICE consent lost (the media event's path `consent-lost`) is a finding naming the pair;
/// a restart that selects a pair again clears it.
#[test]
fn lost_ice_consent_is_a_finding_until_a_pair_carries_media_again() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
    let report = |path: &str, losses: u32| crate::event::IceReport {
        path: path.to_owned(),
        local: Some("host 10.0.0.5:4000".to_owned()),
        remote: Some("srflx 203.0.113.9:5000".to_owned()),
        relay: None,
        tried: Vec::new(),
        rtcp: None,
        consent_losses: losses,
        lost_pair: (losses > 0).then(|| "host 10.0.0.5:4000 -> srflx 203.0.113.9:5000".into()),
    };
    media_for(&mut rig, 4, |n| Media {
        received: 100 * n,
        ice: Some(report("srflx", 0)),
        ..Media::default()
    });
    assert!(rig.active(media::ICE_CONSENT_LOST, Some(1)).is_none());
    media_for(&mut rig, 2, |_| Media {
        received: 200,
        ice: Some(report("consent-lost", 1)),
        ..Media::default()
    });
    let finding = rig.expect(media::ICE_CONSENT_LOST, Some(1));
    assert!(
        finding
            .message
            .contains("host 10.0.0.5:4000 -> srflx 203.0.113.9:5000"),
        "{}",
        finding.message
    );
    assert_eq!(finding.severity, Severity::Error);
    media_for(&mut rig, 2, |n| Media {
        received: 300 + 100 * n,
        ice: Some(report("srflx", 1)),
        ..Media::default()
    });
    assert!(rig.cleared(media::ICE_CONSENT_LOST));
    // A loss that a restart repaired before the next report is still a finding (the audio
    // stopped for 30 s), cleared at the report after.
    media_for(&mut rig, 2, |n| Media {
        received: 900 + 100 * n,
        ice: Some(report("srflx", 2)),
        ..Media::default()
    });
    rig.expect(media::ICE_CONSENT_LOST, Some(1));
    media_for(&mut rig, 2, |n| Media {
        received: 1200 + 100 * n,
        ice: Some(report("srflx", 2)),
        ..Media::default()
    });
    assert_eq!(
        rig.diagnoser
            .active()
            .filter(|f| f.code == media::ICE_CONSENT_LOST)
            .count(),
        0
    );
}

#[test]
fn a_peer_that_has_not_reported_yet_is_not_judged() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
    media_for(&mut rig, 12, |n| Media {
        received: 100 * n,
        ..Media::default()
    });
    assert!(rig.active(media::PEER_HEARS_NOTHING, Some(1)).is_none());
}

fn mic(peak_db: Option<f32>, muted: bool, failed: Option<&str>) -> Option<MicReport> {
    Some(MicReport {
        source: "device pulseaudio:mic".into(),
        peak_db,
        muted,
        failed: failed.map(str::to_string),
    })
}

#[test]
fn a_microphone_at_digital_silence_is_named() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
    media_for(&mut rig, 6, |n| Media {
        received: 100 * n,
        mic: mic(Some(-96.0), false, None),
        ..Media::default()
    });
    let finding = rig.expect(media::MIC_SILENT, Some(1));
    assert!(
        finding.message.contains("pulseaudio:mic") && finding.message.contains("silence"),
        "{}",
        finding.message
    );
    // Speech comes: over.
    media_for(&mut rig, 2, |n| Media {
        received: 1000 + 100 * n,
        mic: mic(Some(-30.0), false, None),
        ..Media::default()
    });
    assert!(rig.cleared(media::MIC_SILENT));
}

#[test]
fn a_muted_microphone_or_none_at_all_is_no_finding() {
    for report in [mic(None, true, None), None] {
        let mut rig = Rig::new();
        answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
        media_for(&mut rig, 10, |n| Media {
            received: 100 * n,
            mic: report.clone(),
            ..Media::default()
        });
        assert!(rig.diagnoser.active().next().is_none());
    }
}

#[test]
fn a_failed_microphone_says_what_the_device_said() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
    media_for(&mut rig, 2, |n| Media {
        received: 100 * n,
        mic: mic(Some(-96.0), false, Some("sound input `x`: no such device")),
        ..Media::default()
    });
    let finding = rig.expect(media::MIC_FAILED, Some(1));
    assert!(
        finding.message.contains("no such device"),
        "{}",
        finding.message
    );
}

#[test]
fn loss_in_each_direction_jitter_and_round_trip() {
    let mut rig = Rig::new();
    answered_call(&mut rig, &sdp("192.0.2.50", "0", ""));
    media_for(&mut rig, 8, |n| Media {
        received: 90 * n,
        lost: 10 * n,
        jitter_ms: 45.0,
        rtt_ms: Some(520.0),
        peer: Some(PeerReport {
            reports: n,
            about_us: n,
            loss_pct: Some(7.8),
            jitter_ms: Some(38.0),
            highest_seq: Some(100 * n as u32),
        }),
        ..Media::default()
    });
    let loss_in = rig.expect(media::LOSS_IN, Some(1));
    assert!(loss_in.message.contains("10.0 %"), "{}", loss_in.message);
    assert_eq!(loss_in.evidence.get("direction"), Some("in"));
    let loss_out = rig.expect(media::LOSS_OUT, Some(1));
    assert!(loss_out.message.contains("7.8 %"), "{}", loss_out.message);
    rig.expect(media::JITTER_IN, Some(1));
    rig.expect(media::JITTER_OUT, Some(1));
    let rtt = rig.expect(media::HIGH_RTT, Some(1));
    assert!(rtt.message.contains("520 ms"), "{}", rtt.message);
    // All well again (below the lower thresholds): every one clears.
    media_for(&mut rig, 8, |n| Media {
        received: 800 + 100 * n,
        lost: 80,
        jitter_ms: 5.0,
        rtt_ms: Some(40.0),
        peer: Some(PeerReport {
            reports: 10 + n,
            about_us: 10 + n,
            loss_pct: Some(0.0),
            jitter_ms: Some(3.0),
            highest_seq: Some(1000 + 100 * n as u32),
        }),
        ..Media::default()
    });
    for code in [
        media::LOSS_IN,
        media::LOSS_OUT,
        media::JITTER_IN,
        media::JITTER_OUT,
        media::HIGH_RTT,
    ] {
        assert!(rig.cleared(code), "{code} did not clear");
    }
}

fn register(rig: &mut Rig, authorized: bool, expires: u32) {
    let auth = if authorized {
        "Authorization: Digest username=\"alice\", realm=\"atlanta.test\", nonce=\"n\", uri=\"sip:atlanta.test\", response=\"r\"\n"
    } else {
        ""
    };
    rig.sip(
        Direction::Out,
        PROXY,
        &format!(
            "REGISTER sip:atlanta.test SIP/2.0\nVia: SIP/2.0/UDP {ME};branch=z9hG4bKr;rport\n\
             From: <sip:alice@atlanta.test>;tag=r\nTo: <sip:alice@atlanta.test>\nCall-ID: reg@h\n\
             CSeq: 1 REGISTER\nContact: <sip:alice@{ME}>\n{auth}Expires: {expires}\nContent-Length: 0\n\n"
        ),
    );
}

fn register_response(rig: &mut Rig, code: u16, reason: &str, via_extra: &str, extra: &str) {
    rig.sip(
        Direction::In,
        PROXY,
        &format!(
            "SIP/2.0 {code} {reason}\nVia: SIP/2.0/UDP {ME};branch=z9hG4bKr{via_extra}\n\
             From: <sip:alice@atlanta.test>;tag=r\nTo: <sip:alice@atlanta.test>;tag=s\n\
             Call-ID: reg@h\nCSeq: 1 REGISTER\n{extra}Content-Length: 0\n\n"
        ),
    );
}

#[test]
fn a_second_challenge_after_our_credentials_is_a_wrong_password() {
    let mut rig = Rig::new();
    register(&mut rig, false, 600);
    let challenge = "WWW-Authenticate: Digest realm=\"atlanta.test\", nonce=\"n\"\n";
    register_response(&mut rig, 401, "Unauthorized", "", challenge);
    register(&mut rig, true, 600);
    register_response(&mut rig, 401, "Unauthorized", "", challenge);
    rig.registration(RegistrationState::Failed, Some(401), None);
    let finding = rig.expect(signalling::WRONG_PASSWORD, None);
    assert!(
        finding.message.contains("realm atlanta.test") && finding.message.contains("password"),
        "{}",
        finding.message
    );
    // A later success clears it.
    register(&mut rig, true, 600);
    register_response(
        &mut rig,
        200,
        "OK",
        "",
        "Contact: <sip:alice@10.0.0.10:5060>;expires=600\n",
    );
    rig.registration(RegistrationState::Registered, Some(200), Some(600));
    assert!(rig.cleared(signalling::WRONG_PASSWORD));
}

#[test]
fn a_challenge_without_a_password_configured_says_so() {
    let mut rig = Rig::with(Setup {
        has_password: false,
        ..Rig::new().diagnoser.setup.clone()
    });
    register(&mut rig, false, 600);
    register_response(
        &mut rig,
        401,
        "Unauthorized",
        "",
        "WWW-Authenticate: Digest realm=\"x\"\n",
    );
    rig.registration(RegistrationState::Failed, Some(401), None);
    rig.expect(signalling::PASSWORD_MISSING, None);
}

#[test]
fn a_403_or_404_from_the_registrar_is_an_unknown_user() {
    let mut rig = Rig::new();
    register(&mut rig, true, 600);
    register_response(&mut rig, 403, "Unknown user", "", "Server: kamailio\n");
    rig.registration(RegistrationState::Failed, Some(403), None);
    let finding = rig.expect(signalling::UNKNOWN_USER, None);
    assert!(
        finding.message.contains("403 Unknown user"),
        "{}",
        finding.message
    );
}

#[test]
fn a_registrar_that_never_answers_is_named_with_address_and_transport() {
    let mut rig = Rig::new();
    register(&mut rig, false, 600);
    rig.fact(Fact::Unreachable {
        peer: PROXY.parse().expect("addr"),
    });
    rig.registration(RegistrationState::Failed, Some(503), None);
    let finding = rig.expect(signalling::REGISTRAR_UNREACHABLE, None);
    assert!(
        finding.message.contains("203.0.113.10:5060 over UDP") && finding.message.contains("ICMP"),
        "{}",
        finding.message
    );
}

#[test]
fn other_refusals_are_explained_in_words() {
    let mut rig = Rig::new();
    register(&mut rig, true, 600);
    register_response(&mut rig, 503, "Service Unavailable", "", "");
    rig.registration(RegistrationState::Failed, Some(503), None);
    let finding = rig.expect(signalling::REGISTRATION_REJECTED, None);
    assert!(
        finding.message.contains("overloaded"),
        "{}",
        finding.message
    );
}

#[test]
fn the_registrar_changing_the_expiry_is_explained() {
    // Shorter.
    let mut rig = Rig::new();
    register(&mut rig, false, 7200);
    register_response(&mut rig, 200, "OK", "", "Expires: 3600\n");
    rig.registration(RegistrationState::Registered, Some(200), Some(3600));
    let finding = rig.expect(signalling::EXPIRY_CHANGED, None);
    assert!(
        finding.message.contains("shortened") && finding.message.contains("3600 s"),
        "{}",
        finding.message
    );
    // Longer, after a 423.
    let mut rig = Rig::new();
    register(&mut rig, false, 60);
    register_response(
        &mut rig,
        423,
        "Interval Too Brief",
        "",
        "Min-Expires: 300\n",
    );
    register(&mut rig, false, 300);
    register_response(&mut rig, 200, "OK", "", "Expires: 300\n");
    rig.registration(RegistrationState::Registered, Some(200), Some(300));
    let finding = rig.expect(signalling::EXPIRY_CHANGED, None);
    assert!(
        finding.message.contains("at least 300 s") && finding.message.contains("423"),
        "{}",
        finding.message
    );
}

#[test]
fn behind_a_nat_and_a_nat_that_forgot_us() {
    let mut rig = Rig::new();
    register(&mut rig, false, 600);
    register_response(
        &mut rig,
        200,
        "OK",
        ";received=198.51.100.1;rport=40000",
        "",
    );
    rig.registration(RegistrationState::Registered, Some(200), Some(600));
    let finding = rig.expect(network::BEHIND_NAT, None);
    assert!(
        finding.message.contains("198.51.100.1:40000") && finding.message.contains(ME),
        "{}",
        finding.message
    );
    // A refresh: the NAT gave a new port.
    rig.advance(Duration::from_secs(300));
    register(&mut rig, false, 600);
    register_response(
        &mut rig,
        200,
        "OK",
        ";received=198.51.100.1;rport=41234",
        "",
    );
    rig.registration(RegistrationState::Registered, Some(200), Some(600));
    let lost = rig.expect(network::MAPPING_LOST, None);
    assert!(
        lost.message.contains("198.51.100.1:41234") && lost.message.contains("198.51.100.1:40000"),
        "{}",
        lost.message
    );
    // It holds for a minute and more: over.
    rig.advance(Duration::from_secs(120));
    register(&mut rig, false, 600);
    register_response(
        &mut rig,
        200,
        "OK",
        ";received=198.51.100.1;rport=41234",
        "",
    );
    rig.registration(RegistrationState::Registered, Some(200), Some(600));
    assert!(rig.cleared(network::MAPPING_LOST));
    rig.registration(RegistrationState::Unregistered, Some(200), None);
    assert!(rig.cleared(network::BEHIND_NAT));
}

#[test]
fn a_domain_without_records_and_a_dns_without_answers() {
    let mut rig = Rig::new();
    rig.fact(Fact::Resolved {
        host: "atlanta.test".into(),
        outcome: Err(DnsFailure::Absent(
            "atlanta.test: no NAPTR, SRV, A or AAAA records".into(),
        )),
    });
    let finding = rig.expect(network::DNS_NO_RECORDS, None);
    assert!(
        finding
            .message
            .starts_with("atlanta.test has no SIP server"),
        "{}",
        finding.message
    );
    // It resolves later: over.
    rig.fact(Fact::Resolved {
        host: "atlanta.test".into(),
        outcome: Ok((Vec::new(), "A atlanta.test -> 192.0.2.1".into())),
    });
    assert!(rig.cleared(network::DNS_NO_RECORDS));
    // A dialled name: the finding comes with the failed call.
    rig.fact(Fact::Resolved {
        host: "nowhere.test".into(),
        outcome: Err(DnsFailure::Unanswered(
            "DNS server did not answer for nowhere.test (timed out)".into(),
        )),
    });
    assert!(rig.active(network::DNS_UNANSWERED, None).is_none());
    rig.call(1, CallState::Calling, None, None);
    rig.call(
        1,
        CallState::Terminated,
        Some(503),
        Some("Cannot resolve DNS server did not answer for nowhere.test (timed out)"),
    );
    rig.expect(network::DNS_UNANSWERED, Some(1));
    // The next call: history.
    rig.call(2, CallState::Calling, None, None);
    assert!(rig.cleared(network::DNS_UNANSWERED));
}

#[test]
fn every_srv_target_dead_is_one_finding_naming_them_all() {
    let mut rig = Rig::new();
    let a: SocketAddr = "192.0.2.11:5070".parse().expect("addr");
    let b: SocketAddr = "192.0.2.12:5080".parse().expect("addr");
    rig.fact(Fact::Resolved {
        host: "atlanta.test".into(),
        outcome: Ok((
            vec![
                Target {
                    addr: a,
                    transport: "UDP",
                },
                Target {
                    addr: b,
                    transport: "UDP",
                },
            ],
            "SRV _sip._udp.atlanta.test -> sip1.atlanta.test:5070 -> 192.0.2.11 (+1 more)".into(),
        )),
    });
    rig.sip(Direction::Out, &a.to_string(), "REGISTER sip:atlanta.test SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bK1\nFrom: <sip:alice@atlanta.test>;tag=r\nTo: <sip:alice@atlanta.test>\nCall-ID: reg@h\nCSeq: 1 REGISTER\nContent-Length: 0\n\n");
    rig.fact(Fact::Unreachable { peer: a });
    rig.sip(Direction::Out, &b.to_string(), "REGISTER sip:atlanta.test SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bK2\nFrom: <sip:alice@atlanta.test>;tag=r\nTo: <sip:alice@atlanta.test>\nCall-ID: reg@h\nCSeq: 2 REGISTER\nContent-Length: 0\n\n");
    rig.registration(RegistrationState::Failed, Some(408), None);
    let finding = rig.expect(network::DNS_ALL_TARGETS_DEAD, None);
    assert!(
        finding.message.contains("192.0.2.11:5070 over UDP (ICMP")
            && finding
                .message
                .contains("192.0.2.12:5080 over UDP (no answer)"),
        "{}",
        finding.message
    );
    assert!(
        rig.active(signalling::REGISTRAR_UNREACHABLE, None)
            .is_none()
    );
}

#[test]
fn tls_failures_name_the_certificate_problem_and_clear_when_the_server_answers() {
    let peer: SocketAddr = "192.0.2.5:5061".parse().expect("addr");
    let cases = [
        (
            TlsFailure::UnknownIssuer,
            network::TLS_UNKNOWN_ISSUER,
            "does not trust",
        ),
        (
            TlsFailure::NameMismatch {
                expected: "sip.atlanta.test".into(),
                presented: vec!["other.test".into()],
            },
            network::TLS_NAME_MISMATCH,
            "is for other.test, not for sip.atlanta.test",
        ),
        (
            TlsFailure::Expired { days_ago: Some(3) },
            network::TLS_EXPIRED,
            "expired 3 day(s) ago",
        ),
        (
            TlsFailure::Refused {
                why: "it sent the alert CertificateRequired".into(),
            },
            network::TLS_REFUSED,
            "CertificateRequired",
        ),
    ];
    for (failure, code, words) in cases {
        let mut rig = Rig::new();
        rig.fact(Fact::ConnectFailed {
            peer,
            transport: "TLS",
            error: "TLS: invalid peer certificate".into(),
            tls: Some(failure),
        });
        let finding = rig.expect(code, None);
        assert!(finding.message.contains(words), "{}", finding.message);
        // The registration fails because of it: no second finding.
        rig.sip(Direction::Out, &peer.to_string(), "REGISTER sip:atlanta.test SIP/2.0\nVia: SIP/2.0/TLS 10.0.0.10:5061;branch=z9hG4bK1\nFrom: <sip:alice@atlanta.test>;tag=r\nTo: <sip:alice@atlanta.test>\nCall-ID: reg@h\nCSeq: 1 REGISTER\nContent-Length: 0\n\n");
        rig.registration(RegistrationState::Failed, Some(503), None);
        assert!(
            rig.active(signalling::REGISTRAR_UNREACHABLE, None)
                .is_none()
        );
        rig.sip(Direction::In, &peer.to_string(), "SIP/2.0 200 OK\nVia: SIP/2.0/TLS 10.0.0.10:5061;branch=z9hG4bK1\nFrom: <sip:alice@atlanta.test>;tag=r\nTo: <sip:alice@atlanta.test>;tag=x\nCall-ID: reg@h\nCSeq: 2 REGISTER\nContent-Length: 0\n\n");
        assert!(rig.cleared(code), "{code}");
    }
}

#[test]
fn a_488_lists_the_codecs_each_side_offered() {
    // We called: ours from our offer, theirs from the 488's SDP.
    let mut rig = Rig::new();
    rig.call(1, CallState::Calling, None, None);
    rig.sip(
        Direction::Out,
        PROXY,
        &invite(
            1,
            &sdp("192.0.2.101", "111 0 8", "a=rtpmap:111 opus/48000/2\n"),
        ),
    );
    rig.sip(
        Direction::In,
        PROXY,
        &response(
            1,
            488,
            "Not Acceptable Here",
            "Warning: 305 pbx \"Incompatible media format\"\n",
            &sdp("192.0.2.50", "18 9", ""),
        ),
    );
    rig.call(
        1,
        CallState::Terminated,
        Some(488),
        Some("Not Acceptable Here"),
    );
    let finding = rig.expect(signalling::CODEC_MISMATCH, Some(1));
    assert!(
        finding.message.contains("opus, PCMU and PCMA")
            && finding.message.contains("G729 and G722"),
        "{}",
        finding.message
    );
    // They called with codecs we lack and we refused.
    let mut rig = Rig::new();
    rig.call(2, CallState::Incoming, None, None);
    let theirs =
        invite(2, &sdp("192.0.2.50", "18", "")).replace("INVITE sip:bob", "INVITE sip:alice");
    rig.sip(Direction::In, PROXY, &theirs);
    rig.sip(
        Direction::Out,
        PROXY,
        &response(2, 488, "Not Acceptable Here", "", ""),
    );
    rig.call(
        2,
        CallState::Terminated,
        Some(488),
        Some("Not Acceptable Here"),
    );
    let finding = rig.expect(signalling::CODEC_MISMATCH, Some(2));
    assert!(
        finding.message.contains("offered G729") && finding.message.contains("opus, PCMU and PCMA"),
        "{}",
        finding.message
    );
}

#[test]
fn call_failures_in_words() {
    let cases: &[(u16, &str, &str, &str, &str)] = &[
        (
            420,
            "Bad Extension",
            "Unsupported: foo, bar\n",
            signalling::EXTENSION_UNSUPPORTED,
            "foo and bar",
        ),
        (
            421,
            "Extension Required",
            "Require: 100rel\n",
            signalling::EXTENSION_REQUIRED,
            "100rel",
        ),
        (
            403,
            "Forbidden",
            "Server: kamailio\n",
            signalling::FORBIDDEN,
            "203.0.113.10:5060 (kamailio)",
        ),
        (
            404,
            "Not Found",
            "",
            signalling::NOT_FOUND,
            "does not exist",
        ),
        (
            408,
            "Request Timeout",
            "",
            signalling::NO_RESPONSE,
            "offline",
        ),
        (
            480,
            "Temporarily Unavailable",
            "",
            signalling::UNAVAILABLE,
            "not registered",
        ),
        (486, "Busy Here", "", signalling::BUSY, "busy"),
        (603, "Decline", "", signalling::DECLINED, "declined"),
        (
            500,
            "Server Internal Error",
            "",
            signalling::FAILED,
            "internal error",
        ),
    ];
    for (code, reason, extra, finding_code, words) in cases {
        let mut rig = Rig::new();
        rig.call(1, CallState::Calling, None, None);
        rig.sip(
            Direction::Out,
            PROXY,
            &invite(1, &sdp("192.0.2.101", "0", "")),
        );
        rig.sip(Direction::In, PROXY, &response(1, *code, reason, extra, ""));
        rig.call(1, CallState::Terminated, Some(*code), Some(reason));
        let finding = rig.expect(finding_code, Some(1));
        assert!(
            finding.message.contains(words),
            "{code}: {}",
            finding.message
        );
        // The next call makes it history.
        rig.call(2, CallState::Calling, None, None);
        assert!(rig.cleared(finding_code), "{code}");
    }
}

#[test]
fn an_invite_nobody_answered_names_the_dead_server() {
    let mut rig = Rig::new();
    rig.call(1, CallState::Calling, None, None);
    rig.sip(
        Direction::Out,
        PROXY,
        &invite(1, &sdp("192.0.2.101", "0", "")),
    );
    rig.fact(Fact::Unreachable {
        peer: PROXY.parse().expect("addr"),
    });
    rig.call(
        1,
        CallState::Terminated,
        Some(503),
        Some("Service Unavailable (transport error)"),
    );
    let finding = rig.expect(signalling::UNREACHABLE, Some(1));
    assert!(
        finding.message.contains("203.0.113.10:5060 (ICMP"),
        "{}",
        finding.message
    );
}

#[test]
fn a_connection_whose_keep_alives_died_is_a_finding_until_the_server_is_heard_again() {
    let mut rig = Rig::new();
    rig.fact(Fact::ConnectionLost {
        peer: PROXY.parse().expect("addr"),
        error: "no pong within 10 s".into(),
    });
    let finding = rig.expect(network::KEEPALIVE_FAILED, None);
    assert!(finding.message.contains("no pong"), "{}", finding.message);
    register_response(&mut rig, 200, "OK", "", "");
    assert!(rig.cleared(network::KEEPALIVE_FAILED));
}

#[test]
fn diagnosis_events_serialize_with_state_code_call_and_evidence() {
    let finding = Finding::new(
        "media.no_audio.private_address",
        Severity::Error,
        "no audio in",
        "No audio.",
        "Fix it.",
    )
    .on_call(3)
    .with_evidence(Evidence::new().with("sdp_address", "10.0.0.5:4000"));
    let event = Event::Diagnosis {
        state: FindingState::Active,
        finding,
    };
    assert_eq!(
        serde_json::to_string(&event).ok().as_deref(),
        Some(
            r#"{"event":"diagnosis","state":"active","code":"media.no_audio.private_address","severity":"error","call":"3","message":"No audio.","advice":"Fix it.","evidence":{"sdp_address":"10.0.0.5:4000"}}"#
        )
    );
    let _ = Rig::new().t0;
}
