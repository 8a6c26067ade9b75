//! Snapshot tests of the TUI: fixed states rendered on ratatui's TestBackend and compared with
//! the committed `tests/snapshots/*.snap`. Times are virtual (a base `Instant` plus offsets), so
//! durations and log times are the same on every run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use sipterm::event::{CallState, Direction, Event, RegistrationState};
use sipterm::ui::action::{Action, update};
use sipterm::ui::keys::key_action;
use sipterm::ui::state::{Focus, UiState};
use sipterm::ui::view;

const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@127.0.0.1:5062>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

fn at(t0: Instant, millis: u64) -> Instant {
    t0 + Duration::from_millis(millis)
}

fn sip(dir: Direction, raw: &str) -> Event {
    Event::Sip {
        dir,
        peer: "127.0.0.1:5060".into(),
        summary: sipterm::event::first_line(raw.as_bytes()),
        raw: Arc::from(raw.as_bytes()),
    }
}

fn call(id: &str, state: CallState, remote: &str) -> Event {
    Event::Call {
        call: id.into(),
        state,
        remote: remote.into(),
        code: None,
        reason: None,
        sip_call_id: None,
        account: None,
    }
}

/// Alice, registered, listening on 127.0.0.1:5062, with her REGISTER exchange in the log.
fn registered(t0: Instant) -> UiState {
    let mut state = UiState::new(&["alice".into()], 5000, t0);
    state.apply_event(
        Event::Ready {
            listen: "127.0.0.1:5062".into(),
            tls_listen: None,
            accounts: Vec::new(),
        },
        t0,
    );
    state.apply_event(
        sip(
            Direction::Out,
            "REGISTER sip:atlanta.com SIP/2.0\r\nCSeq: 1 REGISTER\r\n\r\n",
        ),
        at(t0, 12),
    );
    state.apply_event(
        sip(Direction::In, "SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\n\r\n"),
        at(t0, 31),
    );
    state.apply_event(
        Event::Registration {
            account: "alice".into(),
            state: RegistrationState::Registered,
            code: Some(200),
            reason: None,
            expires: Some(600),
        },
        at(t0, 31),
    );
    state.status = None;
    state
}

/// A call to Bob: INVITE / 100 / 180 / 200 / ACK, answered at 3.2 s, stats at 68 s.
fn in_call(t0: Instant) -> UiState {
    let mut state = registered(t0);
    state.apply_event(
        call("1", CallState::Calling, "sip:bob@biloxi.com"),
        at(t0, 1000),
    );
    state.apply_event(sip(Direction::Out, INVITE), at(t0, 1002));
    state.apply_event(
        sip(Direction::In, "SIP/2.0 100 Trying\r\n\r\n"),
        at(t0, 1010),
    );
    state.apply_event(
        sip(Direction::In, "SIP/2.0 180 Ringing\r\n\r\n"),
        at(t0, 1200),
    );
    state.apply_event(
        call("1", CallState::Ringing, "sip:bob@biloxi.com"),
        at(t0, 1200),
    );
    state.apply_event(
        sip(
            Direction::In,
            "SIP/2.0 200 OK\r\nContent-Type: application/sdp\r\n\r\n",
        ),
        at(t0, 3200),
    );
    state.apply_event(
        sip(
            Direction::Out,
            "ACK sip:bob@127.0.0.1:5070 SIP/2.0\r\nCSeq: 314159 ACK\r\n\r\n",
        ),
        at(t0, 3201),
    );
    state.apply_event(
        call("1", CallState::Confirmed, "sip:bob@biloxi.com"),
        at(t0, 3201),
    );
    state.apply_event(
        Event::Media {
            call: "1".into(),
            codec: "opus/48000".into(),
            sent: 3245,
            received: 3238,
            lost: 7,
            jitter_ms: 2.4,
            loss_pct: 0.22,
            rtt_ms: Some(1.5),
            mos: Some(4.21),
            remote: None,
            local: None,
            foreign: 0,
            encrypted: false,
            srtp: None,
            foreign_from: None,
            peer: None,
            mic: None,
            ice: None,
        },
        at(t0, 68_000),
    );
    state.status = None;
    state.tick(at(t0, 68_300));
    state
}

fn draw(state: &UiState, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(terminal) => terminal,
        Err(never) => match never {},
    };
    if let Err(never) = terminal.draw(|frame| view::render(state, frame)) {
        match never {}
    }
    terminal
}

#[test]
fn idle_registered_80x24() {
    let t0 = Instant::now();
    let state = registered(t0);
    insta::assert_snapshot!(draw(&state, 80, 24).backend());
}

#[test]
fn incoming_call_popup() {
    let t0 = Instant::now();
    let mut state = registered(t0);
    state.apply_event(
        call(
            "2",
            CallState::Incoming,
            "\"Carol\" <sip:carol@chicago.com>",
        ),
        at(t0, 5000),
    );
    state.apply_event(
        sip(
            Direction::In,
            "INVITE sip:alice@127.0.0.1:5062 SIP/2.0\r\n\r\n",
        ),
        at(t0, 4990),
    );
    insta::assert_snapshot!(draw(&state, 80, 24).backend());
}

