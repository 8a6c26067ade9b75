//! What the engine does about a call's state besides reporting it: which tone plays (ringtone,
//! ringback, busy), when a call's media mixes the call-waiting tone, which calls are answered
//! at once (the echo service, a call that replaces one of ours), and the NOTIFYs that tell a
//! transferor how the call it asked for goes.
//!
//! Pure, like `sip/`: no tokio, no clock, no sockets. The SIP task feeds it call states and
//! media starts and stops (`handle_*`), then drains `poll_action` and carries the actions out
//! (plays a tone, tells a media task, hands the UA a command with its own `now`). It reports
//! back only what can fail at the edge: a tone player that did not start (`tone_failed`).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use crate::sip::ua::CallState;

/// The tones the engine plays on the output device while no call has media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToneKind {
    Ringtone,
    Ringback,
    Busy,
}

/// What the SIP task is to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer `call` now, without ringing.
    Answer { call: u64 },
    /// Stop the tone that plays (it is the one `StartTone` started last) and wait until the
    /// output is free.
    StopTone,
    /// Play `kind` for `call`; if the player cannot start, call `tone_failed`.
    StartTone { call: u64, kind: ToneKind },
    /// Mix the call-waiting tone into `call`'s media (`on`), or stop mixing it.
    CallWaiting { call: u64, on: bool },
    /// Tell the peer of call `referrer` how the transfer goes (NOTIFY with a sipfrag of
    /// `code`); `last` ends the subscription.
    TransferProgress {
        referrer: u64,
        code: u16,
        last: bool,
    },
}

/// The policy's state: calls by role, the tone it believes plays, the call whose media mixes
/// the call-waiting tone.
#[derive(Debug, Default)]
pub struct CallPolicy {
    /// The built-in echo service: it answers every call and plays no tone.
    echo: bool,
    /// Calls we placed (a busy answer to those plays the busy tone).
    outgoing: HashSet<u64>,
    /// Calls whose media runs (the output device is theirs; no tone starts then).
    media: BTreeSet<u64>,
    /// The tone playing and its call.
    playing: Option<(u64, ToneKind)>,
    /// Call waiting: calls now `incoming`, calls now `confirmed` (not held), and the call
    /// whose media mixes the call-waiting tone.
    incoming: HashSet<u64>,
    confirmed: BTreeSet<u64>,
    waiting_on: Option<u64>,
    /// Incoming calls that replace one of ours (RFC 3891): answered at once, no ringtone.
    replacing: HashSet<u64>,
    /// Calls we placed because a peer REFERred us: new call -> referring call.
    transfers: HashMap<u64, u64>,
    actions: VecDeque<Action>,
}

impl CallPolicy {
    pub fn new() -> CallPolicy {
        CallPolicy::default()
    }

    /// The echo service's policy: answer every incoming call, no tones, no call waiting.
    pub fn echo_service() -> CallPolicy {
        CallPolicy {
            echo: true,
            ..CallPolicy::default()
        }
    }

    /// The next thing to do, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Incoming call `call` replaces one of ours (attended transfer).
    pub fn handle_replacing(&mut self, call: u64) {
        self.replacing.insert(call);
    }

    /// We placed `call` because the peer of `referrer` asked us to (REFER).
    pub fn handle_transfer_placed(&mut self, call: u64, referrer: u64) {
        self.transfers.insert(call, referrer);
    }

    /// Call `call` is now in `state` (`code`: the final response, if any). Its media, if
    /// any, counts as stopped after a `Terminated` (the SIP task stops it).
    pub fn handle_call(&mut self, call: u64, state: CallState, code: Option<u16>) {
        let replacing = state == CallState::Incoming && self.replacing.remove(&call);
        if (self.echo || replacing) && state == CallState::Incoming {
            self.actions.push_back(Action::Answer { call });
        }
        self.transfer_progress(call, state, code);
        if !replacing {
            self.call_tone(call, state, code);
        }
        if state == CallState::Terminated {
            self.replacing.remove(&call);
            self.media.remove(&call);
        }
        self.track_call_waiting(call, state);
    }

    /// `call`'s media is about to start: its own tone stops first (the device becomes the
    /// call's).
    pub fn handle_media_starting(&mut self, call: u64) {
        if self.playing.is_some_and(|(c, _)| c == call) {
            self.stop_tone();
        }
    }

    /// `call`'s media runs.
    pub fn handle_media_started(&mut self, call: u64) {
        self.media.insert(call);
        self.update_call_waiting();
    }

