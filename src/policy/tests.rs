//! The call policy, fed call states and media starts and stops as the SIP task would, checked
//! by the actions it asks for. No clock, no device: each test is a script of inputs.

use super::*;
use CallState::*;

/// Feeds `state` for `call` and returns the actions it asks for, in order.
fn call(policy: &mut CallPolicy, id: u64, state: CallState, code: Option<u16>) -> Vec<Action> {
    policy.handle_call(id, state, code);
    drain(policy)
}

fn drain(policy: &mut CallPolicy) -> Vec<Action> {
    std::iter::from_fn(|| policy.poll_action()).collect()
}

fn media_started(policy: &mut CallPolicy, id: u64) -> Vec<Action> {
    policy.handle_media_starting(id);
    let mut actions = drain(policy);
    policy.handle_media_started(id);
    actions.extend(drain(policy));
    actions
}

fn start(call: u64, kind: ToneKind) -> Action {
    Action::StartTone { call, kind }
}

#[test]
fn an_incoming_call_rings_until_answered() {
    let mut p = CallPolicy::new();
    assert_eq!(
        call(&mut p, 1, Incoming, None),
        [start(1, ToneKind::Ringtone)]
    );
    assert_eq!(p.playing(), Some((1, ToneKind::Ringtone)));
    // The same state again leaves the tone alone.
    assert_eq!(call(&mut p, 1, Incoming, None), []);
    assert_eq!(call(&mut p, 1, Confirmed, Some(200)), [Action::StopTone]);
    assert_eq!(p.playing(), None);
}

#[test]
fn an_outgoing_call_hears_ringback_until_early_media_starts() {
    let mut p = CallPolicy::new();
    assert_eq!(call(&mut p, 1, Calling, None), []);
    assert_eq!(
        call(&mut p, 1, Ringing, Some(180)),
        [start(1, ToneKind::Ringback)]
    );
    // Early media: the call's own audio replaces the ringback.
    assert_eq!(media_started(&mut p, 1), [Action::StopTone]);
    assert_eq!(call(&mut p, 1, Early, Some(183)), []);
    assert_eq!(call(&mut p, 1, Confirmed, Some(200)), []);
}

#[test]
fn only_calls_we_placed_hear_ringback_or_busy() {
    let mut p = CallPolicy::new();
    // An incoming call that goes on to ringing states (never `Calling`) is not ours.
    assert_eq!(call(&mut p, 3, Ringing, None), []);
    assert_eq!(call(&mut p, 3, Terminated, Some(486)), []);
}

#[test]
fn busy_and_decline_play_the_busy_tone_other_failures_do_not() {
    for (code, busy) in [
        (Some(486), true),
        (Some(600), true),
        (Some(404), false),
        (None, false),
    ] {
        let mut p = CallPolicy::new();
        call(&mut p, 1, Calling, None);
        let actions = call(&mut p, 1, Terminated, code);
        let want = if busy {
            vec![start(1, ToneKind::Busy)]
        } else {
            vec![]
        };
        assert_eq!(actions, want, "{code:?}");
    }
    // Ringback gives way to the busy tone.
    let mut p = CallPolicy::new();
    call(&mut p, 1, Calling, None);
    call(&mut p, 1, Ringing, None);
    assert_eq!(
        call(&mut p, 1, Terminated, Some(486)),
        [Action::StopTone, start(1, ToneKind::Busy)]
    );
}

#[test]
fn a_call_that_had_media_ends_without_a_busy_tone() {
    let mut p = CallPolicy::new();
    call(&mut p, 1, Calling, None);
    media_started(&mut p, 1);
    // Its media still ran when the call ended: the device was the call's.
    assert_eq!(call(&mut p, 1, Terminated, Some(486)), []);
    // The media counts as gone afterwards: a new call rings.
    assert_eq!(
        call(&mut p, 2, Incoming, None),
        [start(2, ToneKind::Ringtone)]
    );
}

#[test]
fn a_second_ringing_call_stays_silent_but_a_busy_tone_gives_way() {
    let mut p = CallPolicy::new();
    call(&mut p, 1, Incoming, None);
    assert_eq!(call(&mut p, 2, Incoming, None), []);
    assert_eq!(p.playing(), Some((1, ToneKind::Ringtone)));

    let mut p = CallPolicy::new();
    call(&mut p, 1, Calling, None);
    call(&mut p, 1, Terminated, Some(486));
    assert_eq!(
        call(&mut p, 2, Incoming, None),
        [Action::StopTone, start(2, ToneKind::Ringtone)]
    );
    assert_eq!(p.playing(), Some((2, ToneKind::Ringtone)));
}

#[test]
fn a_tone_that_failed_to_start_is_not_stopped() {
    let mut p = CallPolicy::new();
    call(&mut p, 1, Incoming, None);
    p.tone_failed();
    assert_eq!(p.playing(), None);
    assert_eq!(call(&mut p, 1, Confirmed, None), []);
}

