//! The manager's own established limits (`max_established_incoming`, `_outbound`, `_total`) over
//! real swarms (TCP, noise, yamux): each limit filled, the next connection refused on both sides
//! with its typed reason, the goodbye `ResourceConstraint` and its retry-after read by the
//! remote, and no redial storm over a hold (the swarms' own dial counts).
//!
//! The refusing side reports `Event::Denied` with `Denial::Limit { kind, limit, current }`. An
//! inbound connection refused by an established limit is let through its handshake only to say
//! goodbye `ResourceConstraint` with a retry-after of 30 s (src/core/refusals.rs), so a remote
//! that wants the node comes back no sooner; a refused dial of our own waits in line
//! (`Event::WaitingForResources`) and is dialed when a slot frees, not before.

mod common;

use std::time::{Duration, Instant};

use common::*;
use libp2p::PeerId;
use libp2p_connection_manager::{
    ClosedBy, Config, Denial, DisconnectReason, Event, LimitKind, Limits,
};

/// What a remote refused by an established limit is asked to wait (written from the rule in
/// src/core/refusals.rs, not read from the code).
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How long the network must stay unchanged after a refusal: long enough for a redial on the
/// shortest backoff (1 s, jitter 20 %) or a prompt one (200 ms) to show twice over.
const STORM_HOLD: Duration = Duration::from_secs(3);

fn limit(kind: LimitKind, limit: u32) -> Denial {
    Denial::Limit {
        kind,
        limit,
        current: limit,
    }
}

/// The manager's refusals of `peer`.
fn denials_of(s: &Snapshot, peer: PeerId) -> Vec<Denial> {
    s.events
        .iter()
        .filter_map(|e| match e {
            Event::Denied {
                peer: Some(p),
                denial,
                ..
            } if *p == peer => Some(denial.clone()),
            _ => None,
        })
        .collect()
}

/// Goodbyes heard from `peer`: reason and retry-after.
fn goodbyes_from(s: &Snapshot, peer: PeerId) -> Vec<(DisconnectReason, Option<Duration>)> {
    s.events
        .iter()
        .filter_map(|e| match e {
            Event::GoodbyeReceived {
                peer: p,
                reason,
                retry_after,
                ..
            } if *p == peer => Some((*reason, *retry_after)),
            _ => None,
        })
        .collect()
}

fn disconnects_from(s: &Snapshot, peer: PeerId) -> Vec<(DisconnectReason, ClosedBy)> {
    s.events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnected {
                peer: p,
                reason,
                closed_by,
                ..
            } if *p == peer => Some((*reason, *closed_by)),
            _ => None,
        })
        .collect()
}

fn redials_of(s: &Snapshot, peer: PeerId) -> Vec<Duration> {
    s.events
        .iter()
        .filter_map(|e| match e {
            Event::RedialScheduled { peer: p, delay, .. } if *p == peer => Some(*delay),
            _ => None,
        })
        .collect()
}

fn waiting_for(s: &Snapshot, peer: PeerId) -> Vec<Denial> {
    s.events
        .iter()
        .filter_map(|e| match e {
            Event::WaitingForResources { peer: p, denial } if *p == peer => Some(denial.clone()),
            _ => None,
        })
        .collect()
}

fn with_limits(limits: Limits) -> NodeConfig {
    NodeConfig {
        manager: Config::default().with_limits(limits),
        ..Default::default()
    }
}

async fn spawn_many(n: usize) -> Vec<Node> {
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        nodes.push(Node::spawn(NodeConfig::default()).await);
    }
    nodes
}

