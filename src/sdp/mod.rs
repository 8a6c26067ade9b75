//! SDP offer/answer (RFC 3264) for the single audio stream of a call.
//!
//! Pure code: text in, text and [`MediaParams`] out. Remote SDP is read by [`scan`] (webrtc-sdp
//! for each line, our own structure on top, see there why); our SDP is written by [`write`].

mod crypto;
pub mod ice;
pub mod scan;
mod write;

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

pub use crypto::{
    CryptoAttribute, CryptoError, CryptoSuite, KEY_SALT_LEN, KeySalt, LocalSrtp, SrtpParams,
    SrtpPolicy, redact_inline_key_bytes, redact_inline_keys,
};
pub use ice::{IceCredentials, LocalIce, NegotiatedIce, RemoteIce};
pub use scan::{MAX_MEDIA_SECTIONS, MAX_SDP_BYTES, crypto_lines};

use scan::{ConnectionAddress, MediaSection, SessionDescription, Transport};
use write::AudioLine;

/// The payload type we offer Opus under (dynamic; a peer's offer may use any other).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;
/// telephone-event/8000 in our offers.
pub const TELEPHONE_EVENT_8K_PAYLOAD_TYPE: u8 = 101;
/// telephone-event/48000 in our offers, only when Opus is offered.
pub const TELEPHONE_EVENT_48K_PAYLOAD_TYPE: u8 = 110;
/// Packet time we ask for and use when the peer states none.
pub const DEFAULT_PTIME_MS: u32 = 20;
/// A peer's `a=ptime` outside this range is ignored (it would be nonsense or a DoS lever).
const PTIME_RANGE_MS: std::ops::RangeInclusive<u64> = 10..=120;

/// An audio codec we can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Opus,
    Pcmu,
    Pcma,
    /// G.722: 16 kHz audio, but 8000 in SDP and RTP timestamps (RFC 3551 §4.5.2).
    G722,
}

impl Codec {
    /// The name used in the config file: `opus`, `pcmu`, `pcma`.
    pub fn config_name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
            Codec::G722 => "g722",
        }
    }

    /// The encoding name in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G722 => "G722",
        }
    }

    /// RTP clock rate (Opus always signals 48 kHz, RFC 7587).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 8_000,
        }
    }

    /// Channels as written in `a=rtpmap`: Opus always says 2 (RFC 7587 §7; real stereo is the
    /// fmtp `stereo` parameter), G.711 is mono.
    pub fn channels(self) -> u8 {
        match self {
            Codec::Opus => 2,
            Codec::Pcmu | Codec::Pcma | Codec::G722 => 1,
        }
    }

    /// The static payload type (RFC 3551), if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Opus => None,
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::G722 => Some(9),
        }
    }

    /// The payload type we offer the codec under.
    fn offered_payload_type(self) -> u8 {
        self.static_payload_type().unwrap_or(OPUS_PAYLOAD_TYPE)
    }

    fn from_rtpmap(encoding_name: &str, clock_rate: u32) -> Option<Codec> {
        [Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::G722]
            .into_iter()
            .find(|codec| {
                codec.encoding_name().eq_ignore_ascii_case(encoding_name)
                    && codec.clock_rate() == clock_rate
            })
    }
}

impl FromStr for Codec {
    type Err = SdpError;

    /// Parses a config name, case-insensitively.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [Codec::Opus, Codec::Pcmu, Codec::Pcma, Codec::G722]
            .into_iter()
            .find(|codec| codec.config_name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| SdpError::UnknownCodecName(name.to_owned()))
    }
}

