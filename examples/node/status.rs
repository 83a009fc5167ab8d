//! The status table (`--status-interval`, the `status` command).

use std::fmt::Write as _;

use libp2p::{core::Endpoint, PeerId, Swarm};
use libp2p_connection_manager as manager;

use crate::{describe::format_age, state::transport_of, swarm::NodeBehaviour};

/// A table of the node's connections: one row per connection, the peer last (it is long).
pub fn status_table(swarm: &Swarm<NodeBehaviour>) -> String {
    let behaviour = &swarm.behaviour().manager;
    let now = std::time::Instant::now();
    let mut peers = 0;
    let mut rows = Vec::new();
    for peer in behaviour.connected_peers() {
        let Some(info) = behaviour.peer_info(peer) else {
            continue;
        };
        peers += 1;
        for connection in &info.connections {
            rows.push((connection.since, status_row(peer, connection, now)));
        }
    }
    rows.sort_by_key(|(since, _)| *since);
    let mut table = format!(
        "status: phase {}, {peers} peer(s), {} connection(s), {} pending, {} ban(s)\n",
        behaviour.phase(),
        rows.len(),
        behaviour.stats().pending_connections,
        behaviour.bans().len(),
    );
    if !rows.is_empty() {
        let _ = writeln!(
            table,
            "  {:<9}  {:<11}  {:<9}  {:>9}  {:<16}  {:>6}  peer",
            "direction", "initiator", "transport", "rtt", "health", "since"
        );
    }
    for (_, row) in rows {
        let _ = writeln!(table, "{row}");
    }
    table
}

pub fn status_row(
    peer: &PeerId,
    connection: &manager::ConnectionInfo,
    now: std::time::Instant,
) -> String {
    let direction = match connection.direction {
        Endpoint::Dialer => "outbound",
        Endpoint::Listener => "inbound",
    };
    let rtt = connection.rtt.map_or_else(
        || "-".to_owned(),
        |rtt| format!("{:.2} ms", rtt.as_secs_f64() * 1000.0),
    );
    let health = connection.health.map_or_else(
        || "not yet measured".to_owned(),
        |health| format!("{} ({:.2})", health.category, health.score),
    );
    let health = match connection.closing {
        Some(reason) => format!("closing: {reason}"),
        None => health,
    };
    let since = format_age(now.saturating_duration_since(connection.since));
    format!(
        "  {direction:<9}  {:<11}  {:<9}  {rtt:>9}  {health:<16}  {since:>6}  {peer}",
        connection.initiator.to_string(),
        transport_of(&connection.remote_addr)
    )
}
