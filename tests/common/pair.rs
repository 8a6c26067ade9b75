//! Two or three sans-IO user agents joined by an in-memory UDP wire on a simulated clock (in
//! the spirit of quinn-proto's test `Pair`): what one UA transmits is delivered to the UA that
//! owns the destination address after a fixed latency; time jumps to the earliest delivery or
//! timer. The wire records every datagram (dropped ones too) and can lose datagrams by a
//! deterministic PRNG or by a predicate, so retransmission paths can be driven exactly.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipterm::sdp::{Codec, Direction, LocalMedia};
use sipterm::sip::message::{Message, Method, Request, Response};
use sipterm::sip::parse::parse_datagram;
use sipterm::sip::transaction::{Destination, TransportKind};
use sipterm::sip::ua::{CallState, Command, UaEvent, UserAgent};

use super::sim::{AccountSpec, user_agent};

pub const A_ADDR: &str = "127.0.0.1:5062";
pub const B_ADDR: &str = "127.0.0.1:5064";
pub const C_ADDR: &str = "127.0.0.1:5066";
/// One-way delay of the wire.
pub const LATENCY: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
    C,
}

/// One user agent on the wire, with every event it has reported so far.
pub struct Node {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub ua: UserAgent,
    pub events: Vec<UaEvent>,
}

impl Node {
    /// A UA for `user` at `local` (no registrar, no proxy: requests go where the URI says).
    pub fn new(name: &'static str, local: &'static str, seed: u64, codecs: &[Codec]) -> Node {
        let aor = format!("sip:{name}@{local}");
        let ua = user_agent(&AccountSpec {
            name,
            aor: &aor,
            password: Some("secret"),
            registrar: None,
            outbound_proxy: None,
            expires: 600,
            local,
        });
        // sim::user_agent uses one fixed seed; distinct seeds keep tags and Call-IDs distinct.
        let mut config = ua.config().clone();
        config.seed = seed.into();
        config.codecs = codecs.to_vec();
        Node {
            name,
            addr: local.parse().expect("local"),
            ua: UserAgent::new(config),
            events: Vec::new(),
        }
    }

    /// Rebuilds this node's UA with `change` applied to its config (before any traffic).
    pub fn reconfigure(&mut self, change: impl FnOnce(&mut sipterm::sip::ua::UaConfig)) {
        let mut config = self.ua.config().clone();
        change(&mut config);
        self.ua = UserAgent::new(config);
    }

    pub fn uri(&self) -> sipterm::sip::uri::Uri {
        format!("sip:{}@{}", self.name, self.addr)
            .parse()
            .expect("uri")
    }

    /// The call states this node reported, in order.
    pub fn call_states(&self) -> Vec<CallState> {
        self.events
            .iter()
            .filter_map(|e| match e {
                UaEvent::Call { state, .. } => Some(*state),
                _ => None,
            })
            .collect()
    }

    /// `(state, code)` of every call event.
    pub fn call_codes(&self) -> Vec<(CallState, Option<u16>)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                UaEvent::Call { state, code, .. } => Some((*state, *code)),
                _ => None,
            })
            .collect()
    }

    pub fn last_state(&self) -> Option<CallState> {
        self.call_states().last().copied()
    }

    pub fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                UaEvent::Error { message } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }
}

/// One datagram as it went over the wire.
#[derive(Debug, Clone)]
pub struct Record {
    pub at: Instant,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub msg: Message,
    pub dropped: bool,
}

