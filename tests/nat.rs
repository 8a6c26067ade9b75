//! NAT traversal end to end: STUN (public address in Contact, Via and SDP; a dead server is a
//! warning, not a failure), UDP keep-alives while registered, and symmetric RTP latching.
//! Every peer here is a raw socket on 127.0.0.1 owned by the test; the fake STUN server maps to
//! 192.0.2.1 (TEST-NET-1), to which nothing is ever sent (the raw peers never send RTP).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::headless::{Headless, HeadlessOptions};
use sipterm::nat::stun;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);

type Log = Arc<Mutex<Vec<(SocketAddr, Vec<u8>, Instant)>>>;

/// A thread around a UDP socket on 127.0.0.1 that records what arrives and answers through
/// `respond`; stops when dropped.
struct RawPeer {
    addr: SocketAddr,
    log: Log,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RawPeer {
    fn start(mut respond: impl FnMut(&UdpSocket, SocketAddr, &[u8]) + Send + 'static) -> RawPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let log: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_535];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let bytes = buf[..n].to_vec();
                    log2.lock()
                        .unwrap()
                        .push((from, bytes.clone(), Instant::now()));
                    respond(&socket, from, &bytes);
                }
            }
        });
        RawPeer {
            addr,
            log,
            stop,
            thread: Some(thread),
        }
    }

    /// A registrar and UAS: 200 to REGISTER (60 s), 486 to INVITE, 200 to BYE, nothing else.
    fn registrar() -> RawPeer {
        RawPeer::start(|socket, from, bytes| {
            let text = String::from_utf8_lossy(bytes);
            let reply = if text.starts_with("REGISTER ") {
                let contact = header(&text, "Contact").unwrap_or_default();
                let expires = if text.contains("Expires: 0") {
                    "0"
                } else {
                    "60"
                };
                Some(response(
                    &text,
                    200,
                    "OK",
                    &format!("Contact: {contact};expires={expires}\r\nExpires: {expires}\r\n"),
                    "",
                ))
            } else if text.starts_with("INVITE ") {
                Some(response(&text, 486, "Busy Here", "", ""))
            } else if text.starts_with("BYE ") {
                Some(response(&text, 200, "OK", "", ""))
            } else {
                None
            };
            if let Some(reply) = reply {
                let _ = socket.send_to(reply.as_bytes(), from);
            }
        })
    }

    /// A STUN server answering every Binding request with `map(source)`.
    fn stun(map: impl Fn(SocketAddr) -> SocketAddr + Send + 'static) -> RawPeer {
        RawPeer::start(move |socket, from, bytes| {
            if let Ok(m) = stun::parse(bytes)
                && m.kind == stun::BINDING_REQUEST
            {
                let _ = socket.send_to(&stun::binding_success(&m.transaction, map(from)), from);
            }
        })
    }

    fn received(&self) -> Vec<(SocketAddr, Vec<u8>, Instant)> {
        self.log.lock().unwrap().clone()
    }

    /// The first SIP request of `method` received, as text.
    fn request(&self, method: &str) -> Option<String> {
        self.received()
            .into_iter()
            .map(|(_, b, _)| String::from_utf8_lossy(&b).into_owned())
            .find(|t| t.starts_with(&format!("{method} ")))
    }

    fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&RawPeer) -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if pred(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for {what}; got {} datagrams",
            self.received().len()
        );
    }
}

