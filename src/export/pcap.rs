//! A classic libpcap file (magic 0xa1b2c3d4, microsecond timestamps, LINKTYPE_RAW) with an
//! IPv4 or IPv6 header and a UDP header around each SIP message, using the real addresses and
//! ports, so Wireshark and tshark decode the trace as SIP, and RTP/RTCP (`--pcap-out`, streamed
//! by `driver::capture`) so Wireshark's RTP player plays the call. (Messages that went over
//! TCP are written as UDP too: the ladder is what matters, not the stream reassembly.)

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use super::Record;

/// LINKTYPE_RAW: the packet starts with the IP header (version nibble says 4 or 6).
pub const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 65_535;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const UDP_HEADER: usize = 8;
const PROTO_UDP: u8 = 17;

/// The whole file. Messages whose two addresses are of different families, or too big for one
/// UDP datagram, are left out (the count of written packets is returned with the bytes).
/// SRTP keys in SDP bodies are masked (`sdp::redact_inline_key_bytes`).
pub fn render(records: &[&Record]) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(24 + records.iter().map(|r| r.raw.len() + 64).sum::<usize>());
    out.extend_from_slice(&file_header());
    let mut written = 0;
    for (index, r) in records.iter().enumerate() {
        let (src, dst) = r.endpoints();
        let id = u16::try_from(index & 0xffff).unwrap_or(0);
        let raw = crate::sdp::redact_inline_key_bytes(&r.raw);
        if append_record(&mut out, r.time, src, dst, &raw, id) {
            written += 1;
        }
    }
    (out, written)
}

/// The 24-byte file header: classic libpcap, microseconds, LINKTYPE_RAW.
pub fn file_header() -> [u8; 24] {
    let mut out = [0u8; 24];
    out[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out[4..6].copy_from_slice(&2u16.to_le_bytes()); // version 2.4
    out[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0
    out[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    out[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
    out
}

/// Appends one packet record (header + IP + UDP + payload) to `out`; false when the payload
/// cannot be one datagram between these addresses (different families, too big).
pub fn append_record(
    out: &mut Vec<u8>,
    time: SystemTime,
    src: SocketAddr,
    dst: SocketAddr,
    payload: &[u8],
    id: u16,
) -> bool {
    let Some(packet) = packet(src, dst, payload, id) else {
        return false;
    };
    let Ok(len) = u32::try_from(packet.len()) else {
        return false;
    };
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = u32::try_from(since.as_secs()).unwrap_or(u32::MAX);
    out.extend_from_slice(&secs.to_le_bytes());
    out.extend_from_slice(&since.subsec_micros().to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes()); // captured
    out.extend_from_slice(&len.to_le_bytes()); // on the wire
    out.extend_from_slice(&packet);
    true
}

/// IP + UDP + payload, or `None` when it cannot be one datagram.
pub fn packet(src: SocketAddr, dst: SocketAddr, payload: &[u8], id: u16) -> Option<Vec<u8>> {
    let udp_len = u16::try_from(UDP_HEADER + payload.len()).ok()?;
    let mut udp = Vec::with_capacity(usize::from(udp_len));
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]); // checksum, filled in below
    udp.extend_from_slice(payload);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = u16::try_from(IPV4_HEADER + udp.len()).ok()?;
            let mut pseudo = Vec::with_capacity(12);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, PROTO_UDP]);
            pseudo.extend_from_slice(&udp_len.to_be_bytes());
            set_udp_checksum(&mut udp, &pseudo);
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&total.to_be_bytes());
            ip.extend_from_slice(&id.to_be_bytes());
            ip.extend_from_slice(&[0x40, 0]); // don't fragment
            ip.extend_from_slice(&[64, PROTO_UDP, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let sum = checksum(&[&ip]);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            ip.extend_from_slice(&udp);
            Some(ip)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut pseudo = Vec::with_capacity(40);
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, PROTO_UDP]);
            set_udp_checksum(&mut udp, &pseudo);
            let mut ip = Vec::with_capacity(IPV6_HEADER + udp.len());
            ip.extend_from_slice(&[0x60, 0, 0, 0]);
            ip.extend_from_slice(&udp_len.to_be_bytes()); // payload length
            ip.extend_from_slice(&[PROTO_UDP, 64]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            ip.extend_from_slice(&udp);
            Some(ip)
        }
        _ => None,
    }
}

fn set_udp_checksum(udp: &mut [u8], pseudo: &[u8]) {
    let sum = match checksum(&[pseudo, udp]) {
        0 => 0xffff, // RFC 768: a computed zero is sent as all ones
        s => s,
    };
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
}

/// The Internet checksum (RFC 1071) over the concatenated parts (each even-length except
/// possibly the last).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for pair in &mut chunks {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        let src: SocketAddr = "127.0.0.1:5062".parse().unwrap_or_else(|_| unreachable!());
        let dst: SocketAddr = "127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!());
        let p = packet(src, dst, b"OPTIONS sip:a SIP/2.0\r\n\r\n", 7).unwrap_or_default();
        assert_eq!(p.len(), 20 + 8 + 25);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 53);
        assert_eq!(checksum(&[&p[..20]]), 0);
        assert_eq!(u16::from_be_bytes([p[24], p[25]]), 33);
    }

    #[test]
    fn srtp_keys_are_masked_in_the_file() {
        let r = Record {
            time: UNIX_EPOCH,
            dir: crate::event::Direction::In,
            local: "127.0.0.1:5062".parse().unwrap_or_else(|_| unreachable!()),
            peer: "127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!()),
            raw: std::sync::Arc::from(
                &b"SIP/2.0 200 OK\r\n\r\na=crypto:2 AES_CM_128_HMAC_SHA1_32 INLINE:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\r\n"[..],
            ),
        };
        let (bytes, written) = render(&[&r]);
        assert_eq!(written, 1);
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("d0RmdmcmVCspeEc3"), "{text}");
        assert!(text.contains("INLINE:REDACTEDREDACTED"), "{text}");
    }
}
