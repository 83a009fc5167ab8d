//! Connection limits: the configuration, the counters, and the per-IP table.

use crate::core::hashing::Map;
use std::{collections::VecDeque, fmt, net::IpAddr, time::Duration};

use ipnet::IpNet;
use libp2p_core::{multiaddr::Protocol, Multiaddr};
use web_time::Instant;

use super::Denial;

mod admission;

/// Limits on connections. Every limit is optional: `None` means unlimited.
///
/// | limit | default | checked when |
/// |---|---|---|
/// | [`with_max_pending_incoming`](Self::with_max_pending_incoming) | 256 | an inbound connection starts its handshake |
/// | [`with_max_pending_outgoing`](Self::with_max_pending_outgoing) | 256 | a dial starts |
/// | [`with_max_established_incoming`](Self::with_max_established_incoming) | 256 | a handshake completes |
/// | [`with_max_established_outgoing`](Self::with_max_established_outgoing) | none | a handshake completes |
/// | [`with_max_established`](Self::with_max_established) | none | a handshake completes |
/// | [`with_max_incoming_per_ip`](Self::with_max_incoming_per_ip) (IPv4 /32, IPv6 /64) | 16 | an inbound connection starts |
/// | [`with_incoming_rate_per_ip`](Self::with_incoming_rate_per_ip) (IPv4 /32, IPv6 /64) | 10/s, burst 20 | an inbound connection starts |
/// | [`with_max_incoming_per_ipv6_56`](Self::with_max_incoming_per_ipv6_56) | 32 | an inbound connection starts |
/// | [`with_incoming_rate_per_ipv6_56`](Self::with_incoming_rate_per_ipv6_56) | 20/s, burst 40 | an inbound connection starts |
/// | [`with_max_incoming_per_ipv6_48`](Self::with_max_incoming_per_ipv6_48) | 64 | an inbound connection starts |
/// | [`with_incoming_rate_per_ipv6_48`](Self::with_incoming_rate_per_ipv6_48) | 40/s, burst 80 | an inbound connection starts |
/// | [`with_max_incoming_per_relay`](Self::with_max_incoming_per_relay) | 16 | an inbound relayed connection starts |
/// | [`with_max_tracked_ips`](Self::with_max_tracked_ips) | 65,536 entries | a new prefix needs an entry |
///
/// **Address economics.** An IPv4 address is scarce; an IPv6 host usually has a whole /64, a
/// home customer a /56 and a small network a /48 (65,536 /64s). As go-libp2p's resource
/// manager does, the per-IP limits are therefore nested: an IPv4 address is one key (its /32);
/// an IPv6 address counts against its /64, its /56 and its /48 at once, each with its own
/// concurrent limit and its own token bucket, the larger prefixes allowing more. A connection
/// must fit at every level, so rotating source addresses through a /48 meets the /48's limit
/// and bucket instead of 65,536 fresh ones. Addresses are taken `to_canonical()` first: an
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) counts as its IPv4 address (and IP bans see it
/// so too). A refusal names the prefix that refused (`Denial::IpLimit`,
/// `Denial::RateLimited`). A refused connection creates no table entry.
///
/// **Relayed connections.** An inbound circuit carries no IP (its remote address is
/// `/p2p/<peer>`), an outbound one carries the relay's. The per-IP limits, the rate buckets and
/// IP bans are therefore never applied to a relayed connection by the relay's IP: a relay's IP
/// is not its users' IP, and counting them under it would let one user exhaust the relay's
/// share for all. Inbound circuits count instead against the relay they arrive through
/// ([`with_max_incoming_per_relay`](Self::with_max_incoming_per_relay)); since circuits reach
/// this node only through relays it holds a reservation on, this also bounds them in total.
/// Peer bans apply to relayed connections as to any other.
///
/// The manager cannot close a connection still in its handshake: a slowloris (connections that
/// never finish it) holds its pending slots until the transport's handshake timeout, and a new
/// peer's identity is not known yet, so even allow-listed peers wait. Keep that timeout short
/// (`SwarmBuilder::with_connection_timeout`). Forgetting an idle entry from the per-IP table
/// also forgets its rate-limit bucket; entries whose bucket is full (nothing to forget) go
/// first.
///
/// The per-IP limits skip loopback addresses unless
/// [`with_loopback_exempt(false)`](Self::with_loopback_exempt). Allow-listed peers bypass the
/// limits that can see their peer id (outbound pending and established). A second connection
/// to a connected peer (a duplicate) skips the established limits only when the duplicate rule
/// closes one of the two at once (the count does not grow); a duplicate that the listener
/// tolerates for the duplicate grace counts like any other connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub(crate) max_pending_incoming: Option<u32>,
    pub(crate) max_pending_outgoing: Option<u32>,
    pub(crate) max_established_incoming: Option<u32>,
    pub(crate) max_established_outgoing: Option<u32>,
    pub(crate) max_established: Option<u32>,
    pub(crate) max_incoming_per_ip: Option<u32>,
    pub(crate) incoming_rate_per_ip: Option<RateLimit>,
    pub(crate) max_incoming_per_ipv6_56: Option<u32>,
    pub(crate) incoming_rate_per_ipv6_56: Option<RateLimit>,
    pub(crate) max_incoming_per_ipv6_48: Option<u32>,
    pub(crate) incoming_rate_per_ipv6_48: Option<RateLimit>,
    pub(crate) max_incoming_per_relay: Option<u32>,
    pub(crate) loopback_exempt: bool,
    pub(crate) max_tracked_ips: usize,
}

