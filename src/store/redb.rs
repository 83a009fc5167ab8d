//! The persistent peer store, on redb.

use std::{
    collections::HashMap,
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{mpsc, Arc, Condvar, Mutex, MutexGuard},
    thread::JoinHandle,
};

use libp2p_identity::PeerId;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageError,
    TableDefinition,
};
use web_time::SystemTime;

use super::{
    codec, memory::DEFAULT_MAX_PEERS, record::stalest_beyond, PeerStore, StoreError, StoreOp,
    StoredBan, StoredPeer, StoredState,
};

const PEERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("peers");
const BANS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("bans");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The key in `META` that holds the format of the records.
const FORMAT_KEY: &str = "format";
/// The format of the records this version writes and reads.
pub(crate) const FORMAT: u64 = 1;
/// Operations the queue holds while the writer is behind: beyond, the oldest peer operations
/// go first, and bans and unbans are never dropped (see `shed_backlog`).
const MAX_BACKLOG: usize = 100_000;

/// A peer store in a file, on the embedded database [redb](https://docs.rs/redb).
///
/// Every batch from [`write`](PeerStore::write) is committed whole, in one transaction (batches
/// queued together share one), by a background thread with full durability: killing the
/// process at any moment leaves the last committed batch. `write` never waits for the disk: the
/// writer takes everything queued each time it is ready, by itself. Opening checks every
/// record, so a damaged file is an error at start
/// ([`StoreError::Corrupted`], naming the file), never a panic later;
/// [`open_or_start_fresh`](Self::open_or_start_fresh) sets such a file aside instead.
#[derive(Debug)]
pub struct RedbStore {
    path: PathBuf,
    db: Arc<Database>,
    loaded: Option<StoredState>,
    /// What the writer thread has to do, shared with it.
    queue: Arc<Queue>,
    /// Operations the queue holds at most (beyond, peer changes are shed).
    max_queued: usize,
    writer: Option<JoinHandle<()>>,
    set_aside: Option<PathBuf>,
}

/// The writer's work: the handle adds to it and never waits for the disk; the writer takes all
/// of it each time it is ready, so nothing handed over waits for a later call.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<Pending>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct Pending {
    /// Operations not taken by the writer yet, in order.
    ops: Vec<StoreOp>,
    /// Flushes waiting for everything queued before them.
    flushes: Vec<mpsc::Sender<Result<(), String>>>,
    /// The last error of the writer thread, reported by the next `write`.
    failure: Option<String>,
    /// The handle is gone: the writer writes what is queued and stops.
    closed: bool,
    /// The writer thread is gone.
    stopped: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // The writer never panics holding it; whole operations are queued either way.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RedbStore {
    /// Opens the store in `path`, creating it if missing.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_max_peers(path, DEFAULT_MAX_PEERS)
    }

    /// Opens the store, keeping at most `max_peers` peers [default: 10 000]: beyond it the
    /// stalest peers that are not wanted and carry no tag are dropped.
    pub fn open_with_max_peers(
        path: impl AsRef<Path>,
        max_peers: usize,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let (db, loaded) = open_and_read(&path)?;
        let db = Arc::new(db);
        let queue = Arc::new(Queue::default());
        let writer = {
            let queue = queue.clone();
            let file = path.clone();
            let db = db.clone();
            std::thread::Builder::new()
                .name("peer-store".into())
                .spawn(move || run_writer(db, queue, file, max_peers))
                .map_err(|e| StoreError::Open {
                    path: path.clone(),
                    source: Box::new(e),
                })?
        };
        Ok(Self {
            path,
            db,
            loaded: Some(loaded),
            queue,
            max_queued: MAX_BACKLOG,
            writer: Some(writer),
            set_aside: None,
        })
    }

    /// Opens the store; if the file is corrupted or of an incompatible format, renames it to
    /// `<file>.bad-<unix seconds>` and starts with an empty store (the rename is logged and
    /// [`set_aside`](Self::set_aside) tells where it went). Other errors (permissions, a file
    /// in use) are returned as they are.
    pub fn open_or_start_fresh(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        match Self::open(path) {
            Err(StoreError::Corrupted { .. } | StoreError::Incompatible { .. }) => {}
            other => return other,
        }
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".bad-{secs}"));
        let aside = PathBuf::from(aside);
        std::fs::rename(path, &aside).map_err(|e| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        tracing::warn!(file = %path.display(), moved_to = %aside.display(),
            "peer store unreadable: set aside, starting with an empty one");
        let mut store = Self::open(path)?;
        store.set_aside = Some(aside);
        Ok(store)
    }

    /// The file of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where [`open_or_start_fresh`](Self::open_or_start_fresh) moved an unreadable file.
    pub fn set_aside(&self) -> Option<&Path> {
        self.set_aside.as_deref()
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed {
            path: self.path.clone(),
        }
    }
}

