//! Redials: who dials a peer again, when, and when it stops.
//!
//! [`table`] says *how soon* (pure functions of the reason, checked against the README); this
//! file applies them: after a lost connection ([`Manager::after_lost_connection`]), after a
//! failed or overdue dial, when the timer fires, and it owns each peer's [`RedialState`] (the
//! attempts and the rescue budget) and its `Timer::Redial`.

mod table;

pub use table::{after_failed_dial, honour_retry_after, plan, ClosedBy, PeerContext, RedialPlan};

use super::*;

/// A peer's redial bookkeeping.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct RedialState {
    /// Redials since the peer last had a stable connection (see `Config::with_stable_after`).
    attempts: u32,
    /// Prompt retries of failed dials the application did not ask the manager for.
    rescue_dials: u32,
}

impl RedialState {
    /// Redials since the peer last had a stable connection.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }
}

impl Manager {
    /// A connection to `peer` closed: the side that dialed it redials, by the reason it was
    /// lost (see [`plan`]). The other side cleans up, and redials only a peer it wants, a
    /// duplicate grace later, in case the initiator does not come back. A connection closed to
    /// be replaced is redialed at once by the side that closed it, whoever dialed it.
    pub(super) fn after_lost_connection(
        &mut self,
        now: Instant,
        peer: PeerId,
        closed: &ConnectionRecord,
        (reason, closed_by, retry_after): (DisconnectReason, ClosedBy, Option<Duration>),
    ) {
        let stable_after = self.config.stable_after;
        let duplicate_grace = self.config.duplicate_grace;
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        let age = now.saturating_duration_since(closed.established_at);
        if age >= stable_after {
            // It held: the next loss starts the backoff from the beginning.
            record.redial = RedialState::default();
        }
        if record.is_connected() || record.pending_outbound > 0 || self.terminated {
            return;
        }
        if closed.closing.is_some_and(|c| c.replace) {
            self.plan_redial(now, peer, RedialPlan::Prompt, None, Duration::ZERO);
            return;
        }
        if self.hearsay_pushed_away(now, peer, reason, closed_by) {
            return;
        }
        let Some(record) = self.peers.get(&peer) else {
            return;
        };
        let context = PeerContext {
            wanted: record.intent.is_wanted(),
            attempt: record.redial.attempts,
            settling_duplicates: record
                .last_duplicate_at()
                .is_some_and(|at| now.saturating_duration_since(at) <= duplicate_grace),
            died_young: closed.pings == 0
                && closed.remote_goodbye.is_none()
                && closed.closing.is_none()
                && age < stable_after,
            hinted: closed
                .remote_goodbye
                .as_deref()
                .is_some_and(|(_, hint)| hint.is_some()),
        };
        let plan = plan(reason, closed_by, context);
        match closed.initiator {
            Initiator::Local => self.plan_redial(now, peer, plan, retry_after, Duration::ZERO),
            Initiator::Remote if context.wanted => {
                self.plan_redial(now, peer, plan, retry_after, duplicate_grace);
            }
            Initiator::Remote => {}
        }
    }

    /// Schedules the next dial of `peer` by `plan`, `extra` later than the plan says.
    pub(super) fn plan_redial(
        &mut self,
        now: Instant,
        peer: PeerId,
        plan: RedialPlan,
        retry_after: Option<Duration>,
        extra: Duration,
    ) {
        if self.bans.peer(&peer, now).is_some() {
            return;
        }
        let max_attempts = self.config.max_redial_attempts;
        let max_rescues = self.config.max_rescue_dials;
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        if plan == RedialPlan::Never || record.intent.is_parked() {
            return;
        }
        if record.intent.is_wanted() {
            if max_attempts.is_some_and(|max| record.redial.attempts >= max) {
                let attempts = record.redial.attempts;
                self.set_intent(peer, Intent::Unasked);
                self.note_peer(peer);
                self.quiet_hearsay(peer, Some(later(now, hearsay::QUIET_AFTER_TRIM)));
                self.push_event(Event::RedialGaveUp { peer, attempts });
                return;
            }
        } else {
            // Not wanted: only a bounded number of prompt rescues.
            if record.redial.rescue_dials >= max_rescues {
                return;
            }
            record.redial.rescue_dials += 1;
        }
        let backoff_index = record.redial.attempts.saturating_sub(1);
        let delay = match plan {
            RedialPlan::Never => return,
            RedialPlan::Prompt => {
                let base = self.config.prompt_redial_delay;
                // +-50%; a delay too long to represent once jittered stays as configured.
                Duration::try_from_secs_f64(base.as_secs_f64() * self.rng.gen_range(0.5..=1.5))
                    .unwrap_or(base)
            }
            RedialPlan::TimeoutBackoff => self
                .config
                .timeout_backoff
                .delay(backoff_index, &mut self.rng),
            RedialPlan::ViolationBackoff => self
                .config
                .violation_backoff
                .delay(backoff_index, &mut self.rng),
            RedialPlan::ClosedBackoff => self
                .config
                .closed_backoff
                .delay(backoff_index, &mut self.rng),
        };
        let delay = honour_retry_after(delay, retry_after).saturating_add(extra);
        let at = later(now, delay);
        let Some(record) = self.peers.get(&peer) else {
            return;
        };
        if self
            .timers
            .deadline(Timer::Redial(peer))
            .is_some_and(|existing| existing <= at)
        {
            return;
        }
        let attempt = record.redial.attempts + 1;
        self.timers.set(Timer::Redial(peer), at);
        tracing::debug!(%peer, ?delay, attempt, "redial scheduled");
        self.push_event(Event::RedialScheduled {
            peer,
            delay,
            attempt,
        });
    }

