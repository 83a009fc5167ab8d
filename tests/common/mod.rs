//! A test node on real TCP (127.0.0.1, noise, yamux), run in its own tokio task, with the
//! manager composed first beside identify, ping and (optionally) connection_limits. A node can
//! run other transports instead ([`Transports`]: QUIC, TLS on TCP, WebSocket, or several).
//!
//! Tests talk to a node through commands and wait on its snapshots, each with a deadline.

#![allow(dead_code)]

use std::{
    any::Any,
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use futures::{FutureExt, StreamExt};
use libp2p::{
    connection_limits,
    core::{muxing::StreamMuxerBox, transport::Boxed, upgrade::Version, ConnectedPoint},
    identify,
    identity::Keypair,
    multiaddr::Protocol,
    noise, ping, quic,
    swarm::behaviour::toggle::Toggle,
    swarm::dial_opts::DialOpts,
    swarm::{ConnectionId, NetworkBehaviour, SwarmEvent},
    tcp, tls, websocket, yamux, Multiaddr, PeerId, Swarm, Transport,
};
use libp2p_connection_manager::{self as manager, BanTarget};
use tokio::sync::{mpsc, watch};

#[derive(NetworkBehaviour)]
pub struct TestBehaviour {
    pub manager: manager::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub limits: Toggle<connection_limits::Behaviour>,
}

/// What a test can ask a node to do.
pub enum Command {
    /// `Swarm::dial` with default options (port reuse), as an application would.
    SwarmDial(DialOpts),
    /// The manager's own dial: the peer becomes wanted.
    ManagerDial(PeerId, Multiaddr),
    Disconnect(PeerId),
    Shutdown,
    BanPeer(PeerId, Option<Duration>),
    BanNetwork(ipnet::IpNet, Option<Duration>),
    AllowPeer(PeerId),
    /// `protect` (true) or `unprotect` (false) the peer under the tag "test".
    Protect(PeerId, bool),
    Unban(manager::BanTarget),
    /// Stop polling the swarm while keeping it (and its sockets) alive: a silent peer.
    Freeze,
    /// Run a closure on the swarm (to look at the manager, or to call what no command covers).
    With(SwarmFn),
}

/// What [`Command::With`] runs.
pub type SwarmFn = Box<dyn FnOnce(&mut Swarm<TestBehaviour>) + Send>;

/// The state of a node after its latest event.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Established connections according to the swarm.
    pub established: u32,
    /// Connections being negotiated according to the swarm.
    pub pending: u32,
    /// Per connected peer: its established connections according to the swarm (counted from
    /// its `ConnectionEstablished` and `ConnectionClosed` events), sorted by peer.
    pub connections: Vec<(PeerId, usize)>,
    /// Per peer: its established connections according to the manager's books, sorted by
    /// peer. Where this and `connections` disagree, the two sides of the adapter disagree.
    pub manager_connections: Vec<(PeerId, usize)>,
    /// Established connections according to the manager.
    pub manager_established: usize,
    /// Peers the manager keeps any state for.
    pub manager_tracked: usize,
    /// Connections being negotiated according to the manager.
    pub manager_pending: usize,
    /// Actions (events included) the manager decided but the swarm has not taken yet.
    pub manager_queued: usize,
    /// The most connections the manager ever had pending at once.
    pub max_manager_pending: usize,
    /// The most connections the swarm ever had established at once.
    pub max_established: u32,
    /// Remote IPs the per-IP limits keep state for.
    pub tracked_ips: usize,
    /// Every event of the manager, in order.
    pub events: Vec<manager::Event>,
    pub phase: Option<manager::Phase>,
    /// Connections the manager is closing.
    pub closing: usize,
    /// Successful pings of the sibling `ping::Behaviour`.
    pub pings: usize,
    /// Per peer, who initiated each of its open connections, as the manager sees them now.
    pub initiators: Vec<(PeerId, Vec<manager::Initiator>)>,
    /// Per peer, the swarm's endpoint of each connection the manager keeps open (not closing),
    /// sorted by peer: which transport and addresses the kept connection runs on.
    pub kept_endpoints: Vec<(PeerId, Vec<ConnectedPoint>)>,
    /// Dials the swarm started: those of its behaviours (the manager's; `SwarmEvent::Dialing`,
    /// which the swarm reports for those only) and the test's own [`Command::SwarmDial`]s.
    pub dials: usize,
    /// Inbound connections the swarm saw start (`SwarmEvent::IncomingConnection`), refused
    /// ones included.
    pub incoming: usize,
    /// When the manager's next timer is due (`Manager::poll_timeout`); a time already past
    /// means it is due and will run on the next poll.
    pub next_timer: Option<std::time::Instant>,
    /// Timers the manager has scheduled (`Manager::scheduled_timers`).
    pub timers: usize,
}

