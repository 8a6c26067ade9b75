//! The RFC 3263 procedure: which queries, in which order, and what becomes of their answers.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures_util::future::join_all;

use super::name::{self, DomainName};
use super::naptr::{self, NaptrPlan};
use super::srv::{self, SrvPlan};
use super::{
    DnsLookup, LookupError, MAX_DESTINATIONS, MAX_HOST_LOOKUPS, MAX_TTL, Preferences, ResolveError,
    Resolved, STUN_PORT, SipTarget, default_port, transport_name,
};
use crate::sip::transaction::{Destination, TransportKind};

/// Locates the SIP server for `target` (RFC 3263 §4.1 transport, §4.2 port and address).
///
/// - A port in the URI: A/AAAA of the host with that port; no NAPTR or SRV.
/// - A `transport=` (or `sips:`) without a port: SRV for that transport, else A/AAAA with the
///   default port.
/// - Otherwise NAPTR, then SRV for the transports we support, then A/AAAA with the default
///   port and the preferred transport.
///
/// `random` draws the SRV weight selection (RFC 2782); tests pass a deterministic one.
pub async fn locate<L: DnsLookup>(
    lookup: &L,
    target: &SipTarget,
    prefs: &Preferences,
    random: &mut impl FnMut() -> u32,
) -> Result<Resolved, ResolveError> {
    // RFC 3263 §4.1: a sips: URI goes over TLS whatever transport= says.
    let explicit = target
        .transport
        .map(|t| if target.secure { TransportKind::Tls } else { t });
    // The transport when no DNS record will choose one (a port given, an IP literal).
    let fixed = match explicit {
        Some(t) => t,
        None if target.secure => TransportKind::Tls,
        None => prefs.preferred,
    };
    let why_tls = if target.secure {
        "sips:"
    } else if explicit.is_some() {
        "transport=tls"
    } else {
        "the account's transport"
    };
    let need_tls = |domain: &str, transport: TransportKind| {
        if transport == TransportKind::Tls && !prefs.tls {
            Err(ResolveError::TlsNotConfigured {
                domain: domain.to_string(),
                why: why_tls,
            })
        } else {
            Ok(())
        }
    };

    if let Some(ip) = name::ip_literal(&target.host) {
        need_tls(&target.host, fixed)?;
        let port = target.port.unwrap_or(default_port(fixed));
        return literal(&target.host, &[ip], port, fixed, prefs, "IP literal");
    }
    let domain = DomainName::from_user(&target.host).ok_or_else(|| ResolveError::InvalidName {
        name: target.host.clone(),
    })?;
    if target.secure || explicit.is_some() {
        // What the URI asks for cannot change: say so before asking the DNS anything.
        need_tls(&domain.display, fixed)?;
    }
    if domain.is_invalid() {
        return Err(ResolveError::NoSuchDomain {
            domain: domain.display,
        });
    }
    if domain.is_localhost() {
        need_tls(&domain.display, fixed)?;
        let port = target.port.unwrap_or(default_port(fixed));
        let loopback = [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
        return literal(&domain.display, &loopback, port, fixed, prefs, "localhost");
    }

    let mut walk = Walk::new(lookup, prefs, &domain);
    if let Some(port) = target.port {
        need_tls(&domain.display, fixed)?;
        walk.note("port given");
        walk.host(&domain, port, fixed).await;
        return walk.finish();
    }
    if let Some(transport) = explicit {
        walk.note(&format!("transport={}", transport_name(transport)));
        let queries = sip_srv_queries(&domain, &[transport]);
        walk.srv(queries, random).await;
        walk.fallback_to_host(default_port(transport), transport)
            .await;
        return walk.finish();
    }

    match lookup.naptr(&domain.query).await {
        Ok(records) => match naptr::plan(&records, target.secure, prefs) {
            NaptrPlan::Follow(choices) => {
                let queries = choices
                    .into_iter()
                    .map(|c| SrvQuery {
                        transport: c.transport,
                        name: c.replacement,
                        via: Some(format!("NAPTR {}", c.service)),
                        ttl: c.ttl,
                    })
                    .collect();
                walk.srv(queries, random).await;
            }
            NaptrPlan::TlsOnly => {
                return Err(ResolveError::TlsOnly {
                    domain: domain.display.clone(),
                });
            }
            NaptrPlan::Nothing => walk.note("no SIP NAPTR"),
        },
        Err(error) => walk.failed("NAPTR", true, error),
    }

    if walk.dests.is_empty() {
        // RFC 3263 §4.1: without (usable) NAPTR records, SRV for each transport we support,
        // the account's first. TLS is asked even when we cannot do it, so that a TLS-only
        // domain gets a clear error instead of a guess at its A record.
        let mut order = vec![prefs.preferred];
        for t in [TransportKind::Udp, TransportKind::Tcp, TransportKind::Tls] {
            if !order.contains(&t) {
                order.push(t);
            }
        }
        if target.secure {
            order = vec![TransportKind::Tls];
        }
        let queries = sip_srv_queries(&domain, &order);
        walk.srv(queries, random).await;
    }
    // RFC 3263 §4.2: no SRV records at all: the domain's own address, with the transport no
    // record chose (`fixed`: TLS for sips:, else the account's).
    if walk.dests.is_empty() && !walk.srv_found {
        need_tls(&domain.display, fixed)?;
    }
    walk.fallback_to_host(default_port(fixed), fixed).await;
    walk.finish()
}

/// RFC 8656 §3.1 / RFC 5928: the TURN server at `host` over UDP: SRV `_turn._udp.host`
/// when no port is given, then A/AAAA with port 3478 (as STUN, RFC 5389 §9).
pub async fn locate_turn<L: DnsLookup>(
    lookup: &L,
    host: &str,
    port: Option<u16>,
    prefs: &Preferences,
    random: &mut impl FnMut() -> u32,
) -> Result<Resolved, ResolveError> {
    locate_udp_service(lookup, host, port, "_turn._udp.", prefs, random).await
}

/// Locates a STUN server (RFC 5389 §9): with a port, A/AAAA of `host`; without one, SRV
/// `_stun._udp.<host>`, else A/AAAA with port 3478. IP literals are returned as they are.
pub async fn locate_stun<L: DnsLookup>(
    lookup: &L,
    host: &str,
    port: Option<u16>,
    prefs: &Preferences,
    random: &mut impl FnMut() -> u32,
) -> Result<Resolved, ResolveError> {
    locate_udp_service(lookup, host, port, "_stun._udp.", prefs, random).await
}

/// A UDP service on port 3478 by default (STUN, TURN): SRV `service` + `host` when no port
/// is given, then A/AAAA.
async fn locate_udp_service<L: DnsLookup>(
    lookup: &L,
    host: &str,
    port: Option<u16>,
    service: &str,
    prefs: &Preferences,
    random: &mut impl FnMut() -> u32,
) -> Result<Resolved, ResolveError> {
    let udp = TransportKind::Udp;
    if let Some(ip) = name::ip_literal(host) {
        return literal(
            host,
            &[ip],
            port.unwrap_or(STUN_PORT),
            udp,
            prefs,
            "IP literal",
        );
    }
    let domain = DomainName::from_user(host).ok_or_else(|| ResolveError::InvalidName {
        name: host.to_string(),
    })?;
    let mut walk = Walk::new(lookup, prefs, &domain);
    if let Some(port) = port {
        walk.note("port given");
        walk.host(&domain, port, udp).await;
        return walk.finish();
    }
    let queries = domain
        .prefixed(service)
        .map(|name| SrvQuery {
            transport: udp,
            name,
            via: None,
            ttl: MAX_TTL,
        })
        .into_iter()
        .collect();
    walk.srv(queries, random).await;
    walk.fallback_to_host(STUN_PORT, udp).await;
    walk.finish()
}

/// Destinations straight from addresses we already have (IP literal, localhost).
fn literal(
    host: &str,
    ips: &[IpAddr],
    port: u16,
    transport: TransportKind,
    prefs: &Preferences,
    what: &str,
) -> Result<Resolved, ResolveError> {
    let targets: Vec<Destination> = ips
        .iter()
        .filter(|ip| family_allowed(**ip, prefs))
        .map(|ip| Destination {
            addr: SocketAddr::new(*ip, port),
            transport,
        })
        .collect();
    let Some(first) = targets.first() else {
        return Err(no_usable_address(host, ips.first()));
    };
    let more = match targets.len() - 1 {
        0 => String::new(),
        n => format!(" (+{n} more)"),
    };
    Ok(Resolved {
        trail: format!(
            "{what} -> {} {}{more}",
            first.addr,
            transport_name(transport)
        ),
        targets,
        ttl: Duration::from_secs(MAX_TTL.into()),
    })
}

fn sip_srv_queries(domain: &DomainName, transports: &[TransportKind]) -> Vec<SrvQuery> {
    transports
        .iter()
        .filter_map(|&transport| {
            let prefix = match transport {
                TransportKind::Udp => "_sip._udp.",
                TransportKind::Tcp => "_sip._tcp.",
                TransportKind::Tls => "_sips._tcp.",
            };
            Some(SrvQuery {
                transport,
                name: domain.prefixed(prefix)?,
                via: None,
                ttl: MAX_TTL,
            })
        })
        .collect()
}

fn family_allowed(ip: IpAddr, prefs: &Preferences) -> bool {
    match ip {
        IpAddr::V4(_) => prefs.ipv4,
        IpAddr::V6(_) => prefs.ipv6,
    }
}

fn no_usable_address(domain: &str, example: Option<&IpAddr>) -> ResolveError {
    ResolveError::NoUsableAddress {
        domain: domain.to_string(),
        family: match example {
            Some(IpAddr::V6(_)) => "IPv6",
            _ => "IPv4",
        },
        example: example.map(ToString::to_string).unwrap_or_default(),
    }
}

/// An SRV name to ask, and how we came to it.
struct SrvQuery {
    transport: TransportKind,
    name: DomainName,
    /// "NAPTR SIP+D2U" when a NAPTR record named it.
    via: Option<String>,
    /// The TTL of the record that named it.
    ttl: u32,
}

/// One resolution in progress: what it found and, for the error, what it did not.
struct Walk<'a, L> {
    lookup: &'a L,
    prefs: &'a Preferences,
    domain: &'a DomainName,
    dests: Vec<Destination>,
    ttl: u32,
    /// Steps that gave nothing before the first destination ("no NAPTR").
    notes: Vec<String>,
    /// How the first destination was found.
    trail: Option<String>,
    /// SRV names already asked (NAPTR and the SRV step may name the same).
    asked: HashSet<String>,
    /// Some SRV answer had records: RFC 3263 §4.2's A/AAAA fallback is off.
    srv_found: bool,
    /// SRV names that answered only ".".
    not_available: Vec<String>,
    /// SRV records for TLS that we skipped because TLS is not configured.
    tls_offered: bool,
    /// SRV targets that have no address.
    no_address: Vec<String>,
    /// An address of a family our sockets cannot reach.
    wrong_family: Option<IpAddr>,
    /// The first query that failed (not: answered "nothing").
    failure: Option<LookupError>,
    /// The domain itself does not exist (NXDOMAIN for its own NAPTR or A/AAAA).
    nxdomain: bool,
    host_lookups: usize,
}

