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
    /// For each cut while the camera ran, the media it lost in ms: the
    /// capture clock at the cut minus the end of the media that survived it
    /// ([`loss_window_ms`]).
    pub loss_ms: Vec<u64>,
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
        let mut out = vec![
            ("folder", side.to_string()),
            ("power_cuts", self.cuts().to_string()),
            ("exact_cuts", self.exact.to_string()),
            ("random_cuts", self.random.to_string()),
            ("torn_cuts", self.torn.to_string()),
            ("clean_cuts", (self.cuts() - self.torn).to_string()),
            ("unreached_cuts", self.unreached.to_string()),
        ];
        if !self.loss_ms.is_empty() {
            let mut l = self.loss_ms.clone();
            l.sort_unstable();
            out.push(("loss_window_cuts", l.len().to_string()));
            out.push(("loss_window_ms_median", l[l.len() / 2].to_string()));
            out.push(("loss_window_ms_max", l[l.len() - 1].to_string()));
        }
        out
    }
}

/// The capture clock a run reported (`FIELDSEAL_CAPTURE_CLOCK`, the agent's
/// fault.rs): the 90 kHz end of the newest frame taken from the source, or
/// `None` if the camera had not started.
pub fn read_capture_clock(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The media a power cut lost, in ms: the capture clock at the cut
/// (`clock`, 90 kHz) minus the end of the durable media of `recording`: its
/// signed segments in `entries`, and what the next start salvages from
/// `DIR/media/.partial/` (a draft `N.json` whose `N.ts` is there or already
/// renamed into `media/`: its end; a live segment's sidecar `live-N.json`:
/// the end of its last progress line whose bytes the file holds). Media of
/// the recording's first segment starts at `first_pts`. Never negative.
pub fn loss_window_ms(
    dir: &Path,
    entries: &BTreeMap<u64, fieldseal_proto::entry::SignedEntry>,
    recording: Option<[u8; 16]>,
    clock: i64,
    first_pts: i64,
) -> u64 {
    let mut end = first_pts;
    if let Some(rec) = recording {
        for e in entries.values() {
            if let Some(s) = e.entry.segment() {
                if s.recording == rec {
                    end = end.max(s.end_pts);
                }
            }
        }
        end = end.max(salvageable_end(dir, rec).unwrap_or(first_pts));
    }
    u64::try_from((clock - end).max(0) * 1000 / fieldseal_proto::entry::PTS_HZ).unwrap_or(0)
}

/// The end of the media of `recording` that the next start salvages from
/// `.partial/` (see [`loss_window_ms`]).
fn salvageable_end(dir: &Path, recording: [u8; 16]) -> Option<i64> {
    let partial = dir.join("media/.partial");
    let mut end: Option<i64> = None;
    for item in std::fs::read_dir(&partial).ok()?.flatten() {
        let name = item.file_name().to_string_lossy().to_string();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let text = std::fs::read_to_string(item.path()).unwrap_or_default();
        let mut lines = text.lines();
        let Some(Ok(draft)) = lines.next().map(serde_json::from_str::<serde_json::Value>) else {
            continue;
        };
        let rec: Vec<u8> = serde_json::from_value(draft["recording"].clone()).unwrap_or_default();
        if rec != recording {
            continue;
        }
        let ts = partial.join(format!("{stem}.ts"));
        let ts_len = std::fs::metadata(&ts)
            .or_else(|_| std::fs::metadata(dir.join("media").join(format!("{stem}.ts"))))
            .map_or(0, |m| m.len());
        let stated = if stem.starts_with("live-") {
            // Progress lines: bytes made durable and the media they hold.
            lines
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|p| p["len"].as_u64().is_some_and(|n| n > 0 && n <= ts_len))
                .filter_map(|p| p["end_pts"].as_i64())
                .max()
        } else if ts_len > 0 {
            draft["end_pts"].as_i64()
        } else {
            None
        };
        end = end.max(stated);
    }
    end
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
