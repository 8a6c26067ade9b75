//! The notifier side of RFC 6665 for our own state: other phones (or a BLF key of a PBX
//! phone) SUBSCRIBE to our `presence` or `dialog` state; each gets a NOTIFY at once and
//! whenever our state changes, until it unsubscribes or its subscription expires. Whether a
//! SUBSCRIBE is accepted at all is the user agent's policy (the account's `watchers` key).

use std::time::{Duration, Instant};

use super::Package;
use super::presence::OwnState;
use crate::sip::dialog::Dialog;
use crate::sip::message::{Method, Request};
use crate::sip::uri::Uri;

/// Watchers at most at once; more get 503 (a flood of SUBSCRIBEs must not grow state).
pub const MAX_WATCHERS: usize = 32;
/// Longest and shortest subscription granted (RFC 3856 §6.4 default: 3600 s).
pub const MAX_EXPIRES: u32 = 3600;
pub const MIN_EXPIRES: u32 = 60;

#[derive(Debug)]
struct Watcher {
    dialog: Dialog,
    package: Package,
    expires_at: Instant,
    /// dialog-info `version`, one more per NOTIFY.
    version: u32,
}

/// A NOTIFY to send inside a watcher's dialog, towards `next_hop`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingNotify {
    pub request: Request,
    pub next_hop: Uri,
}

/// How to answer a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeAnswer {
    pub code: u16,
    pub expires: Option<u32>,
    /// Set with 423.
    pub min_expires: Option<u32>,
    pub notify: Option<OutgoingNotify>,
}

#[derive(Debug, Default)]
pub struct Notifier {
    watchers: Vec<Watcher>,
}

fn body(package: Package, state: &OwnState, entity: &str, version: u32) -> String {
    match package {
        Package::Dialog => state.dialog_info(entity, version),
        _ => state.pidf(entity),
    }
}

impl Notifier {
    pub fn watcher_count(&self) -> usize {
        self.watchers.len()
    }

    /// Whether this in-dialog request belongs to one of our watchers.
    pub fn matches(&self, request: &Request) -> bool {
        self.watchers
            .iter()
            .any(|w| w.dialog.matches_request(request))
    }

    fn notify(
        watcher: &mut Watcher,
        state: &OwnState,
        entity: &str,
        subscription_state: String,
    ) -> OutgoingNotify {
        let mut request = watcher.dialog.request(Method::Notify, None);
        request.headers.push("Event", watcher.package.as_str());
        request
            .headers
            .push("Subscription-State", subscription_state);
        request
            .headers
            .push("Content-Type", watcher.package.content_type());
        request.body = body(watcher.package, state, entity, watcher.version).into_bytes();
        watcher.version += 1;
        OutgoingNotify {
            request,
            next_hop: watcher.dialog.next_hop_uri().clone(),
        }
    }

    fn remaining(watcher: &Watcher, now: Instant) -> u64 {
        watcher.expires_at.saturating_duration_since(now).as_secs()
    }

