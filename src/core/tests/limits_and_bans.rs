//! Limits and bans, with time injected.

use std::net::IpAddr;

use super::*;

fn ip_addr(s: &str, port: u16) -> Multiaddr {
    format!("/ip4/{s}/tcp/{port}").parse().unwrap()
}

fn node_with(limits: Limits) -> (Node, Node) {
    pair(Config::default().with_limits(limits))
}

fn denied(events: &[Event]) -> Vec<Denial> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Denied { denial, .. } => Some(denial.clone()),
            _ => None,
        })
        .collect()
}

/// Runs an inbound connection that an established limit refuses: it is let through only to
/// say goodbye `ResourceConstraint`, then closed, and never counts. Returns the denial.
fn refused_with_goodbye(a: &mut Node, connection: ConnectionId, peer: PeerId) -> Denial {
    let before = a.manager.established_connections();
    a.establish(connection, peer, Initiator::Remote)
        .expect("let through to say goodbye");
    assert_eq!(a.manager.established_connections(), before, "never counted");
    let actions = a.actions();
    let denial = actions
        .iter()
        .find_map(|x| match x {
            Action::Event(Event::Denied { denial, .. }) => Some(denial.clone()),
            _ => None,
        })
        .expect("the denial is reported");
    assert!(actions.iter().any(|x| matches!(
        x,
        Action::SendGoodbye {
            connection: c,
            reason: DisconnectReason::ResourceConstraint,
            retry_after: Some(_),
            ..
        } if *c == connection
    )));
    a.manager.on_goodbye_finished(connection);
    assert_eq!(a.actions(), vec![Action::Close { peer, connection }]);
    a.manager
        .on_closed(a.now, connection, peer, CloseCause::Local);
    assert!(
        a.actions().is_empty(),
        "no event for a connection that never counted"
    );
    denial
}

#[test]
fn refusal_goodbyes_are_bounded_and_outbound_dials_are_refused_outright() {
    let limits = Limits::unlimited().with_max_established_incoming(Some(0));
    let (mut a, _) = node_with(limits);
    for n in 0..8 {
        a.establish(cid(n), PeerId::random(), Initiator::Remote)
            .expect("let through to say goodbye");
    }
    assert!(matches!(
        a.establish(cid(100), PeerId::random(), Initiator::Remote),
        Err(Denial::Limit { .. })
    ));
    let limits = Limits::unlimited().with_max_established_outgoing(Some(0));
    let (mut b, _) = node_with(limits);
    assert!(b
        .establish(cid(1), PeerId::random(), Initiator::Local)
        .is_err());
}

#[test]
fn pending_inbound_limit_refuses_and_frees_up() {
    let (mut a, _) = node_with(Limits::unlimited().with_max_pending_incoming(Some(2)));
    let from = ip_addr("10.0.0.1", 1000);
    a.manager.on_pending_inbound(a.now, cid(1), &from).unwrap();
    a.manager.on_pending_inbound(a.now, cid(2), &from).unwrap();
    let refusal = Denial::Limit {
        kind: LimitKind::PendingIncoming,
        limit: 2,
        current: 2,
    };
    assert_eq!(
        a.manager.on_pending_inbound(a.now, cid(3), &from),
        Err(refusal.clone())
    );
    assert_eq!(denied(&a.events()), vec![refusal]);
    a.manager.on_listen_failure(cid(1));
    a.manager.on_pending_inbound(a.now, cid(4), &from).unwrap();
}

#[test]
fn pending_outbound_limit_is_bypassed_by_allowed_peers() {
    let (mut a, b) = node_with(Limits::unlimited().with_max_pending_outgoing(Some(1)));
    let c = PeerId::random();
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(b.id), &[])
        .unwrap();
    assert!(matches!(
        a.manager.on_pending_outbound(a.now, cid(2), Some(c), &[]),
        Err(Denial::Limit {
            kind: LimitKind::PendingOutgoing,
            ..
        })
    ));
    a.manager.exempt_peer(c);
    a.manager
        .on_pending_outbound(a.now, cid(3), Some(c), &[])
        .unwrap();
}

