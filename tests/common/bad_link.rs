//! A phone at the far end of a bad link, for the quality findings (tests/diagnosis.rs): an
//! RTP/RTCP endpoint on 127.0.0.1 that sends a PCMU tone to whoever sends it RTP, and reports
//! on what it gets in RTCP receiver reports, with the link's faults applied both ways:
//!
//! - towards sipterm: every `loss_every`-th packet lost, each packet late by 0..`jitter`;
//! - from sipterm: every `loss_every`-th packet lost, the rest arriving late by 0..`jitter`
//!   (what its RTCP reports then say: loss and jitter);
//! - its receiver reports travel `report_delay` longer than they should (the round trip).
//!
//! The reports are RFC 3550 receiver reports built from sipterm's own `RtpReceiver` statistics
//! and the LSR/DLSR of sipterm's sender reports, so sipterm measures a real round trip.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sipterm::media::rtcp::{
    ReportBlock, RtcpPacket, build_compound, duration_to_compact, parse_compound,
};
use sipterm::media::rtp::RtpPacket;
use sipterm::media::session::{RtpReceiver, clock_units};

use super::HarnessError;
use super::rtp_stream::{PACKET_INTERVAL, ToneStream};

/// What the link does to the packets.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// One packet in this many is lost, each way (0: none).
    pub loss_every: u64,
    /// Each packet is late by up to this much, each way.
    pub jitter: Duration,
    /// Receiver reports are late by this much (adds to the round trip sipterm measures).
    pub report_delay: Duration,
}

