//! Domain names as RFC 3263 handles them: checked before any query (a name from a URI or from
//! a hostile record never reaches the resolver unchecked), lower-cased for comparison, and
//! without the trailing dot for people.

use std::net::IpAddr;

/// RFC 1035 §2.3.4: 255 octets on the wire, i.e. 253 characters in text without the final dot.
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// A checked domain name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DomainName {
    /// Lower case, no trailing dot: for messages and comparisons.
    pub display: String,
    /// What to ask the resolver: as `display`, with a trailing dot when the name is absolute
    /// (it came from a record, or the user wrote one), so that search domains do not apply.
    pub query: String,
}

impl DomainName {
    /// A name from a URI or the config (relative unless written with a final dot).
    pub fn from_user(name: &str) -> Option<DomainName> {
        let absolute = name.ends_with('.');
        let display = check(name)?;
        let query = if absolute {
            format!("{display}.")
        } else {
            display.clone()
        };
        Some(DomainName { display, query })
    }

    /// A name from a record (NAPTR replacement, SRV target): always absolute.
    pub fn from_record(name: &str) -> Option<DomainName> {
        let display = check(name)?;
        let query = format!("{display}.");
        Some(DomainName { display, query })
    }

    /// `prefix` + this name, e.g. `_sip._udp.` + `biloxi.test`, if the result is still a
    /// valid name.
    pub fn prefixed(&self, prefix: &str) -> Option<DomainName> {
        let display = check(&format!("{prefix}{}", self.display))?;
        let query = format!("{prefix}{}", self.query);
        Some(DomainName { display, query })
    }

    /// RFC 6761 §6.3: `localhost` and names under it are the loopback host, without asking
    /// the DNS.
    pub fn is_localhost(&self) -> bool {
        self.display == "localhost" || self.display.ends_with(".localhost")
    }

    /// RFC 6761 §6.4: `invalid` and names under it never exist; no query is sent for them.
    pub fn is_invalid(&self) -> bool {
        self.display == "invalid" || self.display.ends_with(".invalid")
    }
}

/// Lower-cased `name` without its trailing dot, if it is a valid host name: ASCII letters,
/// digits, `-` and `_` (SRV labels), labels of 1 to 63 characters, 253 in all. The root "."
/// is not a host name.
fn check(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME {
        return None;
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= MAX_LABEL
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    name.split('.')
        .all(valid_label)
        .then(|| name.to_ascii_lowercase())
}

/// The IP address in `host` (`192.0.2.1`, `2001:db8::1` or `[2001:db8::1]`), if it is one.
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// True for the root name "." (or an empty one): an SRV target meaning "not here".
pub(crate) fn is_root(name: &str) -> bool {
    name.is_empty() || name == "."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_keep_their_form_records_become_absolute() {
        let n = DomainName::from_user("Biloxi.TEST").unwrap();
        assert_eq!(n.display, "biloxi.test");
        assert_eq!(n.query, "biloxi.test");
        let n = DomainName::from_user("biloxi.test.").unwrap();
        assert_eq!(
            (n.display.as_str(), n.query.as_str()),
            ("biloxi.test", "biloxi.test.")
        );
        let n = DomainName::from_record("proxy.biloxi.test").unwrap();
        assert_eq!(n.query, "proxy.biloxi.test.");
        let s = n.prefixed("_sip._udp.").unwrap();
        assert_eq!(s.display, "_sip._udp.proxy.biloxi.test");
        assert_eq!(s.query, "_sip._udp.proxy.biloxi.test.");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in [
            "",
            ".",
            "a..b",
            "a b.test",
            "bad/name",
            "ünï.test",
            &"a".repeat(64),
            &format!("{}.test", ["a"; 130].join(".")),
        ] {
            assert!(DomainName::from_user(bad).is_none(), "{bad:?}");
        }
        // 253 characters is the limit; the prefix must fit too.
        let long = format!("{}tests", "a.".repeat(124));
        assert_eq!(long.len(), 253);
        let n = DomainName::from_user(&long).unwrap();
        assert!(n.prefixed("_sip._udp.").is_none());
        assert!(DomainName::from_user(&format!("{long}s")).is_none());
    }

    #[test]
    fn ip_literals_with_or_without_brackets() {
        assert_eq!(ip_literal("192.0.2.1"), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            ip_literal("[2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            ip_literal("2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(ip_literal("biloxi.test"), None);
    }

    #[test]
    fn invalid_never_exists() {
        assert!(
            DomainName::from_user("nowhere.invalid")
                .unwrap()
                .is_invalid()
        );
        assert!(!DomainName::from_user("invalid.test").unwrap().is_invalid());
    }

    #[test]
    fn localhost_is_special() {
        assert!(DomainName::from_user("localhost").unwrap().is_localhost());
        assert!(
            DomainName::from_user("pbx.localhost.")
                .unwrap()
                .is_localhost()
        );
        assert!(
            !DomainName::from_user("localhost.test")
                .unwrap()
                .is_localhost()
        );
    }
}
