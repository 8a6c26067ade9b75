//! Sockets: one UDP socket and one TCP listener on the same port, optionally a TLS listener,
//! plus outgoing TCP and TLS connections. Every reader and connector is its own small task that
//! reports to the SIP task through one channel (`Inbound`), so the SIP task owns the connection
//! table without a lock. TCP and TLS connections share one stream loop (framing, CRLF
//! keep-alives), generic over the stream type.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::tls;
use crate::sip::parse::{MAX_MESSAGE_BYTES, StreamFrame, parse_stream};
use crate::sip::transaction::{Destination, TransportKind};

/// How long an outgoing TCP connect may take before the transaction hears of a transport error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for one connection while it connects or writes; past this we drop.
const WRITE_QUEUE: usize = 256;
/// Open TCP connections we keep at most (a flood of connections cannot exhaust memory).
const MAX_CONNECTIONS: usize = 512;
/// TLS handshakes in progress on the listener at most; more connections are dropped at once.
const MAX_HANDSHAKES: usize = 64;
/// Connection aliases (RFC 5923 style) we remember at most.
const MAX_ALIASES: usize = 512;
/// The UDP socket's receive buffer: a burst of requests waits in the kernel while the SIP task
/// is busy instead of being dropped (the default, about 200 KB, holds some 400 messages). The
/// kernel caps it at `net.core.rmem_max`.
pub const UDP_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;
/// RFC 5626 §4.4.1: a pong should come within 10 s of the ping (less when pings are closer).
const PONG_TIMEOUT: Duration = Duration::from_secs(10);

/// Bounds on what connections accepted by a listener (TCP and TLS each) can hold: a port
/// facing the internet must not be exhausted by idle or half-open connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Accepted connections open at once per listener (TLS: handshakes included); past this,
    /// new connections are closed at once.
    pub max_connections: usize,
    /// An accepted connection must deliver its first complete message within this time of
    /// being accepted (CRLF keep-alives do not count), and every later message must complete
    /// within this time of its first byte; else it is closed (slowloris).
    pub message_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            max_connections: 256,
            // 64*T1: by then the sender's transaction has timed out anyway.
            message_timeout: Duration::from_secs(32),
        }
    }
}

/// How one stream connection behaves besides framing.
#[derive(Debug, Clone, Copy, Default)]
struct StreamOptions {
    /// Send CRLFCRLF pings at this interval (connections we open).
    keepalive: Option<Duration>,
    /// Close when a message does not complete in time (connections we accept).
    message_timeout: Option<Duration>,
}

/// What the socket tasks report.
#[derive(Debug)]
pub enum Inbound {
    /// One datagram, or one framed message from a stream.
    Message { source: Destination, bytes: Vec<u8> },
    /// A stream connection is up (accepted or connected); messages to `peer` go to `writer`.
    Connected {
        peer: Destination,
        writer: mpsc::Sender<Vec<u8>>,
    },
    /// A stream connection ended or could not be made.
    Closed {
        peer: Destination,
        error: Option<String>,
    },
    /// An outgoing TLS connection could not be made (connect, handshake, certificate): the
    /// user should see why ("TLS: invalid peer certificate: UnknownIssuer"). `tls`: what the
    /// handshake said, for the diagnosis.
    ConnectFailed {
        peer: Destination,
        error: String,
        tls: Option<crate::diagnosis::TlsFailure>,
    },
    /// A connection we keep alive died: a ping could not be written, or a peer that answered
    /// pings before stopped answering (RFC 5626 §4.4.1). Closed; the user should hear of it.
    Lost { peer: Destination, error: String },
    /// ICMP said a UDP datagram to `dest` cannot be delivered (nothing listens there, no route).
    Unreachable { dest: Destination },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("send to {dest} failed: {source}")]
    Send { dest: SocketAddr, source: io::Error },
    #[error("connection to {0} is congested; message dropped")]
    Congested(SocketAddr),
}

