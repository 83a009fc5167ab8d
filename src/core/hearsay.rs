//! Hearsay: what a remote says about third parties in a peer-exchange list. It is vetted
//! against the sender, budgeted, and never outranks what the node saw itself or what the
//! application asked for (see [`PeerExchange`] for the rules).

use crate::core::hashing::{Map, Set};
use libp2p_core::multiaddr::Protocol;

use super::{
    exchange::{dialable, scope, Scope},
    peers::Rank,
    *,
};

/// Hearsay dials remembered for the per-address and per-prefix bounds, at most; while it is
/// full of dials younger than the interval, no hearsay dial starts.
const MAX_RECENT_DIALS: usize = 1024;

/// Peers hearsay leaves alone, at most; the one whose quiet ends soonest makes room.
const MAX_QUIET: usize = 1024;

/// How long hearsay leaves alone a peer that trimming closed or whose redials were given up.
pub(super) const QUIET_AFTER_TRIM: Duration = Duration::from_secs(600);

/// How much state hearsay holds ([`Manager::hearsay_stats`]); every figure has a fixed bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HearsayStats {
    /// Peers wanted only because a peer-exchange list named them (at most
    /// [`PeerExchange::with_max_peers`]).
    pub peers: usize,
    /// Hearsay dials remembered for the per-address and per-prefix bounds (at most 1,024).
    pub recent_dials: usize,
    /// Peers hearsay leaves alone: disconnected by the application, trimmed, given up on (at
    /// most 1,024).
    pub quiet: usize,
}

/// A peer wanted only because a list named it.
#[derive(Debug)]
struct Heard {
    /// The public prefixes of the addresses it was dialed on.
    prefixes: Vec<IpNet>,
}

/// The state of peer exchange: the sender's news, and what hearsay brought.
#[derive(Debug, Default)]
pub(crate) struct ExchangeState {
    /// When the set of connected peers last changed (lists older than this are stale).
    pub(super) changed_at: Option<Instant>,
    /// Peers wanted only because a list named them.
    heard: Map<PeerId, Heard>,
    /// Hearsay dials within the last interval: when, at which address, under which prefix.
    recent: VecDeque<(Instant, Multiaddr, Option<IpNet>)>,
    /// Peers hearsay leaves alone, until when (`None`: until the application asks for them).
    quiet: Map<PeerId, Option<Instant>>,
    /// The recipients of the round under way that are still owed a list (see
    /// `on_exchange_due`: a round goes out in steps).
    pub(super) round: VecDeque<PeerId>,
    /// Whether the round under way left out peers whose last list was too recent: another
    /// round follows one interval after it.
    pub(super) round_deferred: bool,
}

impl ExchangeState {
    /// The application (or its discovery) asks for `peer`: it is no longer hearsay's, and
    /// hearsay may name it again.
    pub(super) fn asked_for(&mut self, peer: &PeerId) {
        self.heard.remove(peer);
        self.quiet.remove(peer);
    }

    /// Hearsay leaves `peer` alone until `until` (`None`: until the application asks for it).
    pub(super) fn quiet(&mut self, peer: PeerId, until: Option<Instant>) {
        if !self.quiet.contains_key(&peer) && self.quiet.len() >= MAX_QUIET {
            // The one whose quiet ends soonest (a timed one before one for good).
            let soonest = self
                .quiet
                .iter()
                .min_by_key(|(_, until)| (until.is_none(), **until))
                .map(|(peer, _)| *peer);
            if let Some(soonest) = soonest {
                self.quiet.remove(&soonest);
            }
        }
        let entry = self.quiet.entry(peer).or_insert(until);
        // Quiet for good stays for good; a timed one is only lengthened.
        *entry = match (*entry, until) {
            (None, _) | (_, None) => None,
            (Some(a), Some(b)) => Some(a.max(b)),
        };
    }

    fn is_quiet(&self, peer: &PeerId, now: Instant) -> bool {
        self.quiet
            .get(peer)
            .is_some_and(|until| until.is_none_or(|until| now < until))
    }
}

/// The network a public address is counted under for the per-prefix bounds: IPv4 /24, IPv6
/// /48. Loopback and private addresses are not counted.
fn prefix(ip: IpAddr) -> Option<IpNet> {
    if scope(ip) != Scope::Public {
        return None;
    }
    let len = if ip.is_ipv4() { 24 } else { 48 };
    IpNet::new(ip, len).ok().map(|net| net.trunc())
}

impl Manager {
    /// Hearsay leaves `peer` alone until `until` (`None`: until the application asks for it).
    /// Nothing to remember with peer exchange off: no list can bring the peer back.
    pub(super) fn quiet_hearsay(&mut self, peer: PeerId, until: Option<Instant>) {
        if self.config.peer_exchange.is_some() {
            self.exchange.quiet(peer, until);
        }
    }

