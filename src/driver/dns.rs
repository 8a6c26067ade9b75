//! The real DNS for `crate::dns`: hickory-resolver on tokio, configured from
//! /etc/resolv.conf like every other program on the machine (a test namespace points it at its
//! own server with /etc/netns/NAME/resolv.conf).
//!
//! Caching is hickory's: one response cache per `SystemDns` (clones share it). Positive answers
//! live for the smallest TTL of the answer's records, and come back from the cache with their
//! TTLs counted down; negative answers (NXDOMAIN, NODATA) live for the SOA's negative TTL
//! (RFC 2308) when the server sends an SOA, and are not kept without one. Failures (timeouts,
//! SERVFAIL) are never cached.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::lookup::Lookup;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{RData, RecordType};

use crate::dns::{
    self, DnsLookup, LookupError, Naptr, Preferences, ResolveError, Resolved, SipTarget, Srv,
};

/// Where the system keeps its resolver configuration.
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// One whole resolution (NAPTR, SRV, A/AAAA of every target) ends by then.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Per query attempt: short enough that a server that drops NAPTR queries (some home routers
/// do) leaves time for SRV and A/AAAA within `RESOLVE_TIMEOUT`.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
const QUERY_ATTEMPTS: usize = 2;

/// A handle to the machine's DNS resolver with its cache. Cheap to clone; build one and share
/// it. Building never fails: without a usable resolv.conf (an offline laptop), every lookup
/// fails with the reason, and the file is read again on the next lookup.
#[derive(Clone)]
pub struct SystemDns {
    inner: Arc<Inner>,
    timeout: Duration,
}

struct Inner {
    source: Source,
    state: Mutex<State>,
}

enum Source {
    /// A resolv.conf file, re-read when its contents change (the laptop joined another
    /// network): the new servers apply, and the old cache goes with the old network.
    ResolvConf(PathBuf),
    /// One fixed server (tests).
    Fixed,
}

struct State {
    /// The resolv.conf contents the resolver was built from.
    built_from: Option<Vec<u8>>,
    resolver: Result<TokioResolver, String>,
}

impl std::fmt::Debug for SystemDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.inner.source {
            Source::ResolvConf(path) => path.display().to_string(),
            Source::Fixed => "fixed server".to_string(),
        };
        f.debug_struct("SystemDns")
            .field("source", &source)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for SystemDns {
    fn default() -> Self {
        SystemDns::new()
    }
}

impl SystemDns {
    /// The system's resolver, from /etc/resolv.conf (and /etc/hosts for A/AAAA).
    pub fn new() -> SystemDns {
        SystemDns::from_resolv_conf(RESOLV_CONF)
    }

    /// A resolver configured by the resolv.conf at `path`.
    pub fn from_resolv_conf(path: impl Into<PathBuf>) -> SystemDns {
        let dns = SystemDns::with_source(Source::ResolvConf(path.into()), Err(String::new()));
        if let Err(why) = dns.current() {
            tracing::warn!("DNS: {why}; every lookup fails until that is fixed");
        }
        dns
    }

    /// A resolver asking only `server` (UDP, then TCP for truncated answers), without search
    /// domains or /etc/hosts: for tests against a DNS server on loopback.
    pub fn with_server(server: SocketAddr) -> SystemDns {
        let mut name_server = NameServerConfig::udp_and_tcp(server.ip());
        for connection in &mut name_server.connections {
            connection.port = server.port();
        }
        let config = ResolverConfig::from_name_servers(vec![name_server]);
        let mut options = ResolverOpts::default();
        options.use_hosts_file = ResolveHosts::Never;
        SystemDns::with_source(Source::Fixed, build(config, options))
    }

    /// The same resolver (and cache) with another limit for one whole resolution.
    pub fn with_timeout(mut self, timeout: Duration) -> SystemDns {
        self.timeout = timeout;
        self
    }

    fn with_source(source: Source, resolver: Result<TokioResolver, String>) -> SystemDns {
        SystemDns {
            inner: Arc::new(Inner {
                source,
                state: Mutex::new(State {
                    built_from: None,
                    resolver,
                }),
            }),
            timeout: RESOLVE_TIMEOUT,
        }
    }

    /// Why lookups cannot be made right now, if they cannot.
    pub fn unavailable(&self) -> Option<String> {
        self.current().err()
    }

