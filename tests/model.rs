//! Model-based property test of the sans-IO core.
//!
//! A small model of the swarm drives one `Manager` with random operation sequences (inbound and
//! outbound connections, establishments, closes, dial failures, goodbyes, pings, bans, limit
//! changes, discovery, time jumps, restarts) and only ever sends inputs a real swarm could send.
//! After every step the invariants are checked, and the journal of durable changes is handed to
//! a mirror of a peer store that must agree with the manager on bans and wanted peers; a restart
//! builds a new manager from that mirror, which must carry over every ban in force and every
//! wanted peer. At the end everything is torn down and the manager must hold no state for peers
//! nobody wants. Failing cases shrink to a readable sequence.
#![cfg(feature = "testing")]

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use libp2p_connection_manager::{
    core::{Action, Change, CloseCause, DurablePeer, Manager, NewConnection},
    Ban, BanTarget, Config, DialFailureCause, DisconnectReason, Event, Initiator, Limits,
    PeerExchange,
};
use libp2p_core::{Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
use proptest::prelude::*;
use web_time::Instant;

const PEERS: usize = 5;

/// The cap on peers wanted only because of hearsay, in the model.
const MAX_HEARSAY: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    InboundAttempt {
        ip: u8,
        /// Through relay `r` (when the setup uses relayed addresses).
        relay: Option<u8>,
    },
    Establish {
        pick: usize,
        peer: usize,
    },
    Fail {
        pick: usize,
    },
    UserDial {
        peer: usize,
    },
    SwarmDial {
        peer: usize,
        /// Through relay `r` (when the setup uses relayed addresses).
        relay: Option<u8>,
    },
    Close {
        pick: usize,
        transport: bool,
    },
    RemoteGoodbye {
        pick: usize,
        reason: u32,
    },
    Ping {
        pick: usize,
        ok: bool,
    },
    Ban {
        peer: usize,
        secs: Option<u64>,
    },
    BanIp {
        ip: u8,
        secs: u64,
    },
    Disconnect {
        peer: usize,
    },
    Discover {
        peer: usize,
        add: bool,
    },
    /// The peer of an established connection sends a peer-exchange list: peers with
    /// addresses of its own choosing (`10.0.1.x`), or their own.
    PeersReceived {
        pick: usize,
        peers: Vec<(usize, Vec<u8>)>,
    },
    SetLimits {
        established: Option<u32>,
        pending: Option<u32>,
    },
    Advance {
        millis: u64,
    },
    /// The process dies and starts again: connections vanish, and a new manager takes over
    /// what the peer store kept.
    Restart,
    /// Nothing new comes in for a while: pending connections fail, and time runs past the
    /// duplicate grace and the drain of young losing duplicates. Then one connection per peer.
    Quiesce,
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 0..PEERS;
    prop_oneof![
        3 => (0u8..4, proptest::option::of(0u8..2))
            .prop_map(|(ip, relay)| Op::InboundAttempt { ip, relay }),
        6 => (any::<usize>(), peer.clone()).prop_map(|(pick, peer)| Op::Establish { pick, peer }),
        2 => any::<usize>().prop_map(|pick| Op::Fail { pick }),
        2 => peer.clone().prop_map(|peer| Op::UserDial { peer }),
        2 => (peer.clone(), proptest::option::of(0u8..2))
            .prop_map(|(peer, relay)| Op::SwarmDial { peer, relay }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, transport)| Op::Close { pick, transport }),
        1 => (any::<usize>(), 0u32..9).prop_map(|(pick, reason)| Op::RemoteGoodbye { pick, reason }),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Op::Ping { pick, ok }),
        1 => (peer.clone(), proptest::option::of(1u64..120)).prop_map(|(peer, secs)| Op::Ban { peer, secs }),
        1 => (0u8..4, 1u64..120).prop_map(|(ip, secs)| Op::BanIp { ip, secs }),
        1 => peer.clone().prop_map(|peer| Op::Disconnect { peer }),
        1 => (peer, any::<bool>()).prop_map(|(peer, add)| Op::Discover { peer, add }),
        1 => (proptest::option::of(0u32..4), proptest::option::of(0u32..4))
            .prop_map(|(established, pending)| Op::SetLimits { established, pending }),
        3 => (0u64..20_000).prop_map(|millis| Op::Advance { millis }),
        1 => Just(Op::Restart),
        1 => Just(Op::Quiesce),
        2 => (
            any::<usize>(),
            proptest::collection::vec(
                (0..PEERS, proptest::collection::vec(0u8..12, 0..5)),
                0..4,
            ),
        )
            .prop_map(|(pick, peers)| Op::PeersReceived { pick, peers }),
    ]
}

