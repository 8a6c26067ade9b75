//! The SIP ladder as a PlantUML sequence diagram: one participant per address, one arrow per
//! message labelled with its first line (responses without the `SIP/2.0 ` prefix).

use std::fmt::Write;
use std::net::SocketAddr;

use super::Record;
use crate::event::first_line;

/// Participants in order of appearance: ours first.
pub fn participants(records: &[&Record]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for r in records {
        for addr in [r.local, r.peer] {
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

/// The arrow label of a message: `INVITE sip:bob@b`, `200 OK`.
pub fn label(raw: &[u8]) -> String {
    let line = first_line(&crate::sdp::redact_inline_key_bytes(raw));
    let line = match line.strip_prefix("SIP/2.0 ") {
        Some(status) => status.to_string(),
        None => line.strip_suffix(" SIP/2.0").unwrap_or(&line).to_string(),
    };
    // Nothing a peer sends may break the diagram's syntax: one line, printable characters.
    line.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A whole diagram for these records (one call or all), `title` as its title when given.
pub fn render(records: &[&Record], title: Option<&str>) -> String {
    let mut out = String::from("@startuml\n");
    if let Some(title) = title {
        let _ = writeln!(out, "title {}", label(title.as_bytes()));
    }
    let parts = participants(records);
    let alias = |addr: &SocketAddr| {
        let index = parts.iter().position(|p| p == addr).unwrap_or(0);
        participant_alias(index)
    };
    for (index, addr) in parts.iter().enumerate() {
        let _ = writeln!(
            out,
            "participant \"{addr}\" as {}",
            participant_alias(index)
        );
    }
    for r in records {
        let (from, to) = r.endpoints();
        let _ = writeln!(
            out,
            "{} -> {} : {}",
            alias(&from),
            alias(&to),
            label(&r.raw)
        );
    }
    out.push_str("@enduml\n");
    out
}

/// A, B, ..., Z, P26, P27, ...
fn participant_alias(index: usize) -> String {
    match u8::try_from(index) {
        Ok(i) if i < 26 => char::from(b'A' + i).to_string(),
        _ => format!("P{index}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::event::Direction;

    fn rec(dir: Direction, raw: &str) -> Record {
        Record {
            time: SystemTime::UNIX_EPOCH,
            dir,
            local: "127.0.0.1:5062".parse().unwrap_or_else(|_| unreachable!()),
            peer: "127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!()),
            raw: Arc::from(raw.as_bytes()),
        }
    }

    #[test]
    fn requests_go_right_and_responses_come_back() {
        let a = rec(Direction::Out, "INVITE sip:bob@b SIP/2.0\r\n\r\n");
        let b = rec(Direction::In, "SIP/2.0 200 OK\r\n\r\n");
        let text = render(&[&a, &b], None);
        assert_eq!(
            text,
            "@startuml\nparticipant \"127.0.0.1:5062\" as A\nparticipant \"127.0.0.1:5060\" as B\n\
             A -> B : INVITE sip:bob@b\nB -> A : 200 OK\n@enduml\n"
        );
    }
}
