//! The hasher of the core's maps and sets.
//!
//! Keyed SipHash-1-3 with secret random keys: what std's `RandomState` does, since remotes
//! choose many of the keys (peer ids, addresses) and a hash they could predict would let them
//! turn look-ups linear. Unlike `RandomState`, the keys can be fixed for a thread with the
//! `testing` feature ([`fix_hash_keys_for_this_thread`]): the network simulation then iterates
//! every map in the same order in every run of a seed, so a run can be reproduced.

use std::{
    cell::Cell,
    collections::{HashMap, HashSet},
    hash::BuildHasher,
};

use siphasher::sip::SipHasher13;

/// A hash map of the core.
pub(crate) type Map<K, V> = HashMap<K, V, Keys>;
/// A hash set of the core.
pub(crate) type Set<K> = HashSet<K, Keys>;

/// The keys of one map's hasher.
#[derive(Debug, Clone)]
pub struct Keys {
    k0: u64,
    k1: u64,
}

thread_local! {
    /// The next map's keys on this thread: random once per thread, then the first key counts
    /// up for every map (as std's `RandomState` does).
    static NEXT: Cell<(u64, u64)> = Cell::new((rand::random(), rand::random()));
}

impl Default for Keys {
    fn default() -> Self {
        NEXT.with(|next| {
            let (k0, k1) = next.get();
            next.set((k0.wrapping_add(1), k1));
            Keys { k0, k1 }
        })
    }
}

impl BuildHasher for Keys {
    type Hasher = SipHasher13;

    fn build_hasher(&self) -> SipHasher13 {
        SipHasher13::new_with_keys(self.k0, self.k1)
    }
}

/// Makes the keys of every map created on this thread from now on a function of `seed` and of
/// the order the maps are created in: a seeded simulation iterates its managers' maps in the
/// same order in every run. Never in a node: predictable keys open it to hash flooding.
#[cfg(feature = "testing")]
pub fn fix_hash_keys_for_this_thread(seed: u64) {
    NEXT.with(|next| next.set((seed, seed ^ 0x9e37_79b9_7f4a_7c15)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_keys_give_the_same_order_and_random_keys_do_not_repeat() {
        fn order(seed: Option<u64>) -> Vec<u32> {
            if let Some(seed) = seed {
                NEXT.with(|next| next.set((seed, seed ^ 0x9e37_79b9_7f4a_7c15)));
            }
            let set: Set<u32> = (0..1000).collect();
            set.into_iter().collect()
        }
        assert_eq!(order(Some(7)), order(Some(7)));
        assert_ne!(order(Some(7)), order(Some(8)));
        // Unfixed: each map gets other keys.
        NEXT.with(|next| next.set((rand::random(), rand::random())));
        assert_ne!(order(None), order(None));
    }
}
