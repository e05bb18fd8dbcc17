//! The sink against the real broker and the real ClickHouse, run as the real binary: the
//! migrations, the whole pipeline into the analyst views, and SIGKILL under a live stream.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use clickhouse::Row;
use rust_decimal::Decimal;
use schemas::EventName;
use serde::Deserialize;
use sink::migrations::{apply, MIGRATIONS};
use sink::topology::Topology;
use tests::clickhouse_url;
use tests::processor::{wait_caught_up, EventProducer, ProcessorTopics, Scenario};
use tests::service::ServiceProcess;
use tests::sink::{clickhouse, count, database, plain_columns, stream_entries, wait_rows};

#[tokio::test]
async fn migrations_applied_twice_are_a_no_op() {
    let db = database("sink_migrations");
    let root = clickhouse::Client::default().with_url(clickhouse_url());
    let first = apply(&root, &db, &Topology::Single).await.unwrap();
    assert_eq!(
        first,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    let tables = |client: clickhouse::Client| async move {
        client
            .query(
                "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
            )
            .fetch_all::<String>()
            .await
            .unwrap()
    };
    let before = tables(clickhouse(&db)).await;
    assert!(before.contains(&"ledger".to_owned()) && before.contains(&"daily_stats".to_owned()));

    assert!(apply(&root, &db, &Topology::Single)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(tables(clickhouse(&db)).await, before);
    assert_eq!(
        count(&clickhouse(&db), "schema_migrations").await,
        Some(MIGRATIONS.len() as u64)
    );
}

fn micros(text: &str) -> i64 {
    let d: Decimal = text.parse().unwrap();
    (d * Decimal::new(1_000_000, 0)).try_into().unwrap()
}

#[derive(Debug, Row, Deserialize)]
struct Totals {
    clicks: u64,
    leads: u64,
    leads_approved: u64,
    leads_rejected: u64,
    sales: u64,
    gross_revenue: String,
    refunds: u64,
    refund_amount: String,
    chargebacks: u64,
    chargeback_amount: String,
    net_revenue: String,
}

#[derive(Debug, Row, Deserialize)]
struct NetByConversion {
    conversion_key: String,
    net_revenue: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_lands_exactly_in_the_analyst_views() {
    let topics = ProcessorTopics::create("sink-e2e").await;
    let scenario = Scenario::mixed("e2e", 1_500);
    let producer = EventProducer::new(&topics.input);
    for e in &scenario.events {
        producer.send(e);
    }
    producer.send_raw("first_party/order/poison", b"not avro");
    producer.flush();

    let processor = ServiceProcess::processor(&topics, "a", &[]);
    let t = topics.clone();
    tokio::task::spawn_blocking(move || wait_caught_up(&t, Duration::from_secs(120)))
        .await
        .unwrap();
    processor.terminate();

    let db = database("sink_e2e");
    let sink = ServiceProcess::sink(&topics, &db, &[]);
    let ch = clickhouse(&db);
    let unique = scenario.unique_ids.len() as u64;
    wait_rows(&ch, "ledger", unique, Duration::from_secs(120)).await;
    let repeats = (scenario.duplicates + scenario.conflicts) as u64;
    wait_rows(&ch, "receipts", repeats, Duration::from_secs(60)).await;
    wait_rows(&ch, "quarantine", 1, Duration::from_secs(60)).await;
    sink.terminate();

    // Exact without FINAL: every event_id once.
    let distinct: u64 = ch
        .query("SELECT uniqExact(event_id) FROM ledger")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(distinct, unique);

    // The KPI view against sums computed here from the scenario (test events left out).
    let live = |name: EventName| -> Vec<&String> {
        scenario
            .names
            .iter()
            .filter(|(id, n)| **n == name && !scenario.test_ids.contains(*id))
            .map(|(id, _)| id)
            .collect()
    };
    let n = |name| live(name).len() as u64;
    let amount = |name| -> i64 { live(name).iter().map(|id| scenario.revenue[*id]).sum() };
    let totals: Totals = ch
        .query(
            "SELECT sum(clicks) AS clicks, sum(leads) AS leads, sum(leads_approved) AS leads_approved,
                    sum(leads_rejected) AS leads_rejected, sum(sales) AS sales,
                    toString(sum(gross_revenue)) AS gross_revenue, sum(refunds) AS refunds,
                    toString(sum(refund_amount)) AS refund_amount, sum(chargebacks) AS chargebacks,
                    toString(sum(chargeback_amount)) AS chargeback_amount,
                    toString(sum(net_revenue)) AS net_revenue
             FROM daily_stats",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(totals.clicks, n(EventName::Click));
    assert_eq!(totals.leads, n(EventName::Lead));
    assert_eq!(totals.leads_approved, n(EventName::ApprovedLead));
    assert_eq!(totals.leads_rejected, n(EventName::RejectedLead));
    assert_eq!(totals.sales, n(EventName::Sale));
    assert_eq!(totals.refunds, n(EventName::Refund));
    assert_eq!(totals.chargebacks, n(EventName::Chargeback));
    assert_eq!(micros(&totals.gross_revenue), amount(EventName::Sale));
    assert_eq!(micros(&totals.refund_amount), amount(EventName::Refund));
    assert_eq!(
        micros(&totals.chargeback_amount),
        amount(EventName::Chargeback)
    );
    assert_eq!(
        micros(&totals.net_revenue),
        amount(EventName::Sale) - amount(EventName::Refund) - amount(EventName::Chargeback)
    );
    assert!(totals.sales > 0 && totals.refunds > 0 && totals.chargebacks > 0);

    // Every sale's current state nets its reversals.
    let nets: HashMap<String, i64> = ch
        .query("SELECT conversion_key, toString(net_revenue) AS net_revenue FROM conversion_state")
        .fetch_all::<NetByConversion>()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.conversion_key, micros(&r.net_revenue)))
        .collect();
    for (key, net) in &scenario.net_revenue {
        assert_eq!(nets.get(key), Some(net), "{key}");
    }

    let orphans = count(&ch, "orphaned_reversals").await.unwrap();
    assert_eq!(orphans, 0, "every early reversal was adopted by its sale");
    assert_eq!(
        count(&ch, "conflicts").await.unwrap(),
        scenario.conflicts as u64
    );
    let reason: String = ch
        .query("SELECT any(reason) FROM quarantine")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(reason, "undecodable_event");

    // Every query of the analyst guide runs against these tables.
    let guide = include_str!("../../docs/ANALYST_GUIDE.md");
    let queries: Vec<&str> = guide
        .split("```sql")
        .skip(1)
        .map(|block| {
            block
                .split("```")
                .next()
                .unwrap()
                .trim()
                .trim_end_matches(';')
        })
        .collect();
    assert_eq!(queries.len(), 17);
    for q in queries {
        ch.query(q)
            .execute()
            .await
            .unwrap_or_else(|e| panic!("analyst guide query fails: {e}\n{q}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_points_neither_loses_nor_doubles_a_row() {
    let topics = ProcessorTopics::create("sink-crash").await;
    let db = database("sink_crash");
    let n = 30_000;
    let feeder = stream_entries(&topics.ledger, "crash", n, 30);
    let started = Instant::now();
    for _ in 0..6 {
        let mut sink = ServiceProcess::sink(&topics, &db, &["--batch-rows", "2000"]);
        sink.wait_ready(Duration::from_secs(60));
        let nanos = u64::from(Instant::now().duration_since(started).subsec_nanos());
        tokio::time::sleep(Duration::from_millis(200 + nanos % 2_500)).await;
        assert!(sink.is_running(), "the sink exited on its own; see its log");
        sink.kill();
    }
    assert!(
        !feeder.is_finished(),
        "input must still be arriving at the last kill"
    );
    tokio::task::spawn_blocking(move || feeder.join().unwrap())
        .await
        .unwrap();

    let sink = ServiceProcess::sink(&topics, &db, &[]);
    let ch = clickhouse(&db);
    wait_rows(&ch, "ledger", n as u64, Duration::from_secs(120)).await;
    sink.terminate();
    let ids: Vec<String> = ch
        .query("SELECT event_id FROM ledger")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(ids.len(), n, "count() without FINAL");
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), n, "every event_id once");
}

/// The sink's `Native` blocks carry every stored column of its four tables, by name, in a
/// type ClickHouse takes for it (the table's, without `LowCardinality`): ClickHouse fills a
/// column a block leaves out with its default, silently, so a migration that adds a column
/// and a block that forgets it would lose data without an error.
#[tokio::test]
async fn the_native_blocks_carry_every_column_of_the_tables() {
    use chrono::Utc;
    use schemas::{AttemptOutcome, PostbackAttempt, Receipt, ReceiptKind};
    use sink::rows::{AttemptRow, KafkaPosition, LedgerRow, NativeRows, QuarantineRow, ReceiptRow};

    let db = database("sink_columns");
    let root = clickhouse::Client::default().with_url(clickhouse_url());
    apply(&root, &db, &Topology::Single).await.unwrap();
    let at = KafkaPosition {
        partition: 0,
        offset: 1,
    };
    let now = Utc::now();
    let ledger = LedgerRow::new(tests::sink::click_entry("columns"), at).unwrap();
    let receipt = ReceiptRow::new(
        Receipt {
            event_id: "e".into(),
            conversion_key: "k".into(),
            kind: ReceiptKind::Duplicate,
            event_name: "sale".into(),
            occurrence: 2,
            route: "/v1/events".into(),
            delivery_attempt: None,
            received_at: now,
            first_received_at: now,
            content_fingerprint: "f".into(),
            first_fingerprint: "f".into(),
            is_test: false,
            recorded_at: now,
            input_partition: 0,
            input_offset: 0,
        },
        at,
    );
    let attempt = AttemptRow::new(
        PostbackAttempt {
            destination: "d".into(),
            idempotency_key: "e".into(),
            event_name: "sale".into(),
            offer_id: None,
            is_test: false,
            attempt: 1,
            outcome: AttemptOutcome::Delivered,
            dead_lettered: false,
            http_status: Some(200),
            error: None,
            latency_ms: 3,
            response_snippet: String::new(),
            attempted_at: now,
            next_attempt_at: None,
        },
        at,
    );
    let blocks = [
        ("ledger", LedgerRow::block(&[ledger]).unwrap()),
        ("receipts", ReceiptRow::block(&[receipt]).unwrap()),
        (
            "quarantine",
            QuarantineRow::block(&[QuarantineRow::unreadable(now, 1, at)]).unwrap(),
        ),
        ("postback_attempts", AttemptRow::block(&[attempt]).unwrap()),
    ];
    for (table, block) in blocks {
        let mut stored = plain_columns(&db, table).await.unwrap();
        stored.sort();
        let mut sent: Vec<(String, String)> = block
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.data_type().to_string()))
            .collect();
        sent.sort();
        assert_eq!(
            sent, stored,
            "{table}: the block's columns against the table's"
        );
    }
}

/// A backlog loads in blocks that grow while ClickHouse takes the previous one: with
/// `--batch-ms=1`, the sink before pipelining made 136 inserts of these 60,000 rows (about 440
/// rows each); now the next batch fills until the insert in flight lands (5 inserts here).
/// Every row still lands once.
#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_loads_in_blocks_that_grow_while_the_previous_insert_lands() {
    let topics = ProcessorTopics::create("sink-backlog").await;
    let db = database("sink_backlog");
    let n = 60_000;
    tokio::task::spawn_blocking({
        let ledger = topics.ledger.clone();
        move || stream_entries(&ledger, "backlog", n, 0).join().unwrap()
    })
    .await
    .unwrap();

    let sink = ServiceProcess::sink(&topics, &db, &["--batch-ms=1"]);
    let ch = clickhouse(&db);
    wait_rows(&ch, "ledger", n as u64, Duration::from_secs(120)).await;
    let metrics = sink.get("/metrics").unwrap_or_default();
    sink.terminate();
    let label = "table=\"ledger\"";
    let inserts = tests::metric(&metrics, "sink_insert_seconds_count", label);
    assert!(
        (1.0..=30.0).contains(&inserts),
        "{inserts} inserts for {n} rows (an average of {:.0} rows)",
        n as f64 / inserts
    );
    assert_eq!(
        (
            tests::metric(&metrics, "sink_insert_rows_count", label),
            tests::metric(&metrics, "sink_insert_rows_sum", label)
        ),
        (inserts, n as f64),
        "sink_insert_rows: one observation per insert, adding up to the rows"
    );
    let ids: Vec<String> = ch
        .query("SELECT event_id FROM ledger")
        .fetch_all()
        .await
        .unwrap();
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (n, n), "every event_id once");
}

