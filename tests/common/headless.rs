//! The one `sipterm --headless` harness of the integration tests: its own HOME and XDG
//! directories (no user config or log is touched), an optional config file, the real listen
//! address read from `ready`, JSON events parsed with serde_json (a line that is not JSON
//! fails the wait), commands on stdin, the process killed on drop. Every event read is kept
//! (`history`), so a test can look back at the `sip` trace once the call is over.
//! Plus the WAV helpers the call tests share, the config of a plain account and an OPTIONS
//! probe.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::HarnessError;
use super::process::{ChildGuard, Stdout, tail_of_file};

/// How long a sipterm may take to print `ready` (a debug build on a loaded machine).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// What to start a headless sipterm with.
#[derive(Debug, Clone, Default)]
pub struct HeadlessOptions {
    /// `--audio-in`; None: `null`.
    pub audio_in: Option<PathBuf>,
    /// `--audio-out`; None: `null`.
    pub audio_out: Option<PathBuf>,
    /// `--auto-answer=MS`.
    pub auto_answer_ms: Option<u64>,
    /// A config file's text: written to `<dir>/config.toml` and passed as `--config`.
    pub config_toml: Option<String>,
    /// Anything else for the command line.
    pub extra_args: Vec<String>,
    /// Run it inside this network namespace (`ip netns exec NS sipterm ...`), e.g. a lab
    /// host's `netns()` (tests/common/lab.rs). None: the test's own namespace.
    pub netns: Option<String>,
    /// `--listen`; None: `127.0.0.1:0`. Lab tests pass e.g. `0.0.0.0:5060` or `[::]:5060`.
    pub listen: Option<String>,
}

impl HeadlessOptions {
    /// Options with this config file text.
    pub fn with_config(config: impl Into<String>) -> Self {
        HeadlessOptions {
            config_toml: Some(config.into()),
            ..HeadlessOptions::default()
        }
    }

    /// One more command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_owned());
        self
    }
}

/// A running headless sipterm. Dropping it kills it.
pub struct Headless {
    guard: ChildGuard,
    /// The address from its `ready` event.
    pub listen: SocketAddr,
    /// Every event read so far, in order (including the ones `expect_event` skipped).
    history: Vec<Value>,
    // HOME, XDG dirs, config and logs live here while the child runs.
    home: tempfile::TempDir,
}

impl Headless {
    /// Starts `sipterm --headless --listen 127.0.0.1:0` (or `options.listen`, inside
    /// `options.netns`) with `options` and waits for `ready`.
    pub fn spawn(name: &str, options: &HeadlessOptions) -> Result<Headless, HarnessError> {
        Self::spawn_with(name, options, &[], false)
    }

    /// Like `spawn`, with extra environment variables for the child; with `device_audio`, no
    /// `--audio-in`/`--audio-out` flags are passed, so the config's `[audio]` devices apply.
    pub fn spawn_with(
        name: &str,
        options: &HeadlessOptions,
        env: &[(&str, &std::ffi::OsStr)],
        device_audio: bool,
    ) -> Result<Headless, HarnessError> {
        let mut headless = Self::launch_with(name, options, env, device_audio)?;
        headless.wait_ready()?;
        Ok(headless)
    }

    /// Starts it like `spawn` but does not wait for `ready` (for a start that must fail).
    pub fn launch(name: &str, options: &HeadlessOptions) -> Result<Headless, HarnessError> {
        Self::launch_with(name, options, &[], false)
    }

