//! Expiring bans of peers and of IP networks, in one store.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::IpAddr,
};

use ipnet::IpNet;
use libp2p_identity::PeerId;
use web_time::Instant;

/// What a ban applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BanTarget {
    /// A peer, from whatever address it comes.
    Peer(PeerId),
    /// Every address in an IP network (a single address is a /32 or /128 network).
    Network(IpNet),
}

impl BanTarget {
    /// The same target with the host bits of a network cleared (`10.1.2.3/16` is
    /// `10.1.0.0/16`), as the store keeps it.
    pub fn normalized(self) -> Self {
        match self {
            BanTarget::Network(net) => BanTarget::Network(net.trunc()),
            peer => peer,
        }
    }
}

impl fmt::Display for BanTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BanTarget::Peer(peer) => write!(f, "peer {peer}"),
            BanTarget::Network(net) => write!(f, "network {net}"),
        }
    }
}

/// An active ban.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ban {
    /// What is banned.
    pub target: BanTarget,
    /// When the ban ends; `None` for a permanent ban.
    pub until: Option<Instant>,
}

/// The ban store. Expiry is driven by the manager's timers; lookups also ignore bans whose
/// time has passed, so an early or late timer never changes a verdict.
#[derive(Debug, Default)]
pub(crate) struct Bans {
    peers: HashMap<PeerId, Option<Instant>>,
    networks: HashMap<IpNet, Option<Instant>>,
    /// How many banned networks use each (is IPv6, prefix length): an address is looked up
    /// once per length in use, not once per ban.
    prefix_lengths: BTreeMap<(bool, u8), usize>,
}

impl Bans {
    /// Bans `target` until `until` (`None`: for ever). Returns the previous expiry, if the
    /// target was banned already.
    pub(crate) fn insert(
        &mut self,
        target: BanTarget,
        until: Option<Instant>,
    ) -> Option<Option<Instant>> {
        match target {
            BanTarget::Peer(peer) => self.peers.insert(peer, until),
            BanTarget::Network(net) => {
                let net = net.trunc();
                let previous = self.networks.insert(net, until);
                if previous.is_none() {
                    *self.prefix_lengths.entry(prefix_key(&net)).or_default() += 1;
                }
                previous
            }
        }
    }

    /// Lifts the ban of `target`. Returns its expiry if it was banned.
    pub(crate) fn remove(&mut self, target: BanTarget) -> Option<Option<Instant>> {
        match target {
            BanTarget::Peer(peer) => self.peers.remove(&peer),
            BanTarget::Network(net) => {
                let net = net.trunc();
                let removed = self.networks.remove(&net)?;
                let key = prefix_key(&net);
                if let Some(count) = self.prefix_lengths.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        self.prefix_lengths.remove(&key);
                    }
                }
                Some(removed)
            }
        }
    }

    /// The expiry of the ban of `target`, if one is in force.
    pub(crate) fn get(&self, target: BanTarget) -> Option<Option<Instant>> {
        match target {
            BanTarget::Peer(peer) => self.peers.get(&peer).copied(),
            BanTarget::Network(net) => self.networks.get(&net.trunc()).copied(),
        }
    }

    /// The ban of `peer` in force at `now`: `Some(until)`.
    pub(crate) fn peer(&self, peer: &PeerId, now: Instant) -> Option<Option<Instant>> {
        self.peers
            .get(peer)
            .copied()
            .filter(|until| in_force(*until, now))
    }

    /// The banned network containing `ip` at `now`, with its expiry.
    pub(crate) fn ip(&self, ip: IpAddr, now: Instant) -> Option<(IpNet, Option<Instant>)> {
        let v6 = ip.is_ipv6();
        self.prefix_lengths
            .keys()
            .filter(|(is_v6, _)| *is_v6 == v6)
            .filter_map(|(_, len)| IpNet::new(ip, *len).ok().map(|n| n.trunc()))
            .find_map(|net| {
                let until = *self.networks.get(&net)?;
                in_force(until, now).then_some((net, until))
            })
    }

    /// Every ban, expired or not yet collected.
    pub(crate) fn list(&self) -> Vec<Ban> {
        let peers = self.peers.iter().map(|(peer, until)| Ban {
            target: BanTarget::Peer(*peer),
            until: *until,
        });
        let networks = self.networks.iter().map(|(net, until)| Ban {
            target: BanTarget::Network(*net),
            until: *until,
        });
        peers.chain(networks).collect()
    }
}

fn in_force(until: Option<Instant>, now: Instant) -> bool {
    until.is_none_or(|until| now < until)
}

fn prefix_key(net: &IpNet) -> (bool, u8) {
    (matches!(net, IpNet::V6(_)), net.prefix_len())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_every_address_inside_and_nothing_outside() {
        let now = Instant::now();
        let mut bans = Bans::default();
        bans.insert(BanTarget::Network(net("10.1.0.0/16")), None);
        bans.insert(BanTarget::Network(net("192.168.1.7/32")), None);
        bans.insert(BanTarget::Network(net("2001:db8::/32")), None);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            bans.ip(ip("10.1.200.3"), now).map(|b| b.0),
            Some(net("10.1.0.0/16"))
        );
        assert!(bans.ip(ip("10.2.0.1"), now).is_none());
        assert!(bans.ip(ip("192.168.1.7"), now).is_some());
        assert!(bans.ip(ip("192.168.1.8"), now).is_none());
        assert!(bans.ip(ip("2001:db8::1"), now).is_some());
        assert!(bans.ip(ip("2001:db9::1"), now).is_none());
    }

    #[test]
    fn host_bits_are_ignored_and_unban_cleans_up() {
        let now = Instant::now();
        let mut bans = Bans::default();
        bans.insert(BanTarget::Network(net("10.1.2.3/16")), None);
        assert!(bans
            .remove(BanTarget::Network(net("10.1.0.0/16")))
            .is_some());
        assert!(bans.ip("10.1.2.3".parse().unwrap(), now).is_none());
        assert!(bans.list().is_empty());
        assert!(bans.prefix_lengths.is_empty());
    }

    #[test]
    fn expired_bans_no_longer_refuse_even_before_collection() {
        let now = Instant::now();
        let peer = PeerId::random();
        let mut bans = Bans::default();
        bans.insert(BanTarget::Peer(peer), Some(now + Duration::from_secs(10)));
        assert!(bans.peer(&peer, now).is_some());
        assert!(bans.peer(&peer, now + Duration::from_secs(10)).is_none());
        assert_eq!(bans.list().len(), 1);
    }
}
