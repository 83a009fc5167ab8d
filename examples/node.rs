//! A libp2p node with the connection manager, in two modes.
//!
//! **Cluster demo** (no arguments, or `--cluster N`): starts N nodes (8 by default) in this one
//! process on 127.0.0.1, each a swarm in its own task. Every node dials every other at once with
//! plain `Swarm::dial` and default options: the harsh case, simultaneous dials from the
//! listening port (TCP port reuse). The demo waits until every pair of nodes has exactly one
//! connection and nothing is in flight, has node 0 `disconnect` node 1 (node 1 receives a
//! goodbye), prints a summary, and exits 0 only if every pair converged to one connection and
//! the goodbye arrived.
//!
//! ```text
//! cargo run --example node
//! cargo run --example node -- --cluster 16
//! ```
//!
//! **Long-lived node** (`--listen` and/or `--dial`): one node that prints its peer id, its
//! listen addresses and every event of the manager, one line each. A `--dial` address ending in
//! `/p2p/<peer id>` goes through the manager's `dial`: the peer is kept and redialed when lost.
//! Without `/p2p` the address is dialed once with `Swarm::dial`. Ctrl-C says goodbye to every
//! peer (`shutdown`), waits up to 3 s for the connections to close, and exits.
//!
//! ```text
//! cargo run --example node -- --listen /ip4/127.0.0.1/tcp/4001
//! cargo run --example node -- --dial /ip4/127.0.0.1/tcp/4001/p2p/<peer id of the first>
//! ```
//!
//! Logs go to stderr, filtered by `RUST_LOG` (default `warn`).

use std::{
    collections::{HashMap, HashSet},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use libp2p::{
    futures::{FutureExt, StreamExt},
    identify,
    multiaddr::Protocol,
    noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager::{self as manager, Event};
use tokio::{
    sync::mpsc,
    time::{timeout, timeout_at, Instant},
};
use tracing_subscriber::EnvFilter;

/// Nodes in the cluster demo when `--cluster` is not given.
const DEFAULT_CLUSTER_SIZE: u16 = 8;
/// How long the cluster may take to reach one connection per pair.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(20);
/// How long the goodbye from node 0 to node 1 may take to arrive and settle.
const GOODBYE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a long-lived node waits for its connections to close after Ctrl-C.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

/// A libp2p node with the connection manager: a local cluster demo, or one long-lived node.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Run the cluster demo with N nodes, 2 to 32 (without any argument it runs with 8).
    ///
    /// Beyond about 20 nodes a debug build on a small machine is CPU-bound: handshakes can
    /// exceed libp2p's 10 s upgrade timeout.
    #[arg(long, value_name = "N", conflicts_with_all = ["listen", "dial"],
          value_parser = clap::value_parser!(u16).range(2..=32))]
    cluster: Option<u16>,
    /// Run one long-lived node listening on this address [default: /ip4/127.0.0.1/tcp/0].
    #[arg(long, value_name = "MULTIADDR")]
    listen: Option<Multiaddr>,
    /// Dial this address (repeatable). With /p2p/<peer id> the manager keeps the peer.
    #[arg(long, value_name = "MULTIADDR")]
    dial: Vec<Multiaddr>,
}

/// The manager first, so that its refusals run before identify spends work on a connection.
/// No `ping::Behaviour`: the manager runs ping on every connection itself.
#[derive(NetworkBehaviour)]
struct NodeBehaviour {
    manager: manager::Behaviour,
    identify: identify::Behaviour,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    init_tracing();
    let args = Args::parse();
    if args.listen.is_none() && args.dial.is_empty() {
        let size = args.cluster.unwrap_or(DEFAULT_CLUSTER_SIZE);
        return run_cluster_demo(usize::from(size)).await;
    }
    let listen = match args.listen {
        Some(address) => address,
        None => "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
    };
    run_long_lived_node(listen, args.dial).await?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A swarm on TCP with noise and yamux, with a fresh identity and a default manager.
fn build_swarm() -> Swarm<NodeBehaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("TCP transport with noise and yamux")
        .with_behaviour(|key| NodeBehaviour {
            manager: manager::Behaviour::new(key.public().to_peer_id(), manager::Config::default()),
            identify: identify::Behaviour::new(identify::Config::new(
                "/connection-manager-example/1.0.0".into(),
                key.public(),
            )),
        })
        .expect("behaviour")
        .build()
}

