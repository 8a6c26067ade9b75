//! A plain-text dump of the trace: a header line per message (time, direction, peer), the
//! whole message (SRTP keys masked), and a separator line.

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
        let raw = crate::sdp::redact_inline_key_bytes(&r.raw);
        let body = String::from_utf8_lossy(&raw);
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

    #[test]
    fn srtp_keys_are_masked() {
        let r = Record {
            time: UNIX_EPOCH,
            dir: Direction::Out,
            local: "127.0.0.1:5062".parse().unwrap_or_else(|_| unreachable!()),
            peer: "127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!()),
            raw: Arc::from(
                &b"INVITE sip:b@b SIP/2.0\r\n\r\nv=0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n"[..],
            ),
        };
        let text = render(&[&r]);
        assert!(!text.contains("WVNfX19z"), "{text}");
        assert!(
            text.contains(&format!(
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}|2^20|1:4",
                "REDACTED".repeat(5)
            )),
            "{text}"
        );
    }
}
