//! The I/O of a call's ICE agent (`ice::IceAgent`): it owns the RTP socket (and a UDP socket
//! or TCP connections to the TURN server) from before the offer until the call ends, moves
//! datagrams between them and the agent, arms its timer, and hands media to the media task
//! through channels. The protocol is all in `ice`.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};

use crate::ice::agent::{GATHER_LIMIT, IceSetup, TurnSetup};
use crate::ice::tcp_frame::TcpFramer;
use crate::ice::{IceAgent, IceEvent, Inbound, PairInfo, TurnTransport};
use crate::sdp::{IceCredentials, LocalIce, NegotiatedIce};

/// Media packets waiting for the media task; beyond that they are dropped (it is stuck).
const INCOMING_QUEUE: usize = 256;
/// Largest datagram or TCP read.
const MAX_DATAGRAM: usize = 2048;
/// Most TCP connections to TURN servers per call (one per TCP/TLS server).
const MAX_TCP: usize = 4;
/// Most TURN connection problems kept for the user (`IceStatus::turn_errors`).
const MAX_TURN_ERRORS: usize = 4;

/// What the call's ICE is doing, for the `media` event and the call line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceStatus {
    pub selected: Option<PairInfo>,
    /// Set when ICE failed: the pairs that were tried.
    pub failed: Option<Vec<PairInfo>>,
    /// The peer stopped answering consent checks on the selected pair (RFC 7675): we no
    /// longer send.
    pub consent_lost: bool,
    /// The RTCP component's pair, for a peer without rtcp-mux.
    pub rtcp: Option<PairInfo>,
    /// How often consent was lost in this call, and the last pair that lost it: a restart
    /// (ours, automatic) may repair it long before the next `media` report, which must still
    /// say that the audio stopped and why.
    pub consent_losses: u32,
    pub lost_pair: Option<PairInfo>,
    /// Why a TURN server could not be reached over TCP or TLS (a refused certificate): one
    /// `warning` each; the call goes on with the candidates that remain.
    pub turn_errors: Vec<String>,
}

/// Where the peer's media goes when ICE fails, from its SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerMedia {
    /// Its `c=`/`m=` address.
    pub rtp: SocketAddr,
    /// Its RTCP address when it does not multiplex RTCP (`a=rtcp` or RTP port + 1); `None`:
    /// rtcp-mux (RFC 5761), and our RTCP component (if we offered one) is dropped.
    pub rtcp: Option<SocketAddr>,
}

impl PeerMedia {
    /// From the negotiated parameters.
    pub fn of(params: &crate::sdp::MediaParams) -> PeerMedia {
        PeerMedia {
            rtp: params.remote,
            rtcp: if params.rtcp_mux {
                None
            } else {
                params.remote_rtcp
            },
        }
    }
}

/// A restart's gathering ended for call `.0`: our new candidates and default candidate for
/// its re-INVITE (`None`: gathering failed).
pub type Regathered = (u64, Option<(LocalIce, SocketAddr)>);

/// Where a controlling agent reports the restart it starts by itself when consent is lost.
pub type AutoRestart = (u64, mpsc::UnboundedSender<Regathered>);

enum Control {
    /// The peer's ICE, and its addresses for when ICE fails; for a controlling agent, where
    /// to report its own restart when consent is lost.
    Remote(Box<NegotiatedIce>, PeerMedia, Option<AutoRestart>),
    /// A new offer/answer exchange (re-INVITE, UPDATE): new credentials on either side mean
    /// an ICE restart (RFC 8445 §9); the same ones change nothing but the fallback.
    Update(Box<NegotiatedIce>, PeerMedia),
    /// Our ICE restart: a new session with fresh credentials gathers on the same RTP socket;
    /// its candidates come back for the re-INVITE (the sender is dropped if that fails).
    Restart(oneshot::Sender<(LocalIce, SocketAddr)>),
    /// The peer refused our restart (or it never went out): back to the session before it,
    /// its credentials and the peer's ICE as the call negotiated them.
    Rollback,
    Send(Vec<u8>),
    /// RTCP: over the RTCP component when the peer does not multiplex, else as `Send`.
    SendRtcp(Vec<u8>),
    /// The peer does no ICE: give the RTP socket (and the RTCP one, if ICE held it) back for
    /// plain RTP, and stop.
    Release(oneshot::Sender<Released>),
    Stop,
}

/// The SIP task's handle on a call's ICE, until the media task takes the link.
pub struct IceHandle {
    control: mpsc::UnboundedSender<Control>,
    incoming: Option<mpsc::Receiver<Inbound>>,
    status: watch::Receiver<IceStatus>,
}

