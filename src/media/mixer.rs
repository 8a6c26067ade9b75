//! The local conference mixer: two or more calls joined here, each party hearing the others
//! and the local user but never itself (a "mix-minus"). Pure: no clock, no sockets; the media
//! tasks of the calls drive it once per frame.
//!
//! Every call's media task owns one `ConferenceLeg`. Per frame a leg
//! 1. `gather`s one frame of audio from each other leg (silence when that leg is late),
//! 2. `add_others` mixes that into what it sends (the local microphone is already in it),
//! 3. `publish`es what it received from its own peer, for the other legs.
//!
//! The legs exchange audio through lock-free SPSC rings (rtrb), one per ordered pair of legs,
//! at one common rate (`MIX_RATE`), so calls with different codecs mix. A ring holds a few
//! frames: a leg that publishes faster than another reads (the two tasks' 20 ms ticks are not
//! in phase) loses its oldest samples rather than letting the delay grow.
//!
//! The first leg is the host: only it plays the mix (its own peer plus the others) to the
//! local speaker; the other legs play nothing, so a WAV or a sound card is written once.

use rtrb::{Consumer, Producer, RingBuffer};

/// The rate legs exchange audio at (every codec rate here divides it).
pub const MIX_RATE: u32 = 48_000;
/// Calls one conference joins at most (the local user makes one more party).
pub const MAX_LEGS: usize = 4;
/// Samples per 20 ms frame at `MIX_RATE`.
const MIX_FRAME: usize = 960;
/// Room in each ring, in frames.
const RING_FRAMES: usize = 8;
/// At most this much audio waits in a ring (three frames, 60 ms); older samples are skipped.
const MAX_BACKLOG: usize = 3 * MIX_FRAME;

/// One call's place in a conference.
pub struct ConferenceLeg {
    call: u64,
    host: bool,
    /// The call's codec rate (what `publish` gets and `add_others` adds to).
    rate: u32,
    to_others: Vec<(u64, Producer<i16>)>,
    from_others: Vec<(u64, Consumer<i16>)>,
    /// The other legs' audio of this frame, summed at `MIX_RATE` (wide, then saturated).
    mix: Vec<i32>,
    summed: Vec<i16>,
    /// `mix` at the codec rate.
    mix_at_rate: Vec<i16>,
    /// `publish`'s input at `MIX_RATE`.
    upsampled: Vec<i16>,
    /// The last sample `publish` saw, for interpolating across frame boundaries.
    last_published: i16,
    /// Samples dropped because a ring was full or ran ahead (for the log).
    dropped: u64,
}

