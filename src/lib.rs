//! A connection manager for rust-libp2p.
//!
//! [`Behaviour`] is a [`NetworkBehaviour`](libp2p_swarm::NetworkBehaviour) that you compose into
//! your own `#[derive(NetworkBehaviour)]` struct. It manages every connection of the swarm,
//! whoever dialed it (its own [`Behaviour::add_peer`], `Swarm::dial`, or another behaviour):
//!
//! - **Exactly one connection per peer**, also when two peers dial each other at the same
//!   moment. Both sides reach the same verdict without talking: between connections dialed in
//!   opposite directions, the one dialed by the smaller [`PeerId`](libp2p_identity::PeerId)
//!   survives; between two dialed by the same side, that side keeps the older. A loser that just
//!   came up drains for a second before it is closed, so that what the remote started on it
//!   finishes. Self-connections are refused, and a hard per-peer cap bounds what a remote can
//!   open. The verdict ignores the transport (TCP, QUIC, WebSocket alike): a preference set on
//!   one side only would make the two sides close different connections.
//! - **Goodbye with a reason**: before the manager closes a connection it tells the remote why
//!   ([`DisconnectReason`]), so the remote knows whether to come back and when.
//! - **Redial by reason**, by the side that initiated the lost connection only: prompt after a
//!   lost tie-break or a remote's goodbye `Normal`, exponential backoff with jitter after
//!   timeouts, longer ones after a remote hung up without a goodbye or broke a protocol, never
//!   after a ban or a local `disconnect`.
//! - **Kept alive for a reason only**: peers the application keeps, protects or exempts
//!   (and bootstrap peers) are held open; every other connection idles out on the swarm's idle
//!   timeout as it would without the manager. Trimming above bounded default watermarks
//!   (160/192) keeps the peers that matter and resists bursts of new peers.
//! - **Limits** on pending and established connections (inbound, outbound, total), per remote
//!   IP (concurrent and a token-bucket rate, nested for IPv6: per /64, /56 and /48) and per
//!   relay for inbound circuits, each checked at the earliest stage that knows the
//!   fact: IP checks before any handshake work, peer checks once the peer id is known. An allow
//!   list bypasses them. See [`Limits`].
//! - **Expiring bans** of peers and IP networks ([`Behaviour::ban_peer`],
//!   [`Behaviour::ban_network`]): a banned peer's connections get goodbye `Banned` and close, and
//!   it is refused from any address; a banned network is refused before the handshake (a single
//!   IPv6 address stands for its /64). Repeated
//!   protocol violations escalate to a ban, of the peer or of its /24 or /64; such automatic
//!   bans are capped and kept in memory only ([`AutomaticBans`]).
//! - **Liveness** with libp2p-ping, run inside the behaviour (nothing to wire): the RTT of every
//!   connection is kept, and a connection on which no ping succeeded within the inactivity
//!   timeout is closed with reason `Timeout` (then redialed by its initiator).
//! - A node-level [`Phase`] with bootstrap peers, re-bootstrapping when every connection is lost.
//! - A **peer store** that survives restarts ([`Behaviour::with_store`], [`store`]): bans, wanted
//!   peers, addresses, tags and last disconnects, restored on start and written in batches off
//!   the hot path; in memory, or in a file with the `redb` feature.
//!
//! The policy lives in a sans-IO state machine driven with time as an argument (public with
//! the `testing` feature, for tests, the fuzzer and simulations); [`Behaviour`] only
//! translates between it and the swarm. ARCHITECTURE.md says where each decision lives.
//!
//! # Composing it
//!
//! Put the manager **first** in your struct. Its refusals (self-connections, bans, limits, the
//! per-peer cap) then run before other behaviours spend work on a connection.
//!
//! A complete program: two nodes, the second keeps the first connected, and the event loop
//! prints what the manager does until the connection is kept.
//!
//! ```
//! use std::time::Duration;
//!
//! use futures::StreamExt;
//! use libp2p::{
//!     identify, noise,
//!     swarm::{NetworkBehaviour, SwarmEvent},
//!     tcp, yamux, Swarm,
//! };
//! use libp2p_connection_manager as connection_manager;
//!
//! #[derive(NetworkBehaviour)]
//! struct MyBehaviour {
//!     // First: decides which connections live before the others see them.
//!     connections: connection_manager::Behaviour,
//!     identify: identify::Behaviour,
//! }
//!
//! fn node() -> Result<Swarm<MyBehaviour>, Box<dyn std::error::Error>> {
//!     Ok(libp2p::SwarmBuilder::with_new_identity()
//!         .with_tokio()
//!         .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
//!         .with_behaviour(|key| MyBehaviour {
//!             connections: connection_manager::Behaviour::try_new(
//!                 key.public().to_peer_id(),
//!                 connection_manager::Config::default()
//!                     .with_ping_interval(Duration::from_secs(10)),
//!             )
//!             .expect("a valid configuration"),
//!             identify: identify::Behaviour::new(identify::Config::new(
//!                 "/my-app/1.0.0".into(),
//!                 key.public(),
//!             )),
//!         })?
//!         .build())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut server = node()?;
//! server.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
//! let address = loop {
//!     if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
//!         break address;
//!     }
//! };
//! let server_id = *server.local_peer_id();
//! tokio::spawn(async move { loop { server.select_next_some().await; } });
//!
//! let mut client = node()?;
//! // Keep the server connected: dialed now, redialed by reason whenever it is lost.
//! client.behaviour_mut().connections.add_peer(server_id, vec![address])?;
//! loop {
//!     match client.select_next_some().await {
//!         SwarmEvent::Behaviour(MyBehaviourEvent::Connections(event)) => {
//!             println!("{event}"); // e.g. "kept connection 1 with 12D3KooW... (we dialed)"
//!             if let connection_manager::Event::ConnectionKept { peer, .. } = event {
//!                 assert_eq!(peer, server_id);
//!                 break;
//!             }
//!         }
//!         _ => {}
//!     }
//! }
//! assert_eq!(
//!     client.behaviour().connections.phase(),
//!     connection_manager::Phase::Connected
//! );
//! # Ok(())
//! # }
//! ```
//!
//! # What it changes for the behaviours beside it
//!
//! - They may see a connection established and soon closed: the loser of a duplicate
//!   tie-break, closed with reason [`DisconnectReason::Duplicate`] while the other connection to
//!   the same peer lives on. A peer stays connected throughout.
//! - The connections the manager keeps are kept alive by its handler, so they do not die of the
//!   swarm's idle timeout; closing is the manager's decision (see
//!   [`Config::with_keep_alive`] to leave idle closing to the swarm).
//! - Dials to a peer the manager refused (itself, past the per-peer cap, after `shutdown`) fail
//!   with a [`Denial`] inside `DialError::Denied`, which you can downcast.
//! - Every refusal is a typed [`Denial`] ("pending inbound limit 64 reached (64 now)", "peer
//!   ... is banned for another 41s"), reported as [`Event::Denied`] and inside the swarm's
//!   `ConnectionDenied`; such a connection is never shown to the other behaviours, with one
//!   exception: an incoming connection refused by an established limit is let through to hear
//!   goodbye `ResourceConstraint` with a retry-after (at most 8 at a time), so the behaviours
//!   beside it see it established and closed within the goodbye timeout. A connection refused during its handshake gets no goodbye: it never
//!   reached the point where one can be sent.
//! - It replaces `connection_limits` and `allow_block_list`. Do not add `connection_limits` with
//!   `max_established_per_peer(1)` beside it: a per-peer
//!   limit that refuses the second connection before the tie-break can run is what leaves two
//!   peers dialing each other with no connection at all.
//!
//! # Keeping state across restarts
//!
//! ```
//! use libp2p_connection_manager::{store::MemoryStore, Behaviour, Config, Event};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new(); // or `store::RedbStore::open(path)?` (feature `redb`)
//! let local = libp2p::PeerId::random();
//! let banned = libp2p::PeerId::random();
//!
//! let mut first = Behaviour::new(local, Config::default()).with_store(store.clone())?;
//! first.ban_peer(banned, None);
//! drop(first); // writes what the store has not got yet (so does `flush_store`)
//!
//! // The next run (here the same process; with RedbStore, a new one).
//! let second = Behaviour::new(local, Config::default()).with_store(store)?;
//! assert!(second.is_peer_banned(&banned));
//! # Ok(())
//! # }
//! ```
//!
//! # Feeding it discovery
//!
//! The manager keeps the peers it is told about. Wire your discovery to it in the swarm loop:
//!
//! ```
//! use libp2p::{identify, kad, swarm::{NetworkBehaviour, SwarmEvent}, PeerId, Swarm};
//! use libp2p_connection_manager as connection_manager;
//!
//! #[derive(NetworkBehaviour)]
//! struct MyBehaviour {
//!     connections: connection_manager::Behaviour,
//!     identify: identify::Behaviour,
//!     kad: kad::Behaviour<kad::store::MemoryStore>,
//! }
//!
//! /// The peers this application needs (not the whole routing table).
//! fn wanted(_peer: &PeerId) -> bool {
//!     true
//! }
//!
//! fn on_event(swarm: &mut Swarm<MyBehaviour>, event: SwarmEvent<MyBehaviourEvent>) {
//!     match event {
//!         // Kademlia: keep the peers your application needs.
//!         SwarmEvent::Behaviour(MyBehaviourEvent::Kad(kad::Event::RoutingUpdated {
//!             peer,
//!             addresses,
//!             ..
//!         })) if wanted(&peer) => {
//!             let _ = swarm
//!                 .behaviour_mut()
//!                 .connections
//!                 .add_discovered(peer, addresses.into_vec());
//!         }
//!         // Identify: a peer that stopped speaking our protocol is no longer discovered. Its
//!         // live connection stays; once it is gone and one redial failed, the manager
//!         // forgets the peer and says so with `Event::PeerForgotten`. (mDNS's `Expired` is
//!         // wired the same way, and its `Discovered` like Kademlia's update above.)
//!         SwarmEvent::Behaviour(MyBehaviourEvent::Identify(identify::Event::Received {
//!             peer_id,
//!             info,
//!             ..
//!         })) if !info.protocols.iter().any(|p| p.as_ref() == "/my-app/1.0.0") => {
//!             swarm.behaviour_mut().connections.remove_discovered(peer_id);
//!         }
//!         _ => {}
//!     }
//! }
//! # fn main() {}
//! ```
//!
//! Addresses that identify and Kademlia report through `NewExternalAddrOfPeer` are learned
//! automatically for peers the manager already tracks
//! ([`Config::with_learn_peer_addresses`]); [`Config::with_auto_connect_learned_peers`] also
//! adds peers first heard of that way, up to [`Config::with_max_discovered_peers`].
//!
//! # Events
//!
//! The behaviour emits [`Event`]s: a connection kept, a duplicate closed, a disconnect with its
//! reason and which side ended it, a goodbye received, a dial that failed with its cause, a
//! redial scheduled, a phase change.
#![deny(missing_docs)]

