//! The metrics over a real connection (libp2p-swarm-test's memory transport): the counters the
//! events feed, the gauges read at scrape time, and one RTT sample per ping.
#![cfg(feature = "metrics")]

mod swarm_test_support;

use std::time::Duration;

use libp2p::{swarm::SwarmEvent, Swarm};
use libp2p_connection_manager::{
    metrics::{Metrics, Recorder},
    Behaviour, Config,
};
use libp2p_swarm_test::SwarmExt;
use prometheus_client::{encoding::text::encode, registry::Registry};
use swarm_test_support::*;

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).expect("the registry encodes");
    text
}

/// The value of the series `name` (with its labels) in `text`.
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn a_connection_shows_in_the_series_and_every_ping_in_the_histogram() {
    // Pings every 50 ms: several in well under a second.
    let config = Config::default().with_ping_interval(Duration::from_millis(50));
    let (mut a_registry, mut b_registry) = (Registry::default(), Registry::default());
    let a_metrics = Metrics::new(&mut a_registry);
    let b_metrics = Metrics::new(&mut b_registry);
    let mut a: Node = Swarm::new_ephemeral_tokio(|key| {
        Behaviour::new(key.public().to_peer_id(), config.clone()).with_metrics(&a_metrics)
    });
    let mut b: Node = Swarm::new_ephemeral_tokio(|key| {
        Behaviour::new(key.public().to_peer_id(), config).with_metrics(&b_metrics)
    });
    b.listen().with_memory_addr_external().await;
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    a.behaviour_mut()
        .add_peer(b_id, vec![address(&b)])
        .expect("B may be dialed");

    // The application records the events; nothing is called before a scrape.
    let record = |node: usize, event: &SwarmEvent<_>| {
        if let SwarmEvent::Behaviour(event) = event {
            [&a_metrics, &b_metrics][node].record(event);
        }
    };
    const PINGS: u64 = 3;
    let pings = |node: &Node, peer| {
        let info = node.behaviour().peer_info(&peer);
        info.map_or(0, |info| info.connections.iter().map(|c| c.pings).sum())
    };
    run_until_seeing(
        &mut [&mut a, &mut b],
        "A pinged B a few times",
        record,
        |nodes| pings(nodes[0], b_id) >= PINGS,
    )
    .await;

    // The gauges follow within the publish interval.
    let a_expected = [
        "connection_manager_connected_peers 1",
        r#"connection_manager_established_connections{direction="outbound"} 1"#,
        r#"connection_manager_established_connections{direction="inbound"} 0"#,
        r#"connection_manager_phase{phase="connected"} 1"#,
        r#"connection_manager_phase{phase="disconnected"} 0"#,
        "connection_manager_pending_connections 0",
        "connection_manager_wanted_peers 1",
        r#"connection_manager_connections_kept_total{direction="outbound",initiator="local"} 1"#,
        r#"connection_manager_phase_changes_total{phase="connected"} 1"#,
    ];
    let b_expected = [
        "connection_manager_connected_peers 1",
        r#"connection_manager_established_connections{direction="inbound"} 1"#,
        "connection_manager_wanted_peers 0",
        r#"connection_manager_connections_kept_total{direction="inbound",initiator="remote"} 1"#,
    ];
    let shows = |registry: &Registry, lines: &[&str]| {
        let text = scrape(registry);
        lines.iter().all(|line| text.lines().any(|l| l == *line))
    };
    run_until_seeing(
        &mut [&mut a, &mut b],
        "the series show the connection",
        record,
        |_| shows(&a_registry, &a_expected) && shows(&b_registry, &b_expected),
    )
    .await;

    // No polling from here on: the pings so far are all the histogram may hold.
    let text = scrape(&a_registry);
    let samples = value(&text, "connection_manager_ping_rtt_seconds_count");
    assert_eq!(
        samples,
        Some(pings(&a, b_id) as f64),
        "one sample per ping:\n{text}"
    );
    assert!(samples >= Some(PINGS as f64));
    let b_samples = value(
        &scrape(&b_registry),
        "connection_manager_ping_rtt_seconds_count",
    );
    assert_eq!(b_samples, Some(pings(&b, a_id) as f64));
}
