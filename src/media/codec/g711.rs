//! G.711 mu-law (PCMU) and A-law (PCMA), ITU-T G.711 segment coding on 16-bit PCM, plus a
//! simple concealment for lost frames.

use super::{Decoder, Encoder};
use crate::media::{MediaError, samples_per_frame};

/// Which companding law.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// mu-law, North America and Japan (PCMU).
    Mu,
    /// A-law, Europe and the rest (PCMA).
    A,
}

/// mu-law works on 14-bit magnitudes: the 16-bit sample shifted right by 2.
const MULAW_BIAS: i32 = 0x21;
const MULAW_CLIP: i32 = 8159;
const MULAW_SEGMENT_ENDS: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];
/// A-law works on 13-bit magnitudes: the 16-bit sample shifted right by 3.
const ALAW_SEGMENT_ENDS: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];

fn segment(value: i32, ends: &[i32; 8]) -> Option<u8> {
    ends.iter()
        .position(|&end| value <= end)
        .and_then(|index| u8::try_from(index).ok())
}

/// Encodes one sample to mu-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample) >> 2;
    let mask: u8 = if magnitude < 0 {
        magnitude = -magnitude;
        0x7f
    } else {
        0xff
    };
    magnitude = magnitude.min(MULAW_CLIP) + MULAW_BIAS;
    match segment(magnitude, &MULAW_SEGMENT_ENDS) {
        Some(seg) => {
            let mantissa = ((magnitude >> (seg + 1)) & 0x0f) as u8;
            ((seg << 4) | mantissa) ^ mask
        }
        None => 0x7f ^ mask,
    }
}

/// Decodes one mu-law octet.
pub fn ulaw_to_linear(code: u8) -> i16 {
    let inverted = !code;
    let mut magnitude = ((i32::from(inverted) & 0x0f) << 3) + (MULAW_BIAS << 2);
    magnitude <<= (inverted & 0x70) >> 4;
    let value = if inverted & 0x80 != 0 {
        (MULAW_BIAS << 2) - magnitude
    } else {
        magnitude - (MULAW_BIAS << 2)
    };
    // Range is ±32124 by construction.
    value as i16
}

/// Encodes one sample to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut magnitude = i32::from(sample) >> 3;
    let mask: u8 = if magnitude >= 0 {
        0xd5
    } else {
        // One's complement keeps -1 (the smallest negative) in the first step.
        magnitude = -magnitude - 1;
        0x55
    };
    match segment(magnitude, &ALAW_SEGMENT_ENDS) {
        Some(seg) => {
            let shift = if seg < 2 { 1 } else { seg };
            let mantissa = ((magnitude >> shift) & 0x0f) as u8;
            ((seg << 4) | mantissa) ^ mask
        }
        None => 0x7f ^ mask,
    }
}

/// Decodes one A-law octet.
pub fn alaw_to_linear(code: u8) -> i16 {
    let toggled = code ^ 0x55;
    let mut magnitude = (i32::from(toggled) & 0x0f) << 4;
    let seg = (toggled & 0x70) >> 4;
    match seg {
        0 => magnitude += 8,
        1 => magnitude += 0x108,
        _ => {
            magnitude += 0x108;
            magnitude <<= seg - 1;
        }
    }
    let value = if toggled & 0x80 != 0 {
        magnitude
    } else {
        -magnitude
    };
    // Range is ±32256 by construction.
    value as i16
}

pub struct G711Encoder {
    law: Law,
}

impl G711Encoder {
    pub fn new(law: Law) -> Self {
        Self { law }
    }
}

impl Encoder for G711Encoder {
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), MediaError> {
        let encode_sample = match self.law {
            Law::Mu => linear_to_ulaw,
            Law::A => linear_to_alaw,
        };
        out.extend(pcm.iter().map(|&sample| encode_sample(sample)));
        Ok(())
    }
}

/// Consecutive lost frames concealed by repeating the last good one; after these, silence.
const CONCEALED_FRAMES_BEFORE_SILENCE: u32 = 3;

pub struct G711Decoder {
    law: Law,
    last_frame: Vec<i16>,
    consecutive_losses: u32,
}

impl G711Decoder {
    pub fn new(law: Law) -> Self {
        Self {
            law,
            last_frame: Vec::new(),
            consecutive_losses: 0,
        }
    }
}

