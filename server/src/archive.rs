//! Checks of the archive on demand: `verify` (every device's stored chain
//! against its key, its blobs, the index's head and the stored receipts) and
//! `scrub` (every blob re-hashed against its name).
//!
//! Both read the files (the source of truth) and the index; neither writes
//! anything but what it finds: scrub moves a damaged blob aside to
//! `DIR/damaged/` (kept, never repaired or deleted), notes it in
//! `DIR/damaged.log` and forgets that the server holds that media, so that
//! the device is asked for the bytes again in its next `Welcome.resend_media`.
//! They run on the index of whoever owns it: the running server (through the
//! control socket) or the command itself (see `control.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::chain::{
    verify_chains, Chain, Finding, FindingKind, MediaObservation, Report, SignatureCheck,
    VerifyOptions,
};
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::Decode;
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::leaf::{CustodyAction, Leaf};
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::sigbatch::{self, SigCheck};
use serde::Serialize;

use crate::admin::KeyError;
use crate::blobstore::{rehash, BlobStore};
use crate::chainindex::{ChainIndex, IndexError};
use crate::datadir::DataDir;
use crate::db::{Db, DbError};
use crate::fsutil::append_durable;

/// Why a verify or a scrub could not run to the end. Findings about the
/// evidence are not errors: they are in the outcome.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The device asked for is not enrolled.
    #[error("no device {0}")]
    NoDevice(DeviceId),
    /// Stopped before the end: the server is shutting down.
    #[error("verify interrupted: the server is shutting down")]
    Interrupted,
    /// The receipt key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A device's chain log could not be read.
    #[error("{}: {source}", path.display())]
    ChainLog {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The blob store could not be listed, or (scrub) could not be read.
    #[error("blob store: {0}")]
    Blobs(#[source] io::Error),
    /// A finding could not be noted in `damaged.log`.
    #[error("damaged.log: {0}")]
    DamagedLog(#[source] io::Error),
    /// A custody leaf was refused.
    #[error(transparent)]
    Leaf(#[from] fieldseal_proto::leaf::LeafError),
    /// The index failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<IndexError> for ArchiveError {
    fn from(e: IndexError) -> Self {
        ArchiveError::Db(e.into())
    }
}

/// "3 h", "2 d": how long ago, for humans.
fn ago(us: i64) -> String {
    let s = us.max(0) / 1_000_000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// A problem with a stored receipt.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReceiptProblem {
    /// The seq it is about.
    pub seq: u64,
    /// What is wrong.
    pub detail: String,
}

/// The stored receipts of one device, re-checked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReceiptCheck {
    /// Device id.
    pub device: String,
    /// Receipts that verified (signature, fields, leaf in the log).
    pub checked: u64,
    /// Everything wrong.
    pub problems: Vec<ReceiptProblem>,
}

/// Segments of one device whose media expired under retention, recorded
/// by one `expire` leaf: not there on purpose, so not `missing-media`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExpiredMedia {
    /// Device id.
    pub device: String,
    /// First and last seq of the expired segments (contiguous among the
    /// device's expired segments).
    pub first_seq: u64,
    /// Last seq (inclusive).
    pub last_seq: u64,
    /// How many segments.
    pub segments: u64,
    /// The `expire` leaf of the log that records it.
    pub leaf: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyOutcome {
    /// True iff every report is ok and no receipt has a problem.
    pub ok: bool,
    /// One report per device (`docs/FORMAT.md` §5).
    pub devices: Vec<Report>,
    /// The stored receipts, per device.
    pub receipts: Vec<ReceiptCheck>,
    /// Media not held because it expired under retention (not a finding).
    pub expired: Vec<ExpiredMedia>,
}

impl VerifyOutcome {
    /// The text for humans.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for (r, c) in self.devices.iter().zip(&self.receipts) {
            out.push_str(&r.to_string());
            out.push_str(&format!("  {} receipt(s) re-checked\n", c.checked));
            for p in &c.problems {
                out.push_str(&format!("    receipt of seq {}: {}\n", p.seq, p.detail));
            }
            for x in self.expired.iter().filter(|x| x.device == c.device) {
                out.push_str(&format!(
                    "  media of seq {}..={} ({} segment(s)) expired under retention (leaf {})\n",
                    x.first_seq, x.last_seq, x.segments, x.leaf
                ));
            }
        }
        out.push_str(if self.ok { "OK\n" } else { "FINDINGS\n" });
        out
    }
}

