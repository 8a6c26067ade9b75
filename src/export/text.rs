//! A plain-text dump of the trace: a header line per message (time, direction, peer), the
//! whole message, and a separator line.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Record;
use crate::event::Direction;

pub const SEPARATOR: &str =
    "------------------------------------------------------------------------";

pub fn render(records: &[&Record]) -> String {
    let mut out = String::new();
    let start = records.first().map(|r| r.time);
    for r in records {
        let since = start
            .and_then(|s| r.time.duration_since(s).ok())
            .unwrap_or_default();
        let (arrow, word) = match r.dir {
            Direction::Out => ("->", "to"),
            Direction::In => ("<-", "from"),
        };
        let _ = writeln!(
            out,
            "{} (+{}.{:03}s) {} {arrow} {word} {}",
            unix_time(r.time),
            since.as_secs(),
            since.subsec_millis(),
            r.local,
            r.peer
        );
        let body = String::from_utf8_lossy(&r.raw);
        for line in body.lines() {
            out.push_str(line);
            out.push('\n');
        }
        out.push_str(SEPARATOR);
        out.push('\n');
    }
    out
}

/// `1700000000.123` (seconds since the epoch with milliseconds).
fn unix_time(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", since.as_secs(), since.subsec_millis())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_message_has_a_header_and_a_separator() {
        let r = Record {
            time: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            dir: Direction::In,
            local: "127.0.0.1:5062".parse().unwrap_or_else(|_| unreachable!()),
            peer: "127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!()),
            raw: Arc::from(&b"SIP/2.0 200 OK\r\nCSeq: 1 BYE\r\n\r\n"[..]),
        };
        assert_eq!(
            render(&[&r]),
            format!(
                "1700000000.123 (+0.000s) 127.0.0.1:5062 <- from 127.0.0.1:5060\n\
                 SIP/2.0 200 OK\nCSeq: 1 BYE\n\n{SEPARATOR}\n"
            )
        );
    }
}
