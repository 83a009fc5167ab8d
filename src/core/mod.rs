//! The policy of the connection manager, sans-IO.
//!
//! [`Manager`] performs no I/O and never reads a clock: every input carries `now`, every
//! decision comes out of [`Manager::poll_action`], and [`Manager::poll_timeout`] says when
//! [`Manager::handle_timeout`] is due next (calling it early is harmless). The libp2p adapter
//! ([`crate::Behaviour`]) only translates swarm callbacks into these inputs and actions into
//! `ToSwarm` commands; tests drive the same state machine with a simulated clock.

mod backoff;
mod bans;
mod bootstrap;
mod closing;
mod commands;
mod config;
mod denial;
mod discovery;
mod duplicates;
mod event;
mod eviction;
mod exchange;
mod hashing;
mod health;
mod hearsay;
mod inputs;
mod intent;
mod keep_alive;
mod limits;
mod liveness;
mod peer_table;
mod peers;
mod persist;
mod phase;
mod reason;
mod redial;
mod refusals;
mod resources;
mod timers;
mod trim;
mod violations;

use std::{collections::VecDeque, net::IpAddr, time::Duration};

pub use backoff::Backoff;
use bans::Bans;
pub use bans::{Ban, BanTarget};
pub use denial::Denial;
pub use duplicates::Initiator;
pub use event::{DialFailureCause, Event};
pub use exchange::{PeerExchange, PeerList, MAX_LIST_ADDRESSES, MAX_LIST_PEERS};
#[cfg(feature = "testing")]
pub use hashing::fix_hash_keys_for_this_thread;
use hashing::{Map, Set};
pub use health::{Health, HealthCategory, HealthScoring};
pub use hearsay::HearsayStats;
use intent::{Asker, Intent};
use ipnet::IpNet;
use libp2p_core::{Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
pub(crate) use limits::ip_of;
use limits::{Counted, Counters, PerIp, PerRelay};
pub use limits::{LimitKind, Limits, RateLimit};
use peer_table::{PeerSlot, PeerTable};
use peers::{Closing, ConnectionRecord, Micros, PeerRecord, Slot};
pub use peers::{ConnectionInfo, PeerInfo};
use persist::Journal;
pub use persist::{Change, DurablePeer, LastDisconnect, PeerUpdate, RestoreSummary};
pub use phase::Phase;
use rand::{rngs::StdRng, Rng, SeedableRng};
pub use redial::ClosedBy;
use redial::RedialPlan;
use timers::{Timer, Timers};
use trim::Tags;
pub(crate) use trim::Watermarks;
pub use violations::AutomaticBans;
use violations::Violations;
use web_time::Instant;

pub use config::{Config, ConfigError};
pub use reason::DisconnectReason;

/// Time the goodbye backstop adds on top of the goodbye timeout before closing regardless:
/// the handler bounds the goodbye itself, this only covers a handler that never reports.
const GOODBYE_BACKSTOP_SLACK: Duration = Duration::from_millis(500);

/// `now + delay`, saturating far in the future instead of overflowing.
fn later(now: Instant, delay: Duration) -> Instant {
    now.checked_add(delay)
        .or_else(|| now.checked_add(MAX_DELAY))
        .unwrap_or(now)
}

/// The longest delay the manager schedules (a century): durations from the API are clamped to it.
const MAX_DELAY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long a goodbye to a peer closed for not answering may take (at most the configured
/// goodbye timeout): it is unlikely to be heard, and the close should not wait on it.
const TIMEOUT_GOODBYE: Duration = Duration::from_millis(250);

/// A duplicate younger than this that loses the tie-break drains for this long before it is closed
/// (at most the duplicate grace): long enough for what its opener started on it (a ping, an
/// identify, a short request) to finish, short enough that two managers settle fast.
const DUPLICATE_DRAIN: Duration = Duration::from_secs(1);

/// Peers whose recent protocol violations are remembered, at most.
const MAX_VIOLATORS: usize = 4096;

/// Networks (IPv4 /24, IPv6 /64) whose recent protocol violations are remembered, at most.
const MAX_VIOLATING_NETWORKS: usize = 4096;

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Dial a peer.
    Dial {
        /// The peer.
        peer: PeerId,
        /// The addresses the manager trusts for it (given by the application or proven by a
        /// connection). The others it knows (reported by other behaviours, or named in a
        /// peer-exchange list) come from [`Manager::on_pending_outbound`] when the swarm
        /// handles the dial, as other behaviours' addresses do: dial with
        /// `extend_addresses_through_behaviour`.
        addresses: Vec<Multiaddr>,
        /// Dial from a fresh local port rather than the listening one.
        new_port: bool,
    },
    /// Send a goodbye on a connection, then report back with
    /// [`Manager::on_goodbye_finished`].
    SendGoodbye {
        /// The remote peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// The reason to send.
        reason: DisconnectReason,
        /// A hint for when the remote may dial again.
        retry_after: Option<Duration>,
        /// How long sending it may take.
        timeout: Duration,
    },
    /// Send a peer list on a connection (peer exchange).
    SendPeers {
        /// The remote peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// The peers to tell it about.
        peers: PeerList,
    },
    /// Tell the handler of a connection whether to keep it open while idle (see
    /// [`Manager::keeps_alive`]). A new connection gets one when it is established only if
    /// its handler was made with another answer (the driver makes it right after
    /// [`Manager::check_established`] with [`Manager::keeps_alive`]), and another whenever the
    /// answer changes.
    KeepAlive {
        /// The remote peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// Keep it alive while idle.
        keep: bool,
    },
    /// Close a connection now.
    Close {
        /// The remote peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
    },
    /// Report an event to the application.
    Event(Event),
}

/// Counts of what the manager holds, for operators, metrics and tests
/// ([`Behaviour::stats`](crate::Behaviour::stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Peers with at least one established connection.
    pub connected_peers: usize,
    /// Established connections, over all peers.
    pub established_connections: usize,
    /// Connections being negotiated, incoming and outgoing, as the pending limits count them.
    pub pending_connections: usize,
    /// Peers the manager holds any state for.
    pub tracked_peers: usize,
    /// Remote IP addresses the per-IP limits keep state for (bounded by
    /// [`Limits::with_max_tracked_ips`]).
    pub tracked_ips: usize,
    /// Peers kept connected (by the application, discovery or hearsay), connected or not.
    pub wanted_peers: usize,
    /// Peers kept connected that wait for a local limit to free a slot.
    pub waiting_for_resources: usize,
    /// Decisions made but not yet carried out by the swarm (goodbyes, dials, closes, events).
    pub queued_actions: usize,
    /// Deadlines scheduled (redials, goodbye backstops, ban ends, ...).
    pub scheduled_timers: usize,
    /// When the next deadline is due.
    pub next_deadline: Option<Instant>,
}

