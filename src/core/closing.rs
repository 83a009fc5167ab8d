//! Closing a connection: the goodbye first, then the close, with a deadline for both.

use super::*;

impl Manager {
    pub(super) fn start_close(
        &mut self,
        now: Instant,
        peer: PeerId,
        connection: ConnectionId,
        reason: DisconnectReason,
        retry_after: Option<Duration>,
    ) {
        // A peer closed for not answering gets only a short chance to hear why.
        let timeout = if reason == DisconnectReason::Timeout {
            self.config.goodbye_timeout.min(TIMEOUT_GOODBYE)
        } else {
            self.config.goodbye_timeout
        };
        let deadline = later(now, timeout.saturating_add(GOODBYE_BACKSTOP_SLACK));
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        if record.closing.is_some() {
            return;
        }
        record.closing = Some(Closing {
            reason,
            replace: false,
        });
        self.timers.cancel(Timer::DuplicateGrace(connection));
        self.timers
            .set(Timer::GoodbyeDeadline(connection), deadline);
        self.actions.push_back(Action::SendGoodbye {
            peer,
            connection,
            reason,
            retry_after,
            timeout,
        });
    }

    pub(super) fn on_goodbye_overdue(&mut self, connection: ConnectionId) {
        if self.close_refused(connection) {
            return;
        }
        let Some(peer) = self.owner(connection) else {
            return;
        };
        tracing::debug!(%peer, %connection, "goodbye overdue, closing");
        self.actions.push_back(Action::Close { peer, connection });
    }

    pub(super) fn cancel_connection_timers(&mut self, connection: ConnectionId) {
        for timer in [
            Timer::DuplicateGrace(connection),
            Timer::GoodbyeDeadline(connection),
            Timer::Inactivity(connection),
            Timer::Critical(connection),
        ] {
            self.timers.cancel(timer);
        }
    }
}
