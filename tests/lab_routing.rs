//! Real calls between headless sipterms on throw-away networks (tests/common/lab.rs): the RFC
//! 3261 §4 trapezoid with and without Record-Route, servers found by NAPTR/SRV alone with
//! failover, a LAN with wildcard listen addresses, a phone behind a NAT that idles longer than
//! the NAT's UDP timeout, and an IPv6-only network. Each call checks audio both ways: every
//! side sends its own tone and must hear the other's.
//!
//! Root only (network namespaces). CI runs as root and fails rather than skips otherwise.

mod common;

use std::error::Error;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::audio::assert_hears;
use common::headless::{Headless, HeadlessOptions, sine, write_wav};
use common::lab::{DnsRecord, Host, KamailioLab, Lab, NatKind, root_or_skip};
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

const SIGNALLING: Duration = Duration::from_secs(20);
const RATE: u32 = 48_000;
/// Long enough for any call here: the WAV ends only after the call.
const TONE_SECONDS: f32 = 40.0;
const AMPLITUDE: f32 = 8000.0;

/// A headless sipterm in a lab host, sending `tone` and recording what it hears.
struct Phone {
    sipterm: Headless,
    out: PathBuf,
}

struct PhoneSpec<'a> {
    name: &'a str,
    host: &'a Host,
    tone: f32,
    /// The config file; None: the built-in first-run account.
    config: Option<String>,
    listen: &'a str,
    auto_answer: bool,
    extra_args: Vec<String>,
}

impl<'a> PhoneSpec<'a> {
    /// `name` on `host` sending `tone`, with the first-run account on `0.0.0.0:5060`.
    fn new(name: &'a str, host: &'a Host, tone: f32) -> PhoneSpec<'a> {
        PhoneSpec {
            name,
            host,
            tone,
            config: None,
            listen: "0.0.0.0:5060",
            auto_answer: false,
            extra_args: Vec::new(),
        }
    }

    fn config(self, config: String) -> Self {
        PhoneSpec {
            config: Some(config),
            ..self
        }
    }

    fn answering(self) -> Self {
        PhoneSpec {
            auto_answer: true,
            ..self
        }
    }

    fn listen(self, listen: &'a str) -> Self {
        PhoneSpec { listen, ..self }
    }

    fn args(self, extra_args: Vec<String>) -> Self {
        PhoneSpec { extra_args, ..self }
    }
}

fn phone(lab: &Lab, spec: PhoneSpec<'_>) -> Result<Phone, Box<dyn Error>> {
    let input = lab.dir().join(format!("{}-in.wav", spec.name));
    write_wav(
        &input,
        RATE,
        &sine(spec.tone, RATE, TONE_SECONDS, AMPLITUDE),
    )?;
    let out = lab.dir().join(format!("{}-out.wav", spec.name));
    let sipterm = Headless::spawn(
        spec.name,
        &HeadlessOptions {
            audio_in: Some(input),
            audio_out: Some(out.clone()),
            auto_answer_ms: spec.auto_answer.then_some(0),
            config_toml: spec.config,
            extra_args: spec.extra_args,
            netns: Some(spec.host.netns().to_string()),
            listen: Some(spec.listen.to_string()),
        },
    )?;
    Ok(Phone { sipterm, out })
}

/// An account block: `registrar`/`outbound_proxy` when given, plain RTP (the stranger test
/// needs it; the rest does not care), and any extra lines.
fn account(uri: &str, registrar: Option<&str>, proxy: Option<&str>, extra: &str) -> String {
    let name = uri
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap_or("me");
    let mut text = format!(
        "[[account]]\nname = \"{name}\"\nuri = \"{uri}\"\npassword = \"secret\"\nsrtp = \"off\"\n"
    );
    if let Some(registrar) = registrar {
        text.push_str(&format!("registrar = \"{registrar}\"\n"));
    }
    if let Some(proxy) = proxy {
        text.push_str(&format!("outbound_proxy = \"{proxy}\"\n"));
    }
    text.push_str(extra);
    text
}

fn registered(phone: &mut Phone) -> Result<Value, Box<dyn Error>> {
    Ok(phone.sipterm.expect_event(
        "registration `registered`",
        |e| e["event"] == "registration" && e["state"] == "registered",
        SIGNALLING,
    )?)
}