impl Limits {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self {
            max_pending_incoming: Some(256),
            max_pending_outgoing: Some(256),
            max_established_incoming: Some(256),
            max_established_outgoing: None,
            max_established: None,
            max_incoming_per_ip: Some(16),
            incoming_rate_per_ip: Some(RateLimit::new(20, Duration::from_millis(100))),
            max_incoming_per_ipv6_56: Some(32),
            incoming_rate_per_ipv6_56: Some(RateLimit::new(40, Duration::from_millis(50))),
            max_incoming_per_ipv6_48: Some(64),
            incoming_rate_per_ipv6_48: Some(RateLimit::new(80, Duration::from_millis(25))),
            max_incoming_per_relay: Some(16),
            loopback_exempt: true,
            max_tracked_ips: 65_536,
        }
    }

    /// No limit at all.
    pub fn unlimited() -> Self {
        Self {
            max_pending_incoming: None,
            max_pending_outgoing: None,
            max_established_incoming: None,
            max_established_outgoing: None,
            max_established: None,
            max_incoming_per_ip: None,
            incoming_rate_per_ip: None,
            max_incoming_per_ipv6_56: None,
            incoming_rate_per_ipv6_56: None,
            max_incoming_per_ipv6_48: None,
            incoming_rate_per_ipv6_48: None,
            max_incoming_per_relay: None,
            loopback_exempt: true,
            max_tracked_ips: 65_536,
        }
    }

    /// The pending-inbound limit.
    pub fn max_pending_incoming(&self) -> Option<u32> {
        self.max_pending_incoming
    }

    /// The pending-outbound limit.
    pub fn max_pending_outgoing(&self) -> Option<u32> {
        self.max_pending_outgoing
    }

    /// The established-inbound limit.
    pub fn max_established_incoming(&self) -> Option<u32> {
        self.max_established_incoming
    }

    /// The established-outbound limit.
    pub fn max_established_outgoing(&self) -> Option<u32> {
        self.max_established_outgoing
    }

    /// The established-total limit.
    pub fn max_established(&self) -> Option<u32> {
        self.max_established
    }

    /// The concurrent inbound limit and the rate of a prefix of the per-IP table: IPv4 /32 and
    /// IPv6 /64 (per IP), IPv6 /56 and /48. `None` for any other prefix.
    pub(crate) fn per_prefix(
        &self,
        ipv6: bool,
        prefix_len: u8,
    ) -> Option<(Option<u32>, Option<RateLimit>)> {
        match (ipv6, prefix_len) {
            (false, 32) | (true, 64) => Some((self.max_incoming_per_ip, self.incoming_rate_per_ip)),
            (true, 56) => Some((
                self.max_incoming_per_ipv6_56,
                self.incoming_rate_per_ipv6_56,
            )),
            (true, 48) => Some((
                self.max_incoming_per_ipv6_48,
                self.incoming_rate_per_ipv6_48,
            )),
            _ => None,
        }
    }

    /// The limit on inbound relayed connections through one relay.
    pub fn max_incoming_per_relay(&self) -> Option<u32> {
        self.max_incoming_per_relay
    }

    /// Inbound connections still in their handshake.
    pub fn with_max_pending_incoming(mut self, limit: Option<u32>) -> Self {
        self.max_pending_incoming = limit;
        self
    }

    /// Outbound dials in flight.
    pub fn with_max_pending_outgoing(mut self, limit: Option<u32>) -> Self {
        self.max_pending_outgoing = limit;
        self
    }

    /// Established connections the remote dialed.
    pub fn with_max_established_incoming(mut self, limit: Option<u32>) -> Self {
        self.max_established_incoming = limit;
        self
    }

    /// Established connections we dialed.
    pub fn with_max_established_outgoing(mut self, limit: Option<u32>) -> Self {
        self.max_established_outgoing = limit;
        self
    }

    /// Established connections in both directions.
    pub fn with_max_established(mut self, limit: Option<u32>) -> Self {
        self.max_established = limit;
        self
    }

    /// Inbound connections (pending and established) from one IP address at a time: one IPv4
    /// address, or one IPv6 /64 (one host usually owns a whole /64).
    pub fn with_max_incoming_per_ip(mut self, limit: Option<u32>) -> Self {
        self.max_incoming_per_ip = limit;
        self
    }

    /// How fast one IP address (IPv4 address, IPv6 /64) may open inbound connections.
    pub fn with_incoming_rate_per_ip(mut self, rate: Option<RateLimit>) -> Self {
        self.incoming_rate_per_ip = rate;
        self
    }

    /// Inbound connections (pending and established) from one IPv6 /56 at a time, on top of
    /// the limit per /64.
    pub fn with_max_incoming_per_ipv6_56(mut self, limit: Option<u32>) -> Self {
        self.max_incoming_per_ipv6_56 = limit;
        self
    }

    /// How fast one IPv6 /56 may open inbound connections, on top of the rate per /64.
    pub fn with_incoming_rate_per_ipv6_56(mut self, rate: Option<RateLimit>) -> Self {
        self.incoming_rate_per_ipv6_56 = rate;
        self
    }

    /// Inbound connections (pending and established) from one IPv6 /48 at a time, on top of
    /// the limits per /64 and per /56.
    pub fn with_max_incoming_per_ipv6_48(mut self, limit: Option<u32>) -> Self {
        self.max_incoming_per_ipv6_48 = limit;
        self
    }

    /// How fast one IPv6 /48 may open inbound connections, on top of the rates per /64 and
    /// per /56.
    pub fn with_incoming_rate_per_ipv6_48(mut self, rate: Option<RateLimit>) -> Self {
        self.incoming_rate_per_ipv6_48 = rate;
        self
    }

    /// Inbound relayed connections (pending and established) arriving through one relay at a
    /// time. The relay is known from the local address an inbound circuit arrives on (its
    /// part before `/p2p-circuit`), so this applies where the driver reports it
    /// (the [`Behaviour`](crate::Behaviour) does).
    pub fn with_max_incoming_per_relay(mut self, limit: Option<u32>) -> Self {
        self.max_incoming_per_relay = limit;
        self
    }

    /// Whether loopback addresses skip the per-IP limits (default `true`).
    pub fn with_loopback_exempt(mut self, exempt: bool) -> Self {
        self.loopback_exempt = exempt;
        self
    }

    /// How many entries the per-IP limits keep state for (default 65,536, at least 1): one per
    /// IPv4 address, and one per IPv6 /64, /56 and /48 that has a limit or a rate. When full,
    /// an idle entry is forgotten (one whose bucket is full first, then the oldest); an inbound
    /// connection that would need a new entry while every entry is in use is refused. This
    /// bounds what a flood from many addresses can make the node remember.
    pub fn with_max_tracked_ips(mut self, max: usize) -> Self {
        self.max_tracked_ips = max.max(1);
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}

