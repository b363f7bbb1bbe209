//! Errors of the HTTP API as JSON: `{"error": CODE, "field": NAME?, "message": TEXT}`
//! with the status a client can act on. A request the server cannot parse
//! names the field; nothing here ever answers 500 for bad input, and no
//! internal detail (paths, index errors) reaches the body.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// A stable code (`unauthenticated`, `forbidden`, `not-found`, `invalid`, …).
    pub code: &'static str,
    /// The request field it is about, if one.
    pub field: Option<String>,
    /// For people.
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code.
    error: &'static str,
    /// The request field it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// For people.
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            field: None,
            message: message.into(),
        }
    }

    /// 401: no session, or an expired one.
    pub fn unauthenticated() -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "log in first")
    }

    /// 403: the role may not do this.
    pub fn forbidden(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("your role may not {what}"),
        )
    }

    /// 404.
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", what)
    }

    /// 400 about one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
        }
    }

    /// 409: the request conflicts with what exists.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 429 with the seconds to wait.
    pub fn too_many(wait_secs: i64) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-attempts",
            format!("too many failed logins; try again in {wait_secs} s"),
        )
    }

    /// 500: something on our side. The detail goes to the log, not the client.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!("http: {e}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            field: self.field,
            message: self.message,
        };
        (self.status, axum::Json(body)).into_response()
    }
}

/// The field named in a serde error message (`unknown field `x``, `missing
/// field `y``, or a path `a.b: …` from serde_path_to_error).
fn field_of(msg: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `"] {
        if let Some(i) = msg.find(marker) {
            let rest = &msg[i + marker.len()..];
            return rest.split('`').next().map(str::to_owned);
        }
    }
    // axum's text: "Failed to deserialize …: PATH: what is wrong".
    let rest = msg
        .split_once("target type: ")
        .or_else(|| msg.split_once("query string: "))
        // A value serde_json calls malformed ("kind: expected value" for
        // an enum given a number) is still about that field.
        .or_else(|| msg.split_once("as JSON: "))
        .map_or(msg, |(_, r)| r);
    let (path, _) = rest.split_once(": ")?;
    (!path.is_empty() && !path.contains(' ')).then(|| path.to_owned())
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let text = r.body_text();
        let status = r.status();
        let code = match r {
            JsonRejection::MissingJsonContentType(_) => "unsupported-media-type",
            JsonRejection::BytesRejection(_) => "body-too-large-or-unreadable",
            _ => "invalid",
        };
        ApiError {
            status: if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_REQUEST
            },
            code,
            field: field_of(&text),
            message: text,
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        let text = r.body_text();
        ApiError {
            field: field_of(&text),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid", text)
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        use axum::extract::path::ErrorKind;
        let PathRejection::FailedToDeserializePathParams(e) = r else {
            // Missing parameters: a route and its handler disagree (our bug).
            return ApiError::internal(r.body_text());
        };
        // Our own messages: axum's repeat the value, which may be 10 kB.
        let (field, why) = match e.into_kind() {
            ErrorKind::InvalidUtf8InPathParam { key } => (key, "not UTF-8 once percent-decoded"),
            ErrorKind::ParseErrorAtKey { key, .. } | ErrorKind::DeserializeError { key, .. } => {
                (key, "malformed")
            }
            other => return ApiError::internal(other),
        };
        ApiError::invalid(field, why)
    }
}

/// axum's `Path`, refusing as an [`ApiError`] that names the parameter
/// (axum's own refusal is plain text): a segment that is not UTF-8 once
/// percent-decoded is a 400 like any other bad id.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(v) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Path(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_in_serde_messages() {
        assert_eq!(
            field_of("Failed to deserialize the JSON body into the target type: unknown field `colour`, expected one of `a`").as_deref(),
            Some("colour")
        );
        assert_eq!(
            field_of("missing field `number` at line 1").as_deref(),
            Some("number")
        );
        assert_eq!(
            field_of("Failed to deserialize the JSON body into the target type: activities[0].end_us: invalid type").as_deref(),
            Some("activities[0].end_us")
        );
        assert_eq!(
            field_of("Failed to deserialize query string: from: invalid digit found in string")
                .as_deref(),
            Some("from")
        );
        assert_eq!(
            field_of(
                "Failed to parse the request body as JSON: kind: expected value at line 1 column 9"
            )
            .as_deref(),
            Some("kind")
        );
        assert_eq!(
            field_of(
                "Failed to parse the request body as JSON: key must be a string at line 1 column 2"
            ),
            None
        );
        assert_eq!(field_of("no field here"), None);
    }
}
