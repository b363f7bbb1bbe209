//! `plain` and `plain-sink`: the reference the `ceiling` is held against
//! (issue 17): the same files sent by a bare quinn client from memory to a
//! bare quinn server, with quinn's own defaults and the socket buffers of
//! quinn's `perf` tool, and nothing of ours in the way (no device
//! certificate, no file reads, no sync client settings).

use super::*;
use bytes::Bytes;

use crate::transfer::{ceiling_streams, report, send_all};

/// The server name in the sink's self-signed certificate.
const NAME: &str = "plain-sink.invalid";

/// UDP socket buffers of both ends, as quinn's `perf` asks for (2 MiB).
const SOCKET_BUFFER: usize = 2 * 1024 * 1024;

/// A UDP socket bound to `addr` with `SOCKET_BUFFER` each way (as much as
/// the kernel grants).
fn socket(addr: SocketAddr) -> anyhow::Result<std::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(addr).with_context(|| format!("bind {addr}"))?;
    let r = socket2::SockRef::from(&s);
    // Best effort: the kernel caps them at net.core.[rw]mem_max.
    let _ = r.set_send_buffer_size(SOCKET_BUFFER);
    let _ = r.set_recv_buffer_size(SOCKET_BUFFER);
    Ok(s)
}

fn endpoint(
    server: Option<quinn::ServerConfig>,
    addr: SocketAddr,
) -> anyhow::Result<quinn::Endpoint> {
    let rt = quinn::default_runtime().ok_or_else(|| anyhow!("no async runtime"))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket(addr)?,
        rt,
    )?)
}

/// `plain-sink --listen ADDR --cert-out FILE`: writes its self-signed
/// certificate (DER) to FILE, then reads every stream to its end and answers
/// with the byte count, as `sink` does.
pub(crate) async fn plain_sink(args: &Args) -> anyhow::Result<()> {
    let listen: SocketAddr = args.get("listen")?.parse()?;
    let cert = rcgen::generate_simple_self_signed(vec![NAME.to_string()])?;
    std::fs::write(args.path("cert-out")?, cert.cert.der())?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let sc = quinn::ServerConfig::with_single_cert(vec![cert.cert.der().clone()], key)?;
    let endpoint = endpoint(Some(sc), listen)?;
    println!("listening={}", endpoint.local_addr()?);
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let conn = incoming.await?;
            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while let Some(chunk) = recv.read_chunk(usize::MAX, false).await? {
                        n += chunk.bytes.len() as u64;
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

/// `plain --server HOST:PORT --cert FILE --media DIR [--streams N]`: loads
/// the files into memory (not timed), then times sending each on a stream of
/// one connection, N at once (default: as many as the sync client uses).
pub(crate) async fn plain(args: &Args) -> anyhow::Result<()> {
    let server: SocketAddr = args.get("server")?.parse()?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from(std::fs::read(
        args.path("cert")?,
    )?))?;
    let cc = quinn::ClientConfig::with_root_certificates(Arc::new(roots))?;
    let mut files = Vec::new();
    for (path, _) in media_files(&args.path("media")?)? {
        files.push(Bytes::from(std::fs::read(&path)?));
    }
    let streams = args.num("streams", ceiling_streams())?.max(1);
    let total: u64 = files.iter().map(|f| f.len() as u64).sum();
    let endpoint = endpoint(None, "0.0.0.0:0".parse()?)?;
    let t0 = Instant::now();
    let conn = endpoint.connect_with(cc, server, NAME)?.await?;
    let items = files.into_iter().map(|f| {
        let len = f.len() as u64;
        (f, len)
    });
    send_all(
        &conn,
        items.collect(),
        streams,
        |mut send, (data, _)| async move {
            send.write_chunk(data).await?;
            Ok(send)
        },
    )
    .await?;
    report(&endpoint, &conn, total, t0).await;
    Ok(())
}
