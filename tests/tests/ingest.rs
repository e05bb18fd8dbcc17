//! Every ingest route against the real broker: the happy path and each kind of rejection,
//! with what lands on `tracking.events.v1` and `tracking.quarantine.v1` checked.

use std::collections::BTreeMap;
use std::time::Duration;

use ingest::adapters::clickbank::encrypt_notification;
use ingest::adapters::digistore24::sign;
use reqwest::StatusCode;
use schemas::{
    conversion_key, postback_event_id, topics, EventCodec, EventName, QuarantineKey,
    QuarantineRecord, SingleObjectCodec, TrackingEvent,
};
use serde_json::{json, Value};
use tests::{scan_topic, secrets, unique_name, IngestServer};

const WAIT: Duration = Duration::from_secs(20);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The events with these IDs on the events topic, with their keys, decoded.
fn events_with_ids(server: &IngestServer, ids: &[&str]) -> Vec<(String, TrackingEvent)> {
    let codec = SingleObjectCodec::new();
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    scan_topic(
        topics::EVENTS,
        Some(&server.marks[topics::EVENTS]),
        ids.len(),
        WAIT,
        |f| {
            codec
                .decode(&f.payload)
                .is_ok_and(|e| ids.contains(&e.event_id))
        },
    )
    .into_iter()
    .map(|f| {
        (
            String::from_utf8(f.key.unwrap()).unwrap(),
            codec.decode(&f.payload).unwrap(),
        )
    })
    .collect()
}

/// Quarantine records whose raw body contains `marker`.
fn quarantined_with(server: &IngestServer, marker: &str, want: usize) -> Vec<QuarantineRecord> {
    let decode = |payload: &[u8]| serde_json::from_slice::<QuarantineRecord>(payload).ok();
    let key = QuarantineKey::new(secrets::QUARANTINE_KEY).unwrap();
    let body_has = |r: &QuarantineRecord| {
        let request = key.open(r).unwrap();
        String::from_utf8_lossy(&request.body).contains(marker)
            || request.query.as_deref().is_some_and(|q| q.contains(marker))
    };
    scan_topic(
        topics::QUARANTINE,
        Some(&server.marks[topics::QUARANTINE]),
        want,
        WAIT,
        |f| decode(&f.payload).is_some_and(|r| body_has(&r)),
    )
    .into_iter()
    .map(|f| decode(&f.payload).unwrap())
    .collect()
}

