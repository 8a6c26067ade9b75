//! Packet time: sending at the peer's `a=ptime` while the engine ticks every 20 ms, and
//! receiving packets of other lengths than 20 ms.
//!
//! Sending: [`Packetizer`] gathers each tick's PCM and hands out one packet's worth whenever
//! it has it (two 10 ms packets per tick, or a 30 ms packet every 1.5 ticks on average); the
//! RTP timestamps are exact, the send times follow the 20 ms tick.
//!
//! Receiving: for the sample codecs (G.711, G.722: one payload byte per RTP timestamp unit),
//! [`split_payload`] cuts a packet into frames of the jitter buffer's length, so 30 ms packets
//! play through a buffer of 10 ms frames and 40 or 60 ms packets through one of 20 ms frames.
//! Opus sends and receives 20 ms frames whatever the ptime (RFC 7587 §7: ptime is advisory; a
//! 30 ms Opus frame does not exist).

use super::codec::CodecKind;

/// The shortest and longest packet time we send.
pub const MIN_PTIME_MS: u32 = 10;
pub const MAX_PTIME_MS: u32 = 60;

/// Payload bytes are RTP timestamp units (so a packet can be cut anywhere between frames).
pub fn is_sample_codec(kind: CodecKind) -> bool {
    matches!(kind, CodecKind::Pcmu | CodecKind::Pcma | CodecKind::G722)
}

/// The packet time we send with when the peer asks for `requested` ms: the sample codecs take
/// any multiple of 10 ms in 10..=60 (rounded down), Opus stays at 20 ms.
pub fn send_ptime_ms(kind: CodecKind, requested: u32) -> u32 {
    if !is_sample_codec(kind) {
        return 20;
    }
    (requested / 10 * 10).clamp(MIN_PTIME_MS, MAX_PTIME_MS)
}

/// The jitter buffer's frame length for packets of `ptime_ms`: 10 ms when packets are not a
/// whole number of 20 ms frames (10, 30, 50 ms), else the engine's 20 ms.
pub fn receive_frame_ms(kind: CodecKind, ptime_ms: u32) -> u32 {
    if is_sample_codec(kind) && !ptime_ms.is_multiple_of(20) {
        10
    } else {
        20
    }
}

/// Cuts a sample codec's payload (starting at `timestamp`) into pieces of `frame_units`
/// timestamp units; a payload that is not a whole number of pieces stays whole.
pub fn split_payload(
    timestamp: u32,
    payload: &[u8],
    frame_units: usize,
) -> impl Iterator<Item = (u32, &[u8])> {
    let whole = frame_units > 0 && !payload.is_empty() && payload.len().is_multiple_of(frame_units);
    let size = if whole {
        frame_units
    } else {
        payload.len().max(1)
    };
    payload
        .chunks(size)
        .enumerate()
        .map(move |(i, piece)| (timestamp.wrapping_add((i * size) as u32), piece))
}

/// Gathers PCM ticks into packets of the send packet time.
#[derive(Debug)]
pub struct Packetizer {
    /// PCM samples (codec sample rate) and RTP timestamp units in one packet.
    samples: usize,
    units: u32,
    pending: Vec<i16>,
}

impl Packetizer {
    pub fn new(kind: CodecKind, ptime_ms: u32) -> Self {
        let samples = (kind.sample_rate() * ptime_ms / 1000) as usize;
        Packetizer {
            samples,
            units: kind.clock_rate() * ptime_ms / 1000,
            pending: Vec::with_capacity(samples * 2),
        }
    }

    /// RTP timestamp units one packet covers.
    pub fn units_per_packet(&self) -> u32 {
        self.units
    }

    pub fn push(&mut self, pcm: &[i16]) {
        self.pending.extend_from_slice(pcm);
    }

    /// Moves one packet's PCM into `out` when there is enough.
    pub fn pop(&mut self, out: &mut Vec<i16>) -> bool {
        if self.pending.len() < self.samples {
            return false;
        }
        out.clear();
        out.extend(self.pending.drain(..self.samples));
        true
    }

    /// Drops what waits (a tick without audio: DTMF, mute, hold); returns how many timestamp
    /// units it covered, for the sender to skip.
    pub fn discard(&mut self, kind: CodecKind) -> u32 {
        let units = (self.pending.len() as u64 * u64::from(kind.clock_rate())
            / u64::from(kind.sample_rate())) as u32;
        self.pending.clear();
        units
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_ptime_follows_the_peer_for_sample_codecs_only() {
        assert_eq!(send_ptime_ms(CodecKind::Pcmu, 30), 30);
        assert_eq!(send_ptime_ms(CodecKind::G722, 10), 10);
        assert_eq!(send_ptime_ms(CodecKind::Pcma, 45), 40);
        assert_eq!(send_ptime_ms(CodecKind::Pcma, 120), 60);
        assert_eq!(send_ptime_ms(CodecKind::Pcma, 5), 10);
        assert_eq!(send_ptime_ms(CodecKind::Opus, 40), 20);
    }

    #[test]
    fn thirty_ms_packets_come_from_20_ms_ticks() {
        let mut packetizer = Packetizer::new(CodecKind::Pcmu, 30);
        assert_eq!(packetizer.units_per_packet(), 240);
        let mut out = Vec::new();
        let mut packets = Vec::new();
        for tick in 0..6 {
            packetizer.push(&[tick as i16; 160]);
            while packetizer.pop(&mut out) {
                packets.push((tick, out.len()));
            }
        }
        // 120 ms of audio: four 30 ms packets, at ticks 1, 2, 4, 5.
        assert_eq!(packets, vec![(1, 240), (2, 240), (4, 240), (5, 240)]);
    }

    #[test]
    fn ten_ms_packets_two_per_tick_and_discard_reports_the_skipped_time() {
        let mut packetizer = Packetizer::new(CodecKind::G722, 10);
        assert_eq!(packetizer.units_per_packet(), 80);
        packetizer.push(&[0; 320]);
        let mut out = Vec::new();
        assert!(packetizer.pop(&mut out) && out.len() == 160);
        assert!(packetizer.pop(&mut out));
        assert!(!packetizer.pop(&mut out));
        packetizer.push(&[0; 100]);
        assert_eq!(packetizer.discard(CodecKind::G722), 50);
    }

    #[test]
    fn payloads_split_into_frames_of_the_buffer() {
        let payload = [7u8; 240];
        let pieces: Vec<(u32, usize)> = split_payload(1000, &payload, 80)
            .map(|(ts, p)| (ts, p.len()))
            .collect();
        assert_eq!(pieces, vec![(1000, 80), (1080, 80), (1160, 80)]);
        // Not a whole number of frames: left whole.
        let pieces: Vec<usize> = split_payload(0, &payload[..100], 80)
            .map(|(_, p)| p.len())
            .collect();
        assert_eq!(pieces, vec![100]);
        assert_eq!(
            split_payload(u32::MAX, &payload[..160], 80)
                .map(|(ts, _)| ts)
                .collect::<Vec<_>>(),
            vec![u32::MAX, 79]
        );
    }
}
