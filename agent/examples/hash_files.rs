//! Prints the SHA-256 of each file named on the command line, as `sha256sum` does, with the
//! agent spool's `hash_file`. `make bench` times it against `openssl dgst -sha256` over the same
//! segment files (scripts/bench/compute.sh).
//!
//! An example rather than a subcommand of `fieldseal-agent`: that binary links FFmpeg's ~200
//! shared libraries, and resolving their symbols at every start (~50 ms) would be measured as
//! hashing; the running agent pays it once. This binary uses no FFmpeg code, so the linker
//! (`--as-needed`) leaves those libraries out.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut status = ExitCode::SUCCESS;
    for path in std::env::args_os().skip(1) {
        let path = std::path::PathBuf::from(path);
        match fieldseal_agent::spool::hash_file(&path) {
            Ok((hash, _)) => {
                if writeln!(out, "{}  {}", hex::encode(hash), path.display()).is_err() {
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                eprintln!("hash_files: {}: {e}", path.display());
                status = ExitCode::FAILURE;
            }
        }
    }
    if out.flush().is_err() {
        return ExitCode::FAILURE;
    }
    status
}
