//! Agent ↔ server over QUIC through a faulty UDP relay, in one process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldseal_agent::sync::{self, MemStore, Progress, SyncError, SyncStore};
use fieldseal_proto::chainlog;
use fieldseal_proto::codec::Encode;
use fieldseal_proto::enroll::EnrollStatus;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::msg::RejectCode;
use fieldseal_proto::sample::SampleChain;
use fieldseal_server::chainindex::ChainIndex;
use fieldseal_server::control::{self, Request, Response};
use fieldseal_server::datadir::DataDir;
use fieldseal_server::pki::Ca;
use fieldseal_tests::{key, store_with_chain, Device, Harness, Relay};

const LIMIT: Duration = Duration::from_secs(45);

async fn drained(
    store: Arc<MemStore>,
    cfg: sync::SyncConfig,
) -> (Result<sync::Stats, SyncError>, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    let r = tokio::time::timeout(
        LIMIT,
        sync::sync_until_drained(store, cfg, progress.clone()),
    )
    .await
    .expect("sync finished in time");
    (r, progress)
}

/// Everything the server holds for the device matches the chain: chain log,
/// blobs, and every receipt verifies.
fn assert_archived(
    h: &Harness,
    chain: &SampleChain,
    store: &MemStore,
    receipt_key: &ed25519_dalek::VerifyingKey,
) {
    let device = chain.entries[0].entry.device;
    let log = std::fs::read(DataDir::new(h.path()).chain_log(device)).unwrap();
    let mut expected = Vec::new();
    for e in &chain.entries {
        chainlog::put_record(&mut expected, &e.to_bytes());
    }
    assert_eq!(
        log, expected,
        "chain log holds exactly the entries, in order"
    );
    for (seq, media) in &chain.media {
        let e = &chain.entries[usize::try_from(*seq).unwrap()];
        let hash = e.entry.segment().unwrap().media_sha256;
        let mut blob = Vec::new();
        std::io::Read::read_to_end(&mut h.server.shared.blobs.open(&hash).unwrap(), &mut blob)
            .unwrap();
        assert!(blob == *media, "blob of seq {seq} is byte-identical");
        assert!(store.is_acked(*seq));
    }
    let receipts = store.receipts();
    assert_eq!(receipts.len(), chain.entries.len());
    let mut indexes = std::collections::BTreeSet::new();
    for e in &chain.entries {
        let r = &receipts[&e.seq()];
        r.verify(receipt_key).expect("receipt verifies");
        assert_eq!(
            (r.device_id, r.seq, r.entry_hash),
            (device, e.seq(), e.hash())
        );
        indexes.insert(r.log_index);
    }
    assert_eq!(indexes.len(), chain.entries.len(), "distinct log indexes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_delayed_reordered_link_delivers_everything_verified() {
    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(11, &[3, 2], 100_000).await.unwrap();
    let relay = Relay::start(h.server.quic_addr, 7).await.unwrap();
    // 10 % loss each way, 50 ms one way, some reordering and duplication.
    relay.set(100, 50, 10, 10);
    let cfg = Harness::sync_config(&relay.addr.to_string(), &k, &e);
    let t0 = Instant::now();
    let (r, _) = drained(store.clone(), cfg).await;
    let stats = r.unwrap();
    eprintln!(
        "lossy link: {stats:?} in {:?}, relay dropped {} datagrams",
        t0.elapsed(),
        relay
            .knobs
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_archived(&h, &chain, &store, &e.receipt_key);
    // The server counted what it did, and /metrics says so.
    let segments = chain.media.len() as u64;
    let c = &h.server.shared.counters;
    assert!(c.receipts.load(std::sync::atomic::Ordering::Relaxed) >= chain.entries.len() as u64);
    assert_eq!(
        c.segments_stored.load(std::sync::atomic::Ordering::Relaxed),
        segments
    );
    let addr = h.server.http_addr;
    let metrics = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut t = std::net::TcpStream::connect(addr).unwrap();
        t.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        t.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(
        metrics.contains(&format!(
            "fieldseal_media_bytes_total {}\n",
            segments * 100_000
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("fieldseal_receipt_latency_seconds_count "),
        "{metrics}"
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_in_the_middle_of_a_large_upload_resumes() {
    const LEN: usize = 16 * 1024 * 1024;
    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(12, &[1], LEN).await.unwrap();
    let relay = Relay::start(h.server.quic_addr, 8).await.unwrap();
    relay.set(0, 10, 0, 0);
    let cfg = Harness::sync_config(&relay.addr.to_string(), &k, &e);
    let progress = Arc::new(Progress::default());
    let task = tokio::spawn(sync::sync_until_drained(
        store.clone(),
        cfg,
        progress.clone(),
    ));
    let t0 = Instant::now();
    while progress
        .media_bytes_sent
        .load(std::sync::atomic::Ordering::Relaxed)
        < (LEN as u64) * 3 / 10
    {
        assert!(t0.elapsed() < LIMIT, "upload started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    relay.cut(true);
    let at_cut = progress
        .media_bytes_sent
        .load(std::sync::atomic::Ordering::Relaxed);
    // Longer than the 3 s idle timeout: both ends give the connection up.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    relay.cut(false);
    let stats = tokio::time::timeout(LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let ratio = stats.media_bytes_sent as f64 / LEN as f64;
    eprintln!("cut at {at_cut} bytes; {stats:?}; sent/segment = {ratio:.3}");
    assert!(stats.connections >= 2, "reconnected");
    assert!(ratio <= 1.1, "resumed instead of restarting: {ratio}");
    assert_archived(&h, &chain, &store, &e.receipt_key);
    h.server.shutdown().await;
}

fn nothing_stored(h: &Harness, device: DeviceId) {
    assert!(!DataDir::new(h.path()).chain_log(device).exists());
    assert_eq!(h.server.shared.db.head(device).unwrap().next_seq, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unenrolled_devices_are_refused() {
    let h = Harness::start().await.unwrap();
    let ours = h.enroll(&key(20)).await.unwrap();
    let media_dir = tempfile::tempdir().unwrap();

    // A certificate from another CA, for a key this server never saw.
    let other = tempfile::tempdir().unwrap();
    fieldseal_server::admin::init(other.path(), &[], Some("x".into())).unwrap();
    let k = key(21);
    let foreign = Ca::load(other.path())
        .unwrap()
        .issue_device_cert(&k.verifying_key().to_bytes())
        .unwrap();
    let mut e = ours.clone();
    e.client_cert = foreign;
    let (store, _) = store_with_chain(&k, &[1], 1000, media_dir.path()).unwrap();
    let (r, _) = drained(store, Harness::sync_config(&h.server_addr(), &k, &e)).await;
    assert!(matches!(r, Err(SyncError::Connect(_))), "{r:?}");
    nothing_stored(&h, k.device_id_());

    // A certificate from our CA for a key that never enrolled: refused as
    // revoked or unknown (TLS alert certificate_revoked), which the agent
    // keeps and does not retry.
    let k = key(22);
    let mut e = ours.clone();
    e.client_cert = Ca::load(h.path())
        .unwrap()
        .issue_device_cert(&k.verifying_key().to_bytes())
        .unwrap();
    let (store, _) = store_with_chain(&k, &[1], 1000, media_dir.path()).unwrap();
    let (r, _) = drained(store, Harness::sync_config(&h.server_addr(), &k, &e)).await;
    assert!(
        matches!(r, Err(SyncError::Refused(ref r)) if r.kind == sync::RefusalKind::Revoked),
        "{r:?}"
    );
    nothing_stored(&h, k.device_id_());

    // No certificate at all on the sync ALPN.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            ours.ca_cert.clone(),
        ))
        .unwrap();
    let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tls.alpn_protocols = vec![b"fieldseal/1".to_vec()];
    let qc = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = ep
        .connect_with(qc, h.server.quic_addr, "localhost")
        .unwrap()
        .await;
    if let Ok(conn) = conn {
        let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .unwrap();
        assert!(
            matches!(reason, quinn::ConnectionError::ApplicationClosed(c) if u64::from(c.error_code) == 0x13)
        );
    }
    h.server.shutdown().await;
}

trait DeviceIdOf {
    fn device_id_(&self) -> DeviceId;
}
impl DeviceIdOf for ed25519_dalek::SigningKey {
    fn device_id_(&self) -> DeviceId {
        DeviceId::from_key(&self.verifying_key())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_device_is_cut_off_and_refused() {
    let h = Harness::start().await.unwrap();
    let k = key(30);
    let e = h.enroll(&k).await.unwrap();
    let media_dir = tempfile::tempdir().unwrap();
    let chain = fieldseal_proto::sample::build(&k, &[2, 2], 1000);
    let store = Arc::new(MemStore::new(media_dir.path()));
    let first = 4;
    for en in &chain.entries[..first] {
        store
            .push(en, chain.media.get(&en.seq()).map(Vec::as_slice))
            .unwrap();
    }
    // A long-running client, live when the device is revoked.
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    let task = tokio::spawn(sync::run_sync(
        store.clone(),
        cfg.clone(),
        progress.clone(),
        stop_rx,
    ));
    let t0 = Instant::now();
    while store.receipts().len() < first {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Revoke through the control socket of the running server.
    let dir = h.path().to_path_buf();
    let id = k.device_id_().to_string();
    let resp =
        tokio::task::spawn_blocking(move || control::request(&dir, Request::DeviceRevoke { id }))
            .await
            .unwrap()
            .unwrap();
    assert!(
        matches!(resp, Response::Device(ref d) if d.revoked_us.is_some()),
        "{resp:?}"
    );
    let connections_at_revoke = progress
        .connections
        .load(std::sync::atomic::Ordering::Relaxed);
    // New entries after the revocation never reach the server.
    for en in &chain.entries[first..] {
        store
            .push(en, chain.media.get(&en.seq()).map(Vec::as_slice))
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        h.server.shared.db.head(k.device_id_()).unwrap().next_seq,
        first as u64
    );
    assert_eq!(
        progress
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        connections_at_revoke,
        "no new connection completes"
    );
    // The long-running client stopped by itself: revoked, not retried.
    let r = tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
    assert!(
        matches!(r, Err(SyncError::Refused(ref r)) if r.kind == sync::RefusalKind::Revoked),
        "{r:?}"
    );
    drop(stop_tx);
    // And a fresh client is refused outright.
    let (r, _) = drained(store.clone(), cfg).await;
    assert!(
        matches!(r, Err(SyncError::Refused(ref r)) if r.kind == sync::RefusalKind::Revoked),
        "{r:?}"
    );
    assert_eq!(
        h.server.shared.db.head(k.device_id_()).unwrap().next_seq,
        first as u64
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_another_device_are_refused() {
    let h = Harness::start().await.unwrap();
    let a = key(40);
    let b = key(41);
    let e = h.enroll(&a).await.unwrap();
    let media_dir = tempfile::tempdir().unwrap();
    // Device A's connection carries device B's chain.
    let (store, _) = store_with_chain(&b, &[1], 1000, media_dir.path()).unwrap();
    let (r, _) = drained(
        store.clone(),
        Harness::sync_config(&h.server_addr(), &a, &e),
    )
    .await;
    assert!(
        matches!(r, Err(SyncError::Fatal(ref f)) if f.code == RejectCode::WrongDevice),
        "{r:?}"
    );
    nothing_stored(&h, a.device_id_());
    nothing_stored(&h, b.device_id_());
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_tampered_uploads_store_nothing_new() {
    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(50, &[2], 50_000).await.unwrap();
    let cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    drained(store.clone(), cfg.clone()).await.0.unwrap();
    assert_archived(&h, &chain, &store, &e.receipt_key);
    let blobs_before = count_files(&h.path().join("blobs"));
    let pipelined = || {
        h.server
            .shared
            .counters
            .uploads_pipelined
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(
        pipelined(),
        chain.media.len() as u64,
        "new media is sent without asking first"
    );

    // Replay: a fresh store with the same chain and media, nothing acked.
    let dir2 = tempfile::tempdir().unwrap();
    let (store2, _) = store_with_chain(&k, &[2], 50_000, dir2.path()).unwrap();
    let (r, _) = drained(store2.clone(), cfg.clone()).await;
    let stats = r.unwrap();
    assert_eq!(
        stats.media_bytes_sent, 0,
        "the server already holds every byte"
    );
    assert_eq!(
        pipelined(),
        chain.media.len() as u64,
        "media the server may hold is asked about, not pipelined"
    );
    assert_eq!(
        store2.receipts(),
        store.receipts(),
        "duplicates get the stored receipts"
    );
    assert_eq!(count_files(&h.path().join("blobs")), blobs_before);

    // Tampered: a device whose media files do not match what it signed.
    let k3 = key(51);
    let e3 = h.enroll(&k3).await.unwrap();
    let dir3 = tempfile::tempdir().unwrap();
    // Another length, so that no blob of device 50 has these bytes.
    let (store3, chain3) = store_with_chain(&k3, &[1], 50_001, dir3.path()).unwrap();
    let seq = *chain3.media.keys().next().unwrap();
    let path = store3.media(seq).unwrap().unwrap().path;
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let (r, _) = drained(
        store3.clone(),
        Harness::sync_config(&h.server_addr(), &k3, &e3),
    )
    .await;
    assert_eq!(r.unwrap().uploads_refused, 1);
    assert!(!store3.is_acked(seq));
    let hash = chain3.entries[usize::try_from(seq).unwrap()]
        .entry
        .segment()
        .unwrap()
        .media_sha256;
    assert_eq!(h.server.shared.blobs.stat(&hash).unwrap(), None);
    assert!(!h.server.shared.db.has_media(k3.device_id_(), seq).unwrap());
    assert_eq!(count_files(&h.path().join("blobs")), blobs_before);
    assert!(!h
        .server
        .shared
        .storage
        .partial_path(k3.device_id_(), seq)
        .exists());
    h.server.shutdown().await;
}

fn count_files(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            n += count_files(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivocation_is_refused_kept_as_evidence() {
    let h = Harness::start().await.unwrap();
    let k = key(60);
    let e = h.enroll(&k).await.unwrap();
    let d1 = tempfile::tempdir().unwrap();
    let (store, chain) = store_with_chain(&k, &[2], 1000, d1.path()).unwrap();
    let cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    drained(store, cfg.clone()).await.0.unwrap();
    let dev_dir = h.path().join("devices").join(k.device_id_().to_string());
    let log_before = std::fs::read(dev_dir.join("chain.log")).unwrap();

    // The same key signs a different history.
    let d2 = tempfile::tempdir().unwrap();
    let (store2, chain2) = store_with_chain(&k, &[3], 1000, d2.path()).unwrap();
    let seq = (0..chain.entries.len())
        .find(|&i| chain.entries[i].hash() != chain2.entries[i].hash())
        .unwrap();
    let (r, _) = drained(store2, cfg).await;
    assert!(
        matches!(r, Err(SyncError::Fatal(ref f)) if f.code == RejectCode::Equivocation && f.seq == seq as u64),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read(dev_dir.join("chain.log")).unwrap(),
        log_before,
        "chain unchanged"
    );
    let mut evidence = Vec::new();
    chainlog::put_record(&mut evidence, &chain2.entries[seq].to_bytes());
    assert_eq!(
        std::fs::read(dev_dir.join("equivocations.log")).unwrap(),
        evidence
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_with_bad_tokens_fails_clearly_and_changes_nothing() {
    let h = Harness::start().await.unwrap();
    let ca = Some(h.path().join("ca.crt"));
    let addr = h.server_addr();
    let status = |r: Result<sync::Enrollment, SyncError>| match r {
        Err(SyncError::Enroll { status, .. }) => status,
        other => panic!("expected a refusal, got {other:?}"),
    };
    let r = sync::enroll(&key(70), &addr, "not-a-token", ca.clone()).await;
    assert!(matches!(r, Err(SyncError::Config(_))), "{r:?}");
    // Well formed, naming the right CA, but never issued.
    let ca_hash = hex::encode(fieldseal_server::pki::ca_sha256(h.path()).unwrap());
    let unknown = format!("{}.{ca_hash}", "ab".repeat(32));
    let r = sync::enroll(&key(70), &addr, &unknown, ca.clone()).await;
    assert_eq!(status(r), EnrollStatus::UnknownToken);
    // A token of before tokens named their CA: refused by the device itself.
    let r = sync::enroll(&key(70), &addr, &"ab".repeat(32), None).await;
    match r {
        Err(SyncError::Config(m)) => assert!(m.contains("does not name the server's CA"), "{m}"),
        other => panic!("{other:?}"),
    }

    let expired = h.token("cam", 0).unwrap();
    let r = sync::enroll(&key(70), &addr, &expired, ca.clone()).await;
    assert_eq!(status(r), EnrollStatus::ExpiredToken);
    assert!(h.server.shared.db.devices().unwrap().is_empty());
    // The CA signs nothing for a request whose token is refused.
    assert_eq!(h.server.shared.ca.issued(), 0);

    // enroll_cmd: the data folder as the agent keeps it.
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("device.key"),
        format!("{}\n", hex::encode([71u8; 32])),
    )
    .unwrap();
    // As `init` leaves it: enroll_cmd loads the key with keyfile's 0600 check.
    std::fs::set_permissions(
        data.path().join("device.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let token = h.token("cam", 60).unwrap();
    let en = sync::enroll_cmd(data.path(), &addr, &token, ca.clone())
        .await
        .unwrap();
    assert_eq!(en.device_id, key(71).device_id_());
    let cfg = sync::SyncConfig::from_data_dir(data.path()).unwrap();
    assert_eq!(cfg.receipt_key, en.receipt_key);

    // The used token cannot enrol another key.
    let r = sync::enroll(&key(72), &addr, &token, ca.clone()).await;
    assert_eq!(status(r), EnrollStatus::UsedToken);
    assert_eq!(h.server.shared.db.devices().unwrap().len(), 1);

    // A --ca of another server: refused before connecting, the token survives.
    let other = tempfile::tempdir().unwrap();
    fieldseal_server::admin::init(other.path(), &[], Some("x".into())).unwrap();
    let t3 = h.token("cam3", 60).unwrap();
    let r = sync::enroll(&key(74), &addr, &t3, Some(other.path().join("ca.crt"))).await;
    assert!(matches!(r, Err(SyncError::Config(_))), "{r:?}");
    sync::enroll(&key(74), &addr, &t3, ca.clone())
        .await
        .unwrap();

    // The token alone is enough (no --ca), and pins the same CA.
    let t2 = h.token("cam2", 60).unwrap();
    let en2 = sync::enroll(&key(73), &addr, &t2, None).await.unwrap();
    assert_eq!(en2.ca_cert, en.ca_cert);
    h.server.shutdown().await;
}

/// An on-path attacker at enrolment (here: another fieldseal server the
/// device reaches instead) cannot pass the token's CA check: the handshake
/// fails, the error names the CA the token wants, the attacker never sees
/// the token's secret (nothing is used up on either server), and the real
/// server still takes the token afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_trusts_only_the_ca_the_token_names() {
    let real = Harness::start().await.unwrap();
    let attacker = Harness::start().await.unwrap();
    let token = real.token("cam", 60).unwrap();
    // The attacker has a token of its own for the same name: if the secret
    // reached it, it still would not know; what matters is that no
    // enrolment happens there and the device refuses before sending.
    let r = sync::enroll(&key(90), &attacker.server_addr(), &token, None).await;
    let Err(SyncError::Connect(m)) = r else {
        panic!("{r:?}")
    };
    let want = hex::encode(fieldseal_server::pki::ca_sha256(real.path()).unwrap());
    assert!(
        m.contains(&want),
        "the error names the CA the token wants: {m}"
    );
    assert!(attacker.server.shared.db.devices().unwrap().is_empty());
    // The attacker's own certificate issuance count did not move: its CA
    // signed nothing for the device.
    assert_eq!(attacker.server.shared.ca.issued(), 0);
    let en = sync::enroll(&key(90), &real.server_addr(), &token, None)
        .await
        .unwrap();
    assert_eq!(en.device_id, key(90).device_id_());
    real.server.shutdown().await;
    attacker.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_work_with_and_without_a_running_server() {
    let h = Harness::start().await.unwrap();
    let k = key(80);
    h.enroll(&k).await.unwrap();
    let dir = h.path().to_path_buf();
    assert!(control::socket_path(&dir).exists());
    // Through the socket: the running server owns the index.
    let d = dir.clone();
    let resp = tokio::task::spawn_blocking(move || {
        control::request(
            &d,
            Request::DeviceAdd {
                name: "cam9".into(),
                ttl_secs: Some(60),
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    let Response::Token(t) = resp else {
        panic!("{resp:?}")
    };
    let e = sync::enroll(
        &key(81),
        &h.server_addr(),
        &t.token,
        Some(dir.join("ca.crt")),
    )
    .await
    .unwrap();
    assert_eq!(e.device_id, key(81).device_id_());
    h.server.shutdown().await;
    assert!(!control::socket_path(&dir).exists());
    // Without a server: the command opens the index itself.
    let d = dir.clone();
    let resp = tokio::task::spawn_blocking(move || control::request(&d, Request::DeviceList))
        .await
        .unwrap()
        .unwrap();
    let Response::Devices { devices, .. } = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(devices.len(), 2);
    let d = dir.clone();
    let id = k.device_id_().to_string();
    let resp =
        tokio::task::spawn_blocking(move || control::request(&d, Request::DeviceRevoke { id }))
            .await
            .unwrap()
            .unwrap();
    assert!(matches!(resp, Response::Device(ref d) if d.revoked_us.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_entries_are_not_queued_behind_uploads() {
    const LEN: usize = 2 * 1024 * 1024;
    let h = Harness::start().await.unwrap();
    let k = key(90);
    let e = h.enroll(&k).await.unwrap();
    let media_dir = tempfile::tempdir().unwrap();
    let chain = fieldseal_proto::sample::build(&k, &[1, 1], LEN);
    let store = Arc::new(MemStore::new(media_dir.path()));
    let backlog = 4; // agent started, recording started, one segment, recording stopped
    for en in &chain.entries[..backlog] {
        store
            .push(en, chain.media.get(&en.seq()).map(Vec::as_slice))
            .unwrap();
    }
    let relay = Relay::start(h.server.quic_addr, 9).await.unwrap();
    relay.set(0, 20, 0, 0);
    let cfg = Harness::sync_config(&relay.addr.to_string(), &k, &e);
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sync::run_sync(
        store.clone(),
        cfg,
        progress.clone(),
        stop_rx,
    ));
    let t0 = Instant::now();
    while progress
        .media_bytes_sent
        .load(std::sync::atomic::Ordering::Relaxed)
        < 256 * 1024
    {
        assert!(t0.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // A live entry while the backlog's segment is uploading.
    let live = &chain.entries[backlog];
    assert!(live.entry.segment().is_none());
    let pushed = Instant::now();
    store.push(live, None).unwrap();
    while !store.has_receipt(live.seq()) {
        assert!(
            pushed.elapsed() < Duration::from_secs(5),
            "receipt of the live entry"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let latency = pushed.elapsed();
    let uploading = store.acked().is_empty();
    eprintln!("live entry receipt after {latency:?} (RTT 40 ms) while the upload was running: {uploading}");
    assert!(uploading, "the upload was still running");
    assert!(latency < Duration::from_millis(1000), "{latency:?}");
    // The rest drains.
    for en in &chain.entries[backlog + 1..] {
        store
            .push(en, chain.media.get(&en.seq()).map(Vec::as_slice))
            .unwrap();
    }
    while store.acked().len() < chain.media.len() {
        assert!(
            t0.elapsed() < LIMIT,
            "{:?} acked {:?}",
            progress.snapshot(),
            store.acked()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(true).unwrap();
    tokio::time::timeout(LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_archived(&h, &chain, &store, &e.receipt_key);
    h.server.shutdown().await;
}

/// Throughput figures (not run by default: `cargo test -p fieldseal-tests -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn throughput() {
    const LEN: usize = 4 * 1024 * 1024;
    let h = Harness::start().await.unwrap();
    let cases = [
        (0u8, None, 0),
        (1, Some(0u32), 0),
        (2, Some(20), 0),
        (3, Some(150), 0),
        (4, Some(150), 20),
    ];
    for (i, delay, loss) in cases {
        let k = key(100 + i);
        let e = h.enroll(&k).await.unwrap();
        let media_dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_chain(&k, &[1], LEN, media_dir.path()).unwrap();
        let relay = Relay::start(h.server.quic_addr, 1).await.unwrap();
        let addr = match delay {
            None => h.server_addr(),
            Some(d) => {
                relay.set(loss, d, 0, 0);
                relay.addr.to_string()
            }
        };
        let t0 = Instant::now();
        let (r, _) = drained(store, Harness::sync_config(&addr, &k, &e)).await;
        r.unwrap();
        let s = t0.elapsed().as_secs_f64();
        eprintln!(
            "one-way delay {delay:?} ms: {LEN} bytes in {s:.2} s = {:.1} Mbit/s",
            LEN as f64 * 8.0 / s / 1e6
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_partial_is_verified_before_it_counts() {
    let h = Harness::start().await.unwrap();
    let k = key(95);
    let e = h.enroll(&k).await.unwrap();
    let chain = fieldseal_proto::sample::build(&k, &[2], 30_001);
    // Entries first, without media: the server accepts them.
    let bare = Arc::new(MemStore::new(tempfile::tempdir().unwrap().path()));
    for en in &chain.entries {
        bare.push(en, None).unwrap();
    }
    let cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    drained(bare, cfg.clone()).await.0.unwrap();
    // As if every byte had arrived before a crash: one partial right, one wrong.
    let mut segs = chain.media.keys().copied();
    let (good, bad) = (segs.next().unwrap(), segs.next().unwrap());
    let storage = &h.server.shared.storage;
    std::fs::create_dir_all(h.path().join("partial")).unwrap();
    std::fs::write(
        storage.partial_path(k.device_id_(), good),
        &chain.media[&good],
    )
    .unwrap();
    let mut wrong = chain.media[&bad].clone();
    wrong[0] ^= 1;
    std::fs::write(storage.partial_path(k.device_id_(), bad), wrong).unwrap();
    let media_dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_chain(&k, &[2], 30_001, media_dir.path()).unwrap();
    let stats = drained(store.clone(), cfg).await.0.unwrap();
    assert_eq!(
        stats.media_bytes_sent,
        chain.media[&bad].len() as u64,
        "only the wrong one is sent again"
    );
    assert_archived(&h, &chain, &store, &e.receipt_key);
    h.server.shutdown().await;
}

/// A stream that opens with `UploadBegin` and the bytes (protocol 4): the
/// server takes the whole file over a partial it held, acknowledges at once
/// and stops the stream for media it holds, and refuses it from a version 3
/// connection or at another offset than 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_upload_replaces_a_partial_and_is_stopped_when_held() {
    use fieldseal_proto::msg::{Message, UploadBegin, UploadFailCode};
    use fieldseal_tests::flood::Probe;
    // Larger than the stream's flow-control window (1 MiB): a held upload
    // can only end early if the server stops the stream.
    const LEN: usize = 3 * 1024 * 1024;
    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        chain,
        media_dir: _media_dir,
        ..
    } = h.device(60, &[1], LEN).await.unwrap();
    let device = k.device_id_();
    let mut probe = Probe::connect(h.server.quic_addr, &k, &e).await.unwrap();
    for entry in &chain.entries {
        probe.submit(entry).await.unwrap();
    }
    let (&seq, media) = chain.media.iter().next().unwrap();
    let segment = chain.entries[usize::try_from(seq).unwrap()]
        .entry
        .segment()
        .unwrap()
        .clone();
    let begin = |offset| UploadBegin {
        seq,
        media_hash: segment.media_sha256,
        offset,
        len: segment.media_len,
    };
    // A prefix of other bytes left by an earlier attempt: appending to it
    // would fail the hash check, so it must go.
    let partial = h.server.shared.storage.partial_path(device, seq);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, vec![0x5a; 100_000]).unwrap();

    let (answer, stopped) = probe.upload_at_once(begin(0), media).await.unwrap();
    let Message::UploadAck(ack) = answer else {
        panic!("expected UploadAck, got {answer:?}");
    };
    ack.verify_for(
        &e.receipt_key,
        device,
        seq,
        (segment.media_sha256, segment.media_len),
    )
    .expect("a valid acknowledgement of the whole file");
    assert!(!stopped, "every byte was read");
    let mut blob = Vec::new();
    std::io::Read::read_to_end(
        &mut h.server.shared.blobs.open(&segment.media_sha256).unwrap(),
        &mut blob,
    )
    .unwrap();
    assert!(blob == *media, "the blob is the file, not the old prefix");
    assert!(!partial.exists());

    // Held now: acknowledged at once, the rest of the bytes refused.
    let (answer, stopped) = probe.upload_at_once(begin(0), media).await.unwrap();
    assert!(matches!(answer, Message::UploadAck(_)), "{answer:?}");
    assert!(stopped, "the server stopped reading bytes it holds");

    // Only at offset 0, and only from version 4.
    let (answer, _) = probe
        .upload_at_once(begin(1000), &media[1000..])
        .await
        .unwrap();
    assert!(
        matches!(&answer, Message::UploadFailed(f) if f.code == UploadFailCode::BadOffset),
        "{answer:?}"
    );
    probe.close();
    let v3 = Probe::connect_speaking(h.server.quic_addr, &k, &e, 3)
        .await
        .unwrap();
    let (answer, _) = v3.upload_at_once(begin(0), media).await.unwrap();
    assert!(
        matches!(&answer, Message::UploadFailed(f) if f.code == UploadFailCode::UnknownEntry),
        "a version 3 stream must open with UploadQuery: {answer:?}"
    );
    v3.close();
    h.server.shutdown().await;
}