impl Snapshot {
    pub fn connections_to(&self, peer: &PeerId) -> usize {
        self.connections
            .iter()
            .find(|(p, _)| p == peer)
            .map_or(0, |(_, n)| *n)
    }

    /// Nothing in flight at this instant: no handshake, no goodbye, no event not yet
    /// reported. This says nothing of what the manager has scheduled (a redial, a trim, the
    /// close of a draining duplicate): to assert a final state, wait with [`settled`].
    pub fn is_quiet(&self) -> bool {
        self.pending == 0
            && self.closing == 0
            && self.manager_pending == 0
            && self.manager_queued == 0
    }

    /// Manager events of one kind, counted.
    pub fn count_events(&self, kind: impl Fn(&manager::Event) -> bool) -> usize {
        self.events.iter().filter(|e| kind(e)).count()
    }

    /// What must stay the same for a network to count as settled: every count of the swarm and
    /// of the manager, the dials and inbound connections seen, and the number of the manager's
    /// events (health assessments aside, they follow pings).
    fn counts(&self) -> Counts {
        Counts {
            established: self.established,
            pending: self.pending,
            connections: self.connections.clone(),
            manager_connections: self.manager_connections.clone(),
            manager_established: self.manager_established,
            manager_pending: self.manager_pending,
            manager_tracked: self.manager_tracked,
            closing: self.closing,
            dials: self.dials,
            incoming: self.incoming,
            events: self.count_events(|e| !matches!(e, manager::Event::HealthChanged { .. })),
        }
    }
}

/// See [`Snapshot::counts`].
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counts {
    established: u32,
    pending: u32,
    connections: Vec<(PeerId, usize)>,
    manager_connections: Vec<(PeerId, usize)>,
    manager_established: usize,
    manager_pending: usize,
    manager_tracked: usize,
    closing: usize,
    dials: usize,
    incoming: usize,
    events: usize,
}

pub struct Node {
    pub peer: PeerId,
    /// The first listen address.
    pub addr: Multiaddr,
    /// Every listen address (one per transport, and per extra listener).
    pub addrs: Vec<Multiaddr>,
    commands: mpsc::UnboundedSender<Command>,
    pub state: watch::Receiver<Snapshot>,
    task: tokio::task::JoinHandle<()>,
    /// The message of the panic that ended the node's task, if one did.
    failure: Failure,
}

/// Where a node's task leaves the message of its panic before it drops its channels.
type Failure = Arc<Mutex<Option<String>>>;

#[derive(Default)]
pub struct NodeConfig {
    pub manager: manager::Config,
    pub limits: Option<connection_limits::ConnectionLimits>,
    pub keypair: Option<Keypair>,
    pub extra_listeners: usize,
    /// The swarm's idle connection timeout (default: 60 s).
    pub idle_timeout: Option<Duration>,
    /// The interval of the sibling `ping::Behaviour` (default: ping's own).
    pub sibling_ping_interval: Option<Duration>,
    /// The IP address to listen on, IPv4 or IPv6 (default 127.0.0.1).
    pub listen_ip: Option<&'static str>,
    /// The TCP port to listen on (default: any free port).
    pub listen_port: Option<u16>,
    /// A peer store for the manager, handed changes every 50 ms.
    pub store: Option<Box<dyn manager::store::PeerStore>>,
    /// The transports to run and listen on (default: TCP with noise, as [`Transports::TCP`]
    /// but through the swarm builder's own TCP).
    pub transports: Option<Transports>,
}

