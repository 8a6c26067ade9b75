//! Registration and call rules: why a registration fails (wrong password, unknown user, a
//! registrar that does not answer over this transport), what the registrar changed (expiry,
//! our address behind a NAT), and why a call failed (codecs, extensions, 403, 408, 480, 486...).

use std::time::Instant;

use super::trace::TraceMessage;
use super::{Diagnoser, Evidence, Finding, Severity, listing};
use crate::event::{Direction, RegistrationState};

pub const WRONG_PASSWORD: &str = "registration.wrong_password";
pub const PASSWORD_MISSING: &str = "registration.password_missing";
pub const UNKNOWN_USER: &str = "registration.unknown_user";
pub const REGISTRAR_UNREACHABLE: &str = "registration.unreachable";
pub const REGISTRATION_REJECTED: &str = "registration.rejected";
pub const EXPIRY_CHANGED: &str = "registration.expiry_changed";
/// Registration failures: a success clears them all.
const REGISTRATION_FAILURES: &[&str] = &[
    WRONG_PASSWORD,
    PASSWORD_MISSING,
    UNKNOWN_USER,
    REGISTRAR_UNREACHABLE,
    REGISTRATION_REJECTED,
];

pub const CODEC_MISMATCH: &str = "call.codec_mismatch";
pub const MEDIA_REFUSED: &str = "call.media_refused";
pub const EXTENSION_UNSUPPORTED: &str = "call.extension_unsupported";
pub const EXTENSION_REQUIRED: &str = "call.extension_required";
pub const FORBIDDEN: &str = "call.forbidden";
pub const NOT_FOUND: &str = "call.not_found";
pub const NO_RESPONSE: &str = "call.no_response";
pub const UNREACHABLE: &str = "call.unreachable";
pub const UNAVAILABLE: &str = "call.unavailable";
pub const BUSY: &str = "call.busy";
pub const DECLINED: &str = "call.declined";
pub const FAILED: &str = "call.failed";

/// REGISTERs and responses to them remembered per attempt cycle (a registrar flooding us with
/// provisional responses must not grow it).
const MAX_RESPONSES: usize = 16;

/// One REGISTER we sent.
#[derive(Debug, Clone)]
struct Attempt {
    peer: std::net::SocketAddr,
    transport: String,
    authorized: bool,
}

/// What the REGISTER transactions since the last registration event showed.
#[derive(Debug, Default)]
pub struct RegistrationTrack {
    attempts: Vec<Attempt>,
    responses: Vec<TraceMessage>,
    /// The expiry the account asks for: the first REGISTER's (later ones may follow a 423).
    configured_expires: Option<u32>,
    /// A 423 asked for at least this.
    min_expires: Option<u32>,
    /// Where the registrar saw us in its last 200 (received/rport), and our own address then.
    pub(super) public_seen: Option<String>,
    pub(super) local_address: Option<String>,
}

impl Diagnoser {
    pub(super) fn registration_message(&mut self, message: &TraceMessage) {
        let track = &mut self.registration;
        match (message.dir, message.code) {
            (Direction::Out, None) => {
                if track.configured_expires.is_none() {
                    track.configured_expires = message.expires.filter(|e| *e > 0);
                }
                if track.attempts.len() >= MAX_RESPONSES {
                    track.attempts.remove(0);
                }
                track.attempts.push(Attempt {
                    peer: message.peer,
                    transport: message
                        .via
                        .as_ref()
                        .map_or_else(|| "UDP".to_string(), |v| v.transport.clone()),
                    authorized: message.authorized,
                });
                if track.local_address.is_none() {
                    track.local_address = message.via.as_ref().map(|v| v.sent_by.clone());
                }
            }
            (Direction::In, Some(code)) => {
                if code == 423 {
                    track.min_expires = message.min_expires;
                }
                if track.responses.len() >= MAX_RESPONSES {
                    track.responses.remove(0);
                }
                track.responses.push(message.clone());
            }
            _ => {}
        }
    }