#[test]
fn established_limits_by_direction_and_total() {
    let limits = Limits::unlimited()
        .with_max_established_incoming(Some(1))
        .with_max_established_outgoing(Some(1))
        .with_max_established(Some(2));
    let (mut a, _) = node_with(limits);
    let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
    a.establish(cid(1), peers[0], Initiator::Remote).unwrap();
    let _ = a.actions();
    // Refused, but the remote hears why before the connection closes.
    assert_eq!(
        refused_with_goodbye(&mut a, cid(2), peers[1]),
        Denial::Limit {
            kind: LimitKind::EstablishedIncoming,
            limit: 1,
            current: 1
        }
    );
    a.establish(cid(3), peers[1], Initiator::Local).unwrap();
    // Both directions are at their limits, and so is the total.
    assert!(matches!(
        a.establish(cid(4), peers[2], Initiator::Local),
        Err(Denial::Limit {
            kind: LimitKind::EstablishedOutgoing,
            ..
        })
    ));
    // Allow-listed peers bypass limits.
    a.manager.exempt_peer(peers[3]);
    a.establish(cid(5), peers[3], Initiator::Remote).unwrap();
    // A second connection to a connected peer is a duplicate for the rule, not for the limits.
    let outcome = a.establish(cid(6), peers[0], Initiator::Local);
    assert!(!matches!(outcome, Err(Denial::Limit { .. })), "{outcome:?}");
    // Allowed peers bypass the checks but still count; closing frees the slots.
    a.manager
        .on_closed(a.now, cid(5), peers[3], CloseCause::Transport);
    a.manager
        .on_closed(a.now, cid(1), peers[0], CloseCause::Transport);
    a.manager
        .on_closed(a.now, cid(6), peers[0], CloseCause::Transport);
    a.establish(cid(7), peers[2], Initiator::Remote).unwrap();
}

#[test]
fn per_ip_limits_apply_to_loopback_only_when_not_exempt() {
    let limits = Limits::unlimited().with_max_incoming_per_ip(Some(1));
    let loopback = ip_addr("127.0.0.1", 4000);
    let (mut exempt, _) = node_with(limits.clone());
    exempt
        .manager
        .on_pending_inbound(exempt.now, cid(1), &loopback)
        .unwrap();
    exempt
        .manager
        .on_pending_inbound(exempt.now, cid(2), &loopback)
        .unwrap();

    let (mut strict, _) = node_with(limits.with_loopback_exempt(false));
    strict
        .manager
        .on_pending_inbound(strict.now, cid(1), &loopback)
        .unwrap();
    assert_eq!(
        strict
            .manager
            .on_pending_inbound(strict.now, cid(2), &loopback),
        Err(Denial::IpLimit {
            ip: "127.0.0.1".parse().unwrap(),
            network: "127.0.0.1/32".parse().unwrap(),
            limit: 1,
            current: 1
        })
    );
    // Another address is counted on its own.
    strict
        .manager
        .on_pending_inbound(strict.now, cid(3), &ip_addr("127.0.0.2", 1))
        .unwrap();
}

#[test]
fn the_per_ip_count_follows_the_connection_until_it_closes() {
    let limits = Limits::unlimited()
        .with_max_incoming_per_ip(Some(1))
        .with_loopback_exempt(false);
    let (mut a, b) = node_with(limits);
    let from = ip_addr("10.0.0.9", 5000);
    a.manager.on_pending_inbound(a.now, cid(1), &from).unwrap();
    a.manager
        .check_established(
            a.now,
            cid(1),
            b.id,
            &NewConnection::new(Initiator::Remote, Endpoint::Listener, from.clone()),
        )
        .unwrap();
    a.manager.on_established(
        a.now,
        cid(1),
        b.id,
        NewConnection::new(Initiator::Remote, Endpoint::Listener, from.clone()),
    );
    assert!(a.manager.on_pending_inbound(a.now, cid(2), &from).is_err());
    a.manager
        .on_closed(a.now, cid(1), b.id, CloseCause::Transport);
    a.manager.on_pending_inbound(a.now, cid(3), &from).unwrap();
}

