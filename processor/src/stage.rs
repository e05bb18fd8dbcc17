//! The driver of the processor's keyed stages, the capping stage ([`crate::caps::stage`]) and
//! the click-ID stage ([`crate::click_ids::stage`]): each consumes one topic the ledger stage
//! writes (`read_committed`, keyed by what the stage must see together), keeps state per
//! partition in a compacted changelog, and writes its output, its state changes and its input
//! offsets in one transaction.
//!
//! Each runs on its own thread in every processor instance, as its own consumer group
//! (`<group-id>-<suffix>`) with its own transactional id (`<group-id>-<suffix>-<instance-id>`),
//! so its partitions move between instances like the ledger stage's. The driver owns the
//! loop, the rebalance hooks, each partition's state, its restore from the changelog, the
//! commits and the rewind after an abort; a stage says only what it does with a record, how
//! a changelog record restores and what expires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::ClientContext;
use schemas::avro::ledger::{decode_entry, encode_outbox};
use schemas::validate::FieldError;
use schemas::LedgerEntry;

use crate::config::Config;
use crate::exactly_once::quarantine;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::restore::{read_changelog, ChangelogSource};
use crate::transaction::{
    finish, partitions, patiently, seek_to_committed, stage_consumer, Transaction, TxnError,
};

/// What one keyed stage does; the driver ([`run`]) does the rest, and holds each assigned
/// partition's state (its `Book`).
pub(crate) trait KeyedStage: Send + 'static {
    /// The stage's name in logs and errors ("capping").
    const NAME: &'static str;
    /// One partition's state.
    type Book: Default + Send;
    /// The stage's compacted changelog, which its books are restored from.
    fn changelog_topic(&self) -> &str;
    /// Applies one changelog record (`None`: a tombstone) to its partition's book.
    fn restore_record(
        book: &mut Self::Book,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> anyhow::Result<()>;
    /// Applies one input record, with its partition's book, inside the open transaction; the
    /// driver marks it consumed.
    fn process(
        &mut self,
        book: &mut Self::Book,
        txn: &Transaction,
        m: &BorrowedMessage<'_>,
        now: Instant,
    ) -> Result<(), TxnError>;
    /// Drops expired state inside the open transaction.
    fn sweep(
        &mut self,
        books: &mut HashMap<i32, Self::Book>,
        txn: &Transaction,
    ) -> Result<(), TxnError>;
    /// Sets the stage's state gauges.
    fn update_gauges(&self, books: &HashMap<i32, Self::Book>);
    /// Counts one transaction by outcome: `committed` or `aborted`.
    fn count_transaction(&self, outcome: &str);
}

/// The entry a record of a keyed stage's input holds; a record that is not one is quarantined
/// (only the processor writes these topics, so it would be a bug, kept for inspection).
pub(crate) fn entry_or_quarantine(
    txn: &Transaction,
    quarantine_topic: &str,
    m: &BorrowedMessage<'_>,
) -> Result<Option<LedgerEntry>, TxnError> {
    match decode_entry(m.payload().unwrap_or_default()) {
        Ok(entry) => Ok(Some(entry)),
        Err(e) => {
            quarantine(
                txn,
                quarantine_topic,
                m,
                UNDECODABLE_ENTRY,
                vec![FieldError::new("value", e.to_string())],
            )?;
            Ok(None)
        }
    }
}

/// Writes an entry to the ledger and, when `forward`, its postbacks (one outbox record per
/// destination that takes it), both at the partition of the entry's input: the conversion's
/// own, whichever stage writes it. A duplicate input makes no entry, and so no second forward.
pub(crate) fn to_ledger(
    txn: &Transaction,
    config: &Config,
    outbox: &Outbox,
    metrics: &Metrics,
    (entry, value): (&LedgerEntry, &[u8]),
    forward: bool,
) -> Result<(), TxnError> {
    let out = entry.input_partition;
    txn.send(
        &config.ledger_topic,
        out,
        entry.conversion_key.as_bytes(),
        Some(value),
    )?;
    if !forward {
        return Ok(());
    }
    for record in outbox.records(entry, Utc::now()) {
        let value = encode_outbox(&record).map_err(|e| TxnError::Fatal(e.into()))?;
        txn.send(
            &config.outbox_topic,
            out,
            record.idempotency_key.as_bytes(),
            Some(&value),
        )?;
        metrics
            .outbox_records
            .with_label_values(&[&record.destination])
            .inc();
    }
    Ok(())
}

