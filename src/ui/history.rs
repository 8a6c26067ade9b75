//! The call history: the last `HISTORY_LIMIT` calls, kept in `history.json` in the XDG data
//! directory (`~/.local/share/sipterm/`). Loading never fails: a missing file is an empty
//! history, a corrupt or oversized one is an empty history plus a warning for the user.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Calls kept (oldest dropped first).
pub const HISTORY_LIMIT: usize = 200;
/// A history of `HISTORY_LIMIT` calls is far smaller; a bigger file is not ours to parse.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
pub const FILE_NAME: &str = "history.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the call ended, seconds since the Unix epoch.
    pub time: u64,
    /// `in` or `out`.
    pub direction: String,
    pub remote: String,
    /// `answered`, `missed`, or the final response (e.g. `486 Busy Here`).
    pub result: String,
}

#[derive(Serialize, Deserialize)]
struct HistoryFile {
    calls: Vec<HistoryEntry>,
}

/// `$XDG_DATA_HOME/sipterm/history.json` (or the platform's equivalent).
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "sipterm").map(|dirs| dirs.data_dir().join(FILE_NAME))
}

/// Appends `entry`, dropping the oldest past the limit.
pub fn push(history: &mut Vec<HistoryEntry>, entry: HistoryEntry) {
    history.push(entry);
    if history.len() > HISTORY_LIMIT {
        let excess = history.len() - HISTORY_LIMIT;
        history.drain(..excess);
    }
}

/// The history in `path`, oldest first, and a warning when the file was unusable.
pub fn load(path: &Path) -> (Vec<HistoryEntry>, Option<String>) {
    let warn = |why: String| {
        (
            Vec::new(),
            Some(format!("call history {} ignored: {why}", path.display())),
        )
    };
    match std::fs::metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return (Vec::new(), None),
        Err(error) => return warn(error.to_string()),
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return warn(format!("larger than {MAX_FILE_BYTES} bytes"));
        }
        Ok(_) => {}
    }
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => return warn(error.to_string()),
    };
    match serde_json::from_str::<HistoryFile>(&text) {
        Ok(file) => {
            let mut calls = file.calls;
            if calls.len() > HISTORY_LIMIT {
                calls.drain(..calls.len() - HISTORY_LIMIT);
            }
            (calls, None)
        }
        Err(error) => warn(error.to_string()),
    }
}

/// Writes the history (the newest `HISTORY_LIMIT` entries) through a temporary file and a
/// rename, so a crash mid-write never leaves a half file. Blocking: call it off the UI loop.
pub fn save(path: &Path, history: &[HistoryEntry]) -> io::Result<()> {
    // Two saves in flight (two calls ending close together) must not share the temp file.
    static SAVING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _saving = SAVING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let skip = history.len().saturating_sub(HISTORY_LIMIT);
    let file = HistoryFile {
        calls: history[skip..].to_vec(),
    };
    let text = serde_json::to_string_pretty(&file).map_err(io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> HistoryEntry {
        HistoryEntry {
            time: 1_700_000_000 + i,
            direction: if i.is_multiple_of(2) { "out" } else { "in" }.into(),
            remote: format!("sip:user{i}@example.com"),
            result: "answered".into(),
        }
    }

    #[test]
    fn round_trip_keeps_the_newest_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join(FILE_NAME);
        let mut history = Vec::new();
        for i in 0..(HISTORY_LIMIT as u64 + 50) {
            push(&mut history, entry(i));
        }
        assert_eq!(history.len(), HISTORY_LIMIT);
        assert_eq!(history[0], entry(50));
        save(&path, &history).expect("save");
        let (loaded, warning) = load(&path);
        assert_eq!(warning, None);
        assert_eq!(loaded, history);
    }

    #[test]
    fn a_missing_file_is_an_empty_history_without_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(load(&dir.path().join(FILE_NAME)), (Vec::new(), None));
    }

    #[test]
    fn a_corrupt_file_is_an_empty_history_with_a_warning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        for junk in [
            &b"{\"calls\": [ {\"time\": 1"[..],
            b"not json at all",
            b"{\"calls\": 5}",
            b"\xff\xfe\x00garbage",
        ] {
            std::fs::write(&path, junk).expect("write");
            let (history, warning) = load(&path);
            assert!(history.is_empty());
            let warning = warning.expect("a warning");
            assert!(warning.contains("history.json"), "{warning}");
        }
    }

    #[test]
    fn an_oversized_file_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, vec![b' '; MAX_FILE_BYTES as usize + 1]).expect("write");
        let (history, warning) = load(&path);
        assert!(history.is_empty());
        assert!(warning.is_some_and(|w| w.contains("larger")));
    }
}
