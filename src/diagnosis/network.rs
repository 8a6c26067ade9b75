//! Network rules: DNS (no records, no answer, every server dead), TLS (whose certificate and
//! why it is refused), NAT (behind one, a mapping the NAT forgot, a connection whose
//! keep-alives died).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::facts::{DnsFailure, Fact, Target, TlsFailure};
use super::trace::TraceMessage;
use super::{Diagnoser, Evidence, Finding, MAX_TRACKED_SERVERS, Severity, listing};
use crate::event::Direction;

pub const DNS_NO_RECORDS: &str = "dns.no_records";
pub const DNS_UNANSWERED: &str = "dns.unanswered";
pub const DNS_ALL_TARGETS_DEAD: &str = "dns.all_targets_dead";
pub const TLS_UNKNOWN_ISSUER: &str = "tls.unknown_issuer";
pub const TLS_NAME_MISMATCH: &str = "tls.name_mismatch";
pub const TLS_EXPIRED: &str = "tls.expired";
pub const TLS_NOT_YET_VALID: &str = "tls.not_yet_valid";
pub const TLS_REFUSED: &str = "tls.handshake_refused";
pub const TLS_FAILED: &str = "tls.failed";
pub const BEHIND_NAT: &str = "nat.behind_nat";
pub const MAPPING_LOST: &str = "nat.mapping_lost";
pub const KEEPALIVE_FAILED: &str = "nat.keepalive_failed";

/// The keep-alive interval sipterm picks by itself behind a NAT (`driver::nat::DEFAULT_KEEPALIVE`).
const AUTOMATIC_KEEPALIVE_SECS: u64 = 29;

/// A forgotten NAT mapping stays a finding until the mapping has held this long again.
pub const MAPPING_STABLE_AFTER: Duration = Duration::from_secs(60);

/// What the driver reported about servers.
#[derive(Debug, Default)]
pub struct NetworkTrack {
    /// Host name -> its servers and how DNS found them (newest last, bounded).
    resolved: VecDeque<(String, Vec<Target>, String)>,
    /// Servers ICMP said are unreachable.
    unreachable: VecDeque<SocketAddr>,
    /// Servers a TCP or TLS connection to failed, with the error.
    connect_failed: VecDeque<(SocketAddr, String)>,
    /// When the registrar last saw us at a new address.
    mapping_lost_at: Option<Instant>,
    /// Names that did not resolve, and why (a failed call names them in its reason).
    dns_failures: VecDeque<(String, DnsFailure)>,
}

