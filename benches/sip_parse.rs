//! SIP parsing and serialization speed: sipterm's parser and printer against rsip (another
//! Rust SIP parser) on the same bytes, in the same run. `cargo bench --bench sip_parse`;
//! `make bench-parse` prints messages per second per core from it. Not part of `make test`.
//!
//! The messages are what a softphone handles all day: an INVITE with an SDP offer (as a
//! Kamailio proxy relays it: two Vias, Record-Route), its 200 OK with the answer, and a
//! REGISTER carrying digest credentials.

use std::hint::black_box;

fn main() {
    // Both parsers must take every message whole, or the figures compare error paths.
    for (name, text) in MESSAGES {
        let bytes = text.as_bytes();
        if let Err(e) = sipterm::sip::parse::parse_datagram(bytes) {
            panic!("sipterm rejects the {name} of the benchmark: {e}");
        }
        if let Err(e) = rsip::SipMessage::try_from(bytes) {
            panic!("rsip rejects the {name} of the benchmark: {e}");
        }
    }
    divan::main();
}

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.101\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8\r\n\
Record-Route: <sip:192.0.2.10;lr>\r\n\
Max-Forwards: 69\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com:5060>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY\r\n\
Supported: replaces, norefersub\r\n\
User-Agent: sipterm/0.1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 307\r\n\
\r\n\
v=0\r\n\
o=- 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 111 0 8 101\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 useinbandfec=1\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const OK: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.101\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8\r\n\
Record-Route: <sip:192.0.2.10;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY\r\n\
Server: sipterm/0.1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 197\r\n\
\r\n\
v=0\r\n\
o=- 2890844527 2890844527 IN IP4 192.0.2.4\r\n\
s=-\r\n\
c=IN IP4 192.0.2.4\r\n\
t=0 0\r\n\
m=audio 3456 RTP/AVP 111 101\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const REGISTER: &str = "REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4>;expires=7200\r\n\
Expires: 7200\r\n\
Authorization: Digest username=\"bob\", realm=\"biloxi.example.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:registrar.biloxi.example.com\", response=\"245f23415f11432b3434341c022\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n\
User-Agent: sipterm/0.1.0\r\n\
Content-Length: 0\r\n\
\r\n";

const MESSAGES: &[(&str, &str)] = &[("invite", INVITE), ("ok", OK), ("register", REGISTER)];

mod sipterm_parser {
    use super::*;
    use sipterm::sip::parse::{parse_datagram, validate_message};

    /// Bytes to a message (framing, start line, every header line, Content-Length, body).
    #[divan::bench(args = ["invite", "ok", "register"])]
    fn parse(bencher: divan::Bencher, name: &str) {
        let bytes = message(name).as_bytes();
        bencher.bench(|| parse_datagram(black_box(bytes)));
    }

    /// Parse plus the checks a UA runs before acting (Via, From, To, Call-ID, CSeq typed).
    #[divan::bench(args = ["invite", "ok", "register"])]
    fn parse_and_validate(bencher: divan::Bencher, name: &str) {
        let bytes = message(name).as_bytes();
        bencher.bench(|| {
            let message = parse_datagram(black_box(bytes)).expect("parses");
            validate_message(&message).map(|()| message)
        });
    }

    /// A parsed message back to bytes.
    #[divan::bench(args = ["invite", "ok", "register"])]
    fn serialize(bencher: divan::Bencher, name: &str) {
        let parsed = parse_datagram(message(name).as_bytes()).expect("parses");
        bencher.bench(|| black_box(&parsed).to_bytes());
    }
}

mod rsip_parser {
    use super::*;

    #[divan::bench(args = ["invite", "ok", "register"])]
    fn parse(bencher: divan::Bencher, name: &str) {
        let bytes = message(name).as_bytes();
        bencher.bench(|| rsip::SipMessage::try_from(black_box(bytes)));
    }

    #[divan::bench(args = ["invite", "ok", "register"])]
    fn serialize(bencher: divan::Bencher, name: &str) {
        let parsed = rsip::SipMessage::try_from(message(name).as_bytes()).expect("parses");
        bencher.bench(|| black_box(&parsed).to_string());
    }
}

fn message(name: &str) -> &'static str {
    MESSAGES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, m)| *m)
        .unwrap_or(INVITE)
}
