//! Protocol violations and the bans the manager places on its own because of them: counted
//! once per connection, per peer and per network, in bounded tables; the bans are capped and
//! never written to a peer store.

use std::net::IpAddr;

use super::bans::AutomaticBan;
use super::*;

/// How protocol violations turn into automatic bans, and how many such bans the manager holds.
///
/// A connection counts as one violation however many malformed frames it sends (the first
/// closes it with goodbye `ProtocolViolation`). [`Config::with_violation_ban`] says how many
/// violations of one peer within a window ban the peer, and for how long; this says how many
/// of those bans are held, and when violations from one network ban the network:
///
/// | setting | default |
/// |---|---|
/// | [`with_max_peer_bans`](Self::with_max_peer_bans) | 1024 |
/// | [`with_max_network_bans`](Self::with_max_network_bans) | 256 |
/// | [`with_network_escalation`](Self::with_network_escalation) | 4 peers, 10 min |
///
/// With the defaults, 4 different peers that commit a violation each from one IPv4 /24 or one
/// IPv6 /64 within the violation window get that network banned for 10 minutes. Violations on
/// relayed connections (whose address is the relay's) and, while the per-IP limits exempt it
/// ([`Limits::with_loopback_exempt`]), from loopback never ban a network: behind a proxy that
/// hides remote addresses, turn the escalation off.
///
/// Bounds: at most `max_peer_bans` automatic bans of peers and `max_network_bans` of networks
/// are held; when one more is placed, the automatic ban of its kind that ends soonest is lifted
/// to make room (reported as [`Event::Unbanned`] with `expired: false`). The application's bans
/// ([`Behaviour::ban_peer`](crate::Behaviour::ban_peer), [`Behaviour::ban_network`](crate::Behaviour::ban_network)) are never evicted and do not count, and only
/// they are written to a peer store. Behind the bans, at most 4,096 peers and 4,096 networks
/// with recent violations are remembered, each with fewer entries than its threshold; when a
/// table is full, the entry whose latest violation is the oldest is forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutomaticBans {
    max_peer_bans: usize,
    max_network_bans: usize,
    network_threshold: u32,
    network_ban: Duration,
}

impl AutomaticBans {
    /// The defaults of the table above.
    pub fn new() -> Self {
        Self {
            max_peer_bans: 1024,
            max_network_bans: 256,
            network_threshold: 4,
            network_ban: Duration::from_secs(600),
        }
    }

    /// Automatic bans of peers held at most (`0`: violations never ban a peer).
    pub fn with_max_peer_bans(mut self, max: usize) -> Self {
        self.max_peer_bans = max;
        self
    }

    /// Automatic bans of networks held at most (`0`: violations never ban a network).
    pub fn with_max_network_bans(mut self, max: usize) -> Self {
        self.max_network_bans = max;
        self
    }

    /// Bans an IPv4 /24 or IPv6 /64 for `duration` once `threshold` different peers committed a
    /// violation from it within the violation window of [`Config::with_violation_ban`].
    /// `threshold` 0 turns this off.
    pub fn with_network_escalation(mut self, threshold: u32, duration: Duration) -> Self {
        self.network_threshold = threshold;
        self.network_ban = duration;
        self
    }

    /// Automatic bans of peers held at most.
    pub fn max_peer_bans(&self) -> usize {
        self.max_peer_bans
    }

    /// Automatic bans of networks held at most.
    pub fn max_network_bans(&self) -> usize {
        self.max_network_bans
    }

    /// Different peers whose violations from one network ban it (`0`: never).
    pub fn network_threshold(&self) -> u32 {
        self.network_threshold
    }

    /// How long a network banned for its violations stays banned.
    pub fn network_ban(&self) -> Duration {
        self.network_ban
    }
}

impl Default for AutomaticBans {
    fn default() -> Self {
        Self::new()
    }
}

