//! Several accounts in one headless sipterm against real registrars (two Kamailio instances),
//! instant messages through Kamailio, the voicemail indicator (RFC 3842) from the registrar
//! and not from a stranger, and SHA-256 digest registration with Kamailio.
//!
//! These tests need kamailio (the Makefile installs it); without it they fail.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::peers::{Kamailio, KamailioOptions};
use common::ports::free_udp_port;
use common::run::{RunOptions, Sipterm, config_with_account, recv_text};
use serde_json::Value;

const EVENT_TIMEOUT: Duration = Duration::from_secs(10);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

fn start_kamailio(users: &[(&str, &str)], options: KamailioOptions) -> Kamailio {
    let mut last = None;
    for _ in 0..3 {
        let port = free_udp_port().expect("free port");
        match Kamailio::start_with(users, port, options) {
            Ok(k) => return k,
            Err(e) => last = Some(e),
        }
    }
    panic!("kamailio did not start: {last:?}");
}

fn no_invite_auth() -> KamailioOptions {
    KamailioOptions {
        invite_auth: false,
        ..KamailioOptions::default()
    }
}

/// An `[[account]]` block registering `user` at `kamailio` (also its outbound proxy).
fn account(name: &str, user: &str, kamailio: &Kamailio) -> String {
    let k = kamailio.addr();
    format!(
        "[[account]]\nname = \"{name}\"\nuri = \"sip:{user}@sipterm.test\"\n\
         password = \"secret\"\nregistrar = \"sip:{k}\"\noutbound_proxy = \"sip:{k}\"\n\
         expires = 120\n\n"
    )
}

fn config(accounts: &[String]) -> String {
    format!("[sip]\nlisten = \"127.0.0.1:0\"\n\n{}", accounts.concat())
}

fn registered(account: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["event"] == "registration" && e["account"] == account && e["state"] == "registered"
}

/// Waits until every account in `names` has reported `registered` (in any order).
fn all_registered(who: &mut Sipterm, names: &[&str], registrars: &[&Kamailio]) {
    let done = |seen: &[Value]| {
        names.iter().all(|n| {
            seen.iter().any(|e| {
                e["event"] == "registration" && e["account"] == *n && e["state"] == "registered"
            })
        })
    };
    while !done(&who.seen) {
        expect(
            who,
            "accounts registered",
            |e| e["event"] == "registration" && e["state"] == "registered",
            registrars,
        );
    }
}

fn call_in_state(state: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["event"] == "call" && e["state"] == state
}

fn start(config: String, args: &[&str]) -> Sipterm {
    let mut options = RunOptions::with_config(config);
    for arg in args {
        options = options.arg(arg);
    }
    Sipterm::start(&options).expect("sipterm starts")
}

/// `who` waits for `what`, failing with the logs of both registrars.
fn expect(
    who: &mut Sipterm,
    what: &str,
    pred: impl Fn(&Value) -> bool,
    registrars: &[&Kamailio],
) -> Value {
    match who.expect_event(what, EVENT_TIMEOUT, pred) {
        Ok(event) => event,
        Err(e) => {
            let logs: Vec<String> = registrars.iter().map(|k| k.log()).collect();
            panic!(
                "{e}\nsipterm log:\n{}\nkamailio logs:\n{}",
                who.log_text(),
                logs.join("\n----\n")
            )
        }
    }
}

/// A call from `caller` (the `dial` line given) to `callee` (auto-answering) gets through,
/// then the caller hangs up. Returns the caller's and the callee's `confirmed` / `incoming`
/// events.
fn call_through(
    caller: &mut Sipterm,
    dial: &str,
    callee: &mut Sipterm,
    registrars: &[&Kamailio],
) -> (Value, Value) {
    caller.send(dial).expect("dial");
    let incoming = expect(
        callee,
        "an incoming call",
        call_in_state("incoming"),
        registrars,
    );
    let confirmed = expect(
        caller,
        "the call answered",
        call_in_state("confirmed"),
        registrars,
    );
    expect(
        callee,
        "the call up",
        call_in_state("confirmed"),
        registrars,
    );
    caller.send("hangup").expect("hangup");
    expect(
        caller,
        "the call ended",
        call_in_state("terminated"),
        registrars,
    );
    expect(
        callee,
        "the call ended",
        call_in_state("terminated"),
        registrars,
    );
    (confirmed, incoming)
}

