//! A call's ICE before its offer or answer: the TURN server resolved, the host address made
//! concrete, candidates gathered on the RTP socket (`ice_task::gather`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::ice_task::{self, IceHandle};
use super::nat::IceAccount;
use crate::ice::agent::TurnSetup;
use crate::ice::{TurnTransport, parse_turn_server};
use crate::sdp::{IceCredentials, LocalIce};

/// Bound on resolving the TURN server's name for a call.
const RESOLVE_LIMIT: Duration = Duration::from_secs(2);

/// ICE gathered for a call: the handle, our SDP attributes, the default candidate.
pub struct PreparedIce {
    pub handle: IceHandle,
    pub local: LocalIce,
    pub default: SocketAddr,
    /// The default candidate is our host address: the SDP's `c=` then stays what the UA
    /// picks towards the peer (as without ICE), which may be another of our addresses.
    pub default_is_host: bool,
}

/// How a call's media is prepared.
pub enum Outcome {
    Ice(PreparedIce),
    /// Without ICE, on the RTP socket: `warning` says why, when the user should know (a bad
    /// TURN server); none when there was simply no candidate (loopback only: ICE has nothing
    /// to offer there that `c=` does not).
    Plain {
        rtp: UdpSocket,
        /// The RTCP socket, when it was given for an RTCP component.
        rtcp: Option<UdpSocket>,
        warning: Option<String>,
    },
    /// ICE kept the socket and failed: the call cannot go.
    Lost(String),
}

/// Gathers on `rtp` (bound on `bind_ip`), and on `rtcp` for an RTCP component when given
/// (RFC 5761 §5.1.3: an offer, or an answer to a peer that does not multiplex RTCP).
pub async fn prepare(
    rtp: UdpSocket,
    rtcp: Option<UdpSocket>,
    account: &IceAccount,
    stun: Option<SocketAddr>,
    controlling: bool,
) -> Outcome {
    let plain = |rtp, rtcp, warning| Outcome::Plain { rtp, rtcp, warning };
    let local = match rtp.local_addr() {
        Ok(a) => a,
        Err(e) => return plain(rtp, rtcp, Some(format!("ICE: {e}"))),
    };
    let turn = match &account.turn_server {
        Some(text) => match turn_setups(text, account, local.ip()).await {
            Ok(t) => t,
            Err(e) => {
                return plain(rtp, rtcp, Some(format!("turn_server: {e}; no TURN relay")));
            }
        },
        None => Vec::new(),
    };
    let towards = turn.first().map(|t| t.server).or(stun);
    let host = SocketAddr::new(concrete_ip(local.ip(), towards).await, local.port());
    let setup = ice_task::setup(
        IceCredentials::from_random(rand::random()),
        host,
        stun,
        turn,
        controlling,
    );
    match ice_task::gather(rtp, rtcp, setup).await {
        Ok((handle, local, _)) if local.candidates.is_empty() => match handle.release().await {
            Some((rtp, rtcp)) => plain(rtp, rtcp, None),
            None => Outcome::Lost("ICE: the RTP socket was lost".to_owned()),
        },
        Ok((handle, local, default)) => Outcome::Ice(PreparedIce {
            handle,
            local,
            default,
            default_is_host: default == host,
        }),
        Err(e) => Outcome::Lost(format!("ICE: {e}")),
    }
}

/// The first address of `family_of`'s family (any family when it is unspecified), else the
/// first one.
fn same_family(found: &[SocketAddr], family_of: IpAddr, host: &str) -> Result<SocketAddr, String> {
    found
        .iter()
        .find(|a| a.is_ipv4() == family_of.is_ipv4() || family_of.is_unspecified())
        .or(found.first())
        .copied()
        .ok_or_else(|| format!("{host} has no address"))
}

/// One `TurnSetup` per transport to try; a name is resolved here: with a port by A/AAAA, a
/// bare domain by SRV `_turn._udp` (RFC 8656 §3.1), then A/AAAA on port 3478.
async fn turn_setups(
    text: &str,
    account: &IceAccount,
    family_of: IpAddr,
) -> Result<Vec<TurnSetup>, String> {
    let server = parse_turn_server(text)?;
    let port = server.port.unwrap_or(crate::ice::server::TURN_PORT);
    let address = match server.host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        // SRV `_turn._udp` names the UDP server (the same host serves TCP): not for `turns:`.
        Err(_) if server.port.is_none() && !server.transports.contains(&TurnTransport::Tls) => {
            let prefs = crate::dns::Preferences {
                preferred: crate::sip::transaction::TransportKind::Udp,
                tls: false,
                ipv4: true,
                ipv6: true,
            };
            let resolved = super::dns::SystemDns::new()
                .with_timeout(RESOLVE_LIMIT)
                .resolve_turn(&server.host, None, &prefs)
                .await
                .map_err(|e| format!("{}: {e}", server.host))?;
            tracing::debug!(server = %server.host, trail = %resolved.trail, "TURN server located");
            let found: Vec<SocketAddr> = resolved.targets.iter().map(|d| d.addr).collect();
            same_family(&found, family_of, &server.host)?
        }
        Err(_) => {
            let found = tokio::time::timeout(
                RESOLVE_LIMIT,
                tokio::net::lookup_host((server.host.as_str(), port)),
            )
            .await
            .map_err(|_| format!("{} did not resolve in time", server.host))?
            .map_err(|e| format!("{}: {e}", server.host))?
            .collect::<Vec<_>>();
            same_family(&found, family_of, &server.host)?
        }
    };
    let tls = if server.transports.contains(&TurnTransport::Tls) {
        let name = rustls::pki_types::ServerName::try_from(server.host.clone())
            .map_err(|e| format!("{}: {e}", server.host))?;
        Some((
            super::tls::client_config_for_turn(account.tls_ca_file.as_deref())?,
            name,
        ))
    } else {
        None
    };
    Ok(server
        .transports
        .iter()
        .map(|&transport| TurnSetup {
            server: address,
            transport,
            local: SocketAddr::new(family_of, 0),
            username: account.turn_username.clone(),
            password: account.turn_password.clone(),
            tls: (transport == TurnTransport::Tls)
                .then(|| tls.clone())
                .flatten(),
        })
        .collect())
}

/// A host candidate needs a real address: on a wildcard socket, the one the kernel would
/// send from towards the STUN/TURN server (or a documentation address; nothing is sent).
async fn concrete_ip(ip: IpAddr, towards: Option<SocketAddr>) -> IpAddr {
    if !ip.is_unspecified() {
        return ip;
    }
    let target = towards.unwrap_or_else(|| SocketAddr::from(([192, 0, 2, 1], 9)));
    let probe = async {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await.ok()?;
        socket.connect(target).await.ok()?;
        socket.local_addr().ok().map(|a| a.ip())
    };
    // No route anywhere (a LAN without a default route): no host candidate rice would take;
    // the call goes without ICE, with the address the UA picks towards the peer.
    probe.await.unwrap_or(ip)
}
