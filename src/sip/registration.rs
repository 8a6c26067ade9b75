//! One account's registration (RFC 3261 §10): REGISTER with Contact and expires, digest
//! challenges, refresh before expiry, 423 Min-Expires, back-off after failures, unregister.
//!
//! Pure state: the user agent builds the transport bits (Via, branch) and feeds responses and
//! timeouts in; this module decides what to send next and what the user sees.

use std::time::{Duration, Instant};

use super::auth::{Authenticator, DigestCredentials};
use super::message::{Method, Request, Response};
use super::uri::Uri;

/// First retry delay after a failed registration; doubles up to `MAX_BACKOFF`, so a dead or
/// refusing registrar sees at most one attempt per back-off period (no storm).
pub const FIRST_BACKOFF: Duration = Duration::from_secs(30);
pub const MAX_BACKOFF: Duration = Duration::from_secs(900);
/// RFC 5626 §4.5: a flow that lived this long before it failed was a good one; the next
/// failure re-registers at once again. Flows that keep dying sooner wait
/// FIRST_BACKOFF * 2^(n-1) (capped at MAX_BACKOFF), so a registrar that closes every
/// connection right after the 200 sees no storm.
pub const FLOW_STABLE_AFTER: Duration = Duration::from_secs(120);
/// How many times a 423 Interval Too Brief may raise our expiry before we give up.
const MAX_INTERVAL_RETRIES: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistrationState {
    Unregistered,
    Registering,
    Registered,
    Failed,
    Unregistering,
}

impl RegistrationState {
    /// The word the front ends show (headless `state` field).
    pub fn as_str(&self) -> &'static str {
        match self {
            RegistrationState::Unregistered => "unregistered",
            RegistrationState::Registering => "registering",
            RegistrationState::Registered => "registered",
            RegistrationState::Failed => "failed",
            RegistrationState::Unregistering => "unregistering",
        }
    }
}

/// What the registration wants the user agent to do.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationOutput {
    /// Send this REGISTER (the UA adds Via, Max-Forwards, User-Agent, Route).
    Send(Box<Request>),
    /// Tell the user.
    Changed {
        state: RegistrationState,
        code: Option<u16>,
        reason: Option<String>,
        expires: Option<u32>,
    },
}

/// Static facts about the binding, decided at start-up.
#[derive(Debug, Clone)]
pub struct RegistrationParams {
    pub aor: Uri,
    pub display_name: Option<String>,
    pub registrar: Uri,
    pub contact: Uri,
    pub expires: u32,
    pub call_id: String,
    pub from_tag: String,
}

#[derive(Debug)]
pub struct Registration {
    params: RegistrationParams,
    state: RegistrationState,
    cseq: u32,
    requested_expires: u32,
    interval_retries: u8,
    auth: Option<Authenticator>,
    /// When to send the next REGISTER on our own (refresh or retry after back-off).
    next_attempt: Option<Instant>,
    backoff: Duration,
    /// The REGISTER waiting for a final response, if any.
    pending: Option<Request>,
    /// Whether the user wants to be registered (false after `unregister`).
    wanted: bool,
    granted_expires: Option<u32>,
    /// Flow failures in a row (each within FLOW_STABLE_AFTER of the one before) and when the
    /// last one was.
    flow_failures: u32,
    last_flow_failure: Option<Instant>,
}

impl Registration {
    pub fn new(
        params: RegistrationParams,
        credentials: Option<DigestCredentials>,
        seed: u64,
    ) -> Self {
        let requested_expires = params.expires;
        Registration {
            params,
            state: RegistrationState::Unregistered,
            cseq: 0,
            requested_expires,
            interval_retries: 0,
            auth: credentials.map(|c| Authenticator::new(c, seed)),
            next_attempt: None,
            backoff: FIRST_BACKOFF,
            pending: None,
            wanted: false,
            granted_expires: None,
            flow_failures: 0,
            last_flow_failure: None,
        }
    }

    pub fn state(&self) -> RegistrationState {
        self.state
    }

    pub fn params(&self) -> &RegistrationParams {
        &self.params
    }

    /// Changes the Contact (e.g. after learning our public address from `received`/`rport`).
    pub fn set_contact(&mut self, contact: Uri) {
        self.params.contact = contact;
    }