    pub(super) fn registration_changed(
        &mut self,
        state: RegistrationState,
        code: Option<u16>,
        reason: Option<&str>,
        expires: Option<u32>,
        now: Instant,
    ) {
        match state {
            RegistrationState::Registered => self.registered(expires, now),
            RegistrationState::Failed => {
                self.registration_failed(code, reason.unwrap_or_default(), now)
            }
            RegistrationState::Unregistered => {
                for code in REGISTRATION_FAILURES {
                    self.clear(code, None);
                }
                self.clear(EXPIRY_CHANGED, None);
                self.clear(super::network::BEHIND_NAT, None);
                self.clear(super::network::MAPPING_LOST, None);
                self.registration.public_seen = None;
            }
            _ => return,
        }
        self.registration.attempts.clear();
        self.registration.responses.clear();
    }

    fn registered(&mut self, granted: Option<u32>, now: Instant) {
        for code in REGISTRATION_FAILURES {
            self.clear(code, None);
        }
        let ok = self
            .registration
            .responses
            .iter()
            .rev()
            .find(|r| r.code.is_some_and(|c| (200..300).contains(&c)))
            .cloned();
        if let Some(ok) = &ok {
            // The server that answered works: DNS and TLS trouble with it is over.
            let peer = ok.peer.to_string();
            self.clear_where(|f| {
                f.code.starts_with("tls.") && f.subject.as_deref() == Some(peer.as_str())
            });
            self.nat_from_registration(ok, now);
        }
        let asked = self.registration.configured_expires;
        match (asked, granted) {
            (Some(asked), Some(granted)) if asked != granted => {
                let min = self.registration.min_expires;
                let message = match min {
                    Some(min) => format!(
                        "The registrar wants registrations of at least {min} s (423 Interval \
                         Too Brief), longer than the {asked} s configured; sipterm registered \
                         for {granted} s instead."
                    ),
                    None if granted < asked => format!(
                        "The registrar shortened the registration to {granted} s (we asked for \
                         {asked} s), so sipterm refreshes it every {} s.",
                        crate::sip::registration::refresh_delay(granted).as_secs()
                    ),
                    None => format!(
                        "The registrar lengthened the registration to {granted} s (we asked \
                         for {asked} s); sipterm refreshes it before then."
                    ),
                };
                self.raise(
                    Finding::new(
                        EXPIRY_CHANGED,
                        Severity::Info,
                        "expiry changed",
                        message,
                        format!(
                            "Nothing to do: sipterm follows the registrar. `expires = {granted}` \
                             in the account asks for what it grants."
                        ),
                    )
                    .with_evidence(
                        Evidence::new()
                            .with("asked_s", asked)
                            .with("granted_s", granted)
                            .with_some("min_expires_s", min)
                            .with_some("registrar", ok.as_ref().map(|r| r.peer)),
                    ),
                );
            }
            _ => self.clear(EXPIRY_CHANGED, None),
        }
    }

