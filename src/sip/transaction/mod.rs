//! SIP transactions (RFC 3261 §17), sans-IO.
//!
//! `TransactionLayer` owns every client and server transaction of a UA. Inputs are
//! `send_request`, `send_response`, `handle_message`, `handle_timeout` and
//! `handle_transport_error`, each with the current time; outputs are drained with
//! `poll_transmit`, `poll_event` and `poll_timeout`. No clock is read here.
//!
//! Choices worth knowing:
//! - Both INVITE state machines implement the Accepted state of RFC 6026: after a 2xx the client
//!   transaction lives 64*T1 longer and passes every 2xx up (each fork needs its own ACK); the
//!   server transaction lives 64*T1 longer, absorbs INVITE retransmissions, forwards the 2xx
//!   retransmissions the UA core sends through `send_response`, and hands ACKs to the TU.
//! - Responses that match no client transaction are `Routed::Stray` and dropped, except a 2xx to
//!   an INVITE: it becomes `TsxEvent::Unmatched2xx` because the UA core must still ACK it
//!   (RFC 3261 §13.2.2.4), e.g. a late fork after the Accepted state ended.
//! - Messages without a readable top Via or CSeq are `Routed::Stray`; nothing here panics.
//! - Server transactions answer to the address and transport the request came from (the rport
//!   behaviour of RFC 3581); the driver may route differently by the Via if it wants.
//! - At most `max_transactions` (default `DEFAULT_MAX_TRANSACTIONS`) live at once; past that, new
//!   requests get `Routed::Overloaded` and no state (the UA may answer 503 statelessly). Client
//!   transactions are never refused: the UA creates them itself.
//! - Completed non-INVITE server transactions (final sent, waiting 64*T1 for Timer J only to
//!   absorb retransmissions) keep just their final response and key, and at most
//!   `DEFAULT_MAX_COMPLETED` of them live: past that, and when the layer is full, the oldest is
//!   dropped early. A flood of OPTIONS at thousands per second would otherwise keep 32 s of
//!   them (and refuse everything else with 503). A retransmission that arrives after its
//!   transaction was dropped is a new request again, which a non-INVITE request tolerates.
//! - Timers are indexed by deadline, so `poll_timeout` and `handle_timeout` cost O(log n), not a
//!   scan of every transaction per event (which made a flood CPU-bound at a few hundred/s).

mod client_invite;
mod client_non_invite;
pub mod key;
mod server_invite;
mod server_non_invite;
pub mod timer;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use self::client_invite::ClientInvite;
use self::client_non_invite::ClientNonInvite;
pub use self::key::{ClientKey, TsxKey};
use self::server_invite::{AckOutcome, ServerInvite};
use self::server_non_invite::ServerNonInvite;
pub use self::timer::{Timer, TimerConfig, TimerTable};
use crate::sip::message::{Message, Method, Request, Response};

/// Transactions alive at once, client and server together, before new server transactions are
/// refused.
pub const DEFAULT_MAX_TRANSACTIONS: usize = 10_000;

/// Completed non-INVITE server transactions kept for Timer J; past it the oldest is dropped.
/// 4096 covers the whole 32 s of Timer J up to 128 requests/s, and at 2,000/s still the first
/// 2 s (the first retransmissions come 0.5 s and 1.5 s after the request).
pub const DEFAULT_MAX_COMPLETED: usize = 4096;

/// How many timers one transaction may fire in a single call. Real timer paths need a handful;
/// the bound only stops a zero T1 from spinning forever.
const MAX_TIMER_FIRINGS_PER_CALL: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    Udp,
    Tcp,
    Tls,
}

impl TransportKind {
    /// Reliable transports carry no retransmissions and need no wait states.
    pub fn is_reliable(self) -> bool {
        !matches!(self, TransportKind::Udp)
    }
}

/// Where a message goes to or came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    pub addr: SocketAddr,
    pub transport: TransportKind,
}

/// Identifies a transaction within its `TransactionLayer`; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TsxId(u64);

