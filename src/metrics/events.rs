//! Counters fed by the behaviour's [`Event`]s (through [`Recorder`](super::Recorder)).

use std::hash::Hash;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{exponential_buckets, Histogram},
    },
    registry::{Metric, Registry, Unit},
};

use super::labels;
use crate::Event;

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
    PhaseLabel { phase }
    CategoryLabel { category }
}

/// One counter (or family) per kind of event.
#[derive(Debug)]
pub(super) struct EventCounters {
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
    health_changes: Family<CategoryLabel, Counter>,
    connections_replaced: Counter,
}

impl EventCounters {
    /// Registers the counters in `r` (already under the crate's prefix).
    #[rustfmt::skip]
    pub(super) fn new(r: &mut Registry) -> Self {
        // 100 ms to about 55 min: prompt redials up to the longest default backoff (30 min).
        let redial_delay = Histogram::new(exponential_buckets(0.1, 2.0, 16));
        r.register_with_unit("redial_delay", "Delay of scheduled redials", Unit::Seconds, redial_delay.clone());
        Self {
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
        }
    }

    pub(super) fn record(&self, event: &Event) {
        match event {
            Event::ConnectionKept {
                initiator,
                direction,
                ..
            } => {
                let initiator = labels::initiator(*initiator);
                let labels = KeptLabels::new(labels::direction(*direction), initiator);
                inc(&self.connections_kept, labels);
            }
            Event::DuplicateClosed { .. } => {
                self.duplicates_closed.inc();
            }
            Event::Disconnected {
                reason, closed_by, ..
            } => {
                let labels =
                    DisconnectLabels::new(labels::reason(*reason), labels::closed_by(*closed_by));
                inc(&self.disconnects, labels);
            }
            Event::GoodbyeReceived { reason, .. } => {
                let labels = ReasonLabel::new(labels::reason(*reason));
                inc(&self.goodbyes_received, labels);
            }
            Event::Denied { denial, .. } => {
                inc(&self.denials, KindLabel::new(labels::denial(denial)));
            }
            Event::DialFailed { cause, .. } => {
                let labels = CauseLabel::new(labels::dial_failure(cause));
                inc(&self.dial_failures, labels);
            }
            Event::RedialScheduled { delay, .. } => {
                self.redials_scheduled.inc();
                self.redial_delay.observe(delay.as_secs_f64());
            }
            Event::RedialGaveUp { .. } => {
                self.redials_given_up.inc();
            }
            Event::Banned { target, .. } => {
                inc(&self.bans, TargetLabel::new(labels::target(target)));
            }
            Event::Unbanned { target, expired } => {
                let cause = if *expired { "expired" } else { "lifted" };
                inc(
                    &self.unbans,
                    UnbanLabels::new(labels::target(target), cause),
                );
            }
            Event::WaitingForResources { denial, .. } => {
                let labels = KindLabel::new(labels::denial(denial));
                inc(&self.waiting_for_resources, labels);
            }
            Event::PeerForgotten { .. } => {
                self.peers_forgotten.inc();
            }
            Event::Trimmed { peers, .. } => {
                self.peers_trimmed.inc_by(peers.len() as u64);
            }
            Event::PhaseChanged { new, .. } => {
                inc(&self.phase_changes, PhaseLabel::new(labels::phase(*new)));
            }
            Event::HealthChanged { new, .. } => {
                let labels = CategoryLabel::new(labels::category(*new));
                inc(&self.health_changes, labels);
            }
            Event::ConnectionReplaced { .. } => {
                self.connections_replaced.inc();
            }
            // Once per start; the counts it carries are in the gauges.
            Event::Restored(_) => {}
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
