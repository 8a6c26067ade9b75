//! The TOML configuration: accounts, SIP and audio settings, logging.
//!
//! Every mistake in a config file is reported as `FILE:LINE:COLUMN: message`, naming the key (and
//! the account, for checks that span several keys), so a user can fix it without guessing.
//! `config.example.toml` at the repository root documents every key and is loaded by a test.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::{Range, RangeInclusive};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::cli::Cli;

/// File name looked up in the XDG config directory (`~/.config/sipterm/`).
pub const CONFIG_FILE_NAME: &str = "config.toml";

/// Codecs sipterm can negotiate, by their config names.
pub const SUPPORTED_CODECS: [&str; 4] = ["opus", "pcmu", "pcma", "g722"];
/// What an account offers when its `codecs` key is absent. G.722 is opt-in: offering it
/// changes every offer's payload list, and Opus already gives wideband to peers that have it.
pub const DEFAULT_CODECS: [&str; 3] = ["opus", "pcmu", "pcma"];

/// Config files are small; anything larger is a mistake (a wrong path), not a config.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
const MAX_ACCOUNTS: usize = 100;
const MAX_CONTACTS: usize = 1000;
/// Bounds free text that ends up in SIP headers.
const MAX_TEXT_LEN: usize = 256;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub sip: SipConfig,
    pub audio: AudioConfig,
    /// Never empty: with no `[[account]]` in the file, the built-in local account.
    pub accounts: Vec<Account>,
    pub log: LogConfig,
    /// `[[contact]]` entries: names the TUI dials by (typed in the dial field or picked with `c`).
    pub contacts: Vec<Contact>,
    /// The file this was loaded from; `None` for the built-in configuration.
    pub source: Option<PathBuf>,
}

/// `[sip]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Local address for SIP over UDP/TCP; port 0 means any free port.
    pub listen: SocketAddr,
    /// `User-Agent` / `Server` header value.
    #[serde(deserialize_with = "header_text")]
    pub user_agent: String,
    /// RFC 3261 T1 (round-trip estimate) in milliseconds; retransmit timers derive from it.
    #[serde(deserialize_with = "t1_ms")]
    pub t1_ms: u64,
    /// STUN server `host:port` (port 3478 when absent) for every account that names none.
    #[serde(deserialize_with = "optional_non_empty_text")]
    pub stun_server: Option<String>,
    /// Send RTP to where the peer's RTP comes from even when its SDP address is public (it is
    /// always done when the SDP address is private).
    pub rtp_latching: bool,
    /// Accept SIP over TLS here (needs `tls_cert` and `tls_key`); unset: no TLS listener.
    pub tls_listen: Option<SocketAddr>,
    /// Our certificate chain (PEM, leaf first) for `tls_listen`.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A CA certificate (PEM) trusted for TLS servers, on top of the system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Do not verify TLS server certificates at all (testing only; warns at start).
    pub tls_insecure: bool,
    /// Connections the TCP listener, and the TLS listener, accept at once at most (each);
    /// more are closed at once.
    #[serde(deserialize_with = "max_connections")]
    pub max_connections: usize,
    /// An accepted TCP/TLS connection must send a complete message within this many seconds
    /// (its first one counted from the accept), else it is closed.
    #[serde(deserialize_with = "message_timeout_secs")]
    pub message_timeout_secs: u64,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5060)),
            user_agent: format!("sipterm/{}", env!("CARGO_PKG_VERSION")),
            t1_ms: 500,
            stun_server: None,
            rtp_latching: false,
            tls_listen: None,
            tls_cert: None,
            tls_key: None,
            tls_ca_file: None,
            tls_insecure: false,
            max_connections: 256,
            message_timeout_secs: 32,
        }
    }
}

/// `[audio]`: cpal device names, `"default"`, or `"null"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioConfig {
    #[serde(deserialize_with = "non_empty_text")]
    pub input: String,
    #[serde(deserialize_with = "non_empty_text")]
    pub output: String,
    /// Played while a call is incoming: a WAV file's path, "builtin" or "off".
    #[serde(deserialize_with = "non_empty_text")]
    pub ringtone: String,
    /// Ringback and busy tones: "eu" (425 Hz) or "us" (440+480 / 480+620 Hz).
    pub tone_region: ToneRegion,
    /// Where the ringtone plays (the speakers, while calls use a headset); unset: `output`.
    #[serde(deserialize_with = "optional_non_empty_text")]
    pub ring_device: Option<String>,
    /// Echo cancellation, noise suppression, automatic gain: unset means on with a sound card
    /// (echo cancellation needs both a microphone and a speaker), off with WAV files.
    pub echo_cancel: Option<bool>,
    pub noise_suppression: Option<bool>,
    pub auto_gain: Option<bool>,
}

impl Default for AudioConfig {
    fn default() -> Self {
        AudioConfig {
            input: "default".to_string(),
            output: "default".to_string(),
            ringtone: "builtin".to_string(),
            tone_region: ToneRegion::Eu,
            ring_device: None,
            echo_cancel: None,
            noise_suppression: None,
            auto_gain: None,
        }
    }
}

/// `[audio] tone_region`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToneRegion {
    #[default]
    Eu,
    Us,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level when neither `-v` nor `RUST_LOG` is given.
    pub level: LogLevel,
    /// Log file; default `sipterm.log` in the XDG state directory. `--log-file` overrides it.
    pub file: Option<PathBuf>,
    /// How many SIP messages the UI's log view keeps (oldest dropped first).
    #[serde(deserialize_with = "sip_trace_limit")]
    pub sip_trace_limit: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: LogLevel::Info,
            file: None,
            sip_trace_limit: 5000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

/// `srtp` of an account: SRTP with SDES keys (RFC 4568 `a=crypto`).
///
/// Default `optional`: offers stay RTP/AVP (so every peer takes the call, as with `off`) but
/// carry keys, so a peer that can encrypts (baresip's `srtp`, MicroSIP's "optional"); offers of
/// RTP/SAVP from peers that require SRTP are accepted instead of refused with 488.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Srtp {
    /// Plain RTP/AVP exactly as without SRTP support.
    Off,
    #[default]
    Optional,
    /// RTP/SAVP only: calls without SRTP are refused (488) or hung up.
    Mandatory,
}

impl Transport {
    /// The token used in Via headers and `;transport=` parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `accept_from`: who may send an account requests outside a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceptFrom {
    /// Only the registrar / outbound proxy (by its resolved addresses); others get 403.
    Proxy,
    /// Anyone.
    Any,
}

