//! Finds the web page's player, hls.js, where `scripts/install-deps.sh`
//! put it (`npm ci` in `server/web/`, pinned by its package-lock.json), so
//! that `src/http/web.rs` embeds it in the binary. Without it the server
//! still builds: the page then plays HLS only where the browser does so
//! itself, and says that the player was not installed.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hls_vendored)");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    // A folder is scanned whole for changes: a later `npm ci` is noticed.
    println!("cargo::rerun-if-changed={}", dir.display());
    let hls = dir.join("node_modules/hls.js/dist/hls.min.mjs");
    if hls.is_file() {
        println!("cargo::rustc-cfg=hls_vendored");
        println!("cargo::rustc-env=FIELDSEAL_HLS_MJS={}", hls.display());
    }
}
