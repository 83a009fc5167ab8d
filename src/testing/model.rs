//! A model of the swarm that drives the sans-IO core [`Manager`] with random operation
//! sequences, and the invariants the manager keeps under them. One model, two drivers: the
//! property test `tests/model.rs` (proptest, shrinking to a readable sequence) and the fuzz
//! target `fuzz/fuzz_targets/core_ops.rs` (libFuzzer, coverage-guided).
//!
//! The model only ever sends inputs a real swarm could send: inbound and outbound connections,
//! establishments (hole-punched, relayed, refused by another behaviour), closes, dial failures,
//! goodbyes (finished at once or late, by a lazy swarm), pings, bandwidth, violations, peer
//! lists, bans, discovery, addresses, tags, limit changes, time jumps, shutdown, restarts from
//! the peer store and quiet spells. After every step the invariants are checked, and a failure
//! panics: the manager's connections, counts and phase agree with the swarm's; limits, caps
//! and bans hold; every event matches the model's state when it is read and every close is
//! reported once; hearsay never displaces a given or proven address; the journal of durable
//! changes, applied to a mirror of a peer store, agrees with the manager on bans and the
//! application's wanted peers, and a restart from it carries them over. After a quiet spell
//! each peer has at most one connection; after a final teardown no state is left for peers
//! nobody wants.
//!
//! Inputs are decoded from bytes with [`arbitrary::Unstructured`] ([`Setup::decode`],
//! [`Op::decode`], [`run`]). `CORE_OPS_TRACE=1` prints the setup, each operation and each
//! action of the manager.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::OnceLock,
    time::Duration,
};

use arbitrary::{Result, Unstructured};
use ipnet::IpNet;
use libp2p_core::{Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
use web_time::Instant;

use crate::{
    core::{ip_of, Action, Change, CloseCause, DurablePeer, Manager, NewConnection},
    Backoff, Ban, BanTarget, Config, DialFailureCause, DisconnectReason, Event, Initiator, Limits,
    PeerExchange, Phase, RateLimit,
};

/// Remote peers (the local node is one more identity).
const PEERS: usize = 6;
/// Operations per input, at most.
const MAX_OPS: usize = 300;
/// The cap on peers wanted only because of hearsay.
const MAX_HEARSAY: usize = 2;
/// Closed connection ids remembered for late ping reports.
const RECENTLY_CLOSED: usize = 8;

fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("CORE_OPS_TRACE").is_some())
}

/// A fixed identity per index (a SHA-256 multihash of made-up bytes), so that a crash
/// reproduces with the same ordering of peer ids (the duplicate rule depends on it).
fn peer_id(index: usize) -> PeerId {
    let mut bytes = vec![0x12, 0x20];
    let salt = (index as u8).wrapping_mul(67).wrapping_add(1);
    bytes.extend((0..32u8).map(|i| i.wrapping_mul(31).wrapping_add(salt)));
    PeerId::from_bytes(&bytes).expect("valid sha256 multihash")
}

fn addr(s: &str) -> Multiaddr {
    s.parse().expect("address")
}

/// Remote addresses: four IPv4 hosts, loopback, two IPv6 hosts in one /64 (one per-IP key).
fn inbound_addr(i: usize) -> Multiaddr {
    match i {
        0..=3 => addr(&format!("/ip4/10.0.0.{}/tcp/4001", i + 1)),
        4 => addr("/ip4/127.0.0.1/tcp/4001"),
        5 => addr("/ip6/2001:db8::1/tcp/4001"),
        _ => addr("/ip6/2001:db8::2/tcp/4001"),
    }
}
const INBOUND_ADDRS: usize = 7;

/// Dial addresses: the inbound ones, one through a relay, one DNS name (no IP).
fn dial_addr(i: usize, relay: &PeerId) -> Multiaddr {
    match i {
        0..=6 => inbound_addr(i),
        7 => addr(&format!("/ip4/10.0.0.5/tcp/4001/p2p/{relay}/p2p-circuit")),
        _ => addr("/dns4/peer.example/tcp/4001"),
    }
}
const DIAL_ADDRS: usize = 9;

fn network(i: usize) -> IpNet {
    let s = match i {
        0 => "10.0.0.1/32",
        1 => "10.0.0.2/32",
        2 => "10.0.0.0/24",
        3 => "127.0.0.0/8",
        4 => "2001:db8::/64",
        5 => "2001:db8::1/128",
        _ => "0.0.0.0/0",
    };
    s.parse().expect("network")
}
const NETWORKS: usize = 7;

/// IPv4 alone, IPv6 by its /64: how the manager keys its per-IP table.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
    }
}

fn pick(u: &mut Unstructured, n: usize) -> Result<usize> {
    u.int_in_range(0..=n.saturating_sub(1))
}

fn millis(u: &mut Unstructured, max: u64) -> Result<Duration> {
    Ok(Duration::from_millis(u.int_in_range(0..=max)?))
}

fn option<T>(
    u: &mut Unstructured,
    f: impl FnOnce(&mut Unstructured) -> Result<T>,
) -> Result<Option<T>> {
    Ok(if u.arbitrary::<bool>()? {
        Some(f(u)?)
    } else {
        None
    })
}

/// Ban durations, edge cases included (zero, and too long to represent: permanent).
fn ban_duration(u: &mut Unstructured) -> Result<Option<Duration>> {
    Ok(match pick(u, 6)? {
        0 => None,
        1 => Some(Duration::ZERO),
        2 => Some(Duration::MAX),
        3 => Some(millis(u, 5_000)?),
        _ => Some(Duration::from_secs(u.int_in_range(1..=600)?)),
    })
}

/// The limits as set, with the parts the public getters do not show.
#[derive(Debug, Clone)]
struct LimitSpec {
    pending_in: Option<u32>,
    pending_out: Option<u32>,
    est_in: Option<u32>,
    est_out: Option<u32>,
    est_total: Option<u32>,
    per_ip: Option<u32>,
    rate: Option<(u32, u64)>,
    loopback_exempt: bool,
    max_tracked_ips: usize,
    /// Inbound connections through one relay, at most (not in the byte format: set by
    /// [`Setup::with_relay_limit`]).
    per_relay: Option<u32>,
    /// The per-IP limit applies to IPv6 /56 and /48 networks too (not in the byte format: set
    /// by [`Setup::with_nested_ipv6_limits`]).
    nested_ipv6: bool,
}

impl LimitSpec {
    fn decode(u: &mut Unstructured) -> Result<Self> {
        let small = |u: &mut Unstructured| u.int_in_range(0u32..=4);
        Ok(Self {
            pending_in: option(u, small)?,
            pending_out: option(u, small)?,
            est_in: option(u, small)?,
            est_out: option(u, small)?,
            est_total: option(u, small)?,
            per_ip: option(u, |u| u.int_in_range(0u32..=3))?,
            rate: option(u, |u| {
                Ok((u.int_in_range(1u32..=3)?, u.int_in_range(1u64..=5000)?))
            })?,
            loopback_exempt: u.arbitrary()?,
            max_tracked_ips: u.int_in_range(1usize..=4)?,
            per_relay: None,
            nested_ipv6: false,
        })
    }

    fn limits(&self) -> Limits {
        Limits::unlimited()
            .with_max_pending_incoming(self.pending_in)
            .with_max_pending_outgoing(self.pending_out)
            .with_max_established_incoming(self.est_in)
            .with_max_established_outgoing(self.est_out)
            .with_max_established(self.est_total)
            .with_max_incoming_per_ip(self.per_ip)
            .with_incoming_rate_per_ip(
                self.rate
                    .map(|(burst, ms)| RateLimit::new(burst, Duration::from_millis(ms))),
            )
            .with_loopback_exempt(self.loopback_exempt)
            .with_max_tracked_ips(self.max_tracked_ips)
            .with_max_incoming_per_relay(self.per_relay)
            .with_max_incoming_per_ipv6_56(self.per_ip.filter(|_| self.nested_ipv6))
            .with_max_incoming_per_ipv6_48(self.per_ip.filter(|_| self.nested_ipv6))
    }

    /// Whether an inbound connection from `ip` is counted against the per-IP limits.
    fn per_ip_applies(&self, ip: IpAddr) -> bool {
        (self.per_ip.is_some() || self.rate.is_some())
            && !(self.loopback_exempt && ip.is_loopback())
    }
}

/// How the model swarm behaves, and the manager's configuration.
#[derive(Debug, Clone)]
pub struct Setup {
    local: usize,
    lazy: bool,
    config: Config,
    limits: LimitSpec,
    bootstrap: Vec<usize>,
    allowed: Vec<usize>,
    keep_alive: bool,
    exchange: bool,
    duplicate_grace: Duration,
}

