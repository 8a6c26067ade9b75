//! A headless sipterm for integration tests: its own temp HOME and XDG directories (so it never
//! reads the user's config or writes into the user's log), an optional written config file, the
//! JSON-lines events parsed, and the process killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_json::Value;

use super::HarnessError;
use super::process::{ChildGuard, Stdout, tail_of_file};

/// How long sipterm may take to print `ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Written to `<dir>/config.toml` and passed with `--config` when set.
    pub config: Option<String>,
    /// `--listen` (default 127.0.0.1:0 unless `no_listen`).
    pub listen: Option<SocketAddr>,
    /// Leave `--listen` out (the config's `[sip] listen` applies).
    pub no_listen: bool,
    /// Extra arguments after the standard ones (`-v`, `--auto-answer`, ...).
    pub args: Vec<String>,
}

impl RunOptions {
    pub fn with_config(config: impl Into<String>) -> Self {
        RunOptions {
            config: Some(config.into()),
            ..RunOptions::default()
        }
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }
}

/// A started (not necessarily ready) sipterm and its private directory.
pub struct Sipterm {
    pub guard: ChildGuard,
    /// HOME, XDG dirs, config.toml, stdout.log, stderr.log.
    dir: tempfile::TempDir,
    /// The address from the `ready` event (after `wait_ready`).
    pub listen: Option<SocketAddr>,
    /// Every event line seen so far, parsed (non-JSON lines are kept as strings).
    pub seen: Vec<Value>,
}

impl Sipterm {
    /// Starts `sipterm --headless` with `options`; does not wait for `ready`.
    pub fn spawn(options: &RunOptions) -> Result<Sipterm, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("sipterm-run-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating the sipterm dir", e))?;
        let home = dir.path().join("home");
        for sub in ["", ".config", ".local/state", ".local/share", ".cache"] {
            let path = home.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|e| HarnessError::io(format!("creating {}", path.display()), e))?;
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_sipterm"));
        command
            .current_dir(dir.path())
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env_remove("RUST_LOG")
            .arg("--headless")
            .args(["--audio-in", "null", "--audio-out", "null"]);
        if !options.no_listen {
            let listen = options
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
            command.arg("--listen").arg(listen.to_string());
        }
        if let Some(config) = &options.config {
            let path = dir.path().join("config.toml");
            std::fs::write(&path, config)
                .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
            command.arg("--config").arg(&path);
        }
        command.args(&options.args);
        let guard = ChildGuard::spawn("sipterm", command, Stdout::Lines, Some(dir.path()))?;
        Ok(Sipterm {
            guard,
            dir,
            listen: None,
            seen: Vec::new(),
        })
    }

    /// Starts sipterm and waits for its `ready` event.
    pub fn start(options: &RunOptions) -> Result<Sipterm, HarnessError> {
        let mut sipterm = Self::spawn(options)?;
        sipterm.wait_ready()?;
        Ok(sipterm)
    }

    /// Waits for `ready` and records the address it names.
    pub fn wait_ready(&mut self) -> Result<SocketAddr, HarnessError> {
        let ready =
            self.expect_event("the ready event", READY_TIMEOUT, |e| e["event"] == "ready")?;
        let listen = ready["listen"]
            .as_str()
            .and_then(|s| s.parse::<SocketAddr>().ok())
            .ok_or_else(|| HarnessError::InvalidInput {
                what: "ready event",
                value: ready.to_string(),
                why: "no listen address in it",
            })?;
        self.listen = Some(listen);
        Ok(listen)
    }

    /// The address sipterm listens on (panics before `wait_ready`).
    pub fn addr(&self) -> SocketAddr {
        self.listen.expect("sipterm is ready")
    }

    /// Reads events until one satisfies `matches`; every event read is kept in `seen`.
    pub fn expect_event(
        &mut self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, HarnessError> {
        let mut found = None;
        let seen = &mut self.seen;
        self.guard.expect_line_described(
            what,
            &mut |line: &str| {
                let value = serde_json::from_str::<Value>(line)
                    .unwrap_or_else(|_| Value::String(line.to_owned()));
                let hit = matches(&value);
                seen.push(value.clone());
                if hit {
                    found = Some(value);
                }
                hit
            },
            timeout,
        )?;
        Ok(found.unwrap_or(Value::Null))
    }

    /// Every event that arrives within `window` (reads until the window has passed).
    pub fn collect_for(&mut self, window: Duration) -> Vec<Value> {
        let start = self.seen.len();
        // Nothing matches: this reads until the timeout (or the end of the output).
        let _ = self.expect_event("nothing (collecting)", window, |_| false);
        self.seen
            .get(start..)
            .map(<[Value]>::to_vec)
            .unwrap_or_default()
    }

    pub fn send(&mut self, line: &str) -> Result<(), HarnessError> {
        self.guard.send_line(line)
    }

    /// Sends `quit` and waits up to `timeout` for the process to end.
    /// The events it printed on the way out are read into `seen`.
    pub fn quit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let _ = self.send("quit");
        let status = self.guard.wait_timeout(timeout);
        if status.is_some() {
            self.drain();
        }
        status
    }

    /// Reads whatever stdout lines are left into `seen` (returns at once when stdout has
    /// closed; otherwise after a short quiet period).
    pub fn drain(&mut self) {
        let _ = self.expect_event("the rest of stdout", Duration::from_millis(500), |_| false);
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the log goes by default with this HOME: $XDG_STATE_HOME/sipterm/sipterm.log.
    pub fn log_file(&self) -> PathBuf {
        self.dir
            .path()
            .join("home/.local/state/sipterm/sipterm.log")
    }

    /// The whole of stdout so far (as written by the reader thread).
    pub fn stdout_text(&self) -> String {
        tail_of_file(&self.dir.path().join("stdout.log"), 1 << 24)
    }

    pub fn stderr_text(&self) -> String {
        tail_of_file(&self.dir.path().join("stderr.log"), 1 << 24)
    }

    pub fn log_text(&self) -> String {
        tail_of_file(&self.log_file(), 1 << 24)
    }

    /// `sip` events seen so far with this direction ("in" / "out").
    pub fn sip_events(&self, dir: &str) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|e| e["event"] == "sip" && e["dir"] == dir)
            .collect()
    }
}