/// What the media task uses: send media, receive media, read the status.
pub struct IceLink {
    pub sender: IceSender,
    pub incoming: mpsc::Receiver<Inbound>,
    pub status: watch::Receiver<IceStatus>,
}

/// Sends media over the selected pair; dropping it ends the call's ICE.
pub struct IceSender {
    control: mpsc::UnboundedSender<Control>,
}

impl IceSender {
    pub fn send(&self, data: &[u8]) {
        let _ = self.control.send(Control::Send(data.to_vec()));
    }

    pub fn send_rtcp(&self, data: &[u8]) {
        let _ = self.control.send(Control::SendRtcp(data.to_vec()));
    }
}

/// The sockets ICE gives back for plain RTP: RTP, and RTCP when ICE held it.
pub type Released = (UdpSocket, Option<UdpSocket>);

impl Drop for IceSender {
    fn drop(&mut self) {
        let _ = self.control.send(Control::Stop);
    }
}

/// The SIP task's hold on a call's ICE while media runs: restarts and new offers/answers.
#[derive(Clone)]
pub struct IceControl {
    control: mpsc::UnboundedSender<Control>,
}

impl IceControl {
    /// An offer or answer of a re-INVITE or UPDATE carried this ICE.
    pub fn update(&self, remote: Box<NegotiatedIce>, fallback: PeerMedia) {
        let _ = self.control.send(Control::Update(remote, fallback));
    }

    /// Restarts ICE with fresh credentials: our new candidates and default candidate, once
    /// gathered (an error when the call's ICE has ended).
    pub fn restart(&self) -> oneshot::Receiver<(LocalIce, SocketAddr)> {
        let (tx, rx) = oneshot::channel();
        let _ = self.control.send(Control::Restart(tx));
        rx
    }

    /// Our restart's re-INVITE was refused: media goes back to the ICE session before it.
    pub fn rollback(&self) {
        let _ = self.control.send(Control::Rollback);
    }
}

impl IceHandle {
    /// For restarts and later offers, while the call's ICE runs.
    pub fn control(&self) -> IceControl {
        IceControl {
            control: self.control.clone(),
        }
    }

    /// The peer's ICE is known: checks start, and the media task gets the link.
    /// `auto_restart`: where the restart that a lost consent starts goes (the controlling
    /// side restarts once by itself; RFC 7675 leaves the repair to the application).
    pub fn start(
        mut self,
        remote: Box<NegotiatedIce>,
        fallback: PeerMedia,
        auto_restart: Option<AutoRestart>,
    ) -> Option<IceLink> {
        let _ = self
            .control
            .send(Control::Remote(remote, fallback, auto_restart));
        Some(IceLink {
            sender: IceSender {
                control: self.control.clone(),
            },
            incoming: self.incoming.take()?,
            status: self.status.clone(),
        })
    }

    /// The peer does no ICE: the RTP socket (and the RTCP one, if ICE held it) back, for
    /// plain RTP to its `c=` address.
    pub async fn release(self) -> Option<Released> {
        let (tx, rx) = oneshot::channel();
        self.control.send(Control::Release(tx)).ok()?;
        rx.await.ok()
    }
}

impl Drop for IceHandle {
    fn drop(&mut self) {
        // Only a handle that never became a link stops the task (a link stops it itself).
        if self.incoming.is_some() {
            let _ = self.control.send(Control::Stop);
        }
    }
}

