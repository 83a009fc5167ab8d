//! Soak: N nodes (16 by default) in this one process on 127.0.0.1, each a swarm in its own task
//! with the manager composed first, under a bounded run of seeded random actions; then
//! everything is healed and, once the cluster settles (with a deadline), the manager's books
//! are checked against the swarms' and memory against its level at mid-run.
//!
//! Each node asks its manager to keep a random subset of the others (`--want`). The actions:
//!
//! - *restart*: the node's task is aborted (swarm, listener and connections dropped, as when a
//!   process dies) and started again with the same key on the same port; it asks again for
//!   the peers it wants;
//! - *ban*: a node bans a random peer for 1-4 s (the ban also stops it wanting the peer);
//! - *disconnect*: a node disconnects a random connected peer (goodbye `Normal`, not wanted);
//! - *redial*: a node asks again for a peer it wanted at the start;
//! - *freeze*: a node's task stops polling its swarm for 1-8 s (sockets open, nothing read or
//!   answered: a silent partition of that node), then thaws;
//! - *isolate*: a node bans 127.0.0.0/8 for 1-4 s (a partition it enforces itself: its
//!   connections close with goodbye `Banned`, inbound and outbound are refused).
//!
//! At the end every frozen node is thawed, every ban lifted and every node asks again for the
//! peers it wanted at the start. Settled means, for every node: nothing in flight (handshakes,
//! goodbyes, queued actions), the manager's established connections equal the swarm's, the
//! peers it has connections to are the swarm's connected peers, every peer it tracks is wanted,
//! connected or being redialed, every pair wanted by either side has exactly one connection and
//! no other pair has any, and no more than two timers per connection (plus one) are scheduled.
//! Memory is the process's resident set (`VmRSS`), sampled every 10 s; it is flat when the
//! growth from mid-run to the end stays under `--max-growth-mib`.
//!
//! ```text
//! cargo run --release --example soak                                  # 16 nodes, 90 s, seed 1
//! cargo run --release --example soak -- --nodes 16 --secs 120 --seed 7
//! ```
//!
//! The action sequence is fixed by `--seed`; the timing of the swarms is not, so two runs with
//! one seed differ in detail. Exit status 0 when every check held, 1 otherwise (each failure
//! printed). Logs (stderr) at `warn` unless RUST_LOG says otherwise.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use libp2p::{
    futures::StreamExt,
    identify,
    identity::Keypair,
    noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager::{self as manager, Backoff, BanTarget, Event};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use tokio::{
    sync::{mpsc, watch},
    time::{sleep, timeout, timeout_at, Instant},
};

/// How long a node may take to listen again on its port after a restart, in tries of 100 ms.
const LISTEN_TRIES: u32 = 50;
/// How often memory is sampled during the run.
const RSS_EVERY: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(name = "soak")]
struct Args {
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(2..=64))]
    nodes: u16,
    /// How long the random actions go on, in seconds.
    #[arg(long, default_value_t = 90)]
    secs: u64,
    /// Seed of the random actions and of the wanted peers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mean time between two actions, in milliseconds (each gap is drawn from half to 1.5 times).
    #[arg(long, default_value_t = 200)]
    action_ms: u64,
    /// Probability that a node wants a given other node.
    #[arg(long, default_value_t = 0.25)]
    want: f64,
    /// How long the managers are left alone after the partitions end and the bans are lifted,
    /// before the application asks again for its peers, in seconds.
    #[arg(long, default_value_t = 20)]
    recover_secs: u64,
    /// How long the healed cluster may take to settle, in seconds.
    #[arg(long, default_value_t = 60)]
    settle_secs: u64,
    /// The bound on RSS growth from mid-run to the end, in MiB, for memory to count as flat.
    #[arg(long, default_value_t = 4.0)]
    max_growth_mib: f64,
}

/// The manager first, so that its refusals run before identify spends work on a connection.
#[derive(NetworkBehaviour)]
struct SoakBehaviour {
    manager: manager::Behaviour,
    identify: identify::Behaviour,
}

