//! `--ladder-out` and `--pcap-out` for both front ends (headless and TUI alike): the ladder
//! is the session's SIP messages kept in memory (bounded) and written as PlantUML at exit; the
//! pcap file is written as the session goes (SIP from the SIP task, RTP and RTCP from the
//! media tasks, both through the tap in `MediaIo::capture`, timestamped as they hit the
//! wire), so a long call does not pile up in memory.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::cli::Cli;
use crate::driver::capture::{PacketTap, PcapWriter};
use crate::event::Event;
use crate::export::{RECORD_LIMIT, Record};

pub struct SessionExport {
    /// Our SIP address (the engine's `ready` address), once known.
    local: Option<SocketAddr>,
    ladder: Option<(PathBuf, Ladder)>,
    pcap: Option<(PathBuf, PcapWriter)>,
}

impl SessionExport {
    /// Before the engine starts: creates the pcap file (its tap goes into
    /// `MediaIo::capture`). Problems come back as `error` events; the session goes on.
    pub fn open(cli: &Cli) -> (SessionExport, Vec<Event>) {
        let mut problems = Vec::new();
        let pcap = cli
            .pcap_out
            .as_ref()
            .and_then(|path| match PcapWriter::create(path) {
                Ok(writer) => Some((path.clone(), writer)),
                Err(e) => {
                    problems.push(Event::Error {
                        message: format!("cannot write {}: {e}", path.display()),
                    });
                    None
                }
            });
        let export = SessionExport {
            local: None,
            ladder: cli
                .ladder_out
                .as_ref()
                .map(|path| (path.clone(), Ladder::default())),
            pcap,
        };
        (export, problems)
    }

    /// The tap for `MediaIo::capture` (`None` without `--pcap-out`).
    pub fn media_tap(&self) -> Option<PacketTap> {
        self.pcap.as_ref().map(|(_, writer)| writer.tap())
    }

    /// Our SIP address, from the engine's handle.
    pub fn set_local(&mut self, local: SocketAddr) {
        self.local = Some(local);
    }

    /// Records what is to be exported of an engine event (SIP messages for the ladder; the
    /// pcap gets everything through the tap).
    pub fn on_event(&mut self, event: &Event) {
        let Event::Sip { dir, peer, raw, .. } = event else {
            return;
        };
        let (Some(local), Ok(peer)) = (self.local, peer.parse::<SocketAddr>()) else {
            return;
        };
        if let Some((_, ladder)) = &mut self.ladder {
            ladder.push(Record {
                time: SystemTime::now(),
                dir: *dir,
                local,
                peer,
                raw: raw.clone(),
            });
        }
    }

    /// Writes the ladder and closes the pcap file; what went wrong (or was left out) comes
    /// back as `warning` / `error` events.
    pub async fn finish(self) -> Vec<Event> {
        let mut out = Vec::new();
        if let Some((path, ladder)) = self.ladder {
            if ladder.dropped > 0 {
                out.push(Event::Warning {
                    message: format!(
                        "only the last {} SIP messages are in the ladder ({} older ones dropped)",
                        ladder.records.len(),
                        ladder.dropped
                    ),
                });
            }
            let records: Vec<Record> = ladder.records.into();
            let written = tokio::task::spawn_blocking(move || {
                let all: Vec<&Record> = records.iter().collect();
                std::fs::write(&path, crate::export::plantuml::render(&all, None))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(message)) => out.push(Event::Error { message }),
                Err(e) => out.push(Event::Error {
                    message: format!("ladder export failed: {e}"),
                }),
            }
        }
        if let Some((path, writer)) = self.pcap {
            match writer.finish().await {
                Ok((_, 0)) => {}
                Ok((written, dropped)) => out.push(Event::Warning {
                    message: format!(
                        "{}: {dropped} packets left out (the writer fell behind), {written} written",
                        path.display()
                    ),
                }),
                Err(e) => out.push(Event::Error {
                    message: format!("cannot write {}: {e}", path.display()),
                }),
            }
        }
        out
    }
}

/// The session's SIP messages, oldest dropped past `RECORD_LIMIT`.
#[derive(Default)]
struct Ladder {
    records: VecDeque<Record>,
    dropped: u64,
}

impl Ladder {
    fn push(&mut self, record: Record) {
        if self.records.len() >= RECORD_LIMIT {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(record);
    }
}