/// Gathers candidates on `rtp` (and the TURN servers), and on `rtcp` for the RTCP component
/// when given: returns once gathering ended or after `GATHER_LIMIT`, with our ICE attributes
/// and the default candidate for `c=`/`m=`.
pub async fn gather(
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
    mut setup: IceSetup,
) -> Result<(IceHandle, LocalIce, SocketAddr), String> {
    let turn_udp = match setup
        .turn
        .iter()
        .find(|t| t.transport == TurnTransport::Udp)
    {
        Some(_) => Some(
            UdpSocket::bind(SocketAddr::new(setup.host.ip(), 0))
                .await
                .map_err(|e| format!("cannot open a socket for TURN: {e}"))?,
        ),
        None => None,
    };
    for turn in &mut setup.turn {
        turn.local = match (&turn_udp, turn.transport) {
            (Some(socket), TurnTransport::Udp) => socket.local_addr().map_err(|e| e.to_string())?,
            // TCP: the agent asks to connect from this address (`IceEvent::Connect`).
            _ => SocketAddr::new(setup.host.ip(), 0),
        };
    }
    let now = Instant::now();
    let agent = IceAgent::new(&setup, now)?;
    // The RTCP socket's host candidate: the RTP one's concrete IP, its own port.
    let rtcp_host = match &rtcp {
        Some(socket) => Some(SocketAddr::new(
            setup.host.ip(),
            socket.local_addr().map_err(|e| e.to_string())?.port(),
        )),
        None => None,
    };
    let rtcp_agent = match rtcp_host {
        Some(host) => Some(IceAgent::for_rtcp(&setup, host, now)?),
        None => None,
    };
    let (control, control_rx) = mpsc::unbounded_channel();
    let (incoming_tx, incoming) = mpsc::channel(INCOMING_QUEUE);
    let (status_tx, status) = watch::channel(IceStatus::default());
    let (gathered_tx, gathered_rx) = oneshot::channel();
    let task = Task {
        agent,
        host: setup.host,
        rtp: Some(rtp),
        turn_udp,
        tcp: Vec::new(),
        incoming: incoming_tx,
        status: status_tx,
        gathered: Some(gathered_tx),
        gather_deadline: now + GATHER_LIMIT,
        fallback: None,
        setup,
        rtcp_socket: rtcp,
        rtcp_host,
        rtcp_agent,
        rtcp_fallback: None,
        remote: None,
        before_restart: None,
        auto_restart: None,
        consent_restart_due: false,
    };
    tokio::spawn(task.run(control_rx));
    let handle = IceHandle {
        control,
        incoming: Some(incoming),
        status,
    };
    let (local, default) = gathered_rx
        .await
        .map_err(|_| "ICE gathering stopped".to_owned())?;
    Ok((handle, local, default))
}

/// Writes to a TURN server over TCP, or over TLS (then encrypted by rustls on the way).
type StreamWriter = Box<dyn AsyncWrite + Send + Unpin>;
type StreamReader = Box<dyn AsyncRead + Send + Unpin>;

/// A TCP (or TLS) connection to a TURN server: writes go straight to it, reads come from a
/// reader task through `tcp_in`.
struct Tcp {
    local: SocketAddr,
    remote: SocketAddr,
    writer: StreamWriter,
}

/// A connection to a TURN server, open (and for `turns:` past its TLS handshake).
struct Connection {
    local: SocketAddr,
    reader: StreamReader,
    writer: StreamWriter,
}

/// The TLS client configuration and the name to verify a `turns:` server against.
type TurnTls = (
    std::sync::Arc<rustls::ClientConfig>,
    rustls::pki_types::ServerName<'static>,
);

/// Opens the TCP connection the agent asked for; for a `turns:` server, TLS over it, the
/// server's certificate verified (system roots and `[sip] tls_ca_file`). The agent itself
/// speaks TURN over TCP on the decrypted stream: rice-proto's own TLS would hand turn-types
/// the stream unframed (see `ice::tcp_frame`). Bounded by `GATHER_LIMIT` in all.
async fn connect_turn(to: SocketAddr, tls: Option<TurnTls>) -> Result<Connection, String> {
    let open = async {
        let stream = TcpStream::connect(to)
            .await
            .map_err(|e| format!("no TCP connection to the TURN server {to}: {e}"))?;
        // Media goes over this connection: no Nagle delay (it added ~20 ms per round trip
        // through the relay in the lab).
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .map_err(|e| format!("TURN server {to}: {e}"))?;
        let Some((config, name)) = tls else {
            let (reader, writer) = stream.into_split();
            return Ok(Connection {
                local,
                reader: Box::new(reader),
                writer: Box::new(writer),
            });
        };
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name.clone(), stream)
            .await
            .map_err(|e| turn_tls_refused(to, &name, &e))?;
        let (reader, writer) = tokio::io::split(stream);
        Ok(Connection {
            local,
            reader: Box::new(reader),
            writer: Box::new(writer),
        })
    };
    tokio::time::timeout(GATHER_LIMIT, open)
        .await
        .unwrap_or_else(|_| Err(format!("the TURN server {to} did not answer in time")))
}

/// What the user reads when the TLS handshake with a `turns:` server fails.
fn turn_tls_refused(
    to: SocketAddr,
    name: &rustls::pki_types::ServerName<'_>,
    error: &std::io::Error,
) -> String {
    use crate::diagnosis::TlsFailure;
    let why = match super::tls::classify(error) {
        TlsFailure::UnknownIssuer => format!(
            "its certificate for {} is not signed by a trusted CA (add the CA to [sip] \
             tls_ca_file if you trust it)",
            name.to_str()
        ),
        TlsFailure::NameMismatch { presented, .. } => format!(
            "its certificate is not for {} (it names {})",
            name.to_str(),
            presented.join(", ")
        ),
        _ => super::tls::describe(error),
    };
    format!("turns: TURN server {to} refused: {why}; no TURN relay over TLS for this call")
}

