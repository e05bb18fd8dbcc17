//! `GET|POST /v1/postbacks/{network}`: network postbacks through their adapters. A 2xx
//! answer's body is exactly `OK` (Digistore24 requires it; the others accept it).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::adapters::{Outcome, PostbackRequest};
use crate::app::{ApiError, AppState};
use crate::quarantine::Refused;

pub async fn postback(
    State(state): State<Arc<AppState>>,
    Path(network): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(adapter) = state.adapters.get(network.as_str()).cloned() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_network",
            "network",
            format!("no adapter for {network:?} is configured (clickbank, digistore24, buygoods and s2s each need their secret)"),
        )
        .into_response();
    };
    let route = format!("/v1/postbacks/{}", adapter.network());
    let query = query.unwrap_or_default();
    let request = PostbackRequest {
        method: method.as_str(),
        query: &query,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body: &body,
        received_at: Utc::now(),
    };
    let result = match adapter.parse(&request) {
        Ok(Outcome::Nothing) => Ok(()),
        Ok(Outcome::Events(events)) => super::produce(&state, &route, events).await,
        Err(refusal) => {
            let refused = Refused {
                route: &route,
                method: request.method,
                received_at: request.received_at,
                content_type: request.content_type,
                query: Some(&query).filter(|q| !q.is_empty()).map(String::as_str),
                body: &body,
            };
            state
                .metrics
                .events
                .with_label_values(&[&route, "rejected"])
                .inc();
            match state
                .quarantine
                .keep(&refused, refusal.reason, refusal.errors.clone())
                .await
            {
                Ok(()) => Err(ApiError {
                    status: StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST),
                    reason: refusal.reason,
                    errors: refusal.errors,
                }),
                Err(e) => Err(ApiError::unavailable(&e)),
            }
        }
    };
    match result {
        Ok(()) => (StatusCode::OK, "OK").into_response(),
        Err(e) => e.into_response(),
    }
}
