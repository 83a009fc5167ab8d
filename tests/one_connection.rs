//! Exactly one connection per peer, on real TCP with noise and yamux.

mod common;

use std::time::{Duration, Instant};

use common::*;
use libp2p::{swarm::dial_opts::DialOpts, PeerId};
use libp2p_connection_manager::{Denial, DialFailureCause, Event};

/// Both nodes have exactly one connection, to each other, on the swarm and in the manager's
/// books.
fn one_each(s: &[Snapshot]) -> bool {
    s.iter().all(|s| {
        s.established == 1
            && s.manager_established == 1
            && s.connections.len() == 1
            && s.connections == s.manager_connections
    })
}

/// The hold of the 50-run race: every follow-up of the race (a draining duplicate, the
/// listener's grace, a rescue dial) is a timer of a manager, which `settled` waits out; the
/// hold only covers what is in flight on loopback.
const RACE_HOLD: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_dialing_each_other_at_once_end_with_one_connection_every_time() {
    init_tracing();
    const RUNS: usize = 50;
    let mut durations = Vec::with_capacity(RUNS);
    let mut rescued = 0;
    for run in 0..RUNS {
        let mut a = Node::spawn(NodeConfig::default()).await;
        let mut b = Node::spawn(NodeConfig::default()).await;
        let started = Instant::now();
        // `Swarm::dial` with default options: port reuse, as a plain application dials.
        a.swarm_dial(&b);
        b.swarm_dial(&a);
        let result = settled_for(
            &mut [&mut a, &mut b],
            Duration::from_secs(20),
            RACE_HOLD,
            one_each,
        )
        .await;
        let snapshots = result.unwrap_or_else(|s| panic!("run {run} did not settle: {s:#?}"));
        durations.push(started.elapsed());
        if snapshots
            .iter()
            .flat_map(|s| &s.events)
            .any(|e| matches!(e, Event::RedialScheduled { .. }))
        {
            rescued += 1;
        }
        // Both kept the same connection: one side dialed it, the other received it.
        let kept: Vec<_> = snapshots
            .iter()
            .map(|s| s.initiators.first().map(|(_, i)| i.clone()))
            .collect();
        assert!(
            matches!(
                (&kept[0], &kept[1]),
                (Some(x), Some(y)) if x.len() == 1 && y.len() == 1 && x[0] != y[0]
            ),
            "run {run}: both sides must agree on the kept connection: {kept:?}"
        );
        a.kill();
        b.kill();
    }
    durations.sort();
    println!(
        "{RUNS} runs: all ended with one connection; settled (a {RACE_HOLD:?} hold included) in median {:?}, max {:?}; {rescued} needed a rescue dial",
        durations[RUNS / 2],
        durations[RUNS - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_where_every_node_dials_every_other_at_once_has_one_connection_per_pair() {
    init_tracing();
    const N: usize = 12;
    let mut nodes = Vec::new();
    for _ in 0..N {
        nodes.push(Node::spawn(NodeConfig::default()).await);
    }
    let started = Instant::now();
    for i in 0..N {
        for j in 0..N {
            if i != j {
                nodes[i].swarm_dial(&nodes[j]);
            }
        }
    }
    let peers: Vec<_> = nodes.iter().map(|n| n.peer).collect();
    let mut refs: Vec<&mut Node> = nodes.iter_mut().collect();
    let result = settled(&mut refs, Duration::from_secs(60), |s| {
        s.iter().all(|s| {
            s.established as usize == N - 1
                && s.connections.len() == N - 1
                && s.connections.iter().all(|(_, n)| *n == 1)
                && s.connections == s.manager_connections
        })
    })
    .await;
    let snapshots = result.unwrap_or_else(|s| {
        let counts: Vec<_> = s
            .iter()
            .map(|s| (s.established, s.pending, s.closing))
            .collect();
        // What both ends of the first unconnected pair went through.
        let unconnected = (0..N)
            .flat_map(|i| (i + 1..N).map(move |j| (i, j)))
            .find(|(i, j)| s[*i].connections_to(&peers[*j]) == 0);
        let story = unconnected.map_or_else(String::new, |(i, j)| {
            let about = |from: usize, peer| {
                s[from]
                    .events
                    .iter()
                    .filter(|e| format!("{e:?}").contains(&format!("{peer}")))
                    .map(|e| format!("    {e:?}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            format!(
                "\nnode {i} about node {j}:\n{}\nnode {j} about node {i}:\n{}",
                about(i, peers[j]),
                about(j, peers[i])
            )
        });
        panic!("mesh did not settle: (established, pending, closing) per node {counts:?}{story}")
    });
    let total: u32 = snapshots.iter().map(|s| s.established).sum();
    assert_eq!(
        total as usize,
        N * (N - 1),
        "each of the {} pairs counted from both ends",
        N * (N - 1) / 2
    );
    println!(
        "{N}-node mesh settled with one connection per pair in {:?} (the {HOLD:?} hold included)",
        started.elapsed()
    );
    for node in nodes {
        node.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_dialing_another_on_two_addresses_ends_with_one_connection() {
    init_tracing();
    let mut dialer = Node::spawn(NodeConfig::default()).await;
    let (mut listener, addrs) = Node::spawn_with_listeners(NodeConfig {
        extra_listeners: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(addrs.len(), 2);
    for addr in &addrs {
        dialer.send(Command::SwarmDial(
            DialOpts::peer_id(listener.peer)
                .addresses(vec![addr.clone()])
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .build(),
        ));
    }
    let snapshots = settled(
        &mut [&mut dialer, &mut listener],
        Duration::from_secs(20),
        one_each,
    )
    .await
    .unwrap_or_else(|s| panic!("did not settle: {s:#?}"));
    // Whichever way the second connection ended (refused at once or closed as a duplicate),
    // the manager said so.
    let dialer_events = &snapshots[0].events;
    assert!(
        dialer_events
            .iter()
            .any(|e| matches!(e, Event::DuplicateClosed { .. })),
        "{dialer_events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_our_own_key_is_refused() {
    init_tracing();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut a = Node::spawn(NodeConfig {
        keypair: Some(key.clone()),
        ..Default::default()
    })
    .await;
    let mut twin = Node::spawn(NodeConfig {
        keypair: Some(key),
        ..Default::default()
    })
    .await;
    assert_eq!(a.peer, twin.peer);
    // Dial the twin by address only: the handshake reveals our own peer id.
    a.send(Command::SwarmDial(twin.addr.clone().into()));
    let snapshots = settled(&mut [&mut a, &mut twin], Duration::from_secs(20), |s| {
        s[0].events.iter().any(|e| {
            matches!(
                e,
                Event::DialFailed {
                    cause: DialFailureCause::SelfConnection,
                    ..
                }
            )
        })
    })
    .await
    .unwrap_or_else(|s| panic!("no self-connection refusal: {s:#?}"));
    for s in &snapshots {
        assert_eq!(s.established, 0);
        assert_eq!(s.max_established, 0);
        assert_eq!(s.manager_tracked, 0);
    }
    assert_eq!(snapshots[0].dials, 1);

    // And the manager refuses to be asked for itself: `dial` says why at once, and nothing is
    // dialed or remembered.
    let me: PeerId = a.peer;
    let addr = twin.addr.clone();
    let answer = a
        .query(move |swarm| swarm.behaviour_mut().manager.add_peer(me, vec![addr]))
        .await;
    assert_eq!(answer, Err(Denial::SelfConnection { peer: me }));
    let snapshots = settled(&mut [&mut a, &mut twin], Duration::from_secs(20), |_| true)
        .await
        .unwrap_or_else(|s| panic!("did not settle: {s:#?}"));
    assert_eq!(snapshots[0].dials, 1, "no second dial");
    assert_eq!(
        snapshots[1].incoming, 1,
        "the twin saw no second connection"
    );
    assert_eq!(snapshots[0].manager_tracked, 0);
}