pub struct Transport {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    connections: HashMap<Destination, mpsc::Sender<Vec<u8>>>,
    inbound: mpsc::Sender<Inbound>,
    /// For outgoing TLS connections; built with the system roots on first use when unset.
    tls_client: Option<Arc<rustls::ClientConfig>>,
    /// The name to verify (and send as SNI) per TLS server address; IP otherwise.
    server_names: HashMap<SocketAddr, ServerName<'static>>,
    /// TLS peers that connected to us, by the Via sent-by of their requests: a request to
    /// their Contact (often that address, where they may have no TLS listener) goes over the
    /// connection they opened (RFC 5923's idea, without the `alias` parameter).
    aliases: HashMap<SocketAddr, SocketAddr>,
    /// CRLFCRLF ping interval on connections we open (RFC 5626 §3.5.1); None: off.
    keepalive: Option<Duration>,
    /// Bounds on accepted connections (the TCP listener's and the TLS listener's).
    limits: ListenerLimits,
}

impl Transport {
    /// Binds UDP on `listen` (port 0 picks one) and TCP on the same address and port.
    pub async fn bind(
        listen: SocketAddr,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        Self::bind_with(listen, ListenerLimits::default()).await
    }

    /// `bind` with `limits` on accepted TCP (and later TLS) connections.
    pub async fn bind_with(
        listen: SocketAddr,
        limits: ListenerLimits,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
        let (udp, local, tcp) = bind_udp_and_tcp(listen).await?;
        enlarge_receive_buffer(&udp, UDP_RECEIVE_BUFFER);
        super::icmp::enable(&udp);
        let (inbound, rx) = mpsc::channel(1024);
        let udp = Arc::new(udp);
        tokio::spawn(udp_reader(udp.clone(), inbound.clone()));
        tokio::spawn(tcp_acceptor(tcp, inbound.clone(), limits));
        Ok((
            Transport {
                udp,
                local,
                connections: HashMap::new(),
                inbound,
                tls_client: None,
                server_names: HashMap::new(),
                aliases: HashMap::new(),
                keepalive: None,
                limits,
            },
            rx,
        ))
    }

    /// Accepts SIP over TLS on `listen` with `config`; returns the address really bound.
    pub async fn listen_tls(
        &mut self,
        listen: SocketAddr,
        config: Arc<rustls::ServerConfig>,
    ) -> Result<SocketAddr, TransportError> {
        let bind_error = |source| TransportError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
        let bound = listener.local_addr().map_err(bind_error)?;
        tokio::spawn(tls_acceptor(
            listener,
            TlsAcceptor::from(config),
            self.inbound.clone(),
            self.limits,
        ));
        Ok(bound)
    }

    pub fn set_tls_client(&mut self, config: Arc<rustls::ClientConfig>) {
        self.tls_client = Some(config);
    }

    /// The host name a TLS server at `addr` must prove (from the proxy/registrar URI).
    pub fn set_server_name(&mut self, addr: SocketAddr, name: ServerName<'static>) {
        self.server_names.insert(addr, name);
    }

    pub fn set_keepalive(&mut self, interval: Option<Duration>) {
        self.keepalive = interval.filter(|d| !d.is_zero());
    }

