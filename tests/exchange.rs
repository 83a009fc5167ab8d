//! Peer exchange: a cluster that knows one bootstrap address forms a full mesh.

mod common;

use std::time::{Duration, Instant};

use common::*;
use libp2p_connection_manager::{Config, Denial, Event, PeerExchange};

fn exchanging() -> Config {
    Config::default().with_peer_exchange(Some(
        PeerExchange::new()
            .with_auto_connect(true)
            .with_interval(Duration::from_millis(300)),
    ))
}

fn full_mesh(n: usize) -> impl FnMut(&[Snapshot]) -> bool {
    move |s: &[Snapshot]| {
        s.iter().all(|s| {
            s.established as usize == n - 1
                && s.connections.len() == n - 1
                && s.connections.iter().all(|(_, c)| *c == 1)
                && s.connections == s.manager_connections
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_nodes_knowing_only_the_first_form_a_full_mesh() {
    init_tracing();
    const N: usize = 12;
    let mut nodes = Vec::new();
    for _ in 0..N {
        nodes.push(
            Node::spawn(NodeConfig {
                manager: exchanging(),
                ..Default::default()
            })
            .await,
        );
    }
    let started = Instant::now();
    let (seed_peer, seed_addr) = (nodes[0].peer, nodes[0].addr.clone());
    for node in &nodes[1..] {
        node.send(Command::ManagerDial(seed_peer, seed_addr.clone()));
    }
    let mut refs: Vec<&mut Node> = nodes.iter_mut().collect();
    settled(&mut refs, Duration::from_secs(60), full_mesh(N))
        .await
        .unwrap_or_else(|s| {
            let counts: Vec<_> = s.iter().map(|s| (s.established, s.pending)).collect();
            panic!("no full mesh: (established, pending) per node {counts:?}")
        });
    println!(
        "{N} nodes knowing only the first formed a full mesh ({} connections) in {:?}",
        N * (N - 1) / 2,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_is_forgotten_and_bans_hold_against_advertised_peers() {
    init_tracing();
    const N: usize = 4;
    let mut nodes = Vec::new();
    for _ in 0..N {
        nodes.push(
            Node::spawn(NodeConfig {
                manager: exchanging(),
                ..Default::default()
            })
            .await,
        );
    }
    // Node 1 bans node 3 before anything is exchanged.
    let banned = nodes[3].peer;
    nodes[1].send(Command::BanPeer(banned, None));
    let (seed_peer, seed_addr) = (nodes[0].peer, nodes[0].addr.clone());
    for node in &nodes[1..] {
        node.send(Command::ManagerDial(seed_peer, seed_addr.clone()));
    }
    // Everyone meets everyone through the seed, except the banned pair.
    let mut refs: Vec<&mut Node> = nodes.iter_mut().collect();
    let s = settled(&mut refs, Duration::from_secs(30), |s| {
        s[0].established == 3
            && s[1].established == 2
            && s[2].established == 3
            && s[3].established == 2
    })
    .await
    .unwrap_or_else(|s| panic!("unexpected mesh: {s:#?}"));
    assert_eq!(
        s[1].connections_to(&banned),
        0,
        "the ban held against advertised peers"
    );

    // Node 2 leaves for good: the others drop it once a redial fails, and nobody advertises it.
    let gone = nodes[2].peer;
    let node2 = nodes.remove(2);
    node2.kill();
    // (Indices now: 0 the seed, 1 the banning node, 2 the banned one.)
    let banning = nodes[1].peer;
    let mut refs: Vec<&mut Node> = nodes.iter_mut().collect();
    let s = settled(&mut refs, Duration::from_secs(30), |s| {
        // Nobody is connected to it or keeps any state for it: every peer a node tracks is a
        // connected one, the banned node included: it heard of the banning one from the seed,
        // was pushed away by it (refused at the handshake) and let that hearsay peer go. Those
        // that redialed the node that left (they had dialed it: who dialed whom in the mesh is
        // a race) say they forgot it once the redial failed.
        let redialed = |s: &Snapshot| {
            s.events
                .iter()
                .any(|e| matches!(e, Event::RedialScheduled { peer, .. } if *peer == gone))
        };
        let forgotten = |s: &Snapshot| {
            s.events
                .iter()
                .any(|e| matches!(e, Event::PeerForgotten { peer } if *peer == gone))
        };
        s.iter().all(|s| s.connections_to(&gone) == 0)
            && s[0].manager_tracked == s[0].established as usize
            && s[1].manager_tracked == s[1].established as usize
            && s[2].manager_tracked == s[2].established as usize
            && s.iter().all(|s| !redialed(s) || forgotten(s))
    })
    .await
    .unwrap_or_else(|s| panic!("the node that left is still around: {s:#?}"));
    // The ban still holds: the banned node, refused at the handshake without a goodbye, sees
    // the banning node close in order (`Closed`) and lets it go (a hearsay peer that pushes
    // the node away is left alone for 10 minutes), never redialing it promptly. It never gets
    // a connection the banning node keeps.
    assert_eq!(s[1].connections_to(&banned), 0);
    assert!(s[1].count_events(
        |e| matches!(e, Event::Denied { peer: Some(p), denial: Denial::PeerBanned { .. }, .. } if *p == banned)
    ) >= 1);
    assert!(s[2]
        .events
        .iter()
        .all(|e| !matches!(e, Event::RedialScheduled { peer, delay, .. } if *peer == banning && *delay < Duration::from_secs(8))));
}
