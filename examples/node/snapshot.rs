//! The node's state as the admin API serves it (JSON): status, peers, bans, wanted peers,
//! recent events. Built in the swarm loop, where the behaviour lives.

use std::time::Instant;

use libp2p::{core::Endpoint, Multiaddr, PeerId, Swarm};
use libp2p_connection_manager::{BanTarget, ConnectionInfo};
use serde::Serialize;

use crate::{
    state::{initiator_name, instant_ms, now_ms, transport_of, EventRecord, HealthSample},
    swarm::NodeBehaviour,
};

/// `GET /api/status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub peer_id: String,
    pub version: String,
    pub listen_addresses: Vec<String>,
    pub external_addresses: Vec<String>,
    pub phase: String,
    pub connected_peers: usize,
    pub connections: usize,
    pub pending: usize,
    pub bans: usize,
    pub wanted: usize,
    pub uptime_secs: u64,
    pub now_ms: u64,
}

/// One peer of `GET /api/peers`.
#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub peer: String,
    pub protected: Vec<String>,
    pub connections: Vec<Connection>,
    /// Health score samples of the kept connection, oldest first.
    pub health_history: Vec<HealthSample>,
}

/// One established connection of a peer.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub id: String,
    /// `inbound` or `outbound` at the transport level.
    pub direction: String,
    /// Who dialed it by effective role: `local` or `remote`.
    pub initiator: String,
    /// `tcp`, `quic` or `ws`.
    pub transport: String,
    pub remote_address: String,
    pub rtt_ms: Option<f64>,
    /// The health category (`excellent` ... `critical`), once a ping came back.
    pub health: Option<String>,
    pub health_score: Option<f64>,
    pub since_ms: u64,
    /// Whether this is the connection the manager keeps (not one being closed).
    pub kept: bool,
    /// Why it was kept, when the node saw the decision.
    pub kept_reason: Option<String>,
    /// Why it is being closed, if it is.
    pub closing: Option<String>,
}

/// One ban of `GET /api/bans`.
#[derive(Debug, Clone, Serialize)]
pub struct Ban {
    /// `peer` or `network`.
    pub kind: String,
    pub target: String,
    /// When it ends (ms since the Unix epoch); `None` until unbanned.
    pub until_ms: Option<u64>,
    pub remaining_secs: Option<f64>,
}

/// One peer of `GET /api/wanted`: the manager redials it when lost.
#[derive(Debug, Clone, Serialize)]
pub struct Wanted {
    pub peer: String,
    pub connected: bool,
    pub addresses: Vec<String>,
    /// When the next redial is due (ms since the Unix epoch), if one is scheduled.
    pub next_redial_ms: Option<u64>,
    pub next_redial_in_secs: Option<f64>,
    pub redial_attempts: u32,
    pub discovered: bool,
}

/// Everything the API serves, taken at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub status: Status,
    pub peers: Vec<Peer>,
    pub bans: Vec<Ban>,
    pub wanted: Vec<Wanted>,
    pub events: Vec<EventRecord>,
}

/// What the swarm loop knows besides the swarm.
pub struct Context<'a> {
    pub state: &'a crate::state::NodeState,
    pub listen_addresses: &'a [Multiaddr],
    pub started: Instant,
}

/// The snapshot of `swarm` now.
pub fn take(swarm: &Swarm<NodeBehaviour>, context: &Context<'_>) -> Snapshot {
    let manager = &swarm.behaviour().manager;
    let now = Instant::now();
    let mut peers: Vec<Peer> = manager
        .connected_peers()
        .filter_map(|peer| {
            let info = manager.peer_info(peer)?;
            let connections = info
                .connections
                .iter()
                .map(|c| connection(context, peer, c))
                .collect();
            Some(Peer {
                peer: peer.to_string(),
                protected: context.state.protections(peer),
                connections,
                health_history: context.state.health_history(peer),
            })
        })
        .collect();
    peers.sort_by(|a, b| a.peer.cmp(&b.peer));
    let bans: Vec<Ban> = manager
        .bans()
        .into_iter()
        .map(|ban| {
            let (kind, target) = match ban.target {
                BanTarget::Peer(peer) => ("peer", peer.to_string()),
                BanTarget::Network(network) => ("network", network.to_string()),
            };
            Ban {
                kind: kind.to_owned(),
                target,
                until_ms: ban.until.map(instant_ms),
                remaining_secs: ban
                    .until
                    .map(|until| until.saturating_duration_since(now).as_secs_f64()),
            }
        })
        .collect();
    // Every peer the manager keeps (also one restored from the store that no event named yet),
    // and any other with a redial scheduled.
    let candidates: std::collections::BTreeSet<_> = manager
        .wanted_peers()
        .chain(context.state.known_peers())
        .copied()
        .collect();
    let mut wanted: Vec<Wanted> = candidates
        .iter()
        .filter_map(|peer| {
            let info = manager.peer_info(peer)?;
            (info.wanted || info.next_redial.is_some()).then(|| Wanted {
                peer: peer.to_string(),
                connected: manager.is_connected(peer),
                addresses: info.addresses.iter().map(ToString::to_string).collect(),
                next_redial_ms: info.next_redial.map(instant_ms),
                next_redial_in_secs: info
                    .next_redial
                    .map(|due| due.saturating_duration_since(now).as_secs_f64()),
                redial_attempts: info.redial_attempts,
                discovered: info.discovered,
            })
        })
        .collect();
    wanted.sort_by(|a, b| a.peer.cmp(&b.peer));
    let status = Status {
        peer_id: swarm.local_peer_id().to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        listen_addresses: context
            .listen_addresses
            .iter()
            .map(ToString::to_string)
            .collect(),
        external_addresses: swarm
            .external_addresses()
            .map(ToString::to_string)
            .collect(),
        phase: manager.phase().to_string(),
        connected_peers: peers.len(),
        connections: peers.iter().map(|p| p.connections.len()).sum(),
        pending: manager.stats().pending_connections,
        bans: bans.len(),
        wanted: wanted.len(),
        uptime_secs: now.saturating_duration_since(context.started).as_secs(),
        now_ms: now_ms(),
    };
    Snapshot {
        status,
        peers,
        bans,
        wanted,
        events: context.state.events().cloned().collect(),
    }
}

fn connection(context: &Context<'_>, peer: &PeerId, info: &ConnectionInfo) -> Connection {
    Connection {
        id: info.id.to_string(),
        direction: match info.direction {
            Endpoint::Dialer => "outbound",
            Endpoint::Listener => "inbound",
        }
        .to_owned(),
        initiator: initiator_name(info.initiator).to_owned(),
        transport: transport_of(&info.remote_addr).to_owned(),
        remote_address: info.remote_addr.to_string(),
        rtt_ms: info.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
        health: info.health.map(|h| h.category.to_string()),
        health_score: info.health.map(|h| h.score),
        since_ms: instant_ms(info.since),
        kept: info.closing.is_none(),
        kept_reason: context
            .state
            .kept_reason(peer, info.id)
            .map(ToOwned::to_owned),
        closing: info.closing.map(|reason| reason.to_string()),
    }
}
