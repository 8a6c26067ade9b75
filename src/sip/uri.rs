//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), plus any other absolute URI kept raw.

use std::fmt;
use std::str::FromStr;

use super::error::ParseError;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Scheme {
    #[default]
    Sip,
    Sips,
    Tel,
    /// Any other scheme (lower-cased); such URIs keep their text in `Uri::opaque`.
    Other(String),
}

impl Scheme {
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// A URI. For sip/sips: `user[:password]@host[:port];params?headers`. For tel: the number is
/// `user`, `host` is empty. For other schemes everything after `scheme:` is in `opaque`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Uri {
    pub scheme: Scheme,
    /// User part as on the wire (escapes kept).
    pub user: Option<String>,
    pub password: Option<String>,
    /// Host as on the wire: a name, an IPv4 address, or an IPv6 reference with brackets.
    pub host: String,
    pub port: Option<u16>,
    /// `;name[=value]` parameters in order.
    pub params: Vec<(String, Option<String>)>,
    /// `?name=value&...` headers in order.
    pub headers: Vec<(String, String)>,
    /// The text after `scheme:` for schemes other than sip/sips/tel.
    pub opaque: Option<String>,
}

impl Uri {
    /// `sip:user@host[:port]`.
    pub fn sip(user: Option<&str>, host: &str, port: Option<u16>) -> Uri {
        Uri {
            scheme: Scheme::Sip,
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            ..Uri::default()
        }
    }

    /// The value of a URI parameter (`None` if absent, `Some(None)` if present without value).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        let value = value.map(str::to_string);
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.params.push((name.to_string(), value)),
        }
    }

    pub fn remove_param(&mut self, name: &str) {
        self.params.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// True for sip: and sips: URIs.
    pub fn is_sip(&self) -> bool {
        matches!(self.scheme, Scheme::Sip | Scheme::Sips)
    }

    /// The host without IPv6 brackets.
    pub fn host_unbracketed(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// The `transport` parameter, lower-cased.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme.as_str())?;
        if let Some(opaque) = &self.opaque {
            return f.write_str(opaque);
        }
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(password) = &self.password {
                write!(f, ":{password}")?;
            }
            if self.scheme != Scheme::Tel {
                f.write_str("@")?;
            }
        }
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for (name, value) in &self.params {
            match value {
                Some(v) => write!(f, ";{name}={v}")?,
                None => write!(f, ";{name}")?,
            }
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{name}={value}")?;
        }
        Ok(())
    }
}

/// Longest URI we accept; a hostile peer cannot make us keep more.
pub const MAX_URI_BYTES: usize = 4096;

/// RFC 3261 `unreserved`.
fn is_unreserved(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()".contains(c)
}

fn is_user_char(c: char) -> bool {
    is_unreserved(c) || "&=+$,;?/".contains(c)
}

fn is_password_char(c: char) -> bool {
    is_unreserved(c) || "&=+$,".contains(c)
}

fn is_param_char(c: char) -> bool {
    is_unreserved(c) || "[]/:&+$".contains(c)
}

fn is_header_char(c: char) -> bool {
    is_unreserved(c) || "[]/?:+$".contains(c)
}

fn is_tel_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+-.()*#".contains(c)
}

/// True when every character is allowed (or part of a `%HH` escape).
fn all_escaped_or(text: &str, allowed: fn(char) -> bool) -> bool {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            let hex = |d: Option<char>| d.is_some_and(|d| d.is_ascii_hexdigit());
            if !(hex(chars.next()) && hex(chars.next())) {
                return false;
            }
        } else if !allowed(c) {
            return false;
        }
    }
    true
}

/// Decodes `%HH` escapes (a URI header value, e.g. `?Replaces=...`) to text; bytes that are
/// not UTF-8 become U+FFFD.
pub fn unescape_text(text: &str) -> String {
    String::from_utf8_lossy(&unescape(text)).into_owned()
}

