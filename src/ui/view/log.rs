//! The SIP log pane: one row per message (time, direction, peer, first line), coloured by
//! method or status class. Follows the newest message unless the user selected one.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{border_style, clock_millis, printable, truncate};
use crate::event::Direction;
use crate::ui::state::{Focus, LogEntry, UiState};

/// Room for `255.255.255.255:65535`; longer peers (IPv6) are cut.
const PEER_WIDTH: usize = 21;

/// The colour of a first line: requests by method, responses by status class.
pub fn summary_style(summary: &str) -> Style {
    if let Some(rest) = summary.strip_prefix("SIP/2.0 ") {
        let color = match rest.as_bytes().first() {
            Some(b'1') => Color::Yellow,
            Some(b'2') => Color::Green,
            Some(b'3') => Color::Cyan,
            Some(b'4'..=b'6') => Color::Red,
            _ => Color::Gray,
        };
        return Style::new().fg(color);
    }
    let method = summary.split(' ').next().unwrap_or_default();
    let color = match method {
        "INVITE" => Color::LightGreen,
        "ACK" => Color::Green,
        "BYE" | "CANCEL" => Color::LightRed,
        "REGISTER" => Color::LightBlue,
        "OPTIONS" => Color::Gray,
        _ => Color::Magenta,
    };
    Style::new().fg(color).add_modifier(Modifier::BOLD)
}

pub fn render(state: &UiState, frame: &mut Frame, area: Rect) {
    let focused = state.focus == Focus::Log && state.popup.is_none();
    let visible = state.visible_log();
    let position = state
        .log_selected
        .and_then(|sel| visible.iter().position(|&i| i == sel));
    let mode = match position {
        Some(p) => format!("{}/{}", p + 1, visible.len()),
        None => format!("{} msgs, follow", visible.len()),
    };
    let filter = if state.searching || !state.log_filter.is_empty() {
        let cursor = if state.searching { "█" } else { "" };
        format!(" /{}{cursor}", printable(&state.log_filter))
    } else {
        String::new()
    };
    let block = Block::bordered()
        .title(format!(" SIP log ({mode}){filter} "))
        .border_style(border_style(focused || state.searching));
    let inner = block.inner(area);
    let rows = usize::from(inner.height);
    let width = usize::from(inner.width);
    // Follow: the newest rows at the bottom. Selected: scroll just enough to show it.
    let end = match position {
        Some(p) => (p + 1).max(rows.min(visible.len())),
        None => visible.len(),
    };
    let start = end.saturating_sub(rows);
    let lines: Vec<Line> = visible
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .filter_map(|&index| state.log.get(index).map(|e| (index, e)))
        .map(|(index, entry)| row(entry, Some(index) == state.log_selected, width))
        .collect();
    let lines = if lines.is_empty() {
        vec![Line::styled(
            if state.log_filter.is_empty() {
                "no SIP messages yet"
            } else {
                "no message matches the search"
            },
            Style::new().fg(Color::DarkGray),
        )]
    } else {
        lines
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn row(entry: &LogEntry, selected: bool, width: usize) -> Line<'static> {
    let (arrow, arrow_style) = match entry.dir {
        Direction::Out => ("→", Style::new().fg(Color::LightCyan)),
        Direction::In => ("←", Style::new().fg(Color::LightMagenta)),
    };
    let peer = truncate(&printable(&entry.peer), PEER_WIDTH);
    let summary = printable(&entry.summary);
    let used = 10 + 2 + PEER_WIDTH + 1;
    let summary = truncate(&summary, width.saturating_sub(used));
    let line = Line::from(vec![
        Span::styled(clock_millis(entry.at), Style::new().fg(Color::DarkGray)),
        Span::raw(" "),
        Span::styled(arrow, arrow_style),
        Span::raw(" "),
        Span::raw(format!("{peer:<PEER_WIDTH$} ")),
        Span::styled(summary.clone(), summary_style(&summary)),
    ]);
    if selected {
        line.style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_colour_by_class_and_requests_by_method() {
        assert_eq!(summary_style("SIP/2.0 180 Ringing").fg, Some(Color::Yellow));
        assert_eq!(summary_style("SIP/2.0 200 OK").fg, Some(Color::Green));
        assert_eq!(summary_style("SIP/2.0 486 Busy Here").fg, Some(Color::Red));
        assert_eq!(
            summary_style("INVITE sip:b@h SIP/2.0").fg,
            Some(Color::LightGreen)
        );
        assert_eq!(
            summary_style("BYE sip:b@h SIP/2.0").fg,
            Some(Color::LightRed)
        );
        assert_ne!(
            summary_style("REGISTER sip:h SIP/2.0").fg,
            summary_style("INVITE sip:h SIP/2.0").fg
        );
    }
}
