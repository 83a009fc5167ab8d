//! Side-by-side benchmark: the connection manager against what users compose today, on the same
//! workloads, in one process and one run, printed as a markdown table with ratios to the bare
//! swarm and PASS/MISS against the goals of BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --example compare --features redb
//! cargo run --release --example compare --features redb -- --store-only
//! cargo run --release --example compare -- --nodes 32 --churn-secs 5
//! cargo run --release --example compare -- --mesh-only --transport tcp,quic
//! ```
//!
//! With the defaults it takes about two minutes on two cores (`--store-only`: about 70 s).
//! Progress goes to stderr, the tables to stdout. Without `--features redb` the peer-store
//! workload measures `MemoryStore` only.
//!
//! # Configurations
//!
//! - **(a) bare**: `ping::Behaviour` alone.
//! - **(b) composed**: `allow_block_list` (blocked peers) + `connection_limits` with
//!   `max_established_per_peer(1)` + `ping`.
//! - **(c) manager**: [`libp2p_connection_manager::Behaviour`] alone (it runs ping itself), with
//!   `Config::default()`.
//!
//! Every swarm has a 60 s idle-connection timeout, so that no configuration loses connections to
//! idleness during a run; no other setting differs.
//!
//! # Workloads
//!
//! 1. **Mesh**: `--nodes` swarms on TCP 127.0.0.1 with noise and yamux (or on QUIC, or each in
//!    turn: `--transport tcp,quic`), each in its own task on a multi-thread runtime. They are released at once and every node `Swarm::dial`s every other
//!    (default dial options, so from the listening port: simultaneous dials can meet as one TCP
//!    simultaneous open). Reported: connections at the end, pairs with 0 / 1 / 2 / 3+
//!    connections, and the time until the mesh **settled**. Settled means: no connection opened,
//!    closed or failed for `--quiet-ms` after the last such event, every node has nothing in
//!    flight (no pending connection), and both ends of every pair count the same number of
//!    connections. The settle time is that of the last open or close, measured from the release.
//!    A mesh that is not settled by `--deadline-secs` is reported as "did not settle". The quiet
//!    period is the only place where this harness waits on time rather than on an event; it is
//!    detection only and is not part of the reported time.
//! 2. **Churn**: two swarms on the in-memory transport (`MemoryTransport` upgraded with noise and
//!    yamux, no sockets; multistream-select `V1` rather than the TCP builder's `V1Lazy`, see
//!    [`memory_swarm`]), both driven by one task. One dials the other; once the connection is
//!    established it closes it with `Swarm::disconnect_peer_id` (the same call in all three
//!    configurations); a cycle counts once both sides reported the close (a cycle in which
//!    either side reported a failure instead counts as failed), then the next dial starts. Cycles per
//!    second over `--churn-secs` per configuration, split into `--rounds` slots interleaved
//!    a/b/c with a rotating start, so that drift of the machine hits all three alike.
//! 3. **Churn under load**: the same churn with `--preload` banned and tracked peers on both
//!    swarms: (a) has no such state; (b) blocks `--preload` random peers in `allow_block_list`;
//!    (c) bans `--preload` random peers for an hour and tracks `--preload` others through
//!    `add_address`.
//! 4. **Peer store**: the cost of writing the manager's changes to a peer store
//!    (`Behaviour::with_store`, `StoreConfig::default()`): (c) without a store, (d) with a
//!    `MemoryStore`, (e) with a `RedbStore` in a temporary file, `--store-secs` each in
//!    `--store-rounds` interleaved slots (fresh swarms and stores per slot; a slot should last
//!    longer than the 1 s flush interval). Two workloads: **4a**, workload 2 with a store on both
//!    swarms (one peer, journaled once per flush however often it churns); **4b**, a listener
//!    with a store and a new dialer (a `ping` swarm with a fresh identity) every cycle, so that
//!    the listener writes a new peer every cycle. The stores are wrapped to count the batches
//!    and changes handed over and to time `write` on the swarm's task (and how much of that the
//!    thread spent waiting for a CPU); the CPU time of the `RedbStore` writer thread is read
//!    from `/proc/self/task/*/schedstat`. **4c**: the core's cost per connection event with the
//!    journal a store needs off and on (`Manager::track_changes`), interleaved batch by batch.
//!
//! And, on the sans-IO core without a swarm: the cost of one connection event (admit,
//! establish, close, as in `benches/core.rs`) with 1k, 10k and 100k connected peers, and the
//! memory per tracked peer, per connected peer and per ban, counted by a global allocator that
//! sums the bytes requested and freed while the measurement runs (the system allocator's own
//! per-block overhead is not included; live blocks are reported beside the bytes).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::HashMap,
    fmt::Write as _,
    hint::black_box,
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser;
use libp2p::{
    allow_block_list, connection_limits,
    core::{transport::MemoryTransport, upgrade::Version, Endpoint},
    futures::{FutureExt as _, StreamExt as _},
    identity::Keypair,
    multiaddr::Protocol,
    noise, ping,
    swarm::{
        dial_opts::{DialOpts, PeerCondition},
        ConnectionId, NetworkBehaviour, SwarmEvent,
    },
    tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder, Transport as _,
};
#[cfg(feature = "redb")]
use libp2p_connection_manager::store::RedbStore;
use libp2p_connection_manager::{
    self as manager,
    core::{CloseCause, ClosedBy, Manager, NewConnection},
    store::{
        MemoryStore, PeerStore, StoreError, StoreOp, StoredDisconnect, StoredState, StoredUpdate,
    },
    Initiator, Limits,
};
use tokio::{
    sync::{mpsc, watch},
    time::{timeout, timeout_at, Instant},
};

/// Idle-connection timeout of every swarm.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the preloaded bans last.
const BAN_DURATION: Duration = Duration::from_secs(3600);
/// A churn slot that makes no progress for this long is an error, not a measurement.
const CHURN_STALL: Duration = Duration::from_secs(10);
/// Connected peers at which the core's cost per event is measured.
const CORE_SIZES: [usize; 3] = [1_000, 10_000, 100_000];
/// Timed connection events per batch, and batches (the median batch is reported).
const CORE_EVENTS: u32 = 20_000;
const CORE_BATCHES: usize = 5;

/// The goals of issue 11, as ratios or absolute bounds.
const GOAL_CHURN_RATIO: f64 = 0.95;
const GOAL_SETTLE_RATIO: f64 = 1.2;
/// "Flat": the cost per event with 100x the peers stays within this factor (linear growth would
/// be 100x).
const GOAL_FLAT_FACTOR: f64 = 2.0;
const GOAL_BYTES_PER_PEER: f64 = 512.0;

/// Side-by-side benchmark of a bare swarm, connection_limits + allow_block_list, and the manager.
#[derive(Parser, Debug)]
#[command(name = "compare")]
struct Args {
    /// Nodes in the mesh workload.
    #[arg(long, default_value_t = 32)]
    nodes: usize,
    /// Seconds of churn per configuration and churn workload.
    #[arg(long, default_value_t = 5)]
    churn_secs: u64,
    /// Interleaved slots the churn seconds are split into.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Runs of the mesh per configuration, interleaved (their medians are compared).
    #[arg(long, default_value_t = 3)]
    mesh_runs: usize,
    /// Quiet period of settle detection, in milliseconds. Longer than anything the manager
    /// schedules while a mesh forms (a prompt redial is at most 300 ms away, the first backoff
    /// step at most 1.2 s).
    #[arg(long, default_value_t = 1500)]
    quiet_ms: u64,
    /// Overall deadline of one mesh run, in seconds.
    #[arg(long, default_value_t = 30)]
    deadline_secs: u64,
    /// Banned and tracked peers in the churn-under-load workload and the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    preload: usize,
    /// Seconds per configuration in each peer-store workload.
    #[arg(long, default_value_t = 10)]
    store_secs: u64,
    /// Interleaved slots the peer-store seconds are split into. Keep a slot longer than the
    /// store's flush interval (1 s), or the stores get nothing while the clock runs.
    #[arg(long, default_value_t = 5)]
    store_rounds: usize,
    /// Disposable peers written into every store before its slot (the stores keep at most
    /// 10,000 by default, and prune when a batch takes them past it).
    #[arg(long, default_value_t = 0)]
    store_preload: usize,
    /// Run only the peer-store workloads (4a and 4b).
    #[arg(long)]
    store_only: bool,
    /// The transports of the mesh workload, comma-separated; one mesh table each.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tcp")]
    transport: Vec<MeshTransport>,
    /// Run only the mesh workload (1), on every `--transport`.
    #[arg(long)]
    mesh_only: bool,
    /// Measure only the memory in the `Manager` (`--preload` items of each kind).
    #[arg(long)]
    memory_only: bool,
}

