//! [`MemIndex`]: the in-memory twin of the sled index's chain part, with
//! sled's durability model: writes are seen at once, made durable by a
//! flush, and a simulated crash ([`MemIndex::crash`]) keeps a prefix of the
//! unflushed ones. Log leaves are durable on return, as `leaves.log` is,
//! and a crash keeps them all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use fieldseal_proto::entry::ChainHead;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle::{Frontier, MerkleError};

use super::{ChainIndex, IndexError, MediaRefs};
use crate::ingest::AcceptedEntry;

/// The chain index in memory. Cloning a state is cheap enough for tests;
/// nothing here is tuned for size.
#[derive(Debug, Default)]
pub struct MemIndex {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// What a crash right now would keep for sure.
    durable: State,
    /// Writes since the last flush, in order; `live` is `durable` with them.
    unflushed: Vec<Op>,
    live: State,
    log: Log,
}

/// The transparency log: its tree's nodes and right edge. The leaf data is
/// not kept: nothing in the trait reads it back.
#[derive(Debug, Default)]
struct Log {
    nodes: BTreeMap<(u8, u64), Hash32>,
    frontier: Frontier,
}

#[derive(Debug, Default, Clone)]
struct State {
    heads: BTreeMap<DeviceId, (ChainHead, u64)>,
    entries: BTreeMap<(DeviceId, u64), AcceptedEntry>,
    media: BTreeSet<(DeviceId, u64)>,
}

/// One write, as sled would log it.
#[derive(Debug, Clone)]
enum Op {
    Head(DeviceId, ChainHead, u64),
    Entry(DeviceId, u64, AcceptedEntry),
    Media(DeviceId, u64),
    Forget(DeviceId, u64),
}

impl State {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Head(d, h, l) => {
                self.heads.insert(*d, (*h, *l));
            }
            Op::Entry(d, s, a) => {
                self.entries.insert((*d, *s), a.clone());
            }
            Op::Media(d, s) => {
                self.media.insert((*d, *s));
            }
            Op::Forget(d, s) => {
                self.media.remove(&(*d, *s));
            }
        }
    }

    /// Missing is derived: an entry with media whose media is not held.
    fn missing(&self) -> impl Iterator<Item = (DeviceId, u64)> + '_ {
        self.entries
            .iter()
            .filter(|(k, a)| a.media.is_some() && !self.media.contains(k))
            .map(|(k, _)| *k)
    }
}

impl MemIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A test that panicked mid-write leaves whole values behind: every
        // write below is a single insert or remove.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, op: Op) {
        let mut g = self.lock();
        g.live.apply(&op);
        g.unflushed.push(op);
    }

    /// How many writes a crash now could lose.
    pub fn unflushed(&self) -> usize {
        self.lock().unflushed.len()
    }

    /// Simulate a crash and restart: keep what was flushed and the first
    /// `keep` unflushed writes (fewer if there are fewer), lose the rest.
    pub fn crash(&self, keep: usize) {
        let mut g = self.lock();
        let mut state = g.durable.clone();
        let ops = std::mem::take(&mut g.unflushed);
        for op in ops.iter().take(keep) {
            state.apply(op);
        }
        g.durable = state.clone();
        g.live = state;
    }
}

impl ChainIndex for MemIndex {
    fn head_and_log_len(&self, device: DeviceId) -> Result<(ChainHead, u64), IndexError> {
        Ok(self
            .lock()
            .live
            .heads
            .get(&device)
            .copied()
            .unwrap_or((ChainHead::GENESIS, 0)))
    }

    fn put_head_unflushed(
        &self,
        device: DeviceId,
        head: ChainHead,
        log_len: u64,
    ) -> Result<(), IndexError> {
        self.write(Op::Head(device, head, log_len));
        Ok(())
    }

    fn entry(&self, device: DeviceId, seq: u64) -> Result<Option<AcceptedEntry>, IndexError> {
        Ok(self.lock().live.entries.get(&(device, seq)).cloned())
    }

    fn put_entry_unflushed(
        &self,
        device: DeviceId,
        seq: u64,
        a: &AcceptedEntry,
    ) -> Result<(), IndexError> {
        self.write(Op::Entry(device, seq, a.clone()));
        Ok(())
    }

    fn has_media(&self, device: DeviceId, seq: u64) -> Result<bool, IndexError> {
        Ok(self.lock().live.media.contains(&(device, seq)))
    }

    fn put_media_unflushed(&self, device: DeviceId, seq: u64) -> Result<(), IndexError> {
        self.write(Op::Media(device, seq));
        Ok(())
    }

    fn forget_media(&self, device: DeviceId, seq: u64) -> Result<(), IndexError> {
        self.write(Op::Forget(device, seq));
        self.flush()
    }

    fn media_refs(&self) -> Result<MediaRefs, IndexError> {
        let g = self.lock();
        let mut out = MediaRefs::new();
        for ((d, s), a) in &g.live.entries {
            if let Some((h, _)) = a.media {
                out.entry(h).or_default().push((*d, *s));
            }
        }
        Ok(out)
    }

    fn missing_all(&self) -> Result<Vec<(DeviceId, u64)>, IndexError> {
        Ok(self.lock().live.missing().collect())
    }

    fn missing_media(&self, device: DeviceId, max: usize) -> Result<Vec<u64>, IndexError> {
        Ok(self
            .lock()
            .live
            .missing()
            .filter(|(d, _)| *d == device)
            .map(|(_, s)| s)
            .take(max)
            .collect())
    }

    fn flush(&self) -> Result<(), IndexError> {
        let mut g = self.lock();
        g.unflushed.clear();
        g.durable = g.live.clone();
        Ok(())
    }

    fn log_append_many(&self, leaves: &[Leaf]) -> Result<u64, IndexError> {
        let mut g = self.lock();
        // Extend a copy: a leaf the tree refuses (a full tree) leaves the
        // log as it was, as the sled index's failed append does.
        let mut f = g.log.frontier.clone();
        let first = f.size();
        let mut nodes = Vec::new();
        for leaf in leaves {
            nodes.extend(f.append(leaf.hash())?);
        }
        for n in nodes {
            g.log.nodes.insert((n.level, n.index), n.hash);
        }
        g.log.frontier = f;
        Ok(first)
    }

    fn log_size(&self) -> Result<u64, IndexError> {
        Ok(self.lock().log.frontier.size())
    }

    fn log_node(&self, level: u8, index: u64) -> Result<Hash32, IndexError> {
        match self.lock().log.nodes.get(&(level, index)) {
            Some(h) => Ok(*h),
            None => Err(MerkleError::NodeUnavailable { level, index }.into()),
        }
    }
}
