//! Who the dialers are, known to every process from the index alone: identity, source address,
//! network group, and whether it runs the crate.

use std::net::Ipv4Addr;

use libp2p::{identity::Keypair, PeerId};

/// The source networks: dialer `i` connects from 127.(1 + i % GROUPS).x.y, so each /16 holds
/// about a quarter of the dialers.
pub const GROUPS: usize = 4;
/// The /16 the ban step bans (the second group).
pub const BANNED_GROUP: usize = 1;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Every `managed_every`-th dialer runs the crate's `Behaviour` (and so reads goodbyes);
    /// the others are bare ping swarms. 0: none does.
    pub managed_every: usize,
}

impl Plan {
    /// Dialer `i`'s identity: an Ed25519 key from a seed derived from `i`, so that the parent
    /// can tell which dialer a `PeerId` is without asking.
    pub fn keypair(i: usize) -> Keypair {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        seed[8..16].copy_from_slice(b"scale-ex");
        // A 32-byte seed is always a valid Ed25519 secret key.
        Keypair::ed25519_from_bytes(seed).expect("32-byte seed")
    }

    pub fn peer_id(i: usize) -> PeerId {
        Self::keypair(i).public().to_peer_id()
    }

    pub fn group(i: usize) -> usize {
        i % GROUPS
    }

    /// 127.(1 + group).b.c, distinct for every `i` below 4 * 256 * 254.
    pub fn source_ip(i: usize) -> Ipv4Addr {
        let j = i / GROUPS;
        Ipv4Addr::new(
            127,
            1 + Self::group(i) as u8,
            (j / 254) as u8,
            (j % 254) as u8 + 1,
        )
    }

    /// The network of group `group`, as `ban_network` takes it.
    pub fn network(group: usize) -> String {
        format!("127.{}.0.0/16", 1 + group)
    }

    /// Spread over the groups alike: every `managed_every`-th dialer within each group.
    pub fn is_managed(&self, i: usize) -> bool {
        self.managed_every != 0 && (i / GROUPS).is_multiple_of(self.managed_every)
    }
}
