//! Checks every [`ChainIndex`] must pass. Each takes a fresh, empty index
//! and panics with a message on failure; [`run_all`] runs them all.

use fieldseal_proto::entry::ChainHead;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle::{self, MerkleError};

use super::{ChainIndex, IndexError};
use crate::ingest::AcceptedEntry;

const A: DeviceId = DeviceId([1; 8]);
/// Sorts after `A`, and shares no key prefix with it.
const B: DeviceId = DeviceId([2; 8]);

fn accepted(seq: u64, media: Option<Hash32>) -> AcceptedEntry {
    AcceptedEntry {
        entry_hash: [u8::try_from(seq % 251).expect("below 251"); 32],
        media: media.map(|h| (h, 1000 + seq)),
        receipt: vec![7; 129],
    }
}

/// A device never seen has the genesis head and an empty log; a head put is
/// read back, per device.
pub fn heads(ix: &dyn ChainIndex) {
    assert_eq!(ix.head_and_log_len(A).unwrap(), (ChainHead::GENESIS, 0));
    assert_eq!(ix.head(A).unwrap(), ChainHead::GENESIS);
    let h = ChainHead {
        next_seq: 3,
        last_hash: [9; 32],
    };
    ix.put_head_unflushed(A, h, 321).unwrap();
    assert_eq!(ix.head_and_log_len(A).unwrap(), (h, 321), "read back");
    assert_eq!(ix.head(A).unwrap(), h);
    assert_eq!(
        ix.head_and_log_len(B).unwrap(),
        (ChainHead::GENESIS, 0),
        "another device's head changed"
    );
    let h2 = ChainHead {
        next_seq: 4,
        last_hash: [8; 32],
    };
    ix.put_head_unflushed(A, h2, 400).unwrap();
    ix.flush().unwrap();
    assert_eq!(ix.head_and_log_len(A).unwrap(), (h2, 400), "replaced");
}

/// Entries are read back as put, per (device, seq); a segment's media is
/// missing until it is held.
pub fn entries_and_missing(ix: &dyn ChainIndex) {
    assert_eq!(ix.entry(A, 0).unwrap(), None);
    let event = accepted(0, None);
    let seg = accepted(1, Some([1; 32]));
    ix.put_entry_unflushed(A, 0, &event).unwrap();
    ix.put_entry_unflushed(A, 1, &seg).unwrap();
    assert_eq!(ix.entry(A, 0).unwrap(), Some(event));
    assert_eq!(ix.entry(A, 1).unwrap(), Some(seg.clone()));
    assert_eq!(ix.entry(B, 1).unwrap(), None, "seen under another device");
    assert_eq!(ix.entry(A, 2).unwrap(), None);
    assert!(!ix.has_media(A, 1).unwrap());
    assert_eq!(
        ix.missing_media(A, 10).unwrap(),
        vec![1],
        "event is missing"
    );
    assert_eq!(ix.missing_all().unwrap(), vec![(A, 1)]);
    assert!(ix.missing_media(B, 10).unwrap().is_empty());
    ix.flush().unwrap();
    assert_eq!(ix.entry(A, 1).unwrap(), Some(seg));
}

/// `put_accepted` is an entry and a head together.
pub fn put_accepted_sets_both(ix: &dyn ChainIndex) {
    let a = accepted(0, Some([3; 32]));
    let head = ChainHead {
        next_seq: 1,
        last_hash: a.entry_hash,
    };
    ix.put_accepted(B, 0, &a, head, 77).unwrap();
    assert_eq!(ix.entry(B, 0).unwrap(), Some(a));
    assert_eq!(ix.head_and_log_len(B).unwrap(), (head, 77));
    assert_eq!(ix.missing_media(B, 10).unwrap(), vec![0]);
}