#[test]
fn confirmed_call_with_stats_and_sip_log() {
    let t0 = Instant::now();
    let mut state = in_call(t0);
    state.focus = Focus::Calls;
    update(&mut state, Action::ToggleMute);
    state.status = None;
    let screen = draw(&state, 80, 24).backend().to_string();
    // What a user must see: the duration since answer, the codec, the whole INVITE flow.
    assert!(screen.contains("01:05"), "{screen}");
    assert!(screen.contains("opus/48000"), "{screen}");
    for line in [
        "INVITE sip:bob@biloxi.com",
        "100 Trying",
        "180 Ringing",
        "200 OK",
        "ACK sip:bob",
    ] {
        assert!(screen.contains(line), "missing {line}:\n{screen}");
    }
    insta::assert_snapshot!(screen);
}

/// A call that records, with voice processing on, and the device picker over it.
#[test]
fn recording_marker_processing_and_device_picker() {
    let t0 = Instant::now();
    let mut state = in_call(t0);
    state.focus = Focus::Calls;
    state.input_devices = vec![
        "pulseaudio:alsa_input.usb-headset.mono".into(),
        "pulseaudio:alsa_input.pci.analog-stereo".into(),
    ];
    state.output_devices = vec!["pulseaudio:alsa_output.usb-headset.analog-stereo".into()];
    state.apply_event(
        Event::Audio {
            call: "1".into(),
            processing: "AEC NS AGC".into(),
            recording: Some("/home/me/.local/share/sipterm/recordings/call-1.wav".into()),
            input: Some("pulseaudio:alsa_input.usb-headset.mono".into()),
            output: None,
        },
        at(t0, 70_000),
    );
    let screen = draw(&state, 80, 24).backend().to_string();
    assert!(screen.contains("●REC"), "the recording marker:\n{screen}");
    assert!(
        screen.contains("AEC NS AGC"),
        "the processing stages:\n{screen}"
    );
    // R stops the recording that runs; p turns processing off.
    assert!(matches!(
        update(&mut state.clone(), Action::ToggleRecording),
        Some(sipterm::driver::command::Command::Audio(
            Some(1),
            sipterm::driver::command::AudioCommand::RecordStop
        ))
    ));
    update(&mut state, Action::ShowDevices);
    update(&mut state, Action::Down);
    let picker = draw(&state, 80, 24).backend().to_string();
    assert!(picker.contains("Sound devices"), "{picker}");
    insta::assert_snapshot!(picker);
}

#[test]
fn help_overlay() {
    let t0 = Instant::now();
    let mut state = registered(t0);
    state.focus = Focus::Calls;
    update(&mut state, Action::ShowHelp);
    insta::assert_snapshot!(draw(&state, 80, 24).backend());
}

#[test]
fn full_message_view() {
    let t0 = Instant::now();
    let mut state = in_call(t0);
    state.focus = Focus::Log;
    // Up from follow mode selects the newest (ACK); four more reach the INVITE.
    for _ in 0..5 {
        update(&mut state, Action::Up);
    }
    update(&mut state, Action::Submit);
    let screen = draw(&state, 80, 24).backend().to_string();
    assert!(
        screen.contains("Call-ID: a84b4c76e66710@pc33.atlanta.com"),
        "{screen}"
    );
    insta::assert_snapshot!(screen);
}

#[test]
fn wide_120x40_with_two_calls_and_dropped_traces() {
    let t0 = Instant::now();
    let mut state = in_call(t0);
    state.apply_event(
        call("2", CallState::Incoming, "sip:carol@chicago.com"),
        at(t0, 68_500),
    );
    update(&mut state, Action::Cancel); // hide the popup: the call rings in the panel
    state.focus = Focus::Log;
    update(&mut state, Action::Up);
    update(&mut state, Action::Up);
    state.dropped_traces = 3;
    state.set_status("warning: 3 SIP trace events dropped");
    insta::assert_snapshot!(draw(&state, 120, 40).backend());
}

#[test]
fn quit_confirmation() {
    let t0 = Instant::now();
    let mut state = registered(t0);
    state.focus = Focus::Calls;
    update(&mut state, Action::AskQuit);
    insta::assert_snapshot!(draw(&state, 80, 24).backend());
}

#[test]
fn hostile_text_is_drawn_inert() {
    let t0 = Instant::now();
    let mut state = registered(t0);
    state.apply_event(
        Event::Sip {
            dir: Direction::In,
            peer: "127.0.0.1:5060".into(),
            summary: "OPTIONS sip:x\u{1b}]0;pwned\u{7} SIP/2.0".into(),
            raw: Arc::from(&b"OPTIONS sip:x\x1b]0;pwned\x07 SIP/2.0\r\n\r\n"[..]),
        },
        at(t0, 100),
    );
    let screen = draw(&state, 80, 24).backend().to_string();
    assert!(!screen.contains('\u{1b}'), "{screen}");
    assert!(
        screen.contains("OPTIONS sip:x\u{FFFD}]0;pwned\u{FFFD}"),
        "{screen}"
    );
}

