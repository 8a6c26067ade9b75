//! The calls panel: four lines per call: who, what the diagnosis says about it, state and
//! duration; codec and media stats; VU meters of the microphone and the speaker; small charts
//! of its quality over time.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{border_style, clock, printable, truncate};
use crate::event::CallState;
use crate::ui::state::{CallView, Focus, UiState};

/// Screen lines per call.
pub const CALL_ROWS: u16 = 4;
/// The meters span -60..0 dBFS: quieter is an empty bar.
pub const VU_FLOOR_DB: f32 = -60.0;
/// Above this the bar turns yellow, above `VU_HOT_DB` red (clipping is near).
pub const VU_LOUD_DB: f32 = -18.0;
pub const VU_HOT_DB: f32 = -6.0;
/// Bar cells at most (wide terminals).
const VU_MAX_WIDTH: usize = 24;

pub fn render(state: &UiState, frame: &mut Frame, area: Rect) {
    let focused = state.focus == Focus::Calls && state.popup.is_none() && !state.searching;
    let block = Block::bordered()
        .title(format!(" Calls ({}) ", state.calls.len()))
        .border_style(border_style(focused));
    let width = usize::from(block.inner(area).width);
    let lines: Vec<Line> = if state.calls.is_empty() {
        vec![Line::styled(
            "no calls: type a number or URI and press Enter",
            Style::new().fg(Color::DarkGray),
        )]
    } else {
        // Keep the selected call on screen when there are more calls than rows.
        let rows = usize::from(block.inner(area).height / CALL_ROWS).max(1);
        let first = (state.selected_call + 1).saturating_sub(rows);
        state
            .calls
            .iter()
            .enumerate()
            .skip(first)
            .take(rows)
            .flat_map(|(index, call)| call_lines(state, call, index == state.selected_call, width))
            .collect()
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn call_lines(
    state: &UiState,
    call: &CallView,
    selected: bool,
    width: usize,
) -> [Line<'static>; 4] {
    let state_style = match call.state {
        CallState::Confirmed if state.conference.contains(&call.id) => {
            Style::new().fg(Color::Magenta)
        }
        CallState::Confirmed => Style::new().fg(Color::Green),
        CallState::Held => Style::new().fg(Color::Blue),
        CallState::Incoming => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::Yellow),
    };
    let duration = call
        .duration(state.now)
        .map(clock)
        .unwrap_or_else(|| "--:--".into());
    let marker = if selected { "▶ " } else { "  " };
    let id = format!("{} ", call.id);
    let muted = if call.muted { " MUTED" } else { "" };
    // The worst finding about this call, as it happens (`w` has the whole story).
    let finding = state.call_findings(call.id).first().map(|f| {
        (
            format!(" ⚠ {}", f.label),
            super::diagnosis_style(f.severity),
        )
    });
    let badge_len = finding.as_ref().map_or(0, |(text, _)| text.chars().count());
    // An early call with SDP plays the other side's audio (announcements, its own ringback).
    let shown_state = match call.state {
        CallState::Early => "early media",
        _ if state.conference.contains(&call.id) => "conference",
        other => other.as_str(),
    };
    let right = format!(" {shown_state:<9} {duration}");
    // The recording marker, on the call line while the call records.
    let rec = if call.recording.is_some() {
        " ●REC"
    } else {
        ""
    };
    let room = width.saturating_sub(
        2 + id.len() + muted.len() + badge_len + rec.chars().count() + right.chars().count(),
    );
    let remote = truncate(&printable(&call.remote), room);
    let pad = room.saturating_sub(remote.chars().count());
    let name_style = if selected {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let (badge, badge_style) = finding.unwrap_or_default();
    let first = Line::from(vec![
        Span::styled(marker, Style::new().fg(Color::Yellow)),
        Span::styled(id, Style::new().fg(Color::DarkGray)),
        Span::styled(remote, name_style),
        Span::raw(" ".repeat(pad)),
        Span::styled(badge, badge_style.add_modifier(Modifier::BOLD)),
        Span::styled(
            muted,
            Style::new()
                .fg(Color::LightRed)
                .add_modifier(Modifier::BOLD),
        ),
        Span::styled(
            rec,
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
        Span::styled(right, state_style),
    ]);

    let mut stats = vec![Span::raw("  ")];
    match &call.codec {
        Some(codec) => {
            let sent_and_lost = call.received.saturating_add(call.lost);
            let loss = if sent_and_lost == 0 {
                0.0
            } else {
                call.lost as f64 * 100.0 / sent_and_lost as f64
            };
            stats.push(Span::styled(printable(codec), Style::new().fg(Color::Cyan)));
            // SRTP with SDES keys is only as private as the signalling that carried them:
            // `SRTP/TLS` when that hop was TLS, `SRTP/clear-keys` (yellow) over UDP/TCP.
            if call.encrypted && call.keys_in_clear {
                stats.push(Span::styled(
                    " SRTP/clear-keys",
                    Style::new().fg(Color::Yellow),
                ));
            } else if call.encrypted {
                stats.push(Span::styled(" SRTP/TLS", Style::new().fg(Color::Green)));
            }
            if let Some(ice) = &call.ice {
                let colour = if ice.starts_with("ICE failed") {
                    Color::Red
                } else {
                    Color::Green
                };
                stats.push(Span::styled(
                    format!(" {}", printable(ice)),
                    Style::new().fg(colour),
                ));
            }
            if let Some(processing) = call.processing.as_deref().filter(|p| *p != "-") {
                stats.push(Span::styled(
                    format!(" {processing}"),
                    Style::new().fg(Color::Magenta),
                ));
            }
            // Someone else is sending to this call's port: dropped, but worth knowing (and
            // before the packet counts, which are cut first on narrow terminals).
            if call.foreign > 0 {
                stats.push(Span::styled(
                    format!(" {} foreign dropped", call.foreign),
                    Style::new().fg(Color::Yellow),
                ));
            }
            // Quality first: at 80 columns the packet counts are what gets cut. No audio
            // lately: no score (never a good one for silence).
            match call.mos {
                Some(mos) => stats.push(Span::raw(format!(" MOS {mos:.1}"))),
                // Red while audio should come; grey on hold, where none is expected.
                None if call.sent > 0 => stats.push(Span::styled(
                    " MOS -",
                    Style::new().fg(if call.held {
                        Color::DarkGray
                    } else {
                        Color::LightRed
                    }),
                )),
                None => {}
            }
            stats.push(Span::raw(format!(
                " loss {loss:.1}% jit {:.1}ms",
                call.jitter_ms
            )));
            if let Some(rtt) = call.rtt_ms {
                stats.push(Span::raw(format!(" rtt {rtt:.0}ms")));
            }
            stats.push(Span::raw(format!(
                " ↑{} ↓{} lost {}",
                call.sent, call.received, call.lost
            )));
        }
        None => stats.push(Span::styled(
            "no media yet",
            Style::new().fg(Color::DarkGray),
        )),
    }
    [
        first,
        Line::from(stats),
        meters(state, call, width),
        super::charts::chart_line(call, width),
    ]
}

/// `  mic ▕████····▏ -18  spk ▕██······▏ -42`: a bar per direction, sized to the pane.
fn meters(state: &UiState, call: &CallView, width: usize) -> Line<'static> {
    let dim = Style::new().fg(Color::DarkGray);
    // "  mic ▕" + "▏ -18" + "  spk ▕" + "▏ -42" around the two bars.
    let bar = (width.saturating_sub(24) / 2).clamp(2, VU_MAX_WIDTH);
    let levels = call.levels(state.now);
    let mut spans = vec![Span::styled("  mic ", dim), Span::styled("▕", dim)];
    if call.muted {
        spans.push(Span::styled(
            format!("{:^bar$}", "MUTED"),
            Style::new()
                .fg(Color::LightRed)
                .add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::styled("▏    ", dim));
    } else {
        let mic = levels.map(|(mic, _)| mic);
        spans.extend(vu_bar(mic, bar));
        spans.push(Span::styled("▏", dim));
        spans.push(Span::styled(db_label(mic), dim));
    }
    let speaker = levels.map(|(_, speaker)| speaker);
    spans.push(Span::styled("  spk ", dim));
    spans.push(Span::styled("▕", dim));
    spans.extend(vu_bar(speaker, bar));
    spans.push(Span::styled("▏", dim));
    spans.push(Span::styled(db_label(speaker), dim));
    Line::from(spans)
}

/// ` -18`, or `  --` with no level.
fn db_label(db: Option<f32>) -> String {
    match db {
        Some(db) => format!(" {:>3.0}", db.clamp(-99.0, 0.0)),
        None => "  --".into(),
    }
}

/// A `width`-cell bar for `db` (-60..0 dBFS): filled cells green, yellow past -18 dBFS, red
/// past -6; the rest `·`. `None` (no level yet, or stale) is all dots.
pub fn vu_bar(db: Option<f32>, width: usize) -> Vec<Span<'static>> {
    let fraction = db.map_or(0.0, |db| {
        ((db - VU_FLOOR_DB) / -VU_FLOOR_DB).clamp(0.0, 1.0)
    });
    let filled = (fraction * width as f32).round() as usize;
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut push = |text: char, style: Style| match spans.last_mut() {
        Some(last) if last.style == style => last.content.to_mut().push(text),
        _ => spans.push(Span::styled(text.to_string(), style)),
    };
    for cell in 0..width {
        if cell < filled {
            // The dB the cell stands for: its upper edge.
            let cell_db = VU_FLOOR_DB - VU_FLOOR_DB * (cell + 1) as f32 / width as f32;
            let color = if cell_db > VU_HOT_DB {
                Color::Red
            } else if cell_db > VU_LOUD_DB {
                Color::Yellow
            } else {
                Color::Green
            };
            push('█', Style::new().fg(color));
        } else {
            push('·', Style::new().fg(Color::DarkGray));
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(spans: &[Span]) -> String {
        spans.iter().map(|s| s.content.as_ref()).collect()
    }

    #[test]
    fn the_bar_fills_with_the_level_from_minus_60_to_0_dbfs() {
        assert_eq!(text(&vu_bar(Some(-60.0), 10)), "··········");
        assert_eq!(text(&vu_bar(Some(-96.0), 10)), "··········");
        assert_eq!(text(&vu_bar(Some(-30.0), 10)), "█████·····");
        assert_eq!(text(&vu_bar(Some(0.0), 10)), "██████████");
        assert_eq!(text(&vu_bar(Some(3.0), 10)), "██████████");
        assert_eq!(text(&vu_bar(None, 4)), "····");
    }

    #[test]
    fn the_stats_line_tells_of_dropped_foreign_packets_only_when_there_are_some() {
        use crate::event::Event;
        let t0 = std::time::Instant::now();
        let mut state = UiState::new(&[], 3, t0);
        state.apply_event(
            Event::Call {
                call: "1".into(),
                state: CallState::Confirmed,
                remote: "sip:bob@b".into(),
                code: None,
                reason: None,
                sip_call_id: None,
                account: None,
            },
            t0,
        );
        let media = |foreign| Event::Media {
            call: "1".into(),
            codec: "pcmu/8000".into(),
            sent: 10,
            received: 10,
            lost: 0,
            jitter_ms: 0.0,
            loss_pct: 0.0,
            rtt_ms: None,
            mos: Some(4.3),
            remote: None,
            local: None,
            foreign,
            encrypted: false,
            srtp: None,
            foreign_from: None,
            peer: None,
            mic: None,
            ice: None,
        };
        let stats_line = |state: &UiState| {
            let call = &state.calls[0];
            let [_, stats, _, _] = call_lines(state, call, true, 80);
            text(&stats.spans)
        };
        state.apply_event(media(0), t0);
        assert!(
            !stats_line(&state).contains("foreign"),
            "{}",
            stats_line(&state)
        );
        state.apply_event(media(12), t0);
        assert!(
            stats_line(&state).contains("pcmu/8000 12 foreign dropped MOS 4.3"),
            "{}",
            stats_line(&state)
        );
    }

    #[test]
    fn loud_cells_turn_yellow_then_red() {
        let full = vu_bar(Some(0.0), 10);
        let colors: Vec<(String, Option<Color>)> = full
            .iter()
            .map(|s| (s.content.to_string(), s.style.fg))
            .collect();
        // Cells of 6 dB: up to -18 green (7 cells), -12 and -6 yellow, 0 red.
        assert_eq!(
            colors,
            vec![
                ("███████".to_string(), Some(Color::Green)),
                ("██".to_string(), Some(Color::Yellow)),
                ("█".to_string(), Some(Color::Red)),
            ]
        );
        let quiet = vu_bar(Some(-40.0), 10);
        assert!(quiet.iter().all(|s| s.style.fg != Some(Color::Red)));
    }
}
