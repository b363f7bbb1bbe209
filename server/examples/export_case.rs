//! Fill a data folder for the export row of `make bench`
//! (`scripts/bench/archive.sh`): one device whose chain holds one recording
//! of `SEGMENTS` segments of `BYTES` stand-in bytes each (256 of 4 MiB by
//! default: 1 GiB), every segment's media held, the device in the custody of
//! the case's officer, and a case with one `seizure` activity over the whole
//! recording, so that its package carries every segment. The bench then
//! times `fieldseal-server export` of the case against `tar` of the same
//! blob files; this program only builds the folder and prints what it made
//! as `key=value` lines (`case`, `segments`, `media_bytes`).
//!
//! ```text
//! cargo run --release -p fieldseal-server --example export_case -- DIR [SEGMENTS] [BYTES]
//! ```
//!
//! The entries go through the real ingest path (`ingest::submit_group_blocking`:
//! chain log, leaves, receipts, index); the blobs through `BlobStore::put`,
//! as an upload stores them (hash checked, file and folder fsynced), with
//! the two index writes an upload makes (media held, and when).

use std::path::{Path, PathBuf};
use std::time::Instant;

use ed25519_dalek::SigningKey;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::sample::{self, SampleChain};
use fieldseal_server::blobstore::{BlobStore, FolderStore};
use fieldseal_server::cases::{Case, Custody, OfficerRecord};
use fieldseal_server::catalogue::Catalogue;
use fieldseal_server::chainindex::ChainIndex;
use fieldseal_server::db::DeviceRecord;
use fieldseal_server::timeline::{device_timeline, Known};
use fieldseal_server::{ingest, Shared};

/// Entries per group commit, as the server's committer takes them.
const GROUP: usize = 256;
/// The case number the sample chain is tagged with, and its officer.
const CASE: &str = "CJ-2026-0001";
const OFFICER: &str = "CJ-001";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, segments, bytes) = match args.as_slice() {
        [d] => (d, 256, 4 << 20),
        [d, s] => (d, s.parse()?, 4 << 20),
        [d, s, b] => (d, s.parse()?, b.parse()?),
        _ => anyhow::bail!("usage: export_case DIR [SEGMENTS] [BYTES]"),
    };
    anyhow::ensure!(segments > 0 && bytes > 0, "SEGMENTS and BYTES must be > 0");
    let dir = PathBuf::from(dir);
    let t = Instant::now();
    let (shared, device, chain) = fill(&dir, segments, bytes)?;
    put_case(&shared, device, &chain)?;
    eprintln!("filled in {:.1} s", t.elapsed().as_secs_f64());
    let media: usize = chain.media.values().map(Vec::len).sum();
    println!("case={CASE}");
    println!("segments={segments}");
    println!("media_bytes={media}");
    Ok(())
}

/// A data folder with one device's chain of one recording of `segments`
/// segments of `bytes` each, ingested, its media held.
fn fill(
    dir: &Path,
    segments: u32,
    bytes: usize,
) -> anyhow::Result<(Shared, DeviceId, SampleChain)> {
    fieldseal_server::admin::init(dir, &[], Some("bench-password".into()))?;
    let shared = Shared::open(dir)?;
    let key = SigningKey::from_bytes(&[0x43; 32]);
    let device = DeviceId::from_key(&key.verifying_key());
    shared.db.put_device(&DeviceRecord {
        id: device,
        name: "cam-export".into(),
        key: key.verifying_key(),
        enrolled_us: 0,
        revoked_us: None,
    })?;
    let chain = sample::build(&key, &[segments], bytes);
    let items: Vec<_> = chain
        .entries
        .iter()
        .map(|e| (key.verifying_key(), e.to_bytes()))
        .collect();
    for group in items.chunks(GROUP) {
        for m in ingest::submit_group_blocking(&shared, group) {
            anyhow::ensure!(
                matches!(m, fieldseal_proto::msg::Message::EntryReceipt(_)),
                "ingest refused an entry: {m:?}"
            );
        }
    }
    let blobs = FolderStore::open(dir)?;
    for (seq, media) in &chain.media {
        let e = &chain.entries[usize::try_from(*seq)?];
        let hash = e.entry.segment().expect("a segment").media_sha256;
        blobs.put(&hash, &mut media.as_slice())?;
        shared.db.put_media_unflushed(device, *seq)?;
        shared
            .db
            .put_media_time_unflushed(device, *seq, e.entry.wall_us + 1_000_000)?;
    }
    ChainIndex::flush(&shared.db)?;
    Ok((shared, device, chain))
}

/// The officer, the device in their custody, and the case with one seizure
/// over the whole recording (placed in server time as compliance places it).
fn put_case(shared: &Shared, device: DeviceId, chain: &SampleChain) -> anyhow::Result<()> {
    let db = &shared.db;
    let officer: OfficerRecord = serde_json::from_value(serde_json::json!({
        "certificate": OFFICER, "name": "王五",
        "valid_from": "2026-01-01", "valid_until": "2027-12-31"
    }))?;
    db.put_officer(&officer)?;
    let mut known = Vec::with_capacity(chain.entries.len());
    for e in &chain.entries {
        let a = db.entry(device, e.seq())?.expect("ingested");
        known.push(Known {
            entry: e,
            receipt_us: Some(Receipt::from_bytes(&a.receipt)?.server_time_us),
            verified: true,
            media_us: e.entry.segment().map(|_| 0),
            expired: false,
        });
    }
    let spans = device_timeline(device, &known, |_| None).spans;
    let (start, end) = (spans[0].start_us, spans[spans.len() - 1].end_us);
    db.put_custody(&Custody {
        device,
        officer: OFFICER.into(),
        from_us: start - 3_600_000_000,
        to_us: Some(end + 3_600_000_000),
    })?;
    let case: Case = serde_json::from_value(serde_json::json!({
        "number": CASE, "body": "bench", "officers": [OFFICER],
        "activities": [{"id": "seizure-export", "kind": "seizure", "place": "bench",
            "start_us": start, "end_us": end, "officers": [OFFICER]}]
    }))?;
    case.check(&Catalogue::article_27(), |o| o == OFFICER)?;
    db.put_case(&case)?;
    Ok(())
}
