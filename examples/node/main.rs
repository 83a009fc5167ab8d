//! A libp2p node with the connection manager, in two modes.
//!
//! **Cluster demo** (no arguments, or `--cluster N`, `--transport tcp|quic`): starts N nodes
//! (8 by default) in this one process on 127.0.0.1, each a swarm in its own task, and walks
//! them through four stages, each awaited event by event with a deadline (`demo/`):
//!
//! 1. *Convergence*: every node dials every other at once with plain `Swarm::dial` and default
//!    options (the harsh case: simultaneous dials from the listening port), until every pair has
//!    exactly one connection and nothing is in flight.
//! 2. *Restart*: the other nodes ask their manager to keep the last node; it is killed and
//!    restarted with the same key (on the same port over TCP; over QUIC on a new one, which its
//!    peers are told), and dials again the peers it had dialed. The peers that had dialed it
//!    redial it by themselves, and every pair is back to one connection.
//! 3. *Ban*: node 0 bans node 2 for 60 s. Node 2 receives goodbye `Banned`; the pair stays
//!    without a connection, every other pair keeps its one.
//! 4. *Goodbye*: node 0 disconnects node 1, which receives goodbye `Normal`.
//!
//! It then prints a summary table (with the transport of the kept connections) and exits 0
//! only if every stage held (1 otherwise, with what failed).
//!
//! **Long-lived node** (any node option or its environment variable): one node that prints its
//! peer id, its effective configuration, its listen addresses (`listening on .../p2p/<peer
//! id>`), every event of the manager (one line each, or JSON with `--json`) and a status table
//! every `--status-interval` seconds. Settings come from flags, environment variables and a
//! TOML `--config` file (`config.rs`, `cli.rs`); transports are TCP (noise or TLS), QUIC and
//! WebSocket (`swarm.rs`). `--admin ADDR` serves the admin API, the status page, `/metrics`
//! and `/healthz` (`admin.rs`, `page.html`); `node ctl` calls the API (`ctl.rs`).
//! `--stdin-commands` reads the same commands from standard input (`commands.rs`;
//! `scripts/interop.sh` drives the node with them). Ctrl-C or SIGTERM says goodbye to every
//! peer, waits up to 3 s for the connections to close, and exits 0.
//!
//! ```text
//! cargo run --example node
//! cargo run --example node -- --transport quic
//! cargo run --example node -- --listen /ip4/127.0.0.1/tcp/4001 --key-file a.key --admin 127.0.0.1:5001
//! cargo run --example node -- ctl peers
//! cargo run --example node -- ctl ban <peer id> --for 600
//! cargo run --example node --features redb -- --key-file a.key --store a.redb --dial <addr/p2p/id>
//! ```
//!
//! Logs go to stderr: the example's own at `--log` (default `info`), the libraries' at `warn`;
//! `RUST_LOG` replaces both.

mod admin;
mod cli;
mod commands;
mod config;
mod ctl;
mod demo;
mod describe;
mod key;
mod node;
mod output;
mod page;
mod signals;
mod snapshot;
mod state;
mod status;
mod store;
mod swarm;
mod telemetry;

use std::process::ExitCode;

use clap::{parser::ValueSource, Args as _, CommandFactory as _, FromArgMatches as _, Parser};
use tracing_subscriber::{filter::LevelFilter, EnvFilter};

use crate::{cli::NodeArgs, config::NodeConfig, demo::Transport};

/// A libp2p node with the connection manager: a local cluster demo, or one long-lived node.
#[derive(Parser, Debug)]
#[command(name = "node", version, args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Subcommand>,
    /// Run the cluster demo with N nodes, 4 to 32 (without any node option it runs with 8).
    ///
    /// Beyond about 20 nodes a debug build on a small machine is CPU-bound: handshakes can
    /// exceed libp2p's 10 s upgrade timeout.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(4..=32))]
    cluster: Option<u16>,
    /// The cluster demo's transport.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    #[command(flatten)]
    node: NodeArgs,
    /// Log level of the example's own lines; the libraries log at `warn`. RUST_LOG overrides.
    #[arg(
        long,
        value_name = "LEVEL",
        default_value = "info",
        env = "LIBP2P_NODE_LOG"
    )]
    log: LevelFilter,
}

/// Commands besides running a node.
#[derive(clap::Subcommand, Debug)]
enum Subcommand {
    /// Ask a running node through its admin API (`--admin`).
    Ctl(ctl::CtlArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(Subcommand::Ctl(ctl)) = args.command {
        return Ok(ctl::run(ctl));
    }
    init_tracing(args.log);
    let node_options = node_options_given(&matches);
    if node_options.is_empty() {
        let size = args.cluster.unwrap_or(demo::DEFAULT_CLUSTER_SIZE);
        return demo::run_cluster_demo(usize::from(size), args.transport).await;
    }
    if args.cluster.is_some() {
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("--cluster runs the demo; it cannot be combined with {node_options:?}"),
            )
            .exit();
    }
    let stdin_commands = args.node.stdin_commands;
    let print_only = args.node.print_config;
    let base = match &args.node.config {
        Some(path) => NodeConfig::load(path)?,
        None => NodeConfig::default(),
    };
    let config = args.node.apply_to(base);
    if print_only {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    output::set_json(config.node.json);
    node::run_long_lived_node(config, stdin_commands).await?;
    Ok(ExitCode::SUCCESS)
}

/// The node options given on the command line or in the environment: any selects the node.
fn node_options_given(matches: &clap::ArgMatches) -> Vec<String> {
    let node_args = NodeArgs::augment_args(clap::Command::new("node"));
    node_args
        .get_arguments()
        .map(|arg| arg.get_id().as_str())
        .filter(|id| {
            matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        })
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect()
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