/// Media direction (RFC 3264 §5.1), always from the point of view of the side that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same stream seen from the other side: sendonly becomes recvonly and back.
    pub fn reverse(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// What both allow: we send only if we want to and the peer receives.
    fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    /// The SDP attribute name: `sendrecv`, `sendonly`, `recvonly`, `inactive`.
    pub fn attribute_name(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// Our side of the audio stream, as the UA knows it when it writes an offer or an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    pub address: IpAddr,
    pub rtp_port: u16,
    /// Preference order; only these are offered or accepted.
    pub codecs: Vec<Codec>,
    /// What we want: `SendOnly` to hold, `SendRecv` normally.
    pub direction: Direction,
    pub session_id: u64,
    /// Must grow by one for each new offer or answer in the session (RFC 3264 §8).
    pub session_version: u64,
    /// SRTP policy and this call's fresh SDES keys.
    pub srtp: LocalSrtp,
    /// Our ICE credentials and candidates (`address`/`rtp_port` are the default candidate);
    /// `None`: no ICE (the account's `ice = false`).
    pub ice: Option<LocalIce>,
}

/// The negotiated result for the single audio stream the call uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaParams {
    /// Where to send RTP. Its IP is unspecified (`0.0.0.0`) when the peer holds the call the
    /// RFC 2543 way; `direction` then says not to send.
    pub remote: SocketAddr,
    /// Where to send RTCP: the RTP address with rtcp-mux, `a=rtcp`, or else RTP port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    pub codec: Codec,
    /// The payload type for `codec` on this call (the offerer's number).
    pub payload_type: u8,
    pub clock_rate: u32,
    pub channels: u8,
    /// Packet time to send with: the peer's `a=ptime`, else 20.
    pub ptime_ms: u32,
    /// RFC 4733 DTMF payload type at the codec's clock rate, if both sides have it.
    pub telephone_event_pt: Option<u8>,
    /// Ours, as seen from our side: `RecvOnly` when the peer holds us, `SendOnly` when we hold.
    pub direction: Direction,
    /// RTP and RTCP share the RTP port (RFC 5761).
    pub rtcp_mux: bool,
    /// SRTP suite and keys when both sides agreed on `a=crypto`; `None`: plain RTP.
    pub srtp: Option<SrtpParams>,
    /// The SDP (and so any SDES keys in it) went over TLS to or from the next hop; false:
    /// over UDP or TCP, readable by anyone on the path. SDP parsing leaves it false; the SIP
    /// layer fills it from the call's transport.
    pub signalling_tls: bool,
    /// IPs the SIP layer knows for the peer (where its SIP came from, its Contact host). On
    /// plain RTP, a packet from one of them may move the RTP latch (`nat::latch`, rule b), as
    /// the SDP's own address may. SDP parsing leaves it empty; the SIP layer fills it.
    pub peer_signalling: Vec<IpAddr>,
    /// Both sides do ICE on the stream: media goes over the pair ICE selects, not to `remote`
    /// (the peer's default candidate). `None`: the `c=`/`m=` address as without ICE.
    pub ice: Option<Box<NegotiatedIce>>,
}

/// Why an SDP body cannot be used. Every variant is answered with 488 by the UA when it comes
/// from an offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    #[error("SDP body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("SDP body has more than {limit} m-lines")]
    TooManyMediaSections { limit: usize },
    #[error("malformed m-line at line {line_number}")]
    InvalidMediaLine { line_number: usize },
    #[error("SDP body has no m-line")]
    NoMedia,
    #[error("no audio stream over RTP/AVP that we could take")]
    NoUsableAudio,
    #[error("no audio codec in common")]
    NoCommonCodec,
    #[error("the answer rejected our audio stream (port 0)")]
    AudioRejected,
    #[error("audio stream has no c= line")]
    MissingConnection,
    #[error("unusable connection address {0:?} (host names are not resolved)")]
    UnusableConnectionAddress(String),
    #[error("unknown codec name {0:?} (known: opus, pcmu, pcma)")]
    UnknownCodecName(String),
    #[error("SRTP is required but the offer has no usable a=crypto (AES_CM_128_HMAC_SHA1_80/32)")]
    SrtpRequired,
    #[error("the offer requires SRTP (RTP/SAVP) and SRTP is off for this account")]
    SrtpOff,
    #[error("the answer has no a=crypto: the peer refused SRTP, which this account requires")]
    SrtpNotAnswered,
    #[error("the answer's a=crypto does not match any key we offered")]
    BadCryptoAnswer,
}

