//! The load loop: Kafka (`read_committed`) to ClickHouse, batched per table, exactly once.
//!
//! Exactly once: every row stores its Kafka partition and offset, and every insert is one
//! atomic block (fewer rows than `max_insert_block_size`, one table partition). On start the
//! sink reads, per table, the highest offset stored for each partition and resumes right
//! after it; Kafka's committed offsets are only reported for monitoring. A crash at any
//! moment leaves each insert wholly stored or wholly absent, and what is absent is read
//! again. An insert whose outcome is unknown (a timeout, a lost connection) is checked the
//! same way before it is retried.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clickhouse::{Client, Row, RowOwned, RowWrite};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use schemas::avro::ledger::{decode_attempt, decode_entry, decode_receipt};
use schemas::QuarantineRecord;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::migrations;
use crate::rows::{AttemptRow, KafkaPosition, LedgerRow, QuarantineRow, ReceiptRow, TableRow};

/// How long the stored offsets must hold still before the sink resumes from them.
const RESUME_SETTLE: Duration = Duration::from_secs(1);

/// Rows waiting for one table's next insert.
struct Batch<R> {
    table: &'static str,
    topic: String,
    rows: Vec<R>,
    bytes: usize,
    started: Option<Instant>,
    month: Option<u32>,
    /// Highest offset per Kafka partition in the batch.
    last: HashMap<i32, i64>,
}

impl<R: RowOwned + RowWrite + TableRow> Batch<R> {
    fn new(table: &'static str, topic: &str) -> Self {
        Self {
            table,
            topic: topic.to_owned(),
            rows: Vec::new(),
            bytes: 0,
            started: None,
            month: None,
            last: HashMap::new(),
        }
    }

    fn due(&self, config: &Config, now: Instant) -> bool {
        !self.rows.is_empty()
            && (self.rows.len() as u64 >= config.batch_rows
                || self.bytes >= config.batch_bytes
                || self
                    .started
                    .is_some_and(|s| now.duration_since(s) >= config.batch_age()))
    }

    fn deadline(&self, config: &Config) -> Option<Instant> {
        self.started.map(|s| s + config.batch_age())
    }
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Stored {
    kafka_partition: i32,
    last_offset: i64,
}

/// Waits until ClickHouse runs no insert into `table` of this database. A sink killed right
/// after sending a batch leaves ClickHouse finishing that insert; offsets read before it
/// lands would be stale, and the batch would be loaded twice. The same holds for an insert
/// whose answer was lost: it may still be running when the sink checks whether it landed.
/// One sink loads a database, so any such insert is an earlier attempt of this sink's.
pub async fn await_running_inserts(client: &Client, table: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let running: u64 = client
            .query(
                "SELECT count() FROM system.processes \
                 WHERE query_kind = 'Insert' AND current_database = currentDatabase() \
                 AND (positionCaseInsensitive(query, concat('INSERT INTO ', ?)) > 0 \
                   OR positionCaseInsensitive(query, concat('INSERT INTO `', ?, '`')) > 0)",
            )
            .bind(table)
            .bind(table)
            .fetch_one()
            .await
            .with_context(|| format!("looking for inserts into {table} still running"))?;
        if running == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{running} inserts into {table} still running after 300 s"
        );
        tracing::info!(table, running, "waiting for an earlier insert to finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The highest Kafka offset stored per partition in `table`.
pub async fn stored_offsets(client: &Client, table: &str) -> anyhow::Result<HashMap<i32, i64>> {
    let rows: Vec<Stored> = client
        .query(&format!(
            "SELECT kafka_partition, max(kafka_offset) AS last_offset FROM {table} GROUP BY kafka_partition"
        ))
        .fetch_all()
        .await
        .with_context(|| format!("reading the offsets stored in {table}"))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.kafka_partition, r.last_offset))
        .collect())
}

struct Loader {
    config: Config,
    client: Client,
    consumer: StreamConsumer,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    ledger: Batch<LedgerRow>,
    receipts: Batch<ReceiptRow>,
    quarantine: Batch<QuarantineRow>,
    attempts: Batch<AttemptRow>,
}

