//! The subscriber side of RFC 6665: one SUBSCRIBE dialog for one resource and event package,
//! refreshed before it expires and started again (with back-off) after it fails or the
//! notifier ends it. Sans-IO like `Registration`: the user agent sends what comes out,
//! feeds responses, NOTIFYs and time in, and reads the NOTIFY bodies it is given back.

use std::time::{Duration, Instant};

use super::{Package, SubscriptionState};
use crate::sip::dialog::Dialog;
use crate::sip::ids::IdGen;
use crate::sip::message::{Method, Request, Response};
use crate::sip::uri::Uri;

/// The first wait before subscribing again after a failure; it doubles up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(15);
pub const MAX_BACKOFF: Duration = Duration::from_secs(900);
/// Subscription lifetime asked for.
pub const DEFAULT_EXPIRES: u32 = 600;

#[derive(Debug, Clone)]
pub struct SubscriptionParams {
    pub package: Package,
    /// Whose state: a contact's URI, or our own AOR for voicemail.
    pub resource: Uri,
    /// Our From value without tag (name-addr).
    pub from: String,
    pub expires: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionOutput {
    /// Send this SUBSCRIBE: inside the dialog towards `next_hop`, or (None) outside one.
    Send {
        request: Box<Request>,
        next_hop: Option<Uri>,
    },
    /// The body of a NOTIFY (already answered 200) for the package to read.
    Body {
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// The subscription is down; it is tried again at `retry_at` (None: given up).
    Down {
        code: Option<u16>,
        reason: String,
        retry_at: Option<Instant>,
    },
}

#[derive(Debug)]
pub struct Subscription {
    params: SubscriptionParams,
    call_id: String,
    local_tag: String,
    cseq: u32,
    dialog: Option<Dialog>,
    /// A SUBSCRIBE waits for its final response (none other goes meanwhile).
    pending: Option<Request>,
    refresh_at: Option<Instant>,
    retry_at: Option<Instant>,
    expires_at: Option<Instant>,
    backoff: Duration,
    /// False once the user stopped it (an unsubscribe may still be in flight).
    wanted: bool,
    /// One retry with the server's Min-Expires after a 423.
    expires_override: Option<u32>,
}

impl Subscription {
    pub fn new(params: SubscriptionParams, ids: &mut IdGen) -> Subscription {
        Subscription {
            params,
            call_id: ids.call_id(),
            local_tag: ids.tag(),
            cseq: 0,
            dialog: None,
            pending: None,
            refresh_at: None,
            retry_at: None,
            expires_at: None,
            backoff: FIRST_BACKOFF,
            wanted: true,
            expires_override: None,
        }
    }

    pub fn params(&self) -> &SubscriptionParams {
        &self.params
    }

    /// The SUBSCRIBE waiting for its response, as built (for a digest retry).
    pub fn pending_request(&self) -> Option<Request> {
        self.pending.clone()
    }

    /// Where a request inside the dialog goes (None: no dialog, route it as a new request).
    pub fn next_hop(&self) -> Option<Uri> {
        let in_dialog = self
            .pending
            .as_ref()
            .and_then(|r| r.headers.to().ok())
            .is_some_and(|to| to.tag().is_some());
        if !in_dialog {
            return None;
        }
        self.dialog.as_ref().map(|d| d.next_hop_uri().clone())
    }

    pub fn is_active(&self) -> bool {
        self.dialog.is_some()
    }

    pub fn is_wanted(&self) -> bool {
        self.wanted
    }

    /// Nothing left to do: stopped and no unsubscribe in flight.
    pub fn is_finished(&self) -> bool {
        !self.wanted && self.pending.is_none()
    }

    fn expires(&self) -> u32 {
        self.expires_override.unwrap_or(self.params.expires)
    }

    /// Sends the first SUBSCRIBE (a new dialog, with fresh identifiers after a failure).
    pub fn start(&mut self, contact: &Uri, ids: &mut IdGen, out: &mut Vec<SubscriptionOutput>) {
        self.wanted = true;
        self.dialog = None;
        self.retry_at = None;
        self.refresh_at = None;
        self.expires_at = None;
        if self.cseq > 0 {
            self.call_id = ids.call_id();
            self.local_tag = ids.tag();
        }
        self.cseq += 1;
        let mut request = Request::new(Method::Subscribe, self.params.resource.clone());
        request.headers.push(
            "From",
            format!("{};tag={}", self.params.from, self.local_tag),
        );
        request
            .headers
            .push("To", format!("<{}>", self.params.resource));
        request.headers.push("Call-ID", self.call_id.clone());
        request
            .headers
            .push("CSeq", format!("{} SUBSCRIBE", self.cseq));
        request.headers.push("Contact", format!("<{contact}>"));
        self.finish_request(&mut request, self.expires());
        self.pending = Some(request.clone());
        out.push(SubscriptionOutput::Send {
            request: Box::new(request),
            next_hop: None,
        });
    }

    fn finish_request(&self, request: &mut Request, expires: u32) {
        request.headers.push("Event", self.params.package.as_str());
        request
            .headers
            .push("Accept", self.params.package.content_type());
        request.headers.push("Expires", expires.to_string());
        if self.params.package == Package::Presence {
            // Kamailio and others send watcher info when asked; we only read PIDF.
            request.headers.set("Accept", "application/pidf+xml");
        }
    }

    /// A SUBSCRIBE inside the dialog (refresh, or `expires` 0 to end it).
    fn send_in_dialog(&mut self, expires: u32, out: &mut Vec<SubscriptionOutput>) -> bool {
        let Some(dialog) = self.dialog.as_mut() else {
            return false;
        };
        let mut request = dialog.request(Method::Subscribe, None);
        self.cseq = dialog.local_seq;
        let next_hop = dialog.next_hop_uri().clone();
        self.finish_request(&mut request, expires);
        self.pending = Some(request.clone());
        out.push(SubscriptionOutput::Send {
            request: Box::new(request),
            next_hop: Some(next_hop),
        });
        true
    }

    /// The user no longer wants it: unsubscribe (Expires: 0) when a dialog is up.
    pub fn stop(&mut self, out: &mut Vec<SubscriptionOutput>) {
        self.wanted = false;
        self.refresh_at = None;
        self.retry_at = None;
        if self.pending.is_none() {
            self.send_in_dialog(0, out);
        }
        self.dialog = None;
    }

    /// The request was resent (digest authentication) with this CSeq.
    pub fn note_resent(&mut self, request: &Request) {
        if let Ok(cseq) = request.headers.cseq() {
            self.cseq = self.cseq.max(cseq.seq);
            if let Some(dialog) = self.dialog.as_mut() {
                dialog.local_seq = dialog.local_seq.max(cseq.seq);
            }
        }
        self.pending = Some(request.clone());
    }

    /// Does this NOTIFY belong to this subscription (Call-ID and our tag; the notifier's tag
    /// once the dialog is known)?
    pub fn matches_notify(&self, request: &Request) -> bool {
        let Ok(call_id) = request.headers.call_id() else {
            return false;
        };
        let to_tag = request
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_string));
        if call_id != self.call_id || to_tag.as_deref() != Some(&self.local_tag) {
            return false;
        }
        match &self.dialog {
            Some(dialog) => dialog.matches_request(request),
            None => true,
        }
    }

