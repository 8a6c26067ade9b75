//! Offer/answer with SDES keys: every policy against every kind of offer and answer.

use std::net::{IpAddr, Ipv4Addr};

use super::*;

/// RFC 4568 §4's example key and a second one.
const KEY_A: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
const KEY_B: &str = "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj";

fn local(policy: SrtpPolicy) -> LocalMedia {
    LocalMedia {
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        rtp_port: 40_000,
        codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
        direction: Direction::SendRecv,
        session_id: 4_242,
        session_version: 1,
        srtp: LocalSrtp::new(policy),
        ice: None,
    }
}

fn offer(proto: &str, crypto: &[&str]) -> String {
    let mut text = format!(
        "v=0\r\no=peer 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
         m=audio 5004 {proto} 0\r\n"
    );
    for line in crypto {
        text.push_str(&format!("a=crypto:{line}\r\n"));
    }
    text
}

fn crypto_of(sdp: &str) -> Vec<&str> {
    sdp.lines()
        .filter_map(|line| line.strip_prefix("a=crypto:"))
        .collect()
}

fn m_line(sdp: &str) -> &str {
    sdp.lines()
        .find(|line| line.starts_with("m="))
        .unwrap_or_default()
}

const POLICIES: [SrtpPolicy; 3] = [SrtpPolicy::Off, SrtpPolicy::Optional, SrtpPolicy::Mandatory];

#[test]
fn offers_per_policy() {
    let expected = [
        (SrtpPolicy::Off, "m=audio 40000 RTP/AVP 111 0 8 110 101", 0),
        (
            SrtpPolicy::Optional,
            "m=audio 40000 RTP/AVP 111 0 8 110 101",
            2,
        ),
        (
            SrtpPolicy::Mandatory,
            "m=audio 40000 RTP/SAVP 111 0 8 110 101",
            2,
        ),
    ];
    for (policy, m, crypto_lines) in expected {
        let ours = local(policy);
        let sdp = build_offer(&ours);
        assert_eq!(m_line(&sdp), m, "{policy:?}");
        let crypto = crypto_of(&sdp);
        assert_eq!(crypto.len(), crypto_lines, "{policy:?}: {sdp}");
        if crypto_lines == 2 {
            assert!(
                crypto[0].starts_with("1 AES_CM_128_HMAC_SHA1_80 inline:"),
                "{sdp}"
            );
            assert!(
                crypto[1].starts_with("2 AES_CM_128_HMAC_SHA1_32 inline:"),
                "{sdp}"
            );
            for (line, key) in crypto.iter().zip(&ours.srtp.keys) {
                let parsed = CryptoAttribute::parse(line).expect("our line parses");
                assert_eq!(&parsed.key, key);
            }
        }
    }
}

/// Every policy against: plain offer, plain offer with keys (best effort), SAVP with keys,
/// SAVP without keys, SAVP with only unusable keys.
#[test]
fn answer_matrix() {
    let good = format!("5 AES_CM_128_HMAC_SHA1_32 inline:{KEY_A}|2^20");
    let unusable = [
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^20|1:4"),
        format!("2 AEAD_AES_128_GCM inline:{KEY_A}"),
    ];
    let unusable: Vec<&str> = unusable.iter().map(String::as_str).collect();
    let offers = [
        ("plain", offer("RTP/AVP", &[])),
        ("best effort", offer("RTP/AVP", &[&good])),
        ("savp", offer("RTP/SAVP", &[&good])),
        ("savp no keys", offer("RTP/SAVP", &[])),
        ("savp bad keys", offer("RTP/SAVP", &unusable)),
    ];
    // None: refused with this error; Some(true/false): accepted, encrypted or not.
    use SdpError::*;
    let expected: [(SrtpPolicy, [Result<bool, SdpError>; 5]); 3] = [
        (
            SrtpPolicy::Off,
            [
                Ok(false),
                Ok(false),
                Err(SrtpOff),
                Err(SrtpOff),
                Err(SrtpOff),
            ],
        ),
        (
            SrtpPolicy::Optional,
            [
                Ok(false),
                Ok(true),
                Ok(true),
                Err(SrtpRequired),
                Err(SrtpRequired),
            ],
        ),
        (
            SrtpPolicy::Mandatory,
            [
                Err(SrtpRequired),
                Ok(true),
                Ok(true),
                Err(SrtpRequired),
                Err(SrtpRequired),
            ],
        ),
    ];
    for (policy, outcomes) in expected {
        let ours = local(policy);
        for ((name, offer), outcome) in offers.iter().zip(outcomes) {
            let result = answer_offer(offer, &ours);
            match (result, outcome) {
                (Ok((answer, params)), Ok(encrypted)) => {
                    assert_eq!(params.srtp.is_some(), encrypted, "{policy:?} {name}");
                    let crypto = crypto_of(&answer);
                    // The answer echoes the offered profile.
                    let proto = if name.starts_with("savp") {
                        "RTP/SAVP"
                    } else {
                        "RTP/AVP"
                    };
                    assert_eq!(
                        m_line(&answer),
                        format!("m=audio 40000 {proto} 0"),
                        "{answer}"
                    );
                    if encrypted {
                        // Same tag and suite, our own first key (RFC 4568 §7.1.2).
                        assert_eq!(crypto.len(), 1, "{answer}");
                        let answered = CryptoAttribute::parse(crypto[0]).expect("parses");
                        assert_eq!(answered.tag, 5);
                        assert_eq!(answered.suite, CryptoSuite::AesCm128HmacSha1_32);
                        assert_eq!(answered.key, ours.srtp.keys[0]);
                        let srtp = params.srtp.expect("srtp");
                        assert_eq!(srtp.local_key, ours.srtp.keys[0]);
                        assert_eq!(
                            srtp.remote_key,
                            CryptoAttribute::parse(&good).expect("good").key
                        );
                    } else {
                        assert!(crypto.is_empty(), "{policy:?} {name}: {answer}");
                    }
                }
                (Err(error), Err(expected)) => assert_eq!(error, expected, "{policy:?} {name}"),
                (result, outcome) => {
                    panic!("{policy:?} {name}: got {result:?}, expected {outcome:?}")
                }
            }
        }
    }
}