impl<'a, L: DnsLookup> Walk<'a, L> {
    fn new(lookup: &'a L, prefs: &'a Preferences, domain: &'a DomainName) -> Self {
        Walk {
            lookup,
            prefs,
            domain,
            dests: Vec::new(),
            ttl: MAX_TTL,
            notes: Vec::new(),
            trail: None,
            asked: HashSet::new(),
            srv_found: false,
            not_available: Vec::new(),
            tls_offered: false,
            no_address: Vec::new(),
            wrong_family: None,
            failure: None,
            nxdomain: false,
            host_lookups: 0,
        }
    }

    fn full(&self) -> bool {
        self.dests.len() >= MAX_DESTINATIONS
    }

    fn note(&mut self, step: &str) {
        if self.trail.is_none() {
            self.notes.push(step.to_string());
        }
    }

    /// A query gave nothing: remember a failure for the error, absence for the trail.
    fn failed(&mut self, what: &str, about_domain: bool, error: LookupError) {
        if about_domain && error == LookupError::NxDomain {
            self.nxdomain = true;
        }
        if error.is_absence() {
            self.note(&format!("no {what}"));
        } else {
            self.note(&format!("{what} {error}"));
            self.failure.get_or_insert(error);
        }
    }

    /// Asks the SRV names (together), then resolves their targets in order.
    async fn srv(&mut self, queries: Vec<SrvQuery>, random: &mut impl FnMut() -> u32) {
        let queries: Vec<SrvQuery> = queries
            .into_iter()
            .filter(|q| self.asked.insert(q.name.display.clone()))
            .collect();
        if queries.is_empty() || self.full() {
            return;
        }
        let lookup = self.lookup;
        let answers = join_all(queries.iter().map(|q| lookup.srv(&q.name.query))).await;
        let mut missing = Vec::new();
        for (query, answer) in queries.iter().zip(answers) {
            let records = match answer {
                Ok(records) => records,
                Err(error) if error.is_absence() => {
                    missing.push(query.name.display.clone());
                    continue;
                }
                Err(error) => {
                    self.failed(&format!("SRV {}", query.name.display), false, error);
                    continue;
                }
            };
            let plan = srv::plan(&records, random);
            if !matches!(plan, SrvPlan::Nothing) {
                self.srv_found = true;
            }
            match plan {
                SrvPlan::Targets(_) if query.transport == TransportKind::Tls && !self.prefs.tls => {
                    self.tls_offered = true;
                }
                SrvPlan::Targets(targets) => self.srv_targets(query, targets).await,
                SrvPlan::NotAvailable => self.not_available.push(query.name.display.clone()),
                SrvPlan::Nothing => missing.push(query.name.display.clone()),
            }
        }
        if !missing.is_empty() {
            self.note(&format!("no SRV {}", missing.join(", ")));
        }
    }

