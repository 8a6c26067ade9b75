//! Exports of the SIP trace (issue 5): two headless sipterms on 127.0.0.1 call each other with
//! `--ladder-out` and `--pcap-out`; at exit the PlantUML ladder must hold the call's arrows
//! between the two real addresses, and tshark (installed by the Makefile; the test fails
//! without it) must read every message of the pcap back as SIP.
//!
//! Run with `--nocapture` to see the ladder and the tshark counts.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::headless::{Headless, HeadlessOptions};

type TestResult = Result<(), Box<dyn std::error::Error>>;
/// What tshark says of one packet: IP and UDP checksum status, time since the epoch.
type Checks = Vec<(String, String, f64)>;

/// Signalling waits: generous, a debug build on two shared cores.
const SIGNALLING: Duration = Duration::from_secs(10);

fn spawn(
    name: &str,
    dir: &Path,
    auto_answer_ms: Option<u64>,
) -> Result<Headless, common::HarnessError> {
    Headless::spawn(
        name,
        &HeadlessOptions {
            auto_answer_ms,
            extra_args: vec![
                "--ladder-out".into(),
                dir.join(format!("{name}.puml")).display().to_string(),
                "--pcap-out".into(),
                dir.join(format!("{name}.pcap")).display().to_string(),
            ],
            ..HeadlessOptions::default()
        },
    )
}

/// Runs tshark on a pcap: one (method, status code) pair per SIP packet it decoded.
fn tshark_sip(pcap: &Path) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let output = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-Y",
            "sip",
            "-T",
            "fields",
            "-e",
            "sip.Method",
            "-e",
            "sip.Status-Code",
        ])
        .output()
        .map_err(|e| format!("cannot run tshark (the Makefile installs it): {e}"))?;
    if !output.status.success() {
        return Err(format!("tshark failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let mut fields = line.split('\t');
            let method = fields.next().unwrap_or_default().to_string();
            let code = fields.next().unwrap_or_default().to_string();
            (method, code)
        })
        .collect())
}

/// Counts of what headless printed as `sip` events, keyed like tshark's output.
fn sip_event_counts(sipterm: &Headless) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in sipterm.events_of("sip") {
        let summary = event["summary"].as_str().unwrap_or_default();
        let key = match summary.strip_prefix("SIP/2.0 ") {
            Some(status) => status.split(' ').next().unwrap_or_default().to_string(),
            None => summary.split(' ').next().unwrap_or_default().to_string(),
        };
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

#[test]
fn a_call_between_two_sipterms_exports_ladder_and_pcap() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut caller = spawn("caller", dir.path(), None)?;
    let mut callee = spawn("callee", dir.path(), Some(300))?;
    let target = callee.uri("callee");
    caller.send(&format!("dial {target}"))?;
    caller.expect_call_state("confirmed", SIGNALLING)?;
    callee.expect_call_state("confirmed", SIGNALLING)?;
    caller.send("hangup")?;
    caller.expect_call_state("terminated", SIGNALLING)?;
    callee.expect_call_state("terminated", SIGNALLING)?;
    // The BYE's 200 OK is in the caller's trace once its own `terminated` is out; give the
    // callee's trace of it the same chance before quitting.
    caller
        .expect_event(
            "the 200 OK to BYE",
            |e| {
                e["event"] == "sip"
                    && e["summary"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("SIP/2.0 200"))
                    && e["dir"] == "in"
            },
            SIGNALLING,
        )
        .ok();
    caller.quit(SIGNALLING).ok_or("caller did not exit")?;
    callee.quit(SIGNALLING).ok_or("callee did not exit")?;

    let (a, b) = (caller.listen.to_string(), callee.listen.to_string());
    let ladder = std::fs::read_to_string(dir.path().join("caller.puml"))?;
    println!("caller's ladder:\n{ladder}");
    assert!(ladder.starts_with("@startuml\n"), "{ladder}");
    assert!(ladder.trim_end().ends_with("@enduml"), "{ladder}");
    assert!(
        ladder.contains(&format!("participant \"{a}\" as A")),
        "{ladder}"
    );
    assert!(
        ladder.contains(&format!("participant \"{b}\" as B")),
        "{ladder}"
    );
    let arrows: Vec<&str> = ladder.lines().filter(|l| l.contains(" -> ")).collect();
    let position = |arrow: &str| arrows.iter().position(|l| l.starts_with(arrow));
    let invite = position("A -> B : INVITE sip:callee@").ok_or("no INVITE arrow A -> B")?;
    let ringing = position("B -> A : 180 Ringing").ok_or("no 180 Ringing arrow B -> A")?;
    let ok = position("B -> A : 200 OK").ok_or("no 200 OK arrow B -> A")?;
    let ack = position("A -> B : ACK ").ok_or("no ACK arrow A -> B")?;
    let bye = position("A -> B : BYE ").ok_or("no BYE arrow A -> B")?;
    assert!(
        invite < ringing && ringing < ok && ok < ack && ack < bye,
        "{ladder}"
    );
    // Every message the caller traced is one arrow.
    assert_eq!(arrows.len(), caller.events_of("sip").len(), "{ladder}");

    // The callee's ladder is the mirror: its address first, the INVITE comes in.
    let callee_ladder = std::fs::read_to_string(dir.path().join("callee.puml"))?;
    assert!(
        callee_ladder.contains(&format!("participant \"{b}\" as A")),
        "{callee_ladder}"
    );
    assert!(
        callee_ladder.contains("B -> A : INVITE sip:callee@"),
        "{callee_ladder}"
    );
    assert!(
        callee_ladder.contains("A -> B : 180 Ringing"),
        "{callee_ladder}"
    );

    for (name, sipterm) in [("caller", &caller), ("callee", &callee)] {
        let packets = tshark_sip(&dir.path().join(format!("{name}.pcap")))?;
        let mut read_back: BTreeMap<String, usize> = BTreeMap::new();
        for (method, code) in &packets {
            let key = if method.is_empty() { code } else { method };
            *read_back.entry(key.clone()).or_insert(0) += 1;
        }
        let traced = sip_event_counts(sipterm);
        println!(
            "{name}: tshark read {} SIP packets: {read_back:?}",
            packets.len()
        );
        assert_eq!(read_back, traced, "{name}: tshark vs the sip events");
        for expected in ["INVITE", "180", "200", "ACK", "BYE"] {
            assert!(
                read_back.contains_key(expected),
                "{name}: no {expected} in the pcap"
            );
        }
    }
    Ok(())
}