#[test]
fn answerer_takes_the_first_usable_line_in_offer_order() {
    let lines = [
        format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^20|1:4"),
        "2 AES_CM_128_HMAC_SHA1_80 inline:tooshort".to_owned(),
        format!("3 AES_256_CM_HMAC_SHA1_80 inline:{KEY_A}"),
        format!("4 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}"),
        format!("5 AES_CM_128_HMAC_SHA1_32 inline:{KEY_A}"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (answer, params) =
        answer_offer(&offer("RTP/SAVP", &lines), &local(SrtpPolicy::Mandatory)).expect("answer");
    let srtp = params.srtp.expect("srtp");
    assert_eq!(
        (srtp.tag, srtp.suite),
        (4, CryptoSuite::AesCm128HmacSha1_80)
    );
    assert!(crypto_of(&answer)[0].starts_with("4 AES_CM_128_HMAC_SHA1_80 inline:"));
}

#[test]
fn crypto_of_another_m_line_does_not_count() {
    let sdp = format!(
        "v=0\r\no=peer 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
         m=video 5006 RTP/SAVP 96\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}\r\n\
         m=audio 5004 RTP/SAVP 0\r\n"
    );
    assert_eq!(
        answer_offer(&sdp, &local(SrtpPolicy::Mandatory)).err(),
        Some(SdpError::SrtpRequired)
    );
}

/// The peer's answer to our offer, for each policy.
#[test]
fn applying_answers_per_policy() {
    for policy in POLICIES {
        let ours = local(policy);
        let our_line = |tag: u32, suite: CryptoSuite, key: &str| {
            format!("{tag} {} inline:{key}", suite.name())
        };
        let proto = if policy == SrtpPolicy::Mandatory {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        let answers = [
            ("no crypto", offer(proto, &[])),
            (
                "tag 1",
                offer(
                    proto,
                    &[&our_line(1, CryptoSuite::AesCm128HmacSha1_80, KEY_B)],
                ),
            ),
            (
                "tag 2",
                offer(
                    proto,
                    &[&our_line(2, CryptoSuite::AesCm128HmacSha1_32, KEY_B)],
                ),
            ),
            // Tag 1 was offered with the 80-bit suite: this pairing was never offered.
            (
                "wrong suite",
                offer(
                    proto,
                    &[&our_line(1, CryptoSuite::AesCm128HmacSha1_32, KEY_B)],
                ),
            ),
            (
                "unknown tag",
                offer(
                    proto,
                    &[&our_line(9, CryptoSuite::AesCm128HmacSha1_80, KEY_B)],
                ),
            ),
        ];
        for (name, answer) in answers {
            let result = apply_answer(&answer, &ours);
            match (policy, name) {
                (SrtpPolicy::Off, _) => {
                    assert_eq!(result.map(|p| p.srtp), Ok(None), "{policy:?} {name}")
                }
                (SrtpPolicy::Optional, "no crypto") => {
                    assert_eq!(result.map(|p| p.srtp), Ok(None), "{name}")
                }
                (SrtpPolicy::Mandatory, "no crypto") => {
                    assert_eq!(result.err(), Some(SdpError::SrtpNotAnswered), "{name}")
                }
                (_, "tag 1" | "tag 2") => {
                    let srtp = result.expect("usable").srtp.expect("encrypted");
                    let index = if name == "tag 1" { 0 } else { 1 };
                    assert_eq!(srtp.tag, index as u32 + 1);
                    assert_eq!(srtp.suite, CryptoSuite::OFFERED[index]);
                    assert_eq!(
                        srtp.local_key, ours.srtp.keys[index],
                        "we send with the key we offered under that tag"
                    );
                    assert_eq!(
                        srtp.remote_key,
                        CryptoAttribute::parse(&our_line(
                            1,
                            CryptoSuite::AesCm128HmacSha1_80,
                            KEY_B
                        ))
                        .expect("b")
                        .key
                    );
                }
                _ => assert_eq!(
                    result.err(),
                    Some(SdpError::BadCryptoAnswer),
                    "{policy:?} {name}"
                ),
            }
        }
    }
}

#[test]
fn savp_answer_to_a_plain_offer_is_unusable() {
    let answer = offer("RTP/SAVP", &[]);
    assert_eq!(
        apply_answer(&answer, &local(SrtpPolicy::Off)).err(),
        Some(SdpError::NoUsableAudio)
    );
    assert_eq!(
        apply_answer(&answer, &local(SrtpPolicy::Optional)).err(),
        Some(SdpError::SrtpNotAnswered)
    );
}

#[test]
fn dtls_srtp_is_still_refused() {
    let sdp = offer("UDP/TLS/RTP/SAVP", &[]);
    for policy in POLICIES {
        assert_eq!(
            answer_offer(&sdp, &local(policy)).err(),
            Some(SdpError::NoUsableAudio),
            "{policy:?}"
        );
    }
}
