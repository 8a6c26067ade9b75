//! ICE in SDP (RFC 8839): the attributes we read from the peer and write for ourselves.
//!
//! Pure text handling. The candidates stay `a=candidate` values (text after `candidate:`):
//! `crate::ice` turns them into the ICE agent's types, so this layer needs no ICE crate. Every
//! list a peer's SDP can grow is bounded here.

/// Most `a=candidate` lines kept per m-line (and at session level). Real offers carry a
/// handful (host, srflx, relay per address family); the rest of a flood is ignored.
pub const MAX_CANDIDATES: usize = 32;
/// Longest ufrag or password kept (RFC 8839 §5.4: at most 256 characters).
pub const MAX_CREDENTIAL_LEN: usize = 256;
/// Longest candidate value kept: a real one is under 200 characters.
const MAX_CANDIDATE_LEN: usize = 512;
/// Shortest ufrag and password the RFC allows (RFC 8839 §5.4: 4 and 22 characters).
const MIN_UFRAG_LEN: usize = 4;
const MIN_PWD_LEN: usize = 22;

/// A ufrag/password pair (short-term credentials of one ICE session, RFC 8445 §5.3).
#[derive(Clone, PartialEq, Eq)]
pub struct IceCredentials {
    pub ufrag: String,
    pub pwd: String,
}

impl std::fmt::Debug for IceCredentials {
    /// The password authenticates connectivity checks: logs show the ufrag only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceCredentials")
            .field("ufrag", &self.ufrag)
            .field("pwd", &"<redacted>")
            .finish()
    }
}

impl IceCredentials {
    /// Fresh credentials from 32 random bytes: an 8-character ufrag and a 24-character
    /// password over the ice-char alphabet (RFC 8839 §5.4; 144 bits in the password).
    pub fn from_random(bytes: [u8; 32]) -> IceCredentials {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let char_of = |b: u8| char::from(ALPHABET[usize::from(b & 63)]);
        IceCredentials {
            ufrag: bytes[..8].iter().copied().map(char_of).collect(),
            pwd: bytes[8..].iter().copied().map(char_of).collect(),
        }
    }

    /// Our new credentials when the peer restarts ICE (RFC 8445 §9, RFC 8839 §4.4.1.1.2: the
    /// answer to a restart changes them too). Derived from our current password, which only
    /// the two ends and the signalling path know, and the peer's new credentials (SHA-256),
    /// so that the sans-IO core needs no random source of its own.
    pub fn for_restart(&self, peer: &IceCredentials) -> IceCredentials {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [&self.pwd, &self.ufrag, &peer.ufrag, &peer.pwd] {
            hash.update((part.len() as u64).to_be_bytes());
            hash.update(part.as_bytes());
        }
        IceCredentials::from_random(hash.finalize().into())
    }

    fn valid(&self) -> bool {
        let ice_chars = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        };
        (MIN_UFRAG_LEN..=MAX_CREDENTIAL_LEN).contains(&self.ufrag.len())
            && (MIN_PWD_LEN..=MAX_CREDENTIAL_LEN).contains(&self.pwd.len())
            && ice_chars(&self.ufrag)
            && ice_chars(&self.pwd)
    }
}

/// Our side of ICE for one offer or answer: written as `a=ice-ufrag`, `a=ice-pwd`,
/// `a=candidate` and `a=rtcp-mux` (the SDP's `c=`/`m=` carry the default candidate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalIce {
    pub credentials: IceCredentials,
    /// `a=candidate` values (`foundation component transport priority ip port typ ...`).
    pub candidates: Vec<String>,
}

impl LocalIce {
    /// Only the RTP component's candidates: for an answer to an offer that multiplexes RTCP
    /// (RFC 5761 §5.1.3: RTCP candidates are for an answerer that does not).
    pub fn without_rtcp(&self) -> LocalIce {
        LocalIce {
            credentials: self.credentials.clone(),
            candidates: self
                .candidates
                .iter()
                .filter(|c| c.split_whitespace().nth(1) == Some("1"))
                .cloned()
                .collect(),
        }
    }
}

/// The peer's side of ICE, as its SDP gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteIce {
    pub credentials: IceCredentials,
    /// Its `a=candidate` values for the accepted m-line, bounded by `MAX_CANDIDATES`.
    pub candidates: Vec<String>,
    /// `a=ice-lite` (RFC 8445 §2.5): it never checks; a full agent facing it is controlling.
    pub lite: bool,
}

