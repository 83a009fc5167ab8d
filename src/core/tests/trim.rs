//! Trimming above the high watermark.

use super::*;

fn trimming(low: usize, high: usize) -> Config {
    Config::default()
        .with_watermarks(low, high)
        .with_trim_grace(Duration::from_secs(10))
        .with_trim_silence(Duration::from_secs(30))
        .with_inactivity_timeout(None)
}

fn trimmed(events: &[Event]) -> Vec<Vec<PeerId>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trimmed { peers, .. } => Some(peers.clone()),
            _ => None,
        })
        .collect()
}

/// Establishes a connection to a fresh peer, numbered `n`.
fn connect(node: &mut Node, n: usize, initiator: Initiator) -> PeerId {
    let peer = PeerId::random();
    node.establish(cid(n), peer, initiator).unwrap();
    peer
}

#[test]
fn above_high_trims_exactly_to_low_in_the_documented_order() {
    // Low 1, filled by the protected peer: no room for a diversity share, so the order alone
    // decides.
    let (mut a, _) = pair(trimming(1, 5));
    // Five peers, old enough to be trimmed, each differing in one thing.
    let valued = connect(&mut a, 1, Initiator::Remote);
    let slow = connect(&mut a, 2, Initiator::Local);
    let fast = connect(&mut a, 3, Initiator::Local);
    let inbound = connect(&mut a, 4, Initiator::Remote);
    let protected = connect(&mut a, 5, Initiator::Remote);
    a.manager.tag_peer(valued, "app", 10);
    a.manager.protect(protected, "bootstrap");
    a.manager
        .on_ping_success(a.now, cid(2), Duration::from_millis(300));
    a.manager
        .on_ping_success(a.now, cid(3), Duration::from_millis(5));
    a.manager
        .on_ping_success(a.now, cid(4), Duration::from_millis(5));
    a.manager
        .on_ping_success(a.now, cid(1), Duration::from_millis(5));
    a.advance(Duration::from_secs(60));
    let _ = a.actions();

    // The sixth, young, pushes the count over the high watermark.
    let young = connect(&mut a, 6, Initiator::Remote);
    let actions = a.actions();
    let events: Vec<Event> = actions
        .iter()
        .filter_map(|x| match x {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    // 5 settled, low 1: four go. The lowest value first, then inbound before outbound, then
    // the worst health (slow before fast); the valued one last. The young one is not counted.
    assert_eq!(trimmed(&events), vec![vec![inbound, slow, fast, valued]]);
    let goodbyes: Vec<_> = actions
        .iter()
        .filter_map(|x| match x {
            Action::SendGoodbye { peer, reason, .. } => Some((*peer, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(goodbyes.len(), 4);
    assert!(goodbyes
        .iter()
        .all(|(_, r)| *r == DisconnectReason::NetworkRestructure));
    for kept in [protected, young] {
        assert!(a.manager.is_connected(&kept));
    }
}

#[test]
fn young_peers_are_not_counted_and_go_first_once_settled() {
    let (mut a, _) = pair(trimming(2, 3));
    let old: Vec<PeerId> = (0..3)
        .map(|n| connect(&mut a, n, Initiator::Remote))
        .collect();
    a.advance(Duration::from_secs(60));
    let _ = a.actions();
    let fresh: Vec<PeerId> = (10..13)
        .map(|n| connect(&mut a, n, Initiator::Remote))
        .collect();
    // Six connected, above high 3, but only the three settled ones count: 3 - 2 = one goes,
    // chosen among the settled (the only candidates).
    let first = trimmed(&a.events());
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].len(), 1);
    assert!(old.contains(&first[0][0]));
    // When the young ones settle (10 s grace, after the 30 s silence), the newest go first.
    a.advance(Duration::from_secs(30));
    let second = trimmed(&a.events());
    assert_eq!(second.len(), 1, "a trim is due once the burst settles");
    assert_eq!(second[0].len(), 3, "five connected, low 2");
    assert!(fresh.iter().all(|p| second[0].contains(p)));
}

#[test]
fn protection_holds_while_any_tag_remains() {
    let (mut a, _) = pair(trimming(0, 1));
    let peer = PeerId::random();
    a.manager.protect(peer, "a");
    a.manager.protect(peer, "b");
    assert!(a.manager.unprotect(&peer, "a"));
    assert!(a.manager.is_protected(&peer));
    assert!(!a.manager.unprotect(&peer, "b"));
    assert!(!a.manager.is_protected(&peer));
    assert!(!a.manager.unprotect(&peer, "never"));
}

#[test]
fn a_burst_of_connections_is_trimmed_once_per_silence_period() {
    let (mut a, _) = pair(trimming(2, 4).with_trim_grace(Duration::ZERO));
    for n in 0..5 {
        connect(&mut a, n, Initiator::Remote);
    }
    assert_eq!(
        trimmed(&a.events()).len(),
        1,
        "the fifth crossed the watermark"
    );
    // Trimmed connections close; a burst brings the count back above high.
    for n in 10..15 {
        connect(&mut a, n, Initiator::Remote);
    }
    assert!(trimmed(&a.events()).is_empty(), "silence: no trim yet");
    a.advance(Duration::from_secs(29));
    assert!(trimmed(&a.events()).is_empty());
    a.advance(Duration::from_secs(1));
    assert_eq!(
        trimmed(&a.events()).len(),
        1,
        "trimmed when the silence ended"
    );
}

#[test]
fn force_trim_ignores_the_silence() {
    let (mut a, _) = pair(trimming(1, 2).with_trim_grace(Duration::ZERO));
    for n in 0..3 {
        connect(&mut a, n, Initiator::Remote);
    }
    let _ = a.events();
    for n in 10..13 {
        connect(&mut a, n, Initiator::Remote);
    }
    assert!(trimmed(&a.events()).is_empty());
    assert!(!a.manager.force_trim(a.now).is_empty());
}

#[test]
fn peers_the_application_dialed_are_never_trimmed() {
    let (mut a, _) = pair(trimming(0, 0).with_trim_grace(Duration::ZERO));
    let peer = PeerId::random();
    a.manager.add_peer(a.now, peer, vec![addr(2)]).unwrap();
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(peer), &[])
        .unwrap();
    a.establish(cid(1), peer, Initiator::Local).unwrap();
    assert_eq!(a.closes(), vec![]);
    assert!(a.manager.force_trim(a.now).is_empty());
    assert!(a.manager.peer_info(&peer).unwrap().wanted);
}

#[test]
fn trimmed_discovered_peers_are_reported_no_longer_wanted_and_not_redialed() {
    let (mut a, _) = pair(trimming(0, 0).with_trim_grace(Duration::ZERO));
    let peer = PeerId::random();
    a.manager
        .add_discovered(a.now, peer, vec![addr(2)])
        .unwrap();
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(peer), &[])
        .unwrap();
    a.manager
        .check_established(
            a.now,
            cid(1),
            peer,
            &NewConnection::new(Initiator::Local, Endpoint::Dialer, addr(2)),
        )
        .unwrap();
    a.manager.on_established(
        a.now,
        cid(1),
        peer,
        NewConnection::new(Initiator::Local, Endpoint::Dialer, addr(2)),
    );
    let actions = a.actions();
    assert!(actions.iter().any(|x| matches!(x,
        Action::Event(Event::Trimmed { peers, no_longer_wanted })
            if peers == &vec![peer] && no_longer_wanted == &vec![peer])));
    a.manager.on_closed(a.now, cid(1), peer, CloseCause::Local);
    assert_eq!(redial_delay(&a.events()), None);
    a.advance(Duration::from_secs(3600));
    assert!(a.actions().is_empty());
}

/// Establishes connection `n` from `peer` arriving from `remote` (a full multiaddress).
fn connect_from(node: &mut Node, n: usize, peer: PeerId, initiator: Initiator, remote: &str) {
    let direction = match initiator {
        Initiator::Local => Endpoint::Dialer,
        Initiator::Remote => Endpoint::Listener,
    };
    let remote: Multiaddr = remote.parse().unwrap();
    let connection = NewConnection::new(initiator, direction, remote);
    node.manager
        .check_established(node.now, cid(n), peer, &connection)
        .unwrap();
    node.manager
        .on_established(node.now, cid(n), peer, connection);
}

/// The eclipse through trimming: six peers the application dialed, settled, then a burst of
/// ten fresh inbound peers from `attacker_addr(i)`. Returns (wanted peers still connected and
/// wanted, attackers still connected, total connected) once the burst's grace is over.
fn burst_after_wanted(attacker_addr: impl Fn(usize) -> String) -> (usize, usize, usize) {
    let (mut a, _) = pair(trimming(4, 8));
    let mut wanted = Vec::new();
    for n in 0..6 {
        let peer = PeerId::random();
        let address = format!("/ip4/10.{n}.0.1/tcp/4001");
        a.manager
            .add_peer(a.now, peer, vec![address.parse().unwrap()])
            .unwrap();
        a.manager
            .on_pending_outbound(a.now, cid(n), Some(peer), &[])
            .unwrap();
        connect_from(&mut a, n, peer, Initiator::Local, &address);
        wanted.push(peer);
    }
    a.advance(Duration::from_secs(60));
    let _ = a.actions();

    let mut attackers = Vec::new();
    for i in 0..10 {
        let peer = PeerId::random();
        connect_from(&mut a, 100 + i, peer, Initiator::Remote, &attacker_addr(i));
        attackers.push(peer);
    }
    // Let every close the manager decides land, through the grace of the burst and beyond.
    for _ in 0..8 {
        for (connection, _) in a.closes() {
            let peer = a.manager.owner(connection).unwrap();
            a.manager
                .on_closed(a.now, connection, peer, CloseCause::Local);
        }
        a.advance(Duration::from_secs(10));
    }
    let kept_wanted = wanted
        .iter()
        .filter(|p| a.manager.is_connected(p) && a.manager.peer_info(p).unwrap().wanted)
        .count();
    let kept_attackers = attackers
        .iter()
        .filter(|p| a.manager.is_connected(p))
        .count();
    let total = a.manager.connected_peers().count();
    println!(
        "attacker spent: 10 PeerIds, 10 inbound connections; got: {} of 6 wanted peers \
         trimmed, {kept_attackers} attackers connected, {total} peers connected (high 8)",
        6 - kept_wanted
    );
    (kept_wanted, kept_attackers, total)
}

#[test]
fn a_burst_of_fresh_inbound_peers_does_not_push_out_the_wanted_ones() {
    for (what, addr) in [
        (
            "many /16s",
            (|i| format!("/ip4/172.{}.0.1/tcp/4001", 16 + i)) as fn(usize) -> String,
        ),
        ("one /24", |i| format!("/ip4/203.0.113.{}/tcp/4001", i + 1)),
        ("one /48", |i| format!("/ip6/2001:db8:48:{i:x}::1/tcp/4001")),
    ] {
        println!("burst from {what}:");
        let (kept_wanted, _, total) = burst_after_wanted(addr);
        assert_eq!(kept_wanted, 6, "every wanted peer kept and still wanted");
        assert!(
            total <= 8,
            "back under the high watermark, {total} connected"
        );
    }
}

#[test]
fn a_diverse_share_of_peers_nobody_asked_for_survives_a_burst_of_better_connected_peers() {
    let (mut a, _) = pair(trimming(4, 8));
    let honest: Vec<PeerId> = (0..4)
        .map(|n| {
            let peer = PeerId::random();
            let from = format!("/ip4/198.{}.0.1/tcp/4001", 18 + n);
            connect_from(&mut a, n, peer, Initiator::Remote, &from);
            a.manager
                .on_ping_success(a.now, cid(n), Duration::from_millis(400));
            peer
        })
        .collect();
    a.advance(Duration::from_secs(60));
    let _ = a.actions();
    // Forty Sybils, each from its own /16, answering pings at once: better health than the
    // settled peers, and no network group bigger than theirs.
    for i in 0..40 {
        let from = format!("/ip4/{}.1.0.1/tcp/4001", 20 + i);
        connect_from(&mut a, 100 + i, PeerId::random(), Initiator::Remote, &from);
        a.manager
            .on_ping_success(a.now, cid(100 + i), Duration::from_millis(1));
    }
    for _ in 0..8 {
        for (connection, _) in a.closes() {
            let peer = a.manager.owner(connection).unwrap();
            a.manager
                .on_closed(a.now, connection, peer, CloseCause::Local);
        }
        a.advance(Duration::from_secs(10));
    }
    let kept = honest.iter().filter(|p| a.manager.is_connected(p)).count();
    let total = a.manager.connected_peers().count();
    println!(
        "attacker spent: 40 PeerIds from 40 /16s, fast pings; got: {} of 4 settled peers trimmed, {} \
         attackers connected",
        4 - kept,
        total - kept
    );
    // The share has four places: outbound (none here), one per network group, the fastest,
    // the longest uptime. A Sybil can win the latency place by being the fastest, and no other.
    assert!(kept >= 3, "{kept} of 4 settled peers kept");
    assert!(total <= 8);
}

// One test per rule of the README's "Trimming" table that the tests above do not cover at the
// level of the manager: each sets up peers that differ in the rule's one respect (or that
// would be trimmed the other way round if the rule were missing), and writes the expected
// order out by hand.

/// Connects a fresh inbound peer on connection `n`, `after` later than the last one.
fn connect_later(node: &mut Node, n: usize, after: Duration) -> PeerId {
    node.advance(after);
    connect(node, n, Initiator::Remote)
}

#[test]
fn dialed_protected_and_allow_listed_peers_are_never_trimmed_and_count_towards_low() {
    // Low 4: the three peers nobody may trim take three of its places; of the four strangers,
    // the one place left keeps one (the oldest, for its network group) and three go, newest
    // first. Were the three not counted, the room would keep all four strangers.
    let (mut a, _) = pair(trimming(4, 6).with_trim_grace(Duration::ZERO));
    let dialed = PeerId::random();
    a.manager.add_peer(a.now, dialed, vec![addr(2)]).unwrap();
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(dialed), &[])
        .unwrap();
    a.establish(cid(1), dialed, Initiator::Local).unwrap();
    let protected = PeerId::random();
    a.manager.protect(protected, "app");
    a.establish(cid(2), protected, Initiator::Remote).unwrap();
    let allowed = PeerId::random();
    a.manager.exempt_peer(allowed);
    a.establish(cid(3), allowed, Initiator::Remote).unwrap();
    let strangers: Vec<PeerId> = (10..14)
        .map(|n| connect_later(&mut a, n, Duration::from_secs(1)))
        .collect();
    // The seventh crossed the high watermark.
    assert_eq!(
        trimmed(&a.events()),
        vec![vec![strangers[3], strangers[2], strangers[1]]]
    );
    for kept in [dialed, protected, allowed, strangers[0]] {
        assert!(a.manager.is_connected(&kept));
    }
    // Forced again, with everyone else gone: still none of the three.
    for n in 11..14 {
        let peer = strangers[n - 10];
        a.manager.on_closed(a.now, cid(n), peer, CloseCause::Local);
    }
    let _ = a.actions();
    let (mut b, _) = pair(trimming(0, 0).with_trim_grace(Duration::ZERO));
    let allowed = PeerId::random();
    b.manager.exempt_peer(allowed);
    b.establish(cid(1), allowed, Initiator::Remote).unwrap();
    assert!(
        b.manager.force_trim(b.now).is_empty(),
        "allow-listed, low 0"
    );
    assert!(b.manager.is_connected(&allowed));
}

#[test]
fn discovered_and_bootstrap_peers_go_only_after_every_peer_nobody_asked_for() {
    // Low 0 (no share): everyone goes, in order. The strangers carry a high tag value, which
    // would keep them longest if the value came before who asked for a peer.
    let bootstrap = PeerId::random();
    let (mut a, _) = pair(
        trimming(0, 4)
            .with_trim_grace(Duration::ZERO)
            .with_bootstrap_peer(bootstrap, addr(9)),
    );
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(bootstrap), &[])
        .unwrap();
    a.establish(cid(1), bootstrap, Initiator::Local).unwrap();
    a.advance(Duration::from_secs(1));
    let discovered = PeerId::random();
    a.manager
        .add_discovered(a.now, discovered, vec![addr(2)])
        .unwrap();
    a.manager
        .on_pending_outbound(a.now, cid(2), Some(discovered), &[])
        .unwrap();
    a.establish(cid(2), discovered, Initiator::Local).unwrap();
    let strangers: Vec<PeerId> = (3..5)
        .map(|n| {
            let peer = connect_later(&mut a, n, Duration::from_secs(1));
            a.manager.tag_peer(peer, "app", 100);
            peer
        })
        .collect();
    let _ = a.actions();
    let gone = a.manager.force_trim(a.now);
    // Strangers first (the newer of the two first), then the discovered and the bootstrap
    // peer, newest first.
    assert_eq!(
        gone,
        vec![strangers[1], strangers[0], discovered, bootstrap]
    );
    let no_longer_wanted = a.events().into_iter().find_map(|e| match e {
        Event::Trimmed {
            no_longer_wanted, ..
        } => Some(no_longer_wanted),
        _ => None,
    });
    // Discovery had made its peer wanted, and it no longer is; the bootstrap peer is the
    // configuration's, never wanted as a dialed peer is (`Event::Trimmed::no_longer_wanted`
    // names "those that were wanted (added by discovery)").
    assert_eq!(no_longer_wanted, Some(vec![discovered]));
}

