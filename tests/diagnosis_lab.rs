//! The live diagnosis, provoked for real in the network lab (tests/common/lab.rs): a callee
//! behind a NAT that announces its private address and whose firewall lets no UDP out to us;
//! one behind a symmetric NAT whose STUN address is not where its packets come from; a phone
//! whose firewall drops our RTP (it hears nothing, and its RTCP says so); every SRV server of
//! a domain dead and a domain the DNS does not know; a NAT that forgets its UDP mapping
//! between registration refreshes, and a TCP connection whose keep-alives die.
//!
//! Root only (network namespaces). CI runs as root and fails rather than skips otherwise.

mod common;

use std::error::Error;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::headless::{Headless, HeadlessOptions};
use common::lab::{DnsRecord, Host, KamailioLab, Lab, NatKind, root_or_skip};
use serde_json::Value;
use sipterm::nat::stun;

type TestResult = Result<(), Box<dyn Error>>;

const SIGNALLING: Duration = Duration::from_secs(20);
/// No audio for 5 s with reports every 2 s, or the peer's RTCP every few seconds.
const MEDIA_FINDING: Duration = Duration::from_secs(30);

fn account(user: &str, domain: &str, registrar: bool, extra: &str) -> String {
    let mut text = format!(
        "[[account]]\nname = \"{user}\"\nuri = \"sip:{user}@{domain}\"\npassword = \"secret\"\n\
         srtp = \"off\"\ncodecs = [\"pcmu\"]\n"
    );
    if registrar {
        text.push_str(&format!("registrar = \"sip:{domain}\"\n"));
    }
    text.push_str(extra);
    text
}

/// A headless sipterm on `host`, listening on every interface at 5060.
fn phone(
    name: &str,
    host: &Host,
    config: Option<String>,
    answering: bool,
) -> Result<Headless, Box<dyn Error>> {
    Ok(Headless::spawn(
        name,
        &HeadlessOptions {
            config_toml: config,
            auto_answer_ms: answering.then_some(0),
            netns: Some(host.netns().to_string()),
            listen: Some("0.0.0.0:5060".to_string()),
            ..HeadlessOptions::default()
        },
    )?)
}

fn finding(sipterm: &mut Headless, code: &str, timeout: Duration) -> Result<Value, Box<dyn Error>> {
    let found = sipterm.expect_event(
        &format!("diagnosis {code}"),
        |e| e["event"] == "diagnosis" && e["state"] == "active" && e["code"] == code,
        timeout,
    )?;
    println!("{}: {found}", sipterm.name());
    Ok(found)
}

fn assert_names(finding: &Value, words: &[&str]) {
    let text = finding["message"].as_str().unwrap_or_default();
    for word in words {
        assert!(text.contains(word), "`{word}` missing in: {text}");
    }
}

fn registered(sipterm: &mut Headless) -> Result<(), Box<dyn Error>> {
    sipterm.expect_event(
        "registration `registered`",
        |e| e["event"] == "registration" && e["state"] == "registered",
        SIGNALLING,
    )?;
    Ok(())
}

