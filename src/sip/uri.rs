//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), plus any other absolute URI kept raw.

use std::fmt;
use std::str::FromStr;

use super::error::ParseError;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scheme {
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

impl Default for Scheme {
    fn default() -> Self {
        Scheme::Sip
    }
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
        self.param("transport").flatten().map(|t| t.to_ascii_lowercase())
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

impl FromStr for Uri {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::sip::parse::parse_uri(s)
    }
}