/// What the driver asks a node to do.
enum Command {
    /// The manager's `dial`: keep the peer.
    Keep(PeerId, Multiaddr),
    Disconnect(PeerId),
    Ban(PeerId, Duration),
    /// Ban all of loopback: the node cuts itself off.
    Isolate(Duration),
    UnbanAll,
    /// Stop polling the swarm (sockets stay open) until `Thaw`.
    Freeze,
    Thaw,
}

/// What the manager knows of one cluster peer.
#[derive(Debug, Clone, Default)]
struct PeerView {
    wanted: bool,
    connections: usize,
    closing: usize,
    redial: bool,
    waiting: bool,
    /// For the report of a pair that did not settle: the redial state and the addresses.
    detail: String,
}

/// A node's state after its latest event or command, swarm and manager side by side.
#[derive(Debug, Clone, Default)]
struct Status {
    frozen: bool,
    /// Established connections per peer, as the swarm reports them in its events.
    swarm_connections: HashMap<PeerId, u32>,
    swarm_established: u32,
    swarm_pending: u32,
    manager_established: usize,
    manager_pending: usize,
    manager_queued: usize,
    manager_tracked: usize,
    /// Peers the manager holds connections to.
    manager_connected: HashSet<PeerId>,
    timers: usize,
    tracked_ips: usize,
    bans: usize,
    /// Cluster peers the manager holds a record for.
    peers: HashMap<PeerId, PeerView>,
    /// How this node last lost each peer: its last `Disconnected`, `DialFailed` or `Denied`.
    last_loss: HashMap<PeerId, String>,
}

impl Status {
    fn closing(&self) -> usize {
        self.peers.values().map(|p| p.closing).sum()
    }
}

/// Manager events of every node, counted by kind.
type Tally = Arc<Mutex<BTreeMap<String, u64>>>;

struct SoakNode {
    key: Keypair,
    /// The listen address, without `/p2p`.
    address: Multiaddr,
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Status>,
    task: tokio::task::JoinHandle<()>,
}

impl SoakNode {
    fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }
}

fn build_swarm(key: Keypair) -> anyhow::Result<Swarm<SoakBehaviour>> {
    // Short liveness and backoff so that freezes cost connections and the cluster heals within
    // seconds; the rest is the default configuration.
    let config = manager::Config::default()
        .with_ping_interval(Duration::from_secs(1))
        .with_ping_timeout(Duration::from_secs(2))
        .with_inactivity_timeout(Some(Duration::from_secs(5)))
        .with_dial_timeout(Duration::from_secs(10))
        .with_timeout_backoff(Backoff::new(
            Duration::from_millis(500),
            2.0,
            Duration::from_secs(8),
        ));
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("tcp transport")?
        .with_behaviour(|key| SoakBehaviour {
            manager: manager::Behaviour::new(key.public().to_peer_id(), config),
            identify: identify::Behaviour::new(identify::Config::new(
                "/connection-manager-soak/1.0.0".into(),
                key.public(),
            )),
        })
        .context("behaviour")?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

/// Starts a node on `listen` and waits for its listen address. A restarted node retries for a
/// while: the port of its previous life may not be free at once.
async fn spawn_node(
    key: Keypair,
    listen: &Multiaddr,
    peers: Arc<Vec<PeerId>>,
    tally: Tally,
) -> anyhow::Result<SoakNode> {
    let mut last_error = None;
    for _ in 0..LISTEN_TRIES {
        let mut swarm = build_swarm(key.clone())?;
        if let Err(error) = swarm.listen_on(listen.clone()) {
            last_error = Some(anyhow::Error::from(error));
            sleep(Duration::from_millis(100)).await;
            continue;
        }
        match timeout(Duration::from_secs(5), first_listen_address(&mut swarm)).await {
            Ok(Ok(address)) => {
                let (commands, command_rx) = mpsc::unbounded_channel();
                let (status_tx, status) = watch::channel(Status::default());
                let task = tokio::spawn(run_node(swarm, command_rx, status_tx, peers, tally));
                return Ok(SoakNode {
                    key,
                    address,
                    commands,
                    status,
                    task,
                });
            }
            Ok(Err(error)) => last_error = Some(error),
            Err(_) => last_error = Some(anyhow::anyhow!("no listen address within 5 s")),
        }
        sleep(Duration::from_millis(100)).await;
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("cannot listen")))
        .with_context(|| format!("cannot listen on {listen}"))
}

