//! The remote learns why a connection closes.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use libp2p::{identify, noise, ping, swarm::NetworkBehaviour, swarm::SwarmEvent, tcp, yamux};
use libp2p_connection_manager::{ClosedBy, DisconnectReason, Event, Initiator};

fn goodbye_received(s: &Snapshot, reason: DisconnectReason) -> bool {
    s.events
        .iter()
        .any(|e| matches!(e, Event::GoodbyeReceived { reason: r, .. } if *r == reason))
}

fn disconnected(s: &Snapshot, reason: DisconnectReason, by: ClosedBy) -> bool {
    s.events.iter().any(|e| {
        matches!(e, Event::Disconnected { reason: r, closed_by, .. } if *r == reason && *closed_by == by)
    })
}

fn redials(s: &Snapshot) -> usize {
    s.events
        .iter()
        .filter(|e| matches!(e, Event::RedialScheduled { .. }))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_sends_goodbye_normal_and_nobody_redials() {
    init_tracing();
    let mut a = Node::spawn(NodeConfig::default()).await;
    let mut b = Node::spawn(NodeConfig::default()).await;
    a.send(Command::ManagerDial(b.peer, b.addr.clone()));
    wait_until(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 1 && s.is_quiet())
    })
    .await
    .expect("connected");

    a.send(Command::Disconnect(b.peer));
    let s = settled(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 0)
            && goodbye_received(&s[1], DisconnectReason::Normal)
            && disconnected(&s[0], DisconnectReason::Normal, ClosedBy::Local)
            && disconnected(&s[1], DisconnectReason::Normal, ClosedBy::Remote)
    })
    .await
    .unwrap_or_else(|s| panic!("no goodbye: {s:#?}"));
    assert_eq!(redials(&s[0]) + redials(&s[1]), 0, "{s:#?}");
    assert_eq!(
        (s[0].dials, s[1].dials),
        (1, 0),
        "a's one dial, nothing since"
    );
    assert_eq!(s[0].manager_tracked, 0, "a no longer wants b");
    assert_eq!(s[1].manager_tracked, 0, "b never wanted a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initiator_redials_once_promptly_when_the_remote_says_normal() {
    init_tracing();
    let mut a = Node::spawn(NodeConfig::default()).await;
    let mut b = Node::spawn(NodeConfig::default()).await;
    // b wants a; a closes the connection.
    b.send(Command::ManagerDial(a.peer, a.addr.clone()));
    wait_until(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 1 && s.is_quiet())
    })
    .await
    .expect("connected");
    a.send(Command::Disconnect(b.peer));
    let s = settled(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        goodbye_received(&s[1], DisconnectReason::Normal)
            && redials(&s[1]) >= 1
            && s.iter().all(|s| s.established == 1)
    })
    .await
    .unwrap_or_else(|s| panic!("b did not come back: {s:#?}"));
    // Once, promptly: one redial planned, two dials in all, within the prompt delay (200 ms,
    // jittered by +-50%: `Config::with_prompt_redial_delay`).
    assert_eq!(redials(&s[1]), 1, "{:#?}", s[1].events);
    assert_eq!(s[1].dials, 2);
    assert!(
        s[1].events.iter().all(|e| match e {
            Event::RedialScheduled { delay, .. } => *delay <= Duration::from_millis(300),
            _ => true,
        }),
        "{:#?}",
        s[1].events
    );
    // a closed the connection itself (`disconnect`): a local Normal close is never redialed.
    // (a is the side that hung up here, so it cannot also want b; that only the initiator
    // redials when the listener wants the peer too is shown in tests/fault_transport.rs.)
    assert_eq!(redials(&s[0]), 0);
    assert_eq!(s[0].dials, 0);
    assert_eq!(s[1].initiators[0].1, vec![Initiator::Local]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_duplicate_carries_goodbye_duplicate() {
    init_tracing();
    let (small_key, large_key) = ordered_keypairs();
    let mut small = Node::spawn(NodeConfig {
        keypair: Some(small_key),
        ..Default::default()
    })
    .await;
    let mut large = Node::spawn(NodeConfig {
        keypair: Some(large_key),
        ..Default::default()
    })
    .await;
    // The larger peer dials first: its connection is established on both sides...
    large.swarm_dial(&small);
    wait_until(
        &mut [&mut small, &mut large],
        Duration::from_secs(20),
        |s| s.iter().all(|s| s.established == 1 && s.is_quiet()),
    )
    .await
    .expect("connected");
    // ...then the smaller peer dials: its connection wins the tie-break on both sides, and the
    // older one is closed with a goodbye that says why.
    small.swarm_dial(&large);
    let s = settled(
        &mut [&mut small, &mut large],
        Duration::from_secs(20),
        |s| {
            s.iter().all(|s| s.established == 1)
                && (goodbye_received(&s[0], DisconnectReason::Duplicate)
                    || goodbye_received(&s[1], DisconnectReason::Duplicate))
                && s[0].initiators.first().map(|(_, i)| i.clone()) == Some(vec![Initiator::Local])
        },
    )
    .await
    .unwrap_or_else(|s| panic!("duplicate not settled with a goodbye: {s:#?}"));
    assert_eq!(s[1].initiators[0].1, vec![Initiator::Remote]);
}

/// A node without the connection manager: ping and identify only.
#[derive(NetworkBehaviour)]
struct Plain {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_without_the_goodbye_protocol_is_closed_without_waiting() {
    init_tracing();
    let goodbye_timeout = Duration::from_secs(10);
    let mut plain = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| Plain {
            identify: identify::Behaviour::new(identify::Config::new(
                "/plain/1.0.0".into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    plain
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let plain_addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = plain.select_next_some().await {
            break address;
        }
    };
    let plain_peer = *plain.local_peer_id();
    let plain_task = tokio::spawn(async move {
        loop {
            plain.select_next_some().await;
        }
    });

    let mut node = Node::spawn(NodeConfig {
        manager: libp2p_connection_manager::Config::default().with_goodbye_timeout(goodbye_timeout),
        ..Default::default()
    })
    .await;
    node.send(Command::ManagerDial(plain_peer, plain_addr));
    wait_until(&mut [&mut node], Duration::from_secs(20), |s| {
        s[0].established == 1 && s[0].is_quiet()
    })
    .await
    .expect("connected to the plain node");

    let started = tokio::time::Instant::now();
    node.send(Command::Disconnect(plain_peer));
    wait_until(&mut [&mut node], Duration::from_secs(20), |s| {
        s[0].established == 0 && disconnected(&s[0], DisconnectReason::Normal, ClosedBy::Local)
    })
    .await
    .unwrap_or_else(|s| panic!("not closed: {s:#?}"));
    // The remote refuses the protocol at once: no reason to sit out the goodbye timeout.
    assert!(
        started.elapsed() < goodbye_timeout,
        "closing took {:?}",
        started.elapsed()
    );
    plain_task.abort();
}
