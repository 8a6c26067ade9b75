//! Calls: INVITE dialogs in both directions (RFC 3261 §13-15), CANCEL, BYE, hold via
//! re-INVITE, INFO DTMF, REFER. Part of the user agent; owns no I/O.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::reliable::PendingReliable;
use super::send::NextHop;
use super::session_timer::SessionTimer;
use super::transfer::{AskedRefer, Referring};
use super::{CallState, Owner, UaEvent, UserAgent};
use crate::sdp::{self, Direction, LocalMedia, MediaParams};
use crate::sip::auth::Authenticator;
use crate::sip::dialog::Dialog;
use crate::sip::message::{Method, Request, Response, reason_phrase};
use crate::sip::transaction::{Destination, TransportKind, TsxId};
use crate::sip::uri::Uri;

/// A ringing outgoing call is cancelled after this long without an answer.
pub const NO_ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// Most 3xx redirects and auth retries one INVITE may take.
const MAX_REDIRECTS: u8 = 1;
/// At most this many calls at once: past it an INVITE gets 486 at once. Without a bound a flood
/// of INVITEs with fresh Call-IDs kept one ringing call (and its INVITE) per request forever.
pub const MAX_CALLS: usize = 16;
/// An incoming call nobody answers or cancels ends with 480 after this. Longer than
/// NO_ANSWER_TIMEOUT, so a caller that gives up itself (sipterm does at 120 s) CANCELs first.
pub const RING_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Caller,
    Callee,
}

/// The UAS side retransmits its 2xx until the ACK comes (RFC 3261 §13.3.1.4).
#[derive(Debug, Clone)]
pub(super) struct PendingOk {
    response: Response,
    dest: Destination,
    next: Instant,
    interval: Duration,
    give_up: Instant,
}

#[derive(Debug)]
pub(super) struct Call {
    pub id: u64,
    pub role: Role,
    pub state: CallState,
    pub remote: String,
    pub dialog: Option<Dialog>,
    /// The INVITE in flight (UAC) or being answered (UAS).
    pub invite: Option<Request>,
    pub invite_tsx: Option<TsxId>,
    pub invite_dest: Option<Destination>,
    pub local_tag: String,
    pub media: LocalMedia,
    pub params: Option<MediaParams>,
    pub remote_offer: Option<String>,
    pub ack: Option<(Request, Destination)>,
    pub pending_ok: Option<PendingOk>,
    pub cancel_wanted: bool,
    pub cancelled: bool,
    pub redirects: u8,
    pub auth_tries: u8,
    pub no_answer_at: Option<Instant>,
    /// Our own re-INVITE's transaction, once it went out.
    pub reinvite_tsx: Option<TsxId>,
    /// Our own re-INVITE (hold/resume) is in flight or waits for DNS: a peer's gets 491.
    pub reinviting: bool,
    /// The Contact our INVITE carried (for the destination it went to): the dialog's.
    pub local_contact: Option<Uri>,
    /// The driver left our media address to us (a wildcard RTP socket): the SDP gets the
    /// local address towards wherever the INVITE goes.
    pub media_auto: bool,
    pub glare_retry_at: Option<Instant>,
    pub on_hold: bool,
    /// A peer's re-INVITE without SDP: we offered in the 200 and wait for the answer in ACK.
    pub offered_in_ok: bool,
    /// The dialog is confirmed by an ACK: we sent it for the 2xx (caller) or received it
    /// (callee). From then on a transport error on the initial INVITE transaction (kept ~32 s
    /// after the 2xx, RFC 6026 Accepted) says nothing about the call.
    pub ack_done: bool,
    /// UAC: the RSeq of the last reliable provisional response we PRACKed (RFC 3262 §4).
    pub rseq_acked: Option<u32>,
    /// UAS: our reliable provisional response waiting for its PRACK.
    pub reliable_1xx: Option<PendingReliable>,
    /// UAS: the RSeq our next reliable provisional response gets.
    pub next_rseq: Option<u32>,
    /// Our UPDATE with an offer is in flight: a peer's offer gets 491 meanwhile.
    pub updating: bool,
    /// The re-INVITE in flight only refreshes the session (RFC 4028): its failure changes no
    /// hold state.
    pub reinvite_is_refresh: bool,
    /// Our ICE restart's re-INVITE is in flight (or waits to retry after a 491): the ICE,
    /// address and port it replaced, to go back to when the peer refuses it.
    pub restart_replaced: Option<(Option<sdp::LocalIce>, std::net::IpAddr, u16)>,
    /// The peer's Allow lists UPDATE: session refreshes go by UPDATE (RFC 4028 §7.4).
    pub peer_allows_update: bool,
    /// The session timer (RFC 4028) once a 2xx agreed on one.
    pub session: Option<SessionTimer>,
    /// 422 answers taken for this call's INVITE or refreshes (bounded).
    pub se_retries: u8,
    /// The peer's REFER waiting for the user's decision.
    pub asked_refer: Option<AskedRefer>,
    /// The REFER being followed asked for no NOTIFYs (`Refer-Sub: false`, RFC 4488).
    pub refer_no_notify: bool,
    /// We followed the peer's REFER and the new call is up: hang up at this time unless the
    /// transferor does first (RFC 5589 §6.1 leaves the BYE to it).
    pub transferred_bye_at: Option<Instant>,
    /// Our REFER to the peer, until its outcome is known.
    pub referring: Option<Referring>,
    /// This incoming call replaces that one (RFC 3891): answering it ends the other.
    pub replaces: Option<u64>,
    /// INFO DTMF digits waiting to go (at most `MAX_QUEUED_DTMF`), and whether one is out.
    pub info_dtmf: VecDeque<char>,
    pub info_in_flight: bool,
}

impl Call {
    /// A call with nothing sent or negotiated yet.
    fn new(
        id: u64,
        role: Role,
        state: CallState,
        remote: String,
        local_tag: String,
        media: LocalMedia,
    ) -> Call {
        Call {
            id,
            role,
            state,
            remote,
            dialog: None,
            invite: None,
            invite_tsx: None,
            invite_dest: None,
            local_tag,
            media,
            params: None,
            remote_offer: None,
            ack: None,
            pending_ok: None,
            cancel_wanted: false,
            cancelled: false,
            redirects: 0,
            auth_tries: 0,
            no_answer_at: None,
            reinvite_tsx: None,
            reinviting: false,
            local_contact: None,
            media_auto: false,
            glare_retry_at: None,
            on_hold: false,
            offered_in_ok: false,
            ack_done: false,
            rseq_acked: None,
            reliable_1xx: None,
            next_rseq: None,
            updating: false,
            reinvite_is_refresh: false,
            restart_replaced: None,
            peer_allows_update: false,
            session: None,
            se_retries: 0,
            asked_refer: None,
            refer_no_notify: false,
            transferred_bye_at: None,
            referring: None,
            replaces: None,
            info_dtmf: VecDeque::new(),
            info_in_flight: false,
        }
    }

    /// The media task's copy of `params`. While we hold the call it sends nothing: RFC 3264
    /// §8.4 `sendonly` would allow music on hold, but we have none, and sending the live
    /// microphone let the held party hear everything said on this side of a held call.
    /// (`call.params` keeps the negotiated direction; only the media task sees `Inactive`.)
    ///
    /// It also names the peer's signalling addresses, which its RTP may come from behind a NAT
    /// (`nat::latch`): the host of its Contact, and where its INVITE came from (for a call it
    /// placed directly; through a proxy that is the proxy, which we trust anyway).
    pub(super) fn media_params(&self, mut params: MediaParams) -> MediaParams {
        if self.on_hold && params.direction == Direction::SendOnly {
            params.direction = Direction::Inactive;
        }
        let contact_ip = self.dialog.as_ref().and_then(|d| {
            d.remote_target
                .host_unbracketed()
                .parse::<std::net::IpAddr>()
                .ok()
        });
        let source_ip = match self.role {
            Role::Callee => self.invite_dest.map(|d| d.addr.ip()),
            Role::Caller => None,
        };
        params.peer_signalling = contact_ip.into_iter().chain(source_ip).collect();
        params.peer_signalling.dedup();
        // Where the INVITE went or came from: SDES keys in its SDP were as safe as that hop.
        params.signalling_tls = self
            .invite_dest
            .is_some_and(|d| d.transport == TransportKind::Tls);
        params
    }