/// How a node secures TCP and WebSocket connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Noise,
    Tls,
}

/// The transports a node runs and listens on, each on `listen_ip`. Every one multiplexes with
/// yamux except QUIC, which multiplexes itself and always runs TLS 1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// TCP with this security (`/tcp`).
    pub tcp: Option<Security>,
    /// QUIC (`/udp/.../quic-v1`).
    pub quic: bool,
    /// WebSocket over TCP with this security (`/tcp/.../ws`).
    pub websocket: Option<Security>,
}

impl Transports {
    pub const TCP: Transports = Transports {
        tcp: Some(Security::Noise),
        quic: false,
        websocket: None,
    };
    pub const TCP_TLS: Transports = Transports {
        tcp: Some(Security::Tls),
        quic: false,
        websocket: None,
    };
    pub const QUIC: Transports = Transports {
        tcp: None,
        quic: true,
        websocket: None,
    };
    /// TCP (noise) and QUIC side by side, as most production rust-libp2p nodes run.
    pub const TCP_AND_QUIC: Transports = Transports {
        tcp: Some(Security::Noise),
        quic: true,
        websocket: None,
    };
    pub const WEBSOCKET: Transports = Transports {
        tcp: None,
        quic: false,
        websocket: Some(Security::Noise),
    };

    /// One listen address per transport on `ip`, TCP ones on `tcp_port`.
    fn listen_addrs(&self, ip: &str, tcp_port: u16) -> Vec<Multiaddr> {
        let family = if ip.contains(':') { "ip6" } else { "ip4" };
        let mut addrs = Vec::new();
        if self.tcp.is_some() {
            addrs.push(format!("/{family}/{ip}/tcp/{tcp_port}"));
        }
        if self.quic {
            addrs.push(format!("/{family}/{ip}/udp/0/quic-v1"));
        }
        if self.websocket.is_some() {
            addrs.push(format!("/{family}/{ip}/tcp/0/ws"));
        }
        addrs
            .into_iter()
            .map(|a| a.parse().expect("a listen address"))
            .collect()
    }

    /// The transports, or-ed together in the order TCP, QUIC, WebSocket (each refuses the
    /// others' addresses, so the order decides nothing).
    fn build(&self, key: &Keypair) -> Boxed<(PeerId, StreamMuxerBox)> {
        let mut all: Vec<Boxed<(PeerId, StreamMuxerBox)>> = Vec::new();
        let tcp_config = || tcp::Config::default().nodelay(true);
        if let Some(security) = self.tcp {
            all.push(secured(
                tcp::tokio::Transport::new(tcp_config()),
                security,
                key,
            ));
        }
        if self.quic {
            all.push(
                quic::tokio::Transport::new(quic::Config::new(key))
                    .map(|(peer, connection), _| (peer, StreamMuxerBox::new(connection)))
                    .boxed(),
            );
        }
        if let Some(security) = self.websocket {
            all.push(secured(
                websocket::Config::new(tcp::tokio::Transport::new(tcp_config())),
                security,
                key,
            ));
        }
        all.into_iter()
            .reduce(|a, b| {
                a.or_transport(b)
                    .map(|either, _| either.into_inner())
                    .boxed()
            })
            .expect("at least one transport")
    }
}

/// A stream transport upgraded with `security` and yamux.
fn secured<T>(transport: T, security: Security, key: &Keypair) -> Boxed<(PeerId, StreamMuxerBox)>
where
    T: Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    let upgraded = transport.upgrade(Version::V1);
    match security {
        Security::Noise => upgraded
            .authenticate(noise::Config::new(key).expect("noise config"))
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
        Security::Tls => upgraded
            .authenticate(tls::Config::new(key).expect("tls config"))
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    }
}