#[test]
fn all_else_equal_the_newest_goes_first() {
    let (mut a, _) = pair(trimming(0, 2).with_trim_grace(Duration::ZERO));
    let peers: Vec<PeerId> = (0..3)
        .map(|n| connect_later(&mut a, n, Duration::from_secs(1)))
        .collect();
    assert_eq!(
        trimmed(&a.events()),
        vec![vec![peers[2], peers[1], peers[0]]]
    );
}

#[test]
fn the_biggest_network_group_goes_first_even_when_older() {
    // Low 0 (no share). Three old peers from one /16, then one newer from another: the
    // biggest group goes first (newest first within it), before the newer lone peer.
    let (mut a, _) = pair(trimming(0, 3).with_trim_grace(Duration::ZERO));
    let crowd: Vec<PeerId> = (0..3)
        .map(|n| {
            a.advance(Duration::from_secs(1));
            let peer = PeerId::random();
            let from = format!("/ip4/203.0.113.{}/tcp/4001", n + 1);
            connect_from(&mut a, n, peer, Initiator::Remote, &from);
            peer
        })
        .collect();
    a.advance(Duration::from_secs(1));
    let lone = PeerId::random();
    connect_from(
        &mut a,
        9,
        lone,
        Initiator::Remote,
        "/ip4/198.51.100.1/tcp/4001",
    );
    assert_eq!(
        trimmed(&a.events()),
        vec![vec![crowd[2], crowd[1], crowd[0], lone]]
    );
}

