//! The listener process: one swarm, bare or with the connection manager, that accepts every
//! dialer and measures itself while the parent walks it through the phases.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use anyhow::Context as _;
use libp2p::{
    multiaddr::Protocol,
    noise, ping,
    swarm::{ConnectionId, NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm, SwarmBuilder,
};
use libp2p_connection_manager::{self as manager, IpNet, Limits};
use tokio::{
    sync::mpsc,
    time::{sleep_until, Instant},
};

use crate::{
    probe::{self, timed_next, Stalls},
    protocol::{emit, forward_lines, ListenerReport},
    Configuration, IDLE_TIMEOUT, PING_INTERVAL,
};

/// What the two configurations offer the harness beyond being a behaviour.
pub trait Node: NetworkBehaviour {
    fn build(key: &libp2p::identity::Keypair, connections: usize) -> Self;
    /// `force_trim`, where there is one (else the listener disconnects peers itself).
    fn trim(&mut self) -> Option<Vec<PeerId>>;
    /// `ban_network`, where there is one (else the listener disconnects peers itself).
    fn ban(&mut self, network: IpNet) -> bool;
    /// Whether the behaviour reports pings to the harness.
    const REPORTS_PINGS: bool;
    /// Whether `event` is a successful ping.
    fn ping_ok(event: &Self::ToSwarm) -> bool;
}

/// Bare: libp2p-ping alone, connections held by the idle timeout.
impl Node for ping::Behaviour {
    fn build(_: &libp2p::identity::Keypair, _: usize) -> Self {
        ping::Behaviour::new(ping::Config::new().with_interval(PING_INTERVAL))
    }

    fn trim(&mut self) -> Option<Vec<PeerId>> {
        None
    }

    fn ban(&mut self, _: IpNet) -> bool {
        false
    }

    const REPORTS_PINGS: bool = true;

    fn ping_ok(event: &ping::Event) -> bool {
        event.result.is_ok()
    }
}

/// The connection manager, with room for every dialer: no limits, and watermarks at
/// `connections / 2` and `connections`, so that nothing is trimmed until `force_trim`, which
/// then trims to half. Trim grace 0: every connection may be trimmed, whatever its age.
impl Node for manager::Behaviour {
    fn build(key: &libp2p::identity::Keypair, connections: usize) -> Self {
        let config = manager::Config::new()
            .with_limits(Limits::unlimited())
            .with_watermarks(connections / 2, connections)
            .with_trim_grace(Duration::ZERO)
            .with_ping_interval(PING_INTERVAL);
        manager::Behaviour::new(key.public().to_peer_id(), config)
    }

    fn trim(&mut self) -> Option<Vec<PeerId>> {
        Some(self.force_trim())
    }

    fn ban(&mut self, network: IpNet) -> bool {
        self.ban_network(network, None);
        true
    }

    /// The manager runs ping itself and keeps its results.
    const REPORTS_PINGS: bool = false;

    fn ping_ok(_: &manager::Event) -> bool {
        false
    }
}

pub fn run(configuration: Configuration, connections: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match configuration {
            Configuration::Bare => serve::<ping::Behaviour>(connections).await,
            Configuration::Manager => serve::<manager::Behaviour>(connections).await,
        }
    })
}

fn listener_swarm<B: Node>(connections: usize) -> anyhow::Result<Swarm<B>> {
    Ok(SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )?
        .with_behaviour(|key| B::build(key, connections))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
        .build())
}

/// A command from the parent.
#[derive(Debug)]
enum Command {
    /// Report once this many connections are established.
    Await(usize),
    /// Measure CPU at rest for this long.
    Rest(Duration),
    Trim,
    Ban(IpNet),
    Exit,
}

fn parse(line: &str) -> anyhow::Result<Command> {
    let mut words = line.split_whitespace();
    let command = match (words.next(), words.next()) {
        (Some("await"), Some(n)) => Command::Await(n.parse()?),
        (Some("rest"), Some(secs)) => Command::Rest(Duration::from_secs_f64(secs.parse()?)),
        (Some("trim"), None) => Command::Trim,
        (Some("ban"), Some(network)) => Command::Ban(network.parse()?),
        (Some("exit"), None) | (None, _) => Command::Exit,
        _ => anyhow::bail!("unknown command {line:?}"),
    };
    Ok(command)
}

/// The phase the parent asked for, and what it counts.
enum Phase {
    Idle,
    Await {
        target: usize,
        started: Option<Instant>,
    },
    Rest {
        until: Instant,
        started: Instant,
        cpu: Duration,
        closed: usize,
        pings: u64,
    },
    Trim {
        trimmed: HashSet<PeerId>,
        order: Vec<PeerId>,
        call: Duration,
        call_cpu: Option<Duration>,
        started: Instant,
        target: usize,
        open_trimmed: usize,
        closed_trimmed: usize,
        closed_other: usize,
    },
    Ban {
        network: IpNet,
        open: HashSet<ConnectionId>,
        in_network: usize,
        call: Duration,
        call_cpu: Option<Duration>,
        started: Instant,
        closed_in_network: usize,
        closed_outside: usize,
    },
}