async fn post_events(
    server: &IngestServer,
    body: String,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = client()
        .post(format!("{}/v1/events", server.base_url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_first_party_sale_is_produced_keyed_and_minimised() {
    let server = IngestServer::start(&[]).await;
    let id = unique_name("sale");
    let order = unique_name("ord");
    let body = json!({
        "event_id": id, "event_name": "SALE", "order_id": order, "revenue": "49.99", "payout": "20",
        "currency": "USD", "click_id": "clk_1", "email": "Buyer@Example.com", "ip": "203.0.113.9",
        "consent_state": "GRANTED", "occurred_at": "2026-11-23T10:00:00+01:00"
    });
    let (status, answer) = post_events(&server, body.to_string(), Some(secrets::API_KEY)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["results"][0]["status"], "accepted");

    let found = events_with_ids(&server, &[&id]);
    assert_eq!(found.len(), 1);
    let (key, event) = &found[0];
    assert_eq!(key, &conversion_key(event));
    assert_eq!(key, &format!("first_party/order/{order}"));
    assert_eq!(event.revenue, Some("49.99".parse().unwrap()));
    assert_eq!(event.occurred_at.to_rfc3339(), "2026-11-23T09:00:00+00:00");
    assert_eq!(event.route, "/v1/events");
    let hasher = schemas::privacy::PiiHasher::new(secrets::PII_KEY.as_bytes());
    assert_eq!(event.email_hash, Some(hasher.hash("buyer@example.com")));
    assert_eq!(event.ip_hash, Some(hasher.hash("203.0.113.9")));
    // Granted consent allows ad use: the platforms' plain SHA-256 too
    // (`printf %s buyer@example.com | sha256sum`).
    assert_eq!(
        event.data_minimization,
        ["ip:hashed", "email:hashed", "email:platform_hashed"]
    );
    assert_eq!(
        event
            .match_keys
            .as_ref()
            .and_then(|k| k.email_sha256.as_deref()),
        Some("6a6c26195c3682faa816966af789717c3bfa834eee6c599d667d2b3429c27cfd")
    );
    server.stop().await;
}

#[tokio::test]
async fn no_raw_personal_data_reaches_kafka() {
    let server = IngestServer::start(&[]).await;
    let id = unique_name("lead");
    let email = format!("{}@private.example", unique_name("person"));
    let body = json!({"event_id": id, "event_name": "LEAD", "lead_id": unique_name("l"), "email": email, "ip": "198.51.100.77"});
    assert_eq!(
        post_events(&server, body.to_string(), Some(secrets::API_KEY))
            .await
            .0,
        StatusCode::OK
    );
    let codec = SingleObjectCodec::new();
    let raw = scan_topic(
        topics::EVENTS,
        Some(&server.marks[topics::EVENTS]),
        1,
        WAIT,
        |f| codec.decode(&f.payload).is_ok_and(|e| e.event_id == id),
    );
    assert_eq!(raw.len(), 1);
    let bytes = String::from_utf8_lossy(&raw[0].payload).to_string();
    assert!(!bytes.contains(&email) && !bytes.contains("198.51.100.77"));
    server.stop().await;
}

#[tokio::test]
async fn denied_consent_drops_personal_data() {
    let server = IngestServer::start(&[]).await;
    let id = unique_name("lead");
    let body = json!({"event_id": id, "event_name": "LEAD", "lead_id": "l-1", "click_id": "clk_2", "email": "a@b.example",
        "ip": "198.51.100.1", "user_agent": "Mozilla/5.0", "consent_state": "DENIED"});
    assert_eq!(
        post_events(&server, body.to_string(), Some(secrets::API_KEY))
            .await
            .0,
        StatusCode::OK
    );
    let (_, e) = events_with_ids(&server, &[&id]).remove(0);
    assert_eq!((e.email_hash, e.ip_hash, e.user_agent), (None, None, None));
    assert_eq!(e.click_id.as_deref(), Some("clk_2"));
    assert_eq!(
        e.data_minimization,
        ["ip:dropped", "email:dropped", "user_agent:dropped"]
    );
    server.stop().await;
}

#[tokio::test]
async fn missing_or_wrong_api_keys_get_401() {
    let server = IngestServer::start(&[]).await;
    let body = json!({"event_id": "x", "event_name": "CLICK", "click_id": "c"}).to_string();
    assert_eq!(
        post_events(&server, body.clone(), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, answer) = post_events(&server, body.clone(), Some("not-a-known-key")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Missing and wrong keys are one answer: it does not say which.
    assert_eq!(answer, json!({"error": "unauthorized", "errors": []}));
    assert_eq!(post_events(&server, body, None).await.1, answer);
    server.stop().await;
}

#[tokio::test]
async fn malformed_json_is_400_and_quarantined() {
    let server = IngestServer::start(&[]).await;
    let marker = unique_name("broken");
    let (status, answer) = post_events(
        &server,
        format!("{{\"event_id\": \"{marker}\", "),
        Some(secrets::API_KEY),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "malformed_json");
    let kept = quarantined_with(&server, &marker, 1);
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].reason.as_str(), kept[0].route.as_str()),
        ("malformed_json", "/v1/events")
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_events_are_rejected_per_field_and_quarantined() {
    let server = IngestServer::start(&[]).await;
    let marker = unique_name("noid");
    let body =
        json!({"event_name": "SALE", "order_id": marker, "revenue": "-5", "currency": "usd"});
    let (status, answer) = post_events(&server, body.to_string(), Some(secrets::API_KEY)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = answer["results"][0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["event_id", "revenue", "currency"]);
    let kept = quarantined_with(&server, &marker, 1);
    assert_eq!(kept[0].reason, "validation");
    assert_eq!(
        kept[0]
            .errors
            .iter()
            .map(|e| e.field.as_str())
            .collect::<Vec<_>>(),
        fields
    );
    server.stop().await;
}

#[tokio::test]
async fn a_mixed_batch_answers_per_event() {
    let server = IngestServer::start(&[]).await;
    let (a, b, bad) = (unique_name("a"), unique_name("b"), unique_name("bad"));
    let body = json!({"events": [
        {"event_id": a, "event_name": "CLICK", "click_id": "c-a"},
        {"event_id": bad, "event_name": "PURCHASE", "order_id": "o"},
        {"event_id": b, "event_name": "LEAD", "lead_id": "l-b"},
    ]});
    let (status, answer) = post_events(&server, body.to_string(), Some(secrets::API_KEY)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(answer["results"][1]["status"], "rejected");
    assert_eq!(answer["results"][1]["errors"][0]["field"], "event_name");
    assert_eq!(events_with_ids(&server, &[&a, &b]).len(), 2);
    assert_eq!(quarantined_with(&server, &bad, 1).len(), 1);
    server.stop().await;
}

#[tokio::test]
async fn oversize_bodies_and_batches_get_413() {
    let server = IngestServer::start(&[]).await;
    let huge = format!("{{\"event_id\": \"{}\"}}", "x".repeat(1024 * 1024 + 10));
    assert_eq!(
        post_events(&server, huge, Some(secrets::API_KEY)).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let events: Vec<Value> = (0..1001)
        .map(|i| json!({"event_id": format!("e{i}"), "event_name": "CLICK", "click_id": "c"}))
        .collect();
    let (status, answer) = post_events(
        &server,
        json!({"events": events}).to_string(),
        Some(secrets::API_KEY),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"], "batch_too_large");
    server.stop().await;
}

#[tokio::test]
async fn a_click_redirects_with_a_cookie_and_is_recorded() {
    let server = IngestServer::start(&[]).await;
    let sub1 = unique_name("adset");
    let resp = client()
        .get(format!(
            "{}/c/keto-vsl?aff_id=aff-7&sub1={sub1}&sub2=a%20b&utm_source=fb",
            server.base_url
        ))
        .header("user-agent", "TestBrowser/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    let click_id = cookie
        .strip_prefix("tl_click=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(click_id.len(), 32);
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let location = resp.headers()["location"].to_str().unwrap();
    assert_eq!(
        location,
        format!(
            "https://offers.example/keto?cid={click_id}&aff=aff%2D7&s1={}&s2=a%20b",
            sub1.replace('_', "%5F")
        )
    );

    // A redirect does not wait for Kafka past the click wait (the click may be spooled), so
    // the click arrives eventually rather than before the answer.
    let deadline = std::time::Instant::now() + WAIT;
    let (key, click) = loop {
        if let Some(found) = events_with_ids(&server, &[&click_id]).pop() {
            break found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the click never reached Kafka"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(key, format!("click/{click_id}"));
    assert_eq!(click.event_name, EventName::Click);
    assert_eq!(
        (
            click.offer_id.as_deref(),
            click.affiliate_id.as_deref(),
            click.sub1.as_deref()
        ),
        (Some("keto-vsl"), Some("aff-7"), Some(sub1.as_str()))
    );
    assert_eq!(click.user_agent.as_deref(), Some("TestBrowser/1.0"));
    assert_eq!(
        click.ip_hash,
        Some(schemas::privacy::PiiHasher::new(secrets::PII_KEY.as_bytes()).hash("127.0.0.1"))
    );

    let unknown = client()
        .get(format!("{}/c/no-such-offer", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

fn clickbank_notice(receipt: &str, tx_type: &str) -> Value {
    json!({
        "transactionTime": "2026-11-20T01:30:00-08:00", "receipt": receipt, "transactionType": tx_type,
        "vendor": "ketovsl", "affiliate": "aff12", "role": "VENDOR", "totalAccountAmount": 30.5,
        "currency": "USD", "attemptCount": 1, "version": 8.0, "clickId": "clk_cb",
        "customer": {"billing": {"email": "cb-buyer@example.com"}}
    })
}

#[tokio::test]
async fn clickbank_ins_is_decrypted_mapped_and_bad_keys_quarantined() {
    let server = IngestServer::start(&[]).await;
    let receipt = unique_name("CB").to_uppercase();
    let body = encrypt_notification(
        secrets::CLICKBANK,
        clickbank_notice(&receipt, "SALE").to_string().as_bytes(),
        [5; 16],
    );
    let url = format!("{}/v1/postbacks/clickbank", server.base_url);
    let resp = client()
        .post(&url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), "OK");
    // The network retries: same notification again, same event ID.
    assert_eq!(
        client()
            .post(&url)
            .body(body)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let id = postback_event_id("clickbank", &receipt, "SALE", None).to_string();
    let found = events_with_ids(&server, &[&id, &id]);
    assert_eq!(
        found.len(),
        2,
        "both deliveries reach Kafka; the processor dedups them"
    );
    let (key, e) = &found[0];
    assert_eq!(key, &format!("clickbank/order/{receipt}"));
    assert_eq!(
        (e.network.as_str(), e.payout),
        ("clickbank", Some("30.5".parse().unwrap()))
    );
    assert!(e.email_hash.is_some() && e.data_minimization.contains(&"email:hashed".to_owned()));

    let wrong = encrypt_notification(
        "SOMEOTHERSECRET",
        clickbank_notice(&receipt, "RFND").to_string().as_bytes(),
        [6; 16],
    );
    let resp = client()
        .post(&url)
        .body(wrong.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer, json!({"error": "unauthorized", "errors": []}));
    let notification = serde_json::from_str::<Value>(&wrong).unwrap()["notification"]
        .as_str()
        .unwrap()
        .to_owned();
    let kept = quarantined_with(&server, &notification, 1);
    assert_eq!(
        (kept[0].reason.as_str(), kept[0].route.as_str()),
        ("decryption_failed", "/v1/postbacks/clickbank")
    );
    server.stop().await;
}

fn ds24_fields(order: &str, tx: &str, event: &str) -> BTreeMap<String, String> {
    [
        ("event", event),
        ("order_id", order),
        ("transaction_id", tx),
        ("amount_brutto", "59.00"),
        ("amount_affiliate", "29.50"),
        ("currency", "EUR"),
        ("affiliate_name", "aff12"),
        ("cid", "clk_ds"),
        ("pay_sequence_no", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn post_form(url: &str, fields: &BTreeMap<String, String>) -> (StatusCode, String) {
    let resp = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded_string(fields))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

fn serde_urlencoded_string(fields: &BTreeMap<String, String>) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn digistore24_checks_the_signature_and_answers_ok() {
    let server = IngestServer::start(&[]).await;
    let url = format!("{}/v1/postbacks/digistore24", server.base_url);
    let (order, tx) = (unique_name("DS"), unique_name("T"));

    let mut good = ds24_fields(&order, &tx, "on_payment");
    good.insert("sha_sign".into(), sign(&good, secrets::DIGISTORE24));
    assert_eq!(
        post_form(&url, &good).await,
        (StatusCode::OK, "OK".to_owned())
    );
    let id = postback_event_id("digistore24", &tx, "on_payment", None).to_string();
    let (key, e) = events_with_ids(&server, &[&id]).remove(0);
    assert_eq!(key, format!("digistore24/order/{order}"));
    assert_eq!(
        (e.event_name, e.revenue),
        (EventName::Sale, Some("59.00".parse().unwrap()))
    );

    let wrong_tx = unique_name("T");
    let mut wrong = ds24_fields(&order, &wrong_tx, "on_refund");
    wrong.insert("sha_sign".into(), sign(&wrong, "not-the-passphrase"));
    let (status, wrong_body) = post_form(&url, &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_body, r#"{"error":"unauthorized","errors":[]}"#);

    let missing_tx = unique_name("T");
    let (status, body) = post_form(&url, &ds24_fields(&order, &missing_tx, "on_refund")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body, wrong_body,
        "missing and wrong signatures answer alike"
    );

    let kept_wrong = quarantined_with(&server, &wrong_tx, 1);
    assert_eq!(kept_wrong[0].reason, "bad_signature");
    let kept_missing = quarantined_with(&server, &missing_tx, 1);
    assert_eq!(kept_missing[0].reason, "missing_signature");
    for refund_tx in [&wrong_tx, &missing_tx] {
        let refund_id = postback_event_id("digistore24", refund_tx, "on_refund", None).to_string();
        assert!(
            events_with_ids(&server, &[&refund_id]).is_empty(),
            "a refused refund must not reach the events topic"
        );
    }

    let mut test = BTreeMap::new();
    test.insert("event".to_owned(), "connection_test".to_owned());
    test.insert("sha_sign".to_owned(), sign(&test, secrets::DIGISTORE24));
    assert_eq!(
        post_form(&url, &test).await,
        (StatusCode::OK, "OK".to_owned())
    );
    server.stop().await;
}

#[tokio::test]
async fn buygoods_and_s2s_authenticate_with_their_tokens() {
    let server = IngestServer::start(&[]).await;
    let order = unique_name("BG");
    let bg = format!(
        "{}/v1/postbacks/buygoods?token={}&order_id={order}&action_type=neworder&aff_commission=12.5&total_amount_charged=39&currency=USD&rr_createdate=2026-11-20+09:30:00",
        server.base_url,
        secrets::BUYGOODS
    );
    assert_eq!(
        client().get(&bg).send().await.unwrap().status(),
        StatusCode::OK
    );
    let bad_bg = bg.replace(secrets::BUYGOODS, "wrong-token");
    assert_eq!(
        client().get(&bad_bg).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let tx = unique_name("TX");
    let s2s = format!(
        "{}/v1/postbacks/s2s?click_id=clk_s&event=SALE&txid={tx}&amount=10&currency=USD&token={}",
        server.base_url,
        secrets::S2S_TOKEN
    );
    assert_eq!(
        client().get(&s2s).send().await.unwrap().status(),
        StatusCode::OK
    );
    let no_token = s2s.replace(&format!("&token={}", secrets::S2S_TOKEN), "");
    assert_eq!(
        client().get(&no_token).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    let bg_id = postback_event_id("buygoods", &order, "neworder", None).to_string();
    let s2s_id = postback_event_id("s2s_tracker-a", &tx, "SALE", None).to_string();
    let found = events_with_ids(&server, &[&bg_id, &s2s_id]);
    assert_eq!(found.len(), 2);
    assert_eq!(quarantined_with(&server, &order, 1)[0].reason, "bad_token");
    assert_eq!(quarantined_with(&server, &tx, 1)[0].reason, "missing_token");

    let unknown = client()
        .get(format!("{}/v1/postbacks/nosuchnetwork", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn health_and_metrics_are_served() {
    let server = IngestServer::start(&[]).await;
    let get = |path: &str| client().get(format!("{}{path}", server.base_url)).send();
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);
    let body =
        json!({"event_id": unique_name("m"), "event_name": "CLICK", "click_id": "c"}).to_string();
    post_events(&server, body, Some(secrets::API_KEY)).await;
    let unknown = get("/no/such/path").await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"], "not_found");
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("ingest_requests_total{route=\"<unmatched>\",status=\"404\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ingest_requests_total{route=\"/v1/events\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("ingest_ack_seconds_bucket{route=\"/v1/events\""));
    assert!(metrics.contains("ingest_events_total{outcome=\"accepted\",route=\"/v1/events\"} 1"));
    server.stop().await;
}

async fn raw_connection(server: &IngestServer) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(server.base_url.trim_start_matches("http://"))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = IngestServer::start(&["--header-timeout-ms=300"]).await;
    let mut conn = raw_connection(&server).await;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a half-sent request open for 5 s"
    );
    server.stop().await;
}

#[tokio::test]
async fn overload_beyond_the_in_flight_limit_gets_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = IngestServer::start(&["--max-in-flight=1"]).await;
    // The first request holds the only slot: its handler waits for a body that never comes.
    let mut slow = raw_connection(&server).await;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        secrets::API_KEY
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let resp = client()
        .get(format!("{}/healthz", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["error"], "overloaded");
    drop(slow);
    let mut drained = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_millis(100),
        raw_connection(&server).await.read_to_end(&mut drained),
    )
    .await;
    server.stop().await;
}
