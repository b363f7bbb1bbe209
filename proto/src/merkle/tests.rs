use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

/// A naive transcription of RFC 9162 §2.1, recursion over slices and nothing
/// clever, to cross-check the iterative code.
mod reference {
    use super::*;

    fn k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    pub fn mth(d: &[Vec<u8>]) -> Hash32 {
        match d.len() {
            0 => sha256(b""),
            1 => leaf_hash(&d[0]),
            n => {
                let k = k(n);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    pub fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash32> {
        let n = d.len();
        if n <= 1 {
            return vec![];
        }
        let k = k(n);
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    pub fn proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash32> {
        subproof(m, d, true)
    }

    fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash32> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = k(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }
}

fn data(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("leaf-{i}").into_bytes()).collect()
}

fn hashes(d: &[Vec<u8>]) -> Vec<Hash32> {
    d.iter().map(|x| leaf_hash(x)).collect()
}

fn hx(s: &str) -> Hash32 {
    let mut h = [0u8; 32];
    hex::decode_to_slice(s, &mut h).unwrap();
    h
}

fn hxs(ss: &[&str]) -> Vec<Hash32> {
    ss.iter().map(|s| hx(s)).collect()
}

fn flip(h: &Hash32, bit: usize) -> Hash32 {
    let mut h = *h;
    h[bit / 8] ^= 1 << (bit % 8);
    h
}

/// The leaves and roots published with the Certificate Transparency reference
/// implementation, and used by most RFC 6962 / 9162 implementations since.
const CT_LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];
const CT_ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn ct_leaves() -> Vec<Hash32> {
    CT_LEAVES
        .iter()
        .map(|s| leaf_hash(&hex::decode(s).unwrap()))
        .collect()
}

#[test]
fn ct_reference_roots() {
    let leaves = ct_leaves();
    for (n, want) in CT_ROOTS.iter().enumerate() {
        assert_eq!(root(&leaves[..n]), hx(want), "root of {n} leaves");
    }
}

#[test]
fn ct_reference_inclusion_proofs() {
    let leaves = ct_leaves();
    let cases: &[(u64, usize, &[&str])] = &[
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for &(index, size, want) in cases {
        let proof = inclusion_proof(&leaves[..size], index).unwrap();
        assert_eq!(proof, hxs(want), "inclusion {index} in {size}");
        let i = usize::try_from(index).unwrap();
        verify_inclusion(&leaves[i], index, size as u64, &proof, &hx(CT_ROOTS[size])).unwrap();
    }
}

#[test]
fn ct_reference_consistency_proofs() {
    let leaves = ct_leaves();
    let cases: &[(u64, usize, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for &(old, new, want) in cases {
        let proof = consistency_proof(&leaves[..new], old).unwrap();
        assert_eq!(proof, hxs(want), "consistency {old} -> {new}");
        let old_root = hx(CT_ROOTS[usize::try_from(old).unwrap()]);
        verify_consistency(old, new as u64, &old_root, &hx(CT_ROOTS[new]), &proof).unwrap();
    }
}

#[test]
fn matches_the_naive_reference_exhaustively_up_to_40_leaves() {
    let all = data(40);
    let leaves = hashes(&all);
    for n in 0..=40usize {
        let d = &all[..n];
        let l = &leaves[..n];
        assert_eq!(root(l), reference::mth(d), "root {n}");
        for m in 0..n {
            let proof = inclusion_proof(l, m as u64).unwrap();
            assert_eq!(proof, reference::path(m, d), "path {m} of {n}");
            verify_inclusion(&l[m], m as u64, n as u64, &proof, &root(l)).unwrap();
        }
        for m in 1..=n {
            let proof = consistency_proof(l, m as u64).unwrap();
            assert_eq!(proof, reference::proof(m, d), "proof {m} -> {n}");
            verify_consistency(m as u64, n as u64, &root(&l[..m]), &root(l), &proof).unwrap();
        }
    }
}

#[test]
fn empty_tree() {
    assert_eq!(root(&[]), sha256(b""));
    assert_eq!(Frontier::new().root(), empty_root());
    assert_eq!(
        inclusion_proof(&[], 0),
        Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(consistency_proof(&[], 0), Ok(vec![]));
    verify_consistency(0, 0, &empty_root(), &empty_root(), &[]).unwrap();
    assert_eq!(
        verify_inclusion(&leaf_hash(b"x"), 0, 0, &[], &empty_root()),
        Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
    );
}

#[test]
fn size_one_to_two() {
    let l = hashes(&data(2));
    assert_eq!(root(&l[..1]), l[0]);
    assert_eq!(inclusion_proof(&l[..1], 0), Ok(vec![]));
    let proof = consistency_proof(&l, 1).unwrap();
    // Old tree of one leaf is a full left subtree: the proof is just its sibling.
    assert_eq!(proof, vec![l[1]]);
    verify_consistency(1, 2, &l[0], &root(&l), &proof).unwrap();
    assert_eq!(root(&l), node_hash(&l[0], &l[1]));
}

#[test]
fn equal_sizes_need_an_empty_proof_and_equal_roots() {
    let l = hashes(&data(5));
    let r = root(&l);
    assert_eq!(consistency_proof(&l, 5), Ok(vec![]));
    verify_consistency(5, 5, &r, &r, &[]).unwrap();
    assert_eq!(
        verify_consistency(5, 5, &r, &l[0], &[]),
        Err(MerkleError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(5, 5, &r, &r, &[l[0]]),
        Err(MerkleError::ExtraProofNodes {
            expected: 0,
            actual: 1
        })
    );
}

#[test]
fn old_size_zero_is_consistent_only_with_an_empty_proof_and_the_empty_root() {
    let l = hashes(&data(5));
    let r = root(&l);
    assert_eq!(consistency_proof(&l, 0), Ok(vec![]));
    verify_consistency(0, 5, &empty_root(), &r, &[]).unwrap();
    assert_eq!(
        verify_consistency(0, 5, &r, &r, &[]),
        Err(MerkleError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(0, 5, &empty_root(), &r, &[l[0]]),
        Err(MerkleError::ExtraProofNodes {
            expected: 0,
            actual: 1
        })
    );
}

#[test]
fn size_order_is_checked() {
    let l = hashes(&data(5));
    assert_eq!(
        consistency_proof(&l, 6),
        Err(MerkleError::SizeOrder {
            old_size: 6,
            new_size: 5
        })
    );
    assert_eq!(
        verify_consistency(6, 5, &l[0], &l[0], &[]),
        Err(MerkleError::SizeOrder {
            old_size: 6,
            new_size: 5
        })
    );
}

#[test]
fn inclusion_fails_for_wrong_size_index_or_length() {
    let l = hashes(&data(7));
    let r = root(&l);
    let proof = inclusion_proof(&l, 2).unwrap();
    verify_inclusion(&l[2], 2, 7, &proof, &r).unwrap();
    // Index at or beyond the size.
    assert_eq!(
        inclusion_proof(&l, 7),
        Err(MerkleError::IndexOutOfRange { index: 7, size: 7 })
    );
    assert_eq!(
        verify_inclusion(&l[2], 7, 7, &proof, &r),
        Err(MerkleError::IndexOutOfRange { index: 7, size: 7 })
    );
    // Wrong tree sizes: the proof for size 7 checked against the (true) root
    // of another size. (A root alone does not commit to its size, which is
    // why proofs are checked against the size and root of a signed checkpoint.)
    let more = hashes(&data(16));
    for size in [3usize, 4, 5, 6, 8, 9, 16] {
        let other_root = root(&more[..size]);
        assert!(
            verify_inclusion(&l[2], 2, size as u64, &proof, &other_root).is_err(),
            "size {size}"
        );
    }
    // Wrong index.
    for index in [0, 1, 3, 6] {
        assert!(
            verify_inclusion(&l[2], index, 7, &proof, &r).is_err(),
            "index {index}"
        );
    }
    // Missing and extra nodes.
    assert_eq!(
        verify_inclusion(&l[2], 2, 7, &proof[..2], &r),
        Err(MerkleError::MissingProofNodes {
            expected: 3,
            actual: 2
        })
    );
    let mut long = proof.clone();
    long.push(l[0]);
    assert_eq!(
        verify_inclusion(&l[2], 2, 7, &long, &r),
        Err(MerkleError::ExtraProofNodes {
            expected: 3,
            actual: 4
        })
    );
    // Right-edge leaf of an unbalanced tree: shorter path.
    assert_eq!(inclusion_proof(&l, 6).unwrap().len(), 2);
}

#[test]
fn consistency_fails_for_missing_or_extra_nodes_and_wrong_roots() {
    let l = hashes(&data(7));
    let (r3, r7) = (root(&l[..3]), root(&l));
    let proof = consistency_proof(&l, 3).unwrap();
    verify_consistency(3, 7, &r3, &r7, &proof).unwrap();
    let n = proof.len();
    assert_eq!(
        verify_consistency(3, 7, &r3, &r7, &proof[..n - 1]),
        Err(MerkleError::MissingProofNodes {
            expected: n,
            actual: n - 1
        })
    );
    let mut long = proof.clone();
    long.push(l[0]);
    assert_eq!(
        verify_consistency(3, 7, &r3, &r7, &long),
        Err(MerkleError::ExtraProofNodes {
            expected: n,
            actual: n + 1
        })
    );
    assert_eq!(
        verify_consistency(3, 7, &r7, &r7, &proof),
        Err(MerkleError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(3, 7, &r3, &r3, &proof),
        Err(MerkleError::RootMismatch)
    );
    assert_eq!(
        verify_consistency(3, 7, &r3, &r7, &[]),
        Err(MerkleError::MissingProofNodes {
            expected: n,
            actual: 0
        })
    );
}

/// A server's store: full subtree hashes by (level, index), fed by the frontier.
fn stored(leaves: &[Hash32]) -> (Frontier, HashMap<(u8, u64), Hash32>) {
    let mut f = Frontier::new();
    let mut store = HashMap::new();
    for l in leaves {
        for n in f.append(*l).unwrap() {
            assert!(store.insert((n.level, n.index), n.hash).is_none());
        }
    }
    (f, store)
}

#[test]
fn frontier_and_stored_nodes_agree_with_the_leaf_slice() {
    let l = hashes(&data(70));
    let (_, store) = stored(&l);
    let src = |level: u8, index: u64| -> Result<Hash32, MerkleError> {
        store
            .get(&(level, index))
            .copied()
            .ok_or(MerkleError::NodeUnavailable { level, index })
    };
    let mut f = Frontier::new();
    for n in 0..=70usize {
        let size = n as u64;
        assert_eq!(f.root(), root(&l[..n]), "frontier root {n}");
        assert_eq!(root_from(&src, size), Ok(root(&l[..n])));
        assert_eq!(Frontier::from_source(&src, size).as_ref(), Ok(&f));
        assert_eq!(
            Frontier::from_parts(size, f.nodes().to_vec()).as_ref(),
            Ok(&f)
        );
        for m in 0..size {
            assert_eq!(
                inclusion_proof_from(&src, m, size),
                inclusion_proof(&l[..n], m)
            );
        }
        for m in 0..=size {
            assert_eq!(
                consistency_proof_from(&src, m, size),
                consistency_proof(&l[..n], m)
            );
        }
        if n < 70 {
            f.append(l[n]).unwrap();
        }
    }
    // Only full subtrees are stored: a node past the end is not asked for.
    assert_eq!(
        src(0, 70),
        Err(MerkleError::NodeUnavailable {
            level: 0,
            index: 70
        })
    );
    assert_eq!(
        Frontier::from_parts(3, vec![l[0]]),
        Err(MerkleError::BadFrontier {
            size: 3,
            expected: 2,
            actual: 1
        })
    );
}

#[test]
fn frontier_append_reports_completed_subtrees() {
    let l = hashes(&data(4));
    let mut f = Frontier::new();
    assert_eq!(f.append(l[0]).unwrap().len(), 1);
    let done = f.append(l[1]).unwrap();
    assert_eq!(
        done[1],
        StoredNode {
            level: 1,
            index: 0,
            hash: node_hash(&l[0], &l[1])
        }
    );
    assert_eq!(f.append(l[2]).unwrap().len(), 1);
    let done = f.append(l[3]).unwrap();
    assert_eq!(
        done.iter().map(|n| (n.level, n.index)).collect::<Vec<_>>(),
        vec![(0, 3), (1, 1), (2, 0)]
    );
    assert_eq!(f.nodes(), &[root(&l)]);
}

#[test]
fn proof_encodings_round_trip_and_are_bounded() {
    let l = hashes(&data(7));
    let p = InclusionProof::new(2, 7, inclusion_proof(&l, 2).unwrap()).unwrap();
    let bytes = p.to_bytes();
    assert_eq!(bytes.len(), 8 + 8 + 1 + 3 * 32);
    assert_eq!(
        &bytes[..17],
        &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7, 3]
    );
    assert_eq!(InclusionProof::from_bytes(&bytes), Ok(p.clone()));
    p.verify(&l[2], &root(&l)).unwrap();

    let c = ConsistencyProof::new(3, 7, consistency_proof(&l, 3).unwrap()).unwrap();
    let bytes = c.to_bytes();
    assert_eq!(ConsistencyProof::from_bytes(&bytes), Ok(c.clone()));
    c.verify(&root(&l[..3]), &root(&l)).unwrap();

    // Trailing data, truncation, and a count above the bound (checked before
    // any hash is read).
    let mut long = bytes.clone();
    long.push(0);
    assert!(matches!(
        ConsistencyProof::from_bytes(&long),
        Err(DecodeError::TrailingData { count: 1, .. })
    ));
    assert!(ConsistencyProof::from_bytes(&bytes[..bytes.len() - 1])
        .unwrap_err()
        .is_incomplete());
    let mut huge = vec![0u8; 16];
    huge.push(65);
    assert!(matches!(
        InclusionProof::from_bytes(&huge),
        Err(DecodeError::TooLong { len: 65, .. })
    ));
    assert_eq!(
        InclusionProof::new(0, 1, vec![[0; 32]; 65]),
        Err(MerkleError::TooManyHashes { len: 65, max: 64 })
    );
}

#[test]
fn proof_lengths_fit_the_bound_for_huge_trees() {
    assert_eq!(inclusion_proof_len(0, u64::MAX), 64);
    assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), 63);
    assert_eq!(consistency_proof_len((1 << 63) - 1, 1 << 63), 64);
    // The one case beyond the bound, documented on MAX_PROOF_HASHES.
    assert_eq!(consistency_proof_len((1 << 63) - 1, (1 << 63) + 1), 65);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn inclusion_proofs_verify_and_any_flipped_bit_fails(
        size in 1usize..=300,
        index_seed in any::<usize>(),
        bit in 0usize..256,
        target_seed in any::<usize>(),
    ) {
        let all = hashes(&data(size * 2));
        let l = &all[..size];
        let r = root(l);
        let index = index_seed % size;
        let proof = inclusion_proof(l, index as u64).unwrap();
        prop_assert_eq!(&proof, &reference::path(index, &data(size)));
        verify_inclusion(&l[index], index as u64, size as u64, &proof, &r).unwrap();

        // Flip one bit in one of: the leaf, the root, or a proof hash.
        let target = target_seed % (proof.len() + 2);
        let (mut leaf, mut rt, mut p) = (l[index], r, proof.clone());
        match target {
            0 => leaf = flip(&leaf, bit),
            1 => rt = flip(&rt, bit),
            t => p[t - 2] = flip(&p[t - 2], bit),
        }
        prop_assert_eq!(
            verify_inclusion(&leaf, index as u64, size as u64, &p, &rt),
            Err(MerkleError::RootMismatch)
        );
        // The same proof against other tree sizes (and their roots) fails.
        for other in [size - 1, size + 1, size * 2] {
            if other > index && other != size {
                let other_root = root(&all[..other]);
                prop_assert!(
                    verify_inclusion(&l[index], index as u64, other as u64, &proof, &other_root).is_err()
                );
            }
        }
    }

    #[test]
    fn consistency_proofs_verify_and_fail_against_other_sizes(
        new in 1usize..=300,
        old_seed in any::<usize>(),
        bit in 0usize..256,
        target_seed in any::<usize>(),
    ) {
        let old = 1 + old_seed % new;
        let all = hashes(&data(new + 1));
        let l = &all[..new];
        let (r_old, r_new) = (root(&l[..old]), root(l));
        let proof = consistency_proof(l, old as u64).unwrap();
        prop_assert_eq!(&proof, &reference::proof(old, &data(new)));
        prop_assert!(proof.len() <= MAX_PROOF_HASHES);
        verify_consistency(old as u64, new as u64, &r_old, &r_new, &proof).unwrap();

        for (o, n) in [(old - 1, new), (old + 1, new), (old, new + 1), (old, new - 1)] {
            if (o, n) != (old, new) && o >= 1 && o <= n {
                let (ro, rn) = (root(&all[..o]), root(&all[..n]));
                prop_assert!(
                    verify_consistency(o as u64, n as u64, &ro, &rn, &proof).is_err(),
                    "{} -> {} accepted as {} -> {}", old, new, o, n
                );
            }
        }

        let target = target_seed % (proof.len() + 2);
        let (mut ro, mut rn, mut p) = (r_old, r_new, proof.clone());
        match target {
            0 => ro = flip(&ro, bit),
            1 => rn = flip(&rn, bit),
            t => p[t - 2] = flip(&p[t - 2], bit),
        }
        prop_assert_eq!(
            verify_consistency(old as u64, new as u64, &ro, &rn, &p),
            Err(MerkleError::RootMismatch)
        );
    }

    #[test]
    fn proof_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = InclusionProof::from_bytes(&bytes);
        let _ = ConsistencyProof::from_bytes(&bytes);
    }
}
