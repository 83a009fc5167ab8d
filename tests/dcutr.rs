//! Relay + DCUtR on loopback, as rust-libp2p's own `libp2p-dcutr/tests/lib.rs` does it: a
//! relay server R and two clients, B listening on its circuit address at R and A dialing B
//! through R; DCUtR then upgrades the relayed connection to a direct one by hole punching.
//!
//! The manager sits first in every node. Between A and B it must end with exactly one
//! connection, the direct one, on both sides (both agree, by the effective role DCUtR gives
//! each side of the hole punch), and keep it: no flapping once settled.

use std::{
    collections::HashMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    core::{transport::Transport as _, upgrade::Version, ConnectedPoint},
    dcutr, identify,
    identity::Keypair,
    multiaddr::Protocol,
    noise, ping, relay,
    swarm::{self, ConnectionId, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager as manager;
use manager::Event;

/// The manager's ping interval on the clients: short, so "several ping rounds later" is soon.
const PING_INTERVAL: Duration = Duration::from_millis(200);
/// Ping rounds the kept connection must complete, unchanged, for the pair to count as stable.
const STABLE_PINGS: u64 = 3;

#[derive(NetworkBehaviour)]
struct RelayBehaviour {
    manager: manager::Behaviour,
    relay: relay::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

#[derive(NetworkBehaviour)]
struct ClientBehaviour {
    manager: manager::Behaviour,
    relay: relay::client::Behaviour,
    dcutr: dcutr::Behaviour,
    identify: identify::Behaviour,
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Two keypairs, the one with the smaller peer id first.
fn ordered_keypairs() -> (Keypair, Keypair) {
    let a = Keypair::generate_ed25519();
    let b = Keypair::generate_ed25519();
    if a.public().to_peer_id() < b.public().to_peer_id() {
        (a, b)
    } else {
        (b, a)
    }
}

fn tcp_transport() -> tcp::tokio::Transport {
    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
}

fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0".parse().unwrap()
}

/// The relay server, listening on loopback TCP with that address as its external address (as
/// `listen().with_tcp_addr_external()` does in the dcutr test). Returns it with its address.
async fn build_relay() -> (Swarm<RelayBehaviour>, Multiaddr) {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            RelayBehaviour {
                manager: manager::Behaviour::new(peer, manager::Config::default()),
                relay: relay::Behaviour::new(peer, relay::Config::default()),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/relay".to_owned(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
            }
        })
        .expect("behaviour")
        .build();
    swarm.listen_on(loopback()).expect("listen");
    let addr = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        }
    })
    .await
    .expect("relay listens within 5 s");
    swarm.add_external_address(addr.clone());
    (swarm, addr)
}

/// A client as in the dcutr test: the relay client transport or the direct (TCP) transport,
/// noise, yamux; the manager first, then relay client, DCUtR and identify.
fn build_client(key: Keypair) -> Swarm<ClientBehaviour> {
    let peer = key.public().to_peer_id();
    let (relay_transport, relay_client) = relay::client::new(peer);
    let transport = relay_transport
        .or_transport(tcp_transport())
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(&key).expect("noise"))
        .multiplex(yamux::Config::default())
        .boxed();
    let behaviour = ClientBehaviour {
        manager: manager::Behaviour::new(
            peer,
            manager::Config::default().with_ping_interval(PING_INTERVAL),
        ),
        relay: relay_client,
        dcutr: dcutr::Behaviour::new(peer),
        identify: identify::Behaviour::new(identify::Config::new(
            "/client".to_owned(),
            key.public(),
        )),
    };
    Swarm::new(
        transport,
        behaviour,
        peer,
        swarm::Config::with_tokio_executor().with_idle_connection_timeout(Duration::from_secs(60)),
    )
}

/// A client swarm and what the test saw of it, regarding the other client.
struct Client {
    name: &'static str,
    swarm: Swarm<ClientBehaviour>,
    /// The other client.
    remote: PeerId,
    started: Instant,
    /// Open connections to `remote` according to the swarm's events, with their endpoint.
    open: HashMap<ConnectionId, ConnectedPoint>,
    /// Every connection to `remote` ever established, with its endpoint.
    seen: HashMap<ConnectionId, ConnectedPoint>,
    /// The manager's events about `remote`, in order.
    manager_events: Vec<Event>,
    /// Everything about `remote`, in order, with the time since the start (for the report).
    log: Vec<String>,
    /// A direct (non-relayed) connection to `remote` was established at the swarm.
    direct_seen: bool,
    /// Connections to `remote` established or closed at the swarm, so far.
    connection_changes: usize,
}

