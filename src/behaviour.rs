//! The libp2p adapter: swarm callbacks in, core inputs; core actions in, `ToSwarm` out.
//!
//! No policy lives here. Every decision is the [`Manager`]'s; this file reads the clock, keeps
//! the one timer the manager asks for, and translates between libp2p's types and the core's.

use std::{
    convert::Infallible,
    net::IpAddr,
    task::{Context, Poll, Waker},
    time::Duration,
};

use either::Either;
use futures::FutureExt;
use futures_timer::Delay;
use ipnet::IpNet;
use libp2p_core::{connection::ConnectedPoint, transport::PortUse, Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::{
    behaviour::{
        ConnectionClosed, ConnectionEstablished, DialFailure as SwarmDialFailure, FromSwarm,
    },
    dial_opts::{DialOpts, PeerCondition},
    CloseConnection, ConnectionDenied, ConnectionHandler, ConnectionId, DialError,
    NetworkBehaviour, NotifyHandler, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use web_time::Instant;

use crate::{
    bandwidth::{BandwidthMeter, BandwidthSampler},
    core::{
        Action, Ban, BanTarget, CloseCause, Denial, DialFailureCause, Event, Health, Initiator,
        Limits, Manager, NewConnection, PeerInfo, Phase,
    },
    exchange::handler::{ExchangeHandler, ExchangeIn, ExchangeOut},
    goodbye::{
        handler::{self, GoodbyeOutcome, Handler},
        protocol::Goodbye,
    },
    pacing::Pacer,
    store::{PeerStore, StoreConfig, StoreDriver, StoreError},
    Config, ConfigError,
};

type PingHandler = THandler<libp2p_ping::Behaviour>;

/// The goodbye handler, and the peer-exchange handler when peer exchange is on.
type ManagerHandlers = libp2p_swarm::ConnectionHandlerSelect<
    Handler,
    Either<ExchangeHandler, libp2p_swarm::dummy::ConnectionHandler>,
>;

/// The connection manager as a [`NetworkBehaviour`].
///
/// Compose it first in your `#[derive(NetworkBehaviour)]` struct so that its refusals (self
/// connections, bans, limits) run before other behaviours spend work on a connection.
/// It runs libp2p-ping on every connection itself: do not add a second `ping::Behaviour` unless
/// you want its events too.
pub struct Behaviour {
    manager: Manager,
    ping: libp2p_ping::Behaviour,
    /// The manager's next deadline and the timer armed for it.
    timer: Option<(Instant, Delay)>,
    /// A costly command waiting for the pacer's next window (see `pacing`).
    held: Option<ToSwarm<Event, THandlerInEvent<Self>>>,
    pacer: Pacer,
    /// Rates from the opt-in byte counter, for the health score.
    bandwidth: Option<BandwidthSampler>,
    /// Where bans and peers are kept across restarts, if anywhere.
    store: Option<StoreDriver>,
    /// What feeds the metrics, if attached ([`with_metrics`](Self::with_metrics)).
    #[cfg(feature = "metrics")]
    metrics: Option<crate::metrics::probe::Probe>,
    waker: Option<Waker>,
}

impl Behaviour {
    /// A connection manager for the node `local_peer_id`. It never panics on a configuration
    /// (durations beyond [`Config::MAX_DURATION`] saturate); [`try_new`](Self::try_new)
    /// refuses one that fails [`Config::validate`] instead.
    pub fn new(local_peer_id: PeerId, config: Config) -> Self {
        let ping = libp2p_ping::Behaviour::new(
            libp2p_ping::Config::new()
                .with_interval(config.ping_interval.min(Config::MAX_DURATION))
                .with_timeout(config.ping_timeout.min(Config::MAX_DURATION)),
        );
        Self {
            manager: Manager::new(local_peer_id, config, Instant::now(), rand::random()),
            ping,
            timer: None,
            held: None,
            pacer: Pacer::default(),
            bandwidth: None,
            store: None,
            #[cfg(feature = "metrics")]
            metrics: None,
            waker: None,
        }
    }

    /// [`new`](Self::new), for a configuration that passes [`Config::validate`] only.
    pub fn try_new(local_peer_id: PeerId, config: Config) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self::new(local_peer_id, config))
    }

    /// Keeps bans, wanted peers, addresses, tags and last disconnects in `store`, and takes
    /// over what it holds now: bans still in force are enforced again, and wanted peers are
    /// redialed by the normal policy ([`Event::Restored`] says how many). Changes are written
    /// in batches, about once a second; [`shutdown`](Self::shutdown) and dropping the
    /// behaviour write the rest. Call it before the swarm runs.
    ///
    /// Fails if the store cannot be read.
    pub fn with_store(self, store: impl PeerStore) -> Result<Self, StoreError> {
        self.with_store_config(store, StoreConfig::default())
    }

    /// [`with_store`](Self::with_store), with how often changes are handed to the store.
    pub fn with_store_config(
        mut self,
        store: impl PeerStore,
        config: StoreConfig,
    ) -> Result<Self, StoreError> {
        let (driver, summary) = StoreDriver::attach(Box::new(store), config, &mut self.manager)?;
        tracing::info!(
            bans = summary.bans,
            expired_bans = summary.expired_bans,
            peers = summary.peers,
            redials = summary.redials,
            "peer store restored"
        );
        self.store = Some(driver);
        Ok(self)
    }

    /// Writes every pending change to the store and waits until it is durable. Without a store,
    /// does nothing.
    pub fn flush_store(&mut self) -> Result<(), StoreError> {
        match self.store.as_mut() {
            Some(store) => store.flush(&mut self.manager),
            None => Ok(()),
        }
    }

    /// Measures bandwidth with `meter` (fed by a [`counting_transport`](crate::bandwidth::counting_transport)
    /// around the swarm's transport) and includes it in the health score. Without it,
    /// bandwidth is left out of the score.
    pub fn with_bandwidth_meter(mut self, meter: BandwidthMeter) -> Self {
        self.bandwidth = Some(BandwidthSampler::new(meter));
        self
    }

    /// Feeds `metrics` (feature `metrics`): the round-trip time of every ping, and what its
    /// gauges show, published as the behaviour's state changes (at most a quarter of a second
    /// behind). Events still go through [`Recorder::record`](crate::metrics::Recorder::record).
    /// Attach one behaviour per [`Metrics`](crate::metrics::Metrics).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(mut self, metrics: &crate::metrics::Metrics) -> Self {
        let mut probe = metrics.probe();
        probe.publish(&self.manager, Instant::now());
        self.metrics = Some(probe);
        self
    }

    /// Keeps `peer` connected, like go-libp2p's peering service: dials it (on `addresses`, and
    /// on any address the manager or other behaviours know) unless a connection exists or is
    /// being made, redials it when it is lost (by the reason it was lost, see the README's
    /// redial table), holds its connection open while idle, and never trims it. It stays kept
    /// until [`remove_peer`](Self::remove_peer), a ban, or
    /// [`Config::with_max_redial_attempts`](crate::Config::with_max_redial_attempts) failed
    /// redials. Unlike `Swarm::dial`, which dials once, this is a standing intent.
    ///
    /// Refused at once (typed [`Denial`]) for the local peer, a banned peer, or after
    /// [`shutdown`](Self::shutdown). The dial itself starts when the swarm is next polled.
    pub fn add_peer(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) -> Result<(), Denial> {
        let result = self.manager.add_peer(Instant::now(), peer, addresses);
        self.wake();
        result
    }

    /// Remembers a dial address for `peer`, without dialing it or keeping it connected.
    pub fn add_address(&mut self, peer: PeerId, address: Multiaddr) {
        self.manager.add_address(peer, address);
    }

    /// Stops keeping `peer` and closes its connections: each gets goodbye `Normal` (the remote
    /// does not redial), and a dial still in flight is closed as soon as it succeeds. It is
    /// not redialed or rescued, and peer exchange does not bring it back, until it is added
    /// again. Returns whether it had connections. The goodbyes go out when the swarm is next
    /// polled.
    pub fn remove_peer(&mut self, peer: PeerId) -> bool {
        let had = self.manager.remove_peer(Instant::now(), peer);
        self.wake();
        had
    }

    /// Says goodbye `Normal` to every peer, closes every connection, refuses new ones and
    /// enters [`Phase::Terminated`]. The goodbyes go out as the swarm is polled: keep polling
    /// it until the connections are closed (at most the goodbye timeout). With a store,
    /// nothing more is written from here: it keeps the state from before the shutdown (a ban
    /// made after it is enforced until the process ends, but not stored).
    pub fn shutdown(&mut self) {
        self.manager.shutdown(Instant::now());
        if let Some(store) = self.store.as_mut() {
            store.hand_over(&mut self.manager);
        }
        self.wake();
    }

    /// Bans `peer` for `duration` (`None`: until [`unban_peer`](Self::unban_peer)). It is
    /// refused from any address at once; its connections get goodbye `Banned` (with the time
    /// left as the retry-after hint) and close when the swarm is next polled; it is no longer
    /// kept connected. Like allow-block-list's `block_peer`, with an end.
    pub fn ban_peer(&mut self, peer: PeerId, duration: Option<Duration>) {
        self.manager.ban_peer(Instant::now(), peer, duration);
        self.wake();
    }

    /// Bans an IP address or network (`"10.0.0.0/8".parse()?`, or an `IpAddr` with `.into()`)
    /// for `duration`. New connections from it are refused before their handshake, at once;
    /// its connections get goodbye `Banned` and close when the swarm is next polled.
    ///
    /// **A single IPv6 address bans its /64** (a host usually owns a whole /64, and would
    /// otherwise move to the next address): `ban_network(ip.into(), ..)` with
    /// `2001:db8::7` bans `2001:db8::/64` ([`BanTarget::host_scope`]). A network given with a
    /// shorter prefix keeps its prefix; an IPv4 address bans that address only; an
    /// IPv4-mapped IPv6 address bans its IPv4 address. [`unban_network`](Self::unban_network)
    /// applies the same rule, so unbanning the address lifts the ban.
    ///
    /// IP bans concern the remote's own address: a relayed connection is not refused or closed
    /// for its relay's IP (ban the peer for that), while the direct connection to the relay is.
    pub fn ban_network(&mut self, network: impl Into<IpNet>, duration: Option<Duration>) {
        self.manager
            .ban_network(Instant::now(), network.into(), duration);
        self.wake();
    }

    /// Lifts the ban of `peer`. Returns whether there was one. Peers kept connected that the
    /// ban stranded are dialed again (spread out) when the swarm is next polled.
    pub fn unban_peer(&mut self, peer: PeerId) -> bool {
        let lifted = self.manager.unban(Instant::now(), BanTarget::Peer(peer));
        self.wake();
        lifted
    }

    /// Lifts the ban of `network`. Returns whether there was one. A single IPv6 address
    /// stands for its /64, as in [`ban_network`](Self::ban_network).
    pub fn unban_network(&mut self, network: impl Into<IpNet>) -> bool {
        let target = BanTarget::Network(network.into());
        let lifted = self.manager.unban(Instant::now(), target);
        self.wake();
        lifted
    }

    /// Whether `peer` is banned.
    pub fn is_peer_banned(&self, peer: &PeerId) -> bool {
        self.manager.is_peer_banned(peer, Instant::now())
    }

    /// Whether `ip` falls in a banned network.
    pub fn is_ip_banned(&self, ip: IpAddr) -> bool {
        self.manager.is_ip_banned(ip, Instant::now())
    }

    /// The bans in force, with their expiry.
    pub fn bans(&self) -> Vec<Ban> {
        self.manager.bans(Instant::now())
    }

    /// Exempts `peer` from the limits that apply once a peer is known: the established limits
    /// and the pending-outgoing limit. The limits checked before the peer is known (pending
    /// incoming, per IP, per relay) still apply, and so do the bans. Its connections are also
    /// held open while idle and never trimmed. (Not allow-block-list's `exempt_peer`, which
    /// refuses everyone else.)
    pub fn exempt_peer(&mut self, peer: PeerId) {
        self.manager.exempt_peer(peer);
        self.wake();
    }

    /// Ends the exemption of `peer` ([`exempt_peer`](Self::exempt_peer)). Returns whether it
    /// was exempt.
    pub fn remove_exemption(&mut self, peer: &PeerId) -> bool {
        let was = self.manager.remove_exemption(peer);
        self.wake();
        was
    }

    /// Replaces the limits, at once. Lowering one closes nothing; it refuses new connections
    /// until the count is below it again. Peers waiting for a slot get a chance, spread out.
    pub fn set_limits(&mut self, limits: Limits) {
        self.manager.set_limits(Instant::now(), limits);
        self.wake();
    }

    /// Replaces the watermarks (`None`: trimming off), at once: connections above the new
    /// high watermark are trimmed down to the low one (the trim silence still applies).
    /// Refused, with nothing changed, when low is above high.
    pub fn set_watermarks(
        &mut self,
        watermarks: Option<(usize, usize)>,
    ) -> Result<(), ConfigError> {
        self.manager.set_watermarks(Instant::now(), watermarks)?;
        self.wake();
        Ok(())
    }

    /// Discovery (mDNS, Kademlia, identify, ...) sees `peer` at `addresses`: it is kept
    /// connected like with [`add_peer`](Self::add_peer), up to
    /// [`Config::with_max_discovered_peers`](crate::Config::with_max_discovered_peers), but
    /// trimming may let it go, and [`remove_discovered`](Self::remove_discovered) ends it. A
    /// peer added with `add_peer` stays the application's. The dial starts when the swarm is
    /// next polled.
    pub fn add_discovered(
        &mut self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    ) -> Result<(), Denial> {
        let result = self.manager.add_discovered(Instant::now(), peer, addresses);
        self.wake();
        result
    }

    /// Discovery no longer sees `peer`: its live connection stays, and once it is gone and one
    /// redial failed, the peer is forgotten ([`Event::PeerForgotten`]).
    pub fn remove_discovered(&mut self, peer: PeerId) {
        self.manager.remove_discovered(peer);
        self.wake();
    }

    /// Forgets `peer` (no longer kept, no redial, no addresses); live connections stay, and
    /// may then idle out or be trimmed.
    pub fn forget(&mut self, peer: PeerId) -> bool {
        let known = self.manager.forget(peer);
        self.wake();
        known
    }

    /// Protects `peer` from trimming under `tag`; it stays protected while it holds any tag.
    pub fn protect(&mut self, peer: PeerId, tag: impl Into<String>) {
        self.manager.protect(peer, tag);
        self.wake();
    }

    /// Removes one protection tag. Returns whether the peer is still protected.
    pub fn unprotect(&mut self, peer: &PeerId, tag: &str) -> bool {
        let still = self.manager.unprotect(peer, tag);
        self.wake();
        still
    }

    /// Values `peer` under `tag`: trimming closes the lowest total value first.
    pub fn tag_peer(&mut self, peer: PeerId, tag: impl Into<String>, value: i64) {
        self.manager.tag_peer(peer, tag, value);
    }

    /// Removes a valued tag.
    pub fn untag_peer(&mut self, peer: &PeerId, tag: &str) {
        self.manager.untag_peer(peer, tag);
    }

    /// Trims down to the low watermark now, ignoring the silence period. Returns the peers
    /// whose connections are being closed (their goodbyes go out when the swarm is next
    /// polled).
    pub fn force_trim(&mut self) -> Vec<PeerId> {
        let trimmed = self.manager.force_trim(Instant::now());
        self.wake();
        trimmed
    }

    /// The node's phase.
    pub fn phase(&self) -> Phase {
        self.manager.phase()
    }

    /// Peers with at least one established connection.
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.manager.connected_peers()
    }

    /// Peers kept connected (`add_peer`, discovery, peer exchange), connected or not: with
    /// [`peer_info`](Self::peer_info), when each is redialed next.
    pub fn wanted_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.manager.wanted_peers()
    }

    /// Whether `peer` has an established connection that is not being closed.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.manager.is_connected(peer)
    }

    /// Counts of what the manager holds: connections, peers, per-IP state, queued work.
    pub fn stats(&self) -> crate::Stats {
        self.manager.stats()
    }

    /// What the manager knows of `peer`: connections (direction, initiator, since, RTT),
    /// addresses, redial state.
    pub fn peer_info(&self, peer: &PeerId) -> Option<PeerInfo> {
        self.manager.peer_info(peer)
    }

    /// The health of the connection kept to `peer` (RTT average, reliability, bandwidth when
    /// measured, score and category), once a ping result came in.
    pub fn health(&self, peer: &PeerId) -> Option<Health> {
        self.manager.health(peer)
    }

    /// Feeds a bandwidth measurement of `connection` into its health score.
    pub fn record_bandwidth(&mut self, connection: ConnectionId, bytes_per_second: f64) {
        self.manager
            .on_bandwidth(Instant::now(), connection, bytes_per_second);
        self.wake();
    }

    /// The sans-IO core, for queries (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Our handlers for a new connection to `peer` (ping is added beside them by the caller).
    fn new_handler(&self, peer: &PeerId) -> ManagerHandlers {
        let config = self.manager.config();
        let exchange = if config.peer_exchange.is_some() {
            Either::Left(ExchangeHandler::new())
        } else {
            Either::Right(libp2p_swarm::dummy::ConnectionHandler)
        };
        Handler::new(self.manager.keeps_alive(peer), config.goodbye_timeout).select(exchange)
    }

    fn to_swarm(&self, action: Action) -> ToSwarm<Event, THandlerInEvent<Self>> {
        match action {
            Action::Dial {
                peer,
                addresses,
                new_port,
            } => {
                let opts = DialOpts::peer_id(peer)
                    .addresses(addresses)
                    .extend_addresses_through_behaviour()
                    .condition(PeerCondition::Always);
                let opts = if new_port {
                    opts.allocate_new_port()
                } else {
                    opts
                };
                ToSwarm::Dial { opts: opts.build() }
            }
            Action::SendGoodbye {
                peer,
                connection,
                reason,
                retry_after,
                timeout,
            } => {
                let goodbye = Goodbye {
                    reason,
                    retry_after,
                };
                ToSwarm::NotifyHandler {
                    peer_id: peer,
                    handler: NotifyHandler::One(connection),
                    event: Either::Left(Either::Left(handler::FromBehaviour::SendGoodbye {
                        goodbye,
                        timeout,
                    })),
                }
            }
            Action::SendPeers {
                peer,
                connection,
                peers,
            } => ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection),
                event: Either::Left(Either::Right(Either::Left(ExchangeIn::Send(peers)))),
            },
            Action::KeepAlive {
                peer,
                connection,
                keep,
            } => ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection),
                event: Either::Left(Either::Left(handler::FromBehaviour::KeepAlive(keep))),
            },
            Action::Close { peer, connection } => ToSwarm::CloseConnection {
                peer_id: peer,
                connection: CloseConnection::One(connection),
            },
            Action::Event(event) => ToSwarm::GenerateEvent(event),
        }
    }

    /// The manager's next action as a swarm command, unless it is a costly one and the pacer's
    /// budget is spent (it is then held, in order, until the next window).
    fn next_command(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Option<ToSwarm<Event, THandlerInEvent<Self>>> {
        if self.held.is_none() {
            let action = self.manager.poll_action()?;
            if !costs_the_swarm_a_scan(&action) {
                return Some(self.to_swarm(action));
            }
            self.held = Some(self.to_swarm(action));
        }
        if self.pacer.poll_spend(cx, Instant::now()) {
            return self.held.take();
        }
        None
    }

    /// If the manager's next deadline is due, the time to run it at; otherwise arms the one
    /// timer for it (re-armed only when the deadline changes).
    fn poll_deadline(&mut self, cx: &mut Context<'_>, now: Instant) -> Option<Instant> {
        let Some(deadline) = self.manager.poll_timeout() else {
            self.timer = None;
            return None;
        };
        if deadline <= now {
            return Some(now);
        }
        match &mut self.timer {
            Some((armed, _)) if *armed == deadline => {}
            // Moved (each answered ping moves a connection's inactivity deadline): reset the
            // timer rather than register a new one with the timer thread.
            Some((armed, delay)) => {
                *armed = deadline;
                delay.reset(deadline - now);
            }
            None => self.timer = Some((deadline, Delay::new(deadline - now))),
        }
        let (_, delay) = self.timer.as_mut()?;
        if delay.poll_unpin(cx).is_ready() {
            // The timer for exactly this deadline fired; the clock may read a hair earlier.
            self.timer = None;
            return Some(deadline);
        }
        None
    }
}