    pub(super) fn after_failed_dial(
        &mut self,
        now: Instant,
        peer: PeerId,
        cause: &DialFailureCause,
    ) {
        let in_round = self.bootstrap.round.remove(&peer);
        if in_round && self.bootstrap.round.is_empty() && self.connected_peers == 0 {
            self.schedule_bootstrap(now);
        }
        let Some(record) = self.peers.get(&peer) else {
            self.update_phase();
            return;
        };
        let retry = !record.is_connected() && record.pending_outbound == 0 && !self.terminated;
        if retry && record.intent.is_fading() {
            // Discovery removed it and this was its last chance.
            self.forget(peer);
            self.update_phase();
            return;
        }
        if retry && record.intent.is_wanted() {
            if let DialFailureCause::DeniedByManager(denial) = cause {
                if self.wait_for_slot(peer, denial) {
                    self.update_phase();
                    return;
                }
            }
        }
        let Some(record) = self.peers.get(&peer) else {
            return;
        };
        let plan = if retry {
            after_failed_dial(
                cause,
                record.intent.is_wanted(),
                record.redial.attempts,
                // Also once the round is over (another bootstrap peer answered first): the
                // rounds, not rescues, dial bootstrap peers.
                self.is_bootstrap_peer(&peer),
            )
        } else {
            RedialPlan::Never
        };
        self.plan_redial(now, peer, plan, None, Duration::ZERO);
        self.forget_if_idle(peer);
        self.update_phase();
    }

    pub(super) fn on_redial_due(&mut self, peer: PeerId) {
        let terminated = self.terminated;
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        if terminated || record.is_connected() || record.pending_outbound > 0 {
            self.forget_if_idle(peer);
            return;
        }
        record.redial.attempts += 1;
        self.push_dial(peer);
    }

    pub(super) fn on_dial_overdue(&mut self, now: Instant, connection: ConnectionId) {
        let Some(pending) = self.pending.get_mut(&connection) else {
            return;
        };
        if pending.timed_out {
            return;
        }
        pending.timed_out = true;
        let Some(peer) = pending.peer else {
            return;
        };
        if let Some(record) = self.peers.get_mut(&peer) {
            record.pending_outbound = record.pending_outbound.saturating_sub(1);
        }
        let cause = DialFailureCause::TimedOut(self.config.dial_timeout);
        self.push_event(Event::DialFailed {
            peer: Some(peer),
            connection,
            cause: cause.clone(),
        });
        self.after_failed_dial(now, peer, &cause);
    }

    /// Asks the driver to dial `peer` on its trusted addresses; the swarm asks the manager for
    /// the others when it handles the dial ([`on_pending_outbound`](Self::on_pending_outbound)),
    /// so that dialing them does not make them trusted.
    pub(super) fn push_dial(&mut self, peer: PeerId) {
        let addresses = self
            .peers
            .get(&peer)
            .map(|r| r.addresses.trusted().cloned().collect())
            .unwrap_or_default();
        tracing::debug!(%peer, "dialing");
        self.actions.push_back(Action::Dial {
            peer,
            addresses,
            new_port: self.config.new_port_for_redials,
        });
    }

    pub(super) fn cancel_redial(&mut self, peer: PeerId) {
        self.timers.cancel(Timer::Redial(peer));
    }
}
