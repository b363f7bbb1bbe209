//! The transparency log's Merkle tree: RFC 9162 (Certificate Transparency v2)
//! hashing, inclusion and consistency proofs, and their binary encodings.
//!
//! Every accepted entry and every custody event becomes a leaf of one
//! append-only log. A signed checkpoint (see [`crate::checkpoint`]) commits to
//! the root of the first `size` leaves; an **inclusion proof** shows that a leaf
//! is among them, a **consistency proof** shows that a later tree extends an
//! earlier one, so nothing was removed or rewritten in between.
//!
//! Two ways to compute things:
//!
//! - over a slice of leaf hashes ([`root`], [`inclusion_proof`],
//!   [`consistency_proof`]): simple, O(n), for tests, exports and small logs;
//! - over stored full-subtree hashes through a [`NodeSource`]
//!   ([`root_from`], [`inclusion_proof_from`], [`consistency_proof_from`]),
//!   O(log² n) lookups at most, for a server holding millions of leaves. The
//!   [`Frontier`] appends a leaf in O(log n) and reports which full subtrees it
//!   completed, which is exactly what such a server stores.
//!
//! Byte layouts (all integers big-endian; see `docs/FORMAT.md`, "Transparency
//! log"):
//!
//! ```text
//! leaf hash        = SHA-256(0x00 || leaf bytes)
//! node hash        = SHA-256(0x01 || left hash (32) || right hash (32))
//! empty tree root  = SHA-256("")
//!
//! InclusionProof   = leaf_index u64 | tree_size u64 | count u8 (<= 64) | count × hash (32)
//! ConsistencyProof = old_size u64   | new_size u64  | count u8 (<= 64) | count × hash (32)
//! ```
//!
//! Levels and indexes: the full subtree at `(level, index)` covers the
//! `2^level` leaves `[index·2^level, (index+1)·2^level)`; level 0 is the leaves.

use thiserror::Error;

use crate::codec::{check_len, Decode, DecodeError, Encode, Reader};
use crate::identity::{sha256, sha256_parts, Hash32};

/// Domain-separation byte in front of leaf data (RFC 9162 §2.1.1).
pub const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation byte in front of two child hashes (RFC 9162 §2.1.1).
pub const NODE_PREFIX: u8 = 0x01;

/// Maximum number of hashes in an encoded proof. A tree of up to 2^64 − 1
/// leaves is at most 64 levels deep, so every inclusion proof fits, and so does
/// every consistency proof whose new tree has at most 2^63 leaves (beyond that
/// one can reach 65 hashes; [`ConsistencyProof::new`] refuses it). The count
/// travels in one byte.
pub const MAX_PROOF_HASHES: usize = 64;

/// Why a Merkle computation or a proof check failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// A leaf index that is not inside the tree.
    #[error("leaf index {index} is outside a tree of size {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The size of the tree.
        size: u64,
    },
    /// A consistency check from a larger tree to a smaller one.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    SizeOrder {
        /// The earlier tree size.
        old_size: u64,
        /// The later tree size.
        new_size: u64,
    },
    /// A tree size larger than the leaves available to compute it.
    #[error("tree size {size} but only {available} leaves are available")]
    SizeOutOfRange {
        /// The size asked for.
        size: u64,
        /// The number of leaves held.
        available: u64,
    },
    /// The proof holds more hashes than the sizes call for.
    #[error("proof has {actual} hashes where {expected} are expected")]
    ExtraProofNodes {
        /// The length the tree sizes call for.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// The proof holds fewer hashes than the sizes call for.
    #[error("proof has {actual} hashes where {expected} are expected")]
    MissingProofNodes {
        /// The length the tree sizes call for.
        expected: usize,
        /// The length received.
        actual: usize,
    },
    /// The proof is well formed but leads to a different root (or, for a
    /// consistency proof, one of the two roots differs).
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    /// A [`NodeSource`] does not hold a full subtree that was needed.
    #[error("no stored node at level {level}, index {index}")]
    NodeUnavailable {
        /// Height of the subtree (0 for a leaf).
        level: u8,
        /// Position of the subtree among those of its level.
        index: u64,
    },
    /// The tree already holds 2^64 − 1 leaves.
    #[error("the tree is full")]
    TreeFull,
    /// A frontier whose node count does not match its size.
    #[error("a frontier of size {size} has {expected} nodes, not {actual}")]
    BadFrontier {
        /// The tree size.
        size: u64,
        /// The number of nodes that size calls for (its number of set bits).
        expected: usize,
        /// The number of nodes given.
        actual: usize,
    },
    /// A proof too long to encode.
    #[error("proof of {len} hashes exceeds the maximum {max}")]
    TooManyHashes {
        /// The number of hashes.
        len: usize,
        /// [`MAX_PROOF_HASHES`].
        max: usize,
    },
}

