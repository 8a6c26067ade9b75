//! DTMF as RFC 4733 telephone-events: the 4-octet payload, a sender that turns queued digits into
//! the packet sequence (one packet per tick), and a receiver that reports each digit once.

use std::collections::VecDeque;

use super::MediaError;

/// Length of one event block in the payload.
pub const TELEPHONE_EVENT_LEN: usize = 4;
/// Volume used when sending: -10 dBm0, a normal DTMF level.
pub const DEFAULT_VOLUME: u8 = 10;
/// Digits queued beyond this are refused, so a flood of `dtmf` commands cannot grow memory.
const MAX_QUEUED_DIGITS: usize = 64;
/// The final packet of an event is sent this many times in all (RFC 4733 §2.5.1.4).
const END_PACKET_COPIES: u8 = 3;

/// Maps a DTMF key to its RFC 4733 event code (0-9, * = 10, # = 11, A-D = 12-15).
pub fn digit_to_event(digit: char) -> Option<u8> {
    match digit.to_ascii_uppercase() {
        '0'..='9' => digit
            .to_digit(10)
            .and_then(|value| u8::try_from(value).ok()),
        '*' => Some(10),
        '#' => Some(11),
        letter @ 'A'..='D' => Some(12 + (letter as u8 - b'A')),
        _ => None,
    }
}

/// The key for an event code, if it is one of the 16 DTMF events.
pub fn event_to_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => char::from_digit(u32::from(event), 10),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + (event - 12))),
        _ => None,
    }
}

/// One telephone-event payload block (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    pub event: u8,
    pub end: bool,
    /// Power level as -dBm0, 0..=63.
    pub volume: u8,
    /// Duration so far in RTP clock units, counted from the event's timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event block; a payload may carry more, which a DTMF receiver ignores.
    pub fn parse(payload: &[u8]) -> Result<Self, MediaError> {
        match payload {
            [event, flags, high, low, ..] => Ok(Self {
                event: *event,
                end: flags & 0x80 != 0,
                volume: flags & 0x3f,
                duration: u16::from_be_bytes([*high, *low]),
            }),
            _ => Err(MediaError::DtmfPayloadTruncated(payload.len())),
        }
    }

    /// Appends the 4-octet block to `out` (the reserved bit is sent as zero).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(self.event);
        out.push(u8::from(self.end) << 7 | (self.volume & 0x3f));
        out.extend_from_slice(&self.duration.to_be_bytes());
    }

    pub fn to_bytes(&self) -> [u8; TELEPHONE_EVENT_LEN] {
        let duration = self.duration.to_be_bytes();
        [
            self.event,
            u8::from(self.end) << 7 | (self.volume & 0x3f),
            duration[0],
            duration[1],
        ]
    }
}

/// One packet the sender wants on the wire this tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// RTP marker: set on the first packet of each event.
    pub marker: bool,
    /// RTP timestamp: the event's start, the same for all its packets.
    pub timestamp: u32,
    pub event: TelephoneEvent,
}

#[derive(Debug, Clone, Copy)]
struct ActiveEvent {
    event: u8,
    start_timestamp: u32,
    total_duration: u16,
    sent_duration: u16,
    end_copies_sent: u8,
}

/// Turns digits into RFC 4733 packet sequences. The media task calls [`DtmfSender::poll_packet`]
/// once per packet interval, giving it the RTP timestamp of that interval; while it returns a
/// packet, that packet replaces the audio packet of the interval.
#[derive(Debug, Clone)]
pub struct DtmfSender {
    clock_rate: u32,
    interval: u16,
    digit_duration: u16,
    gap_intervals: u32,
    volume: u8,
    queue: VecDeque<u8>,
    active: Option<ActiveEvent>,
    gap_left: u32,
}

impl DtmfSender {
    /// `interval_ms` is the packet interval (20 ms in sipterm); each digit lasts `duration_ms`
    /// and consecutive digits are `gap_ms` apart.
    pub fn new(
        clock_rate: u32,
        interval_ms: u32,
        duration_ms: u32,
        gap_ms: u32,
    ) -> Result<Self, MediaError> {
        let to_units = |ms: u32| {
            u16::try_from(u64::from(clock_rate) * u64::from(ms) / 1000).map_err(|_| {
                MediaError::DtmfDuration {
                    duration_ms: ms,
                    clock_rate,
                }
            })
        };
        let interval = to_units(interval_ms)?.max(1);
        let digit_duration = to_units(duration_ms)?.max(interval);
        Ok(Self {
            clock_rate,
            interval,
            digit_duration,
            gap_intervals: gap_ms.div_ceil(interval_ms.max(1)),
            volume: DEFAULT_VOLUME,
            queue: VecDeque::new(),
            active: None,
            gap_left: 0,
        })
    }