// ---- Long-lived node ----------------------------------------------------------------------

async fn run_long_lived_node(listen: Multiaddr, dials: Vec<Multiaddr>) -> anyhow::Result<()> {
    let mut swarm = build_swarm();
    let local = *swarm.local_peer_id();
    println!("peer id: {local}");
    swarm
        .listen_on(listen.clone())
        .with_context(|| format!("cannot listen on {listen}"))?;
    for address in dials {
        dial_address(&mut swarm, address);
    }

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            result = &mut ctrl_c => {
                result.context("cannot listen for Ctrl-C")?;
                break;
            }
            event = swarm.select_next_some() => print_swarm_event(&local, event),
        }
    }

    let peers = swarm.network_info().num_peers();
    println!("Ctrl-C: shutting down, saying goodbye to {peers} peer(s)");
    swarm.behaviour_mut().manager.shutdown();
    match timeout(SHUTDOWN_DRAIN, drain_connections(&mut swarm)).await {
        Ok(()) => println!("all connections closed; bye"),
        Err(_) => println!(
            "{} connection(s) still open after {SHUTDOWN_DRAIN:?}; exiting anyway",
            swarm.network_info().connection_counters().num_established()
        ),
    }
    Ok(())
}

/// Dials through the manager when the address names the peer, with `Swarm::dial` otherwise.
fn dial_address(swarm: &mut Swarm<NodeBehaviour>, address: Multiaddr) {
    let mut transport_address = address.clone();
    match transport_address.pop() {
        Some(Protocol::P2p(peer)) => {
            match swarm
                .behaviour_mut()
                .manager
                .dial(peer, vec![transport_address])
            {
                Ok(()) => println!("dialing {address} (kept by the manager)"),
                Err(denial) => println!("not dialing {address}: {denial}"),
            }
        }
        _ => match swarm.dial(address.clone()) {
            Ok(()) => println!("dialing {address} (once, no peer id)"),
            Err(error) => println!("cannot dial {address}: {error}"),
        },
    }
}

/// Polls the swarm until it has no connection left, then prints the events already due (the
/// manager reports the last `Disconnected` just after the swarm closed the connection).
async fn drain_connections(swarm: &mut Swarm<NodeBehaviour>) {
    let local = *swarm.local_peer_id();
    while swarm.network_info().num_peers() > 0 {
        let event = swarm.select_next_some().await;
        print_swarm_event(&local, event);
    }
    while let Some(event) = swarm.next().now_or_never().flatten() {
        print_swarm_event(&local, event);
    }
}

fn print_swarm_event(local: &PeerId, event: SwarmEvent<NodeBehaviourEvent>) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            println!("listening on {}", address.with(Protocol::P2p(*local)));
        }
        SwarmEvent::ExpiredListenAddr { address, .. } => {
            println!("no longer listening on {address}");
        }
        SwarmEvent::ListenerError { error, .. } => println!("listener error: {error}"),
        SwarmEvent::Behaviour(NodeBehaviourEvent::Manager(event)) => {
            println!("manager: {}", describe(&event));
        }
        _ => {}
    }
}

/// One readable line for an event of the manager.
fn describe(event: &Event) -> String {
    match event {
        Event::ConnectionKept {
            peer,
            connection,
            initiator,
            ..
        } => format!("kept connection {connection} with {peer} ({initiator})"),
        Event::DuplicateClosed { peer, kept, closed } => {
            format!("closed duplicate connection {closed} with {peer}; {kept} is kept")
        }
        Event::Disconnected {
            peer,
            connection,
            reason,
            closed_by,
            remaining,
        } => {
            format!("connection {connection} with {peer} {closed_by}: {reason} ({remaining} left)")
        }
        Event::GoodbyeReceived {
            peer,
            connection,
            reason,
            retry_after,
        } => match retry_after {
            Some(delay) => format!(
                "goodbye from {peer} on connection {connection}: {reason}, retry after {delay:?}"
            ),
            None => format!("goodbye from {peer} on connection {connection}: {reason}"),
        },
        Event::Denied {
            peer,
            connection,
            denial,
        } => match peer {
            Some(peer) => format!("refused connection {connection} with {peer}: {denial}"),
            None => format!("refused connection {connection}: {denial}"),
        },
        Event::DialFailed {
            peer,
            connection,
            cause,
        } => {
            let target = peer.map_or_else(|| "an unknown peer".to_owned(), |p| p.to_string());
            format!("dial {connection} to {target} failed: {cause}")
        }
        Event::RedialScheduled {
            peer,
            delay,
            attempt,
        } => format!("redialing {peer} in {delay:.0?} (attempt {attempt})"),
        Event::RedialGaveUp { peer, attempts } => {
            format!("gave up redialing {peer} after {attempts} attempts")
        }
        Event::PhaseChanged { old, new } => format!("phase {old} -> {new}"),
        other => format!("{other:?}"),
    }
}

