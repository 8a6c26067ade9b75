use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;

fn local(codecs: &[Codec]) -> LocalMedia {
    LocalMedia {
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        rtp_port: 40_000,
        codecs: codecs.to_vec(),
        direction: Direction::SendRecv,
        session_id: 4_242,
        session_version: 1,
        srtp: Default::default(),
        ice: None,
    }
}

fn all_codecs() -> LocalMedia {
    local(&[Codec::Opus, Codec::Pcmu, Codec::Pcma])
}

fn lines(sdp: &str) -> Vec<&str> {
    sdp.split("\r\n").filter(|line| !line.is_empty()).collect()
}

fn m_lines(sdp: &str) -> Vec<&str> {
    lines(sdp)
        .into_iter()
        .filter(|line| line.starts_with("m="))
        .collect()
}

/// A minimal offer from a peer: `body` is everything from the m-line on.
fn offer_with(media: &str) -> String {
    format!(
        "v=0\r\no=peer 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n{media}"
    )
}

#[test]
fn offer_lists_codecs_in_configured_order_with_their_payload_types() {
    let cases: [(&[Codec], &str); 4] = [
        (
            &[Codec::Opus, Codec::Pcmu, Codec::Pcma],
            "m=audio 40000 RTP/AVP 111 0 8 110 101",
        ),
        (&[Codec::Pcma, Codec::Pcmu], "m=audio 40000 RTP/AVP 8 0 101"),
        (
            &[Codec::Pcmu, Codec::Opus],
            "m=audio 40000 RTP/AVP 0 111 110 101",
        ),
        (&[Codec::Pcmu, Codec::Pcmu], "m=audio 40000 RTP/AVP 0 101"),
    ];
    for (codecs, expected_m_line) in cases {
        let offer = build_offer(&local(codecs));
        assert_eq!(m_lines(&offer), vec![expected_m_line], "codecs {codecs:?}");
    }
}

#[test]
fn offer_has_rtpmaps_fmtp_ptime_rtcp_and_direction() {
    let offer = build_offer(&all_codecs());
    let offer_lines = lines(&offer);
    for expected in [
        "v=0",
        "o=- 4242 1 IN IP4 192.0.2.10",
        "c=IN IP4 192.0.2.10",
        "t=0 0",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 useinbandfec=1",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:110 telephone-event/48000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=rtcp:40001",
        "a=sendrecv",
    ] {
        assert!(
            offer_lines.contains(&expected),
            "missing {expected:?} in\n{offer}"
        );
    }
    assert!(offer.ends_with("\r\n"));
}

#[test]
fn offer_without_opus_has_no_48k_telephone_event() {
    let offer = build_offer(&local(&[Codec::Pcmu]));
    assert!(!offer.contains("telephone-event/48000"), "{offer}");
    assert!(!offer.contains("opus"), "{offer}");
}

#[test]
fn offer_to_hold_says_sendonly_and_carries_the_session_version() {
    let mut holding = all_codecs();
    holding.direction = Direction::SendOnly;
    holding.session_version = 2;
    let offer = build_offer(&holding);
    assert!(lines(&offer).contains(&"a=sendonly"), "{offer}");
    assert!(
        lines(&offer).contains(&"o=- 4242 2 IN IP4 192.0.2.10"),
        "{offer}"
    );
}

#[test]
fn offer_over_ipv6_uses_ip6_address_type() {
    let mut v6 = all_codecs();
    v6.address = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
    let offer = build_offer(&v6);
    assert!(lines(&offer).contains(&"c=IN IP6 2001:db8::10"), "{offer}");
    assert!(
        lines(&offer).contains(&"o=- 4242 1 IN IP6 2001:db8::10"),
        "{offer}"
    );
}

#[test]
fn our_offer_passes_webrtc_sdp_strict_parser() {
    let offer = build_offer(&all_codecs());
    let parsed = webrtc_sdp::parse_sdp(&offer, true);
    assert!(parsed.is_ok(), "webrtc-sdp rejects our offer:\n{offer}");
    let session = parsed.ok();
    assert_eq!(session.map(|s| s.media.len()), Some(1));
}

#[test]
fn codec_config_names_parse_case_insensitively_and_reject_unknown() {
    assert_eq!("opus".parse::<Codec>(), Ok(Codec::Opus));
    assert_eq!("PCMU".parse::<Codec>(), Ok(Codec::Pcmu));
    assert_eq!(" pcma ".parse::<Codec>(), Ok(Codec::Pcma));
    assert_eq!(
        "g729".parse::<Codec>(),
        Err(SdpError::UnknownCodecName("g729".to_owned()))
    );
}