/// The configuration a sequence runs with.
#[derive(Debug, Clone)]
struct Setup {
    /// `None`: no trimming.
    watermarks: Option<(usize, usize)>,
    established: Option<u32>,
    pending: Option<u32>,
    per_ip: Option<u32>,
    per_relay: Option<u32>,
    per_peer: u32,
    duplicate_grace: Duration,
    /// Peers and inbound connections on IPv6 addresses (each its own /64) instead of IPv4.
    ipv6: bool,
    /// Whether operations that may go through a relay do.
    relayed: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        proptest::option::of((1usize..4, 0usize..3).prop_map(|(low, more)| (low, low + more))),
        proptest::option::of(0u32..5),
        proptest::option::of(0u32..5),
        proptest::option::of(1u32..4),
        proptest::option::of(1u32..4),
        1u32..4,
        0u64..6_000,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(
                watermarks,
                established,
                pending,
                per_ip,
                per_relay,
                per_peer,
                grace,
                ipv6,
                relayed,
            )| {
                Setup {
                    watermarks,
                    established,
                    pending,
                    per_ip,
                    per_relay,
                    per_peer,
                    duplicate_grace: Duration::from_millis(grace),
                    ipv6,
                    relayed,
                }
            },
        )
}

/// A connection as the model swarm sees it.
#[derive(Debug, Clone)]
struct Conn {
    id: ConnectionId,
    peer: Option<usize>,
    outbound: bool,
    addr: Multiaddr,
    /// Let through by the manager only to say goodbye `ResourceConstraint`: never counted.
    refused: bool,
}

/// The peer store, as the manager's journal of changes describes it.
#[derive(Default)]
struct Mirror {
    bans: HashMap<BanTarget, Option<Instant>>,
    peers: HashMap<PeerId, DurablePeer>,
}

impl Mirror {
    fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Ban(ban) => {
                    self.bans.insert(ban.target, ban.until);
                }
                Change::Unban(target) => {
                    self.bans.remove(&target);
                }
                Change::Forget(peer) => {
                    self.peers.remove(&peer);
                }
                Change::Peer { peer, update } => {
                    let stored = self.peers.entry(peer).or_default();
                    stored.wanted = update.wanted;
                    stored.protected = update.protected;
                    stored.tags = update.tags;
                    if let Some(addresses) = update.addresses {
                        stored.addresses = addresses;
                    }
                    if let Some(last) = update.last_disconnect {
                        stored.last_disconnect = Some(last);
                    }
                }
            }
        }
    }

    fn bans_in_force(&self, now: Instant) -> Vec<Ban> {
        let mut bans: Vec<Ban> = self
            .bans
            .iter()
            .filter(|(_, until)| until.is_none_or(|until| now < until))
            .map(|(target, until)| Ban {
                target: *target,
                until: *until,
            })
            .collect();
        bans.sort_by_key(|ban| ban.target);
        bans
    }
}

struct World {
    local: PeerId,
    setup: Setup,
    /// The relays relayed connections go through.
    relays: Vec<PeerId>,
    config: Config,
    initial_limits: Limits,
    store: Mirror,
    manager: Manager,
    now: Instant,
    peers: Vec<PeerId>,
    next_id: usize,
    pending: Vec<Conn>,
    established: Vec<Conn>,
    /// Connections the manager asked to close.
    closing: Vec<ConnectionId>,
    limits: Limits,
    /// Peers the application dialed itself (and the manager still wants): never trimmed.
    dialed: HashSet<usize>,
    /// `Trimmed` events since the last check: (trimmed, no longer wanted).
    trims: Vec<(Vec<PeerId>, Vec<PeerId>)>,
    /// Peers whose own address (`own(peer)`) the manager holds as proven: a dial used
    /// it or discovery gave it (dropped when the manager no longer holds it).
    proven: HashSet<usize>,
    /// Connections the model closed (as the swarm reports them), with their peer.
    closed: HashMap<ConnectionId, PeerId>,
    /// Connections a `Disconnected` event named.
    disconnected: HashSet<ConnectionId>,
    /// Connections a `ConnectionKept` event named.
    kept: HashSet<ConnectionId>,
    /// Connections that must have been reported kept by the end of the step: each came up
    /// as the only connection to its peer.
    expect_kept: Vec<ConnectionId>,
    /// Bans in force as the `Banned` and `Unbanned` events tell them.
    reported_bans: HashMap<BanTarget, Option<Instant>>,
    /// `Banned` events of the current step.
    step_bans: Vec<BanTarget>,
}

fn ip_addr(ip: u8) -> Multiaddr {
    format!("/ip4/10.0.0.{ip}/tcp/4001")
        .parse()
        .expect("address")
}