/// ICE as negotiated for the call's audio stream: both sides do it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedIce {
    /// Our credentials in this offer/answer exchange.
    pub local: IceCredentials,
    pub remote: RemoteIce,
    /// Our role as the exchange suggests (RFC 8445 §6.1.1, RFC 8839 §4.2.1.1): the offerer
    /// controls unless it is lite and the answerer full. The ICE session keeps the role of its
    /// first exchange; later offers (hold, the peer's re-INVITE) do not swap it.
    pub controlling: bool,
}

/// The ICE attributes of a session part or of one m-line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScannedIce {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub candidates: Vec<String>,
    pub lite: bool,
    /// `a=ice-mismatch` (RFC 8839 §5.1): the answerer saw our default candidate changed on
    /// the way (an ALG rewrote `c=`), and ICE is off for the stream.
    pub mismatch: bool,
}

impl ScannedIce {
    /// Reads an attribute if it is one of ICE's; false when it is not.
    pub(super) fn scan_attribute(&mut self, name: &str, value: Option<&str>) -> bool {
        fn bounded(value: &str, limit: usize) -> Option<&str> {
            Some(value.trim()).filter(|v| v.len() <= limit)
        }
        match name.to_ascii_lowercase().as_str() {
            "ice-ufrag" => {
                self.ufrag = value
                    .and_then(|v| bounded(v, MAX_CREDENTIAL_LEN))
                    .map(str::to_owned)
            }
            "ice-pwd" => {
                self.pwd = value
                    .and_then(|v| bounded(v, MAX_CREDENTIAL_LEN))
                    .map(str::to_owned)
            }
            "candidate" => {
                if let Some(candidate) = value.and_then(|v| bounded(v, MAX_CANDIDATE_LEN))
                    && self.candidates.len() < MAX_CANDIDATES
                {
                    self.candidates.push(candidate.to_owned());
                }
            }
            "ice-lite" => self.lite = true,
            "ice-mismatch" => self.mismatch = true,
            // ice-options (trickle, ice2, ...), end-of-candidates, remote-candidates: nothing
            // a full agent without trickle needs.
            "ice-options" | "end-of-candidates" | "remote-candidates" | "ice-pacing" => {}
            _ => return false,
        }
        true
    }

    /// The peer's ICE for a stream: media-level ufrag/pwd win over session-level ones
    /// (RFC 8839 §5.4), `a=ice-lite` is session-level. `None` when the peer does not do ICE
    /// there: no credentials, invalid ones, no candidate, or `a=ice-mismatch`.
    pub fn remote(session: &ScannedIce, media: &ScannedIce) -> Option<RemoteIce> {
        if media.mismatch || session.mismatch {
            return None;
        }
        let credentials = IceCredentials {
            ufrag: media.ufrag.clone().or_else(|| session.ufrag.clone())?,
            pwd: media.pwd.clone().or_else(|| session.pwd.clone())?,
        };
        let candidates = if media.candidates.is_empty() {
            session.candidates.clone()
        } else {
            media.candidates.clone()
        };
        (credentials.valid() && !candidates.is_empty()).then_some(RemoteIce {
            credentials,
            candidates,
            lite: session.lite || media.lite,
        })
    }

    /// Whether the peer's SDP says it does ICE on this stream at all (credentials present),
    /// even when `remote` refuses what it wrote.
    pub fn offered(session: &ScannedIce, media: &ScannedIce) -> bool {
        (media.ufrag.is_some() || session.ufrag.is_some())
            && (media.pwd.is_some() || session.pwd.is_some())
    }
}

/// Whether an SDP offer comes from an ICE-lite agent (`a=ice-lite`, session level, RFC 8839
/// §5.3): the full agent answering it must be the controlling one (RFC 8445 §6.1.1).
pub fn offers_ice_lite(sdp: &str) -> bool {
    sdp.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("m="))
        .any(|l| l.eq_ignore_ascii_case("a=ice-lite"))
}

/// The connection address and port of a candidate value, when it parses that far
/// (`foundation component transport priority address port typ ...`).
pub fn candidate_address(candidate: &str) -> Option<std::net::SocketAddr> {
    let mut fields = candidate.split_whitespace();
    let address = fields.nth(4)?;
    let port = fields.next()?.parse().ok()?;
    Some(std::net::SocketAddr::new(address.parse().ok()?, port))
}