/// A token bucket: up to `burst` connections at once, then one per `refill_every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    burst: u32,
    refill_every: Duration,
}

impl RateLimit {
    /// `burst` tokens (at least 1), one more every `refill_every` (at least 1 ms).
    pub fn new(burst: u32, refill_every: Duration) -> Self {
        Self {
            burst: burst.max(1),
            refill_every: refill_every.max(Duration::from_millis(1)),
        }
    }

    /// The bucket size.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The time to earn one token.
    pub fn refill_every(&self) -> Duration {
        self.refill_every
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1 per {:?}, burst {}", self.refill_every, self.burst)
    }
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKind {
    /// [`Limits::with_max_pending_incoming`].
    PendingIncoming,
    /// [`Limits::with_max_pending_outgoing`].
    PendingOutgoing,
    /// [`Limits::with_max_established_incoming`].
    EstablishedIncoming,
    /// [`Limits::with_max_established_outgoing`].
    EstablishedOutgoing,
    /// [`Limits::with_max_established`].
    Established,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::PendingIncoming => "pending inbound",
            LimitKind::PendingOutgoing => "pending outbound",
            LimitKind::EstablishedIncoming => "established inbound",
            LimitKind::EstablishedOutgoing => "established outbound",
            LimitKind::Established => "established total",
        })
    }
}