/// A password. Debug and Display print `***` so it never lands in a log or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> Deserialize<'de> for Secret {
    /// Only a string; anything else is refused without echoing the value (serde's own message,
    /// "invalid type: integer `123456`", put an unquoted numeric password on stderr).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string in quotes")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }
        }
        d.deserialize_any(Visitor).map_err(|_: D::Error| {
            serde::de::Error::custom("the password must be a string in quotes (value not shown)")
        })
    }
}

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The password itself, for computing a digest response. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `[[account]]`
// Debug is written by hand below: `password_command` must not be printed.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Unique; picked with `--account NAME`.
    #[serde(deserialize_with = "account_name")]
    pub name: String,
    /// Address of record, e.g. `sip:alice@atlanta.com`.
    #[serde(deserialize_with = "sip_uri")]
    pub uri: String,
    #[serde(default, deserialize_with = "optional_header_text")]
    pub display_name: Option<String>,
    /// Digest user name; `None` means the URI user (see [`Account::auth_username`]).
    #[serde(default, deserialize_with = "optional_header_text")]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// Shell command printing the password on its first stdout line.
    #[serde(default, deserialize_with = "optional_non_empty_text")]
    pub password_command: Option<String>,
    /// Where to REGISTER; `None`: no registration.
    #[serde(default, deserialize_with = "optional_sip_uri")]
    pub registrar: Option<String>,
    /// Every request goes to this proxy when set.
    #[serde(default, deserialize_with = "optional_sip_uri")]
    pub outbound_proxy: Option<String>,
    #[serde(default)]
    pub transport: Transport,
    /// Registration lifetime in seconds.
    #[serde(default = "default_expires", deserialize_with = "expires")]
    pub expires: u32,
    /// Preference order, lower-case names from [`SUPPORTED_CODECS`].
    #[serde(default = "default_codecs", deserialize_with = "codecs")]
    pub codecs: Vec<String>,
    /// Answer incoming calls after this many milliseconds; `None`: ring until the user answers.
    #[serde(default)]
    pub auto_answer: Option<u64>,
    /// STUN server `host:port` to learn the public address from (overrides `[sip]`).
    #[serde(default, deserialize_with = "optional_non_empty_text")]
    pub stun_server: Option<String>,
    /// ICE (RFC 8445) for the call's media: candidates in our SDP, connectivity checks, media
    /// over the pair that works. Off: the `c=` address as before.
    #[serde(default = "default_true")]
    pub ice: bool,
    /// TURN server for relayed candidates: `turn:host[:port][?transport=udp|tcp]`,
    /// `turns:host[:port]`, `host:port`, or a domain (`ice::server`).
    #[serde(default, deserialize_with = "optional_non_empty_text")]
    pub turn_server: Option<String>,
    #[serde(default, deserialize_with = "optional_non_empty_text")]
    pub turn_username: Option<String>,
    #[serde(default)]
    pub turn_password: Option<Secret>,
    /// Shell command printing the TURN password on its first stdout line.
    #[serde(default, deserialize_with = "optional_non_empty_text")]
    pub turn_password_command: Option<String>,
    /// Keep-alive interval, 0 = off. TCP/TLS: a CRLFCRLF ping on connections we open (RFC 5626
    /// §3.5.1), `None`: 30 s. UDP: CRLFCRLF to the registrar/proxy while registered, `None`:
    /// 29 s when a STUN server is set (we are behind NAT), else off.
    #[serde(default)]
    pub keepalive_secs: Option<u32>,
    /// Who may call or message us; `None`: `proxy` when a registrar or outbound proxy is set,
    /// else `any` (see [`Account::accept_from`]).
    #[serde(default)]
    pub accept_from: Option<AcceptFrom>,
    /// SRTP (SDES) policy: off | optional | mandatory.
    #[serde(default)]
    pub srtp: Srtp,
    /// Reliable provisional responses (RFC 3262): supported | required | off.
    #[serde(default, rename = "100rel")]
    pub rel100: Rel100,
    /// Session-Expires (RFC 4028) asked for in our INVITEs and answers, seconds; 0: none (a
    /// peer's session timer is still honoured).
    #[serde(
        default = "default_session_expires",
        deserialize_with = "session_expires"
    )]
    pub session_expires: u32,
    /// The shortest session interval accepted (Min-SE), seconds; shorter ones get 422.
    #[serde(default = "default_min_se", deserialize_with = "min_se")]
    pub min_se: u32,
    /// Do-not-disturb at start: new calls are refused with `dnd_code` (the TUI's `D` toggles).
    #[serde(default)]
    pub dnd: bool,
    /// What do-not-disturb answers: 486 (Busy Here) or 480 (Temporarily Unavailable).
    #[serde(default = "default_dnd_code", deserialize_with = "dnd_code")]
    pub dnd_code: u16,
    /// Call-forward-always: every new call gets 302 to this URI.
    #[serde(default, deserialize_with = "optional_sip_uri")]
    pub forward_to: Option<String>,
    /// Follow the peer's transfer requests (REFER) without asking.
    #[serde(default)]
    pub auto_accept_transfer: bool,
    /// How DTMF is sent: auto (RFC 4733 when the peer takes telephone-event, else SIP INFO),
    /// info, or inband (tones in the audio).
    #[serde(default)]
    pub dtmf: Dtmf,
    /// Start this account (register, take calls) with sipterm; it can be enabled later.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// This account's own SIP address (IP:PORT). Default: `[sip] listen` for the first
    /// account, the same IP on a free port for the others.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// What the voicemail key dials (a number, user or URI, e.g. "*97").
    #[serde(default, deserialize_with = "optional_header_text")]
    pub voicemail: Option<String>,
    /// Busy lamps: watch the contacts of this account (SUBSCRIBE presence and dialog state)
    /// and publish our own state to its server (PUBLISH, where it takes it).
    #[serde(default)]
    pub presence: bool,
    /// Subscribe to the voicemail indicator (RFC 3842 message-summary) at the registrar.
    #[serde(default)]
    pub mwi: bool,
    /// Who may subscribe to our presence and dialog state: "contacts", "any" or "none".
    #[serde(default)]
    pub watchers: Watchers,
}

/// `watchers` of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Watchers {
    /// Only the addresses of our contacts.
    #[default]
    Contacts,
    Any,
    None,
}

fn default_true() -> bool {
    true
}

/// `100rel` of an account (RFC 3262).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rel100 {
    /// Offered; used when the peer requires it.
    #[default]
    Supported,
    /// Required of the peers we call; used whenever a caller supports it.
    Required,
    /// Not offered; INVITEs that require it get 420.
    Off,
}

/// `dtmf` of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtmf {
    /// RFC 4733 telephone-event when the peer has it, else SIP INFO.
    #[default]
    Auto,
    /// SIP INFO (application/dtmf-relay) always.
    Info,
    /// Dual tones mixed into the audio.
    Inband,
}

/// Like the derived Debug, but `password` and `password_command` show only whether they are
/// set: a password manager command line may hold a secret (`echo hunter2`, a token, a path
/// that says too much), and Debug output ends up in logs and error reports.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured without `..`: a new field fails to compile until it is listed here,
        // so nobody adds a secret that Debug then prints.
        let Account {
            name,
            uri,
            display_name,
            username,
            password,
            password_command,
            registrar,
            outbound_proxy,
            transport,
            expires,
            codecs,
            auto_answer,
            stun_server,
            ice,
            turn_server,
            turn_username,
            turn_password,
            turn_password_command,
            keepalive_secs,
            accept_from,
            srtp,
            rel100,
            session_expires,
            min_se,
            dnd,
            dnd_code,
            forward_to,
            auto_accept_transfer,
            dtmf,
            enabled,
            listen,
            voicemail,
            presence,
            mwi,
            watchers,
        } = self;
        let redacted = |set: bool| if set { Some("***") } else { None };
        f.debug_struct("Account")
            .field("name", name)
            .field("uri", uri)
            .field("display_name", display_name)
            .field("username", username)
            .field("password", &redacted(password.is_some()))
            .field("password_command", &redacted(password_command.is_some()))
            .field("registrar", registrar)
            .field("outbound_proxy", outbound_proxy)
            .field("transport", transport)
            .field("expires", expires)
            .field("codecs", codecs)
            .field("auto_answer", auto_answer)
            .field("stun_server", stun_server)
            .field("ice", ice)
            .field("turn_server", turn_server)
            .field("turn_username", turn_username)
            .field("turn_password", &redacted(turn_password.is_some()))
            .field(
                "turn_password_command",
                &redacted(turn_password_command.is_some()),
            )
            .field("keepalive_secs", keepalive_secs)
            .field("accept_from", accept_from)
            .field("srtp", srtp)
            .field("100rel", rel100)
            .field("session_expires", session_expires)
            .field("min_se", min_se)
            .field("dnd", dnd)
            .field("dnd_code", dnd_code)
            .field("forward_to", forward_to)
            .field("auto_accept_transfer", auto_accept_transfer)
            .field("dtmf", dtmf)
            .field("enabled", enabled)
            .field("listen", listen)
            .field("voicemail", voicemail)
            .field("presence", presence)
            .field("mwi", mwi)
            .field("watchers", watchers)
            .finish()
    }
}

fn default_expires() -> u32 {
    600
}

fn default_session_expires() -> u32 {
    1800
}

fn default_min_se() -> u32 {
    90
}

fn default_dnd_code() -> u16 {
    486
}