/// The hash of one log leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash32 {
    sha256_parts(&[&[LEAF_PREFIX], data])
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    sha256_parts(&[&[NODE_PREFIX], left, right])
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash32 {
    sha256(b"")
}

/// The largest power of two strictly below `n` (RFC 9162's `k`). `n >= 2`.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// The level of a full subtree of `width` leaves (`width` a power of two).
fn level_of(width: u64) -> u8 {
    u8::try_from(width.trailing_zeros()).expect("a u64 has at most 64 trailing zeros")
}

fn len_u64(leaves: &[Hash32]) -> u64 {
    u64::try_from(leaves.len()).expect("a slice length fits in u64")
}

/// The Merkle tree hash (RFC 9162 §2.1.1) of a list of leaf hashes.
pub fn root(leaf_hashes: &[Hash32]) -> Hash32 {
    match leaf_hashes {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = usize::try_from(split(len_u64(leaf_hashes))).expect("k < len");
            let (left, right) = leaf_hashes.split_at(k);
            node_hash(&root(left), &root(right))
        }
    }
}

/// Where proofs get their subtree hashes from: a server stores the hash of
/// every **full** subtree keyed by `(level, index)` (the subtree covering
/// leaves `[index·2^level, (index+1)·2^level)`). Hashes of incomplete
/// right-edge subtrees are never stored; they are recomputed from full ones.
///
/// A closure `|level: u8, index: u64| -> Result<Hash32, E>` is a `NodeSource`.
pub trait NodeSource {
    /// What a lookup can fail with; a [`MerkleError`] must convert into it so
    /// that one error type carries both argument and storage failures.
    type Error: From<MerkleError>;

    /// The hash of the full subtree at `(level, index)`.
    ///
    /// # Errors
    /// Whatever the store fails with; [`MerkleError::NodeUnavailable`] for a
    /// node it does not hold.
    fn node(&self, level: u8, index: u64) -> Result<Hash32, Self::Error>;
}

impl<F, E> NodeSource for F
where
    F: Fn(u8, u64) -> Result<Hash32, E>,
    E: From<MerkleError>,
{
    type Error = E;
    fn node(&self, level: u8, index: u64) -> Result<Hash32, E> {
        self(level, index)
    }
}

/// A [`NodeSource`] over an in-memory slice of leaf hashes: each full subtree
/// is hashed from its leaves when asked for.
struct LeafSlice<'a>(&'a [Hash32]);

impl NodeSource for LeafSlice<'_> {
    type Error = MerkleError;
    fn node(&self, level: u8, index: u64) -> Result<Hash32, MerkleError> {
        let unavailable = MerkleError::NodeUnavailable { level, index };
        let width = 1u64
            .checked_shl(u32::from(level))
            .ok_or(unavailable.clone())?;
        let start = index.checked_mul(width).ok_or(unavailable.clone())?;
        let end = start.checked_add(width).ok_or(unavailable.clone())?;
        if end > len_u64(self.0) {
            return Err(unavailable);
        }
        // Both fit in usize: they are at most the slice length.
        let range = usize::try_from(start).expect("<= len")..usize::try_from(end).expect("<= len");
        Ok(root(&self.0[range]))
    }
}

