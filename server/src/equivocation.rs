//! The equivocation record of each device: a device that signs two
//! different entries with one seq is refused, and every such entry raises an
//! `ALARM` and is counted; but only the first `equivocations_kept`
//! (config.toml) are kept in full, so that a broken or hostile device cannot
//! fill the server's disk with them.
//!
//! ```text
//! DIR/devices/<id>/equivocations.log   the first refused entries, FORMAT.md §9 records, in arrival order
//! DIR/devices/<id>/equivocations.json  {"count","kept","first_us","last_us","last_seq","log_len"}
//! ```
//!
//! `count` is every refused conflicting entry, `kept` those the log holds,
//! `first_us` and `last_us` the server's time of the first and the latest,
//! `last_seq` the latest one's seq, `log_len` the length of the log the
//! summary accounts for (docs/FORMAT.md §9 has an example).
//!
//! The order of one [`Equivocations::record`] (the conflicting entries of
//! one device in one group commit): those under the cap are appended to the
//! log and fsynced, then the summary is replaced (temp, fsync, rename, fsync
//! folder); only then is the device answered and each alarm logged. A crash between the two writes leaves a
//! log longer than `log_len`: whoever reads it next counts the whole records
//! past `log_len` as kept and counted, and the next record cuts a torn one
//! off. Bytes past damage (a record length no record has) are never cut:
//! nothing more is appended after them, every later entry is only counted.
//!
//! What it does not do: decide what an equivocation is (`ingest/entry.rs`)
//! or log the alarm (`ingest/exec.rs`).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use fieldseal_proto::chainlog::{put_record, split_lossy};
use fieldseal_proto::identity::DeviceId;
use serde::{Deserialize, Serialize};

use crate::datadir::DataDir;
use crate::fsutil::{append_durable, create_dir_durable, replace_durable};

/// What the server knows of one device's equivocations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Summary {
    /// Conflicting entries refused, each with an alarm.
    pub count: u64,
    /// How many of them (the first ones) `equivocations.log` holds in full.
    pub kept: u64,
    /// Server time of the first one (µs since the epoch).
    pub first_us: Option<i64>,
    /// Server time of the latest one (µs).
    pub last_us: Option<i64>,
    /// The seq of the latest one.
    pub last_seq: Option<u64>,
}

/// `equivocations.json`: the summary and the log length it accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    summary: Summary,
    log_len: u64,
}

/// What the log holds past what the summary accounts for.
#[derive(Debug)]
struct LogState {
    /// The summary with the whole records past `log_len` counted in.
    stored: Stored,
    /// Bytes past the last whole record: a torn append to cut off.
    torn: bool,
    /// The log is damaged past `stored.log_len`: nothing may be appended.
    damaged: bool,
}

fn read_stored(d: &DataDir, device: DeviceId) -> io::Result<Stored> {
    let path = d.equivocations_summary(device);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Stored::default()),
        Err(e) => Err(e),
    }
}

/// The summary of `device` reconciled with its log, changing nothing.
fn read_state(d: &DataDir, device: DeviceId) -> io::Result<LogState> {
    let mut stored = read_stored(d, device)?;
    let log = d.equivocations_log(device);
    let len = match std::fs::metadata(&log) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    if len == stored.log_len {
        return Ok(LogState {
            stored,
            torn: false,
            damaged: false,
        });
    }
    // A crash after an append and before its summary (or a log from before
    // summaries): count what the log holds. It is bounded by the cap, and
    // this happens once per crash.
    let bytes = if len == 0 {
        Vec::new()
    } else {
        std::fs::read(&log)?
    };
    let (records, damage) = split_lossy(&bytes);
    let whole = records.records.len() as u64;
    if whole >= stored.summary.kept {
        stored.summary.count += whole - stored.summary.kept;
    } else {
        tracing::error!(%device, whole, summary = stored.summary.kept,
            "equivocations.log holds fewer records than its summary counted");
    }
    stored.summary.kept = whole;
    stored.log_len = records.complete_len as u64;
    if let Some(e) = &damage {
        tracing::error!(%device, offset = records.complete_len,
            "equivocations.log is damaged ({e}); later equivocations are only counted");
    }
    Ok(LogState {
        stored,
        torn: records.torn_tail > 0,
        damaged: damage.is_some(),
    })
}

