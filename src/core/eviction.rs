//! Who is trimmed: a pure choice over the settled peers, shaped after Bitcoin Core's inbound
//! eviction (`SelectNodeToEvict`).
//!
//! The attacker this resists owns many PeerIds and some addresses, and connects them all at
//! once. Young connections are not candidates (the caller keeps them out), so a burst cannot
//! push settled peers out. Among the settled, a share chosen for diversity is kept whatever
//! happens: outbound connections (we chose them), one peer per network group, the lowest
//! latency, the longest uptime. None of these can be bought with fresh PeerIds, and a single
//! group wins at most one place of the group quota. What remains is trimmed from the biggest
//! network group first, so a burst from one /16 or /32 pays before anyone else.

use crate::core::hashing::{Map, Set};
use std::{net::IpAddr, time::Duration};

use libp2p_core::Multiaddr;
use libp2p_identity::PeerId;
use web_time::Instant;

use super::limits::ip_of;

/// The network a peer's address belongs to, for diversity: IPv4 by /16, IPv6 by /32 (what
/// one operator typically holds), after mapping IPv4-in-IPv6 back to IPv4. Connections with no
/// IP (inbound relayed circuits, the memory transport) share one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum NetGroup {
    V4(u16),
    V6(u32),
    NoIp,
}

impl NetGroup {
    pub(crate) fn of(address: &Multiaddr) -> Self {
        match ip_of(address).map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => {
                let [a, b, _, _] = v4.octets();
                NetGroup::V4(u16::from_be_bytes([a, b]))
            }
            Some(IpAddr::V6(v6)) => NetGroup::V6((u128::from(v6) >> 96) as u32),
            None => NetGroup::NoIp,
        }
    }
}

/// How much the application asked for a peer that may be trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Asked {
    /// Nobody asked: it dialed us, or another behaviour dialed it.
    No,
    /// Discovery reported it, or it is a bootstrap peer.
    Indirectly,
}

/// A settled peer that may be trimmed, with what decides its place in line.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) peer: PeerId,
    pub(crate) asked: Asked,
    pub(crate) value: i64,
    /// The health score; unmeasured counts as middling (0.5).
    pub(crate) health: f64,
    pub(crate) rtt: Option<Duration>,
    pub(crate) inbound: bool,
    pub(crate) since: Instant,
    pub(crate) group: NetGroup,
}

/// Chooses which of `candidates` to trim, first trimmed first, at most `excess` of them.
///
/// `room` is how many of the low watermark's places are left once the peers that are never
/// trimmed are counted: the diversity share is taken from peers nobody asked for, up to
/// `room` of them. Since the share fits in what the low watermark keeps anyway, a peer
/// someone asked for is trimmed only when every other peer outside the share is.
pub(crate) fn choose(mut candidates: Vec<Candidate>, excess: usize, room: usize) -> Vec<PeerId> {
    if excess == 0 || candidates.is_empty() {
        return Vec::new();
    }
    let room = room.min(candidates.iter().filter(|c| c.asked == Asked::No).count());
    let kept = diversity_share(&candidates, room);
    candidates.retain(|c| !kept.contains(&c.peer));

    let mut group_sizes: Map<NetGroup, usize> = Map::default();
    for candidate in &candidates {
        *group_sizes.entry(candidate.group).or_default() += 1;
    }
    // The group size is looked up once per candidate, not once per comparison.
    let mut candidates: Vec<(usize, Candidate)> = candidates
        .into_iter()
        .map(|c| (group_sizes[&c.group], c))
        .collect();
    let order = |(a_group, a): &(usize, Candidate), (b_group, b): &(usize, Candidate)| {
        a.asked
            .cmp(&b.asked)
            .then(a.value.cmp(&b.value))
            .then(b_group.cmp(a_group))
            .then(b.inbound.cmp(&a.inbound))
            .then(a.health.total_cmp(&b.health))
            .then(b.since.cmp(&a.since))
            // Peers alike in all of the above (connected at the same instant, as on a coarse
            // clock) are told apart by id, as if the larger had come later, so the choice
            // does not depend on the order the manager happens to hold them in.
            .then(b.peer.cmp(&a.peer))
    };
    let excess = excess.min(candidates.len());
    if excess < candidates.len() {
        candidates.select_nth_unstable_by(excess, order);
        candidates.truncate(excess);
    }
    candidates.sort_unstable_by(order);
    candidates.into_iter().map(|(_, c)| c.peer).collect()
}

