//! The whole pure media path of one call, as the media task will drive it: a 48 kHz capture
//! tone is resampled to the codec rate, encoded, packetized, "sent" over a lossy reordering
//! wire, received, buffered, decoded with concealment and resampled back to 48 kHz. The tone
//! must come out at its frequency, and the stats must count what the wire did.

use sipterm::media::codec::{self, CodecKind};
use sipterm::media::jitter::{JitterBuffer, Playout};
use sipterm::media::resample::Resampler;
use sipterm::media::rtp::RtpPacket;
use sipterm::media::session::{ReceiveOutcome, ReceiveStats, RtpReceiver, RtpSender};
use sipterm::media::tones::{SineGenerator, dominant_frequency, rms};

const DEVICE_RATE: u32 = 48_000;
const FRAMES: u32 = 100;

fn run_call(kind: CodecKind, lost: &[u32]) -> (Vec<i16>, ReceiveStats) {
    let codec_rate = kind.clock_rate();
    let frame = kind.samples_per_frame() as u32;
    let mut capture = SineGenerator::new(440.0, DEVICE_RATE, 8000.0);
    let mut to_codec = Resampler::new(DEVICE_RATE, codec_rate).unwrap();
    let mut to_device = Resampler::new(codec_rate, DEVICE_RATE).unwrap();
    let mut encoder = codec::encoder(kind).unwrap();
    let mut decoder = codec::decoder(kind).unwrap();
    let mut sender = RtpSender::new(2024, kind.static_payload_type().unwrap_or(111), frame);
    let mut receiver = RtpReceiver::new(codec_rate);
    let mut jitter = JitterBuffer::new(frame, 2);

    // Wire: every packet takes one tick, except packet 10, which takes three (so it arrives
    // after packet 11, just in time for playout); packets whose tick is in `lost` vanish.
    let mut in_flight: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut played = Vec::new();
    for tick in 0..FRAMES {
        let mut pcm = Vec::new();
        capture.fill(&mut pcm, 960);
        let mut narrow = Vec::new();
        to_codec.process(&pcm, &mut narrow).unwrap();
        let mut payload = Vec::new();
        encoder.encode(&narrow, &mut payload).unwrap();
        let mut packet = Vec::new();
        sender.packetize_audio(&payload, &mut packet).unwrap();
        if !lost.contains(&tick) {
            let delay = if tick == 10 { 3 } else { 1 };
            in_flight.push((tick + delay, packet));
        }

        let (arriving, waiting): (Vec<_>, Vec<_>) =
            in_flight.drain(..).partition(|(due, _)| *due <= tick);
        in_flight = waiting;
        for (_, bytes) in arriving {
            let packet = RtpPacket::parse(&bytes).unwrap();
            // Arrival in clock units: one frame per tick.
            match receiver.handle_packet(&packet, tick * frame) {
                ReceiveOutcome::Accepted { .. } => {
                    jitter.insert(packet.timestamp(), packet.payload());
                }
                other => panic!("unexpected {other:?}"),
            }
        }

        let mut decoded = Vec::new();
        match jitter.pop_frame() {
            Playout::Buffering => decoded.resize(frame as usize, 0),
            Playout::Frame(payload) => decoder.decode(Some(&payload), &mut decoded).unwrap(),
            Playout::Missing => decoder.decode(None, &mut decoded).unwrap(),
        }
        to_device.process(&decoded, &mut played).unwrap();
    }
    (played, receiver.stats())
}

#[test]
fn a_tone_crosses_a_pcmu_call_with_loss_and_reordering() {
    let (played, stats) = run_call(CodecKind::Pcmu, &[30, 31, 60]);
    assert_eq!(played.len(), (FRAMES * 960) as usize);
    // The last packet is still on the wire when the call ends, so it is not yet "expected".
    assert_eq!(stats.lost, 3);
    assert_eq!(stats.reordered, 1);
    assert!(stats.jitter > 0.0, "the late packet shows as jitter");
    let clean = &played[40 * 960..58 * 960];
    assert!((dominant_frequency(clean, DEVICE_RATE) - 440.0).abs() < 1.0);
    // 8000 peak -> 5657 rms.
    assert!(
        (rms(clean) / 5657.0 - 1.0).abs() < 0.15,
        "rms {}",
        rms(clean)
    );
}

#[test]
fn a_tone_crosses_an_opus_call_with_loss() {
    let (played, stats) = run_call(CodecKind::Opus, &[50]);
    assert_eq!(stats.lost, 1);
    let steady = &played[20 * 960..48 * 960];
    assert!((dominant_frequency(steady, DEVICE_RATE) - 440.0).abs() < 2.0);
    // Opus concealment keeps the level up across the lost frame.
    let around_loss = &played[50 * 960..56 * 960];
    assert!(rms(around_loss) > 2000.0, "rms {}", rms(around_loss));
}
