//! Benchmarks of the sans-IO core: the cost of one connection event as the number of tracked
//! peers grows (also with the peer store's journal on, and with its changes written to a
//! `MemoryStore`, and with peer exchange on), a ban check, a trim of 10,000 peers, and a round
//! of peer lists to every connected peer.
//!
//! `cargo bench --features testing --bench core` (add `-- --quick` for a fast pass). The
//! feature exposes the store driver's own conversion of changes to store operations
//! (`testing::store_ops`), so that the benchmark measures it and not a copy.

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use libp2p_connection_manager::{
    core::{CloseCause, Manager, NewConnection},
    store::{MemoryStore, PeerStore},
    testing::store_ops,
    Config, Initiator, Limits, PeerExchange,
};
use libp2p_core::{Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
use web_time::{Instant, SystemTime};

/// A manager with `peers` connected peers (inbound, one connection each).
fn manager_with(peers: usize, config: Config, now: Instant) -> (Manager, usize) {
    let mut manager = Manager::new(PeerId::random(), config, now, 7);
    let addr: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().expect("address");
    for n in 0..peers {
        establish_inbound(
            &mut manager,
            now,
            ConnectionId::new_unchecked(n),
            PeerId::random(),
            &addr,
        );
    }
    while manager.poll_action().is_some() {}
    (manager, peers)
}

/// An inbound connection from `peer` through the established check, as the swarm reports it.
fn establish_inbound(
    manager: &mut Manager,
    now: Instant,
    connection: ConnectionId,
    peer: PeerId,
    addr: &Multiaddr,
) {
    let new = NewConnection::new(Initiator::Remote, Endpoint::Listener, addr.clone());
    manager
        .check_established(now, connection, peer, &new)
        .expect("accepted");
    manager.on_established(now, connection, peer, new);
}

fn quiet_config() -> Config {
    Config::default()
        .with_limits(Limits::unlimited())
        .with_inactivity_timeout(None)
}

/// Connected peers in the connection-event benchmarks.
const SIZES: [usize; 3] = [1_000, 10_000, 100_000];

/// Connection events between two hand-overs of the journal: the default `StoreConfig::max_batch`
/// (the behaviour hands over sooner only when fewer events than this happen in a second).
const BATCH: usize = 1024;

/// One inbound connection from a new peer: admitted, checked, established, closed.
fn one_event(manager: &mut Manager, now: Instant, id: usize, addr: &Multiaddr) {
    let peer = PeerId::random();
    let connection = ConnectionId::new_unchecked(id);
    manager
        .on_pending_inbound(now, connection, addr)
        .expect("admitted");
    establish_inbound(manager, now, connection, peer, addr);
    manager.on_closed(now, connection, peer, CloseCause::Transport);
    while let Some(action) = manager.poll_action() {
        black_box(action);
    }
}

fn connection_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("establish_and_close");
    for peers in SIZES {
        let now = Instant::now();
        let (mut manager, mut next) = manager_with(peers, quiet_config(), now);
        let addr: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().expect("address");
        group.bench_with_input(BenchmarkId::from_parameter(peers), &peers, |b, _| {
            b.iter(|| {
                next += 1;
                one_event(&mut manager, now, next, &addr);
            })
        });
    }
    group.finish();
}

/// `establish_and_close` with the journal of a peer store on (`track_changes(true)`, as
/// `Behaviour::with_store` sets it): every event records a new peer, and every [`BATCH`]
/// events the changes are taken, as the behaviour's store driver does.
fn journaled_connection_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("establish_and_close_journaled");
    for peers in SIZES {
        let now = Instant::now();
        let (mut manager, mut next) = manager_with(peers, quiet_config(), now);
        manager.track_changes(true);
        let addr: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().expect("address");
        group.bench_with_input(BenchmarkId::from_parameter(peers), &peers, |b, _| {
            b.iter(|| {
                next += 1;
                one_event(&mut manager, now, next, &addr);
                if next.is_multiple_of(BATCH) {
                    black_box(manager.take_changes());
                }
            })
        });
    }
    group.finish();
}

/// `establish_and_close_journaled` with 1,000 peers connected and the changes converted to
/// store operations (dropped): what the driver does on the swarm's task before
/// `PeerStore::write`, which for `RedbStore` only queues the batch.
fn journaled_event_to_ops(c: &mut Criterion) {
    let now = Instant::now();
    let wall = SystemTime::now();
    let (mut manager, mut next) = manager_with(1_000, quiet_config(), now);
    manager.track_changes(true);
    let addr: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().expect("address");
    c.bench_function("establish_and_close_journaled_to_ops/1000", |b| {
        b.iter(|| {
            next += 1;
            one_event(&mut manager, now, next, &addr);
            if next.is_multiple_of(BATCH) {
                drop(black_box(store_ops(manager.take_changes(), now, wall)));
            }
        })
    });
}

/// `establish_and_close_journaled` with 1,000 peers connected, the changes converted to store
/// operations and written to a `MemoryStore` (which applies them in `write`, on the caller's
/// thread; with a new peer every event it stays at its default cap of 10,000 peers, pruning
/// the stalest 10% whenever a batch takes it past).
fn journaled_event_to_memory_store(c: &mut Criterion) {
    let now = Instant::now();
    let wall = SystemTime::now();
    let (mut manager, mut next) = manager_with(1_000, quiet_config(), now);
    manager.track_changes(true);
    let mut store = MemoryStore::new();
    let addr: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().expect("address");
    c.bench_function("establish_and_close_journaled_to_memory_store/1000", |b| {
        b.iter(|| {
            next += 1;
            one_event(&mut manager, now, next, &addr);
            if next.is_multiple_of(BATCH) {
                let ops = store_ops(manager.take_changes(), now, wall);
                store.write(ops).expect("written");
            }
        })
    });
}

