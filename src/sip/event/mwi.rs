//! RFC 3842 message-summary bodies: is voicemail waiting, and how many messages.

/// Longest body read (a message-summary is a few lines).
pub const MAX_SUMMARY_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageSummary {
    pub waiting: bool,
    /// New and old voice messages (`Voice-Message: 2/8`), when given.
    pub new: Option<u32>,
    pub old: Option<u32>,
    /// The `Message-Account` URI, when given.
    pub account: Option<String>,
}

/// Parses a message-summary body; None when it is not one (no `Messages-Waiting` line).
pub fn parse(body: &[u8]) -> Option<MessageSummary> {
    if body.len() > MAX_SUMMARY_BYTES {
        return None;
    }
    let text = std::str::from_utf8(body).ok()?;
    let mut summary = MessageSummary::default();
    let mut seen = false;
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "messages-waiting" => {
                seen = true;
                summary.waiting = value.eq_ignore_ascii_case("yes");
            }
            "message-account" => {
                summary.account = Some(
                    value
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(256)
                        .collect(),
                )
            }
            "voice-message" => {
                // `new/old` with an optional `(urgent_new/urgent_old)`.
                let counts = value.split_whitespace().next().unwrap_or("");
                if let Some((new, old)) = counts.split_once('/') {
                    summary.new = new.trim().parse().ok();
                    summary.old = old.trim().parse().ok();
                }
            }
            _ => {}
        }
    }
    seen.then_some(summary)
}

/// A message-summary body (for tests and peers).
pub fn render(summary: &MessageSummary) -> String {
    let mut out = format!(
        "Messages-Waiting: {}\r\n",
        if summary.waiting { "yes" } else { "no" }
    );
    if let Some(account) = &summary.account {
        out.push_str(&format!("Message-Account: {account}\r\n"));
    }
    if let (Some(new), Some(old)) = (summary.new, summary.old) {
        out.push_str(&format!("Voice-Message: {new}/{old}\r\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3842_examples_parse() {
        let body = b"Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/8 (0/2)\r\n";
        assert_eq!(
            parse(body),
            Some(MessageSummary {
                waiting: true,
                new: Some(2),
                old: Some(8),
                account: Some("sip:alice@vmail.example.com".into()),
            })
        );
        assert_eq!(
            parse(b"Messages-Waiting: no\r\n").map(|s| s.waiting),
            Some(false)
        );
        assert_eq!(parse(b"hello"), None);
        assert_eq!(parse(&vec![b'a'; MAX_SUMMARY_BYTES + 1]), None);
        let summary = MessageSummary {
            waiting: true,
            new: Some(1),
            old: Some(0),
            account: None,
        };
        assert_eq!(parse(render(&summary).as_bytes()), Some(summary));
    }
}
