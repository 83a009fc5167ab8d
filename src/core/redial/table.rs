//! The redial tables, as pure functions: what the initiator of a lost connection does next, by
//! the reason it was lost ([`plan`]), and what follows a failed dial ([`after_failed_dial`]).

use std::time::Duration;

use super::super::DialFailureCause;
use super::super::DisconnectReason;

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClosedBy {
    /// The local node: the manager, the application, or another behaviour.
    Local,
    /// The remote: it said goodbye, closed the connection, or the transport failed.
    Remote,
}

impl std::fmt::Display for ClosedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClosedBy::Local => "closed by us",
            ClosedBy::Remote => "closed by them",
        })
    }
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
    /// On the closed backoff schedule: the remote hung up in order, perhaps pruning us.
    ClosedBackoff,
}

/// Prompt redials after lost tie-breaks before the backoff takes over.
const PROMPT_DUPLICATE_REDIALS: u32 = 3;

/// What the redial decision knows of the peer whose last connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerContext {
    /// The application asked for the peer (`dial`): it is kept connected.
    pub wanted: bool,
    /// Redials since the peer was last connected.
    pub attempt: u32,
    /// A duplicate of this peer was closed or refused moments ago: the connection that was kept
    /// may have died before the remote ever saw it.
    pub settling_duplicates: bool,
    /// The lost connection died unexplained (no goodbye) before its first ping, soon after it
    /// was established: the remote may never have finished its side of the handshake (under
    /// load, its upgrade timed out while ours had completed).
    pub died_young: bool,
    /// The remote said when to come back (a retry-after hint).
    pub hinted: bool,
}

/// The redial table (the README's "Redial and discovery" section), for the initiator of the last
/// connection to a peer.
///
/// Peers nobody asked for are only redialed promptly when a duplicate tie-break went wrong (the
/// loser was closed and the survivor died while the two sides settled), so a pair never ends
/// with zero connections because both sides closed at once.
pub fn plan(reason: DisconnectReason, closed_by: ClosedBy, peer: PeerContext) -> RedialPlan {
    use DisconnectReason::*;
    match (reason, closed_by) {
        // A lost tie-break is redialed at once, but a remote that keeps closing ours as a
        // duplicate is not dialed in a tight loop.
        (Duplicate, _) if peer.attempt < PROMPT_DUPLICATE_REDIALS => RedialPlan::Prompt,
        (Duplicate, _) if !peer.wanted => RedialPlan::Never,
        (Duplicate, _) => RedialPlan::TimeoutBackoff,
        // A timed ban: the remote said when it ends (the delay honours the hint).
        (Banned, ClosedBy::Remote) if peer.hinted && peer.wanted => RedialPlan::TimeoutBackoff,
        (Banned, _) => RedialPlan::Never,
        // A local Normal close is `disconnect`, `shutdown` or another behaviour's decision.
        (Normal, ClosedBy::Local) => RedialPlan::Never,
        // The survivor of a tie-break died unexplained while the two sides settled: the remote
        // may never have seen it, and may have closed its own as the loser.
        (Timeout | Closed, ClosedBy::Remote) if peer.settling_duplicates => RedialPlan::Prompt,
        // A peer nobody asked for is rescued like after a failed dial: promptly, within the
        // rescue budget. A wanted peer stays on the timeout backoff below, so a remote that
        // accepts and drops it at once is not dialed in a tight loop.
        (Timeout | Closed, ClosedBy::Remote) if peer.died_young && !peer.wanted => {
            RedialPlan::Prompt
        }
        _ if !peer.wanted => RedialPlan::Never,
        (Normal, ClosedBy::Remote) if peer.attempt == 0 => RedialPlan::Prompt,
        (Normal, ClosedBy::Remote) => RedialPlan::TimeoutBackoff,
        // Trimmed locally: the point was to have fewer connections.
        (NetworkRestructure, ClosedBy::Local) => RedialPlan::Never,
        (NetworkRestructure, ClosedBy::Remote) => RedialPlan::ViolationBackoff,
        (ProtocolViolation, _) => RedialPlan::ViolationBackoff,
        // The remote hung up in order without saying why: perhaps its connection manager
        // pruned us. Redialing at once (or on the short timeout backoff) would dial into the
        // next prune.
        (Closed, _) => RedialPlan::ClosedBackoff,
        (Timeout | ResourceConstraint | Unknown(_), _) => RedialPlan::TimeoutBackoff,
    }
}