/// The transport a mesh runs on.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum MeshTransport {
    /// TCP with noise and yamux (the swarm builder's `with_tcp`).
    Tcp,
    /// QUIC v1 (the swarm builder's `with_quic`: TLS 1.3 and QUIC's own streams).
    Quic,
}

impl MeshTransport {
    fn title(self) -> &'static str {
        match self {
            MeshTransport::Tcp => "TCP 127.0.0.1 (noise, yamux)",
            MeshTransport::Quic => "QUIC 127.0.0.1 (quic-v1: TLS 1.3, QUIC streams)",
        }
    }

    fn label(self) -> &'static str {
        match self {
            MeshTransport::Tcp => "tcp",
            MeshTransport::Quic => "quic",
        }
    }

    fn listen_address(self) -> &'static str {
        match self {
            MeshTransport::Tcp => "/ip4/127.0.0.1/tcp/0",
            MeshTransport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------------------------

/// The system allocator, counting requested bytes and blocks while [`COUNTING`] is on. Off, it
/// costs one relaxed load per call, the same for every configuration.
struct CountingAllocator;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);

fn count(bytes: usize, blocks: isize, sign: isize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE_BYTES.fetch_add(sign * bytes as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_add(sign * blocks, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counters have no effect on it.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1, 1);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1, 1);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), 1, -1);
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), 0, -1);
        count(new_size, 0, 1);
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Bytes and blocks still allocated after `work`, of those it allocated (or freed). Run it
/// while no other thread allocates.
fn retained_by(work: impl FnOnce()) -> (isize, isize) {
    LIVE_BYTES.store(0, Ordering::SeqCst);
    LIVE_BLOCKS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    work();
    COUNTING.store(false, Ordering::SeqCst);
    (
        LIVE_BYTES.load(Ordering::SeqCst),
        LIVE_BLOCKS.load(Ordering::SeqCst),
    )
}

// ---------------------------------------------------------------------------------------------
// The three configurations
// ---------------------------------------------------------------------------------------------

/// (b): what users compose today.
#[derive(NetworkBehaviour)]
struct Composed {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    ping: ping::Behaviour,
}

/// A configuration under test: how to build its behaviour and preload it.
trait Setup: NetworkBehaviour + Send + 'static {
    fn new(key: &Keypair) -> Self;
    /// Adds `count` banned and `count` tracked peers, as far as the configuration keeps such
    /// state.
    fn preload(&mut self, count: usize);
}

/// (a)
impl Setup for ping::Behaviour {
    fn new(_: &Keypair) -> Self {
        ping::Behaviour::new(ping::Config::new())
    }

    fn preload(&mut self, _: usize) {}
}

/// (b)
impl Setup for Composed {
    fn new(_: &Keypair) -> Self {
        Composed {
            blocked: Default::default(),
            limits: connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established_per_peer(Some(1)),
            ),
            ping: ping::Behaviour::new(ping::Config::new()),
        }
    }

    fn preload(&mut self, count: usize) {
        for _ in 0..count {
            self.blocked.block_peer(PeerId::random());
        }
    }
}

/// (c)
impl Setup for manager::Behaviour {
    fn new(key: &Keypair) -> Self {
        manager::Behaviour::new(key.public().to_peer_id(), manager::Config::default())
    }

    fn preload(&mut self, count: usize) {
        for n in 0..count {
            self.ban_peer(PeerId::random(), Some(BAN_DURATION));
            self.add_address(PeerId::random(), distinct_address(n));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    Composed,
    Managed,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Bare, Variant::Composed, Variant::Managed];

    fn label(self) -> &'static str {
        match self {
            Variant::Bare => "(a) bare: ping",
            Variant::Composed => "(b) ping + connection_limits + allow_block_list",
            Variant::Managed => "(c) connection manager",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The order of round `round`: each configuration starts a round in turn.
    fn rotation(round: usize) -> impl Iterator<Item = Variant> {
        (0..3).map(move |i| Self::ALL[(round + i) % 3])
    }
}

/// `/ip4/10.b.c.d/tcp/4001`, a different address for every `n` below 2^24.
fn distinct_address(n: usize) -> Multiaddr {
    let [_, b, c, d] = (n as u32).to_be_bytes();
    Multiaddr::empty()
        .with(Protocol::Ip4(Ipv4Addr::new(10, b, c, d)))
        .with(Protocol::Tcp(4001))
}

// ---------------------------------------------------------------------------------------------
// Swarms
// ---------------------------------------------------------------------------------------------

fn mesh_swarm<B: Setup>(transport: MeshTransport) -> anyhow::Result<Swarm<B>> {
    let builder = SwarmBuilder::with_new_identity().with_tokio();
    Ok(match transport {
        MeshTransport::Tcp => builder
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(B::new)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
            .build(),
        MeshTransport::Quic => builder
            .with_quic()
            .with_behaviour(B::new)?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
            .build(),
    })
}

/// The in-memory transport upgraded with noise and yamux like the TCP builder does, except for
/// `Version::V1` instead of `V1Lazy`: with lazy negotiation the dialer counts the connection
/// established before the listener has, and a dialer that closes at once leaves the listener
/// with a failed upgrade instead of a connection.
fn memory_swarm<B: Setup>() -> anyhow::Result<Swarm<B>> {
    memory_swarm_with(|key| Ok(B::new(key)))
}

/// [`memory_swarm`] with the behaviour built by `make`.
fn memory_swarm_with<B: NetworkBehaviour>(
    make: impl FnOnce(&Keypair) -> Result<B, BoxError>,
) -> anyhow::Result<Swarm<B>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_other_transport(|key| -> Result<_, BoxError> {
            Ok(MemoryTransport::default()
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })?
        .with_behaviour(make)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build())
}

async fn listen<B: Setup>(swarm: &mut Swarm<B>, address: &str) -> anyhow::Result<Multiaddr> {
    swarm.listen_on(address.parse()?)?;
    let bound = async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    };
    timeout(Duration::from_secs(5), bound)
        .await
        .context("no listen address within 5 s")
}

/// Handles every event the swarm has ready now (preloading queues thousands of behaviour
/// events), so that none of them lands inside a measurement.
fn drain_ready<B: Setup>(swarm: &mut Swarm<B>) {
    while swarm.next().now_or_never().flatten().is_some() {}
}

fn dial_opts(peer: PeerId, address: Multiaddr) -> DialOpts {
    DialOpts::peer_id(peer)
        .addresses(vec![address])
        .condition(PeerCondition::Always)
        .build()
}

// ---------------------------------------------------------------------------------------------
// Workload 1: the mesh
// ---------------------------------------------------------------------------------------------

/// What a node tells the coordinator after a connection-level event.
#[derive(Debug)]
struct Report {
    node: usize,
    at: Instant,
    /// The node's connections in their handshake, after the event.
    pending: u32,
    change: Change,
}

#[derive(Debug)]
enum Change {
    /// A connection to the peer opened or closed; the node now has this many to it.
    Pair(PeerId, u32),
    /// A dial or an inbound connection failed (or was denied).
    Failed,
    /// A dial or an inbound connection started, or the node was released.
    Other,
}

fn change_of<E>(event: &SwarmEvent<E>) -> Option<Change> {
    match event {
        SwarmEvent::ConnectionEstablished {
            peer_id,
            num_established,
            ..
        } => Some(Change::Pair(*peer_id, num_established.get())),
        SwarmEvent::ConnectionClosed {
            peer_id,
            num_established,
            ..
        } => Some(Change::Pair(*peer_id, *num_established)),
        SwarmEvent::OutgoingConnectionError { .. } | SwarmEvent::IncomingConnectionError { .. } => {
            Some(Change::Failed)
        }
        SwarmEvent::Dialing { .. } | SwarmEvent::IncomingConnection { .. } => Some(Change::Other),
        _ => None,
    }
}

fn report<B: Setup>(node: usize, swarm: &Swarm<B>, change: Change) -> Report {
    Report {
        node,
        at: Instant::now(),
        pending: swarm.network_info().connection_counters().num_pending(),
        change,
    }
}

