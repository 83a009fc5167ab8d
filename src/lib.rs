//! libp2p connection manager (work in progress).
#![deny(missing_docs)]

mod behaviour;
mod config;
pub mod core;
pub mod handler;
pub mod protocol;
mod reason;

pub use behaviour::Behaviour;
pub use config::Config;
pub use core::{
    Backoff, ClosedBy, ConnectionInfo, Denial, DialFailure, Event, Initiator, PeerInfo, Phase,
};
pub use reason::DisconnectReason;
