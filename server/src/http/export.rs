//! `GET /api/cases/{number}/export`: the case's export package
//! (`docs/FORMAT.md` §10), streamed as it is written, for custodians. The
//! bytes are those `fieldseal-server export` writes: one builder
//! (`export.rs`). Making the plan appends the `export` custody leaves, by
//! the caller, before the checkpoint inside the package is signed.

use std::io::{self, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::auth::Role;

use super::auth::Authed;
use super::error::{ErrorBody, Path};
use super::{ApiError, AppState};

/// Chunks of the package on their way to the client.
struct Chunks(tokio::sync::mpsc::Receiver<io::Result<Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = io::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// A blocking writer whose bytes go to the response body.
struct ToBody(tokio::sync::mpsc::Sender<io::Result<Bytes>>);

impl Write for ToBody {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client has gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The case's export package: a POSIX tar file (`application/x-tar`).
#[utoipa::path(get, path = "/api/cases/{number}/export", tag = "cases",
    params(("number" = String, Path, description = "case number")),
    responses((status = 200, description = "the package", content_type = "application/x-tar"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn export(
    State(s): State<Arc<AppState>>,
    who: Authed,
    Path(number): Path<String>,
) -> Result<Response, ApiError> {
    who.require(&s, &[Role::Custodian], "export cases")?;
    if !crate::cases::valid_key(&number) {
        return Err(ApiError::invalid("number", "letters, digits, - and _"));
    }
    let (st, actor, case) = (s.clone(), who.0.user.clone(), number.clone());
    let plan = tokio::task::spawn_blocking(move || {
        crate::export::plan(&st.shared, &st.catalogue, &case, &actor, crate::now_us())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|e| match e {
        crate::export::ExportError::NoCase(_) => ApiError::not_found(e.to_string()),
        e => ApiError::internal(e),
    })?;
    let len = plan.len();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let sh = s.shared.clone();
    tokio::task::spawn_blocking(move || {
        let open = |h: &fieldseal_proto::identity::Hash32| sh.blobs.open(h);
        let mut out = io::BufWriter::with_capacity(256 * 1024, ToBody(tx.clone()));
        if let Err(e) = crate::export::write(&plan, &open, &mut out, &mut |_| {}) {
            // The client sees the body cut short; the log says why.
            tracing::error!(case = plan.case, "export stream failed: {e}");
            let _ = tx.blocking_send(Err(io::Error::other(e.to_string())));
        }
    });
    let mut resp = Body::from_stream(Chunks(rx)).into_response();
    let h = resp.headers_mut();
    let mut set = |k, v: String| _ = h.insert(k, v.parse().expect("ASCII header value"));
    set(header::CONTENT_TYPE, "application/x-tar".into());
    set(header::CONTENT_LENGTH, len.to_string());
    set(
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{number}-fieldseal.tar\""),
    );
    set(header::CACHE_CONTROL, "private, no-store".into());
    Ok(resp)
}
