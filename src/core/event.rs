//! What the manager reports to the application.

use std::time::Duration;

use libp2p_core::{Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;

use web_time::Instant;

use super::DisconnectReason;
use super::{BanTarget, ClosedBy, Denial, HealthCategory, Initiator, Phase};

/// An event of the connection manager, emitted as the behaviour's `ToSwarm::GenerateEvent`.
///
/// Each side reports what it did: a duplicate resolved between two managers usually shows up as
/// a [`DuplicateClosed`](Event::DuplicateClosed) on both ends.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A connection became the one connection kept to its peer.
    ConnectionKept {
        /// The remote peer.
        peer: PeerId,
        /// The kept connection.
        connection: ConnectionId,
        /// Who dialed it (by effective role).
        initiator: Initiator,
        /// Which side dialed it at the transport level.
        direction: Endpoint,
    },
    /// A duplicate connection to a peer is being closed (goodbye `Duplicate`). One that lost
    /// the tie-break as soon as it came up drained first (about a second), so that what its
    /// opener started on it could finish.
    DuplicateClosed {
        /// The remote peer.
        peer: PeerId,
        /// The connection that is kept.
        kept: ConnectionId,
        /// The connection that is closed.
        closed: ConnectionId,
    },
    /// A connection closed.
    Disconnected {
        /// The remote peer.
        peer: PeerId,
        /// The closed connection.
        connection: ConnectionId,
        /// Why, from our own decision, the remote's goodbye, or the transport.
        reason: DisconnectReason,
        /// Which side ended it.
        closed_by: ClosedBy,
        /// Connections to the peer that remain established.
        remaining: usize,
    },
    /// The remote said goodbye on a connection, before closing it.
    GoodbyeReceived {
        /// The remote peer.
        peer: PeerId,
        /// The connection the goodbye came on.
        connection: ConnectionId,
        /// The remote's reason.
        reason: DisconnectReason,
        /// How long the remote asks us to wait before dialing it again.
        retry_after: Option<Duration>,
    },
    /// A connection was refused by the manager.
    Denied {
        /// The remote peer, when known.
        peer: Option<PeerId>,
        /// The refused connection.
        connection: ConnectionId,
        /// Why.
        denial: Denial,
    },
    /// A dial to a peer failed or timed out.
    DialFailed {
        /// The peer, when the dial named one.
        peer: Option<PeerId>,
        /// The failed connection attempt.
        connection: ConnectionId,
        /// Why.
        cause: DialFailureCause,
    },
    /// The manager will dial a peer again.
    RedialScheduled {
        /// The peer.
        peer: PeerId,
        /// In how long.
        delay: Duration,
        /// The number of this attempt since the peer was last connected (1 for the first).
        attempt: u32,
    },
    /// The manager stopped redialing a wanted peer after too many failed attempts.
    RedialGaveUp {
        /// The peer.
        peer: PeerId,
        /// The attempts made.
        attempts: u32,
    },
    /// A peer or a network was banned (or its ban changed), by the application or, after
    /// protocol violations, automatically (see [`AutomaticBans`](crate::AutomaticBans)).
    Banned {
        /// What is banned.
        target: BanTarget,
        /// Until when; `None` for ever.
        until: Option<Instant>,
    },
    /// A ban ended.
    Unbanned {
        /// What was banned.
        target: BanTarget,
        /// `true` when it ran out, `false` when it was lifted (by the application, or an
        /// automatic ban evicted to make room for a newer one, see
        /// [`AutomaticBans`](crate::AutomaticBans)).
        expired: bool,
    },
    /// A wanted peer was refused by a local limit and waits for a slot to free up; it is
    /// dialed again, in order, when one does.
    WaitingForResources {
        /// The peer.
        peer: PeerId,
        /// The limit that refused it.
        denial: Denial,
    },
    /// The manager forgot a peer: discovery had removed it and it could not be reached, or the
    /// application asked.
    PeerForgotten {
        /// The peer.
        peer: PeerId,
    },
    /// Connected peers went above the high watermark: these peers' connections are being
    /// closed (goodbye `NetworkRestructure`), first trimmed first. They are not redialed.
    /// Peers the application dialed are never trimmed; peers discovery brought are trimmed
    /// only after every peer nobody asked for (outside the share kept for diversity), and
    /// are then no longer wanted: `no_longer_wanted` names them.
    Trimmed {
        /// The trimmed peers.
        peers: Vec<PeerId>,
        /// Those of `peers` that were wanted (added by discovery) and are not any more.
        no_longer_wanted: Vec<PeerId>,
    },
    /// The health category of a connection changed (`old` is `None` on its first assessment).
    HealthChanged {
        /// The remote peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// The category before.
        old: Option<HealthCategory>,
        /// The category now.
        new: HealthCategory,
    },
    /// A connection stayed Critical longer than the degraded grace: it is closed (goodbye
    /// `NetworkRestructure`) and the peer dialed again at once.
    ConnectionReplaced {
        /// The remote peer.
        peer: PeerId,
        /// The replaced connection.
        connection: ConnectionId,
    },
    /// State kept by a peer store was taken over at start (see
    /// [`Behaviour::with_store`](crate::Behaviour::with_store)).
    Restored(super::RestoreSummary),
    /// The node changed phase.
    PhaseChanged {
        /// The phase before.
        old: Phase,
        /// The phase now.
        new: Phase,
    },
}

