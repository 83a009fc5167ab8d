//! What the initiator of a lost connection does next, by the reason it was lost.

use std::time::Duration;

use crate::DisconnectReason;

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClosedBy {
    /// The local node: the manager, the application, or another behaviour.
    Local,
    /// The remote: it said goodbye, closed the connection, or the transport failed.
    Remote,
}

/// How soon a peer is dialed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedialPlan {
    /// Not at all.
    Never,
    /// After the short prompt delay.
    Prompt,
    /// On the timeout backoff schedule.
    TimeoutBackoff,
    /// On the (longer) protocol-violation backoff schedule.
    ViolationBackoff,
}

/// The redial table of DESIGN.md section 4, for the initiator of the last connection to a
/// peer. `wanted` says whether the application asked for the peer; `attempt` counts redials
/// since the peer was last connected.
///
/// Peers nobody asked for are only redialed promptly after a lost duplicate tie-break, so a
/// pair never ends with zero connections because both sides closed at once.
pub fn plan(
    reason: DisconnectReason,
    closed_by: ClosedBy,
    wanted: bool,
    attempt: u32,
) -> RedialPlan {
    use DisconnectReason::*;
    match (reason, closed_by) {
        (Duplicate, _) => RedialPlan::Prompt,
        _ if !wanted => RedialPlan::Never,
        // A local Normal close is `disconnect`, `shutdown` or another behaviour's decision.
        (Normal, ClosedBy::Local) => RedialPlan::Never,
        (Normal, ClosedBy::Remote) if attempt == 0 => RedialPlan::Prompt,
        (Normal, ClosedBy::Remote) => RedialPlan::TimeoutBackoff,
        (Banned, _) => RedialPlan::Never,
        // Trimmed locally: the point was to have fewer connections.
        (NetworkRestructure, ClosedBy::Local) => RedialPlan::Never,
        (NetworkRestructure, ClosedBy::Remote) => RedialPlan::ViolationBackoff,
        (ProtocolViolation, _) => RedialPlan::ViolationBackoff,
        (Timeout | ResourceConstraint | Unknown(_), _) => RedialPlan::TimeoutBackoff,
    }
}

/// The remote's retry-after hint wins over a shorter planned delay.
pub fn honour_retry_after(planned: Duration, retry_after: Option<Duration>) -> Duration {
    retry_after.map_or(planned, |hint| planned.max(hint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use DisconnectReason::*;

    #[test]
    fn the_table() {
        let cases = [
            (Normal, ClosedBy::Local, true, 0, RedialPlan::Never),
            (Normal, ClosedBy::Remote, true, 0, RedialPlan::Prompt),
            (
                Normal,
                ClosedBy::Remote,
                true,
                1,
                RedialPlan::TimeoutBackoff,
            ),
            (
                Timeout,
                ClosedBy::Remote,
                true,
                0,
                RedialPlan::TimeoutBackoff,
            ),
            (
                Unknown(99),
                ClosedBy::Remote,
                true,
                0,
                RedialPlan::TimeoutBackoff,
            ),
            (
                ProtocolViolation,
                ClosedBy::Local,
                true,
                0,
                RedialPlan::ViolationBackoff,
            ),
            (
                ResourceConstraint,
                ClosedBy::Remote,
                true,
                0,
                RedialPlan::TimeoutBackoff,
            ),
            (Banned, ClosedBy::Remote, true, 0, RedialPlan::Never),
            (Banned, ClosedBy::Local, true, 0, RedialPlan::Never),
            (
                NetworkRestructure,
                ClosedBy::Local,
                true,
                0,
                RedialPlan::Never,
            ),
            (
                NetworkRestructure,
                ClosedBy::Remote,
                true,
                0,
                RedialPlan::ViolationBackoff,
            ),
            (Duplicate, ClosedBy::Remote, false, 0, RedialPlan::Prompt),
            (Duplicate, ClosedBy::Local, true, 3, RedialPlan::Prompt),
            (Timeout, ClosedBy::Remote, false, 0, RedialPlan::Never),
            (Normal, ClosedBy::Remote, false, 0, RedialPlan::Never),
        ];
        for (reason, by, wanted, attempt, expected) in cases {
            assert_eq!(
                plan(reason, by, wanted, attempt),
                expected,
                "{reason:?} {by:?} wanted={wanted} attempt={attempt}"
            );
        }
    }

    #[test]
    fn retry_after_only_lengthens() {
        let s = Duration::from_secs;
        assert_eq!(honour_retry_after(s(1), Some(s(5))), s(5));
        assert_eq!(honour_retry_after(s(9), Some(s(5))), s(9));
        assert_eq!(honour_retry_after(s(9), None), s(9));
    }
}
