//! RFC 3263 "Locating SIP Servers", without I/O.
//!
//! `locate` turns a SIP URI's host, port, `transport=` and scheme into the ordered list of
//! destinations to try (NAPTR, then SRV, then A/AAAA), asking a [`DnsLookup`] for the records.
//! Nothing here touches a socket, a clock or a runtime: the tokio implementation of
//! `DnsLookup` is `driver::dns::SystemDns`, and the tests use a table of records.

mod error;
mod locate;
mod name;
mod naptr;
mod srv;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use crate::sip::transaction::{Destination, TransportKind};

pub use error::{LookupError, ResolveError};
pub use locate::{locate, locate_stun, locate_turn};

/// At most this many NAPTR records (after filtering and sorting) lead to SRV queries, and at
/// most this many SRV records of one answer are ordered: a hostile answer with thousands of
/// records costs a sort, never thousands of queries.
pub const MAX_RECORDS: usize = 16;
/// At most this many destinations come out of one resolution (RFC 3263 §4.3 failover walks
/// them in order; more would only lengthen a failing call).
pub const MAX_DESTINATIONS: usize = 16;
/// At most this many A/AAAA look-ups (SRV targets) in one resolution.
pub const MAX_HOST_LOOKUPS: usize = 16;
/// TTLs are capped at one day, as resolvers do, so that `now + ttl` stays sane.
pub const MAX_TTL: u32 = 86_400;

/// SIP's default ports (RFC 3261 §19.1.2).
pub const SIP_PORT: u16 = 5060;
pub const SIPS_PORT: u16 = 5061;
/// STUN's default port (RFC 5389 §9).
pub const STUN_PORT: u16 = 3478;

/// What the URI says about where to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipTarget {
    /// The URI's host: a domain name. (An IP literal is accepted too and returned as it is.)
    pub host: String,
    /// The URI's port, if it has one: then no NAPTR or SRV is consulted (RFC 3263 §4.2).
    pub port: Option<u16>,
    /// The URI's `transport=` parameter.
    pub transport: Option<TransportKind>,
    /// A `sips:` URI: TLS only.
    pub secure: bool,
}

impl SipTarget {
    /// A plain `sip:` target with nothing but a host.
    pub fn host(host: impl Into<String>) -> SipTarget {
        SipTarget {
            host: host.into(),
            port: None,
            transport: None,
            secure: false,
        }
    }
}

/// What this phone can do, which decides among the services the DNS offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preferences {
    /// The account's transport: tried first when NAPTR leaves a choice, and used when nothing
    /// else says which transport to take.
    pub preferred: TransportKind,
    /// TLS is configured (without it, TLS services are skipped).
    pub tls: bool,
    /// Address families our sockets can reach.
    pub ipv4: bool,
    pub ipv6: bool,
}

/// The outcome of a resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Destinations in the order to try them (RFC 3263 §4.3), deduplicated, at most
    /// [`MAX_DESTINATIONS`].
    pub targets: Vec<Destination>,
    /// The smallest TTL of the records that produced `targets`: resolve again after this.
    pub ttl: Duration,
    /// One line for logs and error messages: how the first target was found, e.g.
    /// "NAPTR SIP+D2U -> SRV _sip._udp.biloxi.test -> proxy.biloxi.test:5070 -> 192.0.2.20".
    pub trail: String,
}

/// One NAPTR record (RFC 3403), as `DnsLookup` hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub regexp: String,
    /// A domain name (a trailing dot is allowed).
    pub replacement: String,
    pub ttl: u32,
}

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// A domain name (a trailing dot is allowed); "." means "no such service here".
    pub target: String,
    pub ttl: u32,
}

/// The three queries RFC 3263 needs. Names from the user are passed as written; names taken
/// from records end with a dot (absolute: no search domains).
///
/// The futures are `Send` so that a resolution can run in a spawned tokio task.
pub trait DnsLookup {
    fn naptr(&self, name: &str) -> impl Future<Output = Result<Vec<Naptr>, LookupError>> + Send;
    fn srv(&self, name: &str) -> impl Future<Output = Result<Vec<Srv>, LookupError>> + Send;
    /// A and AAAA together, each address with its TTL.
    fn ips(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<(IpAddr, u32)>, LookupError>> + Send;
}

pub(crate) fn transport_name(transport: TransportKind) -> &'static str {
    match transport {
        TransportKind::Udp => "udp",
        TransportKind::Tcp => "tcp",
        TransportKind::Tls => "tls",
    }
}

pub(crate) fn default_port(transport: TransportKind) -> u16 {
    match transport {
        TransportKind::Tls => SIPS_PORT,
        TransportKind::Udp | TransportKind::Tcp => SIP_PORT,
    }
}