    fn launch_with(
        name: &str,
        options: &HeadlessOptions,
        env: &[(&str, &std::ffi::OsStr)],
        device_audio: bool,
    ) -> Result<Headless, HarnessError> {
        let home = tempfile::Builder::new()
            .prefix(&format!("sipterm-{name}-home-"))
            .tempdir()
            .map_err(|e| HarnessError::io("creating a temp HOME", e))?;
        let root = home.path();
        for sub in ["config", "state", "data", "cache", "logs"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(|e| HarnessError::io(format!("creating {sub} dir"), e))?;
        }
        let audio = |path: &Option<PathBuf>| {
            path.as_ref()
                .map_or_else(|| "null".to_owned(), |p| p.display().to_string())
        };
        let mut command = sipterm_command(options.netns.as_deref());
        let listen = options.listen.as_deref().unwrap_or("127.0.0.1:0");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", root)
            .env("XDG_CONFIG_HOME", root.join("config"))
            .env("XDG_STATE_HOME", root.join("state"))
            .env("XDG_DATA_HOME", root.join("data"))
            .env("XDG_CACHE_HOME", root.join("cache"))
            .arg("--headless")
            .arg("--log-file")
            .arg(root.join("logs").join("sipterm.log"));
        command.args(["--listen", listen]);
        if !device_audio {
            command
                .args(["--audio-in", &audio(&options.audio_in)])
                .args(["--audio-out", &audio(&options.audio_out)]);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        if let Some(ms) = options.auto_answer_ms {
            command.arg(format!("--auto-answer={ms}"));
        }
        if let Some(text) = &options.config_toml {
            let path = root.join("config.toml");
            std::fs::write(&path, text)
                .map_err(|e| HarnessError::io(format!("writing {}", path.display()), e))?;
            command.arg("--config").arg(&path);
        }
        command.args(&options.extra_args);
        let guard = ChildGuard::spawn(name, command, Stdout::Lines, Some(&root.join("logs")))?;
        Ok(Headless {
            guard,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            history: Vec::new(),
            home,
        })
    }

    /// Waits for `ready` and records the address it names in `listen`.
    pub fn wait_ready(&mut self) -> Result<SocketAddr, HarnessError> {
        let ready = self.expect_event(
            "the `ready` event",
            |e| e["event"] == "ready",
            READY_TIMEOUT,
        )?;
        self.listen = parse_ready_listen(&ready["listen"])?;
        Ok(self.listen)
    }

    /// The address from its `ready` event.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// The child process (exit status, stdin, signals).
    pub fn guard(&mut self) -> &mut ChildGuard {
        &mut self.guard
    }

    /// Its temp HOME: the config.toml written from the options, the logs/ directory.
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// The log file it was told to write (`--log-file`).
    pub fn log_file(&self) -> PathBuf {
        self.guard.log_dir().join("sipterm.log")
    }

    /// The whole of stdout, stderr and the log file so far.
    pub fn stdout_text(&self) -> String {
        tail_of_file(&self.guard.log_dir().join("stdout.log"), 1 << 24)
    }

    pub fn stderr_text(&self) -> String {
        tail_of_file(&self.guard.log_dir().join("stderr.log"), 1 << 24)
    }

    pub fn log_text(&self) -> String {
        tail_of_file(&self.log_file(), 1 << 24)
    }

    /// The recent output and the tail of the log file, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "--- recent output ---\n{}\n--- sipterm.log (tail) ---\n{}",
            self.guard.recent_output(),
            tail_of_file(&self.log_file(), 6144)
        )
    }

    /// `sip:<user>@<listen>`: how a peer dials this sipterm.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.listen)
    }

    /// `sip:<user>@<ip>:<listen port>`: how a peer dials it when it listens on a wildcard
    /// address (`0.0.0.0`, `[::]`), e.g. at its lab host's address.
    pub fn uri_at(&self, user: &str, ip: std::net::IpAddr) -> String {
        format!("sip:{user}@{}", SocketAddr::new(ip, self.listen.port()))
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn name(&self) -> &str {
        self.guard.name()
    }

    /// Where its stdout.log, stderr.log and sipterm.log are.
    pub fn log_dir(&self) -> &Path {
        self.guard.log_dir()
    }

    /// Sends one command line.
    pub fn send(&mut self, command: &str) -> Result<(), HarnessError> {
        self.guard.send_line(command)
    }

    /// Reads events until one satisfies `matches` (events before it are kept in `history`).
    /// Non-JSON lines fail the wait: stdout must be JSON lines only.
    pub fn expect_event(
        &mut self,
        what: &str,
        mut matches: impl FnMut(&Value) -> bool,
        timeout: Duration,
    ) -> Result<Value, HarnessError> {
        let mut found = None;
        let mut bad_line = None;
        let history = &mut self.history;
        let mut check = |line: &str| match serde_json::from_str::<Value>(line) {
            Ok(event) => {
                let hit = matches(&event);
                history.push(event.clone());
                if hit {
                    found = Some(event);
                }
                hit
            }
            Err(_) => {
                bad_line = Some(line.to_owned());
                true
            }
        };
        self.guard
            .expect_line_described(what, &mut check, timeout)?;
        if let Some(line) = bad_line {
            return Err(HarnessError::InvalidInput {
                what: "headless stdout line",
                value: line,
                why: "not a JSON object",
            });
        }
        found.ok_or_else(|| HarnessError::InvalidInput {
            what: "expect_event",
            value: what.to_owned(),
            why: "matched line vanished",
        })
    }

    /// Waits for a `call` event with this `state`.
    pub fn expect_call_state(
        &mut self,
        state: &str,
        timeout: Duration,
    ) -> Result<Value, HarnessError> {
        self.expect_event(
            &format!("call state `{state}`"),
            |e| e["event"] == "call" && e["state"] == state,
            timeout,
        )
    }

    /// Every event read so far.
    pub fn history(&self) -> &[Value] {
        &self.history
    }

    /// Every event that arrives within `window` (reads until the window has passed).
    pub fn collect_for(&mut self, window: Duration) -> Vec<Value> {
        let start = self.history.len();
        // Nothing matches: this reads until the timeout (or the end of the output).
        let _ = self.expect_event("nothing (collecting)", |_| false, window);
        self.history
            .get(start..)
            .map(<[Value]>::to_vec)
            .unwrap_or_default()
    }

    /// The `sip` events read so far with this direction (`in` / `out`).
    pub fn sip_events(&self, dir: &str) -> Vec<&Value> {
        self.history
            .iter()
            .filter(|e| e["event"] == "sip" && e["dir"] == dir)
            .collect()
    }

    /// The `sip` events read so far as (dir, peer, summary).
    pub fn sip_trace(&self) -> Vec<(String, String, String)> {
        self.events_of("sip")
            .into_iter()
            .map(|e| {
                let field = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                (field("dir"), field("peer"), field("summary"))
            })
            .collect()
    }

    /// The events of one kind read so far.
    pub fn events_of(&self, kind: &str) -> Vec<&Value> {
        self.history.iter().filter(|e| e["event"] == kind).collect()
    }

    /// Waits (at most `timeout`) until `count` registration events have come: behind a
    /// registrar that rewrites the Contact (rport/received) the first `registered` is followed
    /// by a Contact refresh, and a call placed before it would race the refresh.
    pub fn settle_registrations(&mut self, count: usize, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while self.events_of("registration").len() < count && std::time::Instant::now() < deadline {
            let _ = self.expect_event(
                "a registration event",
                |e| e["event"] == "registration",
                Duration::from_millis(500),
            );
        }
    }

    /// `quit`, then waits for the exit; kills it when it takes longer than `timeout`.
    pub fn quit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        if self.guard.try_exit_status().is_none() {
            let _ = self.send("quit");
        }
        // Drain stdout into history so late events are visible to the test.
        let _ = self.expect_event("the end of stdout", |_| false, timeout);
        match self.guard.wait_timeout(Duration::from_millis(500)) {
            Some(status) => Some(status),
            None => {
                self.guard.kill();
                None
            }
        }
    }

    /// Everything it logged to stderr and its log file, for failure messages.
    pub fn recent_output(&self) -> String {
        self.guard.recent_output()
    }

    /// utime + stime of the process so far, in clock ticks (from /proc/PID/stat).
    pub fn cpu_ticks(&self) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(utime + stime)
    }
}