    /// The user asks to register (or re-register now).
    pub fn register(&mut self, out: &mut Vec<RegistrationOutput>) {
        self.wanted = true;
        self.interval_retries = 0;
        self.requested_expires = self.params.expires;
        self.send_register(self.requested_expires, out);
    }

    /// The user asks to remove the binding. Returns false when there is nothing to remove.
    pub fn unregister(&mut self, out: &mut Vec<RegistrationOutput>) -> bool {
        self.wanted = false;
        self.next_attempt = None;
        match self.state {
            RegistrationState::Registered | RegistrationState::Registering => {
                self.send_register(0, out);
                true
            }
            _ => false,
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        self.next_attempt
    }

    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<RegistrationOutput>) {
        if self.pending.is_some() {
            return;
        }
        if let Some(at) = self.next_attempt
            && now >= at
        {
            self.next_attempt = None;
            if self.wanted {
                self.send_register(self.requested_expires, out);
            }
        }
    }

    /// The connection (TCP/TLS flow) to the registrar or outbound proxy closed or died
    /// (RFC 5626 §4.4): the registrar can no longer reach us over it, so register again now
    /// (over a new connection) instead of at the next refresh, minutes away. Only a standing
    /// binding is refreshed: a REGISTER in flight fails by itself, a failed one keeps its
    /// back-off. True when a REGISTER was sent.
    pub fn flow_failed(&mut self, now: Instant, out: &mut Vec<RegistrationOutput>) -> bool {
        if !self.wanted || self.state != RegistrationState::Registered || self.pending.is_some() {
            return false;
        }
        if self
            .last_flow_failure
            .is_none_or(|at| now.saturating_duration_since(at) >= FLOW_STABLE_AFTER)
        {
            self.flow_failures = 0;
        }
        self.last_flow_failure = Some(now);
        let wait = match self.flow_failures {
            0 => Duration::ZERO,
            n => FIRST_BACKOFF
                .saturating_mul(1 << (n - 1).min(16))
                .min(MAX_BACKOFF),
        };
        self.flow_failures = self.flow_failures.saturating_add(1);
        if wait.is_zero() {
            self.send_register(self.requested_expires, out);
            return true;
        }
        let at = now + wait;
        self.next_attempt = Some(self.next_attempt.map_or(at, |next| next.min(at)));
        false
    }

    /// The REGISTER in flight got no final response (timer F) or could not be sent.
    pub fn handle_failure(
        &mut self,
        code: u16,
        reason: &str,
        now: Instant,
        out: &mut Vec<RegistrationOutput>,
    ) {
        if self.pending.take().is_none() {
            return;
        }
        self.fail(code, reason.to_string(), now, out);
    }

    /// A final (or provisional) response to our REGISTER.
    pub fn handle_response(
        &mut self,
        response: &Response,
        now: Instant,
        out: &mut Vec<RegistrationOutput>,
    ) {
        if response.is_provisional() {
            return;
        }
        let Some(request) = self.pending.take() else {
            return;
        };
        let unregistering = self.state == RegistrationState::Unregistering;
        match response.code {
            200..=299 if unregistering => {
                self.state = RegistrationState::Unregistered;
                self.granted_expires = None;
                out.push(changed(
                    RegistrationState::Unregistered,
                    Some(response.code),
                    &response.reason,
                    None,
                ));
            }
            200..=299 if !self.wanted => {
                // `unregister` came while this REGISTER was in flight (one at a time, so it
                // waited): the binding exists now, remove it. Was: reported `registered` and
                // never unregistered (e.g. `unregister` or quit right after a Contact refresh).
                self.next_attempt = None;
                self.send_register(0, out);
            }
            200..=299 => {
                let granted = self
                    .granted_expiry(response)
                    .unwrap_or(self.requested_expires);
                self.granted_expires = Some(granted);
                self.state = RegistrationState::Registered;
                self.backoff = FIRST_BACKOFF;
                self.next_attempt = Some(now + refresh_delay(granted));
                out.push(changed(
                    RegistrationState::Registered,
                    Some(response.code),
                    &response.reason,
                    Some(granted),
                ));
            }
            401 | 407 => {
                let retry = match self.auth.as_mut() {
                    Some(auth) => auth.respond(&request, response).ok(),
                    None => None,
                };
                match retry {
                    Some(headers) => {
                        let expires = if unregistering {
                            0
                        } else {
                            self.requested_expires
                        };
                        let mut next = self.build(expires);
                        for (name, value) in headers {
                            next.headers.push(name, value);
                        }
                        self.pending = Some(next.clone());
                        out.push(RegistrationOutput::Send(Box::new(next)));
                    }
                    None => self.fail(response.code, response.reason.clone(), now, out),
                }
            }
            423 => {
                let min = response
                    .headers
                    .get("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(min)
                        if self.interval_retries < MAX_INTERVAL_RETRIES
                            && min > self.requested_expires =>
                    {
                        self.interval_retries += 1;
                        self.requested_expires = min;
                        self.send_register(min, out);
                    }
                    _ => self.fail(response.code, response.reason.clone(), now, out),
                }
            }
            _ => self.fail(response.code, response.reason.clone(), now, out),
        }
    }

