//! Writing our SDP. Our own few lines rather than webrtc-sdp's builder: an answer must echo
//! rejected m-lines with transports webrtc-sdp cannot represent (`udptl`, `RTP/AVP/TCP`, ...),
//! and its `add_media()` prints `m=audio P/1`. Tests check the output with webrtc-sdp's strict
//! parser.

use std::net::IpAddr;

use super::ice::LocalIce;
use super::scan::MediaSection;
use super::{Codec, Direction, LocalMedia};

/// Session part: `v=`, `o=`, `s=`, `c=`, `t=`.
pub fn session_lines(local: &LocalMedia) -> Vec<String> {
    let address = address_field(local.address);
    vec![
        "v=0".to_owned(),
        format!(
            "o=- {} {} {address}",
            local.session_id, local.session_version
        ),
        "s=sipterm".to_owned(),
        format!("c={address}"),
        "t=0 0".to_owned(),
    ]
}

/// `IN IP4 192.0.2.1` / `IN IP6 2001:db8::1`.
fn address_field(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("IN IP4 {v4}"),
        IpAddr::V6(v6) => format!("IN IP6 {v6}"),
    }
}

/// What one accepted or offered audio m-line carries.
pub struct AudioLine<'a> {
    pub port: u16,
    pub proto: &'a str,
    /// Payload type and codec, in preference order.
    pub codecs: Vec<(u8, Codec)>,
    /// Payload type and clock rate of each telephone-event format.
    pub telephone_events: Vec<(u8, u32)>,
    pub direction: Direction,
    pub rtcp_mux: bool,
    /// `a=crypto` values (RFC 4568), written as given.
    pub crypto: Vec<String>,
    /// Our ICE attributes (RFC 8839), when we do ICE on this stream.
    pub ice: Option<&'a LocalIce>,
    /// `a=ice-mismatch`: the offer's default candidate is none of its candidates.
    pub ice_mismatch: bool,
    /// Our RTCP component's default candidate (`a=rtcp` with its address, RFC 8839 §5.1),
    /// when our ICE has RTCP candidates.
    pub rtcp: Option<std::net::SocketAddr>,
}

pub fn audio_lines(audio: &AudioLine<'_>, out: &mut Vec<String>) {
    let payload_types: Vec<String> = audio
        .codecs
        .iter()
        .map(|(payload_type, _)| payload_type.to_string())
        .chain(
            audio
                .telephone_events
                .iter()
                .map(|(payload_type, _)| payload_type.to_string()),
        )
        .collect();
    out.push(format!(
        "m=audio {} {} {}",
        audio.port,
        audio.proto,
        payload_types.join(" ")
    ));
    for (payload_type, codec) in &audio.codecs {
        let channels = match codec.channels() {
            1 => String::new(),
            channels => format!("/{channels}"),
        };
        out.push(format!(
            "a=rtpmap:{payload_type} {}/{}{channels}",
            codec.encoding_name(),
            codec.clock_rate()
        ));
        if *codec == Codec::Opus {
            // In-band FEC hides single lost packets at almost no cost.
            out.push(format!("a=fmtp:{payload_type} useinbandfec=1"));
        }
    }
    for (payload_type, clock_rate) in &audio.telephone_events {
        out.push(format!(
            "a=rtpmap:{payload_type} telephone-event/{clock_rate}"
        ));
        out.push(format!("a=fmtp:{payload_type} 0-16"));
    }
    for crypto in &audio.crypto {
        out.push(format!("a=crypto:{crypto}"));
    }
    out.push(format!("a=ptime:{}", super::DEFAULT_PTIME_MS));
    if let Some(ice) = audio.ice {
        super::ice::write_lines(ice, out);
    } else if audio.ice_mismatch {
        out.push("a=ice-mismatch".to_owned());
    }
    if let Some(rtcp) = audio.rtcp {
        out.push(format!(
            "a=rtcp:{} {}",
            rtcp.port(),
            address_field(rtcp.ip())
        ));
    }
    if audio.rtcp_mux {
        out.push("a=rtcp-mux".to_owned());
    } else if audio.rtcp.is_none()
        && let Some(rtcp_port) = audio.port.checked_add(1)
    {
        out.push(format!("a=rtcp:{rtcp_port}"));
    }
    out.push(format!("a={}", audio.direction.attribute_name()));
}

/// A stream we do not take: the offered m-line with port 0 (RFC 3264 §6).
pub fn rejected_line(offered: &MediaSection, out: &mut Vec<String>) {
    let mut line = format!("m={} 0 {}", offered.media, offered.proto);
    if !offered.formats.is_empty() {
        line.push(' ');
        line.push_str(&offered.formats);
    }
    out.push(line);
}

pub fn finish(lines: Vec<String>) -> String {
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    text
}
