//! Attacks on the connection manager, one scenario per module. Each scenario runs the attack,
//! prints what the attacker spent and what it got, and asserts that what it got is bounded.
//! RELIABILITY.md's attack table names the scenario behind each figure.

#[path = "../common/mod.rs"]
mod common;

mod address_rotation;
mod ban_flood;
mod hearsay;
mod raw_codec;
mod source_bound;
mod trim_burst;
