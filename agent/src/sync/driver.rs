//! The tokio/quinn driver of the sync client: connects, reconnects, and
//! moves bytes as [`Machine`] decides.
//!
//! The control stream carries entries and has a higher send priority than
//! the upload streams, so a live entry is never queued behind segment bytes.
//!
//! A refusal of the device itself (revoked or unknown, or its certificate
//! expired: [`refusal_of`]) ends every kind of run at once, after it is
//! kept in the data folder ([`super::standing`]): retrying cannot help
//! until an administrator acts, and only drains the battery. A renewed
//! certificate is checked, kept, and used by reconnecting at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::entry::SignedEntry;
use fieldseal_proto::frame::FrameBuffer;
use fieldseal_proto::identity::{sha256, DeviceId, Signer};
use fieldseal_proto::msg::{
    EntryBytes, Hello, Message, SubmitEntry, UploadFailCode, PIPELINED_UPLOAD_SINCE,
    PROTOCOL_VERSION,
};
use fieldseal_proto::receipt::Receipt;
use fieldseal_proto::renew::{RenewCert, RenewRefusal, RENEW_SINCE_VERSION};
use quinn::{RecvStream, SendStream};
use rand_core::OsRng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::machine::{Action, Machine, StoreView, UploadOutcome};
use super::standing::{check_renewed, Refusal, RefusalKind};
use super::store::SyncStore;
use super::upload::{upload, AckCheck};
use super::{client_endpoint, resolve, tls, SyncConfig, SyncError};

/// Counters of a sync run. `media_bytes_sent` counts segment bytes written
/// to upload streams (including bytes lost to a broken connection).
#[derive(Debug, Default)]
pub struct Progress {
    /// Entries submitted (including resubmissions).
    pub entries_submitted: AtomicU64,
    /// Receipts verified and saved.
    pub receipts: AtomicU64,
    /// Segments acknowledged.
    pub uploads_acked: AtomicU64,
    /// Segments whose bytes the server refused as not matching their signed
    /// entry (a damaged or altered file on the device): not retried.
    pub uploads_refused: AtomicU64,
    /// Segment bytes written to upload streams.
    pub media_bytes_sent: AtomicU64,
    /// Upload acknowledgements that proved nothing (bad signature, another
    /// segment): the media is kept.
    pub acks_refused: AtomicU64,
    /// Connections established (the server's `Welcome` received).
    pub connections: AtomicU64,
    /// Client certificates renewed and kept.
    pub renewals: AtomicU64,
}

/// A snapshot of [`Progress`] when a run ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries submitted (including resubmissions).
    pub entries_submitted: u64,
    /// Receipts verified and saved.
    pub receipts: u64,
    /// Segments acknowledged.
    pub uploads_acked: u64,
    /// Segments refused as not matching their entry.
    pub uploads_refused: u64,
    /// Segment bytes written to upload streams.
    pub media_bytes_sent: u64,
    /// Upload acknowledgements that proved nothing.
    pub acks_refused: u64,
    /// Connections established.
    pub connections: u64,
    /// Client certificates renewed and kept.
    pub renewals: u64,
}

impl Progress {
    /// A snapshot.
    pub fn snapshot(&self) -> Stats {
        Stats {
            entries_submitted: self.entries_submitted.load(Ordering::Relaxed),
            receipts: self.receipts.load(Ordering::Relaxed),
            uploads_acked: self.uploads_acked.load(Ordering::Relaxed),
            uploads_refused: self.uploads_refused.load(Ordering::Relaxed),
            media_bytes_sent: self.media_bytes_sent.load(Ordering::Relaxed),
            acks_refused: self.acks_refused.load(Ordering::Relaxed),
            connections: self.connections.load(Ordering::Relaxed),
            renewals: self.renewals.load(Ordering::Relaxed),
        }
    }
}

struct View<'a, S: ?Sized>(&'a S);

