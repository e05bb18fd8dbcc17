//! `GET|POST /v1/postbacks/{network}`: network postbacks through their adapters. A 2xx
//! answer's body is exactly `OK` (Digistore24 requires it; the others accept it).
//!
//! `GET|POST /v1/replay/postbacks/{network}`: the operator's replay of a quarantined
//! postback (`trackctl replay quarantine`), authenticated with an API key instead of the
//! network's token, which quarantine never keeps.
//!
//! A refusal before the request is authenticated is answered `401 unauthorized` whatever
//! the cause; the precise reason goes to quarantine and the log only.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use crate::adapters::{Outcome, PostbackAdapter, PostbackRequest, Replay, REPLAY_SOURCE_HEADER};
use crate::app::{ApiError, AppState};
use crate::quarantine::Refused;

/// Both routes: the network's own, and the operator's replay, which authenticates the API
/// key first and then lets the adapter take the operator's word for the redacted token.
pub async fn postback(
    State(state): State<Arc<AppState>>,
    route: MatchedPath,
    Path(network): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_replay = route.as_str().starts_with("/v1/replay/");
    let authorised = if is_replay {
        super::events::authorised(&state, &headers)
    } else {
        Ok(())
    };
    let adapter = match authorised.and_then(|()| adapter(&state, &network)) {
        Ok(adapter) => adapter,
        Err(e) => return e.into_response(),
    };
    let replay = is_replay.then(|| Replay {
        source: headers
            .get(REPLAY_SOURCE_HEADER)
            .and_then(|v| v.to_str().ok()),
    });
    handle(
        &state,
        adapter.as_ref(),
        &method,
        query,
        &headers,
        &body,
        replay,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response)
}

/// The configured adapter of `network`.
fn adapter(state: &AppState, network: &str) -> Result<Arc<dyn PostbackAdapter>, ApiError> {
    state.adapters.get(network).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_network",
            "network",
            format!("no adapter for {network:?} is configured (clickbank, digistore24, buygoods and s2s each need their secret)"),
        )
    })
}

async fn handle(
    state: &AppState,
    adapter: &dyn PostbackAdapter,
    method: &Method,
    query: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
    replay: Option<Replay<'_>>,
) -> Result<Response, ApiError> {
    let route = format!("/v1/postbacks/{}", adapter.network());
    let query = query.unwrap_or_default();
    let request = PostbackRequest {
        method: method.as_str(),
        query: &query,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body,
        received_at: Utc::now(),
        replay,
    };
    let refusal = match adapter.parse(&request) {
        Ok(Outcome::Nothing) => return Ok(ok()),
        Ok(Outcome::Events(events)) => {
            let over: Vec<_> = events
                .iter()
                .filter_map(|(e, _)| state.ceilings.check(e).err())
                .flatten()
                .collect();
            if over.is_empty() {
                super::produce(state, &route, events).await?;
                return Ok(ok());
            }
            ApiError::rejected(crate::amounts::REASON, over)
        }
        Err(refusal) => refusal,
    };
    let refusal = if adapter.opaque_refusals() {
        refusal.before_authentication()
    } else {
        refusal
    };
    if !refusal.authenticated {
        tracing::info!(
            route,
            reason = refusal.reason,
            "postback failed authentication"
        );
    }
    // Only a refusal after authentication names its source: an unauthenticated request's
    // token vouches for nothing.
    let s2s_source = refusal
        .authenticated
        .then(|| adapter.source_of(&request))
        .flatten();
    let refused = Refused {
        credentials: adapter.credentials(),
        s2s_source: s2s_source.as_deref(),
        ..Refused::new(
            &route,
            request.method,
            request.received_at,
            request.content_type,
            Some(query.as_str()).filter(|q| !q.is_empty()),
            body,
        )
    };
    state
        .metrics
        .events
        .with_label_values(&[&route, "rejected"])
        .inc();
    state
        .quarantine
        .keep(&refused, refusal.reason, refusal.errors.clone())
        .await
        .map_err(|e| ApiError::unavailable(&e))?;
    Err(refusal)
}

fn ok() -> Response {
    (StatusCode::OK, "OK").into_response()
}
