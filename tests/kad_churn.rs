//! A Kademlia server with `Config::default()` under a churn of a few hundred peers keeps its
//! connection count bounded (issue 19): the manager holds no connection a query made, so the
//! count follows the churn as it does without the manager and falls back once the peers are
//! idle, instead of growing with every peer the node ever served.
//!
//! Two servers run side by side under the same churn, at the same time on the same machine:
//! one with the manager (`Config::default()`, composed first), one without (the same kad,
//! identify and ping; the manager's slot is a disabled `Toggle`, which has no handler, no
//! protocol and no say in keep-alive: a bare swarm). Clients arrive in waves; each adds the
//! server to its routing table and runs `get_closest_peers` through it, then either stays,
//! idle, or goes away (its swarm dropped, no goodbye).
//!
//! The nodes here run Kademlia, which `tests/common`'s node does not, so this file has its own
//! small server task and its own `wait_until` over the servers' states.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use libp2p::{
    identify,
    identity::Keypair,
    kad, noise, ping,
    swarm::{
        behaviour::toggle::Toggle, ConnectionError, ConnectionId, NetworkBehaviour, SwarmEvent,
    },
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager as manager;
use tokio::{
    sync::{oneshot, watch},
    task::JoinSet,
    time::Instant,
};

/// The server's idle connection timeout. A Kademlia user sets about 10 s; half of it here, so
/// that the churn lasts three idle timeouts (the count reaches its steady state, arrivals times
/// a connection's life, and has to stay there rather than merely pile up) in a run of about half
/// a minute. The shape does not depend on the value: an idle connection lives `IDLE` without the
/// manager and up to the opening window longer with it.
const IDLE: Duration = Duration::from_secs(5);
/// The manager's opening window (`goodbye_timeout`, 2 s in `Config::default()`): every
/// connection is kept this long whatever the manager wants.
const OPENING: Duration = Duration::from_secs(2);
/// The default high watermark (below the default cap on established inbound connections, 256).
const HIGH_WATERMARK: u32 = 192;
/// Clients per server: 300, in 10 waves of 30 (60 handshakes a wave across both servers, which
/// two busy cores manage in a debug build in about the wave interval).
const WAVES: usize = 10;
const WAVE: usize = 30;
/// A wave starts every `WAVE_INTERVAL`, or when the previous one's queries are done if that is
/// later: the arrival rate of the churn, not a synchronisation.
const WAVE_INTERVAL: Duration = Duration::from_millis(1500);
/// Beyond `IDLE + OPENING` after the last query, what a busy machine may add before the last
/// idle connection is closed.
const SLACK: Duration = Duration::from_secs(4);
/// What the count with the manager may exceed the count without it by, after the churn. Not
/// zero: a client that runs the manager beside its own `ping::Behaviour` now and then gets no
/// answer to the manager's first ping (the two pings race on the remote, whose ping handler
/// keeps one inbound stream), so when the server idles the connection out it counts as "died
/// young" and the client rescues it with a prompt redial (at most `max_rescue_dials`, 2): a
/// fresh connection that idles out in turn, possibly just after the deadline.
const MARGIN: u32 = 3;

#[derive(NetworkBehaviour)]
struct KadNode {
    manager: Toggle<manager::Behaviour>,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

fn kad_swarm(key: Keypair, managed: bool, mode: kad::Mode, idle: Duration) -> Swarm<KadNode> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let mut config = kad::Config::new(kad::PROTOCOL_NAME);
            config.set_query_timeout(Duration::from_secs(20));
            let mut kad =
                kad::Behaviour::with_config(peer, kad::store::MemoryStore::new(peer), config);
            kad.set_mode(Some(mode));
            KadNode {
                manager: Toggle::from(
                    managed.then(|| manager::Behaviour::new(peer, manager::Config::default())),
                ),
                kad,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/kad-churn/1.0.0".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
            }
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build()
}

/// What the server's task reports after each of its events.
#[derive(Debug, Clone, Default)]
struct ServerState {
    /// Established connections according to the swarm.
    established: u32,
    /// The most established at once so far.
    peak: u32,
    /// Connections the swarm closed for being idle, and their lifetimes.
    idled_out: usize,
    longest_life: Duration,
    total_life: Duration,
    /// Connections closed on request (the manager's: a goodbye, a trim).
    closed_by_manager: usize,
    /// Connections that ended from the remote's side (a client that went away).
    closed_by_remote: usize,
    /// Incoming connections that failed or were refused before they were established.
    failed_incoming: usize,
    /// Peers that connected a second time.
    came_back: usize,
    /// The peers still connected, once there are few.
    remaining: Vec<PeerId>,
}