/// A message to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: Destination,
    pub message: Message,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsxEvent {
    /// A response for a client transaction: 1xx and the final (for INVITE: every 2xx while in
    /// Accepted; non-2xx retransmissions are absorbed).
    Response {
        tsx: TsxId,
        response: Response,
    },
    /// A new request that created a server transaction.
    Request {
        tsx: TsxId,
        request: Request,
        source: Destination,
    },
    /// An ACK that matched no INVITE server transaction (ACK for a 2xx), or one that reached an
    /// INVITE server transaction in Accepted: it goes to the dialog layer.
    Ack {
        request: Request,
        source: Destination,
    },
    /// A 2xx to an INVITE that matched no client transaction: the UA core must still ACK it.
    Unmatched2xx {
        response: Response,
        source: Destination,
    },
    /// Timer B/F fired (the TU acts as if it got a 408), or H (no ACK for our final).
    Timeout {
        tsx: TsxId,
    },
    TransportError {
        tsx: TsxId,
    },
    /// The transaction is gone; its id matches nothing any more.
    Terminated {
        tsx: TsxId,
    },
}

/// What `handle_message` did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// A response that matched this client transaction.
    Client(TsxId),
    /// A request that created this server transaction (`TsxEvent::Request` was queued).
    ServerNew(TsxId),
    /// A request absorbed by an existing server transaction: a retransmission, or the ACK of a
    /// non-2xx final.
    ServerRetransmission(TsxId),
    /// An ACK for the TU (`TsxEvent::Ack` was queued).
    Ack,
    /// Matched nothing (or unreadable): dropped, see the module docs for the 2xx exception.
    Stray,
    /// A new request refused because `max_transactions` are alive; no state was kept.
    Overloaded,
}

/// What a state machine asks the layer to do.
#[derive(Debug)]
pub(crate) enum Action {
    Send(Message),
    PassResponse(Response),
    Timeout,
    TransportError,
}

// The variant names are the RFC 3261 §17 names of the four state machines.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
enum Machine {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

impl Machine {
    fn timers(&self) -> &TimerTable {
        match self {
            Machine::ClientInvite(m) => &m.timers,
            Machine::ClientNonInvite(m) => &m.timers,
            Machine::ServerInvite(m) => &m.timers,
            Machine::ServerNonInvite(m) => &m.timers,
        }
    }

    fn timers_mut(&mut self) -> &mut TimerTable {
        match self {
            Machine::ClientInvite(m) => &mut m.timers,
            Machine::ClientNonInvite(m) => &mut m.timers,
            Machine::ServerInvite(m) => &mut m.timers,
            Machine::ServerNonInvite(m) => &mut m.timers,
        }
    }

    fn request(&self) -> Option<&Request> {
        match self {
            Machine::ClientInvite(m) => Some(m.request()),
            Machine::ClientNonInvite(m) => Some(m.request()),
            Machine::ServerInvite(m) => Some(m.request()),
            Machine::ServerNonInvite(m) => m.request(),
        }
    }

    /// A non-INVITE server transaction in Completed (only waiting for Timer J).
    fn is_completed_server_non_invite(&self) -> bool {
        matches!(self, Machine::ServerNonInvite(m) if m.is_completed())
    }

    fn is_terminated(&self) -> bool {
        match self {
            Machine::ClientInvite(m) => m.is_terminated(),
            Machine::ClientNonInvite(m) => m.is_terminated(),
            Machine::ServerInvite(m) => m.is_terminated(),
            Machine::ServerNonInvite(m) => m.is_terminated(),
        }
    }

    fn on_timer(&mut self, timer: Timer, now: Instant, out: &mut Vec<Action>) {
        match self {
            Machine::ClientInvite(m) => m.on_timer(timer, now, out),
            Machine::ClientNonInvite(m) => m.on_timer(timer, now, out),
            Machine::ServerInvite(m) => m.on_timer(timer, now, out),
            Machine::ServerNonInvite(m) => m.on_timer(timer, now, out),
        }
    }

