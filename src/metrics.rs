//! Prometheus metrics for the connection manager, in the style of `libp2p-metrics`.
//!
//! [`Metrics::new`] registers every metric under the prefix `connection_manager`. Feed it the
//! behaviour's events with [`Metrics::record`], refresh the gauges from a snapshot with
//! [`Metrics::observe`] (for example right before each scrape), and report ping round-trip
//! times with [`Metrics::observe_rtt`].
//!
//! ```
//! use libp2p_connection_manager::{metrics::Metrics, Behaviour, Config};
//! use prometheus_client::{encoding::text::encode, registry::Registry};
//!
//! let mut registry = Registry::default();
//! let metrics = Metrics::new(&mut registry);
//! let behaviour = Behaviour::new(libp2p_identity::PeerId::random(), Config::default());
//!
//! // In the swarm loop: `SwarmEvent::Behaviour(event) => metrics.record(&event)`.
//! // Before a scrape:
//! metrics.observe(&behaviour);
//! let mut text = String::new();
//! encode(&mut text, &registry).unwrap();
//! assert!(text.contains("connection_manager_phase{phase=\"disconnected\"} 1"));
//! ```

use std::{hash::Hash, time::Duration};

use libp2p_core::Endpoint;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Metric, Registry, Unit},
};

use crate::{
    BanTarget, Behaviour, ClosedBy, Denial, DialFailureCause, DisconnectReason, Event,
    HealthCategory, Initiator, LimitKind, Phase,
};

/// Every phase, for the one-hot `phase` gauge.
const PHASES: [Phase; 4] = [
    Phase::Disconnected,
    Phase::Bootstrapping,
    Phase::Connected,
    Phase::Terminated,
];

