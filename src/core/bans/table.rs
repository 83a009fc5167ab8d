//! Expiring bans of peers and of IP networks, in one store.

use crate::core::hashing::Map;
use std::{
    collections::{BTreeMap, BTreeSet},
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

impl BanTarget {
    /// The prefix by which a single IPv6 address is banned: its /64, which one host usually
    /// owns whole (banning the /128 alone is evaded by moving to the next address).
    pub const IPV6_HOST_PREFIX: u8 = 64;

    /// What a ban given as `network` covers: a single IPv6 address (a /128) stands for its
    /// host, its /[`IPV6_HOST_PREFIX`](Self::IPV6_HOST_PREFIX); an IPv4-mapped IPv6 network is
    /// the IPv4 network it maps; any other network keeps its prefix. Host bits are cleared.
    pub fn host_scope(network: IpNet) -> IpNet {
        match network {
            IpNet::V6(v6) => {
                if let Some(v4) = v6.addr().to_ipv4_mapped() {
                    if v6.prefix_len() >= 96 {
                        let len = v6.prefix_len() - 96;
                        if let Ok(net) = IpNet::new(IpAddr::V4(v4), len) {
                            return net.trunc();
                        }
                    }
                }
                if v6.prefix_len() == 128 {
                    if let Ok(net) = IpNet::new(IpAddr::V6(v6.addr()), Self::IPV6_HOST_PREFIX) {
                        return net.trunc();
                    }
                }
                network.trunc()
            }
            IpNet::V4(_) => network.trunc(),
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

/// One ban held: its end, and whether the manager placed it on its own (after protocol
/// violations) rather than the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    until: Option<Instant>,
    automatic: bool,
}

/// What placing an automatic ban did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AutomaticBan {
    /// Placed, or extended: `evicted` is the automatic ban that made room for it (the one
    /// ending soonest).
    Placed { evicted: Option<BanTarget> },
    /// The application's ban of the target is left as it is.
    Application,
    /// The cap on automatic bans of this kind is 0.
    Refused,
}

/// The ban store. Expiry is driven by the manager's timers; lookups also ignore bans whose
/// time has passed, so an early or late timer never changes a verdict.
///
/// Automatic bans always end, and are held within a cap per kind (peers, networks): when it is
/// reached, the automatic ban of that kind that ends soonest makes room. The application's bans
/// are never evicted and do not count.
#[derive(Debug, Default)]
pub(crate) struct Bans {
    peers: Map<PeerId, Entry>,
    networks: Map<IpNet, Entry>,
    /// How many banned networks use each (is IPv6, prefix length): an address is looked up
    /// once per length in use, not once per ban.
    prefix_lengths: BTreeMap<(bool, u8), usize>,
    /// The automatic bans of peers by end, soonest first.
    automatic_peers: BTreeSet<(Instant, PeerId)>,
    /// The automatic bans of networks by end, soonest first.
    automatic_networks: BTreeSet<(Instant, IpNet)>,
}

impl Bans {
    /// Bans `target` for the application until `until` (`None`: for ever), replacing an
    /// automatic ban of it. Returns the previous expiry, if the target was banned already.
    pub(crate) fn insert(
        &mut self,
        target: BanTarget,
        until: Option<Instant>,
    ) -> Option<Option<Instant>> {
        let previous = self.remove(target);
        self.put(
            target,
            Entry {
                until,
                automatic: false,
            },
        );
        previous
    }

    /// Bans `target` automatically until `until`, holding at most `cap` automatic bans of its
    /// kind. An application ban of the target is left alone (see [`AutomaticBan`]); an
    /// automatic one is extended to the later end.
    pub(crate) fn insert_automatic(
        &mut self,
        target: BanTarget,
        until: Instant,
        cap: usize,
    ) -> AutomaticBan {
        let target = target.normalized();
        let (previous, evicted) = match self.entry(target) {
            Some(Entry {
                automatic: false, ..
            }) => return AutomaticBan::Application,
            Some(Entry {
                until: previous, ..
            }) => {
                self.remove(target);
                (previous, None)
            }
            None if cap == 0 => return AutomaticBan::Refused,
            None => {
                let mut evicted = None;
                if self.automatic_of_kind(target) >= cap {
                    let soonest = match target {
                        BanTarget::Peer(_) => self
                            .automatic_peers
                            .first()
                            .map(|(at, peer)| (BanTarget::Peer(*peer), *at)),
                        BanTarget::Network(_) => self
                            .automatic_networks
                            .first()
                            .map(|(at, net)| (BanTarget::Network(*net), *at)),
                    };
                    if let Some((old, _)) = soonest {
                        self.remove(old);
                        evicted = Some(old);
                    }
                }
                (None, evicted)
            }
        };
        let until = previous.map_or(until, |previous| previous.max(until));
        self.put(
            target,
            Entry {
                until: Some(until),
                automatic: true,
            },
        );
        AutomaticBan::Placed { evicted }
    }

    /// Lifts the ban of `target`. Returns its expiry if it was banned.
    pub(crate) fn remove(&mut self, target: BanTarget) -> Option<Option<Instant>> {
        let removed = match target {
            BanTarget::Peer(peer) => self.peers.remove(&peer)?,
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
                removed
            }
        };
        if let (true, Some(at)) = (removed.automatic, removed.until) {
            match target {
                BanTarget::Peer(peer) => self.automatic_peers.remove(&(at, peer)),
                BanTarget::Network(net) => self.automatic_networks.remove(&(at, net.trunc())),
            };
        }
        Some(removed.until)
    }

    /// The expiry of the ban of `target`, if one is in force.
    pub(crate) fn get(&self, target: BanTarget) -> Option<Option<Instant>> {
        self.entry(target).map(|e| e.until)
    }

    /// The expiry of the application's ban of `target`, if it has one (what a store keeps).
    pub(crate) fn get_application(&self, target: BanTarget) -> Option<Option<Instant>> {
        self.entry(target).filter(|e| !e.automatic).map(|e| e.until)
    }

    /// Whether the ban of `target` was placed automatically.
    pub(crate) fn is_automatic(&self, target: BanTarget) -> bool {
        self.entry(target).is_some_and(|e| e.automatic)
    }

    /// Automatic bans held: of peers, of networks (expired ones not yet collected included).
    pub(crate) fn automatic(&self) -> (usize, usize) {
        (self.automatic_peers.len(), self.automatic_networks.len())
    }

    /// The ban of `peer` in force at `now`: `Some(until)`.
    pub(crate) fn peer(&self, peer: &PeerId, now: Instant) -> Option<Option<Instant>> {
        self.peers
            .get(peer)
            .map(|e| e.until)
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
                let until = self.networks.get(&net)?.until;
                in_force(until, now).then_some((net, until))
            })
    }

    /// Every ban, expired or not yet collected.
    pub(crate) fn list(&self) -> Vec<Ban> {
        let peers = self.peers.iter().map(|(peer, e)| Ban {
            target: BanTarget::Peer(*peer),
            until: e.until,
        });
        let networks = self.networks.iter().map(|(net, e)| Ban {
            target: BanTarget::Network(*net),
            until: e.until,
        });
        peers.chain(networks).collect()
    }

    fn entry(&self, target: BanTarget) -> Option<Entry> {
        match target {
            BanTarget::Peer(peer) => self.peers.get(&peer).copied(),
            BanTarget::Network(net) => self.networks.get(&net.trunc()).copied(),
        }
    }

    /// Stores `entry` for `target`, which holds no ban.
    fn put(&mut self, target: BanTarget, entry: Entry) {
        match target {
            BanTarget::Peer(peer) => {
                if let (true, Some(at)) = (entry.automatic, entry.until) {
                    self.automatic_peers.insert((at, peer));
                }
                self.peers.insert(peer, entry);
            }
            BanTarget::Network(net) => {
                let net = net.trunc();
                if let (true, Some(at)) = (entry.automatic, entry.until) {
                    self.automatic_networks.insert((at, net));
                }
                self.networks.insert(net, entry);
                *self.prefix_lengths.entry(prefix_key(&net)).or_default() += 1;
            }
        }
    }

    fn automatic_of_kind(&self, target: BanTarget) -> usize {
        match target {
            BanTarget::Peer(_) => self.automatic_peers.len(),
            BanTarget::Network(_) => self.automatic_networks.len(),
        }
    }
}

