//! What the diagnosis is told besides the engine's events: facts only the driver sees (DNS
//! answers, ICMP errors, failed TLS handshakes, dead connections) and the account's setup.

use std::net::SocketAddr;

use crate::dns::ResolveError;

/// The account as configured, told once at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    pub account: String,
    /// Our codecs in preference order, as SDP names them (`opus`, `PCMU`, ...).
    pub codecs: Vec<String>,
    /// The registrar's URI, when the account registers.
    pub registrar: Option<String>,
    /// The outbound proxy's URI, when there is one.
    pub outbound_proxy: Option<String>,
    /// The account's digest password is set (a 401 without one is a missing password, not a
    /// wrong one).
    pub has_password: bool,
    /// UDP keep-alive interval while registered; `None`: automatic (29 s behind a NAT) or off.
    pub keepalive_secs: Option<u64>,
    /// `keepalive_secs = 0`: no keep-alives, even behind a NAT.
    pub keepalive_off: bool,
}

/// How a TLS handshake failed, as far as the certificate check or the peer said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate chain ends at a CA we do not trust (self-signed, a private CA).
    UnknownIssuer,
    /// The certificate is for other names than the one we asked for.
    NameMismatch {
        expected: String,
        presented: Vec<String>,
    },
    /// The certificate's validity ended; `days_ago` when the check said when.
    Expired { days_ago: Option<u64> },
    /// The certificate is not valid yet (a clock far off, or a certificate dated ahead).
    NotYetValid,
    /// The server ended the handshake: a fatal alert, or the connection closed mid-way.
    Refused { why: String },
    /// Anything else the TLS library said.
    Other(String),
}

/// Why a host name gave no server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsFailure {
    /// The DNS answered: no such name, or no NAPTR, SRV, A or AAAA records (or SRV targets
    /// without addresses).
    Absent(String),
    /// No usable answer: the DNS server did not answer, failed, or there is none.
    Unanswered(String),
}

impl DnsFailure {
    pub fn text(&self) -> &str {
        match self {
            DnsFailure::Absent(text) | DnsFailure::Unanswered(text) => text,
        }
    }
}

impl From<&ResolveError> for DnsFailure {
    fn from(error: &ResolveError) -> DnsFailure {
        let text = error.to_string();
        match error {
            ResolveError::Timeout { .. }
            | ResolveError::LookupFailed { .. }
            | ResolveError::NoResolver { .. } => DnsFailure::Unanswered(text),
            _ => DnsFailure::Absent(text),
        }
    }
}

/// One server a name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `UDP`, `TCP` or `TLS`.
    pub transport: &'static str,
}

/// A fact the driver reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// The account, once at start.
    Setup(Setup),
    /// A host name was looked up (RFC 3263): its servers in order, how they were found (the
    /// resolver's trail, "NAPTR ... -> SRV ... -> host:port -> IP"), or why there are none.
    Resolved {
        host: String,
        outcome: Result<(Vec<Target>, String), DnsFailure>,
    },
    /// ICMP said nothing listens at `peer` (port or host unreachable).
    Unreachable { peer: SocketAddr },
    /// A TCP or TLS connection to `peer` could not be opened; `tls` when the handshake failed.
    ConnectFailed {
        peer: SocketAddr,
        transport: &'static str,
        error: String,
        tls: Option<TlsFailure>,
    },
    /// An open connection died: no pong to our keep-alive pings, or a write failed.
    ConnectionLost { peer: SocketAddr, error: String },
}
