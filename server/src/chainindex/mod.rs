//! What the server indexes about each device's chain: the head it holds,
//! the accepted entries with their receipts, whose media is held, and the
//! transparency log those entries are leaves of.
//!
//! [`ChainIndex`] is that part of the index, and no more, so that ingest can
//! be driven without sled: [`crate::db::Db`] implements it over sled trees,
//! [`MemIndex`] is the in-memory twin for tests and simulations, and the
//! [`conformance`] checks run against both (as `blobstore.rs` does for blobs).
//!
//! The contract every implementation keeps:
//! - methods named `*_unflushed` change what later reads see at once, but
//!   only [`ChainIndex::flush`] (or a method documented as flushing) makes
//!   them durable; a crash keeps a prefix of the unflushed writes, in the
//!   order they were made (sled's recovery), never a later write without an
//!   earlier one;
//! - "media missing" is derived, never set directly: an accepted entry that
//!   names media is missing until its media is marked held, and again once
//!   it is forgotten;
//! - an index record that does not decode is [`IndexError::Corrupt`], never
//!   taken for "absent";
//! - the transparency log is the exception to "unflushed": leaves appended
//!   are durable when [`ChainIndex::log_append_many`] returns (the sled
//!   index writes them to `leaves.log` and fsyncs it first, and catches its
//!   tree up from that file at open), so a crash never loses a leaf that a
//!   receipt may name; the log only grows, and leaf `i` keeps its index.
//!
//! What it does not hold: devices, tokens and users (`db/devices.rs`).
//! Rebuilding the log's tree from `leaves.log` (`reindex`) and the leaf
//! log's refusal of appends after a failed fsync stay with the sled index:
//! they are about that file, not about what the state machines ask.

use std::collections::BTreeMap;
use std::fmt;

use fieldseal_proto::entry::ChainHead;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle::{self, Frontier, MerkleError};

use crate::ingest::AcceptedEntry;

pub mod conformance;
mod mem;

pub use mem::MemIndex;

/// Errors of a [`ChainIndex`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The store under the index failed (sled, a disk).
    #[error("index: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored record did not decode.
    #[error("index record: {0}")]
    Corrupt(String),
    /// The transparency log refused: a node it does not hold (a size or
    /// index beyond the log), sizes out of order, a full tree.
    #[error("log: {0}")]
    Log(#[from] MerkleError),
}

/// Who refers to each blob: the (device, seq) of every accepted segment
/// entry, by media hash.
pub type MediaRefs = BTreeMap<Hash32, Vec<(DeviceId, u64)>>;

/// The chain part of the server's index. See the module doc for the
/// contract every implementation keeps.
pub trait ChainIndex: Send + Sync + fmt::Debug {
    /// The chain head the server holds for a device: [`ChainHead::GENESIS`]
    /// for a device that has no accepted entry.
    ///
    /// # Errors
    /// As [`ChainIndex::head_and_log_len`].
    fn head(&self, device: DeviceId) -> Result<ChainHead, IndexError> {
        Ok(self.head_and_log_len(device)?.0)
    }

    /// The chain head and the length of the device's chain log that holds
    /// exactly the entries before it (bytes past it were appended by an
    /// acceptance that crashed before it was indexed, and are cut off).
    /// `(GENESIS, 0)` for a device with no accepted entry.
    ///
    /// # Errors
    /// The store failed; a stored head does not decode.
    fn head_and_log_len(&self, device: DeviceId) -> Result<(ChainHead, u64), IndexError>;

    /// Set a device's chain head and chain log length, unflushed.
    ///
    /// # Errors
    /// The store failed.
    fn put_head_unflushed(
        &self,
        device: DeviceId,
        head: ChainHead,
        log_len: u64,
    ) -> Result<(), IndexError>;

    /// The accepted entry `seq` of a device, `None` if not accepted.
    ///
    /// # Errors
    /// The store failed; the record does not decode.
    fn entry(&self, device: DeviceId, seq: u64) -> Result<Option<AcceptedEntry>, IndexError>;

    /// Record an accepted entry, unflushed (replacing a record of the same
    /// seq). If it names media that is not held, the seq becomes missing.
    /// Several entries and then one head, then one flush, is a group commit.
    ///
    /// # Errors
    /// The store failed.
    fn put_entry_unflushed(
        &self,
        device: DeviceId,
        seq: u64,
        a: &AcceptedEntry,
    ) -> Result<(), IndexError>;

    /// Record an accepted entry, then the new head with the chain log's
    /// length, then flush. The chain log on disk is already written and
    /// fsynced by then. A crash leaves either both or the entry record alone
    /// (then the entry is simply accepted again).
    ///
    /// # Errors
    /// The store failed.
    fn put_accepted(
        &self,
        device: DeviceId,
        seq: u64,
        a: &AcceptedEntry,
        head: ChainHead,
        log_len: u64,
    ) -> Result<(), IndexError> {
        self.put_entry_unflushed(device, seq, a)?;
        self.put_head_unflushed(device, head, log_len)?;
        self.flush()
    }