/// Why a dial failed, translated from the swarm's `DialError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialFailureCause {
    /// The address led to ourselves.
    #[error("the dialed address belongs to our own peer id")]
    SelfConnection,
    /// No address was known for the peer.
    #[error("no address known for the peer")]
    NoAddresses,
    /// The dial condition was false (for example already connected).
    #[error("the dial condition was not met")]
    ConditionFalse,
    /// The dial was aborted.
    #[error("the dial was aborted")]
    Aborted,
    /// The remote turned out to be another peer.
    #[error("the remote is {obtained}, not the dialed peer")]
    WrongPeerId {
        /// The peer actually reached.
        obtained: PeerId,
    },
    /// This manager refused the connection.
    #[error("refused by the connection manager: {0}")]
    DeniedByManager(Denial),
    /// Another behaviour refused the connection.
    #[error("refused by another behaviour: {reason}")]
    DeniedByOther {
        /// What that behaviour said.
        reason: String,
    },
    /// Every address failed at the transport (TCP, noise, yamux, ...).
    #[error("transport failed: {}", format_transport_errors(errors))]
    Transport {
        /// Each address tried, with what went wrong there.
        errors: Vec<(Multiaddr, String)>,
    },
    /// The dial did not complete within the dial timeout.
    #[error("no connection within the dial timeout of {0:?}")]
    TimedOut(Duration),
}

/// One readable line per event, e.g. "connection 7 with 12D3… closed by them: Closed (0 left)".
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = match self {
            Self::ConnectionKept {
                peer,
                connection,
                initiator,
                ..
            } => format!("kept connection {connection} with {peer} ({initiator})"),
            Self::DuplicateClosed { peer, kept, closed } => {
                format!("closed duplicate connection {closed} with {peer}; {kept} is kept")
            }
            Self::Disconnected {
                peer,
                connection,
                reason,
                closed_by,
                remaining,
            } => {
                format!(
                    "connection {connection} with {peer} {closed_by}: {reason} ({remaining} left)"
                )
            }
            Self::GoodbyeReceived {
                peer,
                connection,
                reason,
                retry_after,
            } => match retry_after {
                Some(delay) => format!(
                "goodbye from {peer} on connection {connection}: {reason}, retry after {delay:?}"
            ),
                None => format!("goodbye from {peer} on connection {connection}: {reason}"),
            },
            Self::Denied {
                peer,
                connection,
                denial,
            } => match peer {
                Some(peer) => format!("refused connection {connection} with {peer}: {denial}"),
                None => format!("refused connection {connection}: {denial}"),
            },
            Self::DialFailed {
                peer,
                connection,
                cause,
            } => {
                let target = peer.map_or_else(|| "an unknown peer".to_owned(), |p| p.to_string());
                format!("dial {connection} to {target} failed: {cause}")
            }
            Self::RedialScheduled {
                peer,
                delay,
                attempt,
            } => format!("redialing {peer} in {delay:.2?} (attempt {attempt})"),
            Self::RedialGaveUp { peer, attempts } => {
                format!("gave up redialing {peer} after {attempts} attempts")
            }
            Self::Banned { target, until } => match until {
                Some(_) => format!("banned {target} for a set time"),
                None => format!("banned {target} until unbanned"),
            },
            Self::Unbanned { target, expired } => {
                let how = if *expired { "expired" } else { "lifted" };
                format!("ban of {target} {how}")
            }
            Self::WaitingForResources { peer, denial } => {
                format!("{peer} waits for a free slot: {denial}")
            }
            Self::PeerForgotten { peer } => format!("forgot {peer}"),
            Self::Trimmed { peers, .. } => format!("trimming {} peer(s): {peers:?}", peers.len()),
            Self::HealthChanged {
                peer,
                connection,
                old,
                new,
            } => match old {
                Some(old) => {
                    format!("health of connection {connection} with {peer}: {old} -> {new}")
                }
                None => format!("health of connection {connection} with {peer}: {new}"),
            },
            Self::ConnectionReplaced { peer, connection } => {
                format!("replacing connection {connection} with {peer}: its health stayed critical")
            }
            Self::PhaseChanged { old, new } => format!("phase {old} -> {new}"),
            Self::Restored(summary) => format!(
            "restored from the peer store: {} ban(s) in force ({} ended while down), {} peer(s), \
             {} redial(s)",
            summary.bans, summary.expired_bans, summary.peers, summary.redials
        ),
        };
        f.write_str(&line)
    }
}

impl DialFailureCause {
    /// Whether trying the same dial again soon can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Transport { .. } | Self::TimedOut(_) | Self::Aborted
        )
    }
}

fn format_transport_errors(errors: &[(Multiaddr, String)]) -> String {
    if errors.is_empty() {
        return "no address was tried".to_owned();
    }
    errors
        .iter()
        .map(|(address, error)| format!("{address}: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod display_tests {
    use super::*;

    #[test]
    fn events_read_as_sentences() {
        let peer = PeerId::random();
        let connection = ConnectionId::new_unchecked(7);
        let lost = Event::Disconnected {
            peer,
            connection,
            reason: DisconnectReason::Closed,
            closed_by: ClosedBy::Remote,
            remaining: 0,
        };
        assert_eq!(
            lost.to_string(),
            format!("connection 7 with {peer} closed by them: closed by the remote (0 left)")
                .replace(
                    "closed by the remote",
                    &DisconnectReason::Closed.to_string()
                )
        );
        let redial = Event::RedialScheduled {
            peer,
            delay: Duration::from_millis(1500),
            attempt: 2,
        };
        assert_eq!(
            redial.to_string(),
            format!("redialing {peer} in 1.50s (attempt 2)")
        );
    }
}
