//! Packet time: sipterm sends at the peer's `a=ptime` and plays the peer's packets of that
//! length. sipp answers (tests/data/sipp/uas_answer_ptime.xml) with an SDP whose media port is
//! this test's own UDP socket, so the test sees every RTP packet sipterm sends (payload size,
//! timestamp step) and answers with a tone in packets of the same length, which sipterm's
//! WAV output must carry without gaps. PCMU at 10, 30 and 40 ms, G.722 at 30 ms.
//!
//! sipp is required (the Makefile's TEST_DEPS): a missing one fails the test.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::headless::{Headless, HeadlessOptions, read_wav, sine, write_wav};
use common::peers::Sipp;
use common::ports::free_udp_port;
use sipterm::media::codec::Encoder;
use sipterm::media::codec::g711::linear_to_ulaw;
use sipterm::media::codec::g722::G722Encoder;
use sipterm::media::tones::{SineGenerator, dominant_frequency, goertzel_power, rms};

const SIGNALLING: Duration = Duration::from_secs(10);
const EXCHANGE: Duration = Duration::from_millis(2500);
const PEER_TONE: f32 = 700.0;

#[derive(Clone, Copy, Debug)]
enum Codec {
    Pcmu,
    G722,
}

impl Codec {
    fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::G722 => 9,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::G722 => "G722",
        }
    }
    fn config(self) -> &'static str {
        match self {
            Codec::Pcmu => "pcmu",
            Codec::G722 => "g722",
        }
    }
    fn audio_rate(self) -> u32 {
        match self {
            Codec::Pcmu => 8_000,
            Codec::G722 => 16_000,
        }
    }
}

struct Sent {
    payload_len: usize,
    sequence: u16,
    timestamp: u32,
}

fn rtp_header(sequence: u16, timestamp: u32, payload_type: u8) -> Vec<u8> {
    let mut packet = vec![0x80, payload_type];
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&timestamp.to_be_bytes());
    packet.extend_from_slice(&0x5eed_0001u32.to_be_bytes());
    packet
}

