//! The QUIC driver: accepts connections, serves enrolment on ALPN
//! `fieldseal-enroll/1` and the sync protocol on ALPN `fieldseal/1`. It
//! moves bytes and carries out the decisions of [`crate::ingest`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::enroll::{
    EnrollRequest, EnrollResponse, EnrollStatus, ALPN_ENROLL, ALPN_SYNC, MAX_ENROLL_REQUEST,
};
use fieldseal_proto::entry::ChainHead;
use fieldseal_proto::frame::FrameBuffer;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::leaf::Leaf;
use fieldseal_proto::msg::{
    Detail, ErrorCode, ErrorMsg, Message, RejectCode, SeqList, UploadAck, UploadFailCode,
    UploadFailed, UploadOffset, Welcome, MAX_RESEND_MEDIA, PROTOCOL_VERSION,
};
use fieldseal_proto::receipt::Receipt;
use quinn::{RecvStream, SendStream, VarInt};

use crate::ingest::{AcceptedEntry, Decision, Ingest};
use crate::storage::PartWriter;
use crate::{admin, now_us, pki, Shared};

/// Application close code: the device was revoked.
pub const CLOSE_REVOKED: VarInt = VarInt::from_u32(0x10);
/// Application close code: the server shuts down.
pub const CLOSE_SHUTDOWN: VarInt = VarInt::from_u32(0x11);
/// Application close code: the peer broke the protocol.
pub const CLOSE_PROTOCOL: VarInt = VarInt::from_u32(0x12);
/// Application close code: not allowed (no or unknown certificate).
pub const CLOSE_FORBIDDEN: VarInt = VarInt::from_u32(0x13);
/// Application close code: the device opened a newer connection.
pub const CLOSE_SUPERSEDED: VarInt = VarInt::from_u32(0x14);

/// Bytes written to a partial upload between two fsyncs: the most a power
/// cut can cost a resumed upload (a crash of the process costs nothing: the
/// page cache keeps the bytes, and a resume re-hashes what is on disk). At
/// 8 MiB a segment of a few MB is fsynced once, when complete; one fsync
/// per MiB had cost more than the writes on a fast link.
const PARTIAL_SYNC_EVERY: u64 = 8 * 1024 * 1024;

/// Bytes gathered from the stream before one write to the partial file:
/// each write of tokio's File is a round trip to the blocking pool, so
/// writing each QUIC read (≤ 64 KiB) cost a thread hand-off per chunk.
const WRITE_BATCH: usize = 512 * 1024;

/// Transport settings for lossy, high-latency mobile links; see
/// `docs/FORMAT.md` §7.9 "Transport settings" for the reasoning. The agent uses the same values.
pub fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    // Bandwidth × RTT at 10 Mbit/s and 300 ms is ~375 KB; a window of 1 MiB
    // per stream (~2.5 × BDP) keeps one upload from stalling while losses are
    // recovered, and 4 MiB per connection lets a few uploads and the control
    // stream run side by side.
    t.stream_receive_window(VarInt::from_u32(1024 * 1024));
    t.receive_window(VarInt::from_u32(4 * 1024 * 1024));
    t.send_window(4 * 1024 * 1024);
    // Start from a mobile RTT, not quinn's 333 ms default guess nor a LAN value.
    t.initial_rtt(Duration::from_millis(300));
    // Keep NAT bindings of mobile carriers (often 30 s for UDP) alive.
    t.keep_alive_interval(Some(Duration::from_secs(10)));
    // Survive a minute of radio shadow before giving up the connection.
    t.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(60)).expect("in range"),
    ));
    // BBR, as the agent (FORMAT.md 7.9): the server sends little, but acks
    // and receipts should not stall behind a loss-based window either.
    t.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    t.max_concurrent_bidi_streams(VarInt::from_u32(64));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    t
}

/// Bind the QUIC endpoint.
///
/// # Errors
/// TLS configuration errors; the address is in use.
pub fn endpoint(shared: &Shared, addr: SocketAddr) -> anyhow::Result<quinn::Endpoint> {
    let tls = pki::server_tls(&shared.dir, shared.allowed.clone())?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    sc.transport_config(Arc::new(transport_config()));
    server_endpoint(sc, addr)
}