#[test]
fn two_accounts_on_two_registrars_call_out_and_in_and_message_on_each() {
    let work = start_kamailio(&[("alice", "secret"), ("bob", "secret")], no_invite_auth());
    let home = start_kamailio(&[("carol", "secret"), ("dave", "secret")], no_invite_auth());
    let both = [&work, &home];
    // One sipterm with both accounts: alice at work, carol at home.
    let mut me = start(
        config(&[
            account("work", "alice", &work),
            account("home", "carol", &home),
        ]),
        &["--auto-answer"],
    );
    let mut bob = start(config(&[account("bob", "bob", &work)]), &["--auto-answer"]);
    let mut dave = start(
        config(&[account("dave", "dave", &home)]),
        &["--auto-answer"],
    );
    let ready = me.seen.iter().find(|e| e["event"] == "ready").cloned();
    let ready = ready.expect("ready event");
    let names: Vec<&str> = ready["accounts"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["work", "home"], "both accounts run: {ready}");
    let ports: Vec<&str> = ready["accounts"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["listen"].as_str()).collect())
        .unwrap_or_default();
    assert_ne!(ports[0], ports[1], "each account has its own address");
    all_registered(&mut me, &["work", "home"], &both);
    expect(&mut bob, "bob registered", registered("bob"), &both);
    expect(&mut dave, "dave registered", registered("dave"), &both);

    // Out on each account: the account picked reaches its own registrar's users only.
    let (out_work, at_bob) = call_through(
        &mut me,
        "dial --account work sip:bob@sipterm.test",
        &mut bob,
        &both,
    );
    assert_eq!(out_work["account"], "work", "{out_work}");
    assert!(
        at_bob["remote"]
            .as_str()
            .is_some_and(|r| r.contains("alice@sipterm.test")),
        "bob sees alice calling: {at_bob}"
    );
    let (out_home, at_dave) = call_through(
        &mut me,
        "dial --account home sip:dave@sipterm.test",
        &mut dave,
        &both,
    );
    assert_eq!(out_home["account"], "home", "{out_home}");
    assert!(
        at_dave["remote"]
            .as_str()
            .is_some_and(|r| r.contains("carol@sipterm.test")),
        "dave sees carol calling: {at_dave}"
    );
    // Dave's account is on the other registrar: the work account cannot reach him.
    me.send("dial --account work sip:dave@sipterm.test")
        .expect("dial");
    let failed = expect(&mut me, "a failed call", call_in_state("terminated"), &both);
    assert_eq!(
        failed["code"], 404,
        "work's registrar does not know dave: {failed}"
    );
    assert_eq!(failed["account"], "work");

    // In on each account: the incoming call says which one.
    let (_, in_work) = call_through(&mut bob, "dial sip:alice@sipterm.test", &mut me, &both);
    assert_eq!(in_work["account"], "work", "{in_work}");
    let (_, in_home) = call_through(&mut dave, "dial sip:carol@sipterm.test", &mut me, &both);
    assert_eq!(in_home["account"], "home", "{in_home}");

    // MESSAGE both ways through Kamailio, with text beyond ASCII.
    let text = "Grüße aus Köln ☎ — ça va?";
    me.send(&format!(
        "message --account home sip:dave@sipterm.test {text}"
    ))
    .expect("message");
    let got = expect(
        &mut dave,
        "a message",
        |e| e["event"] == "message" && e["dir"] == "in",
        &both,
    );
    assert_eq!(got["text"], text, "the text arrives unchanged: {got}");
    assert!(
        got["peer"]
            .as_str()
            .is_some_and(|p| p.contains("carol@sipterm.test")),
        "from the home account's address: {got}"
    );
    let status = expect(
        &mut me,
        "the delivery status",
        |e| e["event"] == "message" && e["dir"] == "out" && e["status"] != "sending",
        &both,
    );
    assert_eq!(status["status"], "delivered", "{status}");
    assert_eq!(status["code"], 200);
    assert_eq!(status["account"], "home");

    let reply = "Zurück: ¡hola! 日本語";
    bob.send(&format!("message sip:alice@sipterm.test {reply}"))
        .expect("message");
    let got = expect(
        &mut me,
        "bob's message",
        |e| e["event"] == "message" && e["dir"] == "in",
        &both,
    );
    assert_eq!(got["text"], reply, "{got}");
    assert_eq!(
        got["account"], "work",
        "it came in on the work account: {got}"
    );

    // A message to nobody: Kamailio's 404 is the delivery status.
    me.send("message --account work sip:nobody@sipterm.test hello?")
        .expect("message");
    let status = expect(
        &mut me,
        "a failed delivery",
        |e| e["event"] == "message" && e["dir"] == "out" && e["status"] == "failed",
        &both,
    );
    assert_eq!(status["code"], 404, "{status}");

    for s in [&mut me, &mut bob, &mut dave] {
        assert_eq!(s.quit(EXIT_TIMEOUT).and_then(|c| c.code()), Some(0));
    }
}

