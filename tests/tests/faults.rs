//! The fault-injection suite (issue 6), short form. Every scenario is seeded
//! (`FIELDSEAL_SEED=N` replays one) and ends with the invariant check of
//! `fieldseal_tests::faults`. Longer runs: `make soak` (scripts/soak.sh), which
//! raises the `FIELDSEAL_*` counts read by [`iterations`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldseal_agent::sync::{self, MemStore, Progress, SyncConfig};
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::sample::SampleChain;
use fieldseal_tests::faults::{self, iterations, AgentView, Scenario, ServerView, Verdict};
use fieldseal_tests::{key, store_with_chain, Device, Harness, Relay, SplitMix};

/// A generous bound for one sync under faults (the faults heal within seconds).
const LIMIT: Duration = Duration::from_secs(120);

/// The invariant for an in-process agent store and server.
fn verdict(h: &Harness, k: &ed25519_dalek::SigningKey, store: &MemStore, panics: u64) -> Verdict {
    let agent = AgentView::from_mem(store);
    let durable = agent.durable();
    let device = DeviceId::from_key(&k.verifying_key());
    let server = ServerView::read(
        h.path(),
        &h.server.shared.db,
        h.server.shared.blobs.clone(),
        device,
    )
    .unwrap();
    let mut v = faults::check(&k.verifying_key(), &durable, &agent, &server, panics);
    faults::check_rss(
        &mut v,
        "test process",
        faults::peak_rss_kb(std::process::id()),
        2048,
    );
    v
}

/// Everything the agent holds must be on the server after a drained sync.
fn assert_drained(chain: &SampleChain, store: &MemStore) {
    let agent = AgentView::from_mem(store);
    assert_eq!(
        agent.receipts.len(),
        chain.entries.len(),
        "every entry receipted"
    );
    assert_eq!(
        agent.media_acked.len(),
        chain.media.len(),
        "every segment acknowledged"
    );
}

/// One link profile drawn from the seed: loss, delay, jitter, reordering,
/// duplication, corruption.
fn profile(r: &mut SplitMix) -> (u32, u32, u32, u32, u32, u32) {
    let loss = (r.next_u64() % 150) as u32; // up to 15 %
    let delay = (r.next_u64() % 80) as u32;
    let jitter = (r.next_u64() % 40) as u32;
    let reorder = if r.chance(300) {
        (r.next_u64() % 20) as u32
    } else {
        0
    };
    let dup = (r.next_u64() % 30) as u32;
    let corrupt = (r.next_u64() % 50) as u32; // up to 5 % of datagrams
    (loss, delay, jitter, reorder, dup, corrupt)
}

async fn sync_through(
    store: Arc<MemStore>,
    cfg: SyncConfig,
) -> (
    tokio::task::JoinHandle<Result<sync::Stats, sync::SyncError>>,
    Arc<Progress>,
) {
    let progress = Arc::new(Progress::default());
    let task = tokio::spawn(sync::sync_until_drained(store, cfg, progress.clone()));
    (task, progress)
}

/// Seeded link profiles, one device each, every one drained through the
/// impaired relay and checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impaired_links_lose_nothing() {
    let sc = Scenario::new("impaired_links_lose_nothing");
    let panics = faults::panics();
    let n = iterations("FIELDSEAL_NET_PROFILES", 3);
    let h = Harness::start().await.unwrap();
    let mut r = sc.rng(1);
    let t0 = Instant::now();
    let mut total = Verdict::default();
    for i in 0..n {
        let k = key(100 + (i % 100) as u8);
        let e = h.enroll(&k).await;
        let e = match e {
            Ok(e) => e,
            Err(_) => continue, // a key enrolled by an earlier round (i ≥ 100)
        };
        let media_dir = tempfile::tempdir().unwrap();
        // Distinct lengths give distinct bytes: blobs are shared by content.
        let len = 50_000 + (r.next_u64() % 50_000) as usize;
        let (store, chain) = store_with_chain(&k, &[2, 2], len, media_dir.path()).unwrap();
        let relay = Relay::start(h.server.quic_addr, r.next_u64())
            .await
            .unwrap();
        let (loss, delay, jitter, reorder, dup, corrupt) = profile(&mut r);
        relay.set(loss, delay, reorder, dup);
        relay.set_corruption_jitter(corrupt, jitter);
        eprintln!("profile {i}: loss {loss}‰ delay {delay} ms jitter {jitter} ms reorder {reorder} ms dup {dup}‰ corrupt {corrupt}‰");
        let cfg = Harness::sync_config(&relay.addr.to_string(), &k, &e);
        let (task, _) = sync_through(store.clone(), cfg).await;
        let stats = tokio::time::timeout(LIMIT, task)
            .await
            .expect("drained in time")
            .unwrap()
            .unwrap();
        eprintln!(
            "  {stats:?}; relay dropped {} corrupted {}",
            relay.knobs.dropped.load(Ordering::Relaxed),
            relay.knobs.corrupted.load(Ordering::Relaxed)
        );
        assert_drained(&chain, &store);
        let v = verdict(&h, &k, &store, panics);
        v.assert_ok();
        total.acknowledged += v.acknowledged;
        total.durable += v.durable;
    }
    sc.record(
        &total,
        n,
        &[(
            "impaired_seconds",
            format!("{:.0}", t0.elapsed().as_secs_f64()),
        )],
    );
    h.server.shutdown().await;
}

