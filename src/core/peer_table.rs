//! The table of peer records: each record in a stable slot, found by its `PeerId`.
//!
//! A connected peer's record is the largest thing the manager keeps per peer, and a node with
//! thousands of connections keeps thousands. In a `HashMap<PeerId, PeerRecord>` every record
//! sits in the map's bucket array, which is between 44% and 87% full (a table of 10,000
//! entries has 16,384 buckets), and every other table that had to name the peer (the owner of
//! each connection) held another 80-byte `PeerId`. Here records live in fixed-size chunks that
//! waste at most one chunk, the hash index holds only a 4-byte slot per peer (hashing the
//! `PeerId` stored in the slot: hashbrown's `HashTable`, made for exactly this), and a
//! [`PeerSlot`] names a peer in 4 bytes wherever its record is known to exist.

use hashbrown::HashTable;
use libp2p_identity::PeerId;
use std::hash::BuildHasher;

use super::hashing::Keys;
use super::peers::PeerRecord;

/// Records in the first chunk; each next chunk doubles, up to [`CHUNK`]: a manager that knows
/// a handful of peers holds a few kilobytes (a simulation runs 10,000 managers; with chunks of
/// 128 from the start its memory doubled and it ran 20% slower).
const FIRST_CHUNK: usize = 8;

/// Records per chunk once grown: a chunk of 128 records is about 18 KB, and a table of 100,000
/// peers has 800 chunks.
const CHUNK: usize = 128;

/// The chunks that grow (8, 16, 32, 64) and the slots they hold together.
const GROWING_CHUNKS: usize = (CHUNK / FIRST_CHUNK).trailing_zeros() as usize;
const GROWING_SLOTS: usize = FIRST_CHUNK * ((1 << GROWING_CHUNKS) - 1);

/// Where a record lives: stable while the record exists (a record with connections is never
/// removed, so a connection's owner can be kept as a slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PeerSlot(u32);

#[derive(Debug)]
struct Entry {
    peer: PeerId,
    record: PeerRecord,
}

/// Peer records by `PeerId` (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct PeerTable {
    chunks: Vec<Box<[Option<Entry>]>>,
    /// Slots freed by removals, reused before a new chunk is made.
    free: Vec<PeerSlot>,
    index: HashTable<PeerSlot>,
    keys: Keys,
}

/// The number of slots in chunk `chunk`.
fn chunk_len(chunk: usize) -> usize {
    if chunk < GROWING_CHUNKS {
        FIRST_CHUNK << chunk
    } else {
        CHUNK
    }
}

/// The first slot of chunk `chunk`.
fn chunk_start(chunk: usize) -> usize {
    if chunk < GROWING_CHUNKS {
        FIRST_CHUNK * ((1 << chunk) - 1)
    } else {
        GROWING_SLOTS + CHUNK * (chunk - GROWING_CHUNKS)
    }
}

/// The chunk of `slot` and its offset there.
fn locate(slot: PeerSlot) -> (usize, usize) {
    let slot = slot.0 as usize;
    let chunk = if slot < GROWING_SLOTS {
        // Chunk k starts at 8 * (2^k - 1): k = floor(log2(slot / 8 + 1)).
        (slot / FIRST_CHUNK + 1).ilog2() as usize
    } else {
        GROWING_CHUNKS + (slot - GROWING_SLOTS) / CHUNK
    };
    (chunk, slot - chunk_start(chunk))
}

fn entry_at(chunks: &[Box<[Option<Entry>]>], slot: PeerSlot) -> Option<&Entry> {
    let (chunk, offset) = locate(slot);
    chunks.get(chunk)?.get(offset)?.as_ref()
}

impl PeerTable {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn contains_key(&self, peer: &PeerId) -> bool {
        self.slot_of(peer).is_some()
    }

    /// The slot of `peer`'s record, if it has one.
    pub(crate) fn slot_of(&self, peer: &PeerId) -> Option<PeerSlot> {
        // Not even a hash for an empty table (as std's `HashMap::get` does).
        if self.index.is_empty() {
            return None;
        }
        let chunks = &self.chunks;
        self.index
            .find(self.keys.hash_one(peer), |slot| {
                entry_at(chunks, *slot).is_some_and(|e| e.peer == *peer)
            })
            .copied()
    }

    /// The peer whose record is in `slot`.
    pub(crate) fn peer_at(&self, slot: PeerSlot) -> Option<&PeerId> {
        entry_at(&self.chunks, slot).map(|e| &e.peer)
    }

    pub(crate) fn get(&self, peer: &PeerId) -> Option<&PeerRecord> {
        let slot = self.slot_of(peer)?;
        entry_at(&self.chunks, slot).map(|e| &e.record)
    }

    pub(crate) fn get_mut(&mut self, peer: &PeerId) -> Option<&mut PeerRecord> {
        let slot = self.slot_of(peer)?;
        self.entry_mut(slot).map(|e| &mut e.record)
    }

    fn entry_mut(&mut self, slot: PeerSlot) -> Option<&mut Entry> {
        let (chunk, offset) = locate(slot);
        self.chunks.get_mut(chunk)?.get_mut(offset)?.as_mut()
    }

    /// `peer`'s record, made empty if it had none.
    pub(crate) fn or_default(&mut self, peer: PeerId) -> &mut PeerRecord {
        let slot = match self.slot_of(&peer) {
            Some(slot) => slot,
            None => self.insert_new(peer),
        };
        let (chunk, offset) = locate(slot);
        &mut self.chunks[chunk][offset]
            .get_or_insert_with(|| Entry {
                peer,
                record: PeerRecord::default(),
            })
            .record
    }