    /// Notes the top Via sent-by of a request that came over an accepted TLS connection, so
    /// requests to that address reuse the connection.
    pub fn learn_alias(&mut self, source: Destination, bytes: &[u8]) {
        if source.transport != TransportKind::Tls {
            return;
        }
        let Some(sent_by) = tls_via_sent_by(bytes) else {
            return;
        };
        // Only another port of the connection's own IP: a peer must not be able to draw our
        // requests for some other host onto its connection.
        if sent_by == source.addr || sent_by.ip() != source.addr.ip() {
            return;
        }
        if self.aliases.len() >= MAX_ALIASES && !self.aliases.contains_key(&sent_by) {
            return;
        }
        self.aliases.insert(sent_by, source.addr);
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Records a stream connection reported by a socket task.
    pub fn connected(&mut self, peer: Destination, writer: mpsc::Sender<Vec<u8>>) {
        if self.connections.len() >= MAX_CONNECTIONS && !self.connections.contains_key(&peer) {
            tracing::warn!(peer = %peer.addr, "too many TCP connections; not keeping this one");
            return;
        }
        self.connections.insert(peer, writer);
    }

    /// Forgets a connection that ended. Returns the destinations that were aliases of it:
    /// requests in flight to them went over this connection, so they failed too (the caller
    /// tells the transaction layer, which otherwise waits for their timeouts).
    pub fn closed(&mut self, peer: Destination) -> Vec<Destination> {
        self.connections.remove(&peer);
        let mut lost = Vec::new();
        if peer.transport == TransportKind::Tls {
            self.aliases.retain(|from, to| {
                let keep = *to != peer.addr;
                if !keep {
                    lost.push(Destination {
                        addr: *from,
                        transport: TransportKind::Tls,
                    });
                }
                keep
            });
        }
        lost
    }

    /// Sends one message. Stream destinations reuse an open connection or start one; errors of
    /// a connection being made come back later as `Inbound::Closed`.
    pub async fn send(&mut self, dest: Destination, bytes: Vec<u8>) -> Result<(), TransportError> {
        match dest.transport {
            TransportKind::Udp => self
                .udp
                .send_to(&bytes, on_socket_family(dest.addr, self.local))
                .await
                .map(|_| ())
                .map_err(|source| TransportError::Send {
                    dest: dest.addr,
                    source,
                }),
            TransportKind::Tcp | TransportKind::Tls => {
                let key = self.connection_for(dest);
                if let Some(writer) = self.connections.get(&key) {
                    return match writer.try_send(bytes) {
                        Ok(()) => Ok(()),
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            Err(TransportError::Congested(dest.addr))
                        }
                        Err(mpsc::error::TrySendError::Closed(bytes)) => {
                            // The connection dropped: the next message opens a new one.
                            self.closed(key);
                            self.connect(dest, bytes);
                            Ok(())
                        }
                    };
                }
                self.connect(dest, bytes);
                Ok(())
            }
        }
    }

    /// The open connection a message to `dest` goes over: `dest`'s own, or for TLS the one
    /// its owner opened to us (alias).
    pub fn connection_for(&self, dest: Destination) -> Destination {
        if dest.transport != TransportKind::Tls || self.connections.contains_key(&dest) {
            return dest;
        }
        self.aliases
            .get(&dest.addr)
            .map(|addr| Destination {
                addr: *addr,
                transport: TransportKind::Tls,
            })
            .filter(|alias| self.connections.contains_key(alias))
            .unwrap_or(dest)
    }

    fn connect(&mut self, dest: Destination, first: Vec<u8>) {
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        // Queue the first message before the connection exists; the connector writes it.
        let _ = writer.try_send(first);
        self.connections.insert(dest, writer);
        let inbound = self.inbound.clone();
        let options = StreamOptions {
            keepalive: self.keepalive,
            message_timeout: None,
        };
        let peer = dest.addr;
        if dest.transport == TransportKind::Tls {
            if self.tls_client.is_none() {
                let mut notes = tls::Notes::default();
                self.tls_client = tls::client_config(&tls::TlsOptions::default(), &mut notes);
            }
            let Some(config) = self.tls_client.clone() else {
                let _ = inbound.try_send(Inbound::ConnectFailed {
                    peer: dest,
                    error: "TLS: no client configuration".into(),
                    tls: None,
                });
                return;
            };
            let connector = TlsConnector::from(config);
            let name = self
                .server_names
                .get(&peer)
                .cloned()
                .unwrap_or_else(|| tls::server_name(None, peer.ip()));
            tokio::spawn(async move {
                let failed = |error: String| Inbound::ConnectFailed {
                    peer: dest,
                    error,
                    tls: None,
                };
                let tcp =
                    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
                        Ok(Ok(tcp)) => tcp,
                        Ok(Err(e)) => {
                            let _ = inbound
                                .send(failed(format!("TLS: connect to {peer}: {e}")))
                                .await;
                            return;
                        }
                        Err(_) => {
                            let _ = inbound
                                .send(failed(format!("TLS: connect to {peer} timed out")))
                                .await;
                            return;
                        }
                    };
                match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp)).await {
                    Ok(Ok(stream)) => run_stream(stream, dest, queue, inbound, options).await,
                    Ok(Err(e)) => {
                        let _ = inbound
                            .send(Inbound::ConnectFailed {
                                peer: dest,
                                error: format!("{} ({peer})", tls::describe(&e)),
                                tls: Some(tls::classify(&e)),
                            })
                            .await;
                    }
                    Err(_) => {
                        let _ = inbound
                            .send(failed(format!("TLS: handshake with {peer} timed out")))
                            .await;
                    }
                }
            });
            return;
        }
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
                Ok(Ok(stream)) => run_stream(stream, dest, queue, inbound, options).await,
                Ok(Err(e)) => report_closed(&inbound, dest, Some(e.to_string())).await,
                Err(_) => report_closed(&inbound, dest, Some("connect timed out".into())).await,
            }
        });
    }
}