/// The two ends of one connection, seen from its two sides: one dialed the address the other
/// listens on. Trailing `/p2p/..` aside.
pub fn same_connection(a: &ConnectedPoint, b: &ConnectedPoint) -> bool {
    let strip = |addr: &Multiaddr| -> Multiaddr {
        addr.iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect()
    };
    match (a, b) {
        (ConnectedPoint::Dialer { address, .. }, ConnectedPoint::Listener { local_addr, .. })
        | (ConnectedPoint::Listener { local_addr, .. }, ConnectedPoint::Dialer { address, .. }) => {
            strip(address) == strip(local_addr)
        }
        _ => false,
    }
}

/// The transport of a connection's address, for messages and tallies: `quic`, `ws` or `tcp`.
pub fn transport_of(endpoint: &ConnectedPoint) -> &'static str {
    let addr = match endpoint {
        ConnectedPoint::Dialer { address, .. } => address,
        ConnectedPoint::Listener { local_addr, .. } => local_addr,
    };
    if addr.iter().any(|p| matches!(p, Protocol::QuicV1)) {
        "quic"
    } else if addr.iter().any(|p| matches!(p, Protocol::Ws(_))) {
        "ws"
    } else {
        "tcp"
    }
}

impl Node {
    pub async fn spawn(config: NodeConfig) -> Node {
        Self::spawn_with_listeners(config).await.0
    }