#[test]
fn an_account_disabled_at_run_time_unregisters_and_comes_back_when_enabled() {
    let work = start_kamailio(
        &[("alice", "secret"), ("carol", "secret")],
        no_invite_auth(),
    );
    let ks = [&work];
    let mut me = start(
        config(&[
            account("work", "alice", &work),
            account("home", "carol", &work),
        ]),
        &[],
    );
    all_registered(&mut me, &["work", "home"], &ks);
    me.send("account disable home").expect("disable");
    // The router says so at once; the engine's un-REGISTER answer follows.
    let unregistered = |e: &Value| {
        e["event"] == "registration" && e["account"] == "home" && e["state"] == "unregistered"
    };
    if !me.seen.iter().any(unregistered) {
        expect(&mut me, "home unregistered", unregistered, &ks);
    }
    assert!(
        me.seen
            .iter()
            .any(|e| e["event"] == "account" && e["account"] == "home" && e["enabled"] == false),
        "home disabled"
    );
    let last = me.seen.iter().rev().find(|e| unregistered(e)).cloned();
    assert_eq!(last.map(|e| e["code"].clone()), Some(Value::from(200)));
    // Its calls are refused by the router: no engine for it.
    me.send("dial --account home sip:alice@sipterm.test")
        .expect("dial");
    let error = expect(&mut me, "an error", |e| e["event"] == "error", &ks);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("home")),
        "{error}"
    );
    me.send("account enable home").expect("enable");
    expect(
        &mut me,
        "home enabled",
        |e| e["event"] == "account" && e["account"] == "home" && e["enabled"] == true,
        &ks,
    );
    expect(&mut me, "home registered again", registered("home"), &ks);
    assert_eq!(me.quit(EXIT_TIMEOUT).and_then(|c| c.code()), Some(0));
}

#[test]
fn sha256_digest_registers_to_kamailio() {
    let kamailio = start_kamailio(
        &[("alice", "secret")],
        KamailioOptions {
            sha256: true,
            ..KamailioOptions::default()
        },
    );
    let registrar = kamailio.addr();
    let config = config_with_account(
        "",
        &format!("password = \"secret\"\nregistrar = \"sip:{registrar}\"\nexpires = 120\n"),
    );
    let mut sipterm = Sipterm::start(&RunOptions::with_config(config)).expect("sipterm");
    let event = sipterm
        .expect_event("a final registration state", EVENT_TIMEOUT, |e| {
            e["event"] == "registration" && (e["state"] == "registered" || e["state"] == "failed")
        })
        .unwrap_or_else(|e| panic!("{e}\nkamailio: {}", kamailio.log()));
    assert_eq!(event["state"], "registered", "{event}\n{}", kamailio.log());
    assert_eq!(event["code"], 200);
    // Kamailio checked the response with SHA-256 (an MD5 one fails) and logs that it named it.
    assert!(
        kamailio.log().contains("SHA-256 digest accepted for alice"),
        "{}",
        kamailio.log()
    );
    assert_eq!(sipterm.quit(EXIT_TIMEOUT).and_then(|c| c.code()), Some(0));
}