/// One mesh node: waits for the release, dials every target, then reports every
/// connection-level event until it is aborted.
async fn run_node<B: Setup>(
    node: usize,
    mut swarm: Swarm<B>,
    targets: Vec<(PeerId, Multiaddr)>,
    mut release: watch::Receiver<bool>,
    reports: mpsc::UnboundedSender<Report>,
) {
    if release.wait_for(|go| *go).await.is_err() {
        return;
    }
    for (peer, address) in targets {
        if swarm.dial(dial_opts(peer, address)).is_err() {
            let _ = reports.send(report(node, &swarm, Change::Failed));
        }
    }
    if reports.send(report(node, &swarm, Change::Other)).is_err() {
        return;
    }
    loop {
        let event = swarm.select_next_some().await;
        if let Some(change) = change_of(&event) {
            if reports.send(report(node, &swarm, change)).is_err() {
                return;
            }
        }
    }
}

/// The coordinator's view of the mesh, built from the reports.
struct MeshState {
    index: HashMap<PeerId, usize>,
    /// `counts[i][j]`: connections node `i` has to node `j`.
    counts: Vec<Vec<u32>>,
    pending: Vec<u32>,
    heard: Vec<bool>,
    released: Instant,
    last_change: Instant,
    last_activity: Instant,
    failures: usize,
}

impl MeshState {
    fn new(peers: &[PeerId], released: Instant) -> Self {
        let n = peers.len();
        Self {
            index: peers.iter().enumerate().map(|(i, p)| (*p, i)).collect(),
            counts: vec![vec![0; n]; n],
            pending: vec![0; n],
            heard: vec![false; n],
            released,
            last_change: released,
            last_activity: released,
            failures: 0,
        }
    }

    fn apply(&mut self, report: Report) {
        self.heard[report.node] = true;
        self.pending[report.node] = report.pending;
        self.last_activity = self.last_activity.max(report.at);
        match report.change {
            Change::Pair(peer, connections) => {
                if let Some(&other) = self.index.get(&peer) {
                    self.counts[report.node][other] = connections;
                }
                self.last_change = self.last_change.max(report.at);
            }
            Change::Failed => self.failures += 1,
            Change::Other => {}
        }
    }

    /// Every node heard from, nothing in flight, both ends of every pair agree.
    fn stable(&self) -> bool {
        let n = self.counts.len();
        self.heard.iter().all(|h| *h)
            && self.pending.iter().all(|p| *p == 0)
            && (0..n).all(|i| (0..i).all(|j| self.counts[i][j] == self.counts[j][i]))
    }

    /// Pairs by connections: 0, 1, 2, 3 or more (as the lower-indexed node counts them).
    fn pairs(&self) -> [usize; 4] {
        let mut pairs = [0; 4];
        let n = self.counts.len();
        for i in 0..n {
            for j in i + 1..n {
                pairs[(self.counts[i][j] as usize).min(3)] += 1;
            }
        }
        pairs
    }

    fn connections(&self) -> u32 {
        let n = self.counts.len();
        (0..n)
            .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
            .map(|(i, j)| self.counts[i][j])
            .sum()
    }
}

/// Waits until the mesh settles (see the module docs), or `deadline`. Returns the settle time.
async fn await_settled(
    state: &mut MeshState,
    reports: &mut mpsc::UnboundedReceiver<Report>,
    quiet: Duration,
    deadline: Instant,
) -> Option<Duration> {
    loop {
        let quiet_end = state.last_activity + quiet;
        let now = Instant::now();
        if now >= quiet_end && state.stable() {
            return Some(state.last_change - state.released);
        }
        // Quiet but not stable: only a report can change that, so wait for one.
        let wake = if now < quiet_end {
            quiet_end.min(deadline)
        } else {
            deadline
        };
        match timeout_at(wake, reports.recv()).await {
            Ok(Some(report)) => state.apply(report),
            Ok(None) => return None,
            Err(_) if wake >= deadline => return None,
            Err(_) => {}
        }
    }
}

#[derive(Debug, Clone)]
struct MeshRun {
    settled: Option<Duration>,
    connections: u32,
    pairs: [usize; 4],
    failures: usize,
}

/// The mesh's nodes, each in its own task, waiting for the release.
struct Mesh {
    peers: Vec<PeerId>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    release: watch::Sender<bool>,
    reports: mpsc::UnboundedReceiver<Report>,
}

/// Starts `nodes` listening swarms, each told to dial all the others once released.
async fn spawn_mesh<B: Setup>(nodes: usize, transport: MeshTransport) -> anyhow::Result<Mesh> {
    let mut swarms = Vec::with_capacity(nodes);
    let mut peers = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        let mut swarm = mesh_swarm::<B>(transport)?;
        let address = listen(&mut swarm, transport.listen_address()).await?;
        peers.push((*swarm.local_peer_id(), address));
        swarms.push(swarm);
    }
    let (release, released) = watch::channel(false);
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let tasks = swarms
        .into_iter()
        .enumerate()
        .map(|(node, swarm)| {
            let mut targets = peers.clone();
            targets.remove(node);
            tokio::spawn(run_node(
                node,
                swarm,
                targets,
                released.clone(),
                reports_tx.clone(),
            ))
        })
        .collect();
    Ok(Mesh {
        peers: peers.into_iter().map(|(peer, _)| peer).collect(),
        tasks,
        release,
        reports,
    })
}

async fn mesh_run_with<B: Setup>(args: &Args, transport: MeshTransport) -> anyhow::Result<MeshRun> {
    let mut mesh = spawn_mesh::<B>(args.nodes, transport).await?;
    let start = Instant::now();
    let mut state = MeshState::new(&mesh.peers, start);
    mesh.release.send(true)?;
    let deadline = start + Duration::from_secs(args.deadline_secs);
    let quiet = Duration::from_millis(args.quiet_ms);
    let settled = await_settled(&mut state, &mut mesh.reports, quiet, deadline).await;
    for task in &mesh.tasks {
        task.abort();
    }
    for task in mesh.tasks {
        let _ = task.await;
    }
    Ok(MeshRun {
        settled,
        connections: state.connections(),
        pairs: state.pairs(),
        failures: state.failures,
    })
}

async fn mesh_run(
    variant: Variant,
    args: &Args,
    transport: MeshTransport,
) -> anyhow::Result<MeshRun> {
    match variant {
        Variant::Bare => mesh_run_with::<ping::Behaviour>(args, transport).await,
        Variant::Composed => mesh_run_with::<Composed>(args, transport).await,
        Variant::Managed => mesh_run_with::<manager::Behaviour>(args, transport).await,
    }
}

/// The runs of the mesh over each transport of `--transport`.
type Meshes = Vec<(MeshTransport, [Vec<MeshRun>; 3])>;

async fn mesh_workloads(args: &Args) -> anyhow::Result<Meshes> {
    let mut meshes = Vec::new();
    for &transport in &args.transport {
        meshes.push((transport, mesh_workload(args, transport).await?));
    }
    Ok(meshes)
}

