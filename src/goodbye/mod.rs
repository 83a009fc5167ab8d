//! Goodbye: a peer about to close a connection first tells the remote why.
//!
//! [`protocol`] is the wire format (one size-capped frame per stream) and the functions that
//! read and write it; [`handler`] is the per-connection side, which sends the goodbye the
//! manager asks for, reports the remote's, and holds the goodbye stream open while the manager
//! wants the connection kept alive.

pub mod handler;
pub mod protocol;
