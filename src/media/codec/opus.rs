//! Opus (RFC 6716 / RFC 7587) through libopus: mono, 48 kHz, VoIP application, 20 ms frames,
//! in-band FEC on, spent in proportion to the loss the peer reports (`media::fec`); the
//! decoder's packet loss concealment covers lost frames.

use audiopus::coder::{Decoder as LibOpusDecoder, Encoder as LibOpusEncoder};
use audiopus::{Application, Channels, SampleRate};

use super::{CodecKind, Decoder, Encoder};
use crate::media::MediaError;

/// Largest Opus packet for one frame (RFC 6716 §3.2.1).
const MAX_PACKET_LEN: usize = 1275;
/// Longest frame an Opus packet can carry: 120 ms at 48 kHz. A peer may send longer packets
/// than our 20 ms, so the decode buffer must hold the worst case.
const MAX_DECODED_SAMPLES: usize = 5760;

pub struct OpusEncoder {
    inner: LibOpusEncoder,
}

impl OpusEncoder {
    pub fn new() -> Result<Self, MediaError> {
        let mut inner =
            LibOpusEncoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
        inner.set_inband_fec(true)?;
        // No loss seen yet: FEC costs bits and CPU only once the peer reports loss.
        inner.set_packet_loss_perc(0)?;
        Ok(Self { inner })
    }

    /// The encoder's algorithmic delay in samples at 48 kHz.
    pub fn lookahead(&self) -> Result<u32, MediaError> {
        Ok(self.inner.lookahead()?)
    }
}

impl Encoder for OpusEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), MediaError> {
        let expected = CodecKind::Opus.samples_per_frame();
        if pcm.len() != expected {
            return Err(MediaError::FrameSize {
                expected,
                got: pcm.len(),
            });
        }
        let start = out.len();
        out.resize(start + MAX_PACKET_LEN, 0);
        let written = out
            .get_mut(start..)
            .map(|tail| self.inner.encode(pcm, tail))
            .unwrap_or(Ok(0));
        match written {
            Ok(written) => {
                out.truncate(start + written);
                Ok(())
            }
            Err(error) => {
                out.truncate(start);
                Err(error.into())
            }
        }
    }

    fn set_expected_loss(&mut self, percent: u8) -> Result<(), MediaError> {
        Ok(self.inner.set_packet_loss_perc(percent.min(100))?)
    }
}

pub struct OpusDecoder {
    inner: LibOpusDecoder,
    scratch: Vec<i16>,
}

impl OpusDecoder {
    pub fn new() -> Result<Self, MediaError> {
        Ok(Self {
            inner: LibOpusDecoder::new(SampleRate::Hz48000, Channels::Mono)?,
            scratch: vec![0; MAX_DECODED_SAMPLES],
        })
    }

    fn run(
        &mut self,
        packet: Option<&[u8]>,
        fec: bool,
        out: &mut Vec<i16>,
    ) -> Result<(), MediaError> {
        // For loss and FEC, libopus produces exactly as many samples as the buffer holds, so
        // that must be one frame.
        let frame = if packet.is_none() || fec {
            CodecKind::Opus.samples_per_frame()
        } else {
            MAX_DECODED_SAMPLES
        };
        let buffer = self.scratch.get_mut(..frame).unwrap_or_default();
        let decoded = self.inner.decode(packet, buffer, fec)?;
        out.extend_from_slice(self.scratch.get(..decoded).unwrap_or_default());
        Ok(())
    }
}

impl Decoder for OpusDecoder {
    fn decode(&mut self, payload: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), MediaError> {
        self.run(payload, false, out)
    }