/// Whether `uri` (`sip:atlanta.test;transport=tcp`) has `host` as its host.
fn uri_names_host(uri: &str, host: &str) -> bool {
    let rest = uri.split_once(':').map_or(uri, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let end = rest.find([';', '?', '>']).unwrap_or(rest.len());
    let (name, _) = super::trace::split_host_port(&rest[..end]);
    name.eq_ignore_ascii_case(host)
}

fn remember<T: PartialEq>(list: &mut VecDeque<T>, item: T) {
    list.retain(|x| *x != item);
    if list.len() >= MAX_TRACKED_SERVERS {
        list.pop_front();
    }
    list.push_back(item);
}

impl Diagnoser {
    pub(super) fn network_fact(&mut self, fact: Fact, _now: Instant) {
        match fact {
            Fact::Setup(_) => {}
            Fact::Resolved { host, outcome } => match outcome {
                Ok((targets, trail)) => {
                    self.clear_where(|f| {
                        f.code.starts_with("dns.") && f.subject.as_deref() == Some(host.as_str())
                    });
                    let track = &mut self.network;
                    track.resolved.retain(|(h, _, _)| *h != host);
                    if track.resolved.len() >= MAX_TRACKED_SERVERS {
                        track.resolved.pop_front();
                    }
                    track.resolved.push_back((host, targets, trail));
                }
                Err(failure) => {
                    // The servers the account always needs are a finding at once; a dialled
                    // name is, when its call fails (`call_failed`), as part of that call.
                    let account_server = [&self.setup.registrar, &self.setup.outbound_proxy]
                        .into_iter()
                        .flatten()
                        .any(|uri| uri_names_host(uri, &host));
                    if account_server {
                        self.dns_failed(&host, &failure, None);
                    }
                    remember(&mut self.network.dns_failures, (host, failure));
                }
            },
            Fact::Unreachable { peer } => remember(&mut self.network.unreachable, peer),
            Fact::ConnectFailed {
                peer,
                transport,
                error,
                tls,
            } => {
                remember(&mut self.network.connect_failed, (peer, error.clone()));
                if let Some(failure) = tls {
                    self.tls_failed(peer, transport, &error, failure);
                }
            }
            Fact::ConnectionLost { peer, error } => {
                let server = self.server_name(peer);
                self.raise(
                    Finding::new(
                        KEEPALIVE_FAILED,
                        Severity::Warning,
                        "connection lost",
                        format!(
                            "The connection to {server} died ({error}): a NAT or firewall on the \
                             way dropped it, so requests to you could not arrive until sipterm \
                             reconnected."
                        ),
                        "If it happens often, lower `keepalive_secs` in the account below the \
                         NAT's idle timeout; sipterm registers again over a new connection by \
                         itself.",
                    )
                    .about(peer.to_string())
                    .with_evidence(Evidence::new().with("peer", peer).with("error", &error)),
                );
            }
        }
    }

    /// A message passed: one from a server shows that server works again.
    pub(super) fn network_saw_message(&mut self, message: &TraceMessage, _now: Instant) {
        if message.dir != Direction::In {
            return;
        }
        let peer = message.peer;
        self.network.unreachable.retain(|p| *p != peer);
        self.network.connect_failed.retain(|(p, _)| *p != peer);
        let subject = peer.to_string();
        if self
            .active()
            .any(|f| f.subject.as_deref() == Some(&subject))
        {
            self.clear_where(|f| {
                (f.code.starts_with("tls.") || f.code == KEEPALIVE_FAILED)
                    && f.subject.as_deref() == Some(subject.as_str())
            });
        }
    }

    /// The call failed because its name did not resolve: the DNS finding, for that call.
    pub(super) fn dns_failed_for_call(&mut self, call: u64, reason: &str) {
        let failure = self
            .network
            .dns_failures
            .iter()
            .rev()
            .find(|(host, _)| reason.contains(host.as_str()))
            .cloned();
        if let Some((host, failure)) = failure {
            self.dns_failed(&host, &failure, Some(call));
        }
    }

    fn dns_failed(&mut self, host: &str, failure: &DnsFailure, call: Option<u64>) {
        // The resolver's texts start with the name; the message names it already.
        let prefix = format!("{host}: ");
        let (code, label, message, advice) = match failure {
            DnsFailure::Absent(text) => (
                DNS_NO_RECORDS,
                "no DNS records",
                format!(
                    "{host} has no SIP server in DNS ({}): the name is misspelt, or its DNS \
                     has no NAPTR, SRV or A/AAAA records for SIP.",
                    text.strip_prefix(&prefix).unwrap_or(text)
                ),
                format!(
                    "Check the spelling of {host} (in the account or what you dialled); the \
                     provider's instructions name the server to use, which `registrar` or \
                     `outbound_proxy` can give directly."
                ),
            ),
            DnsFailure::Unanswered(text) => (
                DNS_UNANSWERED,
                "DNS fails",
                format!("sipterm cannot look up {host}: the DNS gives no usable answer ({text})."),
                "Check the network connection and the DNS servers in /etc/resolv.conf.".to_string(),
            ),
        };
        let mut finding = Finding::new(code, Severity::Error, label, message, advice)
            .about(host)
            .with_evidence(
                Evidence::new()
                    .with("host", host)
                    .with("dns", failure.text()),
            );
        if let Some(call) = call {
            finding = finding.on_call(call);
        }
        self.raise(finding);
    }

    fn tls_failed(&mut self, peer: SocketAddr, transport: &str, error: &str, failure: TlsFailure) {
        let server = self.server_name(peer);
        let (code, label, message, advice, mut evidence) = match &failure {
            TlsFailure::UnknownIssuer => (
                TLS_UNKNOWN_ISSUER,
                "TLS: unknown CA",
                format!(
                    "The TLS certificate of {server} is signed by an authority this machine \
                     does not trust (self-signed, or a private CA), so sipterm will not talk to \
                     it."
                ),
                "Add that CA's certificate to `[sip] tls_ca_file`, or ask the provider for a \
                 certificate from a public CA.",
                Evidence::new(),
            ),
            TlsFailure::NameMismatch {
                expected,
                presented,
            } => (
                TLS_NAME_MISMATCH,
                "TLS: wrong name",
                format!(
                    "The TLS certificate of {server} is for {}, not for {expected}, the name \
                     sipterm asked for: the account names the server differently than its \
                     certificate does.",
                    if presented.is_empty() {
                        "no name at all".to_string()
                    } else {
                        listing(presented)
                    }
                ),
                "Write the server as its certificate names it in `registrar` / \
                 `outbound_proxy` (or the number you dial), or have its certificate fixed.",
                Evidence::new()
                    .with("expected_name", expected)
                    .with("certificate_names", presented.join(", ")),
            ),
            TlsFailure::Expired { days_ago } => (
                TLS_EXPIRED,
                "TLS: expired",
                match days_ago {
                    Some(days) => format!(
                        "The TLS certificate of {server} expired {days} day(s) ago, so sipterm \
                         refuses the connection."
                    ),
                    None => format!(
                        "The TLS certificate of {server} has expired, so sipterm refuses the \
                         connection."
                    ),
                },
                "The server's operator must renew the certificate; if this machine's date is \
                 wrong, fix the clock.",
                Evidence::new().with_some("expired_days_ago", *days_ago),
            ),
            TlsFailure::NotYetValid => (
                TLS_NOT_YET_VALID,
                "TLS: not yet valid",
                format!(
                    "The TLS certificate of {server} is not valid yet: this machine's clock is \
                     behind, or the certificate was dated ahead."
                ),
                "Check this machine's date and time.",
                Evidence::new(),
            ),
            TlsFailure::Refused { why } => (
                TLS_REFUSED,
                "TLS refused",
                format!(
                    "{server} refused the TLS handshake ({why}): it wants a client certificate \
                     or a TLS version or cipher sipterm does not offer, or it does not speak \
                     TLS on that port."
                ),
                "Check the port (5061 is usual for TLS) and ask the provider whether the \
                 server needs a client certificate.",
                Evidence::new().with("why", why),
            ),
            TlsFailure::Other(text) => (
                TLS_FAILED,
                "TLS failed",
                format!("The TLS connection to {server} failed: {text}."),
                "Check the server address and `[sip] tls_ca_file`.",
                Evidence::new(),
            ),
        };
        evidence = evidence
            .with("peer", peer)
            .with("transport", transport)
            .with("error", error);
        // One TLS finding per server: a new failure replaces the old.
        let subject = peer.to_string();
        self.clear_where(|f| {
            f.code.starts_with("tls.") && f.subject.as_deref() == Some(subject.as_str())
        });
        self.raise(
            Finding::new(code, Severity::Error, label, message, advice)
                .about(subject)
                .with_evidence(evidence),
        );
    }

    /// `host (addr)` when DNS named the address, else the address.
    fn server_name(&self, peer: SocketAddr) -> String {
        self.network
            .resolved
            .iter()
            .rev()
            .find(|(_, targets, _)| targets.iter().any(|t| t.addr == peer))
            .map_or_else(
                || peer.to_string(),
                |(host, _, _)| format!("{host} ({peer})"),
            )
    }

    /// `192.0.2.11:5070 over UDP (ICMP: nothing listens there)`, ...
    pub(super) fn describe_dead_server(&self, peer: SocketAddr, transport: &str) -> String {
        let over = if transport.is_empty() {
            String::new()
        } else {
            format!(" over {transport}")
        };
        let what = if self.network.unreachable.contains(&peer) {
            "ICMP says nothing listens there".to_string()
        } else if let Some((_, error)) =
            self.network.connect_failed.iter().find(|(p, _)| *p == peer)
        {
            format!("connection failed: {error}")
        } else {
            "no answer".to_string()
        };
        format!("{peer}{over} ({what})")
    }

    /// When `tried` covers two or more servers DNS gave for one name through NAPTR/SRV,
    /// raises `dns.all_targets_dead` for that name and returns true.
    pub(super) fn all_targets_dead(
        &mut self,
        tried: &[(SocketAddr, String)],
        call: Option<u64>,
    ) -> bool {
        let found = self
            .network
            .resolved
            .iter()
            .rev()
            .find(|(_, targets, trail)| {
                let via_srv = trail.starts_with("NAPTR") || trail.starts_with("SRV");
                let hit = targets
                    .iter()
                    .filter(|t| tried.iter().any(|(p, _)| *p == t.addr))
                    .count();
                via_srv && hit >= 2 && hit == targets.len().min(tried.len()).max(2)
            });
        let Some((host, targets, trail)) = found.cloned() else {
            return false;
        };
        let described: Vec<String> = targets
            .iter()
            .filter(|t| tried.iter().any(|(p, _)| *p == t.addr))
            .map(|t| self.describe_dead_server(t.addr, t.transport))
            .collect();
        let mut finding = Finding::new(
            DNS_ALL_TARGETS_DEAD,
            Severity::Error,
            "all servers dead",
            format!(
                "Every server DNS names for {host} failed: {}; the provider's servers are down, \
                 or a firewall blocks them.",
                listing(&described)
            ),
            "Try again later; if only you are affected, check the firewall for SIP to those \
             addresses.",
        )
        .about(host.clone())
        .with_evidence(
            Evidence::new()
                .with("host", &host)
                .with("dns", trail)
                .with("tried", listing(&described)),
        );
        if let Some(call) = call {
            finding = finding.on_call(call);
        }
        self.raise(finding);
        true
    }

    /// A 200 to REGISTER: are we behind a NAT (the registrar saw another address than ours),
    /// and did the NAT give us a new public address since the last one (it forgot us)?
    pub(super) fn nat_from_registration(&mut self, ok: &TraceMessage, now: Instant) {
        let Some(via) = &ok.via else { return };
        let Some(seen) = via.seen_at() else { return };
        let local = self
            .registration
            .local_address
            .clone()
            .unwrap_or_else(|| via.sent_by.clone());
        if seen != via.sent_by || self.is_active(BEHIND_NAT, None) {
            let contact = ok.contact.clone().unwrap_or_default();
            let keeping = if self.setup.keepalive_off {
                "but sends no keep-alives (`keepalive_secs = 0`), so the NAT may forget the \
                 mapping between refreshes"
                    .to_string()
            } else {
                format!(
                    "and keeps the NAT's mapping open with keep-alives every {} s",
                    self.setup
                        .keepalive_secs
                        .unwrap_or(AUTOMATIC_KEEPALIVE_SECS)
                )
            };
            self.raise(
                Finding::new(
                    BEHIND_NAT,
                    Severity::Info,
                    "behind NAT",
                    format!(
                        "You are behind a NAT: the registrar sees you at {seen} while your own \
                         address is {local}, so sipterm registers the public address {keeping}."
                    ),
                    "Nothing to do while calls reach you; if they stop after a while, set \
                     `keepalive_secs` below the NAT's timeout or use TCP/TLS.",
                )
                .with_evidence(
                    Evidence::new()
                        .with("local", &local)
                        .with("public", &seen)
                        .with("registrar", ok.peer)
                        .with("contact_registered", contact),
                ),
            );
        }
        let previous = self.registration.public_seen.replace(seen.clone());
        match previous {
            Some(old) if old != seen => {
                self.network.mapping_lost_at = Some(now);
                self.clear(MAPPING_LOST, None);
                self.raise(
                    Finding::new(
                        MAPPING_LOST,
                        Severity::Warning,
                        "NAT forgot us",
                        format!(
                            "Your NAT forgot sipterm's mapping: the registrar now sees you at \
                             {seen} instead of {old}, so calls sent to the old address since \
                             the last refresh never reached you."
                        ),
                        "Send keep-alives more often than the NAT's UDP timeout \
                         (`keepalive_secs`, 15-25 s suits most routers), or register over TCP \
                         or TLS.",
                    )
                    .with_evidence(
                        Evidence::new()
                            .with("old_public", &old)
                            .with("new_public", &seen)
                            .with("registrar", ok.peer),
                    ),
                );
            }
            Some(_) => {
                let stable = self
                    .network
                    .mapping_lost_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= MAPPING_STABLE_AFTER);
                if stable {
                    self.clear(MAPPING_LOST, None);
                }
            }
            None => {}
        }
    }
}