/// Waits until `phone` has received `packets` RTP packets in its call (media events come
/// every 2 s), so that much audio is on record.
fn media_flowing(phone: &mut Phone, packets: u64) -> Result<Value, Box<dyn Error>> {
    Ok(phone.sipterm.expect_event(
        &format!("a media event with >= {packets} packets received"),
        |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) >= packets,
        SIGNALLING,
    )?)
}

/// `caller` dials `target`, `callee` (auto-answering) picks up; both see `confirmed` and hear
/// each other's tone for a while; then `hanger` (caller or callee) hangs up and both end.
fn call(
    caller: &mut Phone,
    callee: &mut Phone,
    target: &str,
    callee_hangs_up: bool,
) -> Result<(Value, Value), Box<dyn Error>> {
    caller.sipterm.send(&format!("dial {target}"))?;
    caller.sipterm.expect_call_state("confirmed", SIGNALLING)?;
    callee.sipterm.expect_call_state("confirmed", SIGNALLING)?;
    media_flowing(caller, 75)?;
    media_flowing(callee, 75)?;
    let (hanger, other) = if callee_hangs_up {
        (&mut *callee, &mut *caller)
    } else {
        (&mut *caller, &mut *callee)
    };
    hanger.sipterm.send("hangup")?;
    let a = hanger.sipterm.expect_call_state("terminated", SIGNALLING)?;
    let b = other.sipterm.expect_call_state("terminated", SIGNALLING)?;
    Ok(if callee_hangs_up { (b, a) } else { (a, b) })
}

/// The SIP messages `phone` sent and received since its `index`-th event: (dir, peer,
/// summary), REGISTER transactions left out.
fn call_messages(phone: &Phone, from_event: usize) -> Vec<(String, String, String)> {
    let mut register_branch = false;
    phone.sipterm.history()[from_event..]
        .iter()
        .filter(|e| e["event"] == "sip")
        .filter_map(|e| {
            let summary = e["summary"].as_str().unwrap_or_default().to_string();
            // Responses to a REGISTER follow it; drop them with it.
            if summary.starts_with("REGISTER ") {
                register_branch = true;
                return None;
            }
            if !summary.starts_with("SIP/2.0") {
                register_branch = false;
            } else if register_branch {
                return None;
            }
            Some((
                e["dir"].as_str().unwrap_or_default().to_string(),
                e["peer"].as_str().unwrap_or_default().to_string(),
                summary,
            ))
        })
        .collect()
}