impl Setup {
    /// Decodes a setup: which identity is the local node, whether the swarm carries out
    /// goodbyes and closes late, the limits and the rest of the manager's configuration, the
    /// bootstrap and allowed peers.
    pub fn decode(u: &mut Unstructured) -> Result<Self> {
        let local = pick(u, PEERS + 1)?;
        let lazy = u.arbitrary()?;
        let limits = LimitSpec::decode(u)?;
        let keep_alive = u.arbitrary()?;
        let backoff = |u: &mut Unstructured| -> Result<Backoff> {
            Ok(Backoff::new(
                // A zero first delay with no address to dial spins (dial, NoAddresses,
                // redial at once): a configuration no one uses, kept out.
                Duration::from_millis(u.int_in_range(10..=2_000)?),
                f64::from(u.int_in_range(0u8..=4)?),
                millis(u, 120_000)?,
            )
            .with_jitter(f64::from(u.int_in_range(0u8..=10)?) / 10.0))
        };
        let goodbye_timeout = millis(u, 3_000)?;
        let duplicate_grace = millis(u, 8_000)?;
        let mut config = Config::new()
            .with_limits(limits.limits())
            .with_keep_alive(keep_alive)
            .with_goodbye_timeout(goodbye_timeout)
            .with_duplicate_grace(duplicate_grace)
            .with_max_established_per_peer(u.int_in_range(1..=3)?)
            .with_ping_interval(Duration::from_secs(u.int_in_range(1..=15)?))
            .with_ping_timeout(Duration::from_secs(u.int_in_range(1..=20)?))
            .with_inactivity_timeout(option(u, |u| {
                Ok(Duration::from_secs(u.int_in_range(1..=60)?))
            })?)
            .with_degraded_grace(option(u, |u| {
                Ok(Duration::from_secs(u.int_in_range(0..=60)?))
            })?)
            .with_dial_timeout(Duration::from_millis(u.int_in_range(1..=40_000)?))
            .with_prompt_redial_delay(millis(u, 500)?)
            .with_timeout_backoff(backoff(u)?)
            .with_violation_backoff(backoff(u)?)
            .with_bootstrap_backoff(backoff(u)?)
            .with_max_redial_attempts(option(u, |u| u.int_in_range(0..=4))?)
            .with_max_rescue_dials(u.int_in_range(0..=3)?)
            .with_stable_after(millis(u, 20_000)?)
            .with_new_port_for_redials(u.arbitrary()?)
            .with_max_addresses_per_peer(u.int_in_range(1..=4)?)
            .with_violation_ban(
                u.int_in_range(0..=3)?,
                millis(u, 600_000)?,
                millis(u, 3_600_000)?,
            )
            .with_learn_peer_addresses(u.arbitrary()?)
            .with_auto_connect_learned_peers(u.arbitrary()?)
            .with_max_discovered_peers(u.int_in_range(0..=PEERS + 1)?)
            .with_trim_grace(millis(u, 30_000)?)
            .with_trim_silence(millis(u, 10_000)?);
        if u.arbitrary()? {
            config = config.with_watermarks(u.int_in_range(0..=4)?, u.int_in_range(0..=5)?);
        }
        let exchange = u.arbitrary::<bool>()?;
        if exchange {
            config = config.with_peer_exchange(Some(
                PeerExchange::new()
                    .with_auto_connect(u.arbitrary()?)
                    .with_interval(millis(u, 60_000)?)
                    .with_max_peers(MAX_HEARSAY),
            ));
        }
        let mut bootstrap = Vec::new();
        let mut allowed = Vec::new();
        for index in 0..=PEERS {
            if index == local {
                continue;
            }
            if u.ratio(1u8, 6)? {
                bootstrap.push(index);
                config = config.with_bootstrap_peer(peer_id(index), inbound_addr(index % 4));
            }
            if u.ratio(1u8, 6)? {
                allowed.push(index);
                config = config.with_exempt_peer(peer_id(index));
            }
        }
        Ok(Self {
            local,
            lazy,
            config,
            limits,
            bootstrap,
            allowed,
            keep_alive,
            exchange,
            duplicate_grace,
        })
    }

    /// Decodes a setup from the start of `bytes` (as [`run`] does), if they are enough.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Self::decode(&mut Unstructured::new(bytes)).ok()
    }

    /// Limits inbound connections through one relay to `max`.
    pub fn with_relay_limit(mut self, max: Option<u32>) -> Self {
        self.limits.per_relay = max;
        self.config = self.config.with_limits(self.limits.limits());
        self
    }

    /// Applies the per-IP limit to IPv6 /56 and /48 networks too, not only to the /64.
    pub fn with_nested_ipv6_limits(mut self, nested: bool) -> Self {
        self.limits.nested_ipv6 = nested;
        self.config = self.config.with_limits(self.limits.limits());
        self
    }
}

#[derive(Debug, Clone, Copy)]
enum FailKind {
    Transport,
    Aborted,
    WrongPeerId,
    NoAddresses,
    DeniedByOther,
}

#[derive(Debug, Clone, Copy)]
enum TagOp {
    Protect,
    Unprotect,
    Tag(i64),
    Untag,
    ForceTrim,
}

/// One step of the model: what the swarm, the remote peers, the application or the clock does.
#[derive(Debug, Clone)]
pub struct Op(Step);

/// One step. Indices pick among the model's current connections (`pick % len`); `peer` is an
/// identity index, the local one included where the application could name it.
#[derive(Debug, Clone)]
enum Step {
    Inbound {
        addr: usize,
    },
    /// `Swarm::dial` or another behaviour's dial; `peer: None` dials an address only.
    SwarmDial {
        peer: Option<usize>,
        addrs: Vec<usize>,
    },
    /// The swarm refuses a dial itself (peer condition false) before asking the behaviours.
    SwarmRefusesDial {
        peer: usize,
    },
    Establish {
        pick: usize,
        peer: usize,
        hole_punched: bool,
        other_denies: bool,
        relayed: bool,
    },
    Fail {
        pick: usize,
        kind: FailKind,
    },
    UserDial {
        peer: usize,
        addrs: Vec<usize>,
    },
    /// The remote, the transport, another behaviour or the idle timeout closes a connection.
    Close {
        pick: usize,
        cause: CloseCause,
    },
    /// The swarm carries out a close the manager asked for (lazy swarm).
    CompleteClose {
        pick: usize,
    },
    /// The handler reports a goodbye sent (lazy swarm).
    GoodbyeDone {
        pick: usize,
    },
    RemoteGoodbye {
        pick: usize,
        reason: u32,
        retry_after: Option<Duration>,
    },
    Ping {
        pick: usize,
        ok: bool,
        rtt: Duration,
    },
    PingUnsupported {
        pick: usize,
    },
    Bandwidth {
        pick: usize,
        rate: f64,
    },
    /// A ping result the ping behaviour had queued for a connection that has since closed.
    StalePing {
        pick: usize,
        ok: bool,
    },
    Violation {
        pick: usize,
    },
    PeersReceived {
        pick: usize,
        peers: Vec<(usize, Vec<usize>)>,
    },
    Ban {
        peer: usize,
        duration: Option<Duration>,
    },
    BanNetwork {
        net: usize,
        duration: Option<Duration>,
    },
    UnbanPeer {
        peer: usize,
    },
    UnbanNetwork {
        net: usize,
    },
    Disconnect {
        peer: usize,
    },
    Discover {
        peer: usize,
        addrs: Vec<usize>,
    },
    Undiscover {
        peer: usize,
    },
    Forget {
        peer: usize,
    },
    AddAddress {
        peer: usize,
        addr: usize,
    },
    PeerAddress {
        peer: usize,
        addr: usize,
    },
    Allow {
        peer: usize,
        allow: bool,
    },
    Tags {
        peer: usize,
        tag: u8,
        op: TagOp,
    },
    SetLimits(LimitSpec),
    Advance {
        by: Duration,
        stepwise: bool,
        catch_up: bool,
    },
    Shutdown,
    /// An inbound circuit through relay `relay` (0 or 1) arrives on the listen address
    /// through that relay (not in the byte format: [`Op::relayed_inbound`]).
    RelayedInbound {
        relay: u8,
    },
    /// The process dies and starts again: connections vanish, and a new manager takes over
    /// what the peer store kept.
    Restart,
    /// Nothing new comes in for a while: pending connections fail, goodbyes and closes are
    /// carried out, and time runs past the duplicate grace and the drain of young losing
    /// duplicates. Then each peer has one connection at most.
    Quiesce,
}

fn addrs(u: &mut Unstructured) -> Result<Vec<usize>> {
    let n = pick(u, 3)?;
    (0..n).map(|_| pick(u, DIAL_ADDRS)).collect()
}

impl Op {
    /// Decodes one operation (weighted: connections come and go most).
    pub fn decode(u: &mut Unstructured) -> Result<Self> {
        Step::decode(u).map(Op)
    }