/// Receive buffer asked of the kernel for the server's UDP socket.
///
/// Linux's default (`net.core.rmem_default`, 208 KiB) holds about 140 full
/// datagrams; an upload burst on loopback overflowed it and the kernel
/// dropped 7–15 % of the packets (quinn's path statistics, 2026-11-28), each
/// one resent and counted as congestion. The kernel caps the request at
/// `net.core.rmem_max` (and doubles it for its own bookkeeping); start-up
/// logs what was granted when it is less than asked.
pub const RECV_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Bind a QUIC server endpoint on `addr` with `sc` and a receive buffer of
/// [`RECV_BUFFER_BYTES`].
///
/// # Errors
/// The address is in use or not local.
pub fn server_endpoint(
    sc: quinn::ServerConfig,
    addr: SocketAddr,
) -> anyhow::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let sock = socket2::SockRef::from(&socket);
    if let Err(e) = sock.set_recv_buffer_size(RECV_BUFFER_BYTES) {
        tracing::warn!("could not enlarge the UDP receive buffer: {e}");
    }
    match sock.recv_buffer_size() {
        // Linux reports twice what it grants to the payload.
        Ok(got) if got < RECV_BUFFER_BYTES => tracing::info!(
            "UDP receive buffer is {got} bytes ({RECV_BUFFER_BYTES} asked); \
             raise net.core.rmem_max for bursts of many devices"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("UDP receive buffer size unknown: {e}"),
    }
    let rt = quinn::default_runtime().ok_or_else(|| anyhow::anyhow!("no async runtime"))?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(sc),
        socket,
        rt,
    )?)
}

pub(crate) async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => {
                    if let Err(e) = handle_connection(conn, shared).await {
                        tracing::debug!(%remote, "connection ended: {e:#}");
                    }
                }
                Err(e) => tracing::info!(%remote, "handshake failed: {e}"),
            }
        });
    }
}

fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}

fn peer_key(conn: &quinn::Connection) -> Option<[u8; 32]> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    pki::cert_ed25519_key(certs.first()?).ok()
}

async fn handle_connection(conn: quinn::Connection, shared: Arc<Shared>) -> anyhow::Result<()> {
    match alpn(&conn).as_deref() {
        Some(p) if p == ALPN_ENROLL => enroll(conn, shared).await,
        Some(p) if p == ALPN_SYNC => {
            let Some(key) = peer_key(&conn) else {
                conn.close(CLOSE_FORBIDDEN, b"client certificate required");
                anyhow::bail!("sync without client certificate");
            };
            // The verifier checked the allow-list during the handshake; check
            // the index too, in case a revocation raced the handshake.
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&key)?;
            let device = DeviceId::from_key(&vk);
            let rec = shared.db.device(device)?;
            if !matches!(&rec, Some(d) if d.revoked_us.is_none()) || !shared.allowed.contains(&key)
            {
                conn.close(CLOSE_FORBIDDEN, b"device not enrolled or revoked");
                anyhow::bail!("device {device} not enrolled or revoked");
            }
            // One agent per device: a new connection supersedes older ones
            // (after a network change the old one may linger until its idle
            // timeout, holding a half-written upload).
            let older = std::mem::replace(
                shared.live.lock().expect("lock").entry(device).or_default(),
                vec![conn.clone()],
            );
            for c in older {
                tracing::info!(%device, "new connection supersedes an older one");
                c.close(CLOSE_SUPERSEDED, b"superseded by a newer connection");
            }
            // A revocation between the check above and the registration
            // would have missed this connection: look again.
            if !shared.allowed.contains(&key) {
                conn.close(CLOSE_REVOKED, b"device revoked");
                anyhow::bail!("device {device} revoked while connecting");
            }
            let res = sync(&conn, &shared, vk).await;
            let mut live = shared.live.lock().expect("lock");
            if let Some(v) = live.get_mut(&device) {
                v.retain(|c| c.stable_id() != conn.stable_id());
            }
            res
        }
        _ => {
            conn.close(CLOSE_PROTOCOL, b"unknown ALPN");
            anyhow::bail!("unknown ALPN")
        }
    }
}

async fn enroll(conn: quinn::Connection, shared: Arc<Shared>) -> anyhow::Result<()> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let bytes = recv.read_to_end(MAX_ENROLL_REQUEST).await?;
    let resp = match EnrollRequest::from_bytes(&bytes) {
        Ok(req) => {
            let s = shared.clone();
            let resp = tokio::task::spawn_blocking(move || {
                admin::enroll(&s.db, &s.ca, &s.receipt_key.verifying_key(), &req, now_us())
            })
            .await?;
            if let EnrollResponse::Ok { device_id, .. } = &resp {
                if let Ok(Some(d)) = shared.db.device(*device_id) {
                    shared.allowed.insert(admin::device_key(&d)?);
                }
                tracing::info!(device = %device_id, "device enrolled");
            }
            resp
        }
        Err(e) => EnrollResponse::Refused {
            status: EnrollStatus::Malformed,
            detail: Detail::lossy(&e.to_string()),
        },
    };
    if let EnrollResponse::Refused { status, detail } = &resp {
        tracing::warn!(?status, detail = detail.as_str(), "enrolment refused");
    }
    send.write_all(&resp.to_bytes()).await?;
    send.finish()?;
    // Let the client read the answer and close.
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
    Ok(())
}

