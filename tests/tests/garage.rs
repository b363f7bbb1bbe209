//! Blobs on a real Garage cluster (issue 18): three nodes on loopback with
//! `replication_factor = 3` and `consistency_mode = "consistent"`
//! (`fieldseal_tests::garage`), the server's `[blobs] kind = "s3"` on it.
//!
//! Skipped with a message when there is no Garage binary, except in CI.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fieldseal_agent::sync::{self, MemStore, Progress};
use fieldseal_proto::identity::{sha256, Hash32};
use fieldseal_proto::sample::SampleChain;
use fieldseal_server::blobstore::{conformance, rehash, BlobStore};
use fieldseal_tests::garage::{self, Garage};
use fieldseal_tests::{Device, Harness};

/// A sync that has all it needs finishes in seconds; this is for a loaded
/// two-core machine, and for uploads that wait out a lost quorum.
const LIMIT: Duration = Duration::from_secs(240);

fn cluster(test: &str) -> Option<Garage> {
    let bin = garage::binary_or_skip(test)?;
    Some(Garage::start(&bin).expect("start a three-node Garage on loopback"))
}

/// A server whose blobs are in a new bucket of `g`, through node 0.
async fn server_on(g: &mut Garage) -> Harness {
    let bucket = g.bucket().unwrap();
    let blobs = g
        .config_toml(0, &bucket, &g.dir.path().join(format!("{bucket}.toml")))
        .unwrap();
    Harness::start_configured(|c| c + &blobs).await.unwrap()
}

fn segment_hash(chain: &SampleChain, seq: u64) -> Hash32 {
    chain.entries[usize::try_from(seq).unwrap()]
        .entry
        .segment()
        .unwrap()
        .media_sha256
}

/// Start syncing `d` with `h` in the background, as a recording agent would:
/// the task and its progress. `d` stays the caller's, media folder included.
fn start_sync(
    h: &Harness,
    d: &Device,
) -> (
    tokio::task::JoinHandle<Result<sync::Stats, sync::SyncError>>,
    Arc<Progress>,
) {
    let cfg = Harness::sync_config(&h.server_addr(), &d.key, &d.enrollment);
    let progress = Arc::new(Progress::default());
    let task = tokio::spawn(sync::sync_until_drained(
        d.store.clone(),
        cfg,
        progress.clone(),
    ));
    (task, progress)
}

