//! A deterministic, seeded discrete-event simulation of a network of nodes that each run the
//! crate's sans-IO policy (`core::Manager`, as is) over a modelled network: per-link latency
//! from a log-normal distribution, message loss, nodes that accept no inbound connection,
//! partitions, deaths and restarts. The driver plays the swarm: a node's actions become events
//! at the other nodes after the link's latency, and those become the other managers' inputs.
//!
//! ```text
//! cargo run --release --features testing --example sim -- --scenario cold-start --nodes 1000
//! cargo run --features testing --example sim -- --check     # short run, exits 1 on a violation
//! ```
//!
//! Each scenario prints a Markdown table (BENCHMARKS.md, "Network simulation") and, with
//! `--svg`, a plot of dials per second and the connected share over time.

mod diag;
mod driver;
mod events;
mod invariants;
mod metrics;
mod net;
mod report;
mod scenarios;
mod setup;
mod world;

use std::{path::PathBuf, process::ExitCode, time::Instant};

use clap::{Parser, ValueEnum};

use crate::{net::NetParams, setup::Setup};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Nodes join from a few bootstrap nodes and dial their wanted peers.
    ColdStart,
    /// Every node restarts at once: the dial load on the bootstrap nodes.
    Restart,
    /// Half the network is cut off for two minutes, then healed.
    Partition,
    /// A tenth of the nodes die silently.
    DeadPeers,
    /// Nodes that know only the bootstrap nodes find others by peer exchange.
    Exchange,
    /// All of the above, one after the other.
    All,
}

/// Simulates a network of connection managers.
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, value_enum, default_value = "cold-start")]
    scenario: Scenario,
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Peers each node's application asks for.
    #[arg(long, default_value_t = 4)]
    wanted: usize,
    #[arg(long, default_value_t = 3)]
    bootstraps: usize,
    /// Nodes join at random times over this many seconds.
    #[arg(long, default_value_t = 30.0)]
    join_window: f64,
    /// In the restart scenario, nodes restart at random times over this many seconds.
    #[arg(long, default_value_t = 0.0)]
    restart_window: f64,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    /// Share of nodes that accept no inbound connection.
    #[arg(long, default_value_t = 0.05)]
    unreachable: f64,
    /// Writes a plot per scenario to this directory.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Peer exchange: print what became of the dials, who closed what, the lists and the
    /// bootstrap rounds, with a time series.
    #[arg(long)]
    diagnose: bool,
    /// With `--diagnose`, a row of the time series every this many seconds.
    #[arg(long, default_value_t = 30)]
    diag_every: usize,
    /// Peer exchange between nodes on private addresses (10.0.0.0/8, as the other scenarios)
    /// instead of public ones.
    #[arg(long)]
    private: bool,
    /// A short run for CI: every scenario at 200 nodes; exits 1 if an invariant fails.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.check {
        args.nodes = 200;
    }
    let setup = Setup {
        nodes: args.nodes,
        seed: args.seed,
        wanted: args.wanted,
        bootstraps: args.bootstraps,
        join_window: args.join_window,
        restart_window: args.restart_window,
        diagnose: args.diagnose.then_some(args.diag_every),
        private: args.private,
        params: NetParams {
            loss: args.loss,
            unreachable_share: args.unreachable,
            ..NetParams::default()
        },
    };
    let scenarios: &[Scenario] = match (args.check, args.scenario) {
        (true, _) | (false, Scenario::All) => &[
            Scenario::ColdStart,
            Scenario::Restart,
            Scenario::Partition,
            Scenario::DeadPeers,
            Scenario::Exchange,
        ],
        (false, _) => std::slice::from_ref(&args.scenario),
    };
    let mut failed = false;
    for &scenario in scenarios {
        let started = Instant::now();
        let mut report = match scenario {
            Scenario::ColdStart => scenarios::cold(&setup),
            Scenario::Restart => scenarios::restart(&setup),
            Scenario::Partition => scenarios::partition(&setup),
            Scenario::DeadPeers => scenarios::dead_peers(&setup),
            Scenario::Exchange => scenarios::exchange(&setup),
            Scenario::All => unreachable!("expanded above"),
        };
        report.row(
            "wall time",
            format!("{:.1} s", started.elapsed().as_secs_f64()),
        );
        report.print();
        failed |= !report.violations.is_empty();
        if let Some(dir) = &args.svg {
            let name = format!("{:?}", scenario).to_lowercase();
            let path = dir.join(format!("sim-{name}-{}.svg", args.nodes));
            if let Err(e) = report.write_svg(&path) {
                eprintln!("cannot write {}: {e}", path.display());
            }
        }
    }
    if failed {
        eprintln!("invariant violations: see above");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