/// Reads frames from a stream.
struct FrameReader {
    recv: RecvStream,
    buf: FrameBuffer,
    pending: Vec<u8>,
}

impl FrameReader {
    fn new(recv: RecvStream) -> Self {
        FrameReader {
            recv,
            buf: FrameBuffer::new(),
            pending: Vec::new(),
        }
    }

    /// The next message, `None` at the end of the stream.
    async fn next(&mut self) -> anyhow::Result<Option<Message>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.buf.push(&self.pending);
                self.pending.drain(..n);
            }
            if let Some(m) = self.buf.next_message()? {
                return Ok(Some(m));
            }
            let mut chunk = vec![0u8; 16 * 1024];
            match self.recv.read(&mut chunk).await? {
                None => return Ok(None),
                Some(n) => {
                    chunk.truncate(n);
                    self.pending.extend_from_slice(&chunk);
                }
            }
        }
    }

    /// Bytes read past the last frame (the start of raw media).
    fn take_rest(&mut self) -> Vec<u8> {
        let mut v = self.buf.take_buffered();
        v.append(&mut self.pending);
        v
    }
}

async fn send_msg(send: &mut SendStream, m: &Message) -> anyhow::Result<()> {
    send.write_all(&m.to_bytes()).await?;
    Ok(())
}

async fn sync(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    key: ed25519_dalek::VerifyingKey,
) -> anyhow::Result<()> {
    let device = DeviceId::from_key(&key);
    let (mut send, recv) = conn.accept_bi().await?;
    let mut reader = FrameReader::new(recv);
    let hello = match reader.next().await? {
        Some(Message::Hello(h)) => h,
        _ => {
            error_close(conn, &mut send, ErrorCode::UnexpectedMessage, "Hello first").await;
            anyhow::bail!("no Hello");
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        error_close(conn, &mut send, ErrorCode::UnsupportedVersion, "v1 only").await;
        anyhow::bail!("protocol version {}", hello.protocol_version);
    }
    if hello.device_id != device {
        error_close(
            conn,
            &mut send,
            ErrorCode::WrongDevice,
            "Hello names another device",
        )
        .await;
        anyhow::bail!("Hello from {} on {device}'s connection", hello.device_id);
    }
    let head = shared.db.head(device)?;
    if hello.chain_head_seq.map_or(0, |h| h.saturating_add(1)) < head.next_seq {
        // The device holds less of its chain than we do: it lost entries
        // (storage wiped or restored). Worth a look; sync goes on.
        tracing::warn!(%device, agent_head = ?hello.chain_head_seq, server_next = head.next_seq,
            "device's chain is shorter than the server's copy");
    }
    let resend = shared.db.missing_media(device, MAX_RESEND_MEDIA)?;
    send_msg(
        &mut send,
        &Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_time_us: now_us(),
            next_seq_expected: head.next_seq,
            resend_media: SeqList::new(resend)?,
        }),
    )
    .await?;
    tracing::info!(%device, next_seq = head.next_seq, agent_head = ?hello.chain_head_seq, "device connected");

    // Upload streams are served alongside the control stream.
    let uploads = {
        let conn = conn.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok((s, r)) = conn.accept_bi().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = upload(s, r, &shared, device).await {
                        tracing::debug!(%device, "upload stream: {e:#}");
                    }
                });
            }
        })
    };
    let res = control_loop(conn, shared, key, &mut send, &mut reader).await;
    uploads.abort();
    res
}

async fn error_close(
    conn: &quinn::Connection,
    send: &mut SendStream,
    code: ErrorCode,
    detail: &str,
) {
    let m = Message::Error(ErrorMsg {
        code,
        detail: Detail::lossy(detail),
    });
    let _ = send_msg(send, &m).await;
    let _ = send.finish();
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.close(CLOSE_PROTOCOL, detail.as_bytes());
}

