//! The user agent: one account's SIP endpoint, sans-IO.
//!
//! Inputs: `handle_datagram(source, bytes, now)`, `handle_command(cmd, now)`,
//! `handle_timeout(now)`. Outputs: `poll_transmit()`, `poll_event()`, `poll_timeout()`.
//! After each input the caller drains the polls.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::auth::{DigestCredentials, Password};
use super::ids::{IdGen, Seed};
use super::message::{Message, Method, Request, Response, reason_phrase};
use super::parse::{parse_datagram, validate_request};
use super::registration::{
    Registration, RegistrationOutput, RegistrationParams, RegistrationState,
};
use super::transaction::{
    Destination, Routed, TimerConfig, TransactionLayer, TransportKind, TsxEvent, TsxId,
};
use super::uri::{Scheme, Uri};
use crate::sdp::{Codec, LocalMedia, MediaParams, SrtpPolicy};

mod call;
mod guard;
pub mod messaging;
mod reliable;
pub mod route;
mod send;
pub mod session_timer;
mod transfer;
mod update;
pub use call::{NO_ANSWER_TIMEOUT, Role, is_dtmf};
pub use guard::{
    AcceptFrom, DROP_WARNING_INTERVAL, MAX_RINGING, MAX_RINGING_PER_SOURCE, MAX_TRACKED_SOURCES,
    RESPONSE_BURST, RESPONSE_RATE,
};
pub use messaging::{MessagingPolicy, WatcherPolicy};
pub use route::HopKey;
pub use send::{LocalRoutes, ROUTE_CHECK_INTERVAL};
pub use transfer::{MAX_QUEUED_DTMF, TRANSFER_DECISION_TIMEOUT};

/// Methods we answer; advertised in Allow.
pub const ALLOW: &str =
    "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER, NOTIFY, PRACK, UPDATE, MESSAGE, SUBSCRIBE";
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, message/sipfrag, text/plain, \
     application/pidf+xml, application/dialog-info+xml, application/simple-message-summary";
/// The event packages we take NOTIFYs of or answer SUBSCRIBEs for (RFC 6665 Allow-Events).
pub const ALLOW_EVENTS: &str = "presence, dialog, message-summary, refer";
/// Every option tag we implement: reliable provisional responses (RFC 3262), session timers
/// (RFC 4028), Replaces (RFC 3891), REFER without subscription (RFC 4488). An account with
/// `100rel = "off"` leaves `100rel` out (`UserAgent::supported`).
pub const SUPPORTED: &str = "100rel, timer, replaces, norefersub";
/// How long `shutdown` waits for the unregister to be answered.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The account this UA speaks for, with everything already resolved by the driver.
#[derive(Debug, Clone)]
pub struct AccountParams {
    pub name: String,
    pub aor: Uri,
    pub display_name: Option<String>,
    pub auth_username: String,
    pub password: Option<Password>,
    pub registrar: Option<Uri>,
    pub outbound_proxy: Option<Uri>,
    pub expires: u32,
    pub transport: TransportKind,
}

#[derive(Debug, Clone)]
pub struct UaConfig {
    pub account: AccountParams,
    /// The address we listen on. Its port goes in Via and Contact; its IP too, unless it is a
    /// wildcard (0.0.0.0 or ::): then each destination gets the local IP that routes to it
    /// (`LocalRoutes`), never the wildcard.
    pub local: SocketAddr,
    pub user_agent: String,
    pub timers: TimerConfig,
    /// Entropy for Call-IDs, tags, branches and SDP session ids (`Seed::from_os` in the driver).
    pub seed: Seed,
    /// Codec preference for offers and answers.
    pub codecs: Vec<Codec>,
    /// Answer a new call with 486 while another one is up (no call waiting).
    pub busy_when_in_call: bool,
    /// SRTP (SDES) policy for offers and answers.
    pub srtp: SrtpPolicy,
    /// PBX features: 100rel, session timers, do-not-disturb, forwarding, transfers.
    pub calls: CallPolicy,
    /// Presence, busy lamps, voicemail indicator and who may watch us.
    pub messaging: MessagingPolicy,
    /// Where call numbers come from: shared by the user agents of all accounts, so that a
    /// call number names one call across every account.
    pub call_numbers: CallNumbers,
}

/// Call numbers shared by several user agents (one per account). An atomic counter, not I/O.
#[derive(Debug, Clone, Default)]
pub struct CallNumbers(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl CallNumbers {
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
    }
}

/// Reliable provisional responses (RFC 3262), the account's `100rel` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rel100 {
    /// Not offered; an INVITE that requires it gets 420, a reliable 1xx is taken as unreliable.
    Off,
    /// Offered (`Supported: 100rel`); used when the peer requires it.
    #[default]
    Supported,
    /// Required of the peers we call, and used whenever a caller supports it.
    Required,
}

/// How calls behave beyond RFC 3261 (issue 15): the account's PBX keys.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPolicy {
    pub rel100: Rel100,
    /// Session-Expires (RFC 4028) we ask for in our INVITEs and put in our answers, seconds;
    /// `None`: we ask for none, but still refresh (or watch) when the peer asks for one.
    pub session_expires: Option<u32>,
    /// The shortest session interval we accept (our Min-SE); shorter ones get 422.
    pub min_se: u32,
    /// Do-not-disturb: new calls are refused at once with this code (486 or 480).
    pub dnd: Option<u16>,
    /// Call-forward-always: new calls get 302 with this Contact.
    pub forward_to: Option<Uri>,
    /// Follow a peer's REFER without asking the user.
    pub auto_accept_transfer: bool,
}

/// RFC 4028 §4: Min-SE may not be lower than 90 seconds.
pub const RFC_MIN_SE: u32 = 90;
/// The Session-Expires we ask for by default (RFC 4028 §4 recommends 1800 s).
pub const DEFAULT_SESSION_EXPIRES: u32 = 1800;

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            rel100: Rel100::Supported,
            session_expires: Some(DEFAULT_SESSION_EXPIRES),
            min_se: RFC_MIN_SE,
            dnd: None,
            forward_to: None,
            auto_accept_transfer: false,
        }
    }
}