impl PeerStore for RedbStore {
    fn load(&mut self) -> Result<StoredState, StoreError> {
        match self.loaded.take() {
            Some(state) => Ok(state),
            None => {
                // Read again: what was loaded at open has been handed out already.
                self.flush()?;
                read_all(&self.db, &self.path)
            }
        }
    }

    fn write(&mut self, ops: Vec<StoreOp>) -> Result<(), StoreError> {
        // What was read at open is out of date from now on.
        self.loaded = None;
        let failure = {
            let mut pending = self.queue.lock();
            if pending.stopped {
                return Err(self.closed());
            }
            if !ops.is_empty() {
                pending.ops.extend(ops);
                // The writer is behind by this much: the oldest peer changes go.
                let dropped = shed_backlog(&mut pending.ops, self.max_queued);
                if dropped > 0 {
                    tracing::warn!(
                        dropped,
                        "peer store writer behind; oldest peer changes dropped"
                    );
                }
                self.queue.ready.notify_one();
            }
            pending.failure.take()
        };
        match failure {
            Some(detail) => Err(StoreError::Write {
                path: self.path.clone(),
                source: detail.into(),
            }),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let (reply, done) = mpsc::channel();
        {
            let mut pending = self.queue.lock();
            if pending.stopped {
                return Err(self.closed());
            }
            pending.flushes.push(reply);
            self.queue.ready.notify_one();
        }
        match done.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(detail)) => Err(StoreError::Write {
                path: self.path.clone(),
                source: detail.into(),
            }),
            Err(_) => Err(self.closed()),
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::warn!(%error, "peer store: last changes not written");
        }
        // The writer stops once the queue is empty; wait for it so the file is released.
        self.queue.lock().closed = true;
        self.queue.ready.notify_one();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Keeps `backlog` within `max` operations by dropping the oldest peer operations; bans and
/// unbans are never dropped, even when only they are left above `max` (they come from the
/// application's own `ban`/`unban` calls and their ends, one per target per batch: automatic
/// bans never reach the store). A lost peer update leaves a stale record; a lost ban would let
/// a banned peer back in after a restart. Returns how many operations went.
fn shed_backlog(backlog: &mut Vec<StoreOp>, max: usize) -> usize {
    let mut excess = backlog.len().saturating_sub(max);
    if excess == 0 {
        return 0;
    }
    let before = backlog.len();
    backlog.retain(|op| {
        let ban = matches!(op, StoreOp::PutBan(_) | StoreOp::RemoveBan(_));
        if ban || excess == 0 {
            return true;
        }
        excess -= 1;
        false
    });
    before - backlog.len()
}

/// Opens (or creates) the database and reads every record, checking the format.
fn open_and_read(path: &Path) -> Result<(Database, StoredState), StoreError> {
    // redb's debug builds assert on some kinds of damage instead of returning an error: a
    // damaged file must not take the node down in any build.
    let opened = catch_unwind(AssertUnwindSafe(|| -> Result<_, StoreError> {
        let db = Database::create(path).map_err(|e| open_error(path, e))?;
        ensure_format(&db, path)?;
        let state = read_all(&db, path)?;
        Ok((db, state))
    }));
    opened.unwrap_or_else(|_| {
        Err(StoreError::Corrupted {
            path: path.to_path_buf(),
            detail: "the database engine refused the file".into(),
        })
    })
}

fn open_error(path: &Path, error: DatabaseError) -> StoreError {
    let path = path.to_path_buf();
    match error {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Locked { path }
        }
        DatabaseError::UpgradeRequired(version) => StoreError::Incompatible {
            path,
            found: format!("redb file format {version}"),
            expected: FORMAT,
        },
        DatabaseError::Storage(storage) => storage_error(path, storage),
        other => StoreError::Open {
            path,
            source: Box::new(other),
        },
    }
}