async fn mesh_workload(args: &Args, transport: MeshTransport) -> anyhow::Result<[Vec<MeshRun>; 3]> {
    let mut runs: [Vec<MeshRun>; 3] = Default::default();
    for round in 0..args.mesh_runs {
        for variant in Variant::rotation(round) {
            let run = mesh_run(variant, args, transport).await?;
            eprintln!(
                "mesh {} {}/{} {}: {} connections, settled {}",
                transport.label(),
                round + 1,
                args.mesh_runs,
                variant.label(),
                run.connections,
                settle_text(run.settled)
            );
            runs[variant.index()].push(run);
        }
    }
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// Workloads 2 and 3: churn
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Churn {
    cycles: u64,
    elapsed: Duration,
    failures: u64,
    /// Cycles per second of each slot.
    slot_rates: Vec<f64>,
}

impl Churn {
    fn rate(&self) -> f64 {
        self.cycles as f64 / self.elapsed.as_secs_f64()
    }

    /// The median over rounds of this configuration's rate over `base`'s in the same round.
    fn paired_ratio(&self, base: &Churn) -> f64 {
        let mut ratios: Vec<f64> = self
            .slot_rates
            .iter()
            .zip(&base.slot_rates)
            .map(|(rate, base)| rate / base)
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    }

    fn add(&mut self, slot: Churn) {
        self.cycles += slot.cycles;
        self.elapsed += slot.elapsed;
        self.failures += slot.failures;
        self.slot_rates.push(slot.rate());
    }
}

/// Where one establish + close cycle stands. It ends once both sides are done with the
/// connection: closed it, or failed it (then the cycle counts as a failure, not a cycle).
#[derive(Debug, Default)]
struct Cycle {
    dialer_done: bool,
    listener_done: bool,
    failed: bool,
}

/// Churns for `length` between two fresh swarms preloaded with `preload` bans and peers.
async fn churn_slot<B: Setup>(length: Duration, preload: usize) -> anyhow::Result<Churn> {
    let mut listener = memory_swarm::<B>()?;
    let mut dialer = memory_swarm::<B>()?;
    listener.behaviour_mut().preload(preload);
    dialer.behaviour_mut().preload(preload);
    churn_between(&mut listener, &mut dialer, length).await
}

/// Churns for `length`: `dialer` dials `listener`, closes once established, and again.
async fn churn_between<B: Setup>(
    listener: &mut Swarm<B>,
    dialer: &mut Swarm<B>,
    length: Duration,
) -> anyhow::Result<Churn> {
    let address = listen(listener, "/memory/0").await?;
    drain_ready(listener);
    drain_ready(dialer);
    let target = *listener.local_peer_id();

    let mut slot = Churn::default();
    let mut cycle = Cycle::default();
    let start = Instant::now();
    dialer.dial(dial_opts(target, address.clone()))?;
    loop {
        let step = async {
            tokio::select! {
                event = dialer.select_next_some() => on_dialer_event(dialer, event, &mut cycle),
                event = listener.select_next_some() => on_listener_event(event, &mut cycle),
            }
        };
        timeout(CHURN_STALL, step)
            .await
            .context("churn stalled: no event for 10 s")?;
        if !(cycle.dialer_done && cycle.listener_done) {
            continue;
        }
        if cycle.failed {
            slot.failures += 1;
        } else {
            slot.cycles += 1;
        }
        cycle = Cycle::default();
        if start.elapsed() >= length {
            break;
        }
        dialer.dial(dial_opts(target, address.clone()))?;
    }
    slot.elapsed = start.elapsed();
    Ok(slot)
}

fn on_dialer_event<B: Setup>(
    dialer: &mut Swarm<B>,
    event: SwarmEvent<B::ToSwarm>,
    cycle: &mut Cycle,
) {
    match event {
        SwarmEvent::ConnectionEstablished { peer_id, .. } => {
            let _ = dialer.disconnect_peer_id(peer_id);
        }
        SwarmEvent::ConnectionClosed { .. } => cycle.dialer_done = true,
        SwarmEvent::OutgoingConnectionError { .. } => {
            cycle.dialer_done = true;
            cycle.failed = true;
        }
        _ => {}
    }
}

fn on_listener_event<E>(event: SwarmEvent<E>, cycle: &mut Cycle) {
    match event {
        SwarmEvent::ConnectionClosed { .. } => cycle.listener_done = true,
        SwarmEvent::IncomingConnectionError { .. } => {
            cycle.listener_done = true;
            cycle.failed = true;
        }
        _ => {}
    }
}

async fn churn_variant(
    variant: Variant,
    length: Duration,
    preload: usize,
) -> anyhow::Result<Churn> {
    match variant {
        Variant::Bare => churn_slot::<ping::Behaviour>(length, preload).await,
        Variant::Composed => churn_slot::<Composed>(length, preload).await,
        Variant::Managed => churn_slot::<manager::Behaviour>(length, preload).await,
    }
}

async fn churn_workload(args: &Args, preload: usize) -> anyhow::Result<[Churn; 3]> {
    let rounds = args.rounds.max(1);
    let slot = Duration::from_secs(args.churn_secs) / rounds as u32;
    let mut totals: [Churn; 3] = Default::default();
    for round in 0..rounds {
        for variant in Variant::rotation(round) {
            let churn = churn_variant(variant, slot, preload).await?;
            totals[variant.index()].add(churn);
        }
    }
    for variant in Variant::ALL {
        eprintln!(
            "churn (preload {preload}) {}: {:.0} cycles/s",
            variant.label(),
            totals[variant.index()].rate()
        );
    }
    Ok(totals)
}

// ---------------------------------------------------------------------------------------------
// Workload 4: the peer store
// ---------------------------------------------------------------------------------------------

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where the manager keeps its peers in the peer-store workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    /// No store: the manager as in (c).
    Without,
    /// `store::MemoryStore`.
    Memory,
    /// `store::RedbStore` in a file of a temporary directory.
    #[cfg(feature = "redb")]
    Redb,
}

impl StoreKind {
    /// The kinds this build measures (the redb one needs `--features redb`).
    fn all() -> Vec<StoreKind> {
        let kinds = vec![StoreKind::Without, StoreKind::Memory];
        #[cfg(feature = "redb")]
        let kinds = [kinds, vec![StoreKind::Redb]].concat();
        kinds
    }

    fn label(self) -> &'static str {
        match self {
            StoreKind::Without => "(c) connection manager, no store",
            StoreKind::Memory => "(d) (c) + `MemoryStore`",
            #[cfg(feature = "redb")]
            StoreKind::Redb => "(e) (c) + `RedbStore` (temp file)",
        }
    }
}

/// What the behaviours handed to their stores during a slot.
#[derive(Debug, Default)]
struct StoreStats {
    batches: AtomicU64,
    ops: AtomicU64,
    write_nanos: AtomicU64,
    max_write_nanos: AtomicU64,
    /// Of `write_nanos`, the time the swarm's thread waited for a CPU.
    wait_nanos: AtomicU64,
}

/// Nanoseconds the current thread has spent waiting for a CPU (runnable, not running), from
/// Linux's `/proc/thread-self/schedstat`; `None` where that is not readable.
fn run_delay() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A store that counts the batches the behaviour hands it and times `write`, which runs on the
/// swarm's task (the conversion of the journal before it is not included).
struct Counted<S> {
    inner: S,
    stats: Arc<StoreStats>,
}

impl<S: PeerStore> PeerStore for Counted<S> {
    fn load(&mut self) -> Result<StoredState, StoreError> {
        self.inner.load()
    }

    fn write(&mut self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        let count = ops.len() as u64;
        let waited = run_delay();
        let start = std::time::Instant::now();
        let result = self.inner.write(ops);
        let nanos = start.elapsed().as_nanos() as u64;
        if let Some((before, after)) = waited.zip(run_delay()) {
            self.stats
                .wait_nanos
                .fetch_add(after.saturating_sub(before), Ordering::Relaxed);
        }
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats.ops.fetch_add(count, Ordering::Relaxed);
        self.stats.write_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.stats
            .max_write_nanos
            .fetch_max(nanos, Ordering::Relaxed);
        result
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        self.inner.flush()
    }
}

/// Writes `count` disposable peers (not wanted, no tags, last seen an hour ago) into `store`.
fn prefill(store: &mut impl PeerStore, count: usize) -> Result<(), StoreError> {
    if count == 0 {
        return Ok(());
    }
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let ops = (0..count)
        .map(|n| {
            StoreOp::UpdatePeer(
                PeerId::random(),
                StoredUpdate {
                    wanted: false,
                    addresses: Some(vec![distinct_address(n)]),
                    protected: Vec::new(),
                    tags: Vec::new(),
                    last_disconnect: Some(StoredDisconnect {
                        reason: manager::DisconnectReason::Normal,
                        closed_by: ClosedBy::Local,
                        at: an_hour_ago,
                        retry_after: None,
                    }),
                },
            )
        })
        .collect();
    store.write(ops)?;
    store.flush()
}

/// The stores of one slot: builds the behaviours, and counts what the stores hold afterwards.
struct Stores {
    kind: StoreKind,
    preload: usize,
    stats: Arc<StoreStats>,
    memories: Vec<MemoryStore>,
    #[cfg(feature = "redb")]
    dir: tempfile::TempDir,
    #[cfg(feature = "redb")]
    files: Vec<std::path::PathBuf>,
}

impl Stores {
    fn new(kind: StoreKind, preload: usize) -> anyhow::Result<Self> {
        Ok(Self {
            kind,
            preload,
            stats: Arc::default(),
            memories: Vec::new(),
            #[cfg(feature = "redb")]
            dir: tempfile::tempdir()?,
            #[cfg(feature = "redb")]
            files: Vec::new(),
        })
    }

