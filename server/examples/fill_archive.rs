//! Write a large archive's files quickly, for benchmarks of `verify` and
//! `reindex`: a data folder with `DEVICES` enrolled devices, each with a
//! sample chain (`fieldseal_proto::sample`) of about `ENTRIES` entries whose
//! segments carry `MEDIA` bytes each, written straight into chain logs,
//! `leaves.log` and the blob folder — without the fsyncs of real ingest,
//! which would make a 100,000-entry fixture take many minutes. Run
//! `fieldseal-server reindex` on it afterwards to build the index.
//!
//! ```text
//! cargo run --release -p fieldseal-server --example fill_archive -- DIR DEVICES ENTRIES MEDIA
//! ```

use std::io::Write;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use fieldseal_proto::chainlog::put_record;
use fieldseal_proto::codec::Encode;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::sample;
use fieldseal_server::blobstore::FolderStore;
use fieldseal_server::datadir::DataDir;
use fieldseal_server::db::{Db, DeviceRecord};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, devices, entries, media] = args.as_slice() else {
        anyhow::bail!("usage: fill_archive DIR DEVICES ENTRIES_PER_DEVICE MEDIA_BYTES");
    };
    let dir = PathBuf::from(dir);
    let devices: u32 = devices.parse()?;
    let entries: u32 = entries.parse()?;
    let media: usize = media.parse()?;
    fieldseal_server::admin::init(&dir, &[], Some("bench".into()))?;
    let blobs = FolderStore::open(&dir)?;
    // Recordings of 100 segments (sample chains name at most 256 recordings
    // apart; each recording adds a start and a stop entry).
    let per_rec = 100u32;
    let recs = (entries / (per_rec + 2)).max(1) as usize;
    let mut chains = Vec::new();
    {
        let db = Db::open(&dir)?;
        for d in 0..devices {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&d.to_be_bytes());
            seed[4] = 1;
            let key = SigningKey::from_bytes(&seed);
            let id = DeviceId::from_key(&key.verifying_key());
            db.put_device(&DeviceRecord {
                id,
                name: format!("bench-{d}"),
                key: key.verifying_key(),
                enrolled_us: 0,
                revoked_us: None,
            })?;
            let chain = sample::build(&key, &vec![per_rec; recs], media);
            let layout = DataDir::new(&dir);
            std::fs::create_dir_all(layout.device(id))?;
            let mut log = Vec::new();
            for e in &chain.entries {
                put_record(&mut log, &e.to_bytes());
            }
            std::fs::write(layout.chain_log(id), log)?;
            for (seq, bytes) in &chain.media {
                let h = chain.entries[usize::try_from(*seq)?]
                    .entry
                    .segment()
                    .expect("media belongs to segments")
                    .media_sha256;
                let p = blobs.path(&h);
                std::fs::create_dir_all(p.parent().expect("has parent"))?;
                std::fs::write(p, bytes)?;
            }
            chains.push((id, chain.entries));
        }
        db.flush()?;
    }
    // Leaves interleaved across devices, as live ingest would write them.
    let mut leaves =
        std::io::BufWriter::new(std::fs::File::create(DataDir::new(&dir).leaves_log())?);
    let longest = chains.iter().map(|c| c.1.len()).max().unwrap_or(0);
    let mut n = 0u64;
    for i in 0..longest {
        for (id, es) in &chains {
            if let Some(e) = es.get(i) {
                let leaf = Leaf::Entry {
                    device: *id,
                    seq: e.seq(),
                    entry_hash: e.hash(),
                    server_time_us: 1_782_896_400_000_000 + i64::try_from(n)?,
                };
                let mut rec = Vec::new();
                put_record(&mut rec, &leaf.to_bytes());
                leaves.write_all(&rec)?;
                n += 1;
            }
        }
    }
    leaves.flush()?;
    println!(
        "{}: {devices} device(s), {n} entries, {} bytes of media each",
        dir.display(),
        media
    );
    Ok(())
}
