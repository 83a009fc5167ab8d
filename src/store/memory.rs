//! The in-memory peer store.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use libp2p_identity::PeerId;
use web_time::SystemTime;

use super::{
    record::stalest_beyond, PeerStore, StoreError, StoreOp, StoredBan, StoredPeer, StoredState,
};
use crate::core::BanTarget;

/// Peers a store keeps by default before dropping the stalest disposable ones.
pub(crate) const DEFAULT_MAX_PEERS: usize = 10_000;

/// A peer store in memory. Clones share one state: a swarm rebuilt in the same process with a
/// clone sees what the previous one wrote.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    bans: HashMap<BanTarget, Option<SystemTime>>,
    peers: HashMap<PeerId, StoredPeer>,
    max_peers: Option<usize>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps at most `max` peers [default: 10 000]: beyond it the stalest peers that are not
    /// wanted and carry no tag are dropped.
    pub fn with_max_peers(self, max: usize) -> Self {
        self.state().max_peers = Some(max);
        self
    }

    /// What the store holds now.
    pub fn snapshot(&self) -> StoredState {
        let state = self.state();
        StoredState {
            bans: state
                .bans
                .iter()
                .map(|(target, until)| StoredBan {
                    target: *target,
                    until: *until,
                })
                .collect(),
            peers: state
                .peers
                .iter()
                .map(|(id, peer)| (*id, peer.clone()))
                .collect(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves whole records behind: keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PeerStore for MemoryStore {
    fn load(&mut self) -> Result<StoredState, StoreError> {
        Ok(self.snapshot())
    }

    fn write(&mut self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        let mut state = self.state();
        for op in ops {
            match op {
                StoreOp::PutBan(ban) => {
                    state.bans.insert(ban.target, ban.until);
                }
                StoreOp::RemoveBan(target) => {
                    state.bans.remove(&target);
                }
                StoreOp::UpdatePeer(peer, update) => match state.peers.get_mut(&peer) {
                    Some(stored) => stored.apply(update),
                    None => {
                        state.peers.insert(peer, StoredPeer::from_update(update));
                    }
                },
                StoreOp::RemovePeer(peer) => {
                    state.peers.remove(&peer);
                }
            }
        }
        let max = state.max_peers.unwrap_or(DEFAULT_MAX_PEERS);
        let total = state.peers.len();
        if total > max {
            // Down to 90% so that the scan is not repeated on every write.
            let keep = max - max / 10;
            let stale = stalest_beyond(state.peers.iter().map(|(id, p)| (*id, p)), total, keep);
            for peer in stale {
                state.peers.remove(&peer);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use libp2p_core::Multiaddr;

    use super::*;
    use crate::{
        core::ClosedBy,
        store::{StoredDisconnect, StoredUpdate},
        DisconnectReason,
    };

    fn address(n: u8) -> Multiaddr {
        format!("/ip4/10.0.0.{n}/tcp/4001").parse().unwrap()
    }

    fn update(wanted: bool, addresses: Option<Vec<Multiaddr>>, tag: Option<i64>) -> StoredUpdate {
        StoredUpdate {
            wanted,
            addresses,
            protected: vec![],
            tags: tag.map(|v| ("score".to_owned(), v)).into_iter().collect(),
            last_disconnect: None,
        }
    }

    fn disconnect(secs: u64) -> StoredDisconnect {
        StoredDisconnect {
            reason: DisconnectReason::Timeout,
            closed_by: ClosedBy::Remote,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
            retry_after: None,
        }
    }

    fn ban(target: BanTarget, until: Option<SystemTime>) -> StoreOp {
        StoreOp::PutBan(StoredBan { target, until })
    }

    fn bans(store: &MemoryStore) -> HashMap<BanTarget, Option<SystemTime>> {
        store
            .snapshot()
            .bans
            .into_iter()
            .map(|b| (b.target, b.until))
            .collect()
    }

    fn peers(store: &MemoryStore) -> HashMap<PeerId, StoredPeer> {
        store.snapshot().peers.into_iter().collect()
    }

    #[test]
    fn operations_apply_in_order_within_a_batch() {
        let mut store = MemoryStore::new();
        let (a, b, c, d) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        store
            .write(vec![
                StoreOp::UpdatePeer(c, update(true, Some(vec![address(1)]), Some(1))),
                StoreOp::UpdatePeer(d, update(true, Some(vec![address(2)]), Some(1))),
            ])
            .unwrap();
        store
            .write(vec![
                // Put then remove: gone.
                ban(BanTarget::Peer(a), None),
                StoreOp::RemoveBan(BanTarget::Peer(a)),
                // Remove then put, then put again: the last one holds.
                StoreOp::RemoveBan(BanTarget::Peer(b)),
                ban(BanTarget::Peer(b), None),
                ban(BanTarget::Peer(b), Some(later)),
                // Update then remove: gone.
                StoreOp::UpdatePeer(c, update(true, None, Some(2))),
                StoreOp::RemovePeer(c),
                // Remove then update: a fresh record, nothing of the old one.
                StoreOp::RemovePeer(d),
                StoreOp::UpdatePeer(d, update(false, None, Some(3))),
            ])
            .unwrap();
        assert_eq!(
            bans(&store),
            HashMap::from([(BanTarget::Peer(b), Some(later))])
        );
        assert_eq!(
            peers(&store),
            HashMap::from([(d, StoredPeer::from_update(update(false, None, Some(3))))])
        );
    }

    #[test]
    fn an_update_merges_into_the_stored_record() {
        let mut store = MemoryStore::new();
        let peer = PeerId::random();
        let mut first = update(true, Some(vec![address(1), address(2)]), Some(1));
        first.last_disconnect = Some(disconnect(100));
        store.write(vec![StoreOp::UpdatePeer(peer, first)]).unwrap();
        // Carries no addresses and no disconnect: the stored ones stay; wants and tags change.
        store
            .write(vec![StoreOp::UpdatePeer(
                peer,
                update(false, None, Some(5)),
            )])
            .unwrap();
        let stored = peers(&store).remove(&peer).unwrap();
        assert_eq!(
            stored,
            StoredPeer {
                wanted: false,
                addresses: vec![address(1), address(2)],
                protected: vec![],
                tags: vec![("score".into(), 5)],
                last_disconnect: Some(disconnect(100)),
            }
        );
        // Carries them: replaced.
        let mut third = update(false, Some(vec![address(3)]), Some(5));
        third.last_disconnect = Some(disconnect(200));
        store.write(vec![StoreOp::UpdatePeer(peer, third)]).unwrap();
        let stored = peers(&store).remove(&peer).unwrap();
        assert_eq!(stored.addresses, vec![address(3)]);
        assert_eq!(stored.last_disconnect, Some(disconnect(200)));
    }

    #[test]
    fn clones_share_one_state_and_load_reads_it() {
        let mut writer = MemoryStore::new();
        let mut reader = writer.clone();
        let peer = PeerId::random();
        writer
            .write(vec![ban(BanTarget::Peer(peer), None)])
            .unwrap();
        writer.flush().unwrap();
        let loaded = reader.load().unwrap();
        assert_eq!(loaded, writer.snapshot());
        assert_eq!(
            loaded.bans,
            vec![StoredBan {
                target: BanTarget::Peer(peer),
                until: None
            }]
        );
        // A clone made later, and writes through it, are the same store too.
        let mut late = reader.clone();
        late.write(vec![StoreOp::RemoveBan(BanTarget::Peer(peer))])
            .unwrap();
        assert!(writer.snapshot().bans.is_empty());
    }

    #[test]
    fn beyond_the_cap_the_stalest_disposable_peers_go_down_to_nine_tenths() {
        let mut store = MemoryStore::new().with_max_peers(10);
        let (wanted, tagged) = (PeerId::random(), PeerId::random());
        // The two that matter are the stalest of all: they stay anyway.
        let mut keep = update(true, None, None);
        keep.last_disconnect = Some(disconnect(1));
        let mut valued = update(false, None, Some(1));
        valued.last_disconnect = Some(disconnect(1));
        let mut ops = vec![
            StoreOp::UpdatePeer(wanted, keep),
            StoreOp::UpdatePeer(tagged, valued),
        ];
        let disposable: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        for (i, peer) in disposable.iter().enumerate() {
            let mut seen = update(false, Some(vec![address(1)]), None);
            seen.last_disconnect = Some(disconnect(10 + i as u64));
            ops.push(StoreOp::UpdatePeer(*peer, seen));
        }
        // A ban is never pruned.
        ops.push(ban(BanTarget::Peer(disposable[0]), None));
        store.write(ops).unwrap();
        let held = peers(&store);
        assert_eq!(held.len(), 9, "12 over a cap of 10: down to 9");
        assert!(held.contains_key(&wanted) && held.contains_key(&tagged));
        // The three stalest disposable ones went.
        for peer in &disposable[..3] {
            assert!(!held.contains_key(peer));
        }
        assert_eq!(bans(&store).len(), 1);
        // At the cap nothing goes.
        let mut at_cap = MemoryStore::new().with_max_peers(2);
        at_cap
            .write(vec![
                StoreOp::UpdatePeer(PeerId::random(), update(false, None, None)),
                StoreOp::UpdatePeer(PeerId::random(), update(false, None, None)),
            ])
            .unwrap();
        assert_eq!(at_cap.snapshot().peers.len(), 2);
    }

    #[test]
    fn a_panic_while_holding_the_lock_loses_nothing() {
        let mut store = MemoryStore::new();
        let peer = PeerId::random();
        store.write(vec![ban(BanTarget::Peer(peer), None)]).unwrap();
        let poisoner = store.clone();
        let _ = std::thread::spawn(move || {
            let _state = poisoner.state();
            panic!("a panic elsewhere, with the store's lock held");
        })
        .join();
        assert!(store.state.is_poisoned());
        let other = PeerId::random();
        store
            .write(vec![ban(BanTarget::Peer(other), None)])
            .unwrap();
        assert_eq!(store.load().unwrap().bans.len(), 2);
    }
}
