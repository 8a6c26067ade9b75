//! Bytes -> Message (RFC 3261 §7, §25), plus the per-request checks a UAS runs before acting.
//!
//! Two layers, so that a UA can still answer a broken request:
//! - `parse_datagram` / `parse_stream` check framing and syntax: the start line, header lines,
//!   UTF-8, Content-Length. When they fail there is nothing reliable to answer to.
//! - `validate_request` / `validate_response` check the headers that must be there and parse
//!   (Via, From, To, Call-ID, CSeq, ...). When they fail, the UA still holds the message and can
//!   build the 400 from its headers.
//!
//! Every input is bounded: message size, header count, folded line length, URI length.

use super::error::ParseError;
use super::header::lex::{excerpt, is_token, trim_wsp};
use super::message::{Headers, Message, Method, Request, Response};
use super::uri::{self, Scheme, Uri};

/// Limits that bound what hostile input can make us allocate.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 256;
/// Longest header value after unfolding, and longest start line.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

const CRLF: &[u8] = b"\r\n";
const BLANK_LINE: &[u8] = b"\r\n\r\n";

/// Parses one complete message from a datagram. Octets past Content-Length are ignored
/// (RFC 4475 §3.1.1.8); a Content-Length larger than the datagram is an error; without
/// Content-Length the body is the rest of the datagram. Leading CRLFs are skipped.
///
/// This checks syntax only; call `validate_request` / `validate_response` (or
/// `validate_message`) before acting on the message.
pub fn parse_datagram(bytes: &[u8]) -> Result<Message, ParseError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge(format!("{} bytes", bytes.len())));
    }
    let data = bytes.get(leading_crlf_len(bytes)..).unwrap_or_default();
    let head_end = find_blank_line(data).ok_or(ParseError::Incomplete)?;
    let mut message = parse_head_bytes(data.get(..head_end).unwrap_or_default())?;
    let rest = data.get(head_end + BLANK_LINE.len()..).unwrap_or_default();
    let body = match message.headers().content_length()? {
        None => rest,
        Some(length) => rest.get(..length).ok_or_else(|| {
            ParseError::ContentLength(format!(
                "Content-Length {length} but only {} octets follow",
                rest.len()
            ))
        })?,
    };
    set_body(&mut message, body.to_vec());
    Ok(message)
}

/// Result of framing a stream (TCP/TLS) buffer.
// A frame lives only until the caller takes the message out; boxing it would change the API
// the transport layer codes against for no measurable gain.
#[allow(clippy::large_enum_variant)]
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
/// A header section that does not end within `MAX_MESSAGE_BYTES` is `TooLarge`: the caller
/// should close the connection, as no resynchronisation is possible.
pub fn parse_stream(buf: &[u8]) -> Result<StreamFrame, ParseError> {
    let keep_alive = leading_crlf_len(buf);
    if keep_alive > 0 {
        return Ok(StreamFrame::KeepAlive(keep_alive));
    }
    let window = buf.get(..MAX_MESSAGE_BYTES).unwrap_or(buf);
    let Some(head_end) = find_blank_line(window) else {
        if buf.len() >= MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge(
                "header section never ends".to_string(),
            ));
        }
        return Ok(StreamFrame::Incomplete);
    };
    let mut message = parse_head_bytes(buf.get(..head_end).unwrap_or_default())?;
    let length = message
        .headers()
        .content_length()?
        .ok_or_else(|| ParseError::ContentLength("missing on a stream transport".to_string()))?;
    let body_start = head_end + BLANK_LINE.len();
    let total = body_start.saturating_add(length);
    if total > MAX_MESSAGE_BYTES {
        return Err(ParseError::TooLarge(format!("{total} bytes")));
    }
    let Some(body) = buf.get(body_start..total) else {
        return Ok(StreamFrame::Incomplete);
    };
    set_body(&mut message, body.to_vec());
    Ok(StreamFrame::Message(message, total))
}