    /// How much state hearsay holds (see [`HearsayStats`]).
    pub fn hearsay_stats(&self) -> HearsayStats {
        HearsayStats {
            peers: self.exchange.heard.len(),
            recent_dials: self.exchange.recent.len(),
            quiet: self.exchange.quiet.len(),
        }
    }

    /// `from` sent a list of `peers`. It is hearsay: at most one list per sender per half
    /// interval is looked at; each address is vetted against the sender; peers the manager
    /// tracks get the addresses as hearsay (never pushing out their own); with auto-connect,
    /// peers nobody deals with are dialed within the hearsay budget (see [`PeerExchange`]).
    pub fn on_peers_received(&mut self, now: Instant, from: PeerId, peers: PeerList) {
        let Some(exchange) = self.config.peer_exchange else {
            return;
        };
        if self.terminated {
            return;
        }
        // Lists arrive on a live connection; its address says how far the sender reaches.
        let Some(record) = self.peers.get_mut(&from) else {
            return;
        };
        let Some(kept) = record.open().min_by_key(|c| c.established_at) else {
            return;
        };
        let sender = ip_of(&kept.remote_addr).map_or(Scope::Public, scope);
        if record
            .list_received_at()
            .is_some_and(|at| now.saturating_duration_since(at) < exchange.interval / 2)
        {
            tracing::debug!(%from, "peer list within the interval; dropped");
            return;
        }
        record.set_list_received_at(now);
        let (dialing, queued) = self.prune_heard(now, exchange.interval);
        let mut budget = HearsayBudget {
            list: exchange.max_dials.div_ceil(2),
            dialing,
            queued,
        };
        let max = self.config.max_addresses_per_peer;
        let mut seen = Set::default();
        for (peer, addresses) in peers.into_iter().take(MAX_LIST_PEERS) {
            if peer == self.local
                || peer == from
                || !seen.insert(peer)
                || self.bans.peer(&peer, now).is_some()
            {
                continue;
            }
            let addresses = self.vet(now, sender, &peer, addresses);
            if addresses.is_empty() {
                continue;
            }
            match self.peers.get_mut(&peer) {
                Some(record) if record.is_connected() => continue,
                Some(record) => {
                    for address in &addresses {
                        record.add_ranked_address(address.clone(), Rank::Hearsay, max);
                    }
                }
                None => {}
            }
            if exchange.auto_connect {
                self.maybe_dial_on_hearsay(now, exchange, &mut budget, peer, addresses);
            }
        }
    }

    /// The last connection to `peer` closed. If only hearsay wanted it and it pushed the node
    /// away (trimmed it, refused it for a limit, banned it, or hung up on it), hearsay lets it
    /// go and leaves it alone for [`QUIET_AFTER_TRIM`]: redialing it would only be trimmed
    /// again, and while it waits for a redial it holds one of the hearsay peers
    /// ([`PeerExchange::with_max_peers`]) that another peer a list names could take. Returns
    /// whether it was let go (then it is not redialed).
    pub(super) fn hearsay_pushed_away(
        &mut self,
        now: Instant,
        peer: PeerId,
        reason: DisconnectReason,
        closed_by: ClosedBy,
    ) -> bool {
        if !reason.pushed_away(closed_by) || self.intent(&peer) != Intent::Wanted(Asker::Hearsay) {
            return false;
        }
        tracing::debug!(%peer, %reason, "hearsay peer pushed us away; let go");
        self.set_intent(peer, Intent::Unasked);
        self.exchange.heard.remove(&peer);
        self.quiet_hearsay(peer, Some(later(now, QUIET_AFTER_TRIM)));
        self.cancel_redial(peer);
        true
    }

    /// The addresses of `peer` in a list from a sender of scope `sender` that survive vetting
    /// (see [`PeerExchange`]), without duplicates or a `/p2p/<peer>` suffix.
    fn vet(
        &self,
        now: Instant,
        sender: Scope,
        peer: &PeerId,
        addresses: Vec<Multiaddr>,
    ) -> Vec<Multiaddr> {
        let mut vetted: Vec<Multiaddr> = Vec::new();
        for mut address in addresses {
            match address.iter().last() {
                Some(Protocol::P2p(named)) if named == *peer => {
                    address.pop();
                }
                Some(Protocol::P2p(_)) => continue,
                _ => {}
            }
            let Some(ip) = limits::first_ip(&address) else {
                continue;
            };
            let plausible = match scope(ip) {
                Scope::Loopback => sender == Scope::Loopback,
                Scope::Private => sender != Scope::Public,
                Scope::Public => true,
            };
            let banned = ip_of(&address)
                .into_iter()
                .chain(Some(ip))
                .any(|ip| self.bans.ip(ip, now).is_some());
            if plausible && dialable(ip) && !banned && !vetted.contains(&address) {
                vetted.push(address);
            }
        }
        vetted
    }

