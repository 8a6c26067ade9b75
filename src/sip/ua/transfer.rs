//! Transfers: REFER both ways (RFC 3515) with the user asked first, attended transfer (RFC
//! 5589 §7) with Replaces (RFC 3891) both ways, NOTIFY progress, and DTMF by SIP INFO. Part of
//! the user agent; owns no I/O.

use std::time::{Duration, Instant};

use super::call::Role;
use super::send::NextHop;
use super::{CallState, Owner, UaEvent, UserAgent};
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::TsxId;
use crate::sip::uri::{Scheme, Uri};

/// A peer's REFER that nobody answers is refused after this (NOTIFY 603).
pub const TRANSFER_DECISION_TIMEOUT: Duration = Duration::from_secs(60);
/// After the call we placed for a peer's REFER is up: how long the transferor has to hang up
/// the old call before we do.
pub const TRANSFERRED_BYE_DELAY: Duration = Duration::from_secs(2);
/// INFO DTMF digits waiting per call; more are refused with an error.
pub const MAX_QUEUED_DTMF: usize = 64;

/// The peer's REFER, asked of the user.
#[derive(Debug, Clone)]
pub(super) struct AskedRefer {
    pub target: Uri,
    pub deadline: Instant,
}

/// A transfer we asked the peer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Referring {
    Blind,
    /// Attended: the consultation call that the target replaces.
    Attended {
        consult: u64,
    },
}

/// The dialog a Replaces header names (RFC 3891 §6.1): Call-ID, to-tag, from-tag, early-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplacesSpec {
    pub call_id: String,
    pub to_tag: String,
    pub from_tag: String,
    pub early_only: bool,
}

/// `Replaces: 98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff`.
pub fn parse_replaces(value: &str) -> Option<ReplacesSpec> {
    let value = from_libre_form(value);
    let mut parts = value.split(';');
    let call_id = parts.next()?.trim();
    if call_id.is_empty() {
        return None;
    }
    let (mut to_tag, mut from_tag, mut early_only) = (None, None, false);
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (part.trim(), None),
        };
        match name.to_ascii_lowercase().as_str() {
            "to-tag" => to_tag = value.map(str::to_string),
            "from-tag" => from_tag = value.map(str::to_string),
            "early-only" => early_only = true,
            _ => {}
        }
    }
    Some(ReplacesSpec {
        call_id: call_id.to_string(),
        to_tag: to_tag?,
        from_tag: from_tag?,
        early_only,
    })
}

/// libre 1.1 (baresip 1.0) turns the escaped `;` and `=` of a Refer-To's `?Replaces=` into
/// `?` when it sends the INVITE (`callid?to-tag?X?from-tag?Y`): read that as the real thing.
fn from_libre_form(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(';') || !(value.contains("?to-tag?") || value.contains("?from-tag?")) {
        return std::borrow::Cow::Borrowed(value);
    }
    std::borrow::Cow::Owned(
        value
            .replace("?to-tag?", ";to-tag=")
            .replace("?from-tag?", ";from-tag=")
            .replace("?early-only", ";early-only"),
    )
}

/// Escapes a URI header value (RFC 3261 §25.1 `hvalue`): everything but the unreserved
/// characters becomes %XX, so `;` `=` `@` of a Replaces value survive inside `?Replaces=`.
pub fn escape_uri_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 2);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `SIP/2.0 200 OK` (the first line of a message/sipfrag body) -> (200, "OK").
fn sipfrag_status(body: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next()?.trim();
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let code = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..700).contains(c))?;
    Some((
        code,
        reason
            .chars()
            .filter(|c| !c.is_control())
            .take(80)
            .collect(),
    ))
}

impl UserAgent {
    // ------------------------------------------------------------- the peer's REFER

