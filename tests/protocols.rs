//! The manager composed first beside the protocols people run (identify, ping, Kademlia,
//! gossipsub, request-response): an 8-node network where every node dials every other at once
//! ends with one connection per pair, and every protocol works across it.

use std::{collections::HashSet, time::Duration};

use futures::StreamExt;
use libp2p::{
    gossipsub, identify,
    identity::Keypair,
    kad, noise, ping,
    request_response::{self, ProtocolSupport},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use libp2p_connection_manager as manager;
use tokio::sync::{mpsc, oneshot, watch};

const N: usize = 8;
const TOPIC: &str = "composition";

#[derive(NetworkBehaviour)]
struct Composed {
    manager: manager::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    rr: request_response::cbor::Behaviour<String, String>,
}

enum Command {
    Dial(Multiaddr),
    AddKadAddress(PeerId, Multiaddr),
    Publish(Vec<u8>, oneshot::Sender<bool>),
    Request(PeerId, String),
    PutRecord(Vec<u8>, Vec<u8>),
    GetRecord(Vec<u8>),
}

#[derive(Debug, Clone, Default)]
struct State {
    /// Established connections per connected peer (the swarm's own count).
    connections: Vec<(PeerId, u32)>,
    pending: u32,
    manager_events: Vec<manager::Event>,
    gossip_received: Vec<Vec<u8>>,
    gossip_peers: usize,
    responses: Vec<String>,
    records_found: Vec<Vec<u8>>,
    records_put: usize,
}

struct Node {
    peer: PeerId,
    addr: Multiaddr,
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<State>,
}

fn swarm(key: Keypair) -> Swarm<Composed> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let mut kad = kad::Behaviour::new(peer, kad::store::MemoryStore::new(peer));
            kad.set_mode(Some(kad::Mode::Server));
            let mut gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::Config::default(),
            )
            .expect("gossipsub");
            gossipsub
                .subscribe(&gossipsub::IdentTopic::new(TOPIC))
                .expect("subscribe");
            Composed {
                manager: manager::Behaviour::new(peer, manager::Config::default()),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/composition/1.0.0".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                kad,
                gossipsub,
                rr: request_response::cbor::Behaviour::new(
                    [(
                        StreamProtocol::new("/composition/echo/1"),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default(),
                ),
            }
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

async fn spawn() -> Node {
    let mut swarm = swarm(Keypair::generate_ed25519());
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    let mut state = State::default();
    let addr = loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => break address,
            SwarmEvent::Behaviour(ComposedEvent::Manager(event)) => {
                state.manager_events.push(event)
            }
            _ => {}
        }
    };
    let peer = *swarm.local_peer_id();
    let (commands, mut command_rx) = mpsc::unbounded_channel();
    let (state_tx, state_rx) = watch::channel(state.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                command = command_rx.recv() => match command {
                    Some(command) => run(&mut swarm, command),
                    None => return,
                },
                event = swarm.select_next_some() => record(&mut swarm, &mut state, event),
            }
            let info = swarm.network_info();
            state.pending = info.connection_counters().num_pending();
            state.connections = swarm
                .connected_peers()
                .map(|p| {
                    let n = swarm
                        .behaviour()
                        .manager
                        .peer_info(p)
                        .map_or(0, |i| i.connections.len() as u32);
                    (*p, n)
                })
                .collect();
            state.gossip_peers = swarm.behaviour().gossipsub.all_peers().count();
            let _ = state_tx.send(state.clone());
        }
    });
    Node {
        peer,
        addr,
        commands,
        state: state_rx,
    }
}

fn run(swarm: &mut Swarm<Composed>, command: Command) {
    let behaviour = swarm.behaviour_mut();
    match command {
        Command::Dial(addr) => {
            let _ = swarm.dial(addr);
        }
        Command::AddKadAddress(peer, addr) => {
            behaviour.kad.add_address(&peer, addr);
        }
        Command::Publish(data, reply) => {
            let topic = gossipsub::IdentTopic::new(TOPIC);
            let _ = reply.send(behaviour.gossipsub.publish(topic, data).is_ok());
        }
        Command::Request(peer, text) => {
            behaviour.rr.send_request(&peer, text);
        }
        Command::PutRecord(key, value) => {
            let record = kad::Record::new(key, value);
            behaviour
                .kad
                .put_record(record, kad::Quorum::One)
                .expect("store locally");
        }
        Command::GetRecord(key) => {
            behaviour.kad.get_record(kad::RecordKey::new(&key));
        }
    }
}

fn record(swarm: &mut Swarm<Composed>, state: &mut State, event: SwarmEvent<ComposedEvent>) {
    let SwarmEvent::Behaviour(event) = event else {
        return;
    };
    match event {
        ComposedEvent::Manager(event) => state.manager_events.push(event),
        ComposedEvent::Gossipsub(gossipsub::Event::Message { message, .. }) => {
            state.gossip_received.push(message.data)
        }
        ComposedEvent::Rr(request_response::Event::Message { message, .. }) => match message {
            request_response::Message::Request {
                request, channel, ..
            } => {
                let _ = swarm
                    .behaviour_mut()
                    .rr
                    .send_response(channel, format!("echo: {request}"));
            }
            request_response::Message::Response { response, .. } => state.responses.push(response),
        },
        ComposedEvent::Kad(kad::Event::OutboundQueryProgressed { result, .. }) => match result {
            kad::QueryResult::GetRecord(Ok(kad::GetRecordOk::FoundRecord(found))) => {
                state.records_found.push(found.record.value)
            }
            kad::QueryResult::PutRecord(Ok(_)) => state.records_put += 1,
            _ => {}
        },
        _ => {}
    }
}

