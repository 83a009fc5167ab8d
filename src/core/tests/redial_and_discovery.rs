//! The redial schedule, discovery, and waiting for resources, with time injected.

use super::*;

fn dials(actions: &[Action]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dial { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

/// Fails the dial the manager just asked for.
fn fail_dial(node: &mut Node, n: usize, peer: PeerId) {
    node.manager
        .on_pending_outbound(node.now, cid(n), Some(peer), &[])
        .unwrap();
    node.manager.on_dial_failure(
        node.now,
        cid(n),
        Some(peer),
        DialFailureCause::Transport { errors: vec![] },
    );
}

#[test]
fn backoff_grows_by_the_factor_within_the_jitter_and_stops_at_the_cap() {
    let backoff =
        Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(8)).with_jitter(0.2);
    let (mut a, b) = pair(Config::default().with_timeout_backoff(backoff));
    a.manager.add_peer(a.now, b.id, vec![addr(2)]).unwrap();
    let mut delays = Vec::new();
    for n in 0..8 {
        assert_eq!(dials(&a.actions()), vec![b.id], "attempt {n}");
        fail_dial(&mut a, n, b.id);
        delays.push(redial_delay(&a.events()).expect("scheduled"));
        a.advance(Duration::from_secs(60));
    }
    // The first retry of a failed dial is prompt (a fresh port may be all it needs).
    assert!(delays[0] <= Duration::from_millis(300), "{delays:?}");
    let expected_base = [1u64, 2, 4, 8, 8, 8, 8];
    for (delay, base) in delays[1..].iter().zip(expected_base) {
        let base = Duration::from_secs(base);
        assert!(
            *delay >= base.mul_f64(0.8) && *delay <= base.mul_f64(1.2),
            "{delay:?} not within 20% of {base:?} ({delays:?})"
        );
    }
}

#[test]
fn a_flagged_peer_is_forgotten_after_one_failed_redial_an_unflagged_one_is_retried() {
    for flagged in [true, false] {
        let (mut a, b) = pair(Config::default());
        a.manager
            .add_discovered(a.now, b.id, vec![addr(2)])
            .unwrap();
        let _ = a.actions();
        a.manager
            .on_pending_outbound(a.now, cid(1), Some(b.id), &[])
            .unwrap();
        a.establish(cid(1), b.id, Initiator::Local).unwrap();
        if flagged {
            a.manager.remove_discovered(b.id);
            assert!(a.manager.peer_info(&b.id).unwrap().flagged);
        }
        // The live connection stays until it drops.
        assert!(a.manager.is_connected(&b.id));
        a.manager
            .on_closed(a.now, cid(1), b.id, CloseCause::Transport);
        a.advance(Duration::from_secs(5));
        assert_eq!(dials(&a.actions()), vec![b.id], "one redial either way");
        fail_dial(&mut a, 2, b.id);
        let forgotten = a.events().contains(&Event::PeerForgotten { peer: b.id });
        assert_eq!(forgotten, flagged);
        assert_eq!(a.manager.tracked_peers(), usize::from(!flagged));
        a.advance(Duration::from_secs(60));
        assert_eq!(dials(&a.actions()).len(), usize::from(!flagged));
    }
}

#[test]
fn removing_an_unconnected_discovered_peer_forgets_it_at_once() {
    let (mut a, b) = pair(Config::default());
    a.manager.add_discovered(a.now, b.id, vec![]).unwrap();
    a.manager
        .on_dial_failure(a.now, cid(1), Some(b.id), DialFailureCause::NoAddresses);
    a.manager.forget(b.id);
    assert_eq!(a.manager.tracked_peers(), 0);
    a.manager
        .add_discovered(a.now, b.id, vec![addr(2)])
        .unwrap();
    let _ = a.actions();
    a.manager
        .on_pending_outbound(a.now, cid(2), Some(b.id), &[])
        .unwrap();
    a.manager.on_dial_failure(
        a.now,
        cid(2),
        Some(b.id),
        DialFailureCause::Transport { errors: vec![] },
    );
    a.manager.remove_discovered(b.id);
    // A redial was scheduled: it gets its one chance, then the peer is forgotten.
    assert_eq!(a.manager.tracked_peers(), 1);
    a.advance(Duration::from_secs(1));
    fail_dial(&mut a, 3, b.id);
    assert_eq!(a.manager.tracked_peers(), 0);
}

#[test]
fn a_full_local_limit_makes_peers_wait_in_line_until_a_slot_frees() {
    let limits = Limits::unlimited().with_max_established_outgoing(Some(1));
    let (mut a, x) = pair(Config::default().with_limits(limits));
    let (y, z) = (PeerId::random(), PeerId::random());
    a.manager.add_peer(a.now, x.id, vec![addr(2)]).unwrap();
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(x.id), &[])
        .unwrap();
    a.establish(cid(1), x.id, Initiator::Local).unwrap();

    for (n, peer) in [(2, y), (3, z)] {
        a.manager.add_peer(a.now, peer, vec![addr(3)]).unwrap();
        a.manager
            .on_pending_outbound(a.now, cid(n), Some(peer), &[])
            .unwrap();
        let denial = a
            .manager
            .check_established(
                a.now,
                cid(n),
                peer,
                &NewConnection::new(Initiator::Local, Endpoint::Dialer, addr(3)),
            )
            .unwrap_err();
        a.manager.on_dial_failure(
            a.now,
            cid(n),
            Some(peer),
            DialFailureCause::DeniedByManager(denial),
        );
    }
    let events = a.events();
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::WaitingForResources { .. }))
            .count(),
        2
    );
    assert_eq!(
        redial_delay(&events),
        None,
        "nothing is dialed into a full limit"
    );
    assert_eq!(
        a.manager
            .waiting_for_resources()
            .copied()
            .collect::<Vec<_>>(),
        vec![y, z]
    );
    a.advance(Duration::from_secs(600));
    assert!(dials(&a.actions()).is_empty());

    // One slot frees: the first in line, and only it, is dialed.
    a.manager
        .on_closed(a.now, cid(1), x.id, CloseCause::Transport);
    let _ = a.actions();
    a.advance(Duration::from_millis(300));
    assert_eq!(dials(&a.actions()), vec![y]);
    assert_eq!(
        a.manager
            .waiting_for_resources()
            .copied()
            .collect::<Vec<_>>(),
        vec![z]
    );
}

