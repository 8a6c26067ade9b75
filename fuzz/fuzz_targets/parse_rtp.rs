//! `cargo fuzz run parse_rtp`. RTP and RTCP from the network are hostile: parsing never panics,
//! a parsed RTCP compound prints and parses back to the same packets, and the jitter buffer
//! stays bounded whatever timestamps and arrival times come in.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipterm::media::jitter::{JitterBuffer, Playout};
use sipterm::media::rtcp::{RtcpSession, build_compound, parse_compound};
use sipterm::media::rtp::RtpPacket;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    if let Ok(packet) = RtpPacket::parse(data) {
        assert!(packet.payload().len() <= data.len());
        let _ = packet.extension();
        let _ = packet.csrcs().count();
    }
    if let Ok(packets) = parse_compound(data) {
        if let Ok(bytes) = build_compound(&packets) {
            let again = parse_compound(&bytes).expect("our RTCP must parse back");
            assert_eq!(again, packets);
        }
    }
    let mut session = RtcpSession::new(0x1234_5678, "fuzz@sipterm", 8000, 7);
    let _ = session.handle_packet(data, Duration::from_secs(3));

    // Chunks of 9 bytes drive the jitter buffer: timestamp, arrival, payload length.
    let mut buffer = JitterBuffer::new(160, 3);
    for chunk in data.chunks(9).take(512) {
        if chunk.len() < 9 {
            break;
        }
        let timestamp = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let arrival = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        let payload = vec![0u8; usize::from(chunk[8])];
        buffer.insert_at(timestamp, &payload, arrival);
        assert!(
            buffer.len() <= 1024,
            "jitter buffer grew to {}",
            buffer.len()
        );
        // Every payload inserted was at most 255 bytes: nothing else may come out.
        if let Playout::Frame(frame) = buffer.pop_frame() {
            assert!(frame.len() <= 255);
        }
    }
});