fn ip6_addr(ip: u8) -> Multiaddr {
    format!("/ip6/fd00:0:0:{ip}::1/tcp/4001")
        .parse()
        .expect("address")
}

impl World {
    fn new(setup: Setup) -> Self {
        let now = Instant::now();
        let limits = Limits::unlimited()
            .with_loopback_exempt(false)
            .with_max_established_inbound(setup.established)
            .with_max_established_outbound(setup.established)
            .with_max_pending_inbound(setup.pending)
            .with_max_pending_outbound(setup.pending)
            .with_max_inbound_per_ip(setup.per_ip)
            .with_max_inbound_per_ipv6_56(setup.per_ip)
            .with_max_inbound_per_ipv6_48(setup.per_ip)
            .with_max_inbound_per_relay(setup.per_relay);
        let config = Config::default()
            .with_limits(limits.clone())
            .with_max_connections_per_peer(setup.per_peer)
            .with_duplicate_grace(setup.duplicate_grace)
            .with_ping_interval(Duration::from_secs(1))
            .with_inactivity_timeout(Some(Duration::from_secs(30)))
            .with_degraded_grace(Some(Duration::from_secs(20)))
            .with_trim_grace(Duration::from_secs(5))
            // Few, so that one list could push a peer's own address out.
            .with_max_addresses_per_peer(3)
            .with_peer_exchange(Some(
                PeerExchange::new()
                    .with_auto_connect(true)
                    .with_interval(Duration::from_secs(2))
                    .with_max_peers(MAX_HEARSAY)
                    .with_max_dials(2),
            ));
        let config = match setup.watermarks {
            Some((low, high)) => config.with_watermarks(low, high),
            None => config.without_watermarks(),
        };
        let local = PeerId::random();
        let mut manager = Manager::new(local, config.clone(), now, 1);
        manager.track_changes(true);
        Self {
            local,
            setup,
            relays: (0..2).map(|_| PeerId::random()).collect(),
            config,
            initial_limits: limits.clone(),
            store: Mirror::default(),
            manager,
            now,
            peers: (0..PEERS).map(|_| PeerId::random()).collect(),
            next_id: 0,
            pending: Vec::new(),
            established: Vec::new(),
            closing: Vec::new(),
            limits,
            dialed: HashSet::new(),
            trims: Vec::new(),
            proven: HashSet::new(),
            closed: HashMap::new(),
            disconnected: HashSet::new(),
            kept: HashSet::new(),
            expect_kept: Vec::new(),
            reported_bans: HashMap::new(),
            step_bans: Vec::new(),
        }
    }

    /// The address of host `ip` in the setup's family.
    fn host(&self, ip: u8) -> Multiaddr {
        if self.setup.ipv6 {
            ip6_addr(ip)
        } else {
            ip_addr(ip)
        }
    }

    /// A peer's own (direct) address: the one the model dials it on.
    fn own(&self, peer: usize) -> Multiaddr {
        self.host(peer as u8 + 10)
    }

    /// The network a `BanIp` of host `ip` bans.
    fn host_net(&self, ip: u8) -> ipnet::IpNet {
        let net = if self.setup.ipv6 {
            format!("fd00:0:0:{ip}::1/128")
        } else {
            format!("10.0.0.{ip}/32")
        };
        net.parse().expect("network")
    }

    /// The address of a connection through relay `relay`; `peer` names the far end of a dial.
    fn relayed(&self, relay: u8, peer: Option<usize>) -> Multiaddr {
        let relay_ip = if self.setup.ipv6 {
            format!("/ip6/fd00:0:0:9{relay}::1")
        } else {
            format!("/ip4/10.0.9.{relay}")
        };
        let mut addr = format!(
            "{relay_ip}/tcp/4001/p2p/{}/p2p-circuit",
            self.relays[relay as usize]
        );
        if let Some(peer) = peer {
            addr.push_str(&format!("/p2p/{}", self.peers[peer]));
        }
        addr.parse().expect("address")
    }

    fn id(&mut self) -> ConnectionId {
        self.next_id += 1;
        ConnectionId::new_unchecked(self.next_id)
    }

    fn peer_index(&self, peer: &PeerId) -> usize {
        self.peers
            .iter()
            .position(|p| p == peer)
            .expect("known peer")
    }

