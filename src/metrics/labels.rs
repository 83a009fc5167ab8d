//! Stable snake_case label values for the manager's types: one per variant, never data a
//! remote controls, so that every label set stays small and bounded.

use libp2p_core::Endpoint;

use crate::{
    BanTarget, ClosedBy, Denial, DialFailureCause, DisconnectReason, HealthCategory, Initiator,
    LimitKind, Phase,
};

/// Every phase, for the one-hot `phase` gauge.
pub(super) const PHASES: [Phase; 4] = [
    Phase::Disconnected,
    Phase::Bootstrapping,
    Phase::Connected,
    Phase::Terminated,
];

/// Every health category, for the `connections_by_health` gauge.
pub(super) const CATEGORIES: [HealthCategory; 5] = [
    HealthCategory::Excellent,
    HealthCategory::Good,
    HealthCategory::Fair,
    HealthCategory::Poor,
    HealthCategory::Critical,
];

pub(super) fn category(category: HealthCategory) -> &'static str {
    match category {
        HealthCategory::Excellent => "excellent",
        HealthCategory::Good => "good",
        HealthCategory::Fair => "fair",
        HealthCategory::Poor => "poor",
        HealthCategory::Critical => "critical",
    }
}

pub(super) fn direction(direction: Endpoint) -> &'static str {
    match direction {
        Endpoint::Dialer => "outbound",
        Endpoint::Listener => "inbound",
    }
}

pub(super) fn initiator(initiator: Initiator) -> &'static str {
    match initiator {
        Initiator::Local => "local",
        Initiator::Remote => "remote",
    }
}

pub(super) fn closed_by(closed_by: ClosedBy) -> &'static str {
    match closed_by {
        ClosedBy::Local => "local",
        ClosedBy::Remote => "remote",
    }
}

pub(super) fn target(target: &BanTarget) -> &'static str {
    match target {
        BanTarget::Peer(_) => "peer",
        BanTarget::Network(_) => "network",
    }
}

pub(super) fn phase(phase: Phase) -> &'static str {
    match phase {
        Phase::Disconnected => "disconnected",
        Phase::Bootstrapping => "bootstrapping",
        Phase::Connected => "connected",
        Phase::Terminated => "terminated",
    }
}

/// Unknown codes share one label, to bound cardinality.
pub(super) fn reason(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::Normal => "normal",
        DisconnectReason::Timeout => "timeout",
        DisconnectReason::ProtocolViolation => "protocol_violation",
        DisconnectReason::ResourceConstraint => "resource_constraint",
        DisconnectReason::Banned => "banned",
        DisconnectReason::NetworkRestructure => "network_restructure",
        DisconnectReason::Duplicate => "duplicate",
        DisconnectReason::Closed => "closed",
        DisconnectReason::Unknown(_) => "unknown",
    }
}

pub(super) fn denial(denial: &Denial) -> &'static str {
    match denial {
        Denial::SelfConnection { .. } => "self_connection",
        Denial::PerPeerLimit { .. } => "per_peer_limit",
        Denial::Limit { kind, .. } => match kind {
            LimitKind::PendingIncoming => "limit_pending_inbound",
            LimitKind::PendingOutgoing => "limit_pending_outbound",
            LimitKind::EstablishedIncoming => "limit_established_inbound",
            LimitKind::EstablishedOutgoing => "limit_established_outbound",
            LimitKind::Established => "limit_established_total",
        },
        Denial::IpLimit { .. } => "ip_limit",
        Denial::RateLimited { .. } => "rate_limited",
        Denial::RelayLimit { .. } => "relay_limit",
        Denial::TooManyAddresses { .. } => "too_many_addresses",
        Denial::PeerBanned { .. } => "peer_banned",
        Denial::IpBanned { .. } => "ip_banned",
        Denial::Terminated => "terminated",
    }
}

pub(super) fn dial_failure(cause: &DialFailureCause) -> &'static str {
    match cause {
        DialFailureCause::SelfConnection => "self_connection",
        DialFailureCause::NoAddresses => "no_addresses",
        DialFailureCause::ConditionFalse => "condition_false",
        DialFailureCause::Aborted => "aborted",
        DialFailureCause::WrongPeerId { .. } => "wrong_peer_id",
        DialFailureCause::DeniedByManager(_) => "denied_by_manager",
        DialFailureCause::DeniedByOther { .. } => "denied_by_other",
        DialFailureCause::Transport { .. } => "transport",
        DialFailureCause::TimedOut(_) => "timed_out",
    }
}
