//! Which sources may feed a call's media, and where our RTP goes (symmetric RTP, RFC 4961 /
//! "comedia" latching). Pure decision logic on virtual inputs; the media task owns the sockets,
//! decrypts, parses, and asks here before anything reaches SRTP state, the jitter buffer, the
//! decoder or the RTCP statistics.
//!
//! The rules (README "NAT traversal" says the same for users):
//!
//! - **RTP is accepted** from the negotiated address (the SDP's `c=`/`m=` address and port) and,
//!   where latching applies, from the latched source. Everything else is dropped and counted.
//! - **RTCP is accepted** from the negotiated RTCP address (`remote_rtcp`: the RTP address with
//!   rtcp-mux, `a=rtcp`, else RTP port + 1), from the negotiated RTP address, and, once latched,
//!   from the latched IP at the latched RTP port or that port + 1. RTCP never moves the latch.
//! - **Latching applies** when the SDP address is private ([`is_private`]: the peer cannot be
//!   reached there, so it must be behind NAT or on this host) or `rtp_latching` is set.
//! - **The latch moves** (the first time, or later when the peer's NAT rebinds) only to a source
//!   whose packet carries a negotiated payload type and that
//!   - (a) passed SRTP authentication, when the call uses SRTP (nothing else counts then: a
//!     packet only the peer's key could have made is the proof), or, for plain RTP,
//!   - (b) comes from one of the peer's signalling IPs: where its SIP came from, its Contact
//!     host (`MediaParams::peer_signalling`), and the SDP's own connection IP (the peer named
//!     that host itself; a NAT that changed only the port, or a peer on this host sending from
//!     another port, keep working), or
//!   - (c) keeps the SSRC already heard from the peer's accepted packets (a NAT rebinding: same
//!     stream, new port or IP).
//!
//! So the very first packet, when latching applies and the call is plain RTP, is played only
//! when it comes from the SDP address (IP and port), or from a signalling IP of the peer. A
//! stranger's first packet from anywhere else no longer captures the call, which it used to.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::sdp::MediaParams;

/// Signalling IPs kept per call (SIP source, Contact host, and a few more are plenty).
const MAX_SIGNALLING_IPS: usize = 8;
/// How long the peer's current source must have been silent before another source from one
/// of its signalling IPs, with another SSRC, may take the latch over (rule b).
pub const TAKEOVER_QUIET: Duration = Duration::from_millis(1000);

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

/// A dual-stack socket reports IPv4 peers as `::ffff:a.b.c.d`; the SDP and SIP layers name
/// them as plain IPv4. Compare the canonical forms so the peer is recognised either way.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && same_ip(a.ip(), b.ip())
}

/// What the signalling negotiated about the peer's media addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The SDP's RTP address.
    pub rtp: SocketAddr,
    /// The SDP's RTCP address (`MediaParams::remote_rtcp`); `None`: RTP port + 1.
    pub rtcp: Option<SocketAddr>,
    pub rtcp_mux: bool,
    /// IPs the SIP layer knows for the peer (`MediaParams::peer_signalling`).
    pub signalling: Vec<IpAddr>,
    /// The call uses SRTP: only authenticated packets may move the latch.
    pub srtp: bool,
}

impl Negotiated {
    pub fn of(params: &MediaParams) -> Negotiated {
        Negotiated {
            rtp: params.remote,
            rtcp: params.remote_rtcp,
            rtcp_mux: params.rtcp_mux,
            signalling: params.peer_signalling.clone(),
            srtp: params.srtp.is_some(),
        }
    }
}

/// First look at an RTP datagram's source, before it is decrypted or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// The negotiated address or the latched source: process it.
    Peer,
    /// Another source while latching applies: it may move the latch, if the packet proves
    /// itself (decrypt and parse it, then ask [`Latch::consider`]).
    Candidate,
    /// Dropped and counted: nothing else may look at it.
    Foreign,
}

/// What decrypting and parsing a candidate's packet showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evidence {
    pub ssrc: u32,
    /// Its payload type is the call's codec or telephone-event.
    pub negotiated: bool,
    /// SRTP authentication succeeded (always false for plain RTP).
    pub authenticated: bool,
}

/// Packets dropped for their source, and latch moves, since the call's media started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub foreign_rtp: u64,
    pub foreign_rtcp: u64,
    /// Times the latch moved (the first latch included).
    pub moves: u64,
}

