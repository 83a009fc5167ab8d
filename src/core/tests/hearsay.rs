//! Hearsay is not discovery (issue 18): what a remote says about third parties (peer-exchange
//! lists, learned addresses) is vetted, budgeted and never outranks what the node saw itself or
//! what the application asked for. Each test prints what the attacker spent and what it got.

use libp2p_core::multiaddr::{multihash::Multihash, Protocol};
use quick_protobuf::MessageWrite;

use super::*;
use crate::core::exchange::LISTS_PER_STEP;
use crate::exchange::protocol::{decode_peers_frame, encode_peers, PeerList, MAX_PEERS_FRAME};
use crate::PeerExchange;
use std::collections::HashSet;

fn exchange() -> PeerExchange {
    PeerExchange::new().with_auto_connect(true)
}

fn exchanging() -> Config {
    Config::default()
        .with_inactivity_timeout(None)
        .with_limits(Limits::unlimited())
        .with_peer_exchange(Some(exchange()))
}

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn node(config: Config) -> Node {
    Node::new(PeerId::random(), config, Instant::now())
}

/// An inbound connection from `from` (the remote's address), established.
fn inbound(node: &mut Node, c: usize, peer: PeerId, from: &Multiaddr) {
    node.manager
        .on_pending_inbound(node.now, cid(c), from)
        .unwrap();
    let new = NewConnection::new(Initiator::Remote, Endpoint::Listener, from.clone());
    node.manager
        .check_established(node.now, cid(c), peer, &new)
        .unwrap();
    node.manager.on_established(node.now, cid(c), peer, new);
}

/// A connection this node dialed to `peer` on `to`, established.
fn outbound(node: &mut Node, c: usize, peer: PeerId, to: &Multiaddr) {
    node.manager
        .on_pending_outbound(node.now, cid(c), Some(peer), std::slice::from_ref(to))
        .unwrap();
    let new = NewConnection::new(Initiator::Local, Endpoint::Dialer, to.clone());
    node.manager
        .check_established(node.now, cid(c), peer, &new)
        .unwrap();
    node.manager.on_established(node.now, cid(c), peer, new);
}

fn dials(actions: &[Action]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Dial { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

fn lists(actions: &[Action]) -> Vec<(PeerId, PeerList)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::SendPeers { peer, peers, .. } => Some((*peer, peers.clone())),
            _ => None,
        })
        .collect()
}

/// A WebTransport address with two certificate hashes (about 100 bytes).
fn webtransport(i: u16, port: u16) -> Multiaddr {
    let hash = |salt: u8| Multihash::<64>::wrap(0x12, &[salt; 32]).unwrap();
    Multiaddr::empty()
        .with(Protocol::Ip6(std::net::Ipv6Addr::new(
            0x2001, 0xdb8, i, 0, 0, 0, 0, 1,
        )))
        .with(Protocol::Udp(port))
        .with(Protocol::QuicV1)
        .with(Protocol::WebTransport)
        .with(Protocol::Certhash(hash(i as u8)))
        .with(Protocol::Certhash(hash(i as u8 ^ 0xff)))
}

/// The bytes of a frame carrying `list` (without the length prefix).
fn frame_len(list: &PeerList) -> usize {
    encode_peers(list).get_size()
}

#[test]
fn a_hub_whose_neighbours_advertise_long_addresses_sends_lists_within_the_frame_budget() {
    let mut hub = node(exchanging());
    let neighbours: Vec<PeerId> = (0..48).map(|_| PeerId::random()).collect();
    for (i, peer) in neighbours.iter().enumerate() {
        inbound(&mut hub, i + 1, *peer, &addr(10_000 + i as u16));
        // What identify reports: four WebTransport addresses each.
        for port in 0..4 {
            hub.manager
                .on_peer_address(hub.now, *peer, webtransport(i as u16, 4001 + port));
        }
    }
    let _ = hub.actions();
    let receiver = PeerId::random();
    inbound(&mut hub, 100, receiver, &addr(9));
    let sent = lists(&hub.actions());
    let (_, list) = sent
        .iter()
        .find(|(to, _)| *to == receiver)
        .expect("a list for the newcomer");
    let bytes = frame_len(list);
    println!(
        "hub with long neighbour addresses: {} neighbours with 4 WebTransport addresses each; \
         the hub's list holds {} peers in {bytes} bytes (frame budget {MAX_PEERS_FRAME})",
        neighbours.len(),
        list.len()
    );
    assert!(bytes <= MAX_PEERS_FRAME, "{bytes} bytes sent");
    assert!(!list.is_empty());
}