pub(crate) fn in_force(until: Option<Instant>, now: Instant) -> bool {
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
    #[test]
    fn automatic_bans_are_capped_soonest_ending_first_and_never_displace_the_application() {
        let now = Instant::now();
        let at = |secs: u64| now + Duration::from_secs(secs);
        let mut bans = Bans::default();
        let (chosen, a, b, c) = (
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
            PeerId::random(),
        );
        bans.insert(BanTarget::Peer(chosen), Some(at(1)));
        assert_eq!(
            bans.insert_automatic(BanTarget::Peer(chosen), at(100), 2),
            AutomaticBan::Application
        );
        assert!(!bans.is_automatic(BanTarget::Peer(chosen)));
        bans.insert_automatic(BanTarget::Peer(a), at(20), 2);
        bans.insert_automatic(BanTarget::Peer(b), at(10), 2);
        // Full: b ends soonest and makes room; the application's ban is not counted.
        assert_eq!(
            bans.insert_automatic(BanTarget::Peer(c), at(30), 2),
            AutomaticBan::Placed {
                evicted: Some(BanTarget::Peer(b))
            }
        );
        assert_eq!(bans.automatic(), (2, 0));
        assert!(bans.peer(&chosen, now).is_some());
        // Banned again: extended, nothing evicted.
        assert_eq!(
            bans.insert_automatic(BanTarget::Peer(a), at(40), 2),
            AutomaticBan::Placed { evicted: None }
        );
        assert_eq!(bans.get(BanTarget::Peer(a)), Some(Some(at(40))));
        // The application takes an automatic ban over: no longer counted.
        bans.insert(BanTarget::Peer(a), None);
        assert_eq!(bans.automatic(), (1, 0));
        assert_eq!(bans.get_application(BanTarget::Peer(a)), Some(None));
        assert_eq!(bans.get_application(BanTarget::Peer(c)), None);
        assert_eq!(
            bans.insert_automatic(BanTarget::Network(net("10.0.0.0/24")), at(5), 0),
            AutomaticBan::Refused
        );
        bans.remove(BanTarget::Peer(c));
        assert_eq!(bans.automatic(), (0, 0));
    }
}
