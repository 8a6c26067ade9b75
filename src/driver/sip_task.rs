//! The SIP task: owns the sans-IO `UserAgent` and the sockets, moves bytes between them, arms
//! one timer, forwards events. The only clock reads of the SIP path happen here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use std::collections::HashMap;

use super::capture::PacketTap;
use super::command::Command;
use super::diagnosis_task::{self, DiagnosisFeed};
use super::dns::SystemDns;
use super::locate::{Dns, Resolved};
use super::media_task::{self, MediaControl, MediaHandle, MediaIo};
use super::nat::{MEDIA_SCHEDULE, NatOutput, NatSetup, SipNat};
use super::tls::{self, TlsOptions};
use super::tone_task::{self, ToneHandle, ToneSettings};
use super::transport::{Inbound, ListenerLimits, Transport, TransportError};
use crate::diagnosis::Fact;
use crate::event::{Direction, Event, first_line};
use crate::nat::stun::is_stun;
use crate::policy::{Action as PolicyAction, CallPolicy};
use crate::sdp::{Codec, Direction as MediaDirection, LocalMedia};
use crate::sip::ids::Seed;
use crate::sip::registration::RegistrationState;
use crate::sip::transaction::{Destination, TimerConfig, TransportKind};
use crate::sip::ua::{self, AccountParams, CallState, LocalRoutes, UaConfig, UaEvent, UserAgent};
use crate::sip::uri::Uri;

/// How long the STUN server's name may take to resolve at start (before `ready`).
const STUN_RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// How DTMF digits go out (the account's `dtmf` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtmfMode {
    /// RFC 4733 telephone-event when the call negotiated it, else SIP INFO.
    #[default]
    Auto,
    /// SIP INFO (application/dtmf-relay) always.
    Info,
    /// Dual tones mixed into the audio.
    Inband,
}

/// Everything the SIP task needs, straight from config and CLI.
#[derive(Debug, Clone)]
pub struct SipSetup {
    pub listen: SocketAddr,
    pub account: AccountParams,
    pub user_agent: String,
    pub timers: TimerConfig,
    /// Register at start when the account has a registrar.
    pub register_at_start: bool,
    pub codecs: Vec<Codec>,
    pub busy_when_in_call: bool,
    /// SRTP (SDES) policy of the account.
    pub srtp: crate::sdp::SrtpPolicy,
    /// The account's PBX keys: 100rel, session timers, do-not-disturb, forwarding, transfers.
    pub calls: ua::CallPolicy,
    /// How DTMF goes out (`dtmf` key): RFC 4733 when negotiated, else INFO; or forced.
    pub dtmf: DtmfMode,
    /// Where call audio comes from and goes to.
    pub media: MediaIo,
    /// STUN and keep-alives.
    pub nat: NatSetup,
    /// Ringtone and call-progress tones (played on `media.output`).
    pub tones: ToneSettings,
    /// Who may send requests outside a call (scanner protection); `Proxy` trusts the resolved
    /// addresses of the outbound proxy and the registrar.
    pub accept_from: ua::AcceptFrom,
    /// Sent as `warning` events once the engine runs (e.g. a config file others can read).
    pub warnings: Vec<String>,
    /// `[sip]` TLS keys: CA file, insecure mode, listener certificate.
    pub tls: TlsOptions,
    /// CRLFCRLF ping interval on TCP/TLS connections we open; None: off.
    pub stream_keepalive: Option<Duration>,
    /// Bounds on connections accepted by the TCP and TLS listeners.
    pub listener_limits: ListenerLimits,
    /// Presence, busy lamps, voicemail indicator, watchers (the account's keys).
    pub messaging: ua::MessagingPolicy,
    /// Call numbers shared with the other accounts' engines (`ua::CallNumbers`).
    pub call_numbers: ua::CallNumbers,
}

pub struct SipHandle {
    pub commands: mpsc::Sender<Command>,
    /// The address really bound (port 0 resolved).
    pub listen: SocketAddr,
    /// The TLS listener's address, when `tls_listen` is set and it could start.
    pub tls_listen: Option<SocketAddr>,
    /// Ends after `Command::Shutdown` has been carried out.
    pub task: JoinHandle<()>,
    /// SIP trace events dropped because the front end was not reading fast enough.
    pub dropped_traces: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("sipterm is stopping")]
    Stopping,
}

/// Binds the sockets and spawns the SIP task. Nothing here waits for DNS: the registrar and
/// proxy are resolved by the task (RFC 3263) when the first request goes, so an offline laptop
/// or a name that does not resolve yet never stops sipterm from starting.
pub async fn start(setup: SipSetup, events: mpsc::Sender<Event>) -> Result<SipHandle, StartError> {
    start_with(setup, events, Arc::new(AtomicU64::new(0))).await
}

/// Like `start`, counting dropped trace events in `dropped_traces` (shared by the engines of
/// several accounts: the front end shows one number).
pub async fn start_with(
    setup: SipSetup,
    events: mpsc::Sender<Event>,
    dropped_traces: Arc<AtomicU64>,
) -> Result<SipHandle, StartError> {
    // Every event goes out through the live diagnosis, which adds its own.
    let (events, diagnosis, relay) = diagnosis_task::spawn(events, diagnosis_setup(&setup));
    let (mut transport, inbound) =
        Transport::bind_with(setup.listen, setup.listener_limits).await?;
    let listen = transport.local_addr();
    let tls_listen = setup_tls(&mut transport, &setup, &events).await;
    // One resolver (and cache) for everything: STUN, registrar, proxy, dial targets.
    let system_dns = SystemDns::new();
    let stun_server = match setup.nat.stun_server.as_deref() {
        // Bounded: an offline laptop with a STUN name must still start quickly.
        Some(server) => match super::nat::resolve_stun_with(
            &system_dns.clone().with_timeout(STUN_RESOLVE_TIMEOUT),
            server,
            listen,
        )
        .await
        {
            Ok(addr) => Some(addr),
            Err(e) => {
                let message = format!("stun_server: {e}; using the local address");
                tracing::warn!("{message}");
                let _ = events.send(Event::Warning { message }).await;
                None
            }
        },
        None => None,
    };
    // Keep-alives go to the registration's flow once the first REGISTER went (`flush`).
    let nat = SipNat::new(stun_server, setup.nat.keepalive, None);
    // The proxy's and registrar's IP literals; their names are trusted once resolved (the UA
    // adds every address DNS gives for them).
    let trusted: Vec<IpAddr> = [&setup.account.outbound_proxy, &setup.account.registrar]
        .into_iter()
        .flatten()
        .filter_map(|uri| uri.host_unbracketed().parse::<IpAddr>().ok())
        .collect();
    let mut warnings = setup.warnings;
    if setup.accept_from == ua::AcceptFrom::Proxy
        && setup.account.outbound_proxy.is_none()
        && setup.account.registrar.is_none()
    {
        warnings.push(format!(
            "account {}: accept_from = \"proxy\" but no proxy address is known; every incoming \
             call will be refused",
            setup.account.name
        ));
    }
    tracing::debug!(accept_from = ?setup.accept_from, ?trusted, "source policy");
    let config = UaConfig {
        account: setup.account,
        local: listen,
        user_agent: setup.user_agent,
        timers: setup.timers,
        seed: Seed::from_os(),
        codecs: setup.codecs,
        busy_when_in_call: setup.busy_when_in_call,
        srtp: setup.srtp,
        calls: setup.calls.clone(),
        messaging: setup.messaging.clone(),
        call_numbers: setup.call_numbers.clone(),
    };
    let (commands, command_rx) = mpsc::channel(64);
    let mut ua = UserAgent::new(config);
    ua.set_source_policy(setup.accept_from, trusted);
    ua.set_local_routes(Box::new(KernelRoutes));
    if let Some(tls_addr) = tls_listen {
        ua.set_tls_listener(tls_addr);
    }
    for message in warnings {
        tracing::warn!("{message}");
        let _ = events.send(Event::Warning { message }).await;
    }
    let (resolved_tx, resolved) = mpsc::unbounded_channel();
    let engine = Engine {
        ua,
        transport,
        events,
        dropped: dropped_traces.clone(),
        media_io: setup.media,
        tones: Tones {
            settings: setup.tones,
            ..Tones::default()
        },
        sockets: HashMap::new(),
        policy: CallPolicy::new(),
        media: HashMap::new(),
        done: false,
        echo_mode: false,
        echo_service: start_echo_service(listen.ip()).await,
        nat,
        ice: setup.nat.ice.clone(),
        ice_handles: HashMap::new(),
        ice_controls: HashMap::new(),
        ice_restarted: None,
        keepalive_off: setup.nat.keepalive_off,
        bind_ip: listen.ip(),
        media_ready: None,
        preparing: 0,
        deferred: std::collections::VecDeque::new(),
        dns: Dns::new(system_dns, resolved_tx),
        resolved: Some(resolved),
        diagnosis,
        pbx: Pbx {
            dtmf: setup.dtmf,
            dnd_code: setup.calls.dnd.unwrap_or(486),
            dnd: setup.calls.dnd.is_some(),
            forward: setup.calls.forward_to.clone(),
            ..Pbx::default()
        },
    };
    let task = tokio::spawn(async move {
        engine
            .run(inbound, command_rx, setup.register_at_start)
            .await;
        // The front end's last events (the final media report, unregistered) are still in
        // the relay: it ends once they went out.
        relay.finish().await;
    });
    Ok(SipHandle {
        commands,
        listen,
        tls_listen,
        task,
        dropped_traces,
    })
}

