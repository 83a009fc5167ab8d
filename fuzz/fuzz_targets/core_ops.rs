//! Random operation sequences into the sans-IO core `Manager`, driven by the model of the swarm
//! in `testing::model` (the same model `tests/model.rs` drives with proptest): only inputs a
//! real swarm could send, the invariants checked after every step, and at the end a teardown
//! after which no unwanted peer may be tracked. Any panic, in the manager or in the model's
//! checks, is a finding.
//!
//! The fuzz input is decoded with `arbitrary::Unstructured`: a setup first, then up to 300
//! operations until the bytes run out. `CORE_OPS_TRACE=1` prints the setup, each operation and
//! each action of the manager (to reproduce a crash: `cargo fuzz run --sanitizer none core_ops
//! <artifact>` with it set). The manager's hash maps are seeded per process, so in rare cases
//! an input takes a different path from one run to the next.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| libp2p_connection_manager::testing::model::run(data));