impl<S: SyncStore + ?Sized> StoreView for View<'_, S> {
    fn head(&self) -> Option<u64> {
        self.0.head()
    }
    fn has_receipt(&self, seq: u64) -> bool {
        self.0.has_receipt(seq)
    }
    fn media_pending(&self, seq: u64) -> bool {
        !self.0.is_acked(seq) && self.media_held(seq)
    }
    fn media_held(&self, seq: u64) -> bool {
        matches!(self.0.media(seq), Ok(Some(_)))
    }
}

/// Sync until every entry has a verified receipt and every held segment is
/// acknowledged, then return.
///
/// # Errors
/// [`SyncError::Fatal`] when the server refuses an entry for good;
/// [`SyncError::Refused`] when it refuses the device (revoked or unknown,
/// or its certificate expired: kept in the data folder);
/// [`SyncError::Connect`] when it refuses the device's certificate
/// otherwise (another CA); store I/O errors.
pub async fn sync_until_drained<S: SyncStore>(
    store: Arc<S>,
    cfg: SyncConfig,
    progress: Arc<Progress>,
) -> Result<Stats, SyncError> {
    let (_tx, rx) = watch::channel(false);
    drive(store, cfg, progress, true, rx).await
}

/// Sync until `shutdown` turns true, following the store as it grows.
///
/// # Errors
/// As [`sync_until_drained`], except that a certificate refused for another
/// reason than revocation or expiry is retried with backoff (a server
/// restored from another CA's backup may come back); a refusal of the
/// device, fatal entry refusals and store errors end the run.
pub async fn run_sync<S: SyncStore>(
    store: Arc<S>,
    cfg: SyncConfig,
    progress: Arc<Progress>,
    shutdown: watch::Receiver<bool>,
) -> Result<Stats, SyncError> {
    drive(store, cfg, progress, false, shutdown).await
}

enum End {
    Drained,
    Shutdown,
    Reconnect(String),
    /// A renewed certificate (DER) is kept: reconnect with it.
    Renewed(Vec<u8>),
    /// The server refused the device in a renewal answer.
    Refused(RefusalKind, String),
}

/// Why a stream of a connection broke. None of these ends the sync run: the
/// upload is retried, or the connection is made again (see `End::Reconnect`).
#[derive(Debug, thiserror::Error)]
pub(super) enum StreamError {
    /// The connection failed while a stream was being opened.
    #[error("open stream: {0}")]
    Open(#[from] quinn::ConnectionError),
    /// Reading the stream failed.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    /// Writing the stream failed.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream was closed under us.
    #[error("finish: {0}")]
    Closed(#[from] quinn::ClosedStream),
    /// The peer sent bytes that are not a frame.
    #[error("frame: {0}")]
    Frame(#[from] fieldseal_proto::codec::DecodeError),
    /// The media file or the store failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered out of turn.
    #[error("expected {expected}, got {got}")]
    Unexpected {
        /// What the protocol calls for here.
        expected: &'static str,
        /// What came, for the log.
        got: String,
    },
    /// The media file is shorter than its signed entry says.
    #[error("media file shorter than its signed length")]
    ShortMedia,
}

/// The server's refusal of the device itself, if `e` is one: revoked or
/// unknown (TLS alert `certificate_revoked`, which QUIC carries as the
/// CRYPTO_ERROR 0x100 + 44 of RFC 9001 §4.8; close codes 0x10 revoked and
/// 0x13 not enrolled), or its certificate expired (alert
/// `certificate_expired`, 0x100 + 45; close code 0x17). Only codes the
/// server sent count: an alert this side raised (say, about the server's
/// certificate) is `TransportError`, not `ConnectionClosed`.
pub fn refusal_of(e: &quinn::ConnectionError) -> Option<RefusalKind> {
    const CERTIFICATE_REVOKED: u64 = 0x100 + 44;
    const CERTIFICATE_EXPIRED: u64 = 0x100 + 45;
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => match u64::from(c.error_code) {
            0x10 | 0x13 => Some(RefusalKind::Revoked),
            0x17 => Some(RefusalKind::CertificateExpired),
            _ => None,
        },
        quinn::ConnectionError::ConnectionClosed(c) => match u64::from(c.error_code) {
            CERTIFICATE_REVOKED => Some(RefusalKind::Revoked),
            CERTIFICATE_EXPIRED => Some(RefusalKind::CertificateExpired),
            _ => None,
        },
        _ => None,
    }
}

/// Keep the refusal (the agent stops retrying, `status` shows it) and
/// return it as the run's error.
fn refused(cfg: &SyncConfig, kind: RefusalKind, reason: String) -> SyncError {
    let r = Refusal {
        kind,
        at_us: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        server: cfg.server.clone(),
        device: DeviceId::from_key(&cfg.key.public_key()).to_string(),
        reason,
    };
    if let Err(e) = cfg.credentials.save_refusal(&r) {
        tracing::error!(error = %e, "could not keep the refusal in the data folder");
    }
    // Said once, by whoever ends: `sync` prints the error, `run` logs it.
    SyncError::Refused(r)
}

/// QUIC close codes and TLS alerts that mean "this device may not sync":
/// retrying will not help until an administrator acts.
fn is_refusal(e: &quinn::ConnectionError) -> bool {
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            let code = u64::from(c.error_code);
            code == 0x10 || code == 0x13
        }
        quinn::ConnectionError::ConnectionClosed(c) => {
            (0x100..0x200).contains(&u64::from(c.error_code))
        }
        quinn::ConnectionError::TransportError(t) => (0x100..0x200).contains(&u64::from(t.code)),
        _ => false,
    }
}

