//! The `node` example as real processes: two long-lived nodes on 127.0.0.1, one bootstrapping
//! from the other, the first's Prometheus endpoint scraped over plain TCP, then the first
//! stopped with SIGINT (it must say goodbye and exit 0). And the `--key-file` identity.
//!
//! The example binary is the one `cargo test` builds next to the test binary
//! (`target/<profile>/examples/node`), with the same features; these tests need it built with
//! `metrics`, hence `cargo test --all-features`.
#![cfg(feature = "metrics")]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// How long a node may take to print its startup lines.
const STARTUP: Duration = Duration::from_secs(10);
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

    let response = scrape(metrics_address);
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

/// `GET /metrics` over a plain TCP connection; the whole response, head and body.
fn scrape(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .expect("connect to A's metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    response
}

fn assert_scrape(response: &str, transcript: &Transcript) {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {response:?}"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
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

/// The example binary next to this test binary: `target/<profile>/deps/<test>` →
/// `target/<profile>/examples/node`.
fn example_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_directory = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_directory
        .join("examples")
        .join(format!("node{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the node example is not built at {}: run `cargo test --all-features` (it builds the \
         examples) or `cargo build --example node --features metrics` first",
        binary.display()
    );
    binary
}

/// Every line both nodes printed, for failure messages.
#[derive(Clone, Default)]
struct Transcript(Arc<Mutex<Vec<String>>>);

impl Transcript {
    fn push(&self, line: String) {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(line);
    }
}

impl std::fmt::Display for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for line in lines.iter() {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// A running node example, killed when dropped (on every path, panics included).
struct NodeProcess {
    name: &'static str,
    child: Child,
    /// Its stdout, line by line.
    lines: mpsc::Receiver<String>,
    transcript: Transcript,
}

impl NodeProcess {
    fn start(name: &'static str, args: &[&str], transcript: &Transcript) -> Self {
        let binary = example_binary();
        let mut child = Command::new(&binary)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let (line_tx, lines) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            let transcript = transcript.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    transcript.push(format!("{name}: {line}"));
                    let _ = line_tx.send(line);
                }
            });
        }
        if let Some(stderr) = child.stderr.take() {
            let transcript = transcript.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    transcript.push(format!("{name} (stderr): {line}"));
                }
            });
        }
        Self {
            name,
            child,
            lines,
            transcript: transcript.clone(),
        }
    }

    /// Reads lines until one matches, for at most `limit`.
    fn wait_for_line(&self, what: &str, limit: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{}: {what}: not within {limit:?}; transcript:\n{}",
                    self.name, self.transcript
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "{}: {what}: the process ended first{}; transcript:\n{}",
                    self.name,
                    self.built_without_metrics_hint(),
                    self.transcript
                ),
            }
        }
    }

    /// A hint when the example refused `--metrics`: `cargo build --example node` (no features)
    /// overwrote the binary `cargo test --all-features` had built.
    fn built_without_metrics_hint(&self) -> &'static str {
        if self
            .transcript
            .to_string()
            .contains("built with the metrics feature")
        {
            " (the example binary was built without the `metrics` feature: run \
             `cargo build --example node --features metrics`, or `cargo test --all-features` \
             without `--test`)"
        } else {
            ""
        }
    }

    /// The rest of the first startup line that begins with `prefix`.
    fn value_after(&self, prefix: &str) -> String {
        let what = format!("a line starting with {prefix:?}");
        let line = self.wait_for_line(&what, STARTUP, |line| line.starts_with(prefix));
        line[prefix.len()..].trim().to_owned()
    }

    /// SIGINT, as Ctrl-C sends it (`libc` is not a dependency: the `kill` command).
    fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {} failed", self.child.id());
    }

    fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => panic!(
                    "{} still running {limit:?} after SIGINT; transcript:\n{}",
                    self.name, self.transcript
                ),
                Err(error) => panic!("cannot wait for {}: {error}", self.name),
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "node-processes-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