async fn report_closed(inbound: &mpsc::Sender<Inbound>, peer: Destination, error: Option<String>) {
    let _ = inbound.send(Inbound::Closed { peer, error }).await;
}

/// The top Via's sent-by of a request sent over TLS (`SIP/2.0/TLS 192.0.2.1:5061;...`), when
/// it is an IP literal; 5061 when it has no port.
fn tls_via_sent_by(bytes: &[u8]) -> Option<SocketAddr> {
    let head = bytes.get(..bytes.len().min(MAX_MESSAGE_BYTES))?;
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    if lines.next()?.starts_with("SIP/") {
        return None; // a response
    }
    let value = lines.take_while(|l| !l.is_empty()).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v")).then_some(value)
    })?;
    let first = value.split(',').next()?.trim();
    let (protocol, rest) = first.split_once(char::is_whitespace)?;
    if !protocol.trim().eq_ignore_ascii_case("SIP/2.0/TLS") {
        return None;
    }
    let sent_by = rest.split(';').next()?.trim();
    if let Ok(addr) = sent_by.parse::<SocketAddr>() {
        return Some(addr);
    }
    let ip: std::net::IpAddr = sent_by
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, 5061))
}

/// Asks for a `bytes` receive buffer (SO_RCVBUF); what the kernel grants is logged at debug.
/// Failure only leaves the default.
#[cfg(unix)]
fn enlarge_receive_buffer(socket: &UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    let wanted = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let size = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket owned by `socket` for the whole call; the option value
    // points at a live c_int of the size passed.
    let set = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&wanted as *const libc::c_int).cast(),
            size,
        )
    };
    let mut granted: libc::c_int = 0;
    let mut len = size;
    // SAFETY: as above; `granted` and `len` are live and writable.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut granted as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if set != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "SO_RCVBUF not set");
    } else if got == 0 {
        tracing::debug!(wanted, granted, "UDP receive buffer");
    }
}

#[cfg(not(unix))]
fn enlarge_receive_buffer(_socket: &UdpSocket, _bytes: usize) {}

/// How many ports `bind_udp_and_tcp` tries for `port 0` before giving up.
const BIND_ATTEMPTS: usize = 16;

/// UDP and TCP on one address and port. With port 0 the kernel picks a free UDP port, which
/// may be taken for TCP by another program: then another port is tried (a test run full of
/// TCP connections hit this now and then).
async fn bind_udp_and_tcp(
    listen: SocketAddr,
) -> Result<(UdpSocket, SocketAddr, TcpListener), TransportError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|source| TransportError::Bind {
                addr: listen,
                source,
            })?;
        let local = udp.local_addr().map_err(|source| TransportError::Bind {
            addr: listen,
            source,
        })?;
        match TcpListener::bind(local).await {
            Ok(tcp) => return Ok((udp, local, tcp)),
            Err(e)
                if listen.port() == 0
                    && e.kind() == io::ErrorKind::AddrInUse
                    && attempt < BIND_ATTEMPTS =>
            {
                tracing::debug!(%local, "TCP port taken; trying another port");
            }
            Err(source) => {
                return Err(TransportError::Bind {
                    addr: local,
                    source,
                });
            }
        }
    }
}