    /// Decodes one operation from the start of `bytes`, if they are enough.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        Self::decode(&mut Unstructured::new(bytes)).ok()
    }

    /// An inbound circuit through relay `relay` (taken modulo 2), counted against the relay's
    /// limit rather than an IP.
    pub fn relayed_inbound(relay: u8) -> Self {
        Op(Step::RelayedInbound { relay: relay % 2 })
    }

    /// A restart of the process from its peer store.
    pub fn restart() -> Self {
        Op(Step::Restart)
    }

    /// A quiet spell, after which each peer has one connection at most.
    pub fn quiesce() -> Self {
        Op(Step::Quiesce)
    }
}

impl Step {
    fn decode(u: &mut Unstructured) -> Result<Self> {
        let peer = |u: &mut Unstructured| pick(u, PEERS + 1);
        let any = |u: &mut Unstructured| u.int_in_range(0usize..=255);
        Ok(match u.int_in_range(0u8..=63)? {
            0..=5 => Step::Inbound {
                addr: pick(u, INBOUND_ADDRS)?,
            },
            6..=8 => Step::SwarmDial {
                peer: if u.ratio(1u8, 4)? {
                    None
                } else {
                    Some(peer(u)?)
                },
                addrs: addrs(u)?,
            },
            9 => Step::SwarmRefusesDial { peer: peer(u)? },
            10..=19 => Step::Establish {
                pick: any(u)?,
                peer: peer(u)?,
                hole_punched: u.ratio(1u8, 8)?,
                other_denies: u.ratio(1u8, 10)?,
                relayed: u.ratio(1u8, 10)?,
            },
            20..=22 => Step::Fail {
                pick: any(u)?,
                kind: match pick(u, 8)? {
                    0 => FailKind::Aborted,
                    1 => FailKind::WrongPeerId,
                    2 => FailKind::NoAddresses,
                    3 => FailKind::DeniedByOther,
                    _ => FailKind::Transport,
                },
            },
            23..=25 => Step::UserDial {
                peer: peer(u)?,
                addrs: addrs(u)?,
            },
            26..=29 => Step::Close {
                pick: any(u)?,
                cause: match pick(u, 3)? {
                    0 => CloseCause::Local,
                    1 => CloseCause::Idle,
                    _ => CloseCause::Transport,
                },
            },
            30 => Step::CompleteClose { pick: any(u)? },
            31 => Step::GoodbyeDone { pick: any(u)? },
            32..=33 => Step::RemoteGoodbye {
                pick: any(u)?,
                reason: u.int_in_range(0..=8)?,
                retry_after: option(u, |u| millis(u, 3_600_000))?,
            },
            34..=37 => Step::Ping {
                pick: any(u)?,
                ok: u.ratio(2u8, 3)?,
                rtt: millis(u, 3_000)?,
            },
            38 => Step::PingUnsupported { pick: any(u)? },
            39 => Step::Bandwidth {
                pick: any(u)?,
                rate: [0.0, 1e3, 1e6, 1e9][pick(u, 4)?],
            },
            40 => Step::StalePing {
                pick: any(u)?,
                ok: u.arbitrary()?,
            },
            41 => Step::Violation { pick: any(u)? },
            42 => {
                let n = pick(u, 4)?;
                let mut peers = Vec::new();
                for _ in 0..n {
                    peers.push((peer(u)?, addrs(u)?));
                }
                Step::PeersReceived {
                    pick: any(u)?,
                    peers,
                }
            }
            43..=44 => Step::Ban {
                peer: peer(u)?,
                duration: ban_duration(u)?,
            },
            45 => Step::BanNetwork {
                net: pick(u, NETWORKS)?,
                duration: ban_duration(u)?,
            },
            46 => Step::UnbanPeer { peer: peer(u)? },
            47 => Step::UnbanNetwork {
                net: pick(u, NETWORKS)?,
            },
            48..=49 => Step::Disconnect { peer: peer(u)? },
            50 => Step::Discover {
                peer: peer(u)?,
                addrs: addrs(u)?,
            },
            51 => Step::Undiscover { peer: peer(u)? },
            52 => Step::Forget { peer: peer(u)? },
            53 => Step::AddAddress {
                peer: peer(u)?,
                addr: pick(u, DIAL_ADDRS)?,
            },
            54 => Step::PeerAddress {
                peer: peer(u)?,
                addr: pick(u, DIAL_ADDRS)?,
            },
            55 => Step::Allow {
                peer: peer(u)?,
                allow: u.arbitrary()?,
            },
            56 => Step::Tags {
                peer: peer(u)?,
                tag: u.int_in_range(0..=1)?,
                op: match pick(u, 5)? {
                    0 => TagOp::Protect,
                    1 => TagOp::Unprotect,
                    2 => TagOp::Tag(u.int_in_range(-100..=100)?),
                    3 => TagOp::Untag,
                    _ => TagOp::ForceTrim,
                },
            },
            57 => Step::SetLimits(LimitSpec::decode(u)?),
            58..=62 => Step::Advance {
                by: match pick(u, 4)? {
                    0 => millis(u, 100)?,
                    1 => millis(u, 2_000)?,
                    2 => millis(u, 30_000)?,
                    _ => millis(u, 3_600_000)?,
                },
                stepwise: u.ratio(3u8, 4)?,
                catch_up: u.ratio(3u8, 4)?,
            },
            _ => {
                if u.ratio(1u8, 4)? {
                    match pick(u, 3)? {
                        0 => Step::Shutdown,
                        1 => Step::Restart,
                        _ => Step::Quiesce,
                    }
                } else {
                    Step::Advance {
                        by: millis(u, 1_000)?,
                        stepwise: true,
                        catch_up: true,
                    }
                }
            }
        })
    }
}

/// A connection as the model swarm sees it.
#[derive(Debug, Clone)]
struct Conn {
    id: ConnectionId,
    /// Identity index; `None` for a pending dial to an address only, or a pending inbound.
    peer: Option<usize>,
    outbound: bool,
    /// Inbound: the remote address; outbound: the addresses the swarm may connect to.
    addrs: Vec<Multiaddr>,
    /// Established: the remote address.
    addr: Option<Multiaddr>,
    relayed: bool,
    /// The per-IP key this inbound connection is counted under, if it is.
    counted_ip: Option<IpAddr>,
    /// The relay this inbound circuit is counted under, if it is.
    counted_relay: Option<u8>,
    /// The manager reported this dial as timed out (it stays pending in the swarm).
    timed_out: bool,
    /// Let through by the manager only to say goodbye `ResourceConstraint`: never counted.
    refused: bool,
}

/// The peer store, as the manager's journal of changes describes it.
#[derive(Debug, Default)]
struct Mirror {
    bans: HashMap<BanTarget, Option<Instant>>,
    peers: HashMap<PeerId, DurablePeer>,
}

impl Mirror {
    fn apply(&mut self, changes: Vec<Change>) {
        for change in changes {
            match change {
                Change::Ban(ban) => {
                    self.bans.insert(ban.target, ban.until);
                }
                Change::Unban(target) => {
                    self.bans.remove(&target);
                }
                Change::Forget(peer) => {
                    self.peers.remove(&peer);
                }
                Change::Peer { peer, update } => {
                    let stored = self.peers.entry(peer).or_default();
                    stored.wanted = update.wanted;
                    stored.protected = update.protected;
                    stored.tags = update.tags;
                    if let Some(addresses) = update.addresses {
                        stored.addresses = addresses;
                    }
                    if let Some(last) = update.last_disconnect {
                        stored.last_disconnect = Some(last);
                    }
                }
            }
        }
    }

    fn bans_in_force(&self, now: Instant) -> Vec<Ban> {
        let mut bans: Vec<Ban> = self
            .bans
            .iter()
            .filter(|(_, until)| until.is_none_or(|until| now < until))
            .map(|(target, until)| Ban {
                target: *target,
                until: *until,
            })
            .collect();
        bans.sort_by_key(|ban| ban.target);
        bans
    }
}

