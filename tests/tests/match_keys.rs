//! Matchable identifiers end to end (issue #18 §1): a sale posted to ingest with an e-mail
//! and a phone reaches a Meta Conversions API receiver with `em` and `ph` exactly as Meta
//! documents them, only when its consent allows ad use; without that consent no platform
//! hash leaves the pipeline, and a destination that requires them never gets the event.
//! The click and browser IDs (`fbc` from the landing URL's `fbclid`, `fbp`) follow the
//! same consent.
//!
//! The expected digests are the vendors' published examples, not computed by the code under
//! test: `Person@Example.com` normalises to `person@example.com`, SHA-256 542d2401…; the
//! phone `+44 844 412 4653` to `448444124653`, SHA-256 dc008fda… (Snap's Conversions API
//! parameter table, whose rules for e-mail and phone are Meta's).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tests::pipeline::Pipeline;
use tests::processor::ProcessorTopics;
use tests::sink::database;

const EM: &str = "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345";
const PH: &str = "dc008fda46e2e64002cf2f82a4906236282d431c4f75e5b60bfe79fc48546383";
/// The same phone with its '+' (Google's and TikTok's form): never sent to Meta.
const PH_PLUS: &str = "11f9231a47ccfd680a60606f73702bc2c0fb065a7f55c482269e51d9f9e868ae";
const TOKEN_VAR: &str = "TL_TEST_META_TOKEN";
const TOKEN: &str = "EAAB-test-token";

/// (pixel id, content type, body) of every request Meta would have received.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

async fn meta_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let app = Router::new()
        .route(
            "/v19.0/{pixel}/events",
            post(
                |State(r): State<Received>,
                 Path(pixel): Path<String>,
                 headers: HeaderMap,
                 Json(body): Json<Value>| async move {
                    let content_type = headers
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    r.lock().unwrap().push((pixel, content_type, body));
                    Json(json!({"events_received": 1, "fbtrace_id": "AbCdEf"}))
                },
            ),
        )
        .with_state(received.clone());
    (tests::serve_locally(app).await, received)
}

fn sale(id: &str, consent: &str) -> Value {
    json!({
        "event_id": id, "event_name": "SALE", "occurred_at": chrono::Utc::now().to_rfc3339(),
        "order_id": format!("ord-{id}"), "offer_id": "keto-vsl", "click_id": format!("clk-{id}"),
        "revenue": "49.00", "currency": "USD", "consent_state": consent,
        "email": " Person@Example.com ", "phone": "+44 844 412 4653",
        "user_agent": "Mozilla/5.0 (test)",
        "fbclid": "IwAR2xyz", "fbp": "fb.1.1764000000000.42"
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn only_consented_sales_reach_meta_with_matchable_hashes() {
    let (meta, received) = meta_receiver().await;
    std::env::set_var(TOKEN_VAR, TOKEN);
    let destinations = format!(
        r#"
[[destination]]
name = "meta"
kind = "meta_capi"
url = "{meta}/v19.0/1111/events"
events = ["SALE"]
access_token_env = "{TOKEN_VAR}"

[[destination]]
name = "meta-matched-only"
kind = "meta_capi"
url = "{meta}/v19.0/2222/events"
events = ["SALE"]
access_token_env = "{TOKEN_VAR}"
require_match_keys = true
"#
    );
    let topics = ProcessorTopics::create("match_keys").await;
    let pipeline = Pipeline::start_with(topics, database("match_keys"), &destinations, &|_| {
        Vec::new()
    })
    .await;
    let base = pipeline.ingest.base_url.clone();
    let run = tests::unique_name("mk");
    let (granted, not_required, denied, unknown) = (
        format!("{run}-granted"),
        format!("{run}-not-required"),
        format!("{run}-denied"),
        format!("{run}-unknown"),
    );
    for (id, consent) in [
        (&granted, "GRANTED"),
        (&not_required, "NOT_REQUIRED"),
        (&denied, "DENIED"),
        (&unknown, "UNKNOWN"),
    ] {
        tests::post_event(&base, sale(id, consent)).await;
    }

    // Four sales to "meta", two to "meta-matched-only".
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.lock().unwrap().len() < 6 {
        assert!(
            Instant::now() < deadline,
            "Meta got {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing more arrives: the other two were never enqueued for the strict destination.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 6, "{received:?}");

    let event = |pixel: &str, id: &str| -> Option<Value> {
        received
            .iter()
            .find(|(p, _, b)| p == pixel && b["data"][0]["event_id"] == id)
            .map(|(_, content_type, body)| {
                assert_eq!(content_type, "application/json");
                assert_eq!(body["access_token"], TOKEN);
                body["data"][0].clone()
            })
    };
    for id in [&granted, &not_required] {
        for pixel in ["1111", "2222"] {
            let e = event(pixel, id).unwrap_or_else(|| panic!("{id} did not reach {pixel}"));
            assert_eq!(e["event_name"], "Purchase");
            assert_eq!(e["action_source"], "website");
            assert!(e["event_time"].is_i64(), "{e}");
            assert_eq!(e["user_data"]["em"], json!([EM]), "{e}");
            assert_eq!(e["user_data"]["ph"], json!([PH]), "{e}");
            // fbc in Meta's format, fb.1.<ms>.<fbclid>; fbp as the producer sent it.
            let fbc = e["user_data"]["fbc"].as_str().unwrap_or_default();
            assert!(
                fbc.starts_with("fb.1.") && fbc.ends_with(".IwAR2xyz"),
                "{e}"
            );
            assert_eq!(e["user_data"]["fbp"], "fb.1.1764000000000.42", "{e}");
            assert_eq!(e["custom_data"]["currency"], "USD");
            assert_eq!(
                e["custom_data"]["value"].as_f64(),
                Some(49.0),
                "a JSON number"
            );
        }
    }
    // DENIED: nothing personal at all. UNKNOWN: the keyed hash, which Meta cannot match,
    // and no platform hash.
    let e = event("1111", &denied).expect("the denied sale still reaches meta");
    assert_eq!(e["user_data"], json!({}), "{e}");
    let e = event("1111", &unknown).expect("the unknown-consent sale reaches meta");
    for field in ["em", "ph", "fbc", "fbp"] {
        assert!(e["user_data"].get(field).is_none(), "{e}");
    }
    assert_eq!(
        e["user_data"]["external_id"].as_array().map(Vec::len),
        Some(1),
        "{e}"
    );
    for id in [&denied, &unknown] {
        assert!(
            event("2222", id).is_none(),
            "{id} reached the strict destination"
        );
    }
    // On the wire, the platform hashes appear only in the consented sales, and the '+' form
    // (not Meta's) never.
    for (_, _, body) in &received {
        let text = body.to_string();
        let consented = [&granted, &not_required]
            .iter()
            .any(|id| body["data"][0]["event_id"] == id.as_str());
        assert_eq!(text.contains(EM), consented, "{text}");
        assert_eq!(text.contains(PH), consented, "{text}");
        assert!(!text.contains(PH_PLUS), "{text}");
        assert_eq!(text.contains("IwAR2xyz"), consented, "{text}");
        assert!(
            !text.to_lowercase().contains("person@example.com"),
            "{text}"
        );
        assert!(!text.contains("844 412"), "{text}");
    }
    pipeline.stop().await;
}
