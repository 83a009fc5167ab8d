//! Crash durability of the peer store through the node, the path users rely on: the behaviour
//! journals bans and learned addresses, `store/driver.rs` hands them to `RedbStore` in batches
//! (by its timer and on `flush_store`), and shutdown drains what is left.
//!
//! The real `node` example runs with `--store` and `--stdin-commands`. Each stdin line is one
//! group: permanent bans, timed bans, and tagged peers with addresses learned through
//! `add_address`; the node applies a line as a whole before the swarm runs again, so a group
//! reaches the store in one batch. Every few groups a `flush <n>` line makes the node write and
//! wait (`flush_store`); it prints `peer store flushed <n>` once the store says the batch is
//! durable.
//!
//! - `sigkill_at_random_moments_loses_no_acknowledged_batch`: the node is killed with SIGKILL at
//!   a random moment, six times over the same file, with groups streaming in and the store's
//!   timer handing batches over between flushes. After each kill the store opens, holds every
//!   group up to the last acknowledged one, and holds each group whole or not at all, in order
//!   (what it holds of a round is a prefix of what was sent). The restarted node restores
//!   exactly that.
//! - `sigterm_drains_everything_queued_before_it`: with a store timer of an hour (nothing is
//!   handed over before the signal), groups are applied, then SIGTERM: after the node exits,
//!   every group is in the store.
//!
//! The node binary is `target/<profile>/examples/node`, which `cargo test --all-features`
//! builds; with `--test store_durability` alone build it first:
//! `cargo build --all-features --example node && cargo test --all-features --test store_durability`.
#![cfg(all(feature = "redb", unix))]

mod node_process;

use node_process::example_binary;
use std::{
    collections::{BTreeSet, HashMap, HashSet},
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Condvar, Mutex,
    },
    thread,
    time::{Duration, Instant, SystemTime},
};

use libp2p_connection_manager::{
    store::{PeerStore, RedbStore, StoredPeer},
    BanTarget,
};
use libp2p_core::Multiaddr;
use libp2p_identity::PeerId;
use rand::Rng;

