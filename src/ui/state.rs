//! Everything the TUI shows, changed only by engine `Event`s (here) and user `Action`s
//! (`action.rs`). No clock reads: every change that needs a time gets `now` from the caller,
//! so tests run on fixed times and snapshots are stable.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Contact;
use crate::driver::command::Command;
use crate::event::{CallState, Direction, Event, RegistrationState};

use super::history::{self, HistoryEntry};

/// Dial history entries kept (oldest dropped first).
pub const DIAL_HISTORY_LIMIT: usize = 50;
/// Longest dial field / prompt text accepted from the keyboard.
pub const FIELD_LIMIT: usize = 256;
/// Calls kept on screen; a flood of INVITEs must not grow the list without bound.
pub const CALL_LIMIT: usize = 32;

/// Which pane receives keys that are not global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Dial,
    Calls,
    Log,
}

impl Focus {
    pub fn next(self) -> Focus {
        match self {
            Focus::Dial => Focus::Calls,
            Focus::Calls => Focus::Log,
            Focus::Log => Focus::Dial,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    Help,
    /// An incoming call waiting for Answer / Reject.
    Incoming {
        call: u64,
        remote: String,
    },
    /// One SIP message in full, scrolled by `scroll` lines.
    Message {
        entry: LogEntry,
        scroll: u16,
    },
    QuitConfirm,
    /// Contacts, then the call history (newest first); Enter dials the `selected` line.
    Contacts {
        selected: usize,
    },
    /// The transfer target prompt for `call`.
    Transfer {
        call: u64,
        target: String,
    },
    /// Attended transfer, first step: whom to consult before transferring `call` to them.
    Consult {
        call: u64,
        target: String,
    },
    /// The peer of `call` asks us to call `target` (REFER): accept or refuse.
    TransferRequest {
        call: u64,
        target: String,
    },
    /// The ladder diagram of the SIP messages with this Call-ID, scrolled by `scroll` rows.
    Ladder {
        call_id: String,
        scroll: u16,
    },
    /// The diagnosis: current findings, then past ones, with evidence; scrolled by lines.
    Diagnosis {
        scroll: u16,
    },
    /// Adding (`index` None) or editing one of the user's own contacts (`user_contacts`):
    /// `field` 0 name, 1 URI, 2 account (Up/Down pick it); Tab moves between them.
    ContactEdit {
        index: Option<usize>,
        name: String,
        uri: String,
        account: Option<String>,
        field: u8,
    },
    /// The conversations, most recent first (`M`); Enter opens the `selected` one.
    Chats {
        selected: usize,
    },
    /// One conversation (`account`, `peer`) and the message being typed.
    Chat {
        account: String,
        peer: String,
        input: String,
    },
    /// The sound devices (inputs, then outputs); Enter moves the selected call to one.
    Devices {
        selected: usize,
    },
    /// Every status message of the session in full, newest first (`s`, `F2`, or a click on
    /// the bottom line), scrolled by `scroll` lines.
    Messages {
        scroll: u16,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccountStatus {
    pub name: String,
    /// As the engine says it (registered, registering, failed, ...), or disabled.
    pub state: AccountState,
    pub code: Option<u16>,
    pub reason: Option<String>,
    /// Voicemail waiting (RFC 3842) and how many new messages, when the server says.
    pub voicemail: Option<(bool, Option<u32>)>,
}

/// An account's line in the status bar: its registration as the engine reports it, or
/// disabled by the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Registration(RegistrationState),
    Disabled,
}

impl AccountState {
    /// The word the status bar shows.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Registration(state) => state.as_str(),
            AccountState::Disabled => "disabled",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallView {
    pub id: u64,
    pub remote: String,
    /// As the engine says it: calling, incoming, ringing, early, confirmed, held.
    pub state: CallState,
    /// When the call was first confirmed: the duration timer counts from here.
    pub connected_at: Option<Instant>,
    pub codec: Option<String>,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub jitter_ms: f64,
    /// Round-trip time from RTCP, once the peer reported.
    pub rtt_ms: Option<f64>,
    /// Estimated MOS (E-model), 1..4.5.
    pub mos: Option<f64>,
    /// SRTP protects the media (from the last `media` event).
    pub encrypted: bool,
    /// ICE's pair (`ICE relay 198.51.100.1:49152 -> srflx 203.0.113.2:40000`) or its failure
    /// with the pairs tried; `None` without ICE.
    pub ice: Option<String>,
    /// The SRTP keys (SDES) went in clear: over UDP or TCP, not TLS.
    pub keys_in_clear: bool,
    /// RTP/RTCP packets from strangers dropped so far (from the last `media` event).
    pub foreign: u64,
    pub held: bool,
    pub muted: bool,
    /// True when the call rang in (for the call history).
    pub incoming: bool,
    /// Last audio levels (dBFS) for the VU meters, and when they came.
    pub mic_db: Option<f32>,
    pub speaker_db: Option<f32>,
    pub levels_at: Option<Instant>,
    /// MOS, loss, jitter and round trip of each `media` event, for the small charts.
    pub quality: QualityHistory,
    /// Voice processing stages that run (`AEC NS AGC`, `-`), from the last `audio` event.
    pub processing: Option<String>,
    /// The file being recorded, while the call records (the `REC` marker).
    pub recording: Option<String>,
}

/// One `media` event's figures for the quality charts; loss is over that report's interval
/// (the cumulative loss of the stats line hides a bad minute in a long call).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QualityPoint {
    /// None while no audio arrives (no score for silence).
    pub mos: Option<f64>,
    pub loss_pct: f64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
}

/// The last `QUALITY_POINTS` points of a call, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QualityHistory {
    pub points: VecDeque<QualityPoint>,
}

/// Points kept per call: two minutes of reports every 2 s.
pub const QUALITY_POINTS: usize = 60;

impl QualityHistory {
    pub fn push(&mut self, point: QualityPoint) {
        if self.points.len() >= QUALITY_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }
}

/// A diagnosis finding as the TUI keeps it: when it came and, once over, when it cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingView {
    pub finding: crate::diagnosis::Finding,
    /// Time since the UI started.
    pub raised_at: Duration,
    pub cleared_at: Option<Duration>,
}

impl FindingView {
    pub fn is_active(&self) -> bool {
        self.cleared_at.is_none()
    }
}

/// Findings kept for the diagnosis pane (active ones and the most recent past ones).
pub const FINDINGS_LIMIT: usize = 100;

impl CallView {
    /// Whole seconds since the call was answered, if it was.
    pub fn duration(&self, now: Instant) -> Option<Duration> {
        self.connected_at
            .map(|at| now.saturating_duration_since(at))
    }

    pub fn is_ringing_in(&self) -> bool {
        self.state == CallState::Incoming
    }

    pub fn is_up(&self) -> bool {
        self.connected_at.is_some()
    }

