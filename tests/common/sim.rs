//! A simulated clock and an in-memory wire for the sans-IO user agent: tests feed bytes and
//! time in and read what comes out. No sockets, no sleeps.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipterm::sdp::Codec;
use sipterm::sip::auth::Password;
use sipterm::sip::message::{Message, Request, Response};
use sipterm::sip::parse::parse_datagram;
use sipterm::sip::transaction::{Destination, TimerConfig, TransportKind};
use sipterm::sip::ua::{AccountParams, OutDatagram, UaConfig, UaEvent, UserAgent};

pub fn udp(addr: &str) -> Destination {
    Destination {
        addr: addr.parse().expect("test address"),
        transport: TransportKind::Udp,
    }
}

pub struct AccountSpec<'a> {
    pub name: &'a str,
    pub aor: &'a str,
    pub password: Option<&'a str>,
    pub registrar: Option<&'a str>,
    pub outbound_proxy: Option<&'a str>,
    pub expires: u32,
    pub local: &'a str,
}

impl Default for AccountSpec<'_> {
    fn default() -> Self {
        AccountSpec {
            name: "alice",
            aor: "sip:alice@atlanta.com",
            password: Some("secret"),
            registrar: Some("sip:atlanta.com"),
            outbound_proxy: Some("sip:127.0.0.1:5060"),
            expires: 600,
            local: "127.0.0.1:5062",
        }
    }
}

pub fn user_agent(spec: &AccountSpec<'_>) -> UserAgent {
    user_agent_with_srtp(spec, sipterm::sdp::SrtpPolicy::Off)
}

/// Like `user_agent`, with the account's `srtp` policy.
pub fn user_agent_with_srtp(spec: &AccountSpec<'_>, srtp: sipterm::sdp::SrtpPolicy) -> UserAgent {
    user_agent_with_messaging(spec, srtp, Default::default())
}

/// Like `user_agent_with_srtp`, with presence, voicemail and watcher settings.
pub fn user_agent_with_messaging(
    spec: &AccountSpec<'_>,
    srtp: sipterm::sdp::SrtpPolicy,
    messaging: sipterm::sip::ua::MessagingPolicy,
) -> UserAgent {
    let aor: sipterm::sip::uri::Uri = spec.aor.parse().expect("aor");
    UserAgent::new(UaConfig {
        account: AccountParams {
            name: spec.name.into(),
            auth_username: aor.user.clone().unwrap_or_default(),
            aor,
            display_name: None,
            password: spec.password.map(Password::new),
            registrar: spec.registrar.map(|r| r.parse().expect("registrar")),
            outbound_proxy: spec.outbound_proxy.map(|r| r.parse().expect("proxy")),
            expires: spec.expires,
            transport: TransportKind::Udp,
        },
        local: spec.local.parse().expect("local"),
        user_agent: "sipterm-test".into(),
        timers: TimerConfig::default(),
        seed: 42.into(),
        codecs: vec![Codec::Opus, Codec::Pcmu, Codec::Pcma],
        busy_when_in_call: false,
        srtp,
        calls: Default::default(),
        messaging,
        call_numbers: Default::default(),
    })
}

/// Everything the UA wants to send right now, parsed.
pub fn sent(ua: &mut UserAgent) -> Vec<(Destination, Message)> {
    let mut out = Vec::new();
    while let Some(OutDatagram { dest, bytes }) = ua.poll_transmit() {
        let msg = parse_datagram(&bytes).unwrap_or_else(|e| {
            panic!(
                "UA sent unparseable bytes ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        out.push((dest, msg));
    }
    out
}

pub fn requests(ua: &mut UserAgent) -> Vec<(Destination, Request)> {
    sent(ua)
        .into_iter()
        .filter_map(|(d, m)| match m {
            Message::Request(r) => Some((d, r)),
            Message::Response(_) => None,
        })
        .collect()
}

pub fn responses(ua: &mut UserAgent) -> Vec<(Destination, Response)> {
    sent(ua)
        .into_iter()
        .filter_map(|(d, m)| match m {
            Message::Response(r) => Some((d, r)),
            Message::Request(_) => None,
        })
        .collect()
}

pub fn events(ua: &mut UserAgent) -> Vec<UaEvent> {
    let mut out = Vec::new();
    while let Some(e) = ua.poll_event() {
        out.push(e);
    }
    out
}

/// Advances virtual time to `until`, firing every timer on the way; returns what was sent.
pub fn run_until(
    ua: &mut UserAgent,
    now: &mut Instant,
    until: Instant,
) -> Vec<(Destination, Message)> {
    let mut out = Vec::new();
    loop {
        out.extend(sent(ua));
        match ua.poll_timeout() {
            Some(t) if t <= until => {
                *now = t.max(*now);
                ua.handle_timeout(*now);
            }
            _ => break,
        }
    }
    *now = until;
    out
}

/// A response to `request` as a registrar or peer would build it.
pub fn reply(request: &Request, code: u16, reason: &str, extra: &[(&str, String)]) -> Vec<u8> {
    let mut r = Response::new(code, reason);
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for v in request.headers.get_all(name) {
            let v = if name == "To" && !v.contains("tag=") {
                format!("{v};tag=srv1")
            } else {
                v.to_string()
            };
            r.headers.push(name, v);
        }
    }
    for (name, value) in extra {
        r.headers.push(*name, value.clone());
    }
    r.to_bytes()
}

pub fn after(base: Instant, secs: f64) -> Instant {
    base + Duration::from_secs_f64(secs)
}

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}
