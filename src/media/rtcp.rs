//! RTCP (RFC 3550 §6): compound packets (SR, RR, SDES CNAME, BYE) parsed and built, and an
//! [`RtcpSession`] that schedules our reports and reads the peer's.
//!
//! Sans-IO like the rest of `media`: time comes in as a [`Duration`] since the call started (and,
//! for the wallclock in sender reports, an NTP origin the caller sets once). Parsing treats the
//! datagram as hostile: every length is checked against the bytes present, counts are bounded,
//! and nothing panics.

use std::collections::VecDeque;
use std::time::Duration;

use super::session::{ReceiveStats, SendStats};

/// Packet types (RFC 3550 §12.1).
pub const PT_SENDER_REPORT: u8 = 200;
pub const PT_RECEIVER_REPORT: u8 = 201;
pub const PT_SOURCE_DESCRIPTION: u8 = 202;
pub const PT_GOODBYE: u8 = 203;

/// SDES item type of the canonical name (RFC 3550 §6.5.1).
const SDES_CNAME: u8 = 1;

/// The 5-bit count field of the header limits report blocks, chunks and BYE sources.
pub const MAX_COUNT: usize = 31;
/// Text items carry an 8-bit length.
pub const MAX_TEXT_LEN: usize = 255;
/// More packets than this in one datagram is not a real peer; a 1500-byte datagram of minimal
/// 4-byte packets would otherwise make us build hundreds of entries.
pub const MAX_PACKETS_PER_COMPOUND: usize = 64;

/// RFC 3550 §6.2 minimum report interval; the first report waits half of it.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Sender reports we remember to match the peer's LSR against (one per ~5 s: over a minute).
const SENT_REPORTS_REMEMBERED: usize = 16;

const REPORT_BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;
const CUMULATIVE_LOST_MAX: i64 = 0x7f_ffff;
const CUMULATIVE_LOST_MIN: i64 = -0x80_0000;

/// Seconds from the NTP era origin (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// Why an RTCP datagram was rejected or could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    #[error("empty RTCP datagram")]
    Empty,
    #[error("RTCP packet needs {needed} bytes but only {available} are left")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported RTCP version {0} (only 2 is defined)")]
    Version(u8),
    #[error("RTCP padding of {padding} bytes does not fit in a {length}-byte packet")]
    Padding { padding: usize, length: usize },
    #[error("only the last packet of a compound may be padded")]
    PaddingNotLast,
    #[error("more than {MAX_PACKETS_PER_COMPOUND} packets in one RTCP datagram")]
    TooManyPackets,
    #[error("{what}: {count} entries, but one packet holds at most {MAX_COUNT}")]
    TooMany { what: &'static str, count: usize },
    #[error("{what} of {len} bytes is longer than the {MAX_TEXT_LEN} an item holds")]
    TextTooLong { what: &'static str, len: usize },
}

/// A 64-bit NTP timestamp: seconds since 1900 in the high word, binary fraction in the low.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// `elapsed` on an NTP scale whose origin is zero (seconds wrap at 2^32, as NTP's do).
    pub fn from_duration(elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs() & 0xffff_ffff;
        let fraction = (u64::from(elapsed.subsec_nanos()) << 32) / 1_000_000_000;
        Self((seconds << 32) | fraction)
    }

    /// Wallclock time given as time since the Unix epoch (the driver reads `SystemTime`).
    pub fn from_unix(since_epoch: Duration) -> Self {
        Self::from_duration(since_epoch + Duration::from_secs(NTP_UNIX_OFFSET_SECS))
    }

    /// The middle 32 bits, which report blocks echo as LSR (RFC 3550 §6.4.1).
    pub const fn middle_32(self) -> u32 {
        (self.0 >> 16) as u32
    }

    fn wrapping_add(self, elapsed: Duration) -> Self {
        Self(self.0.wrapping_add(Self::from_duration(elapsed).0))
    }
}

/// A duration in the 16.16 fixed-point seconds of LSR/DLSR, saturating at the maximum.
pub fn duration_to_compact(duration: Duration) -> u32 {
    let units = duration.as_nanos().saturating_mul(65_536) / 1_000_000_000;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// 16.16 fixed-point seconds as a duration.
pub fn compact_to_duration(compact: u32) -> Duration {
    Duration::from_nanos(u64::from(compact) * 1_000_000_000 / 65_536)
}

/// RFC 3550 §6.4.1 round trip: `arrival - LSR - DLSR`, all in 16.16 seconds on the
/// middle 32 bits of our NTP clock. `None` when the peer has no SR of ours yet (LSR 0) or the
/// numbers put the report before our SR (a bogus or skewed report).
pub fn round_trip_time(arrival: u32, last_sr: u32, delay_since_last_sr: u32) -> Option<Duration> {
    if last_sr == 0 {
        return None;
    }
    let since_our_report = arrival.wrapping_sub(last_sr);
    // More than half the 16-bit seconds range means the arrival precedes the report.
    if since_our_report > u32::MAX / 2 {
        return None;
    }
    since_our_report
        .checked_sub(delay_since_last_sr)
        .map(compact_to_duration)
}

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block is about.
    pub ssrc: u32,
    /// Loss since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative loss, a 24-bit signed value on the wire (duplicates can make it negative).
    pub cumulative_lost: i32,
    pub extended_highest_sequence: u32,
    /// Interarrival jitter in RTP clock units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR from that source; 0 if none.
    pub last_sr: u32,
    /// 16.16 seconds between that SR's arrival and this report; 0 if none.
    pub delay_since_last_sr: u32,
}

