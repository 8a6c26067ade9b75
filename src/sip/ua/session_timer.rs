//! Session timers (RFC 4028): Session-Expires and Min-SE in INVITEs, answers and refreshes,
//! who refreshes, 422 retries, and the BYE when a session is not refreshed in time. Part of the
//! user agent; owns no I/O.
//!
//! "uac" and "uas" in a `refresher` parameter name the roles in the transaction that carries
//! it (RFC 4028 §7.1): in the peer's re-INVITE "uac" is the peer, in ours it is us.

use std::time::{Duration, Instant};

use super::{UaEvent, UserAgent};
use crate::sip::message::{Request, Response};

/// How many 422 answers one INVITE or refresh may get before we give up (each raises our
/// Session-Expires to the peer's Min-SE; a second 422 means the peer keeps moving it).
pub const MAX_422_RETRIES: u8 = 2;
/// The longest session interval we take from a peer (a day): bounds the timers we arm.
pub const MAX_SESSION_EXPIRES: u32 = 86_400;

/// Who sends the refreshes, in the roles of the transaction that negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

impl Refresher {
    pub fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// `Session-Expires: 1800;refresher=uac` -> (1800, Some(Uac)). `None` when the value is not a
/// delta-seconds (RFC 4028 §4); an unknown refresher value counts as absent.
pub fn parse_session_expires(value: &str) -> Option<(u32, Option<Refresher>)> {
    let mut parts = value.split(';');
    let seconds = parts.next()?.trim().parse::<u32>().ok()?;
    let refresher = parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("refresher") {
            return None;
        }
        match value.trim().to_ascii_lowercase().as_str() {
            "uac" => Some(Refresher::Uac),
            "uas" => Some(Refresher::Uas),
            _ => None,
        }
    });
    Some((seconds.min(MAX_SESSION_EXPIRES), refresher))
}

/// `Min-SE: 90` (parameters ignored).
pub fn parse_min_se(value: &str) -> Option<u32> {
    value.split(';').next()?.trim().parse::<u32>().ok()
}

/// The session timer of a call once a 2xx agreed on one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTimer {
    /// The session interval, seconds.
    pub interval: u32,
    /// We send the refreshes (else we only watch for the peer's).
    pub we_refresh: bool,
    /// When the session was last refreshed (the 2xx of an INVITE, re-INVITE or UPDATE).
    pub refreshed_at: Instant,
    /// Our refresh went out and waits for its answer.
    pub refresh_sent: bool,
}

impl SessionTimer {
    fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.interval.max(1)))
    }

    /// When the session expires unless refreshed.
    pub fn expires_at(&self) -> Instant {
        self.refreshed_at + self.interval()
    }

    /// When we send BYE if no refresh came: RFC 4028 §10, the smaller of 32 s and a third of
    /// the interval before the session expires.
    pub fn bye_at(&self) -> Instant {
        let margin = Duration::from_secs(32).min(self.interval() / 3);
        self.expires_at() - margin
    }

    /// When we refresh (at half the interval, RFC 4028 §10), or while our refresh is out or
    /// when the peer refreshes, when we give up on the session.
    pub fn deadline(&self) -> Instant {
        if self.we_refresh && !self.refresh_sent {
            self.refreshed_at + self.interval() / 2
        } else {
            self.bye_at()
        }
    }
}

/// The Session-Expires value of a request or response, if it has a readable one.
fn session_expires_of(headers: &crate::sip::message::Headers) -> Option<(u32, Option<Refresher>)> {
    headers
        .get("Session-Expires")
        .and_then(parse_session_expires)
}

fn supports_timer(headers: &crate::sip::message::Headers) -> bool {
    headers
        .tokens("Supported")
        .iter()
        .chain(headers.tokens("Require").iter())
        .any(|t| t.eq_ignore_ascii_case("timer"))
}

impl UserAgent {
    /// The Session-Expires and Min-SE a new INVITE of ours carries (none when the account asks
    /// for no session timer).
    pub(super) fn session_headers_for_dial(&self) -> Vec<(&'static str, String)> {
        let Some(expires) = self.config.calls.session_expires else {
            return Vec::new();
        };
        let min_se = self.config.calls.min_se;
        vec![
            ("Session-Expires", expires.max(min_se).to_string()),
            ("Min-SE", min_se.to_string()),
        ]
    }

