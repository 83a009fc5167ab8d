//! A peer store: what the manager keeps across restarts.
//!
//! A [`PeerStore`] holds bans (with their end), and per peer: whether the application wants
//! it connected, its addresses, its protection and valued tags, and how its last connection
//! ended. [`Behaviour::with_store`](crate::Behaviour::with_store) reads it back on start (bans
//! in force are enforced again, wanted peers are redialed) and writes changes to it in batches,
//! off the hot path: the manager journals which peers and bans changed, and the behaviour hands
//! the changes over about once a second ([`StoreConfig::flush_interval`]) or sooner when many
//! piled up.
//!
//! Two stores come with the crate:
//! - [`MemoryStore`]: in memory. Cheap clones share one state, so a swarm rebuilt in the same
//!   process (or a test) sees what the previous one wrote.
//! - `RedbStore` (feature `redb`): a file, on the embedded database [redb]. Each batch is
//!   one transaction, written by a background thread; killing the process at any moment
//!   leaves the last committed batch.
//!
//! Times are wall-clock ([`SystemTime`]) in the store, so a ban that ends at 14:00 ends at
//! 14:00 whenever the node is restarted.
//!
//! [redb]: https://docs.rs/redb

#[cfg(feature = "redb")]
mod codec;
mod driver;
mod memory;
mod record;
#[cfg(feature = "redb")]
mod redb;

use std::{path::PathBuf, time::Duration};

pub(crate) use driver::StoreDriver;
use libp2p_core::Multiaddr;
use libp2p_identity::PeerId;
pub use memory::MemoryStore;
pub use record::{StoredBan, StoredDisconnect, StoredPeer, StoredState, StoredUpdate};
use web_time::{Instant, SystemTime};

#[cfg(feature = "redb")]
pub use self::redb::RedbStore;
use crate::core::{Ban, BanTarget, Change, DurablePeer, LastDisconnect, PeerUpdate};

/// Where the manager's durable state goes. See the [module docs](self).
///
/// `write` is called from the swarm's task: an implementation that does I/O should queue the
/// operations and return (as `RedbStore` does), and do the I/O elsewhere.
pub trait PeerStore: Send + 'static {
    /// Everything stored, read once at start.
    fn load(&mut self) -> Result<StoredState, StoreError>;

    /// Applies a batch of operations, in order. May queue them and return before they are
    /// durable; [`flush`](Self::flush) waits for them.
    fn write(&mut self, ops: Vec<StoreOp>) -> Result<(), StoreError>;

    /// Waits until every operation written so far is durable (called at shutdown).
    fn flush(&mut self) -> Result<(), StoreError>;
}

impl<S: PeerStore + ?Sized> PeerStore for Box<S> {
    fn load(&mut self) -> Result<StoredState, StoreError> {
        (**self).load()
    }

    fn write(&mut self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        (**self).write(ops)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        (**self).flush()
    }
}

/// One operation on a peer store.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreOp {
    /// Store a ban (replacing the one of the same target).
    PutBan(StoredBan),
    /// Drop the ban of a target.
    RemoveBan(BanTarget),
    /// Merge an update into a peer's record (see [`StoredPeer::apply`]).
    UpdatePeer(PeerId, StoredUpdate),
    /// Drop everything stored of a peer.
    RemovePeer(PeerId),
}

/// Settings of the store as the behaviour drives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// How often journaled changes are handed to the store [default: 1 s].
    pub flush_interval: Duration,
    /// Hand changes over early once this many peers and bans changed [default: 1024].
    pub max_batch: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(1),
            max_batch: 1024,
        }
    }
}