/// Label sets of `&'static str` values, each with a positional `new`.
macro_rules! label_sets {
    ($($name:ident { $($key:ident),+ })*) => {$(
        #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct $name { $($key: &'static str),+ }
        impl $name {
            fn new($($key: &'static str),+) -> Self { Self { $($key),+ } }
        }
    )*};
}

label_sets! {
    KeptLabels { direction, initiator }
    DisconnectLabels { reason, closed_by }
    UnbanLabels { target, cause }
    ReasonLabel { reason }
    KindLabel { kind }
    CauseLabel { cause }
    TargetLabel { target }
    DirectionLabel { direction }
    PhaseLabel { phase }
    CategoryLabel { category }
}

/// Every health category, for the `connections_by_health` gauge.
const CATEGORIES: [HealthCategory; 5] = [
    HealthCategory::Excellent,
    HealthCategory::Good,
    HealthCategory::Fair,
    HealthCategory::Poor,
    HealthCategory::Critical,
];

fn category_label(category: HealthCategory) -> &'static str {
    match category {
        HealthCategory::Excellent => "excellent",
        HealthCategory::Good => "good",
        HealthCategory::Fair => "fair",
        HealthCategory::Poor => "poor",
        HealthCategory::Critical => "critical",
    }
}

/// The connection manager's metrics. See the [module docs](self).
#[derive(Debug)]
pub struct Metrics {
    connections_kept: Family<KeptLabels, Counter>,
    duplicates_closed: Counter,
    denials: Family<KindLabel, Counter>,
    disconnects: Family<DisconnectLabels, Counter>,
    goodbyes_received: Family<ReasonLabel, Counter>,
    dial_failures: Family<CauseLabel, Counter>,
    redials_scheduled: Counter,
    redial_delay: Histogram,
    redials_given_up: Counter,
    bans: Family<TargetLabel, Counter>,
    unbans: Family<UnbanLabels, Counter>,
    waiting_for_resources: Family<KindLabel, Counter>,
    peers_forgotten: Counter,
    peers_trimmed: Counter,
    phase_changes: Family<PhaseLabel, Counter>,
    rtt: Histogram,
    /// The ping count of each connection at the last `observe`, to feed each new RTT sample once.
    pings_seen: std::sync::Mutex<std::collections::HashMap<libp2p_swarm::ConnectionId, u64>>,
    established_connections: Family<DirectionLabel, Gauge>,
    pending_connections: Gauge,
    connected_peers: Gauge,
    tracked_peers: Gauge,
    active_bans: Family<TargetLabel, Gauge>,
    phase: Family<PhaseLabel, Gauge>,
    health_changes: Family<CategoryLabel, Counter>,
    connections_replaced: Counter,
    connections_by_health: Family<CategoryLabel, Gauge>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`, under the prefix
    /// `connection_manager`.
    #[rustfmt::skip]
    pub fn new(registry: &mut Registry) -> Self {
        let r = registry.sub_registry_with_prefix("connection_manager");
        // 100 ms to about 55 min: prompt redials up to the longest default backoff (30 min).
        let redial_delay = Histogram::new(exponential_buckets(0.1, 2.0, 16));
        r.register_with_unit("redial_delay", "Delay of scheduled redials", Unit::Seconds, redial_delay.clone());
        // 1 ms to about 8 s.
        let rtt = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        r.register_with_unit("ping_rtt", "Ping round-trip times", Unit::Seconds, rtt.clone());
        Self {
            pings_seen: Default::default(),
            connections_kept: add(r, "connections_kept", "Connections kept as a peer's one connection, by transport direction and effective initiator"),
            duplicates_closed: add(r, "duplicates_closed", "Duplicate connections closed or refused by the one-connection-per-peer rule"),
            denials: add(r, "denials", "Connections refused by the manager, by kind of refusal"),
            disconnects: add(r, "disconnects", "Connections closed, by reason and by the side that closed them"),
            goodbyes_received: add(r, "goodbyes_received", "Goodbyes received from remotes, by reason"),
            dial_failures: add(r, "dial_failures", "Failed or timed-out dials, by cause"),
            redials_scheduled: add(r, "redials_scheduled", "Redials scheduled"),
            redial_delay,
            redials_given_up: add(r, "redials_given_up", "Wanted peers no longer redialed after too many failed attempts"),
            bans: add(r, "bans", "Bans placed or changed, by target"),
            unbans: add(r, "unbans", "Bans ended, by target and by whether they expired or were lifted"),
            waiting_for_resources: add(r, "waiting_for_resources", "Wanted peers refused by a local limit and queued for a free slot, by kind of refusal"),
            peers_forgotten: add(r, "peers_forgotten", "Peers the manager forgot"),
            peers_trimmed: add(r, "peers_trimmed", "Peers whose connections were closed by trimming above the high watermark"),
            phase_changes: add(r, "phase_changes", "Phase changes, by the phase entered"),
            health_changes: add(r, "health_changes", "Changes of a connection's health category, by the category entered"),
            connections_replaced: add(r, "connections_replaced", "Connections replaced because their health stayed critical"),
            connections_by_health: add(r, "connections_by_health", "Open connections by health category (unassessed ones are not counted)"),
            rtt,
            established_connections: add(r, "established_connections", "Established connections, by transport direction"),
            pending_connections: add(r, "pending_connections", "Connections being negotiated"),
            connected_peers: add(r, "connected_peers", "Peers with at least one established connection"),
            tracked_peers: add(r, "tracked_peers", "Peers the manager holds any state for"),
            active_bans: add(r, "active_bans", "Active bans, by target"),
            phase: add(r, "phase", "The node's phase: 1 for the current one, 0 for the others"),
        }
    }

    /// Records one event of the behaviour.
    pub fn record(&self, event: &Event) {
        match event {
            Event::ConnectionKept {
                initiator,
                direction,
                ..
            } => {
                let initiator = match initiator {
                    Initiator::Local => "local",
                    Initiator::Remote => "remote",
                };
                let labels = KeptLabels::new(direction_label(*direction), initiator);
                inc(&self.connections_kept, labels);
            }
            Event::DuplicateClosed { .. } => {
                self.duplicates_closed.inc();
            }
            Event::Disconnected {
                reason, closed_by, ..
            } => {
                let closed_by = match closed_by {
                    ClosedBy::Local => "local",
                    ClosedBy::Remote => "remote",
                };
                let labels = DisconnectLabels::new(reason_label(*reason), closed_by);
                inc(&self.disconnects, labels);
            }
            Event::GoodbyeReceived { reason, .. } => {
                inc(
                    &self.goodbyes_received,
                    ReasonLabel::new(reason_label(*reason)),
                );
            }
            Event::Denied { denial, .. } => {
                inc(&self.denials, KindLabel::new(denial_label(denial)));
            }
            Event::DialFailed { cause, .. } => {
                inc(
                    &self.dial_failures,
                    CauseLabel::new(dial_failure_label(cause)),
                );
            }
            Event::RedialScheduled { delay, .. } => {
                self.redials_scheduled.inc();
                self.redial_delay.observe(delay.as_secs_f64());
            }
            Event::RedialGaveUp { .. } => {
                self.redials_given_up.inc();
            }
            Event::Banned { target, .. } => {
                inc(&self.bans, TargetLabel::new(target_label(target)));
            }
            Event::Unbanned { target, expired } => {
                let cause = if *expired { "expired" } else { "lifted" };
                inc(&self.unbans, UnbanLabels::new(target_label(target), cause));
            }
            Event::WaitingForResources { denial, .. } => {
                let labels = KindLabel::new(denial_label(denial));
                inc(&self.waiting_for_resources, labels);
            }
            Event::PeerForgotten { .. } => {
                self.peers_forgotten.inc();
            }
            Event::Trimmed { peers, .. } => {
                self.peers_trimmed.inc_by(peers.len() as u64);
            }
            Event::PhaseChanged { new, .. } => {
                inc(&self.phase_changes, PhaseLabel::new(phase_label(*new)));
                self.set_phase(*new);
            }
            Event::HealthChanged { new, .. } => inc(
                &self.health_changes,
                CategoryLabel::new(category_label(*new)),
            ),
            Event::ConnectionReplaced { .. } => {
                self.connections_replaced.inc();
            }
            // Once per start; the node logs it.
            Event::Restored(_) => {}
        }
    }

    /// Records a ping round-trip time from elsewhere ([`observe`](Self::observe) already
    /// records the latest RTT of every connection that pinged since the last call).
    pub fn observe_rtt(&self, rtt: Duration) {
        self.rtt.observe(rtt.as_secs_f64());
    }

    /// Sets the gauges from a snapshot of `behaviour`: established connections by direction,
    /// pending connections, connected and tracked peers, active bans and the phase.
    ///
    /// It walks every connected peer; call it when the metrics are scraped, not per event.
    pub fn observe(&self, behaviour: &Behaviour) {
        let manager = behaviour.manager();
        let (mut inbound, mut outbound, mut connected) = (0, 0, 0);
        let mut by_health = [0usize; CATEGORIES.len()];
        let mut pings_seen = self
            .pings_seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut live = std::collections::HashMap::new();
        for peer in manager.connected_peers() {
            connected += 1;
            let Some(info) = manager.peer_info(peer) else {
                continue;
            };
            for connection in &info.connections {
                match connection.direction {
                    Endpoint::Listener => inbound += 1,
                    Endpoint::Dialer => outbound += 1,
                }
                // The latest RTT, once per new ping (samples between two scrapes are not seen).
                let seen = pings_seen.get(&connection.id).copied().unwrap_or(0);
                if let (Some(rtt), true) = (connection.rtt, connection.pings > seen) {
                    self.rtt.observe(rtt.as_secs_f64());
                }
                live.insert(connection.id, connection.pings);
                let open_health = connection.health.filter(|_| connection.closing.is_none());
                if let Some(health) = open_health {
                    if let Some(slot) = CATEGORIES.iter().position(|c| *c == health.category) {
                        by_health[slot] += 1;
                    }
                }
            }
        }
        *pings_seen = live;
        drop(pings_seen);
        let established = &self.established_connections;
        set(
            established,
            DirectionLabel::new("inbound"),
            gauge_value(inbound),
        );
        set(
            established,
            DirectionLabel::new("outbound"),
            gauge_value(outbound),
        );
        self.pending_connections
            .set(gauge_value(manager.pending_connections()));
        self.connected_peers.set(gauge_value(connected));
        self.tracked_peers.set(gauge_value(manager.tracked_peers()));

        let (mut peers, mut networks) = (0, 0);
        for ban in behaviour.bans() {
            match ban.target {
                BanTarget::Peer(_) => peers += 1,
                BanTarget::Network(_) => networks += 1,
            }
        }
        set(
            &self.active_bans,
            TargetLabel::new("peer"),
            gauge_value(peers),
        );
        set(
            &self.active_bans,
            TargetLabel::new("network"),
            gauge_value(networks),
        );

        for (category, count) in CATEGORIES.iter().zip(by_health) {
            let labels = CategoryLabel::new(category_label(*category));
            set(&self.connections_by_health, labels, gauge_value(count));
        }
        self.set_phase(manager.phase());
    }

    fn set_phase(&self, current: Phase) {
        for phase in PHASES {
            let labels = PhaseLabel::new(phase_label(phase));
            set(&self.phase, labels, i64::from(phase == current));
        }
    }
}

/// Registers a new metric under `name` and returns it.
fn add<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

fn inc<L: Clone + Hash + Eq>(family: &Family<L, Counter>, labels: L) {
    family.get_or_create(&labels).inc();
}

fn set<L: Clone + Hash + Eq>(family: &Family<L, Gauge>, labels: L, value: i64) {
    family.get_or_create(&labels).set(value);
}

fn gauge_value(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

fn direction_label(direction: Endpoint) -> &'static str {
    match direction {
        Endpoint::Dialer => "outbound",
        Endpoint::Listener => "inbound",
    }
}

fn target_label(target: &BanTarget) -> &'static str {
    match target {
        BanTarget::Peer(_) => "peer",
        BanTarget::Network(_) => "network",
    }
}

fn phase_label(phase: Phase) -> &'static str {
    match phase {
        Phase::Disconnected => "disconnected",
        Phase::Bootstrapping => "bootstrapping",
        Phase::Connected => "connected",
        Phase::Terminated => "terminated",
    }
}

/// A stable snake_case label for a reason; unknown codes share one label, to bound cardinality.
fn reason_label(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::Normal => "normal",
        DisconnectReason::Timeout => "timeout",
        DisconnectReason::ProtocolViolation => "protocol_violation",
        DisconnectReason::ResourceConstraint => "resource_constraint",
        DisconnectReason::Banned => "banned",
        DisconnectReason::NetworkRestructure => "network_restructure",
        DisconnectReason::Duplicate => "duplicate",
        DisconnectReason::Closed => "closed",
        DisconnectReason::Unknown(_) => "unknown",
    }
}

fn denial_label(denial: &Denial) -> &'static str {
    match denial {
        Denial::SelfConnection { .. } => "self_connection",
        Denial::PerPeerLimit { .. } => "per_peer_limit",
        Denial::Limit { kind, .. } => match kind {
            LimitKind::PendingIncoming => "limit_pending_inbound",
            LimitKind::PendingOutgoing => "limit_pending_outbound",
            LimitKind::EstablishedIncoming => "limit_established_inbound",
            LimitKind::EstablishedOutgoing => "limit_established_outbound",
            LimitKind::Established => "limit_established_total",
        },
        Denial::IpLimit { .. } => "ip_limit",
        Denial::RateLimited { .. } => "rate_limited",
        Denial::RelayLimit { .. } => "relay_limit",
        Denial::TooManyAddresses { .. } => "too_many_addresses",
        Denial::PeerBanned { .. } => "peer_banned",
        Denial::IpBanned { .. } => "ip_banned",
        Denial::Terminated => "terminated",
    }
}

fn dial_failure_label(cause: &DialFailureCause) -> &'static str {
    match cause {
        DialFailureCause::SelfConnection => "self_connection",
        DialFailureCause::NoAddresses => "no_addresses",
        DialFailureCause::ConditionFalse => "condition_false",
        DialFailureCause::Aborted => "aborted",
        DialFailureCause::WrongPeerId { .. } => "wrong_peer_id",
        DialFailureCause::DeniedByManager(_) => "denied_by_manager",
        DialFailureCause::DeniedByOther { .. } => "denied_by_other",
        DialFailureCause::Transport { .. } => "transport",
        DialFailureCause::TimedOut(_) => "timed_out",
    }
}

#[cfg(test)]
mod tests {
    use libp2p_identity::PeerId;
    use libp2p_swarm::ConnectionId;
    use prometheus_client::encoding::text::encode;

    use super::*;
    use crate::Config;

    fn encoded(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        text
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

        let text = encoded(&registry);
        for line in [
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
            r#"connection_manager_phase{phase="connected"} 1"#,
            r#"connection_manager_phase{phase="disconnected"} 0"#,
            "connection_manager_duplicates_closed_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn rtt_is_observed_in_seconds() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        metrics.observe_rtt(Duration::from_millis(3));
        metrics.observe_rtt(Duration::from_millis(250));

        let text = encoded(&registry);
        assert!(
            text.contains("connection_manager_ping_rtt_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("connection_manager_ping_rtt_seconds_sum 0.253"),
            "{text}"
        );
        assert!(
            text.contains(r#"connection_manager_ping_rtt_seconds_bucket{le="0.004"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn observe_sets_the_gauges_from_a_snapshot() {
        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        let mut behaviour = Behaviour::new(PeerId::random(), Config::default());
        behaviour.ban_peer(PeerId::random(), None);
        behaviour.ban_network("10.0.0.0/8".parse::<ipnet::IpNet>().unwrap(), None);
        behaviour.ban_network("192.168.0.0/16".parse::<ipnet::IpNet>().unwrap(), None);
        metrics.observe(&behaviour);
        // A second snapshot sets, it does not add.
        metrics.observe(&behaviour);

        let text = encoded(&registry);
        for line in [
            r#"connection_manager_established_connections{direction="inbound"} 0"#,
            r#"connection_manager_established_connections{direction="outbound"} 0"#,
            "connection_manager_pending_connections 0",
            "connection_manager_connected_peers 0",
            r#"connection_manager_active_bans{target="peer"} 1"#,
            r#"connection_manager_active_bans{target="network"} 2"#,
            r#"connection_manager_phase{phase="disconnected"} 1"#,
            r#"connection_manager_phase{phase="connected"} 0"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