struct Task {
    agent: IceAgent,
    host: SocketAddr,
    rtp: Option<UdpSocket>,
    turn_udp: Option<UdpSocket>,
    tcp: Vec<Tcp>,
    incoming: mpsc::Sender<Inbound>,
    status: watch::Sender<IceStatus>,
    gathered: Option<oneshot::Sender<(LocalIce, SocketAddr)>>,
    /// When the SDP goes out with what gathering found so far.
    gather_deadline: Instant,
    /// The peer's `c=` address: media goes there when ICE fails.
    fallback: Option<SocketAddr>,
    /// What the agent was built from: a restart builds the next one from it.
    setup: IceSetup,
    /// The RTCP component (RFC 5761 §5.1.3), for a peer that does not multiplex: the RTCP
    /// socket, its host candidate, its agent (dropped once the peer multiplexes), and the
    /// peer's RTCP address for when that agent fails.
    rtcp_socket: Option<UdpSocket>,
    rtcp_host: Option<SocketAddr>,
    rtcp_agent: Option<IceAgent>,
    rtcp_fallback: Option<SocketAddr>,
    /// The peer's ICE as last negotiated (a rollback sets it again).
    remote: Option<Box<NegotiatedIce>>,
    /// Our last restart replaced this session: its credentials and the peer's ICE then.
    before_restart: Option<(IceCredentials, Option<Box<NegotiatedIce>>)>,
    /// Controlling: where the one automatic restart on lost consent reports (taken when used),
    /// and whether it is due.
    auto_restart: Option<AutoRestart>,
    consent_restart_due: bool,
}

/// What the helper tasks report: a TCP connection made (or not), bytes read from one.
enum TcpNews {
    Connected {
        from: SocketAddr,
        to: SocketAddr,
        connection: Result<Connection, String>,
    },
    Read {
        local: SocketAddr,
        remote: SocketAddr,
        bytes: Vec<u8>,
    },
}

