//! Where a request goes: the next hop's URI turned into transport destinations.
//!
//! RFC 3261 §8.1.2 takes the next hop from the first Route (the outbound proxy, or a dialog's
//! route set) or else the Request-URI; RFC 3263 turns that URI into an ordered list of
//! destinations. An IP literal needs no DNS and is decided here; a host name is a `HopKey` the
//! driver resolves (NAPTR, SRV, A/AAAA) and hands back with `UserAgent::handle_resolved`.
//! Requests wait ("parked") meanwhile; the answers are cached for their TTL, and the
//! destination that last answered moves to the front so that refreshes go to a live server
//! first instead of timing out on a dead one every time.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::sip::transaction::{Destination, TransportKind};
use crate::sip::uri::{Scheme, Uri};

/// Host names whose answers are kept at most; names come from the network too (Contact,
/// Record-Route), so the cache is bounded.
pub const MAX_CACHED_HOPS: usize = 128;
/// Requests waiting for DNS at most; past it a new one fails at once.
pub const MAX_PARKED: usize = 64;
/// A lookup the driver never answered fails the requests waiting for it after this long
/// (the driver bounds its own lookups well below it).
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(30);
/// The longest we trust an answer, whatever its TTL says.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// A server to locate by RFC 3263: a host name with what the URI fixed about it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HopKey {
    /// Lowercase, without brackets; never an IP literal.
    pub host: String,
    pub port: Option<u16>,
    /// From `;transport=`, `sips:`, or the account's transport when that is not UDP.
    pub transport: Option<TransportKind>,
    /// `sips:`: only TLS will do.
    pub secure: bool,
}

impl std::fmt::Display for HopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        if let Some(transport) = self.transport {
            write!(f, ";transport={}", super::transport_token(transport))?;
        }
        Ok(())
    }
}

/// What the next hop URI says without DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// An IP literal: this one destination.
    Direct(Destination),
    /// A host name: resolve it.
    Locate(HopKey),
}

/// The transport a URI asks for: `;transport=`, else TLS for `sips:`.
pub fn uri_transport(uri: &Uri) -> Option<TransportKind> {
    match uri.transport().as_deref() {
        Some("tcp") => Some(TransportKind::Tcp),
        Some("tls") => Some(TransportKind::Tls),
        Some("udp") => Some(TransportKind::Udp),
        _ if uri.scheme == Scheme::Sips => Some(TransportKind::Tls),
        _ => None,
    }
}

/// The next hop of a request whose first Route (or Request-URI) is `uri`. `account` is the
/// account's transport: it applies when the URI names none (an account set to TCP or TLS
/// means it for every server; UDP, the default, leaves the choice to DNS for names).
pub fn hop_for(uri: &Uri, account: TransportKind) -> Hop {
    let host = uri.host_unbracketed();
    let explicit = uri_transport(uri);
    if let Ok(ip) = host.parse::<IpAddr>() {
        let transport = explicit.unwrap_or(account);
        let default_port = if transport == TransportKind::Tls {
            5061
        } else {
            5060
        };
        return Hop::Direct(Destination {
            addr: std::net::SocketAddr::new(ip, uri.port.unwrap_or(default_port)),
            transport,
        });
    }
    Hop::Locate(HopKey {
        host: host.to_ascii_lowercase(),
        port: uri.port,
        transport: explicit.or((account != TransportKind::Udp).then_some(account)),
        secure: uri.scheme == Scheme::Sips,
    })
}

#[derive(Debug, Clone)]
enum Entry {
    /// Asked; the answer has not come.
    Pending { since: Instant },
    Ready {
        targets: Vec<Destination>,
        until: Instant,
    },
}

/// What `Locator::lookup` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Ready(Vec<Destination>),
    /// Asked (or being asked) of the driver: wait for `handle_resolved`.
    Pending,
}

/// The cache of resolved hops and the lookups the driver still has to make.
#[derive(Debug, Default)]
pub struct Locator {
    entries: HashMap<HopKey, Entry>,
    /// Keys to hand to the driver (`poll_query`).
    queries: VecDeque<HopKey>,
}

