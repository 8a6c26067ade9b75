//! Call quality as a MOS estimate from a simplified ITU-T G.107 E-model.
//!
//! R = 93.2 - Id - Ie_eff, with the other impairments of G.107 at their defaults (folded into
//! 93.2). Id, the delay impairment, uses the well-known two-segment fit of G.107's curve
//! (Cole & Rosenbluth): 0.024 d, plus 0.11 (d - 177.3) beyond the 177.3 ms knee. Ie_eff, the
//! equipment impairment under random packet loss, is G.107's
//! Ie + (95 - Ie) * Ppl / (Ppl + Bpl), with Ie and Bpl from G.113 Appendix I.
//! R maps to MOS with G.107's cubic. Everything is on G.107's narrowband scale.

use super::codec::CodecKind;

/// Default R with no impairment but delay and codec/loss (G.107 defaults).
const R_DEFAULT: f32 = 93.2;
/// G.107's delay knee: interactivity drops much faster past this one-way delay.
const DELAY_KNEE_MS: f32 = 177.3;
/// The jitter buffer is assumed to hold twice the mean jitter, and that time adds to the
/// mouth-to-ear delay (a common sizing; our adaptive buffer tracks the same order).
const JITTER_BUFFER_FACTOR: f32 = 2.0;
/// Inputs above these are treated as these: they already give the worst score.
const MAX_DELAY_MS: f32 = 10_000.0;

/// Equipment impairment of a codec (G.113 Appendix I terms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor with no loss.
    pub ie: f32,
    /// Packet-loss robustness factor: higher means loss hurts less.
    pub bpl: f32,
}

impl CodecImpairment {
    /// G.711 with no concealment (G.113 Appendix I: Ie 0, Bpl 4.3).
    pub const G711_WITHOUT_PLC: Self = Self { ie: 0.0, bpl: 4.3 };
    /// G.711 with packet loss concealment (G.113 Appendix I: Ie 0, Bpl 25.1).
    pub const G711_WITH_PLC: Self = Self { ie: 0.0, bpl: 25.1 };
    /// Opus in narrowband terms. G.113 gives no values for Opus; Ie 11 and Bpl 20 are our
    /// estimates (a modern codec with built-in concealment at VoIP bit rates), not a standard.
    pub const OPUS_ESTIMATE: Self = Self {
        ie: 11.0,
        bpl: 20.0,
    };
}

impl From<CodecKind> for CodecImpairment {
    /// Our G.711 decoder conceals lost frames by repeating the last one, so it counts as
    /// "with PLC"; Opus uses its own concealment.
    fn from(codec: CodecKind) -> Self {
        match codec {
            CodecKind::Pcmu | CodecKind::Pcma => Self::G711_WITH_PLC,
            // The narrowband E-model has no wideband entry; G.722 at 64 kbit/s codes at least
            // as well as G.711, and conceals losses the same simple way here.
            CodecKind::G722 => Self::G711_WITH_PLC,
            CodecKind::Opus => Self::OPUS_ESTIMATE,
        }
    }
}

/// G.107 transmission rating R for the call (0..=100 in practice; may fall below 0).
pub fn r_factor(
    codec: impl Into<CodecImpairment>,
    one_way_delay_ms: f32,
    loss_pct: f32,
    jitter_ms: f32,
) -> f32 {
    let codec = codec.into();
    let delay = non_negative(one_way_delay_ms, MAX_DELAY_MS)
        + JITTER_BUFFER_FACTOR * non_negative(jitter_ms, MAX_DELAY_MS);
    let delay_impairment = 0.024 * delay + 0.11 * (delay - DELAY_KNEE_MS).max(0.0);
    let loss = non_negative(loss_pct, 100.0);
    let ie = non_negative(codec.ie, 95.0);
    // A Bpl of zero would divide zero by zero at zero loss; no real codec has one.
    let bpl = non_negative(codec.bpl, f32::MAX).max(0.1);
    let effective_equipment_impairment = ie + (95.0 - ie) * loss / (loss + bpl);
    R_DEFAULT - delay_impairment - effective_equipment_impairment
}

/// G.107's R to MOS mapping, clamped to 1..=4.5.
pub fn mos_from_r(r: f32) -> f32 {
    if r.is_nan() || r <= 0.0 {
        return 1.0;
    }
    if r >= 100.0 {
        return 4.5;
    }
    (1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r)).clamp(1.0, 4.5)
}

/// Estimated MOS (1 = bad .. 4.5 = best narrowband) for a call with this codec, one-way
/// network delay, packet loss in percent and interarrival jitter. NaN and negative inputs
/// count as zero, huge ones as the worst.
pub fn mos(
    codec: impl Into<CodecImpairment>,
    one_way_delay_ms: f32,
    loss_pct: f32,
    jitter_ms: f32,
) -> f32 {
    mos_from_r(r_factor(codec, one_way_delay_ms, loss_pct, jitter_ms))
}

/// The MOS a call reports: the score of the audio received since the last report, with that
/// interval's loss; `None` when none arrived. The E-model scores the audio that arrives: with
/// none, loss and jitter stay where they were (no gaps in sequence numbers, no late packets)
/// and it would score silence as excellent (`received 0` next to MOS 4.4), and a call's
/// cumulative loss would hide a bad minute late in a long call. No audio is no score.
pub fn interval_mos(
    received_since_last_report: u64,
    lost_since_last_report: u64,
    codec: impl Into<CodecImpairment>,
    one_way_delay_ms: f32,
    jitter_ms: f32,
) -> Option<f32> {
    if received_since_last_report == 0 {
        return None;
    }
    let expected = received_since_last_report.saturating_add(lost_since_last_report);
    let loss_pct = 100.0 * lost_since_last_report as f32 / expected as f32;
    Some(mos(codec, one_way_delay_ms, loss_pct, jitter_ms))
}

