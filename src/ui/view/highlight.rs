//! Syntax colours for the full-message view: the start line (method, URI, status class),
//! header names apart from their values, a rule before the body, and SDP bodies by line type.
//! Pure: `highlight(raw)` gives one `Line` per line of the message (the blank line between
//! headers and body becomes the rule), so scrolling by raw lines still matches.

use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use super::log::summary_style;
use super::printable;

/// `SIP/2.0` on start lines, `:` after header names, `=` in SDP, the body rule.
pub const PUNCT: Style = Style::new().fg(Color::DarkGray);
pub const URI: Style = Style::new().fg(Color::Cyan);
pub const HEADER_NAME: Style = Style::new()
    .fg(Color::LightBlue)
    .add_modifier(Modifier::BOLD);
pub const HEADER_VALUE: Style = Style::new();
/// SDP `m=` lines: the media and its port and formats stand out.
pub const SDP_MEDIA: Style = Style::new()
    .fg(Color::LightGreen)
    .add_modifier(Modifier::BOLD);
pub const SDP_ATTRIBUTE: Style = Style::new().fg(Color::Yellow);
pub const SDP_CONNECTION: Style = Style::new().fg(Color::Cyan);
pub const SDP_SESSION: Style = Style::new().fg(Color::Magenta);
pub const SDP_OTHER: Style = Style::new().fg(Color::Gray);

/// The style of an SDP line type letter (`v`, `o`, `m`, `a`, ...).
pub fn sdp_type_style(letter: char) -> Style {
    match letter {
        'm' => SDP_MEDIA,
        'a' => SDP_ATTRIBUTE,
        'c' => SDP_CONNECTION,
        'v' | 'o' | 's' | 't' => SDP_SESSION,
        _ => SDP_OTHER,
    }
}

/// The whole message, coloured, one `Line` per line of `raw`.
pub fn highlight(raw: &[u8]) -> Vec<Line<'static>> {
    // SRTP keys never reach the screen (the engine masks them already; this is the view's
    // own guarantee, with the same function every export uses).
    let raw = crate::sdp::redact_inline_key_bytes(raw);
    let text = String::from_utf8_lossy(&raw);
    let mut lines = Vec::new();
    let mut rows = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let Some(first) = rows.next() else {
        return lines;
    };
    lines.push(start_line(first));
    let mut sdp = false;
    for row in rows.by_ref() {
        if row.is_empty() {
            break;
        }
        if let Some((name, _)) = row.split_once(':') {
            let name = name.trim();
            if (name.eq_ignore_ascii_case("content-type") || name.eq_ignore_ascii_case("c"))
                && row.to_ascii_lowercase().contains("application/sdp")
            {
                sdp = true;
            }
        }
        lines.push(header(row));
    }
    let mut body: Vec<&str> = rows.collect();
    // A message ending in CRLF CRLF splits into one last empty piece: no body.
    if body.iter().all(|l| l.is_empty()) {
        if !body.is_empty() {
            lines.push(Line::raw(""));
            lines.extend(body.iter().skip(1).map(|_| Line::raw("")));
        }
        return lines;
    }
    // The piece after a final line break is not a line of its own.
    if body.last().is_some_and(|l| l.is_empty()) {
        body.pop();
    }
    sdp |= body.first().is_some_and(|l| l.starts_with("v=0"));
    let bytes = body_len(&raw);
    let kind = if sdp { "SDP" } else { "body" };
    lines.push(Line::styled(
        format!("──── {kind}, {bytes} bytes ────"),
        PUNCT,
    ));
    for row in body {
        lines.push(if sdp {
            sdp_line(row)
        } else {
            Line::raw(printable(row))
        });
    }
    lines
}

/// Bytes after the blank line that ends the headers.
fn body_len(raw: &[u8]) -> usize {
    let crlf = raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    let start = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(raw.len()),
    };
    raw.len() - start
}

