//! NAT traversal helpers, all sans-IO: a STUN Binding client (RFC 5389) to learn our public
//! address, and the symmetric-RTP latching decision. The drivers own the sockets and clocks.

pub mod latch;
pub mod stun;
#[cfg(test)]
mod stun_tests;
