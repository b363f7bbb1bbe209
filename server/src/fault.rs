//! Named crash points for fault-injection tests of the server.
//!
//! `FIELDSEAL_CRASH_AT=NAME:N` aborts the process (no destructors, no
//! flush: as abrupt as a power cut for everything not yet written) the N-th
//! time execution passes the point NAME. Unset, a point costs one load of an
//! initialised `OnceLock`. Points, in the order an acceptance passes them:
//!
//! | name | where |
//! | --- | --- |
//! | `entry-after-chainlog` | an accepted entry is in the device's chain.log (fsynced), no leaf yet |
//! | `leaf-after-file` | a leaf is in leaves.log (fsynced), not in the index's tree |
//! | `entry-after-index` | the entry, its receipt and the head are indexed; the receipt not sent |
//! | `entry-after-ack` | the receipt was handed to QUIC |
//! | `blob-before-rename` | a verified upload is complete and fsynced, not yet a blob |
//! | `blob-after-rename` | the blob is in place, the index does not yet know it is held |
//! | `blob-after-ack` | the upload's acknowledgement was handed to QUIC |

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Every point's name, for tests that visit each.
pub const POINTS: &[&str] = &[
    "entry-after-chainlog",
    "leaf-after-file",
    "entry-after-index",
    "entry-after-ack",
    "blob-before-rename",
    "blob-after-rename",
    "blob-after-ack",
];

fn target() -> &'static Option<(String, u64)> {
    TARGET.get_or_init(|| {
        let v = std::env::var("FIELDSEAL_CRASH_AT").ok()?;
        let (name, n) = v.split_once(':').unwrap_or((&v, "1"));
        Some((name.to_string(), n.parse().unwrap_or(1)))
    })
}

/// Pass the crash point `name`.
pub fn point(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown crash point {name}");
    if let Some((t, n)) = target() {
        if t == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
            eprintln!("fieldseal-server: crash point {name} reached: aborting");
            std::process::abort();
        }
    }
}
