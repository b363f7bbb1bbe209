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
use fieldseal_tests::{key, store_with_chain, Harness, Relay, SplitMix};

/// A generous bound for one sync under faults (the faults heal within seconds).
const LIMIT: Duration = Duration::from_secs(120);

/// The invariant for an in-process agent store and server.
fn verdict(h: &Harness, k: &ed25519_dalek::SigningKey, store: &MemStore, panics: u64) -> Verdict {
    let agent = AgentView::from_mem(store);
    let durable = agent.durable();
    let device = DeviceId::from_key(&k.verifying_key());
    let server = ServerView::read(h.path(), &h.server.shared.db, device).unwrap();
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
    let k = key(90);
    let e = h.enroll(&k).await.unwrap();
    let media_dir = tempfile::tempdir().unwrap();
    let (store, chain) = store_with_chain(&k, &[4, 3, 3], 400_000, media_dir.path()).unwrap();
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
    let k = key(91);
    let e = h.enroll(&k).await.unwrap();
    let media_dir = tempfile::tempdir().unwrap();
    let (store, chain) = store_with_chain(&k, &[2], LEN, media_dir.path()).unwrap();
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
