//! SRTP with SDES keys between real processes: two headless sipterms with every pairing of the
//! account's `srtp` policy, a sipp peer that answers without keys, and baresip's srtp module.
//!
//! Proof that media is encrypted on the wire: the mandatory call runs under a `dumpcap` capture
//! of the loopback interface (installed with tshark by the Makefile; capturing needs root or
//! CAP_NET_RAW, as on CI). PCMU payloads are decoded from the capture: in a plain call they hold
//! the sent tone, in an SRTP call they are noise and carry the 10-byte authentication tag.
//!
//! Run with `--nocapture` to see the figures.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::headless::{Headless, HeadlessOptions, read_wav, sine, write_wav};
use common::peers::{Baresip, BaresipConfig, Sipp};
use common::ports::free_udp_port;
use common::process::{ChildGuard, Stdout};
use serde_json::Value;
use sipterm::media::codec::g711::ulaw_to_linear;
use sipterm::media::tones::{dominant_frequency, goertzel_power, rms};

const CALLER_TONE: f32 = 440.0;
const CALLEE_TONE: f32 = 1000.0;
const AMPLITUDE: f32 = 8000.0;
const RATE: u32 = 8000;
const SIGNALLING: Duration = Duration::from_secs(10);

type TestResult = Result<(), Box<dyn std::error::Error>>;
/// A UDP datagram from the capture: destination port and payload.
type Datagram = (u16, Vec<u8>);
/// What the wire showed of one RTP stream: packet lengths, packet count, tone share.
type WireView = (HashSet<usize>, usize, f32);

fn config(name: &str, srtp: Option<&str>) -> String {
    // Debug level: the log file then holds every SIP message (with its keys masked).
    let mut text = format!(
        "[log]\nlevel = \"debug\"\n[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@127.0.0.1\"\ncodecs = [\"pcmu\"]\n"
    );
    if let Some(srtp) = srtp {
        text.push_str(&format!("srtp = \"{srtp}\"\n"));
    }
    text
}

/// A headless sipterm sending `tone` and recording to `<dir>/<name>-out.wav`.
fn start(
    dir: &Path,
    name: &str,
    srtp: Option<&str>,
    tone: f32,
    auto_answer: bool,
) -> Result<(Headless, PathBuf), Box<dyn std::error::Error>> {
    let input = dir.join(format!("{name}-in.wav"));
    write_wav(&input, RATE, &sine(tone, RATE, 20.0, AMPLITUDE))?;
    let out = dir.join(format!("{name}-out.wav"));
    let sipterm = Headless::spawn(
        name,
        &HeadlessOptions {
            audio_in: Some(input),
            audio_out: Some(out.clone()),
            auto_answer_ms: auto_answer.then_some(0),
            config_toml: Some(config(name, srtp)),
            extra_args: Vec::new(),
            ..HeadlessOptions::default()
        },
    )?;
    Ok((sipterm, out))
}

fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("sipterm-srtp-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// A `media` event with at least `packets` received (they come every 2 s).
fn wait_media(side: &mut Headless, packets: u64) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(side.expect_event(
        &format!("a media event with >= {packets} packets received"),
        |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) >= packets,
        SIGNALLING,
    )?)
}

/// Dials, both sides reach `confirmed`, then both report media; returns (caller, callee)
/// media events.
fn call(
    caller: &mut Headless,
    callee: &mut Headless,
) -> Result<(Value, Value), Box<dyn std::error::Error>> {
    caller.send(&format!("dial {}", callee.uri("callee")))?;
    caller.expect_call_state("confirmed", SIGNALLING)?;
    callee.expect_call_state("confirmed", SIGNALLING)?;
    let a = wait_media(caller, 75)?;
    let b = wait_media(callee, 75)?;
    println!("{}: {a}\n{}: {b}", caller.name(), callee.name());
    Ok((a, b))
}

fn hang_up(caller: &mut Headless, callee: &mut Headless) -> TestResult {
    caller.send("hangup")?;
    caller.expect_call_state("terminated", SIGNALLING)?;
    callee.expect_call_state("terminated", SIGNALLING)?;
    Ok(())
}