    fn registration_failed(&mut self, code: Option<u16>, reason: &str, now: Instant) {
        for code in REGISTRATION_FAILURES {
            self.clear(code, None);
        }
        let track = &self.registration;
        let last_final = track.responses.iter().rev().find(|r| r.is_final()).cloned();
        let answered = !track.responses.is_empty();
        let last_attempt = track.attempts.last().cloned();
        let aor = self.setup.account.clone();
        let registrar = self
            .setup
            .registrar
            .as_ref()
            .map_or_else(|| "The registrar".into(), |r| format!("The registrar {r}"));
        match (code, last_final) {
            (Some(401 | 407), Some(challenge)) => {
                let realm = challenge.realm.clone();
                let evidence = Evidence::new()
                    .with("registrar", challenge.peer)
                    .with(
                        "response",
                        format!("{} {}", challenge.code.unwrap_or(0), challenge.reason),
                    )
                    .with_some("realm", realm.as_ref());
                let answered_challenge = last_attempt.is_some_and(|a| a.authorized);
                let finding = if !self.setup.has_password {
                    Finding::new(
                        PASSWORD_MISSING,
                        Severity::Error,
                        "no password",
                        format!(
                            "{registrar} asks for a password for {aor} ({} {}), and the \
                             account has none.",
                            challenge.code.unwrap_or(0),
                            challenge.reason
                        ),
                        "Set `password` or `password_command` in the account.",
                    )
                } else {
                    Finding::new(
                        WRONG_PASSWORD,
                        Severity::Error,
                        "wrong password",
                        format!(
                            "{registrar} rejects the password of {aor}: it challenged again \
                             ({} {}){} after sipterm answered with the configured credentials, \
                             so the password (or the digest user name) is wrong.",
                            challenge.code.unwrap_or(0),
                            challenge.reason,
                            realm
                                .as_deref()
                                .map(|r| format!(" for realm {r}"))
                                .unwrap_or_default()
                        ),
                        "Check `password` and `username` (the digest user, often not the \
                         number) in the account; the provider's portal shows them.",
                    )
                };
                let finding =
                    finding.with_evidence(evidence.with("answered_challenge", answered_challenge));
                self.raise(finding);
            }
            (Some(403 | 404), Some(refusal)) => {
                let response = format!("{} {}", refusal.code.unwrap_or(0), refusal.reason);
                self.raise(
                    Finding::new(
                        UNKNOWN_USER,
                        Severity::Error,
                        "unknown user",
                        format!(
                            "{registrar} refuses to register {aor} ({response}): it does not \
                             know that user, or the account's domain is not its own."
                        ),
                        "Check the user part and the domain of `uri` (and `username`) against \
                         what the provider gave you.",
                    )
                    .with_evidence(
                        Evidence::new()
                            .with("registrar", refusal.peer)
                            .with("response", response)
                            .with_some("server", refusal.software.as_ref()),
                    ),
                );
            }
            _ if !answered && !reason.starts_with("Cannot resolve") => {
                self.nobody_answered_registration(code, reason, now);
            }
            (_, Some(response)) => {
                let text = format!("{} {}", response.code.unwrap_or(0), response.reason);
                self.raise(
                    Finding::new(
                        REGISTRATION_REJECTED,
                        Severity::Error,
                        "registration refused",
                        format!(
                            "{} refused the registration of {aor}: {}.",
                            response.peer,
                            status_in_words(response.code.unwrap_or(0), &response.reason)
                        ),
                        "Retry later; if it stays, ask the provider what the answer means for \
                         your account.",
                    )
                    .with_evidence(
                        Evidence::new()
                            .with("registrar", response.peer)
                            .with("response", text)
                            .with_some("server", response.software.as_ref()),
                    ),
                );
            }
            _ => {}
        }
    }

    /// Every REGISTER went unanswered: say where they went, over what, and what came back
    /// (ICMP, a refused connection, a TLS failure, nothing). All the servers DNS gave for one
    /// name is `dns.all_targets_dead`.
    fn nobody_answered_registration(&mut self, code: Option<u16>, reason: &str, _now: Instant) {
        let mut tried: Vec<(std::net::SocketAddr, String)> = Vec::new();
        for attempt in &self.registration.attempts {
            if !tried.iter().any(|(p, _)| *p == attempt.peer) {
                tried.push((attempt.peer, attempt.transport.clone()));
            }
        }
        if tried.is_empty() {
            return;
        }
        // A TLS failure with that server is the explanation already.
        if tried.iter().any(|(peer, _)| {
            let peer = peer.to_string();
            self.active()
                .any(|f| f.code.starts_with("tls.") && f.subject.as_deref() == Some(&peer))
        }) {
            return;
        }
        if self.all_targets_dead(&tried, None) {
            return;
        }
        let described: Vec<String> = tried
            .iter()
            .map(|(peer, transport)| self.describe_dead_server(*peer, transport))
            .collect();
        let registrar = self
            .setup
            .registrar
            .as_ref()
            .map_or_else(|| "the registrar".into(), |r| format!("the registrar {r}"));
        self.raise(
            Finding::new(
                REGISTRAR_UNREACHABLE,
                Severity::Error,
                "registrar unreachable",
                format!("sipterm cannot reach {registrar}: {}.", listing(&described)),
                "Check the registrar's address, port and transport in the account (UDP and \
                 TCP usually use 5060, TLS 5061) and that no firewall blocks that transport.",
            )
            .with_evidence(
                Evidence::new()
                    .with("tried", listing(&described))
                    .with_some("code", code)
                    .with("reason", reason),
            ),
        );
    }

