//! Upload streams (FORMAT.md §7.5): `UploadQuery` → `UploadOffset` (or a
//! signed `UploadAck` at once for media already held), then `UploadBegin` and
//! the raw bytes → `UploadAck` or `UploadFailed`. From protocol version 4 a
//! stream may open with `UploadBegin` at offset 0 and the bytes straight away
//! (pipelined: no query round trip); the server then takes the whole file,
//! or answers `UploadAck` at once and stops the stream if it holds it.
//! Every `UploadAck` is a [`MediaAck`] signed with the receipt key: it lets
//! the device delete its copy.
//!
//! This driver moves bytes: it reads messages and raw media, writes them to
//! the partial file in batches on the blocking pool, and sends the answers.
//! What to answer is decided by `crate::ingest` (`UploadPlan`,
//! `check_begin`, `check_complete`) and carried out by its executor.

use std::sync::Arc;

use bytes::Bytes;
use fieldseal_proto::ack::MediaAck;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::identity::Hash32;
use fieldseal_proto::msg::{
    Detail, Message, UploadBegin, UploadFailCode, UploadFailed, UploadOffset, UploadQuery,
    PIPELINED_UPLOAD_SINCE,
};
use quinn::{RecvStream, SendStream};

use super::frames::{send_msg, FrameReader};
use super::registry::UploadSlot;
use super::ConnError;
use crate::chainindex::ChainIndex;
use crate::ingest::{self, Completion, Refusal};
use crate::storage::PartWriter;
use crate::Shared;

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

/// The application error code with which the server stops reading a
/// pipelined upload of media it holds already (its `UploadAck` follows).
pub const STOP_HELD: u32 = 0;

/// How an upload stream opened.
enum Opening {
    /// `UploadQuery`: answer the offset, then read `UploadBegin`.
    Query(UploadQuery),
    /// `UploadBegin` at offset 0 with the bytes behind it (version 4).
    Pipelined(UploadBegin),
}

/// Read what opens an upload stream on a connection of protocol `version`.
fn opening(first: Message, version: u16) -> Result<Opening, (u64, Refusal)> {
    match first {
        Message::UploadBegin(b) if version >= PIPELINED_UPLOAD_SINCE => {
            if b.offset == 0 {
                Ok(Opening::Pipelined(b))
            } else {
                let why =
                    "a stream that opens with UploadBegin starts at offset 0; query to resume";
                Err((b.seq, (UploadFailCode::BadOffset, why.into())))
            }
        }
        other => ingest::expect_query(other)
            .map(Opening::Query)
            .map_err(|r| (0, r)),
    }
}

/// Serve one upload stream of `device`, on a connection of protocol
/// `version`.
pub(super) async fn serve(
    mut send: SendStream,
    recv: RecvStream,
    shared: &Arc<Shared>,
    device: DeviceId,
    version: u16,
) -> Result<(), ConnError> {
    let mut reader = FrameReader::new(recv);
    let Some(first) = reader.next().await? else {
        return Ok(());
    };
    let (q, pipelined) = match opening(first, version) {
        Ok(Opening::Query(q)) => (q, None),
        Ok(Opening::Pipelined(b)) => {
            shared
                .counters
                .uploads_pipelined
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let q = UploadQuery {
                seq: b.seq,
                media_hash: b.media_hash,
                media_len: b.len,
            };
            (q, Some(b))
        }
        Err((seq, r)) => return refuse(&mut send, seq, r).await,
    };
    let seq = q.seq;
    let Some(_slot) = UploadSlot::claim(&shared.uploading, (device, seq)) else {
        let r = (
            UploadFailCode::Internal,
            "another upload of this segment is running".into(),
        );
        return refuse(&mut send, seq, r).await;
    };
    let accepted = shared.db.entry(device, seq)?;
    // A repair may hash a whole partial file: blocking work, off the async
    // workers, which carry every other connection.
    let (s, query, a) = (shared.clone(), q.clone(), accepted.clone());
    let settled =
        tokio::task::spawn_blocking(move || ingest::settle_query(&s, device, &query, a.as_ref()))
            .await??;
    let offset = match settled {
        Ok(o) => o,
        Err(r) => return refuse(&mut send, seq, r).await,
    };
    if offset == q.media_len {
        // Held whole: `settle_query` checked the hash and length against the
        // accepted entry, so the acknowledgement names the signed media.
        send_msg(
            &mut send,
            &signed_ack(shared, device, seq, (q.media_hash, offset)),
        )
        .await?;
        send.finish()?;
        if pipelined.is_some() {
            // The bytes behind the pipelined UploadBegin are not needed.
            let (_, mut recv) = reader.into_raw();
            let _ = recv.stop(STOP_HELD.into());
        }
        return Ok(());
    }
    let begin = match pipelined {
        Some(b) => {
            if offset > 0 {
                // The device sends the whole file: the prefix held from an
                // earlier attempt goes (the hash at the end checks every byte).
                let (s, d) = (shared.clone(), device);
                tokio::task::spawn_blocking(move || s.storage.discard_partial(d, seq)).await??;
            }
            b
        }
        None => {
            let m = Message::UploadOffset(UploadOffset { seq, offset });
            send_msg(&mut send, &m).await?;
            let Some(next) = reader.next().await? else {
                return Ok(());
            };
            match ingest::expect_begin(next) {
                Ok(b) => b,
                Err(r) => return refuse(&mut send, seq, r).await,
            }
        }
    };
    let held = shared.storage.partial_len(device, seq)?;
    let (signed, raw_len) = match ingest::check_begin(&begin, accepted.as_ref(), held) {
        Ok(v) => v,
        Err(r) => return refuse(&mut send, seq, r).await,
    };
    // Opening reads back and hashes what the partial file already holds:
    // blocking work, as are the writes that follow.
    let s = shared.clone();
    let opened =
        tokio::task::spawn_blocking(move || s.storage.part_writer(device, seq, held)).await?;
    let writer = match opened {
        Ok(w) => w,
        Err(e) => return disk_failed(&mut send, device, seq, e.to_string()).await,
    };
    let (first, recv) = reader.into_raw();
    match receive(writer, first, recv, raw_len).await? {
        Received::All(writer) => store(&mut send, shared, device, seq, signed, writer).await,
        Received::DiskFailed(why) => disk_failed(&mut send, device, seq, why).await,
        Received::LengthDiffers => {
            let r = (
                UploadFailCode::LengthMismatch,
                "stream length differs from len".into(),
            );
            refuse(&mut send, seq, r).await
        }
    }
}

