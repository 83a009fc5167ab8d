//! The test harness's own promises (tests/common): a node that panics fails the test with its
//! message, and "settled" means stable over a hold with no timer due, not quiet for an instant.

mod common;

use std::{
    panic::AssertUnwindSafe,
    time::{Duration, Instant},
};

use common::*;
use futures::FutureExt;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p_connection_manager::{Backoff, Config, Event};

/// The message of a caught panic.
fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_node_fails_the_wait_at_once_with_its_message() {
    init_tracing();
    let mut node = Node::spawn(NodeConfig::default()).await;
    let peer = node.peer;
    node.send(Command::With(Box::new(|_| {
        panic!("the node's own assertion failed")
    })));
    let started = Instant::now();
    let deadline = Duration::from_secs(20);
    let waited = AssertUnwindSafe(async move {
        // Never true: only the node's panic can end this before the deadline.
        let _ = wait_until(&mut [&mut node], deadline, |s| s[0].established == 1).await;
    })
    .catch_unwind()
    .await;
    let panic = waited.expect_err("the wait fails");
    let text = message(panic.as_ref());
    assert!(
        text.contains("the node's own assertion failed") && text.contains(&peer.to_string()),
        "the failure names the node and carries its panic: {text:?}"
    );
    assert!(
        started.elapsed() < deadline / 4,
        "surfaced after {:?}, not at the deadline",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_node_nobody_waits_on_fails_the_test_when_it_is_dropped_or_sent_to() {
    init_tracing();
    for drop_it in [true, false] {
        let node = Node::spawn(NodeConfig::default()).await;
        node.send(Command::With(Box::new(|_| panic!("boom in the node task"))));
        // Wait (with a deadline) until the node's task has ended with its panic.
        let until = Instant::now() + Duration::from_secs(10);
        while node.panicked().is_none() {
            assert!(Instant::now() < until, "the node task did not panic");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let caught = std::panic::catch_unwind(AssertUnwindSafe(move || {
            if drop_it {
                drop(node);
            } else {
                node.send(Command::Shutdown);
                std::mem::forget(node);
            }
        }));
        let text = message(caught.expect_err("the test fails").as_ref());
        assert!(text.contains("boom in the node task"), "{text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_about_to_redial_is_quiet_but_not_settled() {
    init_tracing();
    // A peer that is gone: every dial is refused by the kernel at once, and redialed 300 ms
    // later, for ever.
    let gone = Node::spawn(NodeConfig::default()).await;
    let (peer, addr) = (gone.peer, gone.addr.clone());
    gone.stop().await;
    let mut node = Node::spawn(NodeConfig {
        manager: Config::default().with_timeout_backoff(
            Backoff::new(Duration::from_millis(300), 1.0, Duration::from_millis(300))
                .with_jitter(0.0),
        ),
        ..Default::default()
    })
    .await;
    node.send(Command::ManagerDial(peer, addr));
    // Between two dials the node looks quiet: nothing pending, nothing closing.
    wait_until(&mut [&mut node], Duration::from_secs(10), |s| {
        s[0].dials >= 3 && s[0].established == 0 && s[0].is_quiet()
    })
    .await
    .unwrap_or_else(|s| panic!("no redials: {s:#?}"));
    // But a redial is always less than the hold away.
    let result = settled(&mut [&mut node], Duration::from_secs(4), |s| {
        s[0].established == 0
    })
    .await;
    assert!(
        result.is_err(),
        "a node redialing every 300 ms counted as settled: {:#?}",
        result.map(|s| (s[0].dials, s[0].next_timer))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_waits_out_a_draining_duplicate() {
    init_tracing();
    let mut dialer = Node::spawn(NodeConfig::default()).await;
    let (mut listener, addrs) = Node::spawn_with_listeners(NodeConfig {
        extra_listeners: 1,
        ..Default::default()
    })
    .await;
    for addr in addrs {
        dialer.send(Command::SwarmDial(
            DialOpts::peer_id(listener.peer)
                .addresses(vec![addr])
                .condition(PeerCondition::Always)
                .build(),
        ));
    }
    // "Both connected" holds as soon as the first connection is up; the loser of the two then
    // drains for a second (a timer) before it is closed. Settled is after that.
    let s = settled(
        &mut [&mut dialer, &mut listener],
        Duration::from_secs(20),
        |s| s.iter().all(|s| s.established >= 1),
    )
    .await
    .unwrap_or_else(|s| panic!("did not settle: {s:#?}"));
    for s in &s {
        assert_eq!(s.established, 1, "{s:#?}");
        assert_eq!(s.connections.len(), 1, "{s:#?}");
        assert_eq!(s.connections, s.manager_connections);
    }
    assert!(
        s[0].events
            .iter()
            .any(|e| matches!(e, Event::DuplicateClosed { .. })),
        "{:#?}",
        s[0].events
    );
}