// ---- Cluster demo -------------------------------------------------------------------------

/// What the demo asks a cluster node to do.
enum Command {
    /// `Swarm::dial` each address, default options.
    DialAll(Vec<Multiaddr>),
    /// The manager's `disconnect`.
    Disconnect(PeerId),
}

/// What a cluster node reports to the demo.
enum Report {
    Status { node: usize, status: Status },
    Event { node: usize, event: Event },
}

/// A cluster node's state after its latest event.
#[derive(Debug, Clone, Default, PartialEq)]
struct Status {
    /// Established connections per peer, as the swarm counts them.
    connections: HashMap<PeerId, u32>,
    /// Connections the swarm is dialing or negotiating.
    pending: u32,
    /// Work the manager still has in flight: dials it tracks and deadlines it has scheduled
    /// (redials, goodbyes, duplicate grace periods).
    manager_busy: usize,
}

impl Status {
    fn is_quiet(&self) -> bool {
        self.pending == 0 && self.manager_busy == 0
    }
}

/// The demo's handle on one node running in its own task.
struct ClusterNode {
    peer: PeerId,
    address: Multiaddr,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl ClusterNode {
    fn send(&self, command: Command) {
        self.commands
            .send(command)
            .expect("cluster node task alive");
    }

    fn p2p_address(&self) -> Multiaddr {
        self.address.clone().with(Protocol::P2p(self.peer))
    }
}

/// Connections per pair of nodes, counted into buckets.
#[derive(Debug, Clone, Copy, Default)]
struct PairCounts {
    connections: u32,
    none: usize,
    one: usize,
    several: usize,
}

/// The demo's view of the cluster: the nodes, their latest status and every manager event.
struct Cluster {
    nodes: Vec<ClusterNode>,
    reports: mpsc::UnboundedReceiver<Report>,
    statuses: Vec<Status>,
    events: Vec<(usize, Event)>,
}

impl Cluster {
    async fn start(size: usize) -> anyhow::Result<Self> {
        let (report_tx, reports) = mpsc::unbounded_channel();
        let mut nodes = Vec::with_capacity(size);
        for index in 0..size {
            nodes.push(spawn_cluster_node(index, report_tx.clone()).await?);
        }
        Ok(Self {
            nodes,
            reports,
            statuses: vec![Status::default(); size],
            events: Vec::new(),
        })
    }

    fn dial_everyone_at_once(&self) {
        for node in &self.nodes {
            let others = self
                .nodes
                .iter()
                .filter(|other| other.peer != node.peer)
                .map(ClusterNode::p2p_address)
                .collect();
            node.send(Command::DialAll(others));
        }
    }

