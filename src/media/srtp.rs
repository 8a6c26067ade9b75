//! SRTP/SRTCP protection of one call (RFC 3711) with the SDES keys from the SDP
//! ([`crate::sdp::SrtpParams`]), on top of webrtc-srtp's contexts.
//!
//! Outgoing packets are encrypted with our key, incoming ones decrypted with the peer's. A
//! packet that fails (bad authentication tag, replay, garbage) is dropped and counted, never
//! an error for the call. Nothing here ever formats key material.
//!
//! webrtc-srtp keeps per-SSRC state and creates it *before* checking the authentication tag,
//! so a flood of forged packets with random SSRCs would grow its maps without bound. An SSRC
//! is therefore first authenticated in a small "probe" context, thrown away and rebuilt when
//! it has seen too many SSRCs; only authenticated SSRCs reach the context that keeps state.

use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

use crate::sdp::{CryptoSuite, KeySalt, SrtpParams};

/// Replay window (packets), RFC 3711 §3.3.2 asks for at least 64.
const REPLAY_WINDOW: usize = 128;
/// Distinct unauthenticated SSRCs the probe context may hold before it is rebuilt.
const MAX_PROBE_SSRCS: usize = 32;
/// Authenticated SSRCs kept per direction (a peer uses one, a few after re-INVITEs).
const MAX_KNOWN_SSRCS: usize = 16;

/// Why a packet could not be protected (only on key-length bugs or the 2^48 packet limit).
#[derive(Debug, thiserror::Error)]
#[error("SRTP: {0}")]
pub struct SrtpError(String);

