//! name-addr / addr-spec with header parameters (RFC 3261 §20.10, §20.20, §20.39): the value
//! of From, To, Contact, Route, Record-Route, Refer-To and Referred-By.

use std::fmt;

use super::lex::{
    excerpt, find_param, is_token, is_wsp, parse_params, parse_quoted, set_param, split_top_level,
    trim_wsp, write_params, write_quoted,
};
use crate::sip::error::ParseError;
use crate::sip::uri::{self, Uri};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name with quotes and escapes removed.
    pub display_name: Option<String>,
    pub uri: Uri,
    pub params: Vec<(String, Option<String>)>,
}

/// The byte offset of the first `<` outside a quoted string.
fn find_open_angle(s: &str) -> Result<Option<usize>, String> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (at, c) in s.char_indices() {
        if in_quotes {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quotes = false,
                _ => {}
            }
        } else if c == '"' {
            in_quotes = true;
        } else if c == '<' {
            return Ok(Some(at));
        }
    }
    if in_quotes {
        return Err("unterminated quoted string".to_string());
    }
    Ok(None)
}

fn parse_display_name(text: &str) -> Result<Option<String>, String> {
    let text = trim_wsp(text);
    if text.is_empty() {
        return Ok(None);
    }
    if text.starts_with('"') {
        let (name, rest) = parse_quoted(text)?;
        if !trim_wsp(rest).is_empty() {
            return Err("text after quoted display name".to_string());
        }
        return Ok(Some(name));
    }
    // An unquoted display name is tokens separated by LWS (RFC 4475 §3.1.2.15).
    let words: Vec<&str> = text.split(is_wsp).filter(|w| !w.is_empty()).collect();
    if let Some(bad) = words.iter().find(|w| !is_token(w)) {
        return Err(format!(
            "display name word {:?} is not a token",
            excerpt(bad)
        ));
    }
    Ok(Some(words.join(" ")))
}

impl NameAddr {
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display_name: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses one value (for Contact and Route: one element of the comma list). `header` names
    /// the header in errors.
    pub fn parse(header: &str, value: &str) -> Result<NameAddr, ParseError> {
        let bad = |reason: String| ParseError::header(header, reason);
        let uri_bad = |e: ParseError| bad(e.to_string());
        let value = trim_wsp(value);
        match find_open_angle(value).map_err(bad)? {
            Some(open) => {
                let (display, rest) = value.split_at(open);
                let display_name = parse_display_name(display).map_err(bad)?;
                let inside = rest.strip_prefix('<').unwrap_or(rest);
                let (uri_text, after) = inside
                    .split_once('>')
                    .ok_or_else(|| bad("unclosed '<'".to_string()))?;
                let uri = uri::parse(uri_text).map_err(uri_bad)?;
                let params = parse_params(after).map_err(bad)?;
                Ok(NameAddr {
                    display_name,
                    uri,
                    params,
                })
            }
            None => {
                // addr-spec form: the first `;` starts header parameters, and a URI with
                // `?headers` or `,` must be in name-addr form (RFC 3261 §20.10).
                let (uri_text, param_text) = match value.find(';') {
                    Some(at) => value.split_at(at),
                    None => (value, ""),
                };
                let uri_text = trim_wsp(uri_text);
                if uri_text.contains(['?', ',']) {
                    return Err(bad(
                        "a URI with '?' or ',' must be enclosed in <>".to_string()
                    ));
                }
                let uri = uri::parse(uri_text).map_err(uri_bad)?;
                let params = parse_params(param_text).map_err(bad)?;
                Ok(NameAddr {
                    display_name: None,
                    uri,
                    params,
                })
            }
        }
    }

    /// Parses every comma-separated value of a header line.
    pub fn parse_list(header: &str, value: &str) -> Result<Vec<NameAddr>, ParseError> {
        split_top_level(value, ',')
            .map_err(|reason| ParseError::header(header, reason))?
            .into_iter()
            .map(|item| NameAddr::parse(header, item))
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set_param(&mut self.params, name, value);
    }

    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// The Contact `expires` parameter, if present and a valid 32-bit number.
    pub fn expires(&self) -> Option<u32> {
        self.param("expires")
            .flatten()
            .and_then(super::cseq::parse_u32)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            write_quoted(f, name)?;
            f.write_str(" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> NameAddr {
        NameAddr::parse("To", value).unwrap()
    }

    #[test]
    fn quoted_display_name_with_escapes_round_trips() {
        let na = parse(r#""J Rosenberg \\\""       <sip:jdrosen@example.com>  ;  tag = 98asjd8"#);
        assert_eq!(na.display_name.as_deref(), Some(r#"J Rosenberg \""#));
        assert_eq!(na.uri.user.as_deref(), Some("jdrosen"));
        assert_eq!(na.tag(), Some("98asjd8"));
        let printed = na.to_string();
        assert_eq!(
            printed,
            r#""J Rosenberg \\\"" <sip:jdrosen@example.com>;tag=98asjd8"#
        );
        assert_eq!(parse(&printed), na);
    }

    #[test]
    fn addr_spec_params_belong_to_the_header() {
        let na = parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n");
        assert_eq!(na.uri.host, "chair-dnrc.example.com");
        assert!(na.uri.params.is_empty());
        assert_eq!(na.tag(), Some("1918181833n"));
        assert_eq!(
            na.to_string(),
            "<sip:vivekg@chair-dnrc.example.com>;tag=1918181833n"
        );
        let bracketed = parse("<sip:a@b;lr>;tag=1");
        assert_eq!(bracketed.uri.param("lr"), Some(None));
    }

    #[test]
    fn token_display_names_with_and_without_lws() {
        assert_eq!(
            parse("caller<sip:caller@example.com>")
                .display_name
                .as_deref(),
            Some("caller")
        );
        let words = parse("token1~` token2'+_   token3*%!.- <sip:m@example.com>");
        assert_eq!(
            words.display_name.as_deref(),
            Some("token1~` token2'+_ token3*%!.-")
        );
    }

    #[test]
    fn set_param_adds_a_tag() {
        let mut na = parse("Bob <sip:bob@biloxi.com>");
        na.set_param("tag", Some("a6c85cf"));
        assert_eq!(na.to_string(), "\"Bob\" <sip:bob@biloxi.com>;tag=a6c85cf");
    }

    #[test]
    fn control_characters_in_display_names_are_escaped_and_crlf_is_neutralised() {
        let mut na = parse("<sip:a@b>");
        na.display_name = Some("x\r\nVia: evil\u{7}".to_string());
        assert_eq!(na.to_string(), "\"x  Via: evil\\\u{7}\" <sip:a@b>");
    }

    #[test]
    fn lists_split_outside_quotes() {
        let list = NameAddr::parse_list("Route", r#""a,b" <sip:p1;lr>, <sip:p2;lr>"#).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].uri.host, "p2");
    }

    #[test]
    fn rejects_rfc4475_malformations() {
        for bad in [
            "\"Mr. J. User <sip:j.user@example.com>",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "Watson, Thomas <sip:t.watson@example.org>",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
            "<sip:a@b",
        ] {
            assert!(NameAddr::parse("To", bad).is_err(), "{bad}");
        }
        // A bare `tag` parameter without value is still syntactically valid; tag() ignores it.
        assert_eq!(parse("<sip:a@b>;tag").tag(), None);
    }
}
