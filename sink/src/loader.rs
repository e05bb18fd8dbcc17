//! The load loop: Kafka (`read_committed`) to ClickHouse, batched per table, exactly once.
//!
//! Exactly once: every row stores its Kafka partition and offset, and every insert is one
//! atomic block (fewer rows than `max_insert_block_size`, one table partition). On start the
//! sink reads, per table, the highest offset stored for each partition and resumes right
//! after it; Kafka's committed offsets are only reported for monitoring. A crash at any
//! moment leaves each insert wholly stored or wholly absent, and what is absent is read
//! again. An insert whose outcome is unknown (a timeout, a lost connection) is checked the
//! same way before it is retried.
//!
//! Pipelined: a table's batch is inserted in its own task while the loop decodes the next
//! one, so that ClickHouse's work and the sink's overlap. A table has at most one insert
//! in flight, and the next starts only once it has landed: inserts land in offset order,
//! as before, and a table holds at most two batches.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clickhouse::native::Block;
use clickhouse::{Client, Row};
use futures::future::BoxFuture;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use schemas::avro::ledger::{decode_attempt, decode_entry, decode_receipt};
use schemas::QuarantineRecord;
use serde::{Deserialize, Serialize};
use telemetry::kafka::lag::{self, LagContext};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::migrations;
use crate::retry::{self, Failure};
use crate::rows::{
    AttemptRow, KafkaPosition, LedgerRow, NativeRows, QuarantineRow, ReceiptRow, TableRow,
};
use crate::topology::Topology;

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

impl<R: TableRow> Batch<R> {
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

