//! `cargo fuzz run ua_datagrams`. The whole sans-IO user agent under hostile input: the data is
//! split into steps; each step's first byte picks the source (the proxy or a stranger, UDP or
//! TCP), how far virtual time moves and which user command runs, the rest is one datagram.
//! Nothing may panic, and everything the UA sends must parse back as SIP.
#![no_main]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sipterm::sdp::{Codec, Direction, LocalMedia, LocalSrtp, SrtpPolicy};
use sipterm::sip::auth::Password;
use sipterm::sip::parse::parse_datagram;
use sipterm::sip::transaction::{Destination, TimerConfig, TransportKind};
use sipterm::sip::ua::{AccountParams, Command, UaConfig, UserAgent};

fn user_agent() -> Option<UserAgent> {
    let aor: sipterm::sip::uri::Uri = "sip:alice@atlanta.com".parse().ok()?;
    Some(UserAgent::new(UaConfig {
        account: AccountParams {
            name: "alice".into(),
            auth_username: "alice".into(),
            aor,
            display_name: None,
            password: Some(Password::new("secret")),
            registrar: "sip:atlanta.com".parse().ok(),
            outbound_proxy: "sip:127.0.0.1:5060".parse().ok(),
            expires: 600,
            transport: TransportKind::Udp,
        },
        local: "127.0.0.1:5062".parse().ok()?,
        user_agent: "sipterm-fuzz".into(),
        timers: TimerConfig::default(),
        seed: 7.into(),
        codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
        busy_when_in_call: false,
        srtp: SrtpPolicy::Optional,
        calls: Default::default(),
        messaging: Default::default(),
        call_numbers: Default::default(),
    }))
}

fn media() -> LocalMedia {
    LocalMedia {
        address: IpAddr::from([127, 0, 0, 1]),
        rtp_port: 40000,
        codecs: vec![Codec::Opus, Codec::Pcmu],
        direction: Direction::SendRecv,
        session_id: 1,
        session_version: 1,
        srtp: LocalSrtp::new(SrtpPolicy::Optional),
    }
}

fn drain(ua: &mut UserAgent) {
    let mut sent = 0;
    while let Some(out) = ua.poll_transmit() {
        sent += 1;
        assert!(sent < 10_000, "the UA keeps transmitting");
        if out.dest.transport == TransportKind::Udp
            && let Err(e) = parse_datagram(&out.bytes)
        {
            panic!(
                "UA sent unparseable bytes ({e}): {:?}",
                String::from_utf8_lossy(&out.bytes)
            );
        }
    }
    while ua.poll_event().is_some() {}
}

fuzz_target!(|data: &[u8]| {
    let Some(mut ua) = user_agent() else {
        return;
    };
    let mut now = Instant::now();
    ua.handle_command(Command::Register, now);
    drain(&mut ua);
    // Steps are separated by "\n|\n" so that whole SIP messages fit inside one step.
    for step in data.split(|b| *b == b'|').take(64) {
        let Some((&control, datagram)) = step.split_first() else {
            continue;
        };
        now += Duration::from_millis(u64::from(control & 0x0f) * 250);
        ua.handle_timeout(now);
        match control >> 6 {
            1 => ua.handle_command(
                Command::Answer {
                    call: None,
                    media: media(),
                },
                now,
            ),
            2 => ua.handle_command(Command::Hangup { call: None }, now),
            // The PBX commands (issue 15) against whatever calls the datagrams made.
            3 if control & 0x30 == 0x10 => {
                let command = match control & 0x07 {
                    0 => Command::AttendedTransfer {
                        call: None,
                        consult: None,
                    },
                    1 => Command::TransferAnswer {
                        call: None,
                        accept: true,
                    },
                    2 => Command::InfoDtmf {
                        call: None,
                        digits: "1#".into(),
                    },
                    3 => Command::Hold { call: None },
                    4 => Command::SetDoNotDisturb(Some(480)),
                    _ => Command::SetDoNotDisturb(None),
                };
                ua.handle_command(command, now);
            }
            3 if control & 0x20 != 0 => {
                if let Ok(target) = "sip:bob@127.0.0.1:5070".parse() {
                    ua.handle_command(
                        Command::Dial {
                            target,
                            media: media(),
                        },
                        now,
                    );
                }
            }
            _ => {}
        }
        let source = Destination {
            addr: if control & 0x10 == 0 {
                "127.0.0.1:5060".parse().expect("literal")
            } else {
                "192.0.2.9:5060".parse().expect("literal")
            },
            transport: if control & 0x20 == 0 {
                TransportKind::Udp
            } else {
                TransportKind::Tcp
            },
        };
        ua.handle_datagram(source, datagram, now);
        drain(&mut ua);
    }
    // Let every timer run out: retransmissions end, calls time out, nothing panics.
    for _ in 0..64 {
        match ua.poll_timeout() {
            Some(at) if at > now => now = at,
            Some(_) => now += Duration::from_millis(1),
            None => break,
        }
        ua.handle_timeout(now);
        drain(&mut ua);
    }
});