/// One UDP datagram of a pcap written by sipterm (LINKTYPE_RAW, IPv4 or IPv6).
struct Datagram {
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    payload: Vec<u8>,
}

/// Reads a classic little-endian pcap of raw IP packets: every UDP datagram in it.
fn read_pcap(path: &Path) -> Result<Vec<Datagram>, Box<dyn std::error::Error>> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    let bytes = std::fs::read(path)?;
    let u32_at = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let be16 = |b: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
    };
    if u32_at(&bytes, 0) != Some(0xa1b2_c3d4) || u32_at(&bytes, 20) != Some(101) {
        return Err("not a LINKTYPE_RAW pcap".into());
    }
    let mut out = Vec::new();
    let mut at = 24;
    while at < bytes.len() {
        let len = u32_at(&bytes, at + 8).ok_or("truncated record header")? as usize;
        let packet = bytes
            .get(at + 16..at + 16 + len)
            .ok_or("truncated packet")?;
        at += 16 + len;
        let (src_ip, dst_ip, udp) = match packet.first().map(|b| b >> 4) {
            Some(4) => {
                let ihl = usize::from(packet[0] & 0x0f) * 4;
                let ip = |o: usize| -> Option<IpAddr> {
                    let o: [u8; 4] = packet.get(o..o + 4)?.try_into().ok()?;
                    Some(IpAddr::V4(Ipv4Addr::from(o)))
                };
                (ip(12), ip(16), packet.get(ihl..))
            }
            Some(6) => {
                let ip = |o: usize| -> Option<IpAddr> {
                    let o: [u8; 16] = packet.get(o..o + 16)?.try_into().ok()?;
                    Some(IpAddr::V6(Ipv6Addr::from(o)))
                };
                (ip(8), ip(24), packet.get(40..))
            }
            _ => (None, None, None),
        };
        let (Some(src_ip), Some(dst_ip), Some(udp)) = (src_ip, dst_ip, udp) else {
            return Err("a packet that is not IPv4/IPv6".into());
        };
        let (Some(sport), Some(dport)) = (be16(udp, 0), be16(udp, 2)) else {
            return Err("a packet without a UDP header".into());
        };
        out.push(Datagram {
            src: SocketAddr::new(src_ip, sport),
            dst: SocketAddr::new(dst_ip, dport),
            payload: udp.get(8..).unwrap_or_default().to_vec(),
        });
    }
    Ok(out)
}

/// RTP (RFC 3550 version 2, not an RTCP packet type) or RTCP (types 200-204).
fn media_kind(payload: &[u8]) -> Option<&'static str> {
    let (first, second) = (*payload.first()?, *payload.get(1)?);
    if first >> 6 != 2 {
        return None;
    }
    Some(if (200..=204).contains(&second) {
        "rtcp"
    } else {
        "rtp"
    })
}

