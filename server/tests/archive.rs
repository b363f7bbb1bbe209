//! `verify`, `scrub` and `log` on an archive filled through the real ingest
//! path (`quic::submit_blocking`), run as the real binary: with the server
//! stopped (the command opens the folder) and running (through the control
//! socket, since the index is then locked).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use ed25519_dalek::SigningKey;
use fieldseal_proto::checkpoint::Checkpoint;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::identity::{sha256, DeviceId};
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::merkle::{verify_consistency, verify_inclusion};
use fieldseal_proto::msg::Message;
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::sample::{self, SampleChain};
use fieldseal_server::chainindex::ChainIndex;
use fieldseal_server::datadir::DataDir;
use fieldseal_server::db::{Db, DeviceRecord};
use fieldseal_server::{quic, start, RunOptions, Running};
use serde_json::Value;

fn cli(args: &[&str], dir: &Path) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_fieldseal-server"))
        .args(args)
        .arg("--data")
        .arg(dir)
        .env("RUST_LOG", "off")
        .output()
        .expect("runs");
    (
        o.status.code().expect("exited"),
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8(o.stderr).unwrap(),
    )
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    key: SigningKey,
    chain: SampleChain,
}

impl Fixture {
    fn device(&self) -> DeviceId {
        DeviceId::from_key(&self.key.verifying_key())
    }

    fn blob(&self, seq: u64) -> PathBuf {
        DataDir::new(&self.dir).blob(&sha256(&self.chain.media[&seq]))
    }

    fn segment_seqs(&self) -> Vec<u64> {
        self.chain.media.keys().copied().collect()
    }
}

async fn server(dir: &Path) -> Running {
    start(
        dir,
        RunOptions {
            quic: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .await
    .unwrap()
}

/// Submit entries `range` of the chain through ingest, with their media.
fn ingest(r: &Running, f: &Fixture, range: std::ops::Range<usize>) {
    let s = &r.shared;
    let dev = f.device();
    for e in &f.chain.entries[range] {
        match quic::submit_blocking(s, f.key.verifying_key(), &e.to_bytes()) {
            Message::EntryReceipt(_) => {}
            m => panic!("not accepted: {m:?}"),
        }
        if let Some(bytes) = f.chain.media.get(&e.seq()) {
            let mut file = s.storage.open_partial(dev, e.seq(), 0).unwrap();
            file.write_all(bytes).unwrap();
            drop(file);
            s.storage
                .commit_partial(dev, e.seq(), &sha256(bytes), s.blobs.as_ref())
                .unwrap();
            s.db.put_media(dev, e.seq()).unwrap();
        }
    }
}

/// Enrol a device by putting its record in the running server's index.
fn register(r: &Running, key: &SigningKey, name: &str) {
    r.shared
        .db
        .put_device(&DeviceRecord {
            id: DeviceId::from_key(&key.verifying_key()),
            name: name.into(),
            key: key.verifying_key(),
            enrolled_us: 0,
            revoked_us: None,
        })
        .unwrap();
}

/// An initialised folder with one enrolled device and a running server.
async fn fixture() -> (Fixture, Running) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("pw".into())).unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let chain = sample::build(&key, &[3, 2], 3000);
    let r = server(&dir).await;
    register(&r, &key, "cam1");
    let f = Fixture {
        _tmp: tmp,
        dir,
        key,
        chain,
    };
    (f, r)
}

fn flip_bit(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    b[100] ^= 0x08;
    std::fs::write(path, b).unwrap();
}