/// The plan after a failed dial of a peer left with no connection and no other dial in flight.
/// `attempt`: redials since it was last connected.
///
/// A wanted peer is retried at once the first time, then on the timeout backoff; a local
/// refusal that does not free up by itself (the per-peer cap) also backs off, any other local
/// refusal (a ban, a self-dial) ends the retries. A peer nobody asked for is only rescued
/// after a transient failure (see [`DialFailureCause::is_transient`]), and never when it is a
/// bootstrap peer (`bootstrap`): the next round, on the bootstrap backoff, dials it again.
/// A prompt rescue there would multiply the burst a bootstrap peer sees when many nodes start
/// together and it refuses.
pub fn after_failed_dial(
    cause: &DialFailureCause,
    wanted: bool,
    attempt: u32,
    bootstrap: bool,
) -> RedialPlan {
    if !wanted {
        return if cause.is_transient() && !bootstrap {
            RedialPlan::Prompt
        } else {
            RedialPlan::Never
        };
    }
    match cause {
        DialFailureCause::DeniedByManager(denial) if denial.is_resource_limit() => {
            RedialPlan::TimeoutBackoff
        }
        DialFailureCause::SelfConnection | DialFailureCause::DeniedByManager(_) => {
            RedialPlan::Never
        }
        _ if attempt == 0 => RedialPlan::Prompt,
        _ => RedialPlan::TimeoutBackoff,
    }
}

