//! One component of a call's ICE, on rice-proto: RTP (component 1, with RTCP multiplexed on
//! it when the peer does rtcp-mux), or RTCP (component 2, for a peer that does not: an agent
//! of its own, `IceAgent::for_rtcp`). Inputs: `handle_datagram`, `handle_connected` (a TCP connection to the TURN
//! server the driver opened), `set_remote` and time; outputs: `poll_transmit`, `poll_event`,
//! `poll_timeout`. Time is `std::time::Instant` handed in, turned into rice's own clock
//! from the first `now` the agent was given.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rice_proto::agent::{Agent, AgentPoll};
use rice_proto::candidate::{Candidate, CandidateType, TransportType};
use rice_proto::component::ComponentConnectionState;
use rice_proto::stream::{Credentials, GatheredCandidate};
use rice_proto::turn::{TurnConfig, TurnCredentials};
use stun_proto::Instant as IceInstant;
use stun_proto::agent::{StunError, Transmit as RiceTransmit};
use stun_proto::types::message::{
    BINDING, IntegrityAlgorithm, Message, MessageClass, MessageIntegrityCredentials, MessageWrite,
    MessageWriteExt, MessageWriteVec, ShortTermCredentials, TransactionId,
};

use super::pair::{PairInfo, kind};
use super::server::TurnTransport;
use crate::sdp::{IceCredentials, LocalIce, NegotiatedIce};

/// The one component of rice's stream. Each of our ICE components is an agent of its own (RTCP
/// on component 2 only when the peer does not multiplex): rice-proto 0.4.3 completes a stream
/// only once every component is nominated and cannot drop one, while RFC 5761 §5.1.3 wants
/// an offer to carry RTCP candidates that the answer may make useless. The checks themselves
/// carry no component: it is which socket they use, and the SDP text (`sdp_component`).
const COMPONENT: usize = 1;
/// The RTCP component's ID in SDP (RFC 8445 §5.1.2.1).
pub const RTCP_COMPONENT: usize = 2;
/// How long the controlling agent checks direct paths before relayed candidates join in.
/// rice-proto nominates the first pair that succeeds (`try_nominate`), and a relay pair
/// always succeeds at once, so without this a call between two cone NATs would go through
/// the TURN server although the server-reflexive pair works (RFC 8445 §8.1.1 leaves to the
/// controlling agent when to stop checking; we make it wait for the better pairs first).
pub const RELAY_HOLDBACK: Duration = Duration::from_millis(1500);
/// Without a selected pair this long after the checks began, ICE has failed: the call falls
/// back to the peer's `c=` address (its default candidate), which is what it would have used
/// without ICE; a firewall or an odd network then shows as missing audio, not as silence.
pub const CHECK_LIMIT: Duration = Duration::from_secs(5);
/// The limit instead of `CHECK_LIMIT` for a controlled agent whose peer is checking (its
/// authenticated Binding requests reach us): the path works, and only the controlling peer
/// decides when to nominate. baresip 1.0 nominates once every pair's check has ended, ~10 s
/// when some pairs time out; a STUN transaction lasts at most 39.5 s (RFC 5389 §7.2.1), so a
/// peer still checking after that will not nominate.
pub const PEER_CHECKING_LIMIT: Duration = Duration::from_secs(40);
/// Consent freshness (RFC 7675 §5.1): a check on the selected pair about every 5 s
/// (uniformly 0.8 to 1.2 times that), and consent expires 30 s after the last answer: then
/// media stops.
pub const CONSENT_INTERVAL: Duration = Duration::from_secs(5);
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Consent checks remembered for their answers (a check's answer is good until the next
/// six are out: a 30 s round trip is consent lost anyway).
const CONSENT_PENDING: usize = 8;
/// How long a controlled agent waits for rice-proto to select a pair the peer nominated
/// (USE-CANDIDATE, answered with success) before selecting it itself. rice-proto 0.4.3 loses
/// such a nomination when its own check on the pair succeeded just before ("unknown
/// nomination": the valid pair it looks for carries the server-reflexive local candidate);
/// the peer then sends on the pair and we never do.
const NOMINATION_GRACE: Duration = Duration::from_millis(1000);
/// Most pairs listed when ICE fails (the user sees them; the checklist is bounded by the
/// candidates, which `sdp::ice` bounds).
const MAX_TRIED: usize = 16;

/// Where the agent gathers from: our RTP socket, the STUN server, the TURN servers.
#[derive(Clone)]
pub struct IceSetup {
    pub credentials: IceCredentials,
    /// Our RTP socket's address (a concrete one, not a wildcard): the host candidate.
    pub host: SocketAddr,
    pub stun: Option<SocketAddr>,
    pub turn: Vec<TurnSetup>,
    /// Whether we start as the controlling agent (RFC 8445 §6.1.1: the offerer, unless the
    /// peer is the full one and we lite; a conflict is repaired by the checks themselves).
    pub controlling: bool,
}

/// One way to the TURN server.
#[derive(Clone)]
pub struct TurnSetup {
    pub server: SocketAddr,
    pub transport: TurnTransport,
    /// The local address to reach it from: a UDP socket of its own for UDP (not the RTP
    /// socket), the address to connect from for TCP and TLS.
    pub local: SocketAddr,
    pub username: String,
    pub password: String,
    /// For TLS: the client configuration and the server's name. The driver does the TLS
    /// (`driver::ice_task`); the agent sees TURN over TCP.
    pub tls: Option<(
        std::sync::Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl std::fmt::Debug for TurnSetup {
    /// The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSetup")
            .field("server", &self.server)
            .field("transport", &self.transport)
            .field("local", &self.local)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A datagram (or TCP bytes) to send.
#[derive(Debug)]
pub struct Transmit {
    pub tcp: bool,
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: Box<[u8]>,
}

/// What arrived for the media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// From the peer over the selected pair.
    Media(Vec<u8>),
    /// From someone else: dropped, but counted (`foreign` in the `media` event).
    Stranger { from: SocketAddr, bytes: Vec<u8> },
}

/// What the agent tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IceEvent {
    /// Gathering ended: these are our candidates for the SDP.
    Gathered(LocalIce),
    /// Open a TCP connection from `from` (its IP; any port) to `to` and say so with
    /// `handle_connected`.
    Connect { from: SocketAddr, to: SocketAddr },
    /// Media goes over this pair now.
    Selected(PairInfo),
    /// No pair works: these were tried.
    Failed { tried: Vec<PairInfo> },
    /// The peer stopped answering consent checks on the selected pair for
    /// `CONSENT_TIMEOUT` (RFC 7675): media stops (an ICE restart may bring it back).
    ConsentLost(PairInfo),
}

/// RFC 7675 on the selected pair.
#[derive(Debug)]
struct Consent {
    next_check: Instant,
    last_answer: Instant,
    /// Transaction IDs of the checks out, newest last.
    pending: VecDeque<TransactionId>,
    /// The selected pair's local priority, and whether its local end is a relay (answers
    /// then come from the TURN server, wrapped in ChannelData or a Data indication).
    priority: u32,
    relayed: bool,
    lost: bool,
    /// Counts the checks: each one's jitter comes from it.
    sent: u64,
}

pub struct IceAgent {
    agent: Agent,
    stream: usize,
    epoch: Instant,
    events: VecDeque<IceEvent>,
    timeout: Option<Instant>,
    gathered: bool,
    /// Every local candidate gathered (the SDP's), whether or not given to rice yet.
    local: Vec<Candidate>,
    /// Held back while the direct paths are checked (`RELAY_HOLDBACK`, controlling only):
    /// our relayed candidates and the peer's, released at `release_at`.
    held_local: Vec<GatheredCandidate>,
    held_remote: Vec<Candidate>,
    release_at: Option<Instant>,
    controlling: bool,
    /// When checks began (`set_remote`), and whether ICE failed (no pair in `CHECK_LIMIT`, or
    /// rice said so).
    checks_since: Option<Instant>,
    failed: bool,
    selected: Option<PairInfo>,
    /// Our credentials (the SDP's) and the peer's.
    credentials: IceCredentials,
    remote_credentials: Option<IceCredentials>,
    remote_set: bool,
    /// Consent freshness on the selected pair (RFC 7675); `None` before a pair is selected.
    consent: Option<Consent>,
    /// Our consent checks waiting for `poll_transmit`.
    consent_out: VecDeque<Transmit>,
    /// The TURN servers' addresses (where a relayed pair's consent answers come from), and
    /// those reached over TLS (to name a relay's transport).
    turn_servers: Vec<SocketAddr>,
    tls_servers: Vec<SocketAddr>,
    /// Controlled, nothing selected yet: the first pair the peer nominated straight to us
    /// (our local socket address, the peer's address, when): see `NOMINATION_GRACE`.
    peer_nominated: Option<(SocketAddr, SocketAddr, Instant)>,
    /// Controlled, nothing selected yet: an authenticated check from the peer arrived (see
    /// `PEER_CHECKING_LIMIT`).
    peer_checking: bool,
    /// The component this agent is in the SDP: 1 (RTP) or `RTCP_COMPONENT`.
    sdp_component: usize,
}

impl std::fmt::Debug for IceAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceAgent")
            .field("selected", &self.selected)
            .finish_non_exhaustive()
    }
}