/// Verify the stored chain of one device, or of every device. `stop`
/// interrupts it between two blobs (the server shuts down).
///
/// # Errors
/// The archive is unreadable: an unknown device, a corrupt device record or
/// index, a chain log or receipt key that cannot be read; interrupted.
pub fn verify(
    dir: &Path,
    db: &Db,
    blobs: &dyn BlobStore,
    device: Option<DeviceId>,
    now_us: i64,
    stop: &AtomicBool,
) -> Result<VerifyOutcome, ArchiveError> {
    let receipt_key = crate::admin::load_receipt_key(dir)?.verifying_key();
    let records = match device {
        Some(id) => vec![db.device(id)?.ok_or(ArchiveError::NoDevice(id))?],
        None => db.devices()?,
    };
    let mut out = VerifyOutcome {
        ok: true,
        devices: Vec::new(),
        receipts: Vec::new(),
        expired: Vec::new(),
    };
    let devices: Vec<(DeviceId, VerifyingKey)> =
        records.into_iter().map(|rec| (rec.id, rec.key)).collect();
    // Hashing the blobs is nearly all of the work: do it first, on every
    // core. Blobs are content-addressed: segments with the same bytes share one.
    let mut wanted = Vec::new();
    for (id, _) in &devices {
        let (bytes, _, _) = indexed_chain_log(dir, db, *id)?;
        let (log, _) = chainlog::split_lossy(&bytes);
        for rec in &log.records {
            if let Some(seg) = SignedEntry::from_bytes(rec)
                .ok()
                .and_then(|e| e.entry.segment().map(|s| s.media_sha256))
            {
                wanted.push(seg);
            }
        }
    }
    let hashed = hash_blobs(blobs, wanted, stop)?;
    // Signatures are checked together, chain entries and receipts of many
    // devices at once, so that short chains share one batch (sigbatch):
    // devices are taken in groups of about GROUP_ENTRIES entries.
    let signatures = match std::env::var("FIELDSEAL_VERIFY_SIGNATURES").as_deref() {
        // Each as it is read, as before batch verification: the benchmark's
        // baseline, measured in the same run. The findings are the same.
        Ok("one-at-a-time") => SignatureCheck::OneAtATime,
        _ => SignatureCheck::Batch {
            threads: verify_threads(),
        },
    };
    let mut rest = devices.as_slice();
    while !rest.is_empty() {
        let mut loaded = Vec::new();
        let mut entries = 0;
        while let Some(((id, key), more)) = rest.split_first() {
            if entries >= GROUP_ENTRIES {
                break;
            }
            let d = load_device(dir, db, *id, *key, now_us, &hashed, blobs)?;
            entries += d.records;
            loaded.push(d);
            rest = more;
        }
        for (report, receipts, id) in verify_group(db, &loaded, &receipt_key, signatures)? {
            out.expired.extend(expired_ranges(db, id)?);
            out.ok &= report.ok && receipts.problems.is_empty();
            out.devices.push(report);
            out.receipts.push(receipts);
        }
    }
    Ok(out)
}

/// Entries whose signatures `verify` checks together, at most a device
/// more: enough for the batch to pay (sigbatch::BATCH_MIN is 256), few
/// enough to hold their chain logs and decoded entries in memory (~30 MB).
const GROUP_ENTRIES: usize = 32_768;