fn assert_encrypted(media: &Value, encrypted: bool) {
    assert_eq!(media["encrypted"], encrypted, "{media}");
    if encrypted {
        assert_eq!(media["srtp"]["suite"], "AES_CM_128_HMAC_SHA1_80", "{media}");
        assert_eq!(media["srtp"]["auth_failures"], 0, "{media}");
        // SDES over UDP: the keys crossed the network in clear, and the event says so.
        assert_eq!(media["srtp"]["keys"], "clear", "{media}");
    } else {
        assert!(media.get("srtp").is_none(), "{media}");
    }
}

/// The log file has the SIP messages with `a=crypto` lines, but every key is masked.
fn assert_log_masks_keys(side: &Headless) {
    let log = std::fs::read_to_string(side.log_dir().join("sipterm.log")).unwrap_or_default();
    let keys: Vec<&str> = log.split("inline:").skip(1).collect();
    println!("{}: {} inline keys in the log", side.name(), keys.len());
    // Our offer (2 lines) or answer (1) and the peer's: at least 3 on each side.
    assert!(
        keys.len() >= 3,
        "{}: SIP messages missing from the debug log",
        side.name()
    );
    for key in keys {
        assert!(
            key.starts_with("REDACTED"),
            "{}: key in the log: inline:{}",
            side.name(),
            &key[..key.len().min(12)]
        );
    }
}

/// The recording's dominant frequency (middle second of its sound) must be `tone`.
fn assert_hears(path: &Path, who: &str, tone: f32) -> TestResult {
    let (rate, samples) = read_wav(path)?;
    let loud: Vec<usize> = samples
        .chunks(160)
        .enumerate()
        .filter(|(_, frame)| rms(frame) > 500.0)
        .map(|(i, _)| i)
        .collect();
    let (Some(&first), Some(&last)) = (loud.first(), loud.last()) else {
        return Err(format!("{who}: no sound in {}", path.display()).into());
    };
    let center = (first + last) / 2 * 160;
    let window = &samples[center.saturating_sub(4000)..(center + 4000).min(samples.len())];
    let frequency = dominant_frequency(window, rate);
    println!(
        "{who} heard {frequency:.1} Hz at RMS {:.0} ({} s of sound)",
        rms(window),
        loud.len() as f32 * 0.02
    );
    assert!(
        (frequency - tone).abs() < tone * 0.02,
        "{who} heard {frequency} Hz, expected {tone} Hz"
    );
    assert!(
        loud.len() >= 50,
        "{who}: only {} frames of sound",
        loud.len()
    );
    Ok(())
}

// ------------------------------------------------------------------- capture ----

/// `dumpcap` on the loopback interface, writing classic pcap.
struct Capture {
    guard: ChildGuard,
    file: PathBuf,
}