/// Held media is no longer missing; forgotten media of an entry is missing
/// again; media of a seq with no entry is held but never missing.
pub fn media_held_and_forgotten(ix: &dyn ChainIndex) {
    ix.put_entry_unflushed(A, 5, &accepted(5, Some([5; 32])))
        .unwrap();
    ix.put_media(A, 5).unwrap();
    assert!(ix.has_media(A, 5).unwrap());
    assert!(ix.missing_all().unwrap().is_empty(), "held yet missing");
    ix.forget_media(A, 5).unwrap();
    assert!(!ix.has_media(A, 5).unwrap());
    assert_eq!(ix.missing_media(A, 10).unwrap(), vec![5]);
    ix.put_media_unflushed(A, 5).unwrap();
    assert!(ix.has_media(A, 5).unwrap());
    assert!(ix.missing_media(A, 10).unwrap().is_empty());

    // Media before its entry is indexed (reindex order): held, not missing,
    // and an entry put afterwards is not missing either.
    ix.put_media_unflushed(B, 9).unwrap();
    assert!(ix.has_media(B, 9).unwrap());
    assert!(ix.missing_media(B, 10).unwrap().is_empty());
    ix.put_entry_unflushed(B, 9, &accepted(9, Some([9; 32])))
        .unwrap();
    assert!(ix.missing_media(B, 10).unwrap().is_empty());
    // Forgetting media of a seq with no entry makes nothing missing.
    ix.put_media_unflushed(B, 11).unwrap();
    ix.forget_media(B, 11).unwrap();
    assert!(!ix.has_media(B, 11).unwrap());
    assert!(ix.missing_media(B, 20).unwrap().is_empty());
}

/// Missing seqs come oldest first (numerically, not as text), per device,
/// at most `max`; `missing_all` is in (device, seq) order.
pub fn missing_order_and_bound(ix: &dyn ChainIndex) {
    for seq in [300u64, 2, 256, 1, 40] {
        ix.put_entry_unflushed(B, seq, &accepted(seq, Some([2; 32])))
            .unwrap();
    }
    ix.put_entry_unflushed(A, 7, &accepted(7, Some([7; 32])))
        .unwrap();
    assert_eq!(ix.missing_media(B, 10).unwrap(), vec![1, 2, 40, 256, 300]);
    assert_eq!(ix.missing_media(B, 2).unwrap(), vec![1, 2]);
    assert!(ix.missing_media(B, 0).unwrap().is_empty());
    assert_eq!(
        ix.missing_all().unwrap(),
        vec![(A, 7), (B, 1), (B, 2), (B, 40), (B, 256), (B, 300)]
    );
}

/// `media_refs` names every segment entry by its media hash, in (device,
/// seq) order; entries without media are not in it.
pub fn media_refs_groups_by_hash(ix: &dyn ChainIndex) {
    assert!(ix.media_refs().unwrap().is_empty());
    let shared = [4; 32];
    ix.put_entry_unflushed(B, 3, &accepted(3, Some(shared)))
        .unwrap();
    ix.put_entry_unflushed(A, 8, &accepted(8, Some(shared)))
        .unwrap();
    ix.put_entry_unflushed(A, 9, &accepted(9, Some([6; 32])))
        .unwrap();
    ix.put_entry_unflushed(A, 10, &accepted(10, None)).unwrap();
    // Held or not, an entry refers to its blob.
    ix.put_media(A, 9).unwrap();
    let refs = ix.media_refs().unwrap();
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[&shared], vec![(A, 8), (B, 3)]);
    assert_eq!(refs[&[6; 32]], vec![(A, 9)]);
}

/// Readers and writers on several threads at once: every write is seen.
pub fn concurrent_writers(ix: &dyn ChainIndex) {
    std::thread::scope(|t| {
        for i in 0..4u8 {
            t.spawn(move || {
                let d = DeviceId([10 + i; 8]);
                for seq in 0..50 {
                    ix.put_entry_unflushed(d, seq, &accepted(seq, Some([i; 32])))
                        .unwrap();
                    if seq % 2 == 0 {
                        ix.put_media_unflushed(d, seq).unwrap();
                    }
                    assert!(ix.entry(d, seq).unwrap().is_some());
                }
                ix.flush().unwrap();
            });
        }
    });
    for i in 0..4u8 {
        let d = DeviceId([10 + i; 8]);
        let want: Vec<u64> = (0..50).filter(|s| s % 2 == 1).collect();
        assert_eq!(ix.missing_media(d, 100).unwrap(), want);
    }
}

