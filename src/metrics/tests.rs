//! The metrics' unit tests: labels of the counters, the histogram units, and the gauges a
//! behaviour publishes.

use std::{pin::pin, task::Poll, time::Duration};

use futures::future::{poll_fn, select, Either};
use libp2p_core::Endpoint;
use libp2p_identity::PeerId;
use libp2p_swarm::{ConnectionId, NetworkBehaviour};
use prometheus_client::encoding::text::encode;

use super::*;
use crate::{
    BanTarget, Behaviour, ClosedBy, Config, Denial, DialFailureCause, DisconnectReason, Initiator,
    LimitKind, Phase,
};

fn encoded(registry: &Registry) -> String {
    let mut text = String::new();
    encode(&mut text, registry).unwrap();
    text
}

fn assert_lines(text: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            text.lines().any(|l| l == *line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn events_are_counted_with_their_labels() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let peer = PeerId::random();
    let connection = ConnectionId::new_unchecked(1);

    metrics.record(&Event::ConnectionKept {
        peer,
        connection,
        initiator: Initiator::Remote,
        direction: Endpoint::Listener,
    });
    for _ in 0..2 {
        metrics.record(&Event::Disconnected {
            peer,
            connection,
            reason: DisconnectReason::Timeout,
            closed_by: ClosedBy::Remote,
            remaining: 0,
        });
    }
    metrics.record(&Event::Disconnected {
        peer,
        connection,
        reason: DisconnectReason::Unknown(4711),
        closed_by: ClosedBy::Local,
        remaining: 0,
    });
    metrics.record(&Event::GoodbyeReceived {
        peer,
        connection,
        reason: DisconnectReason::ProtocolViolation,
        retry_after: None,
    });
    metrics.record(&Event::Denied {
        peer: None,
        connection,
        denial: Denial::Limit {
            kind: LimitKind::PendingIncoming,
            limit: 64,
            current: 64,
        },
    });
    metrics.record(&Event::DialFailed {
        peer: Some(peer),
        connection,
        cause: DialFailureCause::TimedOut(Duration::from_secs(10)),
    });
    metrics.record(&Event::RedialScheduled {
        peer,
        delay: Duration::from_secs(2),
        attempt: 1,
    });
    metrics.record(&Event::Unbanned {
        target: BanTarget::Peer(peer),
        expired: true,
    });
    metrics.record(&Event::Trimmed {
        peers: vec![peer, PeerId::random()],
        no_longer_wanted: Vec::new(),
    });
    metrics.record(&Event::PhaseChanged {
        old: Phase::Disconnected,
        new: Phase::Connected,
    });

    assert_lines(
        &encoded(&registry),
        &[
            r#"connection_manager_connections_kept_total{direction="inbound",initiator="remote"} 1"#,
            r#"connection_manager_disconnects_total{reason="timeout",closed_by="remote"} 2"#,
            r#"connection_manager_disconnects_total{reason="unknown",closed_by="local"} 1"#,
            r#"connection_manager_goodbyes_received_total{reason="protocol_violation"} 1"#,
            r#"connection_manager_denials_total{kind="limit_pending_inbound"} 1"#,
            r#"connection_manager_dial_failures_total{cause="timed_out"} 1"#,
            "connection_manager_redials_scheduled_total 1",
            "connection_manager_redial_delay_seconds_sum 2.0",
            "connection_manager_redial_delay_seconds_count 1",
            r#"connection_manager_unbans_total{target="peer",cause="expired"} 1"#,
            "connection_manager_peers_trimmed_total 2",
            r#"connection_manager_phase_changes_total{phase="connected"} 1"#,
            "connection_manager_duplicates_closed_total 0",
        ],
    );
}

#[test]
fn without_a_behaviour_there_are_no_gauges() {
    let mut registry = Registry::default();
    let _metrics = Metrics::new(&mut registry);
    let text = encoded(&registry);
    assert!(!text.contains("connection_manager_phase{"), "{text}");
    assert!(
        !text.contains("connection_manager_connected_peers"),
        "{text}"
    );
    assert!(
        text.contains("connection_manager_peers_forgotten_total 0"),
        "{text}"
    );
}

#[test]
fn every_ping_is_a_sample_in_seconds() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let probe = metrics.probe();
    probe.on_ping(Duration::from_millis(3));
    probe.on_ping(Duration::from_millis(250));

    let text = encoded(&registry);
    assert_lines(
        &text,
        &[
            "connection_manager_ping_rtt_seconds_count 2",
            "connection_manager_ping_rtt_seconds_sum 0.253",
            r#"connection_manager_ping_rtt_seconds_bucket{le="0.004"} 1"#,
        ],
    );
}