/// Partitions (both ways, one way each direction) of seeded lengths and a
/// flapping link while a backlog uploads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_and_flapping_lose_nothing() {
    let sc = Scenario::new("partitions_and_flapping_lose_nothing");
    let panics = faults::panics();
    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(90, &[4, 3, 3], 400_000).await.unwrap();
    let relay = Relay::start(h.server.quic_addr, sc.seed()).await.unwrap();
    relay.set(20, 20, 0, 0);
    let cfg = Harness::sync_config(&relay.addr.to_string(), &k, &e);
    let (task, progress) = sync_through(store.clone(), cfg).await;
    let mut r = sc.rng(2);
    let faults_n = iterations("FIELDSEAL_PARTITIONS", 6);
    let t0 = Instant::now();
    for i in 0..faults_n {
        if task.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 + r.next_u64() % 400)).await;
        let len = Duration::from_millis(200 + r.next_u64() % 4000);
        match r.next_u64() % 4 {
            0 => relay.cut(true),
            1 => relay.cut_one_way(true, false),
            2 => relay.cut_one_way(false, true),
            _ => {
                // Flapping: seeded on/off periods of 20–300 ms.
                let end = Instant::now() + len;
                while Instant::now() < end {
                    relay.cut(true);
                    tokio::time::sleep(Duration::from_millis(20 + r.next_u64() % 280)).await;
                    relay.cut(false);
                    tokio::time::sleep(Duration::from_millis(20 + r.next_u64() % 280)).await;
                }
            }
        }
        eprintln!("fault {i}: {len:?}, progress {:?}", progress.snapshot());
        tokio::time::sleep(len).await;
        relay.cut(false);
        relay.cut_one_way(false, false);
    }
    let stats = tokio::time::timeout(LIMIT, task)
        .await
        .expect("drained in time")
        .unwrap()
        .unwrap();
    eprintln!("{stats:?} after {:?}", t0.elapsed());
    assert_drained(&chain, &store);
    let v = verdict(&h, &k, &store, panics);
    sc.record(
        &v,
        faults_n,
        &[(
            "impaired_seconds",
            format!("{:.0}", t0.elapsed().as_secs_f64()),
        )],
    );
    v.assert_ok();
    h.server.shutdown().await;
}

/// The agent's address changes (a NAT rebinding) in the middle of a large
/// upload: QUIC migrates the connection and the upload carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_change_mid_upload_migrates() {
    const LEN: usize = 8 * 1024 * 1024;
    let sc = Scenario::new("address_change_mid_upload_migrates");
    let panics = faults::panics();
    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(91, &[2], LEN).await.unwrap();
    let relay = Relay::start(h.server.quic_addr, sc.seed()).await.unwrap();
    relay.set(0, 5, 0, 0);
    let cfg = Harness::sync_config(&relay.addr.to_string(), &k, &e);
    let (task, progress) = sync_through(store.clone(), cfg).await;
    let mut r = sc.rng(3);
    let rebinds = iterations("FIELDSEAL_REBINDS", 2);
    let t0 = Instant::now();
    for i in 0..rebinds {
        // At a seeded share of the bytes (10–90 % of the total).
        let at = (2 * LEN as u64) * (1 + (i * 8 + r.next_u64() % 8) / rebinds.max(1)) / 10;
        while progress.media_bytes_sent.load(Ordering::Relaxed) < at && !task.is_finished() {
            assert!(t0.elapsed() < LIMIT, "upload progressed");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if task.is_finished() {
            break;
        }
        let old = relay.upstream_addr();
        let new = relay.rebind().await.unwrap();
        eprintln!(
            "rebind {i} at {} bytes: {old} → {new}",
            progress.media_bytes_sent.load(Ordering::Relaxed)
        );
    }
    let stats = tokio::time::timeout(LIMIT, task)
        .await
        .expect("drained in time")
        .unwrap()
        .unwrap();
    let ratio = stats.media_bytes_sent as f64 / (2 * LEN) as f64;
    eprintln!("{stats:?}; sent/segments = {ratio:.3}");
    assert_eq!(
        stats.connections, 1,
        "the connection migrated instead of reconnecting"
    );
    assert!(ratio <= 1.1, "nothing re-sent: {ratio}");
    assert_drained(&chain, &store);
    let v = verdict(&h, &k, &store, panics);
    sc.record(&v, rebinds, &[]);
    v.assert_ok();
    h.server.shutdown().await;
}

