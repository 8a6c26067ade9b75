//! The media packet tap behind `--pcap-out`: media tasks hand each RTP/RTCP datagram (as it
//! went on the wire) to the front end's recorder. The tap never waits: the channel is bounded
//! and a full channel drops the packet and counts it, so a slow disk or a busy front end can
//! never delay the 20 ms media path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::event::Direction;

/// Packets in flight to the recorder; at 50 packets a second each way per call this is
/// seconds of slack.
pub const CAPTURE_QUEUE: usize = 4096;

/// One captured media datagram. `local` is our socket's address (possibly unspecified, e.g.
/// `0.0.0.0`: the recorder fills in our SIP address then).
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub time: SystemTime,
    pub dir: Direction,
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub bytes: Arc<[u8]>,
}

/// The sending half, cloned into every media task.
#[derive(Debug, Clone)]
pub struct PacketTap {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl PartialEq for PacketTap {
    /// Two taps are the same when they feed the same recorder.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.dropped, &other.dropped)
    }
}

impl Eq for PacketTap {}

impl PacketTap {
    #[cfg(test)]
    fn channel(capacity: usize) -> (PacketTap, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(capacity);
        let tap = PacketTap {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (tap, rx)
    }

    /// Hands a copy of the datagram to the recorder, or counts it as dropped; never waits.
    pub fn offer(&self, dir: Direction, local: SocketAddr, peer: SocketAddr, bytes: &[u8]) {
        let packet = Captured {
            time: SystemTime::now(),
            dir,
            local,
            peer,
            bytes: Arc::from(bytes),
        };
        if self.tx.try_send(Message::Packet(packet)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Packets lost because the recorder lagged.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What the pcap writer thread is told: a packet, or "the session is over: flush and stop"
/// (the engine may still hold taps then).
#[derive(Debug)]
enum Message {
    Packet(Captured),
    Close,
}

/// The `--pcap-out` file, written as packets come by a thread of its own (file writes never
/// run on the async threads). SIP (masked by the SIP task's trace) and RTP/RTCP come through
/// `tap()`, which goes into `MediaIo::capture`.
#[derive(Debug)]
pub struct PcapWriter {
    tap: PacketTap,
    close: mpsc::Sender<Message>,
    thread: std::thread::JoinHandle<std::io::Result<u64>>,
}

impl PcapWriter {
    /// Creates `path` (with its file header) and starts the writer thread.
    pub fn create(path: &std::path::Path) -> std::io::Result<PcapWriter> {
        use std::io::Write;
        let file = std::fs::File::create(path)?;
        let mut out = std::io::BufWriter::new(file);
        out.write_all(&crate::export::pcap::file_header())?;
        let (tx, mut rx) = mpsc::channel::<Message>(CAPTURE_QUEUE);
        let tap = PacketTap {
            tx: tx.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
        };
        let thread = std::thread::Builder::new()
            .name("sipterm-pcap".into())
            .spawn(move || {
                let mut written = 0u64;
                let mut record = Vec::with_capacity(2048);
                // Our SIP address stands in for a media socket bound to 0.0.0.0 / [::].
                let mut sip_local: Option<SocketAddr> = None;
                while let Some(Message::Packet(p)) = rx.blocking_recv() {
                    let local = if p.local.ip().is_unspecified() {
                        match sip_local {
                            Some(sip) if sip.is_ipv4() == p.peer.is_ipv4() => {
                                SocketAddr::new(sip.ip(), p.local.port())
                            }
                            _ => p.local,
                        }
                    } else {
                        p.local
                    };
                    let (src, dst) = match p.dir {
                        Direction::Out => (local, p.peer),
                        Direction::In => (p.peer, local),
                    };
                    record.clear();
                    let id = u16::try_from(written & 0xffff).unwrap_or(0);
                    if crate::export::pcap::append_record(
                        &mut record,
                        p.time,
                        src,
                        dst,
                        &p.bytes,
                        id,
                    ) {
                        out.write_all(&record)?;
                        written += 1;
                    }
                    if p.is_sip() && !p.local.ip().is_unspecified() {
                        sip_local = Some(p.local);
                    }
                }
                out.flush()?;
                Ok(written)
            })?;
        Ok(PcapWriter {
            tap,
            close: tx,
            thread,
        })
    }

    /// The tap for the media tasks (`MediaIo::capture`).
    pub fn tap(&self) -> PacketTap {
        self.tap.clone()
    }

    /// Flushes and closes the file: (packets written, packets dropped because the writer
    /// lagged). Waits for the queue to drain, off the async threads.
    pub async fn finish(self) -> std::io::Result<(u64, u64)> {
        let _ = self.close.send(Message::Close).await;
        let dropped = self.tap.dropped();
        drop(self.tap);
        let thread = self.thread;
        let written = tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the pcap writer panicked"))??;
        Ok((written, dropped))
    }
}

impl Captured {
    /// SIP goes to/from our SIP port; tell it apart from media by the first bytes (RTP/RTCP
    /// start with version 2: 0x80-0xbf; SIP with a letter).
    fn is_sip(&self) -> bool {
        self.bytes.first().is_some_and(u8::is_ascii_alphabetic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tap, mut rx) = PacketTap::channel(2);
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap_or_else(|_| unreachable!());
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!());
        for n in 0..5u8 {
            tap.offer(Direction::Out, a, b, &[n]);
        }
        assert_eq!(tap.dropped(), 3);
        let mut bytes = || match rx.try_recv() {
            Ok(Message::Packet(p)) => Some(p.bytes.to_vec()),
            _ => None,
        };
        assert_eq!(bytes(), Some(vec![0]));
        assert_eq!(bytes(), Some(vec![1]));
        assert_eq!(bytes(), None);
    }
}
