//! Errors of the two DNS layers: one query (`LookupError`) and one resolution (`ResolveError`).

/// Why one query gave no records. Absence (`NoRecords`, `NxDomain`) is an answer and lets
/// RFC 3263 move on to the next step; the others mean "we do not know".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// The name exists but has no records of this type (NODATA).
    #[error("no records")]
    NoRecords,
    /// The name does not exist (NXDOMAIN).
    #[error("no such domain")]
    NxDomain,
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The server answered with an error (SERVFAIL, REFUSED, a malformed answer, ...).
    #[error("DNS server error: {0}")]
    Server(String),
    /// The query could not be sent or its answer not received.
    #[error("network error: {0}")]
    Network(String),
    /// No resolver could be set up (e.g. /etc/resolv.conf missing on an offline laptop).
    #[error("no DNS resolver: {0}")]
    NoResolver(String),
}

impl LookupError {
    /// True when the DNS said there is nothing (as opposed to not answering).
    pub fn is_absence(&self) -> bool {
        matches!(self, LookupError::NoRecords | LookupError::NxDomain)
    }
}

/// Why a SIP (or STUN) server could not be located. Every message names the domain, as the
/// user wrote it, and says what to look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    #[error("`{name}` is not a valid domain name")]
    InvalidName { name: String },
    #[error("{domain}: no NAPTR, SRV, A or AAAA records")]
    NoRecords { domain: String },
    #[error("{domain}: no such domain")]
    NoSuchDomain { domain: String },
    #[error("DNS server did not answer for {domain} (timed out)")]
    Timeout { domain: String },
    #[error("DNS lookup for {domain} failed: {reason}")]
    LookupFailed { domain: String, reason: String },
    #[error("cannot look up {domain}: no DNS resolver ({reason})")]
    NoResolver { domain: String, reason: String },
    /// The domain's NAPTR records offer SIP over TLS only.
    #[error("{domain}: only TLS is offered and TLS is not configured")]
    TlsOnly { domain: String },
    /// The URI asks for TLS (`sips:`, `transport=tls`, or the account's transport).
    #[error("{domain}: {why} needs TLS and TLS is not configured")]
    TlsNotConfigured { domain: String, why: &'static str },
    /// Every SRV answer was the target "." (RFC 2782: "decidedly not available").
    #[error("{domain}: the DNS says the service is not available there (SRV {names} is \".\")")]
    NotAvailable { domain: String, names: String },
    /// SRV records exist but none of their targets has an address.
    #[error("{domain}: the SRV target {targets} has no A or AAAA records")]
    TargetsWithoutAddress { domain: String, targets: String },
    /// Addresses exist, but only of a family our sockets cannot reach.
    #[error("{domain}: only {family} addresses ({example}), which this host cannot reach")]
    NoUsableAddress {
        domain: String,
        family: &'static str,
        example: String,
    },
}

impl ResolveError {
    /// The domain (or name) the error is about.
    pub fn domain(&self) -> &str {
        match self {
            ResolveError::InvalidName { name } => name,
            ResolveError::NoRecords { domain }
            | ResolveError::NoSuchDomain { domain }
            | ResolveError::Timeout { domain }
            | ResolveError::LookupFailed { domain, .. }
            | ResolveError::NoResolver { domain, .. }
            | ResolveError::TlsOnly { domain }
            | ResolveError::TlsNotConfigured { domain, .. }
            | ResolveError::NotAvailable { domain, .. }
            | ResolveError::TargetsWithoutAddress { domain, .. }
            | ResolveError::NoUsableAddress { domain, .. } => domain,
        }
    }

    /// True when asking again later may succeed (the DNS did not answer, or failed), as
    /// opposed to an answer that says the records are not there. A registrar that cannot be
    /// resolved yet retries on these.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ResolveError::Timeout { .. }
                | ResolveError::LookupFailed { .. }
                | ResolveError::NoResolver { .. }
        )
    }

    /// The error for a failed (not absent) query about `domain`.
    pub(crate) fn from_failure(domain: &str, error: &LookupError) -> ResolveError {
        let domain = domain.to_string();
        match error {
            LookupError::Timeout => ResolveError::Timeout { domain },
            LookupError::NoResolver(reason) => ResolveError::NoResolver {
                domain,
                reason: reason.clone(),
            },
            LookupError::NoRecords => ResolveError::NoRecords { domain },
            LookupError::NxDomain => ResolveError::NoSuchDomain { domain },
            LookupError::Server(_) | LookupError::Network(_) => ResolveError::LookupFailed {
                domain,
                reason: error.to_string(),
            },
        }
    }
}