/// Recent violations, per peer and per network, kept apart from the peer records so that a
/// peer cannot wipe its slate by reconnecting. Bounded by [`MAX_VIOLATORS`] and
/// [`MAX_VIOLATING_NETWORKS`].
#[derive(Debug, Default)]
pub(crate) struct Violations {
    /// When each peer committed its recent violations, oldest first.
    peers: Map<PeerId, VecDeque<Instant>>,
    /// The different peers that committed a violation from each network, with when they last
    /// did, oldest first.
    networks: Map<IpNet, Vec<(PeerId, Instant)>>,
}

impl Violations {
    /// Peers remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Networks remembered.
    #[cfg(test)]
    pub(crate) fn networks(&self) -> usize {
        self.networks.len()
    }

    /// Records a violation of `peer`; returns how many it committed within `window` (at most
    /// `keep` are remembered).
    fn record_peer(&mut self, now: Instant, peer: PeerId, window: Duration, keep: usize) -> usize {
        if !self.peers.contains_key(&peer) {
            make_room(&mut self.peers, MAX_VIOLATORS, now, window, |times| {
                times.back().copied()
            });
        }
        let times = self.peers.entry(peer).or_default();
        times.push_back(now);
        while times
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > window)
            || times.len() > keep
        {
            times.pop_front();
        }
        times.len()
    }

    /// Records a violation of `peer` from `network`; returns how many different peers committed
    /// one from it within `window` (at most `keep` are remembered).
    fn record_network(
        &mut self,
        now: Instant,
        network: IpNet,
        peer: PeerId,
        window: Duration,
        keep: usize,
    ) -> usize {
        if !self.networks.contains_key(&network) {
            make_room(
                &mut self.networks,
                MAX_VIOLATING_NETWORKS,
                now,
                window,
                |peers| peers.last().map(|(_, at)| *at),
            );
        }
        let peers = self.networks.entry(network).or_default();
        peers.retain(|(p, at)| *p != peer && now.saturating_duration_since(*at) <= window);
        peers.push((peer, now));
        if peers.len() > keep {
            let excess = peers.len() - keep;
            peers.drain(..excess);
        }
        peers.len()
    }
}

/// Makes room for one more entry in `table` (at most `max`): first by forgetting entries whose
/// latest violation fell out of `window`, then, if none did, the entry whose latest violation
/// is the oldest, so a flood of one-time violators cannot stop new violations from counting.
fn make_room<K: Copy + Eq + std::hash::Hash, V>(
    table: &mut Map<K, V>,
    max: usize,
    now: Instant,
    window: Duration,
    latest: impl Fn(&V) -> Option<Instant>,
) {
    if table.len() < max {
        return;
    }
    table.retain(|_, v| latest(v).is_some_and(|at| now.saturating_duration_since(at) <= window));
    if table.len() >= max {
        let oldest = table
            .iter()
            .min_by_key(|(_, v)| latest(v))
            .map(|(key, _)| *key);
        if let Some(key) = oldest {
            table.remove(&key);
        }
    }
}

/// The network whose violations add up: the IPv4 /24 or IPv6 /64 of `ip` (an IPv4-mapped IPv6
/// address is its IPv4 address).
fn violation_network(ip: IpAddr) -> Option<IpNet> {
    let ip = ip.to_canonical();
    let len = if ip.is_ipv4() { 24 } else { 64 };
    IpNet::new(ip, len).ok().map(|net| net.trunc())
}

