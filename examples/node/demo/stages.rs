//! The demo's four stages.

use std::time::Duration;

use libp2p_connection_manager::{DisconnectReason, Event, Initiator};
use tokio::time::Instant;

use super::{
    cluster::Cluster, node_task::Command, summary::list, Outcome, Transport, CONVERGE_DEADLINE,
    DEMO_BAN, LOSS_DEADLINE, SETTLE_DEADLINE,
};

/// Stage 1: every node dials every other at once; every pair must end with one connection.
pub async fn converge(cluster: &mut Cluster, outcome: &mut Outcome) -> bool {
    let started = Instant::now();
    cluster.dial_everyone_at_once();
    let held = cluster
        .wait_until(CONVERGE_DEADLINE, Cluster::is_settled)
        .await;
    let took = started.elapsed();
    if held {
        println!("  every pair has exactly one connection after {took:.2?}");
    } else {
        let what =
            format!("no convergence to one connection per pair within {CONVERGE_DEADLINE:?}");
        outcome.fail(cluster, what);
    }
    outcome.record(cluster, "converged", held, took)
}

/// Stage 2: node `index` is killed and restarted with the same key on the same port. The peers
/// that had dialed it must redial it; it dials again the peers it had dialed; every pair must be
/// back to one connection.
pub async fn restart(cluster: &mut Cluster, outcome: &mut Outcome, index: usize) -> bool {
    match kill_and_restart(cluster, index).await {
        Ok(took) => outcome.record(cluster, "restarted", true, took),
        Err(failure) => {
            outcome.fail(cluster, failure.what);
            outcome.record(cluster, "restarted", false, failure.took)
        }
    }
}

/// Why a stage did not hold, and how long it ran.
pub struct StageFailure {
    pub what: String,
    pub took: Duration,
}

pub fn failure(what: String, took: Duration) -> StageFailure {
    StageFailure { what, took }
}

/// The steps of stage 2; on success, the time from the restart to one connection per pair.
pub async fn kill_and_restart(
    cluster: &mut Cluster,
    index: usize,
) -> Result<Duration, StageFailure> {
    let others: Vec<usize> = (0..cluster.size()).filter(|&n| n != index).collect();
    let dialed_it: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&n| cluster.initiator(n, index) == Some(Initiator::Local))
        .collect();
    let it_dialed: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&n| cluster.initiator(index, n) == Some(Initiator::Local))
        .collect();
    if !keep_node(cluster, &others, index).await {
        let what = format!("the other nodes did not all mark node {index} as wanted");
        return Err(failure(what, Duration::ZERO));
    }

    println!(
        "  node {index} is killed (nodes {} had dialed it, it had dialed {})",
        list(&dialed_it),
        list(&it_dialed)
    );
    let events_before = cluster.events.len();
    kill_and_await_loss(cluster, index, &others).await?;

    let started = Instant::now();
    if let Err(error) = cluster.restart(index).await {
        let what = format!("cannot restart node {index}: {error:#}");
        return Err(failure(what, started.elapsed()));
    }
    let port = match cluster.transport {
        Transport::Tcp => "on the same port",
        Transport::Quic => "on a new UDP port, which its peers are told",
    };
    println!(
        "  node {index} restarted with the same key {port} ({}); it dials {} again",
        cluster.nodes[index].address,
        list(&it_dialed)
    );
    for &n in &it_dialed {
        let address = cluster.nodes[n].address.clone();
        cluster.nodes[index].send(Command::Keep(cluster.peers[n], address));
    }
    let settled = cluster
        .wait_until(CONVERGE_DEADLINE, Cluster::is_settled)
        .await;
    let took = started.elapsed();
    if !settled {
        let what =
            format!("no convergence within {CONVERGE_DEADLINE:?} after node {index} restarted");
        return Err(failure(what, took));
    }

    let not_redialed: Vec<usize> = dialed_it
        .iter()
        .copied()
        .filter(|&n| !redialed(cluster, events_before, n, index))
        .collect();
    if !not_redialed.is_empty() {
        let what = format!(
            "nodes {} had dialed node {index} but did not redial it",
            list(&not_redialed)
        );
        return Err(failure(what, took));
    }
    println!(
        "  every pair has one connection again {took:.2?} after the restart; \
         nodes {} redialed node {index}",
        list(&dialed_it)
    );
    Ok(took)
}

