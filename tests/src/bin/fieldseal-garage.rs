//! `fieldseal-garage`: a three-node Garage cluster on loopback for
//! `make bench` (`scripts/bench/s3.sh`), the one the tests start
//! (`fieldseal_tests::garage`).
//!
//! ```text
//! fieldseal-garage --creds FILE
//!     starts the cluster, creates a bucket, writes the access key to FILE
//!     (mode 0600, the server's `credentials_file`), prints `endpoint=`,
//!     `bucket=`, `region=`, `key_id=` and `secret=` lines and `ready`, and
//!     keeps the cluster up until its standard input closes.
//! ```
#![forbid(unsafe_code)]

use std::io::Read;

use fieldseal_tests::garage::{self, Garage};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let creds = match args.as_slice() {
        [_, flag, file] if flag == "--creds" => std::path::PathBuf::from(file),
        _ => anyhow::bail!("usage: fieldseal-garage --creds FILE"),
    };
    let bin = garage::binary().ok_or_else(|| {
        anyhow::anyhow!("no Garage binary: run scripts/install-deps.sh or set FIELDSEAL_GARAGE")
    })?;
    let mut g = Garage::start(&bin)?;
    let bucket = g.bucket()?;
    // The `[blobs]` table is printed for the script to append to config.toml.
    let table = g.config_toml(0, &bucket, &creds)?;
    println!("endpoint={}", g.endpoint(0));
    println!("bucket={bucket}");
    println!("region={}", garage::REGION);
    println!("key_id={}", garage::KEY_ID);
    println!("secret={}", garage::SECRET);
    for line in table.lines().filter(|l| !l.is_empty()) {
        println!("blobs_toml={line}");
    }
    println!("ready");
    // Until the script closes our standard input (or ends): then the nodes
    // are stopped and their folders removed (Drop).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(g);
    Ok(())
}
