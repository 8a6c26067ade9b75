//! The account's `turn_server`: a `turn:`/`turns:` URI (RFC 7065) or `host:port`, or a bare
//! domain whose server is found by SRV (`_turn._udp`, RFC 5928). Pure parsing; the driver
//! resolves the name.

/// How we reach the TURN server (the relayed side is always UDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnTransport {
    Udp,
    Tcp,
    Tls,
}

/// Default ports (RFC 8656 §3.1): 3478 for UDP and TCP, 5349 for TLS.
pub const TURN_PORT: u16 = 3478;
pub const TURNS_PORT: u16 = 5349;

/// A parsed `turn_server`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnServer {
    pub host: String,
    /// `None`: a bare domain, looked up with SRV `_turn._udp` (then port 3478).
    pub port: Option<u16>,
    /// The transports to try, best first. Gathering allocates on each at once and ICE uses
    /// the best relayed candidate that works, so where UDP is blocked TCP carries the call.
    pub transports: Vec<TurnTransport>,
}

impl TurnServer {
    /// The SRV name to look up when no port was given.
    pub fn srv_name(&self) -> Option<String> {
        self.port
            .is_none()
            .then(|| format!("_turn._udp.{}", self.host))
    }
}

/// Parses `turn:host[:port][?transport=udp|tcp]`, `turns:host[:port]`, `host:port` or `host`.
pub fn parse_turn_server(text: &str) -> Result<TurnServer, String> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("turns:") {
        (Some(TurnTransport::Tls), &text[6..])
    } else if lower.starts_with("turn:") {
        (Some(TurnTransport::Udp), &text[5..])
    } else {
        (None, text)
    };
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let transport_param = match query {
        None => None,
        Some(q) => match q.to_ascii_lowercase().strip_prefix("transport=") {
            Some("udp") => Some(TurnTransport::Udp),
            Some("tcp") => Some(TurnTransport::Tcp),
            _ => return Err(format!("unknown parameter `{q}` (transport=udp or tcp)")),
        },
    };
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    let transports = match (scheme, transport_param) {
        (Some(TurnTransport::Tls), Some(TurnTransport::Udp)) => {
            return Err("turns: runs over TCP (TLS), not UDP".to_owned());
        }
        (Some(TurnTransport::Tls), _) => vec![TurnTransport::Tls],
        (_, Some(only)) => vec![only],
        // No transport named: UDP, with TCP where UDP is blocked.
        _ => vec![TurnTransport::Udp, TurnTransport::Tcp],
    };
    let port = match (port, scheme) {
        (Some(p), _) => Some(p),
        (None, Some(TurnTransport::Tls)) => Some(TURNS_PORT),
        (None, Some(_)) => Some(TURN_PORT),
        // A bare domain: SRV.
        (None, None) => None,
    };
    Ok(TurnServer {
        host: host.to_owned(),
        port,
        transports,
    })
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let bad_port = |p: &str| format!("bad port `{p}`");
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed `[`".to_owned())?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(p.parse().map_err(|_| bad_port(p))?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected `{after}`")),
        };
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has more than one colon and no port.
        Some((host, _)) if host.contains(':') => Ok((authority, None)),
        Some((host, p)) => Ok((host, Some(p.parse().map_err(|_| bad_port(p))?))),
        None => Ok((authority, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TurnTransport::*;

    #[test]
    fn uris_and_host_ports_parse_with_their_transports_and_default_ports() {
        let cases = [
            (
                "turn:turn.example.net",
                "turn.example.net",
                Some(3478),
                vec![Udp, Tcp],
            ),
            (
                "turn:192.0.2.1:3479?transport=tcp",
                "192.0.2.1",
                Some(3479),
                vec![Tcp],
            ),
            (
                "TURN:192.0.2.1?transport=udp",
                "192.0.2.1",
                Some(3478),
                vec![Udp],
            ),
            (
                "turns:turn.example.net",
                "turn.example.net",
                Some(5349),
                vec![Tls],
            ),
            ("192.0.2.1:3478", "192.0.2.1", Some(3478), vec![Udp, Tcp]),
            (
                "[2001:db8::1]:3478",
                "2001:db8::1",
                Some(3478),
                vec![Udp, Tcp],
            ),
            ("example.net", "example.net", None, vec![Udp, Tcp]),
        ];
        for (text, host, port, transports) in cases {
            let server = parse_turn_server(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (server.host.as_str(), server.port, server.transports),
                (host, port, transports),
                "{text}"
            );
        }
        let bare = parse_turn_server("example.net").expect("domain");
        assert_eq!(bare.srv_name().as_deref(), Some("_turn._udp.example.net"));
        assert_eq!(parse_turn_server("turn:a:1").expect("uri").srv_name(), None);
    }

    #[test]
    fn nonsense_is_refused_with_a_reason() {
        for text in [
            "turn:",
            "turn:host:99999",
            "turns:h?transport=udp",
            "turn:h?x=y",
            "[::1",
        ] {
            assert!(parse_turn_server(text).is_err(), "{text}");
        }
    }
}