/// The established connections, by id, with their peer and remote IP.
#[derive(Default)]
struct Connections {
    by_id: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    per_peer: HashMap<PeerId, usize>,
    incoming_errors: u64,
}

impl Connections {
    fn established(&mut self, id: ConnectionId, peer: PeerId, remote: &Multiaddr) {
        let ip = remote.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        });
        self.by_id.insert(id, (peer, ip));
        *self.per_peer.entry(peer).or_default() += 1;
    }

    fn closed(&mut self, id: ConnectionId) -> Option<PeerId> {
        let (peer, _) = self.by_id.remove(&id)?;
        if let Some(count) = self.per_peer.get_mut(&peer) {
            *count -= 1;
            if *count == 0 {
                self.per_peer.remove(&peer);
            }
        }
        Some(peer)
    }

    fn count(&self) -> usize {
        self.by_id.len()
    }

    fn max_per_peer(&self) -> usize {
        self.per_peer.values().copied().max().unwrap_or(0)
    }

    fn of_peer(&self, peer: &PeerId) -> usize {
        self.per_peer.get(peer).copied().unwrap_or(0)
    }
}

async fn serve<B: Node>(connections: usize) -> anyhow::Result<()> {
    let mut swarm = listener_swarm::<B>(connections)?;
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;

    let (command_sender, mut commands) = mpsc::unbounded_channel();
    forward_lines(std::io::stdin(), move |line| {
        command_sender
            .send(line.unwrap_or_else(|| "exit".into()))
            .is_ok()
    });

    let mut open = Connections::default();
    let mut phase = Phase::Idle;
    let mut stalls = Stalls::default();
    let mut listening = false;
    loop {
        let resting = matches!(phase, Phase::Rest { .. });
        let rest_end = match &phase {
            Phase::Rest { until, .. } => *until,
            _ => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            event = timed_next(&mut swarm, &mut stalls) => {
                let event = event.context("the swarm ended")?;
                on_event::<B>(event, &mut open, &mut phase, &mut listening);
            }
            line = commands.recv() => {
                let line = line.unwrap_or_else(|| "exit".into());
                match parse(&line) {
                    Ok(Command::Exit) => return Ok(()),
                    Ok(command) => {
                        stalls = Stalls::default();
                        phase = start(command, &mut swarm, &open, connections, &mut stalls);
                    }
                    Err(error) => emit(&ListenerReport::Error { message: error.to_string() }),
                }
            }
            () = sleep_until(rest_end), if resting => {
                if let Phase::Rest { started, cpu, closed, pings, .. } = &phase {
                    emit(&ListenerReport::Rest {
                        secs: started.elapsed().as_secs_f64(),
                        cpu_secs: (probe::process_cpu().saturating_sub(*cpu)).as_secs_f64(),
                        rss: probe::rss_bytes(),
                        connections: open.count(),
                        closed: *closed,
                        pings: B::REPORTS_PINGS.then_some(*pings),
                        stalls: std::mem::take(&mut stalls),
                    });
                }
                phase = Phase::Idle;
            }
        }
        if finished(&phase, &open) {
            report_finished(&phase, &open, std::mem::take(&mut stalls));
            phase = Phase::Idle;
        }
    }
}

fn start<B: Node>(
    command: Command,
    swarm: &mut Swarm<B>,
    open: &Connections,
    connections: usize,
    stalls: &mut Stalls,
) -> Phase {
    match command {
        Command::Await(target) => Phase::Await {
            target,
            started: None,
        },
        Command::Rest(length) => Phase::Rest {
            until: Instant::now() + length,
            started: Instant::now(),
            cpu: probe::process_cpu(),
            closed: 0,
            pings: 0,
        },
        Command::Trim => {
            let started = Instant::now();
            let target = connections / 2;
            let (order, call, cpu) = stalls.call(|| match swarm.behaviour_mut().trim() {
                Some(order) => order,
                None => {
                    // Without the manager: disconnect as many peers as it would trim.
                    let excess = open.per_peer.len().saturating_sub(target);
                    let chosen: Vec<PeerId> = open.per_peer.keys().take(excess).copied().collect();
                    for peer in &chosen {
                        let _ = swarm.disconnect_peer_id(*peer);
                    }
                    chosen
                }
            });
            let trimmed: HashSet<PeerId> = order.iter().copied().collect();
            let open_trimmed: usize = trimmed.iter().map(|p| open.of_peer(p)).sum();
            Phase::Trim {
                trimmed,
                order,
                call,
                call_cpu: cpu,
                started,
                target: open.count().saturating_sub(open_trimmed),
                open_trimmed,
                closed_trimmed: 0,
                closed_other: 0,
            }
        }
        Command::Ban(network) => {
            let started = Instant::now();
            let in_network: HashSet<ConnectionId> = open
                .by_id
                .iter()
                .filter(|(_, (_, ip))| ip.is_some_and(|ip| network.contains(&ip)))
                .map(|(id, _)| *id)
                .collect();
            let ((), call, cpu) = stalls.call(|| {
                if !swarm.behaviour_mut().ban(network) {
                    // Without the manager: disconnect every peer connected from the network.
                    let peers: HashSet<PeerId> = in_network
                        .iter()
                        .filter_map(|id| open.by_id.get(id))
                        .map(|(p, _)| *p)
                        .collect();
                    for peer in peers {
                        let _ = swarm.disconnect_peer_id(peer);
                    }
                }
            });
            Phase::Ban {
                network,
                in_network: in_network.len(),
                open: in_network,
                call,
                call_cpu: cpu,
                started,
                closed_in_network: 0,
                closed_outside: 0,
            }
        }
        Command::Exit => Phase::Idle,
    }
}