/// The hash of the leaves `[start, start + len)`, as RFC 9162 defines it for
/// any such range, built from the fewest full subtrees.
fn range_hash<S: NodeSource + ?Sized>(src: &S, start: u64, len: u64) -> Result<Hash32, S::Error> {
    if len == 0 {
        return Ok(empty_root());
    }
    if len.is_power_of_two() && start % len == 0 {
        let level = level_of(len);
        return src.node(level, start >> level);
    }
    let k = split(len);
    let left = range_hash(src, start, k)?;
    let right = range_hash(src, start + k, len - k)?;
    Ok(node_hash(&left, &right))
}

/// The root of the first `size` leaves, from stored subtree hashes.
///
/// # Errors
/// Whatever the source fails with.
pub fn root_from<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Hash32, S::Error> {
    range_hash(src, 0, size)
}

/// The inclusion proof (RFC 9162 §2.1.3.1, "audit path") of leaf `index` in
/// the tree of the first `size` leaves, from stored subtree hashes. The hashes
/// run from the leaf's sibling up to the root's child.
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] if `index >= size`; whatever the source
/// fails with.
pub fn inclusion_proof_from<S: NodeSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash32>, S::Error> {
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size }.into());
    }
    // Walk down from the root; each step records the subtree not taken.
    let mut siblings = Vec::new();
    let (mut start, mut n, mut m) = (0u64, size, index);
    while n > 1 {
        let k = split(n);
        if m < k {
            siblings.push(range_hash(src, start + k, n - k)?);
            n = k;
        } else {
            siblings.push(range_hash(src, start, k)?);
            start += k;
            m -= k;
            n -= k;
        }
    }
    siblings.reverse();
    Ok(siblings)
}

/// The consistency proof (RFC 9162 §2.1.4.1) that the tree of `new_size`
/// leaves extends the tree of its first `old_size` leaves, from stored
/// subtree hashes. Empty when `old_size` is 0 or equals `new_size`.
///
/// # Errors
/// [`MerkleError::SizeOrder`] if `old_size > new_size`; whatever the source
/// fails with.
pub fn consistency_proof_from<S: NodeSource + ?Sized>(
    src: &S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash32>, S::Error> {
    if old_size > new_size {
        return Err(MerkleError::SizeOrder { old_size, new_size }.into());
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let mut siblings = Vec::new();
    let (mut start, mut n, mut m) = (0u64, new_size, old_size);
    // True while the old tree is a full left subtree of the current one; then
    // the verifier already knows its hash (the old root) and it is not sent.
    let mut old_is_left_subtree = true;
    while m != n {
        let k = split(n);
        if m <= k {
            siblings.push(range_hash(src, start + k, n - k)?);
            n = k;
        } else {
            siblings.push(range_hash(src, start, k)?);
            start += k;
            m -= k;
            n -= k;
            old_is_left_subtree = false;
        }
    }
    let mut proof = Vec::with_capacity(siblings.len() + 1);
    if !old_is_left_subtree {
        proof.push(range_hash(src, start, n)?);
    }
    proof.extend(siblings.into_iter().rev());
    Ok(proof)
}

/// The inclusion proof of leaf `index` in the tree of all `leaf_hashes`.
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] if `index >= leaf_hashes.len()`.
pub fn inclusion_proof(leaf_hashes: &[Hash32], index: u64) -> Result<Vec<Hash32>, MerkleError> {
    inclusion_proof_from(&LeafSlice(leaf_hashes), index, len_u64(leaf_hashes))
}

/// The consistency proof from the tree of the first `old_size` leaves to the
/// tree of all `leaf_hashes`.
///
/// # Errors
/// [`MerkleError::SizeOrder`] if `old_size > leaf_hashes.len()`.
pub fn consistency_proof(
    leaf_hashes: &[Hash32],
    old_size: u64,
) -> Result<Vec<Hash32>, MerkleError> {
    consistency_proof_from(&LeafSlice(leaf_hashes), old_size, len_u64(leaf_hashes))
}

/// The number of hashes in the inclusion proof of `index` in a tree of `size`
/// (`index < size`): one per level walked down from the root.
fn inclusion_proof_len(mut index: u64, mut size: u64) -> usize {
    let mut len = 0;
    while size > 1 {
        let k = split(size);
        if index < k {
            size = k;
        } else {
            index -= k;
            size -= k;
        }
        len += 1;
    }
    len
}

/// The number of hashes in the consistency proof for `0 < old < new`,
/// following the same walk as [`consistency_proof_from`].
fn consistency_proof_len(mut old: u64, mut new: u64) -> usize {
    let mut len = 0;
    let mut old_is_left_subtree = true;
    while old != new {
        let k = split(new);
        if old <= k {
            new = k;
        } else {
            old -= k;
            new -= k;
            old_is_left_subtree = false;
        }
        len += 1;
    }
    len + usize::from(!old_is_left_subtree)
}

fn check_proof_len(expected: usize, actual: usize) -> Result<(), MerkleError> {
    match actual.cmp(&expected) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(MerkleError::ExtraProofNodes { expected, actual }),
        std::cmp::Ordering::Less => Err(MerkleError::MissingProofNodes { expected, actual }),
    }
}