/// The far phone; stops (and its thread ends) on drop.
pub struct BadLink {
    /// Its RTP port; RTCP is the next one.
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const SSRC: u32 = 0x0bad_1117;
const CLOCK_RATE: u32 = 8000;
/// How often it reports (faster than RFC 3550's 5 s: the test needs few minutes).
const REPORT_EVERY: Duration = Duration::from_secs(1);

impl BadLink {
    pub fn start(faults: Faults) -> Result<BadLink, HarnessError> {
        let (rtp, rtcp, port) = bind_pair()?;
        for socket in [&rtp, &rtcp] {
            socket
                .set_nonblocking(true)
                .map_err(|e| HarnessError::io("non-blocking socket", e))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || run(rtp, rtcp, faults, &flag));
        Ok(BadLink {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for BadLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bind_pair() -> Result<(UdpSocket, UdpSocket, u16), HarnessError> {
    let mut last = None;
    for _ in 0..50 {
        let (port, _) = super::ports::free_port_pair()?;
        match (
            UdpSocket::bind(("127.0.0.1", port)),
            UdpSocket::bind(("127.0.0.1", port + 1)),
        ) {
            (Ok(rtp), Ok(rtcp)) => return Ok((rtp, rtcp, port)),
            (Err(e), _) | (_, Err(e)) => last = Some(e),
        }
    }
    Err(HarnessError::io(
        "binding the bad link's RTP port pair",
        last.unwrap_or_else(|| std::io::Error::other("no free pair")),
    ))
}

/// A small deterministic generator (xorshift): the faults are the same in every run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, limit: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let nanos = u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX).max(1);
        Duration::from_nanos(self.0 % nanos)
    }
}

fn run(rtp: UdpSocket, rtcp: UdpSocket, faults: Faults, stop: &AtomicBool) {
    let start = Instant::now();
    let mut dice = Dice(0x5eed_1234_abcd_0001);
    let mut receiver = RtpReceiver::new(CLOCK_RATE);
    // Packets from sipterm still "on the wire": (when they arrive, bytes).
    let mut incoming: Vec<(Instant, Vec<u8>)> = Vec::new();
    // Our packets not sent yet: (when, bytes), and reports waiting to go.
    let mut outgoing: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut reports: Vec<(Instant, Vec<u8>)> = Vec::new();
    let mut sipterm_rtp: Option<SocketAddr> = None;
    let mut sipterm_rtcp: Option<SocketAddr> = None;
    // sipterm's last sender report: (middle 32 bits of its NTP time, when it arrived).
    let mut last_sr: Option<(u32, Instant)> = None;
    let mut next_packet = 0u64;
    let mut next_report = start + REPORT_EVERY;
    let (mut expected_prior, mut received_prior) = (0u64, 0u64);
    let tone = ToneStream::new(700.0, SSRC);
    let mut buf = [0u8; 2048];
    let mut received_count = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while let Ok((n, from)) = rtp.recv_from(&mut buf) {
            sipterm_rtp.get_or_insert(from);
            received_count += 1;
            if faults.loss_every > 0 && received_count.is_multiple_of(faults.loss_every) {
                continue;
            }
            incoming.push((now + dice.below(faults.jitter), buf[..n].to_vec()));
        }
        while let Ok((n, from)) = rtcp.recv_from(&mut buf) {
            sipterm_rtcp.get_or_insert(from);
            if let Ok(packets) = parse_compound(&buf[..n]) {
                for packet in packets {
                    if let RtcpPacket::SenderReport { info, .. } = packet {
                        last_sr = Some((info.ntp.middle_32(), now));
                    }
                }
            }
        }
        // Packets from sipterm that "arrive" now.
        incoming.sort_by_key(|(at, _)| *at);
        while incoming.first().is_some_and(|(at, _)| *at <= now) {
            let (at, bytes) = incoming.remove(0);
            if let Ok(packet) = RtpPacket::parse(&bytes) {
                receiver.handle_packet(&packet, clock_units(at - start, CLOCK_RATE));
            }
        }
        // Our tone, once sipterm's address is known: one packet per 20 ms, some lost, each
        // late by its own share of jitter.
        if sipterm_rtp.is_some() {
            let elapsed = now - start;
            while PACKET_INTERVAL * u32::try_from(next_packet).unwrap_or(u32::MAX) <= elapsed {
                let mut stream = tone;
                stream.first_sequence = (next_packet as u16).wrapping_add(1);
                let packet = stream.packets(1).remove(0);
                let due = start
                    + PACKET_INTERVAL * u32::try_from(next_packet).unwrap_or(u32::MAX)
                    + dice.below(faults.jitter);
                next_packet += 1;
                if faults.loss_every > 0 && next_packet.is_multiple_of(faults.loss_every) {
                    continue;
                }
                outgoing.push((due, packet));
            }
        }
        outgoing.sort_by_key(|(at, _)| *at);
        while outgoing.first().is_some_and(|(at, _)| *at <= now) {
            let (_, packet) = outgoing.remove(0);
            if let Some(to) = sipterm_rtp {
                let _ = rtp.send_to(&packet, to);
            }
        }
        // A receiver report every second, sent `report_delay` late.
        if now >= next_report {
            next_report = now + REPORT_EVERY;
            let stats = receiver.stats();
            let blocks: Vec<ReportBlock> = stats
                .ssrc
                .map(|ssrc| {
                    let expected = stats.expected.saturating_sub(expected_prior);
                    let got = stats.received.saturating_sub(received_prior);
                    expected_prior = stats.expected;
                    received_prior = stats.received;
                    let lost = expected.saturating_sub(got);
                    let (lsr, dlsr) = last_sr.map_or((0, 0), |(middle, at)| {
                        (middle, duration_to_compact(now - at))
                    });
                    ReportBlock {
                        ssrc,
                        fraction_lost: (lost << 8).checked_div(expected).unwrap_or(0).min(255)
                            as u8,
                        cumulative_lost: stats.lost.clamp(0, 0x7f_ffff) as i32,
                        extended_highest_sequence: stats.extended_highest_sequence,
                        jitter: stats.jitter as u32,
                        last_sr: lsr,
                        delay_since_last_sr: dlsr,
                    }
                })
                .into_iter()
                .collect();
            let report = RtcpPacket::ReceiverReport {
                ssrc: SSRC,
                reports: blocks,
            };
            if let Ok(bytes) = build_compound(&[report]) {
                reports.push((now + faults.report_delay, bytes));
            }
        }
        while reports.first().is_some_and(|(at, _)| *at <= now) {
            let (_, bytes) = reports.remove(0);
            // RTCP goes to sipterm's RTCP port (its RTP port + 1, as its SDP says).
            let to = sipterm_rtcp.or(sipterm_rtp.map(|a| SocketAddr::new(a.ip(), a.port() + 1)));
            if let Some(to) = to {
                let _ = rtcp.send_to(&bytes, to);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