/// Kills node `index` and waits until every one of `others` has lost its connection to it.
pub async fn kill_and_await_loss(
    cluster: &mut Cluster,
    index: usize,
    others: &[usize],
) -> Result<(), StageFailure> {
    let started = Instant::now();
    cluster.kill(index).await;
    let peer = cluster.peers[index];
    let lost = cluster
        .wait_until(LOSS_DEADLINE, |c| {
            others
                .iter()
                .all(|&n| !c.statuses[n].connections.contains_key(&peer))
        })
        .await;
    if lost {
        Ok(())
    } else {
        let what =
            format!("the peers of node {index} did not notice it died within {LOSS_DEADLINE:?}");
        Err(failure(what, started.elapsed()))
    }
}

/// Every node in `keepers` asks its manager to keep node `index`, and reports it wanted.
pub async fn keep_node(cluster: &mut Cluster, keepers: &[usize], index: usize) -> bool {
    let peer = cluster.peers[index];
    let address = cluster.nodes[index].address.clone();
    for &n in keepers {
        cluster.nodes[n].send(Command::Keep(peer, address.clone()));
    }
    cluster
        .wait_until(SETTLE_DEADLINE, |c| {
            keepers
                .iter()
                .all(|&n| c.statuses[n].wanted.contains(&peer))
        })
        .await
}

/// Whether node `by` scheduled a redial of node `of` after event `since` and now keeps a
/// connection it dialed itself.
pub fn redialed(cluster: &Cluster, since: usize, by: usize, of: usize) -> bool {
    let peer = cluster.peers[of];
    let scheduled = cluster.reported_since(
        since,
        by,
        |e| matches!(e, Event::RedialScheduled { peer: p, .. } if *p == peer),
    );
    scheduled && cluster.initiator(by, of) == Some(Initiator::Local)
}

/// Stage 3: node 0 bans node 2. Node 2 must receive goodbye `Banned`, the pair must end with no
/// connection (and nothing scheduled to bring one back), every other pair must keep its one.
pub async fn ban(cluster: &mut Cluster, outcome: &mut Outcome) -> bool {
    println!("  node 0 bans node 2 for {DEMO_BAN:?} ...");
    let started = Instant::now();
    cluster.severed.insert((0, 2));
    cluster.nodes[0].send(Command::Ban(cluster.peers[2], DEMO_BAN));
    let held = cluster
        .wait_until(SETTLE_DEADLINE, |c| {
            c.goodbye_received(2, 0, DisconnectReason::Banned) && c.is_settled()
        })
        .await;
    let took = started.elapsed();
    if held {
        println!(
            "  node 2 received goodbye from node 0: {}; no connection between them, \
             nothing redials, the other pairs keep theirs",
            DisconnectReason::Banned
        );
    } else if !cluster.goodbye_received(2, 0, DisconnectReason::Banned) {
        outcome.fail(
            cluster,
            "node 2 received no goodbye `Banned` from node 0".to_owned(),
        );
    } else {
        let what = format!("the ban of node 2 did not settle within {SETTLE_DEADLINE:?}");
        outcome.fail(cluster, what);
    }
    outcome.record(cluster, "banned", held, took)
}

/// Stage 4: node 0 disconnects node 1. Node 1 must receive goodbye `Normal`, the pair must end
/// with no connection, every other pair must keep its one.
pub async fn goodbye(cluster: &mut Cluster, outcome: &mut Outcome) -> bool {
    println!("  node 0 disconnects node 1 ...");
    let started = Instant::now();
    cluster.severed.insert((0, 1));
    cluster.nodes[0].send(Command::Disconnect(cluster.peers[1]));
    let held = cluster
        .wait_until(SETTLE_DEADLINE, |c| {
            c.goodbye_received(1, 0, DisconnectReason::Normal) && c.is_settled()
        })
        .await;
    let took = started.elapsed();
    if held {
        println!(
            "  node 1 received goodbye from node 0: {}; the other pairs keep their connection",
            DisconnectReason::Normal
        );
    } else if !cluster.goodbye_received(1, 0, DisconnectReason::Normal) {
        outcome.fail(
            cluster,
            "node 1 received no goodbye `Normal` from node 0".to_owned(),
        );
    } else {
        let what = format!("the goodbye to node 1 did not settle within {SETTLE_DEADLINE:?}");
        outcome.fail(cluster, what);
    }
    outcome.record(cluster, "goodbye", held, took)
}
