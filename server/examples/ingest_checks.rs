//! Entries per second of ingest's decisions about a group commit, for
//! `make bench` (scripts/bench/compute.sh, `bench_chain_verify`): the
//! group's signatures checked together (`IngestBatch::handle_group`, as the
//! executor does) or each as its entry is decided (`handle_entry`, as
//! before), over the same group, with the same answers.
//!
//! ```text
//! ingest_checks one|group THREADS DEVICES ENTRIES REPS
//! ```
//!
//! The group holds ENTRIES entries of each of DEVICES devices, interleaved,
//! all new to an empty index (an in-memory view: no sled, no files): what
//! the committer gets when devices send a backlog at once. Prints
//! `entries seconds` for REPS decisions of the whole group (building and
//! signing the chains is not timed).

use std::time::Instant;

use ed25519_dalek::{SigningKey, VerifyingKey};
use fieldseal_proto::codec::Encode;
use fieldseal_proto::entry::ChainHead;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::sample;
use fieldseal_server::ingest::{AcceptedEntry, Answer, IndexView, IngestBatch};

/// An index that holds nothing yet.
struct Empty;

impl IndexView for Empty {
    type Error = String;
    fn head_and_log_len(&self, _: DeviceId) -> Result<(ChainHead, u64), String> {
        Ok((ChainHead::GENESIS, 0))
    }
    fn entry(&self, _: DeviceId, _: u64) -> Result<Option<AcceptedEntry>, String> {
        Ok(None)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ingest_checks one|group THREADS DEVICES ENTRIES REPS";
    let [mode, threads, devices, entries, reps] = args.as_slice() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let number = |s: &str| s.parse::<usize>().unwrap_or_else(|_| panic!("{usage}"));
    let (threads, devices, entries, reps) = (
        number(threads),
        number(devices),
        number(entries),
        number(reps),
    );
    let one = match mode.as_str() {
        "one" => true,
        "group" => false,
        _ => panic!("{usage}"),
    };
    let chains: Vec<(VerifyingKey, Vec<Vec<u8>>)> = (0..devices)
        .map(|d| {
            let key = SigningKey::from_bytes(&[u8::try_from(d % 250).expect("small") + 1; 32]);
            // ENTRIES entries: a recording's start event, its segments, its stop.
            let parts = u32::try_from(entries.saturating_sub(3).max(1)).expect("small");
            let c = sample::build(&key, &[parts], 16);
            let bytes = c
                .entries
                .iter()
                .take(entries)
                .map(Encode::to_bytes)
                .collect();
            (key.verifying_key(), bytes)
        })
        .collect();
    let mut items: Vec<(VerifyingKey, Vec<u8>)> = Vec::new();
    for i in 0..entries {
        for (key, chain) in &chains {
            if let Some(e) = chain.get(i) {
                items.push((*key, e.clone()));
            }
        }
    }
    let t0 = Instant::now();
    for _ in 0..reps {
        let mut batch = IngestBatch::new();
        if one {
            for (key, bytes) in &items {
                batch.handle_entry(&Empty, *key, bytes);
            }
        } else {
            batch.handle_group(&Empty, &items, threads);
        }
        let plan = batch.finish();
        assert!(
            plan.answers
                .iter()
                .all(|a| matches!(a, Answer::Accepted(_))),
            "every entry is accepted"
        );
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("{} {secs:.6}", items.len() * reps);
}
