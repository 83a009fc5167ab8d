//! The `node` example as real processes: two long-lived nodes on 127.0.0.1, one bootstrapping
//! from the other, the first's Prometheus endpoint scraped over HTTP, then the first
//! stopped with SIGINT (it must say goodbye and exit 0). And the `--key-file` identity.
//!
//! The example binary is the one `cargo test` builds next to the test binary
//! (`target/<profile>/examples/node`), with the same features; these tests need it built with
//! `metrics`, hence `cargo test --all-features`.
#![cfg(feature = "metrics")]

mod node_process;

use std::{net::SocketAddr, process::Command, time::Duration};

use node_process::{example_binary, wait_until, NodeProcess, TempDir, Transcript, STARTUP};

/// How long B may take to connect to A.
const CONNECT: Duration = Duration::from_secs(30);
/// How long a line that follows from the previous step may take.
const NEXT_LINE: Duration = Duration::from_secs(10);
/// How long A may take to exit after SIGINT.
const EXIT: Duration = Duration::from_secs(10);

#[test]
fn bootstrap_metrics_and_goodbye_on_sigint() {
    let transcript = Transcript::default();
    let mut a = NodeProcess::start(
        "A",
        &[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--metrics",
            "127.0.0.1:0",
            "--status-interval",
            "1",
        ],
        &transcript,
    );
    let a_peer = a.value_after("peer id: ");
    let metrics_address: SocketAddr = a
        .value_after("metrics on http://")
        .trim_end_matches("/metrics")
        .parse()
        .expect("A prints a socket address for its metrics");
    let a_address = a.value_after("listening on ");
    assert!(
        a_address.ends_with(&format!("/p2p/{a_peer}")),
        "{a_address}"
    );

    let b = NodeProcess::start(
        "B",
        &["--bootstrap", &a_address, "--status-interval", "0"],
        &transcript,
    );
    let b_peer = b.value_after("peer id: ");
    b.wait_for_line("B keeps a connection to A", CONNECT, |line| {
        line.starts_with("manager: kept connection ") && line.contains(&a_peer)
    });
    a.wait_for_line("A keeps a connection to B", NEXT_LINE, |line| {
        line.starts_with("manager: kept connection ") && line.contains(&b_peer)
    });
    a.wait_for_line("A's status table shows B inbound", NEXT_LINE, |line| {
        line.trim_start().starts_with("inbound") && line.ends_with(&b_peer)
    });

    // The gauges are published at most 250 ms after a change (`Behaviour::with_metrics`), and
    // the status line can come sooner: scrape until they show the connection.
    let response = wait_until(
        "the gauges show B's connection",
        Duration::from_secs(5),
        || {
            let response = scrape(metrics_address);
            let connected = response.1.lines().any(|line| {
                line == r#"connection_manager_established_connections{direction="inbound"} 1"#
            });
            if connected {
                Ok(response)
            } else {
                Err(response.1)
            }
        },
    );
    assert_scrape(&response, &transcript);

    a.interrupt();
    b.wait_for_line(
        "B receives goodbye `normal close` from A",
        NEXT_LINE,
        |line| {
            line.starts_with(&format!("manager: goodbye from {a_peer} "))
                && line.ends_with(": normal close")
        },
    );
    let status = a.wait_for_exit(EXIT);
    assert!(
        status.success(),
        "A exited with {status} after SIGINT; transcript:\n{transcript}"
    );
    a.wait_for_line("A's final line", NEXT_LINE, |line| {
        line == "shut down: all connections closed"
    });
}

#[test]
fn key_file_keeps_the_identity_and_a_corrupt_one_is_refused() {
    let transcript = Transcript::default();
    let directory = TempDir::new("key-file");
    let key_file = directory.path().join("node.key");
    let key_arg = key_file.to_str().expect("a UTF-8 temporary path");
    let args = ["--key-file", key_arg, "--status-interval", "0"];

    let first = NodeProcess::start("first", &args, &transcript);
    let first_peer = first.value_after("peer id: ");
    drop(first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file)
            .expect("the key file was written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    }

    let second = NodeProcess::start("second", &args, &transcript);
    assert_eq!(second.value_after("peer id: "), first_peer, "{transcript}");
    drop(second);

    std::fs::write(&key_file, b"not a key").expect("overwrite the key file");
    let output = Command::new(example_binary())
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the node example");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a corrupt key file was accepted");
    assert!(
        stderr.contains("does not hold a protobuf-encoded libp2p keypair"),
        "{stderr}"
    );
}