struct Server {
    peer: PeerId,
    addr: Multiaddr,
    state: watch::Receiver<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

async fn spawn_server(managed: bool) -> Server {
    let key = Keypair::generate_ed25519();
    let mut swarm = kad_swarm(key, managed, kad::Mode::Server, IDLE);
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let peer = *swarm.local_peer_id();
    let (tx, state) = watch::channel(ServerState::default());
    let task = tokio::spawn(async move {
        let mut state = ServerState::default();
        let mut opened: HashMap<ConnectionId, Instant> = HashMap::new();
        let mut seen: HashSet<PeerId> = HashSet::new();
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::ConnectionEstablished {
                    connection_id,
                    peer_id,
                    ..
                } => {
                    opened.insert(connection_id, Instant::now());
                    if !seen.insert(peer_id) {
                        state.came_back += 1;
                    }
                }
                SwarmEvent::ConnectionClosed {
                    connection_id,
                    cause,
                    ..
                } => {
                    let life = opened.remove(&connection_id).map(|at| at.elapsed());
                    match (cause, life) {
                        (Some(ConnectionError::KeepAliveTimeout), Some(life)) => {
                            state.idled_out += 1;
                            state.longest_life = state.longest_life.max(life);
                            state.total_life += life;
                        }
                        (None, _) => state.closed_by_manager += 1,
                        _ => state.closed_by_remote += 1,
                    }
                }
                SwarmEvent::IncomingConnectionError { .. } => state.failed_incoming += 1,
                _ => {}
            }
            state.established = swarm.network_info().connection_counters().num_established();
            state.peak = state.peak.max(state.established);
            state.remaining = if state.established <= 5 {
                swarm.connected_peers().copied().collect()
            } else {
                Vec::new()
            };
            let _ = tx.send(state.clone());
        }
    });
    Server {
        peer,
        addr,
        state,
        task,
    }
}

/// A client: adds the server to its routing table, runs `get_closest_peers` through it, reports
/// whether the query reached the server, then stays (polling its swarm, idle) or goes away.
///
/// Its idle timeout is longer than the test, as with go-libp2p and js-libp2p peers, which close
/// nothing for being idle (their connection managers trim above a watermark): every close of a
/// staying client's connection is the server's decision.
async fn client(
    key: Keypair,
    server: PeerId,
    addr: Multiaddr,
    managed: bool,
    stays: bool,
    done: oneshot::Sender<bool>,
) {
    let mut swarm = kad_swarm(key, managed, kad::Mode::Client, Duration::from_secs(120));
    swarm.behaviour_mut().kad.add_address(&server, addr);
    let query = swarm
        .behaviour_mut()
        .kad
        .get_closest_peers(PeerId::random());
    let reached = loop {
        if let SwarmEvent::Behaviour(KadNodeEvent::Kad(kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetClosestPeers(result),
            step,
            ..
        })) = swarm.select_next_some().await
        {
            if id == query && step.last {
                break result.is_ok_and(|ok| ok.peers.iter().any(|p| p.peer_id == server));
            }
        }
    };
    let _ = done.send(reached);
    if stays {
        loop {
            swarm.select_next_some().await;
        }
    }
}