/// The issue's own case: Bob, behind a NAT, answers with his private address, and his
/// firewall lets no UDP out but SIP to the provider. Alice hears nothing, and the finding says
/// why (the private address) while her media reports give no MOS. Bob learns he is behind a
/// NAT from the registrar.
#[test]
fn no_audio_from_a_callee_announcing_its_private_address() -> TestResult {
    if !root_or_skip("no_audio_from_a_callee_announcing_its_private_address") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let home = lab.segment("home")?;
    let wan = lab.segment("wan")?;
    let router = lab.nat_router(
        "nat",
        &home,
        "10.0.0.1/24",
        &wan,
        "203.0.113.1/24",
        NatKind::Cone,
    )?;
    let ns = lab.host("ns", &wan, &["203.0.113.53/24"], &[])?;
    let registrar = lab.host("registrar", &wan, &["203.0.113.10/24"], &[])?;
    let alice_host = lab.host("alice", &wan, &["203.0.113.20/24"], &[])?;
    let bob_host = lab.host("bob", &home, &["10.0.0.10/24"], &["10.0.0.1"])?;
    let dns = lab.dns(&ns, &[DnsRecord::host("atlanta.test", &registrar.addrs())])?;
    for host in [&registrar, &alice_host, &bob_host] {
        lab.use_dns(host, dns.ip()?)?;
    }
    lab.kamailio(
        &registrar,
        &KamailioLab {
            domain: "atlanta.test",
            listen: &["203.0.113.10:5060".parse()?],
            users: &[("alice", "secret"), ("bob", "secret")],
            record_route: true,
            ..KamailioLab::default()
        },
    )?;
    // Bob's firewall: to Alice, nothing but what goes through the provider.
    router.block_udp_to("203.0.113.20".parse()?)?;
    let mut alice = phone(
        "alice",
        &alice_host,
        Some(account("alice", "atlanta.test", true, "")),
        false,
    )?;
    let mut bob = phone(
        "bob",
        &bob_host,
        Some(account("bob", "atlanta.test", true, "")),
        true,
    )?;
    registered(&mut alice)?;
    registered(&mut bob)?;
    let nat = finding(&mut bob, "nat.behind_nat", SIGNALLING)?;
    assert_names(&nat, &["behind a NAT", "203.0.113.1", "10.0.0.10"]);
    bob.settle_registrations(2, Duration::from_secs(3));
    alice.send("dial bob@atlanta.test")?;
    alice.expect_call_state("confirmed", SIGNALLING)?;
    let found = finding(&mut alice, "media.no_audio.private_address", MEDIA_FINDING)?;
    assert_names(&found, &["private address 10.0.0.10", "behind a NAT"]);
    assert_eq!(found["evidence"]["received"], "0");
    // The MOS fix: silence gets no score.
    let reports = alice.events_of("media");
    assert!(!reports.is_empty());
    for report in reports {
        assert_eq!(report["received"], 0, "{report}");
        assert!(report.get("mos").is_none(), "a MOS for silence: {report}");
    }
    alice.send("hangup")?;
    alice.expect_call_state("terminated", SIGNALLING)?;
    Ok(())
}

