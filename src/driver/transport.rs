//! Sockets: one UDP socket and one TCP listener on the same port, plus outgoing TCP
//! connections. Every reader and connector is its own small task that reports to the SIP task
//! through one channel (`Inbound`), so the SIP task owns the connection table without a lock.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use crate::sip::parse::{MAX_MESSAGE_BYTES, StreamFrame, parse_stream};
use crate::sip::transaction::{Destination, TransportKind};

/// How long an outgoing TCP connect may take before the transaction hears of a transport error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages queued for one connection while it connects or writes; past this we drop.
const WRITE_QUEUE: usize = 256;
/// Open TCP connections we keep at most (a flood of connections cannot exhaust memory).
const MAX_CONNECTIONS: usize = 512;

/// What the socket tasks report.
#[derive(Debug)]
pub enum Inbound {
    /// One datagram, or one framed message from a stream.
    Message { source: Destination, bytes: Vec<u8> },
    /// A stream connection is up (accepted or connected); messages to `peer` go to `writer`.
    Connected {
        peer: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    /// A stream connection ended or could not be made.
    Closed {
        peer: Destination,
        error: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("TLS transport is not available yet")]
    TlsUnsupported,
    #[error("send to {dest} failed: {source}")]
    Send { dest: SocketAddr, source: io::Error },
    #[error("connection to {0} is congested; message dropped")]
    Congested(SocketAddr),
}

pub struct Transport {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    connections: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    inbound: mpsc::Sender<Inbound>,
}

impl Transport {
    /// Binds UDP on `listen` (port 0 picks one) and TCP on the same address and port.
    pub async fn bind(
        listen: SocketAddr,
    ) -> Result<(Transport, mpsc::Receiver<Inbound>), TransportError> {
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
        let tcp = TcpListener::bind(local)
            .await
            .map_err(|source| TransportError::Bind {
                addr: local,
                source,
            })?;
        let (inbound, rx) = mpsc::channel(1024);
        let udp = Arc::new(udp);
        tokio::spawn(udp_reader(udp.clone(), inbound.clone()));
        tokio::spawn(tcp_acceptor(tcp, inbound.clone()));
        Ok((
            Transport {
                udp,
                local,
                connections: HashMap::new(),
                inbound,
            },
            rx,
        ))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Records a stream connection reported by a socket task.
    pub fn connected(&mut self, peer: SocketAddr, writer: mpsc::Sender<Vec<u8>>) {
        if self.connections.len() >= MAX_CONNECTIONS && !self.connections.contains_key(&peer) {
            tracing::warn!(%peer, "too many TCP connections; not keeping this one");
            return;
        }
        self.connections.insert(peer, writer);
    }

    pub fn closed(&mut self, peer: SocketAddr) {
        self.connections.remove(&peer);
    }

    /// Sends one message. Stream destinations reuse an open connection or start one; errors of
    /// a connection being made come back later as `Inbound::Closed`.
    pub async fn send(&mut self, dest: Destination, bytes: Vec<u8>) -> Result<(), TransportError> {
        match dest.transport {
            TransportKind::Udp => self
                .udp
                .send_to(&bytes, dest.addr)
                .await
                .map(|_| ())
                .map_err(|source| TransportError::Send {
                    dest: dest.addr,
                    source,
                }),
            TransportKind::Tcp => {
                if let Some(writer) = self.connections.get(&dest.addr) {
                    return match writer.try_send(bytes) {
                        Ok(()) => Ok(()),
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            Err(TransportError::Congested(dest.addr))
                        }
                        Err(mpsc::error::TrySendError::Closed(bytes)) => {
                            self.connections.remove(&dest.addr);
                            self.connect(dest.addr, bytes);
                            Ok(())
                        }
                    };
                }
                self.connect(dest.addr, bytes);
                Ok(())
            }
            TransportKind::Tls => Err(TransportError::TlsUnsupported),
        }
    }

