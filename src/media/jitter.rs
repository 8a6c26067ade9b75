//! Playout buffer: packets go in as they arrive (any order), one frame comes out per 20 ms tick.
//!
//! Packets are keyed by their RTP timestamp, unwrapped to 64 bits. Playout starts a number of
//! ticks after the first packet (the target delay) and then advances one frame per tick;
//! a frame whose packet is not there is reported [`Playout::Missing`] so the decoder conceals
//! it.
//!
//! Adaptive delay: packets given with their arrival time ([`JitterBuffer::insert_at`]) feed an
//! estimate of the network jitter, the 95th percentile of each packet's transit (arrival minus
//! timestamp) above the smallest recent transit. The target delay follows it (whole frames,
//! [`MIN_TARGET_FRAMES`]..=[`MAX_TARGET_FRAMES`]): it grows at once, and shrinks one frame at a
//! time after it has been too large for a while. The buffer level (how far ahead of the playout
//! point a packet with the smallest transit lands) is steered to the target by playing one
//! extra concealment frame without advancing (too little buffered: late packets, a sender
//! clock slower than ours) or skipping one queued frame (too much: jitter went down, a sender
//! clock faster than ours). Packets given by [`JitterBuffer::insert`] carry no arrival time,
//! and a buffer fed only by it keeps the fixed delay it was built with.
//!
//! Timed playout: when frames are taken with [`JitterBuffer::pop_frame_at`] (the time of each
//! pop, on the arrival clock), the level is measured in time, not whole frames: how long
//! before the pop that plays it a packet with the baseline transit arrives. The target is then
//! the jitter estimate plus [`PHASE_GUARD_MS`], and a lead that exceeds it by part of a frame
//! is handed to the caller as a phase advance ([`JitterBuffer::take_phase_advance`]): pop that
//! much earlier from now on. On a clean path a packet then waits a few milliseconds for its
//! pop instead of up to two frames, whatever the phase between its arrival and our clock.

use std::collections::{BTreeMap, VecDeque};

/// Playout position further than this from an arriving packet (either way) means the stream
/// jumped (sender restarted its clock, long hold): start over rather than wait or drop.
const RESYNC_FRAMES: u64 = 50;
/// Consecutive late packets that prove our playout point is wrong (sender's clock jumped back
/// a little): start over from them.
const LATE_PACKETS_BEFORE_RESYNC: u32 = 5;
/// Frames buffered beyond the target before the oldest are dropped to bring latency back.
const EXCESS_FRAMES_BEFORE_TRIM: usize = 5;
/// Hard bound on stored packets, whatever the network sends.
pub const MAX_PACKETS: usize = 100;
/// Bounds of the adaptive target delay, in frames (20-240 ms at 20 ms frames).
pub const MIN_TARGET_FRAMES: u32 = 1;
pub const MAX_TARGET_FRAMES: u32 = 12;
/// Transit samples kept for the baseline (smallest transit): 5 s at 20 ms frames. Short
/// enough that a drifting sender clock moves the baseline by only a few milliseconds.
const BASELINE_WINDOW: usize = 250;
/// The most recent samples whose spread above the baseline sets the target: 2 s.
const JITTER_WINDOW: usize = 100;
/// Samples needed before the estimate replaces the configured delay.
const MIN_SAMPLES: usize = 10;
/// Fraction of packets the target delay should have arrived in time for.
const JITTER_PERCENTILE: f64 = 0.95;
/// The same for timed playout, which has no whole-frame rounding to spare.
const TIMED_JITTER_PERCENTILE: f64 = 0.98;
/// Timed playout: ticks after a stretch before the pops may move earlier again. A sender
/// clock slower than ours makes packets come later and later; moving earlier between the
/// stretches that drift needs would only bring the next one sooner.
const ADVANCE_AFTER_STRETCH_TICKS: u32 = 750;
/// The same after a stretch that followed a rise of the target (a burst of jitter, not a
/// slow sender): once the burst has left the jitter window (2 s), the frame it added is only
/// delay. Measured on a device call: 15 s holds left a spike's 20 ms in place for 15-20 s,
/// a sixth of a 10-minute call.
const ADVANCE_AFTER_GROWTH_TICKS: u32 = 300;
/// Ticks between the samples of the target that tell a rise (`targets_before`).
const TARGET_SAMPLE_TICKS: u32 = 50;
/// Stretches in the first ticks of playout find the packets' phase; they do not hold back
/// advances.
const SETTLING_TICKS: u32 = 250;
/// Ticks between one-frame decreases of the target (shrinks slowly, 2 s a frame).
const SHRINK_HOLD_TICKS: u32 = 100;
/// Ticks the level must stay above the target band before a frame is skipped, and the least
/// time between two skips.
const ABOVE_TICKS_BEFORE_SKIP: u32 = 25;
const TICKS_BETWEEN_SKIPS: u32 = 50;
/// Smoothing of the level estimate (per packet).
const LEVEL_GAIN: f64 = 1.0 / 16.0;
/// Timed playout: how long, beyond the jitter estimate, a packet should arrive before its pop.
/// Covers the playout timer's own lateness (about a millisecond here: timer resolution and
/// scheduling, measured 0.5-1.5 ms on average).
pub const PHASE_GUARD_MS: u32 = 2;
/// Timed playout: a lead above the target by more than `PHASE_ADVANCE_ABOVE` (in frames)
/// moves the pops earlier, down to `PHASE_LAND` above the target; a lead below the target by
/// more than `PHASE_KEEP` stretches. The band between keeps noise in the smoothed level from
/// alternating stretches and advances; landing just above the target, not in the middle of
/// the band, is a millisecond or two less delay for the whole call.
const PHASE_ADVANCE_ABOVE: f64 = 0.15;
const PHASE_LAND: f64 = 0.05;
const PHASE_KEEP: f64 = 0.1;