/// The sender information of an SR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: NtpTimestamp,
    /// The same instant on the RTP media clock.
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// One SDES chunk; only the CNAME item is kept (the others are skipped on parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: u32,
    pub cname: Option<String>,
}

/// One packet of a compound RTCP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    SourceDescription(Vec<SdesChunk>),
    Goodbye {
        sources: Vec<u32>,
        reason: Option<String>,
    },
    /// APP, XR, feedback and anything newer: recognised as RTCP, contents skipped.
    Other {
        packet_type: u8,
    },
}

/// Whether a datagram on a muxed RTP/RTCP port is RTCP (RFC 5761 §4): the second byte is the
/// RTCP packet type, 192..=223, which no RTP payload type reaches with or without the marker
/// bit (payload types 64..=95 are barred when muxing). SR..APP are 200..=204; feedback (205,
/// 206) and XR (207) are in the range too.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    matches!(datagram.get(1), Some(192..=223))
}

/// Parses a compound RTCP datagram into its packets.
pub fn parse_compound(datagram: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    if datagram.is_empty() {
        return Err(RtcpError::Empty);
    }
    let mut packets = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        if packets.len() == MAX_PACKETS_PER_COMPOUND {
            return Err(RtcpError::TooManyPackets);
        }
        let (packet, padded, length) = parse_one(rest)?;
        rest = rest.get(length..).unwrap_or_default();
        if padded && !rest.is_empty() {
            return Err(RtcpError::PaddingNotLast);
        }
        packets.push(packet);
    }
    Ok(packets)
}

/// Parses the packet at the start of `bytes`: (packet, padded, length in bytes).
fn parse_one(bytes: &[u8]) -> Result<(RtcpPacket, bool, usize), RtcpError> {
    let header = take(bytes, 0, 4)?;
    let (first, packet_type) = (header[0], header[1]);
    let version = first >> 6;
    if version != 2 {
        return Err(RtcpError::Version(version));
    }
    let padded = first & 0x20 != 0;
    let count = usize::from(first & 0x1f);
    let length = (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1) * 4;
    let packet = take(bytes, 0, length)?;
    let body_end = if padded {
        let padding = usize::from(packet[length - 1]);
        if padding == 0 || padding > length - 4 {
            return Err(RtcpError::Padding { padding, length });
        }
        length - padding
    } else {
        length
    };
    let body = &packet[4..body_end];
    let parsed = match packet_type {
        PT_SENDER_REPORT => {
            let ssrc = read_u32(body, 0)?;
            let info = SenderInfo {
                ntp: NtpTimestamp(
                    u64::from(read_u32(body, 4)?) << 32 | u64::from(read_u32(body, 8)?),
                ),
                rtp_timestamp: read_u32(body, 12)?,
                packet_count: read_u32(body, 16)?,
                octet_count: read_u32(body, 20)?,
            };
            let reports = parse_report_blocks(body, 4 + SENDER_INFO_LEN, count)?;
            RtcpPacket::SenderReport {
                ssrc,
                info,
                reports,
            }
        }
        PT_RECEIVER_REPORT => RtcpPacket::ReceiverReport {
            ssrc: read_u32(body, 0)?,
            reports: parse_report_blocks(body, 4, count)?,
        },
        PT_SOURCE_DESCRIPTION => RtcpPacket::SourceDescription(parse_sdes(body, count)?),
        PT_GOODBYE => parse_bye(body, count)?,
        other => RtcpPacket::Other { packet_type: other },
    };
    Ok((parsed, padded, length))
}

fn parse_report_blocks(
    body: &[u8],
    start: usize,
    count: usize,
) -> Result<Vec<ReportBlock>, RtcpError> {
    // Checked up front, so a short packet fails before anything is allocated.
    take(body, start, count * REPORT_BLOCK_LEN)?;
    (0..count)
        .map(|index| {
            let at = start + index * REPORT_BLOCK_LEN;
            let loss = read_u32(body, at + 4)?;
            Ok(ReportBlock {
                ssrc: read_u32(body, at)?,
                fraction_lost: (loss >> 24) as u8,
                cumulative_lost: sign_extend_24(loss & 0x00ff_ffff),
                extended_highest_sequence: read_u32(body, at + 8)?,
                jitter: read_u32(body, at + 12)?,
                last_sr: read_u32(body, at + 16)?,
                delay_since_last_sr: read_u32(body, at + 20)?,
            })
        })
        .collect()
}