/// A varint-length-prefixed frame of `body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut buf = unsigned_varint::encode::usize_buffer();
    let mut frame = unsigned_varint::encode::usize(body.len(), &mut buf).to_vec();
    frame.extend_from_slice(body);
    frame
}

/// The protobuf of one `Peer` entry with raw address bytes.
fn entry(peer: &PeerId, addrs: &[Vec<u8>]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, key: u8, value: &[u8]) {
        out.push(key);
        let mut buf = unsigned_varint::encode::usize_buffer();
        out.extend_from_slice(unsigned_varint::encode::usize(value.len(), &mut buf));
        out.extend_from_slice(value);
    }
    let mut inner = Vec::new();
    field(&mut inner, 0x0a, &peer.to_bytes());
    for a in addrs {
        field(&mut inner, 0x12, a);
    }
    let mut out = Vec::new();
    field(&mut out, 0x0a, &inner);
    out
}

#[test]
fn what_does_not_parse_or_fit_is_dropped_and_is_no_violation() {
    let good = addr(4001).to_vec();
    // An address of a protocol this version does not know (code 0x3fff).
    let unknown = vec![0xff, 0x7f, 0x00];
    let mut body = Vec::new();
    // Six addresses for one peer (the cap is four), one of them unknown.
    let first = PeerId::random();
    body.extend(entry(
        &first,
        &[
            unknown.clone(),
            good.clone(),
            addr(4002).to_vec(),
            addr(4003).to_vec(),
            addr(4004).to_vec(),
            addr(4005).to_vec(),
        ],
    ));
    // 70 entries (the cap is 64).
    for _ in 0..69 {
        body.extend(entry(&PeerId::random(), std::slice::from_ref(&good)));
    }
    let decoded = decode_peers_frame(&framed(&body));
    println!("overfull list: {:?}", decoded.as_ref().map(|l| l.len()));
    let list = decoded.expect("the list is kept, cut to what fits");
    assert_eq!(list.len(), 64);
    assert_eq!(list[0].0, first);
    assert!(list[0].1.len() <= 4 && list[0].1.contains(&addr(4001)));

    // Larger than the frame cap: refused before it is read, and not held against the sender.
    let mut big = Vec::new();
    while big.len() <= MAX_PEERS_FRAME {
        big.extend(entry(&PeerId::random(), std::slice::from_ref(&good)));
    }
    let err = decode_peers_frame(&framed(&big)).unwrap_err();
    println!("oversized frame: {err}");
    assert!(
        !err.is_violation(),
        "an honest hub could have sent it: {err}"
    );
    // A frame whose protobuf is broken still is one.
    let err = decode_peers_frame(&[2, 0, 0]).unwrap_err();
    assert!(err.is_violation());
}