impl Locator {
    /// The destinations of `key`, or Pending (and a query for the driver when none runs).
    pub fn lookup(&mut self, key: &HopKey, now: Instant) -> Lookup {
        match self.entries.get(key) {
            Some(Entry::Ready { targets, until }) if *until > now && !targets.is_empty() => {
                return Lookup::Ready(targets.clone());
            }
            Some(Entry::Pending { since }) if now < *since + LOOKUP_DEADLINE => {
                return Lookup::Pending;
            }
            _ => {}
        }
        self.make_room(now);
        self.entries
            .insert(key.clone(), Entry::Pending { since: now });
        self.queries.push_back(key.clone());
        Lookup::Pending
    }

    /// The driver's answer: destinations in order and how long they hold. An empty list or a
    /// zero TTL is not cached.
    pub fn resolved(&mut self, key: &HopKey, targets: &[Destination], ttl: Duration, now: Instant) {
        if targets.is_empty() || ttl.is_zero() {
            self.entries.remove(key);
            return;
        }
        if !self.entries.contains_key(key) {
            self.make_room(now);
        }
        self.entries.insert(
            key.clone(),
            Entry::Ready {
                targets: targets.to_vec(),
                until: now + ttl.min(MAX_TTL),
            },
        );
    }

    /// The lookup failed: forget it, so the next request asks again.
    pub fn failed(&mut self, key: &HopKey) {
        self.entries.remove(key);
    }

    /// `dest` answered: it goes first for the next requests to `key`.
    pub fn promote(&mut self, key: &HopKey, dest: Destination) {
        if let Some(Entry::Ready { targets, .. }) = self.entries.get_mut(key)
            && let Some(at) = targets.iter().position(|d| *d == dest)
        {
            let alive = targets.remove(at);
            targets.insert(0, alive);
        }
    }

    /// `dest` failed (timeout, transport error, 503): it goes last.
    pub fn demote(&mut self, key: &HopKey, dest: Destination) {
        if let Some(Entry::Ready { targets, .. }) = self.entries.get_mut(key)
            && let Some(at) = targets.iter().position(|d| *d == dest)
        {
            let dead = targets.remove(at);
            targets.push(dead);
        }
    }

    pub fn poll_query(&mut self) -> Option<HopKey> {
        self.queries.pop_front()
    }

    /// Every cached destination of `key` (for the trusted proxy addresses).
    pub fn destinations(&self, key: &HopKey) -> Vec<Destination> {
        match self.entries.get(key) {
            Some(Entry::Ready { targets, .. }) => targets.clone(),
            _ => Vec::new(),
        }
    }

