//! Any bytes into the goodbye decoder: an error or a goodbye, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libp2p_connection_manager::goodbye::protocol::{decode_goodbye, encode_goodbye};

fuzz_target!(|data: &[u8]| {
    if let Ok(goodbye) = decode_goodbye(data) {
        // Whatever decodes re-encodes to something that decodes to the same goodbye.
        let again = decode_goodbye(&encode_goodbye(&goodbye)).expect("re-encoded goodbye");
        assert_eq!(again.reason, goodbye.reason);
    }
});
