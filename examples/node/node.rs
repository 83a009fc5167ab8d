//! The long-lived node: its swarm loop, events, and shutdown.

use std::time::Duration;

use anyhow::Context as _;
use libp2p::{
    futures::{FutureExt, StreamExt},
    identify,
    identity::Keypair,
    multiaddr::Protocol,
    swarm::SwarmEvent,
    Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager as manager;
use tokio::time::{timeout, Instant};

use crate::{
    cli::{node_config, print_settings, NodeArgs},
    commands::{next_command, read_stdin_commands, run_stdin_command},
    describe::describe,
    key::load_or_create_key,
    signals::ShutdownSignals,
    status::print_status,
    store::with_store,
    swarm::{build_swarm_with, NodeBehaviour, NodeBehaviourEvent},
    telemetry::Telemetry,
};

/// How long a long-lived node waits for its connections to close after Ctrl-C or SIGTERM.
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(3);
// ---- Long-lived node ----------------------------------------------------------------------

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
    let mut swarm = build_swarm_with(key, manager)?;
    let local = *swarm.local_peer_id();
    println!("peer id: {local}");
    print_settings(&args);
    for peer in &args.ban {
        swarm.behaviour_mut().manager.ban_peer(*peer, None);
    }
    let mut telemetry = Telemetry::start(args.metrics).await?;
    let listen = match args.listen {
        Some(address) => address,
        None => "/ip4/127.0.0.1/tcp/0"
            .parse()
            .context("default listen address")?,
    };
    swarm
        .listen_on(listen.clone())
        .with_context(|| format!("cannot listen on {listen}"))?;
    for address in args.dial {
        dial_address(&mut swarm, address);
    }

    let mut status = status_timer(args.status_interval.unwrap_or(10));
    let mut commands = args.stdin_commands.then(read_stdin_commands);
    let signal = loop {
        tokio::select! {
            signal = signals.recv() => break signal,
            line = next_command(&mut commands) => run_stdin_command(&mut swarm, &line),
            event = swarm.select_next_some() => handle_node_event(&local, &telemetry, event),
            () = tick(&mut status) => print_status(&swarm),
            scrape = telemetry.next_scrape() => {
                telemetry.answer(scrape, &swarm.behaviour().manager);
            }
        }
    };
    shut_down(&mut swarm, &telemetry, signal).await;
    Ok(())
}
/// Dials through the manager when the address names the peer, with `Swarm::dial` otherwise.
pub fn dial_address(swarm: &mut Swarm<NodeBehaviour>, address: Multiaddr) {
    let mut transport_address = address.clone();
    match transport_address.pop() {
        Some(Protocol::P2p(peer)) => {
            match swarm
                .behaviour_mut()
                .manager
                .dial(peer, vec![transport_address])
            {
                Ok(()) => println!("dialing {address} (kept by the manager)"),
                Err(denial) => println!("not dialing {address}: {denial}"),
            }
        }
        _ => match swarm.dial(address.clone()) {
            Ok(()) => println!("dialing {address} (once, no peer id)"),
            Err(error) => println!("cannot dial {address}: {error}"),
        },
    }
}

pub fn handle_node_event(
    local: &PeerId,
    telemetry: &Telemetry,
    event: SwarmEvent<NodeBehaviourEvent>,
) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } => {
            println!("listening on {}", address.with(Protocol::P2p(*local)));
        }
        SwarmEvent::ExpiredListenAddr { address, .. } => {
            println!("no longer listening on {address}");
        }
        SwarmEvent::ListenerError { error, .. } => println!("listener error: {error}"),
        SwarmEvent::Behaviour(NodeBehaviourEvent::Manager(event)) => {
            telemetry.record(&event);
            println!("manager: {}", describe(&event));
        }
        SwarmEvent::ConnectionEstablished {
            peer_id,
            connection_id,
            endpoint,
            ..
        } => tracing::debug!(%peer_id, %connection_id, address = %endpoint.get_remote_address(),
            "connection established"),
        SwarmEvent::ConnectionClosed {
            peer_id,
            connection_id,
            cause,
            ..
        } => tracing::debug!(%peer_id, %connection_id, ?cause, "connection closed"),
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
pub async fn shut_down(swarm: &mut Swarm<NodeBehaviour>, telemetry: &Telemetry, signal: &str) {
    let peers = swarm.network_info().num_peers();
    println!("{signal}: shutting down, saying goodbye to {peers} peer(s)");
    swarm.behaviour_mut().manager.shutdown();
    match timeout(SHUTDOWN_DRAIN, drain_connections(swarm, telemetry)).await {
        Ok(()) => println!("shut down: all connections closed"),
        Err(_) => println!(
            "shut down: {} connection(s) still open after {SHUTDOWN_DRAIN:?}, exiting anyway",
            swarm.network_info().connection_counters().num_established()
        ),
    }
    if let Err(error) = swarm.behaviour_mut().manager.flush_store() {
        println!("peer store: last changes not written: {error}");
    }
}

/// Polls the swarm until it has no connection left, then handles the events already due (the
/// manager reports the last `Disconnected` just after the swarm closed the connection).
pub async fn drain_connections(swarm: &mut Swarm<NodeBehaviour>, telemetry: &Telemetry) {
    let local = *swarm.local_peer_id();
    while swarm.network_info().num_peers() > 0 {
        let event = swarm.select_next_some().await;
        handle_node_event(&local, telemetry, event);
    }
    while let Some(event) = swarm.next().now_or_never().flatten() {
        handle_node_event(&local, telemetry, event);
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