    /// Spawns a node and returns it with all its listen addresses.
    pub async fn spawn_with_listeners(config: NodeConfig) -> (Node, Vec<Multiaddr>) {
        let keypair = config.keypair.unwrap_or_else(Keypair::generate_ed25519);
        let manager_config = config.manager;
        let limits = config.limits;
        let store = config.store;
        let behaviour = |key: &Keypair| TestBehaviour {
            manager: with_store(
                manager::Behaviour::new(key.public().to_peer_id(), manager_config),
                store,
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                "/test/1.0.0".into(),
                key.public(),
            )),
            ping: ping::Behaviour::new(
                config
                    .sibling_ping_interval
                    .map_or_else(ping::Config::new, |i| ping::Config::new().with_interval(i)),
            ),
            limits: Toggle::from(limits.map(connection_limits::Behaviour::new)),
        };
        let swarm_config = |c: libp2p::swarm::Config| {
            c.with_idle_connection_timeout(config.idle_timeout.unwrap_or(Duration::from_secs(60)))
        };
        let builder = libp2p::SwarmBuilder::with_existing_identity(keypair).with_tokio();
        let mut swarm = match config.transports {
            None => builder
                .with_tcp(
                    tcp::Config::default().nodelay(true),
                    noise::Config::new,
                    yamux::Config::default,
                )
                .expect("tcp transport")
                .with_behaviour(behaviour)
                .expect("behaviour")
                .with_swarm_config(swarm_config)
                .build(),
            Some(transports) => builder
                .with_other_transport(|key| transports.build(key))
                .expect("transports")
                .with_behaviour(behaviour)
                .expect("behaviour")
                .with_swarm_config(swarm_config)
                .build(),
        };
        let peer = *swarm.local_peer_id();
        let mut addrs = Vec::new();
        // Events of the manager from the very start (a bootstrap begins at once).
        let mut events = Vec::new();
        let ip = config.listen_ip.unwrap_or("127.0.0.1");
        let transports = config.transports.unwrap_or(Transports::TCP);
        for _ in 0..=config.extra_listeners {
            for listen in transports.listen_addrs(ip, config.listen_port.unwrap_or(0)) {
                swarm.listen_on(listen).expect("listen");
                let addr = loop {
                    match swarm.select_next_some().await {
                        SwarmEvent::NewListenAddr { address, .. } => break address,
                        SwarmEvent::Behaviour(TestBehaviourEvent::Manager(event)) => {
                            events.push(event)
                        }
                        _ => {}
                    }
                };
                addrs.push(addr);
            }
        }
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(Snapshot::default());
        let failure = Failure::default();
        let task = tokio::spawn({
            let failure = failure.clone();
            async move {
                let (mut command_rx, state_tx) = (command_rx, state_tx);
                let tally = Tally {
                    events,
                    ..Tally::default()
                };
                let run = run_node(&mut swarm, &mut command_rx, &state_tx, tally);
                // A panic is kept for the test to fail with, before the channels drop: whoever
                // sees them closed finds the message.
                if let Err(panic) = AssertUnwindSafe(run).catch_unwind().await {
                    *failure.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(panic_message(panic.as_ref()));
                }
            }
        });
        let node = Node {
            peer,
            addr: addrs[0].clone(),
            addrs: addrs.clone(),
            commands,
            state,
            task,
            failure,
        };
        (node, addrs)
    }

    /// The message of the panic that ended the node's task, if one did.
    pub fn panicked(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fails the test with the panic of the node's task, if it panicked.
    pub fn check(&self) {
        if let Some(message) = self.panicked() {
            panic!("node {} panicked: {message}", self.peer);
        }
    }

    pub fn send(&self, command: Command) {
        self.check();
        if self.commands.send(command).is_err() {
            self.check();
            panic!("node {}: its task ended", self.peer);
        }
    }

    /// `Swarm::dial` of another node, with its peer id, default options.
    pub fn swarm_dial(&self, other: &Node) {
        self.send(Command::SwarmDial(other.p2p_addr().into()));
    }

    pub fn p2p_addr(&self) -> Multiaddr {
        self.addr
            .clone()
            .with(libp2p::multiaddr::Protocol::P2p(self.peer))
    }

    pub fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    /// Stops the node (drops its swarm: connections die without goodbye). Fails the test if
    /// the node's task had panicked.
    pub fn kill(self) {
        self.check();
        self.task.abort();
    }

    /// Stops the node like [`kill`](Self::kill) and waits until its swarm is dropped (its
    /// peer store written and released).
    pub async fn stop(mut self) {
        self.check();
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Runs `f` on the node's swarm and returns what it returns (within 10 s).
    pub async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Swarm<TestBehaviour>) -> T + Send + 'static,
    ) -> T {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Command::With(Box::new(move |swarm| {
            let _ = tx.send(f(swarm));
        })));
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(value)) => value,
            Ok(Err(_)) => {
                self.check();
                panic!("node {}: its task ended", self.peer)
            }
            Err(_) => panic!("node {} did not answer within 10 s", self.peer),
        }
    }

    /// A snapshot taken after this call: the node runs a command that does nothing, and
    /// reports its state after it. `None` if the node does not answer by `until` (frozen).
    pub async fn fresh_snapshot(&mut self, until: tokio::time::Instant) -> Option<Snapshot> {
        self.state.borrow_and_update();
        self.send(Command::With(Box::new(|_| {})));
        match tokio::time::timeout_at(until, self.state.changed()).await {
            Ok(Ok(())) => Some(self.snapshot()),
            Ok(Err(_)) => {
                self.check();
                panic!("node {}: its task ended", self.peer)
            }
            Err(_) => None,
        }
    }
}

/// A node whose task panicked fails the test when it is dropped, if nothing reported the panic
/// before (a test that never waits on that node again still fails).
impl Drop for Node {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.check();
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".to_string())
}

/// What the node's task counts from the swarm's events.
#[derive(Default)]
struct Tally {
    events: Vec<manager::Event>,
    pings: usize,
    dials: usize,
    incoming: usize,
    /// Per peer, its established connections according to the swarm's events.
    connections: HashMap<PeerId, usize>,
    max_manager_pending: usize,
    max_established: u32,
    /// The swarm's endpoint of each established connection.
    endpoints: HashMap<ConnectionId, ConnectedPoint>,
}