impl Client {
    fn new(name: &'static str, swarm: Swarm<ClientBehaviour>, remote: PeerId) -> Self {
        Self {
            name,
            swarm,
            remote,
            started: Instant::now(),
            open: HashMap::new(),
            seen: HashMap::new(),
            manager_events: Vec::new(),
            log: Vec::new(),
            direct_seen: false,
            connection_changes: 0,
        }
    }

    fn peer(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    fn note(&mut self, what: String) {
        let at = self.started.elapsed();
        self.log.push(format!("{:>7.1?} {}: {what}", at, self.name));
    }

    /// A connection's kind, for the log.
    fn describe(&self, connection: ConnectionId) -> String {
        match self.seen.get(&connection) {
            Some(endpoint) => format!("{connection} ({})", kind(endpoint)),
            None => format!("{connection} (never established here)"),
        }
    }

    fn on_event(&mut self, event: SwarmEvent<ClientBehaviourEvent>) {
        let remote = self.remote;
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } if peer_id == remote => {
                if !endpoint.is_relayed() {
                    self.direct_seen = true;
                }
                self.connection_changes += 1;
                self.note(format!(
                    "swarm: established {connection_id} {} on {}",
                    kind(&endpoint),
                    endpoint.get_remote_address()
                ));
                self.open.insert(connection_id, endpoint.clone());
                self.seen.insert(connection_id, endpoint);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            } if peer_id == remote => {
                self.open.remove(&connection_id);
                self.connection_changes += 1;
                let what = format!("swarm: closed {} ({cause:?})", self.describe(connection_id));
                self.note(what);
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                connection_id,
                error,
            } if peer_id == remote => {
                self.note(format!("swarm: dial {connection_id} failed: {error}"));
            }
            SwarmEvent::IncomingConnectionError {
                connection_id,
                error,
                ..
            } => {
                self.note(format!("swarm: incoming {connection_id} failed: {error}"));
            }
            SwarmEvent::Behaviour(ClientBehaviourEvent::Manager(event))
                if about(&event) == Some(remote) =>
            {
                let what = match &event {
                    Event::ConnectionKept { connection, .. } => {
                        format!("manager: {event:?} [{}]", self.describe(*connection))
                    }
                    Event::DuplicateClosed { kept, closed, .. } => format!(
                        "manager: {event:?} [kept {}, closed {}]",
                        self.describe(*kept),
                        self.describe(*closed)
                    ),
                    _ => format!("manager: {event:?}"),
                };
                self.note(what);
                self.manager_events.push(event);
            }
            SwarmEvent::Behaviour(ClientBehaviourEvent::Dcutr(event))
                if event.remote_peer_id == remote =>
            {
                self.note(format!("dcutr: {:?}", event.result));
            }
            _ => {}
        }
    }

    /// The manager's connections to the remote, none closing, exactly as the swarm has them.
    fn settled_connection(&self) -> Option<manager::ConnectionInfo> {
        let info = self.swarm.behaviour().manager.peer_info(&self.remote)?;
        match (info.connections.as_slice(), self.open.len()) {
            ([only], 1) if only.closing.is_none() && self.open.contains_key(&only.id) => {
                Some(only.clone())
            }
            _ => None,
        }
    }

    fn is_relayed(&self, connection: ConnectionId) -> bool {
        self.seen
            .get(&connection)
            .is_some_and(ConnectedPoint::is_relayed)
    }

    /// Duplicates of the remote the manager closed or refused so far.
    fn duplicates_closed(&self) -> usize {
        self.manager_events
            .iter()
            .filter(|e| matches!(e, Event::DuplicateClosed { .. }))
            .count()
    }

    /// Tie-break events (kept, duplicate closed) about the remote so far.
    fn tie_break_events(&self) -> usize {
        self.manager_events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::ConnectionKept { .. } | Event::DuplicateClosed { .. }
                )
            })
            .count()
    }

    fn pings(&self, connection: ConnectionId) -> u64 {
        self.swarm
            .behaviour()
            .manager
            .peer_info(&self.remote)
            .and_then(|info| info.connections.into_iter().find(|c| c.id == connection))
            .map_or(0, |c| c.pings)
    }
}

fn kind(endpoint: &ConnectedPoint) -> &'static str {
    match (endpoint.is_relayed(), endpoint) {
        (true, ConnectedPoint::Dialer { .. }) => "relayed, outbound",
        (true, ConnectedPoint::Listener { .. }) => "relayed, inbound",
        (false, ConnectedPoint::Dialer { role_override, .. }) => match role_override {
            libp2p::core::Endpoint::Dialer => "direct, outbound",
            libp2p::core::Endpoint::Listener => "direct, outbound as listener (hole punch)",
        },
        (false, ConnectedPoint::Listener { .. }) => "direct, inbound",
    }
}

