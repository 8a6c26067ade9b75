//! Robustness with real processes: SIP through a lossy relay, a message flood during a call,
//! and garbage (malformed SIP over UDP and TCP, broken SDP, junk RTP/RTCP) at a live sipterm.
//!
//! Run with `--nocapture` to see the figures (drops, setup times, RSS, response counts).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::headless::{Headless, HeadlessOptions, sine, write_wav};

use sipterm::sip::ua::MAX_RINGING_PER_SOURCE;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Signalling waits: generous, a debug build on two shared (and here, busy) cores.
const SIGNALLING: Duration = Duration::from_secs(20);

/// `[sip] t1_ms = 100` keeps retransmissions (and transaction lifetimes) short.
fn config(name: &str, codecs: &str) -> String {
    format!(
        "[sip]\nt1_ms = 100\n\n[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@127.0.0.1\"\n\
         codecs = [{codecs}]\n"
    )
}

fn spawn(
    name: &str,
    codecs: &str,
    auto_answer_ms: Option<u64>,
    audio_in: Option<std::path::PathBuf>,
) -> Result<Headless, Box<dyn std::error::Error>> {
    Ok(Headless::spawn(
        name,
        &HeadlessOptions {
            audio_in,
            audio_out: None,
            auto_answer_ms,
            config_toml: Some(config(name, codecs)),
            extra_args: Vec::new(),
            ..HeadlessOptions::default()
        },
    )?)
}

/// xorshift64*: deterministic per seed.
struct Prng(u64);

impl Prng {
    fn new(seed: u64) -> Prng {
        Prng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// VmRSS of a process in KiB.
fn vm_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z'))
}

fn udp() -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok(socket)
}

fn call_id(rng: &mut Prng) -> String {
    format!("{:016x}@robustness", rng.next_u64())
}

