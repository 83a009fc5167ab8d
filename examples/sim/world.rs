//! The simulated world: nodes running the crate's `Manager`, links between them, a clock and
//! an event queue. What a node's actions do to the others is in `driver.rs`.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    net::Ipv4Addr,
    time::Duration,
};

use libp2p_connection_manager::core::{Config, DisconnectReason, Manager, PeerList};
use libp2p_core::{multiaddr::Protocol, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;
use rand::{rngs::StdRng, Rng, SeedableRng};
use web_time::Instant;

use crate::{
    diag::Diag,
    metrics::Metrics,
    net::{Host, Net, NetParams},
};

/// One simulated node.
pub struct Node {
    pub peer: PeerId,
    pub addr: Multiaddr,
    pub manager: Manager,
    /// The peers the application asked for (indices).
    pub wanted: Vec<usize>,
    /// When a `Wake` for this node is queued, the earliest one.
    pub wake: Option<Instant>,
}

/// One end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    pub node: usize,
    pub conn: ConnectionId,
    pub open: bool,
}

/// A connection between two nodes; `sides[0]` dialed.
#[derive(Debug)]
pub struct Link {
    pub sides: [Side; 2],
    /// When either side last opened or closed (for the settled invariants).
    pub changed: Instant,
}

/// Something that happens at a simulated time.
#[derive(Debug)]
pub enum Ev {
    /// A node's manager has a deadline due.
    Wake(usize),
    /// A dial's first packet reaches the listener.
    DialArrive(u64),
    /// The handshake of a dial completes on both sides.
    Handshake(u64),
    /// A dial fails at the dialer.
    DialFail { link: u64, refused: bool },
    /// A goodbye reaches side `to` of a link.
    Goodbye {
        link: u64,
        to: usize,
        reason: DisconnectReason,
        retry: Option<Duration>,
    },
    /// The goodbye sent on side `from` was acknowledged or timed out.
    GoodbyeDone { link: u64, from: usize },
    /// Side `to` learns that the other side closed.
    Closed { link: u64, to: usize },
    /// Side `from` pings.
    Ping { link: u64, from: usize },
    /// A ping's answer (or its timeout) at side `from`.
    PingResult {
        link: u64,
        from: usize,
        rtt: Option<Duration>,
    },
    /// A peer-exchange list reaches side `to`.
    Peers {
        link: u64,
        to: usize,
        list: PeerList,
    },
}

/// A queued event, ordered by time, then by the order it was queued in (determinism).
#[derive(Debug)]
struct Queued {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The whole simulation.
pub struct World {
    pub start: Instant,
    pub now: Instant,
    pub nodes: Vec<Node>,
    pub index: HashMap<PeerId, usize>,
    pub links: HashMap<u64, Link>,
    /// The link of every connection id handed to a manager.
    pub conns: HashMap<ConnectionId, u64>,
    pub net: Net,
    pub bootstrap: Vec<usize>,
    pub rng: StdRng,
    pub metrics: Metrics,
    /// Diagnostics of the peer-exchange scenario (`--diagnose`).
    pub diag: Diag,
    /// Replace a wanted peer the manager gave up on with another random one.
    pub replace_on_give_up: bool,
    queue: BinaryHeap<Reverse<Queued>>,
    seq: u64,
    next_conn: usize,
    next_link: u64,
    pub events_run: u64,
}

impl World {
    /// `n` nodes on distinct IPv4 addresses; nothing started yet (see `start_node`).
    pub fn new(n: usize, seed: u64, params: NetParams) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let start = Instant::now();
        let peers: Vec<PeerId> = (0..n).map(|_| seeded_peer(&mut rng)).collect();
        let net = Net::new(params, n, seed, &mut rng);
        let nodes = peers
            .iter()
            .enumerate()
            .map(|(i, peer)| Node {
                peer: *peer,
                addr: address_of(i),
                manager: Manager::new(*peer, Config::new(), start, 0),
                wanted: Vec::new(),
                wake: None,
            })
            .collect();
        Self {
            start,
            now: start,
            index: peers.iter().enumerate().map(|(i, p)| (*p, i)).collect(),
            nodes,
            links: HashMap::new(),
            conns: HashMap::new(),
            net,
            bootstrap: Vec::new(),
            rng,
            metrics: Metrics::new(n),
            diag: Diag::new(n),
            replace_on_give_up: false,
            queue: BinaryHeap::new(),
            seq: 0,
            next_conn: 0,
            next_link: 0,
            events_run: 0,
        }
    }

    /// Seconds since the start.
    pub fn secs(&self) -> f64 {
        (self.now - self.start).as_secs_f64()
    }

    /// (Re)starts node `i` with a fresh manager: its connections are gone.
    pub fn start_node(&mut self, i: usize, config: Config) {
        self.drop_links_of(i, true);
        let seed = self.rng.gen();
        self.nodes[i].manager = Manager::new(self.nodes[i].peer, config, self.now, seed);
        self.nodes[i].wake = None;
        self.net.hosts[i] = Host::Up;
        self.run_node(i);
    }

    /// Node `i` dies silently: its peers find out by their pings.
    pub fn kill(&mut self, i: usize) {
        self.net.hosts[i] = Host::Dead;
        self.drop_links_of(i, false);
    }

