//! The policy of the connection manager, sans-IO.
//!
//! [`Manager`] performs no I/O and never reads a clock: every input carries `now`, every
//! decision comes out of [`Manager::poll_action`], and [`Manager::poll_timeout`] says when
//! [`Manager::handle_timeout`] is due next (calling it early is harmless). The libp2p adapter
//! ([`crate::Behaviour`]) only translates swarm callbacks into these inputs and actions into
//! `ToSwarm` commands; tests drive the same state machine with a simulated clock.

mod backoff;
mod denial;
mod duplicates;
mod event;
mod peers;
mod phase;
mod redial;
mod timers;

use std::{
    collections::{hash_map::Entry, HashMap, HashSet, VecDeque},
    time::Duration,
};

pub use backoff::Backoff;
pub use denial::Denial;
pub use duplicates::Initiator;
pub use event::{DialFailure, Event};
use libp2p_core::{Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
use peers::{Closing, ConnectionRecord, PeerRecord};
pub use peers::{ConnectionInfo, PeerInfo};
pub use phase::Phase;
use rand::{rngs::StdRng, Rng, SeedableRng};
pub use redial::ClosedBy;
use redial::RedialPlan;
use timers::{Timer, Timers};
use web_time::Instant;

use crate::{Config, DisconnectReason};

/// Time the goodbye backstop adds on top of the goodbye timeout before closing regardless:
/// the handler bounds the goodbye itself, this only covers a handler that never reports.
const GOODBYE_BACKSTOP_SLACK: Duration = Duration::from_millis(500);

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Dial a peer.
    Dial {
        /// The peer.
        peer: PeerId,
        /// Addresses the manager knows for it (other behaviours may add more).
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

/// How a connection ended, as the swarm saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// Closed from this node (the manager, another behaviour, or the application).
    Local,
    /// Closed because it was idle (the swarm's idle timeout).
    Idle,
    /// The remote closed it or the transport failed.
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
    /// When the dial is reported as timed out (outbound dials to a known peer only).
    deadline: Option<Instant>,
    /// The dial deadline passed: already reported, no longer counted as in flight.
    timed_out: bool,
}

#[derive(Debug, Default)]
struct Bootstrap {
    /// Bootstrap peers dialed in the current round whose dial has not failed yet.
    round: HashSet<PeerId>,
    /// Rounds since the node was last connected.
    attempt: u32,
    due: Option<Instant>,
}

/// The connection manager's state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Manager {
    local: PeerId,
    config: Config,
    peers: HashMap<PeerId, PeerRecord>,
    /// The peer of every established connection.
    owners: HashMap<ConnectionId, PeerId>,
    pending: HashMap<ConnectionId, Pending>,
    /// Peers with at least one established connection.
    connected_peers: usize,
    timers: Timers,
    actions: VecDeque<Action>,
    phase: Phase,
    terminated: bool,
    bootstrap: Bootstrap,
    rng: StdRng,
}

