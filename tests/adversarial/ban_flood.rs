//! The ban flood: many fresh PeerIds connect to a node over TCP, and each commits protocol
//! violations (a malformed goodbye frame and a malformed peer list on every connection) until
//! it is banned. PeerIds cost nothing, so without a bound every one of them would leave a ban
//! in the node's memory and in its peer store. The node must hold at most its cap of automatic
//! bans, write none of them to the store, keep the application's own ban, and keep serving
//! honest peers throughout.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures::{future::join_all, StreamExt};
use libp2p::{
    identity::Keypair,
    noise, request_response,
    request_response::ProtocolSupport,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
};
use libp2p_connection_manager::{
    exchange::protocol::PEERS_PROTOCOL,
    goodbye::protocol::GOODBYE_PROTOCOL,
    store::{MemoryStore, PeerStore},
    AutomaticBans, BanTarget, Config, Denial, Event, PeerExchange,
};

use crate::common::*;
use crate::raw_codec::Raw;

/// Fresh PeerIds the attacker uses.
const ATTACKERS: usize = 40;
/// Attackers running at once.
const AT_ONCE: usize = 8;
/// Connections each attacker opens, one after the other (it stops once refused).
const CONNECTIONS_EACH: usize = 2;
/// Violations within the window that ban a peer, in this scenario.
const THRESHOLD: u32 = 2;
/// The cap on automatic peer bans the node is given.
const CAP: usize = 16;

/// A goodbye frame whose length prefix announces 65 bytes, above the 64-byte cap.
const BAD_GOODBYE: &[u8] = &[65];
/// A peer-list frame of two bytes whose protobuf field number is 0.
const BAD_PEER_LIST: &[u8] = &[2, 0, 0];

#[derive(NetworkBehaviour)]
struct Attacker {
    goodbye: request_response::Behaviour<Raw>,
    peers: request_response::Behaviour<Raw>,
}

fn raw(protocol: StreamProtocol) -> request_response::Behaviour<Raw> {
    request_response::Behaviour::with_codec(
        Raw,
        [(protocol, ProtocolSupport::Outbound)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
    )
}

fn attacker_swarm(key: Keypair) -> Swarm<Attacker> {
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| Attacker {
            goodbye: raw(GOODBYE_PROTOCOL),
            peers: raw(PEERS_PROTOCOL),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(1)))
        .build()
}

/// What one attacker spent.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    peer_ids: usize,
    connections: usize,
    frames: usize,
}

impl std::ops::AddAssign for Spent {
    fn add_assign(&mut self, other: Self) {
        self.peer_ids += other.peer_ids;
        self.connections += other.connections;
        self.frames += other.frames;
    }
}

/// One fresh PeerId: up to `CONNECTIONS_EACH` connections to `target`, one after the other,
/// each carrying a malformed goodbye and a malformed peer list, until the node refuses it.
async fn attack(target: Multiaddr) -> (PeerId, Spent) {
    let mut swarm = attacker_swarm(Keypair::generate_ed25519());
    let peer = *swarm.local_peer_id();
    let mut spent = Spent {
        peer_ids: 1,
        ..Spent::default()
    };
    for _ in 0..CONNECTIONS_EACH {
        if swarm.dial(target.clone()).is_err() {
            break;
        }
        spent.connections += 1;
        let mut let_in = false;
        let one_connection = async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                        let behaviour = swarm.behaviour_mut();
                        behaviour
                            .goodbye
                            .send_request(&peer_id, BAD_GOODBYE.to_vec());
                        behaviour
                            .peers
                            .send_request(&peer_id, BAD_PEER_LIST.to_vec());
                        spent.frames += 2;
                        let_in = true;
                    }
                    SwarmEvent::ConnectionClosed {
                        num_established: 0, ..
                    }
                    | SwarmEvent::OutgoingConnectionError { .. } => return,
                    _ => {}
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), one_connection)
            .await
            .is_err()
        {
            break;
        }
        if !let_in {
            break;
        }
    }
    (peer, spent)
}

