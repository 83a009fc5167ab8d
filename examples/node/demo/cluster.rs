//! The demo's view of the cluster.

use std::{collections::HashSet, time::Duration};

use libp2p::{identity::Keypair, PeerId};
use libp2p_connection_manager::{DisconnectReason, Event, Initiator};
use tokio::{
    sync::mpsc,
    time::{timeout_at, Instant},
};

use super::{
    node_task::{
        spawn_cluster_node, ClusterNode, Command, NodeContext, Report, ReportContent, Status,
    },
    Transport,
};

/// Connections per pair of nodes, counted into buckets.
#[derive(Debug, Clone, Copy, Default)]
pub struct PairCounts {
    pub connections: u32,
    pub none: usize,
    pub one: usize,
    pub several: usize,
}

/// The demo's view of the cluster: the nodes, their latest status and every manager event.
pub struct Cluster {
    pub nodes: Vec<ClusterNode>,
    pub peers: Vec<PeerId>,
    pub report_tx: mpsc::UnboundedSender<Report>,
    pub reports: mpsc::UnboundedReceiver<Report>,
    pub statuses: Vec<Status>,
    pub events: Vec<(usize, Event)>,
    /// Pairs meant to have no connection (banned, disconnected).
    pub severed: HashSet<(usize, usize)>,
    pub transport: Transport,
}

impl Cluster {
    pub async fn start(size: usize, transport: Transport) -> anyhow::Result<Self> {
        let keys: Vec<Keypair> = (0..size).map(|_| Keypair::generate_ed25519()).collect();
        let peers: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let (report_tx, reports) = mpsc::unbounded_channel();
        let mut nodes = Vec::with_capacity(size);
        for (index, key) in keys.into_iter().enumerate() {
            let listen = transport.listen_address().parse()?;
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
            transport,
        })
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    pub fn dial_everyone_at_once(&self) {
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
    pub async fn wait_until(&mut self, limit: Duration, condition: impl Fn(&Self) -> bool) -> bool {
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
    pub fn apply(&mut self, report: Report) {
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
    pub fn views(&self, a: usize, b: usize) -> (u32, u32) {
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

    pub fn pairs(&self) -> impl Iterator<Item = (usize, usize)> {
        let size = self.size();
        (0..size).flat_map(move |a| (a + 1..size).map(move |b| (a, b)))
    }

    /// The connections pair `(a, b)` (with `a < b`) should have: 0 if severed, else 1.
    pub fn expected(&self, a: usize, b: usize) -> u32 {
        u32::from(!self.severed.contains(&(a, b)))
    }

    pub fn is_quiet(&self) -> bool {
        self.statuses.iter().all(Status::is_quiet)
    }

    /// Every pair has, by both sides' count, the connections it should have, and nothing is in
    /// flight anywhere.
    pub fn is_settled(&self) -> bool {
        self.is_quiet()
            && self.pairs().all(|(a, b)| {
                let want = self.expected(a, b);
                self.views(a, b) == (want, want)
            })
    }

    pub fn pair_counts(&self) -> PairCounts {
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
    pub fn reported_since(
        &self,
        since: usize,
        by: usize,
        matches: impl Fn(&Event) -> bool,
    ) -> bool {
        self.events[since..]
            .iter()
            .any(|(node, event)| *node == by && matches(event))
    }

    pub fn goodbye_received(&self, by: usize, from: usize, reason: DisconnectReason) -> bool {
        let from_peer = self.peers[from];
        self.reported_since(0, by, |event| {
            matches!(event, Event::GoodbyeReceived { peer, reason: r, .. }
                if *peer == from_peer && *r == reason)
        })
    }

    /// Who initiated the connection node `a` keeps to node `b`, as `a` sees it.
    pub fn initiator(&self, a: usize, b: usize) -> Option<Initiator> {
        self.statuses[a].initiators.get(&self.peers[b]).copied()
    }

    /// Kept connections between pairs, counted by transport (`tcp: 27`).
    pub fn kept_by_transport(&self) -> String {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for (a, b) in self.pairs() {
            if let Some(transport) = self.statuses[a].transports.get(&self.peers[b]) {
                match counts.iter_mut().find(|(t, _)| t == transport) {
                    Some((_, count)) => *count += 1,
                    None => counts.push((transport, 1)),
                }
            }
        }
        let parts: Vec<String> = counts
            .iter()
            .map(|(t, n)| format!("{n} over {t}"))
            .collect();
        parts.join(", ")
    }

    pub fn count_events(&self, predicate: impl Fn(&Event) -> bool) -> usize {
        self.events.iter().filter(|(_, e)| predicate(e)).count()
    }

    /// Pairs where either end reported closing a duplicate (both ends usually do).
    pub fn pairs_with_duplicates(&self) -> usize {
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
    pub fn goodbye_reasons(&self) -> String {
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

    pub fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.peers.iter().position(|p| p == peer)
    }

    /// One line per pair or node that is not as it should be.
    pub fn problems(&self) -> Vec<String> {
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
    pub async fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.task.abort();
        let _ = (&mut node.task).await;
        self.statuses[index] = Status::default();
    }

    /// Starts node `index` again with the same key on the same address.
    pub async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        let old = &self.nodes[index];
        let context = NodeContext {
            index,
            incarnation: old.incarnation + 1,
            peers: self.peers.clone(),
            reports: self.report_tx.clone(),
        };
        // In one process a QUIC endpoint's UDP socket outlives its killed swarm (unlike a dead
        // process's), so a QUIC node comes back on a new port, which its peers are told.
        let address = match self.transport {
            Transport::Tcp => old.address.clone(),
            Transport::Quic => Transport::Quic.listen_address().parse()?,
        };
        let node = spawn_cluster_node(old.key.clone(), address, context).await?;
        if self.transport == Transport::Quic {
            for other in self.nodes.iter().filter(|n| n.peer != node.peer) {
                other.send(Command::Keep(node.peer, node.address.clone()));
            }
        }
        self.nodes[index] = node;
        Ok(())
    }

    /// Stops every node task (their swarms and connections are dropped).
    pub async fn stop(self) {
        for node in self.nodes {
            node.task.abort();
            // A killed node's task was awaited already.
            if !node.task.is_finished() {
                let _ = node.task.await;
            }
        }
    }
}
