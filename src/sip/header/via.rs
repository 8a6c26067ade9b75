//! Via (RFC 3261 §20.42): `SIP/2.0/UDP host[:port];branch=...;received=...;rport`.

use std::fmt;

use super::lex::{excerpt, find_param, is_token, is_wsp, parse_params, set_param, trim_wsp};
use crate::sip::error::ParseError;
use crate::sip::uri::parse_host_port;

/// The magic cookie that marks an RFC 3261 branch (§8.1.1.7).
pub const BRANCH_COOKIE: &str = "z9hG4bK";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// `SIP/2.0/UDP`: protocol name, version and transport, LWS removed, name and transport
    /// upper-cased.
    pub protocol: String,
    /// `UDP`, `TCP`, `TLS`, `SCTP`, ... (upper-cased).
    pub transport: String,
    /// Host as on the wire (IPv6 with brackets).
    pub host: String,
    pub port: Option<u16>,
    pub params: Vec<(String, Option<String>)>,
}

/// Takes one token after optional LWS, returning it and the rest.
fn take_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(is_wsp);
    let end = s
        .find(|c: char| !super::lex::is_token_char(c))
        .unwrap_or(s.len());
    let (token, rest) = s.split_at(end);
    is_token(token).then_some((token, rest))
}

fn take_slash(s: &str) -> Option<&str> {
    s.trim_start_matches(is_wsp).strip_prefix('/')
}

impl Via {
    /// A Via for a request we send: `SIP/2.0/<transport> host[:port];branch=<branch>`.
    pub fn new(transport: &str, host: &str, port: Option<u16>, branch: &str) -> Via {
        let transport = transport.to_ascii_uppercase();
        Via {
            protocol: format!("SIP/2.0/{transport}"),
            transport,
            host: host.to_string(),
            port,
            params: vec![("branch".to_string(), Some(branch.to_string()))],
        }
    }

    /// Parses one via-parm (one element of a comma-separated Via line). LWS is allowed around
    /// the slashes of sent-protocol (RFC 4475 §3.1.1.1).
    pub fn parse(value: &str) -> Result<Via, ParseError> {
        let bad = |reason: String| ParseError::header("Via", reason);
        let value = trim_wsp(value);
        let (head, param_text) = match value.find(';') {
            Some(at) => value.split_at(at),
            None => (value, ""),
        };
        let protocol = (|| {
            let (name, rest) = take_token(head)?;
            let (version, rest) = take_token(take_slash(rest)?)?;
            let (transport, rest) = take_token(take_slash(rest)?)?;
            Some((name, version, transport, rest))
        })();
        let Some((name, version, transport, rest)) = protocol else {
            return Err(bad(format!("bad sent-protocol in {:?}", excerpt(value))));
        };
        if !rest.starts_with(is_wsp) {
            return Err(bad("no LWS before sent-by".to_string()));
        }
        let sent_by = trim_wsp(rest);
        let (host, port) = parse_host_port(sent_by).map_err(bad)?;
        let params = parse_params(param_text).map_err(bad)?;
        if let Some(rport) = find_param(&params, "rport")
            && rport.is_some_and(|p| p.parse::<u16>().is_err())
        {
            return Err(bad("bad rport".to_string()));
        }
        if find_param(&params, "branch").is_some_and(|b| b.is_none()) {
            return Err(bad("branch without value".to_string()));
        }
        let transport = transport.to_ascii_uppercase();
        Ok(Via {
            protocol: format!("{}/{}/{}", name.to_ascii_uppercase(), version, transport),
            transport,
            host,
            port,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    pub fn set_param(&mut self, name: &str, value: Option<&str>) {
        set_param(&mut self.params, name, value);
    }

    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// True when the branch carries the RFC 3261 magic cookie; otherwise transactions are
    /// matched with the RFC 2543 rules (RFC 4475 §3.2.1).
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch()
            .is_some_and(|b| b.starts_with(BRANCH_COOKIE) && b.len() > BRANCH_COOKIE.len())
    }

    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// `None`: no rport; `Some(None)`: `;rport` (asking for it); `Some(Some(p))`: filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport").map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The `maddr` parameter, if any.
    pub fn maddr(&self) -> Option<&str> {
        self.param("maddr").flatten()
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        super::lex::write_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lws_laden_via_and_prints_it_compact() {
        let via = Via::parse("SIP  /   2.0 /UDP    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(via.protocol, "SIP/2.0/UDP");
        assert_eq!(via.transport, "UDP");
        assert_eq!(via.host, "192.0.2.2");
        assert_eq!(via.branch(), Some("390skdjuw"));
        assert!(!via.has_rfc3261_branch());
        assert_eq!(via.to_string(), "SIP/2.0/UDP 192.0.2.2;branch=390skdjuw");
        assert_eq!(Via::parse(&via.to_string()).unwrap(), via);
    }

    #[test]
    fn ipv6_sent_by_received_and_rport() {
        let via = Via::parse(
            "SIP/2.0/TCP [2001:db8::9:1]:6050;received=[2001:db8::9:255];rport=5062;branch=z9hG4bKx",
        )
        .unwrap();
        assert_eq!(via.host, "[2001:db8::9:1]");
        assert_eq!(via.port, Some(6050));
        assert_eq!(via.received(), Some("[2001:db8::9:255]"));
        assert_eq!(via.rport(), Some(Some(5062)));
        assert!(via.has_rfc3261_branch());
        let bare = Via::parse("SIP/2.0/UDP h;rport;received=2001:db8::9:255").unwrap();
        assert_eq!(bare.rport(), Some(None));
        assert_eq!(bare.received(), Some("2001:db8::9:255"));
    }

    #[test]
    fn set_param_fills_in_received_and_rport() {
        let mut via = Via::new("udp", "10.0.0.1", Some(5060), "z9hG4bKabc");
        via.set_param("rport", None);
        via.set_param("received", Some("192.0.2.7"));
        via.set_param("rport", Some("40000"));
        assert_eq!(
            via.to_string(),
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKabc;rport=40000;received=192.0.2.7"
        );
    }

    #[test]
    fn rejects_malformed_vias() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0 host",
            "SIP/2.0/UDPhost",
            "SIP/2.0/UDP 2001:db8::1",
            "SIP/2.0/UDP host:70000",
            "SIP/2.0/UDP host;rport=abc",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP ho st",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad}");
        }
    }
}
