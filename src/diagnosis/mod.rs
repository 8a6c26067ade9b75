//! Live diagnosis: says what is wrong with calls, registration and media in plain words.
//!
//! Pure, like `sip/`: no I/O, no clock. The driver hands in what the engine sees (its events:
//! every SIP message, registration and call states, media statistics; and facts only the
//! driver knows: DNS answers, ICMP errors, failed TLS handshakes, dead connections) together
//! with the time, and takes out changes: a finding became active, or it cleared. Conditions
//! that must hold for a while ("no audio for 5 s") are judged at the media reports, which come
//! every 2 s while a call has media; so no timer is needed. Each finding
//! has a stable `code`, a one-sentence message with the likely cause, advice and evidence.
//!
//! The rules live beside this file: `media` (no audio either way, the microphone, quality),
//! `signalling` (registration, failed calls) and `network` (DNS, TLS, NAT). Every rule has a
//! unit test in `tests.rs`; `tests/diagnosis*.rs` provoke each one for real.

pub mod facts;
mod finding;
mod media;
mod network;
mod signalling;
#[cfg(test)]
mod tests;
pub mod trace;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use facts::{DnsFailure, Fact, Setup, Target, TlsFailure};
pub use finding::{Change, Evidence, Finding, FindingState, Severity};
use trace::{SdpView, TraceMessage};

use crate::event::Event;

/// Calls whose SIP messages are remembered at most (a flood of INVITEs must not grow it).
const MAX_TRACKED_DIALOGS: usize = 64;
/// Servers remembered at most (ICMP errors, DNS answers).
const MAX_TRACKED_SERVERS: usize = 256;

/// What a call's SIP messages told about it (by Call-ID).
#[derive(Debug, Clone, Default)]
struct Dialog {
    /// Our SDP (offer or answer) and the peer's, the latest of each.
    ours: Option<SdpView>,
    theirs: Option<SdpView>,
    /// Where the peer's SDP came from (its signalling address, or its proxy's).
    theirs_from: Option<SocketAddr>,
    /// Where our INVITEs went (each server tried, in order).
    invite_sent_to: Vec<SocketAddr>,
    /// Any response to our INVITE came (from whom).
    invite_answered_by: Option<SocketAddr>,
    /// The final response to the INVITE, in or out.
    final_response: Option<TraceMessage>,
    /// The peer's INVITE (an incoming call).
    their_invite: Option<TraceMessage>,
}

/// A call as the call and media events tell it.
#[derive(Debug, Clone)]
struct CallTrack {
    state: String,
    remote: String,
    sip_call_id: Option<String>,
    /// When it was last confirmed (answered, or resumed).
    confirmed_at: Option<Instant>,
    media: media::MediaTrack,
}

/// The diagnosis engine. Feed it with `handle_event` / `handle_fact` and drain `poll_change`.
#[derive(Debug, Default)]
pub struct Diagnoser {
    setup: Setup,
    /// Active findings by (code, call).
    active: BTreeMap<(&'static str, Option<u64>), Finding>,
    changes: VecDeque<Change>,
    calls: HashMap<u64, CallTrack>,
    /// By SIP Call-ID, oldest first (bounded).
    dialogs: VecDeque<(String, Dialog)>,
    registration: signalling::RegistrationTrack,
    network: network::NetworkTrack,
}

impl Diagnoser {
    pub fn new(setup: Setup) -> Diagnoser {
        Diagnoser {
            setup,
            ..Diagnoser::default()
        }
    }

    /// One engine event (the same stream the front ends get). Diagnosis events are ignored.
    pub fn handle_event(&mut self, event: &Event, now: Instant) {
        match event {
            Event::Sip { dir, peer, raw, .. } => {
                let Ok(peer) = peer.parse::<SocketAddr>() else {
                    return;
                };
                if let Some(message) = TraceMessage::read(*dir, peer, raw) {
                    self.sip_message(message, now);
                }
            }
            Event::Registration {
                state,
                code,
                reason,
                expires,
                ..
            } => self.registration_changed(state, *code, reason.as_deref(), *expires, now),
            Event::Call {
                call,
                state,
                remote,
                code,
                reason,
                sip_call_id,
                ..
            } => {
                if let Ok(id) = call.parse::<u64>() {
                    self.call_changed(
                        id,
                        state,
                        remote,
                        *code,
                        reason.as_deref(),
                        sip_call_id.as_deref(),
                        now,
                    );
                }
            }
            Event::Media { .. } => {
                if let Some(sample) = media::MediaSample::of(event) {
                    self.media_sample(sample, now);
                }
            }
            _ => {}
        }
    }

    /// A fact only the driver knows.
    pub fn handle_fact(&mut self, fact: Fact, now: Instant) {
        match fact {
            Fact::Setup(setup) => self.setup = setup,
            other => self.network_fact(other, now),
        }
    }

    pub fn poll_change(&mut self) -> Option<Change> {
        self.changes.pop_front()
    }

    /// The findings active now.
    pub fn active(&self) -> impl Iterator<Item = &Finding> {
        self.active.values()
    }

    pub fn is_active(&self, code: &str, call: Option<u64>) -> bool {
        self.active.keys().any(|(c, k)| *c == code && *k == call)
    }

    /// Makes `finding` active. A finding already active under the same code and call is
    /// updated (evidence, figures) without a new change, unless it is about another subject;
    /// so counters moving every two seconds do not flood the front ends.
    fn raise(&mut self, finding: Finding) {
        let key = (finding.code, finding.call);
        match self.active.get_mut(&key) {
            Some(existing) if existing.subject == finding.subject => {
                existing.evidence = finding.evidence;
            }
            _ => {
                self.changes.push_back(Change {
                    state: FindingState::Active,
                    finding: finding.clone(),
                });
                self.active.insert(key, finding);
            }
        }
    }

