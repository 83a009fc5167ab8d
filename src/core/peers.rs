//! What the manager knows of each peer and each of its connections.

use std::time::Duration;

use libp2p_core::{multiaddr::Protocol, Endpoint, Multiaddr};
use libp2p_swarm::ConnectionId;
use web_time::Instant;

use super::DisconnectReason;
use super::{
    duplicates::Candidate,
    health::{Health, HealthScoring, HealthState},
    Initiator,
};

/// An established connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionRecord {
    pub(crate) id: ConnectionId,
    pub(crate) initiator: Initiator,
    pub(crate) direction: Endpoint,
    pub(crate) relayed: bool,
    pub(crate) established_at: Instant,
    pub(crate) remote_addr: Multiaddr,
    /// Set once the manager decided to close it: the goodbye is on its way.
    pub(crate) closing: Option<Closing>,
    /// What the remote said in its goodbye, if it said one (boxed: rare, and every
    /// connection carries the field).
    pub(crate) remote_goodbye: Option<Box<(DisconnectReason, Option<Duration>)>>,
    /// The last ping's round trip (see [`Micros`]).
    pub(crate) rtt: Option<Micros>,
    /// Successful pings (a `u32`: at one ping a second, 136 years).
    pub(crate) pings: u32,
    pub(crate) health: HealthState,
    /// What it is counted under: IP prefixes or a relay (inbound only).
    pub(crate) counted: super::limits::Counted,
    /// A protocol violation was counted on it already (one per connection).
    pub(crate) violated: bool,
    /// What its handler was last told about keeping it open while idle.
    pub(crate) kept_alive: bool,
}

// Every established connection carries one: a guard against growing it by accident (it was
// 264 bytes, reserved four at a time, before the memory work of issue 24).
const _: () = assert!(std::mem::size_of::<ConnectionRecord>() <= 152);

/// A round-trip time in whole microseconds, up to 71 minutes: half the bytes of a `Duration`,
/// which every connection carries twice (the last and the average), and a round trip is
/// neither finer than a microsecond nor longer than a ping's timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Micros(u32);

impl Micros {
    pub(crate) fn new(rtt: Duration) -> Self {
        Self(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX))
    }

    pub(crate) fn duration(self) -> Duration {
        Duration::from_micros(u64::from(self.0))
    }
}

/// A connection the manager is closing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Closing {
    pub(crate) reason: DisconnectReason,
    /// Closed to be replaced (health stayed critical): the closing side redials at once.
    pub(crate) replace: bool,
}

impl ConnectionRecord {
    pub(crate) fn is_open(&self) -> bool {
        self.closing.is_none()
    }

    pub(crate) fn candidate(&self) -> Candidate {
        Candidate {
            id: self.id,
            initiator: self.initiator,
            relayed: self.relayed,
            established_at: self.established_at,
        }
    }

    pub(crate) fn info(&self, scoring: &HealthScoring) -> ConnectionInfo {
        ConnectionInfo {
            id: self.id,
            initiator: self.initiator,
            direction: self.direction,
            since: self.established_at,
            remote_addr: self.remote_addr.clone(),
            rtt: self.rtt.map(Micros::duration),
            pings: u64::from(self.pings),
            health: self.health.assess(scoring),
            closing: self.closing.map(|c| c.reason),
        }
    }
}

/// Where an address of a peer comes from, lowest first: an address may only push out one of
/// its own rank or lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    /// A third party named it (a peer-exchange list).
    Hearsay,
    /// The peer itself, or another behaviour, reported it (`NewExternalAddrOfPeer`: identify,
    /// Kademlia).
    Learned,
    /// The application gave it (`dial`, `add_address`, discovery, bootstrap, the store), a
    /// dial used it, or a connection this node dialed proved it.
    Trusted,
}

/// The addresses of one peer, at most a configured number: highest rank first, newest first
/// within a rank. Hearsay never pushes out a learned or trusted address, nor reorders any.
#[derive(Debug, Default, Clone)]
pub(crate) struct Addresses {
    /// A `Vec`, not a `VecDeque` (8 bytes more per peer): the list is a few entries long.
    list: Vec<(Multiaddr, Rank)>,
}