#[derive(Debug, Row, Deserialize)]
struct Health {
    destination: String,
    attempts: u64,
    successes: u64,
    postbacks: u64,
    postbacks_delivered: u64,
    delivery_rate: f64,
    p95_latency_ms: i64,
    dead_lettered: u64,
}

#[tokio::test(flavor = "multi_thread")]
async fn postback_attempts_load_into_the_health_view() {
    use schemas::avro::ledger::encode_attempt;
    use schemas::{AttemptOutcome, PostbackAttempt};

    let topics = ProcessorTopics::create("sink-attempts").await;
    let now = chrono::Utc::now();
    let attempt = |key: &str, n: i32, outcome, dead, latency, test| PostbackAttempt {
        destination: "meta".into(),
        idempotency_key: key.into(),
        event_name: "SALE".into(),
        offer_id: Some("offer-a".into()),
        is_test: test,
        attempt: n,
        outcome,
        dead_lettered: dead,
        http_status: Some(match outcome {
            AttemptOutcome::Delivered => 200,
            AttemptOutcome::TransientFailure => 503,
            AttemptOutcome::PermanentFailure => 400,
        }),
        error: None,
        latency_ms: latency,
        response_snippet: String::new(),
        attempted_at: now,
        next_attempt_at: None,
    };
    use AttemptOutcome::*;
    let attempts = [
        attempt("p1", 1, TransientFailure, false, 900, false),
        attempt("p1", 2, Delivered, false, 40, false),
        attempt("p2", 1, Delivered, false, 30, false),
        attempt("p3", 1, PermanentFailure, true, 20, false),
        attempt("t1", 1, Delivered, false, 10, true),
    ];
    let producer = EventProducer::new(&topics.attempts);
    for a in &attempts {
        producer.send_raw(&a.idempotency_key, &encode_attempt(a));
    }
    producer.flush();

    let db = database("sink_attempts");
    let sink = ServiceProcess::sink(&topics, &db, &[]);
    let ch = clickhouse(&db);
    wait_rows(
        &ch,
        "postback_attempts",
        attempts.len() as u64,
        Duration::from_secs(60),
    )
    .await;
    sink.terminate();
    let health: Vec<Health> = ch
        .query("SELECT ?fields FROM postback_health")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        health.len(),
        1,
        "one destination, one day, the test event left out"
    );
    let h = &health[0];
    assert_eq!(h.destination, "meta");
    assert_eq!((h.attempts, h.successes), (4, 2));
    assert_eq!((h.postbacks, h.postbacks_delivered), (3, 2));
    assert!((h.delivery_rate - 0.6667).abs() < 1e-9);
    assert_eq!(h.p95_latency_ms, 900);
    assert_eq!(h.dead_lettered, 1);
}

