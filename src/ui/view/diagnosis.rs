//! The diagnosis pane (`w`): what is wrong now, then what was wrong before, each finding with
//! its message, what to do and the evidence behind it.

use ratatui::Frame;
use ratatui::layout::{Margin, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};

use super::popup::{frame_box, scrolled_with_hint};
use super::{clock, printable};
use crate::ui::state::{FindingView, UiState};

/// Width the scroll limit assumes (the pane is at least this narrow on small terminals).
const NARROW: usize = 40;

pub fn render(state: &UiState, frame: &mut Frame, area: Rect, scroll: u16) {
    let rect = area.inner(Margin::new(1, 1));
    let active = state.active_findings();
    let title = format!(
        " Diagnosis: {active} now, {} before ",
        state.findings.len() - active
    );
    let inner = frame_box(frame, rect, title, Color::Magenta);
    let lines = lines(state, usize::from(inner.width));
    scrolled_with_hint(frame, inner, lines, scroll, " Up/Down scroll  w/Esc close");
}

/// How many lines the pane holds at most (for the scroll limit).
pub fn line_count(state: &UiState) -> usize {
    lines(state, NARROW).len()
}

fn lines(state: &UiState, width: usize) -> Vec<Line<'static>> {
    let heading = Style::new().add_modifier(Modifier::BOLD);
    let mut out = Vec::new();
    let now: Vec<&FindingView> = state.findings.iter().filter(|v| v.is_active()).collect();
    let before: Vec<&FindingView> = state
        .findings
        .iter()
        .rev()
        .filter(|v| !v.is_active())
        .collect();
    out.push(Line::styled(" Now", heading));
    if now.is_empty() {
        out.push(Line::styled(
            "   nothing wrong that sipterm can see",
            Style::new().fg(Color::Green),
        ));
    }
    for view in now {
        finding_lines(view, width, true, &mut out);
    }
    if !before.is_empty() {
        out.push(Line::raw(""));
        out.push(Line::styled(" Before (newest first)", heading));
        for view in before {
            finding_lines(view, width, false, &mut out);
        }
    }
    out
}

fn finding_lines(view: &FindingView, width: usize, active: bool, out: &mut Vec<Line<'static>>) {
    let finding = &view.finding;
    let style = if active {
        super::diagnosis_style(finding.severity)
    } else {
        Style::new().fg(Color::DarkGray)
    };
    let when = match view.cleared_at {
        Some(end) => format!("{}-{}", clock(view.raised_at), clock(end)),
        None => format!("since {}", clock(view.raised_at)),
    };
    let call = finding
        .call
        .map(|id| format!("call {id}  "))
        .unwrap_or_default();
    out.push(Line::from(vec![
        Span::styled(if active { " ● " } else { " ○ " }, style),
        Span::styled(
            format!("{} ", finding.severity.as_str()),
            style.add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!("{call}{}  ", finding.code)),
        Span::styled(when, Style::new().fg(Color::DarkGray)),
    ]));
    let body = if active {
        Style::new()
    } else {
        Style::new().fg(Color::Gray)
    };
    for text in wrap(&printable(&finding.message), width.saturating_sub(4)) {
        out.push(Line::styled(format!("   {text}"), body));
    }
    for text in wrap(
        &format!("→ {}", printable(&finding.advice)),
        width.saturating_sub(4),
    ) {
        out.push(Line::styled(
            format!("   {text}"),
            Style::new().fg(Color::Green),
        ));
    }
    let evidence: Vec<String> = finding
        .evidence
        .iter()
        .map(|(name, value)| format!("{name}: {}", printable(value)))
        .collect();
    if !evidence.is_empty() {
        for text in wrap(&evidence.join(" · "), width.saturating_sub(4)) {
            out.push(Line::styled(
                format!("   {text}"),
                Style::new().fg(Color::DarkGray),
            ));
        }
    }
}

/// Word wrap to `width` columns (a word longer than that is cut).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(10);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let mut word: String = word.to_string();
        while word.chars().count() > width {
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            lines.push(head);
        }
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if needed > width && !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_words_and_cuts_overlong_ones() {
        assert_eq!(
            wrap("one two three four", 10),
            vec!["one two", "three four"]
        );
        assert_eq!(
            wrap("abcdefghijklmnop x", 10),
            vec!["abcdefghij", "klmnop x"]
        );
    }
}