impl IceAgent {
    /// Starts gathering. `now` is the agent's epoch.
    pub fn new(setup: &IceSetup, now: Instant) -> Result<IceAgent, String> {
        let mut agent = Agent::builder()
            .controlling(setup.controlling)
            .trickle_ice(false)
            .build();
        let stream = agent.add_stream();
        let turn_configs: Vec<(SocketAddr, TurnConfig)> = setup
            .turn
            .iter()
            .map(|turn| {
                let transport = match turn.transport {
                    TurnTransport::Udp => TransportType::Udp,
                    TurnTransport::Tcp | TurnTransport::Tls => TransportType::Tcp,
                };
                // TLS is the driver's (`turn.tls`): rice speaks TURN over TCP on the
                // decrypted stream, which the driver frames (see `tcp_frame`).
                let config = TurnConfig::new(
                    transport,
                    turn.server,
                    TurnCredentials::new(&turn.username, &turn.password),
                );
                (turn.local, config)
            })
            .collect();
        {
            let mut stream = agent
                .mut_stream(stream)
                .ok_or_else(|| "ICE stream missing".to_owned())?;
            stream.set_local_credentials(Credentials::new(
                setup.credentials.ufrag.clone(),
                setup.credentials.pwd.clone(),
            ));
            let component = stream.add_component().map_err(|e| e.to_string())?;
            if component != COMPONENT {
                return Err(format!("ICE component {component}, expected {COMPONENT}"));
            }
            let stun: Vec<(TransportType, SocketAddr)> = setup
                .stun
                .iter()
                .map(|s| (TransportType::Udp, *s))
                .collect();
            let turn: Vec<(SocketAddr, &TurnConfig)> =
                turn_configs.iter().map(|(l, c)| (*l, c)).collect();
            stream
                .mut_component(COMPONENT)
                .ok_or_else(|| "ICE component missing".to_owned())?
                .gather_candidates(&[(TransportType::Udp, setup.host)], &stun, &turn)
                .map_err(|e| e.to_string())?;
        }
        Ok(IceAgent {
            agent,
            stream,
            epoch: now,
            events: VecDeque::new(),
            timeout: Some(now),
            gathered: false,
            local: Vec::new(),
            held_local: Vec::new(),
            held_remote: Vec::new(),
            release_at: None,
            controlling: setup.controlling,
            checks_since: None,
            failed: false,
            selected: None,
            credentials: setup.credentials.clone(),
            remote_credentials: None,
            remote_set: false,
            consent: None,
            consent_out: VecDeque::new(),
            turn_servers: setup.turn.iter().map(|t| t.server).collect(),
            tls_servers: setup
                .turn
                .iter()
                .filter(|t| t.transport == TurnTransport::Tls)
                .map(|t| t.server)
                .collect(),
            peer_nominated: None,
            peer_checking: false,
            sdp_component: COMPONENT,
        })
    }

    /// The RTCP component (2) of the same ICE session, on the RTCP socket `host`: same
    /// credentials and role, host and server-reflexive candidates (no TURN relay of its own:
    /// a second allocation per call for RTCP only; where only a relay gets through, RTCP goes
    /// to the peer's `a=rtcp` address as without ICE).
    pub fn for_rtcp(setup: &IceSetup, host: SocketAddr, now: Instant) -> Result<IceAgent, String> {
        let mut setup = setup.clone();
        setup.host = host;
        setup.turn.clear();
        let mut agent = IceAgent::new(&setup, now)?;
        agent.sdp_component = RTCP_COMPONENT;
        Ok(agent)
    }

    /// Which component this agent is in the SDP.
    pub fn component(&self) -> usize {
        self.sdp_component
    }

