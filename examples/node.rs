//! A libp2p node with the connection manager, in two modes.
//!
//! **Cluster demo** (no arguments, or `--cluster N`): starts N nodes (8 by default) in this one
//! process on 127.0.0.1, each a swarm in its own task, and walks them through four stages,
//! each awaited event by event with a deadline:
//!
//! 1. *Convergence*: every node dials every other at once with plain `Swarm::dial` and default
//!    options (the harsh case: simultaneous dials from the listening port), until every pair has
//!    exactly one connection and nothing is in flight.
//! 2. *Restart*: the other nodes ask their manager to keep the last node (`dial` on a connected
//!    peer only marks it wanted); the last node is killed and restarted with the same key on the
//!    same port, and dials again the peers it had dialed. The peers that had dialed it redial it
//!    by themselves, and every pair is back to one connection.
//! 3. *Ban*: node 0 bans node 2 for 60 s. Node 2 receives goodbye `Banned`; the pair stays
//!    without a connection, every other pair keeps its one.
//! 4. *Goodbye*: node 0 disconnects node 1, which receives goodbye `Normal`.
//!
//! It then prints a summary table and exits 0 only if every stage held (1 otherwise, with what
//! failed).
//!
//! ```text
//! cargo run --example node
//! cargo run --example node -- --cluster 16
//! ```
//!
//! **Long-lived node** (any other option): one node that prints its peer id and listen addresses
//! (`listening on /ip4/.../tcp/N/p2p/<peer id>`), every event of the manager (one line each),
//! and a status table of its connections every `--status-interval` seconds. A `--dial` or
//! `--bootstrap` address names the peer with `/p2p/<peer id>`; a `--dial` address without it is
//! dialed once with `Swarm::dial`. `--key-file` keeps the identity across runs. With
//! `--features metrics`, `--metrics ADDR` serves Prometheus text on `http://ADDR/` (the bound
//! address is printed as `metrics on http://.../metrics`). With `--features redb`,
//! `--store PATH` keeps bans, wanted peers, addresses and tags in a file: a restarted node is
//! still banning whom it banned and redials whom it wanted (`--ban PEER_ID` bans at start; a
//! damaged store is refused with a message naming the file, or set aside with `--fresh-store`).
//! `--stdin-commands` reads `dial <multiaddr>`, `ban <peer id> [secs]`, `disconnect <peer id>`,
//! `tag <peer id> <tag> <value>`, `address <peer id> <multiaddr>`, `flush [label]` and `status`
//! lines from standard input, several on one line with `;` between them (`scripts/interop.sh`
//! drives the node with them; `tests/store_durability.rs` kills it between flushes).
//! Ctrl-C or SIGTERM says goodbye to every peer (`shutdown`), waits up to 3 s for the
//! connections to close, and exits 0.
//!
//! ```text
//! cargo run --example node -- --listen /ip4/127.0.0.1/tcp/4001 --key-file node-a.key
//! cargo run --example node -- --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/<peer id of the first>
//! cargo run --example node --features metrics -- --metrics 127.0.0.1:9100
//! cargo run --example node --features redb -- --key-file a.key --store a.redb --dial <addr/p2p/id>
//! ```
//!
//! Logs go to stderr: the example's own at `--log` (default `info`), the libraries' at `warn`;
//! `RUST_LOG` replaces both.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use clap::{CommandFactory as _, Parser};
use libp2p::{
    core::Endpoint,
    futures::{FutureExt, StreamExt},
    identify,
    identity::Keypair,
    multiaddr::Protocol,
    noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager::{self as manager, DisconnectReason, Event, Initiator};
use tokio::{
    sync::mpsc,
    time::{timeout, timeout_at, Instant},
};
use tracing_subscriber::{filter::LevelFilter, EnvFilter};

/// Nodes in the cluster demo when `--cluster` is not given.
const DEFAULT_CLUSTER_SIZE: u16 = 8;
/// How long the cluster may take to reach one connection per pair, at first and after the
/// restart.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(20);
/// How long the peers of the killed node may take to notice it is gone.
const LOSS_DEADLINE: Duration = Duration::from_secs(5);
/// How long a ban or a disconnect may take to arrive and settle.
const SETTLE_DEADLINE: Duration = Duration::from_secs(5);
/// How long node 0 bans node 2 in the demo.
const DEMO_BAN: Duration = Duration::from_secs(60);
/// How long a long-lived node waits for its connections to close after Ctrl-C or SIGTERM.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);

/// A libp2p node with the connection manager: a local cluster demo, or one long-lived node.
#[derive(Parser, Debug)]
#[command(name = "node", version)]
struct Args {
    /// Run the cluster demo with N nodes, 4 to 32 (without any node option it runs with 8).
    ///
    /// Beyond about 20 nodes a debug build on a small machine is CPU-bound: handshakes can
    /// exceed libp2p's 10 s upgrade timeout.
    #[arg(long, value_name = "N", conflicts_with_all = NODE_OPTIONS,
          value_parser = clap::value_parser!(u16).range(4..=32))]
    cluster: Option<u16>,
    #[command(flatten)]
    node: NodeArgs,
    /// Log level of the example's own lines; the libraries log at `warn`. RUST_LOG overrides.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log: LevelFilter,
}

/// The options that select the long-lived node.
const NODE_OPTIONS: &[&str] = &[
    "listen",
    "bootstrap",
    "dial",
    "key_file",
    "max_established",
    "max_pending",
    "low_watermark",
    "high_watermark",
    "metrics",
    "status_interval",
    "store",
    "fresh_store",
    "store_flush_ms",
    "ban",
    "ping_interval",
    "ping_timeout",
    "inactivity_timeout",
    "stdin_commands",
];

/// The long-lived node's options.
#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// Listen on this address [default: /ip4/127.0.0.1/tcp/0].
    #[arg(long, value_name = "MULTIADDR")]
    listen: Option<Multiaddr>,
    /// A bootstrap peer, `<address>/p2p/<peer id>` (repeatable): dialed at start and whenever
    /// the node has lost every connection.
    #[arg(long, value_name = "MULTIADDR", value_parser = parse_peer_address)]
    bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Dial this address (repeatable). With /p2p/<peer id> the manager keeps the peer
    /// (redialed when lost); without, it is dialed once.
    #[arg(long, value_name = "MULTIADDR")]
    dial: Vec<Multiaddr>,
    /// Keep the identity in this file: an ed25519 keypair, protobuf-encoded. Created (mode
    /// 0600) if missing.
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Limit on established connections, inbound and outbound together.
    #[arg(long, value_name = "N")]
    max_established: Option<u32>,
    /// Limit on connections in their handshake, for inbound and for outbound each.
    #[arg(long, value_name = "N")]
    max_pending: Option<u32>,
    /// Trim connected peers down to this many once they exceed the high watermark.
    #[arg(long, value_name = "N", requires = "high_watermark")]
    low_watermark: Option<usize>,
    /// Trim when more peers than this are connected.
    #[arg(long, value_name = "N", requires = "low_watermark")]
    high_watermark: Option<usize>,
    /// Serve Prometheus metrics over HTTP on this address, e.g. 127.0.0.1:9100 (port 0 picks
    /// one). Needs `--features metrics`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Print a status table every SECS seconds; 0 disables it [default: 10].
    #[arg(long, value_name = "SECS")]
    status_interval: Option<u64>,
    /// Keep bans, wanted peers, addresses and tags in this file across restarts (a redb
    /// database, created if missing). Needs `--features redb`.
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// If the --store file is damaged or of another format, set it aside (renamed to
    /// `<file>.bad-<time>`) and start with an empty store, instead of refusing to start.
    #[arg(long, requires = "store")]
    fresh_store: bool,
    /// Hand the changes to the --store file every MS milliseconds [default: 1000].
    #[arg(long, value_name = "MS", requires = "store",
          value_parser = clap::value_parser!(u64).range(1..))]
    store_flush_ms: Option<u64>,
    /// Ban this peer until unbanned (repeatable). With --store the ban outlives restarts.
    #[arg(long, value_name = "PEER_ID")]
    ban: Vec<PeerId>,
    /// Ping every connection every SECS seconds [default: the manager's, 15].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    ping_interval: Option<u64>,
    /// A ping fails after SECS seconds [default: the manager's, 20].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    ping_timeout: Option<u64>,
    /// Close a connection (reason `Timeout`) when no ping succeeded for SECS seconds
    /// [default: the manager's, 60].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    inactivity_timeout: Option<u64>,
    /// Read commands from standard input, one a line: `dial <multiaddr>` (as --dial),
    /// `ban <peer id> [secs]` (until unbanned without secs), `disconnect <peer id>`,
    /// `tag <peer id> <tag> <value>`, `address <peer id> <multiaddr>` (remember a dial address),
    /// `flush [label]` (write the changes to the store and wait; prints `peer store flushed
    /// <label>`), `status` (the status table now). Commands on one line, `;` between them, are
    /// applied together: the store gets them in one batch.
    #[arg(long)]
    stdin_commands: bool,
}