pub mod bandwidth;
mod behaviour;
#[cfg(feature = "testing")]
pub mod core;
mod pacing;
// Without `testing` the core is private, and the parts of its sans-IO API that only tests,
// benches and the fuzzer call look unused; with it (as in CI's all-features lints) they are
// public and checked.
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
mod core;
// The wire protocols and their handlers. Public with `testing` only, for the fuzz targets.
#[cfg(feature = "testing")]
pub mod exchange;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
mod exchange;
// Generated by `pb-rs --dont_use_cow -d src/generated src/generated/<name>.proto` (pb-rs 0.10),
// for the goodbye and peer-exchange wire formats.
#[allow(missing_docs, unreachable_pub, clippy::all)]
mod generated;
#[cfg(feature = "testing")]
pub mod goodbye;
#[cfg(not(feature = "testing"))]
#[allow(dead_code)]
mod goodbye;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use behaviour::Behaviour;
pub use core::{
    AutomaticBans, Backoff, Ban, BanTarget, ClosedBy, Config, ConfigError, ConnectionInfo, Denial,
    DialFailureCause, DisconnectReason, Event, Health, HealthCategory, HealthScoring, Initiator,
    LimitKind, Limits, PeerExchange, PeerInfo, Phase, RateLimit, RestoreSummary, Stats,
};
/// IP networks, as [`Behaviour::ban_network`] and [`Limits`] take them (from the `ipnet` crate).
pub use ipnet::IpNet;
