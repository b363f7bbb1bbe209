//! Attacks on a running server, each seeded and ended by the invariant check:
//! a flood of handshakes from strangers (no certificate, a foreign CA's
//! certificate, garbage datagrams) while an enrolled device syncs; malformed
//! and oversized frames from an enrolled device over a real connection.

use std::sync::Arc;
use std::time::Duration;

use fieldseal_agent::sync::{self, tls, Progress};
use fieldseal_proto::identity::DeviceId;
use fieldseal_server::chainindex::ChainIndex;
use fieldseal_server::pki::Ca;
use fieldseal_tests::faults::{self, iterations, AgentView, Scenario, ServerView};
use fieldseal_tests::{key, Device, Harness};
use rustls::pki_types::CertificateDer;

const LIMIT: Duration = Duration::from_secs(120);

fn check(
    h: &Harness,
    k: &ed25519_dalek::SigningKey,
    store: &sync::MemStore,
    panics: u64,
) -> faults::Verdict {
    let agent = AgentView::from_mem(store);
    let server = ServerView::read(
        h.path(),
        &h.server.shared.db,
        h.server.shared.blobs.clone(),
        DeviceId::from_key(&k.verifying_key()),
    )
    .unwrap();
    let mut v = faults::check(
        &k.verifying_key(),
        &agent.durable(),
        &agent,
        &server,
        panics,
    );
    faults::check_rss(
        &mut v,
        "test process",
        faults::peak_rss_kb(std::process::id()),
        2048,
    );
    v
}

/// A client with no certificate on the sync ALPN.
fn anonymous(ca: &[u8]) -> quinn::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).unwrap();
    let mut t = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    t.alpn_protocols = vec![b"fieldseal/1".to_vec()];
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(t).unwrap(),
    ))
}

/// Hundreds of handshakes from strangers, and garbage datagrams, while an
/// enrolled device syncs: every stranger is refused, nothing of theirs is
/// stored, the device's chain arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_flood_does_not_stop_an_enrolled_device() {
    let sc = Scenario::new("handshake_flood_does_not_stop_an_enrolled_device");
    let panics = faults::panics();
    let n = iterations("FIELDSEAL_FLOOD", 150);
    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(94, &[3, 3], 150_000).await.unwrap();

    // Strangers: a foreign CA's certificate for a fresh key, or none at all.
    let other = tempfile::tempdir().unwrap();
    fieldseal_server::admin::init(other.path(), &[], Some("x".into())).unwrap();
    let foreign_ca = Ca::load(other.path()).unwrap();
    let mut r = sc.rng(8);
    let server = h.server.quic_addr;
    let ca = e.ca_cert.clone();
    let stranger_key = key(95);
    let foreign_cert = foreign_ca
        .issue_device_cert(&stranger_key.verifying_key().to_bytes())
        .unwrap();
    let foreign = tls::sync_client_with(
        &stranger_key,
        CertificateDer::from(foreign_cert),
        &CertificateDer::from(ca.clone()),
        Duration::from_secs(5),
    )
    .unwrap();
    let kinds: Vec<u64> = (0..n).map(|_| r.next_u64() % 3).collect();
    let flood = tokio::spawn(async move {
        let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut tasks = Vec::new();
        let (mut accepted, mut refused) = (0u64, 0u64);
        for (i, kind) in kinds.into_iter().enumerate() {
            match kind {
                0 => {
                    let c = ep
                        .connect_with(anonymous(&ca), server, "localhost")
                        .unwrap();
                    tasks.push(tokio::spawn(c));
                }
                1 => {
                    let c = ep
                        .connect_with(foreign.clone(), server, "localhost")
                        .unwrap();
                    tasks.push(tokio::spawn(c));
                }
                _ => {
                    // A datagram that looks like a QUIC initial, then noise.
                    let mut d = vec![0xc3u8; 1200];
                    for (j, b) in d.iter_mut().enumerate().skip(1) {
                        *b = u8::try_from((i * 31 + j * 7) % 251).unwrap();
                    }
                    let _ = junk.send_to(&d, server).await;
                }
            }
            if tasks.len() >= 32 {
                for t in tasks.drain(..) {
                    match t.await.unwrap() {
                        Ok(conn) => {
                            // TLS 1.3: the client may finish before the server
                            // refuses its certificate; it must then be closed.
                            let why =
                                tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                            assert!(why.is_ok(), "a stranger's connection stayed open");
                            accepted += 1;
                        }
                        Err(_) => refused += 1,
                    }
                }
            }
        }
        for t in tasks {
            match t.await.unwrap() {
                Ok(conn) => {
                    let why = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                    assert!(why.is_ok(), "a stranger's connection stayed open");
                    accepted += 1;
                }
                Err(_) => refused += 1,
            }
        }
        (accepted, refused)
    });
    let cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    let progress = Arc::new(Progress::default());
    let stats = tokio::time::timeout(
        LIMIT,
        sync::sync_until_drained(store.clone(), cfg, progress),
    )
    .await
    .expect("the device drained during the flood")
    .unwrap();
    let (closed_late, refused) = flood.await.unwrap();
    eprintln!("flood of {n}: {refused} refused in the handshake, {closed_late} closed right after; device: {stats:?}");
    assert_eq!(store.receipts().len(), chain.entries.len());
    assert!(
        h.server
            .shared
            .db
            .head(DeviceId::from_key(&stranger_key.verifying_key()))
            .unwrap()
            .next_seq
            == 0
    );
    let v = check(&h, &k, &store, panics);
    sc.record(&v, n, &[]);
    v.assert_ok();
    h.server.shutdown().await;
}

