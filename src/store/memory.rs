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