#[test]
fn tiny_terminals_do_not_panic_in_any_popup() {
    let t0 = Instant::now();
    let base = in_call(t0);
    let mut states = vec![base.clone()];
    for action in [
        Action::ShowHelp,
        Action::AskQuit,
        Action::StartTransfer,
        Action::AttendedTransfer,
        Action::ToggleLadder,
        Action::ToggleDiagnosis,
        Action::ShowDevices,
        Action::ShowMessages,
    ] {
        let mut state = base.clone();
        state.focus = Focus::Calls;
        update(&mut state, action);
        states.push(state);
    }
    // A message cut with the `… F2: all` hint, on screens narrower than the hint too.
    let mut long = base.clone();
    long.set_status(format!("warning: {DEVICE_WARNING}").repeat(3));
    states.push(long.clone());
    update(&mut long, Action::ShowMessages);
    states.push(long);
    let mut message = base.clone();
    message.focus = Focus::Log;
    update(&mut message, Action::Submit);
    states.push(message);
    for state in &states {
        for (width, height) in [(1, 1), (10, 3), (26, 13), (40, 10), (79, 23)] {
            let screen = draw(state, width, height);
            assert_eq!(screen.backend().buffer().area.width, width);
        }
    }
}

/// A whole SIP message of call `call_id` (the ladder groups by Call-ID).
fn message(first_line: &str, call_id: &str, cseq: &str, to_tag: bool) -> String {
    let tag = if to_tag { ";tag=b0b" } else { "" };
    format!(
        "{first_line}\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{cseq}\r\n\
         To: <sip:bob@127.0.0.1:5070>{tag}\r\nFrom: <sip:alice@127.0.0.1:5062>;tag=a1\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
    )
}

fn sip_from(dir: Direction, peer: &str, raw: String) -> Event {
    Event::Sip {
        dir,
        peer: peer.into(),
        summary: sipterm::event::first_line(raw.as_bytes()),
        raw: Arc::from(raw.into_bytes()),
    }
}

#[test]
fn ladder_of_the_selected_call() {
    let t0 = Instant::now();
    let mut state = registered(t0);
    let bob = "127.0.0.1:5070";
    let id = "c4ll-1@127.0.0.1";
    state.apply_event(
        call("1", CallState::Calling, "sip:bob@127.0.0.1:5070"),
        at(t0, 1000),
    );
    let flow = [
        (
            Direction::Out,
            "INVITE sip:bob@127.0.0.1:5070 SIP/2.0",
            "1 INVITE",
            false,
            1002,
        ),
        (Direction::In, "SIP/2.0 100 Trying", "1 INVITE", false, 1010),
        (Direction::In, "SIP/2.0 180 Ringing", "1 INVITE", true, 1200),
        (Direction::In, "SIP/2.0 200 OK", "1 INVITE", true, 3200),
        (
            Direction::Out,
            "ACK sip:bob@127.0.0.1:5070 SIP/2.0",
            "1 ACK",
            true,
            3201,
        ),
    ];
    for (dir, line, cseq, tag, millis) in flow {
        state.apply_event(
            sip_from(dir, bob, message(line, id, cseq, tag)),
            at(t0, millis),
        );
    }
    // Another dialog in between (a keep-alive from a proxy) is not part of this call.
    state.apply_event(
        sip_from(
            Direction::In,
            "127.0.0.1:5060",
            message(
                "OPTIONS sip:alice@127.0.0.1:5062 SIP/2.0",
                "other@x",
                "7 OPTIONS",
                false,
            ),
        ),
        at(t0, 2000),
    );
    state.apply_event(
        call("1", CallState::Confirmed, "sip:bob@127.0.0.1:5070"),
        at(t0, 3201),
    );
    state.apply_event(
        sip_from(
            Direction::In,
            bob,
            message("BYE sip:alice@127.0.0.1:5062 SIP/2.0", id, "2 BYE", true),
        ),
        at(t0, 9000),
    );
    state.apply_event(
        sip_from(
            Direction::Out,
            bob,
            message("SIP/2.0 200 OK", id, "2 BYE", true),
        ),
        at(t0, 9001),
    );
    state.apply_event(
        Event::Call {
            call: "1".into(),
            state: CallState::Terminated,
            remote: "sip:bob@127.0.0.1:5070".into(),
            code: None,
            reason: None,
            sip_call_id: None,
            account: None,
        },
        at(t0, 9001),
    );
    state.status = None;
    state.focus = Focus::Calls;
    // The call has ended: `l` still draws the newest call of the trace.
    update(&mut state, Action::ToggleLadder);
    let screen = draw(&state, 80, 24).backend().to_string();
    for label in [
        "INVITE sip:bob@127.0.0.1:5070",
        "100 Trying",
        "180 Ringing",
        "200 OK",
        "ACK sip:bob@127.0.0.1:5070",
        "BYE sip:alice@127.0.0.1:5062",
        "127.0.0.1:5062",
        "127.0.0.1:5070",
    ] {
        assert!(screen.contains(label), "missing {label}:\n{screen}");
    }
    assert!(
        !screen.contains("OPTIONS"),
        "another call's message in the ladder:\n{screen}"
    );
    // Requests from us point right, answers come back left.
    let invite = screen
        .lines()
        .find(|l| l.contains("INVITE"))
        .unwrap_or_default();
    assert!(invite.contains("▶│"), "{invite}");
    let ringing = screen
        .lines()
        .find(|l| l.contains("180 Ringing"))
        .unwrap_or_default();
    assert!(ringing.contains("│◀"), "{ringing}");
    insta::assert_snapshot!(screen);
    // `e` asks the run loop to export this call; `l` closes the ladder.
    update(&mut state, Action::ExportCall);
    assert_eq!(state.export_request.as_deref(), Some(id));
    update(&mut state, Action::ToggleLadder);
    assert_eq!(state.popup, None);
}

