//! Reading remote SDP.
//!
//! webrtc-sdp parses every line we care about (`m=`, `c=`, `a=`) into typed values, but its
//! document parser is written for browsers and gets telephony SDP wrong: it drops m-lines whose
//! transport it does not know (so the following attributes land on the previous m-line), drops
//! unknown attributes such as `a=crypto`, and rejects a body without `t=`. So the document
//! structure (session part, then one section per m-line) is this small scan of ours, and each
//! line's value goes through `webrtc_sdp::parse_sdp_line`.

use std::net::IpAddr;

use webrtc_sdp::address::ExplicitlyTypedAddress;
use webrtc_sdp::attribute_type::SdpAttribute;
use webrtc_sdp::media_type::{SdpFormatList, SdpMediaValue, SdpProtocolValue};
use webrtc_sdp::{SdpType, parse_sdp_line};

use super::ice::ScannedIce;
use super::{Direction, SdpError};

/// Largest SDP body we read; real offers are a few hundred bytes.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Most m-lines we read; every one of them must be echoed in an answer.
pub const MAX_MEDIA_SECTIONS: usize = 64;
/// Most `a=rtpmap` lines kept per m-line (there are only 128 payload types).
const MAX_RTPMAPS_PER_MEDIA: usize = 128;
/// Most `a=crypto` lines kept in the whole body.
pub const MAX_CRYPTO_LINES: usize = 64;

/// The address of a `c=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionAddress {
    Ip(IpAddr),
    /// A host name (we resolve nothing here) or a line webrtc-sdp could not parse; kept as text
    /// for the error message, and only an error if the stream that uses it is accepted.
    Unusable(String),
}

/// One `a=rtpmap` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding_name: String,
    pub clock_rate: u32,
    pub channels: Option<u32>,
}

/// The RTP profile of an m-line, as far as we can use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `RTP/AVP` or `RTP/AVPF` (AVPF without feedback is AVP with other RTCP timing).
    PlainRtp,
    /// `RTP/SAVP` or `RTP/SAVPF`: SRTP keyed by `a=crypto` (SDES, RFC 4568).
    SecureRtp,
    /// Anything else (DTLS-SRTP, UDPTL, TCP, ...): we cannot take it.
    Unsupported,
}

/// One m-line and the lines that follow it up to the next m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// The media token as written (`audio`, `video`, `image`, ...).
    pub media: String,
    pub is_audio: bool,
    pub port: u16,
    /// The transport token as written, echoed in answers.
    pub proto: String,
    /// The format list as written (whitespace collapsed), echoed when the stream is rejected.
    pub formats: String,
    pub transport: Transport,
    /// RTP payload types of the format list, in the offerer's order (audio m-lines only).
    pub payload_types: Vec<u8>,
    pub connection: Option<ConnectionAddress>,
    pub rtpmaps: Vec<RtpMap>,
    pub ptime_ms: Option<u64>,
    pub direction: Option<Direction>,
    /// `a=rtcp` (RFC 3605): port and optional address.
    pub rtcp: Option<(u16, Option<IpAddr>)>,
    pub rtcp_mux: bool,
    /// Values of this m-line's `a=crypto` lines (text after `a=crypto:`), in order.
    pub crypto: Vec<String>,
    /// Its ICE attributes (RFC 8839).
    pub ice: ScannedIce,
}

impl MediaSection {
    pub fn rtpmap(&self, payload_type: u8) -> Option<&RtpMap> {
        self.rtpmaps
            .iter()
            .find(|map| map.payload_type == payload_type)
    }
}

/// A remote SDP body, reduced to what offer/answer needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    pub connection: Option<ConnectionAddress>,
    /// A direction attribute at session level applies to m-lines without their own.
    pub direction: Option<Direction>,
    pub media: Vec<MediaSection>,
    /// Values of every `a=crypto` line (text after `a=crypto:`), whatever m-line they follow.
    pub crypto: Vec<String>,
    /// ICE attributes at session level (`a=ice-lite`, and ufrag/pwd for every stream).
    pub ice: ScannedIce,
}

