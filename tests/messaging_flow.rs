//! The user agent's messages, subscriptions and watchers in virtual time: who may watch us,
//! what an incoming MESSAGE may carry, and how a subscription to a contact refreshes in its
//! dialog and comes back after the server forgot it. No sockets, no sleeps.

mod common;

use std::time::Instant;

use common::sim::{AccountSpec, after, events, reply, requests, responses, run_until, udp};
use sipterm::sip::message::{Method, Request};
use sipterm::sip::ua::{Command, MessagingPolicy, UaEvent, UserAgent, WatcherPolicy};

const PEER: &str = "127.0.0.1:5070";

/// Bob's user agent: no registrar, his contact alice may watch him.
fn bob() -> UserAgent {
    let spec = AccountSpec {
        name: "bob",
        aor: "sip:bob@biloxi.com",
        registrar: None,
        outbound_proxy: None,
        local: "127.0.0.1:5062",
        ..AccountSpec::default()
    };
    common::sim::user_agent_with_messaging(
        &spec,
        sipterm::sdp::SrtpPolicy::Off,
        MessagingPolicy {
            publish: false,
            mwi_subscribe: false,
            watchers: WatcherPolicy::Contacts,
            contacts: vec!["alice@atlanta.com".into()],
        },
    )
}

fn request(method: &str, from: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    // Branch and Call-ID take tokens: the address without its `@`.
    let id = from.replace('@', ".");
    let user = from.split('@').next().unwrap_or(from);
    let mut text = format!(
        "{method} sip:bob@127.0.0.1:5062 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PEER};branch=z9hG4bK-{method}-{id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from}>;tag=w1\r\n\
         To: <sip:bob@biloxi.com>\r\n\
         Call-ID: {method}-{id}@atlanta.com\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:{user}@{PEER}>\r\n\
         {extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    text.extend_from_slice(body);
    text
}

fn codes(ua: &mut UserAgent) -> Vec<u16> {
    responses(ua)
        .into_iter()
        .map(|(_, r)| {
            println!("{}", r.first_line());
            r.code
        })
        .collect()
}

#[test]
fn contacts_may_watch_us_strangers_may_not_and_unsubscribing_ends_with_a_notify() {
    let mut ua = bob();
    let t0 = Instant::now();
    let subscribe = |from: &str, expires: u32| {
        request(
            "SUBSCRIBE",
            from,
            &format!(
                "Event: dialog\r\nAccept: application/dialog-info+xml\r\nExpires: {expires}\r\n"
            ),
            b"",
        )
    };
    ua.handle_datagram(udp(PEER), &subscribe("mallory@evil.example", 600), t0);
    assert_eq!(codes(&mut ua), [403], "a stranger may not watch");
    assert!(requests(&mut ua).is_empty(), "and gets no NOTIFY");

    ua.handle_datagram(udp(PEER), &subscribe("alice@atlanta.com", 600), t0);
    let sent = common::sim::sent(&mut ua);
    let ok = sent
        .iter()
        .find_map(|(_, m)| match m {
            sipterm::sip::message::Message::Response(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a response");
    assert_eq!(ok.code, 200);
    assert_eq!(ok.headers.get("Expires"), Some("600"));
    let notify: Request = sent
        .iter()
        .find_map(|(_, m)| match m {
            sipterm::sip::message::Message::Request(r) if r.method == Method::Notify => {
                Some(r.clone())
            }
            _ => None,
        })
        .expect("a NOTIFY at once (RFC 6665 §4.2.1.2)");
    let body = String::from_utf8_lossy(&notify.body).to_string();
    assert!(body.contains("<dialog-info"), "{body}");
    assert!(
        notify
            .headers
            .get("Subscription-State")
            .is_some_and(|s| s.starts_with("active")),
        "{notify:?}"
    );
    ua.handle_datagram(udp(PEER), &reply(&notify, 200, "OK", &[]), t0);

    // Unsubscribe (same dialog: our tag in To): 200 and a final NOTIFY, terminated.
    let to_tag = ok.headers.get("To").unwrap_or_default().to_string();
    let unsubscribe = String::from_utf8_lossy(&subscribe("alice@atlanta.com", 0))
        .replace("To: <sip:bob@biloxi.com>", &format!("To: {to_tag}"))
        .replace("CSeq: 1 SUBSCRIBE", "CSeq: 2 SUBSCRIBE")
        .replace("branch=z9hG4bK-SUBSCRIBE", "branch=z9hG4bK-unsub");
    let now = after(t0, 5.0);
    ua.handle_datagram(udp(PEER), unsubscribe.as_bytes(), now);
    let sent = common::sim::sent(&mut ua);
    let last = sent
        .iter()
        .find_map(|(_, m)| match m {
            sipterm::sip::message::Message::Request(r) if r.method == Method::Notify => {
                Some(r.clone())
            }
            _ => None,
        })
        .expect("a final NOTIFY");
    assert!(
        last.headers
            .get("Subscription-State")
            .is_some_and(|s| s.starts_with("terminated")),
        "{last:?}"
    );
}

#[test]
fn incoming_messages_are_text_only_and_arrive_cleaned() {
    let mut ua = bob();
    let t0 = Instant::now();
    let message = |body: &[u8], content_type: &str, n: u32| {
        let text = request(
            "MESSAGE",
            "alice@atlanta.com",
            &format!("Content-Type: {content_type}\r\n"),
            body,
        );
        String::from_utf8_lossy(&text)
            .replace("Call-ID: MESSAGE-", &format!("Call-ID: {n}-"))
            .replace("branch=z9hG4bK-MESSAGE", &format!("branch=z9hG4bK-{n}"))
            .into_bytes()
    };
    ua.handle_datagram(
        udp(PEER),
        &message(b"\x00\x01", "application/octet-stream", 1),
        t0,
    );
    assert_eq!(codes(&mut ua), [415]);
    let long = vec![b'a'; 5000];
    ua.handle_datagram(udp(PEER), &message(&long, "text/plain", 2), t0);
    assert_eq!(codes(&mut ua), [413]);
    assert!(
        events(&mut ua)
            .iter()
            .all(|e| !matches!(e, UaEvent::MessageReceived { .. }))
    );

    let hostile = "Grüße\u{1b}]0;owned\u{7}\u{1b}[2J!".as_bytes();
    ua.handle_datagram(
        udp(PEER),
        &message(hostile, "text/plain; charset=UTF-8", 3),
        t0,
    );
    assert_eq!(codes(&mut ua), [200]);
    let text = events(&mut ua)
        .into_iter()
        .find_map(|e| match e {
            UaEvent::MessageReceived { text, from, .. } => Some((text, from)),
            _ => None,
        })
        .expect("the message");
    assert!(text.0.starts_with("Grüße"), "{text:?}");
    assert!(!text.0.chars().any(|c| c.is_control()), "{text:?}");
    assert_eq!(text.1, "sip:alice@atlanta.com");
}

#[test]
fn a_watched_contact_is_refreshed_in_its_dialog_and_resubscribed_after_a_481() {
    let mut ua = bob();
    let start = Instant::now();
    let mut now = start;
    ua.handle_command(
        Command::Watch {
            target: "sip:carol@127.0.0.1:5070".parse().expect("uri"),
        },
        now,
    );
    let subscribes: Vec<Request> = requests(&mut ua).into_iter().map(|(_, r)| r).collect();
    assert_eq!(subscribes.len(), 2, "presence and dialog");
    let presence = subscribes
        .iter()
        .find(|r| r.headers.get("Event") == Some("presence"))
        .expect("presence SUBSCRIBE")
        .clone();
    ua.handle_datagram(
        udp(PEER),
        &reply(
            &presence,
            200,
            "OK",
            &[
                ("Expires", "120".into()),
                ("Contact", format!("<sip:carol@{PEER}>")),
            ],
        ),
        now,
    );
    // Carol is available.
    let pidf = "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
                entity=\"sip:carol@h\"><tuple id=\"t\"><status><basic>open</basic></status>\
                </tuple></presence>";
    let notify = format!(
        "NOTIFY sip:bob@127.0.0.1:5062 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {PEER};branch=z9hG4bK-n1\r\n\
         From: <sip:carol@127.0.0.1:5070>;tag=srv1\r\n\
         To: {}\r\n\
         Call-ID: {}\r\n\
         CSeq: 1 NOTIFY\r\n\
         Contact: <sip:carol@{PEER}>\r\n\
         Event: presence\r\n\
         Subscription-State: active;expires=120\r\n\
         Content-Type: application/pidf+xml\r\n\
         Content-Length: {}\r\n\r\n{pidf}",
        presence.headers.get("From").unwrap_or_default(),
        presence.headers.call_id().unwrap_or_default(),
        pidf.len()
    );
    ua.handle_datagram(udp(PEER), notify.as_bytes(), now);
    assert_eq!(codes(&mut ua), [200]);
    let lamp = events(&mut ua).into_iter().find_map(|e| match e {
        UaEvent::Presence { availability, .. } => Some(availability.as_str()),
        _ => None,
    });
    assert_eq!(lamp, Some("available"));

    // Before the 120 s run out: a refresh in the same dialog (same Call-ID, the server's tag).
    let sent = run_until(&mut ua, &mut now, after(start, 119.0));
    let refresh = sent
        .into_iter()
        .find_map(|(_, m)| match m {
            sipterm::sip::message::Message::Request(r)
                if r.method == Method::Subscribe && r.headers.get("Event") == Some("presence") =>
            {
                Some(r)
            }
            _ => None,
        })
        .expect("a refresh before expiry");
    assert_eq!(refresh.headers.call_id(), presence.headers.call_id());
    assert!(
        refresh
            .headers
            .get("To")
            .is_some_and(|t| t.contains("tag=srv1")),
        "{refresh:?}"
    );
    // The server forgot the subscription: 481. A new one follows (new dialog), after a pause.
    ua.handle_datagram(udp(PEER), &reply(&refresh, 481, "Gone", &[]), now);
    let lamp = events(&mut ua).into_iter().find_map(|e| match e {
        UaEvent::Presence { availability, .. } => Some(availability.as_str()),
        _ => None,
    });
    assert_eq!(lamp, Some("unknown"), "the lamp no longer claims to know");
    let later = after(now, 600.0);
    let sent = run_until(&mut ua, &mut now, later);
    let again = sent
        .into_iter()
        .find_map(|(_, m)| match m {
            sipterm::sip::message::Message::Request(r)
                if r.method == Method::Subscribe && r.headers.get("Event") == Some("presence") =>
            {
                Some(r)
            }
            _ => None,
        })
        .expect("a new SUBSCRIBE");
    assert_ne!(again.headers.call_id(), presence.headers.call_id());
    assert!(
        again.headers.get("To").is_some_and(|t| !t.contains("tag=")),
        "a new dialog: {again:?}"
    );
}