/// The node's task: commands and swarm events, a snapshot after each.
async fn run_node(
    swarm: &mut Swarm<TestBehaviour>,
    command_rx: &mut mpsc::UnboundedReceiver<Command>,
    state_tx: &watch::Sender<Snapshot>,
    mut tally: Tally,
) {
    loop {
        tokio::select! {
            command = command_rx.recv() => match command {
                Some(Command::Freeze) => {
                    let _keep_alive = &swarm;
                    std::future::pending::<()>().await;
                }
                Some(Command::SwarmDial(opts)) => {
                    if swarm.dial(opts).is_ok() {
                        tally.dials += 1;
                    }
                }
                Some(command) => run_command(swarm, command),
                None => return,
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(TestBehaviourEvent::Manager(event)) => tally.events.push(event),
                SwarmEvent::Behaviour(TestBehaviourEvent::Ping(ping::Event {
                    result: Ok(_), ..
                })) => tally.pings += 1,
                SwarmEvent::Dialing { .. } => tally.dials += 1,
                SwarmEvent::IncomingConnection { .. } => tally.incoming += 1,
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, endpoint, .. } => {
                    *tally.connections.entry(peer_id).or_default() += 1;
                    tally.endpoints.insert(connection_id, endpoint);
                }
                SwarmEvent::ConnectionClosed { peer_id, connection_id, .. } => {
                    tally.endpoints.remove(&connection_id);
                    if let Some(n) = tally.connections.get_mut(&peer_id) {
                        *n -= 1;
                        if *n == 0 {
                            tally.connections.remove(&peer_id);
                        }
                    }
                }
                _ => {}
            },
        }
        let state = snapshot(swarm, &mut tally);
        let _ = state_tx.send(state);
    }
}

fn with_store(
    behaviour: manager::Behaviour,
    store: Option<Box<dyn manager::store::PeerStore>>,
) -> manager::Behaviour {
    let Some(store) = store else {
        return behaviour;
    };
    let config = manager::store::StoreConfig {
        flush_interval: Duration::from_millis(50),
        ..Default::default()
    };
    behaviour
        .with_store_config(store, config)
        .expect("the store loads")
}

fn run_command(swarm: &mut Swarm<TestBehaviour>, command: Command) {
    match command {
        Command::SwarmDial(_) => unreachable!("handled by the node task"),
        Command::ManagerDial(peer, addr) => {
            let _ = swarm.behaviour_mut().manager.add_peer(peer, vec![addr]);
        }
        Command::Disconnect(peer) => {
            swarm.behaviour_mut().manager.remove_peer(peer);
        }
        Command::Shutdown => swarm.behaviour_mut().manager.shutdown(),
        Command::BanPeer(peer, duration) => swarm.behaviour_mut().manager.ban_peer(peer, duration),
        Command::BanNetwork(network, duration) => {
            swarm.behaviour_mut().manager.ban_network(network, duration)
        }
        Command::AllowPeer(peer) => swarm.behaviour_mut().manager.exempt_peer(peer),
        Command::Protect(peer, true) => swarm.behaviour_mut().manager.protect(peer, "test"),
        Command::Protect(peer, false) => {
            swarm.behaviour_mut().manager.unprotect(&peer, "test");
        }
        Command::Unban(target) => {
            match target {
                BanTarget::Peer(peer) => swarm.behaviour_mut().manager.unban_peer(peer),
                BanTarget::Network(network) => swarm.behaviour_mut().manager.unban_network(network),
            };
        }
        Command::Freeze => unreachable!("handled by the node task"),
        Command::With(f) => f(swarm),
    }
}