#[test]
fn direction_reverse_swaps_send_and_receive() {
    assert_eq!(Direction::SendOnly.reverse(), Direction::RecvOnly);
    assert_eq!(Direction::RecvOnly.reverse(), Direction::SendOnly);
    assert_eq!(Direction::SendRecv.reverse(), Direction::SendRecv);
    assert_eq!(Direction::Inactive.reverse(), Direction::Inactive);
}

#[test]
fn answer_honours_offerers_dynamic_payload_type_numbers() {
    let offer = offer_with(
        "m=audio 5004 RTP/AVP 96 0 97\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:97 telephone-event/48000\r\n",
    );
    let (answer, params) = answer_offer(&offer, &all_codecs()).expect("answerable");
    assert_eq!(params.codec, Codec::Opus);
    assert_eq!(params.payload_type, 96);
    assert_eq!(params.telephone_event_pt, Some(97));
    assert_eq!(m_lines(&answer), vec!["m=audio 40000 RTP/AVP 96 97"]);
    assert!(
        lines(&answer).contains(&"a=rtpmap:96 opus/48000/2"),
        "{answer}"
    );
}

#[test]
fn telephone_event_must_match_the_codec_clock_rate() {
    let offer = offer_with(
        "m=audio 5004 RTP/AVP 0 101 102\r\na=rtpmap:101 telephone-event/48000\r\na=rtpmap:102 telephone-event/8000\r\n",
    );
    let (_, params) = answer_offer(&offer, &all_codecs()).expect("answerable");
    assert_eq!(params.codec, Codec::Pcmu);
    assert_eq!(params.telephone_event_pt, Some(102));

    let only_wideband_events =
        offer_with("m=audio 5004 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/48000\r\n");
    let (answer, params) = answer_offer(&only_wideband_events, &all_codecs()).expect("answerable");
    assert_eq!(params.telephone_event_pt, None);
    assert_eq!(m_lines(&answer), vec!["m=audio 40000 RTP/AVP 0"]);
}

#[test]
fn opus_at_a_wrong_clock_rate_is_not_opus() {
    let offer = offer_with("m=audio 5004 RTP/AVP 96\r\na=rtpmap:96 opus/16000\r\n");
    assert_eq!(
        answer_offer(&offer, &all_codecs()).map(|(_, p)| p),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn rtpmap_overrides_a_static_number() {
    // A (broken but seen) peer mapping PT 0 to PCMA: believe the rtpmap.
    let offer = offer_with("m=audio 5004 RTP/AVP 0\r\na=rtpmap:0 PCMA/8000\r\n");
    let (_, params) = answer_offer(&offer, &all_codecs()).expect("answerable");
    assert_eq!(params.codec, Codec::Pcma);
    assert_eq!(params.payload_type, 0);
}

#[test]
fn offered_ptime_is_used_when_sane_and_ignored_otherwise() {
    let with_ptime =
        |ptime: &str| offer_with(&format!("m=audio 5004 RTP/AVP 8\r\na=ptime:{ptime}\r\n"));
    let ptime_of = |offer: String| answer_offer(&offer, &all_codecs()).map(|(_, p)| p.ptime_ms);
    assert_eq!(ptime_of(with_ptime("30")), Ok(30));
    assert_eq!(ptime_of(with_ptime("100000")), Ok(20));
    assert_eq!(ptime_of(with_ptime("0")), Ok(20));
    assert_eq!(ptime_of(with_ptime("twenty")), Ok(20));
}

#[test]
fn rtcp_destination_follows_rtcp_attribute_mux_or_port_plus_one() {
    let remote_rtcp = |media: &str| {
        answer_offer(&offer_with(media), &all_codecs())
            .map(|(answer, p)| (answer, p.remote_rtcp, p.rtcp_mux))
    };
    let peer = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));

    let (_, rtcp, mux) = remote_rtcp("m=audio 5004 RTP/AVP 0\r\n").expect("answerable");
    assert_eq!((rtcp, mux), (Some(SocketAddr::new(peer, 5005)), false));

    let (_, rtcp, _) = remote_rtcp("m=audio 5004 RTP/AVP 0\r\na=rtcp:6000 IN IP4 203.0.113.5\r\n")
        .expect("answerable");
    assert_eq!(rtcp, "203.0.113.5:6000".parse().ok());

    let (answer, rtcp, mux) =
        remote_rtcp("m=audio 5004 RTP/AVP 0\r\na=rtcp-mux\r\n").expect("answerable");
    assert_eq!((rtcp, mux), (Some(SocketAddr::new(peer, 5004)), true));
    assert!(lines(&answer).contains(&"a=rtcp-mux"), "{answer}");
}