fn exchange(codec: Codec, ptime: u32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("RTP socket");
    rtp.set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let rtp_port = rtp.local_addr().expect("address").port();
    let sip_port = free_udp_port().expect("port");
    let mut sipp = Sipp::uas(
        &Sipp::scenario("uas_answer_ptime.xml"),
        sip_port,
        &[
            "-set",
            "mport",
            &rtp_port.to_string(),
            "-set",
            "pt",
            &codec.payload_type().to_string(),
            "-set",
            "codec",
            codec.name(),
            "-set",
            "ptime",
            &ptime.to_string(),
        ],
    )
    .expect("sipp starts");
    let ours = dir.path().join("ours.wav");
    write_wav(&ours, 8_000, &sine(1000.0, 8_000, 8.0, 8000.0)).expect("tone");
    let heard = dir.path().join("heard.wav");
    let mut alice = Headless::spawn(
        &format!("alice-ptime-{ptime}"),
        &HeadlessOptions {
            audio_in: Some(ours),
            audio_out: Some(heard.clone()),
            config_toml: Some(format!(
                "[[account]]\nname = \"alice\"\nuri = \"sip:alice@127.0.0.1\"\ncodecs = [\"{}\"]\n",
                codec.config()
            )),
            ..Default::default()
        },
    )
    .expect("sipterm starts");
    alice
        .send(&format!("dial sip:sipp@127.0.0.1:{sip_port}"))
        .unwrap();
    alice
        .expect_call_state("confirmed", SIGNALLING)
        .expect("call confirmed");

    // Record what sipterm sends; answer with a tone in packets of `ptime`.
    let units = (8 * ptime) as usize;
    let samples = (codec.audio_rate() * ptime / 1000) as usize;
    let mut tone = SineGenerator::new(PEER_TONE, codec.audio_rate(), 8000.0);
    let mut g722 = G722Encoder::new();
    let mut pcm = Vec::new();
    let mut sent: Vec<Sent> = Vec::new();
    let mut sipterm_rtp: Option<SocketAddr> = None;
    let mut buf = [0u8; 1500];
    let start = Instant::now();
    let mut answered = 0u32;
    while start.elapsed() < EXCHANGE {
        if let Ok((n, from)) = rtp.recv_from(&mut buf)
            && n >= 12
            && buf[1] & 0x7f == codec.payload_type()
        {
            sipterm_rtp.get_or_insert(from);
            sent.push(Sent {
                payload_len: n - 12,
                sequence: u16::from_be_bytes([buf[2], buf[3]]),
                timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            });
        }
        if let Some(to) = sipterm_rtp
            && start.elapsed() >= Duration::from_millis(u64::from(ptime * answered))
        {
            let mut packet = rtp_header(
                answered as u16,
                answered * units as u32,
                codec.payload_type(),
            );
            pcm.clear();
            tone.fill(&mut pcm, samples);
            match codec {
                Codec::Pcmu => packet.extend(pcm.iter().map(|&s| linear_to_ulaw(s))),
                Codec::G722 => g722.encode(&pcm, &mut packet).expect("G.722"),
            }
            let _ = rtp.send_to(&packet, to);
            answered += 1;
        }
    }
    alice.send("hangup").unwrap();
    alice
        .expect_call_state("terminated", SIGNALLING)
        .expect("terminated");
    alice.quit(Duration::from_secs(5));
    let _ = sipp.wait_success(Duration::from_secs(5));

    // What sipterm sent: packets of `ptime`, timestamps `ptime` apart.
    assert!(sent.len() > 10, "sipterm sent RTP ({} packets)", sent.len());
    let sizes: std::collections::BTreeSet<usize> = sent.iter().map(|s| s.payload_len).collect();
    let steps: std::collections::BTreeSet<u32> = sent
        .windows(2)
        .filter(|w| w[1].sequence == w[0].sequence.wrapping_add(1))
        .map(|w| w[1].timestamp.wrapping_sub(w[0].timestamp))
        .collect();
    let rate = sent.len() as f64 / EXCHANGE.as_secs_f64();
    println!(
        "{codec:?} ptime {ptime}: sipterm sent {} packets ({rate:.0}/s), payload sizes {sizes:?}, timestamp steps {steps:?}",
        sent.len()
    );
    assert_eq!(
        sizes.into_iter().collect::<Vec<_>>(),
        vec![units],
        "every packet carries {ptime} ms"
    );
    assert_eq!(
        steps.into_iter().collect::<Vec<_>>(),
        vec![units as u32],
        "timestamps advance by {ptime} ms"
    );
    let expected = 1000.0 / f64::from(ptime);
    assert!(
        (rate - expected).abs() < expected * 0.25,
        "about {expected:.0} packets a second, got {rate:.0}"
    );

    // What sipterm played: the peer's tone, without gaps.
    let (rate, played) = read_wav(&heard).expect("heard WAV");
    let block = rate as usize / 100;
    let loud: Vec<f32> = played.chunks_exact(block).map(rms).collect();
    // The ringback recorded before the answer (425 Hz) is not the call's audio: the call's
    // starts with the first block of the peer's tone.
    let peer = |b: &[i16]| {
        rms(b) > 1000.0
            && goertzel_power(b, rate, PEER_TONE) > 10.0 * goertzel_power(b, rate, 425.0)
    };
    let blocks: Vec<&[i16]> = played.chunks_exact(block).collect();
    let first = blocks
        .iter()
        .position(|b| peer(b))
        .expect("the tone is heard");
    let last = blocks.iter().rposition(|b| peer(b)).unwrap_or(first);
    // Inside the tone (less its edges: jitter buffer start, hang-up), no 10 ms block is quiet.
    let inner = &loud[(first + 10).min(last)..last.saturating_sub(10).max(first)];
    let gaps = inner.iter().filter(|&&r| r < 1000.0).count();
    let where_quiet: Vec<usize> = inner
        .iter()
        .enumerate()
        .filter(|(_, r)| **r < 1000.0)
        .map(|(i, _)| i)
        .collect();
    println!("quiet blocks at {where_quiet:?} (of {})", inner.len());
    let tone_start = first * block;
    let freq = dominant_frequency(&played[tone_start..], rate);
    println!(
        "{codec:?} ptime {ptime}: sipterm played {:.2} s of {freq:.0} Hz, {gaps} quiet 10 ms blocks inside",
        inner.len() as f32 / 100.0
    );
    assert!(inner.len() > 100, "over a second of the tone played");
    assert!((freq - PEER_TONE).abs() < 20.0, "the peer's tone: {freq}");
    assert_eq!(gaps, 0, "no gaps in the peer's {ptime} ms packets");
}

#[test]
fn pcmu_at_10_ms() {
    exchange(Codec::Pcmu, 10);
}

#[test]
fn pcmu_at_30_ms() {
    exchange(Codec::Pcmu, 30);
}

#[test]
fn pcmu_at_40_ms() {
    exchange(Codec::Pcmu, 40);
}

#[test]
fn g722_at_30_ms() {
    exchange(Codec::G722, 30);
}
