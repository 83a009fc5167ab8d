//! Peer exchange: telling connected peers whom else we are connected to. What they tell us is
//! hearsay, handled in `hearsay.rs`.

use std::net::IpAddr;

use super::{peers::Rank, *};

/// Peers with the addresses to reach them: what a peer-exchange list carries.
pub type PeerList = Vec<(PeerId, Vec<Multiaddr>)>;

/// Most peers named in a list sent, and read from a list received (the wire format may carry
/// more; the policy reads no further).
pub const MAX_LIST_PEERS: usize = 64;

/// Most addresses per peer named in a list sent.
pub const MAX_LIST_ADDRESSES: usize = 4;

/// Lists a round sends in one step; the rest follow [`ROUND_STEP_PAUSE`] later. A list costs
/// about 20 µs to make, so a step of a round to 10,000 peers holds the swarm's task for a few
/// milliseconds, not the quarter of a second the whole round takes.
pub(crate) const LISTS_PER_STEP: usize = 256;

/// The pause between two steps of a round.
const ROUND_STEP_PAUSE: Duration = Duration::from_millis(10);

/// Peer-exchange settings (off unless [`Config::with_peer_exchange`] is given).
///
/// What a peer tells about third parties is hearsay: it is vetted, budgeted, and never outranks
/// what the node saw itself or what the application asked for. With the defaults:
///
/// | setting | default |
/// |---|---|
/// | [`with_auto_connect`](Self::with_auto_connect) | `false` |
/// | [`with_interval`](Self::with_interval) | 10 s |
/// | [`with_max_peers`](Self::with_max_peers) | 128 |
/// | [`with_max_dials`](Self::with_max_dials) | 8 |
/// | [`with_max_per_prefix`](Self::with_max_per_prefix) | 4 |
///
/// The rules, whatever the settings:
/// - one list per connection per interval: a node sends no more, and drops lists that arrive
///   from one peer less than half an interval apart. A list holds at most 64 peers (a random
///   sample of the connected ones), 4 addresses each, within 16 KiB; a receiver keeps what
///   parses and fits of a larger one and does not hold it against the sender. A round of
///   lists to many peers goes out 256 lists at a time, 10 ms apart.
/// - received addresses are vetted against the sender: loopback only from a sender on the same
///   host, private and link-local ranges only from a sender on a private network, never DNS
///   names (their IP is unknown until dialed, so bans and the bounds below cannot apply),
///   unspecified or multicast addresses, addresses of banned networks, or `/p2p/` suffixes
///   naming another peer.
/// - addresses a connection proved or the application gave are never pushed out by hearsay,
///   and hearsay addresses are never written to a peer store.
/// - hearsay only dials a peer nobody else is dealing with: never one that is connected,
///   being dialed, waiting for a redial (so never before a remote's retry-after), wanted by
///   the application or discovery, or one the application disconnected (until it asks for it
///   again); not for 10 minutes one that trimming closed or whose redials were given up.
/// - a hearsay peer that pushes the node away (trims it, refuses it for a limit, bans it or
///   hangs up on it) is let go at once, not redialed, and left alone for 10 minutes: its slot
///   among [`with_max_peers`](Self::with_max_peers) goes to another peer a list names.
/// - a node refused for an established limit hears why (goodbye `ResourceConstraint`) and,
///   with peer exchange on at the refusing node, whom else to try: the list a connected peer
///   would get, public addresses only (the refused connection has no record to tell its
///   scope).
/// - at most one hearsay dial per address per interval, and on public addresses at most
///   [`with_max_per_prefix`](Self::with_max_per_prefix) dials per interval and as many hearsay
///   peers at once per IPv4 /24 or IPv6 /48 (loopback and private networks, which only a
///   sender on them can name, are exempt).
/// - hearsay dials start only while less than half of the pending-outbound limit is in use,
///   so the application's and the bootstrap dials always find a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerExchange {
    pub(crate) auto_connect: bool,
    pub(crate) interval: Duration,
    pub(crate) max_peers: usize,
    pub(crate) max_dials: usize,
    pub(crate) max_per_prefix: usize,
}

impl PeerExchange {
    /// The defaults of the table above: received peers are only remembered as addresses of
    /// peers already tracked (no auto-connect); updates go out at most every 10 s.
    pub fn new() -> Self {
        Self {
            auto_connect: false,
            interval: Duration::from_secs(10),
            max_peers: 128,
            max_dials: 8,
            max_per_prefix: 4,
        }
    }

