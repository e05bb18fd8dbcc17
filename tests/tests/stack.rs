//! The foundation against the real services: the topics the stack script created, an event
//! through the real broker, and a ledger-shaped row through the real ClickHouse engine.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clickhouse::Row;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rust_decimal::Decimal;
use schemas::{conversion_key, samples, topics, EventCodec, SingleObjectCodec};
use serde::{Deserialize, Serialize};
use tests::{clickhouse_url, produce_and_read_back, unique_name};

#[tokio::test]
async fn topics_exist_as_topics_conf_declares() {
    let admin: AdminClient<DefaultClientContext> = tests::kafka().config(&[]).create().unwrap();
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    for spec in topics::specs() {
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == spec.name)
            .unwrap_or_else(|| panic!("topic {} was not created", spec.name));
        assert_eq!(
            topic.partitions().len() as i32,
            spec.partitions,
            "{}",
            spec.name
        );
    }

    let resources: Vec<_> = topics::specs()
        .iter()
        .map(|s| ResourceSpecifier::Topic(Box::leak(s.name.clone().into_boxed_str())))
        .collect();
    let described = admin
        .describe_configs(resources.iter(), &AdminOptions::new())
        .await
        .unwrap();
    for (spec, result) in topics::specs().iter().zip(described) {
        let config = result.unwrap();
        for (key, want) in &spec.configs {
            let got = config.get(key).and_then(|e| e.value.clone());
            assert_eq!(got.as_deref(), Some(want.as_str()), "{} {key}", spec.name);
        }
    }
}

#[tokio::test]
async fn an_event_round_trips_through_the_real_broker() {
    let codec = SingleObjectCodec::new();
    let mut event = samples::sale();
    event.event_id = unique_name("evt");
    let key = conversion_key(&event);
    let payload = codec.encode(&event).unwrap();

    let back = produce_and_read_back(topics::EVENTS, &key, &payload)
        .await
        .unwrap();
    assert_eq!(back.key.as_deref(), Some(key.as_bytes()));
    assert_eq!(back.payload, payload);
    let decoded = codec.decode(&back.payload).unwrap();
    assert_eq!(decoded, event);
}

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
struct LedgerProbe {
    event_id: String,
    event_name: String,
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    occurred_at: DateTime<Utc>,
    /// Decimal(18, 6) travels as its scaled integer in RowBinary.
    revenue_scaled: i64,
    currency: String,
}

#[tokio::test]
async fn a_row_round_trips_through_the_real_clickhouse() {
    let client = clickhouse::Client::default().with_url(clickhouse_url());
    let db = unique_name("stack_test");
    client
        .query(&format!("CREATE DATABASE {db}"))
        .execute()
        .await
        .unwrap();
    let client = client.with_database(&db);
    client
        .query(
            "CREATE TABLE probe (
                event_id String,
                event_name LowCardinality(String),
                occurred_at DateTime64(3, 'UTC'),
                revenue_scaled Decimal(18, 6),
                currency LowCardinality(String)
            ) ENGINE = MergeTree ORDER BY event_id",
        )
        .execute()
        .await
        .unwrap();

    let sale = samples::sale();
    let mut revenue = sale.revenue.unwrap();
    revenue.rescale(6);
    let row = LedgerProbe {
        event_id: sale.event_id.clone(),
        event_name: sale.event_name.to_string(),
        occurred_at: sale.occurred_at,
        revenue_scaled: i64::try_from(revenue.mantissa()).unwrap(),
        currency: sale.currency.clone().unwrap(),
    };
    let mut insert = client.insert::<LedgerProbe>("probe").await.unwrap();
    insert.write(&row).await.unwrap();
    insert.end().await.unwrap();

    let back: Vec<LedgerProbe> = client
        .query("SELECT ?fields FROM probe")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(back, vec![row]);
    // ClickHouse itself reads the money as the exact decimal, not a float.
    let text: String = client
        .query("SELECT toString(revenue_scaled) FROM probe")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(text.parse::<Decimal>().unwrap(), sale.revenue.unwrap());

    client
        .query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .unwrap();
}

/// A reader that starts while its topic is still being created (a service started right after
/// `stack topics`, or a broker failing over) waits for the partition's leader instead of failing.
#[tokio::test(flavor = "multi_thread")]
async fn watermarks_wait_for_a_topic_that_appears_meanwhile() {
    let topic = unique_name("late_topic");
    let consumer: rdkafka::consumer::BaseConsumer = tests::kafka()
        .config(&[])
        .set("group.id", unique_name("late_reader"))
        .create()
        .unwrap();
    let consumer = std::sync::Arc::new(consumer);

    let (c, t) = (consumer.clone(), topic.clone());
    let too_short = tokio::task::spawn_blocking(move || {
        telemetry::topic::watermarks(&c, &t, 0, Duration::from_millis(600))
    })
    .await
    .unwrap();
    assert!(too_short.is_err(), "a missing topic has no watermarks");

    let started = std::time::Instant::now();
    let (c, t) = (consumer.clone(), topic.clone());
    let reader = tokio::task::spawn_blocking(move || {
        telemetry::topic::watermarks(&c, &t, 0, Duration::from_secs(30))
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let admin: AdminClient<DefaultClientContext> = tests::kafka().config(&[]).create().unwrap();
    let created = admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                &topic,
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    created[0].as_ref().unwrap();
    let marks = reader
        .await
        .unwrap()
        .expect("watermarks once the topic exists");
    assert_eq!(marks, (0, 0));
    assert!(started.elapsed() >= Duration::from_millis(1500));
    admin
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap();
}

/// A service killed but not yet reaped by its parent is a zombie, which still answers
/// `kill -0`: the scripts must count it as stopped, or `scripts/services up` would say
/// "already running" after a crash and leave the pipeline down.
#[test]
fn a_killed_unreaped_process_counts_as_stopped() {
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let pid = child.id();
    let dir = std::env::temp_dir().join(unique_name("pidfile"));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("service.pid");
    std::fs::write(&pidfile, pid.to_string()).unwrap();
    let alive = || {
        let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/lib/process.sh");
        std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "LOG_TAG=test; . {lib}; pid_alive {}",
                pidfile.display()
            ))
            .status()
            .unwrap()
            .success()
    };
    assert!(alive(), "a running process is alive");
    child.kill().unwrap();
    // Not reaped yet: wait until the kernel shows it as a zombie.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        if stat.rsplit_once(") ").unwrap().1.starts_with('Z') {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never became a zombie: {stat}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(), "a zombie is not alive");
    child.wait().unwrap();
    assert!(!alive(), "a reaped process is not alive");
    std::fs::remove_dir_all(&dir).unwrap();
}