fn default_codecs() -> Vec<String> {
    DEFAULT_CODECS.iter().map(|c| c.to_string()).collect()
}

impl Account {
    /// An account with every optional key at its default.
    pub fn new(name: impl Into<String>, uri: impl Into<String>) -> Account {
        Account {
            name: name.into(),
            uri: uri.into(),
            display_name: None,
            username: None,
            password: None,
            password_command: None,
            registrar: None,
            outbound_proxy: None,
            transport: Transport::Udp,
            expires: default_expires(),
            codecs: default_codecs(),
            auto_answer: None,
            stun_server: None,
            ice: true,
            turn_server: None,
            turn_username: None,
            turn_password: None,
            turn_password_command: None,
            keepalive_secs: None,
            accept_from: None,
            srtp: Srtp::default(),
            rel100: Rel100::default(),
            session_expires: default_session_expires(),
            min_se: default_min_se(),
            dnd: false,
            dnd_code: default_dnd_code(),
            forward_to: None,
            auto_accept_transfer: false,
            dtmf: Dtmf::default(),
            enabled: true,
            listen: None,
            voicemail: None,
            presence: false,
            mwi: false,
            watchers: Watchers::default(),
        }
    }

    /// `accept_from`, or its default: `proxy` for an account with a registrar or outbound
    /// proxy (calls come through it; anything else is a scanner), `any` without (people call
    /// our address directly, e.g. the built-in local account).
    pub fn accept_from(&self) -> AcceptFrom {
        self.accept_from.unwrap_or(
            if self.registrar.is_some() || self.outbound_proxy.is_some() {
                AcceptFrom::Proxy
            } else {
                AcceptFrom::Any
            },
        )
    }

    /// The account used when there is no config file: calls work, nothing registers.
    pub fn local() -> Account {
        Account::new("local", "sip:sipterm@127.0.0.1")
    }

    /// The digest user name: `username`, else the user part of `uri`.
    pub fn auth_username(&self) -> Option<&str> {
        self.username.as_deref().or_else(|| uri_user(&self.uri))
    }

    /// The password, from `password` or by running `password_command` with `sh -c` (blocking).
    /// The first line of the command's stdout is the password; the secret is never put into an
    /// error message.
    /// The TURN password, from `turn_password` or `turn_password_command`, like
    /// [`Account::resolve_password`].
    pub fn resolve_turn_password(&self) -> Result<Option<Secret>, ConfigError> {
        let mut turn = self.clone();
        turn.password = self.turn_password.clone();
        turn.password_command = self.turn_password_command.clone();
        turn.resolve_password()
    }

    pub fn resolve_password(&self) -> Result<Option<Secret>, ConfigError> {
        if let Some(password) = &self.password {
            return Ok(Some(password.clone()));
        }
        let Some(command) = &self.password_command else {
            return Ok(None);
        };
        let failure = |reason: String| ConfigError::PasswordCommand {
            account: self.name.clone(),
            reason,
        };
        let output = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|error| failure(format!("could not be started: {error}")))?;
        if !output.status.success() {
            // Its output is not shown: a password manager that fails may well have printed the
            // secret (or part of it) on stderr or stdout. Run the command by hand to see why.
            return Err(failure(format!(
                "failed ({}); its output is not shown, as it may hold the password: run the \
                 command in a shell to see why",
                output.status
            )));
        }
        let stdout = String::from_utf8(output.stdout)
            .map_err(|_| failure("printed something that is not UTF-8".to_string()))?;
        let password = stdout.lines().next().unwrap_or("").trim_end_matches('\r');
        if password.is_empty() {
            return Err(failure(
                "printed nothing on its first line of output".to_string(),
            ));
        }
        Ok(Some(Secret::new(password)))
    }
}

/// `[[contact]]`: a name for something dialable.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// Typed in the dial field (case-insensitive) instead of the URI; unique.
    #[serde(deserialize_with = "header_text")]
    pub name: String,
    /// What is dialed: anything the dial field takes (`sip:` URI, user@host, number, `echo`).
    #[serde(deserialize_with = "header_text")]
    pub uri: String,
    /// The account calls and messages to this contact go through (default: the outgoing one).
    #[serde(
        default,
        deserialize_with = "optional_header_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub account: Option<String>,
}

/// What can go wrong loading the config or resolving a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{}: cannot read config file: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: config file is larger than {MAX_CONFIG_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    /// A syntax error, an unknown key, a wrong type or a failed check, with its location.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("no account named `{name}`; configured accounts: {}", available.join(", "))]
    UnknownAccount {
        name: String,
        available: Vec<String>,
    },
    #[error("account `{account}`: password_command {reason}")]
    PasswordCommand { account: String, reason: String },
}

impl Default for Config {
    fn default() -> Self {
        Config {
            sip: SipConfig::default(),
            audio: AudioConfig::default(),
            accounts: vec![Account::local()],
            log: LogConfig::default(),
            contacts: Vec::new(),
            source: None,
        }
    }
}

/// The file layout, before checks that span several keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    sip: SipConfig,
    #[serde(default)]
    audio: AudioConfig,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    account: Vec<Spanned<Account>>,
    #[serde(default)]
    contact: Vec<Spanned<Contact>>,
}