/// Why a peer store cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file cannot be opened or created.
    #[error("cannot open the peer store {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another process has the file open.
    #[error("the peer store {path} is in use by another process")]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The file is damaged. Move it away, or open it with
    /// `RedbStore::open_or_start_fresh` to set it aside and begin with an empty store.
    #[error("the peer store {path} is corrupted: {detail}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The file was written by another version, in a format this one does not read.
    /// `RedbStore::open_or_start_fresh` sets it aside and begins with an empty store.
    #[error("the peer store {path} has {found}; this version reads peer store format {expected}")]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// Its format.
        found: String,
        /// The format this version reads.
        expected: u64,
    },
    /// Writing failed; the batch was not stored.
    #[error("cannot write to the peer store {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store's writer is gone (it stopped after an earlier error).
    #[error("the peer store {path} is closed")]
    Closed {
        /// The file.
        path: PathBuf,
    },
}

/// Converts between the manager's monotonic clock and the store's wall clock, around one
/// moment read from both.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clocks {
    instant: Instant,
    wall: SystemTime,
}

impl Clocks {
    pub(crate) fn now() -> Self {
        Self::new(Instant::now(), SystemTime::now())
    }

    /// The moment `instant` on the monotonic clock is `wall` on the wall clock.
    pub(crate) fn new(instant: Instant, wall: SystemTime) -> Self {
        Self { instant, wall }
    }

    pub(crate) fn instant(&self) -> Instant {
        self.instant
    }

    pub(crate) fn wall(&self) -> SystemTime {
        self.wall
    }

    /// `at` on the wall clock.
    pub(crate) fn to_wall(self, at: Instant) -> SystemTime {
        if at >= self.instant {
            self.wall + (at - self.instant)
        } else {
            let ago = self.instant - at;
            self.wall.checked_sub(ago).unwrap_or(SystemTime::UNIX_EPOCH)
        }
    }

    /// `at` on the monotonic clock; moments too far away to represent are clamped to now (in
    /// the past) or to a century ahead.
    pub(crate) fn to_instant(self, at: SystemTime) -> Instant {
        match at.duration_since(self.wall) {
            Ok(ahead) => self
                .instant
                .checked_add(ahead.min(Duration::from_secs(100 * 365 * 24 * 3600)))
                .unwrap_or(self.instant),
            Err(behind) => self
                .instant
                .checked_sub(behind.duration())
                .unwrap_or(self.instant),
        }
    }
}

/// The manager's changes as store operations.
pub(crate) fn to_ops(changes: Vec<Change>, clocks: Clocks) -> Vec<StoreOp> {
    changes
        .into_iter()
        .map(|change| match change {
            Change::Ban(ban) => StoreOp::PutBan(StoredBan {
                target: ban.target,
                until: ban.until.map(|at| clocks.to_wall(at)),
            }),
            Change::Unban(target) => StoreOp::RemoveBan(target),
            Change::Forget(peer) => StoreOp::RemovePeer(peer),
            Change::Peer { peer, update } => StoreOp::UpdatePeer(peer, to_stored(update, clocks)),
        })
        .collect()
}

fn to_stored(update: PeerUpdate, clocks: Clocks) -> StoredUpdate {
    StoredUpdate {
        wanted: update.wanted,
        addresses: update.addresses,
        protected: update.protected,
        tags: update.tags,
        last_disconnect: update.last_disconnect.map(|last| StoredDisconnect {
            reason: last.reason,
            closed_by: last.closed_by,
            at: clocks.to_wall(last.at),
            retry_after: last.retry_after,
        }),
    }
}

