//! Ingest's one error type for its HTTP surface, from the adapters to the answer (as
//! PostHog's capture has one): a status, a machine-readable reason, field detail, and whether
//! the request had been authenticated.
//!
//! A failure before authentication answers one thing, byte for byte, whatever went wrong:
//! `401 {"error":"unauthorized","errors":[]}`. Its precise reason and detail are for the
//! quarantine record and the log only (docs/SECURITY.md).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemas::FieldError;
use serde_json::json;

use crate::producer::ProduceError;

/// How long clients are told to wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({status})")]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub errors: Vec<FieldError>,
    /// False for a failure before (or instead of) authentication.
    pub authenticated: bool,
}

/// Marks an answer to a failed authentication, for the failed-authentication limiter.
#[derive(Debug, Clone, Copy)]
pub struct AuthFailed;

impl ApiError {
    /// A refusal of an authenticated request.
    pub fn new(
        status: StatusCode,
        reason: &'static str,
        field: &str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            reason,
            errors: vec![FieldError::new(field, detail)],
            authenticated: true,
        }
    }

    /// A required field is absent (400 `missing_field`).
    pub fn missing(field: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "missing_field", field, "required")
    }

    /// A field's value cannot be read (400 `invalid_field`).
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_field", field, detail)
    }

    /// The contract's field errors (400 with `reason`).
    pub fn rejected(reason: &'static str, errors: Vec<FieldError>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            reason,
            errors,
            authenticated: true,
        }
    }

    /// A failure before (or instead of) authentication, with its precise reason.
    pub fn unauthenticated(reason: &'static str, field: &str, detail: impl Into<String>) -> Self {
        Self {
            authenticated: false,
            ..Self::new(StatusCode::UNAUTHORIZED, reason, field, detail)
        }
    }

    /// A missing, malformed or unknown API key.
    pub fn unauthorized() -> Self {
        Self::unauthenticated(
            "unauthorized",
            "Authorization",
            "a missing or unknown API key",
        )
    }

    /// The same refusal, answered as an authentication failure.
    pub fn before_authentication(self) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            authenticated: false,
            ..self
        }
    }

    /// Kafka did not durably accept: the sender must retry.
    pub fn unavailable(e: &ProduceError) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "<kafka>",
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if !self.authenticated {
            let mut response = (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized", "errors": []})),
            )
                .into_response();
            response.extensions_mut().insert(AuthFailed);
            return response;
        }
        let mut response = (
            self.status,
            Json(json!({"error": self.reason, "errors": self.errors})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, Vec<u8>, bool) {
        let response = e.into_response();
        let status = response.status();
        let marked = response.extensions().get::<AuthFailed>().is_some();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, bytes.to_vec(), marked)
    }

    #[tokio::test]
    async fn every_failure_before_authentication_is_one_answer() {
        let a = body(ApiError::unauthenticated("bad_token", "token", "no match")).await;
        let b = body(ApiError::invalid("receipt", "x").before_authentication()).await;
        assert_eq!(a, b);
        assert_eq!(
            a,
            (
                StatusCode::UNAUTHORIZED,
                br#"{"error":"unauthorized","errors":[]}"#.to_vec(),
                true
            )
        );
        let (status, bytes, marked) = body(ApiError::missing("order_id")).await;
        assert_eq!((status, marked), (StatusCode::BAD_REQUEST, false));
        assert!(String::from_utf8(bytes).unwrap().contains("\"order_id\""));
    }
}