    /// The levels to draw at `now`: `None` when none came yet or they are stale (media
    /// stopped: the engine sends ten a second while audio flows).
    pub fn levels(&self, now: Instant) -> Option<(f32, f32)> {
        let at = self.levels_at?;
        if now.saturating_duration_since(at) > LEVELS_STALE {
            return None;
        }
        Some((self.mic_db?, self.speaker_db?))
    }
}

/// VU levels older than this are not drawn.
pub const LEVELS_STALE: Duration = Duration::from_millis(1500);

/// Status messages kept for the messages view (oldest dropped first).
pub const STATUS_HISTORY_LIMIT: usize = 200;
/// Longest status message kept, in characters: a message built from network text (a reason
/// phrase, a peer's chat line) must not grow the history without bound.
pub const STATUS_TEXT_LIMIT: usize = 2000;

/// One status message as the messages view lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    /// Time since the UI started when it (last) came, shown like the log's times.
    pub at: Duration,
    pub text: String,
    /// The same text this many times in a row (a repeated warning takes one entry).
    pub repeats: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Time since the UI started (the log shows it as mm:ss.mmm).
    pub at: Duration,
    pub dir: Direction,
    pub peer: String,
    pub summary: String,
    pub raw: Arc<[u8]>,
    /// The Call-ID header, read once when the message arrives (the filters and the ladder
    /// look at every entry on every frame).
    pub call_id: Option<String>,
    /// The method: a request's own, a response's from its CSeq.
    pub method: Option<String>,
}

impl LogEntry {
    pub fn new(
        at: Duration,
        dir: Direction,
        peer: String,
        summary: String,
        raw: Arc<[u8]>,
    ) -> Self {
        let (call_id, cseq_method) = scan_headers(&raw);
        let method = if summary.starts_with("SIP/") {
            cseq_method
        } else {
            summary
                .split(' ')
                .next()
                .filter(|m| !m.is_empty())
                .map(str::to_string)
        };
        LogEntry {
            at,
            dir,
            peer,
            summary,
            raw,
            call_id,
            method,
        }
    }
}

/// The Call-ID (also compact `i`) and the CSeq method of a raw message, by a cheap scan of its
/// header lines (no full parse: this runs for every message, also in a flood).
pub fn scan_headers(raw: &[u8]) -> (Option<String>, Option<String>) {
    let mut call_id = None;
    let mut cseq = None;
    for line in raw.split(|b| *b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]);
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_string();
        let name = name.trim();
        if name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i") {
            call_id.get_or_insert(value);
        } else if name.eq_ignore_ascii_case("cseq") {
            cseq.get_or_insert_with(|| {
                value
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_ascii_uppercase()
            });
        }
        if call_id.is_some() && cseq.is_some() {
            break;
        }
    }
    (call_id, cseq.filter(|m| !m.is_empty()))
}

/// The log filter test: the typed text (lowercase; substring of the peer or the first line,
/// any case), the Call-ID and the method; each one that is set must match.
pub fn log_entry_matches(
    entry: &LogEntry,
    needle_lower: &str,
    call_id: Option<&str>,
    method: Option<&str>,
) -> bool {
    (needle_lower.is_empty()
        || entry.summary.to_lowercase().contains(needle_lower)
        || entry.peer.to_lowercase().contains(needle_lower))
        && call_id.is_none_or(|id| entry.call_id.as_deref() == Some(id))
        && method.is_none_or(|m| entry.method.as_deref() == Some(m))
}

/// The SIP trace ring: newest last, oldest dropped past `capacity`.
#[derive(Debug, Clone)]
pub struct SipLog {
    entries: VecDeque<LogEntry>,
    capacity: usize,
    /// Entries evicted from the ring so far; keeps a selection pointing at the same message.
    evicted: u64,
}

impl SipLog {
    pub fn new(capacity: usize) -> SipLog {
        SipLog {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            evicted: 0,
        }
    }