impl NodeArgs {
    fn any_given(&self) -> bool {
        self.listen.is_some()
            || !self.bootstrap.is_empty()
            || !self.dial.is_empty()
            || self.key_file.is_some()
            || self.max_established.is_some()
            || self.max_pending.is_some()
            || self.low_watermark.is_some()
            || self.high_watermark.is_some()
            || self.metrics.is_some()
            || self.status_interval.is_some()
            || self.store.is_some()
            || !self.ban.is_empty()
            || self.ping_interval.is_some()
            || self.ping_timeout.is_some()
            || self.inactivity_timeout.is_some()
            || self.stdin_commands
    }
}

/// `<address>/p2p/<peer id>` into the peer and the address without its `/p2p` part.
fn parse_peer_address(text: &str) -> Result<(PeerId, Multiaddr), String> {
    let mut address: Multiaddr = text.parse().map_err(|e| format!("{e}"))?;
    match address.pop() {
        Some(Protocol::P2p(peer)) if !address.is_empty() => Ok((peer, address)),
        _ => Err("must be an address ending in /p2p/<peer id>".to_owned()),
    }
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
    let args = Args::parse();
    init_tracing(args.log);
    if !args.node.any_given() {
        let size = args.cluster.unwrap_or(DEFAULT_CLUSTER_SIZE);
        return run_cluster_demo(usize::from(size)).await;
    }
    check_node_args(&args.node);
    run_long_lived_node(args.node).await?;
    Ok(ExitCode::SUCCESS)
}

/// The example's own target at `level`, everything else at `warn`, unless RUST_LOG is set.
fn init_tracing(level: LevelFilter) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,{}={level}", module_path!())));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Refuses, like any usage error (exit status 2), what clap cannot check by itself.
fn check_node_args(node: &NodeArgs) {
    let mut command = Args::command();
    if let (Some(low), Some(high)) = (node.low_watermark, node.high_watermark) {
        if low > high {
            command
                .error(
                    clap::error::ErrorKind::ValueValidation,
                    format!("--low-watermark {low} is above --high-watermark {high}"),
                )
                .exit();
        }
    }
    if node.store.is_some() && !cfg!(feature = "redb") {
        command
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--store needs the example built with the redb feature: \
                 cargo run --example node --features redb -- --store node.redb",
            )
            .exit();
    }
    if node.metrics.is_some() && !cfg!(feature = "metrics") {
        command
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--metrics needs the example built with the metrics feature: \
                 cargo run --example node --features metrics -- --metrics 127.0.0.1:9100",
            )
            .exit();
    }
}

/// A swarm on TCP with noise and yamux for `key`, with a manager configured by `config`.
fn build_swarm(key: Keypair, config: manager::Config) -> anyhow::Result<Swarm<NodeBehaviour>> {
    let manager = manager::Behaviour::new(key.public().to_peer_id(), config);
    build_swarm_with(key, manager)
}

/// A swarm on TCP with noise and yamux for `key`, around `manager`.
fn build_swarm_with(
    key: Keypair,
    manager: manager::Behaviour,
) -> anyhow::Result<Swarm<NodeBehaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("cannot set up TCP with noise and yamux")?
        .with_behaviour(|key| NodeBehaviour {
            manager,
            identify: identify::Behaviour::new(identify::Config::new(
                "/connection-manager-example/1.0.0".into(),
                key.public(),
            )),
        })
        .context("cannot build the behaviour")?
        .build();
    Ok(swarm)
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
        } => format!("redialing {peer} in {delay:.2?} (attempt {attempt})"),
        Event::RedialGaveUp { peer, attempts } => {
            format!("gave up redialing {peer} after {attempts} attempts")
        }
        Event::Banned { target, until } => match until {
            Some(until) => format!(
                "banned {target} for {}",
                format_age(until.saturating_duration_since(std::time::Instant::now()))
            ),
            None => format!("banned {target} until unbanned"),
        },
        Event::Unbanned { target, expired } => {
            let how = if *expired { "expired" } else { "lifted" };
            format!("ban of {target} {how}")
        }
        Event::WaitingForResources { peer, denial } => {
            format!("{peer} waits for a free slot: {denial}")
        }
        Event::PeerForgotten { peer } => format!("forgot {peer}"),
        Event::Trimmed { peers, .. } => format!("trimming {} peer(s): {peers:?}", peers.len()),
        Event::HealthChanged {
            peer,
            connection,
            old,
            new,
        } => match old {
            Some(old) => format!("health of connection {connection} with {peer}: {old} -> {new}"),
            None => format!("health of connection {connection} with {peer}: {new}"),
        },
        Event::ConnectionReplaced { peer, connection } => {
            format!("replacing connection {connection} with {peer}: its health stayed critical")
        }
        Event::PhaseChanged { old, new } => format!("phase {old} -> {new}"),
        Event::Restored(summary) => format!(
            "restored from the peer store: {} ban(s) in force ({} ended while down), {} peer(s), \
             {} redial(s)",
            summary.bans, summary.expired_bans, summary.peers, summary.redials
        ),
        other => format!("{other:?}"),
    }
}

/// `42s`, `3m04s`, `2h05m`.
fn format_age(age: Duration) -> String {
    let seconds = (age + Duration::from_millis(500)).as_secs();
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        _ => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
    }
}

// ---- Long-lived node ----------------------------------------------------------------------

