//! Model-based property test of the sans-IO core.
//!
//! proptest drives the model of the swarm in `testing::model` (the same model the `core_ops`
//! fuzz target drives) with random setups and operation sequences: inbound and outbound
//! connections, establishments, closes, dial failures, goodbyes, pings, bans, limit changes,
//! discovery, peer lists, time jumps, shutdown, restarts from the peer store and quiet spells,
//! only ever inputs a real swarm could send. After every step the model checks the manager's
//! invariants, its events and the peer store's mirror; at the end everything is torn down and
//! the manager must hold no state for peers nobody wants. A failing case shrinks to a short
//! sequence, printed decoded.

use libp2p_connection_manager::testing::model::{Op, Setup, World};
use proptest::prelude::*;

/// A random setup: the model's byte format, plus the knobs it does not carry.
fn setup() -> impl Strategy<Value = Setup> {
    (
        proptest::collection::vec(any::<u8>(), 0..128),
        proptest::option::of(1u32..4),
        any::<bool>(),
    )
        .prop_filter_map("too few bytes for a setup", |(bytes, per_relay, nested)| {
            Some(
                Setup::from_bytes(&bytes)?
                    .with_relay_limit(per_relay)
                    .with_nested_ipv6_limits(nested),
            )
        })
}

/// A random operation, with restarts and quiet spells more often than the byte format has
/// them (about one in 36 each, as the weight of a kind of connection event), and inbound
/// circuits through relays, which it does not have.
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        32 => proptest::collection::vec(any::<u8>(), 1..12)
            .prop_filter_map("too few bytes for an operation", |bytes| Op::from_bytes(&bytes)),
        2 => any::<u8>().prop_map(Op::relayed_inbound),
        1 => Just(Op::restart()),
        1 => Just(Op::quiesce()),
    ]
}

proptest! {
    // PROPTEST_CASES raises the count for a longer hunt (the README says how).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// 256 sequences of up to 400 operations: about 100,000 operations per run.
    #[test]
    fn the_core_keeps_its_invariants(
        setup in setup(),
        ops in proptest::collection::vec(op(), 1..400),
    ) {
        let mut world = World::new(&setup);
        for op in &ops {
            world.step(op);
        }
        world.settle();
    }
}
