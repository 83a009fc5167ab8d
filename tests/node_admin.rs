//! The `node` example run as an operator runs it: three processes connected, inspected and
//! banned through their admin APIs alone (`--admin`), and `node ctl` against them. Every
//! wait is on the API's state, with a deadline.
//!
//! The example binary is the one `cargo test` builds next to the test binary
//! (`target/<profile>/examples/node`).

mod node_process;

use std::{
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use node_process::{example_binary, start_with, wait_until, Admin, Started, Transcript};
use serde_json::{json, Value};

/// How long the three nodes may take to connect.
const CONNECT: Duration = Duration::from_secs(30);
/// How long a ban or a disconnect may take to show.
const SETTLE: Duration = Duration::from_secs(10);
/// The ban the test places.
const BAN_SECS: u64 = 5;
/// How long after the ban ends the banned node may take to come back.
const COME_BACK: Duration = Duration::from_secs(30);

fn start(name: &'static str, transcript: &Transcript) -> Started {
    start_with(name, &["--listen", "/ip4/127.0.0.1/tcp/0"], transcript)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The peer ids in a `/api/peers` answer.
fn peer_ids(peers: &Value) -> Vec<String> {
    let mut ids: Vec<String> = peers
        .as_array()
        .expect("peers is an array")
        .iter()
        .map(|p| p["peer"].as_str().expect("a peer id").to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<&str>) -> Vec<String> {
    ids.sort();
    ids.into_iter().map(str::to_owned).collect()
}

/// Waits until `node` shows exactly `expected` as its peers, each with one kept connection
/// whose RTT and health were measured.
fn wait_for_peers(node: &Started, expected: &[&str], limit: Duration) -> Value {
    let expected = sorted(expected.to_vec());
    wait_until(
        &format!("{} has peers {expected:?}", node.peer),
        limit,
        || {
            let peers = node.api.get("/api/peers");
            let settled = peer_ids(&peers) == expected
                && peers.as_array().into_iter().flatten().all(|p| {
                    let connections = p["connections"].as_array().map_or(0, Vec::len);
                    connections == 1
                        && p["connections"][0]["kept"] == json!(true)
                        && p["connections"][0]["rtt_ms"].is_f64()
                        && p["connections"][0]["health"].is_string()
                });
            if settled {
                Ok(peers)
            } else {
                Err(peers.to_string())
            }
        },
    )
}

/// The connection `node` keeps to `peer`, from a `/api/peers` answer.
fn connection_to<'a>(peers: &'a Value, peer: &str) -> &'a Value {
    peers
        .as_array()
        .and_then(|all| all.iter().find(|p| p["peer"] == peer))
        .map(|p| &p["connections"][0])
        .unwrap_or_else(|| panic!("no connection to {peer} in {peers}"))
}

#[test]
fn three_nodes_connected_banned_and_back_through_the_admin_api() {
    let transcript = Transcript::default();
    let a = start("A", &transcript);
    let b = start("B", &transcript);
    let c = start("C", &transcript);

    // Connect: B and C dial A, C dials B, each through its own API.
    b.api
        .command("/api/connect", json!({ "address": a.address }));
    c.api
        .command("/api/connect", json!({ "address": a.address }));
    c.api
        .command("/api/connect", json!({ "address": b.address }));
    let a_peers = wait_for_peers(&a, &[&b.peer, &c.peer], CONNECT);
    let b_peers = wait_for_peers(&b, &[&a.peer, &c.peer], CONNECT);
    let c_peers = wait_for_peers(&c, &[&a.peer, &b.peer], CONNECT);

    // Who dialed whom, as each side reports it, and the transport.
    for (peers, peer, direction) in [
        (&a_peers, &b.peer, "inbound"),
        (&a_peers, &c.peer, "inbound"),
        (&b_peers, &a.peer, "outbound"),
        (&b_peers, &c.peer, "inbound"),
        (&c_peers, &a.peer, "outbound"),
        (&c_peers, &b.peer, "outbound"),
    ] {
        let connection = connection_to(peers, peer);
        assert_eq!(connection["direction"], direction, "{connection}");
        assert_eq!(connection["transport"], "tcp", "{connection}");
        assert!(
            connection["kept_reason"].is_string(),
            "no reason for keeping {connection}"
        );
    }
    let status = a.api.get("/api/status");
    assert_eq!(status["peer_id"], a.peer.as_str());
    assert_eq!(status["connected_peers"], 2, "{status}");
    assert_eq!(status["connections"], 2, "{status}");
    assert_eq!(status["phase"], "connected", "{status}");
    let wanted = c.api.get("/api/wanted");
    assert_eq!(
        peer_ids(&wanted),
        sorted(vec![&a.peer, &b.peer]),
        "C wants the peers it connected: {wanted}"
    );

    // `node ctl` reads the same peers as the API.
    let ctl = Command::new(example_binary())
        .args(["ctl", "peers"])
        .env("LIBP2P_NODE_ADMIN", a.api.base())
        .output()
        .expect("run node ctl peers");
    assert!(ctl.status.success(), "{ctl:?}");
    let ctl_peers: Value = serde_json::from_slice(&ctl.stdout).expect("ctl prints JSON");
    assert_eq!(peer_ids(&ctl_peers), sorted(vec![&b.peer, &c.peer]));

    // Ban C at A for 5 s, with `node ctl`.
    let banned_at = now_ms();
    let ctl = Command::new(example_binary())
        .args(["ctl", "ban", &c.peer, "--for", &BAN_SECS.to_string()])
        .env("LIBP2P_NODE_ADMIN", a.api.base())
        .output()
        .expect("run node ctl ban");
    assert!(ctl.status.success(), "{ctl:?}\n{transcript}");
    let bans = a.api.get("/api/bans");
    let ban = &bans[0];
    assert_eq!(ban["target"], c.peer.as_str(), "{bans}");
    let until = ban["until_ms"].as_u64().expect("a timed ban has an end");
    assert!(
        until >= banned_at + BAN_SECS * 1000 - 50 && until <= now_ms() + BAN_SECS * 1000 + 50,
        "the ban ends at {until}, banned at {banned_at} for {BAN_SECS} s"
    );
    wait_for_peers(&a, &[&b.peer], SETTLE);
    wait_for_peers(&c, &[&b.peer], SETTLE);
    wait_for_peers(&b, &[&a.peer, &c.peer], SETTLE);
    // C was told how long the ban lasts: it redials A when it ends, not before.
    let redial = wait_until("C schedules its redial of A", SETTLE, || {
        let wanted = c.api.get("/api/wanted");
        wanted
            .as_array()
            .and_then(|w| w.iter().find(|p| p["peer"] == a.peer.as_str()))
            .filter(|p| p["connected"] == json!(false))
            .and_then(|p| p["next_redial_ms"].as_u64())
            .ok_or_else(|| wanted.to_string())
    });
    assert!(
        redial + 100 >= until,
        "C redials A at {redial}, before the ban ends at {until}"
    );
    let refused = a.api.post("/api/ban", json!({ "target": "not a peer" }));
    assert_eq!(refused.0, 400, "{:?}", refused.1);

    // C comes back once the ban ended.
    wait_for_peers(&a, &[&b.peer, &c.peer], COME_BACK);
    let back_at = now_ms();
    assert!(
        back_at + 100 >= until,
        "C is back at {back_at}, before the ban ends at {until}"
    );
    assert_eq!(a.api.get("/api/bans"), json!([]));
    let events = a.api.get("/api/events");
    let kinds: Vec<&str> = events
        .as_array()
        .expect("events is an array")
        .iter()
        .filter(|e| e["peer"] == c.peer.as_str())
        .filter_map(|e| e["kind"].as_str())
        .collect();
    let banned = kinds.iter().position(|k| *k == "Banned");
    let unbanned = kinds.iter().rposition(|k| *k == "Unbanned");
    let kept_again = kinds.iter().rposition(|k| *k == "ConnectionKept");
    assert!(
        banned < unbanned && unbanned < kept_again && banned.is_some(),
        "A's events about C, in order: {kinds:?}"
    );

    assert_page_figures(&a.api);
    drop(a.process);
}

/// Every figure the status page shows, read from `/api/snapshot` (the one request the page
/// makes): present, of the right kind, and consistent with the other endpoints.
fn assert_page_figures(api: &Admin) {
    let snapshot = api.get("/api/snapshot");
    let status = &snapshot["status"];
    for figure in [
        "peer_id",
        "phase",
        "version",
        "connected_peers",
        "connections",
        "pending",
        "bans",
        "wanted",
        "uptime_secs",
    ] {
        assert!(
            !status[figure].is_null(),
            "status has no {figure}: {status}"
        );
    }
    let peers = snapshot["peers"].as_array().expect("peers");
    assert_eq!(status["connected_peers"], peers.len());
    assert_eq!(
        peer_ids(&snapshot["peers"]),
        peer_ids(&api.get("/api/peers"))
    );
    for peer in peers {
        let connection = &peer["connections"][0];
        for figure in [
            "id",
            "direction",
            "initiator",
            "transport",
            "remote_address",
            "rtt_ms",
            "health",
            "health_score",
            "since_ms",
            "kept",
            "kept_reason",
        ] {
            assert!(
                !connection[figure].is_null(),
                "connection has no {figure}: {connection}"
            );
        }
        let history = peer["health_history"].as_array().expect("health history");
        assert!(!history.is_empty(), "no health history: {peer}");
        assert!(history
            .iter()
            .all(|s| s["score"].is_f64() && s["at_ms"].is_u64()));
    }
    assert_eq!(
        status["bans"],
        snapshot["bans"].as_array().map_or(0, Vec::len)
    );
    assert_eq!(
        status["wanted"],
        snapshot["wanted"].as_array().map_or(0, Vec::len)
    );
    let events = snapshot["events"].as_array().expect("events");
    assert!(events
        .iter()
        .all(|e| e["at_ms"].is_u64() && e["kind"].is_string() && e["text"].is_string()));
}

/// A node listening on TCP, QUIC and WebSocket with TLS; one peer connects over QUIC, another
/// over WebSocket, each through its API; both ends report the transport each kept connection
/// uses.
#[test]
fn the_api_reports_the_transport_of_each_kept_connection() {
    let transcript = Transcript::default();
    let tls = ["--security", "tls"];
    let a = start_with(
        "A",
        &[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
            "--listen",
            "/ip4/127.0.0.1/tcp/0/ws",
            tls[0],
            tls[1],
        ],
        &transcript,
    );
    let b = start_with("B", &tls, &transcript);
    let c = start_with("C", &tls, &transcript);
    let listening = wait_until("A listens on three addresses", SETTLE, || {
        let status = a.api.get("/api/status");
        let addresses: Vec<String> = status["listen_addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        if addresses.len() == 3 {
            Ok(addresses)
        } else {
            Err(status.to_string())
        }
    });
    let address_with = |protocol: &str| {
        let address = listening
            .iter()
            .find(|a| a.contains(protocol))
            .unwrap_or_else(|| panic!("A does not listen on {protocol}: {listening:?}"));
        format!("{address}/p2p/{}", a.peer)
    };
    b.api.command(
        "/api/connect",
        json!({ "address": address_with("/quic-v1") }),
    );
    c.api
        .command("/api/connect", json!({ "address": address_with("/ws") }));
    let a_peers = wait_for_peers(&a, &[&b.peer, &c.peer], CONNECT);
    let b_peers = wait_for_peers(&b, &[&a.peer], CONNECT);
    let c_peers = wait_for_peers(&c, &[&a.peer], CONNECT);
    assert_eq!(connection_to(&a_peers, &b.peer)["transport"], "quic");
    assert_eq!(connection_to(&b_peers, &a.peer)["transport"], "quic");
    assert_eq!(connection_to(&a_peers, &c.peer)["transport"], "ws");
    assert_eq!(connection_to(&c_peers, &a.peer)["transport"], "ws");
}