#[test]
fn inbound_rate_per_ip_refills_with_time() {
    let rate = RateLimit::new(2, Duration::from_secs(1));
    let limits = Limits::unlimited()
        .with_incoming_rate_per_ip(Some(rate))
        .with_loopback_exempt(false);
    let (mut a, _) = node_with(limits);
    let from = ip_addr("10.0.0.1", 1);
    for n in 0..2 {
        a.manager.on_pending_inbound(a.now, cid(n), &from).unwrap();
    }
    let ip: IpAddr = "10.0.0.1".parse().unwrap();
    assert_eq!(
        a.manager.on_pending_inbound(a.now, cid(9), &from),
        Err(Denial::RateLimited {
            ip,
            network: "10.0.0.1/32".parse().unwrap(),
            rate
        })
    );
    a.advance(Duration::from_secs(1));
    a.manager.on_pending_inbound(a.now, cid(10), &from).unwrap();
}

#[test]
fn lowering_a_limit_closes_nothing_but_refuses_new_connections() {
    let (mut a, _) = node_with(Limits::unlimited());
    let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
    a.establish(cid(1), peers[0], Initiator::Remote).unwrap();
    a.establish(cid(2), peers[1], Initiator::Remote).unwrap();
    let _ = a.actions();
    a.manager
        .set_limits(a.now, Limits::unlimited().with_max_established(Some(1)));
    assert!(a.closes().is_empty());
    assert_eq!(
        refused_with_goodbye(&mut a, cid(3), peers[2]),
        Denial::Limit {
            kind: LimitKind::Established,
            limit: 1,
            current: 2
        }
    );
}

#[test]
fn banning_a_connected_peer_says_goodbye_and_refuses_it_from_anywhere() {
    let (mut a, b) = pair(Config::default());
    a.manager.add_peer(a.now, b.id, vec![addr(2)]).unwrap();
    a.establish(cid(1), b.id, Initiator::Local).unwrap();
    let _ = a.actions();

    a.manager
        .ban_peer(a.now, b.id, Some(Duration::from_secs(60)));
    let actions = a.actions();
    assert!(actions.contains(&Action::Event(Event::Banned {
        target: BanTarget::Peer(b.id),
        until: Some(a.now + Duration::from_secs(60))
    })));
    assert!(actions.contains(&Action::SendGoodbye {
        peer: b.id,
        connection: cid(1),
        reason: DisconnectReason::Banned,
        // The remote learns when the ban ends.
        retry_after: Some(Duration::from_secs(60)),
        // The documented default goodbye timeout.
        timeout: Duration::from_secs(2)
    }));
    a.manager.on_closed(a.now, cid(1), b.id, CloseCause::Local);
    assert!(
        !a.events()
            .iter()
            .any(|e| matches!(e, Event::RedialScheduled { .. })),
        "a banned peer is never redialed"
    );

    // From another address, inbound or outbound, before or after the handshake.
    let elsewhere = ip_addr("127.0.0.2", 7000);
    assert!(matches!(
        a.manager.check_established(
            a.now,
            cid(2),
            b.id,
            &NewConnection::new(Initiator::Remote, Endpoint::Listener, elsewhere.clone())
        ),
        Err(Denial::PeerBanned {
            remaining: Some(_),
            ..
        })
    ));
    assert!(matches!(
        a.manager
            .on_pending_outbound(a.now, cid(3), Some(b.id), &[]),
        Err(Denial::PeerBanned { .. })
    ));
    assert!(matches!(
        a.manager.add_peer(a.now, b.id, vec![]),
        Err(Denial::PeerBanned { .. })
    ));
}

