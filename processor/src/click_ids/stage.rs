//! The click-ID stage: consume `ledger.clickids.v1` (`read_committed`, keyed by click ID),
//! keep each click's ad-platform IDs, fill a conversion's missing IDs from its click's, and
//! write the conversion to the ledger with its postbacks (or on to the capping stage), the
//! state changes and the input offsets in one transaction.
//!
//! It runs under the keyed-stage driver ([`crate::stage`]) as group `<group-id>-clickids`,
//! with transactional id `<group-id>-clickids-<instance-id>`.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use schemas::avro::ledger::encode_entry;
use schemas::erasure::ErasureRequest;
use schemas::ledger::flags;
use schemas::EventName;

use super::{ClickBook, ClickIds, Inheritance, CAPPING_OFFER_HEADER};
use crate::config::Config;
use crate::exactly_once::is_erasure;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::stage::{entry_or_quarantine, to_capping, to_ledger, KeyedStage, StageSpec};
use crate::transaction::{Transaction, TxnError};

/// The click-ID stage's group suffix: `<group-id>-clickids`.
const SUFFIX: &str = "clickids";

struct ClickIdStage {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    outbox: Outbox,
}

/// The capped offer a conversion goes on to the capping stage under, if the ledger stage said.
fn capping_offer(m: &BorrowedMessage<'_>) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == CAPPING_OFFER_HEADER)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

impl ClickIdStage {
    fn send_state(
        &self,
        txn: &Transaction,
        partition: i32,
        click_id: &str,
        value: Option<&ClickIds>,
    ) -> Result<(), TxnError> {
        let value = value.map(ClickIds::value);
        txn.send(
            &self.config.click_ids_state_topic,
            partition,
            click_id.as_bytes(),
            value.as_deref(),
        )
    }

    /// An erasure of a click the ledger stage passed on: its IDs go, and a tombstone. Only the
    /// ledger stage writes this topic, and only with a request it parsed (it quarantines the
    /// others), so the request is read here for its ID alone.
    fn erase(
        &self,
        book: &mut ClickBook,
        txn: &Transaction,
        m: &BorrowedMessage<'_>,
        click_id: &str,
    ) -> Result<(), TxnError> {
        book.erase(click_id);
        self.send_state(txn, m.partition(), click_id, None)?;
        let erasure_id = serde_json::from_slice::<ErasureRequest>(m.payload().unwrap_or_default())
            .map(|r| r.erasure_id)
            .unwrap_or_default();
        tracing::info!(partition = m.partition(), erasure_id, "click IDs erased");
        Ok(())
    }
}

impl KeyedStage for ClickIdStage {
    const NAME: &'static str = "click-ID";
    type Book = ClickBook;

    fn changelog_topic(&self) -> &str {
        &self.config.click_ids_state_topic
    }

    fn restore_record(
        book: &mut ClickBook,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> anyhow::Result<()> {
        let click_id = String::from_utf8(key.to_vec())
            .map_err(|_| anyhow::anyhow!("a click-ID state key is not UTF-8"))?;
        let value = value
            .map(ClickIds::decode)
            .transpose()
            .map_err(anyhow::Error::msg)?;
        book.restore(click_id, value);
        Ok(())
    }

    fn update_gauges(&self, books: &HashMap<i32, ClickBook>) {
        let clicks: usize = books.values().map(ClickBook::clicks).sum();
        self.metrics.click_ids_state_keys.set(clicks as i64);
    }

    fn count_transaction(&self, outcome: &str) {
        self.metrics
            .click_ids_transactions
            .with_label_values(&[outcome])
            .inc();
    }

    fn process(
        &mut self,
        book: &mut ClickBook,
        txn: &Transaction,
        m: &BorrowedMessage<'_>,
        _now: Instant,
    ) -> Result<(), TxnError> {
        let partition = m.partition();
        let click_id = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        if is_erasure(m) {
            return self.erase(book, txn, m, &click_id);
        }
        let Some(mut entry) = entry_or_quarantine(txn, &self.config.quarantine_topic, m)? else {
            return Ok(());
        };
        if entry.event.event_name == EventName::Click {
            let ids = entry.event.platform_ids.clone().unwrap_or_default();
            let kept = book.record(
                &click_id,
                &ids,
                entry.event.consent_state,
                entry.event.occurred_at.timestamp_millis(),
            );
            return self.send_state(txn, partition, &click_id, Some(&kept));
        }
        let mut ids = entry.event.platform_ids.take().unwrap_or_default();
        let inheritance = book.inherit(&click_id, &mut ids, &mut entry.event.consent_state);
        entry.event.platform_ids = (!ids.is_empty()).then_some(ids);
        self.metrics
            .click_ids
            .with_label_values(&[inheritance.label()])
            .inc();
        // Re-encoded only when it changed.
        let encoded;
        let value = if let Inheritance::Inherited { consent } = inheritance {
            entry.flags.push(flags::CLICK_IDS_INHERITED.into());
            if consent {
                entry.flags.push(flags::CONSENT_FROM_CLICK.into());
            }
            encoded = encode_entry(&entry).map_err(|e| TxnError::Fatal(e.into()))?;
            &encoded[..]
        } else {
            m.payload().unwrap_or_default()
        };
        if let Some(offer) = capping_offer(m) {
            return to_capping(txn, &self.config, &self.metrics, &offer, value);
        }
        to_ledger(
            txn,
            &self.config,
            &self.outbox,
            &self.metrics,
            (&entry, value),
            true,
        )
    }

    /// Forgets the clicks older than the retention.
    fn sweep(
        &mut self,
        books: &mut HashMap<i32, ClickBook>,
        txn: &Transaction,
    ) -> Result<(), TxnError> {
        let retention =
            chrono::Duration::from_std(self.config.click_ids_retention).unwrap_or_default();
        let horizon = (Utc::now() - retention).timestamp_millis();
        for (p, book) in books {
            for click_id in book.expire(horizon) {
                self.send_state(txn, *p, &click_id, None)?;
            }
        }
        Ok(())
    }
}

/// Runs the click-ID stage until `shutdown` is set, then commits and leaves its group.
pub fn run(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let outbox = Outbox::load(config.destinations_file.as_deref())?;
    tracing::info!(
        retention_secs = config.click_ids_retention.as_secs(),
        "click-ID stage starting"
    );
    let spec = StageSpec {
        suffix: SUFFIX,
        input_topic: &config.click_ids_topic,
    };
    let stage = ClickIdStage {
        config: config.clone(),
        metrics,
        outbox,
    };
    crate::stage::run(config.clone(), &spec, stage, shutdown)
}