/// The start line and headers alone, body left empty, from a datagram whose body framing may be
/// broken (bad or too large Content-Length): what a UA needs to answer such a request with 400.
/// A missing blank line is tolerated here.
pub fn parse_head(bytes: &[u8]) -> Result<Message, ParseError> {
    let bytes = bytes.get(..MAX_MESSAGE_BYTES).unwrap_or(bytes);
    let data = bytes.get(leading_crlf_len(bytes)..).unwrap_or_default();
    let head_end = find_blank_line(data).unwrap_or_else(|| {
        let mut end = data.len();
        while data.get(..end).is_some_and(|d| d.ends_with(CRLF)) {
            end -= CRLF.len();
        }
        end
    });
    parse_head_bytes(data.get(..head_end).unwrap_or_default())
}

pub fn parse_uri(s: &str) -> Result<Uri, ParseError> {
    uri::parse(s)
}

/// The checks a UAS runs on a syntactically valid request before handing it on: the mandatory
/// headers (Via, From, To, Call-ID, CSeq) are present, single where they must be, and parse;
/// the CSeq method equals the request method; CSeq, Max-Forwards and Expires are in range;
/// Contact, Route and Record-Route parse; a sip/sips Request-URI carries no headers; a Date
/// header is in RFC 1123 GMT form.
///
/// Application decisions (unsupported URI scheme 416, Require 420, Content-Type 415, unknown
/// method 501/405, Max-Forwards 0 at a proxy 483) are the UA's, not made here.
pub fn validate_request(req: &Request) -> Result<(), ParseError> {
    // One exception: an INVITE whose only URI header is Replaces. baresip 1.0 (libre 1.1)
    // follows an attended transfer's REFER by putting the whole Refer-To URI, Replaces and
    // all, in the Request-URI; the UA takes it as the Replaces header (RFC 3891).
    let replaces_only = req.method == Method::Invite
        && req.uri.headers.len() == 1
        && req.uri.headers[0].0.eq_ignore_ascii_case("Replaces");
    if req.uri.is_sip() && !req.uri.headers.is_empty() && !replaces_only {
        // RFC 3261 §19.1.1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
        return Err(ParseError::Uri(
            "Request-URI must not contain headers".to_string(),
        ));
    }
    let h = &req.headers;
    validate_common(h)?;
    let cseq = h.cseq()?;
    if cseq.method != req.method {
        return Err(ParseError::CSeqMismatch {
            method: excerpt(req.method.as_str()),
            cseq: excerpt(cseq.method.as_str()),
        });
    }
    h.max_forwards()?;
    h.expires()?;
    h.contacts()?;
    h.routes()?;
    h.record_routes()?;
    if let Some(date) = h.get("Date")
        && !is_rfc1123_gmt(date)
    {
        return Err(ParseError::header("Date", "not an RFC 1123 date in GMT"));
    }
    Ok(())
}

/// The checks a UAC runs on a response before matching it to a transaction: Via, From, To,
/// Call-ID and CSeq present and parseable. A response that fails is dropped, never answered.
pub fn validate_response(resp: &Response) -> Result<(), ParseError> {
    validate_common(&resp.headers)?;
    resp.headers.cseq()?;
    Ok(())
}

/// `validate_request` or `validate_response`, whichever applies.
pub fn validate_message(message: &Message) -> Result<(), ParseError> {
    match message {
        Message::Request(r) => validate_request(r),
        Message::Response(r) => validate_response(r),
    }
}

fn validate_common(h: &Headers) -> Result<(), ParseError> {
    if h.vias()?.is_empty() {
        return Err(ParseError::MissingHeader("Via".to_string()));
    }
    h.from()?;
    h.to()?;
    h.call_id()?;
    h.content_length()?;
    Ok(())
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 3261 §20.17 allows only GMT).
fn is_rfc1123_gmt(value: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = trim_wsp(value).split(' ').collect();
    let [day, date, month, year, time, zone] = parts.as_slice() else {
        return false;
    };
    let time_ok = {
        let fields: Vec<&str> = time.split(':').collect();
        fields.len() == 3 && fields.iter().all(|f| digits(f, 2))
    };
    day.strip_suffix(',').is_some_and(|d| DAYS.contains(&d))
        && digits(date, 2)
        && MONTHS.contains(month)
        && digits(year, 4)
        && time_ok
        && *zone == "GMT"
}

