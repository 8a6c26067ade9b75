//! Registration with digest auth, in virtual time: what a registrar sees and what the user is
//! told, including the failure paths that must not turn into retry storms.

mod common;

use std::time::Instant;

use common::sim::*;
use sipterm::sip::auth;
use sipterm::sip::message::{Message, Method, Request};
use sipterm::sip::registration::RegistrationState;
use sipterm::sip::ua::{Command, UaEvent};

const CHALLENGE: &str = r#"Digest realm="atlanta.com", nonce="84a4cc6f3082121f32b42a2187831a9e", qop="auth", algorithm=MD5"#;

fn registration_events(events: &[UaEvent]) -> Vec<(RegistrationState, Option<u16>)> {
    events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Registration { state, code, .. } => Some((*state, *code)),
            _ => None,
        })
        .collect()
}

fn only_register(sent: Vec<(sipterm::sip::transaction::Destination, Request)>) -> Request {
    assert_eq!(
        sent.len(),
        1,
        "expected exactly one request, got {:?}",
        sent.iter().map(|(_, r)| r.first_line()).collect::<Vec<_>>()
    );
    let (dest, req) = sent.into_iter().next().expect("one");
    assert_eq!(
        dest.addr,
        addr("127.0.0.1:5060"),
        "every request goes to the outbound proxy"
    );
    assert_eq!(req.method, Method::Register);
    req
}

/// Plays a registrar that challenges once and accepts `password`.
fn answer_as_registrar(
    ua: &mut sipterm::sip::ua::UserAgent,
    now: Instant,
    req: &Request,
    password: &str,
    granted: u32,
) -> u16 {
    let source = udp("127.0.0.1:5060");
    match req.headers.get("Authorization") {
        None => {
            ua.handle_datagram(
                source,
                &reply(
                    req,
                    401,
                    "Unauthorized",
                    &[("WWW-Authenticate", CHALLENGE.to_string())],
                ),
                now,
            );
            401
        }
        Some(value) => {
            if auth::verify(value, "REGISTER", password).unwrap_or(false) {
                let contact = req
                    .headers
                    .get("Contact")
                    .unwrap_or_default()
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                ua.handle_datagram(
                    source,
                    &reply(
                        req,
                        200,
                        "OK",
                        &[("Contact", format!("{contact};expires={granted}"))],
                    ),
                    now,
                );
                200
            } else {
                ua.handle_datagram(
                    source,
                    &reply(
                        req,
                        401,
                        "Unauthorized",
                        &[("WWW-Authenticate", CHALLENGE.replace("84a4", "9999"))],
                    ),
                    now,
                );
                401
            }
        }
    }
}

#[test]
fn registers_through_outbound_proxy_with_digest_and_refreshes_before_expiry() {
    let mut ua = user_agent(&AccountSpec::default());
    let base = Instant::now();
    let mut now = base;
    ua.handle_command(Command::Register, now);
    let first = only_register(requests(&mut ua));
    // The Request-URI is the registrar's, sent to the proxy without resolving atlanta.com.
    assert_eq!(first.uri.to_string(), "sip:atlanta.com");
    assert!(
        first
            .headers
            .get("Route")
            .unwrap_or_default()
            .contains("127.0.0.1:5060;lr")
    );
    assert_eq!(first.headers.get("Expires"), Some("600"));
    let contact = first.headers.get("Contact").unwrap_or_default();
    assert!(contact.contains("sip:alice@127.0.0.1:5062"), "{contact}");
    assert_eq!(answer_as_registrar(&mut ua, now, &first, "secret", 60), 401);

    let second = only_register(requests(&mut ua));
    assert_eq!(
        second.headers.get("Call-ID"),
        first.headers.get("Call-ID"),
        "same Call-ID for the binding"
    );
    assert_eq!(
        second.headers.cseq().map(|c| c.seq).ok(),
        Some(first.headers.cseq().map(|c| c.seq).unwrap_or(0) + 1)
    );
    let authz = second.headers.get("Authorization").unwrap_or_default();
    assert!(
        authz.contains("username=\"alice\"")
            && authz.contains("realm=\"atlanta.com\"")
            && authz.contains("nc=00000001"),
        "{authz}"
    );
    assert!(
        !authz.contains("secret"),
        "the password never goes on the wire"
    );
    assert_eq!(
        answer_as_registrar(&mut ua, now, &second, "secret", 60),
        200
    );
    let ev = events(&mut ua);
    assert_eq!(
        registration_events(&ev),
        vec![(RegistrationState::Registered, Some(200))]
    );
    assert!(ev.iter().any(|e| matches!(
        e,
        UaEvent::Registration {
            expires: Some(60),
            ..
        }
    )));

    // Refresh at half of the granted 60 s: nothing before 30 s, one REGISTER at 30 s.
    assert!(run_until(&mut ua, &mut now, after(base, 29.9)).is_empty());
    let refresh: Vec<_> = run_until(&mut ua, &mut now, after(base, 30.1));
    assert_eq!(refresh.len(), 1);
    let Message::Request(refresh) = &refresh[0].1 else {
        panic!("expected a request")
    };
    assert_eq!(refresh.method, Method::Register);
    // Pre-emptive credentials with the next nonce count: no extra 401 round trip.
    assert!(
        refresh
            .headers
            .get("Authorization")
            .unwrap_or_default()
            .contains("nc=00000002")
    );
}