fn levels(id: &str, mic_db: f32, speaker_db: f32) -> Event {
    Event::Levels {
        call: id.into(),
        mic_db,
        speaker_db,
    }
}

#[test]
fn vu_meters_for_mic_and_speaker_and_a_muted_call() {
    let t0 = Instant::now();
    let mut state = in_call(t0);
    state.apply_event(
        call("2", CallState::Confirmed, "sip:carol@chicago.com"),
        at(t0, 60_000),
    );
    // Synthetic levels as the media task sends them (10 a second); the last one counts.
    for (n, (mic, speaker)) in [(-50.0, -70.0), (-12.0, -30.0)].into_iter().enumerate() {
        state.apply_event(levels("1", mic, speaker), at(t0, 68_000 + 100 * n as u64));
    }
    state.apply_event(levels("2", -96.0, -3.0), at(t0, 68_200));
    state.focus = Focus::Calls;
    update(&mut state, Action::ToggleMute); // call 2 (selected, the newest) muted
    state.status = None;
    let screen = draw(&state, 80, 24).backend().to_string();
    let meters: Vec<&str> = screen.lines().filter(|l| l.contains("mic ▕")).collect();
    assert_eq!(meters.len(), 2, "{screen}");
    // Call 1: mic at -12 dBFS is 4/5 of the bar, the speaker at -30 half of it.
    assert!(
        meters[0].contains(" -12") && meters[0].contains(" -30"),
        "{screen}"
    );
    let bar = |line: &str, label: &str| -> String {
        line.split(label)
            .nth(1)
            .and_then(|rest| rest.split('▏').next())
            .unwrap_or_default()
            .to_string()
    };
    let mic = bar(meters[0], "mic ▕");
    let full = mic.chars().filter(|c| *c == '█').count();
    let cells = mic.chars().count() as f32;
    assert_eq!(full, (cells * 0.8).round() as usize, "mic bar {mic:?}");
    let spk = bar(meters[0], "spk ▕");
    assert_eq!(
        spk.chars().filter(|c| *c == '█').count() * 2,
        spk.chars().count(),
        "speaker bar {spk:?}"
    );
    // Call 2: muted says so instead of a level.
    assert!(meters[1].contains("MUTED"), "{screen}");
    assert!(meters[1].contains("  -3"), "{screen}");
    insta::assert_snapshot!(screen);

    // Levels stop (media ended): after 1.5 s the meters go blank.
    state.tick(at(t0, 70_000));
    let screen = draw(&state, 80, 24).backend().to_string();
    assert!(!screen.contains(" -12"), "{screen}");
    assert!(screen.contains("▏  --"), "{screen}");
}

const INVITE_SDP: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK776asdhds;rport\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 192\r\n\
\r\n\
v=0\r\n\
o=- 53655765 2353687637 IN IP4 127.0.0.1\r\n\
s=sipterm\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 111 0 101\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

/// A line as `text` runs tagged with their style, for a snapshot of colours.
fn styled(line: &ratatui::text::Line) -> String {
    line.spans
        .iter()
        .map(|span| {
            let s = span.style;
            let mut tag = s.fg.map_or(String::new(), |c| format!("{c}"));
            if s.add_modifier.contains(ratatui::style::Modifier::BOLD) {
                tag.push_str("+bold");
            }
            if tag.is_empty() {
                span.content.to_string()
            } else {
                format!("[{tag}]{}[/]", span.content)
            }
        })
        .collect()
}

#[test]
fn highlighted_message_styles() {
    let lines = view::highlight::highlight(INVITE_SDP.as_bytes());
    let dump: Vec<String> = lines.iter().map(styled).collect();
    let dump = dump.join("\n");
    assert!(
        dump.starts_with("[LightGreen+bold]INVITE[/] [Cyan]sip:bob@biloxi.com[/]"),
        "{dump}"
    );
    assert!(
        dump.contains("[LightBlue+bold]Call-ID[/][DarkGray]:[/] a84b4c76e66710"),
        "{dump}"
    );
    assert!(dump.contains("[LightGreen+bold]m[/]"), "{dump}");
    insta::assert_snapshot!(dump);
}

