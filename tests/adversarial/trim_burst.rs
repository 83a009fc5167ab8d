//! The eclipse through trimming, over real TCP: a node that dialed six peers it wants, with
//! watermarks 4/8, takes a burst of ten fresh inbound peers, from loopback, from one IPv4 /24
//! and from one IPv6 /48. Once the burst's grace is over, the six wanted peers must still be
//! connected (and wanted), and the node back under its high watermark.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use libp2p::{Multiaddr, PeerId};
use libp2p_connection_manager::{Config, Event};

use crate::{
    common::*,
    source_bound::{add_ipv6_to_loopback, spawn_attacker},
};

const LOW: usize = 4;
const HIGH: usize = 8;
const WANTED: usize = 6;
const ATTACKERS: usize = 10;

async fn burst(hub_ip: &'static str, sources: Vec<IpAddr>, label: &str) {
    init_tracing();
    let mut hub = Node::spawn(NodeConfig {
        manager: Config::default()
            .with_watermarks(LOW, HIGH)
            .with_trim_grace(Duration::from_secs(2))
            .with_trim_silence(Duration::from_millis(500)),
        listen_ip: Some(hub_ip),
        ..Default::default()
    })
    .await;
    let mut wanted = Vec::new();
    for _ in 0..WANTED {
        let peer = Node::spawn(NodeConfig::default()).await;
        hub.send(Command::ManagerDial(peer.peer, peer.addr.clone()));
        wanted.push(peer);
    }
    let wanted_ids: Vec<PeerId> = wanted.iter().map(|n| n.peer).collect();
    let all_wanted_connected = |s: &Snapshot| wanted_ids.iter().all(|p| s.connections_to(p) == 1);
    wait_until(&mut [&mut hub], Duration::from_secs(20), |s| {
        all_wanted_connected(&s[0]) && s[0].is_quiet()
    })
    .await
    .unwrap_or_else(|s| panic!("the wanted peers did not connect: {s:#?}"));
    // Let them settle past the trim grace. A hold, not a synchronisation: the scenario is
    // "old peers, then a burst".
    tokio::time::sleep(Duration::from_secs(3)).await;

    let target: Multiaddr = hub.p2p_addr();
    let mut attackers = Vec::new();
    for source in sources.iter().take(ATTACKERS) {
        attackers.push(spawn_attacker(*source, target.clone()));
    }
    let attacker_ids: Vec<PeerId> = attackers.iter().map(|(p, _)| *p).collect();
    // The burst lands (or is refused), its grace ends, and the trim that follows closes.
    let trimmed_attackers = |s: &Snapshot| {
        s.events
            .iter()
            .filter_map(|e| match e {
                Event::Trimmed { peers, .. } => Some(peers),
                _ => None,
            })
            .flatten()
            .filter(|p| attacker_ids.contains(p))
            .count()
    };
    let s = settled(&mut [&mut hub], Duration::from_secs(30), |s| {
        let s = &s[0];
        let attackers_connected = attacker_ids
            .iter()
            .filter(|p| s.connections_to(p) > 0)
            .count();
        attackers_connected == 0 && (trimmed_attackers(s) > 0 || s.max_established as usize <= HIGH)
    })
    .await;
    let s = match s {
        Ok(s) | Err(s) => s.into_iter().next().unwrap(),
    };
    let wanted_kept = wanted_ids
        .iter()
        .filter(|p| s.connections_to(p) == 1)
        .count();
    let attackers_connected = attacker_ids
        .iter()
        .filter(|p| s.connections_to(p) > 0)
        .count();
    println!(
        "trim burst from {label}: attacker spent {ATTACKERS} PeerIds and {ATTACKERS} inbound \
         connections from {} address(es); got {} of {WANTED} wanted peers trimmed, \
         {attackers_connected} attackers still connected, {} peers connected (low {LOW}, high \
         {HIGH}, peak {})",
        {
            let mut distinct = sources.clone();
            distinct.sort();
            distinct.dedup();
            distinct.len()
        },
        WANTED - wanted_kept,
        s.connections.len(),
        s.max_established,
    );
    assert_eq!(wanted_kept, WANTED, "every wanted peer kept: {s:#?}");
    assert_eq!(attackers_connected, 0, "{s:#?}");
    assert!(s.connections.len() <= HIGH);
    let trimmed_wanted = s.events.iter().any(|e| {
        matches!(e, Event::Trimmed { peers, .. } if peers.iter().any(|p| wanted_ids.contains(p)))
    });
    assert!(!trimmed_wanted, "a wanted peer was trimmed");
    for (_, task) in attackers {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_loopback_does_not_push_out_the_wanted_peers() {
    burst(
        "127.0.0.1",
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST); ATTACKERS],
        "one address",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_ipv4_24_does_not_push_out_the_wanted_peers() {
    let sources = (1..=ATTACKERS as u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 9, i)))
        .collect();
    burst("127.0.0.1", sources, "one IPv4 /24").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_ipv6_48_does_not_push_out_the_wanted_peers() {
    let sources: Vec<Ipv6Addr> = (0..ATTACKERS as u16)
        .map(|i| Ipv6Addr::new(0x2001, 0xdb8, 0x48, i, 0, 0, 0, 1))
        .collect();
    for source in &sources {
        if let Err(why) = add_ipv6_to_loopback(*source) {
            println!("SKIPPED: the /48 burst needs its addresses on lo: {why}");
            return;
        }
    }
    burst(
        "::1",
        sources.into_iter().map(IpAddr::V6).collect(),
        "one IPv6 /48",
    )
    .await;
}
