//! What must hold whatever the scenario, checked on the world's state.

use std::{collections::HashMap, time::Duration};

use crate::{net::Host, world::World};

/// Longer than anything the policy takes to settle a pair: the duplicate grace (5 s) and drain,
/// a goodbye's timeout (2 s), and the latency of the close.
const SETTLE: Duration = Duration::from_secs(10);

/// Longer than a broken connection can go unnoticed: the inactivity timeout (60 s) after the
/// last answered ping (one interval, 15 s), the ping timeout (20 s) and the goodbye's timeout.
const DETECT: Duration = Duration::from_secs(100);

/// Checks the world and returns what is wrong (empty when all holds). `quiet_since`: when the
/// network last changed shape (a partition healed, nodes killed or restarted).
pub fn check(world: &World, quiet_since: web_time::Instant) -> Vec<String> {
    let now = world.now;
    let mut problems = Vec::new();
    let mut pairs: HashMap<(usize, usize), usize> = HashMap::new();
    let mut open_sides = vec![0usize; world.nodes.len()];
    let mut recent_sides = vec![0usize; world.nodes.len()];
    for link in world.links.values() {
        let [a, b] = link.sides;
        let settled = now.duration_since(link.changed) > SETTLE;
        for side in [a, b].iter().filter(|s| s.open) {
            open_sides[side.node] += 1;
            if !settled {
                recent_sides[side.node] += 1;
            }
        }
        if a.open && b.open && settled {
            *pairs
                .entry((a.node.min(b.node), a.node.max(b.node)))
                .or_default() += 1;
        }
        let half_open = a.open != b.open;
        let quiet = now.duration_since(quiet_since) > DETECT;
        if half_open && quiet && now.duration_since(link.changed) > DETECT {
            let open = if a.open { a.node } else { b.node };
            problems.push(format!(
                "node {open} holds a connection the other side closed {:?} ago",
                now.duration_since(link.changed)
            ));
        }
    }
    for ((a, b), count) in pairs {
        if count > 1 {
            problems.push(format!(
                "nodes {a} and {b} keep {count} connections after settling"
            ));
        }
    }
    for (i, node) in world.nodes.iter().enumerate() {
        if world.net.hosts[i] != Host::Up {
            continue;
        }
        // Connections refused with a goodbye are open on the wire but not counted: recent only.
        let managed = node.manager.established_connections();
        if managed.abs_diff(open_sides[i]) > recent_sides[i] {
            problems.push(format!(
                "node {i}: the manager counts {managed} connections, the network {}",
                open_sides[i]
            ));
        }
        let stats = node.manager.stats();
        if stats.queued_actions > 0 {
            problems.push(format!(
                "node {i}: {} actions never carried out",
                stats.queued_actions
            ));
        }
    }
    problems
}
