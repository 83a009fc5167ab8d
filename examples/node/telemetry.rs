//! Prometheus metrics of the long-lived node (feature `metrics`), served by the admin API at
//! `/metrics`. The registry lives in the swarm loop, beside the behaviour it observes.

use libp2p_connection_manager::{self as manager, Event};

/// The node's metrics; without the `metrics` feature it records nothing and encodes nothing.
#[derive(Default)]
pub struct Telemetry {
    #[cfg(feature = "metrics")]
    inner: Option<Registered>,
}

#[cfg(feature = "metrics")]
struct Registered {
    registry: prometheus_client::registry::Registry,
    metrics: manager::metrics::Metrics,
}

impl Telemetry {
    /// Metrics registered in a registry of their own.
    #[cfg(feature = "metrics")]
    pub fn new() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = manager::metrics::Metrics::new(&mut registry);
        Self {
            inner: Some(Registered { registry, metrics }),
        }
    }

    /// Without the `metrics` feature there is nothing to register.
    #[cfg(not(feature = "metrics"))]
    pub fn new() -> Self {
        Self {}
    }

    /// `behaviour`, feeding the metrics' gauges and RTT histogram if there are metrics.
    pub fn attach(&self, behaviour: manager::Behaviour) -> manager::Behaviour {
        #[cfg(feature = "metrics")]
        if let Some(inner) = &self.inner {
            return behaviour.with_metrics(&inner.metrics);
        }
        behaviour
    }

    pub fn record(&self, event: &Event) {
        #[cfg(feature = "metrics")]
        if let Some(inner) = &self.inner {
            use manager::metrics::Recorder as _;
            inner.metrics.record(event);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = event;
    }

    /// The Prometheus text of the registry (the gauges read what the attached behaviour
    /// published); `None` without the `metrics` feature.
    pub fn encode(&self) -> Option<String> {
        #[cfg(feature = "metrics")]
        if let Some(inner) = &self.inner {
            let mut text = String::new();
            if let Err(error) =
                prometheus_client::encoding::text::encode(&mut text, &inner.registry)
            {
                tracing::warn!(%error, "cannot encode the metrics");
            }
            return Some(text);
        }
        None
    }
}