    fn ice_now(&self, now: Instant) -> IceInstant {
        let nanos = now.saturating_duration_since(self.epoch).as_nanos();
        IceInstant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    fn std_time(&self, at: IceInstant) -> Instant {
        self.epoch + at.saturating_duration_since(IceInstant::ZERO)
    }

    /// The peer's credentials and candidates (from its offer or answer): checks start. Only
    /// UDP candidates of this agent's component are used (we offer UDP only).
    pub fn set_remote(&mut self, remote: &NegotiatedIce, now: Instant) {
        let Some(mut stream) = self.agent.mut_stream(self.stream) else {
            return;
        };
        stream.set_remote_credentials(Credentials::new(
            remote.remote.credentials.ufrag.clone(),
            remote.remote.credentials.pwd.clone(),
        ));
        self.remote_credentials = Some(remote.remote.credentials.clone());
        let hold = self.controlling;
        for text in &remote.remote.candidates {
            match format!("a=candidate:{text}").parse::<Candidate>() {
                Ok(mut c)
                    if c.component_id == self.sdp_component
                        && c.transport_type == TransportType::Udp =>
                {
                    c.component_id = COMPONENT;
                    if hold && c.candidate_type == CandidateType::Relayed {
                        self.held_remote.push(c);
                    } else {
                        stream.add_remote_candidate(c);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(candidate = %text, error = ?e, "ICE: candidate ignored"),
            }
        }
        if hold && !(self.held_remote.is_empty() && self.held_local.is_empty()) {
            self.release_at = Some(now + RELAY_HOLDBACK);
        } else {
            stream.end_of_remote_candidates();
        }
        self.remote_set = true;
        self.checks_since = Some(now);
        self.timeout = Some(now);
    }

    /// A datagram (or TCP bytes) that arrived on one of our sockets. Returns the media it
    /// carried (unwrapped from TURN when relayed); STUN and TURN control stay here. Media
    /// straight from the network counts only from the selected pair's remote address: other
    /// sources are strangers (a relay's peers are filtered by the TURN server's permissions),
    /// and before a pair is selected nothing is media yet.
    pub fn handle_datagram(
        &mut self,
        tcp: bool,
        local: SocketAddr,
        from: SocketAddr,
        bytes: &[u8],
        now: Instant,
        media: &mut Vec<Inbound>,
    ) {
        if self.consent_answer(from, bytes, now) {
            return;
        }
        if !tcp {
            self.note_peer_check(local, from, bytes, now);
        }
        let peer = self.selected.as_ref().map(|p| p.remote.address);
        let at = self.ice_now(now);
        let transport = if tcp {
            TransportType::Tcp
        } else {
            TransportType::Udp
        };
        let Some(mut stream) = self.agent.mut_stream(self.stream) else {
            return;
        };
        let reply = stream.handle_incoming_data(
            COMPONENT,
            RiceTransmit::new(bytes, transport, from, local),
            at,
        );
        // Not ICE's and from no pair rice knows: a stranger's (once the call has a pair or
        // ICE failed: then the media task's latch decides, as without ICE).
        if !reply.handled && reply.data.is_none() && !reply.have_more_data {
            if peer.is_some() || self.failed {
                media.push(Inbound::Stranger {
                    from,
                    bytes: bytes.to_vec(),
                });
            }
            self.timeout = Some(now);
            return;
        }
        if let Some(data) = reply.data {
            match peer {
                Some(peer) if peer == from => media.push(Inbound::Media(data.as_ref().to_vec())),
                Some(_) => media.push(Inbound::Stranger {
                    from,
                    bytes: data.as_ref().to_vec(),
                }),
                // ICE failed: the media task's latch decides, as without ICE.
                None if self.failed => media.push(Inbound::Stranger {
                    from,
                    bytes: data.as_ref().to_vec(),
                }),
                None => {}
            }
        }
        if reply.have_more_data {
            while let Some(pending) = stream.poll_recv() {
                media.push(Inbound::Media(pending.data));
            }
        }
        self.timeout = Some(now);
    }

    /// A TCP connection the agent asked for (`IceEvent::Connect`) is open (`Ok(local)`) or
    /// failed.
    pub fn handle_connected(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        result: Result<SocketAddr, ()>,
        now: Instant,
    ) {
        let at = self.ice_now(now);
        if let Some(mut stream) = self.agent.mut_stream(self.stream) {
            stream.allocated_socket(
                COMPONENT,
                TransportType::Tcp,
                from,
                to,
                result.map_err(|()| StunError::ResourceNotFound),
                at,
            );
        }
        self.timeout = Some(now);
    }

    /// Media to send over the selected pair; `None` before one is selected.
    /// Nothing once consent is lost (RFC 7675 §5.1: stop sending).
    pub fn send(&mut self, data: &[u8], now: Instant) -> Option<Transmit> {
        if self.consent.as_ref().is_some_and(|c| c.lost) {
            return None;
        }
        self.send_on_pair(data, now)
    }

    fn send_on_pair(&mut self, data: &[u8], now: Instant) -> Option<Transmit> {
        let at = self.ice_now(now);
        let mut stream = self.agent.mut_stream(self.stream)?;
        let mut component = stream.mut_component(COMPONENT)?;
        let transmit = component.send(data, at).ok()?;
        Some(Transmit {
            tcp: transmit.transport == TransportType::Tcp,
            from: transmit.from,
            to: transmit.to,
            data: transmit.data,
        })
    }

    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if let Some(check) = self.consent_out.pop_front() {
            return Some(check);
        }
        let at = self.ice_now(now);
        let transmit = self.agent.poll_transmit(at)?;
        Some(Transmit {
            tcp: transmit.transmit.transport == TransportType::Tcp,
            from: transmit.transmit.from,
            to: transmit.transmit.to,
            data: transmit.transmit.data,
        })
    }

    /// Drives the agent; returns what the owner must act on or show.
    pub fn poll_event(&mut self, now: Instant) -> Option<IceEvent> {
        if let Some(event) = self.events.pop_front() {
            return Some(event);
        }
        if let Some(event) = self.consent_timeout(now) {
            return Some(event);
        }
        if let Some(event) = self.select_nominated(now) {
            return Some(event);
        }
        if self.release_at.is_some_and(|at| now >= at) {
            self.release_relays();
        }
        if !self.failed
            && self.selected.is_none()
            && self
                .checks_since
                .is_some_and(|since| now >= since + self.check_limit())
        {
            self.failed = true;
            return Some(IceEvent::Failed {
                tried: self.tried(),
            });
        }
        let at = self.ice_now(now);
        // Bounded: each poll either returns or makes progress; a stuck agent waits for time.
        for _ in 0..256 {
            match self.agent.poll(at) {
                AgentPoll::WaitUntil(when) => {
                    self.timeout = Some(self.std_time(when));
                    break;
                }
                AgentPoll::Closed => {
                    self.timeout = None;
                    break;
                }
                AgentPoll::AllocateSocket(socket) => {
                    if socket.transport == TransportType::Tcp {
                        self.events.push_back(IceEvent::Connect {
                            from: socket.from,
                            to: socket.to,
                        });
                    }
                }
                AgentPoll::RemoveSocket(_) => {}
                AgentPoll::GatheredCandidate(gathered) => {
                    let gathered = gathered.gathered;
                    self.local.push(gathered.candidate.clone());
                    if self.controlling
                        && gathered.candidate.candidate_type == CandidateType::Relayed
                        && self.selected.is_none()
                    {
                        self.held_local.push(gathered);
                    } else if let Some(mut stream) = self.agent.mut_stream(self.stream) {
                        stream.add_local_gathered_candidate(gathered);
                    }
                }
                AgentPoll::GatheringComplete(_) => {
                    // With relays held back, their end comes when they are released.
                    if self.held_local.is_empty()
                        && let Some(mut stream) = self.agent.mut_stream(self.stream)
                    {
                        stream.end_of_local_candidates();
                    }
                    self.gathered = true;
                    self.events.push_back(IceEvent::Gathered(self.local_ice()));
                }
                AgentPoll::SelectedPair(selected) => {
                    let pair = selected.selected.candidate_pair().clone();
                    // rice-proto reports the pair but leaves installing it to its owner, and
                    // its Rust API offers only `set_selected_pair` (its C API installs the
                    // agent's own record); `send` finds a relay's TURN client by address.
                    if let Some(mut stream) = self.agent.mut_stream(self.stream)
                        && let Some(mut component) = stream.mut_component(COMPONENT)
                        && let Err(e) = component.set_selected_pair(pair.clone())
                    {
                        tracing::warn!(error = %e, "ICE: cannot use the selected pair");
                    }
                    let mut info = PairInfo::of(&pair.local, &pair.remote);
                    info.relay = selected.selected.local_turn().map(|turn| {
                        if self.tls_servers.contains(&turn.remote_addr()) {
                            "tls"
                        } else if turn.transport() == TransportType::Tcp {
                            "tcp"
                        } else {
                            "udp"
                        }
                    });
                    self.start_consent(&pair, now);
                    if self.selected.as_ref() != Some(&info) {
                        self.selected = Some(info.clone());
                        self.events.push_back(IceEvent::Selected(info));
                    }
                }
                AgentPoll::ComponentStateChange(change) => {
                    if change.state == ComponentConnectionState::Failed && !self.failed {
                        self.failed = true;
                        self.events.push_back(IceEvent::Failed {
                            tried: self.tried(),
                        });
                    }
                }
            }
        }
        self.events.pop_front()
    }

    /// When the agent next needs `handle_timeout`-like attention (`poll_event`).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let limit = self
            .checks_since
            .filter(|_| !self.failed && self.selected.is_none())
            .map(|since| since + self.check_limit());
        let consent = self
            .consent
            .as_ref()
            .filter(|c| !c.lost)
            .map(|c| c.next_check.min(c.last_answer + CONSENT_TIMEOUT));
        let nominated = self
            .peer_nominated
            .filter(|_| self.selected.is_none())
            .map(|(_, _, at)| at + NOMINATION_GRACE);
        [self.timeout, self.release_at, limit, consent, nominated]
            .into_iter()
            .flatten()
            .min()
    }

    /// ICE gave up: media goes to the peer's `c=` address (`CHECK_LIMIT`).
    pub fn failed(&self) -> bool {
        self.failed && self.selected.is_none()
    }

    /// Consent (RFC 7675): sends the check that is due, and says when consent is lost.
    fn consent_timeout(&mut self, now: Instant) -> Option<IceEvent> {
        let consent = self.consent.as_mut().filter(|c| !c.lost)?;
        if now >= consent.last_answer + CONSENT_TIMEOUT {
            consent.lost = true;
            let pair = self.selected.clone()?;
            tracing::warn!(%pair, "ICE: consent lost (no answer for 30 s); media stops");
            return Some(IceEvent::ConsentLost(pair));
        }
        if now < consent.next_check {
            return None;
        }
        consent.sent += 1;
        let n = consent.sent;
        let jitter = self.jitter(n);
        let consent = self.consent.as_mut()?;
        // 0.8 to 1.2 times the interval.
        consent.next_check = now + CONSENT_INTERVAL.mul_f64(0.8 + 0.4 * jitter);
        let priority = consent.priority;
        let (id, bytes) = self.consent_request(priority)?;
        if let Some(consent) = self.consent.as_mut() {
            if consent.pending.len() >= CONSENT_PENDING {
                consent.pending.pop_front();
            }
            consent.pending.push_back(id);
        }
        // Over the selected pair as media goes (through the relay for a relayed pair).
        if let Some(transmit) = self.send_on_pair(&bytes, now) {
            self.consent_out.push_back(transmit);
        }
        None
    }

    /// A uniform number in [0, 1) for the `n`th consent check, from our password (secret, and
    /// fixed for the session) and `n`: no random source in the sans-IO core.
    fn jitter(&self, n: u64) -> f64 {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(self.credentials.pwd.as_bytes());
        hash.update(n.to_be_bytes());
        let digest = hash.finalize();
        f64::from(u16::from_be_bytes([digest[0], digest[1]])) / 65536.0
    }

    /// A consent check: a Binding request as the ICE checks are (RFC 7675 §5.1), with
    /// the peer's short-term credentials.
    fn consent_request(&self, priority: u32) -> Option<(TransactionId, Vec<u8>)> {
        use rice_stun_types::attribute::{IceControlled, IceControlling, Priority};
        use stun_proto::types::attribute::Username;
        let remote = self.remote_credentials.as_ref()?;
        let mut msg = Message::builder_request(BINDING, MessageWriteVec::new());
        let id = msg.transaction_id();
        let username =
            Username::new(&format!("{}:{}", remote.ufrag, self.credentials.ufrag)).ok()?;
        msg.add_attribute(&Priority::new(priority)).ok()?;
        // The tie-breaker matters only in a role conflict, which the checks settled already.
        let tie_breaker = u128::from(id) as u64;
        if self.controlling {
            msg.add_attribute(&IceControlling::new(tie_breaker)).ok()?;
        } else {
            msg.add_attribute(&IceControlled::new(tie_breaker)).ok()?;
        }
        msg.add_attribute(&username).ok()?;
        msg.add_message_integrity(
            &MessageIntegrityCredentials::ShortTerm(ShortTermCredentials::new(remote.pwd.clone())),
            IntegrityAlgorithm::Sha1,
        )
        .ok()?;
        msg.add_fingerprint().ok()?;
        Some((id, msg.finish()))
    }

    /// An answer to one of our consent checks (straight from the peer, or from the TURN
    /// server wrapped in ChannelData or a Data indication): consent renewed; true when the
    /// datagram was that, and nothing else's.
    fn consent_answer(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) -> bool {
        let Some(consent) = self.consent.as_mut() else {
            return false;
        };
        let Some(remote) = self.remote_credentials.as_ref() else {
            return false;
        };
        let peer = self.selected.as_ref().map(|p| p.remote.address);
        // Cheap tests first: this sees every media packet.
        let inner = if consent.relayed && self.turn_servers.contains(&from) {
            unwrap_turn(bytes)
        } else if Some(from) == peer && looks_like_stun(bytes) {
            Some(std::borrow::Cow::Borrowed(bytes))
        } else {
            None
        };
        let Some(inner) = inner.filter(|b| looks_like_stun(b)) else {
            return false;
        };
        let Ok(msg) = Message::from_bytes(&inner) else {
            return false;
        };
        let ours = msg.has_method(BINDING)
            && msg.has_class(MessageClass::Success)
            && consent.pending.contains(&msg.transaction_id());
        if !ours {
            return false;
        }
        let credentials =
            MessageIntegrityCredentials::ShortTerm(ShortTermCredentials::new(remote.pwd.clone()));
        if msg.validate_integrity(&credentials).is_err() {
            return false;
        }
        consent.last_answer = now;
        consent.pending.clear();
        true
    }

    /// How long checks may run without a selected pair before ICE has failed.
    fn check_limit(&self) -> Duration {
        if self.peer_checking {
            PEER_CHECKING_LIMIT
        } else {
            CHECK_LIMIT
        }
    }

    /// Controlled: notes that the peer is checking (an authenticated Binding request came
    /// straight from it, not through a relay), and remembers the first such request with
    /// USE-CANDIDATE.
    fn note_peer_check(&mut self, local: SocketAddr, from: SocketAddr, bytes: &[u8], now: Instant) {
        if self.controlling
            || self.selected.is_some()
            || (self.peer_checking && self.peer_nominated.is_some())
            || !self.remote_set
            || !looks_like_stun(bytes)
        {
            return;
        }
        let Ok(msg) = Message::from_bytes(bytes) else {
            return;
        };
        if !(msg.has_method(BINDING) && msg.has_class(MessageClass::Request)) {
            return;
        }
        let credentials = MessageIntegrityCredentials::ShortTerm(ShortTermCredentials::new(
            self.credentials.pwd.clone(),
        ));
        if msg.validate_integrity(&credentials).is_err() {
            return;
        }
        self.peer_checking = true;
        if self.peer_nominated.is_none() && msg.raw_attribute(USE_CANDIDATE).is_some() {
            self.peer_nominated = Some((local, from, now));
        }
    }

    /// Controlled, `NOMINATION_GRACE` after the peer nominated a pair and rice-proto still
    /// selected none: that pair is ours too (the peer sends on it already).
    fn select_nominated(&mut self, now: Instant) -> Option<IceEvent> {
        let (local, from, at) = self.peer_nominated?;
        if self.selected.is_some() || now < at + NOMINATION_GRACE || self.failed {
            return None;
        }
        self.peer_nominated = None;
        let host = self
            .local
            .iter()
            .find(|c| {
                c.candidate_type == CandidateType::Host
                    && c.transport_type == TransportType::Udp
                    && c.base_address == local
            })?
            .clone();
        let mut stream = self.agent.mut_stream(self.stream)?;
        let remote = stream
            .remote_candidates()
            .iter()
            .find(|c| c.address == from && c.transport_type == TransportType::Udp)
            .cloned()
            .unwrap_or_else(|| {
                Candidate::builder(
                    COMPONENT,
                    CandidateType::PeerReflexive,
                    TransportType::Udp,
                    "rflx",
                    from,
                )
                .build()
            });
        let pair = rice_proto::candidate::CandidatePair::new(host, remote);
        let mut component = stream.mut_component(COMPONENT)?;
        if let Err(e) = component.set_selected_pair(pair.clone()) {
            tracing::warn!(error = %e, "ICE: cannot use the pair the peer nominated");
            return None;
        }
        let info = PairInfo::of(&pair.local, &pair.remote);
        tracing::info!(pair = %info, "ICE: the peer nominated this pair; selected it ourselves");
        self.start_consent(&pair, now);
        self.selected = Some(info.clone());
        Some(IceEvent::Selected(info))
    }

    fn start_consent(&mut self, pair: &rice_proto::candidate::CandidatePair, now: Instant) {
        self.consent = Some(Consent {
            next_check: now + CONSENT_INTERVAL,
            last_answer: now,
            pending: VecDeque::new(),
            priority: pair.local.priority,
            relayed: pair.local.candidate_type == CandidateType::Relayed,
            lost: false,
            sent: 0,
        });
    }

    /// Whether consent on the selected pair is lost (RFC 7675).
    pub fn consent_lost(&self) -> bool {
        self.consent.as_ref().is_some_and(|c| c.lost)
    }

    /// The held-back relayed candidates join the checks (unless a direct pair was selected
    /// meanwhile: then they are not needed), and both candidate lists end.
    fn release_relays(&mut self) {
        self.release_at = None;
        let gathered = self.gathered;
        let direct = self.selected.is_some();
        let held_local = std::mem::take(&mut self.held_local);
        let held_remote = std::mem::take(&mut self.held_remote);
        let Some(mut stream) = self.agent.mut_stream(self.stream) else {
            return;
        };
        if !direct {
            tracing::debug!(
                local = held_local.len(),
                remote = held_remote.len(),
                "ICE: relayed candidates join the checks"
            );
            for candidate in held_local {
                stream.add_local_gathered_candidate(candidate);
            }
            for candidate in held_remote {
                stream.add_remote_candidate(candidate);
            }
        }
        stream.end_of_remote_candidates();
        if gathered {
            stream.end_of_local_candidates();
        }
    }

    /// Our credentials in this ICE session (a restart is a new agent with new ones).
    pub fn credentials(&self) -> &IceCredentials {
        &self.credentials
    }

    /// The peer's credentials once `set_remote` gave them.
    pub fn remote_credentials(&self) -> Option<&IceCredentials> {
        self.remote_credentials.as_ref()
    }

    pub fn selected(&self) -> Option<&PairInfo> {
        self.selected.as_ref()
    }

    pub fn gathered(&self) -> bool {
        self.gathered
    }

    pub fn remote_set(&self) -> bool {
        self.remote_set
    }

    /// Our credentials and candidates as the SDP carries them, the best candidate first
    /// (the one to put in `c=`/`m=`: `default_candidate`).
    pub fn local_ice(&self) -> LocalIce {
        let mut candidates = self.local.clone();
        candidates
            .retain(|c| c.component_id == COMPONENT && c.transport_type == TransportType::Udp);
        candidates.sort_by_key(|c| std::cmp::Reverse(c.priority));
        LocalIce {
            credentials: self.credentials.clone(),
            candidates: candidates
                .iter()
                .map(|c| {
                    let sdp = c.to_sdp_string();
                    let value = sdp.strip_prefix("a=candidate:").unwrap_or(&sdp);
                    as_component(value, self.sdp_component)
                })
                .collect(),
        }
    }

    /// The default candidate (`c=`/`m=`, RFC 8445 §5.1.4): server-reflexive, else host, else
    /// relayed. RFC 8445 suggests the relay, but a peer without ICE then sends to an address
    /// the TURN server only opens to peers we gave permission; the reflexive address is what
    /// sipterm's STUN put there before ICE, and what a latching peer answers to.
    pub fn default_candidate(&self) -> Option<SocketAddr> {
        let rank = |c: &Candidate| match c.candidate_type {
            CandidateType::ServerReflexive => 0,
            CandidateType::Host => 1,
            CandidateType::PeerReflexive => 2,
            CandidateType::Relayed => 3,
        };
        self.local
            .iter()
            .filter(|c| c.component_id == COMPONENT && c.transport_type == TransportType::Udp)
            .min_by_key(|c| rank(c))
            .map(|c| c.address)
    }

    /// The pairs ICE formed (RFC 8445 §6.1.2.2: same component, same address family), as the
    /// user sees them when none worked.
    pub fn tried(&self) -> Vec<PairInfo> {
        let Some(stream) = self.agent.stream(self.stream) else {
            return Vec::new();
        };
        let remote = stream.remote_candidates();
        let mut tried = Vec::new();
        for local in stream.local_candidates() {
            for remote in remote {
                if local.address.is_ipv4() == remote.address.is_ipv4()
                    && local.transport_type == remote.transport_type
                    && tried.len() < MAX_TRIED
                {
                    tried.push(PairInfo::of(local, remote));
                }
            }
        }
        tried
    }

    /// Why a pair's kind is what it is, for logs.
    pub fn describe(candidate: &Candidate) -> &'static str {
        kind(candidate.candidate_type)
    }

