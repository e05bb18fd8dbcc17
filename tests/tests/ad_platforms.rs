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
use std::time::Duration;

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
    (tests::serve_locally(app).await, seen)
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
    tests::until("TikTok saw the sale twice", || {
        seen.tiktok
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == "tt-good")
            .count()
            >= 2
    })
    .await;
    tests::until("GA4 saw the purchase and the refund", || {
        seen.ga4.lock().unwrap().len() >= 2
    })
    .await;
    tests::until("the bad token is dead-lettered", || {
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

/// (operation, the Authorization, developer-token and login-customer-id headers, body) of
/// one Google Ads request.
type ApiCall = (String, [String; 3], Value);

/// What the local Google endpoints saw.
#[derive(Clone, Default)]
struct Google {
    /// The token endpoint's form fields, one map per exchange.
    token_requests: Arc<Mutex<Vec<std::collections::HashMap<String, String>>>>,
    api: Arc<Mutex<Vec<ApiCall>>>,
}

async fn google_receiver() -> (String, Google) {
    use axum::extract::{Form, Path};
    let seen = Google::default();
    let app = Router::new()
        .route(
            "/token",
            post(
                |State(seen): State<Google>,
                 Form(form): Form<std::collections::HashMap<String, String>>| async move {
                    let mut all = seen.token_requests.lock().unwrap();
                    all.push(form);
                    Json(json!({
                        "access_token": format!("at-{}", all.len()),
                        "expires_in": 3599, "token_type": "Bearer"
                    }))
                },
            ),
        )
        .route(
            "/v21/customers/{operation}",
            post(
                |State(seen): State<Google>,
                 Path(operation): Path<String>,
                 headers: HeaderMap,
                 Json(body): Json<Value>| async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let checked = [
                        header("authorization"),
                        header("developer-token"),
                        header("login-customer-id"),
                    ];
                    let bearer = checked[0].clone();
                    seen.api
                        .lock()
                        .unwrap()
                        .push((operation, checked, body.clone()));
                    if bearer == "Bearer at-1" {
                        // The first token has "expired".
                        return (
                            axum::http::StatusCode::UNAUTHORIZED,
                            Json(json!({"error": {"code": 401, "status": "UNAUTHENTICATED",
                                "message": "Request had invalid authentication credentials."}})),
                        );
                    }
                    let gclid = body["conversions"][0]["gclid"].as_str().unwrap_or_default();
                    let answer = match gclid {
                        "gclid-already" => json!({"results": [{}], "partialFailureError": {
                            "code": 3, "message": "Conversion already exists.",
                            "details": [{"errors": [{"errorCode": {"conversionUploadError": "CLICK_CONVERSION_ALREADY_EXISTS"}}]}]}}),
                        "gclid-unknown" => json!({"results": [{}], "partialFailureError": {
                            "code": 3, "message": "The click was not found.",
                            "details": [{"errors": [{"errorCode": {"conversionUploadError": "CLICK_NOT_FOUND"}}]}]}}),
                        _ => json!({"results": [{"gclid": gclid}]}),
                    };
                    (axum::http::StatusCode::OK, Json(answer))
                },
            ),
        )
        .with_state(seen.clone());
    (tests::serve_locally(app).await, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn google_ads_uploads_by_click_id_refreshes_its_token_and_adjusts_refunds() {
    let (base, seen) = google_receiver().await;
    std::env::set_var("TL_TEST_GADS_DEV", "dev-token-1");
    std::env::set_var("TL_TEST_GADS_SECRET", "client-s3cret");
    std::env::set_var("TL_TEST_GADS_REFRESH", "1//refresh-token");
    let destinations = format!(
        r#"
[[destination]]
name = "google-ads"
kind = "google_ads"
url = "{base}/v21"
events = ["SALE", "REFUND"]
backoff_initial_ms = 200

[destination.google_ads]
customer_id = "1234567890"
conversion_action_id = "987654"
login_customer_id = "1112223334"
developer_token_env = "TL_TEST_GADS_DEV"
oauth_client_id = "cid.apps.googleusercontent.com"
oauth_client_secret_env = "TL_TEST_GADS_SECRET"
oauth_refresh_token_env = "TL_TEST_GADS_REFRESH"
oauth_token_url = "{base}/token"
"#
    );
    let topics = ProcessorTopics::create("google_ads").await;
    let pipeline = Pipeline::start_with(topics, database("google_ads"), &destinations, &|_| {
        Vec::new()
    })
    .await;
    let ingest = pipeline.ingest.base_url.clone();
    let run = tests::unique_name("ga");
    let at = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp() - 60, 0).unwrap();
    let occurred = at.to_rfc3339();
    let google_time = at.format("%Y-%m-%d %H:%M:%S+00:00").to_string();
    let sale = |suffix: &str, gclid: &str| {
        json!({
            "event_id": format!("{run}-{suffix}"), "event_name": "SALE", "occurred_at": &occurred,
            "order_id": format!("{run}-ord-{suffix}"), "revenue": "120.00", "currency": "USD",
            "consent_state": "GRANTED", "email": "Person@Example.com", "gclid": gclid
        })
    };
    tests::post_event(&ingest, sale("a", "gclid-good")).await;
    // Wait for the first upload, so that its 401 and refresh come before the others.
    tests::until("the first upload", || !seen.api.lock().unwrap().is_empty()).await;
    tests::post_event(&ingest, sale("b", "gclid-already")).await;
    tests::post_event(&ingest, sale("c", "gclid-unknown")).await;
    // A sale without a Google click ID is not routed to Google Ads at all.
    tests::post_event(
        &ingest,
        sale("d", "x")
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.remove("gclid");
                Value::Object(o)
            })
            .unwrap(),
    )
    .await;
    tests::post_event(
        &ingest,
        json!({"event_id": format!("{run}-refund"), "event_name": "REFUND", "occurred_at": &occurred,
               "order_id": format!("{run}-ord-a"), "revenue": "120.00", "currency": "USD"}),
    )
    .await;

    tests::until("the unknown click is dead-lettered", || {
        tests::forwarder::dead_letters(&pipeline.topics)
            .iter()
            .any(|(d, _)| d == "google-ads")
    })
    .await;
    tests::until("Google Ads saw the three sales and the refund", || {
        let api = seen.api.lock().unwrap();
        let ok = |op: &str| {
            api.iter()
                .filter(|(o, c, _)| o.ends_with(op) && c[0] == "Bearer at-2")
                .count()
        };
        ok("uploadClickConversions") >= 3 && ok("uploadConversionAdjustments") >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Two token exchanges, each with Google's documented form fields.
    let tokens = seen.token_requests.lock().unwrap().clone();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    for form in &tokens {
        assert_eq!(form["grant_type"], "refresh_token");
        assert_eq!(form["refresh_token"], "1//refresh-token");
        assert_eq!(form["client_id"], "cid.apps.googleusercontent.com");
        assert_eq!(form["client_secret"], "client-s3cret");
    }
    let api = seen.api.lock().unwrap().clone();
    for (_, checked, _) in &api {
        assert_eq!(checked[1], "dev-token-1");
        assert_eq!(checked[2], "1112223334");
    }
    // The first upload was refused with the first token, then sent again with the second.
    let first: Vec<&ApiCall> = api
        .iter()
        .filter(|(_, _, b)| b["conversions"][0]["gclid"] == "gclid-good")
        .collect();
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0].1[0], "Bearer at-1");
    assert_eq!(first[1].1[0], "Bearer at-2");
    assert_eq!(first[1].0, "1234567890:uploadClickConversions");
    assert_eq!(
        first[1].2,
        json!({"partialFailure": true, "conversions": [{
            "conversionAction": "customers/1234567890/conversionActions/987654",
            "conversionDateTime": google_time,
            "consent": {"adUserData": "GRANTED"},
            "gclid": "gclid-good", "conversionValue": 120, "currencyCode": "USD",
            "orderId": format!("{run}-ord-a"),
            "userIdentifiers": [{"hashedEmail": EM}]
        }]})
    );
    // Already there: delivered, sent once. Unknown click: dead-lettered with Google's words.
    let sent = |gclid: &str| {
        api.iter()
            .filter(|(_, _, b)| b["conversions"][0]["gclid"] == gclid)
            .count()
    };
    assert_eq!(sent("gclid-already"), 1);
    assert_eq!(sent("gclid-unknown"), 1);
    assert_eq!(sent("x"), 0);
    assert_eq!(
        api.iter()
            .filter(|(o, _, _)| o.ends_with("uploadClickConversions"))
            .count(),
        4
    );
    let letters = tests::forwarder::dead_letters(&pipeline.topics);
    let google: Vec<&(String, String)> =
        letters.iter().filter(|(d, _)| d == "google-ads").collect();
    assert_eq!(google.len(), 1, "{letters:?}");
    assert!(
        google[0].1.contains("The click was not found."),
        "{:?}",
        google[0]
    );
    assert!(!google[0].1.contains("s3cret") && !google[0].1.contains("refresh-token"));
    // The refund retracts the first sale's conversion, by its order ID.
    let adjustment = api
        .iter()
        .find(|(o, _, _)| o.ends_with("uploadConversionAdjustments"))
        .unwrap();
    assert_eq!(
        adjustment.2,
        json!({"partialFailure": true, "conversionAdjustments": [{
            "conversionAction": "customers/1234567890/conversionActions/987654",
            "orderId": format!("{run}-ord-a"),
            "adjustmentDateTime": google_time,
            "adjustmentType": "RETRACTION"
        }]})
    );
    pipeline.stop().await;
}