fn ban_check(c: &mut Criterion) {
    let now = Instant::now();
    let (mut manager, _) = manager_with(0, quiet_config(), now);
    for n in 0..10_000u32 {
        manager.ban_peer(now, PeerId::random(), Some(Duration::from_secs(3600)));
        let net = format!("10.{}.{}.0/24", (n >> 8) & 0xff, n & 0xff);
        manager.ban_network(now, net.parse().expect("network"), None);
    }
    while manager.poll_action().is_some() {}
    let peer = PeerId::random();
    let addr: Multiaddr = "/ip4/192.0.2.1/tcp/4001".parse().expect("address");
    c.bench_function("admit_with_10k_peer_and_10k_network_bans", |b| {
        let mut next = 0;
        b.iter(|| {
            next += 1;
            let connection = ConnectionId::new_unchecked(next);
            let admitted = manager.on_pending_inbound(now, connection, &addr);
            let allowed = manager.check_established(
                now,
                connection,
                peer,
                &NewConnection::new(Initiator::Remote, Endpoint::Listener, addr.clone()),
            );
            manager.on_listen_failure(connection);
            black_box((admitted, allowed))
        })
    });
}

fn trim(c: &mut Criterion) {
    let now = Instant::now();
    let config = quiet_config()
        .with_watermarks(5_000, 10_000)
        .with_trim_grace(Duration::ZERO);
    c.bench_function("trim_10k_peers_to_5k", |b| {
        b.iter_batched(
            || manager_with(10_000, config.clone(), now).0,
            |mut manager| {
                let trimmed = manager.force_trim(now + Duration::from_secs(1));
                assert_eq!(trimmed.len(), 5_000);
                manager
            },
            BatchSize::LargeInput,
        )
    });
}

/// A manager with peer exchange on and `peers` connected peers, each with a public address
/// it reported (identify), every one of them given a list when it connected at `now`.
fn exchanging_manager(peers: usize, now: Instant) -> Manager {
    let config = quiet_config().with_peer_exchange(Some(PeerExchange::new()));
    let mut manager = Manager::new(PeerId::random(), config, now, 7);
    for n in 0..peers {
        let peer = PeerId::random();
        let [_, b, c, d] = (n as u32).to_be_bytes();
        let addr: Multiaddr = format!("/ip4/203.{b}.{c}.{d}/tcp/4001")
            .parse()
            .expect("address");
        establish_inbound(
            &mut manager,
            now,
            ConnectionId::new_unchecked(n),
            peer,
            &addr,
        );
        // Its listen address, as identify reports it once connected.
        manager.on_peer_address(now, peer, addr);
    }
    while manager.poll_action().is_some() {}
    manager
}

/// One peer-list round: a peer connects one interval after the others, and one interval later
/// every connected peer is sent a list naming up to 64 others. `exchange_round` is the whole
/// round (its steps driven one after the other), `exchange_round_step` the first step alone:
/// the longest the round holds the swarm's task at once.
fn exchange_round(c: &mut Criterion) {
    let now = Instant::now();
    let interval = Duration::from_secs(10);
    let addr: Multiaddr = "/ip4/198.51.100.1/tcp/4001".parse().expect("address");
    let setup = |peers: usize| {
        let mut manager = exchanging_manager(peers, now);
        let late = PeerId::random();
        let cid = ConnectionId::new_unchecked(peers);
        establish_inbound(&mut manager, now + interval, cid, late, &addr);
        while manager.poll_action().is_some() {}
        manager
    };
    let drain = |manager: &mut Manager| {
        let mut actions = 0;
        while let Some(action) = manager.poll_action() {
            actions += 1;
            black_box(action);
        }
        actions
    };
    for (name, whole) in [("exchange_round", true), ("exchange_round_step", false)] {
        let mut group = c.benchmark_group(name);
        group.sample_size(10);
        for peers in [1_000, 4_000] {
            group.bench_with_input(BenchmarkId::from_parameter(peers), &peers, |b, &peers| {
                b.iter_batched(
                    || setup(peers),
                    |mut manager| {
                        let mut at = now + 2 * interval;
                        manager.handle_timeout(at);
                        let mut lists = drain(&mut manager);
                        while whole && manager.poll_timeout().is_some_and(|d| d < at + interval) {
                            at = manager.poll_timeout().expect("a step is due");
                            manager.handle_timeout(at);
                            lists += drain(&mut manager);
                        }
                        assert!(!whole || lists >= peers, "a list to every peer: {lists}");
                        manager
                    },
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}

/// One inbound connection from a new peer with peer exchange on, with N peers connected: it
/// is sent a list when it connects.
fn exchanging_connection_event(c: &mut Criterion) {
    let now = Instant::now();
    let mut group = c.benchmark_group("establish_and_close_exchanging");
    for peers in [1_000, 4_000] {
        let mut manager = exchanging_manager(peers, now);
        let addr: Multiaddr = "/ip4/198.51.100.2/tcp/4001".parse().expect("address");
        let mut next = peers;
        group.bench_with_input(BenchmarkId::from_parameter(peers), &peers, |b, _| {
            b.iter(|| {
                next += 1;
                one_event(&mut manager, now, next, &addr);
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    connection_event,
    journaled_connection_event,
    journaled_event_to_ops,
    journaled_event_to_memory_store,
    ban_check,
    trim,
    exchange_round,
    exchanging_connection_event
);
criterion_main!(benches);