/// Applies the migrations, then loads until `shutdown` resolves, then inserts what it holds.
pub async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let client = config
        .client()
        .with_setting("async_insert", "0")
        .with_setting("max_insert_block_size", "1048576");
    let applied = migrations::apply(&client, &config.database).await?;
    tracing::info!(?applied, database = %config.database, "migrations up to date");
    if config.migrate_only {
        return Ok(());
    }
    let client = client.with_database(&config.database);
    let consumer: StreamConsumer = config
        .kafka
        .config(&[
            ("group.id", config.group_id.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("fetch.max.bytes", "52428800"),
            ("queued.max.messages.kbytes", "262144"),
        ])
        .create()
        .context("creating the consumer")?;

    let mut loader = Loader {
        ledger: Batch::new("ledger", &config.ledger_topic),
        receipts: Batch::new("receipts", &config.receipts_topic),
        quarantine: Batch::new("quarantine", &config.quarantine_topic),
        attempts: Batch::new("postback_attempts", &config.attempts_topic),
        config,
        client,
        consumer,
        metrics,
        ready,
    };
    loader.assign().await?;
    loader.ready.store(true, Ordering::SeqCst);
    loader.metrics.clickhouse_up.set(1);

    tokio::pin!(shutdown);
    loop {
        let wait = [
            loader.ledger.deadline(&loader.config),
            loader.receipts.deadline(&loader.config),
            loader.quarantine.deadline(&loader.config),
            loader.attempts.deadline(&loader.config),
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(loader.config.batch_age());
        tokio::select! {
            _ = &mut shutdown => break,
            received = tokio::time::timeout(wait, loader.consumer.recv()) => match received {
                Ok(Ok(m)) => {
                    let row = loader.route(&m);
                    loader.take(row).await?;
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                Err(_elapsed) => {}
            },
        }
        loader.flush_due(false).await?;
    }
    loader.flush_due(true).await?;
    tracing::info!("batches inserted; stopping");
    Ok(())
}

/// A record, decoded into the row of its table.
enum Routed {
    Ledger(Box<LedgerRow>, usize),
    Receipt(ReceiptRow, usize),
    Quarantine(QuarantineRow, usize),
    Attempt(AttemptRow, usize),
    Skipped,
}

impl Loader {
    /// Assigns every partition of the three topics, each from just after what its table holds.
    async fn assign(&self) -> anyhow::Result<()> {
        let tables = [
            (&self.config.ledger_topic, "ledger"),
            (&self.config.receipts_topic, "receipts"),
            (&self.config.quarantine_topic, "quarantine"),
            (&self.config.attempts_topic, "postback_attempts"),
        ];
        // An earlier sink's last insert may still be on its way into ClickHouse (sent, not
        // yet running, or running): wait until no insert runs and the stored offsets hold
        // still for a settle period, so that nothing is resumed from stale offsets.
        let mut stored = Vec::new();
        loop {
            let mut now = Vec::new();
            for (_, table) in tables {
                await_running_inserts(&self.client, table).await?;
                now.push(stored_offsets(&self.client, table).await?);
            }
            if now == stored {
                break;
            }
            stored = now;
            tokio::time::sleep(RESUME_SETTLE).await;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, table), stored) in tables.into_iter().zip(stored) {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), Duration::from_secs(30))
                .with_context(|| format!("metadata of {topic}"))?;
            let partitions = metadata
                .topics()
                .first()
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            anyhow::ensure!(partitions > 0, "topic {topic} has no partitions");
            for p in 0..partitions as i32 {
                let from = stored
                    .get(&p)
                    .map_or(Offset::Beginning, |o| Offset::Offset(o + 1));
                tpl.add_partition_offset(topic, p, from)?;
            }
            tracing::info!(%topic, table, ?stored, "resuming after the offsets stored in ClickHouse");
        }
        self.consumer.assign(&tpl)?;
        Ok(())
    }

    fn route(&self, m: &BorrowedMessage<'_>) -> Routed {
        let at = KafkaPosition {
            partition: m.partition(),
            offset: m.offset(),
        };
        let payload = m.payload().unwrap_or_default();
        let size = payload.len();
        let topic = m.topic();
        let undecodable = |e: &dyn std::fmt::Display| {
            // Kept on Kafka (the topic's retention) and counted; it cannot block the load.
            tracing::error!(topic, partition = at.partition, offset = at.offset, error = %e, "record does not decode; skipped");
            self.metrics.undecodable.with_label_values(&[topic]).inc();
            Routed::Skipped
        };
        if topic == self.config.ledger_topic {
            match decode_entry(payload).map(|entry| LedgerRow::new(entry, at)) {
                Ok(Ok(row)) => Routed::Ledger(Box::new(row), size),
                Ok(Err(e)) => undecodable(&e),
                Err(e) => undecodable(&e),
            }
        } else if topic == self.config.receipts_topic {
            match decode_receipt(payload) {
                Ok(r) => Routed::Receipt(ReceiptRow::new(r, at), size),
                Err(e) => undecodable(&e),
            }
        } else if topic == self.config.quarantine_topic {
            let row = match serde_json::from_slice::<QuarantineRecord>(payload) {
                Ok(q) => QuarantineRow::new(q, at),
                Err(_) => QuarantineRow::unreadable(
                    m.timestamp()
                        .to_millis()
                        .and_then(chrono::DateTime::from_timestamp_millis)
                        .unwrap_or_else(Utc::now),
                    size,
                    at,
                ),
            };
            Routed::Quarantine(row, size)
        } else if topic == self.config.attempts_topic {
            match decode_attempt(payload) {
                Ok(a) => Routed::Attempt(AttemptRow::new(a, at), size),
                Err(e) => undecodable(&e),
            }
        } else {
            Routed::Skipped
        }
    }

    async fn take(&mut self, routed: Routed) -> anyhow::Result<()> {
        let (c, k, cfg, m, r) = (
            &self.client,
            &self.consumer,
            &self.config,
            &self.metrics,
            &self.ready,
        );
        match routed {
            Routed::Ledger(row, size) => add(c, k, &mut self.ledger, *row, size, cfg, m, r).await,
            Routed::Receipt(row, size) => add(c, k, &mut self.receipts, row, size, cfg, m, r).await,
            Routed::Quarantine(row, size) => {
                add(c, k, &mut self.quarantine, row, size, cfg, m, r).await
            }
            Routed::Attempt(row, size) => add(c, k, &mut self.attempts, row, size, cfg, m, r).await,
            Routed::Skipped => Ok(()),
        }
    }

    async fn flush_due(&mut self, all: bool) -> anyhow::Result<()> {
        let now = Instant::now();
        let (c, k, cfg, m, r) = (
            &self.client,
            &self.consumer,
            &self.config,
            &self.metrics,
            &self.ready,
        );
        if all || self.ledger.due(cfg, now) {
            flush(c, k, &mut self.ledger, cfg, m, r).await?;
        }
        if all || self.receipts.due(cfg, now) {
            flush(c, k, &mut self.receipts, cfg, m, r).await?;
        }
        if all || self.quarantine.due(cfg, now) {
            flush(c, k, &mut self.quarantine, cfg, m, r).await?;
        }
        if all || self.attempts.due(cfg, now) {
            flush(c, k, &mut self.attempts, cfg, m, r).await?;
        }
        Ok(())
    }
}