fn options(target: SocketAddr, local: SocketAddr, call_id: &str, branch: u64) -> String {
    format!(
        "OPTIONS sip:probe@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch:x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:prober@{local}>;tag=p{branch:x}\r\n\
         To: <sip:probe@{target}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn invite(
    target: SocketAddr,
    local: SocketAddr,
    call_id: &str,
    branch: u64,
    content_type: &str,
    body: &str,
) -> String {
    format!(
        "INVITE sip:victim@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch:x};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:flood@{local}>;tag=f{branch:x}\r\n\
         To: <sip:victim@{target}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:flood@{local}>\r\n\
         Content-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The status code of a SIP response datagram.
fn status_of(text: &str) -> Option<u16> {
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// Sends `bytes` (resending every 500 ms) and waits for a response carrying `call_id`;
/// returns (code, response text) of the first final one, or of the last provisional at the end.
fn request(
    socket: &UdpSocket,
    to: SocketAddr,
    bytes: &[u8],
    call_id: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let start = Instant::now();
    let mut last_send = start;
    let mut provisional = None;
    socket.send_to(bytes, to).ok()?;
    let mut buf = vec![0u8; 65536];
    while start.elapsed() < timeout {
        if provisional.is_none() && last_send.elapsed() >= Duration::from_millis(500) {
            socket.send_to(bytes, to).ok()?;
            last_send = Instant::now();
        }
        let Ok((n, _)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.contains(call_id) {
            continue;
        }
        match status_of(&text) {
            Some(code) if code >= 200 => return Some((code, text)),
            Some(code) => provisional = Some((code, text)),
            None => {}
        }
    }
    provisional
}

// ------------------------------------------------------------------------------ lossy relay

#[derive(Default)]
struct RelayStats {
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// A UDP relay between a caller and a callee that rewrites addresses (a tiny ALG, so Via,
/// Contact and Record-less in-dialog requests also pass through it) and drops a share of the
/// datagrams in each direction. The caller sees the callee at `caller_facing`.
struct Relay {
    caller_facing: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<RelayStats>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    fn start(
        caller: SocketAddr,
        callee: SocketAddr,
        loss: f64,
        seed: u64,
    ) -> std::io::Result<Relay> {
        let s1 = Arc::new(udp()?); // faces the caller
        let s2 = Arc::new(udp()?); // faces the callee
        let (r1, r2) = (s1.local_addr()?, s2.local_addr()?);
        for a in [caller, callee, r1, r2] {
            // Equal-length addresses keep the rewriting length-neutral (all ephemeral ports).
            assert_eq!(a.to_string().len(), r1.to_string().len(), "address {a}");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(RelayStats::default());
        let direction = |from: Arc<UdpSocket>,
                         to: Arc<UdpSocket>,
                         expect_source: SocketAddr,
                         dest: SocketAddr,
                         rewrites: [(String, String); 2],
                         seed: u64| {
            let stop = stop.clone();
            let stats = stats.clone();
            thread::spawn(move || {
                let mut rng = Prng::new(seed);
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, source)) = from.recv_from(&mut buf) else {
                        continue;
                    };
                    if source != expect_source {
                        continue;
                    }
                    let mut text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    for (old, new) in &rewrites {
                        text = text.replace(old.as_str(), new);
                    }
                    if rng.chance(loss) {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    let _ = to.send_to(text.as_bytes(), dest);
                }
            })
        };
        let s = |a: SocketAddr| a.to_string();
        let threads = vec![
            direction(
                s1.clone(),
                s2.clone(),
                caller,
                callee,
                [(s(caller), s(r2)), (s(r1), s(callee))],
                seed,
            ),
            direction(
                s2,
                s1,
                callee,
                caller,
                [(s(callee), s(r1)), (s(r2), s(caller))],
                seed ^ 0xdead_beef,
            ),
        ];
        Ok(Relay {
            caller_facing: r1,
            stop,
            stats,
            threads,
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Three calls in a row through a relay that loses 30 % of the SIP datagrams each way: every
/// call gets confirmed on both sides and then terminated on both sides (hung up by the caller,
/// then the callee, alternately), by retransmission alone.
#[test]
fn calls_survive_thirty_percent_sip_loss() -> TestResult {
    let mut caller = spawn("lossy-caller", "\"pcmu\"", None, None)?;
    let mut callee = spawn("lossy-callee", "\"pcmu\"", Some(0), None)?;
    let relay = Relay::start(caller.listen, callee.listen, 0.30, 0x5eed)?;
    let target = format!("sip:callee@{}", relay.caller_facing);
    for round in 0..3 {
        let t0 = Instant::now();
        caller.send(&format!("dial {target}"))?;
        caller.expect_call_state("confirmed", SIGNALLING)?;
        let caller_up = t0.elapsed();
        callee.expect_call_state("confirmed", SIGNALLING)?;
        let callee_up = t0.elapsed();
        let t1 = Instant::now();
        let (first, second) = if round % 2 == 0 {
            (&mut caller, &mut callee)
        } else {
            (&mut callee, &mut caller)
        };
        first.send("hangup")?;
        first.expect_call_state("terminated", SIGNALLING)?;
        second.expect_call_state("terminated", SIGNALLING)?;
        println!(
            "call {round}: confirmed at caller after {caller_up:?}, at callee after {callee_up:?}; \
             both terminated {:?} after `hangup` at the {}; relay so far: {} forwarded, {} dropped",
            t1.elapsed(),
            if round % 2 == 0 { "caller" } else { "callee" },
            relay.stats.forwarded.load(Ordering::Relaxed),
            relay.stats.dropped.load(Ordering::Relaxed),
        );
    }
    let dropped = relay.stats.dropped.load(Ordering::Relaxed);
    let forwarded = relay.stats.forwarded.load(Ordering::Relaxed);
    println!(
        "lossy relay: {dropped} of {} SIP datagrams dropped ({:.0} %)",
        dropped + forwarded,
        100.0 * dropped as f64 / (dropped + forwarded).max(1) as f64
    );
    assert!(
        dropped > 0,
        "the relay dropped nothing: the loss path was not exercised"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------- flood

/// One message of the flood: OPTIONS, INVITE with a fresh Call-ID, junk, or a truncated INVITE.
fn flood_message(i: u64, rng: &mut Prng, target: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let id = call_id(rng);
    match i % 5 {
        0 | 1 => options(target, local, &id, rng.next_u64()).into_bytes(),
        2 => invite(target, local, &id, rng.next_u64(), "application/sdp", "").into_bytes(),
        3 => {
            let n = 1 + (rng.next_u64() % 1400) as usize;
            rng.bytes(n)
        }
        _ => {
            let full = invite(target, local, &id, rng.next_u64(), "application/sdp", "");
            let cut = (rng.next_u64() as usize) % full.len();
            full.as_bytes()[..cut].to_vec()
        }
    }
}

/// A call (PCMU, WAV audio both ways) while a second socket throws 2,000 SIP messages/s for
/// 10 s at the caller. The caller stays up, answers OPTIONS from a separate probe socket all
/// along, keeps the call confirmed with audio arriving, keeps its memory bounded, and does not
/// keep a ringing call for every flooded INVITE.
#[test]
fn flood_during_a_call() -> TestResult {
    let dir = tempfile::Builder::new()
        .prefix("sipterm-flood-")
        .tempdir()?;
    let wav = |name: &str, tone: f32| -> Result<std::path::PathBuf, hound::Error> {
        let path = dir.path().join(format!("{name}.wav"));
        write_wav(&path, 8000, &sine(tone, 8000, 20.0, 8000.0))?;
        Ok(path)
    };
    let mut alice = spawn("flood-alice", "\"pcmu\"", None, Some(wav("alice", 440.0)?))?;
    let mut bob = spawn("flood-bob", "\"pcmu\"", Some(0), Some(wav("bob", 1000.0)?))?;
    let pid = alice.pid();
    alice.send(&format!("dial {}", bob.uri("bob")))?;
    let confirmed = alice.expect_call_state("confirmed", SIGNALLING)?;
    let call = confirmed["call"].clone();
    bob.expect_call_state("confirmed", SIGNALLING)?;
    let received_before = alice.expect_event(
        "a media event with packets received",
        |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) > 0,
        SIGNALLING,
    )?["received"]
        .as_u64()
        .unwrap_or(0);
    let rss_before = vm_rss_kb(pid).ok_or("no VmRSS")?;

    // The flood, from its own socket; a second thread counts what comes back.
    let target = alice.listen;
    let flood_socket = Arc::new(udp()?);
    let stop = Arc::new(AtomicBool::new(false));
    let counter = {
        let socket = flood_socket.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut codes: BTreeMap<u16, u64> = BTreeMap::new();
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = socket.recv_from(&mut buf)
                    && let Some(code) = status_of(&String::from_utf8_lossy(&buf[..n]))
                {
                    *codes.entry(code).or_default() += 1;
                }
            }
            codes
        })
    };
    let flooder = {
        let socket = flood_socket.clone();
        thread::spawn(move || -> u64 {
            let local = socket.local_addr().expect("local addr");
            let mut rng = Prng::new(42);
            let start = Instant::now();
            let mut sent = 0u64;
            // 20 messages every 10 ms: 2,000/s.
            while start.elapsed() < Duration::from_secs(10) {
                for _ in 0..20 {
                    let msg = flood_message(sent, &mut rng, target, local);
                    let _ = socket.send_to(&msg, target);
                    sent += 1;
                }
                let due = start + Duration::from_millis(10 * (sent / 20));
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
            }
            sent
        })
    };

    // Meanwhile: an OPTIONS probe every 250 ms from another socket, and RSS samples.
    let probe = udp()?;
    let probe_local = probe.local_addr()?;
    let mut rng = Prng::new(7);
    let mut rss_peak = rss_before;
    let (mut probes, mut answered, mut worst) = (0u32, 0u32, Duration::ZERO);
    let mut probe_codes: BTreeMap<u16, u32> = BTreeMap::new();
    while !flooder.is_finished() {
        let id = call_id(&mut rng);
        let t = Instant::now();
        let msg = options(target, probe_local, &id, rng.next_u64());
        probes += 1;
        // A real client retransmits for 32 s (Timer F); 10 s is plenty and bounds the test.
        if let Some((code, _)) =
            request(&probe, target, msg.as_bytes(), &id, Duration::from_secs(10))
        {
            answered += 1;
            worst = worst.max(t.elapsed());
            *probe_codes.entry(code).or_default() += 1;
        }
        rss_peak = rss_peak.max(vm_rss_kb(pid).unwrap_or(0));
        thread::sleep(Duration::from_millis(250));
    }
    let sent = flooder.join().map_err(|_| "flooder panicked")?;
    assert!(
        alive(pid),
        "sipterm died under the flood:\n{}",
        alice.recent_output()
    );

    // Audio still arrives: a media event with more packets received than before the flood.
    let after = alice.expect_event(
        "a media event after the flood with more packets received",
        |e| {
            e["event"] == "media"
                && e["call"] == call
                && e["received"].as_u64().unwrap_or(0) > received_before + 100
        },
        SIGNALLING,
    )?;
    // Let the flood's transactions run out (64*T1 = 6.4 s) before the last RSS sample.
    let answer = request(
        &probe,
        target,
        options(target, probe_local, "after-flood", 1).as_bytes(),
        "after-flood",
        Duration::from_secs(5),
    );
    stop.store(true, Ordering::Relaxed);
    let codes = counter.join().map_err(|_| "counter panicked")?;
    let rss_after = vm_rss_kb(pid).unwrap_or(0);
    let terminated = alice
        .history()
        .iter()
        .any(|e| e["event"] == "call" && e["call"] == call && e["state"] == "terminated");
    let incoming = alice
        .history()
        .iter()
        .filter(|e| e["event"] == "call" && e["state"] == "incoming")
        .count();
    let sip_events = alice.events_of("sip").len();
    println!(
        "flood: {sent} messages sent in 10 s; responses by code {codes:?}; {incoming} incoming-call \
         events; {sip_events} sip events read"
    );
    println!(
        "probe: {answered}/{probes} OPTIONS answered (codes {probe_codes:?}), slowest {worst:?}; \
         after the flood: {:?}",
        answer.as_ref().map(|a| a.0)
    );
    println!(
        "VmRSS: before {} KiB, peak {} KiB, after {} KiB; media before {received_before} \
         packets received, after: {after}",
        rss_before, rss_peak, rss_after
    );
    assert_eq!(
        answered, probes,
        "some OPTIONS probes got no answer during the flood"
    );
    assert_eq!(answer.map(|a| a.0), Some(200), "OPTIONS after the flood");
    assert!(!terminated, "the call ended during the flood");
    assert!(rss_peak < 200 * 1024, "VmRSS peak {rss_peak} KiB");
    // Every INVITE of the flood had a fresh Call-ID, all from one address: at most
    // MAX_RINGING_PER_SOURCE of them ring (phantom calls that would ring for 180 s).
    assert!(
        incoming <= MAX_RINGING_PER_SOURCE,
        "{incoming} flooded INVITEs became ringing calls"
    );

    // A real call from another address still rings after the flood (before, up to 15 phantom
    // calls filled the call table and a real caller got 486 for three minutes).
    bob.send(&format!("dial {}", alice.uri("alice")))?;
    let second = alice.expect_event(
        "bob's second call ringing at alice",
        |e| {
            e["event"] == "call"
                && e["state"] == "incoming"
                && e["remote"].as_str().is_some_and(|r| r.contains("bob"))
        },
        SIGNALLING,
    )?["call"]
        .clone();
    println!(
        "after the flood: bob's new call {second} rings at alice ({incoming} phantom calls ringing)"
    );

    // A plain `hangup` ends the conversation, not one of the ringing calls (phantom or bob's).
    alice.send("hangup")?;
    alice.expect_event(
        "the confirmed call terminated",
        |e| e["event"] == "call" && e["call"] == call && e["state"] == "terminated",
        SIGNALLING,
    )?;
    let wrong = alice
        .history()
        .iter()
        .any(|e| e["event"] == "call" && e["state"] == "terminated" && e["call"] != call);
    assert!(
        !wrong,
        "`hangup` also ended a ringing call: {:?}",
        alice.events_of("call")
    );
    bob.expect_event(
        "bob's first call terminated",
        |e| e["event"] == "call" && e["state"] == "terminated",
        SIGNALLING,
    )?;
    Ok(())
}

/// sipp's final count of one statistics row (`Successful call`, `Failed call`): its cumulative
/// column.
fn sipp_count(stdout: &str, row: &str) -> Option<u64> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with(row))?;
    line.split('|').nth(2)?.trim().parse().ok()
}

/// sipterm registered to a registrar that grants 4 s (a refresh every 2 s) while sipp floods it
/// with OPTIONS at 2,000/s for 8 s (default timers: each answered OPTIONS would be kept 32 s).
/// Every refresh during the flood succeeds, none fails, the registration stays `registered`,
/// and the flood itself is answered. Counts and timings are printed, not asserted.
#[test]
fn registration_refreshes_survive_an_options_flood() -> TestResult {
    use common::peers::Sipp;
    use common::process::{ChildGuard, Stdout};
    const RATE: u64 = 2000;
    const SECONDS: u64 = 8;

    let registrar_port = common::ports::free_udp_port()?;
    let _registrar = Sipp::uas(
        &Sipp::scenario("uas_registrar_expires4.xml"),
        registrar_port,
        &[],
    )?;
    let config = format!(
        "[[account]]\nname = \"reg\"\nuri = \"sip:reg@127.0.0.1\"\n\
         registrar = \"sip:127.0.0.1:{registrar_port}\"\nexpires = 60\ncodecs = [\"pcmu\"]\n"
    );
    let mut sipterm = Headless::spawn(
        "flood-reg",
        &HeadlessOptions {
            config_toml: Some(config),
            ..HeadlessOptions::default()
        },
    )?;
    let registered = |e: &serde_json::Value| {
        e["event"] == "registration" && e["state"] == "registered" && e["code"] == 200
    };
    let first = sipterm.expect_event("the first registration", registered, SIGNALLING)?;
    assert_eq!(
        first["expires"], 4,
        "the registrar's 4 s were taken: {first}"
    );
    let pid = sipterm.pid();
    let rss_before = vm_rss_kb(pid).ok_or("no VmRSS")?;

    let sipp_port = common::ports::free_udp_port()?;
    let sipp_dir = tempfile::Builder::new()
        .prefix("sipterm-sipp-flood-")
        .tempdir()?;
    let mut command = std::process::Command::new("sipp");
    command
        .current_dir(sipp_dir.path())
        .arg("-sf")
        .arg(Sipp::scenario("uac_options_flood.xml"))
        .args(["-i", "127.0.0.1", "-p", &sipp_port.to_string()])
        .args(["-r", &RATE.to_string(), "-m", &(RATE * SECONDS).to_string()])
        .args(["-nr", "-nostdin", "-timeout", "40s"])
        .arg(sipterm.listen.to_string());
    let mut sipp = ChildGuard::spawn("sipp-flood", command, Stdout::File, Some(sipp_dir.path()))
        .map_err(|e| format!("cannot start sipp (the Makefile installs it): {e}"))?;
    let flood_start = Instant::now();

    // Read events while the flood runs: every registration event, with when it came.
    let mut refreshes: Vec<Duration> = Vec::new();
    let mut others: Vec<serde_json::Value> = Vec::new();
    let mut rss_peak = rss_before;
    let status = loop {
        if let Some(status) = sipp.try_exit_status() {
            break status;
        }
        assert!(
            flood_start.elapsed() < Duration::from_secs(60),
            "sipp still flooding after 60 s"
        );
        // A timeout here only means no registration event in this slice.
        if let Ok(event) = sipterm.expect_event(
            "a registration event",
            |e| e["event"] == "registration",
            Duration::from_millis(250),
        ) {
            if registered(&event) {
                refreshes.push(flood_start.elapsed());
            } else {
                others.push(event);
            }
        }
        rss_peak = rss_peak.max(vm_rss_kb(pid).unwrap_or(0));
    };
    let flood_secs = flood_start.elapsed().as_secs_f64();
    assert!(
        alive(pid),
        "sipterm died in the flood:\n{}",
        sipterm.recent_output()
    );
    // One more refresh after the flood: the binding is still kept up.
    let after = sipterm.expect_event("a refresh after the flood", registered, SIGNALLING);
    let rss_after = vm_rss_kb(pid).unwrap_or(0);
    let sipp_out = std::fs::read_to_string(sipp.log_dir().join("stdout.log")).unwrap_or_default();
    let ok = sipp_count(&sipp_out, "Successful call").unwrap_or(0);
    let failed = sipp_count(&sipp_out, "Failed call").unwrap_or(0);
    println!(
        "registration under a flood: sipp sent {} OPTIONS at {RATE}/s, {ok} answered 200 \
         ({:.0}/s), {failed} failed, in {flood_secs:.1} s (sipp {status}); refreshes during the \
         flood at {refreshes:?}; other registration events {others:?}; VmRSS before {rss_before} \
         KiB, peak {rss_peak} KiB, after {rss_after} KiB",
        RATE * SECONDS,
        ok as f64 / flood_secs,
    );
    assert!(
        others.is_empty(),
        "the registration changed during the flood: {others:?}"
    );
    // A refresh every 2 s: an 8 s flood holds at least 3 (the debug build is slow to start).
    assert!(
        refreshes.len() >= 3,
        "only {} refreshes in {flood_secs:.1} s of flood: {refreshes:?}",
        refreshes.len()
    );
    after.map_err(|e| format!("no refresh after the flood: {e}"))?;
    assert!(ok > 0, "no OPTIONS of the flood was answered:\n{sipp_out}");
    Ok(())
}

// -------------------------------------------------------------------------------- garbage

/// (label, bytes, Call-ID to match the answer by ("" = none expected), the final codes allowed).
type GarbageCase = (
    &'static str,
    Vec<u8>,
    String,
    Option<std::ops::RangeInclusive<u16>>,
);

/// Malformed SIP at a live sipterm: each gets a 4xx where a response is possible, and nothing
/// crashes it; between the cases a well-formed OPTIONS still gets 200.
#[test]
fn garbage_sip_gets_400_or_nothing() -> TestResult {
    let bob = spawn("garbage-bob", "\"pcmu\"", Some(0), None)?;
    let target = bob.listen;
    let socket = udp()?;
    let local = socket.local_addr()?;
    let mut rng = Prng::new(99);
    let mut results = Vec::new();
    let probe = |label: &str, rng: &mut Prng| -> TestResult {
        let id = call_id(rng);
        let answer = request(
            &socket,
            target,
            options(target, local, &id, rng.next_u64()).as_bytes(),
            &id,
            Duration::from_secs(5),
        );
        assert_eq!(
            answer.map(|a| a.0),
            Some(200),
            "OPTIONS after {label}: {}",
            bob.recent_output()
        );
        assert!(alive(bob.pid()), "sipterm died after {label}");
        Ok(())
    };

    // (label, bytes, expected: Some(range) a response in it, None: no response needed)
    let id = call_id(&mut rng);
    let good = options(target, local, &id, 1);
    let mut cases: Vec<GarbageCase> = Vec::new();
    {
        // Truncated in the header section (after CSeq): no blank line.
        let cut = good.find("Content-Length").expect("CL");
        cases.push((
            "truncated headers",
            good[..cut].into(),
            id.clone(),
            Some(400..=400),
        ));
    }
    {
        let id = call_id(&mut rng);
        let text =
            options(target, local, &id, 2).replace("Content-Length: 0", "Content-Length: 500");
        cases.push((
            "Content-Length past the end",
            text.into_bytes(),
            id,
            Some(400..=400),
        ));
    }
    {
        let id = call_id(&mut rng);
        let text =
            options(target, local, &id, 3).replace("Content-Length: 0", "Content-Length: -7");
        cases.push((
            "negative Content-Length",
            text.into_bytes(),
            id,
            Some(400..=400),
        ));
    }
    {
        let id = call_id(&mut rng);
        let text = options(target, local, &id, 4).replace(
            "Content-Length: 0",
            "Content-Length: 99999999999999999999999",
        );
        cases.push((
            "huge Content-Length",
            text.into_bytes(),
            id,
            Some(400..=400),
        ));
    }
    cases.push(("binary junk", rng.bytes(1200), String::new(), None));
    cases.push(("zero bytes", vec![0u8; 1000], String::new(), None));
    cases.push(("an empty datagram", Vec::new(), String::new(), None));
    {
        // 10,000 short headers (about 50 KB, one UDP datagram) after CSeq: a 4xx/5xx.
        let id = call_id(&mut rng);
        let many: String = (0..10_000).map(|_| "X:1\r\n").collect();
        let text = options(target, local, &id, 5)
            .replace("CSeq: 1 OPTIONS\r\n", &format!("CSeq: 1 OPTIONS\r\n{many}"));
        cases.push(("10,000 headers", text.into_bytes(), id, Some(400..=513)));
    }
    {
        // The same before Call-ID and CSeq: the bounded scan for a 400 cannot find them, so
        // silence is right; it must just survive.
        let id = call_id(&mut rng);
        let many: String = (0..10_000).map(|_| "X:1\r\n").collect();
        let text = options(target, local, &id, 10).replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{many}"),
        );
        cases.push((
            "10,000 headers before CSeq",
            text.into_bytes(),
            String::new(),
            None,
        ));
    }
    {
        let id = call_id(&mut rng);
        let text = options(target, local, &id, 6).replace("SIP/2.0\r\n", "SIP/7.0\r\n");
        cases.push(("SIP/7.0", text.into_bytes(), id, Some(400..=505)));
    }
    {
        // A response nobody asked for.
        let text = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {target};branch=z9hG4bKnothing\r\n\
             From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: stray\r\n\
             CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        cases.push(("a stray 200", text.into_bytes(), String::new(), None));
    }
    {
        // Broken SDP: the call must not ring; 488 (or 400).
        let id = call_id(&mut rng);
        let text = invite(
            target,
            local,
            &id,
            7,
            "application/sdp",
            "v=0\r\nthis is not SDP\r\nm=audio x\r\n",
        );
        cases.push((
            "an INVITE with broken SDP",
            text.into_bytes(),
            id,
            Some(400..=488),
        ));
    }
    {
        // SDP with no codec in common.
        let id = call_id(&mut rng);
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40000 RTP/AVP 99\r\na=rtpmap:99 nonsense/1234\r\n";
        let text = invite(target, local, &id, 8, "application/sdp", sdp);
        cases.push((
            "an INVITE with no common codec",
            text.into_bytes(),
            id,
            Some(488..=488),
        ));
    }

    for (label, bytes, id, expected) in cases {
        let answer = if id.is_empty() {
            socket.send_to(&bytes, target)?;
            None
        } else {
            request(&socket, target, &bytes, &id, Duration::from_secs(3))
        };
        println!(
            "{label} ({} bytes): {:?}",
            bytes.len(),
            answer
                .as_ref()
                .map(|a| a.1.lines().next().unwrap_or_default().to_owned())
        );
        if let Some(range) = expected {
            let code = answer.as_ref().map(|a| a.0);
            assert!(
                code.is_some_and(|c| range.contains(&c)),
                "{label}: expected a final response in {range:?}, got {code:?}"
            );
        }
        results.push(label);
        probe(label, &mut rng)?;
    }
    // Nothing above may have rung.
    let mut bob = bob;
    let _ = bob.expect_event("(draining)", |_| false, Duration::from_millis(300));
    let rang = bob.events_of("call").len();
    assert_eq!(rang, 0, "garbage made calls: {:?}", bob.events_of("call"));

    // Over TCP: a 1 MB line must not be buffered without bound; the connection gets closed (or
    // answered) and the process stays up and serves a fresh connection.
    let rss_before = vm_rss_kb(bob.pid()).unwrap_or(0);
    let mut stream = TcpStream::connect(target)?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let head = format!(
        "OPTIONS sip:bob@{target} SIP/2.0\r\nVia: SIP/2.0/TCP {local};branch=z9hG4bKtcp1\r\nX-Long: "
    );
    let mut written = 0usize;
    let mut write_error = None;
    if let Err(e) = stream.write_all(head.as_bytes()) {
        write_error = Some(e);
    }
    let chunk = vec![b'a'; 64 * 1024];
    while write_error.is_none() && written < 1024 * 1024 {
        match stream.write(&chunk) {
            Ok(n) => written += n,
            Err(e) => write_error = Some(e),
        }
    }
    let _ = stream.write_all(b"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    let mut reply = Vec::new();
    let read = stream.read_to_end(&mut reply);
    let rss_after = vm_rss_kb(bob.pid()).unwrap_or(0);
    println!(
        "TCP 1 MB line: wrote {written} bytes (write error: {write_error:?}); read {:?} -> {:?}; \
         VmRSS {rss_before} -> {rss_after} KiB",
        read.as_ref().map(|_| reply.len()),
        String::from_utf8_lossy(&reply).lines().next()
    );
    assert!(
        read.is_ok() || write_error.is_some(),
        "the connection with a 1 MB line stayed open without an answer: {read:?}"
    );
    assert!(alive(bob.pid()), "sipterm died on a 1 MB TCP line");
    // A fresh TCP connection still gets OPTIONS answered.
    let mut stream = TcpStream::connect(target)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let tcp_local = stream.local_addr()?;
    let msg = options(target, tcp_local, "tcp-after", 9).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    stream.write_all(msg.as_bytes())?;
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf)?;
    let text = String::from_utf8_lossy(&buf[..n]);
    assert_eq!(
        status_of(&text),
        Some(200),
        "TCP OPTIONS after the 1 MB line: {text}"
    );
    Ok(())
}

/// Junk RTP and RTCP at the RTP ports of a live call: the call goes on (RTP keeps coming,
/// no `terminated`), and a BYE ends it normally.
#[test]
fn junk_rtp_and_rtcp_during_a_call() -> TestResult {
    let mut bob = spawn("rtpjunk-bob", "\"pcmu\"", Some(0), None)?;
    let target = bob.listen;
    let sip = udp()?;
    let local = sip.local_addr()?;
    let rtp = udp()?;
    let rtp_port = rtp.local_addr()?.port();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    );
    let id = "rtp-junk-call";
    let (code, ok) = request(
        &sip,
        target,
        invite(target, local, id, 0x100, "application/sdp", &sdp).as_bytes(),
        id,
        SIGNALLING,
    )
    .ok_or("no answer to the INVITE")?;
    assert_eq!(code, 200, "INVITE: {ok}");
    let header = |name: &str| {
        ok.lines()
            .find(|l| {
                l.to_ascii_lowercase()
                    .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            })
            .map(|l| l.split_once(':').expect("colon").1.trim().to_owned())
    };
    let to = header("To").ok_or("no To")?;
    let bob_rtp: u16 = ok
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .ok_or("no m=audio in the 200")?;
    let ack = format!(
        "ACK sip:victim@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKack1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:flood@{local}>;tag=f100\r\nTo: {to}\r\nCall-ID: {id}\r\n\
         CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    sip.send_to(ack.as_bytes(), target)?;
    bob.expect_call_state("confirmed", SIGNALLING)?;

    let count_rtp = |for_how_long: Duration| -> u64 {
        let start = Instant::now();
        let mut n = 0;
        let mut buf = [0u8; 2048];
        while start.elapsed() < for_how_long {
            if let Ok((len, _)) = rtp.recv_from(&mut buf)
                && len >= 12
                && buf[0] >> 6 == 2
            {
                n += 1;
            }
        }
        n
    };
    let before = count_rtp(Duration::from_secs(1));
    assert!(before > 10, "bob sends no RTP ({before} packets in 1 s)");

    // The junk, from the RTP socket (the address bob sends to) and from a stranger.
    let stranger = udp()?;
    let mut rng = Prng::new(5);
    let rtp_to = SocketAddr::from(([127, 0, 0, 1], bob_rtp));
    let rtcp_to = SocketAddr::from(([127, 0, 0, 1], bob_rtp + 1));
    let mut junk: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x80],
        vec![0x80; 11],
        // v2, CC=15 but no CSRC list.
        vec![0x8f, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        // Extension bit with a huge extension length and nothing behind it.
        vec![
            0x90, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff,
        ],
        // Padding bit with a padding count larger than the packet.
        {
            let mut p = vec![0xa0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0, 1];
            p.extend([0u8; 20]);
            p.push(200);
            p
        },
        // Payload type 127 and a wild sequence jump, same SSRC as a "real" stream.
        {
            let mut p = vec![0x80, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1];
            p.extend([0x55u8; 160]);
            p
        },
        vec![0xffu8; 1500],
        rng.bytes(9000),
    ];
    // PCMU packets with jumping sequence numbers and timestamps (valid, but hostile to stats).
    for k in 0..20u32 {
        let seq = (k.wrapping_mul(7919) & 0xffff) as u16;
        let ts = k.wrapping_mul(0x1234_5678);
        let mut p = vec![0x80, 0];
        p.extend(seq.to_be_bytes());
        p.extend(ts.to_be_bytes());
        p.extend(0xcafe_f00du32.to_be_bytes());
        p.extend([0xffu8; 160]);
        junk.push(p);
    }
    for _ in 0..200 {
        let n = (rng.next_u64() % 300) as usize;
        let mut p = rng.bytes(n);
        if let Some(b) = p.first_mut() {
            *b = 0x80 | (*b & 0x3f);
        }
        junk.push(p);
    }
    let mut rtcp_junk: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x80, 200],
        // SR with a length field far past the end.
        vec![0x80, 200, 0xff, 0xff, 0, 0, 0, 1],
        // RR claiming 31 report blocks, with none.
        vec![0x9f, 201, 0, 1, 0, 0, 0, 1],
        // BYE from a stranger SSRC (must not end the SIP call).
        vec![0x81, 203, 0, 1, 0xde, 0xad, 0xbe, 0xef],
        // Length zero, repeated (a parser that does not advance would spin).
        [0x80u8, 201, 0, 0].repeat(50),
    ];
    for _ in 0..200 {
        let n = (rng.next_u64() % 200) as usize;
        let mut p = rng.bytes(n);
        if p.len() >= 2 {
            p[0] = 0x80 | (p[0] & 0x3f);
            p[1] = 200 + (p[1] % 5);
        }
        rtcp_junk.push(p);
    }
    for round in 0..3 {
        for p in &junk {
            let from = if round == 1 { &stranger } else { &rtp };
            let _ = from.send_to(p, rtp_to);
        }
        for p in &rtcp_junk {
            let _ = rtp.send_to(p, rtcp_to);
            let _ = stranger.send_to(p, rtcp_to);
        }
    }
    let after = count_rtp(Duration::from_secs(2));
    println!(
        "RTP from bob: {before} packets in the second before the junk, {after} in the 2 s after"
    );
    assert!(
        alive(bob.pid()),
        "sipterm died on junk RTP/RTCP:\n{}",
        bob.recent_output()
    );
    assert!(
        after > 20,
        "bob stopped sending RTP after the junk ({after} packets in 2 s)"
    );
    let _ = bob.expect_event("(draining)", |_| false, Duration::from_millis(200));
    assert!(
        !bob.events_of("call")
            .iter()
            .any(|e| e["state"] == "terminated"),
        "the call ended on junk RTP/RTCP: {:?}",
        bob.events_of("call")
    );
    if let Some(media) = bob.events_of("media").last() {
        println!("bob's last media event: {media}");
    }

    let bye = format!(
        "BYE sip:victim@{target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKbye1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:flood@{local}>;tag=f100\r\nTo: {to}\r\nCall-ID: {id}\r\n\
         CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let answer = request(
        &sip,
        target,
        bye.as_bytes(),
        "CSeq: 2 BYE",
        Duration::from_secs(5),
    );
    assert_eq!(answer.map(|a| a.0), Some(200), "BYE");
    bob.expect_call_state("terminated", SIGNALLING)?;
    Ok(())
}

/// The same bound in virtual time (sans-IO UA): of 40 INVITEs with fresh Call-IDs that nobody
/// answers or cancels, all from one address, at most MAX_RINGING_PER_SOURCE ring (the rest get
/// 486), and each ringing call ends
/// with 480 after the ring timeout (180 s), so the phone takes calls again afterwards.
#[test]
fn unanswered_incoming_calls_are_bounded_and_time_out() {
    use common::pair::{B_ADDR, Pair, Side};
    use sipterm::sip::ua::CallState;
    let mut pair = Pair::new();
    let stranger: SocketAddr = "127.0.0.1:5999".parse().expect("addr");
    let bob: SocketAddr = B_ADDR.parse().expect("addr");
    let mut rng = Prng::new(3);
    for i in 0..40u64 {
        let id = call_id(&mut rng);
        let text = invite(bob, stranger, &id, 0x1000 + i, "application/sdp", "");
        pair.inject(stranger, bob, text.as_bytes());
    }
    pair.run_secs(1.0);
    // Calls (distinct Call-IDs) answered with `code`; retransmissions count once.
    let codes = |pair: &Pair, code: u16| {
        pair.wire
            .unrouted
            .iter()
            .filter_map(|r| r.response().filter(|r| r.code == code))
            .filter_map(|r| r.headers.get("Call-ID").map(str::to_owned))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    let ringing = pair
        .b
        .call_states()
        .iter()
        .filter(|s| **s == CallState::Incoming)
        .count();
    println!("40 INVITEs: {ringing} ring, {} got 486", codes(&pair, 486));
    assert_eq!(ringing, MAX_RINGING_PER_SOURCE, "ringing calls");
    assert_eq!(
        codes(&pair, 486),
        40 - MAX_RINGING_PER_SOURCE,
        "486 Busy Here"
    );
    // Three minutes later (RING_TIMEOUT) nobody answered: every ringing call ended with 480.
    pair.run_secs(181.0);
    let ended = pair
        .b
        .call_codes()
        .iter()
        .filter(|(s, c)| *s == CallState::Terminated && *c == Some(480))
        .count();
    println!(
        "after 181 s: {ended} ended with 480, {} 480s sent",
        codes(&pair, 480)
    );
    assert_eq!(
        ended, MAX_RINGING_PER_SOURCE,
        "calls ended by the ring timeout"
    );
    assert_eq!(
        codes(&pair, 480),
        MAX_RINGING_PER_SOURCE,
        "calls answered 480"
    );
    // And bob takes a real call again, answered and kept past the ring timeout.
    pair.dial(Side::A, pair.b.uri(), 40_000);
    pair.run_secs(1.0);
    pair.answer(Side::B, 40_002);
    pair.run_secs(190.0);
    assert_eq!(pair.a.last_state(), Some(CallState::Confirmed), "{pair:?}");
    assert_eq!(pair.b.last_state(), Some(CallState::Confirmed), "{pair:?}");
}
