//! Popups over the main screen: help, incoming call, full SIP message, quit confirmation and
//! the transfer prompt.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::{centered, clock_millis, printable, truncate};
use crate::event::Direction;
use crate::ui::state::{LogEntry, Popup, UiState};

/// Every key, as the help popup lists it (kept here so help and keys.rs are read side by side).
pub const HELP: &[(&str, &str)] = &[
    ("type, Enter", "dial a number or URI (or click the pad)"),
    ("Enter", "on an empty field: answer the ringing call"),
    ("Up/Down j/k", "dial history; select a call or log message"),
    ("Esc", "leave the field, close a popup, follow log"),
    ("a / r", "answer / reject the incoming call"),
    ("h", "hang up the selected call"),
    ("x", "hold / resume (others go on hold)"),
    ("m", "mute / unmute the microphone"),
    ("t / T", "transfer: blind (asks whom) / attended"),
    ("J / S / N", "conference / split it / do not disturb"),
    ("p / R / D", "voice processing / record / devices"),
    ("0-9 * #", "DTMF during a call (outside the field)"),
    ("Tab, d / i", "next pane / back to the dial field"),
    ("Enter (log)", "show the whole SIP message"),
    ("/", "search the log (Enter keeps, Esc clears)"),
    ("c", "contacts and call history (Enter dials)"),
    ("l / e", "ladder of the call / export it (PlantUML)"),
    ("w", "what's wrong: diagnosis, now and before"),
    ("f / F", "log: this call only / cycle methods"),
    ("? or F1", "this help"),
    ("q, Ctrl-C/Q", "quit (asks: y confirms)"),
];

pub fn render(state: &UiState, frame: &mut Frame, area: Rect) {
    match &state.popup {
        None => {}
        Some(Popup::Help) => help(frame, area),
        Some(Popup::Incoming { call, remote }) => incoming(state, frame, area, *call, remote),
        Some(Popup::Message { entry, scroll }) => message(frame, area, entry, *scroll),
        Some(Popup::QuitConfirm) => quit(frame, area),
        Some(Popup::Transfer { call, target }) => transfer(
            frame,
            area,
            &format!(" Transfer call {call} "),
            " to (number or URI), Enter sends, Esc cancels:",
            target,
        ),
        Some(Popup::Consult { call, target }) => transfer(
            frame,
            area,
            &format!(" Attended transfer of call {call} "),
            " consult whom first (number or URI)? Enter calls:",
            target,
        ),
        Some(Popup::TransferRequest { call, target }) => {
            transfer_request(frame, area, *call, target)
        }
        Some(Popup::Contacts { selected }) => contacts(state, frame, area, *selected),
        Some(Popup::Devices { selected }) => devices(state, frame, area, *selected),
        Some(Popup::Ladder { call_id, scroll }) => {
            super::ladder::render(state, frame, area, call_id, *scroll);
        }
        Some(Popup::Diagnosis { scroll }) => super::diagnosis::render(state, frame, area, *scroll),
    }
}

