//! The capping stage: consume `ledger.capping.v1` (`read_committed`, keyed by offer), decide
//! each entry against its offer's caps, and write the entry to the ledger, its postbacks (for
//! a counted conversion only), the state changes and the input offsets in one transaction.
//!
//! It runs on its own thread in every processor instance, as its own consumer group
//! (`<group-id>-caps`) with its own transactional id (`<group-id>-caps-<instance-id>`), so
//! its partitions move between instances like the ledger stage's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::ClientContext;
use schemas::avro::ledger::{decode_entry, encode_entry};
use schemas::caps::CapRecord;
use schemas::validate::FieldError;

use super::{CapBook, CapsFile};
use crate::config::Config;
use crate::exactly_once::{enqueue_postbacks, quarantine};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::restore::{read_changelog, ChangelogSource};
use crate::transaction::{
    finish, partitions, patiently, seek_to_committed, stage_consumer, Transaction, TxnError,
};

/// The quarantine reason of a capping record that is not a ledger entry (a bug upstream).
const UNDECODABLE_ENTRY: &str = "undecodable_ledger_entry";

struct Stage {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    caps: CapsFile,
    outbox: Outbox,
    txn: Transaction,
    books: HashMap<i32, CapBook>,
    fatal: Option<anyhow::Error>,
}

struct RebalanceHook {
    stage: Arc<Mutex<Stage>>,
}

impl ClientContext for RebalanceHook {}

impl ConsumerContext for RebalanceHook {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut stage = lock(&self.stage);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                if let Err(e) = stage.commit(consumer) {
                    tracing::warn!(error = %e, "caps transaction not committed at revocation");
                    if let TxnError::Fatal(e) = e {
                        stage.fatal = Some(e);
                    }
                }
                for p in partitions(tpl) {
                    stage.books.remove(&p);
                }
                tracing::info!(partitions = ?partitions(tpl), "capping partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                if let Err(e) = stage.restore(&assigned) {
                    stage.fatal = Some(e);
                    return;
                }
                tracing::info!(partitions = ?assigned, "capping partitions assigned and restored");
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "capping rebalance failed"),
        }
    }
}

fn lock(stage: &Mutex<Stage>) -> MutexGuard<'_, Stage> {
    stage
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Stage {
    fn restore(&mut self, assigned: &[i32]) -> anyhow::Result<()> {
        let started = Instant::now();
        let group = format!("{}-caps", self.config.group_id);
        let source = ChangelogSource {
            kafka: &self.config.kafka,
            topic: &self.config.caps_state_topic,
            group_id: &group,
        };
        let mut books: HashMap<i32, CapBook> =
            assigned.iter().map(|p| (*p, CapBook::default())).collect();
        let records = read_changelog(&source, assigned, |partition, key, value| {
            let record = CapRecord::decode(key, value).map_err(anyhow::Error::msg)?;
            if let Some(book) = books.get_mut(&partition) {
                book.restore(record);
            }
            Ok(())
        })?;
        tracing::info!(
            records,
            seconds = started.elapsed().as_secs_f64(),
            "caps state restored"
        );
        self.books = books;
        self.update_state_gauges();
        Ok(())
    }

    fn update_state_gauges(&self) {
        let (usage, verdicts) = self.books.values().fold((0, 0), |(u, v), b| {
            let (bu, bv) = b.len();
            (u + bu, v + bv)
        });
        let keys = &self.metrics.caps_state_keys;
        keys.with_label_values(&["usage"]).set(usage as i64);
        keys.with_label_values(&["verdict"]).set(verdicts as i64);
    }

    fn send_state(&self, partition: i32, records: &[CapRecord]) -> Result<(), TxnError> {
        for record in records {
            let value = record.value();
            self.txn.send(
                &self.config.caps_state_topic,
                partition,
                &record.key(),
                value.as_deref(),
            )?;
        }
        Ok(())
    }

    fn process(&mut self, m: &BorrowedMessage<'_>, now: Instant) -> Result<(), TxnError> {
        self.txn.begin()?;
        let partition = m.partition();
        self.caps.refresh(now, &self.metrics);
        let mut entry = match decode_entry(m.payload().unwrap_or_default()) {
            Ok(entry) => entry,
            Err(e) => {
                quarantine(
                    &self.txn,
                    &self.config.quarantine_topic,
                    m,
                    UNDECODABLE_ENTRY,
                    vec![FieldError::new("value", e.to_string())],
                )?;
                self.txn.consumed(partition, m.offset());
                return Ok(());
            }
        };
        let Some(book) = self.books.get_mut(&partition) else {
            // Cannot happen: restore runs before an assignment takes effect.
            tracing::error!(
                partition,
                offset = m.offset(),
                "capping record without state"
            );
            return Ok(());
        };
        let decision = book.apply(self.caps.caps(), &mut entry, Utc::now().timestamp_millis());
        if decision.decided {
            let verdict = match &decision.over_cap {
                Some(cap) => {
                    self.metrics.over_cap.with_label_values(&[cap]).inc();
                    tracing::info!(conversion = %entry.conversion_key, cap, "conversion over its cap");
                    "over_cap"
                }
                None => "counted",
            };
            self.metrics
                .cap_decisions
                .with_label_values(&[verdict])
                .inc();
        }
        let value = encode_entry(&entry).map_err(|e| TxnError::Fatal(e.into()))?;
        // The ledger partition the ledger stage would have written: the conversion's own.
        let out = entry.input_partition;
        self.txn.send(
            &self.config.ledger_topic,
            out,
            entry.conversion_key.as_bytes(),
            Some(&value),
        )?;
        if decision.forward {
            enqueue_postbacks(
                &self.txn,
                &self.outbox,
                &self.config.outbox_topic,
                out,
                &entry,
                &self.metrics,
            )?;
        }
        self.send_state(partition, &decision.changed)?;
        self.txn.consumed(partition, m.offset());
        self.metrics.capping_entries.inc();
        Ok(())
    }

    /// Drops verdicts and periods older than the dedup window, inside the open transaction.
    fn sweep(&mut self) -> Result<(), TxnError> {
        self.txn.begin()?;
        let window = chrono::Duration::from_std(self.config.dedup_window()).unwrap_or_default();
        let horizon = (Utc::now() - window).timestamp_millis();
        let mut expired = Vec::new();
        for (p, book) in &mut self.books {
            expired.push((*p, book.expire(horizon)));
        }
        for (p, records) in expired {
            self.send_state(p, &records)?;
        }
        self.update_state_gauges();
        Ok(())
    }

    fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), TxnError> {
        if !self.txn.is_open() {
            return Ok(());
        }
        let result = self.txn.commit(consumer);
        let label = match &result {
            Ok(()) => "committed",
            Err(TxnError::Aborted(_)) => "aborted",
            Err(TxnError::Fatal(_)) => return result,
        };
        self.metrics
            .caps_transactions
            .with_label_values(&[label])
            .inc();
        result
    }

    fn rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> anyhow::Result<()> {
        let assigned = partitions(&consumer.assignment()?);
        self.restore(&assigned)?;
        seek_to_committed(consumer)?;
        tracing::warn!(partitions = ?assigned, "capping stage rewound after an abort");
        Ok(())
    }
}

