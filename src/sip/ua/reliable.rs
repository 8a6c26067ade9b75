//! Reliable provisional responses (RFC 3262): PRACK as UAC and UAS, RSeq/RAck, and the UAS's
//! retransmission of a reliable 1xx until its PRACK comes. Part of the user agent; owns no I/O.

use std::time::{Duration, Instant};

use super::send::NextHop;
use super::{Owner, Rel100, UserAgent};
use crate::sip::dialog::Dialog;
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::TsxId;

/// A reliable provisional response of ours waiting for its PRACK (RFC 3262 §3).
#[derive(Debug, Clone)]
pub(super) struct PendingReliable {
    pub response: Response,
    pub rseq: u32,
    pub next: Instant,
    pub interval: Duration,
    pub give_up: Instant,
}

/// `Require: 100rel` (or `Supported`) among a message's option tags.
pub(super) fn has_tag(headers: &crate::sip::message::Headers, header: &str, tag: &str) -> bool {
    headers
        .tokens(header)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(tag))
}

/// The RSeq of a reliable provisional response: `Require: 100rel` and a readable RSeq.
pub(super) fn reliable_rseq(response: &Response) -> Option<u32> {
    if !has_tag(&response.headers, "Require", "100rel") {
        return None;
    }
    response.headers.get("RSeq")?.trim().parse::<u32>().ok()
}

/// `RAck: 776656 1 INVITE` -> (776656, 1).
fn parse_rack(value: &str) -> Option<(u32, u32, &str)> {
    let mut parts = value.split_whitespace();
    let rseq = parts.next()?.parse().ok()?;
    let cseq = parts.next()?.parse().ok()?;
    let method = parts.next()?;
    Some((rseq, cseq, method))
}

impl UserAgent {
    /// UAC: a provisional response to our INVITE of call `id`. A reliable one (RFC 3262 §4)
    /// is PRACKed; false when it must not be processed at all: a retransmission of one we
    /// PRACKed already (our PRACK's transaction retransmits by itself) or one out of order.
    pub(super) fn take_reliable_provisional(
        &mut self,
        id: u64,
        invite: &Request,
        response: &Response,
        now: Instant,
    ) -> bool {
        if self.config.calls.rel100 == Rel100::Off {
            // We never offered 100rel: a peer that sends it anyway gets no PRACK.
            return true;
        }
        let Some(rseq) = reliable_rseq(response) else {
            return true;
        };
        let Some(call) = self.call_mut(id) else {
            return false;
        };
        match call.rseq_acked {
            Some(last) if rseq <= last => return false,
            Some(last) if rseq != last.wrapping_add(1) => {
                tracing::debug!(call = id, rseq, last, "reliable 1xx out of order: ignored");
                return false;
            }
            _ => {}
        }
        call.rseq_acked = Some(rseq);
        let invite_seq = invite.headers.cseq().map(|c| c.seq).unwrap_or(1);
        let remote_tag = response
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        let contact = call
            .local_contact
            .clone()
            .unwrap_or_else(|| super::call::invite_contact(invite));
        // The PRACK belongs to the early dialog of this response (RFC 3262 §4); another fork's
        // dialog than ours gets a one-off copy.
        let (mut prack, hop) = match call.dialog.as_mut() {
            Some(dialog) if Some(&dialog.remote_tag) == remote_tag.as_ref() => (
                dialog.request(Method::Prack, None),
                dialog.next_hop_uri().clone(),
            ),
            _ => match Dialog::from_uac(invite, response, contact) {
                Ok(mut dialog) => (
                    dialog.request(Method::Prack, None),
                    dialog.next_hop_uri().clone(),
                ),
                Err(_) => return false,
            },
        };
        prack
            .headers
            .push("RAck", format!("{rseq} {invite_seq} INVITE"));
        self.send_request(
            prack,
            NextHop::Uri(hop),
            Owner::Call(id, Method::Prack),
            now,
        );
        true
    }

    /// UAS: whether our provisional responses to this INVITE go reliably: the caller requires
    /// it, or supports it and the account requires it.
    pub(super) fn wants_reliable(&self, invite: &Request) -> bool {
        match self.config.calls.rel100 {
            Rel100::Off => false,
            Rel100::Supported => has_tag(&invite.headers, "Require", "100rel"),
            Rel100::Required => {
                has_tag(&invite.headers, "Require", "100rel")
                    || has_tag(&invite.headers, "Supported", "100rel")
            }
        }
    }

