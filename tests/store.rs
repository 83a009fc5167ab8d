//! The peer store across restarts, in one process: a node is stopped (its swarm dropped) and
//! started again with the same identity and the same store.

mod common;

use std::time::Duration;

use common::*;
use libp2p::identity::Keypair;
use libp2p_connection_manager::{
    store::{MemoryStore, PeerStore},
    Event,
};

const SETTLE: Duration = Duration::from_secs(20);

async fn spawn(keypair: &Keypair, store: impl PeerStore) -> Node {
    Node::spawn(NodeConfig {
        keypair: Some(keypair.clone()),
        store: Some(Box::new(store)),
        ..Default::default()
    })
    .await
}

fn restored(s: &Snapshot) -> Option<libp2p_connection_manager::RestoreSummary> {
    s.events.iter().find_map(|e| match e {
        Event::Restored(summary) => Some(*summary),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wanted_peers_are_redialed_after_a_restart() {
    init_tracing();
    let store = MemoryStore::new();
    let keypair = Keypair::generate_ed25519();
    let mut b = Node::spawn(NodeConfig::default()).await;
    let mut a = spawn(&keypair, store.clone()).await;
    a.send(Command::ManagerDial(b.peer, b.addr.clone()));
    wait_until(&mut [&mut a, &mut b], SETTLE, |s| {
        s.iter().all(|s| s.established == 1 && s.is_quiet())
    })
    .await
    .unwrap_or_else(|s| panic!("a never connected to b: {s:#?}"));

    a.stop().await;
    let stored = store.snapshot();
    let (_, record) = stored
        .peers
        .iter()
        .find(|(peer, _)| *peer == b.peer)
        .expect("b is in the store");
    assert!(record.wanted, "{record:?}");
    assert!(!record.addresses.is_empty(), "{record:?}");

    // Nobody dials the new a: it dials b by itself, from what the store kept.
    let mut a = spawn(&keypair, store.clone()).await;
    let b_peer = b.peer;
    let s = settled(&mut [&mut a, &mut b], SETTLE, |s| {
        s[0].connections_to(&b_peer) == 1
    })
    .await
    .unwrap_or_else(|s| panic!("a did not redial b after the restart: {s:#?}"));
    let summary = restored(&s[0]).expect("a reports what it restored");
    assert_eq!((summary.peers, summary.redials), (1, 1), "{summary:?}");
}

#[cfg(feature = "redb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_survives_a_restart_on_disk() {
    use libp2p_connection_manager::{store::RedbStore, BanTarget, Denial};

    init_tracing();
    let dir = std::env::temp_dir().join(format!("cm-store-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ban.redb");
    let _ = std::fs::remove_file(&path);

    let keypair = Keypair::generate_ed25519();
    let mut b = Node::spawn(NodeConfig::default()).await;
    let mut a = spawn(&keypair, RedbStore::open(&path).expect("a new store")).await;
    a.send(Command::BanPeer(b.peer, None));
    wait_until(&mut [&mut a], SETTLE, |s| {
        s[0].events
            .iter()
            .any(|e| matches!(e, Event::Banned { .. }))
    })
    .await
    .unwrap_or_else(|s| panic!("the ban was not reported: {s:#?}"));
    a.stop().await;

    let mut a = spawn(&keypair, RedbStore::open(&path).expect("the store reopens")).await;
    b.send(Command::ManagerDial(a.peer, a.addr.clone()));
    let b_peer = b.peer;
    let s = wait_until(&mut [&mut a, &mut b], SETTLE, |s| {
        s[0].events.iter().any(|e| {
            matches!(e, Event::Denied { peer: Some(p), denial: Denial::PeerBanned { .. }, .. } if *p == b_peer)
        })
    })
    .await
    .unwrap_or_else(|s| panic!("b was let in after the restart: {s:#?}"));
    assert_eq!(s[0].connections_to(&b.peer), 0);
    assert_eq!(restored(&s[0]).map(|r| r.bans), Some(1));
    a.send(Command::Unban(BanTarget::Peer(b.peer)));
    a.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
