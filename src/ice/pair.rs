//! What the user is shown about a candidate pair: which kind of path the audio takes.

use std::fmt;
use std::net::SocketAddr;

use rice_proto::candidate::{Candidate, CandidateType};

/// One side of a pair: its kind (`host`, `srflx`, `prflx`, `relay`) and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub kind: &'static str,
    pub address: SocketAddr,
}

/// A local and a remote candidate: a path media can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairInfo {
    pub local: Side,
    pub remote: Side,
    /// When our side is a TURN relay: how we reach the TURN server (`udp`, `tcp`, `tls`).
    pub relay: Option<&'static str>,
}

pub(crate) fn kind(candidate_type: CandidateType) -> &'static str {
    match candidate_type {
        CandidateType::Host => "host",
        CandidateType::PeerReflexive => "prflx",
        CandidateType::ServerReflexive => "srflx",
        CandidateType::Relayed => "relay",
    }
}

impl PairInfo {
    pub(crate) fn of(local: &Candidate, remote: &Candidate) -> PairInfo {
        PairInfo {
            local: Side {
                kind: kind(local.candidate_type),
                address: local.address,
            },
            remote: Side {
                kind: kind(remote.candidate_type),
                address: remote.address,
            },
            relay: None,
        }
    }

    /// The kind that names the path: a relay on either side carries it through TURN, else a
    /// reflexive address means a NAT was crossed, else both are on the same network.
    pub fn path(&self) -> &'static str {
        let kinds = [self.local.kind, self.remote.kind];
        if kinds.contains(&"relay") {
            "relay"
        } else if kinds.contains(&"srflx") {
            "srflx"
        } else if kinds.contains(&"prflx") {
            "prflx"
        } else {
            "host"
        }
    }
}

impl fmt::Display for PairInfo {
    /// `relay 198.51.100.1:49152 -> srflx 203.0.113.2:40000`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {} {}",
            self.local.kind, self.local.address, self.remote.kind, self.remote.address
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(kind: &'static str, address: &str) -> Side {
        Side {
            kind,
            address: address.parse().expect("address"),
        }
    }

    #[test]
    fn the_path_is_named_by_its_most_indirect_side() {
        let pair = PairInfo {
            local: side("host", "10.0.0.2:4000"),
            remote: side("relay", "192.0.2.9:50000"),
            relay: None,
        };
        assert_eq!(pair.path(), "relay");
        assert_eq!(
            pair.to_string(),
            "host 10.0.0.2:4000 -> relay 192.0.2.9:50000"
        );
        let srflx = PairInfo {
            local: side("srflx", "198.51.100.2:4000"),
            remote: side("host", "203.0.113.5:5000"),
            relay: None,
        };
        assert_eq!(srflx.path(), "srflx");
    }
}
