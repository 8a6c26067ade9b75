//! Errors of the SIP core.

use thiserror::Error;

/// Why bytes could not be turned into a SIP message, URI or header. `status` is the response a
/// server should answer with when the bad input was a request (400 unless said otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("message is incomplete")]
    Incomplete,
    #[error("malformed start line: {0}")]
    StartLine(String),
    #[error("unsupported SIP version {0}")]
    Version(String),
    #[error("malformed URI: {0}")]
    Uri(String),
    #[error("malformed {header} header: {reason}")]
    Header { header: String, reason: String },
    #[error("bad Content-Length: {0}")]
    ContentLength(String),
    #[error("message too large: {0}")]
    TooLarge(String),
    #[error("missing mandatory header {0}")]
    MissingHeader(String),
    #[error("header section is not valid UTF-8")]
    NotUtf8,
    #[error("CSeq method {cseq} does not match request method {method}")]
    CSeqMismatch { method: String, cseq: String },
}

impl ParseError {
    /// The status code a UAS answers a request with when parsing failed this way.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::Version(_) => 505,
            ParseError::TooLarge(_) => 513,
            _ => 400,
        }
    }

    /// A header error; the reason is what went wrong, kept short.
    pub fn header(header: &str, reason: impl Into<String>) -> ParseError {
        ParseError::Header {
            header: header.chars().take(64).collect(),
            reason: reason.into(),
        }
    }
}
