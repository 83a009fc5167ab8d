//! The persistent peer store, on redb.

use std::{
    collections::HashMap,
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::{
        mpsc::{self, Receiver, SyncSender, TrySendError},
        Arc, Mutex,
    },
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
/// Batches queued for the writer, at most; beyond, operations wait in the handle's backlog.
const QUEUED_BATCHES: usize = 16;
/// Operations the backlog holds while the writer is behind: beyond, the oldest peer operations
/// go first, and bans and unbans are never dropped (see `shed_backlog`).
const MAX_BACKLOG: usize = 100_000;

/// A peer store in a file, on the embedded database [redb](https://docs.rs/redb).
///
/// Every batch from [`write`](PeerStore::write) is one transaction, committed by a background
/// thread with full durability: killing the process at any moment leaves the last committed
/// batch. Opening checks every record, so a damaged file is an error at start
/// ([`StoreError::Corrupted`], naming the file), never a panic later;
/// [`open_or_start_fresh`](Self::open_or_start_fresh) sets such a file aside instead.
#[derive(Debug)]
pub struct RedbStore {
    path: PathBuf,
    db: Arc<Database>,
    loaded: Option<StoredState>,
    sender: Option<SyncSender<Message>>,
    backlog: Vec<StoreOp>,
    /// The last error of the writer thread, reported by the next `write`.
    failure: Arc<Mutex<Option<String>>>,
    writer: Option<JoinHandle<()>>,
    set_aside: Option<PathBuf>,
}

#[derive(Debug)]
enum Message {
    Write(Vec<StoreOp>),
    Flush(mpsc::Sender<Result<(), String>>),
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
        let (sender, receiver) = mpsc::sync_channel(QUEUED_BATCHES);
        let failure = Arc::new(Mutex::new(None));
        let writer = {
            let failure = failure.clone();
            let file = path.clone();
            let db = db.clone();
            std::thread::Builder::new()
                .name("peer-store".into())
                .spawn(move || run_writer(db, receiver, failure, file, max_peers))
                .map_err(|e| StoreError::Open {
                    path: path.clone(),
                    source: Box::new(e),
                })?
        };
        Ok(Self {
            path,
            db,
            loaded: Some(loaded),
            sender: Some(sender),
            backlog: Vec::new(),
            failure,
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
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        self.backlog.extend(ops);
        if !self.backlog.is_empty() {
            let sender = self.sender.as_ref().ok_or_else(|| self.closed())?;
            let batch = std::mem::take(&mut self.backlog);
            match sender.try_send(Message::Write(batch)) {
                Ok(()) => {}
                Err(TrySendError::Full(Message::Write(batch))) => {
                    // The writer is behind: keep the operations for the next call.
                    self.backlog = batch;
                    let dropped = shed_backlog(&mut self.backlog, MAX_BACKLOG);
                    if dropped > 0 {
                        tracing::warn!(
                            dropped,
                            "peer store writer behind; oldest peer changes dropped"
                        );
                    }
                }
                Err(_) => return Err(self.closed()),
            }
        }
        match failure {
            Some(detail) => Err(StoreError::Write {
                path: self.path.clone(),
                source: detail.into(),
            }),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let sender = self.sender.as_ref().ok_or_else(|| self.closed())?;
        let backlog = std::mem::take(&mut self.backlog);
        if !backlog.is_empty() && sender.send(Message::Write(backlog)).is_err() {
            return Err(self.closed());
        }
        let (reply, done) = mpsc::channel();
        sender
            .send(Message::Flush(reply))
            .map_err(|_| self.closed())?;
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
        // Closing the channel stops the writer; wait for it so the file is released.
        self.sender = None;
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

fn run_writer(
    db: Arc<Database>,
    receiver: Receiver<Message>,
    failure: Arc<Mutex<Option<String>>>,
    path: PathBuf,
    max_peers: usize,
) {
    while let Ok(first) = receiver.recv() {
        // Everything queued goes into one transaction.
        let mut ops = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Write(batch) => ops.extend(batch),
                Message::Flush(reply) => flushes.push(reply),
            }
            next = receiver.try_recv().ok();
        }
        let result = if ops.is_empty() {
            Ok(())
        } else {
            commit(&db, ops, max_peers).map_err(|e| e.to_string())
        };
        if let Err(detail) = &result {
            tracing::error!(file = %path.display(), %detail, "peer store write failed");
            *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(detail.clone());
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
    use std::time::Duration;

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
            // Until the queue is full and the backlog holds the rest.
            let mut others = Vec::new();
            while store.backlog.is_empty() && others.len() < 10_000 {
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
        println!(
            "{} batches written while the writer was stuck; {} operations in the backlog",
            others.len() + 2,
            store.backlog.len()
        );
        // The queue holds QUEUED_BATCHES, then the backlog takes over.
        assert!(
            (QUEUED_BATCHES..10_000).contains(&others.len()),
            "{} batches before the backlog took any",
            others.len() + 1
        );
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
