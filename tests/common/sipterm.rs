//! A headless sipterm driven by a test: its own HOME/XDG dirs and config
//! file in a temp dir, `--listen 127.0.0.1:0`, commands on stdin, JSON
//! events read back by predicate with a timeout. Every event seen is kept,
//! so a test can look back at the `sip` trace once the call is over.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::Value;

use super::HarnessError;
use super::process::{ChildGuard, Stdout};

/// How long sipterm may take to print `ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// One `[[account]]` block.
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub name: String,
    pub uri: String,
    pub password: Option<String>,
    pub registrar: Option<String>,
    pub outbound_proxy: Option<String>,
    /// Empty: sipterm's default order.
    pub codecs: Vec<&'static str>,
    pub expires: Option<u32>,
}

impl Account {
    /// An account with only a name and an address of record.
    pub fn new(name: &str, uri: &str) -> Account {
        Account {
            name: name.to_owned(),
            uri: uri.to_owned(),
            ..Account::default()
        }
    }
}

/// How to start sipterm.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub account: Option<Account>,
    /// `--audio-in`: None = `null`.
    pub audio_in: Option<PathBuf>,
    /// `--audio-out`: None = `null`.
    pub audio_out: Option<PathBuf>,
    /// `--auto-answer=MS`.
    pub auto_answer_ms: Option<u64>,
}

/// A running `sipterm --headless`; killed (whole process group) on drop.
pub struct Sipterm {
    guard: ChildGuard,
    /// HOME, XDG dirs, config, log; kept while the process lives.
    dir: tempfile::TempDir,
    /// The SIP address sipterm reported in `ready`.
    pub listen: SocketAddr,
    /// Every event read so far, in order.
    seen: Vec<Value>,
}

/// TOML basic string: quotes and backslashes escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The config file for `options` (log to `log_file`).
pub fn render_config(options: &Options, log_file: &Path) -> String {
    let mut text = format!(
        "# Written by tests/common/sipterm.rs for one test run.\n\
         [sip]\nlisten = \"127.0.0.1:0\"\n\
         [audio]\ninput = \"null\"\noutput = \"null\"\n\
         [log]\nlevel = \"debug\"\nfile = {}\n",
        toml_string(&log_file.display().to_string())
    );
    if let Some(account) = &options.account {
        text.push_str("[[account]]\n");
        text.push_str(&format!("name = {}\n", toml_string(&account.name)));
        text.push_str(&format!("uri = {}\n", toml_string(&account.uri)));
        let optional = [
            ("password", &account.password),
            ("registrar", &account.registrar),
            ("outbound_proxy", &account.outbound_proxy),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                text.push_str(&format!("{key} = {}\n", toml_string(value)));
            }
        }
        if let Some(expires) = account.expires {
            text.push_str(&format!("expires = {expires}\n"));
        }
        if !account.codecs.is_empty() {
            let list: Vec<String> = account.codecs.iter().map(|c| toml_string(c)).collect();
            text.push_str(&format!("codecs = [{}]\n", list.join(", ")));
        }
    }
    text
}

