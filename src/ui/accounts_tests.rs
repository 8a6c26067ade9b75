//! The TUI's side of several accounts, messages, lamps and voicemail: keys to commands, events
//! to what the screen shows.

use std::time::Instant;

use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::action::{Action, update};
use super::state::{Focus, Popup, UiState};
use crate::config::Contact;
use crate::driver::command::Command;
use crate::event::{Direction, Event, MessageEvent};

fn two_accounts() -> UiState {
    let mut s = UiState::new(&["work".into(), "home".into()], 100, Instant::now());
    s.focus = Focus::Calls;
    s
}

fn screen(state: &UiState) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    terminal
        .draw(|frame| super::view::render(state, frame))
        .expect("draw");
    let buffer = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.push('\n');
    }
    text
}

fn incoming(peer: &str, text: &str) -> Event {
    Event::Message(MessageEvent {
        account: "work".into(),
        dir: Direction::In,
        peer: peer.into(),
        text: Some(text.into()),
        ..Default::default()
    })
}

#[test]
fn calls_go_out_on_the_picked_account_or_the_contacts_own() {
    let mut s = two_accounts();
    s.contacts = vec![Contact {
        name: "Carol".into(),
        uri: "sip:carol@home.example".into(),
        account: Some("home".into()),
    }];
    assert_eq!(
        s.dial_command("sip:bob@h"),
        Command::DialOn("work".into(), "sip:bob@h".into())
    );
    assert_eq!(update(&mut s, Action::CycleAccount), None);
    assert_eq!(s.outgoing_account_name(), Some("home"));
    assert!(screen(&s).contains("Dial · home (A)"));
    assert_eq!(
        s.dial_command("sip:bob@h"),
        Command::DialOn("home".into(), "sip:bob@h".into())
    );
    update(&mut s, Action::CycleAccount);
    // The contact's own account wins over the picked one.
    assert_eq!(
        s.dial_command("carol"),
        Command::DialOn("home".into(), "sip:carol@home.example".into())
    );
    // One account: a plain dial, as before accounts could be picked.
    let one = UiState::new(&["alice".into()], 100, Instant::now());
    assert_eq!(one.dial_command("1234"), Command::Dial("1234".into()));
    assert!(!screen(&one).contains("(A)"));
}

#[test]
fn voicemail_lights_per_account_and_v_dials_the_number() {
    let mut s = two_accounts();
    s.voicemail_numbers = vec![("work".into(), "*97".into())];
    s.apply_event(
        Event::Voicemail {
            account: "work".into(),
            waiting: true,
            new: Some(3),
            old: Some(1),
        },
        Instant::now(),
    );
    let top = screen(&s).lines().next().unwrap_or_default().to_string();
    assert!(top.contains("work: unregistered ✉ 3"), "{top}");
    assert_eq!(
        update(&mut s, Action::DialVoicemail),
        Some(Command::DialOn("work".into(), "*97".into()))
    );
    // Home has no number: nothing is dialed, the status line says why.
    update(&mut s, Action::CycleAccount);
    assert_eq!(update(&mut s, Action::DialVoicemail), None);
    assert!(
        s.status
            .as_deref()
            .is_some_and(|m| m.contains("no voicemail"))
    );
    s.apply_event(
        Event::Voicemail {
            account: "work".into(),
            waiting: false,
            new: Some(0),
            old: Some(4),
        },
        Instant::now(),
    );
    assert!(!screen(&s).contains('✉'));
}

#[test]
fn e_disables_and_enables_the_outgoing_account() {
    let mut s = two_accounts();
    update(&mut s, Action::CycleAccount);
    assert_eq!(
        update(&mut s, Action::ToggleAccount),
        Some(Command::Account("home".into(), false))
    );
    s.apply_event(
        Event::Account {
            account: "home".into(),
            enabled: false,
            listen: None,
        },
        Instant::now(),
    );
    assert!(screen(&s).contains("home: disabled"));
    assert_eq!(
        update(&mut s, Action::ToggleAccount),
        Some(Command::Account("home".into(), true))
    );
}

#[test]
fn messages_count_unread_open_in_the_chat_view_and_answers_go_to_the_peer() {
    let mut s = two_accounts();
    s.apply_event(
        incoming("sip:bob@h", "hi\u{1b}]0;pwned\u{7} there"),
        Instant::now(),
    );
    s.apply_event(incoming("sip:bob@h", "second"), Instant::now());
    let shown = screen(&s);
    assert!(shown.contains("2 new msg (M)"), "{shown}");
    update(&mut s, Action::ShowChats);
    let shown = screen(&s);
    assert!(shown.contains("sip:bob@h (2 new)  [work]"), "{shown}");
    update(&mut s, Action::Submit);
    assert!(matches!(s.popup, Some(Popup::Chat { .. })));
    let shown = screen(&s);
    assert!(!shown.contains("new msg"), "{shown}");
    assert!(shown.contains("< second"), "{shown}");
    // The escape sequence never reaches the terminal: no ESC or BEL in any cell.
    assert!(
        !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
        "{shown}"
    );
    for c in "ok!".chars() {
        update(&mut s, Action::Type(c));
    }
    assert_eq!(
        update(&mut s, Action::Submit),
        Some(Command::Message {
            account: Some("work".into()),
            target: "sip:bob@h".into(),
            text: "ok!".into()
        })
    );
    // A message while the conversation is open is read at once.
    s.apply_event(incoming("sip:bob@h", "third"), Instant::now());
    assert_eq!(s.chats.unread(), 0);
}

