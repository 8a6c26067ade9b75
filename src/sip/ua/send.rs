//! Sending requests: the next hop (RFC 3261 §8.1.2, §12.2.1.1), its destinations (RFC 3263,
//! resolved by the driver when it is a name) with failover to the next one on a timeout, a
//! transport error or a 503 (RFC 3263 §4.3), and the local address each destination sees in
//! Via, Contact and SDP. Part of the user agent; owns no I/O.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::route::{Hop, HopKey, LOOKUP_DEADLINE, Lookup, MAX_PARKED, hop_for};
use super::{Owner, UaEvent, UserAgent, host_port, ip_text, transport_token};
use crate::sdp;
use crate::sip::header::NameAddr;
use crate::sip::message::{Method, Request};
use crate::sip::transaction::{Destination, TransportKind, TsxId};
use crate::sip::uri::{Scheme, Uri};

/// How often the local address towards the registrar is checked while registered on a
/// wildcard listen address (a laptop that moves to another network gets a new one).
pub const ROUTE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Which local IP the system would send from towards a destination. The driver asks the kernel
/// (a connected UDP socket sends nothing); tests give a table. Asked only when sipterm listens
/// on a wildcard address.
pub trait LocalRoutes: Send {
    fn local_ip_toward(&self, dest: IpAddr) -> Option<IpAddr>;
}

/// How a request finds its next hop.
#[derive(Debug, Clone)]
pub(super) enum NextHop {
    /// Outside a dialog: the outbound proxy as a preloaded Route (RFC 3261 §8.1.2), else a
    /// Route already in the request, else the Request-URI.
    OutsideDialog,
    /// Inside a dialog: its first route, else its remote target (`Dialog::next_hop_uri`).
    Uri(Uri),
}

/// A request waiting for the driver's DNS answer.
#[derive(Debug)]
pub(super) struct Parked {
    key: HopKey,
    since: Instant,
    item: ParkedItem,
}

#[derive(Debug)]
enum ParkedItem {
    Request {
        owner: Owner,
        request: Request,
    },
    /// The ACK for a 2xx: no transaction, sent once the destination is known.
    Ack {
        call: u64,
        request: Request,
    },
}

/// What a client transaction needs for failover and for keeping the DNS answer in order.
#[derive(Debug)]
pub(super) struct Alternates {
    /// The request as the UA built it (no Via yet, Contact and SDP not yet localised).
    request: Request,
    key: Option<HopKey>,
    /// Where this attempt went.
    dest: Destination,
    /// Where the next attempts go, in order.
    rest: Vec<Destination>,
}

impl UserAgent {
    /// Starts a client transaction for `request` once its destination is known: at once for an
    /// IP literal or a cached name, else after the driver resolved the name. `owner` hears of
    /// the outcome; a request that cannot be routed at all fails through `owner_failed`.
    pub(super) fn send_request(
        &mut self,
        mut request: Request,
        next_hop: NextHop,
        owner: Owner,
        now: Instant,
    ) {
        let hop_uri = match next_hop {
            NextHop::Uri(uri) => uri,
            NextHop::OutsideDialog => match self.config.account.outbound_proxy.clone() {
                Some(proxy) if !request.headers.contains("Route") => {
                    let mut route = proxy.clone();
                    if route.param("lr").is_none() {
                        route.set_param("lr", None);
                    }
                    request.headers.push("Route", format!("<{route}>"));
                    proxy
                }
                _ => first_route(&request).unwrap_or_else(|| request.uri.clone()),
            },
        };
        match hop_for(&hop_uri, self.config.account.transport) {
            Hop::Direct(dest) => self.dispatch(owner, request, None, vec![dest], now),
            Hop::Locate(key) => match self.locator.lookup(&key, now) {
                Lookup::Ready(targets) => self.dispatch(owner, request, Some(key), targets, now),
                Lookup::Pending => self.park(key, ParkedItem::Request { owner, request }, now),
            },
        }
    }