    fn dial(&mut self, peer: usize, relay: Option<u8>) {
        let id = self.id();
        let relay = relay.filter(|_| self.setup.relayed);
        let addr = match relay {
            Some(relay) => self.relayed(relay, Some(peer)),
            None => self.own(peer),
        };
        match self.manager.on_pending_outbound(
            self.now,
            id,
            Some(self.peers[peer]),
            std::slice::from_ref(&addr),
        ) {
            Ok(_) => {
                if relay.is_none() {
                    self.proven.insert(peer);
                }
                self.pending.push(Conn {
                    id,
                    peer: Some(peer),
                    outbound: true,
                    addr,
                    refused: false,
                })
            }
            Err(denial) => self.manager.on_dial_failure(
                self.now,
                id,
                Some(self.peers[peer]),
                DialFailureCause::DeniedByManager(denial),
            ),
        }
    }

    /// Carries out what the manager asked for, as the swarm would, and checks each event
    /// against the model's state at the moment it is read.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..10_000 {
            let Some(action) = self.manager.poll_action() else {
                return Ok(());
            };
            match action {
                Action::Dial { peer, .. } => {
                    let index = self.peer_index(&peer);
                    self.dial(index, None);
                }
                Action::SendGoodbye { connection, .. } => {
                    self.closing.push(connection);
                    self.manager.on_goodbye_finished(connection);
                }
                Action::Close { connection, .. } => {
                    if let Some(pos) = self.established.iter().position(|c| c.id == connection) {
                        let conn = self.established.swap_remove(pos);
                        self.close(conn, CloseCause::Local);
                    }
                }
                Action::Event(event) => self.on_event(event)?,
                Action::SendPeers { .. } | Action::KeepAlive { .. } => {}
            }
        }
        panic!("the manager never stops producing actions");
    }

    /// The swarm reports `conn` (already out of `established`) closed.
    fn close(&mut self, conn: Conn, cause: CloseCause) {
        let peer = self.peers[conn.peer.expect("established")];
        if !conn.refused {
            self.closed.insert(conn.id, peer);
        }
        self.manager.on_closed(self.now, conn.id, peer, cause);
    }

    /// The connection `id` to `peer`, if the model has it open and the manager counts it.
    fn live(&self, id: ConnectionId, peer: &PeerId) -> bool {
        self.established
            .iter()
            .any(|c| c.id == id && !c.refused && c.peer.map(|p| self.peers[p]) == Some(*peer))
    }

    /// An event must match the model's state when it is read.
    fn on_event(&mut self, event: Event) -> Result<(), TestCaseError> {
        match event {
            Event::Trimmed {
                peers,
                no_longer_wanted,
            } => self.trims.push((peers, no_longer_wanted)),
            Event::ConnectionKept {
                peer, connection, ..
            } => {
                prop_assert!(
                    self.live(connection, &peer),
                    "ConnectionKept for {} which the model does not have open to {}",
                    connection,
                    peer
                );
                prop_assert!(
                    self.kept.insert(connection),
                    "ConnectionKept twice for {}",
                    connection
                );
            }
            Event::DuplicateClosed { peer, kept, closed } => {
                prop_assert_ne!(kept, closed, "a duplicate closed in favour of itself");
                prop_assert!(
                    self.live(kept, &peer) && self.live(closed, &peer),
                    "DuplicateClosed (kept {}, closed {}) not between open connections to {}",
                    kept,
                    closed,
                    peer
                );
            }
            Event::Disconnected {
                peer, connection, ..
            } => {
                prop_assert_eq!(
                    self.closed.get(&connection),
                    Some(&peer),
                    "Disconnected for {} which the model did not close (to that peer)",
                    connection
                );
                prop_assert!(
                    self.disconnected.insert(connection),
                    "Disconnected twice for {}",
                    connection
                );
            }
            Event::GoodbyeReceived {
                peer, connection, ..
            }
            | Event::HealthChanged {
                peer, connection, ..
            }
            | Event::ConnectionReplaced { peer, connection } => {
                prop_assert!(
                    self.live(connection, &peer),
                    "event for {} which the model does not have open to {}",
                    connection,
                    peer
                );
            }
            Event::Banned { target, until } => {
                self.step_bans.push(target);
                self.reported_bans.insert(target, until);
            }
            Event::Unbanned { target, .. } => {
                prop_assert!(
                    self.reported_bans.remove(&target).is_some(),
                    "Unbanned {} which no event reported banned",
                    target
                );
            }
            _ => {}
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let wanted_before: HashSet<PeerId> = self
            .peers
            .iter()
            .filter(|p| self.manager.peer_info(p).is_some_and(|i| i.wanted))
            .copied()
            .collect();
        self.step_bans.clear();
        self.apply_op(op)?;
        let own: Vec<Multiaddr> = (0..PEERS).map(|p| self.own(p)).collect();
        let (manager, peers) = (&self.manager, &self.peers);
        self.proven.retain(|p| {
            manager
                .peer_info(&peers[*p])
                .is_some_and(|i| i.addresses.contains(&own[*p]))
        });
        self.check_trims(&wanted_before)?;
        self.check_events(op)?;
        self.sync_store()
    }

    /// The step's events as a whole: every ban the application placed reported once, the
    /// reported bans those in force, every close the model saw reported, every connection
    /// that came up alone reported kept.
    fn check_events(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let placed = match *op {
            Op::Ban { peer, .. } => Some(BanTarget::Peer(self.peers[peer])),
            Op::BanIp { ip, .. } => {
                Some(BanTarget::Network(BanTarget::host_scope(self.host_net(ip))))
            }
            _ => None,
        };
        if let Some(target) = placed {
            let reported = self.step_bans.iter().filter(|t| **t == target).count();
            prop_assert_eq!(reported, 1, "ban of {} reported {} times", target, reported);
        }
        let mut reported: Vec<Ban> = self
            .reported_bans
            .iter()
            .map(|(target, until)| Ban {
                target: *target,
                until: *until,
            })
            .collect();
        reported.sort_by_key(|ban| ban.target);
        let mut bans = self.manager.bans(self.now);
        bans.sort_by_key(|ban| ban.target);
        prop_assert_eq!(
            reported,
            bans,
            "the ban events disagree with the bans in force"
        );
        let closed: HashSet<ConnectionId> = self.closed.keys().copied().collect();
        prop_assert_eq!(
            &closed,
            &self.disconnected,
            "closes the model saw and Disconnected events differ"
        );
        for id in std::mem::take(&mut self.expect_kept) {
            prop_assert!(
                self.kept.contains(&id),
                "{} came up as the only connection to its peer and was not reported kept",
                id
            );
        }
        Ok(())
    }

    /// Trimming never closes a peer the application dialed, and never un-wants a peer
    /// without saying so.
    fn check_trims(&mut self, wanted_before: &HashSet<PeerId>) -> Result<(), TestCaseError> {
        for (trimmed, no_longer_wanted) in std::mem::take(&mut self.trims) {
            for peer in &trimmed {
                let index = self.peer_index(peer);
                prop_assert!(
                    !self.dialed.contains(&index),
                    "trimmed peer {} that the application dialed",
                    index
                );
                prop_assert_eq!(
                    wanted_before.contains(peer),
                    no_longer_wanted.contains(peer),
                    "peer {} un-wanted by a trim without saying so (or said so wrongly)",
                    index
                );
            }
        }
        let manager = &self.manager;
        let peers = &self.peers;
        self.dialed
            .retain(|p| manager.peer_info(&peers[*p]).is_some_and(|i| i.wanted));
        Ok(())
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::InboundAttempt { ip, relay } => {
                let id = self.id();
                let addr = match relay.filter(|_| self.setup.relayed) {
                    Some(relay) => self.relayed(relay, None),
                    None => self.host(ip),
                };
                if self.manager.on_pending_inbound(self.now, id, &addr).is_ok() {
                    self.pending.push(Conn {
                        id,
                        peer: None,
                        outbound: false,
                        addr,
                        refused: false,
                    });
                }
            }
            Op::Establish { pick, peer } => {
                if self.pending.is_empty() {
                    return Ok(());
                }
                let mut conn = self.pending.swap_remove(pick % self.pending.len());
                let peer = conn.peer.unwrap_or(peer);
                conn.peer = Some(peer);
                let peer_id = self.peers[peer];
                let (initiator, direction) = if conn.outbound {
                    (Initiator::Local, Endpoint::Dialer)
                } else {
                    (Initiator::Remote, Endpoint::Listener)
                };
                let already = self.manager.is_connected(&peer_id);
                let alone = !self
                    .established
                    .iter()
                    .any(|c| c.peer == Some(peer) && !c.refused);
                let in_direction = self
                    .established
                    .iter()
                    .filter(|c| c.outbound == conn.outbound && !c.refused)
                    .count() as u32;
                match self.manager.check_established(
                    self.now,
                    conn.id,
                    peer_id,
                    &NewConnection::new(initiator, direction, conn.addr.clone()),
                ) {
                    Ok(()) => {
                        prop_assert!(
                            !self.manager.is_peer_banned(&peer_id, self.now),
                            "a banned peer was let in"
                        );
                        let counted_before = self.manager.established_connections();
                        self.manager.on_established(
                            self.now,
                            conn.id,
                            peer_id,
                            NewConnection::new(initiator, direction, conn.addr.clone()),
                        );
                        conn.refused = self.manager.established_connections() == counted_before;
                        let limit = if conn.outbound {
                            self.limits_established_outbound()
                        } else {
                            self.limits_established_inbound()
                        };
                        if let (false, false, Some(limit)) = (conn.refused, already, limit) {
                            prop_assert!(in_direction < limit, "established limit exceeded");
                        }
                        prop_assert!(
                            !conn.refused || !conn.outbound,
                            "only inbound refusals say goodbye"
                        );
                        if !conn.refused && alone {
                            self.expect_kept.push(conn.id);
                        }
                        self.established.push(conn);
                    }
                    Err(denial) if conn.outbound => self.manager.on_dial_failure(
                        self.now,
                        conn.id,
                        Some(peer_id),
                        DialFailureCause::DeniedByManager(denial),
                    ),
                    Err(_) => self.manager.on_listen_failure(conn.id),
                }
            }
            Op::Fail { pick } => {
                if self.pending.is_empty() {
                    return Ok(());
                }
                let conn = self.pending.swap_remove(pick % self.pending.len());
                if conn.outbound {
                    let peer = conn.peer.map(|p| self.peers[p]);
                    self.manager.on_dial_failure(
                        self.now,
                        conn.id,
                        peer,
                        DialFailureCause::Transport { errors: vec![] },
                    );
                } else {
                    self.manager.on_listen_failure(conn.id);
                }
            }
            Op::UserDial { peer } => {
                if self
                    .manager
                    .add_peer(self.now, self.peers[peer], vec![])
                    .is_ok()
                {
                    self.dialed.insert(peer);
                }
            }
            Op::SwarmDial { peer, relay } => self.dial(peer, relay),
            Op::Close { pick, transport } => {
                if self.established.is_empty() {
                    return Ok(());
                }
                let conn = self.established.swap_remove(pick % self.established.len());
                let cause = if transport {
                    CloseCause::Transport
                } else {
                    CloseCause::Local
                };
                self.close(conn, cause);
            }
            Op::RemoteGoodbye { pick, reason } => {
                if self.established.is_empty() {
                    return Ok(());
                }
                let conn = &self.established[pick % self.established.len()];
                self.manager.on_goodbye_received(
                    self.now,
                    conn.id,
                    DisconnectReason::from_code(reason),
                    Some(Duration::from_secs(1)),
                );
            }
            Op::Ping { pick, ok } => {
                if self.established.is_empty() {
                    return Ok(());
                }
                let id = self.established[pick % self.established.len()].id;
                if ok {
                    self.manager
                        .on_ping_success(self.now, id, Duration::from_millis(30));
                } else {
                    self.manager.on_ping_failure(self.now, id);
                }
            }
            Op::Ban { peer, secs } => {
                self.manager
                    .ban_peer(self.now, self.peers[peer], secs.map(Duration::from_secs));
            }
            Op::BanIp { ip, secs } => {
                let net = self.host_net(ip);
                self.manager
                    .ban_network(self.now, net, Some(Duration::from_secs(secs)));
            }
            Op::Disconnect { peer } => {
                self.manager.remove_peer(self.now, self.peers[peer]);
            }
            Op::PeersReceived { pick, ref peers } => {
                let live: Vec<&Conn> = self.established.iter().filter(|c| !c.refused).collect();
                if live.is_empty() {
                    return Ok(());
                }
                let from = self.peers[live[pick % live.len()].peer.expect("established")];
                // A peer's own address is the one the model dials it on; the others are the
                // sender's inventions.
                let list = peers
                    .iter()
                    .map(|(peer, addrs)| {
                        let addrs = addrs
                            .iter()
                            .map(|&a| match a {
                                0 => self.own(*peer),
                                a => format!("/ip4/10.0.1.{a}/tcp/4001")
                                    .parse()
                                    .expect("address"),
                            })
                            .collect();
                        (self.peers[*peer], addrs)
                    })
                    .collect();
                // No hearsay address displaces a proven one (dialed by the swarm, connected
                // on, or given by discovery).
                let proven: Vec<(usize, Multiaddr)> =
                    self.proven.iter().map(|p| (*p, self.own(*p))).collect();
                self.manager.on_peers_received(self.now, from, list);
                for (p, address) in proven {
                    prop_assert!(
                        self.manager
                            .peer_info(&self.peers[p])
                            .is_some_and(|i| i.addresses.contains(&address)),
                        "hearsay displaced the proven address of peer {}",
                        p
                    );
                }
            }
            Op::Discover { peer, add } => {
                if add {
                    let added = self.manager.add_discovered(
                        self.now,
                        self.peers[peer],
                        vec![self.own(peer)],
                    );
                    if added.is_ok() && self.manager.peer_info(&self.peers[peer]).is_some() {
                        self.proven.insert(peer);
                    }
                } else {
                    self.manager.remove_discovered(self.peers[peer]);
                }
            }
            Op::SetLimits {
                established,
                pending,
            } => {
                self.limits = self
                    .initial_limits
                    .clone()
                    .with_max_established_inbound(established)
                    .with_max_established_outbound(established)
                    .with_max_pending_outbound(pending)
                    .with_max_pending_inbound(pending);
                self.manager.set_limits(self.now, self.limits.clone());
            }
            Op::Advance { millis } => {
                self.now += Duration::from_millis(millis);
                self.manager.handle_timeout(self.now);
            }
            Op::Restart => self.restart()?,
            Op::Quiesce => self.quiesce()?,
        }
        self.drain()?;
        self.check()
    }

    /// Hands the journal to the mirror store, which must then agree with the manager on
    /// bans and wanted peers.
    fn sync_store(&mut self) -> Result<(), TestCaseError> {
        let changes = self.manager.take_changes();
        self.store.apply(changes);
        let mut bans = self.manager.bans(self.now);
        bans.sort_by_key(|ban| ban.target);
        prop_assert_eq!(
            bans,
            self.store.bans_in_force(self.now),
            "stored bans drifted"
        );
        // Only the application's own wants are stored: not discovery's, not hearsay's.
        for peer in &self.peers {
            let wanted = self
                .manager
                .peer_info(peer)
                .is_some_and(|i| i.wanted && !i.discovered);
            let stored = self.store.peers.get(peer).is_some_and(|p| p.wanted);
            prop_assert_eq!(wanted, stored, "stored want of {} drifted", peer);
        }
        Ok(())
    }

    /// A new manager restored from the mirror: bans in force and wanted peers carry over.
    fn restart(&mut self) -> Result<(), TestCaseError> {
        let bans = self.store.bans_in_force(self.now);
        // The application's wants carry over; discovery and hearsay find theirs again.
        let wanted: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|p| {
                self.manager
                    .peer_info(p)
                    .is_some_and(|i| i.wanted && !i.discovered)
            })
            .copied()
            .collect();
        self.pending.clear();
        self.established.clear();
        self.closing.clear();
        self.limits = self.initial_limits.clone();
        self.manager = Manager::new(self.local, self.config.clone(), self.now, 2);
        let stored: Vec<Ban> = self
            .store
            .bans
            .iter()
            .map(|(target, until)| Ban {
                target: *target,
                until: *until,
            })
            .collect();
        let peers = self
            .store
            .peers
            .iter()
            .map(|(peer, durable)| (*peer, durable.clone()))
            .collect();
        let summary = self.manager.restore(self.now, stored, peers);
        // The new manager reports its bans in the `Restored` summary, not one by one.
        self.reported_bans = self
            .manager
            .bans(self.now)
            .into_iter()
            .map(|ban| (ban.target, ban.until))
            .collect();
        self.expect_kept.clear();
        self.manager.track_changes(true);
        prop_assert_eq!(summary.bans, bans.len());
        let mut restored = self.manager.bans(self.now);
        restored.sort_by_key(|ban| ban.target);
        prop_assert_eq!(restored, bans, "bans lost in the restart");
        for peer in &self.peers {
            let before = wanted.contains(peer);
            let after = self.manager.peer_info(peer).is_some_and(|i| i.wanted);
            prop_assert_eq!(before, after, "the want of {} changed in the restart", peer);
        }
        // The store keeps that a peer is wanted, not who asked: restored peers are the
        // application's.
        self.dialed = (0..PEERS)
            .filter(|p| wanted.contains(&self.peers[*p]))
            .collect();
        Ok(())
    }

    fn limits_established_inbound(&self) -> Option<u32> {
        self.manager.limits().max_established_incoming()
    }

    fn limits_established_outbound(&self) -> Option<u32> {
        self.manager.limits().max_established_outgoing()
    }

    /// Invariants that hold after every step.
    fn check(&self) -> Result<(), TestCaseError> {
        let hearsay = self.manager.hearsay_stats();
        prop_assert!(
            hearsay.peers <= MAX_HEARSAY && hearsay.recent_dials <= 1024 && hearsay.quiet <= 1024,
            "hearsay state bounded: {:?}",
            hearsay
        );
        let caps = self.manager.config().automatic_bans();
        prop_assert!(
            self.manager.automatic_peer_bans() <= caps.max_peer_bans()
                && self.manager.automatic_network_bans() <= caps.max_network_bans(),
            "bans bounded: automatic bans <= cap"
        );
        prop_assert_eq!(
            self.manager.established_connections(),
            self.established.iter().filter(|c| !c.refused).count(),
            "established count drifted"
        );
        prop_assert!(
            self.manager.pending_connections() <= self.pending.len(),
            "more pending than the swarm has"
        );
        let mut per_peer: HashMap<usize, usize> = HashMap::new();
        for conn in self.established.iter().filter(|c| !c.refused) {
            *per_peer.entry(conn.peer.expect("established")).or_default() += 1;
        }
        for (peer, count) in per_peer {
            prop_assert!(
                count as u32 <= self.manager.config().max_established_per_peer(),
                "per-peer cap exceeded for peer {}",
                peer
            );
            let open = self.manager.peer_info(&self.peers[peer]).map_or(0, |i| {
                i.connections.iter().filter(|c| c.closing.is_none()).count()
            });
            prop_assert!(open <= count);
        }
        // Timers are bounded by what exists: per connection (grace, goodbye, inactivity,
        // critical), per pending dial, per peer (redial), per ban, bootstrap and trim.
        let bound = 4 * self.established.len()
            + self.pending.len()
            + PEERS
            + self.manager.bans(self.now).len()
            + 4
            + 2;
        prop_assert!(
            self.manager.scheduled_timers() <= bound + 8,
            "timers leak: {} > {}",
            self.manager.scheduled_timers(),
            bound
        );
        Ok(())
    }

    /// Every pending connection fails.
    fn fail_pending(&mut self) {
        while let Some(conn) = self.pending.pop() {
            if conn.outbound {
                let peer = conn.peer.map(|p| self.peers[p]);
                self.manager.on_dial_failure(
                    self.now,
                    conn.id,
                    peer,
                    DialFailureCause::Transport { errors: vec![] },
                );
            } else {
                self.manager.on_listen_failure(conn.id);
            }
        }
    }

    /// Nothing new gets established for a while: once no connection is pending, every
    /// goodbye has finished and time has run past the duplicate grace and the drain of young
    /// losing duplicates (one second), each peer has at most one connection, as the swarm
    /// counts them.
    fn quiesce(&mut self) -> Result<(), TestCaseError> {
        self.fail_pending();
        self.drain()?;
        // Redials the failures planned may come due in the jump: they stay pending.
        self.now +=
            self.setup.duplicate_grace.max(Duration::from_secs(1)) + Duration::from_millis(1);
        self.manager.handle_timeout(self.now);
        self.drain()?;
        let mut per_peer: HashMap<usize, Vec<ConnectionId>> = HashMap::new();
        for conn in &self.established {
            per_peer
                .entry(conn.peer.expect("established"))
                .or_default()
                .push(conn.id);
        }
        for (peer, connections) in per_peer {
            prop_assert!(
                connections.len() <= 1,
                "peer {} still has connections {:?} after quiescing",
                peer,
                connections
            );
        }
        Ok(())
    }

    /// Quiesces, then tears everything down and lets time run: only wanted peers may remain
    /// tracked.
    fn settle(&mut self) -> Result<(), TestCaseError> {
        self.step_bans.clear();
        self.quiesce()?;
        self.check()?;
        self.check_events(&Op::Quiesce)?;
        for _ in 0..50 {
            while let Some(conn) = self.established.pop() {
                self.close(conn, CloseCause::Transport);
            }
            self.fail_pending();
            self.drain()?;
            self.now += Duration::from_secs(3600);
            self.manager.handle_timeout(self.now);
            self.drain()?;
        }
        self.check_events(&Op::Quiesce)?;
        for peer in &self.peers {
            if let Some(info) = self.manager.peer_info(peer) {
                prop_assert!(
                    info.wanted,
                    "state left for a peer nobody wants: {:?}",
                    info
                );
            }
        }
        prop_assert_eq!(self.manager.established_connections(), 0);
        // What may still be going on: dials and redials of wanted peers, bans not run out.
        let wanted = self
            .peers
            .iter()
            .filter(|p| self.manager.peer_info(p).is_some_and(|i| i.wanted))
            .count();
        prop_assert!(self.manager.pending_connections() <= wanted);
        prop_assert!(
            self.manager.scheduled_timers() <= 2 * wanted + self.manager.bans(self.now).len() + 1,
            "timers left behind: {}",
            self.manager.scheduled_timers()
        );
        Ok(())
    }
}

proptest! {
    // PROPTEST_CASES raises the count for a longer hunt (the README says how).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// 256 sequences of up to 400 operations: about 100,000 operations per run.
    #[test]
    fn the_core_keeps_its_invariants(
        setup in setup(),
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        let mut world = World::new(setup);
        for op in &ops {
            world.apply(op)?;
        }
        world.settle()?;
    }
}
