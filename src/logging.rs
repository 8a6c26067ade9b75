//! Logging to a file, never to the terminal (the TUI owns it; headless stdout carries JSON).
//!
//! The file is `sipterm.log` in the XDG state directory (`~/.local/state/sipterm/`), or the data
//! directory where the platform has no state directory. The level comes from `-v` first, then
//! `RUST_LOG`, then `[log] level`; other crates log at `warn` unless `RUST_LOG` says otherwise.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogLevel};

pub const LOG_FILE_NAME: &str = "sipterm.log";
/// The TUI's `--levels` lines: logged whatever `[log] level` says (the user asked for them
/// on the command line), unless `RUST_LOG` or `-v` take over the filter.
pub const LEVELS_TARGET: &str = "sipterm::levels";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    #[error("no home directory to put the log file in; use --log-file")]
    NoLogDirectory,
    #[error("cannot open log file {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("a logger is already installed")]
    AlreadyInstalled,
}

/// Installs the global logger and returns the file it writes to.
/// `verbose` is the `-v` count; `config.file` (already overridden by `--log-file`) picks the file.
pub fn init(verbose: u8, config: &LogConfig) -> Result<PathBuf, LoggingError> {
    let path = log_file_path(config.file.as_deref()).ok_or(LoggingError::NoLogDirectory)?;
    let file = open_log_file(&path)?;
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(verbose, rust_log.as_deref(), config.level);
    tracing::subscriber::set_global_default(subscriber(file, filter))
        .map_err(|_| LoggingError::AlreadyInstalled)?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "sipterm starting");
    Ok(path)
}

/// The log file: the configured one, else `sipterm.log` in the state (or local data) directory.
pub fn log_file_path(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = configured {
        return Some(path.to_path_buf());
    }
    let dirs = directories::ProjectDirs::from("", "", "sipterm")?;
    let dir = dirs.state_dir().unwrap_or_else(|| dirs.data_local_dir());
    Some(dir.join(LOG_FILE_NAME))
}

fn open_log_file(path: &Path) -> Result<File, LoggingError> {
    let open_error = |source| LoggingError::Open {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(open_error)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(open_error)
}

/// `-v` beats `RUST_LOG`, which beats the config level. A `RUST_LOG` that does not parse is
/// ignored rather than fatal: logging must not stop the phone from starting.
fn filter(verbose: u8, rust_log: Option<&str>, configured: LogLevel) -> EnvFilter {
    let ours = |level: &str| EnvFilter::new(format!("warn,sipterm={level},{LEVELS_TARGET}=info"));
    match verbose {
        0 => {}
        1 => return ours("debug"),
        _ => return ours("trace"),
    }
    if let Some(directives) = rust_log.filter(|text| !text.trim().is_empty())
        && let Ok(filter) = EnvFilter::try_new(directives)
    {
        return filter;
    }
    ours(configured.as_str())
}

fn subscriber(file: File, filter: EnvFilter) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(filter)
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_through(filter: EnvFilter, emit: impl FnOnce()) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join(LOG_FILE_NAME);
        let file = open_log_file(&path).unwrap();
        tracing::subscriber::with_default(subscriber(file, filter), emit);
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn writes_plain_text_lines_to_the_file() {
        let text = log_through(filter(0, None, LogLevel::Info), || {
            tracing::info!(peer = "127.0.0.1:5060", "registered");
        });
        assert!(text.contains("registered"), "{text}");
        assert!(text.contains("peer=\"127.0.0.1:5060\""), "{text}");
        assert!(
            !text.contains('\u{1b}'),
            "no ANSI colour codes in a file: {text:?}"
        );
    }

    #[test]
    fn levels_lines_pass_a_quieter_config_level() {
        let text = log_through(filter(0, None, LogLevel::Error), || {
            tracing::info!(target: LEVELS_TARGET, "{{\"event\":\"levels\"}}");
            tracing::info!("chatty");
        });
        assert!(text.contains("{\"event\":\"levels\"}"), "{text}");
        assert!(!text.contains("chatty"), "{text}");
    }

    #[test]
    fn config_level_filters() {
        let text = log_through(filter(0, None, LogLevel::Warn), || {
            tracing::info!("chatty");
            tracing::warn!("important");
        });
        assert!(!text.contains("chatty"), "{text}");
        assert!(text.contains("important"), "{text}");
    }

    #[test]
    fn verbose_beats_rust_log_and_config() {
        let text = log_through(filter(1, Some("error"), LogLevel::Error), || {
            tracing::debug!("detail");
            tracing::trace!("too much");
        });
        assert!(text.contains("detail"), "{text}");
        assert!(!text.contains("too much"), "{text}");
    }

    #[test]
    fn rust_log_beats_config_and_bad_rust_log_is_ignored() {
        let text = log_through(filter(0, Some("trace"), LogLevel::Error), || {
            tracing::trace!("fine grained");
        });
        assert!(text.contains("fine grained"), "{text}");
        let text = log_through(filter(0, Some("sipterm=notalevel"), LogLevel::Info), || {
            tracing::info!("still logged");
        });
        assert!(text.contains("still logged"), "{text}");
    }

    #[test]
    fn configured_path_wins() {
        let path = Path::new("/tmp/custom.log");
        assert_eq!(log_file_path(Some(path)), Some(path.to_path_buf()));
    }

    #[test]
    fn default_path_is_sipterm_log_in_a_sipterm_dir() {
        if let Some(path) = log_file_path(None) {
            assert!(
                path.ends_with(Path::new("sipterm").join(LOG_FILE_NAME)),
                "{path:?}"
            );
        }
    }

    #[test]
    fn unwritable_location_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let error = open_log_file(&blocker.join("sipterm.log")).unwrap_err();
        assert!(
            error.to_string().contains("cannot open log file"),
            "{error}"
        );
    }
}
