//! Any bytes into the peer-list decoder: an error or a bounded list, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libp2p_connection_manager::exchange::protocol::{
    decode_peers_frame, MAX_ADDRS_PER_PEER, MAX_PEERS,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(peers) = decode_peers_frame(data) {
        assert!(peers.len() <= MAX_PEERS);
        assert!(peers
            .iter()
            .all(|(_, addrs)| addrs.len() <= MAX_ADDRS_PER_PEER));
    }
});