/// Sends a capped offer's conversion entry on to the capping stage, keyed by the offer.
pub(crate) fn to_capping(
    txn: &Transaction,
    config: &Config,
    metrics: &Metrics,
    offer: &str,
    value: &[u8],
) -> Result<(), TxnError> {
    txn.send(&config.capping_topic, -1, offer.as_bytes(), Some(value))?;
    metrics.capping_routed.inc();
    Ok(())
}

/// The quarantine reason of a keyed stage's record that is not a ledger entry.
const UNDECODABLE_ENTRY: &str = "undecodable_ledger_entry";

/// Where a stage reads and under which names it runs.
pub(crate) struct StageSpec<'a> {
    /// Appended to the processor's group id: the stage's group, and with the instance id its
    /// transactional id.
    pub suffix: &'a str,
    pub input_topic: &'a str,
}

impl StageSpec<'_> {
    pub fn group(&self, config: &Config) -> String {
        format!("{}-{}", config.group_id, self.suffix)
    }
}

struct Driver<S: KeyedStage> {
    stage: S,
    books: HashMap<i32, S::Book>,
    config: Arc<Config>,
    group: String,
    txn: Transaction,
    /// Set by a rebalance callback that hit an error the loop must stop on.
    fatal: Option<anyhow::Error>,
}

impl<S: KeyedStage> Driver<S> {
    fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), TxnError> {
        if !self.txn.is_open() {
            return Ok(());
        }
        let result = self.txn.commit(consumer);
        match &result {
            Ok(()) => self.stage.count_transaction("committed"),
            Err(TxnError::Aborted(_)) => self.stage.count_transaction("aborted"),
            Err(TxnError::Fatal(_)) => {}
        }
        result
    }

    fn step(&mut self, m: &BorrowedMessage<'_>, now: Instant) -> Result<(), TxnError> {
        self.txn.begin()?;
        match self.books.get_mut(&m.partition()) {
            Some(book) => self.stage.process(book, &self.txn, m, now)?,
            // Cannot happen: restore runs before an assignment takes effect.
            None => tracing::error!(
                stage = S::NAME,
                partition = m.partition(),
                offset = m.offset(),
                "record without state"
            ),
        }
        self.txn.consumed(m.partition(), m.offset());
        Ok(())
    }

    /// Rebuilds the books of `assigned` from the changelog.
    fn restore(&mut self, assigned: &[i32]) -> anyhow::Result<()> {
        let started = Instant::now();
        let source = ChangelogSource {
            kafka: &self.config.kafka,
            topic: self.stage.changelog_topic(),
            group_id: &self.group,
        };
        let mut books: HashMap<i32, S::Book> =
            assigned.iter().map(|p| (*p, S::Book::default())).collect();
        let records = read_changelog(&source, assigned, |partition, key, value| {
            match books.get_mut(&partition) {
                Some(book) => S::restore_record(book, key, value),
                None => Ok(()),
            }
        })?;
        tracing::info!(
            stage = S::NAME,
            records,
            seconds = started.elapsed().as_secs_f64(),
            "state restored"
        );
        self.books = books;
        self.stage.update_gauges(&self.books);
        Ok(())
    }

    /// After an abort the state in memory is ahead of Kafka: rebuild it from the changelog
    /// and rewind the input to the committed offsets.
    fn rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> anyhow::Result<()> {
        let assigned = partitions(&consumer.assignment()?);
        self.restore(&assigned)?;
        seek_to_committed(consumer)?;
        tracing::warn!(stage = S::NAME, partitions = ?assigned, "stage rewound after an abort");
        Ok(())
    }
}

struct RebalanceHook<S: KeyedStage> {
    driver: Arc<Mutex<Driver<S>>>,
}

impl<S: KeyedStage> ClientContext for RebalanceHook<S> {}

