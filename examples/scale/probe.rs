//! What the processes measure about themselves: resident memory, CPU time, and how long each
//! poll of the swarm ran (the stall measure).

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt as _};
use serde::{Deserialize, Serialize};

/// Resident set size of this process, in bytes (`VmRSS` of /proc/self/status).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// CPU time (user + system) this process has used, threads that ended included
/// (/proc/self/stat, in USER_HZ ticks, which the Linux ABI fixes at 100 per second).
pub fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis are
    // state (3), ..., utime (14), stime (15).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => Duration::from_millis((user + system) * 10),
        _ => Duration::ZERO,
    }
}

/// CPU time the current thread has run, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`, which,
/// unlike /proc/thread-self/schedstat, includes the time since the last scheduler tick), or
/// `None` where it cannot be read.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> Option<u64> {
    use std::ffi::{c_int, c_long};

    #[repr(C)]
    struct Timespec {
        tv_sec: c_long,
        tv_nsec: c_long,
    }
    const CLOCK_THREAD_CPUTIME_ID: c_int = 3;
    extern "C" {
        fn clock_gettime(clock: c_int, time: *mut Timespec) -> c_int;
    }
    let mut time = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `time` is a valid, writable `struct timespec` (two `long`s on Linux) for the
    // duration of the call, and this clock id is defined by Linux.
    let status = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut time) };
    (status == 0).then(|| time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64)
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> Option<u64> {
    None
}

/// The polls of the swarm in one phase: how many, their total and the longest (wall clock,
/// and the CPU time the thread spent in that longest poll: a long wall time with little CPU is
/// the thread being descheduled, not the swarm working). Reading the thread's CPU clock costs
/// two system calls per poll, well under a microsecond.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stalls {
    pub polls: u64,
    pub busy_us: u64,
    pub max_us: u64,
    /// CPU time of the longest poll, when thread CPU time was measured.
    pub max_cpu_us: Option<u64>,
    /// The longest CPU time of any poll, when measured.
    pub max_of_cpu_us: Option<u64>,
    pub over_1ms: u64,
    pub over_10ms: u64,
    pub over_50ms: u64,
    /// The longest synchronous call made on the swarm's task outside its poll (a command to
    /// the behaviour such as `force_trim` or `ban_network`), which stalls the swarm as much.
    pub max_call_us: u64,
    /// The CPU time of that call, when measured.
    pub max_call_cpu_us: Option<u64>,
}

impl Stalls {
    fn record(&mut self, wall: Duration, cpu_ns: Option<u64>) {
        let us = wall.as_micros() as u64;
        self.polls += 1;
        self.busy_us += us;
        if us >= self.max_us {
            self.max_us = us;
            self.max_cpu_us = cpu_ns.map(|ns| ns / 1000);
        }
        if let Some(ns) = cpu_ns {
            let cpu = ns / 1000;
            self.max_of_cpu_us = Some(self.max_of_cpu_us.map_or(cpu, |m| m.max(cpu)));
        }
        self.over_1ms += u64::from(us > 1_000);
        self.over_10ms += u64::from(us > 10_000);
        self.over_50ms += u64::from(us > 50_000);
    }

    /// Times `call`, a synchronous call on the swarm's task: its wall time and its CPU time.
    pub fn call<T>(&mut self, call: impl FnOnce() -> T) -> (T, Duration, Option<Duration>) {
        let cpu_before = thread_cpu_ns();
        let started = Instant::now();
        let out = call();
        let took = started.elapsed();
        let cpu = match (cpu_before, thread_cpu_ns()) {
            (Some(before), Some(after)) => Some(Duration::from_nanos(after.saturating_sub(before))),
            _ => None,
        };
        let us = took.as_micros() as u64;
        if us >= self.max_call_us {
            self.max_call_us = us;
            self.max_call_cpu_us = cpu.map(|c| c.as_micros() as u64);
        }
        (out, took, cpu)
    }

    /// The longest stretch the swarm's task spent in one synchronous piece, wall clock: a poll
    /// or a call.
    pub fn worst_us(&self) -> u64 {
        self.max_us.max(self.max_call_us)
    }

    /// The most CPU time the swarm's task spent in one synchronous piece, when measured: its
    /// own work, without the time it was descheduled.
    pub fn worst_cpu_us(&self) -> Option<u64> {
        match (self.max_of_cpu_us, self.max_call_cpu_us) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The next item of `stream`, with the time of every poll recorded in `stalls`.
pub fn timed_next<'a, S: Stream + Unpin>(
    stream: &'a mut S,
    stalls: &'a mut Stalls,
) -> TimedNext<'a, S> {
    TimedNext { stream, stalls }
}

pub struct TimedNext<'a, S> {
    stream: &'a mut S,
    stalls: &'a mut Stalls,
}

impl<S: Stream + Unpin> Future for TimedNext<'_, S> {
    type Output = Option<S::Item>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let cpu_before = thread_cpu_ns();
        let started = Instant::now();
        let result = this.stream.poll_next_unpin(cx);
        let wall = started.elapsed();
        let cpu = match (cpu_before, thread_cpu_ns()) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        this.stalls.record(wall, cpu);
        result
    }
}