/// Threads for hashing blobs and checking signatures: one per core, or
/// FIELDSEAL_VERIFY_THREADS (the benchmark's one-core figure, or a server
/// that must leave cores to ingest).
fn verify_threads() -> usize {
    std::env::var("FIELDSEAL_VERIFY_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
}

/// The blobs' actual hashes and lengths, or why they could not be read.
type Hashed = BTreeMap<Hash32, Result<(Hash32, u64), (io::ErrorKind, String)>>;

/// Re-hash each distinct blob of `wanted` once, on as many threads as there
/// are cores: SHA-256 runs at about the speed a disk reads, so one thread
/// per core keeps both busy.
fn hash_blobs(
    blobs: &dyn BlobStore,
    mut wanted: Vec<Hash32>,
    stop: &AtomicBool,
) -> Result<Hashed, ArchiveError> {
    wanted.sort_unstable();
    wanted.dedup();
    let threads = verify_threads()
        .max(blobs.parallel_reads())
        .min(wanted.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = std::sync::Mutex::new(Hashed::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= wanted.len() || stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = rehash(blobs, &wanted[i]).map_err(|e| (e.kind(), e.to_string()));
                out.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(wanted[i], r);
            });
        }
    });
    if stop.load(Ordering::Relaxed) {
        return Err(ArchiveError::Interrupted);
    }
    Ok(out
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner))
}

/// The entries a device's chain log holds up to the length the index knows
/// (every one accepted by ingest: signature and link checked), in order.
///
/// # Errors
/// The chain log or the index cannot be read.
pub fn accepted_chain(dir: &Path, db: &Db, id: DeviceId) -> Result<Vec<SignedEntry>, ArchiveError> {
    let (bytes, _, _) = indexed_chain_log(dir, db, id)?;
    let (log, _) = chainlog::split_lossy(&bytes);
    Ok(log
        .records
        .iter()
        .filter_map(|r| SignedEntry::from_bytes(r).ok())
        .collect())
}

/// Accepted entries `from..from + limit` of a device (fewer at the chain's
/// end), each with its record as stored: the signed entry bytes the device
/// sent. A record that does not decode is left out. The chain log holds
/// each seq once, in order, from 0, so a record's position is its seq; only
/// the entries asked for are decoded.
///
/// # Errors
/// The chain log or the index cannot be read.
pub fn accepted_range(
    dir: &Path,
    db: &Db,
    id: DeviceId,
    from: u64,
    limit: usize,
) -> Result<Vec<(SignedEntry, Vec<u8>)>, ArchiveError> {
    let (bytes, _, _) = indexed_chain_log(dir, db, id)?;
    let (log, _) = chainlog::split_lossy(&bytes);
    let skip = usize::try_from(from).unwrap_or(usize::MAX);
    Ok(log
        .records
        .iter()
        .skip(skip)
        .take(limit)
        .filter_map(|r| Some((SignedEntry::from_bytes(r).ok()?, r.to_vec())))
        .filter(|(e, _)| e.seq() >= from)
        .collect())
}

/// A device's chain.log up to the length the index knows, with its head.
/// Bytes past the indexed length are an acceptance that crashed before it
/// was indexed: never receipted, and rolled forward or cut off at the next
/// start.
fn indexed_chain_log(
    dir: &Path,
    db: &Db,
    id: DeviceId,
) -> Result<(Vec<u8>, fieldseal_proto::entry::ChainHead, u64), ArchiveError> {
    let path = DataDir::new(dir).chain_log(id);
    let mut bytes = match fs::read(&path) {
        Ok(b) => b,
        // Enrolled, never sent an entry.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(source) => return Err(ArchiveError::ChainLog { path, source }),
    };
    let (head, log_len) = db.head_and_log_len(id)?;
    if let Ok(n) = usize::try_from(log_len) {
        bytes.truncate(n);
    }
    Ok((bytes, head, log_len))
}

