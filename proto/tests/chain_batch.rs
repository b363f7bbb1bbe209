//! The chain verifier with signatures checked together gives, byte for
//! byte, the report of the one-at-a-time check it replaced, whatever is
//! wrong with the chain: flipped bits, swapped or foreign signatures, hand-
//! made `R` and `S` values, another device's entries, reordered, removed or
//! repeated entries.

mod craft;

use std::sync::OnceLock;

use craft::{Craft, HandKey};
use fieldseal_proto::chain::{
    verify_chain, verify_chains, Chain, Report, SignatureCheck, VerifyOptions,
};
use fieldseal_proto::codec::Encode;
use fieldseal_proto::sample;
use fieldseal_proto::sigbatch::BATCH_MIN;
use proptest::prelude::*;

fn device() -> &'static HandKey {
    static KEY: OnceLock<HandKey> = OnceLock::new();
    KEY.get_or_init(|| HandKey::new(11))
}

fn other_device() -> &'static HandKey {
    static KEY: OnceLock<HandKey> = OnceLock::new();
    KEY.get_or_init(|| HandKey::new(12))
}

/// A chain long enough for the batch path: `parts` segments over recordings.
fn chain(key: &HandKey, parts: &[u32]) -> Vec<Vec<u8>> {
    sample::build(key, parts, 16)
        .entries
        .iter()
        .map(Encode::to_bytes)
        .collect()
}

/// The other device's chain, from which a wrong device's entries come.
fn foreign() -> &'static Vec<Vec<u8>> {
    static CHAIN: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CHAIN.get_or_init(|| chain(other_device(), &[40]))
}

/// One thing done to a chain, at positions taken modulo its length.
#[derive(Debug, Clone)]
enum Change {
    FlipBit(usize, usize),
    FlipSignatureBit(usize, usize),
    SwapSignatures(usize, usize),
    OtherKeySignature(usize),
    Craft(usize, Craft),
    WrongDevice(usize),
    Remove(usize),
    Repeat(usize),
    SwapEntries(usize, usize),
}

fn change() -> impl Strategy<Value = Change> {
    let at = any::<usize>();
    prop_oneof![
        (at, 0..4000usize).prop_map(|(i, b)| Change::FlipBit(i, b)),
        (at, 0..512usize).prop_map(|(i, b)| Change::FlipSignatureBit(i, b)),
        (at, at).prop_map(|(i, j)| Change::SwapSignatures(i, j)),
        at.prop_map(Change::OtherKeySignature),
        (at, 1..8usize).prop_map(|(i, t)| Change::Craft(i, Craft::MixedR(t))),
        (at, 0..8usize).prop_map(|(i, t)| Change::Craft(i, Craft::SmallR(t))),
        at.prop_map(|i| Change::Craft(i, Craft::NonCanonicalR)),
        at.prop_map(|i| Change::Craft(i, Craft::SPlusL)),
        at.prop_map(Change::WrongDevice),
        at.prop_map(Change::Remove),
        at.prop_map(Change::Repeat),
        (at, at).prop_map(|(i, j)| Change::SwapEntries(i, j)),
    ]
}

/// The signature at the end of an encoded entry, and the bytes it signs.
fn split(e: &mut [u8]) -> (&mut [u8], &mut [u8]) {
    let n = e.len() - 64;
    e.split_at_mut(n)
}

fn apply(entries: &mut Vec<Vec<u8>>, c: &Change) {
    let n = entries.len();
    match *c {
        Change::FlipBit(i, bit) => {
            let e = &mut entries[i % n];
            let bit = bit % (e.len() * 8);
            e[bit / 8] ^= 1 << (bit % 8);
        }
        Change::FlipSignatureBit(i, bit) => split(&mut entries[i % n]).1[bit / 8] ^= 1 << (bit % 8),
        Change::SwapSignatures(i, j) => {
            let a = split(&mut entries[i % n]).1.to_vec();
            let b = split(&mut entries[j % n]).1.to_vec();
            split(&mut entries[i % n]).1.copy_from_slice(&b);
            split(&mut entries[j % n]).1.copy_from_slice(&a);
        }
        Change::OtherKeySignature(i) => {
            let (msg, sig) = split(&mut entries[i % n]);
            sig.copy_from_slice(&other_device().sign_as(msg, Craft::Honest));
        }
        Change::Craft(i, craft) => {
            let (msg, sig) = split(&mut entries[i % n]);
            sig.copy_from_slice(&device().sign_as(msg, craft));
        }
        Change::WrongDevice(i) => {
            let f = foreign();
            entries[i % n] = f[i % f.len()].clone();
        }
        Change::Remove(i) => {
            entries.remove(i % n);
        }
        Change::Repeat(i) => {
            let e = entries[i % n].clone();
            entries.insert((i / 7) % n, e);
        }
        Change::SwapEntries(i, j) => entries.swap(i % n, j % n),
    }
}

