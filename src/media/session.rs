//! Sans-IO RTP session for one call: [`RtpSender`] numbers and stamps outgoing packets,
//! [`RtpReceiver`] follows the incoming stream (RFC 3550 A.1 sequence tracking, A.3 loss,
//! A.8 interarrival jitter) and reports [`ReceiveStats`].

use std::time::Duration;

use super::MediaError;
use super::dtmf::DtmfPacket;
use super::rtp::{RtpPacket, RtpPacketBuilder};

/// splitmix64: spreads a seed into well-mixed bits, so the caller's seed (e.g. from `rand`)
/// yields unpredictable-looking SSRC, sequence number and timestamp as RFC 3550 §5.1 asks.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Counters of what was sent (for RTCP SR and the UI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    pub packets: u64,
    /// Payload octets, as RTCP's sender octet count wants them.
    pub payload_octets: u64,
}

/// Wraps encoded frames into RTP packets for one outgoing stream.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    sequence_number: u16,
    timestamp: u32,
    payload_type: u8,
    samples_per_frame: u32,
    marker_pending: bool,
    stats: SendStats,
}

impl RtpSender {
    /// `seed` picks the random SSRC and initial sequence number and timestamp;
    /// `samples_per_frame` is the timestamp step per 20 ms frame (160 for G.711, 960 for Opus).
    pub fn new(seed: u64, payload_type: u8, samples_per_frame: u32) -> Self {
        let mut state = seed;
        let ssrc = splitmix64(&mut state) as u32;
        let sequence_number = splitmix64(&mut state) as u16;
        let timestamp = splitmix64(&mut state) as u32;
        Self {
            ssrc,
            sequence_number,
            timestamp,
            payload_type,
            samples_per_frame,
            marker_pending: true,
            stats: SendStats::default(),
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Sequence number the next packet gets.
    pub fn next_sequence_number(&self) -> u16 {
        self.sequence_number
    }

    /// RTP timestamp of the current frame (the one the next packet or skip covers).
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    pub fn stats(&self) -> SendStats {
        self.stats
    }

    /// Appends one audio packet for the current frame to `out` and moves on to the next frame.
    /// The first packet after start or after skipped frames carries the marker (talkspurt).
    pub fn packetize_audio(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), MediaError> {
        let marker = self.marker_pending;
        self.write(self.payload_type, marker, self.timestamp, payload, out)?;
        self.marker_pending = false;
        self.advance_frame();
        Ok(())
    }

    /// Appends a telephone-event packet (from [`super::dtmf::DtmfSender::poll_packet`], which
    /// was given [`Self::timestamp`]) in place of this frame's audio, and moves on.
    pub fn packetize_event(
        &mut self,
        event_payload_type: u8,
        packet: &DtmfPacket,
        out: &mut Vec<u8>,
    ) -> Result<(), MediaError> {
        let payload = packet.event.to_bytes();
        self.write(
            event_payload_type,
            packet.marker,
            packet.timestamp,
            &payload,
            out,
        )?;
        self.advance_frame();
        Ok(())
    }

    /// Like [`Self::packetize_audio`] for a packet of `units` timestamp units (a packet time
    /// other than the 20 ms frame).
    pub fn packetize_audio_units(
        &mut self,
        payload: &[u8],
        units: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), MediaError> {
        let marker = self.marker_pending;
        self.write(self.payload_type, marker, self.timestamp, payload, out)?;
        self.marker_pending = false;
        self.timestamp = self.timestamp.wrapping_add(units);
        Ok(())
    }

    /// Time without packets that is not a whole frame (audio gathered for a longer packet and
    /// then dropped): the next audio packet starts a new talkspurt.
    pub fn skip_units(&mut self, units: u32) {
        if units > 0 {
            self.marker_pending = true;
            self.timestamp = self.timestamp.wrapping_add(units);
        }
    }

    /// No packet for this frame (muted, on hold, silence): time moves on, and the next audio
    /// packet starts a new talkspurt.
    pub fn skip_frame(&mut self) {
        self.marker_pending = true;
        self.advance_frame();
    }

    fn advance_frame(&mut self) {
        self.timestamp = self.timestamp.wrapping_add(self.samples_per_frame);
    }

    fn write(
        &mut self,
        payload_type: u8,
        marker: bool,
        timestamp: u32,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), MediaError> {
        RtpPacketBuilder::new(payload_type, self.sequence_number, timestamp, self.ssrc)
            .marker(marker)
            .write(payload, out)?;
        self.sequence_number = self.sequence_number.wrapping_add(1);
        self.stats.packets += 1;
        self.stats.payload_octets += payload.len() as u64;
        Ok(())
    }
}

/// `elapsed` (e.g. `now - call_start`) in RTP clock units, wrapping like RTP timestamps: the
/// arrival time [`RtpReceiver::handle_packet`] wants.
pub fn clock_units(elapsed: Duration, clock_rate: u32) -> u32 {
    let units = elapsed.as_nanos() * u128::from(clock_rate) / 1_000_000_000;
    units as u32
}

/// A.1: sequence numbers this far ahead are a jump, not loss.
const MAX_DROPOUT: u16 = 3000;
/// A.1: sequence numbers this far behind are late packets, not a restart.
const MAX_MISORDER: u16 = 100;
/// Received-packet memory for duplicate detection: the last 128 sequence numbers.
const SEEN_WINDOW: u64 = 128;

/// What the receiver made of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveOutcome {
    /// A new packet: hand it on (to the jitter buffer or the DTMF receiver).
    Accepted {
        /// Sequence number extended with the wrap count, increasing over the call.
        extended_sequence: u64,
        /// The stream restarted (new SSRC, or a sequence jump confirmed by the next packet):
        /// the playout buffer should resynchronise.
        restarted: bool,
    },
    /// Seen before; drop it.
    Duplicate,
    /// A large sequence jump seen once; dropped until the next packet confirms it (RFC 3550
    /// A.1), so one stray packet cannot reset the stream.
    Discarded,
}

/// What the UI and RTCP show about the incoming stream.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReceiveStats {
    /// Current source, once a packet arrived.
    pub ssrc: Option<u32>,
    /// Packets received, duplicates excluded.
    pub received: u64,
    /// Packets the sequence numbers say were sent.
    pub expected: u64,
    /// Cumulative loss (A.3): expected - received; negative when duplicates outnumber losses.
    pub lost: i64,
    pub duplicates: u64,
    /// Packets that arrived after a later one.
    pub reordered: u64,
    /// Packets dropped by the sequence-jump check.
    pub discarded: u64,
    pub ssrc_changes: u32,
    /// Interarrival jitter (A.8) in RTP clock units.
    pub jitter: f64,
    /// The same in milliseconds.
    pub jitter_ms: f64,
    /// Highest sequence number received, extended with the count of wraps since the first
    /// packet (RTCP report blocks carry it, RFC 3550 §6.4.1).
    pub extended_highest_sequence: u32,
}

