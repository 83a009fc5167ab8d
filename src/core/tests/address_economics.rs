//! Limits that match what addresses cost an attacker: nested IPv6 prefixes, IPv4-mapped
//! addresses, relayed connections, duplicates, peers without ping, absurd configurations.
//!
//! Each attack prints what the attacker spent and what it got
//! (`cargo test --all-features --lib core::tests::address_economics -- --nocapture`).

use std::net::{IpAddr, Ipv6Addr};

use rand::{rngs::StdRng, SeedableRng};

use super::*;

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

/// `/ip6/2001:db8:0:<subnet>::<host>/tcp/4001`: the /64 number `subnet` of the /48
/// 2001:db8::/48 (its high byte picks the /56).
fn in_48(subnet: u16, host: u16) -> Multiaddr {
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, subnet, 0, 0, 0, host);
    format!("/ip6/{ip}/tcp/4001").parse().unwrap()
}

/// Runs a connection through the whole inbound path: pending, checked, established.
fn inbound(a: &mut Node, c: ConnectionId, peer: PeerId, from: &Multiaddr) -> Result<(), Denial> {
    a.manager.on_pending_inbound(a.now, c, from)?;
    let new = NewConnection::new(Initiator::Remote, Endpoint::Listener, from.clone());
    if let Err(denial) = a.manager.check_established(a.now, c, peer, &new) {
        a.manager.on_listen_failure(c);
        return Err(denial);
    }
    a.manager.on_established(a.now, c, peer, new);
    Ok(())
}

#[test]
fn rotating_through_one_48_holds_a_bounded_number_of_connections() {
    // 16 /56s of 256 /64s each: 4,096 source addresses, each holding one connection open.
    let (mut a, _) =
        pair(Config::default().with_limits(Limits::new().with_max_pending_incoming(None)));
    let mut admitted = 0;
    let mut n = 0;
    for slash56 in 0..16u16 {
        for slash64 in 0..256u16 {
            n += 1;
            let from = in_48((slash56 << 8) | slash64, 1);
            if a.manager.on_pending_inbound(a.now, cid(n), &from).is_ok() {
                admitted += 1;
            }
        }
    }
    println!(
        "/48 rotation, held open: attacker spent {n} addresses (4096 /64s in 16 /56s of one /48), \
         0 PeerIds, {n} connections; got {admitted} admitted, {} per-IP table entries",
        a.manager.tracked_ips()
    );
    assert!(
        admitted <= 64,
        "{admitted} connections admitted from one /48"
    );
    assert!(a.manager.tracked_ips() <= 1 + 16 + 64);
}

#[test]
fn rotating_through_one_48_shares_one_rate_bucket() {
    // Connections that end at once (nothing held): only the rate limits can refuse them.
    let (mut a, _) = pair(Config::default());
    let mut admitted = 0;
    let attempts = 10_000;
    for n in 0..attempts {
        // One second of attempts in all.
        a.now += Duration::from_micros(100);
        let from = in_48(n as u16, 1);
        if a.manager.on_pending_inbound(a.now, cid(n), &from).is_ok() {
            admitted += 1;
            a.manager.on_listen_failure(cid(n));
        }
    }
    println!(
        "/48 rotation, one connection per /64 for 1 s: attacker spent {attempts} addresses \
         ({attempts} /64s of one /48), 0 PeerIds, {attempts} connections; got {admitted} \
         admitted, {} per-IP table entries",
        a.manager.tracked_ips()
    );
    // The /48's bucket: a burst of 80, then 40 a second.
    assert!(admitted <= 80 + 40 + 1, "{admitted} admitted in one second");
}

#[test]
fn an_ipv4_mapped_address_counts_as_its_ipv4() {
    let (mut a, _) = pair(
        Config::default().with_limits(
            Limits::unlimited()
                .with_max_incoming_per_ip(Some(1))
                .with_loopback_exempt(false),
        ),
    );
    a.manager
        .ban_network(a.now, "10.0.0.0/8".parse().unwrap(), None);
    assert!(matches!(
        a.manager
            .on_pending_inbound(a.now, cid(1), &ma("/ip6/::ffff:10.0.0.1/tcp/1")),
        Err(Denial::IpBanned { .. })
    ));
    // One connection per IP: the mapped form of the same address is the same address...
    a.manager
        .on_pending_inbound(a.now, cid(2), &ma("/ip4/192.0.2.1/tcp/1"))
        .unwrap();
    assert!(a
        .manager
        .on_pending_inbound(a.now, cid(3), &ma("/ip6/::ffff:192.0.2.1/tcp/1"))
        .is_err());
    // ...and two mapped addresses are two addresses, not one IPv6 /64.
    a.manager
        .on_pending_inbound(a.now, cid(4), &ma("/ip6/::ffff:192.0.2.2/tcp/1"))
        .unwrap();
    a.manager
        .on_pending_inbound(a.now, cid(5), &ma("/ip6/::ffff:192.0.2.3/tcp/1"))
        .unwrap();
}