/// What a front end asks the UA to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Register,
    Unregister,
    /// Unregister if registered, hang up every call, then report `ShutdownComplete`.
    Shutdown,
    /// Call `target`; `media` says where our RTP socket is (the driver bound it).
    Dial {
        target: Uri,
        media: LocalMedia,
    },
    /// Answer the given (or the ringing) call with media on the given socket.
    Answer {
        call: Option<u64>,
        media: LocalMedia,
    },
    /// Reject the given (or the ringing) call: 486 Busy Here or 603 Decline.
    Reject {
        call: Option<u64>,
        code: u16,
    },
    Hangup {
        call: Option<u64>,
    },
    Hold {
        call: Option<u64>,
    },
    /// ICE restart (RFC 8445 §9, RFC 8839 §4.4.1.1.1): a re-INVITE offering these new
    /// credentials and candidates, with `address`/`rtp_port` the new default candidate.
    RestartIce {
        call: u64,
        ice: crate::sdp::LocalIce,
        address: std::net::IpAddr,
        rtp_port: u16,
    },
    Resume {
        call: Option<u64>,
    },
    /// Blind transfer: REFER the peer to `target`.
    Transfer {
        call: Option<u64>,
        target: Uri,
    },
    /// Tell the peer that the transfer it asked for reached this status (NOTIFY sipfrag).
    TransferProgress {
        call: u64,
        code: u16,
        last: bool,
    },
    /// Attended transfer (RFC 5589 §7): REFER the peer of `call` to the peer of `consult`,
    /// with Replaces (RFC 3891) so that the target swaps the consultation call for it.
    AttendedTransfer {
        call: Option<u64>,
        consult: Option<u64>,
    },
    /// The user's answer to the peer's REFER in `call` (`UaEvent::TransferAsked`): follow it
    /// (`TransferRequested` comes next) or refuse it (NOTIFY 603).
    TransferAnswer {
        call: Option<u64>,
        accept: bool,
    },
    /// DTMF as SIP INFO (application/dtmf-relay, RFC 2976): one request per digit, in order.
    InfoDtmf {
        call: Option<u64>,
        digits: String,
    },
    /// Do-not-disturb: refuse new calls with this code (486 or 480); `None`: off.
    SetDoNotDisturb(Option<u16>),
    /// Call-forward-always to this target (302); `None`: off.
    SetForward(Option<Uri>),
    /// An instant message (RFC 3428) to `target`.
    SendMessage {
        target: Uri,
        text: String,
    },
    /// Watch `target`'s presence and dialog state (busy lamp).
    Watch {
        target: Uri,
    },
    /// Stop watching (the key is the target as `Watch` gave it).
    Unwatch {
        target: String,
    },
}

/// A call's state as front ends show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Calling,
    Incoming,
    Ringing,
    Early,
    Confirmed,
    Held,
    Terminated,
}