impl Capture {
    fn start(dir: &Path) -> Result<Capture, Box<dyn std::error::Error>> {
        let file = dir.join("lo.pcap");
        let mut command = Command::new("dumpcap");
        command
            .args([
                "-i",
                "lo",
                "-P",
                "-q",
                "-f",
                "udp portrange 16384-32767",
                "-w",
            ])
            .arg(&file);
        let mut guard =
            ChildGuard::spawn("dumpcap", command, Stdout::File, Some(&dir.join("dumpcap")))
                .map_err(|e| format!("cannot run dumpcap (the Makefile installs tshark): {e}"))?;
        // The file gets its header once the capture runs.
        let started = Instant::now();
        while std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) < 24 {
            if let Some(status) = guard.try_exit_status() {
                return Err(format!(
                    "dumpcap exited ({status}); capturing on lo needs root or CAP_NET_RAW: {}",
                    common::process::tail_of_file(&dir.join("dumpcap/stderr.log"), 2000)
                )
                .into());
            }
            if started.elapsed() > SIGNALLING {
                return Err("dumpcap did not start capturing within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Capture { guard, file })
    }

    /// Stops the capture and returns every UDP datagram as (destination port, payload).
    fn finish(mut self) -> Result<Vec<Datagram>, Box<dyn std::error::Error>> {
        // dumpcap flushes on SIGTERM; give the last packets a moment to reach the file.
        std::thread::sleep(Duration::from_millis(300));
        self.guard.terminate(Duration::from_secs(5));
        Ok(udp_datagrams(&std::fs::read(&self.file)?))
    }
}

/// UDP payloads of IPv4 packets in a classic pcap file (any byte order, Ethernet or Linux
/// cooked link layer).
fn udp_datagrams(pcap: &[u8]) -> Vec<Datagram> {
    let Some(magic) = pcap.get(..4) else {
        return Vec::new();
    };
    let little = magic == [0xd4, 0xc3, 0xb2, 0xa1] || magic == [0x4d, 0x3c, 0xb2, 0xa1];
    let u32_at = |bytes: &[u8], at: usize| -> Option<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let link_header = match u32_at(pcap, 20) {
        Some(1) => 14,
        Some(113) => 16,
        Some(276) => 20,
        Some(0) => 4,
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while let Some(captured) = u32_at(pcap, at + 8) {
        let start = at + 16;
        let Some(frame) = pcap.get(start..start + captured as usize) else {
            break;
        };
        at = start + captured as usize;
        let Some(ip) = frame.get(link_header..) else {
            continue;
        };
        if ip.first().map(|b| b >> 4) != Some(4) || ip.get(9) != Some(&17) {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let Some(udp) = ip.get(ihl..) else { continue };
        let (Some(port), Some(payload)) = (udp.get(2..4), udp.get(8..)) else {
            continue;
        };
        out.push((u16::from_be_bytes([port[0], port[1]]), payload.to_vec()));
    }
    out
}

/// What the capture shows of the RTP sent to `port`: packet lengths and how much of the
/// decoded PCMU payload is the tone (1.0: pure tone, near 0: noise).
fn wire_view(datagrams: &[Datagram], port: u16, tone: f32) -> WireView {
    let rtp: Vec<&Vec<u8>> = datagrams
        .iter()
        .filter(|(to, payload)| {
            *to == port
                && payload.first() == Some(&0x80)
                && payload.get(1).map(|b| b & 0x7f) == Some(0)
        })
        .map(|(_, payload)| payload)
        .collect();
    let lengths: HashSet<usize> = rtp.iter().map(|p| p.len()).collect();
    // The middle 50 packets, decoded as if they were plain PCMU.
    let middle = rtp.len() / 2;
    let samples: Vec<i16> = rtp
        .iter()
        .skip(middle.saturating_sub(25))
        .take(50)
        .flat_map(|p| p.iter().skip(12).take(160).map(|b| ulaw_to_linear(*b)))
        .collect();
    let level = rms(&samples) / 32768.0;
    let tone_share = if level > 0.0 {
        goertzel_power(&samples, RATE, tone) / (level * level / 2.0)
    } else {
        0.0
    };
    (lengths, rtp.len(), tone_share)
}

/// The RTP port the media event's `remote` names.
fn remote_port(media: &Value) -> u16 {
    media["remote"]
        .as_str()
        .and_then(|r| r.parse::<SocketAddr>().ok())
        .map(|a| a.port())
        .unwrap_or_else(|| panic!("no remote in {media}"))
}

/// Two sipterms with `srtp` policies call under capture; returns what the wire showed of the
/// caller's stream (to the callee) and the callee's stream.
fn captured_call(
    srtp: Option<&str>,
    encrypted: bool,
) -> Result<[WireView; 2], Box<dyn std::error::Error>> {
    let dir = scratch("wire");
    let capture = Capture::start(dir.path())?;
    let (mut caller, caller_out) = start(dir.path(), "caller", srtp, CALLER_TONE, false)?;
    let (mut callee, callee_out) = start(dir.path(), "callee", srtp, CALLEE_TONE, true)?;
    let (a, b) = call(&mut caller, &mut callee)?;
    assert_encrypted(&a, encrypted);
    assert_encrypted(&b, encrypted);
    hang_up(&mut caller, &mut callee)?;
    let datagrams = capture.finish()?;
    if encrypted {
        assert_log_masks_keys(&caller);
        assert_log_masks_keys(&callee);
    }
    assert_hears(&caller_out, "caller", CALLEE_TONE)?;
    assert_hears(&callee_out, "callee", CALLER_TONE)?;
    let to_callee = wire_view(&datagrams, remote_port(&a), CALLER_TONE);
    let to_caller = wire_view(&datagrams, remote_port(&b), CALLEE_TONE);
    println!(
        "srtp={srtp:?}: to callee {to_callee:?}, to caller {to_caller:?} (lengths, packets, tone share)"
    );
    Ok([to_callee, to_caller])
}

#[test]
fn mandatory_both_sides_encrypt_audio_and_the_wire_shows_no_tone() -> TestResult {
    for (lengths, packets, tone_share) in captured_call(Some("mandatory"), true)? {
        assert!(packets > 50, "too few RTP packets captured: {packets}");
        // 12-byte header, 160 bytes of PCMU, 10-byte HMAC-SHA1-80 tag.
        assert_eq!(lengths, HashSet::from([182]), "SRTP packet lengths");
        assert!(
            tone_share < 0.05,
            "the payload still holds the tone (share {tone_share})"
        );
    }
    Ok(())
}

/// The control for the test above: the same analysis finds the tone in a plain call.
#[test]
fn off_both_sides_is_plain_rtp_on_the_wire() -> TestResult {
    for (lengths, packets, tone_share) in captured_call(Some("off"), false)? {
        assert!(packets > 50, "too few RTP packets captured: {packets}");
        assert_eq!(lengths, HashSet::from([172]), "plain RTP packet lengths");
        assert!(
            tone_share > 0.5,
            "plain PCMU should be the tone (share {tone_share})"
        );
    }
    Ok(())
}

/// A call refused for SRTP reasons: the caller's call ends with 488, the callee never rings.
fn assert_refused(caller_srtp: &str, callee_srtp: &str) -> TestResult {
    let dir = scratch("refused");
    let (mut caller, _) = start(dir.path(), "caller", Some(caller_srtp), CALLER_TONE, false)?;
    let (mut callee, _) = start(dir.path(), "callee", Some(callee_srtp), CALLEE_TONE, true)?;
    caller.send(&format!("dial {}", callee.uri("callee")))?;
    let end = caller.expect_call_state("terminated", SIGNALLING)?;
    println!("caller {caller_srtp} -> callee {callee_srtp}: {end}");
    assert_eq!(end["code"], 488, "{end}");
    // Anything the callee printed by now (its 488 went out before the caller's event).
    let _ = callee.expect_event("nothing", |_| false, Duration::from_millis(300));
    assert!(
        callee.events_of("call").is_empty(),
        "the callee must not ring: {:?}",
        callee.events_of("call")
    );
    assert!(
        caller.events_of("media").is_empty(),
        "no media on a refused call"
    );
    Ok(())
}

#[test]
fn mandatory_caller_gets_488_from_a_callee_with_srtp_off() -> TestResult {
    assert_refused("mandatory", "off")
}

#[test]
fn mandatory_callee_refuses_a_plain_offer_with_488() -> TestResult {
    assert_refused("off", "mandatory")
}

/// Mandatory and optional meet in both directions: RTP/SAVP taken by the optional side, and
/// optional's best-effort RTP/AVP offer with keys taken by the mandatory side.
#[test]
fn mandatory_and_optional_encrypt_in_both_directions() -> TestResult {
    let dir = scratch("mixed");
    for (caller_srtp, callee_srtp) in [("mandatory", "optional"), ("optional", "mandatory")] {
        let (mut caller, caller_out) =
            start(dir.path(), "caller", Some(caller_srtp), CALLER_TONE, false)?;
        let (mut callee, callee_out) =
            start(dir.path(), "callee", Some(callee_srtp), CALLEE_TONE, true)?;
        let (a, b) = call(&mut caller, &mut callee)?;
        assert_encrypted(&a, true);
        assert_encrypted(&b, true);
        hang_up(&mut caller, &mut callee)?;
        assert_hears(&caller_out, "caller", CALLEE_TONE)?;
        assert_hears(&callee_out, "callee", CALLER_TONE)?;
    }
    Ok(())
}

/// Without an `srtp` key (the default, optional) two sipterms encrypt; with one side off
/// they talk plain RTP.
#[test]
fn default_encrypts_and_off_falls_back_to_plain() -> TestResult {
    let dir = scratch("default");
    for (callee_srtp, encrypted) in [(None, true), (Some("off"), false)] {
        let (mut caller, _) = start(dir.path(), "caller", None, CALLER_TONE, false)?;
        let (mut callee, callee_out) = start(dir.path(), "callee", callee_srtp, CALLEE_TONE, true)?;
        let (a, b) = call(&mut caller, &mut callee)?;
        assert_encrypted(&a, encrypted);
        assert_encrypted(&b, encrypted);
        hang_up(&mut caller, &mut callee)?;
        assert_hears(&callee_out, "callee", CALLER_TONE)?;
    }
    Ok(())
}

/// A peer that answers our RTP/SAVP offer without a=crypto: the call is hung up (BYE), and
/// the `terminated` event says why.
#[test]
fn mandatory_caller_hangs_up_when_the_answer_has_no_keys() -> TestResult {
    let dir = scratch("nokeys");
    let sipp_port = free_udp_port()?;
    let mut sipp = Sipp::uas(&Sipp::scenario("uas_answer.xml"), sipp_port, &[])?;
    let (mut caller, _) = start(dir.path(), "caller", Some("mandatory"), CALLER_TONE, false)?;
    caller.send(&format!("dial sip:peer@127.0.0.1:{sipp_port}"))?;
    let end = caller.expect_call_state("terminated", SIGNALLING)?;
    println!("answer without keys: {end}");
    let reason = end["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("a=crypto"),
        "reason should name the missing a=crypto: {end}"
    );
    // sipp's scenario ends with the BYE it expects.
    sipp.wait_success(SIGNALLING)
        .map_err(|e| format!("sipp did not get its BYE: {e}"))?;
    assert!(caller.events_of("media").is_empty(), "no media was started");
    Ok(())
}

/// baresip with `mediaenc=srtp-mand` (its srtp module, SDES) and a mandatory sipterm, in both
/// directions; audio checked on both sides.
#[test]
fn baresip_srtp_mandatory_interop_both_directions() -> TestResult {
    for sipterm_calls in [true, false] {
        let dir = scratch("baresip");
        let dumps = dir.path().join("dumps");
        std::fs::create_dir_all(&dumps)?;
        let peer_tone = dir.path().join("peer.wav");
        write_wav(&peer_tone, RATE, &sine(CALLEE_TONE, RATE, 20.0, AMPLITUDE))?;
        let config = BaresipConfig {
            sip_port: free_udp_port()?,
            user: "baresip".to_owned(),
            audio_in: Some(peer_tone),
            auto_answer: sipterm_calls,
            codecs: vec!["g711"],
            registration: None,
            mediaenc: Some("srtp-mand"),
        };
        let mut baresip = Baresip::start_with(&dir.path().join("baresip"), Some(&dumps), &config)?;
        let (mut sipterm, heard) = start(
            dir.path(),
            "sipterm",
            Some("mandatory"),
            CALLER_TONE,
            !sipterm_calls,
        )?;
        if sipterm_calls {
            sipterm.send(&format!("dial sip:baresip@{}", baresip.addr()))?;
        } else {
            baresip.dial(&sipterm.uri("sipterm"))?;
        }
        sipterm
            .expect_call_state("confirmed", SIGNALLING)
            .map_err(|e| format!("{e}\n{}", baresip.log()))?;
        let media = wait_media(&mut sipterm, 75)?;
        println!(
            "sipterm {} baresip: {media}",
            if sipterm_calls { "->" } else { "<-" }
        );
        assert_eq!(media["encrypted"], true, "{media}");
        assert_eq!(media["srtp"]["suite"], "AES_CM_128_HMAC_SHA1_80", "{media}");
        // baresip 1.0 sends one plain (unauthenticated) RTCP APP "PING" packet at the start;
        // sipterm drops and counts it. Anything more would mean broken keys.
        let failures = media["srtp"]["auth_failures"].as_u64().unwrap_or(u64::MAX);
        assert!(
            failures <= 2,
            "SRTP authentication failures with baresip: {media}"
        );
        sipterm.send("hangup")?;
        sipterm.expect_call_state("terminated", SIGNALLING)?;
        baresip.wait_output("terminated", SIGNALLING)?;
        baresip.quit(Duration::from_secs(5));
        assert_hears(&heard, "sipterm", CALLEE_TONE)?;
        let files = baresip.received_audio_files(Some(&dumps));
        let file = files.last().ok_or("baresip wrote no received-audio file")?;
        assert_hears(file, "baresip", CALLER_TONE)?;
    }
    Ok(())
}