    /// Applies the nodes' reports until `condition` holds (true) or `limit` passed (false).
    async fn wait_until(&mut self, limit: Duration, condition: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !condition(self) {
            match timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(report)) => self.apply(report),
                Ok(None) | Err(_) => return false,
            }
        }
        true
    }

    fn apply(&mut self, report: Report) {
        match report {
            Report::Status { node, status } => self.statuses[node] = status,
            Report::Event { node, event } => self.events.push((node, event)),
        }
    }

    /// Connections between nodes `a` and `b` as each side's swarm counts them.
    fn views(&self, a: usize, b: usize) -> (u32, u32) {
        let count = |from: usize, to: usize| {
            let peer = self.nodes[to].peer;
            self.statuses[from]
                .connections
                .get(&peer)
                .copied()
                .unwrap_or(0)
        };
        (count(a, b), count(b, a))
    }

    fn pairs(&self) -> impl Iterator<Item = (usize, usize)> {
        let size = self.nodes.len();
        (0..size).flat_map(move |a| (a + 1..size).map(move |b| (a, b)))
    }

    fn is_quiet(&self) -> bool {
        self.statuses.iter().all(Status::is_quiet)
    }

    /// Every pair has, by both sides' count, the connections `expected` says, and nothing is
    /// in flight anywhere.
    fn is_settled(&self, expected: impl Fn(usize, usize) -> u32) -> bool {
        self.is_quiet()
            && self.pairs().all(|(a, b)| {
                let want = expected(a, b);
                self.views(a, b) == (want, want)
            })
    }

    fn pair_counts(&self) -> PairCounts {
        let mut counts = PairCounts::default();
        for (a, b) in self.pairs() {
            let (seen_by_a, seen_by_b) = self.views(a, b);
            let connections = seen_by_a.max(seen_by_b);
            counts.connections += connections;
            match connections {
                0 => counts.none += 1,
                1 => counts.one += 1,
                _ => counts.several += 1,
            }
        }
        counts
    }

    fn goodbye_received(&self, by: usize, from: usize, reason: manager::DisconnectReason) -> bool {
        let from_peer = self.nodes[from].peer;
        self.events.iter().any(|(node, event)| {
            *node == by
                && matches!(event, Event::GoodbyeReceived { peer, reason: r, .. }
                    if *peer == from_peer && *r == reason)
        })
    }

    fn count_events(&self, predicate: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| predicate(e)).count()
    }

    /// Pairs where either end reported closing a duplicate (both ends usually do).
    fn pairs_with_duplicates(&self) -> usize {
        let mut pairs = HashSet::new();
        for (node, event) in &self.events {
            if let Event::DuplicateClosed { peer, .. } = event {
                if let Some(other) = self.index_of(peer) {
                    pairs.insert((*node.min(&other), *node.max(&other)));
                }
            }
        }
        pairs.len()
    }

    /// The received goodbyes counted by reason, such as "6 duplicate connection, 1 normal close".
    fn goodbye_reasons(&self) -> String {
        let mut counts: Vec<(manager::DisconnectReason, usize)> = Vec::new();
        for (_, event) in &self.events {
            if let Event::GoodbyeReceived { reason, .. } = event {
                match counts.iter_mut().find(|(r, _)| r == reason) {
                    Some((_, count)) => *count += 1,
                    None => counts.push((*reason, 1)),
                }
            }
        }
        let parts: Vec<String> = counts
            .iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        parts.join(", ")
    }

    fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.nodes.iter().position(|node| node.peer == *peer)
    }

    /// One line per pair or node that is not as `expected` wants it.
    fn problems(&self, expected: impl Fn(usize, usize) -> u32) -> Vec<String> {
        let mut problems: Vec<String> = self
            .pairs()
            .filter_map(|(a, b)| {
                let want = expected(a, b);
                let (seen_by_a, seen_by_b) = self.views(a, b);
                (seen_by_a != want || seen_by_b != want).then(|| {
                    format!(
                        "nodes {a} and {b}: expected {want} connection(s), \
                         node {a} has {seen_by_a}, node {b} has {seen_by_b}"
                    )
                })
            })
            .collect();
        for (index, status) in self.statuses.iter().enumerate() {
            if !status.is_quiet() {
                problems.push(format!(
                    "node {index}: still busy ({} pending in the swarm, {} in the manager)",
                    status.pending, status.manager_busy
                ));
            }
        }
        problems
    }

    /// Stops every node task (their swarms and connections are dropped).
    async fn stop(self) {
        for node in self.nodes {
            drop(node.commands);
            let _ = node.task.await;
        }
    }
}

/// Builds a node, waits for its listen address, and runs it in its own task.
async fn spawn_cluster_node(
    index: usize,
    reports: mpsc::UnboundedSender<Report>,
) -> anyhow::Result<ClusterNode> {
    let mut swarm = build_swarm();
    let peer = *swarm.local_peer_id();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"))
        .context("cannot listen on 127.0.0.1")?;
    let address = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let (commands, command_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_cluster_node(index, swarm, command_rx, reports));
    Ok(ClusterNode {
        peer,
        address,
        commands,
        task,
    })
}