    fn decode_lost_with_next(
        &mut self,
        next_payload: &[u8],
        out: &mut Vec<i16>,
    ) -> Result<(), MediaError> {
        self.run(Some(next_payload), true, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tones::{SineGenerator, dominant_frequency, rms};

    /// The encoder told to expect 10 % loss, as after a receiver report saying so.
    fn encode_tone(frames: usize, frequency: f32) -> Vec<Vec<u8>> {
        let mut encoder = OpusEncoder::new().unwrap();
        encoder.set_expected_loss(10).unwrap();
        let mut generator = SineGenerator::new(frequency, 48_000, 10_000.0);
        (0..frames)
            .map(|_| {
                let mut pcm = Vec::new();
                generator.fill(&mut pcm, 960);
                let mut payload = Vec::new();
                encoder.encode(&pcm, &mut payload).unwrap();
                assert!(payload.len() <= MAX_PACKET_LEN);
                payload
            })
            .collect()
    }

    #[test]
    fn a_1khz_tone_survives_encode_and_decode() {
        let packets = encode_tone(25, 1000.0);
        let mut decoder = OpusDecoder::new().unwrap();
        let mut decoded = Vec::new();
        for packet in &packets {
            decoder.decode(Some(packet), &mut decoded).unwrap();
        }
        assert_eq!(decoded.len(), 25 * 960);
        // Skip the first 100 ms: codec delay and the encoder's start-up.
        let steady = decoded.get(4800..).unwrap();
        let frequency = dominant_frequency(steady, 48_000);
        assert!((frequency - 1000.0).abs() < 5.0, "found {frequency} Hz");
        let level = rms(steady);
        assert!(level > 5000.0 && level < 9000.0, "rms {level}");
    }

    #[test]
    fn lost_frames_are_concealed_without_errors() {
        let packets = encode_tone(12, 1000.0);
        let mut decoder = OpusDecoder::new().unwrap();
        let mut decoded = Vec::new();
        for (index, packet) in packets.iter().enumerate() {
            match index {
                8 => decoder.decode(None, &mut decoded).unwrap(),
                9 => {
                    // FEC: the lost frame rebuilt from the one after it, then that one itself.
                    decoder.decode_lost_with_next(packet, &mut decoded).unwrap();
                    decoder.decode(Some(packet), &mut decoded).unwrap();
                }
                _ => decoder.decode(Some(packet), &mut decoded).unwrap(),
            }
        }
        assert_eq!(decoded.len(), 13 * 960);
        // The concealed frame (8) continues the tone rather than dropping to silence.
        let concealed = decoded.get(8 * 960..9 * 960).unwrap();
        assert!(rms(concealed) > 1000.0, "rms {}", rms(concealed));
        let fec = decoded.get(9 * 960..10 * 960).unwrap();
        assert!((dominant_frequency(fec, 48_000) - 1000.0).abs() < 20.0);
    }

    /// 600 Hz for frames 0..=8, then 1400 Hz: lost frame 9 rebuilt from FEC has the new tone,
    /// concealed from the past it has the old one.
    fn encode_step(expected_loss: u8) -> Vec<Vec<u8>> {
        let mut encoder = OpusEncoder::new().unwrap();
        encoder.set_expected_loss(expected_loss).unwrap();
        let mut low = SineGenerator::new(600.0, 48_000, 10_000.0);
        let mut high = SineGenerator::new(1400.0, 48_000, 10_000.0);
        (0..12)
            .map(|index| {
                let mut pcm = Vec::new();
                let generator = if index < 9 { &mut low } else { &mut high };
                generator.fill(&mut pcm, 960);
                let mut payload = Vec::new();
                encoder.encode(&pcm, &mut payload).unwrap();
                payload
            })
            .collect()
    }

    /// Frame 9 is lost and rebuilt from frame 10's FEC; its dominant frequency.
    fn rebuilt_frequency(packets: &[Vec<u8>]) -> f32 {
        let mut decoder = OpusDecoder::new().unwrap();
        let mut decoded = Vec::new();
        for packet in packets.get(..9).unwrap() {
            decoder.decode(Some(packet), &mut decoded).unwrap();
        }
        let next = packets.get(10).unwrap();
        decoder.decode_lost_with_next(next, &mut decoded).unwrap();
        dominant_frequency(decoded.get(9 * 960..10 * 960).unwrap(), 48_000)
    }

    #[test]
    fn fec_rebuilds_a_lost_frame_once_the_peer_reports_loss() {
        let with_fec = rebuilt_frequency(&encode_step(20));
        assert!(
            (with_fec - 1400.0).abs() < 50.0,
            "FEC frame at {with_fec} Hz"
        );
        // On a clean link the encoder spends nothing on FEC: the lost frame is concealed
        // from the past.
        let without = rebuilt_frequency(&encode_step(0));
        assert!(
            (without - 1400.0).abs() > 300.0,
            "concealed frame at {without} Hz"
        );
    }

    #[test]
    fn rejects_wrong_frame_sizes_and_empty_payloads() {
        let mut encoder = OpusEncoder::new().unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            encoder.encode(&[0; 480], &mut out),
            Err(MediaError::FrameSize {
                expected: 960,
                got: 480
            })
        ));
        assert!(out.is_empty());
        let mut decoder = OpusDecoder::new().unwrap();
        let mut pcm = Vec::new();
        assert!(decoder.decode(Some(&[]), &mut pcm).is_err());
        assert!(pcm.is_empty());
    }
}