#[test]
fn session_level_direction_applies_to_media_without_their_own() {
    let offer = "v=0\r\no=peer 1 2 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\na=sendonly\r\nm=audio 5004 RTP/AVP 0\r\n";
    let (answer, params) = answer_offer(offer, &all_codecs()).expect("answerable");
    assert_eq!(params.direction, Direction::RecvOnly);
    assert!(lines(&answer).contains(&"a=recvonly"), "{answer}");
}

#[test]
fn we_hold_while_peer_holds_gives_inactive() {
    let mut holding = all_codecs();
    holding.direction = Direction::SendOnly;
    let offer = offer_with("m=audio 5004 RTP/AVP 0\r\na=sendonly\r\n");
    let (answer, params) = answer_offer(&offer, &holding).expect("answerable");
    assert_eq!(params.direction, Direction::Inactive);
    assert!(lines(&answer).contains(&"a=inactive"), "{answer}");
}

#[test]
fn connection_with_a_host_name_cannot_be_used() {
    let offer = "v=0\r\no=peer 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 media.example.com\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
    assert_eq!(
        answer_offer(offer, &all_codecs()).map(|(_, p)| p),
        Err(SdpError::UnusableConnectionAddress(
            "media.example.com".to_owned()
        ))
    );
}

#[test]
fn audio_without_any_connection_line_is_an_error() {
    let offer =
        "v=0\r\no=peer 1 1 IN IP4 198.51.100.7\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
    assert_eq!(
        answer_offer(offer, &all_codecs()).map(|(_, p)| p),
        Err(SdpError::MissingConnection)
    );
}

#[test]
fn oversized_body_is_refused() {
    let mut offer = offer_with("m=audio 5004 RTP/AVP 0\r\n");
    while offer.len() <= MAX_SDP_BYTES {
        offer.push_str("a=x-padding:0123456789012345678901234567890123456789\r\n");
    }
    assert_eq!(
        answer_offer(&offer, &all_codecs()).map(|(_, p)| p),
        Err(SdpError::TooLarge {
            limit: MAX_SDP_BYTES
        })
    );
}

#[test]
fn too_many_m_lines_are_refused() {
    let many = "m=video 0 RTP/AVP 96\r\n".repeat(MAX_MEDIA_SECTIONS + 1);
    let offer = offer_with(&format!("m=audio 5004 RTP/AVP 0\r\n{many}"));
    assert_eq!(
        answer_offer(&offer, &all_codecs()).map(|(_, p)| p),
        Err(SdpError::TooManyMediaSections {
            limit: MAX_MEDIA_SECTIONS
        })
    );
}

#[test]
fn broken_m_line_is_an_error_not_a_panic() {
    for media in [
        "m=audio\r\n",
        "m=audio 99999 RTP/AVP 0\r\n",
        "m=audio x RTP/AVP 0\r\n",
    ] {
        let result = answer_offer(&offer_with(media), &all_codecs()).map(|(_, p)| p);
        assert!(
            matches!(result, Err(SdpError::InvalidMediaLine { line_number: 6 })),
            "{media:?}: {result:?}"
        );
    }
}

#[test]
fn garbage_input_gives_errors_not_panics() {
    for garbage in [
        "",
        "\r\n\r\n",
        "=",
        "m=",
        "a=rtpmap:",
        "c=IN",
        "m=audio 1 RTP/AVP 300 -1 x",
    ] {
        assert!(answer_offer(garbage, &all_codecs()).is_err(), "{garbage:?}");
        assert!(apply_answer(garbage, &all_codecs()).is_err(), "{garbage:?}");
    }
}

#[test]
fn unknown_transport_section_does_not_steal_the_next_attributes() {
    // webrtc-sdp's document parser drops the udptl m-line and would hang `a=sendonly` on the
    // audio section before it; our scan keeps each section's attributes apart.
    let offer = offer_with(
        "m=audio 5004 RTP/AVP 0\r\na=sendrecv\r\nm=image 5006 udptl t38\r\na=sendonly\r\n",
    );
    let (answer, params) = answer_offer(&offer, &all_codecs()).expect("answerable");
    assert_eq!(params.direction, Direction::SendRecv);
    assert_eq!(
        m_lines(&answer),
        vec!["m=audio 40000 RTP/AVP 0", "m=image 0 udptl t38"]
    );
}

