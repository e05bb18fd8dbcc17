//! The schema registry (Apicurio, started by scripts/stack) and the processor reading
//! Confluent-framed records: the contract registered with BACKWARD compatibility, a breaking
//! change refused, both framings under the same validation, and a registry outage that
//! pauses without losing or skipping a record.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use schemas::avro::framing::encode_confluent;
use schemas::avro::{current_schema, registry_subjects, PUBLISHED_SCHEMAS};
use schemas::{conversion_key, samples, QuarantineRecord, TrackingEvent};
use telemetry::registry::{RegistryError, SchemaRegistryConnection};
use tests::processor::{
    read_committed, read_ledger, wait_caught_up, EventProducer, ProcessorTopics,
};
use tests::service::{workspace_bin, ServiceProcess};
use tokio::net::{TcpListener, TcpStream};

const BREAKING: &str = include_str!("../../schemas/tests/fixtures/tracking_event.breaking.avsc");
const EVENTS_SUBJECT: &str = "tracking.events.v1-value";

#[tokio::test(flavor = "multi_thread")]
async fn the_contract_registers_once_under_backward_and_a_breaking_change_is_refused() {
    let registry = tests::registry();
    let first = trackctl::schema::register(&registry).await.unwrap();
    let again = trackctl::schema::register(&registry).await.unwrap();
    assert_eq!(first, again, "registering again changes no id");
    let subjects = registry_subjects();
    assert_eq!(
        first.len(),
        subjects.iter().map(|s| s.versions.len()).sum::<usize>()
    );
    for s in &subjects {
        assert_eq!(s.subject, format!("{}-value", s.topic));
        assert_eq!(
            registry.compatibility(&s.subject).await.unwrap().as_deref(),
            Some("BACKWARD"),
            "{}",
            s.subject
        );
    }
    // What the registry hands back under the events' id is the contract, by canonical form.
    let id = first
        .iter()
        .rfind(|r| r.subject == EVENTS_SUBJECT)
        .unwrap()
        .id;
    let held = registry.schema_by_id(id).await.unwrap();
    let held = schemas::avro::framing::WriterSchema::from_json(&held).unwrap();
    assert_eq!(held.version(), Some(current_schema().version));

    let check = |file: Option<&str>| trackctl::schema::CheckArgs {
        registry: SchemaRegistryConnection::new(tests::registry_url()),
        file: file.map(Into::into),
        subject: file.map(|_| EVENTS_SUBJECT.to_owned()),
    };
    let verdicts = trackctl::schema::check(&registry, &check(None))
        .await
        .unwrap();
    assert_eq!(verdicts.len(), subjects.len());
    assert!(
        verdicts.iter().all(|v| v.compatible == Some(true)),
        "{verdicts:?}"
    );

    let fixture = format!(
        "{}/../schemas/tests/fixtures/tracking_event.breaking.avsc",
        env!("CARGO_MANIFEST_DIR")
    );
    let verdicts = trackctl::schema::check(&registry, &check(Some(&fixture)))
        .await
        .unwrap();
    assert_eq!(verdicts[0].compatible, Some(false));
    match registry.register(EVENTS_SUBJECT, BREAKING).await {
        Err(RegistryError::Refused { status: 409, .. }) => {}
        other => panic!("the breaking schema was not refused with 409: {other:?}"),
    }

    // The command CI runs says so, and fails.
    let out = std::process::Command::new(workspace_bin("trackctl"))
        .args([
            "schema",
            "check",
            "--file",
            &fixture,
            "--subject",
            EVENTS_SUBJECT,
        ])
        .env("SCHEMA_REGISTRY_URL", tests::registry_url())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("tracking.events.v1-value"), "{stdout}");
    assert!(stdout.contains("INCOMPATIBLE"), "{stdout}");
    assert!(stderr.contains("would refuse"), "{stderr}");
}

fn sale(id: &str, revenue: &str) -> TrackingEvent {
    let mut e = samples::sale();
    e.event_id = id.into();
    e.order_id = Some(format!("ord-{id}"));
    e.transaction_id = Some(format!("tx-{id}"));
    e.revenue = Some(Decimal::from_str(revenue).unwrap());
    e
}

