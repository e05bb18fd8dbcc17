//! Conversions take their click's ad-platform IDs (issue #18 §3), end to end: a visitor lands
//! through the click redirect with a `gclid` and an `fbclid`, consenting; the network later
//! reports the sale by BuyGoods postback with only our click ID. Google Ads must get the
//! upload with the click's `gclid` (and the visitor's consent), Meta the click's `fbc`; the
//! refund, which names no click, follows its sale through the same stage and so never
//! overtakes it on the ledger. A click whose consent was denied keeps no IDs, so its sale
//! reaches Google with nothing to upload by and is not sent. Erasing a click erases its IDs.
//!
//! The receivers check the requests as Google and Meta document them; the expected IDs are
//! the ones put into the landing URL, not computed by the code under test.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, State};
use axum::routing::post;
use axum::{Json, Router};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use tests::pipeline::Pipeline;
use tests::processor::ProcessorTopics;
use tests::sink::database;

/// A ledger row, as the sink loaded it.
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Entry {
    order_id: String,
    event_name: String,
    consent_state: String,
    flags: Vec<String>,
    kafka_partition: i32,
    kafka_offset: i64,
}

/// (path, body) of every request to the Google Ads API and to Meta.
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

async fn receiver() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let app = Router::new()
        .route(
            "/token",
            post(|Form(form): Form<std::collections::HashMap<String, String>>| async move {
                assert_eq!(form["grant_type"], "refresh_token");
                Json(json!({"access_token": "at-1", "expires_in": 3599, "token_type": "Bearer"}))
            }),
        )
        .route(
            "/v21/customers/{operation}",
            post(
                |State(calls): State<Calls>, Path(op): Path<String>, Json(body): Json<Value>| async move {
                    calls.lock().unwrap().push((op, body));
                    Json(json!({"results": [{}]}))
                },
            ),
        )
        .route(
            "/v19.0/{pixel}/events",
            post(
                |State(calls): State<Calls>, Path(pixel): Path<String>, Json(body): Json<Value>| async move {
                    calls.lock().unwrap().push((format!("meta/{pixel}"), body));
                    Json(json!({"events_received": 1, "fbtrace_id": "x"}))
                },
            ),
        )
        .with_state(calls.clone());
    (tests::serve_locally(app).await, calls)
}

