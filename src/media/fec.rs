//! How much in-band FEC the Opus encoder spends, from the loss the peer reports in RTCP.
//!
//! libopus spends FEC bits only in proportion to the loss it is told to expect, and an expected
//! loss above zero also pulls it towards its SILK/hybrid modes, which cost two to three times
//! the CPU of CELT (measured: 30 s of a tone at 51 kbit/s, 0.43 s with FEC at 10 % against
//! 0.13 s without). A fixed guess spends that on every clean link; WebRTC instead feeds the
//! loss fraction from receiver reports to the encoder, and so does this. Pure: reports in,
//! the percentage to set out.

/// The most loss the encoder is told to expect: beyond this FEC cannot keep up anyway and the
/// bits are better spent on the primary frames.
pub const MAX_EXPECTED_LOSS_PERCENT: u8 = 25;

/// Tracks the peer's reported loss and says when the encoder's expectation should change.
#[derive(Debug, Default, Clone)]
pub struct FecPolicy {
    expected: u8,
}

impl FecPolicy {
    /// The expectation the encoder has now (it starts at zero: no loss seen yet).
    pub fn expected_loss_percent(&self) -> u8 {
        self.expected
    }

    /// A receiver report said `fraction_lost` (1/256 units, RFC 3550 §6.4.1) of our packets in
    /// its interval were lost. Returns the new expectation when it changed.
    ///
    /// Loss raises the expectation at once (the next frames carry FEC); a clean report halves
    /// it, so one burst keeps FEC on for a few report intervals rather than flapping.
    pub fn handle_report(&mut self, fraction_lost: u8) -> Option<u8> {
        let reported = (u32::from(fraction_lost) * 100).div_ceil(256);
        let reported = u8::try_from(reported)
            .unwrap_or(u8::MAX)
            .min(MAX_EXPECTED_LOSS_PERCENT);
        let next = if reported >= self.expected {
            reported
        } else {
            reported.max(self.expected / 2)
        };
        (next != self.expected).then(|| {
            self.expected = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_link_spends_nothing_on_fec() {
        let mut policy = FecPolicy::default();
        for _ in 0..10 {
            assert_eq!(policy.handle_report(0), None);
        }
        assert_eq!(policy.expected_loss_percent(), 0);
    }

    #[test]
    fn loss_turns_fec_on_at_once_at_the_reported_rate() {
        let mut policy = FecPolicy::default();
        // 26/256 = 10.2 %: rounded up, so a small loss is never told as none.
        assert_eq!(policy.handle_report(26), Some(11));
        // 1/256 rounds up to 1 %: the expectation halves, not more.
        assert_eq!(policy.handle_report(1), Some(5));
        assert_eq!(policy.handle_report(13), Some(6), "5.1 % rounds up to 6");
    }

    #[test]
    fn clean_reports_after_a_burst_halve_the_expectation_down_to_zero() {
        let mut policy = FecPolicy::default();
        policy.handle_report(51); // 20 %
        let mut seen = vec![policy.expected_loss_percent()];
        while let Some(next) = policy.handle_report(0) {
            seen.push(next);
        }
        assert_eq!(seen, vec![20, 10, 5, 2, 1, 0]);
    }

    #[test]
    fn heavy_loss_is_capped() {
        let mut policy = FecPolicy::default();
        assert_eq!(policy.handle_report(255), Some(MAX_EXPECTED_LOSS_PERCENT));
        assert_eq!(policy.handle_report(200), None);
    }
}
