//! Symmetric RTP latching (RFC 4961 / "comedia" practice): when the peer's SDP address cannot
//! be the address its packets really come from — a private address behind NAT — we send our
//! RTP to where its first valid packet came from instead, once. Pure decision logic; the media
//! task owns the socket.

use std::net::{IpAddr, SocketAddr};

/// Addresses that are not reachable from the public Internet, so an SDP naming one is behind
/// NAT (or on this host): RFC 1918, RFC 6598 shared space 100.64/10, link-local, loopback, and
/// IPv6 ULA fc00::/7 / link-local fe80::/10 / ::1. Loopback counts so that a peer on this host
/// sending from another port than its SDP says still hears us.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// The latching state of one call's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latch {
    /// The address the SDP gave.
    sdp: SocketAddr,
    enabled: bool,
    /// The first valid packet was seen (latched or not): the decision is made once.
    decided: bool,
    latched: Option<SocketAddr>,
}

impl Latch {
    /// `always`: the `rtp_latching` config; otherwise only when the SDP address is private.
    pub fn new(sdp: SocketAddr, always: bool) -> Latch {
        Latch {
            sdp,
            enabled: always || is_private(sdp.ip()),
            decided: false,
            latched: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A packet arrived from `from`; `valid` means it parsed as RTP with a payload type we
    /// negotiated (and the expected SSRC when one is known). Returns the new destination when
    /// this packet made us latch.
    pub fn on_packet(&mut self, from: SocketAddr, valid: bool) -> Option<SocketAddr> {
        if self.decided || !valid {
            return None;
        }
        self.decided = true;
        if self.enabled && from != self.sdp {
            self.latched = Some(from);
            return self.latched;
        }
        None
    }

    /// Where our RTP goes.
    pub fn destination(&self) -> SocketAddr {
        self.latched.unwrap_or(self.sdp)
    }

    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.10",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.1.1",
            "127.0.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip} is private");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "100.63.255.255",
            "192.0.2.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn private_sdp_latches_to_the_first_valid_source_once() {
        let mut l = Latch::new(a("192.168.1.20:4000"), false);
        assert!(l.enabled());
        // An invalid packet (wrong payload type) decides nothing.
        assert_eq!(l.on_packet(a("203.0.113.5:1111"), false), None);
        assert_eq!(l.destination(), a("192.168.1.20:4000"));
        assert_eq!(
            l.on_packet(a("203.0.113.5:6000"), true),
            Some(a("203.0.113.5:6000"))
        );
        assert_eq!(l.destination(), a("203.0.113.5:6000"));
        // Once: a later source does not move us.
        assert_eq!(l.on_packet(a("203.0.113.66:7000"), true), None);
        assert_eq!(l.destination(), a("203.0.113.5:6000"));
    }

    #[test]
    fn public_sdp_does_not_latch_unless_configured() {
        let mut l = Latch::new(a("198.51.100.7:4000"), false);
        assert!(!l.enabled());
        assert_eq!(l.on_packet(a("203.0.113.5:6000"), true), None);
        assert_eq!(l.destination(), a("198.51.100.7:4000"));

        let mut l = Latch::new(a("198.51.100.7:4000"), true);
        assert_eq!(
            l.on_packet(a("203.0.113.5:6000"), true),
            Some(a("203.0.113.5:6000"))
        );
    }

    #[test]
    fn first_packet_from_the_sdp_address_settles_it() {
        let mut l = Latch::new(a("10.0.0.2:4000"), true);
        assert_eq!(l.on_packet(a("10.0.0.2:4000"), true), None);
        assert_eq!(l.on_packet(a("10.9.9.9:5000"), true), None);
        assert_eq!(l.destination(), a("10.0.0.2:4000"));
        assert_eq!(l.latched(), None);
    }
}