/// Connections counted against the limits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) pending_inbound: u32,
    pub(crate) pending_outbound: u32,
    pub(crate) established_inbound: u32,
    pub(crate) established_outbound: u32,
}

impl Counters {
    /// Refuses when `current` has reached `limit`.
    pub(crate) fn check(kind: LimitKind, limit: Option<u32>, current: u32) -> Result<(), Denial> {
        match limit {
            Some(limit) if current >= limit => Err(Denial::Limit {
                kind,
                limit,
                current,
            }),
            _ => Ok(()),
        }
    }

    /// The established limits, for a connection in the given direction (`inbound`).
    pub(crate) fn check_established(&self, limits: &Limits, inbound: bool) -> Result<(), Denial> {
        if inbound {
            Self::check(
                LimitKind::EstablishedIncoming,
                limits.max_established_incoming,
                self.established_inbound,
            )?;
        } else {
            Self::check(
                LimitKind::EstablishedOutgoing,
                limits.max_established_outgoing,
                self.established_outbound,
            )?;
        }
        Self::check(
            LimitKind::Established,
            limits.max_established,
            self.established_inbound + self.established_outbound,
        )
    }
}

/// The remote's own IP on a connection with this remote address: the IP the address starts
/// with, `to_canonical()` (an IPv4-mapped IPv6 address is its IPv4 address), and none for an
/// address through a relay (`/p2p-circuit`), whose IP is the relay's, not the remote's. This is
/// what IP bans and the per-IP limits are checked on.
pub(crate) fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    if super::duplicates::is_relayed(address) {
        return None;
    }
    first_ip(address)
}

/// The IP a multiaddress starts with, canonical, relayed or not (where it can be reached).
pub(crate) fn first_ip(address: &Multiaddr) -> Option<IpAddr> {
    match address.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip).to_canonical()),
        _ => None,
    }
}

/// The relay an inbound circuit arrives through, from the local address it arrives on: its
/// part before `/p2p-circuit` (the relay's address, with its `/p2p/<relay>` if present).
pub(crate) fn relay_of(local_addr: &Multiaddr) -> Option<Multiaddr> {
    if !super::duplicates::is_relayed(local_addr) {
        return None;
    }
    Some(
        local_addr
            .iter()
            .take_while(|p| !matches!(p, Protocol::P2pCircuit))
            .collect(),
    )
}

/// The IPv6 prefixes the per-IP table counts an address under, narrowest first.
const IPV6_LEVELS: [u8; 3] = [64, 56, 48];