    fn schedule_refresh(&mut self, granted: u32, now: Instant) {
        let secs = u64::from(granted.max(1));
        let refresh = if secs > 64 {
            secs - 32
        } else {
            (secs / 2).max(1)
        };
        self.refresh_at = Some(now + Duration::from_secs(refresh));
        self.expires_at = Some(now + Duration::from_secs(secs));
    }

    fn down(
        &mut self,
        code: Option<u16>,
        reason: String,
        retry_in: Option<Duration>,
        now: Instant,
        out: &mut Vec<SubscriptionOutput>,
    ) {
        self.dialog = None;
        self.refresh_at = None;
        self.expires_at = None;
        self.retry_at = if self.wanted {
            retry_in.map(|d| now + d)
        } else {
            None
        };
        out.push(SubscriptionOutput::Down {
            code,
            reason,
            retry_at: self.retry_at,
        });
    }

    fn backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        wait
    }

    /// The final (or provisional) response to our SUBSCRIBE.
    pub fn handle_response(
        &mut self,
        response: &Response,
        contact: &Uri,
        now: Instant,
        out: &mut Vec<SubscriptionOutput>,
    ) {
        if !response.is_final() {
            return;
        }
        let Some(sent) = self.pending.take() else {
            return;
        };
        let sent_expires = sent.headers.expires().ok().flatten().unwrap_or(0);
        if response.is_success() {
            if !self.wanted || sent_expires == 0 {
                self.dialog = None;
                return;
            }
            if self.dialog.is_none() {
                match Dialog::from_uac(&sent, response, contact.clone()) {
                    Ok(dialog) => self.dialog = Some(dialog),
                    Err(e) => {
                        let retry = self.backoff();
                        return self.down(
                            Some(response.code),
                            e.to_string(),
                            Some(retry),
                            now,
                            out,
                        );
                    }
                }
            }
            self.backoff = FIRST_BACKOFF;
            let granted = response
                .headers
                .expires()
                .ok()
                .flatten()
                .unwrap_or(sent_expires)
                .min(sent_expires.max(1));
            self.schedule_refresh(granted, now);
            return;
        }
        if !self.wanted {
            return;
        }
        let reason = format!("{} {}", response.code, response.reason);
        match response.code {
            423 => match response.headers.min_expires() {
                Some(min) if self.expires_override.is_none() && min > self.expires() => {
                    self.expires_override = Some(min);
                    self.retry_at = Some(now);
                }
                _ => {
                    let retry = self.backoff();
                    self.down(Some(423), reason, Some(retry), now, out)
                }
            },
            // The notifier does not know this event package or method: no use retrying.
            489 | 405 | 501 => self.down(Some(response.code), reason, None, now, out),
            // A refresh the notifier no longer knows: subscribe afresh at once.
            481 if self.dialog.is_some() => {
                self.down(Some(481), reason, Some(Duration::ZERO), now, out)
            }
            _ => {
                let retry = response
                    .headers
                    .retry_after()
                    .map(|s| Duration::from_secs(u64::from(s)))
                    .unwrap_or_else(|| self.backoff());
                self.down(Some(response.code), reason, Some(retry), now, out)
            }
        }
    }

    /// The SUBSCRIBE got no response (timeout, transport error, no route).
    pub fn handle_failure(
        &mut self,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<SubscriptionOutput>,
    ) {
        self.pending = None;
        if !self.wanted {
            return;
        }
        let retry = self.backoff();
        self.down(
            Some(code),
            format!("{code} {reason}"),
            Some(retry),
            now,
            out,
        );
    }

    /// A NOTIFY that `matches_notify`: returns the status code to answer it with.
    pub fn handle_notify(
        &mut self,
        request: &Request,
        contact: &Uri,
        now: Instant,
        out: &mut Vec<SubscriptionOutput>,
    ) -> u16 {
        let event_ok = request
            .headers
            .get("Event")
            .and_then(Package::from_event_header)
            == Some(self.params.package);
        if !event_ok {
            return 489;
        }
        let Some(state) = request
            .headers
            .get("Subscription-State")
            .and_then(SubscriptionState::parse)
        else {
            return 400;
        };
        if !self.wanted {
            return 481;
        }
        if self.dialog.is_none() {
            // A NOTIFY may come before the 2xx (RFC 6665 §4.1.2.4): it makes the dialog.
            match Dialog::from_uas(request, &self.local_tag, contact.clone()) {
                Ok(mut dialog) => {
                    dialog.local_seq = self.cseq;
                    self.dialog = Some(dialog);
                }
                Err(_) => return 400,
            }
        } else if let Some(dialog) = self.dialog.as_mut() {
            let seq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
            if dialog.remote_seq.is_some_and(|prev| seq <= prev) {
                return 500;
            }
            dialog.remote_seq = Some(seq);
            // The notifier's Contact is the dialog's target (RFC 6665 §4.1.2.4).
            if let Some(target) = request
                .headers
                .contacts()
                .ok()
                .and_then(|c| c.into_iter().next())
            {
                dialog.refresh_target(Some(target.uri));
            }
        }
        out.push(SubscriptionOutput::Body {
            content_type: request.headers.content_type(),
            body: request.body.clone(),
        });
        match state {
            SubscriptionState::Active { expires } | SubscriptionState::Pending { expires } => {
                if let Some(expires) = expires {
                    // The notifier may shorten the subscription; refresh before its end.
                    let ends = now + Duration::from_secs(u64::from(expires));
                    if self.expires_at.is_none_or(|at| ends < at) {
                        self.schedule_refresh(expires, now);
                    }
                }
            }
            SubscriptionState::Terminated {
                reason,
                retry_after,
            } => {
                let retry = match reason.as_deref() {
                    // RFC 6665 §4.1.3: these say trying again makes no sense.
                    Some("rejected" | "noresource" | "invariant") => None,
                    _ => Some(Duration::from_secs(u64::from(retry_after.unwrap_or(0)))),
                };
                let why = format!(
                    "ended by the notifier ({})",
                    reason.as_deref().unwrap_or("no reason")
                );
                self.down(None, why, retry, now, out);
            }
        }
        200
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        [self.refresh_at, self.retry_at, self.expires_at]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(
        &mut self,
        contact: &Uri,
        ids: &mut IdGen,
        now: Instant,
        out: &mut Vec<SubscriptionOutput>,
    ) {
        if self.pending.is_some() || !self.wanted {
            return;
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            let retry = self.backoff();
            self.down(
                None,
                "expired without a refresh".into(),
                Some(retry),
                now,
                out,
            );
        }
        if self.retry_at.is_some_and(|at| now >= at) {
            self.start(contact, ids, out);
            return;
        }
        if self.refresh_at.is_some_and(|at| now >= at) {
            self.refresh_at = None;
            let expires = self.expires();
            self.send_in_dialog(expires, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ua::build_response;

    fn params() -> SubscriptionParams {
        SubscriptionParams {
            package: Package::Dialog,
            resource: "sip:bob@example.com".parse().expect("uri"),
            from: "<sip:alice@example.com>".into(),
            expires: 600,
        }
    }

    fn contact() -> Uri {
        "sip:alice@127.0.0.1:5060".parse().expect("uri")
    }

    fn sent(out: &mut Vec<SubscriptionOutput>) -> Request {
        let found = out.drain(..).find_map(|o| match o {
            SubscriptionOutput::Send { request, .. } => Some(*request),
            _ => None,
        });
        found.expect("a SUBSCRIBE went out")
    }

    fn ok(request: &Request, expires: u32) -> Response {
        let mut r = build_response(request, 200, "OK", Some("srv"), "test");
        r.headers.push("Expires", expires.to_string());
        r.headers.push("Contact", "<sip:bob@10.0.0.2>");
        r
    }

    fn notify(sub: &Request, seq: u32, state: &str) -> Request {
        let mut n = Request::new(Method::Notify, contact());
        let to = sub.headers.get("From").unwrap_or_default().to_string();
        n.headers.push("From", "<sip:bob@example.com>;tag=srv");
        n.headers.push("To", to);
        n.headers
            .push("Call-ID", sub.headers.get("Call-ID").unwrap_or_default());
        n.headers.push("CSeq", format!("{seq} NOTIFY"));
        n.headers.push("Contact", "<sip:bob@10.0.0.2>");
        n.headers.push("Event", "dialog");
        n.headers.push("Subscription-State", state);
        n.headers
            .push("Content-Type", "application/dialog-info+xml");
        n.body = b"<dialog-info/>".to_vec();
        n
    }

    #[test]
    fn refreshes_in_dialog_before_expiry_and_resubscribes_after_failure() {
        let mut ids = IdGen::new(1.into());
        let mut sub = Subscription::new(params(), &mut ids);
        let mut out = Vec::new();
        let t0 = crate::test_clock::t0();
        sub.start(&contact(), &mut ids, &mut out);
        let first = sent(&mut out);
        assert_eq!(first.headers.get("Event"), Some("dialog"));
        assert_eq!(first.headers.get("Expires"), Some("600"));
        sub.handle_response(&ok(&first, 120), &contact(), t0, &mut out);
        assert!(sub.is_active());
        let n = notify(&first, 1, "active;expires=120");
        assert!(sub.matches_notify(&n));
        assert_eq!(sub.handle_notify(&n, &contact(), t0, &mut out), 200);
        assert!(matches!(out.pop(), Some(SubscriptionOutput::Body { .. })));
        // Refresh at 120 - 32 s, in the dialog, to the notifier's Contact.
        let due = sub.poll_timeout().expect("a refresh is due");
        assert_eq!(due, t0 + Duration::from_secs(88));
        sub.handle_timeout(&contact(), &mut ids, due, &mut out);
        let refresh = sent(&mut out);
        assert_eq!(refresh.uri.to_string(), "sip:bob@10.0.0.2");
        assert!(
            refresh
                .headers
                .get("To")
                .is_some_and(|t| t.contains("tag=srv"))
        );
        // The notifier lost the subscription: 481, and a fresh SUBSCRIBE goes at once.
        let lost = build_response(&refresh, 481, "Call/Transaction Does Not Exist", None, "t");
        sub.handle_response(&lost, &contact(), due, &mut out);
        assert!(matches!(
            out.pop(),
            Some(SubscriptionOutput::Down {
                code: Some(481),
                ..
            })
        ));
        sub.handle_timeout(&contact(), &mut ids, due, &mut out);
        let again = sent(&mut out);
        assert!(!again.headers.get("To").is_some_and(|t| t.contains("tag=")));
        assert_ne!(again.headers.get("Call-ID"), first.headers.get("Call-ID"));
        // A timeout: back-off, then again.
        sub.handle_failure(408, "Request Timeout", due, &mut out);
        let Some(SubscriptionOutput::Down {
            retry_at: Some(at), ..
        }) = out.pop()
        else {
            panic!("expected a retry");
        };
        assert_eq!(at, due + FIRST_BACKOFF);
        sub.handle_timeout(&contact(), &mut ids, at, &mut out);
        assert_eq!(sent(&mut out).method, Method::Subscribe);
    }

    #[test]
    fn a_notify_before_the_2xx_makes_the_dialog_and_terminated_ends_it() {
        let mut ids = IdGen::new(2.into());
        let mut sub = Subscription::new(params(), &mut ids);
        let mut out = Vec::new();
        let t0 = crate::test_clock::t0();
        sub.start(&contact(), &mut ids, &mut out);
        let first = sent(&mut out);
        let n = notify(&first, 1, "active;expires=600");
        assert_eq!(sub.handle_notify(&n, &contact(), t0, &mut out), 200);
        assert!(sub.is_active());
        sub.handle_response(&ok(&first, 600), &contact(), t0, &mut out);
        // A NOTIFY from another dialog (a stranger guessing) does not match.
        let mut stranger = notify(&first, 2, "active");
        stranger.headers.set("From", "<sip:x@y>;tag=other");
        assert!(!sub.matches_notify(&stranger));
        // Rejected: no retry.
        out.clear();
        let end = notify(&first, 3, "terminated;reason=rejected");
        assert_eq!(sub.handle_notify(&end, &contact(), t0, &mut out), 200);
        assert!(matches!(
            out.last(),
            Some(SubscriptionOutput::Down { retry_at: None, .. })
        ));
        assert_eq!(sub.poll_timeout(), None);
        // Unknown event package at the notifier: given up.
        let mut sub = Subscription::new(params(), &mut ids);
        sub.start(&contact(), &mut ids, &mut out);
        let first = sent(&mut out);
        sub.handle_response(
            &build_response(&first, 489, "Bad Event", None, "t"),
            &contact(),
            t0,
            &mut out,
        );
        assert!(matches!(
            out.last(),
            Some(SubscriptionOutput::Down { retry_at: None, .. })
        ));
    }

    #[test]
    fn stop_unsubscribes_with_expires_zero() {
        let mut ids = IdGen::new(3.into());
        let mut sub = Subscription::new(params(), &mut ids);
        let mut out = Vec::new();
        let t0 = crate::test_clock::t0();
        sub.start(&contact(), &mut ids, &mut out);
        let first = sent(&mut out);
        sub.handle_response(&ok(&first, 600), &contact(), t0, &mut out);
        sub.stop(&mut out);
        let bye = sent(&mut out);
        assert_eq!(bye.headers.get("Expires"), Some("0"));
        assert!(!sub.is_finished());
        sub.handle_response(&ok(&bye, 0), &contact(), t0, &mut out);
        assert!(sub.is_finished());
    }
}
