//! The node-level phase.

use std::fmt;

/// Where the node stands as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// No connection, and no bootstrap round running.
    Disconnected,
    /// Dialing the bootstrap peers, not yet connected.
    Bootstrapping,
    /// At least one peer connected.
    Connected,
    /// `shutdown` was called: goodbyes sent, no new connection accepted, nothing redialed.
    Terminated,
}

/// The phase the node is in, from the facts that decide it.
pub(crate) fn current(terminated: bool, connected_peers: usize, bootstrapping: bool) -> Phase {
    if terminated {
        Phase::Terminated
    } else if connected_peers > 0 {
        Phase::Connected
    } else if bootstrapping {
        Phase::Bootstrapping
    } else {
        Phase::Disconnected
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Phase::Disconnected => "disconnected",
            Phase::Bootstrapping => "bootstrapping",
            Phase::Connected => "connected",
            Phase::Terminated => "terminated",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminated_wins_then_connected_then_bootstrapping() {
        assert_eq!(current(true, 3, true), Phase::Terminated);
        assert_eq!(current(false, 1, true), Phase::Connected);
        assert_eq!(current(false, 0, true), Phase::Bootstrapping);
        assert_eq!(current(false, 0, false), Phase::Disconnected);
    }
}
