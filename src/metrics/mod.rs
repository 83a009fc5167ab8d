//! Prometheus metrics for the connection manager, composing with `libp2p-metrics`.
//!
//! [`Metrics::new`] registers every series under the prefix `connection_manager`. Three things
//! feed them:
//!
//! - **Events**, through libp2p-metrics' [`Recorder`] trait (re-exported here): call
//!   `metrics.record(&event)` for each of the behaviour's events in the swarm loop, beside
//!   `libp2p_metrics::Metrics`' own `record` calls. They drive the counters (connections kept,
//!   duplicates closed, denials, disconnects by reason, goodbyes, dial failures, redials, bans,
//!   trims, phase and health changes) and the redial-delay histogram.
//! - **The behaviour itself**, once attached with
//!   [`Behaviour::with_metrics`](crate::Behaviour::with_metrics): it records the RTT of every
//!   ping in `connection_manager_ping_rtt_seconds`, and publishes what the gauges show.
//! - **The scrape**: the gauges (connected and tracked peers, established connections by
//!   direction, pending connections, peers waiting for a slot, active bans by target, the
//!   phase, connections by health category, IPs tracked by the per-IP limits) are a
//!   prometheus-client [`Collector`](prometheus_client::collector::Collector) encoded when the
//!   registry is; nothing has to be called before a scrape. They show the manager as of its
//!   last run, at most a quarter of a second behind. Until a behaviour is attached there are
//!   no gauges.
//!
//! ```
//! use libp2p_connection_manager::{
//!     metrics::{Metrics, Recorder},
//!     Behaviour, Config, Event,
//! };
//! use prometheus_client::{encoding::text::encode, registry::Registry};
//!
//! let mut registry = Registry::default();
//! // libp2p's own metrics, if you use them, register beside ours:
//! // `let libp2p_metrics = libp2p::metrics::Metrics::new(&mut registry);`
//! let metrics = Metrics::new(&mut registry);
//! let behaviour =
//!     Behaviour::new(libp2p_identity::PeerId::random(), Config::default()).with_metrics(&metrics);
//!
//! // In the swarm loop, for `SwarmEvent::Behaviour(event)`:
//! # let event = Event::PeerForgotten { peer: libp2p_identity::PeerId::random() };
//! metrics.record(&event);
//!
//! // Whenever the registry is scraped:
//! let mut text = String::new();
//! encode(&mut text, &registry).unwrap();
//! assert!(text.contains("connection_manager_phase{phase=\"disconnected\"} 1"));
//! assert!(text.contains("connection_manager_peers_forgotten_total 1"));
//! # drop(behaviour);
//! ```
//!
//! A Grafana dashboard for these series ships with the crate, in
//! `dashboards/connection-manager.json`.

mod events;
mod gauges;
mod labels;
pub(crate) mod probe;

use std::sync::Arc;

/// Records events into metrics; the trait libp2p-metrics' `Metrics` implements for libp2p's
/// own events, re-exported so that `metrics.record(&event)` needs no direct dependency.
pub use libp2p_metrics::Recorder;
use prometheus_client::{
    metrics::histogram::{exponential_buckets, Histogram},
    registry::{Registry, Unit},
};

use self::{
    events::EventCounters,
    gauges::{GaugeCollector, SnapshotSlot},
    probe::Probe,
};
use crate::Event;

/// The connection manager's metrics. See the [module docs](self).
#[derive(Debug)]
pub struct Metrics {
    counters: EventCounters,
    /// Every ping's round-trip time, fed by the attached behaviour.
    rtt: Histogram,
    /// What the gauges show, published by the attached behaviour.
    snapshot: Arc<SnapshotSlot>,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`, under the prefix
    /// `connection_manager`.
    pub fn new(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("connection_manager");
        // 1 ms to about 8 s.
        let rtt = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register_with_unit(
            "ping_rtt",
            "Round-trip time of every ping on the manager's connections",
            Unit::Seconds,
            rtt.clone(),
        );
        let snapshot = Arc::new(SnapshotSlot::default());
        registry.register_collector(Box::new(GaugeCollector(snapshot.clone())));
        Self {
            counters: EventCounters::new(registry),
            rtt,
            snapshot,
        }
    }

    /// The handle a behaviour keeps to feed these metrics.
    pub(crate) fn probe(&self) -> Probe {
        Probe::new(self.snapshot.clone(), self.rtt.clone())
    }
}

impl Recorder<Event> for Metrics {
    fn record(&self, event: &Event) {
        self.counters.record(event);
    }
}

#[cfg(test)]
mod tests;
