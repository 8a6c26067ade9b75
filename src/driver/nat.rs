//! NAT glue for the SIP task: the STUN Binding on the SIP socket (at start and before each
//! registration refresh), UDP keep-alives to the next hop while registered, and a one-shot
//! Binding on a call's RTP socket before its SDP is written. The protocol logic is the sans-IO
//! `nat::stun::BindingClient`; this file only adds clocks and sockets.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::dns::SystemDns;
use crate::dns::{Preferences, ResolveError};
use crate::nat::stun::{self, BindingClient, BindingFailure, Schedule};
use crate::sip::registration::refresh_delay;
use crate::sip::transaction::TransportKind;

/// What the RFC 5626 §4.4.1 keep-alive on UDP is: a double CRLF, which registrars and proxies
/// ignore (ours does too).
pub const KEEPALIVE: &[u8] = b"\r\n\r\n";
/// baresip's and RFC 5626's usual interval, under the 30 s many NATs keep a UDP binding.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(29);
/// The STUN port when `stun_server` names none (RFC 5389 §9).
pub const STUN_PORT: u16 = crate::dns::STUN_PORT;
/// The Binding on an RTP socket holds up that call's offer or answer (not the SIP task, it runs
/// in a task of its own): 3 tries, 200/400 ms apart, 1 s in
/// all.
pub const MEDIA_SCHEDULE: Schedule = Schedule {
    rto: Duration::from_millis(200),
    requests: 3,
    last_wait_factor: 2,
};
/// The SIP socket's Binding at start holds up the first REGISTER; it gets a little longer.
pub const SIP_SCHEDULE: Schedule = Schedule {
    rto: Duration::from_millis(250),
    requests: 4,
    last_wait_factor: 4,
};

/// NAT settings from the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatSetup {
    /// `host:port` (port defaults to 3478) of a STUN server; `None`: no STUN.
    pub stun_server: Option<String>,
    /// UDP keep-alive interval while registered; `None`: none.
    pub keepalive: Option<Duration>,
    /// The account set `keepalive_secs = 0`: no keep-alives even behind a NAT.
    pub keepalive_off: bool,
    /// ICE for calls (the account's `ice`); `None`: off.
    pub ice: Option<IceAccount>,
}

/// The account's ICE settings: its TURN server and credentials (STUN is `stun_server`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IceAccount {
    /// `turn_server` as written (`ice::parse_turn_server` reads it).
    pub turn_server: Option<String>,
    pub turn_username: String,
    /// Never logged.
    pub turn_password: String,
    /// `[sip] tls_ca_file`: trusted for a `turns:` server too.
    pub tls_ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for IceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceAccount")
            .field("turn_server", &self.turn_server)
            .field("turn_username", &self.turn_username)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish_non_exhaustive()
    }
}

/// What the SIP task should do for NAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatOutput {
    /// Send these bytes over the SIP UDP socket.
    Transmit(SocketAddr, Vec<u8>),
    /// The STUN server sees the SIP socket at this address.
    Learned(SocketAddr),
    /// The Binding failed: carry on with the local address (the text is for a warning).
    Failed(String),
}

/// NAT state of the SIP socket.
#[derive(Debug)]
pub struct SipNat {
    server: Option<SocketAddr>,
    client: Option<BindingClient>,
    keepalive: Option<Duration>,
    keepalive_to: Option<SocketAddr>,
    next_keepalive: Option<Instant>,
    next_rebind: Option<Instant>,
    /// The first REGISTER waits for the first Binding to end (learned or failed).
    pub register_when_bound: bool,
    /// Keep-alives sent so far (for logs).
    pub keepalives_sent: u64,
}

impl SipNat {
    /// `keepalive_to`: the UDP next hop (registrar or outbound proxy), when there is one.
    pub fn new(
        server: Option<SocketAddr>,
        keepalive: Option<Duration>,
        keepalive_to: Option<SocketAddr>,
    ) -> SipNat {
        SipNat {
            server,
            client: None,
            keepalive: keepalive.filter(|d| !d.is_zero()),
            keepalive_to,
            next_keepalive: None,
            next_rebind: None,
            register_when_bound: false,
            keepalives_sent: 0,
        }
    }

    pub fn stun_server(&self) -> Option<SocketAddr> {
        self.server
    }