#[test]
fn attaching_publishes_the_gauges_at_once() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let mut behaviour = Behaviour::new(PeerId::random(), Config::default());
    behaviour.ban_peer(PeerId::random(), None);
    behaviour.ban_network("10.0.0.0/8".parse::<ipnet::IpNet>().unwrap(), None);
    behaviour.ban_network("192.168.0.0/16".parse::<ipnet::IpNet>().unwrap(), None);
    let _behaviour = behaviour.with_metrics(&metrics);

    // Read at scrape time, twice: the collector encodes, it does not accumulate.
    for _ in 0..2 {
        assert_lines(
            &encoded(&registry),
            &[
                r#"connection_manager_established_connections{direction="inbound"} 0"#,
                r#"connection_manager_established_connections{direction="outbound"} 0"#,
                "connection_manager_pending_connections 0",
                "connection_manager_connected_peers 0",
                "connection_manager_waiting_peers 0",
                r#"connection_manager_active_bans{target="peer"} 1"#,
                r#"connection_manager_active_bans{target="network"} 2"#,
                r#"connection_manager_phase{phase="disconnected"} 1"#,
                r#"connection_manager_phase{phase="connected"} 0"#,
                r#"connection_manager_connections_by_health{category="excellent"} 0"#,
            ],
        );
    }
}

/// A change right after a publish shows once the publish interval is over, with nothing but
/// the behaviour's own timer waking it.
#[test]
fn a_change_is_published_within_the_interval() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let mut behaviour = Behaviour::new(PeerId::random(), Config::default()).with_metrics(&metrics);
    let banned = PeerId::random();
    behaviour.ban_peer(banned, None);
    assert_lines(
        &encoded(&registry),
        &[r#"connection_manager_active_bans{target="peer"} 0"#],
    );

    let shown = r#"connection_manager_active_bans{target="peer"} 1"#;
    let drive = poll_fn(|cx| {
        while behaviour.poll(cx).is_ready() {}
        if encoded(&registry).lines().any(|l| l == shown) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    // The deadline is polled first: a poll it wakes must not count as a publish.
    let deadline = futures_timer::Delay::new(Duration::from_secs(5));
    let drive = pin!(drive);
    let published = matches!(
        futures::executor::block_on(select(deadline, drive)),
        Either::Right(_)
    );
    assert!(published, "never published:\n{}", encoded(&registry));
}

/// One event of every kind that feeds a series.
fn one_event_of_each_kind() -> Vec<Event> {
    let peer = PeerId::random();
    let (connection, other) = (
        ConnectionId::new_unchecked(1),
        ConnectionId::new_unchecked(2),
    );
    let denial = Denial::Limit {
        kind: LimitKind::Established,
        limit: 1,
        current: 1,
    };
    vec![
        Event::ConnectionKept {
            peer,
            connection,
            initiator: Initiator::Local,
            direction: Endpoint::Dialer,
        },
        Event::DuplicateClosed {
            peer,
            kept: connection,
            closed: other,
        },
        Event::Disconnected {
            peer,
            connection,
            reason: DisconnectReason::Normal,
            closed_by: ClosedBy::Local,
            remaining: 0,
        },
        Event::GoodbyeReceived {
            peer,
            connection,
            reason: DisconnectReason::Normal,
            retry_after: None,
        },
        Event::Denied {
            peer: Some(peer),
            connection,
            denial: denial.clone(),
        },
        Event::DialFailed {
            peer: Some(peer),
            connection,
            cause: DialFailureCause::NoAddresses,
        },
        Event::RedialScheduled {
            peer,
            delay: Duration::from_secs(1),
            attempt: 1,
        },
        Event::RedialGaveUp { peer, attempts: 9 },
        Event::Banned {
            target: BanTarget::Peer(peer),
            until: None,
        },
        Event::Unbanned {
            target: BanTarget::Peer(peer),
            expired: false,
        },
        Event::WaitingForResources { peer, denial },
        Event::PeerForgotten { peer },
        Event::Trimmed {
            peers: vec![peer],
            no_longer_wanted: Vec::new(),
        },
        Event::HealthChanged {
            peer,
            connection,
            old: None,
            new: crate::HealthCategory::Good,
        },
        Event::ConnectionReplaced { peer, connection },
        Event::PhaseChanged {
            old: Phase::Disconnected,
            new: Phase::Connected,
        },
    ]
}

/// The Grafana dashboard queries series by name: each must be one the metrics export.
#[test]
fn the_dashboard_queries_only_series_that_exist() {
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let _behaviour = Behaviour::new(PeerId::random(), Config::default()).with_metrics(&metrics);
    for event in one_event_of_each_kind() {
        metrics.record(&event);
    }
    metrics.probe().on_ping(Duration::from_millis(5));
    let text = encoded(&registry);

    let dashboard = include_str!("../../dashboards/connection-manager.json");
    let mut names: Vec<&str> = dashboard
        .match_indices("connection_manager_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| *name != "connection_manager_")
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(
        names.len() >= 25,
        "the dashboard shows every family: {names:?}"
    );
    for name in names {
        let exported = text.lines().any(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        });
        assert!(
            exported,
            "the dashboard queries {name}, which is not exported:\n{text}"
        );
    }
}
