//! The user agent's side of instant messages, presence, busy lamps and the voicemail
//! indicator: it wires the sans-IO machines of `sip::im` and `sip::event` to transactions,
//! routing and digest authentication, and turns what they learn into `UaEvent`s.

use std::collections::HashMap;
use std::time::Instant;

use super::send::NextHop;
use super::{CallState, Owner, Role, UaEvent, UserAgent};
use crate::sip::event::notifier::{Notifier, OutgoingNotify};
use crate::sip::event::presence::{self, DialogTracker, OwnState};
use crate::sip::event::publication::Publication;
use crate::sip::event::subscription::{Subscription, SubscriptionOutput, SubscriptionParams};
use crate::sip::event::{Availability, Package, mwi};
use crate::sip::im;
use crate::sip::message::{Method, Request, Response};
use crate::sip::transaction::{Destination, TsxId};
use crate::sip::uri::Uri;

/// Contacts watched at once per account (two subscriptions each).
pub const MAX_WATCHED: usize = 200;
/// Instant messages waiting for their response at once.
pub const MAX_MESSAGES_IN_FLIGHT: usize = 64;
/// Digest challenges answered per request before giving up (a wrong password must not loop).
const MAX_AUTH_TRIES: u8 = 2;

/// Who may subscribe to our presence and dialog state (the account's `watchers` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatcherPolicy {
    /// Nobody: SUBSCRIBEs get 403.
    None,
    /// Only the addresses in `MessagingPolicy::contacts`.
    #[default]
    Contacts,
    /// Anyone who may send us requests at all (`accept_from`).
    Any,
}

/// The account's messaging and presence keys.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessagingPolicy {
    /// Publish our presence and dialog state (RFC 3903) to the account's server.
    pub publish: bool,
    /// Subscribe to our voicemail's message-summary (RFC 3842) at our address of record.
    pub mwi_subscribe: bool,
    pub watchers: WatcherPolicy,
    /// `user@host` of our contacts, lower-case: who counts as a contact for `watchers`.
    pub contacts: Vec<String>,
}

/// A client transaction of this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Job {
    Message(u64),
    Subscription(u64),
    Publication(Package),
    /// A NOTIFY of ours to the watcher whose dialog has this Call-ID.
    Notify(String),
}

struct Watched {
    /// As the user gave it (the front end's key).
    target: String,
    subscription: Subscription,
    tracker: DialogTracker,
    auth_tries: u8,
}

#[derive(Default)]
pub(super) struct Messaging {
    next_id: u64,
    /// MESSAGE requests waiting for a response: id -> (request as built, target, auth tries).
    messages: HashMap<u64, (Request, String, u8)>,
    subscriptions: HashMap<u64, Watched>,
    publications: Vec<(Publication, u8)>,
    notifier: Notifier,
    own: OwnState,
    /// The last availability reported per watched target (one event per change).
    lamps: HashMap<String, (Availability, Option<String>)>,
    started: bool,
}

impl Messaging {
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.subscriptions
            .values()
            .filter_map(|w| w.subscription.poll_timeout())
            .chain(
                self.publications
                    .iter()
                    .filter_map(|(p, _)| p.poll_timeout()),
            )
            .chain(self.notifier.poll_timeout())
            .min()
    }
}

fn user_host(uri: &Uri) -> String {
    match &uri.user {
        Some(user) => format!("{}@{}", user, uri.host_unbracketed()).to_ascii_lowercase(),
        None => uri.host_unbracketed().to_ascii_lowercase(),
    }
}

impl UserAgent {
    /// Where requests about our own address go (PUBLISH, our voicemail SUBSCRIBE): the
    /// outbound proxy, else the registrar, else the address's own host.
    fn server_hop(&self) -> NextHop {
        match (
            &self.config.account.outbound_proxy,
            &self.config.account.registrar,
        ) {
            (None, Some(registrar)) => NextHop::Uri(registrar.clone()),
            _ => NextHop::OutsideDialog,
        }
    }

    fn entity(&self) -> String {
        self.config.account.aor.to_string()
    }