    /// The SIP Call-ID: the dialog's once there is one, else the INVITE's (the same value;
    /// a call always has one of the two from its first event on).
    pub fn sip_call_id(&self) -> Option<&str> {
        self.dialog
            .as_ref()
            .map(|d| d.call_id.as_str())
            .or_else(|| self.invite.as_ref()?.headers.call_id().ok())
    }

    pub(super) fn media_direction(&self) -> Direction {
        if self.on_hold {
            Direction::SendOnly
        } else {
            Direction::SendRecv
        }
    }
}

impl UserAgent {
    pub(super) fn find_call(&self, id: Option<u64>, pick: impl Fn(&Call) -> bool) -> Option<u64> {
        match id {
            Some(id) => self.calls.iter().find(|c| c.id == id).map(|c| c.id),
            None => self.calls.iter().rev().find(|c| pick(c)).map(|c| c.id),
        }
    }

    /// The call a `hangup` without an id means: a confirmed (or held) call first, then one we
    /// are placing, then a ringing incoming one; the most recent of each kind. Before, it was
    /// simply the newest call, so after a scanner's INVITE flood `hangup` rejected one of the
    /// phantom ringing calls and left the real conversation up.
    pub(super) fn call_to_hang_up(&self, id: Option<u64>) -> Option<u64> {
        if id.is_some() {
            return self.find_call(id, |_| true);
        }
        // A call we are already cancelling comes last: a second `hangup` means the next call.
        let rank = |c: &Call| match (c.state, c.role) {
            (CallState::Confirmed | CallState::Held, _) => 0,
            (_, Role::Caller) if !c.cancel_wanted => 1,
            (CallState::Incoming, Role::Callee) => 2,
            _ => 3,
        };
        (0..=3).find_map(|r| self.find_call(None, |c| rank(c) == r))
    }

    pub(super) fn call_mut(&mut self, id: u64) -> Option<&mut Call> {
        self.calls.iter_mut().find(|c| c.id == id)
    }

    pub(super) fn emit_call(&mut self, id: u64, code: Option<u16>, reason: Option<String>) {
        // Watchers and the presence server follow our calls (busy lamps of others).
        if let Some(now) = self.clock {
            self.own_state_changed(now);
        }
        if let Some(call) = self.calls.iter().find(|c| c.id == id) {
            self.events.push_back(UaEvent::Call {
                call: id,
                state: call.state,
                remote: call.remote.clone(),
                code,
                reason,
                sip_call_id: call.sip_call_id().map(str::to_string),
            });
        }
    }

