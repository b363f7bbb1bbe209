//! How a server is expected to use the log: a store of full-subtree hashes
//! behind its own error type, fed by a `Frontier`, answering proofs. Written
//! outside the crate so that it also checks a downstream crate can implement
//! `NodeSource` for its own type.

use std::collections::HashMap;

use fieldseal_proto::identity::Hash32;
use fieldseal_proto::merkle::{
    consistency_proof_from, inclusion_proof_from, leaf_hash, root_from, verify_consistency,
    verify_inclusion, Frontier, MerkleError, NodeSource,
};

#[derive(Debug, PartialEq)]
enum StoreError {
    Merkle(MerkleError),
    Missing(u8, u64),
}

impl From<MerkleError> for StoreError {
    fn from(e: MerkleError) -> Self {
        StoreError::Merkle(e)
    }
}

#[derive(Debug, Default)]
struct MemoryStore {
    frontier: Frontier,
    nodes: HashMap<(u8, u64), Hash32>,
}

impl MemoryStore {
    fn append(&mut self, data: &[u8]) {
        for n in self.frontier.append(leaf_hash(data)).unwrap() {
            self.nodes.insert((n.level, n.index), n.hash);
        }
    }
}

impl NodeSource for MemoryStore {
    type Error = StoreError;
    fn node(&self, level: u8, index: u64) -> Result<Hash32, StoreError> {
        self.nodes
            .get(&(level, index))
            .copied()
            .ok_or(StoreError::Missing(level, index))
    }
}

#[test]
fn a_store_fed_by_the_frontier_answers_proofs() {
    let mut store = MemoryStore::default();
    let mut roots = vec![store.frontier.root()];
    for i in 0..100u32 {
        store.append(&i.to_be_bytes());
        roots.push(store.frontier.root());
    }
    let size = store.frontier.size();
    assert_eq!(root_from(&store, size), Ok(roots[100]));
    for i in [0u64, 1, 63, 64, 99] {
        let proof = inclusion_proof_from(&store, i, size).unwrap();
        let leaf = leaf_hash(&u32::try_from(i).unwrap().to_be_bytes());
        verify_inclusion(&leaf, i, size, &proof, &roots[100]).unwrap();
    }
    for old in [0u64, 1, 37, 64, 100] {
        let proof = consistency_proof_from(&store, old, size).unwrap();
        let old_root = roots[usize::try_from(old).unwrap()];
        verify_consistency(old, size, &old_root, &roots[100], &proof).unwrap();
    }
    // Argument errors come through the store's own error type.
    assert_eq!(
        inclusion_proof_from(&store, 100, 100),
        Err(StoreError::Merkle(MerkleError::IndexOutOfRange {
            index: 100,
            size: 100
        }))
    );
    // Asking beyond what was stored surfaces the store's error.
    assert_eq!(root_from(&store, 101), Err(StoreError::Missing(0, 100)));
}