    fn clear(&mut self, code: &'static str, call: Option<u64>) {
        if let Some(finding) = self.active.remove(&(code, call)) {
            self.changes.push_back(Change {
                state: FindingState::Cleared,
                finding,
            });
        }
    }

    /// Clears every active finding `which` picks.
    fn clear_where(&mut self, which: impl Fn(&Finding) -> bool) {
        let keys: Vec<_> = self
            .active
            .iter()
            .filter(|(_, f)| which(f))
            .map(|(k, _)| *k)
            .collect();
        for (code, call) in keys {
            self.clear(code, call);
        }
    }

    fn dialog(&self, call_id: &str) -> Option<&Dialog> {
        self.dialogs
            .iter()
            .find(|(id, _)| id == call_id)
            .map(|(_, d)| d)
    }

    fn dialog_mut(&mut self, call_id: &str) -> &mut Dialog {
        if let Some(index) = self.dialogs.iter().position(|(id, _)| id == call_id) {
            return &mut self.dialogs[index].1;
        }
        if self.dialogs.len() >= MAX_TRACKED_DIALOGS {
            self.dialogs.pop_front();
        }
        self.dialogs
            .push_back((call_id.to_string(), Dialog::default()));
        let last = self.dialogs.len() - 1;
        &mut self.dialogs[last].1
    }

    /// A call's dialog, by the Call-ID its events named.
    fn call_dialog(&self, call: u64) -> Option<&Dialog> {
        let id = self.calls.get(&call)?.sip_call_id.as_deref()?;
        self.dialog(id)
    }

    fn sip_message(&mut self, message: TraceMessage, now: Instant) {
        self.network_saw_message(&message, now);
        if message.cseq_method == "REGISTER" {
            self.registration_message(&message);
            return;
        }
        if message.call_id.is_empty() || !matches!(message.cseq_method.as_str(), "INVITE" | "ACK") {
            return;
        }
        let dir = message.dir;
        // An offer refused before any call began (no codec in common): no call event tells
        // of it, so the refusal itself does.
        let refused_offer = dir == crate::event::Direction::Out
            && message.is_response_to("INVITE")
            && matches!(message.code, Some(488 | 606))
            && !self
                .calls
                .values()
                .any(|c| c.sip_call_id.as_deref() == Some(message.call_id.as_str()));
        let call_id = message.call_id.clone();
        let dialog = self.dialog_mut(&call_id);
        if let Some(sdp) = message.sdp.clone() {
            match dir {
                crate::event::Direction::Out => dialog.ours = Some(sdp),
                crate::event::Direction::In => {
                    dialog.theirs = Some(sdp);
                    dialog.theirs_from = Some(message.peer);
                }
            }
        }
        match (dir, message.method.as_deref()) {
            (crate::event::Direction::Out, Some("INVITE"))
                if !dialog.invite_sent_to.contains(&message.peer) =>
            {
                dialog.invite_sent_to.push(message.peer);
            }
            (crate::event::Direction::In, Some("INVITE")) => {
                dialog.their_invite = Some(message);
            }
            (_, None) if message.cseq_method == "INVITE" => {
                if dir == crate::event::Direction::In {
                    dialog.invite_answered_by = Some(message.peer);
                }
                if message.is_final() {
                    dialog.final_response = Some(message);
                }
            }
            _ => {}
        }
        if refused_offer {
            self.offer_refused(&call_id);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn call_changed(
        &mut self,
        call: u64,
        state: &str,
        remote: &str,
        code: Option<u16>,
        reason: Option<&str>,
        sip_call_id: Option<&str>,
        now: Instant,
    ) {
        let is_new = !self.calls.contains_key(&call);
        if is_new && state != "terminated" {
            // A new call: what the last failed call said is history now.
            // (Findings of a call that ended were raised as it ended: why it failed.)
            let live: Vec<u64> = self.calls.keys().copied().collect();
            self.clear_where(|f| {
                f.call.is_some_and(|c| c != call && !live.contains(&c))
                    || (f.call.is_none() && f.subject.as_deref() == Some(REFUSED_OFFER))
            });
        }
        let track = self.calls.entry(call).or_insert_with(|| CallTrack {
            state: String::new(),
            remote: remote.to_string(),
            sip_call_id: None,
            confirmed_at: None,
            media: media::MediaTrack::default(),
        });
        if track.sip_call_id.is_none() {
            track.sip_call_id = sip_call_id.map(str::to_string);
        }
        if !remote.is_empty() {
            track.remote = remote.to_string();
        }
        let was = std::mem::replace(&mut track.state, state.to_string());
        if state == "confirmed" && was != "confirmed" {
            track.confirmed_at = Some(now);
            // Media is judged afresh after answering or resuming.
            track.media.restart(now);
        }
        if state == "terminated" {
            self.clear_where(|f| f.call == Some(call));
            self.call_failed(call, code, reason, now);
            self.calls.remove(&call);
        }
    }
}

/// The subject of findings about an incoming call refused before it began.
const REFUSED_OFFER: &str = "refused offer";

/// `n` seconds as text for messages ("5 s").
fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs())
}

/// A list for a sentence: "a, b and c"; "nothing" when empty.
fn listing(items: &[String]) -> String {
    match items {
        [] => "nothing".to_string(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}