/// What `verify` reads of one device before checking it.
struct LoadedDevice {
    id: DeviceId,
    key: VerifyingKey,
    /// Its chain.log up to the indexed length.
    log: Vec<u8>,
    /// Records in `log`.
    records: usize,
    head: fieldseal_proto::entry::ChainHead,
    opts: VerifyOptions,
    /// Per seq below the head: the stored receipt (with the entry hash the
    /// index holds), or the problem with it found so far.
    receipts: Vec<Result<(Hash32, Receipt), ReceiptProblem>>,
}

fn load_device(
    dir: &Path,
    db: &Db,
    id: DeviceId,
    key: VerifyingKey,
    now_us: i64,
    hashed: &Hashed,
    blobs: &dyn BlobStore,
) -> Result<LoadedDevice, ArchiveError> {
    let (bytes, head, _) = indexed_chain_log(dir, db, id)?;
    let (log, _) = chainlog::split_lossy(&bytes);
    let receipt_time = |seq: u64| {
        db.entry(id, seq)
            .ok()
            .flatten()
            .and_then(|a| Receipt::from_bytes(&a.receipt).ok())
            .map(|r| r.server_time_us)
    };
    let mut media = BTreeMap::new();
    for rec in &log.records {
        let Ok(e) = SignedEntry::from_bytes(rec) else {
            continue;
        };
        let Some(seg) = e.entry.segment() else {
            continue;
        };
        let seen = hashed
            .get(&seg.media_sha256)
            .cloned()
            .unwrap_or_else(|| Err((io::ErrorKind::Other, "not hashed".into())));
        let obs = match seen {
            Ok((sha256, len)) => MediaObservation::Present { sha256, len },
            // Removed on purpose, with an `expire` leaf: listed apart
            // (`expired_ranges`), not damage.
            Err((io::ErrorKind::NotFound, _)) if db.expired(id, e.seq())?.is_some() => {
                MediaObservation::Released
            }
            Err((kind, err)) => {
                // Missing media: the bytes have not arrived (or were moved
                // aside by scrub), as opposed to media-mismatch: bytes wrong.
                let mut note = match receipt_time(e.seq()) {
                    Some(t) => format!("promised {} ago", ago(now_us - t)),
                    None => "never arrived".to_string(),
                };
                if blobs.was_quarantined(&seg.media_sha256).unwrap_or(false) {
                    note.push_str("; a damaged copy was moved aside by scrub, asked again");
                } else if kind != io::ErrorKind::NotFound {
                    note.push_str(&format!("; {err}"));
                }
                MediaObservation::Absent { note: Some(note) }
            }
        };
        media.insert(e.seq(), obs);
    }
    let opts = VerifyOptions {
        media: Some(media),
        ordered: true,
        expected_head: (head.next_seq > 0).then(|| (head.next_seq - 1, head.last_hash)),
        ..VerifyOptions::default()
    };
    let mut receipts = Vec::new();
    for seq in 0..head.next_seq {
        let problem = |detail: String| ReceiptProblem { seq, detail };
        receipts.push(match db.entry(id, seq)? {
            None => Err(problem("the index holds no record of this entry".into())),
            Some(a) => match Receipt::from_bytes(&a.receipt) {
                Ok(r) => Ok((a.entry_hash, r)),
                Err(e) => Err(problem(format!("does not decode: {e}"))),
            },
        });
    }
    let records = log.records.len();
    Ok(LoadedDevice {
        id,
        key,
        log: bytes,
        records,
        head,
        opts,
        receipts,
    })
}