    /// sipterm's defaults: 20 ms packets, 100 ms digits, 60 ms between digits.
    pub fn with_defaults(clock_rate: u32) -> Result<Self, MediaError> {
        Self::new(clock_rate, 20, 100, 60)
    }

    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Queues digits to send; all are validated before any is queued.
    pub fn queue_digits(&mut self, digits: &str) -> Result<(), MediaError> {
        let events = digits
            .chars()
            .map(|digit| digit_to_event(digit).ok_or(MediaError::DtmfDigit(digit)))
            .collect::<Result<Vec<_>, _>>()?;
        if self.queue.len() + events.len() > MAX_QUEUED_DIGITS {
            return Err(MediaError::DtmfQueueFull(MAX_QUEUED_DIGITS));
        }
        self.queue.extend(events);
        Ok(())
    }

    /// True while an event is being sent or digits wait.
    pub fn is_busy(&self) -> bool {
        self.active.is_some() || !self.queue.is_empty()
    }

    /// The packet for the interval that starts at RTP timestamp `now_timestamp`, or `None` when
    /// this interval carries audio (no digit, or the pause between digits).
    pub fn poll_packet(&mut self, now_timestamp: u32) -> Option<DtmfPacket> {
        if self.active.is_none() {
            if self.gap_left > 0 {
                self.gap_left -= 1;
                return None;
            }
            let event = self.queue.pop_front()?;
            self.active = Some(ActiveEvent {
                event,
                start_timestamp: now_timestamp,
                total_duration: self.digit_duration,
                sent_duration: 0,
                end_copies_sent: 0,
            });
        }
        let active = self.active.as_mut()?;
        let marker = active.sent_duration == 0;
        active.sent_duration = active
            .sent_duration
            .saturating_add(self.interval)
            .min(active.total_duration);
        let end = active.sent_duration >= active.total_duration;
        if end {
            active.end_copies_sent += 1;
        }
        let packet = DtmfPacket {
            marker,
            timestamp: active.start_timestamp,
            event: TelephoneEvent {
                event: active.event,
                end,
                volume: self.volume,
                duration: active.sent_duration,
            },
        };
        if active.end_copies_sent >= END_PACKET_COPIES {
            self.active = None;
            self.gap_left = self.gap_intervals;
        }
        Some(packet)
    }
}

/// A digit the receiver detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedDigit {
    pub digit: char,
    /// RTP timestamp of the event's start.
    pub timestamp: u32,
}

/// How many recent events the receiver remembers to drop retransmissions and reordered copies.
const REMEMBERED_EVENTS: usize = 8;

/// Reports each received DTMF event once, however many packets (updates, end retransmissions)
/// carry it. Events are told apart by their RTP timestamp (RFC 4733 §2.5.2.1).
#[derive(Debug, Clone, Default)]
pub struct DtmfReceiver {
    recent: VecDeque<(u32, u8)>,
}