/// A node restarted on the same `--store` file is still banning the peer it banned and dials
/// the peer it wanted, with neither `--ban` nor `--dial` given again. Then a node killed with
/// SIGKILL (no goodbye, no final write) leaves a store that opens and still has both.
#[cfg(feature = "redb")]
#[test]
fn a_restarted_node_keeps_its_bans_and_redials_whom_it_wanted() {
    let transcript = Transcript::default();
    let directory = TempDir::new("store");
    let path = |name: &str| {
        directory
            .path()
            .join(name)
            .to_str()
            .expect("a UTF-8 temporary path")
            .to_owned()
    };
    let (store, a_key, b_key) = (path("a.redb"), path("a.key"), path("b.key"));

    let c = NodeProcess::start(
        "C",
        &["--listen", "/ip4/127.0.0.1/tcp/0", "--status-interval", "0"],
        &transcript,
    );
    let c_peer = c.value_after("peer id: ");
    let c_address = c.value_after("listening on ");
    // B's identity lives in a key file, so that A can ban it before B ever dials.
    let b_peer = NodeProcess::start(
        "B0",
        &["--key-file", &b_key, "--status-interval", "0"],
        &transcript,
    )
    .value_after("peer id: ");

    let mut a = NodeProcess::start(
        "A1",
        &[
            "--key-file",
            &a_key,
            "--store",
            &store,
            "--ban",
            &b_peer,
            "--dial",
            &c_address,
            "--status-interval",
            "0",
        ],
        &transcript,
    );
    a.wait_for_line("A bans B", STARTUP, |line| {
        line == format!("manager: banned peer {b_peer} until unbanned")
    });
    a.wait_for_line("A keeps a connection to C", CONNECT, |line| {
        line.starts_with("manager: kept connection ") && line.contains(&c_peer)
    });
    a.interrupt();
    let status = a.wait_for_exit(EXIT);
    assert!(
        status.success(),
        "A exited with {status}; transcript:\n{transcript}"
    );
    drop(a);

    let restart = |name: &'static str| {
        let a = NodeProcess::start(
            name,
            &[
                "--key-file",
                &a_key,
                "--store",
                &store,
                "--status-interval",
                "0",
            ],
            &transcript,
        );
        // The two lines come in either order.
        let (mut restored, mut address) = (None, None);
        while restored.is_none() || address.is_none() {
            let line = a.wait_for_line("A restores and listens", STARTUP, |line| {
                line.starts_with("manager: restored from the peer store: ")
                    || line.starts_with("listening on ")
            });
            match line.strip_prefix("listening on ") {
                Some(rest) => address = Some(rest.to_owned()),
                None => restored = Some(line),
            }
        }
        let restored = restored.unwrap_or_default();
        assert!(
            restored.contains(": 1 ban(s) in force") && restored.ends_with(", 1 redial(s)"),
            "{restored}; transcript:\n{transcript}"
        );
        a.wait_for_line("A redials C by itself", CONNECT, |line| {
            line.starts_with("manager: kept connection ") && line.contains(&c_peer)
        });
        (a, address.unwrap_or_default())
    };
    let (a, a_address) = restart("A2");
    let b = NodeProcess::start(
        "B",
        &[
            "--key-file",
            &b_key,
            "--dial",
            &a_address,
            "--status-interval",
            "0",
        ],
        &transcript,
    );
    a.wait_for_line("A refuses B: still banned", CONNECT, |line| {
        line.starts_with("manager: refused connection ")
            && line.contains(&format!("peer {b_peer} is banned"))
    });
    drop(b);

    // SIGKILL: no shutdown, no final flush. The store opens and has what was written.
    drop(a);
    let (_a, _) = restart("A3");
}

/// A damaged `--store` file stops the node with a message naming the file; `--fresh-store`
/// sets it aside and starts empty.
#[cfg(feature = "redb")]
#[test]
fn a_damaged_store_is_refused_or_set_aside() {
    let transcript = Transcript::default();
    let directory = TempDir::new("bad-store");
    let store = directory.path().join("damaged.redb");
    std::fs::write(&store, vec![0x42; 4096]).expect("write a damaged store");
    let store_arg = store.to_str().expect("a UTF-8 temporary path");

    let output = Command::new(example_binary())
        .args(["--store", store_arg, "--status-interval", "0"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run the node example");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a damaged store was accepted");
    assert!(
        stderr.contains(&format!("the peer store {store_arg} is corrupted"))
            && stderr.contains("--fresh-store"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let fresh = NodeProcess::start(
        "fresh",
        &[
            "--store",
            store_arg,
            "--fresh-store",
            "--status-interval",
            "0",
        ],
        &transcript,
    );
    let moved = fresh.value_after(&format!("peer store {store_arg} was unreadable: moved to "));
    let moved = moved.trim_end_matches(", starting empty");
    assert_eq!(
        std::fs::read(moved).expect("the damaged file is kept aside"),
        vec![0x42; 4096]
    );
    fresh.value_after("listening on ");
}

/// `GET /metrics`: the content type and the body.
fn scrape(address: SocketAddr) -> (String, String) {
    let mut response = ureq::get(&format!("http://{address}/metrics"))
        .call()
        .expect("GET /metrics");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .body_mut()
        .read_to_string()
        .expect("read the metrics");
    (content_type, body)
}

fn assert_scrape((content_type, body): &(String, String), transcript: &Transcript) {
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for expected in [
        r#"connection_manager_established_connections{direction="inbound"} 1"#,
        r#"connection_manager_phase{phase="connected"} 1"#,
    ] {
        assert!(
            body.lines().any(|line| line == expected),
            "missing {expected:?} in\n{body}\ntranscript:\n{transcript}"
        );
    }
    assert!(
        body.lines()
            .any(|line| line.starts_with("connection_manager_connections_kept_total")),
        "no connections_kept_total in\n{body}"
    );
}