/// The prefixes an inbound connection was counted under (at most three), for its release.
///
/// Kept as the IP and the prefix lengths (20 bytes, not three `IpNet`s): every inbound
/// connection carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpKeys {
    ip: IpAddr,
    /// Prefix lengths, narrowest first; 0 ends the list (a /0 is never a level).
    lengths: [u8; 3],
}

impl IpKeys {
    fn iter(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.lengths
            .iter()
            .take_while(|len| **len > 0)
            .filter_map(|len| IpNet::new(self.ip, *len).ok())
            .map(|net| net.trunc())
    }
}

/// The prefixes of `ip` (canonical) that have a limit or a rate, narrowest first.
fn levels(limits: &Limits, ip: IpAddr) -> IpKeys {
    let mut keys = IpKeys {
        ip,
        lengths: [0; 3],
    };
    let lengths: &[u8] = match ip {
        IpAddr::V4(_) => &[32],
        IpAddr::V6(_) => &IPV6_LEVELS,
    };
    let mut slots = keys.lengths.iter_mut();
    for len in lengths {
        let tracked = limits
            .per_prefix(ip.is_ipv6(), *len)
            .is_some_and(|(max, rate)| max.is_some() || rate.is_some());
        if tracked {
            if let Some(slot) = slots.next() {
                *slot = *len;
            }
        }
    }
    keys
}

#[derive(Debug)]
struct IpEntry {
    /// Inbound connections from this prefix, pending or established.
    concurrent: u32,
    tokens: u32,
    refilled_at: Instant,
}

/// Per remote IP prefix (IPv4 /32; IPv6 /64, /56, /48): concurrent inbound connections and a
/// token bucket, for a bounded number of prefixes.
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    entries: Map<IpNet, IpEntry>,
    /// Prefixes in the order they were first seen, for evicting the oldest idle one.
    order: VecDeque<IpNet>,
}

impl PerIp {
    /// Whether `ip` (canonical) is subject to the per-IP limits at all.
    pub(crate) fn applies_to(limits: &Limits, ip: IpAddr) -> bool {
        !(limits.loopback_exempt && ip.is_loopback()) && levels(limits, ip).iter().next().is_some()
    }

