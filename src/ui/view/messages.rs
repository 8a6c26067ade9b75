//! The status messages (`s`, `F2`, or a click on the bottom line): every message the bottom
//! line showed this session, newest first, each with its time and wrapped in full, so a long
//! warning cut at the screen's edge, or one replaced by the next, can still be read.

use ratatui::Frame;
use ratatui::layout::{Margin, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

use super::diagnosis::wrap;
use super::popup::{frame_box, scrolled_with_hint};
use super::{clock_millis, printable};
use crate::ui::state::{STATUS_HISTORY_LIMIT, UiState};

/// Width the scroll limit assumes (the pane is at least this narrow on small terminals).
const NARROW: usize = 40;
/// ` 00:03.182 `: the time column; wrapped lines start under the text, after it.
const TIME_WIDTH: usize = 11;

pub fn render(state: &UiState, frame: &mut Frame, area: Rect, scroll: u16) {
    let rect = area.inner(Margin::new(1, 1));
    let title = format!(
        " Messages: {} (newest first, last {STATUS_HISTORY_LIMIT} kept) ",
        state.status_history.len()
    );
    let inner = frame_box(frame, rect, title, Color::Cyan);
    let lines = lines(state, usize::from(inner.width));
    scrolled_with_hint(
        frame,
        inner,
        lines,
        scroll,
        " Up/Down scroll  s/F2/Esc close",
    );
}

/// How many lines the view holds at most (for the scroll limit).
pub fn line_count(state: &UiState) -> usize {
    lines(state, NARROW).len()
}

fn lines(state: &UiState, width: usize) -> Vec<Line<'static>> {
    if state.status_history.is_empty() {
        return vec![Line::styled(
            " no messages yet",
            Style::new().fg(Color::DarkGray),
        )];
    }
    let time_style = Style::new().fg(Color::DarkGray);
    let text_width = width.saturating_sub(TIME_WIDTH);
    let mut out = Vec::new();
    for message in state.status_history.iter().rev() {
        let text = match message.repeats {
            1 => printable(&message.text),
            n => format!("{} (×{n})", printable(&message.text)),
        };
        let style = message_style(&message.text);
        for (index, row) in wrap(&text, text_width).into_iter().enumerate() {
            let time = if index == 0 {
                format!(" {} ", clock_millis(message.at))
            } else {
                " ".repeat(TIME_WIDTH)
            };
            out.push(Line::from(vec![
                Span::styled(time, time_style),
                Span::styled(row, style),
            ]));
        }
    }
    out
}

/// Warnings yellow and errors red, as the eye looks for them first.
fn message_style(text: &str) -> Style {
    if text.starts_with("error") {
        Style::new().fg(Color::LightRed)
    } else if text.starts_with("warning") {
        Style::new().fg(Color::Yellow)
    } else {
        Style::new()
    }
}