/// The peer a manager event is about, when it is about one.
fn about(event: &Event) -> Option<PeerId> {
    match event {
        Event::ConnectionKept { peer, .. }
        | Event::DuplicateClosed { peer, .. }
        | Event::Disconnected { peer, .. }
        | Event::GoodbyeReceived { peer, .. }
        | Event::RedialScheduled { peer, .. }
        | Event::HealthChanged { peer, .. }
        | Event::ConnectionReplaced { peer, .. } => Some(*peer),
        Event::Denied { peer, .. } | Event::DialFailed { peer, .. } => *peer,
        _ => None,
    }
}

fn report(a: &Client, b: &Client) -> String {
    let mut out = String::new();
    for client in [a, b] {
        let _ = writeln!(
            out,
            "--- {} ({}{}):",
            client.name,
            client.peer(),
            if client.peer() < client.remote {
                ", the smaller peer id"
            } else {
                ", the larger peer id"
            }
        );
        for line in &client.log {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "    swarm now: {} connection(s) pending",
            client
                .swarm
                .network_info()
                .connection_counters()
                .num_pending()
        );
        let _ = writeln!(
            out,
            "    manager now: {:?}",
            client
                .swarm
                .behaviour()
                .manager
                .peer_info(&client.remote)
                .map(|i| i.connections)
        );
    }
    out
}

/// Polls both clients until `done` holds, or panics with everything seen after `deadline`.
async fn drive_until(
    a: &mut Client,
    b: &mut Client,
    deadline: Duration,
    what: &str,
    mut done: impl FnMut(&Client, &Client) -> bool,
) {
    // Some progress (a ping inside the manager) yields no swarm event: re-check `done` on a
    // short tick too, while the swarms keep being polled.
    let mut recheck = tokio::time::interval(Duration::from_millis(20));
    let result = tokio::time::timeout(deadline, async {
        while !done(a, b) {
            tokio::select! {
                event = a.swarm.select_next_some() => a.on_event(event),
                event = b.swarm.select_next_some() => b.on_event(event),
                _ = recheck.tick() => {}
            }
        }
    })
    .await;
    if result.is_err() {
        panic!("no {what} within {deadline:?}:\n{}", report(a, b));
    }
}