    /// Forgets the agent's timers, for a call that ended.
    pub fn close(&mut self, now: Instant) {
        let at = self.ice_now(now);
        self.agent.close(at);
        self.timeout = Some(now);
    }
}

/// A candidate's SDP value (rice's, always component 1) as `component`'s: the component field
/// replaced, and the priority's low byte (256 - component, RFC 8445 §5.1.2.1) lowered to
/// match. Unchanged when it does not have the fields.
fn as_component(value: &str, component: usize) -> String {
    if component == COMPONENT {
        return value.to_owned();
    }
    let mut fields: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    let Some(priority) = fields.get(3).and_then(|p| p.parse::<u32>().ok()) else {
        return value.to_owned();
    };
    let lower = u32::try_from(component.saturating_sub(COMPONENT)).unwrap_or(0);
    // `fields` has at least four entries: the priority was there.
    fields[1] = component.to_string();
    fields[3] = priority.saturating_sub(lower).to_string();
    fields.join(" ")
}

/// The payload of a TURN ChannelData message (RFC 8656 §12.4) or Data indication (§11.4),
/// as the TURN server relays it to us.
fn unwrap_turn(bytes: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    match bytes.first()? {
        0x40..=0x7f => {
            let len = usize::from(u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]));
            bytes.get(4..4 + len).map(std::borrow::Cow::Borrowed)
        }
        _ if looks_like_stun(bytes) => {
            let msg = Message::from_bytes(bytes).ok()?;
            if !(msg.has_method(TURN_DATA) && msg.has_class(MessageClass::Indication)) {
                return None;
            }
            let data = msg.raw_attribute(TURN_DATA_ATTRIBUTE)?;
            Some(std::borrow::Cow::Owned(data.value.to_vec()))
        }
        _ => None,
    }
}