/// Drives one cluster node until the demo drops its command sender, reporting every manager
/// event and every change of its status.
async fn run_cluster_node(
    index: usize,
    mut swarm: Swarm<NodeBehaviour>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let mut connections: HashMap<PeerId, u32> = HashMap::new();
    let mut last_status = None;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => run_command(&mut swarm, command),
                None => return,
            },
            event = swarm.select_next_some() => {
                let manager_event = count_connections(&mut connections, event);
                if let Some(event) = manager_event {
                    if reports.send(Report::Event { node: index, event }).is_err() {
                        return;
                    }
                }
            }
        }
        let status = cluster_node_status(&swarm, &connections);
        if last_status.as_ref() != Some(&status) {
            last_status = Some(status.clone());
            if reports
                .send(Report::Status {
                    node: index,
                    status,
                })
                .is_err()
            {
                return;
            }
        }
    }
}

/// Keeps the per-peer connection counts of the swarm; returns the event if it is the manager's.
fn count_connections(
    connections: &mut HashMap<PeerId, u32>,
    event: SwarmEvent<NodeBehaviourEvent>,
) -> Option<Event> {
    match event {
        SwarmEvent::ConnectionEstablished {
            peer_id,
            num_established,
            ..
        } => {
            connections.insert(peer_id, num_established.get());
            None
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established: 0,
            ..
        } => {
            connections.remove(&peer_id);
            None
        }
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established,
            ..
        } => {
            connections.insert(peer_id, num_established);
            None
        }
        SwarmEvent::Behaviour(NodeBehaviourEvent::Manager(event)) => Some(event),
        _ => None,
    }
}

fn run_command(swarm: &mut Swarm<NodeBehaviour>, command: Command) {
    match command {
        Command::DialAll(addresses) => {
            for address in addresses {
                if let Err(error) = swarm.dial(address.clone()) {
                    tracing::warn!(%address, %error, "dial refused");
                }
            }
        }
        Command::Disconnect(peer) => {
            swarm.behaviour_mut().manager.disconnect(peer);
        }
    }
}

fn cluster_node_status(swarm: &Swarm<NodeBehaviour>, connections: &HashMap<PeerId, u32>) -> Status {
    let manager = swarm.behaviour().manager.manager();
    Status {
        connections: connections.clone(),
        pending: swarm.network_info().connection_counters().num_pending(),
        manager_busy: manager.pending_connections() + manager.scheduled_timers(),
    }
}

async fn run_cluster_demo(size: usize) -> anyhow::Result<ExitCode> {
    let pairs = size * (size - 1) / 2;
    println!(
        "cluster demo: {size} nodes on 127.0.0.1, each dialing the {} others at once",
        size - 1
    );
    println!("  (Swarm::dial with default options: simultaneous dials with TCP port reuse)");
    let mut cluster = Cluster::start(size).await?;
    println!("  {size} nodes listening");

    let started = Instant::now();
    cluster.dial_everyone_at_once();
    let one_per_pair = |_: usize, _: usize| 1;
    let converged = cluster
        .wait_until(CONVERGE_DEADLINE, |c| c.is_settled(one_per_pair))
        .await;
    let converge_time = started.elapsed();
    let at_convergence = cluster.pair_counts();
    if converged {
        println!("  every pair has exactly one connection after {converge_time:.2?}");
    } else {
        println!("  NOT converged after {CONVERGE_DEADLINE:?}:");
        print_problems(&cluster.problems(one_per_pair));
    }

    let goodbye = if converged {
        Some(demonstrate_goodbye(&mut cluster).await)
    } else {
        None
    };
    let after_goodbye = goodbye.map(|_| cluster.pair_counts());

    print_summary(
        &cluster,
        size,
        pairs,
        converged.then_some(converge_time),
        at_convergence,
        after_goodbye,
    );
    cluster.stop().await;

    let success = converged && goodbye == Some(true);
    if success {
        println!("OK: every pair converged to exactly one connection, and the goodbye arrived");
        Ok(ExitCode::SUCCESS)
    } else if !converged {
        println!("FAILED: the cluster did not converge to one connection per pair");
        Ok(ExitCode::FAILURE)
    } else {
        println!("FAILED: the goodbye from node 0 to node 1 did not arrive or did not settle");
        Ok(ExitCode::FAILURE)
    }
}