#[test]
fn wrong_password_fails_once_and_backs_off_without_a_storm() {
    let mut ua = user_agent(&AccountSpec {
        password: Some("wrong"),
        ..AccountSpec::default()
    });
    let base = Instant::now();
    let mut now = base;
    ua.handle_command(Command::Register, now);
    let first = only_register(requests(&mut ua));
    answer_as_registrar(&mut ua, now, &first, "secret", 60);
    let second = only_register(requests(&mut ua));
    assert_eq!(
        answer_as_registrar(&mut ua, now, &second, "secret", 60),
        401
    );
    // The second challenge after we answered is a rejection: no third REGISTER now.
    assert!(
        requests(&mut ua).is_empty(),
        "no retry loop on a bad password"
    );
    let ev = events(&mut ua);
    assert_eq!(
        registration_events(&ev),
        vec![(RegistrationState::Failed, Some(401))]
    );

    // Over the next ten minutes: retries only on the back-off schedule (30, 60, 120, 240 s...).
    let mut attempts = Vec::new();
    let end = after(base, 600.0);
    while now < end {
        let next = ua.poll_timeout().map(|t| t.min(end)).unwrap_or(end);
        for (_, msg) in run_until(&mut ua, &mut now, next) {
            if let Message::Request(req) = msg {
                attempts.push(now.duration_since(base).as_secs());
                answer_as_registrar(&mut ua, now, &req, "secret", 60);
                let again = requests(&mut ua);
                for (_, retry) in again {
                    answer_as_registrar(&mut ua, now, &retry, "secret", 60);
                }
            }
        }
        if next == end {
            break;
        }
    }
    assert_eq!(
        attempts,
        vec![30, 90, 210, 450],
        "back-off doubles from 30 s"
    );
}

#[test]
fn dead_registrar_times_out_with_408_and_retries_slowly() {
    let mut ua = user_agent(&AccountSpec::default());
    let base = Instant::now();
    let mut now = base;
    ua.handle_command(Command::Register, now);
    let mut sent_at = Vec::new();
    for (_, m) in sent(&mut ua) {
        if let Message::Request(_) = m {
            sent_at.push(0.0);
        }
    }
    let mut registered_failed = None;
    while now < after(base, 120.0) {
        let next = ua
            .poll_timeout()
            .expect("a timer is always armed while trying");
        for (_, m) in run_until(&mut ua, &mut now, next) {
            if let Message::Request(_) = m {
                sent_at.push(now.duration_since(base).as_secs_f64());
            }
        }
        for e in events(&mut ua) {
            if let UaEvent::Registration {
                state: RegistrationState::Failed,
                code,
                ..
            } = e
            {
                registered_failed.get_or_insert((now.duration_since(base).as_secs_f64(), code));
            }
        }
    }
    let (failed_at, code) = registered_failed.expect("the user hears of the failure");
    assert_eq!(code, Some(408));
    assert!(
        (failed_at - 32.0).abs() < 0.01,
        "Timer F = 64*T1 = 32 s, got {failed_at}"
    );
    // Retransmissions of the first REGISTER: 0, 0.5, 1.5, 3.5, 7.5, then every 4 s (T2) to 32 s:
    // 11 packets; the next attempt only at 32 + 30 = 62 s.
    let first_attempt: Vec<f64> = sent_at.iter().copied().filter(|t| *t < 32.0).collect();
    assert_eq!(first_attempt.len(), 11, "{first_attempt:?}");
    assert!(
        sent_at.iter().all(|t| *t < 32.0 || *t >= 62.0),
        "{sent_at:?}"
    );
}

