//! Batch verification against `verify_strict` one at a time: the same answer
//! for every signature, honest or made by hand to tell the two apart.

mod craft;

use std::sync::OnceLock;

use craft::{strict, Craft, HandKey};
use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::VerifyingKey;
use fieldseal_proto::sigbatch::{
    canonical_point_encoding, one_at_a_time, verify_strict_many, SigCheck, BATCH_MIN,
};
use proptest::prelude::*;

/// Enough signatures that the batch path runs, with some to spare.
const N: usize = BATCH_MIN + 40;

/// Owned checks: key, message, signature.
#[derive(Debug, Clone)]
struct Owned(Vec<(VerifyingKey, Vec<u8>, [u8; 64])>);

impl Owned {
    fn checks(&self) -> Vec<SigCheck<'_>> {
        self.0
            .iter()
            .map(|(key, msg, sig)| SigCheck { key, msg, sig })
            .collect()
    }

    /// The batch's verdicts and `verify_strict`'s, one by one.
    fn both(&self, threads: usize) -> (Vec<bool>, Vec<bool>) {
        let batch = verify_strict_many(&self.checks(), threads);
        let reference = self.0.iter().map(|(k, m, s)| strict(k, m, s)).collect();
        (batch, reference)
    }
}

fn message(tag: u64, i: usize) -> Vec<u8> {
    // About the length of a chain entry's signing bytes.
    let mut m = vec![0x5a; 300];
    m[..8].copy_from_slice(&tag.to_be_bytes());
    m[8..16].copy_from_slice(&(i as u64).to_be_bytes());
    m
}

/// `n` honest signatures by `key` over messages tagged `tag`.
fn honest(key: &HandKey, tag: u64, n: usize) -> Owned {
    Owned(
        (0..n)
            .map(|i| {
                let m = message(tag, i);
                let sig = key.sign_as(&m, Craft::Honest);
                (key.public, m, sig)
            })
            .collect(),
    )
}

fn keys() -> &'static (HandKey, HandKey) {
    static KEYS: OnceLock<(HandKey, HandKey)> = OnceLock::new();
    KEYS.get_or_init(|| (HandKey::new(1), HandKey::new(2)))
}

/// Signatures by two keys, interleaved, signed once for every test.
fn base() -> &'static Owned {
    static BASE: OnceLock<Owned> = OnceLock::new();
    BASE.get_or_init(|| {
        let (a, b) = keys();
        let (x, y) = (honest(a, 1, N), honest(b, 2, N));
        Owned(
            x.0.into_iter()
                .zip(y.0)
                .enumerate()
                .map(|(i, (x, y))| if i % 3 == 2 { y } else { x })
                .collect(),
        )
    })
}

#[test]
fn honest_signatures_all_verify_on_any_number_of_threads() {
    for threads in [0, 1, 2, 3, 8] {
        let (batch, reference) = base().both(threads);
        assert!(reference.iter().all(|&ok| ok));
        assert_eq!(batch, reference, "{threads} threads");
    }
}

#[test]
fn the_encoding_check_agrees_with_decompressing_and_compressing() {
    // Every y within 64 of 0 and of p = 2^255 - 19 (the 19 values p..2^255
    // among them), both signs of x.
    let mut cases = Vec::new();
    for v in 0u8..64 {
        let mut low = [0u8; 32];
        low[0] = v;
        let mut high = [0xff; 32];
        high[31] = 0x7f;
        high[0] = 0xff - v;
        for mut b in [low, high] {
            cases.push(b);
            b[31] |= 0x80;
            cases.push(b);
        }
    }
    let mut non_canonical = 0;
    for b in cases {
        if let Some(p) = CompressedEdwardsY(b).decompress() {
            let canonical = p.compress().to_bytes() == b;
            assert_eq!(
                canonical_point_encoding(&b),
                canonical,
                "{}",
                hex::encode(b)
            );
            non_canonical += usize::from(!canonical);
        }
    }
    // y = p + 1 (the neutral point), x = 0 with its sign set, and more.
    assert!(non_canonical >= 4, "{non_canonical}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_encoding_check_agrees_on_random_bytes(b in any::<[u8; 32]>()) {
        if let Some(p) = CompressedEdwardsY(b).decompress() {
            prop_assert_eq!(canonical_point_encoding(&b), p.compress().to_bytes() == b);
        }
    }
}

