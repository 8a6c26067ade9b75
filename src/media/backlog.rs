//! Keeps a sound device ring's backlog (its latency) near a target without dropping audio on
//! every tick: the smallest backlog seen over a window is what the ring holds for sure, so
//! only that excess is cut, once per window.
//!
//! Why a window minimum: the media tick and the device callbacks run on different schedules,
//! so the backlog a tick sees swings by up to a callback period (and more when a thread is
//! late on a loaded machine). Trimming on one reading would cut audio on every swing; a
//! fixed high threshold (the old 120 ms) let one stall add 20 ms or more for the rest of the
//! call. The minimum over a second is the delay that is there for good: a stall, a device
//! clock faster than ours, a late start. Pure: readings in, samples to drop out.

/// Observes the backlog once per tick and says how many samples to drop.
#[derive(Debug, Clone)]
pub struct BacklogTrim {
    /// Backlog to keep, in samples: what absorbs the ticks' jitter (widened by underruns).
    slack: usize,
    /// Backlog the device's chunks need (its recent period): kept even above the slack.
    floor: usize,
    /// Readings per window.
    window: u32,
    seen: u32,
    minimum: usize,
    /// With padding on: how far below the target the whole window may stay before the
    /// shortfall is padded back.
    pad_tolerance: Option<usize>,
    /// Samples to add, not yet taken by [`BacklogTrim::take_deficit`].
    deficit: usize,
}

impl BacklogTrim {
    /// `target` samples are kept; the excess over it that lasted a whole window of `window`
    /// readings is dropped.
    pub fn new(target: usize, window: u32) -> Self {
        Self {
            slack: target,
            floor: 0,
            window: window.max(1),
            seen: 0,
            minimum: usize::MAX,
            pad_tolerance: None,
            deficit: 0,
        }
    }

    /// Also pads a lasting shortfall (playback): a device whose clock runs faster than ours
    /// drains the ring a little every second, down to an underrun; every window whose every
    /// reading stayed more than `tolerance` below the target owes the shortfall back.
    pub fn with_padding(mut self, tolerance: usize) -> Self {
        self.pad_tolerance = Some(tolerance);
        self
    }

    pub fn target(&self) -> usize {
        self.slack.max(self.floor)
    }

    /// One reading of the backlog (samples queued, before this tick's read or write). Returns
    /// the samples to drop now, at the end of a window whose every reading exceeded the target.
    pub fn observe(&mut self, backlog: usize) -> usize {
        self.minimum = self.minimum.min(backlog);
        self.seen += 1;
        if self.seen < self.window {
            return 0;
        }
        let target = self.target();
        let excess = self.minimum.saturating_sub(target);
        if let Some(tolerance) = self.pad_tolerance
            && self.minimum.saturating_add(tolerance) < target
        {
            self.deficit = target - self.minimum;
        }
        self.seen = 0;
        self.minimum = usize::MAX;
        excess
    }

    /// The device ran dry (an underrun): the slack was too small for this machine's
    /// scheduling. Keeps `step` more, up to `max`, for the rest of the stream, as a jitter
    /// buffer grows after a late packet; each underrun is a gap and a change of the echo
    /// path, worse than a few milliseconds of delay.
    pub fn widen(&mut self, step: usize, max: usize) {
        self.slack = (self.slack + step).min(max.max(self.slack));
        self.reset();
    }

    /// Keeps at least `floor` whatever the slack: the device delivers or takes audio in
    /// chunks of its period (which the backend may choose larger than asked), and a backlog
    /// below one chunk would cut what the next chunk needs. Follows the recent period
    /// ([`RecentMax`]): one large chunk when a stream starts does not hold latency up for
    /// the rest of the call.
    pub fn keep_at_least(&mut self, floor: usize) {
        self.floor = floor;
    }

    /// Samples to add now, at most `max` (the rest stays owed).
    pub fn take_deficit(&mut self, max: usize) -> usize {
        let now = self.deficit.min(max);
        self.deficit -= now;
        now
    }

    /// The ring was emptied or restarted: start a new window.
    pub fn reset(&mut self) {
        self.deficit = 0;
        self.seen = 0;
        self.minimum = usize::MAX;
    }
}

/// The largest of values seen over the last one to two windows of readings: a device's
/// recent period, from the largest callback between ticks.
#[derive(Debug, Clone)]
pub struct RecentMax {
    window: u32,
    seen: u32,
    current: usize,
    previous: usize,
}

impl RecentMax {
    pub fn new(window: u32) -> Self {
        Self {
            window: window.max(1),
            seen: 0,
            current: 0,
            previous: 0,
        }
    }