async fn control_loop(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    key: ed25519_dalek::VerifyingKey,
    send: &mut SendStream,
    reader: &mut FrameReader,
) -> anyhow::Result<()> {
    let device = DeviceId::from_key(&key);
    loop {
        let msg = match reader.next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => {
                if e.downcast_ref::<fieldseal_proto::codec::DecodeError>()
                    .is_some()
                {
                    error_close(conn, send, ErrorCode::Malformed, &e.to_string()).await;
                }
                return Err(e);
            }
        };
        let reply = match msg {
            Message::SubmitEntry(s) => submit(shared, key, s.entry.into_vec()).await,
            Message::Ping { nonce } => Message::Pong { nonce },
            Message::Pong { .. } => continue,
            Message::Error(e) => {
                tracing::info!(%device, code = ?e.code, detail = e.detail.as_str(), "agent gave up");
                return Ok(());
            }
            other => {
                error_close(
                    conn,
                    send,
                    ErrorCode::UnexpectedMessage,
                    &format!("{:?} on the control stream", other.message_type()),
                )
                .await;
                anyhow::bail!("unexpected message");
            }
        };
        let receipt = matches!(reply, Message::EntryReceipt(_));
        send_msg(send, &reply).await?;
        if receipt {
            crate::fault::point("entry-after-ack");
        }
    }
}

fn internal(seq: u64, e: impl std::fmt::Display) -> Message {
    tracing::error!("ingest failed: {e}");
    Message::EntryRejected(fieldseal_proto::msg::EntryRejected {
        seq,
        code: RejectCode::Internal,
        detail: Detail::lossy("internal error; retry later"),
    })
}

/// Entries waiting for the committer, with where to send each answer.
#[derive(Debug)]
pub struct Pending {
    key: ed25519_dalek::VerifyingKey,
    bytes: Vec<u8>,
    answer: tokio::sync::oneshot::Sender<Message>,
}

/// At most this many entries are made durable together. Under load the
/// entries that arrive while one group is being fsynced form the next, so
/// three fsyncs serve hundreds of devices; the bound keeps one group's
/// latency (signature checks, writes) well under a millisecond per entry.
const MAX_GROUP: usize = 256;

/// The queue in front of the committer: deep enough for a burst from every
/// connected device; a full queue makes submitters wait (backpressure).
pub const INGEST_QUEUE: usize = 4096;

/// Handle one `SubmitEntry`: queue it for the committer and wait for the
/// answer, which is sent only once the decision is durable.
async fn submit(shared: &Arc<Shared>, key: ed25519_dalek::VerifyingKey, bytes: Vec<u8>) -> Message {
    let (answer, rx) = tokio::sync::oneshot::channel();
    if shared
        .ingest
        .send(Pending { key, bytes, answer })
        .await
        .is_err()
    {
        return internal(0, "the server is shutting down");
    }
    rx.await
        .unwrap_or_else(|_| internal(0, "the server is shutting down"))
}

/// The committer: takes whatever entries are queued (up to [`MAX_GROUP`]),
/// makes them durable together on the blocking pool, and answers each.
pub(crate) async fn committer(shared: Arc<Shared>, mut rx: tokio::sync::mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        let (items, answers): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|p| ((p.key, p.bytes), p.answer))
            .unzip();
        let n = items.len();
        let s = shared.clone();
        let replies = tokio::task::spawn_blocking(move || submit_group_blocking(&s, &items))
            .await
            .unwrap_or_else(|e| (0..n).map(|_| internal(0, &e)).collect());
        for (tx, m) in answers.into_iter().zip(replies) {
            let _ = tx.send(m);
        }
    }
}

/// Decide about one submitted entry and make an acceptance durable. Public
/// so that tests can fill an archive through the real ingest path.
pub fn submit_blocking(shared: &Shared, key: ed25519_dalek::VerifyingKey, bytes: &[u8]) -> Message {
    submit_group_blocking(shared, &[(key, bytes.to_vec())])
        .pop()
        .expect("one answer per entry")
}

/// An entry accepted in this group, until its receipt is signed.
struct Accepted {
    item: usize,
    device: DeviceId,
    entry: fieldseal_proto::entry::SignedEntry,
}

