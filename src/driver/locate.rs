//! Runs the UA's DNS lookups (RFC 3263 server location) in tasks of their own, so the SIP task
//! never waits for DNS; each answer comes back on a channel and goes to
//! `UserAgent::handle_resolved`.

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::sip::transaction::{Destination, TransportKind};
use crate::sip::ua::HopKey;

/// How long a whole resolution (NAPTR, SRV, A/AAAA) may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(8);

/// One answer for the UA: destinations in the order to try and how long they hold, or why
/// there are none.
#[derive(Debug)]
pub struct Resolved {
    pub key: HopKey,
    pub result: Result<(Vec<Destination>, Duration), String>,
}

/// The SIP task's handle on DNS.
pub struct Dns {
    answers: Option<mpsc::UnboundedSender<Resolved>>,
}

impl Dns {
    pub fn new(answers: mpsc::UnboundedSender<Resolved>) -> Dns {
        Dns {
            answers: Some(answers),
        }
    }

    /// For the echo service, which only answers calls.
    pub fn disabled() -> Dns {
        Dns { answers: None }
    }

    /// Resolves `key` in a task; `preferred` is the account's transport, `bind_ip` the SIP
    /// socket's address (which address families it can reach).
    pub fn resolve(&self, key: HopKey, preferred: TransportKind, bind_ip: IpAddr) {
        let Some(answers) = self.answers.clone() else {
            return;
        };
        tokio::spawn(async move {
            let result =
                tokio::time::timeout(RESOLVE_TIMEOUT, lookup(&key, preferred, families(bind_ip)))
                    .await
                    .unwrap_or_else(|_| Err(format!("{}: DNS did not answer in time", key.host)));
            if let Err(reason) = &result {
                tracing::warn!(host = %key, "{reason}");
            }
            // The SIP task is gone: nobody waits for the answer.
            let _ = answers.send(Resolved { key, result });
        });
    }
}

/// Which address families a socket bound to `ip` reaches: a wildcard IPv6 socket is dual-stack.
fn families(ip: IpAddr) -> (bool, bool) {
    match ip {
        IpAddr::V4(_) => (true, false),
        IpAddr::V6(v6) if v6.is_unspecified() => (true, true),
        IpAddr::V6(v6) => (v6.to_ipv4_mapped().is_some(), v6.to_ipv4_mapped().is_none()),
    }
}

/// A and AAAA through the system resolver (an interim step before NAPTR and SRV).
async fn lookup(
    key: &HopKey,
    preferred: TransportKind,
    (ipv4, ipv6): (bool, bool),
) -> Result<(Vec<Destination>, Duration), String> {
    let transport = key.transport.unwrap_or(if key.secure {
        TransportKind::Tls
    } else {
        preferred
    });
    let port = key.port.unwrap_or(if transport == TransportKind::Tls {
        5061
    } else {
        5060
    });
    let addrs = tokio::net::lookup_host((key.host.as_str(), port))
        .await
        .map_err(|e| format!("{}: {e}", key.host))?;
    let mut targets: Vec<Destination> = Vec::new();
    for addr in addrs {
        let dest = Destination { addr, transport };
        if (addr.is_ipv4() && ipv4 || addr.is_ipv6() && ipv6) && !targets.contains(&dest) {
            targets.push(dest);
        }
    }
    if targets.is_empty() {
        return Err(format!("{}: no address", key.host));
    }
    Ok((targets, Duration::from_secs(60)))
}