/// One `x=value` line, with runs of whitespace collapsed so that webrtc-sdp's `splitn`-based
/// parsers accept phones that pad with extra spaces.
struct SdpTextLine {
    kind: char,
    value: String,
}

fn split_line(raw: &str) -> Option<SdpTextLine> {
    let (kind, value) = raw.split_once('=')?;
    let mut kind_chars = kind.trim().chars();
    let kind = kind_chars.next()?.to_ascii_lowercase();
    if kind_chars.next().is_some() {
        return None;
    }
    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
    Some(SdpTextLine { kind, value })
}

/// Reads an SDP body leniently. Errors only for an oversized body, too many m-lines, or an
/// m-line so broken that it cannot even be echoed.
pub fn scan(sdp: &str) -> Result<SessionDescription, SdpError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge {
            limit: MAX_SDP_BYTES,
        });
    }
    let mut description = SessionDescription::default();
    for (index, raw) in sdp.lines().enumerate() {
        let line_number = index + 1;
        let Some(line) = split_line(raw) else {
            continue;
        };
        match line.kind {
            'm' => {
                if description.media.len() >= MAX_MEDIA_SECTIONS {
                    return Err(SdpError::TooManyMediaSections {
                        limit: MAX_MEDIA_SECTIONS,
                    });
                }
                description
                    .media
                    .push(scan_media_line(&line.value, line_number)?);
            }
            'c' => {
                let address = scan_connection(&line.value);
                match description.media.last_mut() {
                    Some(media) => media.connection = Some(address),
                    None => description.connection = Some(address),
                }
            }
            'a' => scan_attribute(&line.value, &mut description),
            // v, o, s, t, b, i, u, e, p, k, r, z: nothing offer/answer needs.
            _ => {}
        }
    }
    Ok(description)
}

/// The values of every `a=crypto` line (RFC 4568), without the `crypto:` prefix, for SRTP.
/// An oversized body gives no lines.
pub fn crypto_lines(sdp: &str) -> Vec<String> {
    scan(sdp)
        .map(|description| description.crypto)
        .unwrap_or_default()
}

fn scan_media_line(value: &str, line_number: usize) -> Result<MediaSection, SdpError> {
    // Our own tokenising first: it is what we echo for a rejected stream, whatever webrtc-sdp
    // thinks of the transport.
    let mut tokens = value.splitn(4, ' ');
    let (Some(media), Some(port_token), Some(proto)) =
        (tokens.next(), tokens.next(), tokens.next())
    else {
        return Err(SdpError::InvalidMediaLine { line_number });
    };
    let formats = tokens.next().unwrap_or_default().to_owned();
    let port_text = port_token.split('/').next().unwrap_or_default();
    let port: u16 = port_text
        .parse()
        .map_err(|_| SdpError::InvalidMediaLine { line_number })?;
    let mut section = MediaSection {
        media: media.to_owned(),
        is_audio: false,
        port,
        proto: proto.to_owned(),
        formats,
        transport: Transport::Unsupported,
        payload_types: Vec::new(),
        connection: None,
        rtpmaps: Vec::new(),
        ptime_ms: None,
        direction: None,
        rtcp: None,
        rtcp_mux: false,
        crypto: Vec::new(),
        ice: ScannedIce::default(),
    };
    // webrtc-sdp refuses unknown transports and non-numeric audio formats; such a line stays
    // an unusable section that the answer echoes with port 0.
    if let Ok(parsed) = parse_sdp_line(&format!("m={value}"), line_number)
        && let SdpType::Media(media_line) = parsed.sdp_type
    {
        section.is_audio = media_line.media == SdpMediaValue::Audio;
        section.transport = match media_line.proto {
            SdpProtocolValue::RtpAvp | SdpProtocolValue::RtpAvpf => Transport::PlainRtp,
            SdpProtocolValue::RtpSavp | SdpProtocolValue::RtpSavpf => Transport::SecureRtp,
            _ => Transport::Unsupported,
        };
        if let SdpFormatList::Integers(numbers) = media_line.formats {
            section.payload_types = numbers
                .into_iter()
                .filter_map(|number| u8::try_from(number).ok())
                .filter(|payload_type| *payload_type <= 127)
                .collect();
        }
    }
    Ok(section)
}

