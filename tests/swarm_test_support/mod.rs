//! Nodes for behaviour-level tests with libp2p-swarm-test: a swarm whose only behaviour is the
//! manager, on the memory transport (plaintext, yamux), as rust-libp2p's own crates test their
//! behaviours. The tests drive the swarms themselves and wait on their events, each wait with a
//! deadline that fails with every event seen.
//!
//! The memory transport has no IP addresses: the per-IP rules (IP bans, per-IP limits and
//! rates) are tested on TCP, as is the simultaneous-open race.

#![allow(dead_code)]

use std::time::Duration;

use futures::{future::select_all, FutureExt, StreamExt};
use libp2p::{
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        SwarmEvent,
    },
    Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager::{Behaviour, ClosedBy, Config, DisconnectReason, Event};
use libp2p_swarm_test::SwarmExt;

pub type Node = Swarm<Behaviour>;

/// How long any one wait may take: everything here happens in memory, in milliseconds.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How often [`run_until`] looks at the nodes' state between their events.
const RECHECK: Duration = Duration::from_millis(20);

/// A node with the manager configured by `config`.
pub fn node(config: Config) -> Node {
    Swarm::new_ephemeral_tokio(|key| Behaviour::new(key.public().to_peer_id(), config))
}

/// A node listening on a memory address (and, as swarm-test does, on TCP), the memory
/// address made external: what [`SwarmExt::connect`] and [`dial`] dial.
pub async fn listening(config: Config) -> Node {
    let mut node = node(config);
    node.listen().with_memory_addr_external().await;
    node
}

/// `node`'s memory address.
pub fn address(node: &Node) -> Multiaddr {
    node.external_addresses()
        .next()
        .cloned()
        .expect("the node listens with its memory address external")
}

/// Dials `to` from `from` through the swarm (a connection the application did not ask the
/// manager for), on `to`'s memory address, whatever connections exist already.
pub fn dial(from: &mut Node, to: &Node) {
    let opts = DialOpts::peer_id(*to.local_peer_id())
        .addresses(vec![address(to)])
        .condition(PeerCondition::Always)
        .build();
    from.dial(opts).expect("the dial starts");
}

/// Established connections on `node`'s swarm (the manager's books may differ while a
/// connection is being closed).
pub fn established(node: &Node) -> u32 {
    node.network_info().connection_counters().num_established()
}

/// The peer, reason and closing side of a `Disconnected` event.
pub fn disconnected(event: &Event) -> Option<(PeerId, DisconnectReason, ClosedBy)> {
    match event {
        Event::Disconnected {
            peer,
            reason,
            closed_by,
            ..
        } => Some((*peer, *reason, *closed_by)),
        _ => None,
    }
}

/// Polls every node until `found` picks an event of one of them (by its index in `nodes`),
/// or panics after [`DEADLINE`] with every event seen.
pub async fn wait_for<T>(
    nodes: &mut [&mut Node],
    what: &str,
    mut found: impl FnMut(usize, &SwarmEvent<Event>) -> Option<T>,
) -> T {
    let mut seen = Vec::new();
    let result = tokio::time::timeout(DEADLINE, async {
        loop {
            let (event, index) = next_event(nodes).await;
            if let Some(value) = found(index, &event) {
                return value;
            }
            seen.push(format!("node {index}: {event:?}"));
        }
    })
    .await;
    result.unwrap_or_else(|_| {
        panic!(
            "{what}: not within {DEADLINE:?}; events seen:\n{}",
            seen.join("\n")
        )
    })
}

/// [`wait_for`] an event of the manager.
pub async fn wait_for_event<T>(
    nodes: &mut [&mut Node],
    what: &str,
    mut found: impl FnMut(usize, &Event) -> Option<T>,
) -> T {
    wait_for(nodes, what, |index, event| match event {
        SwarmEvent::Behaviour(event) => found(index, event),
        _ => None,
    })
    .await
}

/// Polls every node until `done` holds over them (looked at after each of their events, and
/// every few milliseconds for what changes without one), or panics after [`DEADLINE`] with
/// every event seen.
pub async fn run_until(
    nodes: &mut [&mut Node],
    what: &str,
    done: impl FnMut(&[&mut Node]) -> bool,
) {
    run_until_seeing(nodes, what, |_, _| {}, done).await
}

/// [`run_until`], showing every event to `seen` first.
pub async fn run_until_seeing(
    nodes: &mut [&mut Node],
    what: &str,
    mut seen: impl FnMut(usize, &SwarmEvent<Event>),
    mut done: impl FnMut(&[&mut Node]) -> bool,
) {
    let mut log = Vec::new();
    let result = tokio::time::timeout(DEADLINE, async {
        while !done(nodes) {
            let recheck = tokio::time::sleep(RECHECK);
            futures::select! {
                (event, index) = next_event(nodes).fuse() => {
                    seen(index, &event);
                    log.push(format!("node {index}: {event:?}"));
                }
                () = recheck.fuse() => {}
            }
        }
    })
    .await;
    if result.is_err() {
        panic!(
            "{what}: not within {DEADLINE:?}; events seen:\n{}",
            log.join("\n")
        );
    }
}

/// The next event of any of `nodes`, with the node's index.
async fn next_event(nodes: &mut [&mut Node]) -> (SwarmEvent<Event>, usize) {
    let nexts = nodes.iter_mut().map(|node| node.select_next_some());
    let (event, index, _) = select_all(nexts).await;
    (event, index)
}