/// Every segment the agent saw acknowledged is in the bucket, byte for byte
/// (read back through `other`, another node's endpoint, hash checked), and
/// the server's own verify over S3 passes. Returns how many were acked.
fn assert_acked_are_held(
    h: &Harness,
    chain: &SampleChain,
    store: &MemStore,
    other: &dyn BlobStore,
) -> usize {
    let acked = store.acked();
    for seq in &acked {
        let hash = segment_hash(chain, *seq);
        let mut got = Vec::new();
        other
            .open(&hash)
            .unwrap_or_else(|e| panic!("acked seq {seq} is not in the bucket: {e}"))
            .read_to_end(&mut got)
            .unwrap_or_else(|e| panic!("acked seq {seq} does not read back good: {e}"));
        assert!(got == chain.media[seq], "seq {seq}: bytes differ");
    }
    let out = fieldseal_server::archive::verify(
        h.path(),
        &h.server.shared.db,
        h.server.shared.blobs.as_ref(),
        None,
        fieldseal_server::now_us(),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(out.ok, "verify over S3: {}", out.human());
    acked.len()
}

/// Nothing of a blob is kept in the data folder once the store is S3.
fn data_folder_holds_no_blobs(h: &Harness) {
    let blobs = fieldseal_server::datadir::DataDir::new(h.path()).blobs();
    let files = garage::files_under(&blobs);
    assert!(files.is_empty(), "blobs in the data folder: {files:?}");
}

#[test]
fn s3_store_passes_the_blobstore_conformance_checks() {
    let Some(g) = cluster("s3_store_passes_the_blobstore_conformance_checks") else {
        return;
    };
    let g = Mutex::new(g);
    conformance::run_all(&|| {
        let mut g = g.lock().unwrap();
        let b = g.bucket().unwrap();
        Box::new(g.store(0, &b))
    });
    // A blob above one multipart part goes up in parts, and a wrong one is
    // refused after its last part, leaving nothing.
    let mut g = g.into_inner().unwrap();
    let b = g.bucket().unwrap();
    let s = g.store(1, &b);
    let big: Vec<u8> = (0..fieldseal_server::blobstore::s3::PART * 2 + 5)
        .map(|i| u8::try_from(i % 253).unwrap())
        .collect();
    let h = sha256(&big);
    assert_eq!(s.put(&h, &mut big.as_slice()).unwrap(), big.len() as u64);
    assert_eq!(rehash(&s, &h).unwrap(), (h, big.len() as u64));
    let mut wrong = big.clone();
    *wrong.last_mut().unwrap() ^= 1;
    let hw = sha256(b"not these bytes");
    assert!(s.put(&hw, &mut wrong.as_slice()).is_err());
    assert_eq!(
        s.list().unwrap(),
        vec![h],
        "the refused upload left an object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_and_sync_with_blobs_on_garage() {
    let Some(mut g) = cluster("record_and_sync_with_blobs_on_garage") else {
        return;
    };
    let h = server_on(&mut g).await;
    let d = h.device(31, &[4, 3], 300_000).await.unwrap();
    let cfg = Harness::sync_config(&h.server_addr(), &d.key, &d.enrollment);
    tokio::time::timeout(
        LIMIT,
        sync::sync_until_drained(d.store.clone(), cfg, Arc::new(Progress::default())),
    )
    .await
    .expect("sync finished in time")
    .expect("sync");
    assert_eq!(
        d.store.acked().len(),
        d.chain.media.len(),
        "every segment acked"
    );
    let bucket = "fieldseal-1";
    let other = g.store(2, bucket);
    assert_acked_are_held(&h, &d.chain, &d.store, &other);
    data_folder_holds_no_blobs(&h);
    h.server.shutdown().await;
}

/// One node of three killed while segments upload: every acknowledged
/// segment is readable and verifies after, with the node still down and
/// once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_down_during_uploads_loses_nothing() {
    let Some(mut g) = cluster("one_node_down_during_uploads_loses_nothing") else {
        return;
    };
    let h = server_on(&mut g).await;
    let d = h.device(32, &[6, 6], 400_000).await.unwrap();
    let (store, chain) = (&d.store, &d.chain);
    let (task, progress) = start_sync(&h, &d);
    // Kill node 2 once the first segments are acknowledged, while the rest
    // are on their way.
    while progress.uploads_acked.load(Ordering::Relaxed) < 2 && !task.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = progress.uploads_acked.load(Ordering::Relaxed);
    g.stop(2);
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("sync finished in time")
        .unwrap()
        .expect("sync with one node down");
    assert_eq!(
        store.acked().len(),
        chain.media.len(),
        "every segment acked"
    );
    assert!(
        before < chain.media.len() as u64,
        "node 2 was stopped after every upload ({before}): the test did not test"
    );
    let via1 = g.store(1, "fieldseal-1");
    assert_acked_are_held(&h, chain, store, &via1);
    g.restart(2).unwrap();
    let via2 = g.store(2, "fieldseal-1");
    assert_acked_are_held(&h, chain, store, &via2);
    h.server.shutdown().await;
}

/// Two nodes of three down: no quorum, so no segment is acknowledged (its
/// bytes stay on the device, or in the data folder as a partial upload) and
/// the sync waits; when they return, the uploads resume and everything is held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_down_uploads_wait_then_resume() {
    let Some(mut g) = cluster("two_nodes_down_uploads_wait_then_resume") else {
        return;
    };
    let h = server_on(&mut g).await;
    let d = h.device(33, &[3], 200_000).await.unwrap();
    let (store, chain) = (&d.store, &d.chain);
    g.stop(1);
    g.stop(2);
    let (task, progress) = start_sync(&h, &d);
    // Entries need no blob store: they are receipted. Their segments then
    // wait (the store answers 503 without a quorum, and the client retries).
    let entries = chain.entries.len() as u64;
    let mut waited = 0;
    while progress.receipts.load(Ordering::Relaxed) < entries {
        assert!(
            !task.is_finished(),
            "sync ended with two nodes of three down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += 1;
        assert!(waited < 4_000, "entries not receipted with two nodes down");
    }
    // However long it waits, nothing is acknowledged without a write quorum.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        store.acked().is_empty(),
        "acked without a durable write: {:?}",
        store.acked()
    );
    assert_eq!(progress.uploads_acked.load(Ordering::Relaxed), 0);
    assert!(!task.is_finished(), "the sync gave up instead of waiting");
    g.restart(1).unwrap();
    g.restart(2).unwrap();
    tokio::time::timeout(LIMIT, task)
        .await
        .expect("sync finished once the nodes returned")
        .unwrap()
        .expect("sync");
    assert_eq!(
        store.acked().len(),
        chain.media.len(),
        "every segment acked"
    );
    let via2 = g.store(2, "fieldseal-1");
    assert_acked_are_held(&h, chain, store, &via2);
    h.server.shutdown().await;
}

