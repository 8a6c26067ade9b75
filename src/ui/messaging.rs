//! Instant-message conversations (one per peer and account, with unread counts) and the
//! user's own contacts, both kept in the XDG data directory (`messages.json`,
//! `contacts.toml`), like the call history: loading never fails (a missing file is empty, a
//! broken or oversized one is empty plus a warning), saving goes through a temporary file.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Contact;
use crate::event::{Direction, MessageEvent};

/// Conversations kept (the longest-idle goes first).
pub const MAX_CHATS: usize = 100;
/// Lines kept per conversation (oldest first out).
pub const MAX_LINES: usize = 200;
/// Contacts the user may add.
pub const MAX_USER_CONTACTS: usize = 1000;
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
pub const MESSAGES_FILE: &str = "messages.json";
pub const CONTACTS_FILE: &str = "contacts.toml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// Unix seconds.
    pub time: u64,
    /// `in` or `out`.
    pub dir: String,
    pub text: String,
    /// Outgoing: `sending`, `delivered`, `failed 404 Not Found`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Our message number (outgoing), to match its delivery status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub account: String,
    pub peer: String,
    #[serde(default)]
    pub display: Option<String>,
    pub lines: Vec<ChatLine>,
    #[serde(default)]
    pub unread: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chats {
    /// Most recently active last.
    pub chats: Vec<Chat>,
}

fn same_peer(a: &str, b: &str) -> bool {
    a.trim_start_matches("sip:")
        .eq_ignore_ascii_case(b.trim_start_matches("sip:"))
}

impl Chats {
    pub fn unread(&self) -> usize {
        self.chats.iter().map(|c| c.unread).sum()
    }

    pub fn find(&self, account: &str, peer: &str) -> Option<usize> {
        self.chats
            .iter()
            .position(|c| c.account == account && same_peer(&c.peer, peer))
    }

    fn chat_mut(&mut self, account: &str, peer: &str) -> &mut Chat {
        let index = match self.find(account, peer) {
            Some(i) => i,
            None => {
                if self.chats.len() >= MAX_CHATS {
                    self.chats.remove(0);
                }
                self.chats.push(Chat {
                    account: account.to_string(),
                    peer: peer.to_string(),
                    display: None,
                    lines: Vec::new(),
                    unread: 0,
                });
                self.chats.len() - 1
            }
        };
        // Most recently active last.
        let chat = self.chats.remove(index);
        self.chats.push(chat);
        let last = self.chats.len() - 1;
        &mut self.chats[last]
    }

    /// A `message` event; `open` is the conversation on screen (its lines are read).
    pub fn apply(&mut self, event: &MessageEvent, time: u64, open: Option<(&str, &str)>) {
        let reading = open.is_some_and(|(a, p)| a == event.account && same_peer(p, &event.peer));
        match (event.dir, &event.text, &event.status) {
            (Direction::In, Some(text), _) => {
                let chat = self.chat_mut(&event.account, &event.peer);
                if event.display.is_some() {
                    chat.display = event.display.clone();
                }
                push_line(
                    chat,
                    ChatLine {
                        time,
                        dir: "in".into(),
                        text: text.clone(),
                        status: None,
                        id: None,
                    },
                );
                if !reading {
                    chat.unread += 1;
                }
            }
            (Direction::Out, Some(text), _) => {
                let chat = self.chat_mut(&event.account, &event.peer);
                push_line(
                    chat,
                    ChatLine {
                        time,
                        dir: "out".into(),
                        text: text.clone(),
                        status: event.status.clone(),
                        id: event.id.clone(),
                    },
                );
            }
            (Direction::Out, None, Some(status)) => {
                let Some(index) = self.find(&event.account, &event.peer) else {
                    return;
                };
                let shown = match (status.as_str(), event.code, &event.reason) {
                    ("failed", Some(code), Some(reason)) => format!("failed {code} {reason}"),
                    (other, _, _) => other.to_string(),
                };
                if let Some(line) = self.chats[index]
                    .lines
                    .iter_mut()
                    .rev()
                    .find(|l| l.dir == "out" && l.id.is_some() && l.id == event.id)
                {
                    line.status = Some(shown);
                }
            }
            _ => {}
        }
    }

    pub fn mark_read(&mut self, index: usize) {
        if let Some(chat) = self.chats.get_mut(index) {
            chat.unread = 0;
        }
    }
}

fn push_line(chat: &mut Chat, line: ChatLine) {
    chat.lines.push(line);
    if chat.lines.len() > MAX_LINES {
        let excess = chat.lines.len() - MAX_LINES;
        chat.lines.drain(..excess);
    }
}

fn data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "sipterm").map(|dirs| dirs.data_dir().to_path_buf())
}

pub fn messages_path() -> Option<PathBuf> {
    data_dir().map(|d| d.join(MESSAGES_FILE))
}

pub fn contacts_path() -> Option<PathBuf> {
    data_dir().map(|d| d.join(CONTACTS_FILE))
}

fn read_bounded(path: &Path, what: &str) -> Result<Option<String>, String> {
    match std::fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{what} {} ignored: {error}", path.display())),
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return Err(format!(
                "{what} {} ignored: larger than {MAX_FILE_BYTES} bytes",
                path.display()
            ));
        }
        Ok(_) => {}
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|error| format!("{what} {} ignored: {error}", path.display()))
}