fn snapshot(swarm: &Swarm<TestBehaviour>, tally: &mut Tally) -> Snapshot {
    let info = swarm.network_info();
    let counters = info.connection_counters();
    let manager = &swarm.behaviour().manager;
    let mut connections: Vec<(PeerId, usize)> =
        tally.connections.iter().map(|(p, n)| (*p, *n)).collect();
    connections.sort();
    let mut manager_connections: Vec<(PeerId, usize)> = manager
        .connected_peers()
        .map(|p| (*p, manager.peer_info(p).map_or(0, |i| i.connections.len())))
        .collect();
    manager_connections.sort();
    let closing = manager
        .connected_peers()
        .filter_map(|p| manager.peer_info(p))
        .flat_map(|i| i.connections)
        .filter(|c| c.closing.is_some())
        .count();
    let initiators = manager_connections
        .iter()
        .filter_map(|(p, _)| {
            let info = manager.peer_info(p)?;
            let open = info
                .connections
                .iter()
                .filter(|c| c.closing.is_none())
                .map(|c| c.initiator)
                .collect();
            Some((*p, open))
        })
        .collect();
    let kept_endpoints = manager_connections
        .iter()
        .filter_map(|(p, _)| {
            let info = manager.peer_info(p)?;
            let open = info
                .connections
                .iter()
                .filter(|c| c.closing.is_none())
                .filter_map(|c| tally.endpoints.get(&c.id).cloned())
                .collect();
            Some((*p, open))
        })
        .collect();
    let established = counters.num_established();
    tally.max_manager_pending = tally
        .max_manager_pending
        .max(manager.stats().pending_connections);
    tally.max_established = tally.max_established.max(established);
    Snapshot {
        pings: tally.pings,
        initiators,
        kept_endpoints,
        established,
        pending: counters.num_pending(),
        connections,
        manager_connections,
        manager_established: manager.stats().established_connections,
        manager_tracked: manager.stats().tracked_peers,
        manager_pending: manager.stats().pending_connections,
        manager_queued: manager.stats().queued_actions,
        max_manager_pending: tally.max_manager_pending,
        max_established: tally.max_established,
        tracked_ips: manager.stats().tracked_ips,
        events: tally.events.clone(),
        phase: Some(manager.phase()),
        closing,
        dials: tally.dials,
        incoming: tally.incoming,
        next_timer: manager.stats().next_deadline,
        timers: manager.stats().scheduled_timers,
    }
}

/// Waits until `condition` holds over the snapshots of `nodes`, or fails after `deadline`
/// with the last snapshots. A node whose task panicked fails the test with its panic at once.
///
/// This looks at one instant: to assert a final state, use [`settled`].
pub async fn wait_until(
    nodes: &mut [&mut Node],
    deadline: Duration,
    condition: impl FnMut(&[Snapshot]) -> bool,
) -> Result<Vec<Snapshot>, Vec<Snapshot>> {
    wait_until_at(nodes, tokio::time::Instant::now() + deadline, condition).await
}

async fn wait_until_at(
    nodes: &mut [&mut Node],
    until: tokio::time::Instant,
    mut condition: impl FnMut(&[Snapshot]) -> bool,
) -> Result<Vec<Snapshot>, Vec<Snapshot>> {
    loop {
        for node in nodes.iter() {
            node.check();
        }
        let snapshots: Vec<Snapshot> = nodes.iter().map(|n| n.snapshot()).collect();
        if condition(&snapshots) {
            return Ok(snapshots);
        }
        let changes = nodes
            .iter_mut()
            .map(|n| Box::pin(n.state.changed()))
            .collect::<Vec<_>>();
        let (changed, index) =
            match tokio::time::timeout_at(until, futures::future::select_all(changes)).await {
                Ok((changed, index, _)) => (changed, index),
                Err(_) => return Err(snapshots),
            };
        if changed.is_err() {
            // The node's task ended: with a panic, the test fails with it.
            nodes[index].check();
            panic!("node {}: its task ended", nodes[index].peer);
        }
    }
}

/// How long [`settled`] requires every count to stay the same.
///
/// Longer than a round trip on loopback by orders of magnitude, so that what one node sends
/// (a goodbye, a dial) shows at the other within it; what a manager has scheduled is not left
/// to the hold: no timer of any manager may be due within it.
pub const HOLD: Duration = Duration::from_secs(1);

/// Waits until the network of `nodes` has settled with `condition` holding, or fails after
/// `deadline` with the last snapshots. Settled: every node quiet ([`Snapshot::is_quiet`]), no
/// timer of any node's manager due within [`HOLD`] (a redial, a trim, the close of a draining
/// duplicate, a goodbye deadline), and then every count of every node (connections per peer
/// on the swarm and in the manager, pending, closing, tracked peers, dials, inbound
/// connections, the manager's events) the same over the whole of [`HOLD`]. Returns snapshots
/// taken at the end of the hold.
pub async fn settled(
    nodes: &mut [&mut Node],
    deadline: Duration,
    condition: impl FnMut(&[Snapshot]) -> bool,
) -> Result<Vec<Snapshot>, Vec<Snapshot>> {
    settled_for(nodes, deadline, HOLD, condition).await
}