async fn buygoods(base: &str, query: &str) {
    let resp = reqwest::get(format!(
        "{base}/v1/postbacks/buygoods?token={}&{query}",
        tests::secrets::BUYGOODS
    ))
    .await
    .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// The click-ID stage's latest state record of `click` (`None` for a tombstone), waiting up
/// to 60 s for one that `done` accepts.
async fn click_state(
    topic: &str,
    click: &str,
    done: impl Fn(&Option<Value>) -> bool,
) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = tests::scan_topic(topic, None, usize::MAX, Duration::from_secs(10), |f| {
            f.key.as_deref() == Some(click.as_bytes())
        });
        let latest = found.last().map(|f| {
            (!f.payload.is_empty()).then(|| serde_json::from_slice::<Value>(&f.payload).unwrap())
        });
        if let Some(state) = latest.filter(|s| done(s)) {
            return state;
        }
        assert!(Instant::now() < deadline, "no state for click {click}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_network_sale_naming_our_click_reaches_google_ads_with_the_clicks_gclid() {
    let (base, calls) = receiver().await;
    std::env::set_var("TL_TEST_CI_DEV", "dev-token");
    std::env::set_var("TL_TEST_CI_SECRET", "client-secret");
    std::env::set_var("TL_TEST_CI_REFRESH", "1//refresh");
    std::env::set_var("TL_TEST_CI_META", "EAAB-token");
    let destinations = format!(
        r#"
[[destination]]
name = "google-ads"
kind = "google_ads"
url = "{base}/v21"
events = ["SALE", "REFUND"]

[destination.google_ads]
customer_id = "1234567890"
conversion_action_id = "987654"
developer_token_env = "TL_TEST_CI_DEV"
oauth_client_id = "cid.apps.googleusercontent.com"
oauth_client_secret_env = "TL_TEST_CI_SECRET"
oauth_refresh_token_env = "TL_TEST_CI_REFRESH"
oauth_token_url = "{base}/token"

[[destination]]
name = "meta"
kind = "meta_capi"
url = "{base}/v19.0/1111/events"
events = ["SALE"]
access_token_env = "TL_TEST_CI_META"
"#
    );
    let topics = ProcessorTopics::create("click_ids").await;
    let pipeline = Pipeline::start_with(topics, database("click_ids"), &destinations, &|_| {
        Vec::new()
    })
    .await;
    let ingest = pipeline.ingest.base_url.clone();
    let state_topic = pipeline.topics.click_ids_state.clone();
    let run = tests::unique_name("ci");

    let granted = tests::land(
        &ingest,
        "keto-vsl",
        "gclid=Cj0KCQ-landing-gclid&fbclid=IwAR-landing&consent=granted",
    )
    .await;
    let denied = tests::land(&ingest, "keto-vsl", "gclid=Cj0KCQ-denied&consent=denied").await;
    // The consenting click's IDs are kept, with its consent; before the sale is reported.
    let kept = click_state(&state_topic, &granted, Option::is_some)
        .await
        .unwrap();
    assert_eq!(kept["ids"]["gclid"], "Cj0KCQ-landing-gclid");
    assert!(kept["ids"]["fbc"]
        .as_str()
        .is_some_and(|f| f.starts_with("fb.1.") && f.ends_with(".IwAR-landing")));
    assert_eq!(kept["consent"], "GRANTED");

    let (order, other) = (format!("{run}-a"), format!("{run}-b"));
    buygoods(
        &ingest,
        &format!("order_id={order}&action_type=neworder&total_amount_charged=39.00&currency=USD&click_id={granted}"),
    )
    .await;
    buygoods(
        &ingest,
        &format!("order_id={other}&action_type=neworder&total_amount_charged=25.00&currency=USD&click_id={denied}"),
    )
    .await;
    // The refund names no click: it follows its sale through the click-ID stage.
    buygoods(
        &ingest,
        &format!("order_id={order}&action_type=refund&total_amount_charged=39.00&currency=USD"),
    )
    .await;

    tests::until(
        "Google's upload and adjustment, and Meta's two sales",
        || {
            let seen = calls.lock().unwrap();
            let count = |p: &str| seen.iter().filter(|(path, _)| path.ends_with(p)).count();
            count("uploadClickConversions") >= 1
                && count("uploadConversionAdjustments") >= 1
                && count("meta/1111") >= 2
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = calls.lock().unwrap().clone();

    // Google: one upload, the consenting click's gclid, under the consent given on the click.
    let uploads: Vec<&Value> = seen
        .iter()
        .filter(|(p, _)| p == "1234567890:uploadClickConversions")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(uploads.len(), 1, "{seen:?}");
    let upload = &uploads[0]["conversions"][0];
    assert_eq!(upload["gclid"], "Cj0KCQ-landing-gclid");
    assert_eq!(upload["orderId"], order.as_str());
    assert_eq!(upload["consent"], json!({"adUserData": "GRANTED"}));
    assert_eq!(upload["conversionValue"], 39);
    assert_eq!(upload["currencyCode"], "USD");
    let adjustment = seen
        .iter()
        .find(|(p, _)| p == "1234567890:uploadConversionAdjustments")
        .map(|(_, b)| &b["conversionAdjustments"][0])
        .unwrap();
    assert_eq!(adjustment["orderId"], order.as_str());
    assert_eq!(adjustment["adjustmentType"], "RETRACTION");

    // Meta: the click's fbc on the consenting sale only.
    let meta = |order: &str| {
        seen.iter()
            .find(|(p, b)| p == "meta/1111" && b["data"][0]["custom_data"]["order_id"] == order)
            .map(|(_, b)| b["data"][0]["user_data"].clone())
            .unwrap_or_else(|| panic!("no Meta event for {order}: {seen:?}"))
    };
    assert_eq!(meta(&order)["fbc"], kept["ids"]["fbc"]);
    assert!(meta(&other).get("fbc").is_none(), "{:?}", meta(&other));

    // The ledger: the sale and its refund took the click's IDs and consent, in order.
    let client = pipeline.clickhouse();
    let rows = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let rows: Vec<Entry> = client
                .query(
                    "SELECT assumeNotNull(order_id) AS order_id, event_name, consent_state, flags, kafka_partition, kafka_offset \
                     FROM ledger WHERE order_id IN (?, ?) ORDER BY kafka_offset",
                )
                .bind(&order)
                .bind(&other)
                .fetch_all()
                .await
                .unwrap_or_default();
            if rows.len() == 3 {
                break rows;
            }
            assert!(Instant::now() < deadline, "ledger rows: {rows:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let of = |order_id: &str, name: &str| {
        rows.iter()
            .find(|r| r.order_id == order_id && r.event_name == name)
            .unwrap_or_else(|| panic!("{order_id} {name}: {rows:?}"))
    };
    let (sale, refund) = (of(&order, "SALE"), of(&order, "REFUND"));
    for entry in [sale, refund] {
        assert_eq!(entry.consent_state, "GRANTED", "{entry:?}");
        assert_eq!(
            entry.flags,
            vec!["CLICK_IDS_INHERITED", "CONSENT_FROM_CLICK"],
            "{entry:?}"
        );
    }
    assert_eq!(
        sale.kafka_partition, refund.kafka_partition,
        "one conversion, one ledger partition"
    );
    assert!(
        sale.kafka_offset < refund.kafka_offset,
        "the refund never overtakes its sale"
    );
    let unmatched = of(&other, "SALE");
    assert_eq!(
        (unmatched.consent_state.as_str(), unmatched.flags.len()),
        ("UNKNOWN", 0)
    );

    let metrics = pipeline.processor.get("/metrics").unwrap();
    let outcome = |o: &str| {
        tests::metric(
            &metrics,
            "processor_click_ids_total",
            &format!("outcome=\"{o}\""),
        )
    };
    assert_eq!((outcome("inherited"), outcome("click_unknown")), (2.0, 1.0));

    // Erasing the click (trackctl erase's control record) erases its IDs: a tombstone.
    let producer: FutureProducer = tests::kafka().config(&[]).create().unwrap();
    let request = json!({"erasure_id": "e-1", "conversion_key": format!("click/{granted}"),
                         "event_ids": [granted.clone()]})
    .to_string();
    let key = format!("click/{granted}");
    producer
        .send(
            FutureRecord::to(&pipeline.topics.input)
                .key(&key)
                .payload(&request)
                .headers(OwnedHeaders::new().insert(Header {
                    key: schemas::erasure::CONTROL_HEADER,
                    value: Some(schemas::erasure::ERASE),
                })),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        click_state(&state_topic, &granted, Option::is_none).await,
        None
    );
    // The denied click never had IDs to keep.
    let never = tests::scan_topic(&state_topic, None, 1, Duration::from_secs(5), |f| {
        f.key.as_deref() == Some(denied.as_bytes())
    });
    assert!(never.is_empty());
    pipeline.stop().await;
}
