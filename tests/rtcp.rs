//! RTCP sessions on virtual time: report scheduling, loss and round-trip figures two peers
//! see of each other, and hostile datagrams.

use std::time::Duration;

use sipterm::media::rtcp::{
    NtpTimestamp, PT_GOODBYE, PT_RECEIVER_REPORT, PT_SENDER_REPORT, RtcpEvent, RtcpPacket,
    RtcpSession, parse_compound,
};
use sipterm::media::rtp::RtpPacket;
use sipterm::media::session::{ReceiveStats, RtpReceiver, RtpSender, SendStats, clock_units};

const CLOCK_RATE: u32 = 8000;

fn nothing_sent() -> SendStats {
    SendStats::default()
}

fn nothing_received() -> ReceiveStats {
    ReceiveStats::default()
}

/// Report instants of a session that neither sends nor receives, until `horizon`.
fn schedule(seed: u64, horizon: Duration) -> Vec<Duration> {
    let mut session = RtcpSession::new(1, "a@example.org", CLOCK_RATE, seed);
    let mut instants = Vec::new();
    loop {
        let due = session.poll_timeout();
        if due > horizon {
            return instants;
        }
        let just_before = due.saturating_sub(Duration::from_millis(1));
        assert_eq!(
            session.poll_report(just_before, &nothing_sent(), &nothing_received(), 0),
            None,
            "nothing before the deadline"
        );
        assert!(
            session
                .poll_report(due, &nothing_sent(), &nothing_received(), 0)
                .is_some()
        );
        instants.push(due);
    }
}

#[test]
fn report_interval_is_randomised_within_rfc_bounds_and_reproducible() {
    let horizon = Duration::from_secs(600);
    let instants = schedule(7, horizon);
    // First report after half the 5 s minimum, times 0.5..1.5; then 5 s times 0.5..1.5.
    let first = instants[0];
    assert!(
        first >= Duration::from_millis(1250) && first < Duration::from_millis(3750),
        "{first:?}"
    );
    let gaps: Vec<Duration> = instants.windows(2).map(|pair| pair[1] - pair[0]).collect();
    assert!(
        gaps.iter()
            .all(|gap| *gap >= Duration::from_millis(2500) && *gap < Duration::from_millis(7500)),
        "{gaps:?}"
    );
    // Randomised: over ~120 reports the gaps spread over the range and average near 5 s.
    let shortest = gaps.iter().min().unwrap();
    let longest = gaps.iter().max().unwrap();
    assert!(*shortest < Duration::from_millis(3200), "{shortest:?}");
    assert!(*longest > Duration::from_millis(6800), "{longest:?}");
    let mean = gaps.iter().sum::<Duration>() / gaps.len() as u32;
    assert!(
        mean > Duration::from_millis(4500) && mean < Duration::from_millis(5500),
        "{mean:?}"
    );

    assert_eq!(schedule(7, horizon), instants, "same seed, same schedule");
    assert_ne!(
        schedule(8, horizon),
        instants,
        "another seed, another schedule"
    );
}

fn packet_types(datagram: &[u8]) -> Vec<u8> {
    parse_compound(datagram)
        .unwrap()
        .iter()
        .map(|packet| match packet {
            RtcpPacket::SenderReport { .. } => PT_SENDER_REPORT,
            RtcpPacket::ReceiverReport { .. } => PT_RECEIVER_REPORT,
            RtcpPacket::SourceDescription(_) => 202,
            RtcpPacket::Goodbye { .. } => PT_GOODBYE,
            RtcpPacket::Other { packet_type } => *packet_type,
        })
        .collect()
}

#[test]
fn sender_report_only_while_we_send_and_every_report_has_a_cname() {
    let mut session = RtcpSession::new(0xabcd, "me@host", CLOCK_RATE, 3);
    let mut sent = SendStats::default();
    let mut kinds = Vec::new();
    for round in 0..4 {
        if round == 1 || round == 2 {
            sent.packets += 250;
            sent.payload_octets += 250 * 160;
        }
        let due = session.poll_timeout();
        let report = session
            .poll_report(due, &sent, &nothing_received(), 1234)
            .unwrap();
        kinds.push(packet_types(&report));
        let packets = parse_compound(&report).unwrap();
        assert!(packets.iter().any(|packet| matches!(
            packet,
            RtcpPacket::SourceDescription(chunks)
                if chunks[0].ssrc == 0xabcd && chunks[0].cname.as_deref() == Some("me@host")
        )));
        if let Some(RtcpPacket::SenderReport { info, .. }) = packets.first() {
            assert_eq!(info.packet_count as u64, sent.packets);
            assert_eq!(info.octet_count as u64, sent.payload_octets);
            assert_eq!(info.rtp_timestamp, 1234);
            assert_eq!(info.ntp, NtpTimestamp::from_duration(due));
        }
    }
    assert_eq!(
        kinds,
        vec![
            vec![PT_RECEIVER_REPORT, 202],
            vec![PT_SENDER_REPORT, 202],
            vec![PT_SENDER_REPORT, 202],
            vec![PT_RECEIVER_REPORT, 202],
        ]
    );
}