/// SIGKILL-and-restart rounds.
const ROUNDS: usize = 6;
/// Permanent bans, timed bans and tagged peers (two addresses each) in one group.
const BANS: usize = 3;
const TIMED_BANS: usize = 3;
const PEERS: usize = 3;
/// How long the timed bans last: far beyond the test.
const TIMED_BAN: Duration = Duration::from_secs(3600);
/// A `flush` after this many groups.
const FLUSH_EVERY: u64 = 8;
/// The store's timer in the SIGKILL rounds: it hands batches over several times between two
/// flushes, so a kill also lands among timer-driven commits.
const STORE_TIMER_MS: &str = "25";
/// Between two groups: the pace of the stream, so flushes and timer hand-overs interleave (not
/// synchronisation: the tests wait on the node's lines).
const GROUP_PACE: Duration = Duration::from_millis(10);
/// How long the node may take to start, and to acknowledge a flush.
const STARTUP: Duration = Duration::from_secs(15);
const ACK: Duration = Duration::from_secs(30);
/// How long the node may take to exit after SIGTERM.
const EXIT: Duration = Duration::from_secs(15);

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_batch() {
    let started = Instant::now();
    let directory = tempfile::tempdir().expect("a temp dir");
    let path = directory.path().join("node.redb");
    let mut rng = rand::thread_rng();
    let mut groups: Vec<Group> = Vec::new();
    // Groups the store held after the previous kill.
    let mut committed: BTreeSet<u64> = BTreeSet::new();
    let (mut acknowledged_total, mut found_total, mut lost_total) = (0u64, 0u64, 0u64);
    for round in 0..ROUNDS {
        let mut node = Node::start(&path, &["--store-flush-ms", STORE_TIMER_MS]);
        node.expect_restored(committed.len());

        // The moment: after some acknowledged flushes, at once or a little later.
        let acks = rng.gen_range(1..=4);
        let delay = if round % 2 == 0 {
            Duration::ZERO
        } else {
            Duration::from_millis(rng.gen_range(0..2 * FLUSH_EVERY * GROUP_PACE.as_millis() as u64))
        };
        let first = groups.len() as u64;
        let feeder = node.feed(first, true);
        node.wait_for_acks(acks);
        // The scenario itself, not synchronisation: where in the stream the kill lands.
        thread::sleep(delay);
        node.kill();
        let sent = feeder.stop();
        let acked = node.last_ack();
        groups.extend(sent);

        let state = open_store(&path);
        let present = classify(&groups, &state);
        // What the store held before this round is still there.
        for index in &committed {
            assert!(
                present.contains(index),
                "round {round}: group {index}, stored before, is gone"
            );
        }
        let this_round: Vec<u64> = present.iter().copied().filter(|i| *i >= first).collect();
        let prefix: Vec<u64> = (first..first + this_round.len() as u64).collect();
        assert_eq!(
            this_round, prefix,
            "round {round}: the store holds groups out of order (a later batch without an \
             earlier one)"
        );
        let last_found = this_round.last().copied();
        assert!(
            acked.is_some_and(|acked| last_found >= Some(acked)),
            "round {round}: group {acked:?} was acknowledged as flushed, the store ends at \
             {last_found:?}"
        );
        let sent_this_round = groups.len() as u64 - first;
        println!(
            "round {round}: killed {delay:?} after {acks} acknowledged flush(es); groups sent \
             {sent_this_round}, acknowledged up to {acked:?} ({} groups), found {} ({} lost, \
             none half)",
            acked.map_or(0, |a| a + 1 - first),
            this_round.len(),
            sent_this_round - this_round.len() as u64,
        );
        acknowledged_total += acked.map_or(0, |a| a + 1 - first);
        found_total += this_round.len() as u64;
        lost_total += sent_this_round - this_round.len() as u64;
        committed = present;
    }
    // The last restart restores it all.
    let node = Node::start(&path, &[]);
    node.expect_restored(committed.len());
    drop(node);
    println!(
        "{ROUNDS} SIGKILLs: {acknowledged_total} groups acknowledged, {found_total} found \
         (every acknowledged one, whole), {lost_total} unacknowledged lost; {} bans and {} peers \
         stored; {:.1} s",
        committed.len() * (BANS + TIMED_BANS),
        committed.len() * PEERS,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn sigterm_drains_everything_queued_before_it() {
    const GROUPS: u64 = 20;
    let started = Instant::now();
    let directory = tempfile::tempdir().expect("a temp dir");
    let path = directory.path().join("node.redb");
    // An hour: nothing is handed to the store before the signal.
    let mut node = Node::start(&path, &["--store-flush-ms", "3600000"]);
    node.expect_restored(0);
    let groups: Vec<Group> = (0..GROUPS).map(Group::new).collect();
    {
        let stdin = node.stdin.as_mut().expect("the node's stdin");
        for group in &groups {
            writeln!(stdin, "{}", group.line()).expect("write a group");
        }
        writeln!(stdin, "status").expect("write status");
    }
    // Every group applied: the manager holds all the bans.
    let bans = GROUPS as usize * (BANS + TIMED_BANS);
    node.wait_for_line("the status line", STARTUP, |line| {
        line.starts_with("status: phase ") && line.ends_with(&format!(", {bans} ban(s)"))
    });
    node.signal("-TERM");
    let status = node.wait_for_exit(EXIT);
    assert!(status.success(), "the node exited with {status}");
    let lines = node.rest();
    assert!(
        lines
            .iter()
            .any(|l| l == "shut down: all connections closed"),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("not written")),
        "{lines:?}"
    );

    let state = open_store(&path);
    let present = classify(&groups, &state);
    assert_eq!(
        present,
        (0..GROUPS).collect::<BTreeSet<u64>>(),
        "groups queued before SIGTERM are missing from the store"
    );
    let node = Node::start(&path, &[]);
    node.expect_restored(GROUPS as usize);
    println!(
        "SIGTERM: {GROUPS} groups ({bans} bans, {} peers) queued, all found after exit; {:.1} s",
        GROUPS as usize * PEERS,
        started.elapsed().as_secs_f64()
    );
}

/// One stdin line's worth of changes.
#[derive(Debug, Clone)]
struct Group {
    index: u64,
    bans: Vec<PeerId>,
    timed_bans: Vec<PeerId>,
    peers: Vec<(PeerId, Vec<Multiaddr>)>,
}

impl Group {
    fn new(index: u64) -> Self {
        let address = |peer: usize, n: usize| -> Multiaddr {
            format!(
                "/ip4/10.{}.{}.{}/tcp/{}",
                (index >> 8) & 0xff,
                index & 0xff,
                peer,
                4001 + n
            )
            .parse()
            .expect("a valid address")
        };
        Self {
            index,
            bans: (0..BANS).map(|_| PeerId::random()).collect(),
            timed_bans: (0..TIMED_BANS).map(|_| PeerId::random()).collect(),
            peers: (0..PEERS)
                .map(|p| (PeerId::random(), vec![address(p, 0), address(p, 1)]))
                .collect(),
        }
    }

    /// The commands, `;` between them: the node applies them together.
    fn line(&self) -> String {
        let mut commands = Vec::new();
        for peer in &self.bans {
            commands.push(format!("ban {peer}"));
        }
        for peer in &self.timed_bans {
            commands.push(format!("ban {peer} {}", TIMED_BAN.as_secs()));
        }
        for (peer, addresses) in &self.peers {
            commands.push(format!("tag {peer} group {}", self.index));
            for address in addresses {
                commands.push(format!("address {peer} {address}"));
            }
        }
        commands.join("; ")
    }

    /// How many of its parts `state` holds, out of how many; panics on a part held wrong.
    fn parts_in(&self, state: &State) -> (usize, usize) {
        let mut held = 0;
        for peer in &self.bans {
            if let Some(until) = state.bans.get(&BanTarget::Peer(*peer)) {
                assert_eq!(
                    *until, None,
                    "group {}: a permanent ban has an end",
                    self.index
                );
                held += 1;
            }
        }
        // Stored to the millisecond.
        let latest_end = SystemTime::now() + TIMED_BAN + Duration::from_secs(1);
        for peer in &self.timed_bans {
            if let Some(until) = state.bans.get(&BanTarget::Peer(*peer)) {
                assert!(
                    until.is_some_and(|until| until > SystemTime::now() && until <= latest_end),
                    "group {}: a timed ban ends at {until:?}",
                    self.index
                );
                held += 1;
            }
        }
        for (peer, addresses) in &self.peers {
            if let Some(stored) = state.peers.get(peer) {
                assert_eq!(
                    stored.tags,
                    vec![("group".to_owned(), self.index as i64)],
                    "group {}: the tags of {peer}",
                    self.index
                );
                let stored_addresses: HashSet<&Multiaddr> = stored.addresses.iter().collect();
                assert_eq!(
                    stored_addresses,
                    addresses.iter().collect::<HashSet<_>>(),
                    "group {}: the addresses of {peer} (a half batch inside one peer)",
                    self.index
                );
                assert!(!stored.wanted, "group {}: {peer} is not wanted", self.index);
                held += 1;
            }
        }
        (held, BANS + TIMED_BANS + PEERS)
    }
}

/// What a store file holds, by key.
struct State {
    bans: HashMap<BanTarget, Option<SystemTime>>,
    peers: HashMap<PeerId, StoredPeer>,
}

/// Opens the store the node left (it must open), reads it and closes it again.
fn open_store(path: &Path) -> State {
    let mut store = RedbStore::open(path)
        .unwrap_or_else(|error| panic!("the store the node left must open: {error}"));
    let state = store.load().expect("the store loads");
    State {
        bans: state
            .bans
            .into_iter()
            .map(|b| (b.target, b.until))
            .collect(),
        peers: state.peers.into_iter().collect(),
    }
}

/// The groups `state` holds whole; panics on a group held in part, or on anything held that no
/// group put there.
fn classify(groups: &[Group], state: &State) -> BTreeSet<u64> {
    let mut present = BTreeSet::new();
    for group in groups {
        match group.parts_in(state) {
            (0, _) => {}
            (held, all) if held == all => {
                present.insert(group.index);
            }
            (held, all) => panic!(
                "group {} is in the store in part: {held} of {all} changes (half a batch)",
                group.index
            ),
        }
    }
    let bans: usize = present.len() * (BANS + TIMED_BANS);
    let peers: usize = present.len() * PEERS;
    assert_eq!(state.bans.len(), bans, "bans no group put there");
    assert_eq!(state.peers.len(), peers, "peers no group put there");
    present
}

/// The node example with a store, its stdin piped for commands.
struct Node {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every line, for failure messages.
    transcript: Arc<Mutex<Vec<String>>>,
    acks: Arc<Acks>,
}

/// The `peer store flushed <n>` lines seen: how many, and the last `n`.
#[derive(Default)]
struct Acks {
    seen: Mutex<(usize, Option<u64>)>,
    changed: Condvar,
}

impl Node {
    fn start(store: &Path, extra: &[&str]) -> Self {
        let binary = example_binary();
        let mut args = vec![
            "--store",
            store.to_str().expect("a UTF-8 temporary path"),
            "--stdin-commands",
            "--status-interval",
            "0",
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(&binary)
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let acks = Arc::new(Acks::default());
        let (line_tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        {
            let transcript = transcript.clone();
            let acks = acks.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(label) = line.strip_prefix("peer store flushed ") {
                        let mut seen = acks.seen.lock().unwrap_or_else(|p| p.into_inner());
                        seen.0 += 1;
                        seen.1 = label.parse().ok();
                        acks.changed.notify_all();
                    }
                    transcript
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line.clone());
                    let _ = line_tx.send(line);
                }
            });
        }
        let stderr = child.stderr.take().expect("piped stderr");
        {
            let transcript = transcript.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    transcript
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("(stderr) {line}"));
                }
            });
        }
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
            transcript,
            acks,
        }
    }

    fn transcript(&self) -> String {
        let lines = self.transcript.lock().unwrap_or_else(|p| p.into_inner());
        let tail = lines.len().saturating_sub(40);
        lines[tail..].join("\n  ")
    }

    /// Reads lines until one matches, for at most `limit`.
    fn wait_for_line(&self, what: &str, limit: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "{what}: not within {limit:?}; last lines:\n  {}",
                        self.transcript()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "{what}: the node ended first{}; last lines:\n  {}",
                    self.built_without_redb_hint(),
                    self.transcript()
                ),
            }
        }
    }

    fn built_without_redb_hint(&self) -> &'static str {
        if self
            .transcript()
            .contains("needs the example built with the redb feature")
        {
            " (the node example was built without `redb`: \
             `cargo build --all-features --example node`)"
        } else {
            ""
        }
    }

    /// The node restored `groups` groups from its store, no more, no less.
    fn expect_restored(&self, groups: usize) {
        let line = self.wait_for_line("the restored line", STARTUP, |line| {
            line.starts_with("manager: restored from the peer store: ")
        });
        let expected = format!(
            "manager: restored from the peer store: {} ban(s) in force (0 ended while down), {} \
             peer(s), 0 redial(s)",
            groups * (BANS + TIMED_BANS),
            groups * PEERS
        );
        assert_eq!(
            line, expected,
            "the restart does not restore what the store holds"
        );
    }

    /// Streams groups from `first` on, a `flush` every few when `flush`, until stopped or the
    /// node is gone.
    fn feed(&mut self, first: u64, flush: bool) -> Feeder {
        let mut stdin = self.stdin.take().expect("the node's stdin");
        let stop = Arc::new(AtomicBool::new(false));
        let acks = self.acks.clone();
        let handle = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut sent = Vec::new();
                let mut flushes = 0usize;
                for index in first.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let group = Group::new(index);
                    let line = group.line();
                    // Recorded before it is written: the node may have it from here on.
                    sent.push(group);
                    if writeln!(stdin, "{line}").is_err() {
                        break;
                    }
                    if flush && (index + 1 - first).is_multiple_of(FLUSH_EVERY) {
                        if writeln!(stdin, "flush {index}").is_err() {
                            break;
                        }
                        flushes += 1;
                        // At most two flushes unacknowledged: the stream does not run ahead.
                        let seen = acks.seen.lock().unwrap_or_else(|p| p.into_inner());
                        let (_seen, _) = acks
                            .changed
                            .wait_timeout_while(seen, ACK, |seen| {
                                seen.0 + 2 < flushes && !stop.load(Ordering::SeqCst)
                            })
                            .unwrap_or_else(|p| p.into_inner());
                    }
                    thread::sleep(GROUP_PACE);
                }
                sent
            })
        };
        Feeder {
            stop,
            acks: self.acks.clone(),
            handle,
        }
    }

    /// Waits until `count` flushes were acknowledged.
    fn wait_for_acks(&self, count: usize) {
        let seen = self.acks.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, timeout) = self
            .acks
            .changed
            .wait_timeout_while(seen, ACK * count as u32, |seen| seen.0 < count)
            .unwrap_or_else(|p| p.into_inner());
        let got = seen.0;
        drop(seen);
        assert!(
            !timeout.timed_out(),
            "{got} of {count} flushes acknowledged; last lines:\n  {}",
            self.transcript()
        );
    }

    /// SIGKILL, and the end of its output.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait for the node");
    }

    /// The last flush acknowledged, once the node is gone (every line it printed read).
    fn last_ack(&self) -> Option<u64> {
        while self.lines.recv_timeout(EXIT).is_ok() {}
        self.acks.seen.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// `kill -<signal>` (`libc` is not a dependency).
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait().expect("wait for the node") {
                Some(status) => return status,
                None if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                None => panic!(
                    "still running {limit:?} after the signal; last lines:\n  {}",
                    self.transcript()
                ),
            }
        }
    }

    /// The lines not read yet, up to the end of the output (the node has exited).
    fn rest(&self) -> Vec<String> {
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(EXIT) {
            rest.push(line);
        }
        rest
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The thread writing groups to the node.
struct Feeder {
    stop: Arc<AtomicBool>,
    acks: Arc<Acks>,
    handle: thread::JoinHandle<Vec<Group>>,
}

impl Feeder {
    /// Every group it wrote or was about to write.
    fn stop(self) -> Vec<Group> {
        self.stop.store(true, Ordering::SeqCst);
        {
            // Under the lock: a feeder between its check and its wait still sees it.
            let _seen = self.acks.seen.lock().unwrap_or_else(|p| p.into_inner());
            self.acks.changed.notify_all();
        }
        self.handle.join().expect("the feeder thread")
    }
}