/// The remote's retry-after hint wins over a shorter planned delay.
pub fn honour_retry_after(planned: Duration, retry_after: Option<Duration>) -> Duration {
    retry_after.map_or(planned, |hint| planned.max(hint))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hashing::Set;
    use DisconnectReason::*;

    /// The README's redial table is a claim: each row's reason (and who closed) must plan what
    /// its second column says, for a wanted peer on its first redial.
    #[test]
    fn the_readme_table_says_what_the_plan_does() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("## Redial and discovery")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("the README has a redial section");
        let rows: Vec<(&str, &str)> = section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .filter_map(|line| {
                let mut cells = line.trim_matches('|').split('|');
                Some((cells.next()?.trim(), cells.next()?.trim()))
            })
            .collect();
        let mut named = Set::default();
        let context = PeerContext {
            wanted: true,
            attempt: 0,
            settling_duplicates: false,
            died_young: false,
            hinted: false,
        };
        for (lost, then) in rows {
            let name = lost.split('`').nth(1).expect("a reason in backticks");
            let reason = match name {
                "Normal" => Normal,
                "Timeout" => Timeout,
                "ProtocolViolation" => ProtocolViolation,
                "ResourceConstraint" => ResourceConstraint,
                "Banned" => Banned,
                "NetworkRestructure" => NetworkRestructure,
                "Duplicate" => Duplicate,
                "Closed" => Closed,
                other => panic!("the README names a reason the code does not know: {other}"),
            };
            named.insert(name);
            let closed_by = if lost.contains("locally") {
                ClosedBy::Local
            } else {
                ClosedBy::Remote
            };
            let context = PeerContext {
                hinted: lost.contains("retry-after"),
                ..context
            };
            let expected = if then.starts_with("nothing while") {
                // `Duplicate`: the kept connection lives on; if none does, a prompt redial.
                RedialPlan::Prompt
            } else if then.starts_with("never") || then.starts_with("nothing") {
                RedialPlan::Never
            } else if then.contains("prompt redial, then") {
                RedialPlan::Prompt
            } else if then.contains("closed_backoff") {
                RedialPlan::ClosedBackoff
            } else if then.starts_with("longer backoff") {
                RedialPlan::ViolationBackoff
            } else if then.contains("backoff") {
                RedialPlan::TimeoutBackoff
            } else {
                panic!("cannot read the README's row for {name}: {then}")
            };
            assert_eq!(
                plan(reason, closed_by, context),
                expected,
                "README row `{name}` ({closed_by:?}) says: {then}"
            );
        }
        for reason in [
            "Normal",
            "Timeout",
            "Closed",
            "ProtocolViolation",
            "ResourceConstraint",
            "Banned",
            "NetworkRestructure",
            "Duplicate",
        ] {
            assert!(
                named.contains(reason),
                "the README's table has no row for {reason}"
            );
        }
    }

    /// The table's fine print: the third duplicate redial backs off for a kept peer and ends
    /// for others, and a ban with a retry-after is waited out only by a peer that is kept.
    #[test]
    fn the_readme_tables_fine_print() {
        let kept = PeerContext {
            wanted: true,
            attempt: PROMPT_DUPLICATE_REDIALS,
            settling_duplicates: false,
            died_young: false,
            hinted: false,
        };
        assert_eq!(
            plan(Duplicate, ClosedBy::Remote, kept),
            RedialPlan::TimeoutBackoff
        );
        let other = PeerContext {
            wanted: false,
            ..kept
        };
        assert_eq!(plan(Duplicate, ClosedBy::Remote, other), RedialPlan::Never);
        let banned = PeerContext {
            attempt: 0,
            hinted: true,
            ..other
        };
        assert_eq!(plan(Banned, ClosedBy::Remote, banned), RedialPlan::Never);
    }

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
            (Duplicate, ClosedBy::Local, true, 2, RedialPlan::Prompt),
            (
                Duplicate,
                ClosedBy::Remote,
                true,
                3,
                RedialPlan::TimeoutBackoff,
            ),
            (Duplicate, ClosedBy::Remote, false, 3, RedialPlan::Never),
            (Timeout, ClosedBy::Remote, false, 0, RedialPlan::Never),
            (Normal, ClosedBy::Remote, false, 0, RedialPlan::Never),
        ];
        for (reason, by, wanted, attempt, expected) in cases {
            let peer = PeerContext {
                wanted,
                attempt,
                settling_duplicates: false,
                died_young: false,
                hinted: false,
            };
            assert_eq!(
                plan(reason, by, peer),
                expected,
                "{reason:?} {by:?} wanted={wanted} attempt={attempt}"
            );
        }
    }

    #[test]
    fn a_survivor_lost_while_duplicates_settle_is_redialed_promptly_unless_closed_on_purpose() {
        let settling = PeerContext {
            wanted: false,
            attempt: 0,
            settling_duplicates: true,
            died_young: false,
            hinted: false,
        };
        assert_eq!(
            plan(Timeout, ClosedBy::Remote, settling),
            RedialPlan::Prompt
        );
        // An explained close is not a failed tie-break.
        assert_eq!(plan(Normal, ClosedBy::Remote, settling), RedialPlan::Never);
        assert_eq!(
            plan(ProtocolViolation, ClosedBy::Remote, settling),
            RedialPlan::Never
        );
        assert_eq!(plan(Normal, ClosedBy::Local, settling), RedialPlan::Never);
        assert_eq!(plan(Banned, ClosedBy::Remote, settling), RedialPlan::Never);
    }

    #[test]
    fn a_connection_that_died_before_its_first_ping_is_retried_like_a_failed_dial() {
        let young = |wanted, attempt| PeerContext {
            wanted,
            attempt,
            settling_duplicates: false,
            died_young: true,
            hinted: false,
        };
        assert_eq!(
            plan(Timeout, ClosedBy::Remote, young(false, 0)),
            RedialPlan::Prompt
        );
        // A wanted peer is redialed anyway, on the backoff: a remote that keeps accepting and
        // dropping it is not dialed in a tight loop.
        assert_eq!(
            plan(Timeout, ClosedBy::Remote, young(true, 0)),
            RedialPlan::TimeoutBackoff
        );
        assert_eq!(
            plan(Normal, ClosedBy::Local, young(false, 0)),
            RedialPlan::Never
        );
    }

    #[test]
    fn retry_after_only_lengthens() {
        let s = Duration::from_secs;
        assert_eq!(honour_retry_after(s(1), Some(s(5))), s(5));
        assert_eq!(honour_retry_after(s(9), Some(s(5))), s(9));
        assert_eq!(honour_retry_after(s(9), None), s(9));
    }
}
