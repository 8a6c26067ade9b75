//! The SIP protocol core. No I/O here: no sockets, no tokio, no clock. Time and bytes come in,
//! datagrams, timers and events come out.

pub mod auth;
pub mod dialog;
pub mod error;
pub mod event;
pub mod header;
pub mod ids;
pub mod im;
pub mod message;
pub mod parse;
pub mod print;
pub mod registration;
pub mod transaction;
pub mod ua;
pub mod uri;
