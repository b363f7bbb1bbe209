//! Ingest: the server's decisions about submitted entries and uploads, as
//! sans-IO state machines (STYLE.md item 4), and the blocking executor that
//! carries them out.
//!
//! - `entry.rs`: one entry's check ([`Ingest`], [`Decision`]).
//! - `batch.rs`: a group of entries decided together ([`IngestBatch`]) into a
//!   [`CommitPlan`]: chain-log records and leaves per device, equivocation
//!   evidence, answers.
//! - `upload.rs`: what to answer an upload ([`UploadPlan`]) from the
//!   accepted entry and what the store holds.
//! - `exec.rs`: the executor, the only part here that touches files, the
//!   index or the clock: it applies a commit plan (chain logs fsynced, then
//!   the leaves once, then the index flushed once), signs receipts, stops
//!   ingest when a failure leaves the log ahead of the index, and applies
//!   upload repairs.
//!
//! The state machines read the index through [`IndexView`] and the store
//! through [`SegmentStore`], so they are tested without sled, files, sockets
//! or time. What it does not do: move bytes on the network (`quic/`).

mod batch;
mod entry;
mod exec;
mod upload;

use fieldseal_proto::entry::ChainHead;
use fieldseal_proto::identity::DeviceId;

use crate::chainindex::{ChainIndex, IndexError};

pub use batch::{Accepted, Answer, CommitPlan, DevicePlan, IngestBatch};
pub use entry::{AcceptedEntry, Decision, Ingest};
pub use exec::{answers, submit_blocking, submit_group_at, submit_group_blocking};
pub(crate) use exec::{commit_upload, internal, settle_query};
pub use upload::{
    check_begin, check_complete, expect_begin, expect_query, plan_query, Completion, Refusal,
    SegmentStore, UploadPlan,
};

/// What the ingest state machines read of the index. Kept to the two
/// lookups a group needs, so that a fuller index trait can include it.
pub trait IndexView {
    /// Why a lookup failed.
    type Error: std::fmt::Display;

    /// A device's chain head and the length of its chain log that holds
    /// exactly the entries before it.
    ///
    /// # Errors
    /// The index failed.
    fn head_and_log_len(&self, device: DeviceId) -> Result<(ChainHead, u64), Self::Error>;

    /// An accepted entry.
    ///
    /// # Errors
    /// The index failed.
    fn entry(&self, device: DeviceId, seq: u64) -> Result<Option<AcceptedEntry>, Self::Error>;
}

/// Every [`ChainIndex`] (the sled index, its in-memory twin) is a view.
impl<T: ChainIndex + ?Sized> IndexView for T {
    type Error = IndexError;

    fn head_and_log_len(&self, device: DeviceId) -> Result<(ChainHead, u64), IndexError> {
        ChainIndex::head_and_log_len(self, device)
    }

    fn entry(&self, device: DeviceId, seq: u64) -> Result<Option<AcceptedEntry>, IndexError> {
        ChainIndex::entry(self, device, seq)
    }
}

/// A group commit failed; its accepted entries are answered `Internal`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommitError {
    /// A chain log could not be appended to (nothing of the group is
    /// published: the entries are simply accepted again later).
    #[error("chain log: {0}")]
    ChainLog(#[source] crate::storage::StorageError),
    /// The transparency log or the index failed after the chain logs were
    /// written; ingest is stopped until a restart rolls forward.
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Carrying out an upload step failed (the index or the file system).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The upload-time record failed.
    #[error(transparent)]
    Records(#[from] crate::db::DbError),
    /// A partial file or the blob store failed.
    #[error("upload store: {0}")]
    Io(#[from] std::io::Error),
    /// The upload plan kept asking for repairs: a bug, not a reason to spin.
    #[error("upload query of seq {0} did not settle")]
    Unsettled(u64),
}