impl DtmfReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles the payload of one telephone-event packet with RTP timestamp `timestamp`; returns
    /// the digit the first time an event is seen. Non-DTMF events (e.g. flash, 16) are ignored.
    pub fn handle_packet(
        &mut self,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<Option<ReceivedDigit>, MediaError> {
        let event = TelephoneEvent::parse(payload)?;
        let Some(digit) = event_to_digit(event.event) else {
            return Ok(None);
        };
        let key = (timestamp, event.event);
        if self.recent.contains(&key) {
            return Ok(None);
        }
        if self.recent.len() == REMEMBERED_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(key);
        Ok(Some(ReceivedDigit { digit, timestamp }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_codes_follow_rfc_4733_table() {
        let digits = "0123456789*#ABCD";
        for (code, digit) in digits.chars().enumerate() {
            assert_eq!(digit_to_event(digit), Some(code as u8), "{digit}");
            assert_eq!(event_to_digit(code as u8), Some(digit));
        }
        assert_eq!(digit_to_event('a'), Some(12));
        assert_eq!(digit_to_event('E'), None);
        assert_eq!(digit_to_event('٣'), None); // a non-ASCII digit
        assert_eq!(event_to_digit(16), None);
    }

    #[test]
    fn payload_vector_round_trips() {
        // Event 5, end bit, volume 10, duration 1600 (0x0640).
        let bytes = [0x05, 0x8a, 0x06, 0x40];
        let event = TelephoneEvent::parse(&bytes).unwrap();
        assert_eq!(
            event,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 1600
            }
        );
        assert_eq!(event.to_bytes(), bytes);
        let mut written = Vec::new();
        event.write(&mut written);
        assert_eq!(written, bytes);
        // The reserved bit is ignored on receipt.
        assert_eq!(
            TelephoneEvent::parse(&[0x05, 0xca, 0x06, 0x40]).unwrap(),
            event
        );
        assert!(matches!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(MediaError::DtmfPayloadTruncated(3))
        ));
    }

    /// The RFC 4733 example shape: a 200 ms digit at 8000 Hz, updates every 50 ms: durations
    /// 400, 800, 1200, then 1600 with the end bit, three times; one timestamp; marker first.
    #[test]
    fn sender_produces_the_rfc_4733_sequence() {
        let mut sender = DtmfSender::new(8000, 50, 200, 0).unwrap();
        sender.queue_digits("9").unwrap();
        let mut packets = Vec::new();
        let mut timestamp = 8000u32;
        while let Some(packet) = sender.poll_packet(timestamp) {
            packets.push(packet);
            timestamp += 400;
        }
        let summary: Vec<_> = packets
            .iter()
            .map(|p| {
                (
                    p.marker,
                    p.timestamp,
                    p.event.event,
                    p.event.end,
                    p.event.duration,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (true, 8000, 9, false, 400),
                (false, 8000, 9, false, 800),
                (false, 8000, 9, false, 1200),
                (false, 8000, 9, true, 1600),
                (false, 8000, 9, true, 1600),
                (false, 8000, 9, true, 1600),
            ]
        );
        assert!(!sender.is_busy());
    }

    #[test]
    fn consecutive_digits_get_distinct_timestamps_and_a_gap() {
        // 48 kHz clock (telephone-event/48000 beside Opus), 20 ms packets, 40 ms digits, 40 ms gap.
        let mut sender = DtmfSender::new(48_000, 20, 40, 40).unwrap();
        sender.queue_digits("1#").unwrap();
        let mut ticks = Vec::new();
        for tick in 0..12u32 {
            ticks.push(sender.poll_packet(tick * 960));
        }
        let starts: Vec<_> = ticks
            .iter()
            .enumerate()
            .filter_map(|(tick, p)| {
                p.filter(|p| p.marker)
                    .map(|p| (tick, p.timestamp, p.event.event))
            })
            .collect();
        // Digit 1: ticks 0-3 (2 updates... the second already final, plus 2 copies), gap 4-5.
        assert_eq!(starts, vec![(0, 0, 1), (6, 5760, 11)]);
        assert!(ticks.get(4).unwrap().is_none() && ticks.get(5).unwrap().is_none());
        assert_eq!(ticks.iter().filter(|p| p.is_some()).count(), 8);
        assert_eq!(ticks.get(1).unwrap().unwrap().event.duration, 1920);
        assert!(ticks.get(1).unwrap().unwrap().event.end);
    }

    #[test]
    fn invalid_digits_queue_nothing() {
        let mut sender = DtmfSender::with_defaults(8000).unwrap();
        assert!(matches!(
            sender.queue_digits("12x"),
            Err(MediaError::DtmfDigit('x'))
        ));
        assert!(!sender.is_busy());
        assert!(
            DtmfSender::new(48_000, 20, 2000, 0).is_err(),
            "96000 units overflow 16 bits"
        );
        assert!(sender.queue_digits(&"1".repeat(65)).is_err());
    }

    #[test]
    fn receiver_reports_each_digit_once() {
        let mut sender = DtmfSender::new(8000, 20, 100, 40).unwrap();
        sender.queue_digits("55").unwrap();
        let mut receiver = DtmfReceiver::new();
        let mut reported = Vec::new();
        for tick in 0..40u32 {
            if let Some(packet) = sender.poll_packet(tick * 160) {
                let payload = packet.event.to_bytes();
                // Deliver every packet twice, as a duplicating network would.
                for _ in 0..2 {
                    if let Some(digit) = receiver.handle_packet(packet.timestamp, &payload).unwrap()
                    {
                        reported.push(digit);
                    }
                }
            }
        }
        assert_eq!(
            reported,
            vec![
                ReceivedDigit {
                    digit: '5',
                    timestamp: 0
                },
                ReceivedDigit {
                    digit: '5',
                    timestamp: 160 * 9
                },
            ]
        );
    }

    #[test]
    fn receiver_reports_a_digit_whose_only_surviving_packet_is_an_end_packet() {
        let mut receiver = DtmfReceiver::new();
        let end = TelephoneEvent {
            event: 14,
            end: true,
            volume: 10,
            duration: 800,
        };
        let first = receiver.handle_packet(4000, &end.to_bytes()).unwrap();
        assert_eq!(first.map(|d| d.digit), Some('C'));
        assert_eq!(receiver.handle_packet(4000, &end.to_bytes()).unwrap(), None);
        let flash = TelephoneEvent {
            event: 16,
            end: false,
            volume: 10,
            duration: 160,
        };
        assert_eq!(
            receiver.handle_packet(9000, &flash.to_bytes()).unwrap(),
            None
        );
        assert!(receiver.handle_packet(9000, &[16]).is_err());
    }
}