    /// The A/AAAA records of each SRV target (asked together), in the SRV order: all of a
    /// target's addresses before the next target's.
    async fn srv_targets(&mut self, query: &SrvQuery, targets: Vec<srv::SrvTarget>) {
        let budget = MAX_HOST_LOOKUPS.saturating_sub(self.host_lookups);
        let targets: Vec<srv::SrvTarget> = targets.into_iter().take(budget).collect();
        self.host_lookups += targets.len();
        let lookup = self.lookup;
        let answers = join_all(targets.iter().map(|t| lookup.ips(&t.target.query))).await;
        for (target, answer) in targets.iter().zip(answers) {
            let via = query
                .via
                .as_ref()
                .map(|v| format!("{v} -> "))
                .unwrap_or_default();
            let path = format!(
                "{via}SRV {} -> {}:{}",
                query.name.display, target.target.display, target.port
            );
            let ttl = query.ttl.min(target.ttl);
            match answer {
                Ok(ips) => self.add(&ips, target.port, query.transport, &path, ttl),
                Err(error) if error.is_absence() => {
                    self.no_address.push(target.target.display.clone());
                }
                Err(error) => {
                    self.failed(&format!("A/AAAA {}", target.target.display), false, error)
                }
            }
        }
    }

    /// RFC 3263 §4.2: no SRV records at all (and no "." answer): A/AAAA of the domain itself.
    async fn fallback_to_host(&mut self, port: u16, transport: TransportKind) {
        if !self.dests.is_empty() || self.srv_found {
            return;
        }
        let domain = self.domain;
        self.host(domain, port, transport).await;
    }