impl Drop for RawPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The value of the first header `name` (case-insensitive; full names only).
fn header(text: &str, name: &str) -> Option<String> {
    text.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A response to `request` with its Via, From, To (tagged), Call-ID and CSeq.
fn response(request: &str, code: u16, reason: &str, extra: &str, body: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in request.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" => {
                out.push_str(line);
                if !line.contains(";tag=") {
                    out.push_str(";tag=rawpeer");
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str(extra);
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out
}

fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
}

/// The port of the SDP's m=audio line.
fn sdp_audio_port(text: &str) -> u16 {
    body(text)
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no m=audio in\n{text}"))
}

fn config(stun_server: Option<SocketAddr>, registrar: Option<SocketAddr>, extra: &str) -> String {
    let mut text = String::new();
    if let Some(s) = stun_server {
        text.push_str(&format!("[sip]\nstun_server = \"{s}\"\n\n"));
    }
    text.push_str("[[account]]\nname = \"nat\"\nuri = \"sip:alice@127.0.0.1\"\n");
    if let Some(r) = registrar {
        text.push_str(&format!("registrar = \"sip:{r}\"\nexpires = 60\n"));
    }
    text.push_str(extra);
    text
}

fn spawn(name: &str, config_toml: String, auto_answer_ms: Option<u64>) -> Headless {
    Headless::spawn(
        name,
        &HeadlessOptions {
            config_toml: Some(config_toml),
            auto_answer_ms,
            ..HeadlessOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn expect_registration(sipterm: &mut Headless, state: &str) {
    sipterm
        .expect_event(
            &format!("registration {state}"),
            |e| e["event"] == "registration" && e["state"] == state,
            EVENT_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", sipterm.recent_output()));
}

/// No `sip` event from `peer` shows up within `wait` (a datagram that reached the SIP parser
/// is traced as one).
fn assert_not_traced(sipterm: &mut Headless, peer: SocketAddr, wait: Duration) {
    let peer = peer.to_string();
    let hit = sipterm.expect_event(
        "nothing",
        |e| e["event"] == "sip" && e["dir"] == "in" && e["peer"] == peer.as_str(),
        wait,
    );
    assert!(
        hit.is_err(),
        "datagram from {peer} reached the SIP parser: {hit:?}"
    );
}

#[test]
fn stun_address_goes_into_contact_via_and_sdp() {
    // The "NAT" keeps the port and puts us at 192.0.2.1.
    let stun_server = RawPeer::stun(|from| SocketAddr::new([192, 0, 2, 1].into(), from.port()));
    let peer = RawPeer::registrar();
    let mut a = spawn(
        "nat-stun",
        config(Some(stun_server.addr), Some(peer.addr), ""),
        None,
    );
    let started = Instant::now();
    expect_registration(&mut a, "registered");
    println!(
        "registered {:?} after ready (STUN first)",
        started.elapsed()
    );
    let port = a.listen.port();
    let public = format!("192.0.2.1:{port}");
    let register = peer.request("REGISTER").expect("a REGISTER");
    let contact = header(&register, "Contact").unwrap();
    let via = header(&register, "Via").unwrap();
    assert!(
        contact.contains(&public),
        "Contact {contact} is not {public}"
    );
    assert!(via.contains(&public), "Via {via} is not {public}");
    let sip_binding = stun_server
        .received()
        .iter()
        .any(|(from, _, _)| *from == a.listen);
    assert!(
        sip_binding,
        "no Binding came from the SIP socket {}",
        a.listen
    );

    // STUN traffic arriving on the SIP socket is not SIP: neither a request nor a stray
    // success response reaches the parser (and nothing answers).
    let prober = UdpSocket::bind("127.0.0.1:0").unwrap();
    prober
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let id = [7u8; 12];
    prober
        .send_to(&stun::binding_request(&id), a.listen)
        .unwrap();
    let stray = stun::binding_success(&id, "198.51.100.9:9".parse().unwrap());
    prober.send_to(&stray, a.listen).unwrap();
    assert_not_traced(&mut a, prober.local_addr().unwrap(), Duration::from_secs(1));
    let mut buf = [0u8; 2048];
    assert!(prober.recv_from(&mut buf).is_err(), "sipterm answered STUN");

    // The call's SDP carries the RTP socket's own mapping.
    a.send(&format!("dial sip:bob@{}", peer.addr)).unwrap();
    a.expect_event(
        "the call to end with 486",
        |e| e["event"] == "call" && e["state"] == "terminated",
        EVENT_TIMEOUT,
    )
    .unwrap();
    let invite = peer.request("INVITE").expect("an INVITE");
    assert!(
        body(&invite).contains("c=IN IP4 192.0.2.1"),
        "SDP without the public address:\n{invite}"
    );
    assert!(header(&invite, "Contact").unwrap().contains(&public));
    let rtp_port = sdp_audio_port(&invite);
    assert_ne!(rtp_port, port);
    let rtp_binding = stun_server
        .received()
        .iter()
        .any(|(from, _, _)| *from == SocketAddr::new(a.listen.ip(), rtp_port));
    assert!(
        rtp_binding,
        "no Binding came from the RTP socket :{rtp_port}"
    );
    println!(
        "STUN requests seen: {}, SDP m=audio {rtp_port}",
        stun_server.received().len()
    );
    assert!(
        a.events_of("warning").is_empty(),
        "{:?}",
        a.events_of("warning")
    );
    a.quit(Duration::from_secs(5));
}

#[test]
fn dead_stun_server_warns_and_calls_use_local_addresses() {
    // Bound, never read: requests vanish.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    let peer = RawPeer::registrar();
    let mut a = spawn(
        "nat-dead",
        config(Some(dead_addr), Some(peer.addr), ""),
        None,
    );
    let started = Instant::now();
    let warning = a
        .expect_event(
            "a STUN warning",
            |e| e["event"] == "warning" && e["message"].as_str().unwrap_or("").contains("STUN"),
            EVENT_TIMEOUT,
        )
        .unwrap();
    println!(
        "warning after {:?}: {}",
        started.elapsed(),
        warning["message"]
    );
    expect_registration(&mut a, "registered");
    let local = a.listen.to_string();
    let register = peer.request("REGISTER").unwrap();
    assert!(header(&register, "Contact").unwrap().contains(&local));

    // SDP with the local address, after a warning about the RTP socket's Binding.
    a.send(&format!("dial sip:bob@{}", peer.addr)).unwrap();
    a.expect_event(
        "the call to end",
        |e| e["event"] == "call" && e["state"] == "terminated",
        EVENT_TIMEOUT,
    )
    .unwrap();
    let invite = peer.request("INVITE").unwrap();
    assert!(body(&invite).contains("c=IN IP4 127.0.0.1"), "{invite}");
    let rtp_warnings = a
        .events_of("warning")
        .iter()
        .filter(|e| e["message"].as_str().unwrap_or("").contains("RTP"))
        .count();
    assert_eq!(rtp_warnings, 1, "{:?}", a.events_of("warning"));

    // And a real call with audio both ways still works.
    let mut b = spawn("nat-dead-b", config(None, None, ""), Some(0));
    a.send(&format!("dial {}", b.uri("bob"))).unwrap();
    a.expect_call_state("confirmed", EVENT_TIMEOUT).unwrap();
    for side in [&mut a, &mut b] {
        let media = side
            .expect_event(
                "media with received packets",
                |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) > 10,
                EVENT_TIMEOUT,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        println!("{}: {media}", side.name());
    }
    a.send("hangup").unwrap();
    a.expect_call_state("terminated", EVENT_TIMEOUT).unwrap();
    drop(dead);
    a.quit(Duration::from_secs(5));
    b.quit(Duration::from_secs(5));
}

#[test]
fn crlf_keepalives_flow_while_registered_and_are_ignored_inbound() {
    let peer = RawPeer::registrar();
    let mut a = spawn(
        "nat-keepalive",
        config(None, Some(peer.addr), "keepalive_secs = 1\n"),
        None,
    );
    expect_registration(&mut a, "registered");
    let keepalives = |p: &RawPeer| -> Vec<Instant> {
        p.received()
            .into_iter()
            .filter(|(_, b, _)| b == b"\r\n\r\n")
            .map(|(_, _, t)| t)
            .collect()
    };
    let listen = a.listen;
    peer.wait_for("three keep-alives", Duration::from_secs(6), |p| {
        keepalives(p).len() >= 3
    });
    let seen = keepalives(&peer);
    let from_sip_port = peer
        .received()
        .iter()
        .filter(|(_, b, _)| b == b"\r\n\r\n")
        .all(|(from, _, _)| *from == listen);
    assert!(from_sip_port, "keep-alives must leave from the SIP socket");
    let gaps: Vec<u128> = seen.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    println!("keep-alive gaps (ms): {gaps:?}");

    // Inbound CRLF keep-alives (and STUN) get no answer: no 400, nothing traced.
    let prober = UdpSocket::bind("127.0.0.1:0").unwrap();
    prober
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    prober.send_to(b"\r\n\r\n", listen).unwrap();
    prober.send_to(b"\r\n", listen).unwrap();
    assert_not_traced(&mut a, prober.local_addr().unwrap(), Duration::from_secs(1));
    let mut buf = [0u8; 2048];
    assert!(
        prober.recv_from(&mut buf).is_err(),
        "sipterm answered a keep-alive"
    );

    // Unregistered: they stop.
    a.send("unregister").unwrap();
    expect_registration(&mut a, "unregistered");
    let before = keepalives(&peer).len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        keepalives(&peer).len(),
        before,
        "keep-alives after unregister"
    );
    a.quit(Duration::from_secs(5));
}

/// An RTP packet: PCMU (PT 0), 20 ms of μ-law silence.
fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend(std::iter::repeat_n(0xFFu8, 160));
    p
}

/// A call from a headless sipterm to a raw UAS whose SDP names one socket (`sdp_sink`) while its
/// RTP comes from another (`media`, as if a NAT rewrote the port). Both on 127.0.0.1, the IP of
/// the SDP and of the SIP messages.
struct LatchCall {
    sipterm: Headless,
    _uas: RawPeer,
    /// sipterm's RTP address (from its INVITE's SDP).
    target: SocketAddr,
    sdp_sink: UdpSocket,
    media: UdpSocket,
}

fn start_latch_call(name: &str) -> LatchCall {
    let sdp_sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sdp_sink
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let sdp_port = sdp_sink.local_addr().unwrap().port();
    let media = UdpSocket::bind("127.0.0.1:0").unwrap();
    media
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {sdp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    );
    let rtp_target: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let target2 = rtp_target.clone();
    let uas = RawPeer::start(move |socket, from, bytes| {
        let text = String::from_utf8_lossy(bytes);
        let local = socket.local_addr().unwrap();
        if text.starts_with("INVITE ") {
            let port = sdp_audio_port(&text);
            *target2.lock().unwrap() = Some(SocketAddr::new(from.ip(), port));
            let ok = response(
                &text,
                200,
                "OK",
                &format!("Contact: <sip:bob@{local}>\r\nContent-Type: application/sdp\r\n"),
                &sdp,
            );
            let _ = socket.send_to(ok.as_bytes(), from);
        } else if text.starts_with("BYE ") {
            let _ = socket.send_to(response(&text, 200, "OK", "", "").as_bytes(), from);
        }
    });
    let mut sipterm = spawn(name, config(None, None, ""), None);
    sipterm.send(&format!("dial sip:bob@{}", uas.addr)).unwrap();
    sipterm
        .expect_call_state("confirmed", EVENT_TIMEOUT)
        .unwrap();
    let target = rtp_target
        .lock()
        .unwrap()
        .expect("the INVITE's RTP address");
    LatchCall {
        sipterm,
        _uas: uas,
        target,
        sdp_sink,
        media,
    }
}

/// What sipterm sent while `media` sent `duration` of RTP (SSRC `ssrc`): RTP packets at the
/// media socket, datagrams at the SDP socket, and when the first reached the media socket.
fn exchange(call: &LatchCall, ssrc: u32, duration: Duration) -> (u32, u32, Option<Duration>) {
    let (mut at_source, mut at_sdp) = (0u32, 0u32);
    let mut first_at_source = None;
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    let mut seq = 1u16;
    while start.elapsed() < duration {
        call.media
            .send_to(&rtp_packet(seq, ssrc), call.target)
            .unwrap();
        seq = seq.wrapping_add(1);
        // Drain what came, but keep sending every 20 ms or so (sipterm's own packets arrive
        // that often, so the read timeout alone would never end this loop).
        let drain_until = Instant::now() + Duration::from_millis(20);
        while Instant::now() < drain_until
            && let Ok((n, from)) = call.media.recv_from(&mut buf)
        {
            if from == call.target && n >= 12 && buf[0] >> 6 == 2 && buf[1] & 0x7f == 0 {
                at_source += 1;
                first_at_source.get_or_insert(start.elapsed());
            }
        }
        while call.sdp_sink.recv_from(&mut buf).is_ok() {
            at_sdp += 1;
        }
    }
    (at_source, at_sdp, first_at_source)
}

#[test]
fn rtp_latches_to_the_peer_source_when_it_differs_from_its_sdp() {
    // The callee's SDP names one port; its RTP comes from another socket (a NAT rewrote it).
    // Same IP as its SDP: latching follows it (the SDP's IP is one the peer signalled).
    let mut call = start_latch_call("nat-latch");
    let media_addr = call.media.local_addr().unwrap();

    // Send 3 s of RTP from `media`; count what sipterm sends to each of our sockets.
    let (at_source, at_sdp, first_at_source) = exchange(&call, 0x5EED_0001, Duration::from_secs(3));
    println!(
        "RTP from sipterm: {at_source} packets to the source port, {at_sdp} to the SDP port; \
         first at the source after {first_at_source:?}"
    );
    assert!(
        at_source >= 50,
        "only {at_source} RTP packets reached the peer's real source"
    );
    // Before the first packet of ours arrived sipterm used the SDP address; never after.
    assert!(at_sdp < 30, "{at_sdp} packets still went to the SDP port");
    let a = &mut call.sipterm;
    let report = a
        .expect_event(
            "a media report",
            |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) > 0,
            EVENT_TIMEOUT,
        )
        .unwrap();
    assert_eq!(report["remote"], media_addr.to_string(), "{report}");
    assert_eq!(report["foreign"], 0, "{report}");
    a.send("hangup").unwrap();
    a.expect_call_state("terminated", EVENT_TIMEOUT).unwrap();
    a.quit(Duration::from_secs(5));
}

/// Latching decides on proof, not on who is first: a stranger on another host (127.0.0.2)
/// that sends sipterm's RTP port a stream before the peer speaks (an "RTP bleed" race at call
/// start) captures nothing. sipterm never sends it a packet, latches to the peer when the peer
/// speaks, and counts every stranger packet as foreign.
#[test]
fn a_strangers_first_packets_do_not_capture_the_latch() {
    use common::rtp_stream::{ToneStream, send_pcmu_tone};
    const STRANGER_PACKETS: usize = 25;
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut call = start_latch_call("nat-stranger");
    let media_addr = call.media.local_addr().unwrap();
    let sent = send_pcmu_tone(
        &stranger,
        call.target,
        &ToneStream::new(1700.0, 0x5742_4E47),
        STRANGER_PACKETS,
    )
    .unwrap();
    let (at_source, _, first_at_source) = exchange(&call, 0x5EED_0002, Duration::from_secs(2));
    // What reached the stranger (a latched sipterm would still be sending there: bounded).
    let mut buf = [0u8; 2048];
    let mut at_stranger = 0;
    let drain_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < drain_until && stranger.recv_from(&mut buf).is_ok() {
        at_stranger += 1;
    }
    println!(
        "RTP from sipterm: {at_stranger} datagrams to the stranger, {at_source} to the peer's \
         source (first after {first_at_source:?})"
    );
    assert_eq!(at_stranger, 0, "sipterm latched onto the stranger");
    assert!(
        at_source >= 30,
        "only {at_source} RTP packets reached the peer's real source"
    );
    let a = &mut call.sipterm;
    let report = a
        .expect_event(
            "a media report counting the stranger",
            |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) > 0,
            EVENT_TIMEOUT,
        )
        .unwrap();
    println!("{report}");
    assert_eq!(report["remote"], media_addr.to_string(), "{report}");
    assert_eq!(report["foreign"].as_u64(), Some(sent as u64), "{report}");
    a.send("hangup").unwrap();
    a.expect_call_state("terminated", EVENT_TIMEOUT).unwrap();
    a.quit(Duration::from_secs(5));
}

/// With a STUN server that never answers, a new call's RTP Binding takes up to a second before
/// the INVITE goes out. `hangup` typed right after `dial` must still mean that call (was:
/// `error` "no call to hang up", and the call rang on): the INVITE goes out, then its CANCEL,
/// and the callee's ringing call ends too.
#[test]
fn hangup_right_after_dial_waits_for_the_rtp_stun_binding() {
    // Bound, never read: requests vanish.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut a = spawn(
        "nat-hangup",
        config(Some(silent.local_addr().unwrap()), None, ""),
        None,
    );
    // The SIP socket's own Binding gives up first (its warning): what follows is the call's.
    a.expect_event(
        "the SIP socket's STUN warning",
        |e| e["event"] == "warning" && e["message"].as_str().unwrap_or("").contains("STUN"),
        EVENT_TIMEOUT,
    )
    .unwrap();
    let mut b = spawn("nat-hangup-b", config(None, None, ""), None);
    let sent = Instant::now();
    a.send(&format!("dial {}", b.uri("bob"))).unwrap();
    a.send("hangup").unwrap();
    let calling = a.expect_call_state("calling", EVENT_TIMEOUT).unwrap();
    println!("calling {:?} after dial: {calling}", sent.elapsed());
    b.expect_call_state("incoming", EVENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", b.recent_output()));
    let ended = a.expect_call_state("terminated", EVENT_TIMEOUT).unwrap();
    let b_ended = b
        .expect_call_state("terminated", EVENT_TIMEOUT)
        .unwrap_or_else(|e| panic!("the callee rang on: {e}"));
    println!(
        "caller ended {ended}; callee ended {b_ended} ({:?} after dial)",
        sent.elapsed()
    );
    assert!(
        a.events_of("error").is_empty(),
        "{:?}",
        a.events_of("error")
    );
    drop(silent);
    a.quit(Duration::from_secs(5));
    b.quit(Duration::from_secs(5));
}
