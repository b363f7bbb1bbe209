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
/// First key byte of the custody leaves' copies (node levels are below 64).
const CUSTODY_KEY: u8 = 0xC0;
/// Present once every custody leaf of the tree has its copy.
const CUSTODY_BUILT: &[u8] = b"custody-built";

fn custody_key(index: u64) -> [u8; 9] {
    node_key(CUSTODY_KEY, index)
}

/// Is this leaf data a custody leaf (type byte 2 after the prefix)?
fn is_custody(data: &[u8]) -> bool {
    data.get(fieldseal_proto::leaf::LEAF_PREFIX.len()) == Some(&2)
}

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
                if f.size() == 0 {
                    // Built from the first leaf on: every copy will be here.
                    batch.insert(CUSTODY_BUILT, &[]);
                }
                for leaf in chunk {
                    if is_custody(leaf) {
                        batch.insert(custody_key(f.size()).as_slice(), leaf.as_slice());
                    }
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
        for (leaf, data) in leaves.iter().zip(&data) {
            if matches!(leaf, Leaf::Custody { .. }) {
                batch.insert(custody_key(f.size()).as_slice(), data.as_slice());
            }
            let nodes: Vec<StoredNode> = f.append(leaf.hash())?;
            for n in nodes {
                batch.insert(node_key(n.level, n.index).as_slice(), n.hash.as_slice());
            }
        }
        batch.insert(LOG_SIZE, f.size().to_be_bytes().as_slice());
        self.log.apply_batch(batch)?;
        Ok(first)
    }

    /// Give the custody leaves of an index made before their copies were
    /// kept their copies (once: a marker says it is done). Called at open
    /// with the log lock held, after [`Db::catch_up_log`].
    pub(super) fn build_custody_once(&self) -> Result<(), DbError> {
        if self.log.contains_key(CUSTODY_BUILT)? {
            return Ok(());
        }
        let size = self.stored_size()?;
        let mut batch = sled::Batch::default();
        for (i, leaf) in (0..size).zip(self.leaves.read_from(0)?) {
            if is_custody(&leaf) {
                batch.insert(custody_key(i).as_slice(), leaf);
            }
        }
        batch.insert(CUSTODY_BUILT, &[]);
        self.log.apply_batch(batch)?;
        Ok(())
    }

    /// The custody leaves from index `from` on, oldest first, as (leaf
    /// index, leaf data): the access log without the entry leaves.
    pub fn custody_leaves(
        &self,
        from: u64,
    ) -> impl Iterator<Item = Result<(u64, Vec<u8>), DbError>> + '_ {
        self.log
            .range(custody_key(from)..=custody_key(u64::MAX))
            .map(|kv| {
                let (k, v) = kv?;
                let index = k
                    .get(1..)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| DbError::Corrupt("custody leaf key".into()))?;
                Ok((index, v.to_vec()))
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chainindex::ChainIndex;
    use fieldseal_proto::identity::DeviceId;
    use fieldseal_proto::leaf::CustodyAction;

    fn leaves() -> Vec<Leaf> {
        (0..7u8)
            .map(|i| match i % 3 {
                0 => Leaf::Custody {
                    time_us: i.into(),
                    action: CustodyAction::Login,
                    actor: format!("u{i}"),
                    device: DeviceId::NONE,
                    first_seq: 0,
                    last_seq: 0,
                    case: None,
                    detail: None,
                },
                _ => Leaf::Entry {
                    device: DeviceId([i; 8]),
                    seq: i.into(),
                    entry_hash: [i; 32],
                    server_time_us: 1,
                },
            })
            .collect()
    }

    fn custody(db: &Db, from: u64) -> Vec<(u64, Vec<u8>)> {
        db.custody_leaves(from).map(Result::unwrap).collect()
    }

    #[test]
    fn custody_leaves_are_copied_kept_through_a_rebuild_and_backfilled() {
        let d = tempfile::tempdir().unwrap();
        let db = Db::open(d.path()).unwrap();
        let all = leaves();
        db.log_append_many(&all[..4]).unwrap();
        db.log_append(&all[4]).unwrap();
        db.log_append_many(&all[5..]).unwrap();
        let want: Vec<(u64, Vec<u8>)> = [0usize, 3, 6]
            .iter()
            .map(|&i| (i as u64, Encode::to_bytes(&all[i])))
            .collect();
        assert_eq!(custody(&db, 0), want);
        assert_eq!(custody(&db, 4), want[2..]);
        db.clear_derived().unwrap();
        assert_eq!(custody(&db, 0), []);
        db.rebuild_log().unwrap();
        assert_eq!(custody(&db, 0), want, "rebuilt from leaves.log");
        // An index made before the copies were kept gets them at open.
        for i in [0, 3, 6] {
            db.log.remove(custody_key(i)).unwrap();
        }
        db.log.remove(CUSTODY_BUILT).unwrap();
        db.flush().unwrap();
        drop(db);
        let db = Db::open(d.path()).unwrap();
        assert_eq!(custody(&db, 0), want, "backfilled");
        assert_eq!(db.log_size().unwrap(), 7);
    }
}
