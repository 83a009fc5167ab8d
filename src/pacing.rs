//! Handing the swarm its costly commands a few at a time.
//!
//! libp2p-swarm 0.48 finds an established connection by scanning the connections of every peer
//! (`Pool::get_established`), for every handler notification (`NotifyHandler`) and every close of
//! one connection (`CloseConnection::One`). With 10,000 peers each costs tens of microseconds,
//! and trimming 5,000 connections (a goodbye and a close each) held the swarm task for up to
//! 0.5 s of CPU in one poll, during which no other connection's events were handled. So the
//! behaviour passes such commands in bursts of at most [`BURST`], each followed by at least
//! [`PAUSE`] without any; the rest wait in order. The pause counts from a burst's last command,
//! not its first: a burst may itself take longer than the pause at 10,000 peers, and the swarm
//! polls the behaviour again after every handler event, so a budget per fixed window or per
//! poll would not bound the work of one swarm poll. Cheap commands (dials, events) are not
//! counted, and a node with few peers never notices: its scans are short and its bursts
//! small.
//!
//! This is flow control of the driver, not policy: what is done and in which order is the
//! core's; only when the swarm is handed each command is decided here.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use futures::FutureExt;
use futures_timer::Delay;
use web_time::Instant;

/// Costly commands handed to the swarm in one burst at most.
pub(crate) const BURST: u32 = 64;
/// The pause after a full burst: at most 6,400 costly commands a second.
pub(crate) const PAUSE: Duration = Duration::from_millis(10);

/// Bursts of at most [`BURST`] costly commands with [`PAUSE`] after each, and the timer that
/// wakes the task when the pause is over.
#[derive(Debug)]
pub(crate) struct Pacer {
    burst: u32,
    pause: Duration,
    /// The current burst's last command and how many it has had. A command after a gap of a
    /// whole pause starts a new burst.
    current: Option<(Instant, u32)>,
    /// Armed while the budget is spent, for the end of the pause.
    timer: Option<Delay>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new(BURST, PAUSE)
    }
}

impl Pacer {
    pub(crate) fn new(burst: u32, pause: Duration) -> Self {
        Self {
            burst: burst.max(1),
            pause,
            current: None,
            timer: None,
        }
    }

    /// Spends one command of the budget at `now` if the burst has one left or the pause is
    /// over; `false` means wait for [`next_window`](Self::next_window).
    pub(crate) fn try_spend(&mut self, now: Instant) -> bool {
        let spent = match self.current {
            Some((last, spent)) if now.saturating_duration_since(last) < self.pause => {
                if spent >= self.burst {
                    return false;
                }
                spent + 1
            }
            _ => 1,
        };
        self.current = Some((now, spent));
        true
    }

    /// When the budget is back, if it is spent now.
    pub(crate) fn next_window(&self, now: Instant) -> Option<Instant> {
        let (last, spent) = self.current?;
        let end = last + self.pause;
        (spent >= self.burst && now < end).then_some(end)
    }

    /// [`try_spend`](Self::try_spend), arming a timer that wakes the task for the next window
    /// when the budget is spent.
    pub(crate) fn poll_spend(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        if self.try_spend(now) {
            self.timer = None;
            return true;
        }
        let Some(end) = self.next_window(now) else {
            return self.try_spend(now);
        };
        let wait = end.saturating_duration_since(now);
        let timer = self.timer.get_or_insert_with(|| Delay::new(wait));
        if let Poll::Ready(()) = timer.poll_unpin(cx) {
            // The window ended while the timer ran: the next poll opens a new one.
            self.timer = None;
            cx.waker().wake_by_ref();
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_wait_for_the_next() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(3, Duration::from_millis(10));
        assert!((0..3).all(|_| pacer.try_spend(t0)));
        assert!(!pacer.try_spend(t0 + Duration::from_millis(9)));
        assert_eq!(
            pacer.next_window(t0 + Duration::from_millis(9)),
            Some(t0 + Duration::from_millis(10))
        );
        // The next window has a full budget again.
        let t1 = t0 + Duration::from_millis(10);
        assert!((0..3).all(|_| pacer.try_spend(t1)));
        assert!(!pacer.try_spend(t1));
    }

    #[test]
    fn the_pause_counts_from_the_last_command_of_a_burst_that_took_long() {
        // At 10,000 peers handing over a burst takes longer than the pause itself: the pause
        // must still follow it, or one swarm poll would run burst after burst.
        let t0 = Instant::now();
        let mut pacer = Pacer::new(3, Duration::from_millis(10));
        let mut now = t0;
        for _ in 0..3 {
            assert!(pacer.try_spend(now));
            now += Duration::from_millis(6);
        }
        // 18 ms after the burst began, 6 ms after its last command.
        assert!(!pacer.try_spend(now));
        assert_eq!(
            pacer.next_window(now),
            Some(t0 + Duration::from_millis(12 + 10))
        );
    }

    #[test]
    fn an_unspent_budget_never_makes_anyone_wait() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(3, Duration::from_millis(10));
        assert_eq!(pacer.next_window(t0), None);
        assert!(pacer.try_spend(t0));
        assert_eq!(pacer.next_window(t0), None, "two left");
    }

    #[test]
    fn ten_thousand_commands_take_as_many_windows_as_the_budget_says() {
        // What a trim of 5,000 connections hands the swarm: 10,000 costly commands.
        let t0 = Instant::now();
        let mut pacer = Pacer::default();
        let mut now = t0;
        let mut handed = 0;
        while handed < 10_000 {
            if pacer.try_spend(now) {
                handed += 1;
            } else {
                now = pacer.next_window(now).expect("spent: a next window");
            }
        }
        let took = now - t0;
        println!("10,000 costly commands handed over in {took:?} of windows");
        assert_eq!(took, PAUSE * (10_000 / BURST));
    }
}