#[test]
fn bans_expire_on_time_with_one_event() {
    let (mut a, b) = pair(Config::default().with_inactivity_timeout(None));
    a.manager
        .ban_peer(a.now, b.id, Some(Duration::from_secs(30)));
    let _ = a.actions();
    assert_eq!(
        a.manager.poll_timeout(),
        Some(a.now + Duration::from_secs(30))
    );
    a.advance(Duration::from_secs(29));
    assert!(a.manager.is_peer_banned(&b.id, a.now));
    assert!(a.events().is_empty());
    a.advance(Duration::from_secs(1));
    assert_eq!(
        a.events(),
        vec![Event::Unbanned {
            target: BanTarget::Peer(b.id),
            expired: true
        }]
    );
    assert!(!a.manager.is_peer_banned(&b.id, a.now));
    a.establish(cid(1), b.id, Initiator::Remote).unwrap();
    assert_eq!(a.manager.scheduled_timers(), 0);
}

#[test]
fn a_longer_ban_replaces_the_shorter_timer() {
    let (mut a, b) = pair(Config::default());
    a.manager
        .ban_peer(a.now, b.id, Some(Duration::from_secs(10)));
    a.manager.ban_peer(a.now, b.id, None);
    assert_eq!(
        a.manager.scheduled_timers(),
        0,
        "a permanent ban has no timer"
    );
    a.advance(Duration::from_secs(3600));
    assert!(a.manager.is_peer_banned(&b.id, a.now));
    assert!(a.manager.unban(a.now, BanTarget::Peer(b.id)));
    assert!(!a.manager.unban(a.now, BanTarget::Peer(b.id)));
    assert!(a.manager.bans(a.now).is_empty());
}

#[test]
fn ip_bans_refuse_before_the_handshake_and_close_connections_inside() {
    let (mut a, b) = pair(Config::default());
    let c = PeerId::random();
    let inside = ip_addr("10.1.2.3", 4001);
    let outside = ip_addr("10.2.0.1", 4001);
    a.manager
        .on_pending_inbound(a.now, cid(1), &inside)
        .unwrap();
    a.manager
        .check_established(
            a.now,
            cid(1),
            b.id,
            &NewConnection::new(Initiator::Remote, Endpoint::Listener, inside.clone()),
        )
        .unwrap();
    a.manager.on_established(
        a.now,
        cid(1),
        b.id,
        NewConnection::new(Initiator::Remote, Endpoint::Listener, inside.clone()),
    );
    a.manager
        .on_pending_inbound(a.now, cid(2), &outside)
        .unwrap();
    a.manager.on_established(
        a.now,
        cid(2),
        c,
        NewConnection::new(Initiator::Remote, Endpoint::Listener, outside.clone()),
    );
    let _ = a.actions();

    a.manager
        .ban_network(a.now, "10.1.0.0/16".parse().unwrap(), None);
    assert_eq!(a.closes(), vec![(cid(1), DisconnectReason::Banned)]);
    assert!(matches!(
        a.manager
            .on_pending_inbound(a.now, cid(3), &ip_addr("10.1.9.9", 1)),
        Err(Denial::IpBanned {
            remaining: None,
            ..
        })
    ));
    // An IP ban is about addresses: the same peer from an address outside is let in.
    a.manager
        .check_established(
            a.now,
            cid(4),
            b.id,
            &NewConnection::new(Initiator::Remote, Endpoint::Listener, outside.clone()),
        )
        .unwrap();
    assert!(a.manager.is_ip_banned("10.1.0.1".parse().unwrap(), a.now));
}