    /// A 422 to our INVITE (RFC 4028 §7.3): the retry asks for the peer's Min-SE. None: give
    /// up (no usable Min-SE, or too many retries).
    pub(super) fn retry_after_422(
        &mut self,
        id: u64,
        invite: &Request,
        response: &Response,
    ) -> Option<Request> {
        let peer_min = response.headers.get("Min-SE").and_then(parse_min_se)?;
        let call = self.call_mut(id)?;
        if call.se_retries >= MAX_422_RETRIES || peer_min > MAX_SESSION_EXPIRES {
            return None;
        }
        call.se_retries += 1;
        let ours = invite
            .headers
            .get("Session-Expires")
            .and_then(parse_session_expires)
            .map(|(s, _)| s)
            .unwrap_or(0);
        let mut next = super::call::retry_of(invite);
        next.headers
            .set("Session-Expires", ours.max(peer_min).to_string());
        next.headers.set("Min-SE", peer_min.to_string());
        Some(next)
    }

    /// UAS: an INVITE (or refresh) whose Session-Expires is below our Min-SE gets 422 (RFC
    /// 4028 §8.1) when the caller supports timers; `Some(response)` then.
    pub(super) fn session_too_short(
        &self,
        request: &Request,
        tag: Option<&str>,
    ) -> Option<Response> {
        let (expires, _) = session_expires_of(&request.headers)?;
        let min_se = self.config.calls.min_se;
        if expires >= min_se || !supports_timer(&request.headers) {
            return None;
        }
        let mut r = self.make_response(request, 422, tag);
        r.headers.push("Min-SE", min_se.to_string());
        Some(r)
    }

