//! The one-connection-per-peer rule, as pure functions.
//!
//! Both peers reach the same verdict without talking, from facts both see: the two peer ids
//! and which side (effectively) dialed each connection.
//!
//! - Opposite directions: the connection dialed by the smaller [`PeerId`] survives, on both sides.
//! - Same direction: the dialer keeps the older connection and closes the newer at once; the
//!   listener closes the newer only after a grace period (the dialer may not run this crate).

use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
use web_time::Instant;

/// Which side dialed a connection, by its *effective* role: a hole-punched connection where
/// the local node overrode its role to listener counts as dialed by the remote, so both sides
/// agree even when both dialed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// The local node dialed.
    Local,
    /// The remote dialed.
    Remote,
}

impl Initiator {
    /// Who dialed a connection this node dialed at the transport level, by its effective role:
    /// with the role overridden to listener (the dialer side of a hole punch), the remote.
    pub fn of_dial(role_override: libp2p_core::Endpoint) -> Self {
        match role_override {
            libp2p_core::Endpoint::Dialer => Initiator::Local,
            libp2p_core::Endpoint::Listener => Initiator::Remote,
        }
    }
}

impl std::fmt::Display for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Initiator::Local => "we dialed",
            Initiator::Remote => "they dialed",
        })
    }
}

/// One established connection to a peer, as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The connection.
    pub id: ConnectionId,
    /// Who dialed it.
    pub initiator: Initiator,
    /// Whether it runs through a relay (`/p2p-circuit`). Both sides see this alike.
    pub relayed: bool,
    /// When it was established.
    pub established_at: Instant,
}

/// When the local node closes a losing connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseTiming {
    /// At once: the remote, if it runs this crate, reaches the same verdict.
    Now,
    /// After the duplicate grace period: we are the listener of two connections the remote
    /// dialed; the remote (the dialer) decides first.
    AfterGrace,
}

/// The initiator whose connections win a tie-break between opposite directions: the side
/// with the smaller peer id.
pub fn preferred_initiator(local: &PeerId, remote: &PeerId) -> Initiator {
    if local < remote {
        Initiator::Local
    } else {
        Initiator::Remote
    }
}

/// The connection that survives among `candidates` (all to the same remote): a direct one over
/// a relayed one (a hole punch replaces the relay), then one dialed by the preferred initiator,
/// then the oldest, then the lowest id. Every criterion but age is seen alike on both sides.
pub fn survivor(local: &PeerId, remote: &PeerId, candidates: &[Candidate]) -> Option<Candidate> {
    let preferred = preferred_initiator(local, remote);
    candidates
        .iter()
        .min_by_key(|c| (c.relayed, c.initiator != preferred, c.established_at, c.id))
        .copied()
}

/// Whether `address` runs through a relay.
pub fn is_relayed(address: &libp2p_core::Multiaddr) -> bool {
    address
        .iter()
        .any(|p| matches!(p, libp2p_core::multiaddr::Protocol::P2pCircuit))
}