/// What the diagnosis needs to know of the account.
fn diagnosis_setup(setup: &SipSetup) -> crate::diagnosis::Setup {
    let account = &setup.account;
    crate::diagnosis::Setup {
        account: account.aor.to_string(),
        codecs: setup
            .codecs
            .iter()
            .map(|c| c.encoding_name().to_string())
            .collect(),
        registrar: account.registrar.as_ref().map(|r| r.to_string()),
        outbound_proxy: account.outbound_proxy.as_ref().map(|r| r.to_string()),
        has_password: account.password.is_some(),
        keepalive_secs: setup.nat.keepalive.map(|d| d.as_secs()),
        keepalive_off: setup.nat.keepalive_off,
    }
}

/// Sets up TLS on `transport` from the `[sip]` keys: the client configuration (when TLS may be
/// used), the listener, the keep-alive interval. Problems (missing files, a port in use) are
/// `error` events and leave TLS (or its listener) off; sipterm keeps running.
async fn setup_tls(
    transport: &mut Transport,
    setup: &SipSetup,
    events: &mpsc::Sender<Event>,
) -> Option<SocketAddr> {
    transport.set_keepalive(setup.stream_keepalive);
    let options = &setup.tls;
    let mut notes = tls::Notes::default();
    let wants_tls = setup.account.transport == TransportKind::Tls
        || options.ca_file.is_some()
        || options.insecure;
    if wants_tls && let Some(config) = tls::client_config(options, &mut notes) {
        transport.set_tls_client(config);
    }
    let mut bound = None;
    if let Some(addr) = options.listen {
        match tls::server_config(options) {
            Ok(config) => match transport.listen_tls(addr, config).await {
                Ok(addr) => bound = Some(addr),
                Err(e) => notes.errors.push(format!("TLS: {e}")),
            },
            Err(e) => notes.errors.push(e),
        }
    }
    for message in notes.warnings {
        tracing::warn!("{message}");
        let _ = events.send(Event::Warning { message }).await;
    }
    for message in notes.errors {
        tracing::error!("{message}");
        let _ = events.send(Event::Error { message }).await;
    }
    bound
}