/// The bans in force after `events`, from the node's own `Banned`/`Unbanned` events.
fn bans_in_force(events: &[Event]) -> HashSet<BanTarget> {
    let mut bans = HashSet::new();
    for event in events {
        match event {
            Event::Banned { target, .. } => {
                bans.insert(*target);
            }
            Event::Unbanned { target, .. } => {
                bans.remove(target);
            }
            _ => {}
        }
    }
    bans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_fresh_peer_ids_committing_violations_leaves_bounded_bans_and_none_stored() {
    init_tracing();
    let store = MemoryStore::new();
    let mut node = Node::spawn(NodeConfig {
        manager: Config::default()
            .with_peer_exchange(Some(PeerExchange::new()))
            .with_violation_ban(
                THRESHOLD,
                Duration::from_secs(600),
                Duration::from_secs(3600),
            )
            .with_automatic_bans(AutomaticBans::new().with_max_peer_bans(CAP)),
        store: Some(Box::new(store.clone()) as Box<dyn PeerStore>),
        ..Default::default()
    })
    .await;
    // The application's own ban, which must survive the flood and be stored.
    let chosen = PeerId::random();
    node.send(Command::BanPeer(chosen, None));
    // An honest peer connected before the flood, which must stay connected through it.
    let mut honest = Node::spawn(NodeConfig::default()).await;
    honest.send(Command::ManagerDial(node.peer, node.addr.clone()));
    let (node_id, honest_id) = (node.peer, honest.peer);
    wait_until(
        &mut [&mut node, &mut honest],
        Duration::from_secs(10),
        |s| s[0].connections_to(&honest_id) == 1 && s[1].connections_to(&node_id) == 1,
    )
    .await
    .unwrap_or_else(|s| panic!("the honest peer did not connect: {s:#?}"));

    // The flood.
    let started = std::time::Instant::now();
    let mut attackers = HashSet::new();
    let mut spent = Spent::default();
    for _ in 0..ATTACKERS / AT_ONCE {
        let batch = (0..AT_ONCE).map(|_| attack(node.p2p_addr()));
        for (peer, one) in join_all(batch).await {
            attackers.insert(peer);
            spent += one;
        }
    }
    let flood_time = started.elapsed();

    // A second honest peer, after the flood.
    let mut late = Node::spawn(NodeConfig::default()).await;
    late.send(Command::ManagerDial(node.peer, node.addr.clone()));
    let late_id = late.peer;
    let snapshots = settled(
        &mut [&mut node, &mut honest, &mut late],
        Duration::from_secs(20),
        |s| {
            s[0].connections_to(&honest_id) == 1
                && s[0].connections_to(&late_id) == 1
                && s[2].connections_to(&node_id) == 1
                && s[0].established == 2
        },
    )
    .await
    .unwrap_or_else(|s| panic!("the node stopped serving honest peers: {s:#?}"));
    let events = &snapshots[0].events;
    // Everything the node decided is in the store once it flushed.
    node.query(|swarm| swarm.behaviour_mut().manager.flush_store())
        .await
        .expect("the store takes the last batch");
    let stored = store.snapshot();

    let held = bans_in_force(events);
    let automatic_held = held
        .iter()
        .filter(|t| matches!(t, BanTarget::Peer(p) if attackers.contains(p)))
        .count();
    let placed = events
        .iter()
        .filter(|e| matches!(e, Event::Banned { target: BanTarget::Peer(p), .. } if attackers.contains(p)))
        .count();
    // Second connections refused because the first one alone got the PeerId banned.
    let refused_as_banned = events
        .iter()
        .filter(|e| {
            matches!(e, Event::Denied { peer: Some(p), denial: Denial::PeerBanned { .. }, .. }
                if attackers.contains(p))
        })
        .count();
    let network_bans = held
        .iter()
        .filter(|t| matches!(t, BanTarget::Network(_)))
        .count();
    let stored_attacker_bans = stored
        .bans
        .iter()
        .filter(|b| matches!(b.target, BanTarget::Peer(p) if attackers.contains(&p)))
        .count();
    let stored_attacker_peers = stored
        .peers
        .iter()
        .filter(|(p, _)| attackers.contains(p))
        .count();
    let mut disconnected: HashMap<PeerId, usize> = HashMap::new();
    for event in events {
        if let Event::Disconnected { peer, .. } = event {
            *disconnected.entry(*peer).or_default() += 1;
        }
    }
    let honest_evicted = usize::from(disconnected.contains_key(&honest.peer));
    println!(
        "ban flood (swarm): attacker spent {} PeerIds, {} connections, {} malformed frames in \
         {flood_time:?}; got {} automatic bans placed ({refused_as_banned} PeerIds banned by one \
         connection), {automatic_held} held in memory (cap {CAP}), {network_bans} network bans, {} ban records and {} peer records of its own in \
         the store ({} bans, {} peers stored in all), {honest_evicted} honest peers evicted",
        spent.peer_ids,
        spent.connections,
        spent.frames,
        placed,
        stored_attacker_bans,
        stored_attacker_peers,
        stored.bans.len(),
        stored.peers.len(),
    );

    assert!(
        automatic_held <= CAP,
        "{automatic_held} automatic bans held, above the cap of {CAP}"
    );
    assert!(placed >= CAP, "the flood did get peers banned ({placed})");
    assert_eq!(stored_attacker_bans, 0, "an automatic ban was written");
    let stored_targets: Vec<BanTarget> = stored.bans.iter().map(|b| b.target).collect();
    assert_eq!(
        stored_targets,
        vec![BanTarget::Peer(chosen)],
        "the application's ban is stored, and only it"
    );
    assert!(
        held.contains(&BanTarget::Peer(chosen)),
        "the application's ban holds"
    );
    assert_eq!(honest_evicted, 0, "the honest peer was disconnected");
}
