//! Typed refusals of a connection, carried inside `libp2p_swarm::ConnectionDenied`.

use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;

/// Why the connection manager refused a connection.
///
/// The swarm reports it inside [`libp2p_swarm::ConnectionDenied`]; get it back with
/// `denied.downcast_ref::<Denial>()` (or `downcast::<Denial>()`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The remote has our own peer id (two nodes sharing a key).
    #[error("connection to our own peer id {peer} refused")]
    SelfConnection {
        /// Our (and the remote's) peer id.
        peer: PeerId,
    },
    /// Another connection to the peer already won the one-connection-per-peer tie-break.
    #[error("duplicate connection to {peer}: connection {kept} is kept")]
    Duplicate {
        /// The remote peer.
        peer: PeerId,
        /// The connection that is kept.
        kept: ConnectionId,
    },
    /// The hard cap on connections to one peer is reached.
    #[error("per-peer limit {limit} reached for {peer} ({current} established)")]
    PerPeerLimit {
        /// The remote peer.
        peer: PeerId,
        /// The configured cap.
        limit: u32,
        /// Connections to the peer when the new one was refused.
        current: u32,
    },
    /// The manager was shut down and accepts no connection.
    #[error("the connection manager is shut down")]
    Terminated,
}
