//! Composed beside behaviours that deny connections, the manager keeps no state for what
//! they refused.

mod common;

use std::time::Duration;

use common::*;
use libp2p::connection_limits::ConnectionLimits;
use libp2p_connection_manager::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_denied_by_connection_limits_leave_no_phantom_peers() {
    init_tracing();
    let mut hub = Node::spawn(NodeConfig {
        limits: Some(ConnectionLimits::default().with_max_established_incoming(Some(1))),
        ..Default::default()
    })
    .await;
    let mut first = Node::spawn(NodeConfig::default()).await;
    let mut second = Node::spawn(NodeConfig::default()).await;

    first.swarm_dial(&hub);
    wait_until(&mut [&mut hub, &mut first], Duration::from_secs(20), |s| {
        s.iter().all(|s| s.established == 1 && s.is_quiet())
    })
    .await
    .expect("first connected");

    // The hub's connection_limits refuses the second inbound connection after our manager
    // accepted it: the manager must forget it.
    second.swarm_dial(&hub);
    let s = settled(
        &mut [&mut hub, &mut first, &mut second],
        Duration::from_secs(30),
        |s| {
            // The second node's attempt ended: refused during or right after its handshake.
            let hub_saw_second = s[2]
                .events
                .iter()
                .any(|e| matches!(e, Event::DialFailed { .. } | Event::Disconnected { .. }));
            hub_saw_second
                && s.iter()
                    .all(|s| s.established as usize == s.manager_established)
                && s[0].established == 1
                && s[0].manager_tracked == 1
                && s[1].established == 1
                && s[2].established == 0
                && s[2].manager_tracked == 0
        },
    )
    .await
    .unwrap_or_else(|s| panic!("state left behind: {s:#?}"));
    assert_eq!(s[0].connections.len(), 1);
    assert_eq!(s[0].connections[0].0, first.peer);
}
