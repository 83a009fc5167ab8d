//! Telling a refused remote why: an inbound connection refused by an established limit is let
//! through its handshake's end just long enough to carry goodbye `ResourceConstraint` with a
//! retry-after hint, then closed.
//!
//! Such connections never count as established (no record, no counters, no events besides the
//! denial), and at most [`MAX_REFUSAL_GOODBYES`] are in flight at once; past that, refusals
//! are silent. The swarm therefore holds at most that many connections above a limit, each for
//! at most the goodbye timeout.

use super::*;

/// Refused connections that may be saying goodbye at the same time.
pub(crate) const MAX_REFUSAL_GOODBYES: usize = 8;

/// How long a remote refused for a limit is asked to wait before dialing again.
const REFUSAL_RETRY_AFTER: Duration = Duration::from_secs(30);

impl Manager {
    /// Whether the refusal of this connection can carry a goodbye: inbound, refused by an
    /// established limit, and room left for one more.
    pub(super) fn can_refuse_with_goodbye(&self, new: &NewConnection, denial: &Denial) -> bool {
        new.direction == Endpoint::Listener
            && matches!(denial, Denial::Limit { .. })
            && self.refusing.len() < MAX_REFUSAL_GOODBYES
    }

    /// Lets `connection` be established only to say goodbye `ResourceConstraint` on it.
    pub(super) fn refuse_with_goodbye(&mut self, connection: ConnectionId, peer: PeerId) {
        self.refusing.insert(connection, peer);
    }

    /// The refused connection is up: send the goodbye. Returns false if it was not refused.
    pub(super) fn on_refused_established(
        &mut self,
        now: Instant,
        connection: ConnectionId,
    ) -> bool {
        let Some(peer) = self.refusing.get(&connection).copied() else {
            return false;
        };
        self.refer(now, peer, connection);
        let timeout = self.config.goodbye_timeout;
        let at = later(now, timeout.saturating_add(GOODBYE_BACKSTOP_SLACK));
        self.timers.set(Timer::GoodbyeDeadline(connection), at);
        self.actions.push_back(Action::SendGoodbye {
            peer,
            connection,
            reason: DisconnectReason::ResourceConstraint,
            retry_after: Some(REFUSAL_RETRY_AFTER),
            timeout,
        });
        true
    }

    /// The goodbye on a refused connection is done (or overdue): close it. Returns false if
    /// the connection was not refused.
    pub(super) fn close_refused(&mut self, connection: ConnectionId) -> bool {
        let Some(peer) = self.refusing.get(&connection).copied() else {
            return false;
        };
        self.timers.cancel(Timer::GoodbyeDeadline(connection));
        self.actions.push_back(Action::Close { peer, connection });
        true
    }

    /// The refused connection closed, or never got established. Returns false if it was not
    /// refused.
    pub(super) fn forget_refused(&mut self, connection: ConnectionId) -> bool {
        if self.refusing.remove(&connection).is_none() {
            return false;
        }
        self.timers.cancel(Timer::GoodbyeDeadline(connection));
        true
    }
}
