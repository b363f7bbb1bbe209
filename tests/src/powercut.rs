//! What the power-cut scenarios (tests/tests/powercut.rs) share: choosing
//! where to cut from the operations a first run counted, writing a file as a
//! test must on the model (durably, or the test's own edit is lost at the
//! next cut), and the tallies each scenario reports to
//! `FIELDSEAL_FAULT_LOG`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::lazyfs::{CutAt, Op};
use crate::relay::SplitMix;

/// Every exact cut the counted operations allow: for each (path class,
/// operation) the 1st … n-th, clean and torn, in a seeded order, at most
/// `budget` of them (all of them if there are fewer). Only paths under
/// `under` (the data folder's name in the mount) and the mount's root (the
/// folder that holds it: its fsync makes the data folder's own name durable).
pub fn exact_cuts(
    counts: &BTreeMap<(String, Op), u64>,
    under: &str,
    budget: usize,
    rng: &mut SplitMix,
) -> Vec<CutAt> {
    let mut all = Vec::new();
    for ((path, op), n) in counts {
        if !(path.is_empty() || path == under || path.starts_with(&format!("{under}/"))) {
            continue;
        }
        for i in 1..=*n {
            for torn in [false, true] {
                // A torn fsync of a folder is a clean one: folders are not torn.
                if torn && *op == Op::Fsync && !counts.contains_key(&(path.clone(), Op::Write)) {
                    continue;
                }
                all.push(CutAt {
                    path: path.clone(),
                    op: *op,
                    n: i,
                    torn,
                    seed: rng.next_u64(),
                });
            }
        }
    }
    // Fisher–Yates with the scenario's randomness, then the budget.
    for i in (1..all.len()).rev() {
        let j = usize::try_from(rng.next_u64() % (i as u64 + 1)).unwrap_or(0);
        all.swap(i, j);
    }
    all.truncate(budget);
    all
}

/// One exact cut among the operations counted so far: a (path, operation)
/// chosen uniformly, then which one of them, clean or torn.
pub fn one_exact_cut(
    counts: &BTreeMap<(String, Op), u64>,
    under: &str,
    rng: &mut SplitMix,
) -> Option<CutAt> {
    let keys: Vec<_> = counts
        .iter()
        .filter(|((p, _), n)| p.starts_with(&format!("{under}/")) && **n > 0)
        .collect();
    if keys.is_empty() {
        return None;
    }
    let ((path, op), n) = keys[usize::try_from(rng.next_u64() % keys.len() as u64).unwrap_or(0)];
    Some(CutAt {
        path: path.clone(),
        op: *op,
        n: 1 + rng.next_u64() % n,
        torn: rng.next_u64() % 2 == 0,
        seed: rng.next_u64(),
    })
}

/// Merge the counts of one run into the counts of all runs (the largest
/// count seen of each path and operation).
pub fn merge_counts(into: &mut BTreeMap<(String, Op), u64>, run: &BTreeMap<(String, Op), u64>) {
    for (k, n) in run {
        let e = into.entry(k.clone()).or_insert(0);
        *e = (*e).max(*n);
    }
}

/// Write `bytes` to `path` and make it durable (the file, then its folder):
/// a test's own edit of a file on the model, which a plain write would lose
/// at the next cut.
///
/// # Panics
/// On an I/O error.
pub fn write_durable(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .expect("fsync");
    std::fs::File::open(path.parent().expect("a folder"))
        .and_then(|f| f.sync_all())
        .expect("fsync folder");
}

/// What one scenario did, for its line in `FIELDSEAL_FAULT_LOG` and the
/// rows of docs/RELIABILITY.md.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Cuts at an exact write or fsync.
    pub exact: u64,
    /// Cuts at a random moment.
    pub random: u64,
    /// Of all cuts, how many tore a write.
    pub torn: u64,
    /// Armed cuts the run never reached (cut at the moment it gave up instead).
    pub unreached: u64,
}

impl Tally {
    /// Count one cut.
    pub fn add(&mut self, exact: bool, torn: bool) {
        if exact {
            self.exact += 1;
        } else {
            self.random += 1;
        }
        if torn {
            self.torn += 1;
        }
    }

    /// All cuts.
    pub fn cuts(&self) -> u64 {
        self.exact + self.random
    }

    /// The figures as `Scenario::record` extras, `side` being `agent` or
    /// `server` (whose folder was cut).
    pub fn extras(&self, side: &str) -> Vec<(&'static str, String)> {
        vec![
            ("folder", side.to_string()),
            ("power_cuts", self.cuts().to_string()),
            ("exact_cuts", self.exact.to_string()),
            ("random_cuts", self.random.to_string()),
            ("torn_cuts", self.torn.to_string()),
            ("clean_cuts", (self.cuts() - self.torn).to_string()),
            ("unreached_cuts", self.unreached.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_cuts_cover_every_counted_operation_within_the_budget() {
        let counts = BTreeMap::from([
            (("a/key".to_string(), Op::Write), 2),
            (("a/key".to_string(), Op::Fsync), 1),
            (("a".to_string(), Op::Fsync), 1),
            (("other/x".to_string(), Op::Write), 5),
        ]);
        let all = exact_cuts(&counts, "a", 100, &mut SplitMix(1));
        // 2 writes and 1 fsync of a/key, clean and torn; the folder's fsync clean only.
        assert_eq!(all.len(), 7, "{all:?}");
        assert!(all.iter().all(|c| c.path.starts_with('a')));
        assert_eq!(exact_cuts(&counts, "a", 3, &mut SplitMix(1)).len(), 3);
    }
}
