//! Micro-benchmarks of the protocol crate: the codec, signing, verification and Merkle proofs.
//!
//! `make bench` runs them briefly and puts a table into docs/PERFORMANCE.md
//! (`scripts/bench/compute.sh`); by hand: `cargo bench -p fieldseal-proto --bench proto`.
//! Inputs are the deterministic sample chain of [`fieldseal_proto::sample`], so every run
//! measures the same bytes.

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::SigningKey;
use fieldseal_proto::chain::{verify_chain, SignatureCheck, VerifyOptions};
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::frame::Frame;
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::merkle::{
    consistency_proof_from, inclusion_proof_from, leaf_hash, verify_consistency, verify_inclusion,
    Frontier, MerkleError,
};
use fieldseal_proto::msg::{EntryBytes, Message, SubmitEntry};
use fieldseal_proto::sample;

/// Entries in the chain-verification benchmark: about a working day of 4 s segments is 7,200;
/// 1,000 keeps one iteration short and the per-entry cost is what the table reports.
const CHAIN_LEN: u64 = 1_000;

/// Leaves of the Merkle tree: a server's log after a while (a million entries).
const TREE_SIZE: u64 = 1 << 20;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32])
}

/// A chain of `n` entries or a little more (start and stop events around one recording).
fn chain(n: u64) -> sample::SampleChain {
    let parts = u32::try_from(n).expect("small");
    sample::build(&key(), &[parts], 16)
}

fn codec(c: &mut Criterion) {
    let sample = chain(4);
    // A segment entry, the commonest kind.
    let entry = sample
        .entries
        .iter()
        .find(|e| e.entry.segment().is_some())
        .expect("the sample has segments")
        .clone();
    let bytes = entry.to_bytes();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("entry encode", |b| b.iter(|| black_box(&entry).to_bytes()));
    g.bench_function("entry decode", |b| {
        b.iter(|| {
            fieldseal_proto::entry::SignedEntry::from_bytes(black_box(&bytes)).expect("decodes")
        })
    });
    let msg = Message::SubmitEntry(SubmitEntry {
        entry: EntryBytes::new(bytes.clone()).expect("fits"),
    });
    let frame = msg.to_bytes();
    g.bench_function("frame encode (SubmitEntry)", |b| {
        b.iter(|| black_box(&msg).to_bytes())
    });
    g.bench_function("frame decode (SubmitEntry)", |b| {
        b.iter(|| Frame::parse(black_box(&frame)).expect("parses"))
    });
    g.finish();
}

fn signing(c: &mut Criterion) {
    let sample = chain(4);
    let entry = sample
        .entries
        .iter()
        .find(|e| e.entry.segment().is_some())
        .expect("the sample has segments")
        .entry
        .clone();
    let key = key();
    let mut g = c.benchmark_group("sign");
    g.throughput(Throughput::Elements(1));
    g.bench_function("entry sign", |b| {
        b.iter_batched(
            || entry.clone(),
            |e| e.sign(&key).expect("valid"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn verification(c: &mut Criterion) {
    let key = key();
    let public = key.verifying_key();
    let sample = chain(CHAIN_LEN);
    let one = sample.entries[1].clone();
    let encoded: Vec<Vec<u8>> = sample.entries.iter().map(Encode::to_bytes).collect();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("entry verify_strict", |b| {
        b.iter(|| black_box(&one).verify(&public).expect("verifies"))
    });
    let n = encoded.len() as u64;
    g.throughput(Throughput::Elements(n));
    // One iteration is tens of milliseconds: criterion's fewest samples keep the run short.
    g.sample_size(10);
    // The way before batch verification (verify_strict as each entry is read), then the
    // signatures together (proto's sigbatch) on one thread and on two: the same findings.
    for (label, signatures) in [
        ("one at a time", SignatureCheck::OneAtATime),
        ("batch, 1 thread", SignatureCheck::Batch { threads: 1 }),
        ("batch, 2 threads", SignatureCheck::Batch { threads: 2 }),
    ] {
        g.bench_function(format!("chain verify, {label} ({n} entries)"), |b| {
            b.iter(|| {
                let report = verify_chain(
                    &public,
                    encoded.iter().map(Vec::as_slice),
                    &VerifyOptions {
                        ordered: true,
                        signatures,
                        ..VerifyOptions::default()
                    },
                );
                assert!(report.findings.is_empty(), "{:?}", report.findings);
                report
            })
        });
    }
    g.finish();
}

/// Stored full-subtree hashes, as a server keeps them.
struct Nodes(HashMap<(u8, u64), Hash32>);

impl Nodes {
    fn node(&self, level: u8, index: u64) -> Result<Hash32, MerkleError> {
        self.0
            .get(&(level, index))
            .copied()
            .ok_or(MerkleError::NodeUnavailable { level, index })
    }
}

fn merkle(c: &mut Criterion) {
    let mut frontier = Frontier::new();
    let mut nodes = HashMap::new();
    let mut roots = HashMap::new();
    let old_size = TREE_SIZE / 3;
    for i in 0..TREE_SIZE {
        for n in frontier
            .append(leaf_hash(&i.to_be_bytes()))
            .expect("not full")
        {
            nodes.insert((n.level, n.index), n.hash);
        }
        if frontier.size() == old_size {
            roots.insert(old_size, frontier.root());
        }
    }
    let root = frontier.root();
    let old_root = roots[&old_size];
    let store = Nodes(nodes);
    let src = |level, index| store.node(level, index);
    let index = TREE_SIZE / 2 + 12_345;
    let leaf = leaf_hash(&index.to_be_bytes());
    let inclusion = inclusion_proof_from(&src, index, TREE_SIZE).expect("in range");
    let consistency = consistency_proof_from(&src, old_size, TREE_SIZE).expect("in range");

    let mut g = c.benchmark_group("merkle");
    g.throughput(Throughput::Elements(1));
    g.bench_function("inclusion proof (2^20 leaves)", |b| {
        b.iter(|| inclusion_proof_from(&src, black_box(index), TREE_SIZE).expect("in range"))
    });
    g.bench_function("inclusion check (2^20 leaves)", |b| {
        b.iter(|| {
            verify_inclusion(black_box(&leaf), index, TREE_SIZE, &inclusion, &root)
                .expect("verifies")
        })
    });
    g.bench_function("consistency proof (2^20 leaves)", |b| {
        b.iter(|| consistency_proof_from(&src, black_box(old_size), TREE_SIZE).expect("in range"))
    });
    g.bench_function("consistency check (2^20 leaves)", |b| {
        b.iter(|| {
            verify_consistency(
                black_box(old_size),
                TREE_SIZE,
                &old_root,
                &root,
                &consistency,
            )
            .expect("verifies")
        })
    });
    g.bench_function("leaf append (frontier)", |b| {
        b.iter_batched(
            || frontier.clone(),
            |mut f| f.append(black_box(leaf)).expect("not full"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, codec, signing, verification, merkle);
criterion_main!(benches);
