//! Liveness and health: ping results per connection, closing connections that stopped
//! answering, and replacing those whose health stays Critical.

use super::*;

impl Manager {
    /// A ping on `connection` came back after `rtt`: the connection is alive.
    pub fn on_ping_success(&mut self, now: Instant, connection: ConnectionId, rtt: Duration) {
        let scoring = self.config.health_scoring;
        let Some((peer, record)) = self.connection_mut(connection) else {
            return;
        };
        record.rtt = Some(Micros::new(rtt));
        record.pings = record.pings.saturating_add(1);
        record.health.record_ping(&scoring, Some(rtt));
        self.arm_inactivity(now, peer, connection);
        self.reassess(now, peer, connection);
    }

    /// A ping on `connection` failed (timed out or broke). libp2p-ping does not report the
    /// first failure after a success, so reliability errs on the generous side.
    pub fn on_ping_failure(&mut self, now: Instant, connection: ConnectionId) {
        let scoring = self.config.health_scoring;
        let Some((peer, record)) = self.connection_mut(connection) else {
            return;
        };
        record.health.record_ping(&scoring, None);
        self.reassess(now, peer, connection);
    }

    /// The application measured `bytes_per_second` moving over `connection` (for example with
    /// a counting transport wrapper). Without it, bandwidth is left out of the health score.
    pub fn on_bandwidth(&mut self, now: Instant, connection: ConnectionId, bytes_per_second: f64) {
        let Some((peer, record)) = self.connection_mut(connection) else {
            return;
        };
        record.health.record_bandwidth(bytes_per_second);
        self.reassess(now, peer, connection);
    }

    /// Reports a change of health category, and starts or stops the Critical countdown.
    fn reassess(&mut self, now: Instant, peer: PeerId, connection: ConnectionId) {
        let scoring = self.config.health_scoring;
        let grace = self.config.degraded_grace;
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        let Some(health) = record.health.assess(&scoring) else {
            return;
        };
        let old = record.health.category.replace(health.category);
        let critical = health.category == HealthCategory::Critical && record.is_open();
        let countdown = Timer::Critical(connection);
        match (critical, grace) {
            (true, Some(grace)) if !self.timers.is_set(countdown) => {
                self.timers.set(countdown, later(now, grace));
            }
            (false, _) => {
                self.timers.cancel(countdown);
            }
            _ => {}
        }
        if old != Some(health.category) {
            tracing::debug!(%peer, %connection, category = %health.category, score = health.score, "health changed");
            self.push_event(Event::HealthChanged {
                peer,
                connection,
                old,
                new: health.category,
            });
        }
    }

    pub(super) fn on_critical_too_long(&mut self, now: Instant, connection: ConnectionId) {
        let Some((peer, record)) = self.connection_mut(connection) else {
            return;
        };
        if !record.is_open() || record.health.category != Some(HealthCategory::Critical) {
            return;
        }
        tracing::debug!(%peer, %connection, "health stayed critical: replacing the connection");
        self.push_event(Event::ConnectionReplaced { peer, connection });
        self.start_close(
            now,
            peer,
            connection,
            DisconnectReason::NetworkRestructure,
            None,
        );
        if let Some(closing) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
            .and_then(|c| c.closing.as_mut())
        {
            closing.replace = true;
        }
    }

    /// The remote does not speak ping: its connection can never prove that it is alive.
    ///
    /// With keep-alive on ([`Config::with_keep_alive`], the default) the manager itself holds
    /// the connection open, so it stays subject to the inactivity timeout: with no successful
    /// ping it is closed as `Timeout` once [`Config::with_inactivity_timeout`] has passed since
    /// it was established (a remote that refuses ping cannot hold a slot for ever). With
    /// keep-alive off, the manager does not hold it: the swarm's idle timeout and the other
    /// protocols decide, and the inactivity timeout no longer applies to it.
    pub fn on_ping_unsupported(&mut self, connection: ConnectionId) {
        if self.config.keep_alive {
            return;
        }
        let Some(peer) = self.owner(connection) else {
            return;
        };
        if self
            .peers
            .get(&peer)
            .is_some_and(|r| r.connections.iter().any(|c| c.id == connection))
        {
            self.timers.cancel(Timer::Inactivity(connection));
        }
    }

    /// (Re)starts the inactivity deadline of an open connection.
    pub(super) fn arm_inactivity(&mut self, now: Instant, peer: PeerId, connection: ConnectionId) {
        let Some(timeout) = self.config.inactivity_timeout else {
            return;
        };
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        if !record.is_open() {
            return;
        }
        self.timers
            .set(Timer::Inactivity(connection), later(now, timeout));
    }

    pub(super) fn on_inactive(&mut self, now: Instant, connection: ConnectionId) {
        let Some((peer, record)) = self.connection_mut(connection) else {
            return;
        };
        if !record.is_open() {
            return;
        }
        tracing::debug!(%peer, %connection, "no successful ping within the inactivity timeout");
        self.start_close(now, peer, connection, DisconnectReason::Timeout, None);
    }
}