impl Config {
    /// `~/.config/sipterm/config.toml` (or the platform's equivalent).
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "sipterm")
            .map(|dirs| dirs.config_dir().join(CONFIG_FILE_NAME))
    }

    /// Loads `path`, or the default path. A missing default file gives the built-in config (one
    /// local account) so the first run works; a missing explicit file is an error.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Config::load_file(path),
            None => match Config::default_path() {
                Some(path) if path.exists() => Config::load_file(&path),
                _ => Ok(Config::default()),
            },
        }
    }

    fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        Config::parse(&text, path)
    }

    /// Parses config text; `source` is the file name used in error messages.
    pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
        let invalid = |span: Option<Range<usize>>, message: String| {
            let (line, column) = line_column(text, span.map_or(0, |s| s.start));
            ConfigError::Invalid {
                path: source.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let file: ConfigFile = toml::from_str(text).map_err(|error| {
            let span = error.span();
            let mut message = describe_toml_error(error);
            if let Some(name) = span.as_ref().and_then(|s| account_at(text, s.start)) {
                message = format!("account `{name}`: {message}");
            }
            invalid(span, message)
        })?;
        if file.account.len() > MAX_ACCOUNTS {
            return Err(invalid(
                None,
                format!("too many accounts (at most {MAX_ACCOUNTS})"),
            ));
        }
        let mut names = HashSet::new();
        let mut accounts = Vec::with_capacity(file.account.len());
        for spanned in file.account {
            let span = spanned.span();
            let account = spanned.into_inner();
            if !names.insert(account.name.clone()) {
                return Err(invalid(
                    Some(span),
                    format!("account `{}`: this name is used twice", account.name),
                ));
            }
            if account.password.is_some() && account.password_command.is_some() {
                return Err(invalid(
                    Some(span),
                    format!(
                        "account `{}`: set either `password` or `password_command`, not both",
                        account.name
                    ),
                ));
            }
            if account.accept_from == Some(AcceptFrom::Proxy)
                && account.registrar.is_none()
                && account.outbound_proxy.is_none()
            {
                return Err(invalid(
                    Some(span),
                    format!(
                        "account `{}`: accept_from = \"proxy\" needs a `registrar` or \
                         `outbound_proxy` (without one nobody could call)",
                        account.name
                    ),
                ));
            }
            if account.session_expires != 0 && account.session_expires < account.min_se {
                return Err(invalid(
                    Some(span),
                    format!(
                        "account `{}`: session_expires = {} is below min_se = {} (use 0 for no \
                         session timer)",
                        account.name, account.session_expires, account.min_se
                    ),
                ));
            }
            accounts.push(account);
        }
        if accounts.is_empty() {
            accounts.push(Account::local());
        }
        if file.contact.len() > MAX_CONTACTS {
            return Err(invalid(
                None,
                format!("too many contacts (at most {MAX_CONTACTS})"),
            ));
        }
        let mut contact_names = HashSet::new();
        let mut contacts = Vec::with_capacity(file.contact.len());
        for spanned in file.contact {
            let span = spanned.span();
            let contact = spanned.into_inner();
            if let Some(account) = &contact.account
                && !accounts.iter().any(|a: &Account| &a.name == account)
            {
                return Err(invalid(
                    Some(span),
                    format!("contact `{}`: no account named `{account}`", contact.name),
                ));
            }
            if !contact_names.insert(contact.name.trim().to_lowercase()) {
                return Err(invalid(
                    Some(span),
                    format!("contact `{}`: this name is used twice", contact.name),
                ));
            }
            contacts.push(contact);
        }
        Ok(Config {
            sip: file.sip,
            audio: file.audio,
            accounts,
            log: file.log,
            contacts,
            source: Some(source.to_path_buf()),
        })
    }

    /// A warning when the file this config came from holds a `password` and other users may
    /// read or change it (mode & 0o077): they could read the password. `password_command`
    /// keeps no secret in the file, so it does not count.
    pub fn permission_warning(&self) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.source.as_ref()?;
        if !self.accounts.iter().any(|a| a.password.is_some()) {
            return None;
        }
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o077 != 0).then(|| {
            format!(
                "{} holds a password and other users can access it (mode {:03o}); run: chmod 600 {}",
                path.display(),
                mode & 0o777,
                path.display()
            )
        })
    }

    /// The accounts to run: the one `--account` names, else every enabled one (at least the
    /// first, so that a config whose accounts are all disabled still starts).
    pub fn running_accounts(&self, name: Option<&str>) -> Result<Vec<&Account>, ConfigError> {
        if name.is_some() {
            return Ok(vec![self.account(name)?]);
        }
        Ok(self.accounts.iter().collect())
    }

    /// A warning when `account` sends its requests to sipterm itself: an `outbound_proxy` or
    /// `registrar` whose host is an IP and whose port (5060 when absent; 5061 for sips:) is
    /// our own `listen` address (or, on a wildcard listen, a loopback IP at our port). Such a
    /// config (e.g. the old example's proxy copied as is) REGISTERs and calls to itself.
    pub fn self_loop_warning(&self, account: &Account) -> Option<String> {
        let listen = self.sip.listen;
        [
            ("outbound_proxy", account.outbound_proxy.as_deref()),
            ("registrar", account.registrar.as_deref()),
        ]
        .into_iter()
        .find_map(|(key, value)| {
            let uri: crate::sip::uri::Uri = value?.parse().ok()?;
            let ip: std::net::IpAddr = uri.host_unbracketed().parse().ok()?;
            let default_port = if uri.scheme.as_str() == "sips" {
                5061
            } else {
                5060
            };
            let port = uri.port.unwrap_or(default_port);
            let ours = port == listen.port()
                && (ip.to_canonical() == listen.ip().to_canonical()
                    || (listen.ip().is_unspecified() && ip.is_loopback()));
            ours.then(|| {
                format!(
                    "account `{}`: {key} {} is sipterm's own listen address ({listen}): requests \
                     would go to sipterm itself; set it to your provider's proxy",
                    account.name,
                    value.unwrap_or_default()
                )
            })
        })
    }

    /// The account called `name`, or the first account when `name` is `None`.
    pub fn account(&self, name: Option<&str>) -> Result<&Account, ConfigError> {
        let found = match name {
            Some(name) => self.accounts.iter().find(|a| a.name == name),
            None => self.accounts.first(),
        };
        found.ok_or_else(|| ConfigError::UnknownAccount {
            name: name.unwrap_or("").to_string(),
            available: self.accounts.iter().map(|a| a.name.clone()).collect(),
        })
    }

    /// Applies the command-line flags that override config keys (`--listen`, `--log-file`).
    pub fn with_cli_overrides(mut self, cli: &Cli) -> Config {
        if let Some(listen) = cli.listen {
            self.sip.listen = listen;
        }
        if let Some(log_file) = &cli.log_file {
            self.log.file = Some(log_file.clone());
        }
        self
    }
}

/// toml's message plus the dotted key it happened at, when the message does not name it already.
fn describe_toml_error(mut error: toml::de::Error) -> String {
    let message = error.message().trim().to_string();
    // Without its input, toml's Display appends the key path as "in `a.b`" instead of a snippet.
    error.set_input(None);
    let rendered = error.to_string();
    let key = rendered
        .lines()
        .find_map(|line| line.strip_prefix("in `")?.strip_suffix('`'))
        .filter(|key| !key.is_empty());
    match key {
        Some(key) => format!("`{key}`: {message}"),
        None => message,
    }
}