async fn drive<S: SyncStore>(
    store: Arc<S>,
    cfg: SyncConfig,
    progress: Arc<Progress>,
    until_drained: bool,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Stats, SyncError> {
    let mut client_cert = cfg.client_cert.clone();
    let ca = rustls::pki_types::CertificateDer::from(cfg.ca_cert.clone());
    let tls_with = |cert: &[u8]| {
        let der = rustls::pki_types::CertificateDer::from(cert.to_vec());
        tls::sync_client_with(&cfg.key, der, &ca, cfg.idle_timeout)
    };
    let mut qcfg = tls_with(&client_cert)?;
    let mut machine = Machine::new(cfg.machine.clone(), Instant::now());
    let mut rng = OsRng;
    loop {
        if let Some(at) = machine.poll_connect() {
            let wait = at.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return Ok(progress.snapshot()),
            }
        }
        if *shutdown.borrow() {
            return Ok(progress.snapshot());
        }
        let attempt = async {
            let (addr, host) = resolve(&cfg.server).await?;
            let endpoint = client_endpoint(addr)?;
            let conn = endpoint
                .connect_with(qcfg.clone(), addr, &host)
                .map_err(|e| SyncError::Connect(e.to_string()))?
                .await;
            Ok::<_, SyncError>((endpoint, conn))
        };
        let attempt = tokio::select! {
            a = attempt => a,
            _ = shutdown.changed() => return Ok(progress.snapshot()),
        };
        let (endpoint, conn) = match attempt {
            Ok((ep, Ok(c))) => (ep, c),
            Ok((_, Err(e))) => {
                if let Some(kind) = refusal_of(&e) {
                    return Err(refused(&cfg, kind, e.to_string()));
                }
                if until_drained && is_refusal(&e) {
                    return Err(SyncError::Connect(format!("refused: {e}")));
                }
                let at = machine.handle_disconnected(Instant::now(), &mut rng);
                tracing::info!("connect failed: {e}; retry in {:?}", at - Instant::now());
                continue;
            }
            Err(e) => {
                let at = machine.handle_disconnected(Instant::now(), &mut rng);
                tracing::info!("connect failed: {e}; retry in {:?}", at - Instant::now());
                continue;
            }
        };
        let end = connection(
            &conn,
            &*store,
            &store,
            (&cfg, &client_cert),
            &progress,
            &mut machine,
            until_drained,
            &mut shutdown,
        )
        .await;
        match end {
            Ok(End::Drained) | Ok(End::Shutdown) => {
                conn.close(0u32.into(), b"done");
                endpoint.wait_idle().await;
                return Ok(progress.snapshot());
            }
            Ok(End::Renewed(der)) => {
                conn.close(0u32.into(), b"certificate renewed");
                qcfg = tls_with(&der)?;
                client_cert = der;
                machine.handle_renewed(Instant::now());
                tracing::info!("certificate renewed; reconnecting with it");
            }
            Ok(End::Refused(kind, why)) => {
                conn.close(0u32.into(), b"refused");
                return Err(refused(&cfg, kind, why));
            }
            Ok(End::Reconnect(why)) => {
                // Read why the peer closed before closing our side.
                let reason = conn.close_reason();
                conn.close(0u32.into(), b"reconnecting");
                if let Some((r, kind)) = reason.as_ref().and_then(|r| Some((r, refusal_of(r)?))) {
                    return Err(refused(&cfg, kind, r.to_string()));
                }
                if let Some(reason) = reason.filter(is_refusal) {
                    if until_drained {
                        return Err(SyncError::Connect(format!("refused: {reason}")));
                    }
                }
                let at = machine.handle_disconnected(Instant::now(), &mut rng);
                tracing::info!(
                    "connection lost ({why}); retry in {:?}",
                    at - Instant::now()
                );
            }
            Err(e) => {
                conn.close(0u32.into(), b"error");
                return Err(e);
            }
        }
    }
}

