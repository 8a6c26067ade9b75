//! Pure rendering: `render(&UiState, &mut Frame)` draws the whole screen from the state and
//! nothing else (no clock, no I/O), so the same state always gives the same picture.

pub mod calls;
pub mod charts;
pub mod diagnosis;
pub mod dialpad;
pub mod highlight;
pub mod ladder;
pub mod log;
pub mod messages;
pub mod popup;
pub mod status;

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};

use super::state::UiState;

/// Width of the left column (dial pad and key hints).
pub const LEFT_WIDTH: u16 = 26;

/// Where each part of the screen goes; the run loop uses `dialpad` for mouse hit-testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenLayout {
    pub status: Rect,
    pub dialpad: Rect,
    pub hints: Rect,
    pub calls: Rect,
    pub log: Rect,
    pub bottom: Rect,
}

pub fn layout(state: &UiState, area: Rect) -> ScreenLayout {
    let [status, body, bottom] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(status::bottom_height(state, area)),
    ])
    .areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Length(LEFT_WIDTH), Constraint::Min(0)]).areas(body);
    let [dialpad, hints] =
        Layout::vertical([Constraint::Length(dialpad::HEIGHT), Constraint::Min(0)]).areas(left);
    // Four lines per call (two with none) plus the border, at most half the height: the log
    // needs room too.
    let call_rows = match state.calls.len() {
        0 => 2,
        n => u16::try_from(n)
            .unwrap_or(u16::MAX)
            .saturating_mul(calls::CALL_ROWS),
    };
    let calls_height = call_rows.saturating_add(2).min(body.height / 2).max(3);
    let [calls, log] =
        Layout::vertical([Constraint::Length(calls_height), Constraint::Min(0)]).areas(right);
    ScreenLayout {
        status,
        dialpad,
        hints,
        calls,
        log,
        bottom,
    }
}

pub fn render(state: &UiState, frame: &mut Frame) {
    let areas = layout(state, frame.area());
    status::render(state, frame, areas.status);
    dialpad::render(state, frame, areas.dialpad);
    dialpad::render_hints(state, frame, areas.hints);
    calls::render(state, frame, areas.calls);
    log::render(state, frame, areas.log);
    status::render_bottom(state, frame, areas.bottom);
    // Popups cover the screen as always, except the extra rows of a wrapped status message
    // (a one-row bottom line is theirs to cover, as before it could wrap).
    let mut popup_area = frame.area();
    popup_area.height = popup_area
        .height
        .saturating_sub(areas.bottom.height.saturating_sub(1));
    popup::render(state, frame, popup_area);
}

/// Text from the network made safe to draw: control characters (an ESC could drive the real
/// terminal) become `�`, tabs become a space.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// `mm:ss`, or `h:mm:ss` past an hour.
pub fn clock(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{:02}:{:02}", secs / 60, secs % 60)
    }
}

/// `mm:ss.mmm` since start (log times).
pub fn clock_millis(duration: Duration) -> String {
    format!("{}.{:03}", clock(duration), duration.subsec_millis())
}

/// A finding's colour by severity: red errors, yellow warnings, cyan information.
pub fn diagnosis_style(severity: crate::diagnosis::Severity) -> Style {
    match severity {
        crate::diagnosis::Severity::Error => Style::new().fg(Color::LightRed),
        crate::diagnosis::Severity::Warning => Style::new().fg(Color::Yellow),
        crate::diagnosis::Severity::Info => Style::new().fg(Color::Cyan),
    }
}

/// Border style: highlighted when the pane has the keyboard.
pub fn border_style(focused: bool) -> Style {
    if focused {
        Style::new().fg(Color::Yellow)
    } else {
        Style::new().fg(Color::DarkGray)
    }
}

/// A `width` x `height` rectangle centred in `area` (clipped to it).
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    )
}

/// Cuts `text` to `width` characters, marking the cut with `…`.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_from_the_network_never_reach_the_terminal() {
        assert_eq!(printable("a\u{1b}[2Jb\tc"), "a\u{FFFD}[2Jb c");
    }

    #[test]
    fn durations_read_like_a_phone_display() {
        assert_eq!(clock(Duration::from_secs(65)), "01:05");
        assert_eq!(clock(Duration::from_secs(3725)), "1:02:05");
        assert_eq!(clock_millis(Duration::from_millis(1234)), "00:01.234");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("sip:bob@biloxi.com", 8), "sip:bob…");
        assert_eq!(truncate("short", 8), "short");
    }
}
