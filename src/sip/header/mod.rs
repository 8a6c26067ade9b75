//! Typed views of headers, one per file, parsed on demand from the raw `Headers` store, and the
//! accessors on `Headers` that the transaction and UA layers call.
//!
//! Authentication headers are not here: they belong to `sip::auth`.

pub mod cseq;
pub(crate) mod lex;
pub mod name_addr;
pub mod via;

pub use cseq::CSeq;
pub use name_addr::NameAddr;
pub use via::Via;

use super::error::ParseError;
use super::message::{Headers, same_header};
use lex::{split_top_level, trim_wsp};

/// Longest Content-Length we believe; anything larger cannot be a message we accept anyway.
const MAX_CONTENT_LENGTH_DIGITS: usize = 9;

impl Headers {
    /// The value of a header that may appear at most once. Two lines are an error even when
    /// they agree (RFC 4475 §3.3.8, §3.3.9).
    fn single(&self, name: &str) -> Result<Option<&str>, ParseError> {
        let mut values = self
            .iter()
            .filter(|h| same_header(h.name, name))
            .map(|h| h.value);
        let first = values.next();
        if values.next().is_some() {
            return Err(ParseError::header(name, "appears more than once"));
        }
        Ok(first)
    }

    fn required(&self, name: &str) -> Result<&str, ParseError> {
        self.single(name)?
            .ok_or_else(|| ParseError::MissingHeader(name.to_string()))
    }

    /// Every Via value, top first, with comma-separated values split.
    pub fn vias(&self) -> Result<Vec<Via>, ParseError> {
        let mut vias = Vec::new();
        for line in self.get_all("Via") {
            for item in split_top_level(line, ',').map_err(|r| ParseError::header("Via", r))? {
                vias.push(Via::parse(item)?);
            }
        }
        Ok(vias)
    }

    /// The topmost Via; `MissingHeader` when there is none.
    pub fn top_via(&self) -> Result<Via, ParseError> {
        let line = self
            .get("Via")
            .ok_or_else(|| ParseError::MissingHeader("Via".to_string()))?;
        let first = split_top_level(line, ',')
            .map_err(|r| ParseError::header("Via", r))?
            .into_iter()
            .next()
            .unwrap_or_default();
        Via::parse(first)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(self.required("CSeq")?)
    }

    pub fn from(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse("From", self.required("From")?)
    }

    pub fn to(&self) -> Result<NameAddr, ParseError> {
        NameAddr::parse("To", self.required("To")?)
    }

    /// Every Contact, in order. `Contact: *` (REGISTER remove-all) gives an empty list: tell it
    /// from "no Contact" with `contact_is_wildcard`.
    pub fn contacts(&self) -> Result<Vec<NameAddr>, ParseError> {
        if self.contact_is_wildcard() {
            if self.get_all("Contact").count() > 1 {
                return Err(ParseError::header(
                    "Contact",
                    "'*' mixed with other contacts",
                ));
            }
            return Ok(Vec::new());
        }
        self.name_addr_list("Contact")
    }

    /// True for `Contact: *`.
    pub fn contact_is_wildcard(&self) -> bool {
        self.get_all("Contact").any(|v| trim_wsp(v) == "*")
    }

