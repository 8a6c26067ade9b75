//! sipterm: a terminal SIP softphone.
//!
//! Layers (see DESIGN.md): `sip` is the sans-IO protocol core, `media` the RTP engine, `driver`
//! the tokio tasks that move bytes between sockets and the cores, `ui` and `headless` the two
//! front ends over the same `Command` / `Event` types.

pub mod app;
pub mod cli;
pub mod config;
pub mod diagnosis;
pub mod dns;
pub mod driver;
pub mod event;
pub mod export;
pub mod headless;
pub mod ice;
pub mod logging;
pub mod media;
pub mod nat;
pub mod policy;
pub mod sdp;
pub mod session_export;
pub mod sip;
#[cfg(test)]
mod test_clock;
pub mod ui;
