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
/// Below this pane width the peer column goes: the first line matters more (the full message
/// view names the peer).
const PEER_MIN_PANE: usize = 64;

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
    let mut others = String::new();
    if let Some(method) = &state.log_method_filter {
        others.push_str(&format!(" [{}]", truncate(&printable(method), 12)));
    }
    if state.searching || !state.log_filter.is_empty() {
        let cursor = if state.searching { "█" } else { "" };
        others.push_str(&format!(" /{}{cursor}", printable(&state.log_filter)));
    }
    let head = format!(" SIP log ({mode})");
    let mut filter = String::new();
    if let Some(call_id) = &state.log_call_filter {
        // The Call-ID gets what room the title has left (at most 12 characters), so that
        // the method and search filters after it stay readable at 80 columns.
        let used = head.chars().count() + others.chars().count() + " [call ]".len() + 2;
        let room = usize::from(area.width).saturating_sub(used).clamp(4, 12);
        filter.push_str(&format!(" [call {}]", truncate(&printable(call_id), room)));
    }
    filter.push_str(&others);
    let block = Block::bordered()
        .title(format!("{head}{filter} "))
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
    let shown: Vec<&LogEntry> = visible
        .get(start..end)
        .unwrap_or_default()
        .iter()
        .filter_map(|&index| state.log.get(index))
        .collect();
    let peer_width = if width < PEER_MIN_PANE {
        0
    } else {
        shown
            .iter()
            .map(|e| e.peer.chars().count())
            .max()
            .unwrap_or(0)
            .min(PEER_WIDTH)
    };
    let lines: Vec<Line> = (start..end)
        .zip(shown)
        .map(|(position, entry)| {
            let selected = visible.get(position).copied() == state.log_selected;
            row(entry, selected, width, peer_width)
        })
        .collect();
    // The first-run banner is prose: it wraps at the pane's width, whatever that is.
    if lines.is_empty()
        && !state.log_filtered()
        && let Some(path) = &state.first_run
    {
        let text = Paragraph::new(welcome(path, width))
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(block);
        frame.render_widget(text, area);
        return;
    }
    let lines = if !lines.is_empty() {
        lines
    } else if state.log_filtered() {
        vec![Line::styled(
            "no message matches the filter (Esc clears it)",
            Style::new().fg(Color::DarkGray),
        )]
    } else {
        vec![Line::styled(
            "no SIP messages yet",
            Style::new().fg(Color::DarkGray),
        )]
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// Cuts `text` to `width` characters from the left (`…/sipterm/config.toml`): the end of a
/// path is what names it.
fn keep_tail(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_string();
    }
    let tail: String = text.chars().skip(count + 1 - width.max(1)).collect();
    format!("…{tail}")
}

/// The first-run banner (no config file): where the config goes and how to try a call. It
/// shows while the log is empty, i.e. until the first SIP message. One `Line` per paragraph:
/// the caller wraps them at the pane's width.
fn welcome(path: &str, width: usize) -> Vec<Line<'static>> {
    let dim = Style::new().fg(Color::DarkGray);
    let key = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
    vec![
        Line::styled(
            "Welcome to sipterm! No config file yet; it goes in",
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Line::styled(
            format!("  {}", keep_tail(&printable(path), width.saturating_sub(2))),
            Style::new().fg(Color::Cyan),
        ),
        Line::styled("(config.example.toml shows accounts and codecs).", dim),
        Line::raw(""),
        Line::from(vec![
            Span::raw("To start: type "),
            Span::styled("echo", key),
            Span::raw(" and press "),
            Span::styled("Enter", key),
            Span::raw(
                " for a test call to the built-in echo service (you hear yourself), or dial \
                 sip:user@host directly.",
            ),
        ]),
    ]
}

fn row(entry: &LogEntry, selected: bool, width: usize, peer_width: usize) -> Line<'static> {
    let (arrow, arrow_style) = match entry.dir {
        Direction::Out => ("→", Style::new().fg(Color::LightCyan)),
        Direction::In => ("←", Style::new().fg(Color::LightMagenta)),
    };
    let time = clock_millis(entry.at);
    let mut spans = vec![
        Span::styled(time.clone(), Style::new().fg(Color::DarkGray)),
        Span::raw(" "),
        Span::styled(arrow, arrow_style),
        Span::raw(" "),
    ];
    let mut used = time.chars().count() + 3;
    if peer_width > 0 {
        let peer = truncate(&printable(&entry.peer), peer_width);
        spans.push(Span::raw(format!("{peer:<peer_width$} ")));
        used += peer_width + 1;
    }
    let summary = truncate(&printable(&entry.summary), width.saturating_sub(used));
    let style = summary_style(&summary);
    spans.push(Span::styled(summary, style));
    let line = Line::from(spans);
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
    fn long_paths_keep_their_end() {
        assert_eq!(keep_tail("/a/b/config.toml", 40), "/a/b/config.toml");
        assert_eq!(
            keep_tail("/tmp/x/home/.config/sipterm/config.toml", 13),
            "…/config.toml"
        );
    }

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