    /// UAS: sends `response` (a 1xx to the INVITE of call `id`) reliably: `Require: 100rel`,
    /// the next RSeq, and retransmissions from T1 doubling until the PRACK (§3).
    pub(super) fn send_reliable(
        &mut self,
        id: u64,
        tsx: TsxId,
        mut response: Response,
        now: Instant,
    ) {
        let t1 = self.config.timers.t1;
        let first_rseq = (self.ids.next_u64() % 0x7fff_ffff) as u32 + 1;
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let rseq = *call.next_rseq.get_or_insert(first_rseq);
        call.next_rseq = Some(rseq.wrapping_add(1));
        response.headers.push("Require", "100rel");
        response.headers.push("RSeq", rseq.to_string());
        call.reliable_1xx = Some(PendingReliable {
            response: response.clone(),
            rseq,
            next: now + t1,
            interval: t1,
            give_up: now + t1 * 64,
        });
        self.tsx.send_response(tsx, response, now);
    }

    /// UAS: a PRACK in the early dialog of call `id` (RFC 3262 §3): 200 when its RAck names
    /// our reliable response (which then stops), else 481.
    pub(super) fn incoming_prack(&mut self, id: u64, tsx: TsxId, request: Request, now: Instant) {
        let Some(call) = self.calls.iter().find(|c| c.id == id) else {
            return;
        };
        let tag = call.local_tag.clone();
        let invite_seq = call
            .invite
            .as_ref()
            .and_then(|i| i.headers.cseq().ok())
            .map(|c| c.seq);
        let rack = request.headers.get("RAck").and_then(parse_rack);
        let pending = call.reliable_1xx.as_ref().map(|p| p.rseq);
        let last_sent = call.next_rseq.map(|n| n.wrapping_sub(1));
        let matches = match rack {
            Some((rseq, cseq, method)) => {
                method.eq_ignore_ascii_case("INVITE")
                    && Some(cseq) == invite_seq
                    && (Some(rseq) == pending || (pending.is_none() && Some(rseq) == last_sent))
            }
            None => false,
        };
        let code = if matches { 200 } else { 481 };
        let r = self.make_response(&request, code, Some(&tag));
        self.tsx.send_response(tsx, r, now);
        if matches && let Some(call) = self.call_mut(id) {
            call.reliable_1xx = None;
        }
    }

    /// UAS: retransmits the reliable 1xx of call `id` when due; past 64*T1 without PRACK
    /// the INVITE is refused with a 5xx (RFC 3262 §3).
    pub(super) fn reliable_timeouts(&mut self, id: u64, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let (Some(pending), Some(tsx)) = (call.reliable_1xx.as_mut(), call.invite_tsx) else {
            return;
        };
        if now >= pending.give_up {
            call.reliable_1xx = None;
            tracing::info!(
                call = id,
                "no PRACK for our reliable provisional response: 504"
            );
            self.reject_with(
                id,
                504,
                "No PRACK for the reliable provisional response",
                now,
            );
            return;
        }
        if now < pending.next {
            return;
        }
        pending.interval *= 2;
        pending.next = now + pending.interval;
        let response = pending.response.clone();
        let reliable_transport = call.invite_dest.is_some_and(|d| d.transport.is_reliable());
        if !reliable_transport {
            self.tsx.send_response(tsx, response, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rack_parses() {
        assert_eq!(parse_rack("776656 1 INVITE"), Some((776656, 1, "INVITE")));
        assert_eq!(parse_rack("  5   2   invite "), Some((5, 2, "invite")));
        assert_eq!(parse_rack("5 INVITE"), None);
        assert_eq!(parse_rack(""), None);
    }

    #[test]
    fn only_require_100rel_with_rseq_is_reliable() {
        let mut r = Response::new(183, "Session Progress");
        r.headers.push("RSeq", "7");
        assert_eq!(reliable_rseq(&r), None);
        r.headers.push("Require", "timer, 100REL");
        assert_eq!(reliable_rseq(&r), Some(7));
        r.headers.set("RSeq", "x");
        assert_eq!(reliable_rseq(&r), None);
    }
}