    fn insert_new(&mut self, peer: PeerId) -> PeerSlot {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                let next = chunk_start(self.chunks.len());
                let len = chunk_len(self.chunks.len());
                // A node never holds four billion peer records: its limits refuse long before.
                let slot = |s: usize| PeerSlot(u32::try_from(s).expect("fewer than 2^32 peers"));
                self.chunks
                    .push(std::iter::repeat_with(|| None).take(len).collect());
                self.free.extend((next + 1..next + len).rev().map(slot));
                slot(next)
            }
        };
        let (chunk, offset) = locate(slot);
        self.chunks[chunk][offset] = Some(Entry {
            peer,
            record: PeerRecord::default(),
        });
        let Self {
            chunks,
            index,
            keys,
            ..
        } = self;
        index.insert_unique(keys.hash_one(peer), slot, |slot| {
            entry_at(chunks, *slot).map_or(0, |e| keys.hash_one(e.peer))
        });
        slot
    }

    /// Removes `peer`'s record if `forget` says so; returns whether it did.
    pub(crate) fn remove_if(
        &mut self,
        peer: &PeerId,
        forget: impl FnOnce(&PeerRecord) -> bool,
    ) -> bool {
        let chunks = &self.chunks;
        let Ok(found) = self.index.find_entry(self.keys.hash_one(peer), |slot| {
            entry_at(chunks, *slot).is_some_and(|e| e.peer == *peer)
        }) else {
            return false;
        };
        let slot = *found.get();
        if !entry_at(chunks, slot).is_some_and(|e| forget(&e.record)) {
            return false;
        }
        found.remove();
        let (chunk, offset) = locate(slot);
        self.chunks[chunk][offset] = None;
        self.free.push(slot);
        true
    }

    /// Every peer with its record, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerRecord)> + '_ {
        self.chunks
            .iter()
            .flat_map(|chunk| chunk.iter().flatten())
            .map(|e| (&e.peer, &e.record))
    }

    /// Every peer with its record and its slot, in slot order.
    pub(crate) fn iter_slots(&self) -> impl Iterator<Item = (PeerSlot, &PeerId, &PeerRecord)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(chunk, entries)| {
            let start = chunk_start(chunk);
            entries
                .iter()
                .enumerate()
                .filter_map(move |(offset, entry)| {
                    let entry = entry.as_ref()?;
                    let slot = PeerSlot(u32::try_from(start + offset).ok()?);
                    Some((slot, &entry.peer, &entry.record))
                })
        })
    }

    /// The peer and record in `slot`, if it holds one.
    pub(crate) fn at(&self, slot: PeerSlot) -> Option<(&PeerId, &PeerRecord)> {
        entry_at(&self.chunks, slot).map(|e| (&e.peer, &e.record))
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &PeerId> + '_ {
        self.iter().map(|(peer, _)| peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_one_place_and_chunks_grow_to_their_cap() {
        let lens: Vec<usize> = (0..7).map(chunk_len).collect();
        assert_eq!(lens, [8, 16, 32, 64, 128, 128, 128]);
        let mut expected = Vec::new();
        for (chunk, len) in lens.iter().enumerate() {
            expected.extend((0..*len).map(|offset| (chunk, offset)));
        }
        let located: Vec<(usize, usize)> = (0..expected.len())
            .map(|s| locate(PeerSlot(s as u32)))
            .collect();
        assert_eq!(located, expected);
    }

    #[test]
    fn records_are_found_by_peer_and_by_slot_and_slots_are_reused() {
        let mut table = PeerTable::default();
        let peers: Vec<PeerId> = (0..300).map(|_| PeerId::random()).collect();
        for (n, peer) in peers.iter().enumerate() {
            table.or_default(*peer).pending_outbound = n as u32;
        }
        assert_eq!(table.len(), 300);
        for (n, peer) in peers.iter().enumerate() {
            assert_eq!(table.get(peer).map(|r| r.pending_outbound), Some(n as u32));
            let slot = table.slot_of(peer).unwrap();
            assert_eq!(table.peer_at(slot), Some(peer));
        }
        // The existing record is returned, not replaced.
        assert_eq!(table.or_default(peers[7]).pending_outbound, 7);
        assert!(!table.remove_if(&peers[3], |r| r.pending_outbound == 0));
        assert!(table.remove_if(&peers[3], |r| r.pending_outbound == 3));
        assert!(!table.contains_key(&peers[3]));
        assert!(!table.remove_if(&peers[3], |_| true));
        let freed = table.len();
        let newcomer = PeerId::random();
        table.or_default(newcomer);
        assert_eq!(table.len(), freed + 1);
        assert_eq!(table.iter().count(), 300);
        // 8 + 16 + 32 + 64 + 128 + 128 slots.
        assert_eq!(table.chunks.len(), 6);
        for peer in peers.iter().filter(|p| **p != peers[3]) {
            assert!(table.contains_key(peer));
        }
        assert!(table.keys().any(|p| *p == newcomer));
        for (slot, peer, record) in table.iter_slots() {
            assert_eq!(table.peer_at(slot), Some(peer));
            assert!(std::ptr::eq(table.at(slot).unwrap().1, record));
        }
        assert_eq!(table.iter_slots().count(), 300);
    }
}
