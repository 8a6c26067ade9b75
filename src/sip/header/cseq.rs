//! CSeq (RFC 3261 §20.16): a 32-bit sequence number and the request method.

use std::fmt;

use super::lex::{is_token, trim_wsp};
use crate::sip::error::ParseError;
use crate::sip::message::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses `1*DIGIT LWS Method`. Numbers above 2^32-1 are rejected (RFC 4475 §3.1.2.4).
    pub fn parse(value: &str) -> Result<CSeq, ParseError> {
        let bad = |reason: &str| ParseError::header("CSeq", reason);
        let value = trim_wsp(value);
        let mut parts = value.split([' ', '\t']).filter(|p| !p.is_empty());
        let (Some(number), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected a number and a method"));
        };
        if !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("sequence number is not a number"));
        }
        let seq = parse_u32(number).ok_or_else(|| bad("sequence number out of range"))?;
        if !is_token(method) {
            return Err(bad("method is not a token"));
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

/// Parses decimal digits (leading zeros allowed, as in `0009`) into a u32; None when the text is
/// not all digits or the value exceeds 2^32-1.
pub(crate) fn parse_u32(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let significant = digits.trim_start_matches('0');
    if significant.is_empty() {
        return Some(0);
    }
    if significant.len() > 10 {
        return None;
    }
    significant.parse::<u32>().ok()
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        let c = CSeq::parse("  0009 \t INVITE ").unwrap();
        assert_eq!(
            c,
            CSeq {
                seq: 9,
                method: Method::Invite
            }
        );
        assert_eq!(c.to_string(), "9 INVITE");
        assert_eq!(CSeq::parse(&c.to_string()).unwrap(), c);
        assert_eq!(CSeq::parse("0 ACK").unwrap().seq, 0);
        assert_eq!(CSeq::parse("4294967295 BYE").unwrap().seq, u32::MAX);
    }

    #[test]
    fn rejects_overlarge_and_malformed() {
        for bad in [
            "4294967296 INVITE",
            "36893488147419103232 REGISTER",
            "INVITE",
            "1",
            "-1 INVITE",
            "1 INVITE extra",
            "1 IN<VITE",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad}");
        }
    }
}