/// Whether libp2p-swarm finds the command's connection by scanning every peer (see `pacing`).
fn costs_the_swarm_a_scan(action: &Action) -> bool {
    matches!(
        action,
        Action::SendGoodbye { .. }
            | Action::SendPeers { .. }
            | Action::KeepAlive { .. }
            | Action::Close { .. }
    )
}

/// Who dialed, by effective role: a dial with the role overridden to listener (hole punching)
/// counts as the remote's.
fn initiator(endpoint: &ConnectedPoint) -> Initiator {
    match endpoint {
        ConnectedPoint::Dialer { role_override, .. } => Initiator::of_dial(*role_override),
        ConnectedPoint::Listener { .. } => Initiator::Remote,
    }
}

/// An inbound connection: relayed when it arrived on a `/p2p-circuit` listen address (its
/// remote address is then just the relayed peer's id).
fn inbound(local_addr: &Multiaddr, remote_addr: &Multiaddr) -> NewConnection {
    let relayed = ConnectedPoint::Listener {
        local_addr: local_addr.clone(),
        send_back_addr: remote_addr.clone(),
    }
    .is_relayed();
    NewConnection::new(Initiator::Remote, Endpoint::Listener, remote_addr.clone())
        .with_relayed(relayed)
}

fn dial_failure(error: &DialError) -> DialFailureCause {
    match error {
        DialError::LocalPeerId { .. } => DialFailureCause::SelfConnection,
        DialError::NoAddresses => DialFailureCause::NoAddresses,
        DialError::DialPeerConditionFalse(_) => DialFailureCause::ConditionFalse,
        DialError::Aborted => DialFailureCause::Aborted,
        DialError::WrongPeerId { obtained, .. } => DialFailureCause::WrongPeerId {
            obtained: *obtained,
        },
        DialError::Denied { cause } => match cause.downcast_ref::<Denial>() {
            Some(denial) => DialFailureCause::DeniedByManager(denial.clone()),
            None => DialFailureCause::DeniedByOther {
                reason: cause.to_string(),
            },
        },
        DialError::Transport(errors) => DialFailureCause::Transport {
            errors: errors
                .iter()
                .map(|(address, error)| (address.clone(), error_chain(error)))
                .collect(),
        },
    }
}