/// The summary of `device` from its files, for a command that runs without
/// the server (`device list`).
///
/// # Errors
/// I/O errors; a summary file that does not parse.
pub fn load(root: &Path, device: DeviceId) -> io::Result<Summary> {
    Ok(read_state(&DataDir::new(root), device)?.stored.summary)
}

/// The signed entries `equivocations.log` of `device` holds, in the order
/// they were refused (whole records only; empty when there is none).
///
/// # Errors
/// I/O errors.
pub fn kept_entries(root: &Path, device: DeviceId) -> io::Result<Vec<Vec<u8>>> {
    let bytes = match std::fs::read(DataDir::new(root).equivocations_log(device)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let (log, _) = split_lossy(&bytes);
    Ok(log.records.iter().map(|r| r.to_vec()).collect())
}

/// The equivocation records of a running server: every device's summary in
/// memory (for `/metrics` and the API), written through to the files.
#[derive(Debug)]
pub struct Equivocations {
    dir: DataDir,
    keep: u64,
    known: Mutex<BTreeMap<DeviceId, Summary>>,
}

impl Equivocations {
    /// The records under `root`, keeping the first `keep` entries of each
    /// device in full. Reads every device's summary.
    ///
    /// # Errors
    /// I/O errors; a summary file that does not parse.
    pub fn open(root: &Path, keep: u64) -> io::Result<Self> {
        let dir = DataDir::new(root);
        let mut known = BTreeMap::new();
        for id in dir.device_ids()? {
            let s = read_state(&dir, id)?.stored.summary;
            if s.count > 0 {
                known.insert(id, s);
            }
        }
        Ok(Equivocations {
            dir,
            keep,
            known: Mutex::new(known),
        })
    }

    /// Record refused conflicting entries of `device` (each with its seq),
    /// refused at server time `now_us`: those that fit under the cap kept in
    /// full, every one counted, durably — one append and one summary write
    /// for all of them, so that a device flooding a group commit with
    /// conflicting entries costs it three fsyncs, not three per entry.
    ///
    /// # Errors
    /// I/O errors: the entries may then be neither kept nor counted.
    pub fn record(
        &self,
        device: DeviceId,
        entries: &[(u64, &[u8])],
        now_us: i64,
    ) -> io::Result<Summary> {
        // One record at a time: the summary is read, changed and written.
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        create_dir_durable(&self.dir.device(device))?;
        let state = read_state(&self.dir, device)?;
        let mut stored = state.stored;
        let log = self.dir.equivocations_log(device);
        if state.torn {
            let f = crate::fsutil::private().write(true).open(&log)?;
            f.set_len(stored.log_len)?;
            f.sync_data()?;
        }
        let s = &mut stored.summary;
        let mut rec = Vec::new();
        for (seq, entry) in entries {
            if s.kept < self.keep && !state.damaged {
                put_record(&mut rec, entry);
                s.kept += 1;
                if s.kept == self.keep {
                    tracing::warn!(%device, kept = s.kept,
                        "equivocations.log is full: later equivocations of this device are only counted");
                }
            }
            s.count += 1;
            s.last_seq = Some(*seq);
        }
        if entries.is_empty() {
            return Ok(*s);
        }
        s.first_us.get_or_insert(now_us);
        s.last_us = Some(now_us);
        if !rec.is_empty() {
            append_durable(&log, &rec)?;
            stored.log_len += rec.len() as u64;
        }
        let json = serde_json::to_vec(&stored).expect("serialisable");
        replace_durable(&self.dir.equivocations_summary(device), &json)?;
        known.insert(device, stored.summary);
        Ok(stored.summary)
    }

    /// The summary of `device` (all zero when it never equivocated).
    pub fn summary(&self, device: DeviceId) -> Summary {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&device)
            .copied()
            .unwrap_or_default()
    }

    /// Every device that equivocated, with its summary, by device id.
    pub fn all(&self) -> Vec<(DeviceId, Summary)> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(d, s)| (*d, *s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: DeviceId = DeviceId([3; 8]);

    fn entry(i: u8) -> Vec<u8> {
        vec![i; 40 + usize::from(i)]
    }

    #[test]
    fn the_first_n_are_kept_whole_and_every_one_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let e = Equivocations::open(dir.path(), 3).unwrap();
        assert_eq!(e.summary(DEV), Summary::default());
        for i in 0..4u8 {
            e.record(DEV, &[(u64::from(i), &entry(i))], 1_000 + i64::from(i))
                .unwrap();
        }
        // Several in one group commit: one write of each file.
        let group: Vec<(u64, Vec<u8>)> = (4..10u8).map(|i| (u64::from(i), entry(i))).collect();
        let group: Vec<(u64, &[u8])> = group.iter().map(|(s, b)| (*s, b.as_slice())).collect();
        e.record(DEV, &group, 1_009).unwrap();
        let want = Summary {
            count: 10,
            kept: 3,
            first_us: Some(1_000),
            last_us: Some(1_009),
            last_seq: Some(9),
        };
        assert_eq!(e.summary(DEV), want);
        assert_eq!(e.all(), vec![(DEV, want)]);
        assert_eq!(
            kept_entries(dir.path(), DEV).unwrap(),
            vec![entry(0), entry(1), entry(2)]
        );
        // Durable: a new process reads the same.
        assert_eq!(load(dir.path(), DEV).unwrap(), want);
        let again = Equivocations::open(dir.path(), 3).unwrap();
        assert_eq!(again.summary(DEV), want);
        // A cap of 0 keeps none.
        let other = DeviceId([4; 8]);
        e.record(other, &[(5, &entry(1))], 7).unwrap();
        let e0 = Equivocations::open(dir.path(), 0).unwrap();
        e0.record(DeviceId([5; 8]), &[(5, &entry(1))], 7).unwrap();
        assert_eq!(kept_entries(dir.path(), DeviceId([5; 8])).unwrap().len(), 0);
        assert_eq!(load(dir.path(), DeviceId([5; 8])).unwrap().count, 1);
    }

    /// The example of docs/FORMAT.md §9, byte for byte.
    #[test]
    fn the_summary_file_is_the_documented_json() {
        let stored = Stored {
            summary: Summary {
                count: 300,
                kept: 16,
                first_us: Some(1_782_896_400_000_000),
                last_us: Some(1_782_896_460_000_000),
                last_seq: Some(2),
            },
            log_len: 7424,
        };
        let json = r#"{"count":300,"kept":16,"first_us":1782896400000000,"last_us":1782896460000000,"last_seq":2,"log_len":7424}"#;
        assert_eq!(serde_json::to_string(&stored).unwrap(), json);
        assert_eq!(serde_json::from_str::<Stored>(json).unwrap(), stored);
        let doc = include_str!("../../docs/FORMAT.md");
        assert!(doc.contains(json), "FORMAT.md §9 shows this example");
    }

    #[test]
    fn a_crash_between_log_and_summary_is_counted_and_a_torn_append_cut() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::new(dir.path());
        let e = Equivocations::open(dir.path(), 5).unwrap();
        e.record(DEV, &[(1, &entry(1))], 10).unwrap();
        // A record appended whole, its summary never written; then a torn one.
        let mut rec = Vec::new();
        put_record(&mut rec, &entry(2));
        append_durable(&d.equivocations_log(DEV), &rec).unwrap();
        let s = load(dir.path(), DEV).unwrap();
        assert_eq!((s.count, s.kept), (2, 2), "the whole record is counted");
        let mut torn = Vec::new();
        put_record(&mut torn, &entry(3));
        append_durable(&d.equivocations_log(DEV), &torn[..10]).unwrap();
        let s = e.record(DEV, &[(4, &entry(4))], 20).unwrap();
        assert_eq!((s.count, s.kept), (3, 3));
        assert_eq!(
            kept_entries(dir.path(), DEV).unwrap(),
            vec![entry(1), entry(2), entry(4)],
            "the torn append was cut off before the next one"
        );
        // Damage: nothing is appended after it, everything still counted.
        append_durable(&d.equivocations_log(DEV), &[0, 0, 1]).unwrap();
        let before = std::fs::read(d.equivocations_log(DEV)).unwrap();
        let s = e.record(DEV, &[(5, &entry(5))], 30).unwrap();
        assert_eq!((s.count, s.kept), (4, 3));
        assert_eq!(std::fs::read(d.equivocations_log(DEV)).unwrap(), before);
    }
}
