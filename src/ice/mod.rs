//! ICE (RFC 8445) with STUN and TURN (RFC 8656) for a call's audio stream, sans-IO.
//!
//! The protocol work is rice-proto's (a maintained sans-IO ICE agent with its STUN and TURN
//! companions, stun-proto and turn-client-proto): candidate gathering (host, server-reflexive,
//! relayed over UDP, TCP or TLS to the TURN server), pairing, paced connectivity checks,
//! nomination by the controlling agent, TURN allocation refresh, permissions and channels.
//! What it lacks is said where we fill it in (see `agent`). This module adapts it to
//! sipterm's conventions: time comes in as `now` (never read here), datagrams come in and go
//! out through the driver (`driver::ice_task`), and our SDP layer (`sdp::ice`) sees candidates
//! as text only.

pub mod agent;
pub mod pair;
pub mod server;
pub mod tcp_frame;

pub use agent::{IceAgent, IceEvent, IceSetup, Inbound, Transmit};
pub use pair::PairInfo;
pub use server::{TurnServer, TurnTransport, parse_turn_server};