/// `--pcap-out` holds the call's media, not only its SIP: RTP both ways (as many packets
/// out as the caller's last `media` event says it sent), RTCP, and tshark finds the RTP
/// streams from the SDP in the same file (what Wireshark's RTP player needs).
#[test]
fn pcap_out_holds_rtp_and_rtcp_of_both_directions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut caller = spawn("caller", dir.path(), None)?;
    let mut callee = spawn("callee", dir.path(), Some(0))?;
    caller.send(&format!("dial {}", callee.uri("callee")))?;
    caller.expect_call_state("confirmed", SIGNALLING)?;
    // A media report (every 2 s) shows packets went both ways; then end the call.
    caller.expect_event(
        "a media report with packets both ways",
        |e| {
            e["event"] == "media"
                && e["sent"].as_u64().is_some_and(|n| n > 0)
                && e["received"].as_u64().is_some_and(|n| n > 0)
        },
        SIGNALLING,
    )?;
    caller.send("hangup")?;
    caller.expect_call_state("terminated", SIGNALLING)?;
    callee.expect_call_state("terminated", SIGNALLING)?;
    // The final media report comes as the media task stops (before `terminated`).
    let last = caller
        .events_of("media")
        .last()
        .copied()
        .cloned()
        .ok_or("no media report")?;
    caller.quit(SIGNALLING).ok_or("caller did not exit")?;
    callee.quit(SIGNALLING).ok_or("callee did not exit")?;
    let (sent, received) = (
        last["sent"].as_u64().unwrap_or(0),
        last["received"].as_u64().unwrap_or(0),
    );

    let pcap = dir.path().join("caller.pcap");
    let datagrams = read_pcap(&pcap)?;
    let sip_port = caller.listen.port();
    let mut flows: BTreeMap<(String, String, &str), usize> = BTreeMap::new();
    for d in &datagrams {
        if d.src.port() == sip_port || d.dst.port() == sip_port {
            continue;
        }
        if let Some(kind) = media_kind(&d.payload) {
            *flows
                .entry((d.src.to_string(), d.dst.to_string(), kind))
                .or_insert(0) += 1;
        }
    }
    println!(
        "caller's pcap: {} datagrams; media flows {flows:?}",
        datagrams.len()
    );
    println!("caller's last media report: {last}");
    let rtp: Vec<(&(String, String, &str), &usize)> =
        flows.iter().filter(|(k, _)| k.2 == "rtp").collect();
    assert_eq!(
        rtp.len(),
        2,
        "one RTP flow each way, nothing else: {flows:?}"
    );
    // The media event names both ends of the caller's RTP.
    let (local, remote) = (
        last["local"]
            .as_str()
            .ok_or("no local in the media event")?
            .to_owned(),
        last["remote"]
            .as_str()
            .ok_or("no remote in the media event")?
            .to_owned(),
    );
    let count = |src: &str, dst: &str| {
        flows
            .get(&(src.to_owned(), dst.to_owned(), "rtp"))
            .copied()
            .unwrap_or(0)
    };
    let sent_here = count(&local, &remote);
    let received_here = count(&remote, &local);
    println!(
        "{local} -> {remote}: {} RTP; back: {}",
        sent_here, received_here
    );
    assert_eq!(
        sent_here as u64, sent,
        "every RTP packet the caller sent is in its pcap: {flows:?}, last report {last}"
    );
    assert!(
        received_here as u64 >= received && received > 25,
        "the callee's RTP is in the caller's pcap: {flows:?}, last report {last}"
    );
    assert!(
        flows.iter().any(|(k, n)| k.2 == "rtcp" && *n > 0),
        "RTCP (at least the BYE) is in the pcap: {flows:?}"
    );

    // Two default sipterms negotiate SRTP (SDES over UDP): the keys are in the SDP, so the
    // pcap and the ladder show where they were, masked, never the keys themselves.
    for file in ["caller.pcap", "callee.pcap", "caller.puml", "callee.puml"] {
        assert_keys_masked(&dir.path().join(file), file.ends_with(".pcap"))?;
    }

    // tshark sets the RTP streams up from the SDP in the same file, as Wireshark does for
    // its RTP player: both SSRCs decode as RTP.
    let output = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-Y", "rtp", "-T", "fields", "-e", "rtp.ssrc"])
        .output()
        .map_err(|e| format!("cannot run tshark (the Makefile installs it): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let ssrcs: std::collections::BTreeSet<&str> = text.lines().collect();
    println!(
        "tshark: {} RTP packets, SSRCs {ssrcs:?}",
        text.lines().count()
    );
    assert_eq!(ssrcs.len(), 2, "tshark decodes both RTP streams: {ssrcs:?}");
    assert_eq!(
        text.lines().count(),
        rtp.iter().map(|(_, n)| **n).sum::<usize>(),
        "tshark decodes every RTP packet"
    );
    Ok(())
}

/// Every `inline:` (an SDES key parameter) in `path` is followed by `REDACTED...`; with
/// `expect_some`, there is at least one (the check looked at real SDP).
fn assert_keys_masked(path: &Path, expect_some: bool) -> TestResult {
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let keys: Vec<&str> = text.split("inline:").skip(1).collect();
    println!("{}: {} inline: parameters", path.display(), keys.len());
    assert!(
        !expect_some || !keys.is_empty(),
        "{}: no a=crypto at all (is SRTP off?)",
        path.display()
    );
    for key in keys {
        assert!(
            key.starts_with("REDACTED"),
            "{}: an SRTP key in clear: inline:{}",
            path.display(),
            key.chars().take(40).collect::<String>()
        );
    }
    Ok(())
}

/// tshark's verdict on each packet's checksums and its timestamp: (ip, udp, epoch seconds).
fn tshark_checks(pcap: &Path) -> Result<Checks, Box<dyn std::error::Error>> {
    let output = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .args([
            "-T",
            "fields",
            "-e",
            "ip.checksum.status",
            "-e",
            "udp.checksum.status",
        ])
        .args(["-e", "frame.time_epoch"])
        .output()
        .map_err(|e| format!("cannot run tshark (the Makefile installs it): {e}"))?;
    if !output.status.success() {
        return Err(format!("tshark failed: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or_default().to_string();
            (field(0), field(1), field(2).parse().unwrap_or(0.0))
        })
        .collect())
}

#[test]
fn pcap_of_ipv4_and_ipv6_messages_decodes_with_good_checksums_and_times() -> TestResult {
    use sipterm::event::Direction;
    use sipterm::export::{Record, pcap};
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    let start = UNIX_EPOCH + Duration::from_micros(1_750_000_000_250_000);
    let invite = |host: &str| {
        format!(
            "INVITE sip:bob@{host} SIP/2.0\r\nVia: SIP/2.0/UDP {host};branch=z9hG4bK1\r\n\
             From: <sip:a@{host}>;tag=1\r\nTo: <sip:bob@{host}>\r\nCall-ID: x@{host}\r\n\
             CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 1\r\n\r\nx"
        )
    };
    // Odd-length payload: the UDP checksum pads it.
    let ok = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
              From: <sip:a@h>;tag=1\r\nTo: <sip:bob@h>;tag=2\r\nCall-ID: x@h\r\n\
              CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let record = |millis: u64,
                  dir,
                  local: &str,
                  peer: &str,
                  raw: String|
     -> Result<Record, Box<dyn std::error::Error>> {
        Ok(Record {
            time: start + Duration::from_millis(millis),
            dir,
            local: local.parse()?,
            peer: peer.parse()?,
            raw: Arc::from(raw.into_bytes()),
        })
    };
    let records = [
        record(
            0,
            Direction::Out,
            "127.0.0.1:5062",
            "127.0.0.1:5060",
            invite("127.0.0.1"),
        )?,
        record(
            5,
            Direction::In,
            "127.0.0.1:5062",
            "127.0.0.1:5060",
            ok.to_string(),
        )?,
        record(
            10,
            Direction::Out,
            "[::1]:5062",
            "[::1]:5070",
            invite("[::1]"),
        )?,
        record(
            15,
            Direction::In,
            "[::1]:5062",
            "[::1]:5070",
            ok.to_string(),
        )?,
    ];
    let all: Vec<&Record> = records.iter().collect();
    let (bytes, written) = pcap::render(&all);
    assert_eq!(written, 4);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("both.pcap");
    std::fs::write(&file, bytes)?;

    let sip = tshark_sip(&file)?;
    println!("tshark SIP fields: {sip:?}");
    assert_eq!(
        sip,
        [("INVITE", ""), ("", "200"), ("INVITE", ""), ("", "200")]
            .map(|(m, c)| (m.to_string(), c.to_string()))
    );
    let checks = tshark_checks(&file)?;
    println!("tshark checksum status (ip, udp, time): {checks:?}");
    assert_eq!(checks.len(), 4);
    // Wireshark's checksum status: 1 = good (0 = bad, 2 = unverified). IPv6 has no IP checksum.
    for (i, (ip, udp, _)) in checks.iter().enumerate() {
        if i < 2 {
            assert_eq!(ip, "1", "packet {i}: IPv4 header checksum");
        }
        assert_eq!(udp, "1", "packet {i}: UDP checksum");
    }
    let epoch = start.duration_since(UNIX_EPOCH)?.as_secs_f64();
    for (i, (_, _, time)) in checks.iter().enumerate() {
        let expected = epoch + 0.005 * i as f64;
        assert!(
            (time - expected).abs() < 1e-4,
            "packet {i}: time {time} vs {expected}"
        );
    }
    Ok(())
}
