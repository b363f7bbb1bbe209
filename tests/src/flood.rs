//! Clients that try to exhaust a server without being enrolled devices
//! (issue 13, item 2), and a probe that measures an enrolled device's
//! receipt latency meanwhile. Each stranger binds its own loopback address
//! (any of 127.0.0.0/8 reaches the server on Linux), so per-address limits
//! can be seen at work next to a device on 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use fieldseal_agent::sync::{tls, Enrollment};
use fieldseal_proto::codec::Encode;
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::frame::FrameBuffer;
use fieldseal_proto::identity::{DeviceId, Hash32};
use fieldseal_proto::msg::{
    EntryBytes, Hello, Message, SubmitEntry, UploadBegin, PROTOCOL_VERSION,
};
use rustls::pki_types::CertificateDer;

/// How one stranger's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Refused before or during the handshake (`CONNECTION_REFUSED`, or a
    /// handshake that failed).
    Refused,
    /// Closed by the server with this application code, this long after the
    /// client started connecting.
    Closed {
        /// The application close code (0 if it was another kind of close).
        code: u64,
        /// From the start of the connection attempt.
        after: Duration,
    },
}

/// A client endpoint bound to `ip` (any port).
///
/// # Panics
/// If it cannot bind.
pub fn endpoint_on(ip: IpAddr) -> quinn::Endpoint {
    quinn::Endpoint::client(SocketAddr::new(ip, 0)).expect("bind a client endpoint")
}

/// The enrolment client configuration of a token naming CA `ca_sha256`.
///
/// # Panics
/// If it cannot be built.
pub fn enroll_config(ca_sha256: Hash32) -> quinn::ClientConfig {
    tls::enroll_client(ca_sha256).expect("enrolment client config")
}

fn ending_of(e: &quinn::ConnectionError, started: Instant) -> Ending {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => Ending::Closed {
            code: c.error_code.into_inner(),
            after: started.elapsed(),
        },
        _ => Ending::Closed {
            code: 0,
            after: started.elapsed(),
        },
    }
}

/// Connect on the enrolment ALPN and do `behave` (idle, trickle bytes);
/// return how the server ended it.
async fn enrolment_stranger(
    ep: quinn::Endpoint,
    cfg: quinn::ClientConfig,
    server: SocketAddr,
    trickle: bool,
) -> Ending {
    let started = Instant::now();
    let Ok(connecting) = ep.connect_with(cfg, server, "localhost") else {
        return Ending::Refused;
    };
    let conn = match connecting.await {
        Ok(c) => c,
        Err(_) => return Ending::Refused,
    };
    if trickle {
        // One byte a second of an enrolment request that never ends.
        if let Ok((mut send, _recv)) = conn.open_bi().await {
            loop {
                if send.write_all(&[1]).await.is_err() {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = conn.closed() => break,
                }
            }
        }
    }
    let why = conn.closed().await;
    ending_of(&why, started)
}

/// `n` strangers at once on the enrolment ALPN from `ep`, idle or sending
/// one byte a second; how each ended.
///
/// # Panics
/// If a task panicked.
pub async fn enrolment_strangers(
    ep: &quinn::Endpoint,
    cfg: &quinn::ClientConfig,
    server: SocketAddr,
    n: usize,
    trickle: bool,
) -> Vec<Ending> {
    let tasks: Vec<_> = (0..n)
        .map(|_| tokio::spawn(enrolment_stranger(ep.clone(), cfg.clone(), server, trickle)))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("stranger task"));
    }
    out
}

/// `n` quick enrolment attempts one after another from `ep`, each with a
/// request that is not one; how many the server refused for their rate
/// (closed with `busy_code`) and how many it answered.
pub async fn enrolment_burst(
    ep: &quinn::Endpoint,
    cfg: &quinn::ClientConfig,
    server: SocketAddr,
    n: usize,
    busy_code: u64,
) -> (usize, usize) {
    let (mut busy, mut answered) = (0, 0);
    for _ in 0..n {
        let Ok(connecting) = ep.connect_with(cfg.clone(), server, "localhost") else {
            continue;
        };
        let Ok(conn) = connecting.await else { continue };
        let attempt = async {
            let (mut send, mut recv) = conn.open_bi().await?;
            send.write_all(b"not an enrolment request").await?;
            send.finish()?;
            Ok::<_, anyhow::Error>(recv.read_to_end(64 * 1024).await?)
        };
        match attempt.await {
            Ok(_) => answered += 1,
            Err(_) => {
                let why = conn.closed().await;
                if matches!(ending_of(&why, Instant::now()), Ending::Closed { code, .. } if code == busy_code)
                {
                    busy += 1;
                }
            }
        }
        conn.close(0u32.into(), b"done");
    }
    (busy, answered)
}

/// `n` handshakes one after another from `ep` with `cfg` (e.g. the sync
/// ALPN without a certificate, which the server closes at once); how many
/// were refused before their handshake completed.
pub async fn handshake_burst(
    ep: &quinn::Endpoint,
    cfg: &quinn::ClientConfig,
    server: SocketAddr,
    n: usize,
) -> usize {
    let mut refused = 0;
    for _ in 0..n {
        match ep.connect_with(cfg.clone(), server, "localhost") {
            Ok(c) => match c.await {
                Ok(conn) => {
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                }
                Err(_) => refused += 1,
            },
            Err(_) => refused += 1,
        }
    }
    refused
}