    /// Sends the ACK for a 2xx (no transaction) along the dialog's route.
    pub(super) fn send_ack(&mut self, call: u64, ack: Request, hop: Uri, now: Instant) {
        match hop_for(&hop, self.config.account.transport) {
            Hop::Direct(dest) => self.push_ack(call, ack, dest),
            Hop::Locate(key) => match self.locator.lookup(&key, now) {
                Lookup::Ready(targets) => {
                    if let Some(&dest) = targets.first() {
                        self.push_ack(call, ack, dest);
                    }
                }
                Lookup::Pending => self.park(key, ParkedItem::Ack { call, request: ack }, now),
            },
        }
    }

    fn push_ack(&mut self, call: u64, mut ack: Request, dest: Destination) {
        self.stamp_via(&mut ack, dest);
        if let Some(c) = self.call_mut(call) {
            c.ack = Some((ack.clone(), dest));
        }
        self.push_raw(dest, ack);
    }

    fn park(&mut self, key: HopKey, item: ParkedItem, now: Instant) {
        if self.parked.len() >= MAX_PARKED {
            let reason = format!("too many requests wait for DNS; {} not tried", key.host);
            self.parked_failed(item, &reason, now);
            return;
        }
        tracing::debug!(host = %key, "waiting for DNS");
        self.parked.push(Parked {
            key,
            since: now,
            item,
        });
    }