fn parse_sdes(body: &[u8], count: usize) -> Result<Vec<SdesChunk>, RtcpError> {
    let mut chunks = Vec::with_capacity(count);
    let mut at = 0;
    for _ in 0..count {
        let ssrc = read_u32(body, at)?;
        at += 4;
        let mut cname = None;
        loop {
            let item_type = take(body, at, 1)?[0];
            if item_type == 0 {
                // The list ends with a null octet and is padded to the next 32-bit boundary.
                at = (at + 4) & !3;
                break;
            }
            let len = usize::from(take(body, at + 1, 1)?[0]);
            let text = take(body, at + 2, len)?;
            if item_type == SDES_CNAME {
                cname = Some(String::from_utf8_lossy(text).into_owned());
            }
            at += 2 + len;
        }
        chunks.push(SdesChunk { ssrc, cname });
    }
    Ok(chunks)
}

fn parse_bye(body: &[u8], count: usize) -> Result<RtcpPacket, RtcpError> {
    let sources = (0..count)
        .map(|index| read_u32(body, index * 4))
        .collect::<Result<Vec<_>, _>>()?;
    let after = count * 4;
    let reason = match body.get(after) {
        Some(&len) if len > 0 => {
            let text = take(body, after + 1, usize::from(len))?;
            Some(String::from_utf8_lossy(text).into_owned())
        }
        _ => None,
    };
    Ok(RtcpPacket::Goodbye { sources, reason })
}