/// The SDP offer for `local`: one audio m-line with the codecs in `local.codecs` order.
pub fn build_offer(local: &LocalMedia) -> String {
    let mut codecs: Vec<(u8, Codec)> = Vec::new();
    for codec in &local.codecs {
        if !codecs.iter().any(|(_, offered)| offered == codec) {
            codecs.push((codec.offered_payload_type(), *codec));
        }
    }
    let mut telephone_events = Vec::new();
    if local.codecs.contains(&Codec::Opus) {
        telephone_events.push((TELEPHONE_EVENT_48K_PAYLOAD_TYPE, 48_000));
    }
    telephone_events.push((TELEPHONE_EVENT_8K_PAYLOAD_TYPE, 8_000));
    let mut lines = write::session_lines(local);
    write::audio_lines(
        &AudioLine {
            port: local.rtp_port,
            // Optional SRTP offers RTP/AVP with keys (best effort, as baresip's `srtp` and
            // MicroSIP's "optional" do), so that peers without SRTP still take the call.
            proto: match local.srtp.policy {
                SrtpPolicy::Mandatory => "RTP/SAVP",
                SrtpPolicy::Off | SrtpPolicy::Optional => "RTP/AVP",
            },
            codecs,
            telephone_events,
            direction: local.direction,
            // With ICE, RTCP shares the RTP port (RFC 5761): one component to check and
            // keep open through NATs instead of two. Our ICE also offers RTCP candidates
            // (`a=rtcp` names the default one) for an answerer that does not multiplex
            // (RFC 5761 §5.1.3).
            rtcp_mux: local.ice.is_some(),
            crypto: local.srtp.offer_lines(),
            ice: local.ice.as_ref(),
            ice_mismatch: false,
            rtcp: local.ice.as_ref().and_then(|ice| {
                ice::rtcp_default(ice, SocketAddr::new(local.address, local.rtp_port))
            }),
        },
        &mut lines,
    );
    write::finish(lines)
}

/// The first `a=crypto` line of `media` we can use (RFC 4568 §7.1.1: in the offerer's order).
fn choose_crypto(media: &MediaSection) -> Option<CryptoAttribute> {
    media
        .crypto
        .iter()
        .find_map(|value| CryptoAttribute::parse(value).ok())
}

/// Why no m-line of an offer was taken, in the order of what helps the user most.
#[derive(Default)]
struct Refusals {
    usable_audio: bool,
    without_crypto: bool,
    secure_only: bool,
}

/// The codec and payload types chosen on one m-line.
struct Choice {
    codec: Codec,
    payload_type: u8,
    telephone_event_pt: Option<u8>,
}

/// The first payload type of `media` (in its order) whose codec is in `ours`.
/// `fallback` names codecs for payload types the section lists without an rtpmap.
fn choose_codec(
    media: &MediaSection,
    ours: &[Codec],
    fallback: impl Fn(u8) -> Option<Codec>,
) -> Option<Choice> {
    let codec_of = |payload_type: u8| match media.rtpmap(payload_type) {
        Some(map) => Codec::from_rtpmap(&map.encoding_name, map.clock_rate),
        None => fallback(payload_type),
    };
    let (payload_type, codec) = media.payload_types.iter().find_map(|pt| {
        codec_of(*pt)
            .filter(|codec| ours.contains(codec))
            .map(|c| (*pt, c))
    })?;
    // RFC 4733: the event clock must be the codec's.
    let telephone_event_pt = media.payload_types.iter().copied().find(|pt| {
        media.rtpmap(*pt).is_some_and(|map| {
            map.encoding_name.eq_ignore_ascii_case("telephone-event")
                && map.clock_rate == codec.clock_rate()
        })
    });
    Some(Choice {
        codec,
        payload_type,
        telephone_event_pt,
    })
}

/// Payload types every peer knows without an rtpmap (RFC 3551).
fn static_codec(payload_type: u8) -> Option<Codec> {
    [Codec::Pcmu, Codec::Pcma, Codec::G722]
        .into_iter()
        .find(|codec| codec.static_payload_type() == Some(payload_type))
}

/// Where the stream's RTP and RTCP go, and whether the peer receives at all.
struct RemoteEndpoint {
    rtp: SocketAddr,
    rtcp: Option<SocketAddr>,
    /// `c=0.0.0.0`: RFC 2543 hold, the peer does not want media (RFC 3264 §8.4).
    on_hold_by_address: bool,
}

