//! Bans and limits over real TCP: goodbye `Banned`, refusals before the handshake, and a flood.

mod common;

use std::time::Duration;

use common::*;
use libp2p_connection_manager::{
    BanTarget, Config, Denial, DialFailureCause, DisconnectReason, Event, LimitKind, Limits,
};

fn denials(s: &Snapshot) -> Vec<&Denial> {
    s.events
        .iter()
        .filter_map(|e| match e {
            Event::Denied { denial, .. } => Some(denial),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banning_a_connected_peer_sends_goodbye_banned_and_it_does_not_come_back() {
    init_tracing();
    let mut a = Node::spawn(NodeConfig::default()).await;
    let mut b = Node::spawn(NodeConfig::default()).await;
    // b wants a: it would redial after anything but a ban.
    b.send(Command::ManagerDial(a.peer, a.addr.clone()));
    wait_until(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 1 && s.is_quiet())
    })
    .await
    .expect("connected");

    a.send(Command::BanPeer(b.peer, Some(Duration::from_secs(600))));
    let s = settled(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 0)
            && s[1].events.iter().any(|e| {
                matches!(
                    e,
                    Event::GoodbyeReceived {
                        reason: DisconnectReason::Banned,
                        ..
                    }
                )
            })
    })
    .await
    .unwrap_or_else(|s| panic!("no ban goodbye: {s:#?}"));
    assert!(s[0].events.iter().any(|e| matches!(
        e,
        Event::Banned {
            target: BanTarget::Peer(p),
            until: Some(_)
        } if *p == b.peer
    )));
    // The goodbye said how long the ban lasts: the banned side comes back no sooner.
    assert!(
        s[1].events.iter().all(|e| match e {
            Event::RedialScheduled { delay, .. } => *delay >= Duration::from_secs(600),
            _ => true,
        }),
        "the banned side does not redial before the ban ends: {:#?}",
        s[1].events
    );

    // Dialing again from the banned side is refused by the banning side.
    b.swarm_dial(&a);
    let s = settled(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        denials(&s[0])
            .iter()
            .any(|d| matches!(d, Denial::PeerBanned { .. }))
            && s.iter().all(|s| s.established == 0)
    })
    .await
    .unwrap_or_else(|s| panic!("banned peer got in: {s:#?}"));
    assert_eq!(s[0].max_established, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_ip_is_refused_before_the_handshake_and_a_banned_peer_from_any_ip() {
    init_tracing();
    // Every dial here leaves from 127.0.0.1 (the kernel's source address on loopback).
    let mut a = Node::spawn(NodeConfig::default()).await;
    let mut b = Node::spawn(NodeConfig::default()).await;
    let mut c = Node::spawn(NodeConfig::default()).await;
    let mut d = Node::spawn(NodeConfig::default()).await;

    // An IP ban refuses before any handshake work: no peer id is known yet.
    a.send(Command::BanNetwork("127.0.0.0/24".parse().unwrap(), None));
    wait_until(&mut [&mut a], Duration::from_secs(10), |s| {
        s[0].events
            .iter()
            .any(|e| matches!(e, Event::Banned { .. }))
    })
    .await
    .expect("the ban is in force before anyone dials");
    b.swarm_dial(&a);
    let s = wait_until(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s[0].events.iter().any(|e| {
            matches!(
                e,
                Event::Denied {
                    peer: None,
                    denial: Denial::IpBanned { .. },
                    ..
                }
            )
        }) && s[1]
            .events
            .iter()
            .any(|e| matches!(e, Event::DialFailed { .. }))
            && s.iter().all(|s| s.is_quiet())
    })
    .await
    .unwrap_or_else(|s| panic!("IP ban did not hold: {s:#?}"));
    assert_eq!(s[0].max_established, 0);
    // b would keep rescuing its failed dial; it must not slip in once the IP is unbanned.
    b.kill();

    // A peer ban holds whatever address the peer comes from (here one that is not banned).
    a.send(Command::Unban(BanTarget::Network(
        "127.0.0.0/24".parse().unwrap(),
    )));
    a.send(Command::BanPeer(c.peer, None));
    wait_until(&mut [&mut a], Duration::from_secs(10), |s| {
        s[0].events
            .iter()
            .any(|e| matches!(e, Event::Unbanned { .. }))
            && s[0].events.iter().any(|e| {
                matches!(
                    e,
                    Event::Banned {
                        target: BanTarget::Peer(_),
                        ..
                    }
                )
            })
    })
    .await
    .expect("the bans changed before anyone dials");
    c.swarm_dial(&a);
    d.swarm_dial(&a);
    let s = settled(
        &mut [&mut a, &mut c, &mut d],
        Duration::from_secs(30),
        |s| {
            denials(&s[0]).iter().any(|d| {
                matches!(
                    d,
                    Denial::PeerBanned {
                        remaining: None,
                        ..
                    }
                )
            }) && s[0].established == 1
                && s[1].established == 0
                && s[2].established == 1
        },
    )
    .await
    .unwrap_or_else(|s| panic!("peer ban did not hold: {s:#?}"));
    assert_eq!(s[0].connections[0].0, d.peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_flood_from_one_ip_is_held_to_the_limits_and_others_still_get_in() {
    init_tracing();
    const FLOOD: usize = 300;
    let limits = Limits::unlimited()
        .with_max_pending_incoming(Some(16))
        .with_max_incoming_per_ip(Some(4))
        .with_loopback_exempt(false);
    let mut target = Node::spawn(NodeConfig {
        manager: Config::default().with_limits(limits),
        ..Default::default()
    })
    .await;
    let target_socket = {
        let mut parts = target.addr.iter();
        let ip = match parts.next() {
            Some(libp2p::multiaddr::Protocol::Ip4(ip)) => ip,
            other => panic!("unexpected {other:?}"),
        };
        let port = match parts.next() {
            Some(libp2p::multiaddr::Protocol::Tcp(port)) => port,
            other => panic!("unexpected {other:?}"),
        };
        std::net::SocketAddr::from((ip, port))
    };

    // Hundreds of TCP connections from 127.0.0.2 that never start a handshake (a slowloris),
    // all at once, held open for the rest of the test.
    let flood: Vec<_> = futures::future::join_all((0..FLOOD).map(|_| async move {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind("127.0.0.2:0".parse().expect("socket address"))?;
        socket.connect(target_socket).await
    }))
    .await
    .into_iter()
    .filter_map(Result::ok)
    .collect();
    assert!(
        flood.len() > FLOOD / 2,
        "only {} flood connections opened",
        flood.len()
    );

    let s = wait_until(&mut [&mut target], Duration::from_secs(30), |s| {
        denials(&s[0]).len() + 4 >= flood.len()
    })
    .await
    .unwrap_or_else(|s| panic!("flood not refused: {} denials", denials(&s[0]).len()));
    assert!(
        s[0].max_manager_pending <= 4,
        "pending peaked at {}",
        s[0].max_manager_pending
    );
    assert!(denials(&s[0]).iter().all(|d| matches!(
        d,
        Denial::IpLimit { limit: 4, .. }
            | Denial::Limit {
                kind: LimitKind::PendingIncoming,
                ..
            }
    )));
    assert_eq!(s[0].tracked_ips, 1, "per-IP state stays bounded");

    // While the flood still holds its sockets, a peer from another address (127.0.0.1) gets in.
    let mut good = Node::spawn(NodeConfig::default()).await;
    good.swarm_dial(&target);
    let s = wait_until(
        &mut [&mut target, &mut good],
        Duration::from_secs(30),
        |s| s[0].established == 1 && s[1].established == 1,
    )
    .await
    .unwrap_or_else(|s| panic!("the allowed peer did not get in: {s:#?}"));
    assert!(s[0].max_manager_pending <= 16);
    assert!(!s[1].events.iter().any(|e| matches!(
        e,
        Event::DialFailed {
            cause: DialFailureCause::Transport { .. },
            ..
        }
    )));
    drop(flood);
}
