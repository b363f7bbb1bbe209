//! Entries per second of chain verification, for `make bench`
//! (scripts/bench/compute.sh, `bench_chain_verify`): the signatures checked
//! together (proto's sigbatch) or one at a time as before, over the same
//! chain, with the same report.
//!
//! ```text
//! chain_rate one|batch THREADS ENTRIES REPS
//! ```
//!
//! Prints `entries seconds` for REPS verifications of proto's sample chain
//! of about ENTRIES entries (building and signing it is not timed).

use std::time::Instant;

use ed25519_dalek::SigningKey;
use fieldseal_proto::chain::{verify_chain, SignatureCheck, VerifyOptions};
use fieldseal_proto::codec::Encode;
use fieldseal_proto::sample;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: chain_rate one|batch THREADS ENTRIES REPS";
    let [mode, threads, entries, reps] = args.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let number = |s: &str| s.parse::<u32>().unwrap_or_else(|_| panic!("{usage}"));
    let signatures = match mode.as_str() {
        "one" => SignatureCheck::OneAtATime,
        "batch" => SignatureCheck::Batch {
            threads: number(threads) as usize,
        },
        _ => panic!("{usage}"),
    };
    // One recording of ENTRIES segments with its start and stop events: as
    // in the criterion benchmark.
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let chain = sample::build(&key, &[number(entries)], 16);
    let encoded: Vec<Vec<u8>> = chain.entries.iter().map(Encode::to_bytes).collect();
    let opts = VerifyOptions {
        ordered: true,
        signatures,
        ..VerifyOptions::default()
    };
    let reps = number(reps);
    let t0 = Instant::now();
    for _ in 0..reps {
        let report = verify_chain(
            &key.verifying_key(),
            encoded.iter().map(Vec::as_slice),
            &opts,
        );
        assert!(report.ok, "{report}");
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("{} {secs:.6}", encoded.len() as u64 * u64::from(reps));
}