    /// Keep-alives go to the registration's current flow (it moves with DNS failover).
    pub fn set_keepalive_target(&mut self, to: Option<SocketAddr>) {
        self.keepalive_to = to;
    }

    /// Behind a NAT (the registrar saw another address than ours): keep its UDP mapping open
    /// with the default interval, unless the config chose one (or turned them off).
    pub fn keepalive_behind_nat(&mut self, off: bool, now: Instant) {
        if off || self.keepalive.is_some() {
            return;
        }
        self.keepalive = Some(DEFAULT_KEEPALIVE);
        self.next_keepalive = Some(now + DEFAULT_KEEPALIVE);
    }

    /// A fresh transaction id for a Binding (also used for RTP sockets): 96 bits from the
    /// OS-seeded generator (RFC 5389 §6: an off-path attacker who could predict it could
    /// forge the answer and give us a false public address).
    pub fn next_transaction(&mut self) -> stun::TransactionId {
        rand::random()
    }

    /// Starts a Binding on the SIP socket; false when no STUN server is configured.
    pub fn start_binding(&mut self, now: Instant) -> bool {
        let Some(server) = self.server else {
            return false;
        };
        let id = self.next_transaction();
        self.client = Some(BindingClient::new(server, id, SIP_SCHEDULE, now));
        true
    }

    /// A STUN datagram from `from` on the SIP socket. Anything that is not our answer is
    /// dropped (never handed to the SIP parser).
    pub fn handle_input(&mut self, from: SocketAddr, bytes: &[u8], out: &mut Vec<NatOutput>) {
        let Some(client) = self.client.as_mut() else {
            tracing::debug!(%from, "stray STUN datagram on the SIP socket dropped");
            return;
        };
        if !client.handle_input(from, bytes) {
            tracing::debug!(%from, "STUN datagram for no transaction of ours dropped");
        }
        self.finish(out);
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<NatOutput>) {
        if let Some(client) = self.client.as_mut() {
            client.handle_timeout(now);
            while let Some((dest, bytes)) = client.poll_transmit(now) {
                out.push(NatOutput::Transmit(dest, bytes));
            }
        }
        self.finish(out);
        if self.next_rebind.is_some_and(|at| now >= at) {
            self.next_rebind = None;
            if self.start_binding(now) {
                self.handle_timeout(now, out);
            }
        }
        if let (Some(at), Some(every), Some(to)) =
            (self.next_keepalive, self.keepalive, self.keepalive_to)
            && now >= at
        {
            out.push(NatOutput::Transmit(to, KEEPALIVE.to_vec()));
            self.keepalives_sent += 1;
            self.next_keepalive = Some(now + every);
        }
    }

    fn finish(&mut self, out: &mut Vec<NatOutput>) {
        let Some(outcome) = self.client.as_ref().and_then(|c| c.outcome().cloned()) else {
            return;
        };
        let server = self.client.take().map(|c| c.server());
        out.push(match outcome {
            Ok(addr) => NatOutput::Learned(addr),
            Err(e) => NatOutput::Failed(format!(
                "STUN server {}: {e}; using the local address",
                server.map(|s| s.to_string()).unwrap_or_default()
            )),
        });
    }

