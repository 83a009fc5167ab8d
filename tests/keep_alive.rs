//! Which connections the manager holds open: only those it has a reason to keep. A connection
//! nobody asked the manager for (a plain `Swarm::dial`, as a Kademlia query makes) idles out on
//! the swarm's idle timeout exactly as without the manager.

mod common;

use std::time::{Duration, Instant};

use common::*;
use libp2p_connection_manager::Config;

const IDLE: Duration = Duration::from_secs(1);

async fn pair() -> (Node, Node) {
    let config = || NodeConfig {
        manager: Config::default(),
        idle_timeout: Some(IDLE),
        ..Default::default()
    };
    (Node::spawn(config()).await, Node::spawn(config()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_nobody_asked_the_manager_for_idles_out() {
    init_tracing();
    let (mut a, mut b) = pair().await;
    a.swarm_dial(&b);
    wait_until(&mut [&mut a, &mut b], Duration::from_secs(10), |s| {
        s[0].established == 1 && s[1].established == 1
    })
    .await
    .unwrap_or_else(|s| panic!("no connection: {s:#?}"));
    let connected = Instant::now();
    let result = settled(&mut [&mut a, &mut b], 6 * IDLE + HOLD, |s| {
        s[0].established == 0 && s[1].established == 0
    })
    .await;
    println!(
        "Swarm::dial between two nodes with the manager, idle timeout {IDLE:?}: {}",
        match &result {
            Ok(_) => format!("closed after {:?}", connected.elapsed()),
            Err(_) => format!("still open after {:?}", connected.elapsed()),
        }
    );
    result.unwrap_or_else(|s| panic!("the manager held an idle connection open: {s:#?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wanted_peer_is_held_open_past_the_idle_timeout() {
    init_tracing();
    let (mut a, mut b) = pair().await;
    a.send(Command::ManagerDial(b.peer, b.addr.clone()));
    wait_until(&mut [&mut a, &mut b], Duration::from_secs(10), |s| {
        s[0].established == 1 && s[1].established == 1
    })
    .await
    .unwrap_or_else(|s| panic!("no connection: {s:#?}"));
    let before = a.snapshot().events.len();
    // The scenario is "three idle timeouts pass": a hold, then the same single connection, and
    // nothing closed meanwhile.
    tokio::time::sleep(3 * IDLE).await;
    let s = a.snapshot();
    assert_eq!(s.established, 1);
    assert!(
        !s.events[before..]
            .iter()
            .any(|e| matches!(e, libp2p_connection_manager::Event::Disconnected { .. })),
        "{:#?}",
        &s.events[before..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protecting_a_peer_keeps_its_connection_and_unprotecting_lets_it_idle_out() {
    init_tracing();
    let (mut a, mut b) = pair().await;
    a.send(Command::Protect(b.peer, true));
    a.swarm_dial(&b);
    wait_until(&mut [&mut a, &mut b], Duration::from_secs(10), |s| {
        s[0].established == 1 && s[1].established == 1
    })
    .await
    .unwrap_or_else(|s| panic!("no connection: {s:#?}"));
    tokio::time::sleep(3 * IDLE).await;
    assert_eq!(a.snapshot().established, 1, "held while protected");
    a.send(Command::Protect(b.peer, false));
    settled(&mut [&mut a, &mut b], 6 * IDLE + HOLD, |s| {
        s[0].established == 0 && s[1].established == 0
    })
    .await
    .unwrap_or_else(|s| panic!("still held after unprotecting: {s:#?}"));
}
