//! Phases, bootstrap, shutdown, and the keep-alive that makes closing the manager's decision.

mod common;

use std::time::Duration;

use common::*;
use libp2p_connection_manager::{ClosedBy, Config, DisconnectReason, Event, Phase};

fn phase_changes(s: &Snapshot) -> Vec<(Phase, Phase)> {
    s.events
        .iter()
        .filter_map(|e| match e {
            Event::PhaseChanged { old, new } => Some((*old, *new)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_bootstraps_connects_and_shuts_down_with_goodbyes() {
    init_tracing();
    let mut seed = Node::spawn(NodeConfig::default()).await;
    let mut node = Node::spawn(NodeConfig {
        manager: Config::default().with_bootstrap_peer(seed.peer, seed.addr.clone()),
        ..Default::default()
    })
    .await;
    let s = settled(&mut [&mut seed, &mut node], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 1) && s[1].phase == Some(Phase::Connected)
    })
    .await
    .unwrap_or_else(|s| panic!("bootstrap failed: {s:#?}"));
    assert_eq!(
        phase_changes(&s[1]),
        vec![
            (Phase::Disconnected, Phase::Bootstrapping),
            (Phase::Bootstrapping, Phase::Connected)
        ]
    );

    node.send(Command::Shutdown);
    let s = settled(&mut [&mut seed, &mut node], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 0)
            && s[1].phase == Some(Phase::Terminated)
            && s[0].events.iter().any(|e| {
                matches!(
                    e,
                    Event::GoodbyeReceived {
                        reason: DisconnectReason::Normal,
                        ..
                    }
                )
            })
    })
    .await
    .unwrap_or_else(|s| panic!("shutdown incomplete: {s:#?}"));
    assert_eq!(
        phase_changes(&s[1]).last(),
        Some(&(Phase::Connected, Phase::Terminated))
    );
    assert!(
        !s[1]
            .events
            .iter()
            .any(|e| matches!(e, Event::RedialScheduled { .. })),
        "nothing is redialed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_connections_outlive_the_swarm_idle_timeout() {
    init_tracing();
    // The swarm would close an idle connection at once; the sibling ping does not count as
    // activity. The manager's keep-alive holds the connection through several pings.
    let config = || NodeConfig {
        idle_timeout: Some(Duration::ZERO),
        sibling_ping_interval: Some(Duration::from_millis(50)),
        ..Default::default()
    };
    let mut a = Node::spawn(config()).await;
    let mut b = Node::spawn(config()).await;
    a.send(Command::ManagerDial(b.peer, b.addr.clone()));
    let s = settled(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.pings >= 10 && s.established == 1)
    })
    .await
    .unwrap_or_else(|s| panic!("connection did not live: {s:#?}"));
    for s in &s {
        assert_eq!(s.established, 1);
        assert!(
            !s.events
                .iter()
                .any(|e| matches!(e, Event::Disconnected { .. })),
            "{s:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keep_alive_idle_closing_is_left_to_the_swarm() {
    init_tracing();
    let config = || NodeConfig {
        manager: Config::default().with_keep_alive(false),
        idle_timeout: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let mut a = Node::spawn(config()).await;
    let mut b = Node::spawn(config()).await;
    a.swarm_dial(&b);
    let closed = |s: &Snapshot| {
        s.events
            .iter()
            .any(|e| matches!(e, Event::Disconnected { .. }))
    };
    let idle_close = |s: &Snapshot| {
        s.events.iter().any(|e| {
            matches!(
                e,
                Event::Disconnected {
                    reason: DisconnectReason::Normal,
                    closed_by: ClosedBy::Local,
                    ..
                }
            )
        })
    };
    settled(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 0 && closed(s)) && s.iter().any(idle_close)
    })
    .await
    .unwrap_or_else(|s| panic!("idle connection not closed: {s:#?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_falls_silent_is_closed_as_timed_out_and_redialed() {
    init_tracing();
    // The remote keeps its sockets open but stops answering: TCP alone never notices.
    let manager = Config::default()
        .with_ping_interval(Duration::from_millis(200))
        .with_ping_timeout(Duration::from_millis(500))
        .with_inactivity_timeout(Some(Duration::from_secs(1)))
        .with_goodbye_timeout(Duration::from_millis(300));
    let mut a = Node::spawn(NodeConfig {
        manager: manager.clone(),
        ..Default::default()
    })
    .await;
    let mut b = Node::spawn(NodeConfig {
        manager,
        ..Default::default()
    })
    .await;
    a.send(Command::ManagerDial(b.peer, b.addr.clone()));
    wait_until(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 1 && s.is_quiet())
    })
    .await
    .expect("connected");

    b.send(Command::Freeze);
    let s = wait_until(&mut [&mut a], Duration::from_secs(20), |s| {
        s[0].events.iter().any(|e| {
            matches!(
                e,
                Event::Disconnected {
                    reason: DisconnectReason::Timeout,
                    closed_by: ClosedBy::Local,
                    ..
                }
            )
        }) && s[0]
            .events
            .iter()
            .any(|e| matches!(e, Event::RedialScheduled { .. }))
    })
    .await
    .unwrap_or_else(|s| panic!("silent peer not detected: {s:#?}"));
    assert_eq!(s[0].established, 0);
    b.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_that_restarts_is_reconnected_by_the_initiator() {
    init_tracing();
    let key = libp2p::identity::Keypair::generate_ed25519();
    let mut a = Node::spawn(NodeConfig::default()).await;
    let mut b = Node::spawn(NodeConfig {
        keypair: Some(key.clone()),
        ..Default::default()
    })
    .await;
    let port = match b.addr.iter().nth(1) {
        Some(libp2p::multiaddr::Protocol::Tcp(port)) => port,
        other => panic!("unexpected {other:?}"),
    };
    a.send(Command::ManagerDial(b.peer, b.addr.clone()));
    wait_until(&mut [&mut a, &mut b], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 1 && s.is_quiet())
    })
    .await
    .expect("connected");

    // b dies without a goodbye and comes back with the same key on the same port.
    b.kill();
    wait_until(&mut [&mut a], Duration::from_secs(20), |s| {
        s[0].established == 0
            && s[0]
                .events
                .iter()
                .any(|e| matches!(e, Event::RedialScheduled { .. }))
    })
    .await
    .unwrap_or_else(|s| panic!("a did not notice: {s:#?}"));
    let mut b = Node::spawn(NodeConfig {
        keypair: Some(key),
        listen_port: Some(port),
        ..Default::default()
    })
    .await;
    let s = settled(&mut [&mut a, &mut b], Duration::from_secs(30), |s| {
        s.iter().all(|s| s.established == 1)
    })
    .await
    .unwrap_or_else(|s| panic!("not reconnected: {s:#?}"));
    // The initiator came back; the restarted side only accepted. (It knows nothing of `a`, so
    // it could not have redialed: that only the initiator redials when the listener wants the
    // peer too is shown in tests/fault_transport.rs, where both sides live through the loss.)
    assert_eq!(
        s[0].initiators[0].1,
        vec![libp2p_connection_manager::Initiator::Local]
    );
    assert_eq!(
        s[1].initiators[0].1,
        vec![libp2p_connection_manager::Initiator::Remote]
    );
}