/// What the swarm knows of a connection once its handshake is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConnection {
    /// Who dialed it, by effective role.
    pub initiator: Initiator,
    /// Who dialed it at the transport level.
    pub direction: Endpoint,
    /// Whether it runs through a relay.
    pub relayed: bool,
    /// The remote's address on it.
    pub remote_addr: Multiaddr,
}

impl NewConnection {
    /// A connection to `remote_addr`; relayed if the address goes through `/p2p-circuit`.
    pub fn new(initiator: Initiator, direction: Endpoint, remote_addr: Multiaddr) -> Self {
        Self {
            initiator,
            direction,
            relayed: duplicates::is_relayed(&remote_addr),
            remote_addr,
        }
    }

    /// Says whether it runs through a relay, when the remote address alone does not tell (an
    /// inbound relayed connection's remote address is just `/p2p/<peer>`).
    pub fn with_relayed(mut self, relayed: bool) -> Self {
        self.relayed = relayed;
        self
    }
}

/// How a connection ended, as the swarm saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// Closed from this node (the manager, another behaviour, or the application).
    Local,
    /// Closed because it was idle (the swarm's idle timeout).
    Idle,
    /// The remote closed it cleanly: the muxer or the connection ended in order (a remote
    /// without this crate hanging up, shutting down, or pruning us).
    RemoteClosed,
    /// The transport failed (reset, I/O error).
    Transport,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug)]
struct Pending {
    peer: Option<PeerId>,
    direction: Direction,
    /// The dial deadline passed: already reported, no longer counted as in flight.
    timed_out: bool,
    /// What it is counted under: IP prefixes or a relay (inbound only).
    counted: Counted,
    /// The application disconnected the peer while this dial was in flight: close it if it
    /// succeeds.
    cancelled: bool,
    /// What `check_established` found for keeping it alive, which its handler is made with.
    handler_keep_alive: Option<bool>,
}

