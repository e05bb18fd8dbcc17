//! Ingest as an attacker sees it, against the real service and broker: the ClickBank padding
//! oracle is closed, failed authentications are rate-limited per client, absurd amounts
//! are refused, silent or excess connections are closed, and no secret shows in `--help`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aes::cipher::{BlockDecrypt, KeyInit};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ingest::adapters::clickbank::encrypt_notification;
use reqwest::StatusCode;
use schemas::{topics, QuarantineKey, QuarantineRecord};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use tests::{scan_topic, secrets, unique_name, IngestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything an answer shows, but the `date` header, which only tells the time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    headers: BTreeMap<String, Vec<u8>>,
    body: Vec<u8>,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let body = response.bytes().await.unwrap().to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// AES-256 decryption of one block with ClickBank's key for `secret`, written here from
/// ClickBank's documentation rather than taken from ingest: the AES key is the first 32 hex
/// characters of SHA-1(secret), as ASCII.
fn decrypt_block(secret: &str, block: [u8; 16]) -> [u8; 16] {
    let hex: String = Sha1::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let cipher = aes::Aes256::new_from_slice(&hex.as_bytes()[..32]).unwrap();
    let mut b = aes::Block::from(block);
    cipher.decrypt_block(&mut b);
    b.into()
}

fn pkcs7_ok(plain: &[u8; 16]) -> bool {
    let pad = plain[15] as usize;
    (1..=16).contains(&pad) && plain[16 - pad..].iter().all(|b| *b as usize == pad)
}

#[tokio::test]
async fn a_padding_oracle_search_gets_no_signal() {
    let server = IngestServer::start(&["--auth-failures-per-minute=0"]).await;
    let url = format!("{}/v1/postbacks/clickbank", server.base_url);
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // CBC-R forges a notification block by block. Its first step takes a target ciphertext
    // block C and tries the 256 values of the last IV byte: with an oracle, the IVs for
    // which IV ^ D(C) ends in valid padding answer differently, which reveals D(C).
    let real = encrypt_notification(
        secrets::CLICKBANK,
        br#"{"receipt":"ORACLE-PROBE"}"#,
        [9; 16],
    );
    let envelope: Value = serde_json::from_str(&real).unwrap();
    let ciphertext = B64
        .decode(envelope["notification"].as_str().unwrap())
        .unwrap();
    let target: [u8; 16] = ciphertext[..16].try_into().unwrap();
    let intermediate = decrypt_block(secrets::CLICKBANK, target);
    // Byte 14 chosen so that 0x02 0x02 padding exists for one IV, besides the 0x01 endings.
    let mut iv = [0u8; 16];
    iv[14] = intermediate[14] ^ 0x02;

    let mut answers = Vec::with_capacity(256);
    let mut valid_padding = 0;
    let started = Instant::now();
    for guess in 0..=255u8 {
        iv[15] = guess;
        let plain: [u8; 16] = std::array::from_fn(|i| intermediate[i] ^ iv[i]);
        valid_padding += usize::from(pkcs7_ok(&plain));
        let body = json!({"notification": B64.encode(target), "iv": B64.encode(iv)}).to_string();
        answers.push((guess, answer(post(body).await.unwrap()).await));
    }
    let elapsed = started.elapsed();
    // The probe set holds what an oracle would have told apart: without a valid-padding
    // IV among them, identical answers would prove nothing.
    assert!(valid_padding >= 2, "{valid_padding} IVs with valid padding");
    let first = answers[0].1.clone();
    assert_eq!(first.status, 401);
    assert_eq!(first.body, br#"{"error":"unauthorized","errors":[]}"#);
    for (guess, a) in &answers {
        assert_eq!(a, &first, "IV byte {guess:#04x} answered differently");
    }

    // Every other way a body can fail answers the same, byte for byte.
    let mut no_receipt =
        json!({"transactionType": "SALE", "transactionTime": "2026-11-20T01:30:00-08:00"});
    let without_receipt = encrypt_notification(
        secrets::CLICKBANK,
        no_receipt.to_string().as_bytes(),
        [1; 16],
    );
    no_receipt["receipt"] = json!("R-1");
    let mut too_big = no_receipt.clone();
    too_big["currency"] = json!("USD");
    too_big["totalAccountAmount"] = json!(2_000_000);
    let over_ceiling =
        encrypt_notification(secrets::CLICKBANK, too_big.to_string().as_bytes(), [6; 16]);
    no_receipt["version"] = json!(4.0);
    let old_version = encrypt_notification(
        secrets::CLICKBANK,
        no_receipt.to_string().as_bytes(),
        [2; 16],
    );
    for body in [
        "not json".to_owned(),
        r#"{"notification":"***","iv":"AAAAAAAAAAAAAAAAAAAAAA=="}"#.to_owned(),
        json!({"notification": B64.encode(target), "iv": "AAAA"}).to_string(),
        json!({"iv": B64.encode(iv)}).to_string(),
        encrypt_notification(
            secrets::CLICKBANK,
            b"[1, 2, 3] is JSON, not a notification",
            [3; 16],
        ),
        encrypt_notification(secrets::CLICKBANK, b"plain text", [4; 16]),
        without_receipt,
        old_version,
        over_ceiling,
        encrypt_notification("ANOTHERSECRETKEY", br#"{"receipt":"R"}"#, [5; 16]),
    ] {
        assert_eq!(
            answer(post(body.clone()).await.unwrap()).await,
            first,
            "{body}"
        );
    }
    // The operator still sees why, in quarantine.
    let key = QuarantineKey::new(secrets::QUARANTINE_KEY).unwrap();
    let kept = scan_topic(
        topics::QUARANTINE,
        Some(&server.marks[topics::QUARANTINE]),
        266,
        Duration::from_secs(20),
        |f| {
            serde_json::from_slice::<QuarantineRecord>(&f.payload)
                .is_ok_and(|r| r.route == "/v1/postbacks/clickbank")
        },
    );
    let reasons: std::collections::BTreeSet<String> = kept
        .iter()
        .map(|f| serde_json::from_slice::<QuarantineRecord>(&f.payload).unwrap())
        .inspect(|r| assert!(key.open(r).is_ok()))
        .map(|r| r.reason)
        .collect();
    assert_eq!(kept.len(), 266);
    for reason in [
        "malformed",
        "invalid_field",
        "missing_field",
        "decryption_failed",
        "amount_out_of_range",
    ] {
        assert!(reasons.contains(reason), "{reason} not in {reasons:?}");
    }
    println!("256 oracle probes answered alike in {elapsed:?}");
    server.stop().await;
}

#[tokio::test]
async fn failed_authentications_are_limited_per_client_before_any_secret_is_used() {
    let server = IngestServer::start(&[
        "--auth-failures-per-minute=3",
        "--trusted-proxies=127.0.0.1",
    ])
    .await;
    let client = reqwest::Client::new();
    let events = format!("{}/v1/events", server.base_url);
    let lead = |key: &str, from: &str| {
        client
            .post(&events)
            .bearer_auth(key)
            .header("x-forwarded-for", from)
            .json(&json!({"event_id": unique_name("lim"), "event_name": "LEAD", "lead_id": "l-1"}))
            .send()
    };
    let attacker = "198.51.100.66";
    for _ in 0..4 {
        assert_eq!(
            lead("wrong-key-123", attacker).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Over the rate: 429 with Retry-After, even for the right key (no secret is compared).
    let limited = lead(secrets::API_KEY, attacker).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&retry_after),
        "3 a minute refills in 20 s: {retry_after}"
    );
    // A postback route counts and refuses the same client too.
    let bg = format!(
        "{}/v1/postbacks/buygoods?token={}&order_id=X&action_type=neworder",
        server.base_url,
        secrets::BUYGOODS
    );
    let r = client
        .get(&bg)
        .header("x-forwarded-for", attacker)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another client is not affected, nor are routes that do not authenticate.
    assert_eq!(
        lead(secrets::API_KEY, "198.51.100.67")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let click = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/c/keto-vsl", server.base_url))
        .header("x-forwarded-for", attacker)
        .send()
        .await
        .unwrap();
    assert_eq!(click.status(), StatusCode::FOUND);
    // A forged X-Forwarded-For entry left of the proxy's own is not believed.
    let r = lead("wrong-key-123", &format!("203.0.113.1, {attacker}"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);

    let metrics = server.metrics().await;
    assert!(
        metrics.contains("ingest_auth_failures_total 4"),
        "{metrics}"
    );
    assert!(metrics.contains("ingest_auth_limited_total 3"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn amounts_above_their_ceiling_are_refused_and_quarantined() {
    let server = IngestServer::start(&["--max-amount-for=buygoods=100"]).await;
    let client = reqwest::Client::new();
    let id = unique_name("huge");
    let r = client
        .post(format!("{}/v1/events", server.base_url))
        .bearer_auth(secrets::API_KEY)
        .json(&json!({"event_id": id, "event_name": "SALE", "order_id": id, "revenue": "999999999999.999999", "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "amount_out_of_range");
    assert_eq!(body["results"][0]["reason"], "amount_out_of_range");
    assert_eq!(body["results"][0]["errors"][0]["field"], "revenue");
    // Just under the default ceiling passes.
    let ok_id = unique_name("big");
    let r = client
        .post(format!("{}/v1/events", server.base_url))
        .bearer_auth(secrets::API_KEY)
        .json(&json!({"event_id": ok_id, "event_name": "SALE", "order_id": ok_id, "revenue": "1000000", "currency": "USD"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let order = unique_name("BGHUGE");
    let bg = format!(
        "{}/v1/postbacks/buygoods?token={}&order_id={order}&action_type=neworder&total_amount_charged=150&aff_commission=60&currency=USD",
        server.base_url,
        secrets::BUYGOODS
    );
    let r = client.get(&bg).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "amount_out_of_range"
    );

    let key = QuarantineKey::new(secrets::QUARANTINE_KEY).unwrap();
    let kept: Vec<QuarantineRecord> = scan_topic(
        topics::QUARANTINE,
        Some(&server.marks[topics::QUARANTINE]),
        2,
        Duration::from_secs(20),
        |f| {
            serde_json::from_slice::<QuarantineRecord>(&f.payload).is_ok_and(|r| {
                let request = key.open(&r).unwrap();
                String::from_utf8_lossy(&request.body).contains(&id)
                    || request.query.is_some_and(|q| q.contains(&order))
            })
        },
    )
    .iter()
    .map(|f| serde_json::from_slice(&f.payload).unwrap())
    .collect();
    assert_eq!(kept.len(), 2);
    assert!(kept.iter().all(|r| r.reason == "amount_out_of_range"));
    // The BuyGoods token is not kept: redacted, and the record sealed besides.
    let bg_record = kept
        .iter()
        .find(|r| r.route == "/v1/postbacks/buygoods")
        .unwrap();
    assert_eq!(bg_record.redacted, ["token"]);
    let query = key.open(bg_record).unwrap().query.unwrap();
    assert!(
        query.contains("token=REDACTED") && !query.contains(secrets::BUYGOODS),
        "{query}"
    );
    server.stop().await;
}

/// Reads until the server closes the connection; returns how long that took, or `None` if
/// it was still open after `limit`.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn silent_and_excess_connections_are_closed() {
    let server = IngestServer::start(&["--idle-timeout-ms=1500", "--max-connections=4"]).await;
    let addr = server.base_url.trim_start_matches("http://").to_owned();
    let connect = || tokio::net::TcpStream::connect(addr.clone());

    // One sends nothing, one half an HTTP/2 preface, one a request and then idles.
    let mut silent = connect().await.unwrap();
    let mut half_preface = connect().await.unwrap();
    half_preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let mut keep_alive = connect().await.unwrap();
    keep_alive
        .write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut fourth = connect().await.unwrap();
    // The cap is 4: a fifth is closed as soon as it is accepted.
    let mut fifth = connect().await.unwrap();
    let refused = closed_within(&mut fifth, Duration::from_millis(1000)).await;
    assert!(refused.is_some(), "a fifth connection was kept open");

    for (name, stream) in [
        ("silent", &mut silent),
        ("half preface", &mut half_preface),
        ("idle keep-alive", &mut keep_alive),
        ("fourth", &mut fourth),
    ] {
        let took = closed_within(stream, Duration::from_secs(10)).await;
        let took = took.unwrap_or_else(|| panic!("the {name} connection is still open after 10 s"));
        assert!(
            took < Duration::from_secs(5),
            "{name}: closed after {took:?}"
        );
    }
    // The scrape itself holds one connection open; the others' tasks end just after the
    // client sees them close.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut metrics = server.metrics().await;
    while !metrics.contains("ingest_open_connections 1\n") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        metrics = server.metrics().await;
    }
    assert!(metrics.contains("ingest_open_connections 1\n"), "{metrics}");
    assert!(
        metrics.contains("ingest_connections_closed_total{reason=\"max_connections\"} 1"),
        "{metrics}"
    );
    let idle: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ingest_connections_closed_total{reason=\"idle\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(idle >= 3, "{idle} idle closures counted\n{metrics}");
    server.stop().await;
}

#[test]
fn no_secret_shows_in_help() {
    let secrets_env = [
        ("INGEST_API_KEYS", "help-secret-api-key"),
        ("INGEST_PII_KEY", "help-secret-pii-key"),
        ("INGEST_QUARANTINE_KEY", "help-secret-quarantine-key"),
        ("CLICKBANK_SECRET_KEY", "HELPSECRETCLICKBANK"),
        ("DIGISTORE24_PASSPHRASE", "help-secret-ds24"),
        ("BUYGOODS_TOKEN", "help-secret-buygoods"),
        ("S2S_TOKENS", "tracker:help-secret-s2s"),
        ("CLICKHOUSE_PASSWORD", "help-secret-clickhouse"),
        ("KAFKA_SASL_PASSWORD", "help-secret-kafka-sasl"),
        ("KAFKA_SSL_KEY_PASSWORD", "help-secret-kafka-key"),
        (
            "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
            "help-secret-oauth-client",
        ),
        ("SCHEMA_REGISTRY_PASSWORD", "help-secret-registry"),
        ("TRACKCTL_DASHBOARD_TOKEN", "help-secret-dashboard"),
        // Credentials in a URL are secrets too.
        (
            "CLICKHOUSE_URL",
            "https://sink:help-secret-clickhouse-url@ch.example:8443",
        ),
        (
            "SCHEMA_REGISTRY_URL",
            "https://key:help-secret-registry-url@registry.example",
        ),
    ];
    let commands: [&[&str]; 12] = [
        &["ingest", "--help"],
        &["processor", "--help"],
        &["forwarder", "--help"],
        &["sink", "--help"],
        &["trackctl", "demo", "--help"],
        &["trackctl", "replay", "quarantine", "--help"],
        &["trackctl", "erase", "--help"],
        &["trackctl", "recon", "--help"],
        &["trackctl", "replay", "dlq", "--help"],
        &["trackctl", "schema", "register", "--help"],
        &["trackctl", "schema", "check", "--help"],
        &["trackctl", "dashboard", "--help"],
    ];
    for command in commands {
        let output = std::process::Command::new(tests::service::workspace_bin(command[0]))
            .args(&command[1..])
            .envs(secrets_env)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{command:?}: {text}");
        assert!(text.contains("Usage"), "{command:?}: {text}");
        for (var, value) in secrets_env {
            assert!(
                !text.contains(value),
                "{command:?} shows {var}'s value:\n{text}"
            );
        }
    }
}

#[test]
fn the_old_forwarded_for_switch_is_refused_with_its_replacement() {
    let output = std::process::Command::new(tests::service::workspace_bin("ingest"))
        .env("INGEST_API_KEYS", secrets::API_KEY)
        .env("INGEST_PII_KEY", secrets::PII_KEY)
        .env("INGEST_QUARANTINE_KEY", secrets::QUARANTINE_KEY)
        .env("INGEST_TRUST_FORWARDED_FOR", "true")
        .env("INGEST_BIND", "127.0.0.1:0")
        .env(
            "INGEST_OFFERS_FILE",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../config/offers.toml"),
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("INGEST_TRUSTED_PROXIES"), "{text}");
}
