//! Keys and mouse clicks -> `Action`. The mapping depends on what has the keyboard: a popup,
//! the log search, the dial field, or the panes (where letters are commands).

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use ratatui::layout::Rect;

use super::action::Action;
use super::state::{Focus, Popup, UiState};
use super::view::dialpad::{self, PadKey};

pub fn key_action(state: &UiState, key: KeyEvent) -> Option<Action> {
    // Windows reports releases too; one action per press.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('q')) {
        return Some(if state.popup == Some(Popup::QuitConfirm) {
            Action::ConfirmQuit
        } else {
            Action::AskQuit
        });
    }
    // Alt-letters are no command here, and typing them would put stray letters in a field
    // (a fast `Esc x` arrives as Alt-x).
    if ctrl || key.modifiers.contains(KeyModifiers::ALT) {
        return None;
    }
    if key.code == KeyCode::F(1) {
        return Some(Action::ShowHelp);
    }
    // F2 works from the dial field too, where `s` is text: the bottom line's hint names it.
    if key.code == KeyCode::F(2) {
        return Some(if matches!(state.popup, Some(Popup::Messages { .. })) {
            Action::Cancel
        } else {
            Action::ShowMessages
        });
    }
    match &state.popup {
        Some(Popup::QuitConfirm) => {
            return Some(match key.code {
                KeyCode::Char('y' | 'Y') => Action::ConfirmQuit,
                _ => Action::Cancel,
            });
        }
        Some(Popup::Incoming { .. }) => {
            return match key.code {
                KeyCode::Char('a') | KeyCode::Enter => Some(Action::Answer),
                KeyCode::Char('r') => Some(Action::Reject),
                KeyCode::Esc => Some(Action::Cancel),
                _ => None,
            };
        }
        Some(Popup::Transfer { .. } | Popup::Consult { .. }) => return text_key(key.code),
        Some(Popup::TransferRequest { .. }) => {
            return match key.code {
                KeyCode::Char('a') | KeyCode::Enter => Some(Action::Answer),
                KeyCode::Char('r') | KeyCode::Esc => Some(Action::Reject),
                _ => None,
            };
        }
        Some(Popup::Contacts { .. }) => {
            return match key.code {
                KeyCode::Esc | KeyCode::Char('q' | 'c') => Some(Action::Cancel),
                KeyCode::Enter => Some(Action::Submit),
                KeyCode::Char('n') => Some(Action::NewContact),
                KeyCode::Char('e') => Some(Action::EditContact),
                KeyCode::Char('x') => Some(Action::DeleteContact),
                KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
                _ => None,
            };
        }
        Some(Popup::Ladder { .. }) => {
            return match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q' | 'l') => {
                    Some(Action::ToggleLadder)
                }
                KeyCode::Char('e') => Some(Action::ExportCall),
                KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
                _ => None,
            };
        }
        Some(Popup::Messages { .. }) => {
            return match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q' | 's') => Some(Action::Cancel),
                KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
                _ => None,
            };
        }
        Some(Popup::Diagnosis { .. }) => {
            return match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q' | 'w') => {
                    Some(Action::ToggleDiagnosis)
                }
                KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
                _ => None,
            };
        }
        Some(Popup::Devices { .. }) => {
            return match key.code {
                KeyCode::Esc | KeyCode::Char('q' | 'D') => Some(Action::Cancel),
                KeyCode::Enter => Some(Action::Submit),
                KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
                _ => None,
            };
        }
        Some(Popup::Chats { .. }) => {
            return match key.code {
                KeyCode::Esc | KeyCode::Char('q' | 'M') => Some(Action::Cancel),
                KeyCode::Enter => Some(Action::Submit),
                KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
                _ => None,
            };
        }
        // Typing a message or a contact: every printable key is text.
        Some(Popup::Chat { .. } | Popup::ContactEdit { .. }) => return text_key(key.code),
        Some(Popup::Help | Popup::Message { .. }) => {
            return match key.code {
                KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q' | '?') => Some(Action::Cancel),
                KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
                KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
                _ => None,
            };
        }
        None => {}
    }
    if state.searching || state.focus == Focus::Dial {
        return text_key(key.code);
    }
    match key.code {
        KeyCode::Char(c @ ('0'..='9' | '*' | '#')) => Some(Action::Digit(c)),
        KeyCode::Char('a') => Some(Action::Answer),
        KeyCode::Char('r') => Some(Action::Reject),
        KeyCode::Char('h') => Some(Action::Hangup),
        KeyCode::Char('x') => Some(Action::ToggleHold),
        KeyCode::Char('m') => Some(Action::ToggleMute),
        KeyCode::Char('t') => Some(Action::StartTransfer),
        KeyCode::Char('T') => Some(Action::AttendedTransfer),
        KeyCode::Char('J') => Some(Action::Conference),
        KeyCode::Char('S') => Some(Action::Split),
        KeyCode::Char('N') => Some(Action::ToggleDnd),
        KeyCode::Char('p') => Some(Action::ToggleProcessing),
        KeyCode::Char('R') => Some(Action::ToggleRecording),
        KeyCode::Char('D') => Some(Action::ShowDevices),
        KeyCode::Char('A') => Some(Action::CycleAccount),
        KeyCode::Char('E') => Some(Action::ToggleAccount),
        KeyCode::Char('V') => Some(Action::DialVoicemail),
        KeyCode::Char('M') => Some(Action::ShowChats),
        KeyCode::Char('/') => Some(Action::StartSearch),
        KeyCode::Char('l') => Some(Action::ToggleLadder),
        KeyCode::Char('w') => Some(Action::ToggleDiagnosis),
        KeyCode::Char('s') => Some(Action::ShowMessages),
        KeyCode::Char('e') => Some(Action::ExportCall),
        KeyCode::Char('f') => Some(Action::CycleCallFilter),
        KeyCode::Char('F') => Some(Action::CycleMethodFilter),
        KeyCode::Char('?') => Some(Action::ShowHelp),
        KeyCode::Char('c') => Some(Action::ShowContacts),
        KeyCode::Char('q') => Some(Action::AskQuit),
        KeyCode::Char('d' | 'i') => Some(Action::FocusDial),
        KeyCode::Tab => Some(Action::FocusNext),
        KeyCode::Enter => Some(Action::Submit),
        KeyCode::Esc => Some(Action::Cancel),
        KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
        KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
        _ => None,
    }
}