/// Waits until `condition` holds over the servers' states or `deadline` passes (as
/// `common::wait_until`, over these servers), and returns whether it held, with the last states.
async fn wait_until(
    states: &mut [watch::Receiver<ServerState>],
    deadline: Instant,
    mut condition: impl FnMut(&[ServerState]) -> bool,
) -> (bool, Vec<ServerState>) {
    loop {
        let now: Vec<ServerState> = states.iter().map(|s| s.borrow().clone()).collect();
        if condition(&now) {
            return (true, now);
        }
        let changes = states
            .iter_mut()
            .map(|s| Box::pin(s.changed()))
            .collect::<Vec<_>>();
        if tokio::time::timeout_at(deadline, futures::future::select_all(changes))
            .await
            .is_err()
        {
            return (false, now);
        }
    }
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kademlia_server_under_churn_keeps_its_connection_count_bounded() {
    init_tracing();
    // [0]: with the manager, [1]: without.
    let servers = [spawn_server(true).await, spawn_server(false).await];
    let start = Instant::now();

    // The count over time, every 2 s: a measurement, read off the servers' states.
    let samples = Arc::new(Mutex::new(Vec::<(u32, u32)>::new()));
    let sampler = {
        let samples = samples.clone();
        let states = [servers[0].state.clone(), servers[1].state.clone()];
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let row = (
                    states[0].borrow().established,
                    states[1].borrow().established,
                );
                samples.lock().unwrap().push(row);
            }
        })
    };

    let mut clients = JoinSet::new();
    let mut reached = [0usize; 2];
    let mut stayers = 0;
    // Which run a client belongs to, whether it runs the manager and whether it stays.
    let mut roles = HashMap::new();
    for wave in 0..WAVES {
        tokio::time::sleep_until(start + WAVE_INTERVAL * wave as u32).await;
        let mut results = Vec::new();
        for i in 0..WAVE {
            let n = wave * WAVE + i;
            // Two in three stay, idle; the rest go away at once.
            let stays = !n.is_multiple_of(3);
            stayers += usize::from(stays);
            for (run, server) in servers.iter().enumerate() {
                // With the manager, every other client runs it too (a remote that runs the
                // crate); the rest, and every client of the server without it, do not.
                let managed = run == 0 && n.is_multiple_of(2);
                let key = Keypair::generate_ed25519();
                roles.insert(key.public().to_peer_id(), (run, managed, stays));
                let (tx, rx) = oneshot::channel();
                let (peer, addr) = (server.peer, server.addr.clone());
                clients.spawn(client(key, peer, addr, managed, stays, tx));
                results.push((run, rx));
            }
        }
        let outcomes = tokio::time::timeout(
            Duration::from_secs(30),
            futures::future::join_all(
                results
                    .into_iter()
                    .map(|(run, rx)| async move { (run, rx.await.unwrap_or(false)) }),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("wave {wave}: queries still running after 30 s"));
        for (run, ok) in outcomes {
            reached[run] += usize::from(ok);
        }
    }
    let churn_ended = Instant::now();
    let at_churn_end: Vec<u32> = servers
        .iter()
        .map(|s| s.state.borrow().established)
        .collect();

    // After the churn the scenario is "the idle timeout and the opening window pass": wait
    // until every idle connection is closed, with a deadline just past them.
    let mut states = [servers[0].state.clone(), servers[1].state.clone()];
    let (settled, end) = wait_until(&mut states, churn_ended + IDLE + OPENING + SLACK, |s| {
        s.iter().all(|s| s.established == 0)
    })
    .await;
    let settled_after = churn_ended.elapsed();
    sampler.abort();
    drop(clients);
    for server in servers {
        server.task.abort();
    }

    let samples = samples.lock().unwrap().clone();
    let mut rows = [
        String::from("t (s)           "),
        String::from("with manager    "),
        String::from("without manager "),
    ];
    for (i, (with, without)) in samples.iter().enumerate() {
        rows[0] += &format!("{:>4}", 2 * i);
        rows[1] += &format!("{with:>4}");
        rows[2] += &format!("{without:>4}");
    }
    println!(
        "Kademlia server, idle timeout {IDLE:?}; {} clients per server in {WAVES} waves of {WAVE} \
         (one every {WAVE_INTERVAL:?} at most), {stayers} of them staying idle; churn over after \
         {:.1} s, settled {settled} {:.1} s later (deadline {:?}).\n\
         Established connections at the server:\n{}",
        WAVES * WAVE,
        churn_ended.duration_since(start).as_secs_f32(),
        settled_after.as_secs_f32(),
        IDLE + OPENING + SLACK,
        rows.join("\n"),
    );
    println!(
        "{:<16}{:>5}{:>11}{:>8}{:>9}{:>10}{:>15}{:>7}{:>6}{:>8}{:>11}",
        "",
        "peak",
        "churn end",
        "at end",
        "reached",
        "idled out",
        "life mean/max",
        "closed",
        "gone",
        "failed",
        "came back"
    );
    for (run, name) in ["with manager", "without manager"].iter().enumerate() {
        let s = &end[run];
        let mean = s.total_life.checked_div(s.idled_out as u32);
        println!(
            "{name:<16}{:>5}{:>11}{:>8}{:>9}{:>10}{:>15}{:>7}{:>6}{:>8}{:>11}",
            s.peak,
            at_churn_end[run],
            s.established,
            format!("{}/{}", reached[run], WAVES * WAVE),
            s.idled_out,
            format!(
                "{:.1}/{:.1} s",
                mean.unwrap_or_default().as_secs_f32(),
                s.longest_life.as_secs_f32()
            ),
            s.closed_by_manager,
            s.closed_by_remote,
            s.failed_incoming,
            s.came_back,
        );
        for peer in &s.remaining {
            let (_, managed, stays) = roles[peer];
            println!("  still connected: {peer} (runs the manager: {managed}, stays: {stays})");
        }
    }

    println!(
        "(idled out: closed by the server's idle timeout, with the connection's life; closed: by \
         the manager; gone: the client went away; failed: incoming handshakes that failed; came \
         back: peers that connected again)"
    );

    assert_eq!(
        reached,
        [WAVES * WAVE; 2],
        "every client's query went through the server"
    );
    assert!(
        end[0].established <= end[1].established + MARGIN,
        "after the churn the server with the manager holds {} connections, without it {}: the \
         manager held what the queries touched",
        end[0].established,
        end[1].established
    );
    assert!(
        end[0].peak <= HIGH_WATERMARK,
        "with the manager the count reached {}, above the high watermark {HIGH_WATERMARK}",
        end[0].peak
    );
}
