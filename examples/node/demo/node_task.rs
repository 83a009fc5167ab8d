//! One cluster node running in its own task, and what it reports.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use anyhow::Context as _;
use libp2p::{
    futures::StreamExt, identity::Keypair, multiaddr::Protocol, swarm::SwarmEvent, Multiaddr,
    PeerId, Swarm,
};
use libp2p_connection_manager::{self as manager, Event, Initiator};
use tokio::{sync::mpsc, time::timeout};

use crate::{
    state::transport_of,
    swarm::{build_swarm, NodeBehaviour, NodeBehaviourEvent},
};

/// What the demo asks a cluster node to do.
pub enum Command {
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
pub struct Report {
    pub node: usize,
    pub incarnation: u32,
    pub content: ReportContent,
}

pub enum ReportContent {
    Status(Status),
    Event(Event),
}

/// A cluster node's state after its latest event, for the cluster's peers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    /// Established connections per peer, as the swarm counts them.
    pub connections: HashMap<PeerId, u32>,
    /// Who initiated the open connection the manager keeps to each peer.
    pub initiators: HashMap<PeerId, Initiator>,
    /// The transport of the open connection the manager keeps to each peer.
    pub transports: HashMap<PeerId, &'static str>,
    /// Peers the manager was asked to keep.
    pub wanted: HashSet<PeerId>,
    /// Connections the swarm is dialing or negotiating.
    pub pending: u32,
    /// Connections the manager counts as being negotiated.
    pub manager_pending: usize,
    /// Peers with a redial scheduled.
    pub redials: usize,
    /// Connections the manager is closing (goodbye on its way).
    pub closing: usize,
}

impl Status {
    /// Nothing in flight: no handshake, no redial to come, no goodbye on its way. (Timers that
    /// do not change connections, such as ban expiry and liveness deadlines, do not count.)
    pub fn is_quiet(&self) -> bool {
        self.pending == 0 && self.manager_pending == 0 && self.redials == 0 && self.closing == 0
    }
}

/// The demo's handle on one node running in its own task.
pub struct ClusterNode {
    pub key: Keypair,
    pub peer: PeerId,
    /// The listen address, without `/p2p`.
    pub address: Multiaddr,
    pub incarnation: u32,
    pub commands: mpsc::UnboundedSender<Command>,
    pub task: tokio::task::JoinHandle<()>,
}

impl ClusterNode {
    /// Sends `command`; a node whose task ended has nothing to do with it.
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    pub fn p2p_address(&self) -> Multiaddr {
        self.address.clone().with(Protocol::P2p(self.peer))
    }
}
/// What a cluster node task needs besides its swarm.
pub struct NodeContext {
    pub index: usize,
    pub incarnation: u32,
    /// Every node of the cluster, for the status.
    pub peers: Vec<PeerId>,
    pub reports: mpsc::UnboundedSender<Report>,
}

impl NodeContext {
    /// Reports to the demo; false once the demo is gone.
    pub fn report(&self, content: ReportContent) -> bool {
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
pub async fn spawn_cluster_node(
    key: Keypair,
    listen: Multiaddr,
    context: NodeContext,
) -> anyhow::Result<ClusterNode> {
    let mut swarm = build_swarm(key.clone(), manager::Config::default()).await?;
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

pub async fn first_listen_address(swarm: &mut Swarm<NodeBehaviour>) -> anyhow::Result<Multiaddr> {
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
pub async fn run_cluster_node(
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
pub fn count_connections(
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

pub fn run_command(swarm: &mut Swarm<NodeBehaviour>, command: Command) {
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

pub fn cluster_node_status(
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
                    status
                        .transports
                        .insert(*peer, transport_of(&connection.remote_addr));
                }
            }
        }
    }
    status
}
