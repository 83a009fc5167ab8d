//! Hearsay is not discovery (issue 18), over real TCP: what a remote says about third parties
//! in peer-exchange lists must not get an honest hub banned, eclipse a wanted peer, turn the
//! node into a dialer of a third party's address, starve the application's and bootstrap
//! dials, or come back after a restart as the application's own. Each scenario prints what the
//! attacker spent and what it got.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::StreamExt;
use libp2p::{
    identify,
    identity::Keypair,
    multiaddr::{multihash::Multihash, Protocol},
    noise, request_response,
    request_response::ProtocolSupport,
    swarm::SwarmEvent,
    tcp, yamux, Multiaddr, PeerId,
};
use libp2p_connection_manager::{
    exchange::protocol::PEERS_PROTOCOL,
    store::{MemoryStore, PeerStore},
    Backoff, BanTarget, Config, Denial, DisconnectReason, Event, Limits, PeerExchange,
};

use crate::raw_codec::Raw;
use crate::{common::*, source_bound::add_ipv6_to_loopback};

fn exchanging(interval: Duration) -> Config {
    Config::default().with_peer_exchange(Some(
        PeerExchange::new()
            .with_auto_connect(true)
            .with_interval(interval),
    ))
}

// ---------------------------------------------------------------------------------------------
// The attacker's tools: a swarm that writes raw peer-list frames, and third parties.

/// A varint-prefixed peer-list frame naming `peers` (the wire format, written by hand).
fn peer_list_frame(peers: &[(PeerId, Vec<Multiaddr>)]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, key: u8, value: &[u8]) {
        out.push(key);
        let mut buf = unsigned_varint::encode::usize_buffer();
        out.extend_from_slice(unsigned_varint::encode::usize(value.len(), &mut buf));
        out.extend_from_slice(value);
    }
    let mut body = Vec::new();
    for (peer, addrs) in peers {
        let mut entry = Vec::new();
        field(&mut entry, 0x0a, &peer.to_bytes());
        for a in addrs {
            field(&mut entry, 0x12, &a.to_vec());
        }
        field(&mut body, 0x0a, &entry);
    }
    let mut buf = unsigned_varint::encode::usize_buffer();
    let mut frame = unsigned_varint::encode::usize(body.len(), &mut buf).to_vec();
    frame.extend(body);
    frame
}

