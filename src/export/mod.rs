//! Exports of the recorded SIP trace (issue 5): a PlantUML ladder, a plain-text dump and a
//! libpcap file. All pure: they take recorded messages and return bytes or text; the front
//! ends decide where the file goes (headless at exit, the TUI in a blocking task).

pub mod pcap;
pub mod plantuml;
pub mod text;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::event::Direction;
use crate::sip::message::Message;
use crate::sip::parse::parse_datagram;

/// Messages a front end keeps for export; past this the oldest are dropped.
pub const RECORD_LIMIT: usize = 100_000;

/// One SIP message as sent or received.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When it went out or came in (pcap timestamps, text dump).
    pub time: SystemTime,
    pub dir: Direction,
    /// Our SIP address (the engine's `ready` address).
    pub local: SocketAddr,
    pub peer: SocketAddr,
    pub raw: Arc<[u8]>,
}

impl Record {
    /// (source, destination) of the datagram.
    pub fn endpoints(&self) -> (SocketAddr, SocketAddr) {
        match self.dir {
            Direction::Out => (self.local, self.peer),
            Direction::In => (self.peer, self.local),
        }
    }

    /// The Call-ID, when the message parses (lenient: anything else is `None`).
    pub fn call_id(&self) -> Option<String> {
        call_id_of(&self.raw)
    }
}

/// The Call-ID header of a raw SIP message, or `None` when it does not parse.
pub fn call_id_of(raw: &[u8]) -> Option<String> {
    let message: Message = parse_datagram(raw).ok()?;
    message
        .headers()
        .get("Call-ID")
        .map(|v| v.trim().to_string())
}

/// True for an INVITE without a To tag: the message that starts a call.
pub fn is_initial_invite(raw: &[u8]) -> bool {
    match parse_datagram(raw) {
        Ok(Message::Request(r)) => {
            r.method.as_str() == "INVITE"
                && !r
                    .headers
                    .get("To")
                    .is_some_and(|to| to.to_ascii_lowercase().contains(";tag="))
        }
        _ => false,
    }
}

/// The records of one call (same Call-ID), in order; `None` selects every record.
pub fn select<'a>(records: &'a [Record], call_id: Option<&str>) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| call_id.is_none_or(|id| r.call_id().as_deref() == Some(id)))
        .collect()
}

/// Distinct Call-IDs in order of first appearance (unparseable messages skipped).
pub fn call_ids(records: &[Record]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in records.iter().filter_map(Record::call_id) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}