#[test]
fn addresses_are_vetted_by_scope_relative_to_the_sender() {
    let mut a = node(exchanging());
    let public_sender = PeerId::random();
    inbound(&mut a, 1, public_sender, &ma("/ip4/198.51.100.7/tcp/5000"));
    let _ = a.actions();
    let bad = [
        "/ip4/127.0.0.1/tcp/4001",
        "/ip4/192.168.1.10/tcp/4001",
        "/ip4/10.1.2.3/tcp/4001",
        "/ip4/169.254.9.9/tcp/4001",
        "/ip6/fe80::1/tcp/4001",
        "/ip6/fd00::1/tcp/4001",
        "/ip6/::1/tcp/4001",
        "/ip4/0.0.0.0/tcp/4001",
        "/dns4/victim.example/tcp/4001",
        "/dns/localhost/tcp/4001",
    ];
    let strangers: Vec<PeerId> = bad.iter().map(|_| PeerId::random()).collect();
    let list: PeerList = strangers
        .iter()
        .zip(bad)
        .map(|(p, s)| (*p, vec![ma(s)]))
        .collect();
    let public = PeerId::random();
    let mut list = list;
    list.push((public, vec![ma("/ip4/203.0.113.9/tcp/4001")]));
    a.manager.on_peers_received(a.now, public_sender, list);
    let dialed = dials(&a.actions());
    let bad_dialed = dialed.iter().filter(|p| strangers.contains(p)).count();
    println!(
        "a public sender names {} peers at loopback, private, link-local, unspecified and DNS \
         addresses: attacker got {bad_dialed} of them dialed",
        bad.len()
    );
    assert_eq!(bad_dialed, 0, "{dialed:?}");
    assert!(dialed.contains(&public), "a public address is fine");
    for peer in &strangers {
        assert!(a.manager.peer_info(peer).is_none(), "nothing kept for it");
    }

    // From a sender on the same host, loopback and private addresses are plausible.
    let mut b = node(exchanging());
    let local_sender = PeerId::random();
    inbound(&mut b, 1, local_sender, &addr(5000));
    let _ = b.actions();
    let (x, y) = (PeerId::random(), PeerId::random());
    b.manager.on_peers_received(
        b.now,
        local_sender,
        vec![
            (x, vec![ma("/ip4/127.0.0.1/tcp/4001")]),
            (y, vec![ma("/ip4/192.168.1.10/tcp/4001")]),
        ],
    );
    let dialed = dials(&b.actions());
    assert!(dialed.contains(&x) && dialed.contains(&y), "{dialed:?}");
}

#[test]
fn a_list_naming_a_wanted_peer_cannot_replace_its_proven_addresses() {
    let mut a = node(exchanging());
    a.manager.track_changes(true);
    let wanted = PeerId::random();
    let given = ma("/ip4/198.51.100.20/tcp/4001");
    a.manager
        .add_peer(a.now, wanted, vec![given.clone()])
        .unwrap();
    let _ = a.actions();
    let proven = ma("/ip4/198.51.100.20/tcp/4002");
    outbound(&mut a, 1, wanted, &proven);
    // It drops; the node will redial it.
    a.manager
        .on_closed(a.now, cid(1), wanted, CloseCause::Transport);
    let _ = a.manager.take_changes();
    // An attacker connected from the public internet names it, with 16 addresses of its own
    // (and one twice).
    let attacker = PeerId::random();
    inbound(&mut a, 2, attacker, &ma("/ip4/203.0.113.66/tcp/5000"));
    let _ = a.actions();
    let forged: Vec<Multiaddr> = (0..16)
        .map(|i| ma(&format!("/ip4/203.0.113.66/tcp/{}", 6000 + i)))
        .collect();
    let list: PeerList = forged
        .chunks(4)
        .map(|chunk| (wanted, chunk.to_vec()))
        .chain(std::iter::once((wanted, vec![forged[0].clone()])))
        .collect();
    a.manager.on_peers_received(a.now, attacker, list);
    let info = a.manager.peer_info(&wanted).unwrap();
    let kept_honest = [&given, &proven]
        .iter()
        .filter(|x| info.addresses.contains(x))
        .count();
    let forged_kept = info.addresses.iter().filter(|x| forged.contains(x)).count();
    let changes = a.manager.take_changes();
    let stored_forged = changes
        .iter()
        .filter_map(|c| match c {
            Change::Peer { peer, update } if *peer == wanted => update.addresses.clone(),
            _ => None,
        })
        .flatten()
        .filter(|x| forged.contains(x))
        .count();
    println!(
        "targeted eclipse: attacker spent 1 list of {} addresses naming a wanted peer; got {} \
         of its 2 honest addresses evicted, {forged_kept} forged addresses kept, \
         {stored_forged} written to the store",
        forged.len(),
        2 - kept_honest,
    );
    assert_eq!(kept_honest, 2, "{:?}", info.addresses);
    assert_eq!(stored_forged, 0, "hearsay is not written to the store");
    let mut unique = info.addresses.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), info.addresses.len(), "de-duplicated");
}

