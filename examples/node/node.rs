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

use serde_json::json;

use crate::{
    admin::{self, AdminRequest},
    commands::{dial_address, next_command, read_stdin_commands, run_stdin_line, NodeCommand},
    config::{ConfigError, NodeConfig},
    key::load_or_create_key,
    output,
    signals::ShutdownSignals,
    snapshot,
    state::NodeState,
    status::status_table,
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

/// Runs the node configured by `config` until Ctrl-C or SIGTERM.
pub async fn run_long_lived_node(config: NodeConfig, stdin_commands: bool) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install().context("cannot listen for Ctrl-C/SIGTERM")?;
    config.check()?;
    let key = match &config.node.key_file {
        Some(path) => load_or_create_key(path)?,
        None => Keypair::generate_ed25519(),
    };
    let manager_config = config.manager_config()?;
    let telemetry = Telemetry::new();
    let manager = manager::Behaviour::try_new(key.public().to_peer_id(), manager_config.clone())
        .map_err(ConfigError::from)?;
    let manager = telemetry.attach(manager);
    let store = &config.store;
    let manager = match &store.path {
        Some(path) => with_store(manager, path, store.fresh, store.flush_ms)?,
        None => manager,
    };
    let swarm = build_swarm_with(key, manager, config.node.security).await?;
    let mut node = Node {
        swarm,
        state: NodeState::default(),
        telemetry,
        listen_addresses: Vec::new(),
        started: std::time::Instant::now(),
    };
    let local = *node.swarm.local_peer_id();
    output::line(
        "peer_id",
        &format!("peer id: {local}"),
        json!({ "peer_id": local.to_string() }),
    );
    print_config(&config, &manager_config);
    for (target, duration) in config.start_bans()? {
        // Parsed and checked above: applying cannot fail.
        let _ = NodeCommand::Ban(target, duration).apply(&mut node.swarm, &mut node.state);
    }
    let mut admin_requests = match config.node.admin {
        Some(address) => Some(start_admin(address, config.node.admin_allow_remote).await?),
        None => None,
    };
    for address in &config.node.listen {
        node.swarm
            .listen_on(address.clone())
            .with_context(|| format!("cannot listen on {address}"))?;
    }
    for address in &config.node.external_addresses {
        node.swarm.add_external_address(address.clone());
    }
    for address in &config.peers.dial {
        match dial_address(&mut node.swarm, &mut node.state, address.clone()) {
            Ok(message) => output::say("dial", &message),
            Err(error) => output::say("dial", &format!("not dialing {address}: {error}")),
        }
    }

    let mut status = status_timer(config.node.status_interval_secs.unwrap_or(10));
    let mut health = tokio::time::interval(HEALTH_SAMPLING);
    let mut commands = stdin_commands.then(read_stdin_commands);
    let signal = loop {
        tokio::select! {
            signal = signals.recv() => break signal,
            line = next_command(&mut commands) => {
                run_stdin_line(&mut node.swarm, &mut node.state, &line);
            }
            event = node.swarm.select_next_some() => node.handle_event(event),
            () = tick(&mut status) => node.print_status(),
            _ = health.tick() => node.state.sample_health(&node.swarm.behaviour().manager),
            request = next_request(&mut admin_requests) => node.answer(request),
        }
    };
    node.shut_down(signal).await;
    Ok(())
}

/// The effective configuration: what was set (TOML, as `--config` reads it) and the manager's
/// with every default filled in.
fn print_config(config: &NodeConfig, manager_config: &manager::Config) {
    if output::is_json() {
        output::line(
            "config",
            "effective configuration",
            json!({ "node": config, "manager": format!("{manager_config:?}") }),
        );
        return;
    }
    println!("config (as a --config file; unset values are the library's defaults):");
    for line in config.to_toml().lines().filter(|l| !l.is_empty()) {
        println!("  {line}");
    }
    println!("effective manager config: {manager_config:?}");
}

