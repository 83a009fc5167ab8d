//! The cluster demo: N nodes in one process, walked through convergence, a restart, a ban
//! and a goodbye, each stage awaited event by event with a deadline.

mod cluster;
mod node_task;
mod stages;
mod summary;

use std::{process::ExitCode, time::Duration};

use cluster::{Cluster, PairCounts};
use stages::{ban, converge, goodbye, restart};
use summary::{print_problems, print_summary};

/// Nodes in the cluster demo when `--cluster` is not given.
pub const DEFAULT_CLUSTER_SIZE: u16 = 8;
/// How long the cluster may take to reach one connection per pair, at first and after the
/// restart.
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(30);
/// How long the peers of the killed node may take to notice it is gone.
pub const LOSS_DEADLINE: Duration = Duration::from_secs(5);
/// How long a ban or a disconnect may take to arrive and settle.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(5);
/// How long node 0 bans node 2 in the demo.
pub const DEMO_BAN: Duration = Duration::from_secs(60);

/// The transport the demo's nodes listen on and dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// TCP with noise and yamux.
    Tcp,
    /// QUIC (TLS 1.3 built in).
    Quic,
}

impl Transport {
    fn listen_address(self) -> &'static str {
        match self {
            Self::Tcp => "/ip4/127.0.0.1/tcp/0",
            Self::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
    }
}

/// How one stage of the demo went.
pub struct Stage {
    pub name: &'static str,
    pub held: bool,
    pub took: Duration,
    pub counts: PairCounts,
}

/// The stages run so far and what failed.
#[derive(Default)]
pub struct Outcome {
    pub stages: Vec<Stage>,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn record(
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
    pub fn fail(&mut self, cluster: &Cluster, what: String) {
        println!("  FAILED: {what}");
        let problems = cluster.problems();
        print_problems(&problems);
        self.failures.push(what);
    }
}

pub async fn run_cluster_demo(size: usize, transport: Transport) -> anyhow::Result<ExitCode> {
    println!(
        "cluster demo: {size} nodes on 127.0.0.1 over {transport:?}, each dialing the {} others \
         at once",
        size - 1
    );
    match transport {
        Transport::Tcp => {
            println!("  (Swarm::dial with default options: simultaneous dials with TCP port reuse)")
        }
        Transport::Quic => println!(
            "  (Swarm::dial with default options: simultaneous dials from the listening UDP port)"
        ),
    }
    let mut cluster = Cluster::start(size, transport).await?;
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
