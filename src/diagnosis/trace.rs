//! Reading SIP messages from the trace: the few headers and SDP lines the rules look at,
//! parsed once when the message passes.

use std::net::{IpAddr, SocketAddr};

use crate::event::Direction;
use crate::sdp::Direction as MediaDirection;
use crate::sdp::scan::{self, ConnectionAddress};
use crate::sip::message::Message;

/// Most ICE candidates kept as evidence.
const MAX_CANDIDATES: usize = 8;

/// Our top Via as the other side saw it: where we said we were, and what it filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViaView {
    /// `UDP`, `TCP`, `TLS`.
    pub transport: String,
    /// Host and port we wrote (`10.0.0.10:5060`).
    pub sent_by: String,
    /// `received` and `rport` the server added: the address it saw us at.
    pub received: Option<String>,
    pub rport: Option<u16>,
}

impl ViaView {
    /// The address the server saw, when it says one (received, else our host; rport, else
    /// our port).
    pub fn seen_at(&self) -> Option<String> {
        if self.received.is_none() && self.rport.is_none() {
            return None;
        }
        let (host, port) = split_host_port(&self.sent_by);
        let host = self.received.clone().unwrap_or(host);
        let port = self.rport.or(port).unwrap_or(5060);
        Some(join_host_port(&host, port))
    }
}

/// What an SDP body offered, reduced to what the rules explain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SdpView {
    /// The audio stream's connection address (its `c=`, else the session's).
    pub address: Option<IpAddr>,
    pub port: u16,
    /// Audio codecs in the order offered, as named (`PCMU`, `opus`, `G729`, ...).
    pub codecs: Vec<String>,
    pub direction: Option<MediaDirection>,
    /// `a=candidate` lines, shortened to `host 10.0.0.5:4000 udp`.
    pub ice_candidates: Vec<String>,
    pub crypto: bool,
}

impl SdpView {
    /// The audio address as `IP:PORT`.
    pub fn media_addr(&self) -> Option<SocketAddr> {
        self.address.map(|ip| SocketAddr::new(ip, self.port))
    }

    /// False when the peer said it sends nothing (`recvonly`, `inactive`): no audio expected.
    pub fn peer_sends(&self) -> bool {
        !matches!(
            self.direction,
            Some(MediaDirection::RecvOnly | MediaDirection::Inactive)
        )
    }
}

/// One SIP message of the trace, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceMessage {
    pub dir: Direction,
    pub peer: SocketAddr,
    /// The request method, or `None` for a response.
    pub method: Option<String>,
    /// A response's status.
    pub code: Option<u16>,
    pub reason: String,
    /// The CSeq method (a response's request).
    pub cseq_method: String,
    pub call_id: String,
    pub via: Option<ViaView>,
    /// Authorization or Proxy-Authorization present (a request answering a challenge).
    pub authorized: bool,
    pub expires: Option<u32>,
    /// The Contact header as written.
    pub contact: Option<String>,
    /// `realm` of a WWW-Authenticate or Proxy-Authenticate challenge.
    pub realm: Option<String>,
    pub min_expires: Option<u32>,
    pub unsupported: Vec<String>,
    pub require: Vec<String>,
    pub warning: Option<String>,
    /// `Server` (responses) or `User-Agent` (requests): which software said it.
    pub software: Option<String>,
    pub sdp: Option<SdpView>,
}

impl TraceMessage {
    /// Reads `bytes`; `None` for what does not parse (the diagnosis skips it).
    pub fn read(dir: Direction, peer: SocketAddr, bytes: &[u8]) -> Option<TraceMessage> {
        let message = crate::sip::parse::parse_datagram(bytes).ok()?;
        let headers = message.headers();
        let (method, code, reason) = match &message {
            Message::Request(r) => (Some(r.method.as_str().to_string()), None, String::new()),
            Message::Response(r) => (None, Some(r.code), r.reason.clone()),
        };
        let cseq_method = headers
            .cseq()
            .map(|c| c.method.as_str().to_string())
            .unwrap_or_default();
        let via = headers.top_via().ok().map(|via| ViaView {
            transport: via.transport.clone(),
            sent_by: match via.port {
                Some(port) => format!("{}:{port}", via.host),
                None => via.host.clone(),
            },
            received: via.received().map(str::to_string),
            rport: via.rport().flatten(),
        });
        let realm = headers
            .get("WWW-Authenticate")
            .or_else(|| headers.get("Proxy-Authenticate"))
            .and_then(realm_of);
        let is_sdp = headers
            .content_type()
            .is_some_and(|t| t.eq_ignore_ascii_case("application/sdp"));
        let sdp = (is_sdp && !message.body().is_empty())
            .then(|| read_sdp(&String::from_utf8_lossy(message.body())))
            .flatten();
        Some(TraceMessage {
            dir,
            peer,
            method,
            code,
            reason,
            cseq_method,
            call_id: headers.call_id().map(str::to_string).unwrap_or_default(),
            via,
            authorized: headers.contains("Authorization")
                || headers.contains("Proxy-Authorization"),
            expires: headers.expires().ok().flatten(),
            contact: headers.get("Contact").map(str::to_string),
            realm,
            min_expires: headers.min_expires(),
            unsupported: headers.tokens("Unsupported"),
            require: headers.tokens("Require"),
            warning: headers.get("Warning").map(str::to_string),
            software: headers
                .get("Server")
                .or_else(|| headers.get("User-Agent"))
                .map(str::to_string),
            sdp,
        })
    }

    pub fn is_request(&self, method: &str) -> bool {
        self.method.as_deref() == Some(method)
    }

    /// A response to a `method` request.
    pub fn is_response_to(&self, method: &str) -> bool {
        self.code.is_some() && self.cseq_method == method
    }

