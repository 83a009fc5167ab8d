//! What the scenarios measure: counts per simulated second and per node.

use libp2p_connection_manager::core::DisconnectReason;

/// Counters filled while the simulation runs.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Dials started per second (each one a connection attempt on the wire).
    pub dials: Vec<u32>,
    /// Of those, dials to a bootstrap node.
    pub bootstrap_dials: Vec<u32>,
    /// Dials that reached a bootstrap node per second (the load it has to handle).
    pub bootstrap_arrivals: Vec<u32>,
    /// Dials started per node.
    pub dials_by_node: Vec<u32>,
    /// Connections closed for a missing ping: (second, node, remote).
    pub timeouts: Vec<(f64, usize, Option<usize>)>,
    /// Connections established (both sides).
    pub established: u64,
    /// Connections closed, as seen by either side.
    pub disconnects: u64,
    /// Dials to nodes that are not running (dead, or not started yet).
    pub dials_to_dead: u64,
    /// Peer-exchange lists delivered.
    pub lists: u64,
    /// Wanted peers the application replaced after the manager gave up on them.
    pub replaced: u64,
}

impl Metrics {
    pub fn new(nodes: usize) -> Self {
        Self {
            dials_by_node: vec![0; nodes],
            ..Self::default()
        }
    }

    pub fn dial(&mut self, secs: f64, node: usize, to_bootstrap: bool) {
        bump(&mut self.dials, secs);
        if to_bootstrap {
            bump(&mut self.bootstrap_dials, secs);
        }
        self.dials_by_node[node] += 1;
    }

    pub fn arrival(&mut self, secs: f64, at_bootstrap: bool) {
        if at_bootstrap {
            bump(&mut self.bootstrap_arrivals, secs);
        }
    }

    pub fn disconnected(
        &mut self,
        secs: f64,
        node: usize,
        remote: Option<usize>,
        reason: DisconnectReason,
    ) {
        self.disconnects += 1;
        if reason == DisconnectReason::Timeout {
            self.timeouts.push((secs, node, remote));
        }
    }
}

fn bump(series: &mut Vec<u32>, secs: f64) {
    let at = secs.max(0.0) as usize;
    if series.len() <= at {
        series.resize(at + 1, 0);
    }
    series[at] += 1;
}

/// The value of `series` at each second of `from..to` (zero where nothing happened).
pub fn window(series: &[u32], from: usize, to: usize) -> Vec<u32> {
    (from..to)
        .map(|s| series.get(s).copied().unwrap_or(0))
        .collect()
}

/// The `q` quantile (0..=1) of `values`, which it sorts.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let at = ((values.len() - 1) as f64 * q).round() as usize;
    values[at]
}
