//! Connection limits: the configuration, the counters, and the per-IP table.

use std::{
    collections::{HashMap, VecDeque},
    fmt,
    net::IpAddr,
    time::Duration,
};

use libp2p_core::{multiaddr::Protocol, Multiaddr};
use web_time::Instant;

use super::Denial;

/// Limits on connections. Every limit is optional: `None` means unlimited.
///
/// | limit | default | checked when |
/// |---|---|---|
/// | [`with_max_pending_inbound`](Self::with_max_pending_inbound) | 256 | an inbound connection starts its handshake |
/// | [`with_max_pending_outbound`](Self::with_max_pending_outbound) | 256 | a dial starts |
/// | [`with_max_established_inbound`](Self::with_max_established_inbound) | none | a handshake completes |
/// | [`with_max_established_outbound`](Self::with_max_established_outbound) | none | a handshake completes |
/// | [`with_max_established_total`](Self::with_max_established_total) | none | a handshake completes |
/// | [`with_max_inbound_per_ip`](Self::with_max_inbound_per_ip) | 16 | an inbound connection starts |
/// | [`with_inbound_rate_per_ip`](Self::with_inbound_rate_per_ip) | 10/s, burst 20 | an inbound connection starts |
///
/// The manager cannot close a connection still in its handshake: a slowloris (connections that
/// never finish it) holds its pending slots until the transport's handshake timeout, and a new
/// peer's identity is not known yet, so even allow-listed peers wait. Keep that timeout short
/// (`SwarmBuilder::with_connection_timeout`). Forgetting an idle address from the per-IP table
/// also forgets its rate-limit bucket.
///
/// The per-IP limits skip loopback addresses unless
/// [`with_loopback_exempt(false)`](Self::with_loopback_exempt). Allow-listed peers bypass the
/// limits that can see their peer id (outbound pending and established); a connection to a
/// peer that is already connected (a duplicate being resolved) does not count against the
/// established limits, since one of the two is about to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub(crate) max_pending_inbound: Option<u32>,
    pub(crate) max_pending_outbound: Option<u32>,
    pub(crate) max_established_inbound: Option<u32>,
    pub(crate) max_established_outbound: Option<u32>,
    pub(crate) max_established_total: Option<u32>,
    pub(crate) max_inbound_per_ip: Option<u32>,
    pub(crate) inbound_rate_per_ip: Option<RateLimit>,
    pub(crate) loopback_exempt: bool,
    pub(crate) max_tracked_ips: usize,
}