impl<S: KeyedStage> ConsumerContext for RebalanceHook<S> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut driver = lock(&self.driver);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                if let Err(e) = driver.commit(consumer) {
                    // Aborted work is redone by the partitions' next owner.
                    tracing::warn!(stage = S::NAME, error = %e, "transaction not committed at revocation");
                    if let TxnError::Fatal(e) = e {
                        driver.fatal = Some(e);
                    }
                }
                for p in partitions(tpl) {
                    driver.books.remove(&p);
                }
                tracing::info!(stage = S::NAME, partitions = ?partitions(tpl), "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                // Restored before the assignment takes effect, so no record meets missing state.
                if let Err(e) = driver.restore(&assigned) {
                    driver.fatal = Some(e);
                    return;
                }
                tracing::info!(stage = S::NAME, partitions = ?assigned, "partitions assigned and restored");
            }
            Rebalance::Error(e) => {
                tracing::error!(stage = S::NAME, error = %e, "rebalance failed")
            }
        }
    }
}

fn lock<S: KeyedStage>(driver: &Mutex<Driver<S>>) -> MutexGuard<'_, Driver<S>> {
    driver
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `stage` until `shutdown` is set, then commits and leaves its group.
pub(crate) fn run<S: KeyedStage>(
    config: Arc<Config>,
    spec: &StageSpec<'_>,
    stage: S,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let group = spec.group(&config);
    let txn = Transaction::init(
        &config.kafka,
        &format!("{group}-{}", config.instance_id()),
        config.transaction_timeout_ms,
        spec.input_topic,
    )?;
    let driver = Arc::new(Mutex::new(Driver {
        stage,
        books: HashMap::new(),
        config: config.clone(),
        group: group.clone(),
        txn,
        fatal: None,
    }));
    let consumer = stage_consumer(
        &config.kafka,
        &group,
        config.session_timeout_ms,
        spec.input_topic,
        &[],
        RebalanceHook {
            driver: driver.clone(),
        },
    )?;
    let rewinding = format!("rewinding the {} stage", S::NAME);

    let mut last_sweep = Instant::now();
    let mut last_gauges = Instant::now();
    let result = loop {
        if shutdown.load(Ordering::SeqCst) {
            break Ok(());
        }
        let polled = consumer.poll(Duration::from_millis(50));
        let now = Instant::now();
        let mut driver = lock(&driver);
        if let Some(fatal) = driver.fatal.take() {
            break Err(fatal);
        }
        let step = match polled {
            Some(Ok(m)) => driver.step(&m, now),
            Some(Err(e)) => {
                tracing::warn!(stage = S::NAME, error = %e, "consumer error");
                Ok(())
            }
            None => Ok(()),
        };
        let step = step.and_then(|()| {
            if now.duration_since(last_sweep) >= config.sweep_interval() && !driver.books.is_empty()
            {
                last_sweep = now;
                driver.txn.begin()?;
                let Driver {
                    stage, books, txn, ..
                } = &mut *driver;
                stage.sweep(books, txn)?;
                stage.update_gauges(books);
            }
            if driver
                .txn
                .due(now, config.max_transaction_events, config.commit_interval())
            {
                driver.commit(&consumer)?;
            }
            Ok(())
        });
        match step {
            Ok(()) => {}
            Err(TxnError::Aborted(e)) => {
                tracing::warn!(stage = S::NAME, error = %e, "transaction aborted");
                driver.txn.abort();
                if let Err(e) = patiently(&rewinding, || driver.rewind(&consumer)) {
                    break Err(e);
                }
            }
            Err(TxnError::Fatal(e)) => {
                break Err(e.context(format!("{} transaction failed", S::NAME)))
            }
        }
        // Serves delivery reports; commit_transaction waits for the outstanding ones.
        driver.txn.producer.poll(Duration::ZERO);
        if now.duration_since(last_gauges) >= Duration::from_secs(5) {
            last_gauges = now;
            driver.stage.update_gauges(&driver.books);
        }
    };
    let closing = lock(&driver).commit(&consumer);
    consumer.unsubscribe();
    drop(consumer);
    finish(S::NAME, result, closing)
}