    fn on_transport_error(&mut self, out: &mut Vec<Action>) {
        match self {
            Machine::ClientInvite(m) => m.on_transport_error(out),
            Machine::ClientNonInvite(m) => m.on_transport_error(out),
            Machine::ServerInvite(m) => m.on_transport_error(out),
            Machine::ServerNonInvite(m) => m.on_transport_error(out),
        }
    }
}

#[derive(Debug)]
enum IndexKey {
    Client(ClientKey),
    Server(TsxKey),
}

#[derive(Debug)]
struct Entry {
    /// Boxed: a machine is over 1 KB and the map's table holds (2^k >= len) slots, which it
    /// keeps after a flood; boxed, a slot is small and the machine's memory goes with it.
    machine: Box<Machine>,
    /// Where this transaction sends: the request's destination, or the source of a received
    /// request.
    dest: Destination,
    key: Option<IndexKey>,
    /// The earliest timer as filed in `TransactionLayer::deadlines`.
    armed: Option<Instant>,
}

/// Every transaction of one UA. See the module docs.
#[derive(Debug)]
pub struct TransactionLayer {
    config: TimerConfig,
    max_transactions: usize,
    next_id: u64,
    transactions: HashMap<TsxId, Entry>,
    client_index: HashMap<ClientKey, TsxId>,
    server_index: HashMap<TsxKey, TsxId>,
    /// Every armed transaction by its earliest timer.
    deadlines: BTreeSet<(Instant, TsxId)>,
    /// Completed non-INVITE server transactions, oldest first (ids of ended ones linger until
    /// they reach the front).
    completed: VecDeque<TsxId>,
    max_completed: usize,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TsxEvent>,
}

impl TransactionLayer {
    pub fn new(config: TimerConfig) -> Self {
        TransactionLayer {
            config,
            max_transactions: DEFAULT_MAX_TRANSACTIONS,
            next_id: 0,
            transactions: HashMap::new(),
            client_index: HashMap::new(),
            server_index: HashMap::new(),
            deadlines: BTreeSet::new(),
            completed: VecDeque::new(),
            max_completed: DEFAULT_MAX_COMPLETED,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Changes the bound on live transactions (see `Routed::Overloaded`).
    pub fn set_max_transactions(&mut self, max: usize) {
        self.max_transactions = max;
    }

    /// Changes the bound on completed non-INVITE server transactions (see the module docs).
    pub fn set_max_completed(&mut self, max: usize) {
        self.max_completed = max;
    }

    /// How many transactions are alive.
    pub fn len(&self) -> usize {
        self.transactions.len()
    }

    /// At the bound: a new request may be refused (`Routed::Overloaded`), unless a completed
    /// transaction can make room.
    pub fn is_full(&self) -> bool {
        self.transactions.len() >= self.max_transactions
    }

    pub fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// Starts a client transaction. The request must carry a top Via with a z9hG4bK branch (the
    /// UA adds it); without one no response can match and the transaction ends by timeout.
    /// CANCEL is a client transaction of its own (same branch as the INVITE, method CANCEL).
    pub fn send_request(&mut self, request: Request, dest: Destination, now: Instant) -> TsxId {
        let id = self.allocate_id();
        let reliable = dest.transport.is_reliable();
        let key = ClientKey::for_request(&request);
        let mut actions = Vec::new();
        let machine = if request.method == Method::Invite {
            Machine::ClientInvite(ClientInvite::start(
                request,
                reliable,
                self.config,
                now,
                &mut actions,
            ))
        } else {
            Machine::ClientNonInvite(ClientNonInvite::start(
                request,
                reliable,
                self.config,
                now,
                &mut actions,
            ))
        };
        if let Some(key) = &key {
            self.client_index.insert(key.clone(), id);
        }
        self.transactions.insert(
            id,
            Entry {
                machine: Box::new(machine),
                dest,
                key: key.map(IndexKey::Client),
                armed: None,
            },
        );
        self.rearm(id);
        self.apply(id, dest, actions);
        id
    }

    /// Sends a message outside any transaction: the ACK for a 2xx, or a stateless response.
    pub fn send_stateless(&mut self, message: Message, dest: Destination) {
        self.transmits.push_back(Transmit { dest, message });
    }

    /// Answers on a server transaction (provisional or final). Ignored for an unknown or ended
    /// transaction and for responses its state no longer allows.
    pub fn send_response(&mut self, tsx: TsxId, response: Response, now: Instant) {
        self.drive(tsx, now, |machine, out| match machine {
            Machine::ServerInvite(m) => m.send_response(response, now, out),
            Machine::ServerNonInvite(m) => m.send_response(response, now, out),
            Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => {
                tracing::debug!(?tsx, "send_response on a client transaction ignored");
            }
        });
    }

    /// A parsed message from the wire.
    pub fn handle_message(
        &mut self,
        message: Message,
        source: Destination,
        now: Instant,
    ) -> Routed {
        match message {
            Message::Response(response) => self.handle_response(response, source, now),
            Message::Request(request) => self.handle_request(request, source, now),
        }
    }

    fn handle_response(&mut self, response: Response, source: Destination, now: Instant) -> Routed {
        // Unreadable Via or CSeq: dropped without an event, even for a 2xx.
        let Some(key) = ClientKey::for_response(&response) else {
            return Routed::Stray;
        };
        let Some(&id) = self.client_index.get(&key) else {
            if response.is_success() && key.method == Method::Invite {
                self.events
                    .push_back(TsxEvent::Unmatched2xx { response, source });
            }
            return Routed::Stray;
        };
        self.drive(id, now, |machine, out| match machine {
            Machine::ClientInvite(m) => m.on_response(response, now, out),
            Machine::ClientNonInvite(m) => m.on_response(response, now, out),
            Machine::ServerInvite(_) | Machine::ServerNonInvite(_) => {}
        });
        Routed::Client(id)
    }

    fn handle_request(&mut self, request: Request, source: Destination, now: Instant) -> Routed {
        let Some(key) = TsxKey::for_server(&request) else {
            return Routed::Stray;
        };
        if let Some(&id) = self.server_index.get(&key) {
            return self.handle_matched_request(id, request, source, now);
        }
        if request.method == Method::Ack {
            self.events.push_back(TsxEvent::Ack { request, source });
            return Routed::Ack;
        }
        if self.transactions.len() >= self.max_transactions && !self.evict_completed() {
            return Routed::Overloaded;
        }
        let id = self.allocate_id();
        let reliable = source.transport.is_reliable();
        let machine = if request.method == Method::Invite {
            Machine::ServerInvite(ServerInvite::start(
                request.clone(),
                reliable,
                self.config,
                now,
            ))
        } else {
            Machine::ServerNonInvite(ServerNonInvite::start(
                request.clone(),
                reliable,
                self.config,
            ))
        };
        self.server_index.insert(key.clone(), id);
        self.transactions.insert(
            id,
            Entry {
                machine: Box::new(machine),
                dest: source,
                key: Some(IndexKey::Server(key)),
                armed: None,
            },
        );
        self.rearm(id);
        self.events.push_back(TsxEvent::Request {
            tsx: id,
            request,
            source,
        });
        Routed::ServerNew(id)
    }

    fn handle_matched_request(
        &mut self,
        id: TsxId,
        request: Request,
        source: Destination,
        now: Instant,
    ) -> Routed {
        let is_ack = request.method == Method::Ack;
        let mut ack_for_tu = false;
        self.drive(id, now, |machine, out| match machine {
            Machine::ServerInvite(m) if is_ack => {
                ack_for_tu = m.on_ack(now) == AckOutcome::ForTu;
            }
            Machine::ServerInvite(m) => m.on_retransmission(out),
            Machine::ServerNonInvite(m) => m.on_retransmission(out),
            Machine::ClientInvite(_) | Machine::ClientNonInvite(_) => {}
        });
        if ack_for_tu {
            self.events.push_back(TsxEvent::Ack { request, source });
            Routed::Ack
        } else {
            Routed::ServerRetransmission(id)
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<TsxId> = self
            .deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|&(_, id)| id)
            .collect();
        // Deterministic order: older transactions first.
        due.sort_unstable();
        for id in due {
            self.drive(id, now, |_, _| {});
        }
    }

    /// The transport could not deliver for `tsx` (ICMP unreachable, connection refused or
    /// reset): the transaction ends with `TsxEvent::TransportError`.
    pub fn handle_transport_error(&mut self, tsx: TsxId, now: Instant) {
        self.drive(tsx, now, |machine, out| machine.on_transport_error(out));
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TsxEvent> {
        self.events.pop_front()
    }

    /// The earliest armed timer of all transactions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    /// A destination became unreachable (connection refused or closed): every transaction
    /// sending there, client or server, hears of it.
    pub fn handle_destination_error(&mut self, dest: Destination, now: Instant) {
        let hit: Vec<TsxId> = self
            .transactions
            .iter()
            .filter(|(_, entry)| entry.dest == dest)
            .map(|(id, _)| *id)
            .collect();
        for id in hit {
            self.handle_transport_error(id, now);
        }
    }

    /// The request of a transaction (for building CANCEL or an authenticated retry).
    pub fn request_of(&self, tsx: TsxId) -> Option<&Request> {
        self.transactions
            .get(&tsx)
            .and_then(|entry| entry.machine.request())
    }

    /// The INVITE server transaction a received CANCEL refers to (RFC 3261 §9.2), so the UA can
    /// answer the INVITE with 487.
    pub fn cancel_target(&self, cancel: &Request) -> Option<TsxId> {
        let key = TsxKey::for_cancelled_invite(cancel)?;
        self.server_index.get(&key).copied()
    }

    fn allocate_id(&mut self) -> TsxId {
        let id = TsxId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Runs `input` on a transaction, then its due timers (zero-length waits of reliable
    /// transports fire here), queues what it asked for and removes it once terminated.
    fn drive(
        &mut self,
        id: TsxId,
        now: Instant,
        input: impl FnOnce(&mut Machine, &mut Vec<Action>),
    ) {
        let Some(entry) = self.transactions.get_mut(&id) else {
            tracing::debug!(?id, "input for an unknown transaction ignored");
            return;
        };
        let mut actions = Vec::new();
        let was_completed = entry.machine.is_completed_server_non_invite();
        input(entry.machine.as_mut(), &mut actions);
        for _ in 0..MAX_TIMER_FIRINGS_PER_CALL {
            let Some(timer) = entry.machine.timers_mut().take_expired(now) else {
                break;
            };
            entry.machine.on_timer(timer, now, &mut actions);
        }
        let dest = entry.dest;
        let terminated = entry.machine.is_terminated();
        let completed_now = !was_completed && entry.machine.is_completed_server_non_invite();
        self.apply(id, dest, actions);
        if terminated {
            self.remove(id);
            return;
        }
        self.rearm(id);
        if completed_now {
            self.completed.push_back(id);
            self.bound_completed();
        }
    }

    /// Files a transaction's earliest timer in `deadlines` after its timers may have changed.
    fn rearm(&mut self, id: TsxId) {
        let Some(entry) = self.transactions.get_mut(&id) else {
            return;
        };
        let earliest = entry.machine.timers().earliest();
        if earliest == entry.armed {
            return;
        }
        if let Some(at) = entry.armed {
            self.deadlines.remove(&(at, id));
        }
        if let Some(at) = earliest {
            self.deadlines.insert((at, id));
        }
        entry.armed = earliest;
    }

    /// Drops the oldest completed non-INVITE server transactions past `max_completed`, and
    /// forgets the ids of ended ones at the front of the queue.
    fn bound_completed(&mut self) {
        loop {
            let Some(&front) = self.completed.front() else {
                return;
            };
            let alive = self
                .transactions
                .get(&front)
                .is_some_and(|e| e.machine.is_completed_server_non_invite());
            if alive && self.completed.len() <= self.max_completed {
                return;
            }
            self.completed.pop_front();
            if alive {
                self.remove(front);
            }
        }
    }

    /// Makes room for a new server transaction by dropping the oldest completed non-INVITE
    /// server transaction. False: none to drop.
    fn evict_completed(&mut self) -> bool {
        while let Some(front) = self.completed.pop_front() {
            if self
                .transactions
                .get(&front)
                .is_some_and(|e| e.machine.is_completed_server_non_invite())
            {
                self.remove(front);
                return true;
            }
        }
        false
    }

    fn apply(&mut self, tsx: TsxId, dest: Destination, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(message) => self.transmits.push_back(Transmit { dest, message }),
                Action::PassResponse(response) => {
                    self.events.push_back(TsxEvent::Response { tsx, response })
                }
                Action::Timeout => self.events.push_back(TsxEvent::Timeout { tsx }),
                Action::TransportError => self.events.push_back(TsxEvent::TransportError { tsx }),
            }
        }
    }

    fn remove(&mut self, id: TsxId) {
        let Some(entry) = self.transactions.remove(&id) else {
            return;
        };
        if let Some(at) = entry.armed {
            self.deadlines.remove(&(at, id));
        }
        // Only drop the index entry if it still points here (a UA reusing a branch replaces it).
        match entry.key {
            Some(IndexKey::Client(key)) if self.client_index.get(&key) == Some(&id) => {
                self.client_index.remove(&key);
            }
            Some(IndexKey::Server(key)) if self.server_index.get(&key) == Some(&id) => {
                self.server_index.remove(&key);
            }
            _ => {}
        }
        self.events.push_back(TsxEvent::Terminated { tsx: id });
        self.shrink_after_flood();
    }

    /// Hash tables and queues never give memory back by themselves: after a flood they would
    /// keep the capacity of its peak. Once they are mostly empty, shrink them (rarely: the
    /// capacity must be 8 times the size, so the O(n) rehash is amortised).
    fn shrink_after_flood(&mut self) {
        const MIN_CAPACITY: usize = 256;
        let len = self.transactions.len();
        if self.transactions.capacity() > MIN_CAPACITY.max(len * 8) {
            self.transactions.shrink_to_fit();
            self.server_index.shrink_to_fit();
            self.client_index.shrink_to_fit();
            self.completed
                .retain(|id| self.transactions.contains_key(id));
            self.completed.shrink_to_fit();
            self.transmits.shrink_to_fit();
            self.events.shrink_to_fit();
        }
    }
}