impl Limits {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self {
            max_pending_inbound: Some(256),
            max_pending_outbound: Some(256),
            max_established_inbound: None,
            max_established_outbound: None,
            max_established_total: None,
            max_inbound_per_ip: Some(16),
            inbound_rate_per_ip: Some(RateLimit::new(20, Duration::from_millis(100))),
            loopback_exempt: true,
            max_tracked_ips: 65_536,
        }
    }

    /// No limit at all.
    pub fn unlimited() -> Self {
        Self {
            max_pending_inbound: None,
            max_pending_outbound: None,
            max_established_inbound: None,
            max_established_outbound: None,
            max_established_total: None,
            max_inbound_per_ip: None,
            inbound_rate_per_ip: None,
            loopback_exempt: true,
            max_tracked_ips: 65_536,
        }
    }

    /// The pending-inbound limit.
    pub fn max_pending_inbound(&self) -> Option<u32> {
        self.max_pending_inbound
    }

    /// The pending-outbound limit.
    pub fn max_pending_outbound(&self) -> Option<u32> {
        self.max_pending_outbound
    }

    /// The established-inbound limit.
    pub fn max_established_inbound(&self) -> Option<u32> {
        self.max_established_inbound
    }

    /// The established-outbound limit.
    pub fn max_established_outbound(&self) -> Option<u32> {
        self.max_established_outbound
    }

    /// The established-total limit.
    pub fn max_established_total(&self) -> Option<u32> {
        self.max_established_total
    }

    /// Inbound connections still in their handshake.
    pub fn with_max_pending_inbound(mut self, limit: Option<u32>) -> Self {
        self.max_pending_inbound = limit;
        self
    }

    /// Outbound dials in flight.
    pub fn with_max_pending_outbound(mut self, limit: Option<u32>) -> Self {
        self.max_pending_outbound = limit;
        self
    }

    /// Established connections the remote dialed.
    pub fn with_max_established_inbound(mut self, limit: Option<u32>) -> Self {
        self.max_established_inbound = limit;
        self
    }

    /// Established connections we dialed.
    pub fn with_max_established_outbound(mut self, limit: Option<u32>) -> Self {
        self.max_established_outbound = limit;
        self
    }

    /// Established connections in both directions.
    pub fn with_max_established_total(mut self, limit: Option<u32>) -> Self {
        self.max_established_total = limit;
        self
    }

    /// Inbound connections (pending and established) from one IP address at a time.
    pub fn with_max_inbound_per_ip(mut self, limit: Option<u32>) -> Self {
        self.max_inbound_per_ip = limit;
        self
    }

    /// How fast one IP address may open inbound connections.
    pub fn with_inbound_rate_per_ip(mut self, rate: Option<RateLimit>) -> Self {
        self.inbound_rate_per_ip = rate;
        self
    }

    /// Whether loopback addresses skip the per-IP limits (default `true`).
    pub fn with_loopback_exempt(mut self, exempt: bool) -> Self {
        self.loopback_exempt = exempt;
        self
    }

    /// How many remote IP addresses the per-IP limits keep state for (default 65,536, at least
    /// 1). When full, the oldest idle entry is forgotten; an inbound connection that would need
    /// a new entry while every entry is in use is refused. This bounds what a flood from many
    /// addresses can make the node remember.
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
pub enum LimitKind {
    /// [`Limits::with_max_pending_inbound`].
    PendingInbound,
    /// [`Limits::with_max_pending_outbound`].
    PendingOutbound,
    /// [`Limits::with_max_established_inbound`].
    EstablishedInbound,
    /// [`Limits::with_max_established_outbound`].
    EstablishedOutbound,
    /// [`Limits::with_max_established_total`].
    EstablishedTotal,
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LimitKind::PendingInbound => "pending inbound",
            LimitKind::PendingOutbound => "pending outbound",
            LimitKind::EstablishedInbound => "established inbound",
            LimitKind::EstablishedOutbound => "established outbound",
            LimitKind::EstablishedTotal => "established total",
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
                LimitKind::EstablishedInbound,
                limits.max_established_inbound,
                self.established_inbound,
            )?;
        } else {
            Self::check(
                LimitKind::EstablishedOutbound,
                limits.max_established_outbound,
                self.established_outbound,
            )?;
        }
        Self::check(
            LimitKind::EstablishedTotal,
            limits.max_established_total,
            self.established_inbound + self.established_outbound,
        )
    }
}

/// The IP address a multiaddress starts with, if it starts with one.
pub(crate) fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    match address.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

#[derive(Debug)]
struct IpEntry {
    /// Inbound connections from this address, pending or established.
    concurrent: u32,
    tokens: u32,
    refilled_at: Instant,
}

/// Per remote IP: concurrent inbound connections and a token bucket, for a bounded number of
/// addresses.
#[derive(Debug, Default)]
pub(crate) struct PerIp {
    entries: HashMap<IpAddr, IpEntry>,
    /// Addresses in the order they were first seen, for evicting the oldest idle one.
    order: VecDeque<IpAddr>,
}

impl PerIp {
    /// Whether `ip` is subject to the per-IP limits at all.
    pub(crate) fn applies_to(limits: &Limits, ip: IpAddr) -> bool {
        (limits.max_inbound_per_ip.is_some() || limits.inbound_rate_per_ip.is_some())
            && !(limits.loopback_exempt && ip.is_loopback())
    }

