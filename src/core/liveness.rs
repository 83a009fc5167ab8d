//! Liveness: ping results per connection, and closing connections that stopped answering.

use super::*;

impl Manager {
    /// A ping on `connection` came back after `rtt`: the connection is alive.
    pub fn on_ping_success(&mut self, now: Instant, connection: ConnectionId, rtt: Duration) {
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        if let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        {
            record.rtt = Some(rtt);
        }
        self.arm_inactivity(now, peer, connection);
    }

    /// The remote does not speak ping: its connection cannot be judged by pings, so the
    /// inactivity timeout no longer applies to it.
    pub fn on_ping_unsupported(&mut self, connection: ConnectionId) {
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        if let Some(at) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
            .and_then(|c| c.inactive_at.take())
        {
            self.timers.cancel(at, Timer::Inactivity(connection));
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
        let at = later(now, timeout);
        if let Some(previous) = record.inactive_at.replace(at) {
            self.timers.cancel(previous, Timer::Inactivity(connection));
        }
        self.timers.schedule(at, Timer::Inactivity(connection));
    }

    pub(super) fn on_inactive(&mut self, now: Instant, connection: ConnectionId) {
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        record.inactive_at = None;
        if !record.is_open() {
            return;
        }
        tracing::debug!(%peer, %connection, "no successful ping within the inactivity timeout");
        self.start_close(now, peer, connection, DisconnectReason::Timeout, None);
    }
}