    /// Does the server hold the verified media of this entry?
    ///
    /// # Errors
    /// The store failed.
    fn has_media(&self, device: DeviceId, seq: u64) -> Result<bool, IndexError>;

    /// Mark the media of an entry held (after the blob is durable), and no
    /// longer missing; unflushed: the blob is the durable fact, and a start
    /// notes again what a crash lost (`reindex::reconcile_media`).
    ///
    /// # Errors
    /// The store failed.
    fn put_media_unflushed(&self, device: DeviceId, seq: u64) -> Result<(), IndexError>;

    /// [`ChainIndex::put_media_unflushed`], then flush.
    ///
    /// # Errors
    /// The store failed.
    fn put_media(&self, device: DeviceId, seq: u64) -> Result<(), IndexError> {
        self.put_media_unflushed(device, seq)?;
        self.flush()
    }

    /// Forget that the media of an entry is held (a scrub found its bytes
    /// damaged), then flush: an accepted entry's seq is missing again, and
    /// asked for in the device's next `Welcome.resend_media`.
    ///
    /// # Errors
    /// The store failed.
    fn forget_media(&self, device: DeviceId, seq: u64) -> Result<(), IndexError>;

    /// Every accepted segment entry of every device, by media hash.
    ///
    /// # Errors
    /// The store failed; a record does not decode.
    fn media_refs(&self) -> Result<MediaRefs, IndexError>;

    /// Every (device, seq) whose media is missing, in (device, seq) order.
    ///
    /// # Errors
    /// The store failed.
    fn missing_all(&self) -> Result<Vec<(DeviceId, u64)>, IndexError>;

    /// The seqs of one device whose media is missing, oldest first, at most
    /// `max`.
    ///
    /// # Errors
    /// The store failed.
    fn missing_media(&self, device: DeviceId, max: usize) -> Result<Vec<u64>, IndexError>;

    /// Make every write so far durable.
    ///
    /// # Errors
    /// The store failed; what was written may then be lost in a crash.
    fn flush(&self) -> Result<(), IndexError>;

    /// Append leaves to the transparency log, in order, durably (see the
    /// module doc), with one sync for all of them (group commit). Returns
    /// the index of the first. Appends from several threads are serialised.
    ///
    /// # Errors
    /// The store failed. The leaves may then be durable without their tree:
    /// the caller must not append again before the index is reopened (the
    /// server refuses ingest until a restart rolls forward).
    fn log_append_many(&self, leaves: &[Leaf]) -> Result<u64, IndexError>;

    /// [`ChainIndex::log_append_many`] of one leaf. Returns its index.
    ///
    /// # Errors
    /// As [`ChainIndex::log_append_many`].
    fn log_append(&self, leaf: &Leaf) -> Result<u64, IndexError> {
        self.log_append_many(std::slice::from_ref(leaf))
    }

    /// Number of leaves in the log.
    ///
    /// # Errors
    /// The store failed; the stored size does not decode.
    fn log_size(&self) -> Result<u64, IndexError>;

    /// The hash of the full subtree at `(level, index)` (level 0: the leaf
    /// hash of leaf `index`).
    ///
    /// # Errors
    /// The store failed; [`MerkleError::NodeUnavailable`] for a node not
    /// (yet) in the log.
    fn log_node(&self, level: u8, index: u64) -> Result<Hash32, IndexError>;

    /// Size and root of the log, read together (one consistent tree head).
    ///
    /// # Errors
    /// As [`ChainIndex::log_node`].
    fn log_head(&self) -> Result<(u64, Hash32), IndexError> {
        // Size first: nodes never change once stored, so a leaf appended
        // meanwhile cannot make this frontier inconsistent.
        let size = self.log_size()?;
        let f = Frontier::from_source(&|l, i| self.log_node(l, i), size)?;
        Ok((f.size(), f.root()))
    }

    /// The root of the whole log.
    ///
    /// # Errors
    /// As [`ChainIndex::log_node`].
    fn log_root(&self) -> Result<Hash32, IndexError> {
        Ok(self.log_head()?.1)
    }

    /// The root of the first `size` leaves.
    ///
    /// # Errors
    /// As [`ChainIndex::log_node`]; a size beyond the log.
    fn log_root_at(&self, size: u64) -> Result<Hash32, IndexError> {
        merkle::root_from(&|l, i| self.log_node(l, i), size)
    }

    /// Inclusion proof of leaf `index` in the tree of the first `size` leaves.
    ///
    /// # Errors
    /// As [`ChainIndex::log_node`]; `index >= size`; a size beyond the log.
    fn log_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash32>, IndexError> {
        merkle::inclusion_proof_from(&|l, i| self.log_node(l, i), index, size)
    }

    /// Consistency proof from the first `old` leaves to the first `new`.
    ///
    /// # Errors
    /// As [`ChainIndex::log_node`]; `old > new`; a size beyond the log.
    fn log_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash32>, IndexError> {
        merkle::consistency_proof_from(&|l, i| self.log_node(l, i), old, new)
    }
}