impl Task {
    async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpNews>(64);
        let mut rtp_buf = vec![0u8; MAX_DATAGRAM];
        let mut turn_buf = vec![0u8; MAX_DATAGRAM];
        let mut rtcp_buf = vec![0u8; MAX_DATAGRAM];
        loop {
            self.drive(&tcp_tx).await;
            if std::mem::take(&mut self.consent_restart_due)
                && let Some((call, report)) = self.auto_restart.take()
            {
                tracing::info!(call, "ICE: consent lost; restarting ICE once (we control)");
                let (back, gathered) = oneshot::channel();
                if self.our_restart(back, &tcp_tx).await {
                    tokio::spawn(async move {
                        let _ = report.send((call, gathered.await.ok()));
                    });
                }
                continue;
            }
            let rtcp_wake = self.rtcp_agent.as_ref().and_then(IceAgent::poll_timeout);
            let mut wake = [self.agent.poll_timeout(), rtcp_wake]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(60));
            if self.gathered.is_some() {
                wake = wake.min(self.gather_deadline);
            }
            let Some(rtp) = self.rtp.as_ref() else { return };
            let mut media = Vec::new();
            tokio::select! {
                received = rtp.recv_from(&mut rtp_buf) => {
                    if let Ok((n, from)) = received {
                        let bytes = rtp_buf.get(..n).unwrap_or_default();
                        self.agent.handle_datagram(false, self.host, canonical(from), bytes, Instant::now(), &mut media);
                    }
                }
                received = recv_opt(self.turn_udp.as_ref(), &mut turn_buf) => {
                    if let (Ok((n, from)), Some(local)) = (received, self.turn_udp.as_ref().and_then(|s| s.local_addr().ok())) {
                        let bytes = turn_buf.get(..n).unwrap_or_default();
                        self.agent.handle_datagram(false, local, canonical(from), bytes, Instant::now(), &mut media);
                    }
                }
                received = recv_opt(self.rtcp_socket.as_ref(), &mut rtcp_buf) => {
                    if let (Ok((n, from)), Some(agent), Some(host)) = (received, self.rtcp_agent.as_mut(), self.rtcp_host) {
                        let bytes = rtcp_buf.get(..n).unwrap_or_default();
                        agent.handle_datagram(false, host, canonical(from), bytes, Instant::now(), &mut media);
                    }
                }
                Some(news) = tcp_rx.recv() => self.tcp_news(news, &tcp_tx, &mut media),
                _ = tokio::time::sleep_until(wake.into()) => {
                    if self.gathered.is_some() && Instant::now() >= self.gather_deadline {
                        tracing::info!("ICE: gathering took too long; the SDP gets what there is");
                        self.report_gathered(true);
                    }
                }
                command = control.recv() => match command {
                    Some(Control::Remote(remote, fallback, auto_restart)) => {
                        self.auto_restart = auto_restart.filter(|_| self.setup.controlling);
                        self.set_fallback(fallback);
                        self.set_remote(&remote);
                        self.remote = Some(remote);
                    }
                    Some(Control::Update(remote, fallback)) => {
                        self.set_fallback(fallback);
                        self.update(&remote, &tcp_tx).await;
                        self.remote = Some(remote);
                        self.before_restart = None;
                    }
                    Some(Control::Restart(back)) => {
                        self.our_restart(back, &tcp_tx).await;
                    }
                    Some(Control::Rollback) => {
                        if let Some((credentials, remote)) = self.before_restart.take() {
                            tracing::info!("ICE: the restart was refused; back to the session before it");
                            match self.restart(credentials, &tcp_tx).await {
                                Ok(()) => {
                                    if let Some(remote) = &remote {
                                        self.set_remote(remote);
                                    }
                                    self.remote = remote;
                                }
                                Err(e) => tracing::warn!("ICE rollback: {e}"),
                            }
                        }
                    }
                    Some(Control::Send(data)) => self.send_rtp(&data).await,
                    Some(Control::SendRtcp(data)) => self.send_rtcp(&data).await,
                    Some(Control::Release(back)) => {
                        if let Some(rtp) = self.rtp.take() {
                            let _ = back.send((rtp, self.rtcp_socket.take()));
                        }
                        return;
                    }
                    Some(Control::Stop) | None => {
                        let now = Instant::now();
                        self.agent.close(now);
                        if let Some(agent) = self.rtcp_agent.as_mut() {
                            agent.close(now);
                        }
                        self.drive(&tcp_tx).await;
                        return;
                    }
                },
            }
            for packet in media {
                // The media task is behind: drop rather than stall ICE.
                let _ = self.incoming.try_send(packet);
            }
        }
    }

    /// Our own restart: fresh credentials, a new session gathering; its candidates go to
    /// `back` for the re-INVITE. The session before is kept for a rollback. False when the
    /// restart could not be made.
    async fn our_restart(
        &mut self,
        back: oneshot::Sender<(LocalIce, SocketAddr)>,
        tcp_tx: &mpsc::Sender<TcpNews>,
    ) -> bool {
        let before = (self.agent.credentials().clone(), self.remote.clone());
        let fresh = IceCredentials::from_random(rand::random());
        match self.restart(fresh, tcp_tx).await {
            Ok(()) => {
                self.gathered = Some(back);
                self.before_restart = Some(before);
                self.remote = None;
                true
            }
            Err(e) => {
                tracing::warn!("ICE restart: {e}");
                false
            }
        }
    }

    /// The peer's ICE: checks start (on the RTCP component too, when there is one).
    fn set_remote(&mut self, remote: &NegotiatedIce) {
        let now = Instant::now();
        self.agent.set_remote(remote, now);
        if let Some(agent) = self.rtcp_agent.as_mut() {
            agent.set_remote(remote, now);
        }
    }

    /// The peer's addresses for when ICE fails; a peer that multiplexes RTCP needs no RTCP
    /// component (RFC 5761 §5.1.3: we offered one in case it did not).
    fn set_fallback(&mut self, fallback: PeerMedia) {
        self.fallback = Some(fallback.rtp);
        self.rtcp_fallback = fallback.rtcp;
        if fallback.rtcp.is_none()
            && let Some(mut agent) = self.rtcp_agent.take()
        {
            tracing::debug!("ICE: the peer multiplexes RTCP; no RTCP component");
            agent.close(Instant::now());
        }
    }

    /// Over the selected pair; when ICE failed, to the peer's `c=` address from the RTP
    /// socket (as without ICE).
    async fn send_rtp(&mut self, data: &[u8]) {
        if let Some(transmit) = self.agent.send(data, Instant::now()) {
            self.transmit(transmit).await;
        } else if self.agent.failed()
            && let (Some(rtp), Some(to)) = (self.rtp.as_ref(), self.fallback)
        {
            let _ = rtp.send_to(data, to).await;
        }
    }

    /// RTCP over the RTCP component's pair; when that failed, to the peer's RTCP address
    /// from the RTCP socket (as without ICE); without an RTCP component, multiplexed.
    async fn send_rtcp(&mut self, data: &[u8]) {
        let now = Instant::now();
        let Some(agent) = self.rtcp_agent.as_mut() else {
            return self.send_rtp(data).await;
        };
        if let Some(transmit) = agent.send(data, now) {
            self.transmit(transmit).await;
        } else if agent.failed()
            && let (Some(socket), Some(to)) = (self.rtcp_socket.as_ref(), self.rtcp_fallback)
        {
            let _ = socket.send_to(data, to).await;
        }
    }

    /// A later offer/answer: a restart when either side's credentials changed.
    async fn update(&mut self, remote: &NegotiatedIce, tcp_tx: &mpsc::Sender<TcpNews>) {
        if remote.local != *self.agent.credentials() {
            // The peer restarted: our answer carried new credentials (`sip::ua`); a new
            // session on them (its candidates may differ from the answer's, which were the
            // last session's: the checks find the new ones as peer-reflexive).
            tracing::info!("ICE: the peer restarts ICE");
            if let Err(e) = self.restart(remote.local.clone(), tcp_tx).await {
                tracing::warn!("ICE restart: {e}");
                return;
            }
        } else if self.agent.remote_credentials() == Some(&remote.remote.credentials) {
            return;
        } else if self.agent.remote_set() {
            // New credentials of the peer's in an answer to an offer that kept ours: a
            // restart on our side too, with the same credentials.
            tracing::info!("ICE: the peer changed its credentials; checks start again");
            let same = self.agent.credentials().clone();
            if let Err(e) = self.restart(same, tcp_tx).await {
                tracing::warn!("ICE restart: {e}");
                return;
            }
        }
        // Our restart's answer, or the peer's restart: checks start on the new session.
        self.set_remote(remote);
    }

    /// A new ICE session (RFC 8445 §9) on the same RTP socket: the old agent closes (its TURN
    /// allocations are released), a new one gathers with `credentials`. Media pauses until
    /// the new session selects a pair; the call stays up.
    async fn restart(
        &mut self,
        credentials: IceCredentials,
        tcp_tx: &mpsc::Sender<TcpNews>,
    ) -> Result<(), String> {
        let now = Instant::now();
        self.agent.close(now);
        if let Some(agent) = self.rtcp_agent.as_mut() {
            agent.close(now);
        }
        self.drive(tcp_tx).await;
        let mut setup = self.setup.clone();
        setup.credentials = credentials;
        // A new allocation from a new socket: the server may still hold the old one for the
        // old socket's 5-tuple (or the NAT gave it a new one: that is why we restart).
        if setup.turn.iter().any(|t| t.transport == TurnTransport::Udp) {
            let socket = UdpSocket::bind(SocketAddr::new(self.host.ip(), 0))
                .await
                .map_err(|e| format!("cannot open a socket for TURN: {e}"))?;
            let local = socket.local_addr().map_err(|e| e.to_string())?;
            for turn in setup
                .turn
                .iter_mut()
                .filter(|t| t.transport == TurnTransport::Udp)
            {
                turn.local = local;
            }
            self.turn_udp = Some(socket);
        }
        // The old session's TCP connections to the TURN server close; the new one opens its own.
        self.tcp.clear();
        self.agent = IceAgent::new(&setup, now)?;
        // The RTCP component restarts with it (when the peer does not multiplex).
        if self.rtcp_agent.is_some()
            && let Some(host) = self.rtcp_host
        {
            self.rtcp_agent = Some(IceAgent::for_rtcp(&setup, host, now)?);
        }
        self.setup = setup;
        self.gather_deadline = now + GATHER_LIMIT;
        self.status.send_modify(|s| {
            s.selected = None;
            s.failed = None;
            s.consent_lost = false;
            s.rtcp = None;
        });
        tracing::info!("ICE: restarted; gathering again");
        Ok(())
    }

    fn tcp_news(
        &mut self,
        news: TcpNews,
        tcp_tx: &mpsc::Sender<TcpNews>,
        media: &mut Vec<Inbound>,
    ) {
        match news {
            TcpNews::Connected {
                from,
                to,
                connection,
            } => match connection {
                Ok(Connection {
                    local,
                    mut reader,
                    writer,
                }) if self.tcp.len() < MAX_TCP => {
                    self.tcp.push(Tcp {
                        local,
                        remote: to,
                        writer,
                    });
                    let tx = tcp_tx.clone();
                    // The agent gets whole messages, over TCP and TLS alike (see
                    // `ice::tcp_frame` for why).
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; MAX_DATAGRAM];
                        let mut framer = TcpFramer::default();
                        while let Ok(n) = reader.read(&mut buf).await {
                            let Some(bytes) = buf.get(..n).filter(|b| !b.is_empty()) else {
                                break;
                            };
                            for bytes in framer.push(bytes) {
                                let news = TcpNews::Read {
                                    local,
                                    remote: to,
                                    bytes,
                                };
                                if tx.send(news).await.is_err() {
                                    return;
                                }
                            }
                        }
                    });
                    self.agent
                        .handle_connected(from, to, Ok(local), Instant::now());
                }
                Ok(_) => {
                    tracing::info!(%to, "ICE: too many TCP connections to TURN servers");
                    self.agent
                        .handle_connected(from, to, Err(()), Instant::now());
                }
                Err(why) => {
                    tracing::warn!("ICE: {why}");
                    self.status.send_modify(|s| {
                        if s.turn_errors.len() < MAX_TURN_ERRORS {
                            s.turn_errors.push(why);
                        }
                    });
                    self.agent
                        .handle_connected(from, to, Err(()), Instant::now());
                }
            },
            TcpNews::Read {
                local,
                remote,
                bytes,
            } => self
                .agent
                .handle_datagram(true, local, remote, &bytes, Instant::now(), media),
        }
    }

    /// Runs the agent until it waits: sends what it wants sent, acts on its events.
    async fn drive(&mut self, tcp_tx: &mpsc::Sender<TcpNews>) {
        // Bounded like the agent's own loop: a burst of checks, then the timer.
        for _ in 0..64 {
            let now = Instant::now();
            let mut busy = false;
            while let Some(transmit) = self.agent.poll_transmit(now) {
                busy = true;
                self.transmit(transmit).await;
            }
            if let Some(event) = self.agent.poll_event(now) {
                busy = true;
                self.event(event, tcp_tx);
            }
            let mut rtcp_out = Vec::new();
            if let Some(agent) = self.rtcp_agent.as_mut() {
                while let Some(transmit) = agent.poll_transmit(now) {
                    rtcp_out.push(transmit);
                }
                if let Some(event) = agent.poll_event(now) {
                    busy = true;
                    self.rtcp_event(event);
                }
            }
            for transmit in rtcp_out {
                busy = true;
                self.transmit(transmit).await;
            }
            if !busy {
                break;
            }
        }
    }

    fn event(&mut self, event: IceEvent, tcp_tx: &mpsc::Sender<TcpNews>) {
        match event {
            IceEvent::Gathered(_) => self.report_gathered(false),
            IceEvent::Connect { from, to } => {
                let tx = tcp_tx.clone();
                let tls = self
                    .setup
                    .turn
                    .iter()
                    .find(|t| t.server == to && t.transport == TurnTransport::Tls)
                    .and_then(|t| t.tls.clone());
                tokio::spawn(async move {
                    let connection = connect_turn(to, tls).await;
                    let _ = tx
                        .send(TcpNews::Connected {
                            from,
                            to,
                            connection,
                        })
                        .await;
                });
            }
            IceEvent::Selected(pair) => {
                tracing::info!(%pair, path = pair.path(), "ICE: media goes over this pair");
                self.status.send_modify(|s| {
                    s.selected = Some(pair);
                    s.failed = None;
                });
            }
            IceEvent::ConsentLost(pair) => {
                tracing::warn!(%pair, "ICE: consent lost; media stops");
                self.status.send_modify(|s| {
                    s.consent_lost = true;
                    s.consent_losses = s.consent_losses.saturating_add(1);
                    s.lost_pair = Some(pair);
                });
                self.consent_restart_due = self.auto_restart.is_some();
            }
            IceEvent::Failed { tried } => {
                let list: Vec<String> = tried.iter().map(ToString::to_string).collect();
                tracing::warn!(tried = ?list, "ICE failed: no candidate pair works");
                self.status.send_modify(|s| s.failed = Some(tried));
            }
        }
    }

    /// What the RTCP component's agent reports: its pair, for logs and the `media` event.
    fn rtcp_event(&mut self, event: IceEvent) {
        match event {
            IceEvent::Gathered(_) => self.report_gathered(false),
            // No TURN for RTCP, so no TCP connection either.
            IceEvent::Connect { .. } => {}
            IceEvent::Selected(pair) => {
                tracing::info!(%pair, path = pair.path(), "ICE: RTCP goes over this pair");
                self.status.send_modify(|s| s.rtcp = Some(pair));
            }
            IceEvent::ConsentLost(pair) => {
                tracing::warn!(%pair, "ICE: consent lost on the RTCP pair; RTCP stops");
            }
            IceEvent::Failed { tried } => {
                let list: Vec<String> = tried.iter().map(ToString::to_string).collect();
                tracing::info!(tried = ?list, "ICE: no RTCP pair works; RTCP to the peer's a=rtcp address");
            }
        }
    }

    /// Our candidates for the SDP, once every component gathered (or `now_or_never`: the
    /// gathering deadline passed): RTP's, then RTCP's.
    fn report_gathered(&mut self, now_or_never: bool) {
        let all = self.agent.gathered() && self.rtcp_agent.as_ref().is_none_or(IceAgent::gathered);
        if !(all || now_or_never) {
            return;
        }
        let mut local = self.agent.local_ice();
        if let Some(agent) = &self.rtcp_agent {
            local.candidates.extend(agent.local_ice().candidates);
        }
        if let Some(tx) = self.gathered.take() {
            let default = self.agent.default_candidate().unwrap_or(self.host);
            if local.candidates.is_empty() {
                tracing::debug!("ICE: no usable candidate (loopback or no route); no ICE");
            } else {
                tracing::info!(candidates = ?local.candidates, %default, "ICE: candidates gathered");
            }
            let _ = tx.send((local, default));
        }
    }

    async fn transmit(&mut self, transmit: crate::ice::Transmit) {
        if transmit.tcp {
            if let Some(tcp) = self
                .tcp
                .iter_mut()
                .find(|t| t.local == transmit.from && t.remote == transmit.to)
                && let Err(error) = async {
                    tcp.writer.write_all(&transmit.data).await?;
                    // TLS may keep what the socket did not take yet.
                    tcp.writer.flush().await
                }
                .await
            {
                tracing::debug!(%error, to = %transmit.to, "ICE: TCP send failed");
            }
            return;
        }
        let socket = match (&self.turn_udp, &self.rtcp_socket) {
            (Some(turn), _) if turn.local_addr().ok() == Some(transmit.from) => turn,
            (_, Some(rtcp)) if self.rtcp_host == Some(transmit.from) => rtcp,
            _ => match &self.rtp {
                Some(rtp) => rtp,
                None => return,
            },
        };
        tracing::trace!(from = %transmit.from, to = %transmit.to, len = transmit.data.len(), "ICE: send");
        if let Err(error) = socket.send_to(&transmit.data, transmit.to).await {
            tracing::debug!(%error, to = %transmit.to, "ICE: send failed");
        }
    }
}

