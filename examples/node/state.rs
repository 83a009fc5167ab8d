//! What the long-lived node remembers beside its swarm, for the admin API and the page: recent
//! events, the peers it has heard of, why each kept connection was kept, health over time.
//!
//! The manager answers for one peer at a time (`peer_info`), so the node keeps the set of peers
//! it has seen named; every table here is bounded, since peers are remote-controlled input.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use libp2p::{core::ConnectedPoint, swarm::ConnectionId, Multiaddr, PeerId};
use libp2p_connection_manager::{self as manager, Event, Initiator};
use serde::Serialize;

use crate::describe::{describe, event_kind, event_peer};

/// Recent events kept for the API.
pub const EVENT_RING: usize = 256;
/// Peers the node remembers having seen named (for the wanted list and protection).
pub const MAX_KNOWN_PEERS: usize = 4096;
/// Health samples kept per connected peer.
pub const HEALTH_SAMPLES: usize = 60;

/// One event of the manager as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The event's name, e.g. `ConnectionKept`.
    pub kind: String,
    /// The peer it is about, if one.
    pub peer: Option<String>,
    /// One readable line.
    pub text: String,
}

/// One health sample of a peer's kept connection.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HealthSample {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The health score in [0, 1].
    pub score: f64,
    /// The last round-trip time, in milliseconds.
    pub rtt_ms: Option<f64>,
}