fn scan_connection(value: &str) -> ConnectionAddress {
    match parse_sdp_line(&format!("c={value}"), 0).map(|line| line.sdp_type) {
        Ok(SdpType::Connection(connection)) => match connection.address {
            ExplicitlyTypedAddress::Ip(ip) => ConnectionAddress::Ip(ip),
            ExplicitlyTypedAddress::Fqdn { domain, .. } => ConnectionAddress::Unusable(domain),
        },
        _ => ConnectionAddress::Unusable(value.to_owned()),
    }
}

fn scan_attribute(value: &str, description: &mut SessionDescription) {
    let name = value.split(':').next().unwrap_or_default();
    // ICE's attributes are read by our own code: webrtc-sdp's candidate parser refuses
    // candidates real phones write (TCP ones, unknown extensions).
    let ice = match description.media.last_mut() {
        Some(media) => &mut media.ice,
        None => &mut description.ice,
    };
    if ice.scan_attribute(name.trim(), value.split_once(':').map(|(_, v)| v)) {
        return;
    }
    if name.eq_ignore_ascii_case("crypto") {
        if description.crypto.len() < MAX_CRYPTO_LINES
            && let Some((_, crypto)) = value.split_once(':')
        {
            description.crypto.push(crypto.trim().to_owned());
            // a=crypto is a media-level attribute (RFC 4568 §9.1); at session level it is
            // kept above for `crypto_lines` but applies to no stream.
            if let Some(media) = description.media.last_mut() {
                media.crypto.push(crypto.trim().to_owned());
            }
        }
        return;
    }
    // Unknown or malformed attributes are none of our business.
    let Ok(SdpType::Attribute(attribute)) =
        parse_sdp_line(&format!("a={value}"), 0).map(|line| line.sdp_type)
    else {
        return;
    };
    let direction = match attribute {
        SdpAttribute::Sendrecv => Some(Direction::SendRecv),
        SdpAttribute::Sendonly => Some(Direction::SendOnly),
        SdpAttribute::Recvonly => Some(Direction::RecvOnly),
        SdpAttribute::Inactive => Some(Direction::Inactive),
        _ => None,
    };
    let Some(media) = description.media.last_mut() else {
        if direction.is_some() {
            description.direction = direction;
        }
        return;
    };
    if direction.is_some() {
        media.direction = direction;
        return;
    }
    match attribute {
        // The first rtpmap for a payload type counts; a flood of them is cut off.
        SdpAttribute::Rtpmap(map)
            if media.rtpmaps.len() < MAX_RTPMAPS_PER_MEDIA
                && media.rtpmap(map.payload_type).is_none() =>
        {
            media.rtpmaps.push(RtpMap {
                payload_type: map.payload_type,
                encoding_name: map.codec_name,
                clock_rate: map.frequency,
                channels: map.channels,
            });
        }
        SdpAttribute::Ptime(ptime) => media.ptime_ms = Some(ptime),
        SdpAttribute::Rtcp(rtcp) => {
            let address = match rtcp.unicast_addr {
                Some(ExplicitlyTypedAddress::Ip(ip)) => Some(ip),
                _ => None,
            };
            media.rtcp = Some((rtcp.port, address));
        }
        SdpAttribute::RtcpMux => media.rtcp_mux = true,
        _ => {}
    }
}
