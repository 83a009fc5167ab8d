//! Peer exchange: telling connected peers whom else we are connected to, and treating what
//! they tell us as discovery.

use std::net::IpAddr;

use super::*;
use crate::protocol::exchange::{PeerList, MAX_ADDRS_PER_PEER, MAX_PEERS};

/// Peer-exchange settings (off unless [`Config::with_peer_exchange`] is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerExchange {
    pub(crate) auto_connect: bool,
    pub(crate) interval: Duration,
}

impl PeerExchange {
    /// Defaults: received peers are only remembered as addresses of peers already tracked (no
    /// auto-connect); updates go out at most every 10 s.
    pub fn new() -> Self {
        Self {
            auto_connect: false,
            interval: Duration::from_secs(10),
        }
    }

    /// Whether received peers are dialed (added as discovered, subject to limits, bans and the
    /// cap on discovered peers). Such a peer is forgotten once it is unreachable and nobody
    /// advertises it again.
    pub fn with_auto_connect(mut self, auto_connect: bool) -> Self {
        self.auto_connect = auto_connect;
        self
    }

    /// The least time between two rounds of updates to every connected peer.
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }
}

impl Default for PeerExchange {
    fn default() -> Self {
        Self::new()
    }
}

/// How far an address reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Loopback,
    Private,
    Public,
}

fn scope(ip: IpAddr) -> Scope {
    match ip {
        _ if ip.is_loopback() => Scope::Loopback,
        IpAddr::V4(v4) if v4.is_private() || v4.is_link_local() => Scope::Private,
        // Unique local (fc00::/7) and link-local (fe80::/10) IPv6.
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => Scope::Private,
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Scope::Private,
        _ => Scope::Public,
    }
}

/// Whether a peer at `recipient` can plausibly reach `address`: public addresses reach
/// everyone, private ones reach private and local peers, loopback only the same host.
fn reachable_from(recipient: Option<IpAddr>, address: &Multiaddr) -> bool {
    // Where the address can be reached: through a relay, the relay's IP.
    match (recipient.map(scope), limits::first_ip(address).map(scope)) {
        (Some(recipient), Some(Scope::Loopback)) => recipient == Scope::Loopback,
        (Some(recipient), Some(Scope::Private)) => recipient != Scope::Public,
        _ => true,
    }
}

impl Manager {
    /// A connection became the one kept to `peer`: tell it whom we know, and tell the others
    /// about it at the next round.
    pub(super) fn exchange_on_kept(
        &mut self,
        now: Instant,
        peer: PeerId,
        connection: ConnectionId,
    ) {
        if self.config.peer_exchange.is_none() {
            return;
        }
        let peers = self.peer_list_for(now, peer);
        if !peers.is_empty() {
            self.actions.push_back(Action::SendPeers {
                peer,
                connection,
                peers,
            });
        }
        self.exchange_changed(now);
    }

    /// The set of connected peers (or their addresses) changed: schedule a round of updates,
    /// no sooner than the interval after the last one.
    pub(super) fn exchange_changed(&mut self, now: Instant) {
        let Some(exchange) = self.config.peer_exchange else {
            return;
        };
        if self.exchange_due.is_some() || self.terminated {
            return;
        }
        let at = self
            .last_exchange
            .map_or(now, |last| later(last, exchange.interval))
            .max(now);
        self.exchange_due = Some(at);
        self.timers.schedule(at, Timer::Exchange);
    }

    pub(super) fn on_exchange_due(&mut self, now: Instant) {
        self.exchange_due = None;
        self.last_exchange = Some(now);
        let recipients: Vec<(PeerId, ConnectionId)> = self
            .peers
            .iter()
            .filter_map(|(peer, record)| {
                let kept = record.open().min_by_key(|c| c.established_at)?;
                Some((*peer, kept.id))
            })
            .collect();
        for (peer, connection) in recipients {
            let peers = self.peer_list_for(now, peer);
            self.actions.push_back(Action::SendPeers {
                peer,
                connection,
                peers,
            });
        }
    }

    /// Whom to tell `recipient` about: connected peers other than itself, not banned, with
    /// addresses it can plausibly reach; at most [`MAX_PEERS`], [`MAX_ADDRS_PER_PEER`] each.
    fn peer_list_for(&self, now: Instant, recipient: PeerId) -> PeerList {
        let recipient_ip = self
            .peers
            .get(&recipient)
            .and_then(|r| r.open().next())
            .and_then(|c| ip_of(&c.remote_addr));
        self.peers
            .iter()
            .filter(|(peer, record)| **peer != recipient && record.is_connected())
            .filter(|(peer, _)| self.bans.peer(peer, now).is_none())
            .filter_map(|(peer, record)| {
                let addresses: Vec<Multiaddr> = record
                    .addresses
                    .iter()
                    .filter(|a| reachable_from(recipient_ip, a))
                    .take(MAX_ADDRS_PER_PEER)
                    .cloned()
                    .collect();
                (!addresses.is_empty()).then_some((*peer, addresses))
            })
            .take(MAX_PEERS)
            .collect()
    }

    /// `from` told us about `peers`. Treated as discovery: with auto-connect they are dialed
    /// (subject to limits, bans and the discovered-peer cap) and forgotten once unreachable;
    /// without it, their addresses are remembered for peers already tracked.
    pub fn on_peers_received(&mut self, now: Instant, from: PeerId, peers: PeerList) {
        let Some(exchange) = self.config.peer_exchange else {
            return;
        };
        for (peer, addresses) in peers {
            if peer == self.local || peer == from || self.bans.peer(&peer, now).is_some() {
                continue;
            }
            let addresses: Vec<Multiaddr> = addresses
                .into_iter()
                .filter(|a| ip_of(a).is_none_or(|ip| self.bans.ip(ip, now).is_none()))
                .collect();
            if addresses.is_empty() {
                continue;
            }
            let known = self.peers.get(&peer);
            if known.is_some_and(|r| r.is_connected()) {
                continue;
            }
            if exchange.auto_connect {
                let asked_for = known.is_some_and(|r| r.wanted && !r.flagged);
                if self.add_discovered(now, peer, addresses).is_ok() && !asked_for {
                    if let Some(record) = self.peers.get_mut(&peer) {
                        // Only hearsay keeps it: forgotten once unreachable.
                        record.flagged = true;
                    }
                }
            } else if known.is_some() {
                for address in addresses {
                    self.add_address(peer, address);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_only_sent_where_they_can_be_reached() {
        let loopback = Some("127.0.0.1".parse().unwrap());
        let private = Some("192.168.1.5".parse().unwrap());
        let public = Some("198.51.100.7".parse().unwrap());
        let local = addr("/ip4/127.0.0.1/tcp/1");
        let lan = addr("/ip4/10.1.2.3/tcp/1");
        let wan = addr("/ip4/203.0.113.9/tcp/1");
        assert!(reachable_from(loopback, &local));
        assert!(reachable_from(loopback, &lan));
        assert!(reachable_from(loopback, &wan));
        assert!(!reachable_from(private, &local));
        assert!(reachable_from(private, &lan));
        assert!(reachable_from(private, &wan));
        assert!(!reachable_from(public, &local));
        assert!(!reachable_from(public, &lan));
        assert!(reachable_from(public, &wan));
        assert!(reachable_from(public, &addr("/dns4/example.org/tcp/1")));
    }
}
