//! The dial pad: the dial field, the 12 digit keys and the call / hang-up buttons. The same
//! geometry (`button_areas`) draws the buttons and hit-tests mouse clicks, so they agree.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::{border_style, printable};
use crate::ui::state::{Focus, UiState};

/// Rows the pad needs: border, field, blank, four key rows with gaps, blank, buttons, border.
pub const HEIGHT: u16 = 13;

const DIGIT_ROWS: [[char; 3]; 4] = [
    ['1', '2', '3'],
    ['4', '5', '6'],
    ['7', '8', '9'],
    ['*', '0', '#'],
];
const DIGIT_WIDTH: u16 = 5;
const DIGIT_PITCH: u16 = 8;
const CALL_LABEL: &str = "[ Call ]";
const HANGUP_LABEL: &str = "[ Hang up ]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadKey {
    Digit(char),
    Call,
    Hangup,
}

fn inner(area: Rect) -> Rect {
    Block::bordered().inner(area)
}

/// Every button and where it is drawn inside the pad at `area`; buttons that do not fit are
/// left out (a small terminal shows, and accepts clicks on, what fits).
pub fn button_areas(area: Rect) -> Vec<(PadKey, Rect)> {
    let inner = inner(area);
    let mut buttons = Vec::with_capacity(14);
    for (row, digits) in (0u16..).zip(DIGIT_ROWS) {
        for (column, digit) in (0u16..).zip(digits) {
            buttons.push((
                PadKey::Digit(digit),
                Rect::new(
                    inner.x + 1 + column * DIGIT_PITCH,
                    inner.y + 2 + row * 2,
                    DIGIT_WIDTH,
                    1,
                ),
            ));
        }
    }
    let button_row = inner.y + 10;
    let call_width = CALL_LABEL.len() as u16;
    buttons.push((
        PadKey::Call,
        Rect::new(inner.x + 1, button_row, call_width, 1),
    ));
    buttons.push((
        PadKey::Hangup,
        Rect::new(
            inner.x + 2 + call_width,
            button_row,
            HANGUP_LABEL.len() as u16,
            1,
        ),
    ));
    buttons.retain(|(_, rect)| inner.contains(rect.as_position()) && rect.right() <= inner.right());
    buttons
}

/// The button under a click at (`column`, `row`), if any.
pub fn hit_test(area: Rect, column: u16, row: u16) -> Option<PadKey> {
    let at = ratatui::layout::Position::new(column, row);
    button_areas(area)
        .into_iter()
        .find(|(_, rect)| rect.contains(at))
        .map(|(key, _)| key)
}

pub fn render(state: &UiState, frame: &mut Frame, area: Rect) {
    let focused = state.focus == Focus::Dial && state.popup.is_none() && !state.searching;
    // With several accounts the title names the one calls go out on (`A` cycles it).
    let title = match state.outgoing_account_name() {
        Some(name) if state.accounts.len() > 1 => {
            format!(" Dial · {} (A) ", super::printable(name))
        }
        _ => " Dial ".to_string(),
    };
    let block = Block::bordered()
        .title(title)
        .border_style(border_style(focused));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if inner.height == 0 || inner.width < 3 {
        return;
    }

    // The field shows the end of the text (where the cursor is) when it is too long.
    let room = usize::from(inner.width.saturating_sub(3));
    let text = printable(&state.dial.text);
    let skip = text.chars().count().saturating_sub(room);
    let visible: String = text.chars().skip(skip).collect();
    let mut field = vec![
        Span::styled("> ", Style::new().fg(Color::Cyan)),
        Span::raw(visible),
    ];
    if focused {
        field.push(Span::styled("█", Style::new().fg(Color::Gray)));
    } else if state.dial.text.is_empty() {
        field.push(Span::styled(
            "number or URI",
            Style::new().fg(Color::DarkGray),
        ));
    }
    frame.render_widget(
        Paragraph::new(Line::from(field)),
        Rect::new(inner.x, inner.y, inner.width, 1),
    );

    for (key, rect) in button_areas(area) {
        let (label, style) = match key {
            PadKey::Digit(c) => (format!("[ {c} ]"), Style::new().fg(Color::White)),
            PadKey::Call => (
                CALL_LABEL.to_string(),
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD),
            ),
            PadKey::Hangup => (
                HANGUP_LABEL.to_string(),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ),
        };
        frame.render_widget(Paragraph::new(Span::styled(label, style)), rect);
    }
}

/// The key hints under the pad (the full list is in the help popup).
pub fn render_hints(_state: &UiState, frame: &mut Frame, area: Rect) {
    if area.height < 3 {
        return;
    }
    let key = Style::new().fg(Color::Cyan);
    let hint = |pairs: &[(&'static str, &'static str)]| {
        Line::from(
            pairs
                .iter()
                .flat_map(|(k, what)| [Span::styled(*k, key), Span::raw(*what)])
                .collect::<Vec<_>>(),
        )
    };
    let lines = vec![
        hint(&[("Enter", " dial/answer")]),
        hint(&[("a", " answer  "), ("r", " reject")]),
        hint(&[("h", " hang up "), ("x", " hold")]),
        hint(&[("m", " mute    "), ("t", " transfer")]),
        hint(&[("Tab", " focus "), ("/", " search")]),
        hint(&[("?", " help    "), ("q", " quit")]),
        // Where a status message cut at the screen's edge (or already replaced) is read.
        hint(&[("F2", " messages")]),
    ];
    let block = Block::bordered()
        .title(" Keys ")
        .border_style(border_style(false));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAD: Rect = Rect {
        x: 0,
        y: 1,
        width: 26,
        height: HEIGHT,
    };

    #[test]
    fn every_button_is_reachable_by_a_click() {
        let buttons = button_areas(PAD);
        assert_eq!(buttons.len(), 14);
        for (key, rect) in buttons {
            for column in rect.x..rect.right() {
                assert_eq!(hit_test(PAD, column, rect.y), Some(key));
            }
        }
    }

    #[test]
    fn clicks_map_to_the_digit_drawn_there() {
        // Row 1 of the screen is the border, row 2 the field, row 3 blank, row 4 keys 1 2 3.
        assert_eq!(hit_test(PAD, 3, 4), Some(PadKey::Digit('1')));
        assert_eq!(hit_test(PAD, 11, 6), Some(PadKey::Digit('5')));
        assert_eq!(hit_test(PAD, 19, 10), Some(PadKey::Digit('#')));
        assert_eq!(hit_test(PAD, 11, 10), Some(PadKey::Digit('0')));
        assert_eq!(hit_test(PAD, 2, 12), Some(PadKey::Call));
        assert_eq!(hit_test(PAD, 15, 12), Some(PadKey::Hangup));
    }

    #[test]
    fn gaps_borders_and_the_field_are_not_buttons() {
        assert_eq!(hit_test(PAD, 7, 4), None, "gap between 1 and 2");
        assert_eq!(hit_test(PAD, 3, 5), None, "gap between rows");
        assert_eq!(hit_test(PAD, 3, 2), None, "the dial field");
        assert_eq!(hit_test(PAD, 0, 4), None, "the border");
        assert_eq!(hit_test(PAD, 40, 4), None, "right of the pad");
    }

    #[test]
    fn a_squashed_pad_offers_only_the_buttons_it_draws() {
        let small = Rect::new(0, 0, 26, 7);
        let keys: Vec<PadKey> = button_areas(small).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                PadKey::Digit('1'),
                PadKey::Digit('2'),
                PadKey::Digit('3'),
                PadKey::Digit('4'),
                PadKey::Digit('5'),
                PadKey::Digit('6')
            ]
        );
    }
}
