//! The capping stage: consume `ledger.capping.v1` (`read_committed`, keyed by offer), decide
//! each entry against its offer's caps, and write the entry to the ledger, its postbacks (for
//! a counted conversion only), the state changes and the input offsets in one transaction.
//!
//! It runs under the keyed-stage driver ([`crate::stage`]) as group `<group-id>-caps`, with
//! transactional id `<group-id>-caps-<instance-id>`.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use rdkafka::message::{BorrowedMessage, Message};
use schemas::avro::ledger::encode_entry;
use schemas::caps::CapRecord;

use super::{CapBook, CapsFile};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::stage::{entry_or_quarantine, to_ledger, KeyedStage, StageSpec};
use crate::transaction::{Transaction, TxnError};

/// The capping stage's group suffix: `<group-id>-caps`.
const SUFFIX: &str = "caps";

struct Capping {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    caps: CapsFile,
    outbox: Outbox,
}

impl Capping {
    fn send_state(
        &self,
        txn: &Transaction,
        partition: i32,
        records: &[CapRecord],
    ) -> Result<(), TxnError> {
        for record in records {
            let value = record.value();
            txn.send(
                &self.config.caps_state_topic,
                partition,
                &record.key(),
                value.as_deref(),
            )?;
        }
        Ok(())
    }
}

impl KeyedStage for Capping {
    const NAME: &'static str = "capping";
    type Book = CapBook;

    fn changelog_topic(&self) -> &str {
        &self.config.caps_state_topic
    }

    fn restore_record(book: &mut CapBook, key: &[u8], value: Option<&[u8]>) -> anyhow::Result<()> {
        book.restore(CapRecord::decode(key, value).map_err(anyhow::Error::msg)?);
        Ok(())
    }

    fn update_gauges(&self, books: &HashMap<i32, CapBook>) {
        let (usage, verdicts) = books.values().fold((0, 0), |(u, v), b| {
            let (bu, bv) = b.len();
            (u + bu, v + bv)
        });
        let keys = &self.metrics.caps_state_keys;
        keys.with_label_values(&["usage"]).set(usage as i64);
        keys.with_label_values(&["verdict"]).set(verdicts as i64);
    }

    fn count_transaction(&self, outcome: &str) {
        self.metrics
            .caps_transactions
            .with_label_values(&[outcome])
            .inc();
    }

    fn process(
        &mut self,
        book: &mut CapBook,
        txn: &Transaction,
        m: &BorrowedMessage<'_>,
        now: Instant,
    ) -> Result<(), TxnError> {
        self.caps.refresh(now, &self.metrics);
        let Some(mut entry) = entry_or_quarantine(txn, &self.config.quarantine_topic, m)? else {
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
        to_ledger(
            txn,
            &self.config,
            &self.outbox,
            &self.metrics,
            (&entry, &value),
            decision.forward,
        )?;
        self.send_state(txn, m.partition(), &decision.changed)?;
        self.metrics.capping_entries.inc();
        Ok(())
    }

    /// Drops verdicts and periods older than the dedup window.
    fn sweep(
        &mut self,
        books: &mut HashMap<i32, CapBook>,
        txn: &Transaction,
    ) -> Result<(), TxnError> {
        let window = chrono::Duration::from_std(self.config.dedup_window()).unwrap_or_default();
        let horizon = (Utc::now() - window).timestamp_millis();
        for (p, book) in books {
            self.send_state(txn, *p, &book.expire(horizon))?;
        }
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
    tracing::info!(caps = caps.caps().iter().count(), "capping stage starting");
    let spec = StageSpec {
        suffix: SUFFIX,
        input_topic: &config.capping_topic,
    };
    let stage = Capping {
        config: config.clone(),
        metrics,
        caps,
        outbox,
    };
    crate::stage::run(config.clone(), &spec, stage, shutdown)
}