fn storage_error(path: PathBuf, error: StorageError) -> StoreError {
    match error {
        StorageError::Corrupted(detail) => StoreError::Corrupted { path, detail },
        StorageError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            StoreError::Corrupted {
                path,
                detail: io.to_string(),
            }
        }
        other => StoreError::Open {
            path,
            source: Box::new(other),
        },
    }
}

fn corrupted(path: &Path, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupted {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// A new file gets the current format; an existing one must have it.
fn ensure_format(db: &Database, path: &Path) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(|e| corrupted(path, e))?;
    {
        let mut meta = txn.open_table(META).map_err(|e| corrupted(path, e))?;
        let found = meta
            .get(FORMAT_KEY)
            .map_err(|e| corrupted(path, e))?
            .map(|v| v.value());
        match found {
            Some(FORMAT) => {}
            Some(other) => {
                return Err(StoreError::Incompatible {
                    path: path.to_path_buf(),
                    found: format!("peer store format {other}"),
                    expected: FORMAT,
                })
            }
            None => {
                meta.insert(FORMAT_KEY, FORMAT)
                    .map_err(|e| corrupted(path, e))?;
            }
        }
        txn.open_table(PEERS).map_err(|e| corrupted(path, e))?;
        txn.open_table(BANS).map_err(|e| corrupted(path, e))?;
    }
    txn.commit().map_err(|e| corrupted(path, e))
}

fn read_all(db: &Database, path: &Path) -> Result<StoredState, StoreError> {
    let txn = db.begin_read().map_err(|e| corrupted(path, e))?;
    let mut state = StoredState::default();
    let bans = txn.open_table(BANS).map_err(|e| corrupted(path, e))?;
    for entry in bans.iter().map_err(|e| corrupted(path, e))? {
        let (key, value) = entry.map_err(|e| corrupted(path, e))?;
        let target = codec::decode_ban_key(key.value())
            .map_err(|e| corrupted(path, format_args!("a ban: {e}")))?;
        let until = codec::decode_ban_until(value.value())
            .map_err(|e| corrupted(path, format_args!("the ban of {target}: {e}")))?;
        state.bans.push(StoredBan { target, until });
    }
    let peers = txn.open_table(PEERS).map_err(|e| corrupted(path, e))?;
    for entry in peers.iter().map_err(|e| corrupted(path, e))? {
        let (key, value) = entry.map_err(|e| corrupted(path, e))?;
        let peer = PeerId::from_bytes(key.value())
            .map_err(|e| corrupted(path, format_args!("a peer key: {e}")))?;
        let stored = codec::decode_peer(value.value())
            .map_err(|e| corrupted(path, format_args!("the record of {peer}: {e}")))?;
        state.peers.push((peer, stored));
    }
    Ok(state)
}

/// Marks the writer gone however it ends (a panic in the database included), so that writes
/// and flushes report the store closed instead of waiting for it.
struct Stopped<'a>(&'a Queue);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let mut pending = self.0.lock();
        pending.stopped = true;
        // Waiting flushes see their reply channel close.
        pending.flushes.clear();
    }
}

