//! Scanner protection, sans-IO: which sources may start anything (`accept_from`), and how many
//! responses an unknown source gets (a token bucket per source IP). The driver hands in the
//! trusted addresses after DNS; time comes in with every input, so all of it runs on virtual
//! time in tests.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Who may send us requests outside a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptFrom {
    /// Anyone (an account without registrar or proxy: people call our address directly).
    #[default]
    Any,
    /// Only the registrar / outbound proxy (by resolved address); others get 403.
    Proxy,
}

/// Responses per second one unknown source IP gets, sustained.
pub const RESPONSE_RATE: f64 = 20.0;
/// ... and in a burst.
pub const RESPONSE_BURST: f64 = 40.0;
/// Source IPs the rate limiter remembers; past it the longest-idle one is forgotten.
pub const MAX_TRACKED_SOURCES: usize = 1024;
/// At most one warning about dropped responses per this interval.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered incoming calls from one source address (IP and port) at once; more get 486.
/// Keyed by IP *and* port so two phones behind one NAT can both ring; the overall bound below
/// covers a scanner that rotates ports.
pub const MAX_RINGING_PER_SOURCE: usize = 2;
/// Unanswered incoming calls at once, from everyone.
pub const MAX_RINGING: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug, Default)]
pub(super) struct Guard {
    pub accept: AcceptFrom,
    trusted: HashSet<IpAddr>,
    buckets: HashMap<IpAddr, Bucket>,
    /// Dropped since the last warning, and the last source dropped.
    pending: u64,
    last_dropped: Option<IpAddr>,
    dropped_total: u64,
    last_warning: Option<Instant>,
}

/// `::ffff:a.b.c.d` is `a.b.c.d` (a dual-stack socket reports IPv4 peers that way).
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Trusted proxy/registrar addresses kept at most.
const MAX_TRUSTED: usize = 64;

impl Guard {
    pub fn set_policy(&mut self, accept: AcceptFrom, trusted: impl IntoIterator<Item = IpAddr>) {
        self.accept = accept;
        self.trusted = trusted.into_iter().map(canonical).collect();
    }

    /// More addresses of the registrar or outbound proxy (DNS answered for their names).
    /// Bounded: a DNS answer is not allowed to grow the set without limit.
    pub fn trust(&mut self, ips: impl IntoIterator<Item = IpAddr>) {
        for ip in ips {
            if self.trusted.len() >= MAX_TRUSTED {
                break;
            }
            self.trusted.insert(canonical(ip));
        }
    }

