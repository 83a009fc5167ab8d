//! Benchmarks of the sans-IO core: the cost of one connection event as the number of tracked
//! peers grows, a ban check, and a trim of 10,000 peers.
//!
//! `cargo bench --bench core` (add `-- --quick` for a fast pass).

use std::{hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use libp2p_connection_manager::{
    core::{CloseCause, Manager, NewConnection},
    Config, Initiator, Limits,
};
use libp2p_core::{Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
use web_time::Instant;

/// A manager with `peers` connected peers (inbound, one connection each).
fn manager_with(peers: usize, config: Config, now: Instant) -> (Manager, usize) {
    let mut manager = Manager::new(PeerId::random(), config, now, 7);
    let addr: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().expect("address");
    for n in 0..peers {
        let peer = PeerId::random();
        let connection = ConnectionId::new_unchecked(n);
        manager
            .check_established(
                now,
                connection,
                peer,
                &NewConnection::new(Initiator::Remote, Endpoint::Listener, addr.clone()),
            )
            .expect("accepted");
        manager.on_established(
            now,
            connection,
            peer,
            NewConnection::new(Initiator::Remote, Endpoint::Listener, addr.clone()),
        );
    }
    while manager.poll_action().is_some() {}
    (manager, peers)
}

fn quiet_config() -> Config {
    Config::default()
        .with_limits(Limits::unlimited())
        .with_inactivity_timeout(None)
}

fn connection_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("establish_and_close");
    for peers in [1_000usize, 10_000, 100_000] {
        let now = Instant::now();
        let (mut manager, mut next) = manager_with(peers, quiet_config(), now);
        let addr: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().expect("address");
        group.bench_with_input(BenchmarkId::from_parameter(peers), &peers, |b, _| {
            b.iter(|| {
                next += 1;
                let peer = PeerId::random();
                let connection = ConnectionId::new_unchecked(next);
                manager
                    .on_pending_inbound(now, connection, &addr)
                    .expect("admitted");
                manager
                    .check_established(
                        now,
                        connection,
                        peer,
                        &NewConnection::new(Initiator::Remote, Endpoint::Listener, addr.clone()),
                    )
                    .expect("accepted");
                manager.on_established(
                    now,
                    connection,
                    peer,
                    NewConnection::new(Initiator::Remote, Endpoint::Listener, addr.clone()),
                );
                manager.on_closed(now, connection, peer, CloseCause::Transport);
                while let Some(action) = manager.poll_action() {
                    black_box(action);
                }
            })
        });
    }
    group.finish();
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

criterion_group!(benches, connection_event, ban_check, trim);
criterion_main!(benches);
