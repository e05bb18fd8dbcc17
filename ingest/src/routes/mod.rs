//! HTTP handlers, one module per surface.

pub mod click;
pub mod events;
pub mod postbacks;

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use schemas::{conversion_key, EventCodec, RawPii, TrackingEvent};

use crate::app::{ApiError, AppState};

/// Ready when the Kafka producer reaches the broker and sees the events topic.
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.producer.ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "kafka unreachable")
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// Hashes or drops personal data, encodes and produces accepted events, and resolves once
/// Kafka has durably accepted all of them.
pub(crate) async fn produce(
    state: &AppState,
    route: &str,
    events: Vec<(TrackingEvent, RawPii)>,
) -> Result<(), ApiError> {
    let mut messages = Vec::with_capacity(events.len());
    for (mut event, pii) in events {
        state.quality.assess(&mut event, pii.ip, &state.metrics);
        state.hasher.minimise(&mut event, pii);
        let payload = state.codec.encode(&event).map_err(|e| {
            tracing::error!(error = %e, event_id = %event.event_id, "a validated event did not encode");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "encoding", "<event>", e.to_string())
        })?;
        messages.push((conversion_key(&event), payload));
    }
    let count = messages.len() as u64;
    if let Err(e) = state
        .producer
        .send_batch(&state.config.events_topic, &messages)
        .await
    {
        state
            .metrics
            .produce_errors
            .with_label_values(&[e.kind()])
            .inc();
        return Err(ApiError::unavailable(&e));
    }
    state
        .metrics
        .events
        .with_label_values(&[route, "accepted"])
        .inc_by(count);
    Ok(())
}