/// Decide about a group of submitted entries, in order, and make the
/// acceptances durable together before answering (group commit): every
/// touched chain log is written and fsynced, then all their leaves go to
/// `leaves.log` with one fsync, then the index is written and flushed once.
/// A crash at any point leaves what one-at-a-time acceptance would: entries
/// without a leaf were never answered and are cut off, entries with one are
/// rolled forward at start (`reindex.rs`). One answer per item, in order.
pub fn submit_group_blocking(
    shared: &Shared,
    items: &[(ed25519_dalek::VerifyingKey, Vec<u8>)],
) -> Vec<Message> {
    let _one_group_at_a_time = shared
        .commit_lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out: Vec<Option<Message>> = vec![None; items.len()];
    if let Some(why) = shared.ingest_poisoned.get() {
        return (0..items.len()).map(|_| internal(0, why)).collect();
    }
    // Heads as this group moves them; entries it accepted, by (device, seq).
    let mut heads: HashMap<DeviceId, (ChainHead, u64)> = HashMap::new();
    let mut accepted: Vec<Accepted> = Vec::new();
    let mut in_group: HashMap<(DeviceId, u64), usize> = HashMap::new();
    // Duplicates of an entry accepted earlier in this group: answered with
    // its receipt once signed.
    let mut echoes: Vec<(usize, usize)> = Vec::new();
    for (i, (key, bytes)) in items.iter().enumerate() {
        let device = DeviceId::from_key(key);
        let head = match heads.get(&device) {
            Some(h) => *h,
            None => match shared.db.head_and_log_len(device) {
                Ok(h) => *heads.entry(device).or_insert(h),
                Err(e) => {
                    out[i] = Some(internal(0, e));
                    continue;
                }
            },
        };
        let ingest = Ingest::new(*key, head.0);
        let mut lookup_err = None;
        let mut echo_of = None;
        let decision = ingest.handle_entry(bytes, |seq| {
            if let Some(&k) = in_group.get(&(device, seq)) {
                echo_of = Some(k);
                let e = &accepted[k].entry;
                return Some(AcceptedEntry {
                    entry_hash: e.hash(),
                    media: None,
                    receipt: Vec::new(),
                });
            }
            match shared.db.entry(device, seq) {
                Ok(a) => a,
                Err(e) => {
                    lookup_err = Some(e);
                    None
                }
            }
        });
        if let Some(e) = lookup_err {
            out[i] = Some(internal(0, e));
            continue;
        }
        out[i] = match decision {
            Decision::Accept { entry } => {
                heads.insert(device, (ChainHead::after(&entry), head.1));
                in_group.insert((device, entry.seq()), accepted.len());
                accepted.push(Accepted {
                    item: i,
                    device,
                    entry: *entry,
                });
                None
            }
            Decision::Duplicate { receipt } => match echo_of {
                Some(k) => {
                    echoes.push((i, k));
                    None
                }
                None => Some(match Receipt::from_bytes(&receipt) {
                    Ok(r) => Message::EntryReceipt(r),
                    Err(e) => internal(0, e),
                }),
            },
            d => Some(refusal(shared, device, bytes, d)),
        };
    }
    if !accepted.is_empty() {
        match commit(shared, items, &accepted) {
            Ok(receipts) => {
                for (a, r) in accepted.iter().zip(&receipts) {
                    out[a.item] = Some(Message::EntryReceipt(r.clone()));
                }
                for (i, k) in echoes {
                    out[i] = Some(Message::EntryReceipt(receipts[k].clone()));
                }
            }
            Err(e) => {
                let msg = format!("{e:#}");
                for a in &accepted {
                    out[a.item] = Some(internal(a.entry.seq(), &msg));
                }
                for (i, _) in echoes {
                    out[i] = Some(internal(0, &msg));
                }
            }
        }
    }
    out.into_iter()
        .map(|m| m.expect("every item answered"))
        .collect()
}

/// Make a group's acceptances durable: chain logs, leaves, index. Returns
/// the receipts, in the order of `accepted`.
fn commit(
    shared: &Shared,
    items: &[(ed25519_dalek::VerifyingKey, Vec<u8>)],
    accepted: &[Accepted],
) -> anyhow::Result<Vec<Receipt>> {
    // Per device, in seq order: one write and one fsync of its chain log.
    let mut by_device: Vec<(DeviceId, Vec<usize>)> = Vec::new();
    for (k, a) in accepted.iter().enumerate() {
        match by_device.iter_mut().find(|(d, _)| *d == a.device) {
            Some((_, ks)) => ks.push(k),
            None => by_device.push((a.device, vec![k])),
        }
    }
    let mut log_lens = HashMap::new();
    for (device, ks) in &by_device {
        let (_, indexed_len) = shared.db.head_and_log_len(*device)?;
        let records: Vec<&[u8]> = ks
            .iter()
            .map(|&k| items[accepted[k].item].1.as_slice())
            .collect();
        let len = shared
            .storage
            .append_entries(*device, &records, indexed_len)?;
        log_lens.insert(*device, len);
    }
    crate::fault::point("entry-after-chainlog");
    // The leaves of FORMAT.md §6.8 carry the receipts' time, so a proof can
    // be checked from a receipt alone.
    let server_time_us = now_us();
    let leaves: Vec<Leaf> = accepted
        .iter()
        .map(|a| Leaf::Entry {
            device: a.device,
            seq: a.entry.seq(),
            entry_hash: a.entry.hash(),
            server_time_us,
        })
        .collect();
    let first = match shared.db.log_append_many(&leaves) {
        Ok(f) => f,
        Err(e) => {
            // The leaves may be durable without their nodes: later groups
            // would then be numbered wrong. Stop accepting until a restart
            // rolls the log and the index forward from the files.
            let _ = shared
                .ingest_poisoned
                .set(format!("log append failed ({e}); restart the server"));
            return Err(e.into());
        }
    };
    let mut receipts = Vec::with_capacity(accepted.len());
    let res = (|| -> anyhow::Result<()> {
        for (k, a) in accepted.iter().enumerate() {
            let seq = a.entry.seq();
            let hash = a.entry.hash();
            let receipt = Receipt::sign(
                a.device,
                seq,
                hash,
                server_time_us,
                first + k as u64,
                &shared.receipt_key,
            );
            shared.db.put_entry_unflushed(
                a.device,
                seq,
                &AcceptedEntry {
                    entry_hash: hash,
                    media: a
                        .entry
                        .entry
                        .segment()
                        .map(|s| (s.media_sha256, s.media_len)),
                    receipt: receipt.to_bytes(),
                },
            )?;
            receipts.push(receipt);
        }
        // Each device's head after its last entry of the group, with the
        // chain log's new length.
        for (device, ks) in &by_device {
            let last = &accepted[*ks.last().expect("non-empty")].entry;
            shared
                .db
                .put_head_unflushed(*device, ChainHead::after(last), log_lens[device])?;
        }
        shared.db.flush()?;
        Ok(())
    })();
    if let Err(e) = res {
        // The leaves are published but not indexed: accepting anything
        // more now could give a resent entry a second leaf. A restart rolls
        // these forward.
        let _ = shared
            .ingest_poisoned
            .set(format!("index write failed ({e:#}); restart the server"));
        return Err(e);
    }
    crate::fault::point("entry-after-index");
    Ok(receipts)
}