    fn connect(&mut self, peer: SocketAddr, first: Vec<u8>) {
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        // Queue the first message before the connection exists; the connector writes it.
        let _ = writer.try_send(first);
        self.connections.insert(peer, writer);
        let inbound = self.inbound.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await {
                Ok(Ok(stream)) => run_stream(stream, peer, queue, inbound).await,
                Ok(Err(e)) => report_closed(&inbound, peer, Some(e.to_string())).await,
                Err(_) => report_closed(&inbound, peer, Some("connect timed out".into())).await,
            }
        });
    }
}

async fn report_closed(inbound: &mpsc::Sender<Inbound>, peer: SocketAddr, error: Option<String>) {
    let _ = inbound
        .send(Inbound::Closed {
            peer: Destination {
                addr: peer,
                transport: TransportKind::Tcp,
            },
            error,
        })
        .await;
}

async fn udp_reader(socket: Arc<UdpSocket>, inbound: mpsc::Sender<Inbound>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
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
            // ICMP port unreachable shows up here on Linux as ConnectionRefused; keep reading.
            Err(e)
                if e.kind() == io::ErrorKind::ConnectionRefused
                    || e.kind() == io::ErrorKind::ConnectionReset => {}
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn tcp_acceptor(listener: TcpListener, inbound: mpsc::Sender<Inbound>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (writer, queue) = mpsc::channel(WRITE_QUEUE);
                if inbound
                    .send(Inbound::Connected { peer, writer })
                    .await
                    .is_err()
                {
                    return;
                }
                tokio::spawn(run_stream(stream, peer, queue, inbound.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads framed messages from one connection and writes what the SIP task queues for it.
async fn run_stream(
    stream: TcpStream,
    peer: SocketAddr,
    mut queue: mpsc::Receiver<Vec<u8>>,
    inbound: mpsc::Sender<Inbound>,
) {
    let source = Destination {
        addr: peer,
        transport: TransportKind::Tcp,
    };
    let (mut reader, mut writer) = stream.into_split();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 16 * 1024];
    let error = loop {
        tokio::select! {
            read = reader.read(&mut chunk) => {
                let n = match read {
                    Ok(0) => break None,
                    Ok(n) => n,
                    Err(e) => break Some(e.to_string()),
                };
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
                match drain_frames(&mut buf, &source, &inbound, &mut writer).await {
                    Ok(()) => {}
                    Err(e) => break Some(e),
                }
            }
            next = queue.recv() => match next {
                Some(bytes) => {
                    if let Err(e) = writer.write_all(&bytes).await {
                        break Some(e.to_string());
                    }
                }
                None => break None,
            },
        }
    };
    report_closed(&inbound, peer, error).await;
}

/// Takes every complete message off the front of `buf`. A stream cannot resynchronise after
/// garbage, so a framing error closes the connection.
async fn drain_frames(
    buf: &mut Vec<u8>,
    source: &Destination,
    inbound: &mpsc::Sender<Inbound>,
    writer: &mut tokio::net::tcp::OwnedWriteHalf,
) -> Result<(), String> {
    loop {
        match parse_stream(buf) {
            Ok(StreamFrame::Message(_, used)) => {
                let bytes: Vec<u8> = buf.drain(..used.min(buf.len())).collect();
                inbound
                    .send(Inbound::Message {
                        source: *source,
                        bytes,
                    })
                    .await
                    .map_err(|_| "engine stopped".to_string())?;
            }
            Ok(StreamFrame::KeepAlive(used)) => {
                let ping: Vec<u8> = buf.drain(..used.min(buf.len())).collect();
                // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                if ping.windows(4).any(|w| w == b"\r\n\r\n") {
                    writer.write_all(b"\r\n").await.map_err(|e| e.to_string())?;
                }
            }
            Ok(StreamFrame::Incomplete) => {
                if buf.len() > MAX_MESSAGE_BYTES {
                    return Err(format!("message larger than {MAX_MESSAGE_BYTES} bytes"));
                }
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}
