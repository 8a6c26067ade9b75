//! The SIP task: owns the sans-IO `UserAgent` and the sockets, moves bytes between them, arms
//! one timer, forwards events. The only clock reads of the SIP path happen here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use std::collections::HashMap;

use super::command::Command;
use super::media_task::{self, MediaControl, MediaHandle, MediaIo};
use super::transport::{Inbound, Transport, TransportError};
use crate::event::{Direction, Event, first_line};
use crate::sdp::{Codec, Direction as MediaDirection, LocalMedia};
use crate::sip::transaction::{Destination, TimerConfig, TransportKind};
use crate::sip::ua::{
    self, AccountParams, CallState, UaConfig, UaEvent, UserAgent, uri_destination,
};
use crate::sip::uri::{Scheme, Uri};

/// How long a DNS lookup of the proxy or registrar may take at start-up.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Where call audio comes from and goes to.
    pub media: MediaIo,
}

pub struct SipHandle {
    pub commands: mpsc::Sender<Command>,
    /// The address really bound (port 0 resolved).
    pub listen: SocketAddr,
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
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
}

/// Binds the sockets, resolves the next hop, and spawns the SIP task.
pub async fn start(setup: SipSetup, events: mpsc::Sender<Event>) -> Result<SipHandle, StartError> {
    if setup.account.transport == TransportKind::Tls {
        return Err(TransportError::TlsUnsupported.into());
    }
    let (transport, inbound) = Transport::bind(setup.listen).await?;
    let listen = transport.local_addr();
    let hop_uri = setup
        .account
        .outbound_proxy
        .clone()
        .or_else(|| setup.account.registrar.clone());
    let next_hop = match hop_uri {
        Some(uri) => Some(resolve(&uri, setup.account.transport).await?),
        None => None,
    };
    let local = SocketAddr::new(local_ip(listen, next_hop.map(|d| d.addr)), listen.port());
    let config = UaConfig {
        account: setup.account,
        local,
        next_hop,
        user_agent: setup.user_agent,
        timers: setup.timers,
        seed: seed(),
        codecs: setup.codecs,
        busy_when_in_call: setup.busy_when_in_call,
        srtp: setup.srtp,
    };
    let (commands, command_rx) = mpsc::channel(64);
    let dropped_traces = Arc::new(AtomicU64::new(0));
    let engine = Engine {
        ua: UserAgent::new(config),
        transport,
        events,
        dropped: dropped_traces.clone(),
        media_io: setup.media,
        sockets: HashMap::new(),
        media: HashMap::new(),
        transfers: HashMap::new(),
        done: false,
        echo_mode: false,
        echo_service: start_echo_service(local.ip()).await,
    };
    let task = tokio::spawn(engine.run(inbound, command_rx, setup.register_at_start));
    Ok(SipHandle {
        commands,
        listen,
        task,
        dropped_traces,
    })
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
        next_hop: None,
        user_agent: "sipterm echo".into(),
        timers: TimerConfig::default(),
        seed: seed() ^ 0xEC40,
        codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
        busy_when_in_call: false,
        // Takes plain and SRTP calls; its media task decrypts and re-encrypts what it echoes.
        srtp: crate::sdp::SrtpPolicy::Optional,
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
        },
        sockets: HashMap::new(),
        media: HashMap::new(),
        transfers: HashMap::new(),
        done: false,
        echo_mode: true,
        echo_service: None,
    };
    // The command sender is dropped: the echo engine lives as long as the runtime.
    tokio::spawn(engine.run(inbound, command_rx, false));
    Some(listen)
}

/// The SIP task's state: the UA, the sockets, and the media of each call.
struct Engine {
    ua: UserAgent,
    transport: Transport,
    events: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
    media_io: MediaIo,
    /// RTP/RTCP sockets bound for calls whose media has not started yet, by RTP port.
    sockets: HashMap<u16, (tokio::net::UdpSocket, tokio::net::UdpSocket)>,
    media: HashMap<u64, MediaHandle>,
    /// Calls we placed because a peer REFERred us: new call -> referring call.
    transfers: HashMap<u64, u64>,
    done: bool,
    /// The built-in echo service answers every call and reflects its RTP (for `dial echo`).
    echo_mode: bool,
    /// Where `dial echo` goes: the echo service's SIP address.
    echo_service: Option<SocketAddr>,
}

