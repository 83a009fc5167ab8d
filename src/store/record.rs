//! The records a peer store holds, and how an update merges into them.

use std::time::Duration;

use libp2p_core::Multiaddr;
use libp2p_identity::PeerId;
use web_time::SystemTime;

use super::cap_addresses;
use crate::{
    core::{BanTarget, ClosedBy},
    DisconnectReason,
};

/// A stored ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBan {
    /// What is banned.
    pub target: BanTarget,
    /// When it ends; `None` for a permanent ban.
    pub until: Option<SystemTime>,
}

/// How a peer's last connection ended, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredDisconnect {
    /// Why it ended.
    pub reason: DisconnectReason,
    /// Which side ended it.
    pub closed_by: ClosedBy,
    /// When it ended.
    pub at: SystemTime,
    /// The remote's hint for when to come back.
    pub retry_after: Option<Duration>,
}

/// What a store holds of one peer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredPeer {
    /// The application wants it connected.
    pub wanted: bool,
    /// Addresses, newest first.
    pub addresses: Vec<Multiaddr>,
    /// Protection tags.
    pub protected: Vec<String>,
    /// Valued tags.
    pub tags: Vec<(String, i64)>,
    /// How its last connection ended.
    pub last_disconnect: Option<StoredDisconnect>,
}

/// A change to a stored peer, as the manager reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUpdate {
    /// Whether the application wants it connected.
    pub wanted: bool,
    /// Its addresses; `None`: keep the stored ones.
    pub addresses: Option<Vec<Multiaddr>>,
    /// Its protection tags.
    pub protected: Vec<String>,
    /// Its valued tags.
    pub tags: Vec<(String, i64)>,
    /// How its last connection ended; `None`: keep the stored one.
    pub last_disconnect: Option<StoredDisconnect>,
}

/// Everything a store holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredState {
    /// The bans (ended ones included: the manager drops them).
    pub bans: Vec<StoredBan>,
    /// The peers.
    pub peers: Vec<(PeerId, StoredPeer)>,
}

impl StoredPeer {
    /// Merges `update` in: wants and tags are replaced; addresses and the last disconnect only
    /// when the update carries them.
    pub fn apply(&mut self, update: StoredUpdate) {
        self.wanted = update.wanted;
        self.protected = update.protected;
        self.tags = update.tags;
        if let Some(addresses) = update.addresses {
            self.addresses = cap_addresses(addresses);
        }
        if let Some(last) = update.last_disconnect {
            self.last_disconnect = Some(last);
        }
    }

    /// A record made from `update` alone.
    pub fn from_update(update: StoredUpdate) -> Self {
        let mut peer = Self::default();
        peer.apply(update);
        peer
    }

    /// Whether the store may drop it to stay within its size: nobody wants it and no tag
    /// says it matters.
    pub fn is_disposable(&self) -> bool {
        !self.wanted && self.protected.is_empty() && self.tags.is_empty()
    }

    /// When it was last seen (its last disconnect), for dropping the stalest first.
    pub fn last_seen(&self) -> SystemTime {
        self.last_disconnect
            .map_or(SystemTime::UNIX_EPOCH, |last| last.at)
    }
}

/// Which disposable peers to drop so that at most `keep` peers remain: the stalest first.
/// Peers that are not disposable are never dropped, even above `keep`.
pub(crate) fn stalest_beyond<'a>(
    peers: impl Iterator<Item = (PeerId, &'a StoredPeer)>,
    total: usize,
    keep: usize,
) -> Vec<PeerId> {
    let excess = total.saturating_sub(keep);
    if excess == 0 {
        return Vec::new();
    }
    let mut disposable: Vec<(SystemTime, PeerId)> = peers
        .filter(|(_, peer)| peer.is_disposable())
        .map(|(id, peer)| (peer.last_seen(), id))
        .collect();
    let excess = excess.min(disposable.len());
    if excess < disposable.len() {
        disposable.select_nth_unstable(excess);
    }
    disposable.truncate(excess);
    disposable.into_iter().map(|(_, id)| id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(secs: u64) -> StoredPeer {
        StoredPeer {
            last_disconnect: Some(StoredDisconnect {
                reason: DisconnectReason::Timeout,
                closed_by: ClosedBy::Remote,
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
                retry_after: None,
            }),
            ..StoredPeer::default()
        }
    }

    #[test]
    fn an_update_keeps_what_it_does_not_carry() {
        let address: Multiaddr = "/ip4/10.0.0.1/tcp/1".parse().unwrap();
        let mut peer = seen(5);
        peer.addresses = vec![address.clone()];
        peer.apply(StoredUpdate {
            wanted: true,
            addresses: None,
            protected: vec!["relay".into()],
            tags: vec![],
            last_disconnect: None,
        });
        assert!(peer.wanted);
        assert_eq!(peer.addresses, vec![address]);
        assert_eq!(peer.last_disconnect, seen(5).last_disconnect);
        assert_eq!(peer.protected, vec!["relay".to_owned()]);
    }

    #[test]
    fn the_stalest_disposable_peers_go_first() {
        let ids: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        let mut peers: Vec<(PeerId, StoredPeer)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, seen(i as u64)))
            .collect();
        // The stalest one is wanted: it stays.
        peers[0].1.wanted = true;
        let dropped = stalest_beyond(peers.iter().map(|(id, p)| (*id, p)), 5, 3);
        let mut expected = vec![ids[1], ids[2]];
        let mut dropped_sorted = dropped.clone();
        expected.sort();
        dropped_sorted.sort();
        assert_eq!(dropped_sorted, expected);
        assert!(stalest_beyond(peers.iter().map(|(id, p)| (*id, p)), 3, 3).is_empty());
    }
}