/// Node 0 disconnects node 1: node 1 must receive goodbye `Normal`, the pair must end with no
/// connection, and every other pair must keep its one.
async fn demonstrate_goodbye(cluster: &mut Cluster) -> bool {
    println!("  node 0 disconnects node 1 ...");
    cluster.nodes[0].send(Command::Disconnect(cluster.nodes[1].peer));
    let without_pair_0_1 = |a: usize, b: usize| u32::from((a, b) != (0, 1));
    let settled = cluster
        .wait_until(GOODBYE_DEADLINE, |c| {
            c.goodbye_received(1, 0, manager::DisconnectReason::Normal)
                && c.is_settled(without_pair_0_1)
        })
        .await;
    if settled {
        println!(
            "  node 1 received goodbye from node 0: {}; the other pairs keep their connection",
            manager::DisconnectReason::Normal
        );
    } else {
        println!("  the goodbye did not settle within {GOODBYE_DEADLINE:?}:");
        if !cluster.goodbye_received(1, 0, manager::DisconnectReason::Normal) {
            println!("    node 1 received no goodbye `Normal` from node 0");
        }
        print_problems(&cluster.problems(without_pair_0_1));
    }
    settled
}

fn print_problems(problems: &[String]) {
    const SHOWN: usize = 10;
    for problem in problems.iter().take(SHOWN) {
        println!("    {problem}");
    }
    if problems.len() > SHOWN {
        println!("    ... and {} more", problems.len() - SHOWN);
    }
}

fn print_summary(
    cluster: &Cluster,
    size: usize,
    pairs: usize,
    converge_time: Option<Duration>,
    at_convergence: PairCounts,
    after_goodbye: Option<PairCounts>,
) {
    let row = |label: &str, value: String, note: String| {
        let text = format!("  {label:<34}{value:>10}   {note}");
        println!("{}", text.trim_end());
    };
    let pair_row = |label: &str, converged: usize, later: Option<usize>| {
        let later = later.map_or_else(|| "-".to_owned(), |n| n.to_string());
        println!("  {label:<34}{converged:>10}{later:>16}");
    };
    let line = "-".repeat(66);

    println!();
    println!("  summary");
    println!("  {line}");
    row("nodes", size.to_string(), String::new());
    row("pairs", pairs.to_string(), String::new());
    row(
        "time to converge",
        converge_time.map_or_else(|| "never".to_owned(), |t| format!("{t:.2?}")),
        String::new(),
    );
    println!("  {:<34}{:>10}{:>16}", "", "converged", "after goodbye");
    pair_row(
        "connections",
        at_convergence.connections as usize,
        after_goodbye.map(|c| c.connections as usize),
    );
    pair_row(
        "pairs with 0 connections",
        at_convergence.none,
        after_goodbye.map(|c| c.none),
    );
    pair_row(
        "pairs with 1 connection",
        at_convergence.one,
        after_goodbye.map(|c| c.one),
    );
    pair_row(
        "pairs with 2+ connections",
        at_convergence.several,
        after_goodbye.map(|c| c.several),
    );
    row(
        "duplicates closed",
        cluster
            .count_events(|e| matches!(e, Event::DuplicateClosed { .. }))
            .to_string(),
        format!(
            "reported by either end; {} of {pairs} pairs had a duplicate",
            cluster.pairs_with_duplicates()
        ),
    );
    row(
        "rescue dials / redials scheduled",
        cluster
            .count_events(|e| matches!(e, Event::RedialScheduled { .. }))
            .to_string(),
        String::new(),
    );
    row(
        "dials failed",
        cluster
            .count_events(|e| matches!(e, Event::DialFailed { .. }))
            .to_string(),
        String::new(),
    );
    row(
        "goodbyes received",
        cluster
            .count_events(|e| matches!(e, Event::GoodbyeReceived { .. }))
            .to_string(),
        cluster.goodbye_reasons(),
    );
    println!("  {line}");
}