fn remote_endpoint(
    session: &SessionDescription,
    media: &MediaSection,
    rtcp_mux: bool,
) -> Result<RemoteEndpoint, SdpError> {
    let ip = match media.connection.as_ref().or(session.connection.as_ref()) {
        Some(ConnectionAddress::Ip(ip)) => *ip,
        Some(ConnectionAddress::Unusable(text)) => {
            return Err(SdpError::UnusableConnectionAddress(text.clone()));
        }
        None => return Err(SdpError::MissingConnection),
    };
    let rtp = SocketAddr::new(ip, media.port);
    let rtcp = if rtcp_mux {
        Some(rtp)
    } else if let Some((port, address)) = media.rtcp {
        Some(SocketAddr::new(address.unwrap_or(ip), port))
    } else {
        media
            .port
            .checked_add(1)
            .map(|port| SocketAddr::new(ip, port))
    };
    Ok(RemoteEndpoint {
        rtp,
        rtcp,
        on_hold_by_address: ip.is_unspecified(),
    })
}

/// The peer's direction as written, with `c=0.0.0.0` taken as "do not send to me".
fn peer_direction(
    session: &SessionDescription,
    media: &MediaSection,
    endpoint: &RemoteEndpoint,
) -> Direction {
    let written = media.direction.or(session.direction).unwrap_or_default();
    if endpoint.on_hold_by_address {
        Direction::from_flags(written.sends(), false)
    } else {
        written
    }
}

fn ptime_ms(media: &MediaSection) -> u32 {
    media
        .ptime_ms
        .filter(|ptime| PTIME_RANGE_MS.contains(ptime))
        .and_then(|ptime| u32::try_from(ptime).ok())
        .unwrap_or(DEFAULT_PTIME_MS)
}