    pub(super) fn set_state(
        &mut self,
        id: u64,
        state: CallState,
        code: Option<u16>,
        reason: Option<String>,
    ) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        if call.state == state && code.is_none() {
            return;
        }
        call.state = state;
        self.emit_call(id, code, reason);
    }

    pub(super) fn terminate(&mut self, id: u64, code: Option<u16>, reason: Option<String>) {
        let had_media = self.calls.iter().any(|c| c.id == id && c.params.is_some());
        if had_media {
            self.events.push_back(UaEvent::MediaStop { call: id });
        }
        self.set_state(id, CallState::Terminated, code, reason);
        self.calls.retain(|c| c.id != id);
        // The BYE's owner stays: its transaction may still fail over to another server.
        self.owners.retain(|_, o| match o {
            Owner::Call(c, method) => *c != id || *method == Method::Bye,
            Owner::Reinvite(c) => *c != id,
            Owner::Registration | Owner::Messaging(_) => true,
        });
    }

    // ---------------------------------------------------------------- outgoing

    pub(super) fn dial(&mut self, target: Uri, mut media: LocalMedia, now: Instant) {
        let id = self.next_call_id();
        media.session_id = self.ids.next_u64() >> 1;
        media.session_version = 1;
        // A wildcard RTP socket: the SDP gets the address towards the INVITE's destination
        // when it goes (`localise`); this one only fills the offer until then.
        let media_auto = media.address.is_unspecified();
        if media_auto {
            media.address = self.local_ip_for(None);
        }
        let local_tag = self.ids.tag();
        let call_id = self.ids.call_id();
        // Headers in the target URI (RFC 3261 §19.1.5), as a REFER's Refer-To carries them: only
        // Replaces (attended transfer) goes into the INVITE; the URI itself is sent without.
        let mut target = target;
        let replaces = target
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("Replaces"))
            .map(|(_, value)| crate::sip::uri::unescape_text(value))
            .filter(|v| v.len() <= 512 && !v.chars().any(char::is_control));
        target.headers.clear();
        let mut invite = Request::new(Method::Invite, target.clone());
        invite.headers.push(
            "From",
            format!("{};tag={local_tag}", self.local_name_addr()),
        );
        invite.headers.push("To", format!("<{target}>"));
        invite.headers.push("Call-ID", call_id);
        invite.headers.push("CSeq", "1 INVITE");
        invite
            .headers
            .push("Contact", format!("<{}>", self.default_contact()));
        invite.headers.push("Allow", super::ALLOW);
        invite.headers.push("Supported", self.supported());
        if self.config.calls.rel100 == super::Rel100::Required {
            invite.headers.push("Require", "100rel");
        }
        for (name, value) in self.session_headers_for_dial() {
            invite.headers.push(name, value);
        }
        if let Some(replaces) = replaces {
            invite.headers.push("Replaces", replaces);
        }
        invite.headers.push("Content-Type", "application/sdp");
        invite.body = sdp::build_offer(&media).into_bytes();
        self.calls.push(Call {
            // So that the first call event (`calling`, emitted before the INVITE goes out)
            // names the Call-ID; send_invite replaces it with the INVITE as sent.
            invite: Some(invite.clone()),
            media_auto,
            ..Call::new(
                id,
                Role::Caller,
                CallState::Calling,
                target.to_string(),
                local_tag,
                media,
            )
        });
        self.emit_call(id, None, None);
        self.send_invite(id, invite, now);
    }

    /// Sends the INVITE (first, after a challenge, after a redirect) outside the dialog: to the
    /// outbound proxy when there is one, else where its Request-URI says (RFC 3263).
    fn send_invite(&mut self, id: u64, invite: Request, now: Instant) {
        self.send_request(
            invite,
            NextHop::OutsideDialog,
            Owner::Call(id, Method::Invite),
            now,
        );
    }

    pub(super) fn hangup(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.iter().find(|c| c.id == id) else {
            return;
        };
        match (call.role, call.state) {
            (Role::Caller, CallState::Calling | CallState::Ringing | CallState::Early)
                if call.dialog.is_none() || call.ack.is_none() =>
            {
                self.cancel(id, now);
            }
            (Role::Callee, CallState::Incoming) => self.reject(id, 486, now),
            _ => self.send_bye(id, now),
        }
    }

    /// CANCEL needs a provisional response first (RFC 3261 §9.1); until then we only note it.
    fn cancel(&mut self, id: u64, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        call.cancel_wanted = true;
        if call.invite_tsx.is_none() {
            // The INVITE still waits for DNS: it never goes out.
            self.terminate(id, Some(487), Some("Request Terminated".into()));
            return;
        }
        let provisional_seen = call.state != CallState::Calling;
        if !provisional_seen || call.cancelled {
            return;
        }
        call.cancelled = true;
        let (Some(invite), Some(dest)) = (call.invite.clone(), call.invite_dest) else {
            return;
        };
        let mut cancel = Request::new(Method::Cancel, invite.uri.clone());
        for name in ["Via", "Route", "From", "To", "Call-ID"] {
            // The CANCEL's Via is the INVITE's top Via: same branch, so it matches.
            let value = if name == "Via" {
                invite
                    .headers
                    .get("Via")
                    .map(|v| super::split_first_value(v).0.to_string())
            } else {
                None
            };
            match value {
                Some(v) => cancel.headers.push(name, v),
                None => {
                    for v in invite.headers.get_all(name) {
                        cancel.headers.push(name, v);
                    }
                }
            }
        }
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        cancel.headers.push("CSeq", format!("{seq} CANCEL"));
        cancel.headers.push("Max-Forwards", "70");
        let tsx = self.tsx.send_request(cancel, dest, now);
        self.owners.insert(tsx, Owner::Call(id, Method::Cancel));
    }

    fn send_bye(&mut self, id: u64, now: Instant) {
        self.send_bye_because(id, "Hung up".into(), now);
    }

    /// BYE, with `reason` in the call's `terminated` event.
    pub(super) fn send_bye_because(&mut self, id: u64, reason: String, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        call.pending_ok = None;
        let Some(dialog) = call.dialog.as_mut() else {
            self.terminate(id, None, Some(reason));
            return;
        };
        let bye = dialog.request(Method::Bye, None);
        let hop = NextHop::Uri(dialog.next_hop_uri().clone());
        self.send_request(bye, hop, Owner::Call(id, Method::Bye), now);
        // The call is over for the user now; the BYE's answer changes nothing they see.
        self.terminate(id, None, Some(reason));
    }

    pub(super) fn hold(&mut self, id: u64, hold: bool, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        // A call the peer put on hold shows as held too, but only the peer can resume it:
        // say so, instead of ignoring the user's key press.
        if !hold && !call.on_hold && call.state == CallState::Held {
            self.events.push_back(UaEvent::Error {
                message: format!("call {id}: the other side holds this call; only it can resume"),
            });
            return;
        }
        if call.dialog.is_none() || call.reinviting || call.updating || call.on_hold == hold {
            return;
        }
        call.on_hold = hold;
        self.send_offer(id, now);
    }

    /// A new offer of ours (hold, resume, a glare retry): a re-INVITE once the call is
    /// confirmed, an UPDATE in an early dialog (RFC 3311).
    pub(super) fn send_offer(&mut self, id: u64, now: Instant) {
        let confirmed = self.calls.iter().any(|c| c.id == id && c.ack_done);
        if confirmed {
            self.send_reinvite(id, now);
        } else {
            self.send_update(id, true, now);
        }
    }

    /// ICE restart: our new credentials and candidates go out in a re-INVITE; the answer's
    /// (`reinvite_response`) restarts the checks on both sides.
    pub(super) fn restart_ice(
        &mut self,
        id: u64,
        ice: sdp::LocalIce,
        address: std::net::IpAddr,
        rtp_port: u16,
        now: Instant,
    ) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        if call.reinviting || call.updating || call.restart_replaced.is_some() {
            self.events.push_back(UaEvent::Error {
                message: format!("call {id}: an offer is pending; ICE restart not sent"),
            });
            // The driver's ICE restarted already: it goes back to the session the call has.
            self.events
                .push_back(UaEvent::IceRestartRefused { call: id });
            return;
        }
        let replaced = (
            call.media.ice.replace(ice),
            std::mem::replace(&mut call.media.address, address),
            std::mem::replace(&mut call.media.rtp_port, rtp_port),
        );
        call.restart_replaced = Some(replaced);
        self.send_reinvite(id, now);
    }

    fn send_reinvite(&mut self, id: u64, now: Instant) {
        self.send_reinvite_with(id, true, now);
    }

    /// Our re-INVITE with our session description: a new version (hold, resume), or the same
    /// one (`new_version` false) for a session refresh (RFC 4028 §7.4).
    pub(super) fn send_reinvite_with(&mut self, id: u64, new_version: bool, now: Instant) {
        let session_headers = self.session_headers_for_refresh(id);
        let supported = self.supported();
        let Some(call) = self.call_mut(id) else {
            return;
        };
        if new_version {
            call.media.session_version += 1;
        }
        call.media.direction = call.media_direction();
        let body = sdp::build_offer(&call.media).into_bytes();
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let mut invite = dialog.request(Method::Invite, None);
        invite.headers.push("Supported", supported);
        for (name, value) in session_headers {
            invite.headers.push(name, value);
        }
        invite.headers.push("Content-Type", "application/sdp");
        invite.body = body;
        let hop = NextHop::Uri(dialog.next_hop_uri().clone());
        call.reinviting = true;
        call.reinvite_is_refresh = !new_version;
        self.send_request(invite, hop, Owner::Reinvite(id), now);
    }

    /// Responses to our requests in calls.
    pub(super) fn call_response(
        &mut self,
        id: u64,
        method: Method,
        tsx: TsxId,
        response: Response,
        now: Instant,
    ) {
        let _ = tsx;
        match method {
            Method::Invite => self.invite_response(id, response, now),
            Method::Update => self.update_response(id, response, now),
            Method::Refer => self.refer_response(id, &response),
            Method::Info if response.is_final() => self.info_done(id, now),
            _ => {}
        }
    }

    fn invite_response(&mut self, id: u64, response: Response, now: Instant) {
        if response.allows_update()
            && let Some(call) = self.call_mut(id)
        {
            call.peer_allows_update = true;
        }
        let Some(call) = self.calls.iter().find(|c| c.id == id) else {
            // A 2xx for a call we already left: ACK and BYE it so the peer stops ringing.
            return;
        };
        let Some(invite) = call.invite.clone() else {
            return;
        };
        let code = response.code;
        if response.is_provisional() {
            if code == 100 {
                return;
            }
            let has_tag = response
                .headers
                .to()
                .ok()
                .and_then(|t| t.tag().map(str::to_string))
                .is_some();
            let Some(call) = self.call_mut(id) else {
                return;
            };
            let contact = call
                .local_contact
                .clone()
                .unwrap_or_else(|| invite_contact(&invite));
            if has_tag && call.dialog.is_none() {
                call.dialog = Dialog::from_uac(&invite, &response, contact).ok();
            }
            // A reliable 1xx is PRACKed (RFC 3262); a repeated or out-of-order one is dropped.
            if !self.take_reliable_provisional(id, &invite, &response, now) {
                return;
            }
            let Some(call) = self.call_mut(id) else {
                return;
            };
            if call.no_answer_at.is_none() {
                call.no_answer_at = Some(now + NO_ANSWER_TIMEOUT);
            }
            let early_sdp = !response.body.is_empty() && call.params.is_none();
            let state = if early_sdp || code == 183 {
                CallState::Early
            } else {
                CallState::Ringing
            };
            if early_sdp {
                // An unusable early answer is reported; the final one decides.
                let _ = self.take_answer(id, &response.body);
            }
            let cancel_now = self
                .calls
                .iter()
                .any(|c| c.id == id && c.cancel_wanted && !c.cancelled);
            self.set_state(id, state, Some(code), Some(response.reason.clone()));
            if let Some(call) = self.call_mut(id) {
                call.state = state;
            }
            if cancel_now {
                self.cancel(id, now);
            }
            return;
        }
        if response.is_success() {
            self.confirm_outgoing(id, &invite, response, now);
            return;
        }
        // Failures.
        match code {
            // RFC 4028 §7.3: the peer wants a longer session; retry with its Min-SE.
            422 if !call.cancel_wanted => {
                if let Some(next) = self.retry_after_422(id, &invite, &response) {
                    self.send_invite(id, next, now);
                    return;
                }
            }
            401 | 407 if call.auth_tries == 0 && !call.cancel_wanted => {
                let retry = self.auth_retry(&invite, &response);
                if let Some(next) = retry {
                    if let Some(call) = self.call_mut(id) {
                        call.auth_tries += 1;
                    }
                    self.send_invite(id, next, now);
                    return;
                }
            }
            300..=399 if call.redirects < MAX_REDIRECTS && !call.cancel_wanted => {
                let target = response
                    .headers
                    .contacts()
                    .ok()
                    .and_then(|c| c.into_iter().next())
                    .map(|c| c.uri);
                if let Some(target) = target {
                    let mut next = invite.clone();
                    next.headers.remove("Via");
                    next.headers.remove("Route");
                    next.headers.remove("Max-Forwards");
                    next.headers.remove("User-Agent");
                    bump_cseq(&mut next);
                    next.uri = target;
                    if let Some(call) = self.call_mut(id) {
                        call.redirects += 1;
                    }
                    self.send_invite(id, next, now);
                    return;
                }
            }
            _ => {}
        }
        self.terminate(id, Some(code), Some(response.reason.clone()));
    }

    fn confirm_outgoing(&mut self, id: u64, invite: &Request, response: Response, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let contact = call
            .local_contact
            .clone()
            .unwrap_or_else(|| invite_contact(invite));
        if let Some((ack, dest)) = call.ack.clone() {
            // A retransmitted 2xx: our ACK got lost; send it again.
            self.push_raw(dest, ack);
            return;
        }
        // The 2xx fixes the dialog even if an early one had another tag (forking: first wins).
        let mut dialog = match Dialog::from_uac(invite, &response, contact) {
            Ok(d) => d,
            Err(_) => {
                self.terminate(id, Some(502), Some("Malformed 2xx".into()));
                return;
            }
        };
        // The early dialog of the same peer went on (PRACK, UPDATE): its CSeq numbers too.
        if let Some(early) = call.dialog.as_ref()
            && early.remote_tag == dialog.remote_tag
        {
            dialog.local_seq = dialog.local_seq.max(early.local_seq);
            dialog.remote_seq = early.remote_seq;
        }
        let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        // RFC 3261 §13.2.2.4: the ACK for a 2xx follows the dialog's route set, else goes to
        // the remote target; never to the outbound proxy unless it record-routed.
        let ack = dialog.request(Method::Ack, Some(seq));
        let hop = dialog.next_hop_uri().clone();
        call.dialog = Some(dialog);
        call.no_answer_at = None;
        call.ack_done = true;
        self.send_ack(id, ack, hop, now);
        let cancel_wanted = self.calls.iter().any(|c| c.id == id && c.cancel_wanted);
        if cancel_wanted {
            // We hung up while it rang, but it answered: end it properly.
            self.send_bye(id, now);
            return;
        }
        self.uac_session_from(id, &response, now);
        if self.calls.iter().any(|c| c.id == id && c.params.is_none()) {
            if let Err(reason) = self.take_answer(id, &response.body) {
                // The user sees why (e.g. the peer refused the SRTP this account requires).
                self.send_bye_because(id, reason, now);
                return;
            }
        } else if !response.body.is_empty() {
            // A 2xx may differ from the early answer (RFC 3261 §13.2.1 keeps the first; we
            // follow what the final answer says, as most phones do).
            let _ = self.take_answer(id, &response.body);
        }
        self.set_state(
            id,
            CallState::Confirmed,
            Some(response.code),
            Some(response.reason.clone()),
        );
    }

    /// Applies an SDP answer to our offer. Err(why) when it is unusable.
    pub(super) fn take_answer(&mut self, id: u64, body: &[u8]) -> Result<(), String> {
        let Some(call) = self.call_mut(id) else {
            return Err("no such call".into());
        };
        let text = String::from_utf8_lossy(body);
        match sdp::apply_answer(&text, &call.media) {
            Ok(params) => {
                let first = call.params.is_none();
                call.params = Some(params.clone());
                let params = call.media_params(params);
                let event = if first {
                    UaEvent::MediaStart {
                        call: id,
                        params,
                        local: call.media.clone(),
                    }
                } else {
                    UaEvent::MediaUpdate { call: id, params }
                };
                self.events.push_back(event);
                Ok(())
            }
            Err(e) => {
                self.events.push_back(UaEvent::Error {
                    message: format!("call {id}: unusable SDP answer: {e}"),
                });
                Err(format!("Unusable SDP answer: {e}"))
            }
        }
    }

    /// The answer to our re-INVITE (hold, resume).
    pub(super) fn reinvite_response(&mut self, id: u64, response: Response, now: Instant) {
        if response.is_provisional() {
            return;
        }
        let Some(call) = self.call_mut(id) else {
            return;
        };
        if !call.reinviting {
            // A retransmitted 2xx (the re-INVITE's transaction passes each one up): our ACK
            // got lost; send it again, and nothing else changes.
            if response.is_success()
                && let Some((ack, dest)) = call.ack.clone()
            {
                self.push_raw(dest, ack);
            }
            return;
        }
        call.reinvite_tsx = None;
        call.reinviting = false;
        if response.is_success() {
            call.restart_replaced = None;
            let Some(invite) = call.invite.clone() else {
                return;
            };
            let seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
            let Some(dialog) = call.dialog.as_mut() else {
                return;
            };
            dialog.refresh_target(
                response
                    .headers
                    .contacts()
                    .ok()
                    .and_then(|c| c.into_iter().next())
                    .map(|c| c.uri),
            );
            let ack = dialog.request(Method::Ack, Some(seq));
            let hop = dialog.next_hop_uri().clone();
            self.send_ack(id, ack, hop, now);
            self.uac_session_from(id, &response, now);
            let _ = self.take_answer(id, &response.body);
            let state = if self.calls.iter().any(|c| c.id == id && c.on_hold) {
                CallState::Held
            } else {
                CallState::Confirmed
            };
            self.set_state(
                id,
                state,
                Some(response.code),
                Some(response.reason.clone()),
            );
            return;
        }
        match response.code {
            // Glare (RFC 3261 §14.1): retry after 2.1-4 s as the dialog's owner of Call-ID.
            491 => {
                // §14.1: only the Call-ID's owner (the caller) waits 2.1-4 s; the other side
                // waits 0-2 s. Both used to wait 2.1-4 s, so the two retries could collide again.
                let owns_call_id = self
                    .calls
                    .iter()
                    .any(|c| c.id == id && c.role == Role::Caller);
                let wait = if owns_call_id {
                    Duration::from_millis(2100 + self.ids.next_u64() % 1900)
                } else {
                    Duration::from_millis(self.ids.next_u64() % 2000)
                };
                if let Some(call) = self.call_mut(id) {
                    call.glare_retry_at = Some(now + wait);
                }
            }
            481 | 408 => {
                if let Some(call) = self.call_mut(id) {
                    call.restart_replaced = None;
                }
                self.send_bye(id, now);
            }
            // Our refresh asked for a shorter session than the peer takes (RFC 4028 §7.3).
            422 => {
                let peer_min = response
                    .headers
                    .get("Min-SE")
                    .and_then(super::session_timer::parse_min_se);
                if let (Some(min), Some(call)) = (peer_min, self.call_mut(id))
                    && call.se_retries < super::session_timer::MAX_422_RETRIES
                    && let Some(timer) = call.session.as_mut()
                {
                    call.se_retries += 1;
                    timer.interval = timer.interval.max(min);
                    self.send_reinvite_with(id, false, now);
                }
            }
            _ => {
                // The peer kept the old session: undo our wish (a session refresh changed
                // nothing to undo; the session timer ends the call if no refresh succeeds).
                // A refused ICE restart goes back to the ICE session the call had (the
                // driver's agent too: `IceRestartRefused`), and changes no hold state.
                if let Some(call) = self.call_mut(id) {
                    if let Some((ice, address, port)) = call.restart_replaced.take() {
                        call.media.ice = ice;
                        call.media.address = address;
                        call.media.rtp_port = port;
                        self.events
                            .push_back(UaEvent::IceRestartRefused { call: id });
                    } else if !call.reinvite_is_refresh {
                        call.on_hold = !call.on_hold;
                    }
                }
                self.events.push_back(UaEvent::Error {
                    message: format!(
                        "call {id}: re-INVITE refused: {} {}",
                        response.code, response.reason
                    ),
                });
            }
        }
    }

    /// Our re-INVITE got no answer (timeout, transport error, no route): the peer is gone.
    pub(super) fn reinvite_failed(&mut self, id: u64, now: Instant) {
        if let Some(call) = self.call_mut(id) {
            call.reinvite_tsx = None;
            call.reinviting = false;
        }
        self.send_bye(id, now);
    }

    /// A request of call `id` failed: its transaction (timeout, transport error), or before it
    /// had one (DNS).
    pub(super) fn call_failed(
        &mut self,
        id: u64,
        method: Method,
        code: u16,
        reason: &str,
        now: Instant,
    ) {
        match method {
            Method::Invite => {
                let Some(call) = self.calls.iter().find(|c| c.id == id) else {
                    return;
                };
                // The initial INVITE's transaction (client, or the server one we answered);
                // our re-INVITEs have their own owner (`reinvite_failed`).
                if call.ack_done {
                    // The initial INVITE's transaction outlives the 2xx by ~32 s (RFC 6026
                    // Accepted) and fails when its connection closes; after the ACK the dialog
                    // no longer depends on it, and the dialog's next request (BYE, re-INVITE)
                    // finds out whether the peer is reachable. Was: a closed connection ended
                    // a call nobody hung up.
                    tracing::debug!(
                        call = id,
                        code,
                        "initial INVITE transaction failed after the ACK; the call goes on"
                    );
                } else {
                    self.terminate(id, Some(code), Some(reason.to_string()));
                }
            }
            Method::Cancel => {
                // No answer to CANCEL: the INVITE transaction ends by itself (Timer B).
            }
            Method::Info => self.info_done(id, now),
            Method::Update => {
                if let Some(call) = self.call_mut(id) {
                    call.updating = false;
                }
            }
            Method::Refer => {
                if let Some(call) = self.call_mut(id) {
                    call.referring = None;
                }
                self.events.push_back(UaEvent::TransferStatus {
                    call: id,
                    code,
                    reason: reason.to_string(),
                    done: true,
                });
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------- incoming

    /// A request that may belong to a call. Gives the request back when it is not call
    /// business (so the caller need not clone every request, e.g. each OPTIONS of a flood).
    pub(super) fn call_request(
        &mut self,
        tsx: TsxId,
        request: Request,
        source: Destination,
        now: Instant,
    ) -> Option<Request> {
        let in_dialog = request
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string))
            .is_some();
        match request.method {
            Method::Invite if !in_dialog => {
                self.incoming_invite(tsx, request, source, now);
                None
            }
            Method::Cancel => {
                self.incoming_cancel(tsx, request, now);
                None
            }
            Method::Invite
            | Method::Bye
            | Method::Info
            | Method::Refer
            | Method::Notify
            | Method::Update
            | Method::Prack
                if in_dialog =>
            {
                let Some(id) = self
                    .calls
                    .iter()
                    .find(|c| {
                        c.dialog
                            .as_ref()
                            .is_some_and(|d| d.matches_request(&request))
                    })
                    .map(|c| c.id)
                else {
                    let r = self.make_response(&request, 481, None);
                    self.tsx.send_response(tsx, r, now);
                    return None;
                };
                self.in_dialog_request(id, tsx, request, source, now);
                None
            }
            Method::Bye | Method::Info | Method::Refer | Method::Notify => {
                let r = self.make_response(&request, 481, None);
                self.tsx.send_response(tsx, r, now);
                None
            }
            _ => Some(request),
        }
    }

    fn incoming_invite(&mut self, tsx: TsxId, request: Request, source: Destination, now: Instant) {
        let local_tag = self.ids.tag();
        // RFC 3891: an INVITE that replaces one of our calls (attended transfer) is no new
        // call for the user: no do-not-disturb, no busy, answered at once by the front end.
        let replaces = match self.replaced_call(&request) {
            Ok(replaces) => replaces,
            Err(code) => {
                let r = self.make_response(&request, code, Some(&local_tag));
                self.tsx.send_response(tsx, r, now);
                return;
            }
        };
        if replaces.is_none() && self.refused_before_ringing(tsx, &request, &local_tag, now) {
            return;
        }
        if let Some(r) = self.session_too_short(&request, Some(&local_tag)) {
            self.tsx.send_response(tsx, r, now);
            return;
        }
        // Unanswered incoming calls are bounded per source address and overall, so a scanner's
        // INVITE flood leaves at most a couple of phantom calls ringing (for RING_TIMEOUT) and a
        // real call from elsewhere still rings. The proxy is exempt from the per-source bound
        // (every call comes from it), not from the overall one.
        let ringing = |c: &&Call| c.role == Role::Callee && c.state == CallState::Incoming;
        let ringing_total = self.calls.iter().filter(ringing).count();
        let ringing_from_source = self
            .calls
            .iter()
            .filter(ringing)
            .filter(|c| c.invite_dest.is_some_and(|d| d.addr == source.addr))
            .count();
        let flooding = ringing_total >= super::MAX_RINGING
            || (ringing_from_source >= super::MAX_RINGING_PER_SOURCE
                && !self.guard.is_trusted(source.addr.ip()));
        if (self.config.busy_when_in_call
            && replaces.is_none()
            && self.calls.iter().any(|c| c.state != CallState::Terminated))
            || self.calls.len() >= MAX_CALLS
            || flooding
        {
            let r = self.make_response(&request, 486, Some(&local_tag));
            self.tsx.send_response(tsx, r, now);
            return;
        }
        let offer = if request.body.is_empty() {
            None
        } else {
            Some(String::from_utf8_lossy(&request.body).into_owned())
        };
        // Check the offer now, so a call we cannot take never rings (RFC 3261 §13.3.1.1: 488).
        if let Some(offer) = &offer {
            let probe = LocalMedia {
                rtp_port: 9,
                ..self.media_template()
            };
            if let Err(e) = sdp::answer_offer(offer, &probe) {
                let mut r = self.make_response(&request, 488, Some(&local_tag));
                r.headers.push(
                    "Warning",
                    format!("304 sipterm \"{}\"", sanitize(&e.to_string())),
                );
                self.tsx.send_response(tsx, r, now);
                return;
            }
        }
        // A call that came in over TLS is answered with our TLS Contact (see `contact_for`).
        let contact = self.contact_for(source);
        let dialog = match Dialog::from_uas(&request, &local_tag, contact.clone()) {
            Ok(d) => d,
            Err(e) => {
                let mut r = self.make_response(&request, 400, Some(&local_tag));
                r.reason = format!("Bad Request ({e})");
                self.tsx.send_response(tsx, r, now);
                return;
            }
        };
        let id = self.next_call_id();
        let remote = request
            .headers
            .from()
            .map(|f| match &f.display_name {
                Some(name) if !name.is_empty() => format!("\"{}\" <{}>", name, f.uri),
                _ => f.uri.to_string(),
            })
            .unwrap_or_default();
        let ringing = {
            let mut r = self.make_response(&request, 180, Some(&local_tag));
            r.headers.push("Contact", format!("<{contact}>"));
            r
        };
        let media = self.media_template();
        let reliable = self.wants_reliable(&request);
        let peer_allows_update = crate::sip::message::allows_update(&request.headers);
        self.calls.push(Call {
            dialog: Some(dialog),
            invite: Some(request),
            invite_tsx: Some(tsx),
            invite_dest: Some(source),
            remote_offer: offer,
            peer_allows_update,
            replaces,
            // An unanswered incoming call ends with 480 then (see call_timeouts); before,
            // one nobody answered or cancelled rang, and held its state, forever.
            no_answer_at: Some(now + RING_TIMEOUT),
            ..Call::new(
                id,
                Role::Callee,
                CallState::Incoming,
                remote,
                local_tag,
                media,
            )
        });
        self.owners.insert(tsx, Owner::Call(id, Method::Invite));
        if reliable {
            self.send_reliable(id, tsx, ringing, now);
        } else {
            self.tsx.send_response(tsx, ringing, now);
        }
        if let Some(replaced) = replaces {
            // Before the call event: the front end answers instead of ringing.
            self.events
                .push_back(UaEvent::Replacing { call: id, replaced });
        }
        self.emit_call(id, None, None);
    }

    /// Do-not-disturb and call-forward-always: the call is refused (or redirected) before it
    /// rings, and the front end hears of it as a missed call. True when it was.
    fn refused_before_ringing(
        &mut self,
        tsx: TsxId,
        request: &Request,
        local_tag: &str,
        now: Instant,
    ) -> bool {
        let remote = request
            .headers
            .from()
            .map(|f| f.uri.to_string())
            .unwrap_or_default();
        let (response, reason) = if let Some(target) = self.config.calls.forward_to.clone() {
            let mut r = self.make_response(request, 302, Some(local_tag));
            r.headers.push("Contact", format!("<{target}>"));
            (r, format!("forwarded to {target}"))
        } else if let Some(code) = self.config.calls.dnd {
            let r = self.make_response(request, code, Some(local_tag));
            (r, "do not disturb".to_string())
        } else {
            return false;
        };
        let code = response.code;
        self.tsx.send_response(tsx, response, now);
        tracing::info!(%remote, code, "{reason}: call refused before ringing");
        // A flood of INVITEs under do-not-disturb must not become a flood of events.
        if self.missed_events.allow(now) {
            self.events.push_back(UaEvent::Missed {
                remote,
                code,
                reason,
            });
        }
        true
    }

    pub(super) fn answer(&mut self, id: u64, mut media: LocalMedia, now: Instant) {
        let Some(call) = self
            .calls
            .iter()
            .find(|c| c.id == id && c.role == Role::Callee && c.state == CallState::Incoming)
        else {
            self.events.push_back(UaEvent::Error {
                message: "no ringing call to answer".into(),
            });
            return;
        };
        let (Some(invite), Some(tsx), Some(source)) =
            (call.invite.clone(), call.invite_tsx, call.invite_dest)
        else {
            return;
        };
        let local_tag = call.local_tag.clone();
        let remote_offer = call.remote_offer.clone();
        media.session_id = self.ids.next_u64() >> 1;
        media.session_version = 1;
        if media.address.is_unspecified() {
            // A wildcard RTP socket: our SDP names the local address that routes to where the
            // peer's media comes from (its SDP address), else to where its INVITE came from.
            let peer_media = remote_offer
                .as_deref()
                .and_then(|offer| sdp::answer_offer(offer, &media).ok())
                .map(|(_, params)| params.remote)
                .filter(|remote| !remote.ip().is_unspecified());
            let toward = match peer_media {
                Some(addr) => Destination {
                    addr,
                    transport: TransportKind::Udp,
                },
                None => source,
            };
            media.address = self.local_ip_for(Some(toward));
        }
        let (body, params) = match &remote_offer {
            Some(offer) => match sdp::answer_offer(offer, &media) {
                Ok((answer, params)) => (answer, Some(params)),
                Err(e) => {
                    let mut r = self.make_response(&invite, 488, Some(&local_tag));
                    r.headers.push(
                        "Warning",
                        format!("304 sipterm \"{}\"", sanitize(&e.to_string())),
                    );
                    self.tsx.send_response(tsx, r, now);
                    self.terminate(id, Some(488), Some("Not Acceptable Here".into()));
                    return;
                }
            },
            // Late offer: we offer in the 200, the answer comes in the ACK.
            None => (sdp::build_offer(&media), None),
        };
        // RFC 3891 §3: the call this one replaces ends as it is accepted. First, so that its
        // media (and a WAV it records) is gone before this call's starts.
        let replaces = self.call_mut(id).and_then(|c| c.replaces.take());
        if let Some(old) = replaces {
            let reason = format!("Replaced by call {id} (transfer)");
            let early_caller = self
                .calls
                .iter()
                .any(|c| c.id == old && c.role == Role::Caller && !c.ack_done);
            if early_caller {
                self.cancel(old, now);
            } else {
                self.send_bye_because(old, reason, now);
            }
        }
        let mut ok = self.make_response(&invite, 200, Some(&local_tag));
        ok.headers
            .push("Contact", format!("<{}>", self.contact_for(source)));
        ok.headers.push("Allow", super::ALLOW);
        ok.headers.push("Supported", self.supported());
        let session = self.uas_session(&invite, now);
        if let Some((_, headers)) = &session {
            for (name, value) in headers {
                ok.headers.push(*name, value.clone());
            }
        }
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = body.into_bytes();
        self.tsx.send_response(tsx, ok.clone(), now);
        let t1 = self.config.timers.t1;
        let Some(call) = self.call_mut(id) else {
            return;
        };
        // The 2xx ends the reliable 1xx's retransmissions (RFC 3262 §3).
        call.reliable_1xx = None;
        call.session = session.map(|(timer, _)| timer);
        call.media = media.clone();
        call.offered_in_ok = remote_offer.is_none();
        call.pending_ok = Some(PendingOk {
            response: ok,
            dest: source,
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
        });
        call.state = CallState::Confirmed;
        // Answered: the ring timeout is over (a stale deadline would keep poll_timeout in the past).
        call.no_answer_at = None;
        if let Some(params) = params {
            call.params = Some(params.clone());
            let params = call.media_params(params);
            self.events.push_back(UaEvent::MediaStart {
                call: id,
                params,
                local: media,
            });
        }
        self.emit_call(id, Some(200), Some("OK".into()));
    }

    pub(super) fn reject(&mut self, id: u64, code: u16, now: Instant) {
        self.reject_with(id, code, reason_phrase(code), now);
    }

    /// Refuses the ringing call `id` with `code` and this reason phrase.
    pub(super) fn reject_with(&mut self, id: u64, code: u16, reason: &str, now: Instant) {
        let Some(call) = self
            .calls
            .iter()
            .find(|c| c.id == id && c.state == CallState::Incoming)
        else {
            return;
        };
        let (Some(invite), Some(tsx)) = (call.invite.clone(), call.invite_tsx) else {
            return;
        };
        let tag = call.local_tag.clone();
        let mut r = self.make_response(&invite, code, Some(&tag));
        r.reason = reason.to_string();
        self.tsx.send_response(tsx, r, now);
        self.terminate(id, Some(code), Some(reason.to_string()));
    }

    fn incoming_cancel(&mut self, tsx: TsxId, request: Request, now: Instant) {
        // RFC 3261 §9.2: the CANCEL matches the INVITE with the same Call-ID, From tag, CSeq number
        // and top Via branch.
        let key = cancel_key(&request);
        let found = self
            .calls
            .iter()
            .find(|c| {
                c.role == Role::Callee && c.invite.as_ref().map(cancel_key) == Some(key.clone())
            })
            .map(|c| {
                (
                    c.id,
                    c.state,
                    c.invite.clone(),
                    c.invite_tsx,
                    c.local_tag.clone(),
                )
            });
        let Some((id, state, Some(invite), Some(invite_tsx), tag)) = found else {
            let r = self.make_response(&request, 481, None);
            self.tsx.send_response(tsx, r, now);
            return;
        };
        let ok = self.make_response(&request, 200, Some(&tag));
        self.tsx.send_response(tsx, ok, now);
        if state == CallState::Incoming {
            let terminated = self.make_response(&invite, 487, Some(&tag));
            self.tsx.send_response(invite_tsx, terminated, now);
            self.terminate(id, Some(487), Some("Cancelled by the caller".into()));
        }
    }

    /// A 2xx retransmission after our INVITE transaction ended: the ACK got lost, send it again.
    pub(super) fn stray_2xx(&mut self, response: &Response) {
        let Ok(call_id) = response.headers.call_id() else {
            return;
        };
        let ack = self
            .calls
            .iter()
            .find(|c| c.dialog.as_ref().is_some_and(|d| d.call_id == call_id))
            .and_then(|c| c.ack.clone());
        if let Some((ack, dest)) = ack {
            self.push_raw(dest, ack);
        }
    }

    /// ACK for our 2xx (the transaction layer passes 2xx ACKs up).
    pub(super) fn incoming_ack(&mut self, request: Request, now: Instant) {
        let Some(id) = self
            .calls
            .iter()
            .find(|c| {
                c.dialog
                    .as_ref()
                    .is_some_and(|d| d.matches_request(&request))
            })
            .map(|c| c.id)
        else {
            return;
        };
        let Some(call) = self.call_mut(id) else {
            return;
        };
        call.pending_ok = None;
        call.ack_done = true;
        if !call.offered_in_ok || request.body.is_empty() {
            return;
        }
        call.offered_in_ok = false;
        // Late offer (our offer was in the 200): the ACK carries the answer. When it is the
        // call's first answer and unusable (e.g. no a=crypto for an account with
        // srtp = "mandatory"), the call has no media: hang up and say why, like the caller
        // does with an unusable answer in a 2xx (confirm_outgoing). A re-INVITE's bad answer
        // keeps the media running as it was.
        let first = call.params.is_none();
        if let Err(reason) = self.take_answer(id, &request.body)
            && first
        {
            self.send_bye_because(id, reason, now);
        }
    }

    fn in_dialog_request(
        &mut self,
        id: u64,
        tsx: TsxId,
        request: Request,
        source: Destination,
        now: Instant,
    ) {
        // CSeq must grow (RFC 3261 §12.2.2); an old one gets 500.
        let seq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
        let tag = self
            .calls
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.local_tag.clone())
            .unwrap_or_default();
        if let Some(call) = self.call_mut(id)
            && let Some(dialog) = call.dialog.as_mut()
        {
            if dialog.remote_seq.is_some_and(|prev| seq <= prev) && request.method != Method::Ack {
                let mut r = self.make_response(&request, 500, Some(&tag));
                r.reason = "Server Internal Error (CSeq out of order)".into();
                self.tsx.send_response(tsx, r, now);
                return;
            }
            dialog.remote_seq = Some(seq);
        }
        match request.method {
            Method::Bye => {
                let r = self.make_response(&request, 200, Some(&tag));
                self.tsx.send_response(tsx, r, now);
                self.terminate(id, None, Some("Remote hung up".into()));
            }
            Method::Invite => self.incoming_reinvite(id, tsx, request, source, now),
            Method::Info => {
                let digit = dtmf_relay_digit(&request);
                let r = self.make_response(
                    &request,
                    if digit.is_some() || request.body.is_empty() {
                        200
                    } else {
                        415
                    },
                    Some(&tag),
                );
                self.tsx.send_response(tsx, r, now);
                if let Some(digit) = digit {
                    self.events.push_back(UaEvent::Dtmf { call: id, digit });
                }
            }
            Method::Refer => self.incoming_refer(id, tsx, request, now),
            Method::Notify => self.incoming_notify(id, tsx, request, now),
            Method::Prack => self.incoming_prack(id, tsx, request, now),
            Method::Update => self.incoming_update(id, tsx, request, source, now),
            _ => {
                let r = self.make_response(&request, 200, Some(&tag));
                self.tsx.send_response(tsx, r, now);
            }
        }
    }

    fn incoming_reinvite(
        &mut self,
        id: u64,
        tsx: TsxId,
        request: Request,
        source: Destination,
        now: Instant,
    ) {
        let Some(call) = self.calls.iter().find(|c| c.id == id) else {
            return;
        };
        let tag = call.local_tag.clone();
        if call.reinviting || call.updating {
            let r = self.make_response(&request, 491, Some(&tag));
            self.tsx.send_response(tsx, r, now);
            return;
        }
        if let Some(r) = self.session_too_short(&request, Some(&tag)) {
            self.tsx.send_response(tsx, r, now);
            return;
        }
        let Some(call) = self.calls.iter().find(|c| c.id == id) else {
            return;
        };
        let mut media = call.media.clone();
        media.session_version += 1;
        media.direction = call.media_direction();
        let offer = String::from_utf8_lossy(&request.body);
        let mut result = if request.body.is_empty() {
            Ok((sdp::build_offer(&media), None))
        } else {
            sdp::answer_offer(&offer, &media).map(|(a, p)| (a, Some(p)))
        };
        // The peer restarts ICE (new ufrag/pwd, RFC 8445 §9): our answer changes ours too
        // (RFC 8839 §4.4.1.1.2), and the driver starts a new ICE session on them.
        if let Ok((_, Some(params))) = &result
            && let Some(offered) = &params.ice
            && let Some(ours) = media.ice.as_mut()
            && call
                .params
                .as_ref()
                .and_then(|p| p.ice.as_ref())
                .is_some_and(|before| before.remote.credentials != offered.remote.credentials)
        {
            ours.credentials = ours.credentials.for_restart(&offered.remote.credentials);
            result = sdp::answer_offer(&offer, &media).map(|(a, p)| (a, Some(p)));
        }
        let (body, params) = match result {
            Ok(x) => x,
            Err(e) => {
                let mut r = self.make_response(&request, 488, Some(&tag));
                r.headers.push(
                    "Warning",
                    format!("304 sipterm \"{}\"", sanitize(&e.to_string())),
                );
                self.tsx.send_response(tsx, r, now);
                return;
            }
        };
        let mut ok = self.make_response(&request, 200, Some(&tag));
        ok.headers
            .push("Contact", format!("<{}>", self.contact_for(source)));
        ok.headers.push("Supported", self.supported());
        // A re-INVITE refreshes the session (RFC 4028 §9).
        let session = self.uas_session(&request, now);
        if let Some((_, headers)) = &session {
            for (name, value) in headers {
                ok.headers.push(*name, value.clone());
            }
        }
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = body.into_bytes();
        self.tsx.send_response(tsx, ok.clone(), now);
        self.session_refreshed(id, session.map(|(t, _)| t), now);
        let t1 = self.config.timers.t1;
        // 2xx retransmissions go where the re-INVITE came from (RFC 3261 §18.2.2), as for the
        // initial INVITE; the remote target (Contact) may be unreachable behind NAT.
        let source = Some(source);
        let Some(call) = self.call_mut(id) else {
            return;
        };
        call.media = media;
        if let Some(dialog) = call.dialog.as_mut() {
            dialog.refresh_target(
                request
                    .headers
                    .contacts()
                    .ok()
                    .and_then(|c| c.into_iter().next())
                    .map(|c| c.uri),
            );
        }
        call.offered_in_ok = params.is_none();
        if let Some(dest) = source {
            call.pending_ok = Some(PendingOk {
                response: ok,
                dest,
                next: now + t1,
                interval: t1,
                give_up: now + t1 * 64,
            });
        }
        if let Some(params) = params {
            let held_by_peer =
                matches!(params.direction, Direction::Inactive | Direction::RecvOnly);
            call.params = Some(params.clone());
            let params = call.media_params(params);
            self.events
                .push_back(UaEvent::MediaUpdate { call: id, params });
            let state = if held_by_peer || self.calls.iter().any(|c| c.id == id && c.on_hold) {
                CallState::Held
            } else {
                CallState::Confirmed
            };
            self.set_state(id, state, None, None);
        }
    }

    // ---------------------------------------------------------------- timers

    pub(super) fn call_timeouts(&mut self, now: Instant) {
        let ids: Vec<u64> = self.calls.iter().map(|c| c.id).collect();
        let t2 = self.config.timers.t2;
        for id in ids {
            let Some(call) = self.call_mut(id) else {
                continue;
            };
            if let Some(at) = call.no_answer_at
                && now >= at
                && call.dialog.as_ref().is_none_or(|_| call.ack.is_none())
                && matches!(call.state, CallState::Ringing | CallState::Early)
            {
                call.no_answer_at = None;
                self.cancel(id, now);
                continue;
            }
            if let Some(at) = call.no_answer_at
                && now >= at
                && call.role == Role::Callee
                && call.state == CallState::Incoming
            {
                call.no_answer_at = None;
                self.reject(id, 480, now);
                continue;
            }
            let Some(call) = self.call_mut(id) else {
                continue;
            };
            if let Some(at) = call.glare_retry_at
                && now >= at
            {
                call.glare_retry_at = None;
                self.send_offer(id, now);
                continue;
            }
            self.reliable_timeouts(id, now);
            self.session_timeout(id, now);
            self.transfer_timeouts(id, now);
            let Some(call) = self.call_mut(id) else {
                continue;
            };
            // Also wake at give_up itself: checking it only at retransmit times sent the BYE at
            // the first retransmit after 64*T1 (35.5 s with default timers), not at 64*T1.
            if let Some(pending) = call.pending_ok.as_mut()
                && (now >= pending.next || now >= pending.give_up)
            {
                if now >= pending.give_up {
                    // No ACK within 64*T1 (RFC 3261 §13.3.1.4): end the call with BYE.
                    call.pending_ok = None;
                    self.send_bye(id, now);
                    continue;
                }
                let (response, dest) = (pending.response.clone(), pending.dest);
                pending.interval = (pending.interval * 2).min(t2);
                pending.next = now + pending.interval;
                if dest.transport.is_reliable() {
                    // Reliable transports carry it once; keep waiting for the ACK only.
                    continue;
                }
                self.transmits.push_back(super::OutDatagram {
                    dest,
                    bytes: response.to_bytes(),
                });
            }
        }
    }

    pub(super) fn call_poll_timeout(&self) -> Option<Instant> {
        self.calls
            .iter()
            .flat_map(|c| {
                [
                    c.no_answer_at,
                    c.glare_retry_at,
                    c.pending_ok.as_ref().map(|p| p.next.min(p.give_up)),
                    c.reliable_1xx.as_ref().map(|p| p.next.min(p.give_up)),
                    c.session.as_ref().map(|s| s.deadline()),
                    c.asked_refer.as_ref().map(|a| a.deadline),
                    c.transferred_bye_at,
                ]
            })
            .flatten()
            .min()
    }

    // ---------------------------------------------------------------- helpers

    pub(super) fn auth_retry(&mut self, request: &Request, response: &Response) -> Option<Request> {
        let password = self.config.account.password.clone()?;
        let seed = self.ids.next_u64();
        let auth = self.call_auth.get_or_insert_with(|| {
            Authenticator::new(
                crate::sip::auth::DigestCredentials {
                    username: self.config.account.auth_username.clone(),
                    password,
                },
                seed,
            )
        });
        let headers = auth.respond(request, response).ok()?;
        let mut next = request.clone();
        next.headers.remove("Via");
        next.headers.remove("Authorization");
        next.headers.remove("Proxy-Authorization");
        next.headers.remove("Max-Forwards");
        next.headers.remove("User-Agent");
        next.headers.remove("Route");
        bump_cseq(&mut next);
        for (name, value) in headers {
            next.headers.push(name, value);
        }
        Some(next)
    }

    fn media_template(&self) -> LocalMedia {
        LocalMedia {
            address: self.local_ip_for(self.registration_dest),
            rtp_port: 0,
            codecs: self.config.codecs.clone(),
            direction: Direction::SendRecv,
            session_id: 0,
            session_version: 0,
            srtp: sdp::LocalSrtp::new(self.config.srtp),
            ice: None,
        }
    }

    fn next_call_id(&mut self) -> u64 {
        self.next_call = self.config.call_numbers.next();
        self.next_call
    }
}