/// Feeds `count` packets of a 20 ms G.711 stream into `receiver`, dropping those for which
/// `lose(index)` holds; `first_index` continues an earlier run.
fn receive_stream(
    sender: &mut RtpSender,
    receiver: &mut RtpReceiver,
    first_index: u32,
    count: u32,
    lose: impl Fn(u32) -> bool,
) {
    for index in first_index..first_index + count {
        let mut wire = Vec::new();
        sender.packetize_audio(&[0xd5; 160], &mut wire).unwrap();
        if lose(index) {
            continue;
        }
        let packet = RtpPacket::parse(&wire).unwrap();
        let arrival = clock_units(Duration::from_millis(20 * u64::from(index)), CLOCK_RATE);
        receiver.handle_packet(&packet, arrival);
    }
}

fn only_report_block(datagram: &[u8]) -> sipterm::media::rtcp::ReportBlock {
    let packets = parse_compound(datagram).unwrap();
    match packets.first() {
        Some(RtcpPacket::ReceiverReport { reports, .. }) if reports.len() == 1 => reports[0],
        other => panic!("expected an RR with one block, got {other:?}"),
    }
}

#[test]
fn fraction_lost_is_per_interval_and_cumulative_loss_adds_up() {
    let mut sender = RtpSender::new(99, 0, 160);
    let mut receiver = RtpReceiver::new(CLOCK_RATE);
    let mut session = RtcpSession::new(0x1234, "me@host", CLOCK_RATE, 11);

    // Interval 1: 200 packets, every 10th lost (never the last): 20 of 200 = 10 %.
    receive_stream(&mut sender, &mut receiver, 0, 200, |index| index % 10 == 5);
    let due = session.poll_timeout();
    let report = session
        .poll_report(due, &nothing_sent(), &receiver.stats(), 0)
        .unwrap();
    let block = only_report_block(&report);
    assert_eq!(block.ssrc, sender.ssrc());
    // 20 * 256 / 200 = 25.6, truncated as in RFC 3550 A.3.
    assert_eq!(block.fraction_lost, 25);
    assert_eq!(block.cumulative_lost, 20);
    let first_sequence = sender.next_sequence_number().wrapping_sub(200);
    assert_eq!(
        block.extended_highest_sequence as u16,
        first_sequence.wrapping_add(199)
    );
    assert_eq!(
        (block.last_sr, block.delay_since_last_sr),
        (0, 0),
        "no SR seen"
    );

    // Interval 2: 100 packets, none lost: the fraction drops to zero, the total stays.
    receive_stream(&mut sender, &mut receiver, 200, 100, |_| false);
    let due = session.poll_timeout();
    let block = only_report_block(
        &session
            .poll_report(due, &nothing_sent(), &receiver.stats(), 0)
            .unwrap(),
    );
    assert_eq!(block.fraction_lost, 0);
    assert_eq!(block.cumulative_lost, 20);

    // Interval 3: half of 100 lost: 128/256.
    receive_stream(&mut sender, &mut receiver, 300, 100, |index| index % 2 == 0);
    let due = session.poll_timeout();
    let block = only_report_block(
        &session
            .poll_report(due, &nothing_sent(), &receiver.stats(), 0)
            .unwrap(),
    );
    assert_eq!(block.fraction_lost, 128);
    assert_eq!(block.cumulative_lost, 70);
}

#[test]
fn extended_highest_sequence_counts_wraps() {
    // Seed chosen freely; the stream runs long enough to wrap the 16-bit sequence once.
    let mut sender = RtpSender::new(5, 0, 160);
    let mut receiver = RtpReceiver::new(CLOCK_RATE);
    let first = sender.next_sequence_number();
    receive_stream(&mut sender, &mut receiver, 0, 70_000, |_| false);
    let highest = receiver.stats().extended_highest_sequence;
    assert_eq!(highest, u32::from(first) + 69_999);
}