impl CallState {
    pub fn as_str(&self) -> &'static str {
        match self {
            CallState::Calling => "calling",
            CallState::Incoming => "incoming",
            CallState::Ringing => "ringing",
            CallState::Early => "early",
            CallState::Confirmed => "confirmed",
            CallState::Held => "held",
            CallState::Terminated => "terminated",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum UaEvent {
    Registration {
        account: String,
        state: RegistrationState,
        code: Option<u16>,
        reason: Option<String>,
        expires: Option<u32>,
    },
    /// Something the user should know about that is not tied to a call or registration.
    Error {
        message: String,
    },
    /// Something worth knowing that changes nothing (e.g. responses dropped by the rate limit).
    Warning {
        message: String,
    },
    /// `Command::Shutdown` finished: the binding is gone (or the grace period ran out).
    ShutdownComplete,
    Call {
        call: u64,
        state: CallState,
        remote: String,
        code: Option<u16>,
        reason: Option<String>,
        /// The SIP Call-ID of the call (its dialog's, or its INVITE's before the dialog).
        sip_call_id: Option<String>,
    },
    /// Media can flow: start sending to `params.remote` from `local.rtp_port`.
    MediaStart {
        call: u64,
        params: MediaParams,
        local: LocalMedia,
    },
    /// The peer refused our ICE restart's re-INVITE (RFC 8445 §9 needs its answer), or it
    /// could not go out: the call keeps its previous ICE session, and the driver's agent,
    /// which restarted already, goes back to it.
    IceRestartRefused {
        call: u64,
    },
    /// The session changed (hold, resume, new address or codec).
    MediaUpdate {
        call: u64,
        params: MediaParams,
    },
    MediaStop {
        call: u64,
    },
    /// The local address towards the registrar changed (another network): the binding is
    /// being renewed with the new Contact.
    LocalAddressChanged {
        old: std::net::IpAddr,
        new: std::net::IpAddr,
    },
    /// A DTMF digit from SIP INFO (RFC 4733 digits come through the media path).
    Dtmf {
        call: u64,
        digit: char,
    },
    /// The peer asked us to call `target` (REFER) and the user (or `auto_accept_transfer`)
    /// agreed; the front end dials it and reports back. A `Replaces` header in the target's
    /// URI goes into the INVITE (attended transfer).
    TransferRequested {
        call: u64,
        target: Uri,
    },
    /// The peer of `call` asks us to call `target` (REFER): the front end asks the user and
    /// answers with `Command::TransferAnswer` (refused by itself after
    /// `TRANSFER_DECISION_TIMEOUT`).
    TransferAsked {
        call: u64,
        target: Uri,
        referred_by: Option<String>,
    },
    /// How the transfer we asked the peer of `call` for is going (its NOTIFY sipfrag, or the
    /// REFER's own failure); `done` on the last report.
    TransferStatus {
        call: u64,
        code: u16,
        reason: String,
        done: bool,
    },
    /// Incoming call `call` replaces our call `replaced` (INVITE with Replaces, RFC 3891):
    /// the front end answers it at once; the replaced call ends when it is answered.
    Replacing {
        call: u64,
        replaced: u64,
    },
    /// A call refused before it rang: do-not-disturb (486/480) or forwarded (302).
    Missed {
        remote: String,
        code: u16,
        reason: String,
    },
    /// An instant message came in (text checked and cleaned: `sip::im`).
    MessageReceived {
        from: String,
        display: Option<String>,
        text: String,
    },
    /// Our message `id` is on its way.
    MessageQueued {
        id: u64,
        to: String,
        text: String,
    },
    /// The answer to our message `id` (2xx: delivered), or why it failed.
    MessageStatus {
        id: u64,
        to: String,
        code: u16,
        reason: String,
    },
    /// A watched contact's lamp changed.
    Presence {
        contact: String,
        availability: crate::sip::event::Availability,
        note: Option<String>,
    },
    /// Voicemail waiting (RFC 3842), from our server.
    Voicemail {
        waiting: bool,
        new: Option<u32>,
        old: Option<u32>,
    },
}

/// Bytes to send, and to whom.
#[derive(Debug, Clone, PartialEq)]
pub struct OutDatagram {
    pub dest: Destination,
    pub bytes: Vec<u8>,
}

/// Who owns a client transaction, so its response reaches the right state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Registration,
    Call(u64, Method),
    /// Our re-INVITE (hold, resume) in call `u64`.
    Reinvite(u64),
    /// Messages, subscriptions, publications and our NOTIFYs to watchers.
    Messaging(messaging::Job),
}

pub struct UserAgent {
    config: UaConfig,
    tsx: TransactionLayer,
    ids: IdGen,
    registration: Option<Registration>,
    owners: HashMap<TsxId, Owner>,
    transmits: VecDeque<OutDatagram>,
    events: VecDeque<UaEvent>,
    shutdown_deadline: Option<Instant>,
    calls: Vec<call::Call>,
    next_call: u64,
    /// Digest state for INVITE challenges (separate from the registration's).
    call_auth: Option<super::auth::Authenticator>,
    /// accept_from and the response rate limit (scanner protection).
    guard: guard::Guard,
    /// The time of the latest input: `poll_transmit` rate-limits on it.
    clock: Option<Instant>,
    /// Our TLS listener (IP of `local`, its own port), when there is one: Via sent-by of
    /// requests sent over TLS and the Contact of dialogs that came in over TLS.
    tls_local: Option<SocketAddr>,
    /// Our address as the far side of a NAT sees it: from STUN, or from the registrar's
    /// `received`/`rport`. Via and Contact carry it instead of the local address.
    public: Option<SocketAddr>,
    /// Which local IP routes where (asked when `config.local` is a wildcard).
    routes: Option<Box<dyn LocalRoutes>>,
    /// Resolved next hops (RFC 3263) and the lookups the driver still has to make.
    locator: route::Locator,
    /// Requests waiting for a lookup.
    parked: Vec<send::Parked>,
    /// Failover state of client transactions (the destinations not yet tried).
    alternates: HashMap<TsxId, send::Alternates>,
    /// The outbound proxy's and registrar's names: their resolved addresses are trusted
    /// (`accept_from = "proxy"`).
    trusted_hops: Vec<HopKey>,
    /// Where the last REGISTER went (the registration's flow), and the local IP it left from.
    registration_dest: Option<Destination>,
    registration_local: Option<std::net::IpAddr>,
    /// When to check next whether the local address towards the registrar changed.
    route_check_at: Option<Instant>,
    /// Bounds the `Missed` events of calls refused before ringing (do-not-disturb, forward).
    missed_events: EventBudget,
    /// Instant messages, subscriptions, publications, watchers.
    messaging: messaging::Messaging,
}

/// At most `MAX_MISSED_EVENTS` events per `MISSED_WINDOW`: a scanner's INVITE flood while
/// do-not-disturb is on is answered (and rate-limited like any response), but reported only
/// this often.
#[derive(Debug, Default)]
struct EventBudget {
    window_start: Option<Instant>,
    used: u32,
}

/// Missed-call events per window at most.
pub const MAX_MISSED_EVENTS: u32 = 10;
pub const MISSED_WINDOW: Duration = Duration::from_secs(10);

impl EventBudget {
    fn allow(&mut self, now: Instant) -> bool {
        match self.window_start {
            Some(start) if now < start + MISSED_WINDOW => {}
            _ => {
                self.window_start = Some(now);
                self.used = 0;
            }
        }
        self.used += 1;
        self.used <= MAX_MISSED_EVENTS
    }
}

impl UserAgent {
    pub fn new(config: UaConfig) -> Self {
        let mut ids = IdGen::new(config.seed);
        let registration = config.account.registrar.clone().map(|registrar| {
            let params = RegistrationParams {
                aor: config.account.aor.clone(),
                display_name: config.account.display_name.clone(),
                registrar,
                // Replaced by the Contact for the registrar's address when the REGISTER goes.
                contact: contact_uri(&config),
                expires: config.account.expires,
                call_id: ids.call_id(),
                from_tag: ids.tag(),
            };
            let credentials = config
                .account
                .password
                .clone()
                .map(|password| DigestCredentials {
                    username: config.account.auth_username.clone(),
                    password,
                });
            Registration::new(params, credentials, ids.next_u64())
        });
        let trusted_hops = [&config.account.outbound_proxy, &config.account.registrar]
            .into_iter()
            .flatten()
            .filter_map(|uri| match route::hop_for(uri, config.account.transport) {
                route::Hop::Locate(key) => Some(key),
                route::Hop::Direct(_) => None,
            })
            .collect();
        UserAgent {
            tsx: TransactionLayer::new(config.timers),
            config,
            ids,
            registration,
            owners: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            shutdown_deadline: None,
            calls: Vec::new(),
            next_call: 0,
            call_auth: None,
            guard: guard::Guard::default(),
            clock: None,
            tls_local: None,
            public: None,
            routes: None,
            locator: route::Locator::default(),
            parked: Vec::new(),
            alternates: HashMap::new(),
            trusted_hops,
            registration_dest: None,
            registration_local: None,
            route_check_at: None,
            missed_events: EventBudget::default(),
            messaging: messaging::Messaging::default(),
        }
    }

    /// Tells the UA how to find the local IP towards a destination (needed when it listens on
    /// a wildcard address; without it, loopback is assumed).
    pub fn set_local_routes(&mut self, routes: Box<dyn LocalRoutes>) {
        self.routes = Some(routes);
    }

    /// Tells the UA where our TLS listener is (the driver binds it after the UA's config is
    /// made). A TLS account's Contact then points at it.
    pub fn set_tls_listener(&mut self, addr: SocketAddr) {
        self.tls_local = Some(addr);
    }

    /// Who may send requests outside a dialog: `trusted` are the registrar's and outbound
    /// proxy's addresses as the driver resolved them. Until this is called, anyone may
    /// (`AcceptFrom::Any`).
    pub fn set_source_policy(
        &mut self,
        accept: AcceptFrom,
        trusted: impl IntoIterator<Item = std::net::IpAddr>,
    ) {
        self.guard.set_policy(accept, trusted);
    }

