//! Every deadline of the manager in one table, so the driver needs a single timer.
//!
//! Each [`Timer`] is set at most once: setting it again moves it, and cancelling it needs only
//! its name (the shape of quinn-proto's `TimerTable`). The table is the one owner of every
//! deadline; nobody keeps a copy of an instant only to be able to cancel it.

use std::collections::{BTreeSet, HashMap};

use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
use web_time::Instant;

use super::BanTarget;

/// What is due when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// Dial this peer again.
    Redial(PeerId),
    /// Close this connection if it is still a duplicate (listener side grace, or the drain of
    /// a young loser).
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

/// Deadlines by name, ordered by time.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    by_time: BTreeSet<(Instant, Timer)>,
    by_timer: HashMap<Timer, Instant>,
}

impl Timers {
    /// Sets `timer` to fire at `at`, moving it if it was set already.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(previous) = self.by_timer.insert(timer, at) {
            self.by_time.remove(&(previous, timer));
        }
        self.by_time.insert((at, timer));
    }

    /// Cancels `timer`; returns when it would have fired.
    pub(crate) fn cancel(&mut self, timer: Timer) -> Option<Instant> {
        let at = self.by_timer.remove(&timer)?;
        self.by_time.remove(&(at, timer));
        Some(at)
    }

    /// When `timer` fires, if it is set.
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.by_timer.get(&timer).copied()
    }

    /// Whether `timer` is set.
    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.by_timer.contains_key(&timer)
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.by_time.first().map(|(at, _)| *at)
    }

    /// Removes and returns one timer whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.next()? > now {
            return None;
        }
        let (_, timer) = self.by_time.pop_first()?;
        self.by_timer.remove(&timer);
        Some(timer)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_timer.len()
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
        timers.set(Timer::Bootstrap, t0 + Duration::from_secs(2));
        let c = ConnectionId::new_unchecked(1);
        timers.set(Timer::DialDeadline(c), t0 + Duration::from_secs(1));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(t0), None);
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(5)),
            Some(Timer::DialDeadline(c))
        );
        assert!(!timers.is_set(Timer::DialDeadline(c)));
        assert_eq!(
            timers.cancel(Timer::Bootstrap),
            Some(t0 + Duration::from_secs(2))
        );
        assert_eq!(timers.next(), None);
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn setting_again_moves_the_timer() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.set(Timer::Trim, t0 + Duration::from_secs(5));
        timers.set(Timer::Trim, t0 + Duration::from_secs(9));
        assert_eq!(timers.len(), 1);
        assert_eq!(
            timers.deadline(Timer::Trim),
            Some(t0 + Duration::from_secs(9))
        );
        timers.set(Timer::Trim, t0 + Duration::from_secs(3));
        assert_eq!(
            timers.deadline(Timer::Trim),
            Some(t0 + Duration::from_secs(3))
        );
        assert_eq!(
            timers.pop_due(t0 + Duration::from_secs(100)),
            Some(Timer::Trim)
        );
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(100)), None);
    }
}