fn kinds(report: &Value) -> Vec<(Option<u64>, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["seq"].as_u64(), f["kind"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_clean_archive_then_damage_missing_bytes_and_a_cut_tail() {
    let (f, r) = fixture().await;
    let n = f.chain.entries.len();
    ingest(&r, &f, 0..n);

    // While the server runs, through the control socket.
    let (code, out, err) = cli(&["verify", "--json"], &f.dir);
    assert_eq!(code, 0, "{out}{err}");
    let v = json(&out);
    assert_eq!(v["ok"], true);
    let rep = &v["devices"][0];
    assert_eq!(rep["device"], f.device().to_string());
    assert_eq!(rep["entries"], n as u64);
    assert_eq!(rep["media_verified"], f.segment_seqs().len() as u64);
    assert_eq!(v["receipts"][0]["checked"], n as u64);
    r.shutdown().await;

    // Without a server: the command opens the folder itself.
    let (code, out, _) = cli(&["verify"], &f.dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("OK"), "{out}");

    let segs = f.segment_seqs();
    let (bad, gone) = (segs[0], segs[1]);
    flip_bit(&f.blob(bad));
    std::fs::remove_file(f.blob(gone)).unwrap();
    let (code, out, _) = cli(
        &["verify", "--json", "--device", &f.device().to_string()],
        &f.dir,
    );
    assert_eq!(code, 1, "{out}");
    let v = json(&out);
    assert_eq!(v["ok"], false);
    let rep = &v["devices"][0];
    assert_eq!(
        kinds(rep),
        vec![
            (Some(bad), "media-mismatch".to_string()),
            (Some(gone), "missing-media".to_string())
        ]
    );
    let missing = &rep["findings"][1]["detail"];
    assert!(missing.as_str().unwrap().contains("promised"), "{missing}");

    // Cutting the last record off chain.log is only visible against the
    // index's head: truncated-chain.
    let log = DataDir::new(&f.dir).chain_log(f.device());
    let bytes = std::fs::read(&log).unwrap();
    let last = f.chain.entries[n - 1].to_bytes().len() + 2;
    std::fs::write(&log, &bytes[..bytes.len() - last]).unwrap();
    let (code, out, _) = cli(&["verify", "--json"], &f.dir);
    assert_eq!(code, 1);
    assert!(kinds(&json(&out)["devices"][0])
        .contains(&(Some(n as u64 - 1), "truncated-chain".to_string())));

    // Unreadable: an unknown device.
    let (code, out, err) = cli(&["verify", "--device", "0000000000000000"], &f.dir);
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_reports_a_forged_receipt() {
    let (f, r) = fixture().await;
    ingest(&r, &f, 0..3);
    r.shutdown().await;
    // Replace the stored receipt of seq 1 by one signed with another key.
    let db = Db::open(&f.dir).unwrap();
    let dev = f.device();
    let mut a = db.entry(dev, 1).unwrap().unwrap();
    let old = Receipt::from_bytes(&a.receipt).unwrap();
    let forged = Receipt::sign(
        dev,
        1,
        old.entry_hash,
        old.server_time_us,
        old.log_index,
        &SigningKey::from_bytes(&[9; 32]),
    );
    a.receipt = forged.to_bytes();
    let (head, len) = db.head_and_log_len(dev).unwrap();
    db.put_accepted(dev, 1, &a, head, len).unwrap();
    drop(db);
    let (code, out, _) = cli(&["verify", "--json"], &f.dir);
    assert_eq!(code, 1, "{out}");
    let v = json(&out);
    assert_eq!(v["devices"][0]["ok"], true, "the chain itself is fine");
    assert_eq!(v["receipts"][0]["problems"][0]["seq"], 1);
    assert_eq!(v["receipts"][0]["checked"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn scrub_finds_a_flipped_bit_moves_it_aside_and_asks_for_the_bytes_again() {
    let (f, r) = fixture().await;
    ingest(&r, &f, 0..f.chain.entries.len());
    let dev = f.device();
    assert!(r.shared.db.missing_media(dev, 100).unwrap().is_empty());
    let seq = f.segment_seqs()[2];
    let blob = f.blob(seq);

    let (code, out, _) = cli(&["scrub"], &f.dir);
    assert_eq!(code, 0, "{out}");

    flip_bit(&blob);
    // Through the running server, whose index then asks for the bytes in
    // the next Welcome.resend_media (filled from missing_media).
    let (code, out, err) = cli(&["scrub", "--json"], &f.dir);
    assert_eq!(code, 1, "{out}{err}");
    let v = json(&out);
    assert_eq!(v["ok"], false);
    let d = &v["damaged"][0];
    assert_eq!(d["sha256"], hex::encode(sha256(&f.chain.media[&seq])));
    assert_eq!(d["refs"][0]["device"], dev.to_string());
    assert_eq!(d["refs"][0]["seq"], seq);
    assert_eq!(r.shared.db.missing_media(dev, 100).unwrap(), vec![seq]);
    assert!(!blob.exists(), "moved out of blobs/");
    // The finding is a custody leaf of the log, after the entries' leaves.
    let n = f.chain.entries.len() as u64;
    assert_eq!(d["log_leaves"], serde_json::json!([n]));
    assert_eq!(r.shared.db.log_size().unwrap(), n + 1);
    let noted = std::fs::read_to_string(DataDir::new(&f.dir).damaged_log()).unwrap();
    let noted = json(noted.lines().next().unwrap());
    let leaf = Leaf::Custody {
        time_us: noted["time_us"].as_i64().unwrap(),
        action: fieldseal_proto::leaf::CustodyAction::Repair,
        actor: "scrub".into(),
        device: dev,
        first_seq: seq,
        last_seq: seq,
        case: None,
        detail: Some(format!("damaged blob {}", d["sha256"].as_str().unwrap())),
    };
    assert_eq!(r.shared.db.log_node(0, n).unwrap(), leaf.hash());
    let kept = DataDir::new(&f.dir)
        .damaged()
        .join(d["sha256"].as_str().unwrap());
    assert_ne!(
        std::fs::read(kept).unwrap(),
        f.chain.media[&seq],
        "kept as found"
    );
    assert!(std::fs::read_to_string(DataDir::new(&f.dir).damaged_log())
        .unwrap()
        .contains(&format!("\"seq\":{seq}")));
    r.shutdown().await;

    // A scrub told to stop (the server shuts down) stops before any blob.
    // (Waiting for the lock: on a loaded machine the last connection task
    // can take a moment to let go of the index.)
    let db = Db::open_waiting(&f.dir, std::time::Duration::from_secs(20)).unwrap();
    let blobs = fieldseal_server::blobstore::FolderStore::open(&f.dir).unwrap();
    let stopped = fieldseal_server::archive::scrub(
        &f.dir,
        &db,
        &blobs,
        0,
        &std::sync::atomic::AtomicBool::new(true),
    )
    .unwrap();
    assert!(!stopped.complete);
    assert_eq!(stopped.blobs, 0);
    drop(db);

    // Found once; the archive now lacks those bytes until the device resends.
    let (code, out, _) = cli(&["scrub"], &f.dir);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = cli(&["verify", "--json"], &f.dir);
    assert_eq!(code, 1);
    let rep = &json(&out)["devices"][0];
    assert_eq!(kinds(rep), vec![(Some(seq), "missing-media".to_string())]);
    assert!(rep["findings"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("scrub"));
}

/// A store that cannot be asked (an object store without a quorum) answers
/// every read with `NetworkDown`: scrub stops with an error instead of taking
/// the blobs for damaged (no quarantine, no repair leaf, nothing forgotten).
#[derive(Debug)]
struct Unreachable(fieldseal_server::blobstore::FolderStore);

impl fieldseal_server::blobstore::BlobStore for Unreachable {
    fn stat(&self, h: &fieldseal_proto::identity::Hash32) -> std::io::Result<Option<u64>> {
        self.0.stat(h)
    }
    fn open(
        &self,
        _: &fieldseal_proto::identity::Hash32,
    ) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NetworkDown,
            "503 Service Unavailable: no quorum",
        ))
    }
    fn put(
        &self,
        h: &fieldseal_proto::identity::Hash32,
        src: &mut dyn std::io::Read,
    ) -> std::io::Result<u64> {
        self.0.put(h, src)
    }
    fn quarantine(&self, h: &fieldseal_proto::identity::Hash32) -> std::io::Result<String> {
        self.0.quarantine(h)
    }
    fn was_quarantined(&self, h: &fieldseal_proto::identity::Hash32) -> std::io::Result<bool> {
        self.0.was_quarantined(h)
    }
    fn delete(&self, h: &fieldseal_proto::identity::Hash32) -> std::io::Result<bool> {
        self.0.delete(h)
    }
    fn list(&self) -> std::io::Result<Vec<fieldseal_proto::identity::Hash32>> {
        self.0.list()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scrub_stops_on_a_store_it_cannot_reach_and_damages_nothing() {
    let (f, r) = fixture().await;
    ingest(&r, &f, 0..f.chain.entries.len());
    let dev = f.device();
    r.shutdown().await;
    let db = Db::open_waiting(&f.dir, std::time::Duration::from_secs(20)).unwrap();
    let blobs = Unreachable(fieldseal_server::blobstore::FolderStore::open(&f.dir).unwrap());
    let e = fieldseal_server::archive::scrub(
        &f.dir,
        &db,
        &blobs,
        0,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .expect_err("scrub of a store it cannot reach succeeded");
    assert!(
        e.to_string().contains("blob store") || format!("{e:?}").contains("503"),
        "{e:?}"
    );
    assert!(
        db.missing_media(dev, 100).unwrap().is_empty(),
        "media forgotten"
    );
    assert!(
        !DataDir::new(&f.dir).damaged().exists(),
        "a blob quarantined"
    );
    assert!(!DataDir::new(&f.dir).damaged_log().exists(), "damage noted");
    for seq in f.segment_seqs() {
        assert!(f.blob(seq).exists());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn checkpoints_and_proofs_verify_with_proto_alone() {
    let (f, r) = fixture().await;
    let n = f.chain.entries.len();
    let receipt_key = r.shared.receipt_key.verifying_key();

    let (code, _, err) = cli(&["log", "prove", "--device", "00", "--seq", "0"], &f.dir);
    assert_eq!(code, 2, "{err}");

    ingest(&r, &f, 0..5);
    let (code, note1, err) = cli(&["log", "checkpoint"], &f.dir);
    assert_eq!(code, 0, "{err}");
    let cp1 = Checkpoint::verify(&note1, "fieldseal/localhost", &receipt_key).unwrap();
    assert_eq!(cp1.size, 5);

    ingest(&r, &f, 5..n);
    // Not yet in a checkpoint.
    let dev = f.device().to_string();
    let (code, _, err) = cli(
        &[
            "log",
            "prove",
            "--device",
            &dev,
            "--seq",
            &(n - 1).to_string(),
        ],
        &f.dir,
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("checkpoint"), "{err}");

    let (code, note2, _) = cli(&["log", "checkpoint"], &f.dir);
    assert_eq!(code, 0);
    let cp2 = Checkpoint::verify(&note2, "fieldseal/localhost", &receipt_key).unwrap();
    assert_eq!(cp2.size, n as u64);
    let stored = fieldseal_server::tlog::checkpoints(&f.dir).unwrap();
    assert_eq!(stored, vec![note1.clone(), note2.clone()]);
    r.shutdown().await;

    // Without a server, for every entry.
    for (i, entry) in f.chain.entries.iter().enumerate() {
        let seq = i as u64;
        let (code, out, err) = cli(
            &["log", "prove", "--device", &dev, "--seq", &seq.to_string()],
            &f.dir,
        );
        assert_eq!(code, 0, "{err}");
        let p = json(&out);
        // The leaf from the receipt alone, as a third party would build it.
        let receipt =
            Receipt::from_bytes(&hex::decode(p["receipt"].as_str().unwrap()).unwrap()).unwrap();
        receipt.verify(&receipt_key).unwrap();
        assert_eq!(receipt.entry_hash, entry.hash());
        let leaf = Leaf::Entry {
            device: receipt.device_id,
            seq: receipt.seq,
            entry_hash: receipt.entry_hash,
            server_time_us: receipt.server_time_us,
        };
        assert_eq!(p["leaf_hash"], hex::encode(leaf.hash()));
        let cp = Checkpoint::verify(
            p["checkpoint"].as_str().unwrap(),
            "fieldseal/localhost",
            &receipt_key,
        )
        .unwrap();
        let proof: Vec<[u8; 32]> = p["proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                hex::decode(h.as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap()
            })
            .collect();
        verify_inclusion(&leaf.hash(), receipt.log_index, cp.size, &proof, &cp.root).unwrap();
        // A proof of another leaf does not pass for this one.
        let other = Leaf::Entry {
            device: receipt.device_id,
            seq: receipt.seq,
            entry_hash: [0; 32],
            server_time_us: receipt.server_time_us,
        };
        assert!(
            verify_inclusion(&other.hash(), receipt.log_index, cp.size, &proof, &cp.root).is_err()
        );
    }

    let (code, out, err) = cli(&["log", "consistency", "--from", "5"], &f.dir);
    assert_eq!(code, 0, "{err}");
    let c = json(&out);
    assert_eq!(c["new_size"], n as u64);
    let proof: Vec<[u8; 32]> = c["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    verify_consistency(cp1.size, cp2.size, &cp1.root, &cp2.root, &proof).unwrap();
    assert!(verify_consistency(cp1.size, cp2.size, &cp2.root, &cp2.root, &proof).is_err());
    let (code, _, _) = cli(&["log", "consistency", "--from", "999"], &f.dir);
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn background_scrub_runs_at_the_configured_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("srv");
    fieldseal_server::admin::init(&dir, &[], Some("pw".into())).unwrap();
    let cfg = std::fs::read_to_string(DataDir::new(&dir).config()).unwrap();
    let cfg = cfg.replace("scrub_interval_secs = 86400", "scrub_interval_secs = 1");
    assert!(cfg.contains("scrub_interval_secs = 1\n"));
    std::fs::write(DataDir::new(&dir).config(), cfg).unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let r = server(&dir).await;
    register(&r, &key, "cam1");
    let f = Fixture {
        _tmp: tmp,
        dir,
        key,
        chain: sample::build(&SigningKey::from_bytes(&[7; 32]), &[2], 3000),
    };
    ingest(&r, &f, 0..f.chain.entries.len());
    let seq = f.segment_seqs()[0];
    flip_bit(&f.blob(seq));
    let t0 = std::time::Instant::now();
    while r
        .shared
        .db
        .missing_media(f.device(), 10)
        .unwrap()
        .is_empty()
    {
        assert!(t0.elapsed().as_secs() < 15, "background scrub did not run");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        r.shared.db.missing_media(f.device(), 10).unwrap(),
        vec![seq]
    );
    r.shutdown().await;
}

/// Submit entries `range` without their media (promised, not yet sent).
fn submit_only(r: &Running, f: &Fixture, range: std::ops::Range<usize>) {
    for e in &f.chain.entries[range] {
        match quic::submit_blocking(&r.shared, f.key.verifying_key(), &e.to_bytes()) {
            Message::EntryReceipt(_) => {}
            m => panic!("not accepted: {m:?}"),
        }
    }
}

/// "promised 3 s ago" changes with the clock: not a difference of the index.
fn without_ages(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("promised ") {
        out.push_str(&rest[..i + "promised ".len()]);
        rest = &rest[i + "promised ".len()..];
        let end = rest.find(" ago").expect("ago");
        out.push('…');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// What the index says about every entry of the device: receipts byte for
/// byte, media missing, head, log size and root.
type IndexState = (Vec<Option<Vec<u8>>>, Vec<u64>, String, u64, String);

fn index_state(dir: &Path, f: &Fixture) -> IndexState {
    let db = Db::open(dir).unwrap();
    let dev = f.device();
    let receipts = (0..f.chain.entries.len() as u64 + 1)
        .map(|s| db.entry(dev, s).unwrap().map(|a| a.receipt))
        .collect();
    let missing = db.missing_media(dev, 1000).unwrap();
    let (head, len) = db.head_and_log_len(dev).unwrap();
    let (size, root) = db.log_head().unwrap();
    (
        receipts,
        missing,
        format!("{head:?} {len}"),
        size,
        hex::encode(root),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn reindex_gives_the_same_report_receipts_and_log_root() {
    let (f, r) = fixture().await;
    let n = f.chain.entries.len();
    // Media for the first entries, only promises for the last two, and a
    // repair leaf from a scrub that finds a flipped bit.
    ingest(&r, &f, 0..n - 2);
    submit_only(&r, &f, n - 2..n);
    flip_bit(&f.blob(f.segment_seqs()[0]));
    let (code, _, _) = cli(&["scrub"], &f.dir);
    assert_eq!(code, 1);
    let (code, _, err) = cli(&["reindex"], &f.dir);
    assert_eq!(code, 2, "refused while the server runs");
    assert!(err.contains("stop it first"), "{err}");
    r.shutdown().await;

    let (code, before, _) = cli(&["verify", "--json"], &f.dir);
    assert_eq!(code, 1, "missing media is a finding: {before}");
    let state = index_state(&f.dir, &f);
    assert!(state.3 > n as u64, "the log holds the repair leaf too");
    let promised = f
        .segment_seqs()
        .iter()
        .filter(|s| **s >= n as u64 - 2)
        .count();
    assert_eq!(state.1.len(), promised + 1, "promised, and one moved aside");

    let (code, out, err) = cli(&["reindex", "--json"], &f.dir);
    assert_eq!(code, 0, "{out}{err}");
    let o = json(&out);
    assert_eq!(o["log_size"], state.3);
    assert_eq!(o["log_root"], state.4);
    assert_eq!(o["devices"][0]["entries"], n as u64);
    let (code, after, _) = cli(&["verify", "--json"], &f.dir);
    assert_eq!(code, 1);
    assert_eq!(without_ages(&after), without_ages(&before));
    assert_eq!(index_state(&f.dir, &f), state);

    // The index is gone for good but for devices (a bad disk, a botched
    // upgrade): reindex on a fresh index with the device put back.
    let keep = Db::open(&f.dir).unwrap().devices().unwrap();
    std::fs::remove_dir_all(DataDir::new(&f.dir).index()).unwrap();
    {
        let db = Db::open(&f.dir).unwrap();
        assert_eq!(
            db.log_size().unwrap(),
            state.3,
            "the log comes back from leaves.log"
        );
        for d in &keep {
            db.put_device(d).unwrap();
        }
        db.flush().unwrap();
    }
    let (code, out, err) = cli(&["reindex"], &f.dir);
    assert_eq!(code, 0, "{out}{err}");
    let (_, again, _) = cli(&["verify", "--json"], &f.dir);
    assert_eq!(without_ages(&again), without_ages(&before));
    assert_eq!(index_state(&f.dir, &f), state);

    // Files that disagree are named: a chain.log record that is not the
    // entry the log accepted.
    let log = DataDir::new(&f.dir).chain_log(f.device());
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&log, &bytes).unwrap();
    let (code, out, _) = cli(&["reindex"], &f.dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("PROBLEM chain.log record of seq 0"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_log_and_index_is_rolled_forward_not_accepted_twice() {
    let (f, r) = fixture().await;
    let n = f.chain.entries.len();
    ingest(&r, &f, 0..n - 1);
    // The last acceptance crashes after its leaf is durable, before the
    // index: chain.log and leaves.log have it, the index does not.
    let dev = f.device();
    let last = &f.chain.entries[n - 1];
    let (_, log_len) = r.shared.db.head_and_log_len(dev).unwrap();
    r.shared
        .storage
        .append_entry(dev, &last.to_bytes(), log_len)
        .unwrap();
    let leaf = Leaf::Entry {
        device: dev,
        seq: last.seq(),
        entry_hash: last.hash(),
        server_time_us: 1_700_000_000_000_000,
    };
    let index = r.shared.db.log_append(&leaf).unwrap();
    assert!(r.shared.db.entry(dev, last.seq()).unwrap().is_none());
    r.shutdown().await;

    let r = server(&f.dir).await;
    let a = r
        .shared
        .db
        .entry(dev, last.seq())
        .unwrap()
        .expect("rolled forward");
    let receipt = Receipt::from_bytes(&a.receipt).unwrap();
    assert_eq!(receipt.log_index, index);
    assert_eq!(receipt.server_time_us, 1_700_000_000_000_000);
    // The device, which never got the receipt, sends the entry again: it
    // gets that receipt, and the log no second leaf.
    let size = r.shared.db.log_size().unwrap();
    match quic::submit_blocking(&r.shared, f.key.verifying_key(), &last.to_bytes()) {
        Message::EntryReceipt(got) => assert_eq!(got.to_bytes(), a.receipt),
        m => panic!("{m:?}"),
    }
    assert_eq!(r.shared.db.log_size().unwrap(), size);
    r.shutdown().await;
    let (_, out, _) = cli(&["verify", "--json"], &f.dir);
    let v = json(&out);
    assert_eq!(v["receipts"][0]["problems"], serde_json::json!([]));
    assert_eq!(v["receipts"][0]["checked"], n as u64);
}

#[test]
fn leaves_that_reached_the_file_but_not_the_index_are_added_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let leaves: Vec<Leaf> = (0..5u64)
        .map(|i| Leaf::Entry {
            device: DeviceId([3; 8]),
            seq: i,
            entry_hash: sha256(&i.to_be_bytes()),
            server_time_us: 1,
        })
        .collect();
    {
        let db = Db::open(tmp.path()).unwrap();
        for l in &leaves[..3] {
            db.log_append(l).unwrap();
        }
    }
    // Two more reach leaves.log only (a crash before the index took them).
    let mut bytes = std::fs::read(DataDir::new(tmp.path()).leaves_log()).unwrap();
    for l in &leaves[3..] {
        fieldseal_proto::chainlog::put_record(&mut bytes, &l.to_bytes());
    }
    std::fs::write(DataDir::new(tmp.path()).leaves_log(), &bytes).unwrap();
    let db = Db::open(tmp.path()).unwrap();
    let hashes: Vec<_> = leaves.iter().map(Leaf::hash).collect();
    assert_eq!(
        db.log_head().unwrap(),
        (5, fieldseal_proto::merkle::root(&hashes))
    );
    drop(db);
    // A leaves.log that lost leaves the index has is refused, not "fixed".
    std::fs::write(
        DataDir::new(tmp.path()).leaves_log(),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let err = Db::open(tmp.path()).unwrap_err().to_string();
    assert!(
        err.contains("lost leaves") || err.contains("damaged"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_commit_answers_each_entry_as_one_at_a_time_would() {
    let (f, r) = fixture().await;
    let other_key = SigningKey::from_bytes(&[8; 32]);
    let other = sample::build(&other_key, &[2], 2000);
    register(&r, &other_key, "cam2");
    // The same device signing another seq 2 (a different first segment).
    let forked = sample::build(&f.key, &[3, 2], 3001);
    assert_ne!(forked.entries[2].hash(), f.chain.entries[2].hash());
    let (a, b) = (f.key.verifying_key(), other_key.verifying_key());
    let e = |c: &SampleChain, i: usize| c.entries[i].to_bytes();
    let items = vec![
        (a, e(&f.chain, 0)),
        (b, e(&other, 0)),
        (a, e(&f.chain, 1)),
        (a, e(&f.chain, 1)), // resent at once: the same receipt
        (a, e(&f.chain, 3)), // a gap: refused
        (a, e(&f.chain, 2)),
        (a, e(&forked, 2)), // equivocation against this very group
        (b, e(&other, 1)),
    ];
    let answers = quic::submit_group_blocking(&r.shared, &items);
    let receipt = |m: &Message| match m {
        Message::EntryReceipt(r) => r.clone(),
        m => panic!("not a receipt: {m:?}"),
    };
    let rejected = |m: &Message| match m {
        Message::EntryRejected(x) => x.code,
        m => panic!("not a rejection: {m:?}"),
    };
    assert_eq!(
        receipt(&answers[2]).to_bytes(),
        receipt(&answers[3]).to_bytes()
    );
    assert_eq!(
        rejected(&answers[4]),
        fieldseal_proto::msg::RejectCode::OutOfOrder
    );
    assert_eq!(
        rejected(&answers[6]),
        fieldseal_proto::msg::RejectCode::Equivocation
    );
    // Accepted entries get consecutive leaves in submission order.
    let indexes: Vec<u64> = [0, 1, 2, 5, 7]
        .iter()
        .map(|&i| receipt(&answers[i]).log_index)
        .collect();
    assert_eq!(indexes, vec![0, 1, 2, 3, 4]);
    assert_eq!(r.shared.db.log_size().unwrap(), 5);
    // What the index holds is what the group answered, and both chains go on.
    for (i, m) in answers.iter().enumerate() {
        if let Message::EntryReceipt(rc) = m {
            let dev = rc.device_id;
            let stored = r.shared.db.entry(dev, rc.seq).unwrap().unwrap();
            assert_eq!(stored.receipt, rc.to_bytes(), "item {i}");
        }
    }
    assert_eq!(r.shared.db.head(f.device()).unwrap().next_seq, 3);
    ingest(&r, &f, 3..f.chain.entries.len());
    r.shutdown().await;
    let (code, out, _) = cli(&["verify", "--json"], &f.dir);
    let v = json(&out);
    assert_eq!(code, 1, "{out}");
    // Only media never uploaded is missing: that of seq 2 of the first
    // device (the group took its entry alone); the other device sent no
    // segment yet.
    for d in v["devices"].as_array().unwrap() {
        let want = if d["device"] == f.device().to_string() {
            vec![(Some(2), "missing-media".to_string())]
        } else {
            vec![]
        };
        assert_eq!(kinds(d), want, "{out}");
    }
    assert!(v["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["problems"] == serde_json::json!([])));
}
