//! `POST /v1/events`: first-party events, one JSON object or `{"events": [...]}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use schemas::parse_event_json;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::app::{ApiError, AppState};
use crate::quarantine::Refused;

pub const ROUTE: &str = "/v1/events";

fn authorised(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Authorization",
                "Bearer API key required",
            )
        })?;
    let known = state.config.api_keys.iter().fold(false, |found, key| {
        found | bool::from(key.as_bytes().ct_eq(presented.as_bytes()))
    });
    if known {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization",
            "unknown API key",
        ))
    }
}

pub async fn post_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match handle(&state, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorised(state, headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "<body>",
                format!("larger than {} bytes", state.config.max_body_bytes),
            )
        } else {
            ApiError::new(e.status(), "unreadable_body", "<body>", e.body_text())
        }
    })?;
    let received_at = Utc::now();
    let refused = Refused {
        route: ROUTE,
        method: "POST",
        received_at,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        query: None,
        body: &body,
    };
    let refuse = |error: ApiError| async {
        state
            .quarantine
            .keep(&refused, error.reason, error.errors.clone())
            .await
            .map_err(|e| ApiError::unavailable(&e))?;
        Err::<Response, _>(error)
    };

    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return refuse(ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                "<body>",
                e.to_string(),
            ))
            .await
        }
    };
    let items: Vec<Value> = match value {
        Value::Object(mut obj) if obj.contains_key("events") => match obj.remove("events") {
            Some(Value::Array(items)) if obj.is_empty() => items,
            _ => {
                return refuse(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_batch",
                    "events",
                    "a batch is exactly {\"events\": [...]}",
                ))
                .await
            }
        },
        single => vec![single],
    };
    if items.len() > state.config.max_batch_events {
        let detail = format!(
            "{} events, at most {} in one request",
            items.len(),
            state.config.max_batch_events
        );
        return refuse(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            "events",
            detail,
        ))
        .await;
    }

    let mut results = Vec::with_capacity(items.len());
    let mut accepted = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let event_id = item
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        match parse_event_json(item, received_at, ROUTE) {
            Ok(parsed) => {
                results.push(json!({"index": index, "event_id": event_id, "status": "accepted"}));
                accepted.push(parsed);
            }
            Err(errors) => {
                let one = serde_json::to_vec(item).unwrap_or_default();
                let refused_item = Refused {
                    body: &one,
                    ..refused
                };
                state
                    .quarantine
                    .keep(&refused_item, "validation", errors.0.clone())
                    .await
                    .map_err(|e| ApiError::unavailable(&e))?;
                state
                    .metrics
                    .events
                    .with_label_values(&[ROUTE, "rejected"])
                    .inc();
                results.push(json!({"index": index, "event_id": event_id, "status": "rejected", "errors": errors.0}));
            }
        }
    }
    let (n_accepted, n_rejected) = (accepted.len(), items.len() - accepted.len());
    super::produce(state, ROUTE, accepted).await?;
    let status = if n_accepted == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut body = json!({"accepted": n_accepted, "rejected": n_rejected, "results": results});
    if n_accepted == 0 {
        body["error"] = json!("validation");
    }
    Ok((status, Json(body)).into_response())
}