#[test]
fn crypto_lines_are_kept_and_bounded() {
    let offer = offer_with(
        "m=audio 5004 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32\r\n",
    );
    assert_eq!(
        crypto_lines(&offer),
        vec![
            "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
            "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32",
        ]
    );
    let flood = offer_with(&"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n".repeat(1000));
    assert_eq!(crypto_lines(&flood).len(), scan::MAX_CRYPTO_LINES);
}

#[test]
fn answer_for_our_offer_without_rtpmaps_is_understood_by_our_numbers() {
    let answer = "v=0\r\no=peer 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 6000 RTP/AVP 111 110\r\n";
    let params = apply_answer(answer, &all_codecs()).expect("usable");
    assert_eq!(params.codec, Codec::Opus);
    assert_eq!(params.payload_type, 111);
    assert_eq!(params.telephone_event_pt, Some(110));
    assert_eq!(
        params.remote,
        "198.51.100.7:6000".parse::<SocketAddr>().expect("addr")
    );
}

#[test]
fn answer_rejecting_our_audio_is_reported() {
    let answer = offer_with("m=audio 0 RTP/AVP 0\r\n");
    assert_eq!(
        apply_answer(&answer, &all_codecs()),
        Err(SdpError::AudioRejected)
    );
}

#[test]
fn answer_with_a_codec_we_did_not_offer_is_refused() {
    let answer = offer_with("m=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n");
    assert_eq!(
        apply_answer(&answer, &all_codecs()),
        Err(SdpError::NoCommonCodec)
    );
    let answer = offer_with("m=audio 6000 RTP/AVP 8\r\n");
    assert_eq!(
        apply_answer(&answer, &local(&[Codec::Pcmu])),
        Err(SdpError::NoCommonCodec)
    );
}

#[test]
fn answer_holding_with_zero_address_stops_our_sending() {
    let answer = "v=0\r\no=peer 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n";
    let params = apply_answer(answer, &all_codecs()).expect("usable");
    assert_eq!(params.direction, Direction::RecvOnly);
}

#[test]
fn answer_to_our_hold_offer_keeps_us_sendonly() {
    let mut holding = all_codecs();
    holding.direction = Direction::SendOnly;
    let answer = offer_with("m=audio 6000 RTP/AVP 0\r\na=recvonly\r\n");
    let params = apply_answer(&answer, &holding).expect("usable");
    assert_eq!(params.direction, Direction::SendOnly);
}

fn with_ice(mut media: LocalMedia) -> LocalMedia {
    media.ice = Some(LocalIce {
        credentials: IceCredentials {
            ufrag: "ourU".into(),
            pwd: "ourpasswordourpassword".into(),
        },
        candidates: vec!["1 1 UDP 2130706431 192.0.2.10 40000 typ host".into()],
    });
    media
}

const ICE_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 203.0.113.7\r\ns=-\r\nc=IN IP4 203.0.113.7\r\nt=0 0\r\n\
    a=ice-lite\r\nm=audio 5000 RTP/AVP 0\r\na=rtcp-mux\r\na=ice-ufrag:Peer\r\n\
    a=ice-pwd:peerpasswordpeerpassword\r\n\
    a=candidate:1 1 UDP 2130706431 203.0.113.7 5000 typ host\r\n";

#[test]
fn an_offer_with_ice_carries_credentials_candidates_and_rtcp_mux() {
    let offer = build_offer(&with_ice(all_codecs()));
    let lines = lines(&offer);
    for wanted in [
        "a=ice-ufrag:ourU",
        "a=ice-pwd:ourpasswordourpassword",
        "a=candidate:1 1 UDP 2130706431 192.0.2.10 40000 typ host",
        "a=rtcp-mux",
    ] {
        assert!(lines.contains(&wanted), "{wanted} missing in {offer}");
    }
    assert!(
        !build_offer(&all_codecs()).contains("ice-"),
        "no ICE without local ICE"
    );
}

#[test]
fn an_ice_offer_is_answered_with_ice_and_a_lite_offerer_leaves_us_in_control() {
    let (answer, params) = answer_offer(ICE_OFFER, &with_ice(all_codecs())).expect("answer");
    assert!(
        answer.contains("a=ice-ufrag:ourU") && answer.contains("a=rtcp-mux"),
        "{answer}"
    );
    let ice = params.ice.expect("ICE negotiated");
    assert!(ice.controlling && ice.remote.lite);
    assert_eq!(ice.remote.credentials.ufrag, "Peer");
    assert_eq!(ice.remote.candidates.len(), 1);
    assert!(params.rtcp_mux);
    // Without ICE of our own we answer as before, and nothing is negotiated.
    let (answer, params) = answer_offer(ICE_OFFER, &all_codecs()).expect("answer");
    assert!(!answer.contains("ice-") && params.ice.is_none(), "{answer}");
}