#[test]
fn hearsay_never_cancels_a_redial_nor_brings_back_a_peer_the_application_let_go() {
    let mut a = node(
        exchanging()
            .with_watermarks(1, 1)
            .with_trim_grace(Duration::ZERO),
    );
    let sender = PeerId::random();
    inbound(&mut a, 1, sender, &addr(5000));
    a.manager.protect(sender, "keep");
    // A wanted peer that asked us to come back in 60 s.
    let busy = PeerId::random();
    a.manager.add_peer(a.now, busy, vec![addr(4001)]).unwrap();
    let _ = a.actions();
    outbound(&mut a, 2, busy, &addr(4001));
    a.manager.on_goodbye_received(
        a.now,
        cid(2),
        DisconnectReason::ResourceConstraint,
        Some(Duration::from_secs(60)),
    );
    a.manager
        .on_closed(a.now, cid(2), busy, CloseCause::Transport);
    let redial_at = a.manager.peer_info(&busy).unwrap().next_redial;
    assert!(redial_at.is_some());
    // A peer the application disconnected.
    let dropped = PeerId::random();
    a.manager
        .add_peer(a.now, dropped, vec![addr(4002)])
        .unwrap();
    let _ = a.actions();
    outbound(&mut a, 3, dropped, &addr(4002));
    a.manager.remove_peer(a.now, dropped);
    for (connection, _) in a.closes() {
        a.manager.on_goodbye_finished(connection);
    }
    a.manager
        .on_closed(a.now, cid(3), dropped, CloseCause::Local);
    // A peer trimmed away (watermarks 1/1, the sender is protected).
    let trimmed = PeerId::random();
    inbound(&mut a, 4, trimmed, &addr(5004));
    a.advance(Duration::from_secs(1));
    let _ = a.manager.force_trim(a.now);
    for (connection, _) in a.closes() {
        a.manager.on_goodbye_finished(connection);
    }
    a.manager
        .on_closed(a.now, cid(4), trimmed, CloseCause::Local);
    let _ = a.actions();

    a.manager.on_peers_received(
        a.now,
        sender,
        vec![
            (busy, vec![addr(4001)]),
            (dropped, vec![addr(4002)]),
            (trimmed, vec![addr(5004)]),
        ],
    );
    let dialed = dials(&a.actions());
    let info = a.manager.peer_info(&busy).unwrap();
    println!(
        "a list naming a peer in backoff, a disconnected and a trimmed peer: attacker got {} \
         of 3 dialed, the redial moved: {}",
        dialed.len(),
        info.next_redial != redial_at
    );
    assert!(dialed.is_empty(), "{dialed:?}");
    assert_eq!(info.next_redial, redial_at, "the retry-after holds");
}

/// 64 fresh peers at one host, 64 ports: a tarpit.
fn tarpit_list() -> PeerList {
    (0..64)
        .map(|i| {
            (
                PeerId::random(),
                vec![ma(&format!("/ip4/198.51.100.99/tcp/{}", 7000 + i))],
            )
        })
        .collect()
}

/// Hands the dials among `actions` to the swarm as pending connections (numbered from `next`);
/// returns how many the manager refused.
fn take_dials(node: &mut Node, actions: &[Action], next: &mut usize) -> usize {
    let mut refused = 0;
    for peer in dials(actions) {
        *next += 1;
        if node
            .manager
            .on_pending_outbound(node.now, cid(*next), Some(peer), &[])
            .is_err()
        {
            refused += 1;
        }
    }
    refused
}