/// Adds a row to its table's batch, inserting the batch first if the row falls in another
/// month (another table partition).
#[allow(clippy::too_many_arguments)]
async fn add<R: RowOwned + RowWrite + TableRow>(
    client: &Client,
    consumer: &StreamConsumer,
    batch: &mut Batch<R>,
    row: R,
    size: usize,
    config: &Config,
    metrics: &Metrics,
    ready: &AtomicBool,
) -> anyhow::Result<()> {
    let month = row.month();
    if batch.month.is_some_and(|m| m != month) {
        flush(client, consumer, batch, config, metrics, ready).await?;
    }
    let at = row.position();
    batch.rows.push(row);
    batch.bytes += size;
    batch.month = Some(month);
    batch.started.get_or_insert_with(Instant::now);
    batch.last.insert(at.partition, at.offset);
    Ok(())
}

async fn insert<R: RowOwned + RowWrite>(
    client: &Client,
    table: &str,
    rows: &[R],
) -> anyhow::Result<()> {
    let mut insert = client
        .insert::<R>(table)
        .await?
        .with_timeouts(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)));
    for row in rows {
        insert.write(row).await?;
    }
    insert.end().await?;
    Ok(())
}

/// Inserts a batch, retrying with back-off while ClickHouse refuses it; the loop (and so
/// the consumer) waits meanwhile, which is the back-pressure. Kafka offsets are committed
/// only after ClickHouse has acknowledged the insert.
async fn flush<R: RowOwned + RowWrite + TableRow>(
    client: &Client,
    consumer: &StreamConsumer,
    batch: &mut Batch<R>,
    config: &Config,
    metrics: &Metrics,
    ready: &AtomicBool,
) -> anyhow::Result<()> {
    if batch.rows.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match insert(client, batch.table, &batch.rows).await {
            Ok(()) => break,
            Err(e) => {
                metrics
                    .insert_errors
                    .with_label_values(&[batch.table])
                    .inc();
                metrics.clickhouse_up.set(0);
                ready.store(false, Ordering::SeqCst);
                tracing::warn!(table = batch.table, rows = batch.rows.len(), error = %e, retry_in = ?delay, "insert failed");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(config.retry_max());
                // The insert may have landed (or still be landing) although the error reached
                // us; it is atomic, so once nothing runs, its last offsets tell.
                if await_running_inserts(client, batch.table).await.is_err() {
                    continue;
                }
                if let Ok(stored) = stored_offsets(client, batch.table).await {
                    if batch
                        .last
                        .iter()
                        .all(|(p, o)| stored.get(p).is_some_and(|s| s >= o))
                    {
                        tracing::info!(table = batch.table, "the failed insert had landed");
                        break;
                    }
                }
            }
        }
    }
    metrics.clickhouse_up.set(1);
    ready.store(true, Ordering::SeqCst);
    metrics
        .rows
        .with_label_values(&[batch.table])
        .inc_by(batch.rows.len() as u64);
    metrics
        .insert_seconds
        .with_label_values(&[batch.table])
        .observe(started.elapsed().as_secs_f64());

    let mut tpl = TopicPartitionList::new();
    for (p, o) in &batch.last {
        tpl.add_partition_offset(&batch.topic, *p, Offset::Offset(o + 1))?;
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::warn!(error = %e, "committing progress to Kafka failed (monitoring only)");
    }
    batch.rows.clear();
    batch.bytes = 0;
    batch.started = None;
    batch.month = None;
    batch.last.clear();
    Ok(())
}
