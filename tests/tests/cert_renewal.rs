//! Device certificates that expire and renew (issue 13), agent and server in
//! one process on loopback: renewal before expiry keeps a device syncing
//! past its first certificate; an expired certificate is refused and the
//! agent says why; a revoked device cannot renew. The real binaries, with a
//! recording agent, are in `cert_renewal_binaries.rs`.
//!
//! Certificates here live seconds (`device_cert_secs`); waits are bounded by
//! generous limits and never asserted as durations.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldseal_agent::sync::{
    self, standing, MemCredentials, MemStore, Progress, RefusalKind, SyncError, SyncStore,
};
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::x509::{Certificate, Validity};
use fieldseal_server::chainindex::ChainIndex;
use fieldseal_server::db::CertHow;
use fieldseal_tests::{key, Harness};

const LIMIT: Duration = Duration::from_secs(60);

fn validity(der: &[u8]) -> Validity {
    Certificate::parse(der).unwrap().validity().unwrap()
}

fn now_secs() -> i64 {
    fieldseal_server::now_us().div_euclid(1_000_000)
}

/// Wait (bounded by [`LIMIT`]) until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < LIMIT, "{what}: not within {LIMIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sleep until the server's clock has passed `t` (seconds since the epoch).
async fn past(t: i64) {
    // A certificate that should end in seconds and does not is a failure,
    // not a wait.
    let wait = u64::try_from(t - now_secs()).unwrap_or(0);
    assert!(wait < LIMIT.as_secs(), "{t} is {wait} s away");
    while now_secs() <= t {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn server(cert_secs: u64) -> Harness {
    Harness::start_configured(|c| format!("{c}\ndevice_cert_secs = {cert_secs}\n"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_renews_before_expiry_and_syncs_past_its_first_certificate() {
    // 6 s certificates: due after 4 s by the agent's rule (a third left),
    // allowed after 3 s by the server's (half left).
    let h = server(6).await;
    let k = key(40);
    let e = h.enroll(&k).await.unwrap();
    let first = validity(&e.client_cert);
    assert_eq!(first.length(), 6, "device_cert_secs is the validity");
    let chain = fieldseal_proto::sample::build(&k, &[12], 500);
    let media = tempfile::tempdir().unwrap();
    let store = Arc::new(MemStore::new(media.path()));
    let push = |n: usize| {
        for en in &chain.entries[..n] {
            if store.entry(en.seq()).unwrap().is_none() {
                store
                    .push(en, chain.media.get(&en.seq()).map(Vec::as_slice))
                    .unwrap();
            }
        }
    };
    push(3);
    let creds = Arc::new(MemCredentials::default());
    let mut cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    cfg.credentials = creds.clone();
    let progress = Arc::new(Progress::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sync::run_sync(
        store.clone(),
        cfg,
        progress.clone(),
        stop_rx,
    ));
    until("the first entries' receipts", || {
        store.receipts().len() == 3
    })
    .await;
    // Past the first certificate's end, and past the second's: the device
    // renews each before it expires and keeps syncing on one run.
    past(first.not_after + 1).await;
    push(7);
    until("receipts after the first certificate expired", || {
        store.receipts().len() == 7
    })
    .await;
    let certs = creds.certs();
    assert!(!certs.is_empty(), "renewed");
    let second = validity(&certs[0]);
    assert!(second.not_after > first.not_after);
    past(second.not_after + 1).await;
    let n = chain.entries.len();
    push(n);
    until("every receipt after the second certificate expired", || {
        store.receipts().len() == n
    })
    .await;
    stop_tx.send(true).unwrap();
    let stats = tokio::time::timeout(LIMIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    // Each certificate the agent kept: the same key, the server's CA, later
    // than the one before; and each is on record on the server.
    let certs = creds.certs();
    assert!(certs.len() >= 2, "renewed twice: {}", certs.len());
    assert_eq!(stats.renewals, certs.len() as u64);
    let mut prev = first;
    for c in &certs {
        let v = standing::check_renewed(c, &k.verifying_key(), &e.ca_cert, &e.client_cert).unwrap();
        assert!(v.not_after > prev.not_after);
        prev = v;
    }
    let device = DeviceId::from_key(&k.verifying_key());
    let recorded = h.server.shared.db.certs(device).unwrap();
    assert_eq!(recorded[0].how, CertHow::Enrol);
    assert_eq!(recorded.len(), 1 + certs.len());
    assert!(recorded[1..].iter().all(|c| c.how == CertHow::Renew));
    let counters = &h.server.shared.counters.certs;
    assert_eq!(counters.renewed.load(Ordering::Relaxed), certs.len() as u64);
    assert_eq!(counters.refused_expired.load(Ordering::Relaxed), 0);
    assert_eq!(counters.closed_expired.load(Ordering::Relaxed), 0);
    assert!(creds.refusal().is_none());
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_with_its_reason() {
    let h = server(2).await;
    let k = key(41);
    let e = h.enroll(&k).await.unwrap();
    let v = validity(&e.client_cert);
    assert_eq!(v.length(), 2, "device_cert_secs is the validity");
    // The device was off until after its certificate ended.
    past(v.not_after + 1).await;
    let media = tempfile::tempdir().unwrap();
    let (store, _) = fieldseal_tests::store_with_chain(&k, &[1], 500, media.path()).unwrap();
    let creds = Arc::new(MemCredentials::default());
    let mut cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    cfg.credentials = creds.clone();
    let r = tokio::time::timeout(
        LIMIT,
        sync::sync_until_drained(store, cfg, Arc::new(Progress::default())),
    )
    .await
    .unwrap();
    let Err(SyncError::Refused(r)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(r.kind, RefusalKind::CertificateExpired);
    assert!(r.reason.contains("certificate expired"), "{}", r.reason);
    assert_eq!(creds.refusal(), Some(r));
    let counters = &h.server.shared.counters.certs;
    assert_eq!(counters.refused_expired.load(Ordering::Relaxed), 1);
    assert_eq!(counters.refused_revoked.load(Ordering::Relaxed), 0);
    assert_eq!(
        h.server
            .shared
            .db
            .head(DeviceId::from_key(&k.verifying_key()))
            .unwrap()
            .next_seq,
        0,
        "nothing taken"
    );
    h.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_cannot_renew() {
    let h = server(6).await;
    let k = key(42);
    let device = DeviceId::from_key(&k.verifying_key());
    let e = h.enroll(&k).await.unwrap();
    let issued = h.server.shared.ca.issued();
    let media = tempfile::tempdir().unwrap();
    let (store, _) = fieldseal_tests::store_with_chain(&k, &[1], 500, media.path()).unwrap();
    let creds = Arc::new(MemCredentials::default());
    let mut cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    cfg.credentials = creds.clone();
    let progress = Arc::new(Progress::default());
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sync::run_sync(
        store.clone(),
        cfg,
        progress.clone(),
        stop_rx,
    ));
    until("connected", || {
        progress.connections.load(Ordering::Relaxed) > 0
    })
    .await;
    // Revoked in the index while the connection stays open and the key is
    // still on the allow-list: a revocation racing the renewal. The
    // renewal must look at the record itself.
    fieldseal_server::admin::device_revoke(&h.server.shared.db, device, fieldseal_server::now_us())
        .unwrap()
        .unwrap();
    let r = tokio::time::timeout(LIMIT, task).await.unwrap().unwrap();
    let Err(SyncError::Refused(r)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(r.kind, RefusalKind::Revoked);
    assert!(r.reason.contains("renewal refused"), "{}", r.reason);
    assert!(creds.certs().is_empty(), "no certificate kept");
    assert_eq!(h.server.shared.ca.issued(), issued, "the CA signed nothing");
    assert_eq!(h.server.shared.db.certs(device).unwrap().len(), 1);
    let counters = &h.server.shared.counters.certs;
    assert_eq!(counters.renewed.load(Ordering::Relaxed), 0);
    assert_eq!(counters.renewals_refused.load(Ordering::Relaxed), 1);
    h.server.shutdown().await;
}

#[test]
fn a_renewed_certificate_is_kept_only_if_it_can_be_used() {
    // One that fails would lock the device out at its next connection.
    let dir = tempfile::tempdir().unwrap();
    fieldseal_server::admin::init(dir.path(), &[], Some("x".into())).unwrap();
    let ca = fieldseal_server::pki::Ca::load(dir.path()).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    fieldseal_server::admin::init(other_dir.path(), &[], Some("x".into())).unwrap();
    let other_ca = fieldseal_server::pki::Ca::load(other_dir.path()).unwrap();
    let k = key(43);
    let pk = k.verifying_key().to_bytes();
    let at = |nb: i64| Validity {
        not_before: nb,
        not_after: nb + 90,
    };
    let old = ca.issue_timed(&pk, at(1_800_000_000)).unwrap();
    let check = |new: &[u8]| standing::check_renewed(new, &k.verifying_key(), &ca.cert_der, &old);
    let good = ca.issue_timed(&pk, at(1_800_000_060)).unwrap();
    assert_eq!(check(&good), Ok(at(1_800_000_060)));
    let another_key = ca
        .issue_timed(&key(44).verifying_key().to_bytes(), at(1_800_000_060))
        .unwrap();
    assert!(check(&another_key).unwrap_err().contains("another key"));
    let another_ca = other_ca.issue_timed(&pk, at(1_800_000_060)).unwrap();
    assert!(check(&another_ca).unwrap_err().contains("signature"));
    let not_later = ca.issue_timed(&pk, at(1_799_999_000)).unwrap();
    assert!(check(&not_later).unwrap_err().contains("no later"));
    assert!(check(b"not a certificate").is_err());
}

/// Read frames off `recv` until one whole message is there.
async fn next_message(
    recv: &mut quinn::RecvStream,
    buf: &mut Vec<u8>,
) -> fieldseal_proto::msg::Message {
    loop {
        if let Ok((m, n)) = fieldseal_proto::frame::Frame::parse(buf) {
            buf.drain(..n);
            return m;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(LIMIT, recv.read(&mut chunk))
            .await
            .unwrap()
            .unwrap()
            .expect("the stream ended before a message");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_agent_is_served_without_renewal_and_cut_off_when_its_certificate_ends() {
    use fieldseal_proto::codec::Encode;
    use fieldseal_proto::msg::{ErrorCode, Hello, Message};
    let h = server(3).await;
    let k = key(45);
    let e = h.enroll(&k).await.unwrap();
    let qcfg = sync::tls::sync_client_with(
        &k,
        rustls::pki_types::CertificateDer::from(e.client_cert.clone()),
        &rustls::pki_types::CertificateDer::from(e.ca_cert.clone()),
        Duration::from_secs(30),
    )
    .unwrap();
    let connect = || async {
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let conn = ep
            .connect_with(qcfg.clone(), h.server.quic_addr, "localhost")
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let hello = Message::Hello(Hello {
            protocol_version: 2,
            device_id: DeviceId::from_key(&k.verifying_key()),
            chain_head_seq: None,
        });
        send.write_all(&hello.to_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let Message::Welcome(w) = next_message(&mut recv, &mut buf).await else {
            panic!("no Welcome")
        };
        assert_eq!(
            w.protocol_version, 2,
            "the server speaks the agent's version"
        );
        (ep, conn, send, recv, buf)
    };

    // Renewal is not part of version 2.
    let (_ep, _conn, mut send, mut recv, mut buf) = connect().await;
    let renew = Message::RenewCert(fieldseal_proto::msg::RenewCert {
        cert_sha256: fieldseal_proto::identity::sha256(&e.client_cert),
    });
    send.write_all(&renew.to_bytes()).await.unwrap();
    match next_message(&mut recv, &mut buf).await {
        Message::Error(err) => assert_eq!(err.code, ErrorCode::UnexpectedMessage),
        other => panic!("{other:?}"),
    }

    // A connection that outlives its certificate is closed with 0x17,
    // which the agent reads as "certificate expired".
    let (_ep, conn, _send, _recv, _buf) = connect().await;
    let reason = tokio::time::timeout(LIMIT, conn.closed()).await.unwrap();
    assert!(
        matches!(&reason, quinn::ConnectionError::ApplicationClosed(c) if u64::from(c.error_code) == 0x17),
        "{reason:?}"
    );
    assert_eq!(
        sync::driver::refusal_of(&reason),
        Some(RefusalKind::CertificateExpired)
    );
    let counters = &h.server.shared.counters.certs;
    assert_eq!(counters.closed_expired.load(Ordering::Relaxed), 1);
    assert_eq!(counters.renewed.load(Ordering::Relaxed), 0);
    h.server.shutdown().await;
}
