//! Peers refused by a local limit wait in line and are dialed again as slots free up.
//!
//! One waiting peer is released per freed slot of the kind it waits for, in the order they
//! were refused: no thundering herd, and no dial that the same full limit would refuse again.

use super::*;

impl Manager {
    /// Puts a wanted `peer`, refused by `denial`, in line for a slot. Returns false when the
    /// denial is not a limit that frees up by itself.
    pub(super) fn wait_for_slot(&mut self, peer: PeerId, denial: &Denial) -> bool {
        let slot = match denial {
            Denial::Limit {
                kind: LimitKind::PendingOutgoing,
                ..
            } => Slot::Pending,
            Denial::Limit { .. } => Slot::Established,
            _ => return false,
        };
        let Some(record) = self.peers.get_mut(&peer) else {
            return false;
        };
        if record.waiting.is_none() {
            self.waiting.push_back(peer);
        }
        record.waiting = Some(slot);
        tracing::debug!(%peer, %denial, "waiting for a slot");
        self.push_event(Event::WaitingForResources {
            peer,
            denial: denial.clone(),
        });
        true
    }

    /// A slot of kind `freed` was released: the first peer waiting for it is dialed again.
    pub(super) fn release_slot(&mut self, now: Instant, freed: Slot) {
        let Some(index) = self.waiting.iter().position(|peer| {
            self.peers
                .get(peer)
                .is_some_and(|r| r.waiting == Some(freed))
        }) else {
            self.drop_stale_waiters();
            return;
        };
        if let Some(peer) = self.waiting.remove(index) {
            self.dial_waiter(now, peer, Duration::ZERO);
        }
    }

    /// The limits changed: everyone waiting gets a chance, spread out in time.
    pub(super) fn release_all_slots(&mut self, now: Instant) {
        let waiting: Vec<PeerId> = self.waiting.drain(..).collect();
        let step = self.config.prompt_redial_delay;
        for (position, peer) in waiting.into_iter().enumerate() {
            let spread = step.saturating_mul(u32::try_from(position).unwrap_or(u32::MAX));
            self.dial_waiter(now, peer, spread);
        }
    }

    /// Peers waiting for a slot, in line order.
    pub fn waiting_for_resources(&self) -> impl Iterator<Item = &PeerId> {
        self.waiting
            .iter()
            .filter(|peer| self.peers.get(peer).is_some_and(|r| r.waiting.is_some()))
    }

    fn dial_waiter(&mut self, now: Instant, peer: PeerId, extra: Duration) {
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        if record.waiting.take().is_none() || !record.intent.is_wanted() {
            self.forget_if_idle(peer);
            return;
        }
        self.plan_redial(now, peer, RedialPlan::Prompt, None, extra);
        self.forget_if_idle(peer);
    }

    /// Entries whose peer stopped waiting (connected, disconnected, banned, forgotten).
    fn drop_stale_waiters(&mut self) {
        let peers = &self.peers;
        self.waiting
            .retain(|peer| peers.get(peer).is_some_and(|r| r.waiting.is_some()));
    }
}