/// The trapezoid of RFC 3261 §4: atlanta.test and biloxi.test proxies (Kamailio), found by
/// DNS, with Record-Route or without (the seed: ACK and BYE go end to end).
fn trapezoid(record_route: bool) -> TestResult {
    let test = if record_route {
        "trapezoid_with_record_route"
    } else {
        "trapezoid_without_record_route"
    };
    if !root_or_skip(test) {
        return Ok(());
    }
    let lab = Lab::new()?;
    let net = lab.segment("net")?;
    let ns = lab.host("ns", &net, &["192.0.2.53/24"], &[])?;
    let atlanta = lab.host("atlanta", &net, &["192.0.2.10/24"], &[])?;
    let biloxi = lab.host("biloxi", &net, &["192.0.2.20/24"], &[])?;
    let alice_host = lab.host("alice", &net, &["192.0.2.101/24"], &[])?;
    let bob_host = lab.host("bob", &net, &["192.0.2.102/24"], &[])?;
    let dns = lab.dns(
        &ns,
        &[
            DnsRecord::host("atlanta.test", &atlanta.addrs()),
            DnsRecord::host("biloxi.test", &biloxi.addrs()),
        ],
    )?;
    for host in [&atlanta, &biloxi, &alice_host, &bob_host] {
        lab.use_dns(host, dns.ip()?)?;
    }
    for (host, domain, user) in [
        (&atlanta, "atlanta.test", "alice"),
        (&biloxi, "biloxi.test", "bob"),
    ] {
        lab.kamailio(
            host,
            &KamailioLab {
                domain,
                listen: &[format!("{}:5060", host.ip()?).parse()?],
                record_route,
                users: &[(user, "secret")],
                ..KamailioLab::default()
            },
        )?;
    }
    let ladder = lab.dir().join("alice.puml");
    let mut alice = phone(
        &lab,
        PhoneSpec::new("alice", &alice_host, 440.0)
            .config(account(
                "sip:alice@atlanta.test",
                Some("sip:atlanta.test"),
                Some("sip:atlanta.test"),
                "",
            ))
            .args(vec!["--ladder-out".into(), ladder.display().to_string()]),
    )?;
    let mut bob = phone(
        &lab,
        PhoneSpec::new("bob", &bob_host, 1000.0)
            .config(account(
                "sip:bob@biloxi.test",
                Some("sip:biloxi.test"),
                Some("sip:biloxi.test"),
                "",
            ))
            .answering(),
    )?;
    registered(&mut alice)?;
    registered(&mut bob)?;
    let start = alice.sipterm.history().len();
    let (alice_end, _) = call(&mut alice, &mut bob, "bob@biloxi.test", true)?;
    assert_eq!(
        alice_end["reason"], "Remote hung up",
        "Alice's call ends when Bob hangs up: {alice_end}"
    );
    let messages = call_messages(&alice, start);
    println!("alice: {messages:#?}");
    let proxy = "192.0.2.10:5060";
    // Without Record-Route the ACK and BYE go end to end (Bob's Contact); with it, through
    // Alice's proxy (the first of the reversed route set).
    let in_dialog_peer = if record_route {
        proxy
    } else {
        "192.0.2.102:5060"
    };
    let expected: Vec<(&str, &str, &str)> = vec![
        ("out", proxy, "INVITE sip:bob@biloxi.test SIP/2.0"),
        ("in", proxy, "SIP/2.0 100 "),
        ("in", proxy, "SIP/2.0 180 "),
        ("in", proxy, "SIP/2.0 200 "),
        ("out", in_dialog_peer, "ACK"),
        ("in", in_dialog_peer, "BYE"),
        ("out", in_dialog_peer, "SIP/2.0 200 "),
    ];
    assert_eq!(messages.len(), expected.len(), "{messages:#?}");
    for ((dir, peer, summary), (want_dir, want_peer, want)) in messages.iter().zip(&expected) {
        assert_eq!(
            (dir.as_str(), peer.as_str()),
            (*want_dir, *want_peer),
            "{summary}"
        );
        assert!(summary.starts_with(want), "{summary} is not {want}");
    }
    assert_hears(&alice.out, "alice", 1000.0)?;
    assert_hears(&bob.out, "bob", 440.0)?;
    // The ladder draws the same order.
    alice.sipterm.send("quit")?;
    alice.sipterm.quit(Duration::from_secs(10));
    let puml = std::fs::read_to_string(&ladder)?;
    let arrows: Vec<&str> = puml
        .lines()
        .filter(|l| l.contains(" -> "))
        .filter_map(|l| l.split(" : ").nth(1))
        .filter(|label| !label.starts_with("REGISTER") && !label.starts_with("401"))
        .collect();
    let order: Vec<&str> = arrows
        .iter()
        .map(|label| label.split_whitespace().next().unwrap_or_default())
        .skip_while(|first| *first != "INVITE")
        .take(7)
        .collect();
    assert_eq!(
        order,
        vec!["INVITE", "100", "180", "200", "ACK", "BYE", "200"],
        "{puml}"
    );
    Ok(())
}

#[test]
fn trapezoid_without_record_route_sends_ack_and_bye_end_to_end() -> TestResult {
    trapezoid(false)
}

#[test]
fn trapezoid_with_record_route_sends_the_bye_through_both_proxies() -> TestResult {
    trapezoid(true)
}

