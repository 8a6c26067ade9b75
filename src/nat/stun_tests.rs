//! Unit tests of the STUN codec and client, including the RFC 5769 test vectors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::stun::*;

/// Fixtures copied from RFC 5769 ("Test Vectors for Session Traversal Utilities for NAT
/// (STUN)", IETF, 2010), §2.1 Sample Request, §2.2 Sample IPv4 Response, §2.3 Sample IPv6
/// Response. Their MESSAGE-INTEGRITY is not checked here (we send no credentials); their
/// FINGERPRINT is, which also proves the bytes were copied right.
fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const RFC5769_REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

const RFC5769_IPV4_RESPONSE: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

const RFC5769_IPV6_RESPONSE: &str = "
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c";

const TXID: TransactionId = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

#[test]
fn rfc5769_ipv4_response_gives_192_0_2_1_port_32853() {
    let m = parse(&hex(RFC5769_IPV4_RESPONSE)).unwrap();
    assert_eq!(m.kind, BINDING_SUCCESS);
    assert_eq!(m.transaction, TXID);
    assert!(m.fingerprint);
    let want: SocketAddr = "192.0.2.1:32853".parse().unwrap();
    assert_eq!(m.mapped_address(), Some(want));
}

#[test]
fn rfc5769_ipv6_response_gives_2001_db8_address() {
    let m = parse(&hex(RFC5769_IPV6_RESPONSE)).unwrap();
    assert!(m.fingerprint);
    let want: SocketAddr = "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
        .parse()
        .unwrap();
    assert_eq!(m.mapped_address(), Some(want));
}

#[test]
fn rfc5769_request_parses_as_a_binding_request_with_a_good_fingerprint() {
    let bytes = hex(RFC5769_REQUEST);
    assert!(is_stun(&bytes));
    let m = parse(&bytes).unwrap();
    assert_eq!(m.kind, BINDING_REQUEST);
    assert!(m.fingerprint);
    assert_eq!(m.mapped_address(), None);
}

#[test]
fn a_flipped_bit_breaks_the_fingerprint() {
    let mut bytes = hex(RFC5769_IPV4_RESPONSE);
    bytes[45] ^= 1; // inside the XOR-MAPPED-ADDRESS value
    assert_eq!(parse(&bytes), Err(StunError::BadFingerprint));
}

#[test]
fn request_encoding_has_type_length_cookie_and_caller_id() {
    let req = binding_request(&TXID);
    assert_eq!(req.len(), 20);
    assert_eq!(&req[..4], &[0, 1, 0, 0]);
    assert_eq!(&req[4..8], &[0x21, 0x12, 0xa4, 0x42]);
    assert_eq!(&req[8..], &TXID);
    assert!(is_stun(&req));
    assert_eq!(parse(&req).unwrap().kind, BINDING_REQUEST);
}

#[test]
fn success_encoding_round_trips_v4_and_v6() {
    for addr in ["192.0.2.1:40000", "[2001:db8::7]:5060", "127.0.0.1:1"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let m = parse(&binding_success(&TXID, addr)).unwrap();
        assert_eq!(m.kind, BINDING_SUCCESS);
        assert_eq!(m.xor_mapped, Some(addr));
    }
}

#[test]
fn mapped_address_is_the_fallback_without_xor() {
    // RFC 3489 style: MAPPED-ADDRESS 10.0.0.1:8080 in the clear.
    let mut bytes = vec![0x01, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    bytes.extend_from_slice(&TXID);
    bytes.extend_from_slice(&[0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x1f, 0x90, 10, 0, 0, 1]);
    let m = parse(&bytes).unwrap();
    assert_eq!(m.xor_mapped, None);
    assert_eq!(m.mapped_address(), Some("10.0.0.1:8080".parse().unwrap()));
}

#[test]
fn sip_and_rtp_are_not_stun() {
    assert!(!is_stun(b"REGISTER sip:example.com SIP/2.0\r\n\r\n"));
    assert!(!is_stun(b"\r\n\r\n"));
    let mut rtp = vec![0x80, 0x00, 0x00, 0x01, 0x21, 0x12, 0xa4, 0x42];
    rtp.resize(172, 0);
    assert!(!is_stun(&rtp));
    assert!(!is_stun(&[0, 1, 0, 0, 0x21, 0x12, 0xa4]));
}

#[test]
fn hostile_inputs_are_errors_not_panics() {
    let good = hex(RFC5769_IPV4_RESPONSE);
    // Every truncation.
    for n in 0..good.len() {
        assert!(parse(&good[..n]).is_err(), "prefix of {n} bytes");
    }
    let mut header = vec![0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    header.extend_from_slice(&TXID);
    // Attribute length past the end.
    let mut long = header.clone();
    long[3] = 8;
    long.extend_from_slice(&[0x00, 0x20, 0x00, 0x40, 0, 1, 0, 0]);
    assert_eq!(parse(&long), Err(StunError::TruncatedAttribute(0x0020)));
    // Value present but its padding is not.
    let mut unpadded = header.clone();
    unpadded[3] = 8;
    unpadded.extend_from_slice(&[0x80, 0x22, 0x00, 0x05, b'a', b'b', b'c', b'd']);
    assert_eq!(parse(&unpadded), Err(StunError::TruncatedAttribute(0x8022)));
    // Too many (empty) attributes.
    let mut many = header.clone();
    let n = MAX_ATTRIBUTES + 1;
    many[2..4].copy_from_slice(&((n * 4) as u16).to_be_bytes());
    for _ in 0..n {
        many.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
    }
    assert_eq!(parse(&many), Err(StunError::TooManyAttributes));
    // Wrong cookie, top bits set, unaligned length, bad family, bad address length.
    let mut bad = header.clone();
    bad[4] = 0;
    assert_eq!(parse(&bad), Err(StunError::BadCookie));
    let mut bad = header.clone();
    bad[0] = 0x81;
    assert_eq!(parse(&bad), Err(StunError::NotStun));
    let mut bad = header.clone();
    bad[3] = 2;
    bad.extend_from_slice(&[0, 0]);
    assert_eq!(parse(&bad), Err(StunError::Unaligned));
    let mut bad = header.clone();
    bad[3] = 12;
    bad.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x03, 0, 0, 0, 0, 0, 0]);
    assert_eq!(parse(&bad), Err(StunError::BadFamily(3)));
    let mut bad = header.clone();
    bad[3] = 12;
    bad.extend_from_slice(&[0x00, 0x20, 0x00, 0x08, 0x00, 0x02, 0, 0, 0, 0, 0, 0]);
    assert_eq!(parse(&bad), Err(StunError::BadAddressLength));
    let mut bad = header.clone();
    bad[3] = 4;
    assert!(matches!(
        parse(&bad),
        Err(StunError::LengthMismatch {
            declared: 4,
            actual: 0
        })
    ));
    assert_eq!(parse(&vec![0u8; 4000]), Err(StunError::TooLong));
    // A cheap fuzz: random bytes behind a valid header never panic.
    let mut x = 0x1234_5678_u32;
    for len in 0..400usize {
        let mut m = header.clone();
        let body = (len / 4) * 4;
        m[2..4].copy_from_slice(&(body as u16).to_be_bytes());
        for _ in 0..body {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            m.push((x & 0xff) as u8);
        }
        let _ = parse(&m);
    }
}