#[test]
fn full_message_view_with_sdp_body() {
    let t0 = Instant::now();
    let mut state = registered(t0);
    state.apply_event(sip(Direction::Out, INVITE_SDP), at(t0, 1000));
    state.focus = Focus::Log;
    update(&mut state, Action::Submit);
    let screen = draw(&state, 80, 24).backend().to_string();
    assert!(screen.contains("──── SDP, 192 bytes ────"), "{screen}");
    assert!(
        screen.contains("m=audio 40000 RTP/AVP 111 0 101"),
        "{screen}"
    );
    insta::assert_snapshot!(screen);
}

fn call_with_sip_id(id: &str, state: CallState, remote: &str, sip_call_id: &str) -> Event {
    Event::Call {
        call: id.into(),
        state,
        remote: remote.into(),
        code: None,
        reason: None,
        sip_call_id: Some(sip_call_id.into()),
        account: None,
    }
}

#[test]
fn log_filtered_by_call_and_method() {
    let t0 = Instant::now();
    let mut state = registered(t0);
    let bob = "127.0.0.1:5070";
    state.apply_event(
        call_with_sip_id(
            "1",
            CallState::Calling,
            "sip:bob@127.0.0.1:5070",
            "bob-call@x",
        ),
        at(t0, 1000),
    );
    let flow = [
        (
            "INVITE sip:bob@127.0.0.1:5070 SIP/2.0",
            "bob-call@x",
            "1 INVITE",
            1002,
        ),
        (
            "OPTIONS sip:alice@127.0.0.1:5062 SIP/2.0",
            "ka@x",
            "7 OPTIONS",
            1100,
        ),
        ("SIP/2.0 180 Ringing", "bob-call@x", "1 INVITE", 1200),
        ("SIP/2.0 200 OK", "ka@x", "7 OPTIONS", 1201),
        ("SIP/2.0 200 OK", "bob-call@x", "1 INVITE", 3200),
        (
            "ACK sip:bob@127.0.0.1:5070 SIP/2.0",
            "bob-call@x",
            "1 ACK",
            3201,
        ),
    ];
    for (line, id, cseq, millis) in flow {
        state.apply_event(
            sip_from(Direction::In, bob, message(line, id, cseq, false)),
            at(t0, millis),
        );
    }
    state.apply_event(
        call_with_sip_id(
            "1",
            CallState::Confirmed,
            "sip:bob@127.0.0.1:5070",
            "bob-call@x",
        ),
        at(t0, 3201),
    );
    state.focus = Focus::Log;
    update(&mut state, Action::CycleCallFilter);
    let screen = draw(&state, 80, 24).backend().to_string();
    assert!(
        screen.contains("SIP log (4 msgs, follow) [call bob-call@x]"),
        "{screen}"
    );
    assert!(!screen.contains("OPTIONS"), "{screen}");
    // F: ACK first (methods sorted), then INVITE: the INVITE and its responses.
    update(&mut state, Action::CycleMethodFilter);
    update(&mut state, Action::CycleMethodFilter);
    state.status = None;
    let screen = draw(&state, 80, 24).backend().to_string();
    assert!(
        screen.contains("SIP log (3 msgs, follow) [call bob-call@x] [INVITE]"),
        "{screen}"
    );
    assert!(!screen.contains("ACK sip:"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn first_run_banner_says_where_the_config_goes_and_how_to_start() {
    let t0 = Instant::now();
    let mut state = UiState::new(&["local".into()], 5000, t0);
    state.first_run = Some("/home/alice/.config/sipterm/config.toml".into());
    state.apply_event(
        Event::Ready {
            listen: "127.0.0.1:5062".into(),
            tls_listen: None,
            accounts: Vec::new(),
        },
        t0,
    );
    let screen = draw(&state, 80, 24).backend().to_string();
    assert!(
        screen.contains("/home/alice/.config/sipterm/config.toml"),
        "{screen}"
    );
    assert!(screen.contains("type echo and press Enter"), "{screen}");
    insta::assert_snapshot!(screen);
    // The first SIP message replaces it with the log.
    state.apply_event(
        sip(Direction::Out, "INVITE sip:echo@127.0.0.1 SIP/2.0\r\n\r\n"),
        at(t0, 500),
    );
    let screen = draw(&state, 80, 24).backend().to_string();
    assert!(!screen.contains("Welcome"), "{screen}");
}

/// The log pane's text of a screen: what lies between its side borders, row after row.
fn log_pane_text(screen: &str) -> String {
    screen
        .lines()
        .filter_map(|line| {
            // Right of the 26-column left column, inside the pane's side borders.
            let right: String = line.trim_matches('"').chars().skip(26).collect();
            let inner = right.strip_prefix('│')?.strip_suffix('│')?;
            Some(inner.trim().to_string())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// In a 72-column tmux pane the log pane is 44 columns inside: the welcome text wraps there
/// (nothing cut at the border), and at 120 columns it uses the width it has.
#[test]
fn first_run_banner_wraps_at_the_pane_width() {
    let t0 = Instant::now();
    let mut state = UiState::new(&["local".into()], 5000, t0);
    state.first_run = Some("~/.config/sipterm/config.toml".into());
    for width in [72u16, 120] {
        let screen = draw(&state, width, 24).backend().to_string();
        let text = log_pane_text(&screen);
        for words in [
            "Welcome to sipterm! No config file yet; it goes in",
            "(config.example.toml shows accounts and codecs).",
            "To start: type echo and press Enter for a test call to the built-in echo service (you hear yourself), or dial sip:user@host directly.",
        ] {
            assert!(
                text.contains(words),
                "{width} columns: {words:?} not whole in\n{screen}"
            );
        }
    }
    let wide = draw(&state, 120, 24).backend().to_string();
    assert!(
        wide.contains(
            "To start: type echo and press Enter for a test call to the built-in echo service"
        ),
        "one row at 120 columns:\n{wide}"
    );
}

/// With no sound card (tmux on a server) the missing-device warning is long; the bottom line
/// wraps it so all of it can be read in a 72-column pane, not "...It may have bee".
#[test]
fn a_long_warning_wraps_instead_of_being_cut() {
    let t0 = Instant::now();
    let mut state = UiState::new(&["local".into()], 5000, t0);
    let message = "sound output \"default\" cannot be opened (DeviceNotAvailable: The requested \
                   device is no longer available. It may have been disconnected.); playing \
                   nothing";
    state.apply_event(
        Event::Warning {
            message: message.into(),
        },
        t0,
    );
    let screen = draw(&state, 72, 24).backend().to_string();
    let rows: Vec<&str> = screen.lines().collect();
    // The bottom rows, from the one with the mode badge down, joined.
    let from = rows
        .iter()
        .rposition(|l| l.starts_with("\" DIAL "))
        .unwrap_or(rows.len());
    let bottom: String = rows[from..]
        .iter()
        .map(|l| l.trim_matches('"'))
        .collect::<Vec<_>>()
        .concat();
    assert!(
        bottom.contains("It may have been disconnected.); playing nothing"),
        "{screen}"
    );
    assert!(rows.len() == 24, "the screen keeps its height");
    assert!(
        rows[from - 1].contains('└'),
        "the panes end above the message:\n{screen}"
    );
}

/// The text inside a popup drawn one column in from the screen's edges: what lies between
/// its side borders, row after row, trimmed and joined with spaces.
fn popup_text(screen: &str) -> String {
    screen
        .lines()
        .filter_map(|line| {
            let chars: Vec<char> = line.trim_matches('"').chars().collect();
            let inner = chars.get(2..chars.len().saturating_sub(2))?;
            let row: String = inner.iter().collect();
            let row = row.trim();
            (!row.is_empty()).then(|| row.to_string())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const DEVICE_WARNING: &str = "sound output \"default\" cannot be opened (DeviceNotAvailable: The \
                              requested device is no longer available. It may have been \
                              disconnected.); playing nothing";

/// Status messages can be read again: after the device warning was replaced by the next
/// message, `F2` (which works from the dial field, where the TUI starts) lists every message
/// newest first with its time, the warning wrapped in full in a 72-column pane.
#[test]
fn the_messages_view_lists_every_status_message_in_full() {
    let t0 = Instant::now();
    let mut state = UiState::new(&["local".into()], 5000, t0);
    state.apply_event(
        Event::Ready {
            listen: "127.0.0.1:5062".into(),
            tls_listen: None,
            accounts: Vec::new(),
        },
        t0,
    );
    state.apply_event(
        Event::Warning {
            message: DEVICE_WARNING.into(),
        },
        at(t0, 40),
    );
    state.tick(at(t0, 2_500));
    state.set_status("calling echo");
    let bottom = draw(&state, 72, 24).backend().to_string();
    assert!(
        !bottom.contains("disconnected"),
        "the warning left the bottom line:\n{bottom}"
    );
    assert!(bottom.contains("calling echo"), "{bottom}");

    let f2 = KeyEvent::new(KeyCode::F(2), KeyModifiers::NONE);
    let action = key_action(&state, f2);
    assert_eq!(action, Some(Action::ShowMessages), "F2 in the dial field");
    if let Some(action) = action {
        update(&mut state, action);
    }
    let screen = draw(&state, 72, 24).backend().to_string();
    let text = popup_text(&screen);
    let warning = format!("00:00.040 warning: {DEVICE_WARNING}");
    let newest = text.find("00:02.500 calling echo");
    let older = text.find(&warning);
    assert!(
        newest.is_some() && older.is_some(),
        "both messages, the warning whole:\n{screen}"
    );
    assert!(newest < older, "newest first:\n{screen}");
    assert!(
        text.contains("00:00.000 listening on 127.0.0.1:5062"),
        "{screen}"
    );
    insta::assert_snapshot!(screen);

    // F2 again (or Esc) closes it.
    if let Some(action) = key_action(&state, f2) {
        update(&mut state, action);
    }
    assert_eq!(state.popup, None);
}

/// A message longer than the bottom rows it may take (a quarter of the screen) ends with a
/// marker naming the key that shows it whole; the view then has all of it.
#[test]
fn a_message_too_long_for_the_bottom_rows_says_where_to_read_the_rest() {
    let t0 = Instant::now();
    let mut state = UiState::new(&["local".into()], 5000, t0);
    let long = format!("warning: {DEVICE_WARNING}; {DEVICE_WARNING}; the end");
    state.set_status(long.clone());
    let screen = draw(&state, 72, 12).backend().to_string();
    let rows: Vec<&str> = screen.lines().map(|l| l.trim_matches('"')).collect();
    assert_eq!(rows.len(), 12);
    let last = rows.last().copied().unwrap_or_default();
    assert!(
        last.ends_with("… F2: all"),
        "the last row says more text exists and where:\n{screen}"
    );
    assert_eq!(last.chars().count(), 72, "the hint stays on the screen");
    assert!(!screen.contains("the end"), "{screen}");
    // The bottom line keeps to a quarter of the height: 3 of 12 rows.
    assert!(rows[8].contains('└'), "{screen}");

    update(&mut state, Action::ShowMessages);
    let view = draw(&state, 72, 12).backend().to_string();
    assert!(view.contains("Messages: 1"), "{view}");
    let mut text = popup_text(&view);
    // Scroll to the end: the view is 12 rows high, the message longer.
    for _ in 0..10 {
        update(&mut state, Action::Down);
        text.push(' ');
        text.push_str(&popup_text(&draw(&state, 72, 12).backend().to_string()));
    }
    assert!(
        text.contains("; the end"),
        "scrolling reaches the end:\n{text}"
    );
}

/// Call waiting: Carol rings in while Bob's call is up; the popup offers her call, the keys
/// stay on Bob's call; answering her puts Bob on hold (the queued command), and both calls
/// show, Carol's selected and confirmed, Bob's held.
#[test]
fn call_waiting_answer_the_second_call_with_the_first_on_hold() {
    let t0 = Instant::now();
    let mut state = in_call(t0);
    state.apply_event(
        call(
            "2",
            CallState::Incoming,
            "\"Carol\" <sip:carol@chicago.com>",
        ),
        at(t0, 68_100),
    );
    state.focus = Focus::Calls;
    let ringing = draw(&state, 80, 24).backend().to_string();
    assert!(ringing.contains("Incoming call 2"), "{ringing}");
    assert!(ringing.contains("Calls (2)"), "{ringing}");
    assert!(
        ringing.contains("answering puts call 1 on hold"),
        "{ringing}"
    );
    assert_eq!(state.selected_call().map(|c| c.id), Some(1));
    insta::assert_snapshot!("call_waiting_ringing", ringing);

    // `a` answers Carol; Bob is held first.
    let answer = update(&mut state, Action::Answer);
    assert_eq!(
        answer,
        Some(sipterm::driver::command::Command::Answer(Some(2)))
    );
    assert_eq!(
        state.outbox,
        vec![sipterm::driver::command::Command::Hold(Some(1))]
    );
    state.outbox.clear();
    state.apply_event(
        call("1", CallState::Held, "sip:bob@biloxi.com"),
        at(t0, 68_200),
    );
    state.apply_event(
        call(
            "2",
            CallState::Confirmed,
            "\"Carol\" <sip:carol@chicago.com>",
        ),
        at(t0, 68_200),
    );
    state.apply_event(
        Event::Media {
            call: "2".into(),
            codec: "pcmu/8000".into(),
            sent: 150,
            received: 149,
            lost: 0,
            jitter_ms: 1.1,
            loss_pct: 0.0,
            rtt_ms: None,
            mos: Some(4.3),
            remote: None,
            local: None,
            foreign: 0,
            encrypted: true,
            srtp: None,
            foreign_from: None,
            peer: None,
            mic: None,
            ice: None,
        },
        at(t0, 71_000),
    );
    state.apply_event(levels("2", -21.0, -27.0), at(t0, 71_100));
    state.status = None;
    state.tick(at(t0, 71_200));
    let screen = draw(&state, 80, 24).backend().to_string();
    let lines: Vec<&str> = screen.lines().collect();
    let bob = lines.iter().find(|l| l.contains("sip:bob@biloxi.com"));
    let carol = lines.iter().find(|l| l.contains("Carol"));
    assert!(bob.is_some_and(|l| l.contains("held")), "{screen}");
    assert!(
        carol.is_some_and(|l| l.contains("▶") && l.contains("confirmed") && l.contains("00:03")),
        "{screen}"
    );
    // No report that the keys went over TLS: the badge warns they travelled in clear.
    assert!(screen.contains("pcmu/8000 SRTP/clear-keys"), "{screen}");
    insta::assert_snapshot!("call_waiting_answered", screen);
}

/// A media report every 2 s: audio stops arriving after the fourth (no MOS from then on).
fn quality_reports(state: &mut UiState, t0: Instant) {
    for n in 1..=8u64 {
        let audio = n <= 4;
        let received = if audio { 100 * n - n } else { 396 };
        state.apply_event(
            Event::Media {
                call: "1".into(),
                codec: "pcmu/8000".into(),
                sent: 100 * n,
                received,
                lost: if audio { n } else { 4 },
                jitter_ms: if audio { 2.0 + n as f64 * 4.0 } else { 18.0 },
                loss_pct: 1.0,
                rtt_ms: Some(40.0 * n as f64),
                mos: audio.then_some(4.3 - 0.1 * n as f64),
                remote: Some("10.0.0.5:4000".into()),
                local: Some("192.0.2.101:20000".into()),
                foreign: 0,
                encrypted: false,
                srtp: None,
                foreign_from: None,
                peer: None,
                mic: None,
                ice: None,
            },
            at(t0, 70_000 + 2000 * n),
        );
    }
}

fn diagnosis(
    state: sipterm::diagnosis::FindingState,
    code: &'static str,
    call: Option<u64>,
    label: &'static str,
    message: &str,
) -> Event {
    use sipterm::diagnosis::{Evidence, Finding, Severity};
    let mut finding = Finding::new(code, Severity::Error, label, message, "Do the right thing.")
        .with_evidence(
            Evidence::new()
                .with("sdp_address", "10.0.0.5:4000")
                .with("received", 0),
        );
    finding.call = call;
    Event::Diagnosis { state, finding }
}

/// The worst finding of a call on its line and its message on the bottom line as it happens,
/// the count on the status bar, small quality charts per call, and `w`: the pane with the
/// finding now and one from before.
#[test]
fn diagnosis_on_the_call_line_the_charts_and_the_pane() {
    use sipterm::diagnosis::FindingState::{Active, Cleared};
    let t0 = Instant::now();
    let mut state = in_call(t0);
    let dns = "nowhere.test has no SIP server in DNS (no such domain).";
    state.apply_event(
        diagnosis(Active, "dns.no_records", None, "no DNS records", dns),
        at(t0, 1000),
    );
    state.apply_event(
        diagnosis(Cleared, "dns.no_records", None, "no DNS records", dns),
        at(t0, 3000),
    );
    quality_reports(&mut state, t0);
    state.apply_event(
        diagnosis(
            Active,
            "media.no_audio.private_address",
            Some(1),
            "no audio in",
            "No audio arrives from the peer: its SDP gives the private address 10.0.0.5.",
        ),
        at(t0, 86_000),
    );
    state.tick(at(t0, 86_500));
    let screen = draw(&state, 80, 24).backend().to_string();
    for needed in [
        "⚠ no audio in",
        "⚠ 1 (w)",
        "MOS -",
        "call 1: No audio arrives from the peer",
        " MOS ",
        " loss ",
        " jit ",
        " rtt ",
    ] {
        assert!(screen.contains(needed), "missing {needed}:\n{screen}");
    }
    insta::assert_snapshot!("diagnosis_call_line_and_charts", screen);
    state.focus = Focus::Calls;
    update(&mut state, Action::ToggleDiagnosis);
    let pane = draw(&state, 80, 24).backend().to_string();
    for needed in [
        "Diagnosis: 1 now, 1 before",
        "media.no_audio.private_address",
        "dns.no_records",
        "00:01-00:03",
        "sdp_address: 10.0.0.5:4000",
        "→ Do the right thing.",
    ] {
        assert!(pane.contains(needed), "missing {needed}:\n{pane}");
    }
    insta::assert_snapshot!("diagnosis_pane", pane);
    update(&mut state, Action::ToggleDiagnosis);
    assert_eq!(state.popup, None, "w closes it again");
}

#[test]
fn early_media_conference_dnd_and_forwarding() {
    let t0 = Instant::now();
    let mut state = registered(t0);
    state.apply_event(
        call("1", CallState::Confirmed, "sip:bob@biloxi.com"),
        at(t0, 1000),
    );
    state.apply_event(
        call("2", CallState::Confirmed, "sip:carol@chicago.com"),
        at(t0, 2000),
    );
    state.apply_event(
        Event::Conference {
            calls: vec!["1".into(), "2".into()],
        },
        at(t0, 3000),
    );
    state.apply_event(
        call("3", CallState::Early, "sip:announcements@carrier.net"),
        at(t0, 4000),
    );
    state.apply_event(
        Event::Dnd {
            on: true,
            code: 486,
        },
        at(t0, 4500),
    );
    state.apply_event(
        Event::Forward {
            target: Some("sip:voicemail@atlanta.com".into()),
        },
        at(t0, 4600),
    );
    state.tick(at(t0, 9000));
    insta::assert_snapshot!(draw(&state, 100, 30).backend());
}

#[test]
fn transfer_request_popup() {
    let t0 = Instant::now();
    let mut state = in_call(t0);
    state.apply_event(
        Event::TransferRequest {
            call: "1".into(),
            target: "sip:carol@chicago.com?Replaces=abc%3Bto-tag%3D1%3Bfrom-tag%3D2".into(),
            referred_by: Some("<sip:bob@biloxi.com>".into()),
        },
        at(t0, 9000),
    );
    insta::assert_snapshot!(draw(&state, 80, 24).backend());
}

#[test]
fn attended_transfer_prompt() {
    let t0 = Instant::now();
    let mut state = in_call(t0);
    state.focus = Focus::Calls;
    update(&mut state, Action::AttendedTransfer);
    for c in "carol".chars() {
        update(&mut state, Action::Type(c));
    }
    insta::assert_snapshot!(draw(&state, 80, 24).backend());
}