impl Sipterm {
    /// Starts sipterm and waits for its `ready` event.
    pub fn start(name: &str, options: &Options) -> Result<Sipterm, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("sipterm-{name}-"))
            .tempdir()
            .map_err(|e| HarnessError::io("creating sipterm's temp dir", e))?;
        let home = dir.path().join("home");
        let config_path = dir.path().join("config.toml");
        let log_file = dir.path().join("sipterm.log");
        for sub in ["", ".config", ".local/state", ".local/share", ".cache"] {
            let path = home.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
        }
        let config = render_config(options, &log_file);
        std::fs::write(&config_path, &config)
            .map_err(|e| HarnessError::io(format!("writing {}", config_path.display()), e))?;

        let audio = |path: &Option<PathBuf>| {
            path.as_ref()
                .map_or_else(|| "null".to_owned(), |p| p.display().to_string())
        };
        let mut command = Command::new(env!("CARGO_BIN_EXE_sipterm"));
        command
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env_remove("RUST_LOG")
            .arg("--headless")
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0"])
            .arg("--audio-in")
            .arg(audio(&options.audio_in))
            .arg("--audio-out")
            .arg(audio(&options.audio_out));
        if let Some(ms) = options.auto_answer_ms {
            command.arg(format!("--auto-answer={ms}"));
        }
        let log_dir = dir.path().join("logs");
        let guard = ChildGuard::spawn(name, command, Stdout::Lines, Some(&log_dir))?;
        let mut sipterm = Sipterm {
            guard,
            dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seen: Vec::new(),
        };
        let ready =
            sipterm.expect_event("the ready event", |e| e["event"] == "ready", READY_TIMEOUT)?;
        let listen = ready["listen"].as_str().unwrap_or_default();
        sipterm.listen = listen.parse().map_err(|_| HarnessError::InvalidInput {
            what: "ready event",
            value: ready.to_string(),
            why: "`listen` is not IP:PORT",
        })?;
        Ok(sipterm)
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) -> Result<(), HarnessError> {
        self.guard.send_line(line)
    }

    /// Reads events until one satisfies `matches`; returns it. Lines that are
    /// not JSON objects are a failure of the headless contract, reported at once.
    pub fn expect_event(
        &mut self,
        what: &str,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, HarnessError> {
        let mut hit = None;
        let mut bad_line = None;
        let seen = &mut self.seen;
        let result = self.guard.expect_line_described(
            what,
            &mut |line: &str| match serde_json::from_str::<Value>(line) {
                Ok(value) if value.is_object() => {
                    seen.push(value.clone());
                    if matches(&value) {
                        hit = Some(value);
                        true
                    } else {
                        false
                    }
                }
                _ => {
                    bad_line = Some(line.to_owned());
                    true
                }
            },
            timeout,
        );
        if let Some(line) = bad_line {
            return Err(HarnessError::InvalidInput {
                what: "headless output line",
                value: line,
                why: "not a JSON object",
            });
        }
        result?;
        hit.ok_or_else(|| HarnessError::InvalidInput {
            what: "expect_event",
            value: what.to_owned(),
            why: "matched line vanished",
        })
    }

    /// The next `call` event in `state` (any call).
    pub fn expect_call_state(
        &mut self,
        state: &str,
        timeout: Duration,
    ) -> Result<Value, HarnessError> {
        self.expect_event(
            &format!("a call event with state {state:?}"),
            |e| e["event"] == "call" && e["state"] == state,
            timeout,
        )
    }

    /// Every event read so far.
    pub fn events(&self) -> &[Value] {
        &self.seen
    }

    /// The `sip` events read so far as (dir, peer, summary).
    pub fn sip_trace(&self) -> Vec<(String, String, String)> {
        self.seen
            .iter()
            .filter(|e| e["event"] == "sip")
            .map(|e| {
                let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                (field("dir"), field("peer"), field("summary"))
            })
            .collect()
    }

    /// Sends `quit`, reads the remaining events (kept in `events()`) and
    /// waits for the exit; kills it after `timeout`.
    pub fn quit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = self.send("quit");
        // Drain until stdout closes (Exited) or the timeout; both are fine here.
        let _ = self.expect_event("end of output", |_| false, timeout);
        match self.guard.wait_timeout(Duration::from_secs(1)) {
            Some(status) => Some(status),
            None => self.guard.terminate(Duration::from_secs(1)),
        }
    }

    /// Where the config, logs and HOME live.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The tail of sipterm's log file and stderr, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "--- recent events ---\n{}\n--- sipterm.log (tail) ---\n{}",
            self.guard.recent_output(),
            super::process::tail_of_file(&self.dir.path().join("sipterm.log"), 6144)
        )
    }

    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }
}
