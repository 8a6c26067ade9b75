//! The generic `#auth-param` grammar shared by challenges and credentials (RFC 7235 §2.1,
//! RFC 3261 §25.1): `scheme [ token68 / name=value *( "," name=value ) ]`, several of them
//! separated by commas in one header line.
//!
//! The grammar is ambiguous at every comma: what follows may be another parameter of the same
//! scheme or a new scheme. A token followed by `=` is a parameter; a token followed by anything
//! else starts a new scheme.

use super::AuthError;

/// Longest header value we look at. Real challenges are a few hundred bytes; this bounds the
/// work hostile input can cause.
pub const MAX_VALUE_LEN: usize = 8 * 1024;
/// Most schemes (challenges or credentials) accepted in one header line.
pub const MAX_ITEMS: usize = 16;
/// Most parameters accepted per scheme.
pub const MAX_PARAMS: usize = 32;

/// One scheme with its parameters as written: names lower-cased, values unquoted and unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthItem {
    pub scheme: String,
    pub params: Vec<(String, String)>,
    pub token68: Option<String>,
}

impl AuthItem {
    /// The value of a parameter; `name` must be lower case.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }
}

/// RFC 7230 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn is_token68_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~+/".contains(&byte)
}

struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn peek_at(&self, pos: usize) -> Option<u8> {
        self.text.as_bytes().get(pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn skip_whitespace_and_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.pos += 1;
        }
    }

    /// Consumes bytes while `accept` holds and returns them (always on ASCII boundaries, so
    /// slicing the str cannot split a character).
    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// True when a parameter (`token OWS "=" OWS value`) starts here, as opposed to a token68
    /// (which may end in `=` padding but has nothing after it).
    fn parameter_starts_here(&self) -> bool {
        let mut pos = self.pos;
        let token_start = pos;
        while self.peek_at(pos).is_some_and(is_tchar) {
            pos += 1;
        }
        if pos == token_start {
            return false;
        }
        while matches!(self.peek_at(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        if self.peek_at(pos) != Some(b'=') {
            return false;
        }
        pos += 1;
        while matches!(self.peek_at(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        !matches!(self.peek_at(pos), None | Some(b',' | b'='))
    }

    fn quoted_string(&mut self) -> Result<String, AuthError> {
        // Caller has checked the opening quote.
        self.pos += 1;
        let mut bytes = Vec::new();
        loop {
            let byte = self
                .peek()
                .ok_or(AuthError::Malformed("unterminated quoted string"))?;
            self.pos += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let escaped = self
                        .peek()
                        .ok_or(AuthError::Malformed("unterminated quoted string"))?;
                    if is_forbidden_control(escaped) {
                        return Err(AuthError::Malformed("control character in quoted string"));
                    }
                    bytes.push(escaped);
                    self.pos += 1;
                }
                other if is_forbidden_control(other) => {
                    return Err(AuthError::Malformed("control character in quoted string"));
                }
                other => bytes.push(other),
            }
        }
        // Only ASCII backslashes were removed from valid UTF-8, so this cannot fail; map the
        // error anyway rather than unwrap.
        String::from_utf8(bytes).map_err(|_| AuthError::Malformed("invalid UTF-8"))
    }

    /// An unquoted value. Stricter peers would accept only a token; servers in the wild send
    /// unquoted base64 nonces and the like, so anything visible (ASCII) up to a comma is
    /// taken. Non-ASCII is never valid there (it needs quotes), so it ends the value and the
    /// element is malformed.
    fn bare_value(&mut self) -> Result<String, AuthError> {
        let value = self.take_while(|b| b > b' ' && b < 0x7f && b != b',' && b != b'"');
        if value.is_empty() {
            return Err(AuthError::Malformed("empty parameter value"));
        }
        Ok(value.to_string())
    }

    /// After a complete element only whitespace and then a comma or the end may follow.
    fn expect_element_end(&mut self) -> Result<(), AuthError> {
        self.skip_whitespace();
        match self.peek() {
            None | Some(b',') => Ok(()),
            Some(_) => Err(AuthError::Malformed("expected a comma between parameters")),
        }
    }
}

fn is_forbidden_control(byte: u8) -> bool {
    (byte < b' ' && byte != b'\t') || byte == 0x7f
}

/// Splits a WWW-Authenticate / Proxy-Authenticate / Authorization / Proxy-Authorization value
/// into its schemes. Syntax errors and values beyond the limits are `AuthError::Malformed`.
pub fn parse_auth_items(value: &str) -> Result<Vec<AuthItem>, AuthError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(AuthError::Malformed("header value too long"));
    }
    let mut cursor = Cursor {
        text: value,
        pos: 0,
    };
    let mut items: Vec<AuthItem> = Vec::new();
    loop {
        cursor.skip_whitespace_and_commas();
        if cursor.at_end() {
            break;
        }
        if cursor.parameter_starts_here() {
            let current = items
                .last_mut()
                .ok_or(AuthError::Malformed("parameter before any scheme"))?;
            parse_parameter(&mut cursor, current)?;
            continue;
        }
        let scheme = cursor.take_while(is_tchar);
        if scheme.is_empty() {
            return Err(AuthError::Malformed("expected an authentication scheme"));
        }
        if items.len() >= MAX_ITEMS {
            return Err(AuthError::Malformed("too many authentication schemes"));
        }
        let mut item = AuthItem {
            scheme: scheme.to_string(),
            params: Vec::new(),
            token68: None,
        };
        match cursor.peek() {
            None | Some(b',') => {}
            Some(b' ' | b'\t') => {
                cursor.skip_whitespace();
                if !cursor.at_end()
                    && cursor.peek() != Some(b',')
                    && !cursor.parameter_starts_here()
                {
                    let token68 = cursor.take_while(is_token68_char);
                    if token68.is_empty() {
                        return Err(AuthError::Malformed("expected parameters after scheme"));
                    }
                    let padding = cursor.take_while(|b| b == b'=');
                    item.token68 = Some(format!("{token68}{padding}"));
                    cursor.expect_element_end()?;
                }
            }
            Some(_) => return Err(AuthError::Malformed("unexpected character after scheme")),
        }
        items.push(item);
    }
    Ok(items)
}