    // ------------------------------------------------------------- commands

    /// Sends an instant message; `MessageQueued` now, `MessageStatus` when it is answered.
    pub(super) fn send_message(&mut self, target: Uri, text: String, now: Instant) {
        if self.messaging.messages.len() >= MAX_MESSAGES_IN_FLIGHT {
            self.events.push_back(UaEvent::Error {
                message: "too many messages waiting for an answer; try again shortly".into(),
            });
            return;
        }
        let call_id = self.ids.call_id();
        let tag = self.ids.tag();
        let from = self.local_name_addr();
        let request = match im::build(&target, &from, &tag, &call_id, &text) {
            Ok(request) => request,
            Err(e) => {
                self.events.push_back(UaEvent::Error {
                    message: format!("message to {target}: {e}"),
                });
                return;
            }
        };
        self.messaging.next_id += 1;
        let id = self.messaging.next_id;
        let to = target.to_string();
        self.events.push_back(UaEvent::MessageQueued {
            id,
            to: to.clone(),
            text: im::sanitize(&text),
        });
        self.messaging.messages.insert(id, (request.clone(), to, 0));
        self.send_request(
            request,
            NextHop::OutsideDialog,
            Owner::Messaging(Job::Message(id)),
            now,
        );
    }

    /// Watches `target`'s presence and dialog state (busy lamp).
    pub(super) fn watch(&mut self, target: Uri, now: Instant) {
        let key = target.to_string();
        if self
            .messaging
            .subscriptions
            .values()
            .any(|w| w.target == key && w.subscription.is_wanted())
        {
            return;
        }
        if self.messaging.subscriptions.len() >= MAX_WATCHED * 2 {
            self.events.push_back(UaEvent::Error {
                message: format!("watching too many contacts (at most {MAX_WATCHED})"),
            });
            return;
        }
        for package in [Package::Presence, Package::Dialog] {
            self.subscribe(key.clone(), target.clone(), package, now);
        }
    }

    fn subscribe(&mut self, key: String, resource: Uri, package: Package, now: Instant) -> u64 {
        let params = SubscriptionParams {
            package,
            resource,
            from: self.local_name_addr(),
            expires: crate::sip::event::subscription::DEFAULT_EXPIRES,
        };
        let mut subscription = Subscription::new(params, &mut self.ids);
        let mut out = Vec::new();
        subscription.start(&self.default_contact(), &mut self.ids, &mut out);
        self.messaging.next_id += 1;
        let id = self.messaging.next_id;
        self.messaging.subscriptions.insert(
            id,
            Watched {
                target: key,
                subscription,
                tracker: DialogTracker::default(),
                auth_tries: 0,
            },
        );
        self.subscription_outputs(id, out, now);
        id
    }

