//! The gauges: a [`Collector`] that encodes the latest [`Snapshot`] of the manager at scrape
//! time.
//!
//! The manager lives inside the swarm, which the scrape cannot reach (another task, another
//! thread); so the behaviour publishes a snapshot into a shared slot as its state changes (see
//! [`Probe`](super::probe::Probe)), and the collector reads the slot. This is the shape of
//! libp2p-metrics' own identify collector, fed by the behaviour instead of by events, so that a
//! missed event cannot leave a gauge wrong for ever.

use std::sync::{Arc, Mutex, MutexGuard};

use libp2p_core::Endpoint;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{gauge::ConstGauge, MetricType},
};
use web_time::Instant;

use super::labels;
use crate::{core::Manager, BanTarget, Phase};

/// What the gauges show: counts read off the manager at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Snapshot {
    pub(super) phase: Phase,
    pub(super) established_inbound: u64,
    pub(super) established_outbound: u64,
    pub(super) pending: u64,
    pub(super) connected_peers: u64,
    pub(super) tracked_peers: u64,
    pub(super) wanted_peers: u64,
    pub(super) waiting_peers: u64,
    pub(super) tracked_ips: u64,
    pub(super) peer_bans: u64,
    pub(super) network_bans: u64,
    /// Open connections per health category, in the order of [`labels::CATEGORIES`].
    pub(super) by_health: [u64; labels::CATEGORIES.len()],
}

impl Snapshot {
    /// Reads the counts off `manager`. It walks the connected peers and the bans: the probe
    /// calls it at most a few times a second, never per event.
    pub(super) fn of(manager: &Manager, now: Instant) -> Self {
        let mut snapshot = Self {
            phase: manager.phase(),
            established_inbound: 0,
            established_outbound: 0,
            pending: count(manager.pending_connections()),
            connected_peers: 0,
            tracked_peers: count(manager.tracked_peers()),
            wanted_peers: count(manager.wanted_peers().count()),
            waiting_peers: count(manager.waiting_for_resources().count()),
            tracked_ips: count(manager.tracked_ips()),
            peer_bans: 0,
            network_bans: 0,
            by_health: [0; labels::CATEGORIES.len()],
        };
        for peer in manager.connected_peers() {
            snapshot.connected_peers += 1;
            let Some(info) = manager.peer_info(peer) else {
                continue;
            };
            for connection in &info.connections {
                match connection.direction {
                    Endpoint::Listener => snapshot.established_inbound += 1,
                    Endpoint::Dialer => snapshot.established_outbound += 1,
                }
                // A connection being closed is no longer assessed.
                let open_health = connection.health.filter(|_| connection.closing.is_none());
                let slot = open_health.and_then(|health| {
                    labels::CATEGORIES
                        .iter()
                        .position(|category| *category == health.category)
                });
                if let Some(slot) = slot {
                    snapshot.by_health[slot] += 1;
                }
            }
        }
        for ban in manager.bans(now) {
            match ban.target {
                BanTarget::Peer(_) => snapshot.peer_bans += 1,
                BanTarget::Network(_) => snapshot.network_bans += 1,
            }
        }
        snapshot
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The slot the behaviour publishes into and the collector reads; empty until a behaviour is
/// attached.
#[derive(Debug, Default)]
pub(super) struct SnapshotSlot(Mutex<Option<Snapshot>>);

impl SnapshotSlot {
    pub(super) fn publish(&self, snapshot: Snapshot) {
        *self.lock() = Some(snapshot);
    }

    pub(super) fn latest(&self) -> Option<Snapshot> {
        self.lock().clone()
    }

    /// A panic elsewhere while holding the lock leaves a whole snapshot behind: still valid.
    fn lock(&self) -> MutexGuard<'_, Option<Snapshot>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Encodes the gauges from the latest snapshot on each scrape.
#[derive(Debug)]
pub(super) struct GaugeCollector(pub(super) Arc<SnapshotSlot>);

impl Collector for GaugeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // No behaviour attached: no gauges, rather than zeros that look like a measurement.
        let Some(s) = self.0.latest() else {
            return Ok(());
        };
        gauge(
            &mut encoder,
            "pending_connections",
            "Connections being negotiated",
            s.pending,
        )?;
        gauge(
            &mut encoder,
            "connected_peers",
            "Peers with at least one established connection",
            s.connected_peers,
        )?;
        gauge(
            &mut encoder,
            "tracked_peers",
            "Peers the manager holds any state for",
            s.tracked_peers,
        )?;
        gauge(
            &mut encoder,
            "wanted_peers",
            "Peers kept connected (by the application, discovery or peer exchange), connected or not",
            s.wanted_peers,
        )?;
        gauge(
            &mut encoder,
            "waiting_peers",
            "Wanted peers refused by a local limit, waiting for a free slot",
            s.waiting_peers,
        )?;
        gauge(
            &mut encoder,
            "tracked_ips",
            "Remote IP addresses the per-IP limits keep state for",
            s.tracked_ips,
        )?;
        family(
            &mut encoder,
            "established_connections",
            "Established connections, by transport direction",
            "direction",
            [
                (labels::direction(Endpoint::Listener), s.established_inbound),
                (labels::direction(Endpoint::Dialer), s.established_outbound),
            ],
        )?;
        family(
            &mut encoder,
            "active_bans",
            "Active bans, by target",
            "target",
            [("peer", s.peer_bans), ("network", s.network_bans)],
        )?;
        family(
            &mut encoder,
            "phase",
            "The node's phase: 1 for the current one, 0 for the others",
            "phase",
            labels::PHASES.map(|phase| (labels::phase(phase), u64::from(phase == s.phase))),
        )?;
        let by_health: [_; labels::CATEGORIES.len()] =
            std::array::from_fn(|i| (labels::category(labels::CATEGORIES[i]), s.by_health[i]));
        family(
            &mut encoder,
            "connections_by_health",
            "Open connections by health category (unassessed ones are not counted)",
            "category",
            by_health,
        )
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(gauge_value(value)).encode(metric)
}

fn family<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    key: &'static str,
    values: [(&'static str, u64); N],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (label, value) in values {
        let labels = [(key, label)];
        let metric = family.encode_family(&labels)?;
        ConstGauge::new(gauge_value(value)).encode(metric)?;
    }
    Ok(())
}

fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}