/// The model swarm around one manager (see the [module docs](self)).
pub struct World {
    setup: Setup,
    /// The peer store the manager's journal feeds; a restart starts from it.
    store: Mirror,
    manager: Manager,
    now: Instant,
    /// Every identity; `ids[local]` is the node's own.
    ids: Vec<PeerId>,
    local: usize,
    next_id: usize,
    lazy: bool,
    keep_alive: bool,
    exchange: bool,
    max_per_peer: u32,
    limits: LimitSpec,
    /// The largest per-IP table size set so far: lowering it at run time evicts nothing, so
    /// the table may stay above the new bound (each new address then replaces an idle one).
    ip_table_bound: usize,
    allowed: HashSet<usize>,
    bootstrap: HashSet<usize>,
    /// Peers given addresses by the application or other behaviours: their record may stay.
    remembered: HashSet<usize>,
    pending: Vec<Conn>,
    established: Vec<Conn>,
    /// Counted connections the manager said goodbye on (closing, no longer "connected").
    closing: HashSet<ConnectionId>,
    goodbye_sent: HashSet<ConnectionId>,
    /// Goodbyes the handlers are still sending (lazy swarm).
    goodbyes: Vec<ConnectionId>,
    /// Closes the manager asked for that the swarm has not carried out yet (lazy swarm).
    close_requested: Vec<ConnectionId>,
    recently_closed: Vec<ConnectionId>,
    /// Counted connections closed whose `Disconnected` event has not been seen yet, with
    /// their peer.
    awaiting_disconnect: HashMap<ConnectionId, PeerId>,
    /// Connections that must have been reported kept by the end of the step: each came up
    /// as the only connection to its peer.
    expect_kept: Vec<ConnectionId>,
    /// Connections a `ConnectionKept` event named.
    kept: HashSet<ConnectionId>,
    /// Bans in force as the `Banned` and `Unbanned` events tell them.
    reported_bans: HashMap<BanTarget, Option<Instant>>,
    /// `Banned` events of the current step.
    step_bans: Vec<BanTarget>,
    /// Peers the manager wanted when the current step began.
    wanted_before: HashSet<PeerId>,
    /// Peers a `RedialGaveUp` event named.
    gave_up: HashSet<PeerId>,
    /// The ban the application places in the current step, if it does.
    placed: Option<BanTarget>,
    /// Bans the manager placed on its own after protocol violations: kept in memory only,
    /// never journaled.
    automatic: HashSet<BanTarget>,
    terminated: bool,
    /// Peers the application dialed itself and the manager still wants: never trimmed.
    dialed: HashSet<usize>,
    /// Addresses a list or another behaviour ever named for a peer: any other address the
    /// manager holds was given or proven, and hearsay must not push it out.
    heard: HashSet<(usize, Multiaddr)>,
}

impl World {
    /// A manager with `setup`'s configuration, its journal on, and a swarm with nothing yet.
    pub fn new(setup: &Setup) -> Self {
        if trace() {
            eprintln!("{setup:?}");
        }
        let now = Instant::now();
        let ids: Vec<PeerId> = (0..=PEERS).map(peer_id).collect();
        let max_per_peer = setup.config.max_established_per_peer();
        let mut manager = Manager::new(ids[setup.local], setup.config.clone(), now, 1);
        manager.track_changes(true);
        let mut world = Self {
            setup: setup.clone(),
            store: Mirror::default(),
            manager,
            now,
            ids,
            local: setup.local,
            next_id: 0,
            lazy: setup.lazy,
            keep_alive: setup.keep_alive,
            exchange: setup.exchange,
            max_per_peer,
            limits: setup.limits.clone(),
            ip_table_bound: setup.limits.max_tracked_ips,
            allowed: setup.allowed.iter().copied().collect(),
            bootstrap: setup.bootstrap.iter().copied().collect(),
            remembered: HashSet::new(),
            pending: Vec::new(),
            established: Vec::new(),
            closing: HashSet::new(),
            goodbye_sent: HashSet::new(),
            goodbyes: Vec::new(),
            close_requested: Vec::new(),
            recently_closed: Vec::new(),
            awaiting_disconnect: HashMap::new(),
            expect_kept: Vec::new(),
            kept: HashSet::new(),
            reported_bans: HashMap::new(),
            step_bans: Vec::new(),
            wanted_before: HashSet::new(),
            gave_up: HashSet::new(),
            placed: None,
            automatic: HashSet::new(),
            dialed: HashSet::new(),
            heard: HashSet::new(),
            terminated: false,
        };
        world.drain();
        world.check();
        world.check_events();
        world.sync_store();
        world
    }

    fn id(&mut self) -> ConnectionId {
        self.next_id += 1;
        ConnectionId::new_unchecked(self.next_id)
    }

    fn index(&self, peer: &PeerId) -> usize {
        self.ids.iter().position(|p| p == peer).expect("known peer")
    }

    fn relay(&self) -> PeerId {
        self.ids[(self.local + 1) % self.ids.len()]
    }

    fn dial_addrs(&self, addrs: &[usize]) -> Vec<Multiaddr> {
        let relay = self.relay();
        addrs.iter().map(|&a| dial_addr(a, &relay)).collect()
    }

    fn is_allowed(&self, peer: usize) -> bool {
        self.allowed.contains(&peer)
    }

    fn live(&self) -> impl Iterator<Item = &Conn> {
        self.established.iter().filter(|c| !c.refused)
    }

    /// Whether the swarm has `connection` to `peer` open, counted by the manager.
    fn is_live(&self, connection: ConnectionId, peer: &PeerId) -> bool {
        self.live()
            .any(|c| c.id == connection && c.peer.map(|p| self.ids[p]) == Some(*peer))
    }

    /// An outbound dial as the swarm makes it: the manager is asked first; a refusal is
    /// reported back as a dial failure at once.
    fn outbound(&mut self, peer: Option<usize>, addresses: Vec<Multiaddr>) {
        let id = self.id();
        let peer_id = peer.map(|p| self.ids[p]);
        let pending_out = self.pending.iter().filter(|c| c.outbound).count() as u32;
        match self
            .manager
            .on_pending_outbound(self.now, id, peer_id, &addresses)
        {
            Ok(known) => {
                assert!(!self.terminated, "a dial let through after shutdown");
                assert!(
                    peer != Some(self.local),
                    "a dial to the local peer let through"
                );
                if let Some(p) = peer_id {
                    assert!(
                        !self.manager.is_peer_banned(&p, self.now),
                        "a dial to a banned peer let through"
                    );
                }
                if let (Some(limit), false) = (
                    self.limits.pending_out,
                    peer.is_some_and(|p| self.is_allowed(p)),
                ) {
                    assert!(pending_out < limit, "pending-outbound limit exceeded");
                }
                let mut all = addresses;
                all.extend(known);
                if all.is_empty() {
                    // Nothing to dial (no other behaviour offers addresses here).
                    self.manager.on_dial_failure(
                        self.now,
                        id,
                        peer_id,
                        DialFailureCause::NoAddresses,
                    );
                    return;
                }
                self.pending.push(Conn {
                    id,
                    peer,
                    outbound: true,
                    addrs: all,
                    addr: None,
                    relayed: false,
                    counted_ip: None,
                    counted_relay: None,
                    timed_out: false,
                    refused: false,
                });
            }
            Err(denial) => self.manager.on_dial_failure(
                self.now,
                id,
                peer_id,
                DialFailureCause::DeniedByManager(denial),
            ),
        }
    }

    /// Removes an established connection and tells the manager it closed.
    fn close(&mut self, connection: ConnectionId, cause: CloseCause) {
        let Some(pos) = self.established.iter().position(|c| c.id == connection) else {
            return;
        };
        let conn = self.established.swap_remove(pos);
        self.closing.remove(&connection);
        self.goodbye_sent.remove(&connection);
        self.goodbyes.retain(|c| *c != connection);
        self.close_requested.retain(|c| *c != connection);
        if self.recently_closed.len() >= RECENTLY_CLOSED {
            self.recently_closed.remove(0);
        }
        self.recently_closed.push(connection);
        let peer = self.ids[conn.peer.expect("established")];
        if !conn.refused {
            self.awaiting_disconnect.insert(connection, peer);
        }
        self.manager.on_closed(self.now, connection, peer, cause);
    }