/// The answer to an entry that is not accepted (equivocation, rejection).
fn refusal(shared: &Shared, device: DeviceId, bytes: &[u8], d: Decision) -> Message {
    match d {
        Decision::Equivocation {
            seq,
            accepted,
            offered,
        } => {
            if let Err(e) = shared.storage.append_equivocation(device, bytes) {
                tracing::error!(%device, seq, "could not keep equivocation evidence: {e}");
            }
            tracing::error!(
                %device,
                seq,
                accepted = %hex::encode(accepted),
                offered = %hex::encode(offered),
                "ALARM equivocation: device signed two different entries with one seq"
            );
            Message::EntryRejected(fieldseal_proto::msg::EntryRejected {
                seq,
                code: RejectCode::Equivocation,
                detail: Detail::lossy(&format!("seq {seq} differs from the accepted entry")),
            })
        }
        Decision::Reject { seq, code, detail } => {
            tracing::warn!(%device, seq, ?code, detail, "entry rejected");
            Message::EntryRejected(fieldseal_proto::msg::EntryRejected {
                seq,
                code,
                detail: Detail::lossy(&detail),
            })
        }
        Decision::Accept { .. } | Decision::Duplicate { .. } => {
            unreachable!("accepted and duplicate entries are answered by the group")
        }
    }
}

/// How a complete upload ended.
enum Stored {
    /// A blob now, its media noted as held.
    Yes,
    /// The file holds fewer bytes than arrived: a write failed behind
    /// tokio's back (a full disk). Discarded; the device should retry.
    Short(u64),
    /// The bytes are not those the entry signed. Discarded.
    Mismatch,
}

/// Make a complete upload a blob: check the hash and length of what the
/// partial file holds (`held`, from its [`crate::storage::PartWriter`])
/// against the signed entry's, hand the file to the blob store (fsync,
/// rename, fsync folder) and note that the media is held. Blocking: run it
/// off the async workers.
fn commit_upload(
    shared: &Shared,
    device: DeviceId,
    seq: u64,
    (media_hash, media_len): (fieldseal_proto::identity::Hash32, u64),
    (hash, len): (fieldseal_proto::identity::Hash32, u64),
) -> anyhow::Result<Stored> {
    if len != media_len {
        shared.storage.discard_partial(device, seq)?;
        return Ok(Stored::Short(len));
    }
    if hash != media_hash {
        shared.storage.discard_partial(device, seq)?;
        return Ok(Stored::Mismatch);
    }
    shared
        .storage
        .commit_partial(device, seq, &media_hash, shared.blobs.as_ref())?;
    crate::fault::point("blob-after-rename");
    // Not flushed: that the media is held follows from the blob, which is
    // durable; a start-up after a crash notes held blobs again
    // (`reindex::reconcile_media`), and so does the next upload query.
    shared.db.put_media_unflushed(device, seq)?;
    Ok(Stored::Yes)
}

