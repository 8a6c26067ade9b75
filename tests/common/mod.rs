//! Test harness shared by the integration tests: free ports, child processes
//! that are always killed, and the real SIP peers (sipp, Kamailio, baresip).
//!
//! Include it with `mod common;`. Each test binary uses a subset, hence the
//! `dead_code` allowances.
#![allow(dead_code)]

pub mod audio;
pub mod bad_link;
pub mod certs;
pub mod headless;
pub mod lab;
pub mod pair;
pub mod peers;
pub mod ports;
pub mod process;
pub mod rtp_stream;
pub mod sim;

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while driving a peer or a child process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HarnessError {
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {waited:?} waiting for {what}; recent output:\n{recent}")]
    Timeout {
        what: String,
        waited: Duration,
        recent: String,
    },
    #[error("{name} exited ({status}) while waiting for {what}; recent output:\n{recent}")]
    Exited {
        name: String,
        status: String,
        what: String,
        recent: String,
    },
    #[error("{name} failed ({status}); its log:\n{log}")]
    PeerFailed {
        name: String,
        status: String,
        log: String,
    },
    #[error("{name} did not finish within {waited:?}; its log:\n{log}")]
    PeerHung {
        name: String,
        waited: Duration,
        log: String,
    },
    #[error("invalid {what}: {value:?} ({why})")]
    InvalidInput {
        what: &'static str,
        value: String,
        why: &'static str,
    },
}

impl HarnessError {
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            action: action.into(),
            source,
        }
    }
}

/// `tests/data/<relative>` inside this crate.
pub fn test_data(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(relative)
}
