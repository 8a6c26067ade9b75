//! Bytes -> Message. (Skeleton: the full RFC 3261 parser replaces these bodies.)

use super::error::ParseError;
use super::message::Message;
use super::uri::Uri;

/// Limits that bound what hostile input can make us allocate.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 256;

/// Parses one complete message from a datagram. Octets past Content-Length are ignored
/// (RFC 4475 §3.1.1.8); a Content-Length larger than the datagram is an error.
pub fn parse_datagram(_bytes: &[u8]) -> Result<Message, ParseError> {
    Err(ParseError::Incomplete)
}

/// Result of framing a stream (TCP/TLS) buffer.
#[derive(Debug)]
pub enum StreamFrame {
    /// A whole message and how many bytes of the buffer it used.
    Message(Message, usize),
    /// Keep-alive CRLFs (RFC 5626 §3.5.1) of this length, to consume; `\r\n\r\n` is a ping.
    KeepAlive(usize),
    /// Need more bytes.
    Incomplete,
}

/// Frames the next message from a stream buffer. Content-Length is mandatory on streams.
pub fn parse_stream(_buf: &[u8]) -> Result<StreamFrame, ParseError> {
    Ok(StreamFrame::Incomplete)
}

pub fn parse_uri(s: &str) -> Result<Uri, ParseError> {
    Err(ParseError::Uri(s.to_string()))
}