async fn run_long_lived_node(args: NodeArgs) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install().context("cannot listen for Ctrl-C/SIGTERM")?;
    let key = match &args.key_file {
        Some(path) => load_or_create_key(path)?,
        None => Keypair::generate_ed25519(),
    };
    let mut telemetry = Telemetry::start(args.metrics).await?;
    let manager = manager::Behaviour::new(key.public().to_peer_id(), node_config(&args));
    let manager = telemetry.attach(manager);
    let manager = match &args.store {
        Some(path) => with_store(manager, path, args.fresh_store, args.store_flush_ms)?,
        None => manager,
    };
    let mut swarm = build_swarm_with(key, manager)?;
    let local = *swarm.local_peer_id();
    println!("peer id: {local}");
    print_settings(&args);
    for peer in &args.ban {
        swarm.behaviour_mut().manager.ban_peer(*peer, None);
    }
    telemetry.announce();
    let listen = match args.listen {
        Some(address) => address,
        None => "/ip4/127.0.0.1/tcp/0"
            .parse()
            .context("default listen address")?,
    };
    swarm
        .listen_on(listen.clone())
        .with_context(|| format!("cannot listen on {listen}"))?;
    for address in args.dial {
        dial_address(&mut swarm, address);
    }

    let mut status = status_timer(args.status_interval.unwrap_or(10));
    let mut commands = args.stdin_commands.then(read_stdin_commands);
    let signal = loop {
        tokio::select! {
            signal = signals.recv() => break signal,
            line = next_command(&mut commands) => run_stdin_command(&mut swarm, &line),
            event = swarm.select_next_some() => handle_node_event(&local, &telemetry, event),
            () = tick(&mut status) => print_status(&swarm),
            scrape = telemetry.next_scrape() => {
                telemetry.answer(scrape);
            }
        }
    };
    shut_down(&mut swarm, &telemetry, signal).await;
    Ok(())
}

/// `manager` keeping its state in the redb file `path`.
#[cfg(feature = "redb")]
fn with_store(
    manager: manager::Behaviour,
    path: &Path,
    fresh: bool,
    flush_ms: Option<u64>,
) -> anyhow::Result<manager::Behaviour> {
    use manager::store::{RedbStore, StoreConfig};
    let store = if fresh {
        RedbStore::open_or_start_fresh(path)
    } else {
        RedbStore::open(path)
    };
    let store = store.map_err(|error| {
        let hint = match error {
            manager::store::StoreError::Corrupted { .. }
            | manager::store::StoreError::Incompatible { .. } => {
                "; start with --fresh-store to set the file aside and begin with an empty store"
            }
            _ => "",
        };
        anyhow::anyhow!("{error}{hint}")
    })?;
    if let Some(aside) = store.set_aside() {
        println!(
            "peer store {} was unreadable: moved to {}, starting empty",
            path.display(),
            aside.display()
        );
    }
    println!("peer store: {}", path.display());
    let mut config = StoreConfig::default();
    if let Some(ms) = flush_ms {
        config.flush_interval = Duration::from_millis(ms);
    }
    Ok(manager.with_store_config(store, config)?)
}

/// Without the redb feature `check_node_args` refuses `--store` before this is reached.
#[cfg(not(feature = "redb"))]
fn with_store(
    _manager: manager::Behaviour,
    path: &Path,
    _fresh: bool,
    _flush_ms: Option<u64>,
) -> anyhow::Result<manager::Behaviour> {
    anyhow::bail!(
        "--store {} needs the example built with the redb feature",
        path.display()
    )
}

/// The manager's configuration from the command line.
fn node_config(args: &NodeArgs) -> manager::Config {
    let mut limits = manager::Limits::new();
    if let Some(max) = args.max_established {
        limits = limits.with_max_established_total(Some(max));
    }
    if let Some(max) = args.max_pending {
        limits = limits
            .with_max_pending_inbound(Some(max))
            .with_max_pending_outbound(Some(max));
    }
    let mut config = manager::Config::default().with_limits(limits);
    for (peer, address) in &args.bootstrap {
        config = config.with_bootstrap_peer(*peer, address.clone());
    }
    if let (Some(low), Some(high)) = (args.low_watermark, args.high_watermark) {
        config = config.with_watermarks(low, high);
    }
    if let Some(secs) = args.ping_interval {
        config = config.with_ping_interval(Duration::from_secs(secs));
    }
    if let Some(secs) = args.ping_timeout {
        config = config.with_ping_timeout(Duration::from_secs(secs));
    }
    if let Some(secs) = args.inactivity_timeout {
        config = config.with_inactivity_timeout(Some(Duration::from_secs(secs)));
    }
    config
}

fn print_settings(args: &NodeArgs) {
    let limit = |value: Option<u32>| value.map_or_else(|| "default".to_owned(), |n| n.to_string());
    let watermarks = match (args.low_watermark, args.high_watermark) {
        (Some(low), Some(high)) => format!("trim above {high} peers down to {low}"),
        _ => "no trimming".to_owned(),
    };
    println!(
        "limits: established {}, pending {}; {watermarks}; {} bootstrap peer(s)",
        limit(args.max_established),
        limit(args.max_pending),
        args.bootstrap.len()
    );
}

/// Reads the keypair in `path`, or creates the file with a new ed25519 keypair if there is none.
fn load_or_create_key(path: &Path) -> anyhow::Result<Keypair> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let key = Keypair::from_protobuf_encoding(&bytes).with_context(|| {
                format!(
                    "key file {} does not hold a protobuf-encoded libp2p keypair \
                     (corrupt, or another format); move it away to create a new identity",
                    path.display()
                )
            })?;
            println!("identity read from {}", path.display());
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            write_new_key_file(path, &key)?;
            println!("new identity written to {}", path.display());
            Ok(key)
        }
        Err(error) => {
            Err(error).with_context(|| format!("cannot read key file {}", path.display()))
        }
    }
}

/// Writes `key` to a file that must not exist yet, readable by the owner only (on unix).
fn write_new_key_file(path: &Path, key: &Keypair) -> anyhow::Result<()> {
    use std::io::Write as _;

    let bytes = key
        .to_protobuf_encoding()
        .context("cannot encode the keypair")?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write key file {}", path.display()))
}

/// Dials through the manager when the address names the peer, with `Swarm::dial` otherwise.
fn dial_address(swarm: &mut Swarm<NodeBehaviour>, address: Multiaddr) {
    let mut transport_address = address.clone();
    match transport_address.pop() {
        Some(Protocol::P2p(peer)) => {
            match swarm
                .behaviour_mut()
                .manager
                .add_peer(peer, vec![transport_address])
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

fn handle_node_event(local: &PeerId, telemetry: &Telemetry, event: SwarmEvent<NodeBehaviourEvent>) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            println!("listening on {}", address.with(Protocol::P2p(*local)));
        }
        SwarmEvent::ExpiredListenAddr { address, .. } => {
            println!("no longer listening on {address}");
        }
        SwarmEvent::ListenerError { error, .. } => println!("listener error: {error}"),
        SwarmEvent::Behaviour(NodeBehaviourEvent::Manager(event)) => {
            telemetry.record(&event);
            println!("manager: {}", describe(&event));
        }
        SwarmEvent::ConnectionEstablished {
            peer_id,
            connection_id,
            endpoint,
            ..
        } => tracing::debug!(%peer_id, %connection_id, address = %endpoint.get_remote_address(),
            "connection established"),
        SwarmEvent::ConnectionClosed {
            peer_id,
            connection_id,
            cause,
            ..
        } => tracing::debug!(%peer_id, %connection_id, ?cause, "connection closed"),
        SwarmEvent::IncomingConnectionError {
            send_back_addr,
            error,
            ..
        } => tracing::debug!(%send_back_addr, %error, "incoming connection failed"),
        SwarmEvent::Behaviour(NodeBehaviourEvent::Identify(identify::Event::Received {
            peer_id,
            info,
            ..
        })) => tracing::debug!(%peer_id, agent = %info.agent_version, "identified"),
        _ => {}
    }
}