/// The remote's side of an inbound refusal: goodbye `ResourceConstraint` with the retry-after,
/// the connection closed by the refusing side for that reason, and one redial planned no sooner
/// than the retry-after.
fn assert_told_to_come_back_later(s: &Snapshot, refusing: PeerId) {
    assert_eq!(
        goodbyes_from(s, refusing),
        vec![(DisconnectReason::ResourceConstraint, Some(RETRY_AFTER))],
        "{:#?}",
        s.events
    );
    assert_eq!(
        disconnects_from(s, refusing),
        vec![(DisconnectReason::ResourceConstraint, ClosedBy::Remote)],
        "{:#?}",
        s.events
    );
    let redials = redials_of(s, refusing);
    assert!(
        redials.len() == 1 && redials[0] >= RETRY_AFTER,
        "one redial, after the retry-after: {redials:?}"
    );
    assert_eq!(s.dials, 1, "the refused remote dialed once");
    assert_eq!(s.established, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_established_inbound_limit_refuses_the_next_peers_with_goodbye_resource_constraint()
{
    init_tracing();
    const LIMIT: u32 = 3;
    let mut hub = Node::spawn(with_limits(
        Limits::new().with_max_established_incoming(Some(LIMIT)),
    ))
    .await;
    let mut leaves = spawn_many(LIMIT as usize).await;
    for leaf in &leaves {
        leaf.send(Command::ManagerDial(hub.peer, hub.addr.clone()));
    }
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut hub).chain(leaves.iter_mut()).collect();
    settled(&mut nodes, Duration::from_secs(30), |s| {
        s[0].established == LIMIT && s[1..].iter().all(|s| s.established == 1)
    })
    .await
    .unwrap_or_else(|s| panic!("the limit did not fill: {s:#?}"));

    // Two more peers want the hub: each is refused once, hears why, and waits the retry-after.
    let mut refused = spawn_many(2).await;
    for peer in &refused {
        peer.send(Command::ManagerDial(hub.peer, hub.addr.clone()));
    }
    let refused_peers: Vec<PeerId> = refused.iter().map(|n| n.peer).collect();
    let leaf_peers: Vec<PeerId> = leaves.iter().map(|n| n.peer).collect();
    let hub_peer = hub.peer;
    let refused_at = Instant::now();
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut hub)
        .chain(leaves.iter_mut())
        .chain(refused.iter_mut())
        .collect();
    // Settled: the refusals done and heard, then nothing changes over the hold (no redial).
    let s = settled_for(&mut nodes, Duration::from_secs(30), STORM_HOLD, |s| {
        s[0].established == LIMIT
            && refused_peers
                .iter()
                .all(|p| !denials_of(&s[0], *p).is_empty())
            && s[1 + LIMIT as usize..].iter().all(|s| {
                s.established == 0
                    && !goodbyes_from(s, hub_peer).is_empty()
                    && !redials_of(s, hub_peer).is_empty()
            })
    })
    .await
    .unwrap_or_else(|s| panic!("not refused and settled: {s:#?}"));
    println!(
        "inbound limit {LIMIT}: 2 peers refused, settled {:?} after their dials (hold {STORM_HOLD:?})",
        refused_at.elapsed()
    );

    let hub_state = &s[0];
    for peer in &refused_peers {
        assert_eq!(
            denials_of(hub_state, *peer),
            vec![limit(LimitKind::EstablishedIncoming, LIMIT)],
            "the hub refused each once, naming the limit"
        );
    }
    for remote in &s[1 + LIMIT as usize..] {
        assert_told_to_come_back_later(remote, hub_peer);
    }
    // The hub: the limit's worth of connections on the swarm and in its books, two refused
    // connections seen and none since; the peers it kept were not disturbed.
    assert_eq!(hub_state.connections.len(), LIMIT as usize);
    assert!(hub_state.connections.iter().all(|(_, n)| *n == 1));
    assert_eq!(hub_state.manager_established, LIMIT as usize);
    assert_eq!(hub_state.incoming, LIMIT as usize + 2);
    assert_eq!(hub_state.dials, 0);
    for (leaf, peer) in s[1..=LIMIT as usize].iter().zip(&leaf_peers) {
        assert_eq!(leaf.connections_to(&hub_peer), 1, "leaf {peer}");
        assert!(disconnects_from(leaf, hub_peer).is_empty(), "leaf {peer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_established_outbound_limit_refuses_our_next_dial_which_waits_for_a_slot() {
    init_tracing();
    const LIMIT: u32 = 2;
    let mut node = Node::spawn(with_limits(
        Limits::new().with_max_established_outgoing(Some(LIMIT)),
    ))
    .await;
    let mut remotes = spawn_many(LIMIT as usize + 1).await;
    for remote in &remotes[..LIMIT as usize] {
        node.send(Command::ManagerDial(remote.peer, remote.addr.clone()));
    }
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut node)
        .chain(remotes.iter_mut())
        .collect();
    settled(&mut nodes, Duration::from_secs(30), |s| {
        s[0].established == LIMIT && s[1..=LIMIT as usize].iter().all(|s| s.established == 1)
    })
    .await
    .unwrap_or_else(|s| panic!("the limit did not fill: {s:#?}"));

    // One more: the handshake completes, and our own limit refuses the connection.
    let (last, last_addr) = (
        remotes[LIMIT as usize].peer,
        remotes[LIMIT as usize].addr.clone(),
    );
    node.send(Command::ManagerDial(last, last_addr));
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut node)
        .chain(remotes.iter_mut())
        .collect();
    let s = settled_for(&mut nodes, Duration::from_secs(30), STORM_HOLD, |s| {
        s[0].established == LIMIT && !waiting_for(&s[0], last).is_empty()
    })
    .await
    .unwrap_or_else(|s| panic!("not refused and settled: {s:#?}"));
    let refused = limit(LimitKind::EstablishedOutgoing, LIMIT);
    assert_eq!(denials_of(&s[0], last), vec![refused.clone()]);
    assert_eq!(waiting_for(&s[0], last), vec![refused]);
    // Waiting is not redialing: one dial per remote, nothing scheduled.
    assert_eq!(s[0].dials, LIMIT as usize + 1, "{:#?}", s[0].events);
    assert!(redials_of(&s[0], last).is_empty(), "{:#?}", s[0].events);
    let info = node
        .query(move |swarm| swarm.behaviour().manager.peer_info(&last))
        .await
        .expect("the refused peer is remembered");
    assert!(info.waiting_for_resources && info.wanted && info.next_redial.is_none());
    // The refused remote: a connection came and went (no goodbye: an outbound refusal happens
    // before a handler exists); it dials nothing and plans nothing.
    let remote = &s[1 + LIMIT as usize];
    println!(
        "outbound limit {LIMIT}: the refused remote saw {:?} (swarm peak {}), {} dials",
        remote.events, remote.max_established, remote.dials
    );
    assert_eq!(remote.established, 0);
    assert_eq!(remote.dials, 0);
    assert!(redials_of(remote, node.peer).is_empty());
    assert!(goodbyes_from(remote, node.peer).is_empty());

    // A slot frees: the waiting peer is dialed (once) and gets in.
    let first = remotes[0].peer;
    node.send(Command::Disconnect(first));
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut node)
        .chain(remotes.iter_mut())
        .collect();
    let s = settled(&mut nodes, Duration::from_secs(30), |s| {
        s[0].established == LIMIT && s[0].connections_to(&last) == 1
    })
    .await
    .unwrap_or_else(|s| panic!("the waiting peer did not get the freed slot: {s:#?}"));
    assert_eq!(s[0].connections_to(&first), 0);
    assert_eq!(s[0].dials, LIMIT as usize + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_established_total_limit_refuses_both_directions() {
    init_tracing();
    const LIMIT: u32 = 3;
    let mut node = Node::spawn(with_limits(Limits::new().with_max_established(Some(LIMIT)))).await;
    // One outbound, two inbound: the total is full, neither directional limit is.
    let mut out = spawn_many(2).await;
    let mut inbound = spawn_many(3).await;
    node.send(Command::ManagerDial(out[0].peer, out[0].addr.clone()));
    for remote in &inbound[..2] {
        remote.send(Command::ManagerDial(node.peer, node.addr.clone()));
    }
    let node_peer = node.peer;
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut node)
        .chain(out.iter_mut())
        .chain(inbound.iter_mut())
        .collect();
    settled(&mut nodes, Duration::from_secs(30), |s| {
        s[0].established == LIMIT
    })
    .await
    .unwrap_or_else(|s| panic!("the limit did not fill: {s:#?}"));

    // The next inbound peer and our next dial are both refused by the total. (Indices in the
    // snapshots: the node, then `out`, then `inbound`.)
    const LATE_OUT: usize = 2;
    const LATE_IN: usize = 5;
    let (late_in, late_out) = (inbound[2].peer, out[1].peer);
    inbound[2].send(Command::ManagerDial(node_peer, node.addr.clone()));
    node.send(Command::ManagerDial(late_out, out[1].addr.clone()));
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut node)
        .chain(out.iter_mut())
        .chain(inbound.iter_mut())
        .collect();
    let s = settled_for(&mut nodes, Duration::from_secs(30), STORM_HOLD, |s| {
        s[0].established == LIMIT
            && !waiting_for(&s[0], late_out).is_empty()
            && !redials_of(&s[LATE_IN], node_peer).is_empty()
    })
    .await
    .unwrap_or_else(|s| panic!("not refused and settled: {s:#?}"));
    let refused = limit(LimitKind::Established, LIMIT);
    assert_eq!(denials_of(&s[0], late_in), vec![refused.clone()]);
    assert_told_to_come_back_later(&s[LATE_IN], node_peer);
    assert_eq!(denials_of(&s[0], late_out), vec![refused.clone()]);
    assert_eq!(waiting_for(&s[0], late_out), vec![refused]);
    assert_eq!(s[0].dials, 2, "one dial each, no redial");
    assert_eq!(s[0].incoming, 3);
    assert_eq!(s[LATE_OUT].dials, 0);
    assert_eq!(s[LATE_OUT].established, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_limits_refuse_the_257th_inbound_peer() {
    init_tracing();
    // The default: 256 established inbound connections (README, "Bounded by default").
    // Watermarks off, so that no trim interferes if filling takes longer than the trim grace.
    const DEFAULT: u32 = 256;
    let mut hub = Node::spawn(NodeConfig {
        manager: Config::default().without_watermarks(),
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let mut leaves = spawn_many(DEFAULT as usize + 1).await;
    let spawned = started.elapsed();
    let hub_peer = hub.peer;
    // In waves, so that the pending-inbound limit (also 256) is never what refuses.
    for wave in leaves[..DEFAULT as usize].chunks(64) {
        for leaf in wave {
            leaf.send(Command::ManagerDial(hub_peer, hub.addr.clone()));
        }
        let expected = hub.snapshot().established + wave.len() as u32;
        wait_until(&mut [&mut hub], Duration::from_secs(60), |s| {
            s[0].established == expected && s[0].manager_established == expected as usize
        })
        .await
        .unwrap_or_else(|s| panic!("wave did not get in: {}", s[0].established));
    }
    let filled = started.elapsed();
    let last = leaves.pop().expect("the 257th");
    let last_peer = last.peer;
    last.send(Command::ManagerDial(hub_peer, hub.addr.clone()));
    let mut last = last;
    let s = settled_for(
        &mut [&mut hub, &mut last],
        Duration::from_secs(30),
        STORM_HOLD,
        |s| !redials_of(&s[1], hub_peer).is_empty(),
    )
    .await
    .unwrap_or_else(|s| panic!("not refused and settled: {s:#?}"));
    println!(
        "{DEFAULT} inbound peers: spawned in {spawned:?}, connected in {:?}, the next refused and settled {:?} later",
        filled - spawned,
        started.elapsed() - filled
    );
    assert_eq!(
        denials_of(&s[0], last_peer),
        vec![limit(LimitKind::EstablishedIncoming, DEFAULT)]
    );
    assert_told_to_come_back_later(&s[1], hub_peer);
    assert_eq!(s[0].established, DEFAULT);
    assert_eq!(s[0].connections.len(), DEFAULT as usize);
    assert_eq!(s[0].incoming, DEFAULT as usize + 1);
}

/// The closed backoff's first delay with its jitter (README: 10 s; jitter 20 %).
fn closed_backoff_first(delay: Duration) -> bool {
    (Duration::from_secs(8)..=Duration::from_secs(12)).contains(&delay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_the_goodbye_cap_is_refused_without_a_redial_storm() {
    init_tracing();
    // At most 8 refused connections say goodbye at a time (README); past that a refusal is
    // silent, and the remote only sees the connection closed in order (`Closed`), which it
    // redials on the closed backoff, never promptly. 24 peers at once against a full limit.
    const BURST: usize = 24;
    const GOODBYE_CAP: u32 = 8;
    let mut hub = Node::spawn(with_limits(
        Limits::new().with_max_established_incoming(Some(1)),
    ))
    .await;
    let mut first = Node::spawn(NodeConfig::default()).await;
    first.send(Command::ManagerDial(hub.peer, hub.addr.clone()));
    settled(&mut [&mut hub, &mut first], Duration::from_secs(30), |s| {
        s[0].established == 1
    })
    .await
    .unwrap_or_else(|s| panic!("the limit did not fill: {s:#?}"));
    let mut burst = spawn_many(BURST).await;
    let hub_peer = hub.peer;
    let started = Instant::now();
    for node in &burst {
        node.send(Command::ManagerDial(hub_peer, hub.addr.clone()));
    }
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut hub).chain(burst.iter_mut()).collect();
    // First round: every peer refused once and planning its next dial, nothing more over the
    // hold.
    let s = settled_for(&mut nodes, Duration::from_secs(30), STORM_HOLD, |s| {
        s[1..].iter().all(|s| !redials_of(s, hub_peer).is_empty())
    })
    .await
    .unwrap_or_else(|s| panic!("the burst was not refused: {s:#?}"));
    let told = s[1..]
        .iter()
        .filter(|s| !goodbyes_from(s, hub_peer).is_empty())
        .count();
    println!(
        "first round, {:?}: {told} of {BURST} told to come back in 30 s, the others closed \
         silently; the hub peaked at {} connections",
        started.elapsed(),
        s[0].max_established
    );
    assert!(told >= 1, "some hear why");
    assert!(
        s[0].max_established <= 1 + GOODBYE_CAP,
        "at most {GOODBYE_CAP} refused connections held for their goodbye: {}",
        s[0].max_established
    );
    assert_eq!(s[0].incoming, 1 + BURST);
    assert_eq!(s[0].established, 1);
    for remote in &s[1..] {
        assert_eq!(remote.dials, 1, "{:#?}", remote.events);
        assert_eq!(remote.established, 0);
        let redials = redials_of(remote, hub_peer);
        if goodbyes_from(remote, hub_peer).is_empty() {
            assert_eq!(
                disconnects_from(remote, hub_peer),
                vec![(DisconnectReason::Closed, ClosedBy::Remote)]
            );
            assert!(
                redials.len() == 1 && closed_backoff_first(redials[0]),
                "{redials:?}"
            );
        } else {
            assert_told_to_come_back_later(remote, hub_peer);
        }
    }

    // Second round: the silently refused come back one by one on their backoff, are refused
    // again, now with a goodbye, and wait the retry-after. Nobody dials a third time.
    let s = settled_for(&mut nodes, Duration::from_secs(40), STORM_HOLD, |s| {
        s[1..].iter().all(|s| {
            s.events.iter().any(|e| {
                matches!(
                    e,
                    Event::RedialScheduled { delay, .. } if *delay >= RETRY_AFTER
                )
            })
        })
    })
    .await
    .unwrap_or_else(|s| panic!("the burst did not end up told: {s:#?}"));
    let dials: usize = s[1..].iter().map(|s| s.dials).sum();
    println!(
        "second round, {:?}: every peer told; {dials} dials by {BURST} peers in all",
        started.elapsed()
    );
    for remote in &s[1..] {
        assert!(remote.dials <= 2, "{:#?}", remote.events);
        assert_eq!(remote.established, 0);
    }
    assert_eq!(s[0].incoming, 1 + dials);
    assert_eq!(s[0].established, 1);
}