/// `METHOD URI SIP/2.0` or `SIP/2.0 CODE Reason`.
fn start_line(line: &str) -> Line<'static> {
    let line = printable(line);
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let style = summary_style(&line).add_modifier(Modifier::BOLD);
        return Line::from(vec![
            Span::styled("SIP/2.0", PUNCT),
            Span::raw(" "),
            Span::styled(rest.to_string(), style),
        ]);
    }
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap_or_default().to_string();
    let uri = parts.next().unwrap_or_default().to_string();
    let version = parts.next().unwrap_or_default().to_string();
    let mut spans = vec![Span::styled(method, summary_style(&line))];
    if !uri.is_empty() {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(uri, URI));
    }
    if !version.is_empty() {
        spans.push(Span::raw(" "));
        spans.push(Span::styled(version, PUNCT));
    }
    Line::from(spans)
}

/// `Name: value`; a folded continuation line (leading white space) is all value.
fn header(line: &str) -> Line<'static> {
    let line = printable(line);
    if line.starts_with(' ') {
        return Line::styled(line, HEADER_VALUE);
    }
    match line.split_once(':') {
        Some((name, value)) => Line::from(vec![
            Span::styled(name.to_string(), HEADER_NAME),
            Span::styled(":", PUNCT),
            Span::styled(value.to_string(), HEADER_VALUE),
        ]),
        None => Line::raw(line),
    }
}

