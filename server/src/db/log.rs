//! The transparency log's tree in the index: its size and every stored
//! node (RFC 9162 hashing, `fieldseal_proto::merkle`) in the sled tree
//! `log` (key: level byte then big-endian index; the size under `size`).
//! The leaves themselves are in `leaves.log` (`leaflog.rs`), appended and
//! fsynced before their nodes are stored here; at open, and after a failed
//! append, the tree catches up from that file. Proofs and roots are read
//! from the stored nodes.

use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle::{self, Frontier, MerkleError, StoredNode};

use super::{Db, DbError};

fn node_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

const LOG_SIZE: &[u8] = b"size";

impl Db {
    pub(super) fn log_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.log_append
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Add to the tree the leaves that `leaves.log` holds beyond it (`warn`:
    /// that is a crash's leftover, not a rebuild). Called with the log lock
    /// held.
    pub(super) fn catch_up_log(&self, warn: bool) -> Result<(), DbError> {
        let indexed = self.stored_size()?;
        let held = self.leaves.count();
        if indexed > held {
            return Err(DbError::LeavesLost { indexed, held });
        }
        if indexed < held && warn {
            tracing::warn!(
                indexed,
                held,
                "adding leaves that reached leaves.log but not the index"
            );
        }
        if indexed < held {
            let mut f = self.frontier()?;
            // In batches of a few thousand leaves: one batch for a whole
            // rebuild held every node in memory at once (270 MB for 30,000
            // leaves). Each batch ends with the size, so the tree is
            // consistent after any of them.
            for chunk in self.leaves.read_from(indexed)?.chunks(4096) {
                let mut batch = sled::Batch::default();
                for leaf in chunk {
                    for n in f.append(merkle::leaf_hash(leaf))? {
                        batch.insert(node_key(n.level, n.index).as_slice(), n.hash.as_slice());
                    }
                }
                batch.insert(LOG_SIZE, f.size().to_be_bytes().as_slice());
                self.log.apply_batch(batch)?;
            }
        }
        Ok(())
    }

    /// The leaf data of every leaf from `from` on, from `leaves.log`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn leaves_from(&self, from: u64) -> Result<Vec<Vec<u8>>, DbError> {
        Ok(self.leaves.read_from(from)?)
    }

    /// Rebuild the log's tree from `leaves.log` (after [`Db::clear_derived`]).
    ///
    /// # Errors
    /// sled errors, a damaged leaf log.
    pub fn rebuild_log(&self) -> Result<u64, DbError> {
        let _one_at_a_time = self.log_lock();
        self.catch_up_log(false)?;
        self.flush()?;
        self.stored_size()
    }

    /// Append leaves in order: to `leaves.log` with one fsync (group
    /// commit), then their nodes to the index. Returns the index of the
    /// first: [`crate::chainindex::ChainIndex::log_append_many`] for sled.
    ///
    /// # Errors
    /// I/O errors of the leaf log; sled errors, a corrupt log.
    pub(super) fn append_leaves(&self, leaves: &[Leaf]) -> Result<u64, DbError> {
        let _one_at_a_time = self.log_lock();
        // An earlier append may have reached the file but failed in sled.
        self.catch_up_log(true)?;
        let mut f = self.frontier()?;
        let data: Vec<Vec<u8>> = leaves.iter().map(Encode::to_bytes).collect();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let first = self.leaves.append_many(&refs)?;
        if first != f.size() {
            return Err(DbError::Corrupt(format!(
                "leaf appended at {first}, the tree has {} leaves",
                f.size()
            )));
        }
        crate::fault::point("leaf-after-file");
        let mut batch = sled::Batch::default();
        for leaf in leaves {
            let nodes: Vec<StoredNode> = f.append(leaf.hash())?;
            for n in nodes {
                batch.insert(node_key(n.level, n.index).as_slice(), n.hash.as_slice());
            }
        }
        batch.insert(LOG_SIZE, f.size().to_be_bytes().as_slice());
        self.log.apply_batch(batch)?;
        Ok(first)
    }

    /// Number of leaves in the index's tree.
    ///
    /// # Errors
    /// sled errors; a size that does not decode.
    pub(super) fn stored_size(&self) -> Result<u64, DbError> {
        Ok(match self.log.get(LOG_SIZE)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| DbError::Corrupt("log size".into()))?,
            ),
            None => 0,
        })
    }

    /// The stored hash of the full subtree at `(level, index)`.
    ///
    /// # Errors
    /// sled errors; [`MerkleError::NodeUnavailable`] for a node not stored.
    pub(super) fn stored_node(&self, level: u8, index: u64) -> Result<Hash32, DbError> {
        match self.log.get(node_key(level, index))? {
            Some(v) => v
                .as_ref()
                .try_into()
                .map_err(|_| DbError::Corrupt("log node is not 32 bytes".into())),
            None => Err(MerkleError::NodeUnavailable { level, index }.into()),
        }
    }

    fn frontier(&self) -> Result<Frontier, DbError> {
        // Size first: nodes never change once stored, so a leaf appended
        // meanwhile cannot make this frontier inconsistent.
        let size = self.stored_size()?;
        Frontier::from_source(&|l, i| self.stored_node(l, i), size)
    }
}
