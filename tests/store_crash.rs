//! Crash safety of the redb peer store: a child process writes batches as fast as it can and
//! is killed with SIGKILL at a random moment, several times over the same file. Every reopen
//! must succeed and find whole batches only (every peer of the last batch at the same
//! generation), never older than the last batch the child saw flushed.
#![cfg(all(feature = "redb", unix))]

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, SystemTime},
};

use libp2p_connection_manager::{
    store::{PeerStore, RedbStore, StoreOp, StoredBan, StoredUpdate},
    BanTarget,
};
use libp2p_identity::PeerId;

/// The variable that turns the child test on, naming the store file.
const CHILD_ENV: &str = "CM_STORE_CRASH_FILE";
/// Peers written in every batch.
const PEERS: usize = 32;
/// Kill-and-reopen rounds.
const ROUNDS: usize = 6;
/// How long the child may take to report a flushed batch.
const PROGRESS: Duration = Duration::from_secs(30);

/// The same peers in every process: ids from fixed ed25519 seeds.
fn peers() -> Vec<PeerId> {
    (0..PEERS)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[0] = i as u8;
            seed[1] = 7;
            libp2p_identity::Keypair::ed25519_from_bytes(seed)
                .expect("a valid seed")
                .public()
                .to_peer_id()
        })
        .collect()
}

/// One batch: every peer and one ban tagged with generation `generation`.
fn batch(generation: i64) -> Vec<StoreOp> {
    let mut ops: Vec<StoreOp> = peers()
        .into_iter()
        .map(|peer| {
            StoreOp::UpdatePeer(
                peer,
                StoredUpdate {
                    wanted: true,
                    addresses: Some(vec![format!("/ip4/10.0.0.1/tcp/{}", generation % 60_000)
                        .parse()
                        .expect("a valid address")]),
                    protected: vec![],
                    tags: vec![("generation".into(), generation)],
                    last_disconnect: None,
                },
            )
        })
        .collect();
    ops.push(StoreOp::PutBan(StoredBan {
        target: BanTarget::Peer(peers()[0]),
        until: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(generation as u64)),
    }));
    ops
}

/// The generation the store holds; panics if the peers disagree (a torn batch).
fn stored_generation(path: &Path) -> Option<i64> {
    let mut store = RedbStore::open(path).unwrap_or_else(|e| panic!("the store must reopen: {e}"));
    let state = store.load().expect("the store loads");
    if state.peers.is_empty() {
        assert!(state.bans.is_empty(), "a ban without its batch: {state:?}");
        return None;
    }
    assert_eq!(state.peers.len(), PEERS, "a torn batch: {state:?}");
    let generations: Vec<i64> = state
        .peers
        .iter()
        .map(|(_, peer)| {
            peer.tags
                .first()
                .map(|(_, g)| *g)
                .expect("a generation tag")
        })
        .collect();
    let generation = generations[0];
    assert!(
        generations.iter().all(|g| *g == generation),
        "peers from different batches: {generations:?}"
    );
    let ban_secs = state.bans[0]
        .until
        .and_then(|u| u.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64);
    assert_eq!(ban_secs, Some(generation), "the ban is from another batch");
    Some(generation)
}

#[test]
fn kill_9_during_writes_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("crash.redb");
    let mut floor = None;
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                "child_writes_until_killed",
                "--ignored",
                "--nocapture",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the child starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines, flushed) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(generation) = line.strip_prefix("flushed ") {
                    if lines.send(generation.parse::<i64>().ok()).is_err() {
                        return;
                    }
                }
            }
        });
        // Kill after a varying number of flushed batches, with writes in flight.
        let wait_for = 1 + (round % 4);
        let mut last_flushed = None;
        for _ in 0..wait_for {
            last_flushed = flushed
                .recv_timeout(PROGRESS)
                .unwrap_or_else(|_| panic!("round {round}: the child made no progress"));
        }
        // Not synchronisation: it moves the kill to a different point of the writes in flight.
        std::thread::sleep(Duration::from_millis((round as u64 * 7) % 23));
        child.kill().expect("SIGKILL");
        let _ = child.wait();

        let generation = stored_generation(&path);
        println!("round {round}: killed after generation {last_flushed:?} was flushed; the store holds {generation:?}");
        assert!(
            generation >= last_flushed,
            "round {round}: a flushed batch was lost ({generation:?} < {last_flushed:?})"
        );
        assert!(
            generation >= floor,
            "round {round}: the store went back in time"
        );
        floor = generation;
    }
}

/// The child: writes batches of increasing generation until killed, flushing every tenth and
/// saying so. Run only by the test above.
#[test]
#[ignore = "the child process of kill_9_during_writes_leaves_a_consistent_store"]
fn child_writes_until_killed() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut store = RedbStore::open(&path).expect("the child opens the store");
    let start = store
        .load()
        .expect("the child loads")
        .peers
        .first()
        .and_then(|(_, p)| p.tags.first().map(|(_, g)| *g))
        .unwrap_or(0);
    for generation in start + 1.. {
        store.write(batch(generation)).expect("write");
        if generation % 10 == 0 {
            store.flush().expect("flush");
            println!("flushed {generation}");
        }
    }
}