    /// Whether received peers are dialed, within the budget of the other settings. Such a peer
    /// is wanted only while it is reachable: it is forgotten once a redial fails, and is not
    /// written to a peer store as wanted.
    pub fn with_auto_connect(mut self, auto_connect: bool) -> Self {
        self.auto_connect = auto_connect;
        self
    }

    /// The least time between two lists on one connection (received lists closer than half of
    /// it are dropped), and the window of the per-address and per-prefix dial bounds. Not
    /// zero ([`Config::validate`]).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Peers that are wanted only because a list named them, at most at once (connected or
    /// being dialed). Apart from [`Config::with_max_discovered_peers`], which counts the
    /// application's discovery only. Not zero with auto-connect ([`Config::validate`]).
    pub fn with_max_peers(mut self, max: usize) -> Self {
        self.max_peers = max;
        self
    }

    /// Hearsay dials in flight at most; one list starts at most half of them. Not zero with
    /// auto-connect ([`Config::validate`]).
    pub fn with_max_dials(mut self, max: usize) -> Self {
        self.max_dials = max;
        self
    }

    /// Hearsay peers held at once, and hearsay dials started per interval, per IPv4 /24 or
    /// IPv6 /48 of their public addresses (`0`: public addresses are never dialed on hearsay).
    pub fn with_max_per_prefix(mut self, max: usize) -> Self {
        self.max_per_prefix = max;
        self
    }

    /// Checks the settings (see [`Config::validate`]).
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let zero = |setting| Err(ConfigError::Zero { setting });
        if self.interval.is_zero() {
            return zero("PeerExchange::with_interval");
        }
        if self.auto_connect && self.max_peers == 0 {
            return zero("PeerExchange::with_max_peers");
        }
        if self.auto_connect && self.max_dials == 0 {
            return zero("PeerExchange::with_max_dials");
        }
        Ok(())
    }
}

impl Default for PeerExchange {
    fn default() -> Self {
        Self::new()
    }
}

/// How far an address reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    Loopback,
    Private,
    Public,
}

pub(super) fn scope(ip: IpAddr) -> Scope {
    match ip.to_canonical() {
        ip if ip.is_loopback() => Scope::Loopback,
        IpAddr::V4(v4) if v4.is_private() || v4.is_link_local() => Scope::Private,
        // Shared address space (RFC 6598): behind a carrier-grade NAT.
        IpAddr::V4(v4) if v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 => Scope::Private,
        // Unique local (fc00::/7) and link-local (fe80::/10) IPv6.
        IpAddr::V6(v6) if (v6.segments()[0] & 0xfe00) == 0xfc00 => Scope::Private,
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => Scope::Private,
        _ => Scope::Public,
    }
}

/// Whether an address with this IP can be dialed at all (not unspecified, multicast or the
/// IPv4 broadcast address).
pub(super) fn dialable(ip: IpAddr) -> bool {
    !ip.is_unspecified() && !ip.is_multicast() && ip != IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
}

/// Whether a peer at `recipient` can plausibly reach `address`, and would accept it from us:
/// public addresses reach everyone, private ones reach private and local peers, loopback only
/// the same host; DNS names and other addresses without an IP are not sent (a receiver cannot
/// vet them).
fn reachable_from(recipient: Option<IpAddr>, address: &Multiaddr) -> bool {
    // Where the address can be reached: through a relay, the relay's IP.
    let Some(ip) = limits::first_ip(address).filter(|ip| dialable(*ip)) else {
        return false;
    };
    match (recipient.map(scope).unwrap_or(Scope::Public), scope(ip)) {
        (recipient, Scope::Loopback) => recipient == Scope::Loopback,
        (recipient, Scope::Private) => recipient != Scope::Public,
        (_, Scope::Public) => true,
    }
}

impl Manager {
    /// A connection became the one kept to `peer`: tell it whom we know (unless it had a list
    /// less than an interval ago: the next round has it), and tell the others about it at the
    /// next round.
    pub(super) fn exchange_on_kept(
        &mut self,
        now: Instant,
        peer: PeerId,
        connection: ConnectionId,
    ) {
        let Some(exchange) = self.config.peer_exchange else {
            return;
        };
        self.exchange_changed(now);
        let due = self.peers.get(&peer).is_some_and(|r| {
            r.list_sent_at()
                .is_none_or(|at| now.saturating_duration_since(at) >= exchange.interval)
        });
        if due {
            let candidates = self.list_candidates();
            self.send_list(now, peer, connection, &candidates);
        }
    }

