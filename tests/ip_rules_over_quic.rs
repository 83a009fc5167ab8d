//! IP bans, the per-IP limit and the per-IP rate bucket apply to QUIC (UDP) addresses as to
//! TCP ones, in one table: the remote IP is what counts, whatever the transport.
//!
//! Peers come from chosen loopback addresses (any of 127.0.0.0/8 works on Linux): a QUIC node
//! listening on 127.0.0.2 dials from that socket (libp2p-quic dials from a listener's socket),
//! a TCP attacker binds its source address (`adversarial/source_bound.rs`; libp2p-tcp lets the
//! kernel pick it). The QUIC nodes make their rescue dials from that socket too: from a fresh
//! port (the default) they would bind 0.0.0.0 and leave from 127.0.0.1, another IP.

mod common;
#[path = "adversarial/source_bound.rs"]
#[allow(dead_code)]
mod source_bound;

use std::{net::IpAddr, time::Duration};

use common::*;
use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};
use libp2p_connection_manager::{Config, Denial, Event, Limits, RateLimit};

const BANNED: &str = "127.0.0.2";
const OTHER: &str = "127.0.0.3";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::QuicV1))
}

fn quic_addr(node: &Node) -> Multiaddr {
    node.addrs
        .iter()
        .find(|a| is_quic(a))
        .expect("a QUIC listen address")
        .clone()
        .with(Protocol::P2p(node.peer))
}

fn tcp_addr(node: &Node) -> Multiaddr {
    node.addrs
        .iter()
        .find(|a| !is_quic(a))
        .expect("a TCP listen address")
        .clone()
        .with(Protocol::P2p(node.peer))
}

/// A QUIC-only node whose connections, retries included, leave from `listen_ip`.
async fn quic_node_from(listen_ip: &'static str) -> Node {
    Node::spawn(NodeConfig {
        transports: Some(Transports::QUIC),
        listen_ip: Some(listen_ip),
        manager: Config::default().with_new_port_for_redials(false),
        ..Default::default()
    })
    .await
}

/// The manager's denials of connections from or to `from`.
fn denials_of(s: &Snapshot, from: IpAddr) -> Vec<Denial> {
    denials_where(s, from, |_| true)
}

/// The manager's denials of its own dials to `peer` at `to`.
fn outbound_denials(s: &Snapshot, to: IpAddr, peer: PeerId) -> Vec<Denial> {
    denials_where(s, to, |p| p == Some(peer))
}