/// Starts the admin API on `address` and says where.
async fn start_admin(
    address: std::net::SocketAddr,
    allow_remote: bool,
) -> anyhow::Result<mpsc::Receiver<AdminRequest>> {
    let (bound, requests) = admin::start(address, allow_remote).await?;
    if !bound.ip().is_loopback() {
        let remote = if allow_remote {
            "; it takes commands from anyone who reaches it"
        } else {
            ""
        };
        let text =
            format!("warning: the admin API listens on {bound}, not a loopback address{remote}");
        output::say("warning", &text);
    }
    let url = format!("http://{bound}/");
    output::line(
        "admin",
        &format!("admin API on {url}"),
        json!({ "url": url }),
    );
    if cfg!(feature = "metrics") {
        let url = format!("http://{bound}/metrics");
        output::line(
            "metrics",
            &format!("metrics on {url}"),
            json!({ "url": url }),
        );
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
                let _ = reply.send(self.snapshot());
            }
            AdminRequest::Command(command, reply) => {
                let description = format!("{command:?}");
                let result = command.apply(&mut self.swarm, &mut self.state);
                match &result {
                    Ok(message) => output::say("admin", &format!("admin: {}", message.trim_end())),
                    Err(error) => {
                        output::say("admin", &format!("admin: refused {description}: {error}"));
                    }
                }
                let _ = reply.send(result);
            }
            AdminRequest::Metrics(reply) => {
                let _ = reply.send(self.telemetry.encode());
            }
        }
    }

    fn handle_event(&mut self, event: SwarmEvent<NodeBehaviourEvent>) {
        let local = *self.swarm.local_peer_id();
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.clone().with(Protocol::P2p(local));
                output::line(
                    "listening",
                    &format!("listening on {full}"),
                    json!({ "address": full.to_string() }),
                );
                self.listen_addresses.push(address);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                output::say("listening", &format!("no longer listening on {address}"));
                self.listen_addresses.retain(|a| *a != address);
            }
            SwarmEvent::ListenerError { error, .. } => {
                output::say("listener", &format!("listener error: {error}"));
            }
            SwarmEvent::Behaviour(NodeBehaviourEvent::Manager(event)) => {
                self.telemetry.record(&event);
                let record = self.state.record(&local, &event);
                if output::is_json() {
                    output::line("event", &record.text, json!(record));
                } else {
                    println!("manager: {}", record.text);
                }
                if let manager::Event::HealthChanged { peer, .. } = &event {
                    let behaviour = &self.swarm.behaviour().manager;
                    self.state.sample_peer_health(behaviour, *peer);
                }
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

    /// The status table, or with `--json` the status and peers of the admin API.
    fn print_status(&self) {
        if output::is_json() {
            let snapshot = self.snapshot();
            output::line(
                "status",
                "status",
                json!({ "status": snapshot.status, "peers": snapshot.peers }),
            );
        } else {
            print!("{}", status_table(&self.swarm));
        }
    }

    fn snapshot(&self) -> snapshot::Snapshot {
        let context = snapshot::Context {
            state: &self.state,
            listen_addresses: &self.listen_addresses,
            started: self.started,
        };
        snapshot::take(&self.swarm, &context)
    }

    /// Says goodbye to every peer and polls the swarm until its connections are closed or
    /// [`SHUTDOWN_DRAIN`] passed.
    async fn shut_down(&mut self, signal: &str) {
        let peers = self.swarm.network_info().num_peers();
        let text = format!("{signal}: shutting down, saying goodbye to {peers} peer(s)");
        output::say("shutdown", &text);
        self.swarm.behaviour_mut().manager.shutdown();
        match timeout(SHUTDOWN_DRAIN, self.drain_connections()).await {
            Ok(()) => output::say("shutdown", "shut down: all connections closed"),
            Err(_) => {
                let open = self
                    .swarm
                    .network_info()
                    .connection_counters()
                    .num_established();
                let text = format!(
                    "shut down: {open} connection(s) still open after {SHUTDOWN_DRAIN:?}, \
                     exiting anyway"
                );
                output::say("shutdown", &text);
            }
        }
        if let Err(error) = self.swarm.behaviour_mut().manager.flush_store() {
            output::say(
                "store",
                &format!("peer store: last changes not written: {error}"),
            );
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
