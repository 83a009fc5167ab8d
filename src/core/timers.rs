//! Every deadline of the manager in one table, so the driver needs a single timer.
//!
//! Each [`Timer`] is set at most once: setting it again moves it, and cancelling it needs only
//! its name (the shape of quinn-proto's `TimerTable`). The table is the one owner of every
//! deadline; nobody keeps a copy of an instant only to be able to cancel it.

use crate::core::hashing::Map;
use std::{collections::BTreeSet, hash::Hash, time::Duration};

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
///
/// Every established connection has a timer (its inactivity deadline), so connection timers
/// are kept apart under a 16-byte key: a [`Timer`] is 88 bytes because some name a peer, and
/// storing each connection's deadline under it twice (by time and by name) was the largest
/// share of a connected peer's memory after its records. For the same reason a deadline is
/// kept as 8 bytes of nanoseconds since the table was made ([`Tick`]), not as a 16-byte
/// `Instant`.
#[derive(Debug)]
pub(crate) struct Timers {
    epoch: Instant,
    connections: Table<ConnectionTimer>,
    others: Table<Timer>,
}

/// A deadline: nanoseconds since the table's epoch (584 years of range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Tick(u64);

/// A connection's timer under a compact key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ConnectionTimer {
    kind: ConnectionTimerKind,
    id: ConnectionId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum ConnectionTimerKind {
    DuplicateGrace,
    GoodbyeDeadline,
    DialDeadline,
    Inactivity,
    Critical,
}

impl ConnectionTimer {
    fn of(timer: Timer) -> Option<Self> {
        let (kind, id) = match timer {
            Timer::DuplicateGrace(id) => (ConnectionTimerKind::DuplicateGrace, id),
            Timer::GoodbyeDeadline(id) => (ConnectionTimerKind::GoodbyeDeadline, id),
            Timer::DialDeadline(id) => (ConnectionTimerKind::DialDeadline, id),
            Timer::Inactivity(id) => (ConnectionTimerKind::Inactivity, id),
            Timer::Critical(id) => (ConnectionTimerKind::Critical, id),
            Timer::Redial(_)
            | Timer::Bootstrap
            | Timer::BanExpiry(_)
            | Timer::Trim
            | Timer::Exchange => return None,
        };
        Some(Self { kind, id })
    }

    fn timer(self) -> Timer {
        match self.kind {
            ConnectionTimerKind::DuplicateGrace => Timer::DuplicateGrace(self.id),
            ConnectionTimerKind::GoodbyeDeadline => Timer::GoodbyeDeadline(self.id),
            ConnectionTimerKind::DialDeadline => Timer::DialDeadline(self.id),
            ConnectionTimerKind::Inactivity => Timer::Inactivity(self.id),
            ConnectionTimerKind::Critical => Timer::Critical(self.id),
        }
    }
}

impl Timers {
    /// An empty table. `epoch` is the earliest instant it is asked about (the manager's
    /// creation): a deadline before it fires as if set at the epoch, which has passed anyway.
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            connections: Table::default(),
            others: Table::default(),
        }
    }

    fn tick(&self, at: Instant) -> Tick {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        Tick(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn instant(&self, tick: Tick) -> Instant {
        self.epoch + Duration::from_nanos(tick.0)
    }

    /// Sets `timer` to fire at `at`, moving it if it was set already.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        let at = self.tick(at);
        match ConnectionTimer::of(timer) {
            Some(key) => self.connections.set(key, at),
            None => self.others.set(timer, at),
        }
    }

    /// Cancels `timer`; returns when it would have fired.
    pub(crate) fn cancel(&mut self, timer: Timer) -> Option<Instant> {
        let at = match ConnectionTimer::of(timer) {
            Some(key) => self.connections.cancel(key),
            None => self.others.cancel(timer),
        };
        at.map(|at| self.instant(at))
    }

    /// When `timer` fires, if it is set.
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        let at = match ConnectionTimer::of(timer) {
            Some(key) => self.connections.deadline(key),
            None => self.others.deadline(timer),
        };
        at.map(|at| self.instant(at))
    }

    /// Whether `timer` is set.
    pub(crate) fn is_set(&self, timer: Timer) -> bool {
        self.deadline(timer).is_some()
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.first().map(|(at, _)| at)
    }

    /// The earliest timer of both tables, in the order one table of `(Instant, Timer)` had.
    fn first(&self) -> Option<(Instant, Timer)> {
        let connection = self.connections.first().map(|(at, key)| (at, key.timer()));
        let other = self.others.first();
        let (at, timer) = match (connection, other) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some((self.instant(at), timer))
    }

    /// Removes and returns one timer whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (at, timer) = self.first()?;
        if at > now {
            return None;
        }
        self.cancel(timer);
        Some(timer)
    }

    pub(crate) fn len(&self) -> usize {
        self.connections.len() + self.others.len()
    }
}

/// Deadlines under one kind of key, by time and by key.
#[derive(Debug)]
struct Table<K> {
    by_time: BTreeSet<(Tick, K)>,
    by_key: Map<K, Tick>,
}

impl<K> Default for Table<K> {
    fn default() -> Self {
        Self {
            by_time: BTreeSet::new(),
            by_key: Map::default(),
        }
    }
}

impl<K: Copy + Ord + Hash> Table<K> {
    fn set(&mut self, key: K, at: Tick) {
        if let Some(previous) = self.by_key.insert(key, at) {
            self.by_time.remove(&(previous, key));
        }
        self.by_time.insert((at, key));
    }

    fn cancel(&mut self, key: K) -> Option<Tick> {
        let at = self.by_key.remove(&key)?;
        self.by_time.remove(&(at, key));
        Some(at)
    }

    fn deadline(&self, key: K) -> Option<Tick> {
        self.by_key.get(&key).copied()
    }

    fn first(&self) -> Option<(Tick, K)> {
        self.by_time.first().copied()
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn pops_in_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
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
    fn connection_timers_and_the_others_pop_in_one_order() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
        let c = ConnectionId::new_unchecked(7);
        let at = t0 + Duration::from_secs(1);
        timers.set(Timer::Trim, at);
        timers.set(Timer::Inactivity(c), at);
        timers.set(Timer::Bootstrap, t0 + Duration::from_secs(2));
        timers.set(Timer::Critical(c), t0 + Duration::from_millis(500));
        assert_eq!(timers.len(), 4);
        let later = t0 + Duration::from_secs(3);
        let order: Vec<Timer> = std::iter::from_fn(|| timers.pop_due(later)).collect();
        // Same instant: the order of `Timer` decides (`Inactivity` before `Trim`).
        assert_eq!(
            order,
            vec![
                Timer::Critical(c),
                Timer::Inactivity(c),
                Timer::Trim,
                Timer::Bootstrap
            ]
        );
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn deadlines_come_back_exactly_and_one_before_the_epoch_fires_at_it() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
        let at = t0 + Duration::new(86_400 * 365, 123_456_789);
        timers.set(Timer::Trim, at);
        assert_eq!(timers.deadline(Timer::Trim), Some(at));
        let c = ConnectionId::new_unchecked(3);
        timers.set(Timer::Inactivity(c), t0 + Duration::from_nanos(1));
        assert_eq!(timers.next(), Some(t0 + Duration::from_nanos(1)));
        if let Some(before) = t0.checked_sub(Duration::from_secs(1)) {
            timers.set(Timer::Bootstrap, before);
            assert_eq!(timers.next(), Some(t0));
            assert_eq!(timers.pop_due(t0), Some(Timer::Bootstrap));
        }
    }

    #[test]
    fn setting_again_moves_the_timer() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
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