fn contacts(state: &UiState, frame: &mut Frame, area: Rect, selected: usize) {
    let choices = state.dial_choices();
    let height = u16::try_from(choices.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3)
        .min(area.height.saturating_sub(2));
    let rect = centered(area, area.width.saturating_sub(8).min(70), height);
    let inner = frame_box(
        frame,
        rect,
        " Contacts and recent calls ".into(),
        Color::Green,
    );
    let rows = usize::from(inner.height.saturating_sub(1)).max(1);
    // Scroll so the selected line stays visible.
    let first = selected.saturating_sub(rows - 1);
    let width = usize::from(inner.width.saturating_sub(3));
    let mut lines: Vec<Line> = choices
        .iter()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(i, (label, _))| {
            let text = truncate(&printable(label), width);
            if i == selected {
                Line::styled(
                    format!("▶ {text}"),
                    Style::new().add_modifier(Modifier::REVERSED),
                )
            } else {
                Line::raw(format!("  {text}"))
            }
        })
        .collect();
    lines.push(Line::styled(
        " Up/Down select  Enter dial  Esc close",
        Style::new().fg(Color::DarkGray),
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}

fn devices(state: &UiState, frame: &mut Frame, area: Rect, selected: usize) {
    let choices = state.device_choices();
    let height = u16::try_from(choices.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3)
        .min(area.height.saturating_sub(2));
    let rect = centered(area, area.width.saturating_sub(8).min(70), height);
    let inner = frame_box(frame, rect, " Sound devices ".into(), Color::Green);
    let rows = usize::from(inner.height.saturating_sub(1)).max(1);
    let first = selected.saturating_sub(rows - 1);
    let width = usize::from(inner.width.saturating_sub(12));
    let mut lines: Vec<Line> = choices
        .iter()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(i, (input, name))| {
            let side = if *input { "input " } else { "output" };
            let text = format!("{side}  {}", truncate(&printable(name), width));
            if i == selected {
                Line::styled(
                    format!("▶ {text}"),
                    Style::new().add_modifier(Modifier::REVERSED),
                )
            } else {
                Line::raw(format!("  {text}"))
            }
        })
        .collect();
    lines.push(Line::styled(
        " Up/Down select  Enter use for the call  Esc close",
        Style::new().fg(Color::DarkGray),
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}

pub fn frame_box(frame: &mut Frame, rect: Rect, title: String, color: Color) -> Rect {
    let block = Block::bordered()
        .title(Span::styled(
            title,
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        ))
        .border_style(Style::new().fg(color));
    let inner = block.inner(rect);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    inner
}

fn help(frame: &mut Frame, area: Rect) {
    let height = u16::try_from(HELP.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3);
    let rect = centered(area, 60, height);
    let inner = frame_box(frame, rect, " Help: keys ".into(), Color::Cyan);
    let key = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
    let mut lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!(" {keys:<12} "), key),
                Span::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::styled(
        " Esc closes",
        Style::new().fg(Color::DarkGray),
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}

fn incoming(state: &UiState, frame: &mut Frame, area: Rect, call: u64, remote: &str) {
    let rect = centered(area, 56, 7);
    let inner = frame_box(
        frame,
        rect,
        format!(" Incoming call {call} "),
        Color::Yellow,
    );
    let remote = truncate(
        &printable(remote),
        usize::from(inner.width.saturating_sub(2)),
    );
    let key = Style::new().fg(Color::Black).add_modifier(Modifier::BOLD);
    // Call waiting: say what answering does to the call in progress (see action.rs).
    let active: Vec<String> = state
        .calls
        .iter()
        .filter(|c| c.id != call && c.state == "confirmed")
        .map(|c| c.id.to_string())
        .collect();
    let note = if active.is_empty() {
        Line::raw("")
    } else {
        Line::styled(
            format!(" answering puts call {} on hold", active.join(", ")),
            Style::new().fg(Color::DarkGray),
        )
    };
    let lines = vec![
        Line::raw(""),
        Line::styled(
            format!(" {remote}"),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        note,
        Line::from(vec![
            Span::raw(" "),
            Span::styled(" a/Enter ", key.bg(Color::Green)),
            Span::raw(" Answer   "),
            Span::styled(" r ", key.bg(Color::Red)),
            Span::raw(" Reject   "),
            Span::styled(" Esc ", key.bg(Color::Gray)),
            Span::raw(" later"),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}

fn message(frame: &mut Frame, area: Rect, entry: &LogEntry, scroll: u16) {
    let rect = centered(
        area,
        area.width.saturating_sub(4),
        area.height.saturating_sub(2),
    );
    let direction = match entry.dir {
        Direction::In => "from",
        Direction::Out => "to",
    };
    let title = format!(
        " {} {direction} {} at {} ",
        truncate(&printable(&entry.summary), 40),
        printable(&entry.peer),
        clock_millis(entry.at)
    );
    let inner = frame_box(frame, rect, title, Color::LightBlue);
    let lines = super::highlight::highlight(&entry.raw);
    let total = u16::try_from(lines.len()).unwrap_or(u16::MAX);
    let scroll = scroll.min(total.saturating_sub(inner.height));
    let hint = Line::styled(
        "Up/Down scroll  Esc close",
        Style::new().fg(Color::DarkGray),
    )
    .right_aligned();
    let [body, footer] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Min(0),
        ratatui::layout::Constraint::Length(1),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(lines).scroll((scroll, 0)), body);
    frame.render_widget(Paragraph::new(hint), footer);
}

fn quit(frame: &mut Frame, area: Rect) {
    let rect = centered(area, 40, 5);
    let inner = frame_box(frame, rect, " Quit ".into(), Color::LightRed);
    let lines = vec![
        Line::raw(""),
        Line::from(vec![
            Span::raw(" Quit sipterm? "),
            Span::styled(
                "y",
                Style::new()
                    .fg(Color::LightRed)
                    .add_modifier(Modifier::BOLD),
            ),
            Span::raw(" yes, any key no"),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}

fn transfer_request(frame: &mut Frame, area: Rect, call: u64, target: &str) {
    let rect = centered(area, 56, 7);
    let inner = frame_box(
        frame,
        rect,
        format!(" Transfer request in call {call} "),
        Color::Magenta,
    );
    let target = truncate(
        &printable(target),
        usize::from(inner.width.saturating_sub(2)),
    );
    let key = Style::new().fg(Color::Black).add_modifier(Modifier::BOLD);
    let lines = vec![
        Line::raw(" The other side asks you to call:"),
        Line::styled(
            format!(" {target}"),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Line::raw(""),
        Line::from(vec![
            Span::raw(" "),
            Span::styled(" a/Enter ", key.bg(Color::Green)),
            Span::raw(" Accept   "),
            Span::styled(" r/Esc ", key.bg(Color::Red)),
            Span::raw(" Refuse"),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}

fn transfer(frame: &mut Frame, area: Rect, title: &str, prompt: &str, target: &str) {
    let rect = centered(area, 56, 6);
    let inner = frame_box(frame, rect, title.to_string(), Color::Magenta);
    let room = usize::from(inner.width.saturating_sub(4));
    let target = printable(target);
    let skip = target.chars().count().saturating_sub(room);
    let shown: String = target.chars().skip(skip).collect();
    let lines = vec![
        Line::raw(prompt.to_string()),
        Line::raw(""),
        Line::from(vec![
            Span::styled(" > ", Style::new().fg(Color::Cyan)),
            Span::raw(shown),
            Span::raw("█"),
        ]),
    ];
    frame.render_widget(Paragraph::new(lines), inner);
}