fn profile(suite: CryptoSuite) -> ProtectionProfile {
    match suite {
        CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

fn context(key: &KeySalt, suite: CryptoSuite, replay: bool) -> Result<Context, SrtpError> {
    let (srtp, srtcp) = if replay {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    // webrtc-srtp's errors name lengths, never key bytes.
    Context::new(
        key.master_key(),
        key.master_salt(),
        profile(suite),
        srtp,
        srtcp,
    )
    .map_err(|e| SrtpError(e.to_string()))
}

/// The receiving side: authenticated SSRCs in `main`, new ones tried in `probe` first.
struct Inbound {
    key: KeySalt,
    suite: CryptoSuite,
    main: Context,
    probe: Context,
    probe_ssrcs: usize,
    known_rtp: Vec<u32>,
    known_rtcp: Vec<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rtp,
    Rtcp,
}

impl Inbound {
    fn decrypt(&mut self, kind: Kind, packet: &[u8]) -> Option<Vec<u8>> {
        // RTP: SSRC at bytes 8..12; RTCP: the sender's SSRC at 4..8.
        let at = if kind == Kind::Rtp { 8 } else { 4 };
        let ssrc = u32::from_be_bytes(packet.get(at..at + 4)?.try_into().ok()?);
        let run = |context: &mut Context| match kind {
            Kind::Rtp => context.decrypt_rtp(packet),
            Kind::Rtcp => context.decrypt_rtcp(packet),
        };
        let known = match kind {
            Kind::Rtp => &self.known_rtp,
            Kind::Rtcp => &self.known_rtcp,
        };
        if known.contains(&ssrc) {
            return run(&mut self.main).ok().map(|b| b.to_vec());
        }
        if self.probe_ssrcs >= MAX_PROBE_SSRCS {
            self.probe = context(&self.key, self.suite, false).ok()?;
            self.probe_ssrcs = 0;
        }
        self.probe_ssrcs += 1;
        run(&mut self.probe).ok()?;
        // Authentic: from now on this SSRC lives in `main` (which starts its state here).
        let full = match kind {
            Kind::Rtp => self.known_rtp.len(),
            Kind::Rtcp => self.known_rtcp.len(),
        } >= MAX_KNOWN_SSRCS;
        if full {
            self.main = context(&self.key, self.suite, true).ok()?;
            self.known_rtp.clear();
            self.known_rtcp.clear();
        }
        match kind {
            Kind::Rtp => self.known_rtp.push(ssrc),
            Kind::Rtcp => self.known_rtcp.push(ssrc),
        }
        run(&mut self.main).ok().map(|b| b.to_vec())
    }
}

/// Both directions of one call's SRTP.
pub struct SrtpSession {
    params: SrtpParams,
    outbound: Context,
    inbound: Inbound,
    auth_failures: u64,
}

impl Inbound {
    /// A fresh receiving side for the peer's key: no stream known yet.
    fn new(params: &SrtpParams) -> Result<Inbound, SrtpError> {
        Ok(Inbound {
            key: params.remote_key.clone(),
            suite: params.suite,
            main: context(&params.remote_key, params.suite, true)?,
            probe: context(&params.remote_key, params.suite, false)?,
            probe_ssrcs: 0,
            known_rtp: Vec::new(),
            known_rtcp: Vec::new(),
        })
    }
}

impl SrtpSession {
    pub fn new(params: &SrtpParams) -> Result<SrtpSession, SrtpError> {
        Ok(SrtpSession {
            outbound: context(&params.local_key, params.suite, false)?,
            inbound: Inbound::new(params)?,
            params: params.clone(),
            auth_failures: 0,
        })
    }

    /// New keys from a re-INVITE: only the direction whose key or suite changed restarts (a
    /// sending context rebuilt with the same key would reuse its keystream).
    pub fn rekey(&mut self, params: &SrtpParams) -> Result<(), SrtpError> {
        if params.local_key != self.params.local_key || params.suite != self.params.suite {
            self.outbound = context(&params.local_key, params.suite, false)?;
        }
        if params.remote_key != self.params.remote_key || params.suite != self.params.suite {
            self.inbound = Inbound::new(params)?;
        }
        self.params = params.clone();
        Ok(())
    }

    pub fn suite(&self) -> CryptoSuite {
        self.params.suite
    }

    /// Incoming packets dropped because they failed authentication, replay or parsing.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures
    }

    pub fn protect_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.outbound
            .encrypt_rtp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError(e.to_string()))
    }

    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        self.outbound
            .encrypt_rtcp(packet)
            .map(|b| b.to_vec())
            .map_err(|e| SrtpError(e.to_string()))
    }

    /// The plain RTP packet, or `None` (counted) when it is not authentic.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let plain = self.inbound.decrypt(Kind::Rtp, packet);
        self.auth_failures += u64::from(plain.is_none());
        plain
    }

    /// Like [`Self::unprotect_rtp`] for a packet from a source that is not the peer's (yet):
    /// a failure is not counted here, since it is a stranger's packet, not a damaged one of
    /// the peer's stream (the latch counts it as foreign). A failed packet changes no state:
    /// webrtc-srtp moves the replay window and rollover counter only once the tag checks out,
    /// and unknown SSRCs only reach the bounded probe context.
    pub fn authenticate_rtp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        self.inbound.decrypt(Kind::Rtp, packet)
    }

    /// The plain RTCP compound packet, or `None` (counted) when it is not authentic.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        let plain = self.inbound.decrypt(Kind::Rtcp, packet);
        self.auth_failures += u64::from(plain.is_none());
        plain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::RtpPacketBuilder;

    fn pair(suite: CryptoSuite) -> (SrtpSession, SrtpSession) {
        let (a, b) = (KeySalt::random(), KeySalt::random());
        let alice = SrtpParams {
            suite,
            tag: 1,
            local_key: a.clone(),
            remote_key: b.clone(),
        };
        let bob = SrtpParams {
            suite,
            tag: 1,
            local_key: b,
            remote_key: a,
        };
        (
            SrtpSession::new(&alice).expect("alice"),
            SrtpSession::new(&bob).expect("bob"),
        )
    }

    fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        RtpPacketBuilder::new(0, seq, u32::from(seq) * 160, ssrc)
            .write(payload, &mut out)
            .expect("rtp");
        out
    }

    #[test]
    fn round_trips_rtp_and_rtcp_in_both_suites_and_hides_the_payload() {
        for suite in CryptoSuite::OFFERED {
            let (mut alice, mut bob) = pair(suite);
            for seq in 0..100u16 {
                let plain = rtp(seq, 0x1234, b"hello hello hello hello");
                let wire = alice.protect_rtp(&plain).expect("protect");
                let tag = if suite == CryptoSuite::AesCm128HmacSha1_80 {
                    10
                } else {
                    4
                };
                assert_eq!(wire.len(), plain.len() + tag);
                assert!(
                    !wire.windows(5).any(|w| w == b"hello"),
                    "payload is encrypted"
                );
                assert_eq!(bob.unprotect_rtp(&wire).as_deref(), Some(plain.as_slice()));
            }
            // RTCP: a minimal receiver report.
            let rr = [0x80, 201, 0, 1, 0, 0, 0x12, 0x34];
            let wire = bob.protect_rtcp(&rr).expect("protect rtcp");
            assert_eq!(alice.unprotect_rtcp(&wire).as_deref(), Some(&rr[..]));
            assert_eq!(alice.auth_failures() + bob.auth_failures(), 0);
        }
    }

    #[test]
    fn forged_replayed_and_garbage_packets_are_dropped_and_counted() {
        let (mut alice, mut bob) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let wire = alice.protect_rtp(&rtp(1, 7, b"payload")).expect("protect");
        let mut forged = wire.clone();
        if let Some(byte) = forged.get_mut(14) {
            *byte ^= 1;
        }
        assert_eq!(bob.unprotect_rtp(&forged), None);
        assert!(bob.unprotect_rtp(&wire).is_some());
        assert_eq!(bob.unprotect_rtp(&wire), None, "replay");
        assert_eq!(bob.unprotect_rtp(&[1, 2, 3]), None);
        assert_eq!(bob.unprotect_rtcp(&[0x80, 201, 0, 1]), None);
        // Plain RTP is not authentic either.
        assert_eq!(bob.unprotect_rtp(&rtp(2, 7, b"payload")), None);
        assert_eq!(bob.auth_failures(), 5);
        // A flood of forged packets with fresh SSRCs does not stop the real stream.
        for ssrc in 0..10_000u32 {
            let mut fake = rtp(3, ssrc + 100, b"payload");
            fake.extend_from_slice(&[0; 10]);
            assert_eq!(bob.unprotect_rtp(&fake), None);
        }
        assert!(bob.inbound.probe_ssrcs <= MAX_PROBE_SSRCS);
        let next = alice.protect_rtp(&rtp(4, 7, b"payload")).expect("protect");
        assert!(bob.unprotect_rtp(&next).is_some());
    }

    #[test]
    fn authenticating_a_strangers_packet_counts_nothing_and_keeps_the_stream_going() {
        let (mut alice, mut bob) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let first = alice.protect_rtp(&rtp(1, 7, b"payload")).expect("protect");
        assert!(bob.unprotect_rtp(&first).is_some());
        // A forged copy of the next packet (right SSRC and sequence, wrong tag), then plain
        // RTP: rejected, not counted as the peer's failures, and the genuine packet with that
        // very sequence number still passes (the replay window did not move).
        let next = alice.protect_rtp(&rtp(2, 7, b"payload")).expect("protect");
        let mut forged = next.clone();
        if let Some(byte) = forged.get_mut(14) {
            *byte ^= 1;
        }
        assert_eq!(bob.authenticate_rtp(&forged), None);
        assert_eq!(bob.authenticate_rtp(&rtp(2, 99, b"plain")), None);
        assert_eq!(bob.auth_failures(), 0);
        assert_eq!(
            bob.authenticate_rtp(&next).as_deref(),
            Some(rtp(2, 7, b"payload").as_slice())
        );
        assert_eq!(bob.authenticate_rtp(&next), None, "replay");
    }

    #[test]
    fn rekey_restarts_only_the_direction_that_changed() {
        let (mut alice, mut bob) = pair(CryptoSuite::AesCm128HmacSha1_80);
        let first = alice.protect_rtp(&rtp(1, 9, b"x")).expect("protect");
        assert!(bob.unprotect_rtp(&first).is_some());
        let mut params = alice.params.clone();
        params.local_key = KeySalt::random();
        alice.rekey(&params).expect("rekey");
        let mut bob_params = bob.params.clone();
        bob_params.remote_key = params.local_key.clone();
        bob.rekey(&bob_params).expect("rekey");
        let second = alice.protect_rtp(&rtp(2, 9, b"x")).expect("protect");
        assert!(bob.unprotect_rtp(&second).is_some());
        // Bob's sending side kept its key: Alice still reads him.
        let back = bob.protect_rtp(&rtp(1, 10, b"y")).expect("protect");
        assert!(alice.unprotect_rtp(&back).is_some());
    }
}