    /// Admits one more inbound connection from `ip` (canonical) at every level, or says which
    /// prefix refuses it (the narrowest). Nothing changes on a refusal: no entry is created,
    /// no token spent. On success, the prefixes it was counted under.
    pub(crate) fn admit(
        &mut self,
        limits: &Limits,
        ip: IpAddr,
        now: Instant,
    ) -> Result<IpKeys, Denial> {
        let keys = levels(limits, ip);
        // The concurrent limits first, so that a refusal spends no token anywhere.
        for net in keys.iter() {
            let (max, _) = limits
                .per_prefix(net.addr().is_ipv6(), net.prefix_len())
                .unwrap_or((None, None));
            let current = self.entries.get(&net).map_or(0, |e| e.concurrent);
            if let Some(limit) = max {
                if current >= limit {
                    return Err(Denial::IpLimit {
                        ip,
                        network: net,
                        limit,
                        current,
                    });
                }
            }
        }
        for net in keys.iter() {
            let (_, rate) = limits
                .per_prefix(net.addr().is_ipv6(), net.prefix_len())
                .unwrap_or((None, None));
            if let (Some(rate), Some(entry)) = (rate, self.entries.get_mut(&net)) {
                refill(entry, rate, now);
                if entry.tokens == 0 {
                    return Err(Denial::RateLimited {
                        ip,
                        network: net,
                        rate,
                    });
                }
            }
        }
        let missing = keys
            .iter()
            .filter(|net| !self.entries.contains_key(net))
            .count();
        self.make_room(limits, missing, &keys, now)?;
        for net in keys.iter() {
            let (_, rate) = limits
                .per_prefix(net.addr().is_ipv6(), net.prefix_len())
                .unwrap_or((None, None));
            let entry = match self.entries.entry(net) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    self.order.push_back(net);
                    entry.insert(IpEntry {
                        concurrent: 0,
                        tokens: rate.map_or(0, |r| r.burst),
                        refilled_at: now,
                    })
                }
            };
            if rate.is_some() {
                entry.tokens = entry.tokens.saturating_sub(1);
            }
            entry.concurrent += 1;
        }
        Ok(keys)
    }

    /// One inbound connection counted under `keys` ended.
    pub(crate) fn release(&mut self, keys: &IpKeys) {
        for net in keys.iter() {
            if let Some(entry) = self.entries.get_mut(&net) {
                entry.concurrent = entry.concurrent.saturating_sub(1);
            }
        }
    }

    pub(crate) fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Makes room for `needed` new entries when the table is full, forgetting idle entries
    /// other than `keep`: first those whose bucket is full (nothing is lost with them), then
    /// the oldest.
    fn make_room(
        &mut self,
        limits: &Limits,
        needed: usize,
        keep: &IpKeys,
        now: Instant,
    ) -> Result<(), Denial> {
        let max = limits.max_tracked_ips;
        let excess = (self.entries.len() + needed).saturating_sub(max);
        if excess == 0 {
            return Ok(());
        }
        // Idle entries with a full bucket, oldest first, until there are enough; the oldest
        // other idle entries in case there are not.
        let mut full = Vec::new();
        let mut partial = Vec::new();
        for (position, net) in self.order.iter().enumerate() {
            if full.len() == excess {
                break;
            }
            if keep.iter().any(|k| k == *net) {
                continue;
            }
            let Some(entry) = self.entries.get_mut(net) else {
                continue;
            };
            if entry.concurrent > 0 {
                continue;
            }
            let rate = limits
                .per_prefix(net.addr().is_ipv6(), net.prefix_len())
                .and_then(|(_, rate)| rate);
            let is_full = rate.is_none_or(|rate| {
                refill(entry, rate, now);
                entry.tokens >= rate.burst
            });
            if is_full {
                full.push(position);
            } else if partial.len() < excess {
                partial.push(position);
            }
        }
        if full.len() + partial.len() < excess {
            return Err(Denial::TooManyAddresses { limit: max });
        }
        partial.truncate(excess - full.len());
        let mut gone: Vec<usize> = full.into_iter().chain(partial).collect();
        // Back to front, so that each removal leaves the other positions in place.
        gone.sort_unstable_by(|a, b| b.cmp(a));
        for position in gone {
            if let Some(net) = self.order.remove(position) {
                self.entries.remove(&net);
            }
        }
        Ok(())
    }
}

fn refill(entry: &mut IpEntry, rate: RateLimit, now: Instant) {
    let elapsed = now.saturating_duration_since(entry.refilled_at);
    let earned = elapsed.as_nanos() / rate.refill_every.as_nanos().max(1);
    if earned == 0 {
        return;
    }
    let earned = u32::try_from(earned).unwrap_or(u32::MAX);
    entry.tokens = entry.tokens.saturating_add(earned).min(rate.burst);
    entry.refilled_at = if entry.tokens == rate.burst {
        now
    } else {
        entry.refilled_at + rate.refill_every * earned
    };
}

/// Inbound relayed connections per relay, for [`Limits::with_max_incoming_per_relay`]. Only
/// relays with connections are kept: at most one entry per counted connection.
#[derive(Debug, Default)]
pub(crate) struct PerRelay {
    counts: Map<Multiaddr, u32>,
}

impl PerRelay {
    /// Admits one more inbound circuit through `relay`, or refuses it.
    pub(crate) fn admit(&mut self, limits: &Limits, relay: &Multiaddr) -> Result<(), Denial> {
        let current = self.counts.get(relay).copied().unwrap_or(0);
        if let Some(limit) = limits.max_incoming_per_relay {
            if current >= limit {
                return Err(Denial::RelayLimit {
                    relay: relay.clone(),
                    limit,
                    current,
                });
            }
        }
        *self.counts.entry(relay.clone()).or_default() += 1;
        Ok(())
    }

    /// One inbound circuit through `relay` ended.
    pub(crate) fn release(&mut self, relay: &Multiaddr) {
        if let Some(count) = self.counts.get_mut(relay) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.counts.remove(relay);
            }
        }
    }
}

