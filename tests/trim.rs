//! Trimming over TCP: the remote learns why, and nobody comes straight back.

mod common;

use std::time::Duration;

use common::*;
use libp2p_connection_manager::{Config, DisconnectReason, Event};

fn redial_delay(s: &Snapshot) -> Option<Duration> {
    s.events.iter().find_map(|e| match e {
        Event::RedialScheduled { delay, .. } => Some(*delay),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_above_its_high_watermark_trims_to_low_with_goodbye_network_restructure() {
    init_tracing();
    let mut hub = Node::spawn(NodeConfig {
        manager: Config::default()
            .with_watermarks(1, 2)
            .with_trim_grace(Duration::ZERO),
        ..Default::default()
    })
    .await;
    let mut leaves = Vec::new();
    for _ in 0..3 {
        leaves.push(Node::spawn(NodeConfig::default()).await);
    }
    for leaf in &leaves {
        leaf.send(Command::ManagerDial(hub.peer, hub.addr.clone()));
    }
    let restructured = |s: &Snapshot| {
        s.events.iter().any(|e| {
            matches!(
                e,
                Event::GoodbyeReceived {
                    reason: DisconnectReason::NetworkRestructure,
                    ..
                }
            )
        })
    };
    let mut nodes: Vec<&mut Node> = std::iter::once(&mut hub).chain(leaves.iter_mut()).collect();
    let s = settled(&mut nodes, Duration::from_secs(20), |s| {
        s[0].established == 1
            && s[1..]
                .iter()
                .filter(|s| restructured(s) && s.established == 0 && redial_delay(s).is_some())
                .count()
                == 2
    })
    .await
    .unwrap_or_else(|s| panic!("hub did not trim: {s:#?}"));
    assert!(s[0]
        .events
        .iter()
        .any(|e| matches!(e, Event::Trimmed { peers, .. } if peers.len() == 2)));
    // The trimmed leaves wanted the hub, but a remote restructure is not retried at once.
    for leaf in s[1..].iter().filter(|s| restructured(s)) {
        assert_eq!(leaf.established, 0);
        let delay = redial_delay(leaf);
        assert!(
            delay.is_some_and(|d| d >= Duration::from_secs(20)),
            "{delay:?}"
        );
    }
}
