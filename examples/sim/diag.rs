//! Diagnostics of the peer-exchange scenario (`--diagnose`): what became of every dial, who
//! closed which connection and why, how many lists each node received and how many distinct
//! peers they named, and the bootstrap rounds, with a time series every `--diag-every` seconds.

use std::collections::{BTreeMap, HashMap, HashSet};

use libp2p_connection_manager::core::{ClosedBy, Denial, DisconnectReason, Phase};

use crate::{metrics::quantile, world::World};

/// Per-second window counters of the time series.
#[derive(Debug, Default, Clone)]
struct Window {
    hearsay_dials: u64,
    hearsay_established: u64,
    bootstrap_rounds: u64,
    lists: u64,
    named: HashSet<usize>,
    trims: u64,
    trimmed_to_zero: u64,
}

/// What the diagnostics collect.
#[derive(Debug, Default)]
pub struct Diag {
    pub on: bool,
    /// Print a time-series row every this many seconds.
    pub every: usize,
    /// Dial outcomes: "to bootstrap|to other: outcome" -> count.
    outcomes: BTreeMap<String, u64>,
    /// Connection ends at the side with no connection left to the peer:
    /// "side <- remote, closed by, reason" -> count.
    ends: BTreeMap<String, u64>,
    /// Lists received per node, and when the last one came.
    lists_by_node: Vec<u32>,
    last_list: Vec<f64>,
    /// Times each node was named in a delivered list.
    named: Vec<u32>,
    /// Trims per trimming node (trim events, peers trimmed).
    trims_by_node: HashMap<usize, (u32, u32)>,
    /// Peers trimmed away whose last connection that was (they fall back to bootstrapping).
    trimmed_to_zero: u64,
    /// Bootstrap rounds per node (phase to Bootstrapping).
    rounds_by_node: Vec<u32>,
    /// When each node last went to zero peers, and the gaps until its next bootstrap round.
    lost_at: Vec<Option<f64>>,
    gaps: Vec<f64>,
    /// The current window and the rows printed so far.
    window: Window,
    pub rows: Vec<String>,
}

/// "B" for a bootstrap node, "H" for a node with at least 160 peers (the low watermark), "N".
fn class(world: &World, node: usize) -> &'static str {
    if world.bootstrap.contains(&node) {
        "B"
    } else if world.nodes[node].manager.stats().connected_peers >= 160 {
        "H"
    } else {
        "N"
    }
}

/// A short name for a refusal.
pub fn denial_name(denial: &Denial) -> String {
    match denial {
        Denial::Limit { kind, .. } => format!("{kind} limit"),
        other => {
            let debug = format!("{other:?}");
            debug
                .split([' ', '{', '('])
                .next()
                .unwrap_or("?")
                .to_string()
        }
    }
}

impl Diag {
    pub fn new(nodes: usize) -> Self {
        Self {
            every: 30,
            lists_by_node: vec![0; nodes],
            last_list: vec![0.0; nodes],
            named: vec![0; nodes],
            rounds_by_node: vec![0; nodes],
            lost_at: vec![None; nodes],
            ..Self::default()
        }
    }
}

impl World {
    /// A dial from `from` to `target` ended (or started) with `outcome`.
    pub fn diag_dial(&mut self, target: usize, outcome: &str) {
        if !self.diag.on {
            return;
        }
        let to = if self.bootstrap.contains(&target) {
            "to bootstrap"
        } else {
            "to other"
        };
        if to == "to other" {
            match outcome {
                "started" => self.diag.window.hearsay_dials += 1,
                "established" => self.diag.window.hearsay_established += 1,
                _ => {}
            }
        }
        *self
            .diag
            .outcomes
            .entry(format!("{to}: {outcome}"))
            .or_default() += 1;
    }

    /// Node `i` lost its last connection to `remote`.
    pub fn diag_disconnected(
        &mut self,
        i: usize,
        remote: Option<usize>,
        reason: DisconnectReason,
        closed_by: ClosedBy,
    ) {
        if !self.diag.on {
            return;
        }
        let me = class(self, i);
        let other = remote.map_or("?", |r| class(self, r));
        let key = format!("{me} <- {other}, by {closed_by:?}: {reason:?}");
        *self.diag.ends.entry(key).or_default() += 1;
        let zero = self.nodes[i].manager.stats().connected_peers == 0;
        if zero {
            self.diag.lost_at[i] = Some(self.secs());
            if reason == DisconnectReason::NetworkRestructure && closed_by == ClosedBy::Remote {
                self.diag.trimmed_to_zero += 1;
                self.diag.window.trimmed_to_zero += 1;
            }
        }
    }

