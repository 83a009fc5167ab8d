//! The part of [`Metrics`](super::Metrics) that lives inside the behaviour
//! ([`Behaviour::with_metrics`](crate::Behaviour::with_metrics)): it feeds every ping's RTT to
//! the histogram and publishes snapshots for the gauges.

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::FutureExt;
use futures_timer::Delay;
use prometheus_client::metrics::histogram::Histogram;
use web_time::Instant;

use super::gauges::{Snapshot, SnapshotSlot};
use crate::core::Manager;

/// The most a published snapshot lags behind the manager: snapshots walk the connected peers,
/// so a burst of changes (a flood of inbound attempts) is published once per interval, not
/// once per change. Scrapes come every few seconds at most.
pub(crate) const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// The behaviour's handle on the metrics.
#[derive(Debug)]
pub(crate) struct Probe {
    slot: Arc<SnapshotSlot>,
    rtt: Histogram,
    last_published: Option<Instant>,
    /// Armed when the behaviour ran within the interval after a publish: publishes what
    /// changed once the interval is over, even if nothing else wakes the behaviour.
    timer: Option<Delay>,
}

impl Probe {
    pub(super) fn new(slot: Arc<SnapshotSlot>, rtt: Histogram) -> Self {
        Self {
            slot,
            rtt,
            last_published: None,
            timer: None,
        }
    }

    /// A ping on one of the manager's connections came back after `rtt`.
    pub(crate) fn on_ping(&self, rtt: Duration) {
        self.rtt.observe(rtt.as_secs_f64());
    }

    /// Publishes a snapshot of `manager` now.
    pub(crate) fn publish(&mut self, manager: &Manager, now: Instant) {
        self.slot.publish(Snapshot::of(manager, now));
        self.last_published = Some(now);
        self.timer = None;
    }

    /// Called each time the behaviour has run (something may have changed): publishes now if
    /// the last snapshot is at least [`PUBLISH_INTERVAL`] old, otherwise when it will be.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>, manager: &Manager, now: Instant) {
        let last = match self.last_published {
            Some(last) if now.saturating_duration_since(last) < PUBLISH_INTERVAL => last,
            _ => return self.publish(manager, now),
        };
        let timer = self.timer.get_or_insert_with(|| {
            Delay::new((last + PUBLISH_INTERVAL).saturating_duration_since(now))
        });
        if let Poll::Ready(()) = timer.poll_unpin(cx) {
            self.publish(manager, now);
        }
    }
}
