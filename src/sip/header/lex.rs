//! Lexical helpers shared by the typed headers: tokens, quoted strings, parameter lists and
//! comma splitting that respects quotes and angle brackets (RFC 3261 §25.1).

use std::fmt;

/// RFC 3261 `token` characters.
pub(crate) fn is_token_char(c: char) -> bool {
    u8::try_from(c).is_ok_and(is_token_byte)
}

/// RFC 3261 §25.1 `token` characters, as a table: the parser asks this of every byte of
/// every header name.
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        b += 1;
    }
    table
};

pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[usize::from(b)]
}

pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

pub(crate) fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

pub(crate) fn trim_wsp(s: &str) -> &str {
    // Bytes, not chars: the parser trims every header value, and SP/HTAB are ASCII, so the
    // cuts fall on character boundaries.
    let bytes = s.as_bytes();
    let wsp = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !wsp(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !wsp(b))
        .map_or(start, |last| last + 1);
    s.get(start..end).unwrap_or_default()
}

/// Splits `s` at every `separator` that is outside a quoted string and outside `<...>`.
/// Fails on an unterminated quoted string or an unclosed `<`.
pub(crate) fn split_top_level(s: &str, separator: char) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut angle_open = false;
    let mut start = 0;
    for (at, c) in s.char_indices() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' if !angle_open => in_quotes = true,
            '<' => angle_open = true,
            '>' => angle_open = false,
            _ if c == separator && !angle_open => {
                parts.push(s.get(start..at).unwrap_or_default());
                start = at + c.len_utf8();
            }
            _ => {}
        }
    }
    if in_quotes {
        return Err("unterminated quoted string".to_string());
    }
    if angle_open {
        return Err("unclosed '<'".to_string());
    }
    parts.push(s.get(start..).unwrap_or_default());
    Ok(parts)
}

/// Parses a quoted string at the start of `s` (which must begin with `"`). Returns the text with
/// quoted-pairs resolved and the rest of `s` after the closing quote.
pub(crate) fn parse_quoted(s: &str) -> Result<(String, &str), String> {
    let inner = s
        .strip_prefix('"')
        .ok_or_else(|| "expected a quoted string".to_string())?;
    let mut text = String::new();
    let mut chars = inner.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((text, inner.get(at + 1..).unwrap_or_default())),
            '\\' => match chars.next() {
                // quoted-pair excludes CR and LF (RFC 3261 §25.1).
                Some((_, '\r' | '\n')) | None => {
                    return Err("bad escape in quoted string".to_string());
                }
                Some((_, escaped)) => text.push(escaped),
            },
            _ => text.push(c),
        }
    }
    Err("unterminated quoted string".to_string())
}

/// Writes `text` as a quoted string, escaping what qdtext cannot carry. CR and LF cannot be
/// escaped at all, so they become spaces (this also keeps header injection out).
pub(crate) fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '\r' | '\n' => f.write_str(" ")?,
            '"' | '\\' => write!(f, "\\{c}")?,
            c if c.is_ascii_control() && c != '\t' => write!(f, "\\{c}")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A header parameter value: token characters plus what IPv6 `received`/`maddr` values need.
fn is_param_value_char(c: char) -> bool {
    is_token_char(c) || c == ':' || c == '[' || c == ']'
}

/// Parses `;name[=value]` parameters after a URI or sent-by. `s` must be empty (after LWS) or
/// start with `;`. Quoted values are kept with their quotes so that they print back unchanged.
pub(crate) fn parse_params(s: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let s = trim_wsp(s);
    if s.is_empty() {
        return Ok(Vec::new());
    }
    let rest = s
        .strip_prefix(';')
        .ok_or_else(|| format!("unexpected text {:?}", excerpt(s)))?;
    let mut params = Vec::new();
    for piece in split_top_level(rest, ';')? {
        let piece = trim_wsp(piece);
        let (name, value) = match piece.split_once('=') {
            Some((name, value)) => (trim_wsp(name), Some(trim_wsp(value))),
            None => (piece, None),
        };
        if !is_token(name) {
            return Err(format!("bad parameter name {:?}", excerpt(name)));
        }
        let value = match value {
            None => None,
            Some(v) if v.starts_with('"') => {
                let (_, after) = parse_quoted(v)?;
                if !trim_wsp(after).is_empty() {
                    return Err("text after quoted parameter value".to_string());
                }
                Some(v.to_string())
            }
            Some(v) if !v.is_empty() && v.chars().all(is_param_value_char) => Some(v.to_string()),
            Some(v) => return Err(format!("bad value for parameter {name}: {:?}", excerpt(v))),
        };
        params.push((name.to_string(), value));
    }
    Ok(params)
}

pub(crate) fn write_params(
    f: &mut fmt::Formatter<'_>,
    params: &[(String, Option<String>)],
) -> fmt::Result {
    for (name, value) in params {
        match value {
            Some(v) => write!(f, ";{name}={v}")?,
            None => write!(f, ";{name}")?,
        }
    }
    Ok(())
}

pub(crate) fn find_param<'a>(
    params: &'a [(String, Option<String>)],
    name: &str,
) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

pub(crate) fn set_param(
    params: &mut Vec<(String, Option<String>)>,
    name: &str,
    value: Option<&str>,
) {
    let value = value.map(str::to_string);
    match params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(slot) => slot.1 = value,
        None => params.push((name.to_string(), value)),
    }
}

/// A short prefix of hostile text for error messages, so that errors stay small.
pub(crate) fn excerpt(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_inside_quotes_and_angles_do_not_split() {
        let parts = split_top_level(r#""a, \"b" <sip:x@y?h=1,2>;p=1, <sip:z>"#, ',').unwrap();
        assert_eq!(parts.len(), 2);
        assert!(split_top_level("\"open", ',').is_err());
    }

    #[test]
    fn quoted_string_escapes_resolve() {
        let (text, rest) = parse_quoted(r#""J \"R\" \\" <x>"#).unwrap();
        assert_eq!(text, r#"J "R" \"#);
        assert_eq!(rest, " <x>");
    }

    #[test]
    fn params_allow_lws_and_reject_empty_names() {
        let params = parse_params(" ;  tag = 19n ; lr ; q=\"a b\"").unwrap();
        assert_eq!(
            params,
            vec![
                ("tag".to_string(), Some("19n".to_string())),
                ("lr".to_string(), None),
                ("q".to_string(), Some("\"a b\"".to_string())),
            ]
        );
        assert!(parse_params(";;").is_err());
        assert!(parse_params(";tag=").is_err());
        assert!(parse_params("junk").is_err());
    }
}
