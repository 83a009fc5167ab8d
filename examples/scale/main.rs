//! One node, 10,000 connections: the connection manager beside a bare swarm, at the swarm level
//! and over real TCP on loopback.
//!
//! ```text
//! cargo run --release --all-features --example scale                 # 10,000 connections
//! cargo run --release --all-features --example scale -- --connections 2000
//! cargo run --all-features --example scale -- --check                # short run, exits 1 on a violation
//! ```
//!
//! The parent process runs each configuration in turn as two child processes (the same
//! program with `--role`), since one process may hold only about 19,900 sockets here:
//!
//! - a **listener**: one swarm on TCP 127.0.0.1 with noise and yamux, either **bare**
//!   (`ping::Behaviour`, connections held by a one-hour idle timeout) or **manager** (the
//!   crate's `Behaviour`, which runs ping itself; no limits, watermarks at N/2 and N so that
//!   nothing is trimmed until asked, trim grace 0). Both ping every 15 s, the crate's default.
//! - the **dialers**: N small swarms in one tokio runtime, each with its own identity and its
//!   own source address, 127.g.b.c for g in 1..=4 (Linux routes all of 127/8 to loopback; a
//!   dial-only transport binds the socket before connecting), so each /16 holds a quarter of
//!   them. Every fourth dialer in each /16 runs the crate (it reads the goodbyes); the others
//!   are bare ping swarms, which see only their connection close.
//!
//! The phases, each waited for on the reports of both children with a deadline: establish N
//! (at most `--concurrency` dials in flight); hold them at rest for `--rest-secs` and measure
//! the listener's CPU time; trim from N to N/2 (the manager: `force_trim()`, with goodbyes;
//! bare: `Swarm::disconnect_peer_id` of as many peers); the trimmed dialers dial again; ban
//! 127.2.0.0/16 with all N connected (the manager: `ban_network`; bare: `disconnect_peer_id` of
//! its peers). The listener times every poll of its swarm, wall clock and thread CPU time (and
//! every call it makes on the swarm's task): the longest is the stall measure. Progress goes
//! to stderr, the Markdown tables to stdout. Figures and their reading: BENCHMARKS.md, "One
//! node, 10,000 connections".

mod children;
mod dialers;
mod listener;
mod plan;
mod probe;
mod protocol;
mod report;
mod run;
mod transport;

use std::{process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};

use crate::plan::Plan;

/// The ping interval of every swarm: the crate's default (`Config::with_ping_interval`).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// Idle-connection timeout of every swarm: the bare swarms keep their connections by it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Configuration {
    Bare,
    Manager,
}

impl Configuration {
    pub fn name(self) -> &'static str {
        match self {
            Configuration::Bare => "bare",
            Configuration::Manager => "manager",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    Parent,
    Listener,
    Dialers,
}

/// One node with many connections: the connection manager beside a bare swarm.
#[derive(Debug, Clone, Parser)]
pub struct Args {
    /// Connections to the listener.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// The CPU-at-rest window, in seconds.
    #[arg(long, default_value_t = 20.0)]
    pub rest_secs: f64,
    /// Dials in flight at most, over all dialers.
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Every n-th dialer of each /16 runs the crate's Behaviour (0: none).
    #[arg(long, default_value_t = 4)]
    pub managed_every: usize,
    /// The configurations to run, in this order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Configuration::Bare, Configuration::Manager])]
    configurations: Vec<Configuration>,
    /// The stall bound: no poll of the listener's swarm longer than this.
    #[arg(long, default_value_t = 50.0)]
    pub stall_bound_ms: f64,
    /// A short run for CI (300 connections, 3 s at rest): exits 1 if an invariant fails.
    #[arg(long)]
    check: bool,
    /// Prints the children's reports to stderr.
    #[arg(long)]
    pub verbose: bool,
    #[arg(long, value_enum, default_value = "parent", hide = true)]
    role: Role,
    #[arg(long, value_enum, default_value = "bare", hide = true)]
    configuration: Configuration,
    #[arg(long, hide = true)]
    address: Option<String>,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    let result = match args.role {
        Role::Listener => listener::run(args.configuration, args.connections),
        Role::Dialers => match args.address.as_deref().map(str::parse) {
            Some(Ok(address)) => dialers::run(
                address,
                args.connections,
                Plan {
                    managed_every: args.managed_every,
                },
                args.concurrency,
            ),
            _ => Err(anyhow::anyhow!("the dialers need --address")),
        },
        Role::Parent => {
            if args.check {
                args.connections = 300;
                args.rest_secs = 3.0;
            }
            return parent(&args);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{:?} failed: {error:#}", args.role);
            ExitCode::FAILURE
        }
    }
}

fn parent(args: &Args) -> ExitCode {
    let load_before = report::load();
    let mut outcomes = Vec::new();
    for configuration in &args.configurations {
        match run::run(args, *configuration) {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                eprintln!("{}: {error:#}", configuration.name());
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{}", report::render(args, &outcomes, &load_before));
    let failed = outcomes
        .iter()
        .flat_map(|o| &o.checks)
        .filter(|(_, pass, _)| !pass)
        .count();
    if failed > 0 {
        eprintln!("{failed} invariant(s) failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