async fn first_listen_address(swarm: &mut Swarm<SoakBehaviour>) -> anyhow::Result<Multiaddr> {
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => return Ok(address),
            SwarmEvent::ListenerClosed { reason, .. } => {
                return Err(anyhow::anyhow!("listener closed: {reason:?}"))
            }
            SwarmEvent::ListenerError { error, .. } => return Err(error.into()),
            _ => {}
        }
    }
}

async fn run_node(
    mut swarm: Swarm<SoakBehaviour>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    status_tx: watch::Sender<Status>,
    peers: Arc<Vec<PeerId>>,
    tally: Tally,
) {
    let mut connections: HashMap<PeerId, u32> = HashMap::new();
    let mut last_loss: HashMap<PeerId, String> = HashMap::new();
    let mut frozen = false;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Freeze) => frozen = true,
                Some(Command::Thaw) => frozen = false,
                Some(command) => run_command(&mut swarm, command),
                None => return,
            },
            event = swarm.select_next_some(), if !frozen => match event {
                SwarmEvent::ConnectionEstablished { peer_id, num_established, .. } => {
                    connections.insert(peer_id, num_established.get());
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established, .. } => {
                    if num_established == 0 {
                        connections.remove(&peer_id);
                    } else {
                        connections.insert(peer_id, num_established);
                    }
                }
                SwarmEvent::Behaviour(SoakBehaviourEvent::Manager(event)) => {
                    match &event {
                        Event::Disconnected { peer, reason, closed_by, .. } => {
                            last_loss.insert(*peer, format!("{reason} ({closed_by})"));
                        }
                        Event::DialFailed { peer: Some(peer), .. } => {
                            last_loss.insert(*peer, "dial failed".to_owned());
                        }
                        Event::Denied { peer: Some(peer), .. } => {
                            let kind = event_name(&event);
                            let kind = kind.trim_start_matches("Denied/");
                            last_loss.insert(*peer, format!("refused here: {kind}"));
                        }
                        _ => {}
                    }
                    let name = event_name(&event);
                    *tally.lock().expect("tally").entry(name).or_default() += 1;
                }
                _ => {}
            },
        }
        let mut status = status(&swarm, &connections, &peers, frozen);
        status.last_loss = last_loss.clone();
        let _ = status_tx.send(status);
    }
}

fn run_command(swarm: &mut Swarm<SoakBehaviour>, command: Command) {
    let manager = &mut swarm.behaviour_mut().manager;
    match command {
        Command::Keep(peer, address) => {
            // Refused only while the peer is banned; the heal lifts bans first.
            let _ = manager.add_peer(peer, vec![address]);
        }
        Command::Disconnect(peer) => {
            manager.remove_peer(peer);
        }
        Command::Ban(peer, duration) => manager.ban_peer(peer, Some(duration)),
        Command::Isolate(duration) => manager.ban_network(
            "127.0.0.0/8".parse::<ipnet::IpNet>().expect("net"),
            Some(duration),
        ),
        Command::UnbanAll => {
            for ban in manager.bans() {
                match ban.target {
                    BanTarget::Peer(peer) => manager.unban_peer(peer),
                    BanTarget::Network(network) => manager.unban_network(network),
                };
            }
        }
        Command::Freeze | Command::Thaw => unreachable!("handled by the node task"),
    }
}