    /// RFC 3263: where to send a request for `target`. SRV weights are drawn from the OS's
    /// randomness. A resolution that takes longer than the timeout fails as "timed out".
    pub async fn resolve_sip(
        &self,
        target: &SipTarget,
        prefs: &Preferences,
    ) -> Result<Resolved, ResolveError> {
        let lookup = self.snapshot();
        let mut random = rand::random::<u32>;
        let resolution = dns::locate(&lookup, target, prefs, &mut random);
        self.bounded(&target.host, resolution).await
    }

    /// RFC 5389 §9: the STUN server at `host` (SRV `_stun._udp` when no port is given).
    pub async fn resolve_stun(
        &self,
        host: &str,
        port: Option<u16>,
        prefs: &Preferences,
    ) -> Result<Resolved, ResolveError> {
        let lookup = self.snapshot();
        let mut random = rand::random::<u32>;
        let resolution = dns::locate_stun(&lookup, host, port, prefs, &mut random);
        self.bounded(host, resolution).await
    }

    /// RFC 8656 §3.1: the TURN server at `host` (SRV `_turn._udp` when no port is given).
    pub async fn resolve_turn(
        &self,
        host: &str,
        port: Option<u16>,
        prefs: &Preferences,
    ) -> Result<Resolved, ResolveError> {
        let lookup = self.snapshot();
        let mut random = rand::random::<u32>;
        let resolution = dns::locate_turn(&lookup, host, port, prefs, &mut random);
        self.bounded(host, resolution).await
    }

    async fn bounded(
        &self,
        host: &str,
        resolution: impl Future<Output = Result<Resolved, ResolveError>>,
    ) -> Result<Resolved, ResolveError> {
        tokio::time::timeout(self.timeout, resolution)
            .await
            .unwrap_or_else(|_| {
                Err(ResolveError::Timeout {
                    domain: host.to_string(),
                })
            })
    }

    /// One resolver for a whole resolution, so that all its queries go to the same servers.
    fn snapshot(&self) -> Snapshot {
        Snapshot(self.current())
    }

    /// The resolver to use now, rebuilt first if resolv.conf changed or could not be used.
    fn current(&self) -> Result<TokioResolver, String> {
        let mut state = match self.inner.state.lock() {
            Ok(state) => state,
            // A panic elsewhere while holding the lock leaves a State that is still whole.
            Err(poisoned) => poisoned.into_inner(),
        };
        let Source::ResolvConf(path) = &self.inner.source else {
            return state.resolver.clone();
        };
        match std::fs::read(path) {
            Ok(contents) if state.built_from.as_ref() == Some(&contents) => {}
            Ok(contents) => {
                state.resolver = hickory_resolver::system_conf::parse_resolv_conf(&contents)
                    .map_err(|e| format!("{}: {e}", path.display()))
                    .and_then(|(config, options)| build(config, bounded_options(options)));
                state.built_from = Some(contents);
            }
            Err(e) => {
                state.resolver = Err(format!("cannot read {}: {e}", path.display()));
                state.built_from = None;
            }
        }
        state.resolver.clone()
    }
}

/// The system's options, with per-query waits short enough for `RESOLVE_TIMEOUT`.
fn bounded_options(mut options: ResolverOpts) -> ResolverOpts {
    options.timeout = options.timeout.min(QUERY_TIMEOUT);
    options.attempts = options.attempts.clamp(1, QUERY_ATTEMPTS);
    options
}

fn build(config: ResolverConfig, options: ResolverOpts) -> Result<TokioResolver, String> {
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .map_err(|e| format!("cannot set up the DNS resolver: {e}"))
}

impl DnsLookup for SystemDns {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, LookupError> {
        self.snapshot().naptr(name).await
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, LookupError> {
        self.snapshot().srv(name).await
    }