    /// The peer's REFER in call `id`: 202, then the user is asked (or, with
    /// `auto_accept_transfer`, the transfer is followed at once).
    pub(super) fn incoming_refer(&mut self, id: u64, tsx: TsxId, request: Request, now: Instant) {
        let Some(call) = self.calls.iter().find(|c| c.id == id) else {
            return;
        };
        let tag = call.local_tag.clone();
        let target = request
            .headers
            .refer_to()
            .ok()
            .flatten()
            .map(|n| n.uri)
            .filter(|u| matches!(u.scheme, Scheme::Sip | Scheme::Sips | Scheme::Tel));
        let Some(target) = target else {
            let mut r = self.make_response(&request, 400, Some(&tag));
            r.reason = "Bad Request (no usable Refer-To)".into();
            self.tsx.send_response(tsx, r, now);
            return;
        };
        if call.asked_refer.is_some()
            || !matches!(call.state, CallState::Confirmed | CallState::Held)
        {
            // One transfer at a time, and only of an established call.
            let r = self.make_response(&request, 491, Some(&tag));
            self.tsx.send_response(tsx, r, now);
            return;
        }
        // RFC 4488: `Refer-Sub: false` asks for no NOTIFYs.
        let no_notify = request
            .headers
            .get("Refer-Sub")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"));
        let mut r = self.make_response(&request, 202, Some(&tag));
        if no_notify {
            r.headers.push("Refer-Sub", "false");
        }
        self.tsx.send_response(tsx, r, now);
        let referred_by = request.headers.get("Referred-By").map(|v| {
            v.chars()
                .filter(|c| !c.is_control())
                .take(256)
                .collect::<String>()
        });
        let auto = self.config.calls.auto_accept_transfer;
        let Some(call) = self.call_mut(id) else {
            return;
        };
        call.refer_no_notify = no_notify;
        call.asked_refer = Some(AskedRefer {
            target: target.clone(),
            deadline: now + TRANSFER_DECISION_TIMEOUT,
        });
        if auto {
            self.answer_transfer(id, true, now);
        } else {
            self.events.push_back(UaEvent::TransferAsked {
                call: id,
                target,
                referred_by,
            });
        }
    }

    /// The user's answer to the REFER asked in call `id`.
    pub(super) fn answer_transfer(&mut self, id: u64, accept: bool, now: Instant) {
        let Some(asked) = self.call_mut(id).and_then(|c| c.asked_refer.take()) else {
            self.no_such_call("answer a transfer request of");
            return;
        };
        if accept {
            self.notify_refer(id, "SIP/2.0 100 Trying", false, now);
            self.events.push_back(UaEvent::TransferRequested {
                call: id,
                target: asked.target,
            });
        } else {
            self.notify_refer(id, "SIP/2.0 603 Declined", true, now);
        }
    }

    /// NOTIFY with the progress of the transfer the peer asked for, as message/sipfrag (RFC
    /// 3515 §2.4.5); nothing when it asked for no subscription (RFC 4488).
    pub(super) fn notify_refer(&mut self, id: u64, status_line: &str, last: bool, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        if call.refer_no_notify {
            return;
        }
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let mut notify = dialog.request(Method::Notify, None);
        notify.headers.push("Event", "refer");
        notify.headers.push(
            "Subscription-State",
            if last {
                "terminated;reason=noresource".to_string()
            } else {
                format!("active;expires={}", TRANSFER_DECISION_TIMEOUT.as_secs())
            },
        );
        notify
            .headers
            .push("Content-Type", "message/sipfrag;version=2.0");
        notify.body = format!("{status_line}\r\n").into_bytes();
        let hop = NextHop::Uri(dialog.next_hop_uri().clone());
        self.send_request(notify, hop, Owner::Call(id, Method::Notify), now);
    }

