//! The SIP message model: requests and responses with an ordered header list.
//!
//! Headers are stored as received (name as spelled on the wire, raw value text) so that unknown
//! headers survive a round trip byte for byte; typed views live in `header/` and parse on demand.

use std::fmt;

use super::uri::Uri;

/// A SIP method. Unknown extension methods are kept by name (RFC 3261 §7.1: methods are
/// case-sensitive tokens).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Refer,
    Notify,
    Subscribe,
    Message,
    Update,
    Prack,
    Publish,
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Refer => "REFER",
            Method::Notify => "NOTIFY",
            Method::Subscribe => "SUBSCRIBE",
            Method::Message => "MESSAGE",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }

    /// Maps a method token (case-sensitive, as RFC 3261 requires) to a `Method`.
    pub fn from_token(token: &str) -> Method {
        match token {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "REFER" => Method::Refer,
            "NOTIFY" => Method::Notify,
            "SUBSCRIBE" => Method::Subscribe,
            "MESSAGE" => Method::Message,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One header line, borrowed from its message: the name as spelled on the wire and the raw
/// value (leading/trailing whitespace trimmed, line folding replaced by a single space).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// Compact forms (RFC 3261 §7.3.3 and extensions) mapped to their long names.
const COMPACT_FORMS: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("e", "Content-Encoding"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("f", "From"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("t", "To"),
    ("v", "Via"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("o", "Event"),
    ("u", "Allow-Events"),
    ("x", "Session-Expires"),
];

/// The long form of a header name, for comparisons: compact forms expand, case is kept.
pub fn long_name(name: &str) -> &str {
    if name.len() == 1 {
        for (short, long) in COMPACT_FORMS {
            if name.eq_ignore_ascii_case(short) {
                return long;
            }
        }
    }
    name
}

/// True when two header names denote the same header (case-insensitive, compact forms folded).
pub fn same_header(a: &str, b: &str) -> bool {
    long_name(a).eq_ignore_ascii_case(long_name(b))
}

/// Where one header line's name and value are in `Headers::text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Line {
    name: (u32, u32),
    value: (u32, u32),
}

/// The ordered header list of a message.
///
/// Every name and value lives in one string, one after the other, and the lines are offsets
/// into it: parsing a message costs two allocations for all its headers instead of two per
/// header (allocation was most of the parse time). A value replaced by `set` leaves its old
/// text behind until the message is dropped; messages are short-lived and their edits few.
#[derive(Clone, Default)]
pub struct Headers {
    text: String,
    lines: Vec<Line>,
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    /// Room for `lines` header lines holding `bytes` of text, allocated once.
    pub fn with_capacity(lines: usize, bytes: usize) -> Self {
        Headers {
            text: String::with_capacity(bytes),
            lines: Vec::with_capacity(lines),
        }
    }

    /// Appends `part` to the text and returns where it is.
    fn store(&mut self, part: &str) -> (u32, u32) {
        let start = self.text.len();
        self.text.push_str(part);
        // Messages are bounded far below 4 GiB (parse::MAX_MESSAGE_BYTES); saturate rather
        // than wrap if a caller ever builds a monster.
        let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        (offset(start), offset(self.text.len()))
    }

    fn slice(&self, (start, end): (u32, u32)) -> &str {
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    fn header(&self, line: &Line) -> Header<'_> {
        Header {
            name: self.slice(line.name),
            value: self.slice(line.value),
        }
    }

    fn line(&mut self, name: &str, value: &str) -> Line {
        Line {
            name: self.store(name),
            value: self.store(value),
        }
    }

    /// Appends a header line.
    pub fn push(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let line = self.line(name.as_ref(), value.as_ref());
        self.lines.push(line);
    }

    /// Inserts a header line at the top (used for Via).
    pub fn push_front(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let line = self.line(name.as_ref(), value.as_ref());
        self.lines.insert(0, line);
    }

    /// Adds folded text to the value of the last line (a continuation line, RFC 3261 §7.3.1):
    /// one space, then `more`. Returns the new length of that value, or None without lines.
    pub fn continue_last(&mut self, more: &str) -> Option<usize> {
        let last = *self.lines.last()?;
        let mut value = self.slice(last.value).to_string();
        if !value.is_empty() {
            value.push(' ');
        }
        value.push_str(more);
        let stored = self.store(&value);
        if let Some(line) = self.lines.last_mut() {
            line.value = stored;
        }
        Some(value.len())
    }

    /// The raw value of the first line with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|h| same_header(h.name, name))
            .map(|h| h.value)
    }

    /// The raw values of every line with this name, in order (one per line; comma-separated
    /// values inside a line are split by the typed views).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |h| same_header(h.name, name))
            .map(|h| h.value)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Replaces every line with this name by one line with this value (appended at the end when
    /// absent, otherwise at the place of the first one).
    pub fn set(&mut self, name: &str, value: impl AsRef<str>) {
        match self.position(name) {
            Some(first) => {
                let stored = self.store(value.as_ref());
                self.lines[first].value = stored;
                let text = &self.text;
                let mut index = 0;
                self.lines.retain(|line| {
                    let line_name = text
                        .get(line.name.0 as usize..line.name.1 as usize)
                        .unwrap_or_default();
                    let keep = index <= first || !same_header(line_name, name);
                    index += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    /// Replaces the value of the first line with this name only (other lines of the name stay).
    /// False when there is none.
    pub fn set_first(&mut self, name: &str, value: impl AsRef<str>) -> bool {
        let Some(first) = self.position(name) else {
            return false;
        };
        let stored = self.store(value.as_ref());
        self.lines[first].value = stored;
        true
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.iter().position(|h| same_header(h.name, name))
    }

    /// Removes every line with this name.
    pub fn remove(&mut self, name: &str) {
        let text = &self.text;
        self.lines.retain(|line| {
            let line_name = text
                .get(line.name.0 as usize..line.name.1 as usize)
                .unwrap_or_default();
            !same_header(line_name, name)
        });
    }

    /// Removes the first line with this name and returns its value.
    pub fn remove_first(&mut self, name: &str) -> Option<String> {
        let at = self.position(name)?;
        let line = self.lines.remove(at);
        Some(self.slice(line.value).to_string())
    }

    /// The lines in order.
    pub fn iter(&self) -> impl Iterator<Item = Header<'_>> {
        self.lines.iter().map(|line| self.header(line))
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// Equal when the lines are (names and values, in order), whatever text `set` left behind.
impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|h| (h.name, h.value)))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Uri,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Request(Request),
    Response(Response),
}

impl Message {
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    pub fn headers_mut(&mut self) -> &mut Headers {
        match self {
            Message::Request(r) => &mut r.headers,
            Message::Response(r) => &mut r.headers,
        }
    }

    pub fn body(&self) -> &[u8] {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// The first line without CRLF, e.g. `INVITE sip:bob@biloxi.com SIP/2.0` or
    /// `SIP/2.0 200 OK`: the `summary` of a trace event.
    pub fn first_line(&self) -> String {
        match self {
            Message::Request(r) => r.first_line(),
            Message::Response(r) => r.first_line(),
        }
    }
}

impl Request {
    pub fn new(method: Method, uri: Uri) -> Self {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    pub fn first_line(&self) -> String {
        format!("{} {} SIP/2.0", self.method, self.uri)
    }
}

/// An Allow header that lists UPDATE.
pub fn allows_update(headers: &Headers) -> bool {
    headers
        .tokens("Allow")
        .iter()
        .any(|m| m.eq_ignore_ascii_case("UPDATE"))
}

impl Response {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Response {
            code,
            reason: reason.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    pub fn first_line(&self) -> String {
        format!("SIP/2.0 {} {}", self.code, self.reason)
    }

    /// The sender's Allow lists UPDATE (RFC 3311): it takes our session refreshes by UPDATE.
    pub fn allows_update(&self) -> bool {
        allows_update(&self.headers)
    }

    /// 1xx.
    pub fn is_provisional(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// >= 200.
    pub fn is_final(&self) -> bool {
        self.code >= 200
    }
}

/// The default reason phrase of a status code (RFC 3261 §21).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_names_match() {
        let mut h = Headers::new();
        h.push("v", "SIP/2.0/UDP a");
        h.push("VIA", "SIP/2.0/UDP b");
        h.push("i", "abc");
        assert_eq!(h.get_all("Via").count(), 2);
        assert_eq!(h.get("call-id"), Some("abc"));
    }

    #[test]
    fn set_replaces_all_lines_in_place() {
        let mut h = Headers::new();
        h.push("A", "1");
        h.push("Expires", "10");
        h.push("B", "2");
        h.push("expires", "20");
        h.set("Expires", "30");
        let names: Vec<_> = h.iter().map(|x| x.name).collect();
        assert_eq!(names, ["A", "Expires", "B"]);
        assert_eq!(h.get("Expires"), Some("30"));
    }
}
