//! Enrolment over ALPN `fieldseal-enroll/1`: read one request, let
//! `admin::enroll` decide (token, certificate, device record), send the
//! answer, and allow the new device's key to sync. No decisions here; the
//! limits (`limits.rs`) bound attempts per address and the time to send
//! the request.

use std::sync::Arc;
use std::time::Duration;

use fieldseal_proto::codec::{Decode, Encode};
use fieldseal_proto::enroll::{EnrollRequest, EnrollResponse, EnrollStatus, MAX_ENROLL_REQUEST};
use fieldseal_proto::msg::Detail;

use tokio::time::Instant;

use super::limits::Slot;
use super::{ConnError, CLOSE_BUSY, CLOSE_TIMEOUT};
use crate::{admin, now_us, Shared};

/// How long the client gets to read the answer and close.
const LINGER: Duration = Duration::from_secs(10);

/// Serve one enrolment connection: the request must have arrived by
/// `deadline`. `slot` is the connection's place under the limits.
pub(super) async fn serve(
    conn: quinn::Connection,
    shared: Arc<Shared>,
    slot: Slot,
    deadline: Instant,
) -> Result<(), ConnError> {
    let remote = conn.remote_address();
    let allowed = shared
        .gate
        .lock()
        .handle_enrolment(slot.ip(), std::time::Instant::now());
    if let Err(r) = allowed {
        super::endpoint::refused(&shared, r, remote);
        conn.close(
            CLOSE_BUSY,
            b"too many enrolment attempts from this address; try again in a minute",
        );
        return Err(ConnError::Limit(format!("{remote}: {}", r.label())));
    }
    let read = async {
        let (send, mut recv) = conn.accept_bi().await?;
        let bytes = recv.read_to_end(MAX_ENROLL_REQUEST).await?;
        Ok::<_, ConnError>((send, bytes))
    };
    let Ok(read) = tokio::time::timeout_at(deadline, read).await else {
        super::endpoint::timed_out(&shared, 1, remote, "the enrolment request");
        conn.close(CLOSE_TIMEOUT, b"enrolment request not received in time");
        return Err(ConnError::Limit(format!(
            "{remote}: enrolment request not received in time"
        )));
    };
    let (mut send, bytes) = read?;
    let resp = match EnrollRequest::from_bytes(&bytes) {
        Ok(req) => enrol(&shared, req).await?,
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
    let _ = tokio::time::timeout(LINGER, conn.closed()).await;
    Ok(())
}

/// Run the enrolment on the blocking pool; on success, allow the device.
async fn enrol(shared: &Arc<Shared>, req: EnrollRequest) -> Result<EnrollResponse, ConnError> {
    let s = shared.clone();
    let resp = tokio::task::spawn_blocking(move || {
        admin::enroll(
            &s.db,
            &s.ca,
            &s.receipt_key.verifying_key(),
            &req,
            now_us(),
            s.cfg.device_cert_validity_secs(),
        )
    })
    .await?;
    if let EnrollResponse::Ok { device_id, .. } = &resp {
        if let Ok(Some(d)) = shared.db.device(*device_id) {
            shared.allowed.insert(d.key.to_bytes());
        }
        shared
            .counters
            .certs
            .enrolled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cert = shared.db.current_cert(*device_id).ok().flatten();
        tracing::info!(
            device = %device_id,
            how = ?cert.as_ref().map(|c| c.how),
            cert_not_after = ?cert.as_ref().map(|c| c.not_after),
            "device enrolled"
        );
    }
    Ok(resp)
}
