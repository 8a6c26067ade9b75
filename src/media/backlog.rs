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
    /// Backlog to keep, in samples: what absorbs the callbacks' and ticks' jitter.
    target: usize,
    /// Readings per window.
    window: u32,
    seen: u32,
    minimum: usize,
}

impl BacklogTrim {
    /// `target` samples are kept; the excess over it that lasted a whole window of `window`
    /// readings is dropped.
    pub fn new(target: usize, window: u32) -> Self {
        Self {
            target,
            window: window.max(1),
            seen: 0,
            minimum: usize::MAX,
        }
    }

    pub fn target(&self) -> usize {
        self.target
    }

    /// One reading of the backlog (samples queued, before this tick's read or write). Returns
    /// the samples to drop now, at the end of a window whose every reading exceeded the target.
    pub fn observe(&mut self, backlog: usize) -> usize {
        self.minimum = self.minimum.min(backlog);
        self.seen += 1;
        if self.seen < self.window {
            return 0;
        }
        let excess = self.minimum.saturating_sub(self.target);
        self.seen = 0;
        self.minimum = usize::MAX;
        excess
    }

    /// The device ran dry (an underrun): the slack was too small for this machine's
    /// scheduling. Keeps `step` more, up to `max`, for the rest of the stream, as a jitter
    /// buffer grows after a late packet; each underrun is a gap and a change of the echo
    /// path, worse than a few milliseconds of delay.
    pub fn widen(&mut self, step: usize, max: usize) {
        self.target = (self.target + step).min(max.max(self.target));
        self.reset();
    }

    /// Keeps at least `target`: the device delivers or takes audio in chunks of this size
    /// (its period, which the backend may choose larger than asked), and a slack below one
    /// chunk would cut what the next chunk needs.
    pub fn at_least(&mut self, target: usize) {
        self.target = self.target.max(target);
    }

    /// The ring was emptied or restarted: start a new window.
    pub fn reset(&mut self) {
        self.seen = 0;
        self.minimum = usize::MAX;
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
    fn the_slack_is_never_below_the_device_period() {
        let mut trim = BacklogTrim::new(240, 50);
        trim.at_least(960);
        trim.at_least(480);
        assert_eq!(trim.target(), 960);
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
