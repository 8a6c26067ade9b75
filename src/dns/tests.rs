//! `locate` against a table of records: one test per RFC 3263 rule a user would notice.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;

use super::*;
use crate::sip::transaction::TransportKind::{self, Tcp, Tls, Udp};

/// A DNS made of tables. A name missing from a table is NXDOMAIN; every query is recorded.
#[derive(Default)]
struct FakeDns {
    naptr: HashMap<String, Result<Vec<Naptr>, LookupError>>,
    srv: HashMap<String, Result<Vec<Srv>, LookupError>>,
    ips: HashMap<String, Result<Vec<(IpAddr, u32)>, LookupError>>,
    asked: Mutex<Vec<String>>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn answer<T: Clone>(
    table: &HashMap<String, Result<Vec<T>, LookupError>>,
    name: &str,
) -> Result<Vec<T>, LookupError> {
    table
        .get(&key(name))
        .cloned()
        .unwrap_or(Err(LookupError::NxDomain))
}

impl FakeDns {
    fn naptr(mut self, name: &str, records: &[(u16, u16, &str, &str)]) -> Self {
        let records = records
            .iter()
            .map(|&(order, preference, services, replacement)| Naptr {
                order,
                preference,
                flags: "s".into(),
                services: services.into(),
                regexp: String::new(),
                replacement: replacement.into(),
                ttl: 300,
            })
            .collect();
        self.naptr.insert(key(name), Ok(records));
        self
    }

    fn srv(mut self, name: &str, records: &[(u16, u16, u16, &str)]) -> Self {
        let records = records
            .iter()
            .map(|&(priority, weight, port, target)| Srv {
                priority,
                weight,
                port,
                target: target.into(),
                ttl: 300,
            })
            .collect();
        self.srv.insert(key(name), Ok(records));
        self
    }

    fn host(mut self, name: &str, ips: &[&str]) -> Self {
        let ips = ips.iter().map(|ip| (ip.parse().unwrap(), 300)).collect();
        self.ips.insert(key(name), Ok(ips));
        self
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }

    fn ask(&self, kind: &str, name: &str) {
        self.asked
            .lock()
            .unwrap()
            .push(format!("{kind} {}", key(name)));
    }
}

impl DnsLookup for FakeDns {
    async fn naptr(&self, name: &str) -> Result<Vec<Naptr>, LookupError> {
        self.ask("NAPTR", name);
        answer(&self.naptr, name)
    }

    async fn srv(&self, name: &str) -> Result<Vec<Srv>, LookupError> {
        self.ask("SRV", name);
        answer(&self.srv, name)
    }