    pub fn push(&mut self, entry: LogEntry) {
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
            self.evicted += 1;
        }
        self.entries.push_back(entry);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&LogEntry> {
        self.entries.get(index)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &LogEntry> + ExactSizeIterator {
        self.entries.iter()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// The dial field with its history (Up/Down recall, like a shell).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DialField {
    pub text: String,
    pub history: Vec<String>,
    /// Index into `history` while recalling; `None` while editing fresh text.
    pub recall: Option<usize>,
}

impl DialField {
    pub fn remember(&mut self, target: &str) {
        self.history.retain(|h| h != target);
        self.history.push(target.to_string());
        if self.history.len() > DIAL_HISTORY_LIMIT {
            self.history.remove(0);
        }
        self.recall = None;
    }
}

#[derive(Debug, Clone)]
pub struct UiState {
    /// When the UI started: log times are relative to it.
    pub started: Instant,
    /// Sound devices for the picker (ids as `--list-devices` prints them), probed before the
    /// TUI takes the terminal (alsa-lib prints to stderr).
    pub input_devices: Vec<String>,
    pub output_devices: Vec<String>,
    /// The clock as of the last event, key or tick; render reads time only from here.
    pub now: Instant,
    pub listen: Option<String>,
    pub accounts: Vec<AccountStatus>,
    pub calls: Vec<CallView>,
    /// Index into `calls` of the call that `h`, `x`, `m`, `t` act on.
    pub selected_call: usize,
    /// What the diagnosis found, oldest first: active and past (`w` lists them).
    pub findings: Vec<FindingView>,
    pub dial: DialField,
    pub log: SipLog,
    /// Selected log entry (index into the ring); `None` = follow mode (newest at the bottom).
    pub log_selected: Option<usize>,
    /// Log filter typed after `/` (case-insensitive substring of peer or first line).
    pub log_filter: String,
    /// True while `/` is collecting filter text.
    pub searching: bool,
    /// `f`: only the messages with this Call-ID (the selected call's).
    pub log_call_filter: Option<String>,
    /// `F`: only the messages of this method (responses by their CSeq method).
    pub log_method_filter: Option<String>,
    /// Set when there is no config file: where it goes (the log pane shows a welcome).
    pub first_run: Option<String>,
    pub focus: Focus,
    pub popup: Option<Popup>,
    /// The last message for the user, shown on the bottom line.
    pub status: Option<String>,
    /// Every status message so far (at most `STATUS_HISTORY_LIMIT`), oldest first: the
    /// bottom line shows only the last, and it may not fit there.
    pub status_history: VecDeque<StatusMessage>,
    /// SIP trace events the engine dropped because the UI was behind.
    pub dropped_traces: u64,
    /// Set once the user confirmed quitting; the run loop waits for the engine to finish.
    pub quitting: bool,
    /// `[[contact]]` entries from the config.
    pub contacts: Vec<Contact>,
    /// Past calls, oldest first (at most `history::HISTORY_LIMIT`).
    pub history: Vec<HistoryEntry>,
    /// The history changed since the run loop last saved it.
    pub history_dirty: bool,
    /// Wall clock (Unix seconds) at `started`: history times are `wall_start` + elapsed.
    /// Zero in tests, which keeps them free of clock reads.
    pub wall_start: u64,
    /// SIP Call-ID of each call on screen, learnt from its initial INVITE in the trace (the
    /// call events carry only our call number).
    pub call_sip_ids: Vec<(u64, String)>,
    /// A Call-ID the user asked to export (`e`); the run loop takes it and writes the file.
    pub export_request: Option<String>,
    /// Commands for the engine that go before the one `action::update` returns (answering or
    /// resuming a call first holds the other calls); the run loop drains it.
    pub outbox: Vec<crate::driver::command::Command>,
    /// Do-not-disturb is on, refusing new calls with this code (the engine says so).
    pub dnd: Option<u16>,
    /// Call-forward-always target, when set.
    pub forward: Option<String>,
    /// The calls in the local conference (empty: none).
    pub conference: Vec<u64>,
    /// Attended transfer in progress: the call to transfer, and the consultation call once
    /// it exists (`T` again completes the transfer).
    pub consult: Option<(u64, Option<u64>)>,
    /// The account's auto-answer delay (`--auto-answer` or `auto_answer`), and the ringing
    /// call it answers next, when.
    pub auto_answer: Option<Duration>,
    pub auto_answer_due: Option<(u64, Instant)>,
    /// A transfer request that came while another popup was open: shown when it closes.
    pub pending_transfer_request: Option<(u64, String)>,
    /// The account new calls and messages go out on (index into `accounts`; `A` cycles it).
    pub outgoing_account: usize,
    /// Each account's `voicemail` number (`V` dials the outgoing account's).
    pub voicemail_numbers: Vec<(String, String)>,
    /// Conversations per peer, with unread counts (`M`).
    pub chats: super::messaging::Chats,
    /// The conversations changed since the run loop last saved them.
    pub chats_dirty: bool,
    /// Contacts the user added in the TUI (`contacts.toml` in the data dir), after the
    /// config's read-only `contacts`.
    pub user_contacts: Vec<Contact>,
    /// `user_contacts` changed since the run loop last saved them.
    pub contacts_dirty: bool,
    /// Accounts that watch their contacts' lamps (`presence = true` with a registrar): a
    /// contact added on one is watched at once.
    pub presence_accounts: Vec<String>,
    /// Busy lamps: state (available, busy, ringing, offline, unknown) and note per watched
    /// URI, from `presence` events.
    pub lamps: std::collections::HashMap<String, (String, Option<String>)>,
    /// The account of each call on screen (incoming calls say which account).
    pub call_accounts: Vec<(u64, String)>,
}

impl UiState {
    pub fn new(accounts: &[String], log_capacity: usize, now: Instant) -> UiState {
        UiState {
            started: now,
            input_devices: Vec::new(),
            output_devices: Vec::new(),
            now,
            listen: None,
            accounts: accounts
                .iter()
                .map(|name| AccountStatus {
                    name: name.clone(),
                    state: AccountState::Registration(RegistrationState::Unregistered),
                    code: None,
                    reason: None,
                    voicemail: None,
                })
                .collect(),
            calls: Vec::new(),
            selected_call: 0,
            findings: Vec::new(),
            dial: DialField::default(),
            log: SipLog::new(log_capacity),
            log_selected: None,
            log_filter: String::new(),
            searching: false,
            log_call_filter: None,
            log_method_filter: None,
            first_run: None,
            focus: Focus::Dial,
            popup: None,
            status: None,
            status_history: VecDeque::new(),
            dropped_traces: 0,
            quitting: false,
            contacts: Vec::new(),
            history: Vec::new(),
            history_dirty: false,
            wall_start: 0,
            call_sip_ids: Vec::new(),
            export_request: None,
            outbox: Vec::new(),
            dnd: None,
            forward: None,
            conference: Vec::new(),
            consult: None,
            auto_answer: None,
            auto_answer_due: None,
            pending_transfer_request: None,
            outgoing_account: 0,
            voicemail_numbers: Vec::new(),
            chats: super::messaging::Chats::default(),
            chats_dirty: false,
            user_contacts: Vec::new(),
            contacts_dirty: false,
            presence_accounts: Vec::new(),
            lamps: std::collections::HashMap::new(),
            call_accounts: Vec::new(),
        }
    }

    /// A `message` event: into its conversation (unread unless it is open on screen).
    fn apply_message(&mut self, message: crate::event::MessageEvent) {
        let open = match &self.popup {
            Some(Popup::Chat { account, peer, .. }) => Some((account.clone(), peer.clone())),
            _ => None,
        };
        let time = self.wall_start + self.now.saturating_duration_since(self.started).as_secs();
        self.chats.apply(
            &message,
            time,
            open.as_ref().map(|(a, p)| (a.as_str(), p.as_str())),
        );
        self.chats_dirty = true;
        match (message.dir, &message.text, &message.status) {
            (Direction::In, Some(text), _) => {
                let who = message
                    .display
                    .clone()
                    .unwrap_or_else(|| message.peer.clone());
                let first: String = text.lines().next().unwrap_or("").chars().take(60).collect();
                self.set_status(format!(
                    "{}: message from {who}: {first} (M reads)",
                    message.account
                ));
            }
            (Direction::Out, None, Some(status)) if status == "failed" => {
                self.set_status(format!(
                    "message to {} failed: {} {}",
                    message.peer,
                    message.code.map(|c| c.to_string()).unwrap_or_default(),
                    message.reason.clone().unwrap_or_default()
                ));
            }
            _ => {}
        }
    }

    /// The account new calls go out on.
    pub fn outgoing_account_name(&self) -> Option<&str> {
        self.accounts
            .get(self.outgoing_account)
            .map(|a| a.name.as_str())
    }

    /// The command that dials `target` (a contact name or anything dialable): through the
    /// contact's own account, else the outgoing one. With one account it stays a plain
    /// `Dial`, as before several accounts existed.
    pub fn dial_command(&self, target: &str) -> Command {
        let wanted = target.trim();
        let contact = self
            .contacts
            .iter()
            .chain(&self.user_contacts)
            .find(|c| c.name.trim().eq_ignore_ascii_case(wanted));
        let uri = contact.map_or_else(|| wanted.to_string(), |c| c.uri.clone());
        let account = contact
            .and_then(|c| c.account.clone())
            .or_else(|| self.outgoing_account_name().map(str::to_string));
        match account {
            Some(account) if self.accounts.len() > 1 => Command::DialOn(account, uri),
            _ => Command::Dial(uri),
        }
    }

    /// The account a call is on, when known.
    pub fn call_account(&self, call: u64) -> Option<&str> {
        self.call_accounts
            .iter()
            .find(|(id, _)| *id == call)
            .map(|(_, a)| a.as_str())
    }

    /// Shows a transfer request that waited for another popup to close, if its call is still
    /// there.
    pub fn show_pending_transfer_request(&mut self) {
        if self.popup.is_some() {
            return;
        }
        if let Some((call, target)) = self.pending_transfer_request.take()
            && self.calls.iter().any(|c| c.id == call)
        {
            self.popup = Some(Popup::TransferRequest { call, target });
        }
    }

    /// A render tick: only the clock moves (the duration timers follow it).
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
    }

    /// True while some call is up or ringing: the run loop redraws every second then.
    pub fn needs_ticks(&self) -> bool {
        !self.calls.is_empty()
    }

    pub fn selected_call(&self) -> Option<&CallView> {
        self.calls.get(self.selected_call)
    }

    pub fn call_mut(&mut self, id: u64) -> Option<&mut CallView> {
        self.calls.iter_mut().find(|c| c.id == id)
    }

    /// The first call ringing in, for Enter on an empty field and `a`.
    pub fn ringing_call(&self) -> Option<&CallView> {
        self.calls.iter().find(|c| c.is_ringing_in())
    }

    /// Indices of log entries that pass the filter, oldest first.
    pub fn visible_log(&self) -> Vec<usize> {
        let needle = self.log_filter.to_lowercase();
        let call_id = self.log_call_filter.as_deref();
        let method = self.log_method_filter.as_deref();
        self.log
            .iter()
            .enumerate()
            .filter(|(_, e)| log_entry_matches(e, &needle, call_id, method))
            .map(|(i, _)| i)
            .collect()
    }

    /// True when any log filter is on (search text, call, method).
    pub fn log_filtered(&self) -> bool {
        !self.log_filter.is_empty()
            || self.log_call_filter.is_some()
            || self.log_method_filter.is_some()
    }

    /// The methods in the log, sorted (what `F` cycles through).
    pub fn log_methods(&self) -> Vec<String> {
        let mut methods: Vec<String> = Vec::new();
        for entry in self.log.iter() {
            if let Some(m) = &entry.method
                && !methods.contains(m)
            {
                methods.push(m.clone());
            }
        }
        methods.sort();
        methods
    }

    /// The SIP Call-ID of the selected call, when the engine told it.
    pub fn selected_sip_call_id(&self) -> Option<String> {
        let call = self.selected_call()?;
        self.call_sip_ids
            .iter()
            .find(|(id, _)| *id == call.id)
            .map(|(_, sip)| sip.clone())
    }

    /// What the contacts popup lists, in order: `(label, what to dial)`.
    /// The device picker's lines: (input?, device id), the defaults first.
    pub fn device_choices(&self) -> Vec<(bool, String)> {
        let inputs = std::iter::once("default".to_string()).chain(
            self.input_devices
                .iter()
                .filter(|d| d.as_str() != "default")
                .cloned(),
        );
        let outputs = std::iter::once("default".to_string()).chain(
            self.output_devices
                .iter()
                .filter(|d| d.as_str() != "default")
                .cloned(),
        );
        inputs
            .map(|d| (true, d))
            .chain(outputs.map(|d| (false, d)))
            .collect()
    }

    pub fn dial_choices(&self) -> Vec<(String, String)> {
        let contacts = self.contacts.iter().chain(&self.user_contacts).map(|c| {
            // The busy lamp, when the contact is watched (account key `presence`).
            let lamp = self
                .lamp_of(&c.uri)
                .map(|(state, _)| format!("  ● {state}"))
                .unwrap_or_default();
            (format!("{}  {}{lamp}", c.name, c.uri), c.uri.clone())
        });
        let calls = self.history.iter().rev().map(|h| {
            let arrow = if h.direction == "in" { "←" } else { "→" };
            (
                format!("{arrow} {}  {}", h.remote, h.result),
                h.remote.clone(),
            )
        });
        contacts.chain(calls).collect()
    }

    /// The index in `user_contacts` of the `selected` line of the contacts popup, when that
    /// line is one of the user's own contacts (the config's come first and are read-only).
    pub fn user_contact_at(&self, selected: usize) -> Option<usize> {
        selected
            .checked_sub(self.contacts.len())
            .filter(|i| *i < self.user_contacts.len())
    }

    /// The lamp (state, note) of a watched URI, `sip:` and case aside.
    pub fn lamp_of(&self, uri: &str) -> Option<&(String, Option<String>)> {
        let key = |u: &str| u.trim().trim_start_matches("sip:").to_ascii_lowercase();
        let wanted = key(uri);
        self.lamps
            .iter()
            .find(|(k, _)| key(k) == wanted)
            .map(|(_, v)| v)
    }

    /// A contact's URI when `text` is a contact name (case-insensitive), else `text` itself.
    pub fn resolve_contact(&self, text: &str) -> String {
        let wanted = text.trim();
        self.contacts
            .iter()
            .chain(&self.user_contacts)
            .find(|c| c.name.trim().eq_ignore_ascii_case(wanted))
            .map_or_else(|| wanted.to_string(), |c| c.uri.clone())
    }

    /// The Call-ID the ladder and the export are about: the selected call's, else the newest
    /// call in the trace (so a call that just ended can still be drawn).
    pub fn ladder_call_id(&self) -> Option<String> {
        self.selected_sip_call_id().or_else(|| {
            self.log
                .iter()
                .rev()
                .find(|e| is_initial_invite(e))
                .and_then(|e| e.call_id.clone())
        })
    }

    /// Log entries of one call (same Call-ID), oldest first.
    pub fn call_log(&self, call_id: &str) -> Vec<&LogEntry> {
        self.log
            .iter()
            .filter(|e| e.call_id.as_deref() == Some(call_id))
            .collect()
    }

    /// Shows `message` on the bottom line and keeps it in the messages view.
    pub fn set_status(&mut self, message: impl Into<String>) {
        let mut text: String = message.into();
        if let Some((cut, _)) = text.char_indices().nth(STATUS_TEXT_LIMIT) {
            text.truncate(cut);
            text.push('…');
        }
        let at = self.now.saturating_duration_since(self.started);
        match self.status_history.back_mut() {
            Some(last) if last.text == text => {
                last.at = at;
                last.repeats = last.repeats.saturating_add(1);
            }
            _ => {
                if self.status_history.len() >= STATUS_HISTORY_LIMIT {
                    self.status_history.pop_front();
                }
                self.status_history.push_back(StatusMessage {
                    at,
                    text: text.clone(),
                    repeats: 1,
                });
            }
        }
        self.status = Some(text);
    }

    /// Applies one engine event.
    pub fn apply_event(&mut self, event: Event, now: Instant) {
        self.now = now;
        match event {
            Event::Ready { listen, .. } => {
                self.set_status(format!("listening on {listen}"));
                self.listen = Some(listen);
            }
            Event::Registration {
                account,
                state,
                code,
                reason,
                ..
            } => {
                if state == RegistrationState::Failed {
                    let why = match (&code, &reason) {
                        (Some(c), Some(r)) => format!(": {c} {r}"),
                        (Some(c), None) => format!(": {c}"),
                        (None, Some(r)) => format!(": {r}"),
                        (None, None) => String::new(),
                    };
                    self.set_status(format!("{account}: registration failed{why}"));
                }
                match self.accounts.iter_mut().find(|a| a.name == account) {
                    Some(existing) => {
                        existing.state = AccountState::Registration(state);
                        existing.code = code;
                        existing.reason = reason;
                    }
                    None => self.accounts.push(AccountStatus {
                        name: account.clone(),
                        state: AccountState::Registration(state),
                        code,
                        reason,
                        voicemail: None,
                    }),
                }
            }
            Event::Sip {
                dir,
                peer,
                summary,
                raw,
            } => {
                self.push_log(LogEntry::new(
                    now.saturating_duration_since(self.started),
                    dir,
                    peer,
                    summary,
                    raw,
                ));
            }
            Event::Call {
                call,
                state,
                remote,
                code,
                reason,
                sip_call_id,
                account,
            } => {
                if let (Ok(id), Some(account)) = (call.parse::<u64>(), account) {
                    if state == CallState::Terminated {
                        self.call_accounts.retain(|(c, _)| *c != id);
                    } else if self.call_account(id).is_none()
                        && self.call_accounts.len() < CALL_LIMIT * 2
                    {
                        self.call_accounts.push((id, account));
                    }
                }
                // The Call-ID pairs the call with its messages in the trace (ladder, `f`).
                if let (Ok(id), Some(sip)) = (call.parse::<u64>(), sip_call_id)
                    && state != CallState::Terminated
                    && !self.call_sip_ids.iter().any(|(known, _)| *known == id)
                {
                    self.call_sip_ids.push((id, sip));
                }
                self.apply_call(&call, state, remote, code, reason, now);
            }
            Event::Media {
                call,
                codec,
                sent,
                received,
                lost,
                jitter_ms,
                rtt_ms,
                mos,
                encrypted,
                srtp,
                foreign,
                ice,
                ..
            } => {
                if let Some(view) = call.parse().ok().and_then(|id| self.call_mut(id)) {
                    let heard = received.saturating_sub(view.received);
                    let missed = lost.saturating_sub(view.lost);
                    view.quality.push(QualityPoint {
                        mos,
                        loss_pct: if heard + missed == 0 {
                            0.0
                        } else {
                            100.0 * missed as f64 / (heard + missed) as f64
                        },
                        jitter_ms,
                        rtt_ms,
                    });
                    view.codec = Some(codec);
                    view.sent = sent;
                    view.received = received;
                    view.lost = lost;
                    view.jitter_ms = jitter_ms;
                    view.rtt_ms = rtt_ms;
                    view.mos = mos;
                    view.encrypted = encrypted;
                    // Only a report that says TLS clears the warning.
                    view.keys_in_clear =
                        srtp.is_none_or(|s| s.keys != crate::event::KeyTransport::Tls);
                    view.foreign = foreign;
                    view.ice = ice.map(|ice| match (ice.local, ice.remote) {
                        (Some(local), Some(remote)) => match &ice.relay {
                            Some(relay) => format!("ICE {local} -> {remote} (TURN over {relay})"),
                            None => format!("ICE {local} -> {remote}"),
                        },
                        _ if !ice.tried.is_empty() => {
                            format!("ICE failed, tried: {}", ice.tried.join(", "))
                        }
                        _ => format!("ICE {}", ice.path),
                    });
                }
            }
            Event::Levels {
                call,
                mic_db,
                speaker_db,
            } => {
                if let Some(view) = call.parse().ok().and_then(|id| self.call_mut(id)) {
                    view.mic_db = Some(mic_db);
                    view.speaker_db = Some(speaker_db);
                    view.levels_at = Some(now);
                }
            }
            Event::Audio {
                call,
                processing,
                recording,
                ..
            } => {
                if let Some(view) = call.parse().ok().and_then(|id| self.call_mut(id)) {
                    if recording.is_some() && view.recording.is_none() {
                        let path = recording.clone().unwrap_or_default();
                        self.set_status(format!("call {call}: recording to {path}"));
                    } else if recording.is_none()
                        && let Some(path) = view.recording.take()
                    {
                        self.set_status(format!("call {call}: recording saved to {path}"));
                    }
                    if let Some(view) = self.call_mut(call.parse().unwrap_or_default()) {
                        view.processing = Some(processing);
                        view.recording = recording;
                    }
                }
            }
            Event::Dtmf { call, digit } => {
                self.set_status(format!("call {call}: DTMF {digit} received"));
            }
            Event::Message(message) => self.apply_message(message),
            Event::Presence {
                contact,
                state,
                note,
                ..
            } => {
                self.lamps.insert(contact, (state, note));
            }
            Event::Voicemail {
                account,
                waiting,
                new,
                ..
            } => {
                if let Some(status) = self.accounts.iter_mut().find(|a| a.name == account) {
                    status.voicemail = Some((waiting, new));
                }
                if waiting {
                    let count = new.map(|n| format!("{n} new ")).unwrap_or_default();
                    self.set_status(format!("{account}: {count}voicemail waiting (V dials it)"));
                }
            }
            Event::Account {
                account, enabled, ..
            } => {
                if let Some(status) = self.accounts.iter_mut().find(|a| a.name == account) {
                    status.state = if enabled {
                        AccountState::Registration(RegistrationState::Unregistered)
                    } else {
                        AccountState::Disabled
                    };
                    status.code = None;
                    status.voicemail = None;
                }
                let word = if enabled { "enabled" } else { "disabled" };
                self.set_status(format!("account {account} {word}"));
            }
            Event::TransferRequest { call, target, .. } => {
                let Ok(id) = call.parse::<u64>() else {
                    return;
                };
                if matches!(self.popup, None | Some(Popup::Help)) {
                    self.popup = Some(Popup::TransferRequest {
                        call: id,
                        target: target.clone(),
                    });
                } else {
                    self.pending_transfer_request = Some((id, target.clone()));
                }
                self.set_status(format!(
                    "call {id}: the other side asks to transfer you to {target} (a accepts, r refuses)"
                ));
            }
            Event::Transfer {
                call,
                code,
                reason,
                done,
            } => {
                let text = match (done, code) {
                    (true, 200..=299) => format!("call {call} transferred ({code} {reason})"),
                    (true, _) => format!("transfer of call {call} failed: {code} {reason}"),
                    (false, _) => format!("transfer of call {call}: {code} {reason}"),
                };
                self.set_status(text);
            }
            Event::Replaces { call, replaces } => {
                self.set_status(format!("call {call} replaces call {replaces} (transfer)"));
            }
            Event::Missed {
                remote,
                code,
                reason,
            } => {
                self.set_status(format!("{reason}: refused a call from {remote} ({code})"));
                let elapsed = now.saturating_duration_since(self.started).as_secs();
                history::push(
                    &mut self.history,
                    HistoryEntry {
                        time: self.wall_start + elapsed,
                        direction: "in".into(),
                        remote,
                        result: reason,
                    },
                );
                self.history_dirty = true;
            }
            Event::Conference { calls } => {
                self.conference = calls.iter().filter_map(|c| c.parse().ok()).collect();
                if self.conference.is_empty() {
                    self.set_status("conference ended");
                } else {
                    self.set_status(format!("conference: calls {}", calls.join(" + ")));
                }
            }
            Event::Dnd { on, code } => {
                self.dnd = on.then_some(code);
                self.set_status(if on {
                    format!("do not disturb: new calls get {code}")
                } else {
                    "do not disturb off".to_string()
                });
            }
            Event::Forward { target } => {
                self.set_status(match &target {
                    Some(t) => format!("forwarding every call to {t}"),
                    None => "call forwarding off".to_string(),
                });
                self.forward = target;
            }
            Event::Error { message } => self.set_status(format!("error: {message}")),
            Event::Warning { message } => self.set_status(format!("warning: {message}")),
            Event::Diagnosis { state, finding } => self.apply_diagnosis(state, finding, now),
        }
    }

    /// A diagnosis change: a new finding goes to the list and, as it happens, to the bottom
    /// line; a cleared one gets its end time (the pane keeps it as past).
    fn apply_diagnosis(
        &mut self,
        state: crate::diagnosis::FindingState,
        finding: crate::diagnosis::Finding,
        now: Instant,
    ) {
        let at = now.saturating_duration_since(self.started);
        let same = |view: &FindingView| {
            view.is_active()
                && view.finding.code == finding.code
                && view.finding.call == finding.call
        };
        match state {
            crate::diagnosis::FindingState::Active => {
                let call = finding
                    .call
                    .map(|id| format!("call {id}: "))
                    .unwrap_or_default();
                self.set_status(format!("{call}{}", finding.message));
                match self.findings.iter_mut().find(|v| same(v)) {
                    Some(view) => view.finding = finding,
                    None => {
                        if self.findings.len() >= FINDINGS_LIMIT
                            && let Some(oldest_past) =
                                self.findings.iter().position(|v| !v.is_active())
                        {
                            self.findings.remove(oldest_past);
                        }
                        self.findings.push(FindingView {
                            finding,
                            raised_at: at,
                            cleared_at: None,
                        });
                    }
                }
            }
            crate::diagnosis::FindingState::Cleared => {
                if let Some(view) = self.findings.iter_mut().find(|v| same(v)) {
                    view.cleared_at = Some(at);
                }
            }
        }
    }

    /// The active findings about `call`, most severe first.
    pub fn call_findings(&self, call: u64) -> Vec<&crate::diagnosis::Finding> {
        let mut found: Vec<&crate::diagnosis::Finding> = self
            .findings
            .iter()
            .filter(|v| v.is_active() && v.finding.call == Some(call))
            .map(|v| &v.finding)
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.severity));
        found
    }

    /// How many findings are active now.
    pub fn active_findings(&self) -> usize {
        self.findings.iter().filter(|v| v.is_active()).count()
    }

    fn push_log(&mut self, entry: LogEntry) {
        let full = self.log.len() >= self.log.capacity();
        self.log.push(entry);
        // The oldest entry went: keep the selection on the same message (or the new oldest).
        if full && let Some(selected) = self.log_selected.as_mut() {
            *selected = selected.saturating_sub(1);
        }
    }

    fn apply_call(
        &mut self,
        call: &str,
        state: CallState,
        remote: String,
        code: Option<u16>,
        reason: Option<String>,
        now: Instant,
    ) {
        let Ok(id) = call.parse::<u64>() else {
            self.set_status(format!("engine sent an unknown call id `{call}`"));
            return;
        };
        if state == CallState::Terminated {
            let why = match (code, reason) {
                (Some(c), Some(r)) => format!(" ({c} {r})"),
                (Some(c), None) => format!(" ({c})"),
                _ => String::new(),
            };
            self.set_status(format!("call {id} with {remote} ended{why}"));
            if let Some(view) = self.calls.iter().find(|c| c.id == id) {
                let result = if view.is_up() {
                    "answered".to_string()
                } else if view.incoming {
                    "missed".to_string()
                } else {
                    why.trim()
                        .trim_start_matches('(')
                        .trim_end_matches(')')
                        .to_string()
                };
                let elapsed = now.saturating_duration_since(self.started).as_secs();
                let entry = HistoryEntry {
                    time: self.wall_start + elapsed,
                    direction: if view.incoming { "in" } else { "out" }.into(),
                    remote: if remote.is_empty() {
                        view.remote.clone()
                    } else {
                        remote.clone()
                    },
                    result: if result.is_empty() {
                        "not answered".into()
                    } else {
                        result
                    },
                };
                history::push(&mut self.history, entry);
                self.history_dirty = true;
            }
            self.calls.retain(|c| c.id != id);
            self.call_sip_ids.retain(|(known, _)| *known != id);
            self.conference.retain(|c| *c != id);
            if self.auto_answer_due.is_some_and(|(due, _)| due == id) {
                self.auto_answer_due = None;
            }
            if let Some((transferee, consult)) = self.consult
                && (transferee == id || consult == Some(id))
            {
                self.consult = None;
            }
            if self.selected_call >= self.calls.len() {
                self.selected_call = self.calls.len().saturating_sub(1);
            }
            if matches!(&self.popup, Some(Popup::Incoming { call, .. } | Popup::Transfer { call, .. } | Popup::Consult { call, .. } | Popup::TransferRequest { call, .. }) if *call == id)
            {
                self.popup = None;
            }
            return;
        }
        let new_call = !self.calls.iter().any(|c| c.id == id);
        if new_call
            && state == CallState::Incoming
            && let Some(delay) = self.auto_answer
            && self.auto_answer_due.is_none()
        {
            self.auto_answer_due = Some((id, now + delay));
        }
        // The call placed after `T` asked whom to consult is the consultation call.
        if new_call
            && state == CallState::Calling
            && let Some((transferee, None)) = self.consult
        {
            self.consult = Some((transferee, Some(id)));
        }
        if state == CallState::Incoming && self.popup.is_none() && new_call {
            self.popup = Some(Popup::Incoming {
                call: id,
                remote: remote.clone(),
            });
        }
        if state != CallState::Incoming
            && matches!(&self.popup, Some(Popup::Incoming { call, .. }) if *call == id)
        {
            self.popup = None;
        }
        let up = matches!(state, CallState::Confirmed | CallState::Held);
        match self.call_mut(id) {
            Some(view) => {
                view.held = state == CallState::Held;
                if up && view.connected_at.is_none() {
                    view.connected_at = Some(now);
                }
                view.state = state;
                if !remote.is_empty() {
                    view.remote = remote;
                }
            }
            None => {
                if self.calls.len() >= CALL_LIMIT {
                    self.set_status(format!("too many calls; call {id} not shown"));
                    return;
                }
                // A new call is what the user wants to act on next, except a call waiting:
                // while another call is up, `h`/`x`/`m`/`t` stay on the call the user talks
                // to (`a`/`r` find the ringing call anyway).
                let waiting =
                    state == CallState::Incoming && self.calls.iter().any(CallView::is_up);
                self.calls.push(CallView {
                    id,
                    incoming: state == CallState::Incoming,
                    remote,
                    held: state == CallState::Held,
                    connected_at: up.then_some(now),
                    state,
                    codec: None,
                    sent: 0,
                    received: 0,
                    lost: 0,
                    jitter_ms: 0.0,
                    rtt_ms: None,
                    mos: None,
                    encrypted: false,
                    ice: None,
                    keys_in_clear: false,
                    foreign: 0,
                    muted: false,
                    mic_db: None,
                    speaker_db: None,
                    levels_at: None,
                    quality: QualityHistory::default(),
                    processing: None,
                    recording: None,
                });
                if !waiting {
                    self.selected_call = self.calls.len() - 1;
                }
            }
        }
    }
}