    /// The manager with `Config::default()` for `key`, with a store of this slot's kind.
    fn behaviour(&mut self, key: &Keypair) -> Result<manager::Behaviour, BoxError> {
        let local = key.public().to_peer_id();
        let behaviour = manager::Behaviour::new(local, manager::Config::default());
        let stats = self.stats.clone();
        Ok(match self.kind {
            StoreKind::Without => behaviour,
            StoreKind::Memory => {
                let mut store = MemoryStore::new();
                prefill(&mut store, self.preload)?;
                self.memories.push(store.clone());
                behaviour.with_store(Counted {
                    inner: store,
                    stats,
                })?
            }
            #[cfg(feature = "redb")]
            StoreKind::Redb => {
                let path = self.dir.path().join(format!("{local}.redb"));
                let mut store = RedbStore::open(&path)?;
                prefill(&mut store, self.preload)?;
                self.files.push(path);
                behaviour.with_store(Counted {
                    inner: store,
                    stats,
                })?
            }
        })
    }

    /// Peers in all the stores of the slot; call it once the swarms are dropped (which writes
    /// their last changes).
    fn stored_peers(&self) -> anyhow::Result<usize> {
        let in_memory: usize = self.memories.iter().map(|m| m.snapshot().peers.len()).sum();
        #[cfg(feature = "redb")]
        let in_files = {
            let mut peers = 0;
            for file in &self.files {
                peers += RedbStore::open(file)?.load()?.peers.len();
            }
            peers
        };
        #[cfg(not(feature = "redb"))]
        let in_files = 0;
        Ok(in_memory + in_files)
    }
}

/// CPU time of the threads named `peer-store` (the `RedbStore` writers), from Linux's
/// `/proc/self/task/*/schedstat` (nanoseconds on the CPU); `None` where that is not readable.
fn store_threads_cpu() -> Option<Duration> {
    let mut nanos = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = entry.path();
        // A thread that exited meanwhile has no files left: skip it.
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if name.trim() != "peer-store" {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        nanos += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(nanos))
}

/// One configuration's peer-store churn, over all its slots.
#[derive(Debug, Default, Clone)]
struct StoreChurn {
    churn: Churn,
    batches: u64,
    ops: u64,
    write_time: Duration,
    max_write: Duration,
    write_wait: Duration,
    writer_cpu: Option<Duration>,
    stored_peers: usize,
}

impl StoreChurn {
    fn add(&mut self, slot: StoreChurn) {
        self.churn.add(slot.churn);
        self.batches += slot.batches;
        self.ops += slot.ops;
        self.write_time += slot.write_time;
        self.max_write = self.max_write.max(slot.max_write);
        self.write_wait += slot.write_wait;
        self.writer_cpu = match (self.writer_cpu, slot.writer_cpu) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.stored_peers += slot.stored_peers;
    }
}

/// The slot's figures, read while its swarms (and stores) are still alive.
fn store_slot(churn: Churn, stores: &Stores, cpu_start: Option<Duration>) -> StoreChurn {
    let stats = &stores.stats;
    StoreChurn {
        churn,
        batches: stats.batches.load(Ordering::Relaxed),
        ops: stats.ops.load(Ordering::Relaxed),
        write_time: Duration::from_nanos(stats.write_nanos.load(Ordering::Relaxed)),
        max_write: Duration::from_nanos(stats.max_write_nanos.load(Ordering::Relaxed)),
        write_wait: Duration::from_nanos(stats.wait_nanos.load(Ordering::Relaxed)),
        writer_cpu: store_threads_cpu()
            .zip(cpu_start)
            .map(|(end, start)| end.saturating_sub(start)),
        stored_peers: 0,
    }
}

/// Workload 2 with a store of `kind` on both swarms: one peer, churned.
async fn store_pair_slot(
    kind: StoreKind,
    length: Duration,
    preload: usize,
) -> anyhow::Result<StoreChurn> {
    let mut stores = Stores::new(kind, preload)?;
    let mut slot = {
        let mut listener = memory_swarm_with(|key| stores.behaviour(key))?;
        let mut dialer = memory_swarm_with(|key| stores.behaviour(key))?;
        let cpu_start = store_threads_cpu();
        let churn = churn_between(&mut listener, &mut dialer, length).await?;
        store_slot(churn, &stores, cpu_start)
    };
    slot.stored_peers = stores.stored_peers()?;
    Ok(slot)
}

/// A listener with a store of `kind`; each cycle a new dialer (a `ping` swarm with a fresh
/// identity) dials it and closes once established, so the listener records a new peer every
/// cycle. Building the dialer is part of the cycle, the same in every configuration.
async fn store_distinct_slot(
    kind: StoreKind,
    length: Duration,
    preload: usize,
) -> anyhow::Result<StoreChurn> {
    let mut stores = Stores::new(kind, preload)?;
    let mut slot = {
        let mut listener = memory_swarm_with(|key| stores.behaviour(key))?;
        let address = listen(&mut listener, "/memory/0").await?;
        drain_ready(&mut listener);
        let target = *listener.local_peer_id();
        let cpu_start = store_threads_cpu();
        let mut churn = Churn::default();
        let start = Instant::now();
        loop {
            let mut dialer = memory_swarm::<ping::Behaviour>()?;
            dialer.dial(dial_opts(target, address.clone()))?;
            let mut cycle = Cycle::default();
            while !(cycle.dialer_done && cycle.listener_done) {
                let step = async {
                    tokio::select! {
                        event = dialer.select_next_some() => on_dialer_event(&mut dialer, event, &mut cycle),
                        event = listener.select_next_some() => on_listener_event(event, &mut cycle),
                    }
                };
                timeout(CHURN_STALL, step)
                    .await
                    .context("distinct-peer churn stalled: no event for 10 s")?;
            }
            if cycle.failed {
                churn.failures += 1;
            } else {
                churn.cycles += 1;
            }
            if start.elapsed() >= length {
                break;
            }
        }
        churn.elapsed = start.elapsed();
        store_slot(churn, &stores, cpu_start)
    };
    slot.stored_peers = stores.stored_peers()?;
    Ok(slot)
}

/// One peer-store workload: every store kind for `--store-secs`, in `--store-rounds` slots
/// interleaved with a rotating start.
async fn store_workload(args: &Args, distinct: bool) -> anyhow::Result<Vec<StoreChurn>> {
    let kinds = StoreKind::all();
    let rounds = args.store_rounds.max(1);
    let slot = Duration::from_secs(args.store_secs) / rounds as u32;
    let mut totals = vec![StoreChurn::default(); kinds.len()];
    for round in 0..rounds {
        for i in 0..kinds.len() {
            let index = (round + i) % kinds.len();
            let kind = kinds[index];
            let result = if distinct {
                store_distinct_slot(kind, slot, args.store_preload).await?
            } else {
                store_pair_slot(kind, slot, args.store_preload).await?
            };
            totals[index].add(result);
        }
    }
    for (kind, total) in kinds.iter().zip(&totals) {
        eprintln!(
            "store churn ({}) {}: {:.0} cycles/s, {} changes in {} batches",
            if distinct {
                "distinct peers"
            } else {
                "one peer"
            },
            kind.label(),
            total.churn.rate(),
            total.ops,
            total.batches
        );
    }
    Ok(totals)
}

// ---------------------------------------------------------------------------------------------
// The sans-IO core: cost per event and memory
// ---------------------------------------------------------------------------------------------

/// As in `benches/core.rs`: no limits, no inactivity timer.
fn quiet_config() -> manager::Config {
    manager::Config::default()
        .with_limits(Limits::unlimited())
        .with_inactivity_timeout(None)
}

fn inbound(address: &Multiaddr) -> NewConnection {
    NewConnection::new(Initiator::Remote, Endpoint::Listener, address.clone())
}

/// Establishes one inbound connection from a new peer at `address`.
fn establish(manager: &mut Manager, now: web_time::Instant, id: usize, address: &Multiaddr) {
    let peer = PeerId::random();
    let connection = ConnectionId::new_unchecked(id);
    manager
        .check_established(now, connection, peer, &inbound(address))
        .expect("accepted");
    manager.on_established(now, connection, peer, inbound(address));
    while manager.poll_action().is_some() {}
}

/// A manager with `peers` inbound connections from different peers.
fn connected_manager(peers: usize, now: web_time::Instant) -> Manager {
    let mut manager = Manager::new(PeerId::random(), quiet_config(), now, 7);
    let address: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().expect("address");
    for id in 0..peers {
        establish(&mut manager, now, id, &address);
    }
    manager
}

