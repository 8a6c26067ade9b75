//! Smoke tests of the network lab itself (tests/common/lab.rs): segments, DNS through the system
//! resolver, cone and symmetric NAT with short UDP timeouts, Kamailio relaying by RFC 3263 DNS,
//! a headless sipterm in a namespace, and cleanup. Root only: CI runs as root and fails rather
//! than skips when it is not; elsewhere the tests say "skipped: needs root".

mod common;

use std::error::Error;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::headless::{Headless, HeadlessOptions};
use common::lab::{DnsAnswer, DnsRecord, Host, KamailioLab, Lab, NatKind, QueryType, root_or_skip};
use common::ports::wait_udp_answer_on;

type TestResult = Result<(), Box<dyn Error>>;

const RECEIVE_TIMEOUT: Duration = Duration::from_secs(3);

fn socket_on(host: &Host, ip: &str) -> Result<UdpSocket, Box<dyn Error>> {
    Ok(host.udp_socket(SocketAddr::new(ip.parse()?, 0))?)
}

/// Waits (bounded) for one datagram on `socket`: its text and sender.
fn receive(socket: &UdpSocket, timeout: Duration) -> Result<(String, SocketAddr), Box<dyn Error>> {
    socket.set_read_timeout(Some(timeout))?;
    let mut buffer = [0u8; 4096];
    // A signal may interrupt the wait (EINTR, seen once in a full run): wait again.
    let (len, from) = loop {
        match socket.recv_from(&mut buffer) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    Ok((String::from_utf8_lossy(&buffer[..len]).into_owned(), from))
}

/// True when nothing arrives on `socket` within `window` (the datagram was dropped on the way).
fn nothing_arrives(socket: &UdpSocket, window: Duration) -> Result<bool, Box<dyn Error>> {
    socket.set_read_timeout(Some(window))?;
    let mut buffer = [0u8; 64];
    let mut received = socket.recv_from(&mut buffer);
    while received
        .as_ref()
        .is_err_and(|e| e.kind() == std::io::ErrorKind::Interrupted)
    {
        received = socket.recv_from(&mut buffer);
    }
    match received {
        Ok(_) => Ok(false),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends `text` from `from` to `to`'s address and returns the source address `to` saw.
fn send_and_see_source(
    from: &UdpSocket,
    to: &UdpSocket,
    text: &str,
) -> Result<SocketAddr, Box<dyn Error>> {
    from.send_to(text.as_bytes(), to.local_addr()?)?;
    let (got, source) = receive(to, RECEIVE_TIMEOUT)?;
    assert_eq!(got, text);
    Ok(source)
}

#[test]
fn hosts_on_one_segment_exchange_udp_over_ipv4_and_ipv6() -> TestResult {
    if !root_or_skip("hosts_on_one_segment_exchange_udp_over_ipv4_and_ipv6") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let lan = lab.segment("lan")?;
    let alice = lab.host("alice", &lan, &["192.0.2.10/24", "2001:db8::10/64"], &[])?;
    let bob = lab.host("bob", &lan, &["192.0.2.20/24", "2001:db8::20/64"], &[])?;
    for (alice_ip, bob_ip) in [
        ("192.0.2.10", "192.0.2.20"),
        ("2001:db8::10", "2001:db8::20"),
    ] {
        let (a, b) = (socket_on(&alice, alice_ip)?, socket_on(&bob, bob_ip)?);
        assert_eq!(send_and_see_source(&a, &b, "hello bob")?, a.local_addr()?);
        assert_eq!(send_and_see_source(&b, &a, "hello alice")?, b.local_addr()?);
    }
    // The test's own namespace has no such address: the sockets live in the lab.
    assert!(UdpSocket::bind("192.0.2.10:0").is_err());
    Ok(())
}

#[test]
fn dns_answers_a_aaaa_srv_naptr_through_the_hosts_resolver() -> TestResult {
    if !root_or_skip("dns_answers_a_aaaa_srv_naptr_through_the_hosts_resolver") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let net = lab.segment("net")?;
    let ns = lab.host("ns", &net, &["192.0.2.53/24", "2001:db8::53/64"], &[])?;
    let alice = lab.host("alice", &net, &["192.0.2.10/24"], &[])?;
    let bob = lab.host("bob", &net, &["192.0.2.20/24"], &[])?;
    let carol = lab.host("carol", &net, &["2001:db8::c/64"], &[])?;
    let proxy_addrs: [IpAddr; 2] = ["192.0.2.30".parse()?, "2001:db8::30".parse()?];
    let dns = lab.dns(
        &ns,
        &[
            DnsRecord::host("proxy.biloxi.test", &proxy_addrs),
            DnsRecord::srv("_sip._udp.biloxi.test", "proxy.biloxi.test", 5070, 10, 60),
            DnsRecord::srv("_sip._udp.biloxi.test", "backup.biloxi.test", 5080, 20, 0),
            DnsRecord::naptr("biloxi.test", 10, 50, "SIP+D2U", "_sip._udp.biloxi.test"),
        ],
    )?;
    lab.use_dns(&alice, dns.ip()?)?;

    // glibc's resolver in alice's namespace reads /etc/netns/NS/resolv.conf.
    let ahosts = alice.run("getent", &["ahosts", "proxy.biloxi.test"])?;
    assert!(
        ahosts.contains("192.0.2.30") && ahosts.contains("2001:db8::30"),
        "{ahosts}"
    );
    assert!(
        alice
            .run("getent", &["hosts", "nobody.biloxi.test"])
            .is_err()
    );
    // carol has IPv6 only and asks the server over IPv6.
    lab.use_dns(&carol, "2001:db8::53".parse()?)?;
    let ahostsv6 = carol.run("getent", &["ahostsv6", "proxy.biloxi.test"])?;
    assert!(ahostsv6.contains("2001:db8::30"), "{ahostsv6}");
    // bob was not pointed at the lab's DNS: nothing resolves there.
    assert!(bob.run("getent", &["hosts", "proxy.biloxi.test"]).is_err());

    let srv = dns.query(&alice, "_sip._udp.biloxi.test", QueryType::Srv)?;
    assert!(srv.authoritative, "{srv:?}");
    let target = |priority, port, target: &str| DnsAnswer::Srv {
        priority,
        weight: if priority == 10 { 60 } else { 0 },
        port,
        target: target.to_owned(),
    };
    assert!(
        srv.answers.contains(&target(10, 5070, "proxy.biloxi.test")),
        "{srv:?}"
    );
    assert!(
        srv.answers
            .contains(&target(20, 5080, "backup.biloxi.test")),
        "{srv:?}"
    );

    let naptr = dns.query(&alice, "biloxi.test", QueryType::Naptr)?;
    assert_eq!(
        naptr.answers,
        [DnsAnswer::Naptr {
            order: 10,
            preference: 50,
            flags: "s".to_owned(),
            service: "SIP+D2U".to_owned(),
            regexp: String::new(),
            replacement: "_sip._udp.biloxi.test".to_owned(),
        }],
        "{naptr:?}"
    );
    let aaaa = dns.query(&alice, "proxy.biloxi.test", QueryType::Aaaa)?;
    assert_eq!(aaaa.answers, [DnsAnswer::Aaaa("2001:db8::30".parse()?)]);

    let missing = dns.query(&alice, "atlanta.test", QueryType::Naptr)?;
    assert_eq!(
        (missing.rcode, missing.answers.len()),
        (3, 0),
        "NXDOMAIN: {missing:?}"
    );
    Ok(())
}

/// A LAN host behind `kind` of NAT, two servers' sockets and a stranger on the "internet".
struct NatSetup {
    lab: Lab,
    router: common::lab::Router,
    client: UdpSocket,
    servers: [UdpSocket; 2],
    stranger: UdpSocket,
    lan_host: Host,
}

fn nat_setup(kind: NatKind, udp_timeout: Duration) -> Result<NatSetup, Box<dyn Error>> {
    let lab = Lab::new()?;
    let lan = lab.segment("lan")?;
    let internet = lab.segment("internet")?;
    let router = lab.nat_router(
        "nat",
        &lan,
        "192.168.1.1/24",
        &internet,
        "203.0.113.1/24",
        kind,
    )?;
    router.set_udp_timeouts(udp_timeout, udp_timeout)?;
    let lan_host = lab.host("alice", &lan, &["192.168.1.10/24"], &["192.168.1.1"])?;
    let server = lab.host("server", &internet, &["203.0.113.10/24"], &[])?;
    let stranger = lab.host("stranger", &internet, &["203.0.113.66/24"], &[])?;
    Ok(NatSetup {
        client: socket_on(&lan_host, "192.168.1.10")?,
        servers: [
            socket_on(&server, "203.0.113.10")?,
            socket_on(&server, "203.0.113.10")?,
        ],
        stranger: socket_on(&stranger, "203.0.113.66")?,
        router,
        lan_host,
        lab,
    })
}

#[test]
fn cone_nat_maps_to_the_wan_address_keeps_the_port_and_times_out() -> TestResult {
    if !root_or_skip("cone_nat_maps_to_the_wan_address_keeps_the_port_and_times_out") {
        return Ok(());
    }
    let nat = nat_setup(NatKind::Cone, Duration::from_secs(1))?;
    // Conntrack timeouts are per namespace: the router's changed, the LAN host's did not.
    let key = "net/netfilter/nf_conntrack_udp_timeout";
    assert_eq!(nat.router.host().sysctl(key)?, "1");
    assert_ne!(nat.lan_host.sysctl(key)?, "1");

    let client_port = nat.client.local_addr()?.port();
    let mapped = SocketAddr::new(nat.router.wan_ip(), client_port);
    for server in &nat.servers {
        assert_eq!(
            send_and_see_source(&nat.client, server, "register")?,
            mapped
        );
    }
    // Replies come back through the mapping; a stranger's datagrams do not.
    nat.servers[0].send_to(b"200 OK", mapped)?;
    assert_eq!(
        receive(&nat.client, RECEIVE_TIMEOUT)?.1,
        nat.servers[0].local_addr()?
    );
    nat.stranger.send_to(b"intrusion", mapped)?;
    assert!(nothing_arrives(&nat.client, Duration::from_millis(300))?);

    // After the 1 s UDP timeout the mapping is gone: the server can no longer reach the client.
    std::thread::sleep(Duration::from_millis(2500));
    nat.servers[0].send_to(b"INVITE", mapped)?;
    assert!(
        nothing_arrives(&nat.client, Duration::from_millis(500))?,
        "the mapping outlived its timeout; lab logs:\n{}",
        nat.lab.logs()
    );
    Ok(())
}

#[test]
fn symmetric_nat_gives_each_destination_its_own_port() -> TestResult {
    if !root_or_skip("symmetric_nat_gives_each_destination_its_own_port") {
        return Ok(());
    }
    let nat = nat_setup(NatKind::Symmetric, Duration::from_secs(30))?;
    let first = send_and_see_source(&nat.client, &nat.servers[0], "binding")?;
    let second = send_and_see_source(&nat.client, &nat.servers[1], "binding")?;
    assert_eq!(
        (first.ip(), second.ip()),
        (nat.router.wan_ip(), nat.router.wan_ip())
    );
    assert_ne!(
        first.port(),
        second.port(),
        "a symmetric NAT maps per destination"
    );
    nat.servers[1].send_to(b"reply", second)?;
    assert_eq!(
        receive(&nat.client, RECEIVE_TIMEOUT)?.1,
        nat.servers[1].local_addr()?
    );

    // With UDP to the server blocked at the router, nothing gets through any more.
    nat.router.block_udp_to(nat.servers[0].local_addr()?.ip())?;
    nat.client
        .send_to(b"blocked", nat.servers[0].local_addr()?)?;
    assert!(nothing_arrives(
        &nat.servers[0],
        Duration::from_millis(300)
    )?);
    Ok(())
}

#[test]
fn kamailio_relays_to_another_domain_found_by_naptr_and_srv() -> TestResult {
    if !root_or_skip("kamailio_relays_to_another_domain_found_by_naptr_and_srv") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let net = lab.segment("net")?;
    let ns = lab.host("ns", &net, &["192.0.2.53/24"], &[])?;
    let atlanta_host = lab.host("atlanta", &net, &["192.0.2.30/24"], &[])?;
    let biloxi_host = lab.host("biloxi", &net, &["192.0.2.40/24", "2001:db8::40/64"], &[])?;
    let alice = lab.host("alice", &net, &["192.0.2.10/24"], &[])?;
    let bob = lab.host("bob", &net, &["192.0.2.20/24"], &[])?;
    let dns = lab.dns(
        &ns,
        &[
            DnsRecord::host("proxy.biloxi.test", &["192.0.2.40".parse()?]),
            DnsRecord::srv("_sip._udp.biloxi.test", "proxy.biloxi.test", 5070, 10, 10),
            DnsRecord::naptr("biloxi.test", 10, 10, "SIP+D2U", "_sip._udp.biloxi.test"),
        ],
    )?;
    lab.use_dns(&atlanta_host, dns.ip()?)?;
    // atlanta: the seed's proxy (no Record-Route) with digest auth for REGISTER;
    // biloxi: Record-Route, nathelper and dual-stack, so every optional part of the config runs.
    let atlanta = lab.kamailio(
        &atlanta_host,
        &KamailioLab {
            domain: "atlanta.test",
            listen: &["192.0.2.30:5060".parse()?],
            users: &[("alice", "secret")],
            ..KamailioLab::default()
        },
    )?;
    let biloxi = lab.kamailio(
        &biloxi_host,
        &KamailioLab {
            domain: "biloxi.test",
            listen: &["192.0.2.40:5070".parse()?, "[2001:db8::40]:5070".parse()?],
            record_route: true,
            nat_helper: true,
            ..KamailioLab::default()
        },
    )?;

    let alice_socket = socket_on(&alice, "192.0.2.10")?;
    let status = wait_udp_answer_on(&alice_socket, atlanta.addr(), RECEIVE_TIMEOUT)?;
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
    alice_socket.send_to(
        register("alice", "atlanta.test", alice_socket.local_addr()?).as_bytes(),
        atlanta.addr(),
    )?;
    let (challenge, _) = receive(&alice_socket, RECEIVE_TIMEOUT)?;
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");

    let bob_socket = bob.udp_socket("192.0.2.20:5060".parse()?)?;
    bob_socket.send_to(
        register("bob", "biloxi.test", bob_socket.local_addr()?).as_bytes(),
        biloxi.addr(),
    )?;
    let (registered, _) = receive(&bob_socket, RECEIVE_TIMEOUT)?;
    assert!(
        registered.starts_with("SIP/2.0 200"),
        "{registered}\n{}",
        biloxi.log()
    );

    alice_socket.send_to(
        invite_bob(alice_socket.local_addr()?).as_bytes(),
        atlanta.addr(),
    )?;
    let (invite, from) = receive(&bob_socket, Duration::from_secs(5))
        .map_err(|e| format!("bob got no INVITE ({e}); lab logs:\n{}", lab.logs()))?;
    assert_eq!(from.ip(), biloxi.addr().ip(), "{invite}");
    assert!(
        invite.starts_with("INVITE sip:bob@192.0.2.20:5060 SIP/2.0"),
        "{invite}"
    );
    let header_count = |name: &str| invite.lines().filter(|l| l.starts_with(name)).count();
    // Only biloxi record-routes (atlanta, as in the seed, does not); three Vias: both proxies.
    assert_eq!(header_count("Record-Route:"), 1, "{invite}");
    assert_eq!(header_count("Via:"), 3, "{invite}");
    assert!(
        dns.log().contains("biloxi.test from 192.0.2.30"),
        "{}",
        dns.log()
    );
    Ok(())
}

fn register(user: &str, domain: &str, local: SocketAddr) -> String {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-lab-reg-{user};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{domain}>;tag=lab-{user}\r\n\
         To: <sip:{user}@{domain}>\r\n\
         Call-ID: lab-register-{user}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@{local}>\r\n\
         Expires: 60\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn invite_bob(local: SocketAddr) -> String {
    format!(
        "INVITE sip:bob@biloxi.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-lab-invite;rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@atlanta.test>;tag=lab-alice\r\n\
         To: <sip:bob@biloxi.test>\r\n\
         Call-ID: lab-invite\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@{local}>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn headless_sipterm_listens_on_a_lab_address() -> TestResult {
    if !root_or_skip("headless_sipterm_listens_on_a_lab_address") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let lan = lab.segment("lan")?;
    let alice = lab.host("alice", &lan, &["192.168.1.10/24"], &[])?;
    let probe = lab.host("probe", &lan, &["192.168.1.99/24"], &[])?;
    let sipterm = Headless::spawn(
        "alice",
        &HeadlessOptions {
            netns: Some(alice.netns().to_owned()),
            listen: Some("0.0.0.0:5060".to_owned()),
            ..HeadlessOptions::default()
        },
    )?;
    assert_eq!(sipterm.listen.port(), 5060);
    let probe_socket = socket_on(&probe, "192.168.1.99")?;
    let status = wait_udp_answer_on(
        &probe_socket,
        "192.168.1.10:5060".parse()?,
        Duration::from_secs(10),
    )
    .map_err(|e| format!("{e}\n{}", sipterm.recent_output()))?;
    assert!(status.starts_with("SIP/2.0 200"), "{status}");
    Ok(())
}

fn namespaces_named(prefix: &str) -> Result<Vec<String>, Box<dyn Error>> {
    let output = Command::new("ip").args(["netns", "list"]).output()?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

fn etc_netns_named(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/etc/netns")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (bounded) for a child to end; true when it did.
fn ends_within(child: &mut std::process::Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn dropping_the_lab_removes_namespaces_and_processes_even_on_panic() -> TestResult {
    if !root_or_skip("dropping_the_lab_removes_namespaces_and_processes_even_on_panic") {
        return Ok(());
    }
    let lab = Lab::new()?;
    let id = format!("{}-", lab.id());
    let lan = lab.segment("lan")?;
    let host = lab.host("alice", &lan, &["192.0.2.10/24"], &[])?;
    lab.use_dns(&host, "192.0.2.53".parse()?)?;
    let owned = lab.spawn("sleeper", {
        let mut command = host.command("sleep");
        command.arg("60");
        command
    })?;
    // Started behind the lab's back: the namespace sweep still finds it.
    let mut stray = host
        .command("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()?;
    assert_eq!(namespaces_named(&id)?.len(), 2);
    drop(lab);
    assert_eq!(namespaces_named(&id)?, Vec::<String>::new());
    assert_eq!(etc_netns_named(&id), Vec::<String>::new());
    assert!(
        !Path::new(&format!("/proc/{}", owned.pid)).exists(),
        "the lab's sleeper lives"
    );
    assert!(
        ends_within(&mut stray, Duration::from_secs(3)),
        "the stray sleeper lives"
    );

    // A panicking test still cleans up (and keeps the lab dir for the post-mortem).
    let (sender, receiver) = std::sync::mpsc::channel();
    let panicked = std::thread::spawn(move || {
        let lab = Lab::new().expect("a lab");
        lab.host(
            "bob",
            &lab.segment("lan").expect("a segment"),
            &["192.0.2.20/24"],
            &[],
        )
        .expect("a host");
        let _ = sender.send((format!("{}-", lab.id()), lab.dir().to_path_buf()));
        panic!("deliberate panic to test the lab's cleanup");
    })
    .join();
    assert!(panicked.is_err());
    let (id, dir) = receiver.recv_timeout(RECEIVE_TIMEOUT)?;
    assert_eq!(namespaces_named(&id)?, Vec::<String>::new());
    assert!(dir.exists(), "the lab dir is kept after a panic");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn leftovers_of_a_dead_run_are_removed() -> TestResult {
    if !root_or_skip("leftovers_of_a_dead_run_are_removed") {
        return Ok(());
    }
    // Lab::new has swept once in this process; what follows is what a killed run leaves.
    drop(Lab::new()?);
    let mut gone = Command::new("true").spawn()?;
    gone.wait()?;
    let stale = format!("stlab{}-0-stale", gone.id());
    let status = Command::new("ip").args(["netns", "add", &stale]).status()?;
    assert!(status.success());
    std::fs::create_dir_all(format!("/etc/netns/{stale}"))?;
    let mut orphan = Command::new("ip")
        .args(["netns", "exec", &stale, "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()?;
    // Sweep only once the orphan runs inside the namespace (`ip netns exec` takes a moment).
    let deadline = Instant::now() + Duration::from_secs(3);
    while Command::new("ip")
        .args(["netns", "pids", &stale])
        .output()?
        .stdout
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the orphan never entered {stale}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    common::lab::remove_stale_labs();
    assert_eq!(namespaces_named(&stale)?, Vec::<String>::new());
    assert_eq!(etc_netns_named(&stale), Vec::<String>::new());
    assert!(
        ends_within(&mut orphan, Duration::from_secs(3)),
        "the orphan lives"
    );
    Ok(())
}