/// Waits until `condition` holds over every node's state, or fails after `deadline`.
async fn wait_until(
    nodes: &mut [Node],
    deadline: Duration,
    mut condition: impl FnMut(&[State]) -> bool,
) -> Vec<State> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let states: Vec<State> = nodes.iter().map(|n| n.state.borrow().clone()).collect();
        if condition(&states) {
            return states;
        }
        let changes: Vec<_> = nodes
            .iter_mut()
            .map(|n| Box::pin(n.state.changed()))
            .collect();
        if tokio::time::timeout_at(until, futures::future::select_all(changes))
            .await
            .is_err()
        {
            let summary: Vec<_> = states
                .iter()
                .map(|s| {
                    (
                        s.connections.len(),
                        s.pending,
                        s.gossip_peers,
                        s.gossip_received.len(),
                    )
                })
                .collect();
            panic!("deadline passed; (peers, pending, gossip peers, gossip received) per node: {summary:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocol_works_across_a_mesh_with_one_connection_per_pair() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut nodes = Vec::new();
    for _ in 0..N {
        nodes.push(spawn().await);
    }
    // Kademlia learns every address; then everyone dials everyone at once.
    for i in 0..N {
        for j in 0..N {
            if i != j {
                let (peer, addr) = (nodes[j].peer, nodes[j].addr.clone());
                nodes[i]
                    .commands
                    .send(Command::AddKadAddress(peer, addr))
                    .expect("alive");
            }
        }
    }
    for i in 0..N {
        for j in 0..N {
            if i != j {
                let addr = nodes[j]
                    .addr
                    .clone()
                    .with(libp2p::multiaddr::Protocol::P2p(nodes[j].peer));
                nodes[i].commands.send(Command::Dial(addr)).expect("alive");
            }
        }
    }
    let states = wait_until(&mut nodes, Duration::from_secs(60), |s| {
        s.iter().all(|s| {
            s.pending == 0
                && s.connections.len() == N - 1
                && s.connections.iter().all(|(_, n)| *n == 1)
        })
    })
    .await;

    // Gossipsub: a message published on node 0 reaches all the others.
    wait_until(&mut nodes, Duration::from_secs(30), |s| {
        s.iter().all(|s| s.gossip_peers >= N - 1)
    })
    .await;
    let (reply, published) = oneshot::channel();
    nodes[0]
        .commands
        .send(Command::Publish(b"hello mesh".to_vec(), reply))
        .expect("alive");
    assert!(published.await.expect("reply"), "publish failed");
    wait_until(&mut nodes, Duration::from_secs(30), |s| {
        s[1..]
            .iter()
            .all(|s| s.gossip_received.contains(&b"hello mesh".to_vec()))
    })
    .await;

    // Request-response across a pair whose duplicate connection was closed.
    let (asker, answerer) = (0..N)
        .find_map(|i| {
            states[i].manager_events.iter().find_map(|e| match e {
                manager::Event::DuplicateClosed { peer, .. } => {
                    let j = nodes.iter().position(|n| n.peer == *peer)?;
                    Some((i, j))
                }
                _ => None,
            })
        })
        .expect("with 8 nodes dialing each other at once, some duplicate was closed");
    let answerer_peer = nodes[answerer].peer;
    nodes[asker]
        .commands
        .send(Command::Request(answerer_peer, "ping?".into()))
        .expect("alive");
    wait_until(&mut nodes, Duration::from_secs(20), |s| {
        s[asker].responses.contains(&"echo: ping?".to_string())
    })
    .await;

    // Kademlia: a record stored from node 0 is found from node 5.
    nodes[0]
        .commands
        .send(Command::PutRecord(b"key".to_vec(), b"value".to_vec()))
        .expect("alive");
    wait_until(&mut nodes, Duration::from_secs(30), |s| {
        s[0].records_put > 0
    })
    .await;
    nodes[5]
        .commands
        .send(Command::GetRecord(b"key".to_vec()))
        .expect("alive");
    wait_until(&mut nodes, Duration::from_secs(30), |s| {
        s[5].records_found.contains(&b"value".to_vec())
    })
    .await;

    // And still exactly one connection per pair.
    let states = wait_until(&mut nodes, Duration::from_secs(10), |s| {
        s.iter().all(|s| s.pending == 0)
    })
    .await;
    let distinct: HashSet<_> = states
        .iter()
        .flat_map(|s| s.connections.iter().map(|(_, n)| *n))
        .collect();
    assert_eq!(distinct, HashSet::from([1]));
    for s in &states {
        assert_eq!(s.connections.len(), N - 1);
    }
}
