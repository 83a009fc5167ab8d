#![cfg(feature = "testing")]
//! Partitions, slow links and cut connections between two real swarms (TCP on 127.0.0.1,
//! noise, yamux), made in-process with `testing::fault_transport`, and what the manager does
//! about them.
//!
//! Run with `cargo test --features testing --test fault_transport -- --nocapture` to see the
//! measured times.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    core::{upgrade::Version, Transport},
    identity::Keypair,
    noise,
    swarm::{ConnectionId, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Swarm,
};
use libp2p_connection_manager::{
    self as manager,
    testing::{fault_transport, Fault, FaultControl},
    Backoff, ClosedBy, DisconnectReason, Event,
};
use tokio::time::Instant;

const DEADLINE: Duration = Duration::from_secs(10);

/// Fast liveness, so that faults show within a second or two.
fn fast_config() -> manager::Config {
    manager::Config::default()
        .with_ping_interval(Duration::from_millis(200))
        .with_ping_timeout(Duration::from_millis(500))
        .with_inactivity_timeout(Some(Duration::from_secs(1)))
}

struct Node {
    swarm: Swarm<manager::Behaviour>,
    faults: FaultControl,
    peer: PeerId,
    addr: Multiaddr,
    /// Dials the manager asked the swarm for (`SwarmEvent::Dialing`).
    dials: usize,
}

impl Node {
    async fn new(config: manager::Config) -> Node {
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let (tcp, faults) = fault_transport(tcp::tokio::Transport::new(
            tcp::Config::default().nodelay(true),
        ));
        let transport = tcp
            .upgrade(Version::V1)
            .authenticate(noise::Config::new(&key).expect("noise config"))
            .multiplex(yamux::Config::default())
            .boxed();
        let mut swarm = Swarm::new(
            transport,
            manager::Behaviour::new(peer, config),
            peer,
            libp2p::swarm::Config::with_tokio_executor()
                .with_idle_connection_timeout(Duration::from_secs(60)),
        );
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
            .expect("listen");
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        Node {
            swarm,
            faults,
            peer,
            addr,
            dials: 0,
        }
    }

    /// The established connections to `peer` according to the manager, with their RTTs.
    fn connections_to(&self, peer: &PeerId) -> Vec<(ConnectionId, Option<Duration>)> {
        self.swarm
            .behaviour()
            .peer_info(peer)
            .map(|info| info.connections.iter().map(|c| (c.id, c.rtt)).collect())
            .unwrap_or_default()
    }