/// Parse an offer, choose the codec (intersection in the offerer's order, restricted to our list),
/// and produce the answer text + params. Nothing in common -> Err(SdpError::NoCommonCodec) (UA sends 488).
///
/// The answer has one m-line per offered m-line: the first audio m-line over RTP/AVP(F) (or
/// RTP/SAVP(F) with a usable `a=crypto`, as `local.srtp` allows) with a codec in common gets our
/// port, every other one is echoed with port 0. When the accepted m-line carries a usable
/// `a=crypto` and SRTP is not off, the answer takes its tag and suite with our own key.
pub fn answer_offer(offer: &str, local: &LocalMedia) -> Result<(String, MediaParams), SdpError> {
    let session = scan::scan(offer)?;
    if session.media.is_empty() {
        return Err(SdpError::NoMedia);
    }
    let mut refusals = Refusals::default();
    let mut accepted: Option<(usize, Choice, Option<CryptoAttribute>)> = None;
    for (index, media) in session.media.iter().enumerate() {
        if !media.is_audio || media.port == 0 {
            continue;
        }
        let crypto = match (media.transport, local.srtp.policy) {
            (Transport::Unsupported, _) => continue,
            (Transport::SecureRtp, SrtpPolicy::Off) => {
                refusals.secure_only = true;
                continue;
            }
            (Transport::PlainRtp, SrtpPolicy::Off) => None,
            // RTP/AVP with a=crypto is best-effort SRTP: take the key when we can.
            (transport, policy) => match choose_crypto(media) {
                Some(crypto) => Some(crypto),
                None if policy == SrtpPolicy::Mandatory || transport == Transport::SecureRtp => {
                    refusals.without_crypto = true;
                    continue;
                }
                None => None,
            },
        };
        refusals.usable_audio = true;
        if let Some(choice) = choose_codec(media, &local.codecs, static_codec) {
            accepted = Some((index, choice, crypto));
            break;
        }
    }
    let Some((accepted_index, choice, crypto)) = accepted else {
        return Err(if refusals.usable_audio {
            SdpError::NoCommonCodec
        } else if refusals.without_crypto {
            SdpError::SrtpRequired
        } else if refusals.secure_only {
            SdpError::SrtpOff
        } else {
            SdpError::NoUsableAudio
        });
    };
    // Our answer: the offer's tag and suite with our own key (RFC 4568 §7.1.2).
    let srtp = crypto.map(|offered| SrtpParams {
        suite: offered.suite,
        tag: offered.tag,
        local_key: local.srtp.keys[0].clone(),
        remote_key: offered.key,
    });
    let Some(media) = session.media.get(accepted_index) else {
        return Err(SdpError::NoUsableAudio);
    };
    let endpoint = remote_endpoint(&session, media, media.rtcp_mux)?;
    let direction = peer_direction(&session, media, &endpoint)
        .reverse()
        .intersect(local.direction);
    // ICE only when the offer does it too (RFC 8839 §4.3.1), and not when the offer's default
    // candidate is none of its candidates: an ALG rewrote it (§4.4.3.2, `a=ice-mismatch`).
    let offered_ice = ice::ScannedIce::offered(&session.ice, &media.ice);
    let remote_ice = ice::ScannedIce::remote(&session.ice, &media.ice);
    let ice_mismatch = local.ice.is_some()
        && remote_ice
            .as_ref()
            .is_some_and(|r| !ice::default_is_candidate(endpoint.rtp, &r.candidates));
    let negotiated_ice = match (&local.ice, remote_ice) {
        (Some(ours), Some(remote)) if !ice_mismatch => Some(Box::new(NegotiatedIce {
            local: ours.credentials.clone(),
            // A lite offerer leaves control to us, a full answerer (RFC 8445 §6.1.1).
            controlling: remote.lite,
            remote,
        })),
        _ => None,
    };
    let our_ice = negotiated_ice
        .as_ref()
        .and(local.ice.as_ref())
        .filter(|_| offered_ice);
    // RTCP candidates only when the offer does not multiplex RTCP (`sip_task` gathers them
    // then); with rtcp-mux, `a=rtcp-mux` alone.
    let offered_mux = session
        .media
        .get(accepted_index)
        .is_some_and(|m| m.rtcp_mux);
    let our_ice = our_ice.map(|ice| {
        if offered_mux {
            ice.without_rtcp()
        } else {
            ice.clone()
        }
    });
    let our_rtcp = our_ice
        .as_ref()
        .and_then(|ice| ice::rtcp_default(ice, SocketAddr::new(local.address, local.rtp_port)));

    let mut lines = write::session_lines(local);
    for (index, offered) in session.media.iter().enumerate() {
        if index != accepted_index {
            write::rejected_line(offered, &mut lines);
            continue;
        }
        let telephone_events = choice
            .telephone_event_pt
            .map(|pt| (pt, choice.codec.clock_rate()))
            .into_iter()
            .collect();
        write::audio_lines(
            &AudioLine {
                port: local.rtp_port,
                proto: &offered.proto,
                codecs: vec![(choice.payload_type, choice.codec)],
                telephone_events,
                direction,
                rtcp_mux: offered.rtcp_mux,
                crypto: srtp
                    .iter()
                    .map(|srtp| {
                        CryptoAttribute {
                            tag: srtp.tag,
                            suite: srtp.suite,
                            key: srtp.local_key.clone(),
                        }
                        .sdp_value()
                    })
                    .collect(),
                ice: our_ice.as_ref(),
                ice_mismatch,
                rtcp: our_rtcp,
            },
            &mut lines,
        );
    }
    let params = MediaParams {
        remote: endpoint.rtp,
        remote_rtcp: endpoint.rtcp,
        codec: choice.codec,
        payload_type: choice.payload_type,
        clock_rate: choice.codec.clock_rate(),
        channels: choice.codec.channels(),
        ptime_ms: ptime_ms(media),
        telephone_event_pt: choice.telephone_event_pt,
        direction,
        rtcp_mux: media.rtcp_mux,
        srtp,
        peer_signalling: Vec::new(),
        ice: negotiated_ice,
        signalling_tls: false,
    };
    Ok((write::finish(lines), params))
}