impl Engine {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
        register_at_start: bool,
    ) {
        if register_at_start && self.ua.config().account.registrar.is_some() {
            self.ua
                .handle_command(ua::Command::Register, std::time::Instant::now());
        }
        let mut commands_open = true;
        loop {
            self.flush().await;
            if self.done {
                for (_, media) in self.media.drain() {
                    let _ = media.control.send(MediaControl::Stop);
                    let _ = media.task.await;
                }
                return;
            }
            let deadline = self.ua.poll_timeout();
            let sleep_for =
                deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            tokio::select! {
                msg = inbound.recv() => {
                    let Some(msg) = msg else { return };
                    let now = std::time::Instant::now();
                    match msg {
                        Inbound::Message { source, bytes } => {
                            trace(&self.events, &self.dropped, Direction::In, source.addr, &bytes);
                            self.ua.handle_datagram(source, &bytes, now);
                        }
                        Inbound::Connected { peer, writer } => self.transport.connected(peer, writer),
                        Inbound::Closed { peer, error } => {
                            self.transport.closed(peer.addr);
                            if let Some(error) = error {
                                tracing::info!(peer = %peer.addr, %error, "connection closed");
                            }
                            self.ua.handle_transport_error(peer, now);
                        }
                    }
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
                    self.ua.handle_timeout(std::time::Instant::now());
                }
            }
        }
    }

    async fn command(&mut self, command: Command) {
        let now = std::time::Instant::now();
        let ua_command = match command {
            Command::Register => ua::Command::Register,
            Command::Unregister => ua::Command::Unregister,
            Command::Quit => ua::Command::Shutdown,
            Command::Dial(target) if target.eq_ignore_ascii_case("echo") => {
                match (self.echo_service, self.local_media().await) {
                    (Some(echo), Some(media)) => match format!("sip:echo@{echo}").parse::<Uri>() {
                        Ok(target) => ua::Command::Dial { target, media },
                        Err(e) => return self.error(format!("echo service: {e}")).await,
                    },
                    (None, _) => return self.error("the echo service is not running".into()).await,
                    (_, None) => return,
                }
            }
            Command::Dial(target) => match self.dial_target(&target) {
                Ok(uri) => match self.local_media().await {
                    Some(media) => ua::Command::Dial { target: uri, media },
                    None => return,
                },
                Err(message) => return self.error(message).await,
            },
            Command::Answer(call) => match self.local_media().await {
                Some(media) => ua::Command::Answer { call, media },
                None => return,
            },
            Command::Reject(call) => ua::Command::Reject { call, code: 486 },
            Command::Hangup(call) => ua::Command::Hangup { call },
            Command::Hold(call) => ua::Command::Hold { call },
            Command::Resume(call) => ua::Command::Resume { call },
            Command::Transfer(call, target) => match self.dial_target(&target) {
                Ok(target) => ua::Command::Transfer { call, target },
                Err(message) => return self.error(message).await,
            },
            Command::Mute(call, on) => {
                return self.media_control(call, MediaControl::Mute(on)).await;
            }
            Command::Dtmf(call, digits) => {
                return self.media_control(call, MediaControl::Dtmf(digits)).await;
            }
        };
        self.ua.handle_command(ua_command, now);
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

    async fn error(&mut self, message: String) {
        let _ = self.events.send(Event::Error { message }).await;
    }

    /// Binds an RTP/RTCP pair for a new call and describes it for the SDP.
    async fn local_media(&mut self) -> Option<LocalMedia> {
        let ip = self.ua.config().local.ip();
        match media_task::bind_rtp_pair(ip).await {
            Ok((rtp, rtcp)) => {
                let port = rtp.local_addr().map(|a| a.port()).unwrap_or(0);
                self.sockets.insert(port, (rtp, rtcp));
                Some(LocalMedia {
                    address: ip,
                    rtp_port: port,
                    codecs: self.ua.config().codecs.clone(),
                    direction: MediaDirection::SendRecv,
                    session_id: 0,
                    session_version: 0,
                    // Fresh SDES keys for every call (never logged: see sdp::KeySalt).
                    srtp: crate::sdp::LocalSrtp::new(self.ua.config().srtp),
                })
            }
            Err(e) => {
                self.error(format!("cannot open an RTP port: {e}")).await;
                None
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
            let account = &self.ua.config().account;
            let domain = account
                .registrar
                .as_ref()
                .map(|r| r.host.clone())
                .unwrap_or_else(|| account.aor.host.clone());
            format!("sip:{target}@{domain}")
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
                trace(
                    &self.events,
                    &self.dropped,
                    Direction::Out,
                    out.dest.addr,
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
            while let Some(event) = self.ua.poll_event() {
                progressed = true;
                self.ua_event(event).await;
            }
            if !progressed {
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
            } => Event::Registration {
                account,
                state: state.as_str().to_string(),
                code,
                reason,
                expires,
            },
            UaEvent::Error { message } => Event::Error { message },
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
            } => {
                if self.echo_mode && state == CallState::Incoming {
                    self.command(Command::Answer(Some(call))).await;
                }
                self.transfer_progress(call, state, code);
                if state == CallState::Terminated {
                    self.stop_media(call).await;
                    let live = self.ua.media_ports();
                    self.sockets.retain(|port, _| live.contains(port));
                }
                Event::Call {
                    call: call.to_string(),
                    state: state.as_str().to_string(),
                    remote,
                    code,
                    reason,
                }
            }
            UaEvent::MediaStart {
                call,
                params,
                local,
            } => {
                match self.sockets.remove(&local.rtp_port) {
                    Some((rtp, _rtcp)) if self.echo_mode => {
                        let handle = media_task::spawn_echo(rtp, params.srtp.clone());
                        self.media.insert(call, handle);
                    }
                    Some((rtp, rtcp)) => {
                        let handle = media_task::spawn(
                            call,
                            rtp,
                            rtcp,
                            params,
                            self.media_io.clone(),
                            self.events.clone(),
                        );
                        self.media.insert(call, handle);
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
            UaEvent::MediaUpdate { call, params } => {
                if let Some(handle) = self.media.get(&call) {
                    let _ = handle.control.send(MediaControl::Update(params));
                }
                return;
            }
            UaEvent::MediaStop { call } => {
                self.stop_media(call).await;
                return;
            }
            UaEvent::Dtmf { call, digit } => Event::Dtmf {
                call: call.to_string(),
                digit: digit.to_string(),
            },
            UaEvent::TransferRequested { call, target } => {
                // Blind transfer asked by the peer: call the target, report progress by NOTIFY.
                if let Some(media) = self.local_media().await {
                    self.ua.handle_command(
                        ua::Command::Dial { target, media },
                        std::time::Instant::now(),
                    );
                    if let Some(new_call) = self.ua.last_call_id() {
                        self.transfers.insert(new_call, call);
                    }
                }
                return;
            }
        };
        let _ = self.events.send(forward).await;
    }

    fn transfer_progress(&mut self, call: u64, state: CallState, code: Option<u16>) {
        let Some(&referrer) = self.transfers.get(&call) else {
            return;
        };
        let now = std::time::Instant::now();
        let (code, last) = match state {
            CallState::Confirmed => (200, true),
            CallState::Terminated => (code.unwrap_or(487), true),
            CallState::Ringing | CallState::Early => (code.unwrap_or(180), false),
            _ => return,
        };
        self.ua.handle_command(
            ua::Command::TransferProgress {
                call: referrer,
                code,
                last,
            },
            now,
        );
        if last {
            self.transfers.remove(&call);
            if code == 200 {
                self.ua.handle_command(
                    ua::Command::Hangup {
                        call: Some(referrer),
                    },
                    now,
                );
            }
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

/// Trace events never block the UA: when the front end lags they are counted and dropped.
fn trace(
    events: &mpsc::Sender<Event>,
    dropped: &AtomicU64,
    dir: Direction,
    peer: SocketAddr,
    bytes: &[u8],
) {
    // The log file keeps whole messages at debug level (digest responses are not secrets; no
    // password is ever in a message), but not SRTP keys: the SDES `inline:` keys are masked
    // (the trace event below keeps the message as sent).
    tracing::debug!(target: "sipterm::sip_trace", ?dir, %peer, "\n{}", crate::sdp::redact_inline_keys(&String::from_utf8_lossy(bytes)));
    let event = Event::Sip {
        dir,
        peer: peer.to_string(),
        summary: first_line(bytes),
        raw: Arc::from(bytes),
    };
    if events.try_send(event).is_err() {
        dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// Resolves a proxy or registrar URI to an address: IP literals directly, names through the
/// system resolver (A/AAAA; no SRV yet).
async fn resolve(uri: &Uri, transport: TransportKind) -> Result<Destination, StartError> {
    if let Some(dest) = uri_destination(uri, transport) {
        return Ok(dest);
    }
    let host = uri.host_unbracketed().to_string();
    let dest_transport = match uri.transport().as_deref() {
        Some("tcp") => TransportKind::Tcp,
        Some("udp") => TransportKind::Udp,
        _ if uri.scheme == Scheme::Sips => TransportKind::Tls,
        _ => transport,
    };
    let port = uri.port.unwrap_or(if dest_transport == TransportKind::Tls {
        5061
    } else {
        5060
    });
    let lookup = tokio::time::timeout(
        RESOLVE_TIMEOUT,
        tokio::net::lookup_host((host.clone(), port)),
    )
    .await;
    let addr = match lookup {
        Ok(Ok(mut addrs)) => addrs.next(),
        Ok(Err(e)) => {
            return Err(StartError::Resolve {
                host,
                reason: e.to_string(),
            });
        }
        Err(_) => {
            return Err(StartError::Resolve {
                host,
                reason: "timed out".into(),
            });
        }
    };
    let addr = addr.ok_or_else(|| StartError::Resolve {
        host: host.clone(),
        reason: "no address".into(),
    })?;
    Ok(Destination {
        addr,
        transport: dest_transport,
    })
}

/// The IP to put in Via and Contact: the bound one, or when bound to a wildcard the one the
/// kernel would route towards the next hop (a connected UDP socket sends nothing).
fn local_ip(listen: SocketAddr, towards: Option<SocketAddr>) -> IpAddr {
    if !listen.ip().is_unspecified() {
        return listen.ip();
    }
    let fallback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Some(target) = towards else {
        return fallback;
    };
    let bind: SocketAddr = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap_or(listen);
    std::net::UdpSocket::bind(bind)
        .and_then(|s| {
            s.connect(target)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(fallback)
}

/// Seeds the core's id generator from the clock and pid: unique enough for tags and branches.
fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}
