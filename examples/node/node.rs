//! The long-lived node: its swarm loop, events, and shutdown.

use std::time::Duration;

use anyhow::Context as _;
use libp2p::{
    futures::{FutureExt, StreamExt},
    identify,
    identity::Keypair,
    multiaddr::Protocol,
    swarm::SwarmEvent,
    Multiaddr, Swarm,
};
use libp2p_connection_manager as manager;
use tokio::{
    sync::mpsc,
    time::{timeout, Instant},
};

use crate::{
    admin::{self, AdminRequest},
    cli::{node_config, print_settings, NodeArgs},
    commands::{dial_address, next_command, read_stdin_commands, run_stdin_line},
    describe::describe,
    key::load_or_create_key,
    signals::ShutdownSignals,
    snapshot,
    state::NodeState,
    status::print_status,
    store::with_store,
    swarm::{build_swarm_with, NodeBehaviour, NodeBehaviourEvent},
    telemetry::Telemetry,
};

/// How long a long-lived node waits for its connections to close after Ctrl-C or SIGTERM.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);
/// How often the health of each kept connection is sampled for the page.
const HEALTH_SAMPLING: Duration = Duration::from_secs(2);

/// The running node: its swarm and what it keeps beside it.
struct Node {
    swarm: Swarm<NodeBehaviour>,
    state: NodeState,
    telemetry: Telemetry,
    listen_addresses: Vec<Multiaddr>,
    started: std::time::Instant,
}

pub async fn run_long_lived_node(args: NodeArgs) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install().context("cannot listen for Ctrl-C/SIGTERM")?;
    let key = match &args.key_file {
        Some(path) => load_or_create_key(path)?,
        None => Keypair::generate_ed25519(),
    };
    let manager = manager::Behaviour::new(key.public().to_peer_id(), node_config(&args));
    let manager = match &args.store {
        Some(path) => with_store(manager, path, args.fresh_store, args.store_flush_ms)?,
        None => manager,
    };
    let swarm = build_swarm_with(key, manager)?;
    let mut node = Node {
        swarm,
        state: NodeState::default(),
        telemetry: Telemetry::new(),
        listen_addresses: Vec::new(),
        started: std::time::Instant::now(),
    };
    println!("peer id: {}", node.swarm.local_peer_id());
    print_settings(&args);
    for peer in &args.ban {
        node.swarm.behaviour_mut().manager.ban_peer(*peer, None);
    }
    let mut admin_requests = match args.admin {
        Some(address) => Some(start_admin(address, args.admin_allow_remote).await?),
        None => None,
    };
    let listen = match args.listen {
        Some(address) => address,
        None => "/ip4/127.0.0.1/tcp/0"
            .parse()
            .context("default listen address")?,
    };
    node.swarm
        .listen_on(listen.clone())
        .with_context(|| format!("cannot listen on {listen}"))?;
    for address in args.dial {
        match dial_address(&mut node.swarm, &mut node.state, address.clone()) {
            Ok(message) => println!("{message}"),
            Err(error) => println!("not dialing {address}: {error}"),
        }
    }

    let mut status = status_timer(args.status_interval.unwrap_or(10));
    let mut health = tokio::time::interval(HEALTH_SAMPLING);
    let mut commands = args.stdin_commands.then(read_stdin_commands);
    let signal = loop {
        tokio::select! {
            signal = signals.recv() => break signal,
            line = next_command(&mut commands) => {
                run_stdin_line(&mut node.swarm, &mut node.state, &line);
            }
            event = node.swarm.select_next_some() => node.handle_event(event),
            () = tick(&mut status) => print_status(&node.swarm),
            _ = health.tick() => node.state.sample_health(&node.swarm.behaviour().manager),
            request = next_request(&mut admin_requests) => node.answer(request),
        }
    };
    node.shut_down(signal).await;
    Ok(())
}

/// Starts the admin API on `address` and says where.
async fn start_admin(
    address: std::net::SocketAddr,
    allow_remote: bool,
) -> anyhow::Result<mpsc::Receiver<AdminRequest>> {
    let (bound, requests) = admin::start(address, allow_remote).await?;
    if !bound.ip().is_loopback() {
        println!(
            "warning: the admin API listens on {bound}, not a loopback address{}",
            if allow_remote {
                "; it takes commands from anyone who reaches it"
            } else {
                ""
            }
        );
    }
    println!("admin API on http://{bound}/");
    if cfg!(feature = "metrics") {
        println!("metrics on http://{bound}/metrics");
    }
    Ok(requests)
}