fn run_writer(db: Arc<Database>, queue: Arc<Queue>, path: PathBuf, max_peers: usize) {
    let _stopped = Stopped(&queue);
    loop {
        // Everything queued goes into one transaction; the flushes queued with it are answered
        // after it.
        let (ops, flushes) = {
            let mut pending = queue.lock();
            while pending.ops.is_empty() && pending.flushes.is_empty() && !pending.closed {
                pending = queue
                    .ready
                    .wait(pending)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if pending.ops.is_empty() && pending.flushes.is_empty() {
                return;
            }
            (
                std::mem::take(&mut pending.ops),
                std::mem::take(&mut pending.flushes),
            )
        };
        let result = if ops.is_empty() {
            Ok(())
        } else {
            commit(&db, ops, max_peers).map_err(|e| e.to_string())
        };
        if let Err(detail) = &result {
            tracing::error!(file = %path.display(), %detail, "peer store write failed");
            queue.lock().failure = Some(detail.clone());
        }
        for reply in flushes {
            let _ = reply.send(result.clone());
        }
    }
}

fn commit(db: &Database, ops: Vec<StoreOp>, max_peers: usize) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut peers = txn.open_table(PEERS)?;
        let mut bans = txn.open_table(BANS)?;
        for op in ops {
            match op {
                StoreOp::PutBan(ban) => {
                    let key = codec::ban_key(&ban.target);
                    bans.insert(
                        key.as_slice(),
                        codec::encode_ban_until(ban.until).as_slice(),
                    )?;
                }
                StoreOp::RemoveBan(target) => {
                    bans.remove(codec::ban_key(&target).as_slice())?;
                }
                StoreOp::UpdatePeer(peer, update) => {
                    let key = peer.to_bytes();
                    // A record that no longer decodes is replaced by the update.
                    let mut stored = peers
                        .get(key.as_slice())?
                        .and_then(|v| codec::decode_peer(v.value()).ok())
                        .unwrap_or_default();
                    stored.apply(update);
                    peers.insert(key.as_slice(), codec::encode_peer(&stored).as_slice())?;
                }
                StoreOp::RemovePeer(peer) => {
                    peers.remove(peer.to_bytes().as_slice())?;
                }
            }
        }
        let total = usize::try_from(peers.len()?).unwrap_or(usize::MAX);
        if total > max_peers {
            // Down to 90% so that the scan is not repeated on every batch.
            let keep = max_peers - max_peers / 10;
            let mut all: HashMap<PeerId, StoredPeer> = HashMap::with_capacity(total);
            for entry in peers.iter()? {
                let (key, value) = entry?;
                if let (Ok(id), Ok(stored)) = (
                    PeerId::from_bytes(key.value()),
                    codec::decode_peer(value.value()),
                ) {
                    all.insert(id, stored);
                }
            }
            for peer in stalest_beyond(all.iter().map(|(id, p)| (*id, p)), total, keep) {
                peers.remove(peer.to_bytes().as_slice())?;
            }
        }
    }
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, time::Duration};

    use libp2p_core::Multiaddr;

    use super::*;
    use crate::{
        core::{BanTarget, ClosedBy},
        store::{StoredDisconnect, StoredUpdate},
        DisconnectReason,
    };

    fn update(wanted: bool, address: &str) -> StoredUpdate {
        StoredUpdate {
            wanted,
            addresses: Some(vec![address.parse::<Multiaddr>().unwrap()]),
            protected: vec![],
            tags: vec![("score".into(), 3)],
            last_disconnect: Some(StoredDisconnect {
                reason: DisconnectReason::Timeout,
                closed_by: ClosedBy::Remote,
                at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                retry_after: None,
            }),
        }
    }

    #[test]
    fn what_is_written_is_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        let (a, b) = (PeerId::random(), PeerId::random());
        let until = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        {
            let mut store = RedbStore::open(&path).unwrap();
            assert_eq!(store.load().unwrap(), StoredState::default());
            store
                .write(vec![
                    StoreOp::UpdatePeer(a, update(true, "/ip4/10.0.0.1/tcp/1")),
                    StoreOp::UpdatePeer(b, update(false, "/ip4/10.0.0.2/tcp/2")),
                    StoreOp::PutBan(StoredBan {
                        target: BanTarget::Peer(b),
                        until: Some(until),
                    }),
                    StoreOp::PutBan(StoredBan {
                        target: BanTarget::Network("10.9.0.0/16".parse().unwrap()),
                        until: None,
                    }),
                ])
                .unwrap();
            store
                .write(vec![
                    StoreOp::RemovePeer(b),
                    StoreOp::RemoveBan(BanTarget::Network("10.9.0.0/16".parse().unwrap())),
                ])
                .unwrap();
        }
        let mut store = RedbStore::open(&path).unwrap();
        let state = store.load().unwrap();
        assert_eq!(
            state.peers,
            vec![(
                a,
                StoredPeer::from_update(update(true, "/ip4/10.0.0.1/tcp/1"))
            )]
        );
        assert_eq!(
            state.bans,
            vec![StoredBan {
                target: BanTarget::Peer(b),
                until: Some(until),
            }]
        );
        // A second load reads the file again, after what was written since.
        store.write(vec![StoreOp::RemovePeer(a)]).unwrap();
        assert!(store.load().unwrap().peers.is_empty());
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it_and_can_be_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let error = RedbStore::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::Corrupted { .. }), "{error:?}");
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );

        let mut store = RedbStore::open_or_start_fresh(&path).unwrap();
        assert_eq!(store.load().unwrap(), StoredState::default());
        let aside = store
            .set_aside()
            .expect("the damaged file was moved")
            .to_path_buf();
        assert_eq!(std::fs::read(&aside).unwrap(), vec![0x5a; 8192]);
    }

    #[test]
    fn a_file_of_another_format_is_incompatible() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert(FORMAT_KEY, 99)
                .unwrap();
            txn.commit().unwrap();
        }
        let error = RedbStore::open(&path).unwrap_err();
        assert!(
            matches!(&error, StoreError::Incompatible { found, .. } if found.contains("99")),
            "{error:?}"
        );
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn a_record_that_does_not_decode_is_reported_with_its_peer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        let peer = PeerId::random();
        drop(RedbStore::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(PEERS)
                .unwrap()
                .insert(peer.to_bytes().as_slice(), [0xff_u8, 0xff, 0xff].as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        let error = RedbStore::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::Corrupted { .. }), "{error:?}");
        assert!(error.to_string().contains(&peer.to_string()), "{error}");
    }

    #[test]
    fn a_file_in_use_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        let _first = RedbStore::open(&path).unwrap();
        let error = RedbStore::open(&path).unwrap_err();
        assert!(matches!(error, StoreError::Locked { .. }), "{error:?}");
    }

    #[test]
    fn the_stalest_disposable_peers_are_dropped_beyond_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        let mut store = RedbStore::open_with_max_peers(&path, 10).unwrap();
        let wanted = PeerId::random();
        let mut ops = vec![StoreOp::UpdatePeer(
            wanted,
            update(true, "/ip4/10.0.0.1/tcp/1"),
        )];
        for _ in 0..20 {
            ops.push(StoreOp::UpdatePeer(
                PeerId::random(),
                update(false, "/ip4/10.0.0.2/tcp/2"),
            ));
        }
        // Disposable: not wanted, no tags.
        for op in &mut ops[1..] {
            if let StoreOp::UpdatePeer(_, update) = op {
                update.tags.clear();
            }
        }
        store.write(ops).unwrap();
        let peers = store.load().unwrap().peers;
        assert_eq!(peers.len(), 9, "pruned down to 90% of the cap");
        assert!(peers.iter().any(|(peer, _)| *peer == wanted));
    }

    #[test]
    fn a_stuck_writer_never_blocks_a_write_and_flush_writes_everything_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        let mut store = RedbStore::open(&path).unwrap();
        let at = |secs: u64| Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        let target = BanTarget::Peer(PeerId::random());
        // Holding the database's one write transaction stops the writer thread at its next
        // batch, as a slow disk would.
        let stuck = store.db.begin_write().unwrap();
        let (done, written) = mpsc::channel();
        let writes = std::thread::spawn(move || {
            store
                .write(vec![StoreOp::PutBan(StoredBan {
                    target,
                    until: at(1),
                })])
                .unwrap();
            // Many more batches than the writer takes before it is stuck.
            let mut others = Vec::new();
            for _ in 0..200 {
                let peer = PeerId::random();
                others.push(peer);
                store
                    .write(vec![StoreOp::PutBan(StoredBan {
                        target: BanTarget::Peer(peer),
                        until: None,
                    })])
                    .unwrap();
            }
            // The newest state of `target`, behind everything else.
            store
                .write(vec![StoreOp::PutBan(StoredBan {
                    target,
                    until: at(2),
                })])
                .unwrap();
            let _ = done.send(());
            (store, others)
        });
        written
            .recv_timeout(Duration::from_secs(10))
            .expect("write blocked behind a stuck writer");
        let (mut store, others) = writes.join().unwrap();
        drop(stuck);
        store.flush().unwrap();
        let bans: HashMap<BanTarget, Option<SystemTime>> = store
            .load()
            .unwrap()
            .bans
            .into_iter()
            .map(|ban| (ban.target, ban.until))
            .collect();
        assert_eq!(bans.len(), others.len() + 1);
        assert!(others
            .iter()
            .all(|peer| bans.get(&BanTarget::Peer(*peer)) == Some(&None)));
        assert_eq!(
            bans.get(&target),
            Some(&at(2)),
            "batches applied out of order"
        );
    }

    #[test]
    fn a_queue_over_its_bound_sheds_the_oldest_peer_changes_and_never_a_ban() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        let mut store = RedbStore::open(&path).unwrap();
        store.max_queued = 8;
        let stuck = store.db.begin_write().unwrap();
        // The writer takes a first batch and is stuck committing it.
        let first = PeerId::random();
        store
            .write(vec![StoreOp::UpdatePeer(
                first,
                update(true, "/ip4/10.0.0.1/tcp/1"),
            )])
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !store.queue.lock().ops.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never took the first batch"
            );
            std::thread::yield_now();
        }
        // 12 peer updates and 4 bans queue up behind it, one batch each, bans first.
        let bans: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        let peers: Vec<PeerId> = (0..12).map(|_| PeerId::random()).collect();
        for peer in &bans {
            store
                .write(vec![StoreOp::PutBan(StoredBan {
                    target: BanTarget::Peer(*peer),
                    until: None,
                })])
                .unwrap();
        }
        for peer in &peers {
            store
                .write(vec![StoreOp::UpdatePeer(
                    *peer,
                    update(true, "/ip4/10.0.0.2/tcp/2"),
                )])
                .unwrap();
        }
        assert_eq!(store.queue.lock().ops.len(), 8, "held to its bound");
        drop(stuck);
        store.flush().unwrap();
        let state = store.load().unwrap();
        let stored_bans: HashSet<BanTarget> = state.bans.iter().map(|b| b.target).collect();
        assert_eq!(
            stored_bans,
            bans.iter()
                .map(|p| BanTarget::Peer(*p))
                .collect::<HashSet<_>>(),
            "every ban kept, though the oldest"
        );
        let stored_peers: HashSet<PeerId> = state.peers.iter().map(|(p, _)| *p).collect();
        let mut kept: HashSet<PeerId> = peers[8..].iter().copied().collect();
        kept.insert(first);
        assert_eq!(stored_peers, kept, "the newest 4 peer updates kept");
    }

    #[test]
    fn what_waited_behind_a_stuck_writer_reaches_the_file_without_another_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.redb");
        let mut store = RedbStore::open(&path).unwrap();
        let db = store.db.clone();
        let stuck = db.begin_write().unwrap();
        // More batches than the writer's queue holds, while it is stuck.
        let peers: Vec<PeerId> = (0..64).map(|_| PeerId::random()).collect();
        let (done, written) = mpsc::channel();
        let writes = std::thread::spawn(move || {
            for peer in &peers {
                store
                    .write(vec![StoreOp::PutBan(StoredBan {
                        target: BanTarget::Peer(*peer),
                        until: None,
                    })])
                    .unwrap();
            }
            let _ = done.send(());
            store
        });
        written
            .recv_timeout(Duration::from_secs(10))
            .expect("write blocked behind a stuck writer");
        let store = writes.join().unwrap();
        // The disk is back. No write and no flush follow (a quiet node, or one about to be
        // killed): the writer must get to every batch by itself.
        drop(stuck);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let stored = loop {
            let stored = read_all(&db, &path).unwrap().bans.len();
            if stored == 64 || std::time::Instant::now() > deadline {
                break stored;
            }
            // Polling the file for the event, with the deadline above.
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            stored, 64,
            "batches handed to the store stayed in memory after the writer caught up"
        );
        drop(store);
    }

    #[test]
    fn a_backlog_under_pressure_never_drops_a_ban_or_an_unban() {
        let ban = |n: u64| {
            StoreOp::PutBan(StoredBan {
                target: BanTarget::Peer(PeerId::random()),
                until: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(n)),
            })
        };
        let unban = || StoreOp::RemoveBan(BanTarget::Peer(PeerId::random()));
        let peer = || StoreOp::UpdatePeer(PeerId::random(), update(false, "/ip4/10.0.0.1/tcp/1"));
        // The oldest operations are bans; peer updates pile up behind them.
        let mut backlog = vec![ban(1), unban(), ban(2)];
        let mut updates = Vec::new();
        for n in 0..10 {
            updates.push(peer());
            backlog.push(updates[n].clone());
        }
        backlog.push(ban(3));
        let bans: Vec<StoreOp> = backlog
            .iter()
            .filter(|op| matches!(op, StoreOp::PutBan(_) | StoreOp::RemoveBan(_)))
            .cloned()
            .collect();
        let dropped = shed_backlog(&mut backlog, 8);
        println!(
            "backlog of {} over a cap of 8: {dropped} dropped, {} ban ops kept",
            backlog.len() + dropped,
            backlog
                .iter()
                .filter(|op| matches!(op, StoreOp::PutBan(_) | StoreOp::RemoveBan(_)))
                .count()
        );
        assert_eq!(backlog.len(), 8);
        assert_eq!(dropped, 6);
        // Every ban and unban is kept, in order; the oldest peer updates went.
        let kept_bans: Vec<StoreOp> = backlog
            .iter()
            .filter(|op| matches!(op, StoreOp::PutBan(_) | StoreOp::RemoveBan(_)))
            .cloned()
            .collect();
        assert_eq!(kept_bans, bans);
        let kept_updates: Vec<StoreOp> = backlog
            .iter()
            .filter(|op| matches!(op, StoreOp::UpdatePeer(..)))
            .cloned()
            .collect();
        assert_eq!(kept_updates, updates[6..]);

        // Only ban operations left: they are all kept, above the cap.
        let mut only_bans: Vec<StoreOp> = (0..20).map(ban).collect();
        assert_eq!(shed_backlog(&mut only_bans, 8), 0);
        assert_eq!(only_bans.len(), 20);
    }
}