    /// Carries out what the manager asked for, as the swarm would, and checks each request.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            let Some(action) = self.manager.poll_action() else {
                return;
            };
            if trace() {
                eprintln!("  -> {action:?}");
            }
            match action {
                Action::Dial {
                    peer, addresses, ..
                } => {
                    assert!(peer != self.ids[self.local], "the manager dialed itself");
                    assert!(!self.terminated, "the manager dialed after shutdown");
                    let index = self.index(&peer);
                    // Known and left alone: a bootstrap round dials every bootstrap peer, banned
                    // or not; the manager's own pending-outbound check then refuses the dial.
                    assert!(
                        !self.manager.is_peer_banned(&peer, self.now)
                            || self.bootstrap.contains(&index),
                        "the manager dialed a banned peer"
                    );
                    self.outbound(Some(index), addresses);
                }
                Action::SendGoodbye { connection, .. } => {
                    let conn = self
                        .established
                        .iter()
                        .find(|c| c.id == connection)
                        .expect("goodbye on a connection the swarm does not have");
                    assert!(
                        self.goodbye_sent.insert(connection),
                        "two goodbyes on one connection"
                    );
                    if !conn.refused {
                        self.closing.insert(connection);
                    }
                    if self.lazy {
                        self.goodbyes.push(connection);
                    } else {
                        self.manager.on_goodbye_finished(connection);
                    }
                }
                Action::Close { connection, .. } => {
                    assert!(
                        self.established.iter().any(|c| c.id == connection),
                        "close of a connection the swarm does not have"
                    );
                    if self.lazy {
                        if !self.close_requested.contains(&connection) {
                            self.close_requested.push(connection);
                        }
                    } else {
                        self.close(connection, CloseCause::Local);
                    }
                }
                Action::KeepAlive { connection, .. } => {
                    assert!(
                        self.established.iter().any(|c| c.id == connection),
                        "keep-alive for a connection the swarm does not have"
                    );
                }
                Action::SendPeers {
                    connection, peers, ..
                } => {
                    assert!(
                        self.established.iter().any(|c| c.id == connection),
                        "peer list for a connection the swarm does not have"
                    );
                    for (peer, _) in &peers {
                        assert!(
                            !self.manager.is_peer_banned(peer, self.now),
                            "a banned peer told to others"
                        );
                    }
                }
                Action::Event(event) => self.on_event(event),
            }
        }
        panic!("the manager never stops producing actions");
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::DialFailed {
                connection,
                cause: DialFailureCause::TimedOut(_),
                ..
            } => {
                let conn = self
                    .pending
                    .iter_mut()
                    .find(|c| c.id == connection)
                    .expect("a dial timed out that the swarm does not have");
                assert!(conn.outbound && !conn.timed_out, "a dial timed out twice");
                conn.timed_out = true;
            }
            Event::RedialGaveUp { peer, .. } => {
                // Known to the model: the peer must then be forgotten (checked in `settle`).
                self.index(&peer);
                self.gave_up.insert(peer);
            }
            Event::ConnectionKept {
                peer, connection, ..
            } => {
                assert!(
                    self.is_live(connection, &peer),
                    "kept {connection} which the swarm does not have open to {peer}"
                );
                assert!(self.kept.insert(connection), "kept {connection} twice");
            }
            Event::DuplicateClosed { peer, kept, closed } => {
                assert_ne!(kept, closed, "a duplicate closed in favour of itself");
                assert!(
                    self.is_live(kept, &peer) && self.is_live(closed, &peer),
                    "duplicate closed (kept {kept}, closed {closed}) not between open \
                     connections to {peer}"
                );
            }
            Event::GoodbyeReceived {
                peer, connection, ..
            }
            | Event::HealthChanged {
                peer, connection, ..
            }
            | Event::ConnectionReplaced { peer, connection } => {
                assert!(
                    self.is_live(connection, &peer),
                    "an event for {connection} which the swarm does not have open to {peer}"
                );
            }
            Event::Trimmed {
                peers,
                no_longer_wanted,
            } => {
                for peer in &peers {
                    let index = self.index(peer);
                    assert!(
                        !self.dialed.contains(&index),
                        "trimmed a peer the application dialed"
                    );
                    assert_eq!(
                        self.wanted_before.contains(peer),
                        no_longer_wanted.contains(peer),
                        "peer {index} un-wanted by a trim without saying so (or said so wrongly)"
                    );
                }
                assert!(no_longer_wanted.iter().all(|p| peers.contains(p)));
            }
            Event::Disconnected {
                peer, connection, ..
            } => {
                assert_eq!(
                    self.awaiting_disconnect.remove(&connection),
                    Some(peer),
                    "a disconnected event for {connection} which did not close (to that peer), \
                     or two"
                );
            }
            Event::Banned { target, until } => {
                self.step_bans.push(target);
                self.reported_bans.insert(target, until);
                if self.placed == Some(target) {
                    self.automatic.remove(&target);
                } else {
                    self.automatic.insert(target);
                }
            }
            Event::Unbanned { target, .. } => {
                assert!(
                    self.reported_bans.remove(&target).is_some(),
                    "unbanned {target} which no event reported banned"
                );
                self.automatic.remove(&target);
            }
            _ => {}
        }
    }

    fn establish(
        &mut self,
        pick: usize,
        peer: usize,
        hole_punched: bool,
        other_denies: bool,
        relayed: bool,
    ) {
        if self.pending.is_empty() {
            return;
        }
        let mut conn = self.pending.swap_remove(pick % self.pending.len());
        // A dial to a named peer can only reach that peer (else: WrongPeerId, a failure);
        // the swarm never establishes a connection to the local peer.
        let peer = match conn.peer {
            Some(p) => p,
            None if peer == self.local => (peer + 1) % self.ids.len(),
            None => peer,
        };
        conn.peer = Some(peer);
        let peer_id = self.ids[peer];
        let address = if conn.outbound {
            conn.addrs[pick % conn.addrs.len()].clone()
        } else {
            conn.addrs[0].clone()
        };
        conn.relayed |= relayed && !conn.outbound;
        let (initiator, direction) = match (conn.outbound, hole_punched) {
            (true, false) => (Initiator::Local, Endpoint::Dialer),
            (true, true) => (Initiator::Remote, Endpoint::Dialer),
            (false, _) => (Initiator::Remote, Endpoint::Listener),
        };
        let mut new = NewConnection::new(initiator, direction, address.clone());
        if conn.relayed {
            new = new.with_relayed(true);
        }
        let already = self.manager.is_connected(&peer_id);
        let est_in = self.live().filter(|c| !c.outbound).count() as u32;
        let est_out = self.live().filter(|c| c.outbound).count() as u32;
        let of_peer = self.live().filter(|c| c.peer == Some(peer)).count() as u32;
        match self
            .manager
            .check_established(self.now, conn.id, peer_id, &new)
        {
            Ok(()) => {
                assert!(!self.terminated, "a connection let in after shutdown");
                assert!(
                    !self.manager.is_peer_banned(&peer_id, self.now),
                    "a banned peer was let in"
                );
                if let Some(ip) = ip_of(&address) {
                    assert!(
                        !self.manager.is_ip_banned(ip, self.now),
                        "a banned address was let in"
                    );
                }
                if other_denies {
                    // A behaviour after the manager refuses it: the swarm reports a failure.
                    self.fail_pending(conn, FailKind::DeniedByOther);
                    return;
                }
                let before = self.manager.established_connections();
                self.manager.on_established(self.now, conn.id, peer_id, new);
                conn.addr = Some(address);
                conn.refused = self.manager.established_connections() == before;
                if conn.refused {
                    assert!(!conn.outbound, "only inbound refusals say goodbye");
                    conn.counted_ip = None;
                    conn.counted_relay = None;
                } else {
                    assert!(of_peer < self.max_per_peer, "per-peer cap exceeded");
                    if of_peer == 0 {
                        self.expect_kept.push(conn.id);
                    }
                    if !already && !self.is_allowed(peer) {
                        let (count, limit) = if conn.outbound {
                            (est_out, self.limits.est_out)
                        } else {
                            (est_in, self.limits.est_in)
                        };
                        if let Some(limit) = limit {
                            assert!(count < limit, "established limit exceeded");
                        }
                        if let Some(limit) = self.limits.est_total {
                            assert!(est_in + est_out < limit, "established total limit exceeded");
                        }
                    }
                }
                self.established.push(conn);
            }
            Err(denial) if conn.outbound => self.manager.on_dial_failure(
                self.now,
                conn.id,
                Some(peer_id),
                DialFailureCause::DeniedByManager(denial),
            ),
            Err(_) => self.manager.on_listen_failure(conn.id),
        }
    }

    fn fail_pending(&mut self, conn: Conn, kind: FailKind) {
        if !conn.outbound {
            self.manager.on_listen_failure(conn.id);
            return;
        }
        let peer = conn.peer.map(|p| self.ids[p]);
        let cause = match kind {
            FailKind::Transport => DialFailureCause::Transport {
                errors: conn
                    .addrs
                    .iter()
                    .map(|a| (a.clone(), "connection refused".to_string()))
                    .collect(),
            },
            FailKind::Aborted => DialFailureCause::Aborted,
            FailKind::WrongPeerId => DialFailureCause::WrongPeerId {
                obtained: self.ids[(conn.peer.unwrap_or(0) + 1) % self.ids.len()],
            },
            FailKind::NoAddresses => DialFailureCause::NoAddresses,
            FailKind::DeniedByOther => DialFailureCause::DeniedByOther {
                reason: "refused by another behaviour".to_string(),
            },
        };
        self.manager.on_dial_failure(self.now, conn.id, peer, cause);
    }

    /// Lets time pass. Stepwise, every deadline runs at its own time and its actions are
    /// carried out before the next (a swarm polled on time); otherwise all at once (a process
    /// that was not scheduled for a while).
    fn advance(&mut self, by: Duration, stepwise: bool, catch_up: bool) {
        if catch_up {
            // The swarm gets to run: handlers finish their goodbyes, closes complete.
            for connection in std::mem::take(&mut self.goodbyes) {
                self.manager.on_goodbye_finished(connection);
                self.drain();
            }
            for connection in std::mem::take(&mut self.close_requested) {
                self.close(connection, CloseCause::Local);
                self.drain();
            }
        }
        let target = self.now + by;
        if stepwise {
            for _ in 0..64 {
                match self.manager.poll_timeout() {
                    Some(due) if due <= target => {
                        self.now = self.now.max(due);
                        self.manager.handle_timeout(self.now);
                        self.drain();
                    }
                    _ => break,
                }
            }
        }
        self.now = target;
        self.manager.handle_timeout(self.now);
        if let Some(due) = self.manager.poll_timeout() {
            assert!(due > self.now, "a deadline still due after handle_timeout");
        }
        self.drain();
    }

    /// Carries out `op`, then checks the invariants, the step's events as a whole, and that
    /// the mirror of the peer store agrees with the manager.
    pub fn step(&mut self, op: &Op) {
        if trace() {
            eprintln!("{op:?}");
        }
        self.wanted_before = self
            .ids
            .iter()
            .filter(|p| self.manager.peer_info(p).is_some_and(|i| i.wanted))
            .copied()
            .collect();
        self.step_bans.clear();
        self.placed = match op.0 {
            // The manager never bans itself.
            Step::Ban { peer, .. } if peer != self.local => Some(BanTarget::Peer(self.ids[peer])),
            Step::BanNetwork { net, .. } => {
                Some(BanTarget::Network(BanTarget::host_scope(network(net))))
            }
            _ => None,
        };
        self.apply(&op.0);
        self.check();
        self.check_events();
        self.sync_store();
        // A peer the manager stopped wanting (a ban, a disconnect, a redial given up on) is
        // no longer the application's ask.
        let (manager, ids) = (&self.manager, &self.ids);
        self.dialed
            .retain(|p| manager.peer_info(&ids[*p]).is_some_and(|i| i.wanted));
    }

    /// The step's events as a whole: a ban the application placed reported once, the
    /// reported bans those in force, every connection that came up alone reported kept.
    fn check_events(&mut self) {
        if let Some(target) = self.placed.take() {
            let reported = self.step_bans.iter().filter(|t| **t == target).count();
            assert_eq!(reported, 1, "ban of {target} reported {reported} times");
        }
        // A ban that ran out this instant is reported gone at the next timeout.
        let now = self.now;
        let mut reported: Vec<Ban> = self
            .reported_bans
            .iter()
            .filter(|(_, until)| until.is_none_or(|until| now < until))
            .map(|(target, until)| Ban {
                target: *target,
                until: *until,
            })
            .collect();
        reported.sort_by_key(|ban| ban.target);
        let mut bans = self.manager.bans(self.now);
        bans.sort_by_key(|ban| ban.target);
        assert_eq!(
            reported, bans,
            "the ban events disagree with the bans in force"
        );
        for id in std::mem::take(&mut self.expect_kept) {
            assert!(
                self.kept.contains(&id),
                "{id} came up as the only connection to its peer and was not reported kept"
            );
        }
    }

    /// Hands the journal to the mirror store, which must then agree with the manager on
    /// bans and on the application's wanted peers.
    fn sync_store(&mut self) {
        let changes = self.manager.take_changes();
        self.store.apply(changes);
        if self.terminated {
            // Shutdown freezes the journal, so that its own ending of every want is not
            // stored: the store keeps what held before it.
            return;
        }
        let mut bans = self.manager.bans(self.now);
        bans.retain(|ban| !self.automatic.contains(&ban.target));
        bans.sort_by_key(|ban| ban.target);
        assert_eq!(
            bans,
            self.store.bans_in_force(self.now),
            "stored bans drifted"
        );
        // Only the application's own wants are stored: not discovery's, not hearsay's.
        for peer in &self.ids {
            let wanted = self
                .manager
                .peer_info(peer)
                .is_some_and(|i| i.wanted && !i.discovered);
            let stored = self.store.peers.get(peer).is_some_and(|p| p.wanted);
            assert_eq!(wanted, stored, "stored want of {peer} drifted");
        }
    }

    /// The process dies and a new manager is restored from the mirror store: bans in force
    /// and the application's wanted peers carry over.
    fn restart(&mut self) {
        // What the store holds (the manager's own state, checked after every step, up to a
        // shutdown): bans in force and the application's wants carry over; discovery and
        // hearsay find theirs again.
        let bans = self.store.bans_in_force(self.now);
        let wanted: Vec<PeerId> = self
            .ids
            .iter()
            .filter(|p| self.store.peers.get(p).is_some_and(|p| p.wanted))
            .copied()
            .collect();
        // The swarm's connections vanish with the process, unreported.
        self.pending.clear();
        self.established.clear();
        self.closing.clear();
        self.goodbye_sent.clear();
        self.goodbyes.clear();
        self.close_requested.clear();
        self.recently_closed.clear();
        self.awaiting_disconnect.clear();
        self.expect_kept.clear();
        self.terminated = false;
        self.limits = self.setup.limits.clone();
        self.ip_table_bound = self.setup.limits.max_tracked_ips;
        self.allowed = self.setup.allowed.iter().copied().collect();
        self.manager = Manager::new(self.ids[self.local], self.setup.config.clone(), self.now, 2);
        let stored: Vec<Ban> = self
            .store
            .bans
            .iter()
            .map(|(target, until)| Ban {
                target: *target,
                until: *until,
            })
            .collect();
        let peers = self
            .store
            .peers
            .iter()
            .map(|(peer, durable)| (*peer, durable.clone()))
            .collect();
        let summary = self.manager.restore(self.now, stored, peers);
        self.manager.track_changes(true);
        self.gave_up.clear();
        self.automatic.clear();
        self.drain();
        // The new manager reports its bans in the `Restored` summary, not one by one.
        self.reported_bans = self
            .manager
            .bans(self.now)
            .into_iter()
            .map(|ban| (ban.target, ban.until))
            .collect();
        assert_eq!(summary.bans, bans.len());
        let mut restored = self.manager.bans(self.now);
        restored.sort_by_key(|ban| ban.target);
        assert_eq!(restored, bans, "bans lost in the restart");
        for (index, peer) in self.ids.iter().enumerate() {
            // A restored peer is dialed by the redial policy, which may give up on it at once
            // (`max_redial_attempts` 0).
            let before = wanted.contains(peer) && !self.gave_up.contains(peer);
            let after = self.manager.peer_info(peer).is_some_and(|i| i.wanted);
            assert_eq!(
                before,
                after,
                "the want of peer {index} changed in the restart (bootstrap: {}): {:?}",
                self.bootstrap.contains(&index),
                self.manager.peer_info(peer)
            );
        }
        // The store keeps that a peer is wanted, not who asked: restored peers are the
        // application's.
        self.dialed = (0..self.ids.len())
            .filter(|p| wanted.contains(&self.ids[*p]))
            .collect();
    }

    /// An inbound circuit through relay `relay`: counted against the relay, never an IP.
    fn relayed_inbound(&mut self, relay: u8) {
        let id = self.id();
        let relay_id = self.ids[(self.local + 1 + usize::from(relay)) % self.ids.len()];
        let address = addr(&format!(
            "/ip4/10.0.9.{relay}/tcp/4001/p2p/{relay_id}/p2p-circuit"
        ));
        let pending_in = self.pending.iter().filter(|c| !c.outbound).count() as u32;
        let through = self
            .pending
            .iter()
            .chain(self.established.iter())
            .filter(|c| c.counted_relay == Some(relay))
            .count() as u32;
        match self
            .manager
            .on_pending_inbound_via(self.now, id, Some(&address), &address)
        {
            Ok(()) => {
                assert!(
                    !self.terminated,
                    "an inbound connection let in after shutdown"
                );
                if let Some(limit) = self.limits.pending_in {
                    assert!(pending_in < limit, "pending-inbound limit exceeded");
                }
                if let Some(limit) = self.limits.per_relay {
                    assert!(through < limit, "per-relay limit exceeded");
                }
                self.pending.push(Conn {
                    id,
                    peer: None,
                    outbound: false,
                    addrs: vec![address],
                    addr: None,
                    relayed: true,
                    counted_ip: None,
                    counted_relay: Some(relay),
                    timed_out: false,
                    refused: false,
                });
            }
            Err(_) => self.manager.on_listen_failure(id),
        }
    }

    /// The swarm carries out every goodbye and close the manager asked for and it held back.
    fn catch_up(&mut self) {
        for _ in 0..100 {
            if self.goodbyes.is_empty() && self.close_requested.is_empty() {
                return;
            }
            for connection in std::mem::take(&mut self.goodbyes) {
                self.manager.on_goodbye_finished(connection);
                self.drain();
            }
            for connection in std::mem::take(&mut self.close_requested) {
                self.close(connection, CloseCause::Local);
                self.drain();
            }
        }
        panic!("goodbyes and closes never end");
    }

    /// Nothing new gets established for a while: once no connection is pending, every
    /// goodbye and close has been carried out and time has run past the duplicate grace and
    /// the drain of young losing duplicates (one second), each peer has at most one
    /// connection, as the swarm counts them.
    fn quiesce(&mut self) {
        while let Some(conn) = self.pending.pop() {
            self.fail_pending(conn, FailKind::Transport);
        }
        self.drain();
        self.catch_up();
        // Redials the failures planned may come due in the jump: they stay pending.
        let jump =
            self.setup.duplicate_grace.max(Duration::from_secs(1)) + Duration::from_millis(1);
        self.advance(jump, true, true);
        self.catch_up();
        let mut per_peer: HashMap<usize, Vec<ConnectionId>> = HashMap::new();
        for conn in &self.established {
            per_peer
                .entry(conn.peer.expect("established"))
                .or_default()
                .push(conn.id);
        }
        for (peer, connections) in per_peer {
            assert!(
                connections.len() <= 1,
                "peer {peer} still has connections {connections:?} after quiescing"
            );
        }
    }

    fn apply(&mut self, step: &Step) {
        match step {
            &Step::Inbound { addr } => {
                let id = self.id();
                let address = inbound_addr(addr);
                let ip = ip_of(&address).expect("inbound addresses have an IP");
                let pending_in = self.pending.iter().filter(|c| !c.outbound).count() as u32;
                let key = ip_key(ip);
                let from_ip = self
                    .pending
                    .iter()
                    .chain(self.established.iter())
                    .filter(|c| c.counted_ip == Some(key))
                    .count() as u32;
                match self.manager.on_pending_inbound(self.now, id, &address) {
                    Ok(()) => {
                        assert!(
                            !self.terminated,
                            "an inbound connection let in after shutdown"
                        );
                        assert!(
                            !self.manager.is_ip_banned(ip, self.now),
                            "a banned address was let in"
                        );
                        if let Some(limit) = self.limits.pending_in {
                            assert!(pending_in < limit, "pending-inbound limit exceeded");
                        }
                        let counted = self.limits.per_ip_applies(ip);
                        if let (true, Some(limit)) = (counted, self.limits.per_ip) {
                            assert!(from_ip < limit, "per-IP limit exceeded");
                        }
                        self.pending.push(Conn {
                            id,
                            peer: None,
                            outbound: false,
                            addrs: vec![address],
                            addr: None,
                            relayed: false,
                            counted_ip: counted.then_some(key),
                            counted_relay: None,
                            timed_out: false,
                            refused: false,
                        });
                    }
                    // The swarm reports a refused inbound connection as a listen failure.
                    Err(_) => self.manager.on_listen_failure(id),
                }
            }
            Step::SwarmDial { peer, addrs } => {
                let addresses = self.dial_addrs(addrs);
                if peer.is_none() && addresses.is_empty() {
                    return;
                }
                self.outbound(*peer, addresses);
            }
            &Step::SwarmRefusesDial { peer } => {
                let id = self.id();
                self.manager.on_dial_failure(
                    self.now,
                    id,
                    Some(self.ids[peer]),
                    DialFailureCause::ConditionFalse,
                );
            }
            &Step::Establish {
                pick,
                peer,
                hole_punched,
                other_denies,
                relayed,
            } => self.establish(pick, peer, hole_punched, other_denies, relayed),
            &Step::Fail { pick, kind } => {
                if self.pending.is_empty() {
                    return;
                }
                let conn = self.pending.swap_remove(pick % self.pending.len());
                let kind = match (kind, conn.peer) {
                    (FailKind::WrongPeerId, None) => FailKind::Transport,
                    (kind, _) => kind,
                };
                self.fail_pending(conn, kind);
            }
            Step::UserDial { peer, addrs } => {
                let addresses = self.dial_addrs(addrs);
                if self
                    .manager
                    .add_peer(self.now, self.ids[*peer], addresses)
                    .is_ok()
                {
                    self.dialed.insert(*peer);
                }
            }
            &Step::Close { pick, cause } => {
                if self.established.is_empty() {
                    return;
                }
                // The swarm's idle timeout closes only connections nobody keeps alive.
                let cause = match cause {
                    CloseCause::Idle if self.keep_alive => CloseCause::Transport,
                    cause => cause,
                };
                let id = self.established[pick % self.established.len()].id;
                self.close(id, cause);
            }
            &Step::CompleteClose { pick } => {
                if self.close_requested.is_empty() {
                    return;
                }
                let id = self.close_requested[pick % self.close_requested.len()];
                self.close(id, CloseCause::Local);
            }
            &Step::GoodbyeDone { pick } => {
                if self.goodbyes.is_empty() {
                    return;
                }
                let id = self.goodbyes.swap_remove(pick % self.goodbyes.len());
                self.manager.on_goodbye_finished(id);
            }
            &Step::RemoteGoodbye {
                pick,
                reason,
                retry_after,
            } => {
                if self.established.is_empty() {
                    return;
                }
                let id = self.established[pick % self.established.len()].id;
                self.manager.on_goodbye_received(
                    self.now,
                    id,
                    DisconnectReason::from_code(reason),
                    retry_after,
                );
            }
            &Step::Ping { pick, ok, rtt } => {
                if self.established.is_empty() {
                    return;
                }
                let id = self.established[pick % self.established.len()].id;
                if ok {
                    self.manager.on_ping_success(self.now, id, rtt);
                } else {
                    self.manager.on_ping_failure(self.now, id);
                }
            }
            &Step::PingUnsupported { pick } => {
                if self.established.is_empty() {
                    return;
                }
                let id = self.established[pick % self.established.len()].id;
                self.manager.on_ping_unsupported(id);
            }
            &Step::Bandwidth { pick, rate } => {
                if self.established.is_empty() {
                    return;
                }
                let id = self.established[pick % self.established.len()].id;
                self.manager.on_bandwidth(self.now, id, rate);
            }
            &Step::StalePing { pick, ok } => {
                if self.recently_closed.is_empty() {
                    return;
                }
                let id = self.recently_closed[pick % self.recently_closed.len()];
                if ok {
                    self.manager
                        .on_ping_success(self.now, id, Duration::from_millis(20));
                } else {
                    self.manager.on_ping_failure(self.now, id);
                }
            }
            &Step::Violation { pick } => {
                if self.established.is_empty() {
                    return;
                }
                let conn = &self.established[pick % self.established.len()];
                let peer = self.ids[conn.peer.expect("established")];
                let id = conn.id;
                self.manager.on_protocol_violation(self.now, peer, id);
            }
            Step::PeersReceived { pick, peers } => {
                // Only a peer exchange handler on a live connection delivers a list.
                if !self.exchange || self.established.is_empty() {
                    return;
                }
                let conn = &self.established[pick % self.established.len()];
                let from = self.ids[conn.peer.expect("established")];
                let list: Vec<(PeerId, Vec<Multiaddr>)> = peers
                    .iter()
                    .map(|(p, a)| (self.ids[*p], self.dial_addrs(a)))
                    .collect();
                for (p, a) in peers {
                    self.heard
                        .extend(self.dial_addrs(a).into_iter().map(|a| (*p, a)));
                }
                let before: Vec<(usize, Vec<Multiaddr>)> = (0..self.ids.len())
                    .filter_map(|p| Some((p, self.manager.peer_info(&self.ids[p])?.addresses)))
                    .collect();
                self.manager.on_peers_received(self.now, from, list);
                // No hearsay address displaces a proven (or given) one.
                for (p, addresses) in before {
                    let after = self
                        .manager
                        .peer_info(&self.ids[p])
                        .map(|i| i.addresses)
                        .unwrap_or_default();
                    for gone in addresses.iter().filter(|a| !after.contains(a)) {
                        assert!(
                            self.heard.contains(&(p, gone.clone())),
                            "hearsay displaced the proven address {gone}"
                        );
                    }
                }
            }
            &Step::Ban { peer, duration } => {
                self.manager.ban_peer(self.now, self.ids[peer], duration);
            }
            &Step::BanNetwork { net, duration } => {
                self.manager.ban_network(self.now, network(net), duration);
            }
            &Step::UnbanPeer { peer } => {
                self.manager
                    .unban(self.now, BanTarget::Peer(self.ids[peer]));
            }
            &Step::UnbanNetwork { net } => {
                self.manager
                    .unban(self.now, BanTarget::Network(network(net)));
            }
            &Step::Disconnect { peer } => {
                self.manager.remove_peer(self.now, self.ids[peer]);
            }
            Step::Discover { peer, addrs } => {
                let addresses = self.dial_addrs(addrs);
                let _ = self
                    .manager
                    .add_discovered(self.now, self.ids[*peer], addresses);
            }
            &Step::Undiscover { peer } => self.manager.remove_discovered(self.ids[peer]),
            &Step::Forget { peer } => {
                self.manager.forget(self.ids[peer]);
            }
            &Step::AddAddress { peer, addr } => {
                self.remembered.insert(peer);
                let address = dial_addr(addr, &self.relay());
                self.manager.add_address(self.ids[peer], address);
            }
            &Step::PeerAddress { peer, addr } => {
                self.remembered.insert(peer);
                let address = dial_addr(addr, &self.relay());
                self.heard.insert((peer, address.clone()));
                self.manager
                    .on_peer_address(self.now, self.ids[peer], address);
            }
            &Step::Allow { peer, allow } => {
                if allow {
                    self.allowed.insert(peer);
                    self.manager.exempt_peer(self.ids[peer]);
                } else {
                    self.allowed.remove(&peer);
                    self.manager.remove_exemption(&self.ids[peer]);
                }
            }
            &Step::Tags { peer, tag, op } => {
                let peer_id = self.ids[peer];
                let tag = ["a", "b"][tag as usize];
                match op {
                    TagOp::Protect => self.manager.protect(peer_id, tag),
                    TagOp::Unprotect => {
                        self.manager.unprotect(&peer_id, tag);
                    }
                    TagOp::Tag(value) => self.manager.tag_peer(peer_id, tag, value),
                    TagOp::Untag => self.manager.untag_peer(&peer_id, tag),
                    TagOp::ForceTrim => {
                        self.manager.force_trim(self.now);
                    }
                }
            }
            Step::SetLimits(spec) => {
                // What the byte format does not carry stays as set up.
                let mut spec = spec.clone();
                spec.per_relay = self.setup.limits.per_relay;
                spec.nested_ipv6 = self.setup.limits.nested_ipv6;
                self.limits = spec.clone();
                self.ip_table_bound = self.ip_table_bound.max(spec.max_tracked_ips);
                self.manager.set_limits(self.now, spec.limits());
            }
            &Step::Advance {
                by,
                stepwise,
                catch_up,
            } => self.advance(by, stepwise, catch_up),
            Step::Shutdown => {
                self.terminated = true;
                self.manager.shutdown(self.now);
            }
            &Step::RelayedInbound { relay } => self.relayed_inbound(relay),
            Step::Restart => self.restart(),
            Step::Quiesce => self.quiesce(),
        }
        self.drain();
    }

    /// Invariants that hold after every step.
    fn check(&self) {
        let m = &self.manager;
        assert_eq!(m.queued_actions(), 0);
        assert!(
            self.awaiting_disconnect.is_empty(),
            "a counted connection closed without a disconnected event"
        );
        assert_eq!(
            m.established_connections(),
            self.live().count(),
            "established count drifted"
        );
        assert_eq!(
            m.pending_connections(),
            self.pending.iter().filter(|c| !c.timed_out).count(),
            "pending count drifted"
        );
        let mut per_peer: HashMap<usize, Vec<ConnectionId>> = HashMap::new();
        for conn in self.live() {
            per_peer
                .entry(conn.peer.expect("established"))
                .or_default()
                .push(conn.id);
        }
        assert_eq!(
            m.connected_peers().count(),
            per_peer.len(),
            "connected peers drifted"
        );
        for (index, peer) in self.ids.iter().enumerate() {
            let mut model = per_peer.get(&index).cloned().unwrap_or_default();
            let info = m.peer_info(peer);
            let mut known: Vec<ConnectionId> = info
                .as_ref()
                .map(|i| i.connections.iter().map(|c| c.id).collect())
                .unwrap_or_default();
            model.sort();
            known.sort();
            assert_eq!(known, model, "connections of a peer drifted");
            assert!(
                model.len() as u32 <= self.max_per_peer,
                "per-peer cap exceeded"
            );
            let open = model.iter().any(|id| !self.closing.contains(id));
            assert_eq!(m.is_connected(peer), open, "is_connected drifted");
            if open {
                assert!(
                    !m.is_peer_banned(peer, self.now),
                    "a banned peer stays connected"
                );
            }
            if index == self.local {
                assert!(info.is_none(), "the manager tracks the local peer");
            }
        }
        for conn in self.live().filter(|c| !self.closing.contains(&c.id)) {
            if let Some(ip) = conn.addr.as_ref().and_then(ip_of) {
                assert!(
                    !m.is_ip_banned(ip, self.now),
                    "a connection from a banned network stays open"
                );
            }
        }
        assert!(
            m.tracked_ips() <= self.ip_table_bound,
            "per-IP table over its bound"
        );
        let caps = m.config().automatic_bans();
        assert!(
            m.automatic_peer_bans() <= caps.max_peer_bans()
                && m.automatic_network_bans() <= caps.max_network_bans(),
            "bans bounded: automatic bans <= cap"
        );
        let hearsay = m.hearsay_stats();
        assert!(
            hearsay.peers <= MAX_HEARSAY && hearsay.recent_dials <= 1024 && hearsay.quiet <= 1024,
            "hearsay state bounded: {hearsay:?}"
        );
        if self.terminated {
            assert_eq!(m.phase(), Phase::Terminated);
        } else {
            assert_ne!(m.phase(), Phase::Terminated);
            assert_eq!(
                m.phase() == Phase::Connected,
                !per_peer.is_empty(),
                "phase disagrees with the connections"
            );
        }
        // Timers are bounded by what exists: per connection (grace, goodbye, inactivity,
        // critical), per pending dial, per peer (redial), per ban, bootstrap, trim, exchange.
        let bound = 4 * self.established.len()
            + self.pending.len()
            + self.ids.len()
            + m.bans(self.now).len()
            + 3
            // Slack, as in tests/model.rs (e.g. a ban ending now whose timer has not run yet).
            + 8;
        assert!(
            m.scheduled_timers() <= bound,
            "timers leak: {} > {}",
            m.scheduled_timers(),
            bound
        );
    }

    /// Tears everything down and lets time run: only wanted peers may remain tracked.
    pub fn settle(&mut self) {
        self.wanted_before = self
            .ids
            .iter()
            .filter(|p| self.manager.peer_info(p).is_some_and(|i| i.wanted))
            .copied()
            .collect();
        self.step_bans.clear();
        self.quiesce();
        self.check();
        self.check_events();
        // Ten hours: every ban of the fuzzed lengths ends, every rescue dial (at most 3) is spent.
        for _ in 0..10 {
            self.goodbyes.clear();
            self.close_requested.clear();
            while let Some(conn) = self.established.last() {
                let id = conn.id;
                self.close(id, CloseCause::Transport);
            }
            while let Some(conn) = self.pending.pop() {
                self.fail_pending(conn, FailKind::Transport);
            }
            self.drain();
            if trace() {
                eprintln!("settle: an hour passes");
            }
            self.now += Duration::from_secs(3600);
            self.manager.handle_timeout(self.now);
            self.drain();
            self.check();
        }
        let mut wanted = HashSet::new();
        for (index, peer) in self.ids.iter().enumerate() {
            if let Some(info) = self.manager.peer_info(peer) {
                if info.wanted {
                    wanted.insert(index);
                }
                // The seed `corpus/core_ops/regression-revive-stranded-gave-up` once found a
                // peer given up on at the end of a ban and never forgotten.
                assert!(
                    info.wanted
                        || self.remembered.contains(&index)
                        || self.bootstrap.contains(&index),
                    "state left for a peer nobody wants: {info:?}"
                );
            }
        }
        assert_eq!(self.manager.established_connections(), 0);
        // What may still be going on: dials of wanted peers and bootstrap rounds, their
        // deadlines, redials, bans not run out.
        for conn in self.pending.iter().filter(|c| !c.timed_out) {
            let peer = conn.peer.expect("the manager dials peers by id");
            assert!(
                wanted.contains(&peer) || self.bootstrap.contains(&peer),
                "a dial left to a peer nobody wants"
            );
        }
        let bound = self.pending.len()
            + wanted.len()
            + self.bootstrap.len()
            + self.manager.bans(self.now).len()
            + 3;
        assert!(
            self.manager.scheduled_timers() <= bound,
            "timers left behind: {} > {bound}",
            self.manager.scheduled_timers()
        );
        self.check_events();
        self.sync_store();
    }
}

/// Decodes a setup and up to 300 operations from `data` (until the bytes run out), runs them,
/// and settles: the fuzz target's whole run. Panics on any broken invariant.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::decode(&mut u) else {
        return;
    };
    let mut world = World::new(&setup);
    for _ in 0..MAX_OPS {
        if u.is_empty() {
            break;
        }
        let Ok(op) = Op::decode(&mut u) else {
            break;
        };
        world.step(&op);
    }
    world.settle();
}
