//! What a call's recording holds: the sound's frequency, level and length, for tests that
//! send a tone from each side and check that each side heard the other's.

use std::path::Path;

use sipterm::media::tones::{dominant_frequency, goertzel_power, rms};

use super::headless::read_wav;

/// A frame's RMS above this counts as sound (test tones are sent at about 5657).
pub const SOUND_RMS: f32 = 500.0;

type AudioResult<T> = Result<T, Box<dyn std::error::Error>>;

/// RMS of each 20 ms frame.
pub fn frame_levels(samples: &[i16], rate: u32) -> Vec<f32> {
    samples
        .chunks(sipterm::media::samples_per_frame(rate))
        .map(rms)
        .collect()
}

/// What a recording holds in the middle of its sound.
#[derive(Debug)]
pub struct Heard {
    pub rate: u32,
    pub seconds: f32,
    pub sound_seconds: f32,
    pub frequency: f32,
    pub level: f32,
}

/// Finds the sound in a recording (frames above `SOUND_RMS`), and measures the dominant
/// frequency and RMS of up to 0.5 s in its middle.
pub fn analyse(path: &Path) -> AudioResult<Heard> {
    let (rate, samples) = read_wav(path)?;
    let frame = sipterm::media::samples_per_frame(rate);
    let levels = frame_levels(&samples, rate);
    let loud: Vec<usize> = (0..levels.len())
        .filter(|&i| levels[i] > SOUND_RMS)
        .collect();
    let (Some(&first), Some(&last)) = (loud.first(), loud.last()) else {
        return Err(format!(
            "{}: no sound at all ({} samples)",
            path.display(),
            samples.len()
        )
        .into());
    };
    // The middle half of the sound, at most 25 frames (0.5 s).
    let span = last + 1 - first;
    let center = first + span / 2;
    let half = (span / 4).clamp(1, 12);
    let window = &samples[(center - half) * frame..((center + half) * frame).min(samples.len())];
    Ok(Heard {
        rate,
        seconds: samples.len() as f32 / rate as f32,
        sound_seconds: loud.len() as f32 * 0.02,
        frequency: dominant_frequency(window, rate),
        level: rms(window),
    })
}

/// `path` must hold `tone` (within 2 %) at a meaningful level for at least a second.
pub fn assert_hears(path: &Path, who: &str, tone: f32) -> AudioResult<Heard> {
    let heard = analyse(path)?;
    println!("{who} heard: {heard:?} (expected {tone} Hz)");
    assert!(
        (heard.frequency - tone).abs() < tone * 0.02,
        "{who} heard {} Hz, expected its peer's {tone} Hz",
        heard.frequency
    );
    assert!(
        heard.level > 2000.0,
        "{who}: received tone too weak (RMS {}, sent ~5657)",
        heard.level
    );
    assert!(
        heard.seconds >= heard.sound_seconds && heard.sound_seconds >= 1.0,
        "{who}: only {} s of sound",
        heard.sound_seconds
    );
    Ok(heard)
}

/// A recording in 100 ms blocks: how many have sound, and in how many of those `wanted` or
/// `other` is the stronger tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToneBlocks {
    pub voiced: usize,
    pub wanted: usize,
    pub other: usize,
}

/// Which of two tones dominates each voiced 100 ms block of `path` (a stranger's tone mixed
/// into a call, say).
pub fn tone_blocks(path: &Path, wanted: f32, other: f32) -> AudioResult<ToneBlocks> {
    let (rate, samples) = read_wav(path)?;
    let mut blocks = ToneBlocks {
        voiced: 0,
        wanted: 0,
        other: 0,
    };
    for block in samples.chunks(rate as usize / 10) {
        if rms(block) < SOUND_RMS {
            continue;
        }
        blocks.voiced += 1;
        if goertzel_power(block, rate, other) > goertzel_power(block, rate, wanted) {
            blocks.other += 1;
        } else {
            blocks.wanted += 1;
        }
    }
    Ok(blocks)
}