    /// The registration changed: keep-alives run while registered, and a new Binding is
    /// due shortly before the refresh of a binding of `expires` seconds.
    pub fn registration(&mut self, registered: bool, expires: Option<u32>, now: Instant) {
        if !registered {
            self.next_keepalive = None;
            self.next_rebind = None;
            return;
        }
        if let Some(every) = self.keepalive
            && self.next_keepalive.is_none()
        {
            self.next_keepalive = Some(now + every);
        }
        if self.server.is_some()
            && let Some(expires) = expires
        {
            let refresh = refresh_delay(expires);
            let early = SIP_SCHEDULE.give_up_after() + Duration::from_secs(1);
            self.next_rebind =
                Some(now + refresh.saturating_sub(early).max(Duration::from_secs(1)));
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.client.as_ref().and_then(BindingClient::poll_timeout),
            self.next_rebind,
            self.next_keepalive.filter(|_| self.keepalive_to.is_some()),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Why `stun_server` gave no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunServerError {
    #[error("bad port in stun_server `{server}`")]
    BadPort { server: String },
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

/// Resolves `stun_server` through a resolver made for this one call. Prefer
/// [`resolve_stun_with`] and the SIP task's shared `SystemDns` (one cache).
pub async fn resolve_stun(server: &str, like: SocketAddr) -> Result<SocketAddr, StunServerError> {
    resolve_stun_with(&SystemDns::new(), server, like).await
}

/// Resolves `stun_server`: an IP literal (`192.0.2.1`, `192.0.2.1:3479`, `2001:db8::1`,
/// `[2001:db8::1]:3479`) stays as it is; `host:port` asks A/AAAA; a bare `host` asks SRV
/// `_stun._udp.host` first, then A/AAAA with port 3478 (RFC 5389 §9). Among the addresses,
/// the first of the family of `like` (the SIP socket's address) wins, since the Binding goes
/// out of that socket.
pub async fn resolve_stun_with(
    dns: &SystemDns,
    server: &str,
    like: SocketAddr,
) -> Result<SocketAddr, StunServerError> {
    let (host, port) = match parse_stun_server(server)? {
        StunServer::Addr(addr) => return Ok(addr),
        StunServer::Name(host, port) => (host, port),
    };
    let prefs = Preferences {
        preferred: TransportKind::Udp,
        tls: false,
        ipv4: true,
        ipv6: true,
    };
    let resolved = dns.resolve_stun(host, port, &prefs).await?;
    tracing::debug!(server, trail = %resolved.trail, "STUN server located");
    let addrs: Vec<SocketAddr> = resolved.targets.iter().map(|d| d.addr).collect();
    // `resolve_stun` returns at least one address or an error.
    addrs
        .iter()
        .find(|a| a.is_ipv4() == like.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| {
            StunServerError::Resolve(ResolveError::NoRecords {
                domain: host.to_string(),
            })
        })
}

#[derive(Debug, PartialEq, Eq)]
enum StunServer<'a> {
    Addr(SocketAddr),
    Name(&'a str, Option<u16>),
}

fn parse_stun_server(server: &str) -> Result<StunServer<'_>, StunServerError> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(StunServer::Addr(addr));
    }
    let bare = server.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(StunServer::Addr(SocketAddr::new(ip, STUN_PORT)));
    }
    match server.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port = port.parse::<u16>().ok().filter(|p| *p != 0);
            let port = port.ok_or_else(|| StunServerError::BadPort {
                server: server.to_string(),
            })?;
            Ok(StunServer::Name(host, Some(port)))
        }
        _ => Ok(StunServer::Name(server, None)),
    }
}