    /// Forgets node `i`'s side of every link; with `reset`, the remotes hear of it.
    fn drop_links_of(&mut self, i: usize, reset: bool) {
        let mut ids: Vec<u64> = self
            .links
            .iter()
            .filter(|(_, l)| l.sides.iter().any(|s| s.node == i))
            .map(|(id, _)| *id)
            .collect();
        // In link order, not the map's: a run of a seed must repeat itself.
        ids.sort_unstable();
        for id in ids {
            let Some(link) = self.links.get_mut(&id) else {
                continue;
            };
            let mine = if link.sides[0].node == i { 0 } else { 1 };
            link.sides[mine].open = false;
            self.conns.remove(&link.sides[mine].conn);
            let other = link.sides[1 - mine];
            if other.open && reset {
                let at = self.now + self.net.latency(i, other.node);
                self.push(
                    at,
                    Ev::Closed {
                        link: id,
                        to: 1 - mine,
                    },
                );
            }
            if !other.open {
                self.forget_link(id);
            }
            if mine == 1 && !other.open {
                // A dial to this node in flight: the dialer hears a refusal (restart) or nothing
                // until its connect timeout (death).
                let (dialer, target) = (other, i);
                let delay = if reset {
                    self.net.rtt(dialer.node, target)
                } else {
                    self.net.params.connect_timeout
                };
                let conn = self.new_conn();
                let again = self.new_link(Link {
                    sides: [
                        dialer,
                        Side {
                            node: target,
                            conn,
                            open: false,
                        },
                    ],
                    changed: self.now,
                });
                self.push(
                    self.now + delay,
                    Ev::DialFail {
                        link: again,
                        refused: reset,
                    },
                );
            }
        }
    }

    /// The application asks node `i` for `peer` (by index) at its address.
    pub fn add_peer(&mut self, i: usize, peer: usize) {
        let (id, addr) = (self.nodes[peer].peer, self.nodes[peer].addr.clone());
        if !self.nodes[i].wanted.contains(&peer) {
            self.nodes[i].wanted.push(peer);
        }
        // Refused only for ourselves or a banned peer, which the scenarios never ask for.
        let _ = self.nodes[i].manager.add_peer(self.now, id, vec![addr]);
        self.run_node(i);
    }

    pub fn new_conn(&mut self) -> ConnectionId {
        self.next_conn += 1;
        ConnectionId::new_unchecked(self.next_conn)
    }

    pub fn new_link(&mut self, link: Link) -> u64 {
        self.next_link += 1;
        for side in &link.sides {
            self.conns.insert(side.conn, self.next_link);
        }
        self.links.insert(self.next_link, link);
        self.next_link
    }

    pub fn forget_link(&mut self, id: u64) {
        if let Some(link) = self.links.remove(&id) {
            for side in link.sides {
                self.conns.remove(&side.conn);
            }
        }
    }

    pub fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at,
            seq: self.seq,
            ev,
        }));
    }

    /// Queues a wake for node `i` if its manager's next deadline is earlier than the one queued.
    pub fn schedule_wake(&mut self, i: usize) {
        let Some(due) = self.nodes[i].manager.poll_timeout() else {
            return;
        };
        let due = due.max(self.now);
        if self.nodes[i].wake.is_some_and(|w| w <= due) {
            return;
        }
        self.nodes[i].wake = Some(due);
        self.push(due, Ev::Wake(i));
    }

    /// Runs every event up to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while self.queue.peek().is_some_and(|q| q.0.at <= until) {
            let Some(Reverse(Queued { at, ev, .. })) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.events_run += 1;
            self.handle(ev);
        }
        self.now = until;
    }

    /// Runs for `secs`, calling `sample` at every whole second.
    pub fn run_for(&mut self, secs: u64, mut sample: impl FnMut(&mut World)) {
        for _ in 0..secs {
            let next = self.now + Duration::from_secs(1);
            self.run_until(next);
            sample(self);
        }
    }

    /// Share of all nodes that are running and have all their wanted peers connected.
    pub fn satisfied_share(&self) -> f64 {
        let ok = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, node)| {
                self.net.hosts[*i] == Host::Up
                    && node
                        .wanted
                        .iter()
                        .all(|w| node.manager.is_connected(&self.nodes[*w].peer))
            })
            .count();
        ok as f64 / self.nodes.len().max(1) as f64
    }
}

/// A reproducible peer id: a SHA-256 multihash of seeded bytes (nothing signs in the simulation).
fn seeded_peer(rng: &mut StdRng) -> PeerId {
    let mut bytes = vec![0x12, 0x20];
    bytes.extend((0..32).map(|_| rng.gen::<u8>()));
    PeerId::from_bytes(&bytes).expect("a well-formed sha2-256 multihash")
}

/// Node `i`'s address: one host per node in 10.0.0.0/8, so the per-IP limits apply per node.
/// The peer-exchange scenario uses [`public_address_of`] instead.
pub fn address_of(i: usize) -> Multiaddr {
    let ip = Ipv4Addr::from(0x0a00_0001u32 + i as u32);
    Multiaddr::empty()
        .with(Protocol::Ip4(ip))
        .with(Protocol::Tcp(4001))
}

/// Node `i`'s public address, one per /24 in 11.0.0.0/8 and up (the peer-exchange scenario: a
/// node passes on public addresses to anyone, private ones only to peers on a private network,
/// and the per-/24 bounds of hearsay count one node per /24).
pub fn public_address_of(i: usize) -> Multiaddr {
    let ip = Ipv4Addr::from(0x0b00_0001u32 + ((i as u32) << 8));
    Multiaddr::empty()
        .with(Protocol::Ip4(ip))
        .with(Protocol::Tcp(4001))
}
