//! The `node` example's configuration as an operator gives it: a TOML `--config` file laid
//! under flags, refused when it makes no sense, and `--json` output.

mod node_process;

use std::{process::Command, time::Duration};

use node_process::{example_binary, start_with, wait_until, NodeProcess, Transcript};
use serde_json::Value;

/// How long a startup line or an API state may take.
const SETTLE: Duration = Duration::from_secs(10);

/// A `--config` file sets what flags set, flags override it, and the node applies it (the
/// timed network ban shows in the API); a file with an unknown key, or watermarks the wrong
/// way round, is refused with a message that names the problem.
#[test]
fn a_config_file_is_applied_and_nonsense_is_refused() {
    let directory = node_process::TempDir::new("config");
    let file = directory.path().join("node.toml");
    std::fs::write(
        &file,
        r#"
[node]
listen = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"]
security = "tls"

[limits]
max_incoming_per_ip = 4
incoming_rate_per_ip = { burst = 8, refill_ms = 250 }

[trim]
low_watermark = 10
high_watermark = 20

[exchange]
enabled = true

[peers]
bans = [{ target = "10.9.0.0/16", seconds = 600 }]
"#,
    )
    .expect("write the config file");
    let path = file.to_str().expect("a UTF-8 temporary path");

    let printed = Command::new(example_binary())
        .args(["--config", path, "--max-established", "7", "--print-config"])
        .output()
        .expect("run node --print-config");
    assert!(printed.status.success(), "{printed:?}");
    let effective: toml::Value = toml::from_str(&String::from_utf8_lossy(&printed.stdout))
        .expect("--print-config prints TOML");
    assert_eq!(effective["limits"]["max_established"].as_integer(), Some(7));
    assert_eq!(
        effective["limits"]["max_incoming_per_ip"].as_integer(),
        Some(4)
    );
    assert_eq!(effective["node"]["security"].as_str(), Some("tls"));
    assert_eq!(effective["exchange"]["enabled"].as_bool(), Some(true));

    let transcript = Transcript::default();
    let node = start_with("configured", &["--config", path], &transcript);
    let bans = node.api.get("/api/bans");
    assert_eq!(bans[0]["target"], "10.9.0.0/16", "{bans}");
    assert!(
        bans[0]["remaining_secs"]
            .as_f64()
            .is_some_and(|s| s > 500.0),
        "{bans}"
    );
    let status = wait_until("the node listens on TCP and QUIC", SETTLE, || {
        let status = node.api.get("/api/status");
        match status["listen_addresses"].as_array().map(Vec::len) {
            Some(2) => Ok(status),
            _ => Err(status.to_string()),
        }
    });
    assert!(
        status["listen_addresses"].to_string().contains("/quic-v1"),
        "{status}"
    );

    for (contents, expected) in [
        ("[node]\nbogus = 1\n", "unknown field `bogus`"),
        (
            "[trim]\nlow_watermark = 30\nhigh_watermark = 20\n",
            "low watermark 30 is above the high watermark 20",
        ),
    ] {
        std::fs::write(&file, contents).expect("write the config file");
        let refused = Command::new(example_binary())
            .args(["--config", path])
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("run node --config");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{contents:?} was accepted");
        assert!(stderr.contains(expected), "{contents:?}: {stderr}");
    }
}

/// `--json`: every line on stdout is one JSON object with a time and a type; the startup lines
/// and the periodic status come as data.
#[test]
fn json_lines_are_json() {
    let transcript = Transcript::default();
    let node = NodeProcess::start(
        "json",
        &["--json", "--status-interval", "1", "--admin", "127.0.0.1:0"],
        &transcript,
    );
    let parse = |line: &str| serde_json::from_str::<Value>(line).ok();
    let is_typed = |line: &str, kind: &str| {
        parse(line).is_some_and(|v| v["type"] == kind && v["at_ms"].is_u64())
    };
    let first = node.wait_for_line("the peer id line", SETTLE, |_| true);
    assert!(is_typed(&first, "peer_id"), "{first}");
    node.wait_for_line("the config as data", SETTLE, |l| is_typed(l, "config"));
    let listening = node.wait_for_line("a listen address", SETTLE, |l| is_typed(l, "listening"));
    assert!(
        parse(&listening).is_some_and(|v| v["address"].is_string()),
        "{listening}"
    );
    let status = node.wait_for_line("a status line", SETTLE, |l| is_typed(l, "status"));
    let status = parse(&status).expect("JSON");
    assert_eq!(status["status"]["connected_peers"], 0, "{status}");
    assert!(status["peers"].is_array(), "{status}");
    let all = transcript.to_string();
    for line in all.lines().filter_map(|l| l.trim().strip_prefix("json: ")) {
        assert!(parse(line).is_some(), "not JSON: {line}");
    }
}