    /// UAS: the session timer our 2xx to `request` (the initial INVITE, a re-INVITE or an
    /// UPDATE from the peer) sets up, and the headers that say so. RFC 4028 §9: the peer's
    /// Session-Expires (raised to our Min-SE) with its refresher, or when it named none, the
    /// peer refreshes if it supports timers; with no Session-Expires we ask for ours (and
    /// refresh ourselves: a caller without timer support cannot).
    pub(super) fn uas_session(
        &self,
        request: &Request,
        now: Instant,
    ) -> Option<(SessionTimer, Vec<(&'static str, String)>)> {
        let min_se = self.config.calls.min_se;
        let peer_supports = supports_timer(&request.headers);
        let (interval, refresher) = match session_expires_of(&request.headers) {
            Some((expires, refresher)) => (
                expires.max(min_se),
                refresher.unwrap_or(if peer_supports {
                    Refresher::Uac
                } else {
                    Refresher::Uas
                }),
            ),
            None => (
                self.config.calls.session_expires?.max(min_se),
                Refresher::Uas,
            ),
        };
        let mut headers = vec![(
            "Session-Expires",
            format!("{interval};refresher={}", refresher.as_str()),
        )];
        if refresher == Refresher::Uac {
            // §9: the peer must know it is the refresher.
            headers.push(("Require", "timer".to_string()));
        }
        let timer = SessionTimer {
            interval,
            we_refresh: refresher == Refresher::Uas,
            refreshed_at: now,
            refresh_sent: false,
        };
        Some((timer, headers))
    }

    /// UAC: the session timer a 2xx to our INVITE, re-INVITE or UPDATE agreed on (RFC 4028
    /// §7.2: none without Session-Expires; a missing refresher means us).
    pub(super) fn uac_session_from(&mut self, id: u64, response: &Response, now: Instant) {
        let timer =
            session_expires_of(&response.headers).map(|(interval, refresher)| SessionTimer {
                interval: interval.max(1),
                we_refresh: refresher != Some(Refresher::Uas),
                refreshed_at: now,
                refresh_sent: false,
            });
        if let Some(call) = self.call_mut(id) {
            if timer.is_none() && call.session.is_some() {
                tracing::debug!(call = id, "the peer's 2xx drops the session timer");
            }
            call.session = timer;
        }
    }

    /// Session-Expires and Min-SE for a re-INVITE or UPDATE of ours while a timer runs: the
    /// interval, and who refreshes in the roles of this transaction (us = uac).
    pub(super) fn session_headers_for_refresh(&self, id: u64) -> Vec<(&'static str, String)> {
        let Some(timer) = self
            .calls
            .iter()
            .find(|c| c.id == id)
            .and_then(|c| c.session.as_ref())
        else {
            return Vec::new();
        };
        let refresher = if timer.we_refresh {
            Refresher::Uac
        } else {
            Refresher::Uas
        };
        vec![
            (
                "Session-Expires",
                format!("{};refresher={}", timer.interval, refresher.as_str()),
            ),
            ("Min-SE", self.config.calls.min_se.to_string()),
        ]
    }

    /// The session deadline of call `id` passed: refresh it (we are the refresher), or end it
    /// with BYE (the peer did not refresh, or our refresh got no 2xx in time).
    pub(super) fn session_timeout(&mut self, id: u64, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        let Some(timer) = call.session.as_mut() else {
            return;
        };
        if now < timer.deadline() {
            return;
        }
        if timer.we_refresh && !timer.refresh_sent {
            timer.refresh_sent = true;
            let busy = call.reinviting || call.updating;
            if busy {
                // An offer of ours is on its way: its 2xx refreshes the session too.
                return;
            }
            tracing::debug!(call = id, "session timer: refreshing");
            self.send_refresh(id, now);
            return;
        }
        let interval = timer.interval;
        call.session = None;
        let role = call.role;
        tracing::info!(
            call = id,
            interval,
            ?role,
            "session expired without a refresh: BYE"
        );
        self.events.push_back(UaEvent::Warning {
            message: format!("call {id}: the session was not refreshed within {interval} s; hanging up (RFC 4028)"),
        });
        self.send_bye_because(id, "Session expired (no refresh)".into(), now);
    }

    /// A session refresh (RFC 4028 §7.4): UPDATE without a body when the peer allows it, else
    /// a re-INVITE with the unchanged session description.
    fn send_refresh(&mut self, id: u64, now: Instant) {
        let Some(call) = self.calls.iter().find(|c| c.id == id) else {
            return;
        };
        if call.peer_allows_update {
            self.send_update(id, false, now);
        } else {
            self.send_reinvite_with(id, false, now);
        }
    }

    /// The session was refreshed now (a 2xx went to or came from the peer's re-INVITE or
    /// UPDATE) with the timer `timer` (`None`: keep the interval, restart the clock).
    pub(super) fn session_refreshed(&mut self, id: u64, timer: Option<SessionTimer>, now: Instant) {
        let Some(call) = self.call_mut(id) else {
            return;
        };
        match (timer, call.session.as_mut()) {
            (Some(timer), _) => call.session = Some(timer),
            (None, Some(current)) => {
                current.refreshed_at = now;
                current.refresh_sent = false;
            }
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_expires_parses_seconds_and_refresher() {
        assert_eq!(
            parse_session_expires("1800;refresher=uac"),
            Some((1800, Some(Refresher::Uac)))
        );
        assert_eq!(
            parse_session_expires(" 90 ; refresher = UAS"),
            Some((90, Some(Refresher::Uas)))
        );
        assert_eq!(parse_session_expires("4"), Some((4, None)));
        assert_eq!(
            parse_session_expires("600;refresher=both"),
            Some((600, None))
        );
        assert_eq!(parse_session_expires("soon"), None);
        assert_eq!(parse_session_expires(""), None);
        // A peer cannot make us arm a timer years away.
        assert_eq!(
            parse_session_expires("4294967295"),
            Some((MAX_SESSION_EXPIRES, None))
        );
        assert_eq!(parse_min_se("120;x=y"), Some(120));
        assert_eq!(parse_min_se("-1"), None);
    }

    #[test]
    fn refresh_at_half_and_bye_before_expiry() {
        let t0 = crate::test_clock::t0();
        let mut timer = SessionTimer {
            interval: 90,
            we_refresh: true,
            refreshed_at: t0,
            refresh_sent: false,
        };
        assert_eq!(timer.deadline(), t0 + Duration::from_secs(45));
        timer.refresh_sent = true;
        // 90 s: a third (30 s) is less than 32 s.
        assert_eq!(timer.deadline(), t0 + Duration::from_secs(60));
        timer.we_refresh = false;
        timer.refresh_sent = false;
        assert_eq!(timer.deadline(), t0 + Duration::from_secs(60));
        timer.interval = 1800;
        assert_eq!(timer.deadline(), t0 + Duration::from_secs(1800 - 32));
        timer.interval = 3;
        assert_eq!(timer.deadline(), t0 + Duration::from_secs(2));
    }
}