    /// A call ended with a failure response (or none): say why in words.
    pub(super) fn call_failed(
        &mut self,
        call: u64,
        code: Option<u16>,
        reason: Option<&str>,
        now: Instant,
    ) {
        let Some(code) = code else { return };
        if code < 300 || code == 487 {
            return;
        }
        let reason = reason.unwrap_or_default().to_string();
        if reason.starts_with("Cannot resolve") {
            self.dns_failed_for_call(call, &reason);
            return;
        }
        let remote = self
            .calls
            .get(&call)
            .map(|c| c.remote.clone())
            .unwrap_or_default();
        let dialog = self.call_dialog(call).cloned().unwrap_or_default();
        let response = dialog.final_response.clone();
        let incoming = dialog.their_invite.is_some();
        let peer = response.as_ref().map(|r| r.peer);
        let server = response
            .as_ref()
            .and_then(|r| r.software.clone())
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let said = format!(
            "{code} {}",
            response
                .as_ref()
                .map(|r| r.reason.clone())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| reason.clone())
        );
        let base = Evidence::new()
            .with("response", &said)
            .with_some("from", peer)
            .with_some(
                "server",
                response.as_ref().and_then(|r| r.software.as_ref()),
            )
            .with_some(
                "warning",
                response.as_ref().and_then(|r| r.warning.as_ref()),
            );
        if dialog.invite_answered_by.is_none() && !incoming && matches!(code, 408 | 503) {
            // Nobody answered the INVITE at all: a dead server, not a refusing callee.
            let tried: Vec<(std::net::SocketAddr, String)> = dialog
                .invite_sent_to
                .iter()
                .map(|p| (*p, "UDP".to_string()))
                .collect();
            // A failed TLS handshake with that server explains it already.
            let tls_failed = tried.iter().any(|(peer, _)| {
                let peer = peer.to_string();
                self.active()
                    .any(|f| f.code.starts_with("tls.") && f.subject.as_deref() == Some(&peer))
            });
            if tried.is_empty() || tls_failed || self.all_targets_dead(&tried, Some(call)) {
                return;
            }
            let described: Vec<String> = tried
                .iter()
                .map(|(peer, _)| self.describe_dead_server(*peer, ""))
                .collect();
            self.raise(
                Finding::new(
                    UNREACHABLE,
                    Severity::Error,
                    "unreachable",
                    format!(
                        "The call to {remote} failed because nothing answered its INVITE: {}.",
                        listing(&described)
                    ),
                    "Check the address you dialled (or the account's proxy) and the network; \
                     a firewall may block SIP.",
                )
                .on_call(call)
                .with_evidence(base.with("tried", listing(&described))),
            );
            return;
        }
        let _ = now;
        let finding = match code {
            488 | 606 => self.media_refusal(&remote, &said, &dialog, incoming, base.clone()),
            420 => {
                let wanted = response
                    .as_ref()
                    .map(|r| r.unsupported.clone())
                    .unwrap_or_default();
                Finding::new(
                    EXTENSION_UNSUPPORTED,
                    Severity::Error,
                    "extension unsupported",
                    format!(
                        "{remote} refused the call ({said}) because it does not support the \
                         SIP extension {} the request required.",
                        listing(&wanted)
                    ),
                    "A proxy on the way added a Require/Proxy-Require the peer lacks; ask its \
                     operator, or call through another route.",
                )
                .with_evidence(base.with("unsupported", wanted.join(", ")))
            }
            421 => {
                let wanted = response
                    .as_ref()
                    .map(|r| r.require.clone())
                    .unwrap_or_default();
                Finding::new(
                    EXTENSION_REQUIRED,
                    Severity::Error,
                    "extension required",
                    format!(
                        "{remote} refused the call ({said}) because it requires the SIP \
                         extension {}, which sipterm did not offer for this call.",
                        listing(&wanted)
                    ),
                    "For `100rel` set the account's `100rel = \"supported\"` (or \"required\"), \
                     for `timer` give it a `session_expires`; for anything else ask the \
                     operator of the other side to make the extension optional for you.",
                )
                .with_evidence(base.with("require", wanted.join(", ")))
            }
            403 => {
                let who = match (peer, incoming) {
                    (Some(peer), false) => format!("the server at {peer}{server}"),
                    _ => "the other side".to_string(),
                };
                Finding::new(
                    FORBIDDEN,
                    Severity::Error,
                    "forbidden",
                    format!(
                        "The call to {remote} was refused with {said} by {who}: your account \
                         may not call this destination, or that server does not accept calls \
                         from where you are."
                    ),
                    "Check with the provider that the account may call this number (prefix, \
                     international, credit); a proxy also refuses calls from phones that are \
                     not registered with it.",
                )
                .with_evidence(base)
            }
            404 | 604 => Finding::new(
                NOT_FOUND,
                Severity::Error,
                "not found",
                format!("{remote} does not exist there ({said}): the number or user is unknown."),
                "Check the number or address you dialled.",
            )
            .with_evidence(base),
            408 => Finding::new(
                NO_RESPONSE,
                Severity::Warning,
                "no response",
                format!(
                    "Nobody answered for {remote} ({said}): the server got no answer from the \
                     callee's phone, which is offline or behind a NAT that forgot it."
                ),
                "Try again later; the callee's phone needs to be online and registered.",
            )
            .with_evidence(base),
            480 => Finding::new(
                UNAVAILABLE,
                Severity::Info,
                "unavailable",
                format!(
                    "{remote} cannot take calls right now ({said}): the phone is not \
                     registered, switched off, or set to do-not-disturb."
                ),
                "Try again later.",
            )
            .with_evidence(base),
            486 | 600 => Finding::new(
                BUSY,
                Severity::Info,
                "busy",
                format!("{remote} is busy ({said}): it is in another call and did not take yours."),
                "Try again later.",
            )
            .with_evidence(base),
            603 => Finding::new(
                DECLINED,
                Severity::Info,
                "declined",
                format!("{remote} declined the call ({said})."),
                "Nothing to fix: the callee refused it.",
            )
            .with_evidence(base),
            _ => Finding::new(
                FAILED,
                Severity::Error,
                "call failed",
                format!(
                    "The call to {remote} failed: {}.",
                    status_in_words(code, response.as_ref().map_or(&reason, |r| &r.reason))
                ),
                "Retry; if it stays, the response code tells the provider what went wrong.",
            )
            .with_evidence(base),
        };
        self.raise(finding.on_call(call));
    }

    /// We refused an incoming offer before a call began (no codec in common).
    pub(super) fn offer_refused(&mut self, call_id: &str) {
        let Some(dialog) = self.dialog(call_id).cloned() else {
            return;
        };
        let Some(response) = dialog.final_response.clone() else {
            return;
        };
        let caller = dialog
            .their_invite
            .as_ref()
            .map_or_else(|| response.peer.to_string(), |i| i.peer.to_string());
        let said = format!("{} {}", response.code.unwrap_or(0), response.reason);
        let evidence = Evidence::new()
            .with("response", &said)
            .with("from", &caller);
        let finding = self
            .media_refusal(&caller, &said, &dialog, true, evidence)
            .about(super::REFUSED_OFFER);
        self.raise(finding);
    }

    /// A 488/606: no common codec (both lists), or the offer refused for another reason
    /// (SRTP, usually).
    fn media_refusal(
        &self,
        remote: &str,
        said: &str,
        dialog: &super::Dialog,
        incoming: bool,
        evidence: Evidence,
    ) -> Finding {
        let ours: Vec<String> = if incoming {
            self.setup.codecs.clone()
        } else {
            dialog
                .ours
                .as_ref()
                .map(|s| s.codecs.clone())
                .unwrap_or_else(|| self.setup.codecs.clone())
        };
        let theirs: Option<Vec<String>> = if incoming {
            dialog
                .their_invite
                .as_ref()
                .and_then(|i| i.sdp.as_ref())
                .map(|s| s.codecs.clone())
        } else {
            dialog
                .final_response
                .as_ref()
                .and_then(|r| r.sdp.as_ref())
                .map(|s| s.codecs.clone())
        };
        let common = theirs.as_ref().is_some_and(|theirs| {
            theirs
                .iter()
                .any(|t| ours.iter().any(|o| o.eq_ignore_ascii_case(t)))
        });
        let evidence = evidence
            .with("our_codecs", ours.join(", "))
            .with_some("their_codecs", theirs.as_ref().map(|t| t.join(", ")));
        let theirs_text = match &theirs {
            Some(theirs) => listing(theirs),
            None => "codecs it did not name".to_string(),
        };
        if common {
            let crypto_ours = dialog.ours.as_ref().is_some_and(|s| s.crypto);
            return Finding::new(
                MEDIA_REFUSED,
                Severity::Error,
                "media refused",
                format!(
                    "{remote} refused the media of the call ({said}) although both sides have \
                     {} in common: it does not accept the rest of the offer{}.",
                    listing(&common_codecs(&ours, theirs.as_deref().unwrap_or_default())),
                    if crypto_ours {
                        " (likely the SRTP keys: it wants plain RTP, or another key exchange)"
                    } else {
                        ""
                    }
                ),
                "Try `srtp = \"off\"` or `\"optional\"` in the account; ask the other side which \
                 media it accepts.",
            )
            .with_evidence(evidence);
        }
        let message = if incoming {
            format!(
                "sipterm refused the call from {remote} ({said}): it offered {theirs_text}, and \
                 sipterm speaks {}; no codec in common.",
                listing(&ours)
            )
        } else {
            format!(
                "{remote} refused the call ({said}): sipterm offered {} and it takes {}; no \
                 codec in common.",
                listing(&ours),
                theirs_text
            )
        };
        Finding::new(
            CODEC_MISMATCH,
            Severity::Error,
            "no common codec",
            message,
            "Add a codec both sides have to `codecs` in the account (PCMU and PCMA are the \
             most widely supported), or enable one of ours on the other side.",
        )
        .with_evidence(evidence)
    }
}

