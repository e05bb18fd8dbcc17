//! The TikTok Events API and GA4 Measurement Protocol destinations end to end (issue #18 §2),
//! against a local receiver that checks each request as the vendors document it: TikTok's
//! `POST /open_api/v1.3/event/track/` with the `Access-Token` header and a 200 whose JSON
//! `code` says what happened; GA4's `POST /mp/collect?measurement_id=...&api_secret=...`
//! with a `client_id` and `purchase`/`refund` events.
//!
//! TikTok's first answer to the sale is its rate-limit code 40100 (with HTTP 200): the sale
//! must be retried and then delivered. A destination whose token TikTok refuses (code
//! 40105) must dead-letter at once, with TikTok's code as the reason.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tests::pipeline::Pipeline;
use tests::processor::ProcessorTopics;
use tests::sink::database;

const EM: &str = "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345";
/// `+448444124653`, TikTok's phone form (E.164 with its '+').
const PH_PLUS: &str = "11f9231a47ccfd680a60606f73702bc2c0fb065a7f55c482269e51d9f9e868ae";

#[derive(Clone, Default)]
struct Seen {
    /// (Access-Token, body) of every TikTok request.
    tiktok: Arc<Mutex<Vec<(String, Value)>>>,
    /// (query, body) of every GA4 request.
    ga4: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn receiver() -> (String, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/open_api/v1.3/event/track/",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    let token = headers
                        .get("access-token")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let mut all = seen.tiktok.lock().unwrap();
                    let earlier = all
                        .iter()
                        .filter(|(_, b)| b["data"][0]["event_id"] == body["data"][0]["event_id"])
                        .count();
                    all.push((token.clone(), body));
                    Json(match (token.as_str(), earlier) {
                        ("tt-bad", _) => json!({"code": 40105, "message": "Access token is invalid", "request_id": "r"}),
                        (_, 0) => json!({"code": 40100, "message": "Too many requests", "request_id": "r"}),
                        _ => json!({"code": 0, "message": "OK", "request_id": "r"}),
                    })
                },
            ),
        )
        .route(
            "/mp/collect",
            post(
                |State(seen): State<Seen>, RawQuery(query), Json(body): Json<Value>| async move {
                    seen.ga4
                        .lock()
                        .unwrap()
                        .push((query.unwrap_or_default(), body));
                    axum::http::StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tiktok_and_ga4_get_their_documented_requests_and_their_answers_are_judged() {
    let (base, seen) = receiver().await;
    std::env::set_var("TL_TEST_TIKTOK_TOKEN", "tt-good");
    std::env::set_var("TL_TEST_TIKTOK_BAD", "tt-bad");
    std::env::set_var("TL_TEST_GA4_SECRET", "ga4-s3cret");
    let destinations = format!(
        r#"
[[destination]]
name = "tiktok"
kind = "tiktok"
url = "{base}/open_api/v1.3/event/track/"
access_token_env = "TL_TEST_TIKTOK_TOKEN"
pixel_code = "C4TESTPIXEL"
events = ["SALE"]
backoff_initial_ms = 200

[[destination]]
name = "tiktok-bad-token"
kind = "tiktok"
url = "{base}/open_api/v1.3/event/track/"
access_token_env = "TL_TEST_TIKTOK_BAD"
pixel_code = "C4TESTPIXEL"
events = ["LEAD"]

[[destination]]
name = "ga4"
kind = "ga4"
url = "{base}/mp/collect?measurement_id=G-TEST123"
access_token_env = "TL_TEST_GA4_SECRET"
events = ["SALE", "REFUND"]
"#
    );
    let topics = ProcessorTopics::create("ad_platforms").await;
    let pipeline = Pipeline::start_with(topics, database("ad_platforms"), &destinations, &|_| {
        Vec::new()
    })
    .await;
    let ingest = pipeline.ingest.base_url.clone();
    let run = tests::unique_name("ap");
    // Whole seconds, recent (destinations drop what is older than max_age_hours).
    let at = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() - 60, 0).unwrap();
    let occurred = at.to_rfc3339();
    let visit = json!({
        "consent_state": "GRANTED", "email": "Person@Example.com", "phone": "+44 844 412 4653",
        "ttclid": "E.C.P.test-click", "ga_client_id": "1234567890.1764000000"
    });
    let with_visit = |mut event: Value| {
        for (k, v) in visit.as_object().unwrap() {
            event[k] = v.clone();
        }
        event
    };
    let sale_id = format!("{run}-sale");
    tests::post_event(
        &ingest,
        with_visit(json!({
            "event_id": sale_id, "event_name": "SALE", "occurred_at": &occurred,
            "order_id": format!("{run}-ord"), "revenue": "49.90", "currency": "EUR"
        })),
    )
    .await;
    tests::post_event(
        &ingest,
        with_visit(json!({
            "event_id": format!("{run}-refund"), "event_name": "REFUND", "occurred_at": &occurred,
            "order_id": format!("{run}-ord"), "revenue": "49.90", "currency": "EUR"
        })),
    )
    .await;
    // A lead without a GA4 client ID: TikTok's bad-token destination only.
    tests::post_event(
        &ingest,
        json!({"event_id": format!("{run}-lead"), "event_name": "LEAD", "occurred_at": &occurred,
               "lead_id": format!("{run}-l1"), "consent_state": "UNKNOWN"}),
    )
    .await;

    // TikTok: the sale refused once with its rate-limit code, then delivered.
    until("TikTok saw the sale twice", || {
        seen.tiktok
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == "tt-good")
            .count()
            >= 2
    })
    .await;
    until("GA4 saw the purchase and the refund", || {
        seen.ga4.lock().unwrap().len() >= 2
    })
    .await;
    until("the bad token is dead-lettered", || {
        tests::forwarder::dead_letters(&pipeline.topics)
            .iter()
            .any(|(d, _)| d == "tiktok-bad-token")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let tiktok = seen.tiktok.lock().unwrap().clone();
    let good: Vec<&Value> = tiktok
        .iter()
        .filter(|(t, _)| t == "tt-good")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(good.len(), 2, "retried once, then delivered: {good:?}");
    assert_eq!(good[0], good[1], "the retry is the same request");
    let body = good[0];
    assert_eq!(body["event_source"], "web");
    assert_eq!(body["event_source_id"], "C4TESTPIXEL");
    let event = &body["data"][0];
    assert_eq!(event["event"], "CompletePayment");
    assert_eq!(event["event_id"], sale_id.as_str());
    assert_eq!(event["event_time"], at.timestamp());
    assert_eq!(event["user"]["email"], EM);
    assert_eq!(event["user"]["phone"], PH_PLUS);
    assert_eq!(event["user"]["ttclid"], "E.C.P.test-click");
    assert_eq!(event["properties"]["value"], json!(49.9));
    assert_eq!(event["properties"]["currency"], "EUR");
    assert_eq!(event["properties"]["order_id"], format!("{run}-ord"));
    // The bad token: one request, not retried, and TikTok's reason in the DLQ.
    let bad: Vec<&Value> = tiktok
        .iter()
        .filter(|(t, _)| t == "tt-bad")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["data"][0]["event"], "SubmitForm");
    assert_eq!(
        bad[0]["data"][0]["user"],
        json!({}),
        "no consent: no identifiers"
    );
    let letters = tests::forwarder::dead_letters(&pipeline.topics);
    let reason = &letters
        .iter()
        .find(|(d, _)| d == "tiktok-bad-token")
        .unwrap()
        .1;
    assert!(
        reason.contains("TikTok code 40105: Access token is invalid"),
        "{reason}"
    );
    assert!(
        !reason.contains("tt-bad"),
        "the token never shows: {reason}"
    );

    // GA4: the purchase and the refund of the same transaction, the secret in the query.
    let ga4 = seen.ga4.lock().unwrap().clone();
    assert_eq!(ga4.len(), 2, "{ga4:?}");
    for (query, body) in &ga4 {
        assert_eq!(query, "measurement_id=G-TEST123&api_secret=ga4-s3cret");
        assert_eq!(body["client_id"], "1234567890.1764000000");
        assert_eq!(body["timestamp_micros"], at.timestamp() * 1_000_000);
        assert_eq!(
            body["consent"],
            json!({"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"})
        );
    }
    let events: Vec<Value> = ga4.iter().map(|(_, b)| b["events"][0].clone()).collect();
    for name in ["purchase", "refund"] {
        let e = events
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}: {events:?}"));
        assert_eq!(
            e["params"],
            json!({"transaction_id": format!("{run}-ord"), "value": 49.9, "currency": "EUR"})
        );
    }
    pipeline.stop().await;
}
