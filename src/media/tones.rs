//! Tone generators (test tones, ringback) and the signal analysis helpers tests use to check
//! what came out of a codec, a resampler or a whole call.

use std::f64::consts::TAU;

/// A sine oscillator that keeps its phase across calls, so consecutive frames join smoothly.
#[derive(Debug, Clone)]
pub struct SineGenerator {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl SineGenerator {
    /// `amplitude` is the peak in 16-bit units (clamped to 32767).
    pub fn new(frequency: f32, sample_rate: u32, amplitude: f32) -> Self {
        Self {
            phase: 0.0,
            step: TAU * f64::from(frequency) / f64::from(sample_rate.max(1)),
            amplitude: f64::from(amplitude).clamp(0.0, f64::from(i16::MAX)),
        }
    }

    fn next_value(&mut self) -> f64 {
        let value = self.amplitude * self.phase.sin();
        self.phase = (self.phase + self.step) % TAU;
        value
    }

    /// Appends `count` samples to `out`.
    pub fn fill(&mut self, out: &mut Vec<i16>, count: usize) {
        out.extend((0..count).map(|_| to_sample(self.next_value())));
    }
}

fn to_sample(value: f64) -> i16 {
    value
        .round()
        .clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16
}

/// One or two summed sines switched on and off by a cadence (for ringback, busy and
/// call-waiting tones).
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    oscillators: Vec<SineGenerator>,
    /// Segment lengths in samples, alternately on and off (starting on); empty means a
    /// continuous tone.
    segments: Vec<u64>,
    position: u64,
}

impl ToneGenerator {
    /// A continuous tone of the given frequencies; `amplitude` is the peak of the sum.
    pub fn new(frequencies: &[f32], sample_rate: u32, amplitude: f32) -> Self {
        let per_tone = amplitude / frequencies.len().max(1) as f32;
        Self {
            oscillators: frequencies
                .iter()
                .map(|&frequency| SineGenerator::new(frequency, sample_rate, per_tone))
                .collect(),
            segments: Vec::new(),
            position: 0,
        }
    }

    /// Switches the tone on for `on_ms`, off for `off_ms`, repeatedly.
    pub fn with_cadence(self, sample_rate: u32, on_ms: u32, off_ms: u32) -> Self {
        self.with_pattern(sample_rate, &[on_ms.max(1), off_ms])
    }

    /// A repeating cadence of `pattern_ms`: on, off, on, off... milliseconds (an odd count
    /// ends on an on segment, followed directly by the next repetition).
    pub fn with_pattern(mut self, sample_rate: u32, pattern_ms: &[u32]) -> Self {
        self.segments = pattern_ms
            .iter()
            .map(|&ms| u64::from(sample_rate) * u64::from(ms) / 1000)
            .collect();
        if self.segments.iter().sum::<u64>() == 0 {
            self.segments.clear();
        }
        self
    }

    /// European ringback (ETSI TR 101 041): 425 Hz, 1 s on, 4 s off.
    pub fn ringback_europe(sample_rate: u32) -> Self {
        Self::new(&[425.0], sample_rate, 8000.0).with_cadence(sample_rate, 1000, 4000)
    }

    /// North American ringback: 440 + 480 Hz, 2 s on, 4 s off.
    pub fn ringback_north_america(sample_rate: u32) -> Self {
        Self::new(&[440.0, 480.0], sample_rate, 8000.0).with_cadence(sample_rate, 2000, 4000)
    }

    fn audible(&self) -> bool {
        let period: u64 = self.segments.iter().sum();
        if period == 0 {
            return true;
        }
        let mut at = self.position % period;
        for (i, &length) in self.segments.iter().enumerate() {
            if at < length {
                return i % 2 == 0;
            }
            at -= length;
        }
        false
    }

    fn next_sample(&mut self) -> f64 {
        let sum: f64 = self
            .oscillators
            .iter_mut()
            .map(SineGenerator::next_value)
            .sum();
        let audible = self.audible();
        self.position = self.position.wrapping_add(1);
        if audible { sum } else { 0.0 }
    }

    /// Appends `count` samples to `out`.
    pub fn fill(&mut self, out: &mut Vec<i16>, count: usize) {
        for _ in 0..count {
            let value = self.next_sample();
            out.push(to_sample(value));
        }
    }

    /// Adds the tone to `out` in place (saturating): a tone mixed into call audio. Allocates
    /// nothing.
    pub fn mix(&mut self, out: &mut [i16]) {
        for sample in out {
            let value = self.next_sample();
            *sample = to_sample(f64::from(*sample) + value);
        }
    }
}