/// Start `n` handshakes from `ip` that never finish: a real client's first
/// datagram (its Initial) is captured and sent from a bare socket that
/// never answers the server. Returns the socket (keep it alive).
///
/// # Panics
/// If a socket cannot be bound.
pub async fn half_open_handshakes(
    ip: IpAddr,
    cfg: &quinn::ClientConfig,
    server: SocketAddr,
    n: usize,
) -> tokio::net::UdpSocket {
    let sender = tokio::net::UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .expect("bind");
    let ep = endpoint_on(ip);
    let mut buf = vec![0u8; 2048];
    for _ in 0..n {
        // A sink of its own for each capture: a dropped attempt sends its
        // close to its sink, which must not be taken for the next Initial.
        let sink = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let connecting = ep
            .connect_with(cfg.clone(), sink.local_addr().expect("addr"), "localhost")
            .expect("connect");
        let len = tokio::time::timeout(Duration::from_secs(5), sink.recv(&mut buf))
            .await
            .expect("a client's Initial")
            .expect("recv");
        drop(connecting);
        let _ = sender.send_to(&buf[..len], server).await;
    }
    sender
}

/// An enrolled device's sync connection that submits entries one at a time
/// and times each receipt.
#[derive(Debug)]
pub struct Probe {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: FrameBuffer,
    _ep: quinn::Endpoint,
}

impl Probe {
    /// Connect as `key` from 127.0.0.1 and get `Welcome`.
    ///
    /// # Errors
    /// Connection or protocol errors.
    pub async fn connect(
        server: SocketAddr,
        key: &SigningKey,
        e: &Enrollment,
    ) -> anyhow::Result<Probe> {
        Self::connect_speaking(server, key, e, PROTOCOL_VERSION).await
    }

    /// As [`Probe::connect`], saying protocol `version` in `Hello`.
    ///
    /// # Errors
    /// Connection or protocol errors.
    pub async fn connect_speaking(
        server: SocketAddr,
        key: &SigningKey,
        e: &Enrollment,
        version: u16,
    ) -> anyhow::Result<Probe> {
        let cfg = tls::sync_client_with(
            key,
            CertificateDer::from(e.client_cert.clone()),
            &CertificateDer::from(e.ca_cert.clone()),
            Duration::from_secs(30),
        )?;
        let ep = endpoint_on(IpAddr::from([127, 0, 0, 1]));
        let conn = ep.connect_with(cfg, server, "localhost")?.await?;
        let (mut send, recv) = conn.open_bi().await?;
        let hello = Message::Hello(Hello {
            protocol_version: version,
            device_id: DeviceId::from_key(&key.verifying_key()),
            chain_head_seq: None,
        });
        send.write_all(&hello.to_bytes()).await?;
        let mut p = Probe {
            conn,
            send,
            recv,
            buf: FrameBuffer::new(),
            _ep: ep,
        };
        match p.next().await? {
            Message::Welcome(_) => Ok(p),
            other => anyhow::bail!("expected Welcome, got {:?}", other.message_type()),
        }
    }

    async fn next(&mut self) -> anyhow::Result<Message> {
        loop {
            if let Some(m) = self.buf.next_message()? {
                return Ok(m);
            }
            let mut chunk = vec![0u8; self.buf.space().max(1)];
            let n = self
                .recv
                .read(&mut chunk)
                .await?
                .ok_or_else(|| anyhow::anyhow!("control stream ended"))?;
            self.buf.push(&chunk[..n]);
        }
    }

    /// Submit `entry` and wait for its receipt; the time it took.
    ///
    /// # Errors
    /// The connection failed or the entry was not given a receipt.
    pub async fn submit(&mut self, entry: &SignedEntry) -> anyhow::Result<Duration> {
        let m = Message::SubmitEntry(SubmitEntry {
            entry: EntryBytes::new(entry.to_bytes())?,
        });
        let t0 = Instant::now();
        self.send.write_all(&m.to_bytes()).await?;
        match self.next().await? {
            Message::EntryReceipt(r) if r.seq == entry.seq() => Ok(t0.elapsed()),
            other => anyhow::bail!("seq {}: got {other:?}", entry.seq()),
        }
    }

    /// One upload stream that opens with `begin` and carries `bytes` behind
    /// it at once, as a pipelined upload does (protocol version 4, FORMAT.md
    /// §7.5). Returns the server's answer and whether it stopped the stream
    /// before every byte was written.
    ///
    /// # Errors
    /// The connection failed or no answer came.
    pub async fn upload_at_once(
        &self,
        begin: UploadBegin,
        bytes: &[u8],
    ) -> anyhow::Result<(Message, bool)> {
        let (mut send, mut recv) = self.conn.open_bi().await?;
        let mut out = Message::UploadBegin(begin).to_bytes();
        out.extend_from_slice(bytes);
        let stopped = match send.write_all(&out).await {
            Ok(()) => {
                let _ = send.finish();
                false
            }
            Err(quinn::WriteError::Stopped(_)) => true,
            Err(e) => return Err(e.into()),
        };
        let answer = recv.read_to_end(1024).await?;
        let mut buf = FrameBuffer::new();
        buf.push(&answer);
        let m = buf
            .next_message()?
            .ok_or_else(|| anyhow::anyhow!("no answer on the upload stream"))?;
        Ok((m, stopped))
    }

    /// Close the connection.
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"done");
    }
}

/// Percentile `p` (0–100) of `v` (sorted in place), nearest rank.
///
/// # Panics
/// If `v` is empty.
pub fn percentile(v: &mut [Duration], p: u32) -> Duration {
    v.sort();
    let rank = (v.len() * p as usize).div_ceil(100).max(1);
    v[rank - 1]
}

/// `/metrics` of the server at `http`.
///
/// # Panics
/// If the request fails.
pub fn scrape(http: SocketAddr) -> String {
    let a = crate::http::request(http, "GET", "/metrics", None, None).expect("GET /metrics");
    String::from_utf8(a.body).expect("UTF-8 metrics")
}

/// The value of the sample `name` (with its labels, as written) in `text`.
///
/// # Panics
/// If it is not there.
pub fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}