impl Addresses {
    /// All of them, trusted first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Multiaddr> + '_ {
        self.list.iter().map(|(a, _)| a)
    }

    /// All of them with their rank.
    pub(crate) fn ranked(&self) -> impl Iterator<Item = (&Multiaddr, Rank)> + '_ {
        self.list.iter().map(|(a, r)| (a, *r))
    }

    /// The trusted ones (what a store keeps and a dial names).
    pub(crate) fn trusted(&self) -> impl Iterator<Item = &Multiaddr> + '_ {
        self.ranked()
            .filter(|(_, r)| *r == Rank::Trusted)
            .map(|(a, _)| a)
    }

    pub(crate) fn clear(&mut self) {
        self.list.clear();
    }

    /// Remembers `address` with `rank`, keeping at most `max`: as the newest of its rank (a
    /// known address of a lower rank is promoted; hearsay never reorders), pushing out the
    /// oldest of the lowest rank if full, unless that one outranks it. Returns whether the
    /// list changed.
    pub(crate) fn insert(&mut self, address: Multiaddr, rank: Rank, max: usize) -> bool {
        if address.is_empty() || max == 0 {
            return false;
        }
        // Where the newest of `rank` goes: after every address of a higher rank.
        let slot = |list: &Vec<(Multiaddr, Rank)>| {
            list.iter()
                .position(|(_, r)| *r <= rank)
                .unwrap_or(list.len())
        };
        if let Some(position) = self.list.iter().position(|(a, _)| *a == address) {
            let known = self.list[position].1;
            if rank < known
                || rank == Rank::Hearsay
                || (rank == known && position == slot(&self.list))
            {
                return false;
            }
            self.list.remove(position);
        } else if self.list.len() >= max {
            match self.list.last() {
                Some((_, lowest)) if *lowest <= rank => {
                    self.list.pop();
                }
                _ => return false,
            }
        }
        let at = slot(&self.list);
        // One slot at a time: most peers have one or two addresses, and growing by doubling
        // reserved four (160 bytes) for the first.
        self.list.reserve_exact(1);
        self.list.insert(at, (address, rank));
        self.list.truncate(max);
        true
    }
}

/// Everything about one peer.
#[derive(Debug, Default)]
pub(crate) struct PeerRecord {
    pub(crate) connections: Connections,
    /// Addresses to dial, bounded by the config (see [`Addresses`]).
    pub(crate) addresses: Addresses,
    /// What the manager means to do with it (see `intent`).
    pub(crate) intent: super::intent::Intent,
    /// Redial attempts and the rescue budget (see `redial`).
    pub(crate) redial: super::redial::RedialState,
    /// Outbound connection attempts in flight.
    pub(crate) pending_outbound: u32,
    /// Waiting in the queue for a local limit to free a slot.
    pub(crate) waiting: Option<Slot>,
    /// When rare things last happened (boxed: most peers never have one, and every record
    /// carries the field).
    stamps: Option<Box<Stamps>>,
}

// Every peer the manager knows carries one: a guard against growing it by accident (it was
// 120 bytes before the memory work of issue 24).
const _: () = assert!(std::mem::size_of::<PeerRecord>() <= 64);

/// A peer's established connections: almost always one, so held in a boxed slice of exactly
/// their number (8 bytes fewer than a `Vec` in every peer record, and no spare slot).
/// Connections come and go rarely; each change reallocates.
#[derive(Debug, Default)]
pub(crate) struct Connections(Box<[ConnectionRecord]>);

impl Connections {
    pub(crate) fn push(&mut self, connection: ConnectionRecord) {
        let mut all = std::mem::take(&mut self.0).into_vec();
        all.reserve_exact(1);
        all.push(connection);
        self.0 = all.into_boxed_slice();
    }

    /// Removes the connection `id`, if it is here.
    pub(crate) fn remove(&mut self, id: ConnectionId) -> Option<ConnectionRecord> {
        let index = self.0.iter().position(|c| c.id == id)?;
        let mut all = std::mem::take(&mut self.0).into_vec();
        let removed = all.swap_remove(index);
        self.0 = all.into_boxed_slice();
        Some(removed)
    }
}

impl std::ops::Deref for Connections {
    type Target = [ConnectionRecord];

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Connections {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// When rare things last happened to a peer.
#[derive(Debug, Default)]
struct Stamps {
    /// A duplicate of this peer was closed or refused.
    last_duplicate: Option<Instant>,
    /// It was sent a peer list, and it sent one (peer exchange).
    list_sent: Option<Instant>,
    list_received: Option<Instant>,
}

/// The kind of slot a peer refused by a local limit waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// A pending-outbound slot.
    Pending,
    /// An established slot (outbound or total).
    Established,
}

impl PeerRecord {
    fn stamps(&mut self) -> &mut Stamps {
        self.stamps.get_or_insert_with(Box::default)
    }

    /// When a duplicate of this peer was last closed or refused.
    pub(crate) fn last_duplicate_at(&self) -> Option<Instant> {
        self.stamps.as_ref()?.last_duplicate
    }

