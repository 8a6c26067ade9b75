//! Audio codecs behind two small traits, so the media task handles Opus and G.711 alike.

pub mod g711;
pub mod g722;
pub mod opus;

use super::{MediaError, samples_per_frame};

/// The codecs sipterm negotiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    Opus,
    Pcmu,
    Pcma,
    G722,
}

impl CodecKind {
    /// RTP clock rate (RFC 7587: Opus always uses 48000, whatever its internal bandwidth).
    pub const fn clock_rate(self) -> u32 {
        match self {
            Self::Opus => 48_000,
            // G.722's clock says 8000 for 16 kHz audio (RFC 3551 §4.5.2, a historical error).
            Self::Pcmu | Self::Pcma | Self::G722 => 8_000,
        }
    }

    /// Rate of the PCM the encoder takes and the decoder returns.
    pub const fn sample_rate(self) -> u32 {
        match self {
            Self::G722 => 16_000,
            _ => self.clock_rate(),
        }
    }

    /// Static payload type from RFC 3551, if the codec has one (Opus is dynamic).
    pub const fn static_payload_type(self) -> Option<u8> {
        match self {
            Self::Opus => None,
            Self::Pcmu => Some(0),
            Self::Pcma => Some(8),
            Self::G722 => Some(9),
        }
    }

    /// PCM samples in one 20 ms frame (at the sample rate).
    pub const fn samples_per_frame(self) -> usize {
        samples_per_frame(self.sample_rate())
    }

    /// RTP timestamp units in one 20 ms frame (at the clock rate).
    pub const fn timestamp_step(self) -> u32 {
        samples_per_frame(self.clock_rate()) as u32
    }

    /// Encoding name as SDP's `a=rtpmap` writes it.
    pub const fn encoding_name(self) -> &'static str {
        match self {
            Self::Opus => "opus",
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            Self::G722 => "G722",
        }
    }

    /// Channel count SDP must announce (`opus/48000/2` per RFC 7587, even for mono audio).
    pub const fn sdp_channels(self) -> u8 {
        match self {
            Self::Opus => 2,
            Self::Pcmu | Self::Pcma | Self::G722 => 1,
        }
    }

    /// Looks up an `a=rtpmap` encoding name (case-insensitive, as RFC 4855 says).
    pub fn from_encoding_name(name: &str) -> Option<Self> {
        [Self::Opus, Self::Pcmu, Self::Pcma, Self::G722]
            .into_iter()
            .find(|kind| kind.encoding_name().eq_ignore_ascii_case(name))
    }
}

/// Turns one frame of mono PCM at the codec's sample rate into one RTP payload.
pub trait Encoder: Send {
    /// Appends the encoded payload of `pcm` to `out` (so a caller may write the RTP header
    /// first and encode straight behind it).
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), MediaError>;

    /// The loss the peer reports on our stream, for codecs with in-band FEC (Opus): they spend
    /// FEC bits in proportion. The others ignore it.
    fn set_expected_loss(&mut self, _percent: u8) -> Result<(), MediaError> {
        Ok(())
    }
}

/// Turns RTP payloads back into mono PCM at the codec's sample rate.
pub trait Decoder: Send {
    /// Appends the decoded samples to `out`. `None` means the frame was lost: the decoder
    /// appends one frame of concealment instead.
    fn decode(&mut self, payload: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), MediaError>;

    /// Conceals a lost frame when the packet after it (`next_payload`) is already here; codecs
    /// with in-band FEC (Opus) rebuild the lost frame from it. The next packet itself must still
    /// be decoded normally afterwards.
    fn decode_lost_with_next(
        &mut self,
        next_payload: &[u8],
        out: &mut Vec<i16>,
    ) -> Result<(), MediaError> {
        let _ = next_payload;
        self.decode(None, out)
    }
}

/// A fresh encoder for `kind` (Opus: mono, 48 kHz, VoIP, in-band FEC on).
pub fn encoder(kind: CodecKind) -> Result<Box<dyn Encoder>, MediaError> {
    Ok(match kind {
        CodecKind::Opus => Box::new(opus::OpusEncoder::new()?),
        CodecKind::Pcmu => Box::new(g711::G711Encoder::new(g711::Law::Mu)),
        CodecKind::Pcma => Box::new(g711::G711Encoder::new(g711::Law::A)),
        CodecKind::G722 => Box::new(g722::G722Encoder::new()),
    })
}

/// A fresh decoder for `kind`.
pub fn decoder(kind: CodecKind) -> Result<Box<dyn Decoder>, MediaError> {
    Ok(match kind {
        CodecKind::Opus => Box::new(opus::OpusDecoder::new()?),
        CodecKind::Pcmu => Box::new(g711::G711Decoder::new(g711::Law::Mu)),
        CodecKind::Pcma => Box::new(g711::G711Decoder::new(g711::Law::A)),
        CodecKind::G722 => Box::new(g722::G722Decoder::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_parameters_match_the_rfcs() {
        assert_eq!(CodecKind::Opus.clock_rate(), 48_000);
        assert_eq!(CodecKind::Pcmu.clock_rate(), 8_000);
        assert_eq!(CodecKind::Pcmu.static_payload_type(), Some(0));
        assert_eq!(CodecKind::Pcma.static_payload_type(), Some(8));
        assert_eq!(CodecKind::Opus.static_payload_type(), None);
        assert_eq!(CodecKind::Opus.samples_per_frame(), 960);
        assert_eq!(CodecKind::Pcma.samples_per_frame(), 160);
        assert_eq!(CodecKind::from_encoding_name("pcmu"), Some(CodecKind::Pcmu));
        assert_eq!(CodecKind::from_encoding_name("OPUS"), Some(CodecKind::Opus));
        assert_eq!(CodecKind::from_encoding_name("G722"), Some(CodecKind::G722));
        assert_eq!(CodecKind::G722.clock_rate(), 8_000);
        assert_eq!(CodecKind::G722.sample_rate(), 16_000);
        assert_eq!(CodecKind::G722.samples_per_frame(), 320);
        assert_eq!(CodecKind::G722.timestamp_step(), 160);
        assert_eq!(CodecKind::G722.static_payload_type(), Some(9));
    }

    #[test]
    fn every_codec_round_trips_a_frame_through_the_traits() {
        for kind in [
            CodecKind::Opus,
            CodecKind::Pcmu,
            CodecKind::Pcma,
            CodecKind::G722,
        ] {
            let mut encoder = encoder(kind).unwrap();
            let mut decoder = decoder(kind).unwrap();
            let pcm = vec![0i16; kind.samples_per_frame()];
            let mut payload = Vec::new();
            encoder.encode(&pcm, &mut payload).unwrap();
            assert!(!payload.is_empty(), "{kind:?}");
            let mut decoded = Vec::new();
            decoder.decode(Some(&payload), &mut decoded).unwrap();
            assert_eq!(decoded.len(), kind.samples_per_frame(), "{kind:?}");
            decoder.decode(None, &mut decoded).unwrap();
            assert_eq!(decoded.len(), 2 * kind.samples_per_frame(), "{kind:?}");
        }
    }
}
