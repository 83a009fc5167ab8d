//! What the manager keeps per peer, counted by a global allocator: a tracked peer and a
//! connected peer (one inbound connection) each under 512 bytes, at several table sizes (a hash
//! map's load factor makes the cost per entry depend on how full its table happens to be).
//! It failed before the peer table (942, 808 and 985 bytes per connected peer at 1,000, 10,000
//! and 30,000 peers).
//!
//! Bytes requested from the allocator, not its own overhead; only allocations made on the
//! measuring thread count. `cargo run --release --features testing --example compare --
//! --memory-only` prints the same figures for BENCHMARKS.md.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    net::Ipv4Addr,
    sync::atomic::{AtomicIsize, Ordering},
};

use libp2p_connection_manager::{
    core::{Manager, NewConnection},
    Config, Initiator, Limits,
};
use libp2p_core::{multiaddr::Protocol, Endpoint, Multiaddr};
use libp2p_identity::PeerId;
use libp2p_swarm::ConnectionId;

/// The goal of a peer's memory, tracked or connected.
const MAX_BYTES_PER_PEER: isize = 512;

struct CountingAllocator;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    /// Whether this thread's allocations count (const: reading it allocates nothing).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count(bytes: usize, sign: isize) {
    if COUNTING.with(Cell::get) {
        LIVE_BYTES.fetch_add(sign * bytes as isize, Ordering::Relaxed);
    }
}

// SAFETY: every call is passed on to `System` unchanged; the counting touches no allocation.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(layout.size(), -1);
        count(new_size, 1);
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Bytes still allocated on this thread after `work`, of those it allocated or freed.
fn retained_by(work: impl FnOnce()) -> isize {
    LIVE_BYTES.store(0, Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    work();
    COUNTING.with(|c| c.set(false));
    LIVE_BYTES.load(Ordering::SeqCst)
}

fn distinct_address(n: usize) -> Multiaddr {
    let [_, b, c, d] = (n as u32).to_be_bytes();
    Multiaddr::empty()
        .with(Protocol::Ip4(Ipv4Addr::new(10, b, c, d)))
        .with(Protocol::Tcp(4001))
}

fn fresh_manager(now: web_time::Instant) -> Manager {
    // The default limits cap established inbound connections at 256.
    let config = Config::default()
        .with_limits(Limits::unlimited())
        .without_watermarks();
    Manager::new(PeerId::random(), config, now, 7)
}

/// Bytes per tracked and per connected peer with `count` of each.
fn bytes_per_peer(count: usize) -> (isize, isize) {
    let now = web_time::Instant::now();
    // Made before counting (a `PeerId` is a plain value; its RNG allocates on first use).
    let peers: Vec<PeerId> = (0..2 * count).map(|_| PeerId::random()).collect();

    let mut tracked = fresh_manager(now);
    let tracked_bytes = retained_by(|| {
        // Each address made in the count, as the compare harness does: the manager's copy is
        // then its own (in a swarm it shares the bytes of the swarm's copy).
        for (n, peer) in peers[..count].iter().enumerate() {
            tracked.add_address(*peer, distinct_address(n));
        }
    });
    assert_eq!(tracked.tracked_peers(), count);

    let mut connected = fresh_manager(now);
    let connected_bytes = retained_by(|| {
        for (n, peer) in peers[count..].iter().enumerate() {
            let connection = ConnectionId::new_unchecked(n);
            let address = distinct_address(n);
            let new = || NewConnection::new(Initiator::Remote, Endpoint::Listener, address.clone());
            connected
                .check_established(now, connection, *peer, &new())
                .expect("no limit applies");
            connected.on_established(now, connection, *peer, new());
            while connected.poll_action().is_some() {}
        }
    });
    assert_eq!(connected.established_connections(), count);
    drop((tracked, connected));
    let per = |bytes: isize| bytes / count as isize;
    (per(tracked_bytes), per(connected_bytes))
}

#[test]
fn a_tracked_and_a_connected_peer_each_cost_under_512_bytes() {
    let mut misses = Vec::new();
    // 10,000 is the compare harness's count; 1,793 and 28,673 are one past a hash table's
    // growth (7/8 of 2,048 and of 32,768 buckets), where a table is emptiest and an entry
    // costs the most.
    for count in [1_000, 1_793, 10_000, 28_673] {
        let (tracked, connected) = bytes_per_peer(count);
        println!("{count} peers: tracked {tracked} B, connected {connected} B per peer");
        if tracked >= MAX_BYTES_PER_PEER || connected >= MAX_BYTES_PER_PEER {
            misses.push(format!(
                "{count} peers: tracked {tracked} B, connected {connected} B"
            ));
        }
    }
    assert!(
        misses.is_empty(),
        "over {MAX_BYTES_PER_PEER} B per peer: {misses:?}"
    );
}