impl Decoder for G711Decoder {
    fn decode(&mut self, payload: Option<&[u8]>, out: &mut Vec<i16>) -> Result<(), MediaError> {
        match payload {
            Some(payload) => {
                let decode_octet = match self.law {
                    Law::Mu => ulaw_to_linear,
                    Law::A => alaw_to_linear,
                };
                self.last_frame.clear();
                self.last_frame
                    .extend(payload.iter().map(|&code| decode_octet(code)));
                out.extend_from_slice(&self.last_frame);
                self.consecutive_losses = 0;
            }
            None => {
                self.consecutive_losses = self.consecutive_losses.saturating_add(1);
                if self.last_frame.is_empty() {
                    self.last_frame.resize(samples_per_frame(8_000), 0);
                }
                if self.consecutive_losses > CONCEALED_FRAMES_BEFORE_SILENCE {
                    out.extend(std::iter::repeat_n(0, self.last_frame.len()));
                } else {
                    // Halve the level per lost frame: a repeated 20 ms sounds like a stutter
                    // rather than a click, and fading avoids a buzzing loop on long gaps.
                    let shift = self.consecutive_losses;
                    out.extend(self.last_frame.iter().map(|&sample| sample >> shift));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tones::rms;

    #[test]
    fn mulaw_known_code_points() {
        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        // First segment boundary: 8 linear units per step around zero.
        assert_eq!(ulaw_to_linear(0xfe), 8);
        assert_eq!(ulaw_to_linear(0x7e), -8);
    }

    #[test]
    fn alaw_known_code_points() {
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
    }

    #[test]
    fn every_code_decodes_and_reencodes_to_itself() {
        for code in 0..=255u8 {
            // mu-law has two zeros (0x7f and 0xff); both decode to 0, which encodes as 0xff.
            let mu = ulaw_to_linear(code);
            if mu != 0 {
                assert_eq!(linear_to_ulaw(mu), code, "mu-law {code:#04x}");
            }
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law {code:#04x}"
            );
        }
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        // G.711 steps double per segment: relative error stays under ~1/32 of the magnitude plus
        // the smallest step; the top of the range is clipped at the largest code.
        for sample in (i16::MIN..=i16::MAX).step_by(7) {
            let magnitude = i32::from(sample).abs();
            let bound = 16 + magnitude / 24;
            let clip_allowance = (magnitude - 32124).max(0) + (magnitude - 32256).max(0);
            let mu_error =
                (i32::from(ulaw_to_linear(linear_to_ulaw(sample))) - i32::from(sample)).abs();
            assert!(
                mu_error <= bound + clip_allowance,
                "mu-law {sample}: error {mu_error}"
            );
            let a_error =
                (i32::from(alaw_to_linear(linear_to_alaw(sample))) - i32::from(sample)).abs();
            assert!(
                a_error <= bound + clip_allowance,
                "A-law {sample}: error {a_error}"
            );
        }
    }

    #[test]
    fn lost_frames_repeat_the_last_one_fading_then_silence() {
        let mut encoder = G711Encoder::new(Law::Mu);
        let mut decoder = G711Decoder::new(Law::Mu);
        let tone: Vec<i16> = (0..160)
            .map(|n| (8000.0 * (n as f32 * 0.3).sin()) as i16)
            .collect();
        let mut payload = Vec::new();
        encoder.encode(&tone, &mut payload).unwrap();
        let mut good = Vec::new();
        decoder.decode(Some(&payload), &mut good).unwrap();
        let good_level = rms(&good);

        let mut levels = Vec::new();
        for _ in 0..5 {
            let mut concealed = Vec::new();
            decoder.decode(None, &mut concealed).unwrap();
            assert_eq!(concealed.len(), 160);
            levels.push(rms(&concealed));
        }
        assert!(
            (levels[0] - good_level / 2.0).abs() < good_level * 0.02,
            "{levels:?}"
        );
        assert!(levels[1] < levels[0] && levels[2] < levels[1], "{levels:?}");
        assert_eq!(levels[3], 0.0);
        assert_eq!(levels[4], 0.0);

        // A good frame resets the fade.
        let mut after = Vec::new();
        decoder.decode(Some(&payload), &mut after).unwrap();
        decoder.decode(None, &mut after).unwrap();
        assert!(rms(after.get(160..).unwrap()) > good_level * 0.4);
    }

    #[test]
    fn loss_before_any_packet_conceals_with_silence() {
        let mut decoder = G711Decoder::new(Law::A);
        let mut out = Vec::new();
        decoder.decode(None, &mut out).unwrap();
        assert_eq!(out, vec![0; 160]);
    }
}