    /// Whether the batch is full, or (when `by_age`) old enough to be inserted.
    fn due(&self, config: &Config, now: Instant, by_age: bool) -> bool {
        !self.rows.is_empty()
            && (self.rows.len() as u64 >= config.batch_rows
                || self.bytes >= config.batch_bytes
                || by_age
                    && self
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

/// The `query_id` of a sink's insert into `table` of rows from `partitions`: another sink
/// (or this one restarted) tells from it whether the insert touches its partitions.
fn insert_tag(table: &str, partitions: impl Iterator<Item = i32>) -> String {
    let list: Vec<String> = partitions.map(|p| p.to_string()).collect();
    format!(
        "{INSERT_TAG}:{table}:{}:{}",
        list.join("."),
        uuid::Uuid::now_v7().simple()
    )
}

const INSERT_TAG: &str = "trackledger-sink";

/// Whether a running insert with `query_id` may hold rows of one of `partitions`: a sink's
/// tagged insert names its partitions; any other insert (an older sink's, a hand-made one)
/// may hold any.
fn touches(query_id: &str, table: &str, partitions: &BTreeSet<i32>) -> bool {
    let mut parts = query_id.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(INSERT_TAG), Some(t), Some(list)) if t == table => list
            .split('.')
            .filter_map(|p| p.parse().ok())
            .any(|p| partitions.contains(&p)),
        (Some(INSERT_TAG), Some(_), Some(_)) => false,
        _ => true,
    }
}

/// Waits until ClickHouse runs no insert into `table` of this database that may hold rows of
/// `partitions`. A sink killed right after sending a batch leaves ClickHouse finishing that
/// insert; offsets read before it lands would be stale, and the batch would be loaded twice.
/// The same holds for an insert whose answer was lost: it may still be running when the
/// sink checks whether it landed. Other sinks' inserts of other partitions do not matter.
pub async fn await_running_inserts(
    client: &Client,
    topology: &Topology,
    table: &str,
    partitions: &BTreeSet<i32>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let running: Vec<String> = client
            .query(&format!(
                "SELECT query_id FROM {} \
                 WHERE query_kind = 'Insert' AND current_database = currentDatabase() \
                 AND (positionCaseInsensitive(query, concat('INSERT INTO ', ?)) > 0 \
                   OR positionCaseInsensitive(query, concat('INSERT INTO `', ?, '`')) > 0)",
                topology.processes()
            ))
            .bind(table)
            .bind(table)
            .fetch_all()
            .await
            .with_context(|| format!("looking for inserts into {table} still running"))?;
        let running = running
            .iter()
            .filter(|id| touches(id, table, partitions))
            .count();
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
pub async fn stored_offsets(
    client: &Client,
    topology: &Topology,
    table: &str,
) -> anyhow::Result<HashMap<i32, i64>> {
    let rows: Vec<Stored> = client
        .query(&format!(
            "SELECT kafka_partition, max(kafka_offset) AS last_offset FROM {table} GROUP BY kafka_partition{}",
            topology.offsets_settings()
        ))
        .fetch_all()
        .await
        .with_context(|| format!("reading the offsets stored in {table}"))?;
    Ok(rows
        .into_iter()
        .map(|r| (r.kafka_partition, r.last_offset))
        .collect())
}

/// Where batches go: ClickHouse, then the Kafka progress report. Everything an insert needs,
/// apart from the batch itself.
struct Inserter {
    config: Config,
    topology: Topology,
    client: Client,
    consumer: StreamConsumer<LagContext>,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    /// Woken when an insert task ends, so that the loop takes its outcome and the batch
    /// that waited for it becomes due.
    landed: Notify,
}

/// One table the sink loads: its name, its topic, how a record of the topic becomes its row,
/// and the batch of rows waiting for it.
struct Table<R> {
    decode: fn(&BorrowedMessage<'_>, KafkaPosition) -> Result<R, String>,
    batch: Batch<R>,
    /// A row of another month than the batch's, held until the batch is inserted.
    next: Option<(R, usize)>,
    /// The previous batch's insert, landing while `batch` fills; it hands the batch back
    /// emptied, to be filled again.
    landing: Option<JoinHandle<anyhow::Result<Batch<R>>>>,
    spare: Option<Batch<R>>,
}

/// What taking a record did.
#[derive(Debug, PartialEq, Eq)]
enum Taken {
    /// Added to the batch, or skipped as undecodable.
    Done,
    /// The row falls in another month (another table partition): the batch must be
    /// inserted first, then the row joins the next one.
    FlushFirst,
}

/// A table as the load loop sees it, whatever its row type.
trait Load: Send {
    fn name(&self) -> &'static str;
    fn topic(&self) -> &str;
    /// Decodes a record of the table's topic into a row and adds it to the batch.
    fn take(&mut self, m: &BorrowedMessage<'_>, at: KafkaPosition, metrics: &Metrics) -> Taken;
    fn due(&self, config: &Config, now: Instant) -> bool;
    fn deadline(&self, config: &Config) -> Option<Instant>;
    /// Hands the batch to its insert, once the previous insert has landed.
    fn flush<'a>(&'a mut self, inserter: &'a Arc<Inserter>) -> BoxFuture<'a, anyhow::Result<()>>;
    /// Waits for the insert in flight, if any: a failure for good is the load's error.
    fn land(&mut self) -> BoxFuture<'_, anyhow::Result<()>>;
    /// Whether the insert in flight has finished, so that `land` returns at once.
    fn landed(&self) -> bool;
}

impl<R: NativeRows + TableRow + Send + Sync + 'static> Load for Table<R> {
    fn name(&self) -> &'static str {
        self.batch.table
    }

    fn topic(&self) -> &str {
        &self.batch.topic
    }

    fn take(&mut self, m: &BorrowedMessage<'_>, at: KafkaPosition, metrics: &Metrics) -> Taken {
        let row = match (self.decode)(m, at) {
            Ok(row) => row,
            Err(e) => {
                // Kept on Kafka (the topic's retention) and counted; it cannot block the load.
                tracing::error!(topic = m.topic(), partition = at.partition, offset = at.offset, error = %e, "record does not decode; skipped");
                metrics.undecodable.with_label_values(&[m.topic()]).inc();
                return Taken::Done;
            }
        };
        let size = m.payload().map_or(0, <[u8]>::len);
        if self.batch.month.is_some_and(|month| month != row.month()) {
            self.next = Some((row, size));
            return Taken::FlushFirst;
        }
        self.batch.push(row, size);
        Taken::Done
    }

    // While the previous insert lands, the batch keeps filling past its age, up to its
    // rows or bytes: it could not be inserted sooner anyway, and a backlog is then loaded
    // in blocks as large as ClickHouse's pace allows, which cost it less per row.
    fn due(&self, config: &Config, now: Instant) -> bool {
        self.batch.due(config, now, self.landing.is_none())
    }

    fn deadline(&self, config: &Config) -> Option<Instant> {
        match self.landing {
            Some(_) => None,
            None => self.batch.deadline(config),
        }
    }

    fn flush<'a>(&'a mut self, inserter: &'a Arc<Inserter>) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.land().await?;
            if !self.batch.rows.is_empty() {
                let empty = self
                    .spare
                    .take()
                    .unwrap_or_else(|| Batch::new(self.batch.table, &self.batch.topic));
                let mut full = std::mem::replace(&mut self.batch, empty);
                let inserter = inserter.clone();
                self.landing = Some(tokio::spawn(async move {
                    let landed = inserter.flush(&mut full).await.map(|()| full);
                    inserter.landed.notify_one();
                    landed
                }));
            }
            if let Some((row, size)) = self.next.take() {
                self.batch.push(row, size);
            }
            Ok(())
        })
    }

    fn land(&mut self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            if let Some(landing) = self.landing.take() {
                let emptied = landing
                    .await
                    .with_context(|| format!("the insert task of {} ended", self.batch.table))??;
                self.spare = Some(emptied);
            }
            Ok(())
        })
    }

    fn landed(&self) -> bool {
        self.landing.as_ref().is_some_and(JoinHandle::is_finished)
    }
}