/// Registrar and callee found by NAPTR/SRV alone, on non-default ports, no outbound proxy; the
/// first SRV target is dead (its host answers "port unreachable"); a domain without records.
#[test]
fn servers_found_by_naptr_and_srv_with_failover_and_a_domain_without_records() -> TestResult {
    if !root_or_skip("servers_found_by_naptr_and_srv") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let net = lab.segment("net")?;
    let ns = lab.host("ns", &net, &["192.0.2.53/24"], &[])?;
    let dead = lab.host("dead", &net, &["192.0.2.11/24"], &[])?;
    let atlanta = lab.host("atlanta", &net, &["192.0.2.12/24"], &[])?;
    let biloxi = lab.host("biloxi", &net, &["192.0.2.20/24"], &[])?;
    let alice_host = lab.host("alice", &net, &["192.0.2.101/24"], &[])?;
    let bob_host = lab.host("bob", &net, &["192.0.2.102/24"], &[])?;
    let dns = lab.dns(
        &ns,
        &[
            // atlanta.test: NAPTR -> SRV: the dead server first, then the live one. No A record.
            DnsRecord::naptr("atlanta.test", 10, 10, "SIP+D2U", "_sip._udp.atlanta.test"),
            DnsRecord::srv("_sip._udp.atlanta.test", "sip1.atlanta.test", 5070, 10, 10),
            DnsRecord::srv("_sip._udp.atlanta.test", "sip2.atlanta.test", 5080, 20, 10),
            DnsRecord::host("sip1.atlanta.test", &dead.addrs()),
            DnsRecord::host("sip2.atlanta.test", &atlanta.addrs()),
            // biloxi.test: SRV only (no NAPTR, no A record).
            DnsRecord::srv("_sip._udp.biloxi.test", "pbx.biloxi.test", 5090, 10, 10),
            DnsRecord::host("pbx.biloxi.test", &biloxi.addrs()),
        ],
    )?;
    for host in [&atlanta, &biloxi, &alice_host, &bob_host] {
        lab.use_dns(host, dns.ip()?)?;
    }
    for (host, domain, port) in [
        (&atlanta, "atlanta.test", 5080),
        (&biloxi, "biloxi.test", 5090),
    ] {
        lab.kamailio(
            host,
            &KamailioLab {
                domain,
                listen: &[format!("{}:{port}", host.ip()?).parse()?],
                ..KamailioLab::default()
            },
        )?;
    }
    let started = Instant::now();
    let mut alice = phone(
        &lab,
        PhoneSpec::new("alice", &alice_host, 440.0).config(account(
            "sip:alice@atlanta.test",
            Some("sip:atlanta.test"),
            None,
            "",
        )),
    )?;
    let mut bob = phone(
        &lab,
        PhoneSpec::new("bob", &bob_host, 1000.0)
            .config(account(
                "sip:bob@biloxi.test",
                Some("sip:biloxi.test"),
                None,
                "",
            ))
            .answering(),
    )?;
    registered(&mut alice)?;
    println!(
        "alice registered {:.2} s after start, past the dead server",
        started.elapsed().as_secs_f64()
    );
    registered(&mut bob)?;
    let registers: Vec<String> = alice
        .sipterm
        .events_of("sip")
        .iter()
        .filter(|e| e["dir"] == "out")
        .filter(|e| {
            e["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("REGISTER"))
        })
        .filter_map(|e| e["peer"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        registers.first().map(String::as_str),
        Some("192.0.2.11:5070"),
        "the first SRV target is tried first: {registers:?}"
    );
    assert!(
        registers.iter().any(|p| p == "192.0.2.12:5080"),
        "then the next one: {registers:?}"
    );
    // No outbound proxy: the INVITE goes where biloxi.test's SRV record says.
    let start = alice.sipterm.history().len();
    call(&mut alice, &mut bob, "sip:bob@biloxi.test", false)?;
    let messages = call_messages(&alice, start);
    assert_eq!(
        messages.first().map(|m| (m.0.as_str(), m.1.as_str())),
        Some(("out", "192.0.2.20:5090")),
        "{messages:#?}"
    );
    assert_hears(&alice.out, "alice", 1000.0)?;
    assert_hears(&bob.out, "bob", 440.0)?;
    // A domain with no records at all: a clear reason, and sipterm goes on.
    alice.sipterm.send("dial sip:carol@nowhere.test")?;
    let ended = alice.sipterm.expect_call_state("terminated", SIGNALLING)?;
    let reason = ended["reason"].as_str().unwrap_or_default();
    println!("nowhere.test: {reason}");
    assert!(
        reason.contains("nowhere.test") && reason.contains("no such domain"),
        "{ended}"
    );
    alice.sipterm.send("dial sip:bob@biloxi.test")?;
    alice.sipterm.expect_call_state("confirmed", SIGNALLING)?;
    Ok(())
}

/// Two sipterms on one LAN with the first-run default (no config: `listen = 0.0.0.0:5060`, no
/// registrar) call each other by IP: Contact, Via and SDP must carry the LAN address.
#[test]
fn two_phones_on_a_lan_call_each_other_by_ip() -> TestResult {
    if !root_or_skip("two_phones_on_a_lan_call_each_other_by_ip") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let lan = lab.segment("lan")?;
    let alice_host = lab.host("alice", &lan, &["192.168.1.10/24"], &[])?;
    let bob_host = lab.host("bob", &lan, &["192.168.1.20/24"], &[])?;
    let verbose = vec!["-v".to_string()];
    let mut alice = phone(
        &lab,
        PhoneSpec::new("alice", &alice_host, 440.0).args(verbose.clone()),
    )?;
    let mut bob = phone(
        &lab,
        PhoneSpec::new("bob", &bob_host, 1000.0)
            .answering()
            .args(verbose),
    )?;
    call(&mut alice, &mut bob, "sip:bob@192.168.1.20", false)?;
    assert_hears(&alice.out, "alice", 1000.0)?;
    assert_hears(&bob.out, "bob", 440.0)?;
    // What Bob received from Alice names her LAN address, never 127.0.0.1 or 0.0.0.0.
    let log = std::fs::read_to_string(bob.sipterm.log_dir().join("sipterm.log"))?;
    let invite = log
        .split("INVITE sip:bob@192.168.1.20 SIP/2.0")
        .nth(1)
        .ok_or("Bob's log has no INVITE")?;
    let invite = invite.split("\n\n").take(2).collect::<Vec<_>>().join("\n");
    for needed in [
        "Via: SIP/2.0/UDP 192.168.1.10:5060",
        "Contact: <sip:sipterm@192.168.1.10:5060>",
        "c=IN IP4 192.168.1.10",
    ] {
        assert!(invite.contains(needed), "{needed} missing in:\n{invite}");
    }
    // Not even the first-run account's From: Bob can call back what he sees.
    assert!(
        invite.contains("From: <sip:sipterm@192.168.1.10>"),
        "{invite}"
    );
    assert!(
        !invite.contains("127.0.0.1") && !invite.contains("0.0.0.0"),
        "{invite}"
    );
    Ok(())
}

/// Alice behind a NAT whose UDP mappings last 3 s registers at a registrar on the "internet",
/// idles for three times that, and still gets Bob's call: her keep-alives hold the mapping
/// open. Carol, behind the same NAT with keep-alives off, does not get hers (the control that
/// shows the NAT really forgets).
#[test]
fn a_phone_behind_nat_still_receives_calls_after_idling_past_the_mapping_timeout() -> TestResult {
    if !root_or_skip("phone_behind_nat_receives_calls") {
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
    let nat_timeout = Duration::from_secs(3);
    router.set_udp_timeouts(nat_timeout, nat_timeout)?;
    let ns = lab.host("ns", &wan, &["203.0.113.53/24"], &[])?;
    let registrar = lab.host("registrar", &wan, &["203.0.113.10/24"], &[])?;
    let bob_host = lab.host("bob", &wan, &["203.0.113.20/24"], &[])?;
    let alice_host = lab.host("alice", &home, &["10.0.0.10/24"], &["10.0.0.1"])?;
    let carol_host = lab.host("carol", &home, &["10.0.0.11/24"], &["10.0.0.1"])?;
    let dns = lab.dns(&ns, &[DnsRecord::host("atlanta.test", &registrar.addrs())])?;
    for host in [&registrar, &bob_host, &alice_host, &carol_host] {
        lab.use_dns(host, dns.ip()?)?;
    }
    lab.kamailio(
        &registrar,
        &KamailioLab {
            domain: "atlanta.test",
            listen: &["203.0.113.10:5060".parse()?],
            users: &[("alice", "secret"), ("bob", "secret"), ("carol", "secret")],
            // As registrars serving phones behind NATs do: in-dialog requests (Bob's BYE)
            // come through it, over the mapping Alice keeps open, not straight to her NAT.
            record_route: true,
            ..KamailioLab::default()
        },
    )?;
    let mut phones = Vec::new();
    for (name, host, tone, keepalive) in [
        ("alice", &alice_host, 440.0, "keepalive_secs = 1\n"),
        ("carol", &carol_host, 700.0, "keepalive_secs = 0\n"),
        ("bob", &bob_host, 1000.0, ""),
    ] {
        let spec = PhoneSpec::new(name, host, tone).config(account(
            &format!("sip:{name}@atlanta.test"),
            Some("sip:atlanta.test"),
            None,
            keepalive,
        ));
        let mut p = phone(
            &lab,
            if name == "bob" {
                spec
            } else {
                spec.answering()
            },
        )?;
        registered(&mut p)?;
        phones.push(p);
    }
    let [mut alice, mut carol, mut bob]: [Phone; 3] =
        phones.try_into().map_err(|_| "three phones")?;
    // Both learned their public address from the registrar and bound it.
    for p in [&mut alice, &mut carol] {
        p.sipterm.expect_event(
            "a registration with the NAT's address",
            |e| e["event"] == "registration" && e["state"] == "registered",
            SIGNALLING,
        )?;
    }
    std::thread::sleep(nat_timeout * 3);
    call(&mut bob, &mut alice, "sip:alice@atlanta.test", false)?;
    assert_hears(&alice.out, "alice", 1000.0)?;
    assert_hears(&bob.out, "bob", 440.0)?;
    // Carol's mapping is gone: the registrar's INVITE dies at the NAT.
    bob.sipterm.send("dial sip:carol@atlanta.test")?;
    let ended = bob
        .sipterm
        .expect_call_state("terminated", Duration::from_secs(40))?;
    println!("call to carol without keep-alives: {ended}");
    assert!(
        carol.sipterm.events_of("call").is_empty(),
        "carol's call got through a NAT mapping that should be gone"
    );
    Ok(())
}

/// Two phones on an IPv6-only network: the callee found by its AAAA record, SDP `c=IN IP6`.
#[test]
fn a_call_over_ipv6_only() -> TestResult {
    if !root_or_skip("a_call_over_ipv6_only") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let net = lab.segment("v6")?;
    let ns = lab.host("ns", &net, &["2001:db8::53/64"], &[])?;
    let alice_host = lab.host("alice", &net, &["2001:db8::10/64"], &[])?;
    let bob_host = lab.host("bob", &net, &["2001:db8::20/64"], &[])?;
    let bob_ip: IpAddr = "2001:db8::20".parse()?;
    let dns = lab.dns(&ns, &[DnsRecord::host("phone.bob.test", &[bob_ip])])?;
    lab.use_dns(&alice_host, dns.ip()?)?;
    let verbose = vec!["-v".to_string()];
    let mut alice = phone(
        &lab,
        PhoneSpec::new("alice", &alice_host, 440.0)
            .config(account("sip:alice@[2001:db8::10]", None, None, ""))
            .listen("[::]:5060")
            .args(verbose.clone()),
    )?;
    let mut bob = phone(
        &lab,
        PhoneSpec::new("bob", &bob_host, 1000.0)
            .listen("[::]:5060")
            .answering()
            .args(verbose),
    )?;
    let start = alice.sipterm.history().len();
    call(&mut alice, &mut bob, "sip:bob@phone.bob.test", true)?;
    let messages = call_messages(&alice, start);
    assert_eq!(
        messages.first().map(|m| m.1.as_str()),
        Some("[2001:db8::20]:5060"),
        "{messages:#?}"
    );
    assert_hears(&alice.out, "alice", 1000.0)?;
    assert_hears(&bob.out, "bob", 440.0)?;
    let log = std::fs::read_to_string(bob.sipterm.log_dir().join("sipterm.log"))?;
    for needed in [
        "Via: SIP/2.0/UDP [2001:db8::10]:5060",
        "c=IN IP6 2001:db8::10",
    ] {
        assert!(log.contains(needed), "{needed} missing in Bob's log");
    }
    Ok(())
}

/// While Alice holds a plain-RTP call, a stranger on the same network sends a well-formed PCMU
/// stream (its own SSRC, another tone) to Bob's RTP port: Bob plays none of it, counts every
/// packet as foreign, and the call's audio goes on both ways after the hold.
#[test]
fn a_strangers_rtp_during_hold_is_not_played() -> TestResult {
    use common::audio::{ToneBlocks, tone_blocks};
    use common::rtp_stream::{ToneStream, send_pcmu_tone};
    const STRANGER_TONE: f32 = 1700.0;
    const STRANGER_PACKETS: usize = 150;
    if !root_or_skip("a_strangers_rtp_during_hold_is_not_played") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let net = lab.segment("net")?;
    let alice_host = lab.host("alice", &net, &["192.0.2.101/24"], &[])?;
    let bob_host = lab.host("bob", &net, &["192.0.2.102/24"], &[])?;
    let stranger_host = lab.host("stranger", &net, &["192.0.2.66/24"], &[])?;
    let pcmu = "codecs = [\"pcmu\"]\n";
    let mut alice = phone(
        &lab,
        PhoneSpec::new("alice", &alice_host, 440.0).config(account(
            "sip:alice@192.0.2.101",
            None,
            None,
            pcmu,
        )),
    )?;
    let mut bob = phone(
        &lab,
        PhoneSpec::new("bob", &bob_host, 1000.0)
            .config(account("sip:bob@192.0.2.102", None, None, pcmu))
            .answering(),
    )?;
    alice.sipterm.send("dial sip:bob@192.0.2.102")?;
    alice.sipterm.expect_call_state("confirmed", SIGNALLING)?;
    let media = media_flowing(&mut bob, 50)?;
    assert_eq!(
        media["encrypted"], false,
        "plain RTP: what a stranger can fake"
    );
    let bob_rtp: std::net::SocketAddr = media["local"]
        .as_str()
        .ok_or_else(|| format!("no `local` in {media}"))?
        .parse()?;
    let target = std::net::SocketAddr::new("192.0.2.102".parse()?, bob_rtp.port());
    alice.sipterm.send("hold")?;
    alice.sipterm.expect_call_state("held", SIGNALLING)?;
    bob.sipterm.expect_call_state("held", SIGNALLING)?;
    let stranger = stranger_host.udp_socket("192.0.2.66:0".parse()?)?;
    let sent = send_pcmu_tone(
        &stranger,
        target,
        &ToneStream::new(STRANGER_TONE, 0x5742_4E47),
        STRANGER_PACKETS,
    )?;
    let counted = bob.sipterm.expect_event(
        "a media event counting the stranger's packets",
        |e| e["event"] == "media" && e["foreign"].as_u64().unwrap_or(0) >= sent as u64,
        SIGNALLING,
    )?;
    alice.sipterm.send("resume")?;
    alice.sipterm.expect_call_state("confirmed", SIGNALLING)?;
    let before = bob
        .sipterm
        .events_of("media")
        .last()
        .and_then(|e| e["received"].as_u64())
        .unwrap_or(0);
    media_flowing(&mut bob, before + 75)?;
    alice.sipterm.send("hangup")?;
    alice.sipterm.expect_call_state("terminated", SIGNALLING)?;
    bob.sipterm.expect_call_state("terminated", SIGNALLING)?;
    println!("bob after the stranger: {counted}");
    assert_eq!(counted["foreign"].as_u64(), Some(sent as u64), "{counted}");
    let ToneBlocks {
        voiced,
        wanted,
        other,
    } = tone_blocks(&bob.out, 440.0, STRANGER_TONE)?;
    println!("bob's recording: {voiced} voiced 100 ms blocks, {wanted} alice, {other} stranger");
    assert_eq!(
        other, 0,
        "bob played the stranger in {other} of {voiced} blocks"
    );
    // Both ways, before and after the hold (the silent hold splits each recording in two:
    // count the blocks instead of analysing the middle).
    assert!(wanted >= 30, "bob heard alice in only {wanted} blocks");
    let alice_heard = tone_blocks(&alice.out, 1000.0, 440.0)?;
    println!("alice's recording: {alice_heard:?}");
    // (Her `other` may hold a block of ringback, 425 Hz, before Bob answered.)
    assert!(alice_heard.wanted >= 30, "{alice_heard:?}");
    Ok(())
}