/// An error with its sources, `outer: inner: innermost`: transport errors often say nothing
/// at the top level.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !inner_text.is_empty() && !text.contains(&inner_text) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = libp2p_swarm::ConnectionHandlerSelect<ManagerHandlers, PingHandler>;
    type ToSwarm = Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.manager
            .on_pending_inbound_via(Instant::now(), connection_id, Some(local_addr), remote_addr)
            .map_err(ConnectionDenied::new)?;
        self.ping
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.manager
            .check_established(
                Instant::now(),
                connection_id,
                peer,
                &inbound(local_addr, remote_addr),
            )
            .map_err(ConnectionDenied::new)?;
        let ping = self.ping.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        Ok(self.new_handler(&peer).select(ping))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        _effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.manager
            .on_pending_outbound(Instant::now(), connection_id, maybe_peer, addresses)
            .map_err(ConnectionDenied::new)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let initiator = Initiator::of_dial(role_override);
        self.manager
            .check_established(
                Instant::now(),
                connection_id,
                peer,
                &NewConnection::new(initiator, Endpoint::Dialer, addr.clone()),
            )
            .map_err(ConnectionDenied::new)?;
        let ping = self.ping.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )?;
        Ok(self.new_handler(&peer).select(ping))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.ping.on_swarm_event(event);
        let now = Instant::now();
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => self.manager.on_established(
                now,
                connection_id,
                peer_id,
                NewConnection::new(
                    initiator(endpoint),
                    endpoint.to_endpoint(),
                    endpoint.get_remote_address().clone(),
                )
                .with_relayed(endpoint.is_relayed()),
            ),
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                remaining_established,
                ..
            }) => {
                self.manager
                    .on_closed(now, connection_id, peer_id, close_cause(cause));
                if let (Some(sampler), 0) = (self.bandwidth.as_mut(), remaining_established) {
                    sampler.forget(&peer_id);
                }
            }
            FromSwarm::DialFailure(SwarmDialFailure {
                peer_id,
                error,
                connection_id,
            }) => self
                .manager
                .on_dial_failure(now, connection_id, peer_id, dial_failure(error)),
            FromSwarm::ListenFailure(failure) => {
                self.manager.on_listen_failure(failure.connection_id)
            }
            FromSwarm::NewExternalAddrOfPeer(learned) => {
                self.manager
                    .on_peer_address(now, learned.peer_id, learned.addr.clone())
            }
            _ => {}
        }
        self.wake();
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(Either::Left(handler::ToBehaviour::GoodbyeReceived(goodbye))) => {
                self.manager.on_goodbye_received(
                    Instant::now(),
                    connection_id,
                    goodbye.reason,
                    goodbye.retry_after,
                )
            }
            Either::Left(Either::Left(handler::ToBehaviour::GoodbyeFinished(outcome))) => {
                if let GoodbyeOutcome::Failed(error) = &outcome {
                    tracing::debug!(%peer_id, %connection_id, %error, "goodbye failed");
                }
                self.manager.on_goodbye_finished(connection_id);
            }
            Either::Left(Either::Left(handler::ToBehaviour::InvalidGoodbye(error))) => {
                tracing::debug!(%peer_id, %connection_id, %error, "unreadable goodbye");
                if error.is_violation() {
                    self.manager
                        .on_protocol_violation(Instant::now(), peer_id, connection_id);
                }
            }
            Either::Left(Either::Right(Either::Left(ExchangeOut::Received(peers)))) => self
                .manager
                .on_peers_received(Instant::now(), peer_id, peers),
            Either::Left(Either::Right(Either::Left(ExchangeOut::Invalid(error)))) => {
                tracing::debug!(%peer_id, %connection_id, %error, "invalid peer list");
                if error.is_violation() {
                    self.manager
                        .on_protocol_violation(Instant::now(), peer_id, connection_id);
                }
            }
            Either::Left(Either::Right(Either::Right(never))) => match never {},
            Either::Right(ping) => {
                self.ping
                    .on_connection_handler_event(peer_id, connection_id, ping)
            }
        }
        self.wake();
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        self.waker = Some(cx.waker().clone());
        if let Some(store) = self.store.as_mut() {
            store.poll(cx, &mut self.manager);
        }
        loop {
            if let Some(command) = self.next_command(cx) {
                return Poll::Ready(command);
            }
            if let Poll::Ready(event) = self.ping.poll(cx) {
                match event {
                    ToSwarm::GenerateEvent(libp2p_ping::Event {
                        peer,
                        connection,
                        result,
                    }) => match result {
                        Ok(rtt) => {
                            #[cfg(feature = "metrics")]
                            if let Some(metrics) = &self.metrics {
                                metrics.on_ping(rtt);
                            }
                            let now = Instant::now();
                            self.manager.on_ping_success(now, connection, rtt);
                            // Each ping is a chance to sample the byte counter.
                            let rate = self.bandwidth.as_mut().and_then(|b| b.sample(peer, now));
                            if let Some(bytes_per_second) = rate {
                                self.manager.on_bandwidth(now, connection, bytes_per_second);
                            }
                        }
                        Err(libp2p_ping::Failure::Unsupported) => {
                            self.manager.on_ping_unsupported(connection)
                        }
                        Err(error) => {
                            tracing::debug!(%connection, %error, "ping failed");
                            self.manager.on_ping_failure(Instant::now(), connection);
                        }
                    },
                    // ping::Behaviour only ever reports events.
                    other => {
                        let _: ToSwarm<libp2p_ping::Event, Infallible> = other;
                    }
                }
                continue;
            }
            if let Some(due) = self.poll_deadline(cx, Instant::now()) {
                self.manager.handle_timeout(due);
                continue;
            }
            // Everything that changed in this run is in the manager now.
            #[cfg(feature = "metrics")]
            if let Some(metrics) = self.metrics.as_mut() {
                metrics.poll(cx, &self.manager, Instant::now());
            }
            return Poll::Pending;
        }
    }
}