fn leaf(seq: u64) -> Leaf {
    Leaf::Entry {
        device: A,
        seq,
        entry_hash: [u8::try_from(seq % 251).expect("below 251"); 32],
        server_time_us: 1_000 + i64::try_from(seq).expect("small"),
    }
}

/// Leaves get consecutive indexes; roots, inclusion and consistency proofs
/// check against the RFC 9162 tree of the same leaves, at every size.
pub fn log_appends_and_proofs(ix: &dyn ChainIndex) {
    assert_eq!(ix.log_size().unwrap(), 0);
    assert_eq!(ix.log_head().unwrap(), (0, merkle::empty_root()));
    let leaves: Vec<Leaf> = (0..11).map(leaf).collect();
    assert_eq!(ix.log_append(&leaves[0]).unwrap(), 0);
    assert_eq!(ix.log_append_many(&leaves[1..4]).unwrap(), 1);
    assert_eq!(ix.log_append_many(&[]).unwrap(), 4, "empty append");
    assert_eq!(ix.log_append_many(&leaves[4..]).unwrap(), 4);
    assert_eq!(ix.log_size().unwrap(), 11);
    let hashes: Vec<Hash32> = leaves.iter().map(Leaf::hash).collect();
    assert_eq!(ix.log_head().unwrap(), (11, merkle::root(&hashes)));
    assert_eq!(ix.log_root().unwrap(), merkle::root(&hashes));
    for size in 1..=11u64 {
        let n = usize::try_from(size).expect("small");
        let root = ix.log_root_at(size).unwrap();
        assert_eq!(root, merkle::root(&hashes[..n]), "root at {size}");
        for i in 0..size {
            let ui = usize::try_from(i).expect("small");
            assert_eq!(ix.log_node(0, i).unwrap(), hashes[ui]);
            let p = ix.log_inclusion(i, size).unwrap();
            merkle::verify_inclusion(&hashes[ui], i, size, &p, &root)
                .unwrap_or_else(|e| panic!("inclusion of {i} in {size}: {e}"));
        }
        for old in 1..=size {
            let p = ix.log_consistency(old, size).unwrap();
            let old_root = ix.log_root_at(old).unwrap();
            merkle::verify_consistency(old, size, &old_root, &root, &p)
                .unwrap_or_else(|e| panic!("consistency {old} -> {size}: {e}"));
        }
    }
    assert!(matches!(
        ix.log_node(0, 11),
        Err(IndexError::Log(MerkleError::NodeUnavailable { .. }))
    ));
    assert!(ix.log_root_at(12).is_err(), "a root beyond the log");
    assert!(ix.log_inclusion(11, 11).is_err(), "index beyond size");
}

/// Appends from several threads get distinct, consecutive indexes.
pub fn log_concurrent_appends(ix: &dyn ChainIndex) {
    let firsts = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|t| {
        for i in 0..4u64 {
            let firsts = &firsts;
            t.spawn(move || {
                for k in 0..10 {
                    let l = [leaf(i * 100 + k), leaf(i * 100 + k + 50)];
                    let first = ix.log_append_many(&l).unwrap();
                    firsts.lock().unwrap().push(first);
                }
            });
        }
    });
    let mut firsts = firsts.into_inner().unwrap();
    firsts.sort_unstable();
    assert_eq!(firsts, (0..40).map(|k| k * 2).collect::<Vec<u64>>());
    assert_eq!(ix.log_size().unwrap(), 80);
    let (size, root) = ix.log_head().unwrap();
    assert_eq!((size, root), (80, ix.log_root_at(80).unwrap()));
}

