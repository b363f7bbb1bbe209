//! `upload`, `ceiling` and `sink`: one device's files through the sync
//! client, and the same files over bare quinn streams as the reference.

use super::*;

pub(crate) async fn upload(args: &Args) -> anyhow::Result<()> {
    let server = args.get("server")?;
    let server_data = args.path("server-data")?;
    let files = media_files(&args.path("media")?)?;
    let key = device_key(args.num("seed", 1)?);
    // What the agent did while recording, before the backlog formed: hash
    // and sign each segment. Not timed.
    let mut writer = ChainWriter::new(key.clone(), 4);
    let store = Arc::new(BenchStore::new(Arc::default(), false));
    for e in writer.start()? {
        store.push(&e, None);
    }
    let mut bytes = 0;
    for (path, len) in &files {
        let e = writer.segment(hash_file(path)?, *len)?;
        store.push(&e, Some(path.clone()));
        bytes += len;
    }
    let enrollment = enroll(&key, server, &server_data).await?;
    let mut cfg = SyncConfig::from_enrollment(server, key, &enrollment);
    cfg.machine.max_uploads = args.num("max-uploads", cfg.machine.max_uploads)?;
    let progress = Arc::new(Progress::default());
    let t0 = Instant::now();
    let stats = sync::sync_until_drained(store.clone(), cfg, progress).await?;
    let secs = t0.elapsed().as_secs_f64();
    let (no_receipt, unacked) = store.pending();
    if no_receipt != 0 || unacked != 0 {
        bail!(
            "drained with {no_receipt} entries unreceipted and {unacked} segments unacknowledged"
        );
    }
    println!("files={}", files.len());
    println!("bytes={bytes}");
    println!("seconds={secs:.3}");
    println!("mbit_s={:.1}", bytes as f64 * 8.0 / secs / 1e6);
    println!("media_bytes_sent={}", stats.media_bytes_sent);
    println!("connections={}", stats.connections);
    Ok(())
}

/// Streams at once in `ceiling`: what the sync client allows
/// (`MachineConfig::max_uploads`), so that the ceiling differs from the real
/// upload only by what the server does with the bytes.
pub(crate) fn ceiling_streams() -> usize {
    sync::MachineConfig::default().max_uploads
}

pub(crate) async fn ceiling(args: &Args) -> anyhow::Result<()> {
    let server = args.get("server")?;
    let server_data = args.path("server-data")?;
    let files = media_files(&args.path("media")?)?;
    let key = device_key(args.num("seed", 1)?);
    let ca = pki::Ca::load(&server_data)?;
    let cert = ca.issue_device_cert(&key.verifying_key().to_bytes())?;
    let ca_cert = pki::read_cert(&server_data.join("ca.crt"))?;
    let qcfg = tls::sync_client_with(
        &key,
        rustls::pki_types::CertificateDer::from(cert),
        &ca_cert,
        sync::DEFAULT_IDLE_TIMEOUT,
    )?;
    let (host, _) = server
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("--server: HOST:PORT"))?;
    let addr: SocketAddr = tokio::net::lookup_host(server)
        .await?
        .next()
        .ok_or_else(|| anyhow!("{server}: no address"))?;
    let endpoint = quinn::Endpoint::client("0.0.0.0:0".parse()?)?;
    let t0 = Instant::now();
    let conn = endpoint.connect_with(qcfg, addr, host)?.await?;
    let total: u64 = files.iter().map(|f| f.1).sum();
    send_all(
        &conn,
        files,
        ceiling_streams(),
        |mut send, (path, _)| async move {
            let mut file = tokio::fs::File::open(&path).await?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await?;
                if n == 0 {
                    break;
                }
                send.write_all(&buf[..n]).await?;
            }
            Ok(send)
        },
    )
    .await?;
    report(&endpoint, &conn, total, t0).await;
    Ok(())
}

/// Send each item on a stream of its own, `streams` at once: `write` puts
/// its bytes on the stream, then the stream is finished and the sink's
/// answer (the byte count it read) is checked against `len`.
pub(crate) async fn send_all<I, F, Fut>(
    conn: &quinn::Connection,
    items: Vec<(I, u64)>,
    streams: usize,
    write: F,
) -> anyhow::Result<()>
where
    I: Send + 'static,
    F: Fn(quinn::SendStream, (I, u64)) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<quinn::SendStream>> + Send + 'static,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(streams.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for item in items {
        let permit = sem.clone().acquire_owned().await?;
        let len = item.1;
        let (send, mut recv) = conn.open_bi().await?;
        let written = write(send, item);
        tasks.spawn(async move {
            let _permit = permit;
            let mut send = written.await?;
            send.finish()?;
            let got = recv.read_to_end(8).await?;
            let got = u64::from_be_bytes(got.try_into().map_err(|_| anyhow!("short answer"))?);
            if got != len {
                bail!("sink got {got} of {len} bytes");
            }
            Ok::<_, anyhow::Error>(())
        });
        while let Some(r) = tasks.try_join_next() {
            r??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// Close the connection and print the figures `net.sh` reads.
pub(crate) async fn report(
    endpoint: &quinn::Endpoint,
    conn: &quinn::Connection,
    total: u64,
    t0: Instant,
) {
    let secs = t0.elapsed().as_secs_f64();
    let path = conn.stats().path;
    conn.close(0u32.into(), b"done");
    endpoint.wait_idle().await;
    println!("bytes={total}");
    println!("seconds={secs:.3}");
    println!("mbit_s={:.1}", total as f64 * 8.0 / secs / 1e6);
    // Packets the path lost (on loopback: receive-buffer overflows).
    println!(
        "lost_packets={} of {}",
        path.lost_packets, path.sent_packets
    );
}

pub(crate) async fn sink(args: &Args) -> anyhow::Result<()> {
    let listen: SocketAddr = args.get("listen")?.parse()?;
    let server_data = args.path("server-data")?;
    let allowed = pki::Allowed::default();
    allowed.insert(device_key(args.num("seed", 1)?).verifying_key().to_bytes());
    let tls = pki::server_tls(&server_data, allowed, Default::default())?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    sc.transport_config(Arc::new(fieldseal_server::quic::transport_config()));
    let endpoint = fieldseal_server::quic::server_endpoint(sc, listen)?;
    println!("listening={}", endpoint.local_addr()?);
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let conn = incoming.await?;
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let mut n = 0u64;
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Some(k) = recv.read(&mut buf).await? {
                        n += k as u64;
                    }
                    send.write_all(&n.to_be_bytes()).await?;
                    send.finish()?;
                    Ok::<_, anyhow::Error>(())
                });
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    Ok(())
}