/// The report and receipt check of each loaded device, in order, with the
/// signatures of all their entries and all their receipts checked together.
fn verify_group(
    db: &Db,
    loaded: &[LoadedDevice],
    receipt_key: &VerifyingKey,
    signatures: SignatureCheck,
) -> Result<Vec<(Report, ReceiptCheck, DeviceId)>, ArchiveError> {
    let logs: Vec<_> = loaded
        .iter()
        .map(|d| chainlog::split_lossy(&d.log))
        .collect();
    let chains: Vec<Chain<'_>> = loaded
        .iter()
        .zip(&logs)
        .map(|(d, (log, _))| Chain {
            key: &d.key,
            entries: log.records.clone(),
            opts: &d.opts,
        })
        .collect();
    let reports = verify_chains(&chains, signatures);
    let signed: Vec<Vec<u8>> = loaded
        .iter()
        .flat_map(|d| d.receipts.iter().flatten())
        .map(|(_, r)| r.signing_bytes())
        .collect();
    let checks: Vec<SigCheck<'_>> = loaded
        .iter()
        .flat_map(|d| d.receipts.iter().flatten())
        .zip(&signed)
        .map(|((_, r), msg)| SigCheck {
            key: receipt_key,
            msg,
            sig: &r.signature,
        })
        .collect();
    let mut receipt_ok = match signatures {
        SignatureCheck::Batch { threads } => sigbatch::verify_strict_many(&checks, threads),
        SignatureCheck::OneAtATime => sigbatch::one_at_a_time(&checks, 1),
    }
    .into_iter();
    let mut out = Vec::with_capacity(loaded.len());
    for ((d, (log, damage)), mut report) in loaded.iter().zip(&logs).zip(reports) {
        if let Some(err) = damage {
            report.findings.insert(
                0,
                Finding {
                    seq: None,
                    kind: FindingKind::Malformed,
                    detail: format!("chain.log is damaged at byte {}: {err}", log.complete_len),
                },
            );
        } else if log.torn_tail > 0 {
            report.findings.insert(
                0,
                Finding {
                    seq: None,
                    kind: FindingKind::Malformed,
                    detail: format!(
                        "chain.log ends with {} bytes of a torn record",
                        log.torn_tail
                    ),
                },
            );
        }
        report.ok = report.findings.is_empty();
        let mut chain_hashes = BTreeMap::new();
        for rec in &log.records {
            if let Ok(e) = SignedEntry::from_bytes(rec) {
                chain_hashes.entry(e.seq()).or_insert(e.hash());
            }
        }
        let good: Vec<bool> = d
            .receipts
            .iter()
            .flatten()
            .map(|_| receipt_ok.next().expect("one answer per receipt"))
            .collect();
        let check = check_receipts(db, d, &chain_hashes, &good)?;
        out.push((report, check, d.id));
    }
    Ok(out)
}

/// The stored receipts of a device against the index, its chain log and
/// the transparency log; `good` says, in order, which of those that
/// decoded carry a valid signature.
fn check_receipts(
    db: &Db,
    d: &LoadedDevice,
    chain_hashes: &BTreeMap<u64, Hash32>,
    good: &[bool],
) -> Result<ReceiptCheck, ArchiveError> {
    let id = d.id;
    let mut check = ReceiptCheck {
        device: id.to_string(),
        checked: 0,
        problems: Vec::new(),
    };
    let mut good = good.iter();
    for (seq, stored) in (0..d.head.next_seq).zip(&d.receipts) {
        let problem = |detail: String| ReceiptProblem { seq, detail };
        let (entry_hash, r) = match stored {
            Ok(stored) => stored,
            Err(p) => {
                check.problems.push(p.clone());
                continue;
            }
        };
        if !good.next().expect("one answer per decoded receipt") {
            check
                .problems
                .push(problem("signature does not verify".into()));
            continue;
        }
        if r.device_id != id || r.seq != seq || r.entry_hash != *entry_hash {
            check
                .problems
                .push(problem("names another device, seq or entry".into()));
            continue;
        }
        if chain_hashes.get(&seq).is_some_and(|h| *h != r.entry_hash) {
            check.problems.push(problem(
                "the entry in chain.log is not the one receipted".into(),
            ));
            continue;
        }
        let leaf = Leaf::Entry {
            device: id,
            seq,
            entry_hash: r.entry_hash,
            server_time_us: r.server_time_us,
        };
        match db.log_node(0, r.log_index) {
            Ok(h) if h == leaf.hash() => check.checked += 1,
            Ok(_) => check.problems.push(problem(format!(
                "log leaf {} is not this entry's leaf",
                r.log_index
            ))),
            Err(e) => check
                .problems
                .push(problem(format!("log leaf {}: {e}", r.log_index))),
        }
    }
    Ok(check)
}