/// What a store read back, for [`Manager::restore`](crate::core::Manager::restore).
pub(crate) fn to_restore(
    state: StoredState,
    clocks: Clocks,
) -> (Vec<Ban>, Vec<(PeerId, DurablePeer)>) {
    let bans = state
        .bans
        .into_iter()
        .map(|ban| Ban {
            target: ban.target,
            until: ban.until.map(|at| clocks.to_instant(at)),
        })
        .collect();
    let peers = state
        .peers
        .into_iter()
        .map(|(peer, stored)| {
            let durable = DurablePeer {
                wanted: stored.wanted,
                addresses: stored.addresses,
                protected: stored.protected,
                tags: stored.tags,
                last_disconnect: stored.last_disconnect.map(|last| LastDisconnect {
                    reason: last.reason,
                    closed_by: last.closed_by,
                    at: clocks.to_instant(last.at),
                    // A hint that ran out while the node was down is dropped here, on the wall
                    // clock: a moment further back than the monotonic clock reaches is clamped,
                    // and the hint would count from the clamped moment.
                    retry_after: last.retry_after.filter(|hint| {
                        last.at
                            .checked_add(*hint)
                            .is_some_and(|end| end > clocks.wall)
                    }),
                }),
            };
            (peer, durable)
        })
        .collect();
    (bans, peers)
}

/// Addresses kept per stored peer, at most (the manager keeps fewer by default).
pub const MAX_STORED_ADDRESSES: usize = 32;

/// Keeps `addresses` within [`MAX_STORED_ADDRESSES`].
fn cap_addresses(mut addresses: Vec<Multiaddr>) -> Vec<Multiaddr> {
    addresses.truncate(MAX_STORED_ADDRESSES);
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{core::ClosedBy, Config, DisconnectReason};

    #[test]
    fn the_two_clocks_agree_both_ways() {
        let clocks = Clocks::now();
        for offset in [0u64, 1, 3_600, 86_400] {
            let ahead = clocks.wall() + Duration::from_secs(offset);
            assert_eq!(clocks.to_wall(clocks.to_instant(ahead)), ahead);
            let behind = clocks.wall() - Duration::from_secs(offset.min(60));
            assert_eq!(clocks.to_wall(clocks.to_instant(behind)), behind);
        }
    }

    #[test]
    fn a_hint_that_ran_out_while_down_is_dropped() {
        let clocks = Clocks::now();
        let peer = PeerId::random();
        let lost = |ago: u64, hint: u64| StoredPeer {
            wanted: true,
            last_disconnect: Some(StoredDisconnect {
                reason: DisconnectReason::ResourceConstraint,
                closed_by: ClosedBy::Remote,
                at: clocks.wall() - Duration::from_secs(ago),
                retry_after: Some(Duration::from_secs(hint)),
            }),
            ..StoredPeer::default()
        };
        let hint = |stored: StoredPeer| {
            let state = StoredState {
                bans: vec![],
                peers: vec![(peer, stored)],
            };
            let (_, peers) = to_restore(state, clocks);
            peers[0].1.last_disconnect.and_then(|l| l.retry_after)
        };
        // Two days ago, with a 30 s hint: over long ago.
        assert_eq!(hint(lost(2 * 86_400, 30)), None);
        // 10 s ago with a 30 s hint: 20 s are left, counted from when it was given.
        assert_eq!(hint(lost(10, 30)), Some(Duration::from_secs(30)));
    }

    #[test]
    fn attaching_drops_bans_that_ended_while_down() {
        let store = MemoryStore::new();
        let now = SystemTime::now();
        let (ended, running) = (PeerId::random(), PeerId::random());
        store
            .clone()
            .write(vec![
                StoreOp::PutBan(StoredBan {
                    target: BanTarget::Peer(ended),
                    until: Some(now - Duration::from_secs(5)),
                }),
                StoreOp::PutBan(StoredBan {
                    target: BanTarget::Peer(running),
                    until: Some(now + Duration::from_secs(600)),
                }),
            ])
            .unwrap();
        let behaviour = crate::Behaviour::new(PeerId::random(), Config::default())
            .with_store(store.clone())
            .unwrap();
        assert!(behaviour.is_peer_banned(&running));
        assert!(!behaviour.is_peer_banned(&ended));
        let stored: Vec<BanTarget> = store.snapshot().bans.iter().map(|b| b.target).collect();
        assert_eq!(stored, vec![BanTarget::Peer(running)]);
    }
}