    /// Forgets hearsay peers that are gone (no longer wanted, taken over, no dial left in the
    /// swarm) and dials older than `interval`; returns how many hearsay peers are not
    /// connected (dials in flight, queued, or a redial after a lost connection), and how many
    /// of those have no dial in the swarm (queued, or waiting for a redial).
    fn prune_heard(&mut self, now: Instant, interval: Duration) -> (usize, usize) {
        let pending: Set<PeerId> = self
            .pending
            .values()
            .filter(|p| p.direction == Direction::Outbound)
            .filter_map(|p| p.peer)
            .collect();
        let peers = &self.peers;
        self.exchange.heard.retain(|peer, _| {
            pending.contains(peer)
                || peers.get(peer).is_some_and(|r| {
                    matches!(
                        r.intent,
                        Intent::Wanted(Asker::Application | Asker::Hearsay)
                    )
                })
        });
        while self
            .exchange
            .recent
            .front()
            .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) >= interval)
        {
            self.exchange.recent.pop_front();
        }
        let mut dialing = 0;
        let mut queued = 0;
        for peer in self.exchange.heard.keys() {
            if self.peers.get(peer).is_some_and(|r| r.is_connected()) {
                continue;
            }
            dialing += 1;
            if !pending.contains(peer) {
                queued += 1;
            }
        }
        (dialing, queued)
    }

    /// Dials `peer` on hearsay if nobody deals with it, the budget allows, and no address it
    /// would be dialed on is over its per-address or per-prefix bound.
    fn maybe_dial_on_hearsay(
        &mut self,
        now: Instant,
        exchange: PeerExchange,
        budget: &mut HearsayBudget,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    ) {
        if budget.list == 0
            || budget.dialing >= exchange.max_dials
            || self.exchange.heard.len() >= exchange.max_peers
            || self.exchange.recent.len() >= MAX_RECENT_DIALS
            || self.exchange.is_quiet(&peer, now)
        {
            return;
        }
        // Nobody deals with it: not wanted (by anyone), not let go, no dial or redial.
        let dialed_on: Vec<Multiaddr> = match self.peers.get(&peer) {
            None => addresses,
            Some(r)
                if r.intent == Intent::Unasked
                    && !self.timers.is_set(Timer::Redial(peer))
                    && r.pending_outbound == 0
                    && r.waiting.is_none()
                    && !r.is_connected() =>
            {
                r.addresses.iter().cloned().collect()
            }
            Some(_) => return,
        };
        // The application's and bootstrap dials keep at least half of the pending slots.
        if let Some(limit) = self.limits.max_pending_outgoing {
            let in_use = self.counters.pending_outbound as usize + budget.queued;
            if in_use + 1 > limit as usize / 2 {
                return;
            }
        }
        // At most one hearsay dial per address per interval, and the per-prefix bounds.
        let mut prefixes: Vec<IpNet> = Vec::new();
        for address in &dialed_on {
            if self.exchange.recent.iter().any(|(_, a, _)| a == address) {
                return;
            }
            if let Some(net) = limits::first_ip(address).and_then(prefix) {
                if !prefixes.contains(&net) {
                    prefixes.push(net);
                }
            }
        }
        for net in &prefixes {
            let dials = self
                .exchange
                .recent
                .iter()
                .filter(|(_, _, p)| p.as_ref() == Some(net))
                .count();
            let held = self
                .exchange
                .heard
                .values()
                .filter(|h| h.prefixes.contains(net))
                .count();
            if dials >= exchange.max_per_prefix || held >= exchange.max_per_prefix {
                return;
            }
        }
        let max = self.config.max_addresses_per_peer;
        // Only hearsay keeps it: forgotten once unreachable.
        self.set_intent(peer, Intent::Wanted(Asker::Hearsay));
        let record = self.peers.or_default(peer);
        for address in &dialed_on {
            record.add_ranked_address(address.clone(), Rank::Hearsay, max);
        }
        for address in dialed_on {
            let net = limits::first_ip(&address).and_then(prefix);
            self.exchange.recent.push_back((now, address, net));
        }
        self.exchange.heard.insert(peer, Heard { prefixes });
        budget.list -= 1;
        budget.dialing += 1;
        budget.queued += 1;
        tracing::debug!(%peer, "dialing on hearsay");
        self.push_dial(peer);
    }
}

/// What is left of the hearsay budget while a list is looked at.
struct HearsayBudget {
    /// Dials this list may still start.
    list: usize,
    /// Hearsay peers not connected.
    dialing: usize,
    /// Of those, without a dial in the swarm.
    queued: usize,
}