    /// The key an address is counted under: IPv4 addresses alone, IPv6 addresses by their /64
    /// (one host usually owns a whole /64, so counting single addresses would not limit it).
    pub(crate) fn key(ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        }
    }

    /// Admits one more inbound connection from `ip` (a [`key`](Self::key)), or says which
    /// limit refuses it.
    pub(crate) fn admit(
        &mut self,
        limits: &Limits,
        ip: IpAddr,
        now: Instant,
    ) -> Result<(), Denial> {
        if !self.entries.contains_key(&ip) {
            self.make_room(limits.max_tracked_ips)?;
            let burst = limits.inbound_rate_per_ip.map_or(0, |r| r.burst);
            self.entries.insert(
                ip,
                IpEntry {
                    concurrent: 0,
                    tokens: burst,
                    refilled_at: now,
                },
            );
            self.order.push_back(ip);
        }
        let Some(entry) = self.entries.get_mut(&ip) else {
            return Ok(());
        };
        if let Some(limit) = limits.max_inbound_per_ip {
            if entry.concurrent >= limit {
                return Err(Denial::IpLimit {
                    ip,
                    limit,
                    current: entry.concurrent,
                });
            }
        }
        if let Some(rate) = limits.inbound_rate_per_ip {
            refill(entry, rate, now);
            if entry.tokens == 0 {
                return Err(Denial::RateLimited { ip, rate });
            }
            entry.tokens -= 1;
        }
        entry.concurrent += 1;
        Ok(())
    }

    /// One inbound connection from `ip` ended.
    pub(crate) fn release(&mut self, ip: IpAddr) {
        if let Some(entry) = self.entries.get_mut(&ip) {
            entry.concurrent = entry.concurrent.saturating_sub(1);
        }
    }

    pub(crate) fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Forgets the oldest idle address when the table is full.
    fn make_room(&mut self, max: usize) -> Result<(), Denial> {
        if self.entries.len() < max {
            return Ok(());
        }
        // Each address is looked at once at most: busy ones go to the back.
        for _ in 0..self.order.len() {
            let Some(ip) = self.order.pop_front() else {
                break;
            };
            match self.entries.get(&ip) {
                Some(entry) if entry.concurrent > 0 => self.order.push_back(ip),
                Some(_) => {
                    self.entries.remove(&ip);
                    return Ok(());
                }
                None => {}
            }
        }
        Err(Denial::TooManyAddresses { limit: max })
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn concurrent_per_ip_is_capped_and_released() {
        let limits = Limits::unlimited().with_max_inbound_per_ip(Some(2));
        let mut table = PerIp::default();
        let now = Instant::now();
        table.admit(&limits, ip(1), now).unwrap();
        table.admit(&limits, ip(1), now).unwrap();
        assert_eq!(
            table.admit(&limits, ip(1), now),
            Err(Denial::IpLimit {
                ip: ip(1),
                limit: 2,
                current: 2
            })
        );
        table.admit(&limits, ip(2), now).unwrap();
        table.release(ip(1));
        table.admit(&limits, ip(1), now).unwrap();
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let rate = RateLimit::new(3, Duration::from_secs(1));
        let limits = Limits::unlimited().with_inbound_rate_per_ip(Some(rate));
        let mut table = PerIp::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            table.admit(&limits, ip(1), t0).unwrap();
        }
        assert_eq!(
            table.admit(&limits, ip(1), t0),
            Err(Denial::RateLimited { ip: ip(1), rate })
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
            .with_max_inbound_per_ip(Some(100))
            .with_max_tracked_ips(3);
        let mut table = PerIp::default();
        let now = Instant::now();
        table.admit(&limits, ip(1), now).unwrap(); // busy
        table.admit(&limits, ip(2), now).unwrap();
        table.release(ip(2)); // idle
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
    fn ipv6_addresses_are_counted_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(PerIp::key(a), PerIp::key(b));
        assert_ne!(PerIp::key(a), PerIp::key(c));
        assert_eq!(PerIp::key(ip(1)), ip(1));
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
            .with_max_established_inbound(Some(1))
            .with_max_established_total(Some(2));
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