    async fn ips(&self, name: &str) -> Result<Vec<(IpAddr, u32)>, LookupError> {
        self.snapshot().ips(name).await
    }
}

/// The resolver (or the reason there is none) as it was when a resolution started.
struct Snapshot(Result<TokioResolver, String>);

impl Snapshot {
    async fn query(&self, name: &str, kind: RecordType) -> Result<Lookup, LookupError> {
        let resolver = self
            .0
            .as_ref()
            .map_err(|why| LookupError::NoResolver(why.clone()))?;
        resolver.lookup(name, kind).await.map_err(lookup_error)
    }
}

impl DnsLookup for Snapshot {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, LookupError> {
        let lookup = self.query(name, RecordType::NAPTR).await?;
        let records = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::NAPTR(naptr) => Some(Naptr {
                    order: naptr.order,
                    preference: naptr.preference,
                    flags: String::from_utf8_lossy(&naptr.flags).into_owned(),
                    services: String::from_utf8_lossy(&naptr.services).into_owned(),
                    regexp: String::from_utf8_lossy(&naptr.regexp).into_owned(),
                    replacement: naptr.replacement.to_ascii(),
                    ttl: record.ttl,
                }),
                _ => None,
            })
            .collect();
        non_empty(records)
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, LookupError> {
        let lookup = self.query(name, RecordType::SRV).await?;
        let records = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => Some(Srv {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: srv.target.to_ascii(),
                    ttl: record.ttl,
                }),
                _ => None,
            })
            .collect();
        non_empty(records)
    }

    /// A and AAAA, asked together. IPv4 comes first: RFC 3263 leaves the order open, and a
    /// broken IPv6 path costs a whole transaction timeout before failover.
    async fn ips(&self, name: &str) -> Result<Vec<(IpAddr, u32)>, LookupError> {
        let (a, aaaa) = tokio::join!(
            self.query(name, RecordType::A),
            self.query(name, RecordType::AAAA)
        );
        let addresses = |lookup: &Lookup| -> Vec<(IpAddr, u32)> {
            lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::A(a) => Some((IpAddr::V4(a.0), record.ttl)),
                    RData::AAAA(aaaa) => Some((IpAddr::V6(aaaa.0), record.ttl)),
                    _ => None,
                })
                .collect()
        };
        let mut found = Vec::new();
        for lookup in [&a, &aaaa].into_iter().flatten() {
            found.extend(addresses(lookup));
        }
        if !found.is_empty() {
            // One family is enough, even if the other's query failed.
            return Ok(found);
        }
        let errors: Vec<LookupError> = [a.err(), aaaa.err()].into_iter().flatten().collect();
        // A failure means "unknown", which is worse news than "none"; NXDOMAIN says more
        // than NODATA.
        let failure = errors.iter().find(|e| !e.is_absence()).cloned();
        let nxdomain = errors.contains(&LookupError::NxDomain);
        Err(failure.unwrap_or(if nxdomain {
            LookupError::NxDomain
        } else {
            LookupError::NoRecords
        }))
    }
}

fn non_empty<T>(records: Vec<T>) -> Result<Vec<T>, LookupError> {
    if records.is_empty() {
        Err(LookupError::NoRecords)
    } else {
        Ok(records)
    }
}

/// hickory's error, in the terms RFC 3263 needs: absence, or one kind of failure.
fn lookup_error(error: NetError) -> LookupError {
    if error.is_nx_domain() {
        return LookupError::NxDomain;
    }
    if error.is_no_records_found() {
        return LookupError::NoRecords;
    }
    match error {
        NetError::Timeout => LookupError::Timeout,
        NetError::Dns(DnsError::ResponseCode(code)) => LookupError::Server(code.to_string()),
        NetError::Io(e) => LookupError::Network(e.to_string()),
        NetError::NoConnections => {
            LookupError::Network("no connection to any DNS server".to_string())
        }
        other => LookupError::Server(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::TransportKind;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn builds_outside_a_runtime_and_resolutions_can_be_spawned() {
        // main may build it before the runtime exists; nothing is sent until a lookup.
        let dns = SystemDns::with_server(SocketAddr::from(([127, 0, 0, 1], 9)));
        let _system = SystemDns::new();
        let target = SipTarget::host("biloxi.test");
        let prefs = Preferences {
            preferred: TransportKind::Udp,
            tls: false,
            ipv4: true,
            ipv6: false,
        };
        // The SIP task spawns resolutions so that a slow DNS never blocks it.
        assert_send(&dns.resolve_sip(&target, &prefs));
        assert_send(&dns.resolve_stun("stun.test", None, &prefs));
    }

    #[test]
    fn hickory_errors_map_to_absence_or_failure() {
        use hickory_resolver::proto::op::{Query, ResponseCode};
        use hickory_resolver::proto::rr::Name;

        let query = Query::query(Name::root(), RecordType::A);
        let nx = NetError::from(hickory_resolver::net::NoRecords::new(
            query.clone(),
            ResponseCode::NXDomain,
        ));
        let nodata = NetError::from(hickory_resolver::net::NoRecords::new(
            query,
            ResponseCode::NoError,
        ));
        assert_eq!(lookup_error(nx), LookupError::NxDomain);
        assert_eq!(lookup_error(nodata), LookupError::NoRecords);
        assert_eq!(lookup_error(NetError::Timeout), LookupError::Timeout);
        let servfail = lookup_error(NetError::Dns(DnsError::ResponseCode(
            ResponseCode::ServFail,
        )));
        assert!(matches!(servfail, LookupError::Server(_)), "{servfail:?}");
        assert!(!servfail.is_absence());
    }
}
