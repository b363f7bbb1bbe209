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

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::CASE;
use ed25519_dalek::SigningKey;
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::sample::{self, SampleChain};
use fieldseal_server::blobstore::{BlobStore, FolderStore};
use fieldseal_server::chainindex::ChainIndex;
use fieldseal_server::db::DeviceRecord;
use fieldseal_server::{ingest, Shared};

/// Entries per group commit, as the server's committer takes them.
const GROUP: usize = 256;

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
    common::put_case(&shared, device, &chain, "seizure-export")?;
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
