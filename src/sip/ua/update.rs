//! UPDATE (RFC 3311) in early and confirmed dialogs, both ways: the peer's UPDATE may carry a
//! new offer (answered in its 2xx) or only refresh the session (RFC 4028); ours holds or
//! resumes an early call, or refreshes the session. Part of the user agent; owns no I/O.

use std::time::{Duration, Instant};

use super::call::Role;
use super::send::NextHop;
use super::{CallState, Owner, UaEvent, UserAgent};
use crate::sdp::{self, Direction};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::{Destination, TsxId};

impl UserAgent {
    /// The peer's UPDATE in call `id`, early or confirmed.
    pub(super) fn incoming_update(
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
        if let Some(r) = self.session_too_short(&request, Some(&tag)) {
            self.tsx.send_response(tsx, r, now);
            return;
        }
        let has_offer = !request.body.is_empty();
        if has_offer {
            // RFC 3311 §5.2: an offer of ours still unanswered -> 491; the peer's INVITE offer
            // we have not answered yet (we are ringing) -> 500 with Retry-After.
            let ours_pending = call.reinviting
                || call.updating
                || call.offered_in_ok
                || (call.role == Role::Caller && call.params.is_none());
            if ours_pending {
                let r = self.make_response(&request, 491, Some(&tag));
                self.tsx.send_response(tsx, r, now);
                return;
            }
            if call.role == Role::Callee && call.state == CallState::Incoming {
                let mut r = self.make_response(&request, 500, Some(&tag));
                r.headers
                    .push("Retry-After", (self.ids.next_u64() % 10).to_string());
                self.tsx.send_response(tsx, r, now);
                return;
            }
        }
        let mut media = call.media.clone();
        let answer = if has_offer {
            media.session_version += 1;
            media.direction = call.media_direction();
            match sdp::answer_offer(&String::from_utf8_lossy(&request.body), &media) {
                Ok(answer) => Some(answer),
                Err(e) => {
                    let mut r = self.make_response(&request, 488, Some(&tag));
                    r.headers.push(
                        "Warning",
                        format!("304 sipterm \"{}\"", super::call::sanitize(&e.to_string())),
                    );
                    self.tsx.send_response(tsx, r, now);
                    return;
                }
            }
        } else {
            None
        };
        let session = self.uas_session(&request, now);
        let mut ok = self.make_response(&request, 200, Some(&tag));
        ok.headers
            .push("Contact", format!("<{}>", self.contact_for(source)));
        if let Some((_, headers)) = &session {
            for (name, value) in headers {
                ok.headers.push(*name, value.clone());
            }
        }
        if let Some((body, _)) = &answer {
            ok.headers.push("Content-Type", "application/sdp");
            ok.body = body.clone().into_bytes();
        }
        self.tsx.send_response(tsx, ok, now);
        let Some(call) = self.call_mut(id) else {
            return;
        };
        // UPDATE is a target refresh request (RFC 3311 §5.2).
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
        if call.ack_done || call.state == CallState::Confirmed || call.state == CallState::Held {
            self.session_refreshed(id, session.map(|(t, _)| t), now);
        }
        let Some((_, params)) = answer else {
            return;
        };
        let Some(call) = self.call_mut(id) else {
            return;
        };
        call.media = media;
        let first = call.params.is_none();
        let held_by_peer = matches!(params.direction, Direction::Inactive | Direction::RecvOnly);
        call.params = Some(params.clone());
        let params = call.media_params(params);
        let local = call.media.clone();
        let on_hold = call.on_hold;
        let state = call.state;
        self.events.push_back(if first {
            UaEvent::MediaStart {
                call: id,
                params,
                local,
            }
        } else {
            UaEvent::MediaUpdate { call: id, params }
        });
        // An early call stays early: only a confirmed one shows who holds it.
        if matches!(state, CallState::Confirmed | CallState::Held) {
            let state = if held_by_peer || on_hold {
                CallState::Held
            } else {
                CallState::Confirmed
            };
            self.set_state(id, state, None, None);
        }
    }

    /// Sends UPDATE in call `id`: with a new offer (hold or resume of an early call: the
    /// direction follows `on_hold`) or without a body (a session refresh).
    pub(super) fn send_update(&mut self, id: u64, with_offer: bool, now: Instant) {
        let session_headers = self.session_headers_for_refresh(id);
        let supported = self.supported();
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let body = if with_offer {
            call.media.session_version += 1;
            call.media.direction = call.media_direction();
            Some(sdp::build_offer(&call.media).into_bytes())
        } else {
            None
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let mut update = dialog.request(Method::Update, None);
        update.headers.push("Supported", supported);
        for (name, value) in session_headers {
            update.headers.push(name, value);
        }
        if let Some(body) = body {
            update.headers.push("Content-Type", "application/sdp");
            update.body = body;
            call.updating = true;
        }
        let hop = NextHop::Uri(dialog.next_hop_uri().clone());
        self.send_request(update, hop, Owner::Call(id, Method::Update), now);
    }

    /// The answer to our UPDATE.
    pub(super) fn update_response(&mut self, id: u64, response: Response, now: Instant) {
        if response.is_provisional() {
            return;
        }
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let had_offer = std::mem::replace(&mut call.updating, false);
        if response.is_success() {
            if let Some(dialog) = call.dialog.as_mut() {
                dialog.refresh_target(
                    response
                        .headers
                        .contacts()
                        .ok()
                        .and_then(|c| c.into_iter().next())
                        .map(|c| c.uri),
                );
            }
            let confirmed = call.ack_done;
            if confirmed {
                self.uac_session_from(id, &response, now);
            }
            if had_offer && !response.body.is_empty() {
                let _ = self.take_answer(id, &response.body);
            }
            let Some(call) = self.calls.iter().find(|c| c.id == id) else {
                return;
            };
            if had_offer && matches!(call.state, CallState::Confirmed | CallState::Held) {
                let state = if call.on_hold {
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
            }
            return;
        }
        match response.code {
            491 => {
                // Glare (RFC 3311 §5.1): try again later, as for a re-INVITE.
                let wait = Duration::from_millis(self.ids.next_u64() % 2000);
                if let Some(call) = self.call_mut(id) {
                    call.glare_retry_at = Some(now + wait);
                }
            }
            422 => {
                // Our refresh asked for too short a session: take the peer's Min-SE.
                let peer_min = response
                    .headers
                    .get("Min-SE")
                    .and_then(super::session_timer::parse_min_se);
                if let (Some(min), Some(call)) = (peer_min, self.call_mut(id))
                    && let Some(timer) = call.session.as_mut()
                    && call.se_retries < super::session_timer::MAX_422_RETRIES
                {
                    call.se_retries += 1;
                    timer.interval = timer.interval.max(min);
                    self.send_update(id, had_offer, now);
                }
            }
            481 | 408 => self.hangup(id, now),
            _ => {
                if had_offer && let Some(call) = self.call_mut(id) {
                    call.on_hold = !call.on_hold;
                }
                self.events.push_back(UaEvent::Error {
                    message: format!(
                        "call {id}: UPDATE refused: {} {}",
                        response.code, response.reason
                    ),
                });
            }
        }
    }
}
