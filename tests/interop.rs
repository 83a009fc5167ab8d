//! Remotes that do not run this crate: a plain rust-libp2p node (identify and ping only).

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use libp2p::{
    identify, noise, ping,
    swarm::{dial_opts::DialOpts, dial_opts::PeerCondition, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager::{ClosedBy, Config, DisconnectReason, Event};
use tokio::sync::{mpsc, watch};

#[derive(NetworkBehaviour)]
struct Plain {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

/// A plain node in its own task: it dials what it is told and reports its connection count.
struct PlainNode {
    peer: PeerId,
    addr: Multiaddr,
    dial: mpsc::UnboundedSender<DialOpts>,
    /// Closes every connection to a peer in order (`Swarm::close_connection`, a graceful
    /// close; `disconnect_peer_id` drops them without one).
    hang_up: mpsc::UnboundedSender<PeerId>,
    established: watch::Receiver<u32>,
    /// Every connection it has had, in order, with whether a ping on it succeeded and whether
    /// it is closed.
    history: watch::Receiver<Vec<PlainConnection>>,
}

#[derive(Debug, Clone)]
struct PlainConnection {
    id: libp2p::swarm::ConnectionId,
    pinged: bool,
    closed: bool,
}

async fn plain_node() -> PlainNode {
    let mut swarm: Swarm<Plain> = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| Plain {
            identify: identify::Behaviour::new(identify::Config::new(
                "/plain/1.0.0".into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let peer = *swarm.local_peer_id();
    let (dial, mut dial_rx) = mpsc::unbounded_channel::<DialOpts>();
    let (hang_up, mut hang_up_rx) = mpsc::unbounded_channel::<PeerId>();
    let (count_tx, established) = watch::channel(0);
    let (history_tx, history) = watch::channel(Vec::<PlainConnection>::new());
    tokio::spawn(async move {
        let mut connections = Vec::new();
        loop {
            tokio::select! {
                opts = dial_rx.recv() => match opts {
                    Some(opts) => { let _ = swarm.dial(opts); }
                    None => return,
                },
                Some(peer) = hang_up_rx.recv() => {
                    for connection in connections.iter().filter(|(p, _)| *p == peer) {
                        swarm.close_connection(connection.1);
                    }
                }
                event = swarm.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { peer_id, connection_id, .. } => {
                        connections.push((peer_id, connection_id));
                        history_tx.send_modify(|h| h.push(PlainConnection {
                            id: connection_id,
                            pinged: false,
                            closed: false,
                        }));
                    }
                    SwarmEvent::ConnectionClosed { connection_id, .. } => {
                        connections.retain(|(_, c)| *c != connection_id);
                        history_tx.send_modify(|h| {
                            if let Some(c) = h.iter_mut().find(|c| c.id == connection_id) {
                                c.closed = true;
                            }
                        });
                    }
                    SwarmEvent::Behaviour(PlainEvent::Ping(ping::Event {
                        connection,
                        result: Ok(_),
                        ..
                    })) => history_tx.send_modify(|h| {
                        if let Some(c) = h.iter_mut().find(|c| c.id == connection) {
                            c.pinged = true;
                        }
                    }),
                    _ => {}
                },
            }
            let _ = count_tx.send(swarm.network_info().connection_counters().num_established());
        }
    });
    PlainNode {
        peer,
        addr,
        dial,
        hang_up,
        established,
        history,
    }
}

fn dial_to(node: &Node) -> DialOpts {
    DialOpts::peer_id(node.peer)
        .addresses(vec![node.addr.clone()])
        .condition(PeerCondition::Always)
        .build()
}

/// Waits until the plain node reports `n` connections.
async fn plain_has(plain: &mut PlainNode, n: u32) {
    tokio::time::timeout(
        Duration::from_secs(20),
        plain.established.wait_for(|count| *count == n),
    )
    .await
    .expect("deadline")
    .expect("plain node alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_node_that_dials_us_twice_ends_with_one_connection() {
    init_tracing();
    let grace = Duration::from_millis(500);
    let mut node = Node::spawn(NodeConfig {
        manager: Config::default().with_duplicate_grace(grace),
        ..Default::default()
    })
    .await;
    let mut plain = plain_node().await;
    plain.dial.send(dial_to(&node)).expect("alive");
    plain.dial.send(dial_to(&node)).expect("alive");
    // The plain node never closes its second connection; as the listener we close the newer
    // one ourselves once the grace is over.
    let s = settled(&mut [&mut node], Duration::from_secs(20), |s| {
        s[0].established == 1
            && s[0]
                .events
                .iter()
                .any(|e| matches!(e, Event::DuplicateClosed { .. }))
    })
    .await
    .unwrap_or_else(|s| panic!("did not settle: {s:#?}"));
    assert_eq!(s[0].connections, vec![(plain.peer, 1)]);
    plain_has(&mut plain, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_node_dialing_us_while_we_dial_it_ends_with_one_connection() {
    init_tracing();
    for _ in 0..10 {
        let mut node = Node::spawn(NodeConfig::default()).await;
        let mut plain = plain_node().await;
        node.send(Command::ManagerDial(plain.peer, plain.addr.clone()));
        plain.dial.send(dial_to(&node)).expect("alive");
        // We close the loser of the tie-break (the plain node cannot), so both end with one.
        settled(&mut [&mut node], Duration::from_secs(20), |s| {
            s[0].established == 1
        })
        .await
        .unwrap_or_else(|s| panic!("did not settle: {s:#?}"));
        plain_has(&mut plain, 1).await;
        node.kill();
    }
}

/// The closed-backoff delay of the first redial, with its jitter (10 s, +-20%).
fn closed_backoff_first(delay: Duration) -> bool {
    (Duration::from_secs(8)..=Duration::from_secs(12)).contains(&delay)
}

fn closed_and_redial(s: &Snapshot, peer: PeerId) -> Option<(DisconnectReason, ClosedBy, Duration)> {
    let closed = s.events.iter().find_map(|e| match e {
        Event::Disconnected {
            peer: p,
            reason,
            closed_by,
            ..
        } if *p == peer => Some((*reason, *closed_by)),
        _ => None,
    })?;
    let delay = s.events.iter().find_map(|e| match e {
        Event::RedialScheduled { peer: p, delay, .. } if *p == peer => Some(*delay),
        _ => None,
    })?;
    Some((closed.0, closed.1, delay))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_node_that_hangs_up_in_order_is_not_a_timeout_and_is_not_redialed_at_once() {
    init_tracing();
    let mut node = Node::spawn(NodeConfig::default()).await;
    let mut plain = plain_node().await;
    node.send(Command::ManagerDial(plain.peer, plain.addr.clone()));
    plain_has(&mut plain, 1).await;
    plain.hang_up.send(node.peer).expect("alive");
    let s = wait_until(&mut [&mut node], Duration::from_secs(20), |s| {
        closed_and_redial(&s[0], plain.peer).is_some()
    })
    .await
    .unwrap_or_else(|s| panic!("no close and redial: {s:#?}"));
    let (reason, closed_by, delay) = closed_and_redial(&s[0], plain.peer).unwrap();
    println!(
        "a plain node hung up: the manager saw {reason} by {closed_by:?}, redial in {delay:?}"
    );
    assert_eq!(reason, DisconnectReason::Closed);
    assert_eq!(closed_by, ClosedBy::Remote);
    assert!(closed_backoff_first(delay), "{delay:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_nodes_second_connection_is_usable_before_the_duplicate_is_closed() {
    init_tracing();
    for _ in 0..5 {
        let node = Node::spawn(NodeConfig::default()).await;
        let mut plain = plain_node().await;
        node.send(Command::ManagerDial(plain.peer, plain.addr.clone()));
        plain_has(&mut plain, 1).await;
        // The plain node opens a second one (as js-libp2p does to ping an address without a
        // peer id) and pings on it at once. Whichever of the two loses the tie-break (it
        // depends on the peer ids), the new one must be usable before a duplicate is closed.
        plain.dial.send(dial_to(&node)).expect("alive");
        let history = tokio::time::timeout(
            Duration::from_secs(20),
            plain
                .history
                .wait_for(|h| h.len() >= 2 && (h[1].pinged || h[1].closed)),
        )
        .await
        .expect("deadline")
        .expect("plain node alive")
        .clone();
        println!("the plain node's connections: {history:?}");
        assert!(
            history[1].pinged,
            "the second connection was closed before its first ping: {history:?}"
        );
        // And still one connection at the end.
        plain_has(&mut plain, 1).await;
        node.kill();
    }
}