fn non_negative(value: f32, max: f32) -> f32 {
    if value.is_nan() {
        0.0
    } else {
        value.clamp(0.0, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_g711_call_scores_about_4_4() {
        // R = 93.2 - 0.024 * 20 = 92.72; MOS = 1 + 3.2452 + 7e-6 * 92.72 * 32.72 * 7.28 = 4.3998.
        let score = mos(CodecImpairment::G711_WITH_PLC, 20.0, 0.0, 0.0);
        assert!((score - 4.40).abs() < 0.005, "{score}");
        assert_eq!(score, mos(CodecKind::Pcmu, 20.0, 0.0, 0.0));
    }

    #[test]
    fn loss_hurts_less_with_concealment() {
        let clean = mos(CodecImpairment::G711_WITH_PLC, 20.0, 0.0, 0.0);
        let with_plc = mos(CodecImpairment::G711_WITH_PLC, 20.0, 5.0, 0.0);
        let without_plc = mos(CodecImpairment::G711_WITHOUT_PLC, 20.0, 5.0, 0.0);
        assert!(with_plc < clean - 0.3, "{with_plc} vs {clean}");
        assert!(without_plc < with_plc - 0.5, "{without_plc} vs {with_plc}");
        // R = 93.2 - 0.48 - 95 * 5 / 30.1 = 76.94 -> MOS 3.90.
        assert!((with_plc - 3.90).abs() < 0.01, "{with_plc}");
    }

    #[test]
    fn score_falls_monotonically_with_loss_delay_and_jitter() {
        for codec in [
            CodecImpairment::G711_WITH_PLC,
            CodecImpairment::G711_WITHOUT_PLC,
            CodecImpairment::OPUS_ESTIMATE,
        ] {
            let by_loss: Vec<f32> = (0..=40)
                .map(|loss| mos(codec, 40.0, loss as f32, 5.0))
                .collect();
            assert!(
                by_loss.windows(2).all(|pair| pair[1] <= pair[0]),
                "{by_loss:?}"
            );
            assert!(by_loss[0] > by_loss[40]);
            let by_delay: Vec<f32> = (0..=80)
                .map(|step| mos(codec, step as f32 * 10.0, 1.0, 0.0))
                .collect();
            assert!(
                by_delay.windows(2).all(|pair| pair[1] <= pair[0]),
                "{by_delay:?}"
            );
            assert!(by_delay[0] > by_delay[80]);
            assert!(mos(codec, 40.0, 1.0, 30.0) < mos(codec, 40.0, 1.0, 0.0));
        }
    }

    #[test]
    fn delay_past_the_knee_costs_much_more() {
        let before = r_factor(CodecImpairment::G711_WITH_PLC, 150.0, 0.0, 0.0)
            - r_factor(CodecImpairment::G711_WITH_PLC, 170.0, 0.0, 0.0);
        let after = r_factor(CodecImpairment::G711_WITH_PLC, 200.0, 0.0, 0.0)
            - r_factor(CodecImpairment::G711_WITH_PLC, 220.0, 0.0, 0.0);
        assert!((before - 0.48).abs() < 1e-3, "{before}");
        assert!((after - 2.68).abs() < 1e-3, "{after}");
    }

    #[test]
    fn scores_stay_in_range_for_any_input() {
        let odd = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -5.0, 0.0, 1e9];
        for &delay in &odd {
            for &loss in &odd {
                for &jitter in &odd {
                    let score = mos(CodecKind::Opus, delay, loss, jitter);
                    assert!(
                        (1.0..=4.5).contains(&score),
                        "{delay} {loss} {jitter}: {score}"
                    );
                }
            }
        }
        assert_eq!(mos(CodecKind::Pcma, 5000.0, 100.0, 500.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert_eq!(mos_from_r(-3.0), 1.0);
    }

    #[test]
    fn silence_gets_no_score_and_the_score_is_of_the_last_interval() {
        // Nothing arrived, even with nothing counted lost (no sequence gaps): no score.
        assert_eq!(interval_mos(0, 0, CodecKind::Pcmu, 20.0, 0.0), None);
        assert_eq!(
            interval_mos(100, 0, CodecKind::Pcmu, 20.0, 0.0),
            Some(mos(CodecKind::Pcmu, 20.0, 0.0, 0.0))
        );
        // 95 of 100 arrived in this interval: 5 % loss, whatever the call did before.
        assert_eq!(
            interval_mos(95, 5, CodecKind::Pcmu, 20.0, 0.0),
            Some(mos(CodecKind::Pcmu, 20.0, 5.0, 0.0))
        );
    }

    #[test]
    fn opus_estimate_starts_lower_but_degrades_slower_than_bare_g711() {
        let opus_clean = mos(CodecKind::Opus, 20.0, 0.0, 0.0);
        assert!(opus_clean < mos(CodecKind::Pcmu, 20.0, 0.0, 0.0));
        assert!(
            mos(CodecKind::Opus, 20.0, 10.0, 0.0)
                > mos(CodecImpairment::G711_WITHOUT_PLC, 20.0, 10.0, 0.0)
        );
    }
}