/// Decodes `%HH` escapes to bytes, for comparisons (RFC 3261 §19.1.4).
fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&b) = bytes.get(at) {
        let decoded = if b == b'%' {
            bytes
                .get(at + 1..at + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        } else {
            None
        };
        match decoded {
            Some(d) => {
                out.push(d);
                at += 3;
            }
            None => {
                out.push(b);
                at += 1;
            }
        }
    }
    out
}

fn uri_error(text: &str, why: &str) -> ParseError {
    let excerpt: String = text.chars().take(64).collect();
    ParseError::Uri(format!("{why}: {excerpt}"))
}

/// Parses `host[:port]`, where host is a name, an IPv4 address or a bracketed IPv6 reference.
/// Shared by URIs and Via sent-by. IPv6 text is checked loosely (hex, `:` and `.`) so that the
/// RFC 5118 §4.10 three-colon form is accepted, as that RFC asks.
pub(crate) fn parse_host_port(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, rest) = if let Some(after) = text.strip_prefix('[') {
        let close = after.find(']').ok_or("unclosed IPv6 reference")?;
        let (inner, rest) = after.split_at(close);
        let valid = inner.contains(':')
            && inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !valid {
            return Err(format!("bad IPv6 reference [{inner}]"));
        }
        (format!("[{inner}]"), rest.strip_prefix(']').unwrap_or(rest))
    } else {
        let end = text.find(':').unwrap_or(text.len());
        let (host, rest) = text.split_at(end);
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !valid {
            return Err(format!(
                "bad host {:?}",
                host.chars().take(64).collect::<String>()
            ));
        }
        (host.to_string(), rest)
    };
    if rest.is_empty() {
        return Ok((host, None));
    }
    let digits = rest.strip_prefix(':').ok_or("text after host")?;
    let port =
        if !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) {
            digits.parse::<u16>().ok()
        } else {
            None
        };
    match port {
        Some(port) => Ok((host, Some(port))),
        None => Err(format!(
            "bad port {:?}",
            digits.chars().take(16).collect::<String>()
        )),
    }
}

fn parse_uri_params(text: &str, whole: &str) -> Result<Vec<(String, Option<String>)>, ParseError> {
    let mut params = Vec::new();
    for piece in text.split(';') {
        let (name, value) = match piece.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (piece, None),
        };
        let valid = !name.is_empty()
            && all_escaped_or(name, is_param_char)
            && value.is_none_or(|v| all_escaped_or(v, is_param_char));
        if !valid {
            return Err(uri_error(whole, "bad URI parameter"));
        }
        params.push((name.to_string(), value.map(str::to_string)));
    }
    Ok(params)
}

fn parse_sip(scheme: Scheme, rest: &str, whole: &str) -> Result<Uri, ParseError> {
    // The user part may itself hold `;` and `?` (RFC 4475 §3.1.1.9), so the first `@` ends it
    // when everything before it is valid userinfo.
    let (userinfo, hostpart) = match rest.split_once('@') {
        Some((userinfo, hostpart)) if all_escaped_or(userinfo, |c| is_user_char(c) || c == ':') => {
            (Some(userinfo), hostpart)
        }
        _ => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, password) = match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            };
            let valid = !user.is_empty()
                && all_escaped_or(user, is_user_char)
                && password.is_none_or(|p| all_escaped_or(p, is_password_char));
            if !valid {
                return Err(uri_error(whole, "bad userinfo"));
            }
            (Some(user.to_string()), password.map(str::to_string))
        }
    };
    let (before_headers, header_text) = match hostpart.split_once('?') {
        Some((before, headers)) => (before, Some(headers)),
        None => (hostpart, None),
    };
    let (hostport, param_text) = match before_headers.split_once(';') {
        Some((hostport, params)) => (hostport, Some(params)),
        None => (before_headers, None),
    };
    let (host, port) = parse_host_port(hostport).map_err(|why| uri_error(whole, &why))?;
    let params = match param_text {
        Some(text) => parse_uri_params(text, whole)?,
        None => Vec::new(),
    };
    let mut headers = Vec::new();
    if let Some(text) = header_text {
        for piece in text.split('&') {
            let (name, value) = piece
                .split_once('=')
                .ok_or_else(|| uri_error(whole, "URI header without '='"))?;
            let valid = !name.is_empty()
                && all_escaped_or(name, is_header_char)
                && all_escaped_or(value, is_header_char);
            if !valid {
                return Err(uri_error(whole, "bad URI header"));
            }
            headers.push((name.to_string(), value.to_string()));
        }
    }
    Ok(Uri {
        scheme,
        user,
        password,
        host,
        port,
        params,
        headers,
        opaque: None,
    })
}