    async fn ips(&self, name: &str) -> Result<Vec<(IpAddr, u32)>, LookupError> {
        self.ask("A/AAAA", name);
        answer(&self.ips, name)
    }
}

fn prefs(preferred: TransportKind) -> Preferences {
    Preferences {
        preferred,
        tls: true,
        ipv4: true,
        ipv6: true,
    }
}

/// 0, 1, 2, ...: deterministic SRV draws.
fn counter() -> impl FnMut() -> u32 {
    let mut n = 0u32;
    move || {
        n = n.wrapping_add(1);
        n - 1
    }
}

fn run(dns: &FakeDns, target: &SipTarget, prefs: &Preferences) -> Result<Resolved, ResolveError> {
    locate(dns, target, prefs, &mut counter())
        .now_or_never()
        .expect("the fake DNS never waits")
}

fn dests(resolved: &Resolved) -> Vec<(String, TransportKind)> {
    resolved
        .targets
        .iter()
        .map(|d| (d.addr.to_string(), d.transport))
        .collect()
}

fn d(addr: &str, transport: TransportKind) -> (String, TransportKind) {
    (addr.to_string(), transport)
}

fn sips(host: &str) -> SipTarget {
    SipTarget {
        secure: true,
        ..SipTarget::host(host)
    }
}

/// biloxi.test as RFC 3263 §4.1's example has it: NAPTR for TCP and UDP, SRV for each.
fn biloxi() -> FakeDns {
    FakeDns::default()
        .naptr(
            "biloxi.test",
            &[
                (100, 50, "SIP+D2U", "_sip._udp.biloxi.test."),
                (90, 50, "SIP+D2T", "_sip._tcp.biloxi.test."),
                (50, 50, "SIP+D2S", "_sip._sctp.biloxi.test."),
                (80, 50, "SIPS+D2T", "_sips._tcp.biloxi.test."),
            ],
        )
        .srv("_sip._udp.biloxi.test", &[(0, 0, 5070, "udp.biloxi.test.")])
        .srv("_sip._tcp.biloxi.test", &[(0, 0, 5071, "tcp.biloxi.test.")])
        .srv(
            "_sips._tcp.biloxi.test",
            &[(0, 0, 5072, "tls.biloxi.test.")],
        )
        .host("udp.biloxi.test", &["192.0.2.20"])
        .host("tcp.biloxi.test", &["192.0.2.21"])
        .host("tls.biloxi.test", &["192.0.2.22"])
        .host("biloxi.test", &["192.0.2.99"])
}

#[test]
fn naptr_order_decides_the_transport_and_unsupported_services_are_skipped() {
    let dns = biloxi();
    let got = run(&dns, &SipTarget::host("biloxi.test"), &prefs(Udp)).unwrap();
    // Order 50 is SCTP (unsupported); then TLS (80), TCP (90), UDP (100), whatever we prefer.
    assert_eq!(
        dests(&got),
        [
            d("192.0.2.22:5072", Tls),
            d("192.0.2.21:5071", Tcp),
            d("192.0.2.20:5070", Udp)
        ]
    );
    assert_eq!(
        got.trail,
        "NAPTR SIPS+D2T -> SRV _sips._tcp.biloxi.test -> tls.biloxi.test:5072 -> 192.0.2.22 \
         (+2 more)"
    );
    assert!(
        !dns.asked().iter().any(|q| q.contains("sctp")),
        "{:?}",
        dns.asked()
    );
    // The A record of the domain is never a guess when NAPTR led somewhere.
    assert!(!dns.asked().contains(&"A/AAAA biloxi.test".to_string()));

    // Without TLS configured, the TLS record is passed over.
    let no_tls = Preferences {
        tls: false,
        ..prefs(Udp)
    };
    let got = run(&dns, &SipTarget::host("biloxi.test"), &no_tls).unwrap();
    assert_eq!(
        dests(&got),
        [d("192.0.2.21:5071", Tcp), d("192.0.2.20:5070", Udp)]
    );
}

#[test]
fn naptr_preference_then_the_accounts_transport_break_ties() {
    let dns = FakeDns::default()
        .naptr(
            "atlanta.test",
            &[
                (10, 20, "SIP+D2U", "_sip._udp.atlanta.test"),
                (10, 20, "SIP+D2T", "_sip._tcp.atlanta.test"),
                (10, 10, "SIP+D2U", "_sip._udp.first.atlanta.test"),
            ],
        )
        .srv("_sip._udp.atlanta.test", &[(0, 0, 5060, "u.atlanta.test")])
        .srv("_sip._tcp.atlanta.test", &[(0, 0, 5060, "t.atlanta.test")])
        .srv(
            "_sip._udp.first.atlanta.test",
            &[(0, 0, 5060, "f.atlanta.test")],
        )
        .host("u.atlanta.test", &["192.0.2.1"])
        .host("t.atlanta.test", &["192.0.2.2"])
        .host("f.atlanta.test", &["192.0.2.3"]);
    let target = SipTarget::host("atlanta.test");
    let got = run(&dns, &target, &prefs(Tcp)).unwrap();
    assert_eq!(
        dests(&got),
        [
            d("192.0.2.3:5060", Udp),
            d("192.0.2.2:5060", Tcp),
            d("192.0.2.1:5060", Udp)
        ]
    );
    let got = run(&dns, &target, &prefs(Udp)).unwrap();
    assert_eq!(got.targets[1].transport, Udp);
    assert_eq!(got.targets[2].transport, Tcp);
}

#[test]
fn sips_takes_only_tls_services() {
    let dns = biloxi();
    let got = run(&dns, &sips("biloxi.test"), &prefs(Udp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.22:5072", Tls)]);

    // Without NAPTR: only _sips._tcp is asked; without it, A/AAAA on 5061 over TLS.
    let dns = FakeDns::default().host("chicago.test", &["192.0.2.7"]).srv(
        "_sip._udp.chicago.test",
        &[(0, 0, 5060, "udp.chicago.test")],
    );
    let got = run(&dns, &sips("chicago.test"), &prefs(Udp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.7:5061", Tls)]);
    assert_eq!(
        dns.asked(),
        [
            "NAPTR chicago.test",
            "SRV _sips._tcp.chicago.test",
            "A/AAAA chicago.test"
        ]
    );
}

#[test]
fn tls_that_is_not_configured_is_a_clear_error() {
    let no_tls = Preferences {
        tls: false,
        ..prefs(Udp)
    };
    let dns = biloxi();
    let err = run(&dns, &sips("biloxi.test"), &no_tls).unwrap_err();
    assert_eq!(
        err.to_string(),
        "biloxi.test: sips: needs TLS and TLS is not configured"
    );
    assert!(dns.asked().is_empty(), "nothing to ask: {:?}", dns.asked());

    let tls_only = FakeDns::default()
        .naptr(
            "secure.test",
            &[(10, 10, "SIPS+D2T", "_sips._tcp.secure.test")],
        )
        .host("secure.test", &["192.0.2.5"]);
    let err = run(&tls_only, &SipTarget::host("secure.test"), &no_tls).unwrap_err();
    assert_eq!(
        err.to_string(),
        "secure.test: only TLS is offered and TLS is not configured"
    );

    // The same when only the SRV step finds TLS: no guess at the domain's A record.
    let tls_srv = FakeDns::default()
        .srv(
            "_sips._tcp.secure.test",
            &[(0, 0, 5061, "sips.secure.test")],
        )
        .host("secure.test", &["192.0.2.5"]);
    let err = run(&tls_srv, &SipTarget::host("secure.test"), &no_tls).unwrap_err();
    assert!(matches!(err, ResolveError::TlsOnly { .. }), "{err}");
    assert!(!tls_srv.asked().contains(&"A/AAAA secure.test".to_string()));
}

#[test]
fn srv_priority_orders_targets_and_all_addresses_of_a_target_come_first() {
    let dns = FakeDns::default()
        .srv(
            "_sip._udp.atlanta.test",
            &[
                (20, 0, 5062, "backup.atlanta.test"),
                (10, 0, 5060, "main.atlanta.test"),
            ],
        )
        .host(
            "main.atlanta.test",
            &["192.0.2.1", "2001:db8::1", "192.0.2.2"],
        )
        .host("backup.atlanta.test", &["192.0.2.9"]);
    let got = run(&dns, &SipTarget::host("atlanta.test"), &prefs(Udp)).unwrap();
    assert_eq!(
        dests(&got),
        [
            d("192.0.2.1:5060", Udp),
            d("[2001:db8::1]:5060", Udp),
            d("192.0.2.2:5060", Udp),
            d("192.0.2.9:5062", Udp)
        ]
    );
    assert_eq!(
        got.trail,
        "no NAPTR -> SRV _sip._udp.atlanta.test -> main.atlanta.test:5060 -> 192.0.2.1 (+3 more)"
    );
}

#[test]
fn srv_weights_share_the_first_attempts() {
    let dns = FakeDns::default()
        .srv(
            "_sip._udp.atlanta.test",
            &[
                (10, 1, 5060, "light.atlanta.test"),
                (10, 3, 5060, "heavy.atlanta.test"),
            ],
        )
        .host("light.atlanta.test", &["192.0.2.1"])
        .host("heavy.atlanta.test", &["192.0.2.2"]);
    let mut random = counter();
    let rounds = 500;
    let heavy_first = (0..rounds)
        .filter(|_| {
            let got = locate(
                &dns,
                &SipTarget::host("atlanta.test"),
                &prefs(Udp),
                &mut random,
            )
            .now_or_never()
            .unwrap()
            .unwrap();
            assert_eq!(
                got.targets.len(),
                2,
                "both are always there to fail over to"
            );
            got.targets[0].addr.ip().to_string() == "192.0.2.2"
        })
        .count();
    // Draws in 0..=4: heavy is first for 3 of 5 values (light's running sum 1 covers 0, 1).
    assert_eq!(heavy_first, rounds * 3 / 5);
}

#[test]
fn a_lone_dot_target_means_no_service_and_no_guessing() {
    let dns = FakeDns::default()
        .srv("_sip._udp.closed.test", &[(0, 0, 0, ".")])
        .srv("_sip._tcp.closed.test", &[(0, 0, 0, ".")])
        .host("closed.test", &["192.0.2.1"]);
    let err = run(&dns, &SipTarget::host("closed.test"), &prefs(Udp)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "closed.test: the DNS says the service is not available there \
         (SRV _sip._udp.closed.test, _sip._tcp.closed.test is \".\")"
    );
    assert!(!dns.asked().contains(&"A/AAAA closed.test".to_string()));

    // "." for one transport, a server for another: the other is used.
    let dns = FakeDns::default()
        .srv("_sip._udp.half.test", &[(0, 0, 0, ".")])
        .srv("_sip._tcp.half.test", &[(0, 0, 5060, "tcp.half.test")])
        .host("tcp.half.test", &["192.0.2.3"]);
    let got = run(&dns, &SipTarget::host("half.test"), &prefs(Udp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.3:5060", Tcp)]);
}

#[test]
fn without_naptr_srv_is_asked_preferred_transport_first() {
    let dns = FakeDns::default()
        .srv(
            "_sip._udp.atlanta.test",
            &[(0, 0, 5060, "udp.atlanta.test")],
        )
        .srv(
            "_sip._tcp.atlanta.test",
            &[(0, 0, 5060, "tcp.atlanta.test")],
        )
        .host("udp.atlanta.test", &["192.0.2.1"])
        .host("tcp.atlanta.test", &["192.0.2.2"]);
    let got = run(&dns, &SipTarget::host("atlanta.test"), &prefs(Tcp)).unwrap();
    assert_eq!(
        dests(&got),
        [d("192.0.2.2:5060", Tcp), d("192.0.2.1:5060", Udp)]
    );
    let asked = dns.asked();
    assert_eq!(asked[0], "NAPTR atlanta.test");
    assert_eq!(
        asked[1..4],
        [
            "SRV _sip._tcp.atlanta.test",
            "SRV _sip._udp.atlanta.test",
            "SRV _sips._tcp.atlanta.test"
        ]
    );
}

#[test]
fn without_naptr_or_srv_the_domains_address_on_the_default_port() {
    let dns = FakeDns::default().host("atlanta.test", &["192.0.2.1"]);
    let got = run(&dns, &SipTarget::host("atlanta.test"), &prefs(Tcp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.1:5060", Tcp)]);
    assert_eq!(
        got.trail,
        "no NAPTR -> no SRV _sip._tcp.atlanta.test, _sip._udp.atlanta.test, \
         _sips._tcp.atlanta.test -> atlanta.test:5060 tcp -> 192.0.2.1"
    );

    // A NAPTR record that leads nowhere falls through to the next step too.
    let dns = FakeDns::default()
        .naptr(
            "atlanta.test",
            &[(10, 10, "SIP+D2U", "_sip._udp.gone.atlanta.test")],
        )
        .srv(
            "_sip._tcp.atlanta.test",
            &[(0, 0, 5080, "tcp.atlanta.test")],
        )
        .host("tcp.atlanta.test", &["192.0.2.2"]);
    let got = run(&dns, &SipTarget::host("atlanta.test"), &prefs(Udp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.2:5080", Tcp)]);
}

#[test]
fn an_explicit_port_skips_naptr_and_srv() {
    let dns = biloxi();
    let target = SipTarget {
        port: Some(5999),
        ..SipTarget::host("biloxi.test")
    };
    let got = run(&dns, &target, &prefs(Tcp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.99:5999", Tcp)]);
    assert_eq!(dns.asked(), ["A/AAAA biloxi.test"]);
    assert_eq!(
        got.trail,
        "port given -> biloxi.test:5999 tcp -> 192.0.2.99"
    );

    let target = SipTarget {
        transport: Some(Udp),
        ..target
    };
    let got = run(&dns, &target, &prefs(Tcp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.99:5999", Udp)]);
}

#[test]
fn an_explicit_transport_asks_its_srv_only() {
    let dns = biloxi();
    let target = SipTarget {
        transport: Some(Tcp),
        ..SipTarget::host("biloxi.test")
    };
    let got = run(&dns, &target, &prefs(Udp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.21:5071", Tcp)]);
    assert_eq!(
        dns.asked(),
        ["SRV _sip._tcp.biloxi.test", "A/AAAA tcp.biloxi.test"]
    );

    // No SRV for it: the domain's address with the transport's default port.
    let dns = FakeDns::default().host("atlanta.test", &["192.0.2.1"]);
    let target = SipTarget {
        transport: Some(Tls),
        ..SipTarget::host("atlanta.test")
    };
    let got = run(&dns, &target, &prefs(Udp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.1:5061", Tls)]);
    assert_eq!(
        dns.asked(),
        ["SRV _sips._tcp.atlanta.test", "A/AAAA atlanta.test"]
    );
}

#[test]
fn address_families_follow_what_our_sockets_reach() {
    let dns = FakeDns::default()
        .srv("_sip._udp.dual.test", &[(0, 0, 5060, "pbx.dual.test")])
        .host("pbx.dual.test", &["192.0.2.1", "2001:db8::1"])
        .srv("_sip._udp.six.test", &[(0, 0, 5060, "pbx.six.test")])
        .host("pbx.six.test", &["2001:db8::6"]);
    let v6_only = Preferences {
        ipv4: false,
        ..prefs(Udp)
    };
    let v4_only = Preferences {
        ipv6: false,
        ..prefs(Udp)
    };
    let got = run(&dns, &SipTarget::host("dual.test"), &v6_only).unwrap();
    assert_eq!(dests(&got), [d("[2001:db8::1]:5060", Udp)]);
    let got = run(&dns, &SipTarget::host("dual.test"), &v4_only).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.1:5060", Udp)]);
    let err = run(&dns, &SipTarget::host("six.test"), &v4_only).unwrap_err();
    assert_eq!(
        err.to_string(),
        "six.test: only IPv6 addresses (2001:db8::6), which this host cannot reach"
    );
}

#[test]
fn the_ttl_is_the_smallest_of_the_records_used() {
    let mut dns = biloxi();
    dns.ips.insert(
        "udp.biloxi.test".into(),
        Ok(vec![("192.0.2.20".parse().unwrap(), 40)]),
    );
    let no_tls = Preferences {
        tls: false,
        ..prefs(Udp)
    };
    let target = SipTarget::host("biloxi.test");
    // NAPTR and SRV say 300, the A record of the second target 40.
    assert_eq!(
        run(&dns, &target, &no_tls).unwrap().ttl,
        Duration::from_secs(40)
    );

    if let Some(Ok(records)) = dns.srv.get_mut("_sip._tcp.biloxi.test") {
        records[0].ttl = 7;
    }
    assert_eq!(
        run(&dns, &target, &no_tls).unwrap().ttl,
        Duration::from_secs(7)
    );

    if let Some(Ok(records)) = dns.naptr.get_mut("biloxi.test") {
        records.iter_mut().for_each(|r| r.ttl = 3);
    }
    assert_eq!(
        run(&dns, &target, &no_tls).unwrap().ttl,
        Duration::from_secs(3)
    );
}

#[test]
fn error_texts_tell_nxdomain_nodata_and_timeouts_apart() {
    let target = SipTarget::host("biloxi.test");
    // Missing from every table: NXDOMAIN.
    let err = run(&FakeDns::default(), &target, &prefs(Udp)).unwrap_err();
    assert_eq!(err.to_string(), "biloxi.test: no such domain");
    assert!(!err.is_transient());

    // The name exists (NODATA) but has nothing for us.
    let mut dns = FakeDns::default();
    dns.naptr
        .insert("biloxi.test".into(), Err(LookupError::NoRecords));
    dns.ips.insert("biloxi.test".into(), Ok(vec![]));
    let err = run(&dns, &target, &prefs(Udp)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "biloxi.test: no NAPTR, SRV, A or AAAA records"
    );

    // Nobody answers.
    let mut dead = FakeDns::default();
    dead.naptr
        .insert("biloxi.test".into(), Err(LookupError::Timeout));
    for name in ["_sip._udp", "_sip._tcp", "_sips._tcp"] {
        dead.srv
            .insert(format!("{name}.biloxi.test"), Err(LookupError::Timeout));
    }
    dead.ips
        .insert("biloxi.test".into(), Err(LookupError::Timeout));
    let err = run(&dead, &target, &prefs(Udp)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "DNS server did not answer for biloxi.test (timed out)"
    );
    assert!(err.is_transient());

    // A server that fails NAPTR queries (some home routers do) does not stop SRV.
    let mut flaky = biloxi();
    flaky.naptr.insert(
        "biloxi.test".into(),
        Err(LookupError::Server("SERVFAIL".into())),
    );
    let got = run(&flaky, &target, &prefs(Udp)).unwrap();
    assert_eq!(got.targets[0].addr.to_string(), "192.0.2.20:5070");
    assert!(
        got.trail
            .starts_with("NAPTR DNS server error: SERVFAIL -> SRV _sip._udp.biloxi.test"),
        "{}",
        got.trail
    );

    // SRV targets that do not resolve.
    let dns = FakeDns::default().srv("_sip._udp.lost.test", &[(0, 0, 5060, "pbx.lost.test")]);
    let err = run(&dns, &SipTarget::host("lost.test"), &prefs(Udp)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "lost.test: the SRV target pbx.lost.test has no A or AAAA records"
    );

    let err = run(&dns, &SipTarget::host("bad name"), &prefs(Udp)).unwrap_err();
    assert_eq!(err.to_string(), "`bad name` is not a valid domain name");
}

#[test]
fn hostile_answers_are_bounded() {
    // 3000 NAPTR records, each naming another SRV name, each with 3000 targets of 1000
    // addresses: the resolution asks a bounded number of questions and returns at most
    // MAX_DESTINATIONS.
    let mut dns = FakeDns::default();
    let naptr: Vec<Naptr> = (0..3000u16)
        .map(|i| Naptr {
            order: i,
            preference: 0,
            flags: "s".into(),
            services: "SIP+D2U".into(),
            regexp: String::new(),
            replacement: format!("_sip._udp.n{i}.evil.test."),
            ttl: 1,
        })
        .collect();
    dns.naptr.insert("evil.test".into(), Ok(naptr));
    let srv: Vec<Srv> = (0..3000u16)
        .map(|i| Srv {
            priority: 0,
            weight: u16::MAX,
            port: 5060,
            target: format!("t{i}.evil.test."),
            ttl: u32::MAX,
        })
        .collect();
    let ips: Vec<(IpAddr, u32)> = (0..1000u32)
        .map(|i| (IpAddr::from((0xc000_0200u32 + i).to_be_bytes()), u32::MAX))
        .collect();
    // Only the first few names can be asked (the bounds below); the rest stay NXDOMAIN.
    for i in 0..2 * MAX_RECORDS {
        dns.srv
            .insert(format!("_sip._udp.n{i}.evil.test"), Ok(srv.clone()));
        dns.ips.insert(format!("t{i}.evil.test"), Ok(ips.clone()));
    }
    let got = run(&dns, &SipTarget::host("evil.test"), &prefs(Udp)).unwrap();
    assert_eq!(got.targets.len(), MAX_DESTINATIONS);
    let asked = dns.asked();
    let count = |kind: &str| asked.iter().filter(|q| q.starts_with(kind)).count();
    assert!(count("SRV ") <= MAX_RECORDS, "{}", count("SRV "));
    assert!(count("A/AAAA ") <= MAX_HOST_LOOKUPS, "{}", count("A/AAAA "));
    assert_eq!(got.ttl, Duration::from_secs(1));

    // Garbage names and ports are skipped, without a panic.
    let dns = FakeDns::default()
        .naptr(
            "junk.test",
            &[
                (0, 0, "SIP+D2U", "."),
                (0, 0, "SIP+D2U", "a..b"),
                (0, 0, "SIP+D2U", ""),
            ],
        )
        .srv(
            "_sip._udp.junk.test",
            &[
                (0, 0, 0, "zero-port.junk.test"),
                (0, 0, 5060, "x y.junk.test"),
            ],
        )
        .host("junk.test", &["0.0.0.0", "224.0.0.1", "::", "192.0.2.1"]);
    let got = run(&dns, &SipTarget::host("junk.test"), &prefs(Udp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.1:5060", Udp)]);
}

#[test]
fn duplicate_addresses_are_tried_once() {
    let dns = FakeDns::default()
        .srv(
            "_sip._udp.dup.test",
            &[(0, 0, 5060, "a.dup.test"), (1, 0, 5060, "b.dup.test")],
        )
        .host("a.dup.test", &["192.0.2.1", "192.0.2.1"])
        .host("b.dup.test", &["192.0.2.1", "192.0.2.2"]);
    let got = run(&dns, &SipTarget::host("dup.test"), &prefs(Udp)).unwrap();
    assert_eq!(
        dests(&got),
        [d("192.0.2.1:5060", Udp), d("192.0.2.2:5060", Udp)]
    );
}

#[test]
fn ip_literals_and_localhost_need_no_dns() {
    let dns = FakeDns::default();
    let target = SipTarget {
        port: Some(5999),
        ..SipTarget::host("localhost")
    };
    let got = run(&dns, &target, &prefs(Udp)).unwrap();
    assert_eq!(
        dests(&got),
        [d("127.0.0.1:5999", Udp), d("[::1]:5999", Udp)]
    );
    let got = run(&dns, &SipTarget::host("[2001:db8::5]"), &prefs(Tcp)).unwrap();
    assert_eq!(dests(&got), [d("[2001:db8::5]:5060", Tcp)]);
    let got = run(&dns, &sips("192.0.2.5"), &prefs(Udp)).unwrap();
    assert_eq!(dests(&got), [d("192.0.2.5:5061", Tls)]);
    assert!(dns.asked().is_empty());
}

#[test]
fn turn_servers_are_found_by_srv_then_address() {
    let turn = |dns: &FakeDns, host: &str, port: Option<u16>| {
        locate_turn(dns, host, port, &prefs(Udp), &mut counter())
            .now_or_never()
            .unwrap()
            .map(|r| {
                r.targets
                    .iter()
                    .map(|d| d.addr)
                    .collect::<Vec<SocketAddr>>()
            })
    };
    let dns = FakeDns::default()
        .srv(
            "_turn._udp.example.test",
            &[(0, 0, 3479, "relay.example.test")],
        )
        .host("relay.example.test", &["192.0.2.51"])
        .host("example.test", &["192.0.2.50"])
        .host("plain.test", &["192.0.2.40"]);
    assert_eq!(
        turn(&dns, "example.test", None).unwrap(),
        ["192.0.2.51:3479".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        turn(&dns, "plain.test", None).unwrap(),
        ["192.0.2.40:3478".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        turn(&dns, "example.test", Some(3480)).unwrap(),
        ["192.0.2.50:3480".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn stun_servers_are_found_by_srv_then_address() {
    let stun = |dns: &FakeDns, host: &str, port: Option<u16>| {
        locate_stun(dns, host, port, &prefs(Udp), &mut counter())
            .now_or_never()
            .unwrap()
            .map(|r| {
                r.targets
                    .iter()
                    .map(|d| d.addr)
                    .collect::<Vec<SocketAddr>>()
            })
    };
    let dns = FakeDns::default()
        .srv("_stun._udp.stun.test", &[(0, 0, 3479, "s1.stun.test")])
        .host("s1.stun.test", &["192.0.2.31"])
        .host("stun.test", &["192.0.2.30"])
        .host("plain.test", &["192.0.2.40"]);
    assert_eq!(
        stun(&dns, "stun.test", None).unwrap(),
        ["192.0.2.31:3479".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        stun(&dns, "plain.test", None).unwrap(),
        ["192.0.2.40:3478".parse::<SocketAddr>().unwrap()]
    );
    let before = dns.asked().len();
    assert_eq!(
        stun(&dns, "stun.test", Some(3480)).unwrap(),
        ["192.0.2.30:3480".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(dns.asked()[before..], ["A/AAAA stun.test"]);
    assert_eq!(
        stun(&dns, "192.0.2.50", None).unwrap(),
        ["192.0.2.50:3478".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        stun(&dns, "nowhere.test", None).unwrap_err().to_string(),
        "nowhere.test: no such domain"
    );
}