#[test]
fn repeated_protocol_violations_escalate_to_a_ban_even_across_reconnects() {
    let (mut a, b) = pair(Config::default().with_violation_ban(
        2,
        Duration::from_secs(60),
        Duration::from_secs(300),
    ));
    // Each violation closes its connection with goodbye ProtocolViolation; the peer then
    // reconnects with a clean record, but its violations are remembered.
    let offend = |a: &mut Node, n: usize| {
        a.establish(cid(n), b.id, Initiator::Remote).unwrap();
        let _ = a.actions();
        a.manager.on_protocol_violation(a.now, b.id, cid(n));
        let closes = a.closes();
        a.manager.on_closed(a.now, cid(n), b.id, CloseCause::Local);
        closes
    };
    assert_eq!(
        offend(&mut a, 1),
        vec![(cid(1), DisconnectReason::ProtocolViolation)]
    );
    assert!(!a.manager.is_peer_banned(&b.id, a.now));
    assert_eq!(
        a.manager.tracked_peers(),
        0,
        "the peer record itself is gone"
    );
    // Outside the window the first one no longer counts.
    a.advance(Duration::from_secs(61));
    offend(&mut a, 2);
    assert!(!a.manager.is_peer_banned(&b.id, a.now));
    offend(&mut a, 3);
    assert!(a.manager.is_peer_banned(&b.id, a.now));
}

#[test]
fn unbanning_with_host_bits_finds_the_ban_and_its_timer() {
    let (mut a, _) = pair(Config::default());
    a.manager.ban_network(
        a.now,
        "10.1.2.3/16".parse().unwrap(),
        Some(Duration::from_secs(60)),
    );
    assert!(a
        .manager
        .unban(a.now, BanTarget::Network("10.1.9.9/16".parse().unwrap())));
    assert_eq!(a.manager.scheduled_timers(), 0);
    assert!(a.events().contains(&Event::Unbanned {
        target: BanTarget::Network("10.1.0.0/16".parse().unwrap()),
        expired: false
    }));
}

#[test]
fn absurd_durations_saturate_instead_of_panicking() {
    let (mut a, b) = pair(
        Config::default()
            .with_dial_timeout(Duration::MAX)
            .with_goodbye_timeout(Duration::MAX)
            .with_duplicate_grace(Duration::MAX),
    );
    a.manager.ban_peer(a.now, b.id, Some(Duration::MAX));
    assert!(a
        .manager
        .is_peer_banned(&b.id, a.now + Duration::from_secs(1 << 40)));
    let c = PeerId::random();
    a.manager.add_peer(a.now, c, vec![addr(3)]).unwrap();
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(c), &[])
        .unwrap();
    a.establish(cid(1), c, Initiator::Local).unwrap();
    a.manager.remove_peer(a.now, c);
    a.advance(Duration::from_secs(1));
}

#[test]
fn dials_to_addresses_that_are_all_banned_are_refused_up_front() {
    let (mut a, b) = pair(Config::default());
    a.manager
        .ban_network(a.now, "10.0.0.0/8".parse().unwrap(), None);
    assert!(matches!(
        a.manager
            .on_pending_outbound(a.now, cid(1), Some(b.id), &[ip_addr("10.0.0.1", 1)]),
        Err(Denial::IpBanned { .. })
    ));
    a.manager
        .on_pending_outbound(
            a.now,
            cid(2),
            Some(b.id),
            &[ip_addr("10.0.0.1", 1), ip_addr("192.0.2.1", 1)],
        )
        .unwrap();
}

#[test]
fn counters_return_to_zero_after_every_kind_of_end() {
    let limits = Limits::unlimited()
        .with_max_pending_incoming(Some(1))
        .with_max_pending_outgoing(Some(1))
        .with_max_established(Some(1))
        .with_max_incoming_per_ip(Some(1))
        .with_loopback_exempt(false);
    let (mut a, b) = node_with(limits);
    let from = ip_addr("10.0.0.1", 1);
    for round in 0..3 {
        let base = round * 10;
        // Inbound that fails, inbound that is established then closed, outbound that fails.
        a.manager
            .on_pending_inbound(a.now, cid(base + 1), &from)
            .unwrap();
        a.manager.on_listen_failure(cid(base + 1));
        a.manager
            .on_pending_inbound(a.now, cid(base + 2), &from)
            .unwrap();
        a.manager.on_established(
            a.now,
            cid(base + 2),
            b.id,
            NewConnection::new(Initiator::Remote, Endpoint::Listener, from.clone()),
        );
        a.manager
            .on_closed(a.now, cid(base + 2), b.id, CloseCause::Transport);
        a.manager
            .on_pending_outbound(a.now, cid(base + 3), Some(b.id), &[])
            .unwrap();
        a.manager.on_dial_failure(
            a.now,
            cid(base + 3),
            Some(b.id),
            DialFailureCause::NoAddresses,
        );
    }
    assert_eq!(a.manager.pending_connections(), 0);
    assert_eq!(a.manager.established_connections(), 0);
}