fn report(entries: &[Vec<u8>], ordered: bool, signatures: SignatureCheck) -> Report {
    let opts = VerifyOptions {
        ordered,
        expected_head: None,
        signatures,
        ..VerifyOptions::default()
    };
    verify_chain(&device().public, entries.iter().map(Vec::as_slice), &opts)
}

fn batch_min() -> u32 {
    u32::try_from(BATCH_MIN).expect("small")
}

/// Recordings whose segments add up to enough entries for the batch path.
fn shape() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(1u32..200, 1..4).prop_map(|mut parts| {
        let total: u32 = parts.iter().sum();
        let min = batch_min();
        if total < min {
            parts[0] += min - total;
        }
        parts
    })
}

proptest! {
    // Each case builds and signs a chain of ~300 entries and verifies it
    // four times.
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn batch_and_one_at_a_time_give_the_same_report(
        parts in shape(),
        changes in prop::collection::vec(change(), 0..6),
        threads in 1usize..4,
        ordered in any::<bool>(),
    ) {
        let mut entries = chain(device(), &parts);
        for c in &changes {
            apply(&mut entries, c);
        }
        let reference = report(&entries, ordered, SignatureCheck::OneAtATime);
        let batch = report(&entries, ordered, SignatureCheck::Batch { threads });
        prop_assert_eq!(
            serde_json::to_string(&batch).unwrap(),
            serde_json::to_string(&reference).unwrap()
        );
        prop_assert_eq!(batch.to_string(), reference.to_string());
        prop_assert_eq!(&batch, &reference);
    }

    #[test]
    fn several_chains_checked_together_give_each_chain_its_own_report(
        changes in prop::collection::vec(change(), 0..4),
        threads in 1usize..4,
    ) {
        // Two short chains (each below the batch threshold alone) and a
        // damaged one, checked in one batch.
        let mut damaged = chain(device(), &[60]);
        for c in &changes {
            apply(&mut damaged, c);
        }
        let short = foreign();
        let mine = chain(device(), &[150]);
        let opts = VerifyOptions { ordered: true, ..VerifyOptions::default() };
        let together = verify_chains(
            &[
                Chain { key: &device().public, entries: damaged.iter().map(Vec::as_slice).collect(), opts: &opts },
                Chain { key: &other_device().public, entries: short.iter().map(Vec::as_slice).collect(), opts: &opts },
                Chain { key: &device().public, entries: mine.iter().map(Vec::as_slice).collect(), opts: &opts },
            ],
            SignatureCheck::Batch { threads },
        );
        let alone = |key: &HandKey, e: &[Vec<u8>]| {
            let opts = VerifyOptions { signatures: SignatureCheck::OneAtATime, ..opts.clone() };
            verify_chain(&key.public, e.iter().map(Vec::as_slice), &opts)
        };
        prop_assert_eq!(&together[0], &alone(device(), &damaged));
        prop_assert_eq!(&together[1], &alone(other_device(), short));
        prop_assert_eq!(&together[2], &alone(device(), &mine));
        prop_assert!(together[1].ok && together[2].ok);
    }
}

#[test]
fn hand_made_signatures_in_a_long_chain_are_reported_as_before() {
    // Every kind at once, at fixed places: each is a bad signature for
    // verify_strict, and so for the batch.
    let mut entries = chain(device(), &[batch_min()]);
    let kinds = [
        Craft::MixedR(4),
        Craft::MixedR(1),
        Craft::SmallR(0),
        Craft::SmallR(3),
        Craft::NonCanonicalR,
        Craft::SPlusL,
    ];
    for (i, craft) in kinds.iter().enumerate() {
        apply(&mut entries, &Change::Craft(10 + 20 * i, *craft));
    }
    let reference = report(&entries, true, SignatureCheck::OneAtATime);
    assert_eq!(
        reference
            .findings
            .iter()
            .filter(|f| f.kind == fieldseal_proto::chain::FindingKind::BadSignature)
            .count(),
        kinds.len()
    );
    for threads in [1, 2] {
        assert_eq!(
            report(&entries, true, SignatureCheck::Batch { threads }),
            reference
        );
    }
}

#[test]
fn an_r_with_a_torsion_component_is_a_bad_signature_wherever_it_is() {
    // Without the torsion test the batch equation would accept such an R
    // for half of the batches (its weight even): 16 places, each a new
    // batch, all reported as before would be chance with probability 2^-16.
    let base = chain(device(), &[batch_min()]);
    for k in 0..16 {
        let mut entries = base.clone();
        apply(&mut entries, &Change::Craft(5 + 13 * k, Craft::MixedR(4)));
        let reference = report(&entries, true, SignatureCheck::OneAtATime);
        assert!(!reference.ok);
        assert_eq!(
            report(&entries, true, SignatureCheck::Batch { threads: 1 }),
            reference,
            "place {k}"
        );
    }
}