/// A block damaged on one node's disk: whatever Garage answers, the store
/// never reads wrong bytes as the blob. An object whose bytes are not its
/// name (overwritten behind the server's back) fails the read, and scrub
/// names and quarantines it; the device sends it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_object_is_never_read_as_good() {
    let Some(mut g) = cluster("damaged_object_is_never_read_as_good") else {
        return;
    };
    let h = server_on(&mut g).await;
    let d = h.device(34, &[3], 250_000).await.unwrap();
    let cfg = Harness::sync_config(&h.server_addr(), &d.key, &d.enrollment);
    tokio::time::timeout(
        LIMIT,
        sync::sync_until_drained(d.store.clone(), cfg.clone(), Arc::new(Progress::default())),
    )
    .await
    .expect("sync finished in time")
    .expect("sync");

    // Every block file on node 0's disk damaged.
    let files = garage::files_under(&g.data_dir(0));
    assert!(!files.is_empty(), "node 0 holds no block files");
    for f in &files {
        let mut b = std::fs::read(f).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 0x55;
        std::fs::write(f, b).unwrap();
    }
    let via0 = g.store(0, "fieldseal-1");
    for (seq, media) in &d.chain.media {
        let hash = segment_hash(&d.chain, *seq);
        let mut got = Vec::new();
        match via0.open(&hash).and_then(|mut r| r.read_to_end(&mut got)) {
            Ok(_) => assert!(got == *media, "seq {seq}: damaged bytes read as good"),
            Err(e) => eprintln!("seq {seq}: refused ({e}), as it may be"),
        }
    }

    // Bytes that are not the name's, put behind the server's back.
    let (seq, _) = d.chain.media.iter().next().unwrap();
    let hash = segment_hash(&d.chain, *seq);
    let wrong = g.dir.path().join("wrong");
    std::fs::write(&wrong, vec![7u8; 250_000]).unwrap();
    curl_put(
        &g,
        "fieldseal-1",
        &format!("blobs/{}", hex::encode(hash)),
        &wrong,
    );
    let e = rehash(&via0, &hash).expect_err("wrong bytes read as the blob");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    let out = fieldseal_server::archive::scrub(
        h.path(),
        &h.server.shared.db,
        h.server.shared.blobs.as_ref(),
        fieldseal_server::now_us(),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert_eq!(out.damaged.len(), 1, "{}", out.human());
    assert_eq!(out.damaged[0].sha256, hex::encode(hash));
    assert!(
        out.damaged[0].refs.iter().any(|r| r.seq == *seq),
        "{}",
        out.human()
    );
    assert!(via0.was_quarantined(&hash).unwrap());
    assert_eq!(
        via0.stat(&hash).unwrap(),
        None,
        "still held after quarantine"
    );
    // The device still has the bytes: the next sync sends them again.
    tokio::time::timeout(
        LIMIT,
        sync::sync_until_drained(d.store.clone(), cfg, Arc::new(Progress::default())),
    )
    .await
    .expect("sync finished in time")
    .expect("sync");
    let via1 = g.store(1, "fieldseal-1");
    assert_acked_are_held(&h, &d.chain, &d.store, &via1);
    h.server.shutdown().await;
}