/// Starts the built-in echo service: a second user agent on the loopback address that answers
/// every call at once and sends each RTP packet back where it came from. `dial echo` reaches it
/// over real SIP and RTP, so a first run with no account can test the whole path.
async fn start_echo_service(ip: IpAddr) -> Option<SocketAddr> {
    let ip = if ip.is_loopback() {
        ip
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let (transport, inbound) = Transport::bind(SocketAddr::new(ip, 0)).await.ok()?;
    let listen = transport.local_addr();
    let aor: Uri = format!("sip:echo@{listen}").parse().ok()?;
    let config = UaConfig {
        account: AccountParams {
            name: "echo".into(),
            aor,
            display_name: Some("sipterm echo test".into()),
            auth_username: "echo".into(),
            password: None,
            registrar: None,
            outbound_proxy: None,
            expires: 600,
            transport: TransportKind::Udp,
        },
        local: listen,
        user_agent: "sipterm echo".into(),
        timers: TimerConfig::default(),
        seed: Seed::from_os(),
        codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
        busy_when_in_call: false,
        // Takes plain and SRTP calls; its media task decrypts and re-encrypts what it echoes.
        srtp: crate::sdp::SrtpPolicy::Optional,
        // The echo service honours a caller's session timer; it asks for none itself.
        calls: ua::CallPolicy {
            session_expires: None,
            ..ua::CallPolicy::default()
        },
        messaging: ua::MessagingPolicy::default(),
        call_numbers: ua::CallNumbers::default(),
    };
    let (events, mut sink) = mpsc::channel::<Event>(256);
    tokio::spawn(async move { while sink.recv().await.is_some() {} });
    let (_commands, command_rx) = mpsc::channel(8);
    let engine = Engine {
        ua: UserAgent::new(config),
        transport,
        events,
        dropped: Arc::new(AtomicU64::new(0)),
        media_io: MediaIo {
            input: media_task::AudioEndpoint::Null,
            output: media_task::AudioEndpoint::Null,
            rtp_latching: false,
            append_output: false,
            processing: Default::default(),
            capture: None,
        },
        tones: Tones::default(),
        sockets: HashMap::new(),
        policy: CallPolicy::echo_service(),
        media: HashMap::new(),
        done: false,
        echo_mode: true,
        echo_service: None,
        nat: SipNat::new(None, None, None),
        ice: None,
        ice_handles: HashMap::new(),
        ice_controls: HashMap::new(),
        ice_restarted: None,
        keepalive_off: true,
        bind_ip: listen.ip(),
        media_ready: None,
        preparing: 0,
        deferred: std::collections::VecDeque::new(),
        dns: Dns::disabled(),
        resolved: None,
        diagnosis: DiagnosisFeed::disabled(),
        pbx: Pbx::default(),
    };
    // The command sender is dropped: the echo engine lives as long as the runtime.
    tokio::spawn(engine.run(inbound, command_rx, false));
    Some(listen)
}

/// Whether `command` must wait for calls whose RTP STUN Binding still runs: a dial, an
/// answer or quit (order matters), and call commands that name no call (the user may mean the
/// call being placed). Those naming a call mean one that exists; (un)register never waits.
fn waits_for_media(command: &Command) -> bool {
    match command {
        Command::Register
        | Command::Unregister
        | Command::Dnd(_)
        | Command::Forward(_)
        | Command::Message { .. }
        | Command::Watch { .. }
        | Command::Unwatch { .. }
        | Command::Account(..) => false,
        Command::Dial(_) | Command::DialOn(..) | Command::Quit => true,
        Command::AttendedTransfer(call, consult) => call.is_none() || consult.is_none(),
        Command::Conference(calls) => calls.is_empty(),
        Command::TransferAnswer(call, _) | Command::Split(call) => call.is_none(),
        Command::Answer(call)
        | Command::Reject(call)
        | Command::Hangup(call)
        | Command::Hold(call)
        | Command::IceRestart(call)
        | Command::Resume(call)
        | Command::Transfer(call, _)
        | Command::Mute(call, _)
        | Command::Audio(call, _)
        | Command::Dtmf(call, _) => call.is_none(),
    }
}

/// The tone player: at most one tone plays, for one call (which one is `CallPolicy`'s
/// decision).
#[derive(Default)]
struct Tones {
    settings: ToneSettings,
    playing: Option<(u64, ToneHandle)>,
    /// The call whose tone the WAV output holds (its media keeps it at the file's head).
    recorded: Option<u64>,
    /// A failing sound device warns once, not at every ring.
    device_warned: Arc<std::sync::atomic::AtomicBool>,
}

/// The SIP task's state: the UA, the sockets, and the media of each call.
struct Engine {
    ua: UserAgent,
    transport: Transport,
    events: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
    media_io: MediaIo,
    tones: Tones,
    /// Tones, call waiting, calls answered at once and transfer NOTIFYs (pure; see
    /// `crate::policy`): fed call states and media starts and stops, drained by `run_policy`.
    policy: CallPolicy,
    /// RTP/RTCP sockets bound for calls whose media has not started yet, by RTP port.
    sockets: HashMap<u16, (tokio::net::UdpSocket, tokio::net::UdpSocket)>,
    media: HashMap<u64, MediaHandle>,
    done: bool,
    /// The built-in echo service answers every call and reflects its RTP (for `dial echo`).
    echo_mode: bool,
    /// Where `dial echo` goes: the echo service's SIP address.
    echo_service: Option<SocketAddr>,
    /// STUN on the SIP socket and UDP keep-alives.
    nat: SipNat,
    /// The account turned keep-alives off (`keepalive_secs = 0`), even behind a NAT.
    keepalive_off: bool,
    /// The IP our sockets bind to (`ua.config().local` may be the public address from STUN).
    bind_ip: IpAddr,
    /// Where a call's RTP sockets come back after their STUN Binding (set by `run`).
    media_ready: Option<mpsc::UnboundedSender<PreparedMedia>>,
    /// Calls whose RTP STUN Binding is running (dial/answer not yet handed to the UA), and
    /// the commands that came meanwhile and may mean those calls (`waits_for_media`): they
    /// run, in order, once no Binding is left. Was: `hangup` right after `dial` found no call.
    preparing: usize,
    deferred: std::collections::VecDeque<Command>,
    /// Resolves the UA's host names (RFC 3263) in tasks of their own.
    dns: Dns,
    /// Their answers (taken by `run`).
    resolved: Option<mpsc::UnboundedReceiver<Resolved>>,
    /// Facts for the live diagnosis that no event carries (DNS, ICMP, TLS, dead connections).
    diagnosis: DiagnosisFeed,
    /// Conference, DTMF mode, do-not-disturb and forwarding state.
    pbx: Pbx,
    /// The account's ICE settings; `None`: no ICE.
    ice: Option<super::nat::IceAccount>,
    /// Calls' ICE between gathering and media start, by the SDP's RTP port (as `sockets`).
    ice_handles: HashMap<u16, super::ice_task::IceHandle>,
    /// Calls' ICE while their media runs (restarts, later offers and answers).
    ice_controls: HashMap<u64, super::ice_task::IceControl>,
    /// Where an ICE restart's new candidates come back (set by `run`).
    ice_restarted: Option<mpsc::UnboundedSender<IceRestarted>>,
}

/// An ICE restart of ours gathered (`None`: the call's ICE ended meanwhile).
type IceRestarted = super::ice_task::Regathered;

/// What the engine keeps for the PBX features (issue 15).
#[derive(Default)]
struct Pbx {
    dtmf: DtmfMode,
    /// Calls whose media negotiated RFC 4733 telephone-event.
    telephone_event: std::collections::HashSet<u64>,
    /// The calls mixed in the local conference (empty: none); the first one is the host leg.
    conference: Vec<u64>,
    dnd: bool,
    dnd_code: u16,
    forward: Option<Uri>,
}

/// What a call's RTP sockets are being prepared for; it goes on once they are.
enum MediaUse {
    Dial(Uri),
    Answer(Option<u64>),
    /// A call the peer of call `referrer` asked us to place (REFER).
    Transfer {
        target: Uri,
        referrer: u64,
    },
}

/// A call's RTP/RTCP sockets, bound, with the outcome of their STUN Binding (None: no STUN).
struct PreparedMedia {
    purpose: MediaUse,
    rtp: tokio::net::UdpSocket,
    rtcp: tokio::net::UdpSocket,
    local: SocketAddr,
    public: Option<Result<SocketAddr, String>>,
    /// ICE gathered on `rtp` (which then sits in the ICE task until media starts), or why not.
    ice: Option<Result<super::ice_prepare::PreparedIce, String>>,
}

impl Engine {
    /// The `--pcap-out` tap and our SIP address, when capturing.
    fn capture(&self) -> Option<(&PacketTap, SocketAddr)> {
        let tap = self.media_io.capture.as_ref()?;
        Some((tap, self.transport.local_addr()))
    }

    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
        register_at_start: bool,
    ) {
        // Behind NAT, learn the SIP socket's public address first (STUN maps the UDP socket
        // only); the first REGISTER waits for it (bounded by its schedule) so that its Contact
        // is the public address.
        let now = std::time::Instant::now();
        let binding =
            self.ua.config().account.transport == TransportKind::Udp && self.nat.start_binding(now);
        if binding {
            self.nat_timeout(now).await;
        }
        if register_at_start && self.ua.config().account.registrar.is_some() {
            if binding {
                self.nat.register_when_bound = true;
            } else {
                self.ua.handle_command(ua::Command::Register, now);
            }
        }
        // Front ends learn the account's do-not-disturb and forwarding from the start.
        if self.pbx.dnd {
            self.announce_dnd().await;
        }
        if self.pbx.forward.is_some() {
            self.announce_forward().await;
        }
        let mut commands_open = true;
        let (media_ready, mut prepared_media) = mpsc::unbounded_channel();
        // The echo service resolves nothing: its receiver is a closed channel's.
        let mut resolved = self
            .resolved
            .take()
            .unwrap_or_else(|| mpsc::unbounded_channel().1);
        // The most transactions alive since memory was last handed back (see below).
        let mut flood_peak = 0usize;
        self.media_ready = Some(media_ready);
        let (ice_restarted, mut restarts) = mpsc::unbounded_channel();
        self.ice_restarted = Some(ice_restarted);
        loop {
            self.flush().await;
            if self.done {
                self.policy.handle_shutdown();
                self.run_policy().await;
                for (_, media) in self.media.drain() {
                    let _ = media.control.send(MediaControl::Stop);
                    let _ = media.task.await;
                }
                return;
            }
            let deadline = [self.ua.poll_timeout(), self.nat.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let sleep_for =
                deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            tokio::select! {
                msg = inbound.recv() => {
                    let Some(msg) = msg else { return };
                    let now = std::time::Instant::now();
                    match msg {
                        // STUN shares the SIP UDP socket: it never reaches the SIP parser.
                        Inbound::Message { source, bytes }
                            if source.transport == TransportKind::Udp && is_stun(&bytes) =>
                        {
                            let mut out = Vec::new();
                            self.nat.handle_input(source.addr, &bytes, &mut out);
                            self.nat_outputs(out).await;
                        }
                        Inbound::Message { source, bytes } => {
                            trace(&self.events, &self.dropped, self.capture(), Direction::In, source.addr, &bytes);
                            self.transport.learn_alias(source, &bytes);
                            self.ua.handle_datagram(source, &bytes, now);
                        }
                        Inbound::Connected { peer, writer } => self.transport.connected(peer, writer),
                        Inbound::Unreachable { dest } => {
                            tracing::info!(peer = %dest.addr, "ICMP: unreachable");
                            self.diagnosis.note(Fact::Unreachable { peer: dest.addr });
                            self.ua.handle_transport_error(dest, now);
                        }
                        Inbound::ConnectFailed { peer, error, tls } => {
                            let aliases = self.transport.closed(peer);
                            tracing::warn!(peer = %peer.addr, %error, "connection failed");
                            self.diagnosis.note(Fact::ConnectFailed {
                                peer: peer.addr,
                                transport: ua::transport_token(peer.transport),
                                error: error.clone(),
                                tls,
                            });
                            let _ = self.events.send(Event::Error { message: error }).await;
                            self.connection_gone(peer, aliases, now);
                        }
                        Inbound::Closed { peer, error } => {
                            let aliases = self.transport.closed(peer);
                            if let Some(error) = error {
                                tracing::info!(peer = %peer.addr, %error, "connection closed");
                                self.diagnosis.note(Fact::ConnectFailed {
                                    peer: peer.addr,
                                    transport: ua::transport_token(peer.transport),
                                    error,
                                    tls: None,
                                });
                            }
                            self.connection_gone(peer, aliases, now);
                            // RFC 5626 §4.4: the flow to the registrar is gone; re-register now.
                            self.ua.handle_flow_failed(peer, now);
                        }
                        Inbound::Lost { peer, error } => {
                            let aliases = self.transport.closed(peer);
                            tracing::warn!(peer = %peer.addr, %error, "connection lost");
                            self.diagnosis.note(Fact::ConnectionLost {
                                peer: peer.addr,
                                error: error.clone(),
                            });
                            let message = format!("connection to {} lost: {error}", peer.addr);
                            let _ = self.events.send(Event::Warning { message }).await;
                            self.connection_gone(peer, aliases, now);
                            self.ua.handle_flow_failed(peer, now);
                        }
                    }
                }
                Some(answer) = resolved.recv() => self.resolved(answer),
                // Never None: `self` holds a sender.
                // Never None: `self` holds a sender.
                Some((call, gathered)) = restarts.recv() => self.ice_gathered_again(call, gathered).await,
                Some(prepared) = prepared_media.recv() => {
                    self.media_prepared(prepared).await;
                    self.preparing = self.preparing.saturating_sub(1);
                    self.run_deferred().await;
                }
                cmd = commands.recv(), if commands_open => {
                    match cmd {
                        Some(cmd) => self.command(cmd).await,
                        None => {
                            // Every front end is gone: leave cleanly (the echo service has none
                            // and serves until the runtime ends).
                            commands_open = false;
                            if !self.echo_mode {
                                self.ua.handle_command(ua::Command::Shutdown, std::time::Instant::now());
                            }
                        }
                    }
                }
                _ = tokio::time::sleep(sleep_for.unwrap_or(Duration::from_secs(3600))), if sleep_for.is_some() => {
                    let now = std::time::Instant::now();
                    self.ua.handle_timeout(now);
                    self.nat_timeout(now).await;
                    flood_peak = release_after_flood(flood_peak, self.ua.transaction_count());
                }
            }
        }
    }

    /// A stream connection ended: requests in flight over it fail now (not at their timeout),
    /// those sent to `peer` and those sent to an address aliased onto it.
    fn connection_gone(
        &mut self,
        peer: Destination,
        aliases: Vec<Destination>,
        now: std::time::Instant,
    ) {
        self.ua.handle_transport_error(peer, now);
        for alias in aliases {
            self.ua.handle_transport_error(alias, now);
        }
    }

    async fn command(&mut self, command: Command) {
        if self.preparing > 0 && waits_for_media(&command) {
            tracing::debug!(?command, "waiting for the RTP STUN Binding of a new call");
            self.deferred.push_back(command);
            return;
        }
        let now = std::time::Instant::now();
        // The router picked this engine for the account: here it is a dial like any other.
        let command = match command {
            Command::DialOn(_, target) => Command::Dial(target),
            other => other,
        };
        let ua_command = match command {
            Command::DialOn(..) => return,
            Command::Register => ua::Command::Register,
            Command::Unregister => ua::Command::Unregister,
            Command::Quit => ua::Command::Shutdown,
            Command::Dial(target) if target.eq_ignore_ascii_case("echo") => {
                match self.echo_service {
                    // The echo service speaks UDP (and TCP), never TLS: a TLS account must
                    // not default to TLS towards it.
                    Some(echo) => match format!(
                        "sip:echo@{echo}{}",
                        if self.ua.config().account.transport == TransportKind::Tls {
                            ";transport=udp"
                        } else {
                            ""
                        }
                    )
                    .parse::<Uri>()
                    {
                        Ok(target) => return self.prepare_media(MediaUse::Dial(target)).await,
                        Err(e) => return self.error(format!("echo service: {e}")).await,
                    },
                    None => return self.error("the echo service is not running".into()).await,
                }
            }
            Command::Dial(target) => match self.dial_target(&target) {
                Ok(uri) => return self.prepare_media(MediaUse::Dial(uri)).await,
                Err(message) => return self.error(message).await,
            },
            Command::Message { target, text, .. } => match self.dial_target(&target) {
                Ok(target) => ua::Command::SendMessage { target, text },
                Err(message) => return self.error(message).await,
            },
            Command::Watch { target, .. } => match self.dial_target(&target) {
                Ok(uri) => ua::Command::Watch { target: uri },
                Err(message) => return self.error(message).await,
            },
            Command::Unwatch { target, .. } => match self.dial_target(&target) {
                Ok(uri) => ua::Command::Unwatch {
                    target: uri.to_string(),
                },
                Err(message) => return self.error(message).await,
            },
            // Enabling and disabling accounts is the router's business.
            Command::Account(..) => return,
            Command::Answer(call) => return self.prepare_media(MediaUse::Answer(call)).await,
            Command::Reject(call) => ua::Command::Reject { call, code: 486 },
            Command::Hangup(call) => ua::Command::Hangup { call },
            Command::Hold(call) => ua::Command::Hold { call },
            Command::IceRestart(call) => return self.restart_ice(call).await,
            Command::Resume(call) => ua::Command::Resume { call },
            Command::Transfer(call, target) => match self.dial_target(&target) {
                Ok(target) => ua::Command::Transfer { call, target },
                Err(message) => return self.error(message).await,
            },
            Command::Mute(call, on) => {
                return self.media_control(call, MediaControl::Mute(on)).await;
            }
            Command::Dtmf(call, digits) => return self.send_dtmf(call, digits).await,
            Command::AttendedTransfer(call, consult) => {
                ua::Command::AttendedTransfer { call, consult }
            }
            Command::TransferAnswer(call, accept) => ua::Command::TransferAnswer { call, accept },
            Command::Conference(calls) => return self.start_conference(calls).await,
            Command::Split(keep) => return self.split_conference(keep).await,
            Command::Dnd(on) => {
                self.pbx.dnd = on.unwrap_or(!self.pbx.dnd);
                self.announce_dnd().await;
                ua::Command::SetDoNotDisturb(self.pbx.dnd.then_some(self.pbx.dnd_code))
            }
            Command::Forward(target) => {
                let target = match target.as_deref().map(|t| self.dial_target(t)).transpose() {
                    Ok(target) => target,
                    Err(message) => return self.error(message).await,
                };
                self.pbx.forward = target.clone();
                self.announce_forward().await;
                ua::Command::SetForward(target)
            }
            Command::Audio(call, change) => {
                return self.media_control(call, MediaControl::Audio(change)).await;
            }
        };
        self.ua.handle_command(ua_command, now);
    }

    async fn announce_dnd(&mut self) {
        let event = Event::Dnd {
            on: self.pbx.dnd,
            code: self.pbx.dnd_code,
        };
        let _ = self.events.send(event).await;
    }

    async fn announce_forward(&mut self) {
        let event = Event::Forward {
            target: self.pbx.forward.as_ref().map(Uri::to_string),
        };
        let _ = self.events.send(event).await;
    }

    /// DTMF by the account's `dtmf` mode: RFC 4733 when the call negotiated telephone-event
    /// (`auto`), else SIP INFO; or always INFO, or always in-band tones.
    async fn send_dtmf(&mut self, call: Option<u64>, digits: String) {
        let call = call.or_else(|| self.media.keys().min().copied());
        let Some(id) = call else {
            // No media yet (an early call without SDP): the UA picks the call for INFO.
            let now = std::time::Instant::now();
            self.ua
                .handle_command(ua::Command::InfoDtmf { call: None, digits }, now);
            return;
        };
        match self.pbx.dtmf {
            DtmfMode::Inband => {
                self.media_control(Some(id), MediaControl::DtmfInband(digits))
                    .await
            }
            DtmfMode::Auto if self.pbx.telephone_event.contains(&id) => {
                self.media_control(Some(id), MediaControl::Dtmf(digits))
                    .await
            }
            DtmfMode::Auto | DtmfMode::Info => {
                tracing::debug!(call = id, "DTMF by SIP INFO");
                let now = std::time::Instant::now();
                self.ua.handle_command(
                    ua::Command::InfoDtmf {
                        call: Some(id),
                        digits,
                    },
                    now,
                );
            }
        }
    }

    /// Joins `calls` (none: every call with media) into a local conference: the held ones
    /// are resumed, and their media tasks mix for each other (`media::mixer`).
    async fn start_conference(&mut self, calls: Vec<u64>) {
        let calls = if calls.is_empty() {
            let mut all: Vec<u64> = self.media.keys().copied().collect();
            all.sort_unstable();
            all
        } else {
            calls
        };
        if calls.len() < 2 || calls.len() > crate::media::mixer::MAX_LEGS {
            return self
                .error(format!(
                    "a conference joins 2 to {} calls with media ({} given)",
                    crate::media::mixer::MAX_LEGS,
                    calls.len()
                ))
                .await;
        }
        if let Some(missing) = calls.iter().find(|c| !self.media.contains_key(c)) {
            return self
                .error(format!(
                    "call {missing} has no media to join a conference with"
                ))
                .await;
        }
        self.unlink_conference();
        let now = std::time::Instant::now();
        for &call in &calls {
            if self.ua.held_by_us(call) {
                self.ua
                    .handle_command(ua::Command::Resume { call: Some(call) }, now);
            }
        }
        self.link_conference(calls).await;
    }

    /// Links the media of `calls` (validated) and tells the front ends.
    async fn link_conference(&mut self, calls: Vec<u64>) {
        for leg in crate::media::mixer::link(&calls) {
            if let Some(handle) = self.media.get(&leg.call()) {
                let _ = handle
                    .control
                    .send(MediaControl::Conference(Some(Box::new(leg))));
            }
        }
        tracing::info!(?calls, "conference");
        self.pbx.conference = calls;
        self.announce_conference().await;
    }

    /// Takes every leg out of the conference's mix (the calls stay as they are).
    fn unlink_conference(&mut self) {
        for call in std::mem::take(&mut self.pbx.conference) {
            if let Some(handle) = self.media.get(&call) {
                let _ = handle.control.send(MediaControl::Conference(None));
            }
        }
    }

    async fn announce_conference(&mut self) {
        let calls = self.pbx.conference.iter().map(u64::to_string).collect();
        let _ = self.events.send(Event::Conference { calls }).await;
    }

    /// Splits the conference: `keep` (else the host leg) stays up, the others are held.
    async fn split_conference(&mut self, keep: Option<u64>) {
        let legs = self.pbx.conference.clone();
        let Some(&first) = legs.first() else {
            return self.error("no conference to split".into()).await;
        };
        let keep = keep.unwrap_or(first);
        if !legs.contains(&keep) {
            return self
                .error(format!("call {keep} is not in the conference"))
                .await;
        }
        self.unlink_conference();
        let now = std::time::Instant::now();
        for call in legs.into_iter().filter(|c| *c != keep) {
            self.ua
                .handle_command(ua::Command::Hold { call: Some(call) }, now);
        }
        self.announce_conference().await;
    }

    /// `call` ended: it leaves the conference; with fewer than two legs left there is none.
    async fn leave_conference(&mut self, call: u64) {
        if !self.pbx.conference.contains(&call) {
            return;
        }
        let rest: Vec<u64> = self
            .pbx
            .conference
            .iter()
            .copied()
            .filter(|c| *c != call && self.media.contains_key(c))
            .collect();
        self.unlink_conference();
        if rest.len() >= 2 {
            self.link_conference(rest).await;
        } else {
            self.announce_conference().await;
        }
    }

    /// ICE restart (RFC 8445 §9) on a call: a new ICE session gathers on its RTP socket, and
    /// its candidates go out in a re-INVITE (`ice_gathered_again`).
    async fn restart_ice(&mut self, call: Option<u64>) {
        let id = match call {
            Some(id) => Some(id),
            None => self.ice_controls.keys().min().copied(),
        };
        let (Some(id), Some(tx)) = (id, self.ice_restarted.clone()) else {
            return self.error("no call with ICE to restart".into()).await;
        };
        let Some(control) = self.ice_controls.get(&id) else {
            return self.error(format!("call {id} has no ICE to restart")).await;
        };
        tracing::info!(call = id, "ICE restart asked");
        let gathered = control.restart();
        tokio::spawn(async move {
            let _ = tx.send((id, gathered.await.ok()));
        });
    }

    /// Our restart's candidates are gathered: the re-INVITE offers them.
    async fn ice_gathered_again(
        &mut self,
        call: u64,
        gathered: Option<(crate::sdp::LocalIce, SocketAddr)>,
    ) {
        let Some((ice, default)) = gathered.filter(|(ice, _)| !ice.candidates.is_empty()) else {
            // Nothing to offer: the call's agent goes back to the session it had.
            if let Some(control) = self.ice_controls.get(&call) {
                control.rollback();
            }
            return self
                .error(format!("call {call}: ICE restart found no candidate"))
                .await;
        };
        let command = ua::Command::RestartIce {
            call,
            ice,
            address: default.ip(),
            rtp_port: default.port(),
        };
        self.ua.handle_command(command, std::time::Instant::now());
    }

    async fn media_control(&mut self, call: Option<u64>, control: MediaControl) {
        let target = match call {
            Some(id) => self.media.get(&id),
            None => self.media.values().next(),
        };
        match target {
            Some(handle) => {
                let _ = handle.control.send(control);
            }
            None => self.error("no call with media".to_string()).await,
        }
    }

    /// A DNS answer for the UA. TLS servers found by name are verified against that name.
    fn resolved(&mut self, answer: Resolved) {
        self.diagnosis.note(answer.fact.clone());
        if let Ok((targets, _)) = &answer.result {
            for dest in targets.iter().filter(|d| d.transport == TransportKind::Tls) {
                self.transport.set_server_name(
                    dest.addr,
                    tls::server_name(Some(&answer.key.host), dest.addr.ip()),
                );
            }
        }
        self.ua
            .handle_resolved(&answer.key, answer.result, std::time::Instant::now());
    }

    async fn error(&mut self, message: String) {
        let _ = self.events.send(Event::Error { message }).await;
    }

    /// Binds an RTP/RTCP pair for a new call, then dials or answers with it. With a STUN
    /// server the SDP needs the RTP socket's public address first: that Binding (up to 1 s
    /// against a dead server) runs in a task of its own and the dial or answer goes on when it
    /// ends (`media_prepared`), so the SIP task keeps serving meanwhile (it used to wait).
    async fn prepare_media(&mut self, purpose: MediaUse) {
        let ip = self.bind_ip;
        let (rtp, rtcp) = match media_task::bind_rtp_pair(ip).await {
            Ok(pair) => pair,
            Err(e) => return self.error(format!("cannot open an RTP port: {e}")).await,
        };
        let port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
        // On a wildcard address the SDP gets the local address towards the peer, which the UA
        // picks when it knows where the call goes (`local` stays a wildcard until then).
        let mut prepared = PreparedMedia {
            purpose,
            rtp,
            rtcp,
            local: SocketAddr::new(ip, port),
            public: None,
            ice: None,
        };
        if let (Some(account), Some(ready)) = (self.ice.clone(), self.media_ready.clone()) {
            return self.prepare_ice(prepared, account, ready);
        }
        let (Some(server), Some(ready)) = (self.nat.stun_server(), self.media_ready.clone()) else {
            return self.media_prepared(prepared).await;
        };
        let id = self.nat.next_transaction();
        self.preparing += 1;
        tokio::spawn(async move {
            let outcome =
                super::nat::binding_on_socket(&prepared.rtp, server, id, MEDIA_SCHEDULE).await;
            prepared.public = Some(outcome.map_err(|e| format!("STUN for RTP ({server}): {e}")));
            // The engine is gone: nothing to dial any more.
            let _ = ready.send(prepared);
        });
    }

    /// ICE gathers on the RTP socket (STUN and TURN included) in a task of its own; the dial
    /// or answer goes on with its candidates (`media_prepared`). The offerer controls.
    fn prepare_ice(
        &mut self,
        prepared: PreparedMedia,
        account: super::nat::IceAccount,
        ready: mpsc::UnboundedSender<PreparedMedia>,
    ) {
        // The offerer controls; but answering an ICE-lite offerer, we are the full agent and
        // control (RFC 8445 §6.1.1): the role is fixed when the agent is built, so look now.
        let offer = match prepared.purpose {
            MediaUse::Answer(call) => self.ua.incoming_offer(call),
            _ => None,
        };
        let controlling = match prepared.purpose {
            MediaUse::Answer(_) => offer.is_some_and(crate::sdp::ice::offers_ice_lite),
            _ => true,
        };
        // An RTCP component (RFC 5761 §5.1.3) for an offer (the answerer may not multiplex),
        // or for an answer to an offer without rtcp-mux; not for one with it.
        let rtcp_component = !offer.is_some_and(crate::sdp::ice::offers_rtcp_mux);
        let stun = self.nat.stun_server();
        let stun_id = self.nat.next_transaction();
        self.preparing += 1;
        tokio::spawn(async move {
            let PreparedMedia {
                purpose,
                rtp,
                rtcp,
                local,
                ..
            } = prepared;
            use super::ice_prepare::Outcome;
            let (for_ice, mut rtcp) = if rtcp_component {
                (Some(rtcp), None)
            } else {
                (None, Some(rtcp))
            };
            let (rtp, ice) = match super::ice_prepare::prepare(
                rtp,
                for_ice,
                &account,
                stun,
                controlling,
            )
            .await
            {
                Outcome::Ice(ice) => {
                    // The ICE task holds the RTP socket (and the RTCP one for an RTCP
                    // component); these only fill the slots.
                    match tokio::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await {
                        Ok(placeholder) => (placeholder, Some(Ok(ice))),
                        Err(e) => {
                            tracing::warn!("no socket: {e}");
                            return;
                        }
                    }
                }
                Outcome::Plain {
                    rtp,
                    rtcp: back,
                    warning,
                } => {
                    if back.is_some() {
                        rtcp = back;
                    }
                    (rtp, warning.map(Err))
                }
                Outcome::Lost(message) => {
                    // A fresh pair, without ICE: the call still goes.
                    match media_task::bind_rtp_pair(local.ip()).await {
                        Ok((rtp, rtcp)) => {
                            let port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
                            let _ = ready.send(PreparedMedia {
                                purpose,
                                rtp,
                                rtcp,
                                local: SocketAddr::new(local.ip(), port),
                                public: None,
                                ice: Some(Err(message)),
                            });
                        }
                        Err(e) => tracing::warn!("{message}; no RTP port either: {e}"),
                    }
                    return;
                }
            };
            let rtcp = match rtcp {
                Some(rtcp) => rtcp,
                None => match tokio::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await {
                    Ok(placeholder) => placeholder,
                    Err(e) => {
                        tracing::warn!("no socket: {e}");
                        return;
                    }
                },
            };
            // No ICE after all (loopback, no route): the RTP socket's public address from
            // STUN, as without ICE.
            let public = match (&ice, stun) {
                (Some(Ok(_)), _) | (_, None) => None,
                (_, Some(server)) => Some(
                    super::nat::binding_on_socket(&rtp, server, stun_id, MEDIA_SCHEDULE)
                        .await
                        .map_err(|e| format!("STUN for RTP ({server}): {e}")),
                ),
            };
            let _ = ready.send(PreparedMedia {
                purpose,
                rtp,
                rtcp,
                local,
                public,
                ice,
            });
        });
    }

    /// Runs the commands deferred while RTP STUN Bindings ran, in order, until one starts
    /// another Binding (the rest wait for that one).
    async fn run_deferred(&mut self) {
        while self.preparing == 0
            && let Some(command) = self.deferred.pop_front()
        {
            self.command(command).await;
        }
    }

    /// The RTP sockets are ready (with the STUN outcome, if any): describe them for the SDP
    /// (the public address, or the local one with a warning) and dial or answer.
    async fn media_prepared(&mut self, prepared: PreparedMedia) {
        let local = prepared.local;
        let (address, port) = match prepared.public {
            None => (local.ip(), local.port()),
            Some(Ok(public)) => {
                tracing::info!(%local, %public, "STUN: public address of the RTP socket");
                (public.ip(), public.port())
            }
            Some(Err(e)) => {
                let message = format!("{e}; the SDP carries the local address {local}");
                tracing::warn!("{message}");
                let _ = self.events.send(Event::Warning { message }).await;
                (local.ip(), local.port())
            }
        };
        // With ICE the SDP's address is the default candidate, and the RTP socket is the ICE
        // task's (`prepared.rtp` only keeps the map's shape).
        let (address, port, ice) = match prepared.ice {
            Some(Ok(ice)) => {
                let (address, key) = if ice.default_is_host {
                    (address, port)
                } else {
                    (ice.default.ip(), ice.default.port())
                };
                self.ice_handles.insert(key, ice.handle);
                (address, key, Some(ice.local))
            }
            Some(Err(message)) => {
                tracing::warn!("{message}");
                let _ = self.events.send(Event::Warning { message }).await;
                (address, port, None)
            }
            None => (address, port, None),
        };
        self.sockets.insert(port, (prepared.rtp, prepared.rtcp));
        let media = LocalMedia {
            address,
            rtp_port: port,
            codecs: self.ua.config().codecs.clone(),
            direction: MediaDirection::SendRecv,
            session_id: 0,
            session_version: 0,
            // Fresh SDES keys for every call (never logged: see sdp::KeySalt).
            srtp: crate::sdp::LocalSrtp::new(self.ua.config().srtp),
            ice,
        };
        let now = std::time::Instant::now();
        match prepared.purpose {
            MediaUse::Dial(target) => self
                .ua
                .handle_command(ua::Command::Dial { target, media }, now),
            MediaUse::Answer(call) => self
                .ua
                .handle_command(ua::Command::Answer { call, media }, now),
            MediaUse::Transfer { target, referrer } => {
                self.ua
                    .handle_command(ua::Command::Dial { target, media }, now);
                if let Some(new_call) = self.ua.last_call_id() {
                    self.policy.handle_transfer_placed(new_call, referrer);
                }
            }
        }
    }

    async fn nat_timeout(&mut self, now: std::time::Instant) {
        let mut out = Vec::new();
        self.nat.handle_timeout(now, &mut out);
        self.nat_outputs(out).await;
    }

    /// Sends STUN requests and keep-alives; applies what a Binding learned.
    async fn nat_outputs(&mut self, out: Vec<NatOutput>) {
        for output in out {
            let bound = match output {
                NatOutput::Transmit(addr, bytes) => {
                    let dest = Destination {
                        addr,
                        transport: TransportKind::Udp,
                    };
                    if let Err(error) = self.transport.send(dest, bytes).await {
                        tracing::debug!(%error, "STUN/keep-alive send failed");
                    }
                    false
                }
                NatOutput::Learned(public) => {
                    let changed = self.ua.set_public_address(public);
                    tracing::info!(%public, changed, "STUN: public address of the SIP socket");
                    // A new mapping while registered: bind the new Contact now.
                    if changed
                        && !self.nat.register_when_bound
                        && self.ua.registration_state() == Some(RegistrationState::Registered)
                    {
                        self.ua
                            .handle_command(ua::Command::Register, std::time::Instant::now());
                    }
                    true
                }
                NatOutput::Failed(message) => {
                    tracing::warn!("{message}");
                    let _ = self.events.send(Event::Warning { message }).await;
                    true
                }
            };
            if bound && self.nat.register_when_bound {
                self.nat.register_when_bound = false;
                self.ua
                    .handle_command(ua::Command::Register, std::time::Instant::now());
            }
        }
    }

    /// `sip:…`, `sips:…`, `tel:…` as they are; `user@host` becomes `sip:user@host`; a bare
    /// number or name goes to the account's domain.
    fn dial_target(&self, target: &str) -> Result<Uri, String> {
        let target = target.trim();
        let text = if target.contains(':')
            && !target.contains('@')
            && !target.starts_with("sip")
            && !target.starts_with("tel")
        {
            format!("sip:{target}")
        } else if target.starts_with("sip:")
            || target.starts_with("sips:")
            || target.starts_with("tel:")
        {
            target.to_string()
        } else if target.contains('@') {
            format!("sip:{target}")
        } else {
            // `1234` or `bob`: a user at the account's own domain (the AOR's host, with its
            // port); it goes through the outbound proxy when the account has one.
            let aor = &self.ua.config().account.aor;
            match aor.port {
                Some(port) => format!("sip:{target}@{}:{port}", aor.host),
                None => format!("sip:{target}@{}", aor.host),
            }
        };
        text.parse::<Uri>()
            .map_err(|e| format!("cannot dial `{target}`: {e}"))
    }

    /// Sends what the UA queued and forwards its events.
    async fn flush(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(out) = self.ua.poll_transmit() {
                progressed = true;
                // The peer really sent to: a TLS alias goes over the peer's own connection.
                let peer = self.transport.connection_for(out.dest).addr;
                trace(
                    &self.events,
                    &self.dropped,
                    self.capture(),
                    Direction::Out,
                    peer,
                    &out.bytes,
                );
                if let Err(error) = self.transport.send(out.dest, out.bytes).await {
                    tracing::warn!(%error, "send failed");
                    let _ = self
                        .events
                        .send(Event::Error {
                            message: error.to_string(),
                        })
                        .await;
                    self.ua
                        .handle_transport_error(out.dest, std::time::Instant::now());
                }
            }
            while let Some(key) = self.ua.poll_resolve() {
                progressed = true;
                self.dns
                    .resolve(key, self.ua.config().account.transport, self.bind_ip);
            }
            while let Some(event) = self.ua.poll_event() {
                progressed = true;
                self.ua_event(event).await;
            }
            if !progressed {
                // Keep-alives follow the registration's flow (DNS failover may move it).
                let flow = self
                    .ua
                    .registration_flow()
                    .filter(|d| d.transport == TransportKind::Udp)
                    .map(|d| d.addr);
                self.nat.set_keepalive_target(flow);
                return;
            }
        }
    }

    async fn ua_event(&mut self, event: UaEvent) {
        let forward = match event {
            UaEvent::Registration {
                account,
                state,
                code,
                reason,
                expires,
            } => {
                // Keep-alives while registered; a new STUN Binding before each refresh.
                let udp = self.ua.config().account.transport == TransportKind::Udp;
                if state == RegistrationState::Registered && self.ua.behind_nat() && udp {
                    // The registrar sees us behind a NAT: keep its UDP mapping open, or
                    // calls stop reaching us once it expires (often after 30 s).
                    self.nat
                        .keepalive_behind_nat(self.keepalive_off, std::time::Instant::now());
                }
                self.nat.registration(
                    state == RegistrationState::Registered,
                    expires.filter(|_| udp),
                    std::time::Instant::now(),
                );
                Event::Registration {
                    account,
                    state,
                    code,
                    reason,
                    expires,
                }
            }
            UaEvent::Error { message } => Event::Error { message },
            UaEvent::LocalAddressChanged { old, new } => {
                // A new network: the old NAT mapping is void; learn the new one.
                let now = std::time::Instant::now();
                if self.nat.start_binding(now) {
                    self.nat_timeout(now).await;
                }
                Event::Warning {
                    message: format!(
                        "the network changed (local address {old} -> {new}); registering again"
                    ),
                }
            }
            UaEvent::Warning { message } => Event::Warning { message },
            UaEvent::ShutdownComplete => {
                self.done = true;
                return;
            }
            UaEvent::Call {
                call,
                state,
                remote,
                code,
                reason,
                sip_call_id,
            } => {
                // Answers (echo service, a call that replaces one of ours), tones, call
                // waiting and transfer NOTIFYs: the policy decides, `run_policy` does it.
                self.policy.handle_call(call, state, code);
                self.run_policy().await;
                if state == CallState::Terminated {
                    self.leave_conference(call).await;
                    self.stop_media(call).await;
                    self.pbx.telephone_event.remove(&call);
                    let live = self.ua.media_ports();
                    self.sockets.retain(|port, _| live.contains(port));
                    self.ice_handles.retain(|port, _| live.contains(port));
                    self.ice_controls.remove(&call);
                }
                Event::Call {
                    call: call.to_string(),
                    state,
                    remote,
                    code,
                    reason,
                    sip_call_id,
                    account: Some(self.ua.config().account.name.clone()),
                }
            }
            UaEvent::MediaStart {
                call,
                params,
                local,
            } => {
                if params.telephone_event_pt.is_some() {
                    self.pbx.telephone_event.insert(call);
                }
                match self.sockets.remove(&local.rtp_port) {
                    Some((rtp, _rtcp)) if self.echo_mode => {
                        let handle = media_task::spawn_echo(rtp, params.srtp.clone());
                        self.media.insert(call, handle);
                        self.policy.handle_media_started(call);
                        self.run_policy().await;
                    }
                    Some((mut rtp, mut rtcp)) => {
                        // The tone player releases the output before the call opens it; a
                        // WAV output keeps the tone recorded for this call.
                        self.policy.handle_media_starting(call);
                        self.run_policy().await;
                        let mut io = self.media_io.clone();
                        io.append_output = self.tones.recorded.take() == Some(call);
                        // ICE on both sides: media over its pair. Our ICE but not the
                        // peer's: its `c=` address over our RTP socket, as without ICE.
                        let mut link = None;
                        if let Some(handle) = self.ice_handles.remove(&local.rtp_port) {
                            match params.ice.clone() {
                                Some(remote) => {
                                    self.ice_controls.insert(call, handle.control());
                                    let fallback = super::ice_task::PeerMedia::of(&params);
                                    let auto_restart =
                                        self.ice_restarted.clone().map(|tx| (call, tx));
                                    link = handle.start(remote, fallback, auto_restart);
                                }
                                None => {
                                    tracing::info!(
                                        call,
                                        "the peer does no ICE: media to its c= address"
                                    );
                                    if let Some((socket, rtcp_socket)) = handle.release().await {
                                        rtp = socket;
                                        if let Some(socket) = rtcp_socket {
                                            rtcp = socket;
                                        }
                                    }
                                }
                            }
                        }
                        let handle = media_task::spawn(
                            call,
                            rtp,
                            rtcp,
                            params,
                            io,
                            self.events.clone(),
                            link,
                        );
                        self.media.insert(call, handle);
                        self.policy.handle_media_started(call);
                        self.run_policy().await;
                    }
                    None => {
                        self.error(format!(
                            "call {call}: no RTP socket for port {}",
                            local.rtp_port
                        ))
                        .await
                    }
                }
                return;
            }
            UaEvent::IceRestartRefused { call } => {
                if let Some(control) = self.ice_controls.get(&call) {
                    control.rollback();
                }
                return;
            }
            UaEvent::MediaUpdate { call, params } => {
                if params.telephone_event_pt.is_some() {
                    self.pbx.telephone_event.insert(call);
                } else {
                    self.pbx.telephone_event.remove(&call);
                }
                // New ICE credentials on either side: an ICE restart (ours, or the peer's).
                if let (Some(ice), Some(control)) = (&params.ice, self.ice_controls.get(&call)) {
                    control.update(ice.clone(), super::ice_task::PeerMedia::of(&params));
                }
                if let Some(handle) = self.media.get(&call) {
                    let _ = handle.control.send(MediaControl::Update(params));
                }
                return;
            }
            UaEvent::MediaStop { call } => {
                self.ice_controls.remove(&call);
                self.leave_conference(call).await;
                self.stop_media(call).await;
                self.policy.handle_media_stopped(call);
                self.run_policy().await;
                return;
            }
            UaEvent::Dtmf { call, digit } => Event::Dtmf {
                call: call.to_string(),
                digit: digit.to_string(),
            },
            UaEvent::TransferAsked {
                call,
                target,
                referred_by,
            } => Event::TransferRequest {
                call: call.to_string(),
                target: target.to_string(),
                referred_by,
            },
            UaEvent::TransferStatus {
                call,
                code,
                reason,
                done,
            } => Event::Transfer {
                call: call.to_string(),
                code,
                reason,
                done,
            },
            UaEvent::Replacing { call, replaced } => {
                self.policy.handle_replacing(call);
                Event::Replaces {
                    call: call.to_string(),
                    replaces: replaced.to_string(),
                }
            }
            UaEvent::Missed {
                remote,
                code,
                reason,
            } => Event::Missed {
                remote,
                code,
                reason,
            },
            UaEvent::MessageReceived {
                from,
                display,
                text,
            } => Event::Message(crate::event::MessageEvent {
                account: self.ua.config().account.name.clone(),
                dir: Direction::In,
                peer: from,
                display,
                text: Some(text),
                ..Default::default()
            }),
            UaEvent::MessageQueued { id, to, text } => Event::Message(crate::event::MessageEvent {
                account: self.ua.config().account.name.clone(),
                dir: Direction::Out,
                id: Some(id.to_string()),
                peer: to,
                text: Some(text),
                status: Some("sending".into()),
                ..Default::default()
            }),
            UaEvent::MessageStatus {
                id,
                to,
                code,
                reason,
            } => Event::Message(crate::event::MessageEvent {
                account: self.ua.config().account.name.clone(),
                dir: Direction::Out,
                id: Some(id.to_string()),
                peer: to,
                status: Some(
                    if (200..300).contains(&code) {
                        "delivered"
                    } else {
                        "failed"
                    }
                    .into(),
                ),
                code: Some(code),
                reason: Some(reason),
                ..Default::default()
            }),
            UaEvent::Presence {
                contact,
                availability,
                note,
            } => Event::Presence {
                account: self.ua.config().account.name.clone(),
                contact,
                state: availability.as_str().to_string(),
                note,
            },
            UaEvent::Voicemail { waiting, new, old } => Event::Voicemail {
                account: self.ua.config().account.name.clone(),
                waiting,
                new,
                old,
            },
            UaEvent::TransferRequested { call, target } => {
                // Blind transfer asked by the peer: call the target, report progress by NOTIFY.
                self.prepare_media(MediaUse::Transfer {
                    target,
                    referrer: call,
                })
                .await;
                return;
            }
        };
        let _ = self.events.send(forward).await;
    }

    /// Carries out, in order, what the call policy decided.
    async fn run_policy(&mut self) {
        while let Some(action) = self.policy.poll_action() {
            match action {
                PolicyAction::Answer { call } => self.command(Command::Answer(Some(call))).await,
                PolicyAction::StopTone => self.stop_tone().await,
                PolicyAction::StartTone { call, kind } => {
                    match tone_task::spawn(
                        kind,
                        &self.tones.settings,
                        &self.media_io.output,
                        self.tones.device_warned.clone(),
                        self.events.clone(),
                    ) {
                        Some(handle) => {
                            self.tones.recorded = None;
                            self.tones.playing = Some((call, handle));
                        }
                        None => self.policy.tone_failed(),
                    }
                }
                PolicyAction::CallWaiting { call, on } => {
                    if let Some(handle) = self.media.get(&call) {
                        let region = on.then_some(self.tones.settings.region);
                        let _ = handle.control.send(MediaControl::CallWaiting(region));
                    }
                }
                PolicyAction::TransferProgress {
                    referrer,
                    code,
                    last,
                } => self.ua.handle_command(
                    ua::Command::TransferProgress {
                        call: referrer,
                        code,
                        last,
                    },
                    std::time::Instant::now(),
                ),
            }
        }
    }

    /// Stops the tone that plays and waits until the output is free. A tone recorded into
    /// the WAV output is remembered in `tones.recorded`.
    async fn stop_tone(&mut self) {
        if let Some((call, handle)) = self.tones.playing.take()
            && handle.stop().await
        {
            self.tones.recorded = Some(call);
        }
    }

    async fn stop_media(&mut self, call: u64) {
        if let Some(handle) = self.media.remove(&call) {
            let _ = handle.control.send(MediaControl::Stop);
            // The task sends its last `media` event and closes its files; wait for that so the
            // WAV is complete before the call's end is reported.
            let _ = tokio::time::timeout(Duration::from_secs(2), handle.task).await;
        }
    }
}

