//! The `node` example as a child process, for the tests that run it: start it, read its
//! stdout line by line with deadlines, stop it; and a client for its admin API.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{mpsc, Arc, Mutex},
    thread,
    time::{Duration, Instant, SystemTime},
};

/// How long a node may take to print its startup lines.
pub const STARTUP: Duration = Duration::from_secs(10);

/// The example binary next to this test binary (`target/<profile>/deps/<test>` →
/// `target/<profile>/examples/node`), built from the sources as they are: a stale one would test
/// other code.
pub fn example_binary() -> PathBuf {
    let test_binary = std::env::current_exe().expect("the test binary's path");
    let profile_directory = test_binary
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let binary = profile_directory
        .join("examples")
        .join(format!("node{}", std::env::consts::EXE_SUFFIX));
    let hint = "build it with `cargo build --all-features --example node` (or run \
                `cargo test --all-features`, which builds the examples)";
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "the node example is not built at {}: {hint}",
                binary.display()
            )
        });
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if let Some(newer) = newest_source(&[root.join("src"), root.join("examples/node")])
        .filter(|(modified, _)| *modified > built)
    {
        panic!(
            "the node example at {} is older than {}: {hint}",
            binary.display(),
            newer.1.display()
        );
    }
    binary
}

/// The most recently modified Rust source under `paths` that the example is built from.
fn newest_source(paths: &[PathBuf]) -> Option<(SystemTime, PathBuf)> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    let mut stack: Vec<PathBuf> = paths.to_vec();
    while let Some(path) = stack.pop() {
        let Ok(metadata) = std::fs::metadata(&path) else {
            continue;
        };
        if metadata.is_dir() {
            // The crate's unit tests (`src/**/tests/`) are compiled only into the test build:
            // changing them does not rebuild the example.
            if path.file_name().is_some_and(|n| n == "tests") {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        } else if path.extension().is_none_or(|e| e != "rs") {
            // Only Rust sources make cargo rebuild the example.
        } else if let Ok(modified) = metadata.modified() {
            if newest.as_ref().is_none_or(|(m, _)| modified > *m) {
                newest = Some((modified, path));
            }
        }
    }
    newest
}

/// Every line both nodes printed, for failure messages.
#[derive(Clone, Default)]
pub struct Transcript(Arc<Mutex<Vec<String>>>);

impl Transcript {
    pub fn push(&self, line: String) {
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
pub struct NodeProcess {
    name: &'static str,
    child: Child,
    /// Its stdout, line by line.
    lines: mpsc::Receiver<String>,
    transcript: Transcript,
}

impl NodeProcess {
    pub fn start(name: &'static str, args: &[&str], transcript: &Transcript) -> Self {
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
    pub fn wait_for_line(
        &self,
        what: &str,
        limit: Duration,
        matches: impl Fn(&str) -> bool,
    ) -> String {
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
    pub fn value_after(&self, prefix: &str) -> String {
        let what = format!("a line starting with {prefix:?}");
        let line = self.wait_for_line(&what, STARTUP, |line| line.starts_with(prefix));
        line[prefix.len()..].trim().to_owned()
    }

    /// SIGINT, as Ctrl-C sends it (`libc` is not a dependency: the `kill` command).
    pub fn interrupt(&self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {} failed", self.child.id());
    }

    pub fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
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
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
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

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A client for a node's admin API (`--admin`).
#[derive(Clone)]
pub struct Admin {
    base: String,
    agent: ureq::Agent,
}

/// The longest one request to the admin API may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Admin {
    /// The API of `node`, read from its `admin API on http://ADDR/` line.
    pub fn of(node: &NodeProcess) -> Self {
        let address = node.value_after("admin API on http://");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Self {
            base: format!("http://{}", address.trim_end_matches('/')),
            agent,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET path`, which must answer 200 with JSON.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .agent
            .get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(response.status().as_u16(), 200, "GET {url}");
        response
            .body_mut()
            .read_json()
            .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
    }

    /// `POST path` with a JSON body: the status and the JSON answer.
    pub fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .agent
            .post(&url)
            .send_json(&body)
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .read_json()
            .unwrap_or_else(|e| panic!("POST {url}: not JSON: {e}"));
        (status, answer)
    }

    /// `POST path`, which must succeed.
    pub fn command(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (status, answer) = self.post(path, body.clone());
        assert_eq!(status, 200, "POST {path} {body}: {answer}");
        answer
    }
}

/// Polls `probe` until it returns `Some`, for at most `limit`; panics with `what` and the
/// last value seen otherwise. The pause between polls only paces them; the deadline decides.
pub fn wait_until<T>(
    what: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not within {limit:?}; last seen: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A started node: its process, API, peer id and dial address.
pub struct Started {
    pub process: NodeProcess,
    pub api: Admin,
    pub peer: String,
    pub address: String,
}

/// Starts a node with its admin API on a free port and `extra` options.
pub fn start_with(name: &'static str, extra: &[&str], transcript: &Transcript) -> Started {
    let mut args = vec!["--admin", "127.0.0.1:0", "--status-interval", "0"];
    args.extend_from_slice(extra);
    let process = NodeProcess::start(name, &args, transcript);
    let peer = process.value_after("peer id: ");
    let api = Admin::of(&process);
    let address = process.value_after("listening on ");
    Started {
        process,
        api,
        peer,
        address,
    }
}