    /// Responses the rate limit dropped so far.
    pub fn dropped_responses(&self) -> u64 {
        self.guard.dropped_total()
    }

    pub fn config(&self) -> &UaConfig {
        &self.config
    }

    /// The driver learned our public address (STUN): Via sent-by, Contact (also the
    /// registration's, for its next REGISTER) use it from now on. True when it changed.
    pub fn set_public_address(&mut self, addr: SocketAddr) -> bool {
        if self.public == Some(addr) {
            return false;
        }
        self.public = Some(addr);
        true
    }

    /// Where the registration's REGISTERs go now (the flow to keep alive behind NAT).
    pub fn registration_flow(&self) -> Option<Destination> {
        self.registration_dest
    }

    /// Whether the registrar or STUN showed that we are behind a NAT.
    pub fn behind_nat(&self) -> bool {
        self.public.is_some()
    }

    /// Transactions alive (for the driver's memory housekeeping after a flood).
    pub fn transaction_count(&self) -> usize {
        self.tsx.len()
    }

    pub fn registration_state(&self) -> Option<RegistrationState> {
        self.registration.as_ref().map(Registration::state)
    }

    // ---- inputs ----

    pub fn handle_command(&mut self, command: Command, now: Instant) {
        self.clock = Some(now);
        match command {
            Command::Register => {
                let mut out = Vec::new();
                match self.registration.as_mut() {
                    Some(reg) => reg.register(&mut out),
                    None => self.events.push_back(UaEvent::Error {
                        message: format!(
                            "account {} has no registrar configured",
                            self.config.account.name
                        ),
                    }),
                }
                self.apply_registration(out, now);
            }
            Command::Unregister => {
                let mut out = Vec::new();
                if let Some(reg) = self.registration.as_mut() {
                    reg.unregister(&mut out);
                }
                self.apply_registration(out, now);
            }
            Command::Shutdown => {
                self.messaging_shutdown(now);
                let ids: Vec<u64> = self.calls.iter().map(|c| c.id).collect();
                for id in ids {
                    self.hangup(id, now);
                }
                let mut out = Vec::new();
                let waiting = self
                    .registration
                    .as_mut()
                    .is_some_and(|reg| reg.unregister(&mut out));
                self.apply_registration(out, now);
                if waiting {
                    self.shutdown_deadline = Some(now + SHUTDOWN_GRACE);
                } else {
                    self.events.push_back(UaEvent::ShutdownComplete);
                }
            }
            Command::Dial { target, media } => self.dial(target, media, now),
            Command::Answer { call, media } => {
                match self.find_call(call, |c| c.state == CallState::Incoming) {
                    Some(id) => self.answer(id, media, now),
                    None => self.no_such_call("answer"),
                }
            }
            Command::Reject { call, code } => {
                match self.find_call(call, |c| c.state == CallState::Incoming) {
                    Some(id) => self.reject(id, code, now),
                    None => self.no_such_call("reject"),
                }
            }
            Command::Hangup { call } => match self.call_to_hang_up(call) {
                Some(id) => self.hangup(id, now),
                None => self.no_such_call("hang up"),
            },
            Command::Hold { call } => {
                // An early call with media (its peer's announcement) holds by UPDATE.
                let holdable = |c: &call::Call| {
                    c.state == CallState::Confirmed
                        || (c.state == CallState::Early
                            && c.role == Role::Caller
                            && c.params.is_some()
                            && c.dialog.is_some())
                };
                match self.find_call(call, holdable) {
                    Some(id) => self.hold(id, true, now),
                    None => self.no_such_call("hold"),
                }
            }
            Command::RestartIce {
                call,
                ice,
                address,
                rtp_port,
            } => {
                let restartable = |c: &call::Call| {
                    matches!(c.state, CallState::Confirmed | CallState::Held)
                        && c.media.ice.is_some()
                        && c.dialog.is_some()
                };
                match self.find_call(Some(call), restartable) {
                    Some(id) => self.restart_ice(id, ice, address, rtp_port, now),
                    None => self.no_such_call("restart ICE on"),
                }
            }
            Command::Resume { call } => {
                match self.find_call(call, |c| c.state == CallState::Held) {
                    Some(id) => self.hold(id, false, now),
                    None => self.no_such_call("resume"),
                }
            }
            Command::Transfer { call, target } => match self.find_call(call, |c| {
                matches!(c.state, CallState::Confirmed | CallState::Held)
            }) {
                Some(id) => self.transfer(id, target, now),
                None => self.no_such_call("transfer"),
            },
            Command::TransferProgress { call, code, last } => {
                self.transfer_progress(call, code, last, now)
            }
            Command::AttendedTransfer { call, consult } => {
                self.attended_transfer(call, consult, now)
            }
            Command::TransferAnswer { call, accept } => {
                match self.find_call(call, |c| c.asked_refer.is_some()) {
                    Some(id) => self.answer_transfer(id, accept, now),
                    None => self.no_such_call("answer a transfer request of"),
                }
            }
            Command::InfoDtmf { call, digits } => match self.find_call(call, |c| {
                matches!(
                    c.state,
                    CallState::Confirmed | CallState::Held | CallState::Early
                )
            }) {
                Some(id) => self.queue_info_dtmf(id, &digits, now),
                None => self.no_such_call("send DTMF to"),
            },
            Command::SetDoNotDisturb(code) => {
                self.config.calls.dnd = code;
                self.own_state_changed(now);
            }
            Command::SetForward(target) => self.config.calls.forward_to = target,
            Command::SendMessage { target, text } => self.send_message(target, text, now),
            Command::Watch { target } => self.watch(target, now),
            Command::Unwatch { target } => self.unwatch(&target, now),
        }
        self.drain_tsx(now);
    }