impl SourceStats {
    /// RTP and RTCP packets dropped because they came from neither the negotiated address nor
    /// the latched source: the `foreign` figure of the `media` event.
    pub fn foreign(&self) -> u64 {
        self.foreign_rtp.saturating_add(self.foreign_rtcp)
    }
}

/// The source and latching state of one call's media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latch {
    /// The SDP's RTP address and its RTCP address.
    sdp: SocketAddr,
    sdp_rtcp: SocketAddr,
    rtcp_mux: bool,
    /// IPs whose packets may move the latch on plain RTP (rule b), canonical, bounded.
    trusted: Vec<IpAddr>,
    srtp: bool,
    /// `rtp_latching` from the config.
    always: bool,
    enabled: bool,
    latched: Option<SocketAddr>,
    /// The SSRC of the last packet accepted from the peer (rule c).
    ssrc: Option<u32>,
    /// When that packet came (time since the media started).
    last_heard: Option<Duration>,
    stats: SourceStats,
}

impl Latch {
    /// `always`: the `rtp_latching` config; otherwise latching applies only when the SDP
    /// address is private.
    pub fn new(negotiated: Negotiated, always: bool) -> Latch {
        let mut latch = Latch {
            sdp: negotiated.rtp,
            sdp_rtcp: negotiated.rtp,
            rtcp_mux: false,
            trusted: Vec::new(),
            srtp: false,
            always,
            enabled: false,
            latched: None,
            ssrc: None,
            last_heard: None,
            stats: SourceStats::default(),
        };
        latch.apply(negotiated);
        latch
    }

    /// A re-INVITE's new parameters. A new SDP address forgets the latched source (the peer
    /// says where it is now); the SSRC heard and the counters stay, so that a peer that held
    /// with `c=0.0.0.0` and resumes from behind NAT is recognised by its stream (rule c).
    pub fn update(&mut self, negotiated: Negotiated) {
        if !same_addr(negotiated.rtp, self.sdp) {
            self.latched = None;
        }
        self.apply(negotiated);
    }

