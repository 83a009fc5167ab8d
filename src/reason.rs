//! Why a connection ends: the reason carried by a goodbye and by every disconnect event.

use std::fmt;

/// Why a connection was (or is about to be) closed.
///
/// The reason travels to the remote in a goodbye frame (see [`crate::protocol`]) and decides
/// what the side that initiated the connection does next (see DESIGN.md section 4):
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
    /// A reason code this version does not know. Treated like [`Timeout`](Self::Timeout).
    Unknown(u32),
}

impl DisconnectReason {
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
            Self::Unknown(code) => write!(f, "unknown reason code {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips() {
        for code in 0..=6 {
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
