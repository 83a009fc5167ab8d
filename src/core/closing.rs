//! Closing connections: the duplicate verdict, goodbyes and their deadlines.

use super::*;

impl Manager {
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
        let Some(winner) = duplicates::survivor(&self.local, &peer, &candidates) else {
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
            match duplicates::close_timing(&winner, loser) {
                // A connection that just came up may already carry what its opener started on
                // it (a remote without this crate opens streams at once, and a duplicate it
                // dialed is not closed by it): it drains before it is closed.
                duplicates::CloseTiming::Now
                    if now.saturating_duration_since(loser.established_at) < DUPLICATE_DRAIN =>
                {
                    self.drain_duplicate(now, peer, loser.id);
                }
                duplicates::CloseTiming::Now => {
                    tracing::debug!(%peer, kept = %winner.id, closed = %loser.id, "closing duplicate");
                    self.push_event(Event::DuplicateClosed {
                        peer,
                        kept: winner.id,
                        closed: loser.id,
                    });
                    self.start_close(now, peer, loser.id, DisconnectReason::Duplicate, None);
                    self.mark_duplicate(now, peer);
                }
                duplicates::CloseTiming::AfterGrace => {
                    let grace = Timer::DuplicateGrace(loser.id);
                    if !self.timers.is_set(grace) {
                        self.timers
                            .set(grace, later(now, self.config.duplicate_grace));
                    }
                }
            }
        }
    }

    pub(super) fn start_close(
        &mut self,
        now: Instant,
        peer: PeerId,
        connection: ConnectionId,
        reason: DisconnectReason,
        retry_after: Option<Duration>,
    ) {
        // A peer closed for not answering gets only a short chance to hear why.
        let timeout = if reason == DisconnectReason::Timeout {
            self.config.goodbye_timeout.min(TIMEOUT_GOODBYE)
        } else {
            self.config.goodbye_timeout
        };
        let deadline = later(now, timeout.saturating_add(GOODBYE_BACKSTOP_SLACK));
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        if record.closing.is_some() {
            return;
        }
        record.closing = Some(Closing {
            reason,
            replace: false,
        });
        self.timers.cancel(Timer::DuplicateGrace(connection));
        self.timers
            .set(Timer::GoodbyeDeadline(connection), deadline);
        self.actions.push_back(Action::SendGoodbye {
            peer,
            connection,
            reason,
            retry_after,
            timeout,
        });
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
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        let Some(record) = self.peers.get(&peer) else {
            return;
        };
        let candidates: Vec<_> = record.open().map(|c| c.candidate()).collect();
        let Some(winner) = duplicates::survivor(&self.local, &peer, &candidates) else {
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

    pub(super) fn on_goodbye_overdue(&mut self, connection: ConnectionId) {
        if self.close_refused(connection) {
            return;
        }
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        tracing::debug!(%peer, %connection, "goodbye overdue, closing");
        self.actions.push_back(Action::Close { peer, connection });
    }

    /// Remembers that a duplicate of `peer` was just resolved: if the survivor dies while the
    /// two sides settle, its initiator redials (see [`redial::PeerContext`]).
    pub(super) fn mark_duplicate(&mut self, now: Instant, peer: PeerId) {
        if let Some(record) = self.peers.get_mut(&peer) {
            record.last_duplicate_at = Some(now);
        }
    }

    pub(super) fn cancel_connection_timers(&mut self, connection: ConnectionId) {
        for timer in [
            Timer::DuplicateGrace(connection),
            Timer::GoodbyeDeadline(connection),
            Timer::Inactivity(connection),
            Timer::Critical(connection),
        ] {
            self.timers.cancel(timer);
        }
    }
}