/// An IPv4 peer of a dual-stack (`[::]`) socket shows as `::ffff:a.b.c.d`: the rest of sipterm
/// (Via, dialogs, trusted addresses, SDP) speaks of it as the IPv4 address it is.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The address to hand to a socket bound to `local`: an IPv6 socket reaches an IPv4 peer at
/// its IPv4-mapped address (Linux refuses a plain IPv4 one there).
pub fn on_socket_family(dest: SocketAddr, local: SocketAddr) -> SocketAddr {
    match (local, dest) {
        (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
            SocketAddr::new(std::net::IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
        }
        _ => dest,
    }
}

async fn udp_reader(socket: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let from = canonical(from);
                let Some(bytes) = buf.get(..n) else { continue };
                // Lone CRLF keep-alives (RFC 5626 §4.4.1 on UDP) carry no message.
                if bytes.iter().all(|b| *b == b'\r' || *b == b'\n') {
                    continue;
                }
                let msg = Inbound::Message {
                    source: Destination {
                        addr: from,
                        transport: TransportKind::Udp,
                    },
                    bytes: bytes.to_vec(),
                };
                if inbound.send(msg).await.is_err() {
                    return;
                }
            }
            // ICMP errors (port/host unreachable) show up here; which destination they were
            // for is in the socket's error queue (`icmp`).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkUnreachable
                ) =>
            {
                for dest in super::icmp::drain(&socket) {
                    let dest = Destination {
                        addr: canonical(dest),
                        transport: TransportKind::Udp,
                    };
                    if inbound.send(Inbound::Unreachable { dest }).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn tcp_acceptor(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    limits: ListenerLimits,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let options = StreamOptions {
        keepalive: None,
        message_timeout: Some(limits.message_timeout),
    };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let peer = canonical(peer);
                // Held for the connection's whole life; at the cap the new one is closed.
                let Ok(permit) = open.clone().try_acquire_owned() else {
                    tracing::info!(peer = %peer, "too many TCP connections; closing the new one");
                    continue;
                };
                let peer = Destination {
                    addr: peer,
                    transport: TransportKind::Tcp,
                };
                let (writer, queue) = mpsc::channel(WRITE_QUEUE);
                if inbound
                    .send(Inbound::Connected { peer, writer })
                    .await
                    .is_err()
                {
                    return;
                }
                let inbound = inbound.clone();
                tokio::spawn(async move {
                    run_stream(stream, peer, queue, inbound, options).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Accepts TLS connections; each handshake runs in its own task (bounded in time and number),
/// and so does each connection (bounded in number, `limits.max_connections`).
async fn tls_acceptor(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    inbound: mpsc::Sender<Inbound>,
    limits: ListenerLimits,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let options = StreamOptions {
        keepalive: None,
        message_timeout: Some(limits.message_timeout),
    };
    loop {
        match listener.accept().await {
            Ok((tcp, addr)) => {
                let addr = canonical(addr);
                // Held from accept to close, handshake included; at the cap the new
                // connection is closed at once (dropped) and the established ones carry on.
                let Ok(connection) = open.clone().try_acquire_owned() else {
                    tracing::info!(peer = %addr, "too many TLS connections; closing the new one");
                    continue;
                };
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    tracing::warn!(peer = %addr, "too many TLS handshakes in progress; dropping");
                    continue;
                };
                let acceptor = acceptor.clone();
                let inbound = inbound.clone();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await;
                    drop(permit);
                    let stream = match handshake {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::info!(peer = %addr, error = %tls::describe(&e), "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(peer = %addr, "TLS handshake timed out");
                            return;
                        }
                    };
                    let peer = Destination {
                        addr,
                        transport: TransportKind::Tls,
                    };
                    let (writer, queue) = mpsc::channel(WRITE_QUEUE);
                    if inbound
                        .send(Inbound::Connected { peer, writer })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    run_stream(stream, peer, queue, inbound, options).await;
                    drop(connection);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Keep-alive bookkeeping of one stream across reads.
#[derive(Debug, Default)]
struct KeepAlive {
    /// CRLF bytes received since the last message or pong we sent: a CRLFCRLF ping may arrive
    /// split over reads ("\r\n", then "\r\n"), and must still get its pong.
    crlf_run: usize,
    /// We sent a ping and no CRLF came back yet: the next CRLF is its pong.
    ping_outstanding: bool,
    /// The peer answered a ping once: it speaks RFC 5626, so a missing pong means trouble.
    pong_seen: bool,
}

/// Sleeps until `deadline`, forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending::<()>().await,
    }
}

/// Reads framed messages from one connection (TCP or TLS) and writes what the SIP task queues
/// for it; with `options.keepalive`, sends a CRLFCRLF ping at that interval (RFC 5626 §3.5.1)
/// and closes the connection when a peer that answered pings stops answering; with
/// `options.message_timeout`, closes it when a message takes too long to complete.
async fn run_stream<S>(
    mut stream: S,
    source: Destination,
    mut queue: mpsc::Receiver<Vec<u8>>,
    inbound: mpsc::Sender<Inbound>,
    options: StreamOptions,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use tokio::time::Instant;
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut ping = options.keepalive.map(|every| {
        let mut timer = tokio::time::interval_at(Instant::now() + every, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    });
    let mut keepalive = KeepAlive::default();
    let mut pong_deadline: Option<Instant> = None;
    // The first message counts from the accept: a connection that never completes one
    // (a stalled client, a slowloris trickling header bytes or CRLFs) is closed.
    let mut message_deadline = options.message_timeout.map(|t| Instant::now() + t);
    let mut got_message = false;
    // (error, whether it is a lost keep-alive flow the user should hear of)
    let (error, lost) = loop {
        tokio::select! {
            read = stream.read(&mut chunk) => {
                let n = match read {
                    Ok(0) => break (None, false),
                    Ok(n) => n,
                    Err(e) => break (Some(e.to_string()), false),
                };
                // Anything from the peer shows the connection is alive.
                pong_deadline = None;
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                let messages =
                    match drain_frames(&mut buf, &source, &inbound, &mut stream, &mut keepalive)
                        .await
                    {
                        Ok(messages) => messages,
                        Err(e) => break (Some(e), false),
                    };
                if let Some(timeout) = options.message_timeout {
                    got_message |= messages > 0;
                    if got_message {
                        if buf.is_empty() {
                            message_deadline = None;
                        } else if messages > 0 || message_deadline.is_none() {
                            // A new message started: it has `timeout` to complete; trickling
                            // more bytes of it does not extend that.
                            message_deadline = Some(Instant::now() + timeout);
                        }
                    }
                }
            }
            next = queue.recv() => match next {
                Some(bytes) => {
                    if let Err(e) = write_flush(&mut stream, &bytes).await {
                        break (Some(e.to_string()), false);
                    }
                }
                None => break (None, false),
            },
            _ = async {
                match ping.as_mut() {
                    Some(timer) => { timer.tick().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {
                if let Err(e) = write_flush(&mut stream, b"\r\n\r\n").await {
                    break (Some(format!("keep-alive ping failed: {e}")), true);
                }
                keepalive.ping_outstanding = true;
                if keepalive.pong_seen && pong_deadline.is_none() {
                    let every = options.keepalive.unwrap_or(PONG_TIMEOUT);
                    pong_deadline = Some(Instant::now() + PONG_TIMEOUT.min(every));
                }
            }
            _ = sleep_until(pong_deadline) => {
                break (Some("no keep-alive pong: the connection is dead".to_string()), true);
            }
            _ = sleep_until(message_deadline) => {
                let timeout = options.message_timeout.unwrap_or_default();
                break (Some(format!("no complete message within {timeout:?}; closed")), false);
            }
        }
    };
    // Best effort: a TLS close_notify / TCP FIN, bounded so a stuck peer cannot hold us.
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    match (error, lost) {
        (Some(error), true) => {
            let _ = inbound
                .send(Inbound::Lost {
                    peer: source,
                    error,
                })
                .await;
        }
        (error, _) => report_closed(&inbound, source, error).await,
    }
}

/// TLS buffers inside the session: flush so the record leaves now.
async fn write_flush<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// Takes every complete message off the front of `buf`, answers CRLFCRLF pings, notes pongs;
/// returns how many messages it passed on. A stream cannot resynchronise after garbage, so a
/// framing error closes the connection.
async fn drain_frames<W: AsyncWrite + Unpin>(
    buf: &mut Vec<u8>,
    source: &Destination,
    inbound: &mpsc::Sender<Inbound>,
    writer: &mut W,
    keepalive: &mut KeepAlive,
) -> Result<usize, String> {
    let mut messages = 0;
    loop {
        match parse_stream(buf) {
            Ok(StreamFrame::Message(_, used)) => {
                let bytes: Vec<u8> = buf.drain(..used.min(buf.len())).collect();
                keepalive.crlf_run = 0;
                messages += 1;
                inbound
                    .send(Inbound::Message {
                        source: *source,
                        bytes,
                    })
                    .await
                    .map_err(|_| "engine stopped".to_string())?;
            }
            Ok(StreamFrame::KeepAlive(used)) => {
                let used = used.min(buf.len());
                buf.drain(..used);
                if keepalive.ping_outstanding {
                    // The pong to our ping (RFC 5626 §4.4.1), not half of a ping of theirs.
                    keepalive.ping_outstanding = false;
                    keepalive.pong_seen = true;
                    continue;
                }
                // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong, however the
                // ping's bytes were split across reads.
                keepalive.crlf_run += used;
                if keepalive.crlf_run >= 4 {
                    keepalive.crlf_run = 0;
                    write_flush(writer, b"\r\n")
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok(StreamFrame::Incomplete) => {
                if buf.len() > MAX_MESSAGE_BYTES {
                    return Err(format!("message larger than {MAX_MESSAGE_BYTES} bytes"));
                }
                return Ok(messages);
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Destination {
        Destination {
            addr: "127.0.0.1:5".parse().unwrap(),
            transport: TransportKind::Tcp,
        }
    }

    /// Runs `run_stream` on one end of an in-memory pipe; returns the other end, the inbound
    /// receiver and the write queue.
    fn start(
        options: StreamOptions,
    ) -> (
        tokio::io::DuplexStream,
        mpsc::Receiver<Inbound>,
        mpsc::Sender<Vec<u8>>,
    ) {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (inbound, rx) = mpsc::channel(16);
        let (writer, queue) = mpsc::channel(4);
        tokio::spawn(run_stream(server, peer(), queue, inbound, options));
        (client, rx, writer)
    }

    async fn read_some(client: &mut tokio::io::DuplexStream) -> Vec<u8> {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf)).await {
            Ok(Ok(n)) => buf[..n].to_vec(),
            other => panic!("nothing to read: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_ping_split_across_reads_gets_its_pong() {
        let (mut client, _rx, _writer) = start(StreamOptions::default());
        for halves in [
            [&b"\r\n"[..], b"\r\n"],
            [b"\r\n\r", b"\n"],
            [b"\r", b"\n\r\n"],
        ] {
            client.write_all(halves[0]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            client.write_all(halves[1]).await.unwrap();
            assert_eq!(read_some(&mut client).await, b"\r\n", "{halves:?}");
        }
        // Whole pings still get exactly one pong each.
        client.write_all(b"\r\n\r\n").await.unwrap();
        assert_eq!(read_some(&mut client).await, b"\r\n");
    }

    #[tokio::test]
    async fn an_incomplete_message_is_closed_after_the_message_timeout() {
        let options = StreamOptions {
            keepalive: None,
            message_timeout: Some(Duration::from_millis(300)),
        };
        let (mut client, mut rx, _writer) = start(options);
        client
            .write_all(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP")
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("closed in time");
        let Some(Inbound::Closed { error: Some(e), .. }) = closed else {
            panic!("expected Closed with an error, got {closed:?}");
        };
        assert!(e.contains("no complete message"), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(250));
        // The peer sees the connection end.
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), client.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    }

    #[tokio::test]
    async fn a_complete_message_then_idle_keeps_the_connection() {
        let options = StreamOptions {
            keepalive: None,
            message_timeout: Some(Duration::from_millis(200)),
        };
        let (mut client, mut rx, _writer) = start(options);
        client
            .write_all(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n")
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        assert!(matches!(got, Ok(Some(Inbound::Message { .. }))), "{got:?}");
        // Idle after a message (a registered flow waiting for calls) is fine.
        let quiet = tokio::time::timeout(Duration::from_millis(600), rx.recv()).await;
        assert!(quiet.is_err(), "closed while idle: {quiet:?}");
        client.write_all(b"\r\n\r\n").await.unwrap();
        assert_eq!(read_some(&mut client).await, b"\r\n");
    }

    #[tokio::test]
    async fn a_peer_that_stops_answering_pings_is_lost() {
        let options = StreamOptions {
            keepalive: Some(Duration::from_millis(150)),
            message_timeout: None,
        };
        let (mut client, mut rx, _writer) = start(options);
        assert_eq!(read_some(&mut client).await, b"\r\n\r\n");
        client.write_all(b"\r\n").await.unwrap();
        // The pong is not taken as half of a ping: nothing comes back but the next ping.
        assert!(read_some(&mut client).await.starts_with(b"\r\n\r\n"));
        // No pong this time.
        let lost = tokio::time::timeout(Duration::from_secs(3), rx.recv())
            .await
            .expect("lost in time");
        let Some(Inbound::Lost { error, .. }) = lost else {
            panic!("expected Lost, got {lost:?}");
        };
        assert!(error.contains("pong"), "{error}");
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_pings_is_kept() {
        // Servers without RFC 5626 support never pong: that is no reason to drop them.
        let options = StreamOptions {
            keepalive: Some(Duration::from_millis(100)),
            message_timeout: None,
        };
        let (mut client, mut rx, _writer) = start(options);
        let mut got = Vec::new();
        while got.len() < 16 {
            got.extend(read_some(&mut client).await);
        }
        assert!(got.chunks(4).all(|c| c == b"\r\n\r\n"), "{got:?}");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn via_sent_by_of_tls_requests() {
        let req = b"INVITE sips:bob@127.0.0.1:5061 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:40000;branch=z9hG4bK1;rport, SIP/2.0/TLS 10.0.0.1\r\nCSeq: 1 INVITE\r\n\r\n";
        assert_eq!(
            tls_via_sent_by(req),
            Some("127.0.0.1:40000".parse().unwrap())
        );
        let no_port = b"BYE sips:a@b SIP/2.0\r\nv: SIP/2.0/TLS [::1];branch=z9hG4bK2\r\n\r\n";
        assert_eq!(
            tls_via_sent_by(no_port),
            Some("[::1]:5061".parse().unwrap())
        );
        let udp = b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK3\r\n\r\n";
        assert_eq!(tls_via_sent_by(udp), None);
        let response = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TLS 127.0.0.1:1;branch=z9hG4bK4\r\n\r\n";
        assert_eq!(tls_via_sent_by(response), None);
        let name =
            b"BYE sips:a@b SIP/2.0\r\nVia: SIP/2.0/TLS host.example:5061;branch=z9hG4bK5\r\n\r\n";
        assert_eq!(tls_via_sent_by(name), None);
    }
}