#[test]
fn hearsay_dials_have_their_own_small_budget_and_leave_slots_to_the_application() {
    let limits = Limits::unlimited().with_max_pending_outgoing(Some(16));
    let mut a = node(exchanging().with_limits(limits));
    let attacker = PeerId::random();
    inbound(&mut a, 1, attacker, &ma("/ip4/203.0.113.66/tcp/5000"));
    let _ = a.actions();
    a.manager.on_peers_received(a.now, attacker, tarpit_list());
    let mut next = 10;
    let actions = a.actions();
    let hearsay_dials = dials(&actions).len();
    // The swarm takes them: they hang in the tarpit.
    take_dials(&mut a, &actions, &mut next);
    let held = a.manager.pending_connections();
    // The application's own dial still gets a slot.
    let asked = PeerId::random();
    a.manager
        .add_peer(a.now, asked, vec![ma("/ip4/198.51.100.2/tcp/1")])
        .unwrap();
    let actions = a.actions();
    let refused = take_dials(&mut a, &actions, &mut next);
    println!(
        "hearsay flood: attacker spent 1 list of 64 peers at one host; got {hearsay_dials} dials, {held} of 16 pending-outbound slots held; the application's dial: {refused} refused"
    );
    assert!(hearsay_dials <= 8, "{hearsay_dials} hearsay dials");
    assert!(held <= 8, "hearsay holds at most half of the slots");
    assert_eq!(refused, 0, "the application's dial got a slot");
}

#[test]
fn hearsay_has_its_own_cap_and_leaves_discovery_alone() {
    let mut a = node(exchanging().with_max_discovered_peers(8));
    let attacker = PeerId::random();
    inbound(&mut a, 1, attacker, &ma("/ip4/203.0.113.66/tcp/5000"));
    let _ = a.actions();
    a.manager.on_peers_received(a.now, attacker, tarpit_list());
    let _ = a.actions();
    let found = PeerId::random();
    a.manager
        .add_discovered(a.now, found, vec![ma("/ip4/198.51.100.1/tcp/1")])
        .unwrap();
    let dialed = dials(&a.actions());
    println!(
        "hearsay flood against the discovered-peer cap (8): the application's discovery afterwards: {} of 1 dialed",
        dialed.len()
    );
    assert_eq!(dialed, vec![found], "discovery has its own cap");
}

#[test]
fn one_list_per_sender_per_interval_and_rounds_sample_all_peers() {
    let interval = Duration::from_secs(10);
    let config = exchanging().with_peer_exchange(Some(exchange().with_interval(interval)));
    // The receiver: a second list from the same sender within the interval is dropped.
    let mut a = node(config.clone());
    let sender = PeerId::random();
    inbound(&mut a, 1, sender, &addr(5000));
    let _ = a.actions();
    let (x, y) = (PeerId::random(), PeerId::random());
    a.manager
        .on_peers_received(a.now, sender, vec![(x, vec![addr(4001)])]);
    a.advance(Duration::from_millis(100));
    a.manager
        .on_peers_received(a.now, sender, vec![(y, vec![addr(4002)])]);
    let dialed = dials(&a.actions());
    println!("two lists 100 ms apart: {} of 2 peers dialed", dialed.len());
    assert_eq!(dialed, vec![x], "the second list waits for the interval");

    // The sender: one list per connection per interval, and a sample of all its peers.
    let mut hub = node(config);
    let peers: Vec<PeerId> = (0..200).map(|_| PeerId::random()).collect();
    for (i, peer) in peers.iter().enumerate() {
        inbound(&mut hub, i + 1, *peer, &addr(10_000 + i as u16));
        hub.manager.add_address(*peer, addr(20_000 + i as u16));
    }
    let listener = PeerId::random();
    inbound(&mut hub, 1000, listener, &addr(9));
    let mut named = HashSet::new();
    let mut sent_at = Vec::new();
    for (to, list) in lists(&hub.actions()) {
        if to == listener {
            sent_at.push(hub.now);
            named.extend(list.into_iter().map(|(p, _)| p));
        }
    }
    for (round, &peer) in peers.iter().enumerate().take(20) {
        // Churn: one peer leaves and comes back, so every round has news.
        hub.manager
            .on_closed(hub.now, cid(round + 1), peer, CloseCause::Transport);
        inbound(&mut hub, 2000 + round, peer, &addr(10_000 + round as u16));
        hub.manager.add_address(peer, addr(20_000 + round as u16));
        hub.advance(Duration::from_secs(1));
        for (to, list) in lists(&hub.actions()) {
            if to == listener {
                sent_at.push(hub.now);
                named.extend(list.into_iter().map(|(p, _)| p));
            }
        }
    }
    let closest = sent_at.windows(2).map(|w| w[1] - w[0]).min();
    println!(
        "20 s of churn at a hub of 200 peers (interval 10 s): {} lists to one connection, \
         at least {closest:?} apart, naming {} different peers",
        sent_at.len(),
        named.len()
    );
    assert!(closest.is_none_or(|gap| gap >= interval), "{sent_at:?}");
    assert!(
        named.len() > 64,
        "rounds sample: {} peers named",
        named.len()
    );
}