/// One Binding on a socket nobody else reads yet (a call's RTP socket before media starts).
/// Datagrams that are not the answer are dropped.
pub async fn binding_on_socket(
    socket: &UdpSocket,
    server: SocketAddr,
    transaction: stun::TransactionId,
    schedule: Schedule,
) -> Result<SocketAddr, BindingFailure> {
    let mut client = BindingClient::new(server, transaction, schedule, Instant::now());
    let mut buf = vec![0u8; stun::MAX_MESSAGE];
    loop {
        let now = Instant::now();
        client.handle_timeout(now);
        while let Some((dest, bytes)) = client.poll_transmit(now) {
            if let Err(e) = socket.send_to(&bytes, dest).await {
                tracing::debug!(%dest, error = %e, "STUN send failed");
            }
        }
        if let Some(outcome) = client.outcome() {
            return outcome.clone();
        }
        let Some(deadline) = client.poll_timeout() else {
            return Err(BindingFailure::Timeout(schedule.requests));
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        if let Ok(Ok((n, from))) = tokio::time::timeout(wait, socket.recv_from(&mut buf)).await
            && let Some(bytes) = buf.get(..n)
        {
            client.handle_input(from, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn stun_server_settings_parse() {
        use StunServer::{Addr, Name};
        assert_eq!(
            parse_stun_server("192.0.2.1"),
            Ok(Addr(a("192.0.2.1:3478")))
        );
        assert_eq!(
            parse_stun_server("192.0.2.1:3479"),
            Ok(Addr(a("192.0.2.1:3479")))
        );
        assert_eq!(
            parse_stun_server("2001:db8::1"),
            Ok(Addr(a("[2001:db8::1]:3478")))
        );
        assert_eq!(
            parse_stun_server("[2001:db8::1]"),
            Ok(Addr(a("[2001:db8::1]:3478")))
        );
        assert_eq!(
            parse_stun_server("[2001:db8::1]:3479"),
            Ok(Addr(a("[2001:db8::1]:3479")))
        );
        assert_eq!(parse_stun_server("stun.test"), Ok(Name("stun.test", None)));
        assert_eq!(
            parse_stun_server("stun.test:3479"),
            Ok(Name("stun.test", Some(3479)))
        );
        for bad in [
            "stun.test:x",
            "stun.test:0",
            "stun.test:70000",
            "stun.test:",
        ] {
            assert_eq!(
                parse_stun_server(bad),
                Err(StunServerError::BadPort {
                    server: bad.to_string()
                }),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn stun_ip_literals_need_no_dns() {
        // A resolver that cannot work: any query would fail, so success means none was made.
        let dns = SystemDns::from_resolv_conf("/nonexistent/resolv.conf");
        let like = a("192.0.2.9:5060");
        assert_eq!(
            resolve_stun_with(&dns, "198.51.100.7", like).await,
            Ok(a("198.51.100.7:3478"))
        );
        let err = resolve_stun_with(&dns, "stun.test", like)
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "cannot look up stun.test: no DNS resolver (cannot read /nonexistent/resolv.conf"
            ),
            "{err}"
        );
    }

    #[test]
    fn keepalives_run_only_while_registered() {
        let t0 = Instant::now();
        let mut nat = SipNat::new(
            None,
            Some(Duration::from_secs(1)),
            Some(a("127.0.0.1:5060")),
        );
        assert_eq!(nat.poll_timeout(), None);
        nat.registration(true, Some(600), t0);
        assert_eq!(nat.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        let mut out = Vec::new();
        nat.handle_timeout(t0 + Duration::from_secs(1), &mut out);
        assert_eq!(
            out,
            vec![NatOutput::Transmit(a("127.0.0.1:5060"), KEEPALIVE.to_vec())]
        );
        nat.registration(false, None, t0);
        assert_eq!(nat.poll_timeout(), None);
    }

    #[test]
    fn zero_interval_means_off() {
        let mut nat = SipNat::new(None, Some(Duration::ZERO), Some(a("127.0.0.1:5060")));
        nat.registration(true, Some(600), Instant::now());
        assert_eq!(nat.poll_timeout(), None);
    }

    #[test]
    fn binding_learns_then_rebinds_before_the_refresh() {
        let t0 = Instant::now();
        let server = a("127.0.0.1:3478");
        let mut nat = SipNat::new(Some(server), None, None);
        assert!(nat.start_binding(t0));
        let mut out = Vec::new();
        nat.handle_timeout(t0, &mut out);
        let Some(NatOutput::Transmit(dest, req)) = out.pop() else {
            panic!("a request")
        };
        assert_eq!(dest, server);
        let msg = stun::parse(&req).unwrap();
        let answer = stun::binding_success(&msg.transaction, a("192.0.2.1:40000"));
        nat.handle_input(server, &answer, &mut out);
        assert_eq!(out, vec![NatOutput::Learned(a("192.0.2.1:40000"))]);
        out.clear();
        // Registered for 600 s: the refresh is at 540 s; the new Binding comes before it.
        nat.registration(true, Some(600), t0);
        let rebind = nat.poll_timeout().unwrap();
        assert!(rebind > t0 + Duration::from_secs(500) && rebind < t0 + Duration::from_secs(540));
        nat.handle_timeout(rebind, &mut out);
        assert!(matches!(out.first(), Some(NatOutput::Transmit(d, _)) if *d == server));
    }

    #[test]
    fn a_silent_server_fails_in_bounded_time() {
        let t0 = Instant::now();
        let mut nat = SipNat::new(Some(a("127.0.0.1:3478")), None, None);
        nat.start_binding(t0);
        let mut out = Vec::new();
        let mut now = t0;
        for _ in 0..20 {
            nat.handle_timeout(now, &mut out);
            match nat.poll_timeout() {
                Some(next) => now = next,
                None => break,
            }
        }
        assert!(matches!(out.last(), Some(NatOutput::Failed(_))), "{out:?}");
        assert_eq!(now - t0, SIP_SCHEDULE.give_up_after());
        let sent = out
            .iter()
            .filter(|o| matches!(o, NatOutput::Transmit(..)))
            .count();
        assert_eq!(sent, SIP_SCHEDULE.requests as usize);
    }
}
