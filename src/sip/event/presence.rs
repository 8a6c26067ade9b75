//! Presence (RFC 3856, PIDF RFC 3863 with RPID RFC 4480 activities) and dialog state
//! (RFC 4235 dialog-info) documents: read theirs into a busy lamp, write ours.

use std::collections::BTreeMap;

use super::Availability;
use super::xml::{self, Element, XmlError};

/// What a PIDF document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceInfo {
    pub availability: Availability,
    /// The first note, cut and without control characters (it reaches the terminal).
    pub note: Option<String>,
}

/// Longest note kept.
pub const MAX_NOTE_CHARS: usize = 120;

fn clean_note(text: &str) -> Option<String> {
    let note: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NOTE_CHARS)
        .collect();
    let note = note.trim().to_string();
    (!note.is_empty()).then_some(note)
}

/// Reads a PIDF body. An empty body (a presence server that has nothing published for the
/// contact) means offline.
pub fn parse_pidf(body: &[u8]) -> Result<PresenceInfo, XmlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PresenceInfo {
            availability: Availability::Offline,
            note: None,
        });
    }
    let root = xml::parse(body)?;
    if root.name != "presence" {
        return Err(XmlError::Malformed(format!(
            "<{}> is not a PIDF <presence>",
            root.name
        )));
    }
    let all = root.descendants();
    let basics: Vec<&str> = all
        .iter()
        .filter(|e| e.name == "basic")
        .map(|e| e.text.as_str())
        .collect();
    let open = basics.iter().any(|b| b.eq_ignore_ascii_case("open"));
    let busy = all
        .iter()
        .any(|e| matches!(e.name.as_str(), "on-the-phone" | "busy" | "meeting"));
    let note = all
        .iter()
        .find(|e| e.name == "note")
        .and_then(|e| clean_note(&e.text));
    let ringing = note
        .as_deref()
        .is_some_and(|n| n.eq_ignore_ascii_case("ringing"));
    let availability = if !basics.is_empty() && !open {
        Availability::Offline
    } else if ringing {
        Availability::Ringing
    } else if busy {
        Availability::Busy
    } else if open {
        Availability::Available
    } else {
        Availability::Unknown
    };
    Ok(PresenceInfo { availability, note })
}

/// One dialog of a dialog-info document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogEntry {
    pub state: String,
    /// `initiator` or `recipient`, when given.
    pub direction: Option<String>,
}

/// A dialog-info document: `full` replaces what was known, `partial` updates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialogInfo {
    pub full: bool,
    pub version: Option<u32>,
    pub dialogs: Vec<(String, DialogEntry)>,
}

/// Dialogs remembered per contact at most (a document with more is cut).
pub const MAX_DIALOGS: usize = 32;

pub fn parse_dialog_info(body: &[u8]) -> Result<DialogInfo, XmlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DialogInfo {
            full: true,
            version: None,
            dialogs: Vec::new(),
        });
    }
    let root = xml::parse(body)?;
    if root.name != "dialog-info" {
        return Err(XmlError::Malformed(format!(
            "<{}> is not <dialog-info>",
            root.name
        )));
    }
    let dialogs = root
        .children_named("dialog")
        .take(MAX_DIALOGS)
        .enumerate()
        .map(|(i, d): (usize, &Element)| {
            let id = d
                .attribute("id")
                .map_or_else(|| format!("#{i}"), str::to_string);
            let state = d
                .child("state")
                .map(|s| s.text.to_ascii_lowercase())
                .unwrap_or_default();
            let direction = d.attribute("direction").map(str::to_ascii_lowercase);
            (id, DialogEntry { state, direction })
        })
        .collect();
    Ok(DialogInfo {
        full: !root
            .attribute("state")
            .is_some_and(|s| s.eq_ignore_ascii_case("partial")),
        version: root.attribute("version").and_then(|v| v.parse().ok()),
        dialogs,
    })
}

/// The dialogs of one watched contact, merged from full and partial documents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DialogTracker {
    dialogs: BTreeMap<String, DialogEntry>,
}

impl DialogTracker {
    pub fn apply(&mut self, info: DialogInfo) {
        if info.full {
            self.dialogs.clear();
        }
        for (id, entry) in info.dialogs {
            if entry.state == "terminated" {
                self.dialogs.remove(&id);
            } else if self.dialogs.len() < MAX_DIALOGS || self.dialogs.contains_key(&id) {
                self.dialogs.insert(id, entry);
            }
        }
    }

    /// A call up: busy; only calls ringing in: ringing; nothing: available.
    pub fn availability(&self) -> Availability {
        let states: Vec<&DialogEntry> = self.dialogs.values().collect();
        if states.iter().any(|d| d.state == "confirmed") {
            Availability::Busy
        } else if states
            .iter()
            .any(|d| d.direction.as_deref() == Some("recipient"))
        {
            Availability::Ringing
        } else if states.is_empty() {
            Availability::Available
        } else {
            // Placing a call (trying, proceeding, early as initiator).
            Availability::Busy
        }
    }
}