#[test]
fn discovered_and_hearsay_peers_are_not_stored_as_wanted() {
    let mut a = node(exchanging());
    a.manager.track_changes(true);
    let sender = PeerId::random();
    inbound(&mut a, 1, sender, &addr(5000));
    let (found, heard) = (PeerId::random(), PeerId::random());
    a.manager
        .add_discovered(a.now, found, vec![addr(4001)])
        .unwrap();
    a.manager
        .on_peers_received(a.now, sender, vec![(heard, vec![addr(4002)])]);
    let _ = a.actions();
    let changes = a.manager.take_changes();
    let stored_wanted: Vec<PeerId> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Peer { peer, update } if update.wanted => Some(*peer),
            _ => None,
        })
        .collect();
    println!(
        "a discovered and a hearsay peer: {} stored as wanted (a restart would redial them as \
         the application's own)",
        stored_wanted.len()
    );
    assert!(stored_wanted.is_empty(), "{stored_wanted:?}");
}

#[test]
fn a_strangers_disconnect_is_not_written_to_the_store() {
    let mut a = node(exchanging());
    a.manager.track_changes(true);
    for i in 0..100 {
        let stranger = PeerId::random();
        inbound(&mut a, i + 1, stranger, &addr(5000));
        a.manager
            .on_closed(a.now, cid(i + 1), stranger, CloseCause::Transport);
    }
    let _ = a.actions();
    let written = a.manager.take_changes().len();
    println!("churn: 100 strangers connected and left; {written} records written to the store");
    assert_eq!(written, 0, "a restart reads nothing of them");
}

#[test]
fn nonsense_peer_exchange_settings_are_refused() {
    let refused = |exchange: PeerExchange| {
        Config::default()
            .with_peer_exchange(Some(exchange))
            .validate()
            .unwrap_err()
    };
    assert_eq!(
        refused(PeerExchange::new().with_interval(Duration::ZERO)),
        crate::ConfigError::Zero {
            setting: "PeerExchange::with_interval"
        }
    );
    assert!(matches!(
        refused(exchange().with_max_peers(0)),
        crate::ConfigError::Zero { .. }
    ));
    assert!(matches!(
        refused(exchange().with_max_dials(0)),
        crate::ConfigError::Zero { .. }
    ));
    assert!(matches!(
        refused(PeerExchange::new().with_interval(Duration::MAX)),
        crate::ConfigError::DurationTooLong { .. }
    ));
    // Without auto-connect the budgets do not matter; the defaults pass.
    assert!(Config::default()
        .with_peer_exchange(Some(PeerExchange::new().with_max_dials(0)))
        .validate()
        .is_ok());
    assert!(Config::default()
        .with_peer_exchange(Some(exchange()))
        .validate()
        .is_ok());
}