/// `bytes[start..start + len]`, or the error saying how much was missing.
fn take(bytes: &[u8], start: usize, len: usize) -> Result<&[u8], RtcpError> {
    let end = start.saturating_add(len);
    bytes.get(start..end).ok_or(RtcpError::Truncated {
        needed: end,
        available: bytes.len(),
    })
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, RtcpError> {
    let word = take(bytes, at, 4)?;
    Ok(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
}

fn sign_extend_24(value: u32) -> i32 {
    ((value << 8) as i32) >> 8
}

/// Serialises packets into one compound datagram, in the order given. RFC 3550 §6.1 wants an
/// SR or RR first and an SDES with a CNAME in every compound; [`RtcpSession`] builds it so.
pub fn build_compound(packets: &[RtcpPacket]) -> Result<Vec<u8>, RtcpError> {
    let mut out = Vec::new();
    for packet in packets {
        write_packet(packet, &mut out)?;
    }
    Ok(out)
}

fn write_packet(packet: &RtcpPacket, out: &mut Vec<u8>) -> Result<(), RtcpError> {
    let start = out.len();
    match packet {
        RtcpPacket::SenderReport {
            ssrc,
            info,
            reports,
        } => {
            write_header(
                out,
                check_count("report blocks", reports.len())?,
                PT_SENDER_REPORT,
            );
            out.extend_from_slice(&ssrc.to_be_bytes());
            out.extend_from_slice(&info.ntp.0.to_be_bytes());
            out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
            out.extend_from_slice(&info.packet_count.to_be_bytes());
            out.extend_from_slice(&info.octet_count.to_be_bytes());
            reports
                .iter()
                .for_each(|block| write_report_block(block, out));
        }
        RtcpPacket::ReceiverReport { ssrc, reports } => {
            write_header(
                out,
                check_count("report blocks", reports.len())?,
                PT_RECEIVER_REPORT,
            );
            out.extend_from_slice(&ssrc.to_be_bytes());
            reports
                .iter()
                .for_each(|block| write_report_block(block, out));
        }
        RtcpPacket::SourceDescription(chunks) => {
            write_header(
                out,
                check_count("SDES chunks", chunks.len())?,
                PT_SOURCE_DESCRIPTION,
            );
            for chunk in chunks {
                out.extend_from_slice(&chunk.ssrc.to_be_bytes());
                if let Some(cname) = &chunk.cname {
                    let text = check_text("CNAME", cname)?;
                    out.push(SDES_CNAME);
                    out.push(text.len() as u8);
                    out.extend_from_slice(text);
                }
                // The terminating null item, then zeros up to the next 32-bit boundary.
                out.push(0);
                pad_to_word(out);
            }
        }
        RtcpPacket::Goodbye { sources, reason } => {
            write_header(out, check_count("BYE sources", sources.len())?, PT_GOODBYE);
            for source in sources {
                out.extend_from_slice(&source.to_be_bytes());
            }
            if let Some(reason) = reason.as_deref().filter(|reason| !reason.is_empty()) {
                let text = check_text("BYE reason", reason)?;
                out.push(text.len() as u8);
                out.extend_from_slice(text);
                pad_to_word(out);
            }
        }
        RtcpPacket::Other { packet_type } => write_header(out, 0, *packet_type),
    }
    // Every body above is a whole number of words and at most 4 + 28 + 31 * 24 bytes, or
    // 31 chunks of 264 bytes: far below the 16-bit length field's limit.
    let words = (out.len() - start) / 4 - 1;
    let length = (words as u16).to_be_bytes();
    out[start + 2] = length[0];
    out[start + 3] = length[1];
    Ok(())
}

fn write_header(out: &mut Vec<u8>, count: u8, packet_type: u8) {
    out.extend_from_slice(&[0x80 | count, packet_type, 0, 0]);
}

fn write_report_block(block: &ReportBlock, out: &mut Vec<u8>) {
    let cumulative =
        i64::from(block.cumulative_lost).clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX);
    let loss = u32::from(block.fraction_lost) << 24 | (cumulative as u32 & 0x00ff_ffff);
    out.extend_from_slice(&block.ssrc.to_be_bytes());
    out.extend_from_slice(&loss.to_be_bytes());
    out.extend_from_slice(&block.extended_highest_sequence.to_be_bytes());
    out.extend_from_slice(&block.jitter.to_be_bytes());
    out.extend_from_slice(&block.last_sr.to_be_bytes());
    out.extend_from_slice(&block.delay_since_last_sr.to_be_bytes());
}

fn pad_to_word(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn check_count(what: &'static str, count: usize) -> Result<u8, RtcpError> {
    if count > MAX_COUNT {
        return Err(RtcpError::TooMany { what, count });
    }
    Ok(count as u8)
}

fn check_text<'a>(what: &'static str, text: &'a str) -> Result<&'a [u8], RtcpError> {
    if text.len() > MAX_TEXT_LEN {
        return Err(RtcpError::TextTooLong {
            what,
            len: text.len(),
        });
    }
    Ok(text.as_bytes())
}

/// Cuts `text` to at most [`MAX_TEXT_LEN`] bytes on a character boundary.
fn truncate_text(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// What the peer says about the stream we send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// Loss in the peer's last interval, in 1/256.
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    /// Interarrival jitter the peer measured, in our RTP clock units.
    pub jitter: u32,
    /// The same in milliseconds (at the clock rate given to [`RtcpSession::new`]).
    pub jitter_ms: f64,
    /// The latest round trip measured from LSR/DLSR; kept when a later report has no LSR.
    pub rtt: Option<Duration>,
    /// The highest sequence number of ours the peer got (extended with its wrap count): it
    /// stops moving when our packets stop reaching it.
    pub highest_sequence: u32,
}

impl RemoteReport {
    /// Loss in the peer's last interval, in percent.
    pub fn loss_percent(&self) -> f32 {
        f32::from(self.fraction_lost) * 100.0 / 256.0
    }
}

/// What a received RTCP datagram told us.
#[derive(Debug, Clone, PartialEq)]
pub enum RtcpEvent {
    /// The peer's sender report (its send counters and wallclock/RTP clock pairing).
    SenderReport {
        ssrc: u32,
        info: SenderInfo,
    },
    /// The peer reported on our stream; `report` is also what [`RtcpSession::remote_stats`]
    /// now returns.
    ReportAboutUs {
        from: u32,
        report: RemoteReport,
    },
    Cname {
        ssrc: u32,
        cname: String,
    },
    Goodbye {
        sources: Vec<u32>,
        reason: Option<String>,
    },
}

/// The peer's last SR, for the LSR/DLSR of our next report block.
#[derive(Debug, Clone, Copy)]
struct ReceivedSenderReport {
    ssrc: u32,
    middle_32: u32,
    arrival: Duration,
}

/// RTCP for one call: when to report, what to report, and what the peer reported.
#[derive(Debug, Clone)]
pub struct RtcpSession {
    ssrc: u32,
    cname: String,
    clock_rate: u32,
    random_state: u64,
    /// NTP time at call start (zero unless the caller gives the wallclock).
    ntp_origin: NtpTimestamp,
    next_report_at: Duration,
    packets_sent_at_last_report: u64,
    expected_prior: u64,
    received_prior: u64,
    last_sender_report: Option<ReceivedSenderReport>,
    /// (middle 32 bits of the NTP timestamp, when) of our recent SRs, oldest first.
    sent_reports: VecDeque<(u32, Duration)>,
    remote: Option<RemoteReport>,
    said_goodbye: bool,
    /// SR and RR packets from the peer, and those of them with a block about our stream: a
    /// peer that gets none of our packets reports on no stream of ours (the diagnosis reads
    /// one-way audio from this).
    reports_received: u64,
    reports_about_us: u64,
}

impl RtcpSession {
    /// `ssrc` is our RTP sender's; `cname` is cut to 255 bytes; `clock_rate` is the RTP clock
    /// of the negotiated codec; `seed` drives the report interval randomisation.
    pub fn new(ssrc: u32, cname: &str, clock_rate: u32, seed: u64) -> Self {
        let mut session = Self {
            ssrc,
            cname: truncate_text(cname),
            clock_rate: clock_rate.max(1),
            random_state: seed,
            ntp_origin: NtpTimestamp::default(),
            next_report_at: Duration::ZERO,
            packets_sent_at_last_report: 0,
            expected_prior: 0,
            received_prior: 0,
            last_sender_report: None,
            sent_reports: VecDeque::with_capacity(SENT_REPORTS_REMEMBERED),
            remote: None,
            said_goodbye: false,
            reports_received: 0,
            reports_about_us: 0,
        };
        // RFC 3550 §6.2: the first report goes after half the minimum interval.
        session.next_report_at = session.randomised(REPORT_INTERVAL / 2);
        session
    }

    /// Stamps sender reports with wallclock time: `ntp_at_call_start` is the NTP time when
    /// the call's `Duration` clock read zero. Without it SRs carry time since call start,
    /// which is enough for round-trip times but not for lip sync with other streams.
    pub fn with_wallclock(mut self, ntp_at_call_start: NtpTimestamp) -> Self {
        self.ntp_origin = ntp_at_call_start;
        self
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// When the next report is due, on the call's clock; arm a timer for it.
    pub fn poll_timeout(&self) -> Duration {
        self.next_report_at
    }

    /// The compound report due at `now`, if any: an SR (when we sent RTP since the last
    /// report) or an RR, with one report block about the peer's stream once it has sent, and
    /// our CNAME. `rtp_ts_now` is our RTP timestamp for `now` (the SR pairs it with the NTP
    /// time for the peer's lip sync).
    pub fn poll_report(
        &mut self,
        now: Duration,
        send: &SendStats,
        recv: &ReceiveStats,
        rtp_ts_now: u32,
    ) -> Option<Vec<u8>> {
        if self.said_goodbye || now < self.next_report_at {
            return None;
        }
        self.next_report_at = now + self.randomised(REPORT_INTERVAL);
        let reports: Vec<ReportBlock> = self.report_block(now, recv).into_iter().collect();
        let report = if send.packets > self.packets_sent_at_last_report {
            let ntp = self.ntp_origin.wrapping_add(now);
            if self.sent_reports.len() == SENT_REPORTS_REMEMBERED {
                self.sent_reports.pop_front();
            }
            self.sent_reports.push_back((ntp.middle_32(), now));
            RtcpPacket::SenderReport {
                ssrc: self.ssrc,
                info: SenderInfo {
                    ntp,
                    rtp_timestamp: rtp_ts_now,
                    // The counts wrap at 2^32 on the wire (RFC 3550 §6.4.1).
                    packet_count: send.packets as u32,
                    octet_count: send.payload_octets as u32,
                },
                reports,
            }
        } else {
            RtcpPacket::ReceiverReport {
                ssrc: self.ssrc,
                reports,
            }
        };
        self.packets_sent_at_last_report = send.packets;
        build_compound(&[report, self.sdes()]).ok()
    }

    /// Our BYE (RFC 3550 §6.6) in a compound with an empty RR and our CNAME; the session sends
    /// no reports after it. `reason` is cut to 255 bytes.
    pub fn bye(&mut self, reason: Option<&str>) -> Vec<u8> {
        self.said_goodbye = true;
        let packets = [
            RtcpPacket::ReceiverReport {
                ssrc: self.ssrc,
                reports: Vec::new(),
            },
            self.sdes(),
            RtcpPacket::Goodbye {
                sources: vec![self.ssrc],
                reason: reason.map(truncate_text),
            },
        ];
        // Counts and texts are within bounds by construction.
        build_compound(&packets).unwrap_or_default()
    }

    /// Reads the peer's compound RTCP datagram that arrived at `now`.
    pub fn handle_packet(
        &mut self,
        datagram: &[u8],
        now: Duration,
    ) -> Result<Vec<RtcpEvent>, RtcpError> {
        let packets = parse_compound(datagram)?;
        let mut events = Vec::new();
        for packet in packets {
            match packet {
                RtcpPacket::SenderReport {
                    ssrc,
                    info,
                    reports,
                } => {
                    self.last_sender_report = Some(ReceivedSenderReport {
                        ssrc,
                        middle_32: info.ntp.middle_32(),
                        arrival: now,
                    });
                    events.push(RtcpEvent::SenderReport { ssrc, info });
                    self.read_report_blocks(ssrc, &reports, now, &mut events);
                }
                RtcpPacket::ReceiverReport { ssrc, reports } => {
                    self.read_report_blocks(ssrc, &reports, now, &mut events);
                }
                RtcpPacket::SourceDescription(chunks) => {
                    events.extend(chunks.into_iter().filter_map(|chunk| {
                        chunk.cname.map(|cname| RtcpEvent::Cname {
                            ssrc: chunk.ssrc,
                            cname,
                        })
                    }));
                }
                RtcpPacket::Goodbye { sources, reason } => {
                    events.push(RtcpEvent::Goodbye { sources, reason });
                }
                RtcpPacket::Other { .. } => {}
            }
        }
        Ok(events)
    }

    /// The peer's latest report about our stream; `None` until one arrived.
    pub fn remote_stats(&self) -> Option<RemoteReport> {
        self.remote
    }

    /// How many SR/RR packets the peer sent, and how many of them reported on our stream.
    pub fn report_counts(&self) -> (u64, u64) {
        (self.reports_received, self.reports_about_us)
    }

    fn read_report_blocks(
        &mut self,
        from: u32,
        blocks: &[ReportBlock],
        now: Duration,
        events: &mut Vec<RtcpEvent>,
    ) {
        self.reports_received += 1;
        if blocks.iter().any(|block| block.ssrc == self.ssrc) {
            self.reports_about_us += 1;
        }
        for block in blocks.iter().filter(|block| block.ssrc == self.ssrc) {
            let measured = self.round_trip(block, now);
            let report = RemoteReport {
                fraction_lost: block.fraction_lost,
                cumulative_lost: block.cumulative_lost,
                jitter: block.jitter,
                jitter_ms: f64::from(block.jitter) * 1000.0 / f64::from(self.clock_rate),
                rtt: measured.or(self.remote.and_then(|previous| previous.rtt)),
                highest_sequence: block.extended_highest_sequence,
            };
            self.remote = Some(report);
            events.push(RtcpEvent::ReportAboutUs { from, report });
        }
    }

    /// Round trip from a block's LSR/DLSR, only when LSR names an SR we actually sent: a
    /// forged or corrupted LSR then yields nothing instead of a wild value.
    fn round_trip(&self, block: &ReportBlock, now: Duration) -> Option<Duration> {
        let &(_, sent_at) = self
            .sent_reports
            .iter()
            .rev()
            .find(|(middle_32, _)| *middle_32 == block.last_sr && block.last_sr != 0)?;
        now.checked_sub(sent_at)?
            .checked_sub(compact_to_duration(block.delay_since_last_sr))
    }

    /// RFC 3550 A.3: loss over the interval since our last report and cumulative loss.
    fn report_block(&mut self, now: Duration, recv: &ReceiveStats) -> Option<ReportBlock> {
        let ssrc = recv.ssrc?;
        let expected_interval = recv.expected.saturating_sub(self.expected_prior);
        let received_interval = recv.received.saturating_sub(self.received_prior);
        self.expected_prior = recv.expected;
        self.received_prior = recv.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval == 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sender_report {
            Some(report) if report.ssrc == ssrc => (
                report.middle_32,
                duration_to_compact(now.saturating_sub(report.arrival)),
            ),
            _ => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: recv.lost.clamp(CUMULATIVE_LOST_MIN, CUMULATIVE_LOST_MAX) as i32,
            extended_highest_sequence: recv.extended_highest_sequence,
            // f64 to u32 saturates (NaN becomes 0).
            jitter: recv.jitter as u32,
            last_sr,
            delay_since_last_sr,
        })
    }

    fn sdes(&self) -> RtcpPacket {
        RtcpPacket::SourceDescription(vec![SdesChunk {
            ssrc: self.ssrc,
            cname: Some(self.cname.clone()),
        }])
    }

    /// `base` scaled by a factor uniform in [0.5, 1.5) (RFC 3550 §6.3.1), so reports from many
    /// endpoints do not synchronise.
    fn randomised(&mut self, base: Duration) -> Duration {
        let unit = (next_random(&mut self.random_state) >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.5 + unit)
    }
}

/// splitmix64 step: a small deterministic generator, so a seed reproduces the schedule.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut mixed = *state;
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    mixed ^ (mixed >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SR from 0x11223344 with the NTP time of RFC 3550's §6.4.1 example (0xb44db705.2 =
    /// 3024992005.125 s), RTP time 0xa00, 10 packets, 1600 octets, and one block about
    /// 0x55667788: 25/256 lost, 10 cumulative, highest 0x1_0064, jitter 32, LSR 0xb705:2000,
    /// DLSR 0x0005:4000. 28 + 24 = 52 bytes = 13 words, so the length field says 12.
    const SENDER_REPORT: [u8; 52] = [
        0x81, 0xc8, 0x00, 0x0c, // V=2 P=0 RC=1, PT=200, length 12
        0x11, 0x22, 0x33, 0x44, // sender SSRC
        0xb4, 0x4d, 0xb7, 0x05, // NTP seconds
        0x20, 0x00, 0x00, 0x00, // NTP fraction (.125)
        0x00, 0x00, 0x0a, 0x00, // RTP timestamp
        0x00, 0x00, 0x00, 0x0a, // packet count 10
        0x00, 0x00, 0x06, 0x40, // octet count 1600
        0x55, 0x66, 0x77, 0x88, // block: source
        0x19, 0x00, 0x00, 0x0a, // fraction 25, cumulative 10
        0x00, 0x01, 0x00, 0x64, // one wrap, highest sequence 100
        0x00, 0x00, 0x00, 0x20, // jitter 32
        0xb7, 0x05, 0x20, 0x00, // LSR
        0x00, 0x05, 0x40, 0x00, // DLSR 5.25 s
    ];

    fn sender_report() -> RtcpPacket {
        RtcpPacket::SenderReport {
            ssrc: 0x1122_3344,
            info: SenderInfo {
                ntp: NtpTimestamp(0xb44d_b705_2000_0000),
                rtp_timestamp: 0xa00,
                packet_count: 10,
                octet_count: 1600,
            },
            reports: vec![ReportBlock {
                ssrc: 0x5566_7788,
                fraction_lost: 25,
                cumulative_lost: 10,
                extended_highest_sequence: 0x1_0064,
                jitter: 32,
                last_sr: 0xb705_2000,
                delay_since_last_sr: 0x0005_4000,
            }],
        }
    }

    #[test]
    fn sender_report_matches_hand_built_bytes() {
        assert_eq!(build_compound(&[sender_report()]).unwrap(), SENDER_REPORT);
        assert_eq!(
            parse_compound(&SENDER_REPORT).unwrap(),
            vec![sender_report()]
        );
    }

    #[test]
    fn receiver_report_carries_negative_cumulative_loss_as_24_bit() {
        // 8 + 24 = 32 bytes = 8 words (length 7); -1 in 24-bit two's complement is 0xffffff.
        let bytes = [
            0x81, 0xc9, 0x00, 0x07, 0x01, 0x02, 0x03, 0x04, // RR from 0x01020304
            0x0a, 0x0b, 0x0c, 0x0d, 0x00, 0xff, 0xff, 0xff, // about 0x0a0b0c0d, lost -1
            0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, // highest 0xffff, jitter 0
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // no SR seen yet
        ];
        let packet = RtcpPacket::ReceiverReport {
            ssrc: 0x0102_0304,
            reports: vec![ReportBlock {
                ssrc: 0x0a0b_0c0d,
                cumulative_lost: -1,
                extended_highest_sequence: 0xffff,
                ..ReportBlock::default()
            }],
        };
        assert_eq!(
            build_compound(std::slice::from_ref(&packet)).unwrap(),
            bytes
        );
        assert_eq!(parse_compound(&bytes).unwrap(), vec![packet]);
    }

    #[test]
    fn cumulative_loss_beyond_24_bits_is_clamped() {
        let block = |cumulative_lost| RtcpPacket::ReceiverReport {
            ssrc: 1,
            reports: vec![ReportBlock {
                ssrc: 2,
                cumulative_lost,
                ..ReportBlock::default()
            }],
        };
        for (sent, read) in [(10_000_000, 0x7f_ffff), (-10_000_000, -0x80_0000)] {
            let bytes = build_compound(&[block(sent)]).unwrap();
            assert_eq!(parse_compound(&bytes).unwrap(), vec![block(read)]);
        }
    }

    #[test]
    fn sdes_and_bye_match_hand_built_bytes() {
        // SDES: SSRC, CNAME item (type 1, length 4, "ab@c"), null item, one pad byte: 12 bytes
        // of chunk + 4 of header = 4 words (length 3). BYE: SSRC, reason "bye" with its length
        // octet, exactly one word: 12 bytes (length 2).
        let bytes = [
            0x81, 0xca, 0x00, 0x03, 0x11, 0x22, 0x33, 0x44, 0x01, 0x04, b'a', b'b', b'@', b'c',
            0x00, 0x00, // SDES
            0x81, 0xcb, 0x00, 0x02, 0x11, 0x22, 0x33, 0x44, 0x03, b'b', b'y', b'e', // BYE
        ];
        let packets = vec![
            RtcpPacket::SourceDescription(vec![SdesChunk {
                ssrc: 0x1122_3344,
                cname: Some("ab@c".into()),
            }]),
            RtcpPacket::Goodbye {
                sources: vec![0x1122_3344],
                reason: Some("bye".into()),
            },
        ];
        assert_eq!(build_compound(&packets).unwrap(), bytes);
        assert_eq!(parse_compound(&bytes).unwrap(), packets);
    }

    #[test]
    fn sdes_items_other_than_cname_are_skipped() {
        // Chunk: SSRC, NAME item (type 2, "Al"), CNAME "x", null, pad: 4+4+3+1 = 12 bytes.
        let bytes = [
            0x81, 0xca, 0x00, 0x03, 0, 0, 0, 7, 0x02, 0x02, b'A', b'l', 0x01, 0x01, b'x', 0x00,
        ];
        assert_eq!(
            parse_compound(&bytes).unwrap(),
            vec![RtcpPacket::SourceDescription(vec![SdesChunk {
                ssrc: 7,
                cname: Some("x".into())
            }])]
        );
    }

    #[test]
    fn padded_last_packet_is_accepted_padded_middle_packet_is_not() {
        // RR with no blocks and 4 bytes of padding (last octet = 4): 12 bytes, length 2.
        let padded = [0xa0, 0xc9, 0x00, 0x02, 0, 0, 0, 9, 0, 0, 0, 4];
        assert_eq!(
            parse_compound(&padded).unwrap(),
            vec![RtcpPacket::ReceiverReport {
                ssrc: 9,
                reports: vec![]
            }]
        );
        let mut padded_first = padded.to_vec();
        padded_first.extend_from_slice(&[0x80, 0xc9, 0x00, 0x01, 0, 0, 0, 9]);
        assert_eq!(
            parse_compound(&padded_first),
            Err(RtcpError::PaddingNotLast)
        );
        let mut padding_too_long = padded;
        padding_too_long[11] = 12;
        assert!(matches!(
            parse_compound(&padding_too_long),
            Err(RtcpError::Padding { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_rejected() {
        assert_eq!(parse_compound(&[]), Err(RtcpError::Empty));
        assert_eq!(
            parse_compound(&[0x40, 0xc9, 0x00, 0x01, 0, 0, 0, 1]),
            Err(RtcpError::Version(1))
        );
        // Length says 3 words after the header, only 1 is there.
        assert!(matches!(
            parse_compound(&[0x80, 0xc9, 0x00, 0x03, 0, 0, 0, 1]),
            Err(RtcpError::Truncated { .. })
        ));
        // RC says one block but the packet ends after the SSRC.
        assert!(matches!(
            parse_compound(&[0x81, 0xc9, 0x00, 0x01, 0, 0, 0, 1]),
            Err(RtcpError::Truncated { .. })
        ));
        let many = [0x80, 0xcc, 0x00, 0x00].repeat(MAX_PACKETS_PER_COMPOUND + 1);
        assert_eq!(parse_compound(&many), Err(RtcpError::TooManyPackets));
    }

    #[test]
    fn building_refuses_what_the_wire_cannot_hold() {
        let too_many_blocks = RtcpPacket::ReceiverReport {
            ssrc: 1,
            reports: vec![ReportBlock::default(); MAX_COUNT + 1],
        };
        assert!(matches!(
            build_compound(&[too_many_blocks]),
            Err(RtcpError::TooMany { count: 32, .. })
        ));
        let long_reason = RtcpPacket::Goodbye {
            sources: vec![1],
            reason: Some("x".repeat(256)),
        };
        assert!(matches!(
            build_compound(&[long_reason]),
            Err(RtcpError::TextTooLong { len: 256, .. })
        ));
    }

    #[test]
    fn round_trip_time_follows_rfc_3550_example() {
        // RFC 3550 §6.4.1: A 0xb710:8000 - DLSR 0x0005:4000 - LSR 0xb705:2000 = 0x0006:2000.
        assert_eq!(
            round_trip_time(0xb710_8000, 0xb705_2000, 0x0005_4000),
            Some(Duration::from_millis(6125))
        );
        assert_eq!(round_trip_time(0xb710_8000, 0, 0x0005_4000), None);
        // A report claiming more hold time than has passed is bogus.
        assert_eq!(round_trip_time(0xb706_0000, 0xb705_2000, 0x0005_4000), None);
        // Across the wrap of the 16-bit seconds.
        assert_eq!(
            round_trip_time(0x0000_8000, 0xffff_8000, 0x0000_4000),
            Some(Duration::from_millis(750))
        );
    }

    #[test]
    fn ntp_and_compact_times_convert() {
        let ntp = NtpTimestamp::from_duration(Duration::from_millis(1500));
        assert_eq!(ntp, NtpTimestamp(0x1_8000_0000));
        assert_eq!(ntp.middle_32(), 0x0001_8000);
        // 2024-01-01T00:00:00Z is Unix 1704067200, NTP 3913056000.
        assert_eq!(
            NtpTimestamp::from_unix(Duration::from_secs(1_704_067_200)).0 >> 32,
            3_913_056_000
        );
        assert_eq!(
            duration_to_compact(Duration::from_millis(5250)),
            0x0005_4000
        );
        assert_eq!(
            compact_to_duration(0x0005_4000),
            Duration::from_millis(5250)
        );
        assert_eq!(duration_to_compact(Duration::from_secs(100_000)), u32::MAX);
    }

    /// A peer that gets none of our packets reports on no stream of ours: counted apart, so
    /// the diagnosis can say it hears nothing.
    #[test]
    fn reports_without_a_block_about_us_are_counted_apart() {
        let mut ours = RtcpSession::new(0x1111, "us@h", 8000, 1);
        let empty = build_compound(&[RtcpPacket::ReceiverReport {
            ssrc: 0x2222,
            reports: Vec::new(),
        }])
        .expect("builds");
        let about_us = build_compound(&[RtcpPacket::ReceiverReport {
            ssrc: 0x2222,
            reports: vec![ReportBlock {
                ssrc: 0x1111,
                extended_highest_sequence: 812,
                ..ReportBlock::default()
            }],
        }])
        .expect("builds");
        assert_eq!(ours.report_counts(), (0, 0));
        ours.handle_packet(&empty, Duration::from_secs(3))
            .expect("reads");
        ours.handle_packet(&empty, Duration::from_secs(8))
            .expect("reads");
        assert_eq!(ours.report_counts(), (2, 0));
        assert_eq!(ours.remote_stats(), None);
        ours.handle_packet(&about_us, Duration::from_secs(13))
            .expect("reads");
        assert_eq!(ours.report_counts(), (3, 1));
        assert_eq!(ours.remote_stats().map(|r| r.highest_sequence), Some(812));
    }

    #[test]
    fn rtcp_is_told_apart_from_rtp_on_a_muxed_port() {
        assert!(is_rtcp(&SENDER_REPORT));
        assert!(is_rtcp(&[0x80, 0xc9]));
        assert!(is_rtcp(&[0x80, 0xcd])); // RTPFB feedback
        assert!(!is_rtcp(&[0x80, 0x00])); // PCMU
        assert!(!is_rtcp(&[0x80, 0x80])); // PCMU with marker
        assert!(!is_rtcp(&[0x80, 0xef])); // Opus (111) with marker: 239
        assert!(!is_rtcp(&[0x80, 0x65])); // telephone-event 101
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn long_cname_and_reason_are_cut_on_a_character_boundary() {
        let name = "é".repeat(200); // 400 bytes
        let mut session = RtcpSession::new(5, &name, 8000, 1);
        let bye = session.bye(Some(&name));
        let packets = parse_compound(&bye).unwrap();
        let Some(RtcpPacket::SourceDescription(chunks)) = packets.get(1) else {
            panic!("{packets:?}");
        };
        assert_eq!(chunks[0].cname.as_deref(), Some("é".repeat(127).as_str()));
        let Some(RtcpPacket::Goodbye { reason, .. }) = packets.get(2) else {
            panic!("{packets:?}");
        };
        assert_eq!(reason.as_deref(), Some("é".repeat(127).as_str()));
    }
}