/// The root that an inclusion proof leads to (RFC 9162 §2.1.3.2, steps 1–4).
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] if `index >= tree_size`;
/// [`MerkleError::ExtraProofNodes`] / [`MerkleError::MissingProofNodes`] if the
/// proof length is not the one `index` and `tree_size` call for.
pub fn root_from_inclusion(
    leaf_hash: &Hash32,
    index: u64,
    tree_size: u64,
    proof: &[Hash32],
) -> Result<Hash32, MerkleError> {
    if index >= tree_size {
        return Err(MerkleError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let expected = inclusion_proof_len(index, tree_size);
    check_proof_len(expected, proof.len())?;

    // `f` is the position of the running hash within its level, `s` the
    // position of the tree's last node in that level.
    let (mut f, mut s) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if s == 0 {
            // Unreachable after the length check; kept as the RFC states it.
            return Err(MerkleError::ExtraProofNodes {
                expected,
                actual: proof.len(),
            });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            // A right-edge node with no right sibling rises without hashing.
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(MerkleError::MissingProofNodes {
            expected,
            actual: proof.len(),
        });
    }
    Ok(r)
}

/// Check that `leaf_hash` is leaf `index` of the tree of `tree_size` leaves
/// whose root is `root` (RFC 9162 §2.1.3.2).
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`], [`MerkleError::ExtraProofNodes`],
/// [`MerkleError::MissingProofNodes`] for a proof that does not fit the sizes;
/// [`MerkleError::RootMismatch`] if it leads elsewhere.
pub fn verify_inclusion(
    leaf_hash: &Hash32,
    index: u64,
    tree_size: u64,
    proof: &[Hash32],
    root: &Hash32,
) -> Result<(), MerkleError> {
    if root_from_inclusion(leaf_hash, index, tree_size, proof)? == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// Check that the tree of `new_size` leaves with root `new_root` extends the
/// tree of `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2).
///
/// Two cases RFC 9162 leaves to the caller are decided here:
/// - `old_size == new_size`: the proof must be empty and the roots equal;
/// - `old_size == 0`: every tree extends the empty tree, so the proof must be
///   empty and `old_root` must be the empty-tree root `SHA-256("")`.
///
/// # Errors
/// [`MerkleError::SizeOrder`] if `old_size > new_size`;
/// [`MerkleError::ExtraProofNodes`] / [`MerkleError::MissingProofNodes`] if the
/// proof length is not the one the sizes call for; [`MerkleError::RootMismatch`]
/// if either root is not reproduced.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash32,
    new_root: &Hash32,
    proof: &[Hash32],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizeOrder { old_size, new_size });
    }
    if old_size == 0 {
        check_proof_len(0, proof.len())?;
        return if *old_root == empty_root() {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    if old_size == new_size {
        check_proof_len(0, proof.len())?;
        return if old_root == new_root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    let expected = consistency_proof_len(old_size, new_size);
    check_proof_len(expected, proof.len())?;

    // When the old tree is a full subtree its hash is the old root, which the
    // proof leaves out: the verifier puts it back in front.
    let mut path = proof.iter();
    let first = if old_size.is_power_of_two() {
        old_root
    } else {
        path.next()
            .expect("a proof for 0 < old < new, old not a power of two, is non-empty")
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut old_r, mut new_r) = (*first, *first);
    for c in path {
        if s == 0 {
            // Unreachable after the length check; kept as the RFC states it.
            return Err(MerkleError::ExtraProofNodes {
                expected,
                actual: proof.len(),
            });
        }
        if f & 1 == 1 || f == s {
            old_r = node_hash(c, &old_r);
            new_r = node_hash(c, &new_r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            new_r = node_hash(&new_r, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(MerkleError::MissingProofNodes {
            expected,
            actual: proof.len(),
        });
    }
    if old_r == *old_root && new_r == *new_root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// A full subtree hash that became known when a leaf was appended: what a
/// server stores under `(level, index)` to answer [`NodeSource::node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredNode {
    /// Height of the subtree (0 for the leaf itself).
    pub level: u8,
    /// Position of the subtree among those of its level.
    pub index: u64,
    /// Its hash.
    pub hash: Hash32,
}

/// The right edge of a tree: the hashes of the maximal full subtrees that
/// make up its leaves, largest (leftmost) first: one per set bit of the size.
/// Enough to append a leaf and compute the root in O(log n), without holding
/// the leaves. Also known as a compact range `[0, size)`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash32>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Self {
        Frontier::default()
    }

    /// A frontier from a stored size and its nodes (largest subtree first).
    ///
    /// # Errors
    /// [`MerkleError::BadFrontier`] unless there is one node per set bit of
    /// `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash32>) -> Result<Self, MerkleError> {
        let expected = size.count_ones() as usize;
        if nodes.len() != expected {
            return Err(MerkleError::BadFrontier {
                size,
                expected,
                actual: nodes.len(),
            });
        }
        Ok(Frontier { size, nodes })
    }

    /// The frontier of the first `size` leaves, read from stored subtrees.
    ///
    /// # Errors
    /// Whatever the source fails with.
    pub fn from_source<S: NodeSource + ?Sized>(src: &S, size: u64) -> Result<Self, S::Error> {
        let mut nodes = Vec::with_capacity(size.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64u8).rev() {
            let width = 1u64 << level;
            if size & width != 0 {
                nodes.push(src.node(level, start >> level)?);
                start += width;
            }
        }
        Ok(Frontier { size, nodes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree hashes, largest (leftmost) first.
    pub fn nodes(&self) -> &[Hash32] {
        &self.nodes
    }

    /// The root of the tree: the subtree hashes folded from the right.
    pub fn root(&self) -> Hash32 {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |acc, left| node_hash(left, &acc))
    }

    /// Append one leaf hash. Returns the full subtrees this completed, from
    /// the leaf itself (level 0) upward, for the caller to store.
    ///
    /// # Errors
    /// [`MerkleError::TreeFull`] at 2^64 − 1 leaves.
    pub fn append(&mut self, leaf_hash: Hash32) -> Result<Vec<StoredNode>, MerkleError> {
        let new_size = self.size.checked_add(1).ok_or(MerkleError::TreeFull)?;
        let (mut level, mut index, mut hash) = (0u8, self.size, leaf_hash);
        let mut completed = vec![StoredNode { level, index, hash }];
        // An odd index is a right child: its left sibling is the last node.
        while index & 1 == 1 {
            let left = self
                .nodes
                .pop()
                .expect("an odd position has a left sibling on the frontier");
            hash = node_hash(&left, &hash);
            level += 1;
            index >>= 1;
            completed.push(StoredNode { level, index, hash });
        }
        self.nodes.push(hash);
        self.size = new_size;
        Ok(completed)
    }
}

/// An inclusion proof as it travels: which leaf, in which tree, and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    leaf_index: u64,
    tree_size: u64,
    hashes: Vec<Hash32>,
}

impl InclusionProof {
    /// Bundle a proof for encoding. The sizes are checked by [`Self::verify`],
    /// not here.
    ///
    /// # Errors
    /// [`MerkleError::TooManyHashes`] above [`MAX_PROOF_HASHES`].
    pub fn new(leaf_index: u64, tree_size: u64, hashes: Vec<Hash32>) -> Result<Self, MerkleError> {
        if hashes.len() > MAX_PROOF_HASHES {
            return Err(MerkleError::TooManyHashes {
                len: hashes.len(),
                max: MAX_PROOF_HASHES,
            });
        }
        Ok(InclusionProof {
            leaf_index,
            tree_size,
            hashes,
        })
    }

    /// The index of the leaf.
    pub fn leaf_index(&self) -> u64 {
        self.leaf_index
    }

    /// The size of the tree.
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }

    /// The audit path, from the leaf's sibling upward.
    pub fn hashes(&self) -> &[Hash32] {
        &self.hashes
    }

    /// See [`verify_inclusion`].
    ///
    /// # Errors
    /// As [`verify_inclusion`].
    pub fn verify(&self, leaf_hash: &Hash32, root: &Hash32) -> Result<(), MerkleError> {
        verify_inclusion(
            leaf_hash,
            self.leaf_index,
            self.tree_size,
            &self.hashes,
            root,
        )
    }
}

/// A consistency proof as it travels: the two sizes and the hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    old_size: u64,
    new_size: u64,
    hashes: Vec<Hash32>,
}

impl ConsistencyProof {
    /// Bundle a proof for encoding. The sizes are checked by [`Self::verify`],
    /// not here.
    ///
    /// # Errors
    /// [`MerkleError::TooManyHashes`] above [`MAX_PROOF_HASHES`].
    pub fn new(old_size: u64, new_size: u64, hashes: Vec<Hash32>) -> Result<Self, MerkleError> {
        if hashes.len() > MAX_PROOF_HASHES {
            return Err(MerkleError::TooManyHashes {
                len: hashes.len(),
                max: MAX_PROOF_HASHES,
            });
        }
        Ok(ConsistencyProof {
            old_size,
            new_size,
            hashes,
        })
    }

    /// The earlier tree size.
    pub fn old_size(&self) -> u64 {
        self.old_size
    }

    /// The later tree size.
    pub fn new_size(&self) -> u64 {
        self.new_size
    }

    /// The proof hashes.
    pub fn hashes(&self) -> &[Hash32] {
        &self.hashes
    }

    /// See [`verify_consistency`].
    ///
    /// # Errors
    /// As [`verify_consistency`].
    pub fn verify(&self, old_root: &Hash32, new_root: &Hash32) -> Result<(), MerkleError> {
        verify_consistency(
            self.old_size,
            self.new_size,
            old_root,
            new_root,
            &self.hashes,
        )
    }
}

fn encode_proof(a: u64, b: u64, hashes: &[Hash32], out: &mut Vec<u8>) {
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(&b.to_be_bytes());
    out.push(u8::try_from(hashes.len()).expect("proof length is bounded by its constructor"));
    for h in hashes {
        out.extend_from_slice(h);
    }
}

fn decode_proof(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<(u64, u64, Vec<Hash32>), DecodeError> {
    let a = r.u64()?;
    let b = r.u64()?;
    let count = usize::from(r.u8()?);
    check_len(what, count, MAX_PROOF_HASHES)?;
    let mut hashes = Vec::with_capacity(count);
    for _ in 0..count {
        hashes.push(r.array::<32>()?);
    }
    Ok((a, b, hashes))
}

impl Encode for InclusionProof {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_proof(self.leaf_index, self.tree_size, &self.hashes, out);
    }
}

impl Decode for InclusionProof {
    const NAME: &'static str = "inclusion proof";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (leaf_index, tree_size, hashes) = decode_proof(r, "inclusion proof hashes")?;
        Ok(InclusionProof {
            leaf_index,
            tree_size,
            hashes,
        })
    }
}

impl Encode for ConsistencyProof {
    fn encode(&self, out: &mut Vec<u8>) {
        encode_proof(self.old_size, self.new_size, &self.hashes, out);
    }
}

impl Decode for ConsistencyProof {
    const NAME: &'static str = "consistency proof";
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let (old_size, new_size, hashes) = decode_proof(r, "consistency proof hashes")?;
        Ok(ConsistencyProof {
            old_size,
            new_size,
            hashes,
        })
    }
}

#[cfg(test)]
mod tests;