    /// `call`'s media stopped (the call may go on, e.g. on hold).
    pub fn handle_media_stopped(&mut self, call: u64) {
        self.media.remove(&call);
        self.update_call_waiting();
    }

    /// The tone player of the last `StartTone` could not start: nothing plays.
    pub fn tone_failed(&mut self) {
        self.playing = None;
    }

    /// The engine stops: the tone too.
    pub fn handle_shutdown(&mut self) {
        if self.playing.is_some() {
            self.stop_tone();
        }
    }

    /// The tone the policy believes plays, and for which call.
    pub fn playing(&self) -> Option<(u64, ToneKind)> {
        self.playing
    }

    /// The call whose media mixes the call-waiting tone.
    pub fn waiting_on(&self) -> Option<u64> {
        self.waiting_on
    }

    fn stop_tone(&mut self) {
        self.playing = None;
        self.actions.push_back(Action::StopTone);
    }

    fn transfer_progress(&mut self, call: u64, state: CallState, code: Option<u16>) {
        let Some(&referrer) = self.transfers.get(&call) else {
            return;
        };
        let (code, last) = match state {
            CallState::Confirmed => (200, true),
            CallState::Terminated => (code.unwrap_or(487), true),
            CallState::Ringing | CallState::Early => (code.unwrap_or(180), false),
            _ => return,
        };
        self.actions.push_back(Action::TransferProgress {
            referrer,
            code,
            last,
        });
        if last {
            // The UA ends the referring call after a 2xx if the transferor does not.
            self.transfers.remove(&call);
        }
    }

    /// Starts or stops the tone a call state asks for: the ringtone while incoming, ringback
    /// while an outgoing call rings without early media, a busy tone after 486/600. Tones
    /// play only while no call has media (the output device is the call's then).
    fn call_tone(&mut self, call: u64, state: CallState, code: Option<u16>) {
        if self.echo {
            return;
        }
        let wanted = match state {
            CallState::Calling => {
                self.outgoing.insert(call);
                None
            }
            CallState::Incoming => Some(ToneKind::Ringtone),
            CallState::Ringing | CallState::Early
                if self.outgoing.contains(&call) && !self.media.contains(&call) =>
            {
                Some(ToneKind::Ringback)
            }
            CallState::Terminated => {
                let ours = self.outgoing.remove(&call);
                (ours && matches!(code, Some(486 | 600))).then_some(ToneKind::Busy)
            }
            _ => None,
        };
        let current = self
            .playing
            .filter(|(c, _)| *c == call)
            .map(|(_, kind)| kind);
        if wanted.is_some() && wanted == current {
            return;
        }
        if current.is_some() {
            self.stop_tone();
        }
        let Some(kind) = wanted else { return };
        // Another call's tone or media owns the output: this one stays silent.
        if !self.media.is_empty()
            || (kind != ToneKind::Busy
                && self
                    .playing
                    .is_some_and(|(c, k)| c != call && k != ToneKind::Busy))
        {
            return;
        }
        // A finished (or finishing) busy tone of another call gives way.
        if self.playing.is_some() {
            self.stop_tone();
        }
        self.playing = Some((call, kind));
        self.actions.push_back(Action::StartTone { call, kind });
    }

    /// Notes `call`'s new state for call waiting and starts or stops the tone.
    fn track_call_waiting(&mut self, call: u64, state: CallState) {
        if self.echo {
            return;
        }
        if state == CallState::Incoming {
            self.incoming.insert(call);
        } else {
            self.incoming.remove(&call);
        }
        if state == CallState::Confirmed {
            self.confirmed.insert(call);
        } else {
            self.confirmed.remove(&call);
        }
        self.update_call_waiting();
    }

    /// Call waiting (like baresip's): while a call is `incoming` and another is confirmed
    /// with media, that call's media mixes the call-waiting tone into what it plays; it stops
    /// when no call is incoming any more (answered, rejected, cancelled, timed out) or the
    /// active call is held or ends.
    fn update_call_waiting(&mut self) {
        let wanted = if self.incoming.is_empty() {
            None
        } else {
            self.confirmed
                .iter()
                .copied()
                .find(|c| self.media.contains(c))
        };
        if wanted == self.waiting_on {
            return;
        }
        // Only a call whose media still runs can be told.
        if let Some(call) = self.waiting_on.filter(|c| self.media.contains(c)) {
            self.actions
                .push_back(Action::CallWaiting { call, on: false });
        }
        if let Some(call) = wanted {
            self.actions
                .push_back(Action::CallWaiting { call, on: true });
        }
        self.waiting_on = wanted;
    }
}

#[cfg(test)]
mod tests;