impl Drop for Behaviour {
    /// Writes what the store has not got yet (this waits for the disk).
    fn drop(&mut self) {
        if let Err(error) = self.flush_store() {
            tracing::warn!(%error, "peer store: last changes not written");
        }
    }
}

/// How the swarm says a connection ended, in the core's terms. A remote that closes in order
/// (its muxer says the connection is closed, or the stream ended) is not a failure: a node
/// without this crate hangs up that way, and so does its connection manager when it prunes us.
fn close_cause(cause: Option<&libp2p_swarm::ConnectionError>) -> CloseCause {
    use libp2p_swarm::ConnectionError;
    match cause {
        None => CloseCause::Local,
        Some(ConnectionError::KeepAliveTimeout) => CloseCause::Idle,
        Some(ConnectionError::IO(error)) if ended_in_order(error) => CloseCause::RemoteClosed,
        Some(ConnectionError::IO(_)) => CloseCause::Transport,
    }
}

/// Whether an I/O error is the remote ending the connection rather than a failure of it.
///
/// libp2p-yamux reports the remote's `GoAway` and the end of the underlying stream as yamux's
/// `ConnectionError::Closed`, behind its own error type that shows only the text. A remote that
/// hangs up in order can also surface as a broken pipe, when we wrote before reading its end;
/// that counts as its close too. A reset while reading, a timeout or any other error is a
/// failure. (A process that dies has its sockets closed by the kernel, so it may look like
/// either.)
fn ended_in_order(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, Other, UnexpectedEof};
    let closed = yamux::ConnectionError::Closed.to_string();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(yamux) = current.downcast_ref::<libp2p_yamux::Error>() {
            if yamux.to_string() == closed {
                return true;
            }
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            match io.kind() {
                UnexpectedEof | BrokenPipe => return true,
                Other => {}
                _ => return false,
            }
            // An `Other` I/O error carries its cause inside, not as its source.
            cause = io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static));
            continue;
        }
        cause = current.source();
    }
    false
}
