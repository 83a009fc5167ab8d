//! Peer exchange: connected peers tell each other whom else they are connected to.
//!
//! [`protocol`] is the wire format (one size-capped peer list per stream) and the functions
//! that read and write it; [`handler`] is the per-connection side, which sends the lists the
//! manager hands over and reports the lists the remote sends. What to send and what to make of
//! a received list is the manager's decision (see [`PeerExchange`](crate::PeerExchange)).

pub mod handler;
pub mod protocol;