#[test]
fn rfc5389_schedule_is_500ms_doubling_seven_requests() {
    let s = Schedule::RFC5389;
    let ms: Vec<u128> = s.send_offsets().iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
    // §7.2.1: "the client will have given up after 39.5 seconds".
    assert_eq!(s.give_up_after(), Duration::from_millis(39_500));
}

#[test]
fn client_retransmits_on_schedule_then_times_out() {
    let server: SocketAddr = "127.0.0.1:3478".parse().unwrap();
    let t0 = Instant::now();
    let mut c = BindingClient::new(server, TXID, Schedule::RFC5389, t0);
    let mut sent_at = Vec::new();
    let mut now = t0;
    while c.outcome().is_none() {
        while let Some((dest, bytes)) = c.poll_transmit(now) {
            assert_eq!(dest, server);
            assert_eq!(bytes, binding_request(&TXID));
            sent_at.push(now - t0);
        }
        let next = c.poll_timeout().expect("a deadline while running");
        // Every deadline lies ahead: a deadline at `now` would spin the driver.
        assert!(
            next > now,
            "deadline {:?} not after now {:?}",
            next - t0,
            now - t0
        );
        now = next;
        c.handle_timeout(now);
    }
    let ms: Vec<u128> = sent_at.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(now - t0, Duration::from_millis(39_500));
    assert_eq!(c.outcome(), Some(&Err(BindingFailure::Timeout(7))));
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn client_takes_the_answer_and_ignores_strangers() {
    let server: SocketAddr = "127.0.0.1:3478".parse().unwrap();
    let t0 = Instant::now();
    let mut c = BindingClient::new(
        server,
        TXID,
        Schedule::quick(Duration::from_millis(100), 3),
        t0,
    );
    assert!(c.poll_transmit(t0).is_some());
    assert!(c.poll_transmit(t0).is_none(), "one request at a time");
    let mapped: SocketAddr = "192.0.2.1:40000".parse().unwrap();
    let answer = binding_success(&TXID, mapped);
    // From another address, or for another transaction: not ours.
    assert!(!c.handle_input("127.0.0.1:9999".parse().unwrap(), &answer));
    let mut other = TXID;
    other[0] ^= 1;
    assert!(!c.handle_input(server, &binding_success(&other, mapped)));
    assert!(!c.handle_input(server, b"garbage"));
    assert!(c.outcome().is_none());
    assert!(c.handle_input(server, &answer));
    assert_eq!(c.outcome(), Some(&Ok(mapped)));
    assert!(c.poll_transmit(t0 + Duration::from_secs(5)).is_none());
}

#[test]
fn error_response_is_a_failure() {
    let server: SocketAddr = "127.0.0.1:3478".parse().unwrap();
    let mut c = BindingClient::new(server, TXID, Schedule::RFC5389, Instant::now());
    let mut bytes = vec![0x01, 0x11, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    bytes.extend_from_slice(&TXID);
    bytes.extend_from_slice(&[0x00, 0x09, 0x00, 0x08, 0, 0, 4, 20, b'b', b'a', b'd', b'!']);
    assert!(c.handle_input(server, &bytes));
    assert_eq!(
        c.outcome(),
        Some(&Err(BindingFailure::Rejected(StunError::ErrorResponse(
            420
        ))))
    );
}