impl Manager {
    /// A manager for the node `local`. `seed` drives the backoff jitter (a fixed seed makes a
    /// run reproducible).
    pub fn new(local: PeerId, config: Config, now: Instant, seed: u64) -> Self {
        let mut manager = Self {
            local,
            config,
            peers: HashMap::new(),
            owners: HashMap::new(),
            pending: HashMap::new(),
            connected_peers: 0,
            timers: Timers::default(),
            actions: VecDeque::new(),
            phase: Phase::Disconnected,
            terminated: false,
            bootstrap: Bootstrap::default(),
            rng: StdRng::seed_from_u64(seed),
        };
        if !manager.config.bootstrap_peers.is_empty() {
            manager.schedule_bootstrap_at(now);
        }
        manager
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    // ---- Commands from the application -------------------------------------------------

    /// Marks `peer` as wanted (kept connected and redialed when lost), remembers `addresses`,
    /// and dials it unless a connection exists or is being made.
    pub fn dial(
        &mut self,
        now: Instant,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    ) -> Result<(), Denial> {
        let _ = now;
        if peer == self.local {
            return Err(Denial::SelfConnection { peer });
        }
        if self.terminated {
            return Err(Denial::Terminated);
        }
        let max = self.config.max_addresses_per_peer;
        let record = self.peers.entry(peer).or_default();
        record.wanted = true;
        for address in addresses {
            record.add_address(address, max);
        }
        if record.is_connected() || record.pending_outbound > 0 {
            return Ok(());
        }
        self.cancel_redial(peer);
        self.push_dial(peer);
        Ok(())
    }

    /// Remembers a dial address for `peer` without dialing it.
    pub fn add_address(&mut self, peer: PeerId, address: Multiaddr) {
        if peer == self.local {
            return;
        }
        let max = self.config.max_addresses_per_peer;
        self.peers
            .entry(peer)
            .or_default()
            .add_address(address, max);
    }

    /// Stops wanting `peer`: cancels its redial and closes its connections with goodbye
    /// `Normal`. Returns whether it had connections.
    pub fn disconnect(&mut self, now: Instant, peer: PeerId) -> bool {
        let Some(record) = self.peers.get_mut(&peer) else {
            return false;
        };
        record.wanted = false;
        let open: Vec<ConnectionId> = record.open().map(|c| c.id).collect();
        let had_connections = !record.connections.is_empty();
        self.cancel_redial(peer);
        for connection in open {
            self.start_close(now, peer, connection, DisconnectReason::Normal, None);
        }
        self.forget_if_idle(peer);
        had_connections
    }

    /// Says goodbye `Normal` on every connection, stops redialing, refuses every new
    /// connection, and enters [`Phase::Terminated`].
    pub fn shutdown(&mut self, now: Instant) {
        if self.terminated {
            return;
        }
        self.terminated = true;
        if let Some(due) = self.bootstrap.due.take() {
            self.timers.cancel(due, Timer::Bootstrap);
        }
        self.bootstrap.round.clear();
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            if let Some(record) = self.peers.get_mut(&peer) {
                record.wanted = false;
            }
            self.disconnect(now, peer);
        }
        self.update_phase();
    }

    // ---- Inputs from the swarm ---------------------------------------------------------

    /// An inbound connection is being negotiated.
    pub fn on_pending_inbound(
        &mut self,
        now: Instant,
        connection: ConnectionId,
    ) -> Result<(), Denial> {
        let _ = now;
        if self.terminated {
            return Err(self.deny(None, connection, Denial::Terminated));
        }
        self.pending.insert(
            connection,
            Pending {
                peer: None,
                direction: Direction::Inbound,
                deadline: None,
                timed_out: false,
            },
        );
        Ok(())
    }

    /// An outbound connection is being dialed, by the manager or anyone else, on `addresses`
    /// (remembered for redials). Returns the other addresses the manager knows for the peer.
    pub fn on_pending_outbound(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
    ) -> Result<Vec<Multiaddr>, Denial> {
        if self.terminated {
            return Err(self.deny(peer, connection, Denial::Terminated));
        }
        if peer == Some(self.local) {
            return Err(self.deny(
                peer,
                connection,
                Denial::SelfConnection { peer: self.local },
            ));
        }
        let deadline = peer.map(|_| now + self.config.dial_timeout);
        if let Some(at) = deadline {
            self.timers.schedule(at, Timer::DialDeadline(connection));
        }
        self.pending.insert(
            connection,
            Pending {
                peer,
                direction: Direction::Outbound,
                deadline,
                timed_out: false,
            },
        );
        let Some(peer) = peer else {
            return Ok(Vec::new());
        };
        let max = self.config.max_addresses_per_peer;
        let record = self.peers.entry(peer).or_default();
        record.pending_outbound += 1;
        let known = record
            .addresses
            .iter()
            .filter(|a| !addresses.contains(a))
            .cloned()
            .collect();
        for address in addresses.iter().rev() {
            record.add_address(address.clone(), max);
        }
        Ok(known)
    }