/// An attacker connected to `target` that sends the list `make()` builds every `every`, until
/// aborted; counts the lists it sent.
fn spawn_list_sender(
    target: Multiaddr,
    every: Duration,
    mut make: impl FnMut() -> Vec<(PeerId, Vec<Multiaddr>)> + Send + 'static,
) -> (PeerId, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| {
            request_response::Behaviour::<Raw>::with_codec(
                Raw,
                [(PEERS_PROTOCOL, ProtocolSupport::Outbound)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    let task = tokio::spawn(async move {
        swarm.dial(target).expect("dial");
        let mut remote = None;
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let SwarmEvent::ConnectionEstablished { peer_id, .. } = event {
                        remote = Some(peer_id);
                    }
                }
                _ = tick.tick() => {
                    if let Some(remote) = remote {
                        swarm.behaviour_mut().send_request(&remote, peer_list_frame(&make()));
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    (peer, sent, task)
}

/// A third party: a TCP listener that counts the connections it accepts. `hold` keeps them
/// open without a word (a tarpit: the dialer waits for its handshake to time out); otherwise
/// they are closed at once.
async fn spawn_third_party(ip: IpAddr, hold: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            if hold {
                held.push(socket);
            }
        }
    });
    (address, accepted)
}

fn tcp_addr(address: SocketAddr) -> Multiaddr {
    Multiaddr::from(address.ip()).with(Protocol::Tcp(address.port()))
}

/// Fresh PeerIds, all at `addresses`.
fn fresh_peers(n: usize, addresses: &[Multiaddr]) -> Vec<(PeerId, Vec<Multiaddr>)> {
    (0..n)
        .map(|i| {
            (
                PeerId::random(),
                vec![addresses[i % addresses.len()].clone()],
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Oversized lists from an honest hub.

/// A neighbour of the hub without this crate: it dials the hub and advertises, through
/// identify, four WebTransport addresses of about 100 bytes each.
fn spawn_neighbour(hub: Multiaddr, index: u16) -> tokio::task::JoinHandle<()> {
    let key = Keypair::generate_ed25519();
    let public = key.public();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| {
            identify::Behaviour::new(identify::Config::new("/test/1.0.0".into(), public))
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build();
    for port in 0..4u16 {
        let hash = |salt: u8| Multihash::<64>::wrap(0x12, &[salt; 32]).expect("multihash");
        let address = Multiaddr::empty()
            .with(Protocol::Ip6(Ipv6Addr::new(
                0x2001, 0xdb8, index, 0, 0, 0, 0, 1,
            )))
            .with(Protocol::Udp(4001 + port))
            .with(Protocol::QuicV1)
            .with(Protocol::WebTransport)
            .with(Protocol::Certhash(hash(index as u8)))
            .with(Protocol::Certhash(hash(port as u8)));
        swarm.add_external_address(address);
    }
    tokio::spawn(async move {
        swarm.dial(hub).expect("dial");
        loop {
            swarm.select_next_some().await;
        }
    })
}

const NEIGHBOURS: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_whose_neighbours_advertise_long_addresses_is_not_banned_by_its_listeners() {
    init_tracing();
    let hub = Node::spawn(NodeConfig {
        manager: exchanging(Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    let neighbours: Vec<_> = (0..NEIGHBOURS)
        .map(|i| spawn_neighbour(hub.p2p_addr(), i as u16 + 1))
        .collect();
    // The hub learns the neighbours' addresses through identify.
    let started = Instant::now();
    loop {
        let learned = hub
            .query(|swarm| {
                let manager = &swarm.behaviour().manager;
                let peers: Vec<PeerId> = manager.connected_peers().copied().collect();
                peers
                    .iter()
                    .filter(|p| manager.peer_info(p).is_some_and(|i| i.addresses.len() >= 4))
                    .count()
            })
            .await;
        if learned >= NEIGHBOURS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the hub learned the addresses of {learned} neighbours"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A listener running the crate, quick to come back after a violation.
    let mut listener = Node::spawn(NodeConfig {
        manager: exchanging(Duration::from_secs(1)).with_violation_backoff(Backoff::new(
            Duration::from_millis(200),
            1.0,
            Duration::from_millis(200),
        )),
        ..Default::default()
    })
    .await;
    listener.send(Command::ManagerDial(hub.peer, hub.addr.clone()));
    let hub_id = hub.peer;
    let banned = |s: &Snapshot| {
        s.events
            .iter()
            .any(|e| matches!(e, Event::Banned { target: BanTarget::Peer(p), .. } if *p == hub_id))
    };
    // Six seconds: room for three violations and the ban, or for the lists of a quiet hub.
    let s = wait_until(&mut [&mut listener], Duration::from_secs(6), |s| {
        banned(&s[0])
    })
    .await
    .unwrap_or_else(|s| s)
    .remove(0);
    let violations = s
        .events
        .iter()
        .filter(|e| {
            matches!(e, Event::Disconnected { peer, reason: DisconnectReason::ProtocolViolation, .. }
                if *peer == hub_id)
        })
        .count();
    let connected = s.connections_to(&hub_id);
    println!(
        "honest hub with long neighbour addresses: {NEIGHBOURS} neighbours advertising 4 \
         WebTransport addresses each; the listener counted {violations} violations against the \
         hub, banned it: {}, still connected to it: {}",
        banned(&s),
        connected == 1
    );
    for n in neighbours {
        n.abort();
    }
    assert_eq!(violations, 0, "the hub's lists are no violation");
    assert!(!banned(&s), "the honest hub was banned");
    assert_eq!(connected, 1);
}

// ---------------------------------------------------------------------------------------------
// A list naming a wanted peer.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_naming_a_wanted_peer_does_not_eclipse_it() {
    init_tracing();
    let store = MemoryStore::new();
    let mut node = Node::spawn(NodeConfig {
        manager: exchanging(Duration::from_secs(1)),
        store: Some(Box::new(store.clone()) as Box<dyn PeerStore>),
        ..Default::default()
    })
    .await;
    let key = Keypair::generate_ed25519();
    let wanted = Node::spawn(NodeConfig {
        keypair: Some(key.clone()),
        ..Default::default()
    })
    .await;
    let (wanted_id, wanted_addr) = (wanted.peer, wanted.addr.clone());
    let port = wanted_addr
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a port");
    node.send(Command::ManagerDial(wanted_id, wanted_addr.clone()));
    wait_until(&mut [&mut node], Duration::from_secs(10), |s| {
        s[0].connections_to(&wanted_id) == 1
    })
    .await
    .expect("the wanted peer connects");

    // The wanted peer goes down; while the node waits to redial it, an attacker names it with
    // eight addresses of its own (closed ports).
    wanted.stop().await;
    wait_until(&mut [&mut node], Duration::from_secs(10), |s| {
        s[0].connections_to(&wanted_id) == 0
    })
    .await
    .expect("the loss is seen");
    let forged: Vec<Multiaddr> = (0..8)
        .map(|i| format!("/ip4/127.0.0.1/tcp/{}", 1 + i).parse().unwrap())
        .collect();
    let list = vec![
        (wanted_id, forged[..4].to_vec()),
        (wanted_id, forged[4..].to_vec()),
    ];
    let (_, lists_sent, attacker) =
        spawn_list_sender(node.p2p_addr(), Duration::from_millis(300), move || {
            list.clone()
        });
    // A few lists arrive (one every 300 ms).
    let until = Instant::now() + Duration::from_secs(10);
    while lists_sent.load(Ordering::Relaxed) < 3 {
        assert!(
            Instant::now() < until,
            "the attacker could not send its lists"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addresses = node
        .query(move |swarm| {
            swarm
                .behaviour()
                .manager
                .peer_info(&wanted_id)
                .map(|i| i.addresses)
                .unwrap_or_default()
        })
        .await;
    // The wanted peer comes back on its address.
    let _wanted = Node::spawn(NodeConfig {
        keypair: Some(key),
        listen_port: Some(port),
        ..Default::default()
    })
    .await;
    let back = wait_until(&mut [&mut node], Duration::from_secs(15), |s| {
        s[0].connections_to(&wanted_id) == 1
    })
    .await
    .is_ok();
    attacker.abort();
    node.query(|swarm| swarm.behaviour_mut().manager.flush_store())
        .await
        .expect("the store takes the last batch");
    let stored = store
        .snapshot()
        .peers
        .into_iter()
        .find(|(p, _)| *p == wanted_id)
        .map(|(_, p)| p.addresses)
        .unwrap_or_default();
    let honest_kept = addresses.contains(&wanted_addr);
    let forged_kept = addresses.iter().filter(|a| forged.contains(a)).count();
    let forged_stored = stored.iter().filter(|a| forged.contains(a)).count();
    println!(
        "targeted eclipse: attacker spent {} lists naming a wanted peer with 8 forged addresses; \
         got its honest address evicted: {}, {forged_kept} forged addresses kept, \
         {forged_stored} written to the store; the node reconnected when the peer came back: \
         {back}",
        lists_sent.load(Ordering::Relaxed),
        !honest_kept
    );
    assert!(honest_kept, "{addresses:?}");
    assert_eq!(forged_stored, 0, "{stored:?}");
    assert!(back, "the wanted peer was eclipsed");
}

// ---------------------------------------------------------------------------------------------
// A third party's address.

/// The node's hearsay dials at a third party: an attacker connected to it names, every 100 ms,
/// 64 fresh PeerIds at the third party's addresses, for `secs` seconds.
async fn third_party(ip: IpAddr, ports: usize, interval: Duration, secs: u64) -> (usize, usize) {
    init_tracing();
    let node = Node::spawn(NodeConfig {
        manager: exchanging(interval),
        ..Default::default()
    })
    .await;
    let mut accepted = Vec::new();
    let mut addresses = Vec::new();
    for _ in 0..ports {
        let (address, count) = spawn_third_party(ip, false).await;
        addresses.push(tcp_addr(address));
        accepted.push(count);
    }
    let (_, lists, attacker) =
        spawn_list_sender(node.p2p_addr(), Duration::from_millis(100), move || {
            fresh_peers(64, &addresses)
        });
    tokio::time::sleep(Duration::from_secs(secs)).await;
    attacker.abort();
    let dials: usize = accepted.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    (lists.load(Ordering::Relaxed), dials)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_advertising_a_third_partys_address_gets_it_dialed_a_bounded_number_of_times() {
    let interval = Duration::from_secs(1);
    let secs = 5;
    let (lists, dials) = third_party("127.0.0.1".parse().unwrap(), 1, interval, secs).await;
    // One hearsay dial per address per interval, the first one at once.
    let bound = secs as usize + 1;
    println!(
        "third party's address: attacker spent {lists} lists of 64 fresh PeerIds at one address \
         in {secs} s; got {dials} connections to it from the node (bound {bound}: one per \
         address per interval of {interval:?})"
    );
    assert!(dials <= bound, "{dials} dials at the third party");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_advertising_many_ports_of_one_network_gets_it_dialed_a_bounded_number_of_times() {
    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0x18, 0x1, 0, 0, 0, 1);
    if let Err(why) = add_ipv6_to_loopback(ip) {
        println!("SKIPPED: the third party needs {ip} on lo: {why}");
        return;
    }
    let interval = Duration::from_secs(1);
    let secs = 5;
    let ports = 16;
    let (lists, dials) = third_party(IpAddr::V6(ip), ports, interval, secs).await;
    // The per-prefix budget: 4 hearsay dials per /48 per interval, the first ones at once.
    let bound = 4 * (secs as usize + 1);
    println!(
        "third party's network: attacker spent {lists} lists of 64 fresh PeerIds at {ports} \
         ports of one IPv6 address in {secs} s; got {dials} connections to it from the node \
         (bound {bound}: 4 per /48 per interval of {interval:?})"
    );
    assert!(dials <= bound, "{dials} dials at the third party");
}

// ---------------------------------------------------------------------------------------------
// A hearsay flood against the application's and bootstrap dials.

const PENDING: u32 = 8;

fn limited(interval: Duration) -> Config {
    exchanging(interval).with_limits(Limits::new().with_max_pending_outgoing(Some(PENDING)))
}

/// Fresh PeerIds at `tarpits` tarpits flood the node; then the application dials a peer.
async fn flood_against_the_application(tarpits: usize) {
    init_tracing();
    let mut node = Node::spawn(NodeConfig {
        manager: limited(Duration::from_secs(1)),
        ..Default::default()
    })
    .await;
    let mut addresses = Vec::new();
    let mut held = Vec::new();
    for _ in 0..tarpits {
        let (tarpit, count) = spawn_third_party("127.0.0.1".parse().unwrap(), true).await;
        addresses.push(tcp_addr(tarpit));
        held.push(count);
    }
    let (_, lists, attacker) =
        spawn_list_sender(node.p2p_addr(), Duration::from_millis(200), move || {
            fresh_peers(64, &addresses)
        });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The application dials a peer of its own.
    let honest = Node::spawn(NodeConfig::default()).await;
    let honest_id = honest.peer;
    let asked = Instant::now();
    node.send(Command::ManagerDial(honest.peer, honest.addr.clone()));
    let connected = wait_until(&mut [&mut node], Duration::from_secs(15), |s| {
        s[0].connections_to(&honest_id) == 1
    })
    .await;
    let took = asked.elapsed();
    attacker.abort();
    let s = match connected {
        Ok(s) | Err(s) => s.into_iter().next().unwrap(),
    };
    let waited = s
        .events
        .iter()
        .filter(|e| matches!(e, Event::WaitingForResources { peer, .. } if *peer == honest_id))
        .count();
    println!(
        "hearsay flood: attacker spent {} lists of 64 fresh PeerIds at {tarpits} tarpit(s); \
         got {} connections held in the tarpits, the application's dial waited for a slot \
         {waited} times and connected after {took:?} (pending-outbound limit {PENDING}, peak \
         {})",
        lists.load(Ordering::Relaxed),
        held.iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<usize>(),
        s.max_manager_pending,
    );
    assert_eq!(
        s.connections_to(&honest_id),
        1,
        "the application's dial starved"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Hearsay keeps to half of the slots; the application's dial may take one more.
    assert!(
        s.max_manager_pending <= PENDING as usize / 2 + 1,
        "peak {}",
        s.max_manager_pending
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hearsay_flood_leaves_slots_to_the_applications_dials() {
    flood_against_the_application(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hearsay_flood_at_many_tarpits_leaves_slots_to_the_applications_dials() {
    flood_against_the_application(16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hearsay_flood_leaves_slots_to_the_bootstrap_dials() {
    init_tracing();
    // The bootstrap peer, down at first (its port is taken again later).
    let key = Keypair::generate_ed25519();
    let first = Node::spawn(NodeConfig {
        keypair: Some(key.clone()),
        ..Default::default()
    })
    .await;
    let (boot_id, boot_addr) = (first.peer, first.addr.clone());
    let port = boot_addr
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a port");
    first.stop().await;
    let mut node = Node::spawn(NodeConfig {
        manager: limited(Duration::from_secs(1))
            .with_bootstrap_peer(boot_id, boot_addr)
            .with_bootstrap_backoff(Backoff::new(
                Duration::from_millis(300),
                1.0,
                Duration::from_millis(300),
            )),
        ..Default::default()
    })
    .await;
    let (tarpit, held) = spawn_third_party("127.0.0.1".parse().unwrap(), true).await;
    let tarpit = tcp_addr(tarpit);
    let (attacker_id, lists, attacker) =
        spawn_list_sender(node.p2p_addr(), Duration::from_millis(200), move || {
            fresh_peers(64, std::slice::from_ref(&tarpit))
        });
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The attacker leaves, the node has no connection left: a bootstrap round is due, and the
    // bootstrap peer is back.
    attacker.abort();
    let _boot = Node::spawn(NodeConfig {
        keypair: Some(key),
        listen_port: Some(port),
        ..Default::default()
    })
    .await;
    let left = Instant::now();
    let connected = wait_until(&mut [&mut node], Duration::from_secs(15), |s| {
        s[0].connections_to(&boot_id) == 1 && s[0].connections_to(&attacker_id) == 0
    })
    .await;
    let took = left.elapsed();
    let s = match connected {
        Ok(s) | Err(s) => s.into_iter().next().unwrap(),
    };
    let denied = s
        .events
        .iter()
        .filter(|e| {
            matches!(e, Event::Denied { peer: Some(p), denial: Denial::Limit { .. }, .. }
                if *p == boot_id)
        })
        .count();
    println!(
        "hearsay flood, then the attacker leaves: attacker spent {} lists of 64 fresh PeerIds \
         at a tarpit; got {} connections held in the tarpit; the bootstrap dial was refused \
         {denied} times and connected after {took:?} (pending-outbound limit {PENDING})",
        lists.load(Ordering::Relaxed),
        held.load(Ordering::Relaxed),
    );
    assert_eq!(s.connections_to(&boot_id), 1, "the bootstrap dial starved");
    assert!(took < Duration::from_secs(4), "{took:?}");
}

// ---------------------------------------------------------------------------------------------
// What hearsay leaves behind.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_nothing_hearsay_brought_comes_back_as_wanted() {
    init_tracing();
    const CLUSTER: usize = 4;
    const STRANGERS: usize = 20;
    let mut seed = Node::spawn(NodeConfig {
        manager: exchanging(Duration::from_millis(300)),
        ..Default::default()
    })
    .await;
    let mut others = Vec::new();
    for _ in 0..CLUSTER {
        let other = Node::spawn(NodeConfig {
            manager: exchanging(Duration::from_millis(300)),
            ..Default::default()
        })
        .await;
        other.send(Command::ManagerDial(seed.peer, seed.addr.clone()));
        others.push(other);
    }
    let store = MemoryStore::new();
    let key = Keypair::generate_ed25519();
    let mut node = Node::spawn(NodeConfig {
        manager: exchanging(Duration::from_millis(300)),
        store: Some(Box::new(store.clone()) as Box<dyn PeerStore>),
        keypair: Some(key.clone()),
        ..Default::default()
    })
    .await;
    node.send(Command::ManagerDial(seed.peer, seed.addr.clone()));
    let s = wait_until(&mut [&mut node, &mut seed], Duration::from_secs(20), |s| {
        s[0].established as usize == CLUSTER + 1
    })
    .await
    .unwrap_or_else(|s| panic!("the node did not meet the cluster: {s:#?}"));
    let met = s[0].established;
    // Strangers come and go.
    for _ in 0..STRANGERS {
        let stranger = Node::spawn(NodeConfig::default()).await;
        stranger.swarm_dial(&node);
        let stranger_id = stranger.peer;
        let _ = wait_until(&mut [&mut node], Duration::from_secs(5), |s| {
            s[0].connections_to(&stranger_id) == 1
        })
        .await;
        stranger.stop().await;
    }
    // Every stranger's disconnect is through the manager; stopping the node flushes its store.
    wait_until(&mut [&mut node], Duration::from_secs(10), |s| {
        s[0].established == met && s[0].is_quiet()
    })
    .await
    .unwrap_or_else(|s| panic!("the strangers did not go: {s:#?}"));
    node.stop().await;
    let stored = store.snapshot();
    let stored_wanted = stored.peers.iter().filter(|(_, p)| p.wanted).count();
    let stored_peers = stored.peers.len();
    // The restart.
    let mut again = Node::spawn(NodeConfig {
        manager: exchanging(Duration::from_millis(300)),
        store: Some(Box::new(store.clone()) as Box<dyn PeerStore>),
        keypair: Some(key),
        ..Default::default()
    })
    .await;
    let s = wait_until(&mut [&mut again], Duration::from_secs(2), |s| {
        s[0].events.iter().any(|e| matches!(e, Event::Restored(_)))
    })
    .await
    .unwrap_or_else(|s| s)
    .remove(0);
    let restored = s
        .events
        .iter()
        .find_map(|e| match e {
            Event::Restored(summary) => Some(*summary),
            _ => None,
        })
        .expect("restored");
    let seed_id = seed.peer;
    let wanted_after: HashSet<PeerId> = again
        .query(move |swarm| {
            let manager = &swarm.behaviour().manager;
            [seed_id]
                .into_iter()
                .chain(manager.connected_peers().copied())
                .filter(|p| manager.peer_info(p).is_some_and(|i| i.wanted))
                .collect()
        })
        .await;
    println!(
        "restart after hearsay: the node met {met} peers (1 asked for, {CLUSTER} by hearsay) \
         and {STRANGERS} strangers came and went; the store held {stored_peers} peer records, \
         {stored_wanted} wanted; the restart redialed {} as the application's own",
        restored.redials
    );
    assert_eq!(stored_wanted, 1, "only the seed the application dialed");
    assert_eq!(restored.redials, 1);
    assert!(
        stored_peers <= 1,
        "{stored_peers} records for strangers and hearsay"
    );
    assert!(wanted_after.contains(&seed_id));
}
