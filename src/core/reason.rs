//! Why a connection ends: the reason carried by a goodbye and by every disconnect event.

use std::fmt;

/// Why a connection was (or is about to be) closed.
///
/// The reason travels to the remote in a goodbye frame (the goodbye protocol) and decides
/// what the side that initiated the connection does next:
///
/// | reason | the initiator then |
/// |---|---|
/// | [`Normal`](Self::Normal) | local call: no redial; remote said it: one prompt redial, then backoff |
/// | [`Timeout`](Self::Timeout) | exponential backoff with jitter |
/// | [`ProtocolViolation`](Self::ProtocolViolation) | longer backoff |
/// | [`ResourceConstraint`](Self::ResourceConstraint) | after the remote's retry-after hint, or backoff |
/// | [`Banned`](Self::Banned) | never |
/// | [`NetworkRestructure`](Self::NetworkRestructure) | no redial when trimmed |
/// | [`Duplicate`](Self::Duplicate) | nothing while another connection lives; a prompt redial if none does |
/// | [`Closed`](Self::Closed) | the closed backoff (longer than the timeout one), never a prompt redial |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// An orderly close asked for by the application (`disconnect`, `shutdown`).
    Normal,
    /// The peer stopped answering (ping failures, inactivity) or the transport failed
    /// without a goodbye.
    Timeout,
    /// The peer broke a protocol rule (malformed frame, ...).
    ProtocolViolation,
    /// A resource limit refused or dropped the connection.
    ResourceConstraint,
    /// The peer, or the IP network it connects from, is banned.
    Banned,
    /// Closed to reshape the network: trimmed above the high watermark, or replaced because
    /// its health stayed critical.
    NetworkRestructure,
    /// The connection lost the one-connection-per-peer tie-break; another connection to the same
    /// peer is kept.
    Duplicate,
    /// The remote closed the connection cleanly without a goodbye: a node that does not run
    /// this crate hung up, shut down, or had its own connection manager prune us. Told apart
    /// from a failure ([`Timeout`](Self::Timeout)) by the clean end of the muxer or of the
    /// connection. Local only: this crate never sends it.
    Closed,
    /// A reason code this version does not know. Treated like [`Timeout`](Self::Timeout).
    Unknown(u32),
}

impl DisconnectReason {
    /// Whether a connection ended this way means the remote pushed this node away: it
    /// trimmed it, refused it for resources, banned it, or hung up on it without a goodbye.
    pub(crate) fn pushed_away(self, by: super::redial::ClosedBy) -> bool {
        by == super::redial::ClosedBy::Remote
            && matches!(
                self,
                Self::NetworkRestructure | Self::ResourceConstraint | Self::Banned | Self::Closed
            )
    }

    /// The code of this reason on the wire.
    pub fn code(self) -> u32 {
        match self {
            Self::Normal => 0,
            Self::Timeout => 1,
            Self::ProtocolViolation => 2,
            Self::ResourceConstraint => 3,
            Self::Banned => 4,
            Self::NetworkRestructure => 5,
            Self::Duplicate => 6,
            Self::Closed => 7,
            Self::Unknown(code) => code,
        }
    }

    /// The reason for a wire code; codes this version does not know become
    /// [`Unknown`](Self::Unknown).
    pub fn from_code(code: u32) -> Self {
        match code {
            0 => Self::Normal,
            1 => Self::Timeout,
            2 => Self::ProtocolViolation,
            3 => Self::ResourceConstraint,
            4 => Self::Banned,
            5 => Self::NetworkRestructure,
            6 => Self::Duplicate,
            7 => Self::Closed,
            other => Self::Unknown(other),
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Normal => f.write_str("normal close"),
            Self::Timeout => f.write_str("timeout"),
            Self::ProtocolViolation => f.write_str("protocol violation"),
            Self::ResourceConstraint => f.write_str("resource constraint"),
            Self::Banned => f.write_str("banned"),
            Self::NetworkRestructure => f.write_str("network restructure"),
            Self::Duplicate => f.write_str("duplicate connection"),
            Self::Closed => f.write_str("closed without a goodbye"),
            Self::Unknown(code) => write!(f, "unknown reason code {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips() {
        for code in 0..=7 {
            assert_eq!(DisconnectReason::from_code(code).code(), code);
            assert!(!matches!(
                DisconnectReason::from_code(code),
                DisconnectReason::Unknown(_)
            ));
        }
    }

    #[test]
    fn unknown_codes_are_kept() {
        assert_eq!(
            DisconnectReason::from_code(4711),
            DisconnectReason::Unknown(4711)
        );
        assert_eq!(DisconnectReason::Unknown(4711).code(), 4711);
    }
}