#[test]
fn interval_too_brief_is_retried_with_min_expires() {
    let mut ua = user_agent(&AccountSpec {
        expires: 60,
        ..AccountSpec::default()
    });
    let now = Instant::now();
    ua.handle_command(Command::Register, now);
    let first = only_register(requests(&mut ua));
    ua.handle_datagram(
        udp("127.0.0.1:5060"),
        &reply(
            &first,
            423,
            "Interval Too Brief",
            &[("Min-Expires", "3600".into())],
        ),
        now,
    );
    let second = only_register(requests(&mut ua));
    assert_eq!(second.headers.get("Expires"), Some("3600"));
    assert!(
        second
            .headers
            .get("Contact")
            .unwrap_or_default()
            .contains("expires=3600")
    );
}

#[test]
fn unregister_sends_expires_zero_and_reports_unregistered() {
    let mut ua = user_agent(&AccountSpec::default());
    let now = Instant::now();
    ua.handle_command(Command::Register, now);
    let first = only_register(requests(&mut ua));
    answer_as_registrar(&mut ua, now, &first, "secret", 600);
    let second = only_register(requests(&mut ua));
    answer_as_registrar(&mut ua, now, &second, "secret", 600);
    events(&mut ua);
    ua.handle_command(Command::Shutdown, now);
    let bye = only_register(requests(&mut ua));
    assert_eq!(bye.headers.get("Expires"), Some("0"));
    assert!(
        bye.headers.get("Authorization").is_some(),
        "credentials reused for the unregister"
    );
    ua.handle_datagram(udp("127.0.0.1:5060"), &reply(&bye, 200, "OK", &[]), now);
    let ev = events(&mut ua);
    assert_eq!(
        registration_events(&ev),
        vec![(RegistrationState::Unregistered, Some(200))]
    );
    assert!(ev.contains(&UaEvent::ShutdownComplete));
}

#[test]
fn shutdown_without_answer_completes_after_the_grace_period() {
    let mut ua = user_agent(&AccountSpec::default());
    let base = Instant::now();
    let mut now = base;
    ua.handle_command(Command::Register, now);
    let first = only_register(requests(&mut ua));
    ua.handle_datagram(udp("127.0.0.1:5060"), &reply(&first, 200, "OK", &[]), now);
    events(&mut ua);
    ua.handle_command(Command::Shutdown, now);
    run_until(&mut ua, &mut now, after(base, 2.9));
    assert!(!events(&mut ua).contains(&UaEvent::ShutdownComplete));
    run_until(&mut ua, &mut now, after(base, 3.1));
    assert!(
        events(&mut ua).contains(&UaEvent::ShutdownComplete),
        "quit never hangs on a dead registrar"
    );
}

#[test]
fn contact_follows_the_address_the_registrar_saw_behind_nat() {
    let mut ua = user_agent(&AccountSpec {
        password: None,
        ..AccountSpec::default()
    });
    let now = Instant::now();
    ua.handle_command(Command::Register, now);
    let mut first = only_register(requests(&mut ua));
    // A NAT between us and the registrar: it fills in received/rport (RFC 3581).
    let via = first
        .headers
        .get("Via")
        .unwrap_or_default()
        .replace(";rport", ";received=203.0.113.7;rport=40000");
    first.headers.set("Via", via);
    ua.handle_datagram(udp("127.0.0.1:5060"), &reply(&first, 200, "OK", &[]), now);
    let second = only_register(requests(&mut ua));
    let contact = second.headers.get("Contact").unwrap_or_default();
    assert!(contact.contains("sip:alice@203.0.113.7:40000"), "{contact}");
    ua.handle_datagram(udp("127.0.0.1:5060"), &reply(&second, 200, "OK", &[]), now);
    assert!(
        requests(&mut ua).is_empty(),
        "no re-registration loop once the Contact is right"
    );
}
