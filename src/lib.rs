//! libp2p connection manager (work in progress).
#![deny(missing_docs)]

mod config;
pub mod core;
pub mod protocol;
mod reason;

pub use config::Config;
pub use reason::DisconnectReason;