/// The sipterm binary, run through `ip netns exec NS` when `netns` is given. `ip netns exec`
/// execs the program, so the child's PID (and process group) is sipterm's own.
fn sipterm_command(netns: Option<&str>) -> Command {
    let binary = env!("CARGO_BIN_EXE_sipterm");
    match netns {
        None => Command::new(binary),
        Some(netns) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", netns, binary]);
            command
        }
    }
}

/// The listen address of a `ready` event: `"IP:PORT"`, which may be a wildcard
/// (`0.0.0.0:5060`, `[::]:5060`) when sipterm listens on every interface. A list (an array or
/// comma-separated) gives its first address, so a front end that reports several stays usable.
fn parse_ready_listen(listen: &Value) -> Result<SocketAddr, HarnessError> {
    let first = match listen {
        Value::Array(items) => items.first().and_then(Value::as_str),
        other => other.as_str(),
    }
    .unwrap_or_default();
    let first = first.split(',').next().unwrap_or_default().trim();
    first.parse().map_err(|_| HarnessError::InvalidInput {
        what: "ready.listen",
        value: listen.to_string(),
        why: "not an IP:PORT",
    })
}

/// Writes a 16-bit mono WAV.
pub fn write_wav(path: &Path, rate: u32, samples: &[i16]) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for &s in samples {
        writer.write_sample(s)?;
    }
    writer.finalize()
}