    /// Successful pings on the connection `id`, if it is established.
    fn pings(&self, peer: &PeerId, id: ConnectionId) -> Option<u64> {
        let info = self.swarm.behaviour().peer_info(peer)?;
        info.connections
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.pings)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Drives both swarms until `pick` returns something for a manager event of either side, or
/// fails after `deadline`. Every event is printed with the time since `start`.
async fn wait_for_event<T>(
    a: &mut Node,
    b: &mut Node,
    start: Instant,
    deadline: Duration,
    mut pick: impl FnMut(Side, &Event) -> Option<T>,
) -> T {
    let until = Instant::now() + deadline;
    loop {
        let (side, event) = tokio::time::timeout_at(until, next_event(a, b, start))
            .await
            .expect("the expected event within the deadline");
        if let Some(found) = pick(side, &event) {
            return found;
        }
    }
}

/// Drives both swarms until `condition` holds (checked after each event and every 20 ms, for
/// state that changes without an event, like an RTT), or fails after `deadline`. Returns the
/// manager events of that time.
async fn wait_until(
    a: &mut Node,
    b: &mut Node,
    start: Instant,
    deadline: Duration,
    mut condition: impl FnMut(&Node, &Node) -> bool,
) -> Vec<(Side, Event)> {
    let until = Instant::now() + deadline;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut events = Vec::new();
    while !condition(a, b) {
        tokio::select! {
            _ = tick.tick() => {}
            event = next_event(a, b, start) => events.push(event),
            _ = tokio::time::sleep_until(until) => panic!("condition not met within {deadline:?}"),
        }
    }
    events
}

/// Drives both swarms for `duration` (a scenario step, e.g. how long a fault lasts) and returns
/// the manager events of that time.
async fn run_for(
    a: &mut Node,
    b: &mut Node,
    start: Instant,
    duration: Duration,
) -> Vec<(Side, Event)> {
    let mut events = Vec::new();
    let until = Instant::now() + duration;
    while let Ok(event) = tokio::time::timeout_at(until, next_event(a, b, start)).await {
        events.push(event);
    }
    events
}

/// The next manager event of either swarm; other swarm events are printed (dials counted) and
/// skipped.
async fn next_event(a: &mut Node, b: &mut Node, start: Instant) -> (Side, Event) {
    loop {
        let (side, event) = tokio::select! {
            event = a.swarm.select_next_some() => (Side::A, event),
            event = b.swarm.select_next_some() => (Side::B, event),
        };
        let at = start.elapsed();
        match event {
            SwarmEvent::Dialing { connection_id, .. } => {
                println!("{at:>8.3?} {side:?} swarm: dialing ({connection_id})");
                match side {
                    Side::A => a.dials += 1,
                    Side::B => b.dials += 1,
                }
            }
            SwarmEvent::Behaviour(event) => {
                println!("{at:>8.3?} {side:?} {event:?}");
                return (side, event);
            }
            SwarmEvent::ConnectionClosed {
                connection_id,
                cause,
                ..
            } => println!("{at:>8.3?} {side:?} swarm: {connection_id} closed, cause {cause:?}"),
            SwarmEvent::ConnectionEstablished { connection_id, .. } => {
                println!("{at:>8.3?} {side:?} swarm: {connection_id} established")
            }
            _ => {}
        }
    }
}

/// Two nodes with `config`; `a` dials `b` with the manager (b becomes a wanted peer of a).
/// Returns once a kept the connection, with its id.
async fn connected_pair(config: manager::Config) -> (Node, Node, ConnectionId, Instant) {
    connected_pair_with(config.clone(), config).await
}

/// [`connected_pair`] with a configuration for each side.
async fn connected_pair_with(
    a_config: manager::Config,
    b_config: manager::Config,
) -> (Node, Node, ConnectionId, Instant) {
    let mut a = Node::new(a_config).await;
    let mut b = Node::new(b_config).await;
    let start = Instant::now();
    let (b_peer, b_addr) = (b.peer, b.addr.clone());
    a.swarm
        .behaviour_mut()
        .add_peer(b_peer, vec![b_addr])
        .expect("dial");
    let connection = wait_for_event(&mut a, &mut b, start, DEADLINE, |side, event| match event {
        Event::ConnectionKept {
            peer, connection, ..
        } if side == Side::A && *peer == b_peer => Some(*connection),
        _ => None,
    })
    .await;
    (a, b, connection, start)
}

fn is_kept(side: Side, event: &Event, want_side: Side, want_peer: PeerId) -> bool {
    matches!(event, Event::ConnectionKept { peer, .. } if side == want_side && *peer == want_peer)
}

fn is_redial(side: Side, event: &Event, want_peer: PeerId) -> bool {
    matches!(event, Event::RedialScheduled { peer, .. } if side == Side::A && *peer == want_peer)
}

#[tokio::test]
async fn blackhole_is_detected_as_timeout_and_the_initiator_reconnects_after_heal() {
    let (mut a, mut b, connection, start) = connected_pair(fast_config()).await;
    let b_peer = b.peer;
    // A ping has gone through: the inactivity countdown runs from a success, not from the start.
    wait_until(&mut a, &mut b, start, DEADLINE, |a, _| {
        a.connections_to(&b_peer)
            .first()
            .is_some_and(|(_, rtt)| rtt.is_some())
    })
    .await;

    let partitioned = Instant::now();
    a.faults.set(Fault::Blackhole);
    let (closed_by, detected) =
        wait_for_event(&mut a, &mut b, start, DEADLINE, |side, event| match event {
            Event::Disconnected {
                peer,
                connection: closed,
                reason,
                closed_by,
                ..
            } if side == Side::A && *peer == b_peer => {
                assert_eq!(*closed, connection);
                assert_eq!(*reason, DisconnectReason::Timeout);
                Some((*closed_by, partitioned.elapsed()))
            }
            _ => None,
        })
        .await;
    println!("blackhole detected by a after {detected:?} (closed by {closed_by:?})");
    // The inactivity timeout (1 s since the last successful ping, just before the blackhole),
    // then the goodbye timeout (2 s by default): a says goodbye Timeout before closing, and
    // that goodbye cannot get through. So about 3 s (1.3 s with a 300 ms goodbye timeout).
    assert_eq!(closed_by, ClosedBy::Local);
    assert!(detected >= Duration::from_millis(800), "{detected:?}");

    // The partition lasts until a's redial has connected at the TCP level (the transport
    // wraps the new stream): its noise handshake is stalled in the blackhole. After the heal
    // that same dial completes; no new dial is needed.
    assert_eq!(
        a.faults.connections(),
        0,
        "the old stream is closed (and parked)"
    );
    wait_until(&mut a, &mut b, start, DEADLINE, |a, _| {
        a.faults.connections() == 1
    })
    .await;
    let healed = Instant::now();
    a.faults.heal();
    let mut dial_failed = false;
    wait_for_event(&mut a, &mut b, start, DEADLINE, |side, event| {
        dial_failed |= matches!(event, Event::DialFailed { .. });
        is_kept(side, event, Side::A, b_peer).then_some(())
    })
    .await;
    assert!(!dial_failed, "the stalled dial resumes after the heal");
    println!("a connected again {:?} after the heal", healed.elapsed());
    assert_eq!(a.connections_to(&b_peer).len(), 1);
}

#[tokio::test]
async fn short_blackhole_leaves_the_connection_intact() {
    let (mut a, mut b, connection, start) = connected_pair(fast_config()).await;
    let b_peer = b.peer;
    let a_peer = a.peer;
    wait_until(&mut a, &mut b, start, DEADLINE, |a, _| {
        a.connections_to(&b_peer)
            .first()
            .is_some_and(|(_, rtt)| rtt.is_some())
    })
    .await;

    // Shorter than the inactivity timeout (1 s) minus a ping interval (200 ms).
    a.faults.set(Fault::Blackhole);
    let during = run_for(&mut a, &mut b, start, Duration::from_millis(300)).await;
    let pings_at_heal = a.pings(&b_peer, connection).expect("still established");
    a.faults.heal();
    // The held bytes get through and pings succeed again on the same connection: five more
    // (at 200 ms intervals), past the point where the inactivity timeout would have closed it.
    let after = wait_until(&mut a, &mut b, start, DEADLINE, |a, _| {
        a.pings(&b_peer, connection)
            .is_some_and(|pings| pings >= pings_at_heal + 5)
    })
    .await;
    let disconnects: Vec<_> = during
        .iter()
        .chain(&after)
        .filter(|(_, event)| matches!(event, Event::Disconnected { .. }))
        .collect();
    assert!(disconnects.is_empty(), "{disconnects:?}");
    assert_eq!(
        a.connections_to(&b_peer)
            .iter()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![connection]
    );
    let info = a.swarm.behaviour().peer_info(&b_peer).expect("connected");
    assert_eq!(info.connections[0].closing, None);
    assert_eq!(b.connections_to(&a_peer).len(), 1);
    assert_eq!(a.faults.connections(), 1);
}

#[tokio::test]
async fn delay_raises_the_rtt_and_heal_brings_it_back() {
    // The ping timeout must exceed the delayed RTT (2 x 300 ms), or every ping fails.
    let config = manager::Config::default()
        .with_ping_interval(Duration::from_millis(200))
        .with_ping_timeout(Duration::from_secs(2))
        .with_inactivity_timeout(Some(Duration::from_secs(5)));
    let (mut a, mut b, connection, start) = connected_pair(config).await;
    let b_peer = b.peer;

    let delay = Duration::from_millis(300);
    a.faults.set(Fault::Delay(delay));
    b.faults.set(Fault::Delay(delay));
    let slowed = Instant::now();
    wait_until(&mut a, &mut b, start, DEADLINE, |a, _| {
        a.connections_to(&b_peer)
            .first()
            .and_then(|(_, rtt)| *rtt)
            .is_some_and(|rtt| rtt > Duration::from_millis(500))
    })
    .await;
    println!(
        "rtt {:?} reached {:?} after the delay was set",
        a.connections_to(&b_peer)[0].1,
        slowed.elapsed()
    );
    // The added latency moves the health category down...
    let category = |a: &Node| a.swarm.behaviour().health(&b_peer).map(|h| h.category);
    wait_until(&mut a, &mut b, start, DEADLINE, |a, _| {
        category(a).is_some_and(|c| c < manager::HealthCategory::Excellent)
    })
    .await;
    println!("health {:?} with the delay", category(&a));

    a.faults.heal();
    b.faults.heal();
    wait_until(&mut a, &mut b, start, DEADLINE, |a, _| {
        a.connections_to(&b_peer)
            .first()
            .and_then(|(_, rtt)| *rtt)
            .is_some_and(|rtt| rtt < Duration::from_millis(100))
    })
    .await;
    println!(
        "rtt {:?} after the heal",
        a.connections_to(&b_peer)[0].1.unwrap_or_default()
    );
    // ...and back up once it is gone.
    wait_until(&mut a, &mut b, start, DEADLINE, |a, _| {
        category(a) == Some(manager::HealthCategory::Excellent)
    })
    .await;
    // The slow link was slow, not broken: the same connection throughout.
    assert_eq!(a.connections_to(&b_peer)[0].0, connection);
}

#[tokio::test]
async fn cut_closes_at_once_and_only_the_initiator_redials_though_both_want_each_other() {
    // a dialed b, and b wants a too, so either could redial. The initiator a redials on its
    // timeout backoff (3 s here). b, the listener, would redial on its own backoff (1 s here)
    // if it had dialed the lost connection; as the side that did not, it waits the duplicate
    // grace (5 s) on top, as a fallback, and a is back before then.
    let fixed = |delay| Backoff::new(delay, 1.0, delay).with_jitter(0.0);
    let (mut a, mut b, connection, start) = connected_pair_with(
        fast_config().with_timeout_backoff(fixed(Duration::from_secs(3))),
        fast_config().with_timeout_backoff(fixed(Duration::from_secs(1))),
    )
    .await;
    let b_peer = b.peer;
    let a_peer = a.peer;
    let a_addr = a.addr.clone();
    wait_until(&mut a, &mut b, start, DEADLINE, |_, b| {
        b.connections_to(&a_peer).len() == 1
    })
    .await;
    // Connected already: b now wants a without dialing it.
    b.swarm
        .behaviour_mut()
        .add_peer(a_peer, vec![a_addr])
        .expect("b wants a");
    assert!(
        b.swarm
            .behaviour()
            .peer_info(&a_peer)
            .expect("known")
            .wanted
    );

    let cut = Instant::now();
    a.faults.set(Fault::Cut);
    let mut a_closed = None;
    let mut b_closed = None;
    let mut redial_scheduled = false;
    // b's fallback may be planned in the same poll as its disconnect: watch for it from here.
    let mut fallback = None;
    wait_for_event(&mut a, &mut b, start, DEADLINE, |side, event| {
        redial_scheduled |= is_redial(side, event, b_peer);
        if let Event::RedialScheduled { peer, delay, .. } = event {
            if side == Side::B && *peer == a_peer {
                fallback = Some(*delay);
            }
        }
        if let Event::Disconnected {
            peer,
            connection: closed,
            reason,
            closed_by,
            ..
        } = event
        {
            match side {
                Side::A if *peer == b_peer => {
                    assert_eq!(*closed, connection);
                    a_closed = Some((*reason, *closed_by, cut.elapsed()));
                }
                Side::B if *peer == a_peer => b_closed = Some((*reason, *closed_by)),
                _ => {}
            }
        }
        (a_closed.is_some() && b_closed.is_some()).then_some(())
    })
    .await;
    let (a_reason, a_closed_by, after) = a_closed.expect("a's disconnect");
    println!("cut: a {a_reason:?} by {a_closed_by:?} after {after:?}; b {b_closed:?}");
    // a's own socket failed under it (ConnectionReset from the cut, surfacing through yamux
    // as the swarm's `ConnectionError::IO`). The manager files every transport failure it did
    // not ask for under reason Timeout, closed by the Remote (documented on `ClosedBy`), even
    // when, as here, the failure is local. b sees its TCP stream end (in practice with
    // "connection reset by peer"), also a transport failure: Timeout, Remote. Neither waited
    // for a ping: the cut shows at once.
    assert_eq!(
        (a_reason, a_closed_by),
        (DisconnectReason::Timeout, ClosedBy::Remote)
    );
    assert_eq!(
        b_closed,
        Some((DisconnectReason::Timeout, ClosedBy::Remote))
    );
    assert!(after < Duration::from_millis(500), "{after:?}");

    // The cut is sticky for the old stream only; new connections are healthy after the heal.
    a.faults.heal();
    wait_for_event(&mut a, &mut b, start, DEADLINE, |side, event| {
        redial_scheduled |= is_redial(side, event, b_peer);
        if let Event::RedialScheduled { peer, delay, .. } = event {
            if side == Side::B && *peer == a_peer {
                fallback = Some(*delay);
            }
        }
        is_kept(side, event, Side::A, b_peer).then_some(())
    })
    .await;
    assert!(redial_scheduled, "a reconnects through a scheduled redial");
    assert_ne!(a.connections_to(&b_peer)[0].0, connection);
    // b planned its fallback: its own backoff (1 s) and the duplicate grace (5 s).
    assert_eq!(fallback, Some(Duration::from_secs(6)));
    // a's connection arrived first: b's fallback is off, and b never dialed, also past the
    // moment its fallback was due.
    wait_until(&mut a, &mut b, start, DEADLINE, |_, b| {
        b.connections_to(&a_peer).len() == 1
    })
    .await;
    assert_eq!(
        b.swarm
            .behaviour()
            .peer_info(&a_peer)
            .expect("known")
            .next_redial,
        None
    );
    run_for(
        &mut a,
        &mut b,
        start,
        Duration::from_secs(7).saturating_sub(cut.elapsed()),
    )
    .await;
    assert_eq!((a.dials, b.dials), (2, 0), "only the initiator dialed");
    assert_eq!(b.connections_to(&a_peer).len(), 1);
}