/// Signatures by `key` made as `craft` over fresh messages.
fn crafted(key: &HandKey, craft: Craft, tag: u64, n: usize) -> Owned {
    Owned(
        (0..n)
            .map(|i| {
                let m = message(tag, i);
                (key.public, m.clone(), key.sign_as(&m, craft))
            })
            .collect(),
    )
}

#[test]
fn every_kind_of_hand_made_signature_gets_the_strict_answer() {
    let (a, _) = keys();
    let mut all = base().clone();
    let mut kinds = vec![Craft::NonCanonicalR, Craft::SPlusL];
    kinds.extend((0..8).map(Craft::SmallR));
    kinds.extend((1..8).map(Craft::MixedR));
    for (tag, craft) in (100..).zip(kinds) {
        let c = crafted(a, craft, tag, 2);
        // None of them is a valid strict signature...
        assert!(c.0.iter().all(|(k, m, s)| !strict(k, m, s)), "{craft:?}");
        all.0.extend(c.0);
    }
    // ... and among honest ones the batch agrees, one by one.
    let (batch, reference) = all.both(2);
    assert_eq!(batch, reference);
}

#[test]
fn the_neutral_point_as_r_or_as_key_is_refused_though_its_equation_holds() {
    // R = the neutral point with S = k·a satisfies [S]B = R + [k]A, and the
    // neutral point is torsion-free: only the small-order check refuses it.
    let (a, _) = keys();
    let mut all = base().clone();
    all.0.extend(crafted(a, Craft::SmallR(0), 7, 1).0);
    // The neutral key (secret 0) signs honestly: [S]B = R + [k]·0 holds.
    all.0
        .extend(crafted(&HandKey::weak(0), Craft::Honest, 8, 3).0);
    let (batch, reference) = all.both(1);
    assert_eq!(&reference[N..], [false; 4]);
    assert_eq!(batch, reference);
}

#[test]
fn an_r_with_a_torsion_component_is_never_accepted() {
    // The cofactorless batch equation alone accepts a pair of R's with
    // order-2 torsion whenever z1 + z2 is even (half of all batches): 16
    // batches all refusing both would be chance with probability 2^-16.
    let (a, _) = keys();
    for tag in 0..16 {
        let mut all = honest(a, 1000 + tag, BATCH_MIN);
        all.0.extend(crafted(a, Craft::MixedR(4), 2000 + tag, 2).0);
        let (batch, reference) = all.both(1);
        assert_eq!(batch, reference, "batch {tag}");
    }
}

#[test]
fn keys_with_torsion_or_of_small_order_get_the_strict_answer() {
    let mut all = base().clone();
    // Mixed-order keys: verify_strict accepts their signatures where k·T is
    // neutral (half of them for the order-2 point 4).
    for (seed, t) in [(5, 4), (6, 1), (7, 2)] {
        all.0
            .extend(honest(&HandKey::with_torsion(seed, t), u64::from(seed), 24).0);
    }
    for t in 0..8 {
        all.0
            .extend(crafted(&HandKey::weak(t), Craft::Honest, 50 + t as u64, 2).0);
    }
    let (batch, reference) = all.both(2);
    assert!(reference[N..].iter().any(|&ok| ok), "some k·T are neutral");
    assert_eq!(batch, reference);
}

/// One change to a set of signatures.
#[derive(Debug, Clone)]
enum Change {
    FlipSignatureBit(usize, usize),
    FlipMessageBit(usize, usize),
    Swap(usize, usize),
    OtherKey(usize),
    Craft(usize, Craft),
    WeakKey(usize, usize),
    TorsionKey(usize, usize),
}