    /// One reading (0: nothing happened since the last); returns the recent maximum.
    pub fn observe(&mut self, value: usize) -> usize {
        self.current = self.current.max(value);
        self.seen += 1;
        let recent = self.current.max(self.previous);
        if self.seen >= self.window {
            self.previous = self.current;
            self.current = 0;
            self.seen = 0;
        }
        recent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10 ms callbacks against a 20 ms tick: the backlog a tick sees alternates between two
    /// values a callback apart.
    #[test]
    fn a_swinging_backlog_at_the_target_is_never_cut() {
        let mut trim = BacklogTrim::new(480, 50);
        let dropped: usize = (0..500)
            .map(|i| trim.observe(if i % 2 == 0 { 480 } else { 960 }))
            .sum();
        assert_eq!(dropped, 0);
    }

    #[test]
    fn a_lasting_excess_is_cut_once_per_window_down_to_the_target() {
        let mut trim = BacklogTrim::new(480, 50);
        // A stall left 40 ms (1920 samples at 48 kHz) more in the ring than needed.
        let mut backlog = 480 + 1920;
        let mut drops = Vec::new();
        for tick in 0..200 {
            let swing = if tick % 2 == 0 { 0 } else { 480 };
            let drop = trim.observe(backlog + swing);
            if drop > 0 {
                drops.push((tick, drop));
                backlog -= drop;
            }
        }
        assert_eq!(
            drops,
            vec![(49, 1920)],
            "one cut, after one window, of the excess only"
        );
        assert_eq!(backlog, 480);
    }

    #[test]
    fn one_late_tick_is_not_an_excess() {
        let mut trim = BacklogTrim::new(480, 50);
        let dropped: usize = (0..500)
            .map(|i| trim.observe(if i == 120 { 480 + 2400 } else { 480 }))
            .sum();
        assert_eq!(dropped, 0);
    }

    #[test]
    fn underruns_widen_the_slack_up_to_a_bound() {
        let mut trim = BacklogTrim::new(480, 50);
        trim.widen(240, 1440);
        assert_eq!(trim.target(), 720);
        // A backlog of 720 is now the slack, not an excess.
        let dropped: usize = (0..100).map(|_| trim.observe(720)).sum();
        assert_eq!(dropped, 0);
        for _ in 0..10 {
            trim.widen(240, 1440);
        }
        assert_eq!(trim.target(), 1440);
    }

    #[test]
    fn the_backlog_kept_is_never_below_the_recent_device_period() {
        let mut trim = BacklogTrim::new(240, 50);
        trim.keep_at_least(960);
        assert_eq!(trim.target(), 960);
        assert_eq!(trim.observe(960), 0);
        // The period went back down: the slack rules again.
        trim.keep_at_least(120);
        assert_eq!(trim.target(), 240);
    }

    #[test]
    fn a_device_draining_faster_than_we_write_is_padded_back() {
        // The device takes 0.2 % more than we write: 96 samples a second at 48 kHz.
        let mut trim = BacklogTrim::new(480, 50).with_padding(120);
        let mut backlog = 480.0f64;
        let mut lowest = backlog;
        for _ in 0..50 * 120 {
            backlog -= 96.0 / 50.0;
            let cut = trim.observe(backlog.max(0.0) as usize);
            backlog -= cut as f64;
            backlog += trim.take_deficit(48) as f64;
            lowest = lowest.min(backlog);
        }
        assert!(lowest > 480.0 - 120.0 - 96.0 - 1.0, "ran down to {lowest}");
        // Without padding the same device runs dry within five seconds.
        let mut trim = BacklogTrim::new(480, 50);
        let mut backlog = 480.0f64;
        for _ in 0..50 * 5 {
            backlog -= 96.0 / 50.0;
            trim.observe(backlog.max(0.0) as usize);
        }
        assert!(backlog <= 0.0);
    }

    #[test]
    fn recent_max_forgets_a_large_value_after_two_windows() {
        let mut recent = RecentMax::new(50);
        // One 480-frame callback at the start, then 240-frame ones.
        let seen: Vec<usize> = (0..200)
            .map(|tick| recent.observe(if tick == 0 { 480 } else { 240 }))
            .collect();
        assert!(seen[..50].iter().all(|&p| p == 480), "{:?}", &seen[..50]);
        assert!(seen[100..].iter().all(|&p| p == 240), "{:?}", &seen[100..]);
        // Ticks with no callback in between do not lower it.
        let mut recent = RecentMax::new(50);
        let seen: Vec<usize> = (0..200)
            .map(|tick| recent.observe(if tick % 2 == 0 { 960 } else { 0 }))
            .collect();
        assert!(seen.iter().all(|&p| p == 960));
    }

    #[test]
    fn a_slow_drift_is_cut_in_small_steps() {
        // A device clock 0.1 % fast: 48 samples more per second (50 ticks).
        let mut trim = BacklogTrim::new(480, 50);
        let mut backlog = 480.0f64;
        let mut cuts = Vec::new();
        for _ in 0..50 * 60 {
            backlog += 48.0 / 50.0;
            let drop = trim.observe(backlog as usize);
            if drop > 0 {
                cuts.push(drop);
                backlog -= drop as f64;
            }
        }
        assert!(cuts.iter().all(|&c| c <= 48), "cuts {cuts:?}");
        assert!(
            backlog < 480.0 + 96.0,
            "backlog held near the target: {backlog}"
        );
    }
}
