//! Runs the UA's DNS lookups (RFC 3263 server location through `driver::dns::SystemDns`) in
//! tasks of their own, so the SIP task never waits for DNS; each answer comes back on a channel
//! and goes to `UserAgent::handle_resolved`.

use std::net::IpAddr;
use std::time::Duration;

use tokio::sync::mpsc;

use super::dns::SystemDns;
use crate::dns::{Preferences, SipTarget};
use crate::sip::transaction::{Destination, TransportKind};
use crate::sip::ua::HopKey;

/// One answer for the UA: destinations in the order to try and how long they hold, or why
/// there are none.
#[derive(Debug)]
pub struct Resolved {
    pub key: HopKey,
    pub result: Result<(Vec<Destination>, Duration), String>,
    /// The same outcome for the diagnosis: how the servers were found, or why none was.
    pub fact: crate::diagnosis::Fact,
}

/// The SIP task's handle on DNS.
pub struct Dns {
    system: SystemDns,
    answers: Option<mpsc::UnboundedSender<Resolved>>,
}

impl Dns {
    pub fn new(system: SystemDns, answers: mpsc::UnboundedSender<Resolved>) -> Dns {
        Dns {
            system,
            answers: Some(answers),
        }
    }

    /// For the echo service, which only answers calls.
    pub fn disabled() -> Dns {
        Dns {
            system: SystemDns::new(),
            answers: None,
        }
    }

    /// Resolves `key` in a task; `preferred` is the account's transport, `bind_ip` the SIP
    /// socket's address (which address families it can reach).
    pub fn resolve(&self, key: HopKey, preferred: TransportKind, bind_ip: IpAddr) {
        let Some(answers) = self.answers.clone() else {
            return;
        };
        let system = self.system.clone();
        let (ipv4, ipv6) = families(bind_ip);
        // TLS is always possible: the transport builds a client configuration with the
        // system roots when the config names no CA.
        let prefs = Preferences {
            preferred,
            tls: true,
            ipv4,
            ipv6,
        };
        let target = SipTarget {
            host: key.host.clone(),
            port: key.port,
            transport: key.transport,
            secure: key.secure,
        };
        tokio::spawn(async move {
            let (result, outcome) = match system.resolve_sip(&target, &prefs).await {
                Ok(resolved) => {
                    tracing::info!(host = %key, trail = %resolved.trail, "DNS");
                    let targets = resolved
                        .targets
                        .iter()
                        .map(|d| crate::diagnosis::Target {
                            addr: d.addr,
                            transport: crate::sip::ua::transport_token(d.transport),
                        })
                        .collect();
                    (
                        Ok((resolved.targets, resolved.ttl)),
                        Ok((targets, resolved.trail)),
                    )
                }
                Err(error) => {
                    tracing::warn!(host = %key, %error, "DNS");
                    (Err(error.to_string()), Err((&error).into()))
                }
            };
            let fact = crate::diagnosis::Fact::Resolved {
                host: key.host.clone(),
                outcome,
            };
            // The SIP task is gone: nobody waits for the answer.
            let _ = answers.send(Resolved { key, result, fact });
        });
    }

    pub fn system(&self) -> &SystemDns {
        &self.system
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_ipv6_socket_reaches_both_families_and_others_their_own() {
        assert_eq!(families("0.0.0.0".parse().expect("ip")), (true, false));
        assert_eq!(families("192.0.2.1".parse().expect("ip")), (true, false));
        assert_eq!(families("::".parse().expect("ip")), (true, true));
        assert_eq!(families("2001:db8::1".parse().expect("ip")), (false, true));
    }
}