#[derive(Debug, Default)]
struct Bootstrap {
    /// Bootstrap peers dialed in the current round whose dial has not failed yet.
    round: Set<PeerId>,
    /// Rounds since the node was last connected.
    attempt: u32,
}

/// The connection manager's state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Manager {
    local: PeerId,
    config: Config,
    peers: PeerTable,
    /// The peer of every established connection, by the slot of its record (a record with
    /// connections is never removed).
    owners: Map<ConnectionId, PeerSlot>,
    pending: Map<ConnectionId, Pending>,
    /// Peers with at least one established connection.
    connected_peers: usize,
    timers: Timers,
    actions: VecDeque<Action>,
    phase: Phase,
    terminated: bool,
    bootstrap: Bootstrap,
    limits: Limits,
    counters: Counters,
    per_ip: PerIp,
    per_relay: PerRelay,
    bans: Bans,
    /// Peers that bypass the limits (never the bans).
    allowed: Set<PeerId>,
    /// Recent protocol violations per peer and per network, kept apart from the peer records
    /// so that a peer cannot wipe its slate by reconnecting; bounded.
    violations: Violations,
    /// Wanted peers refused by a local limit, in the order they were refused.
    waiting: VecDeque<PeerId>,
    /// Peers added by discovery or learned automatically, for the cap on them.
    discovered: usize,
    /// Protection and value tags, for trimming.
    tags: Tags,
    last_trim: Option<Instant>,
    /// When the last round of peer-exchange updates went out.
    last_exchange: Option<Instant>,
    /// Peer exchange: the sender's news and what hearsay brought (bounded, see `hearsay`).
    exchange: hearsay::ExchangeState,
    /// Inbound connections refused by a limit that are let through only to say goodbye (see
    /// `refusals`).
    refusing: Map<ConnectionId, PeerId>,
    /// Changes a peer store must write (off unless a store is attached).
    journal: Journal,
    rng: StdRng,
}

impl Manager {
    /// A manager for the node `local`. `seed` drives the backoff jitter (a fixed seed makes a
    /// run reproducible).
    pub fn new(local: PeerId, config: Config, now: Instant, seed: u64) -> Self {
        let mut manager = Self {
            local,
            config: config.clone(),
            peers: PeerTable::default(),
            owners: Map::default(),
            pending: Map::default(),
            connected_peers: 0,
            timers: Timers::new(now),
            actions: VecDeque::new(),
            phase: Phase::Disconnected,
            terminated: false,
            bootstrap: Bootstrap::default(),
            limits: config.limits.clone(),
            counters: Counters::default(),
            per_ip: PerIp::default(),
            per_relay: PerRelay::default(),
            bans: Bans::default(),
            allowed: config.exempt_peers.iter().copied().collect(),
            violations: Violations::default(),
            waiting: VecDeque::new(),
            discovered: 0,
            tags: Tags::default(),
            last_trim: None,
            refusing: Map::default(),
            last_exchange: None,
            exchange: Default::default(),
            journal: Journal::default(),
            rng: StdRng::seed_from_u64(seed),
        };
        manager.schedule_first_bootstrap(now);
        manager
    }

