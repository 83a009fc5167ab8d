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

    pub fn record(&self, event: &Event) {
        #[cfg(feature = "metrics")]
        if let Some(inner) = &self.inner {
            inner.metrics.record(event);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = event;
    }

    /// The Prometheus text of the registry, the gauges refreshed from `behaviour`; `None`
    /// without the `metrics` feature.
    pub fn encode(&self, behaviour: &manager::Behaviour) -> Option<String> {
        #[cfg(feature = "metrics")]
        if let Some(inner) = &self.inner {
            inner.metrics.observe(behaviour);
            let mut text = String::new();
            if let Err(error) =
                prometheus_client::encoding::text::encode(&mut text, &inner.registry)
            {
                tracing::warn!(%error, "cannot encode the metrics");
            }
            return Some(text);
        }
        let _ = behaviour;
        None
    }
}