/// Keys while editing text: printable characters are text, not commands.
fn text_key(code: KeyCode) -> Option<Action> {
    match code {
        KeyCode::Char(c) => Some(Action::Type(c)),
        KeyCode::Backspace => Some(Action::Backspace),
        KeyCode::Enter => Some(Action::Submit),
        KeyCode::Esc => Some(Action::Cancel),
        KeyCode::Up => Some(Action::Up),
        KeyCode::Down => Some(Action::Down),
        KeyCode::Tab => Some(Action::FocusNext),
        _ => None,
    }
}

/// A left click on the dial pad (drawn in `pad_area`) presses that button; one on the bottom
/// line (`bottom_area`) opens the status messages, where a cut-off message is read in full.
pub fn mouse_action(
    state: &UiState,
    pad_area: Rect,
    bottom_area: Rect,
    mouse: MouseEvent,
) -> Option<Action> {
    if mouse.kind != MouseEventKind::Down(MouseButton::Left) || state.popup.is_some() {
        return None;
    }
    if bottom_area.contains(ratatui::layout::Position::new(mouse.column, mouse.row)) {
        return Some(Action::ShowMessages);
    }
    Some(
        match dialpad::hit_test(pad_area, mouse.column, mouse.row)? {
            PadKey::Digit(c) => Action::Digit(c),
            PadKey::Call => Action::CallButton,
            PadKey::Hangup => Action::Hangup,
        },
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn state() -> UiState {
        UiState::new(&["alice".into()], 10, Instant::now())
    }

    #[test]
    fn letters_are_text_in_the_dial_field_and_commands_outside_it() {
        let mut s = state();
        assert_eq!(
            key_action(&s, press(KeyCode::Char('h'))),
            Some(Action::Type('h'))
        );
        s.focus = Focus::Calls;
        assert_eq!(
            key_action(&s, press(KeyCode::Char('h'))),
            Some(Action::Hangup)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('a'))),
            Some(Action::Answer)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('x'))),
            Some(Action::ToggleHold)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('m'))),
            Some(Action::ToggleMute)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('t'))),
            Some(Action::StartTransfer)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('/'))),
            Some(Action::StartSearch)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('?'))),
            Some(Action::ShowHelp)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('q'))),
            Some(Action::AskQuit)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('7'))),
            Some(Action::Digit('7'))
        );
        assert_eq!(key_action(&s, press(KeyCode::Tab)), Some(Action::FocusNext));
        assert_eq!(
            key_action(&s, press(KeyCode::Char('c'))),
            Some(Action::ShowContacts)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('l'))),
            Some(Action::ToggleLadder)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('e'))),
            Some(Action::ExportCall)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('f'))),
            Some(Action::CycleCallFilter)
        );
        assert_eq!(
            key_action(&s, KeyEvent::new(KeyCode::Char('F'), KeyModifiers::SHIFT)),
            Some(Action::CycleMethodFilter)
        );
        // In the dial field they are letters (`f` in `sip:fred@...`).
        s.focus = Focus::Dial;
        assert_eq!(
            key_action(&s, press(KeyCode::Char('f'))),
            Some(Action::Type('f'))
        );
    }

    #[test]
    fn contacts_popup_keys() {
        let mut s = state();
        s.popup = Some(Popup::Contacts { selected: 0 });
        assert_eq!(key_action(&s, press(KeyCode::Down)), Some(Action::Down));
        assert_eq!(key_action(&s, press(KeyCode::Char('k'))), Some(Action::Up));
        assert_eq!(key_action(&s, press(KeyCode::Enter)), Some(Action::Submit));
        assert_eq!(key_action(&s, press(KeyCode::Esc)), Some(Action::Cancel));
        assert_eq!(key_action(&s, press(KeyCode::Char('5'))), None);
    }

    #[test]
    fn quit_confirm_takes_y_and_anything_else_is_no() {
        let mut s = state();
        s.popup = Some(Popup::QuitConfirm);
        assert_eq!(
            key_action(&s, press(KeyCode::Char('y'))),
            Some(Action::ConfirmQuit)
        );
        assert_eq!(
            key_action(&s, press(KeyCode::Char('n'))),
            Some(Action::Cancel)
        );
        assert_eq!(
            key_action(&s, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::ConfirmQuit)
        );
    }

    #[test]
    fn incoming_popup_keys() {
        let mut s = state();
        s.popup = Some(Popup::Incoming {
            call: 1,
            remote: "sip:bob@b".into(),
        });
        assert_eq!(
            key_action(&s, press(KeyCode::Char('a'))),
            Some(Action::Answer)
        );
        assert_eq!(key_action(&s, press(KeyCode::Enter)), Some(Action::Answer));
        assert_eq!(
            key_action(&s, press(KeyCode::Char('r'))),
            Some(Action::Reject)
        );
        assert_eq!(key_action(&s, press(KeyCode::Esc)), Some(Action::Cancel));
        // Typing does not leak into the dial field behind the popup.
        assert_eq!(key_action(&s, press(KeyCode::Char('5'))), None);
    }

    #[test]
    fn alt_letters_do_not_reach_the_dial_field() {
        let s = state();
        assert_eq!(
            key_action(&s, KeyEvent::new(KeyCode::Char('x'), KeyModifiers::ALT)),
            None
        );
    }

    #[test]
    fn search_mode_takes_letters_as_text() {
        let mut s = state();
        s.focus = Focus::Log;
        s.searching = true;
        assert_eq!(
            key_action(&s, press(KeyCode::Char('q'))),
            Some(Action::Type('q'))
        );
    }

    #[test]
    fn ctrl_c_asks_before_quitting() {
        let s = state();
        assert_eq!(
            key_action(&s, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::AskQuit)
        );
    }

    /// How the help and the README name a key: `x`, `F`, `Enter`, `Ctrl-C`, `F1`, ...
    fn key_name(key: &KeyEvent) -> String {
        match key.code {
            KeyCode::Char(c) if key.modifiers.contains(KeyModifiers::CONTROL) => {
                format!("Ctrl-{}", c.to_ascii_uppercase())
            }
            KeyCode::Char(c) => c.to_string(),
            KeyCode::F(n) => format!("F{n}"),
            KeyCode::Esc => "Esc".into(),
            other => format!("{other:?}"),
        }
    }

    /// The key names in a help key column: `a / r`, `Up/Down j/k`, `0-9 * #`, `? or F1`,
    /// `q, Ctrl-C/Q` (the `Q` inherits the `Ctrl-`).
    fn help_key_names(column: &str) -> Vec<String> {
        let mut names = Vec::new();
        for token in column
            .replace(" / ", " ")
            .replace(',', " ")
            .split_whitespace()
        {
            if token == "or" {
                continue;
            }
            if token == "0-9" {
                names.extend(('0'..='9').map(String::from));
                continue;
            }
            let parts: Vec<&str> = if token == "/" {
                vec![token]
            } else {
                token.split('/').collect()
            };
            let mut prefix = "";
            for part in parts {
                if let Some(rest) = part.strip_prefix("Ctrl-") {
                    prefix = "Ctrl-";
                    names.push(format!("Ctrl-{rest}"));
                } else {
                    names.push(format!("{prefix}{part}"));
                }
            }
        }
        names
    }

    /// The key names in the first column of the README's keys table (its `code` spans,
    /// `0`-`9` for the digits).
    fn readme_key_names() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let table = readme
            .split("### Keys")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_default();
        let mut names = Vec::new();
        for line in table.lines().filter(|l| l.starts_with("| ")) {
            let column = line.split('|').nth(1).unwrap_or_default();
            if column.contains("`0`-`9`") {
                names.extend(('0'..='9').map(String::from));
            }
            names.extend(column.split('`').skip(1).step_by(2).map(String::from));
            names.extend(column.split_whitespace().map(String::from));
        }
        names
    }

    /// Every key that does something, in every place the keyboard can be, is in the help
    /// overlay and in the README's keys table. Typed text and the quit question (its popup
    /// says `y yes, any key no`) are not key bindings.
    #[test]
    fn help_and_readme_name_every_bound_key() {
        let help: Vec<String> = crate::ui::view::popup::HELP
            .iter()
            .flat_map(|(keys, _)| help_key_names(keys))
            .collect();
        let readme = readme_key_names();
        let mut candidates: Vec<KeyEvent> = (' '..='~').map(|c| press(KeyCode::Char(c))).collect();
        candidates
            .extend(('a'..='z').map(|c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)));
        candidates.extend((1..=12).map(|n| press(KeyCode::F(n))));
        candidates.extend(
            [
                KeyCode::Enter,
                KeyCode::Esc,
                KeyCode::Tab,
                KeyCode::BackTab,
                KeyCode::Backspace,
                KeyCode::Delete,
                KeyCode::Insert,
                KeyCode::Up,
                KeyCode::Down,
                KeyCode::Left,
                KeyCode::Right,
                KeyCode::Home,
                KeyCode::End,
                KeyCode::PageUp,
                KeyCode::PageDown,
            ]
            .map(press),
        );
        let entry = crate::ui::state::LogEntry::new(
            std::time::Duration::ZERO,
            crate::event::Direction::In,
            "127.0.0.1:5060".into(),
            "OPTIONS sip:a@b SIP/2.0".into(),
            std::sync::Arc::from(&b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"[..]),
        );
        let mut places: Vec<(String, UiState)> = Vec::new();
        for focus in [Focus::Dial, Focus::Calls, Focus::Log] {
            let mut s = state();
            s.focus = focus;
            places.push((format!("{focus:?}"), s));
        }
        let mut searching = state();
        searching.searching = true;
        places.push(("search".into(), searching));
        for popup in [
            Popup::Help,
            Popup::Message { entry, scroll: 0 },
            Popup::Incoming {
                call: 1,
                remote: "sip:bob@b".into(),
            },
            Popup::Contacts { selected: 0 },
            Popup::Devices { selected: 0 },
            Popup::Ladder {
                call_id: "x".into(),
                scroll: 0,
            },
            Popup::Diagnosis { scroll: 0 },
            Popup::Messages { scroll: 0 },
            Popup::Transfer {
                call: 1,
                target: String::new(),
            },
            Popup::Consult {
                call: 1,
                target: String::new(),
            },
            Popup::TransferRequest {
                call: 1,
                target: "sip:carol@c".into(),
            },
        ] {
            let mut s = state();
            s.focus = Focus::Calls;
            let place = format!("{popup:?}");
            s.popup = Some(popup);
            places.push((place, s));
        }
        let mut missing = Vec::new();
        for (place, s) in &places {
            for key in &candidates {
                let Some(action) = key_action(s, *key) else {
                    continue;
                };
                if matches!(action, Action::Type(_)) {
                    continue;
                }
                let name = key_name(key);
                // Backspace edits text: the README lists it, the full help has no room.
                if name != "Backspace" && !help.contains(&name) {
                    missing.push(format!("help lacks {name} ({place}: {action:?})"));
                }
                if !readme.contains(&name) {
                    missing.push(format!("README lacks {name} ({place}: {action:?})"));
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }

    #[test]
    fn clicks_on_the_pad_press_its_buttons() {
        let s = state();
        let pad = Rect::new(0, 1, 26, 13);
        let bottom = Rect::new(0, 23, 80, 1);
        let click = |key: PadKey| {
            let at = dialpad::button_areas(pad)
                .into_iter()
                .find(|(k, _)| *k == key)
                .map(|(_, r)| r);
            let at = at.unwrap_or_default();
            MouseEvent {
                kind: MouseEventKind::Down(MouseButton::Left),
                column: at.x + at.width / 2,
                row: at.y,
                modifiers: KeyModifiers::NONE,
            }
        };
        assert_eq!(
            mouse_action(&s, pad, bottom, click(PadKey::Digit('5'))),
            Some(Action::Digit('5'))
        );
        assert_eq!(
            mouse_action(&s, pad, bottom, click(PadKey::Call)),
            Some(Action::CallButton)
        );
        assert_eq!(
            mouse_action(&s, pad, bottom, click(PadKey::Hangup)),
            Some(Action::Hangup)
        );
        let outside = MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 60,
            row: 5,
            modifiers: KeyModifiers::NONE,
        };
        assert_eq!(mouse_action(&s, pad, bottom, outside), None);
    }

    #[test]
    fn the_status_messages_open_with_s_f2_or_a_click_on_the_bottom_line() {
        let mut s = state();
        // In the dial field `s` is a letter of the number; F2 works there too.
        assert_eq!(
            key_action(&s, press(KeyCode::Char('s'))),
            Some(Action::Type('s'))
        );
        assert_eq!(
            key_action(&s, press(KeyCode::F(2))),
            Some(Action::ShowMessages)
        );
        s.focus = Focus::Calls;
        assert_eq!(
            key_action(&s, press(KeyCode::Char('s'))),
            Some(Action::ShowMessages)
        );
        let bottom = Rect::new(0, 20, 72, 4);
        let click = MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column: 40,
            row: 22,
            modifiers: KeyModifiers::NONE,
        };
        assert_eq!(
            mouse_action(&s, Rect::new(0, 1, 26, 13), bottom, click),
            Some(Action::ShowMessages)
        );
        // Open, the same keys (and Esc) close it; Up/Down scroll.
        s.popup = Some(Popup::Messages { scroll: 0 });
        for code in [KeyCode::Char('s'), KeyCode::F(2), KeyCode::Esc] {
            assert_eq!(
                key_action(&s, press(code)),
                Some(Action::Cancel),
                "{code:?}"
            );
        }
        assert_eq!(key_action(&s, press(KeyCode::Down)), Some(Action::Down));
    }
}
