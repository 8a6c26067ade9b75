//! Small quality charts for a call's line: MOS, loss, jitter and round trip over its last
//! `media` reports (one cell per report, every 2 s, newest on the right), in block characters.

use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

#[cfg(test)]
use crate::event::CallState;
use crate::ui::state::{CallView, QualityPoint};

/// Eight heights, lowest first.
const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
/// A report without the figure (no audio: no MOS; no RTCP yet: no round trip).
const NO_VALUE: char = '·';
/// Cells per chart at most (wide terminals).
const MAX_CELLS: usize = 30;

/// How one figure is drawn: its full-scale value and the colour thresholds.
struct Scale {
    label: &'static str,
    /// Values at or beyond `full` fill the cell.
    empty: f64,
    full: f64,
    /// Worse than `warn` is yellow, worse than `bad` red.
    warn: f64,
    bad: f64,
    value: fn(&QualityPoint) -> Option<f64>,
}

const SCALES: [Scale; 4] = [
    // MOS: higher is better; the bar is the score (1 .. 4.5).
    Scale {
        label: "MOS",
        empty: 1.0,
        full: 4.5,
        warn: 4.0,
        bad: 3.6,
        value: |p| p.mos,
    },
    Scale {
        label: "loss",
        empty: 0.0,
        full: 10.0,
        warn: 1.0,
        bad: 3.0,
        value: |p| Some(p.loss_pct),
    },
    Scale {
        label: "jit",
        empty: 0.0,
        full: 60.0,
        warn: 20.0,
        bad: 30.0,
        value: |p| Some(p.jitter_ms),
    },
    Scale {
        label: "rtt",
        empty: 0.0,
        full: 800.0,
        warn: 300.0,
        bad: 400.0,
        value: |p| p.rtt_ms,
    },
];

/// `  MOS ▇▇▇▆ loss ▁▁▃▁ jit ▁▂▁▁ rtt ▁▁▁▁`, sized to `width`.
pub fn chart_line(call: &CallView, width: usize) -> Line<'static> {
    let labels: usize = SCALES.iter().map(|s| s.label.len() + 2).sum();
    let cells = (width.saturating_sub(2 + labels) / SCALES.len()).clamp(1, MAX_CELLS);
    let dim = Style::new().fg(Color::DarkGray);
    let mut spans = vec![Span::raw(" ")];
    for scale in &SCALES {
        spans.push(Span::styled(format!(" {} ", scale.label), dim));
        spans.extend(chart(call, scale, cells));
    }
    Line::from(spans)
}

/// The last `cells` points of one figure; empty cells (no report yet) on the left.
fn chart(call: &CallView, scale: &Scale, cells: usize) -> Vec<Span<'static>> {
    let points = &call.quality.points;
    let skip = points.len().saturating_sub(cells);
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut push = |c: char, style: Style| match spans.last_mut() {
        Some(last) if last.style == style => last.content.to_mut().push(c),
        _ => spans.push(Span::styled(c.to_string(), style)),
    };
    for _ in points.len()..cells {
        push(' ', Style::new());
    }
    for point in points.iter().skip(skip) {
        match (scale.value)(point) {
            Some(value) => push(block(scale, value), Style::new().fg(colour(scale, value))),
            None => push(NO_VALUE, Style::new().fg(Color::DarkGray)),
        }
    }
    spans
}

fn block(scale: &Scale, value: f64) -> char {
    let fraction = ((value - scale.empty) / (scale.full - scale.empty)).clamp(0.0, 1.0);
    let index = (fraction * (BLOCKS.len() - 1) as f64).round() as usize;
    BLOCKS[index.min(BLOCKS.len() - 1)]
}

fn colour(scale: &Scale, value: f64) -> Color {
    // MOS gets worse downwards, the others upwards.
    let higher_is_better = scale.full > scale.empty && scale.warn > scale.bad;
    let (bad, warn) = if higher_is_better {
        (value < scale.bad, value < scale.warn)
    } else {
        (value >= scale.bad, value >= scale.warn)
    };
    if bad {
        Color::LightRed
    } else if warn {
        Color::Yellow
    } else {
        Color::Green
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &Line) -> String {
        line.spans.iter().map(|s| s.content.as_ref()).collect()
    }

    fn call_with(points: &[QualityPoint]) -> CallView {
        let mut quality = crate::ui::state::QualityHistory::default();
        for p in points {
            quality.push(*p);
        }
        CallView {
            id: 1,
            remote: String::new(),
            state: CallState::Confirmed,
            connected_at: None,
            codec: None,
            sent: 0,
            received: 0,
            lost: 0,
            jitter_ms: 0.0,
            rtt_ms: None,
            mos: None,
            encrypted: false,
            ice: None,
            keys_in_clear: false,
            foreign: 0,
            held: false,
            muted: false,
            incoming: false,
            mic_db: None,
            speaker_db: None,
            levels_at: None,
            quality,
            processing: None,
            recording: None,
        }
    }

    #[test]
    fn each_report_is_a_cell_silence_has_no_score_and_bad_values_are_tall() {
        let good = QualityPoint {
            mos: Some(4.4),
            loss_pct: 0.0,
            jitter_ms: 1.0,
            rtt_ms: Some(20.0),
        };
        let silent = QualityPoint {
            mos: None,
            rtt_ms: None,
            ..good
        };
        let lossy = QualityPoint {
            mos: Some(3.0),
            loss_pct: 10.0,
            jitter_ms: 60.0,
            rtt_ms: Some(800.0),
        };
        let line = chart_line(&call_with(&[good, silent, lossy]), 38);
        assert_eq!(text(&line), "  MOS █·▅ loss ▁▁█ jit ▁▁█ rtt ▁·█");
        // The lossy cell is red, the good one green.
        let red: Vec<&str> = line
            .spans
            .iter()
            .filter(|s| s.style.fg == Some(Color::LightRed))
            .map(|s| s.content.as_ref())
            .collect();
        assert_eq!(red, vec!["▅", "█", "█", "█"]);
    }

    #[test]
    fn only_the_newest_reports_fit() {
        let points: Vec<QualityPoint> = (0..50)
            .map(|i| QualityPoint {
                mos: Some(if i < 45 { 1.0 } else { 4.5 }),
                ..QualityPoint::default()
            })
            .collect();
        let line = chart_line(&call_with(&points), 23 + 4 * 5);
        assert!(
            text(&line).starts_with("  MOS █████ loss"),
            "{}",
            text(&line)
        );
    }
}