/// An INVITE that starts a call (no To tag), cheaply: the first line says INVITE first.
fn is_initial_invite(entry: &LogEntry) -> bool {
    entry.summary.starts_with("INVITE ") && crate::export::is_initial_invite(&entry.raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::first_line;

    fn call_event(id: &str, state: CallState) -> Event {
        Event::Call {
            call: id.into(),
            state,
            remote: "sip:bob@biloxi.com".into(),
            code: None,
            reason: None,
            sip_call_id: None,
            account: None,
        }
    }

    fn sip(summary: &str) -> Event {
        Event::Sip {
            dir: Direction::In,
            peer: "127.0.0.1:5060".into(),
            summary: summary.into(),
            raw: Arc::from(summary.as_bytes()),
        }
    }

    #[test]
    fn duration_counts_from_confirmation_not_from_ringing() {
        let t0 = Instant::now();
        let mut state = UiState::new(&["alice".into()], 10, t0);
        state.apply_event(call_event("1", CallState::Calling), t0);
        state.apply_event(
            call_event("1", CallState::Confirmed),
            t0 + Duration::from_secs(5),
        );
        state.tick(t0 + Duration::from_secs(70));
        let call = state.selected_call().cloned();
        assert_eq!(
            call.and_then(|c| c.duration(state.now)),
            Some(Duration::from_secs(65))
        );
    }

    #[test]
    fn incoming_call_opens_the_popup_and_hangup_by_peer_closes_it() {
        let t0 = Instant::now();
        let mut state = UiState::new(&[], 10, t0);
        state.apply_event(call_event("7", CallState::Incoming), t0);
        assert!(matches!(state.popup, Some(Popup::Incoming { call: 7, .. })));
        state.apply_event(
            Event::Call {
                call: "7".into(),
                state: CallState::Terminated,
                remote: "sip:bob@biloxi.com".into(),
                code: Some(487),
                reason: Some("Request Terminated".into()),
                sip_call_id: None,
                account: None,
            },
            t0,
        );
        assert_eq!(state.popup, None);
        assert!(state.calls.is_empty());
        assert!(
            state
                .status
                .as_deref()
                .is_some_and(|s| s.contains("487 Request Terminated"))
        );
    }

    #[test]
    fn the_log_ring_keeps_only_the_newest_entries() {
        let t0 = Instant::now();
        let mut state = UiState::new(&[], 3, t0);
        for n in 0..5 {
            state.apply_event(sip(&format!("OPTIONS sip:{n}@x SIP/2.0")), t0);
        }
        let kept: Vec<&str> = state.log.iter().map(|e| e.summary.as_str()).collect();
        assert_eq!(
            kept,
            [
                "OPTIONS sip:2@x SIP/2.0",
                "OPTIONS sip:3@x SIP/2.0",
                "OPTIONS sip:4@x SIP/2.0"
            ]
        );
    }

    #[test]
    fn a_selected_log_entry_stays_on_its_message_when_old_ones_drop_out() {
        let t0 = Instant::now();
        let mut state = UiState::new(&[], 3, t0);
        for n in 0..3 {
            state.apply_event(sip(&format!("MESSAGE {n}")), t0);
        }
        state.log_selected = Some(2);
        state.apply_event(sip("MESSAGE 3"), t0);
        let selected = state.log_selected.and_then(|i| state.log.get(i));
        assert_eq!(selected.map(|e| e.summary.as_str()), Some("MESSAGE 2"));
    }

    #[test]
    fn registration_failure_shows_in_the_status_line() {
        let t0 = Instant::now();
        let mut state = UiState::new(&["alice".into()], 3, t0);
        state.apply_event(
            Event::Registration {
                account: "alice".into(),
                state: RegistrationState::Failed,
                code: Some(403),
                reason: Some("Forbidden".into()),
                expires: None,
            },
            t0,
        );
        assert_eq!(
            state.accounts.first().map(|a| a.state.as_str()),
            Some("failed")
        );
        assert_eq!(
            state.status.as_deref(),
            Some("alice: registration failed: 403 Forbidden")
        );
    }

    #[test]
    fn media_stats_land_on_their_call() {
        let t0 = Instant::now();
        let mut state = UiState::new(&[], 3, t0);
        state.apply_event(call_event("2", CallState::Confirmed), t0);
        state.apply_event(
            Event::Media {
                call: "2".into(),
                codec: "opus/48000".into(),
                sent: 100,
                received: 98,
                lost: 2,
                jitter_ms: 3.5,
                loss_pct: 2.0,
                rtt_ms: Some(12.5),
                mos: Some(4.1),
                remote: None,
                local: None,
                foreign: 12,
                encrypted: true,
                srtp: Some(crate::event::SrtpStats {
                    suite: "AES_CM_128_HMAC_SHA1_80",
                    auth_failures: 0,
                    keys: crate::event::KeyTransport::Tls,
                }),
                foreign_from: None,
                peer: None,
                mic: None,
                ice: None,
            },
            t0,
        );
        let call = state.selected_call();
        assert_eq!(call.and_then(|c| c.codec.as_deref()), Some("opus/48000"));
        assert_eq!(call.map(|c| c.lost), Some(2));
        assert_eq!(call.map(|c| c.encrypted), Some(true));
        assert_eq!(
            call.map(|c| c.keys_in_clear),
            Some(false),
            "keys went over TLS"
        );
        assert_eq!(call.map(|c| c.foreign), Some(12));
    }

    #[test]
    fn filter_matches_first_line_or_peer_ignoring_case() {
        let t0 = Instant::now();
        let mut state = UiState::new(&[], 10, t0);
        state.apply_event(sip("INVITE sip:bob@biloxi.com SIP/2.0"), t0);
        state.apply_event(sip("SIP/2.0 180 Ringing"), t0);
        state.log_filter = "invite".into();
        assert_eq!(state.visible_log(), vec![0]);
        state.log_filter = "127.0.0.1".into();
        assert_eq!(state.visible_log(), vec![0, 1]);
    }

    fn invite(call_id: &str) -> Event {
        let raw = format!(
            "INVITE sip:bob@b SIP/2.0\r\nTo: <sip:bob@b>\r\nFrom: <sip:a@a>;tag=1\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        Event::Sip {
            dir: Direction::Out,
            peer: "127.0.0.1:5060".into(),
            summary: first_line(raw.as_bytes()),
            raw: Arc::from(raw.into_bytes()),
        }
    }

    fn call_with_id(id: &str, state: CallState, sip_call_id: &str) -> Event {
        Event::Call {
            call: id.into(),
            state,
            remote: "sip:bob@biloxi.com".into(),
            code: None,
            reason: None,
            sip_call_id: Some(sip_call_id.into()),
            account: None,
        }
    }

    #[test]
    fn each_call_takes_its_call_id_from_the_call_event() {
        let t0 = Instant::now();
        let mut state = UiState::new(&[], 100, t0);
        // Outgoing: the call event, then the trace of its INVITE.
        state.apply_event(call_with_id("1", CallState::Calling, "first@x"), t0);
        state.apply_event(invite("first@x"), t0);
        // Incoming: the INVITE's trace, then the call event; an unrelated INVITE in between
        // (which the old heuristic pairing could have taken) changes nothing.
        state.apply_event(invite("second@x"), t0);
        state.apply_event(invite("stray@x"), t0);
        state.apply_event(call_with_id("2", CallState::Incoming, "second@x"), t0);
        assert_eq!(
            state.call_sip_ids,
            vec![(1, "first@x".to_string()), (2, "second@x".to_string())]
        );
        state.selected_call = 0;
        assert_eq!(state.ladder_call_id().as_deref(), Some("first@x"));
        assert_eq!(state.call_log("first@x").len(), 1);
        state.selected_call = 1;
        assert_eq!(state.ladder_call_id().as_deref(), Some("second@x"));
        state.apply_event(call_with_id("2", CallState::Terminated, "second@x"), t0);
        assert_eq!(state.call_sip_ids, vec![(1, "first@x".to_string())]);
    }

    fn entry(summary: &str, raw: &str, peer: &str) -> LogEntry {
        LogEntry::new(
            Duration::ZERO,
            Direction::In,
            peer.into(),
            summary.into(),
            Arc::from(raw.as_bytes()),
        )
    }

    #[test]
    fn headers_scan_finds_call_id_in_any_form_and_the_cseq_method() {
        let (id, method) =
            scan_headers(b"SIP/2.0 200 OK\r\ncseq: 2 invite\r\ni:  abc@h \r\n\r\nCall-ID: body");
        assert_eq!(id.as_deref(), Some("abc@h"));
        assert_eq!(method.as_deref(), Some("INVITE"));
        // Headers stop at the blank line: a Call-ID in the body is not the message's.
        assert_eq!(
            scan_headers(b"MESSAGE x SIP/2.0\r\n\r\nCall-ID: no\r\n"),
            (None, None)
        );
        let request = entry(
            "BYE sip:a@b SIP/2.0",
            "BYE sip:a@b SIP/2.0\r\nCSeq: 9 BYE\r\n\r\n",
            "p",
        );
        assert_eq!(request.method.as_deref(), Some("BYE"));
    }

    #[test]
    fn log_filter_combines_text_call_and_method() {
        let invite = entry(
            "INVITE sip:bob@b SIP/2.0",
            "INVITE sip:bob@b SIP/2.0\r\nCall-ID: one\r\nCSeq: 1 INVITE\r\n\r\n",
            "127.0.0.1:5070",
        );
        let ok = entry(
            "SIP/2.0 200 OK",
            "SIP/2.0 200 OK\r\nCall-ID: one\r\nCSeq: 1 INVITE\r\n\r\n",
            "127.0.0.1:5070",
        );
        let options = entry(
            "OPTIONS sip:a@b SIP/2.0",
            "OPTIONS sip:a@b SIP/2.0\r\nCall-ID: two\r\nCSeq: 5 OPTIONS\r\n\r\n",
            "127.0.0.1:5060",
        );
        let all = [&invite, &ok, &options];
        let pass = |text: &str, call: Option<&str>, method: Option<&str>| -> Vec<&str> {
            all.iter()
                .filter(|e| log_entry_matches(e, text, call, method))
                .map(|e| e.summary.as_str())
                .collect()
        };
        assert_eq!(pass("", None, None).len(), 3);
        assert_eq!(
            pass("", Some("one"), None),
            ["INVITE sip:bob@b SIP/2.0", "SIP/2.0 200 OK"]
        );
        // A response counts as its request's method (CSeq).
        assert_eq!(
            pass("", None, Some("INVITE")),
            ["INVITE sip:bob@b SIP/2.0", "SIP/2.0 200 OK"]
        );
        assert_eq!(pass("", None, Some("OPTIONS")), ["OPTIONS sip:a@b SIP/2.0"]);
        assert_eq!(pass("200", Some("one"), Some("INVITE")), ["SIP/2.0 200 OK"]);
        assert!(pass("", Some("two"), Some("INVITE")).is_empty());
        assert_eq!(pass("5060", None, None), ["OPTIONS sip:a@b SIP/2.0"]);
    }

    #[test]
    fn status_messages_are_kept_with_their_time_bounded_and_repeats_folded() {
        let t0 = Instant::now();
        let mut s = UiState::new(&["alice".into()], 10, t0);
        s.tick(t0 + Duration::from_millis(1500));
        s.set_status("warning: no sound output");
        s.tick(t0 + Duration::from_secs(3));
        s.set_status("calling bob");
        s.set_status("calling bob");
        assert_eq!(s.status.as_deref(), Some("calling bob"));
        let kept: Vec<(u128, &str, u32)> = s
            .status_history
            .iter()
            .map(|m| (m.at.as_millis(), m.text.as_str(), m.repeats))
            .collect();
        assert_eq!(
            kept,
            [
                (1500, "warning: no sound output", 1),
                (3000, "calling bob", 2)
            ]
        );
        for n in 0..STATUS_HISTORY_LIMIT + 5 {
            s.set_status(format!("message {n}"));
        }
        assert_eq!(s.status_history.len(), STATUS_HISTORY_LIMIT);
        assert_eq!(
            s.status_history.front().map(|m| m.text.as_str()),
            Some("message 5"),
            "the oldest go first"
        );
        // A huge message (network text inside) is kept cut, not whole.
        s.set_status("x".repeat(STATUS_TEXT_LIMIT * 3));
        let last = s.status_history.back().map(|m| m.text.chars().count());
        assert_eq!(last, Some(STATUS_TEXT_LIMIT + 1));
        assert!(s.status.as_deref().is_some_and(|t| t.ends_with('…')));
    }

    #[test]
    fn levels_land_on_their_call_and_go_stale() {
        let t0 = Instant::now();
        let mut state = UiState::new(&[], 3, t0);
        state.apply_event(call_event("4", CallState::Confirmed), t0);
        state.apply_event(
            Event::Levels {
                call: "4".into(),
                mic_db: -20.0,
                speaker_db: -35.5,
            },
            t0,
        );
        let call = state.selected_call().cloned();
        assert_eq!(
            call.as_ref().and_then(|c| c.levels(t0)),
            Some((-20.0, -35.5))
        );
        let later = t0 + LEVELS_STALE + Duration::from_millis(1);
        assert_eq!(call.and_then(|c| c.levels(later)), None);
        // Levels of an unknown call are ignored.
        state.apply_event(
            Event::Levels {
                call: "9".into(),
                mic_db: 0.0,
                speaker_db: 0.0,
            },
            t0,
        );
        assert_eq!(state.calls.len(), 1);
    }
}