#[test]
fn a_node_full_for_newcomers_tells_those_it_refuses_whom_else_to_try() {
    // Found by the network simulation (issue 24): 10,000 nodes that knew only 3 bootstrap
    // nodes, full at 256 inbound connections, were refused 312,000 times in 300 s; a refused
    // node heard nothing but the refusal, so three quarters of them never got a single list.
    let limits = Limits::unlimited().with_max_established_incoming(Some(2));
    let mut full = node(exchanging().with_limits(limits));
    let residents = [PeerId::random(), PeerId::random()];
    for (i, peer) in residents.iter().enumerate() {
        let at = ma(&format!("/ip4/198.51.{}.7/tcp/4001", 100 + i));
        inbound(&mut full, i + 1, *peer, &at);
        full.manager.on_peer_address(full.now, *peer, at);
    }
    let _ = full.actions();
    // A newcomer: let through only to hear why it is refused.
    let newcomer = PeerId::random();
    let from = ma("/ip4/203.0.113.9/tcp/50000");
    full.manager
        .on_pending_inbound(full.now, cid(10), &from)
        .unwrap();
    let new = NewConnection::new(Initiator::Remote, Endpoint::Listener, from);
    full.manager
        .check_established(full.now, cid(10), newcomer, &new)
        .unwrap();
    full.manager
        .on_established(full.now, cid(10), newcomer, new);
    let actions = full.actions();
    let refused = actions.iter().any(|a| {
        matches!(
            a,
            Action::SendGoodbye {
                reason: DisconnectReason::ResourceConstraint,
                ..
            }
        )
    });
    let told: Vec<PeerList> = lists(&actions)
        .into_iter()
        .filter(|(to, _)| *to == newcomer)
        .map(|(_, list)| list)
        .collect();
    // The newcomer's side: its dial to the full node is up, the list arrives before the close.
    let mut new_node = Node::new(newcomer, exchanging(), full.now);
    let full_id = full.id;
    outbound(&mut new_node, 1, full_id, &ma("/ip4/198.51.99.1/tcp/4001"));
    let _ = new_node.actions();
    for list in &told {
        new_node
            .manager
            .on_peers_received(new_node.now, full_id, list.clone());
    }
    let dialed = dials(&new_node.actions());
    println!(
        "a node full for newcomers refuses one: goodbye ResourceConstraint {refused}; lists it \
         told the newcomer: {}, naming {} peers; the newcomer dials {} of its {} residents",
        told.len(),
        told.iter().map(Vec::len).sum::<usize>(),
        dialed.iter().filter(|p| residents.contains(p)).count(),
        residents.len()
    );
    assert!(refused, "refused for the limit, with its goodbye");
    assert_eq!(told.len(), 1, "the refused newcomer hears whom else to try");
    assert_eq!(dialed.len(), 2, "{dialed:?}");
}