/// Registers the contract's published versions in order (and, when given, a newer schema)
/// under the private topic's subject: TopicNameStrategy, as `trackctl schema register` does
/// for the real topic. Returns the current version's id (what `encode_confluent` writes),
/// and the newer schema's.
async fn register_for(topic: &str, extra: Option<&str>) -> (u32, Option<u32>) {
    let registry = tests::registry();
    let subject = format!("{topic}-value");
    registry
        .set_compatibility(&subject, "BACKWARD")
        .await
        .unwrap();
    let mut current = 0;
    for (_, json) in PUBLISHED_SCHEMAS {
        current = registry.register(&subject, json).await.unwrap();
    }
    let newer = match extra {
        Some(json) => Some(registry.register(&subject, json).await.unwrap()),
        None => None,
    };
    (current, newer)
}

fn quarantined(topic: &str) -> Vec<QuarantineRecord> {
    read_committed(topic)
        .into_iter()
        .map(|(_, _, v)| serde_json::from_slice(&v).unwrap())
        .collect()
}

fn metric(text: &str, name: &str, labels: &str) -> i64 {
    tests::metric(text, name, labels) as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn both_framings_meet_the_same_rules_and_bad_records_are_quarantined_with_reasons() {
    let topics = ProcessorTopics::create("reg-frames").await;
    // A producer's own newer version: one optional field appended, which the contract's
    // reader skips.
    let mut v2: serde_json::Value =
        serde_json::from_str(PUBLISHED_SCHEMAS.last().unwrap().1).unwrap();
    v2["fields"].as_array_mut().unwrap().push(serde_json::json!(
        {"name": "loyalty_tier", "type": ["null", "string"], "default": null}
    ));
    let (id, v2_id) = register_for(&topics.input, Some(&v2.to_string())).await;
    let v2_id = v2_id.unwrap();
    assert_ne!(id, v2_id);

    let producer = EventProducer::new(&topics.input);
    let confluent = sale("reg-c-1", "49.99");
    producer.send_raw(
        &conversion_key(&confluent),
        &encode_confluent(id, &confluent).unwrap(),
    );
    let single = sale("reg-s-1", "19.50");
    producer.send(&single);
    // The same SALE again in the other framing: a duplicate, not a second sale.
    producer.send_raw(
        &conversion_key(&single),
        &encode_confluent(id, &single).unwrap(),
    );
    // Written with the producer's version: its datum is the contract's plus the union branch 1
    // and the string "gold".
    let newer = sale("reg-v2-1", "7.25");
    let mut bytes = encode_confluent(v2_id, &newer).unwrap();
    bytes.extend_from_slice(&[2, 8, b'g', b'o', b'l', b'd']);
    producer.send_raw(&conversion_key(&newer), &bytes);
    // A producer still on contract v1 (its registry id: registering it again names it).
    let v1_id = tests::registry()
        .register(&format!("{}-value", topics.input), PUBLISHED_SCHEMAS[0].1)
        .await
        .unwrap();
    assert_ne!(v1_id, id);
    let old = sale("reg-v1-1", "3.10");
    let mut bytes = vec![0];
    bytes.extend_from_slice(&v1_id.to_be_bytes());
    schemas::avro::datum::write_event_body(&old, &mut bytes).unwrap();
    producer.send_raw(&conversion_key(&old), &bytes);
    // A schema id the registry never gave.
    let unknown_id = 2_000_000_000;
    producer.send_raw(
        "k-unknown",
        &encode_confluent(unknown_id, &sale("reg-u-1", "1.00")).unwrap(),
    );
    producer.send_raw(
        "k-unknown",
        &encode_confluent(unknown_id, &sale("reg-u-2", "1.00")).unwrap(),
    );
    // A known id, and bytes that are no datum of it.
    let mut garbage = vec![0];
    garbage.extend_from_slice(&id.to_be_bytes());
    garbage.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
    producer.send_raw("k-garbage", &garbage);
    // A SALE that decodes but breaks the contract: revenue without a currency, bad event ID.
    let mut invalid = sale("reg-bad-1", "10.00");
    invalid.event_id = "reg bad 1".into();
    invalid.currency = None;
    producer.send_raw(
        &conversion_key(&invalid),
        &encode_confluent(id, &invalid).unwrap(),
    );
    // The same broken SALE in single-object framing gets the same errors.
    producer.send(&invalid);
    producer.flush();

    let processor = ServiceProcess::processor(&topics, "a", &[]);
    tokio::task::spawn_blocking({
        let topics = topics.clone();
        move || wait_caught_up(&topics, Duration::from_secs(90))
    })
    .await
    .unwrap();
    let metrics = processor.get("/metrics").unwrap();
    processor.terminate();

    let ledger = read_ledger(&topics);
    let revenue: BTreeMap<String, String> = ledger
        .iter()
        .map(|e| {
            (
                e.event.event_id.clone(),
                e.signed_revenue.to_decimal().normalize().to_string(),
            )
        })
        .collect();
    assert_eq!(
        revenue,
        BTreeMap::from([
            ("reg-c-1".to_owned(), "49.99".to_owned()),
            ("reg-s-1".to_owned(), "19.5".to_owned()),
            ("reg-v1-1".to_owned(), "3.1".to_owned()),
            ("reg-v2-1".to_owned(), "7.25".to_owned()),
        ])
    );
    let newer_read = &ledger
        .iter()
        .find(|e| e.event.event_id == "reg-v2-1")
        .unwrap()
        .event;
    assert_eq!(newer_read, &newer, "the v2 record reads as the same event");

    let mut q = quarantined(&topics.quarantine);
    q.sort_by(|a, b| a.query.cmp(&b.query));
    let reasons: Vec<&str> = q.iter().map(|r| r.reason.as_str()).collect();
    let count = |reason: &str| reasons.iter().filter(|r| **r == reason).count();
    assert_eq!(q.len(), 5, "{reasons:?}");
    assert_eq!(count("unknown_schema"), 2, "{reasons:?}");
    assert_eq!(count("undecodable_event"), 1, "{reasons:?}");
    assert_eq!(count("validation"), 2, "{reasons:?}");
    for r in &q {
        assert_eq!(r.route, "processor");
        match r.reason.as_str() {
            "unknown_schema" => assert!(
                r.errors[0]
                    .reason
                    .contains(&format!("schema id {unknown_id}")),
                "{:?}",
                r.errors
            ),
            "validation" => {
                let fields: Vec<&str> = r.errors.iter().map(|e| e.field.as_str()).collect();
                assert_eq!(fields, ["event_id", "currency"], "{:?}", r.errors);
            }
            _ => {}
        }
    }
    // Each known id (v1, the current contract, the producer's own) was asked for once,
    // whatever the number of records; the unknown one once too, then remembered.
    assert_eq!(
        metric(
            &metrics,
            "processor_schema_registry_requests_total",
            r#"result="ok""#
        ),
        3,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "processor_schema_registry_requests_total",
            r#"result="not_found""#
        ),
        1,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "processor_events_total", r#"outcome="invalid""#),
        2
    );
    assert_eq!(
        metric(
            &metrics,
            "processor_events_total",
            r#"outcome="unknown_schema""#
        ),
        2
    );
    assert_eq!(
        metric(&metrics, "processor_events_total", r#"outcome="duplicate""#),
        1
    );
}

/// A TCP door in front of the real registry, shut or open at will: the processor's registry
/// is behind it, so the test controls its outage without stopping the shared one.
struct RegistryDoor {
    port: u16,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RegistryDoor {
    fn shut() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = tests::registry_url();
        let authority = url.split("://").nth(1).unwrap().split('/').next().unwrap();
        Self {
            port,
            upstream: authority.to_owned(),
            task: None,
        }
    }

    fn url(&self) -> String {
        let path = tests::registry_url();
        let path = path.splitn(4, '/').nth(3).unwrap_or("").to_owned();
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    async fn open(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }
}

impl Drop for RegistryDoor {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_outage_pauses_the_partitions_and_loses_or_skips_nothing() {
    let topics = ProcessorTopics::create("reg-outage").await;
    let (id, _) = register_for(&topics.input, None).await;
    let mut door = RegistryDoor::shut();

    let producer = EventProducer::new(&topics.input);
    let mut expected = BTreeMap::new();
    for i in 0..24 {
        let e = sale(&format!("reg-o-{i}"), &format!("{}.{:02}", 10 + i, i));
        expected.insert(
            e.event_id.clone(),
            e.revenue.unwrap().normalize().to_string(),
        );
        producer.send_raw(&conversion_key(&e), &encode_confluent(id, &e).unwrap());
    }
    producer.flush();

    let registry_flag = door.url();
    let mut processor = ServiceProcess::processor(
        &topics,
        "a",
        &[
            "--schema-registry-url",
            &registry_flag,
            "--schema-registry-timeout-ms",
            "1000",
        ],
    );
    // It pauses on the first record of each partition and says it is not ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let metrics = processor.get("/metrics").unwrap_or_default();
        if metric(&metrics, "processor_schema_registry_waiting_partitions", "") > 0
            && metric(
                &metrics,
                "processor_schema_registry_requests_total",
                r#"result="unavailable""#,
            ) >= 2
        {
            break;
        }
        assert!(
            processor.is_running(),
            "the processor exited during the outage"
        );
        assert!(
            Instant::now() < deadline,
            "the processor never waited for the registry: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let readiness = processor.get("/readyz").unwrap();
    assert!(readiness.starts_with("HTTP/1.0 503"), "{readiness}");
    assert!(readiness.contains("schema registry"), "{readiness}");
    assert!(
        read_ledger(&topics).is_empty(),
        "nothing may be applied without its schema"
    );
    assert!(
        quarantined(&topics.quarantine).is_empty(),
        "an outage quarantines nothing"
    );

    door.open().await;
    tokio::task::spawn_blocking({
        let topics = topics.clone();
        move || wait_caught_up(&topics, Duration::from_secs(90))
    })
    .await
    .unwrap();
    processor.wait_ready(Duration::from_secs(30));
    let metrics = processor.get("/metrics").unwrap();
    processor.terminate();

    let got: BTreeMap<String, String> = read_ledger(&topics)
        .iter()
        .map(|e| {
            (
                e.event.event_id.clone(),
                e.signed_revenue.to_decimal().normalize().to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(quarantined(&topics.quarantine).is_empty());
    assert_eq!(
        metric(&metrics, "processor_schema_registry_waiting_partitions", ""),
        0
    );
    assert_eq!(
        metric(
            &metrics,
            "processor_schema_registry_requests_total",
            r#"result="ok""#
        ),
        1,
        "{metrics}"
    );
}

/// A day published by confluent-kafka's AvroSerializer (tests/reference/confluent_producer.py)
/// straight to the events topic, through the real processor and sink, to the cent.
#[tokio::test(flavor = "multi_thread")]
async fn a_day_from_pythons_avro_serializer_adds_up_in_clickhouse() {
    let destinations = tests::pipeline::webhook_destinations().await;
    let pipeline = tests::pipeline::Pipeline::start("reg_python", &destinations).await;
    register_for(&pipeline.topics.input, None).await;
    let run = tests::unique_name("py").replace('_', "-");

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/reference/confluent_producer.py"
    );
    let out = std::process::Command::new(tests::stack_env("STACK_PYTHON"))
        .args([
            script,
            &tests::kafka_bootstrap(),
            &tests::registry_url(),
            &pipeline.topics.input,
            &run,
        ])
        .output()
        .expect("the stack's Python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "13");

    // Eight sales, a refund and a chargeback; the two retries are duplicates; the invalid
    // sale is quarantined.
    let ch = pipeline.clickhouse();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let n: u64 = ch
            .query("SELECT count() FROM ledger")
            .fetch_one()
            .await
            .unwrap();
        if n >= 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ledger has {n} of 10 entries"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // By hand: sales 49.99 + 19.99 + 29.99 + 99.00 + 9.95 + 149.50 + 24.00 + 74.25 = 456.67;
    // less the refund (29.99) and the chargeback (99.00): 327.68. Payouts 184.00 less 12.00
    // and 40.00: 132.00.
    let totals: (u64, String, String, String) = ch
        .query(
            "SELECT count(), toString(sumIf(signed_revenue, event_name = 'SALE')), \
             toString(sum(signed_revenue)), toString(sum(signed_payout)) FROM ledger",
        )
        .fetch_one()
        .await
        .unwrap();
    let exact = |s: &str| s.parse::<Decimal>().unwrap().normalize().to_string();
    assert_eq!(
        (
            totals.0,
            exact(&totals.1),
            exact(&totals.2),
            exact(&totals.3)
        ),
        (10, "456.67".into(), "327.68".into(), "132".into())
    );
    let sale_o1 = format!("{run}-sale-o-1");
    let receipts = tests::processor::read_receipts(&pipeline.topics);
    // The first occurrence is the ledger entry; each retry a duplicate receipt.
    let retries: Vec<_> = receipts.iter().filter(|r| r.event_id == sale_o1).collect();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(retries
        .iter()
        .all(|r| r.kind == schemas::ReceiptKind::Duplicate));
    assert_eq!(receipts.len(), 2, "no other receipt: {receipts:?}");
    let q = quarantined(&pipeline.topics.quarantine);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0].reason, "validation");
    assert_eq!(q[0].errors.len(), 1, "{:?}", q[0].errors);
    assert_eq!(q[0].errors[0].field, "currency");
    assert_eq!(
        q[0].errors[0].reason,
        "required when revenue or payout is given"
    );
    pipeline.stop().await;
}
