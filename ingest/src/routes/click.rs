//! `GET /c/{offer_id}`: mints a click ID, records a CLICK, sets a first-party cookie and
//! redirects to the offer.
//!
//! The visitor always gets the redirect quickly: ingest waits at most the click wait
//! (`INGEST_CLICK_WAIT_MS`, 150 ms) for Kafka; after that the click is fsynced to the local
//! spool, which re-produces it until Kafka confirms. Only when the spool cannot be written
//! either is the answer 503, because then the click could be lost.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use schemas::{
    conversion_key, ConsentState, EventCodec, EventName, PlatformIds, RawPii, TrackingEvent,
    FIRST_PARTY,
};

use crate::app::{ApiError, AppState};
use crate::client_ip::ClientIp;
use crate::quarantine::Refused;

pub const ROUTE: &str = "/c/{offer_id}";
/// The first-party cookie holding the click ID.
pub const COOKIE: &str = "tl_click";
const COOKIE_MAX_AGE_SECONDS: u32 = 90 * 24 * 3600;

/// The CLICK a redirect records, from the query string's attribution parameters.
fn click_event(
    offer_id: &str,
    click_id: &str,
    query: &HashMap<String, String>,
    user_agent: Option<&str>,
) -> TrackingEvent {
    let now = Utc::now();
    let mut e = TrackingEvent::new(click_id, EventName::Click, now, now, FIRST_PARTY, ROUTE);
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| query.get(*n))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    e.click_id = Some(click_id.to_owned());
    e.offer_id = Some(offer_id.to_owned());
    e.affiliate_id = get(&["affiliate_id", "aff_id"]);
    e.campaign_id = get(&["campaign_id"]);
    e.source = get(&["source"]);
    e.placement = get(&["placement"]);
    e.utm_source = get(&["utm_source"]);
    e.utm_medium = get(&["utm_medium"]);
    e.utm_campaign = get(&["utm_campaign"]);
    e.utm_term = get(&["utm_term"]);
    e.utm_content = get(&["utm_content"]);
    e.sub1 = get(&["sub1"]);
    e.sub2 = get(&["sub2"]);
    e.sub3 = get(&["sub3"]);
    e.sub4 = get(&["sub4"]);
    e.sub5 = get(&["sub5"]);
    // An ad platform's ID that is not a URL-safe token is left out (and noted), not
    // allowed to send the whole click to quarantine.
    let mut ids = PlatformIds::default();
    for name in ["gclid", "gbraid", "wbraid", "fbclid", "ttclid", "msclkid"] {
        let Some(value) = get(&[name]) else { continue };
        if !schemas::matching::valid_platform_id(&value) {
            e.data_minimization.push(format!("{name}:invalid_dropped"));
            continue;
        }
        match name {
            "fbclid" => ids.fbc = Some(schemas::matching::fbc(&value, now.timestamp_millis())),
            _ => *ids.slot(name).expect("a platform field") = Some(value),
        }
    }
    e.platform_ids = (!ids.is_empty()).then_some(ids);
    e.consent_state = get(&["consent"])
        .and_then(|c| c.to_ascii_uppercase().parse().ok())
        .unwrap_or(ConsentState::Unknown);
    e.user_agent = user_agent.map(|ua| {
        ua.chars()
            .take(schemas::validate::MAX_USER_AGENT_LEN)
            .collect()
    });
    e
}

pub async fn click(
    State(state): State<Arc<AppState>>,
    Path(offer_id): Path<String>,
    RawQuery(raw_query): RawQuery,
    Extension(ClientIp(client)): Extension<ClientIp>,
    headers: HeaderMap,
) -> Response {
    match handle(
        &state,
        &offer_id,
        raw_query.as_deref().unwrap_or(""),
        client,
        &headers,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &AppState,
    offer_id: &str,
    raw_query: &str,
    client: IpAddr,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let landing = state.offers.landing(offer_id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_offer",
            "offer_id",
            format!("no offer {offer_id:?} is configured"),
        )
    })?;
    let query: HashMap<String, String> = serde_urlencoded::from_str(raw_query).unwrap_or_default();
    let click_id = uuid::Uuid::now_v7().simple().to_string();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let mut event = click_event(offer_id, &click_id, &query, user_agent);
    let location = schemas::offers::landing_url(landing, &event);

    if let Err(errors) = schemas::validate(&event) {
        // The visitor still gets the offer; the click is kept in quarantine for replay.
        let refused = Refused::new(ROUTE, "GET", event.received_at, None, Some(raw_query), b"");
        state
            .quarantine
            .keep(&refused, "validation", errors.0)
            .await
            .map_err(|e| ApiError::unavailable(&e))?;
    } else {
        state
            .quality
            .assess(&mut event, Some(client), &state.metrics);
        state.hasher.minimise(
            &mut event,
            RawPii {
                ip: Some(client),
                ..RawPii::default()
            },
        );
        let payload = state.codec.encode(&event).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding",
                "<event>",
                e.to_string(),
            )
        })?;
        let key = conversion_key(&event);
        let confirmed = tokio::time::timeout(
            state.config.click_wait(),
            state
                .producer
                .send(&state.config.events_topic, &key, &payload),
        )
        .await;
        match confirmed {
            Ok(Ok(())) => state
                .metrics
                .events
                .with_label_values(&[ROUTE, "accepted"])
                .inc(),
            Ok(Err(_)) | Err(_) => {
                state.spool.append(&state.config.events_topic, &key, &payload).await.map_err(|e| {
                    tracing::error!(error = %e, "cannot spool a click that Kafka did not confirm");
                    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "<kafka>", "Kafka is slow and the click spool cannot take the click")
                })?;
                state.metrics.spool_bytes.set(state.spool.bytes() as i64);
                state.metrics.clicks_spooled.inc();
                state
                    .metrics
                    .events
                    .with_label_values(&[ROUTE, "spooled"])
                    .inc();
            }
        }
    }

    let secure = if state.config.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE}={click_id}; Path=/; Max-Age={COOKIE_MAX_AGE_SECONDS}; HttpOnly; SameSite=Lax{secure}");
    let mut response = StatusCode::FOUND.into_response();
    let h = response.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "bad_offer_url",
                "url",
                "not a valid header value",
            )
        })?,
    );
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("ASCII cookie"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_landing_urls_platform_ids_are_captured_and_bad_ones_noted() {
        let query: HashMap<String, String> = [
            ("gclid", "Cj0KCQiA-abc_123"),
            ("fbclid", "IwAR2xyz"),
            ("ttclid", "bad id"),
            ("msclkid", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let e = click_event("keto-vsl", "c1", &query, None);
        let ids = e.platform_ids.clone().unwrap();
        assert_eq!(ids.gclid.as_deref(), Some("Cj0KCQiA-abc_123"));
        assert_eq!(
            ids.fbc,
            Some(format!(
                "fb.1.{}.IwAR2xyz",
                e.received_at.timestamp_millis()
            ))
        );
        assert_eq!((ids.ttclid, ids.msclkid), (None, None));
        assert_eq!(e.data_minimization, ["ttclid:invalid_dropped"]);
        schemas::validate(&e).unwrap();
        let bare = click_event("keto-vsl", "c2", &HashMap::new(), None);
        assert_eq!(bare.platform_ids, None);
    }
}
