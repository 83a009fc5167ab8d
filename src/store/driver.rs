//! Hands the manager's journaled changes to a peer store, in batches, from the behaviour's
//! poll: about once per flush interval, sooner when many changes piled up.

use std::task::Context;

use futures::FutureExt;
use futures_timer::Delay;

use super::{to_ops, to_restore, Clocks, PeerStore, StoreConfig, StoreError, StoreOp};
use crate::core::{Manager, RestoreSummary};

pub(crate) struct StoreDriver {
    store: Box<dyn PeerStore>,
    config: StoreConfig,
    timer: Delay,
}

impl StoreDriver {
    /// Reads `store` back into `manager` and starts journaling its changes.
    pub(crate) fn attach(
        mut store: Box<dyn PeerStore>,
        config: StoreConfig,
        manager: &mut Manager,
    ) -> Result<(Self, RestoreSummary), StoreError> {
        let state = store.load()?;
        let clocks = Clocks::now();
        // Bans that ended while the node was down are dropped from the store too.
        let ended: Vec<StoreOp> = state
            .bans
            .iter()
            .filter(|ban| ban.until.is_some_and(|until| until <= clocks.wall()))
            .map(|ban| StoreOp::RemoveBan(ban.target))
            .collect();
        if !ended.is_empty() {
            store.write(ended)?;
        }
        let (bans, peers) = to_restore(state, clocks);
        let summary = manager.restore(clocks.instant(), bans, peers);
        manager.track_changes(true);
        let timer = Delay::new(config.flush_interval);
        Ok((
            Self {
                store,
                config,
                timer,
            },
            summary,
        ))
    }

    /// Hands the changes over if the interval passed or enough piled up.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, manager: &mut Manager) {
        let due = self.timer.poll_unpin(cx).is_ready();
        if !due && manager.pending_changes() < self.config.max_batch {
            return;
        }
        self.hand_over(manager);
        self.timer = Delay::new(self.config.flush_interval);
        // Register the new timer with the waker.
        let _ = self.timer.poll_unpin(cx);
    }

    /// Hands every journaled change to the store now (it may still be writing them).
    pub(crate) fn hand_over(&mut self, manager: &mut Manager) {
        let changes = manager.take_changes();
        if changes.is_empty() {
            return;
        }
        let count = changes.len();
        if let Err(error) = self.store.write(to_ops(changes, Clocks::now())) {
            tracing::error!(%error, count, "peer store write failed");
        }
    }

    /// Hands everything over and waits until it is durable.
    pub(crate) fn flush(&mut self, manager: &mut Manager) -> Result<(), StoreError> {
        let changes = manager.take_changes();
        if !changes.is_empty() {
            self.store.write(to_ops(changes, Clocks::now()))?;
        }
        self.store.flush()
    }
}
