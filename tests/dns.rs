//! RFC 3263 through the real resolver (hickory) against a real DNS server: dnsmasq on
//! 127.0.0.1 at a free port, authoritative for the zone `test` (so that negative answers carry
//! an SOA, as a real zone's do). Nothing leaves loopback; dnsmasq is killed by its PID when
//! each test ends, passing or not.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sipterm::dns::{Preferences, ResolveError, SipTarget};
use sipterm::driver::dns::SystemDns;
use sipterm::driver::nat::resolve_stun_with;
use sipterm::sip::transaction::TransportKind;

/// Time for dnsmasq to start answering.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// The zone the tests resolve in. TTLs are dnsmasq's `--auth-ttl` (300 s).
const RECORDS: &[&str] = &[
    // biloxi.test: NAPTR (UDP before TCP), SRV for each, no A record of its own.
    "--naptr-record=biloxi.test,10,10,S,SIP+D2U,,_sip._udp.biloxi.test",
    "--naptr-record=biloxi.test,20,10,S,SIP+D2T,,_sip._tcp.biloxi.test",
    "--srv-host=_sip._udp.biloxi.test,proxy.biloxi.test,5070,0,10",
    "--srv-host=_sip._tcp.biloxi.test,proxy.biloxi.test,5071,0,10",
    "--host-record=proxy.biloxi.test,192.0.2.20,2001:db8::20",
    // atlanta.test: SRV only, two priorities, as registrars of most providers have it.
    "--srv-host=_sip._udp.atlanta.test,pbx2.atlanta.test,5080,20,10",
    "--srv-host=_sip._udp.atlanta.test,pbx1.atlanta.test,5080,10,10",
    "--host-record=pbx1.atlanta.test,192.0.2.31",
    "--host-record=pbx2.atlanta.test,192.0.2.32",
    // chicago.test: only an A record.
    "--host-record=chicago.test,192.0.2.40",
    // empty.test exists (it has a TXT record) but has nothing for SIP.
    "--txt-record=empty.test,nothing here",
    // stun.test: STUN located by SRV.
    "--srv-host=_stun._udp.stun.test,turn.stun.test,3479,0,10",
    "--host-record=turn.stun.test,192.0.2.50",
];

/// A dnsmasq of our own; Drop kills it by PID and reaps it.
struct Dnsmasq {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dnsmasq {
    /// Starts dnsmasq on a free port of 127.0.0.1 and waits until it answers. Another process
    /// may take the port between our probe and dnsmasq's bind: then it tries another.
    async fn start() -> Dnsmasq {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let mut dnsmasq = Dnsmasq::spawn(free_port());
            match dnsmasq.wait_ready().await {
                Ok(()) => return dnsmasq,
                Err(why) => failures.push(why),
            }
        }
        panic!("dnsmasq did not start: {failures:?}");
    }

    fn spawn(port: u16) -> Dnsmasq {
        let binary = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("dnsmasq is not installed (Debian package dnsmasq-base)");
        let child = Command::new(binary)
            .args([
                "--keep-in-foreground",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--pid-file",
                "--auth-server=ns.test,127.0.0.1",
                "--auth-zone=test",
                "--auth-ttl=300",
                "--auth-soa=1,hostmaster.test",
            ])
            .arg(format!("--port={port}"))
            .args(RECORDS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dnsmasq");
        Dnsmasq {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// Polls with a resolver of its own (so that the tests' caches start empty).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let probe = SystemDns::with_server(self.addr).with_timeout(Duration::from_millis(500));
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!("dnsmasq exited ({status}): {stderr}"));
            }
            if probe
                .resolve_sip(&SipTarget::host("chicago.test"), &prefs())
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no answer from {} in {READY_WITHIN:?}", self.addr));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (dnsmasq serves both).
fn free_port() -> u16 {
    for _ in 0..100 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("binding a UDP port on 127.0.0.1");
        let port = udp.local_addr().expect("a bound address").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP on 127.0.0.1");
}

fn prefs() -> Preferences {
    Preferences {
        preferred: TransportKind::Udp,
        tls: false,
        ipv4: true,
        ipv6: true,
    }
}

fn targets(resolved: &sipterm::dns::Resolved) -> Vec<(String, TransportKind)> {
    resolved
        .targets
        .iter()
        .map(|d| (d.addr.to_string(), d.transport))
        .collect()
}

fn t(addr: &str, transport: TransportKind) -> (String, TransportKind) {
    (addr.to_string(), transport)
}

#[tokio::test]
async fn naptr_srv_and_addresses_end_to_end() {
    let server = Dnsmasq::start().await;
    let dns = SystemDns::with_server(server.addr);
    let got = dns
        .resolve_sip(&SipTarget::host("biloxi.test"), &prefs())
        .await
        .unwrap();
    use TransportKind::{Tcp, Udp};
    assert_eq!(
        targets(&got),
        [
            t("192.0.2.20:5070", Udp),
            t("[2001:db8::20]:5070", Udp),
            t("192.0.2.20:5071", Tcp),
            t("[2001:db8::20]:5071", Tcp),
        ]
    );
    assert_eq!(
        got.trail,
        "NAPTR SIP+D2U -> SRV _sip._udp.biloxi.test -> proxy.biloxi.test:5070 -> 192.0.2.20 \
         (+3 more)"
    );
    assert!(
        got.ttl > Duration::ZERO && got.ttl <= Duration::from_secs(300),
        "{:?}",
        got.ttl
    );

    // SRV only (no NAPTR, no A record of the domain): priority order.
    let got = dns
        .resolve_sip(&SipTarget::host("atlanta.test"), &prefs())
        .await
        .unwrap();
    assert_eq!(
        targets(&got),
        [t("192.0.2.31:5080", Udp), t("192.0.2.32:5080", Udp)]
    );

    // Only an A record: the default port.
    let got = dns
        .resolve_sip(&SipTarget::host("chicago.test"), &prefs())
        .await
        .unwrap();
    assert_eq!(targets(&got), [t("192.0.2.40:5060", Udp)]);

    // An explicit port asks neither NAPTR nor SRV.
    let target = SipTarget {
        port: Some(5999),
        ..SipTarget::host("proxy.biloxi.test")
    };
    let v4_only = Preferences {
        ipv6: false,
        ..prefs()
    };
    let got = dns.resolve_sip(&target, &v4_only).await.unwrap();
    assert_eq!(targets(&got), [t("192.0.2.20:5999", Udp)]);
}

#[tokio::test]
async fn names_without_records_give_clear_errors() {
    let server = Dnsmasq::start().await;
    let dns = SystemDns::with_server(server.addr);
    let err = dns
        .resolve_sip(&SipTarget::host("nothing.test"), &prefs())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "nothing.test: no such domain");
    let err = dns
        .resolve_sip(&SipTarget::host("empty.test"), &prefs())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "empty.test: no NAPTR, SRV, A or AAAA records"
    );
}

