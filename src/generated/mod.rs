// Automatically generated mod.rs
pub mod goodbye;