    /// One of the registrar's / outbound proxy's addresses.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.contains(&canonical(ip))
    }

    /// Whether a request from `ip` outside any dialog may be served (else 403).
    pub fn accepts(&self, ip: IpAddr) -> bool {
        self.accept == AcceptFrom::Any || self.is_trusted(ip)
    }

    /// Takes a token for a response to `ip` (an unknown source). False: drop the response.
    /// Loopback sources are not limited: they are processes on this machine, not scanners on
    /// the network (and local tools such as sipp load tests must not be throttled).
    pub fn allow_response(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = canonical(ip);
        if ip.is_loopback() {
            return true;
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= MAX_TRACKED_SOURCES {
            // Forget the longest-idle source; it starts again with a full bucket if it returns.
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(ip, _)| *ip)
            {
                self.buckets.remove(&oldest);
            }
        }
        let bucket = self.buckets.entry(ip).or_insert(Bucket {
            tokens: RESPONSE_BURST,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * RESPONSE_RATE).min(RESPONSE_BURST);
        bucket.last = now.max(bucket.last);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            self.pending += 1;
            self.dropped_total += 1;
            self.last_dropped = Some(ip);
            false
        }
    }

    /// How many source IPs the limiter tracks now (bounded by `MAX_TRACKED_SOURCES`).
    #[cfg(test)]
    pub fn tracked_sources(&self) -> usize {
        self.buckets.len()
    }

    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// The warning about dropped responses, when one is due (at most one per interval).
    pub fn take_warning(&mut self, now: Instant) -> Option<String> {
        if self.pending == 0 {
            return None;
        }
        if self
            .last_warning
            .is_some_and(|at| now < at + DROP_WARNING_INTERVAL)
        {
            return None;
        }
        self.last_warning = Some(now);
        let count = std::mem::take(&mut self.pending);
        let last = self
            .last_dropped
            .map(|ip| format!(" (last from {ip})"))
            .unwrap_or_default();
        let plural = if count == 1 { "" } else { "s" };
        Some(format!(
            "rate limit: dropped {count} response{plural} to sources sending more than \
             {RESPONSE_RATE} requests/s{last}; probably a SIP scanner"
        ))
    }

    /// When a pending warning becomes due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.pending > 0)
            .then(|| self.last_warning.map(|at| at + DROP_WARNING_INTERVAL))
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn bucket_gives_the_burst_then_the_rate() {
        let mut g = Guard::default();
        let t0 = crate::test_clock::t0();
        let scanner = ip("203.0.113.7");
        let allowed = (0..100).filter(|_| g.allow_response(scanner, t0)).count();
        assert_eq!(allowed, RESPONSE_BURST as usize);
        // One second later: 20 more.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..100).filter(|_| g.allow_response(scanner, t1)).count();
        assert_eq!(allowed, RESPONSE_RATE as usize);
        // Another source is not affected.
        assert!(g.allow_response(ip("198.51.100.1"), t1));
        // Loopback is never limited.
        assert!((0..1000).all(|_| g.allow_response(ip("127.0.0.1"), t1)));
        assert_eq!(g.dropped_total(), 60 + 80);
    }

    #[test]
    fn table_is_bounded_and_evicts_the_idle() {
        let mut g = Guard::default();
        let t0 = crate::test_clock::t0();
        let old = ip("198.51.100.1");
        for _ in 0..40 {
            g.allow_response(old, t0);
        }
        assert!(!g.allow_response(old, t0));
        for i in 0..5000u32 {
            let t = t0 + Duration::from_millis(u64::from(i) + 1);
            g.allow_response(IpAddr::from((0x0a00_0000u32 + i).to_be_bytes()), t);
            assert!(g.tracked_sources() <= MAX_TRACKED_SOURCES);
        }
        // The old source was forgotten: a full bucket again.
        assert!(g.allow_response(old, t0 + Duration::from_secs(6)));
    }

    #[test]
    fn warnings_are_at_most_one_per_interval_and_count_everything() {
        let mut g = Guard::default();
        let t0 = crate::test_clock::t0();
        let scanner = ip("203.0.113.7");
        for _ in 0..50 {
            g.allow_response(scanner, t0);
        }
        let w = g.take_warning(t0).expect("a warning");
        assert!(
            w.contains("dropped 10 ") && w.contains("203.0.113.7"),
            "{w}"
        );
        for _ in 0..25 {
            g.allow_response(scanner, t0 + Duration::from_secs(1));
        }
        assert_eq!(g.take_warning(t0 + Duration::from_secs(1)), None);
        assert_eq!(g.poll_timeout(), Some(t0 + DROP_WARNING_INTERVAL));
        let w = g.take_warning(t0 + DROP_WARNING_INTERVAL).expect("due");
        assert!(w.contains("dropped 5 "), "{w}");
        assert_eq!(g.poll_timeout(), None);
    }

    #[test]
    fn trusted_addresses_match_mapped_ipv4() {
        let mut g = Guard::default();
        g.set_policy(AcceptFrom::Proxy, [ip("192.0.2.10")]);
        assert!(g.accepts(ip("192.0.2.10")));
        assert!(g.accepts(ip("::ffff:192.0.2.10")));
        assert!(!g.accepts(ip("192.0.2.11")));
        g.set_policy(AcceptFrom::Any, [ip("192.0.2.10")]);
        assert!(g.accepts(ip("192.0.2.11")));
    }
}