/// Every check, each on a fresh index from `make`.
pub fn run_all(make: &dyn Fn() -> Box<dyn ChainIndex>) {
    heads(make().as_ref());
    entries_and_missing(make().as_ref());
    put_accepted_sets_both(make().as_ref());
    media_held_and_forgotten(make().as_ref());
    missing_order_and_bound(make().as_ref());
    media_refs_groups_by_hash(make().as_ref());
    concurrent_writers(make().as_ref());
    log_appends_and_proofs(make().as_ref());
    log_concurrent_appends(make().as_ref());
}

#[cfg(test)]
mod tests {
    use super::super::MemIndex;
    use super::*;

    #[test]
    fn mem_index_conforms() {
        run_all(&|| Box::new(MemIndex::new()));
    }

    #[test]
    fn mem_index_crash_keeps_flushed_writes_and_a_prefix() {
        let ix = MemIndex::new();
        let h = |n| ChainHead {
            next_seq: n,
            last_hash: [0; 32],
        };
        ix.put_accepted(A, 0, &accepted(0, None), h(1), 10).unwrap();
        ix.put_entry_unflushed(A, 1, &accepted(1, Some([1; 32])))
            .unwrap();
        ix.put_head_unflushed(A, h(2), 20).unwrap();
        assert_eq!(ix.unflushed(), 2);
        // The entry survives, its head does not: the entry is accepted again.
        ix.crash(1);
        assert_eq!(ix.unflushed(), 0);
        assert!(ix.entry(A, 1).unwrap().is_some());
        assert_eq!(ix.head_and_log_len(A).unwrap(), (h(1), 10));
        ix.put_media_unflushed(A, 1).unwrap();
        ix.crash(0);
        assert!(!ix.has_media(A, 1).unwrap());
        assert_eq!(ix.missing_media(A, 5).unwrap(), vec![1]);
        // Log leaves are durable on return: a crash keeps every one.
        ix.log_append_many(&[leaf(0), leaf(1)]).unwrap();
        let head = ix.log_head().unwrap();
        ix.crash(0);
        assert_eq!(ix.log_head().unwrap(), head);
    }

    /// A group commit writes its entries, then the head, then flushes (as
    /// the committer and `reindex` do). A crash after any prefix of those
    /// writes must leave a head no further than the entries it covers, and
    /// the flushed groups whole.
    #[test]
    fn group_commit_crash_at_every_write_keeps_the_head_behind_its_entries() {
        let groups: [u64; 4] = [1, 3, 2, 4];
        for crash_group in 0..groups.len() {
            for keep in 0..=usize::try_from(groups[crash_group]).unwrap() + 1 {
                let ix = MemIndex::new();
                let mut next = 0u64;
                for (g, n) in groups.iter().enumerate() {
                    for seq in next..next + n {
                        ix.put_entry_unflushed(A, seq, &accepted(seq, Some([1; 32])))
                            .unwrap();
                    }
                    next += n;
                    let head = ChainHead {
                        next_seq: next,
                        last_hash: accepted(next - 1, None).entry_hash,
                    };
                    ix.put_head_unflushed(A, head, next * 10).unwrap();
                    if g == crash_group {
                        ix.crash(keep);
                        break;
                    }
                    ix.flush().unwrap();
                }
                let (head, len) = ix.head_and_log_len(A).unwrap();
                assert_eq!(len, head.next_seq * 10, "head and log length torn");
                for seq in 0..head.next_seq {
                    assert!(
                        ix.entry(A, seq).unwrap().is_some(),
                        "group {crash_group}, keep {keep}: head {} without entry {seq}",
                        head.next_seq
                    );
                }
                let flushed: u64 = groups[..crash_group].iter().sum();
                assert!(head.next_seq >= flushed, "a flushed group was lost");
                assert_eq!(ix.unflushed(), 0);
            }
        }
    }
}