fn parse_tel(rest: &str, whole: &str) -> Result<Uri, ParseError> {
    let (number, param_text) = match rest.split_once(';') {
        Some((number, params)) => (number, Some(params)),
        None => (rest, None),
    };
    if number.is_empty() || !all_escaped_or(number, is_tel_char) {
        return Err(uri_error(whole, "bad telephone number"));
    }
    let params = match param_text {
        Some(text) => parse_uri_params(text, whole)?,
        None => Vec::new(),
    };
    Ok(Uri {
        scheme: Scheme::Tel,
        user: Some(number.to_string()),
        params,
        ..Uri::default()
    })
}

/// Parses a URI. sip/sips and tel are parsed into parts (escapes kept as on the wire); any
/// other scheme keeps its text in `opaque`. Whitespace, controls and `<>"` are never part of a
/// URI, which is what rejects `< sip:x >` and LWS inside a Request-URI.
pub(crate) fn parse(text: &str) -> Result<Uri, ParseError> {
    if text.len() > MAX_URI_BYTES {
        return Err(ParseError::TooLarge(format!("URI of {} bytes", text.len())));
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
    {
        return Err(uri_error(text, "forbidden character in URI"));
    }
    let (scheme, rest) = text
        .split_once(':')
        .ok_or_else(|| uri_error(text, "no scheme"))?;
    let scheme_valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_valid {
        return Err(uri_error(text, "bad scheme"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "sip" => parse_sip(Scheme::Sip, rest, text),
        "sips" => parse_sip(Scheme::Sips, rest, text),
        "tel" => parse_tel(rest, text),
        other => {
            if rest.is_empty() {
                return Err(uri_error(text, "empty URI"));
            }
            Ok(Uri {
                scheme: Scheme::Other(other.to_string()),
                opaque: Some(rest.to_string()),
                ..Uri::default()
            })
        }
    }
}

/// URI parameters that must match when either side has them (RFC 3261 §19.1.4).
const PARAMS_THAT_MUST_MATCH: &[&str] = &["user", "ttl", "method", "maddr", "transport"];

impl Uri {
    /// URI comparison per RFC 3261 §19.1.4: escapes decoded, user and password case-sensitive,
    /// host case-insensitive, an absent port differs from an explicit 5060, `user`/`ttl`/
    /// `method`/`maddr`/`transport` must match when either URI has them, other parameters only
    /// when both have them, and URI headers must all match.
    pub fn equivalent(&self, other: &Uri) -> bool {
        if self.scheme != other.scheme {
            return false;
        }
        if self.opaque.is_some() || other.opaque.is_some() {
            return self.opaque == other.opaque;
        }
        let unescaped = |part: &Option<String>| part.as_deref().map(unescape);
        if self.scheme == Scheme::Tel {
            let digits = |uri: &Uri| -> Vec<u8> {
                unescape(uri.user.as_deref().unwrap_or_default())
                    .into_iter()
                    .filter(|b| !b"-.()".contains(b))
                    .map(|b| b.to_ascii_lowercase())
                    .collect()
            };
            if digits(self) != digits(other) {
                return false;
            }
        } else {
            let host = |uri: &Uri| unescape(&uri.host.to_ascii_lowercase());
            if unescaped(&self.user) != unescaped(&other.user)
                || unescaped(&self.password) != unescaped(&other.password)
                || host(self) != host(other)
                || self.port != other.port
            {
                return false;
            }
        }
        let param_value = |uri: &Uri, name: &str| {
            uri.param(name)
                .map(|v| v.map(|v| unescape(v).to_ascii_lowercase()))
        };
        for name in PARAMS_THAT_MUST_MATCH {
            if param_value(self, name) != param_value(other, name) {
                return false;
            }
        }
        for (name, _) in &self.params {
            if let (Some(mine), Some(theirs)) = (param_value(self, name), param_value(other, name))
                && mine != theirs
            {
                return false;
            }
        }
        let header_set = |uri: &Uri| {
            let mut set: Vec<(Vec<u8>, Vec<u8>)> = uri
                .headers
                .iter()
                .map(|(n, v)| (unescape(n).to_ascii_lowercase(), unescape(v)))
                .collect();
            set.sort();
            set
        };
        header_set(self) == header_set(other)
    }
}

impl FromStr for Uri {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::sip::parse::parse_uri(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        parse(text).unwrap()
    }

    #[test]
    fn sip_uri_parts_and_round_trip() {
        let text = "sip:alice:pw@Atlanta.com:5061;transport=TCP;lr?subject=x&priority=urgent";
        let u = uri(text);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, "Atlanta.com");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers.len(), 2);
        assert_eq!(u.to_string(), text);
    }

    #[test]
    fn user_part_may_hold_semicolons_and_escapes() {
        let u = uri("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        assert!(u.params.is_empty());
        assert_eq!(
            uri("sip:null-%00-null@example.com").user.as_deref(),
            Some("null-%00-null")
        );
    }

    #[test]
    fn ipv6_references_and_ports() {
        let u = uri("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.host_unbracketed(), "2001:db8::10");
        assert_eq!(u.port, Some(5070));
        let ambiguous = uri("sip:[2001:db8::10:5070]");
        assert_eq!(ambiguous.port, None);
        assert!(parse("sip:2001:db8::10").is_err());
        assert!(parse("sip:[2001:db8::10").is_err());
    }

    #[test]
    fn rejects_whitespace_brackets_bad_escapes_and_ports() {
        for bad in [
            " sip:a@b",
            "<sip:a@b>",
            "sip:a@b; lr",
            "sip:a%4@b",
            "sip:a@b:99999",
            "sip:a@b:",
            "sip:@b",
            "sip:a@b;;x",
            "nocolon",
            "1sip:a@b",
        ] {
            assert!(parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn tel_and_other_schemes() {
        let t = uri("tel:+1-201-555-0123;phone-context=example.com");
        assert_eq!(t.scheme, Scheme::Tel);
        assert_eq!(t.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(
            t.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
        let o = uri("Soap.Beep://192.0.2.103:3002");
        assert_eq!(o.scheme, Scheme::Other("soap.beep".to_string()));
        assert_eq!(o.opaque.as_deref(), Some("//192.0.2.103:3002"));
        assert_eq!(o.to_string(), "soap.beep://192.0.2.103:3002");
    }

    #[test]
    fn equivalence_follows_rfc3261_examples() {
        let same = [
            (
                "sip:%61lice@atlanta.com;transport=TCP",
                "sip:alice@AtLanTa.CoM;Transport=tcp",
            ),
            ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
            (
                "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
                "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
            ),
            (
                "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
                "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
            ),
        ];
        for (a, b) in same {
            assert!(uri(a).equivalent(&uri(b)), "{a} == {b}");
        }
        let different = [
            (
                "SIP:ALICE@AtLanTa.CoM;Transport=udp",
                "sip:alice@AtLanTa.CoM;Transport=UDP",
            ),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
            ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
            ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
            (
                "sip:carol@chicago.com;security=on",
                "sip:carol@chicago.com;security=off",
            ),
            (
                "sip:carol@chicago.com",
                "sip:carol@chicago.com?Subject=next%20meeting",
            ),
        ];
        for (a, b) in different {
            assert!(!uri(a).equivalent(&uri(b)), "{a} != {b}");
        }
    }
}