/// Alice sends RTP and SRs; Bob receives, and his RR echoes Alice's SR: both see the path.
#[test]
fn round_trip_time_is_measured_from_the_peer_echo_of_our_sender_report() {
    let one_way = Duration::from_millis(40);
    let mut alice = RtcpSession::new(0xa11ce, "alice@a", CLOCK_RATE, 1);
    let mut bob = RtcpSession::new(0xb0b, "bob@b", CLOCK_RATE, 2);
    let alice_sent = SendStats {
        packets: 100,
        payload_octets: 16_000,
    };
    let bob_received = ReceiveStats {
        ssrc: Some(0xa11ce),
        received: 100,
        expected: 100,
        ..ReceiveStats::default()
    };
    assert_eq!(alice.remote_stats(), None, "nothing reported yet");

    let sr_at = alice.poll_timeout();
    let sr = alice
        .poll_report(sr_at, &alice_sent, &nothing_received(), 5000)
        .unwrap();
    let events = bob.handle_packet(&sr, sr_at + one_way).unwrap();
    assert!(events.iter().any(|event| matches!(
        event,
        RtcpEvent::SenderReport { ssrc: 0xa11ce, info } if info.packet_count == 100
    )));
    assert!(events.contains(&RtcpEvent::Cname {
        ssrc: 0xa11ce,
        cname: "alice@a".into()
    }));

    // Bob holds the SR for however long his own schedule says before reporting.
    let rr_at = bob.poll_timeout().max(sr_at + one_way);
    let rr = bob
        .poll_report(rr_at, &nothing_sent(), &bob_received, 0)
        .unwrap();
    let events = alice.handle_packet(&rr, rr_at + one_way).unwrap();
    let remote = alice.remote_stats().unwrap();
    let rtt = remote.rtt.unwrap();
    let error = rtt.abs_diff(2 * one_way);
    // DLSR is in 1/65536 s, so the figure is exact to about 15 µs.
    assert!(error < Duration::from_micros(20), "{rtt:?}");
    assert_eq!(remote.fraction_lost, 0);
    assert!(events.contains(&RtcpEvent::ReportAboutUs {
        from: 0xb0b,
        report: remote
    }));

    // A later RR without a usable LSR (Bob lost track) keeps the last round trip.
    let mut forgetful = RtcpSession::new(0xb0b, "bob@b", CLOCK_RATE, 9);
    let later = forgetful.poll_timeout().max(rr_at);
    let no_lsr = forgetful
        .poll_report(later, &nothing_sent(), &bob_received, 0)
        .unwrap();
    alice.handle_packet(&no_lsr, later + one_way).unwrap();
    assert_eq!(alice.remote_stats().unwrap().rtt, Some(rtt));
}

#[test]
fn round_trip_time_reproduces_the_rfc_3550_example() {
    // Put our wallclock origin where the SR we send carries NTP 0xb44db705.20000000 (LSR
    // 0xb705:2000); the peer answers 11.375 s later (A = 0xb710:8000) with DLSR 0x0005:4000.
    let session = RtcpSession::new(0x1, "a@a", CLOCK_RATE, 4);
    let sr_at = session.poll_timeout();
    let origin = NtpTimestamp(0xb44d_b705_2000_0000 - NtpTimestamp::from_duration(sr_at).0);
    let mut session = session.with_wallclock(origin);
    let sent = SendStats {
        packets: 1,
        payload_octets: 160,
    };
    let sr = session
        .poll_report(sr_at, &sent, &nothing_received(), 0)
        .unwrap();
    let Some(RtcpPacket::SenderReport { info, .. }) = parse_compound(&sr).unwrap().first().cloned()
    else {
        panic!("expected an SR");
    };
    assert_eq!(info.ntp.middle_32(), 0xb705_2000);

    let reply = sipterm::media::rtcp::build_compound(&[RtcpPacket::ReceiverReport {
        ssrc: 0x2,
        reports: vec![sipterm::media::rtcp::ReportBlock {
            ssrc: 0x1,
            last_sr: 0xb705_2000,
            delay_since_last_sr: 0x0005_4000,
            ..Default::default()
        }],
    }])
    .unwrap();
    session
        .handle_packet(&reply, sr_at + Duration::from_millis(11_375))
        .unwrap();
    assert_eq!(
        session.remote_stats().unwrap().rtt,
        Some(Duration::from_millis(6125))
    );

    // An LSR that names no SR of ours yields no round trip.
    let mut fresh = RtcpSession::new(0x1, "a@a", CLOCK_RATE, 4);
    fresh
        .handle_packet(&reply, sr_at + Duration::from_millis(11_375))
        .unwrap();
    assert_eq!(fresh.remote_stats().unwrap().rtt, None);
}

