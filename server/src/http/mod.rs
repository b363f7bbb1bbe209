//! The HTTP API (axum): JSON for custodians, supervisors, officers and
//! admins, built by one [`app`] so that tests drive it with
//! `tower::ServiceExt::oneshot`, with its OpenAPI 3.1 document derived from
//! the same list of routes (`utoipa-axum`), so the two cannot drift apart.
//!
//! What is here: health, Prometheus metrics, the published catalogue (no
//! login: Art. 27 says publish it), login and logout, officers, device
//! custody and cases with their stages, legal review and activities; the
//! evidence itself (entries, signed bytes, segment bytes with ranges); legal
//! holds (`holds.rs`) and the annual report (`reports.rs`); a
//! custodian's links of recordings to activities; the access log with its
//! proofs and the admin's user API; a case's export package (`export.rs`);
//! devices with their live state and equivocations (`devices.rs`), HLS playlists over the
//! original segments (`playlist.rs`) and the web page itself (`web.rs`).
//! Every handler finds the caller's
//! session through [`auth::Authed`] and refuses by role there; every
//! refusal becomes a leaf of the access log in [`denied`].

pub mod access;
pub mod auth;
pub mod cases;
pub mod denied;
pub mod devices;
pub mod error;
pub mod evidence;
#[cfg(test)]
mod evidence_tests;
pub mod export;
#[cfg(test)]
mod export_tests;
pub mod holds;
pub mod links;
pub mod log;
pub mod metrics;
pub mod playlist;
pub mod position;
pub mod reports;
pub mod serve;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_audit;
#[cfg(test)]
mod tests_matrix;
pub mod users;
pub mod web;

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::catalogue::Catalogue;
use crate::chainindex::ChainIndex;
use crate::Shared;

pub use error::ApiError;

/// What every handler can reach.
#[derive(Debug)]
pub struct AppState {
    /// The server's shared state (index, files, keys).
    pub shared: Arc<Shared>,
    /// The published catalogue.
    pub catalogue: Catalogue,
    /// Failed-login throttle.
    pub throttle: crate::auth::Throttle,
    /// Counters for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Limits the access-log leaves of people without a session.
    pub flood: crate::audit::FloodLimit,
}

impl AppState {
    /// State over a running server's shared state.
    pub fn new(shared: Arc<Shared>, catalogue: Catalogue) -> AppState {
        AppState {
            shared,
            catalogue,
            throttle: crate::auth::Throttle::default(),
            metrics: metrics::Metrics::default(),
            flood: crate::audit::FloodLimit::default(),
        }
    }
}

/// The largest request body any endpoint takes: JSON records are small;
/// attachments come as blobs of their own.
pub const MAX_BODY: usize = 256 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fieldseal server API",
        description = "Cases, the Article 27 catalogue and compliance, users and the access log of a fieldseal evidence server."
    ),
    tags(
        (name = "public", description = "No login needed"),
        (name = "session", description = "Logging in and out"),
        (name = "cases", description = "Officers, device custody, cases, stages, reviews and activities"),
        (name = "evidence", description = "Entries, segment bytes, and links of recordings to activities"),
        (name = "audit", description = "The access log, with inclusion proofs"),
        (name = "users", description = "Users and their roles (admin)"),
        (name = "holds", description = "Legal holds: media kept from the retention job"),
        (name = "reports", description = "The annual report (Art. 35)")
    )
)]
struct ApiDoc;

/// The router and its OpenAPI document.
pub fn router_and_doc(state: Arc<AppState>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(catalogue))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(cases::list_officers, cases::put_officer))
        .routes(routes!(cases::put_custody))
        .routes(routes!(cases::list_cases, cases::create_case))
        .routes(routes!(cases::get_case))
        .routes(routes!(cases::add_stage))
        .routes(routes!(cases::set_review))
        .routes(routes!(cases::add_activity))
        .routes(routes!(cases::compliance))
        .routes(routes!(cases::add_letter))
        .routes(routes!(export::export))
        .routes(routes!(log::checkpoint))
        .routes(routes!(log::key))
        .routes(routes!(log::consistency))
        .routes(routes!(log::inclusion))
        // The evidence and its links to activities.
        .routes(routes!(evidence::list_entries))
        .routes(routes!(evidence::get_entry))
        .routes(routes!(evidence::get_media))
        // Devices as the web page shows them, and playback over HLS.
        .routes(routes!(devices::list))
        .routes(routes!(devices::get))
        .routes(routes!(devices::equivocations))
        .routes(routes!(playlist::playlist))
        .routes(routes!(links::link, links::unlink))
        // The access log and the admin's user API.
        .routes(routes!(access::audit))
        .routes(routes!(users::list_users, users::add_user))
        .routes(routes!(users::change_user))
        // Legal holds and the annual report (retention.rs, report.rs).
        .routes(routes!(holds::list, holds::place))
        .routes(routes!(holds::release))
        .routes(routes!(reports::annual))
        .with_state(state)
        .split_for_parts();
    (router, doc)
}

/// The whole API: routes, `/api/openapi.json`, the body limit, and every
/// refusal logged ([`denied::log_denials`]).
pub fn app(state: Arc<AppState>) -> axum::Router {
    let (router, doc) = router_and_doc(state.clone());
    let doc = Arc::new(doc);
    router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        // The web page (web.rs): not API, so not in the document.
        .route("/", axum::routing::get(web::index))
        .route("/web/{name}", axum::routing::get(web::asset))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            state,
            denied::log_denials,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(web::security_headers))
}

/// Liveness: the process answers and its index opens.
#[utoipa::path(get, path = "/healthz", tag = "public", responses((status = 200, description = "ok")))]
async fn healthz(State(s): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    s.shared.db.log_size().map_err(ApiError::internal)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok\n",
    ))
}

/// The recording catalogue (Art. 27 ¶2), published without login.
#[utoipa::path(get, path = "/api/catalogue", tag = "public",
    responses((status = 200, description = "the catalogue", body = Catalogue)))]
async fn catalogue(State(s): State<Arc<AppState>>) -> Json<Catalogue> {
    Json(s.catalogue.clone())
}