/// Up to `room` peers nobody asked for, kept for diversity: a quarter of the room each (at
/// least one) for the longest-lived outbound peers, one peer per network group (its
/// longest-lived, oldest groups first), the lowest measured RTT, and the longest uptime for
/// what is left.
fn diversity_share(candidates: &[Candidate], room: usize) -> Set<PeerId> {
    let mut kept = Set::default();
    if room == 0 {
        return kept;
    }
    let quota = room.div_ceil(4);
    let mut pool: Vec<&Candidate> = candidates.iter().filter(|c| c.asked == Asked::No).collect();
    // Oldest first; at the same instant the smaller id counts as the older (as in `choose`).
    // Every pick below goes through this order, so ties are decided the same way each time.
    pool.sort_by_key(|c| (c.since, c.peer));

    let take = |kept: &mut Set<PeerId>, chosen: &mut dyn Iterator<Item = PeerId>, n| {
        let mut taken = 0;
        for peer in chosen {
            if kept.len() >= room || taken >= n {
                break;
            }
            if kept.insert(peer) {
                taken += 1;
            }
        }
    };

    take(
        &mut kept,
        &mut pool.iter().filter(|c| !c.inbound).map(|c| c.peer),
        quota,
    );
    let mut seen_groups: Set<NetGroup> = pool
        .iter()
        .filter(|c| kept.contains(&c.peer))
        .map(|c| c.group)
        .collect();
    let groups: Vec<PeerId> = pool
        .iter()
        .filter(|c| !kept.contains(&c.peer) && seen_groups.insert(c.group))
        .map(|c| c.peer)
        .collect();
    take(&mut kept, &mut groups.into_iter(), quota);
    let mut fastest: Vec<&&Candidate> = pool.iter().filter(|c| c.rtt.is_some()).collect();
    fastest.sort_by_key(|c| c.rtt);
    take(&mut kept, &mut fastest.into_iter().map(|c| c.peer), quota);
    take(&mut kept, &mut pool.iter().map(|c| c.peer), room);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(inbound: bool, since: Instant, group: &str) -> Candidate {
        Candidate {
            peer: PeerId::random(),
            asked: Asked::No,
            value: 0,
            health: 0.5,
            rtt: None,
            inbound,
            since,
            group: NetGroup::of(&group.parse().unwrap()),
        }
    }

    #[test]
    fn network_groups_are_v4_16_and_v6_32_with_mapped_addresses_as_v4() {
        let group = |a: &str| NetGroup::of(&a.parse().unwrap());
        assert_eq!(group("/ip4/1.2.3.4/tcp/1"), group("/ip4/1.2.200.9/udp/1"));
        assert_ne!(group("/ip4/1.2.3.4/tcp/1"), group("/ip4/1.3.3.4/tcp/1"));
        assert_eq!(
            group("/ip6/2001:db8::1/tcp/1"),
            group("/ip6/2001:db8:ffff::1/tcp/1")
        );
        assert_ne!(
            group("/ip6/2001:db8::1/tcp/1"),
            group("/ip6/2001:db9::1/tcp/1")
        );
        assert_eq!(
            group("/ip6/::ffff:1.2.3.4/tcp/1"),
            group("/ip4/1.2.9.9/tcp/1")
        );
        assert_eq!(group("/p2p-circuit"), NetGroup::NoIp);
    }

    #[test]
    fn the_share_takes_outbound_then_one_per_group_then_the_fastest_then_the_oldest() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let outbound = candidate(false, at(5), "/ip4/10.0.0.1");
        let lone_group = candidate(true, at(4), "/ip4/10.9.0.1");
        let mut fast = candidate(true, at(3), "/ip4/10.1.0.2");
        fast.rtt = Some(Duration::from_millis(1));
        let oldest = candidate(true, at(0), "/ip4/10.1.0.3");
        let rest: Vec<Candidate> = (0..6)
            .map(|i| candidate(true, at(10 + i), "/ip4/10.1.0.9"))
            .collect();
        let mut all = vec![
            outbound.clone(),
            lone_group.clone(),
            fast.clone(),
            oldest.clone(),
        ];
        all.extend(rest.iter().cloned());

        // Room for four: a quarter (one) of each kind, written out from the rule. The outbound
        // one; for the groups, the oldest peer of the oldest group not yet kept (10.0/16 is the
        // outbound's): `oldest`, of 10.1/16; the fastest; for uptime, the longest-lived of the
        // rest: `lone_group` (10.9/16 gets its place by age, not as a group).
        let share = diversity_share(&all, 4);
        let expected: Set<PeerId> = [outbound.peer, oldest.peer, fast.peer, lone_group.peer]
            .into_iter()
            .collect();
        assert_eq!(share, expected);
        // The rest, all inbound, alike but for their age, go newest first.
        let trimmed = choose(all.clone(), 6, 4);
        let newest_first: Vec<PeerId> = rest.iter().rev().map(|c| c.peer).collect();
        assert_eq!(trimmed, newest_first);
        // Fewer to trim: the oldest of them stays.
        assert_eq!(choose(all, 5, 4), newest_first[..5]);
    }

    #[test]
    fn the_biggest_group_goes_first_and_the_newest_in_it() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let honest: Vec<Candidate> = (0..3)
            .map(|i| candidate(true, at(i), &format!("/ip4/10.{i}.0.1")))
            .collect();
        let sybils: Vec<Candidate> = (0..5)
            .map(|i| candidate(true, at(100 - i), "/ip4/203.0.113.1"))
            .collect();
        let mut all = honest.clone();
        all.extend(sybils.iter().cloned());
        let trimmed = choose(all, 5, 0);
        let sybil_ids: Vec<PeerId> = sybils.iter().map(|c| c.peer).collect();
        assert_eq!(trimmed, sybil_ids, "the Sybils' group, newest first");
    }

    #[test]
    fn ties_are_decided_by_id_whatever_order_the_candidates_come_in() {
        let t0 = Instant::now();
        let alike: Vec<Candidate> = (0..10)
            .map(|_| candidate(true, t0, "/ip4/10.0.0.1"))
            .collect();
        let mut ids: Vec<PeerId> = alike.iter().map(|c| c.peer).collect();
        ids.sort();
        // At the same instant the larger id counts as the newer: trimmed first, and the
        // share (room 4: one group, no RTT, so the group's oldest and then uptime) keeps the
        // four smallest.
        let largest_first = vec![ids[9], ids[8], ids[7], ids[6]];
        let mut reversed = alike.clone();
        reversed.reverse();
        let mut rotated = alike.clone();
        rotated.rotate_left(3);
        for order in [alike, reversed, rotated] {
            assert_eq!(choose(order.clone(), 4, 0), largest_first);
            assert_eq!(choose(order.clone(), 4, 4), largest_first);
            let share = diversity_share(&order, 4);
            assert_eq!(share, ids[..4].iter().copied().collect());
        }
    }

    #[test]
    fn asked_for_peers_go_only_after_every_other_outside_the_share() {
        let t0 = Instant::now();
        let mut discovered = candidate(true, t0, "/ip4/10.0.0.1");
        discovered.asked = Asked::Indirectly;
        discovered.value = -100;
        let others: Vec<Candidate> = (0..4)
            .map(|i| candidate(true, t0, &format!("/ip4/10.{i}.0.1")))
            .collect();
        let mut all = others.clone();
        all.push(discovered.clone());
        let trimmed = choose(all.clone(), 4, 0);
        assert!(!trimmed.contains(&discovered.peer), "{trimmed:?}");
        let trimmed = choose(all, 5, 0);
        assert_eq!(trimmed.last(), Some(&discovered.peer));
    }
}