/// `x=value`: the type letter coloured; `a=name:value` splits the attribute name off; `m=`
/// lines are bold whole.
fn sdp_line(line: &str) -> Line<'static> {
    let line = printable(line);
    let mut chars = line.chars();
    let (Some(letter), Some('=')) = (chars.next(), chars.next()) else {
        return Line::raw(line);
    };
    let value: String = chars.collect();
    let style = sdp_type_style(letter);
    let mut spans = vec![
        Span::styled(letter.to_string(), style.add_modifier(Modifier::BOLD)),
        Span::styled("=", PUNCT),
    ];
    match letter {
        'a' => match value.split_once(':') {
            Some((name, rest)) => {
                spans.push(Span::styled(name.to_string(), SDP_ATTRIBUTE));
                spans.push(Span::styled(":", PUNCT));
                spans.push(Span::raw(rest.to_string()));
            }
            None => spans.push(Span::styled(value, SDP_ATTRIBUTE)),
        },
        'm' => spans.push(Span::styled(value, SDP_MEDIA)),
        _ => spans.push(Span::raw(value)),
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
        Call-ID: a84b@pc33\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 120\r\n\
        \r\n\
        v=0\r\n\
        o=- 1 1 IN IP4 127.0.0.1\r\n\
        c=IN IP4 127.0.0.1\r\n\
        m=audio 49170 RTP/AVP 0 101\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=sendrecv\r\n";

    fn span<'a>(line: &'a Line, text: &str) -> Option<&'a Span<'a>> {
        line.spans.iter().find(|s| s.content == text)
    }

    fn text(line: &Line) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn request_line_colours_method_uri_and_version() {
        let lines = highlight(INVITE.as_bytes());
        let first = &lines[0];
        assert_eq!(text(first), "INVITE sip:bob@biloxi.com SIP/2.0");
        assert_eq!(
            span(first, "INVITE").map(|s| s.style),
            Some(
                Style::new()
                    .fg(Color::LightGreen)
                    .add_modifier(Modifier::BOLD)
            )
        );
        assert_eq!(
            span(first, "sip:bob@biloxi.com").map(|s| s.style),
            Some(URI)
        );
        assert_eq!(span(first, "SIP/2.0").map(|s| s.style), Some(PUNCT));
    }

    #[test]
    fn status_line_colours_by_class() {
        for (line, color) in [
            ("SIP/2.0 180 Ringing", Color::Yellow),
            ("SIP/2.0 200 OK", Color::Green),
            ("SIP/2.0 486 Busy Here", Color::Red),
        ] {
            let lines = highlight(format!("{line}\r\nCSeq: 1 INVITE\r\n\r\n").as_bytes());
            let rest = line.trim_start_matches("SIP/2.0 ");
            let style = span(&lines[0], rest).map(|s| s.style);
            assert_eq!(style.and_then(|s| s.fg), Some(color), "{line}");
            assert!(style.is_some_and(|s| s.add_modifier.contains(Modifier::BOLD)));
            assert_eq!(span(&lines[0], "SIP/2.0").map(|s| s.style), Some(PUNCT));
        }
    }

    #[test]
    fn header_names_differ_from_values() {
        let lines = highlight(INVITE.as_bytes());
        let via = &lines[1];
        assert_eq!(span(via, "Via").map(|s| s.style), Some(HEADER_NAME));
        assert_eq!(span(via, ":").map(|s| s.style), Some(PUNCT));
        assert_eq!(
            span(via, " SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1").map(|s| s.style),
            Some(HEADER_VALUE)
        );
        assert_ne!(HEADER_NAME, HEADER_VALUE);
    }

    #[test]
    fn the_body_is_set_apart_and_sdp_lines_coloured_by_type() {
        let lines = highlight(INVITE.as_bytes());
        // One line per raw line: the scroll limits count raw lines.
        assert_eq!(lines.len(), INVITE.split('\n').count() - 1);
        let rule = &lines[5];
        assert!(text(rule).contains("SDP"), "{}", text(rule));
        assert_eq!(rule.style, PUNCT);
        let v = &lines[6];
        assert_eq!(span(v, "v").map(|s| s.style.fg), Some(SDP_SESSION.fg));
        let c = &lines[8];
        assert_eq!(span(c, "c").map(|s| s.style.fg), Some(SDP_CONNECTION.fg));
        let m = &lines[9];
        assert_eq!(span(m, "m").map(|s| s.style.fg), Some(SDP_MEDIA.fg));
        assert_eq!(
            span(m, "audio 49170 RTP/AVP 0 101").map(|s| s.style),
            Some(SDP_MEDIA)
        );
        let rtpmap = &lines[10];
        assert_eq!(
            span(rtpmap, "a").map(|s| s.style.fg),
            Some(SDP_ATTRIBUTE.fg)
        );
        assert_eq!(span(rtpmap, "rtpmap").map(|s| s.style), Some(SDP_ATTRIBUTE));
        assert_eq!(
            span(rtpmap, "0 PCMU/8000").map(|s| s.style),
            Some(Style::new())
        );
        let flag = &lines[11];
        assert_eq!(span(flag, "sendrecv").map(|s| s.style), Some(SDP_ATTRIBUTE));
    }

    #[test]
    fn other_bodies_stay_plain_and_empty_bodies_get_no_rule() {
        let lines =
            highlight(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Type: text/plain\r\n\r\nhi=there");
        assert_eq!(lines.len(), 4);
        assert!(text(&lines[2]).contains("body, 8 bytes"));
        assert_eq!(lines[3].spans.first().map(|s| s.style), Some(Style::new()));
        let lines = highlight(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n");
        assert!(lines.iter().all(|l| !text(l).contains("────")));
    }

    #[test]
    fn hostile_bytes_are_inert() {
        let lines = highlight(b"OPTIONS sip:\x1b[2J SIP/2.0\r\nX\x07: \xff\r\n\r\n");
        for line in &lines {
            assert!(
                !text(line).chars().any(|c| c.is_control()),
                "{}",
                text(line)
            );
        }
    }

    #[test]
    fn srtp_keys_never_reach_the_screen() {
        let raw = b"INVITE sip:b@b SIP/2.0\r\n\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
        let shown: String = highlight(raw)
            .iter()
            .flat_map(|line| line.spans.iter().map(|s| s.content.to_string()))
            .collect();
        assert!(!shown.contains("WVNfX19z"), "{shown}");
        assert!(shown.contains("inline:REDACTED"), "{shown}");
    }
}