impl Manager {
    /// `peer` broke a protocol rule on `connection` (for example a malformed frame): the
    /// connection is closed with goodbye `ProtocolViolation`. Only the first violation on a
    /// connection counts. Repeated violations of one peer within the configured window ban the
    /// peer (see [`Config::with_violation_ban`]), and violations of different peers from one
    /// network ban the network (see [`AutomaticBans`]); such automatic bans are capped and
    /// stay in memory. Violations are remembered apart from the peer's other state, so
    /// reconnecting does not wipe them.
    pub fn on_protocol_violation(&mut self, now: Instant, peer: PeerId, connection: ConnectionId) {
        // Whether this is the connection's first violation, and the IP it counts against.
        let first = match self.connection_mut(connection) {
            Some((owner, record)) if owner == peer && !record.violated => {
                record.violated = true;
                let ip = ip_of(&record.remote_addr).filter(|_| !record.relayed);
                Some(ip)
            }
            _ => None,
        };
        self.start_close(
            now,
            peer,
            connection,
            DisconnectReason::ProtocolViolation,
            None,
        );
        let (Some(ip), Some(policy)) = (first, self.config.violation_ban) else {
            return;
        };
        let window = policy.window;
        let threshold = usize::try_from(policy.threshold).unwrap_or(usize::MAX);
        let count = self.violations.record_peer(now, peer, window, threshold);
        tracing::debug!(%peer, count, "protocol violation");
        if count >= threshold {
            self.violations.peers.remove(&peer);
            self.ban_automatically(now, BanTarget::Peer(peer), policy.duration);
        }
        let automatic = self.config.automatic_bans;
        let threshold = usize::try_from(automatic.network_threshold).unwrap_or(usize::MAX);
        let exempt = |ip: &IpAddr| self.limits.loopback_exempt && ip.to_canonical().is_loopback();
        let Some(network) = ip
            .filter(|ip| !exempt(ip))
            .and_then(violation_network)
            .filter(|_| threshold > 0)
        else {
            return;
        };
        let peers = self
            .violations
            .record_network(now, network, peer, window, threshold);
        if peers >= threshold {
            self.violations.networks.remove(&network);
            tracing::debug!(%network, peers, "violations from one network");
            self.ban_automatically(now, BanTarget::Network(network), automatic.network_ban);
        }
    }

    /// Automatic bans of peers held now (at most [`AutomaticBans::max_peer_bans`]).
    pub fn automatic_peer_bans(&self) -> usize {
        self.bans.automatic().0
    }

    /// Automatic bans of networks held now (at most [`AutomaticBans::max_network_bans`]).
    pub fn automatic_network_bans(&self) -> usize {
        self.bans.automatic().1
    }

    /// Bans `target` for `duration` on the manager's own account: capped, never written to the
    /// store, and never replacing a ban the application placed.
    fn ban_automatically(&mut self, now: Instant, target: BanTarget, duration: Duration) {
        if target == BanTarget::Peer(self.local) {
            return;
        }
        // An application ban that ran out, whose timer has not run yet, ends first.
        if self
            .bans
            .get_application(target)
            .is_some_and(|until| !bans::in_force(until, now))
        {
            self.on_ban_expired(now, target);
        }
        let caps = self.config.automatic_bans;
        let cap = match target {
            BanTarget::Peer(_) => caps.max_peer_bans,
            BanTarget::Network(_) => caps.max_network_bans,
        };
        let placed = self
            .bans
            .insert_automatic(target, later(now, duration), cap);
        let evicted = match placed {
            AutomaticBan::Placed { evicted } => evicted,
            AutomaticBan::Application => {
                tracing::debug!(%target, "already banned by the application");
                return;
            }
            AutomaticBan::Refused => {
                tracing::debug!(%target, "automatic bans of this kind are off");
                return;
            }
        };
        self.sync_ban_expiry(target);
        let until = self.bans.get(target).flatten();
        if let Some(old) = evicted {
            self.sync_ban_expiry(old);
            tracing::debug!(%old, "automatic ban evicted to make room");
            self.push_event(Event::Unbanned {
                target: old,
                expired: false,
            });
            if matches!(old, BanTarget::Network(_)) {
                self.revive_stranded(now);
            }
        }
        tracing::debug!(%target, ?until, "banned automatically");
        self.push_event(Event::Banned { target, until });
        let remaining = until.map(|at| at.saturating_duration_since(now));
        match target {
            BanTarget::Peer(peer) => self.enforce_peer_ban(now, peer, remaining, false),
            BanTarget::Network(network) => self.enforce_network_ban(now, network),
        }
    }
}
