//! `cargo fuzz run parse_message` (seed corpus: tests/data/torture/rfc4475).
//! Whatever parses must serialize and parse back to the same start line, body and headers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipterm::sip::message::{Message, same_header};
use sipterm::sip::parse::{
    StreamFrame, parse_datagram, parse_head, parse_stream, validate_message,
};

fn headers_without_length(message: &Message) -> Vec<(String, String)> {
    message
        .headers()
        .iter()
        .filter(|h| !same_header(&h.name, "Content-Length"))
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect()
}

fn check_round_trip(message: &Message) {
    let _ = validate_message(message);
    let again = parse_datagram(&message.to_bytes()).expect("a parsed message must re-parse");
    assert_eq!(again.first_line(), message.first_line());
    assert_eq!(again.body(), message.body());
    assert_eq!(
        headers_without_length(&again),
        headers_without_length(message)
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = parse_datagram(data) {
        check_round_trip(&message);
    }
    if let Ok(StreamFrame::Message(message, used)) = parse_stream(data) {
        assert!(used <= data.len());
        check_round_trip(&message);
    }
    let _ = parse_head(data);
});