    /// The option tags we support, for Supported headers: `SUPPORTED` without `100rel` when
    /// the account turned it off.
    pub fn supported(&self) -> String {
        SUPPORTED
            .split(", ")
            .filter(|tag| *tag != "100rel" || self.config.calls.rel100 != Rel100::Off)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn no_such_call(&mut self, what: &str) {
        self.events.push_back(UaEvent::Error {
            message: format!("no call to {what}"),
        });
    }

    /// Whether any call is still up (front ends keep media going while true).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The RTP ports our live calls use (the driver frees the sockets of the others).
    pub fn media_ports(&self) -> Vec<u16> {
        self.calls.iter().map(|c| c.media.rtp_port).collect()
    }

    /// Whether we put call `id` on hold (a conference resumes those legs).
    pub fn held_by_us(&self, id: u64) -> bool {
        self.calls.iter().any(|c| c.id == id && c.on_hold)
    }

    /// The SDP offer of the incoming call an `Answer` for `call` would take (`None`: the
    /// ringing one), when its INVITE carried one.
    pub fn incoming_offer(&self, call: Option<u64>) -> Option<&str> {
        let id = self.find_call(call, |c| c.state == CallState::Incoming)?;
        self.calls
            .iter()
            .find(|c| c.id == id)?
            .remote_offer
            .as_deref()
    }

    /// The number of the most recently created call.
    pub fn last_call_id(&self) -> Option<u64> {
        self.calls.last().map(|c| c.id)
    }

    /// Bytes that arrived from `source`.
    pub fn handle_datagram(&mut self, source: Destination, bytes: &[u8], now: Instant) {
        self.clock = Some(now);
        match parse_datagram(bytes) {
            Ok(Message::Request(request))
                if request.method != Method::Ack && validate_request(&request).is_err() =>
            {
                let status = validate_request(&request)
                    .err()
                    .map(|e| (e.status(), e.to_string()));
                if let Some((code, why)) = status
                    && let Some(bytes) = stateless_error_response(bytes, code, &why)
                {
                    self.transmits.push_back(OutDatagram {
                        dest: source,
                        bytes,
                    });
                }
            }
            Ok(Message::Request(mut request)) => {
                stamp_received(&mut request, source.addr);
                // Built only when the layer may refuse (it takes the request): a 503 per
                // request was a good part of a flood's cost.
                let overload = (request.method != Method::Ack && self.tsx.is_full()).then(|| {
                    build_response(
                        &request,
                        503,
                        "Service Unavailable",
                        None,
                        &self.config.user_agent,
                    )
                });
                if self
                    .tsx
                    .handle_message(Message::Request(request), source, now)
                    == Routed::Overloaded
                    && let Some(mut busy) = overload
                {
                    busy.headers.push("Retry-After", "5");
                    self.transmits.push_back(OutDatagram {
                        dest: source,
                        bytes: busy.to_bytes(),
                    });
                }
            }
            Ok(Message::Response(response)) => {
                self.tsx
                    .handle_message(Message::Response(response), source, now);
            }
            Err(error) => {
                tracing::debug!(%error, peer = %source.addr, "unparseable message");
                // RFC 3261 §16.3/§8.2: a malformed request gets a 400 (or 505) when we can still
                // find the headers a response needs; it goes back to where it came from only.
                if let Some(bytes) =
                    stateless_error_response(bytes, error.status(), &error.to_string())
                {
                    self.transmits.push_back(OutDatagram {
                        dest: source,
                        bytes,
                    });
                }
            }
        }
        self.drain_tsx(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = Some(now);
        if let Some(message) = self.guard.take_warning(now) {
            self.events.push_back(UaEvent::Warning { message });
        }
        self.tsx.handle_timeout(now);
        self.parked_timeouts(now);
        self.check_route(now);
        self.call_timeouts(now);
        self.messaging_timeouts(now);
        let mut out = Vec::new();
        if let Some(reg) = self.registration.as_mut() {
            reg.handle_timeout(now, &mut out);
        }
        self.apply_registration(out, now);
        if let Some(deadline) = self.shutdown_deadline
            && now >= deadline
        {
            self.shutdown_deadline = None;
            self.events.push_back(UaEvent::ShutdownComplete);
        }
        self.drain_tsx(now);
    }

    /// A message could not be sent to `dest` (connection refused, unreachable).
    pub fn handle_transport_error(&mut self, dest: Destination, now: Instant) {
        self.clock = Some(now);
        self.tsx.handle_destination_error(dest, now);
        self.drain_tsx(now);
    }

    /// A stream connection (TCP/TLS) to `dest` closed or was found dead (keep-alive pongs
    /// missing); the driver has already failed what was in flight over it
    /// (`handle_transport_error`). When it was the flow to our next hop, the registration
    /// refreshes now (RFC 5626 §4.4): the registrar can no longer reach us over the old
    /// connection, and the next refresh may be minutes away. UDP has no flows: no-op.
    pub fn handle_flow_failed(&mut self, dest: Destination, now: Instant) {
        self.clock = Some(now);
        if dest.transport == TransportKind::Udp || Some(dest) != self.registration_dest {
            return;
        }
        let mut out = Vec::new();
        if let Some(reg) = self.registration.as_mut()
            && reg.flow_failed(now, &mut out)
        {
            tracing::info!(peer = %dest.addr, "connection to the registrar closed; registering again");
        }
        self.apply_registration(out, now);
        self.drain_tsx(now);
    }

    // ---- outputs ----

    pub fn poll_transmit(&mut self) -> Option<OutDatagram> {
        while let Some(out) = self.transmits.pop_front() {
            // Responses to sources that are neither the proxy nor the peer of a live call pass
            // a token bucket per source IP; past it they are dropped (a scanner flooding us
            // must not turn us into a reflector, nor hog the uplink).
            if let Some(now) = self.clock
                && out.bytes.starts_with(b"SIP/2.0 ")
                && !self.known_peer(out.dest.addr.ip())
                && !self.guard.allow_response(out.dest.addr.ip(), now)
            {
                if let Some(message) = self.guard.take_warning(now) {
                    tracing::warn!("{message}");
                    self.events.push_back(UaEvent::Warning { message });
                }
                continue;
            }
            return Some(out);
        }
        None
    }

    /// The proxy/registrar, or the peer of a confirmed (or held) call: never rate-limited.
    fn known_peer(&self, ip: std::net::IpAddr) -> bool {
        let ip = guard::canonical(ip);
        self.guard.is_trusted(ip)
            || self.calls.iter().any(|c| {
                matches!(c.state, CallState::Confirmed | CallState::Held)
                    && (c
                        .invite_dest
                        .is_some_and(|d| guard::canonical(d.addr.ip()) == ip)
                        || c.dialog.as_ref().is_some_and(|d| {
                            d.remote_target
                                .host_unbracketed()
                                .parse::<std::net::IpAddr>()
                                .is_ok_and(|t| guard::canonical(t) == ip)
                        }))
            })
    }

    /// accept_from: a request from a source that is not the proxy gets 403 unless it belongs to
    /// one of our dialogs. The dialog match (Call-ID and both tags, ours random) is what a
    /// scanner cannot guess; the source address is not checked against the dialog's remote
    /// target, because a peer behind NAT sends its BYE from its public address while its
    /// Contact names a private one (a 403 there would leave the call hanging). None: go on.
    fn source_check(&self, request: &Request, source: Destination) -> Option<Response> {
        let ip = source.addr.ip();
        if request.method == Method::Ack || self.guard.accepts(ip) {
            return None;
        }
        let in_dialog = request
            .headers
            .to()
            .ok()
            .is_some_and(|to| to.tag().is_some());
        let from_peer = in_dialog
            && (self.calls.iter().any(|c| {
                c.dialog
                    .as_ref()
                    .is_some_and(|d| d.matches_request(request))
            }) || self.messaging_dialog_matches(request));
        if from_peer {
            return None;
        }
        tracing::debug!(peer = %source.addr, method = %request.method.as_str(), "request from a source that is not the proxy: 403");
        let mut r = self.make_response(request, 403, None);
        // Tell a scanner as little as possible.
        r.headers.remove("Server");
        Some(r)
    }

    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.tsx.poll_timeout(),
            self.registration
                .as_ref()
                .and_then(Registration::poll_timeout),
            self.shutdown_deadline,
            self.call_poll_timeout(),
            self.guard.poll_timeout(),
            self.parked_poll_timeout(),
            self.route_check_at,
            self.messaging.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- internals ----

    fn apply_registration(&mut self, out: Vec<RegistrationOutput>, now: Instant) {
        for item in out {
            match item {
                RegistrationOutput::Send(request) => {
                    // A failure to route it comes back through `owner_failed` (and never
                    // yields another Send: no recursion).
                    self.send_request(
                        *request,
                        send::NextHop::OutsideDialog,
                        Owner::Registration,
                        now,
                    );
                }
                RegistrationOutput::Changed {
                    state,
                    code,
                    reason,
                    expires,
                } => {
                    let account = self.config.account.name.clone();
                    if state == RegistrationState::Registered
                        && self.route_check_at.is_none()
                        && self.config.local.ip().is_unspecified()
                        && self.routes.is_some()
                    {
                        self.route_check_at = Some(now + send::ROUTE_CHECK_INTERVAL);
                    }
                    self.events.push_back(UaEvent::Registration {
                        account,
                        state,
                        code,
                        reason,
                        expires,
                    });
                    if state == RegistrationState::Registered && self.shutdown_deadline.is_none() {
                        self.messaging_registered(now);
                    }
                    if self.shutdown_deadline.is_some() && state != RegistrationState::Unregistering
                    {
                        self.shutdown_deadline = None;
                        self.events.push_back(UaEvent::ShutdownComplete);
                    }
                }
            }
        }
    }

    /// Sends a request outside any transaction (ACK for 2xx).
    fn push_raw(&mut self, dest: Destination, request: Request) {
        self.transmits.push_back(OutDatagram {
            dest,
            bytes: request.to_bytes(),
        });
    }

    /// Our From value: display name and AOR.
    fn local_name_addr(&self) -> String {
        match &self.config.account.display_name {
            Some(name) => format!(
                "\"{}\" <{}>",
                super::registration::escape_quoted(name),
                self.config.account.aor
            ),
            None => format!("<{}>", self.config.account.aor),
        }
    }

    /// RFC 3581: the registrar saw us at `received`/`rport` (our address after NAT). When that
    /// differs from our Contact, use it from now on. True when the Contact changed.
    fn learn_public_address(&mut self, response: &Response) -> bool {
        let Ok(via) = response.headers.top_via() else {
            return false;
        };
        let host = via.received().map(str::to_string);
        let port = via.rport().flatten();
        if host.is_none() && port.is_none() {
            return false;
        }
        let Some(registered) = self
            .registration
            .as_ref()
            .map(|r| r.params().contact.clone())
        else {
            return false;
        };
        let mut contact = registered.clone();
        if let Some(host) = host {
            let Ok(ip) = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
            else {
                return false;
            };
            contact.host = ip_text(ip);
        }
        if let Some(port) = port {
            contact.port = Some(port);
        }
        if contact == registered {
            return false;
        }
        let Ok(ip) = contact.host_unbracketed().parse::<std::net::IpAddr>() else {
            return false;
        };
        let Some(port) = contact.port else {
            return false;
        };
        tracing::info!(old = %registered, new = %contact, "registrar sees us at another address; updating Contact");
        self.public = Some(SocketAddr::new(ip, port));
        true
    }

    /// Moves everything the transaction layer produced to where it belongs.
    fn drain_tsx(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(transmit) = self.tsx.poll_transmit() {
                progressed = true;
                self.transmits.push_back(OutDatagram {
                    dest: transmit.dest,
                    bytes: transmit.message.to_bytes(),
                });
            }
            while let Some(event) = self.tsx.poll_event() {
                progressed = true;
                self.handle_tsx_event(event, now);
            }
            if !progressed {
                break;
            }
        }
    }

    fn handle_tsx_event(&mut self, event: TsxEvent, now: Instant) {
        match event {
            TsxEvent::Response { tsx, response } => {
                // RFC 3263 §4.3: a 503 sends the request to the next server, if there is one.
                if response.code == 503 && self.failover(tsx, now) {
                    return;
                }
                self.answered(tsx, response.is_final());
                let owner = self.owners.get(&tsx).cloned();
                if response.is_final()
                    && !matches!(
                        owner,
                        Some(Owner::Call(_, Method::Invite) | Owner::Reinvite(_))
                    )
                {
                    self.owners.remove(&tsx);
                }
                match owner {
                    Some(Owner::Registration) => {
                        let learned = if response.is_success() {
                            self.learn_public_address(&response)
                        } else {
                            false
                        };
                        let mut out = Vec::new();
                        if let Some(reg) = self.registration.as_mut() {
                            reg.handle_response(&response, now, &mut out);
                            if learned {
                                // Bind the address the registrar can reach us at (RFC 3581):
                                // the Contact we registered was behind a NAT. The REGISTER
                                // takes the public address when it goes (`localise`).
                                reg.register(&mut out);
                            }
                        }
                        self.apply_registration(out, now);
                    }
                    Some(Owner::Call(id, method)) => {
                        self.call_response(id, method, tsx, response, now)
                    }
                    Some(Owner::Reinvite(id)) => self.reinvite_response(id, response, now),
                    Some(Owner::Messaging(job)) => self.messaging_response(job, tsx, response, now),
                    None => {}
                }
            }
            TsxEvent::Timeout { tsx } => {
                if !self.failover(tsx, now) {
                    self.client_failed(tsx, 408, "Request Timeout", now)
                }
            }
            TsxEvent::TransportError { tsx } => {
                if !self.failover(tsx, now) {
                    self.client_failed(tsx, 503, "Service Unavailable (transport error)", now)
                }
            }
            TsxEvent::Request {
                tsx,
                request,
                source,
            } => {
                if let Some(response) = self
                    .source_check(&request, source)
                    .or_else(|| self.precheck(&request))
                {
                    self.tsx.send_response(tsx, response, now);
                } else if let Some(request) = self.messaging_request(tsx, request, source, now)
                    && let Some(request) = self.call_request(tsx, request, source, now)
                {
                    self.handle_request(tsx, request, now);
                }
            }
            TsxEvent::Ack { request, .. } => self.incoming_ack(request, now),
            TsxEvent::Unmatched2xx { response, .. } => self.stray_2xx(&response),
            TsxEvent::Terminated { tsx } => {
                self.owners.remove(&tsx);
                self.alternates.remove(&tsx);
            }
        }
    }

    fn client_failed(&mut self, tsx: TsxId, code: u16, reason: &str, now: Instant) {
        self.alternates.remove(&tsx);
        if let Some(owner) = self.owners.remove(&tsx) {
            self.owner_failed(owner, code, reason, now);
        }
    }

    /// A request of `owner` failed: its transaction (timeout, transport error), or before it
    /// had one (no DNS answer, no route).
    fn owner_failed(&mut self, owner: Owner, code: u16, reason: &str, now: Instant) {
        match owner {
            Owner::Registration => {
                let mut out = Vec::new();
                if let Some(reg) = self.registration.as_mut() {
                    reg.handle_failure(code, reason, now, &mut out);
                }
                self.apply_registration(out, now);
            }
            Owner::Call(id, method) => self.call_failed(id, method, code, reason, now),
            Owner::Reinvite(id) => self.reinvite_failed(id, now),
            Owner::Messaging(job) => self.messaging_failed(job, code, reason, now),
        }
    }

    /// The UAS core (RFC 3261 §8.2) for requests outside calls.
    fn handle_request(&mut self, tsx: TsxId, request: Request, now: Instant) {
        let response = match request.method {
            Method::Options => {
                let mut r = self.make_response(&request, 200, None);
                r.headers.push("Allow", ALLOW);
                r.headers.push("Accept", ACCEPT);
                r.headers.push("Supported", self.supported());
                r.headers.push("Allow-Events", ALLOW_EVENTS);
                r
            }
            Method::Ack => return,
            // We are not a registrar (RFC 3261 §21.4.6: 405 lists what we do allow).
            Method::Register | Method::Subscribe | Method::Publish | Method::Message => {
                let mut r = self.make_response(&request, 405, None);
                r.headers.push("Allow", ALLOW);
                r
            }
            Method::Other(_) => {
                let mut r = self.make_response(&request, 501, None);
                r.headers.push("Allow", ALLOW);
                r
            }
            _ => self.make_response(&request, 481, None),
        };
        self.tsx.send_response(tsx, response, now);
    }

    /// Application-level checks every request passes before the method is looked at
    /// (RFC 3261 §8.2.1 - §8.2.3): URI scheme, Require, Content-Type.
    fn precheck(&self, request: &Request) -> Option<Response> {
        if request.method == Method::Ack {
            return None;
        }
        if !matches!(request.uri.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel) {
            return Some(self.make_response(request, 416, None));
        }
        let supported = self.supported();
        let unsupported: Vec<String> = request
            .headers
            .tokens("Require")
            .into_iter()
            .filter(|t| !supported.split(", ").any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() && request.method != Method::Cancel {
            let mut r = self.make_response(request, 420, None);
            r.headers.push("Unsupported", unsupported.join(", "));
            return Some(r);
        }
        if !request.body.is_empty()
            && let Some(content_type) = request.headers.content_type()
            && !ACCEPT
                .split(", ")
                .any(|a| a == content_type && is_accepted_for(&request.method, a))
            && !content_type.starts_with("multipart/")
        {
            let mut r = self.make_response(request, 415, None);
            r.headers.push("Accept", ACCEPT);
            return Some(r);
        }
        // RFC 3261 §21.4.7 / RFC 4475 §3.3.15 (sdp01): an INVITE whose Accept rules out SDP
        // leaves us no way to answer the session; 406 rather than ringing a call we cannot take.
        if request.method == Method::Invite
            && let Some(accept) = request.headers.get("Accept")
            && !accept.trim().is_empty()
            && !accept.split(',').any(|range| {
                let range = range.split(';').next().unwrap_or("").trim();
                ["application/sdp", "application/*", "*/*"]
                    .iter()
                    .any(|ok| range.eq_ignore_ascii_case(ok))
            })
        {
            let mut r = self.make_response(request, 406, None);
            r.headers
                .push("Warning", "399 sipterm \"answer must be application/sdp\"");
            return Some(r);
        }
        None
    }

    /// A response to `request` with the headers RFC 3261 §8.2.6.2 copies.
    fn make_response(&self, request: &Request, code: u16, to_tag: Option<&str>) -> Response {
        build_response(
            request,
            code,
            reason_phrase(code),
            to_tag,
            &self.config.user_agent,
        )
    }
}

fn is_accepted_for(method: &Method, content_type: &str) -> bool {
    match content_type {
        "application/sdp" => matches!(
            method,
            Method::Invite | Method::Update | Method::Ack | Method::Options
        ),
        "application/dtmf-relay" => *method == Method::Info,
        "message/sipfrag" => *method == Method::Notify,
        "text/plain" => *method == Method::Message,
        "application/pidf+xml"
        | "application/dialog-info+xml"
        | "application/simple-message-summary" => {
            matches!(method, Method::Notify | Method::Publish)
        }
        _ => false,
    }
}

/// Builds a response copying Via, From, To (adding a tag to a final response when the request
/// had none), Call-ID and CSeq, and for 101-299 the Record-Route values.
pub fn build_response(
    request: &Request,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    server: &str,
) -> Response {
    let mut response = Response::new(code, reason);
    for header in request.headers.iter() {
        let name = super::message::long_name(header.name);
        if ["Via", "From", "Call-ID", "CSeq"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
        {
            response.headers.push(header.name, header.value);
        } else if name.eq_ignore_ascii_case("To") {
            let mut value = header.value.to_string();
            let has_tag = request
                .headers
                .to()
                .map(|to| to.tag().is_some())
                .unwrap_or(true);
            if !has_tag && code > 100 {
                let tag = to_tag
                    .map(str::to_string)
                    .unwrap_or_else(|| fallback_tag(request));
                value = format!("{value};tag={tag}");
            }
            response.headers.push(header.name, value);
        } else if name.eq_ignore_ascii_case("Record-Route") && (101..300).contains(&code) {
            // RFC 3261 §12.1.1: a response that (may) establish a dialog carries the request's
            // Record-Route values, in order. Without them the caller's route set was empty and
            // its ACK and BYE went straight to our Contact, bypassing the record-routing proxy.
            response.headers.push(header.name, header.value);
        }
    }
    response.headers.push("Server", server);
    response
}

/// A stable To tag for stateless answers: derived from the request so retransmissions get the
/// same tag.
fn fallback_tag(request: &Request) -> String {
    let key = format!(
        "{}{}",
        request.headers.get("Call-ID").unwrap_or(""),
        request.headers.get("CSeq").unwrap_or("")
    );
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3);
    }
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

/// RFC 3581 / RFC 3261 §18.2.1: note where a request really came from in its top Via, so
/// responses go back to that address and port.
fn stamp_received(request: &mut Request, source: SocketAddr) {
    let Ok(mut via) = request.headers.top_via() else {
        return;
    };
    let sent_by_ip = via
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .ok();
    if sent_by_ip != Some(source.ip()) {
        via.set_param("received", Some(&source.ip().to_string()));
    }
    if via.rport().is_some() {
        via.set_param("rport", Some(&source.port().to_string()));
    }
    // Replace only the first Via value of the first Via line.
    if let Some(first) = request.headers.get("Via") {
        let value = match split_first_value(first).1 {
            Some(rest) => format!("{via}, {rest}"),
            None => via.to_string(),
        };
        request.headers.set_first("Via", value);
    }
}

/// Splits a comma-separated header value at its first top-level comma (outside quotes and <>).
fn split_first_value(value: &str) -> (&str, Option<&str>) {
    let mut in_quotes = false;
    let mut angle = 0u32;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => angle += 1,
            '>' if !in_quotes => angle = angle.saturating_sub(1),
            ',' if !in_quotes && angle == 0 => {
                return (value[..i].trim(), Some(value[i + 1..].trim()));
            }
            _ => {}
        }
    }
    (value.trim(), None)
}

/// For a request we could not parse: a 400/505 built from whatever Via/From/To/Call-ID/CSeq
/// lines a lenient line scan finds. `None` for responses and hopeless input.
pub fn stateless_error_response(bytes: &[u8], code: u16, why: &str) -> Option<Vec<u8>> {
    let text =
        String::from_utf8_lossy(bytes.get(..bytes.len().min(super::parse::MAX_MESSAGE_BYTES))?);
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let first = lines.next()?;
    if first.starts_with("SIP/") || first.trim().is_empty() {
        return None;
    }
    let mut kept: Vec<(String, String)> = Vec::new();
    for line in lines.take(super::parse::MAX_HEADERS) {
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        // A bare CR (or any control character) copied into our response would break its
        // framing or inject a header (found by fuzz/ua_datagrams): such a line is not kept,
        // and without a clean Via and CSeq there is no answer at all.
        if value.chars().any(|c| c.is_control() && c != '\t') {
            continue;
        }
        let long = super::message::long_name(name.trim());
        if ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(long))
        {
            kept.push((long.to_string(), value.trim().to_string()));
        }
    }
    // Via (where the answer goes, and the branch the client matches on) and CSeq (the method
    // it matches) are enough: RFC 4475 §3.3.1 (insuf) wants a 400 even for a request that
    // lacks Call-ID, From and To, and the client can still match that response.
    let needed = ["Via", "CSeq"];
    if !needed
        .iter()
        .all(|n| kept.iter().any(|(k, _)| k.eq_ignore_ascii_case(n)))
    {
        return None;
    }
    // Never answer an ACK (RFC 3261 §17.2.1 has no response to ACK).
    if first.split_whitespace().next() == Some("ACK") {
        return None;
    }
    let reason = reason_phrase(code);
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for (name, value) in kept {
        if name == "To" && !value.contains(";tag=") {
            out.push_str(&format!("To: {value};tag=sipterm400\r\n"));
        } else {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let warning: String = why
        .chars()
        .filter(|c| *c != '"' && !c.is_control())
        .take(120)
        .collect();
    out.push_str(&format!(
        "Warning: 399 sipterm \"{warning}\"\r\nContent-Length: 0\r\n\r\n"
    ));
    Some(out.into_bytes())
}

/// Our Contact URI: the AOR's user at our local address, with the transport when not UDP.
fn contact_uri(config: &UaConfig) -> Uri {
    let user = config.account.aor.user.clone();
    // A wildcard listen address is never a Contact; this one is replaced per destination anyway.
    let ip = match config.local.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if config.account.transport == TransportKind::Tls {
        Scheme::Sips
    } else {
        Scheme::Sip
    };
    let mut uri = Uri {
        scheme,
        user,
        host: ip_text(ip),
        port: Some(config.local.port()),
        ..Uri::default()
    };
    if config.account.transport == TransportKind::Tcp {
        uri.set_param("transport", Some("tcp"));
    }
    uri
}

fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn host_port(addr: SocketAddr) -> String {
    format!("{}:{}", ip_text(addr.ip()), addr.port())
}

pub fn transport_token(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Udp => "UDP",
        TransportKind::Tcp => "TCP",
        TransportKind::Tls => "TLS",
    }
}

/// A destination straight from a URI whose host is an IP literal (no DNS in the core).
pub fn uri_destination(uri: &Uri, default_transport: TransportKind) -> Option<Destination> {
    match route::hop_for(uri, default_transport) {
        route::Hop::Direct(dest) => Some(dest),
        route::Hop::Locate(_) => None,
    }
}
