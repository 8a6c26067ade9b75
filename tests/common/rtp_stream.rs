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