    fn apply(&mut self, negotiated: Negotiated) {
        self.sdp = negotiated.rtp;
        self.sdp_rtcp = if negotiated.rtcp_mux {
            negotiated.rtp
        } else {
            negotiated.rtcp.unwrap_or_else(|| {
                SocketAddr::new(negotiated.rtp.ip(), negotiated.rtp.port().wrapping_add(1))
            })
        };
        self.rtcp_mux = negotiated.rtcp_mux;
        self.srtp = negotiated.srtp;
        self.enabled = self.always || is_private(negotiated.rtp.ip());
        self.trusted.clear();
        // `c=0.0.0.0` (RFC 2543 hold) names no host; an unspecified IP never matches anyway.
        let sdp_ip = Some(negotiated.rtp.ip()).filter(|ip| !ip.is_unspecified());
        for ip in sdp_ip.into_iter().chain(negotiated.signalling) {
            let ip = ip.to_canonical();
            if self.trusted.len() < MAX_SIGNALLING_IPS
                && !ip.is_unspecified()
                && !self.trusted.contains(&ip)
            {
                self.trusted.push(ip);
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn is_peer_source(&self, from: SocketAddr) -> bool {
        same_addr(from, self.sdp) || self.latched.is_some_and(|l| same_addr(from, l))
    }

    /// First look at an RTP datagram from `from`. `Foreign` is counted here.
    pub fn screen_rtp(&mut self, from: SocketAddr) -> Screen {
        if self.is_peer_source(from) {
            Screen::Peer
        } else if self.enabled {
            Screen::Candidate
        } else {
            self.stats.foreign_rtp = self.stats.foreign_rtp.saturating_add(1);
            Screen::Foreign
        }
    }

    /// An RTP packet from the peer's source (`Screen::Peer`) was authenticated and parsed at
    /// `at`: its SSRC is the peer's stream from now on.
    pub fn heard(&mut self, ssrc: u32, at: Duration) {
        self.ssrc = Some(ssrc);
        self.last_heard = Some(at);
    }

    /// A `Screen::Candidate` packet after decryption and parsing (`None`: it failed either).
    /// Returns the new destination when the latch moved to `from` (the packet is then the
    /// peer's: play it); otherwise the packet is dropped and counted.
    ///
    /// A source from a signalling IP with another stream (rule b) takes over only once the
    /// peer's current source has been quiet for `TAKEOVER_QUIET`: two sources on the peer's
    /// host (or behind its NAT) sending at once must not flip our RTP between them, and a
    /// burst of packets from such a source while the peer talks does not steal the call.
    pub fn consider(
        &mut self,
        from: SocketAddr,
        evidence: Option<Evidence>,
        at: Duration,
    ) -> Option<SocketAddr> {
        let quiet = self
            .last_heard
            .is_none_or(|heard| at.saturating_sub(heard) >= TAKEOVER_QUIET);
        let proven = evidence.is_some_and(|e| {
            e.negotiated
                && if self.srtp {
                    e.authenticated
                } else {
                    self.ssrc == Some(e.ssrc)
                        || (quiet && self.trusted.iter().any(|ip| same_ip(*ip, from.ip())))
                }
        });
        match evidence {
            Some(e) if self.enabled && proven => {
                self.latched = Some(from);
                self.ssrc = Some(e.ssrc);
                self.last_heard = Some(at);
                self.stats.moves = self.stats.moves.saturating_add(1);
                Some(from)
            }
            _ => {
                self.stats.foreign_rtp = self.stats.foreign_rtp.saturating_add(1);
                None
            }
        }
    }

    /// May an RTCP datagram from `from` be decrypted and read? A `false` is counted.
    pub fn screen_rtcp(&mut self, from: SocketAddr) -> bool {
        let latched = self.latched.is_some_and(|l| {
            same_ip(from.ip(), l.ip())
                && (from.port() == l.port() || Some(from.port()) == l.port().checked_add(1))
        });
        let ok = same_addr(from, self.sdp_rtcp) || same_addr(from, self.sdp) || latched;
        if !ok {
            self.stats.foreign_rtcp = self.stats.foreign_rtcp.saturating_add(1);
        }
        ok
    }

    /// Where our RTP goes.
    pub fn destination(&self) -> SocketAddr {
        self.latched.unwrap_or(self.sdp)
    }

    /// Where our RTCP goes: the RTP destination with rtcp-mux; once latched, the latched IP at
    /// the latched port + 1 (where RTCP is accepted from too; the SDP's RTCP address is as
    /// unreachable as its RTP address); else the negotiated RTCP address.
    pub fn rtcp_destination(&self) -> SocketAddr {
        match self.latched {
            _ if self.rtcp_mux => self.destination(),
            Some(l) => SocketAddr::new(l.ip(), l.port().wrapping_add(1)),
            None => self.sdp_rtcp,
        }
    }

    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    pub fn stats(&self) -> SourceStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn plain(sdp: &str) -> Negotiated {
        Negotiated {
            rtp: a(sdp),
            rtcp: None,
            rtcp_mux: false,
            signalling: Vec::new(),
            srtp: false,
        }
    }

    fn rtp(ssrc: u32) -> Option<Evidence> {
        Some(Evidence {
            ssrc,
            negotiated: true,
            authenticated: false,
        })
    }

    /// Virtual time: every packet a test feeds comes 20 ms after the one before (per test:
    /// each runs on its own thread).
    fn tick() -> Duration {
        thread_local! {
            static NOW_MS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        }
        NOW_MS.with(|now| {
            let at = now.get();
            now.set(at + 20);
            Duration::from_millis(at)
        })
    }

    /// Feeds one plain RTP packet the way the media task does; true when it is played.
    fn packet(l: &mut Latch, from: &str, evidence: Option<Evidence>) -> bool {
        packet_at(l, from, evidence, tick())
    }

    fn packet_at(l: &mut Latch, from: &str, evidence: Option<Evidence>, at: Duration) -> bool {
        match l.screen_rtp(a(from)) {
            Screen::Peer => {
                if let Some(e) = evidence {
                    l.heard(e.ssrc, at);
                }
                evidence.is_some()
            }
            Screen::Candidate => l.consider(a(from), evidence, at).is_some(),
            Screen::Foreign => false,
        }
    }

    #[test]
    fn another_stream_from_a_signalling_ip_takes_over_only_once_the_peer_is_quiet() {
        // The peer's NAT (203.0.113.5) also hides another phone of the same household.
        let mut l = Latch::new(
            Negotiated {
                signalling: vec!["203.0.113.5".parse().unwrap()],
                ..plain("192.168.1.20:4000")
            },
            false,
        );
        let ms = Duration::from_millis;
        assert!(packet_at(&mut l, "203.0.113.5:6000", rtp(0x1111), ms(0)));
        assert!(packet_at(&mut l, "203.0.113.5:6000", rtp(0x1111), ms(20)));
        // While the peer talks, the other stream is dropped...
        assert!(!packet_at(&mut l, "203.0.113.5:7000", rtp(0x2222), ms(30)));
        assert!(!packet_at(
            &mut l,
            "203.0.113.5:7000",
            rtp(0x2222),
            ms(1019)
        ));
        assert_eq!(l.destination(), a("203.0.113.5:6000"));
        // ...and after a second of silence it may take over (a peer that restarted its stream
        // on a new port).
        assert!(packet_at(&mut l, "203.0.113.5:7000", rtp(0x2222), ms(1020)));
        assert_eq!(l.destination(), a("203.0.113.5:7000"));
        // The old source, back with its old SSRC... is the other stream now: it must wait too.
        assert!(!packet_at(
            &mut l,
            "203.0.113.5:6000",
            rtp(0x1111),
            ms(1040)
        ));
        assert_eq!(l.stats().foreign_rtp, 3);
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
    fn packets_from_the_sdp_address_are_accepted_and_settle_nothing() {
        for always in [false, true] {
            let mut l = Latch::new(plain("198.51.100.7:4000"), always);
            assert_eq!(l.screen_rtp(a("198.51.100.7:4000")), Screen::Peer);
            // A dual-stack socket names the same peer as a mapped address.
            assert_eq!(l.screen_rtp(a("[::ffff:198.51.100.7]:4000")), Screen::Peer);
            assert_eq!(l.destination(), a("198.51.100.7:4000"));
            assert_eq!(l.latched(), None);
            assert_eq!(l.stats(), SourceStats::default());
        }
    }

    #[test]
    fn without_latching_only_the_sdp_address_gets_in() {
        let mut l = Latch::new(plain("198.51.100.7:4000"), false);
        assert!(!l.enabled());
        assert!(packet(&mut l, "198.51.100.7:4000", rtp(1)));
        // Not even the peer's own SSRC or IP from another port: no latching, no move.
        assert_eq!(l.screen_rtp(a("203.0.113.5:6000")), Screen::Foreign);
        assert_eq!(l.screen_rtp(a("198.51.100.7:4002")), Screen::Foreign);
        assert_eq!(l.destination(), a("198.51.100.7:4000"));
        assert_eq!(l.stats().foreign_rtp, 2);
        assert_eq!(l.stats().moves, 0);
    }

    #[test]
    fn a_strangers_first_packet_does_not_latch() {
        // NAT'd peer (private SDP); a stranger's packet arrives before the peer's.
        let mut l = Latch::new(plain("192.168.1.20:4000"), false);
        assert!(l.enabled());
        assert_eq!(l.screen_rtp(a("203.0.113.66:7000")), Screen::Candidate);
        assert_eq!(l.consider(a("203.0.113.66:7000"), rtp(0xBAD), tick()), None);
        assert_eq!(l.destination(), a("192.168.1.20:4000"));
        assert_eq!(l.stats().foreign_rtp, 1);
        // Unparsable or undecryptable candidates are foreign too.
        assert_eq!(l.consider(a("203.0.113.66:7000"), None, tick()), None);
        assert_eq!(l.stats().foreign(), 2);
    }

    #[test]
    fn a_stranger_with_its_own_ssrc_is_dropped_while_the_peer_is_silent() {
        // The peer speaks from the SDP address, then holds (silence); a stranger on another
        // host sends a well-formed stream with its own SSRC to our port.
        let mut l = Latch::new(plain("10.0.0.2:4000"), true);
        for _ in 0..50 {
            assert!(packet(&mut l, "10.0.0.2:4000", rtp(0x1111)));
        }
        for _ in 0..150 {
            assert!(!packet(&mut l, "10.0.0.3:5004", rtp(0x2222)));
        }
        assert_eq!(l.stats().foreign_rtp, 150);
        assert_eq!(l.destination(), a("10.0.0.2:4000"));
        // The peer is still heard when it resumes.
        assert!(packet(&mut l, "10.0.0.2:4000", rtp(0x1111)));
    }

    #[test]
    fn a_nat_rebinding_keeps_the_ssrc_and_moves_the_latch() {
        let mut l = Latch::new(plain("192.168.1.20:4000"), false);
        // First latch: the peer's NAT sends from its public IP, which the SIP layer knows.
        l.update(Negotiated {
            signalling: vec!["203.0.113.5".parse().unwrap()],
            ..plain("192.168.1.20:4000")
        });
        assert!(packet(&mut l, "203.0.113.5:6000", rtp(0xAAAA)));
        assert_eq!(l.latched(), Some(a("203.0.113.5:6000")));
        // The NAT rebinds to a new port, and even to a new public IP: same stream, it moves.
        assert!(packet(&mut l, "203.0.113.5:6100", rtp(0xAAAA)));
        assert_eq!(l.destination(), a("203.0.113.5:6100"));
        assert!(packet(&mut l, "198.51.100.9:7000", rtp(0xAAAA)));
        assert_eq!(l.destination(), a("198.51.100.9:7000"));
        assert_eq!(l.stats().moves, 3);
        // The old source is no longer the peer's.
        assert_eq!(l.screen_rtp(a("203.0.113.5:6000")), Screen::Candidate);
        assert_eq!(l.consider(a("203.0.113.5:6000"), None, tick()), None);
        // A payload type we did not negotiate proves nothing, even with the right SSRC.
        let odd = Some(Evidence {
            negotiated: false,
            ..rtp(0xAAAA).unwrap()
        });
        assert_eq!(l.consider(a("198.51.100.10:7000"), odd, tick()), None);
        assert_eq!(l.destination(), a("198.51.100.9:7000"));
    }

    #[test]
    fn a_signalling_ip_may_latch_first_and_other_ips_may_not() {
        let mut l = Latch::new(
            Negotiated {
                signalling: vec!["203.0.113.5".parse().unwrap()],
                ..plain("192.168.1.20:4000")
            },
            false,
        );
        assert!(!packet(&mut l, "198.51.100.66:9000", rtp(0x5555)));
        assert!(packet(&mut l, "203.0.113.5:6000", rtp(0x1234)));
        assert_eq!(l.destination(), a("203.0.113.5:6000"));
        // The stranger still cannot take it over with its own stream.
        assert!(!packet(&mut l, "198.51.100.66:9000", rtp(0x5555)));
        assert_eq!(l.destination(), a("203.0.113.5:6000"));
        assert_eq!(l.stats().foreign_rtp, 2);
    }

    #[test]
    fn the_sdp_ip_counts_as_a_signalling_ip() {
        // The peer on this host (or behind a NAT that only changed the port) sends from
        // another port than its SDP names: tests/nat.rs's latching case.
        let mut l = Latch::new(plain("127.0.0.1:4000"), false);
        assert!(packet(&mut l, "127.0.0.1:4100", rtp(7)));
        assert_eq!(l.destination(), a("127.0.0.1:4100"));
        // 127.0.0.2 is another loopback host.
        assert!(!packet(&mut l, "127.0.0.2:4100", rtp(8)));
        // RFC 2543 hold names no host to trust.
        let mut held = Latch::new(plain("0.0.0.0:4000"), true);
        assert!(!packet(&mut held, "10.0.0.9:4000", rtp(9)));
    }

    #[test]
    fn with_srtp_only_an_authenticated_source_moves_the_latch() {
        let srtp = Negotiated {
            srtp: true,
            // Under SRTP a signalling IP or a known SSRC proves nothing: anyone can copy an
            // SSRC off the wire, only the key holder can make a packet that authenticates.
            signalling: vec!["203.0.113.5".parse().unwrap()],
            ..plain("192.168.1.20:4000")
        };
        let mut l = Latch::new(srtp, false);
        let forged = Evidence {
            ssrc: 0xAAAA,
            negotiated: true,
            authenticated: false,
        };
        assert_eq!(l.screen_rtp(a("203.0.113.5:6000")), Screen::Candidate);
        assert_eq!(
            l.consider(a("203.0.113.5:6000"), Some(forged), tick()),
            None
        );
        let genuine = Some(Evidence {
            authenticated: true,
            ..forged
        });
        assert_eq!(
            l.consider(a("198.51.100.9:6000"), genuine, tick()),
            Some(a("198.51.100.9:6000"))
        );
        l.heard(0xAAAA, tick());
        // A copy of the peer's SSRC from elsewhere that fails authentication stays out.
        assert_eq!(
            l.consider(a("198.51.100.66:6000"), Some(forged), tick()),
            None
        );
        assert_eq!(l.destination(), a("198.51.100.9:6000"));
        assert_eq!(l.stats().foreign_rtp, 2);
        assert_eq!(l.stats().moves, 1);
    }

    #[test]
    fn rtcp_comes_from_the_negotiated_rtcp_address_or_beside_the_latched_source() {
        let mut l = Latch::new(
            Negotiated {
                rtcp: Some(a("192.168.1.20:5000")),
                ..plain("192.168.1.20:4000")
            },
            false,
        );
        assert!(l.screen_rtcp(a("192.168.1.20:5000")));
        assert!(l.screen_rtcp(a("192.168.1.20:4000")));
        assert!(!l.screen_rtcp(a("192.168.1.20:4001")), "a=rtcp named 5000");
        assert!(!l.screen_rtcp(a("203.0.113.5:6001")), "nothing latched yet");
        assert_eq!(l.rtcp_destination(), a("192.168.1.20:5000"));
        // Latched to 203.0.113.5:6000 (a signalling IP).
        l.update(Negotiated {
            rtcp: Some(a("192.168.1.20:5000")),
            signalling: vec!["203.0.113.5".parse().unwrap()],
            ..plain("192.168.1.20:4000")
        });
        assert!(packet(&mut l, "203.0.113.5:6000", rtp(1)));
        assert!(l.screen_rtcp(a("203.0.113.5:6000")));
        assert!(l.screen_rtcp(a("203.0.113.5:6001")));
        assert!(!l.screen_rtcp(a("203.0.113.5:6002")));
        assert!(!l.screen_rtcp(a("198.51.100.66:6001")));
        assert_eq!(l.rtcp_destination(), a("203.0.113.5:6001"));
        assert_eq!(l.stats().foreign_rtcp, 4);
        assert_eq!(l.stats().foreign_rtp, 0);
        assert_eq!(l.stats().foreign(), 4);

        // rtcp-mux: RTCP shares the RTP address (and the latched one).
        let mut mux = Latch::new(
            Negotiated {
                rtcp_mux: true,
                rtcp: Some(a("10.0.0.2:4000")),
                ..plain("10.0.0.2:4000")
            },
            false,
        );
        assert!(mux.screen_rtcp(a("10.0.0.2:4000")));
        assert!(!mux.screen_rtcp(a("10.0.0.3:4000")));
        assert!(packet(&mut mux, "10.0.0.2:4100", rtp(3)));
        assert!(mux.screen_rtcp(a("10.0.0.2:4100")));
        assert_eq!(mux.rtcp_destination(), a("10.0.0.2:4100"));
        // Without a=rtcp the RTCP port is RTP + 1.
        let mut l = Latch::new(plain("198.51.100.7:4000"), false);
        assert!(l.screen_rtcp(a("198.51.100.7:4001")));
        assert_eq!(l.rtcp_destination(), a("198.51.100.7:4001"));
    }

    #[test]
    fn a_new_sdp_address_forgets_the_latch_but_not_the_stream_or_the_counts() {
        let mut l = Latch::new(plain("10.0.0.2:4000"), false);
        assert!(packet(&mut l, "10.0.0.2:4100", rtp(0xCAFE)));
        assert!(!packet(&mut l, "10.0.0.66:4100", rtp(0xBEEF)));
        // Hold the RFC 2543 way, then resume: the peer now sends from behind a NAT at an
        // address nobody told us about, with the stream we know.
        l.update(plain("0.0.0.0:4000"));
        assert_eq!(l.latched(), None);
        l.update(plain("10.0.0.2:4000"));
        assert_eq!(l.destination(), a("10.0.0.2:4000"));
        assert!(packet(&mut l, "198.51.100.9:30000", rtp(0xCAFE)));
        assert_eq!(l.destination(), a("198.51.100.9:30000"));
        // The same SDP again (a re-INVITE that changed something else) keeps the latch.
        l.update(plain("10.0.0.2:4000"));
        assert_eq!(l.destination(), a("198.51.100.9:30000"));
        assert_eq!(l.stats().foreign_rtp, 1);
        assert_eq!(l.stats().moves, 2);
    }

    #[test]
    fn signalling_ips_are_bounded_and_deduplicated() {
        let many: Vec<IpAddr> = (0..100u8)
            .map(|i| IpAddr::from([198, 51, 100, i % 20]))
            .collect();
        let l = Latch::new(
            Negotiated {
                signalling: many,
                ..plain("10.0.0.2:4000")
            },
            false,
        );
        assert_eq!(l.trusted.len(), MAX_SIGNALLING_IPS);
        assert_eq!(l.trusted[0], "10.0.0.2".parse::<IpAddr>().unwrap());
    }
}