/// Which country's call-progress tones to play (ITU-T E.180 / ETSI TR 101 041).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToneRegion {
    /// Europe (CEPT): ringback 425 Hz 1 s on / 4 s off; busy 425 Hz 0.5 s / 0.5 s.
    #[default]
    Eu,
    /// North America: ringback 440+480 Hz 2 s / 4 s; busy 480+620 Hz 0.5 s / 0.5 s.
    Us,
}

impl ToneRegion {
    pub fn ringback(self, sample_rate: u32) -> ToneGenerator {
        match self {
            ToneRegion::Eu => ToneGenerator::ringback_europe(sample_rate),
            ToneRegion::Us => ToneGenerator::ringback_north_america(sample_rate),
        }
    }

    pub fn busy(self, sample_rate: u32) -> ToneGenerator {
        let frequencies: &[f32] = match self {
            ToneRegion::Eu => &[425.0],
            ToneRegion::Us => &[480.0, 620.0],
        };
        ToneGenerator::new(frequencies, sample_rate, 8000.0).with_cadence(sample_rate, 500, 500)
    }

    /// The call-waiting tone mixed into an active call while another call rings. Europe
    /// (ETSI TR 101 041): 425 Hz, 0.2 s on, 0.2 s off, 0.2 s on, 3.4 s off. North America
    /// (Telcordia GR-506): one 440 Hz burst of 0.3 s every 10 s. Quieter than ringback, so
    /// the call stays understandable.
    pub fn call_waiting(self, sample_rate: u32) -> ToneGenerator {
        let (frequency, pattern): (f32, &[u32]) = match self {
            ToneRegion::Eu => (425.0, &[200, 200, 200, 3400]),
            ToneRegion::Us => (440.0, &[300, 9700]),
        };
        ToneGenerator::new(&[frequency], sample_rate, 6000.0).with_pattern(sample_rate, pattern)
    }
}

/// A recorded clip (a ringtone) played over and over with `gap` samples of silence between.
#[derive(Debug, Clone)]
pub struct LoopedClip {
    samples: Vec<i16>,
    gap: usize,
    position: usize,
}

impl LoopedClip {
    pub fn new(samples: Vec<i16>, gap: usize) -> Self {
        Self {
            samples,
            gap,
            position: 0,
        }
    }

    /// Appends `count` samples to `out`.
    pub fn fill(&mut self, out: &mut Vec<i16>, count: usize) {
        let period = self.samples.len() + self.gap;
        if period == 0 {
            out.extend(std::iter::repeat_n(0, count));
            return;
        }
        for _ in 0..count {
            out.push(self.samples.get(self.position).copied().unwrap_or(0));
            self.position = (self.position + 1) % period;
        }
    }
}

/// dBFS reported for digital silence (and for a muted microphone): the 16-bit noise floor.
pub const SILENCE_DBFS: f32 = -96.0;

/// Level of an RMS value (16-bit units) in dBFS: 20·log10(rms / 32768), so a full-scale
/// square wave is 0 dBFS and a full-scale sine about -3. Never below [`SILENCE_DBFS`].
pub fn dbfs_of_rms(rms: f32) -> f32 {
    if rms.is_nan() || rms <= 0.0 {
        return SILENCE_DBFS;
    }
    (20.0 * (rms / 32768.0).log10()).clamp(SILENCE_DBFS, 0.0)
}

/// RMS level of `samples` in dBFS (see [`dbfs_of_rms`]).
pub fn dbfs(samples: &[i16]) -> f32 {
    dbfs_of_rms(rms(samples))
}

/// Accumulates the energy of frames until [`LevelMeter::take_dbfs`] reads and resets it: the
/// media task feeds every 20 ms frame and reads every 100 ms (VU meters).
#[derive(Debug, Clone, Default)]
pub struct LevelMeter {
    energy: f64,
    count: u64,
}

impl LevelMeter {
    pub fn add(&mut self, samples: &[i16]) {
        self.energy += samples
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>();
        self.count += samples.len() as u64;
    }

    /// Silence of `count` samples (a muted microphone, nothing to play).
    pub fn add_silence(&mut self, count: usize) {
        self.count += count as u64;
    }

    /// dBFS of everything added since the last call; silence when nothing was.
    pub fn take_dbfs(&mut self) -> f32 {
        let level = if self.count == 0 {
            SILENCE_DBFS
        } else {
            dbfs_of_rms((self.energy / self.count as f64).sqrt() as f32)
        };
        *self = LevelMeter::default();
        level
    }
}