/// The Contact URI of a request we built (before `localise` knew better).
pub(super) fn invite_contact(request: &Request) -> Uri {
    request
        .headers
        .contacts()
        .ok()
        .and_then(|c| c.into_iter().next())
        .map(|c| c.uri)
        .unwrap_or_default()
}

/// A new attempt of our INVITE (after a 422): the same request without the hop-by-hop
/// headers the sending adds again, with the next CSeq.
pub(super) fn retry_of(request: &Request) -> Request {
    let mut next = request.clone();
    for name in ["Via", "Route", "Max-Forwards", "User-Agent"] {
        next.headers.remove(name);
    }
    bump_cseq(&mut next);
    next
}

fn bump_cseq(request: &mut Request) {
    if let Ok(cseq) = request.headers.cseq() {
        request
            .headers
            .set("CSeq", format!("{} {}", cseq.seq + 1, cseq.method));
    }
}

fn cancel_key(request: &Request) -> (String, String, u32, String) {
    let call_id = request
        .headers
        .call_id()
        .map(str::to_string)
        .unwrap_or_default();
    let from_tag = request
        .headers
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_string))
        .unwrap_or_default();
    let seq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
    let branch = request
        .headers
        .top_via()
        .ok()
        .and_then(|v| v.branch().map(str::to_string))
        .unwrap_or_default();
    (call_id, from_tag, seq, branch)
}

/// `Signal=5` from an application/dtmf-relay INFO body.
fn dtmf_relay_digit(request: &Request) -> Option<char> {
    let content_type = request.headers.content_type()?;
    if content_type != "application/dtmf-relay" && content_type != "application/dtmf" {
        return None;
    }
    let body = String::from_utf8_lossy(&request.body);
    if content_type == "application/dtmf" {
        return body.trim().chars().next().filter(|c| is_dtmf(*c));
    }
    body.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("signal") {
            return None;
        }
        v.trim()
            .chars()
            .next()
            .map(|c| c.to_ascii_uppercase())
            .filter(|c| is_dtmf(*c))
    })
}

pub fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

pub(super) fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '"' && !c.is_control())
        .take(120)
        .collect()
}
