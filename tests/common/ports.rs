//! Free loopback ports and a SIP readiness probe.

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use super::HarnessError;

const LOOPBACK: &str = "127.0.0.1";

/// How many random ports to try before giving up on finding a free pair.
const PORT_ATTEMPTS: usize = 200;

/// A UDP port on 127.0.0.1 that was free a moment ago, and free for TCP too
/// (Kamailio and baresip listen on both). Another process may grab it before
/// the caller binds it; the window is small and the tests tolerate retrying.
pub fn free_udp_port() -> Result<u16, HarnessError> {
    for _ in 0..PORT_ATTEMPTS {
        let udp = UdpSocket::bind((LOOPBACK, 0))
            .map_err(|e| HarnessError::io("binding a UDP port on 127.0.0.1", e))?;
        let port = udp
            .local_addr()
            .map_err(|e| HarnessError::io("reading a bound UDP address", e))?
            .port();
        if TcpListener::bind((LOOPBACK, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(HarnessError::InvalidInput {
        what: "port search",
        value: format!("{PORT_ATTEMPTS} attempts"),
        why: "no port was free for both UDP and TCP",
    })
}

/// An even UDP port for RTP and the odd one after it for RTCP, both free.
pub fn free_port_pair() -> Result<(u16, u16), HarnessError> {
    for _ in 0..PORT_ATTEMPTS {
        let first = UdpSocket::bind((LOOPBACK, 0))
            .map_err(|e| HarnessError::io("binding a UDP port on 127.0.0.1", e))?;
        let port = first
            .local_addr()
            .map_err(|e| HarnessError::io("reading a bound UDP address", e))?
            .port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        let rtcp = port + 1;
        if UdpSocket::bind((LOOPBACK, rtcp)).is_ok() {
            return Ok((port, rtcp));
        }
    }
    Err(HarnessError::InvalidInput {
        what: "port search",
        value: format!("{PORT_ATTEMPTS} attempts"),
        why: "no even/odd UDP port pair was free",
    })
}

/// True when some process has a UDP socket bound to `port` on 127.0.0.1 or
/// on the wildcard address (read from /proc/net/udp, so nothing is sent:
/// sipp counts every incoming request, even a probe, as a call).
pub fn udp_port_bound(port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/udp") else {
        return false;
    };
    table.lines().skip(1).any(|line| {
        let Some(local) = line.split_whitespace().nth(1) else {
            return false;
        };
        let Some((ip_hex, port_hex)) = local.split_once(':') else {
            return false;
        };
        let loopback_or_any = ip_hex == "0100007F" || ip_hex == "00000000";
        loopback_or_any && u16::from_str_radix(port_hex, 16) == Ok(port)
    })
}

/// Waits until `addr` answers a SIP OPTIONS with any SIP response.
/// Retransmits every 100 ms (the probe may arrive before the peer binds);
/// returns the first line of the response.
pub fn wait_udp_answer(addr: SocketAddr, timeout: Duration) -> Result<String, HarnessError> {
    let socket = UdpSocket::bind((LOOPBACK, 0))
        .map_err(|e| HarnessError::io("binding the probe socket", e))?;
    wait_udp_answer_on(&socket, addr, timeout)
}

/// Like `wait_udp_answer`, probing from `socket` (e.g. one made inside a lab
/// namespace: tests/common/lab.rs). Bind it to a specific address, not the
/// wildcard: the probe's Via names the socket's local address.
pub fn wait_udp_answer_on(
    socket: &UdpSocket,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<String, HarnessError> {
    // Connected, so datagrams from anyone else are filtered by the kernel.
    socket
        .connect(addr)
        .map_err(|e| HarnessError::io(format!("connecting the probe to {addr}"), e))?;
    let local = socket
        .local_addr()
        .map_err(|e| HarnessError::io("reading the probe address", e))?;
    let started = Instant::now();
    let deadline = started + timeout;
    let retransmit_every = Duration::from_millis(100);
    let mut buffer = [0u8; 4096];
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let probe = options_probe(addr, local, attempt);
        // A refused send just means nobody listens yet.
        let _ = socket.send(probe.as_bytes());
        let next_send = Instant::now() + retransmit_every;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("a SIP answer from {addr}"),
                    waited: now - started,
                    recent: String::new(),
                });
            }
            if now >= next_send {
                break;
            }
            let wait = next_send.min(deadline) - now;
            socket
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .map_err(|e| HarnessError::io("setting the probe timeout", e))?;
            match socket.recv(&mut buffer) {
                Ok(len) => {
                    let reply = String::from_utf8_lossy(buffer.get(..len).unwrap_or(&[]));
                    if let Some(status) = reply.lines().next().filter(|l| l.starts_with("SIP/2.0 "))
                    {
                        return Ok(status.to_owned());
                    }
                }
                // ICMP port unreachable surfaces as ConnectionRefused: the
                // peer is not bound yet; keep waiting for the next send time.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    // The error arrives at once; wait out the rest of this
                    // period on the socket rather than sending in a tight loop.
                    continue;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(HarnessError::io("receiving the probe answer", e)),
            }
        }
    }
}

fn options_probe(target: SocketAddr, local: SocketAddr, attempt: u32) -> String {
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{port}-{attempt};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag=probe{port}\r\n\
         To: <sip:{target}>\r\n\
         Call-ID: probe-{port}@127.0.0.1\r\n\
         CSeq: {attempt} OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n",
        port = local.port(),
    )
}