/// The on/off pattern of a tone: RMS per `window_ms` window compared with `threshold`,
/// merged into runs of (on, milliseconds). For checking cadences in tests.
pub fn cadence(
    samples: &[i16],
    sample_rate: u32,
    window_ms: u32,
    threshold: f32,
) -> Vec<(bool, u32)> {
    let window = (sample_rate as usize * window_ms as usize / 1000).max(1);
    let mut runs: Vec<(bool, u32)> = Vec::new();
    for chunk in samples.chunks_exact(window) {
        let on = rms(chunk) >= threshold;
        match runs.last_mut() {
            Some((last, ms)) if *last == on => *ms += window_ms,
            _ => runs.push((on, window_ms)),
        }
    }
    runs
}

/// Root mean square level in 16-bit units (0 for an empty slice).
pub fn rms(samples: &[i16]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (energy / samples.len() as f64).sqrt() as f32
}

/// Power of `frequency` in `samples` by the Goertzel algorithm, normalised so that a full-scale
/// sine at exactly that frequency gives about 0.25 whatever the length.
pub fn goertzel_power(samples: &[i16], sample_rate: u32, frequency: f32) -> f32 {
    if samples.is_empty() || sample_rate == 0 {
        return 0.0;
    }
    let omega = TAU * f64::from(frequency) / f64::from(sample_rate);
    let coefficient = 2.0 * omega.cos();
    let (mut previous, mut before_previous) = (0.0f64, 0.0f64);
    for &sample in samples {
        let current = f64::from(sample) / 32768.0 + coefficient * previous - before_previous;
        before_previous = previous;
        previous = current;
    }
    let power = previous * previous + before_previous * before_previous
        - coefficient * previous * before_previous;
    let length = samples.len() as f64;
    (power / (length * length)) as f32
}

/// The strongest frequency between 50 Hz and Nyquist: a Goertzel scan in 10 Hz steps, then
/// refined to 0.25 Hz around the best step. Meant for test signals dominated by one tone.
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> f32 {
    let nyquist = sample_rate as f32 / 2.0;
    let strongest = |from: f32, to: f32, step: f32| {
        let mut best = (from, f32::MIN);
        let mut frequency = from;
        while frequency <= to {
            let power = goertzel_power(samples, sample_rate, frequency);
            if power > best.1 {
                best = (frequency, power);
            }
            frequency += step;
        }
        best.0
    };
    let coarse = strongest(50.0, nyquist - 10.0, 10.0);
    let medium = strongest((coarse - 10.0).max(1.0), coarse + 10.0, 1.0);
    strongest((medium - 1.0).max(1.0), medium + 1.0, 0.25)
}

