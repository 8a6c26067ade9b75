//! The ladder diagram of one call: a column per address (ours first, then each peer in order of
//! appearance), one row per SIP message with an arrow from sender to receiver labelled with the
//! message's first line, scrolled with Up/Down.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::{clock_millis, printable, truncate};
use crate::event::Direction;
use crate::export::plantuml::label;
use crate::ui::state::{LogEntry, UiState};

/// Width of the time column on the left (`mm:ss.mmm `).
const TIME_WIDTH: usize = 10;

/// The columns: our address first, then each peer once.
pub fn participants(local: &str, entries: &[&LogEntry]) -> Vec<String> {
    let mut out = vec![local.to_string()];
    for e in entries {
        if !out.contains(&e.peer) {
            out.push(e.peer.clone());
        }
    }
    out
}

/// Where each column's lifeline is, for a drawing `width` characters wide: the outer ones
/// `margin` in from the edges (room for their address), the others evenly between.
fn centers(columns: usize, width: usize, margin: usize) -> Vec<usize> {
    let margin = margin.min(width / 4);
    match columns {
        0 => Vec::new(),
        1 => vec![width / 2],
        n => {
            let span = width.saturating_sub(2 * margin + 1);
            (0..n).map(|i| margin + i * span / (n - 1)).collect()
        }
    }
}

/// One message as a row of the diagram (without the time column).
pub fn arrow_row(centers: &[usize], width: usize, from: usize, to: usize, text: &str) -> String {
    let mut row: Vec<char> = vec![' '; width];
    for &c in centers {
        if let Some(cell) = row.get_mut(c) {
            *cell = '│';
        }
    }
    let (Some(&a), Some(&b)) = (centers.get(from), centers.get(to)) else {
        return row.into_iter().collect();
    };
    let (left, right) = (a.min(b), a.max(b));
    if right > left + 1 {
        for cell in row.iter_mut().take(right).skip(left + 1) {
            *cell = '─';
        }
        if b > a {
            row[right - 1] = '▶';
        } else {
            row[left + 1] = '◀';
        }
        // The label sits on the arrow, between its ends.
        let room = (right - left).saturating_sub(3);
        let text = truncate(text, room.saturating_sub(2));
        let len = text.chars().count();
        if room >= 3 && len > 0 {
            let start = left + 2 + (room - len - 2) / 2 + 1;
            for (i, ch) in text.chars().enumerate() {
                row[start + i] = ch;
            }
            row[start - 1] = ' ';
            row[start + len] = ' ';
        }
    }
    row.into_iter().collect()
}

pub fn render(state: &UiState, frame: &mut Frame, area: Rect, call_id: &str, scroll: u16) {
    // The whole screen between the top status line and the bottom hints.
    let rect = Rect::new(
        area.x,
        area.y.saturating_add(1).min(area.bottom()),
        area.width,
        area.height.saturating_sub(2),
    );
    let color = Color::LightCyan;
    let block = Block::bordered()
        .title(Span::styled(
            format!(" Ladder: {} ", truncate(&printable(call_id), 50)),
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        ))
        .border_style(Style::new().fg(color));
    let inner = block.inner(rect);
    frame.render_widget(Clear, rect);
    frame.render_widget(block, rect);
    let [head, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(inner);

    let entries = state.call_log(call_id);
    let local = state.listen.as_deref().unwrap_or("us");
    let columns = participants(local, &entries);
    let width = usize::from(inner.width).saturating_sub(TIME_WIDTH);
    let longest = columns.iter().map(|c| c.chars().count()).max().unwrap_or(0);
    let centers = centers(columns.len(), width, longest / 2 + 1);
    let slot = width / columns.len().max(1);

    // Header: each address centred over its lifeline.
    let mut header: Vec<char> = vec![' '; width];
    for (name, &c) in columns.iter().zip(&centers) {
        let name = truncate(&printable(name), slot.saturating_sub(1));
        let len = name.chars().count();
        let start = c.saturating_sub(len / 2);
        for (i, ch) in name.chars().enumerate() {
            if let Some(cell) = header.get_mut(start + i) {
                *cell = ch;
            }
        }
    }
    let bold = Style::new().add_modifier(Modifier::BOLD);
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::raw(" ".repeat(TIME_WIDTH)),
            Span::styled(header.into_iter().collect::<String>(), bold),
        ])),
        head,
    );

    let rows: Vec<Line> = entries
        .iter()
        .map(|e| {
            let peer = columns.iter().position(|c| *c == e.peer).unwrap_or(0);
            let (from, to) = match e.dir {
                Direction::Out => (0, peer),
                Direction::In => (peer, 0),
            };
            let text = printable(&label(e.summary.as_bytes()));
            Line::from(vec![
                Span::styled(
                    format!("{:<TIME_WIDTH$}", clock_millis(e.at)),
                    Style::new().fg(Color::DarkGray),
                ),
                Span::styled(
                    arrow_row(&centers, width, from, to, &text),
                    super::log::summary_style(&e.summary),
                ),
            ])
        })
        .collect();
    let total = u16::try_from(rows.len()).unwrap_or(u16::MAX);
    let scroll = scroll.min(total.saturating_sub(body.height));
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new(" no SIP messages of this call in the trace"),
            body,
        );
    } else {
        frame.render_widget(Paragraph::new(rows).scroll((scroll, 0)), body);
    }
    let hint = Line::styled(
        format!(
            "{} messages  Up/Down scroll  e export  l/Esc close",
            entries.len()
        ),
        Style::new().fg(Color::DarkGray),
    )
    .right_aligned();
    frame.render_widget(Paragraph::new(hint), footer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_point_from_sender_to_receiver_with_the_label_on_them() {
        let c = centers(2, 40, 10);
        assert_eq!(c, vec![10, 29]);
        let right = arrow_row(&c, 40, 0, 1, "INVITE");
        assert!(right.contains("─ INVITE ─"), "{right}");
        assert!(right.contains("▶│"), "{right}");
        let left = arrow_row(&c, 40, 1, 0, "200 OK");
        assert!(left.contains("│◀"), "{left}");
        assert!(left.contains(" 200 OK "), "{left}");
    }
}
