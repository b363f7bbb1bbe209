//! The web page for supervisors, custodians and officers: plain HTML and ES
//! modules from `server/web/`, embedded in the binary (the server stays
//! one file), served from the same origin as the API so that the session
//! cookie authenticates every request, the player's media requests too.
//!
//! Every answer of the server carries a strict Content-Security-Policy
//! ([`security_headers`]): scripts, styles, connections and media only from
//! this origin — no inline script or style, no other host, no fonts from
//! elsewhere. The one exception is `media-src blob:`: a player that feeds
//! the `<video>` through Media Source Extensions (hls.js) gives it a
//! `blob:` URL of a `MediaSource` made in the page, never a remote one.
//!
//! The player, hls.js, comes from npm (`server/web/package-lock.json`,
//! installed by `scripts/install-deps.sh`) and is embedded when it was
//! there at build time (`server/build.rs`); see docs/SERVER.md for why.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The Content-Security-Policy of every answer.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self'; media-src 'self' blob:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The page's files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("app.js", JS, include_bytes!("../../web/app.js")),
    ("api.js", JS, include_bytes!("../../web/api.js")),
    ("i18n.js", JS, include_bytes!("../../web/i18n.js")),
    ("pages.js", JS, include_bytes!("../../web/pages.js")),
    ("timeline.js", JS, include_bytes!("../../web/timeline.js")),
    ("player.js", JS, include_bytes!("../../web/player.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/style.css"),
    ),
];

const JS: &str = "text/javascript; charset=utf-8";

/// hls.js as npm ships it, if it was installed at build time.
#[cfg(hls_vendored)]
const HLS: Option<&[u8]> = Some(include_bytes!(env!("FIELDSEAL_HLS_MJS")));
#[cfg(not(hls_vendored))]
const HLS: Option<&[u8]> = None;

/// Whether hls.js is embedded.
pub fn player_embedded() -> bool {
    HLS.is_some()
}

/// The page (`/`): one HTML document; the rest is `/web/…`.
pub async fn index() -> Response {
    file(
        "text/html; charset=utf-8",
        include_bytes!("../../web/index.html"),
    )
}

/// One of the page's files, `/web/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    if name == "hls.mjs" {
        return match HLS {
            Some(b) => file(JS, b),
            None => {
                super::ApiError::not_found("hls.js was not installed when this server was built")
                    .into_response()
            }
        };
    }
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, ct, b)) => file(ct, b),
        None => super::ApiError::not_found("no such file").into_response(),
    }
}

fn file(content_type: &'static str, bytes: &'static [u8]) -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type),
            // Asked again each time (cheap, embedded): a new server's page
            // is never mixed with an old one's scripts.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response()
}

/// Add the security headers to an answer that lacks them: the CSP above,
/// no MIME sniffing, no referrer, no framing.
pub async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (k, v) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    }
    r
}