/// Lines of standard input, read on a thread of their own until it ends.
fn read_stdin_commands() -> mpsc::UnboundedReceiver<String> {
    let (sender, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// The next command line; never resolves without `--stdin-commands` or once stdin ended.
async fn next_command(commands: &mut Option<mpsc::UnboundedReceiver<String>>) -> String {
    if let Some(receiver) = commands {
        if let Some(line) = receiver.recv().await {
            return line;
        }
    }
    *commands = None;
    std::future::pending().await
}

/// One line of commands, `;` between them: all applied before the swarm runs again, so the
/// peer store gets their changes in one batch.
fn run_stdin_command(swarm: &mut Swarm<NodeBehaviour>, line: &str) {
    for command in line.split(';').map(str::trim) {
        if let Err(error) = run_one_command(swarm, command) {
            println!("command refused: {command}: {error}");
        }
    }
}

fn run_one_command(swarm: &mut Swarm<NodeBehaviour>, command: &str) -> Result<(), String> {
    fn parse<T: std::str::FromStr<Err: std::fmt::Display>>(text: &str) -> Result<T, String> {
        text.parse()
            .map_err(|error: T::Err| format!("{text}: {error}"))
    }
    let words: Vec<&str> = command.split_whitespace().collect();
    let manager = &mut swarm.behaviour_mut().manager;
    match words.as_slice() {
        [] => {}
        ["dial", address] => dial_address(swarm, parse(address)?),
        ["ban", peer] => manager.ban_peer(parse(peer)?, None),
        ["ban", peer, secs] => {
            manager.ban_peer(parse(peer)?, Some(Duration::from_secs(parse(secs)?)));
        }
        ["disconnect", peer] => {
            manager.remove_peer(parse(peer)?);
        }
        ["tag", peer, tag, value] => manager.tag_peer(parse(peer)?, *tag, parse(value)?),
        ["address", peer, address] => manager.add_address(parse(peer)?, parse(address)?),
        ["flush", label @ ..] => match manager.flush_store() {
            Ok(()) => println!(
                "{}",
                format!("peer store flushed {}", label.join(" ")).trim_end()
            ),
            Err(error) => println!("peer store: flush failed: {error}"),
        },
        ["status"] => print_status(swarm),
        _ => {
            return Err(
                "expected dial <multiaddr>, ban <peer id> [secs], disconnect <peer id>, \
                        tag <peer id> <tag> <value>, address <peer id> <multiaddr>, \
                        flush [label] or status"
                    .into(),
            )
        }
    }
    Ok(())
}

/// Ctrl-C (SIGINT) and, on unix, SIGTERM: installed at once, so a signal that arrives while
/// the node starts is not lost.
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    /// The name of the first signal received.
    #[cfg(unix)]
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) -> &'static str {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl-C",
            Err(_) => std::future::pending().await,
        }
    }
}

/// Says goodbye to every peer and polls the swarm until its connections are closed or
/// [`SHUTDOWN_DRAIN`] passed.
async fn shut_down(swarm: &mut Swarm<NodeBehaviour>, telemetry: &Telemetry, signal: &str) {
    let peers = swarm.network_info().num_peers();
    println!("{signal}: shutting down, saying goodbye to {peers} peer(s)");
    swarm.behaviour_mut().manager.shutdown();
    match timeout(SHUTDOWN_DRAIN, drain_connections(swarm, telemetry)).await {
        Ok(()) => println!("shut down: all connections closed"),
        Err(_) => println!(
            "shut down: {} connection(s) still open after {SHUTDOWN_DRAIN:?}, exiting anyway",
            swarm.network_info().connection_counters().num_established()
        ),
    }
    if let Err(error) = swarm.behaviour_mut().manager.flush_store() {
        println!("peer store: last changes not written: {error}");
    }
}

/// Polls the swarm until it has no connection left, then handles the events already due (the
/// manager reports the last `Disconnected` just after the swarm closed the connection).
async fn drain_connections(swarm: &mut Swarm<NodeBehaviour>, telemetry: &Telemetry) {
    let local = *swarm.local_peer_id();
    while swarm.network_info().num_peers() > 0 {
        let event = swarm.select_next_some().await;
        handle_node_event(&local, telemetry, event);
    }
    while let Some(event) = swarm.next().now_or_never().flatten() {
        handle_node_event(&local, telemetry, event);
    }
}