/// The `name` of the `[[account]]` whose keys or values cover byte `offset`, so an error in
/// one of its keys can say which account it is about.
fn account_at(text: &str, offset: usize) -> Option<String> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let accounts = root.get_ref().get("account")?.get_ref().as_array()?;
    accounts.iter().find_map(|account| {
        let table = account.get_ref().as_table()?;
        let start = table.iter().map(|(key, _)| key.span().start).min()?;
        let end = table.iter().map(|(_, value)| value.span().end).max()?;
        if !(start..=end).contains(&offset) {
            return None;
        }
        let name = account.get_ref().get("name")?.get_ref().as_str()?;
        Some(name.to_string())
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

/// The user part of a sip:/sips: URI (`alice` in `sip:alice@atlanta.com`).
fn uri_user(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once(':')?;
    let (user, _) = rest.split_once('@')?;
    let user = user.split(':').next().unwrap_or(user);
    (!user.is_empty()).then_some(user)
}

/// A light check until the real URI parser is wired in: scheme sip/sips with a host, or tel
/// with a number.
pub fn check_uri(uri: &str) -> Result<(), String> {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Err(format!(
            "`{uri}` is not a URI (expected e.g. sip:alice@example.com)"
        ));
    };
    if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{uri}` contains spaces or control characters"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "sip" | "sips" => {
            let host_port = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let host_port = host_port.split([';', '?']).next().unwrap_or("");
            let host = if host_port.starts_with('[') {
                host_port.split_inclusive(']').next().unwrap_or("")
            } else {
                host_port.split(':').next().unwrap_or("")
            };
            if host.is_empty() || host == "[]" || (host.starts_with('[') && !host.ends_with(']')) {
                return Err(format!("`{uri}` has no host"));
            }
            Ok(())
        }
        "tel" => {
            if rest.split(';').next().unwrap_or("").is_empty() {
                return Err(format!("`{uri}` has no number"));
            }
            Ok(())
        }
        _ => Err(format!(
            "`{uri}` has scheme `{scheme}`; expected sip:, sips: or tel:"
        )),
    }
}

// Field checks run inside deserialization, so toml reports the value's line and column.

fn header_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    check_header_text(&text).map_err(serde::de::Error::custom)?;
    Ok(text)
}

fn optional_header_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    header_text(d).map(Some)
}

fn check_header_text(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    if text.len() > MAX_TEXT_LEN {
        return Err(format!("is longer than {MAX_TEXT_LEN} bytes"));
    }
    if text.chars().any(char::is_control) {
        // A CR or LF here would let the value inject SIP headers.
        return Err("must not contain control characters (such as newlines)".to_string());
    }
    Ok(())
}

fn non_empty_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Err(serde::de::Error::custom("must not be empty"));
    }
    Ok(text)
}

fn optional_non_empty_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    non_empty_text(d).map(Some)
}

fn account_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
        return Err(serde::de::Error::custom(
            "account name must be 1 to 64 characters, without control characters",
        ));
    }
    Ok(name)
}

fn sip_uri<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let uri = String::deserialize(d)?;
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("sip:") || lower.starts_with("sips:")) {
        return Err(serde::de::Error::custom(format!(
            "`{uri}` is not a sip: or sips: URI"
        )));
    }
    check_uri(&uri).map_err(serde::de::Error::custom)?;
    Ok(uri)
}

fn optional_sip_uri<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    sip_uri(d).map(Some)
}

/// The one range check of numeric keys: `value` if it lies in `range`, else a message that
/// names the key, the value and the allowed range, then `note` (unit, default, RFC).
/// toml adds the line and column; an account's key also gets the account's name.
fn check_range<T>(key: &str, value: T, range: RangeInclusive<T>, note: &str) -> Result<T, String>
where
    T: PartialOrd + fmt::Display,
{
    if range.contains(&value) {
        return Ok(value);
    }
    Err(format!(
        "{key} = {value} is out of range {}..={}{note}",
        range.start(),
        range.end()
    ))
}

/// Declares a `deserialize_with` function per ranged key: `name: type = range, note`.
macro_rules! ranged_keys {
    ($($key:ident: $ty:ty = $range:expr, $note:expr;)*) => {$(
        fn $key<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
            let value = <$ty>::deserialize(d)?;
            check_range(stringify!($key), value, $range, $note).map_err(serde::de::Error::custom)
        }
    )*};
}

ranged_keys! {
    t1_ms: u64 = 50..=10_000, " (RFC 3261 default: 500)";
    max_connections: usize = 1..=100_000, " (default: 256)";
    message_timeout_secs: u64 = 1..=3600, " (default: 32)";
    sip_trace_limit: usize = 1..=1_000_000, "";
    expires: u32 = 60..=86_400, " seconds";
    min_se: u32 = 90..=86_400, " seconds (RFC 4028: at least 90)";
}

fn session_expires<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match u32::deserialize(d)? {
        0 => Ok(0),
        value => check_range(
            "session_expires",
            value,
            90..=86_400,
            " seconds (0: no session timer; RFC 4028 recommends 1800)",
        )
        .map_err(serde::de::Error::custom),
    }
}

fn dnd_code<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    let value = u16::deserialize(d)?;
    if value != 486 && value != 480 {
        return Err(serde::de::Error::custom(format!(
            "dnd_code = {value}: use 486 (Busy Here) or 480 (Temporarily Unavailable)"
        )));
    }
    Ok(value)
}

fn codecs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    if names.is_empty() {
        return Err(serde::de::Error::custom(
            "codecs must name at least one of opus, pcmu, pcma",
        ));
    }
    let mut codecs: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let lower = name.to_ascii_lowercase();
        if !SUPPORTED_CODECS.contains(&lower.as_str()) {
            return Err(serde::de::Error::custom(format!(
                "unknown codec `{name}`; supported: opus, pcmu, pcma"
            )));
        }
        if codecs.contains(&lower) {
            return Err(serde::de::Error::custom(format!(
                "codec `{name}` is listed twice"
            )));
        }
        codecs.push(lower);
    }
    Ok(codecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    fn parse_ok(text: &str) -> Config {
        match parse(text) {
            Ok(config) => config,
            Err(error) => panic!("config should load: {error}"),
        }
    }

    fn error_text(text: &str) -> String {
        match parse(text) {
            Ok(config) => panic!("config should be rejected, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    const FULL: &str = r#"
[sip]
listen = "127.0.0.1:5070"
user_agent = "test-agent"
t1_ms = 250

[audio]
input = "null"
output = "pulse"

[log]
level = "debug"
file = "/tmp/sipterm-test.log"
sip_trace_limit = 100

[[account]]
name = "alice"
uri = "sip:alice@atlanta.com"
display_name = "Alice"
username = "alice1"
password = "secret"
registrar = "sip:atlanta.com"
outbound_proxy = "sip:127.0.0.1:5060"
transport = "tcp"
expires = 3600
codecs = ["PCMU", "opus"]
auto_answer = 250

[[account]]
name = "bob"
uri = "sips:bob@biloxi.com"
"#;

    #[test]
    fn full_config_loads_every_key() {
        let config = parse_ok(FULL);
        assert_eq!(config.sip.listen, "127.0.0.1:5070".parse().unwrap());
        assert_eq!(config.sip.user_agent, "test-agent");
        assert_eq!(config.sip.t1_ms, 250);
        assert_eq!(config.audio.input, "null");
        assert_eq!(config.audio.output, "pulse");
        assert_eq!(config.log.level, LogLevel::Debug);
        assert_eq!(
            config.log.file,
            Some(PathBuf::from("/tmp/sipterm-test.log"))
        );
        assert_eq!(config.log.sip_trace_limit, 100);
        assert_eq!(config.source, Some(PathBuf::from("test.toml")));
        assert_eq!(config.accounts.len(), 2);

        let alice = &config.accounts[0];
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uri, "sip:alice@atlanta.com");
        assert_eq!(alice.display_name.as_deref(), Some("Alice"));
        assert_eq!(alice.auth_username(), Some("alice1"));
        assert_eq!(alice.password.as_ref().map(Secret::expose), Some("secret"));
        assert_eq!(alice.registrar.as_deref(), Some("sip:atlanta.com"));
        assert_eq!(alice.outbound_proxy.as_deref(), Some("sip:127.0.0.1:5060"));
        assert_eq!(alice.transport, Transport::Tcp);
        assert_eq!(alice.expires, 3600);
        assert_eq!(alice.codecs, vec!["pcmu", "opus"]);
        assert_eq!(alice.auto_answer, Some(250));

        let bob = &config.accounts[1];
        assert_eq!(bob.auth_username(), Some("bob"));
        assert_eq!(bob.transport, Transport::Udp);
        assert_eq!(bob.expires, 600);
        assert_eq!(bob.codecs, vec!["opus", "pcmu", "pcma"]);
        assert_eq!(bob.registrar, None);
        assert_eq!(bob.auto_answer, None);
    }

    #[test]
    fn empty_file_gives_defaults_and_local_account() {
        let config = parse_ok("");
        assert_eq!(config.sip.listen, "0.0.0.0:5060".parse().unwrap());
        assert_eq!(config.sip.t1_ms, 500);
        assert!(config.sip.user_agent.starts_with("sipterm/"));
        assert_eq!(config.audio.input, "default");
        assert_eq!(config.log.level, LogLevel::Info);
        assert_eq!(config.log.sip_trace_limit, 5000);
        assert_eq!(config.accounts, vec![Account::local()]);
        let local = &config.accounts[0];
        assert_eq!(local.uri, "sip:sipterm@127.0.0.1");
        assert_eq!(local.registrar, None);
    }

    #[test]
    fn missing_explicit_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let error = Config::load(Some(&path)).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }));
        assert!(error.to_string().contains("nope.toml"), "{error}");
    }

    #[test]
    fn load_reads_the_file_and_records_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, FULL).unwrap();
        let config = Config::load(Some(&path)).unwrap();
        assert_eq!(config.source.as_deref(), Some(path.as_path()));
        assert_eq!(config.account(Some("bob")).unwrap().name, "bob");
    }

    #[test]
    fn nat_keys_parse_and_default_off() {
        let config = parse_ok(
            "[sip]\nstun_server = \"stun.example.net:3478\"\nrtp_latching = true\n\
             [[account]]\nname = \"a\"\nuri = \"sip:a@example.com\"\n\
             stun_server = \"127.0.0.1\"\nkeepalive_secs = 15\n",
        );
        assert_eq!(
            config.sip.stun_server.as_deref(),
            Some("stun.example.net:3478")
        );
        assert!(config.sip.rtp_latching);
        let account = config.account(None).unwrap();
        assert_eq!(account.stun_server.as_deref(), Some("127.0.0.1"));
        assert_eq!(account.keepalive_secs, Some(15));
        let plain = parse_ok("");
        assert_eq!(plain.sip.stun_server, None);
        assert!(!plain.sip.rtp_latching);
        assert_eq!(plain.account(None).unwrap().keepalive_secs, None);
        assert!(parse("[sip]\nstun_server = \"\"\n").is_err());
    }

    #[test]
    fn example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let config = match Config::load(Some(&path)) {
            Ok(config) => config,
            Err(error) => panic!("config.example.toml must load: {error}"),
        };
        assert!(config.accounts.iter().any(|a| a.registrar.is_some()));
        // Copied as is, the example must not send sipterm's requests to sipterm itself.
        for account in &config.accounts {
            assert_eq!(config.self_loop_warning(account), None, "{}", account.name);
        }
    }

    #[test]
    fn a_proxy_or_registrar_at_our_own_listen_address_is_warned_about() {
        let config = parse_ok(
            "[sip]\nlisten = \"0.0.0.0:5060\"\n[[account]]\nname = \"a\"\n\
             uri = \"sip:a@atlanta.com\"\noutbound_proxy = \"sip:127.0.0.1:5060\"\n",
        );
        let warning = config.self_loop_warning(&config.accounts[0]);
        assert!(
            warning
                .as_deref()
                .is_some_and(|w| w.contains("outbound_proxy sip:127.0.0.1:5060")
                    && w.contains("0.0.0.0:5060")),
            "{warning:?}"
        );
        // No port means 5060; a listen on that very IP counts too.
        let config = parse_ok(
            "[sip]\nlisten = \"192.0.2.7:5060\"\n[[account]]\nname = \"a\"\n\
             uri = \"sip:a@atlanta.com\"\nregistrar = \"sip:192.0.2.7\"\n",
        );
        assert!(config.self_loop_warning(&config.accounts[0]).is_some());
        // Another port, another host, or a name: no warning.
        for proxy in [
            "sip:127.0.0.1:5070",
            "sip:192.0.2.9",
            "sip:proxy.atlanta.com",
        ] {
            let config = parse_ok(&format!(
                "[sip]\nlisten = \"0.0.0.0:5060\"\n[[account]]\nname = \"a\"\n\
                 uri = \"sip:a@atlanta.com\"\noutbound_proxy = \"{proxy}\"\n"
            ));
            assert_eq!(
                config.self_loop_warning(&config.accounts[0]),
                None,
                "{proxy}"
            );
        }
    }

    #[test]
    fn contacts_load_in_order_and_the_example_has_some() {
        let config = parse_ok(
            "[[contact]]\nname = \"Bob\"\nuri = \"sip:bob@biloxi.com\"\n\
             [[contact]]\nname = \"Echo\"\nuri = \"echo\"\n",
        );
        assert_eq!(
            config.contacts,
            vec![
                Contact {
                    name: "Bob".into(),
                    uri: "sip:bob@biloxi.com".into(),
                    account: None,
                },
                Contact {
                    name: "Echo".into(),
                    uri: "echo".into(),
                    account: None,
                },
            ]
        );
        assert!(parse_ok("").contacts.is_empty());
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let example = Config::load(Some(&path)).expect("example loads");
        assert!(!example.contacts.is_empty());
    }

    #[test]
    fn ringtone_and_tone_region() {
        let config = parse_ok("");
        assert_eq!(config.audio.ringtone, "builtin");
        assert_eq!(config.audio.tone_region, ToneRegion::Eu);
        let config = parse_ok("[audio]\nringtone = \"/tmp/ring.wav\"\ntone_region = \"us\"\n");
        assert_eq!(config.audio.ringtone, "/tmp/ring.wav");
        assert_eq!(config.audio.tone_region, ToneRegion::Us);
        let config = parse_ok(
            "[audio]\necho_cancel = false\nnoise_suppression = true\nring_device = \"pulseaudio:speakers\"\n",
        );
        assert_eq!(config.audio.echo_cancel, Some(false));
        assert_eq!(config.audio.noise_suppression, Some(true));
        assert_eq!(config.audio.auto_gain, None);
        assert_eq!(
            config.audio.ring_device.as_deref(),
            Some("pulseaudio:speakers")
        );
        let error = error_text("[audio]\nauto_gain = \"yes\"\n");
        assert!(error.contains("auto_gain"), "{error}");
        let error = error_text("[audio]\nring_device = \"\"\n");
        assert!(error.contains("ring_device"), "{error}");
        let error = error_text("[audio]\ntone_region = \"uk\"\n");
        assert!(
            error.contains("tone_region") || error.contains("uk"),
            "{error}"
        );
        let error = error_text("[audio]\nringtone = \"\"\n");
        assert!(error.contains("must not be empty"), "{error}");
    }

    #[test]
    fn pbx_keys_default_load_and_are_checked() {
        let account = |keys: &str| format!("[[account]]\nname = \"a\"\nuri = \"sip:a@h\"\n{keys}");
        let plain = parse_ok(&account(""));
        let a = plain.account(None).expect("account");
        assert_eq!(a.rel100, Rel100::Supported);
        assert_eq!((a.session_expires, a.min_se), (1800, 90));
        assert_eq!((a.dnd, a.dnd_code), (false, 486));
        assert_eq!(a.forward_to, None);
        assert!(!a.auto_accept_transfer);
        assert_eq!(a.dtmf, Dtmf::Auto);
        let set = parse_ok(&account(
            "100rel = \"required\"\nsession_expires = 0\nmin_se = 120\ndnd = true\n\
             dnd_code = 480\nforward_to = \"sip:vm@h\"\nauto_accept_transfer = true\n\
             dtmf = \"inband\"\n",
        ));
        let a = set.account(None).expect("account");
        assert_eq!(a.rel100, Rel100::Required);
        assert_eq!((a.session_expires, a.min_se), (0, 120));
        assert_eq!((a.dnd, a.dnd_code), (true, 480));
        assert_eq!(a.forward_to.as_deref(), Some("sip:vm@h"));
        assert!(a.auto_accept_transfer);
        assert_eq!(a.dtmf, Dtmf::Inband);
        for (keys, named) in [
            ("dnd_code = 404\n", "dnd_code"),
            ("session_expires = 30\n", "session_expires"),
            ("min_se = 60\n", "min_se"),
            ("100rel = \"maybe\"\n", "100rel"),
            ("dtmf = \"morse\"\n", "dtmf"),
            ("forward_to = \"mailto:vm@h\"\n", "forward_to"),
            ("session_expires = 100\nmin_se = 200\n", "session_expires"),
        ] {
            let error = error_text(&account(keys));
            assert!(error.contains(named), "{keys}: {error}");
            assert!(error.starts_with("test.toml:"), "{error}");
        }
    }

    #[test]
    fn contact_mistakes_are_named() {
        let error = error_text("[[contact]]\nname = \"Bob\"\nuri = \"sip:b@h\"\nphone = \"1\"\n");
        assert!(error.contains("phone"), "{error}");
        let error = error_text("[[contact]]\nname = \"Bob\"\n");
        assert!(error.contains("uri"), "{error}");
        let error = error_text("[[contact]]\nname = \"  \"\nuri = \"1\"\n");
        assert!(error.contains("must not be empty"), "{error}");
        let error = error_text(
            "[[contact]]\nname = \"Bob\"\nuri = \"1\"\n[[contact]]\nname = \"bob\"\nuri = \"2\"\n",
        );
        assert!(error.contains("used twice"), "{error}");
        assert!(error.starts_with("test.toml:4:"), "{error}");
    }

    #[test]
    fn syntax_error_has_file_line_column() {
        let text = "[sip]\nlisten = \"0.0.0.0:5060\"\nuser_agent = \n";
        let error = error_text(text);
        assert!(error.starts_with("test.toml:3:"), "{error}");
    }

    #[test]
    fn unknown_key_is_named_with_its_location() {
        let error = error_text("[sip]\nlisten = \"0.0.0.0:5060\"\nlisen = \"x\"\n");
        assert!(error.starts_with("test.toml:3:1: "), "{error}");
        assert!(error.contains("lisen"), "{error}");
    }

    #[test]
    fn unknown_section_is_named() {
        let error = error_text("[sipp]\nlisten = \"0.0.0.0:5060\"\n");
        assert!(error.starts_with("test.toml:1:"), "{error}");
        assert!(error.contains("sipp"), "{error}");
    }

    #[test]
    fn unknown_account_key_is_named() {
        let error = error_text("[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\npasword = \"x\"\n");
        assert!(error.starts_with("test.toml:4:1: "), "{error}");
        assert!(error.contains("pasword"), "{error}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let error = error_text("[sip]\nt1_ms = \"fast\"\n");
        assert!(error.starts_with("test.toml:2:9: "), "{error}");
        assert!(error.contains("sip.t1_ms"), "{error}");
    }

    #[test]
    fn bad_listen_address_is_located() {
        let error = error_text("[sip]\nlisten = \"localhost\"\n");
        assert!(error.starts_with("test.toml:2:10: "), "{error}");
        assert!(error.contains("sip.listen"), "{error}");
    }

    #[test]
    fn bad_transport_is_located_and_lists_choices() {
        let text = "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\n\n\
                    [[account]]\nname = \"b\"\nuri = \"sip:b@c\"\ntransport = \"sctp\"\n";
        let error = error_text(text);
        assert!(error.starts_with("test.toml:8:13: "), "{error}");
        assert!(error.contains("transport"), "{error}");
        assert!(error.contains("sctp") && error.contains("udp"), "{error}");
        assert!(error.contains("account `b`"), "{error}");
    }

    /// The messages name the key, the value, the range and the note, as they always did.
    #[test]
    fn range_errors_name_key_value_and_range() {
        assert_eq!(check_range("t1_ms", 50u64, 50..=10_000, ""), Ok(50));
        assert_eq!(check_range("t1_ms", 10_000u64, 50..=10_000, ""), Ok(10_000));
        assert_eq!(
            check_range("t1_ms", 49u64, 50..=10_000, " (RFC 3261 default: 500)"),
            Err("t1_ms = 49 is out of range 50..=10000 (RFC 3261 default: 500)".to_string())
        );
        let cases = [
            (
                "[sip]\nt1_ms = 10001\n",
                "t1_ms = 10001 is out of range 50..=10000 (RFC 3261 default: 500)",
            ),
            (
                "[sip]\nmax_connections = 0\n",
                "max_connections = 0 is out of range 1..=100000 (default: 256)",
            ),
            (
                "[sip]\nmessage_timeout_secs = 3601\n",
                "message_timeout_secs = 3601 is out of range 1..=3600 (default: 32)",
            ),
            (
                "[log]\nsip_trace_limit = 0\n",
                "sip_trace_limit = 0 is out of range 1..=1000000",
            ),
            (
                "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nexpires = 86401\n",
                "expires = 86401 is out of range 60..=86400 seconds",
            ),
            (
                "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nmin_se = 89\n",
                "min_se = 89 is out of range 90..=86400 seconds (RFC 4028: at least 90)",
            ),
            (
                "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nsession_expires = 89\n",
                "session_expires = 89 is out of range 90..=86400 seconds (0: no \
                 session timer; RFC 4028 recommends 1800)",
            ),
        ];
        for (text, message) in cases {
            let error = error_text(text);
            assert!(error.ends_with(message), "{error}");
            if text.starts_with("[[account]]") {
                assert!(error.contains("account `a`: "), "{error}");
            }
        }
        let config =
            parse_ok("[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nsession_expires = 0\n");
        assert_eq!(config.accounts[0].session_expires, 0);
    }

    #[test]
    fn out_of_range_values_are_located() {
        let error = error_text("[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nexpires = 5\n");
        assert!(error.starts_with("test.toml:4:11: "), "{error}");
        assert!(error.contains("expires"), "{error}");
        assert!(error.contains("account `a`"), "{error}");
        let error = error_text("[sip]\nt1_ms = 1\n");
        assert!(error.starts_with("test.toml:2:9: "), "{error}");
        let error = error_text("[log]\nsip_trace_limit = 0\n");
        assert!(error.starts_with("test.toml:2:19: "), "{error}");
    }

    #[test]
    fn bad_codec_is_located() {
        let error =
            error_text("[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\ncodecs = [\"g729\"]\n");
        assert!(error.starts_with("test.toml:4:"), "{error}");
        assert!(error.contains("g729"), "{error}");
        let error = error_text(
            "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\ncodecs = [\"opus\", \"OPUS\"]\n",
        );
        assert!(error.contains("twice"), "{error}");
        let error = error_text("[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\ncodecs = []\n");
        assert!(error.contains("at least one"), "{error}");
    }

    #[test]
    fn bad_uris_are_located() {
        let error = error_text("[[account]]\nname = \"a\"\nuri = \"http://a.com\"\n");
        assert!(error.starts_with("test.toml:3:7: "), "{error}");
        assert!(error.contains("http://a.com"), "{error}");
        let error = error_text("[[account]]\nname = \"a\"\nuri = \"sip:alice@\"\n");
        assert!(error.contains("no host"), "{error}");
        let error = error_text(
            "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nregistrar = \"atlanta.com\"\n",
        );
        assert!(error.starts_with("test.toml:4:13: "), "{error}");
        assert!(error.contains("registrar"), "{error}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let error = error_text("[[account]]\nname = \"a\"\n");
        assert!(error.starts_with("test.toml:1:"), "{error}");
        assert!(error.contains("uri"), "{error}");
    }

    #[test]
    fn header_injection_in_display_name_is_rejected() {
        let error = error_text(
            "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\ndisplay_name = \"A\\r\\nVia: evil\"\n",
        );
        assert!(error.starts_with("test.toml:4:"), "{error}");
        assert!(error.contains("control characters"), "{error}");
    }

    #[test]
    fn duplicate_account_names_are_located_and_named() {
        let text = "[[account]]\nname = \"alice\"\nuri = \"sip:a@b\"\n\n[[account]]\nname = \"alice\"\nuri = \"sip:c@d\"\n";
        let error = error_text(text);
        assert!(
            error.starts_with("test.toml:5:") || error.starts_with("test.toml:6:"),
            "{error}"
        );
        assert!(
            error.contains("`alice`") && error.contains("twice"),
            "{error}"
        );
    }

    #[test]
    fn password_and_command_together_name_the_account() {
        let text = "[[account]]\nname = \"alice\"\nuri = \"sip:a@b\"\npassword = \"x\"\npassword_command = \"echo y\"\n";
        let error = error_text(text);
        assert!(error.starts_with("test.toml:"), "{error}");
        assert!(error.contains("`alice`"), "{error}");
        assert!(error.contains("password_command"), "{error}");
        assert!(
            !error.contains("echo y") && !error.contains("\"x\""),
            "{error}"
        );
    }

    #[test]
    fn account_selection() {
        let config = parse_ok(FULL);
        assert_eq!(config.account(None).unwrap().name, "alice");
        assert_eq!(config.account(Some("bob")).unwrap().name, "bob");
        let error = config.account(Some("carol")).unwrap_err().to_string();
        assert!(
            error.contains("carol") && error.contains("alice, bob"),
            "{error}"
        );
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let config = parse_ok(FULL);
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("***"));
        assert_eq!(Secret::new("hunter2").to_string(), "***");
    }

    #[test]
    fn debug_output_never_shows_the_password_command() {
        let text = "[[account]]\nname = \"alice\"\nuri = \"sip:alice@example.com\"\n\
                    password_command = \"pass show sip/Tok3n-Xyz\"\n\
                    [[account]]\nname = \"bob\"\nuri = \"sip:bob@example.com\"\n\
                    password = \"Pw-Bob-4711\"\n";
        let config = parse_ok(text);
        for debug in [
            format!("{:?}", config.accounts[0]),
            format!("{:#?}", config.accounts[1]),
            format!("{config:?}"),
            format!("{config:#?}"),
        ] {
            assert!(!debug.contains("Tok3n"), "{debug}");
            assert!(!debug.contains("pass show"), "{debug}");
            assert!(!debug.contains("Pw-Bob"), "{debug}");
            // Still useful: which account, and that a command is set.
            assert!(debug.contains("alice") || debug.contains("bob"), "{debug}");
            assert!(debug.contains("password_command"), "{debug}");
        }
        let alice = format!("{:?}", config.accounts[0]);
        assert!(alice.contains("password_command: Some(\"***\")"), "{alice}");
        assert!(alice.contains("password: None"), "{alice}");
        let bob = format!("{:?}", config.accounts[1]);
        assert!(bob.contains("password: Some(\"***\")"), "{bob}");
        assert!(bob.contains("password_command: None"), "{bob}");
    }

    #[test]
    fn listener_limits_have_defaults_and_bounds() {
        let config = parse_ok("");
        assert_eq!(config.sip.max_connections, 256);
        assert_eq!(config.sip.message_timeout_secs, 32);
        let config = parse_ok("[sip]\nmax_connections = 4\nmessage_timeout_secs = 2\n");
        assert_eq!(config.sip.max_connections, 4);
        assert_eq!(config.sip.message_timeout_secs, 2);
        for bad in ["max_connections = 0", "message_timeout_secs = 0"] {
            let error = error_text(&format!("[sip]\n{bad}\n"));
            assert!(error.contains("out of range"), "{bad}: {error}");
        }
    }

    #[test]
    fn password_command_takes_first_line() {
        let mut account = Account::new("a", "sip:a@b");
        account.password_command = Some("printf 'hunter2\\nextra'".to_string());
        let password = account.resolve_password().unwrap();
        assert_eq!(password.as_ref().map(Secret::expose), Some("hunter2"));
    }

    #[test]
    fn failing_password_command_reports_status_without_secret() {
        let mut account = Account::new("alice", "sip:a@b");
        account.password_command = Some("echo hunter2; echo no-such-entry >&2; exit 3".to_string());
        let error = account.resolve_password().unwrap_err().to_string();
        assert!(error.contains("alice"), "{error}");
        assert!(error.contains('3'), "{error}");
        // Its output is never echoed: a failing password manager may print the secret.
        assert!(!error.contains("no-such-entry"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        account.password_command = Some("echo Cmd-Secret-987 >&2; exit 1".to_string());
        let error = account.resolve_password().unwrap_err().to_string();
        assert!(!error.contains("Cmd-Secret"), "{error}");
    }

    #[test]
    fn a_password_of_the_wrong_type_is_not_echoed() {
        for value in ["987654321", "98765.4321", "[\"Secret-in-array\"]", "true"] {
            let error = error_text(&format!(
                "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\npassword = {value}\n"
            ));
            assert!(
                error.contains("password") && error.contains("string"),
                "{error}"
            );
            assert!(
                !error.contains("98765") && !error.contains("Secret-in"),
                "{error}"
            );
        }
    }

    #[test]
    fn accept_from_defaults_to_proxy_with_a_registrar_or_proxy() {
        let mut account = Account::new("a", "sip:a@b");
        assert_eq!(account.accept_from(), AcceptFrom::Any);
        assert_eq!(Account::local().accept_from(), AcceptFrom::Any);
        account.registrar = Some("sip:b".into());
        assert_eq!(account.accept_from(), AcceptFrom::Proxy);
        account.registrar = None;
        account.outbound_proxy = Some("sip:127.0.0.1".into());
        assert_eq!(account.accept_from(), AcceptFrom::Proxy);
        account.accept_from = Some(AcceptFrom::Any);
        assert_eq!(account.accept_from(), AcceptFrom::Any);
        let config = parse_ok(
            "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nregistrar = \"sip:b\"\naccept_from = \"any\"\n",
        );
        assert_eq!(config.accounts[0].accept_from, Some(AcceptFrom::Any));
        let error =
            error_text("[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\naccept_from = \"proxy\"\n");
        assert!(
            error.contains("accept_from") && error.contains("registrar"),
            "{error}"
        );
        let error = error_text(
            "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nregistrar = \"sip:b\"\naccept_from = \"friends\"\n",
        );
        assert!(
            error.contains("accept_from") || error.contains("friends"),
            "{error}"
        );
    }

    #[test]
    fn permission_warning_only_for_a_readable_file_with_a_password() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let with_password = "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\npassword = \"pw\"\n";
        let with_command =
            "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\npassword_command = \"echo pw\"\n";
        let set_mode = |mode: u32| {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        std::fs::write(&path, with_password).unwrap();
        set_mode(0o644);
        let warning = Config::load(Some(&path)).unwrap().permission_warning();
        let warning = warning.expect("a warning for mode 644");
        assert!(warning.contains(&path.display().to_string()), "{warning}");
        assert!(warning.contains("chmod 600"), "{warning}");
        assert!(warning.contains("644"), "{warning}");
        assert!(!warning.contains("pw\""), "{warning}");
        set_mode(0o600);
        assert_eq!(
            Config::load(Some(&path)).unwrap().permission_warning(),
            None
        );
        set_mode(0o640);
        assert!(
            Config::load(Some(&path))
                .unwrap()
                .permission_warning()
                .is_some()
        );
        std::fs::write(&path, with_command).unwrap();
        set_mode(0o644);
        assert_eq!(
            Config::load(Some(&path)).unwrap().permission_warning(),
            None
        );
        // No file at all (built-in config): nothing to warn about.
        assert_eq!(Config::default().permission_warning(), None);
    }

    #[test]
    fn silent_password_command_is_an_error() {
        let mut account = Account::new("alice", "sip:a@b");
        account.password_command = Some("true".to_string());
        let error = account.resolve_password().unwrap_err().to_string();
        assert!(error.contains("printed nothing"), "{error}");
    }

    #[test]
    fn no_password_configured_is_none() {
        assert!(Account::local().resolve_password().unwrap().is_none());
    }

    #[test]
    fn auth_username_falls_back_to_uri_user() {
        assert_eq!(
            Account::new("a", "sip:alice@atlanta.com").auth_username(),
            Some("alice")
        );
        assert_eq!(
            Account::new("a", "sip:alice:pw@atlanta.com").auth_username(),
            Some("alice")
        );
        assert_eq!(Account::new("a", "sip:atlanta.com").auth_username(), None);
    }

    #[test]
    fn cli_overrides_listen_and_log_file() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "sipterm",
            "--listen",
            "127.0.0.1:0",
            "--log-file",
            "/tmp/x.log",
        ])
        .unwrap();
        let config = Config::default().with_cli_overrides(&cli);
        assert_eq!(config.sip.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(config.log.file, Some(PathBuf::from("/tmp/x.log")));
    }

    #[test]
    fn uri_check() {
        assert!(check_uri("sip:alice@atlanta.com").is_ok());
        assert!(check_uri("sip:127.0.0.1:5060").is_ok());
        assert!(check_uri("sips:[::1]:5061;transport=tls").is_ok());
        assert!(check_uri("tel:+15551234").is_ok());
        assert!(check_uri("tel:").is_err());
        assert!(check_uri("sip:").is_err());
        assert!(check_uri("sip:alice@:5060").is_err());
        assert!(check_uri("mailto:a@b").is_err());
        assert!(check_uri("alice").is_err());
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("a\nbc", 3), (2, 2));
        assert_eq!(line_column("é\né", 5), (2, 2));
        assert_eq!(
            line_column("é\né", 4),
            (2, 1),
            "mid-character offsets round down"
        );
        assert_eq!(line_column("ab", 99), (1, 3));
    }

    #[test]
    fn srtp_defaults_to_optional_and_takes_the_three_policies() {
        let config = parse_ok("[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\n");
        assert_eq!(config.accounts[0].srtp, Srtp::Optional);
        for (text, policy) in [
            ("off", Srtp::Off),
            ("optional", Srtp::Optional),
            ("mandatory", Srtp::Mandatory),
        ] {
            let config = parse_ok(&format!(
                "[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nsrtp = \"{text}\"\n"
            ));
            assert_eq!(config.accounts[0].srtp, policy);
        }
        let error = error_text("[[account]]\nname = \"a\"\nuri = \"sip:a@b\"\nsrtp = \"yes\"\n");
        assert!(error.contains("srtp") || error.contains("yes"), "{error}");
        assert!(error.contains(":4:"), "points at the line: {error}");
    }
}