/// A STUN server in the lab: answers every Binding with the address it came from.
struct StunServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StunServer {
    fn start(socket: UdpSocket) -> Result<StunServer, Box<dyn Error>> {
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf)
                    && let Ok(message) = stun::parse(&buf[..n])
                    && message.kind == stun::BINDING_REQUEST
                {
                    let _ =
                        socket.send_to(&stun::binding_success(&message.transaction, from), from);
                }
            }
        });
        Ok(StunServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for StunServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Carol is behind a symmetric NAT and uses STUN: her SDP carries the port her NAT gave for
/// the STUN server, her packets to Alice come from another. Alice drops them as foreign and
/// the finding names both addresses.
#[test]
fn no_audio_from_a_peer_whose_symmetric_nat_defeats_stun() -> TestResult {
    if !root_or_skip("no_audio_from_a_peer_whose_symmetric_nat_defeats_stun") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let home = lab.segment("home")?;
    let wan = lab.segment("wan")?;
    lab.nat_router(
        "nat",
        &home,
        "10.0.0.1/24",
        &wan,
        "203.0.113.1/24",
        NatKind::Symmetric,
    )?;
    let stun_host = lab.host("stun", &wan, &["203.0.113.3/24"], &[])?;
    let alice_host = lab.host("alice", &wan, &["203.0.113.20/24"], &[])?;
    let carol_host = lab.host("carol", &home, &["10.0.0.11/24"], &["10.0.0.1"])?;
    let _stun = StunServer::start(stun_host.udp_socket("203.0.113.3:3478".parse()?)?)?;
    let mut alice = phone(
        "alice",
        &alice_host,
        Some(account("alice", "203.0.113.20", false, "")),
        true,
    )?;
    let mut carol = phone(
        "carol",
        &carol_host,
        Some(
            "[sip]\nstun_server = \"203.0.113.3:3478\"\n\n".to_string()
                + &account("carol", "10.0.0.11", false, ""),
        ),
        false,
    )?;
    carol.send("dial sip:alice@203.0.113.20")?;
    alice.expect_call_state("confirmed", SIGNALLING)?;
    let found = finding(&mut alice, "media.no_audio.foreign_source", MEDIA_FINDING)?;
    assert_names(&found, &["203.0.113.1:", "symmetric NAT"]);
    let from: SocketAddr = found["evidence"]["foreign_from"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    let announced: SocketAddr = found["evidence"]["sdp_address"]
        .as_str()
        .unwrap_or_default()
        .parse()?;
    assert_eq!(from.ip(), announced.ip());
    assert_ne!(from.port(), announced.port(), "{found}");
    alice.send("hangup")?;
    Ok(())
}

/// Bob's firewall drops every UDP packet to his RTP ports: Alice's RTCP-reading side says Bob
/// hears nothing (his reports name no stream of hers), and Bob's says nothing arrives.
#[test]
fn one_way_audio_the_peer_hears_nothing_and_nothing_arrives() -> TestResult {
    if !root_or_skip("one_way_audio_the_peer_hears_nothing_and_nothing_arrives") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let net = lab.segment("net")?;
    let alice_host = lab.host("alice", &net, &["192.0.2.101/24"], &[])?;
    let bob_host = lab.host("bob", &net, &["192.0.2.102/24"], &[])?;
    let rules = lab.dir().join("bob-firewall.nft");
    std::fs::write(
        &rules,
        "table inet firewall {\n  chain input {\n    type filter hook input priority 0;\n    \
         udp dport 16384-32767 drop\n  }\n}\n",
    )?;
    bob_host.run("nft", &["-f", &rules.display().to_string()])?;
    let mut alice = phone(
        "alice",
        &alice_host,
        Some(account("alice", "192.0.2.101", false, "")),
        false,
    )?;
    let mut bob = phone(
        "bob",
        &bob_host,
        Some(account("bob", "192.0.2.102", false, "")),
        true,
    )?;
    alice.send("dial sip:bob@192.0.2.102")?;
    alice.expect_call_state("confirmed", SIGNALLING)?;
    let deaf = finding(&mut alice, "media.peer_hears_nothing", MEDIA_FINDING)?;
    assert_names(
        &deaf,
        &["hears nothing from you", "RTCP reports", "192.0.2.102:"],
    );
    let silent = finding(&mut bob, "media.no_audio.nothing_arrives", MEDIA_FINDING)?;
    assert_names(
        &silent,
        &[
            "none of its packets reach us at 192.0.2.102:",
            "192.0.2.101:",
        ],
    );
    // Alice hears Bob all along: no finding says otherwise.
    assert!(
        alice.events_of("diagnosis").iter().all(|e| !e["code"]
            .as_str()
            .unwrap_or_default()
            .starts_with("media.no_audio")),
        "{:?}",
        alice.events_of("diagnosis")
    );
    alice.send("hangup")?;
    Ok(())
}

/// atlanta.test's two SRV servers are hosts where nothing listens (ICMP answers at once), and
/// nowhere.test does not exist in the lab's DNS.
#[test]
fn every_srv_server_dead_and_a_domain_the_dns_does_not_know() -> TestResult {
    if !root_or_skip("every_srv_server_dead_and_a_domain_the_dns_does_not_know") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let net = lab.segment("net")?;
    let ns = lab.host("ns", &net, &["192.0.2.53/24"], &[])?;
    let dead1 = lab.host("dead1", &net, &["192.0.2.11/24"], &[])?;
    let dead2 = lab.host("dead2", &net, &["192.0.2.12/24"], &[])?;
    let alice_host = lab.host("alice", &net, &["192.0.2.101/24"], &[])?;
    let dns = lab.dns(
        &ns,
        &[
            DnsRecord::naptr("atlanta.test", 10, 10, "SIP+D2U", "_sip._udp.atlanta.test"),
            DnsRecord::srv("_sip._udp.atlanta.test", "sip1.atlanta.test", 5070, 10, 10),
            DnsRecord::srv("_sip._udp.atlanta.test", "sip2.atlanta.test", 5080, 20, 10),
            DnsRecord::host("sip1.atlanta.test", &dead1.addrs()),
            DnsRecord::host("sip2.atlanta.test", &dead2.addrs()),
        ],
    )?;
    lab.use_dns(&alice_host, dns.ip()?)?;
    let mut alice = phone(
        "alice",
        &alice_host,
        Some(account("alice", "atlanta.test", true, "")),
        false,
    )?;
    let dead = finding(&mut alice, "dns.all_targets_dead", SIGNALLING)?;
    assert_names(
        &dead,
        &[
            "Every server DNS names for atlanta.test failed",
            "192.0.2.11:5070 over UDP (ICMP",
            "192.0.2.12:5080 over UDP (ICMP",
        ],
    );
    assert!(
        dead["evidence"]["dns"]
            .as_str()
            .unwrap_or_default()
            .contains("SRV")
    );
    alice.send("dial sip:carol@nowhere.test")?;
    alice.expect_call_state("terminated", SIGNALLING)?;
    let unknown = finding(&mut alice, "dns.no_records", SIGNALLING)?;
    assert_names(&unknown, &["nowhere.test", "no such domain"]);
    Ok(())
}

/// Behind a symmetric NAT that forgets UDP mappings after 1 s, Alice (no keep-alives; the
/// registrar grants 4 s, refreshed every 2 s) comes back from another port: the NAT forgot
/// her. Bob,
/// registered over TCP with 1 s keep-alives, loses his connection when the router starts
/// dropping it.
#[test]
fn a_nat_that_forgets_its_mapping_and_a_connection_whose_keepalives_die() -> TestResult {
    if !root_or_skip("a_nat_that_forgets_its_mapping_and_a_connection_whose_keepalives_die") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let home = lab.segment("home")?;
    let wan = lab.segment("wan")?;
    let router = lab.nat_router(
        "nat",
        &home,
        "10.0.0.1/24",
        &wan,
        "203.0.113.1/24",
        NatKind::Symmetric,
    )?;
    router.set_udp_timeouts(Duration::from_secs(1), Duration::from_secs(1))?;
    let ns = lab.host("ns", &wan, &["203.0.113.53/24"], &[])?;
    let registrar = lab.host("registrar", &wan, &["203.0.113.10/24"], &[])?;
    let alice_host = lab.host("alice", &home, &["10.0.0.10/24"], &["10.0.0.1"])?;
    let bob_host = lab.host("bob", &home, &["10.0.0.11/24"], &["10.0.0.1"])?;
    let dns = lab.dns(&ns, &[DnsRecord::host("atlanta.test", &registrar.addrs())])?;
    for host in [&registrar, &alice_host, &bob_host] {
        lab.use_dns(host, dns.ip()?)?;
    }
    lab.kamailio(
        &registrar,
        &KamailioLab {
            domain: "atlanta.test",
            listen: &["203.0.113.10:5060".parse()?],
            users: &[("alice", "secret"), ("bob", "secret")],
            max_expires: Some(4),
            ..KamailioLab::default()
        },
    )?;
    let mut alice = phone(
        "alice",
        &alice_host,
        Some(account(
            "alice",
            "atlanta.test",
            true,
            "keepalive_secs = 0\n",
        )),
        false,
    )?;
    let mut bob = phone(
        "bob",
        &bob_host,
        Some(account(
            "bob",
            "atlanta.test",
            true,
            "transport = \"tcp\"\nkeepalive_secs = 1\n",
        )),
        false,
    )?;
    registered(&mut alice)?;
    registered(&mut bob)?;
    finding(&mut alice, "nat.behind_nat", SIGNALLING)?;
    // Bob's pings (one a second) get answered for a while; then the router drops his
    // connection to the registrar.
    std::thread::sleep(Duration::from_secs(3));
    router.host().run(
        "nft",
        &[
            "add",
            "rule",
            "inet",
            "lab",
            "forward",
            "ip daddr 203.0.113.10 meta l4proto tcp drop",
        ],
    )?;
    let lost = finding(&mut alice, "nat.mapping_lost", SIGNALLING)?;
    assert_names(&lost, &["forgot", "203.0.113.1:"]);
    assert_ne!(
        lost["evidence"]["old_public"],
        lost["evidence"]["new_public"]
    );
    let dead = finding(&mut bob, "nat.keepalive_failed", SIGNALLING)?;
    assert_names(&dead, &["203.0.113.10:5060", "died"]);
    Ok(())
}