/// Reads frames from a stream.
pub(super) struct FrameReader {
    recv: RecvStream,
    buf: FrameBuffer,
    pending: Vec<u8>,
}

impl FrameReader {
    pub(super) fn new(recv: RecvStream) -> Self {
        FrameReader {
            recv,
            buf: FrameBuffer::new(),
            pending: Vec::new(),
        }
    }

    pub(super) async fn next(&mut self) -> Result<Option<Message>, StreamError> {
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
                Some(n) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

pub(super) async fn send_msg(send: &mut SendStream, m: &Message) -> Result<(), StreamError> {
    Ok(send.write_all(&m.to_bytes()).await?)
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename these
async fn connection<S: SyncStore>(
    conn: &quinn::Connection,
    store: &S,
    store_arc: &Arc<S>,
    (cfg, client_cert): (&SyncConfig, &[u8]),
    progress: &Arc<Progress>,
    machine: &mut Machine,
    until_drained: bool,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<End, SyncError> {
    let device = DeviceId::from_key(&cfg.key.public_key());
    let view = View(store);
    let (mut csend, crecv) = match conn.open_bi().await {
        Ok(s) => s,
        Err(e) => return Ok(End::Reconnect(e.to_string())),
    };
    // Entries first: the control stream outranks every upload stream.
    let _ = csend.set_priority(10);
    let hello = Message::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        device_id: device,
        chain_head_seq: store.head(),
    });
    if let Err(e) = send_msg(&mut csend, &hello).await {
        return Ok(End::Reconnect(e.to_string()));
    }
    machine.handle_connected();
    let mut reader = FrameReader::new(crecv);
    let welcome = match reader.next().await {
        Ok(Some(Message::Welcome(w))) => w,
        Ok(Some(Message::Error(e))) => {
            return Ok(End::Reconnect(format!(
                "server error {:?}: {}",
                e.code,
                e.detail.as_str()
            )))
        }
        Ok(other) => return Ok(End::Reconnect(format!("expected Welcome, got {other:?}"))),
        Err(e) => return Ok(End::Reconnect(e.to_string())),
    };
    machine.handle_welcome(&welcome, &view);
    progress.connections.fetch_add(1, Ordering::Relaxed);
    // A v3 server renews certificates: schedule it by the server's clock.
    if welcome.protocol_version >= RENEW_SINCE_VERSION {
        let validity =
            fieldseal_proto::x509::Certificate::parse(client_cert).and_then(|c| c.validity());
        match validity {
            Ok(v) => machine.handle_cert(
                &v,
                welcome.server_time_us.div_euclid(1_000_000),
                Instant::now(),
            ),
            Err(e) => tracing::warn!(
                "the client certificate's dates cannot be read ({e}): it will not be renewed"
            ),
        }
    }
    let local_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    tracing::info!(
        // Rough: includes half an RTT. Receipts carry the exact server times.
        skew_ms = welcome.server_time_us.saturating_sub(local_us) / 1000,
        next_seq = welcome.next_seq_expected,
        resend = welcome.resend_media.as_slice().len(),
        "connected"
    );

    // Control-stream answers arrive through a reader task.
    let (mtx, mut mrx) = mpsc::channel::<Result<Option<Message>, StreamError>>(64);
    let reader_task = tokio::spawn(async move {
        loop {
            let m = reader.next().await;
            let end = !matches!(m, Ok(Some(_)));
            if mtx.send(m).await.is_err() || end {
                break;
            }
        }
    });
    let _reader_guard = AbortOnDrop(reader_task);
    let (utx, mut urx) = mpsc::unbounded_channel::<(u64, UploadOutcome)>();
    let mut uploads = JoinSet::new();
    let mut head_rx = store.subscribe();
    let mut sent: std::collections::VecDeque<(u64, [u8; 32])> = Default::default();

    loop {
        // Entries first, then uploads.
        while let Some(seq) = machine.poll_submit(&view) {
            let Some(bytes) = store.entry(seq)? else {
                return Err(SyncError::Config(format!("store has no entry {seq}")));
            };
            let hash = SignedEntry::from_bytes(&bytes)
                .map_err(|e| SyncError::Config(format!("entry {seq} in store: {e}")))?
                .hash();
            let entry = EntryBytes::new(bytes).map_err(|e| SyncError::Config(e.to_string()))?;
            if let Err(e) = send_msg(&mut csend, &Message::SubmitEntry(SubmitEntry { entry })).await
            {
                return Ok(End::Reconnect(e.to_string()));
            }
            sent.push_back((seq, hash));
            progress.entries_submitted.fetch_add(1, Ordering::Relaxed);
        }
        let now = Instant::now();
        while let Some(seq) = machine.poll_upload(now) {
            match store.media(seq)? {
                Some(media) => {
                    let (conn, store, utx, progress) = (
                        conn.clone(),
                        store_arc.clone(),
                        utx.clone(),
                        progress.clone(),
                    );
                    let check = AckCheck {
                        receipt_key: cfg.receipt_key,
                        device,
                    };
                    let pipelined = welcome.protocol_version >= PIPELINED_UPLOAD_SINCE
                        && machine.upload_pipelined(seq);
                    machine.upload_started(seq);
                    uploads.spawn(async move {
                        let what = (seq, &media);
                        let outcome =
                            upload(&conn, &*store, what, pipelined, &progress, check).await;
                        let _ = utx.send((seq, outcome));
                    });
                }
                None => {
                    machine.handle_upload_done(seq, UploadOutcome::Acked, now);
                }
            }
        }
        if machine.poll_renew(Instant::now()) {
            let m = Message::RenewCert(RenewCert {
                cert_sha256: sha256(client_cert),
            });
            if let Err(e) = send_msg(&mut csend, &m).await {
                return Ok(End::Reconnect(e.to_string()));
            }
            tracing::info!("asking the server to renew the client certificate");
        }
        if until_drained && machine.is_drained(&view) {
            return Ok(End::Drained);
        }
        let timeout = machine.poll_timeout();
        let sleep = async {
            match timeout {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let action = tokio::select! {
            m = mrx.recv() => match m {
                Some(Ok(Some(Message::EntryReceipt(r)))) => {
                    on_receipt(r, &mut sent, device, cfg, store, progress, machine, &view)?
                }
                Some(Ok(Some(Message::EntryRejected(r)))) => {
                    sent.pop_front();
                    tracing::warn!(seq = r.seq, code = ?r.code, detail = r.detail.as_str(), "entry rejected");
                    machine.handle_rejected(r.seq, r.code, r.detail.as_str())
                }
                Some(Ok(Some(Message::Ping { nonce }))) => {
                    if let Err(e) = send_msg(&mut csend, &Message::Pong { nonce }).await {
                        return Ok(End::Reconnect(e.to_string()));
                    }
                    Action::Continue
                }
                Some(Ok(Some(Message::Pong { .. }))) => Action::Continue,
                Some(Ok(Some(Message::CertRenewed(c)))) => {
                    let der = c.cert.into_vec();
                    let checked = check_renewed(&der, &cfg.key.public_key(), &cfg.ca_cert, client_cert);
                    match checked.and_then(|v| cfg.credentials.save_client_cert(&der).map(|()| v).map_err(|e| e.to_string())) {
                        Ok(v) => {
                            progress.renewals.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(not_after = v.not_after, "client certificate renewed and kept");
                            return Ok(End::Renewed(der));
                        }
                        Err(why) => {
                            tracing::error!("the renewed certificate is not kept ({why}); the current one stays");
                            machine.handle_renew_refused(Instant::now());
                            Action::Continue
                        }
                    }
                }
                Some(Ok(Some(Message::RenewRefused(r)))) => {
                    let detail = format!("certificate renewal refused ({:?}): {}", r.code, r.detail);
                    match r.code {
                        RenewRefusal::Revoked => return Ok(End::Refused(RefusalKind::Revoked, detail)),
                        RenewRefusal::Expired => return Ok(End::Refused(RefusalKind::CertificateExpired, detail)),
                        _ => {
                            tracing::warn!("{detail}; asking again later");
                            machine.handle_renew_refused(Instant::now());
                            Action::Continue
                        }
                    }
                }
                Some(Ok(Some(Message::Error(e)))) => {
                    return Ok(End::Reconnect(format!("server error {:?}: {}", e.code, e.detail.as_str())));
                }
                Some(Ok(Some(other))) => {
                    return Ok(End::Reconnect(format!("unexpected {:?}", other.message_type())));
                }
                Some(Ok(None)) | None => return Ok(End::Reconnect("control stream ended".into())),
                Some(Err(e)) => return Ok(End::Reconnect(e.to_string())),
            },
            u = urx.recv() => match u {
                Some((seq, outcome)) => {
                    match outcome {
                        UploadOutcome::Acked => {
                            progress.uploads_acked.fetch_add(1, Ordering::Relaxed);
                        }
                        UploadOutcome::BadAck => {
                            progress.acks_refused.fetch_add(1, Ordering::Relaxed);
                        }
                        UploadOutcome::Failed(
                            code @ (UploadFailCode::HashMismatch | UploadFailCode::EntryMismatch),
                        ) => {
                            tracing::error!(seq, ?code, "server refused this segment's bytes: the file does not match its signed entry");
                            progress.uploads_refused.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                    machine.handle_upload_done(seq, outcome, Instant::now())
                }
                None => Action::Continue,
            },
            _ = head_rx.changed() => Action::Continue,
            _ = sleep => Action::Continue,
            _ = shutdown.changed() => return Ok(End::Shutdown),
            e = conn.closed() => return Ok(End::Reconnect(e.to_string())),
        };
        match action {
            Action::Continue => {}
            Action::Reconnect => return Ok(End::Reconnect("machine asked to reconnect".into())),
            Action::Stop(f) => return Err(SyncError::Fatal(f)),
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[allow(clippy::too_many_arguments)] // the state of `connection`, borrowed
fn on_receipt<S: SyncStore>(
    r: Receipt,
    sent: &mut std::collections::VecDeque<(u64, [u8; 32])>,
    device: DeviceId,
    cfg: &SyncConfig,
    store: &S,
    progress: &Progress,
    machine: &mut Machine,
    view: &View<'_, S>,
) -> Result<Action, SyncError> {
    let Some((seq, hash)) = sent.pop_front() else {
        return Ok(machine.handle_bad_receipt());
    };
    if r.seq != seq
        || r.device_id != device
        || r.entry_hash != hash
        || r.verify(&cfg.receipt_key).is_err()
    {
        tracing::error!(seq, "receipt does not verify or names another entry");
        return Ok(machine.handle_bad_receipt());
    }
    store.save_receipt(&r)?;
    progress.receipts.fetch_add(1, Ordering::Relaxed);
    Ok(machine.handle_receipt(seq, view))
}
