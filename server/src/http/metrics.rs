//! `/metrics` in the Prometheus text format (version 0.0.4): counters kept
//! here by the HTTP layer, and gauges read from the index when scraped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::{ApiError, AppState};
use crate::chainindex::ChainIndex;

/// Counters of the HTTP side.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Successful logins.
    pub logins_ok: AtomicU64,
    /// Failed logins (wrong password, unknown or disabled user, throttled).
    pub logins_failed: AtomicU64,
    /// Requests refused for want of a session or a role.
    pub denials: AtomicU64,
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "public",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(s): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let m = &s.metrics;
    let mut out = String::new();
    let log = s.shared.db.log_size().map_err(ApiError::internal)?;
    let now = crate::now_us();
    let c =
        |out: &mut String, name, kind, help, v| crate::metrics::counter(out, name, kind, help, v);
    c(
        &mut out,
        "fieldseal_log_leaves",
        "gauge",
        "Leaves in the transparency log.",
        log,
    );
    c(
        &mut out,
        "fieldseal_live_connections",
        "gauge",
        "Sync connections open now.",
        s.shared.live_connections() as u64,
    );
    s.shared.counters.render(&mut out);
    c(
        &mut out,
        "fieldseal_logins_total",
        "counter",
        "Successful logins.",
        m.logins_ok.load(Ordering::Relaxed),
    );
    c(
        &mut out,
        "fieldseal_login_failures_total",
        "counter",
        "Failed logins.",
        m.logins_failed.load(Ordering::Relaxed),
    );
    c(
        &mut out,
        "fieldseal_http_denials_total",
        "counter",
        "Requests refused for want of a session or role.",
        m.denials.load(Ordering::Relaxed),
    );
    c(
        &mut out,
        "fieldseal_sessions",
        "gauge",
        "Live sessions.",
        s.shared.sessions.count(now) as u64,
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out))
}