#[tokio::test]
async fn answers_are_cached_for_their_ttl() {
    let server = Dnsmasq::start().await;
    let addr = server.addr;
    let dns = SystemDns::with_server(addr).with_timeout(Duration::from_secs(1));
    let biloxi = SipTarget::host("biloxi.test");
    let first = dns.resolve_sip(&biloxi, &prefs()).await.unwrap();
    let missing = dns
        .resolve_sip(&SipTarget::host("nothing.test"), &prefs())
        .await
        .unwrap_err();
    let shared = dns.clone();
    drop(server);

    // The server is gone: what was asked before comes from the cache (clones share it) ...
    let again = shared.resolve_sip(&biloxi, &prefs()).await.unwrap();
    assert_eq!(again.targets, first.targets);
    assert!(again.ttl <= first.ttl);
    // ... negative answers too (the zone's SOA gives them a TTL, RFC 2308) ...
    let still_missing = shared
        .resolve_sip(&SipTarget::host("nothing.test"), &prefs())
        .await
        .unwrap_err();
    assert_eq!(still_missing, missing);
    // ... and a name never asked fails as "ask again later", not as "no such name".
    let err = shared
        .resolve_sip(&SipTarget::host("chicago.test"), &prefs())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    // A fresh resolver has no cache: the same questions now fail.
    let fresh = SystemDns::with_server(addr).with_timeout(Duration::from_secs(1));
    for name in ["biloxi.test", "nothing.test"] {
        let err = fresh
            .resolve_sip(&SipTarget::host(name), &prefs())
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err}");
    }
}

#[tokio::test]
async fn a_silent_server_times_out_in_bounded_time() {
    // A socket that takes queries and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dns = SystemDns::with_server(silent.local_addr().unwrap())
        .with_timeout(Duration::from_millis(800));
    let started = Instant::now();
    let err = dns
        .resolve_sip(&SipTarget::host("biloxi.test"), &prefs())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ResolveError::Timeout {
            domain: "biloxi.test".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "DNS server did not answer for biloxi.test (timed out)"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn stun_servers_come_from_srv() {
    let server = Dnsmasq::start().await;
    let dns = SystemDns::with_server(server.addr);
    let like: SocketAddr = "192.0.2.9:5060".parse().unwrap();
    assert_eq!(
        resolve_stun_with(&dns, "stun.test", like).await.unwrap(),
        "192.0.2.50:3479".parse::<SocketAddr>().unwrap()
    );
    // No SRV: the A record, port 3478; a port given: no SRV.
    assert_eq!(
        resolve_stun_with(&dns, "chicago.test", like).await.unwrap(),
        "192.0.2.40:3478".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        resolve_stun_with(&dns, "turn.stun.test:3333", like)
            .await
            .unwrap(),
        "192.0.2.50:3333".parse::<SocketAddr>().unwrap()
    );
    let err = resolve_stun_with(&dns, "nothing.test", like)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "nothing.test: no such domain");
}

#[tokio::test]
async fn an_unusable_resolv_conf_is_an_error_per_lookup_until_it_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resolv.conf");
    let dns = SystemDns::from_resolv_conf(&path);
    let err = dns
        .resolve_sip(&SipTarget::host("biloxi.test"), &prefs())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot look up biloxi.test: no DNS resolver (cannot read"),
        "{err}"
    );
    assert!(err.is_transient());
    std::fs::write(&path, "# no servers yet\n").unwrap();
    assert!(dns.unavailable().is_some());
    // The network comes up: the next lookup reads the file again. (No query is sent here.)
    std::fs::write(&path, "nameserver 127.0.0.1\n").unwrap();
    assert_eq!(dns.unavailable(), None);
}