    /// A connection finished its handshake: may it be established? Refuses self-connections,
    /// connections past the per-peer cap, and duplicates whose winner is already established.
    pub fn check_established(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        initiator: Initiator,
    ) -> Result<(), Denial> {
        if self.terminated {
            return Err(self.deny(Some(peer), connection, Denial::Terminated));
        }
        if peer == self.local {
            return Err(self.deny(Some(peer), connection, Denial::SelfConnection { peer }));
        }
        let Some(record) = self.peers.get(&peer) else {
            return Ok(());
        };
        let current = record.connections.len() as u32;
        let limit = self.config.max_connections_per_peer;
        if current >= limit {
            let denial = Denial::PerPeerLimit {
                peer,
                limit,
                current,
            };
            return Err(self.deny(Some(peer), connection, denial));
        }
        let newcomer = duplicates::Candidate {
            id: connection,
            initiator,
            established_at: now,
        };
        let mut candidates: Vec<_> = record.open().map(|c| c.candidate()).collect();
        candidates.push(newcomer);
        let Some(winner) = duplicates::survivor(&self.local, &peer, &candidates) else {
            return Ok(());
        };
        if winner.id != connection
            && duplicates::close_timing(&winner, &newcomer) == duplicates::CloseTiming::Now
        {
            tracing::debug!(%peer, %connection, kept = %winner.id, "refusing duplicate connection");
            self.push_event(Event::DuplicateClosed {
                peer,
                kept: winner.id,
                closed: connection,
            });
            self.mark_duplicate(now, peer);
            return Err(Denial::Duplicate {
                peer,
                kept: winner.id,
            });
        }
        Ok(())
    }

    /// A connection was established (every behaviour accepted it).
    pub fn on_established(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        initiator: Initiator,
        direction: Endpoint,
        remote_addr: Multiaddr,
    ) {
        self.finish_pending(connection);
        let max = self.config.max_addresses_per_peer;
        let record = self.peers.entry(peer).or_default();
        let first = record.connections.is_empty();
        if initiator == Initiator::Local {
            record.add_address(remote_addr.clone(), max);
        }
        record.connections.push(ConnectionRecord {
            id: connection,
            initiator,
            direction,
            established_at: now,
            remote_addr,
            closing: None,
            remote_goodbye: None,
            grace_deadline: None,
            rtt: None,
        });
        record.redial_attempts = 0;
        record.rescue_dials = 0;
        self.owners.insert(connection, peer);
        self.cancel_redial(peer);
        if first {
            self.connected_peers += 1;
        }
        self.bootstrap.round.clear();
        self.bootstrap.attempt = 0;
        if let Some(due) = self.bootstrap.due.take() {
            self.timers.cancel(due, Timer::Bootstrap);
        }
        self.settle_duplicates(now, peer, Some(connection));
        self.update_phase();
    }

