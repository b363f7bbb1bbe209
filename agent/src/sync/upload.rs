//! One upload stream (FORMAT.md §7.5): the segment's bytes to the server,
//! and its signed acknowledgement back.
//!
//! On a connection of protocol version 4 or later a first attempt is sent
//! **pipelined**: `UploadBegin` at offset 0 and the bytes at once, without
//! the `UploadQuery` → `UploadOffset` round trip. The server takes the whole
//! file, or, if it holds it already, answers `UploadAck` and stops the
//! stream. An attempt after one that ended without an acknowledgement asks
//! first, so that a prefix the server kept is not sent again.

use std::sync::atomic::Ordering;

use fieldseal_proto::ack::MediaAck;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::msg::{Message, UploadBegin, UploadQuery};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::driver::{send_msg, FrameReader, Progress, StreamError};
use super::machine::UploadOutcome;
use super::store::{MediaRef, SyncStore};

/// What an acknowledgement is checked against.
#[derive(Debug, Clone, Copy)]
pub(super) struct AckCheck {
    pub(super) receipt_key: ed25519_dalek::VerifyingKey,
    pub(super) device: DeviceId,
}

/// One upload attempt of `seq`: pipelined when `pipelined` (the connection
/// speaks version 4 and no earlier attempt was cut short), else resuming at
/// the offset the server gives.
pub(super) async fn upload<S: SyncStore + ?Sized>(
    conn: &quinn::Connection,
    store: &S,
    (seq, media): (u64, &MediaRef),
    pipelined: bool,
    progress: &Progress,
    check: AckCheck,
) -> UploadOutcome {
    match upload_inner(conn, store, (seq, media), pipelined, progress, &check).await {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(seq, "upload broke: {e}");
            UploadOutcome::Broken
        }
    }
}

async fn upload_inner<S: SyncStore + ?Sized>(
    conn: &quinn::Connection,
    store: &S,
    (seq, media): (u64, &MediaRef),
    pipelined: bool,
    progress: &Progress,
    cfg: &AckCheck,
) -> Result<UploadOutcome, StreamError> {
    let (mut send, recv) = conn.open_bi().await?;
    let _ = send.set_priority(0);
    let mut reader = FrameReader::new(recv);
    let offset = if pipelined {
        0
    } else {
        let q = UploadQuery {
            seq,
            media_hash: media.sha256,
            media_len: media.len,
        };
        send_msg(&mut send, &Message::UploadQuery(q)).await?;
        match reader.next().await? {
            Some(Message::UploadOffset(o)) if o.seq == seq && o.offset < media.len => o.offset,
            // Held whole already: the server acknowledges at once (FORMAT.md §7.5).
            Some(Message::UploadAck(a)) => {
                let _ = send.finish();
                return on_ack(&a, store, cfg, seq, media);
            }
            Some(Message::UploadFailed(f)) => return Ok(UploadOutcome::Failed(f.code)),
            other => {
                return Err(StreamError::Unexpected {
                    expected: "UploadOffset",
                    got: format!("{other:?}"),
                })
            }
        }
    };
    let begin = UploadBegin {
        seq,
        media_hash: media.sha256,
        offset,
        len: media.len,
    };
    // A server that stops the stream has answered already (a pipelined
    // upload of media it holds, or a refusal): read its answer.
    let stopped = match send_bytes(&mut send, &begin, media, progress).await {
        Ok(()) => false,
        Err(StreamError::Write(quinn::WriteError::Stopped(_))) => true,
        Err(e) => return Err(e),
    };
    if stopped {
        let _ = send.finish();
    } else {
        send.finish()?;
    }
    match reader.next().await? {
        Some(Message::UploadAck(a)) => on_ack(&a, store, cfg, seq, media),
        Some(Message::UploadFailed(f)) => Ok(UploadOutcome::Failed(f.code)),
        other => Err(StreamError::Unexpected {
            expected: "UploadAck",
            got: format!("{other:?}"),
        }),
    }
}

/// `UploadBegin`, then bytes `begin.offset ..` of the media file, unframed.
async fn send_bytes(
    send: &mut quinn::SendStream,
    begin: &UploadBegin,
    media: &MediaRef,
    progress: &Progress,
) -> Result<(), StreamError> {
    send_msg(send, &Message::UploadBegin(begin.clone())).await?;
    let mut file = tokio::fs::File::open(&media.path).await?;
    file.seek(std::io::SeekFrom::Start(begin.offset)).await?;
    let mut left = media.len - begin.offset;
    // Each read of tokio's File is a trip to the blocking pool: 256 KiB per trip.
    let mut buf = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).expect("bounded by buf.len()");
        let n = file.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(StreamError::ShortMedia);
        }
        send.write_all(&buf[..n]).await?;
        progress
            .media_bytes_sent
            .fetch_add(n as u64, Ordering::Relaxed);
        left -= n as u64;
    }
    Ok(())
}

/// The server's `UploadAck`: kept as proof of hand-over if it is signed by
/// the receipt key from enrolment and names exactly this segment; otherwise
/// reported, and nothing is released.
fn on_ack<S: SyncStore + ?Sized>(
    a: &MediaAck,
    store: &S,
    cfg: &AckCheck,
    seq: u64,
    media: &MediaRef,
) -> Result<UploadOutcome, StreamError> {
    if let Err(why) = a.verify_for(&cfg.receipt_key, cfg.device, seq, (media.sha256, media.len)) {
        tracing::error!(seq, %why, "the server's acknowledgement proves nothing: the media is kept");
        return Ok(UploadOutcome::BadAck);
    }
    store.media_acked(a)?;
    Ok(UploadOutcome::Acked)
}
