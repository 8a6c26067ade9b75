//! The calls panel: two lines per call: who, state and duration; then codec and media stats.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{border_style, clock, printable, truncate};
use crate::ui::state::{CallView, Focus, UiState};

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
        let rows = usize::from(block.inner(area).height / 2).max(1);
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
) -> [Line<'static>; 2] {
    let state_style = match call.state.as_str() {
        "confirmed" => Style::new().fg(Color::Green),
        "held" => Style::new().fg(Color::Blue),
        "incoming" => Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        _ => Style::new().fg(Color::Yellow),
    };
    let duration = call
        .duration(state.now)
        .map(clock)
        .unwrap_or_else(|| "--:--".into());
    let marker = if selected { "▶ " } else { "  " };
    let id = format!("{} ", call.id);
    let muted = if call.muted { " MUTED" } else { "" };
    let right = format!(" {:<9} {duration}", call.state);
    let room = width.saturating_sub(2 + id.len() + muted.len() + right.chars().count());
    let remote = truncate(&printable(&call.remote), room);
    let pad = room.saturating_sub(remote.chars().count());
    let name_style = if selected {
        Style::new().add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    };
    let first = Line::from(vec![
        Span::styled(marker, Style::new().fg(Color::Yellow)),
        Span::styled(id, Style::new().fg(Color::DarkGray)),
        Span::styled(remote, name_style),
        Span::raw(" ".repeat(pad)),
        Span::styled(
            muted,
            Style::new()
                .fg(Color::LightRed)
                .add_modifier(Modifier::BOLD),
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
            if call.encrypted {
                stats.push(Span::styled(" SRTP", Style::new().fg(Color::Green)));
            }
            // Quality first: at 80 columns the packet counts are what gets cut.
            if let Some(mos) = call.mos {
                stats.push(Span::raw(format!(" MOS {mos:.1}")));
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
    [first, Line::from(stats)]
}
