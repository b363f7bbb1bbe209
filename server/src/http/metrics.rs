//! `/metrics` in the Prometheus text format (version 0.0.4): counters kept
//! here by the HTTP layer, and gauges read from the index when scraped.

use std::fmt::Write as _;
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
    /// Requests refused for want of a session or a role (401, 403).
    pub denials: AtomicU64,
    /// Access-log leaves of people without a session held back by the
    /// flood limit (counted here, reported in a later leaf).
    pub access_held_back: AtomicU64,
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
    quic_gauges(&mut out, &s.shared);
    s.shared.counters.render(&mut out);
    equivocations(&mut out, &s.shared);
    let _ = writeln!(
        out,
        "# HELP fieldseal_logins_total Logins, by outcome (failed: wrong password, unknown or \
         disabled user, throttled).\n# TYPE fieldseal_logins_total counter\n\
         fieldseal_logins_total{{outcome=\"ok\"}} {}\n\
         fieldseal_logins_total{{outcome=\"failed\"}} {}",
        m.logins_ok.load(Ordering::Relaxed),
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
        "fieldseal_access_log_held_back_total",
        "counter",
        "Access-log leaves of people without a session held back by the flood limit.",
        m.access_held_back.load(Ordering::Relaxed),
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

/// Every device that ever equivocated, from the durable records
/// (`equivocation.rs`): unlike `fieldseal_equivocations_total`, which counts
/// this process's alarms, these survive a restart.
fn equivocations(out: &mut String, shared: &crate::Shared) {
    let all = shared.equivocations.all();
    let _ = writeln!(
        out,
        "# HELP fieldseal_device_equivocations_total Equivocations of a device (two entries \
         signed with one seq), each refused with an ALARM; durable across restarts.\n\
         # TYPE fieldseal_device_equivocations_total counter"
    );
    for (d, e) in &all {
        let _ = writeln!(
            out,
            "fieldseal_device_equivocations_total{{device=\"{d}\"}} {}",
            e.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP fieldseal_device_equivocation_last_timestamp_seconds Server time of a \
         device's latest equivocation.\n\
         # TYPE fieldseal_device_equivocation_last_timestamp_seconds gauge"
    );
    for (d, e) in &all {
        if let Some(us) = e.last_us {
            let _ = writeln!(
                out,
                "fieldseal_device_equivocation_last_timestamp_seconds{{device=\"{d}\"}} {}",
                us as f64 / 1e6
            );
        }
    }
}

/// Connections counted by the admission limits now, and the limits.
fn quic_gauges(out: &mut String, shared: &crate::Shared) {
    let (all, limits) = {
        let gate = shared.gate.lock();
        (gate.counts(), gate.limits().clone())
    };
    let _ = writeln!(
        out,
        "# HELP fieldseal_quic_connections QUIC connections open now: authenticated (enrolled \
         devices' sync connections) and unauthenticated (handshakes, enrolments, strangers).\n\
         # TYPE fieldseal_quic_connections gauge\n\
         fieldseal_quic_connections{{state=\"authenticated\"}} {}\n\
         fieldseal_quic_connections{{state=\"unauthenticated\"}} {}",
        all.0.saturating_sub(all.1),
        all.1,
    );
    let _ = writeln!(
        out,
        "# HELP fieldseal_quic_connection_limit The connection limits of config.toml.\n\
         # TYPE fieldseal_quic_connection_limit gauge\n\
         fieldseal_quic_connection_limit{{limit=\"total\"}} {}\n\
         fieldseal_quic_connection_limit{{limit=\"unauthenticated\"}} {}\n\
         fieldseal_quic_connection_limit{{limit=\"unauthenticated_per_address\"}} {}",
        limits.max_connections, limits.max_unauthenticated, limits.max_unauthenticated_per_address,
    );
}
