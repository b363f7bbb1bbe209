//! A sync connection's control stream (FORMAT.md §7.3–7.4): `Hello` →
//! `Welcome`, then `SubmitEntry` answered in order with the committer's
//! answer, pings, and (version 3) certificate renewal answered by
//! `crate::renew`. Upload streams are accepted alongside and served by
//! `upload.rs`. Entry decisions are the committer's (`crate::ingest`). A
//! connection that outlives the certificate it was made with is closed
//! with [`super::CLOSE_EXPIRED`].
//!
//! Not to be confused with `crate::control`, the local admin socket.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use fieldseal_proto::identity::DeviceId;
use fieldseal_proto::msg::{
    Detail, ErrorCode, ErrorMsg, Hello, Message, SeqList, Welcome, MAX_RESEND_MEDIA,
    MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use fieldseal_proto::renew::RENEW_SINCE_VERSION;
use quinn::SendStream;

use super::frames::{send_msg, FrameError, FrameReader};
use super::{committer, upload, ConnError, CLOSE_EXPIRED, CLOSE_PROTOCOL};
use crate::chainindex::ChainIndex;
use crate::renew::Presented;
use crate::{now_us, Shared};

/// How long an `Error` message gets to leave before the connection closes.
const ERROR_LINGER: Duration = Duration::from_millis(100);

/// Serve the sync protocol on an admitted connection of the device `key`,
/// made with the certificate `presented`.
pub(super) async fn run(
    conn: &quinn::Connection,
    shared: &Arc<Shared>,
    key: VerifyingKey,
    presented: Option<Presented>,
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
    let session = Session {
        key,
        version: hello.protocol_version,
        presented,
    };
    // Upload streams are served alongside the control stream.
    let version = session.version;
    let uploads = {
        let conn = conn.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            while let Ok((s, r)) = conn.accept_bi().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = upload::serve(s, r, &shared, device, version).await {
                        tracing::debug!(%device, "upload stream: {e}");
                    }
                });
            }
        })
    };
    let res = control_loop(conn, shared, &session, &mut send, &mut reader).await;
    uploads.abort();
    res
}

/// What the control loop knows of its connection.
struct Session {
    key: VerifyingKey,
    /// The protocol version both sides speak (the agent's, from `Hello`).
    version: u16,
    /// The certificate the connection was made with.
    presented: Option<Presented>,
}

impl Session {
    /// When the connection's certificate stops being valid (tokio's clock);
    /// `None` for a certificate whose dates are unknown or too far away.
    fn expires_at(&self) -> Option<tokio::time::Instant> {
        let not_after = self.presented.as_ref()?.validity.not_after;
        let left = not_after
            .saturating_add(1)
            .saturating_sub(now_us().div_euclid(1_000_000));
        // Beyond a year tokio's timer wheel adds nothing: the certificates of
        // before expiry end in 4096.
        let left = u64::try_from(left).unwrap_or(0).min(366 * 86_400);
        tokio::time::Instant::now().checked_add(Duration::from_secs(left))
    }
}

/// Is `hello` acceptable on the connection of `device`? Otherwise the
/// `Error` to send and what to log.
fn check_hello(hello: &Hello, device: DeviceId) -> Result<(), (ErrorCode, &'static str, String)> {
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&hello.protocol_version) {
        return Err((
            ErrorCode::UnsupportedVersion,
            // Version 1 agents delete media on unsigned acknowledgements: an
            // old agent must be upgraded before it syncs again.
            "protocol v2 or v3 only (signed upload acks): upgrade the agent",
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
            // The agent's own version: it may be older than ours.
            protocol_version: hello.protocol_version,
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
    session: &Session,
    send: &mut SendStream,
    reader: &mut FrameReader,
) -> Result<(), ConnError> {
    let key = session.key;
    let device = DeviceId::from_key(&key);
    let expires_at = session.expires_at();
    let expired = async {
        match expires_at {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        let next = tokio::select! {
            m = reader.next() => m,
            () = &mut expired => {
                shared.counters.certs.closed_expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(%device, "closing the connection: the certificate it was made with has expired");
                conn.close(CLOSE_EXPIRED, b"certificate expired");
                return Err(ConnError::Forbidden(format!("{device}: certificate expired")));
            }
        };
        let msg = match next {
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
            Message::RenewCert(r) if session.version >= RENEW_SINCE_VERSION => {
                renew(shared, session, r).await?
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

/// Answer a renewal request on the blocking pool (index, signing).
async fn renew(
    shared: &Arc<Shared>,
    session: &Session,
    r: fieldseal_proto::renew::RenewCert,
) -> Result<Message, ConnError> {
    let Some(presented) = session.presented.clone() else {
        return Ok(Message::RenewRefused(
            fieldseal_proto::renew::RenewRefused {
                code: fieldseal_proto::renew::RenewRefusal::Internal,
                detail: Detail::lossy("the certificate of this connection cannot be read"),
            },
        ));
    };
    let (s, key) = (shared.clone(), session.key);
    Ok(
        tokio::task::spawn_blocking(move || {
            crate::renew::renew(&s, &key, &presented, &r, now_us())
        })
        .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_must_speak_v2_or_v3_and_name_the_connections_device() {
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
        // Version 2 agents (no renewal) are still served.
        for v in MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION {
            let ok = Hello {
                protocol_version: v,
                ..hello.clone()
            };
            assert!(check_hello(&ok, device).is_ok(), "version {v}");
        }
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