/// The server's disk fills up in the middle of uploads (its data folder on
/// a small tmpfs): nothing is acknowledged that is not durable, the server
/// stays up, and once there is room the backlog drains. (Before main's
/// `flush` before `sync_data` in the upload path, this caught the server
/// acknowledging truncated blobs: tokio::fs::File swallowed ENOSPC.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_disk_full_acknowledges_nothing_it_lacks() {
    let sc = Scenario::new("server_disk_full_acknowledges_nothing_it_lacks");
    let panics = faults::panics();
    let t = tempfile::tempdir().unwrap();
    let mnt = t.path().join("server");
    let fs = match fieldseal_tests::procs::Tmpfs::mount(&mnt, 256 << 20) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED server_disk_full_acknowledges_nothing_it_lacks: cannot mount a tmpfs: {why}");
            return;
        }
    };
    let h = Harness::start_in(&mnt).await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(92, &[4, 4], 300_000).await.unwrap();
    let mut r = sc.rng(6);
    // Room for the entries and 0–3 segments.
    let room = 64 * 1024 + r.next_u64() % 900_000;
    let used = fs.used();
    fs.resize(used + room).unwrap();
    eprintln!("server tmpfs: {used} used + {room} free");
    let cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    let (task, progress) = sync_through(store.clone(), cfg.clone()).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stalled = progress.snapshot();
    task.abort();
    eprintln!("disk full: {stalled:?}, {} used", fs.used());
    assert!(
        stalled.uploads_acked < chain.media.len() as u64,
        "the disk did fill before everything was acknowledged"
    );
    let v = verdict(&h, &k, &store, panics);
    v.assert_ok();
    // Room again: everything drains, on the same running server.
    fs.resize(256 << 20).unwrap();
    let (task, _) = sync_through(store.clone(), cfg).await;
    let stats = tokio::time::timeout(LIMIT, task)
        .await
        .expect("drained in time")
        .unwrap()
        .unwrap();
    eprintln!("after: {stats:?}");
    assert_drained(&chain, &store);
    let v = verdict(&h, &k, &store, panics);
    sc.record(
        &v,
        1,
        &[("acked_while_full", stalled.uploads_acked.to_string())],
    );
    v.assert_ok();
    h.server.shutdown().await;
    drop(fs);
}

