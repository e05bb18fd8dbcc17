//! Helpers shared by the end-to-end tests in `tests/`. They run against the real Kafka broker
//! and ClickHouse server that `scripts/test` starts; see the README.

pub mod forwarder;
pub mod host;
pub mod pipeline;
pub mod processor;
pub mod secured;
pub mod service;
pub mod sink;

/// The address of a service started by `scripts/stack`, from the environment it exports.
///
/// A missing variable fails the test loudly: these tests never pass without the real stack.
pub fn stack_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test, or start the stack with \
             scripts/stack up and eval \"$(scripts/stack env)\""
        )
    })
}

/// The Kafka bootstrap servers of the running stack.
pub fn kafka_bootstrap() -> String {
    stack_env("KAFKA_BOOTSTRAP_SERVERS")
}

/// The running stack's Kafka, as every service's client configuration takes it.
pub fn kafka() -> telemetry::kafka::KafkaConnection {
    telemetry::kafka::KafkaConnection::new(kafka_bootstrap())
}

/// The running stack's schema registry (its Confluent-compatible API).
pub fn registry() -> telemetry::registry::SchemaRegistry {
    telemetry::registry::SchemaRegistryConnection::new(registry_url())
        .client()
        .expect("registry client")
}

/// The URL of the running stack's schema registry.
pub fn registry_url() -> String {
    stack_env("SCHEMA_REGISTRY_URL")
}

/// The ClickHouse HTTP URL of the running stack.
pub fn clickhouse_url() -> String {
    stack_env("CLICKHOUSE_URL")
}

/// The values of `name`'s samples in a Prometheus text exposition (a service's `/metrics`)
/// whose labels contain `labels` (`""` for all), e.g. `("sink_consumer_lag",
/// "topic=\"t\"")`.
pub fn metric_values(text: &str, name: &str, labels: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|line| {
            let (series, value) = line.strip_prefix(name)?.rsplit_once(' ')?;
            let exact = series.is_empty() || series.starts_with('{');
            (exact && series.contains(labels)).then(|| value.parse().ok())?
        })
        .collect()
}

/// The sum of [`metric_values`], 0 when there is no such sample.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    metric_values(text, name, labels).iter().sum()
}

/// `scripts/stack <action> <service>` on the running stack (its environment is this
/// process's): stops or starts one of the shared servers, for the outage tests and the
/// benchmarks that kill one.
pub fn stack(action: &str, service: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack");
    let status = std::process::Command::new(script)
        .args([action, service])
        .status()
        .expect("scripts/stack runs");
    assert!(status.success(), "scripts/stack {action} {service} failed");
}

/// The median of a benchmark's rounds (the upper one of an even count).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A name no other test run uses, for databases, groups and tables.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Where a message landed, and what was read back from exactly there.
pub struct KafkaRoundTrip {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Produces one message with an idempotent `acks=all` producer, then reads back, with a
/// `read_committed` consumer, the message at the partition and offset the delivery report
/// gave.
pub async fn produce_and_read_back(
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<KafkaRoundTrip> {
    use anyhow::Context;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::Duration;

    let producer: FutureProducer = crate::kafka()
        .config(&[])
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let delivery = producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(15),
        )
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("producing to {topic}"))?;