/// Polls one client alone until it has a reservation at the relay (if `reservation`) and a
/// non-relayed external address candidate observed by the relay (what DCUtR sends to the
/// other side as its hole-punch addresses).
async fn wait_for_relay(client: &mut Client, relay: PeerId, reservation: bool) {
    let mut reserved = !reservation;
    let mut observed = false;
    let name = client.name;
    tokio::time::timeout(Duration::from_secs(5), async {
        while !(reserved && observed) {
            match client.swarm.select_next_some().await {
                SwarmEvent::Behaviour(ClientBehaviourEvent::Relay(
                    relay::client::Event::ReservationReqAccepted { relay_peer_id, .. },
                )) if relay_peer_id == relay => reserved = true,
                SwarmEvent::NewExternalAddrCandidate { address }
                    if !address.iter().any(|p| p == Protocol::P2pCircuit) =>
                {
                    observed = true
                }
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("{name}: no reservation/observed address within 5 s (reserved {reserved}, observed {observed})")
    });
}

/// The scenario; `relayed_dialer_smaller`: whether A (which dials B through the relay, and
/// which DCUtR makes the dialer of the hole punch) has the smaller peer id.
async fn relayed_then_hole_punched(relayed_dialer_smaller: bool) {
    init_tracing();
    let started = Instant::now();
    let (small, large) = ordered_keypairs();
    let (key_a, key_b) = if relayed_dialer_smaller {
        (small, large)
    } else {
        (large, small)
    };
    let (peer_a, peer_b) = (key_a.public().to_peer_id(), key_b.public().to_peer_id());

    let (relay, relay_addr) = build_relay().await;
    let relay_peer = *relay.local_peer_id();
    let relay_task = tokio::spawn(async move {
        let mut relay = relay;
        loop {
            relay.select_next_some().await;
        }
    });

    let mut a = Client::new("A", build_client(key_a), peer_b);
    let mut b = Client::new("B", build_client(key_b), peer_a);
    for client in [&mut a, &mut b] {
        client.swarm.listen_on(loopback()).expect("listen");
    }

    // B listens on its circuit address at the relay.
    let relay_p2p = relay_addr.clone().with(Protocol::P2p(relay_peer));
    let b_circuit = relay_p2p
        .clone()
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(peer_b));
    b.swarm
        .listen_on(relay_p2p.clone().with(Protocol::P2pCircuit))
        .expect("listen on circuit");
    wait_for_relay(&mut b, relay_peer, true).await;

    // A connects to the relay first and learns its observed address, so that its DCUtR
    // handler on the relayed connection has hole-punch addresses to send (in the dcutr test
    // this is a race that identify usually wins).
    a.swarm.dial(relay_p2p).expect("dial relay");
    wait_for_relay(&mut a, relay_peer, false).await;

    // A dials B through the relay.
    a.swarm.dial(b_circuit).expect("dial circuit");

    // 1. The hole punch: wait until the direct connection is established on both sides, or
    //    until either manager resolved a duplicate (with a rule that kept the relayed
    //    connection, A would refuse the direct one and never see it established).
    drive_until(
        &mut a,
        &mut b,
        Duration::from_secs(10),
        "hole punch (a direct connection on both sides, or a duplicate resolved)",
        |a, b| {
            (a.direct_seen && b.direct_seen) || a.duplicates_closed() + b.duplicates_closed() > 0
        },
    )
    .await;
    // Then the pair settles on one connection, nothing closing, on both sides. (Not "nothing
    // pending": B's own hole-punch dial, with its role overridden to listener, finds the
    // 4-tuple taken by A's dial on loopback, libp2p-tcp retries it from a new port, and it
    // reaches A's listener, where both ends wait as responders: it stays pending, never
    // established, for as long as the test runs.)
    drive_until(
        &mut a,
        &mut b,
        Duration::from_secs(10),
        "single connection between A and B on both sides",
        |a, b| match (a.settled_connection(), b.settled_connection()) {
            // Of the same kind on both sides: one side may already be down to the direct
            // connection while the other still has only the relayed one (its close on the way)
            // and has not seen the direct one yet.
            (Some(x), Some(y)) => a.is_relayed(x.id) == b.is_relayed(y.id),
            _ => false,
        },
    )
    .await;
    let settled_at = started.elapsed();
    let kept_a = a.settled_connection().expect("settled");
    let kept_b = b.settled_connection().expect("settled");

    // 2. Both kept the direct connection, and agree it is the same one: one side counts it
    //    as dialed by itself, the other by the remote.
    assert!(
        !a.is_relayed(kept_a.id) && !b.is_relayed(kept_b.id),
        "the relayed connection survived instead of the direct one (A kept {}, B kept {}):\n{}",
        a.describe(kept_a.id),
        b.describe(kept_b.id),
        report(&a, &b)
    );
    assert_ne!(
        kept_a.initiator,
        kept_b.initiator,
        "A and B disagree on who dialed the kept connection:\n{}",
        report(&a, &b)
    );

    // 3. No flapping: several ping rounds later the same connection is still the only one,
    //    and nothing about the tie-break happened again.
    let tie_breaks = (a.tie_break_events(), b.tie_break_events());
    let changes = (a.connection_changes, b.connection_changes);
    let pings = (a.pings(kept_a.id), b.pings(kept_b.id));
    drive_until(
        &mut a,
        &mut b,
        Duration::from_secs(10),
        "further ping rounds on the kept connection",
        |a, b| {
            a.pings(kept_a.id) >= pings.0 + STABLE_PINGS
                && b.pings(kept_b.id) >= pings.1 + STABLE_PINGS
        },
    )
    .await;
    for (client, kept, changes) in [(&a, &kept_a, changes.0), (&b, &kept_b, changes.1)] {
        assert_eq!(
            client.settled_connection().map(|c| c.id),
            Some(kept.id),
            "{}: the kept connection changed:\n{}",
            client.name,
            report(&a, &b)
        );
        assert_eq!(
            client.connection_changes,
            changes,
            "{}: connections between A and B opened or closed after they settled:\n{}",
            client.name,
            report(&a, &b)
        );
    }
    assert_eq!(
        (a.tie_break_events(), b.tie_break_events()),
        tie_breaks,
        "tie-break events after settling:\n{}",
        report(&a, &b)
    );

    println!(
        "settled after {settled_at:?}, stable {STABLE_PINGS} ping rounds later, {:?} in all\n{}",
        started.elapsed(),
        report(&a, &b)
    );
    relay_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_punched_connection_replaces_the_relayed_one_when_the_relayed_dialer_is_smaller() {
    relayed_then_hole_punched(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_punched_connection_replaces_the_relayed_one_when_the_relayed_dialer_is_larger() {
    relayed_then_hole_punched(false).await;
}