/// What to play this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Still filling up to the target delay (or never got a packet): play silence.
    Buffering,
    /// The payload due now.
    Frame(Vec<u8>),
    /// The packet due now is missing: conceal (decode `None`, or use FEC from
    /// [`JitterBuffer::peek_next`]).
    Missing,
}

/// What happened to an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Queued,
    /// A packet with this timestamp is already waiting.
    Duplicate,
    /// Its frame was already played (or concealed); dropped.
    Late,
    /// The packet was far from the playout point: the buffer started over with it.
    Resynchronized,
}

/// Counters for the UI and for tuning the delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub queued: u64,
    pub played: u64,
    pub concealed: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Packets dropped to bound memory or latency.
    pub dropped: u64,
    pub resyncs: u64,
    /// Concealment frames played to grow the delay (counted in `concealed` too).
    pub stretched: u64,
    /// Queued frames skipped to shrink the delay (counted in `dropped` too).
    pub shrunk: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    Buffering { ticks: u32 },
    Playing { next: u64 },
}

/// The playout buffer for one incoming stream.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    /// RTP timestamp step of one frame (160 at 8 kHz, 960 at 48 kHz).
    frame_duration: u32,
    target_delay_frames: u32,
    packets: BTreeMap<u64, Vec<u8>>,
    state: State,
    /// Newest unwrapped timestamp, the reference for unwrapping the next one.
    newest: Option<u64>,
    consecutive_late: u32,
    /// Arrival time of the first of the current run of late packets (adaptive mode).
    first_late_arrival: Option<u32>,
    stats: JitterStats,
    /// Whether any packet came with an arrival time (adaptive delay on).
    adaptive: bool,
    /// Transit (arrival - timestamp) of recent packets relative to `transit_reference`, in
    /// clock units, oldest first.
    transits: VecDeque<i64>,
    /// Arrival - timestamp of the first sampled packet (wrapping), so that transits are small.
    transit_reference: Option<u32>,
    /// Target the jitter estimate asks for, in frames.
    wanted_frames: u32,
    /// Smoothed lead (frames) of a packet with the baseline transit over the playout point.
    level: Option<f64>,
    ticks_since_target_change: u32,
    /// Consecutive ticks the estimate has asked for less than the target.
    ticks_wanted_lower: u32,
    ticks_above: u32,
    ticks_since_skip: u32,
    /// The last tick was a stretch: the next packet's FEC would rebuild a frame already played.
    stretched: bool,
    /// Arrival-clock time of the last [`Self::pop_frame_at`]: timed playout.
    last_pop: Option<u32>,
    /// Timed playout: the latest jitter estimate (`TIMED_JITTER_PERCENTILE` above the
    /// baseline), in clock units.
    jitter_units: Option<i64>,
    /// Ticks the timed level stayed above the target by part of a frame.
    ticks_phase_above: u32,
    /// Ticks since the last stretch (saturating; starts high: no stretch yet).
    ticks_since_stretch: u32,
    /// Ticks played with a level, since the timeline (re)started.
    ticks_playing: u32,
    /// Clock units the caller should pop earlier (taken by [`Self::take_phase_advance`]).
    phase_advance: Option<u32>,
    /// Timed playout: the target one and two `TARGET_SAMPLE_TICKS` ago, in frames.
    targets_before: [Option<f64>; 2],
}

impl JitterBuffer {
    /// `frame_duration`: timestamp units per 20 ms frame; `target_delay_frames`: ticks to wait
    /// after the first packet before playing (2-3 is a good fixed choice).
    pub fn new(frame_duration: u32, target_delay_frames: u32) -> Self {
        Self {
            frame_duration: frame_duration.max(1),
            target_delay_frames,
            packets: BTreeMap::new(),
            state: State::Empty,
            newest: None,
            consecutive_late: 0,
            first_late_arrival: None,
            stats: JitterStats::default(),
            adaptive: false,
            transits: VecDeque::with_capacity(BASELINE_WINDOW),
            transit_reference: None,
            wanted_frames: target_delay_frames,
            level: None,
            ticks_since_target_change: 0,
            ticks_wanted_lower: 0,
            ticks_above: 0,
            ticks_since_skip: 0,
            stretched: false,
            last_pop: None,
            jitter_units: None,
            ticks_phase_above: 0,
            ticks_since_stretch: u32::MAX,
            ticks_playing: 0,
            targets_before: [None; 2],
            phase_advance: None,
        }
    }