    /// An established connection closed.
    pub fn on_closed(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        cause: CloseCause,
    ) {
        self.owners.remove(&connection);
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(index) = record.connections.iter().position(|c| c.id == connection) else {
            return;
        };
        let closed = record.connections.swap_remove(index);
        let remaining = record.connections.len();
        let still_connected = record.is_connected();
        let pending_outbound = record.pending_outbound;
        let context = redial::PeerContext {
            wanted: record.wanted,
            attempt: record.redial_attempts,
            settling_duplicates: record
                .last_duplicate_at
                .is_some_and(|at| now.saturating_duration_since(at) <= self.config.duplicate_grace),
        };
        self.cancel_connection_timers(&closed);

        let (reason, closed_by, retry_after) = match (closed.closing, closed.remote_goodbye) {
            (Some(closing), _) => (closing.reason, ClosedBy::Local, None),
            (None, Some((reason, retry_after))) => (reason, ClosedBy::Remote, retry_after),
            (None, None) => match cause {
                CloseCause::Local | CloseCause::Idle => {
                    (DisconnectReason::Normal, ClosedBy::Local, None)
                }
                CloseCause::Transport => (DisconnectReason::Timeout, ClosedBy::Remote, None),
            },
        };
        tracing::debug!(%peer, %connection, %reason, ?closed_by, remaining, "connection closed");
        self.push_event(Event::Disconnected {
            peer,
            connection,
            reason,
            closed_by,
            remaining,
        });
        if remaining == 0 {
            self.connected_peers -= 1;
        }

        // Only the side that dialed the lost connection redials; the other side cleans up.
        if !still_connected
            && pending_outbound == 0
            && closed.initiator == Initiator::Local
            && !self.terminated
        {
            let plan = redial::plan(reason, closed_by, context);
            self.plan_redial(now, peer, plan, retry_after);
        }
        self.forget_if_idle(peer);
        if self.connected_peers == 0 && !self.terminated && !self.config.bootstrap_peers.is_empty()
        {
            self.schedule_bootstrap(now);
        }
        self.update_phase();
    }

    /// A dial failed. `peer` is the peer the dial named, if any.
    pub fn on_dial_failure(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: Option<PeerId>,
        cause: DialFailure,
    ) {
        let pending = self.finish_pending(connection);
        if pending.as_ref().is_some_and(|p| p.timed_out) {
            // Already reported and planned for when its deadline passed.
            return;
        }
        let peer = pending.and_then(|p| p.peer).or(peer);
        if !matches!(cause, DialFailure::DeniedByManager(_)) {
            tracing::debug!(?peer, %connection, %cause, "dial failed");
            self.push_event(Event::DialFailed {
                peer,
                connection,
                cause: cause.clone(),
            });
        }
        if let Some(peer) = peer {
            self.after_failed_dial(now, peer, &cause);
        }
    }

    /// An inbound connection failed before it was established.
    pub fn on_listen_failure(&mut self, connection: ConnectionId) {
        self.finish_pending(connection);
    }

    /// The remote said goodbye on `connection`.
    pub fn on_goodbye_received(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        reason: DisconnectReason,
        retry_after: Option<Duration>,
    ) {
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        if let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        {
            record.remote_goodbye = Some((reason, retry_after));
        }
        if reason == DisconnectReason::Duplicate {
            self.mark_duplicate(now, peer);
        }
        tracing::debug!(%peer, %connection, %reason, "goodbye received");
        self.push_event(Event::GoodbyeReceived {
            peer,
            connection,
            reason,
            retry_after,
        });
    }

    /// The goodbye on `connection` was delivered, refused, or timed out: close it now.
    pub fn on_goodbye_finished(&mut self, connection: ConnectionId) {
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        if let Some(closing) = record.closing {
            self.timers
                .cancel(closing.deadline, Timer::GoodbyeDeadline(connection));
            self.actions.push_back(Action::Close { peer, connection });
        }
    }

    /// A ping on `connection` came back after `rtt`.
    pub fn on_ping_success(&mut self, connection: ConnectionId, rtt: Duration) {
        let Some(peer) = self.owners.get(&connection) else {
            return;
        };
        if let Some(record) = self
            .peers
            .get_mut(peer)
            .and_then(|r| r.connection_mut(connection))
        {
            record.rtt = Some(rtt);
        }
    }