    pub fn diag_trimmed(&mut self, i: usize, peers: usize) {
        if !self.diag.on {
            return;
        }
        let entry = self.diag.trims_by_node.entry(i).or_default();
        entry.0 += 1;
        entry.1 += peers as u32;
        self.diag.window.trims += peers as u64;
    }

    pub fn diag_phase(&mut self, i: usize, new: Phase) {
        if !self.diag.on || new != Phase::Bootstrapping {
            return;
        }
        self.diag.rounds_by_node[i] += 1;
        self.diag.window.bootstrap_rounds += 1;
        if let Some(at) = self.diag.lost_at[i].take() {
            self.diag.gaps.push(self.secs() - at);
        }
    }

    /// A list from `from` reached node `to`, naming `named`.
    pub fn diag_list(&mut self, to: usize, named: impl Iterator<Item = usize>) {
        if !self.diag.on {
            return;
        }
        self.diag.lists_by_node[to] += 1;
        self.diag.last_list[to] = self.secs();
        self.diag.window.lists += 1;
        for n in named {
            self.diag.named[n] += 1;
            self.diag.window.named.insert(n);
        }
    }

    /// Called every simulated second: a row of the time series every `every` seconds.
    pub fn diag_second(&mut self) {
        if !self.diag.on {
            return;
        }
        let secs = self.secs().round() as usize;
        if self.diag.every == 0 || !secs.is_multiple_of(self.diag.every) {
            return;
        }
        let started: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.net.hosts[*i] == crate::net::Host::Up)
            .collect();
        let degrees: Vec<usize> = started
            .iter()
            .map(|i| self.nodes[*i].manager.stats().connected_peers)
            .collect();
        let zero = degrees.iter().filter(|d| **d == 0).count();
        let some = degrees.iter().filter(|d| (1..8).contains(*d)).count();
        let full = degrees.iter().filter(|d| **d >= 8).count();
        let hot = degrees.iter().filter(|d| **d >= 160).count();
        let mut sorted: Vec<f64> = degrees.iter().map(|d| *d as f64).collect();
        let median = quantile(&mut sorted, 0.5);
        let hearsay: usize = started
            .iter()
            .map(|i| self.nodes[*i].manager.hearsay_stats().peers)
            .sum();
        let w = std::mem::take(&mut self.diag.window);
        self.diag.rows.push(format!(
            "| {secs} | {} | {zero} | {some} | {full} | {hot} | {median} | {hearsay} | {} | {} | {} | {} | {} | {} | {} |",
            started.len(),
            w.bootstrap_rounds,
            w.lists,
            w.named.len(),
            w.hearsay_dials,
            w.hearsay_established,
            w.trims,
            w.trimmed_to_zero,
        ));
    }

    /// Prints what was collected.
    pub fn diag_print(&self) {
        if !self.diag.on {
            return;
        }
        let d = &self.diag;
        println!("\n#### Diagnostics\n");
        println!(
            "Time series (every {} s; counts in the window before the row):\n",
            d.every
        );
        println!("| s | started | 0 peers | 1-7 | >= 8 | >= 160 | median | hearsay peers held | bootstrap rounds | lists | distinct peers named | hearsay dials | ... established | peers trimmed | ... to 0 peers |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for row in &d.rows {
            println!("{row}");
        }
        println!("\nDial outcomes:\n\n| dial | count |\n|---|---|");
        for (k, v) in &d.outcomes {
            println!("| {k} | {v} |");
        }
        println!(
            "\nLast connection to a peer closed (side <- remote; B bootstrap, H >= 160 peers at the time, N other):\n\n| end | count |\n|---|---|"
        );
        for (k, v) in &d.ends {
            println!("| {k} | {v} |");
        }
        let n = self.nodes.len();
        let mut lists: Vec<f64> = d.lists_by_node.iter().map(|l| *l as f64).collect();
        let never = lists.iter().filter(|l| **l == 0.0).count();
        println!("\n| measure | value |\n|---|---|");
        println!(
            "| lists received per node: min, median, p90, max; nodes that got none | {}, {}, {}, {}; {never} |",
            quantile(&mut lists, 0.0),
            quantile(&mut lists, 0.5),
            quantile(&mut lists, 0.9),
            quantile(&mut lists, 1.0)
        );
        let total: u64 = d.named.iter().map(|c| *c as u64).sum();
        let mut named: Vec<u32> = d.named.clone();
        named.sort_unstable_by(|a, b| b.cmp(a));
        let top = |k: usize| named.iter().take(k).map(|c| *c as u64).sum::<u64>();
        let ever = named.iter().filter(|c| **c > 0).count();
        println!(
            "| namings in lists: total; distinct peers ever named; share of the top 200, top 1,000 | {total}; {ever} of {n}; {:.0}%, {:.0}% |",
            100.0 * top(200) as f64 / total.max(1) as f64,
            100.0 * top(1000) as f64 / total.max(1) as f64
        );
        let boot: u32 = self
            .bootstrap
            .iter()
            .map(|b| d.trims_by_node.get(b).map_or(0, |t| t.1))
            .sum();
        let all: u32 = d.trims_by_node.values().map(|t| t.1).sum();
        println!(
            "| peers trimmed: total, by the bootstrap nodes, by other nodes; distinct trimming nodes | {all}, {boot}, {}; {} |",
            all - boot,
            d.trims_by_node.len()
        );
        println!(
            "| trims that left the trimmed peer with 0 peers | {} |",
            d.trimmed_to_zero
        );
        let mut rounds: Vec<f64> = d.rounds_by_node.iter().map(|r| *r as f64).collect();
        println!(
            "| bootstrap rounds per node: median, p90, max; total | {}, {}, {}; {} |",
            quantile(&mut rounds, 0.5),
            quantile(&mut rounds, 0.9),
            quantile(&mut rounds, 1.0),
            d.rounds_by_node.iter().map(|r| *r as u64).sum::<u64>()
        );
        let (components, largest) = self.components();
        println!(
            "| connected components at the end (open connections), the largest | {components}, {largest} nodes |"
        );
        let mut boot: Vec<usize> = self
            .bootstrap
            .iter()
            .map(|b| self.nodes[*b].manager.stats().connected_peers)
            .collect();
        boot.sort_unstable();
        println!("| bootstrap nodes' peers at the end | {boot:?} |");
        let short: Vec<usize> = (0..n)
            .filter(|i| self.nodes[*i].manager.stats().connected_peers < 8)
            .collect();
        for &i in short.iter().take(10) {
            let m = &self.nodes[i].manager;
            let s = m.stats();
            let h = m.hearsay_stats();
            println!(
                "| node {i} at the end (unreachable: {}) | {} peers, {} wanted, {} hearsay peers, {} quiet, {} pending, {} lists received, last at {:.0} s |",
                self.net.unreachable[i],
                s.connected_peers,
                s.wanted_peers,
                h.peers,
                h.quiet,
                s.pending_connections,
                d.lists_by_node[i],
                d.last_list[i],
            );
        }
        let mut gaps = d.gaps.clone();
        println!(
            "| from losing the last peer to the next bootstrap round: count; median, p90, max | {}; {:.1} s, {:.1} s, {:.1} s |",
            gaps.len(),
            quantile(&mut gaps, 0.5),
            quantile(&mut gaps, 0.9),
            quantile(&mut gaps, 1.0)
        );
    }

    /// Connected components of the graph of open connections: how many, and the largest.
    fn components(&self) -> (usize, usize) {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn root(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        for link in self.links.values() {
            if link.sides.iter().all(|s| s.open) {
                let (a, b) = (
                    root(&mut parent, link.sides[0].node),
                    root(&mut parent, link.sides[1].node),
                );
                parent[a] = b;
            }
        }
        let mut sizes = HashMap::new();
        for i in 0..n {
            *sizes.entry(root(&mut parent, i)).or_insert(0usize) += 1;
        }
        let largest = sizes.values().copied().max().unwrap_or(0);
        (sizes.len(), largest)
    }
}