#[test]
fn a_hearsay_peer_that_trims_us_is_let_go_and_its_slot_goes_to_another() {
    // Found by the network simulation (issue 24): a node whose hearsay peer trimmed it kept
    // that peer as wanted, to be redialed after the violation backoff (and trimmed again), and
    // the peer kept its slot among `with_max_peers`: the node stayed one peer short.
    let interval = Duration::from_secs(10);
    let config =
        exchanging().with_peer_exchange(Some(exchange().with_max_peers(2).with_interval(interval)));
    let mut a = node(config);
    let sender = PeerId::random();
    inbound(&mut a, 1, sender, &ma("/ip4/192.0.2.1/tcp/4001"));
    let _ = a.actions();
    let (hub, other, fresh) = (PeerId::random(), PeerId::random(), PeerId::random());
    let hub_at = ma("/ip4/198.51.100.1/tcp/4001");
    let other_at = ma("/ip4/198.51.101.1/tcp/4001");
    let fresh_at = ma("/ip4/198.51.102.1/tcp/4001");
    a.manager.on_peers_received(
        a.now,
        sender,
        vec![(hub, vec![hub_at.clone()]), (other, vec![other_at.clone()])],
    );
    assert_eq!(dials(&a.actions()).len(), 2);
    outbound(&mut a, 2, hub, &hub_at);
    outbound(&mut a, 3, other, &other_at);
    let _ = a.actions();
    // The hub, over its watermark, trims us.
    a.advance(Duration::from_secs(40));
    a.manager
        .on_goodbye_received(a.now, cid(2), DisconnectReason::NetworkRestructure, None);
    a.manager
        .on_closed(a.now, cid(2), hub, CloseCause::RemoteClosed);
    let _ = a.actions();
    // The sender's next list names the hub again and a fresh peer.
    a.advance(interval);
    a.manager.on_peers_received(
        a.now,
        sender,
        vec![(hub, vec![hub_at]), (fresh, vec![fresh_at])],
    );
    let dialed_now = dials(&a.actions());
    let mut redialed_hub = false;
    for _ in 0..120 {
        a.advance(Duration::from_secs(1));
        redialed_hub |= dials(&a.actions()).contains(&hub);
    }
    println!(
        "a hearsay peer trimmed us: hearsay peers held {} of 2; the next list's fresh peer \
         dialed: {}; the hub dialed again within 2 min: {redialed_hub}",
        a.manager.hearsay_stats().peers,
        dialed_now.contains(&fresh),
    );
    assert_eq!(dialed_now, vec![fresh], "the slot goes to the fresh peer");
    assert!(!redialed_hub, "the peer that trimmed us is left alone");
}

#[test]
fn a_round_to_many_peers_goes_out_in_steps_of_bounded_size() {
    let interval = Duration::from_secs(10);
    // No watermarks: the default high one (192) would trim the hub while the test runs.
    let config = exchanging()
        .with_peer_exchange(Some(exchange().with_interval(interval)))
        .without_watermarks();
    let mut hub = node(config);
    let peers: Vec<PeerId> = (0..600).map(|_| PeerId::random()).collect();
    for (i, peer) in peers.iter().enumerate() {
        inbound(&mut hub, i + 1, *peer, &addr(10_000 + i as u16));
        hub.manager.add_address(*peer, addr(20_000 + i as u16));
    }
    let _ = hub.actions();
    // News one interval later; the round after it owes every peer a list.
    hub.advance(interval);
    let _ = hub.actions();
    inbound(&mut hub, 1000, PeerId::random(), &addr(9));
    let _ = hub.actions();
    hub.advance(interval);
    let mut steps = Vec::new();
    let mut received: Map<PeerId, usize> = Map::default();
    let newcomer = PeerId::random();
    loop {
        // The newcomer's own list, sent when it connects, is not the round's.
        let step: Vec<_> = lists(&hub.actions())
            .into_iter()
            .filter(|(to, _)| *to != newcomer)
            .collect();
        if step.is_empty() || steps.len() > 10 {
            break;
        }
        steps.push(step.len());
        for (to, _) in step {
            *received.entry(to).or_default() += 1;
        }
        if steps.len() == 1 {
            // News between two steps: whoever was told before it is owed another list.
            hub.advance(Duration::from_millis(5));
            inbound(&mut hub, 1001, newcomer, &addr(10));
        }
        hub.advance(Duration::from_millis(10));
    }
    println!("a round to 601 peers: lists per step {steps:?}");
    assert!(
        steps.iter().all(|n| *n <= LISTS_PER_STEP),
        "at most {LISTS_PER_STEP} lists in one step: {steps:?}"
    );
    // All but the newcomer (told at once when it connected) and the first peer (told in the
    // round one interval in, when the others had just had theirs).
    assert_eq!(steps.iter().sum::<usize>(), 599, "{steps:?}");
    assert!(received.values().all(|n| *n == 1), "one list each");
    hub.advance(interval);
    let next: usize = std::iter::from_fn(|| {
        let step = lists(&hub.actions()).len();
        hub.advance(Duration::from_millis(10));
        (step > 0).then_some(step)
    })
    .sum();
    println!("the news that came during the round: {next} lists an interval later");
    assert!(next >= LISTS_PER_STEP, "{next} lists in the next round");
}
