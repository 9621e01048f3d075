//! [`ApiError`]: every way an API request fails, as one status code and a JSON body
//! `{"error": "<code>", "message": "<for humans>"}`. Codes are bounded snake_case strings that
//! clients may match on; messages may change.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::auth::Access;
use crate::cluster::model::ObjectRef;

/// The JSON body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The bounded error code, e.g. `invalid_token`.
    pub error: String,
    pub message: String,
}

/// An API request that failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("an Authorization: Bearer <token> header is required")]
    MissingToken,
    #[error("the bearer token was not accepted")]
    InvalidToken,
    #[error("{user} may not {access}")]
    Forbidden { user: String, access: Access },
    #[error("too many requests; retry in {}s", retry_after_seconds(*retry_after))]
    RateLimited { retry_after: Duration },
    #[error("the request did not finish within {}", probe_spec::format_duration(*.0))]
    RequestTimeout(Duration),
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the query string is invalid: {0}")]
    InvalidQuery(String),
    #[error("source pod {0} not found")]
    SourceNotFound(ObjectRef),
    #[error("destination pod {0} not found")]
    DestinationNotFound(ObjectRef),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("source pod {pod} runs on {}, not on this node ({this_node}); ask the agent on that node", pod_node.as_deref().unwrap_or("no node yet"))]
    SourceNotOnThisNode {
        pod: ObjectRef,
        pod_node: Option<String>,
        this_node: String,
    },
    #[error("source pod {pod} cannot be probed from: {why}")]
    SourceNotProbeable { pod: ObjectRef, why: String },
    #[error("destination pod {pod} cannot be probed: {why}")]
    DestinationNotProbeable { pod: ObjectRef, why: String },
    #[error("destination pod {pod} declares no {protocol} port named {port:?}")]
    PortNotDeclared {
        pod: ObjectRef,
        port: String,
        protocol: String,
    },
    #[error("{0}")]
    TargetNotAllowed(String),
    #[error("too many probes in flight; retry shortly")]
    Overloaded,
    #[error("cannot check the caller with the Kubernetes API: {0}")]
    AuthUnavailable(String),
    #[error("the probe could not run: {0}")]
    ProbeUnavailable(String),
    #[error("the probe did not finish within {}", probe_spec::format_duration(*.0))]
    ProbeTimeout(Duration),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MissingToken | ApiError::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidRequest(_) | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::SourceNotFound(_)
            | ApiError::DestinationNotFound(_)
            | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::SourceNotOnThisNode { .. }
            | ApiError::SourceNotProbeable { .. }
            | ApiError::DestinationNotProbeable { .. } => StatusCode::CONFLICT,
            ApiError::PortNotDeclared { .. } | ApiError::TargetNotAllowed(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Overloaded | ApiError::AuthUnavailable(_) | ApiError::ProbeUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::ProbeTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The bounded code in the JSON body (also usable as a metric label).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingToken => "missing_token",
            ApiError::InvalidToken => "invalid_token",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::RequestTimeout(_) => "request_timeout",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::SourceNotFound(_) => "source_not_found",
            ApiError::DestinationNotFound(_) => "destination_not_found",
            ApiError::RouteNotFound(_) => "not_found",
            ApiError::SourceNotOnThisNode { .. } => "source_not_on_this_node",
            ApiError::SourceNotProbeable { .. } => "source_not_probeable",
            ApiError::DestinationNotProbeable { .. } => "destination_not_probeable",
            ApiError::PortNotDeclared { .. } => "port_not_declared",
            ApiError::TargetNotAllowed(_) => "target_not_allowed",
            ApiError::Overloaded => "overloaded",
            ApiError::AuthUnavailable(_) => "auth_unavailable",
            ApiError::ProbeUnavailable(_) => "probe_unavailable",
            ApiError::ProbeTimeout(_) => "probe_timeout",
            ApiError::Internal(_) => "internal",
        }
    }

    /// When the client may retry, for a `Retry-After` header.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { retry_after } => Some(*retry_after),
            ApiError::Overloaded => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// Whole seconds for `Retry-After`, rounded up and at least 1.
fn retry_after_seconds(retry_after: Duration) -> u64 {
    retry_after.as_secs_f64().ceil().max(1.0) as u64
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.code().to_string(),
            message: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(retry_after) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_seconds(retry_after)),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