#[test]
fn the_contacts_list_shows_each_watched_contacts_lamp() {
    let mut s = two_accounts();
    s.contacts = vec![Contact {
        name: "Bob".into(),
        uri: "bob@h".into(),
        account: None,
    }];
    s.apply_event(
        Event::Presence {
            account: "work".into(),
            contact: "sip:bob@h".into(),
            state: "busy".into(),
            note: Some("on the phone".into()),
        },
        Instant::now(),
    );
    update(&mut s, Action::ShowContacts);
    let shown = screen(&s);
    assert!(shown.contains("Bob  bob@h  ● busy"), "{shown}");
}

#[test]
fn incoming_calls_name_their_account() {
    let mut s = two_accounts();
    s.apply_event(
        Event::Call {
            call: "7".into(),
            state: "incoming".into(),
            remote: "sip:bob@h".into(),
            code: None,
            reason: None,
            sip_call_id: None,
            account: Some("home".into()),
        },
        Instant::now(),
    );
    let shown = screen(&s);
    assert!(shown.contains("Incoming call 7 on home"), "{shown}");
}

fn type_text(s: &mut UiState, text: &str) {
    for c in text.chars() {
        update(s, Action::Type(c));
    }
}

#[test]
fn contacts_are_added_renamed_given_an_account_and_deleted_but_the_configs_stay() {
    let mut s = two_accounts();
    s.contacts = vec![Contact {
        name: "Desk".into(),
        uri: "sip:desk@h".into(),
        account: None,
    }];
    update(&mut s, Action::ShowContacts);
    // The config's contact is read-only.
    update(&mut s, Action::DeleteContact);
    assert_eq!(s.contacts.len(), 1);
    assert!(s.status.as_deref().is_some_and(|m| m.contains("read-only")));
    // n: name, Tab, URI, Tab, Down picks the first account ... Down again: the second.
    update(&mut s, Action::NewContact);
    type_text(&mut s, "Bob");
    update(&mut s, Action::FocusNext);
    type_text(&mut s, "sip:bob@h");
    update(&mut s, Action::FocusNext);
    update(&mut s, Action::Down);
    update(&mut s, Action::Down);
    assert!(screen(&s).contains("account: home"), "{}", screen(&s));
    s.presence_accounts = vec!["home".into()];
    update(&mut s, Action::Submit);
    assert_eq!(
        s.user_contacts,
        vec![Contact {
            name: "Bob".into(),
            uri: "sip:bob@h".into(),
            account: Some("home".into()),
        }]
    );
    // Home watches lamps: Bob is watched at once.
    assert_eq!(
        s.outbox.drain(..).collect::<Vec<_>>(),
        [Command::Watch {
            account: Some("home".into()),
            target: "sip:bob@h".into()
        }]
    );
    assert!(s.contacts_dirty);
    assert_eq!(
        s.dial_command("bob"),
        Command::DialOn("home".into(), "sip:bob@h".into())
    );
    // A second contact with a name taken is refused.
    update(&mut s, Action::NewContact);
    type_text(&mut s, "desk");
    update(&mut s, Action::FocusNext);
    type_text(&mut s, "1");
    update(&mut s, Action::Submit);
    assert!(matches!(s.popup, Some(Popup::ContactEdit { .. })));
    assert!(s.status.as_deref().is_some_and(|m| m.contains("already")));
    update(&mut s, Action::Cancel);
    // e on Bob (after the config's Desk): rename, account back to the outgoing one.
    update(&mut s, Action::Down);
    update(&mut s, Action::EditContact);
    for _ in 0..3 {
        update(&mut s, Action::Backspace);
    }
    type_text(&mut s, "Robert");
    update(&mut s, Action::FocusNext);
    update(&mut s, Action::FocusNext);
    update(&mut s, Action::Up);
    update(&mut s, Action::Up);
    update(&mut s, Action::Submit);
    assert_eq!(s.user_contacts.len(), 1);
    assert_eq!(s.user_contacts[0].name, "Robert");
    assert_eq!(s.user_contacts[0].account, None);
    // Moved off home (to the outgoing work, which watches nothing): no longer watched there.
    assert_eq!(
        s.outbox.drain(..).collect::<Vec<_>>(),
        [Command::Unwatch {
            account: Some("home".into()),
            target: "sip:bob@h".into()
        }]
    );
    // x deletes it.
    update(&mut s, Action::Down);
    update(&mut s, Action::DeleteContact);
    assert!(s.user_contacts.is_empty());
    assert_eq!(s.contacts.len(), 1);
}