    /// A/AAAA of the domain itself, with a port and transport that no record chose.
    async fn host(&mut self, host: &DomainName, port: u16, transport: TransportKind) {
        self.host_lookups += 1;
        let path = format!("{}:{port} {}", host.display, transport_name(transport));
        match self.lookup.ips(&host.query).await {
            Ok(ips) => self.add(&ips, port, transport, &path, MAX_TTL),
            Err(error) => self.failed("A/AAAA", true, error),
        }
    }

    /// Adds the usable addresses among `ips` as destinations.
    fn add(
        &mut self,
        ips: &[(IpAddr, u32)],
        port: u16,
        transport: TransportKind,
        path: &str,
        ttl: u32,
    ) {
        for &(ip, ip_ttl) in ips {
            if self.full() {
                return;
            }
            // Nowhere to send to: 0.0.0.0 would reach this host, multicast everyone.
            if ip.is_unspecified() || ip.is_multicast() {
                continue;
            }
            if !family_allowed(ip, self.prefs) {
                self.wrong_family.get_or_insert(ip);
                continue;
            }
            let dest = Destination {
                addr: SocketAddr::new(ip, port),
                transport,
            };
            if self.dests.contains(&dest) {
                continue;
            }
            self.dests.push(dest);
            self.ttl = self.ttl.min(ttl).min(ip_ttl);
            if self.trail.is_none() {
                let mut steps = std::mem::take(&mut self.notes);
                steps.push(path.to_string());
                steps.push(ip.to_string());
                self.trail = Some(steps.join(" -> "));
            }
        }
    }

    fn finish(self) -> Result<Resolved, ResolveError> {
        let domain = self.domain.display.clone();
        if let Some(trail) = self.trail
            && !self.dests.is_empty()
        {
            let more = self.dests.len() - 1;
            let trail = match more {
                0 => trail,
                n => format!("{trail} (+{n} more)"),
            };
            return Ok(Resolved {
                targets: self.dests,
                ttl: Duration::from_secs(self.ttl.min(MAX_TTL).into()),
                trail,
            });
        }
        // The most telling reason first: a definite answer about what exists beats "the
        // server did not answer", which beats "nothing there".
        Err(if self.wrong_family.is_some() {
            no_usable_address(&domain, self.wrong_family.as_ref())
        } else if !self.no_address.is_empty() {
            ResolveError::TargetsWithoutAddress {
                domain,
                targets: self.no_address.join(", "),
            }
        } else if self.tls_offered {
            ResolveError::TlsOnly { domain }
        } else if !self.not_available.is_empty() {
            ResolveError::NotAvailable {
                domain,
                names: self.not_available.join(", "),
            }
        } else if let Some(failure) = &self.failure {
            ResolveError::from_failure(&domain, failure)
        } else if self.nxdomain {
            ResolveError::NoSuchDomain { domain }
        } else {
            ResolveError::NoRecords { domain }
        })
    }
}
