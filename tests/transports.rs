//! One connection per peer across transports: QUIC, TCP with TLS instead of noise, WebSocket,
//! and nodes that listen on TCP and QUIC and are dialed on both. Every run ends with one
//! connection per pair, and both ends keep the same one: one side dialed the address the
//! other listens on it with (compared from the swarm's endpoints of the kept connections).

mod common;

use std::time::Duration;

use common::*;
use libp2p::{
    core::ConnectedPoint,
    multiaddr::Protocol,
    swarm::dial_opts::{DialOpts, PeerCondition},
    Multiaddr,
};

/// The hold of the repeated races (see `one_connection.rs`): every follow-up of a race is a
/// timer of a manager, which `settled` waits out; the hold covers what is in flight.
const RACE_HOLD: Duration = Duration::from_millis(500);

/// Whether a node running `transports` can dial `addr`.
fn can_dial(transports: Transports, addr: &Multiaddr) -> bool {
    let quic = addr.iter().any(|p| matches!(p, Protocol::QuicV1));
    let ws = addr.iter().any(|p| matches!(p, Protocol::Ws(_)));
    match (quic, ws) {
        (true, _) => transports.quic,
        (_, true) => transports.websocket.is_some(),
        _ => transports.tcp.is_some(),
    }
}

/// `from` dials every address of `to` it can dial, each as its own dial, all at once (as a
/// node that learned them all from identify or a DHT would with `PeerCondition::Always`).
fn dial_every_address(from: &Node, from_transports: Transports, to: &Node) -> usize {
    let mut dials = 0;
    for addr in to.addrs.iter().filter(|a| can_dial(from_transports, a)) {
        from.send(Command::SwarmDial(
            DialOpts::peer_id(to.peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::Always)
                .build(),
        ));
        dials += 1;
    }
    dials
}

/// Which peers each node should end connected to: those it shares a transport with.
fn expected_peers(nodes: &[Node], transports: &[Transports]) -> Vec<Vec<usize>> {
    (0..nodes.len())
        .map(|i| {
            (0..nodes.len())
                .filter(|&j| j != i && nodes[j].addrs.iter().any(|a| can_dial(transports[i], a)))
                .collect()
        })
        .collect()
}

/// Exactly one connection to each expected peer and to nothing else, on the swarm and in the
/// manager's books alike.
fn one_per_expected_pair(nodes: &[Node], expected: &[Vec<usize>], s: &[Snapshot]) -> bool {
    s.iter().enumerate().all(|(i, s)| {
        s.established as usize == expected[i].len()
            && s.connections.len() == expected[i].len()
            && s.connections.iter().all(|(_, n)| *n == 1)
            && s.connections == s.manager_connections
            && expected[i]
                .iter()
                .all(|&j| s.connections_to(&nodes[j].peer) == 1)
    })
}

/// The endpoint of the one connection node `i` keeps to node `j`.
fn kept(nodes: &[Node], s: &[Snapshot], i: usize, j: usize) -> Result<ConnectedPoint, String> {
    let open: Vec<&ConnectedPoint> = s[i]
        .kept_endpoints
        .iter()
        .filter(|(p, _)| *p == nodes[j].peer)
        .flat_map(|(_, e)| e)
        .collect();
    match open.as_slice() {
        [one] => Ok((*one).clone()),
        other => Err(format!(
            "node {i} keeps {} connections to node {j}: {other:?}",
            other.len()
        )),
    }
}

/// Checks that both ends of every expected pair keep the same connection; returns the
/// transport each pair kept (`(i, j, "quic")` for i < j).
fn agreed_pairs(
    nodes: &[Node],
    expected: &[Vec<usize>],
    s: &[Snapshot],
) -> Result<Vec<(usize, usize, &'static str)>, String> {
    let mut pairs = Vec::new();
    for (i, peers) in expected.iter().enumerate() {
        for &j in peers.iter().filter(|&&j| j > i) {
            let (ours, theirs) = (kept(nodes, s, i, j)?, kept(nodes, s, j, i)?);
            if !same_connection(&ours, &theirs) {
                return Err(format!(
                    "nodes {i} and {j} keep different connections: {ours:?} and {theirs:?}"
                ));
            }
            pairs.push((i, j, transport_of(&ours)));
        }
    }
    Ok(pairs)
}

async fn spawn_nodes(transports: &[Transports]) -> Vec<Node> {
    let mut nodes = Vec::with_capacity(transports.len());
    for &transports in transports {
        nodes.push(
            Node::spawn(NodeConfig {
                transports: Some(transports),
                ..Default::default()
            })
            .await,
        );
    }
    nodes
}

