//! Instant messages (RFC 3428 MESSAGE), sans-IO: the requests we send, and the checks an
//! incoming one passes before its text reaches the user. Text only (text/plain, UTF-8),
//! bounded in size; control characters never reach a terminal.

use super::message::{Method, Request};
use super::uri::Uri;

/// RFC 3428 §8: a MESSAGE must stay well below the path MTU over UDP unless congestion
/// controlled; 1300 bytes of body keeps the whole request under 1500 in practice.
pub const MAX_TEXT_BYTES: usize = 1300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    #[error("the message is empty")]
    Empty,
    #[error("the message is longer than {MAX_TEXT_BYTES} bytes")]
    TooLong,
    #[error("only text/plain messages are shown (got {0})")]
    NotText(String),
    #[error("the message is not UTF-8 text")]
    NotUtf8,
}

/// A MESSAGE request outside any dialog (the UA adds Via, Max-Forwards, Route, User-Agent).
pub fn build(
    target: &Uri,
    from: &str,
    from_tag: &str,
    call_id: &str,
    text: &str,
) -> Result<Request, MessageError> {
    check_outgoing(text)?;
    let mut request = Request::new(Method::Message, target.clone());
    request
        .headers
        .push("From", format!("{from};tag={from_tag}"));
    request.headers.push("To", format!("<{target}>"));
    request.headers.push("Call-ID", call_id);
    request.headers.push("CSeq", "1 MESSAGE");
    request
        .headers
        .push("Content-Type", "text/plain;charset=UTF-8");
    request.body = text.as_bytes().to_vec();
    Ok(request)
}

/// What may be sent: non-empty, bounded.
pub fn check_outgoing(text: &str) -> Result<(), MessageError> {
    if text.trim().is_empty() {
        return Err(MessageError::Empty);
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(MessageError::TooLong);
    }
    Ok(())
}

/// The text of an incoming MESSAGE, made safe to show: text/plain (no type counts as text),
/// UTF-8, bounded, control characters except newline replaced.
pub fn incoming_text(request: &Request) -> Result<String, MessageError> {
    if let Some(content_type) = request.headers.content_type()
        && content_type != "text/plain"
    {
        return Err(MessageError::NotText(
            content_type.chars().take(64).collect(),
        ));
    }
    if let Some(charset) = request.headers.get("Content-Type").and_then(|v| {
        v.split(';').skip(1).find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| value.trim().trim_matches('"').to_ascii_lowercase())
        })
    }) && charset != "utf-8"
        && charset != "us-ascii"
    {
        return Err(MessageError::NotText(format!(
            "text/plain;charset={charset}"
        )));
    }
    if request.body.len() > MAX_TEXT_BYTES {
        return Err(MessageError::TooLong);
    }
    let text = std::str::from_utf8(&request.body).map_err(|_| MessageError::NotUtf8)?;
    let clean = sanitize(text);
    if clean.trim().is_empty() {
        return Err(MessageError::Empty);
    }
    Ok(clean)
}

/// Control characters (ESC sequences could drive the terminal) become `�`; newlines stay as
/// `\n` (CR LF and CR too), tabs become a space.
pub fn sanitize(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\n' => '\n',
            '\r' => '\n',
            '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(content_type: Option<&str>, body: &[u8]) -> Request {
        let mut r = Request::new(Method::Message, "sip:a@h".parse().expect("uri"));
        if let Some(ct) = content_type {
            r.headers.push("Content-Type", ct);
        }
        r.body = body.to_vec();
        r
    }

    #[test]
    fn incoming_text_is_checked_and_cleaned() {
        assert_eq!(
            incoming_text(&message(
                Some("text/plain;charset=UTF-8"),
                "Grüße \u{1b}[2J☕\r\nzwei".as_bytes()
            )),
            Ok("Grüße \u{FFFD}[2J☕\nzwei".to_string())
        );
        assert_eq!(incoming_text(&message(None, b"hi")), Ok("hi".into()));
        assert!(matches!(
            incoming_text(&message(Some("text/html"), b"<b>x</b>")),
            Err(MessageError::NotText(_))
        ));
        assert!(matches!(
            incoming_text(&message(Some("text/plain; charset=iso-8859-1"), b"x")),
            Err(MessageError::NotText(_))
        ));
        assert_eq!(
            incoming_text(&message(Some("text/plain"), b"\xff\xfe")),
            Err(MessageError::NotUtf8)
        );
        assert_eq!(
            incoming_text(&message(
                Some("text/plain"),
                &vec![b'a'; MAX_TEXT_BYTES + 1]
            )),
            Err(MessageError::TooLong)
        );
        assert_eq!(
            incoming_text(&message(Some("text/plain"), b"  ")),
            Err(MessageError::Empty)
        );
    }

    #[test]
    fn outgoing_messages_are_bounded_text() {
        let target: Uri = "sip:bob@example.com".parse().expect("uri");
        let r = build(&target, "<sip:a@h>", "t", "c", "¡hola!").expect("builds");
        assert_eq!(
            r.headers.get("Content-Type"),
            Some("text/plain;charset=UTF-8")
        );
        assert_eq!(r.body, "¡hola!".as_bytes());
        assert_eq!(
            build(&target, "<sip:a@h>", "t", "c", " "),
            Err(MessageError::Empty)
        );
        assert_eq!(
            build(
                &target,
                "<sip:a@h>",
                "t",
                "c",
                &"x".repeat(MAX_TEXT_BYTES + 1)
            ),
            Err(MessageError::TooLong)
        );
    }
}