/// When the local node closes `loser`, given that `winner` survives.
pub fn close_timing(winner: &Candidate, loser: &Candidate) -> CloseTiming {
    let agreed_without_age = loser.initiator != winner.initiator || loser.relayed != winner.relayed;
    if agreed_without_age || loser.initiator == Initiator::Local {
        CloseTiming::Now
    } else {
        CloseTiming::AfterGrace
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ids() -> (PeerId, PeerId) {
        let a = PeerId::random();
        let b = PeerId::random();
        if a < b {
            (a, b)
        } else {
            (b, a)
        }
    }

    fn candidate(id: usize, initiator: Initiator, at: Instant) -> Candidate {
        Candidate {
            id: ConnectionId::new_unchecked(id),
            initiator,
            relayed: false,
            established_at: at,
        }
    }

    #[test]
    fn a_direct_connection_replaces_a_relayed_one_on_both_sides() {
        let (small, large) = ids();
        let t0 = Instant::now();
        // The relayed connection was dialed by the smaller peer; the hole-punched direct one
        // counts as dialed by the larger (its effective role) and came later.
        let relayed_small_side = Candidate {
            relayed: true,
            ..candidate(1, Initiator::Local, t0)
        };
        let direct_small_side = candidate(2, Initiator::Remote, t0 + Duration::from_secs(1));
        let relayed_large_side = Candidate {
            relayed: true,
            ..candidate(11, Initiator::Remote, t0)
        };
        let direct_large_side = candidate(12, Initiator::Local, t0 + Duration::from_secs(1));
        let kept = survivor(&small, &large, &[relayed_small_side, direct_small_side]).unwrap();
        assert_eq!(kept.id, ConnectionId::new_unchecked(2));
        assert_eq!(close_timing(&kept, &relayed_small_side), CloseTiming::Now);
        let kept = survivor(&large, &small, &[relayed_large_side, direct_large_side]).unwrap();
        assert_eq!(kept.id, ConnectionId::new_unchecked(12));
        assert_eq!(close_timing(&kept, &relayed_large_side), CloseTiming::Now);
    }

    #[test]
    fn opposite_directions_both_sides_keep_the_one_dialed_by_the_smaller_peer() {
        let (small, large) = ids();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);

        // Connection X dialed by `small`, Y dialed by `large`, seen from both sides, with the
        // establishment order reversed on each side.
        let on_small = [
            candidate(1, Initiator::Local, later),
            candidate(2, Initiator::Remote, t0),
        ];
        let on_large = [
            candidate(11, Initiator::Remote, t0),
            candidate(12, Initiator::Local, later),
        ];
        let kept_on_small = survivor(&small, &large, &on_small).unwrap();
        let kept_on_large = survivor(&large, &small, &on_large).unwrap();
        assert_eq!(kept_on_small.id, ConnectionId::new_unchecked(1));
        assert_eq!(kept_on_large.id, ConnectionId::new_unchecked(11));
        // Both close their loser at once: nobody waits on the other.
        assert_eq!(close_timing(&kept_on_small, &on_small[1]), CloseTiming::Now);
        assert_eq!(close_timing(&kept_on_large, &on_large[1]), CloseTiming::Now);
    }

    #[test]
    fn same_direction_the_dialer_keeps_the_older_at_once() {
        let (small, large) = ids();
        let t0 = Instant::now();
        for (local, remote) in [(small, large), (large, small)] {
            let ours = [
                candidate(2, Initiator::Local, t0 + Duration::from_millis(1)),
                candidate(1, Initiator::Local, t0),
            ];
            let kept = survivor(&local, &remote, &ours).unwrap();
            assert_eq!(kept.id, ConnectionId::new_unchecked(1));
            assert_eq!(close_timing(&kept, &ours[0]), CloseTiming::Now);
        }
    }

    #[test]
    fn same_direction_the_listener_waits_for_the_grace_period() {
        let (small, large) = ids();
        let t0 = Instant::now();
        let theirs = [
            candidate(1, Initiator::Remote, t0),
            candidate(2, Initiator::Remote, t0 + Duration::from_millis(1)),
        ];
        let kept = survivor(&small, &large, &theirs).unwrap();
        assert_eq!(kept.id, ConnectionId::new_unchecked(1));
        assert_eq!(close_timing(&kept, &theirs[1]), CloseTiming::AfterGrace);
    }

    #[test]
    fn equal_times_fall_back_to_the_connection_id() {
        let (small, large) = ids();
        let t0 = Instant::now();
        let both = [
            candidate(9, Initiator::Local, t0),
            candidate(3, Initiator::Local, t0),
        ];
        assert_eq!(
            survivor(&small, &large, &both).unwrap().id,
            ConnectionId::new_unchecked(3)
        );
        assert!(survivor(&small, &large, &[]).is_none());
    }

    proptest::proptest! {
        /// One connection dialed by each side (the simultaneous-dial case), established in any
        /// order and at any times on each side: both sides keep the same logical connection,
        /// and both close the other at once.
        #[test]
        fn both_sides_agree_on_opposite_direction_pairs(
            small_sees: (u64, u64),
            large_sees: (u64, u64),
            small_dialed_too in proptest::bool::ANY,
        ) {
            let (small, large) = ids();
            let t0 = Instant::now();
            let at = |ms: u64| t0 + Duration::from_millis(ms % 10_000);
            // Logical connection 0 dialed by the large peer, 1 by the small peer.
            let mut on_small = vec![candidate(0, Initiator::Remote, at(small_sees.0))];
            let mut on_large = vec![candidate(0, Initiator::Local, at(large_sees.0))];
            if small_dialed_too {
                on_small.push(candidate(1, Initiator::Local, at(small_sees.1)));
                on_large.push(candidate(1, Initiator::Remote, at(large_sees.1)));
            }
            let kept_small = survivor(&small, &large, &on_small).unwrap();
            let kept_large = survivor(&large, &small, &on_large).unwrap();
            proptest::prop_assert_eq!(kept_small.id, kept_large.id);
            let expected = if small_dialed_too { 1 } else { 0 };
            proptest::prop_assert_eq!(kept_small.id, ConnectionId::new_unchecked(expected));
            for (kept, side) in [(kept_small, &on_small), (kept_large, &on_large)] {
                for loser in side.iter().filter(|c| c.id != kept.id) {
                    proptest::prop_assert_eq!(close_timing(&kept, loser), CloseTiming::Now);
                }
            }
        }
    }
}
