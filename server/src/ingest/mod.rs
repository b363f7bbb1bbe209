//! The server's ingest checks (see `entry.rs`).
mod entry;
pub use entry::*;