impl Record {
    pub fn request(&self) -> Option<&Request> {
        match &self.msg {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    pub fn response(&self) -> Option<&Response> {
        match &self.msg {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
    }

    pub fn is_request(&self, method: &Method) -> bool {
        self.request().is_some_and(|r| r.method == *method)
    }

    /// A response with this code to a request of this method (by CSeq).
    pub fn is_response(&self, code: u16, method: &Method) -> bool {
        self.response()
            .is_some_and(|r| r.code == code && r.headers.cseq().is_ok_and(|c| c.method == *method))
    }

    pub fn cseq(&self) -> (u32, Method) {
        let c = self.msg.headers().cseq().expect("CSeq");
        (c.seq, c.method)
    }

    /// `INVITE` for requests, `180 INVITE` for responses (method from CSeq).
    pub fn label(&self) -> String {
        match &self.msg {
            Message::Request(r) => r.method.to_string(),
            Message::Response(r) => {
                let method = r
                    .headers
                    .cseq()
                    .map(|c| c.method.to_string())
                    .unwrap_or_default();
                format!("{} {method}", r.code)
            }
        }
    }
}

/// xorshift64*: a deterministic loss pattern per seed.
#[derive(Debug, Clone)]
struct Prng(u64);

impl Prng {
    fn next_f64(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

type DropRule = Box<dyn FnMut(&Record) -> bool>;

pub struct Wire {
    /// Every datagram sent, in order of sending, dropped ones marked.
    pub log: Vec<Record>,
    /// Datagrams to addresses no node owns (a hand-played peer reads them here).
    pub unrouted: Vec<Record>,
    in_flight: VecDeque<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    loss: f64,
    rng: Prng,
    drop_rule: Option<DropRule>,
    pub latency: Duration,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            log: Vec::new(),
            unrouted: Vec::new(),
            in_flight: VecDeque::new(),
            loss: 0.0,
            rng: Prng(0x1234_5678_9abc_def1),
            drop_rule: None,
            latency: LATENCY,
        }
    }

    /// Loses each datagram with probability `loss`, both ways, reproducibly for `seed`.
    pub fn set_loss(&mut self, loss: f64, seed: u64) {
        self.loss = loss;
        self.rng = Prng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    }

    /// Drops every datagram for which `rule` says true (it sees datagrams in sending order).
    pub fn drop_when(&mut self, rule: impl FnMut(&Record) -> bool + 'static) {
        self.drop_rule = Some(Box::new(rule));
    }

    pub fn clear_drop_rule(&mut self) {
        self.drop_rule = None;
    }

    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        let msg = parse_datagram(&bytes).unwrap_or_else(|e| {
            panic!(
                "{from} sent unparseable bytes ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        let mut record = Record {
            at: now,
            from,
            to,
            msg,
            dropped: false,
        };
        let by_rule = self.drop_rule.as_mut().is_some_and(|rule| rule(&record));
        let by_chance = self.loss > 0.0 && self.rng.next_f64() < self.loss;
        record.dropped = by_rule || by_chance;
        if !record.dropped {
            self.in_flight
                .push_back((now + self.latency, from, to, bytes));
        }
        self.log.push(record);
    }

    /// Delivered records only.
    pub fn delivered(&self) -> impl Iterator<Item = &Record> {
        self.log.iter().filter(|r| !r.dropped)
    }

    /// Records matching `pred` (dropped ones included).
    pub fn find(&self, pred: impl Fn(&Record) -> bool) -> Vec<&Record> {
        self.log.iter().filter(|r| pred(r)).collect()
    }
}

pub struct Pair {
    pub a: Node,
    pub b: Node,
    pub c: Option<Node>,
    pub now: Instant,
    pub start: Instant,
    pub wire: Wire,
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ladder().join("\n"))
    }
}

impl Pair {
    /// alice at A_ADDR and bob at B_ADDR with every codec.
    pub fn new() -> Pair {
        Pair::with_codecs(
            &[Codec::Opus, Codec::Pcmu, Codec::Pcma],
            &[Codec::Opus, Codec::Pcmu, Codec::Pcma],
        )
    }

    pub fn with_codecs(a: &[Codec], b: &[Codec]) -> Pair {
        let now = Instant::now();
        Pair {
            a: Node::new("alice", A_ADDR, 1001, a),
            b: Node::new("bob", B_ADDR, 2002, b),
            c: None,
            now,
            start: now,
            wire: Wire::new(),
        }
    }

    /// Adds carol at C_ADDR.
    pub fn with_carol(mut self) -> Pair {
        self.c = Some(Node::new(
            "carol",
            C_ADDR,
            3003,
            &[Codec::Opus, Codec::Pcmu, Codec::Pcma],
        ));
        self
    }

    pub fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
            Side::C => self.c.as_mut().expect("no carol in this pair"),
        }
    }