#[test]
fn a_duplicate_the_listener_tolerates_counts_against_the_established_limits() {
    let limit = 4;
    let (mut a, _) = pair(
        Config::default()
            .with_limits(Limits::unlimited().with_max_established_incoming(Some(limit))),
    );
    let peers: Vec<PeerId> = (0..limit).map(|_| PeerId::random()).collect();
    let mut n = 0;
    let mut attempts = 0;
    // Each peer dials in three times (the per-peer cap): the listener keeps the newer ones
    // for the duplicate grace, in case the dialer does not run this crate.
    for _ in 0..3 {
        for peer in &peers {
            n += 1;
            attempts += 1;
            let _ = a.establish(cid(n), *peer, Initiator::Remote);
        }
    }
    let _ = a.actions();
    let established = a.manager.established_connections();
    println!(
        "duplicates: attacker spent {} PeerIds, {attempts} connections; got {established} \
         established against an inbound limit of {limit}",
        peers.len()
    );
    assert!(
        established <= limit as usize,
        "{established} established, limit {limit}"
    );
}

#[test]
fn simultaneous_dials_at_a_full_limit_still_end_with_one_connection() {
    // Each side has room for exactly one connection; both dial at once, in every order.
    let limits = Limits::unlimited().with_max_established(Some(1));
    for small_sees_x_first in [true, false] {
        for large_sees_x_first in [true, false] {
            let (mut small, mut large) = pair(Config::default().with_limits(limits.clone()));
            let (s, l) = (small.id, large.id);
            // X dialed by the smaller peer (1 on the small side, 11 on the large side), Y by
            // the larger (2 and 12).
            let small_order = if small_sees_x_first {
                [(cid(1), Initiator::Local), (cid(2), Initiator::Remote)]
            } else {
                [(cid(2), Initiator::Remote), (cid(1), Initiator::Local)]
            };
            let large_order = if large_sees_x_first {
                [(cid(11), Initiator::Remote), (cid(12), Initiator::Local)]
            } else {
                [(cid(12), Initiator::Local), (cid(11), Initiator::Remote)]
            };
            for (node, order, remote) in
                [(&mut small, small_order, l), (&mut large, large_order, s)]
            {
                for (c, i) in order {
                    let _ = node.establish(c, remote, i);
                }
                // A loser that just came up drains for a second before it is closed.
                node.advance(Duration::from_secs(1));
                // The swarm carries out the closes the manager asked for.
                let losers = node.closes();
                for (c, _) in losers {
                    node.manager.on_goodbye_finished(c);
                    node.manager
                        .on_closed(node.now, c, remote, CloseCause::Local);
                }
                let _ = node.actions();
            }
            let kept = |node: &Node, remote: PeerId| {
                node.manager
                    .peer_info(&remote)
                    .map(|info| info.connections.iter().map(|c| c.id).collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            assert_eq!(kept(&small, l), vec![cid(1)], "small side");
            assert_eq!(kept(&large, s), vec![cid(11)], "large side");
        }
    }
}

#[test]
fn a_peer_without_ping_cannot_hold_its_slot_for_ever() {
    let timeout = Duration::from_secs(30);
    let (mut a, b) = pair(Config::default().with_inactivity_timeout(Some(timeout)));
    a.establish(cid(1), b.id, Initiator::Remote).unwrap();
    a.manager.on_ping_unsupported(cid(1));
    let _ = a.actions();
    a.advance(timeout);
    println!(
        "ping refused: attacker spent 1 PeerId, 1 connection; after {timeout:?} it holds {} \
         connection(s)",
        a.manager.peer_info(&b.id).map_or(0, |i| i
            .connections
            .iter()
            .filter(|c| c.closing.is_none())
            .count())
    );
    assert_eq!(a.closes(), vec![(cid(1), DisconnectReason::Timeout)]);
}

#[test]
fn huge_backoffs_and_prompt_delays_never_panic() {
    let mut rng = StdRng::seed_from_u64(3);
    let backoff = Backoff::new(Duration::from_secs(1), 2.0, Duration::MAX);
    for attempt in [0, 10, 70, u32::MAX] {
        let _ = backoff.delay(attempt, &mut rng);
    }
    // A prompt redial (the remote said goodbye Normal) with an absurd prompt delay.
    let (mut a, b) = pair(
        Config::default()
            .with_prompt_redial_delay(Duration::MAX)
            .with_timeout_backoff(Backoff::new(Duration::MAX, 2.0, Duration::MAX)),
    );
    a.manager.add_peer(a.now, b.id, vec![addr(2)]).unwrap();
    a.establish(cid(1), b.id, Initiator::Local).unwrap();
    a.manager
        .on_goodbye_received(a.now, cid(1), DisconnectReason::Normal, None);
    a.manager
        .on_closed(a.now, cid(1), b.id, CloseCause::Transport);
    a.establish(cid(2), b.id, Initiator::Local).unwrap();
    a.manager
        .on_closed(a.now, cid(2), b.id, CloseCause::Transport);
    let _ = a.actions();
}

const RELAY_IP: &str = "198.51.100.7";

fn relayed_to(relay: PeerId, peer: PeerId) -> Multiaddr {
    ma(&format!(
        "/ip4/{RELAY_IP}/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}"
    ))
}

#[test]
fn a_ban_on_the_relays_ip_does_not_hit_peers_reached_through_it() {
    let (mut a, b) = pair(Config::default());
    let relay = PeerId::random();
    let through = relayed_to(relay, b.id);
    // An outbound circuit to b, open before the ban.
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(b.id), std::slice::from_ref(&through))
        .unwrap();
    let new = NewConnection::new(Initiator::Local, Endpoint::Dialer, through.clone());
    a.manager
        .check_established(a.now, cid(1), b.id, &new)
        .unwrap();
    a.manager.on_established(a.now, cid(1), b.id, new);
    let _ = a.actions();

    a.manager
        .ban_network(a.now, format!("{RELAY_IP}/32").parse().unwrap(), None);
    assert!(a.closes().is_empty(), "the circuit to b stays open");
    // A new circuit through the same relay, to another peer, is dialed and let in.
    let c = PeerId::random();
    let to_c = relayed_to(relay, c);
    a.manager
        .on_pending_outbound(a.now, cid(2), Some(c), std::slice::from_ref(&to_c))
        .unwrap();
    a.manager
        .check_established(
            a.now,
            cid(2),
            c,
            &NewConnection::new(Initiator::Local, Endpoint::Dialer, to_c),
        )
        .unwrap();
    // The relay itself, directly, is refused.
    assert!(matches!(
        a.manager
            .on_pending_inbound(a.now, cid(3), &ma(&format!("/ip4/{RELAY_IP}/tcp/4001"))),
        Err(Denial::IpBanned { .. })
    ));
    // A ban of the peer still reaches it through any relay.
    a.manager.ban_peer(a.now, c, None);
    assert!(matches!(
        a.manager.check_established(
            a.now,
            cid(4),
            c,
            &NewConnection::new(Initiator::Local, Endpoint::Dialer, relayed_to(relay, c))
        ),
        Err(Denial::PeerBanned { .. })
    ));
}

#[test]
fn relayed_connections_are_not_counted_by_the_relays_ip() {
    let (mut a, _) = pair(
        Config::default().with_limits(
            Limits::unlimited()
                .with_max_incoming_per_ip(Some(1))
                .with_incoming_rate_per_ip(Some(RateLimit::new(1, Duration::from_secs(60)))),
        ),
    );
    let relay = PeerId::random();
    for n in 0..4 {
        let from = relayed_to(relay, PeerId::random());
        a.manager.on_pending_inbound(a.now, cid(n), &from).unwrap();
    }
    assert_eq!(a.manager.tracked_ips(), 0);
    let ip: IpAddr = RELAY_IP.parse().unwrap();
    assert!(!a.manager.is_ip_banned(ip, a.now));
}

#[test]
fn a_refusal_names_the_prefix_that_refused() {
    let (mut a, _) =
        pair(Config::default().with_limits(Limits::new().with_max_pending_incoming(None)));
    // Four /64s in each of 16 /56s: 64 connections fill the /48 without filling a /56.
    let mut n = 0;
    for slash56 in 0..16u16 {
        for slash64 in 0..4u16 {
            n += 1;
            a.manager
                .on_pending_inbound(a.now, cid(n), &in_48((slash56 << 8) | slash64, 1))
                .unwrap();
        }
    }
    let denial = a
        .manager
        .on_pending_inbound(a.now, cid(1000), &in_48(0x1000, 1))
        .unwrap_err();
    assert_eq!(
        denial.to_string(),
        "inbound limit 64 per IPv6 /48 2001:db8::/48 reached (64 now, from 2001:db8:0:1000::1)"
    );
    assert!(denial.is_resource_limit());
    // A /56 and a /64 are named too.
    let (mut b, _) = pair(
        Config::default().with_limits(
            Limits::unlimited()
                .with_max_incoming_per_ip(Some(1))
                .with_max_incoming_per_ipv6_56(Some(2)),
        ),
    );
    b.manager
        .on_pending_inbound(b.now, cid(1), &in_48(1, 1))
        .unwrap();
    assert!(matches!(
        b.manager.on_pending_inbound(b.now, cid(2), &in_48(1, 2)),
        Err(Denial::IpLimit { network, .. }) if network.to_string() == "2001:db8:0:1::/64"
    ));
    b.manager
        .on_pending_inbound(b.now, cid(3), &in_48(2, 1))
        .unwrap();
    assert!(matches!(
        b.manager.on_pending_inbound(b.now, cid(4), &in_48(3, 1)),
        Err(Denial::IpLimit { network, .. }) if network.to_string() == "2001:db8::/56"
    ));
}

#[test]
fn the_per_ip_table_stays_bounded_across_many_48s() {
    let table = 12;
    let (mut a, _) = pair(
        Config::default().with_limits(
            Limits::new()
                .with_max_pending_incoming(None)
                .with_max_tracked_ips(table),
        ),
    );
    let mut admitted = 0;
    for n in 0..2_000u16 {
        // A fresh /48 each time (2001:db8:n::/48), connection ended at once.
        let ip = Ipv6Addr::new(0x2001, 0xdb8, n, 1, 0, 0, 0, 1);
        let from: Multiaddr = format!("/ip6/{ip}/tcp/1").parse().unwrap();
        if a.manager
            .on_pending_inbound(a.now, cid(n.into()), &from)
            .is_ok()
        {
            admitted += 1;
            a.manager.on_listen_failure(cid(n.into()));
        }
        assert!(a.manager.tracked_ips() <= table);
    }
    println!(
        "many /48s: attacker spent 2000 /48s, 2000 connections; got {admitted} admitted, at \
         most {table} table entries"
    );
}

fn circuit_local_addr(relay: PeerId) -> Multiaddr {
    ma(&format!("/ip4/{RELAY_IP}/tcp/4001/p2p/{relay}/p2p-circuit"))
}

#[test]
fn inbound_circuits_are_limited_per_relay_not_per_ip() {
    let (mut a, _) = pair(Config::default());
    let relay = PeerId::random();
    let local = circuit_local_addr(relay);
    // An IP ban on the relay does not refuse the peers that come through it.
    a.manager
        .ban_network(a.now, format!("{RELAY_IP}/32").parse().unwrap(), None);
    let mut admitted = Vec::new();
    let attempts = 40;
    for n in 0..attempts {
        let peer = PeerId::random();
        let remote = ma(&format!("/p2p/{peer}"));
        if a.manager
            .on_pending_inbound_via(a.now, cid(n), Some(&local), &remote)
            .is_ok()
        {
            admitted.push((cid(n), peer, remote));
        }
    }
    println!(
        "circuits through one relay: attacker spent {attempts} PeerIds, {attempts} circuits; got \
         {} admitted, {} per-IP table entries",
        admitted.len(),
        a.manager.tracked_ips()
    );
    // The documented default: 16 inbound circuits per relay.
    assert_eq!(admitted.len(), 16);
    assert_eq!(a.manager.tracked_ips(), 0);
    let refused = a
        .manager
        .on_pending_inbound_via(
            a.now,
            cid(100),
            Some(&local),
            &ma(&format!("/p2p/{}", PeerId::random())),
        )
        .unwrap_err();
    assert!(
        matches!(refused, Denial::RelayLimit { limit: 16, .. }),
        "{refused}"
    );
    // Another relay has its own count.
    a.manager
        .on_pending_inbound_via(
            a.now,
            cid(101),
            Some(&circuit_local_addr(PeerId::random())),
            &ma(&format!("/p2p/{}", PeerId::random())),
        )
        .unwrap();
    // Established, then closed: the slot comes back.
    let (c, peer, remote) = admitted.pop().unwrap();
    let new = NewConnection::new(Initiator::Remote, Endpoint::Listener, remote).with_relayed(true);
    a.manager.check_established(a.now, c, peer, &new).unwrap();
    a.manager.on_established(a.now, c, peer, new);
    assert!(a
        .manager
        .on_pending_inbound_via(
            a.now,
            cid(102),
            Some(&local),
            &ma(&format!("/p2p/{}", PeerId::random()))
        )
        .is_err());
    a.manager.on_closed(a.now, c, peer, CloseCause::Transport);
    a.manager
        .on_pending_inbound_via(
            a.now,
            cid(103),
            Some(&local),
            &ma(&format!("/p2p/{}", PeerId::random())),
        )
        .unwrap();
    // A peer ban still refuses a peer behind the relay.
    let (_, banned, remote) = admitted.pop().unwrap();
    a.manager.ban_peer(a.now, banned, None);
    assert!(matches!(
        a.manager.check_established(
            a.now,
            cid(104),
            banned,
            &NewConnection::new(Initiator::Remote, Endpoint::Listener, remote).with_relayed(true)
        ),
        Err(Denial::PeerBanned { .. })
    ));
}

#[test]
fn a_direct_connection_replacing_a_relayed_one_is_let_in_at_a_full_limit() {
    let (mut a, b) = pair(
        Config::default().with_limits(Limits::unlimited().with_max_established_incoming(Some(1))),
    );
    let relayed = NewConnection::new(
        Initiator::Remote,
        Endpoint::Listener,
        ma(&format!("/p2p/{}", b.id)),
    )
    .with_relayed(true);
    a.manager
        .check_established(a.now, cid(1), b.id, &relayed)
        .unwrap();
    a.manager.on_established(a.now, cid(1), b.id, relayed);
    let _ = a.actions();
    // Hole punching takes a while: the relayed connection is no longer young (a young loser
    // would drain for a second first).
    a.advance(Duration::from_secs(5));
    let _ = a.actions();
    // The hole-punched direct connection wins and closes the relayed one at once.
    inbound(&mut a, cid(2), b.id, &ma("/ip4/192.0.2.9/tcp/1")).unwrap();
    assert_eq!(a.closes(), vec![(cid(1), DisconnectReason::Duplicate)]);
    assert_eq!(
        a.manager.established_connections(),
        2,
        "until the relayed one is gone"
    );
}

#[test]
fn absurd_durations_are_a_typed_configuration_error() {
    assert_eq!(Config::default().validate(), Ok(()));
    let config = Config::default().with_prompt_redial_delay(Duration::MAX);
    assert_eq!(
        config.validate(),
        Err(crate::ConfigError::DurationTooLong {
            setting: "with_prompt_redial_delay",
            value: Duration::MAX,
            max: Config::MAX_DURATION,
        })
    );
    let backoff = Config::default().with_timeout_backoff(Backoff::new(
        Duration::from_secs(1),
        2.0,
        Duration::MAX,
    ));
    assert!(matches!(
        backoff.validate(),
        Err(crate::ConfigError::DurationTooLong {
            setting: "with_timeout_backoff",
            ..
        })
    ));
    assert!(Manager::try_new(PeerId::random(), config, Instant::now(), 1).is_err());
    assert!(Manager::try_new(PeerId::random(), Config::default(), Instant::now(), 1).is_ok());
}

#[test]
fn a_single_ipv6_address_is_banned_by_its_64() {
    let scope = |s: &str| BanTarget::host_scope(s.parse().unwrap()).to_string();
    assert_eq!(scope("2001:db8:0:1::7/128"), "2001:db8:0:1::/64");
    assert_eq!(scope("2001:db8::/48"), "2001:db8::/48");
    assert_eq!(scope("2001:db8::1/127"), "2001:db8::/127");
    assert_eq!(scope("10.0.0.1/32"), "10.0.0.1/32");
    assert_eq!(scope("::ffff:10.0.0.1/128"), "10.0.0.1/32");
    assert_eq!(scope("::ffff:10.0.0.0/104"), "10.0.0.0/8");
    let (mut a, _) = pair(Config::default());
    let banned: IpAddr = "2001:db8:0:1::7".parse().unwrap();
    // The core applies the host scope itself: the adapter passes the address through.
    a.manager
        .ban_network(a.now, banned.into(), Some(Duration::from_secs(60)));
    let mut evaded = 0;
    for host in 1..=100 {
        if a.manager
            .on_pending_inbound(a.now, cid(host.into()), &in_48(1, host))
            .is_ok()
        {
            evaded += 1;
        }
    }
    println!("ban of one IPv6 address: attacker spent 100 addresses of its /64; got {evaded} in");
    assert_eq!(evaded, 0);
    a.manager
        .on_pending_inbound(a.now, cid(1000), &in_48(2, 1))
        .unwrap();
    // Unbanning the same single address lifts the /64 ban.
    assert!(a.manager.unban(a.now, BanTarget::Network(banned.into())));
    a.manager
        .on_pending_inbound(a.now, cid(1001), &in_48(1, 7))
        .unwrap();
}