    let consumer: BaseConsumer = crate::kafka()
        .config(&[])
        .set("group.id", unique_name("read-back"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, delivery.partition, Offset::Offset(delivery.offset))?;
    consumer.assign(&assignment)?;
    let message = consumer.poll(Duration::from_secs(15)).with_context(|| {
        format!(
            "nothing to read at {topic}[{}]@{} within 15 s",
            delivery.partition, delivery.offset
        )
    })??;
    Ok(KafkaRoundTrip {
        partition: delivery.partition,
        offset: delivery.offset,
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().unwrap_or_default().to_vec(),
    })
}

/// An ingest server running in this process against the real broker, on an ephemeral port.
pub struct IngestServer {
    pub base_url: String,
    pub spool_dir: std::path::PathBuf,
    /// Where the events and quarantine topics ended when the server started: everything this
    /// server produces lies past these offsets, so scans can start there.
    pub marks: std::collections::HashMap<&'static str, Vec<(i32, i64)>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Posts one event to ingest's `/v1/events` with the test API key; it must be accepted.
pub async fn post_event(base: &str, body: serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/events"))
        .bearer_auth(secrets::API_KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Posts an event to ingest until it is acknowledged, as a producer must (a refusal, or no
/// answer, while a service restarts is retried every 100 ms); fails after a minute.
pub async fn post_acked(client: &reqwest::Client, base: &str, body: &serde_json::Value) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let sent = client
            .post(format!("{base}/v1/events"))
            .bearer_auth(secrets::API_KEY)
            .json(body)
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ingest refused {body} for a minute"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Posts a ClickBank instant notification (v8, USD, vendor ketovsl, affiliate aff12, item
/// keto-vsl) to ingest, encrypted with the test secret; it must be accepted.
pub async fn post_clickbank(
    base: &str,
    receipt: &str,
    tx_type: &str,
    time: &str,
    total: &str,
    account: &str,
) {
    let notice = serde_json::json!({
        "transactionTime": time, "receipt": receipt, "transactionType": tx_type,
        "vendor": "ketovsl", "affiliate": "aff12", "role": "VENDOR",
        "totalOrderAmount": total.parse::<f64>().unwrap(),
        "totalAccountAmount": account.parse::<f64>().unwrap(),
        "currency": "USD", "attemptCount": 1, "version": 8.0,
        "lineItems": [{"itemNo": "keto-vsl"}]
    });
    let body = ingest::adapters::clickbank::encrypt_notification(
        secrets::CLICKBANK,
        notice.to_string().as_bytes(),
        [3; 16],
    );
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/postbacks/clickbank"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// Waits up to 60 s for `done`, looking every 200 ms; fails the test with `what` after that.
pub async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A visit through the click redirect `GET /c/{offer}?{query}` of ingest at `base`: its 302,
/// and the click ID from the `tl_click` cookie.
pub async fn land(base: &str, offer: &str, query: &str) -> String {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/c/{offer}?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    cookie
        .trim_start_matches("tl_click=")
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The API key, PII key and network secrets the test servers use.
pub mod secrets {
    pub const API_KEY: &str = "test-api-key-0001";
    pub const PII_KEY: &str = "test-pii-key-0123456789";
    pub const CLICKBANK: &str = "TESTCLICKBANKSECRET";
    pub const DIGISTORE24: &str = "test-ds24-passphrase";
    pub const BUYGOODS: &str = "test-buygoods-token";
    pub const S2S: &str = "tracker-a:test-s2s-token";
    pub const S2S_TOKEN: &str = "test-s2s-token";
    pub const QUARANTINE_KEY: &str = "test-quarantine-key-0123456789";
}

impl IngestServer {
    /// Starts ingest with every adapter configured; `extra` adds or overrides flags.
    pub async fn start(extra: &[&str]) -> Self {
        let spool_dir = std::env::temp_dir().join(unique_name("ingest-spool"));
        let offers = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/offers.toml");
        let mut args = vec![
            "ingest".to_owned(),
            format!("--kafka-bootstrap-servers={}", kafka_bootstrap()),
            format!("--api-keys={}", secrets::API_KEY),
            format!("--pii-key={}", secrets::PII_KEY),
            format!("--quarantine-key={}", secrets::QUARANTINE_KEY),
            format!("--offers-file={offers}"),
            format!("--clickbank-secret-key={}", secrets::CLICKBANK),
            format!("--digistore24-passphrase={}", secrets::DIGISTORE24),
            format!("--buygoods-token={}", secrets::BUYGOODS),
            format!("--s2s-tokens={}", secrets::S2S),
            format!("--spool-dir={}", spool_dir.display()),
        ];
        // A flag in `extra` replaces the default one: clap refuses a flag given twice.
        let flag = |a: &str| a.split('=').next().unwrap_or_default().to_owned();
        args.retain(|a| !extra.iter().any(|e| flag(e) == flag(a)));
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = <ingest::Config as clap::Parser>::parse_from(args);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        // Taken before the server runs: everything it produces lies past these offsets.
        let marks = [schemas::topics::EVENTS, schemas::topics::QUARANTINE]
            .into_iter()
            .map(|t| (t, high_watermarks(t)))
            .collect();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ingest::serve(config, listener, async {
            let _ = rx.await;
        }));
        let server = Self {
            base_url,
            spool_dir,
            marks,
            shutdown: Some(tx),
            task: Some(task),
        };
        server.wait_ready().await;
        server
    }

    /// Waits until `/readyz` answers 200 (the producer sees the broker).
    pub async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(r) = http_status(&format!("{}/readyz", self.base_url)).await {
                if r == 200 {
                    return;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "ingest did not become ready within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base_url))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("ingest serves /metrics")
            .text()
            .await
            .expect("a metrics body")
    }

    /// Stops the server gracefully (flushing the producer).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// A GET's status code over a plain TCP connection, without an HTTP client dependency.
async fn http_status(url: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))
}

/// One message found on a topic.
#[derive(Debug, Clone)]
pub struct Found {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// The next offset of every partition of `topic`.
pub fn high_watermarks(topic: &str) -> Vec<(i32, i64)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = crate::kafka().config(&[]).create().unwrap();
    let timeout = std::time::Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            (
                p.id(),
                consumer.fetch_watermarks(topic, p.id(), timeout).unwrap().1,
            )
        })
        .collect()
}

/// Reads `topic` from `from` (or the beginning) of every partition (read_committed) and returns the
/// messages that satisfy `pred`. It stops once `want` are found, or every partition has
/// been read to its end, or `timeout` passes. Ingest answers 2xx only after Kafka's ack, so
/// what a test expects is already there when it scans, and an absent message is absent.
pub fn scan_topic(
    topic: &str,
    from: Option<&[(i32, i64)]>,
    want: usize,
    timeout: std::time::Duration,
    pred: impl Fn(&Found) -> bool,
) -> Vec<Found> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};

    let consumer: BaseConsumer = crate::kafka()
        .config(&[])
        .set("group.id", unique_name("scan"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        let start = from
            .and_then(|marks| marks.iter().find(|(id, _)| *id == p.id()))
            .map_or(Offset::Beginning, |(_, offset)| Offset::Offset(*offset));
        tpl.add_partition_offset(topic, p.id(), start).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + timeout;
    let partitions = tpl.count();
    let mut at_end = std::collections::HashSet::new();
    let mut found = Vec::new();
    while found.len() < want && at_end.len() < partitions && std::time::Instant::now() < deadline {
        match consumer.poll(std::time::Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let f = Found {
                    partition: m.partition(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                };
                if pred(&f) {
                    found.push(f);
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            _ => {}
        }
    }
    found
}

/// Renders `page` (an HTML file or a URL) in headless Chromium with scripts/screenshot, in a
/// `window` ("width,height"), checks the PNG is not blank, and copies it to the path in the
/// environment variable `keep_env` when that is set (to refresh a screenshot in docs).
pub fn screenshot(page: &str, window: &str, keep_env: &str) {
    let png = std::env::temp_dir().join(format!("{}.png", unique_name("screenshot")));
    let status = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/screenshot"
    ))
    .env("SCREENSHOT_WINDOW", window)
    .arg(page)
    .arg(&png)
    .status()
    .unwrap();
    assert!(
        status.success(),
        "scripts/screenshot failed: install chromium-headless-shell"
    );
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        bytes.len() > 20_000,
        "a {} byte screenshot is blank",
        bytes.len()
    );
    if let Ok(keep) = std::env::var(keep_env) {
        std::fs::copy(&png, keep).unwrap();
    }
    std::fs::remove_file(&png).ok();
}

/// Serves `app` on a free loopback port for the rest of the test; returns its base URL.
pub async fn serve_locally(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}