    pub(super) fn unwatch(&mut self, target: &str, now: Instant) {
        let ids: Vec<u64> = self
            .messaging
            .subscriptions
            .iter()
            .filter(|(_, w)| w.target == target)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            let mut out = Vec::new();
            if let Some(w) = self.messaging.subscriptions.get_mut(&id) {
                w.subscription.stop(&mut out);
            }
            self.subscription_outputs(id, out, now);
        }
        self.messaging.lamps.remove(target);
    }

    /// After the first successful registration: publish our state, subscribe to voicemail.
    pub(super) fn messaging_registered(&mut self, now: Instant) {
        if self.messaging.started {
            return;
        }
        self.messaging.started = true;
        let aor = self.config.account.aor.clone();
        if self.config.messaging.publish {
            for package in [Package::Presence, Package::Dialog] {
                let publication = Publication::new(
                    package,
                    aor.clone(),
                    self.local_name_addr(),
                    self.ids.call_id(),
                    self.ids.tag(),
                );
                self.messaging.publications.push((publication, 0));
            }
            self.publish_own_state(now);
        }
        if self.config.messaging.publish {
            // Busy lamps of the account's contacts.
            let contacts: Vec<Uri> = self
                .config
                .messaging
                .contacts
                .iter()
                .take(MAX_WATCHED)
                .filter_map(|c| format!("sip:{c}").parse::<Uri>().ok())
                .collect();
            for contact in contacts {
                self.watch(contact, now);
            }
        }
        if self.config.messaging.mwi_subscribe {
            let key = format!("voicemail:{aor}");
            let id = self.subscribe(key, aor, Package::MessageSummary, now);
            tracing::debug!(id, "subscribed to our voicemail's message-summary");
        }
    }

    /// Leaving: unsubscribe, unpublish (best effort, nothing waits for them).
    pub(super) fn messaging_shutdown(&mut self, now: Instant) {
        let targets: Vec<String> = self
            .messaging
            .subscriptions
            .values()
            .map(|w| w.target.clone())
            .collect();
        for target in targets {
            self.unwatch(&target, now);
        }
        let hop = self.server_hop();
        let removals: Vec<(Package, Request)> = self
            .messaging
            .publications
            .iter_mut()
            .filter_map(|(p, _)| Some((p.package(), p.remove()?)))
            .collect();
        for (package, request) in removals {
            self.send_request(
                request,
                hop.clone(),
                Owner::Messaging(Job::Publication(package)),
                now,
            );
        }
    }

    // ------------------------------------------------------------- our state

    fn current_own_state(&self) -> OwnState {
        OwnState {
            dnd: self.config.calls.dnd.is_some(),
            calls: self
                .calls
                .iter()
                .filter_map(|c| {
                    let state = match c.state {
                        CallState::Confirmed | CallState::Held => "confirmed",
                        CallState::Terminated => return None,
                        _ => "early",
                    };
                    Some((c.id, state, c.role == Role::Caller))
                })
                .collect(),
        }
    }

    /// Calls or do-not-disturb changed: tell our watchers and the presence server.
    pub(super) fn own_state_changed(&mut self, now: Instant) {
        let state = self.current_own_state();
        if state == self.messaging.own {
            return;
        }
        self.messaging.own = state;
        let entity = self.entity();
        let notifies = self
            .messaging
            .notifier
            .notify_all(&self.messaging.own, &entity, now);
        for notify in notifies {
            self.send_watcher_notify(notify, now);
        }
        self.publish_own_state(now);
    }

    fn publish_own_state(&mut self, now: Instant) {
        let entity = self.entity();
        let pidf = self.messaging.own.pidf(&entity);
        let dialog = self.messaging.own.dialog_info(&entity, 0);
        let hop = self.server_hop();
        let mut requests = Vec::new();
        for (publication, tries) in self.messaging.publications.iter_mut() {
            let document = match publication.package() {
                Package::Dialog => dialog.clone(),
                _ => pidf.clone(),
            };
            if let Some(request) = publication.publish(document) {
                *tries = 0;
                requests.push((publication.package(), request));
            }
        }
        for (package, request) in requests {
            self.send_request(
                request,
                hop.clone(),
                Owner::Messaging(Job::Publication(package)),
                now,
            );
        }
    }

    fn send_watcher_notify(&mut self, notify: OutgoingNotify, now: Instant) {
        let call_id = notify
            .request
            .headers
            .call_id()
            .map(str::to_string)
            .unwrap_or_default();
        self.send_request(
            notify.request,
            NextHop::Uri(notify.next_hop),
            Owner::Messaging(Job::Notify(call_id)),
            now,
        );
    }

    // ------------------------------------------------------------- incoming

    /// Does an in-dialog request belong to one of our subscriptions or watchers (so
    /// `accept_from` lets it through like a call's)?
    pub(super) fn messaging_dialog_matches(&self, request: &Request) -> bool {
        match request.method {
            Method::Notify => self
                .messaging
                .subscriptions
                .values()
                .any(|w| w.subscription.matches_notify(request)),
            Method::Subscribe => self.messaging.notifier.matches(request),
            _ => false,
        }
    }

    /// Whether `source` is the account's registrar or outbound proxy (IP and port).
    fn is_from_registrar(&self, source: Destination) -> bool {
        if self
            .registration_dest
            .is_some_and(|d| d.addr == source.addr)
        {
            return true;
        }
        [
            &self.config.account.outbound_proxy,
            &self.config.account.registrar,
        ]
        .into_iter()
        .flatten()
        .any(
            |uri| match super::route::hop_for(uri, self.config.account.transport) {
                super::route::Hop::Direct(dest) => dest.addr == source.addr,
                super::route::Hop::Locate(key) => self
                    .locator
                    .destinations(&key)
                    .iter()
                    .any(|d| d.addr == source.addr),
            },
        )
    }

    /// MESSAGE, SUBSCRIBE, PUBLISH and NOTIFY (except the `refer` NOTIFYs of transfers, which
    /// belong to calls). Gives the request back when it is not ours.
    pub(super) fn messaging_request(
        &mut self,
        tsx: TsxId,
        request: Request,
        source: Destination,
        now: Instant,
    ) -> Option<Request> {
        match request.method {
            Method::Message => {
                self.incoming_message(tsx, &request, now);
                None
            }
            Method::Subscribe => {
                self.incoming_subscribe(tsx, &request, source, now);
                None
            }
            Method::Publish => {
                // We are no presence server (RFC 3903 §6: 405 with Allow).
                let mut r = self.make_response(&request, 405, None);
                r.headers.push("Allow", super::ALLOW);
                self.tsx.send_response(tsx, r, now);
                None
            }
            Method::Notify => {
                let package = request
                    .headers
                    .get("Event")
                    .and_then(crate::sip::event::Package::from_event_header);
                if package.is_none() {
                    return Some(request);
                }
                self.incoming_notify_event(tsx, &request, source, now);
                None
            }
            _ => Some(request),
        }
    }

    fn incoming_message(&mut self, tsx: TsxId, request: &Request, now: Instant) {
        match im::incoming_text(request) {
            Ok(text) => {
                let r = self.make_response(request, 200, None);
                self.tsx.send_response(tsx, r, now);
                let from = request.headers.from().ok();
                let display =
                    from.as_ref()
                        .and_then(|f| f.display_name.clone())
                        .map(|d: String| {
                            im::sanitize(&d)
                                .replace('\n', " ")
                                .chars()
                                .take(64)
                                .collect::<String>()
                        });
                let from = from.map(|f| f.uri.to_string()).unwrap_or_default();
                self.events.push_back(UaEvent::MessageReceived {
                    from: im::sanitize(&from).replace('\n', " "),
                    display,
                    text,
                });
            }
            Err(error) => {
                let code = match error {
                    im::MessageError::TooLong => 413,
                    im::MessageError::NotText(_) => 415,
                    _ => 400,
                };
                let mut r = self.make_response(request, code, None);
                if code == 415 {
                    r.headers.push("Accept", "text/plain");
                }
                self.tsx.send_response(tsx, r, now);
            }
        }
    }

    fn watcher_allowed(&self, request: &Request) -> bool {
        match self.config.messaging.watchers {
            WatcherPolicy::None => false,
            WatcherPolicy::Any => true,
            WatcherPolicy::Contacts => request.headers.from().ok().is_some_and(|from| {
                let who = user_host(&from.uri);
                self.config.messaging.contacts.contains(&who)
            }),
        }
    }

    fn incoming_subscribe(
        &mut self,
        tsx: TsxId,
        request: &Request,
        source: Destination,
        now: Instant,
    ) {
        let package = request
            .headers
            .get("Event")
            .and_then(crate::sip::event::Package::from_event_header)
            .filter(|p| *p != Package::MessageSummary);
        let Some(package) = package else {
            let mut r = self.make_response(request, 489, None);
            r.headers.push("Allow-Events", "presence, dialog");
            self.tsx.send_response(tsx, r, now);
            return;
        };
        let in_dialog = self.messaging.notifier.matches(request);
        if !in_dialog && !self.watcher_allowed(request) {
            let r = self.make_response(request, 403, None);
            self.tsx.send_response(tsx, r, now);
            return;
        }
        let tag = self.ids.tag();
        let contact = self.contact_for(source);
        let entity = self.entity();
        let answer = self.messaging.notifier.handle_subscribe(
            request,
            package,
            &tag,
            contact.clone(),
            &self.messaging.own,
            &entity,
            now,
        );
        let mut r = self.make_response(request, answer.code, Some(&tag));
        if let Some(expires) = answer.expires {
            r.headers.push("Expires", expires.to_string());
            r.headers.push("Contact", format!("<{contact}>"));
        }
        if let Some(min) = answer.min_expires {
            r.headers.push("Min-Expires", min.to_string());
        }
        self.tsx.send_response(tsx, r, now);
        if let Some(notify) = answer.notify {
            self.send_watcher_notify(notify, now);
        }
    }

    fn incoming_notify_event(
        &mut self,
        tsx: TsxId,
        request: &Request,
        source: Destination,
        now: Instant,
    ) {
        let found = self
            .messaging
            .subscriptions
            .iter()
            .find(|(_, w)| w.subscription.matches_notify(request))
            .map(|(id, _)| *id);
        if let Some(id) = found {
            let contact = self.default_contact();
            let mut out = Vec::new();
            let code = match self.messaging.subscriptions.get_mut(&id) {
                Some(w) => w
                    .subscription
                    .handle_notify(request, &contact, now, &mut out),
                None => 481,
            };
            let r = self.make_response(request, code, None);
            self.tsx.send_response(tsx, r, now);
            self.subscription_outputs(id, out, now);
            return;
        }
        // An unsolicited message-summary (RFC 3842 §4): only the account's own server may
        // light the voicemail indicator; anyone else's NOTIFY is refused and changes nothing.
        let unsolicited_mwi = request
            .headers
            .get("Event")
            .and_then(crate::sip::event::Package::from_event_header)
            == Some(Package::MessageSummary);
        if unsolicited_mwi {
            if !self.is_from_registrar(source) {
                tracing::info!(peer = %source.addr, "message-summary NOTIFY from a stranger ignored");
                let r = self.make_response(request, 403, None);
                self.tsx.send_response(tsx, r, now);
                return;
            }
            let r = self.make_response(request, 200, None);
            self.tsx.send_response(tsx, r, now);
            self.voicemail_body(&request.body);
            return;
        }
        let r = self.make_response(request, 481, None);
        self.tsx.send_response(tsx, r, now);
    }

    fn voicemail_body(&mut self, body: &[u8]) {
        if let Some(summary) = mwi::parse(body) {
            self.events.push_back(UaEvent::Voicemail {
                waiting: summary.waiting,
                new: summary.new,
                old: summary.old,
            });
        }
    }

    fn subscription_outputs(&mut self, id: u64, out: Vec<SubscriptionOutput>, now: Instant) {
        for output in out {
            match output {
                SubscriptionOutput::Send { request, next_hop } => {
                    let hop = match next_hop {
                        Some(uri) => NextHop::Uri(uri),
                        None => {
                            let is_mwi = self.messaging.subscriptions.get(&id).is_some_and(|w| {
                                w.subscription.params().package == Package::MessageSummary
                            });
                            if is_mwi {
                                self.server_hop()
                            } else {
                                NextHop::OutsideDialog
                            }
                        }
                    };
                    self.send_request(*request, hop, Owner::Messaging(Job::Subscription(id)), now);
                }
                SubscriptionOutput::Body { content_type, body } => {
                    self.notified(id, content_type.as_deref(), &body)
                }
                SubscriptionOutput::Down {
                    code,
                    reason,
                    retry_at,
                } => {
                    let Some(w) = self.messaging.subscriptions.get(&id) else {
                        continue;
                    };
                    tracing::info!(target = %w.target, ?code, %reason, retry = retry_at.is_some(), "subscription down");
                    if w.subscription.params().package != Package::MessageSummary {
                        let target = w.target.clone();
                        self.lamp(&target, Availability::Unknown, Some(reason));
                    }
                }
            }
        }
        if self
            .messaging
            .subscriptions
            .get(&id)
            .is_some_and(|w| w.subscription.is_finished())
        {
            self.messaging.subscriptions.remove(&id);
        }
    }

    fn notified(&mut self, id: u64, content_type: Option<&str>, body: &[u8]) {
        let Some(w) = self.messaging.subscriptions.get_mut(&id) else {
            return;
        };
        let target = w.target.clone();
        match w.subscription.params().package {
            Package::MessageSummary => self.voicemail_body(body),
            Package::Presence => {
                if content_type.is_some_and(|t| t != "application/pidf+xml") && !body.is_empty() {
                    return;
                }
                match presence::parse_pidf(body) {
                    Ok(info) => self.lamp(&target, info.availability, info.note),
                    Err(e) => tracing::debug!(%target, %e, "unreadable PIDF"),
                }
            }
            Package::Dialog => {
                // An empty body says nothing (a server with no dialog state published).
                if body.iter().all(u8::is_ascii_whitespace) {
                    return;
                }
                match presence::parse_dialog_info(body) {
                    Ok(info) => {
                        w.tracker.apply(info);
                        let availability = w.tracker.availability();
                        self.lamp(&target, availability, None);
                    }
                    Err(e) => tracing::debug!(%target, %e, "unreadable dialog-info"),
                }
            }
        }
    }

    /// The newest NOTIFY decides the lamp (presence and dialog state describe the same phone;
    /// waiting for the other package would show a stale state for one NOTIFY).
    fn lamp(&mut self, target: &str, availability: Availability, note: Option<String>) {
        let now = (availability, note);
        if self.messaging.lamps.get(target) == Some(&now) {
            return;
        }
        self.messaging.lamps.insert(target.to_string(), now.clone());
        self.events.push_back(UaEvent::Presence {
            contact: target.to_string(),
            availability: now.0,
            note: now.1,
        });
    }

    // ------------------------------------------------------------- responses

    pub(super) fn messaging_response(
        &mut self,
        job: Job,
        tsx: TsxId,
        response: Response,
        now: Instant,
    ) {
        let _ = tsx;
        let challenged = matches!(response.code, 401 | 407);
        match job {
            Job::Message(id) => {
                if !response.is_final() {
                    return;
                }
                if challenged
                    && let Some((request, _, tries)) = self.messaging.messages.get(&id).cloned()
                    && tries < MAX_AUTH_TRIES
                    && let Some(retry) = self.auth_retry(&request, &response)
                {
                    if let Some(entry) = self.messaging.messages.get_mut(&id) {
                        *entry = (retry.clone(), entry.1.clone(), tries + 1);
                    }
                    self.send_request(
                        retry,
                        NextHop::OutsideDialog,
                        Owner::Messaging(Job::Message(id)),
                        now,
                    );
                    return;
                }
                if let Some((_, to, _)) = self.messaging.messages.remove(&id) {
                    self.events.push_back(UaEvent::MessageStatus {
                        id,
                        to,
                        code: response.code,
                        reason: im::sanitize(&response.reason).replace('\n', " "),
                    });
                }
            }
            Job::Subscription(id) => {
                if challenged && response.is_final() {
                    let retry = self.messaging.subscriptions.get(&id).and_then(|w| {
                        (w.auth_tries < MAX_AUTH_TRIES).then(|| w.subscription.pending_request())?
                    });
                    if let Some(request) = retry
                        && let Some(next) = self.auth_retry(&request, &response)
                    {
                        let hop = match self.messaging.subscriptions.get_mut(&id) {
                            Some(w) => {
                                w.auth_tries += 1;
                                w.subscription.note_resent(&next);
                                w.subscription.next_hop()
                            }
                            None => None,
                        };
                        let hop = hop
                            .map(NextHop::Uri)
                            .unwrap_or_else(|| self.server_or_direct(id));
                        self.send_request(next, hop, Owner::Messaging(Job::Subscription(id)), now);
                        return;
                    }
                }
                let contact = self.default_contact();
                let mut out = Vec::new();
                if let Some(w) = self.messaging.subscriptions.get_mut(&id) {
                    if response.is_success() {
                        w.auth_tries = 0;
                    }
                    w.subscription
                        .handle_response(&response, &contact, now, &mut out);
                }
                self.subscription_outputs(id, out, now);
            }
            Job::Publication(package) => {
                if !response.is_final() {
                    return;
                }
                let hop = self.server_hop();
                let Some(index) = self
                    .messaging
                    .publications
                    .iter()
                    .position(|(p, _)| p.package() == package)
                else {
                    return;
                };
                if challenged
                    && let Some((publication, tries)) = self.messaging.publications.get(index)
                    && *tries < MAX_AUTH_TRIES
                    && let Some(request) = publication.pending_request()
                    && let Some(next) = self.auth_retry(&request, &response)
                {
                    if let Some((publication, tries)) = self.messaging.publications.get_mut(index) {
                        *tries += 1;
                        publication.note_resent(&next);
                    }
                    self.send_request(next, hop, Owner::Messaging(Job::Publication(package)), now);
                    return;
                }
                let next = self
                    .messaging
                    .publications
                    .get_mut(index)
                    .and_then(|(p, _)| p.handle_response(&response, now));
                if let Some(next) = next {
                    self.send_request(next, hop, Owner::Messaging(Job::Publication(package)), now);
                }
            }
            Job::Notify(call_id) => {
                if response.is_final() && !response.is_success() {
                    self.messaging.notifier.notify_failed(&call_id);
                }
            }
        }
    }

    fn server_or_direct(&self, id: u64) -> NextHop {
        let is_mwi = self
            .messaging
            .subscriptions
            .get(&id)
            .is_some_and(|w| w.subscription.params().package == Package::MessageSummary);
        if is_mwi {
            self.server_hop()
        } else {
            NextHop::OutsideDialog
        }
    }

    /// A request of this module got no response (timeout, transport error, no route).
    pub(super) fn messaging_failed(&mut self, job: Job, code: u16, reason: &str, now: Instant) {
        match job {
            Job::Message(id) => {
                if let Some((_, to, _)) = self.messaging.messages.remove(&id) {
                    self.events.push_back(UaEvent::MessageStatus {
                        id,
                        to,
                        code,
                        reason: reason.to_string(),
                    });
                }
            }
            Job::Subscription(id) => {
                let mut out = Vec::new();
                if let Some(w) = self.messaging.subscriptions.get_mut(&id) {
                    w.subscription.handle_failure(code, reason, now, &mut out);
                }
                self.subscription_outputs(id, out, now);
            }
            Job::Publication(package) => {
                if let Some((p, _)) = self
                    .messaging
                    .publications
                    .iter_mut()
                    .find(|(p, _)| p.package() == package)
                {
                    p.handle_failure(now);
                }
            }
            Job::Notify(call_id) => self.messaging.notifier.notify_failed(&call_id),
        }
    }

    pub(super) fn messaging_timeouts(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .messaging
            .subscriptions
            .iter()
            .filter(|(_, w)| w.subscription.poll_timeout().is_some_and(|at| at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let contact = self.default_contact();
            let mut out = Vec::new();
            if let Some(w) = self.messaging.subscriptions.get_mut(&id) {
                w.auth_tries = 0;
                w.subscription
                    .handle_timeout(&contact, &mut self.ids, now, &mut out);
            }
            self.subscription_outputs(id, out, now);
        }
        let hop = self.server_hop();
        let mut requests = Vec::new();
        for (publication, tries) in self.messaging.publications.iter_mut() {
            if publication.poll_timeout().is_some_and(|at| at <= now)
                && let Some(request) = publication.handle_timeout(now)
            {
                *tries = 0;
                requests.push((publication.package(), request));
            }
        }
        for (package, request) in requests {
            self.send_request(
                request,
                hop.clone(),
                Owner::Messaging(Job::Publication(package)),
                now,
            );
        }
        if self
            .messaging
            .notifier
            .poll_timeout()
            .is_some_and(|at| at <= now)
        {
            let entity = self.entity();
            let last = self
                .messaging
                .notifier
                .handle_timeout(&self.messaging.own, &entity, now);
            for notify in last {
                self.send_watcher_notify(notify, now);
            }
        }
    }
}
