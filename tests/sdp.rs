//! SDP offer/answer against hand-written SDP in the style of real phones and PBXs, the RFC 5118
//! IPv6 torture bodies, and our own offers answered by our own answer code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sipterm::sdp::{
    Codec, Direction, LocalMedia, MediaParams, SdpError, answer_offer, apply_answer, build_offer,
    crypto_lines,
};

fn us(codecs: &[Codec]) -> LocalMedia {
    LocalMedia {
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        rtp_port: 40_000,
        codecs: codecs.to_vec(),
        direction: Direction::SendRecv,
        session_id: 77,
        session_version: 1,
        srtp: Default::default(),
        ice: None,
    }
}

fn all_codecs() -> LocalMedia {
    us(&[Codec::Opus, Codec::Pcmu, Codec::Pcma])
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

/// Real bodies are written with CRLF; the fixtures below are readable LF text.
fn crlf(text: &str) -> String {
    text.lines().map(|line| format!("{line}\r\n")).collect()
}

fn m_lines(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .map(str::trim_end)
        .filter(|line| line.starts_with("m="))
        .collect()
}

fn has_line(sdp: &str, wanted: &str) -> bool {
    sdp.lines().any(|line| line.trim_end() == wanted)
}

/// The answer must itself be SDP that a strict third-party parser reads.
fn assert_webrtc_sdp_reads(sdp: &str) {
    assert!(
        webrtc_sdp::parse_sdp(sdp, false).is_ok(),
        "webrtc-sdp cannot read:\n{sdp}"
    );
}

const ASTERISK_OFFER: &str = "v=0
o=- 1689239810 1689239810 IN IP4 203.0.113.20
s=Asterisk
c=IN IP4 203.0.113.20
t=0 0
m=audio 17324 RTP/AVP 0 8 3 111 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:3 GSM/8000
a=rtpmap:111 opus/48000/2
a=fmtp:111 useinbandfec=1
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv
";

const FREESWITCH_OFFER: &str = "v=0
o=FreeSWITCH 1689212345 1689212346 IN IP4 203.0.113.30
s=FreeSWITCH
c=IN IP4 203.0.113.30
t=0 0
m=audio 24578 RTP/AVP 102 9 0 8 104 101
a=rtpmap:102 opus/48000/2
a=fmtp:102 useinbandfec=1; maxplaybackrate=48000; stereo=0; sprop-stereo=0
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:104 telephone-event/48000
a=fmtp:104 0-16
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=sendrecv
a=rtcp:24579 IN IP4 203.0.113.30
";

const LINPHONE_OFFER_WITH_VIDEO: &str = "v=0
o=alice 2338 1207 IN IP4 192.168.1.23
s=Talk
c=IN IP4 192.168.1.23
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96 97
a=rtpmap:96 VP8/90000
a=rtpmap:97 H264/90000
a=fmtp:97 profile-level-id=42801F
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
a=rtcp-fb:96 nack pli
";

const BARESIP_OFFER: &str = "v=0
o=- 1475916014 1870549395 IN IP4 10.0.0.5
s=-
c=IN IP4 10.0.0.5
t=0 0
a=tool:baresip 1.0.0
m=audio 10628 RTP/AVP 96 0 8 101
b=AS:128
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendrecv
a=label:1
a=rtcp-rsize
a=ssrc:3339164171 cname:e7d1e6d3-4f6e-4d0a-9a4e-5e0f1b0c2d11
a=ptime:20
";

const ZOIPER_OFFER_WITH_MUX: &str = "v=0
o=Z 1689300000123 1 IN IP4 172.16.5.9
s=Z
c=IN IP4 172.16.5.9
t=0 0
m=audio 52204 RTP/AVP 106 9 98 101 0 8 3
a=rtpmap:106 opus/48000/2
a=fmtp:106 minptime=20; cbr=1; maxaveragebitrate=40000; useinbandfec=1
a=rtpmap:98 telephone-event/48000
a=fmtp:98 0-16
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv
a=rtcp-mux
";

const ZOIPER_SRTP_ONLY_OFFER: &str = "v=0
o=Z 1689300000456 1 IN IP4 172.16.5.9
s=Z
c=IN IP4 172.16.5.9
t=0 0
m=audio 52206 RTP/SAVP 0 8 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^31
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:QvFU4SAqyhFTC3VJ0Z2vAkFQ2PbHy7rgpMIQSt9R|2^31
a=sendrecv
";

const MICROSIP_OFFER: &str = "v=0
o=- 3898760021 3898760021 IN IP4 192.168.0.101
s=pjmedia
b=AS:84
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 8 0 101
c=IN IP4 192.168.0.101
b=TIAS:64000
a=rtcp:4001 IN IP4 192.168.0.101
a=sendrecv
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ssrc:1149443405 cname:5e1a0c8a43c02e31
";

/// An old desk phone: no `t=`, padded spaces, upper-case OPUS, lower-case pcmu, PT 8 without
/// rtpmap, bare LF line ends, unknown `k=` and `u=` lines.
const SLOPPY_DESK_PHONE_OFFER: &str = "v=0\no=phone 1 1 IN IP4 10.1.1.50\ns=call\nu=http://example.com/phone\nc=IN  IP4   10.1.1.50\nm=audio  16384   RTP/AVP  118 8 pcmu-is-not-a-number\nm=audio  16384   RTP/AVP  118 0 8 101\nk=clear:secret\na=rtpmap:118  OPUS/48000/2\na=rtpmap:0 pcmu/8000\na=rtpmap:101 Telephone-Event/48000\na=ptime: 20\n";

#[test]
fn asterisk_offer_gets_pcmu_because_the_offerer_lists_it_first() {
    let (answer, params) = answer_offer(&crlf(ASTERISK_OFFER), &all_codecs()).expect("answer");
    assert_eq!(params.codec, Codec::Pcmu);
    assert_eq!(params.payload_type, 0);
    assert_eq!(params.telephone_event_pt, Some(101));
    assert_eq!(params.remote, addr("203.0.113.20:17324"));
    assert_eq!(params.remote_rtcp, Some(addr("203.0.113.20:17325")));
    assert_eq!(params.direction, Direction::SendRecv);
    assert_eq!(m_lines(&answer), vec!["m=audio 40000 RTP/AVP 0 101"]);
    assert!(
        has_line(&answer, "a=rtpmap:101 telephone-event/8000"),
        "{answer}"
    );
    assert!(has_line(&answer, "a=sendrecv"), "{answer}");
    assert_webrtc_sdp_reads(&answer);
}

#[test]
fn freeswitch_opus_offer_gets_its_own_payload_types() {
    let (answer, params) = answer_offer(&crlf(FREESWITCH_OFFER), &all_codecs()).expect("answer");
    assert_eq!(
        params,
        MediaParams {
            remote: addr("203.0.113.30:24578"),
            remote_rtcp: Some(addr("203.0.113.30:24579")),
            codec: Codec::Opus,
            payload_type: 102,
            clock_rate: 48_000,
            channels: 2,
            ptime_ms: 20,
            telephone_event_pt: Some(104),
            direction: Direction::SendRecv,
            rtcp_mux: false,
            srtp: None,
            peer_signalling: Vec::new(),
            ice: None,
            signalling_tls: false,
        }
    );
    assert_eq!(m_lines(&answer), vec!["m=audio 40000 RTP/AVP 102 104"]);
    assert!(has_line(&answer, "a=rtpmap:102 opus/48000/2"), "{answer}");
    assert!(
        has_line(&answer, "a=rtpmap:104 telephone-event/48000"),
        "{answer}"
    );
    assert_webrtc_sdp_reads(&answer);
}

#[test]
fn g711_only_peer_with_opus_first_in_our_list_gets_g711() {
    let (answer, params) = answer_offer(&crlf(MICROSIP_OFFER), &all_codecs()).expect("answer");
    // Offerer's order: PCMA before PCMU.
    assert_eq!(params.codec, Codec::Pcma);
    assert_eq!(params.payload_type, 8);
    assert_eq!(params.clock_rate, 8_000);
    assert_eq!(params.channels, 1);
    assert_eq!(params.telephone_event_pt, Some(101));
    // Address from the media-level c= line; there is none at session level.
    assert_eq!(params.remote, addr("192.168.0.101:4000"));
    assert_eq!(params.remote_rtcp, Some(addr("192.168.0.101:4001")));
    assert_eq!(m_lines(&answer), vec!["m=audio 40000 RTP/AVP 8 101"]);
    assert_webrtc_sdp_reads(&answer);
}

#[test]
fn linphone_video_is_rejected_with_port_zero_and_audio_kept() {
    let (answer, params) =
        answer_offer(&crlf(LINPHONE_OFFER_WITH_VIDEO), &all_codecs()).expect("answer");
    assert_eq!(params.codec, Codec::Opus);
    assert_eq!(params.payload_type, 96);
    assert_eq!(params.telephone_event_pt, Some(101));
    assert_eq!(
        m_lines(&answer),
        vec!["m=audio 40000 RTP/AVP 96 101", "m=video 0 RTP/AVP 96 97"]
    );
    assert_webrtc_sdp_reads(&answer);
}

#[test]
fn offerer_order_wins_within_our_list() {
    // We prefer PCMA, Linphone lists PCMU (0) before PCMA (8): RFC 3264 lets the answerer pick,
    // and we follow the offerer's order among the codecs we allow.
    let (_, params) = answer_offer(
        &crlf(LINPHONE_OFFER_WITH_VIDEO),
        &us(&[Codec::Pcma, Codec::Pcmu]),
    )
    .expect("answer");
    assert_eq!(params.codec, Codec::Pcmu);
    assert_eq!(params.telephone_event_pt, Some(100));
}

#[test]
fn baresip_opus_without_wideband_dtmf_has_no_telephone_event() {
    let (answer, params) = answer_offer(&crlf(BARESIP_OFFER), &all_codecs()).expect("answer");
    assert_eq!(params.codec, Codec::Opus);
    assert_eq!(params.payload_type, 96);
    // Only telephone-event/8000 is offered, which does not fit Opus' 48 kHz clock (RFC 4733).
    assert_eq!(params.telephone_event_pt, None);
    assert_eq!(m_lines(&answer), vec!["m=audio 40000 RTP/AVP 96"]);

    let (_, g711) = answer_offer(&crlf(BARESIP_OFFER), &us(&[Codec::Pcmu])).expect("answer");
    assert_eq!(
        (g711.codec, g711.telephone_event_pt),
        (Codec::Pcmu, Some(101))
    );
}

#[test]
fn zoiper_rtcp_mux_is_accepted_and_rtcp_goes_to_the_rtp_port() {
    let (answer, params) =
        answer_offer(&crlf(ZOIPER_OFFER_WITH_MUX), &all_codecs()).expect("answer");
    assert_eq!(params.codec, Codec::Opus);
    assert_eq!(params.payload_type, 106);
    assert_eq!(params.telephone_event_pt, Some(98));
    assert!(params.rtcp_mux);
    assert_eq!(params.remote_rtcp, Some(addr("172.16.5.9:52204")));
    assert!(has_line(&answer, "a=rtcp-mux"), "{answer}");
    assert_webrtc_sdp_reads(&answer);
}

#[test]
fn srtp_only_offer_is_refused_with_srtp_off_and_taken_with_srtp_optional() {
    let offer = crlf(ZOIPER_SRTP_ONLY_OFFER);
    // `srtp = "off"` (this file's LocalMedia default): refused, saying why.
    assert_eq!(
        answer_offer(&offer, &all_codecs()).map(|(_, params)| params),
        Err(SdpError::SrtpOff)
    );
    // Optional: Zoiper's RTP/SAVP offer is answered with its first suite and our own key.
    let optional = LocalMedia {
        srtp: sipterm::sdp::LocalSrtp::new(sipterm::sdp::SrtpPolicy::Optional),
        ..all_codecs()
    };
    let (answer, params) = answer_offer(&offer, &optional).expect("SRTP answer");
    let srtp = params.srtp.expect("encrypted");
    assert_eq!(srtp.tag, 1);
    assert_eq!(srtp.suite, sipterm::sdp::CryptoSuite::AesCm128HmacSha1_80);
    assert!(answer.contains(" RTP/SAVP "), "{answer}");
    assert!(
        answer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{answer}"
    );
    assert_webrtc_sdp_reads(&answer);
    let crypto = crypto_lines(&offer);
    assert_eq!(crypto.len(), 2);
    assert!(
        crypto[0].starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:d0Rm"),
        "{crypto:?}"
    );
}

#[test]
fn srtp_and_plain_audio_offer_takes_the_plain_one() {
    let offer = crlf(
        "v=0
o=- 5 5 IN IP4 198.51.100.2
s=-
c=IN IP4 198.51.100.2
t=0 0
m=audio 30000 RTP/SAVP 0
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj
m=audio 30002 RTP/AVP 0
",
    );
    let (answer, params) = answer_offer(&offer, &all_codecs()).expect("answer");
    assert_eq!(params.remote, addr("198.51.100.2:30002"));
    assert_eq!(
        m_lines(&answer),
        vec!["m=audio 0 RTP/SAVP 0", "m=audio 40000 RTP/AVP 0"]
    );
}

#[test]
fn second_audio_and_unknown_media_lines_are_echoed_with_port_zero() {
    let offer = crlf(
        "v=0
o=- 5 5 IN IP4 198.51.100.2
s=-
c=IN IP4 198.51.100.2
t=0 0
m=text 31000 RTP/AVP 98
a=rtpmap:98 t140/1000
m=audio 30000 RTP/AVP 8
m=audio 30002 RTP/AVP 0
m=image 30004 udptl t38
a=T38FaxVersion:0
m=application 30006 TCP/BFCP *
",
    );
    let (answer, params) = answer_offer(&offer, &all_codecs()).expect("answer");
    assert_eq!(params.codec, Codec::Pcma);
    assert_eq!(
        m_lines(&answer),
        vec![
            "m=text 0 RTP/AVP 98",
            "m=audio 40000 RTP/AVP 8",
            "m=audio 0 RTP/AVP 0",
            "m=image 0 udptl t38",
            "m=application 0 TCP/BFCP *",
        ]
    );
}

#[test]
fn sloppy_desk_phone_offer_is_understood() {
    let (answer, params) = answer_offer(SLOPPY_DESK_PHONE_OFFER, &all_codecs()).expect("answer");
    assert_eq!(params.codec, Codec::Opus);
    assert_eq!(params.payload_type, 118);
    assert_eq!(params.telephone_event_pt, Some(101));
    assert_eq!(params.ptime_ms, 20);
    assert_eq!(params.remote, addr("10.1.1.50:16384"));
    // The first m-line has a format that is no number: unusable, echoed with port 0.
    assert_eq!(
        m_lines(&answer),
        vec![
            "m=audio 0 RTP/AVP 118 8 pcmu-is-not-a-number",
            "m=audio 40000 RTP/AVP 118 101",
        ]
    );

    let (_, g711) = answer_offer(SLOPPY_DESK_PHONE_OFFER, &us(&[Codec::Pcma])).expect("answer");
    assert_eq!((g711.codec, g711.payload_type), (Codec::Pcma, 8));
}

#[test]
fn offer_with_nothing_in_common_is_an_error() {
    let offer = crlf(
        "v=0
o=- 5 5 IN IP4 198.51.100.2
s=-
c=IN IP4 198.51.100.2
t=0 0
m=audio 30000 RTP/AVP 18 9 101
a=rtpmap:18 G729/8000
a=rtpmap:9 G722/8000
a=rtpmap:101 telephone-event/8000
",
    );
    assert_eq!(
        answer_offer(&offer, &all_codecs()).map(|(_, params)| params),
        Err(SdpError::NoCommonCodec)
    );
    // Also when the peer's codecs are ours but not in our configured list.
    assert_eq!(
        answer_offer(&crlf(MICROSIP_OFFER), &us(&[Codec::Opus])).map(|(_, params)| params),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn offer_without_audio_is_an_error() {
    let offer = crlf(
        "v=0
o=- 5 5 IN IP4 198.51.100.2
s=-
c=IN IP4 198.51.100.2
t=0 0
m=video 30000 RTP/AVP 96
a=rtpmap:96 VP8/90000
",
    );
    assert_eq!(
        answer_offer(&offer, &all_codecs()).map(|(_, params)| params),
        Err(SdpError::NoUsableAudio)
    );
}

fn hold_offer(connection: &str, direction: &str) -> String {
    crlf(&format!(
        "v=0
o=- 1689239810 1689239811 IN IP4 203.0.113.20
s=Asterisk
c=IN IP4 {connection}
t=0 0
m=audio 17324 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=ptime:20
{direction}"
    ))
}

#[test]
fn sendonly_hold_offer_is_answered_recvonly() {
    let (answer, params) =
        answer_offer(&hold_offer("203.0.113.20", "a=sendonly"), &all_codecs()).expect("answer");
    assert_eq!(params.direction, Direction::RecvOnly);
    assert!(has_line(&answer, "a=recvonly"), "{answer}");
}

#[test]
fn rfc2543_zero_address_hold_means_we_must_not_send() {
    let (answer, params) =
        answer_offer(&hold_offer("0.0.0.0", "a=sendrecv"), &all_codecs()).expect("answer");
    assert!(!params.direction.sends(), "{:?}", params.direction);
    assert_eq!(params.direction, Direction::RecvOnly);
    assert!(params.remote.ip().is_unspecified());
    assert!(has_line(&answer, "a=recvonly"), "{answer}");

    // 0.0.0.0 with no direction attribute at all: the classic RFC 2543 hold.
    let (_, params) = answer_offer(&hold_offer("0.0.0.0", ""), &all_codecs()).expect("answer");
    assert_eq!(params.direction, Direction::RecvOnly);
}

#[test]
fn inactive_and_recvonly_offers_are_mirrored() {
    let (answer, params) =
        answer_offer(&hold_offer("203.0.113.20", "a=inactive"), &all_codecs()).expect("answer");
    assert_eq!(params.direction, Direction::Inactive);
    assert!(has_line(&answer, "a=inactive"), "{answer}");

    let (answer, params) =
        answer_offer(&hold_offer("203.0.113.20", "a=recvonly"), &all_codecs()).expect("answer");
    assert_eq!(params.direction, Direction::SendOnly);
    assert!(has_line(&answer, "a=sendonly"), "{answer}");
}

/// The SDP body of a raw SIP message (RFC 5118 fixtures are LF-only).
fn fixture_body(name: &str) -> String {
    let path = format!(
        "{}/tests/data/sdp/rfc5118/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let message = std::fs::read_to_string(&path).expect("fixture present");
    let normalized = message.replace("\r\n", "\n");
    let (_, body) = normalized.split_once("\n\n").expect("message has a body");
    body.to_owned()
}

#[test]
fn rfc5118_ipv6_sdp_offers_only_g726_so_nothing_in_common() {
    for name in ["ipv6-in-sdp", "ipv4-mapped-ipv6"] {
        assert_eq!(
            answer_offer(&fixture_body(name), &all_codecs()).map(|(_, params)| params),
            Err(SdpError::NoCommonCodec),
            "{name}"
        );
    }
}

#[test]
fn rfc5118_ipv6_sdp_with_a_codec_we_have_uses_the_ip6_address() {
    // The §4.6 body with G.711 in place of G.726: same IPv6 session-level c= line.
    let body = fixture_body("ipv6-in-sdp")
        .replace("RTP/AVP 2", "RTP/AVP 0")
        .replace("a=rtpmap:2 G726-32/8000", "a=rtpmap:0 PCMU/8000");
    let mut local = all_codecs();
    local.address = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
    let (answer, params) = answer_offer(&body, &local).expect("answer");
    assert_eq!(params.remote, addr("[2001:db8::20]:6000"));
    assert!(has_line(&answer, "c=IN IP6 2001:db8::10"), "{answer}");
    assert_eq!(
        m_lines(&answer),
        vec!["m=audio 40000 RTP/AVP 0", "m=video 0 RTP/AVP 107"]
    );
}

#[test]
fn rfc5118_multiple_addresses_use_the_audio_sections_own_c_line() {
    let (answer, params) =
        answer_offer(&fixture_body("mult-ip-in-sdp"), &all_codecs()).expect("answer");
    assert_eq!(params.codec, Codec::Pcmu);
    assert_eq!(params.remote, addr("192.0.2.1:22334"));
    assert_eq!(
        m_lines(&answer),
        vec!["m=audio 40000 RTP/AVP 0", "m=video 0 RTP/AVP 107"]
    );
}

/// Our offer, answered by our own answer code, applied back: both ends must agree.
fn round_trip(caller: &LocalMedia, callee: &LocalMedia) -> (MediaParams, MediaParams) {
    let offer = build_offer(caller);
    let (answer, callee_params) = answer_offer(&offer, callee).expect("callee answers");
    let caller_params = apply_answer(&answer, caller).expect("caller applies");
    (caller_params, callee_params)
}

#[test]
fn round_trip_both_ends_agree_on_codec_addresses_and_dtmf() {
    let caller = all_codecs();
    let mut callee = us(&[Codec::Pcma, Codec::Opus]);
    callee.address = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 20));
    callee.rtp_port = 50_000;
    let (at_caller, at_callee) = round_trip(&caller, &callee);

    assert_eq!(at_callee.codec, Codec::Opus, "offerer's order: Opus first");
    assert_eq!(at_caller.codec, at_callee.codec);
    assert_eq!(at_caller.payload_type, 111);
    assert_eq!(at_callee.payload_type, 111);
    assert_eq!(at_caller.telephone_event_pt, Some(110));
    assert_eq!(at_callee.telephone_event_pt, Some(110));
    assert_eq!(at_caller.remote, addr("192.0.2.20:50000"));
    assert_eq!(at_callee.remote, addr("192.0.2.10:40000"));
    assert_eq!(at_caller.remote_rtcp, Some(addr("192.0.2.20:50001")));
    assert_eq!(at_callee.remote_rtcp, Some(addr("192.0.2.10:40001")));
    assert_eq!(at_caller.direction, Direction::SendRecv);
}

#[test]
fn round_trip_g711_only_callee_and_hold() {
    let mut caller = all_codecs();
    caller.direction = Direction::SendOnly;
    let callee = us(&[Codec::Pcma]);
    let (at_caller, at_callee) = round_trip(&caller, &callee);
    assert_eq!(
        (at_caller.codec, at_callee.codec),
        (Codec::Pcma, Codec::Pcma)
    );
    assert_eq!(at_caller.telephone_event_pt, Some(101));
    assert_eq!(at_caller.direction, Direction::SendOnly);
    assert_eq!(at_callee.direction, Direction::RecvOnly);
}

#[test]
fn round_trip_over_ipv6() {
    let mut caller = us(&[Codec::Pcmu]);
    caller.address = IpAddr::V6(Ipv6Addr::LOCALHOST);
    let mut callee = us(&[Codec::Pcmu]);
    callee.address = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));
    callee.rtp_port = 50_000;
    let (at_caller, at_callee) = round_trip(&caller, &callee);
    assert_eq!(at_caller.remote, addr("[2001:db8::2]:50000"));
    assert_eq!(at_callee.remote, addr("[::1]:40000"));
}