    pub(crate) fn set_last_duplicate_at(&mut self, at: Instant) {
        self.stamps().last_duplicate = Some(at);
    }

    /// When it was last sent a peer list (peer exchange).
    pub(crate) fn list_sent_at(&self) -> Option<Instant> {
        self.stamps.as_ref()?.list_sent
    }

    pub(crate) fn set_list_sent_at(&mut self, at: Instant) {
        self.stamps().list_sent = Some(at);
    }

    /// When it last sent a peer list (peer exchange).
    pub(crate) fn list_received_at(&self) -> Option<Instant> {
        self.stamps.as_ref()?.list_received
    }

    pub(crate) fn set_list_received_at(&mut self, at: Instant) {
        self.stamps().list_received = Some(at);
    }

    pub(crate) fn open(&self) -> impl Iterator<Item = &ConnectionRecord> {
        self.connections.iter().filter(|c| c.is_open())
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.open().next().is_some()
    }

    pub(crate) fn connection_mut(&mut self, id: ConnectionId) -> Option<&mut ConnectionRecord> {
        self.connections.iter_mut().find(|c| c.id == id)
    }

    /// Whether the record holds nothing worth keeping (a scheduled redial aside, which the
    /// manager's timers know).
    pub(crate) fn is_forgettable(&self) -> bool {
        self.connections.is_empty()
            && !self.intent.is_wanted()
            && self.pending_outbound == 0
            && self.waiting.is_none()
    }

    /// Remembers a trusted `address` as the most recent one, keeping at most `max` (see
    /// [`Addresses::insert`]). A trailing `/p2p/<peer>` is dropped so the same address is not
    /// kept (and dialed) twice. Returns whether the list changed.
    pub(crate) fn add_address(&mut self, address: Multiaddr, max: usize) -> bool {
        self.add_ranked_address(address, Rank::Trusted, max)
    }

    /// [`add_address`](Self::add_address) with a rank.
    pub(crate) fn add_ranked_address(
        &mut self,
        mut address: Multiaddr,
        rank: Rank,
        max: usize,
    ) -> bool {
        if matches!(address.iter().last(), Some(Protocol::P2p(_))) {
            address.pop();
        }
        self.addresses.insert(address, rank, max)
    }

    pub(crate) fn info(&self, scoring: &HealthScoring, next_redial: Option<Instant>) -> PeerInfo {
        PeerInfo {
            connections: self.connections.iter().map(|c| c.info(scoring)).collect(),
            addresses: self.addresses.iter().cloned().collect(),
            wanted: self.intent.is_wanted(),
            next_redial,
            redial_attempts: self.redial.attempts(),
            waiting_for_resources: self.waiting.is_some(),
            flagged: self.intent.is_fading(),
            discovered: self.intent.is_wanted() && !self.intent.is_applications(),
        }
    }
}

/// A snapshot of what the manager knows of a peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// Its established connections (normally one).
    pub connections: Vec<ConnectionInfo>,
    /// Addresses the manager dials it on: those the application gave or a connection proved
    /// first, then those the peer or another behaviour reported, then those a peer-exchange
    /// list named; newest first within each.
    pub addresses: Vec<Multiaddr>,
    /// Whether the application asked for it (it is redialed when lost).
    pub wanted: bool,
    /// When the next redial is due, if one is scheduled.
    pub next_redial: Option<Instant>,
    /// Redials since it last had a stable connection.
    pub redial_attempts: u32,
    /// Refused by a local limit, it waits for a slot to free up.
    pub waiting_for_resources: bool,
    /// Discovery no longer sees it: it is forgotten once disconnected and one redial failed.
    pub flagged: bool,
    /// It is wanted because discovery or a peer-exchange list brought it, not because the
    /// application dialed it: it is not written to a peer store as wanted, and trimming may
    /// let it go.
    pub discovered: bool,
}

/// A snapshot of one established connection.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionInfo {
    /// The connection.
    pub id: ConnectionId,
    /// Who dialed it (by effective role).
    pub initiator: Initiator,
    /// Which side dialed it at the transport level (differs from `initiator` only for
    /// hole-punched connections).
    pub direction: Endpoint,
    /// When it was established.
    pub since: Instant,
    /// The remote's address on it.
    pub remote_addr: Multiaddr,
    /// The last ping round-trip time.
    pub rtt: Option<Duration>,
    /// Successful pings so far (tells a scraper whether `rtt` is a new sample).
    pub pings: u64,
    /// Its health, once a ping result came in.
    pub health: Option<Health>,
    /// Why it is being closed, if the manager is closing it.
    pub closing: Option<DisconnectReason>,
}