/// RFC 8839 §4.4.3.2: the default candidate (`c=` and `m=` port) must be one of the
/// candidates, else something on the way rewrote the SDP and ICE cannot work.
pub fn default_is_candidate(default: std::net::SocketAddr, candidates: &[String]) -> bool {
    candidates.iter().any(|c| {
        candidate_address(c).is_some_and(|a| {
            a.port() == default.port() && a.ip().to_canonical() == default.ip().to_canonical()
        })
    })
}

/// The RTCP component's default candidate (RFC 8839 §5.1, written as `a=rtcp`): the
/// component-2 candidate of the same type as the RTP default `rtp`, else the first
/// component-2 one; `None` when `local` has no RTCP candidates (RTCP is multiplexed).
pub fn rtcp_default(local: &LocalIce, rtp: std::net::SocketAddr) -> Option<std::net::SocketAddr> {
    let kind = |c: &str| {
        let mut fields = c.split_whitespace();
        let component = fields.nth(1)?.to_owned();
        let typ = fields
            .skip_while(|f| *f != "typ")
            .nth(1)
            .map(str::to_owned)?;
        Some((component, typ))
    };
    let rtp_kind = local
        .candidates
        .iter()
        .find(|c| candidate_address(c).is_some_and(|a| a == rtp))
        .and_then(|c| kind(c))
        .map(|(_, typ)| typ);
    let rtcp: Vec<&String> = local
        .candidates
        .iter()
        .filter(|c| kind(c).is_some_and(|(component, _)| component == "2"))
        .collect();
    rtcp.iter()
        .find(|c| kind(c).map(|(_, typ)| typ) == rtp_kind && rtp_kind.is_some())
        .or(rtcp.first())
        .and_then(|c| candidate_address(c))
}

/// Whether the first audio m-line of an SDP offer carries `a=rtcp-mux` (RFC 5761): then we
/// answer without RTCP candidates.
pub fn offers_rtcp_mux(sdp: &str) -> bool {
    sdp.lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("m=audio"))
        .skip(1)
        .take_while(|l| !l.starts_with("m="))
        .any(|l| l.eq_ignore_ascii_case("a=rtcp-mux"))
}