/// The device's segments whose media expired under retention, as ranges
/// of one leaf each.
fn expired_ranges(db: &Db, id: DeviceId) -> Result<Vec<ExpiredMedia>, ArchiveError> {
    let mut out: Vec<ExpiredMedia> = Vec::new();
    for (seq, e) in db.expired_of(id)? {
        match out.last_mut() {
            Some(r) if r.leaf == e.leaf => {
                r.last_seq = seq;
                r.segments += 1;
            }
            _ => out.push(ExpiredMedia {
                device: id.to_string(),
                first_seq: seq,
                last_seq: seq,
                segments: 1,
                leaf: e.leaf,
            }),
        }
    }
    Ok(out)
}

/// A segment entry that refers to a blob.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlobRef {
    /// Device id.
    pub device: String,
    /// The segment's seq.
    pub seq: u64,
}

/// A blob whose bytes are not those its name promises.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DamagedBlob {
    /// The name (expected SHA-256).
    pub sha256: String,
    /// What the bytes hash to, or why they could not be read.
    pub found: String,
    /// The segments that refer to it: their media is asked for again.
    pub refs: Vec<BlobRef>,
    /// Where the damaged bytes were moved (kept as found).
    pub moved_to: Option<String>,
    /// Indexes of the `repair` custody leaves that record the finding in the
    /// transparency log, one per referring segment.
    pub log_leaves: Vec<u64>,
}

/// What `scrub` found.
#[derive(Debug, Clone, Serialize)]
pub struct ScrubOutcome {
    /// True iff no blob is damaged.
    pub ok: bool,
    /// False if it was interrupted (shutdown) before the last blob.
    pub complete: bool,
    /// Blobs re-hashed.
    pub blobs: u64,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// The damaged ones.
    pub damaged: Vec<DamagedBlob>,
}

impl ScrubOutcome {
    /// The text for humans.
    pub fn human(&self) -> String {
        let mut out = format!("{} blob(s), {} bytes re-hashed\n", self.blobs, self.bytes);
        if !self.complete {
            out.push_str("interrupted before the last blob\n");
        }
        for d in &self.damaged {
            out.push_str(&format!(
                "DAMAGED blob {}: bytes hash to {}\n",
                d.sha256, d.found
            ));
            for r in &d.refs {
                out.push_str(&format!(
                    "  media of device {} seq {}: asked for again\n",
                    r.device, r.seq
                ));
            }
            if let Some(m) = &d.moved_to {
                out.push_str(&format!("  damaged bytes kept in {m}\n"));
            }
            for i in &d.log_leaves {
                out.push_str(&format!("  recorded as repair leaf {i} of the log\n"));
            }
        }
        out.push_str(if self.ok { "OK\n" } else { "FINDINGS\n" });
        out
    }
}

/// Re-hash every blob. A blob whose SHA-256 differs from its name is
/// quarantined (moved to `DIR/damaged/<name>`: not repaired, not deleted),
/// noted in `DIR/damaged.log`, and the media of every segment that refers to
/// it is forgotten in the index, so that the device is asked to send it again.
///
/// # Errors
/// The blob store or the index cannot be read.
pub fn scrub(
    dir: &Path,
    db: &Db,
    blobs: &dyn BlobStore,
    now_us: i64,
    stop: &AtomicBool,
) -> Result<ScrubOutcome, ArchiveError> {
    let mut out = ScrubOutcome {
        ok: true,
        complete: false,
        blobs: 0,
        bytes: 0,
        damaged: Vec::new(),
    };
    let mut refs = None;
    let listed = blobs.list().map_err(ArchiveError::Blobs)?;
    // Hashed a batch at a time on several threads (an object store's reads
    // wait on the network), the results of one batch in memory at once.
    for batch in listed.chunks(SCRUB_BATCH) {
        let hashed = match hash_blobs(blobs, batch.to_vec(), stop) {
            Ok(h) => h,
            Err(ArchiveError::Interrupted) => {
                out.ok = out.damaged.is_empty();
                return Ok(out);
            }
            Err(e) => return Err(e),
        };
        for (want, r) in hashed {
            scrub_one(dir, db, blobs, now_us, &mut refs, &mut out, want, r)?;
        }
    }
    out.ok = out.damaged.is_empty();
    out.complete = true;
    Ok(out)
}