/// The server could not store an upload's bytes (a full or failing disk):
/// answer `Internal`, so that the device retries this segment after its
/// upload delay, instead of dropping the stream, which made the device
/// reconnect at once and send the same bytes again many times a second.
/// What reached the partial file stays, for a resume.
async fn disk_failed(
    send: &mut SendStream,
    device: DeviceId,
    seq: u64,
    e: String,
) -> anyhow::Result<()> {
    tracing::error!(%device, seq, "ALARM cannot store an upload: {e}");
    send_msg(
        send,
        &failed(
            seq,
            UploadFailCode::Internal,
            "the server could not store the bytes (disk full?); retry later",
        ),
    )
    .await?;
    send.finish()?;
    Ok(())
}

/// Write the first `take` bytes of `chunks` to a partial upload on the
/// blocking pool, and fsync it every [`PARTIAL_SYNC_EVERY`] bytes (or now,
/// with `sync`). Gives the writer back unless the disk failed.
async fn write_batch(
    mut writer: PartWriter,
    chunks: Vec<Bytes>,
    take: u64,
    sync: bool,
) -> Result<std::io::Result<PartWriter>, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let mut rest = take;
        for c in &chunks {
            if rest == 0 {
                break;
            }
            let n = usize::try_from(rest).map_or(c.len(), |r| r.min(c.len()));
            writer.write(&c[..n])?;
            rest -= n as u64;
        }
        if sync || writer.unsynced() >= PARTIAL_SYNC_EVERY {
            writer.sync()?;
        }
        Ok(writer)
    })
    .await
}

fn failed(seq: u64, code: UploadFailCode, detail: &str) -> Message {
    Message::UploadFailed(UploadFailed {
        seq,
        code,
        detail: Detail::lossy(detail),
    })
}

struct UploadSlot<'a> {
    shared: &'a Shared,
    key: (DeviceId, u64),
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        self.shared
            .uploading
            .lock()
            .expect("lock")
            .remove(&self.key);
    }
}

