//! `POST /v1/events`: first-party events, one JSON object or `{"events": [...]}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use futures::future::join_all;
use std::borrow::Cow;

use schemas::input::parse_event_str;
use schemas::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::app::{ApiError, AppState};
use crate::quarantine::Refused;

pub const ROUTE: &str = "/v1/events";

/// Checks the bearer API key. A missing, malformed or unknown key is one and the same
/// `401 unauthorized`; every configured key is compared, in constant time.
pub(crate) fn authorised(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let known = presented.is_some_and(|presented| {
        state.config.api_keys.iter().fold(false, |found, key| {
            found | crate::adapters::same_secret(presented, key)
        })
    });
    if known {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
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
    let refused = Refused::new(
        ROUTE,
        "POST",
        received_at,
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        None,
        &body,
    );
    let refuse = |error: ApiError| async {
        state
            .quarantine
            .keep(&refused, error.reason, error.errors.clone())
            .await
            .map_err(|e| ApiError::unavailable(&e))?;
        Err::<Response, _>(error)
    };

    let items = match split_items(&body) {
        Ok(items) => items,
        Err(error) => return refuse(error).await,
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
    let mut accepted = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let parsed = parse_event_str(item.get(), received_at, ROUTE)
            .map_err(|errors| ("validation", errors.0))
            .and_then(|parsed| match state.ceilings.check(&parsed.0) {
                Ok(()) => Ok(parsed),
                Err(errors) => Err((crate::amounts::REASON, errors)),
            });
        match parsed {
            Ok(parsed) => {
                results.push(ItemResult {
                    index,
                    event_id: Some(parsed.0.event_id.clone()),
                    status: "accepted",
                    reason: None,
                    errors: None,
                });
                accepted.push(parsed);
            }
            Err((reason, errors)) => {
                let event_id = serde_json::from_str::<IdProbe>(item.get())
                    .ok()
                    .and_then(|p| p.event_id);
                results.push(ItemResult {
                    index,
                    event_id,
                    status: "rejected",
                    reason: Some(reason),
                    errors: Some(errors.clone()),
                });
                let body = item.get().as_bytes();
                rejected.push((Refused { body, ..refused }, reason, errors));
            }
        }
    }
    // Every rejected event is kept before the answer, all at once rather than one Kafka
    // round trip after another.
    let keeps =
        rejected
            .into_iter()
            .map(|(item, reason, errors)| async move {
                state.quarantine.keep(&item, reason, errors).await
            });
    for kept in join_all(keeps).await {
        kept.map_err(|e| ApiError::unavailable(&e))?;
    }
    state
        .metrics
        .events
        .with_label_values(&[ROUTE, "rejected"])
        .inc_by((items.len() - accepted.len()) as u64);
    let (n_accepted, n_rejected) = (accepted.len(), items.len() - accepted.len());
    super::produce(state, ROUTE, accepted).await?;
    let status = if n_accepted == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    // A request refused whole names its refusal: the one reason its events share.
    let first_reason = results.iter().find_map(|r| r.reason);
    let one_reason = results
        .iter()
        .all(|r| r.reason.is_none() || r.reason == first_reason);
    let answer = Answer {
        error: (n_accepted == 0)
            .then(|| first_reason.filter(|_| one_reason).unwrap_or("validation")),
        accepted: n_accepted,
        rejected: n_rejected,
        results,
    };
    Ok((status, Json(answer)).into_response())
}

/// The events of a body, as slices of it: the body itself, or each element of a batch
/// `{"events": [...]}`. A batch is read in one pass; each event is parsed once, later.
fn split_items(body: &[u8]) -> Result<Vec<&RawValue>, ApiError> {
    let malformed = |e: serde_json::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "<body>",
            e.to_string(),
        )
    };
    let malformed_batch = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_batch",
            "events",
            "a batch is exactly {\"events\": [...]}",
        )
    };
    let looks_like_batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && body.windows(8).any(|w| w == b"\"events\"");
    if looks_like_batch {
        let mut de = serde_json::Deserializer::from_slice(body);
        match serde::Deserializer::deserialize_map(&mut de, BatchVisitor)
            .and_then(|b| de.end().map(|()| b))
        {
            Ok(Some((items, 1))) => return Ok(items),
            Ok(Some(_)) => return Err(malformed_batch()),
            Ok(None) => {}
            Err(e) if e.is_data() => return Err(malformed_batch()),
            Err(e) => return Err(malformed(e)),
        }
    }
    let whole: &RawValue = serde_json::from_slice(body).map_err(malformed)?;
    Ok(vec![whole])
}

/// Reads an object's top level: the `events` array as raw slices (and how many keys the
/// object has), or `None` when there is no `events` key.
struct BatchVisitor;

impl<'de> serde::de::Visitor<'de> for BatchVisitor {
    type Value = Option<(Vec<&'de RawValue>, usize)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut events, mut keys) = (None, 0);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            keys += 1;
            if key == "events" {
                events = Some(map.next_value::<Vec<&'de RawValue>>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(events.map(|e| (e, keys)))
    }
}

/// The `event_id` of a rejected event, for the answer, if it had a string one.
#[derive(Deserialize)]
struct IdProbe {
    event_id: Option<String>,
}

#[derive(Serialize)]
struct ItemResult {
    index: usize,
    event_id: Option<String>,
    status: &'static str,
    /// Why a rejected event was: `validation` or `amount_out_of_range`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
}

#[derive(Serialize)]
struct Answer {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    accepted: usize,
    rejected: usize,
    results: Vec<ItemResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(body: &str) -> Result<Vec<String>, &'static str> {
        split_items(body.as_bytes())
            .map(|v| v.iter().map(|r| r.get().to_owned()).collect())
            .map_err(|e| e.reason)
    }

    #[test]
    fn single_events_and_batches_split_into_their_events() {
        assert_eq!(
            items(" \n {\"event_id\": \"a\"} ").unwrap(),
            ["{\"event_id\": \"a\"}"]
        );
        assert_eq!(
            items("{\"events\": [{\"a\":1}, {\"b\":2}]}").unwrap(),
            ["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(items("[1, 2]").unwrap(), ["[1, 2]"]);
        assert_eq!(items("{\"events\": []}").unwrap(), Vec::<String>::new());
        let nested = "{\"event_id\": \"a\", \"attributes\": {\"events\": \"x\"}}";
        assert_eq!(items(nested).unwrap(), [nested]);
    }

    #[test]
    fn malformed_bodies_and_batches_are_named() {
        assert_eq!(items("{\"events\": [").unwrap_err(), "malformed_json");
        assert_eq!(items("{\"events\": {}}").unwrap_err(), "malformed_batch");
        assert_eq!(
            items("{\"events\": [], \"extra\": 1}").unwrap_err(),
            "malformed_batch"
        );
    }
}
