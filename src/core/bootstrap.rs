//! The node phase and bootstrap rounds.

use super::*;

impl Manager {
    /// Schedules the next bootstrap round after the backoff for the rounds tried so far.
    pub(super) fn schedule_bootstrap(&mut self, now: Instant) {
        let index = self.bootstrap.attempt.saturating_sub(1);
        let at = later(
            now,
            self.config.bootstrap_backoff.delay(index, &mut self.rng),
        );
        self.schedule_bootstrap_at(at);
    }

    pub(super) fn is_bootstrap_peer(&self, peer: &PeerId) -> bool {
        self.config.bootstrap_peers.iter().any(|(p, _)| p == peer)
    }

    /// The first round, at a random point of the jitter window: nodes started together spread
    /// their first dials instead of reaching the bootstrap peers in one instant.
    pub(super) fn schedule_first_bootstrap(&mut self, now: Instant) {
        if self.config.bootstrap_peers.is_empty() {
            return;
        }
        let window = self.config.bootstrap_jitter;
        let delay = if window.is_zero() {
            Duration::ZERO
        } else {
            window.mul_f64(self.rng.gen_range(0.0..1.0))
        };
        self.schedule_bootstrap_at(later(now, delay));
    }

    pub(super) fn schedule_bootstrap_at(&mut self, at: Instant) {
        if self.timers.is_set(Timer::Bootstrap) || self.terminated {
            return;
        }
        self.timers.set(Timer::Bootstrap, at);
    }

    /// The node lost its last connection. The next bootstrap round comes soon after a failure,
    /// but one round of the backoff later each time the remote pushed the node away (trimmed,
    /// refused for resources, banned, or hung up on it without a goodbye): a node nobody keeps
    /// must not cycle through the bootstrap peers every second, and thousands of them would
    /// keep the bootstrap peers busy for ever.
    pub(super) fn on_last_connection_lost(&mut self, reason: DisconnectReason, by: ClosedBy) {
        if !reason.pushed_away(by) {
            self.bootstrap.attempt = 0;
        }
    }

    pub(super) fn on_bootstrap_due(&mut self, now: Instant) {
        if self.terminated || self.connected_peers > 0 {
            return;
        }
        self.bootstrap.attempt += 1;
        let max = self.config.max_addresses_per_peer;
        let peers = self.config.bootstrap_peers.clone();
        for (peer, address) in peers {
            // A banned bootstrap peer waits for a round after its ban (our own check would
            // refuse the dial anyway).
            if peer == self.local || self.bans.peer(&peer, now).is_some() {
                continue;
            }
            let record = self.peers.or_default(peer);
            let changed = record.add_address(address, max);
            let idle = record.pending_outbound == 0;
            if changed {
                self.note_peer(peer);
            }
            if idle {
                self.bootstrap.round.insert(peer);
                self.push_dial(peer);
            }
        }
        tracing::debug!(
            attempt = self.bootstrap.attempt,
            peers = self.bootstrap.round.len(),
            "bootstrap round"
        );
        if self.bootstrap.round.is_empty() {
            self.schedule_bootstrap(now);
        }
        self.update_phase();
    }

    pub(super) fn update_phase(&mut self) {
        let new = phase::current(
            self.terminated,
            self.connected_peers,
            !self.bootstrap.round.is_empty(),
        );
        if new != self.phase {
            let old = std::mem::replace(&mut self.phase, new);
            tracing::debug!(%old, %new, "phase changed");
            self.push_event(Event::PhaseChanged { old, new });
        }
    }
}
