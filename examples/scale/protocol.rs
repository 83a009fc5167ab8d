//! What the parent and its child processes tell each other: commands as text lines on the
//! child's stdin, reports as JSON lines on its stdout.

use std::{
    io::{BufRead as _, BufReader, Read},
    thread,
};

use serde::{Deserialize, Serialize};

use crate::probe::Stalls;

/// A listener's reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ListenerReport {
    Listening {
        address: String,
        rss: u64,
    },
    /// The connection count reached what `await` asked for.
    Reached {
        connections: usize,
        /// From the first inbound connection of the phase (or the command) to the count.
        secs: f64,
        rss: u64,
        max_per_peer: usize,
        /// Inbound connections that failed before they were established, so far.
        incoming_errors: u64,
        stalls: Stalls,
    },
    Rest {
        secs: f64,
        cpu_secs: f64,
        rss: u64,
        connections: usize,
        /// Connections that closed during the window (none should).
        closed: usize,
        /// Successful pings the listener saw (bare: its ping events; the manager keeps them).
        pings: Option<u64>,
        stalls: Stalls,
    },
    /// `force_trim` (bare: `disconnect_peer_id` of as many peers), and its closes.
    Trim {
        /// The peers `force_trim` returned (bare: the peers disconnected).
        trimmed: Vec<String>,
        call_us: u64,
        call_cpu_us: Option<u64>,
        /// From the command until the count reached the target.
        secs: f64,
        target: usize,
        remaining: usize,
        /// Trimmed peers whose connection closed, and other connections that closed.
        closed_trimmed: usize,
        closed_other: usize,
        max_per_peer: usize,
        stalls: Stalls,
    },
    /// `ban_network` (bare: `disconnect_peer_id` of every peer from the network), and its
    /// closes.
    Ban {
        network: String,
        /// Connections from the network when the ban was given.
        in_network: usize,
        closed_in_network: usize,
        closed_outside: usize,
        call_us: u64,
        call_cpu_us: Option<u64>,
        /// From the command until the last connection from the network closed.
        secs: f64,
        remaining: usize,
        max_per_peer: usize,
        stalls: Stalls,
    },
    Error {
        message: String,
    },
}

/// The dialer process's reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DialerReport {
    /// Every dialer that was asked to connect is connected.
    AllConnected {
        connected: usize,
        secs: f64,
        /// Dial attempts that failed and were retried.
        retries: u64,
        rss: u64,
    },
    /// Dialer `i`'s connection closed; `goodbye` is the reason the listener gave, for a dialer
    /// that runs the crate and read it.
    Closed { i: usize, goodbye: Option<String> },
    /// Dialer `i` gave up dialing.
    GaveUp { i: usize, error: String },
}

/// Reads lines from `input` on a thread of its own and hands them over `sender`; ends with
/// `None` at the end of the input.
pub fn forward_lines<R: Read + Send + 'static>(
    input: R,
    sender: impl Fn(Option<String>) -> bool + Send + 'static,
) {
    thread::spawn(move || {
        for line in BufReader::new(input).lines() {
            let Ok(line) = line else { break };
            if !sender(Some(line)) {
                return;
            }
        }
        sender(None);
    });
}

/// Prints one report as a JSON line.
pub fn emit(report: &impl Serialize) {
    match serde_json::to_string(report) {
        Ok(line) => println!("{line}"),
        Err(error) => eprintln!("cannot encode a report: {error}"),
    }
}