/// Our own state, as we publish and notify it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnState {
    /// Do-not-disturb: shown busy even without a call.
    pub dnd: bool,
    /// Our calls: number, dialog state (`early` / `confirmed`), and whether we placed it.
    pub calls: Vec<(u64, &'static str, bool)>,
}

impl OwnState {
    pub fn availability(&self) -> Availability {
        if self.calls.iter().any(|(_, state, _)| *state == "confirmed") || self.dnd {
            Availability::Busy
        } else if self.calls.iter().any(|(_, _, outgoing)| !outgoing) {
            Availability::Ringing
        } else if self.calls.is_empty() {
            Availability::Available
        } else {
            Availability::Busy
        }
    }

    fn note(&self) -> &'static str {
        match self.availability() {
            Availability::Busy if self.calls.is_empty() => "Busy",
            Availability::Busy => "On the phone",
            Availability::Ringing => "Ringing",
            _ => "Available",
        }
    }

    /// Our PIDF (RFC 3863) with an RPID activity while in a call.
    pub fn pidf(&self, entity: &str) -> String {
        let entity = xml::escape(entity);
        let note = self.note();
        let activity = match self.availability() {
            Availability::Busy if self.calls.is_empty() => "<rpid:busy/>",
            Availability::Busy => "<rpid:on-the-phone/>",
            _ => "",
        };
        let activities = if activity.is_empty() {
            String::new()
        } else {
            format!("<rpid:activities>{activity}</rpid:activities>")
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
             xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
             xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"{entity}\">\r\n\
             <tuple id=\"sipterm\"><status><basic>open</basic></status><note>{note}</note></tuple>\r\n\
             <dm:person id=\"person\">{activities}<dm:note>{note}</dm:note></dm:person>\r\n\
             </presence>\r\n"
        )
    }

    /// Our dialog-info (RFC 4235), always a full document.
    pub fn dialog_info(&self, entity: &str, version: u32) -> String {
        let entity = xml::escape(entity);
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n\
             <dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"{version}\" \
             state=\"full\" entity=\"{entity}\">\r\n"
        );
        for (call, state, outgoing) in &self.calls {
            let direction = if *outgoing { "initiator" } else { "recipient" };
            out.push_str(&format!(
                "<dialog id=\"call{call}\" direction=\"{direction}\"><state>{state}</state></dialog>\r\n"
            ));
        }
        out.push_str("</dialog-info>\r\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pidf_documents_become_lamps() {
        let own = OwnState::default();
        let info = parse_pidf(own.pidf("sip:a@h").as_bytes()).expect("ours parses");
        assert_eq!(info.availability, Availability::Available);
        let busy = OwnState {
            dnd: false,
            calls: vec![(1, "confirmed", true)],
        };
        let info = parse_pidf(busy.pidf("sip:a@h").as_bytes()).expect("parses");
        assert_eq!(info.availability, Availability::Busy);
        assert_eq!(info.note.as_deref(), Some("On the phone"));
        let closed = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:b@h"><tuple id="t"><status><basic>closed</basic></status><note>gone&#x1b;[2J</note></tuple></presence>"#;
        let info = parse_pidf(closed).expect("parses");
        assert_eq!(info.availability, Availability::Offline);
        assert_eq!(
            info.note.as_deref(),
            Some("gone[2J"),
            "no escape reaches the terminal"
        );
        assert_eq!(
            parse_pidf(b"").map(|i| i.availability),
            Ok(Availability::Offline)
        );
        assert!(parse_pidf(b"<dialog-info/>").is_err());
    }

    #[test]
    fn dialog_info_full_and_partial_documents_merge() {
        let mut tracker = DialogTracker::default();
        let ringing = OwnState {
            dnd: false,
            calls: vec![(4, "early", false)],
        };
        tracker.apply(
            parse_dialog_info(ringing.dialog_info("sip:b@h", 0).as_bytes()).expect("parses"),
        );
        assert_eq!(tracker.availability(), Availability::Ringing);
        let partial = br#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="partial" entity="sip:b@h"><dialog id="call4" direction="recipient"><state>confirmed</state></dialog></dialog-info>"#;
        tracker.apply(parse_dialog_info(partial).expect("parses"));
        assert_eq!(tracker.availability(), Availability::Busy);
        let ended = br#"<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="2" state="partial" entity="sip:b@h"><dialog id="call4"><state>terminated</state></dialog></dialog-info>"#;
        tracker.apply(parse_dialog_info(ended).expect("parses"));
        assert_eq!(tracker.availability(), Availability::Available);
        let idle = OwnState::default();
        tracker
            .apply(parse_dialog_info(idle.dialog_info("sip:b@h", 3).as_bytes()).expect("parses"));
        assert_eq!(tracker.availability(), Availability::Available);
    }
}
