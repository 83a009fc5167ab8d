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

    /// Hands everything over and waits until it is durable, what earlier hand-overs gave the
    /// store included. A failed write does not skip the wait: the store may have taken the batch
    /// and report an earlier batch's failure (`RedbStore` does), and a caller about to exit
    /// must not leave it unwritten. The first error is returned.
    pub(crate) fn flush(&mut self, manager: &mut Manager) -> Result<(), StoreError> {
        let changes = manager.take_changes();
        let written = if changes.is_empty() {
            Ok(())
        } else {
            self.store.write(to_ops(changes, Clocks::now()))
        };
        let flushed = self.store.flush();
        written.and(flushed)
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::{Arc, Mutex},
        task::Poll,
        time::Duration,
    };

    use futures::{executor::block_on, future::poll_fn, task::noop_waker_ref};
    use libp2p_core::Multiaddr;
    use libp2p_identity::PeerId;
    use web_time::{Instant, SystemTime};

    use super::*;
    use crate::{
        core::BanTarget,
        store::{MemoryStore, StoredBan, StoredState, StoredUpdate},
        Behaviour, Config,
    };

    /// What the driver asked of the store.
    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Load,
        Write(Vec<StoreOp>),
        Flush,
    }

    /// A store that records the calls and keeps what was written in a [`MemoryStore`].
    #[derive(Clone, Default)]
    struct Recorder {
        calls: Arc<Mutex<Vec<Call>>>,
        held: MemoryStore,
        /// The next write takes the batch but reports an error (as `RedbStore` reports an
        /// earlier batch's failure).
        fail_next_write: Arc<Mutex<bool>>,
    }

    impl Recorder {
        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }

        /// The calls after `load`, with each batch's operations in a canonical order (a
        /// batch is built from hash sets).
        fn after_load(&self) -> Vec<Call> {
            let calls = self.calls();
            assert_eq!(calls.first(), Some(&Call::Load), "{calls:?}");
            calls[1..]
                .iter()
                .map(|call| match call {
                    Call::Write(ops) => Call::Write(canonical(ops.clone())),
                    other => other.clone(),
                })
                .collect()
        }
    }

    impl PeerStore for Recorder {
        fn load(&mut self) -> Result<StoredState, StoreError> {
            self.calls.lock().unwrap().push(Call::Load);
            self.held.load()
        }

        fn write(&mut self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
            self.calls.lock().unwrap().push(Call::Write(ops.clone()));
            self.held.write(ops)?;
            if std::mem::take(&mut *self.fail_next_write.lock().unwrap()) {
                return Err(StoreError::Write {
                    path: "recorder".into(),
                    source: "an earlier batch: disk full".into(),
                });
            }
            Ok(())
        }

        fn flush(&mut self) -> Result<(), StoreError> {
            self.calls.lock().unwrap().push(Call::Flush);
            Ok(())
        }
    }

    fn canonical(mut ops: Vec<StoreOp>) -> Vec<StoreOp> {
        ops.sort_by_key(|op| format!("{op:?}"));
        ops
    }

    fn attach(store: &Recorder, interval: Duration, max_batch: usize) -> (StoreDriver, Manager) {
        let mut manager = Manager::new(PeerId::random(), Config::default(), Instant::now(), 7);
        let config = StoreConfig {
            flush_interval: interval,
            max_batch,
        };
        let (driver, _) = StoreDriver::attach(Box::new(store.clone()), config, &mut manager)
            .expect("the recorder loads");
        (driver, manager)
    }

    fn poll_once(driver: &mut StoreDriver, manager: &mut Manager) {
        let mut cx = Context::from_waker(noop_waker_ref());
        driver.poll(&mut cx, manager);
    }

    fn ban(peer: PeerId, until: Option<SystemTime>) -> StoreOp {
        StoreOp::PutBan(StoredBan {
            target: BanTarget::Peer(peer),
            until,
        })
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn changes_wait_for_the_interval_or_a_full_batch() {
        let store = Recorder::default();
        let (mut driver, mut manager) = attach(&store, HOUR, 4);
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for peer in &peers[..3] {
            manager.ban_peer(Instant::now(), *peer, None);
        }
        poll_once(&mut driver, &mut manager);
        assert_eq!(
            store.after_load(),
            vec![],
            "three changes, an hour to go: kept"
        );

        // The fourth fills the batch: handed over at the next poll, all four in one write.
        manager.ban_peer(Instant::now(), peers[3], None);
        poll_once(&mut driver, &mut manager);
        let four = canonical(peers[..4].iter().map(|p| ban(*p, None)).collect());
        assert_eq!(store.after_load(), vec![Call::Write(four.clone())]);

        // The batch size counts from zero again; nothing is written twice.
        manager.ban_peer(Instant::now(), peers[4], None);
        poll_once(&mut driver, &mut manager);
        poll_once(&mut driver, &mut manager);
        assert_eq!(store.after_load(), vec![Call::Write(four)]);
    }

    #[test]
    fn the_interval_hands_over_what_piled_up() {
        let store = Recorder::default();
        let (mut driver, mut manager) = attach(&store, Duration::from_millis(20), 1024);
        let peer = PeerId::random();
        manager.ban_peer(Instant::now(), peer, None);
        // Waits on the driver's timer (its waker), with a deadline of its own.
        let mut deadline = futures_timer::Delay::new(Duration::from_secs(10));
        let handed_over = block_on(poll_fn(|cx| {
            driver.poll(cx, &mut manager);
            if !store.after_load().is_empty() {
                return Poll::Ready(true);
            }
            match deadline.poll_unpin(cx) {
                Poll::Ready(()) => Poll::Ready(false),
                Poll::Pending => Poll::Pending,
            }
        }));
        assert!(
            handed_over,
            "nothing handed over within 10 s of a 20 ms interval"
        );
        assert_eq!(store.after_load(), vec![Call::Write(vec![ban(peer, None)])]);
        // A hand-over with nothing journaled writes nothing.
        driver.hand_over(&mut manager);
        assert_eq!(store.after_load().len(), 1);
    }

    #[test]
    fn each_batch_is_the_state_now_whole_and_batches_keep_their_order() {
        let store = Recorder::default();
        let (mut driver, mut manager) = attach(&store, HOUR, 1024);
        let (banned, tagged) = (PeerId::random(), PeerId::random());
        let address: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        let now = Instant::now();
        // Between two hand-overs, one operation per target, as it is at the hand-over.
        manager.ban_peer(now, banned, Some(Duration::from_secs(60)));
        manager.unban(now, BanTarget::Peer(banned));
        manager.ban_peer(now, banned, None);
        manager.tag_peer(tagged, "score", 1);
        manager.tag_peer(tagged, "score", 2);
        manager.add_address(tagged, address.clone());
        driver.hand_over(&mut manager);
        // Then one change at a time.
        manager.unban(now, BanTarget::Peer(banned));
        driver.hand_over(&mut manager);
        manager.untag_peer(&tagged, "score");
        driver.hand_over(&mut manager);
        manager.ban_peer(Instant::now(), banned, Some(Duration::from_secs(60)));
        driver.hand_over(&mut manager);

        let calls = store.after_load();
        assert_eq!(calls.len(), 4, "{calls:?}");
        assert_eq!(
            calls[0],
            Call::Write(canonical(vec![
                ban(banned, None),
                StoreOp::UpdatePeer(
                    tagged,
                    StoredUpdate {
                        wanted: false,
                        addresses: Some(vec![address]),
                        protected: vec![],
                        tags: vec![("score".into(), 2)],
                        last_disconnect: None,
                    }
                ),
            ]))
        );
        assert_eq!(
            calls[1],
            Call::Write(vec![StoreOp::RemoveBan(BanTarget::Peer(banned))])
        );
        // Untagged, nothing a restart reads is left of it: dropped from the store.
        assert_eq!(calls[2], Call::Write(vec![StoreOp::RemovePeer(tagged)]));
        let Call::Write(last) = &calls[3] else {
            panic!("{calls:?}")
        };
        let [StoreOp::PutBan(StoredBan {
            target: BanTarget::Peer(peer),
            until: Some(until),
        })] = last.as_slice()
        else {
            panic!("{last:?}")
        };
        assert_eq!(*peer, banned);
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        assert!(
            left > Duration::from_secs(50) && left <= Duration::from_secs(60),
            "{left:?}"
        );

        // Applied in order, the batches leave the store as the manager is.
        let held = store.held.snapshot();
        assert!(held.peers.is_empty(), "{held:?}");
        assert_eq!(held.bans.len(), 1);
        assert_eq!(held.bans[0].until, Some(*until));
    }

    #[test]
    fn flush_hands_over_then_waits_even_with_nothing_new() {
        let store = Recorder::default();
        let (mut driver, mut manager) = attach(&store, HOUR, 1024);
        let peer = PeerId::random();
        manager.ban_peer(Instant::now(), peer, None);
        driver.flush(&mut manager).unwrap();
        assert_eq!(
            store.after_load(),
            vec![Call::Write(vec![ban(peer, None)]), Call::Flush]
        );
        // What an earlier hand-over gave the store may still be in flight: flush waits for it
        // even when nothing new is journaled.
        let other = PeerId::random();
        manager.ban_peer(Instant::now(), other, None);
        driver.hand_over(&mut manager);
        driver.flush(&mut manager).unwrap();
        assert_eq!(
            store.after_load()[2..],
            [Call::Write(vec![ban(other, None)]), Call::Flush]
        );
    }

    #[test]
    fn a_failed_write_does_not_skip_the_wait() {
        let store = Recorder::default();
        let (mut driver, mut manager) = attach(&store, HOUR, 1024);
        let peer = PeerId::random();
        manager.ban_peer(Instant::now(), peer, None);
        *store.fail_next_write.lock().unwrap() = true;
        let error = driver.flush(&mut manager).unwrap_err();
        assert!(error.to_string().contains("disk full"), "{error}");
        assert_eq!(
            store.after_load(),
            vec![Call::Write(vec![ban(peer, None)]), Call::Flush],
            "the store took the batch: flush must still wait for it"
        );
    }

    #[test]
    fn shutdown_hands_over_and_drop_drains_and_waits() {
        let (banned, tagged, wanted) = (PeerId::random(), PeerId::random(), PeerId::random());
        let address: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().unwrap();
        let config = StoreConfig {
            flush_interval: HOUR,
            max_batch: 1024,
        };

        // Dropped without shutdown: the journal is written, then waited for.
        let store = Recorder::default();
        let mut behaviour = Behaviour::new(PeerId::random(), Config::default())
            .with_store_config(store.clone(), config.clone())
            .unwrap();
        behaviour.ban_peer(banned, None);
        behaviour.tag_peer(tagged, "score", 3);
        drop(behaviour);
        let calls = store.after_load();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(
            matches!(&calls[0], Call::Write(ops) if ops.len() == 2),
            "{calls:?}"
        );
        assert_eq!(calls[1], Call::Flush);

        // Shutdown hands the journal over (without un-wanting anyone); drop waits for it.
        let store = Recorder::default();
        let mut behaviour = Behaviour::new(PeerId::random(), Config::default())
            .with_store_config(store.clone(), config)
            .unwrap();
        behaviour.ban_peer(banned, None);
        behaviour.add_peer(wanted, vec![address.clone()]).unwrap();
        behaviour.shutdown();
        let calls = store.after_load();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(
            matches!(&calls[0], Call::Write(ops) if ops.len() == 2),
            "{calls:?}"
        );
        drop(behaviour);
        assert_eq!(store.after_load()[1..], [Call::Flush]);
        let held = store.held.snapshot();
        assert_eq!(held.bans.len(), 1);
        let [(peer, record)] = held.peers.as_slice() else {
            panic!("{held:?}")
        };
        assert_eq!(*peer, wanted);
        assert!(
            record.wanted,
            "shutting down does not un-want a peer in the store"
        );
        assert_eq!(record.addresses, vec![address]);
    }
}
