//! Typed refusals of a connection, carried inside `libp2p_swarm::ConnectionDenied`.

use std::{net::IpAddr, time::Duration};

use ipnet::IpNet;
use libp2p_core::Multiaddr;
use libp2p_identity::PeerId;

use super::limits::{LimitKind, RateLimit};

/// Why the connection manager refused a connection.
///
/// The swarm reports it inside [`libp2p_swarm::ConnectionDenied`]; get it back with
/// `denied.downcast_ref::<Denial>()` (or `downcast::<Denial>()`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denial {
    /// The remote has our own peer id (two nodes sharing a key).
    #[error("connection to our own peer id {peer} refused")]
    SelfConnection {
        /// Our (and the remote's) peer id.
        peer: PeerId,
    },
    /// The hard cap on connections to one peer is reached.
    #[error("per-peer limit {limit} reached for {peer} ({current} established)")]
    PerPeerLimit {
        /// The remote peer.
        peer: PeerId,
        /// The configured cap.
        limit: u32,
        /// Connections to the peer when the new one was refused.
        current: u32,
    },
    /// A connection limit is reached.
    #[error("{kind} limit {limit} reached ({current} now)")]
    Limit {
        /// Which limit.
        kind: LimitKind,
        /// Its value.
        limit: u32,
        /// The count when the connection was refused.
        current: u32,
    },
    /// Too many inbound connections from one address prefix (IPv4 /32; IPv6 /64, /56 or /48).
    #[error(
        "inbound limit {limit} per {} {network} reached ({current} now, from {ip})",
        prefix_name(network)
    )]
    IpLimit {
        /// The remote address (canonical: an IPv4-mapped IPv6 address is its IPv4 address).
        ip: IpAddr,
        /// The prefix whose limit refused it (`10.0.0.1/32`, `2001:db8:1::/48`).
        network: IpNet,
        /// The configured limit of that prefix.
        limit: u32,
        /// Its inbound connections when the new one was refused.
        current: u32,
    },
    /// One address prefix opened inbound connections faster than allowed.
    #[error(
        "inbound rate limit per {} {network} exceeded ({rate}; from {ip})",
        prefix_name(network)
    )]
    RateLimited {
        /// The remote address (canonical).
        ip: IpAddr,
        /// The prefix whose bucket was empty.
        network: IpNet,
        /// The configured rate of that prefix.
        rate: RateLimit,
    },
    /// Too many inbound relayed connections through one relay.
    #[error("inbound limit {limit} per relay reached for {relay} ({current} now)")]
    RelayLimit {
        /// The relay, as the local address of the circuit names it (before `/p2p-circuit`).
        relay: Multiaddr,
        /// The configured limit.
        limit: u32,
        /// Its inbound circuits when the new one was refused.
        current: u32,
    },
    /// The per-IP table is full of addresses that all have connections.
    #[error("per-IP state is full ({limit} addresses tracked)")]
    TooManyAddresses {
        /// The configured size of the table.
        limit: usize,
    },
    /// The peer is banned.
    #[error("peer {peer} is banned {}", ban_length(*remaining))]
    PeerBanned {
        /// The banned peer.
        peer: PeerId,
        /// How long the ban still runs; `None` for a permanent ban.
        remaining: Option<Duration>,
    },
    /// The remote's IP address is in a banned network.
    #[error("{ip} is banned (network {network}) {}", ban_length(*remaining))]
    IpBanned {
        /// The remote address.
        ip: IpAddr,
        /// The banned network it falls in.
        network: IpNet,
        /// How long the ban still runs; `None` for a permanent ban.
        remaining: Option<Duration>,
    },
    /// The manager was shut down and accepts no connection.
    #[error("the connection manager is shut down")]
    Terminated,
}

impl Denial {
    /// Whether a limit (not a ban or a rule) refused the connection: trying again later can work.
    pub fn is_resource_limit(&self) -> bool {
        matches!(
            self,
            Self::PerPeerLimit { .. }
                | Self::Limit { .. }
                | Self::IpLimit { .. }
                | Self::RateLimited { .. }
                | Self::RelayLimit { .. }
                | Self::TooManyAddresses { .. }
        )
    }
}

/// "IPv4 /32", "IPv6 /48".
fn prefix_name(network: &IpNet) -> String {
    let family = match network {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    };
    format!("{family} /{}", network.prefix_len())
}

fn ban_length(remaining: Option<Duration>) -> String {
    match remaining {
        Some(left) => format!("for another {}s", left.as_secs().max(1)),
        None => "permanently".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denials_say_what_happened() {
        let peer = PeerId::random();
        let limit = Denial::Limit {
            kind: LimitKind::PendingIncoming,
            limit: 64,
            current: 64,
        };
        assert_eq!(
            limit.to_string(),
            "pending inbound limit 64 reached (64 now)"
        );
        let banned = Denial::PeerBanned {
            peer,
            remaining: Some(Duration::from_secs(41)),
        };
        assert_eq!(
            banned.to_string(),
            format!("peer {peer} is banned for another 41s")
        );
        let ip_banned = Denial::IpBanned {
            ip: "10.0.0.1".parse().unwrap(),
            network: "10.0.0.0/8".parse().unwrap(),
            remaining: None,
        };
        assert_eq!(
            ip_banned.to_string(),
            "10.0.0.1 is banned (network 10.0.0.0/8) permanently"
        );
        assert!(limit.is_resource_limit());
        assert!(!banned.is_resource_limit());
    }
}