/// The cost of one admit + establish + close for each of [`CORE_SIZES`] connected peers: the
/// median of [`CORE_BATCHES`] batches, the sizes taking turns batch by batch so that a change
/// in the machine's load hits all of them.
fn core_costs() -> Vec<(usize, Duration)> {
    let now = web_time::Instant::now();
    let address: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().expect("address");
    let mut runs: Vec<(Manager, usize, Vec<Duration>)> = CORE_SIZES
        .iter()
        .map(|&peers| (connected_manager(peers, now), peers, Vec::new()))
        .collect();
    for _ in 0..CORE_BATCHES {
        for (manager, next, batches) in &mut runs {
            let start = std::time::Instant::now();
            for _ in 0..CORE_EVENTS {
                *next += 1;
                one_event(manager, now, *next, &address);
            }
            batches.push(start.elapsed() / CORE_EVENTS);
        }
    }
    CORE_SIZES
        .iter()
        .zip(runs)
        .map(|(&peers, (_, _, mut batches))| {
            batches.sort();
            (peers, batches[CORE_BATCHES / 2])
        })
        .collect()
}

fn one_event(manager: &mut Manager, now: web_time::Instant, id: usize, address: &Multiaddr) {
    let peer = PeerId::random();
    let connection = ConnectionId::new_unchecked(id);
    manager
        .on_pending_inbound(now, connection, address)
        .expect("admitted");
    manager
        .check_established(now, connection, peer, &inbound(address))
        .expect("accepted");
    manager.on_established(now, connection, peer, inbound(address));
    manager.on_closed(now, connection, peer, CloseCause::Transport);
    while let Some(action) = manager.poll_action() {
        black_box(action);
    }
}

/// Connection events between two hand-overs of the journal: the default
/// `StoreConfig::max_batch` (the behaviour hands over sooner only when fewer events than this
/// happen in its 1 s flush interval).
const JOURNAL_BATCH: usize = 1024;
/// Batches per measurement of the journal's cost (more than [`CORE_BATCHES`]: the difference
/// is small).
const JOURNAL_BATCHES: usize = 9;

/// The cost of one connection event with the store's journal off and on, with `peers`
/// connected.
#[derive(Debug)]
struct JournalCost {
    peers: usize,
    /// Per event, journal off (median of the batches).
    off: Duration,
    /// Per event, journal on, the changes taken every [`JOURNAL_BATCH`] events (median).
    on: Duration,
    /// Of `on`, the part in `take_changes` (and dropping what it returned), per event (median).
    take: Duration,
    /// The median over batches of on / off in the same batch.
    paired: f64,
    /// The lowest and highest of those ratios.
    spread: (f64, f64),
}

/// A run of connection events on one manager, for [`journal_costs`].
struct JournalRun {
    manager: Manager,
    next: usize,
    journaled: bool,
    batches: Vec<Duration>,
    takes: Vec<Duration>,
}

impl JournalRun {
    fn new(peers: usize, journaled: bool, now: web_time::Instant) -> Self {
        let mut manager = connected_manager(peers, now);
        manager.track_changes(journaled);
        Self {
            manager,
            next: peers,
            journaled,
            batches: Vec::new(),
            takes: Vec::new(),
        }
    }

    /// One batch of [`CORE_EVENTS`] events; records the time per event and the part of it in
    /// `take_changes`.
    fn batch(&mut self, now: web_time::Instant, address: &Multiaddr) {
        let mut take = Duration::ZERO;
        let start = std::time::Instant::now();
        for _ in 0..CORE_EVENTS {
            self.next += 1;
            one_event(&mut self.manager, now, self.next, address);
            if self.journaled && self.next.is_multiple_of(JOURNAL_BATCH) {
                let taking = std::time::Instant::now();
                drop(black_box(self.manager.take_changes()));
                take += taking.elapsed();
            }
        }
        self.batches.push(start.elapsed() / CORE_EVENTS);
        self.takes.push(take / CORE_EVENTS);
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

/// The cost of one connection event (as in [`core_costs`]) with the journal a peer store
/// needs off and on (`Manager::track_changes`), every new peer journaled and the changes taken
/// every [`JOURNAL_BATCH`] events as the behaviour's store driver does (it then converts them
/// and hands them to the store: not included). Off and on run batch by batch in turn, their
/// order alternating, so that a change in the machine's load hits both.
fn journal_costs() -> Vec<JournalCost> {
    let now = web_time::Instant::now();
    let address: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().expect("address");
    CORE_SIZES
        .iter()
        .map(|&peers| {
            let mut off = JournalRun::new(peers, false, now);
            let mut on = JournalRun::new(peers, true, now);
            for batch in 0..JOURNAL_BATCHES {
                if batch % 2 == 0 {
                    off.batch(now, &address);
                    on.batch(now, &address);
                } else {
                    on.batch(now, &address);
                    off.batch(now, &address);
                }
            }
            let mut ratios: Vec<f64> = on
                .batches
                .iter()
                .zip(&off.batches)
                .map(|(on, off)| on.as_secs_f64() / off.as_secs_f64())
                .collect();
            ratios.sort_by(f64::total_cmp);
            JournalCost {
                peers,
                off: median(off.batches),
                on: median(on.batches),
                take: median(on.takes),
                paired: ratios[ratios.len() / 2],
                spread: (ratios[0], ratios[ratios.len() - 1]),
            }
        })
        .collect()
}

#[derive(Debug)]
struct Memory {
    count: usize,
    /// (bytes, blocks) retained by `count` tracked peers, connected peers, bans.
    tracked: (isize, isize),
    connected: (isize, isize),
    bans: (isize, isize),
}

fn memory(count: usize) -> Memory {
    let now = web_time::Instant::now();
    // The default limits cap established inbound connections at 256: the measure needs 10,000.
    let config = manager::Config::default()
        .with_limits(Limits::unlimited())
        .without_watermarks();
    let fresh = || Manager::new(PeerId::random(), config.clone(), now, 7);
    // The thread-local RNG behind `PeerId::random` allocates on first use.
    black_box(PeerId::random());

    let mut tracked = fresh();
    let tracked_bytes = retained_by(|| {
        for n in 0..count {
            tracked.add_address(PeerId::random(), distinct_address(n));
        }
    });
    assert_eq!(tracked.tracked_peers(), count);

    let mut connected = fresh();
    let connected_bytes = retained_by(|| {
        for n in 0..count {
            establish(&mut connected, now, n, &distinct_address(n));
        }
    });
    assert_eq!(connected.established_connections(), count);

    let mut banned = fresh();
    let ban_bytes = retained_by(|| {
        for _ in 0..count {
            banned.ban_peer(now, PeerId::random(), Some(BAN_DURATION));
        }
        while banned.poll_action().is_some() {}
    });
    Memory {
        count,
        tracked: tracked_bytes,
        connected: connected_bytes,
        bans: ban_bytes,
    }
}

// ---------------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------------

fn settle_text(settled: Option<Duration>) -> String {
    settled.map_or_else(
        || "did not settle".to_owned(),
        |d| format!("{:.3} s", d.as_secs_f64()),
    )
}

/// The median settle time, a run that did not settle counting as infinitely long.
fn median_settle(runs: &[MeshRun]) -> Option<Duration> {
    let mut times: Vec<Option<Duration>> = runs.iter().map(|r| r.settled).collect();
    times.sort_by_key(|t| t.unwrap_or(Duration::MAX));
    times.get(times.len() / 2).copied().flatten()
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

fn join<T>(items: &[T], text: impl Fn(&T) -> String) -> String {
    items.iter().map(text).collect::<Vec<_>>().join(", ")
}

fn mesh_table(out: &mut String, args: &Args, transport: MeshTransport, runs: &[Vec<MeshRun>; 3]) {
    let pairs = args.nodes * (args.nodes - 1) / 2;
    let _ = writeln!(
        out,
        "### 1. Mesh: {} nodes on {}, all dialing all at once\n\n\
         Each node a swarm in its own task (multi-thread runtime); released together, every node \
         `Swarm::dial`s every other (default port reuse). {pairs} pairs; {} runs per configuration, interleaved. Settled = no connection \
         opened, closed or failed for {} ms, nothing pending on any node, both ends of every \
         pair agree; the time is that of the last open or close, from the release; deadline {} s.\n",
        args.nodes,
        transport.title(),
        args.mesh_runs,
        args.quiet_ms,
        args.deadline_secs
    );
    let _ = writeln!(
        out,
        "| configuration | connections at end (per run) | pairs with 0 / 1 / 2 / 3+ (all runs) | failed or denied connections (per run) | settled after (per run) | median | ratio to (a) |\n|---|---|---|---|---|---|---|"
    );
    let base = median_settle(&runs[0]);
    for variant in Variant::ALL {
        let runs = &runs[variant.index()];
        let mut pairs = [0; 4];
        for run in runs {
            for (total, n) in pairs.iter_mut().zip(run.pairs) {
                *total += n;
            }
        }
        let median = median_settle(runs);
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} / {} / {} | {} | {} | {} | {} |",
            variant.label(),
            join(runs, |r| r.connections.to_string()),
            pairs[0],
            pairs[1],
            pairs[2],
            pairs[3],
            join(runs, |r| r.failures.to_string()),
            join(runs, |r| settle_text(r.settled)),
            settle_text(median),
            ratio_text(
                median
                    .zip(base)
                    .map(|(m, b)| m.as_secs_f64() / b.as_secs_f64())
            ),
        );
    }
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "n/a".to_owned(), |r| format!("{r:.2}x"))
}

