//! A sync connection's control stream (FORMAT.md §7.3–7.4): `Hello` →
//! `Welcome`, then `SubmitEntry` answered in order with the committer's
//! answer, and pings. Upload streams are accepted alongside and served by
//! `upload.rs`. Entry decisions are the committer's (`crate::ingest`).
//!
//! Not to be confused with `crate::control`, the local admin socket.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::msg::{
    Detail, ErrorCode, ErrorMsg, Hello, Message, SeqList, Welcome, MAX_RESEND_MEDIA,
    PROTOCOL_VERSION,
};
use quinn::SendStream;

use super::frames::{send_msg, FrameError, FrameReader};
use super::{committer, upload, ConnError, CLOSE_PROTOCOL};
use crate::chainindex::ChainIndex;
use crate::{now_us, Shared};

/// How long an `Error` message gets to leave before the connection closes.
const ERROR_LINGER: Duration = Duration::from_millis(100);

/// Serve the sync protocol on an admitted connection of the device `key`.
pub(super) async fn run(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    key: VerifyingKey,
) -> Result<(), ConnError> {
    let device = DeviceId::from_key(&key);
    let (mut send, recv) = conn.accept_bi().await?;
    let mut reader = FrameReader::new(recv);
    let hello = match reader.next().await? {
        Some(Message::Hello(h)) => h,
        _ => {
            error_close(conn, &mut send, ErrorCode::UnexpectedMessage, "Hello first").await;
            return Err(ConnError::Protocol("no Hello".into()));
        }
    };
    if let Err((code, detail, why)) = check_hello(&hello, device) {
        error_close(conn, &mut send, code, detail).await;
        return Err(ConnError::Protocol(why));
    }
    welcome(shared, device, &hello, &mut send).await?;
    // Upload streams are served alongside the control stream.
    let uploads = {
        let conn = conn.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok((s, r)) = conn.accept_bi().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = upload::serve(s, r, &shared, device).await {
                        tracing::debug!(%device, "upload stream: {e}");
                    }
                });
            }
        })
    };
    let res = control_loop(conn, shared, key, &mut send, &mut reader).await;
    uploads.abort();
    res
}

/// Is `hello` acceptable on the connection of `device`? Otherwise the
/// `Error` to send and what to log.
fn check_hello(hello: &Hello, device: DeviceId) -> Result<(), (ErrorCode, &'static str, String)> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err((
            ErrorCode::UnsupportedVersion,
            // Version 1 agents delete media on unsigned acknowledgements: an
            // old agent must be upgraded before it syncs again.
            "protocol v2 only (signed upload acks): upgrade the agent",
            format!("protocol version {}", hello.protocol_version),
        ));
    }
    if hello.device_id != device {
        return Err((
            ErrorCode::WrongDevice,
            "Hello names another device",
            format!("Hello from {} on {device}'s connection", hello.device_id),
        ));
    }
    Ok(())
}

/// Send `Welcome`: where the device's chain continues and which media to
/// send again.
async fn welcome(
    shared: &Shared,
    device: DeviceId,
    hello: &Hello,
    send: &mut SendStream,
) -> Result<(), ConnError> {
    let head = shared.db.head(device)?;
    if hello.chain_head_seq.map_or(0, |h| h.saturating_add(1)) < head.next_seq {
        // The device holds less of its chain than we do: it lost entries
        // (storage wiped or restored). Worth a look; sync goes on.
        tracing::warn!(%device, agent_head = ?hello.chain_head_seq, server_next = head.next_seq,
            "device's chain is shorter than the server's copy");
    }
    let resend = shared.db.missing_media(device, MAX_RESEND_MEDIA)?;
    send_msg(
        send,
        &Message::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            server_time_us: now_us(),
            next_seq_expected: head.next_seq,
            resend_media: SeqList::new(resend)?,
        }),
    )
    .await?;
    tracing::info!(%device, next_seq = head.next_seq, agent_head = ?hello.chain_head_seq, "device connected");
    Ok(())
}

/// Send `Error`, let it leave, close the connection.
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
    tokio::time::sleep(ERROR_LINGER).await;
    conn.close(CLOSE_PROTOCOL, detail.as_bytes());
}

async fn control_loop(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    key: VerifyingKey,
    send: &mut SendStream,
    reader: &mut FrameReader,
) -> Result<(), ConnError> {
    let device = DeviceId::from_key(&key);
    loop {
        let msg = match reader.next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(FrameError::Decode(e)) => {
                error_close(conn, send, ErrorCode::Malformed, &e.to_string()).await;
                return Err(FrameError::Decode(e).into());
            }
            Err(e) => return Err(e.into()),
        };
        let reply = match msg {
            Message::SubmitEntry(s) => committer::submit(shared, key, s.entry.into_vec()).await,
            Message::Ping { nonce } => Message::Pong { nonce },
            Message::Pong { .. } => continue,
            Message::Error(e) => {
                tracing::info!(%device, code = ?e.code, detail = e.detail.as_str(), "agent gave up");
                return Ok(());
            }
            other => {
                let what = format!("{:?} on the control stream", other.message_type());
                error_close(conn, send, ErrorCode::UnexpectedMessage, &what).await;
                return Err(ConnError::Protocol(what));
            }
        };
        let receipt = matches!(reply, Message::EntryReceipt(_));
        send_msg(send, &reply).await?;
        if receipt {
            crate::fault::point("entry-after-ack");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_must_speak_v2_and_name_the_connections_device() {
        let device = DeviceId([1; 8]);
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            device_id: device,
            chain_head_seq: None,
        };
        assert!(check_hello(&hello, device).is_ok());
        let other = Hello {
            device_id: DeviceId([2; 8]),
            ..hello.clone()
        };
        assert_eq!(
            check_hello(&other, device).unwrap_err().0,
            ErrorCode::WrongDevice
        );
        for v in [1, PROTOCOL_VERSION + 1] {
            let other_version = Hello {
                protocol_version: v,
                ..hello.clone()
            };
            assert_eq!(
                check_hello(&other_version, device).unwrap_err().0,
                ErrorCode::UnsupportedVersion,
                "version {v}"
            );
        }
    }
}