    pub fn target_delay(&self) -> u32 {
        self.target_delay_frames
    }

    /// Changes the target delay; takes effect at the next (re)start of playout (and is
    /// overridden by the jitter estimate once packets come with arrival times).
    pub fn set_target_delay(&mut self, frames: u32) {
        self.target_delay_frames = frames;
        self.wanted_frames = frames;
    }

    /// Current network jitter estimate (95th percentile of transit above the baseline), in
    /// clock units; `None` until enough packets came through [`Self::insert_at`].
    pub fn jitter_estimate(&self) -> Option<u32> {
        self.jitter_percentile().map(|units| units as u32)
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Drops everything (stream restarted, see `ReceiveOutcome::Accepted::restarted`).
    pub fn reset(&mut self) {
        self.packets.clear();
        self.state = State::Empty;
        self.newest = None;
        self.consecutive_late = 0;
        self.first_late_arrival = None;
        self.forget_timing();
    }

    /// Transit and level history belong to one stream timeline; the learned target stays.
    fn forget_timing(&mut self) {
        self.transits.clear();
        self.transit_reference = None;
        self.level = None;
        self.ticks_above = 0;
        self.ticks_phase_above = 0;
        self.ticks_playing = 0;
        self.ticks_since_stretch = u32::MAX;
        self.targets_before = [None; 2];
        self.jitter_units = None;
        self.stretched = false;
    }

    /// Unwraps a 32-bit timestamp to the 64-bit value nearest the newest one seen.
    fn unwrap_timestamp(&self, timestamp: u32) -> u64 {
        match self.newest {
            // Start high so that packets slightly older than the first stay positive.
            None => (1u64 << 32) | u64::from(timestamp),
            Some(newest) => {
                let delta = i64::from(timestamp.wrapping_sub(newest as u32) as i32);
                newest.saturating_add_signed(delta)
            }
        }
    }

    fn distance_frames(&self, a: u64, b: u64) -> u64 {
        a.abs_diff(b) / u64::from(self.frame_duration)
    }

    /// Like [`Self::insert`], with the packet's arrival time in RTP clock units (any origin,
    /// wrapping like timestamps, e.g. `session::clock_units`): the delay then adapts to the
    /// measured jitter.
    pub fn insert_at(&mut self, timestamp: u32, payload: &[u8], arrival: u32) -> InsertOutcome {
        self.adaptive = true;
        let outcome = self.insert_inner(timestamp, payload, Some(arrival));
        if outcome == InsertOutcome::Duplicate {
            // A copy says nothing about the path the original took.
            return outcome;
        }
        let raw = arrival.wrapping_sub(timestamp);
        let reference = *self.transit_reference.get_or_insert(raw);
        let transit = i64::from(raw.wrapping_sub(reference) as i32);
        if self.transits.len() == BASELINE_WINDOW {
            self.transits.pop_front();
        }
        self.transits.push_back(transit);
        if self.last_pop.is_some() {
            self.jitter_units = self.percentile_above_baseline(TIMED_JITTER_PERCENTILE);
        }
        if let Some(units) = self.jitter_percentile() {
            let fd = i64::from(self.frame_duration);
            let frames = (units.max(0) as u64).div_ceil(fd as u64);
            let frames = (frames.min(u64::from(MAX_TARGET_FRAMES)) as u32)
                .clamp(MIN_TARGET_FRAMES, MAX_TARGET_FRAMES);
            // Hysteresis: grow as soon as the estimate needs it, but ask for less only when
            // it fits one frame lower with a quarter of a frame to spare. An estimate near a frame
            // boundary (jitter range ≈ whole frames, drift moving the baseline) otherwise
            // flips the target up and down, and every flip costs a stretch and a skip.
            let current = self.target_delay_frames;
            self.wanted_frames = if frames >= current
                || units <= i64::from(current.saturating_sub(1)) * fd - fd / 4
            {
                frames
            } else {
                current
            };
        }
        // Lead of this packet over the playout point plus its extra transit: the lead a
        // packet with the baseline transit would have had. Timed, the lead also counts the
        // time from its arrival to the next pop.
        if let (State::Playing { next }, Some(&baseline)) = (self.state, self.transits.iter().min())
        {
            let unwrapped = self.unwrap_timestamp(timestamp);
            let until_pop = self.last_pop.map_or(0, |at| {
                i64::from(at.wrapping_add(self.frame_duration).wrapping_sub(arrival) as i32)
            });
            let lead = unwrapped as i64 - next as i64 + until_pop + (transit - baseline);
            let sample = lead as f64 / f64::from(self.frame_duration);
            let level = self.level.get_or_insert(sample);
            *level += (sample - *level) * LEVEL_GAIN;
        }
        outcome
    }

    /// 95th percentile of the recent transits above the baseline, in clock units.
    fn jitter_percentile(&self) -> Option<i64> {
        self.percentile_above_baseline(JITTER_PERCENTILE)
    }

    /// The `fraction` percentile of the recent transits above the baseline, in clock units.
    fn percentile_above_baseline(&self, fraction: f64) -> Option<i64> {
        if self.transits.len() < MIN_SAMPLES {
            return None;
        }
        let baseline = self.transits.iter().min().copied()?;
        let skip = self.transits.len().saturating_sub(JITTER_WINDOW);
        let mut recent: Vec<i64> = self
            .transits
            .iter()
            .skip(skip)
            .map(|t| t - baseline)
            .collect();
        recent.sort_unstable();
        let index = ((recent.len() as f64 * fraction).ceil() as usize).clamp(1, recent.len());
        recent.get(index - 1).copied()
    }

    /// Stores the payload of the packet with RTP timestamp `timestamp`.
    pub fn insert(&mut self, timestamp: u32, payload: &[u8]) -> InsertOutcome {
        self.insert_inner(timestamp, payload, None)
    }

    fn insert_inner(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        arrival: Option<u32>,
    ) -> InsertOutcome {
        let unwrapped = self.unwrap_timestamp(timestamp);
        let reference = match self.state {
            State::Empty => None,
            State::Buffering { .. } => self.packets.keys().next().copied(),
            State::Playing { next } => Some(next),
        };
        if let Some(reference) = reference
            && self.distance_frames(unwrapped, reference) > RESYNC_FRAMES
        {
            self.start_over();
            self.store(unwrapped, payload);
            return InsertOutcome::Resynchronized;
        }
        if let State::Playing { next } = self.state
            && unwrapped < next
        {
            self.stats.late += 1;
            self.consecutive_late += 1;
            // With arrival times, the late run must also last as long as that many packets
            // take to come: the burst released by a stalled link arrives all at once and is
            // late without the sender's clock having moved.
            let first_late = *self.first_late_arrival.get_or_insert(arrival.unwrap_or(0));
            let lasted = arrival.is_none_or(|arrival| {
                arrival.wrapping_sub(first_late)
                    >= LATE_PACKETS_BEFORE_RESYNC.saturating_sub(1) * self.frame_duration
            });
            if self.consecutive_late >= LATE_PACKETS_BEFORE_RESYNC && lasted {
                self.start_over();
                self.store(unwrapped, payload);
                return InsertOutcome::Resynchronized;
            }
            return InsertOutcome::Late;
        }
        self.consecutive_late = 0;
        self.first_late_arrival = None;
        if self.packets.contains_key(&unwrapped) {
            self.stats.duplicates += 1;
            return InsertOutcome::Duplicate;
        }
        if self.state == State::Empty {
            self.state = State::Buffering { ticks: 0 };
        }
        self.store(unwrapped, payload);
        if self.packets.len() > MAX_PACKETS {
            self.packets.pop_first();
            self.stats.dropped += 1;
        }
        InsertOutcome::Queued
    }

    fn start_over(&mut self) {
        self.packets.clear();
        self.newest = None;
        self.consecutive_late = 0;
        self.first_late_arrival = None;
        self.state = State::Buffering { ticks: 0 };
        self.stats.resyncs += 1;
        self.forget_timing();
    }

    fn store(&mut self, unwrapped: u64, payload: &[u8]) {
        self.packets.insert(unwrapped, payload.to_vec());
        self.newest = Some(
            self.newest
                .map_or(unwrapped, |newest| newest.max(unwrapped)),
        );
        self.stats.queued += 1;
    }

    /// [`Self::pop_frame`] at `now` (arrival clock units, as given to [`Self::insert_at`]):
    /// timed playout, see the module documentation. Call it every frame duration, moving the
    /// schedule earlier by what [`Self::take_phase_advance`] returns.
    pub fn pop_frame_at(&mut self, now: u32) -> Playout {
        self.last_pop = Some(now);
        self.pop_frame()
    }

    /// Clock units by which timed pops should move earlier, once (then `None` until the lead
    /// again exceeds the target for a while).
    pub fn take_phase_advance(&mut self) -> Option<u32> {
        self.phase_advance.take()
    }

    /// Timed playout: the lead wanted, in frames (the jitter estimate plus the guard; the
    /// configured delay until there is an estimate).
    fn timed_target(&self) -> f64 {
        let fd = f64::from(self.frame_duration);
        match self.jitter_units {
            Some(units) => (units.max(0) as f64 + fd * f64::from(PHASE_GUARD_MS) / 20.0) / fd,
            None => f64::from(self.target_delay_frames),
        }
    }

    /// The frame to play for this tick; call exactly once per 20 ms.
    pub fn pop_frame(&mut self) -> Playout {
        let next = match self.state {
            State::Empty => return Playout::Buffering,
            State::Buffering { ticks } => {
                let ticks = ticks + 1;
                let oldest = self.packets.keys().next().copied();
                match oldest {
                    Some(oldest) if ticks > self.target_delay_frames => oldest,
                    _ => {
                        self.state = State::Buffering { ticks };
                        return Playout::Buffering;
                    }
                }
            }
            State::Playing { next } => next,
        };
        self.stretched = false;
        if self.adaptive
            && let Some(playout) = self.adapt(next)
        {
            return playout;
        }
        // A skip moved the playout point.
        let next = match self.state {
            State::Playing { next: skipped_to } => skipped_to,
            _ => next,
        };
        let next = self.trim_excess(next);
        // Anything older than the frame due now can no longer be played.
        while let Some(entry) = self.packets.first_entry() {
            if *entry.key() >= next {
                break;
            }
            entry.remove();
            self.stats.dropped += 1;
        }
        self.state = State::Playing {
            next: next + u64::from(self.frame_duration),
        };
        match self.packets.remove(&next) {
            Some(payload) => {
                self.stats.played += 1;
                Playout::Frame(payload)
            }
            None => {
                self.stats.concealed += 1;
                Playout::Missing
            }
        }
    }

    /// Moves the target toward the jitter estimate and the level toward the target, by
    /// stretching (returns the concealment frame to play) or skipping one frame.
    fn adapt(&mut self, next: u64) -> Option<Playout> {
        self.ticks_since_target_change = self.ticks_since_target_change.saturating_add(1);
        self.ticks_since_skip = self.ticks_since_skip.saturating_add(1);
        if self.wanted_frames > self.target_delay_frames {
            self.target_delay_frames = self.wanted_frames;
            self.ticks_since_target_change = 0;
            self.ticks_wanted_lower = 0;
        } else if self.wanted_frames < self.target_delay_frames {
            // Shrink only after the estimate has stayed low for the whole hold time.
            if self.ticks_wanted_lower < SHRINK_HOLD_TICKS {
                self.ticks_wanted_lower += 1;
            }
        } else {
            self.ticks_wanted_lower = 0;
        }
        if self.wanted_frames < self.target_delay_frames
            && self.ticks_wanted_lower >= SHRINK_HOLD_TICKS
            && self.ticks_since_target_change >= SHRINK_HOLD_TICKS
        {
            self.ticks_wanted_lower = 0;
            self.target_delay_frames -= 1;
            self.ticks_since_target_change = 0;
        }
        let level = self.level?;
        if !matches!(self.state, State::Playing { .. }) {
            return None;
        }
        let timed = self.last_pop.is_some();
        self.ticks_since_stretch = self.ticks_since_stretch.saturating_add(1);
        self.ticks_playing = self.ticks_playing.saturating_add(1);
        // Untimed, the level counts whole frames against a whole-frame target: stretch below
        // three quarters of a frame under it, skip half a frame above. Timed, it is exact:
        // stretch just under the target, skip when a whole frame could go.
        let (target, stretch_below, skip_above) = if timed {
            (self.timed_target(), PHASE_KEEP, 1.0 + PHASE_ADVANCE_ABOVE)
        } else {
            (f64::from(self.target_delay_frames), 0.75, 0.5)
        };
        if timed && self.ticks_playing.is_multiple_of(TARGET_SAMPLE_TICKS) {
            self.targets_before = [Some(target), self.targets_before[0]];
        }
        if level < target - stretch_below {
            // Too little buffered: play a concealment frame and keep `next` due.
            self.level = Some(level + 1.0);
            self.ticks_above = 0;
            if self.ticks_playing > SETTLING_TICKS {
                let grew = timed
                    && self
                        .targets_before
                        .iter()
                        .flatten()
                        .any(|before| target - before > stretch_below);
                self.ticks_since_stretch = if grew {
                    ADVANCE_AFTER_STRETCH_TICKS - ADVANCE_AFTER_GROWTH_TICKS
                } else {
                    0
                };
            }
            self.stats.concealed += 1;
            self.stats.stretched += 1;
            self.stretched = true;
            return Some(Playout::Missing);
        }
        if level > target + skip_above {
            self.ticks_above += 1;
        } else {
            self.ticks_above = 0;
        }
        if timed
            && level > target + PHASE_ADVANCE_ABOVE
            && level <= target + skip_above
            && self.ticks_since_stretch >= ADVANCE_AFTER_STRETCH_TICKS
        {
            self.ticks_phase_above += 1;
        } else {
            self.ticks_phase_above = 0;
        }
        if self.ticks_phase_above >= ABOVE_TICKS_BEFORE_SKIP {
            // Part of a frame too early: pop earlier by it, keeping a little above the target.
            // Less than a frame at a time: whole frames are skips.
            let frames = (level - target - PHASE_LAND).min(1.0 - PHASE_LAND);
            self.phase_advance = Some((frames * f64::from(self.frame_duration)) as u32);
            self.level = Some(level - frames);
            self.ticks_phase_above = 0;
        }
        if self.ticks_above >= ABOVE_TICKS_BEFORE_SKIP
            && self.ticks_since_skip >= TICKS_BETWEEN_SKIPS
        {
            // Too much buffered for a while: skip the frame due now (a lost one costs nothing).
            if self.packets.remove(&next).is_some() {
                self.stats.dropped += 1;
            }
            self.stats.shrunk += 1;
            self.state = State::Playing {
                next: next + u64::from(self.frame_duration),
            };
            self.level = Some(level - 1.0);
            self.ticks_above = 0;
            self.ticks_since_skip = 0;
        }
        None
    }

    /// With far more buffered than the target (a burst after a stall), skips ahead so that
    /// latency returns to the target.
    fn trim_excess(&mut self, next: u64) -> u64 {
        let limit = self.target_delay_frames as usize + EXCESS_FRAMES_BEFORE_TRIM;
        if self.packets.len() <= limit {
            return next;
        }
        let keep = self.target_delay_frames as usize + 1;
        while self.packets.len() > keep {
            self.packets.pop_first();
            self.stats.dropped += 1;
        }
        let resumed = self
            .packets
            .keys()
            .next()
            .copied()
            .map_or(next, |oldest| oldest.max(next));
        if let Some(level) = self.level.as_mut() {
            *level -= ((resumed - next) / u64::from(self.frame_duration)) as f64;
        }
        resumed
    }

    /// The payload the next [`Self::pop_frame`] would return, if it is here: after a
    /// [`Playout::Missing`], Opus can rebuild the lost frame from it (in-band FEC).
    pub fn peek_next(&self) -> Option<&[u8]> {
        if self.stretched {
            // The frame before `next` was played already: plain concealment, not FEC.
            return None;
        }
        match self.state {
            State::Playing { next } => self.packets.get(&next).map(Vec::as_slice),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u32 = 160;

    fn payload(index: u32) -> Vec<u8> {
        index.to_be_bytes().to_vec()
    }

    fn frame_index(playout: &Playout) -> Option<u32> {
        match playout {
            Playout::Frame(bytes) => Some(u32::from_be_bytes(bytes.as_slice().try_into().ok()?)),
            _ => None,
        }
    }

    /// Runs a schedule of (tick, packet index) arrivals; packet i has timestamp base + i*FRAME.
    /// Returns what each tick played: Some(index), None for Missing; Buffering ticks omitted.
    fn run(
        buffer: &mut JitterBuffer,
        base: u32,
        arrivals: &[(u32, u32)],
        ticks: u32,
    ) -> Vec<Option<u32>> {
        let mut played = Vec::new();
        for tick in 0..ticks {
            for &(_, index) in arrivals.iter().filter(|(at, _)| *at == tick) {
                buffer.insert(base.wrapping_add(index * FRAME), &payload(index));
            }
            match buffer.pop_frame() {
                Playout::Buffering => {}
                Playout::Missing => played.push(None),
                frame => played.push(frame_index(&frame)),
            }
        }
        played
    }

    #[test]
    fn in_order_stream_plays_after_the_target_delay() {
        let mut buffer = JitterBuffer::new(FRAME, 2);
        let arrivals: Vec<_> = (0..6).map(|i| (i, i)).collect();
        let mut played = Vec::new();
        let mut buffering_ticks = 0;
        for tick in 0..8 {
            if let Some(&(_, index)) = arrivals.get(tick as usize) {
                buffer.insert(1000 + index * FRAME, &payload(index));
            }
            match buffer.pop_frame() {
                Playout::Buffering => buffering_ticks += 1,
                other => played.push(frame_index(&other)),
            }
        }
        assert_eq!(buffering_ticks, 2);
        assert_eq!(
            played,
            vec![Some(0), Some(1), Some(2), Some(3), Some(4), Some(5)]
        );
    }

    #[test]
    fn reordered_packets_within_the_delay_play_in_order() {
        let mut buffer = JitterBuffer::new(FRAME, 2);
        // Packet 2 arrives before 1; packet 4 two ticks late (still in time).
        let arrivals = [(0, 0), (1, 2), (1, 1), (2, 3), (4, 5), (4, 4), (5, 6)];
        let played = run(&mut buffer, 0, &arrivals, 9);
        assert_eq!(
            played,
            vec![
                Some(0),
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(6)
            ]
        );
        assert_eq!(buffer.stats().late, 0);
    }

    #[test]
    fn lost_and_late_packets_become_missing_frames() {
        let mut buffer = JitterBuffer::new(FRAME, 2);
        // Packet 2 never comes; packet 3 arrives after its frame was due.
        let arrivals = [(0, 0), (1, 1), (3, 4), (7, 3), (4, 5), (5, 6)];
        let played = run(&mut buffer, 0, &arrivals, 9);
        assert_eq!(
            played,
            vec![Some(0), Some(1), None, None, Some(4), Some(5), Some(6)]
        );
        let stats = buffer.stats();
        assert_eq!((stats.late, stats.concealed, stats.played), (1, 2, 5));
    }

    #[test]
    fn duplicates_are_dropped() {
        let mut buffer = JitterBuffer::new(FRAME, 1);
        assert_eq!(buffer.insert(0, &[1]), InsertOutcome::Queued);
        assert_eq!(buffer.insert(0, &[1]), InsertOutcome::Duplicate);
        assert_eq!(buffer.pop_frame(), Playout::Buffering);
        assert_eq!(buffer.pop_frame(), Playout::Frame(vec![1]));
        // The same packet again after it was played is late, not played twice.
        assert_eq!(buffer.insert(0, &[1]), InsertOutcome::Late);
        assert_eq!(buffer.stats().duplicates, 1);
    }

    #[test]
    fn timestamps_wrap_at_2_pow_32() {
        let mut buffer = JitterBuffer::new(FRAME, 2);
        let base = u32::MAX - 2 * FRAME + 1;
        let arrivals: Vec<_> = (0..6).map(|i| (i, i)).collect();
        let played = run(&mut buffer, base, &arrivals, 8);
        assert_eq!(played, (0..6).map(Some).collect::<Vec<_>>());
    }

    #[test]
    fn a_timestamp_jump_restarts_playout() {
        let mut buffer = JitterBuffer::new(FRAME, 2);
        for index in 0..3 {
            buffer.insert(index * FRAME, &payload(index));
        }
        for _ in 0..4 {
            buffer.pop_frame();
        }
        // The sender restarts 10 s later in timestamp terms.
        let jumped = 80_000;
        assert_eq!(
            buffer.insert(jumped, &payload(100)),
            InsertOutcome::Resynchronized
        );
        buffer.insert(jumped + FRAME, &payload(101));
        let mut played = Vec::new();
        for _ in 0..4 {
            played.push(buffer.pop_frame());
        }
        assert_eq!(played.first(), Some(&Playout::Buffering));
        assert_eq!(played.get(2).and_then(frame_index), Some(100));
        assert_eq!(played.get(3).and_then(frame_index), Some(101));
        // And a jump backwards likewise.
        assert_eq!(buffer.insert(5, &payload(7)), InsertOutcome::Resynchronized);
        assert_eq!(buffer.stats().resyncs, 2);
    }

    #[test]
    fn repeated_late_packets_resynchronize() {
        let mut buffer = JitterBuffer::new(FRAME, 1);
        buffer.insert(100 * FRAME, &payload(100));
        buffer.pop_frame();
        buffer.pop_frame();
        // The sender's clock stepped back 10 frames (within the jump limit).
        let outcomes: Vec<_> = (90..95)
            .map(|i| buffer.insert(i * FRAME, &payload(i)))
            .collect();
        assert_eq!(outcomes.last(), Some(&InsertOutcome::Resynchronized));
        assert!(outcomes.iter().take(4).all(|o| *o == InsertOutcome::Late));
        buffer.pop_frame();
        assert_eq!(frame_index(&buffer.pop_frame()), Some(94));
    }

    #[test]
    fn a_burst_after_a_stall_is_trimmed_back_to_the_target() {
        let mut buffer = JitterBuffer::new(FRAME, 2);
        buffer.insert(0, &payload(0));
        buffer.pop_frame();
        buffer.pop_frame();
        assert_eq!(frame_index(&buffer.pop_frame()), Some(0));
        // Nothing for 3 ticks, then 20 frames at once.
        for _ in 0..3 {
            assert_eq!(buffer.pop_frame(), Playout::Missing);
        }
        for index in 1..=20 {
            buffer.insert(index * FRAME, &payload(index));
        }
        let next = frame_index(&buffer.pop_frame());
        assert_eq!(next, Some(18), "kept the newest target+1 frames");
        assert_eq!(buffer.len(), 2);
    }

    #[test]
    fn peek_next_offers_the_following_packet_for_fec() {
        let mut buffer = JitterBuffer::new(FRAME, 1);
        buffer.insert(0, &payload(0));
        buffer.insert(2 * FRAME, &payload(2));
        buffer.pop_frame();
        assert_eq!(frame_index(&buffer.pop_frame()), Some(0));
        assert_eq!(buffer.pop_frame(), Playout::Missing);
        assert_eq!(buffer.peek_next(), Some(&payload(2)[..]));
    }

    #[test]
    fn a_stall_burst_is_late_without_resynchronizing_but_a_clock_step_resyncs() {
        // Adaptive mode: 1 packet per tick, arrival = timestamp (no jitter) at first.
        let mut buffer = JitterBuffer::new(FRAME, 1);
        let mut index = 0u32;
        for _ in 0..20 {
            buffer.insert_at(index * FRAME, &payload(index), index * FRAME);
            buffer.pop_frame();
            index += 1;
        }
        // The link stalls for 8 ticks; then the 8 packets arrive at once, mostly late.
        for _ in 0..8 {
            buffer.pop_frame();
        }
        let released = index * FRAME + 8 * FRAME;
        let outcomes: Vec<_> = (index..index + 8)
            .map(|i| buffer.insert_at(i * FRAME, &payload(i), released))
            .collect();
        assert!(
            outcomes
                .iter()
                .filter(|o| **o == InsertOutcome::Late)
                .count()
                >= 5
        );
        assert_eq!(buffer.stats().resyncs, 0, "a burst is not a clock step");
        // The sender's clock steps back 10 frames and packets keep coming one per tick: a
        // run of late packets spread over time does resynchronize.
        let mut outcome = InsertOutcome::Queued;
        for k in 0..8 {
            buffer.pop_frame();
            let i = index + 8 + k - 10;
            outcome = buffer.insert_at(i * FRAME, &payload(i), released + k * FRAME);
            if outcome == InsertOutcome::Resynchronized {
                break;
            }
        }
        assert_eq!(outcome, InsertOutcome::Resynchronized);
    }

    /// Packets on a clean path arrive 2 ms after each grid pop; pops move to just after them.
    /// Returns, per pop, the time (clock units) the packet it played had waited.
    fn timed_waits(arrival_phase: u32, pops: u32) -> (Vec<u32>, u32) {
        let mut buffer = JitterBuffer::new(FRAME, 3);
        let mut arrived = std::collections::BTreeMap::new();
        let mut pop_at: u32 = FRAME;
        let mut waits = Vec::new();
        let mut advanced = 0;
        let mut index = 0u32;
        for _ in 0..pops {
            // Packets sent every 20 ms reach us `arrival_phase` after each grid point.
            while index * FRAME + arrival_phase <= pop_at {
                let at = index * FRAME + arrival_phase;
                buffer.insert_at(index * FRAME, &payload(index), at);
                arrived.insert(index, at);
                index += 1;
            }
            if let Some(played) = frame_index(&buffer.pop_frame_at(pop_at)) {
                waits.push(pop_at - arrived[&played]);
            }
            let advance = buffer.take_phase_advance().unwrap_or(0);
            advanced += advance;
            pop_at += FRAME - advance;
        }
        (waits, advanced)
    }

    #[test]
    fn a_frame_added_for_a_burst_of_jitter_is_given_back_within_seconds() {
        // 2 ms after the grid for 15 s, then 1 s of packets alternately 6 ms late, then
        // steady again: the target rises, the buffer stretches by a frame, and once the burst
        // has left the jitter window that frame is delay to give back. A slow sender's
        // stretch holds advances 15 s; this one must not.
        let burst = 750..800u32;
        let arrival = |i: u32| {
            i * FRAME
                + 16
                + if burst.contains(&i) && i.is_multiple_of(2) {
                    48
                } else {
                    0
                }
        };
        let mut buffer = JitterBuffer::new(FRAME, 3);
        let mut arrived = std::collections::BTreeMap::new();
        let mut pop_at: u32 = FRAME;
        let mut waits = Vec::new();
        let mut index = 0u32;
        let mut stretched_before_burst = 0;
        for pop in 0..2000u32 {
            while arrival(index) <= pop_at {
                buffer.insert_at(index * FRAME, &payload(index), arrival(index));
                arrived.insert(index, arrival(index));
                index += 1;
            }
            if pop == burst.start {
                stretched_before_burst = buffer.stats().stretched;
            }
            let played = frame_index(&buffer.pop_frame_at(pop_at));
            waits.push(played.map(|p| pop_at - arrived[&p]));
            pop_at += FRAME - buffer.take_phase_advance().unwrap_or(0);
        }
        assert!(
            buffer.stats().stretched > stretched_before_burst,
            "the burst made the buffer grow"
        );
        // 9-12 s after the burst: back to the guard plus the landing margin.
        let after: Vec<u32> = waits[burst.end as usize + 450..burst.end as usize + 600]
            .iter()
            .flatten()
            .copied()
            .collect();
        let most = after.iter().copied().max().unwrap_or(u32::MAX);
        assert!(
            most <= (PHASE_GUARD_MS + 4) * 8,
            "9-12 s after the burst packets still wait up to {most} units (1/8 ms)"
        );
    }

    #[test]
    fn timed_pops_follow_the_packets_phase() {
        // 160 units = 20 ms: 8 units a millisecond.
        for phase_ms in [2, 10, 19] {
            let (waits, advanced) = timed_waits(phase_ms * 8, 500);
            let last = &waits[waits.len() - 100..];
            let guard = PHASE_GUARD_MS * 8;
            assert!(
                last.iter().all(|&w| w >= guard && w <= guard + 3 * 8),
                "arrival {phase_ms} ms after the grid: waits {last:?} (units of 1/8 ms), advanced {advanced}"
            );
        }
        // Untimed, the same packets wait for the grid: at least a frame minus the phase.
        let mut buffer = JitterBuffer::new(FRAME, 3);
        let mut waits = Vec::new();
        for i in 0..500u32 {
            buffer.insert_at(i * FRAME, &payload(i), i * FRAME + 16);
            if let Some(played) = frame_index(&buffer.pop_frame()) {
                waits.push((i + 1) * FRAME - (played * FRAME + 16));
            }
        }
        assert!(
            waits[400..].iter().all(|&w| w >= FRAME - 16),
            "{:?}",
            &waits[400..]
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut buffer = JitterBuffer::new(FRAME, 2);
        for index in 0..(MAX_PACKETS as u32 + 30).min(RESYNC_FRAMES as u32) {
            buffer.insert(index * FRAME, &payload(index));
        }
        for index in 0..200u32 {
            // Spread over the resync window so they are all plausible.
            buffer.insert((index % 50) * FRAME + 1, &payload(index));
        }
        assert!(buffer.len() <= MAX_PACKETS);
    }
}