fn churn_table(out: &mut String, title: &str, churn: &[Churn; 3]) {
    let _ = writeln!(
        out,
        "{title}\n\n| configuration | cycles | seconds | cycles/s | per slot (min - max) | failed cycles | ratio to (a) | per-round ratio to (a), median |\n|---|---|---|---|---|---|---|---|"
    );
    let base = &churn[0];
    for variant in Variant::ALL {
        let c = &churn[variant.index()];
        let min = c.slot_rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = c.slot_rates.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            out,
            "| {} | {} | {:.2} | {:.0} | {min:.0} - {max:.0} | {} | {:.2}x | {:.2}x |",
            variant.label(),
            c.cycles,
            c.elapsed.as_secs_f64(),
            c.rate(),
            c.failures,
            c.rate() / base.rate(),
            c.paired_ratio(base)
        );
    }
    out.push('\n');
}

fn core_table(out: &mut String, costs: &[(usize, Duration)]) {
    let _ = writeln!(
        out,
        "### Core cost per connection event (sans-IO `Manager`, no swarm)\n\n\
         One inbound connection admitted, checked, established and closed, with N peers \
         connected (the loop of `benches/core.rs`); median of {CORE_BATCHES} batches of \
         {CORE_EVENTS}.\n\n| peers connected | per event | ratio to 1k |\n|---|---|---|"
    );
    let base = costs[0].1.as_secs_f64();
    for (peers, cost) in costs {
        let _ = writeln!(
            out,
            "| {peers} | {:.2} µs | {:.2}x |",
            cost.as_secs_f64() * 1e6,
            cost.as_secs_f64() / base
        );
    }
    out.push('\n');
}

fn memory_table(out: &mut String, memory: &Memory) {
    let n = memory.count;
    let _ = writeln!(
        out,
        "### Memory in the `Manager` (counting global allocator, bytes requested)\n\n\
         | what | bytes retained | live blocks | bytes per item | blocks per item |\n|---|---|---|---|---|"
    );
    let rows = [
        (
            "tracked peers (`add_address`, one address each)",
            memory.tracked,
        ),
        (
            "connected peers (`check_established` + `on_established`, one inbound connection each)",
            memory.connected,
        ),
        ("peer bans (1 h)", memory.bans),
    ];
    for (what, (bytes, blocks)) in rows {
        let _ = writeln!(
            out,
            "| {n} {what} | {bytes} | {blocks} | {:.0} | {:.2} |",
            bytes as f64 / n as f64,
            blocks as f64 / n as f64
        );
    }
    out.push('\n');
}

struct Results {
    /// The machine's load average before and after the run.
    load: (String, String),
    /// The first transport's mesh is the one the goals are checked on.
    meshes: Meshes,
    churn: [Churn; 3],
    loaded: [Churn; 3],
    costs: Vec<(usize, Duration)>,
    memory: Memory,
}