/// Apply the answer to our offer.
///
/// Our offer has one m-line, so the answer's first m-line is its answer. A peer that answers
/// without an rtpmap for our dynamic payload types is understood through our own numbers.
pub fn apply_answer(answer: &str, our_offer: &LocalMedia) -> Result<MediaParams, SdpError> {
    let session = scan::scan(answer)?;
    let media = session.media.first().ok_or(SdpError::NoMedia)?;
    if media.port == 0 {
        return Err(SdpError::AudioRejected);
    }
    if !media.is_audio
        || media.transport == Transport::Unsupported
        || (media.transport == Transport::SecureRtp && our_offer.srtp.policy == SrtpPolicy::Off)
    {
        return Err(SdpError::NoUsableAudio);
    }
    let srtp = answered_srtp(media, &our_offer.srtp)?;
    let our_numbering = |payload_type: u8| {
        static_codec(payload_type).or_else(|| {
            (payload_type == OPUS_PAYLOAD_TYPE && our_offer.codecs.contains(&Codec::Opus))
                .then_some(Codec::Opus)
        })
    };
    let mut choice =
        choose_codec(media, &our_offer.codecs, our_numbering).ok_or(SdpError::NoCommonCodec)?;
    if choice.telephone_event_pt.is_none() {
        let ours = match choice.codec.clock_rate() {
            48_000 => TELEPHONE_EVENT_48K_PAYLOAD_TYPE,
            _ => TELEPHONE_EVENT_8K_PAYLOAD_TYPE,
        };
        if media.payload_types.contains(&ours) && media.rtpmap(ours).is_none() {
            choice.telephone_event_pt = Some(ours);
        }
    }
    // An answer may only multiplex if the offer did (RFC 5761 §5.1.1): ours does with ICE.
    let rtcp_mux = media.rtcp_mux && our_offer.ice.is_some();
    let endpoint = remote_endpoint(&session, media, rtcp_mux)?;
    // ICE when we offered it and the answer does it too; a lite answerer leaves us in
    // control, and so does a full one (we offered).
    let ice = match (
        &our_offer.ice,
        ice::ScannedIce::remote(&session.ice, &media.ice),
    ) {
        (Some(ours), Some(remote))
            if ice::default_is_candidate(endpoint.rtp, &remote.candidates) =>
        {
            Some(Box::new(NegotiatedIce {
                local: ours.credentials.clone(),
                remote,
                controlling: true,
            }))
        }
        _ => None,
    };
    let direction = peer_direction(&session, media, &endpoint)
        .reverse()
        .intersect(our_offer.direction);
    Ok(MediaParams {
        remote: endpoint.rtp,
        remote_rtcp: endpoint.rtcp,
        codec: choice.codec,
        payload_type: choice.payload_type,
        clock_rate: choice.codec.clock_rate(),
        channels: choice.codec.channels(),
        ptime_ms: ptime_ms(media),
        telephone_event_pt: choice.telephone_event_pt,
        direction,
        rtcp_mux,
        srtp,
        peer_signalling: Vec::new(),
        ice,
        signalling_tls: false,
    })
}

/// The SRTP an answer agrees to: one of its `a=crypto` lines must name a tag and suite we
/// offered. No line at all is plain RTP, unless we required SRTP or the answer says RTP/SAVP.
fn answered_srtp(media: &MediaSection, ours: &LocalSrtp) -> Result<Option<SrtpParams>, SdpError> {
    if ours.policy == SrtpPolicy::Off {
        return Ok(None);
    }
    if media.crypto.is_empty() {
        return if ours.policy == SrtpPolicy::Mandatory || media.transport == Transport::SecureRtp {
            Err(SdpError::SrtpNotAnswered)
        } else {
            Ok(None)
        };
    }
    media
        .crypto
        .iter()
        .filter_map(|value| CryptoAttribute::parse(value).ok())
        .find_map(|answered| {
            ours.offered(answered.tag, answered.suite)
                .map(|local_key| SrtpParams {
                    suite: answered.suite,
                    tag: answered.tag,
                    local_key: local_key.clone(),
                    remote_key: answered.key,
                })
        })
        .map(Some)
        .ok_or(SdpError::BadCryptoAnswer)
}

#[cfg(test)]
mod srtp_tests;
#[cfg(test)]
mod tests;