/// How many samples `recorded` lags behind `reference`, searching lags `0..=max_lag`, and the
/// normalised correlation at that lag (1.0 = identical shape, 0 = unrelated).
pub fn cross_correlation_lag(reference: &[i16], recorded: &[i16], max_lag: usize) -> (usize, f32) {
    let mut best = (0, 0.0f32);
    for lag in 0..=max_lag {
        let Some(shifted) = recorded.get(lag..) else {
            break;
        };
        let overlap = reference.len().min(shifted.len());
        let (mut product, mut reference_energy, mut recorded_energy) = (0.0f64, 0.0f64, 0.0f64);
        for (&a, &b) in reference.iter().zip(shifted).take(overlap) {
            let (a, b) = (f64::from(a), f64::from(b));
            product += a * b;
            reference_energy += a * a;
            recorded_energy += b * b;
        }
        let denominator = (reference_energy * recorded_energy).sqrt();
        if denominator > 0.0 {
            let normalized = (product / denominator) as f32;
            if normalized > best.1 {
                best = (lag, normalized);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_has_the_requested_frequency_and_level() {
        let mut generator = SineGenerator::new(440.0, 8000, 10_000.0);
        let mut samples = Vec::new();
        generator.fill(&mut samples, 4000);
        assert!((dominant_frequency(&samples, 8000) - 440.0).abs() < 0.5);
        // RMS of a sine is peak / sqrt(2).
        assert!((rms(&samples) - 7071.0).abs() < 10.0, "{}", rms(&samples));
    }

    #[test]
    fn frames_join_without_phase_jumps() {
        let mut generator = SineGenerator::new(1000.0, 48_000, 10_000.0);
        let mut framed = Vec::new();
        for _ in 0..10 {
            generator.fill(&mut framed, 960);
        }
        let mut whole_generator = SineGenerator::new(1000.0, 48_000, 10_000.0);
        let mut whole = Vec::new();
        whole_generator.fill(&mut whole, 9600);
        assert_eq!(framed, whole);
    }

    #[test]
    fn goertzel_separates_the_two_ringback_tones() {
        let mut us = ToneGenerator::ringback_north_america(8000);
        let mut samples = Vec::new();
        us.fill(&mut samples, 1600);
        let at_440 = goertzel_power(&samples, 8000, 440.0);
        let at_480 = goertzel_power(&samples, 8000, 480.0);
        let at_425 = goertzel_power(&samples, 8000, 425.0);
        let at_1000 = goertzel_power(&samples, 8000, 1000.0);
        assert!((at_440 / at_480 - 1.0).abs() < 0.1);
        assert!(at_440 > 10.0 * at_425, "{at_440} vs {at_425}");
        assert!(at_440 > 1000.0 * at_1000);
    }

    #[test]
    fn ringback_follows_its_cadence() {
        let mut europe = ToneGenerator::ringback_europe(8000);
        let mut samples = Vec::new();
        europe.fill(&mut samples, 8000 * 6);
        let second = |n: usize| samples.get(n * 8000..(n + 1) * 8000).unwrap();
        assert!(rms(second(0)) > 5000.0);
        for silent in 1..5 {
            assert_eq!(rms(second(silent)), 0.0, "second {silent}");
        }
        assert!(rms(second(5)) > 5000.0);
        assert!((dominant_frequency(second(0), 8000) - 425.0).abs() < 1.0);
    }

    #[test]
    fn cross_correlation_finds_a_known_delay() {
        // Noise-like reference so that only the true lag correlates.
        let mut state: u32 = 99;
        let reference: Vec<i16> = (0..2000)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (state >> 16) as i16
            })
            .collect();
        let mut recorded = vec![0i16; 137];
        recorded.extend(reference.iter().map(|&s| s / 2));
        let (lag, peak) = cross_correlation_lag(&reference, &recorded, 400);
        assert_eq!(lag, 137);
        assert!(peak > 0.99, "{peak}");
        let (_, unrelated) = cross_correlation_lag(&reference, &vec![0; 3000], 10);
        assert_eq!(unrelated, 0.0);
    }

    #[test]
    fn dbfs_of_known_signals() {
        assert_eq!(dbfs(&[]), SILENCE_DBFS);
        assert_eq!(dbfs(&[0; 160]), SILENCE_DBFS);
        // Full-scale square: 0 dBFS; full-scale sine: -3.01; half amplitude: 6.02 lower.
        let square: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert!(dbfs(&square).abs() < 0.01, "{}", dbfs(&square));
        let mut sine = Vec::new();
        SineGenerator::new(1000.0, 8000, 32767.0).fill(&mut sine, 800);
        assert!((dbfs(&sine) + 3.01).abs() < 0.05, "{}", dbfs(&sine));
        let half: Vec<i16> = sine.iter().map(|s| s / 2).collect();
        assert!((dbfs(&sine) - dbfs(&half) - 6.02).abs() < 0.05);
        // One LSB of noise is far above the floor; the floor clamps.
        assert!(dbfs(&[1; 100]) > -91.0 && dbfs(&[1; 100]) < -90.0);
        assert_eq!(dbfs_of_rms(1e-9), SILENCE_DBFS);
        assert_eq!(dbfs_of_rms(f32::NAN), SILENCE_DBFS);
    }

    #[test]
    fn level_meter_averages_energy_and_resets() {
        let mut meter = LevelMeter::default();
        assert_eq!(meter.take_dbfs(), SILENCE_DBFS);
        let mut sine = Vec::new();
        SineGenerator::new(440.0, 8000, 16384.0).fill(&mut sine, 800);
        meter.add(&sine);
        let loud = meter.take_dbfs();
        assert!((loud - dbfs(&sine)).abs() < 0.01);
        // Half the window silent: energy halves, -3 dB.
        meter.add(&sine);
        meter.add_silence(800);
        assert!((meter.take_dbfs() - (loud - 3.01)).abs() < 0.05);
        meter.add_silence(160);
        assert_eq!(meter.take_dbfs(), SILENCE_DBFS);
    }

    #[test]
    fn busy_tones_by_region() {
        for (region, frequency) in [(ToneRegion::Eu, 425.0), (ToneRegion::Us, 480.0)] {
            let mut samples = Vec::new();
            region.busy(8000).fill(&mut samples, 8000 * 3);
            let runs = cadence(&samples, 8000, 50, 1000.0);
            assert_eq!(runs.len(), 6, "{region:?}: {runs:?}");
            assert!(runs.iter().all(|&(_, ms)| ms == 500), "{runs:?}");
            assert!(runs[0].0 && !runs[1].0);
            let on = &samples[..4000];
            let power = goertzel_power(on, 8000, frequency);
            assert!(
                power > 100.0 * goertzel_power(on, 8000, 1000.0),
                "{region:?}"
            );
        }
        let mut us = Vec::new();
        ToneRegion::Us.busy(8000).fill(&mut us, 4000);
        let (a, b) = (
            goertzel_power(&us, 8000, 480.0),
            goertzel_power(&us, 8000, 620.0),
        );
        assert!((a / b - 1.0).abs() < 0.1, "{a} {b}");
    }

    #[test]
    fn ringback_cadences_by_region() {
        for (region, on_ms, off_ms, frequency) in [
            (ToneRegion::Eu, 1000, 4000, 425.0),
            (ToneRegion::Us, 2000, 4000, 440.0),
        ] {
            let mut samples = Vec::new();
            region.ringback(16_000).fill(&mut samples, 16_000 * 12);
            let runs = cadence(&samples, 16_000, 50, 1000.0);
            assert_eq!(runs[0], (true, on_ms), "{region:?}: {runs:?}");
            assert_eq!(runs[1], (false, off_ms), "{region:?}: {runs:?}");
            assert!(runs[2].0);
            let on = &samples[..16 * on_ms as usize];
            let found = dominant_frequency(on, 16_000);
            // US: two tones; the scan lands on one of 440/480.
            assert!(
                (found - frequency).abs() < 1.0 || (found - 480.0).abs() < 1.0,
                "{found}"
            );
        }
    }

    #[test]
    fn call_waiting_tones_by_region() {
        for (region, frequency, expected) in [
            (
                ToneRegion::Eu,
                425.0,
                vec![
                    (true, 200),
                    (false, 200),
                    (true, 200),
                    (false, 3400),
                    (true, 200),
                ],
            ),
            (
                ToneRegion::Us,
                440.0,
                vec![(true, 300), (false, 9700), (true, 300)],
            ),
        ] {
            let mut generator = region.call_waiting(16_000);
            let mut samples = Vec::new();
            // In 20 ms frames, as the media task mixes it.
            for _ in 0..(10_300 / 20) {
                let mut frame = vec![0i16; 320];
                generator.mix(&mut frame);
                samples.extend_from_slice(&frame);
            }
            let runs = cadence(&samples, 16_000, 50, 1000.0);
            assert_eq!(runs[..expected.len()], expected[..], "{region:?}: {runs:?}");
            let burst = &samples[..3200];
            assert!(
                (dominant_frequency(burst, 16_000) - frequency).abs() < 1.0,
                "{region:?}"
            );
        }
        // Mixed into call audio: both tones are there, nothing else changes in the gaps.
        let mut call = Vec::new();
        SineGenerator::new(1000.0, 8000, 8000.0).fill(&mut call, 8000);
        let mut mixed = call.clone();
        ToneRegion::Eu.call_waiting(8000).mix(&mut mixed);
        let on = &mixed[..1600];
        assert!(goertzel_power(on, 8000, 425.0) > 0.005);
        assert!(goertzel_power(on, 8000, 1000.0) > 0.01);
        assert_eq!(mixed[1600..3200], call[1600..3200]);
        assert_eq!(mixed[4800..], call[4800..]);
        // Saturates instead of wrapping.
        let mut loud = vec![i16::MAX; 160];
        ToneRegion::Eu.call_waiting(8000).mix(&mut loud);
        assert!(loud.iter().all(|&s| s > 20_000));
    }

    #[test]
    fn looped_clip_repeats_with_a_gap() {
        let mut clip = LoopedClip::new(vec![5, 6, 7], 2);
        let mut out = Vec::new();
        clip.fill(&mut out, 4);
        clip.fill(&mut out, 8);
        assert_eq!(out, vec![5, 6, 7, 0, 0, 5, 6, 7, 0, 0, 5, 6]);
        let mut empty = LoopedClip::new(Vec::new(), 0);
        let mut out = Vec::new();
        empty.fill(&mut out, 3);
        assert_eq!(out, vec![0, 0, 0]);
    }

    #[test]
    fn analysis_of_empty_input_is_zero() {
        assert_eq!(rms(&[]), 0.0);
        assert_eq!(goertzel_power(&[], 8000, 440.0), 0.0);
        assert_eq!(cross_correlation_lag(&[], &[], 5), (0, 0.0));
    }
}
