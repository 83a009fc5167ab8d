//! Test and benchmark utilities, enabled by the `testing` feature: a fault-injecting transport
//! ([`fault_transport`]), the model of the swarm that the property test and the fuzzer drive
//! the core with ([`model`]), and the crate-private conversions that benchmarks measure.

mod fault;
pub mod model;

pub use fault::{
    fault_transport, Fault, FaultControl, FaultyStream, MAX_HELD_READS, MAX_HELD_WRITES,
};
use web_time::{Instant, SystemTime};

use crate::{
    core::Change,
    store::{self, Clocks, StoreOp},
};

/// The manager's changes as the store operations the behaviour's store driver writes, with
/// times moved from the monotonic clock to the wall clock around one moment (`now` on the
/// first, `wall` on the second). The driver's own conversion, exposed so that a benchmark
/// measures it rather than a copy.
pub fn store_ops(changes: Vec<Change>, now: Instant, wall: SystemTime) -> Vec<StoreOp> {
    store::to_ops(changes, Clocks::new(now, wall))
}