fn on_event<B: Node>(
    event: SwarmEvent<B::ToSwarm>,
    open: &mut Connections,
    phase: &mut Phase,
    listening: &mut bool,
) {
    match event {
        SwarmEvent::NewListenAddr { address, .. } if !*listening => {
            *listening = true;
            emit(&ListenerReport::Listening {
                address: address.to_string(),
                rss: probe::rss_bytes(),
            });
        }
        SwarmEvent::IncomingConnection { .. } => {
            if let Phase::Await { started, .. } = phase {
                started.get_or_insert_with(Instant::now);
            }
        }
        SwarmEvent::IncomingConnectionError { .. } => open.incoming_errors += 1,
        SwarmEvent::ConnectionEstablished {
            peer_id,
            connection_id,
            endpoint,
            ..
        } => open.established(connection_id, peer_id, endpoint.get_remote_address()),
        SwarmEvent::ConnectionClosed { connection_id, .. } => {
            let Some(peer) = open.closed(connection_id) else {
                return;
            };
            match phase {
                Phase::Rest { closed, .. } => *closed += 1,
                Phase::Trim {
                    trimmed,
                    open_trimmed,
                    closed_trimmed,
                    closed_other,
                    ..
                } => {
                    if trimmed.contains(&peer) {
                        *closed_trimmed += 1;
                        *open_trimmed = open_trimmed.saturating_sub(1);
                    } else {
                        *closed_other += 1;
                    }
                }
                Phase::Ban {
                    open: in_network,
                    closed_in_network,
                    closed_outside,
                    ..
                } => {
                    if in_network.remove(&connection_id) {
                        *closed_in_network += 1;
                    } else {
                        *closed_outside += 1;
                    }
                }
                Phase::Idle | Phase::Await { .. } => {}
            }
        }
        SwarmEvent::Behaviour(event) => {
            if let Phase::Rest { pings, .. } = phase {
                *pings += u64::from(B::ping_ok(&event));
            }
        }
        _ => {}
    }
}

fn finished(phase: &Phase, open: &Connections) -> bool {
    match phase {
        Phase::Await { target, .. } => open.count() >= *target,
        Phase::Trim { open_trimmed, .. } => *open_trimmed == 0,
        Phase::Ban { open, .. } => open.is_empty(),
        Phase::Idle | Phase::Rest { .. } => false,
    }
}

fn report_finished(phase: &Phase, open: &Connections, stalls: Stalls) {
    let report = match phase {
        Phase::Await { started, .. } => ListenerReport::Reached {
            connections: open.count(),
            secs: started.map_or(0.0, |at| at.elapsed().as_secs_f64()),
            rss: probe::rss_bytes(),
            max_per_peer: open.max_per_peer(),
            incoming_errors: open.incoming_errors,
            stalls,
        },
        Phase::Trim {
            order,
            call,
            call_cpu,
            started,
            target,
            closed_trimmed,
            closed_other,
            ..
        } => ListenerReport::Trim {
            trimmed: order.iter().map(PeerId::to_string).collect(),
            call_us: call.as_micros() as u64,
            call_cpu_us: call_cpu.map(|c| c.as_micros() as u64),
            secs: started.elapsed().as_secs_f64(),
            target: *target,
            remaining: open.count(),
            closed_trimmed: *closed_trimmed,
            closed_other: *closed_other,
            max_per_peer: open.max_per_peer(),
            stalls,
        },
        Phase::Ban {
            network,
            in_network,
            call,
            call_cpu,
            started,
            closed_in_network,
            closed_outside,
            ..
        } => ListenerReport::Ban {
            network: network.to_string(),
            in_network: *in_network,
            closed_in_network: *closed_in_network,
            closed_outside: *closed_outside,
            call_us: call.as_micros() as u64,
            call_cpu_us: call_cpu.map(|c| c.as_micros() as u64),
            secs: started.elapsed().as_secs_f64(),
            remaining: open.count(),
            max_per_peer: open.max_per_peer(),
            stalls,
        },
        Phase::Idle | Phase::Rest { .. } => return,
    };
    emit(&report);
}