/// An insert that no retry can fix (here: a column the sink writes was dropped by hand)
/// stops the sink with the reason, instead of looking like an outage forever; nothing is
/// stored or committed, so the entry is loaded once the table is fixed.
#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_clickhouse_error_stops_the_sink_with_the_reason() {
    let topics = ProcessorTopics::create("sink-permanent").await;
    let db = database("sink_permanent");
    let root = clickhouse::Client::default().with_url(clickhouse_url());
    apply(&root, &db, &Topology::Single).await.unwrap();
    clickhouse(&db)
        .query("ALTER TABLE ledger DROP COLUMN utm_content")
        .execute()
        .await
        .unwrap();
    let producer = EventProducer::new(&topics.ledger);
    let entry = tests::sink::click_entry(&tests::unique_name("permanent"));
    producer.send_raw(
        &entry.conversion_key,
        &schemas::avro::ledger::encode_entry(&entry).unwrap(),
    );
    producer.flush();

    let mut sink = ServiceProcess::sink(&topics, &db, &[]);
    let status = tokio::task::block_in_place(|| sink.exited_within(Duration::from_secs(60)))
        .expect("the sink still retries a permanent error after 60 s");
    assert!(!status.success(), "{status}");
    let log = sink.log();
    assert!(
        log.contains("refused an insert into ledger for a reason a retry cannot fix"),
        "{log}"
    );
    assert!(
        log.contains("utm_content"),
        "the log names the cause: {log}"
    );
    assert_eq!(count(&clickhouse(&db), "ledger").await, Some(0));

    // Fixed, the same entry loads: it was never committed.
    clickhouse(&db)
        .query("ALTER TABLE ledger ADD COLUMN utm_content Nullable(String) AFTER utm_term")
        .execute()
        .await
        .unwrap();
    let sink = ServiceProcess::sink(&topics, &db, &[]);
    wait_rows(&clickhouse(&db), "ledger", 1, Duration::from_secs(60)).await;
    sink.terminate();
}

