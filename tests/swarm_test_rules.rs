//! The manager's rules at the behaviour level, over libp2p-swarm-test's memory transport:
//! bans, the established limits, redials, protection from trimming, duplicates and the per-peer
//! cap. Real TCP adds nothing to these; the per-IP rules and the simultaneous-open race stay on
//! TCP (`bans_and_limits.rs`, `one_connection.rs`).

mod swarm_test_support;

use std::time::Duration;

use libp2p::swarm::SwarmEvent;
use libp2p_connection_manager::{
    Backoff, BanTarget, ClosedBy, Config, Denial, DisconnectReason, Event, LimitKind, Limits,
};
use libp2p_swarm_test::SwarmExt;
use swarm_test_support::*;

#[tokio::test]
async fn a_ban_closes_a_connected_peer_with_goodbye_banned_and_refuses_it_after() {
    let mut a = listening(Config::default()).await;
    let mut b = listening(Config::default()).await;
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    a.connect(&mut b).await;

    a.behaviour_mut().ban_peer(b_id, None);
    // A closes its connection as `Banned`; B hears why before it closes.
    let (mut closed, mut b_told) = ([false; 2], false);
    wait_for_event(
        &mut [&mut a, &mut b],
        "the ban's goodbye and close",
        |node, event| {
            let (remote, side) = [(b_id, ClosedBy::Local), (a_id, ClosedBy::Remote)][node];
            match disconnected(event) {
                Some((peer, reason, closed_by)) if peer == remote => {
                    assert_eq!((reason, closed_by), (DisconnectReason::Banned, side));
                    closed[node] = true;
                }
                _ => {}
            }
            if let (1, Event::GoodbyeReceived { reason, .. }) = (node, event) {
                assert_eq!(*reason, DisconnectReason::Banned);
                b_told = true;
            }
            (closed == [true; 2] && b_told).then_some(())
        },
    )
    .await;
    assert_eq!(established(&a), 0);
    assert!(a
        .behaviour()
        .bans()
        .iter()
        .any(|ban| ban.target == BanTarget::Peer(b_id)));

    // B comes back on its own: A refuses it once it knows who it is.
    dial(&mut b, &a);
    let denial = wait_for_event(
        &mut [&mut a, &mut b],
        "A refuses banned B",
        |node, event| match event {
            Event::Denied { peer, denial, .. } if node == 0 && *peer == Some(b_id) => {
                Some(denial.clone())
            }
            _ => None,
        },
    )
    .await;
    assert!(
        matches!(denial, Denial::PeerBanned { peer, remaining: None } if peer == b_id),
        "{denial:?}"
    );
    assert!(!a.behaviour().is_connected(&b_id));
}

#[tokio::test]
async fn the_established_inbound_limit_refuses_the_next_connection_with_a_typed_denial() {
    const LIMIT: u32 = 2;
    let limits = Limits::new().with_max_established_incoming(Some(LIMIT));
    let mut a = listening(Config::default().with_limits(limits)).await;
    let mut b = node(Config::default());
    let mut c = node(Config::default());
    let mut d = node(Config::default());
    let d_id = *d.local_peer_id();
    b.connect(&mut a).await;
    c.connect(&mut a).await;
    assert_eq!(established(&a), LIMIT);

    dial(&mut d, &a);
    // A refuses D with a typed denial, and tells D why before closing.
    let (mut denial, mut d_told, mut d_closed) = (None, false, false);
    wait_for(
        &mut [&mut a, &mut d],
        "A refuses the third inbound connection",
        |node, event| {
            match (node, event) {
                (
                    0,
                    SwarmEvent::Behaviour(Event::Denied {
                        peer,
                        denial: refused,
                        ..
                    }),
                ) => {
                    assert_eq!(*peer, Some(d_id));
                    denial = Some(refused.clone());
                }
                (
                    1,
                    SwarmEvent::Behaviour(Event::GoodbyeReceived {
                        reason,
                        retry_after,
                        ..
                    }),
                ) => {
                    assert_eq!(*reason, DisconnectReason::ResourceConstraint);
                    assert!(
                        retry_after.is_some(),
                        "a limit refusal says when to come back"
                    );
                    d_told = true;
                }
                (1, SwarmEvent::ConnectionClosed { .. }) => d_closed = true,
                _ => {}
            }
            (denial.is_some() && d_told && d_closed).then_some(())
        },
    )
    .await;
    assert_eq!(
        denial,
        Some(Denial::Limit {
            kind: LimitKind::EstablishedIncoming,
            limit: LIMIT,
            current: LIMIT,
        })
    );
    assert_eq!(
        a.behaviour().stats().established_connections,
        LIMIT as usize
    );
    assert!(!a.behaviour().is_connected(&d_id));
}