/// The next admin request; never resolves without the API.
async fn next_request(requests: &mut Option<mpsc::Receiver<AdminRequest>>) -> AdminRequest {
    if let Some(receiver) = requests {
        if let Some(request) = receiver.recv().await {
            return request;
        }
    }
    *requests = None;
    std::future::pending().await
}

impl Node {
    /// Answers a request of the admin API (the client may have gone: answers are best effort).
    fn answer(&mut self, request: AdminRequest) {
        match request {
            AdminRequest::Snapshot(reply) => {
                let context = snapshot::Context {
                    state: &self.state,
                    listen_addresses: &self.listen_addresses,
                    started: self.started,
                };
                let _ = reply.send(snapshot::take(&self.swarm, &context));
            }
            AdminRequest::Command(command, reply) => {
                let description = format!("{command:?}");
                let result = command.apply(&mut self.swarm, &mut self.state);
                match &result {
                    Ok(message) => println!("admin: {}", message.trim_end()),
                    Err(error) => println!("admin: refused {description}: {error}"),
                }
                let _ = reply.send(result);
            }
            AdminRequest::Metrics(reply) => {
                let _ = reply.send(self.telemetry.encode(&self.swarm.behaviour().manager));
            }
        }
    }

    fn handle_event(&mut self, event: SwarmEvent<NodeBehaviourEvent>) {
        let local = *self.swarm.local_peer_id();
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                println!(
                    "listening on {}",
                    address.clone().with(Protocol::P2p(local))
                );
                self.listen_addresses.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                println!("no longer listening on {address}");
                self.listen_addresses.retain(|a| *a != address);
            }
            SwarmEvent::ListenerError { error, .. } => println!("listener error: {error}"),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Manager(event)) => {
                self.telemetry.record(&event);
                self.state.record(&local, &event);
                if let manager::Event::HealthChanged { peer, .. } = &event {
                    let behaviour = &self.swarm.behaviour().manager;
                    self.state.sample_peer_health(behaviour, *peer);
                }
                println!("manager: {}", describe(&event));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                tracing::debug!(%peer_id, %connection_id,
                    address = %endpoint.get_remote_address(), "connection established");
                self.state.connection_established(connection_id, endpoint);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                num_established,
                ..
            } => {
                tracing::debug!(%peer_id, %connection_id, ?cause, "connection closed");
                self.state
                    .connection_closed(peer_id, connection_id, num_established);
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => tracing::debug!(%send_back_addr, %error, "incoming connection failed"),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => tracing::debug!(%peer_id, agent = %info.agent_version, "identified"),
            _ => {}
        }
    }

    /// Says goodbye to every peer and polls the swarm until its connections are closed or
    /// [`SHUTDOWN_DRAIN`] passed.
    async fn shut_down(&mut self, signal: &str) {
        let peers = self.swarm.network_info().num_peers();
        println!("{signal}: shutting down, saying goodbye to {peers} peer(s)");
        self.swarm.behaviour_mut().manager.shutdown();
        match timeout(SHUTDOWN_DRAIN, self.drain_connections()).await {
            Ok(()) => println!("shut down: all connections closed"),
            Err(_) => {
                println!(
            "shut down: {} connection(s) still open after {SHUTDOWN_DRAIN:?}, exiting anyway",
            self.swarm.network_info().connection_counters().num_established()
        )
            }
        }
        if let Err(error) = self.swarm.behaviour_mut().manager.flush_store() {
            println!("peer store: last changes not written: {error}");
        }
    }

    /// Polls the swarm until it has no connection left, then handles the events already due (the
    /// manager reports the last `Disconnected` just after the swarm closed the connection).
    async fn drain_connections(&mut self) {
        while self.swarm.network_info().num_peers() > 0 {
            let event = self.swarm.select_next_some().await;
            self.handle_event(event);
        }
        while let Some(event) = self.swarm.next().now_or_never().flatten() {
            self.handle_event(event);
        }
    }
}

/// The status timer; `None` when disabled (0 seconds).
pub fn status_timer(seconds: u64) -> Option<tokio::time::Interval> {
    let period = Duration::from_secs(seconds);
    (seconds > 0).then(|| {
        let mut timer = tokio::time::interval_at(Instant::now() + period, period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    })
}

pub async fn tick(timer: &mut Option<tokio::time::Interval>) {
    match timer {
        Some(timer) => {
            timer.tick().await;
        }
        None => std::future::pending().await,
    }
}