/// Ledger records an older processor wrote (ledger_entry v1, before payout sources) still
/// load, and read as the event's payout (EVENT) or no payout (NONE); v2 records keep theirs.
#[tokio::test(flavor = "multi_thread")]
async fn ledger_records_of_the_first_schema_still_load() {
    use schemas::avro::ledger::{encode_entry, encode_entry_v1};
    use schemas::{samples, ConversionStatus, LedgerEntry, PayoutSource};

    let topics = ProcessorTopics::create("sink_v1").await;
    let db = database("sink_v1");
    let now = chrono::Utc::now();
    let opening =
        |e: schemas::TrackingEvent| LedgerEntry::opening(e, ConversionStatus::Sold, now).unwrap();
    let paid = opening(samples::sale());
    let mut unpaid_event = samples::sale();
    unpaid_event.event_id = "evt-unpaid".into();
    unpaid_event.order_id = Some("ord-unpaid".into());
    unpaid_event.payout = None;
    let unpaid = opening(unpaid_event);
    let mut ruled_event = samples::sale();
    ruled_event.event_id = "evt-ruled".into();
    ruled_event.order_id = Some("ord-ruled".into());
    ruled_event.payout = None;
    let mut ruled = opening(ruled_event);
    ruled.signed_payout = "5".parse().unwrap();
    ruled.payout_source = PayoutSource::Rule;
    ruled.payout_rule = Some("offer keto-vsl: revshare 10%".into());
    let producer = EventProducer::new(&topics.ledger);
    producer.send_raw(&paid.conversion_key, &encode_entry_v1(&paid).unwrap());
    producer.send_raw(&unpaid.conversion_key, &encode_entry_v1(&unpaid).unwrap());
    producer.send_raw(&ruled.conversion_key, &encode_entry(&ruled).unwrap());
    producer.flush();

    let mut sink = ServiceProcess::sink(&topics, &db, &[]);
    sink.wait_ready(Duration::from_secs(60));
    let ch = clickhouse(&db);
    wait_rows(&ch, "ledger", 3, Duration::from_secs(60)).await;
    sink.terminate();
    let rows: Vec<(String, String, Option<String>)> = ch
        .query("SELECT event_id, payout_source, payout_rule FROM ledger ORDER BY event_id")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "evt-ruled".into(),
                "RULE".into(),
                Some("offer keto-vsl: revshare 10%".into())
            ),
            ("evt-sale-1001".into(), "EVENT".into(), None),
            ("evt-unpaid".into(), "NONE".into(), None),
        ]
    );
}