/// A sine of `frequency` Hz, `seconds` long, peak `amplitude`.
pub fn sine(frequency: f32, rate: u32, seconds: f32, amplitude: f32) -> Vec<i16> {
    let mut out = Vec::new();
    sipterm::media::tones::SineGenerator::new(frequency, rate, amplitude)
        .fill(&mut out, (rate as f32 * seconds) as usize);
    out
}

/// Reads a 16-bit mono WAV: (rate, samples).
pub fn read_wav(path: &Path) -> Result<(u32, Vec<i16>), hound::Error> {
    let mut reader = hound::WavReader::open(path)?;
    let rate = reader.spec().sample_rate;
    let samples = reader.samples::<i16>().collect::<Result<Vec<_>, _>>()?;
    Ok((rate, samples))
}

/// An `[[account]]` `name` at `sip:name@127.0.0.1`, followed by `extra` keys.
pub fn local_account(name: &str, extra: &str) -> String {
    format!("[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@127.0.0.1\"\n{extra}")
}

/// The TLS listener from the `ready` event.
pub fn tls_listen(side: &Headless) -> Result<SocketAddr, HarnessError> {
    let ready = side.events_of("ready");
    let listen = ready.first().and_then(|e| e["tls_listen"].as_str());
    listen
        .and_then(|addr| addr.parse().ok())
        .ok_or_else(|| HarnessError::InvalidInput {
            what: "ready.tls_listen",
            value: format!("{ready:?}"),
            why: "no TLS listener address in the ready event",
        })
}

/// Nothing in its output says it panicked.
pub fn no_panic(side: &Headless) {
    let output = side.recent_output();
    assert!(
        !output.contains("panicked"),
        "{} panicked:\n{output}",
        side.name()
    );
}

/// Its debug log has the SIP messages with their `a=crypto` lines, every key masked: our
/// offer (2 lines) or answer (1) and the peer's make at least 3.
pub fn assert_log_masks_keys(side: &Headless) {
    let log = std::fs::read_to_string(side.log_dir().join("sipterm.log")).unwrap_or_default();
    let keys: Vec<&str> = log.split("inline:").skip(1).collect();
    println!("{}: {} inline keys in the log", side.name(), keys.len());
    assert!(
        keys.len() >= 3,
        "{}: SIP messages missing from the debug log",
        side.name()
    );
    for key in keys {
        assert!(
            key.starts_with("REDACTED"),
            "{}: key in clear in the log: inline:{}",
            side.name(),
            &key[..key.len().min(12)]
        );
    }
}

/// One plain `[[account]]` (what the peer tests need) and the config around it.
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

    /// A config file with this account, null audio and debug logging.
    pub fn config(&self) -> String {
        let mut text = String::from(
            "[audio]\ninput = \"null\"\noutput = \"null\"\n[log]\nlevel = \"debug\"\n\
             [[account]]\n",
        );
        text.push_str(&format!("name = {}\n", toml_string(&self.name)));
        text.push_str(&format!("uri = {}\n", toml_string(&self.uri)));
        let optional = [
            ("password", &self.password),
            ("registrar", &self.registrar),
            ("outbound_proxy", &self.outbound_proxy),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                text.push_str(&format!("{key} = {}\n", toml_string(value)));
            }
        }
        if let Some(expires) = self.expires {
            text.push_str(&format!("expires = {expires}\n"));
        }
        if !self.codecs.is_empty() {
            let list: Vec<String> = self.codecs.iter().map(|c| toml_string(c)).collect();
            text.push_str(&format!("codecs = [{}]\n", list.join(", ")));
        }
        text
    }
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