/// After a flood (thousands of transactions, now nearly all ended), hands the freed heap back
/// to the system: glibc keeps freed small blocks in its arenas, so RSS stayed at the flood's
/// peak. Returns the new peak to track.
fn release_after_flood(peak: usize, alive: usize) -> usize {
    const FLOOD: usize = 1000;
    let peak = peak.max(alive);
    if peak < FLOOD || alive > peak / 16 {
        return peak;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas; no pointer of ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
    tracing::debug!(peak, alive, "memory handed back after a flood");
    alive
}

/// Trace events never block the UA: when the front end lags they are counted and dropped.
/// With `--pcap-out` the message also goes to the pcap writer (`capture`: the tap and our
/// SIP address), timestamped here, as it goes out or comes in.
fn trace(
    events: &mpsc::Sender<Event>,
    dropped: &AtomicU64,
    capture: Option<(&PacketTap, SocketAddr)>,
    dir: Direction,
    peer: SocketAddr,
    bytes: &[u8],
) {
    // The log file keeps whole messages at debug level (digest responses are not secrets; no
    // password is ever in a message), but not SRTP keys: the SDES `inline:` keys are masked,
    // here for the log and in the trace event for everything downstream (TUI log, ladder,
    // text and pcap exports), so no front end can show them by mistake.
    let masked = crate::sdp::redact_inline_key_bytes(bytes);
    tracing::debug!(target: "sipterm::sip_trace", ?dir, %peer, "\n{}", String::from_utf8_lossy(&masked));
    if let Some((tap, local)) = capture {
        tap.offer(dir, local, peer, &masked);
    }
    let event = Event::Sip {
        dir,
        peer: peer.to_string(),
        summary: first_line(&masked),
        raw: Arc::from(masked.as_ref()),
    };
    if events.try_send(event).is_err() {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The kernel's choice of source address towards a destination: a connected UDP socket picks
/// it from the routing table (connecting sends nothing).
struct KernelRoutes;

impl LocalRoutes for KernelRoutes {
    fn local_ip_toward(&self, dest: IpAddr) -> Option<IpAddr> {
        let dest = dest.to_canonical();
        let any = if dest.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        };
        let socket = std::net::UdpSocket::bind(SocketAddr::new(any, 0)).ok()?;
        // Port 9 (discard): any port does; nothing is sent.
        socket.connect(SocketAddr::new(dest, 9)).ok()?;
        socket.local_addr().ok().map(|a| a.ip())
    }
}
