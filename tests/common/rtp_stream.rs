//! A raw RTP sender for tests that play a third party: well-formed PCMU (PT 0, 8 kHz, 20 ms
//! packets) carrying a tone, with an SSRC of the caller's choosing, sent from any
//! `std::net::UdpSocket` (bind it to 127.0.0.2 on loopback, or inside a lab namespace, to be
//! "another host"). Used by the stranger-RTP tests (issue 11).

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use sipterm::media::codec::g711::linear_to_ulaw;
use sipterm::media::tones::SineGenerator;

/// PCMU samples per packet (20 ms at 8 kHz).
pub const PCMU_FRAME: usize = 160;
/// The packet interval a real sender keeps.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// What a stream of tone packets looks like.
#[derive(Debug, Clone, Copy)]
pub struct ToneStream {
    pub frequency: f32,
    /// Peak amplitude of the tone (16-bit units).
    pub amplitude: f32,
    pub ssrc: u32,
    /// Sequence number and timestamp (in frames) of the first packet.
    pub first_sequence: u16,
}

impl ToneStream {
    /// A loud (-12 dBFS) tone with sequence numbers from 1.
    pub fn new(frequency: f32, ssrc: u32) -> ToneStream {
        ToneStream {
            frequency,
            amplitude: 8000.0,
            ssrc,
            first_sequence: 1,
        }
    }

    /// `count` consecutive RTP packets, ready to send (the marker bit on the first).
    pub fn packets(&self, count: usize) -> Vec<Vec<u8>> {
        let mut tone = SineGenerator::new(self.frequency, 8000, self.amplitude);
        let mut samples = Vec::with_capacity(PCMU_FRAME);
        (0..count)
            .map(|i| {
                let sequence = self.first_sequence.wrapping_add(i as u16);
                let timestamp = u32::from(sequence).wrapping_mul(PCMU_FRAME as u32);
                let mut packet = Vec::with_capacity(12 + PCMU_FRAME);
                packet.push(0x80);
                packet.push(if i == 0 { 0x80 } else { 0x00 });
                packet.extend_from_slice(&sequence.to_be_bytes());
                packet.extend_from_slice(&timestamp.to_be_bytes());
                packet.extend_from_slice(&self.ssrc.to_be_bytes());
                samples.clear();
                tone.fill(&mut samples, PCMU_FRAME);
                packet.extend(samples.iter().map(|&s| linear_to_ulaw(s)));
                packet
            })
            .collect()
    }
}

/// Sends `count` packets of `stream` from `socket` to `to`, one every 20 ms on a fixed
/// schedule (a late wake-up does not push the rest back), as a real sender would; returns
/// how many the socket accepted.
pub fn send_pcmu_tone(
    socket: &UdpSocket,
    to: SocketAddr,
    stream: &ToneStream,
    count: usize,
) -> std::io::Result<usize> {
    let start = Instant::now();
    let mut sent = 0;
    for (i, packet) in stream.packets(count).iter().enumerate() {
        let due = start + PACKET_INTERVAL * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        socket.send_to(packet, to)?;
        sent += 1;
    }
    Ok(sent)
}

/// Writes `packets` (RTP, one every 20 ms) as a pcap capture of UDP datagrams from `from` to
/// `to` over Ethernet, the form sipp's `play_pcap_audio` replays (it keeps the payloads and
/// the timing, and sends them to the peer's SDP address).
pub fn write_rtp_pcap(
    path: &std::path::Path,
    packets: &[Vec<u8>],
    from: std::net::SocketAddrV4,
    to: std::net::SocketAddrV4,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    // Global header: magic, version 2.4, zone 0, sigfigs 0, snaplen, link type 1 (Ethernet).
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, rtp) in packets.iter().enumerate() {
        let micros = i as u64 * PACKET_INTERVAL.as_micros() as u64;
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = Vec::with_capacity(14 + ip_len);
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&(ip_len as u16).to_be_bytes());
        ip.extend_from_slice(&(i as u16).to_be_bytes());
        ip.extend_from_slice(&[0x40, 0, 64, 17, 0, 0]);
        ip.extend_from_slice(&from.ip().octets());
        ip.extend_from_slice(&to.ip().octets());
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let folded = (sum & 0xffff) + (sum >> 16);
        let checksum = !(((folded & 0xffff) + (folded >> 16)) as u16);
        ip[10..12].copy_from_slice(&checksum.to_be_bytes());
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&from.port().to_be_bytes());
        frame.extend_from_slice(&to.port().to_be_bytes());
        frame.extend_from_slice(&(udp_len as u16).to_be_bytes());
        frame.extend_from_slice(&0u16.to_be_bytes());
        frame.extend_from_slice(rtp);
        out.extend_from_slice(&((micros / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    std::fs::write(path, out)
}