#[test]
fn ties_are_broken_the_same_way_whatever_order_the_peers_came_in() {
    // Eight peers alike in everything, connected at the same instant: which three go (and in
    // which order) must not depend on the order they came in or on how the manager happens to
    // store them.
    let peers: Vec<PeerId> = (0..8).map(|_| PeerId::random()).collect();
    let trim = |order: &[PeerId]| {
        let (mut a, _) = pair(trimming(5, 7).with_trim_grace(Duration::ZERO));
        for (n, peer) in order.iter().enumerate() {
            a.establish(cid(n), *peer, Initiator::Remote).unwrap();
        }
        trimmed(&a.events())
    };
    // Low 5, all strangers: the share keeps five, three go. At the same instant the larger
    // id counts as the newer: the three largest go, largest first.
    let mut ids = peers.clone();
    ids.sort();
    let expected = vec![vec![ids[7], ids[6], ids[5]]];
    let reversed: Vec<PeerId> = peers.iter().rev().copied().collect();
    for order in [peers.clone(), reversed] {
        // Each manager holds its peers in an order of its own (a hash map's).
        for _ in 0..4 {
            assert_eq!(trim(&order), expected);
        }
    }
}

#[test]
fn watermarks_set_at_run_time_are_checked_and_trim_at_once() {
    // An operator lowering the watermarks of a running node (there was no way but a restart).
    let (mut a, _) = pair(trimming(0, 0).without_watermarks());
    let peers: Vec<PeerId> = (0..6)
        .map(|n| connect(&mut a, n, Initiator::Remote))
        .collect();
    a.advance(Duration::from_secs(60));
    let _ = a.actions();
    assert_eq!(
        a.manager.set_watermarks(a.now, Some((5, 2))),
        Err(ConfigError::WatermarksInverted { low: 5, high: 2 })
    );
    assert!(trimmed(&a.events()).is_empty(), "refused: nothing changed");
    a.manager.set_watermarks(a.now, Some((2, 4))).unwrap();
    let trims = trimmed(&a.events());
    assert_eq!(trims.len(), 1);
    assert_eq!(trims[0].len(), 4, "six connected, low 2");
    assert!(trims[0].iter().all(|p| peers.contains(p)));
    // Off again: nothing more is trimmed, whatever connects.
    a.manager.set_watermarks(a.now, None).unwrap();
    a.advance(Duration::from_secs(60));
    for n in 10..20 {
        connect(&mut a, n, Initiator::Remote);
    }
    a.advance(Duration::from_secs(60));
    assert!(trimmed(&a.events()).is_empty());
}

#[test]
fn with_peer_exchange_off_a_trim_keeps_no_hearsay_state() {
    // Found by the 10,000-connection harness: half of a 5,000-peer trim's time went into
    // remembering, for hearsay that was off, to leave each trimmed peer alone (a 1,024-entry
    // table, scanned for its soonest entry once full).
    let (mut a, _) = pair(trimming(0, 100));
    for n in 0..50 {
        connect(&mut a, n, Initiator::Remote);
    }
    a.advance(Duration::from_secs(60));
    let trimmed_now = a.manager.force_trim(a.now);
    assert_eq!(trimmed_now.len(), 50);
    let quiet = a.manager.hearsay_stats().quiet;
    println!("hearsay entries after trimming 50 peers with peer exchange off: {quiet}");
    assert_eq!(quiet, 0);
}