#[test]
fn round_trip_with_nothing_in_common_fails_at_the_callee() {
    let offer = build_offer(&us(&[Codec::Opus]));
    assert_eq!(
        answer_offer(&offer, &us(&[Codec::Pcmu])).map(|(_, params)| params),
        Err(SdpError::NoCommonCodec)
    );
}

/// Deterministic xorshift, so a failure names a reproducible seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn mutated_real_world_offers_never_panic_or_amplify() {
    const ALPHABET: &[u8] = b"=: /\r\n0123456789amcovtRTPAVpcmuopus-.*";
    let offers = [
        crlf(ASTERISK_OFFER),
        crlf(FREESWITCH_OFFER),
        crlf(LINPHONE_OFFER_WITH_VIDEO),
        crlf(ZOIPER_SRTP_ONLY_OFFER),
        SLOPPY_DESK_PHONE_OFFER.to_owned(),
    ];
    let mut state = 0x5eed_u64;
    let mut answered = 0;
    for seed in 0..2_000 {
        let Some(original) = offers.get(seed % offers.len()) else {
            continue;
        };
        let mut bytes = original.clone().into_bytes();
        for _ in 0..(1 + next_random(&mut state) % 8) {
            let position = (next_random(&mut state) as usize) % (bytes.len() + 1);
            let byte = ALPHABET[(next_random(&mut state) as usize) % ALPHABET.len()];
            match next_random(&mut state) % 3 {
                0 => bytes.insert(position, byte),
                1 if position < bytes.len() => {
                    bytes.remove(position);
                }
                _ if position < bytes.len() => bytes[position] = byte,
                _ => bytes.push(byte),
            }
        }
        let mutated = String::from_utf8(bytes).expect("ASCII mutations keep UTF-8");
        if let Ok((answer, _)) = answer_offer(&mutated, &all_codecs()) {
            answered += 1;
            // An answer echoes m-lines, so it may be about as long as the offer, never more.
            assert!(
                answer.len() <= mutated.len() + 1_024,
                "seed {seed}: {} byte answer to {} byte offer",
                answer.len(),
                mutated.len()
            );
        }
        let _ = apply_answer(&mutated, &all_codecs());
        assert!(crypto_lines(&mutated).len() <= 64, "seed {seed}");
    }
    // Most mutations leave an answerable offer; if none did, the length check never ran.
    println!("{answered} of 2000 mutated offers answered");
    assert!(
        answered >= 500,
        "only {answered} of 2000 mutated offers answered"
    );
}