#[test]
fn goodbye_is_sent_once_and_read_with_its_reason() {
    let mut alice = RtcpSession::new(0xa, "alice@a", CLOCK_RATE, 1);
    let mut bob = RtcpSession::new(0xb, "bob@b", CLOCK_RATE, 2);
    let bye = alice.bye(Some("hung up"));
    assert_eq!(
        packet_types(&bye),
        vec![PT_RECEIVER_REPORT, 202, PT_GOODBYE]
    );
    let events = bob.handle_packet(&bye, Duration::from_secs(1)).unwrap();
    assert!(events.contains(&RtcpEvent::Goodbye {
        sources: vec![0xa],
        reason: Some("hung up".into())
    }));
    let due = alice.poll_timeout();
    assert_eq!(
        alice.poll_report(due, &nothing_sent(), &nothing_received(), 0),
        None,
        "no reports after BYE"
    );
}

/// Deterministic byte source for the mutation loop.
fn next_byte(state: &mut u32) -> u8 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    (*state >> 24) as u8
}

#[test]
fn truncated_mutated_and_garbage_datagrams_never_panic() {
    let mut alice = RtcpSession::new(0xa, "alice@example.org", CLOCK_RATE, 1);
    let sent = SendStats {
        packets: 10,
        payload_octets: 1600,
    };
    let received = ReceiveStats {
        ssrc: Some(0xb),
        received: 9,
        expected: 10,
        lost: 1,
        ..ReceiveStats::default()
    };
    let mut valid = alice
        .poll_report(alice.poll_timeout(), &sent, &received, 77)
        .unwrap();
    valid.extend(alice.bye(Some("done")));
    let mut bob = RtcpSession::new(0xb, "bob@example.org", CLOCK_RATE, 2);
    assert!(bob.handle_packet(&valid, Duration::from_secs(3)).is_ok());

    // A prefix is valid exactly when it ends where a packet of the compound ends.
    let mut packet_ends = Vec::new();
    let mut end = 0;
    while end < valid.len() {
        end += (usize::from(u16::from_be_bytes([valid[end + 2], valid[end + 3]])) + 1) * 4;
        packet_ends.push(end);
    }
    assert_eq!(packet_ends.len(), 5, "SR, SDES, RR, SDES, BYE");
    for len in 0..valid.len() {
        let result = bob.handle_packet(&valid[..len], Duration::from_secs(3));
        assert_eq!(
            result.is_ok(),
            packet_ends.contains(&len),
            "prefix of {len} bytes"
        );
    }

    let mut state = 0x2545_f491;
    let mut rejected = 0;
    for _ in 0..20_000 {
        let mut mutated = valid.clone();
        for _ in 0..=next_byte(&mut state) % 4 {
            let at = usize::from(next_byte(&mut state)) % mutated.len();
            mutated[at] = next_byte(&mut state);
        }
        if bob.handle_packet(&mutated, Duration::from_secs(4)).is_err() {
            rejected += 1;
        }
    }
    assert!(
        rejected > 1000,
        "mutations should often break the framing: {rejected}"
    );

    for len in 0..300 {
        let garbage: Vec<u8> = (0..len).map(|_| next_byte(&mut state)).collect();
        let _ = bob.handle_packet(&garbage, Duration::from_secs(5));
        // Forcing version 2 gets the garbage past the first check.
        let mut versioned = garbage;
        if let Some(first) = versioned.first_mut() {
            *first = 0x80 | (*first & 0x3f);
        }
        let _ = bob.handle_packet(&versioned, Duration::from_secs(5));
    }
    // Bob still works after all that.
    let fresh = RtcpSession::new(0xa, "alice@example.org", CLOCK_RATE, 1).bye(None);
    assert!(bob.handle_packet(&fresh, Duration::from_secs(6)).is_ok());
}
