//! The QUIC driver: accepts connections, serves enrolment on ALPN
//! `fieldseal-enroll/1` and the sync protocol on ALPN `fieldseal/1`. It
//! moves bytes and carries out the decisions of [`crate::ingest`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::enroll::{
    EnrollRequest, EnrollResponse, EnrollStatus, ALPN_ENROLL, ALPN_SYNC, MAX_ENROLL_REQUEST,
};
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

/// Bytes written to a partial upload between two fsyncs: the most a crash
/// can cost a resumed upload, while keeping fsyncs to one per ~1 s of a
/// 10 Mbit/s link.
const PARTIAL_SYNC_EVERY: u64 = 1024 * 1024;

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
    Ok(quinn::Endpoint::server(sc, addr)?)
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

/// Handle one `SubmitEntry`: decide, then make the decision durable before
/// answering.
async fn submit(shared: &Arc<Shared>, key: ed25519_dalek::VerifyingKey, bytes: Vec<u8>) -> Message {
    // One acceptance at a time (the log frontier and each device's head are
    // read-modify-write); the fsyncs run off the async workers.
    let _guard = shared.ingest_lock.lock().await;
    let s = shared.clone();
    tokio::task::spawn_blocking(move || submit_blocking(&s, key, &bytes))
        .await
        .unwrap_or_else(|e| internal(0, e))
}

/// Decide about one submitted entry and make an acceptance durable (chain
/// log, transparency log, index) before returning the receipt to send. Public
/// so that tests can fill an archive through the real ingest path.
pub fn submit_blocking(shared: &Shared, key: ed25519_dalek::VerifyingKey, bytes: &[u8]) -> Message {
    let device = DeviceId::from_key(&key);
    let (head, log_len) = match shared.db.head_and_log_len(device) {
        Ok(h) => h,
        Err(e) => return internal(0, e),
    };
    let ingest = Ingest::new(key, head);
    let mut lookup_err = None;
    let decision = ingest.handle_entry(bytes, |seq| match shared.db.entry(device, seq) {
        Ok(a) => a,
        Err(e) => {
            lookup_err = Some(e);
            None
        }
    });
    if let Some(e) = lookup_err {
        return internal(0, e);
    }
    match decision {
        Decision::Accept { entry } => {
            let seq = entry.seq();
            let hash = entry.hash();
            let res = (|| -> anyhow::Result<Receipt> {
                let log_len = shared.storage.append_entry(device, bytes, log_len)?;
                // The leaf of FORMAT.md §6.8: it carries the receipt's time,
                // so a proof can be checked from the receipt alone.
                let server_time_us = now_us();
                let leaf = Leaf::Entry {
                    device,
                    seq,
                    entry_hash: hash,
                    server_time_us,
                };
                crate::fault::point("entry-after-chainlog");
                let index = shared.db.log_append(&leaf)?;
                let receipt = Receipt::sign(
                    device,
                    seq,
                    hash,
                    server_time_us,
                    index,
                    &shared.receipt_key,
                );
                let accepted = AcceptedEntry {
                    entry_hash: hash,
                    media: entry.entry.segment().map(|s| (s.media_sha256, s.media_len)),
                    receipt: receipt.to_bytes(),
                };
                shared.db.put_accepted(
                    device,
                    seq,
                    &accepted,
                    fieldseal_proto::entry::ChainHead::after(&entry),
                    log_len,
                )?;
                crate::fault::point("entry-after-index");
                Ok(receipt)
            })();
            match res {
                Ok(r) => Message::EntryReceipt(r),
                Err(e) => internal(seq, e),
            }
        }
        Decision::Duplicate { receipt } => match Receipt::from_bytes(&receipt) {
            Ok(r) => Message::EntryReceipt(r),
            Err(e) => internal(0, e),
        },
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
    }
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
            let (_, hasher) = shared.storage.open_partial(device, seq, held)?;
            if hasher.finish() == hash {
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
    let (file, mut hasher) = shared.storage.open_partial(device, seq, held)?;
    // Writes and fsyncs run on tokio's blocking pool, off the async workers.
    let mut file = tokio::fs::File::from_std(file);
    let mut pending = reader.take_rest();
    let mut recv = reader.recv;
    let mut left = raw_len;
    let mut since_sync = 0u64;
    let mut overrun = false;
    let mut chunk = vec![0u8; 64 * 1024];
    let ended_early = loop {
        let take = usize::try_from((pending.len() as u64).min(left)).expect("bounded by len");
        if take > 0 {
            file.write_all(&pending[..take]).await?;
            hasher.update(&pending[..take]);
            left -= take as u64;
            since_sync += take as u64;
            if since_sync >= PARTIAL_SYNC_EVERY {
                file.flush().await?;
                file.sync_data().await?;
                since_sync = 0;
            }
        }
        if take < pending.len() {
            overrun = true;
            break false;
        }
        match recv.read(&mut chunk).await {
            Ok(Some(n)) => pending = chunk[..n].to_vec(),
            Ok(None) => break left > 0,
            Err(e) => {
                // Connection lost: keep what arrived, durably, for a resume.
                file.flush().await?;
                file.sync_data().await?;
                return Err(e.into());
            }
        }
    };
    // tokio's File writes in the background: a failed write (ENOSPC) is
    // reported by the next operation, and `sync_data` alone can miss it
    // (tokio#6325). `flush` waits for the write and returns its error.
    file.flush().await?;
    file.sync_data().await?;
    drop(file);
    if ended_early || overrun {
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
    if hasher.finish() != media_hash {
        shared.storage.discard_partial(device, seq)?;
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
    // The hash above is of the bytes received. What is acknowledged is what
    // the disk holds: hash the file again (from the page cache, ~1 ms for a
    // 2 MB segment), so that no failed or torn write is ever acknowledged.
    let on_disk = shared.storage.hash_partial(device, seq)?;
    if on_disk != (media_hash, media_len) {
        shared.storage.discard_partial(device, seq)?;
        tracing::error!(
            %device,
            seq,
            held = on_disk.1,
            media_len,
            "ALARM the partial file is not what arrived (disk full or failing); discarded"
        );
        send_msg(
            &mut send,
            &failed(
                seq,
                UploadFailCode::Internal,
                "the server could not store the bytes (disk full?); retry later",
            ),
        )
        .await?;
        send.finish()?;
        return Ok(());
    }
    shared
        .storage
        .commit_partial(device, seq, &media_hash, shared.blobs.as_ref())?;
    crate::fault::point("blob-after-rename");
    shared.db.put_media(device, seq)?;
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
