//! Inbound floods over real TCP on loopback: many source addresses, and a slowloris.
//!
//! The target here is a swarm built in this file (the manager alone, on TCP + noise + yamux)
//! because the harness's node keeps libp2p's default 10 s handshake timeout, and these tests
//! need a short one to see pending connections time out within seconds. Each test prints what
//! it tried and what held (`cargo test --test floods -- --nocapture`); RELIABILITY.md keeps the
//! latest figures.

mod common;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use common::*;
use futures::StreamExt;
use libp2p::{
    multiaddr::Protocol,
    noise,
    swarm::{ListenError, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager::{Behaviour, Config, Denial, Event, LimitKind, Limits, RateLimit};
use tokio::{net::TcpStream, sync::watch, time::Instant};

/// The flood tests measure time and process memory: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the target saw, updated after each of its swarm events. The swarm reports every
/// admission and every failure as an event before it takes the next connection, so the peaks
/// here are exact.
#[derive(Debug, Clone, Default)]
struct TargetState {
    swarm_pending: u32,
    max_swarm_pending: u32,
    manager_pending: usize,
    max_manager_pending: usize,
    tracked_ips: usize,
    max_tracked_ips: usize,
    tracked_peers: usize,
    /// Inbound connections let into their handshake (`SwarmEvent::IncomingConnection`).
    admitted: usize,
    /// Distinct remote IPs among them.
    admitted_ips: usize,
    /// Refusals reported by the swarm, by kind of `Denial`.
    denials: BTreeMap<&'static str, usize>,
    /// Refusals of a kind or value this test did not configure, or whose cause is no `Denial`.
    unexpected_denials: Vec<String>,
    /// `Event::Denied` of the manager, to compare with the swarm's refusals.
    manager_denied_events: usize,
    /// Admitted connections that failed in their handshake, with how long each was pending.
    handshake_failures: Vec<Duration>,
    first_failure: Option<String>,
    established: Vec<PeerId>,
    closed: usize,
}

impl TargetState {
    fn refused(&self) -> usize {
        self.denials.values().sum::<usize>() + self.unexpected_denials.len()
    }

    /// Every inbound connection the swarm has decided on, admitted or refused.
    fn decided(&self) -> usize {
        self.admitted + self.refused()
    }

    fn is_drained(&self) -> bool {
        self.swarm_pending == 0 && self.manager_pending == 0
    }
}

/// The limits the target was given, to tell expected refusals from unexpected ones.
#[derive(Debug, Clone, Copy)]
struct Expected {
    pending_inbound: Option<u32>,
    per_ip: Option<u32>,
    rate: Option<RateLimit>,
    tracked_ips: usize,
}

impl Expected {
    fn classify(&self, denial: &Denial) -> Result<&'static str, String> {
        match denial {
            Denial::Limit {
                kind: LimitKind::PendingIncoming,
                limit,
                ..
            } if Some(*limit) == self.pending_inbound => Ok("pending-inbound limit"),
            Denial::IpLimit { limit, .. } if Some(*limit) == self.per_ip => Ok("per-IP limit"),
            Denial::RateLimited { rate, .. } if Some(*rate) == self.rate => Ok("per-IP rate"),
            Denial::TooManyAddresses { limit } if *limit == self.tracked_ips => {
                Ok("per-IP table full")
            }
            other => Err(format!("{other:?}")),
        }
    }
}

struct Target {
    peer: PeerId,
    addr: Multiaddr,
    socket: SocketAddr,
    state: watch::Receiver<TargetState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Target {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Target {
    /// A node with only the manager, listening on 127.0.0.1, whose transport gives up on a
    /// handshake after `handshake_timeout` (libp2p's `TransportTimeout` around the whole
    /// upgrade, as the builder applies it; its default is 10 s).
    async fn spawn(limits: Limits, handshake_timeout: Duration) -> Target {
        let expected = Expected {
            pending_inbound: limits.max_pending_incoming(),
            per_ip: None,
            rate: None,
            tracked_ips: 0,
        };
        Self::spawn_expecting(limits, expected, handshake_timeout).await
    }

    async fn spawn_expecting(
        limits: Limits,
        expected: Expected,
        handshake_timeout: Duration,
    ) -> Target {
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .expect("tcp transport")
            .with_behaviour(|key| {
                Behaviour::new(
                    key.public().to_peer_id(),
                    Config::default().with_limits(limits),
                )
            })
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .with_connection_timeout(handshake_timeout)
            .build();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .expect("listen");
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        let socket = socket_address(&addr);
        let peer = *swarm.local_peer_id();
        let (state_tx, state) = watch::channel(TargetState::default());
        let task = tokio::spawn(run_target(swarm, expected, state_tx));
        Target {
            peer,
            addr,
            socket,
            state,
            task,
        }
    }

    fn now(&self) -> TargetState {
        self.state.borrow().clone()
    }

    /// Waits until `condition` holds, or fails after `deadline` with the last state.
    async fn wait_until(
        &mut self,
        deadline: Duration,
        condition: impl Fn(&TargetState) -> bool,
    ) -> Result<TargetState, TargetState> {
        let reached = tokio::time::timeout(deadline, self.state.wait_for(|s| condition(s)))
            .await
            .ok()
            .and_then(|r| r.ok().map(|state| state.clone()));
        reached.ok_or_else(|| self.now())
    }
}

async fn run_target(
    mut swarm: Swarm<Behaviour>,
    expected: Expected,
    state_tx: watch::Sender<TargetState>,
) {
    let mut state = TargetState::default();
    let mut admitted_at = HashMap::new();
    let mut admitted_ips = HashSet::new();
    loop {
        match swarm.select_next_some().await {
            SwarmEvent::IncomingConnection {
                connection_id,
                send_back_addr,
                ..
            } => {
                state.admitted += 1;
                admitted_at.insert(connection_id, Instant::now());
                if let Some(Protocol::Ip4(ip)) = send_back_addr.iter().next() {
                    admitted_ips.insert(ip);
                }
            }
            SwarmEvent::IncomingConnectionError {
                connection_id,
                error,
                ..
            } => match error {
                ListenError::Denied { cause } => match cause.downcast_ref::<Denial>() {
                    Some(denial) => match expected.classify(denial) {
                        Ok(kind) => *state.denials.entry(kind).or_default() += 1,
                        Err(other) => state.unexpected_denials.push(other),
                    },
                    None => state.unexpected_denials.push(format!("untyped: {cause}")),
                },
                other => {
                    if let Some(at) = admitted_at.remove(&connection_id) {
                        state.handshake_failures.push(at.elapsed());
                    }
                    state
                        .first_failure
                        .get_or_insert_with(|| error_chain(&other));
                }
            },
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            } => {
                admitted_at.remove(&connection_id);
                state.established.push(peer_id);
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } => {
                state.closed += 1;
                if let Some(i) = state.established.iter().position(|p| *p == peer_id) {
                    state.established.swap_remove(i);
                }
            }
            SwarmEvent::Behaviour(Event::Denied { .. }) => state.manager_denied_events += 1,
            _ => {}
        }
        let manager = swarm.behaviour();
        state.swarm_pending = swarm.network_info().connection_counters().num_pending();
        state.max_swarm_pending = state.max_swarm_pending.max(state.swarm_pending);
        state.manager_pending = manager.stats().pending_connections;
        state.max_manager_pending = state.max_manager_pending.max(state.manager_pending);
        state.tracked_ips = manager.stats().tracked_ips;
        state.max_tracked_ips = state.max_tracked_ips.max(state.tracked_ips);
        state.tracked_peers = manager.stats().tracked_peers;
        state.admitted_ips = admitted_ips.len();
        let _ = state_tx.send(state.clone());
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    text
}

fn socket_address(addr: &Multiaddr) -> SocketAddr {
    let mut parts = addr.iter();
    match (parts.next(), parts.next()) {
        (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) => SocketAddr::from((ip, port)),
        other => panic!("not a TCP/IPv4 address: {other:?}"),
    }
}

/// Opens `per_ip` TCP connections from each of `ips` to `target`, all at once. They send
/// nothing: each one holds a handshake slot until the target gives up on it.
async fn open_flood(ips: &[Ipv4Addr], per_ip: usize, target: SocketAddr) -> Vec<TcpStream> {
    let attempts = ips
        .iter()
        .flat_map(|ip| std::iter::repeat_n(*ip, per_ip))
        .map(|ip| async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((ip, 0)))?;
            socket.connect(target).await
        });
    futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// Writes `bytes` (a few, into an empty send buffer: one write takes them all).
async fn write_some(socket: &TcpStream, bytes: &[u8]) {
    socket.writable().await.expect("writable");
    let written = socket.try_write(bytes).expect("write");
    assert_eq!(written, bytes.len());
}

/// Whether the peer closed the connection (end of stream or reset) before sending anything.
async fn reads_eof(socket: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    // Bounded: each pass waits for readiness, and a spurious wake-up is rare.
    for _ in 0..100 {
        if socket.readable().await.is_err() {
            return true;
        }
        match socket.try_read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return true,
        }
    }
    false
}

/// The process's resident memory (`VmRSS`), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn spread(durations: &[Duration]) -> (Duration, Duration) {
    let min = durations.iter().min().copied().unwrap_or_default();
    let max = durations.iter().max().copied().unwrap_or_default();
    (min, max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_loopback_ips_is_held_to_the_limits_and_a_normal_node_still_gets_in() {
    let _one = ONE_AT_A_TIME.lock().await;
    init_tracing();
    const HANDSHAKE: Duration = Duration::from_secs(1);
    const PENDING: u32 = 32;
    const PER_IP: u32 = 2;
    const TABLE: usize = 64;
    const CONNECTIONS_PER_IP: usize = 4;
    const WAVES: usize = 6;
    // Each wave starts 12 addresses further on: new addresses keep entering the table (which
    // must forget idle ones), and the first few of each wave just spent their tokens.
    const SHIFT: usize = 12;
    let rate = RateLimit::new(2, Duration::from_secs(10));
    let limits = Limits::unlimited()
        .with_max_pending_incoming(Some(PENDING))
        .with_max_incoming_per_ip(Some(PER_IP))
        .with_incoming_rate_per_ip(Some(rate))
        .with_max_tracked_ips(TABLE)
        .with_loopback_exempt(false);
    let expected = Expected {
        pending_inbound: Some(PENDING),
        per_ip: Some(PER_IP),
        rate: Some(rate),
        tracked_ips: TABLE,
    };
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut target = Target::spawn_expecting(limits, expected, HANDSHAKE).await;
    let mut ips: Vec<Ipv4Addr> = (10..160).map(|n| Ipv4Addr::new(127, 0, 0, n)).collect();
    println!(
        "flood from {} loopback addresses (127.0.0.10-159), {CONNECTIONS_PER_IP} connections \
         each at once per wave, {WAVES} waves, nothing ever sent; target limits: pending inbound \
         {PENDING}, per IP {PER_IP}, rate {rate}, table {TABLE} addresses, loopback not exempt; \
         handshake timeout {HANDSHAKE:?}",
        ips.len()
    );

    let mut opened_total = 0;
    let mut good: Option<(Node, Duration, usize)> = None;
    for wave in 1..=WAVES {
        let before = target.now();
        let flood = open_flood(&ips, CONNECTIONS_PER_IP, target.socket).await;
        assert!(
            flood.len() * 10 >= ips.len() * CONNECTIONS_PER_IP * 9,
            "wave {wave}: only {} flood connections opened",
            flood.len()
        );
        opened_total += flood.len();
        let opened = flood.len();
        let s = target
            .wait_until(Duration::from_secs(10), |s| {
                s.decided() - before.decided() >= opened
            })
            .await
            .unwrap_or_else(|s| {
                panic!(
                    "wave {wave}: {opened} opened, {} decided",
                    s.decided() - before.decided()
                )
            });
        println!(
            "  wave {wave}: {opened} opened, {} admitted to the handshake, {} refused",
            s.admitted - before.admitted,
            s.refused() - before.refused()
        );
        if wave == 1 {
            // While every handshake slot is taken by the flood (its sockets held open), a
            // normal node dials from 127.0.0.1 through its manager, which redials it on failure.
            let mut node = Node::spawn(NodeConfig::default()).await;
            let asked = Instant::now();
            node.send(Command::ManagerDial(target.peer, target.addr.clone()));
            let peer = node.peer;
            let s = target
                .wait_until(Duration::from_secs(15), |s| s.established.contains(&peer))
                .await
                .unwrap_or_else(|s| panic!("the normal node did not get in: {s:#?}"));
            let took = asked.elapsed();
            let ours = wait_until(&mut [&mut node], Duration::from_secs(5), |s| {
                s[0].established == 1
            })
            .await
            .expect("the normal node sees its connection");
            let refused_attempts = ours[0]
                .events
                .iter()
                .filter(|e| matches!(e, Event::DialFailed { .. }))
                .count();
            let redials: Vec<String> = ours[0]
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::RedialScheduled { delay, .. } => Some(format!("{delay:.2?}")),
                    _ => None,
                })
                .collect();
            let first_failure = ours[0].events.iter().find_map(|e| match e {
                Event::DialFailed { cause, .. } => Some(cause.to_string()),
                _ => None,
            });
            println!(
                "  a normal node dialing from 127.0.0.1 got in {took:.2?} after asking, \
                 {refused_attempts} attempt(s) failed first (redials after {}; first: {}), \
                 flood sockets still open; target pending then {}",
                redials.join(", "),
                first_failure.as_deref().unwrap_or("none"),
                s.swarm_pending
            );
            good = Some((node, took, refused_attempts));
        }
        // Each wave is held open until the target has given up on all of its handshakes.
        let drained = target
            .wait_until(HANDSHAKE + Duration::from_secs(3), TargetState::is_drained)
            .await
            .unwrap_or_else(|s| panic!("wave {wave}: pending did not time out: {s:#?}"));
        assert!(drained.tracked_ips <= TABLE);
        drop(flood);
        ips.rotate_left(SHIFT);
    }

    let (node, took, refused_attempts) = good.expect("the normal node ran");
    let s = target.now();
    let ours = node.snapshot();
    let rss_after = rss_bytes();
    let (shortest, longest) = spread(&s.handshake_failures);
    let kinds: Vec<String> = s.denials.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "  held: pending peaked at {} in the manager and {} in the swarm (limit {PENDING}); the \
         IP table peaked at {} entries (limit {TABLE}) while {} distinct addresses were \
         admitted; {} refusals, all typed and expected: {}; {} unexpected",
        s.max_manager_pending,
        s.max_swarm_pending,
        s.max_tracked_ips,
        s.admitted_ips,
        s.refused(),
        kinds.join(", "),
        s.unexpected_denials.len()
    );
    println!(
        "  every admitted flood connection timed out in its handshake: {} of {}, pending for \
         {shortest:.2?}..{longest:.2?} (timeout {HANDSHAKE:?}); first error: {}",
        s.handshake_failures.len(),
        s.admitted - 1,
        s.first_failure.as_deref().unwrap_or("none")
    );
    println!(
        "  the normal node stayed connected through waves 2-{WAVES} ({} connection(s) closed on \
         the target); {opened_total} flood connections in {:.1?}; process RSS {:.1} MiB -> \
         {:.1} MiB",
        s.closed,
        started.elapsed(),
        mib(rss_before),
        mib(rss_after)
    );

    assert!(s.max_manager_pending <= PENDING as usize);
    assert!(s.max_swarm_pending <= PENDING);
    assert!(s.max_tracked_ips <= TABLE, "IP table grew past its bound");
    assert!(
        s.admitted_ips > TABLE,
        "the flood did not reach past the table ({} addresses admitted)",
        s.admitted_ips
    );
    assert!(
        s.unexpected_denials.is_empty(),
        "unexpected refusals: {:?}",
        s.unexpected_denials
    );
    assert_eq!(
        s.manager_denied_events,
        s.refused(),
        "one event per refusal"
    );
    for kind in ["pending-inbound limit", "per-IP limit", "per-IP rate"] {
        assert!(
            s.denials.contains_key(kind),
            "no refusal by {kind}: {kinds:?}"
        );
    }
    // Every connection admitted besides the normal node's was a flood connection that timed out.
    assert_eq!(s.handshake_failures.len(), s.admitted - 1);
    assert!(
        shortest + Duration::from_millis(50) >= HANDSHAKE,
        "{shortest:?}"
    );
    assert!(longest <= HANDSHAKE + Duration::from_secs(2), "{longest:?}");
    assert!(took < Duration::from_secs(15) && refused_attempts <= 4);
    assert_eq!(s.established, vec![node.peer], "the normal node stayed");
    assert_eq!(ours.established, 1);
    assert!(!ours
        .events
        .iter()
        .any(|e| matches!(e, Event::Disconnected { .. })));
    assert_eq!(
        s.tracked_peers, 1,
        "no state for peers besides the normal node"
    );
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "RSS grew by {:.1} MiB",
        mib(rss_after.saturating_sub(rss_before))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_is_cut_off_at_the_handshake_timeout_while_its_sockets_stay_open() {
    let _one = ONE_AT_A_TIME.lock().await;
    init_tracing();
    const HANDSHAKE: Duration = Duration::from_millis(500);
    const SOCKETS: usize = 20;
    // Default limits: loopback is exempt from the per-IP limits, so all 20 are admitted and
    // only the handshake timeout can end them.
    let mut target = Target::spawn(Limits::new(), HANDSHAKE).await;
    let rss_before = rss_bytes();

    let opened_at = Instant::now();
    let mut sockets =
        futures::future::try_join_all((0..SOCKETS).map(|_| TcpStream::connect(target.socket)))
            .await
            .expect("connect");
    // Half start the handshake and stall: a partial multistream-select header (its length
    // prefix promises 19 bytes, 10 come). The timeout covers the whole upgrade, not idleness.
    for socket in sockets.iter_mut().skip(SOCKETS / 2) {
        write_some(socket, b"\x13/multistre").await;
    }
    let s = target
        .wait_until(Duration::from_secs(5), |s| s.admitted == SOCKETS)
        .await
        .unwrap_or_else(|s| panic!("not all admitted: {s:#?}"));
    assert_eq!(s.refused(), 0);
    let all_pending = s.max_swarm_pending as usize == SOCKETS && s.max_manager_pending == SOCKETS;
    assert!(all_pending, "{s:#?}");

    let s = target
        .wait_until(HANDSHAKE + Duration::from_secs(2), |s| {
            s.is_drained() && s.handshake_failures.len() == SOCKETS
        })
        .await
        .unwrap_or_else(|s| panic!("pending connections did not time out: {s:#?}"));
    let drained_after = opened_at.elapsed();
    let (shortest, longest) = spread(&s.handshake_failures);

    // The sockets are still ours; the target has closed its ends.
    let mut closed_by_target = 0;
    for socket in &mut sockets {
        if tokio::time::timeout(Duration::from_secs(2), reads_eof(socket))
            .await
            .unwrap_or(false)
        {
            closed_by_target += 1;
        }
    }
    println!(
        "slowloris: {SOCKETS} TCP connections from 127.0.0.1 that never finish the handshake \
         ({} silent, {} stalled mid-header), handshake timeout {HANDSHAKE:?}: all admitted \
         (pending peaked at {} in the swarm, {} in the manager), each pending for \
         {shortest:.2?}..{longest:.2?}, both counts back to 0 {drained_after:.2?} after the \
         first connect, {closed_by_target}/{SOCKETS} sockets then read EOF from the target; \
         manager tracks {} peers and {} IPs; RSS {:.1} MiB -> {:.1} MiB; first error: {}",
        SOCKETS / 2,
        SOCKETS / 2,
        s.max_swarm_pending,
        s.max_manager_pending,
        s.tracked_peers,
        s.tracked_ips,
        mib(rss_before),
        mib(rss_bytes()),
        s.first_failure.as_deref().unwrap_or("none")
    );
    assert!(
        shortest + Duration::from_millis(50) >= HANDSHAKE,
        "{shortest:?}"
    );
    assert!(longest <= HANDSHAKE + Duration::from_secs(1), "{longest:?}");
    assert!(drained_after <= HANDSHAKE + Duration::from_secs(2));
    assert_eq!(closed_by_target, SOCKETS);
    assert_eq!((s.tracked_peers, s.tracked_ips), (0, 0));
    drop(sockets);
}
