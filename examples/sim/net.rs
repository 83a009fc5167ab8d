//! The modelled network: who can reach whom, and how long a message takes.
//!
//! Everything is a pure function of the seed and the node pair, so a run is reproducible and
//! a link's latency needs no storage (10,000 nodes have 50 million pairs).

use std::time::Duration;

use rand::{rngs::StdRng, Rng};

/// The shape of the network, set by the scenario.
#[derive(Debug, Clone)]
pub struct NetParams {
    /// Median one-way latency of a link.
    pub median_latency: Duration,
    /// Spread of the log-normal latency distribution (sigma of the underlying normal).
    pub latency_sigma: f64,
    /// Probability that one message (a dial, a ping, a goodbye, a peer list) is lost.
    pub loss: f64,
    /// Share of nodes that accept no inbound connection (behind a NAT): they dial out only.
    pub unreachable_share: f64,
    /// How long a dial to a host that does not answer takes to fail.
    pub connect_timeout: Duration,
}

impl Default for NetParams {
    fn default() -> Self {
        Self {
            median_latency: Duration::from_millis(40),
            latency_sigma: 0.6,
            loss: 0.01,
            unreachable_share: 0.05,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A node's standing in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// Running and answering.
    Up,
    /// Gone without a word (crashed, powered off): packets to it vanish.
    Dead,
}

/// Reachability and latency between nodes.
#[derive(Debug)]
pub struct Net {
    pub params: NetParams,
    seed: u64,
    /// Which side of a partition each node is on; `None` when the network is whole.
    partition: Option<Vec<bool>>,
    /// Nodes that accept no inbound connection.
    pub unreachable: Vec<bool>,
    pub hosts: Vec<Host>,
}

impl Net {
    pub fn new(params: NetParams, nodes: usize, seed: u64, rng: &mut StdRng) -> Self {
        let unreachable = (0..nodes)
            .map(|_| rng.gen_bool(params.unreachable_share.clamp(0.0, 1.0)))
            .collect();
        Self {
            params,
            seed,
            partition: None,
            unreachable,
            hosts: vec![Host::Up; nodes],
        }
    }

    /// One-way latency between `a` and `b`: log-normal around the median, fixed per pair.
    pub fn latency(&self, a: usize, b: usize) -> Duration {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let h1 = splitmix(self.seed ^ ((lo as u64) << 32 | hi as u64));
        let h2 = splitmix(h1);
        // Box-Muller from two uniforms in (0, 1].
        let u1 = ((h1 >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (h2 >> 11) as f64 / (1u64 << 53) as f64;
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let ms =
            self.params.median_latency.as_secs_f64() * 1e3 * (self.params.latency_sigma * z).exp();
        Duration::from_micros((ms.clamp(1.0, 1_000.0) * 1e3) as u64)
    }

    /// Round-trip time between `a` and `b`.
    pub fn rtt(&self, a: usize, b: usize) -> Duration {
        self.latency(a, b) * 2
    }

    /// Whether packets flow between `a` and `b` (both alive, same side of any partition).
    pub fn path(&self, a: usize, b: usize) -> bool {
        self.hosts[a] == Host::Up
            && self.hosts[b] == Host::Up
            && self
                .partition
                .as_ref()
                .is_none_or(|side| side[a] == side[b])
    }

    /// Whether a message from `a` to `b` arrives (path and no loss).
    pub fn delivers(&self, a: usize, b: usize, rng: &mut StdRng) -> bool {
        self.path(a, b) && !rng.gen_bool(self.params.loss.clamp(0.0, 1.0))
    }

    /// Splits the network in two: nodes for which `side` is true on one side.
    pub fn split(&mut self, side: Vec<bool>) {
        self.partition = Some(side);
    }

    /// Heals the partition.
    pub fn heal(&mut self) {
        self.partition = None;
    }
}

/// A 64-bit mixer (splitmix64's finaliser): a per-pair latency from the seed without storage.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