    /// The set of connected peers (or their addresses) changed: schedule a round of updates,
    /// no sooner than the interval after the last one.
    pub(super) fn exchange_changed(&mut self, now: Instant) {
        let Some(exchange) = self.config.peer_exchange else {
            return;
        };
        self.exchange.changed_at = Some(now);
        if self.timers.is_set(Timer::Exchange) || self.terminated {
            return;
        }
        let at = self
            .last_exchange
            .map_or(now, |last| later(last, exchange.interval))
            .max(now);
        self.timers.set(Timer::Exchange, at);
    }

    /// A round: every connected peer whose last list predates the latest change gets a new
    /// one, unless it had one less than an interval ago; then another round follows one
    /// interval later. The lists go out [`LISTS_PER_STEP`] at a time, [`ROUND_STEP_PAUSE`]
    /// apart, so that a round to thousands of peers does not hold the swarm's task at once.
    pub(super) fn on_exchange_due(&mut self, now: Instant) {
        let Some(exchange) = self.config.peer_exchange else {
            return;
        };
        if self.exchange.round.is_empty() {
            self.start_round(now, exchange.interval);
        }
        // Gathered once for the step: gathering visits every peer.
        let candidates = self.list_candidates();
        let mut sent = 0;
        while sent < LISTS_PER_STEP {
            let Some(peer) = self.exchange.round.pop_front() else {
                break;
            };
            // Its connection now: the one kept may have changed since the round began.
            let Some(connection) = self
                .peers
                .get(&peer)
                .and_then(|r| r.open().min_by_key(|c| c.established_at))
                .map(|c| c.id)
            else {
                continue;
            };
            self.send_list(now, peer, connection, &candidates);
            sent += 1;
        }
        if self.terminated {
            self.exchange.round.clear();
            return;
        }
        if !self.exchange.round.is_empty() {
            self.timers
                .set(Timer::Exchange, later(now, ROUND_STEP_PAUSE));
        } else if self.exchange.round_deferred {
            self.timers
                .set(Timer::Exchange, later(now, exchange.interval));
        } else if self.exchange.changed_at > self.last_exchange {
            // News that came while the round went out (the step's timer was set, so it
            // scheduled nothing): the next round, an interval after this one began.
            let next = self
                .last_exchange
                .map_or(now, |last| later(last, exchange.interval))
                .max(now);
            self.timers.set(Timer::Exchange, next);
        }
    }

    /// Picks the recipients of a new round (see [`on_exchange_due`](Self::on_exchange_due)).
    fn start_round(&mut self, now: Instant, interval: Duration) {
        self.last_exchange = Some(now);
        let changed = self.exchange.changed_at;
        let mut deferred = false;
        let recipients: VecDeque<PeerId> = self
            .peers
            .iter()
            .filter(|(_, record)| record.is_connected())
            .filter(|(_, record)| record.list_sent_at().is_none_or(|at| Some(at) < changed))
            .filter_map(|(peer, record)| {
                let due = record
                    .list_sent_at()
                    .is_none_or(|at| now.saturating_duration_since(at) >= interval);
                deferred |= !due;
                due.then_some(*peer)
            })
            .collect();
        self.exchange.round = recipients;
        self.exchange.round_deferred = deferred;
    }

    /// `peer` was refused for a limit and hears why on `connection` (see `refusals.rs`): with
    /// peer exchange on, it is also told whom else to try, the list a connected peer would get.
    /// Such a connection has no record, so the recipient counts as public: only public
    /// addresses are named. A full node thus passes newcomers on to its peers instead of
    /// leaving them to retry it.
    pub(super) fn refer(&mut self, now: Instant, peer: PeerId, connection: ConnectionId) {
        if self.config.peer_exchange.is_none() {
            return;
        }
        let candidates = self.list_candidates();
        let peers = self.peer_list_for(now, peer, &candidates);
        if peers.is_empty() {
            return;
        }
        self.actions.push_back(Action::SendPeers {
            peer,
            connection,
            peers,
        });
    }

    /// Sends `peer` the list for it on `connection` (drawn from `candidates`, see
    /// [`list_candidates`](Self::list_candidates)), if there is anything to tell.
    fn send_list(
        &mut self,
        now: Instant,
        peer: PeerId,
        connection: ConnectionId,
        candidates: &[PeerSlot],
    ) {
        let peers = self.peer_list_for(now, peer, candidates);
        if peers.is_empty() {
            return;
        }
        if let Some(record) = self.peers.get_mut(&peer) {
            record.set_list_sent_at(now);
        }
        self.actions.push_back(Action::SendPeers {
            peer,
            connection,
            peers,
        });
    }