/// Serve one upload stream (FORMAT.md §7.5).
async fn upload(
    mut send: SendStream,
    recv: RecvStream,
    shared: &Arc<Shared>,
    device: DeviceId,
) -> anyhow::Result<()> {
    let mut reader = FrameReader::new(recv);
    let q = match reader.next().await? {
        Some(Message::UploadQuery(q)) => q,
        None => return Ok(()),
        Some(_) => {
            send_msg(
                &mut send,
                &failed(0, UploadFailCode::UnknownEntry, "UploadQuery first"),
            )
            .await?;
            send.finish()?;
            return Ok(());
        }
    };
    let seq = q.seq;
    if !shared.uploading.lock().expect("lock").insert((device, seq)) {
        send_msg(
            &mut send,
            &failed(
                seq,
                UploadFailCode::Internal,
                "another upload of this segment is running",
            ),
        )
        .await?;
        send.finish()?;
        return Ok(());
    }
    let _slot = UploadSlot {
        shared,
        key: (device, seq),
    };
    let accepted = shared.db.entry(device, seq)?;
    let mut complete = shared.db.has_media(device, seq)?;
    if let Some((hash, _)) = accepted.as_ref().and_then(|a| a.media) {
        // A blob is renamed into place only once verified, so if it exists
        // the server holds these bytes: a crash between the rename and the
        // index update, or the same bytes already uploaded (content addressing).
        if !complete && hash == q.media_hash && shared.blobs.stat(&hash)?.is_some() {
            shared.db.put_media(device, seq)?;
            complete = true;
        }
    }
    let held = shared.storage.partial_len(device, seq)?;
    if let Some((hash, len)) = accepted.as_ref().and_then(|a| a.media) {
        if !complete && held == len {
            // Every byte arrived before, but the upload ended before they were
            // verified (crash, broken stream, overrun): verify them now.
            if shared.storage.hash_partial(device, seq)? == (hash, len) {
                shared
                    .storage
                    .commit_partial(device, seq, &hash, shared.blobs.as_ref())?;
                shared.db.put_media(device, seq)?;
                complete = true;
            } else {
                shared.storage.discard_partial(device, seq)?;
            }
        }
    }
    let held = shared.storage.partial_len(device, seq)?;
    let offset = match Ingest::handle_upload_query(&q, accepted.as_ref(), complete, held) {
        Ok(o) => o,
        Err((code, d)) => {
            send_msg(&mut send, &failed(seq, code, &d)).await?;
            send.finish()?;
            return Ok(());
        }
    };
    if offset < held {
        // The partial file is not ours to resume (longer than the segment).
        shared.storage.discard_partial(device, seq)?;
    }
    send_msg(
        &mut send,
        &Message::UploadOffset(UploadOffset { seq, offset }),
    )
    .await?;
    if offset == q.media_len {
        send.finish()?;
        return Ok(());
    }
    let begin = match reader.next().await? {
        Some(Message::UploadBegin(b)) => b,
        None => return Ok(()),
        Some(_) => {
            send_msg(
                &mut send,
                &failed(seq, UploadFailCode::BadOffset, "UploadBegin expected"),
            )
            .await?;
            send.finish()?;
            return Ok(());
        }
    };
    let held = shared.storage.partial_len(device, seq)?;
    let raw_len = match Ingest::handle_upload_begin(&begin, accepted.as_ref(), held) {
        Ok(n) => n,
        Err((code, d)) => {
            send_msg(&mut send, &failed(seq, code, &d)).await?;
            send.finish()?;
            return Ok(());
        }
    };
    let (media_hash, media_len) = accepted
        .and_then(|a| a.media)
        .expect("checked by handle_upload_begin");
    // Opening reads back and hashes what the partial file already holds:
    // blocking work, as are the writes below.
    let s = shared.clone();
    let opened =
        tokio::task::spawn_blocking(move || s.storage.part_writer(device, seq, held)).await?;
    let mut writer = match opened {
        Ok(w) => w,
        Err(e) => return disk_failed(&mut send, device, seq, format!("{e:#}")).await,
    };
    // The stream's data is kept as quinn hands it over (no copy) until a
    // batch is gathered, then written and hashed in one blocking task.
    let mut batch: Vec<Bytes> = Vec::new();
    let first = reader.take_rest();
    let mut gathered = first.len();
    if !first.is_empty() {
        batch.push(Bytes::from(first));
    }
    let mut recv = reader.recv;
    let mut left = raw_len;
    let length_differs = loop {
        let full = gathered > 0 && (gathered >= WRITE_BATCH || gathered as u64 >= left);
        // `None`: a batch to write; `Some(None)`: the stream ended;
        // `Some(Some(e))`: the connection was lost.
        let end = if full {
            None
        } else {
            match recv.read_chunk(WRITE_BATCH, true).await {
                Ok(Some(c)) => {
                    gathered += c.bytes.len();
                    batch.push(c.bytes);
                    continue;
                }
                Ok(None) => Some(None),
                Err(e) => Some(Some(e)),
            }
        };
        let take = (gathered as u64).min(left);
        let overrun = gathered as u64 > left;
        let lost = matches!(end, Some(Some(_)));
        let chunks = std::mem::take(&mut batch);
        gathered = 0;
        if take > 0 || lost {
            // On a lost connection what arrived is fsynced, for a resume.
            writer = match write_batch(writer, chunks, take, lost).await? {
                Ok(w) => w,
                Err(e) if lost => return Err(e.into()),
                Err(e) => return disk_failed(&mut send, device, seq, format!("{e:#}")).await,
            };
        }
        left -= take;
        match end {
            _ if overrun => break true,
            None => {}
            Some(None) => break left > 0,
            Some(Some(e)) => return Err(e.into()),
        }
    };
    if length_differs {
        send_msg(
            &mut send,
            &failed(
                seq,
                UploadFailCode::LengthMismatch,
                "stream length differs from len",
            ),
        )
        .await?;
        send.finish()?;
        return Ok(());
    }
    debug_assert_eq!(left, 0);
    // Hashing, fsync, rename and the index are blocking work: off the async
    // workers, which carry every other connection.
    let s = shared.clone();
    let held = writer.finish();
    let stored = match tokio::task::spawn_blocking(move || {
        commit_upload(&s, device, seq, (media_hash, media_len), held)
    })
    .await?
    {
        Ok(stored) => stored,
        Err(e) => return disk_failed(&mut send, device, seq, format!("{e:#}")).await,
    };
    match stored {
        Stored::Yes => {}
        Stored::Short(held) => {
            let why = format!("the partial file holds {held} of {media_len} bytes");
            return disk_failed(&mut send, device, seq, why).await;
        }
        Stored::Mismatch => {
            tracing::warn!(%device, seq, "upload bytes do not hash to the signed media hash");
            send_msg(
                &mut send,
                &failed(
                    seq,
                    UploadFailCode::HashMismatch,
                    "bytes do not match media_hash",
                ),
            )
            .await?;
            send.finish()?;
            return Ok(());
        }
    }
    tracing::debug!(%device, seq, media_len, "segment stored");
    send_msg(
        &mut send,
        &Message::UploadAck(UploadAck { seq, media_hash }),
    )
    .await?;
    send.finish()?;
    crate::fault::point("blob-after-ack");
    Ok(())
}