/// What an inbound connection was counted under, released when it ends: its IP prefixes (a
/// direct connection) or its relay (an inbound circuit), never both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Counted {
    /// Nothing (outbound, or no limit applies).
    #[default]
    Nothing,
    /// The IP prefixes.
    Ip(IpKeys),
    /// The relay (boxed: rare, and every connection carries a `Counted`).
    Relay(Box<Multiaddr>),
}

impl Counted {
    pub(crate) fn release(&self, per_ip: &mut PerIp, per_relay: &mut PerRelay) {
        match self {
            Counted::Nothing => {}
            Counted::Ip(keys) => per_ip.release(keys),
            Counted::Relay(relay) => per_relay.release(relay),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use libp2p_identity::PeerId;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn host(ip: IpAddr) -> IpNet {
        IpNet::new(ip, 32).unwrap()
    }

    fn keys(ip: IpAddr) -> IpKeys {
        levels(&Limits::new(), ip)
    }

    #[test]
    fn concurrent_per_ip_is_capped_and_released() {
        let limits = Limits::unlimited().with_max_incoming_per_ip(Some(2));
        let mut table = PerIp::default();
        let now = Instant::now();
        table.admit(&limits, ip(1), now).unwrap();
        table.admit(&limits, ip(1), now).unwrap();
        assert_eq!(
            table.admit(&limits, ip(1), now),
            Err(Denial::IpLimit {
                ip: ip(1),
                network: host(ip(1)),
                limit: 2,
                current: 2
            })
        );
        table.admit(&limits, ip(2), now).unwrap();
        table.release(&keys(ip(1)));
        table.admit(&limits, ip(1), now).unwrap();
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let rate = RateLimit::new(3, Duration::from_secs(1));
        let limits = Limits::unlimited().with_incoming_rate_per_ip(Some(rate));
        let mut table = PerIp::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            table.admit(&limits, ip(1), t0).unwrap();
        }
        assert_eq!(
            table.admit(&limits, ip(1), t0),
            Err(Denial::RateLimited {
                ip: ip(1),
                network: host(ip(1)),
                rate
            })
        );
        assert!(table
            .admit(&limits, ip(1), t0 + Duration::from_millis(999))
            .is_err());
        table
            .admit(&limits, ip(1), t0 + Duration::from_secs(1))
            .unwrap();
        // A long pause refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            table.admit(&limits, ip(1), later).unwrap();
        }
        assert!(table.admit(&limits, ip(1), later).is_err());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_idle_addresses_first() {
        let limits = Limits::unlimited()
            .with_max_incoming_per_ip(Some(100))
            .with_max_tracked_ips(3);
        let mut table = PerIp::default();
        let now = Instant::now();
        table.admit(&limits, ip(1), now).unwrap(); // busy
        let two = table.admit(&limits, ip(2), now).unwrap();
        table.release(&two); // idle
        table.admit(&limits, ip(3), now).unwrap(); // busy
        table.admit(&limits, ip(4), now).unwrap(); // evicts 2
        assert_eq!(table.tracked(), 3);
        assert_eq!(
            table.admit(&limits, ip(5), now),
            Err(Denial::TooManyAddresses { limit: 3 })
        );
        for n in 0..=255 {
            let _ = table.admit(&limits, ip(n), now);
        }
        assert!(table.tracked() <= 3);
    }

    #[test]
    fn idle_entries_with_a_full_bucket_are_forgotten_before_older_drained_ones() {
        let rate = RateLimit::new(2, Duration::from_secs(60));
        let limits = Limits::unlimited()
            .with_incoming_rate_per_ip(Some(rate))
            .with_max_tracked_ips(2);
        let mut table = PerIp::default();
        let t0 = Instant::now();
        // 1 spends both its tokens; 2 spends one, then a minute refills it.
        for _ in 0..2 {
            let k = table.admit(&limits, ip(1), t0).unwrap();
            table.release(&k);
        }
        let k = table.admit(&limits, ip(2), t0).unwrap();
        table.release(&k);
        let later = t0 + Duration::from_secs(60);
        let k = table.admit(&limits, ip(3), later).unwrap();
        table.release(&k);
        // 2 (full again) went, not 1 (older, but still short of a token).
        assert!(table.entries.contains_key(&host(ip(1))));
        assert!(!table.entries.contains_key(&host(ip(2))));
    }

    #[test]
    fn ipv6_addresses_are_counted_by_their_64_56_and_48() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let nets: Vec<String> = keys(a).iter().map(|n| n.to_string()).collect();
        assert_eq!(
            nets,
            ["2001:db8:1:2::/64", "2001:db8:1::/56", "2001:db8:1::/48"]
        );
        assert_eq!(keys(ip(1)).iter().collect::<Vec<_>>(), vec![host(ip(1))]);
        // Only the prefixes with a limit or a rate are tracked.
        let only_48 = Limits::unlimited().with_max_incoming_per_ipv6_48(Some(1));
        assert_eq!(levels(&only_48, a).iter().count(), 1);
        assert!(levels(&only_48, ip(1)).iter().next().is_none());
    }

