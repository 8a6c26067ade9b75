//! tokio drivers: sockets and timers around the sans-IO cores.

pub mod call_audio;
pub mod capture;
pub mod command;
pub mod diagnosis_task;
pub mod dns;
pub mod ice_prepare;
pub mod ice_task;
pub mod icmp;
pub mod locate;
pub mod media_task;
pub mod nat;
pub mod router;
pub mod sip_task;
pub mod tls;
pub mod tone_task;
pub mod transport;
pub mod voice_thread;