fn change() -> impl Strategy<Value = Change> {
    let at = 0..N;
    prop_oneof![
        (at.clone(), 0..512usize).prop_map(|(i, b)| Change::FlipSignatureBit(i, b)),
        (at.clone(), 0..2400usize).prop_map(|(i, b)| Change::FlipMessageBit(i, b)),
        (at.clone(), at.clone()).prop_map(|(i, j)| Change::Swap(i, j)),
        at.clone().prop_map(Change::OtherKey),
        (at.clone(), 1..8usize).prop_map(|(i, t)| Change::Craft(i, Craft::MixedR(t))),
        (at.clone(), 0..8usize).prop_map(|(i, t)| Change::Craft(i, Craft::SmallR(t))),
        at.clone()
            .prop_map(|i| Change::Craft(i, Craft::NonCanonicalR)),
        at.clone().prop_map(|i| Change::Craft(i, Craft::SPlusL)),
        (at.clone(), 0..8usize).prop_map(|(i, t)| Change::WeakKey(i, t)),
        (at, 1..8usize).prop_map(|(i, t)| Change::TorsionKey(i, t)),
    ]
}

fn apply(all: &mut Owned, c: &Change) {
    let (a, b) = keys();
    let hand = |k: &VerifyingKey| if k == &a.public { a } else { b };
    match *c {
        Change::FlipSignatureBit(i, bit) => all.0[i].2[bit / 8] ^= 1 << (bit % 8),
        Change::FlipMessageBit(i, bit) => all.0[i].1[bit / 8] ^= 1 << (bit % 8),
        Change::Swap(i, j) => {
            let s = all.0[i].2;
            all.0[i].2 = all.0[j].2;
            all.0[j].2 = s;
        }
        Change::OtherKey(i) => {
            let other = if all.0[i].0 == a.public { b } else { a };
            all.0[i].2 = other.sign_as(&all.0[i].1, Craft::Honest);
        }
        Change::Craft(i, craft) => {
            let key = hand(&all.0[i].0);
            all.0[i].2 = key.sign_as(&all.0[i].1, craft);
        }
        Change::WeakKey(i, t) => {
            let k = HandKey::weak(t);
            all.0[i].0 = k.public;
            all.0[i].2 = k.sign_as(&all.0[i].1, Craft::Honest);
        }
        Change::TorsionKey(i, t) => {
            let k = HandKey::with_torsion(9, t);
            all.0[i].0 = k.public;
            all.0[i].2 = k.sign_as(&all.0[i].1, Craft::Honest);
        }
    }
}

proptest! {
    // Each case checks ~300 signatures twice (batch and one by one).
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn any_changes_get_the_strict_answer_for_every_signature(
        changes in prop::collection::vec(change(), 0..6),
        threads in 1usize..4,
    ) {
        let mut all = base().clone();
        for c in &changes {
            apply(&mut all, c);
        }
        let (batch, reference) = all.both(threads);
        prop_assert_eq!(batch, reference);
    }
}

#[test]
fn the_reference_on_threads_is_verify_strict() {
    let mut all = base().clone();
    apply(&mut all, &Change::FlipSignatureBit(3, 9));
    let reference: Vec<bool> = all.0.iter().map(|(k, m, s)| strict(k, m, s)).collect();
    for threads in [1, 2, 5] {
        assert_eq!(one_at_a_time(&all.checks(), threads), reference);
    }
}

#[test]
fn s_plus_l_among_honest_signatures_is_refused() {
    // S + L satisfies the equation for S; only S < L refuses it. (Among
    // the other hand-made kinds the torsion test sends the whole batch to
    // verify_strict, so it needs a batch of its own.)
    let (a, _) = keys();
    let mut all = base().clone();
    all.0.extend(crafted(a, Craft::SPlusL, 9, 3).0);
    let (batch, reference) = all.both(2);
    assert_eq!(&reference[N..], [false; 3]);
    assert_eq!(batch, reference);
}