#[tokio::test]
async fn a_wanted_peer_is_redialed_after_the_remote_closes() {
    // The remote hangs up without a goodbye: the closed backoff, short here.
    let backoff = Backoff::new(Duration::from_millis(50), 2.0, Duration::from_millis(200));
    let mut a = node(Config::default().with_closed_backoff(backoff));
    let mut b = listening(Config::default()).await;
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    a.behaviour_mut()
        .add_peer(b_id, vec![address(&b)])
        .expect("B may be dialed");
    wait_for_event(
        &mut [&mut a, &mut b],
        "A keeps a connection to B",
        |node, event| {
            matches!((node, event), (0, Event::ConnectionKept { peer, .. }) if *peer == b_id)
                .then_some(())
        },
    )
    .await;

    run_until(&mut [&mut a, &mut b], "B has the connection too", |nodes| {
        nodes[1].is_connected(&a_id)
    })
    .await;
    assert!(b.disconnect_peer_id(a_id).is_ok());
    let (mut lost, mut scheduled) = (None, false);
    let what = "A redials B and keeps the new connection";
    wait_for_event(&mut [&mut a, &mut b], what, |node, event| {
        if node != 0 {
            return None;
        }
        match disconnected(event) {
            Some((peer, reason, closed_by)) if peer == b_id => lost = Some((reason, closed_by)),
            _ => {}
        }
        match event {
            Event::RedialScheduled { peer, .. } if *peer == b_id => scheduled = true,
            Event::ConnectionKept { peer, .. } if *peer == b_id => {
                assert!(scheduled, "kept again only after a redial");
                return Some(());
            }
            _ => {}
        }
        None
    })
    .await;
    assert_eq!(lost, Some((DisconnectReason::Closed, ClosedBy::Remote)));
    assert!(a.behaviour().is_connected(&b_id));
}

#[tokio::test]
async fn a_protected_peer_survives_force_trim() {
    // A low watermark of 0: every peer that is not protected goes.
    let config = Config::default()
        .with_watermarks(0, 100)
        .with_trim_grace(Duration::ZERO);
    let mut a = node(config);
    let mut b = listening(Config::default()).await;
    let mut c = listening(Config::default()).await;
    let mut d = listening(Config::default()).await;
    let (b_id, c_id, d_id) = (*b.local_peer_id(), *c.local_peer_id(), *d.local_peer_id());
    a.connect(&mut b).await;
    a.connect(&mut c).await;
    a.connect(&mut d).await;

    a.behaviour_mut().protect(b_id, "test");
    let mut trimmed = a.behaviour_mut().force_trim();
    trimmed.sort();
    let mut expected = vec![c_id, d_id];
    expected.sort();
    assert_eq!(trimmed, expected);

    let mut told = 0;
    wait_for(
        &mut [&mut a, &mut b, &mut c, &mut d],
        "C and D hear goodbye `NetworkRestructure` and are closed",
        |node, event| {
            match (node, event) {
                (2 | 3, SwarmEvent::Behaviour(Event::GoodbyeReceived { reason, .. })) => {
                    assert_eq!(*reason, DisconnectReason::NetworkRestructure);
                    told += 1;
                }
                (1, SwarmEvent::ConnectionClosed { .. }) => panic!("B was closed: {event:?}"),
                _ => {}
            }
            (told == 2).then_some(())
        },
    )
    .await;
    run_until(
        &mut [&mut a, &mut b, &mut c, &mut d],
        "A keeps B only",
        |nodes| established(nodes[0]) == 1,
    )
    .await;
    assert!(a.behaviour().is_connected(&b_id));
    assert!(a.is_connected(&b_id));
}

#[tokio::test]
async fn connecting_twice_ends_with_one_connection_and_duplicate_closed() {
    let config = Config::default().with_duplicate_grace(Duration::from_millis(50));
    let mut a = node(config.clone());
    let mut b = listening(config).await;
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    dial(&mut a, &b);
    dial(&mut a, &b);

    // Both sides reach the same verdict; the one that closes first says so, the other may
    // hear the goodbye before it decides on its own.
    let (closer, kept) = wait_for_event(
        &mut [&mut a, &mut b],
        "a side closes the duplicate",
        |node, event| match event {
            Event::DuplicateClosed { peer, kept, closed } => {
                assert_eq!(*peer, [b_id, a_id][node]);
                assert_ne!(kept, closed);
                Some((node, *kept))
            }
            _ => None,
        },
    )
    .await;
    run_until(
        &mut [&mut a, &mut b],
        "one connection left on each side",
        |nodes| nodes.iter().all(|node| established(node) == 1),
    )
    .await;
    let (closer, remote) = if closer == 0 { (&a, b_id) } else { (&b, a_id) };
    let left = closer
        .behaviour()
        .peer_info(&remote)
        .expect("a known peer")
        .connections;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].id, kept, "the closer kept what it said it kept");
}

#[tokio::test]
async fn the_per_peer_cap_refuses_connections_past_it() {
    const CAP: u32 = 2;
    // Duplicates drain for a while: the cap, not the duplicate rule, meets the third.
    let grace = Duration::from_secs(5);
    let mut a = listening(
        Config::default()
            .with_max_established_per_peer(CAP)
            .with_duplicate_grace(grace),
    )
    .await;
    let mut b = node(
        Config::default()
            .with_max_established_per_peer(8)
            .with_duplicate_grace(grace),
    );
    let b_id = *b.local_peer_id();
    for _ in 0..=CAP {
        dial(&mut b, &a);
    }

    let denial = wait_for_event(
        &mut [&mut a, &mut b],
        "A refuses B's third connection",
        |node, event| match (node, event) {
            (0, Event::Denied { denial, .. }) => Some(denial.clone()),
            _ => None,
        },
    )
    .await;
    assert_eq!(
        denial,
        Denial::PerPeerLimit {
            peer: b_id,
            limit: CAP,
            current: CAP,
        }
    );
    assert!(established(&a) <= CAP);
}