fn parse_parameter(cursor: &mut Cursor<'_>, item: &mut AuthItem) -> Result<(), AuthError> {
    if item.token68.is_some() {
        return Err(AuthError::Malformed("parameter after token68"));
    }
    let name = cursor.take_while(is_tchar).to_ascii_lowercase();
    cursor.skip_whitespace();
    // parameter_starts_here() guaranteed the '='.
    cursor.pos += 1;
    cursor.skip_whitespace();
    let value = if cursor.peek() == Some(b'"') {
        cursor.quoted_string()?
    } else {
        cursor.bare_value()?
    };
    cursor.expect_element_end()?;
    if item.params.iter().any(|(existing, _)| *existing == name) {
        // RFC 7235 §2.1: each parameter name MUST only occur once per challenge.
        return Err(AuthError::Malformed("repeated parameter"));
    }
    if item.params.len() >= MAX_PARAMS {
        return Err(AuthError::Malformed("too many parameters"));
    }
    item.params.push((name, value));
    Ok(())
}

/// Writes `value` as a quoted-string, escaping `"` and `\`.
pub fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for ch in value.chars() {
        if ch == '"' || ch == '\\' {
            quoted.push('\\');
        }
        quoted.push(ch);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(item: &AuthItem) -> Vec<(&str, &str)> {
        item.params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn splits_two_schemes_on_one_line() {
        let items = parse_auth_items(r#"Digest realm="a", nonce="n", Basic realm="b""#).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].scheme, "Digest");
        assert_eq!(params(&items[0]), [("realm", "a"), ("nonce", "n")]);
        assert_eq!(items[1].scheme, "Basic");
        assert_eq!(params(&items[1]), [("realm", "b")]);
    }

    #[test]
    fn unescapes_quoted_strings_and_keeps_commas_inside_them() {
        let items = parse_auth_items(r#"Digest realm="a \"b\", c\\d""#).unwrap();
        assert_eq!(items[0].param("realm"), Some(r#"a "b", c\d"#));
    }

    #[test]
    fn lower_cases_names_and_tolerates_odd_spacing_and_empty_elements() {
        let items = parse_auth_items("  Digest   REALM = \"r\" ,, ,Nonce=abc/def+== ,  ").unwrap();
        assert_eq!(params(&items[0]), [("realm", "r"), ("nonce", "abc/def+==")]);
    }

    #[test]
    fn reads_token68_and_a_following_scheme() {
        let items = parse_auth_items("Negotiate YWJj/ZA==, Digest realm=r").unwrap();
        assert_eq!(items[0].token68.as_deref(), Some("YWJj/ZA=="));
        assert_eq!(items[1].param("realm"), Some("r"));
    }

    #[test]
    fn scheme_without_parameters_is_kept() {
        let items = parse_auth_items("Foo, Digest realm=r").unwrap();
        assert_eq!(items[0].scheme, "Foo");
        assert!(items[0].params.is_empty());
        assert_eq!(items[1].scheme, "Digest");
    }

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            r#"Digest realm="unterminated"#,
            r#"Digest realm="x\"#,
            "realm=\"x\"",
            "Digest realm=\"a\", nonce=",
            "Digest realm=\"a\" nonce=\"b\"",
            "Digest realm=a, realm=b",
            "Digest\"x\"",
            "Digest realm=\"a\rb\"",
            "Digest realm=\"x\", =y",
        ] {
            assert!(
                matches!(parse_auth_items(bad), Err(AuthError::Malformed(_))),
                "accepted {bad:?}"
            );
        }
    }

    #[test]
    fn bounds_length_and_counts() {
        let long = format!("Digest realm=\"{}\"", "a".repeat(MAX_VALUE_LEN));
        assert!(parse_auth_items(&long).is_err());
        let many_schemes = vec!["Foo"; MAX_ITEMS + 1].join(", ");
        assert!(parse_auth_items(&many_schemes).is_err());
        let many_params: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=v")).collect();
        assert!(parse_auth_items(&format!("Digest {}", many_params.join(","))).is_err());
    }

    #[test]
    fn quote_round_trips_through_the_parser() {
        let tricky = r#"he said "hi" \ bye, ok"#;
        let items = parse_auth_items(&format!("Digest realm={}", quote(tricky))).unwrap();
        assert_eq!(items[0].param("realm"), Some(tricky));
    }
}