/// A STUN message's first bits and magic cookie (RFC 8489 §5): not RTP, RTCP or ChannelData.
fn looks_like_stun(bytes: &[u8]) -> bool {
    bytes.len() >= 20 && bytes[0] & 0xc0 == 0 && bytes[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// TURN's Data indication and its DATA attribute (RFC 8656 §18, §19).
const TURN_DATA: stun_proto::types::message::Method =
    stun_proto::types::message::Method::new(0x0007);
const TURN_DATA_ATTRIBUTE: stun_proto::types::attribute::AttributeType =
    stun_proto::types::attribute::AttributeType::new(0x0013);
/// ICE's USE-CANDIDATE attribute (RFC 8445 §16.1).
const USE_CANDIDATE: stun_proto::types::attribute::AttributeType =
    stun_proto::types::attribute::AttributeType::new(0x0025);

/// How long gathering may take before the SDP goes out with what there is: a dead STUN or
/// TURN server must not hold a call up (RFC 8445 leaves the bound to the application).
pub const GATHER_LIMIT: Duration = Duration::from_secs(3);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp::RemoteIce;

    fn agent(host: &str, controlling: bool, seed: u8, now: Instant) -> IceAgent {
        let setup = IceSetup {
            credentials: IceCredentials::from_random([seed; 32]),
            host: host.parse().expect("address"),
            stun: None,
            turn: Vec::new(),
            controlling,
        };
        IceAgent::new(&setup, now).expect("agent")
    }

    fn gathered(agent: &mut IceAgent, now: Instant) -> LocalIce {
        for _ in 0..10 {
            if let Some(IceEvent::Gathered(local)) = agent.poll_event(now) {
                return local;
            }
        }
        panic!("no gathering");
    }

    fn negotiated(local: &LocalIce, remote: &LocalIce, controlling: bool) -> NegotiatedIce {
        NegotiatedIce {
            local: local.credentials.clone(),
            remote: RemoteIce {
                credentials: remote.credentials.clone(),
                candidates: remote.candidates.clone(),
                lite: false,
            },
            controlling,
        }
    }

    fn deliver(from: &mut IceAgent, to: &mut IceAgent, now: Instant) {
        while let Some(t) = from.poll_transmit(now) {
            let mut media = Vec::new();
            to.handle_datagram(false, t.to, t.from, &t.data, now, &mut media);
            assert!(media.is_empty(), "checks are not media");
        }
    }

    /// What a TURN server relays: ChannelData (padded or not) and a Data indication give
    /// back the peer's datagram; RTP and garbage give nothing.
    #[test]
    fn turn_wrapping_is_undone_for_consent_answers() {
        let inner = {
            let mut msg = Message::builder_request(BINDING, MessageWriteVec::new());
            msg.add_fingerprint().expect("fingerprint");
            msg.finish()
        };
        let mut channel = vec![0x40, 0x01];
        channel.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        channel.extend_from_slice(&inner);
        channel.extend_from_slice(&[0, 0, 0]);
        assert_eq!(unwrap_turn(&channel).as_deref(), Some(&inner[..]));
        let indication = {
            use stun_proto::types::attribute::RawAttribute;
            let mut msg = Message::builder(
                stun_proto::types::message::MessageType::from_class_method(
                    MessageClass::Indication,
                    TURN_DATA,
                ),
                TransactionId::generate(),
                MessageWriteVec::new(),
            );
            msg.add_attribute(&RawAttribute::new(TURN_DATA_ATTRIBUTE, &inner))
                .expect("DATA");
            msg.finish()
        };
        assert_eq!(unwrap_turn(&indication).as_deref(), Some(&inner[..]));
        assert!(looks_like_stun(&inner));
        assert_eq!(unwrap_turn(&[0x80, 0, 0, 1, 0, 0, 0, 0]), None);
        assert_eq!(unwrap_turn(&[0x40, 0x01, 0xff, 0xff, 1]), None);
        assert_eq!(unwrap_turn(&[]), None);
    }

    /// Runs both agents (delivering a's datagrams to b, and b's to a when `b_to_a`) until
    /// both selected a pair or `limit` passed; returns the events seen.
    fn step(
        a: &mut IceAgent,
        b: &mut IceAgent,
        now: Instant,
        b_to_a: bool,
        a_requests: &mut Vec<Instant>,
    ) -> (Vec<IceEvent>, Vec<IceEvent>) {
        while let Some(t) = a.poll_transmit(now) {
            if Message::from_bytes(&t.data)
                .is_ok_and(|m| m.has_method(BINDING) && m.has_class(MessageClass::Request))
            {
                a_requests.push(now);
            }
            let mut media = Vec::new();
            b.handle_datagram(false, t.to, t.from, &t.data, now, &mut media);
            assert!(media.is_empty(), "checks are not media");
        }
        if b_to_a {
            deliver(b, a, now);
        } else {
            while b.poll_transmit(now).is_some() {}
        }
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        while let Some(e) = a.poll_event(now) {
            ea.push(e);
        }
        while let Some(e) = b.poll_event(now) {
            eb.push(e);
        }
        (ea, eb)
    }

    /// Two agents that selected the host pair; the time they did.
    fn connected(now: &mut Instant) -> (IceAgent, IceAgent) {
        let mut a = agent("192.0.2.1:4000", true, 1, *now);
        let mut b = agent("192.0.2.2:5000", false, 2, *now);
        let (la, lb) = (gathered(&mut a, *now), gathered(&mut b, *now));
        a.set_remote(&negotiated(&la, &lb, true), *now);
        b.set_remote(&negotiated(&lb, &la, false), *now);
        let mut selected = (false, false);
        for _ in 0..2000 {
            let (ea, eb) = step(&mut a, &mut b, *now, true, &mut Vec::new());
            selected.0 |= ea.iter().any(|e| matches!(e, IceEvent::Selected(_)));
            selected.1 |= eb.iter().any(|e| matches!(e, IceEvent::Selected(_)));
            if selected.0 && selected.1 {
                return (a, b);
            }
            *now += Duration::from_millis(5);
        }
        panic!("no pair selected");
    }

    /// A `turns:` server the driver could not use (its certificate refused, so
    /// `handle_connected` says the connection failed) costs the relay only: gathering ends
    /// with the host candidate, and the checks still select the host pair.
    #[test]
    fn a_refused_turns_connection_leaves_the_other_candidates_to_carry_the_call() {
        let mut now = crate::test_clock::t0();
        let setup = IceSetup {
            credentials: IceCredentials::from_random([1; 32]),
            host: "192.0.2.1:4000".parse().expect("address"),
            stun: None,
            turn: vec![TurnSetup {
                server: "198.51.100.7:5349".parse().expect("address"),
                transport: TurnTransport::Tls,
                local: "192.0.2.1:0".parse().expect("address"),
                username: "user".to_owned(),
                password: "secret".to_owned(),
                tls: None,
            }],
            controlling: true,
        };
        let mut a = IceAgent::new(&setup, now).expect("agent");
        let mut b = agent("192.0.2.2:5000", false, 2, now);
        let mut asked = false;
        let mut local = None;
        for _ in 0..500 {
            while let Some(t) = a.poll_transmit(now) {
                assert!(
                    !t.tcp,
                    "nothing goes to a TURN server that was never reached"
                );
            }
            match a.poll_event(now) {
                Some(IceEvent::Connect { from, to }) => {
                    assert_eq!(to, setup.turn[0].server);
                    asked = true;
                    a.handle_connected(from, to, Err(()), now);
                }
                Some(IceEvent::Gathered(gathered)) => {
                    local = Some(gathered);
                    break;
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => now += Duration::from_millis(10),
            }
        }
        assert!(asked, "the agent asked for the TURN server's connection");
        let la = local.expect("gathering ended without the relay");
        assert!(
            la.candidates.iter().any(|c| c.contains("typ host")),
            "{la:?}"
        );
        assert!(
            !la.candidates.iter().any(|c| c.contains("typ relay")),
            "{la:?}"
        );
        let lb = gathered(&mut b, now);
        a.set_remote(&negotiated(&la, &lb, true), now);
        b.set_remote(&negotiated(&lb, &la, false), now);
        let mut selected = None;
        for _ in 0..2000 {
            let (ea, _) = step(&mut a, &mut b, now, true, &mut Vec::new());
            if let Some(pair) = ea.into_iter().find_map(|e| match e {
                IceEvent::Selected(pair) => Some(pair),
                _ => None,
            }) {
                selected = Some(pair);
                break;
            }
            now += Duration::from_millis(5);
        }
        let pair = selected.expect("a pair without the relay");
        assert_eq!(pair.path(), "host", "{pair}");
        assert_eq!(pair.relay, None);
    }

    /// RFC 7675 on virtual time: while the peer answers, consent checks go out every 4 to
    /// 6 s and consent holds (well past 30 s); once its answers stop, consent is lost within
    /// 24 to 30 s (the last answer was at most one interval before), and media stops.
    #[test]
    fn consent_holds_while_the_peer_answers_and_is_lost_30_s_after_it_stops() {
        let mut now = crate::test_clock::t0();
        let (mut a, mut b) = connected(&mut now);
        let tick = Duration::from_millis(100);
        let mut requests = Vec::new();
        let until = now + Duration::from_secs(65);
        while now < until {
            let (ea, _) = step(&mut a, &mut b, now, true, &mut requests);
            assert!(
                !ea.iter().any(|e| matches!(e, IceEvent::ConsentLost(_))),
                "consent lost while the peer answers"
            );
            now += tick;
        }
        assert!(
            requests.len() >= 10,
            "{} consent checks in 65 s",
            requests.len()
        );
        for gap in requests.windows(2).map(|w| w[1] - w[0]) {
            assert!(
                gap >= Duration::from_secs(4) && gap <= Duration::from_secs(6) + tick,
                "consent checks {gap:?} apart"
            );
        }
        let spread: Vec<Duration> = requests.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            spread.iter().any(|g| *g != spread[0]),
            "the interval is randomized: {spread:?}"
        );
        assert!(!a.consent_lost() && a.send(b"rtp", now).is_some());

        // The peer goes silent (its answers no longer arrive).
        let silent_since = now;
        let lost_at = loop {
            let (ea, _) = step(&mut a, &mut b, now, false, &mut requests);
            if let Some(IceEvent::ConsentLost(pair)) = ea.first() {
                assert_eq!(pair.path(), "host");
                break now;
            }
            assert!(
                now < silent_since + Duration::from_secs(31),
                "consent never lost"
            );
            now += tick;
        };
        let after = lost_at - silent_since;
        assert!(
            after >= Duration::from_secs(24) && after <= CONSENT_TIMEOUT + tick,
            "consent lost {after:?} after the last answers"
        );
        assert!(a.consent_lost());
        assert!(a.send(b"rtp", now).is_none(), "no media without consent");
        assert!(
            !a.failed(),
            "consent lost is not ICE failure: no fallback to c="
        );
    }

    /// The RTCP component's agent writes its candidates as component 2 (priority one lower,
    /// RFC 8445 §5.1.2.1) and takes only the peer's component-2 candidates; two such agents
    /// connect as the RTP ones do.
    #[test]
    fn rtcp_agents_speak_component_2_and_connect() {
        let mut now = crate::test_clock::t0();
        let setup = |host: &str, controlling, seed| IceSetup {
            credentials: IceCredentials::from_random([seed; 32]),
            host: host.parse().expect("address"),
            stun: None,
            turn: Vec::new(),
            controlling,
        };
        let rtcp = |host: &str, controlling, seed, now| {
            let setup = setup("192.0.2.99:1", controlling, seed);
            IceAgent::for_rtcp(&setup, host.parse().expect("address"), now).expect("agent")
        };
        let mut a = rtcp("192.0.2.1:4001", true, 1, now);
        let mut b = rtcp("192.0.2.2:5001", false, 2, now);
        let (la, lb) = (gathered(&mut a, now), gathered(&mut b, now));
        assert_eq!(a.component(), RTCP_COMPONENT);
        let fields: Vec<&str> = la.candidates[0].split_whitespace().collect();
        assert_eq!(fields[1], "2", "{la:?}");
        assert_eq!(fields[4..6], ["192.0.2.1", "4001"], "{la:?}");
        let rtp = IceAgent::new(&setup("192.0.2.1:4000", true, 1), now).expect("agent");
        let rtp_local = {
            let mut rtp = rtp;
            gathered(&mut rtp, now)
        };
        let priority = |c: &str| {
            c.split_whitespace()
                .nth(3)
                .and_then(|p| p.parse::<u32>().ok())
                .expect("priority")
        };
        assert!(priority(&la.candidates[0]) < priority(&rtp_local.candidates[0]));
        // The peer's component-1 candidates are not this agent's.
        let mut with_rtp = negotiated(&la, &lb, true);
        with_rtp
            .remote
            .candidates
            .push("9 1 UDP 2130706431 192.0.2.2 5000 typ host".to_owned());
        a.set_remote(&with_rtp, now);
        b.set_remote(&negotiated(&lb, &la, false), now);
        let mut selected = None;
        for _ in 0..2000 {
            let (ea, _) = step(&mut a, &mut b, now, true, &mut Vec::new());
            if let Some(IceEvent::Selected(pair)) =
                ea.into_iter().find(|e| matches!(e, IceEvent::Selected(_)))
            {
                selected = Some(pair);
                break;
            }
            now += Duration::from_millis(5);
        }
        let pair = selected.expect("the RTCP pair");
        assert_eq!(
            pair.to_string(),
            "host 192.0.2.1:4001 -> host 192.0.2.2:5001"
        );
    }

    /// A controlled agent whose peer checks but has not nominated yet (baresip nominates once
    /// all its checks ended, ~10 s) does not give up at `CHECK_LIMIT`: the peer's
    /// authenticated checks reach it, so it waits up to `PEER_CHECKING_LIMIT`. Without them
    /// it gives up at `CHECK_LIMIT` as before, and unauthenticated requests do not count.
    #[test]
    fn a_controlled_agent_waits_for_a_peer_that_checks_but_has_not_nominated() {
        let failed_at = |checks: Option<bool>| {
            let start = crate::test_clock::t0();
            let mut a = agent("192.0.2.1:4000", true, 1, start);
            let mut b = agent("192.0.2.2:5000", false, 2, start);
            let (la, lb) = (gathered(&mut a, start), gathered(&mut b, start));
            a.set_remote(&negotiated(&la, &lb, true), start);
            b.set_remote(&negotiated(&lb, &la, false), start);
            let (from, to) = (
                "192.0.2.1:4000".parse().expect("address"),
                "192.0.2.2:5000".parse().expect("address"),
            );
            let mut now = start;
            while now < start + PEER_CHECKING_LIMIT + Duration::from_secs(2) {
                if let Some(authentic) = checks {
                    let (_, mut check) = a.consent_request(1).expect("a check");
                    if !authentic {
                        // A wrong MESSAGE-INTEGRITY byte (the fingerprint follows it).
                        let at = check.len() - 9;
                        check[at] ^= 0xff;
                    }
                    b.handle_datagram(false, to, from, &check, now, &mut Vec::new());
                }
                while b.poll_transmit(now).is_some() {}
                while let Some(e) = b.poll_event(now) {
                    if matches!(e, IceEvent::Failed { .. }) {
                        return Some(now - start);
                    }
                }
                now += Duration::from_millis(500);
            }
            None
        };
        let waited = failed_at(Some(true)).expect("fails in the end");
        assert!(
            waited >= PEER_CHECKING_LIMIT && waited <= PEER_CHECKING_LIMIT + Duration::from_secs(1),
            "a checking peer: failed after {waited:?}"
        );
        for checks in [None, Some(false)] {
            let waited = failed_at(checks).expect("fails");
            assert!(
                waited >= CHECK_LIMIT && waited <= CHECK_LIMIT + Duration::from_secs(1),
                "{checks:?}: failed after {waited:?}"
            );
        }
    }

    /// Two full agents on an in-memory wire, on virtual time: the controlling one nominates,
    /// both select the host pair, and media passes both ways.
    #[test]
    fn two_agents_select_the_host_pair_and_carry_media() {
        let mut now = crate::test_clock::t0();
        let mut a = agent("192.0.2.1:4000", true, 1, now);
        let mut b = agent("192.0.2.2:5000", false, 2, now);
        let (la, lb) = (gathered(&mut a, now), gathered(&mut b, now));
        assert_eq!(la.candidates.len(), 1, "{la:?}");
        assert!(
            la.candidates[0].contains("192.0.2.1 4000 typ host"),
            "{la:?}"
        );
        a.set_remote(&negotiated(&la, &lb, true), now);
        b.set_remote(&negotiated(&lb, &la, false), now);
        let mut selected = (None, None);
        for _ in 0..2000 {
            deliver(&mut a, &mut b, now);
            deliver(&mut b, &mut a, now);
            while let Some(e) = a.poll_event(now) {
                if let IceEvent::Selected(p) = e {
                    selected.0 = Some(p);
                }
            }
            while let Some(e) = b.poll_event(now) {
                if let IceEvent::Selected(p) = e {
                    selected.1 = Some(p);
                }
            }
            if selected.0.is_some() && selected.1.is_some() {
                break;
            }
            now += Duration::from_millis(5);
        }
        let (pa, pb) = (
            selected.0.expect("a selects"),
            selected.1.expect("b selects"),
        );
        assert_eq!(pa.to_string(), "host 192.0.2.1:4000 -> host 192.0.2.2:5000");
        assert_eq!(pb.path(), "host");
        let t = a.send(b"rtp", now).expect("a sends");
        let mut media = Vec::new();
        b.handle_datagram(false, t.to, t.from, &t.data, now, &mut media);
        assert_eq!(media, vec![Inbound::Media(b"rtp".to_vec())]);
        // The same bytes from anyone else are a stranger's.
        let stranger: SocketAddr = "192.0.2.66:4000".parse().expect("address");
        let mut media = Vec::new();
        b.handle_datagram(false, t.to, stranger, b"rtp", now, &mut media);
        assert_eq!(
            media,
            vec![Inbound::Stranger {
                from: stranger,
                bytes: b"rtp".to_vec()
            }]
        );
    }
}