#[test]
fn raising_a_limit_releases_everyone_waiting_spread_out() {
    let limits = Limits::unlimited().with_max_pending_outgoing(Some(0));
    let (mut a, _) = pair(Config::default().with_limits(limits));
    let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    for (n, peer) in peers.iter().enumerate() {
        a.manager.add_peer(a.now, *peer, vec![addr(3)]).unwrap();
        let denial = a
            .manager
            .on_pending_outbound(a.now, cid(n), Some(*peer), &[])
            .unwrap_err();
        a.manager.on_dial_failure(
            a.now,
            cid(n),
            Some(*peer),
            DialFailureCause::DeniedByManager(denial),
        );
    }
    let _ = a.actions();
    a.manager.set_limits(a.now, Limits::unlimited());
    let delays: Vec<Duration> = a
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::RedialScheduled { delay, .. } => Some(delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays.len(), 3);
    assert!(delays.windows(2).all(|w| w[0] < w[1]), "{delays:?}");
}

#[test]
fn scheduled_redials_are_visible_and_cancelled_by_disconnect_ban_and_forget() {
    for cancel in ["disconnect", "ban", "forget"] {
        let (mut a, b) = pair(Config::default());
        a.manager.add_peer(a.now, b.id, vec![addr(2)]).unwrap();
        let _ = a.actions();
        fail_dial(&mut a, 1, b.id);
        let info = a.manager.peer_info(&b.id).unwrap();
        assert!(info.next_redial.is_some(), "visible per peer");
        match cancel {
            "disconnect" => {
                a.manager.remove_peer(a.now, b.id);
            }
            "ban" => a.manager.ban_peer(a.now, b.id, None),
            _ => {
                a.manager.forget(b.id);
            }
        }
        a.advance(Duration::from_secs(600));
        assert!(dials(&a.actions()).is_empty(), "{cancel}");
        assert!(
            a.manager
                .peer_info(&b.id)
                .is_none_or(|i| i.next_redial.is_none()),
            "{cancel}"
        );
    }
}