/// An enrolled device sends malformed frames (bad type, oversized length,
/// truncated payload, garbage, an upload with a lying length) over real
/// connections: each is refused without harm, and the device then syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_are_refused() {
    let sc = Scenario::new("malformed_and_oversized_frames_are_refused");
    let panics = faults::panics();
    let n = iterations("FIELDSEAL_BAD_FRAMES", 24);
    let h = Harness::start().await.unwrap();
    let Device {
        key: k,
        enrollment: e,
        store,
        chain,
        media_dir: _media_dir,
    } = h.device(96, &[2], 50_000).await.unwrap();
    let cfg = tls::sync_client_with(
        &k,
        CertificateDer::from(e.client_cert.clone()),
        &CertificateDer::from(e.ca_cert.clone()),
        Duration::from_secs(5),
    )
    .unwrap();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let mut r = sc.rng(9);
    for i in 0..n {
        let conn = ep
            .connect_with(cfg.clone(), h.server.quic_addr, "localhost")
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let bytes: Vec<u8> = match i % 6 {
            // An unknown message type.
            0 => vec![0xee, 0, 0, 0, 1, 0],
            // A length far past MAX_FRAME_PAYLOAD: refused from the header.
            1 => {
                let mut b = vec![1u8];
                b.extend_from_slice(&u32::MAX.to_be_bytes());
                b
            }
            // A plausible header and a payload cut short, then the stream ends.
            2 => vec![1, 0, 0, 0, 200, 1, 2, 3],
            // Random bytes.
            3 => (0..(r.next_u64() % 5000))
                .map(|_| u8::try_from(r.next_u64() & 0xff).unwrap())
                .collect(),
            // A valid-length frame full of garbage (64 KiB).
            4 => {
                let mut b = vec![1u8];
                b.extend_from_slice(&65_536u32.to_be_bytes());
                b.extend((0..65_536).map(|j| u8::try_from((j * 13 + i) % 256).unwrap()));
                b
            }
            // A frame of exactly MAX + 1.
            _ => {
                let mut b = vec![1u8];
                b.extend_from_slice(&65_537u32.to_be_bytes());
                b.extend(std::iter::repeat_n(0u8, 65_537));
                b
            }
        };
        let _ = send.write_all(&bytes).await;
        let _ = send.finish();
        // The server answers with an error or closes; it never hangs.
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = vec![0u8; 1024];
            let mut got = 0usize;
            while let Ok(Some(m)) = recv.read(&mut buf).await {
                got += m;
            }
            got
        })
        .await;
        assert!(
            answer.is_ok(),
            "bad frame {i}: the server neither answered nor closed"
        );
        conn.close(0u32.into(), b"done");
    }
    ep.wait_idle().await;
    assert_eq!(
        h.server
            .shared
            .db
            .head(DeviceId::from_key(&k.verifying_key()))
            .unwrap()
            .next_seq,
        0,
        "nothing stored"
    );
    let progress = Arc::new(Progress::default());
    let cfg = Harness::sync_config(&h.server_addr(), &k, &e);
    let stats = tokio::time::timeout(
        LIMIT,
        sync::sync_until_drained(store.clone(), cfg, progress),
    )
    .await
    .unwrap()
    .unwrap();
    eprintln!("after {n} bad frames: {stats:?}");
    assert_eq!(store.receipts().len(), chain.entries.len());
    let v = check(&h, &k, &store, panics);
    sc.record(&v, n, &[]);
    v.assert_ok();
    h.server.shutdown().await;
}