    #[test]
    fn a_refusal_at_one_level_spends_nothing_at_the_others() {
        let rate = RateLimit::new(1, Duration::from_secs(60));
        let limits = Limits::unlimited()
            .with_incoming_rate_per_ip(Some(rate))
            .with_max_incoming_per_ipv6_48(Some(1));
        let mut table = PerIp::default();
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let held = table.admit(&limits, a, now).unwrap();
        let refused = table.admit(&limits, b, now).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "inbound limit 1 per IPv6 /48 2001:db8:1::/48 reached (1 now, from 2001:db8:1:3::1)"
        );
        assert_eq!(table.tracked(), 2, "no entry for the refused /64");
        table.release(&held);
        // b's /64 bucket is untouched by the refusal.
        table.admit(&limits, b, now).unwrap();
    }

    #[test]
    fn relayed_and_mapped_addresses() {
        let relay = PeerId::random();
        let relayed: Multiaddr = format!("/ip4/198.51.100.7/tcp/1/p2p/{relay}/p2p-circuit")
            .parse()
            .unwrap();
        assert_eq!(ip_of(&relayed), None);
        assert_eq!(first_ip(&relayed), Some("198.51.100.7".parse().unwrap()));
        assert_eq!(
            relay_of(&relayed),
            Some(
                format!("/ip4/198.51.100.7/tcp/1/p2p/{relay}")
                    .parse()
                    .unwrap()
            )
        );
        let mapped: Multiaddr = "/ip6/::ffff:192.0.2.1/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&mapped), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(relay_of(&mapped), None);
    }

    #[test]
    fn relays_are_limited_and_forgotten_when_idle() {
        let limits = Limits::unlimited().with_max_incoming_per_relay(Some(1));
        let relay: Multiaddr = "/ip4/198.51.100.7/tcp/1".parse().unwrap();
        let mut table = PerRelay::default();
        table.admit(&limits, &relay).unwrap();
        assert!(matches!(
            table.admit(&limits, &relay),
            Err(Denial::RelayLimit { limit: 1, .. })
        ));
        table.release(&relay);
        assert!(table.counts.is_empty());
    }

    #[test]
    fn loopback_is_exempt_only_when_configured() {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(!PerIp::applies_to(&Limits::new(), loopback));
        assert!(PerIp::applies_to(
            &Limits::new().with_loopback_exempt(false),
            loopback
        ));
        assert!(!PerIp::applies_to(&Limits::unlimited(), ip(1)));
    }

    #[test]
    fn established_limits_name_the_limit_and_the_count() {
        let limits = Limits::unlimited()
            .with_max_established_incoming(Some(1))
            .with_max_established(Some(2));
        let counters = Counters {
            established_inbound: 1,
            established_outbound: 1,
            ..Default::default()
        };
        let denial = counters.check_established(&limits, true).unwrap_err();
        assert_eq!(
            denial.to_string(),
            "established inbound limit 1 reached (1 now)"
        );
        let denial = counters.check_established(&limits, false).unwrap_err();
        assert_eq!(
            denial.to_string(),
            "established total limit 2 reached (2 now)"
        );
    }
}