fn set_body(message: &mut Message, body: Vec<u8>) {
    match message {
        Message::Request(r) => r.body = body,
        Message::Response(r) => r.body = body,
    }
}

fn leading_crlf_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while bytes.get(at..at + CRLF.len()) == Some(CRLF) {
        at += CRLF.len();
    }
    at
}

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    memchr::memmem::find(bytes, BLANK_LINE)
}

/// The lines of a header section, split at CRLF (a bare CR or LF stays inside its line and is
/// rejected there).
fn crlf_lines(head: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(head);
    std::iter::from_fn(move || {
        let text = rest?;
        let bytes = text.as_bytes();
        let mut from = 0;
        loop {
            match memchr::memchr(b'\n', bytes.get(from..).unwrap_or_default()) {
                Some(at) if from + at > 0 && bytes.get(from + at - 1) == Some(&b'\r') => {
                    let end = from + at - 1;
                    rest = text.get(from + at + 1..);
                    return text.get(..end);
                }
                Some(at) => from += at + 1,
                None => {
                    rest = None;
                    return Some(text);
                }
            }
        }
    })
}

/// Parses the start line and the header lines (everything before the blank line).
fn parse_head_bytes(head: &[u8]) -> Result<Message, ParseError> {
    let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = crlf_lines(head);
    let start_line = lines.next().unwrap_or_default();
    let mut message = parse_start_line(start_line)?;
    // One allocation for the text of every header and one for the lines: a line per 40
    // bytes is a fair guess for SIP (it only grows if wrong).
    let estimate = head.len() / 40 + 4;
    let headers = parse_header_lines(lines, Headers::with_capacity(estimate, head.len()))?;
    *message.headers_mut() = headers;
    Ok(message)
}

fn parse_header_lines<'a>(
    lines: impl Iterator<Item = &'a str>,
    mut headers: Headers,
) -> Result<Headers, ParseError> {
    for line in lines {
        let bytes = line.as_bytes();
        if memchr::memchr2(b'\r', b'\n', bytes).is_some() {
            return Err(ParseError::header("(line)", "bare CR or LF inside a line"));
        }
        if matches!(bytes.first(), Some(b' ' | b'\t')) {
            // Line folding: the continuation joins the previous value with one space.
            let continuation = trim_wsp(line);
            if continuation.is_empty() {
                if headers.is_empty() {
                    return Err(ParseError::header(
                        "(first)",
                        "continuation line before any header",
                    ));
                }
                continue;
            }
            let length = headers.continue_last(continuation).ok_or_else(|| {
                ParseError::header("(first)", "continuation line before any header")
            })?;
            if length > MAX_LINE_BYTES {
                let name = headers.iter().last().map(|h| h.name).unwrap_or_default();
                return Err(ParseError::TooLarge(format!("{} header", excerpt(name))));
            }
            continue;
        }
        let colon = memchr::memchr(b':', bytes)
            .ok_or_else(|| ParseError::header(line, "no ':' in header line"))?;
        // ':' is ASCII, so both sides are on character boundaries.
        let (name, value) = (
            line.get(..colon).unwrap_or_default(),
            line.get(colon + 1..).unwrap_or_default(),
        );
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(ParseError::header(name, "header name is not a token"));
        }
        if value.len() > MAX_LINE_BYTES {
            return Err(ParseError::TooLarge(format!("{} header", excerpt(name))));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ParseError::TooLarge(format!(
                "more than {MAX_HEADERS} headers"
            )));
        }
        headers.push(name, trim_wsp(value));
    }
    Ok(headers)
}