/// PUT a file with curl, signed with SigV4, as an outsider would.
fn curl_put(g: &Garage, bucket: &str, key: &str, file: &std::path::Path) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--aws-sigv4",
            &format!("aws:amz:{}:s3", garage::REGION),
        ])
        .args(["--user", &format!("{}:{}", garage::KEY_ID, garage::SECRET)])
        // Garage wants the header, even for an unsigned payload.
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .arg("-T")
        .arg(file)
        .arg(format!("{}/{bucket}/{key}", g.endpoint(0)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 18's plan in small (docs/SCALE.md, "Many ingest servers"): two
/// ingest servers, each with its own data folder, CA, index and log, share
/// one Garage bucket; devices are split between them. Server A stops while
/// its device is uploading; B's device syncs from start to end while A is
/// away (B keeps receipting); A starts again on its folder and address, and
/// its device finishes on its own retries. Every acknowledged segment of
/// both is in the bucket, reads back good through a third node, and each
/// server's verify over S3 passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_servers_share_one_cluster_and_one_restarts() {
    let Some(mut g) = cluster("two_ingest_servers_share_one_cluster_and_one_restarts") else {
        return;
    };
    let bucket = g.bucket().unwrap();
    let shared_bucket = |g: &Garage, node: usize, name: &str| {
        g.config_toml(node, &bucket, &g.dir.path().join(name))
            .unwrap()
    };
    let via0 = shared_bucket(&g, 0, "a.toml");
    let via1 = shared_bucket(&g, 1, "b.toml");
    let a = Harness::start_configured(|c| c + &via0).await.unwrap();
    let b = Harness::start_configured(|c| c + &via1).await.unwrap();
    let da = a.device(41, &[5, 5], 300_000).await.unwrap();
    let db = b.device(42, &[5, 5], 300_001).await.unwrap();
    assert_ne!(
        da.enrollment.ca_cert, db.enrollment.ca_cert,
        "each server is its own authority"
    );

    // A's device starts; A stops once some of its segments are held.
    let a_addr = a.server.quic_addr;
    let (task_a, pa) = start_sync(&a, &da);
    while pa.uploads_acked.load(Ordering::Relaxed) < 2 && !task_a.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Harness { dir: a_dir, server } = a;
    server.shutdown().await;
    let acked_before = pa.uploads_acked.load(Ordering::Relaxed);
    assert!(
        acked_before < da.chain.media.len() as u64,
        "A stopped after every upload ({acked_before}): the test did not test"
    );

    // B's device syncs everything while A is away.
    let pb = Arc::new(Progress::default());
    tokio::time::timeout(
        LIMIT,
        sync::sync_until_drained(
            db.store.clone(),
            Harness::sync_config(&b.server_addr(), &db.key, &db.enrollment),
            pb.clone(),
        ),
    )
    .await
    .expect("B's device drained in time")
    .expect("B's device syncs while A is down");
    assert!(!task_a.is_finished(), "A's device waits for its own server");
    assert_eq!(
        pb.receipts.load(Ordering::Relaxed),
        db.chain.entries.len() as u64,
        "B receipted every entry of its device while A was down"
    );

    // A comes back on its folder and address; its device finishes by itself.
    let server = fieldseal_server::start(
        a_dir.path(),
        fieldseal_server::RunOptions {
            quic: Some(a_addr),
            http: Some("127.0.0.1:0".parse().unwrap()),
        },
    )
    .await
    .expect("A starts again on its folder");
    let a = Harness { dir: a_dir, server };
    tokio::time::timeout(LIMIT, task_a)
        .await
        .expect("A's device drained in time")
        .unwrap()
        .expect("A's device syncs after the restart");
    assert!(
        pa.connections.load(Ordering::Relaxed) >= 2,
        "A's device reconnected"
    );

    let via2 = g.store(2, &bucket);
    for (h, d) in [(&a, &da), (&b, &db)] {
        assert_eq!(
            d.store.acked().len(),
            d.chain.media.len(),
            "every segment acked"
        );
        assert_acked_are_held(h, &d.chain, &d.store, &via2);
        data_folder_holds_no_blobs(h);
    }
    assert_eq!(
        via2.list().unwrap().len(),
        da.chain.media.len() + db.chain.media.len(),
        "the bucket holds both servers' segments and nothing else"
    );
    a.server.shutdown().await;
    b.server.shutdown().await;
}