/// Our ICE lines for an m-line.
pub(super) fn write_lines(local: &LocalIce, out: &mut Vec<String>) {
    out.push(format!("a=ice-ufrag:{}", local.credentials.ufrag));
    out.push(format!("a=ice-pwd:{}", local.credentials.pwd));
    for candidate in &local.candidates {
        out.push(format!("a=candidate:{candidate}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(lines: &[&str]) -> ScannedIce {
        let mut ice = ScannedIce::default();
        for line in lines {
            let (name, value) = match line.split_once(':') {
                Some((n, v)) => (n, Some(v)),
                None => (*line, None),
            };
            assert!(ice.scan_attribute(name, value), "{line}");
        }
        ice
    }

    /// RFC 5761 §5.1.3 / RFC 8839 §5.1: the RTCP default candidate is the component-2 one of
    /// the RTP default's type; none without RTCP candidates. The offer's rtcp-mux is read
    /// from its audio m-line only.
    #[test]
    fn rtcp_default_follows_the_rtp_default_and_rtcp_mux_is_read_from_the_audio_line() {
        let local = LocalIce {
            credentials: IceCredentials::from_random([7; 32]),
            candidates: vec![
                "1 1 UDP 2130706431 10.0.0.2 4000 typ host".to_owned(),
                "2 1 UDP 1694498815 203.0.113.1 4000 typ srflx raddr 10.0.0.2 rport 4000"
                    .to_owned(),
                "1 2 UDP 2130706430 10.0.0.2 4001 typ host".to_owned(),
                "2 2 UDP 1694498814 203.0.113.1 4003 typ srflx raddr 10.0.0.2 rport 4001"
                    .to_owned(),
            ],
        };
        let at = |s: &str| s.parse::<std::net::SocketAddr>().expect("address");
        assert_eq!(
            rtcp_default(&local, at("203.0.113.1:4000")),
            Some(at("203.0.113.1:4003"))
        );
        assert_eq!(
            rtcp_default(&local, at("10.0.0.2:4000")),
            Some(at("10.0.0.2:4001"))
        );
        let mut rtp_only = local.clone();
        rtp_only.candidates.truncate(2);
        assert_eq!(rtcp_default(&rtp_only, at("203.0.113.1:4000")), None);
        let offer = "v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp-mux\r\nm=video 0 RTP/AVP 96\r\n";
        assert!(offers_rtcp_mux(offer));
        let video_only =
            "v=0\r\nm=audio 4000 RTP/AVP 0\r\nm=video 5000 RTP/AVP 96\r\na=rtcp-mux\r\n";
        assert!(!offers_rtcp_mux(video_only));
    }

    #[test]
    fn random_credentials_are_valid_and_differ() {
        let a = IceCredentials::from_random([7; 32]);
        let b = IceCredentials::from_random(std::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        assert!(a.valid() && b.valid());
        assert_eq!((a.ufrag.len(), a.pwd.len()), (8, 24));
        assert_ne!(a, b);
        assert!(
            !format!("{a:?}").contains(&a.pwd),
            "the password is not logged"
        );
    }

    #[test]
    fn an_ice_lite_offer_is_seen_at_session_level_only() {
        let lite = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\na=ice-lite\r\nc=IN IP4 192.0.2.1\r\n\
                    t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(offers_ice_lite(lite));
        let full = "v=0\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\na=ice-lite\r\n";
        assert!(
            !offers_ice_lite(full),
            "a media-level a=ice-lite is not the session's"
        );
        assert!(!offers_ice_lite(""));
    }

    #[test]
    fn a_restart_answer_gets_new_valid_credentials() {
        let ours = IceCredentials::from_random([7; 32]);
        let peer = IceCredentials::from_random([9; 32]);
        let next = ours.for_restart(&peer);
        assert!(next.valid());
        assert_ne!(next.ufrag, ours.ufrag);
        assert_ne!(next.pwd, ours.pwd);
        let other = ours.for_restart(&IceCredentials::from_random([10; 32]));
        assert_ne!(
            next, other,
            "each restart of the peer gives new credentials"
        );
    }

    #[test]
    fn media_level_credentials_win_and_candidates_are_bounded() {
        let session = scanned(&[
            "ice-ufrag:sess",
            "ice-pwd:sessionpasswordsessionpw",
            "ice-lite",
        ]);
        let mut media = scanned(&["ice-ufrag:medi"]);
        for i in 0..(MAX_CANDIDATES + 10) {
            media.scan_attribute(
                "candidate",
                Some(&format!(
                    "{i} 1 UDP 2130706431 192.0.2.1 {} typ host",
                    1000 + i
                )),
            );
        }
        let remote = ScannedIce::remote(&session, &media).expect("ICE");
        assert_eq!(remote.credentials.ufrag, "medi");
        assert_eq!(remote.credentials.pwd, "sessionpasswordsessionpw");
        assert!(remote.lite);
        assert_eq!(remote.candidates.len(), MAX_CANDIDATES);
    }

    #[test]
    fn no_candidates_short_password_or_mismatch_mean_no_ice() {
        let session = ScannedIce::default();
        let candidate = "candidate:1 1 UDP 2130706431 192.0.2.1 4000 typ host";
        let short = scanned(&["ice-ufrag:abcd", "ice-pwd:short", candidate]);
        assert!(ScannedIce::remote(&session, &short).is_none());
        let none = scanned(&["ice-ufrag:abcd", "ice-pwd:0123456789012345678901"]);
        assert!(ScannedIce::remote(&session, &none).is_none());
        assert!(ScannedIce::offered(&session, &none));
        let mut mismatch = scanned(&[
            "ice-ufrag:abcd",
            "ice-pwd:0123456789012345678901",
            candidate,
        ]);
        assert!(ScannedIce::remote(&session, &mismatch).is_some());
        mismatch.mismatch = true;
        assert!(ScannedIce::remote(&session, &mismatch).is_none());
    }

    #[test]
    fn the_default_candidate_is_found_among_the_candidates() {
        let candidates = vec![
            "1 1 UDP 2130706431 10.0.0.10 4000 typ host".to_owned(),
            "2 1 UDP 1694498815 203.0.113.1 4000 typ srflx raddr 10.0.0.10 rport 4000".to_owned(),
        ];
        assert!(default_is_candidate(
            "203.0.113.1:4000".parse().unwrap(),
            &candidates
        ));
        assert!(!default_is_candidate(
            "203.0.113.9:4000".parse().unwrap(),
            &candidates
        ));
        assert_eq!(candidate_address("1 1 UDP"), None);
    }
}
