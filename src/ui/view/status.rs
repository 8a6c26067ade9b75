//! The status bar (top: registration per account, listen address, dropped traces) and the
//! bottom line (focus and the last message for the user).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::printable;
use crate::event::RegistrationState;
use crate::ui::state::{AccountState, Focus, UiState};

fn registration_style(state: AccountState) -> Style {
    match state {
        AccountState::Registration(RegistrationState::Registered) => {
            Style::new().fg(Color::LightGreen)
        }
        AccountState::Registration(RegistrationState::Failed) => Style::new()
            .fg(Color::LightRed)
            .add_modifier(Modifier::BOLD),
        AccountState::Registration(
            RegistrationState::Registering | RegistrationState::Unregistering,
        ) => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Gray),
    }
}

pub fn render(state: &UiState, frame: &mut Frame, area: Rect) {
    let bar = Style::new().bg(Color::Rgb(30, 30, 46)).fg(Color::White);
    let separator = || Span::styled(" │ ", Style::new().fg(Color::DarkGray));
    let mut spans = vec![Span::styled(
        " sipterm",
        Style::new().add_modifier(Modifier::BOLD),
    )];
    for account in &state.accounts {
        spans.push(separator());
        spans.push(Span::raw(format!("{}: ", printable(&account.name))));
        let text = match account.code {
            Some(code)
                if account.state != AccountState::Registration(RegistrationState::Registered) =>
            {
                format!("{} ({code})", account.state.as_str())
            }
            _ => account.state.as_str().to_string(),
        };
        spans.push(Span::styled(text, registration_style(account.state)));
        // Voicemail waiting on this account (RFC 3842), with the new count when given.
        if let Some((true, new)) = account.voicemail {
            let count = new.map(|n| format!(" {n}")).unwrap_or_default();
            spans.push(Span::styled(
                format!(" ✉{count}"),
                Style::new()
                    .fg(Color::LightYellow)
                    .add_modifier(Modifier::BOLD),
            ));
        }
    }
    let unread = state.chats.unread();
    if unread > 0 {
        spans.push(separator());
        spans.push(Span::styled(
            format!("{unread} new msg (M)"),
            Style::new()
                .fg(Color::LightCyan)
                .add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(listen) = &state.listen {
        spans.push(separator());
        spans.push(Span::styled(
            printable(listen),
            Style::new().fg(Color::Gray),
        ));
    }
    // What the diagnosis sees now, at a glance (`w` lists it).
    let active: Vec<&crate::diagnosis::Finding> = state
        .findings
        .iter()
        .filter(|v| v.is_active())
        .map(|v| &v.finding)
        .collect();
    if let Some(worst) = active.iter().map(|f| f.severity).max() {
        spans.push(separator());
        spans.push(Span::styled(
            format!("⚠ {} (w)", active.len()),
            super::diagnosis_style(worst).add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(code) = state.dnd {
        spans.push(separator());
        spans.push(Span::styled(
            format!("DND {code}"),
            Style::new()
                .fg(Color::LightRed)
                .add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(target) = &state.forward {
        spans.push(separator());
        spans.push(Span::styled(
            format!("FWD → {}", printable(target)),
            Style::new().fg(Color::Yellow),
        ));
    }
    if state.dropped_traces > 0 {
        spans.push(separator());
        spans.push(Span::styled(
            format!("dropped {}", state.dropped_traces),
            Style::new().fg(Color::LightRed),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}

/// Rows the bottom line takes: a status message longer than the screen is wide wraps onto
/// more rows (up to a quarter of the screen, at least one), so a long warning, e.g. about a
/// missing sound device, can be read in full instead of being cut at the edge.
pub fn bottom_height(state: &UiState, area: Rect) -> u16 {
    let rows = bottom_rows(state, usize::from(area.width)).len();
    u16::try_from(rows)
        .unwrap_or(u16::MAX)
        .clamp(1, (area.height / 4).max(1))
}

fn mode_label(state: &UiState) -> String {
    let mode = if state.searching {
        "SEARCH"
    } else {
        match state.focus {
            Focus::Dial => "DIAL",
            Focus::Calls => "CALLS",
            Focus::Log => "LOG",
        }
    };
    format!(" {mode} ")
}

/// The bottom line's rows at `width`: the mode badge, then the message cut into rows by
/// character (paths and addresses have no spaces to break at).
fn bottom_rows(state: &UiState, width: usize) -> Vec<Line<'static>> {
    let label = mode_label(state);
    let badge = Span::styled(label.clone(), Style::new().fg(Color::Black).bg(Color::Cyan));
    let Some(message) = &state.status else {
        return vec![Line::from(vec![
            badge,
            Span::raw(" "),
            Span::styled(
                "Tab: next pane   ?: help   F2: messages",
                Style::new().fg(Color::DarkGray),
            ),
        ])];
    };
    let text: Vec<char> = printable(message).chars().collect();
    let width = width.max(1);
    let first = width.saturating_sub(label.chars().count() + 1).max(1);
    let mut rows = vec![Line::from(vec![
        badge,
        Span::raw(" "),
        Span::raw(text.iter().take(first).collect::<String>()),
    ])];
    let mut rest = text.get(first..).unwrap_or_default();
    while !rest.is_empty() {
        let (row, next) = rest.split_at(rest.len().min(width));
        rows.push(Line::raw(row.iter().collect::<String>()));
        rest = next;
    }
    rows
}

/// Ends a cut-off message: the last row it gets closes with this, naming the key (it works
/// from every pane, the dial field too) that shows the message in full.
pub const MORE_HINT: &str = "… F2: all";

pub fn render_bottom(state: &UiState, frame: &mut Frame, area: Rect) {
    let width = usize::from(area.width);
    let mut rows = bottom_rows(state, width);
    let room = usize::from(area.height).max(1);
    if rows.len() > room {
        rows.truncate(room);
        if let Some(last) = rows.pop() {
            rows.push(with_more_hint(last, width));
        }
    }
    frame.render_widget(Paragraph::new(rows), area);
}

/// `row` with its end replaced by `MORE_HINT`, the whole no wider than `width`.
fn with_more_hint(row: Line<'static>, width: usize) -> Line<'static> {
    let hint_width = MORE_HINT.chars().count();
    let mut spans = row.spans;
    let mut used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    // Drop characters from the end (the message text) until the hint fits.
    while used + hint_width > width {
        let Some(last) = spans.last_mut() else { break };
        let mut text = last.content.to_string();
        if text.pop().is_none() {
            spans.pop();
            continue;
        }
        last.content = text.into();
        used -= 1;
    }
    spans.push(Span::styled(
        MORE_HINT,
        Style::new().fg(Color::Black).bg(Color::Yellow),
    ));
    Line::from(spans)
}