#[test]
fn the_end_of_a_network_ban_redials_the_wanted_peers_it_stranded() {
    let (mut a, b) = pair(Config::default());
    a.manager.ban_network(
        a.now,
        "10.0.0.0/8".parse().unwrap(),
        Some(Duration::from_secs(5)),
    );
    a.manager
        .add_peer(a.now, b.id, vec![ip_addr("10.0.0.7", 1)])
        .unwrap();
    let _ = a.actions();
    let denial = a
        .manager
        .on_pending_outbound(a.now, cid(1), Some(b.id), &[ip_addr("10.0.0.7", 1)])
        .unwrap_err();
    a.manager.on_dial_failure(
        a.now,
        cid(1),
        Some(b.id),
        DialFailureCause::DeniedByManager(denial),
    );
    let _ = a.actions();
    assert!(
        a.manager.peer_info(&b.id).unwrap().next_redial.is_none(),
        "stranded"
    );
    a.advance(Duration::from_secs(5));
    let _ = a.actions();
    a.advance(Duration::from_secs(1));
    assert!(
        a.actions()
            .iter()
            .any(|x| matches!(x, Action::Dial { peer, .. } if *peer == b.id)),
        "dialed again once the ban ended"
    );
}

#[test]
fn a_peer_told_how_long_it_is_banned_comes_back_after_it() {
    let (mut a, b) = pair(Config::default());
    a.manager.add_peer(a.now, b.id, vec![addr(2)]).unwrap();
    a.establish(cid(1), b.id, Initiator::Local).unwrap();
    let _ = a.actions();
    a.manager.on_goodbye_received(
        a.now,
        cid(1),
        DisconnectReason::Banned,
        Some(Duration::from_secs(30)),
    );
    a.manager
        .on_closed(a.now, cid(1), b.id, CloseCause::Transport);
    let delay = a.events().into_iter().find_map(|e| match e {
        Event::RedialScheduled { delay, .. } => Some(delay),
        _ => None,
    });
    assert!(
        delay.is_some_and(|d| d >= Duration::from_secs(30)),
        "{delay:?}"
    );
}

#[test]
fn a_peer_given_up_on_when_its_ban_ends_is_forgotten() {
    // Found by the core_ops fuzz target (seed `regression-revive-stranded-gave-up`).
    let (mut a, b) = pair(Config::default().with_max_redial_attempts(Some(0)));
    let everything: IpNet = "0.0.0.0/0".parse().unwrap();
    a.manager
        .ban_network(a.now, everything, Some(Duration::from_secs(130)));
    let address: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
    a.manager
        .add_discovered(a.now, b.id, vec![address.clone()])
        .unwrap();
    let _ = a.actions();
    let denial = a
        .manager
        .on_pending_outbound(a.now, cid(1), Some(b.id), &[address])
        .unwrap_err();
    a.manager.on_dial_failure(
        a.now,
        cid(1),
        Some(b.id),
        DialFailureCause::DeniedByManager(denial),
    );
    a.advance(Duration::from_secs(130));
    assert!(a
        .events()
        .iter()
        .any(|e| matches!(e, Event::RedialGaveUp { .. })));
    assert_eq!(
        a.manager.tracked_peers(),
        0,
        "{:?}",
        a.manager.peer_info(&b.id)
    );
}
