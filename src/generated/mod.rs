// Automatically generated mod.rs
pub mod goodbye;
pub mod peers;