fn goals_table(out: &mut String, args: &Args, r: &Results) {
    let _ = writeln!(
        out,
        "### Goals\n\n| goal | measured | target | result |\n|---|---|---|---|"
    );
    let managed = Variant::Managed.index();
    for (what, churn) in [
        ("churn throughput, (c) / (a)", &r.churn),
        (
            "churn throughput with bans and tracked peers, (c) / (a)",
            &r.loaded,
        ),
    ] {
        let ratio = churn[managed].rate() / churn[0].rate();
        let _ = writeln!(
            out,
            "| {what} | {ratio:.3}x (per-round median {:.3}x) | >= {GOAL_CHURN_RATIO}x | {} |",
            churn[managed].paired_ratio(&churn[0]),
            verdict(ratio >= GOAL_CHURN_RATIO)
        );
    }
    let (transport, mesh) = &r.meshes[0];
    let settle = median_settle(&mesh[managed])
        .zip(median_settle(&mesh[0]))
        .map(|(m, b)| m.as_secs_f64() / b.as_secs_f64());
    let _ = writeln!(
        out,
        "| time until a {}-node mesh ({}) settles (median), (c) / (a) | {} | <= {GOAL_SETTLE_RATIO}x | {} |",
        args.nodes,
        transport.label(),
        settle.map_or_else(|| "n/a".to_owned(), |s| format!("{s:.3}x")),
        verdict(settle.is_some_and(|s| s <= GOAL_SETTLE_RATIO))
    );
    let growth = r.costs.last().expect("costs").1.as_secs_f64() / r.costs[0].1.as_secs_f64();
    let _ = writeln!(
        out,
        "| core cost per event, 100k peers / 1k peers (flat: within {GOAL_FLAT_FACTOR}x for 100x the peers) | {growth:.3}x | <= {GOAL_FLAT_FACTOR}x | {} |",
        verdict(growth <= GOAL_FLAT_FACTOR)
    );
    let n = r.memory.count as f64;
    for (what, bytes) in [
        ("memory per tracked peer", r.memory.tracked.0),
        (
            "memory per connected peer (peer + connection)",
            r.memory.connected.0,
        ),
    ] {
        let per = bytes as f64 / n;
        let _ = writeln!(
            out,
            "| {what} | {per:.0} B | < {GOAL_BYTES_PER_PEER} B | {} |",
            verdict(per < GOAL_BYTES_PER_PEER)
        );
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The quartiles of the per-round ratios of `churn` to `base`.
fn ratio_quartiles(churn: &Churn, base: &Churn) -> (f64, f64, f64) {
    let mut ratios: Vec<f64> = churn
        .slot_rates
        .iter()
        .zip(&base.slot_rates)
        .map(|(rate, base)| rate / base)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: usize| ratios[(ratios.len() - 1) * q / 4];
    (at(1), at(2), at(3))
}

fn store_table(out: &mut String, title: &str, results: &[StoreChurn]) {
    let _ = writeln!(
        out,
        "{title}\n\n| configuration | cycles | cycles/s | per slot (min - max) | failed cycles | ratio to (c) | per-round ratio to (c): median (quartiles) | batches handed over | changes handed over | `write` on the swarm task: total (longest; waiting for a CPU) | writer thread CPU (per cycle) | peers in the stores after |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let base = &results[0].churn;
    for (kind, r) in StoreKind::all().into_iter().zip(results) {
        let c = &r.churn;
        let min = c.slot_rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = c.slot_rates.iter().copied().fold(0.0, f64::max);
        let (q1, median, q3) = ratio_quartiles(c, base);
        let cpu = r.writer_cpu.map_or_else(
            || "n/a".to_owned(),
            |cpu| {
                format!(
                    "{} ({:.1} µs)",
                    millis(cpu),
                    cpu.as_secs_f64() * 1e6 / c.cycles.max(1) as f64
                )
            },
        );
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {min:.0} - {max:.0} | {} | {:.3}x | {median:.3}x ({q1:.3} - {q3:.3}) | {} | {} | {} ({:.0} µs; {}) | {cpu} | {} |",
            kind.label(),
            c.cycles,
            c.rate(),
            c.failures,
            c.rate() / base.rate(),
            r.batches,
            r.ops,
            millis(r.write_time),
            r.max_write.as_secs_f64() * 1e6,
            millis(r.write_wait),
            r.stored_peers,
        );
    }
    out.push('\n');
}

fn render_store(
    args: &Args,
    load: &(String, String),
    one_peer: &[StoreChurn],
    distinct: &[StoreChurn],
    journal: &[JournalCost],
) -> String {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let slot = args.store_secs as f64 / args.store_rounds.max(1) as f64;
    let _ = writeln!(
        out,
        "### 4. Peer store: the churn of (c) with its changes written\n\n\
         (c) without a store; (d) with `MemoryStore`; (e) with `RedbStore` in a temp file \
         (only with `--features redb`). `StoreConfig::default()`: changes handed over every \
         1 s or at 1024 pending. {} s per configuration in {} interleaved slots of {slot:.1} s, \
         each slot with fresh swarms and stores{}. The stores are wrapped to count what is \
         handed over and to time `write` (which runs on the swarm's task; for `RedbStore` it \
         queues the batch for its writer thread). {cores} cores; load average (1, 5, 15 min) {} \
         at the start, {} at the end.\n",
        args.store_secs,
        args.store_rounds,
        if args.store_preload > 0 {
            format!(
                " holding {} disposable peers beforehand",
                args.store_preload
            )
        } else {
            String::new()
        },
        load.0,
        load.1
    );
    if slot < 1.0 {
        let _ = writeln!(
            out,
            "**A slot is shorter than the flush interval: the stores get (almost) nothing \
             while the clock runs.**\n"
        );
    }
    store_table(
        &mut out,
        "#### 4a. One peer: workload 2, both swarms with a store\n\n\
         The dialer churns its one connection to the listener: each side journals one peer, \
         however many cycles.",
        one_peer,
    );
    store_table(
        &mut out,
        "#### 4b. Distinct peers: the listener with a store, a new dialer every cycle\n\n\
         Each cycle a `ping` swarm with a fresh identity dials the listener and closes once \
         established: the listener journals a new peer every cycle. Building the dialer is \
         part of the cycle.",
        distinct,
    );
    let _ = writeln!(
        out,
        "#### 4c. Core: the journal's cost per connection event (sans-IO `Manager`, no swarm)\n\n\
         One inbound connection from a new peer admitted, checked, established and closed (the loop \
         of `benches/core.rs`), with the journal off and on (`track_changes(true)`, as \
         `with_store` sets it); with it on, `take_changes` every {JOURNAL_BATCH} events (its \
         conversion and hand-over to the store not included). Median of {JOURNAL_BATCHES} \
         batches of {CORE_EVENTS}, off and on in turn.\n\n\
         | peers connected | journal off | journal on | difference | of which `take_changes` | on / off per batch: median (min - max) |\n|---|---|---|---|---|---|"
    );
    for cost in journal {
        let _ = writeln!(
            out,
            "| {} | {:.3} µs | {:.3} µs | {:+.3} µs | {:.3} µs | {:.3}x ({:.3} - {:.3}) |",
            cost.peers,
            cost.off.as_secs_f64() * 1e6,
            cost.on.as_secs_f64() * 1e6,
            (cost.on.as_secs_f64() - cost.off.as_secs_f64()) * 1e6,
            cost.take.as_secs_f64() * 1e6,
            cost.paired,
            cost.spread.0,
            cost.spread.1,
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "#### Peer store goal\n\n| goal | measured | target | result |\n|---|---|---|---|"
    );
    let kinds = StoreKind::all();
    for (workload, results) in [("one peer", one_peer), ("distinct peers", distinct)] {
        for (index, kind) in kinds.iter().enumerate().skip(1) {
            let ratio = results[index].churn.rate() / results[0].churn.rate();
            let _ = writeln!(
                out,
                "| churn ({workload}) with {}, / without | {ratio:.3}x (per-round median {:.3}x) | >= {GOAL_CHURN_RATIO}x | {} |",
                kind.label(),
                results[index].churn.paired_ratio(&results[0].churn),
                verdict(ratio >= GOAL_CHURN_RATIO)
            );
        }
    }
    out
}

/// The configurations, the machine and its load, above the tables.
fn configurations_text(out: &mut String, load: &(String, String)) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(
        out,
        "Configurations: (a) `ping` only; (b) `allow_block_list` + `connection_limits` \
         (`max_established_per_peer(1)`) + `ping`; (c) `libp2p_connection_manager::Behaviour` \
         alone with `Config::default()` (it runs ping itself). Every swarm: 60 s idle timeout. \
         {cores} cores; load average (1, 5, 15 min) {} at the start, {} at the end.\n",
        load.0, load.1
    );
}

/// `--mesh-only`: the mesh table of each transport, then their medians side by side.
fn render_meshes(args: &Args, load: &(String, String), meshes: &Meshes) -> String {
    let mut out = String::new();
    configurations_text(&mut out, load);
    for (transport, mesh) in meshes {
        mesh_table(&mut out, args, *transport, mesh);
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "### Mesh by transport: median settle time, and ratios to (a) on the same transport\n\n\
         | transport | (a) bare | (b) composed | (c) manager | (b) / (a) | (c) / (a) |\n|---|---|---|---|---|---|"
    );
    for (transport, mesh) in meshes {
        let medians = Variant::ALL.map(|v| median_settle(&mesh[v.index()]));
        let ratio = |m: Option<Duration>| {
            ratio_text(
                m.zip(medians[0])
                    .map(|(m, b)| m.as_secs_f64() / b.as_secs_f64()),
            )
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            transport.label(),
            settle_text(medians[0]),
            settle_text(medians[1]),
            settle_text(medians[2]),
            ratio(medians[1]),
            ratio(medians[2]),
        );
    }
    out
}

fn render(args: &Args, r: &Results) -> String {
    let mut out = String::new();
    configurations_text(&mut out, &r.load);
    for (transport, mesh) in &r.meshes {
        mesh_table(&mut out, args, *transport, mesh);
        out.push('\n');
    }
    let churn_intro = format!(
        "### 2. Churn on the memory transport (noise, yamux; multistream-select V1)\n\n\
         Dial, established, `Swarm::disconnect_peer_id`, both sides closed: one cycle. \
         {} s per configuration in {} interleaved slots.",
        args.churn_secs, args.rounds
    );
    churn_table(&mut out, &churn_intro, &r.churn);
    let loaded_intro = format!(
        "### 3. The same churn with {n} banned and {n} tracked peers\n\n\
         On both swarms: (a) nothing to load; (b) {n} peers blocked in `allow_block_list`; \
         (c) {n} `ban_peer` (1 h) and {n} `add_address` of other peers.",
        n = args.preload
    );
    churn_table(&mut out, &loaded_intro, &r.loaded);
    core_table(&mut out, &r.costs);
    memory_table(&mut out, &r.memory);
    goals_table(&mut out, args, r);
    out
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

async fn swarm_workloads(args: &Args) -> anyhow::Result<(Meshes, [Churn; 3], [Churn; 3])> {
    let mesh = mesh_workloads(args).await?;
    let churn = churn_workload(args, 0).await?;
    let loaded = churn_workload(args, args.preload).await?;
    Ok((mesh, churn, loaded))
}

async fn store_workloads(args: &Args) -> anyhow::Result<(Vec<StoreChurn>, Vec<StoreChurn>)> {
    let one_peer = store_workload(args, false).await?;
    let distinct = store_workload(args, true).await?;
    Ok((one_peer, distinct))
}

/// The 1, 5 and 15 minute load averages, where the system tells them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let load_at_start = load_average();
    anyhow::ensure!(args.nodes >= 2, "--nodes must be at least 2");
    anyhow::ensure!(args.mesh_runs >= 1, "--mesh-runs must be at least 1");
    anyhow::ensure!(args.preload >= 1, "--preload must be at least 1");
    anyhow::ensure!(!args.transport.is_empty(), "--transport needs a transport");
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();

    if args.store_only {
        let journal = journal_costs();
        eprintln!("journal cost measured");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let (one_peer, distinct) = runtime.block_on(store_workloads(&args))?;
        let load = (load_at_start, load_average());
        println!(
            "{}",
            render_store(&args, &load, &one_peer, &distinct, &journal)
        );
        return Ok(());
    }

    if args.memory_only {
        let mut out = String::new();
        memory_table(&mut out, &memory(args.preload));
        println!("{out}");
        return Ok(());
    }

    if args.mesh_only {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let meshes = runtime.block_on(mesh_workloads(&args))?;
        println!(
            "{}",
            render_meshes(&args, &(load_at_start, load_average()), &meshes)
        );
        return Ok(());
    }

    // The core first, before any runtime thread exists: nothing else allocates meanwhile.
    let memory = memory(args.preload);
    let costs = core_costs();
    let journal = journal_costs();
    eprintln!("core and memory measured");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mesh, churn, loaded) = runtime.block_on(swarm_workloads(&args))?;
    let load_at_store = load_average();
    let (one_peer, distinct) = runtime.block_on(store_workloads(&args))?;
    let results = Results {
        load: (load_at_start, load_at_store.clone()),
        meshes: mesh,
        churn,
        loaded,
        costs,
        memory,
    };
    println!("{}", render(&args, &results));
    let load = (load_at_store, load_average());
    println!(
        "{}",
        render_store(&args, &load, &one_peer, &distinct, &journal)
    );
    Ok(())
}
