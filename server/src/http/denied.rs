//! Refused requests into the access log: a middleware around the whole API
//! that turns every 401 and 403 answer into a `denied` custody leaf
//! (actor: the user, or `-` without a session; detail: method, path,
//! address and status), durable before the answer leaves. It sits around
//! the router rather than in `Authed` so that every refusal, whichever
//! handler or extractor made it, is logged once and counted once.
//!
//! Leaves of people without a session (these refusals and failed logins)
//! pass the [`crate::audit::FloodLimit`]: what it holds back is counted for
//! `/metrics` and reported in the next leaf it lets through.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use fieldseal_proto::leaf::CustodyAction;

use crate::audit::{self, Access, Flood, NO_SESSION};

use super::auth::{token_of, ClientAddr};
use super::AppState;

/// Longest path kept in a leaf's detail, bytes: room for the rest of it
/// (method, address, status, a held-back count) within its 200.
const MAX_PATH: usize = 96;

/// Log the 401 and 403 answers of the API (see the module doc). A refused
/// login is not a refused request: `auth::login` logs it as `login-failed`.
pub async fn log_denials(
    State(s): State<Arc<AppState>>,
    ClientAddr(addr): ClientAddr,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let token = token_of(req.headers());
    let resp = next.run(req).await;
    let status = resp.status();
    let refused = status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN;
    if !refused || path == "/api/login" {
        return resp;
    }
    s.metrics.denials.fetch_add(1, Ordering::Relaxed);
    let detail = format!(
        "{method} {} from {addr}: {}",
        audit::fit(&path, MAX_PATH),
        status.as_u16()
    );
    let user = token
        .and_then(|t| s.shared.sessions.get(&t, crate::now_us()))
        .map(|sess| sess.user);
    match user {
        Some(user) => {
            let a = Access::new(CustodyAction::Denied, &user).detail(detail);
            if let Err(e) = audit::record(&s.shared, a).await {
                // Still refused: a refusal that cannot be logged stays one.
                tracing::error!("access log: a denial could not be written: {e}");
            }
        }
        None => {
            let a = Access::new(CustodyAction::Denied, NO_SESSION);
            record_anonymous(&s, &addr, a, detail).await;
        }
    }
    resp
}

/// Write `a` with `detail` if the flood limit lets an event from `addr`
/// through now, adding what it held back before; count it otherwise. A
/// failed write is logged and otherwise ignored: the caller is refusing.
pub async fn record_anonymous(s: &Arc<AppState>, addr: &str, a: Access, detail: String) {
    let detail = match s.flood.admit(addr, crate::now_us()) {
        Flood::Hold => {
            s.metrics.access_held_back.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Flood::Write(None) => detail,
        Flood::Write(Some(held)) => format!("{detail}; {held}"),
    };
    if let Err(e) = audit::record(&s.shared, a.detail(detail)).await {
        tracing::error!("access log: a refusal could not be written: {e}");
    }
}
