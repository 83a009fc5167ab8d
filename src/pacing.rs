//! Handing the swarm its costly commands a few at a time.
//!
//! libp2p-swarm 0.48 finds an established connection by scanning the connections of every peer
//! (`Pool::get_established`), for every handler notification (`NotifyHandler`) and every close of
//! one connection (`CloseConnection::One`). With 10,000 peers each costs tens of microseconds,
//! and trimming 5,000 connections (a goodbye and a close each) held the swarm task for up to
//! 0.5 s of CPU in one poll, during which no other connection's events were handled. So the
//! behaviour passes at most [`BURST`] such commands per [`WINDOW`] and yields between windows;
//! the rest wait in order. Cheap commands (dials, events) are not counted, and a node with few
//! peers never notices: its scans are short and its bursts small.
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

/// Costly commands handed to the swarm per window at most.
pub(crate) const BURST: u32 = 64;
/// The window: with [`BURST`], at most 6,400 costly commands a second.
pub(crate) const WINDOW: Duration = Duration::from_millis(10);

/// A budget of [`BURST`] costly commands per [`WINDOW`], and the timer that wakes the task when
/// the next window opens.
#[derive(Debug)]
pub(crate) struct Pacer {
    burst: u32,
    window: Duration,
    /// The current window's start and the commands spent in it.
    current: Option<(Instant, u32)>,
    /// Armed while the budget is spent, for the next window.
    timer: Option<Delay>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new(BURST, WINDOW)
    }
}

impl Pacer {
    pub(crate) fn new(burst: u32, window: Duration) -> Self {
        Self {
            burst: burst.max(1),
            window,
            current: None,
            timer: None,
        }
    }

    /// Spends one command of the budget at `now` if the window has one left; `false` means
    /// wait for [`next_window`](Self::next_window).
    pub(crate) fn try_spend(&mut self, now: Instant) -> bool {
        match &mut self.current {
            Some((start, spent)) if now.saturating_duration_since(*start) < self.window => {
                if *spent >= self.burst {
                    return false;
                }
                *spent += 1;
            }
            _ => self.current = Some((now, 1)),
        }
        true
    }

    /// When the budget is back, if it is spent now.
    pub(crate) fn next_window(&self, now: Instant) -> Option<Instant> {
        let (start, spent) = self.current?;
        let end = start + self.window;
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
        assert_eq!(took, WINDOW * (10_000 / BURST));
    }
}