    /// [`new`](Self::new), for a configuration that passes [`Config::validate`] only.
    pub fn try_new(
        local: PeerId,
        config: Config,
        now: Instant,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::new(local, config, now, seed))
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs everything due at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Redial(peer) => self.on_redial_due(peer),
                Timer::DuplicateGrace(connection) => self.on_grace_over(now, connection),
                Timer::GoodbyeDeadline(connection) => self.on_goodbye_overdue(connection),
                Timer::DialDeadline(connection) => self.on_dial_overdue(now, connection),
                Timer::Bootstrap => self.on_bootstrap_due(now),
                Timer::BanExpiry(target) => self.on_ban_expired(now, target),
                Timer::Inactivity(connection) => self.on_inactive(now, connection),
                Timer::Trim => self.on_trim_due(now),
                Timer::Critical(connection) => self.on_critical_too_long(now, connection),
                Timer::Exchange => self.on_exchange_due(now),
            }
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The node's phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Peers with at least one established connection.
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers
            .iter()
            .filter(|(_, r)| !r.connections.is_empty())
            .map(|(p, _)| p)
    }

    /// The health of the connection kept to `peer` (the first open one with a ping result):
    /// the peer's health.
    pub fn health(&self, peer: &PeerId) -> Option<Health> {
        let record = self.peers.get(peer)?;
        record
            .open()
            .find_map(|c| c.health.assess(&self.config.health_scoring))
    }

    /// Peers kept connected (by the application, discovery or hearsay), connected or not.
    pub fn wanted_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers
            .iter()
            .filter(|(_, r)| r.intent.is_wanted())
            .map(|(p, _)| p)
    }

    /// Whether `peer` has an established connection that is not being closed.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|r| r.is_connected())
    }

    /// What the manager knows of `peer`.
    pub fn peer_info(&self, peer: &PeerId) -> Option<PeerInfo> {
        self.peers.get(peer).map(|r| {
            let next_redial = self.timers.deadline(Timer::Redial(*peer));
            r.info(&self.config.health_scoring, next_redial)
        })
    }

    /// Whether the application itself wants `peer` (it dialed it; discovery and hearsay do not
    /// count): what a peer store keeps as wanted, and what trimming never closes.
    fn asked_by_application(&self, peer: &PeerId) -> bool {
        self.intent(peer).is_applications()
    }

    /// Established connections, over all peers.
    pub fn established_connections(&self) -> usize {
        self.owners.len()
    }

    /// Connections being negotiated, inbound and outbound.
    pub fn pending_connections(&self) -> usize {
        self.pending.values().filter(|p| !p.timed_out).count()
    }

    /// Peers the manager holds any state for.
    pub fn tracked_peers(&self) -> usize {
        self.peers.len()
    }

    /// Actions decided but not yet taken by the driver ([`poll_action`](Self::poll_action)).
    pub fn queued_actions(&self) -> usize {
        self.actions.len()
    }

    /// Deadlines currently scheduled.
    pub fn scheduled_timers(&self) -> usize {
        self.timers.len()
    }

    /// Counts of what the manager holds.
    pub fn stats(&self) -> Stats {
        Stats {
            connected_peers: self.connected_peers,
            established_connections: self.established_connections(),
            pending_connections: self.pending_connections(),
            tracked_peers: self.tracked_peers(),
            tracked_ips: self.tracked_ips(),
            wanted_peers: self.wanted_peers().count(),
            waiting_for_resources: self.waiting_for_resources().count(),
            queued_actions: self.queued_actions(),
            scheduled_timers: self.scheduled_timers(),
            next_deadline: self.poll_timeout(),
        }
    }

    fn push_event(&mut self, event: Event) {
        self.actions.push_back(Action::Event(event));
    }

    fn deny(&mut self, peer: Option<PeerId>, connection: ConnectionId, denial: Denial) -> Denial {
        tracing::debug!(?peer, %connection, %denial, "connection denied");
        self.push_event(Event::Denied {
            peer,
            connection,
            denial: denial.clone(),
        });
        denial
    }

    /// Forgets the pending record of `connection` and its dial deadline.
    /// Forgets the pending record of `connection`, its dial deadline and its place in the
    /// pending counters. The caller decides what becomes of its per-IP count.
    fn finish_pending(&mut self, connection: ConnectionId) -> Option<Pending> {
        let pending = self.pending.remove(&connection)?;
        self.timers.cancel(Timer::DialDeadline(connection));
        let counter = match pending.direction {
            Direction::Inbound => &mut self.counters.pending_inbound,
            Direction::Outbound => &mut self.counters.pending_outbound,
        };
        *counter = counter.saturating_sub(1);
        if let (Direction::Outbound, Some(peer), false) =
            (pending.direction, pending.peer, pending.timed_out)
        {
            if let Some(record) = self.peers.get_mut(&peer) {
                record.pending_outbound = record.pending_outbound.saturating_sub(1);
            }
        }
        Some(pending)
    }

    /// The peer of an established connection, with the connection's record.
    fn connection_mut(
        &mut self,
        connection: ConnectionId,
    ) -> Option<(PeerId, &mut ConnectionRecord)> {
        let peer = self.owner(connection)?;
        let record = self.peers.get_mut(&peer)?.connection_mut(connection)?;
        Some((peer, record))
    }

    /// The peer of an established connection.
    fn owner(&self, connection: ConnectionId) -> Option<PeerId> {
        let slot = self.owners.get(&connection)?;
        self.peers.peer_at(*slot).copied()
    }

    fn forget_if_idle(&mut self, peer: PeerId) {
        if self.timers.is_set(Timer::Redial(peer)) {
            return;
        }
        // Not wanted, so not counted as discovered either.
        self.peers.remove_if(&peer, PeerRecord::is_forgettable);
    }
}

#[cfg(test)]
mod tests;
