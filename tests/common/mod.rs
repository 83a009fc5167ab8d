//! A test node on real TCP (127.0.0.1, noise, yamux), run in its own tokio task, with the
//! manager composed first beside identify, ping and (optionally) connection_limits.
//!
//! Tests talk to a node through commands and wait on its snapshots, each with a deadline.

#![allow(dead_code)]

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    connection_limits, identify, identity::Keypair, noise, ping, swarm::behaviour::toggle::Toggle,
    swarm::dial_opts::DialOpts, swarm::NetworkBehaviour, swarm::SwarmEvent, tcp, yamux, Multiaddr,
    PeerId, Swarm,
};
use libp2p_connection_manager as manager;
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
    /// Per connected peer: its established connections according to the swarm.
    pub connections: Vec<(PeerId, usize)>,
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
}

impl Snapshot {
    pub fn connections_to(&self, peer: &PeerId) -> usize {
        self.connections
            .iter()
            .find(|(p, _)| p == peer)
            .map_or(0, |(_, n)| *n)
    }

    /// Nothing in flight: no handshake, no goodbye, no event not yet reported.
    pub fn is_quiet(&self) -> bool {
        self.pending == 0
            && self.closing == 0
            && self.manager_pending == 0
            && self.manager_queued == 0
    }
}

pub struct Node {
    pub peer: PeerId,
    pub addr: Multiaddr,
    commands: mpsc::UnboundedSender<Command>,
    pub state: watch::Receiver<Snapshot>,
    task: tokio::task::JoinHandle<()>,
}

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
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(|key| TestBehaviour {
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
            })
            .expect("behaviour")
            .with_swarm_config(|c| {
                c.with_idle_connection_timeout(
                    config.idle_timeout.unwrap_or(Duration::from_secs(60)),
                )
            })
            .build();
        let peer = *swarm.local_peer_id();
        let mut addrs = Vec::new();
        // Events of the manager from the very start (a bootstrap begins at once).
        let mut events = Vec::new();
        let ip = config.listen_ip.unwrap_or("127.0.0.1");
        for _ in 0..=config.extra_listeners {
            swarm
                .listen_on(
                    format!(
                        "/{}/{ip}/tcp/{}",
                        if ip.contains(':') { "ip6" } else { "ip4" },
                        config.listen_port.unwrap_or(0)
                    )
                    .parse()
                    .unwrap(),
                )
                .expect("listen");
            let addr = loop {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => break address,
                    SwarmEvent::Behaviour(TestBehaviourEvent::Manager(event)) => events.push(event),
                    _ => {}
                }
            };
            addrs.push(addr);
        }
        let (commands, mut command_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(Snapshot::default());
        let task = tokio::spawn(async move {
            let mut pings = 0;
            let mut peaks = (0, 0);
            loop {
                tokio::select! {
                    command = command_rx.recv() => match command {
                        Some(Command::Freeze) => {
                            let _keep_alive = &swarm;
                            std::future::pending::<()>().await;
                        }
                        Some(command) => run_command(&mut swarm, command),
                        None => return,
                    },
                    event = swarm.select_next_some() => {
                        match event {
                            SwarmEvent::Behaviour(TestBehaviourEvent::Manager(event)) => {
                                events.push(event)
                            }
                            SwarmEvent::Behaviour(TestBehaviourEvent::Ping(ping::Event {
                                result: Ok(_),
                                ..
                            })) => pings += 1,
                            _ => {}
                        }
                    }
                }
                let mut state = snapshot(&swarm, &events, pings);
                peaks.0 = peaks.0.max(state.manager_pending);
                peaks.1 = peaks.1.max(state.established);
                (state.max_manager_pending, state.max_established) = peaks;
                let _ = state_tx.send(state);
            }
        });
        let node = Node {
            peer,
            addr: addrs[0].clone(),
            commands,
            state,
            task,
        };
        (node, addrs)
    }

    pub fn send(&self, command: Command) {
        self.commands.send(command).expect("node task alive");
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

    /// Stops the node (drops its swarm: connections die without goodbye).
    pub fn kill(self) {
        self.task.abort();
    }

    /// Stops the node like [`kill`](Self::kill) and waits until its swarm is dropped (its
    /// peer store written and released).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
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
        Command::SwarmDial(opts) => {
            let _ = swarm.dial(opts);
        }
        Command::ManagerDial(peer, addr) => {
            let _ = swarm.behaviour_mut().manager.dial(peer, vec![addr]);
        }
        Command::Disconnect(peer) => {
            swarm.behaviour_mut().manager.disconnect(peer);
        }
        Command::Shutdown => swarm.behaviour_mut().manager.shutdown(),
        Command::BanPeer(peer, duration) => swarm.behaviour_mut().manager.ban_peer(peer, duration),
        Command::BanNetwork(network, duration) => {
            swarm.behaviour_mut().manager.ban_network(network, duration)
        }
        Command::AllowPeer(peer) => swarm.behaviour_mut().manager.allow_peer(peer),
        Command::Protect(peer, true) => swarm.behaviour_mut().manager.protect(peer, "test"),
        Command::Protect(peer, false) => {
            swarm.behaviour_mut().manager.unprotect(&peer, "test");
        }
        Command::Unban(target) => {
            swarm.behaviour_mut().manager.unban(target);
        }
        Command::Freeze => unreachable!("handled by the node task"),
        Command::With(f) => f(swarm),
    }
}

fn snapshot(swarm: &Swarm<TestBehaviour>, events: &[manager::Event], pings: usize) -> Snapshot {
    let info = swarm.network_info();
    let counters = info.connection_counters();
    let manager = swarm.behaviour().manager.manager();
    let connections: Vec<(PeerId, usize)> = swarm
        .connected_peers()
        .map(|p| {
            let n = manager.peer_info(p).map_or(0, |i| i.connections.len());
            (*p, n)
        })
        .collect();
    let closing = swarm
        .connected_peers()
        .filter_map(|p| manager.peer_info(p))
        .flat_map(|i| i.connections)
        .filter(|c| c.closing.is_some())
        .count();
    let initiators = swarm
        .connected_peers()
        .filter_map(|p| {
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
    Snapshot {
        pings,
        initiators,
        established: counters.num_established(),
        pending: counters.num_pending(),
        connections,
        manager_established: manager.established_connections(),
        manager_tracked: manager.tracked_peers(),
        manager_pending: manager.pending_connections(),
        manager_queued: manager.queued_actions(),
        max_manager_pending: 0,
        max_established: 0,
        tracked_ips: manager.tracked_ips(),
        events: events.to_vec(),
        phase: Some(manager.phase()),
        closing,
    }
}

/// Waits until `condition` holds over the snapshots of `nodes`, or fails after `deadline`
/// with the last snapshots.
pub async fn wait_until(
    nodes: &mut [&mut Node],
    deadline: Duration,
    mut condition: impl FnMut(&[Snapshot]) -> bool,
) -> Result<Vec<Snapshot>, Vec<Snapshot>> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let snapshots: Vec<Snapshot> = nodes.iter().map(|n| n.snapshot()).collect();
        if condition(&snapshots) {
            return Ok(snapshots);
        }
        let changes = nodes
            .iter_mut()
            .map(|n| Box::pin(n.state.changed()))
            .collect::<Vec<_>>();
        if tokio::time::timeout_at(until, futures::future::select_all(changes))
            .await
            .is_err()
        {
            return Err(snapshots);
        }
    }
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