fn denials_where(s: &Snapshot, from: IpAddr, peer: impl Fn(Option<PeerId>) -> bool) -> Vec<Denial> {
    s.events
        .iter()
        .filter_map(|e| match e {
            Event::Denied {
                denial, peer: p, ..
            } if peer(*p) => Some(denial.clone()),
            _ => None,
        })
        .filter(|d| match d {
            Denial::IpBanned { ip, .. }
            | Denial::IpLimit { ip, .. }
            | Denial::RateLimited { ip, .. } => *ip == from,
            _ => false,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_ban_refuses_that_ip_over_tcp_and_over_quic_in_both_directions() {
    init_tracing();
    let mut target = Node::spawn(NodeConfig {
        transports: Some(Transports::TCP_AND_QUIC),
        ..Default::default()
    })
    .await;
    target.send(Command::BanNetwork(
        format!("{BANNED}/32").parse().unwrap(),
        None,
    ));
    wait_until(&mut [&mut target], Duration::from_secs(10), |s| {
        s[0].events
            .iter()
            .any(|e| matches!(e, Event::Banned { .. }))
    })
    .await
    .expect("the ban is in force before anyone dials");

    // Over TCP: a connection from the banned IP is refused before its handshake.
    let (_, tcp_attacker) = source_bound::spawn_attacker(ip(BANNED), tcp_addr(&target));
    wait_until(&mut [&mut target], Duration::from_secs(20), |s| {
        denials_of(&s[0], ip(BANNED))
            .iter()
            .any(|d| matches!(d, Denial::IpBanned { .. }))
    })
    .await
    .unwrap_or_else(|s| panic!("the TCP connection from {BANNED} was not refused: {s:#?}"));

    // Over QUIC: the same.
    let mut banned = quic_node_from(BANNED).await;
    banned.send(Command::SwarmDial(quic_addr(&target).into()));
    let s = wait_until(
        &mut [&mut target, &mut banned],
        Duration::from_secs(20),
        |s| {
            denials_of(&s[0], ip(BANNED)).len() >= 2
                && !s[1].events.is_empty()
                && s[1]
                    .events
                    .iter()
                    .any(|e| matches!(e, Event::DialFailed { .. }))
        },
    )
    .await
    .unwrap_or_else(|s| panic!("the QUIC connection from {BANNED} was not refused: {s:#?}"));
    assert!(denials_of(&s[0], ip(BANNED))
        .iter()
        .all(|d| matches!(d, Denial::IpBanned { .. })));

    // Outbound over QUIC: the target does not dial the banned IP either.
    target.send(Command::SwarmDial(quic_addr(&banned).into()));
    let banned_peer = banned.peer;
    wait_until(&mut [&mut target], Duration::from_secs(20), |s| {
        !outbound_denials(&s[0], ip(BANNED), banned_peer).is_empty()
    })
    .await
    .unwrap_or_else(|s| panic!("the dial to {BANNED} over QUIC was not refused: {s:#?}"));

    // Another IP gets in over both transports: the ban, not the transport, refused.
    let (_, tcp_other) = source_bound::spawn_attacker(ip(OTHER), tcp_addr(&target));
    let mut other = quic_node_from(OTHER).await;
    other.send(Command::SwarmDial(quic_addr(&target).into()));
    let s = settled(
        &mut [&mut target, &mut banned, &mut other],
        Duration::from_secs(30),
        |s| s[0].established == 2 && s[1].established == 0 && s[2].established == 1,
    )
    .await
    .unwrap_or_else(|s| panic!("{OTHER} did not get in over both transports: {s:#?}"));
    assert_eq!(s[0].max_established, 2, "nothing from {BANNED} ever got in");
    tcp_attacker.abort();
    tcp_other.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_limit_counts_tcp_and_quic_connections_from_one_ip_together() {
    init_tracing();
    let limits = Limits::unlimited()
        .with_max_incoming_per_ip(Some(2))
        .with_loopback_exempt(false);
    let mut target = Node::spawn(NodeConfig {
        transports: Some(Transports::TCP_AND_QUIC),
        manager: Config::default().with_limits(limits),
        ..Default::default()
    })
    .await;

    // One TCP and one QUIC connection from 127.0.0.2 fill its limit of 2...
    let (_, tcp_attacker) = source_bound::spawn_attacker(ip(BANNED), tcp_addr(&target));
    let mut first = quic_node_from(BANNED).await;
    first.send(Command::SwarmDial(quic_addr(&target).into()));
    wait_until(
        &mut [&mut target, &mut first],
        Duration::from_secs(20),
        |s| s[0].established == 2 && s[1].established == 1,
    )
    .await
    .unwrap_or_else(|s| panic!("the first two connections did not get in: {s:#?}"));

    // ...so a second QUIC connection from it is refused, naming the limit...
    let mut second = quic_node_from(BANNED).await;
    second.send(Command::SwarmDial(quic_addr(&target).into()));
    wait_until(&mut [&mut target], Duration::from_secs(20), |s| {
        !denials_of(&s[0], ip(BANNED)).is_empty()
    })
    .await
    .unwrap_or_else(|s| panic!("the third connection from {BANNED} was not refused: {s:#?}"));

    // ...while another IP still gets in over QUIC.
    let mut other = quic_node_from(OTHER).await;
    other.send(Command::SwarmDial(quic_addr(&target).into()));
    let s = settled(
        &mut [&mut target, &mut first, &mut second, &mut other],
        Duration::from_secs(30),
        |s| s[0].established == 3 && s[2].established == 0 && s[3].established == 1,
    )
    .await
    .unwrap_or_else(|s| panic!("the limit did not hold: {s:#?}"));
    // The refused node's rescue dials come from the same IP and are refused alike.
    let denials = denials_of(&s[0], ip(BANNED));
    let expected = Denial::IpLimit {
        ip: ip(BANNED),
        network: format!("{BANNED}/32").parse().unwrap(),
        limit: 2,
        current: 2,
    };
    assert!(
        !denials.is_empty() && denials.iter().all(|d| *d == expected),
        "{denials:?}"
    );
    assert_eq!(
        s[0].tracked_ips, 2,
        "one entry per IP, whatever the transport"
    );
    tcp_attacker.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_rate_bucket_refuses_quic_connections_past_its_burst() {
    init_tracing();
    // A burst of 2, refilled once a minute: the third connection within the test is refused.
    let limits = Limits::unlimited()
        .with_incoming_rate_per_ip(Some(RateLimit::new(2, Duration::from_secs(60))))
        .with_loopback_exempt(false);
    let mut target = Node::spawn(NodeConfig {
        transports: Some(Transports::QUIC),
        manager: Config::default().with_limits(limits),
        ..Default::default()
    })
    .await;
    let mut dialers = Vec::new();
    for n in 1..=3 {
        let dialer = quic_node_from(BANNED).await;
        dialer.send(Command::SwarmDial(quic_addr(&target).into()));
        // One at a time, so which one the bucket refuses is known.
        wait_until(&mut [&mut target], Duration::from_secs(20), |s| {
            s[0].established as usize + usize::from(!denials_of(&s[0], ip(BANNED)).is_empty()) == n
        })
        .await
        .unwrap_or_else(|s| panic!("connection {n} was neither kept nor refused: {s:#?}"));
        dialers.push(dialer);
    }
    let mut refs: Vec<&mut Node> = std::iter::once(&mut target)
        .chain(dialers.iter_mut())
        .collect();
    let s = settled(&mut refs, Duration::from_secs(30), |s| {
        s[0].established == 2 && s[3].established == 0
    })
    .await
    .unwrap_or_else(|s| panic!("the rate bucket did not hold: {s:#?}"));
    // The refused node's rescue dials come from the same IP and are refused alike.
    let denials = denials_of(&s[0], ip(BANNED));
    assert!(
        !denials.is_empty()
            && denials.iter().all(
                |d| matches!(d, Denial::RateLimited { ip: refused, .. } if *refused == ip(BANNED))
            ),
        "{denials:?}"
    );
}
