//! Helpers for the sink tests: the real `sink` binary on a private database and topics, and
//! waiting for rows in the real ClickHouse.

use std::time::{Duration, Instant};

use chrono::Utc;
use schemas::avro::ledger::encode_entry;
use schemas::{ConversionStatus, EventName, LedgerEntry, TrackingEvent};

use crate::processor::{EventProducer, ProcessorTopics};
use crate::service::ServiceProcess;
use crate::{clickhouse_url, unique_name};

/// A private ClickHouse database name.
pub fn database(prefix: &str) -> String {
    unique_name(prefix)
}

/// `table`'s stored columns in `database` (not MATERIALIZED, ALIAS or EPHEMERAL), in order,
/// each with its type without `LowCardinality`: the types a `Native` block of the sink, or a
/// Kafka table feeding a copy of the table, declares for them.
pub async fn plain_columns(database: &str, table: &str) -> anyhow::Result<Vec<(String, String)>> {
    let columns: Vec<(String, String)> = clickhouse(database)
        .query(
            "SELECT name, type FROM system.columns WHERE database = ? AND table = ? \
             AND default_kind NOT IN ('MATERIALIZED', 'ALIAS', 'EPHEMERAL') ORDER BY position",
        )
        .bind(database)
        .bind(table)
        .fetch_all()
        .await?;
    Ok(columns
        .into_iter()
        .map(|(name, t)| (name, without_low_cardinality(&t)))
        .collect())
}

/// `Array(LowCardinality(Nullable(String)))` -> `Array(Nullable(String))`.
fn without_low_cardinality(t: &str) -> String {
    const WRAPPER: &str = "LowCardinality(";
    let mut t = t.to_owned();
    while let Some(start) = t.find(WRAPPER) {
        let inner = start + WRAPPER.len();
        let mut depth = 1;
        let close = t[inner..]
            .char_indices()
            .find_map(|(i, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                (depth == 0).then_some(inner + i)
            })
            .expect("balanced parentheses in a ClickHouse type");
        t = format!("{}{}{}", &t[..start], &t[inner..close], &t[close + 1..]);
    }
    t
}

/// A client of the running ClickHouse, on `database`.
pub fn clickhouse(database: &str) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(clickhouse_url())
        .with_database(database)
}

impl ServiceProcess {
    /// The real sink binary, loading `topics`' ledger, receipts, quarantine and attempts
    /// topics into `database`; a `--flag=value` in `extra` replaces the default one.
    pub fn sink(topics: &ProcessorTopics, database: &str, extra: &[&str]) -> Self {
        Self::sink_instance(topics, database, "", extra)
    }

    /// `sink`, logging to its own file: one of several instances in the group.
    pub fn sink_instance(
        topics: &ProcessorTopics,
        database: &str,
        instance: &str,
        extra: &[&str],
    ) -> Self {
        let overridden = |flag: &str| extra.iter().any(|e| e.split('=').next() == Some(flag));
        let mut args: Vec<String> = [
            ("--ledger-topic", topics.ledger.as_str()),
            ("--receipts-topic", topics.receipts.as_str()),
            ("--quarantine-topic", topics.quarantine.as_str()),
            ("--attempts-topic", topics.attempts.as_str()),
            ("--database", database),
            ("--group-id", &format!("{}.sink", topics.group)),
            ("--clickhouse-url", &clickhouse_url()),
            ("--batch-ms", "200"),
        ]
        .into_iter()
        .filter(|(k, _)| !overridden(k))
        .flat_map(|(k, v)| [k.to_owned(), v.to_owned()])
        .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::start("sink", &format!("{}-sink{instance}", topics.group), &args)
    }
}

/// `SELECT count() FROM table` (no FINAL), retried through transient errors.
pub async fn count(client: &clickhouse::Client, table: &str) -> Option<u64> {
    client
        .query(&format!("SELECT count() FROM {table}"))
        .fetch_one::<u64>()
        .await
        .ok()
}

/// Waits until `table` holds `rows` rows; panics with the last count after `timeout`.
pub async fn wait_rows(client: &clickhouse::Client, table: &str, rows: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let n = count(client, table).await;
        if n == Some(rows) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{table} holds {n:?} rows, not {rows}, after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A ledger entry for a click, as the processor would write it.
pub fn click_entry(id: &str) -> LedgerEntry {
    let now = Utc::now();
    let mut event = TrackingEvent::new(id, EventName::Click, now, now, "first_party", "/c/o");
    event.click_id = Some(id.to_owned());
    LedgerEntry::opening(event, ConversionStatus::Clicked, now)
        .expect("sample amounts fit decimal(18, 6)")
}

/// Produces `n` ledger entries over about `seconds`, from a thread.
pub fn stream_entries(
    topic: &str,
    run: &str,
    n: usize,
    seconds: u64,
) -> std::thread::JoinHandle<()> {
    let topic = topic.to_owned();
    let run = run.to_owned();
    std::thread::spawn(move || {
        let producer = EventProducer::new(&topic);
        let steps = 100;
        for step in 0..steps {
            for i in (step * n / steps)..((step + 1) * n / steps) {
                let id = format!("{run}-{i}");
                producer.send_raw(
                    &format!("click/{id}"),
                    &encode_entry(&click_entry(&id)).unwrap(),
                );
            }
            producer.flush();
            std::thread::sleep(Duration::from_millis(seconds * 1000 / steps as u64));
        }
    })
}

/// Runs the real `trackctl` against `database` of the stack's ClickHouse; returns whether it
/// succeeded and what it printed (stdout, then stderr).
pub fn trackctl(database: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(crate::service::workspace_bin("trackctl"))
        .arg(format!("--clickhouse-url={}", clickhouse_url()))
        .arg(format!("--database={database}"))
        .args(args)
        .output()
        .expect("trackctl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Sends `events` through the real processor and sink (with `sink_args`) into a new
/// database, and returns once its ledger holds `ledger_rows` entries: the topics, the
/// database and a client on it.
pub async fn load_through_pipeline(
    prefix: &str,
    events: &[TrackingEvent],
    ledger_rows: u64,
    sink_args: &[&str],
) -> (ProcessorTopics, String, clickhouse::Client) {
    let topics = ProcessorTopics::create(prefix).await;
    let db = database(prefix);
    let producer = EventProducer::new(&topics.input);
    for e in events {
        producer.send(e);
    }
    producer.flush();
    let processor = ServiceProcess::processor(&topics, "a", &[]);
    let mut sink = ServiceProcess::sink(&topics, &db, sink_args);
    sink.wait_ready(Duration::from_secs(60));
    let t = topics.clone();
    tokio::task::spawn_blocking(move || {
        crate::processor::wait_caught_up(&t, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let ch = clickhouse(&db);
    wait_rows(&ch, "ledger", ledger_rows, Duration::from_secs(60)).await;
    processor.terminate();
    sink.terminate();
    (topics, db, ch)
}