/// Runs the capping stage until `shutdown` is set, then commits and leaves its group.
pub fn run(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    caps: CapsFile,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let outbox = Outbox::load(config.destinations_file.as_deref())?;
    let group = format!("{}-caps", config.group_id);
    let txn = Transaction::init(
        &config.kafka,
        &format!("{group}-{}", config.instance_id()),
        config.transaction_timeout_ms,
        &config.capping_topic,
    )?;
    tracing::info!(caps = caps.caps().iter().count(), "capping stage starting");
    let stage = Arc::new(Mutex::new(Stage {
        config: config.clone(),
        metrics,
        caps,
        outbox,
        txn,
        books: HashMap::new(),
        fatal: None,
    }));
    let consumer = stage_consumer(
        &config.kafka,
        &group,
        config.session_timeout_ms,
        &config.capping_topic,
        &[],
        RebalanceHook {
            stage: stage.clone(),
        },
    )?;

    let mut last_sweep = Instant::now();
    let mut last_gauges = Instant::now();
    let result = loop {
        if shutdown.load(Ordering::SeqCst) {
            break Ok(());
        }
        let polled = consumer.poll(Duration::from_millis(50));
        let now = Instant::now();
        let mut stage = lock(&stage);
        if let Some(fatal) = stage.fatal.take() {
            break Err(fatal);
        }
        let step = match polled {
            Some(Ok(m)) => stage.process(&m, now),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "capping consumer error");
                Ok(())
            }
            None => Ok(()),
        };
        let step = step.and_then(|()| {
            if now.duration_since(last_sweep) >= config.sweep_interval() && !stage.books.is_empty()
            {
                last_sweep = now;
                stage.sweep()?;
            }
            if stage
                .txn
                .due(now, config.max_transaction_events, config.commit_interval())
            {
                stage.commit(&consumer)?;
            }
            Ok(())
        });
        match step {
            Ok(()) => {}
            Err(TxnError::Aborted(e)) => {
                tracing::warn!(error = %e, "caps transaction aborted");
                stage.txn.abort();
                if let Err(e) = patiently("rewinding the capping stage", || stage.rewind(&consumer))
                {
                    break Err(e);
                }
            }
            Err(TxnError::Fatal(e)) => break Err(e.context("caps transaction failed")),
        }
        stage.txn.producer.poll(Duration::ZERO);
        if now.duration_since(last_gauges) >= Duration::from_secs(5) {
            last_gauges = now;
            stage.update_state_gauges();
        }
    };
    let closing = lock(&stage).commit(&consumer);
    consumer.unsubscribe();
    drop(consumer);
    finish("capping", result, closing)
}
