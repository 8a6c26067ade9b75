//! Dialling like a phone, between two headless sipterms on loopback: a host name (resolved by
//! sipterm's resolver, here `localhost`), a bare user or number at the account's own domain,
//! and a name that does not exist (a clear error, the program goes on).

mod common;

use std::time::Duration;

use common::headless::{Headless, HeadlessOptions};

const SIGNALLING: Duration = Duration::from_secs(15);

fn account(name: &str, domain: &str) -> String {
    format!("[[account]]\nname = \"{name}\"\nuri = \"sip:{name}@{domain}\"\n")
}

/// Bob answers every call at once; Alice's account lives at `domain`.
fn alice_and_bob(alice_domain: impl Fn(u16) -> String) -> (Headless, Headless) {
    let bob = Headless::spawn(
        "bob",
        &HeadlessOptions {
            auto_answer_ms: Some(0),
            ..HeadlessOptions::default()
        },
    )
    .expect("bob starts");
    let alice = Headless::spawn(
        "alice",
        &HeadlessOptions {
            config_toml: Some(account("alice", &alice_domain(bob.listen.port()))),
            ..HeadlessOptions::default()
        },
    )
    .expect("alice starts");
    (alice, bob)
}

fn call_and_hang_up(alice: &mut Headless, bob: &mut Headless, what: &str) -> serde_json::Value {
    alice.send(&format!("dial {what}")).expect("dial");
    let confirmed = alice
        .expect_call_state("confirmed", SIGNALLING)
        .unwrap_or_else(|e| panic!("`dial {what}`: {e}"));
    let incoming = bob
        .expect_call_state("confirmed", SIGNALLING)
        .expect("bob answers");
    alice.send("hangup").expect("hangup");
    alice
        .expect_call_state("terminated", SIGNALLING)
        .expect("alice ends");
    bob.expect_call_state("terminated", SIGNALLING)
        .expect("bob ends");
    assert_eq!(confirmed["code"], 200, "{confirmed}");
    incoming
}

#[test]
fn a_host_name_is_dialled_through_the_resolver() {
    let (mut alice, mut bob) = alice_and_bob(|_| "127.0.0.1".to_string());
    let port = bob.listen.port();
    call_and_hang_up(&mut alice, &mut bob, &format!("sip:bob@localhost:{port}"));
    // The same without `sip:`.
    call_and_hang_up(&mut alice, &mut bob, &format!("bob@localhost:{port}"));
}

#[test]
fn a_bare_user_or_number_goes_to_the_accounts_domain() {
    let (mut alice, mut bob) = alice_and_bob(|port| format!("localhost:{port}"));
    for what in ["bob", "1234"] {
        let incoming = call_and_hang_up(&mut alice, &mut bob, what);
        assert!(
            incoming["remote"]
                .as_str()
                .is_some_and(|r| r.contains("alice@localhost")),
            "{incoming}"
        );
    }
    let invites: Vec<String> = bob
        .events_of("sip")
        .iter()
        .filter_map(|e| e["summary"].as_str())
        .filter(|s| s.starts_with("INVITE "))
        .map(str::to_string)
        .collect();
    let port = bob.listen.port();
    assert_eq!(
        invites,
        vec![
            format!("INVITE sip:bob@localhost:{port} SIP/2.0"),
            format!("INVITE sip:1234@localhost:{port} SIP/2.0"),
        ]
    );
}

#[test]
fn a_name_that_does_not_resolve_ends_the_call_with_the_reason() {
    let (mut alice, mut bob) = alice_and_bob(|_| "127.0.0.1".to_string());
    // `.invalid` never resolves (RFC 2606); nothing leaves the machine for it that matters.
    alice.send("dial sip:bob@nowhere.invalid").expect("dial");
    let ended = alice
        .expect_call_state("terminated", Duration::from_secs(30))
        .expect("the call ends");
    let reason = ended["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("nowhere.invalid"), "{ended}");
    // Still alive: the next call works.
    let port = bob.listen.port();
    call_and_hang_up(&mut alice, &mut bob, &format!("sip:bob@127.0.0.1:{port}"));
}

/// Listening on `[::]` serves IPv4 too: an IPv4 caller reaches it, and both hear RTP.
#[test]
fn a_dual_stack_listener_takes_an_ipv4_call() {
    let mut bob = Headless::spawn(
        "bob",
        &HeadlessOptions {
            auto_answer_ms: Some(0),
            listen: Some("[::]:0".to_string()),
            ..HeadlessOptions::default()
        },
    )
    .expect("bob starts on [::]");
    let mut alice = Headless::spawn("alice", &HeadlessOptions::default()).expect("alice starts");
    let port = bob.listen.port();
    alice
        .send(&format!("dial sip:bob@127.0.0.1:{port}"))
        .expect("dial");
    alice
        .expect_call_state("confirmed", SIGNALLING)
        .expect("confirmed");
    for side in [&mut alice, &mut bob] {
        side.expect_event(
            "RTP both ways",
            |e| e["event"] == "media" && e["received"].as_u64().unwrap_or(0) > 50,
            SIGNALLING,
        )
        .expect("media flows");
    }
    // Bob speaks of his peer as the IPv4 address it is, not ::ffff:127.0.0.1.
    let peers: Vec<String> = bob
        .events_of("sip")
        .iter()
        .filter_map(|e| e["peer"].as_str().map(str::to_string))
        .collect();
    assert!(
        peers.iter().all(|p| p.starts_with("127.0.0.1:")),
        "{peers:?}"
    );
    alice.send("hangup").expect("hangup");
    bob.expect_call_state("terminated", SIGNALLING)
        .expect("bob ends");
}