/// Blobs scrub hashes before it acts on what it found.
const SCRUB_BATCH: usize = 256;

/// Scrub's finding on one blob, `r` its re-hash: quarantine it if damaged.
#[allow(clippy::too_many_arguments)] // scrub's state, passed down once
fn scrub_one(
    dir: &Path,
    db: &Db,
    blobs: &dyn BlobStore,
    now_us: i64,
    refs: &mut Option<crate::chainindex::MediaRefs>,
    out: &mut ScrubOutcome,
    want: Hash32,
    r: Result<(Hash32, u64), (io::ErrorKind, String)>,
) -> Result<(), ArchiveError> {
    {
        let name = hex::encode(want);
        out.blobs += 1;
        let found = match r {
            Ok((h, len)) => {
                out.bytes += len;
                if h == want {
                    return Ok(());
                }
                hex::encode(h)
            }
            // Gone since the listing: not damage (a concurrent quarantine).
            Err((io::ErrorKind::NotFound, _)) => return Ok(()),
            // An object store that did not answer says nothing about the
            // bytes: stop rather than log a repair of a good blob.
            Err((io::ErrorKind::NetworkDown, e)) => {
                return Err(ArchiveError::Blobs(io::Error::new(
                    io::ErrorKind::NetworkDown,
                    format!("blob {name}: {e}"),
                )))
            }
            Err((_, e)) => format!("unreadable: {e}"),
        };
        tracing::error!(blob = %name, %found, "ALARM scrub: damaged blob");
        if refs.is_none() {
            *refs = Some(db.media_refs()?);
        }
        let who: Vec<(DeviceId, u64)> = refs
            .as_ref()
            .and_then(|r| r.get(&want).cloned())
            .unwrap_or_default();
        // It must leave the store: ingest takes a held blob as proof that it
        // holds the bytes, and would refuse the resend.
        let moved_to = match blobs.quarantine(&want) {
            Ok(to) => Some(to),
            Err(e) => {
                tracing::error!(blob = %name, "could not move damaged blob aside: {e}");
                None
            }
        };
        let mut log_leaves = Vec::new();
        for (device, seq) in &who {
            db.forget_media(*device, *seq)?;
            // Tamper-evident: the archive cannot later pretend the bytes
            // were always fine.
            let leaf = Leaf::Custody {
                time_us: now_us,
                action: CustodyAction::Repair,
                actor: "scrub".into(),
                device: *device,
                first_seq: *seq,
                last_seq: *seq,
                case: None,
                detail: Some(format!("damaged blob {name}")),
            };
            leaf.validate()?;
            log_leaves.push(db.log_append(&leaf)?);
        }
        let d = DamagedBlob {
            sha256: name,
            found,
            refs: who
                .iter()
                .map(|(device, seq)| BlobRef {
                    device: device.to_string(),
                    seq: *seq,
                })
                .collect(),
            moved_to,
            log_leaves,
        };
        note_damage(dir, now_us, &d).map_err(ArchiveError::DamagedLog)?;
        out.damaged.push(d);
    }
    Ok(())
}

fn note_damage(dir: &Path, now_us: i64, d: &DamagedBlob) -> io::Result<()> {
    let mut line = serde_json::json!({ "time_us": now_us, "blob": d }).to_string();
    line.push('\n');
    append_durable(&DataDir::new(dir).damaged_log(), line.as_bytes())
}