/// The node's memory beside the swarm.
#[derive(Default)]
pub struct NodeState {
    events: VecDeque<EventRecord>,
    next_seq: u64,
    known: HashSet<PeerId>,
    protected: HashMap<PeerId, HashSet<String>>,
    /// The transport-level role of each established connection (dropped when it closes).
    endpoints: HashMap<ConnectionId, ConnectedPoint>,
    /// Why the manager kept the connection it keeps to a connected peer.
    kept: HashMap<PeerId, (ConnectionId, String)>,
    health: HashMap<PeerId, VecDeque<HealthSample>>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall-clock time (ms since the epoch) of a monotonic `instant`.
pub fn instant_ms(instant: Instant) -> u64 {
    let now = Instant::now();
    let now_ms = now_ms();
    if instant >= now {
        now_ms.saturating_add(duration_ms(instant - now))
    } else {
        now_ms.saturating_sub(duration_ms(now - instant))
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl NodeState {
    /// Remembers `peer` (bounded: past [`MAX_KNOWN_PEERS`] new peers are not remembered).
    pub fn know(&mut self, peer: PeerId) {
        if self.known.len() < MAX_KNOWN_PEERS || self.known.contains(&peer) {
            self.known.insert(peer);
        }
    }

    /// The peers the node has seen named.
    pub fn known_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.known.iter()
    }

    pub fn connection_established(&mut self, connection: ConnectionId, endpoint: ConnectedPoint) {
        self.endpoints.insert(connection, endpoint);
    }

    pub fn connection_closed(&mut self, peer: PeerId, connection: ConnectionId, remaining: u32) {
        self.endpoints.remove(&connection);
        if remaining == 0 {
            self.kept.remove(&peer);
            self.health.remove(&peer);
        }
    }

    /// Records an event of the manager: the ring, the peers named, why connections are kept.
    pub fn record(&mut self, local: &PeerId, event: &Event) -> &EventRecord {
        let peer = event_peer(event);
        if let Some(peer) = peer {
            self.know(peer);
        }
        match event {
            Event::ConnectionKept {
                peer, connection, ..
            } => {
                // A duplicate closed before this event already said why this one is kept.
                let explained = self
                    .kept
                    .get(peer)
                    .is_some_and(|(kept, _)| kept == connection);
                if !explained {
                    let why = "the only connection to this peer".to_owned();
                    self.kept.insert(*peer, (*connection, why));
                }
            }
            Event::DuplicateClosed { peer, kept, closed } => {
                let why = self.why_kept(local, peer, *kept, *closed);
                self.kept.insert(*peer, (*kept, why));
            }
            Event::PeerForgotten { peer } if !self.protected.contains_key(peer) => {
                self.known.remove(peer);
            }
            _ => {}
        }
        self.next_seq += 1;
        if self.events.len() == EVENT_RING {
            self.events.pop_front();
        }
        self.events.push_back(EventRecord {
            seq: self.next_seq,
            at_ms: now_ms(),
            kind: event_kind(event),
            peer: peer.map(|p| p.to_string()),
            text: describe(event),
        });
        self.events.back().expect("just pushed")
    }

    /// The tie-break, explained from the two connections' roles.
    fn why_kept(
        &self,
        local: &PeerId,
        peer: &PeerId,
        kept: ConnectionId,
        closed: ConnectionId,
    ) -> String {
        let dialer = |c| self.endpoints.get(&c).map(ConnectedPoint::is_dialer);
        match (dialer(kept), dialer(closed)) {
            (Some(a), Some(b)) if a != b => {
                let smaller = if local < peer {
                    "this node"
                } else {
                    "the peer"
                };
                format!(
                    "both sides dialed: the connection dialed by the smaller peer id ({smaller}) \
                     is kept, {closed} closed as a duplicate"
                )
            }
            (Some(_), Some(_)) => {
                format!("dialed twice by the same side: the older is kept, {closed} closed")
            }
            _ => format!("kept over duplicate {closed}"),
        }
    }

    /// Why `connection` to `peer` is kept, if it is the one the node recorded.
    pub fn kept_reason(&self, peer: &PeerId, connection: ConnectionId) -> Option<&str> {
        self.kept
            .get(peer)
            .filter(|(kept, _)| *kept == connection)
            .map(|(_, why)| why.as_str())
    }

    pub fn events(&self) -> impl Iterator<Item = &EventRecord> {
        self.events.iter()
    }

    pub fn protect(&mut self, peer: PeerId, tag: String) {
        self.know(peer);
        if self.protected.len() < MAX_KNOWN_PEERS || self.protected.contains_key(&peer) {
            self.protected.entry(peer).or_default().insert(tag);
        }
    }

    pub fn unprotect(&mut self, peer: &PeerId, tag: &str) {
        if let Some(tags) = self.protected.get_mut(peer) {
            tags.remove(tag);
            if tags.is_empty() {
                self.protected.remove(peer);
            }
        }
    }

    /// The protection tags of `peer`, sorted.
    pub fn protections(&self, peer: &PeerId) -> Vec<String> {
        let mut tags: Vec<String> = self
            .protected
            .get(peer)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Samples the health of every connected peer's kept connection.
    pub fn sample_health(&mut self, manager: &manager::Behaviour) {
        let peers: Vec<PeerId> = manager.connected_peers().copied().collect();
        for peer in peers {
            self.sample_peer_health(manager, peer);
        }
    }

    /// Samples the health of `peer`'s kept connection, if it has one with a health yet.
    pub fn sample_peer_health(&mut self, manager: &manager::Behaviour, peer: PeerId) {
        let Some(info) = manager.peer_info(&peer) else {
            return;
        };
        let Some(connection) = info.connections.iter().find(|c| c.closing.is_none()) else {
            return;
        };
        let Some(health) = connection.health else {
            return;
        };
        let samples = self.health.entry(peer).or_default();
        if samples.len() == HEALTH_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(HealthSample {
            at_ms: now_ms(),
            score: health.score,
            rtt_ms: connection.rtt.map(|r| r.as_secs_f64() * 1000.0),
        });
    }

    pub fn health_history(&self, peer: &PeerId) -> Vec<HealthSample> {
        self.health
            .get(peer)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// `local` or `remote`, as the API spells an initiator.
pub fn initiator_name(initiator: Initiator) -> &'static str {
    match initiator {
        Initiator::Local => "local",
        Initiator::Remote => "remote",
    }
}

/// The transport of a connection from its remote address: `quic`, `ws` or `tcp`.
pub fn transport_of(address: &Multiaddr) -> &'static str {
    use libp2p::multiaddr::Protocol;
    let mut transport = "other";
    for protocol in address.iter() {
        transport = match protocol {
            Protocol::QuicV1 | Protocol::Quic => "quic",
            Protocol::Ws(_) | Protocol::Wss(_) => "ws",
            Protocol::Tcp(_) if transport == "other" => "tcp",
            _ => continue,
        };
    }
    transport
}