    /// A final (>= 200) response.
    pub fn is_final(&self) -> bool {
        self.code.is_some_and(|c| c >= 200)
    }
}

fn realm_of(challenge: &str) -> Option<String> {
    let at = challenge.to_ascii_lowercase().find("realm=")?;
    let rest = challenge.get(at + "realm=".len()..)?;
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split([',', ' ']).next()?,
    };
    Some(value.to_string())
}

/// The audio part of an SDP body.
pub fn read_sdp(body: &str) -> Option<SdpView> {
    let description = scan::scan(body).ok()?;
    let audio = description.media.iter().find(|m| m.is_audio)?;
    let connection = audio
        .connection
        .as_ref()
        .or(description.connection.as_ref());
    let address = match connection {
        Some(ConnectionAddress::Ip(ip)) => Some(*ip),
        _ => None,
    };
    let codecs = audio
        .payload_types
        .iter()
        .filter_map(|&pt| match audio.rtpmap(pt) {
            Some(map) => Some(map.encoding_name.clone()),
            None => static_payload_name(pt).map(str::to_string),
        })
        .filter(|name| {
            // Events and comfort noise are no audio codec to agree on.
            !name.eq_ignore_ascii_case("telephone-event") && !name.eq_ignore_ascii_case("CN")
        })
        .collect();
    let ice_candidates = body
        .lines()
        .filter_map(|line| line.trim().strip_prefix("a=candidate:"))
        .filter_map(short_candidate)
        .take(MAX_CANDIDATES)
        .collect();
    Some(SdpView {
        address,
        port: audio.port,
        codecs,
        direction: audio.direction.or(description.direction),
        ice_candidates,
        crypto: !audio.crypto.is_empty(),
    })
}

/// `1 1 UDP 2130706431 10.0.0.5 4000 typ host` -> `host 10.0.0.5:4000 udp`.
fn short_candidate(candidate: &str) -> Option<String> {
    let fields: Vec<&str> = candidate.split_whitespace().collect();
    let transport = fields.get(2)?.to_ascii_lowercase();
    let ip = fields.get(4)?;
    let port = fields.get(5)?;
    let kind = fields
        .iter()
        .position(|f| *f == "typ")
        .and_then(|i| fields.get(i + 1))
        .copied()
        .unwrap_or("?");
    Some(format!("{kind} {ip}:{port} {transport}"))
}

/// RFC 3551's static payload types, for offers without rtpmap lines.
fn static_payload_name(payload_type: u8) -> Option<&'static str> {
    Some(match payload_type {
        0 => "PCMU",
        3 => "GSM",
        4 => "G723",
        8 => "PCMA",
        9 => "G722",
        13 => "CN",
        18 => "G729",
        _ => return None,
    })
}

pub fn split_host_port(text: &str) -> (String, Option<u16>) {
    if let Some(rest) = text.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        return (
            host.to_string(),
            after.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_string(), port.parse().ok()),
        _ => (text.to_string(), None),
    }
}

pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Where media to this address cannot go from another network: RFC 1918 and shared (CGNAT)
/// IPv4 space, unique-local and link-local IPv6.
pub fn is_private(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Where media can never go: 0.0.0.0 / ::, multicast, broadcast, the reserved 240/4.
pub fn is_unroutable(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || v4.octets()[0] >= 240
        }
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 10.0.0.10:5060;branch=z9hG4bKx;received=203.0.113.1;rport=40000\r\n\
        From: <sip:a@b>;tag=1\r\nTo: <sip:b@b>;tag=2\r\nCall-ID: c1@h\r\nCSeq: 1 INVITE\r\n\
        Server: pbx 1.0\r\nContent-Type: application/sdp\r\n";
    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 18 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=candidate:1 1 UDP 2130706431 10.0.0.5 4000 typ host\r\na=sendrecv\r\n";

    #[test]
    fn reads_the_via_the_server_filled_in_and_the_offered_codecs() {
        let peer: SocketAddr = "192.0.2.1:5060".parse().expect("addr");
        let text = format!("{HEAD}Content-Length: {}\r\n\r\n{SDP}", SDP.len());
        let m = TraceMessage::read(Direction::In, peer, text.as_bytes()).expect("parses");
        assert_eq!(m.code, Some(200));
        assert!(m.is_response_to("INVITE"));
        let via = m.via.as_ref().expect("via");
        assert_eq!(via.seen_at().as_deref(), Some("203.0.113.1:40000"));
        let sdp = m.sdp.expect("sdp");
        assert_eq!(sdp.codecs, vec!["G729", "PCMU"]);
        assert_eq!(sdp.address, Some("10.0.0.5".parse().expect("ip")));
        assert_eq!(sdp.ice_candidates, vec!["host 10.0.0.5:4000 udp"]);
        assert_eq!(m.software.as_deref(), Some("pbx 1.0"));
    }

    #[test]
    fn private_and_unroutable_addresses() {
        for private in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert!(is_private(private.parse().expect("ip")), "{private}");
        }
        for public in ["203.0.113.5", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_private(public.parse().expect("ip")), "{public}");
        }
        assert!(is_unroutable("0.0.0.0".parse().expect("ip")));
        assert!(is_unroutable("224.0.0.1".parse().expect("ip")));
        assert!(!is_unroutable("10.0.0.1".parse().expect("ip")));
    }

    #[test]
    fn realms_quoted_or_not() {
        assert_eq!(
            realm_of("Digest realm=\"atlanta.test\", nonce=\"x\"").as_deref(),
            Some("atlanta.test")
        );
        assert_eq!(realm_of("Digest nonce=1,realm=x").as_deref(), Some("x"));
    }
}
