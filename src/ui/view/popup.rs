//! Popups over the main screen: help, incoming call, full SIP message, quit confirmation and
//! the transfer prompt.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::{centered, clock_millis, printable, truncate};
use crate::event::{CallState, Direction};
use crate::ui::state::{LogEntry, Popup, UiState};

/// Every key, as the help popup lists it (kept here so help and keys.rs are read side by side).
pub const HELP: &[(&str, &str)] = &[
    ("type, Enter", "dial a number or URI (or click the pad)"),
    ("Enter", "on an empty field: answer the ringing call"),
    ("Up/Down j/k", "dial history; select a call or log message"),
    ("Esc", "leave the field, close a popup, follow log"),
    ("a / r / h", "answer / reject / hang up (selected call)"),
    ("x", "hold / resume (others go on hold)"),
    ("m", "mute / unmute the microphone"),
    ("t / T", "transfer: blind (asks whom) / attended"),
    ("J / S / N", "conference / split it / do not disturb"),
    ("p / R / D", "voice processing / record / devices"),
    ("A E V M", "account out / on-off / voicemail / messages"),
    ("0-9 * #", "DTMF during a call (outside the field)"),
    ("Tab, d / i", "next pane / back to the dial field"),
    ("Enter (log)", "show the whole SIP message"),
    ("/", "search the log (Enter keeps, Esc clears)"),
    ("c / n e x", "contacts (Enter dials) / add, edit, delete"),
    ("l / e", "ladder of the call / export it (PlantUML)"),
    ("w / s or F2", "what's wrong / every status message"),
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
        Some(Popup::Chats { selected }) => chats(state, frame, area, *selected),
        Some(Popup::ContactEdit {
            index,
            name,
            uri,
            account,
            field,
        }) => contact_edit(frame, area, index.is_none(), [name, uri], account, *field),
        Some(Popup::Chat {
            account,
            peer,
            input,
        }) => chat(state, frame, area, account, peer, input),
        Some(Popup::Devices { selected }) => devices(state, frame, area, *selected),
        Some(Popup::Ladder { call_id, scroll }) => {
            super::ladder::render(state, frame, area, call_id, *scroll);
        }
        Some(Popup::Diagnosis { scroll }) => super::diagnosis::render(state, frame, area, *scroll),
        Some(Popup::Messages { scroll }) => super::messages::render(state, frame, area, *scroll),
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
        " Enter dial  n new  e edit  x delete  Esc close",
        Style::new().fg(Color::DarkGray),
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The contact being added or edited: name, URI, account; the field being typed is marked.
fn contact_edit(
    frame: &mut Frame,
    area: Rect,
    new: bool,
    [name, uri]: [&String; 2],
    account: &Option<String>,
    field: u8,
) {
    let rect = centered(area, area.width.saturating_sub(8).min(70), 7);
    let title = if new {
        " New contact "
    } else {
        " Edit contact "
    };
    let inner = frame_box(frame, rect, title.into(), Color::Green);
    let width = usize::from(inner.width.saturating_sub(12));
    let account = account.as_deref().unwrap_or("(the outgoing one)");
    let rows = [
        ("name", name.as_str()),
        ("URI", uri.as_str()),
        ("account", account),
    ];
    let mut lines: Vec<Line> = rows
        .iter()
        .enumerate()
        .map(|(i, (label, value))| {
            let shown = printable(value);
            let count = shown.chars().count();
            let tail: String = shown.chars().skip(count.saturating_sub(width)).collect();
            if usize::from(field) == i {
                let cursor = if i < 2 { "▏" } else { " ↑↓" };
                Line::styled(
                    format!(" {label:>8}: {tail}{cursor}"),
                    Style::new().fg(Color::Yellow),
                )
            } else {
                Line::raw(format!(" {label:>8}: {tail}"))
            }
        })
        .collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        " Tab next field  Enter save  Esc cancel",
        Style::new().fg(Color::DarkGray),
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// The conversations, most recent first, with unread counts.
fn chats(state: &UiState, frame: &mut Frame, area: Rect, selected: usize) {
    let list = &state.chats.chats;
    let height = u16::try_from(list.len().max(1))
        .unwrap_or(u16::MAX)
        .saturating_add(3)
        .min(area.height.saturating_sub(2));
    let rect = centered(area, area.width.saturating_sub(8).min(70), height);
    let inner = frame_box(frame, rect, " Messages ".into(), Color::Cyan);
    let rows = usize::from(inner.height.saturating_sub(1)).max(1);
    let first = selected.saturating_sub(rows - 1);
    let width = usize::from(inner.width.saturating_sub(3));
    let mut lines: Vec<Line> = list
        .iter()
        .rev()
        .enumerate()
        .skip(first)
        .take(rows)
        .map(|(i, chat)| {
            let who = chat.display.as_deref().unwrap_or(&chat.peer);
            let unread = if chat.unread > 0 {
                format!(" ({} new)", chat.unread)
            } else {
                String::new()
            };
            let label = format!("{}{unread}  [{}]", printable(who), printable(&chat.account));
            let text = truncate(&label, width);
            if i == selected {
                Line::styled(
                    format!("▶ {text}"),
                    Style::new().add_modifier(Modifier::REVERSED),
                )
            } else if chat.unread > 0 {
                Line::styled(
                    format!("  {text}"),
                    Style::new().add_modifier(Modifier::BOLD),
                )
            } else {
                Line::raw(format!("  {text}"))
            }
        })
        .collect();
    if list.is_empty() {
        lines.push(Line::raw(
            "  no messages yet (headless: message <uri> <text>)",
        ));
    }
    lines.push(Line::styled(
        " Up/Down select  Enter open  Esc close",
        Style::new().fg(Color::DarkGray),
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}

/// One conversation: its last lines (delivery status beside ours) and the text being typed.
fn chat(state: &UiState, frame: &mut Frame, area: Rect, account: &str, peer: &str, input: &str) {
    let rect = centered(
        area,
        area.width.saturating_sub(4).min(76),
        area.height.saturating_sub(2),
    );
    let title = format!(" {} [{}] ", printable(peer), printable(account));
    let inner = frame_box(frame, rect, title, Color::Cyan);
    let width = usize::from(inner.width.saturating_sub(1));
    let rows = usize::from(inner.height.saturating_sub(2));
    let found = state.chats.find(account, peer);
    let chat = found.and_then(|i| state.chats.chats.get(i));
    let mut lines: Vec<Line> = Vec::new();
    for line in chat.map(|c| c.lines.as_slice()).unwrap_or_default() {
        let (mark, style) = if line.dir == "in" {
            ("<", Style::new().fg(Color::LightCyan))
        } else {
            (">", Style::new().fg(Color::White))
        };
        let status = line
            .status
            .as_deref()
            .map(|s| format!("  [{}]", printable(s)))
            .unwrap_or_default();
        // Message text may span lines; each one is shown cleaned of control characters.
        for (n, text) in line.text.lines().enumerate() {
            let prefix = if n == 0 { mark } else { " " };
            let suffix = if n == 0 { status.as_str() } else { "" };
            lines.push(Line::styled(
                truncate(&format!("{prefix} {}{suffix}", printable(text)), width),
                style,
            ));
        }
    }
    let skip = lines.len().saturating_sub(rows);
    let mut lines: Vec<Line> = lines.into_iter().skip(skip).collect();
    while lines.len() < rows {
        lines.insert(0, Line::raw(""));
    }
    let typed = printable(input);
    let shown: String = {
        let count = typed.chars().count();
        typed
            .chars()
            .skip(count.saturating_sub(width.saturating_sub(3)))
            .collect()
    };
    lines.push(Line::styled(
        format!("✎ {shown}▏"),
        Style::new().fg(Color::Yellow),
    ));
    lines.push(Line::styled(
        " Enter sends  Esc closes",
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

/// Lines scrolled by `scroll` in a box's inner area, with a key hint on its bottom row (the
/// diagnosis pane and the messages view).
pub fn scrolled_with_hint(
    frame: &mut Frame,
    inner: Rect,
    lines: Vec<Line<'static>>,
    scroll: u16,
    hint: &'static str,
) {
    let rows = usize::from(inner.height.saturating_sub(1));
    let first = usize::from(scroll).min(lines.len().saturating_sub(rows));
    let mut shown: Vec<Line> = lines.into_iter().skip(first).take(rows).collect();
    shown.resize(rows, Line::raw(""));
    shown.push(Line::styled(hint, Style::new().fg(Color::DarkGray)));
    frame.render_widget(Paragraph::new(shown), inner);
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
        // With several accounts, which one the call came in on.
        match state
            .call_account(call)
            .filter(|_| state.accounts.len() > 1)
        {
            Some(account) => format!(" Incoming call {call} on {} ", printable(account)),
            None => format!(" Incoming call {call} "),
        },
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
        .filter(|c| c.id != call && c.state == CallState::Confirmed)
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