/// The conversations in `path` and a warning when the file was unusable. Text from the file
/// is cleaned again (it may have been edited by hand): it reaches the terminal.
pub fn load_chats(path: &Path) -> (Chats, Option<String>) {
    match read_bounded(path, "message history") {
        Ok(None) => (Chats::default(), None),
        Ok(Some(text)) => match serde_json::from_str::<Chats>(&text) {
            Ok(mut chats) => {
                let excess = chats.chats.len().saturating_sub(MAX_CHATS);
                chats.chats.drain(..excess);
                for chat in &mut chats.chats {
                    let excess = chat.lines.len().saturating_sub(MAX_LINES);
                    chat.lines.drain(..excess);
                    for line in &mut chat.lines {
                        line.text = crate::sip::im::sanitize(&line.text);
                    }
                }
                (chats, None)
            }
            Err(error) => (
                Chats::default(),
                Some(format!(
                    "message history {} ignored: {error}",
                    path.display()
                )),
            ),
        },
        Err(warning) => (Chats::default(), Some(warning)),
    }
}

fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

pub fn save_chats(path: &Path, chats: &Chats) -> io::Result<()> {
    static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _saving = SAVING.lock().unwrap_or_else(|p| p.into_inner());
    let text = serde_json::to_string_pretty(chats).map_err(io::Error::other)?;
    write_atomically(path, &text)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ContactsFile {
    #[serde(default)]
    contact: Vec<Contact>,
}

/// The user's contacts (TOML, `[[contact]]` blocks like the config's).
pub fn load_contacts(path: &Path) -> (Vec<Contact>, Option<String>) {
    match read_bounded(path, "contacts") {
        Ok(None) => (Vec::new(), None),
        Ok(Some(text)) => match toml::from_str::<ContactsFile>(&text) {
            Ok(file) => {
                let mut contacts = file.contact;
                contacts.truncate(MAX_USER_CONTACTS);
                (contacts, None)
            }
            Err(error) => (
                Vec::new(),
                Some(format!(
                    "contacts {} ignored: {}",
                    path.display(),
                    error.message()
                )),
            ),
        },
        Err(warning) => (Vec::new(), Some(warning)),
    }
}

pub fn save_contacts(path: &Path, contacts: &[Contact]) -> io::Result<()> {
    static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _saving = SAVING.lock().unwrap_or_else(|p| p.into_inner());
    let file = ContactsFile {
        contact: contacts.to_vec(),
    };
    let text = toml::to_string(&file).map_err(io::Error::other)?;
    write_atomically(
        path,
        &format!("# sipterm's contacts, edited in the TUI (c).\n{text}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incoming(text: &str) -> MessageEvent {
        MessageEvent {
            account: "work".into(),
            dir: Direction::In,
            peer: "sip:bob@h".into(),
            text: Some(text.into()),
            ..Default::default()
        }
    }

    #[test]
    fn conversations_count_unread_and_take_delivery_status() {
        let mut chats = Chats::default();
        chats.apply(&incoming("hi"), 1, None);
        chats.apply(&incoming("there"), 2, None);
        assert_eq!(chats.unread(), 2);
        let out = MessageEvent {
            account: "work".into(),
            dir: Direction::Out,
            id: Some("3".into()),
            peer: "sip:bob@h".into(),
            text: Some("yes?".into()),
            status: Some("sending".into()),
            ..Default::default()
        };
        chats.apply(&out, 3, Some(("work", "sip:bob@h")));
        let failed = MessageEvent {
            text: None,
            status: Some("failed".into()),
            code: Some(404),
            reason: Some("Not Found".into()),
            ..out
        };
        chats.apply(&failed, 4, None);
        let chat = &chats.chats[0];
        assert_eq!(chat.lines.len(), 3);
        assert_eq!(
            chat.lines[2].status.as_deref(),
            Some("failed 404 Not Found")
        );
        chats.mark_read(0);
        assert_eq!(chats.unread(), 0);
        // Reading the open conversation adds no unread count.
        chats.apply(&incoming("again"), 5, Some(("work", "bob@h")));
        assert_eq!(chats.unread(), 0);
        for i in 0..MAX_LINES + 5 {
            chats.apply(&incoming(&format!("{i}")), 6, None);
        }
        assert_eq!(chats.chats[0].lines.len(), MAX_LINES);
    }

    #[test]
    fn files_round_trip_and_bad_files_warn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join(MESSAGES_FILE);
        let mut chats = Chats::default();
        chats.apply(&incoming("Grüße"), 1, None);
        save_chats(&path, &chats).expect("saves");
        assert_eq!(load_chats(&path), (chats, None));
        std::fs::write(&path, "{").expect("write");
        assert!(load_chats(&path).1.is_some());
        let contacts_file = dir.path().join(CONTACTS_FILE);
        let contacts = vec![Contact {
            name: "Bob".into(),
            uri: "sip:bob@h".into(),
            account: Some("work".into()),
        }];
        save_contacts(&contacts_file, &contacts).expect("saves");
        assert_eq!(load_contacts(&contacts_file), (contacts, None));
        std::fs::write(&contacts_file, "[[contact]]\nname = 3").expect("write");
        assert!(load_contacts(&contacts_file).1.is_some());
    }
}