/// [`settled`] with a hold of `hold`.
pub async fn settled_for(
    nodes: &mut [&mut Node],
    deadline: Duration,
    hold: Duration,
    mut condition: impl FnMut(&[Snapshot]) -> bool,
) -> Result<Vec<Snapshot>, Vec<Snapshot>> {
    /// Past a timer's deadline before looking again, for the node to have run it.
    const TIMER_SLACK: Duration = Duration::from_millis(20);
    let until = tokio::time::Instant::now() + deadline;
    let ready = |s: &[Snapshot]| s.iter().all(Snapshot::is_quiet);
    let counts = |s: &[Snapshot]| s.iter().map(Snapshot::counts).collect::<Vec<_>>();
    let mut why = "the condition never held with every node quiet".to_string();
    let unsettled = |why: &str, snapshots: Vec<Snapshot>| {
        println!("not settled within {deadline:?}: {why}");
        Err(snapshots)
    };
    loop {
        let last = match wait_until_at(nodes, until, |s| ready(s) && condition(s)).await {
            Ok(last) => last,
            Err(last) => return unsettled(&why, last),
        };
        let Some(start) = fresh_snapshots(nodes, until).await else {
            return unsettled("a node did not answer", last);
        };
        if !(ready(&start) && condition(&start)) {
            why = "the condition or quiet did not hold on a fresh look".to_string();
            continue;
        }
        let now = std::time::Instant::now();
        let hold_end = now + hold;
        let due = start
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.next_timer?, i)))
            .filter(|(at, _)| *at <= hold_end)
            .min();
        if let Some((at, node)) = due {
            // A timer runs within the hold: let it run, then look again.
            why = format!(
                "node {node}'s manager had a timer due in {:?} (within the hold of {hold:?})",
                at.saturating_duration_since(now)
            );
            let wake = (at + TIMER_SLACK).max(now + TIMER_SLACK);
            let wake = tokio::time::Instant::from_std(wake).min(until);
            let before = counts(&start);
            let _ = wait_until_at(nodes, wake, |s| counts(s) != before).await;
            if tokio::time::Instant::now() >= until {
                return unsettled(&why, nodes.iter().map(|n| n.snapshot()).collect());
            }
            continue;
        }
        let before = counts(&start);
        let hold_until = tokio::time::Instant::from_std(hold_end);
        if hold_until > until {
            return unsettled(&why, start);
        }
        if let Ok(changed) = wait_until_at(nodes, hold_until, |s| counts(s) != before).await {
            let node = counts(&changed)
                .iter()
                .zip(&before)
                .position(|(a, b)| a != b)
                .unwrap_or_default();
            why = format!("node {node}'s counts changed during the hold");
            continue;
        }
        let Some(end) = fresh_snapshots(nodes, until).await else {
            return unsettled("a node did not answer", start);
        };
        if counts(&end) == before && ready(&end) && condition(&end) {
            return Ok(end);
        }
        why = "the counts at the end of the hold differed".to_string();
    }
}

/// A fresh snapshot of every node (see [`Node::fresh_snapshot`]).
async fn fresh_snapshots(
    nodes: &mut [&mut Node],
    until: tokio::time::Instant,
) -> Option<Vec<Snapshot>> {
    let mut snapshots = Vec::with_capacity(nodes.len());
    for node in nodes.iter_mut() {
        snapshots.push(node.fresh_snapshot(until).await?);
    }
    Some(snapshots)
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Two keypairs, the one with the smaller peer id first.
pub fn ordered_keypairs() -> (Keypair, Keypair) {
    let a = Keypair::generate_ed25519();
    let b = Keypair::generate_ed25519();
    if a.public().to_peer_id() < b.public().to_peer_id() {
        (a, b)
    } else {
        (b, a)
    }
}