fn table<R: NativeRows + TableRow + Send + Sync + 'static>(
    name: &'static str,
    topic: &str,
    decode: fn(&BorrowedMessage<'_>, KafkaPosition) -> Result<R, String>,
) -> Box<dyn Load> {
    Box::new(Table {
        decode,
        batch: Batch::new(name, topic),
        next: None,
        landing: None,
        spare: None,
    })
}

fn payload<'a>(m: &'a BorrowedMessage<'_>) -> &'a [u8] {
    m.payload().unwrap_or_default()
}

/// The tables the sink loads, each from its topic: the one list of them.
fn tables(config: &Config) -> Vec<Box<dyn Load>> {
    vec![
        table("ledger", &config.ledger_topic, |m, at| {
            let entry = decode_entry(payload(m)).map_err(|e| e.to_string())?;
            LedgerRow::new(entry, at).map_err(|e| e.to_string())
        }),
        table("receipts", &config.receipts_topic, |m, at| {
            decode_receipt(payload(m))
                .map(|r| ReceiptRow::new(r, at))
                .map_err(|e| e.to_string())
        }),
        table("quarantine", &config.quarantine_topic, |m, at| {
            // A record that is not even JSON is still counted, under its own reason.
            Ok(
                match serde_json::from_slice::<QuarantineRecord>(payload(m)) {
                    Ok(q) => QuarantineRow::new(q, at),
                    Err(_) => QuarantineRow::unreadable(
                        m.timestamp()
                            .to_millis()
                            .and_then(chrono::DateTime::from_timestamp_millis)
                            .unwrap_or_else(Utc::now),
                        payload(m).len(),
                        at,
                    ),
                },
            )
        }),
        table("postback_attempts", &config.attempts_topic, |m, at| {
            decode_attempt(payload(m))
                .map(|a| AttemptRow::new(a, at))
                .map_err(|e| e.to_string())
        }),
    ]
}