    // ---- Time ----------------------------------------------------------------------------

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
            }
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ---- Queries -------------------------------------------------------------------------

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

    /// Whether `peer` has an established connection that is not being closed.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|r| r.is_connected())
    }

    /// What the manager knows of `peer`.
    pub fn peer_info(&self, peer: &PeerId) -> Option<PeerInfo> {
        self.peers.get(peer).map(|r| r.info())
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

    /// Deadlines currently scheduled.
    pub fn scheduled_timers(&self) -> usize {
        self.timers.len()
    }

    // ---- Transitions -------------------------------------------------------------------

    fn settle_duplicates(&mut self, now: Instant, peer: PeerId, newcomer: Option<ConnectionId>) {
        let Some(record) = self.peers.get(&peer) else {
            return;
        };
        let candidates: Vec<_> = record.open().map(|c| c.candidate()).collect();
        let Some(winner) = duplicates::survivor(&self.local, &peer, &candidates) else {
            return;
        };
        let kept_direction = record
            .connections
            .iter()
            .find(|c| c.id == winner.id)
            .map(|c| c.direction);
        if let (true, Some(direction)) = (newcomer == Some(winner.id), kept_direction) {
            self.push_event(Event::ConnectionKept {
                peer,
                connection: winner.id,
                initiator: winner.initiator,
                direction,
            });
        }
        for loser in candidates.iter().filter(|c| c.id != winner.id) {
            match duplicates::close_timing(&winner, loser) {
                duplicates::CloseTiming::Now => {
                    tracing::debug!(%peer, kept = %winner.id, closed = %loser.id, "closing duplicate");
                    self.push_event(Event::DuplicateClosed {
                        peer,
                        kept: winner.id,
                        closed: loser.id,
                    });
                    self.start_close(now, peer, loser.id, DisconnectReason::Duplicate, None);
                    self.mark_duplicate(now, peer);
                }
                duplicates::CloseTiming::AfterGrace => {
                    let grace = self.config.duplicate_grace;
                    let Some(record) = self
                        .peers
                        .get_mut(&peer)
                        .and_then(|r| r.connection_mut(loser.id))
                    else {
                        continue;
                    };
                    if record.grace_deadline.is_none() {
                        let at = now + grace;
                        record.grace_deadline = Some(at);
                        self.timers.schedule(at, Timer::DuplicateGrace(loser.id));
                    }
                }
            }
        }
    }

    fn start_close(
        &mut self,
        now: Instant,
        peer: PeerId,
        connection: ConnectionId,
        reason: DisconnectReason,
        retry_after: Option<Duration>,
    ) {
        let deadline = now + self.config.goodbye_timeout + GOODBYE_BACKSTOP_SLACK;
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        if record.closing.is_some() {
            return;
        }
        record.closing = Some(Closing { reason, deadline });
        if let Some(grace) = record.grace_deadline.take() {
            self.timers.cancel(grace, Timer::DuplicateGrace(connection));
        }
        self.timers
            .schedule(deadline, Timer::GoodbyeDeadline(connection));
        self.actions.push_back(Action::SendGoodbye {
            peer,
            connection,
            reason,
            retry_after,
        });
    }

    fn plan_redial(
        &mut self,
        now: Instant,
        peer: PeerId,
        plan: RedialPlan,
        retry_after: Option<Duration>,
    ) {
        let max_attempts = self.config.max_redial_attempts;
        let max_rescues = self.config.max_rescue_dials;
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        if plan == RedialPlan::Never {
            return;
        }
        if record.wanted {
            if max_attempts.is_some_and(|max| record.redial_attempts >= max) {
                let attempts = record.redial_attempts;
                record.wanted = false;
                self.push_event(Event::RedialGaveUp { peer, attempts });
                return;
            }
        } else {
            // Not wanted: only a bounded number of prompt rescues.
            if record.rescue_dials >= max_rescues {
                return;
            }
            record.rescue_dials += 1;
        }
        let backoff_index = record.redial_attempts.saturating_sub(1);
        let delay = match plan {
            RedialPlan::Never => return,
            RedialPlan::Prompt => {
                let base = self.config.prompt_redial_delay.as_secs_f64();
                Duration::from_secs_f64(base * self.rng.gen_range(0.5..=1.5))
            }
            RedialPlan::TimeoutBackoff => self
                .config
                .timeout_backoff
                .delay(backoff_index, &mut self.rng),
            RedialPlan::ViolationBackoff => self
                .config
                .violation_backoff
                .delay(backoff_index, &mut self.rng),
        };
        let delay = redial::honour_retry_after(delay, retry_after);
        let at = now + delay;
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        match record.redial_at {
            Some(existing) if existing <= at => return,
            Some(existing) => self.timers.cancel(existing, Timer::Redial(peer)),
            None => {}
        }
        record.redial_at = Some(at);
        let attempt = record.redial_attempts + 1;
        self.timers.schedule(at, Timer::Redial(peer));
        tracing::debug!(%peer, ?delay, attempt, "redial scheduled");
        self.push_event(Event::RedialScheduled {
            peer,
            delay,
            attempt,
        });
    }

    fn after_failed_dial(&mut self, now: Instant, peer: PeerId, cause: &DialFailure) {
        if self.bootstrap.round.remove(&peer)
            && self.bootstrap.round.is_empty()
            && self.connected_peers == 0
        {
            self.schedule_bootstrap(now);
        }
        let Some(record) = self.peers.get(&peer) else {
            self.update_phase();
            return;
        };
        let retry = !record.is_connected() && record.pending_outbound == 0 && !self.terminated;
        let plan = if !retry {
            RedialPlan::Never
        } else if record.wanted {
            match cause {
                DialFailure::SelfConnection | DialFailure::DeniedByManager(_) => RedialPlan::Never,
                _ if record.redial_attempts == 0 => RedialPlan::Prompt,
                _ => RedialPlan::TimeoutBackoff,
            }
        } else if cause.is_transient() {
            RedialPlan::Prompt
        } else {
            RedialPlan::Never
        };
        self.plan_redial(now, peer, plan, None);
        self.forget_if_idle(peer);
        self.update_phase();
    }

    fn on_redial_due(&mut self, peer: PeerId) {
        let terminated = self.terminated;
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        record.redial_at = None;
        if terminated || record.is_connected() || record.pending_outbound > 0 {
            self.forget_if_idle(peer);
            return;
        }
        record.redial_attempts += 1;
        self.push_dial(peer);
    }

    fn on_grace_over(&mut self, now: Instant, connection: ConnectionId) {
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Some(c) = record.connection_mut(connection) {
            c.grace_deadline = None;
        }
        let candidates: Vec<_> = record.open().map(|c| c.candidate()).collect();
        let Some(winner) = duplicates::survivor(&self.local, &peer, &candidates) else {
            return;
        };
        if winner.id != connection && candidates.iter().any(|c| c.id == connection) {
            tracing::debug!(%peer, kept = %winner.id, closed = %connection, "closing duplicate after grace");
            self.push_event(Event::DuplicateClosed {
                peer,
                kept: winner.id,
                closed: connection,
            });
            self.start_close(now, peer, connection, DisconnectReason::Duplicate, None);
            self.mark_duplicate(now, peer);
        }
    }

    fn on_goodbye_overdue(&mut self, connection: ConnectionId) {
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        tracing::debug!(%peer, %connection, "goodbye overdue, closing");
        self.actions.push_back(Action::Close { peer, connection });
    }

    fn on_dial_overdue(&mut self, now: Instant, connection: ConnectionId) {
        let Some(pending) = self.pending.get_mut(&connection) else {
            return;
        };
        if pending.timed_out {
            return;
        }
        pending.timed_out = true;
        pending.deadline = None;
        let Some(peer) = pending.peer else {
            return;
        };
        if let Some(record) = self.peers.get_mut(&peer) {
            record.pending_outbound = record.pending_outbound.saturating_sub(1);
        }
        let cause = DialFailure::TimedOut(self.config.dial_timeout);
        self.push_event(Event::DialFailed {
            peer: Some(peer),
            connection,
            cause: cause.clone(),
        });
        self.after_failed_dial(now, peer, &cause);
    }

    /// Schedules the next bootstrap round after the backoff for the rounds tried so far.
    fn schedule_bootstrap(&mut self, now: Instant) {
        let index = self.bootstrap.attempt.saturating_sub(1);
        let at = now + self.config.bootstrap_backoff.delay(index, &mut self.rng);
        self.schedule_bootstrap_at(at);
    }

    fn schedule_bootstrap_at(&mut self, at: Instant) {
        if self.bootstrap.due.is_some() || self.terminated {
            return;
        }
        self.bootstrap.due = Some(at);
        self.timers.schedule(at, Timer::Bootstrap);
    }

    fn on_bootstrap_due(&mut self, now: Instant) {
        self.bootstrap.due = None;
        if self.terminated || self.connected_peers > 0 {
            return;
        }
        self.bootstrap.attempt += 1;
        let max = self.config.max_addresses_per_peer;
        let peers = self.config.bootstrap_peers.clone();
        for (peer, address) in peers {
            if peer == self.local {
                continue;
            }
            let record = self.peers.entry(peer).or_default();
            record.add_address(address, max);
            if record.pending_outbound == 0 {
                self.bootstrap.round.insert(peer);
                self.push_dial(peer);
            }
        }
        tracing::debug!(
            attempt = self.bootstrap.attempt,
            peers = self.bootstrap.round.len(),
            "bootstrap round"
        );
        if self.bootstrap.round.is_empty() {
            self.schedule_bootstrap(now);
        }
        self.update_phase();
    }

    // ---- Helpers -------------------------------------------------------------------------

    fn push_dial(&mut self, peer: PeerId) {
        let addresses = self
            .peers
            .get(&peer)
            .map(|r| r.addresses.iter().cloned().collect())
            .unwrap_or_default();
        tracing::debug!(%peer, "dialing");
        self.actions.push_back(Action::Dial {
            peer,
            addresses,
            new_port: self.config.new_port_for_redials,
        });
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
    fn finish_pending(&mut self, connection: ConnectionId) -> Option<Pending> {
        let pending = self.pending.remove(&connection)?;
        if let Some(at) = pending.deadline {
            self.timers.cancel(at, Timer::DialDeadline(connection));
        }
        if let (Direction::Outbound, Some(peer), false) =
            (pending.direction, pending.peer, pending.timed_out)
        {
            if let Some(record) = self.peers.get_mut(&peer) {
                record.pending_outbound = record.pending_outbound.saturating_sub(1);
            }
        }
        Some(pending)
    }

    /// Remembers that a duplicate of `peer` was just resolved: if the survivor dies while the
    /// two sides settle, its initiator redials (see [`redial::PeerContext`]).
    fn mark_duplicate(&mut self, now: Instant, peer: PeerId) {
        if let Some(record) = self.peers.get_mut(&peer) {
            record.last_duplicate_at = Some(now);
        }
    }

    fn cancel_redial(&mut self, peer: PeerId) {
        if let Some(at) = self.peers.get_mut(&peer).and_then(|r| r.redial_at.take()) {
            self.timers.cancel(at, Timer::Redial(peer));
        }
    }

    fn cancel_connection_timers(&mut self, connection: &ConnectionRecord) {
        if let Some(at) = connection.grace_deadline {
            self.timers.cancel(at, Timer::DuplicateGrace(connection.id));
        }
        if let Some(closing) = connection.closing {
            self.timers
                .cancel(closing.deadline, Timer::GoodbyeDeadline(connection.id));
        }
    }

    fn forget_if_idle(&mut self, peer: PeerId) {
        if let Entry::Occupied(entry) = self.peers.entry(peer) {
            if entry.get().is_forgettable() {
                entry.remove();
            }
        }
    }

    fn update_phase(&mut self) {
        let new = phase::current(
            self.terminated,
            self.connected_peers,
            !self.bootstrap.round.is_empty(),
        );
        if new != self.phase {
            let old = std::mem::replace(&mut self.phase, new);
            tracing::debug!(%old, %new, "phase changed");
            self.push_event(Event::PhaseChanged { old, new });
        }
    }
}

#[cfg(test)]
mod tests;