    /// Route values in order (comma lists split).
    pub fn routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addr_list("Route")
    }

    /// Record-Route values in order (comma lists split).
    pub fn record_routes(&self) -> Result<Vec<NameAddr>, ParseError> {
        self.name_addr_list("Record-Route")
    }

    pub fn refer_to(&self) -> Result<Option<NameAddr>, ParseError> {
        self.single("Refer-To")?
            .map(|v| NameAddr::parse("Refer-To", v))
            .transpose()
    }

    pub fn referred_by(&self) -> Result<Option<NameAddr>, ParseError> {
        self.single("Referred-By")?
            .map(|v| NameAddr::parse("Referred-By", v))
            .transpose()
    }

    fn name_addr_list(&self, name: &str) -> Result<Vec<NameAddr>, ParseError> {
        let mut list = Vec::new();
        for line in self.get_all(name) {
            list.extend(NameAddr::parse_list(name, line)?);
        }
        Ok(list)
    }

    /// The Call-ID: exactly one line, non-empty, no whitespace inside.
    pub fn call_id(&self) -> Result<&str, ParseError> {
        let id = self.required("Call-ID")?;
        if id.is_empty() || id.contains(char::is_whitespace) {
            return Err(ParseError::header(
                "Call-ID",
                "empty or contains whitespace",
            ));
        }
        Ok(id)
    }

    /// Content-Length: `None` when absent; an error when malformed, negative, overlarge or
    /// given more than once.
    pub fn content_length(&self) -> Result<Option<usize>, ParseError> {
        let Some(value) = self
            .single("Content-Length")
            .map_err(|_| ParseError::ContentLength("more than one Content-Length".to_string()))?
        else {
            return Ok(None);
        };
        let digits = value.trim_start_matches('0');
        let valid = !value.is_empty()
            && value.bytes().all(|b| b.is_ascii_digit())
            && digits.len() <= MAX_CONTENT_LENGTH_DIGITS;
        if !valid {
            return Err(ParseError::ContentLength(lex::excerpt(value)));
        }
        Ok(Some(digits.parse().unwrap_or(0)))
    }

    /// Expires in seconds; an error when malformed or above 2^32-1 (RFC 4475 §3.1.2.4).
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.single("Expires")?
            .map(|v| {
                cseq::parse_u32(v)
                    .ok_or_else(|| ParseError::header("Expires", "not a 32-bit number"))
            })
            .transpose()
    }

    /// Max-Forwards; an error when malformed or above 255.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.single("Max-Forwards")?
            .map(|v| {
                cseq::parse_u32(v)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| ParseError::header("Max-Forwards", "not a number 0..=255"))
            })
            .transpose()
    }

    /// The media type without parameters, lower-cased: `application/sdp`.
    pub fn content_type(&self) -> Option<String> {
        let value = self.get("Content-Type")?;
        let media = trim_wsp(value.split(';').next().unwrap_or_default());
        let (kind, sub) = media.split_once('/')?;
        Some(format!("{}/{}", trim_wsp(kind), trim_wsp(sub)).to_ascii_lowercase())
    }

    /// The items of comma-list headers such as Require, Supported, Allow, Unsupported, Accept,
    /// across every line, trimmed, empty items dropped.
    pub fn tokens(&self, name: &str) -> Vec<String> {
        self.get_all(name)
            .flat_map(|line| line.split(','))
            .map(trim_wsp)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Min-Expires seconds, if present and valid.
    pub fn min_expires(&self) -> Option<u32> {
        self.get("Min-Expires")
            .and_then(|v| cseq::parse_u32(trim_wsp(v)))
    }

    /// Retry-After seconds (the leading delta-seconds; comment and parameters ignored).
    pub fn retry_after(&self) -> Option<u32> {
        let value = trim_wsp(self.get("Retry-After")?);
        let end = value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len());
        cseq::parse_u32(value.get(..end)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (name, value) in lines {
            h.push(*name, *value);
        }
        h
    }

    #[test]
    fn vias_are_split_across_lines_and_commas() {
        let h = headers(&[
            (
                "v",
                "SIP/2.0/TCP a.example.com;branch=z9hG4bK1 , SIP/2.0/UDP b.example.com",
            ),
            ("Via", "SIP/2.0/UDP c.example.com:5070"),
        ]);
        let vias = h.vias().unwrap();
        let hosts: Vec<_> = vias.iter().map(|v| v.host.as_str()).collect();
        assert_eq!(hosts, ["a.example.com", "b.example.com", "c.example.com"]);
        assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(
            Headers::new().top_via(),
            Err(ParseError::MissingHeader("Via".into()))
        );
    }

    #[test]
    fn single_valued_headers_reject_duplicates() {
        let h = headers(&[
            ("CSeq", "5 INVITE"),
            ("CSeq", "59 INVITE"),
            ("i", "a"),
            ("Call-ID", "b"),
        ]);
        assert!(h.cseq().is_err());
        assert!(h.call_id().is_err());
        let cl = headers(&[("Content-Length", "13"), ("l", "5")]);
        assert!(matches!(
            cl.content_length(),
            Err(ParseError::ContentLength(_))
        ));
    }

    #[test]
    fn scalar_ranges() {
        let h = headers(&[
            ("Max-Forwards", "0068"),
            ("Expires", "4294967295"),
            ("l", "0150"),
        ]);
        assert_eq!(h.max_forwards(), Ok(Some(68)));
        assert_eq!(h.expires(), Ok(Some(u32::MAX)));
        assert_eq!(h.content_length(), Ok(Some(150)));
        let big = headers(&[
            ("Max-Forwards", "256"),
            ("Expires", "4294967296"),
            ("l", "-999"),
        ]);
        assert!(big.max_forwards().is_err());
        assert!(big.expires().is_err());
        assert!(big.content_length().is_err());
        assert_eq!(Headers::new().expires(), Ok(None));
    }

    #[test]
    fn contacts_routes_and_wildcard() {
        let h = headers(&[
            ("m", "<sip:a@h1>;expires=60, \"B\" <sip:b@h2>"),
            ("Contact", "sip:c@h3;q=0.5"),
            ("Record-Route", "<sip:p1;lr>, <sip:p2;lr>"),
            ("Route", "<sip:r1;lr>"),
        ]);
        let contacts = h.contacts().unwrap();
        assert_eq!(contacts.len(), 3);
        assert_eq!(contacts[0].expires(), Some(60));
        assert_eq!(contacts[2].param("q"), Some(Some("0.5")));
        assert!(!h.contact_is_wildcard());
        assert_eq!(h.record_routes().unwrap()[1].uri.host, "p2");
        assert_eq!(h.routes().unwrap().len(), 1);
        let star = headers(&[("Contact", " * ")]);
        assert!(star.contact_is_wildcard());
        assert_eq!(star.contacts(), Ok(Vec::new()));
    }

    #[test]
    fn content_type_tokens_and_retry() {
        let h = headers(&[
            ("c", "Application/SDP ; charset=x"),
            ("Require", "100rel, timer"),
            ("Require", "replaces"),
            ("Retry-After", "18000 (in a meeting);duration=3600"),
            ("Min-Expires", "60"),
        ]);
        assert_eq!(h.content_type().as_deref(), Some("application/sdp"));
        assert_eq!(h.tokens("require"), ["100rel", "timer", "replaces"]);
        assert_eq!(h.retry_after(), Some(18000));
        assert_eq!(h.min_expires(), Some(60));
        let big = headers(&[("Retry-After", "949302838503028349304023988")]);
        assert_eq!(big.retry_after(), None);
    }
}