/// How the raw bytes of an upload ended.
enum Received {
    /// Exactly the bytes announced arrived and are in the partial file.
    All(PartWriter),
    /// The stream ended early or ran past the announced length.
    LengthDiffers,
    /// The partial file could not be written.
    DiskFailed(String),
}

/// Read `raw_len` raw bytes (`first` already read) into `writer`. The
/// stream's data is kept as quinn hands it over (no copy) until a batch is
/// gathered, then written and hashed in one blocking task.
async fn receive(
    mut writer: PartWriter,
    first: Vec<u8>,
    mut recv: RecvStream,
    raw_len: u64,
) -> Result<Received, ConnError> {
    let mut batch: Vec<Bytes> = Vec::new();
    let mut gathered = first.len();
    if !first.is_empty() {
        batch.push(Bytes::from(first));
    }
    let mut left = raw_len;
    loop {
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
                Err(e) => return Ok(Received::DiskFailed(e.to_string())),
            };
        }
        left -= take;
        match end {
            _ if overrun => return Ok(Received::LengthDiffers),
            None => {}
            Some(None) if left > 0 => return Ok(Received::LengthDiffers),
            Some(None) => return Ok(Received::All(writer)),
            Some(Some(e)) => return Err(e.into()),
        }
    }
}

/// Every byte arrived: have the executor make it a blob (hashing, fsync,
/// rename and the index are blocking work, off the async workers, which
/// carry every other connection), then answer.
async fn store(
    send: &mut SendStream,
    shared: &Arc<Shared>,
    device: DeviceId,
    seq: u64,
    signed: (Hash32, u64),
    writer: PartWriter,
) -> Result<(), ConnError> {
    let media_len = signed.1;
    let s = shared.clone();
    let got = writer.finish();
    let done =
        tokio::task::spawn_blocking(move || ingest::commit_upload(&s, device, seq, signed, got))
            .await?;
    match done {
        Ok(Completion::Store) => {}
        Err(e) => return disk_failed(send, device, seq, e.to_string()).await,
        Ok(Completion::Short(held)) => {
            let why = format!("the partial file holds {held} of {media_len} bytes");
            return disk_failed(send, device, seq, why).await;
        }
        Ok(Completion::Mismatch) => {
            tracing::warn!(%device, seq, "upload bytes do not hash to the signed media hash");
            shared
                .counters
                .segment_hash_mismatches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = (
                UploadFailCode::HashMismatch,
                "bytes do not match media_hash".into(),
            );
            return refuse(send, seq, r).await;
        }
    }
    tracing::debug!(%device, seq, media_len, "segment stored");
    let c = &shared.counters;
    c.segments_stored
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    c.media_bytes
        .fetch_add(media_len, std::sync::atomic::Ordering::Relaxed);
    send_msg(send, &signed_ack(shared, device, seq, signed)).await?;
    send.finish()?;
    crate::fault::point("blob-after-ack");
    Ok(())
}

/// The signed acknowledgement of media the server holds, verified and
/// durable (FORMAT.md §7.6): the device may delete its copy on it.
fn signed_ack(shared: &Shared, device: DeviceId, seq: u64, media: (Hash32, u64)) -> Message {
    let ack = MediaAck::sign(device, seq, media, crate::now_us(), &shared.receipt_key);
    Message::UploadAck(ack)
}

/// Answer `UploadFailed` and end the stream.
async fn refuse(send: &mut SendStream, seq: u64, (code, detail): Refusal) -> Result<(), ConnError> {
    let m = Message::UploadFailed(UploadFailed {
        seq,
        code,
        detail: Detail::lossy(&detail),
    });
    send_msg(send, &m).await?;
    send.finish()?;
    Ok(())
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
) -> Result<(), ConnError> {
    tracing::error!(%device, seq, "ALARM cannot store an upload: {e}");
    let r = (
        UploadFailCode::Internal,
        "the server could not store the bytes (disk full?); retry later".into(),
    );
    refuse(send, seq, r).await
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