    fn fail(&mut self, code: u16, reason: String, now: Instant, out: &mut Vec<RegistrationOutput>) {
        if self.state == RegistrationState::Unregistering {
            // The binding will expire by itself; the user asked to be gone, so say so.
            self.state = RegistrationState::Unregistered;
            out.push(changed(
                RegistrationState::Unregistered,
                Some(code),
                &reason,
                None,
            ));
            return;
        }
        self.state = RegistrationState::Failed;
        self.granted_expires = None;
        if self.wanted {
            self.next_attempt = Some(now + self.backoff);
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
        out.push(changed(
            RegistrationState::Failed,
            Some(code),
            &reason,
            None,
        ));
    }

    fn send_register(&mut self, expires: u32, out: &mut Vec<RegistrationOutput>) {
        if self.pending.is_some() {
            // One REGISTER at a time per binding (RFC 3261 §10.2); the answer to the one in
            // flight decides what comes next.
            return;
        }
        self.state = if expires == 0 {
            RegistrationState::Unregistering
        } else {
            RegistrationState::Registering
        };
        let mut request = self.build(expires);
        if let Some(auth) = self.auth.as_mut() {
            for (name, value) in auth.preemptive(&request) {
                request.headers.push(name, value);
            }
        }
        self.pending = Some(request.clone());
        out.push(RegistrationOutput::Send(Box::new(request)));
    }

    fn build(&mut self, expires: u32) -> Request {
        self.cseq += 1;
        let p = &self.params;
        let mut req = Request::new(Method::Register, p.registrar.clone());
        let from = match &p.display_name {
            Some(name) => format!("\"{}\" <{}>;tag={}", escape_quoted(name), p.aor, p.from_tag),
            None => format!("<{}>;tag={}", p.aor, p.from_tag),
        };
        req.headers.push("From", from);
        req.headers.push("To", format!("<{}>", p.aor));
        req.headers.push("Call-ID", p.call_id.clone());
        req.headers.push("CSeq", format!("{} REGISTER", self.cseq));
        req.headers
            .push("Contact", format!("<{}>;expires={}", p.contact, expires));
        req.headers.push("Expires", expires.to_string());
        req
    }

    /// The expiry the registrar granted to our Contact: its `expires` parameter in the 200's
    /// Contact list, else the Expires header.
    fn granted_expiry(&self, response: &Response) -> Option<u32> {
        if let Ok(contacts) = response.headers.contacts() {
            for contact in contacts {
                if contact.uri.equivalent(&self.params.contact)
                    && let Some(Some(v)) = contact.param("expires")
                    && let Ok(v) = v.trim().parse::<u32>()
                {
                    return Some(v);
                }
            }
        }
        response.headers.expires().ok().flatten()
    }
}

/// Refresh well before expiry: halfway for short bindings, a minute early for long ones.
pub fn refresh_delay(granted: u32) -> Duration {
    let secs = if granted <= 120 {
        granted / 2
    } else {
        granted - 60
    };
    Duration::from_secs(u64::from(secs.max(1)))
}

fn changed(
    state: RegistrationState,
    code: Option<u16>,
    reason: &str,
    expires: Option<u32>,
) -> RegistrationOutput {
    RegistrationOutput::Changed {
        state,
        code,
        reason: Some(reason.to_string()),
        expires,
    }
}

/// Escapes `"` and `\` for a quoted display name.
pub fn escape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