    /// An accepted SUBSCRIBE (policy already checked): a new watcher, a refresh, or an
    /// unsubscribe. `local_tag` is the To tag for a new dialog.
    // Each argument is one input of RFC 6665 §4.2.1 (request, package, our tag and contact,
    // the state and entity a NOTIFY describes, the time): a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_subscribe(
        &mut self,
        request: &Request,
        package: Package,
        local_tag: &str,
        contact: Uri,
        state: &OwnState,
        entity: &str,
        now: Instant,
    ) -> SubscribeAnswer {
        let requested = request
            .headers
            .expires()
            .ok()
            .flatten()
            .unwrap_or(MAX_EXPIRES);
        if requested != 0 && requested < MIN_EXPIRES {
            return SubscribeAnswer {
                code: 423,
                expires: None,
                min_expires: Some(MIN_EXPIRES),
                notify: None,
            };
        }
        let granted = requested.min(MAX_EXPIRES);
        let existing = self
            .watchers
            .iter()
            .position(|w| w.dialog.matches_request(request));
        let in_dialog = request.headers.to().ok().is_some_and(|t| t.tag().is_some());
        let index = match existing {
            Some(i) => i,
            None if in_dialog => {
                return SubscribeAnswer {
                    code: 481,
                    expires: None,
                    min_expires: None,
                    notify: None,
                };
            }
            None => {
                if granted == 0 {
                    // A fetch (RFC 6665 §4.4.3 "polling"): one NOTIFY, no state kept.
                    let Ok(dialog) = Dialog::from_uas(request, local_tag, contact) else {
                        return SubscribeAnswer {
                            code: 400,
                            expires: None,
                            min_expires: None,
                            notify: None,
                        };
                    };
                    let mut watcher = Watcher {
                        dialog,
                        package,
                        expires_at: now,
                        version: 0,
                    };
                    let notify = Self::notify(
                        &mut watcher,
                        state,
                        entity,
                        "terminated;reason=timeout".into(),
                    );
                    return SubscribeAnswer {
                        code: 200,
                        expires: Some(0),
                        min_expires: None,
                        notify: Some(notify),
                    };
                }
                if self.watchers.len() >= MAX_WATCHERS {
                    return SubscribeAnswer {
                        code: 503,
                        expires: None,
                        min_expires: None,
                        notify: None,
                    };
                }
                let Ok(dialog) = Dialog::from_uas(request, local_tag, contact) else {
                    return SubscribeAnswer {
                        code: 400,
                        expires: None,
                        min_expires: None,
                        notify: None,
                    };
                };
                self.watchers.push(Watcher {
                    dialog,
                    package,
                    expires_at: now,
                    version: 0,
                });
                self.watchers.len() - 1
            }
        };
        let Some(watcher) = self.watchers.get_mut(index) else {
            return SubscribeAnswer {
                code: 500,
                expires: None,
                min_expires: None,
                notify: None,
            };
        };
        if existing.is_some() {
            let seq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
            if watcher.dialog.remote_seq.is_some_and(|prev| seq <= prev) {
                return SubscribeAnswer {
                    code: 500,
                    expires: None,
                    min_expires: None,
                    notify: None,
                };
            }
            watcher.dialog.remote_seq = Some(seq);
        }
        if granted == 0 {
            let notify = Self::notify(watcher, state, entity, "terminated;reason=timeout".into());
            self.watchers.remove(index);
            return SubscribeAnswer {
                code: 200,
                expires: Some(0),
                min_expires: None,
                notify: Some(notify),
            };
        }
        watcher.expires_at = now + Duration::from_secs(u64::from(granted));
        let notify = Self::notify(watcher, state, entity, format!("active;expires={granted}"));
        SubscribeAnswer {
            code: 200,
            expires: Some(granted),
            min_expires: None,
            notify: Some(notify),
        }
    }

    /// Our state changed: a NOTIFY for every watcher.
    pub fn notify_all(
        &mut self,
        state: &OwnState,
        entity: &str,
        now: Instant,
    ) -> Vec<OutgoingNotify> {
        self.watchers
            .iter_mut()
            .map(|w| {
                let left = Self::remaining(w, now);
                Self::notify(w, state, entity, format!("active;expires={left}"))
            })
            .collect()
    }

    /// A NOTIFY of ours failed for good (481, 408, no route): that watcher is gone.
    pub fn notify_failed(&mut self, call_id: &str) {
        self.watchers.retain(|w| w.dialog.call_id != call_id);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.watchers.iter().map(|w| w.expires_at).min()
    }

    /// Expired watchers get a last NOTIFY (terminated;reason=timeout) and are dropped.
    pub fn handle_timeout(
        &mut self,
        state: &OwnState,
        entity: &str,
        now: Instant,
    ) -> Vec<OutgoingNotify> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.watchers.len() {
            if self.watchers[i].expires_at <= now {
                let mut watcher = self.watchers.remove(i);
                out.push(Self::notify(
                    &mut watcher,
                    state,
                    entity,
                    "terminated;reason=timeout".into(),
                ));
            } else {
                i += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribe(tag: Option<&str>, seq: u32, expires: u32) -> Request {
        let mut r = Request::new(
            Method::Subscribe,
            "sip:alice@127.0.0.1".parse().expect("uri"),
        );
        r.headers.push("From", "<sip:bob@example.com>;tag=w1");
        r.headers.push(
            "To",
            match tag {
                Some(tag) => format!("<sip:alice@example.com>;tag={tag}"),
                None => "<sip:alice@example.com>".into(),
            },
        );
        r.headers.push("Call-ID", "sub1");
        r.headers.push("CSeq", format!("{seq} SUBSCRIBE"));
        r.headers.push("Contact", "<sip:bob@127.0.0.1:5070>");
        r.headers.push("Event", "dialog");
        r.headers.push("Expires", expires.to_string());
        r
    }

    #[test]
    fn watchers_get_a_notify_at_once_on_change_and_at_the_end() {
        let mut n = Notifier::default();
        let t0 = crate::test_clock::t0();
        let contact: Uri = "sip:alice@127.0.0.1:5060".parse().expect("uri");
        let idle = OwnState::default();
        let answer = n.handle_subscribe(
            &subscribe(None, 1, 120),
            Package::Dialog,
            "me",
            contact.clone(),
            &idle,
            "sip:alice@example.com",
            t0,
        );
        assert_eq!((answer.code, answer.expires), (200, Some(120)));
        let first = answer.notify.expect("a NOTIFY at once");
        assert_eq!(
            first.request.headers.get("Subscription-State"),
            Some("active;expires=120")
        );
        assert_eq!(first.next_hop.to_string(), "sip:bob@127.0.0.1:5070");
        let busy = OwnState {
            dnd: false,
            calls: vec![(1, "confirmed", true)],
        };
        let changes = n.notify_all(&busy, "sip:alice@example.com", t0 + Duration::from_secs(20));
        assert_eq!(changes.len(), 1);
        let body = String::from_utf8_lossy(&changes[0].request.body).to_string();
        assert!(
            body.contains("<state>confirmed</state>") && body.contains("version=\"1\""),
            "{body}"
        );
        assert_eq!(
            changes[0].request.headers.get("Subscription-State"),
            Some("active;expires=100")
        );
        // Refresh in the dialog, then too short, then unsubscribe.
        let refresh = n.handle_subscribe(
            &subscribe(Some("me"), 2, 600),
            Package::Dialog,
            "x",
            contact.clone(),
            &busy,
            "e",
            t0,
        );
        assert_eq!(refresh.expires, Some(600));
        let short = n.handle_subscribe(
            &subscribe(Some("me"), 3, 10),
            Package::Dialog,
            "x",
            contact.clone(),
            &busy,
            "e",
            t0,
        );
        assert_eq!((short.code, short.min_expires), (423, Some(MIN_EXPIRES)));
        let stale = n.handle_subscribe(
            &subscribe(Some("other"), 4, 600),
            Package::Dialog,
            "x",
            contact.clone(),
            &busy,
            "e",
            t0,
        );
        assert_eq!(stale.code, 481);
        assert_eq!(n.watcher_count(), 1);
        let gone = n.handle_subscribe(
            &subscribe(Some("me"), 5, 0),
            Package::Dialog,
            "x",
            contact,
            &busy,
            "e",
            t0,
        );
        assert_eq!(
            gone.notify.map(|n| n
                .request
                .headers
                .get("Subscription-State")
                .map(str::to_string)),
            Some(Some("terminated;reason=timeout".into()))
        );
        assert_eq!(n.watcher_count(), 0);
    }

    #[test]
    fn expiry_ends_a_watcher_and_the_number_of_watchers_is_bounded() {
        let mut n = Notifier::default();
        let t0 = crate::test_clock::t0();
        let contact: Uri = "sip:alice@127.0.0.1:5060".parse().expect("uri");
        let idle = OwnState::default();
        for i in 0..=MAX_WATCHERS {
            let mut s = subscribe(None, 1, 60);
            s.headers.set("Call-ID", format!("c{i}"));
            let answer =
                n.handle_subscribe(&s, Package::Presence, "me", contact.clone(), &idle, "e", t0);
            let expected = if i < MAX_WATCHERS { 200 } else { 503 };
            assert_eq!(answer.code, expected);
        }
        let due = n.poll_timeout().expect("expiry");
        let last = n.handle_timeout(&idle, "e", due);
        assert_eq!(last.len(), MAX_WATCHERS);
        assert_eq!(n.watcher_count(), 0);
    }
}