#[test]
fn media_start_stops_only_its_own_calls_tone() {
    let mut p = CallPolicy::new();
    call(&mut p, 1, Incoming, None);
    assert_eq!(media_started(&mut p, 2), []);
    assert_eq!(p.playing(), Some((1, ToneKind::Ringtone)));
    assert_eq!(media_started(&mut p, 1), [Action::StopTone]);
}

#[test]
fn call_waiting_mixes_into_the_confirmed_call_while_another_rings() {
    let mut p = CallPolicy::new();
    call(&mut p, 1, Calling, None);
    call(&mut p, 1, Confirmed, Some(200));
    media_started(&mut p, 1);
    // Call 2 rings in: no ringtone (call 1 has the device), the waiting tone in call 1.
    assert_eq!(
        call(&mut p, 2, Incoming, None),
        [Action::CallWaiting { call: 1, on: true }]
    );
    assert_eq!(p.waiting_on(), Some(1));
    // The caller gives up: the waiting tone stops.
    assert_eq!(
        call(&mut p, 2, Terminated, Some(487)),
        [Action::CallWaiting { call: 1, on: false }]
    );
    assert_eq!(p.waiting_on(), None);
}

#[test]
fn call_waiting_stops_when_the_active_call_is_held_and_moves_to_the_lowest_call() {
    let mut p = CallPolicy::new();
    for id in [4, 2] {
        call(&mut p, id, Confirmed, Some(200));
        media_started(&mut p, id);
    }
    assert_eq!(
        call(&mut p, 9, Incoming, None),
        [Action::CallWaiting { call: 2, on: true }]
    );
    assert_eq!(
        call(&mut p, 2, Held, None),
        [
            Action::CallWaiting { call: 2, on: false },
            Action::CallWaiting { call: 4, on: true }
        ]
    );
    // A call whose media stopped cannot be told; the tone moves on.
    p.handle_media_stopped(4);
    assert_eq!(drain(&mut p), []);
    assert_eq!(p.waiting_on(), None);
}

#[test]
fn call_waiting_needs_media_on_the_confirmed_call() {
    let mut p = CallPolicy::new();
    call(&mut p, 1, Confirmed, Some(200));
    call(&mut p, 2, Incoming, None);
    assert_eq!(p.waiting_on(), None);
    // Media arrives while call 2 still rings.
    assert_eq!(
        media_started(&mut p, 1),
        [Action::CallWaiting { call: 1, on: true }]
    );
}

#[test]
fn a_transferred_call_reports_its_progress_to_the_referrer() {
    let mut p = CallPolicy::new();
    p.handle_transfer_placed(5, 1);
    assert_eq!(call(&mut p, 5, Calling, None), []);
    let progress = |code, last| Action::TransferProgress {
        referrer: 1,
        code,
        last,
    };
    assert_eq!(
        call(&mut p, 5, Ringing, None),
        [progress(180, false), start(5, ToneKind::Ringback)]
    );
    assert_eq!(call(&mut p, 5, Early, Some(183)), [progress(183, false)]);
    assert_eq!(
        call(&mut p, 5, Confirmed, Some(200)),
        [progress(200, true), Action::StopTone]
    );
    // The subscription is over: later states say nothing more.
    assert_eq!(call(&mut p, 5, Terminated, None), []);

    let mut p = CallPolicy::new();
    p.handle_transfer_placed(6, 2);
    assert_eq!(
        call(&mut p, 6, Terminated, None),
        [Action::TransferProgress {
            referrer: 2,
            code: 487,
            last: true
        }]
    );
}

#[test]
fn a_replacing_call_is_answered_at_once_without_ringing() {
    let mut p = CallPolicy::new();
    p.handle_replacing(7);
    assert_eq!(
        call(&mut p, 7, Incoming, None),
        [Action::Answer { call: 7 }]
    );
    assert_eq!(p.playing(), None);
    // Only once: a later incoming call with the same number rings as usual.
    call(&mut p, 7, Terminated, None);
    assert_eq!(
        call(&mut p, 7, Incoming, None),
        [start(7, ToneKind::Ringtone)]
    );
}

#[test]
fn the_echo_service_answers_everything_and_plays_nothing() {
    let mut p = CallPolicy::echo_service();
    assert_eq!(
        call(&mut p, 1, Incoming, None),
        [Action::Answer { call: 1 }]
    );
    assert_eq!(media_started(&mut p, 1), []);
    call(&mut p, 1, Confirmed, Some(200));
    assert_eq!(
        call(&mut p, 2, Incoming, None),
        [Action::Answer { call: 2 }]
    );
    assert_eq!(call(&mut p, 3, Calling, None), []);
    assert_eq!(call(&mut p, 3, Terminated, Some(486)), []);
}

#[test]
fn shutdown_stops_the_tone() {
    let mut p = CallPolicy::new();
    p.handle_shutdown();
    assert_eq!(drain(&mut p), []);
    call(&mut p, 1, Incoming, None);
    p.handle_shutdown();
    assert_eq!(drain(&mut p), [Action::StopTone]);
}