/// Follows one incoming RTP stream.
#[derive(Debug, Clone)]
pub struct RtpReceiver {
    clock_rate: u32,
    /// Telephone-event packets keep one timestamp for many packets, so they would read as
    /// jitter; packets of this payload type are counted but left out of the jitter estimate.
    event_payload_type: Option<u8>,
    ssrc: Option<u32>,
    base_extended: u64,
    max_extended: u64,
    /// Bit k set: sequence `max_extended - k` was received.
    seen: u128,
    bad_sequence: Option<u16>,
    /// Packets expected in earlier runs (before restarts and SSRC changes).
    expected_before: u64,
    last_transit: Option<u32>,
    jitter: f64,
    stats: ReceiveStats,
}

impl RtpReceiver {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            event_payload_type: None,
            ssrc: None,
            base_extended: 0,
            max_extended: 0,
            seen: 0,
            bad_sequence: None,
            expected_before: 0,
            last_transit: None,
            jitter: 0.0,
            stats: ReceiveStats::default(),
        }
    }

    /// Leaves packets of `payload_type` (telephone-event) out of the jitter estimate.
    pub fn with_event_payload_type(mut self, payload_type: u8) -> Self {
        self.event_payload_type = Some(payload_type);
        self
    }

    /// Handles one parsed packet that arrived at `arrival` (RTP clock units on any fixed
    /// origin, see [`clock_units`]).
    pub fn handle_packet(&mut self, packet: &RtpPacket<'_>, arrival: u32) -> ReceiveOutcome {
        let sequence = packet.sequence_number();
        let mut restarted = false;
        let extended = if self.ssrc != Some(packet.ssrc()) {
            if self.ssrc.is_some() {
                self.stats.ssrc_changes += 1;
            }
            self.ssrc = Some(packet.ssrc());
            restarted = true;
            self.restart_at(sequence)
        } else {
            let ahead = sequence.wrapping_sub(self.max_extended as u16);
            if ahead == 0 {
                self.stats.duplicates += 1;
                return ReceiveOutcome::Duplicate;
            } else if ahead < MAX_DROPOUT {
                let extended = self.max_extended + u64::from(ahead);
                self.advance_to(extended);
                extended
            } else if ahead > u16::MAX - MAX_MISORDER {
                let behind = u64::from(ahead.wrapping_neg());
                let Some(extended) = self.max_extended.checked_sub(behind) else {
                    return ReceiveOutcome::Discarded;
                };
                if behind < SEEN_WINDOW {
                    let bit = 1u128 << behind;
                    if self.seen & bit != 0 {
                        self.stats.duplicates += 1;
                        return ReceiveOutcome::Duplicate;
                    }
                    self.seen |= bit;
                }
                if extended < self.base_extended {
                    // Arrived before the stream's first packet: the stream started earlier.
                    self.base_extended = extended;
                }
                self.stats.reordered += 1;
                extended
            } else if self.bad_sequence == Some(sequence) {
                // Two sequential packets after a jump: the sender restarted its numbering.
                restarted = true;
                self.restart_at(sequence)
            } else {
                self.bad_sequence = Some(sequence.wrapping_add(1));
                self.stats.discarded += 1;
                return ReceiveOutcome::Discarded;
            }
        };
        self.stats.received += 1;
        if Some(packet.payload_type()) != self.event_payload_type {
            self.update_jitter(packet.timestamp(), arrival);
        }
        ReceiveOutcome::Accepted {
            extended_sequence: extended,
            restarted,
        }
    }

    /// Starts a new run of sequence numbers (new source or confirmed jump), keeping the
    /// cumulative counts of the earlier runs.
    fn restart_at(&mut self, sequence: u16) -> u64 {
        if self.stats.received > 0 {
            self.expected_before += self.run_expected();
        }
        // Each run starts in a fresh 2^16 cycle above the last, so extended numbers keep
        // increasing over the call and a few reordered predecessors cannot go below zero.
        let cycle = (self.max_extended >> 16) + 1;
        let extended = (cycle << 16) | u64::from(sequence);
        self.base_extended = extended;
        self.max_extended = extended;
        self.seen = 1;
        self.bad_sequence = None;
        self.last_transit = None;
        self.jitter = 0.0;
        extended
    }

    fn advance_to(&mut self, extended: u64) {
        let step = extended - self.max_extended;
        self.seen = if step >= SEEN_WINDOW {
            1
        } else {
            (self.seen << step) | 1
        };
        self.max_extended = extended;
        self.bad_sequence = None;
    }

    fn run_expected(&self) -> u64 {
        self.max_extended - self.base_extended + 1
    }

    /// RFC 3550 A.8: J += (|D| - J) / 16, with D the change in transit time.
    fn update_jitter(&mut self, timestamp: u32, arrival: u32) {
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let difference = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter += (difference - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    pub fn stats(&self) -> ReceiveStats {
        let mut stats = self.stats;
        stats.ssrc = self.ssrc;
        stats.expected = if self.ssrc.is_some() {
            self.expected_before + self.run_expected()
        } else {
            0
        };
        stats.lost = stats.expected as i64 - stats.received as i64;
        stats.jitter = self.jitter;
        stats.jitter_ms = self.jitter * 1000.0 / f64::from(self.clock_rate);
        // Runs start in cycle 1 or later (see `restart_at`); RTCP counts wraps from zero.
        stats.extended_highest_sequence = if self.ssrc.is_some() {
            self.max_extended.saturating_sub(1 << 16) as u32
        } else {
            0
        };
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(sequence: u16, timestamp: u32, ssrc: u32) -> Vec<u8> {
        let mut out = Vec::new();
        RtpPacketBuilder::new(0, sequence, timestamp, ssrc)
            .write(&[0xff; 160], &mut out)
            .unwrap();
        out
    }

    fn receive(
        receiver: &mut RtpReceiver,
        sequence: u16,
        timestamp: u32,
        arrival: u32,
    ) -> ReceiveOutcome {
        let bytes = packet(sequence, timestamp, 0xabcd);
        receiver.handle_packet(&RtpPacket::parse(&bytes).unwrap(), arrival)
    }

    #[test]
    fn sender_numbers_and_stamps_packets() {
        let mut sender = RtpSender::new(42, 0, 160);
        let (ssrc, first_sequence, first_timestamp) = (
            sender.ssrc(),
            sender.next_sequence_number(),
            sender.timestamp(),
        );
        let mut wire = Vec::new();
        for _ in 0..3 {
            let mut out = Vec::new();
            sender.packetize_audio(&[0xd5; 160], &mut out).unwrap();
            wire.push(out);
        }
        sender.skip_frame();
        let mut after_silence = Vec::new();
        sender
            .packetize_audio(&[0xd5; 160], &mut after_silence)
            .unwrap();
        wire.push(after_silence);

        let parsed: Vec<_> = wire.iter().map(|b| RtpPacket::parse(b).unwrap()).collect();
        let markers: Vec<_> = parsed.iter().map(RtpPacket::marker).collect();
        assert_eq!(markers, vec![true, false, false, true]);
        let sequences: Vec<_> = parsed
            .iter()
            .map(|p| p.sequence_number().wrapping_sub(first_sequence))
            .collect();
        assert_eq!(sequences, vec![0, 1, 2, 3]);
        let timestamps: Vec<_> = parsed
            .iter()
            .map(|p| p.timestamp().wrapping_sub(first_timestamp))
            .collect();
        assert_eq!(timestamps, vec![0, 160, 320, 640]);
        assert!(
            parsed
                .iter()
                .all(|p| p.ssrc() == ssrc && p.payload_type() == 0)
        );
        assert_eq!(
            sender.stats(),
            SendStats {
                packets: 4,
                payload_octets: 640
            }
        );

        // Different seeds give different streams; the same seed the same one.
        let other = RtpSender::new(43, 0, 160);
        assert_ne!(other.ssrc(), ssrc);
        assert_eq!(RtpSender::new(42, 0, 160).ssrc(), ssrc);
    }

    #[test]
    fn sender_puts_dtmf_in_place_of_audio() {
        use crate::media::dtmf::DtmfSender;
        let mut sender = RtpSender::new(7, 0, 160);
        let mut dtmf = DtmfSender::new(8000, 20, 40, 0).unwrap();
        dtmf.queue_digits("7").unwrap();
        let start = sender.timestamp();
        let mut timestamps = Vec::new();
        for _ in 0..5 {
            let mut out = Vec::new();
            match dtmf.poll_packet(sender.timestamp()) {
                Some(event) => sender.packetize_event(101, &event, &mut out).unwrap(),
                None => sender.packetize_audio(&[0; 160], &mut out).unwrap(),
            }
            let parsed = RtpPacket::parse(&out).unwrap();
            timestamps.push((
                parsed.payload_type(),
                parsed.timestamp().wrapping_sub(start),
            ));
        }
        // Four event packets stamped with the event start, then audio at the 5th frame's time.
        assert_eq!(
            timestamps,
            vec![(101, 0), (101, 0), (101, 0), (101, 0), (0, 640)]
        );
    }

    /// Hand-computed A.8 schedule at 8 kHz: packets 20 ms apart in RTP time arrive with transit
    /// times 0, +10, -10, +20 → |D| = 10, 20, 30 →
    /// J = 10/16 = 0.625; 0.625 + (20 - 0.625)/16 = 1.8359375; + (30 - 1.8359375)/16 = 3.59619140625.
    #[test]
    fn jitter_follows_rfc_3550_a8() {
        let mut receiver = RtpReceiver::new(8000);
        for (index, arrival) in [1000u32, 1170, 1310, 1500].into_iter().enumerate() {
            let index = index as u32;
            receive(
                &mut receiver,
                10 + index as u16,
                5000 + 160 * index,
                arrival - 1000 + 5000,
            );
        }
        let stats = receiver.stats();
        assert!(
            (stats.jitter - 3.596_191_406_25).abs() < 1e-9,
            "{}",
            stats.jitter
        );
        assert!((stats.jitter_ms - 3.596_191_406_25 / 8.0).abs() < 1e-9);
        assert_eq!(stats.received, 4);
        assert_eq!(stats.lost, 0);
    }

    #[test]
    fn jitter_survives_timestamp_and_arrival_wraparound() {
        let mut receiver = RtpReceiver::new(8000);
        // Constant transit across the 2^32 wrap of both clocks: no jitter at all.
        for index in 0..10u32 {
            let timestamp = (u32::MAX - 800).wrapping_add(160 * index);
            let arrival = timestamp.wrapping_add(12_345);
            receive(&mut receiver, index as u16, timestamp, arrival);
        }
        assert_eq!(receiver.stats().jitter, 0.0);
    }

    #[test]
    fn loss_is_counted_across_the_65535_wrap() {
        let mut receiver = RtpReceiver::new(8000);
        // 65530..=65535 then 0..=9, with 65533, 0 and 5 lost.
        let sequences: Vec<u16> = (65530..=65535)
            .chain(0..=9)
            .filter(|s| ![65533, 0, 5].contains(s))
            .collect();
        for (index, &sequence) in sequences.iter().enumerate() {
            let outcome = receive(
                &mut receiver,
                sequence,
                160 * index as u32,
                160 * index as u32,
            );
            assert!(
                matches!(outcome, ReceiveOutcome::Accepted { restarted, .. } if restarted == (index == 0))
            );
        }
        let stats = receiver.stats();
        assert_eq!(stats.expected, 16);
        assert_eq!(stats.received, 13);
        assert_eq!(stats.lost, 3);
        // A late arrival of a lost packet lowers the loss and counts as reordering.
        receive(&mut receiver, 0, 0, 5000);
        let stats = receiver.stats();
        assert_eq!((stats.lost, stats.reordered), (2, 1));
    }

    #[test]
    fn duplicates_do_not_hide_loss() {
        let mut receiver = RtpReceiver::new(8000);
        for sequence in [100u16, 101, 101, 103, 102, 102, 104] {
            receive(&mut receiver, sequence, 0, 0);
        }
        let stats = receiver.stats();
        assert_eq!(stats.duplicates, 2);
        assert_eq!(stats.reordered, 1);
        assert_eq!(stats.received, 5);
        assert_eq!(stats.lost, 0);
        assert_eq!(receive(&mut receiver, 101, 0, 0), ReceiveOutcome::Duplicate);
    }

    #[test]
    fn a_single_stray_jump_is_discarded_but_a_confirmed_one_restarts() {
        let mut receiver = RtpReceiver::new(8000);
        receive(&mut receiver, 1000, 0, 0);
        receive(&mut receiver, 1001, 160, 160);
        assert_eq!(
            receive(&mut receiver, 30_000, 320, 320),
            ReceiveOutcome::Discarded
        );
        assert!(matches!(
            receive(&mut receiver, 1002, 320, 320),
            ReceiveOutcome::Accepted {
                restarted: false,
                ..
            }
        ));
        assert_eq!(
            receive(&mut receiver, 40_000, 480, 480),
            ReceiveOutcome::Discarded
        );
        assert!(matches!(
            receive(&mut receiver, 40_001, 640, 640),
            ReceiveOutcome::Accepted {
                restarted: true,
                ..
            }
        ));
        receive(&mut receiver, 40_003, 960, 960);
        let stats = receiver.stats();
        // Run one: 1000-1002 (3 expected); run two: 40001-40003 (3 expected, 40002 lost).
        assert_eq!((stats.expected, stats.received, stats.lost), (6, 5, 1));
        assert_eq!(stats.discarded, 2);
    }

    #[test]
    fn ssrc_change_resets_the_stream_but_keeps_totals() {
        let mut receiver = RtpReceiver::new(8000);
        for sequence in 0..5u16 {
            receive(
                &mut receiver,
                sequence,
                u32::from(sequence) * 160,
                u32::from(sequence) * 200,
            );
        }
        assert!(receiver.stats().jitter > 0.0);
        let bytes = packet(5000, 999_999, 0x1111);
        let outcome = receiver.handle_packet(&RtpPacket::parse(&bytes).unwrap(), 1000);
        assert!(matches!(
            outcome,
            ReceiveOutcome::Accepted {
                restarted: true,
                ..
            }
        ));
        let stats = receiver.stats();
        assert_eq!(stats.ssrc, Some(0x1111));
        assert_eq!(stats.ssrc_changes, 1);
        assert_eq!((stats.expected, stats.received, stats.lost), (6, 6, 0));
        assert_eq!(stats.jitter, 0.0, "jitter restarts with the new source");
    }

    #[test]
    fn event_packets_stay_out_of_the_jitter_estimate() {
        let mut receiver = RtpReceiver::new(8000).with_event_payload_type(101);
        for index in 0..6u16 {
            let mut bytes = Vec::new();
            // One event timestamp across packets arriving 20 ms apart.
            RtpPacketBuilder::new(101, index, 8000, 5)
                .write(&[1, 0, 0, 160], &mut bytes)
                .unwrap();
            receiver.handle_packet(&RtpPacket::parse(&bytes).unwrap(), 160 * u32::from(index));
        }
        assert_eq!(receiver.stats().jitter, 0.0);
        assert_eq!(receiver.stats().received, 6);
    }

    #[test]
    fn clock_units_from_durations() {
        assert_eq!(clock_units(Duration::from_millis(1500), 8000), 12_000);
        assert_eq!(clock_units(Duration::from_micros(20_833), 48_000), 999);
        // Wraps like an RTP timestamp after 2^32 units (about 24.8 hours at 48 kHz).
        // 536871 s * 8000 = 4294968000 = 2^32 + 704.
        assert_eq!(clock_units(Duration::from_secs(536_871), 8000), 704);
    }
}
