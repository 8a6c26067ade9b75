//! DTMF as dual tones in the audio itself (an account's `dtmf = "inband"`), for gateways and
//! IVRs that listen for tones rather than RFC 4733 events or SIP INFO. Pure: the media task
//! hands it each outgoing frame.
//!
//! Each digit sounds for `TONE_MS` (ITU-T Q.24 asks for at least 40 ms) and is followed by
//! `GAP_MS` of silence; while a digit plays, it replaces the microphone, as a phone's keypad
//! does.

use std::collections::VecDeque;

use super::tones::ToneGenerator;

/// How long each digit sounds.
pub const TONE_MS: u32 = 100;
/// Silence after each digit.
pub const GAP_MS: u32 = 60;
/// Digits waiting at most; more are refused.
pub const MAX_QUEUED: usize = 64;
/// Peak of the two tones together (-9 dBFS): loud enough for any detector, no clipping.
const AMPLITUDE: f32 = 11_600.0;

/// The row and column frequencies of a DTMF digit (ITU-T Q.23).
pub fn frequencies(digit: char) -> Option<(f32, f32)> {
    let digit = digit.to_ascii_uppercase();
    let (row, col) = match digit {
        '1' => (0, 0),
        '2' => (0, 1),
        '3' => (0, 2),
        'A' => (0, 3),
        '4' => (1, 0),
        '5' => (1, 1),
        '6' => (1, 2),
        'B' => (1, 3),
        '7' => (2, 0),
        '8' => (2, 1),
        '9' => (2, 2),
        'C' => (2, 3),
        '*' => (3, 0),
        '0' => (3, 1),
        '#' => (3, 2),
        'D' => (3, 3),
        _ => return None,
    };
    const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    Some((ROWS[row], COLS[col]))
}

/// Queued digits and the one sounding now.
#[derive(Debug, Clone)]
pub struct InbandDtmf {
    rate: u32,
    queue: VecDeque<char>,
    /// The digit sounding, and how many samples of tone and then of silence are left.
    current: Option<(ToneGenerator, usize, usize)>,
}

impl InbandDtmf {
    pub fn new(rate: u32) -> InbandDtmf {
        InbandDtmf {
            rate: rate.max(1),
            queue: VecDeque::new(),
            current: None,
        }
    }

    /// The codec rate changed: later digits follow it.
    pub fn set_rate(&mut self, rate: u32) {
        self.rate = rate.max(1);
    }

    /// Queues `digits` (0-9 * # A-D); refuses the lot when one is not a digit or the queue
    /// would grow past `MAX_QUEUED`.
    pub fn queue(&mut self, digits: &str) -> Result<(), String> {
        if let Some(bad) = digits.chars().find(|c| frequencies(*c).is_none()) {
            return Err(format!("`{bad}` is not a DTMF digit"));
        }
        if self.queue.len() + digits.chars().count() > MAX_QUEUED {
            return Err(format!("at most {MAX_QUEUED} DTMF digits may wait"));
        }
        self.queue.extend(digits.chars());
        Ok(())
    }

    /// A digit is sounding (or waits).
    pub fn is_active(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// While a digit plays: replaces the outgoing frame with its tone (then the gap's
    /// silence). True when it did, false when the frame is the microphone's.
    pub fn fill(&mut self, pcm: &mut [i16]) -> bool {
        if !self.is_active() {
            return false;
        }
        let mut at = 0;
        while at < pcm.len() {
            if self.current.is_none() {
                let Some(digit) = self.queue.pop_front() else {
                    pcm[at..].fill(0);
                    break;
                };
                let Some((low, high)) = frequencies(digit) else {
                    continue;
                };
                let samples = |ms: u32| (u64::from(self.rate) * u64::from(ms) / 1000) as usize;
                self.current = Some((
                    ToneGenerator::new(&[low, high], self.rate, AMPLITUDE),
                    samples(TONE_MS),
                    samples(GAP_MS),
                ));
            }
            let Some((tone, tone_left, gap_left)) = self.current.as_mut() else {
                break;
            };
            let rest = &mut pcm[at..];
            if *tone_left > 0 {
                let n = (*tone_left).min(rest.len());
                rest[..n].fill(0);
                tone.mix(&mut rest[..n]);
                *tone_left -= n;
                at += n;
            } else if *gap_left > 0 {
                let n = (*gap_left).min(rest.len());
                rest[..n].fill(0);
                *gap_left -= n;
                at += n;
            } else {
                self.current = None;
            }
        }
        if matches!(self.current, Some((_, 0, 0))) {
            self.current = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tones::{goertzel_power, rms};

    #[test]
    fn a_digit_is_its_two_tones_then_silence() {
        let rate = 8000;
        let mut dtmf = InbandDtmf::new(rate);
        assert!(!dtmf.is_active());
        dtmf.queue("5").expect("a digit");
        let mut out = Vec::new();
        for _ in 0..10 {
            let mut frame = vec![1000i16; 160];
            let replaced = dtmf.fill(&mut frame);
            out.push((replaced, frame));
        }
        // 100 ms of tone + 60 ms of gap = 8 frames replaced, then the microphone again.
        let replaced: Vec<bool> = out.iter().map(|(r, _)| *r).collect();
        assert_eq!(
            replaced,
            [true, true, true, true, true, true, true, true, false, false]
        );
        let tone: Vec<i16> = out[..5].iter().flat_map(|(_, f)| f.clone()).collect();
        let power = |f| goertzel_power(&tone, rate, f);
        assert!(power(770.0) > 50.0 * power(697.0));
        assert!(power(1336.0) > 50.0 * power(1209.0));
        assert!(rms(&tone) > 5000.0);
        let gap: Vec<i16> = out[5..8].iter().flat_map(|(_, f)| f.clone()).collect();
        assert_eq!(rms(&gap), 0.0);
        assert!(!dtmf.is_active());
    }

    #[test]
    fn bad_digits_and_floods_are_refused() {
        let mut dtmf = InbandDtmf::new(48000);
        assert!(dtmf.queue("12x").is_err());
        assert!(!dtmf.is_active());
        assert!(dtmf.queue(&"1".repeat(MAX_QUEUED)).is_ok());
        assert!(dtmf.queue("2").is_err());
        assert_eq!(frequencies('#'), Some((941.0, 1477.0)));
        assert_eq!(frequencies('d'), Some((941.0, 1633.0)));
        assert_eq!(frequencies('x'), None);
    }
}