    /// Drops expired answers, then (still full) the entry that expires first.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < MAX_CACHED_HOPS {
            return;
        }
        self.entries.retain(|_, e| match e {
            Entry::Ready { until, .. } => *until > now,
            Entry::Pending { since } => now < *since + LOOKUP_DEADLINE,
        });
        while self.entries.len() >= MAX_CACHED_HOPS {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| match e {
                    Entry::Ready { until, .. } => *until,
                    Entry::Pending { since } => *since + LOOKUP_DEADLINE,
                })
                .map(|(k, _)| k.clone());
            match oldest {
                Some(key) => {
                    self.entries.remove(&key);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_clock::t0 as start;

    fn dest(addr: &str) -> Destination {
        Destination {
            addr: addr.parse().expect("addr"),
            transport: TransportKind::Udp,
        }
    }

    fn key(host: &str) -> HopKey {
        HopKey {
            host: host.into(),
            port: None,
            transport: None,
            secure: false,
        }
    }

    fn uri(text: &str) -> Uri {
        text.parse().expect("uri")
    }

    #[test]
    fn ip_literals_need_no_dns_and_names_do() {
        assert_eq!(
            hop_for(&uri("sip:bob@192.0.2.4"), TransportKind::Udp),
            Hop::Direct(dest("192.0.2.4:5060"))
        );
        assert_eq!(
            hop_for(&uri("sips:[2001:db8::4]"), TransportKind::Udp),
            Hop::Direct(Destination {
                addr: "[2001:db8::4]:5061".parse().expect("addr"),
                transport: TransportKind::Tls
            })
        );
        assert_eq!(
            hop_for(&uri("sip:bob@Biloxi.TEST:5070"), TransportKind::Udp),
            Hop::Locate(HopKey {
                host: "biloxi.test".into(),
                port: Some(5070),
                transport: None,
                secure: false
            })
        );
        // A TCP account means TCP for names too; `transport=` in the URI wins.
        let Hop::Locate(k) = hop_for(&uri("sip:biloxi.test"), TransportKind::Tcp) else {
            panic!("a name needs DNS");
        };
        assert_eq!(k.transport, Some(TransportKind::Tcp));
        let Hop::Locate(k) = hop_for(&uri("sip:biloxi.test;transport=udp"), TransportKind::Tcp)
        else {
            panic!("a name needs DNS");
        };
        assert_eq!(k.transport, Some(TransportKind::Udp));
        let Hop::Locate(k) = hop_for(&uri("sips:biloxi.test"), TransportKind::Udp) else {
            panic!("a name needs DNS");
        };
        assert!(k.secure);
        assert_eq!(k.transport, Some(TransportKind::Tls));
    }

    #[test]
    fn one_query_per_name_until_it_is_answered_then_cached_for_the_ttl() {
        let now = start();
        let mut locator = Locator::default();
        assert_eq!(locator.lookup(&key("a.test"), now), Lookup::Pending);
        assert_eq!(locator.lookup(&key("a.test"), now), Lookup::Pending);
        assert_eq!(locator.poll_query(), Some(key("a.test")));
        assert_eq!(locator.poll_query(), None, "asked once");
        let targets = [dest("192.0.2.1:5060"), dest("192.0.2.2:5060")];
        locator.resolved(&key("a.test"), &targets, Duration::from_secs(60), now);
        assert_eq!(
            locator.lookup(&key("a.test"), now + Duration::from_secs(59)),
            Lookup::Ready(targets.to_vec())
        );
        // Expired: asked again.
        assert_eq!(
            locator.lookup(&key("a.test"), now + Duration::from_secs(60)),
            Lookup::Pending
        );
        assert_eq!(locator.poll_query(), Some(key("a.test")));
    }

    #[test]
    fn a_lookup_never_answered_is_asked_again_after_the_deadline() {
        let now = start();
        let mut locator = Locator::default();
        locator.lookup(&key("slow.test"), now);
        locator.poll_query();
        locator.lookup(
            &key("slow.test"),
            now + LOOKUP_DEADLINE - Duration::from_millis(1),
        );
        assert_eq!(locator.poll_query(), None);
        locator.lookup(&key("slow.test"), now + LOOKUP_DEADLINE);
        assert_eq!(locator.poll_query(), Some(key("slow.test")));
    }

    #[test]
    fn the_server_that_answered_goes_first_and_a_dead_one_last() {
        let now = start();
        let mut locator = Locator::default();
        let (a, b, c) = (
            dest("192.0.2.1:5060"),
            dest("192.0.2.2:5060"),
            dest("192.0.2.3:5060"),
        );
        locator.resolved(&key("x.test"), &[a, b, c], Duration::from_secs(60), now);
        locator.demote(&key("x.test"), a);
        assert_eq!(
            locator.lookup(&key("x.test"), now),
            Lookup::Ready(vec![b, c, a])
        );
        locator.promote(&key("x.test"), c);
        assert_eq!(
            locator.lookup(&key("x.test"), now),
            Lookup::Ready(vec![c, b, a])
        );
    }

    #[test]
    fn the_cache_is_bounded() {
        let now = start();
        let mut locator = Locator::default();
        for i in 0..MAX_CACHED_HOPS * 3 {
            let k = key(&format!("h{i}.test"));
            locator.resolved(&k, &[dest("192.0.2.1:5060")], Duration::from_secs(60), now);
            locator.lookup(&key(&format!("p{i}.test")), now);
        }
        assert!(locator.entries.len() <= MAX_CACHED_HOPS);
    }

    #[test]
    fn empty_answers_and_zero_ttls_are_not_cached() {
        let now = start();
        let mut locator = Locator::default();
        locator.resolved(&key("z.test"), &[], Duration::from_secs(60), now);
        assert_eq!(locator.lookup(&key("z.test"), now), Lookup::Pending);
        locator.resolved(
            &key("z.test"),
            &[dest("192.0.2.1:5060")],
            Duration::ZERO,
            now,
        );
        assert_eq!(locator.lookup(&key("z.test"), now), Lookup::Pending);
    }
}