    fn nodes_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        [Some(&mut self.a), Some(&mut self.b), self.c.as_mut()]
            .into_iter()
            .flatten()
    }

    fn name_of(&self, addr: SocketAddr) -> String {
        [Some(&self.a), Some(&self.b), self.c.as_ref()]
            .into_iter()
            .flatten()
            .find(|n| n.addr == addr)
            .map(|n| n.name.to_string())
            .unwrap_or_else(|| addr.to_string())
    }

    /// Seconds since the pair was made.
    pub fn elapsed(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    /// Hands a command to one UA now and moves what it produced onto the wire.
    pub fn command(&mut self, side: Side, command: Command) {
        let now = self.now;
        self.node(side).ua.handle_command(command, now);
        self.flush();
    }

    /// A dial to `target` with media on `rtp_port`.
    pub fn dial(&mut self, side: Side, target: sipterm::sip::uri::Uri, rtp_port: u16) {
        let media = local_media(rtp_port, &[Codec::Opus, Codec::Pcmu, Codec::Pcma]);
        self.command(side, Command::Dial { target, media });
    }

    pub fn answer(&mut self, side: Side, rtp_port: u16) {
        let codecs = self.node(side).ua.config().codecs.clone();
        let media = local_media(rtp_port, &codecs);
        self.command(side, Command::Answer { call: None, media });
    }

    /// Bytes from a hand-played peer at `from` to the node at `to`, delivered now (and logged).
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        let source = Destination {
            addr: from,
            transport: TransportKind::Udp,
        };
        if let Ok(msg) = parse_datagram(bytes) {
            self.wire.log.push(Record {
                at: now,
                from,
                to,
                msg,
                dropped: false,
            });
        }
        if let Some(node) = self.nodes_mut().find(|n| n.addr == to) {
            node.ua.handle_datagram(source, bytes, now);
        }
        self.flush();
    }

    /// Moves every pending transmit onto the wire and every event into its node's list.
    fn flush(&mut self) {
        let now = self.now;
        let mut out = Vec::new();
        for node in [Some(&mut self.a), Some(&mut self.b), self.c.as_mut()]
            .into_iter()
            .flatten()
        {
            while let Some(t) = node.ua.poll_transmit() {
                out.push((node.addr, t.dest.addr, t.bytes));
            }
            while let Some(e) = node.ua.poll_event() {
                node.events.push(e);
            }
        }
        let owned: Vec<SocketAddr> = [Some(&self.a), Some(&self.b), self.c.as_ref()]
            .into_iter()
            .flatten()
            .map(|n| n.addr)
            .collect();
        for (from, to, bytes) in out {
            self.wire.send(now, from, to, bytes);
            if !owned.contains(&to) {
                // Not deliverable to a UA: keep it for the test (and do not leave it in flight).
                if let Some(pos) = self.wire.in_flight.iter().rposition(|d| d.2 == to) {
                    self.wire.in_flight.remove(pos);
                }
                let last = self.wire.log.last().cloned().expect("just logged");
                self.wire.unrouted.push(last);
            }
        }
    }

    /// The earliest moment something happens: a delivery or a UA timer.
    fn next_time(&self) -> Option<Instant> {
        let deliveries = self.wire.in_flight.iter().map(|d| d.0).min();
        [Some(&self.a), Some(&self.b), self.c.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|n| n.ua.poll_timeout())
            .chain(deliveries)
            .min()
    }

    /// Processes the next moment at or before `until`; false when nothing is due by then.
    pub fn step(&mut self, until: Instant) -> bool {
        self.flush();
        let Some(t) = self.next_time() else {
            return false;
        };
        if t > until {
            return false;
        }
        self.now = self.now.max(t);
        let now = self.now;
        // Deliveries first, in sending order.
        while let Some(pos) = self.wire.in_flight.iter().position(|d| d.0 <= now) {
            let (_, from, to, bytes) = self.wire.in_flight.remove(pos).expect("position");
            let source = Destination {
                addr: from,
                transport: TransportKind::Udp,
            };
            if let Some(node) = self.nodes_mut().find(|n| n.addr == to) {
                node.ua.handle_datagram(source, &bytes, now);
            }
            self.flush();
        }
        for node in self.nodes_mut() {
            if node.ua.poll_timeout().is_some_and(|t| t <= now) {
                node.ua.handle_timeout(now);
            }
        }
        self.flush();
        true
    }

    /// Runs everything due up to `until`, then sets the clock there.
    pub fn run_until(&mut self, until: Instant) {
        let mut guard = 0u32;
        while self.step(until) {
            guard += 1;
            assert!(guard < 200_000, "the UAs never go quiet:\n{self:?}");
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    pub fn run_secs(&mut self, secs: f64) {
        self.run_for(Duration::from_secs_f64(secs));
    }

    /// Runs until `cond` holds (checked after every step) or `limit` of virtual time passes.
    pub fn run_until_cond(&mut self, limit: Duration, cond: impl Fn(&Pair) -> bool) -> bool {
        let until = self.now + limit;
        loop {
            if cond(self) {
                return true;
            }
            if !self.step(until) {
                self.now = self.now.max(until);
                return cond(self);
            }
        }
    }

    /// `alice -> bob: INVITE` lines for every delivered datagram (`x` marks a dropped one).
    pub fn ladder(&self) -> Vec<String> {
        self.wire
            .log
            .iter()
            .map(|r| {
                format!(
                    "{:8.3} {} -> {}: {}{}",
                    (r.at - self.start).as_secs_f64(),
                    self.name_of(r.from),
                    self.name_of(r.to),
                    r.label(),
                    if r.dropped { "  (dropped)" } else { "" }
                )
            })
            .collect()
    }

    /// The delivered messages between the nodes as `(from, label)` pairs, e.g.
    /// `("alice", "INVITE")`, `("bob", "180 INVITE")`.
    pub fn sequence(&self) -> Vec<(String, String)> {
        self.wire
            .delivered()
            .map(|r| (self.name_of(r.from), r.label()))
            .collect()
    }

    /// Prints the ladder (shows with --nocapture).
    pub fn print_ladder(&self, title: &str) {
        println!("--- {title} ---");
        for line in self.ladder() {
            println!("{line}");
        }
    }
}

impl Default for Pair {
    fn default() -> Self {
        Pair::new()
    }
}

pub fn local_media(rtp_port: u16, codecs: &[Codec]) -> LocalMedia {
    LocalMedia {
        address: "127.0.0.1".parse().expect("ip"),
        rtp_port,
        codecs: codecs.to_vec(),
        direction: Direction::SendRecv,
        session_id: 0,
        session_version: 0,
        srtp: Default::default(),
        ice: None,
    }
}