// ------------------------------------------------------------------------- MWI

/// The value of the first header `name` (full names only).
fn header(text: &str, name: &str) -> Option<String> {
    text.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A response to `request` with its Via, From, To (tagged), Call-ID and CSeq.
fn response(request: &str, code: u16, reason: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in request.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let name = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" => {
                out.push_str(line);
                if !line.contains(";tag=") {
                    out.push_str(";tag=registrar");
                }
                out.push_str("\r\n");
            }
            _ => {}
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// An unsolicited message-summary NOTIFY (RFC 3842 §3.1 without a subscription) from `from`.
fn mwi_notify(from: SocketAddr, to: SocketAddr, seq: u32, body: &str) -> String {
    format!(
        "NOTIFY sip:alice@{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-mwi-{seq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:voicemail@sipterm.test>;tag=vm{seq}\r\n\
         To: <sip:alice@sipterm.test>\r\n\
         Call-ID: mwi-{seq}@sipterm.test\r\n\
         CSeq: {seq} NOTIFY\r\n\
         Contact: <sip:voicemail@{from}>\r\n\
         Event: message-summary\r\n\
         Subscription-State: active\r\n\
         Content-Type: application/simple-message-summary\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The status code of the response to `call_id` that `socket` receives next.
fn response_code(socket: &UdpSocket, call_id: &str) -> u16 {
    loop {
        let text = recv_text(socket, EVENT_TIMEOUT).expect("a response");
        if text.starts_with("SIP/2.0 ") && header(&text, "Call-ID").as_deref() == Some(call_id) {
            return text[8..11].parse().expect("status code");
        }
    }
}

#[test]
fn voicemail_notify_from_the_registrar_lights_the_indicator_and_a_strangers_does_not() {
    let registrar = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let registrar_addr = registrar.local_addr().expect("addr");
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let config = config_with_account(
        "",
        &format!("password = \"secret\"\nregistrar = \"sip:{registrar_addr}\"\nexpires = 120\n"),
    );
    let mut sipterm = Sipterm::start(&RunOptions::with_config(config)).expect("sipterm");
    let me = sipterm.addr();
    // Be the registrar: take the REGISTER.
    let register = loop {
        let text = recv_text(&registrar, EVENT_TIMEOUT).expect("a REGISTER");
        if text.starts_with("REGISTER ") {
            break text;
        }
    };
    let contact = header(&register, "Contact").expect("Contact");
    let ok = response(
        &register,
        200,
        "OK",
        &format!("Contact: {contact};expires=120\r\n"),
    );
    registrar.send_to(ok.as_bytes(), me).expect("send");
    sipterm
        .expect_event("registered", EVENT_TIMEOUT, |e| {
            e["event"] == "registration" && e["state"] == "registered"
        })
        .expect("registered");

    // A stranger's NOTIFY is refused and lights nothing.
    let fake = mwi_notify(
        stranger.local_addr().expect("addr"),
        me,
        1,
        "Messages-Waiting: yes\r\nVoice-Message: 9/9\r\n",
    );
    stranger.send_to(fake.as_bytes(), me).expect("send");
    let code = response_code(&stranger, "mwi-1@sipterm.test");
    assert!(code >= 400, "a stranger's NOTIFY is refused: {code}");

    // The registrar's is taken.
    let real = mwi_notify(
        registrar_addr,
        me,
        2,
        "Messages-Waiting: yes\r\nMessage-Account: sip:alice@sipterm.test\r\n\
         Voice-Message: 2/8 (1/0)\r\n",
    );
    registrar.send_to(real.as_bytes(), me).expect("send");
    assert_eq!(response_code(&registrar, "mwi-2@sipterm.test"), 200);
    let lit = sipterm
        .expect_event("voicemail", EVENT_TIMEOUT, |e| e["event"] == "voicemail")
        .expect("voicemail event");
    // The first voicemail event is the registrar's (2 new), never the stranger's (9 new).
    assert_eq!(lit["waiting"], true, "{lit}");
    assert_eq!(lit["new"], 2, "{lit}");
    assert_eq!(lit["old"], 8, "{lit}");
    assert_eq!(lit["account"], "alice");

    let cleared = mwi_notify(
        registrar_addr,
        me,
        3,
        "Messages-Waiting: no\r\nVoice-Message: 0/10\r\n",
    );
    registrar.send_to(cleared.as_bytes(), me).expect("send");
    assert_eq!(response_code(&registrar, "mwi-3@sipterm.test"), 200);
    let off = sipterm
        .expect_event("voicemail cleared", EVENT_TIMEOUT, |e| {
            e["event"] == "voicemail" && e["waiting"] == false
        })
        .expect("voicemail cleared");
    assert_eq!(off["new"], 0, "{off}");
    let voicemail_events = sipterm
        .seen
        .iter()
        .filter(|e| e["event"] == "voicemail")
        .count();
    assert_eq!(voicemail_events, 2, "the stranger's NOTIFY made none");
    // Quit: the un-REGISTER goes to our registrar socket; answer it so the quit is quick.
    sipterm.send("quit").expect("quit");
    if let Ok(text) = recv_text(&registrar, EVENT_TIMEOUT)
        && text.starts_with("REGISTER ")
    {
        let ok = response(&text, 200, "OK", "");
        let _ = registrar.send_to(ok.as_bytes(), me);
    }
    assert_eq!(sipterm.quit(EXIT_TIMEOUT).and_then(|c| c.code()), Some(0));
}

// -------------------------------------------------------------------- presence

/// The lamp changes (`presence` events about `contact`) in `seen`, each with whether the event
/// just before it (skipping our own `sip out` lines) was a NOTIFY received.
fn lamp_changes(seen: &[Value], contact: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut last_in_was_notify = false;
    for e in seen {
        if e["event"] == "sip" && e["dir"] == "in" {
            last_in_was_notify = e["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("NOTIFY "));
        } else if e["event"] == "presence" && e["contact"] == contact {
            out.push((
                e["state"].as_str().unwrap_or_default().to_string(),
                last_in_was_notify,
            ));
        }
    }
    out
}

#[test]
fn a_contacts_lamp_goes_busy_in_a_call_and_back_through_kamailio_presence() {
    let kamailio = start_kamailio(
        &[("alice", "secret"), ("bob", "secret"), ("dave", "secret")],
        KamailioOptions {
            invite_auth: false,
            presence: true,
            ..KamailioOptions::default()
        },
    );
    let ks = [&kamailio];
    let with_presence = |name: &str| account(name, name, &kamailio) + "presence = true\n";
    // Bob publishes his state (PUBLISH presence and dialog) to Kamailio.
    let mut bob = start(config(&[with_presence("bob")]), &["--auto-answer"]);
    all_registered(&mut bob, &["bob"], &ks);
    let mut dave = start(
        config(&[account("dave", "dave", &kamailio)]),
        &["--auto-answer"],
    );
    all_registered(&mut dave, &["dave"], &ks);
    // Alice watches her contact Bob (SUBSCRIBE presence and dialog at Kamailio).
    let mut alice = start(
        config(&[with_presence("alice")])
            + "[[contact]]\nname = \"Bob\"\nuri = \"sip:bob@sipterm.test\"\n",
        &[],
    );
    let bob_uri = "sip:bob@sipterm.test";
    let lamp = |state: &'static str| {
        move |e: &Value| e["event"] == "presence" && e["contact"] == bob_uri && e["state"] == state
    };
    expect(&mut alice, "bob available", lamp("available"), &ks);

    // Bob takes a call: his lamp at Alice goes busy.
    dave.send(&format!("dial {bob_uri}")).expect("dave dials");
    expect(&mut bob, "bob in a call", call_in_state("confirmed"), &ks);
    expect(&mut alice, "bob busy", lamp("busy"), &ks);
    let during = lamp_changes(&alice.seen, bob_uri);
    // ... and back when it ends.
    dave.send("hangup").expect("hangup");
    expect(
        &mut bob,
        "bob's call over",
        call_in_state("terminated"),
        &ks,
    );
    expect(&mut alice, "bob available again", lamp("available"), &ks);
    let changes = lamp_changes(&alice.seen, bob_uri);
    println!("lamp changes at alice: {changes:?}");
    // Every change of the lamp came with the one NOTIFY just before it: no change waited for
    // a second NOTIFY or a refresh.
    assert!(
        changes.iter().all(|(_, after_notify)| *after_notify),
        "{changes:?}"
    );
    // From available (Alice may have subscribed before Bob's first PUBLISH: offline before
    // that) the lamp went through ringing to busy and back, nothing else in between.
    let states: Vec<&str> = changes.iter().map(|(s, _)| s.as_str()).collect();
    let first_available = states
        .iter()
        .position(|s| *s == "available")
        .expect("available");
    let busy_at = during.len() - 1;
    assert_eq!(states[busy_at], "busy", "{states:?}");
    assert!(
        states[first_available..busy_at]
            .iter()
            .all(|s| *s == "ringing" || *s == "available"),
        "{states:?}"
    );
    assert!(
        states[busy_at..states.len() - 1]
            .iter()
            .all(|s| *s == "busy"),
        "busy until the call ended: {states:?}"
    );
    assert_eq!(states.last(), Some(&"available"), "{states:?}");
    for s in [&mut alice, &mut bob, &mut dave] {
        assert_eq!(s.quit(EXIT_TIMEOUT).and_then(|c| c.code()), Some(0));
    }
}

/// A voicemail system's PUBLISH of `alice`'s message summary to `kamailio`, from `socket`.
fn publish_summary(socket: &UdpSocket, kamailio: &Kamailio, seq: u32, body: &str) -> u16 {
    let from = socket.local_addr().expect("addr");
    let request = format!(
        "PUBLISH sip:alice@sipterm.test SIP/2.0\r\n\
         Via: SIP/2.0/UDP {from};branch=z9hG4bK-pub-{seq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:voicemail@sipterm.test>;tag=vm\r\n\
         To: <sip:alice@sipterm.test>\r\n\
         Call-ID: pub-{seq}@sipterm.test\r\n\
         CSeq: {seq} PUBLISH\r\n\
         Event: message-summary\r\n\
         Expires: 120\r\n\
         Content-Type: application/simple-message-summary\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket
        .send_to(request.as_bytes(), kamailio.addr())
        .expect("send");
    response_code(socket, &format!("pub-{seq}@sipterm.test"))
}

#[test]
fn voicemail_subscription_at_kamailio_lights_the_indicator() {
    let kamailio = start_kamailio(
        &[("alice", "secret")],
        KamailioOptions {
            invite_auth: false,
            presence: true,
            ..KamailioOptions::default()
        },
    );
    let ks = [&kamailio];
    // The voicemail system says two new messages wait for alice.
    let voicemail = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let code = publish_summary(
        &voicemail,
        &kamailio,
        1,
        "Messages-Waiting: yes\r\nVoice-Message: 2/5\r\n",
    );
    assert_eq!(code, 200, "{}", kamailio.log());
    // Alice subscribes to her message summary once registered (account key `mwi`).
    let mut alice = start(
        config(&[account("alice", "alice", &kamailio) + "mwi = true\n"]),
        &[],
    );
    let lit = expect(
        &mut alice,
        "voicemail waiting",
        |e| e["event"] == "voicemail",
        &ks,
    );
    assert_eq!(lit["waiting"], true, "{lit}");
    assert_eq!(lit["new"], 2, "{lit}");
    assert_eq!(lit["old"], 5, "{lit}");
    assert!(
        alice.seen.iter().any(|e| e["event"] == "sip"
            && e["dir"] == "out"
            && e["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("SUBSCRIBE sip:alice@sipterm.test"))),
        "alice subscribed to her own address"
    );
    // Listened to: the next NOTIFY clears it.
    let code = publish_summary(
        &voicemail,
        &kamailio,
        2,
        "Messages-Waiting: no\r\nVoice-Message: 0/7\r\n",
    );
    assert_eq!(code, 200);
    let off = expect(
        &mut alice,
        "voicemail cleared",
        |e| e["event"] == "voicemail" && e["waiting"] == false,
        &ks,
    );
    assert_eq!(off["old"], 7, "{off}");
    assert_eq!(alice.quit(EXIT_TIMEOUT).and_then(|c| c.code()), Some(0));
}