    /// The front end reports how the call it placed for the peer's REFER in `id` goes. Once
    /// that call is up, the transferor hangs up (RFC 5589 §6.1); we do it ourselves
    /// `TRANSFERRED_BYE_DELAY` later if it does not, so no BYEs cross.
    pub(super) fn transfer_progress(&mut self, id: u64, code: u16, last: bool, now: Instant) {
        let line = format!(
            "SIP/2.0 {code} {}",
            crate::sip::message::reason_phrase(code)
        );
        self.notify_refer(id, &line, last, now);
        if last
            && (200..300).contains(&code)
            && let Some(call) = self.call_mut(id)
        {
            call.transferred_bye_at = Some(now + TRANSFERRED_BYE_DELAY);
        }
    }

    /// Refuses REFERs nobody answered in time; ends transferred calls the transferor left up.
    pub(super) fn transfer_timeouts(&mut self, id: u64, now: Instant) {
        let bye_due = self
            .calls
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.transferred_bye_at)
            .is_some_and(|at| now >= at);
        if bye_due {
            tracing::info!(
                call = id,
                "transferred; the transferor did not hang up: BYE"
            );
            self.send_bye_because(id, "Transferred".into(), now);
            return;
        }
        let due = self
            .calls
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.asked_refer.as_ref())
            .is_some_and(|a| now >= a.deadline);
        if due {
            tracing::info!(call = id, "transfer request not answered in time: refused");
            self.answer_transfer(id, false, now);
        }
    }

    // ------------------------------------------------------------- our REFER

    /// Blind transfer: REFER the peer of `id` to `target`.
    pub(super) fn transfer(&mut self, id: u64, target: Uri, now: Instant) {
        let refer_to = format!("<{target}>");
        self.send_refer(id, refer_to, Referring::Blind, now);
    }

    /// Attended transfer (RFC 5589 §7.1): REFER the peer of `call` to the peer of `consult`,
    /// with a Replaces naming the consultation dialog as the target sees it (its tag is our
    /// remote tag). Without ids: the held call is transferred to the other established one.
    pub(super) fn attended_transfer(
        &mut self,
        call: Option<u64>,
        consult: Option<u64>,
        now: Instant,
    ) {
        let up = |c: &super::call::Call| {
            matches!(c.state, CallState::Confirmed | CallState::Held) && c.dialog.is_some()
        };
        let call = call.or_else(|| {
            self.calls
                .iter()
                .find(|c| up(c) && c.state == CallState::Held && Some(c.id) != consult)
                .map(|c| c.id)
        });
        let consult = consult.or_else(|| {
            self.calls
                .iter()
                .rev()
                .find(|c| up(c) && Some(c.id) != call)
                .map(|c| c.id)
        });
        let (Some(call), Some(consult)) = (call, consult) else {
            self.events.push_back(UaEvent::Error {
                message: "attended transfer needs two established calls".into(),
            });
            return;
        };
        let pick = |id: u64| self.calls.iter().find(|c| c.id == id && up(c));
        let (Some(_), Some(consulted)) = (pick(call), pick(consult)) else {
            self.events.push_back(UaEvent::Error {
                message: format!(
                    "attended transfer: calls {call} and {consult} must both be established"
                ),
            });
            return;
        };
        if call == consult {
            self.events.push_back(UaEvent::Error {
                message: "attended transfer: a call cannot be transferred to itself".into(),
            });
            return;
        }
        let Some(dialog) = consulted.dialog.as_ref() else {
            return;
        };
        let replaces = format!(
            "{};to-tag={};from-tag={}",
            dialog.call_id, dialog.remote_tag, dialog.local_tag
        );
        let mut target = dialog.remote_target.clone();
        target.headers.clear();
        let refer_to = format!("<{target}?Replaces={}>", escape_uri_header(&replaces));
        self.send_refer(call, refer_to, Referring::Attended { consult }, now);
    }

    fn send_refer(&mut self, id: u64, refer_to: String, referring: Referring, now: Instant) {
        let referred_by = format!("<{}>", self.config.account.aor);
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            return;
        };
        let mut refer = dialog.request(Method::Refer, None);
        refer.headers.push("Refer-To", refer_to);
        refer.headers.push("Referred-By", referred_by);
        let hop = NextHop::Uri(dialog.next_hop_uri().clone());
        call.referring = Some(referring);
        self.send_request(refer, hop, Owner::Call(id, Method::Refer), now);
    }

    /// The final answer to our REFER: a refusal ends the transfer.
    pub(super) fn refer_response(&mut self, id: u64, response: &Response) {
        if !response.is_final() || response.is_success() {
            return;
        }
        if let Some(call) = self.call_mut(id) {
            call.referring = None;
        }
        self.events.push_back(UaEvent::TransferStatus {
            call: id,
            code: response.code,
            reason: response.reason.clone(),
            done: true,
        });
    }

    /// A NOTIFY in call `id`: the progress of the transfer we asked for (Event: refer,
    /// message/sipfrag). A 2xx ends the transferred call (RFC 5589 §6.1: the transferor hangs
    /// up); a failure leaves both calls as they are.
    pub(super) fn incoming_notify(&mut self, id: u64, tsx: TsxId, request: Request, now: Instant) {
        let tag = self
            .calls
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.local_tag.clone())
            .unwrap_or_default();
        let is_refer = request.headers.get("Event").is_some_and(|e| {
            e.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("refer"))
        });
        let r = self.make_response(&request, 200, Some(&tag));
        self.tsx.send_response(tsx, r, now);
        if !is_refer {
            return;
        }
        let Some((code, reason)) = sipfrag_status(&request.body) else {
            return;
        };
        let terminated = request.headers.get("Subscription-State").is_some_and(|s| {
            s.trim_start()
                .to_ascii_lowercase()
                .starts_with("terminated")
        });
        let done = code >= 200 || terminated;
        self.events.push_back(UaEvent::TransferStatus {
            call: id,
            code,
            reason: reason.clone(),
            done,
        });
        if !done {
            return;
        }
        let referring = self.call_mut(id).and_then(|c| c.referring.take());
        if (200..300).contains(&code) && referring.is_some() {
            tracing::info!(
                call = id,
                ?referring,
                "transfer succeeded; hanging up the transferred call"
            );
            self.send_bye_because(id, "Transferred".into(), now);
        }
    }

    // ------------------------------------------------------------- Replaces (target side)

    /// An INVITE with Replaces (RFC 3891 §3): the call it replaces, or the error to answer.
    /// `Ok(None)`: no Replaces. A Replaces parameter in the Request-URI (`?Replaces=`, as
    /// baresip 1.0 sends it when it follows a REFER) counts as the header.
    pub(super) fn replaced_call(&self, request: &Request) -> Result<Option<u64>, u16> {
        let value = match request.headers.get("Replaces") {
            Some(v) => v.to_string(),
            None => match request
                .uri
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("Replaces"))
            {
                Some((_, v)) => crate::sip::uri::unescape_text(v),
                None => return Ok(None),
            },
        };
        let spec = parse_replaces(&value).ok_or(400u16)?;
        let found = self.calls.iter().find(|c| {
            c.dialog.as_ref().is_some_and(|d| {
                d.call_id == spec.call_id
                    && d.local_tag == spec.to_tag
                    && d.remote_tag == spec.from_tag
            })
        });
        let Some(call) = found else {
            return Err(481);
        };
        match (call.role, call.state) {
            (_, CallState::Terminated) => Err(603),
            // §3: an early dialog the peer started cannot be replaced.
            (Role::Callee, CallState::Incoming) => Err(481),
            (_, CallState::Confirmed | CallState::Held) if spec.early_only => Err(486),
            _ => Ok(Some(call.id)),
        }
    }

    // ------------------------------------------------------------- DTMF by INFO

    /// Queues `digits` for SIP INFO in call `id`; one INFO at a time, in order.
    pub(super) fn queue_info_dtmf(&mut self, id: u64, digits: &str, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        if call.info_dtmf.len() + digits.len() > MAX_QUEUED_DTMF {
            self.events.push_back(UaEvent::Error {
                message: format!(
                    "call {id}: too many DTMF digits waiting (at most {MAX_QUEUED_DTMF})"
                ),
            });
            return;
        }
        call.info_dtmf.extend(
            digits
                .chars()
                .map(|c| c.to_ascii_uppercase())
                .filter(|c| super::is_dtmf(*c)),
        );
        self.next_info_dtmf(id, now);
    }

    /// Sends the next queued digit unless an INFO is still out.
    pub(super) fn next_info_dtmf(&mut self, id: u64, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        if call.info_in_flight {
            return;
        }
        let Some(digit) = call.info_dtmf.pop_front() else {
            return;
        };
        let Some(dialog) = call.dialog.as_mut() else {
            call.info_dtmf.clear();
            return;
        };
        let mut info = dialog.request(Method::Info, None);
        info.headers.push("Content-Type", "application/dtmf-relay");
        info.body = format!("Signal={digit}\r\nDuration=160\r\n").into_bytes();
        let hop = NextHop::Uri(dialog.next_hop_uri().clone());
        call.info_in_flight = true;
        self.send_request(info, hop, Owner::Call(id, Method::Info), now);
    }

    /// Our INFO got its final answer (or failed): the next digit goes.
    pub(super) fn info_done(&mut self, id: u64, now: Instant) {
        if let Some(call) = self.call_mut(id) {
            call.info_in_flight = false;
        }
        self.next_info_dtmf(id, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_parses_in_any_order() {
        assert_eq!(
            parse_replaces("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only"),
            Some(ReplacesSpec {
                call_id: "98732@sip.example.com".into(),
                to_tag: "ff87ff".into(),
                from_tag: "r33th4x0r".into(),
                early_only: true,
            })
        );
        assert_eq!(parse_replaces("abc;to-tag=1"), None);
        // As baresip 1.0 sends it in the Request-URI.
        assert_eq!(
            parse_replaces("d900fd93?to-tag?6411a184?from-tag?d49e9e7c"),
            Some(ReplacesSpec {
                call_id: "d900fd93".into(),
                to_tag: "6411a184".into(),
                from_tag: "d49e9e7c".into(),
                early_only: false,
            })
        );
        assert_eq!(parse_replaces(";to-tag=1;from-tag=2"), None);
    }

    #[test]
    fn replaces_survives_a_uri_header_round_trip() {
        let value = "a84b4c76e66710@pc33.atlanta.com;to-tag=x 1;from-tag=1928301774";
        let escaped = escape_uri_header(value);
        assert!(!escaped.contains(';') && !escaped.contains('=') && !escaped.contains('@'));
        let uri: Uri = format!("sip:carol@127.0.0.1:5066?Replaces={escaped}")
            .parse()
            .expect("a URI with a Replaces header");
        let (name, raw) = &uri.headers[0];
        assert_eq!(name, "Replaces");
        assert_eq!(crate::sip::uri::unescape_text(raw), value);
    }

    #[test]
    fn sipfrag_status_lines() {
        assert_eq!(
            sipfrag_status(b"SIP/2.0 200 OK\r\n"),
            Some((200, "OK".into()))
        );
        assert_eq!(
            sipfrag_status(b"SIP/2.0 486 Busy Here\r\nVia: x\r\n"),
            Some((486, "Busy Here".into()))
        );
        assert_eq!(
            sipfrag_status(b"SIP/2.0 100\r\n"),
            Some((100, String::new()))
        );
        assert_eq!(sipfrag_status(b"INVITE sip:a@b SIP/2.0\r\n"), None);
        assert_eq!(sipfrag_status(b"SIP/2.0 99999 x\r\n"), None);
        assert_eq!(sipfrag_status(b""), None);
    }
}