impl std::fmt::Debug for ConferenceLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConferenceLeg")
            .field("call", &self.call)
            .field("host", &self.host)
            .field("rate", &self.rate)
            .field(
                "others",
                &self.from_others.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Joins `calls` (2..=`MAX_LEGS`, distinct) into one conference: a leg for each, in order,
/// the first one the host. Empty when the list is not usable.
pub fn link(calls: &[u64]) -> Vec<ConferenceLeg> {
    let mut distinct = calls.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    if calls.len() < 2 || calls.len() > MAX_LEGS || distinct.len() != calls.len() {
        return Vec::new();
    }
    let mut legs: Vec<ConferenceLeg> = calls
        .iter()
        .enumerate()
        .map(|(i, &call)| ConferenceLeg {
            call,
            host: i == 0,
            rate: MIX_RATE,
            to_others: Vec::with_capacity(calls.len() - 1),
            from_others: Vec::with_capacity(calls.len() - 1),
            mix: Vec::with_capacity(MIX_FRAME),
            summed: Vec::with_capacity(MIX_FRAME),
            mix_at_rate: Vec::with_capacity(MIX_FRAME),
            upsampled: Vec::with_capacity(MIX_FRAME),
            last_published: 0,
            dropped: 0,
        })
        .collect();
    for from in 0..legs.len() {
        for to in 0..legs.len() {
            if from == to {
                continue;
            }
            let (producer, consumer) = RingBuffer::new(RING_FRAMES * MIX_FRAME);
            let (from_call, to_call) = (legs[from].call, legs[to].call);
            legs[from].to_others.push((to_call, producer));
            legs[to].from_others.push((from_call, consumer));
        }
    }
    legs
}

impl ConferenceLeg {
    pub fn call(&self) -> u64 {
        self.call
    }

    /// The host leg plays the whole conference to the local speaker.
    pub fn is_host(&self) -> bool {
        self.host
    }

    /// The other calls of the conference.
    pub fn others(&self) -> Vec<u64> {
        self.from_others.iter().map(|(c, _)| *c).collect()
    }

    /// Samples lost so far because a ring was full or ran ahead.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The call's codec rate (again after a codec change).
    pub fn set_rate(&mut self, rate: u32) {
        self.rate = rate.max(1);
    }

    /// What this leg's peer said in this frame (at the codec rate), for the other legs.
    pub fn publish(&mut self, received: &[i16]) {
        resample_into(
            received,
            self.rate,
            MIX_RATE,
            &mut self.last_published,
            &mut self.upsampled,
        );
        for (_, ring) in &mut self.to_others {
            if ring.slots() < self.upsampled.len() {
                // The reader is gone or far behind: this frame is lost for it.
                self.dropped += self.upsampled.len() as u64;
                continue;
            }
            let _ = ring.push_entire_slice(&self.upsampled);
        }
    }

    /// Takes the other legs' audio for a frame of `frame_len` samples at the codec rate:
    /// one frame from each ring (silence for a leg that has none yet).
    pub fn gather(&mut self, frame_len: usize) {
        let want = (frame_len as u64 * u64::from(MIX_RATE) / u64::from(self.rate)) as usize;
        self.mix.clear();
        self.mix.resize(want, 0);
        for (_, ring) in &mut self.from_others {
            // Bounded delay: skip what a faster writer queued beyond the backlog.
            let excess = ring.slots().saturating_sub(MAX_BACKLOG.max(want));
            if excess > 0
                && let Ok(chunk) = ring.read_chunk(excess)
            {
                chunk.commit_all();
                self.dropped += excess as u64;
            }
            let take = ring.slots().min(want);
            if let Ok(chunk) = ring.read_chunk(take) {
                let (a, b) = chunk.as_slices();
                for (acc, s) in self.mix.iter_mut().zip(a.iter().chain(b.iter())) {
                    *acc += i32::from(*s);
                }
                chunk.commit_all();
            }
        }
        self.summed.clear();
        self.summed.extend(self.mix.iter().map(|s| saturate(*s)));
        // Down-sampling keeps no state (`last` only matters going up).
        let mut unused = 0;
        resample_into(
            &self.summed,
            MIX_RATE,
            self.rate,
            &mut unused,
            &mut self.mix_at_rate,
        );
    }

    /// Adds the gathered audio of the other legs to `pcm` (a frame at the codec rate).
    pub fn add_others(&self, pcm: &mut [i16]) {
        for (out, add) in pcm.iter_mut().zip(self.mix_at_rate.iter()) {
            *out = saturate(i32::from(*out) + i32::from(*add));
        }
    }
}

fn saturate(sample: i32) -> i16 {
    sample.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// Converts a frame between rates: linear interpolation up (continuing from `last`, the
/// previous frame's final sample), the mean of each group of samples down (a crude low-pass
/// that keeps tones and speech below the new Nyquist frequency recognisable).
pub fn resample_into(input: &[i16], from: u32, to: u32, last: &mut i16, out: &mut Vec<i16>) {
    out.clear();
    if input.is_empty() || from == 0 || to == 0 {
        return;
    }
    if from == to {
        out.extend_from_slice(input);
    } else if to > from {
        let len = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
        let previous = i32::from(*last);
        let step = f64::from(from) / f64::from(to);
        for i in 0..len {
            // Output sample i sits at input position (i + 1) * step - 1, between the previous
            // input sample and the next.
            let pos = (i + 1) as f64 * step - 1.0;
            let index = pos.floor();
            let frac = pos - index;
            let a = if index < 0.0 {
                previous
            } else {
                i32::from(input[(index as usize).min(input.len() - 1)])
            };
            let b = i32::from(input[((index + 1.0) as usize).min(input.len() - 1)]);
            out.push(saturate(a + ((f64::from(b - a)) * frac).round() as i32));
        }
    } else {
        let len = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
        for i in 0..len {
            let start = i * input.len() / len;
            let end = ((i + 1) * input.len() / len)
                .max(start + 1)
                .min(input.len());
            let group = &input[start..end];
            let sum: i32 = group.iter().map(|s| i32::from(*s)).sum();
            out.push(saturate(sum / group.len() as i32));
        }
    }
    if let Some(&final_sample) = input.last() {
        *last = final_sample;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tones::{SineGenerator, goertzel_power, rms};

    fn tone(freq: f32, rate: u32, frames: usize) -> Vec<Vec<i16>> {
        let mut generator = SineGenerator::new(freq, rate, 8000.0);
        let n = crate::media::samples_per_frame(rate);
        (0..frames)
            .map(|_| {
                let mut frame = Vec::new();
                generator.fill(&mut frame, n);
                frame
            })
            .collect()
    }

    /// Runs `frames` ticks of a conference: leg i's peer says `said[i]`, the local microphone
    /// `mic`. Returns what each leg sends to its peer, concatenated.
    fn run(legs: &mut [ConferenceLeg], said: &[Vec<Vec<i16>>], mic: &[Vec<i16>]) -> Vec<Vec<i16>> {
        let mut sent = vec![Vec::new(); legs.len()];
        for tick in 0..mic.len() {
            for (i, leg) in legs.iter_mut().enumerate() {
                let mut out = mic[tick].clone();
                // Each leg runs at its own codec rate: the mic frame is at that rate too.
                leg.gather(out.len());
                leg.add_others(&mut out);
                sent[i].extend_from_slice(&out);
                leg.publish(&said[i][tick]);
            }
        }
        sent
    }

    #[test]
    fn each_party_hears_the_others_and_not_itself() {
        let mut legs = link(&[1, 2]);
        assert_eq!(legs.len(), 2);
        assert!(legs[0].is_host() && !legs[1].is_host());
        let frames = 50;
        let b = tone(700.0, 8000, frames);
        let c = tone(1100.0, 8000, frames);
        let mic = tone(400.0, 8000, frames);
        let sent = run(&mut legs, &[b.clone(), c.clone()], &mic);
        // Leave out the first frames (the rings fill).
        let to_b = &sent[0][1600..];
        let to_c = &sent[1][1600..];
        let p = |s: &[i16], f| goertzel_power(s, 8000, f);
        assert!(p(to_b, 400.0) > 100.0 * p(to_b, 700.0), "B hears itself");
        assert!(
            p(to_b, 1100.0) > 100.0 * p(to_b, 700.0),
            "B does not hear C"
        );
        assert!(p(to_c, 400.0) > 100.0 * p(to_c, 1100.0), "C hears itself");
        assert!(
            p(to_c, 700.0) > 100.0 * p(to_c, 1100.0),
            "C does not hear B"
        );
    }

    #[test]
    fn legs_with_different_rates_mix() {
        let mut legs = link(&[7, 9]);
        legs[0].set_rate(8000);
        legs[1].set_rate(48000);
        let frames = 40;
        let said_narrow = tone(600.0, 8000, frames);
        let said_wide = tone(1000.0, 48000, frames);
        let mut heard_by_narrow = Vec::new();
        let mut heard_by_wide = Vec::new();
        for tick in 0..frames {
            let mut out = vec![0i16; 160];
            legs[0].gather(160);
            legs[0].add_others(&mut out);
            heard_by_narrow.extend_from_slice(&out);
            legs[0].publish(&said_narrow[tick]);
            let mut out = vec![0i16; 960];
            legs[1].gather(960);
            legs[1].add_others(&mut out);
            heard_by_wide.extend_from_slice(&out);
            legs[1].publish(&said_wide[tick]);
        }
        let narrow = &heard_by_narrow[800..];
        let wide = &heard_by_wide[4800..];
        assert_eq!(
            crate::media::tones::dominant_frequency(narrow, 8000).round(),
            1000.0
        );
        assert_eq!(
            crate::media::tones::dominant_frequency(wide, 48000).round(),
            600.0
        );
        assert!(rms(narrow) > 3000.0 && rms(wide) > 3000.0);
    }

    #[test]
    fn a_silent_or_slow_leg_adds_silence_and_delay_stays_bounded() {
        let mut legs = link(&[1, 2, 3]);
        assert_eq!(legs[0].others(), vec![2, 3]);
        // Leg 2 publishes 20 frames while nobody reads: its rings keep at most 8 frames and
        // the reader skips to the newest three.
        let loud = tone(500.0, 48000, 20);
        for frame in &loud {
            legs[1].publish(frame);
        }
        assert!(legs[1].dropped() > 0);
        legs[0].gather(960);
        let mut out = vec![0i16; 960];
        legs[0].add_others(&mut out);
        assert!(rms(&out) > 3000.0);
        assert!(legs[0].dropped() > 0, "the backlog past 60 ms is skipped");
        // Leg 3 never published: silence from it, no panic.
        legs[1].gather(960);
        let mut quiet = vec![0i16; 960];
        legs[1].add_others(&mut quiet);
        assert_eq!(rms(&quiet), 0.0);
    }

    #[test]
    fn unusable_lists_link_nothing() {
        assert!(link(&[1]).is_empty());
        assert!(link(&[1, 1]).is_empty());
        assert!(link(&[1, 2, 3, 4, 5]).is_empty());
        assert_eq!(link(&[1, 2, 3, 4]).len(), 4);
    }

    #[test]
    fn resampling_keeps_length_and_frequency() {
        let mut last = 0;
        let mut out = Vec::new();
        let input = &tone(440.0, 8000, 1)[0];
        resample_into(input, 8000, 48000, &mut last, &mut out);
        assert_eq!(out.len(), 960);
        let mut back = Vec::new();
        resample_into(&out, 48000, 8000, &mut 0, &mut back);
        assert_eq!(back.len(), 160);
        assert_eq!(
            crate::media::tones::dominant_frequency(&out, 48000).round(),
            440.0
        );
        resample_into(&[1, 2, 3], 16000, 16000, &mut last, &mut out);
        assert_eq!(out, vec![1, 2, 3]);
        resample_into(&[], 8000, 48000, &mut last, &mut out);
        assert!(out.is_empty());
    }
}