    /// The driver's answer for `key`: destinations in the order to try and how long they
    /// hold, or why there are none. Requests waiting for it go on (or fail with the reason).
    pub fn handle_resolved(
        &mut self,
        key: &HopKey,
        result: Result<(Vec<Destination>, Duration), String>,
        now: Instant,
    ) {
        self.clock = Some(now);
        match &result {
            Ok((targets, ttl)) => {
                self.locator.resolved(key, targets, *ttl, now);
                if self.trusted_hops.contains(key) {
                    self.guard.trust(targets.iter().map(|d| d.addr.ip()));
                }
            }
            Err(_) => self.locator.failed(key),
        }
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.key == *key);
        self.parked = waiting;
        for parked in ready {
            match &result {
                Ok((targets, _)) if !targets.is_empty() => match parked.item {
                    ParkedItem::Request { owner, request } => {
                        self.dispatch(owner, request, Some(key.clone()), targets.clone(), now)
                    }
                    ParkedItem::Ack { call, request } => self.push_ack(call, request, targets[0]),
                },
                Ok(_) => {
                    let reason = format!("{}: no address to send to", key.host);
                    self.parked_failed(parked.item, &reason, now);
                }
                Err(reason) => self.parked_failed(parked.item, reason, now),
            }
        }
        self.drain_tsx(now);
    }

    /// Host names the driver has to resolve (answer each with `handle_resolved`).
    pub fn poll_resolve(&mut self) -> Option<HopKey> {
        self.locator.poll_query()
    }

    /// Fails requests whose lookup never came back.
    pub(super) fn parked_timeouts(&mut self, now: Instant) {
        if !self.parked.iter().any(|p| now >= p.since + LOOKUP_DEADLINE) {
            return;
        }
        let (late, waiting): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| now >= p.since + LOOKUP_DEADLINE);
        self.parked = waiting;
        for parked in late {
            let reason = format!("DNS lookup of {} did not finish", parked.key.host);
            self.locator.failed(&parked.key);
            self.parked_failed(parked.item, &reason, now);
        }
    }

    pub(super) fn parked_poll_timeout(&self) -> Option<Instant> {
        self.parked.iter().map(|p| p.since + LOOKUP_DEADLINE).min()
    }

    fn parked_failed(&mut self, item: ParkedItem, reason: &str, now: Instant) {
        tracing::warn!("{reason}");
        match item {
            ParkedItem::Request { owner, .. } => {
                self.owner_failed(owner, 503, &format!("Cannot resolve {reason}"), now)
            }
            ParkedItem::Ack { call, .. } => self.events.push_back(UaEvent::Error {
                message: format!("call {call}: ACK not sent: {reason}"),
            }),
        }
    }

    /// Sends `request` to the first of `targets`; the others wait for failover.
    fn dispatch(
        &mut self,
        owner: Owner,
        request: Request,
        key: Option<HopKey>,
        targets: Vec<Destination>,
        now: Instant,
    ) {
        if !self.still_wanted(&owner) {
            // E.g. an INVITE that waited for DNS while the user hung up.
            return;
        }
        let mut targets = targets.into_iter();
        let Some(dest) = targets.next() else {
            self.owner_failed(owner, 503, "No route to the destination", now);
            return;
        };
        let rest: Vec<Destination> = targets.collect();
        let mut sent = request.clone();
        self.localise(&owner, &mut sent, dest);
        self.stamp_via(&mut sent, dest);
        if !sent.headers.contains("User-Agent") {
            sent.headers
                .push("User-Agent", self.config.user_agent.clone());
        }
        let tsx = self.tsx.send_request(sent.clone(), dest, now);
        self.owners.insert(tsx, owner.clone());
        if key.is_some() || !rest.is_empty() {
            self.alternates.insert(
                tsx,
                Alternates {
                    request,
                    key,
                    dest,
                    rest,
                },
            );
        }
        self.note_sent(&owner, tsx, sent, dest);
    }

    /// After a timeout, a transport error or a 503 of `tsx`: sends the request to the next
    /// destination, if there is one. True when it did (the owner hears nothing yet).
    pub(super) fn failover(&mut self, tsx: TsxId, now: Instant) -> bool {
        let Some(alternates) = self.alternates.remove(&tsx) else {
            return false;
        };
        if let Some(key) = &alternates.key {
            self.locator.demote(key, alternates.dest);
        }
        let Some(next) = alternates.rest.first().copied() else {
            return false;
        };
        let Some(owner) = self.owners.get(&tsx).cloned() else {
            return false;
        };
        if !self.still_wanted(&owner) {
            return false;
        }
        self.owners.remove(&tsx);
        tracing::info!(failed = %alternates.dest.addr, next = %next.addr, "no answer; trying the next server");
        self.dispatch(
            owner,
            alternates.request,
            alternates.key,
            alternates.rest,
            now,
        );
        true
    }

    /// `tsx` got a response from its destination: that server is alive and goes first next
    /// time. On a final response the failover state goes.
    pub(super) fn answered(&mut self, tsx: TsxId, is_final: bool) {
        let Some(alternates) = self.alternates.get(&tsx) else {
            return;
        };
        if let Some(key) = &alternates.key {
            self.locator.promote(key, alternates.dest);
        }
        if is_final {
            self.alternates.remove(&tsx);
        }
    }

    /// Whether a failed attempt is still worth another destination.
    fn still_wanted(&self, owner: &Owner) -> bool {
        match owner {
            // A BYE goes out even though the call already ended for the user.
            Owner::Registration | Owner::Call(_, Method::Bye) | Owner::Messaging(_) => true,
            Owner::Call(id, Method::Invite) => self.calls.iter().any(|c| {
                c.id == *id && !c.cancel_wanted && c.state != super::CallState::Terminated
            }),
            Owner::Call(id, _) | Owner::Reinvite(id) => self.calls.iter().any(|c| c.id == *id),
        }
    }

    /// Records what went where: the registration's flow, a call's INVITE (for CANCEL).
    fn note_sent(&mut self, owner: &Owner, tsx: TsxId, sent: Request, dest: Destination) {
        match owner {
            Owner::Registration => self.registration_dest = Some(dest),
            Owner::Call(id, Method::Invite) => {
                if let Some(call) = self.call_mut(*id) {
                    call.invite_tsx = Some(tsx);
                    call.invite = Some(sent);
                    call.invite_dest = Some(dest);
                }
            }
            Owner::Reinvite(id) => {
                if let Some(call) = self.call_mut(*id) {
                    call.reinvite_tsx = Some(tsx);
                    call.invite = Some(sent);
                    call.invite_dest = Some(dest);
                }
            }
            Owner::Call(..) | Owner::Messaging(_) => {}
        }
    }

    /// Our addresses as `dest` sees them: the REGISTER's and the INVITE's Contact, and the
    /// SDP of an INVITE whose media address is left to us (a wildcard RTP socket).
    fn localise(&mut self, owner: &Owner, request: &mut Request, dest: Destination) {
        match owner {
            Owner::Registration => {
                let contact = self.contact_toward(dest);
                set_contact_uri(request, &contact);
                self.registration_local = Some(self.local_ip_for(Some(dest)));
                if let Some(reg) = self.registration.as_mut() {
                    reg.set_contact(contact);
                }
            }
            Owner::Call(id, Method::Invite) => {
                let contact = self.contact_toward(dest);
                let media_ip = self.local_ip_for(Some(dest));
                let Some(call) = self.call_mut(*id) else {
                    return;
                };
                if call.dialog.is_some() && call.ack_done {
                    return;
                }
                set_contact_uri(request, &contact);
                call.local_contact = Some(contact);
                if let Some(from) = self.first_run_from(request, media_ip) {
                    request.headers.set("From", from);
                }
                let Some(call) = self.call_mut(*id) else {
                    return;
                };
                if call.media_auto {
                    call.media.address = media_ip;
                    request.body = sdp::build_offer(&call.media).into_bytes();
                }
            }
            _ => {}
        }
    }

    /// The first-run account (no registrar, address of record at a loopback address) calling
    /// another host: its From names the address that host can call back (the local one towards
    /// it), not 127.0.0.1. None: the From stays as it is.
    fn first_run_from(&self, request: &Request, local_ip: IpAddr) -> Option<String> {
        let aor = &self.config.account.aor;
        let loopback_aor = aor
            .host_unbracketed()
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        if self.registration.is_some() || !loopback_aor || local_ip.is_loopback() {
            return None;
        }
        let mut from = NameAddr::parse("From", request.headers.get("From")?).ok()?;
        from.uri.host = ip_text(local_ip);
        let port = self.config.local.port();
        from.uri.port = (port != 5060).then_some(port);
        Some(from.to_string())
    }

    /// Puts our Via (new branch) on top and Max-Forwards when missing.
    pub(super) fn stamp_via(&mut self, request: &mut Request, dest: Destination) {
        let via = format!(
            "SIP/2.0/{} {};branch={};rport",
            transport_token(dest.transport),
            host_port(self.sent_by(dest)),
            self.ids.branch()
        );
        request.headers.push_front("Via", via);
        if !request.headers.contains("Max-Forwards") {
            request.headers.push("Max-Forwards", "70");
        }
    }

    /// Via sent-by towards `dest`: over TLS our TLS listener when we have one (RFC 3261
    /// §18.2.2: where a response goes when the connection is gone), else the public address
    /// when we know one (STUN, or the registrar's `received`/`rport`), else the local address.
    fn sent_by(&self, dest: Destination) -> SocketAddr {
        match self.tls_local {
            Some(tls) if dest.transport == TransportKind::Tls => {
                SocketAddr::new(self.local_ip_for(Some(dest)), tls.port())
            }
            _ => self.public.unwrap_or_else(|| {
                SocketAddr::new(self.local_ip_for(Some(dest)), self.config.local.port())
            }),
        }
    }

    /// The local IP that routes to `dest`: the address we listen on, or when that is a
    /// wildcard the one the system picks towards `dest` (never 0.0.0.0). Loopback only when
    /// nothing else is known.
    pub(super) fn local_ip_for(&self, dest: Option<Destination>) -> IpAddr {
        let bound = self.config.local.ip();
        if !bound.is_unspecified() {
            return bound;
        }
        let toward = dest.map(|d| d.addr.ip());
        if let Some(ip) = toward
            .and_then(|t| self.routes.as_ref()?.local_ip_toward(t))
            .filter(|ip| !ip.is_unspecified())
        {
            return ip;
        }
        match toward {
            Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// Our Contact for requests and dialogs whose messages go to `dest`.
    pub(super) fn contact_toward(&self, dest: Destination) -> Uri {
        self.contact_at(Some(dest))
    }

    /// Our Contact before we know where a request goes (rewritten by `localise`).
    pub(super) fn default_contact(&self) -> Uri {
        self.contact_at(self.registration_dest)
    }

    fn contact_at(&self, dest: Option<Destination>) -> Uri {
        let account = &self.config.account;
        let addr = match (self.public, self.tls_local) {
            (Some(public), _) => public,
            (None, Some(tls)) if account.transport == TransportKind::Tls => {
                SocketAddr::new(self.local_ip_for(dest), tls.port())
            }
            _ => SocketAddr::new(self.local_ip_for(dest), self.config.local.port()),
        };
        let mut uri = Uri {
            scheme: if account.transport == TransportKind::Tls {
                Scheme::Sips
            } else {
                Scheme::Sip
            },
            user: account.aor.user.clone(),
            host: ip_text(addr.ip()),
            port: Some(addr.port()),
            ..Uri::default()
        };
        if account.transport == TransportKind::Tcp {
            uri.set_param("transport", Some("tcp"));
        }
        uri
    }

    /// The Contact of a dialog whose requests reach us from `source`: a call that came in over
    /// TLS to a non-TLS account gets our TLS listener (`sips:`), so the peer's in-dialog
    /// requests come back over TLS to a port that speaks it.
    pub(crate) fn contact_for(&self, source: Destination) -> Uri {
        match self.tls_local {
            Some(tls)
                if source.transport == TransportKind::Tls
                    && self.config.account.transport != TransportKind::Tls =>
            {
                Uri {
                    scheme: Scheme::Sips,
                    user: self.config.account.aor.user.clone(),
                    host: ip_text(self.local_ip_for(Some(source))),
                    port: Some(tls.port()),
                    ..Uri::default()
                }
            }
            _ => self.contact_toward(source),
        }
    }

    /// While registered on a wildcard address: has the local address towards the registrar
    /// changed (another network)? Then the public address learned on the old one is void and
    /// the binding is renewed with the new Contact.
    pub(super) fn check_route(&mut self, now: Instant) {
        let Some(at) = self.route_check_at else {
            return;
        };
        if now < at {
            return;
        }
        self.route_check_at = Some(now + ROUTE_CHECK_INTERVAL);
        let (Some(dest), Some(old)) = (self.registration_dest, self.registration_local) else {
            return;
        };
        if self.registration_state() != Some(super::RegistrationState::Registered) {
            return;
        }
        let new = self.local_ip_for(Some(dest));
        if new == old {
            return;
        }
        tracing::info!(%old, %new, "the local address towards the registrar changed; registering again");
        self.public = None;
        self.events
            .push_back(UaEvent::LocalAddressChanged { old, new });
        let mut out = Vec::new();
        if let Some(reg) = self.registration.as_mut() {
            reg.register(&mut out);
        }
        self.apply_registration(out, now);
    }
}

/// The URI of the request's first Route, if it has one.
fn first_route(request: &Request) -> Option<Uri> {
    request
        .headers
        .routes()
        .ok()
        .and_then(|routes| routes.into_iter().next())
        .map(|route| route.uri)
}

/// Replaces the URI of the request's (single) Contact, keeping its header parameters
/// (`;expires=`).
fn set_contact_uri(request: &mut Request, uri: &Uri) {
    let Some(value) = request.headers.get("Contact") else {
        return;
    };
    let Ok(mut contact) = NameAddr::parse("Contact", value) else {
        return;
    };
    contact.uri = uri.clone();
    request.headers.set("Contact", contact.to_string());
}