    /// The peers a list may name: the connected ones, by slot. One pass over every peer; a
    /// round gathers them once for all its lists.
    fn list_candidates(&self) -> Vec<PeerSlot> {
        self.peers
            .iter_slots()
            .filter(|(_, _, record)| record.is_connected())
            .map(|(slot, _, _)| slot)
            .collect()
    }

    /// Whom to tell `recipient` about: connected peers (`candidates`, as gathered by
    /// [`list_candidates`](Self::list_candidates) in this same step) other than itself, not
    /// banned, with the addresses it can plausibly reach (proven, given or reported by the
    /// peer itself, never hearsay); a random sample of at most [`MAX_LIST_PEERS`],
    /// [`MAX_LIST_ADDRESSES`] addresses each.
    ///
    /// Candidates are drawn at random until the list is full, and only the drawn are examined:
    /// a list costs about [`MAX_LIST_PEERS`] draws, not a pass over every peer with their
    /// addresses copied (a round to 10,000 peers was 10,000 such passes).
    fn peer_list_for(
        &mut self,
        now: Instant,
        recipient: PeerId,
        candidates: &[PeerSlot],
    ) -> PeerList {
        let recipient_ip = self
            .peers
            .get(&recipient)
            .and_then(|r| r.open().next())
            .and_then(|c| ip_of(&c.remote_addr));
        let mut list = PeerList::new();
        let mut draws = Draws::new(candidates.len());
        while list.len() < MAX_LIST_PEERS {
            let Some(index) = draws.next(&mut self.rng) else {
                break;
            };
            let Some((peer, record)) = self.peers.at(candidates[index]) else {
                continue;
            };
            if *peer == recipient || !record.is_connected() || self.bans.peer(peer, now).is_some() {
                continue;
            }
            let addresses: Vec<Multiaddr> = record
                .addresses
                .ranked()
                .filter(|(a, rank)| *rank > Rank::Hearsay && reachable_from(recipient_ip, a))
                .map(|(a, _)| a.clone())
                .take(MAX_LIST_ADDRESSES)
                .collect();
            if !addresses.is_empty() {
                list.push((*peer, addresses));
            }
        }
        // The wire cuts what does not fit its frame budget (`encode_peers`).
        list
    }
}

/// Indices `0..len` in random order, drawn one at a time: a Fisher-Yates shuffle that
/// remembers only the positions it moved, so that `n` draws cost O(n) whatever `len` is.
/// (`rand`'s sampling wants the number of draws up front; a list does not know how many of
/// its draws it will reject.)
struct Draws {
    next: usize,
    len: usize,
    moved: std::collections::HashMap<usize, usize>,
}

impl Draws {
    fn new(len: usize) -> Self {
        Self {
            next: 0,
            len,
            moved: std::collections::HashMap::new(),
        }
    }

    fn next(&mut self, rng: &mut impl Rng) -> Option<usize> {
        if self.next >= self.len {
            return None;
        }
        let i = self.next;
        let j = rng.gen_range(i..self.len);
        let at = |k: usize, moved: &std::collections::HashMap<usize, usize>| {
            moved.get(&k).copied().unwrap_or(k)
        };
        let drawn = at(j, &self.moved);
        // Position j now holds what was at i; i is never looked at again.
        let displaced = at(i, &self.moved);
        self.moved.insert(j, displaced);
        self.next += 1;
        Some(drawn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn draws_give_every_index_once_in_an_order_that_varies() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut orders = std::collections::HashSet::new();
        for _ in 0..20 {
            let mut draws = Draws::new(10);
            let order: Vec<usize> = std::iter::from_fn(|| draws.next(&mut rng)).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
            orders.insert(order);
        }
        assert!(orders.len() > 15, "{} distinct orders of 20", orders.len());
        // Each index comes first about as often as any other.
        let mut first = [0usize; 4];
        for _ in 0..4_000 {
            first[Draws::new(4).next(&mut rng).unwrap()] += 1;
        }
        assert!(first.iter().all(|n| (800..1200).contains(n)), "{first:?}");
        assert_eq!(Draws::new(0).next(&mut rng), None);
    }

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
        assert!(
            !reachable_from(None, &lan),
            "an unknown recipient counts as public"
        );
        // Receivers do not take what they cannot vet.
        assert!(!reachable_from(public, &addr("/dns4/example.org/tcp/1")));
        assert!(!reachable_from(loopback, &addr("/ip4/0.0.0.0/tcp/1")));
        assert!(!reachable_from(loopback, &addr("/ip4/224.0.0.1/tcp/1")));
        assert!(!reachable_from(public, &addr("/ip4/100.64.1.1/tcp/1")));
    }
}