fn status(
    swarm: &Swarm<SoakBehaviour>,
    connections: &HashMap<PeerId, u32>,
    peers: &[PeerId],
    frozen: bool,
) -> Status {
    let behaviour = &swarm.behaviour().manager;
    let info = swarm.network_info();
    let counters = info.connection_counters();
    let mut status = Status {
        frozen,
        swarm_connections: connections.clone(),
        swarm_established: counters.num_established(),
        swarm_pending: counters.num_pending(),
        manager_established: behaviour.stats().established_connections,
        manager_pending: behaviour.stats().pending_connections,
        manager_queued: behaviour.stats().queued_actions,
        manager_tracked: behaviour.stats().tracked_peers,
        manager_connected: behaviour.connected_peers().copied().collect(),
        timers: behaviour.stats().scheduled_timers,
        tracked_ips: behaviour.stats().tracked_ips,
        bans: behaviour.bans().len(),
        peers: HashMap::new(),
        last_loss: HashMap::new(),
    };
    for peer in peers {
        if let Some(info) = behaviour.peer_info(peer) {
            let view = PeerView {
                wanted: info.wanted,
                connections: info.connections.len(),
                closing: info
                    .connections
                    .iter()
                    .filter(|c| c.closing.is_some())
                    .count(),
                redial: info.next_redial.is_some(),
                waiting: info.waiting_for_resources,
                detail: format!(
                    "redial attempts {}, next in {:?}, addresses {:?}",
                    info.redial_attempts,
                    info.next_redial
                        .map(|at| at.saturating_duration_since(std::time::Instant::now())),
                    info.addresses
                ),
            };
            status.peers.insert(*peer, view);
        }
    }
    status
}

/// The variant name of an event (`Disconnected`, `DialFailed`, ...); for a refusal, with the
/// kind of `Denial` (`Denied/PeerBanned`).
fn event_name(event: &Event) -> String {
    fn variant(debug: String) -> String {
        debug
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or("")
            .to_owned()
    }
    match event {
        Event::Denied { denial, .. } => format!("Denied/{}", variant(format!("{denial:?}"))),
        other => variant(format!("{other:?}")),
    }
}

/// The process's resident memory (`VmRSS`), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Restart,
    Ban,
    Disconnect,
    Redial,
    Freeze,
    Isolate,
}

/// Actions and their weights.
const ACTIONS: [(Action, u32); 6] = [
    (Action::Restart, 10),
    (Action::Ban, 15),
    (Action::Disconnect, 15),
    (Action::Redial, 30),
    (Action::Freeze, 15),
    (Action::Isolate, 5),
];

struct Cluster {
    nodes: Vec<SoakNode>,
    peers: Arc<Vec<PeerId>>,
    tally: Tally,
    /// Who wanted whom at the start (the application's configuration).
    wants: Vec<HashSet<usize>>,
    /// Until when each node is frozen.
    frozen_until: Vec<Option<Instant>>,
}

impl Cluster {
    async fn start(size: usize, rng: &mut StdRng, want: f64) -> anyhow::Result<Self> {
        let keys: Vec<Keypair> = (0..size).map(|_| Keypair::generate_ed25519()).collect();
        let peers: Arc<Vec<PeerId>> =
            Arc::new(keys.iter().map(|k| k.public().to_peer_id()).collect());
        let tally = Tally::default();
        let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse()?;
        let mut nodes = Vec::with_capacity(size);
        for key in keys {
            nodes.push(spawn_node(key, &listen, peers.clone(), tally.clone()).await?);
        }
        let wants = (0..size)
            .map(|i| {
                (0..size)
                    .filter(|&j| j != i && rng.gen_bool(want))
                    .collect()
            })
            .collect();
        Ok(Self {
            nodes,
            peers,
            tally,
            wants,
            frozen_until: vec![None; size],
        })
    }

    fn size(&self) -> usize {
        self.nodes.len()
    }

    fn keep(&self, i: usize, j: usize) {
        let address = self.nodes[j].address.clone();
        self.nodes[i].send(Command::Keep(self.peers[j], address));
    }

    fn ask_for_wanted(&self, i: usize) {
        for &j in &self.wants[i] {
            self.keep(i, j);
        }
    }

