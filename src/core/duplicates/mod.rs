//! One connection per peer: the rule ([`rule`], pure) and how the manager carries it out.
//!
//! When a second connection to a peer is established, [`rule::survivor`] names the one to keep
//! and [`rule::close_timing`] when the other goes: at once with goodbye `Duplicate`, after the
//! listener's grace, or, for a loser that just came up, after a short drain so that what its
//! opener started on it finishes. A duplicate settled at once does not count against the
//! established limits. The last settling is remembered so that a survivor lost meanwhile is
//! redialed promptly (see `redial`).

mod rule;

pub use rule::Initiator;
pub(crate) use rule::{is_relayed, Candidate};

use super::*;

impl Manager {
    /// Whether `new` is a duplicate of an open connection to `peer` that the rule resolves at
    /// once: either `new` loses and is refused now, or it wins and closes an older one now.
    /// Such a duplicate does not grow the count; one the listener tolerates for the duplicate
    /// grace does, and so counts against the established limits like any connection (else a
    /// peer dialing in three times would hold three slots against the limits).
    pub(super) fn duplicate_settles_at_once(
        &self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        new: &NewConnection,
    ) -> bool {
        let Some(record) = self.peers.get(&peer) else {
            return false;
        };
        let newcomer = rule::Candidate {
            id: connection,
            initiator: new.initiator,
            relayed: new.relayed,
            established_at: now,
        };
        let others: Vec<_> = record.open().map(|c| c.candidate()).collect();
        if others.is_empty() {
            return false;
        }
        let mut candidates = others.clone();
        candidates.push(newcomer);
        let Some(winner) = rule::survivor(&self.local, &peer, &candidates) else {
            return false;
        };
        if winner.id == connection {
            others
                .iter()
                .any(|loser| rule::close_timing(&winner, loser) == rule::CloseTiming::Now)
        } else {
            rule::close_timing(&winner, &newcomer) == rule::CloseTiming::Now
        }
    }

    pub(super) fn settle_duplicates(
        &mut self,
        now: Instant,
        peer: PeerId,
        newcomer: Option<ConnectionId>,
    ) {
        let Some(record) = self.peers.get(&peer) else {
            return;
        };
        let candidates: Vec<_> = record.open().map(|c| c.candidate()).collect();
        let Some(winner) = rule::survivor(&self.local, &peer, &candidates) else {
            return;
        };
        let kept_direction = record
            .connections
            .iter()
            .find(|c| c.id == winner.id)
            .map(|c| c.direction);
        if let (true, Some(direction)) = (newcomer == Some(winner.id), kept_direction) {
            self.exchange_on_kept(now, peer, winner.id);
            self.push_event(Event::ConnectionKept {
                peer,
                connection: winner.id,
                initiator: winner.initiator,
                direction,
            });
        }
        for loser in candidates.iter().filter(|c| c.id != winner.id) {
            match rule::close_timing(&winner, loser) {
                // A connection that just came up may already carry what its opener started on
                // it (a remote without this crate opens streams at once, and a duplicate it
                // dialed is not closed by it): it drains before it is closed.
                rule::CloseTiming::Now
                    if now.saturating_duration_since(loser.established_at) < DUPLICATE_DRAIN =>
                {
                    self.drain_duplicate(now, peer, loser.id);
                }
                rule::CloseTiming::Now => {
                    tracing::debug!(%peer, kept = %winner.id, closed = %loser.id, "closing duplicate");
                    self.push_event(Event::DuplicateClosed {
                        peer,
                        kept: winner.id,
                        closed: loser.id,
                    });
                    self.start_close(now, peer, loser.id, DisconnectReason::Duplicate, None);
                    self.mark_duplicate(now, peer);
                }
                rule::CloseTiming::AfterGrace => {
                    let grace = Timer::DuplicateGrace(loser.id);
                    if !self.timers.is_set(grace) {
                        self.timers
                            .set(grace, later(now, self.config.duplicate_grace));
                    }
                }
            }
        }
    }

    /// Lets a losing newcomer drain: it is no longer kept alive (so the swarm may close it as
    /// soon as its streams are done) and is closed with goodbye `Duplicate` after
    /// [`DUPLICATE_DRAIN`] (or the duplicate grace, if shorter) unless it is gone by then.
    fn drain_duplicate(&mut self, now: Instant, peer: PeerId, connection: ConnectionId) {
        let drain = self.config.duplicate_grace.min(DUPLICATE_DRAIN);
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        tracing::debug!(%peer, %connection, ?drain, "draining duplicate");
        let was_kept_alive = std::mem::replace(&mut record.kept_alive, false);
        if was_kept_alive {
            self.actions.push_back(Action::KeepAlive {
                peer,
                connection,
                keep: false,
            });
        }
        let grace = Timer::DuplicateGrace(connection);
        if !self.timers.is_set(grace) {
            self.timers.set(grace, later(now, drain));
        }
    }

    pub(super) fn on_grace_over(&mut self, now: Instant, connection: ConnectionId) {
        let Some(peer) = self.owner(connection) else {
            return;
        };
        let Some(record) = self.peers.get(&peer) else {
            return;
        };
        let candidates: Vec<_> = record.open().map(|c| c.candidate()).collect();
        let Some(winner) = rule::survivor(&self.local, &peer, &candidates) else {
            return;
        };
        if winner.id != connection && candidates.iter().any(|c| c.id == connection) {
            tracing::debug!(%peer, kept = %winner.id, closed = %connection, "closing duplicate after grace");
            self.push_event(Event::DuplicateClosed {
                peer,
                kept: winner.id,
                closed: connection,
            });
            self.start_close(now, peer, connection, DisconnectReason::Duplicate, None);
            self.mark_duplicate(now, peer);
        }
    }

    /// Remembers that a duplicate of `peer` was just resolved: if the survivor dies while the
    /// two sides settle, its initiator redials (see [`redial::PeerContext`]).
    pub(super) fn mark_duplicate(&mut self, now: Instant, peer: PeerId) {
        if let Some(record) = self.peers.get_mut(&peer) {
            record.set_last_duplicate_at(now);
        }
    }
}