#[test]
fn addresses_learned_from_other_behaviours() {
    let (mut a, b) = pair(Config::default());
    let stranger = PeerId::random();
    a.manager.add_address(b.id, addr(2));
    a.manager.on_peer_address(a.now, b.id, addr(5));
    a.manager.on_peer_address(a.now, stranger, addr(6));
    // Learned below what the application gave.
    assert_eq!(
        a.manager.peer_info(&b.id).unwrap().addresses,
        vec![addr(2), addr(5)]
    );
    assert!(
        a.manager.peer_info(&stranger).is_none(),
        "strangers are not tracked"
    );
    assert!(a.actions().is_empty());

    let (mut eager, _) = pair(
        Config::default()
            .with_auto_connect_learned_peers(true)
            .with_max_discovered_peers(1),
    );
    let another = PeerId::random();
    eager.manager.on_peer_address(eager.now, stranger, addr(6));
    eager.manager.on_peer_address(eager.now, another, addr(7));
    assert_eq!(dials(&eager.actions()), vec![stranger], "capped at one");
    assert!(
        eager.manager.peer_info(&another).is_none(),
        "past the cap nothing is kept"
    );
}

/// A peer the application dialed is its own: discovery reporting it and then losing it does
/// not make it forgettable. (Before the peer's intent was one value, losing it in discovery
/// flagged it whoever had asked for it, and one failed redial then forgot it.)
#[test]
fn discovery_losing_a_peer_the_application_dialed_does_not_forget_it() {
    let (mut a, b) = pair(Config::default());
    a.manager.add_peer(a.now, b.id, vec![addr(2)]).unwrap();
    a.manager
        .add_discovered(a.now, b.id, vec![addr(2)])
        .unwrap();
    let _ = a.actions();
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(b.id), &[])
        .unwrap();
    a.establish(cid(1), b.id, Initiator::Local).unwrap();
    a.manager.remove_discovered(b.id);
    let info = a.manager.peer_info(&b.id).unwrap();
    assert!(info.wanted && !info.flagged && !info.discovered, "{info:?}");
    a.manager
        .on_closed(a.now, cid(1), b.id, CloseCause::Transport);
    a.advance(Duration::from_secs(5));
    assert_eq!(dials(&a.actions()), vec![b.id]);
    fail_dial(&mut a, 2, b.id);
    assert!(!a.events().contains(&Event::PeerForgotten { peer: b.id }));
    assert!(a.manager.peer_info(&b.id).is_some_and(|i| i.wanted));
    a.advance(Duration::from_secs(60));
    assert_eq!(dials(&a.actions()), vec![b.id], "still redialed");
}

#[test]
fn wanted_peers_lists_every_kept_peer_connected_or_not() {
    let (mut a, b) = pair(Config::default());
    let stranger = PeerId::random();
    assert_eq!(a.manager.wanted_peers().count(), 0);
    a.manager.add_peer(a.now, b.id, vec![addr(2)]).unwrap();
    a.manager
        .add_discovered(a.now, stranger, vec![addr(3)])
        .unwrap();
    let mut wanted: Vec<PeerId> = a.manager.wanted_peers().copied().collect();
    wanted.sort();
    let mut expected = vec![b.id, stranger];
    expected.sort();
    assert_eq!(wanted, expected);
    assert_eq!(a.manager.stats().wanted_peers, 2);
    a.manager.remove_peer(a.now, b.id);
    assert_eq!(
        a.manager.wanted_peers().copied().collect::<Vec<_>>(),
        vec![stranger]
    );
}