    /// Pairs `(a, b)`, `a < b`, that either side wants.
    fn wanted_pairs(&self) -> HashSet<(usize, usize)> {
        let mut pairs = HashSet::new();
        for (i, wants) in self.wants.iter().enumerate() {
            for &j in wants {
                pairs.insert((i.min(j), i.max(j)));
            }
        }
        pairs
    }

    fn statuses(&self) -> Vec<Status> {
        self.nodes
            .iter()
            .map(|n| n.status.borrow().clone())
            .collect()
    }

    async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        node.task.abort();
        let _ = (&mut node.task).await;
        let key = node.key.clone();
        let address = node.address.clone();
        self.nodes[i] = spawn_node(key, &address, self.peers.clone(), self.tally.clone()).await?;
        self.frozen_until[i] = None;
        self.ask_for_wanted(i);
        Ok(())
    }

    fn thaw_due(&mut self, now: Instant) {
        for (i, until) in self.frozen_until.iter_mut().enumerate() {
            if until.is_some_and(|at| at <= now) {
                *until = None;
                self.nodes[i].send(Command::Thaw);
            }
        }
    }

    /// Everything that is not as it should be once healed and settled: one line each.
    fn problems(&self, statuses: &[Status]) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, s) in statuses.iter().enumerate() {
            let closing = s.closing();
            if s.frozen
                || s.swarm_pending != 0
                || s.manager_pending != 0
                || s.manager_queued != 0
                || closing != 0
            {
                problems.push(format!(
                    "node {i}: busy (frozen {}, {} pending in the swarm, {} in the manager, \
                     {} queued actions, {closing} closing)",
                    s.frozen, s.swarm_pending, s.manager_pending, s.manager_queued
                ));
            }
            if s.manager_established != s.swarm_established as usize {
                problems.push(format!(
                    "node {i}: the manager counts {} established connections, the swarm {}",
                    s.manager_established, s.swarm_established
                ));
            }
            let swarm_total: u32 = s.swarm_connections.values().sum();
            if swarm_total != s.swarm_established {
                problems.push(format!(
                    "node {i}: the swarm's events add up to {swarm_total} connections, its \
                     counter says {}",
                    s.swarm_established
                ));
            }
            let swarm_peers: HashSet<PeerId> = s.swarm_connections.keys().copied().collect();
            if swarm_peers != s.manager_connected {
                problems.push(format!(
                    "node {i}: connected peers differ: swarm {}, manager {}",
                    self.names(&swarm_peers),
                    self.names(&s.manager_connected)
                ));
            }
            if s.peers.len() != s.manager_tracked {
                problems.push(format!(
                    "node {i}: the manager tracks {} peers, {} of them in the cluster",
                    s.manager_tracked,
                    s.peers.len()
                ));
            }
            for (peer, view) in &s.peers {
                if !(view.wanted || view.connections > 0 || view.redial || view.waiting) {
                    problems.push(format!(
                        "node {i}: tracks node {} that is neither wanted, connected nor redialed",
                        self.name(peer)
                    ));
                }
            }
            if s.timers > 2 * s.manager_established + 1 {
                problems.push(format!(
                    "node {i}: {} timers scheduled for {} connections",
                    s.timers, s.manager_established
                ));
            }
        }
        let wanted = self.wanted_pairs();
        for a in 0..self.size() {
            for b in a + 1..self.size() {
                let seen_by_a = statuses[a].swarm_connections.get(&self.peers[b]);
                let seen_by_b = statuses[b].swarm_connections.get(&self.peers[a]);
                let (seen_by_a, seen_by_b) = (*seen_by_a.unwrap_or(&0), *seen_by_b.unwrap_or(&0));
                let want = u32::from(wanted.contains(&(a, b)));
                if (seen_by_a, seen_by_b) != (want, want) {
                    problems.push(format!(
                        "nodes {a} and {b}: expected {want} connection(s), node {a} has \
                         {seen_by_a}, node {b} has {seen_by_b}; {a} of {b}: {}; {b} of {a}: {}",
                        self.view(&statuses[a], b),
                        self.view(&statuses[b], a)
                    ));
                }
            }
        }
        problems
    }

    /// What node `of`'s manager says of node `peer`, and how it last lost it.
    fn view(&self, of: &Status, peer: usize) -> String {
        let peer = &self.peers[peer];
        let lost = of.last_loss.get(peer).map_or("never lost", String::as_str);
        match of.peers.get(peer) {
            Some(v) => format!(
                "wanted {}, {} connection(s), redial scheduled {}, waiting {}, last lost: \
                 {lost}, {}",
                v.wanted, v.connections, v.redial, v.waiting, v.detail
            ),
            None => format!("not tracked, last lost: {lost}"),
        }
    }

    fn name(&self, peer: &PeerId) -> String {
        match self.peers.iter().position(|p| p == peer) {
            Some(i) => i.to_string(),
            None => peer.to_string(),
        }
    }

    fn names(&self, peers: &HashSet<PeerId>) -> String {
        let mut names: Vec<String> = peers.iter().map(|p| self.name(p)).collect();
        names.sort();
        format!("[{}]", names.join(", "))
    }

    /// Waits until there is no problem left, or `limit` passed; returns the last problems.
    async fn settle(&mut self, limit: Duration) -> Vec<String> {
        self.wait_for(limit, |c, s| c.problems(s).is_empty()).await;
        self.problems(&self.statuses())
    }

    /// Waits until `condition` holds over the nodes' statuses (true), or `limit` passed.
    async fn wait_for(
        &mut self,
        limit: Duration,
        condition: impl Fn(&Self, &[Status]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if condition(self, &self.statuses()) {
                return true;
            }
            let changes = self
                .nodes
                .iter_mut()
                .map(|n| Box::pin(n.status.changed()))
                .collect::<Vec<_>>();
            match timeout_at(deadline, futures::future::select_all(changes)).await {
                Ok((Ok(()), _, _)) => {}
                // A node task ended (it panicked): nothing will change any more.
                Ok((Err(_), _, _)) | Err(_) => return false,
            }
        }
    }

    /// Peers that some node's manager wants, counted as (connected, not connected).
    fn wanted_by_managers(&self, statuses: &[Status]) -> (usize, usize) {
        let mut counts = (0, 0);
        for s in statuses {
            for (peer, view) in &s.peers {
                if view.wanted {
                    if s.swarm_connections.contains_key(peer) {
                        counts.0 += 1;
                    } else {
                        counts.1 += 1;
                    }
                }
            }
        }
        counts
    }

    /// Wanted peers (by the application's current wish, tracked by the manager) that are not
    /// connected, not being redialed and not banned: the manager will not bring them back on its
    /// own. Counted by how the node last lost them.
    fn stranded(&self, statuses: &[Status]) -> BTreeMap<String, usize> {
        let mut stranded = BTreeMap::new();
        for s in statuses.iter().filter(|s| s.bans == 0 && !s.frozen) {
            for (peer, view) in &s.peers {
                if view.wanted && view.connections == 0 && !view.redial && !view.waiting {
                    let how = s.last_loss.get(peer).map_or("never lost", String::as_str);
                    *stranded.entry(how.to_owned()).or_default() += 1;
                }
            }
        }
        stranded
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let size = usize::from(args.nodes);
    let mut cluster = Cluster::start(size, &mut rng, args.want).await?;
    let wanted_pairs = cluster.wanted_pairs().len();
    println!(
        "soak: {size} nodes on 127.0.0.1, {} s of random actions (seed {}, one every ~{} ms), \
         {wanted_pairs} pairs wanted by at least one side",
        args.secs, args.seed, args.action_ms
    );
    let mut failures = Vec::new();

    let started = Instant::now();
    for i in 0..size {
        cluster.ask_for_wanted(i);
    }
    let problems = cluster.settle(Duration::from_secs(30)).await;
    if problems.is_empty() {
        println!(
            "  start: every wanted pair connected once in {:.2?}",
            started.elapsed()
        );
    } else {
        failures.push(format!("the cluster did not form: {}", problems.join("; ")));
    }
    let rss_start = rss_bytes();
    let mut rss_samples = vec![(Duration::ZERO, rss_start)];
    let mut rss_mid = None;

    // The run: bounded in time and in count.
    let run_for = Duration::from_secs(args.secs);
    let max_actions = args.secs.saturating_mul(2000) / args.action_ms.max(1) + 1;
    let total_weight: u32 = ACTIONS.iter().map(|(_, w)| w).sum();
    let mut counts: BTreeMap<Action, u64> = BTreeMap::new();
    let run_started = Instant::now();
    let mut next_sample = run_started + RSS_EVERY;
    for _ in 0..max_actions {
        let now = Instant::now();
        if now >= run_started + run_for {
            break;
        }
        cluster.thaw_due(now);
        if now >= next_sample {
            let elapsed = now - run_started;
            rss_samples.push((elapsed, rss_bytes()));
            if rss_mid.is_none() && elapsed >= run_for / 2 {
                rss_mid = Some(rss_bytes());
            }
            next_sample += RSS_EVERY;
        }
        let mut pick = rng.gen_range(0..total_weight);
        let action = ACTIONS
            .iter()
            .find(|(_, w)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .map_or(Action::Redial, |(a, _)| *a);
        // The acting node is awake: a frozen process does nothing.
        let awake: Vec<usize> = (0..size)
            .filter(|&i| cluster.frozen_until[i].is_none())
            .collect();
        let Some(&i) = awake.choose(&mut rng) else {
            continue;
        };
        let others: Vec<usize> = (0..size).filter(|&j| j != i).collect();
        let j = *others.choose(&mut rng).expect("two nodes at least");
        let short = Duration::from_millis(rng.gen_range(1000..4000));
        match action {
            Action::Restart => {
                if let Err(error) = cluster.restart(i).await {
                    failures.push(format!("restart of node {i}: {error:#}"));
                    break;
                }
            }
            Action::Ban => cluster.nodes[i].send(Command::Ban(cluster.peers[j], short)),
            Action::Disconnect => cluster.nodes[i].send(Command::Disconnect(cluster.peers[j])),
            Action::Redial => {
                let wanted: Vec<usize> = cluster.wants[i].iter().copied().collect();
                if let Some(&j) = wanted.choose(&mut rng) {
                    cluster.keep(i, j);
                }
            }
            Action::Freeze => {
                // At most a quarter of the cluster is frozen at once.
                if awake.len() * 4 > size * 3 {
                    let freeze = Duration::from_millis(rng.gen_range(1000..8000));
                    cluster.frozen_until[i] = Some(now + freeze);
                    cluster.nodes[i].send(Command::Freeze);
                }
            }
            Action::Isolate => cluster.nodes[i].send(Command::Isolate(short)),
        }
        *counts.entry(action).or_default() += 1;
        let gap = rng.gen_range(args.action_ms / 2..=args.action_ms * 3 / 2);
        sleep(Duration::from_millis(gap)).await;
    }
    let rss_mid = rss_mid.unwrap_or_else(rss_bytes);
    let actions: Vec<String> = counts.iter().map(|(a, n)| format!("{n} {a:?}")).collect();
    println!(
        "  run: {} actions in {:.1?}: {}",
        counts.values().sum::<u64>(),
        run_started.elapsed(),
        actions.join(", ")
    );

    // Heal, first step: wake everyone and lift every ban, then leave the managers alone for a
    // while. What they still want but do not get back is what they cannot recover by themselves.
    let frozen = cluster.frozen_until.iter().filter(|f| f.is_some()).count();
    let bans: usize = cluster.statuses().iter().map(|s| s.bans).sum();
    for i in 0..size {
        cluster.frozen_until[i] = None;
        cluster.nodes[i].send(Command::Thaw);
        cluster.nodes[i].send(Command::UnbanAll);
    }
    let recover_for = Duration::from_secs(args.recover_secs);
    let recover_started = Instant::now();
    cluster
        .wait_for(recover_for, |c, s| c.wanted_by_managers(s).1 == 0)
        .await;
    let after_recovery = cluster.statuses();
    let (back, missing) = cluster.wanted_by_managers(&after_recovery);
    let stranded = cluster.stranded(&after_recovery);
    let stranded_total: usize = stranded.values().sum();
    let stranded_by: Vec<String> = stranded
        .iter()
        .map(|(k, n)| format!("{n} after {k}"))
        .collect();
    println!(
        "  heal 1: {frozen} node(s) thawed, {bans} ban(s) lifted; {:.1?} later, of the peers \
         the managers still want, {back} are connected and {missing} are not, {stranded_total} \
         of these with no redial scheduled ({})",
        recover_started.elapsed(),
        if stranded_by.is_empty() {
            "none".to_owned()
        } else {
            stranded_by.join(", ")
        }
    );

    // Second step: the application asks again for every peer it wanted at the start.
    for i in 0..size {
        cluster.ask_for_wanted(i);
    }
    let heal_started = Instant::now();
    let problems = cluster.settle(Duration::from_secs(args.settle_secs)).await;
    let settle_took = heal_started.elapsed();
    println!(
        "  heal 2: every node asks again for the peers it wanted at the start; {} after \
         {settle_took:.2?}",
        if problems.is_empty() {
            "settled".to_owned()
        } else {
            format!("NOT settled ({} problems)", problems.len())
        }
    );
    for problem in problems.iter().take(20) {
        println!("    {problem}");
    }
    if !problems.is_empty() {
        failures.push(format!(
            "not settled {:?} after the heal: {} problem(s)",
            settle_took,
            problems.len()
        ));
    }

    let end = cluster.statuses();
    let connections: u32 = end.iter().map(|s| s.swarm_established).sum::<u32>() / 2;
    let max_tracked = end.iter().map(|s| s.manager_tracked).max().unwrap_or(0);
    let max_timers = end.iter().map(|s| s.timers).max().unwrap_or(0);
    let max_ips = end.iter().map(|s| s.tracked_ips).max().unwrap_or(0);
    let dead: Vec<usize> = (0..size)
        .filter(|&i| cluster.nodes[i].task.is_finished())
        .collect();
    if !dead.is_empty() {
        failures.push(format!("node task(s) ended on their own: {dead:?}"));
    }
    println!(
        "  books: per node, manager established == swarm established, manager connected peers \
         == swarm connected peers, every tracked peer wanted/connected/redialed; {connections} \
         connections for {wanted_pairs} wanted pairs, at most one per pair; at most \
         {max_tracked} peers, {max_ips} IPs and {max_timers} timers tracked by one node"
    );
    let tally = cluster.tally.lock().expect("tally").clone();
    let events: Vec<String> = tally.iter().map(|(k, n)| format!("{n} {k}")).collect();
    println!("  manager events: {}", events.join(", "));

    let rss_end = rss_bytes();
    rss_samples.push((run_started.elapsed(), rss_end));
    let growth = mib(rss_end) - mib(rss_mid);
    let samples: Vec<String> = rss_samples
        .iter()
        .map(|(t, b)| format!("{}s {:.1}", t.as_secs(), mib(*b)))
        .collect();
    let flat = growth < args.max_growth_mib;
    println!(
        "  memory (RSS, MiB): {}; start {:.1}, mid {:.1}, end {:.1}: {growth:+.1} MiB from mid \
         to end, {} (bound {} MiB)",
        samples.join(", "),
        mib(rss_start),
        mib(rss_mid),
        mib(rss_end),
        if flat { "flat" } else { "NOT flat" },
        args.max_growth_mib
    );
    if !flat {
        failures.push(format!(
            "memory grew by {growth:.1} MiB from mid-run to the end"
        ));
    }

    for node in cluster.nodes {
        node.task.abort();
    }
    if failures.is_empty() {
        println!("result: every check held");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("result: {} check(s) failed", failures.len());
        for failure in &failures {
            println!("  {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}