/// Bit rot on the server: a flipped bit in a stored blob is named by scrub
/// (blob and segment), the segment is asked for again and re-sent by the
/// agent; a flipped bit in the stored chain log is named by verify. The
/// invariant checker must see the rotted chain log (it can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_bit_rot_is_named_and_repaired() {
    let sc = Scenario::new("server_bit_rot_is_named_and_repaired");
    let panics = faults::panics();
    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(93, &[3, 2], 70_001).await.unwrap();
    let cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    let (task, _) = sync_through(store.clone(), cfg.clone()).await;
    tokio::time::timeout(LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    verdict(&h, &k, &store, panics).assert_ok();

    // A flipped bit in a seeded blob.
    let mut r = sc.rng(7);
    let segs: Vec<u64> = chain.media.keys().copied().collect();
    let seq = segs[usize::try_from(r.next_u64() % segs.len() as u64).unwrap()];
    let hash = chain.entries[usize::try_from(seq).unwrap()]
        .entry
        .segment()
        .unwrap()
        .media_sha256;
    let blob = faults::server_blob_path(h.path(), &hash);
    let mut bytes = std::fs::read(&blob).unwrap();
    let bit = r.next_u64() % (bytes.len() as u64 * 8);
    bytes[usize::try_from(bit / 8).unwrap()] ^= 1 << (bit % 8);
    std::fs::write(&blob, &bytes).unwrap();
    eprintln!("flipped bit {bit} of the blob of seq {seq}");
    let v = verdict(&h, &k, &store, panics);
    assert!(
        !v.lost.is_empty(),
        "the checker sees the acknowledged media rotted: {v:?}"
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let out = fieldseal_server::archive::scrub(
        h.path(),
        &h.server.shared.db,
        h.server.shared.blobs.as_ref(),
        fieldseal_server::now_us(),
        &stop,
    )
    .unwrap();
    eprintln!("{}", out.human());
    assert!(!out.ok);
    assert_eq!(out.damaged.len(), 1, "{}", out.human());
    assert_eq!(out.damaged[0].sha256, hex::encode(hash));
    assert!(
        out.damaged[0].refs.iter().any(|b| b.seq == seq),
        "scrub names seq {seq}"
    );
    // The agent still holds the bytes: the next sync sends them again.
    let (task, _) = sync_through(store.clone(), cfg).await;
    tokio::time::timeout(LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v = verdict(&h, &k, &store, panics);
    // The figures are those of the repaired archive (below, the chain log is
    // damaged on purpose and the checker must fail).
    sc.record(&v, 2, &[("rotted_blob_seq", seq.to_string())]);
    v.assert_ok();

    // A flipped bit in the stored chain log: verify names the seq.
    let device = DeviceId::from_key(&k.verifying_key());
    let log = faults::server_chain_log(h.path(), device);
    let mut bytes = std::fs::read(&log).unwrap();
    // Inside the signature of a seeded record (the last 64 bytes before each
    // record's end are its signature; flipping any of them keeps the framing).
    let target = usize::try_from(r.next_u64() % chain.entries.len() as u64).unwrap();
    let mut end = 0;
    let mut rec = Vec::new();
    for en in &chain.entries {
        let mut one = Vec::new();
        fieldseal_proto::chainlog::put_record(
            &mut one,
            &fieldseal_proto::codec::Encode::to_bytes(en),
        );
        end += one.len();
        rec.push(end);
    }
    let at = rec[target] - 10;
    bytes[at] ^= 0x10;
    std::fs::write(&log, &bytes).unwrap();
    let server = ServerView::read(
        h.path(),
        &h.server.shared.db,
        h.server.shared.blobs.clone(),
        device,
    )
    .unwrap();
    eprintln!("{}", server.verify_text);
    assert!(!server.verify_ok, "verify sees the rotted chain log");
    let report = server.report.as_ref().unwrap();
    assert!(
        report.findings.iter().any(|f| f.seq == Some(target as u64)),
        "verify names seq {target}: {:?}",
        report.findings
    );
    let v = verdict(&h, &k, &store, panics);
    assert!(
        !v.problems.is_empty() || !v.lost.is_empty(),
        "the invariant check fails on a rotted archive"
    );
    h.server.shutdown().await;
}

/// The fault-injecting twin of the server's `BlobStore` conforms when no
/// fault is planned, and each planned fault is reported by the server's
/// verify and scrub (never taken for success); a failed put stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_store_faults_are_reported_never_taken_for_success() {
    use fieldseal_server::blobstore::{conformance, BlobStore, MemStore as MemBlobs};
    use fieldseal_tests::blobfaults::{BlobFault, FaultyBlobs};
    let sc = Scenario::new("blob_store_faults_are_reported_never_taken_for_success");
    let panics = faults::panics();
    conformance::run_all(&|| Box::new(FaultyBlobs::new(Arc::new(MemBlobs::new()))));

    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(98, &[3, 2], 40_003).await.unwrap();
    let cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    let (task, _) = sync_through(store.clone(), cfg).await;
    tokio::time::timeout(LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let device = DeviceId::from_key(&k.verifying_key());
    let segs: Vec<u64> = chain.media.keys().copied().collect();
    let mut r = sc.rng(13);
    let stop = std::sync::atomic::AtomicBool::new(false);
    for fault in [BlobFault::ReadError, BlobFault::Rot(r.next_u64())] {
        let seq = segs[usize::try_from(r.next_u64() % segs.len() as u64).unwrap()];
        let hash = chain.entries[usize::try_from(seq).unwrap()]
            .entry
            .segment()
            .unwrap()
            .media_sha256;
        let faulty = Arc::new(FaultyBlobs::new(h.server.shared.blobs.clone()));
        faulty.plan(hash, fault);
        let out = fieldseal_server::archive::verify(
            h.path(),
            &h.server.shared.db,
            faulty.as_ref(),
            Some(device),
            fieldseal_server::now_us(),
            &stop,
        );
        match out {
            Ok(o) => {
                assert!(
                    !o.ok,
                    "{fault:?} on seq {seq}: verify said ok\n{}",
                    o.human()
                );
                assert!(
                    o.devices[0].findings.iter().any(|f| f.seq == Some(seq)),
                    "{fault:?}: verify names seq {seq}\n{}",
                    o.human()
                );
            }
            Err(err) => eprintln!("{fault:?}: verify failed outright: {err}"),
        }
        let view = ServerView::read(h.path(), &h.server.shared.db, faulty.clone(), device).unwrap();
        assert!(
            !view.has_blob(&hash),
            "{fault:?}: the checker does not count a faulty blob as held"
        );
    }
    // A put that fails for want of space stores nothing.
    let mem: Arc<dyn BlobStore> = Arc::new(MemBlobs::new());
    let faulty = FaultyBlobs::new(mem.clone());
    let bytes = vec![5u8; 10_000];
    let hash = fieldseal_proto::identity::sha256(&bytes);
    faulty.plan(hash, BlobFault::NoSpace);
    assert!(faulty.put(&hash, &mut bytes.as_slice()).is_err());
    assert_eq!(
        mem.stat(&hash).unwrap(),
        None,
        "a failed put stores nothing"
    );
    let v = verdict(&h, &k, &store, panics);
    sc.record(&v, 2, &[]);
    v.assert_ok();
    h.server.shutdown().await;
}

/// A device records on (entries arrive one after another) for
/// `FIELDSEAL_NET_SECONDS` while its link changes every few seconds between
/// seeded profiles: lossy, slow, jittery, corrupting, partitioned either
/// way, flapping, rebinding its address. At the end the link heals and
/// everything must arrive. The soak runs it for an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_impaired_link_loses_nothing() {
    let sc = Scenario::new("long_impaired_link_loses_nothing");
    let panics = faults::panics();
    let secs = iterations("FIELDSEAL_NET_SECONDS", 15);
    let h = Harness::start().await.unwrap();
    let k = key(99);
    let e = h.enroll(&k).await.unwrap();
    let media_dir = tempfile::tempdir().unwrap();
    // About two entries a second: recordings of 8 segments (plus start/stop).
    let recordings = vec![8u32; usize::try_from(secs / 5 + 1).unwrap()];
    let chain = fieldseal_proto::sample::build(&k, &recordings, 8_192);
    let store = Arc::new(MemStore::new(media_dir.path()));
    let relay = Relay::start(h.server.quic_addr, sc.seed()).await.unwrap();
    let cfg = Harness::sync_config(&relay.addr.to_string(), &k, &e);
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sync::run_sync(
        store.clone(),
        cfg,
        progress.clone(),
        stop_rx,
    ));
    let mut r = sc.rng(14);
    let t0 = Instant::now();
    let mut pushed = 0usize;
    let mut next_change = Instant::now();
    let mut changes = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        if pushed < chain.entries.len() {
            let en = &chain.entries[pushed];
            store
                .push(en, chain.media.get(&en.seq()).map(Vec::as_slice))
                .unwrap();
            pushed += 1;
        }
        if Instant::now() >= next_change {
            changes += 1;
            relay.cut(false);
            relay.cut_one_way(false, false);
            let (loss, delay, jitter, reorder, dup, corrupt) = profile(&mut r);
            relay.set(loss, delay, reorder, dup);
            relay.set_corruption_jitter(corrupt, jitter);
            match r.next_u64() % 8 {
                0 => relay.cut(true),
                1 => relay.cut_one_way(true, false),
                2 => relay.cut_one_way(false, true),
                3 => {
                    relay.rebind().await.unwrap();
                }
                _ => {}
            }
            next_change = Instant::now() + Duration::from_millis(1000 + r.next_u64() % 4000);
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let impaired = t0.elapsed();
    // The link heals; the rest of the chain arrives at once.
    relay.cut(false);
    relay.cut_one_way(false, false);
    relay.set(0, 0, 0, 0);
    relay.set_corruption_jitter(0, 0);
    for en in &chain.entries[pushed..] {
        store
            .push(en, chain.media.get(&en.seq()).map(Vec::as_slice))
            .unwrap();
    }
    let t1 = Instant::now();
    while store.receipts().len() < chain.entries.len() || store.acked().len() < chain.media.len() {
        assert!(
            t1.elapsed() < LIMIT,
            "drained after the link healed: {:?}",
            progress.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_tx.send_replace(true);
    let stats = tokio::time::timeout(LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    eprintln!(
        "{impaired:?} impaired, {changes} link changes, {} entries: {stats:?}",
        chain.entries.len()
    );
    let v = verdict(&h, &k, &store, panics);
    sc.record(
        &v,
        changes,
        &[("impaired_seconds", format!("{:.0}", impaired.as_secs_f64()))],
    );
    v.assert_ok();
    h.server.shutdown().await;
}