/// The status timer; `None` when disabled (0 seconds).
fn status_timer(seconds: u64) -> Option<tokio::time::Interval> {
    let period = Duration::from_secs(seconds);
    (seconds > 0).then(|| {
        let mut timer = tokio::time::interval_at(Instant::now() + period, period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    })
}

async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// A table of the node's connections: one row per connection, the peer last (it is long).
fn print_status(swarm: &Swarm<NodeBehaviour>) {
    let behaviour = &swarm.behaviour().manager;
    let now = std::time::Instant::now();
    let mut peers = 0;
    let mut rows = Vec::new();
    for peer in behaviour.connected_peers() {
        let Some(info) = behaviour.peer_info(peer) else {
            continue;
        };
        peers += 1;
        for connection in &info.connections {
            rows.push((connection.since, status_row(peer, connection, now)));
        }
    }
    rows.sort_by_key(|(since, _)| *since);
    let mut table = format!(
        "status: phase {}, {peers} peer(s), {} connection(s), {} pending, {} ban(s)\n",
        behaviour.phase(),
        rows.len(),
        behaviour.stats().pending_connections,
        behaviour.bans().len(),
    );
    if !rows.is_empty() {
        let _ = writeln!(
            table,
            "  {:<9}  {:<11}  {:>9}  {:<16}  {:>6}  peer",
            "direction", "initiator", "rtt", "health", "since"
        );
    }
    for (_, row) in rows {
        let _ = writeln!(table, "{row}");
    }
    print!("{table}");
}

fn status_row(
    peer: &PeerId,
    connection: &manager::ConnectionInfo,
    now: std::time::Instant,
) -> String {
    let direction = match connection.direction {
        Endpoint::Dialer => "outbound",
        Endpoint::Listener => "inbound",
    };
    let rtt = connection.rtt.map_or_else(
        || "-".to_owned(),
        |rtt| format!("{:.2} ms", rtt.as_secs_f64() * 1000.0),
    );
    let health = connection.health.map_or_else(
        || "not yet measured".to_owned(),
        |health| format!("{} ({:.2})", health.category, health.score),
    );
    let health = match connection.closing {
        Some(reason) => format!("closing: {reason}"),
        None => health,
    };
    let since = format_age(now.saturating_duration_since(connection.since));
    format!(
        "  {direction:<9}  {:<11}  {rtt:>9}  {health:<16}  {since:>6}  {peer}",
        connection.initiator.to_string()
    )
}

// ---- Metrics ------------------------------------------------------------------------------

/// A scrape of the metrics endpoint waiting for the swarm loop's answer. Without the `metrics`
/// feature there are none.
#[cfg(not(feature = "metrics"))]
type Scrape = std::convert::Infallible;
#[cfg(feature = "metrics")]
use metrics_endpoint::Scrape;

/// The long-lived node's metrics: present only with the `metrics` feature and `--metrics`.
struct Telemetry {
    #[cfg(feature = "metrics")]
    endpoint: Option<metrics_endpoint::MetricsEndpoint>,
}

impl Telemetry {
    #[cfg(feature = "metrics")]
    async fn start(address: Option<SocketAddr>) -> anyhow::Result<Self> {
        let endpoint = match address {
            Some(address) => Some(metrics_endpoint::MetricsEndpoint::start(address).await?),
            None => None,
        };
        Ok(Self { endpoint })
    }

    /// Without the `metrics` feature `--metrics` is refused before this (`check_node_args`).
    #[cfg(not(feature = "metrics"))]
    async fn start(_address: Option<SocketAddr>) -> anyhow::Result<Self> {
        Ok(Self {})
    }

    /// `behaviour`, feeding the metrics if there are any.
    fn attach(&self, behaviour: manager::Behaviour) -> manager::Behaviour {
        #[cfg(feature = "metrics")]
        if let Some(endpoint) = &self.endpoint {
            return behaviour.with_metrics(endpoint.metrics());
        }
        behaviour
    }

    fn announce(&self) {
        #[cfg(feature = "metrics")]
        if let Some(endpoint) = &self.endpoint {
            println!("metrics on http://{}/metrics", endpoint.address());
        }
    }

    fn record(&self, event: &Event) {
        #[cfg(feature = "metrics")]
        if let Some(endpoint) = &self.endpoint {
            endpoint.record(event);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = event;
    }

    /// The next scrape to answer; never resolves when there is no endpoint.
    async fn next_scrape(&mut self) -> Scrape {
        #[cfg(feature = "metrics")]
        if let Some(endpoint) = &mut self.endpoint {
            return endpoint.next_scrape().await;
        }
        std::future::pending().await
    }

    fn answer(&self, scrape: Scrape) {
        #[cfg(feature = "metrics")]
        if let Some(endpoint) = &self.endpoint {
            endpoint.answer(scrape);
        }
        #[cfg(not(feature = "metrics"))]
        match scrape {}
    }
}

/// A Prometheus text endpoint: a tiny HTTP/1.1 responder whose tasks ask the swarm loop for
/// the encoded metrics over a channel (the registry and the behaviour stay in that loop).
#[cfg(feature = "metrics")]
mod metrics_endpoint {
    use std::{io, net::SocketAddr, time::Duration};

    use libp2p_connection_manager::{
        metrics::{Metrics, Recorder},
        Event,
    };
    use prometheus_client::{encoding::text::encode, registry::Registry};
    use tokio::{
        net::{TcpListener, TcpStream},
        sync::{mpsc, oneshot},
        time::timeout,
    };

    /// The longest request head read (request line and headers).
    const MAX_REQUEST_HEAD: usize = 8 * 1024;
    /// How long one HTTP exchange may take.
    const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
    const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

    /// A scrape waiting for the encoded metrics.
    pub struct Scrape(oneshot::Sender<String>);

    pub struct MetricsEndpoint {
        registry: Registry,
        metrics: Metrics,
        scrapes: mpsc::Receiver<Scrape>,
        address: SocketAddr,
    }

    impl MetricsEndpoint {
        /// Binds `address` and serves it from a task of its own.
        pub async fn start(address: SocketAddr) -> anyhow::Result<Self> {
            use anyhow::Context as _;
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot serve metrics on {address}"))?;
            let address = listener.local_addr()?;
            let (scrape_tx, scrapes) = mpsc::channel(16);
            tokio::spawn(serve(listener, scrape_tx));
            let mut registry = Registry::default();
            let metrics = Metrics::new(&mut registry);
            Ok(Self {
                registry,
                metrics,
                scrapes,
                address,
            })
        }

        pub fn address(&self) -> SocketAddr {
            self.address
        }

        pub fn metrics(&self) -> &Metrics {
            &self.metrics
        }

        pub fn record(&self, event: &Event) {
            self.metrics.record(event);
        }

        /// The next scrape; never resolves once the server task is gone.
        pub async fn next_scrape(&mut self) -> Scrape {
            match self.scrapes.recv().await {
                Some(scrape) => scrape,
                None => std::future::pending().await,
            }
        }

        /// Answers with the encoded registry (the gauges read what the behaviour published).
        pub fn answer(&self, scrape: Scrape) {
            let mut text = String::new();
            if let Err(error) = encode(&mut text, &self.registry) {
                tracing::warn!(%error, "cannot encode the metrics");
            }
            // The client may have gone.
            let _ = scrape.0.send(text);
        }
    }

    async fn serve(listener: TcpListener, scrapes: mpsc::Sender<Scrape>) {
        loop {
            match listener.accept().await {
                Ok((stream, remote)) => {
                    let scrapes = scrapes.clone();
                    tokio::spawn(async move {
                        let exchange = timeout(EXCHANGE_TIMEOUT, exchange(&stream, &scrapes));
                        match exchange.await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => {
                                tracing::debug!(%remote, %error, "metrics request failed")
                            }
                            Err(_) => tracing::debug!(%remote, "metrics request timed out"),
                        }
                    });
                }
                Err(error) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(%error, "cannot accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Reads one request head and answers it; the connection closes after the answer.
    async fn exchange(stream: &TcpStream, scrapes: &mpsc::Sender<Scrape>) -> io::Result<()> {
        let head = read_request_head(stream).await?;
        let response = if head.starts_with(b"GET ") {
            match scrape(scrapes).await {
                Some(body) => response("200 OK", CONTENT_TYPE, &body),
                None => response("503 Service Unavailable", "text/plain", "shutting down\n"),
            }
        } else {
            response("405 Method Not Allowed", "text/plain", "only GET\n")
        };
        write_all(stream, response.as_bytes()).await
    }

    async fn scrape(scrapes: &mpsc::Sender<Scrape>) -> Option<String> {
        let (reply, answer) = oneshot::channel();
        scrapes.send(Scrape(reply)).await.ok()?;
        answer.await.ok()
    }

    fn response(status: &str, content_type: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// Reads up to the blank line that ends the request head (at most [`MAX_REQUEST_HEAD`]).
    async fn read_request_head(stream: &TcpStream) -> io::Result<Vec<u8>> {
        let mut head = Vec::new();
        let mut buffer = [0; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_REQUEST_HEAD {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "request too long",
                ));
            }
            stream.readable().await?;
            match stream.try_read(&mut buffer) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => head.extend_from_slice(&buffer[..n]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        Ok(head)
    }

    async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            stream.writable().await?;
            match stream.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

// ---- Cluster demo -------------------------------------------------------------------------

/// What the demo asks a cluster node to do.
enum Command {
    /// `Swarm::dial` each address, default options.
    DialAll(Vec<Multiaddr>),
    /// The manager's `dial`: keep the peer (a connected peer is only marked wanted).
    Keep(PeerId, Multiaddr),
    /// The manager's `disconnect`.
    Disconnect(PeerId),
    /// The manager's `ban_peer`.
    Ban(PeerId, Duration),
}

/// What a cluster node reports to the demo, tagged with the node's index and incarnation.
struct Report {
    node: usize,
    incarnation: u32,
    content: ReportContent,
}

enum ReportContent {
    Status(Status),
    Event(Event),
}

/// A cluster node's state after its latest event, for the cluster's peers.
#[derive(Debug, Clone, Default, PartialEq)]
struct Status {
    /// Established connections per peer, as the swarm counts them.
    connections: HashMap<PeerId, u32>,
    /// Who initiated the open connection the manager keeps to each peer.
    initiators: HashMap<PeerId, Initiator>,
    /// Peers the manager was asked to keep.
    wanted: HashSet<PeerId>,
    /// Connections the swarm is dialing or negotiating.
    pending: u32,
    /// Connections the manager counts as being negotiated.
    manager_pending: usize,
    /// Peers with a redial scheduled.
    redials: usize,
    /// Connections the manager is closing (goodbye on its way).
    closing: usize,
}

impl Status {
    /// Nothing in flight: no handshake, no redial to come, no goodbye on its way. (Timers that
    /// do not change connections, such as ban expiry and liveness deadlines, do not count.)
    fn is_quiet(&self) -> bool {
        self.pending == 0 && self.manager_pending == 0 && self.redials == 0 && self.closing == 0
    }
}

/// The demo's handle on one node running in its own task.
struct ClusterNode {
    key: Keypair,
    peer: PeerId,
    /// The listen address, without `/p2p`.
    address: Multiaddr,
    incarnation: u32,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl ClusterNode {
    /// Sends `command`; a node whose task ended has nothing to do with it.
    fn send(&self, command: Command) {
        let _ = self.commands.send(command);
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
    peers: Vec<PeerId>,
    report_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    statuses: Vec<Status>,
    events: Vec<(usize, Event)>,
    /// Pairs meant to have no connection (banned, disconnected).
    severed: HashSet<(usize, usize)>,
}

impl Cluster {
    async fn start(size: usize) -> anyhow::Result<Self> {
        let keys: Vec<Keypair> = (0..size).map(|_| Keypair::generate_ed25519()).collect();
        let peers: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let mut nodes = Vec::with_capacity(size);
        for (index, key) in keys.into_iter().enumerate() {
            let listen = "/ip4/127.0.0.1/tcp/0".parse()?;
            let context = NodeContext {
                index,
                incarnation: 0,
                peers: peers.clone(),
                reports: report_tx.clone(),
            };
            nodes.push(spawn_cluster_node(key, listen, context).await?);
        }
        Ok(Self {
            nodes,
            peers,
            report_tx,
            reports,
            statuses: vec![Status::default(); size],
            events: Vec::new(),
            severed: HashSet::new(),
        })
    }

    fn size(&self) -> usize {
        self.nodes.len()
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

    /// Events are kept from every incarnation; statuses only from the current one.
    fn apply(&mut self, report: Report) {
        match report.content {
            ReportContent::Event(event) => self.events.push((report.node, event)),
            ReportContent::Status(status) => {
                if self.nodes[report.node].incarnation == report.incarnation {
                    self.statuses[report.node] = status;
                }
            }
        }
    }

    /// Connections between nodes `a` and `b` as each side's swarm counts them.
    fn views(&self, a: usize, b: usize) -> (u32, u32) {
        let count = |from: usize, to: usize| {
            let peer = self.peers[to];
            self.statuses[from]
                .connections
                .get(&peer)
                .copied()
                .unwrap_or(0)
        };
        (count(a, b), count(b, a))
    }

    fn pairs(&self) -> impl Iterator<Item = (usize, usize)> {
        let size = self.size();
        (0..size).flat_map(move |a| (a + 1..size).map(move |b| (a, b)))
    }

    /// The connections pair `(a, b)` (with `a < b`) should have: 0 if severed, else 1.
    fn expected(&self, a: usize, b: usize) -> u32 {
        u32::from(!self.severed.contains(&(a, b)))
    }

    fn is_quiet(&self) -> bool {
        self.statuses.iter().all(Status::is_quiet)
    }

    /// Every pair has, by both sides' count, the connections it should have, and nothing is in
    /// flight anywhere.
    fn is_settled(&self) -> bool {
        self.is_quiet()
            && self.pairs().all(|(a, b)| {
                let want = self.expected(a, b);
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

    /// Whether node `by` has reported an event since event number `since` that matches.
    fn reported_since(&self, since: usize, by: usize, matches: impl Fn(&Event) -> bool) -> bool {
        self.events[since..]
            .iter()
            .any(|(node, event)| *node == by && matches(event))
    }

    fn goodbye_received(&self, by: usize, from: usize, reason: DisconnectReason) -> bool {
        let from_peer = self.peers[from];
        self.reported_since(0, by, |event| {
            matches!(event, Event::GoodbyeReceived { peer, reason: r, .. }
                if *peer == from_peer && *r == reason)
        })
    }

    /// Who initiated the connection node `a` keeps to node `b`, as `a` sees it.
    fn initiator(&self, a: usize, b: usize) -> Option<Initiator> {
        self.statuses[a].initiators.get(&self.peers[b]).copied()
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
        let mut counts: Vec<(DisconnectReason, usize)> = Vec::new();
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
        self.peers.iter().position(|p| p == peer)
    }

    /// One line per pair or node that is not as it should be.
    fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .pairs()
            .filter_map(|(a, b)| {
                let want = self.expected(a, b);
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
                    "node {index}: still busy ({} pending in the swarm, {} in the manager, \
                     {} redial(s) scheduled, {} connection(s) closing)",
                    status.pending, status.manager_pending, status.redials, status.closing
                ));
            }
        }
        problems
    }

    /// Ends node `index`'s task at once: its swarm, listener and connections are dropped, as
    /// when a process dies.
    async fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.task.abort();
        let _ = (&mut node.task).await;
        self.statuses[index] = Status::default();
    }

    /// Starts node `index` again with the same key on the same address.
    async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        let old = &self.nodes[index];
        let context = NodeContext {
            index,
            incarnation: old.incarnation + 1,
            peers: self.peers.clone(),
            reports: self.report_tx.clone(),
        };
        let node = spawn_cluster_node(old.key.clone(), old.address.clone(), context).await?;
        self.nodes[index] = node;
        Ok(())
    }

    /// Stops every node task (their swarms and connections are dropped).
    async fn stop(self) {
        for node in self.nodes {
            node.task.abort();
            let _ = node.task.await;
        }
    }
}

/// What a cluster node task needs besides its swarm.
struct NodeContext {
    index: usize,
    incarnation: u32,
    /// Every node of the cluster, for the status.
    peers: Vec<PeerId>,
    reports: mpsc::UnboundedSender<Report>,
}

impl NodeContext {
    /// Reports to the demo; false once the demo is gone.
    fn report(&self, content: ReportContent) -> bool {
        let report = Report {
            node: self.index,
            incarnation: self.incarnation,
            content,
        };
        self.reports.send(report).is_ok()
    }
}

/// Builds a node listening on `listen`, waits for its listen address, and runs it in its own
/// task.
async fn spawn_cluster_node(
    key: Keypair,
    listen: Multiaddr,
    context: NodeContext,
) -> anyhow::Result<ClusterNode> {
    let mut swarm = build_swarm(key.clone(), manager::Config::default())?;
    let peer = *swarm.local_peer_id();
    swarm
        .listen_on(listen.clone())
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = timeout(Duration::from_secs(5), first_listen_address(&mut swarm))
        .await
        .with_context(|| format!("no listen address on {listen} within 5 s"))??;
    let (commands, command_rx) = mpsc::unbounded_channel();
    let incarnation = context.incarnation;
    let task = tokio::spawn(run_cluster_node(swarm, command_rx, context));
    Ok(ClusterNode {
        key,
        peer,
        address,
        incarnation,
        commands,
        task,
    })
}

async fn first_listen_address(swarm: &mut Swarm<NodeBehaviour>) -> anyhow::Result<Multiaddr> {
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

/// Drives one cluster node until the demo drops its command sender (or kills the task),
/// reporting every manager event and every change of its status.
async fn run_cluster_node(
    mut swarm: Swarm<NodeBehaviour>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    context: NodeContext,
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
                if let Some(event) = count_connections(&mut connections, event) {
                    if !context.report(ReportContent::Event(event)) {
                        return;
                    }
                }
            }
        }
        let status = cluster_node_status(&swarm, &connections, &context.peers);
        if last_status.as_ref() != Some(&status) {
            last_status = Some(status.clone());
            if !context.report(ReportContent::Status(status)) {
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
        Command::Keep(peer, address) => {
            if let Err(denial) = swarm.behaviour_mut().manager.add_peer(peer, vec![address]) {
                tracing::warn!(%peer, %denial, "manager refused to dial");
            }
        }
        Command::Disconnect(peer) => {
            swarm.behaviour_mut().manager.remove_peer(peer);
        }
        Command::Ban(peer, duration) => {
            swarm.behaviour_mut().manager.ban_peer(peer, Some(duration));
        }
    }
}

fn cluster_node_status(
    swarm: &Swarm<NodeBehaviour>,
    connections: &HashMap<PeerId, u32>,
    peers: &[PeerId],
) -> Status {
    let behaviour = &swarm.behaviour().manager;
    let mut status = Status {
        connections: connections.clone(),
        pending: swarm.network_info().connection_counters().num_pending(),
        manager_pending: behaviour.stats().pending_connections,
        ..Status::default()
    };
    for peer in peers {
        let Some(info) = behaviour.peer_info(peer) else {
            continue;
        };
        if info.wanted {
            status.wanted.insert(*peer);
        }
        if info.next_redial.is_some() {
            status.redials += 1;
        }
        for connection in &info.connections {
            match connection.closing {
                Some(_) => status.closing += 1,
                None => {
                    status.initiators.insert(*peer, connection.initiator);
                }
            }
        }
    }
    status
}

/// How one stage of the demo went.
struct Stage {
    name: &'static str,
    held: bool,
    took: Duration,
    counts: PairCounts,
}

/// The stages run so far and what failed.
#[derive(Default)]
struct Outcome {
    stages: Vec<Stage>,
    failures: Vec<String>,
}

impl Outcome {
    fn record(
        &mut self,
        cluster: &Cluster,
        name: &'static str,
        held: bool,
        took: Duration,
    ) -> bool {
        self.stages.push(Stage {
            name,
            held,
            took,
            counts: cluster.pair_counts(),
        });
        held
    }

    /// Records a failure: its line, and the pairs and nodes that are not as they should be.
    fn fail(&mut self, cluster: &Cluster, what: String) {
        println!("  FAILED: {what}");
        let problems = cluster.problems();
        print_problems(&problems);
        self.failures.push(what);
    }
}

async fn run_cluster_demo(size: usize) -> anyhow::Result<ExitCode> {
    println!(
        "cluster demo: {size} nodes on 127.0.0.1, each dialing the {} others at once",
        size - 1
    );
    println!("  (Swarm::dial with default options: simultaneous dials with TCP port reuse)");
    let mut cluster = Cluster::start(size).await?;
    println!("  {size} nodes listening");

    let mut outcome = Outcome::default();
    let restarted = size - 1;
    // Each stage runs only if the one before held.
    if converge(&mut cluster, &mut outcome).await
        && restart(&mut cluster, &mut outcome, restarted).await
        && ban(&mut cluster, &mut outcome).await
    {
        goodbye(&mut cluster, &mut outcome).await;
    }

    print_summary(&cluster, &outcome);
    cluster.stop().await;

    if outcome.failures.is_empty() {
        println!(
            "OK: one connection per pair, at first and after the restart; \
             the ban and the goodbye arrived and held"
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED:");
        for failure in &outcome.failures {
            println!("  - {failure}");
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Stage 1: every node dials every other at once; every pair must end with one connection.
async fn converge(cluster: &mut Cluster, outcome: &mut Outcome) -> bool {
    let started = Instant::now();
    cluster.dial_everyone_at_once();
    let held = cluster
        .wait_until(CONVERGE_DEADLINE, Cluster::is_settled)
        .await;
    let took = started.elapsed();
    if held {
        println!("  every pair has exactly one connection after {took:.2?}");
    } else {
        let what =
            format!("no convergence to one connection per pair within {CONVERGE_DEADLINE:?}");
        outcome.fail(cluster, what);
    }
    outcome.record(cluster, "converged", held, took)
}

/// Stage 2: node `index` is killed and restarted with the same key on the same port. The peers
/// that had dialed it must redial it; it dials again the peers it had dialed; every pair must be
/// back to one connection.
async fn restart(cluster: &mut Cluster, outcome: &mut Outcome, index: usize) -> bool {
    match kill_and_restart(cluster, index).await {
        Ok(took) => outcome.record(cluster, "restarted", true, took),
        Err(failure) => {
            outcome.fail(cluster, failure.what);
            outcome.record(cluster, "restarted", false, failure.took)
        }
    }
}

/// Why a stage did not hold, and how long it ran.
struct StageFailure {
    what: String,
    took: Duration,
}

fn failure(what: String, took: Duration) -> StageFailure {
    StageFailure { what, took }
}

/// The steps of stage 2; on success, the time from the restart to one connection per pair.
async fn kill_and_restart(cluster: &mut Cluster, index: usize) -> Result<Duration, StageFailure> {
    let others: Vec<usize> = (0..cluster.size()).filter(|&n| n != index).collect();
    let dialed_it: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&n| cluster.initiator(n, index) == Some(Initiator::Local))
        .collect();
    let it_dialed: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&n| cluster.initiator(index, n) == Some(Initiator::Local))
        .collect();
    if !keep_node(cluster, &others, index).await {
        let what = format!("the other nodes did not all mark node {index} as wanted");
        return Err(failure(what, Duration::ZERO));
    }

    println!(
        "  node {index} is killed (nodes {} had dialed it, it had dialed {})",
        list(&dialed_it),
        list(&it_dialed)
    );
    let events_before = cluster.events.len();
    kill_and_await_loss(cluster, index, &others).await?;

    let started = Instant::now();
    if let Err(error) = cluster.restart(index).await {
        let what = format!("cannot restart node {index} on the same address: {error:#}");
        return Err(failure(what, started.elapsed()));
    }
    println!(
        "  node {index} restarted with the same key on {}; it dials {} again",
        cluster.nodes[index].address,
        list(&it_dialed)
    );
    for &n in &it_dialed {
        let address = cluster.nodes[n].address.clone();
        cluster.nodes[index].send(Command::Keep(cluster.peers[n], address));
    }
    let settled = cluster
        .wait_until(CONVERGE_DEADLINE, Cluster::is_settled)
        .await;
    let took = started.elapsed();
    if !settled {
        let what =
            format!("no convergence within {CONVERGE_DEADLINE:?} after node {index} restarted");
        return Err(failure(what, took));
    }

    let not_redialed: Vec<usize> = dialed_it
        .iter()
        .copied()
        .filter(|&n| !redialed(cluster, events_before, n, index))
        .collect();
    if !not_redialed.is_empty() {
        let what = format!(
            "nodes {} had dialed node {index} but did not redial it",
            list(&not_redialed)
        );
        return Err(failure(what, took));
    }
    println!(
        "  every pair has one connection again {took:.2?} after the restart; \
         nodes {} redialed node {index}",
        list(&dialed_it)
    );
    Ok(took)
}

/// Kills node `index` and waits until every one of `others` has lost its connection to it.
async fn kill_and_await_loss(
    cluster: &mut Cluster,
    index: usize,
    others: &[usize],
) -> Result<(), StageFailure> {
    let started = Instant::now();
    cluster.kill(index).await;
    let peer = cluster.peers[index];
    let lost = cluster
        .wait_until(LOSS_DEADLINE, |c| {
            others
                .iter()
                .all(|&n| !c.statuses[n].connections.contains_key(&peer))
        })
        .await;
    if lost {
        Ok(())
    } else {
        let what =
            format!("the peers of node {index} did not notice it died within {LOSS_DEADLINE:?}");
        Err(failure(what, started.elapsed()))
    }
}

/// Every node in `keepers` asks its manager to keep node `index`, and reports it wanted.
async fn keep_node(cluster: &mut Cluster, keepers: &[usize], index: usize) -> bool {
    let peer = cluster.peers[index];
    let address = cluster.nodes[index].address.clone();
    for &n in keepers {
        cluster.nodes[n].send(Command::Keep(peer, address.clone()));
    }
    cluster
        .wait_until(SETTLE_DEADLINE, |c| {
            keepers
                .iter()
                .all(|&n| c.statuses[n].wanted.contains(&peer))
        })
        .await
}

/// Whether node `by` scheduled a redial of node `of` after event `since` and now keeps a
/// connection it dialed itself.
fn redialed(cluster: &Cluster, since: usize, by: usize, of: usize) -> bool {
    let peer = cluster.peers[of];
    let scheduled = cluster.reported_since(
        since,
        by,
        |e| matches!(e, Event::RedialScheduled { peer: p, .. } if *p == peer),
    );
    scheduled && cluster.initiator(by, of) == Some(Initiator::Local)
}

/// Stage 3: node 0 bans node 2. Node 2 must receive goodbye `Banned`, the pair must end with no
/// connection (and nothing scheduled to bring one back), every other pair must keep its one.
async fn ban(cluster: &mut Cluster, outcome: &mut Outcome) -> bool {
    println!("  node 0 bans node 2 for {DEMO_BAN:?} ...");
    let started = Instant::now();
    cluster.severed.insert((0, 2));
    cluster.nodes[0].send(Command::Ban(cluster.peers[2], DEMO_BAN));
    let held = cluster
        .wait_until(SETTLE_DEADLINE, |c| {
            c.goodbye_received(2, 0, DisconnectReason::Banned) && c.is_settled()
        })
        .await;
    let took = started.elapsed();
    if held {
        println!(
            "  node 2 received goodbye from node 0: {}; no connection between them, \
             nothing redials, the other pairs keep theirs",
            DisconnectReason::Banned
        );
    } else if !cluster.goodbye_received(2, 0, DisconnectReason::Banned) {
        outcome.fail(
            cluster,
            "node 2 received no goodbye `Banned` from node 0".to_owned(),
        );
    } else {
        let what = format!("the ban of node 2 did not settle within {SETTLE_DEADLINE:?}");
        outcome.fail(cluster, what);
    }
    outcome.record(cluster, "banned", held, took)
}

/// Stage 4: node 0 disconnects node 1. Node 1 must receive goodbye `Normal`, the pair must end
/// with no connection, every other pair must keep its one.
async fn goodbye(cluster: &mut Cluster, outcome: &mut Outcome) -> bool {
    println!("  node 0 disconnects node 1 ...");
    let started = Instant::now();
    cluster.severed.insert((0, 1));
    cluster.nodes[0].send(Command::Disconnect(cluster.peers[1]));
    let held = cluster
        .wait_until(SETTLE_DEADLINE, |c| {
            c.goodbye_received(1, 0, DisconnectReason::Normal) && c.is_settled()
        })
        .await;
    let took = started.elapsed();
    if held {
        println!(
            "  node 1 received goodbye from node 0: {}; the other pairs keep their connection",
            DisconnectReason::Normal
        );
    } else if !cluster.goodbye_received(1, 0, DisconnectReason::Normal) {
        outcome.fail(
            cluster,
            "node 1 received no goodbye `Normal` from node 0".to_owned(),
        );
    } else {
        let what = format!("the goodbye to node 1 did not settle within {SETTLE_DEADLINE:?}");
        outcome.fail(cluster, what);
    }
    outcome.record(cluster, "goodbye", held, took)
}

/// `1, 4, 6`, or `none`.
fn list(nodes: &[usize]) -> String {
    if nodes.is_empty() {
        return "none".to_owned();
    }
    let names: Vec<String> = nodes.iter().map(usize::to_string).collect();
    names.join(", ")
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

/// The table: one column per stage run, then the totals over the whole run.
fn print_summary(cluster: &Cluster, outcome: &Outcome) {
    let size = cluster.size();
    let pairs = size * (size - 1) / 2;
    let line = "-".repeat(30 + 12 * outcome.stages.len().max(1));
    let stage_row = |label: &str, value: &dyn Fn(&Stage) -> String| {
        let cells: String = outcome
            .stages
            .iter()
            .map(|stage| format!("{:>12}", value(stage)))
            .collect();
        println!("  {label:<28}{cells}");
    };
    let total_row = |label: &str, value: usize, note: String| {
        let text = format!("  {label:<28}{value:>12}   {note}");
        println!("{}", text.trim_end());
    };

    println!();
    println!("  summary: {size} nodes, {pairs} pairs");
    println!("  {line}");
    stage_row("after stage", &|s| s.name.to_owned());
    stage_row("held", &|s| if s.held { "yes" } else { "NO" }.to_owned());
    stage_row("time to settle", &|s| format!("{:.2?}", s.took));
    stage_row("connections", &|s| s.counts.connections.to_string());
    stage_row("pairs with 0 connections", &|s| s.counts.none.to_string());
    stage_row("pairs with 1 connection", &|s| s.counts.one.to_string());
    stage_row("pairs with 2+ connections", &|s| {
        s.counts.several.to_string()
    });
    println!("  {line}");
    let count = |predicate: fn(&Event) -> bool| cluster.count_events(predicate);
    total_row(
        "duplicates closed",
        count(|e| matches!(e, Event::DuplicateClosed { .. })),
        format!(
            "reported by either end; {} of {pairs} pairs had one",
            cluster.pairs_with_duplicates()
        ),
    );
    total_row(
        "redials scheduled",
        count(|e| matches!(e, Event::RedialScheduled { .. })),
        "rescues of failed dials, and redials after the restart".to_owned(),
    );
    total_row(
        "dials failed",
        count(|e| matches!(e, Event::DialFailed { .. })),
        String::new(),
    );
    total_row(
        "goodbyes received",
        count(|e| matches!(e, Event::GoodbyeReceived { .. })),
        cluster.goodbye_reasons(),
    );
    println!("  {line}");
}
