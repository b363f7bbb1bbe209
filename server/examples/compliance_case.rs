//! Time the compliance of a long case, for `make bench`
//! (`scripts/bench/archive.sh`): one device whose chain holds one recording
//! of `SEGMENTS` segments of 4 s (7,200: 8 h), every segment's media held,
//! the device in the custody of the case's officer, and a case with one
//! `seizure` activity (`continuous-av`) over the whole recording. It times
//! `casecheck::case_compliance` on it against its own first step, reading
//! and decoding the same entries from the chain log
//! (`archive::accepted_chain`), alternating the two, and prints the medians
//! as `key=value` lines.
//!
//! ```text
//! cargo run --release -p fieldseal-server --example compliance_case -- DIR [SEGMENTS] [RUNS]
//! ```
//!
//! The entries go through the real ingest path (`ingest::submit_group_blocking`:
//! chain log, leaves, receipts, index); the media is 1 kB of stand-in bytes
//! per segment, written into the blob folder without the upload's fsyncs,
//! with the two index writes an upload makes (media held, and when).

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use ed25519_dalek::SigningKey;
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::sample::{self, SampleChain};
use fieldseal_server::blobstore::FolderStore;
use fieldseal_server::catalogue::Catalogue;
use fieldseal_server::chainindex::ChainIndex;
use fieldseal_server::db::DeviceRecord;
use fieldseal_server::{archive, casecheck, ingest, Shared};

/// Entries per group commit, as the server's committer takes them.
const GROUP: usize = 256;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, segments, runs) = match args.as_slice() {
        [d] => (d, 7200, 21),
        [d, s] => (d, s.parse()?, 21),
        [d, s, r] => (d, s.parse()?, r.parse()?),
        _ => anyhow::bail!("usage: compliance_case DIR [SEGMENTS] [RUNS]"),
    };
    let dir = PathBuf::from(dir);
    let t = Instant::now();
    let (shared, device, chain) = fill(&dir, segments)?;
    let case = common::put_case(&shared, device, &chain, "seizure-8h")?;
    eprintln!("filled in {:.1} s", t.elapsed().as_secs_f64());
    let catalogue = Catalogue::article_27();
    let now = fieldseal_server::now_us();
    // Once before timing (caches warm), and to check that the case is what
    // it should be: the whole recording attached, covering the activity.
    let c = casecheck::case_compliance(&shared, &catalogue, &case, now)?;
    let v = &c.activities[0];
    let attached: u64 = v.recordings.iter().map(|r| r.segments).max().unwrap_or(0);
    let kinds: Vec<&str> = v.verdict.findings.iter().map(|f| f.kind).collect();
    anyhow::ensure!(
        attached == u64::from(segments) && v.verdict.best_run_seconds == f64::from(segments) * 4.0,
        "the recording does not cover the activity: {attached} segments attached, best run {} s, findings {kinds:?}",
        v.verdict.best_run_seconds
    );
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let mut time_ours = || -> anyhow::Result<()> {
            let t = Instant::now();
            std::hint::black_box(casecheck::case_compliance(&shared, &catalogue, &case, now)?);
            ours.push(t.elapsed().as_secs_f64() * 1000.0);
            Ok(())
        };
        let mut time_base = || -> anyhow::Result<()> {
            let t = Instant::now();
            std::hint::black_box(archive::accepted_chain(&shared.dir, &shared.db, device)?);
            base.push(t.elapsed().as_secs_f64() * 1000.0);
            Ok(())
        };
        // ABBA: ours first in even runs, the baseline first in odd ones.
        if i % 2 == 0 {
            time_ours()?;
            time_base()?;
        } else {
            time_base()?;
            time_ours()?;
        }
    }
    let ratios: Vec<f64> = ours.iter().zip(&base).map(|(a, b)| a / b).collect();
    println!(
        "entries={} segments={segments} runs={runs}",
        chain.entries.len()
    );
    println!("compliance_ms={:.2}", median(&ours));
    println!("chain_read_ms={:.2}", median(&base));
    println!("ratio={:.2}", median(&ratios));
    println!("findings={}", kinds.join(","));
    println!("compliance_runs_ms={}", list(&ours));
    println!("chain_read_runs_ms={}", list(&base));
    Ok(())
}

/// A data folder with one device's chain of one recording of `segments`
/// segments, ingested, its media held.
fn fill(dir: &Path, segments: u32) -> anyhow::Result<(Shared, DeviceId, SampleChain)> {
    fieldseal_server::admin::init(dir, &[], Some("bench-password".into()))?;
    let shared = Shared::open(dir)?;
    let key = SigningKey::from_bytes(&[0x42; 32]);
    let device = DeviceId::from_key(&key.verifying_key());
    shared.db.put_device(&DeviceRecord {
        id: device,
        name: "cam-8h".into(),
        key: key.verifying_key(),
        enrolled_us: 0,
        revoked_us: None,
    })?;
    let chain = sample::build(&key, &[segments], 1000);
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
    for (seq, bytes) in &chain.media {
        let e = &chain.entries[usize::try_from(*seq)?];
        let p = blobs.path(&e.entry.segment().expect("a segment").media_sha256);
        std::fs::create_dir_all(p.parent().expect("in a folder"))?;
        std::fs::write(p, bytes)?;
        shared.db.put_media_unflushed(device, *seq)?;
        // Uploaded a second after it was signed: in time (the sample's
        // clock is in the past; it reaches the server now, in one burst).
        shared
            .db
            .put_media_time_unflushed(device, *seq, e.entry.wall_us + 1_000_000)?;
    }
    ChainIndex::flush(&shared.db)?;
    Ok((shared, device, chain))
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}
