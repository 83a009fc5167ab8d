//! Trimming above the high watermark.

use super::*;

fn trimming(low: usize, high: usize) -> Config {
    Config::default()
        .with_watermarks(low, high)
        .with_trim_grace(Duration::from_secs(10))
        .with_trim_silence(Duration::from_secs(30))
        .with_inactivity_timeout(None)
}

fn trimmed(events: &[Event]) -> Vec<Vec<PeerId>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Trimmed { peers } => Some(peers.clone()),
            _ => None,
        })
        .collect()
}

/// Establishes a connection to a fresh peer, numbered `n`.
fn connect(node: &mut Node, n: usize, initiator: Initiator) -> PeerId {
    let peer = PeerId::random();
    node.establish(cid(n), peer, initiator).unwrap();
    peer
}

#[test]
fn above_high_trims_exactly_to_low_in_the_documented_order() {
    let (mut a, _) = pair(trimming(3, 5));
    // Five peers, old enough to be trimmed, each differing in one thing.
    let valued = connect(&mut a, 1, Initiator::Remote);
    let slow = connect(&mut a, 2, Initiator::Local);
    let fast = connect(&mut a, 3, Initiator::Local);
    let inbound = connect(&mut a, 4, Initiator::Remote);
    let protected = connect(&mut a, 5, Initiator::Remote);
    a.manager.tag_peer(valued, "app", 10);
    a.manager.protect(protected, "bootstrap");
    a.manager
        .on_ping_success(a.now, cid(2), Duration::from_millis(300));
    a.manager
        .on_ping_success(a.now, cid(3), Duration::from_millis(5));
    a.manager
        .on_ping_success(a.now, cid(4), Duration::from_millis(5));
    a.manager
        .on_ping_success(a.now, cid(1), Duration::from_millis(5));
    a.advance(Duration::from_secs(60));
    let _ = a.actions();

    // The sixth, young, pushes the count over the high watermark.
    let young = connect(&mut a, 6, Initiator::Remote);
    let actions = a.actions();
    let events: Vec<Event> = actions
        .iter()
        .filter_map(|x| match x {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    // 6 connected, low 3: three go. Worst health first (slow), then inbound before outbound at
    // equal health (inbound, then fast); the valued one is kept.
    assert_eq!(trimmed(&events), vec![vec![slow, inbound, fast]]);
    let goodbyes: Vec<_> = actions
        .iter()
        .filter_map(|x| match x {
            Action::SendGoodbye { peer, reason, .. } => Some((*peer, *reason)),
            _ => None,
        })
        .collect();
    assert_eq!(goodbyes.len(), 3);
    assert!(goodbyes
        .iter()
        .all(|(_, r)| *r == DisconnectReason::NetworkRestructure));
    for kept in [valued, protected, young] {
        assert!(a.manager.is_connected(&kept));
    }
}

#[test]
fn protection_holds_while_any_tag_remains() {
    let (mut a, _) = pair(trimming(0, 1));
    let peer = PeerId::random();
    a.manager.protect(peer, "a");
    a.manager.protect(peer, "b");
    assert!(a.manager.unprotect(&peer, "a"));
    assert!(a.manager.is_protected(&peer));
    assert!(!a.manager.unprotect(&peer, "b"));
    assert!(!a.manager.is_protected(&peer));
    assert!(!a.manager.unprotect(&peer, "never"));
}

#[test]
fn a_burst_of_connections_is_trimmed_once_per_silence_period() {
    let (mut a, _) = pair(trimming(2, 4).with_trim_grace(Duration::ZERO));
    for n in 0..5 {
        connect(&mut a, n, Initiator::Remote);
    }
    assert_eq!(
        trimmed(&a.events()).len(),
        1,
        "the fifth crossed the watermark"
    );
    // Trimmed connections close; a burst brings the count back above high.
    for n in 10..15 {
        connect(&mut a, n, Initiator::Remote);
    }
    assert!(trimmed(&a.events()).is_empty(), "silence: no trim yet");
    a.advance(Duration::from_secs(29));
    assert!(trimmed(&a.events()).is_empty());
    a.advance(Duration::from_secs(1));
    assert_eq!(
        trimmed(&a.events()).len(),
        1,
        "trimmed when the silence ended"
    );
}

#[test]
fn force_trim_ignores_the_silence() {
    let (mut a, _) = pair(trimming(1, 2).with_trim_grace(Duration::ZERO));
    for n in 0..3 {
        connect(&mut a, n, Initiator::Remote);
    }
    let _ = a.events();
    for n in 10..13 {
        connect(&mut a, n, Initiator::Remote);
    }
    assert!(trimmed(&a.events()).is_empty());
    assert!(!a.manager.force_trim(a.now).is_empty());
}

#[test]
fn trimmed_peers_are_not_redialed_even_when_wanted() {
    let (mut a, _) = pair(trimming(0, 0).with_trim_grace(Duration::ZERO));
    let peer = PeerId::random();
    a.manager.dial(a.now, peer, vec![addr(2)]).unwrap();
    a.manager
        .on_pending_outbound(a.now, cid(1), Some(peer), &[])
        .unwrap();
    a.establish(cid(1), peer, Initiator::Local).unwrap();
    assert_eq!(
        a.closes(),
        vec![(cid(1), DisconnectReason::NetworkRestructure)]
    );
    a.manager.on_closed(a.now, cid(1), peer, CloseCause::Local);
    assert_eq!(redial_delay(&a.events()), None);
    a.advance(Duration::from_secs(3600));
    assert!(a.actions().is_empty());
    assert_eq!(a.manager.tracked_peers(), 0);
}