/// A minimal config: one account on 127.0.0.1 and whatever `account_extra` adds to it.
pub fn config_with_account(sip_extra: &str, account_extra: &str) -> String {
    format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n{sip_extra}\n\n\
         [[account]]\nname = \"alice\"\nuri = \"sip:alice@sipterm.test\"\n{account_extra}\n"
    )
}

/// A SIP OPTIONS request from `local` to `target` (UDP, with rport).
pub fn options_request(target: SocketAddr, local: SocketAddr, tag: &str) -> String {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{tag};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:tester@{local}>;tag={tag}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: {tag}@127.0.0.1\r\n\
         CSeq: 1 OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends one OPTIONS from a fresh UDP socket and returns the response text (or an error when
/// nothing arrives within `timeout`).
pub fn options_probe(target: SocketAddr, timeout: Duration) -> Result<String, HarnessError> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")
        .map_err(|e| HarnessError::io("binding the OPTIONS socket", e))?;
    let local = socket
        .local_addr()
        .map_err(|e| HarnessError::io("reading the OPTIONS socket address", e))?;
    let tag = format!("probe{}", local.port());
    socket
        .send_to(options_request(target, local, &tag).as_bytes(), target)
        .map_err(|e| HarnessError::io("sending OPTIONS", e))?;
    recv_text(&socket, timeout)
}

/// One datagram as text, or a timeout error.
pub fn recv_text(socket: &std::net::UdpSocket, timeout: Duration) -> Result<String, HarnessError> {
    socket
        .set_read_timeout(Some(timeout))
        .map_err(|e| HarnessError::io("setting a read timeout", e))?;
    let mut buf = vec![0u8; 65536];
    match socket.recv_from(&mut buf) {
        Ok((n, _)) => Ok(String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned()),
        Err(e) => Err(HarnessError::Timeout {
            what: format!("a datagram ({e})"),
            waited: timeout,
            recent: String::new(),
        }),
    }
}