async fn recv_opt(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Builds the agent's setup for one call.
pub fn setup(
    credentials: crate::sdp::IceCredentials,
    host: SocketAddr,
    stun: Option<SocketAddr>,
    turn: Vec<TurnSetup>,
    controlling: bool,
) -> IceSetup {
    IceSetup {
        credentials,
        host,
        stun,
        turn,
        controlling,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A TLS server on loopback presenting a self-signed certificate for `name` (no CA we
    /// trust); it accepts connections until the test ends.
    async fn untrusted_tls_server(name: &str) -> SocketAddr {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("listener");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        addr
    }

    /// Certificates of `turns:` servers are verified by default: one from an unknown CA is
    /// refused, and the reason (for the user's `warning`) says what to do. The agent then
    /// carries on without that relay (`ice::agent`'s
    /// `a_refused_turns_connection_leaves_the_other_candidates_to_carry_the_call`).
    #[tokio::test]
    async fn a_turns_server_with_a_certificate_from_an_unknown_ca_is_refused_with_a_reason() {
        let name = "turn.example.net";
        let addr = untrusted_tls_server(name).await;
        let config = super::super::tls::client_config_for_turn(None).expect("client config");
        let server_name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("name");
        let refused = connect_turn(addr, Some((config, server_name))).await;
        let Err(why) = refused else {
            panic!("an untrusted certificate was accepted");
        };
        assert!(why.starts_with("turns: TURN server"), "{why}");
        assert!(why.contains(&addr.to_string()), "{why}");
        assert!(why.contains("not signed by a trusted CA"), "{why}");
        assert!(why.contains("tls_ca_file"), "{why}");
        assert!(why.contains("no TURN relay over TLS"), "{why}");
        // Plain TCP to the same server connects (the refusal is the certificate's).
        assert!(connect_turn(addr, None).await.is_ok());
    }
}