/// Applies the migrations, then loads until `shutdown` resolves, then inserts what it holds.
pub async fn run(
    config: Config,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    config.check()?;
    let client = config
        .client()?
        .with_setting("async_insert", "0")
        .with_setting("max_insert_block_size", "1048576");
    let topology = config.topology()?;
    let applied = migrations::apply(&client, &config.database, &topology)
        .await
        .map_err(|e| config.clickhouse.diagnose(e))?;
    tracing::info!(?applied, database = %config.database, "migrations up to date");
    config
        .reporting
        .publish(&client.clone().with_database(&config.database))
        .await?;
    if config.migrate_only {
        return Ok(());
    }
    let topics = [
        &config.ledger_topic,
        &config.receipts_topic,
        &config.quarantine_topic,
        &config.attempts_topic,
    ];
    config
        .kafka
        .check_async(&topics.map(String::as_str), Some(&config.group_id))
        .await?;
    let client = client.with_database(&config.database);
    let consumer: StreamConsumer<LagContext> = config
        .kafka
        .config(&[
            ("group.id", config.group_id.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("fetch.max.bytes", "52428800"),
            ("queued.max.messages.kbytes", "262144"),
            lag::STATISTICS_INTERVAL,
        ])
        .create_with_context(LagContext::new(metrics.consumer_lag.clone()))
        .context("creating the consumer")?;

    let mut tables = tables(&config);
    let inserter = Arc::new(Inserter {
        config,
        topology,
        client,
        consumer,
        metrics,
        ready,
        landed: Notify::new(),
    });
    inserter.assign(&tables).await?;
    inserter.ready.store(true, Ordering::SeqCst);
    inserter.metrics.clickhouse_up.set(1);

    tokio::pin!(shutdown);
    loop {
        let wait = tables
            .iter()
            .filter_map(|t| t.deadline(&inserter.config))
            .min()
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(inserter.config.batch_age());
        tokio::select! {
            _ = &mut shutdown => break,
            _ = inserter.landed.notified() => {}
            received = tokio::time::timeout(wait, inserter.consumer.recv()) => match received {
                Ok(Ok(m)) => {
                    let at = KafkaPosition { partition: m.partition(), offset: m.offset() };
                    if let Some(table) = tables.iter_mut().find(|t| t.topic() == m.topic()) {
                        if table.take(&m, at, &inserter.metrics) == Taken::FlushFirst {
                            table.flush(&inserter).await?;
                        }
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                Err(_elapsed) => {}
            },
        }
        let now = Instant::now();
        for table in &mut tables {
            if table.landed() {
                table.land().await?;
            }
            if table.due(&inserter.config, now) {
                table.flush(&inserter).await?;
            }
        }
    }
    for table in &mut tables {
        table.flush(&inserter).await?;
    }
    for table in &mut tables {
        table.land().await?;
    }
    tracing::info!("batches inserted; stopping");
    Ok(())
}

impl<R> Batch<R> {
    fn push(&mut self, row: R, size: usize)
    where
        R: TableRow,
    {
        let at = row.position();
        self.month = Some(row.month());
        self.rows.push(row);
        self.bytes += size;
        self.started.get_or_insert_with(Instant::now);
        self.last.insert(at.partition, at.offset);
    }

    /// Names the batch by its table, size and last offset per partition: a batch read
    /// again from the same offsets is the same rows.
    fn token(&self) -> String {
        let mut last: Vec<_> = self.last.iter().collect();
        last.sort();
        let last: Vec<String> = last.iter().map(|(p, o)| format!("{p}@{o}")).collect();
        format!("{}:{}:{}", self.table, self.rows.len(), last.join(","))
    }

    fn clear(&mut self) {
        self.rows.clear();
        self.bytes = 0;
        self.started = None;
        self.month = None;
        self.last.clear();
    }
}

impl Inserter {
    /// Assigns this sink's partitions of the tables' topics (all of them, unless several
    /// sinks share the database), each from just after what its table holds.
    async fn assign(&self, tables: &[Box<dyn Load>]) -> anyhow::Result<()> {
        let mut owned = Vec::new();
        for table in tables {
            let topic = table.topic();
            let partitions =
                telemetry::topic::partition_count(&self.consumer, topic, Duration::from_secs(30))
                    .with_context(|| format!("metadata of {topic}"))?;
            anyhow::ensure!(partitions > 0, "topic {topic} has no partitions");
            let mine: BTreeSet<i32> = (0..partitions).filter(|p| self.config.owns(*p)).collect();
            owned.push(mine);
        }
        // An earlier sink's last insert of these partitions may still be on its way into
        // ClickHouse (sent, not yet running, or running): wait until none runs and their
        // stored offsets hold still for a settle period, so that nothing is resumed from
        // stale offsets.
        let mut stored = Vec::new();
        loop {
            let mut now = Vec::new();
            for (table, mine) in tables.iter().zip(&owned) {
                await_running_inserts(&self.client, &self.topology, table.name(), mine).await?;
                let mut offsets =
                    stored_offsets(&self.client, &self.topology, table.name()).await?;
                offsets.retain(|p, _| mine.contains(p));
                now.push(offsets);
            }
            if now == stored {
                break;
            }
            stored = now;
            tokio::time::sleep(RESUME_SETTLE).await;
        }
        let mut tpl = TopicPartitionList::new();
        for ((table, stored), mine) in tables.iter().zip(stored).zip(&owned) {
            let topic = table.topic();
            for p in mine {
                let from = stored
                    .get(p)
                    .map_or(Offset::Beginning, |o| Offset::Offset(o + 1));
                tpl.add_partition_offset(topic, *p, from)?;
            }
            tracing::info!(%topic, table = table.name(), partitions = ?mine, ?stored, "resuming after the offsets stored in ClickHouse");
        }
        self.consumer.assign(&tpl)?;
        Ok(())
    }

    /// Inserts a batch, retrying with back-off while ClickHouse is unavailable; the loop
    /// fills the table's next batch meanwhile, then waits (and so does the consumer), which
    /// is the back-pressure. A permanent error (`retry::classify`) stops the sink with the
    /// reason instead: nothing is lost, since the batch's offsets were neither stored nor
    /// committed. Kafka offsets are committed only after ClickHouse has acknowledged the
    /// insert.
    async fn flush<R: NativeRows + TableRow>(&self, batch: &mut Batch<R>) -> anyhow::Result<()> {
        if batch.rows.is_empty() {
            return Ok(());
        }
        let block = R::block(&batch.rows)
            .with_context(|| format!("encoding a batch of {}", batch.table))?;
        let (rows, token) = (batch.rows.len(), batch.token());
        // The block holds the rows now, and a retry sends it again: their memory goes back
        // before the insert rather than after it.
        batch.rows.clear();
        let (client, metrics) = (&self.client, &self.metrics);
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            let partitions: BTreeSet<i32> = batch.last.keys().copied().collect();
            let tag = insert_tag(batch.table, partitions.iter().copied());
            match self.insert(batch.table, &block, &tag, &token).await {
                Ok(()) => break,
                Err(e) => {
                    metrics
                        .insert_errors
                        .with_label_values(&[batch.table])
                        .inc();
                    self.ready.store(false, Ordering::SeqCst);
                    if retry::classify(&e) == Failure::Permanent {
                        tracing::error!(table = batch.table, rows, error = %e, "insert refused for good; stopping");
                        return Err(e.context(format!(
                            "ClickHouse refused an insert into {} for a reason a retry cannot fix \
                             (a missing table or column, a type mismatch, an access error): check \
                             the migrations and the sink's user, then restart; the batch is read \
                             again from Kafka",
                            batch.table
                        )));
                    }
                    metrics.clickhouse_up.set(0);
                    tracing::warn!(table = batch.table, rows, error = %e, retry_in = ?delay, "insert failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.config.retry_max());
                    // The insert may have landed (or still be landing) although the error
                    // reached us; it is atomic, so once nothing runs, its last offsets tell.
                    if await_running_inserts(client, &self.topology, batch.table, &partitions)
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    if let Ok(stored) = stored_offsets(client, &self.topology, batch.table).await {
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
        self.ready.store(true, Ordering::SeqCst);
        metrics
            .rows
            .with_label_values(&[batch.table])
            .inc_by(rows as u64);
        metrics
            .insert_seconds
            .with_label_values(&[batch.table])
            .observe(started.elapsed().as_secs_f64());
        metrics
            .insert_rows
            .with_label_values(&[batch.table])
            .observe(rows as f64);

        let mut tpl = TopicPartitionList::new();
        for (p, o) in &batch.last {
            tpl.add_partition_offset(&batch.topic, *p, Offset::Offset(o + 1))?;
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "committing progress to Kafka failed (monitoring only)");
        }
        batch.clear();
        Ok(())
    }
}

impl Inserter {
    /// One attempt at inserting a batch's `block` into `table`: one block in ClickHouse's
    /// columnar `Native` format. A column the table lacks is refused
    /// (`input_format_skip_unknown_fields=0`) rather than dropped. On a cluster the insert
    /// waits for its quorum of replicas, and carries the batch's `token`, which makes a retry
    /// of the same batch a no-op on any replica that already holds it.
    async fn insert(
        &self,
        table: &str,
        block: &Block,
        tag: &str,
        token: &str,
    ) -> anyhow::Result<()> {
        let mut insert = self
            .client
            .insert_native(table)
            .with_setting("query_id", tag)
            .with_setting("input_format_skip_unknown_fields", "0")
            .with_timeouts(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)));
        for (name, value) in self
            .topology
            .insert_settings(&self.config.insert_quorum, token.to_owned())
        {
            insert = insert.with_setting(name, value);
        }
        insert.write(block).await?;
        insert.end().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_insert_blocks_only_the_sinks_of_its_partitions() {
        let tag = insert_tag("ledger", [0, 3].into_iter());
        assert!(tag.starts_with("trackledger-sink:ledger:0.3:"), "{tag}");
        let mine = |ps: &[i32]| ps.iter().copied().collect::<BTreeSet<i32>>();
        assert!(touches(&tag, "ledger", &mine(&[3, 4])));
        assert!(!touches(&tag, "ledger", &mine(&[1, 4])));
        // Another table's insert never; ClickHouse's describe query of the insert as the
        // insert; an untagged insert (an older sink's) always.
        assert!(!touches(&tag, "receipts", &mine(&[0])));
        assert!(touches(&format!("{tag}-describe"), "ledger", &mine(&[0])));
        assert!(touches("3f2a0c1e-anything", "ledger", &mine(&[5])));
    }
}