fn common_codecs(ours: &[String], theirs: &[String]) -> Vec<String> {
    ours.iter()
        .filter(|o| theirs.iter().any(|t| t.eq_ignore_ascii_case(o)))
        .cloned()
        .collect()
}

/// A SIP status in plain words, e.g. "503 Service Unavailable (the server is overloaded or
/// down for maintenance)".
pub fn status_in_words(code: u16, reason: &str) -> String {
    let meaning = match code {
        400 => "the server could not read the request",
        401 | 407 => "the server wants a password",
        402 => "payment required",
        403 => "the server refuses it",
        404 => "no such user or number",
        405 => "the server does not allow that method",
        408 => "no answer in time",
        410 => "the user moved away for good",
        413 | 414 => "the request is too large for the server",
        415 => "the server cannot read the body",
        480 => "the callee is not available",
        481 => "the server does not know this call",
        482 | 483 => "the request looped or went through too many servers",
        484 => "the number is incomplete",
        486 | 600 => "busy",
        500 => "the server had an internal error",
        501 => "the server does not implement that",
        502 => "a server on the way got a bad answer from the next one",
        503 => "the server is overloaded or down for maintenance",
        504 => "a server on the way timed out",
        603 => "declined",
        _ => "",
    };
    if meaning.is_empty() {
        format!("{code} {reason}")
    } else {
        format!("{code} {reason} ({meaning})")
    }
}