/// `SIP/2.0` (case-insensitive) is fine; another `SIP/x.y` is a version error (505); anything
/// else is a malformed start line.
fn check_version(version: &str) -> Result<(), ParseError> {
    if version.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let looks_like_sip = version
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
        && version.get(4..).is_some_and(|v| {
            v.split_once('.').is_some_and(|(major, minor)| {
                [major, minor]
                    .iter()
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        });
    if looks_like_sip {
        Err(ParseError::Version(excerpt(version)))
    } else {
        Err(ParseError::StartLine(format!(
            "bad SIP version {:?}",
            excerpt(version)
        )))
    }
}

fn parse_start_line(line: &str) -> Result<Message, ParseError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(ParseError::TooLarge("start line".to_string()));
    }
    let is_response = line
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"));
    if is_response {
        let mut parts = line.splitn(3, ' ');
        check_version(parts.next().unwrap_or_default())?;
        let code_text = parts.next().unwrap_or_default();
        let code = Some(code_text)
            .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|c| (100..=699).contains(c))
            .ok_or_else(|| {
                ParseError::StartLine(format!("bad status code {:?}", excerpt(code_text)))
            })?;
        let reason = parts.next().unwrap_or_default();
        return Ok(Message::Response(Response::new(code, reason)));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version: exactly single spaces, nothing before
    // the method and nothing after the version (RFC 4475 §3.1.2.8-10).
    let parts: Vec<&str> = line.splitn(4, ' ').collect();
    let [method, uri_text, version] = parts.as_slice() else {
        return Err(ParseError::StartLine(format!(
            "expected 'Method SP Request-URI SP SIP-Version' in {:?}",
            excerpt(line)
        )));
    };
    if !is_token(method) {
        return Err(ParseError::StartLine(format!(
            "bad method {:?}",
            excerpt(method)
        )));
    }
    check_version(version)?;
    let uri = uri::parse(uri_text)?;
    if matches!(uri.scheme, Scheme::Sip | Scheme::Sips) && uri.host.is_empty() {
        return Err(ParseError::Uri("empty host".to_string()));
    }
    Ok(Message::Request(Request::new(
        Method::from_token(method),
        uri,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn request(bytes: &[u8]) -> Request {
        match parse_datagram(bytes).unwrap() {
            Message::Request(r) => r,
            Message::Response(r) => panic!("expected a request, got {}", r.first_line()),
        }
    }

    #[test]
    fn parses_a_basic_invite() {
        let r = request(INVITE);
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri.to_string(), "sip:bob@biloxi.com");
        assert_eq!(r.headers.len(), 9);
        assert_eq!(r.body, b"v=0\n");
        assert_eq!(r.headers.call_id(), Ok("a84b4c76e66710@pc33.atlanta.com"));
        validate_request(&r).unwrap();
    }

    #[test]
    fn serialized_message_parses_back_identically() {
        let r = request(INVITE);
        let again = request(&r.to_bytes());
        assert_eq!(again, r);
    }

    #[test]
    fn responses_with_empty_and_utf8_reasons() {
        let bytes = "SIP/2.0 180 Ça sonne\r\nVia: SIP/2.0/UDP h\r\n\r\n".as_bytes();
        let Ok(Message::Response(r)) = parse_datagram(bytes) else {
            panic!("response expected");
        };
        assert_eq!((r.code, r.reason.as_str()), (180, "Ça sonne"));
        let Ok(Message::Response(empty)) = parse_datagram(b"SIP/2.0 100 \r\n\r\n") else {
            panic!("response expected");
        };
        assert_eq!(empty.reason, "");
        for bad in [
            "SIP/2.0 99 x",
            "SIP/2.0 700 x",
            "SIP/2.0 2000 x",
            "SIP/2.0 abc x",
        ] {
            let bytes = format!("{bad}\r\n\r\n");
            assert!(matches!(
                parse_datagram(bytes.as_bytes()),
                Err(ParseError::StartLine(_))
            ));
        }
        assert_eq!(
            parse_datagram(b"SIP/3.0 200 OK\r\n\r\n").map_err(|e| e.status()),
            Err(505)
        );
    }

    #[test]
    fn request_line_must_be_exact() {
        for bad in [
            " INVITE sip:a@b SIP/2.0",
            "INVITE  sip:a@b SIP/2.0",
            "INVITE sip:a@b SIP/2.0 ",
            "INVITE sip:a@b",
            "INVITE <sip:a@b> SIP/2.0",
            "INV\"ITE sip:a@b SIP/2.0",
            "INVITE sip:a@b HTTP/1.1",
        ] {
            let bytes = format!("{bad}\r\n\r\n");
            let error = parse_datagram(bytes.as_bytes()).unwrap_err();
            assert_eq!(error.status(), 400, "{bad}: {error}");
        }
        let err = parse_datagram(b"OPTIONS sip:a@b SIP/7.0\r\n\r\n").unwrap_err();
        assert_eq!(err, ParseError::Version("SIP/7.0".into()));
    }

    #[test]
    fn folding_compact_forms_and_unknown_headers() {
        let bytes = b"OPTIONS sip:a@b SIP/2.0\r\nSubject:  hello\r\n  world \r\n\tagain\r\nX-Odd  :  ;;,,;\r\ni: id\r\n\r\n";
        let r = request(bytes);
        assert_eq!(r.headers.get("subject"), Some("hello world again"));
        assert_eq!(r.headers.get("X-Odd"), Some(";;,,;"));
        assert_eq!(r.headers.iter().nth(1).map(|h| h.name), Some("X-Odd"));
        assert_eq!(r.headers.call_id(), Ok("id"));
    }

    #[test]
    fn header_syntax_errors() {
        for head in [
            "OPTIONS sip:a@b SIP/2.0\r\n folded-first: x",
            "OPTIONS sip:a@b SIP/2.0\r\nNo colon here",
            "OPTIONS sip:a@b SIP/2.0\r\nBad Name: x",
            "OPTIONS sip:a@b SIP/2.0\r\nX: a\rb",
        ] {
            let bytes = format!("{head}\r\n\r\n");
            assert!(parse_datagram(bytes.as_bytes()).is_err(), "{head:?}");
        }
        assert_eq!(
            parse_datagram(b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n"),
            Err(ParseError::NotUtf8)
        );
    }

    #[test]
    fn datagram_body_framing() {
        let head = "OPTIONS sip:a@b SIP/2.0\r\n";
        let with = |cl: &str, body: &str| format!("{head}{cl}\r\n{body}");
        let r = request(with("l: 3\r\n", "abcdef").as_bytes());
        assert_eq!(r.body, b"abc");
        let r = request(with("", "rest of datagram").as_bytes());
        assert_eq!(r.body, b"rest of datagram");
        for cl in ["l: 30\r\n", "l: -1\r\n", "l: 1e3\r\n", "l: 3\r\nl: 3\r\n"] {
            let error = parse_datagram(with(cl, "abc").as_bytes()).unwrap_err();
            assert!(
                matches!(error, ParseError::ContentLength(_)),
                "{cl:?}: {error}"
            );
        }
        assert_eq!(
            parse_datagram(b"OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n"),
            Err(ParseError::Incomplete)
        );
        let big = vec![b'a'; MAX_MESSAGE_BYTES + 1];
        assert_eq!(parse_datagram(&big).map_err(|e| e.status()), Err(513));
    }

    #[test]
    fn parse_head_salvages_a_request_with_bad_framing() {
        let bytes = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\nl: 9999\r\n\r\nshort";
        assert!(parse_datagram(bytes).is_err());
        let head = parse_head(bytes).unwrap();
        assert_eq!(head.headers().call_id(), Ok("x"));
        assert!(head.body().is_empty());
    }

    #[test]
    fn stream_framing_keepalives_and_partial_bodies() {
        assert!(matches!(
            parse_stream(b"\r\n\r\nINVITE"),
            Ok(StreamFrame::KeepAlive(4))
        ));
        assert!(matches!(parse_stream(b""), Ok(StreamFrame::Incomplete)));
        for cut in [10, INVITE.len() - 1] {
            let partial = INVITE.get(..cut).unwrap();
            assert!(
                matches!(parse_stream(partial), Ok(StreamFrame::Incomplete)),
                "{cut}"
            );
        }
        let mut two = INVITE.to_vec();
        two.extend_from_slice(INVITE);
        let Ok(StreamFrame::Message(first, used)) = parse_stream(&two) else {
            panic!("message expected");
        };
        assert_eq!(used, INVITE.len());
        assert_eq!(first.body(), b"v=0\n");
        let no_length = b"OPTIONS sip:a@b SIP/2.0\r\nX: y\r\n\r\n";
        assert!(matches!(
            parse_stream(no_length),
            Err(ParseError::ContentLength(_))
        ));
        let endless = vec![b'a'; MAX_MESSAGE_BYTES];
        assert!(matches!(
            parse_stream(&endless),
            Err(ParseError::TooLarge(_))
        ));
        let huge_body = b"OPTIONS sip:a@b SIP/2.0\r\nl: 999999999\r\n\r\n";
        assert!(matches!(
            parse_stream(huge_body),
            Err(ParseError::TooLarge(_))
        ));
    }

    #[test]
    fn header_count_is_bounded() {
        let mut bytes = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            bytes.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_datagram(&bytes),
            Err(ParseError::TooLarge(_))
        ));
    }

    #[test]
    fn validation_of_mandatory_headers_and_cseq() {
        let mut r = request(INVITE);
        validate_request(&r).unwrap();
        r.method = Method::Options;
        assert!(matches!(
            validate_request(&r),
            Err(ParseError::CSeqMismatch { .. })
        ));
        let mut r = request(INVITE);
        r.headers.remove("Call-ID");
        assert_eq!(
            validate_request(&r),
            Err(ParseError::MissingHeader("Call-ID".into()))
        );
        let mut r = request(INVITE);
        r.headers.set("Max-Forwards", "300");
        assert!(validate_request(&r).is_err());
        let mut r = request(INVITE);
        r.headers.push("Date", "Sat, 13 Nov 2010 23:29:00 GMT");
        validate_request(&r).unwrap();
        r.headers.set("Date", "Fri, 01 Jan 2010 16:00:00 EST");
        assert!(validate_request(&r).is_err());
    }

    /// Tiny deterministic PRNG for the mutation test (xorshift64).
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn torture_corpus() -> Vec<Vec<u8>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torture");
        let mut corpus = vec![INVITE.to_vec()];
        for dir in ["rfc4475", "rfc5118"] {
            let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            paths.sort();
            for path in paths {
                let bytes = std::fs::read(&path).unwrap();
                if dir == "rfc5118" {
                    let text = String::from_utf8(bytes).unwrap().replace('\n', "\r\n");
                    corpus.push(text.into_bytes());
                } else {
                    corpus.push(bytes);
                }
            }
        }
        corpus
    }

    fn headers_without_length(m: &Message) -> Vec<(String, String)> {
        m.headers()
            .iter()
            .filter(|h| !super::super::message::same_header(h.name, "Content-Length"))
            .map(|h| (h.name.to_string(), h.value.to_string()))
            .collect()
    }

    fn assert_round_trips(m: &Message) {
        let again = parse_datagram(&m.to_bytes())
            .unwrap_or_else(|e| panic!("re-parse of {:?} failed: {e}", m.first_line()));
        assert_eq!(again.first_line(), m.first_line());
        assert_eq!(headers_without_length(&again), headers_without_length(m));
        assert_eq!(again.body(), m.body());
        // Typed views must agree too where they parse.
        assert_eq!(again.headers().vias().ok(), m.headers().vias().ok());
        assert_eq!(again.headers().cseq().ok(), m.headers().cseq().ok());
    }

    #[test]
    fn ten_thousand_mutations_never_panic_and_round_trip() {
        let corpus = torture_corpus();
        assert!(corpus.len() > 60);
        let mut rng = XorShift(0x5EED_CAFE_F00D_D00D);
        let interesting: &[u8] = b"\r\n :;,<>\"\\%@[]/=0\x00\xff";
        let mut parsed = 0;
        for _ in 0..10_000 {
            let mut bytes = corpus[rng.below(corpus.len())].clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len() + 1);
                match rng.below(4) {
                    0 if at < bytes.len() => bytes[at] = rng.next() as u8,
                    1 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    2 => bytes.insert(at, interesting[rng.below(interesting.len())]),
                    _ => bytes.truncate(at),
                }
            }
            if let Ok(m) = parse_datagram(&bytes) {
                parsed += 1;
                let _ = validate_message(&m);
                assert_round_trips(&m);
            }
            if let Ok(StreamFrame::Message(m, used)) = parse_stream(&bytes) {
                assert!(used <= bytes.len());
                assert_round_trips(&m);
            }
            let _ = parse_head(&bytes);
        }
        eprintln!("{parsed} of 10000 mutated datagrams parsed and round-tripped");
        // The mutations must leave enough valid messages for the round trip to mean something.
        assert!(parsed > 1000, "only {parsed} mutated messages parsed");
    }
}