#[test]
fn an_offer_without_ice_gets_no_ice_back_and_a_rewritten_default_gets_ice_mismatch() {
    let plain = ICE_OFFER
        .lines()
        .filter(|l| !l.contains("ice") && !l.contains("candidate"))
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    let (answer, params) = answer_offer(&plain, &with_ice(all_codecs())).expect("answer");
    assert!(
        !answer.contains("ice-") && !answer.contains("candidate"),
        "{answer}"
    );
    assert!(params.ice.is_none());
    // An ALG rewrote c= to an address that is none of the candidates.
    let rewritten = ICE_OFFER.replace("c=IN IP4 203.0.113.7", "c=IN IP4 198.51.100.99");
    let (answer, params) = answer_offer(&rewritten, &with_ice(all_codecs())).expect("answer");
    assert!(
        answer.contains("a=ice-mismatch") && !answer.contains("a=candidate"),
        "{answer}"
    );
    assert!(params.ice.is_none());
}

#[test]
fn an_answer_with_ice_makes_us_controlling_and_one_without_falls_back_to_c_line() {
    let ours = with_ice(all_codecs());
    let answer = ICE_OFFER.replace("a=ice-lite\r\n", "");
    let params = apply_answer(&answer, &ours).expect("params");
    let ice = params.ice.expect("ICE");
    assert!(ice.controlling && !ice.remote.lite);
    assert_eq!(ice.local.ufrag, "ourU");
    assert!(params.rtcp_mux);
    let plain = answer
        .lines()
        .filter(|l| !l.contains("ice") && !l.contains("candidate"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let params = apply_answer(&plain, &ours).expect("params");
    assert!(params.ice.is_none());
    assert_eq!(params.remote, "203.0.113.7:5000".parse().unwrap());
}

/// Our ICE with an RTCP component (RFC 5761 §5.1.3): the offer carries the component-2
/// candidates, `a=rtcp` naming the default one, and `a=rtcp-mux`. An answer to an offer with
/// rtcp-mux drops them; one to an offer without (baresip 1.0) keeps them, with `a=rtcp`
/// and without `a=rtcp-mux`, and the peer's RTCP address is its `a=rtcp`.
#[test]
fn rtcp_candidates_are_offered_beside_rtcp_mux_and_answered_only_without_it() {
    let mut ours = with_ice(all_codecs());
    ours.address = "192.0.2.10".parse().expect("ip");
    ours.rtp_port = 40000;
    if let Some(ice) = ours.ice.as_mut() {
        ice.candidates
            .push("1 2 UDP 2130706430 192.0.2.10 40001 typ host".into());
    }
    let offer = build_offer(&ours);
    let offered = lines(&offer);
    for wanted in [
        "a=candidate:1 2 UDP 2130706430 192.0.2.10 40001 typ host",
        "a=rtcp:40001 IN IP4 192.0.2.10",
        "a=rtcp-mux",
    ] {
        assert!(offered.contains(&wanted), "{wanted} missing in {offer}");
    }
    let full = ICE_OFFER.replace("a=ice-lite\r\n", "");
    let (answer, params) = answer_offer(&full, &ours).expect("answer");
    assert!(
        answer.contains("a=rtcp-mux") && !answer.contains(" 2 UDP ") && !answer.contains("a=rtcp:"),
        "{answer}"
    );
    assert!(params.rtcp_mux);
    let unmuxed = full.replace("a=rtcp-mux\r\n", "a=rtcp:5001 IN IP4 203.0.113.7\r\n")
        + "a=candidate:1 2 UDP 2130706430 203.0.113.7 5001 typ host\r\n";
    let (answer, params) = answer_offer(&unmuxed, &ours).expect("answer");
    let answered = lines(&answer);
    assert!(
        answered.contains(&"a=candidate:1 2 UDP 2130706430 192.0.2.10 40001 typ host")
            && answered.contains(&"a=rtcp:40001 IN IP4 192.0.2.10")
            && !answered.contains(&"a=rtcp-mux"),
        "{answer}"
    );
    assert!(!params.rtcp_mux);
    assert_eq!(
        params.remote_rtcp,
        Some("203.0.113.7:5001".parse().expect("addr"))
    );
    assert_eq!(params.ice.expect("ICE").remote.candidates.len(), 2);
}
