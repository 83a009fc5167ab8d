//! Every deadline of the manager in one ordered set, so the driver needs a single timer.

use std::collections::BTreeSet;

use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
use web_time::Instant;

use super::BanTarget;

/// What is due when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// Dial this peer again.
    Redial(PeerId),
    /// Close this connection if it is still a duplicate (listener side grace).
    DuplicateGrace(ConnectionId),
    /// The goodbye on this connection took too long: close it anyway.
    GoodbyeDeadline(ConnectionId),
    /// This dial took too long: report it and plan the next attempt.
    DialDeadline(ConnectionId),
    /// Start a bootstrap round.
    Bootstrap,
    /// A ban ends.
    BanExpiry(BanTarget),
    /// No ping succeeded on this connection for the inactivity timeout.
    Inactivity(ConnectionId),
    /// A trim postponed by the silence period.
    Trim,
    /// This connection stayed Critical for the degraded grace: replace it.
    Critical(ConnectionId),
    /// A round of peer-exchange updates.
    Exchange,
}

/// Deadlines ordered by time. The owner of each deadline remembers it, so it can cancel it.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    due: BTreeSet<(Instant, Timer)>,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, timer: Timer) {
        self.due.insert((at, timer));
    }

    pub(crate) fn cancel(&mut self, at: Instant, timer: Timer) {
        self.due.remove(&(at, timer));
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Removes and returns one timer whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.next()? <= now {
            self.due.pop_first().map(|(_, timer)| timer)
        } else {
            None
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pops_in_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.schedule(t0 + Duration::from_secs(2), Timer::Bootstrap);
        let c = ConnectionId::new_unchecked(1);
        timers.schedule(t0 + Duration::from_secs(1), Timer::DialDeadline(c));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(5)),
            Some(Timer::DialDeadline(c))
        );
        timers.cancel(t0 + Duration::from_secs(2), Timer::Bootstrap);
        assert_eq!(timers.next(), None);
        assert_eq!(timers.len(), 0);
    }
}