/// `runs` times: two nodes running `transports` dial each other at once, on every address they
/// can, then must settle on one connection both keep. Returns how often each transport was
/// kept.
async fn race(transports: Transports, runs: usize) -> Vec<(&'static str, usize)> {
    let mut kept_transports: Vec<(&'static str, usize)> = Vec::new();
    for run in 0..runs {
        let kinds = [transports, transports];
        let mut nodes = spawn_nodes(&kinds).await;
        let expected = expected_peers(&nodes, &kinds);
        dial_every_address(&nodes[0], transports, &nodes[1]);
        dial_every_address(&nodes[1], transports, &nodes[0]);
        let snapshots = {
            let mut refs: Vec<&mut Node> = nodes.iter_mut().collect();
            settled_for(&mut refs, Duration::from_secs(20), RACE_HOLD, |s| {
                s.iter().all(|s| s.kept_endpoints.len() == 1)
                    && one_per_expected_pair_unchecked(&expected, s)
            })
            .await
            .unwrap_or_else(|s| panic!("{transports:?} run {run} did not settle: {s:#?}"))
        };
        assert!(one_per_expected_pair(&nodes, &expected, &snapshots));
        let pairs = agreed_pairs(&nodes, &expected, &snapshots)
            .unwrap_or_else(|e| panic!("{transports:?} run {run}: {e}"));
        for (_, _, transport) in pairs {
            match kept_transports.iter_mut().find(|(t, _)| *t == transport) {
                Some((_, n)) => *n += 1,
                None => kept_transports.push((transport, 1)),
            }
        }
        for node in nodes {
            node.kill();
        }
    }
    println!(
        "{transports:?}: {runs} runs, one connection both agree on; kept: {kept_transports:?}"
    );
    kept_transports
}

/// [`one_per_expected_pair`] for two nodes, without their peer ids (the closure of `settled`
/// cannot borrow the nodes it waits on).
fn one_per_expected_pair_unchecked(expected: &[Vec<usize>], s: &[Snapshot]) -> bool {
    s.iter().enumerate().all(|(i, s)| {
        s.established as usize == expected[i].len()
            && s.connections.len() == expected[i].len()
            && s.connections.iter().all(|(_, n)| *n == 1)
            && s.connections == s.manager_connections
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_over_quic_end_with_one_connection_both_keep() {
    init_tracing();
    let kept = race(Transports::QUIC, 20).await;
    assert_eq!(kept, vec![("quic", 20)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_tcp_and_quic_dialing_every_address_of_each_other_keep_one_connection() {
    init_tracing();
    // Four dials per run: each node dials the other on TCP and on QUIC at once.
    let kept = race(Transports::TCP_AND_QUIC, 20).await;
    assert_eq!(kept.iter().map(|(_, n)| n).sum::<usize>(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_over_tcp_with_tls_end_with_one_connection_both_keep() {
    init_tracing();
    let kept = race(Transports::TCP_TLS, 10).await;
    assert_eq!(kept, vec![("tcp", 10)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_over_websocket_end_with_one_connection_both_keep() {
    init_tracing();
    let kept = race(Transports::WEBSOCKET, 10).await;
    assert_eq!(kept, vec![("ws", 10)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_of_tcp_quic_and_dual_stack_nodes_has_one_connection_per_pair_that_shares_a_transport(
) {
    init_tracing();
    // 4 TCP-only, 4 QUIC-only, 4 on both; every node dials every address of every other node
    // that it can dial, all at once. TCP-only and QUIC-only nodes share no transport and stay
    // apart; every other pair ends with one connection.
    let kinds: Vec<Transports> = [Transports::TCP, Transports::QUIC, Transports::TCP_AND_QUIC]
        .into_iter()
        .flat_map(|t| std::iter::repeat_n(t, 4))
        .collect();
    let mut nodes = spawn_nodes(&kinds).await;
    let expected = expected_peers(&nodes, &kinds);
    let pairs_expected = expected.iter().map(Vec::len).sum::<usize>() / 2;
    // 6 + 6 (within TCP-only and QUIC-only) + 6 (within dual) + 16 + 16 (dual with each).
    assert_eq!(pairs_expected, 50);
    let mut dials = 0;
    for i in 0..nodes.len() {
        for j in 0..nodes.len() {
            if i != j {
                dials += dial_every_address(&nodes[i], kinds[i], &nodes[j]);
            }
        }
    }
    let snapshots = {
        let mut refs: Vec<&mut Node> = nodes.iter_mut().collect();
        settled(&mut refs, Duration::from_secs(60), |s| {
            one_per_expected_pair_unchecked(&expected, s)
                && s.iter()
                    .enumerate()
                    .all(|(i, s)| s.kept_endpoints.len() == expected[i].len())
        })
        .await
        .unwrap_or_else(|s| {
            let counts: Vec<_> = s
                .iter()
                .map(|s| (s.established, s.pending, s.closing))
                .collect();
            panic!("the mixed mesh did not settle: (established, pending, closing) {counts:?}")
        })
    };
    assert!(one_per_expected_pair(&nodes, &expected, &snapshots));
    let pairs = agreed_pairs(&nodes, &expected, &snapshots).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(pairs.len(), pairs_expected);
    // A pair that shares one transport can only have kept that one.
    for &(i, j, transport) in &pairs {
        let shared_only = match (kinds[i], kinds[j]) {
            (a, b) if a == Transports::TCP || b == Transports::TCP => Some("tcp"),
            (a, b) if a == Transports::QUIC || b == Transports::QUIC => Some("quic"),
            _ => None,
        };
        if let Some(only) = shared_only {
            assert_eq!(transport, only, "nodes {i} and {j}");
        }
    }
    let count = |t| pairs.iter().filter(|(_, _, k)| *k == t).count();
    println!(
        "mixed mesh of 12: {dials} dials, {} pairs with one connection both keep ({} tcp, {} quic)",
        pairs.len(),
        count("tcp"),
        count("quic")
    );
}
