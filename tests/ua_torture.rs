//! RFC 4475 / RFC 5118 torture messages fed to a sans-IO `UserAgent` as UDP datagrams: what
//! the UA answers (tests/data/torture/MANIFEST.tsv, last column), that every answer goes only
//! to the datagram's source (never to the 192.0.2.x / example.com hosts in the Vias), and
//! that responses are dropped without a word.
//!
//! tests/torture.rs checks the parser's verdicts; this file checks the user agent's.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use common::sim::{AccountSpec, events, sent, udp, user_agent};
use sipterm::sip::message::{Message, Response};
use sipterm::sip::transaction::Destination;
use sipterm::sip::ua::{UaEvent, UserAgent};

/// Where every torture datagram comes from.
const SOURCE: &str = "127.0.0.1:45060";

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/torture")
}

fn rfc4475(name: &str) -> Vec<u8> {
    let path = data_dir().join("rfc4475").join(format!("{name}.dat"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// RFC 5118 files: bare LF to CRLF, and the missing end of the header section added (see
/// tests/data/torture/README.md).
fn rfc5118(name: &str) -> Vec<u8> {
    let path = data_dir().join("rfc5118").join(name);
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut wire = Vec::with_capacity(raw.len() + 32);
    for &b in &raw {
        if b == b'\n' {
            wire.extend_from_slice(b"\r\n");
        } else {
            wire.push(b);
        }
    }
    if !wire.windows(4).any(|w| w == b"\r\n\r\n") {
        wire.extend_from_slice(b"\r\n");
    }
    wire
}

/// What the UA did with one datagram.
struct Outcome {
    responses: Vec<Response>,
    requests: usize,
    events: Vec<UaEvent>,
}

fn feed_to(ua: &mut UserAgent, bytes: &[u8]) -> Outcome {
    let source: SocketAddr = SOURCE.parse().expect("source");
    ua.handle_datagram(udp(SOURCE), bytes, Instant::now());
    let mut responses = Vec::new();
    let mut requests = 0;
    for (dest, message) in sent(ua) {
        assert_eq!(
            dest,
            Destination {
                addr: source,
                transport: dest.transport
            },
            "an answer went somewhere else than the datagram's source"
        );
        assert_eq!(dest.addr, source);
        match message {
            Message::Response(r) => responses.push(r),
            Message::Request(_) => requests += 1,
        }
    }
    Outcome {
        responses,
        requests,
        events: events(ua),
    }
}

fn feed(bytes: &[u8]) -> Outcome {
    let mut ua = user_agent(&AccountSpec::default());
    feed_to(&mut ua, bytes)
}

/// The one response the UA sent; its status must be one of `codes`.
fn answered(name: &str, bytes: &[u8], codes: &[u16]) -> Response {
    let outcome = feed(bytes);
    assert_eq!(outcome.requests, 0, "{name}: the UA sent a request");
    assert_eq!(
        outcome.responses.len(),
        1,
        "{name}: expected exactly one response, got {:?}",
        outcome
            .responses
            .iter()
            .map(Response::first_line)
            .collect::<Vec<_>>()
    );
    let response = outcome.responses.into_iter().next().expect("one response");
    println!("{name:<12} -> {}", response.first_line());
    assert!(
        codes.contains(&response.code),
        "{name}: expected one of {codes:?}, got {}",
        response.first_line()
    );
    response
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("{} lacks {name}", response.first_line()))
}

// ------------------------------------------------------------ invalid requests: 400

macro_rules! bad_request {
    ($($test:ident => $file:literal,)*) => {$(
        #[test]
        fn $test() {
            let response = answered($file, &rfc4475($file), &[400]);
            // The response copies the request's top Via, so the client can match it.
            assert!(response.headers.get("Via").is_some(), "{}", $file);
            assert!(response.headers.get("CSeq").is_some(), "{}", $file);
        }
    )*};
}

bad_request! {
    badinv01_extraneous_separators_400 => "badinv01",
    clerr_content_length_too_large_400 => "clerr",
    ncl_negative_content_length_400 => "ncl",
    scalar02_overlarge_scalars_400 => "scalar02",
    quotbal_unterminated_quote_400 => "quotbal",
    ltgtruri_angle_brackets_around_request_uri_400 => "ltgtruri",
    lwsruri_lws_in_request_uri_400 => "lwsruri",
    lwsstart_multiple_sp_in_request_line_400 => "lwsstart",
    trws_trailing_sp_in_request_line_400 => "trws",
    escruri_escaped_headers_in_request_uri_400 => "escruri",
    baddate_bad_time_zone_400 => "baddate",
    regbadct_unenclosed_contact_400 => "regbadct",
    badaspec_spaces_in_addr_spec_400 => "badaspec",
    mismatch01_cseq_method_mismatch_400 => "mismatch01",
    mismatch02_unknown_method_cseq_mismatch_400_not_501 => "mismatch02",
    insuf_missing_call_id_from_to_400 => "insuf",
    multi01_multiple_single_value_headers_400 => "multi01",
    mcl01_multiple_content_lengths_400 => "mcl01",
}

#[test]
fn baddn_non_token_display_name_400() {
    answered("baddn", &rfc4475("baddn"), &[400]);
}

#[test]
fn ipv6_bad_reference_without_brackets_400() {
    answered("ipv6-bad", &rfc5118("ipv6-bad"), &[400]);
}

// ------------------------------------------------------------ other error answers

#[test]
fn badvers_unknown_version_505() {
    answered("badvers", &rfc4475("badvers"), &[505]);
}

#[test]
fn unkscm_unknown_uri_scheme_416() {
    answered("unkscm", &rfc4475("unkscm"), &[416]);
}

#[test]
fn novelsc_atypical_scheme_416() {
    answered("novelsc", &rfc4475("novelsc"), &[416]);
}

#[test]
fn bext01_require_unknown_option_tags_420_with_unsupported() {
    let response = answered("bext01", &rfc4475("bext01"), &[420]);
    let unsupported = header(&response, "Unsupported");
    println!("Unsupported: {unsupported}");
    // The message's Require names these two (Proxy-Require is for proxies and not listed).
    for tag in ["nothingSupportsThis", "nothingSupportsThisEither"] {
        assert!(
            unsupported.split(',').any(|t| t.trim() == tag),
            "Unsupported lacks {tag}: {unsupported}"
        );
    }
}

#[test]
fn invut_unknown_content_type_415_with_accept() {
    let response = answered("invut", &rfc4475("invut"), &[415]);
    assert!(header(&response, "Accept").contains("application/sdp"));
}

#[test]
fn regaut01_register_to_a_ua_405_or_501() {
    let response = answered("regaut01", &rfc4475("regaut01"), &[405, 501]);
    assert!(header(&response, "Allow").contains("INVITE"));
    assert!(
        !header(&response, "Allow").contains("REGISTER"),
        "a UA that refuses REGISTER must not allow it"
    );
}

#[test]
fn intmeth_unknown_method_501_with_allow() {
    let response = answered("intmeth", &rfc4475("intmeth"), &[501]);
    assert!(header(&response, "Allow").contains("OPTIONS"));
}

#[test]
fn esc02_unknown_escaped_method_501_with_allow() {
    // `RE%47IST%45R` is not REGISTER: escaping does not apply to methods.
    let response = answered("esc02", &rfc4475("esc02"), &[501]);
    assert!(header(&response, "Allow").contains("INVITE"));
}

#[test]
fn sdp01_accept_without_sdp_406_or_400_never_rings() {
    let outcome = feed(&rfc4475("sdp01"));
    let codes: Vec<u16> = outcome.responses.iter().map(|r| r.code).collect();
    println!("sdp01 -> {codes:?}");
    assert!(
        !codes.contains(&180) && !codes.contains(&200),
        "an INVITE we cannot answer in an accepted format must not ring: {codes:?}"
    );
    assert_eq!(codes.len(), 1, "{codes:?}");
    assert!(matches!(codes[0], 406 | 400), "{codes:?}");
    assert!(
        outcome.events.is_empty(),
        "no incoming call shown: {:?}",
        outcome.events
    );
}

// ------------------------------------------------------------ handled normally

/// A new INVITE rings: 180 and an `incoming` call event.
fn rings(name: &str, bytes: &[u8]) {
    let outcome = feed(bytes);
    let codes: Vec<u16> = outcome.responses.iter().map(|r| r.code).collect();
    println!("{name:<12} -> {codes:?}");
    assert_eq!(codes, vec![180], "{name}");
    assert!(
        outcome.events.iter().any(|e| matches!(
            e,
            UaEvent::Call {
                state: sipterm::sip::ua::CallState::Incoming,
                ..
            }
        )),
        "{name}: an incoming call: {:?}",
        outcome.events
    );
}

#[test]
fn esc01_escaped_uri_invite_rings() {
    rings("esc01", &rfc4475("esc01"));
}

#[test]
fn longreq_long_values_invite_rings() {
    rings("longreq", &rfc4475("longreq"));
}

#[test]
fn mult_ip_in_sdp_invite_rings() {
    // PCMU on IPv4 plus an IPv6 video stream: the audio is acceptable, so it rings.
    rings("mult-ip-in-sdp", &rfc5118("mult-ip-in-sdp"));
}

#[test]
fn ipv6_in_sdp_invite_never_rings() {
    // As archived, Content-Length (268) exceeds the CRLF body (251): 400 over UDP.
    answered("ipv6-in-sdp", &rfc5118("ipv6-in-sdp"), &[400]);
    // With the length corrected it is a valid INVITE offering only G726-32 and H.263: no
    // common codec, so 488 rather than a call that could carry no audio.
    let fixed = String::from_utf8(rfc5118("ipv6-in-sdp"))
        .expect("ASCII")
        .replace("Content-Length: 268", "Content-Length: 251");
    let outcome = feed(fixed.as_bytes());
    let codes: Vec<u16> = outcome.responses.iter().map(|r| r.code).collect();
    println!("ipv6-in-sdp (fixed length) -> {codes:?}");
    assert_eq!(codes, vec![488]);
    assert!(outcome.events.is_empty(), "{:?}", outcome.events);
}

#[test]
fn wsinv_invite_with_to_tag_outside_a_dialog_481() {
    // The tortuous INVITE carries a To tag: a mid-dialog request for a dialog we do not have.
    answered("wsinv", &rfc4475("wsinv"), &[481]);
}

/// OPTIONS answered 200 with our capabilities.
fn options_ok(name: &str, bytes: &[u8]) {
    let response = answered(name, bytes, &[200]);
    assert!(header(&response, "Allow").contains("INVITE"), "{name}");
    assert!(header(&response, "Accept").contains("application/sdp"));
}

#[test]
fn valid_options_get_200() {
    for name in ["lwsdisp", "semiuri", "transports", "badbranch"] {
        options_ok(name, &rfc4475(name));
    }
}

#[test]
fn zeromf_max_forwards_zero_is_handled_normally_by_a_ua() {
    // Only proxies answer 483; a UA answers the OPTIONS itself.
    options_ok("zeromf", &rfc4475("zeromf"));
}

#[test]
fn valid_registers_get_405() {
    for name in [
        "cparam01", "cparam02", "regescrt", "dblreq", "escnull", "unksm2",
    ] {
        let response = answered(name, &rfc4475(name), &[405]);
        assert!(header(&response, "Allow").contains("INVITE"), "{name}");
    }
}

#[test]
fn multipart_message_gets_415_with_what_we_accept() {
    // mpart01 is a MESSAGE (RFC 3428) with a multipart/mixed body: instant messages are
    // text/plain only here, so 415 naming it (RFC 3261 §21.4.13), and nothing reaches the user.
    let outcome = feed(&rfc4475("mpart01"));
    assert_eq!(outcome.responses.len(), 1);
    let response = &outcome.responses[0];
    assert_eq!(response.code, 415, "{}", response.first_line());
    assert!(header(response, "Accept").contains("text/plain"));
    assert!(
        outcome
            .events
            .iter()
            .all(|e| !matches!(e, sipterm::sip::ua::UaEvent::MessageReceived { .. })),
        "{:?}",
        outcome.events
    );
}

#[test]
fn dblreq_trailing_octets_are_ignored_one_answer_only() {
    // The datagram holds a second message after Content-Length: it must not be answered.
    let outcome = feed(&rfc4475("dblreq"));
    assert_eq!(outcome.responses.len(), 1);
    assert_eq!(
        outcome.responses[0].headers.get("CSeq"),
        Some("8 REGISTER"),
        "only the first message is answered"
    );
}

// ------------------------------------------------------------ responses: dropped

#[test]
fn stray_responses_are_dropped_silently() {
    for name in ["scalarlg", "bigcode", "bcast", "unreason", "noreason"] {
        let outcome = feed(&rfc4475(name));
        println!(
            "{name:<12} -> {} sent, {} events",
            outcome.responses.len() + outcome.requests,
            outcome.events.len()
        );
        assert!(outcome.responses.is_empty(), "{name}: a response answered");
        assert_eq!(outcome.requests, 0, "{name}: a request sent");
        assert!(
            outcome.events.is_empty(),
            "{name}: events {:?}",
            outcome.events
        );
    }
}

// ------------------------------------------------------------ the whole corpus

#[test]
fn every_message_at_most_one_answer_to_the_source_and_the_ua_lives_on() {
    // One UA for the whole corpus, like a phone on the Internet receiving all of it.
    let mut ua = user_agent(&AccountSpec::default());
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for dir in ["rfc4475", "rfc5118"] {
        let mut names: Vec<PathBuf> = std::fs::read_dir(data_dir().join(dir))
            .expect("torture dir")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        for path in names {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let bytes = if dir == "rfc5118" {
                rfc5118(&name)
            } else {
                std::fs::read(&path).expect("read")
            };
            files.push((format!("{dir}/{name}"), bytes));
        }
    }
    assert_eq!(files.len(), 62, "50 RFC 4475 + 12 RFC 5118 messages");
    let mut answers = 0;
    for (name, bytes) in &files {
        // feed_to asserts that everything goes to the source only.
        let outcome = feed_to(&mut ua, bytes);
        assert!(
            outcome.responses.len() <= 1,
            "{name}: {} responses",
            outcome.responses.len()
        );
        assert_eq!(outcome.requests, 0, "{name}: a request sent");
        answers += outcome.responses.len();
        // Nothing answers 192.0.2.x or the names in the Vias: checked in feed_to.
    }
    println!("{} messages, {answers} answered", files.len());
    // Still a working UA afterwards: a plain OPTIONS gets 200.
    let probe = format!(
        "OPTIONS sip:alice@127.0.0.1:5062 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {SOURCE};branch=z9hG4bK-after-torture;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=t1\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: after-torture@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    let outcome = feed_to(&mut ua, probe.as_bytes());
    assert_eq!(
        outcome.responses.iter().map(|r| r.code).collect::<Vec<_>>(),
        vec![200]
    );
}

#[test]
fn inv2543_old_style_invite_without_contact_rings() {
    // RFC 4475 §3.4.1: an RFC 2543 INVITE (no branch cookie, no Max-Forwards, no Contact) is to
    // be handled for backward compatibility; the From URI stands in for the missing Contact.
    rings("inv2543", &rfc4475("inv2543"));
}

// ------------------------------------------------------------ found by fuzzing

/// fuzz/ua_datagrams found it: an unparseable request whose Via held a bare CR got a 400 that
/// copied the CR, i.e. a response that does not parse (and a way to inject a header). `feed`
/// insists that everything the UA sends parses; a line with a control character is now left
/// out, and without a clean Via there is no answer at all.
#[test]
fn a_bare_cr_in_a_broken_request_is_never_echoed() {
    let bad_via = b"INVITE sip:bob@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\n\
Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKkdj.insuf\r 12\r\nContent-Length: 5\r\n\r\n";
    let outcome = feed(bad_via);
    assert!(outcome.responses.is_empty(), "no clean Via, no answer");

    let bad_from = b"INVITE sip:bob@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\n\
Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKkdj.insuf\r\nFrom: <sip:a@b>\rInjected: yes\r\n\
Content-Length: 5\r\n\r\n";
    let response = answered("bare-cr", bad_from, &[400]);
    assert!(response.headers.get("Injected").is_none());
    assert!(response.headers.get("From").is_none());
}
