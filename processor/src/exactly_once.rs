//! The exactly-once loop: consume `read_committed`, apply each event to its partition's
//! ledger, and write the ledger entries, receipts, state changes and the input offsets in
//! one Kafka transaction.
//!
//! Fencing: one transactional producer per instance, `transactional.id` =
//! `<group-id>-<instance-id>`. A restarted instance reuses its ID, so `init_transactions`
//! aborts whatever its previous incarnation left open; offsets are committed with the
//! consumer group's metadata (KIP-447), so a zombie that lost its partitions in a rebalance
//! is refused by the group coordinator whatever its ID.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use chrono::Utc;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use schemas::avro::ledger::{content_fingerprint, encode_entry, encode_receipt};
use schemas::erasure::{ErasureRequest, CONTROL_HEADER, ERASE};
use schemas::key::click_of_key;
use schemas::validate::FieldError;
use schemas::{conversion_key, EventName, LedgerEntry, QuarantineRecord};

use crate::caps::{self, CapsFile};
use crate::changelog;
use crate::click_ids::CAPPING_OFFER_HEADER;
use crate::config::Config;
use crate::events::{EventReader, ReadError};
use crate::ledger::{Occurrence, PartitionLedger, Position, StateKey};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::restore::{restore, ChangelogSource};
use crate::stage::{to_capping, to_ledger};
use crate::transaction::{
    finish, partitions, patiently, seek_to_committed, stage_consumer, Transaction, TxnError,
    KAFKA_TIMEOUT,
};
use schemas::offers::Offers;

const QUARANTINE_BODY_CAP: usize = 64 * 1024;
/// The quarantine reason of input the processor cannot read.
const UNDECODABLE: &str = "undecodable_event";
/// The first and the longest wait before the schema registry is asked again.
const REGISTRY_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// A partition paused because the registry could not be asked for its next record's schema.
struct RegistryWait {
    /// The record that waits: the partition resumes from it.
    offset: i64,
    retry_at: Instant,
    backoff: Duration,
}

/// Everything the rebalance callbacks and the loop share.
struct Engine {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    reader: EventReader,
    outbox: Outbox,
    offers: Offers,
    txn: Transaction,
    ledgers: HashMap<i32, PartitionLedger>,
    /// State keys changed in the open transaction, by partition.
    dirty: HashMap<i32, hashbrown::HashSet<StateKey>>,
    /// Set by a callback that hit an error the loop must stop on.
    fatal: Option<anyhow::Error>,
    ready: Arc<AtomicBool>,
    /// Partitions paused until the registry answers; readiness is off while there are any.
    waiting: HashMap<i32, RegistryWait>,
    /// The record whose schema the registry could not give, which the loop must pause on.
    blocked: Option<(i32, i64, String)>,
    /// The caps file, when caps are configured: capped offers' entries take the capping stage.
    caps_file: Option<CapsFile>,
    /// Whether the click-ID stage runs: clicks' IDs and the conversions naming them go there.
    click_ids: bool,
}

/// Where an entry goes besides (or instead of) the ledger, for the click-ID stage.
enum ClickRoute {
    None,
    /// A click with ad-platform IDs: to the ledger, and a copy to the stage, to be kept.
    Click(String),
    /// A conversion taking its click's IDs: to the stage, which writes it on.
    Conversion(String),
}

struct RebalanceHook {
    engine: Arc<Mutex<Engine>>,
}

impl ClientContext for RebalanceHook {}

impl ConsumerContext for RebalanceHook {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut engine = lock(&self.engine);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                engine.ready.store(false, Ordering::SeqCst);
                if let Err(e) = engine.commit(consumer) {
                    // Aborted work is redone by the partitions' next owner.
                    tracing::warn!(error = %e, "transaction not committed at revocation");
                    if let TxnError::Fatal(e) = e {
                        engine.fatal = Some(e);
                    }
                }
                for p in partitions(tpl) {
                    engine.ledgers.remove(&p);
                    engine
                        .metrics
                        .lag
                        .remove_label_values(&[&p.to_string()])
                        .ok();
                }
                engine.metrics.assigned_partitions.set(0);
                // The next owner starts from the committed offsets; nothing waits here.
                engine.waiting.clear();
                engine.blocked = None;
                engine.metrics.registry_waiting_partitions.set(0);
                tracing::info!(partitions = ?partitions(tpl), "partitions revoked");
            }
            Rebalance::Assign(tpl) => {
                let assigned = partitions(tpl);
                // Restored before the assignment takes effect, so no event is processed
                // against missing state.
                if let Err(e) = engine.restore(&assigned) {
                    engine.fatal = Some(e);
                    return;
                }
                engine
                    .metrics
                    .assigned_partitions
                    .set(assigned.len() as i64);
                engine.ready.store(true, Ordering::SeqCst);
                tracing::info!(partitions = ?assigned, "partitions assigned and restored");
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance failed"),
        }
    }
}

pub(crate) fn is_erasure(m: &BorrowedMessage<'_>) -> bool {
    m.headers().is_some_and(|h| {
        h.iter()
            .any(|h| h.key == CONTROL_HEADER && h.value == Some(ERASE.as_bytes()))
    })
}

fn lock(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
    engine
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `events_total` outcome of a quarantine reason.
fn label_of(reason: &'static str) -> &'static str {
    match reason {
        UNDECODABLE => "undecodable",
        "validation" => "invalid",
        other => other,
    }
}

impl Engine {
    fn restore(&mut self, assigned: &[i32]) -> anyhow::Result<()> {
        let started = Instant::now();
        let source = ChangelogSource {
            kafka: &self.config.kafka,
            topic: &self.config.state_topic,
            group_id: &self.config.group_id,
        };
        let (ledgers, records) = restore(&source, assigned)?;
        self.metrics
            .restore_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.restored_records.inc_by(records);
        tracing::info!(
            records,
            seconds = started.elapsed().as_secs_f64(),
            "state restored"
        );
        self.ledgers = ledgers;
        self.update_state_gauges();
        Ok(())
    }

    fn update_state_gauges(&self) {
        let dedup: usize = self.ledgers.values().map(|l| l.seen.len()).sum();
        let conversions: usize = self.ledgers.values().map(|l| l.conversions.len()).sum();
        let keys = &self.metrics.state_keys;
        keys.with_label_values(&["dedup"]).set(dedup as i64);
        keys.with_label_values(&["conversion"])
            .set(conversions as i64);
    }

    fn mark_dirty(&mut self, partition: i32, keys: Vec<StateKey>) {
        self.dirty.entry(partition).or_default().extend(keys);
    }

    /// Writes each state key changed in this transaction once, with its value as of now:
    /// the changelog is compacted to the latest value anyway, and a conversion touched by
    /// several events of a transaction costs one record.
    fn flush_state(&mut self) -> Result<(), TxnError> {
        for (partition, keys) in std::mem::take(&mut self.dirty) {
            let Some(ledger) = self.ledgers.get(&partition) else {
                continue;
            };
            for key in keys {
                let change = ledger.current(&key);
                let value = changelog::value(&change);
                self.txn.send(
                    &self.config.state_topic,
                    partition,
                    &changelog::key(&change),
                    value.as_deref(),
                )?;
            }
        }
        Ok(())
    }

    fn process(&mut self, m: &BorrowedMessage<'_>) -> Result<(), TxnError> {
        self.txn.begin()?;
        let partition = m.partition();
        let offset = m.offset();
        if !self.ledgers.contains_key(&partition) {
            // Cannot happen: restore runs before an assignment takes effect.
            tracing::error!(partition, offset, "event from a partition without state");
            return Ok(());
        }
        if is_erasure(m) {
            return self.erase(m);
        }
        let read = match m.payload() {
            Some(bytes) => self.reader.read(bytes),
            None => Err(ReadError::Refused(crate::events::Refusal {
                reason: UNDECODABLE,
                errors: vec![FieldError::new("value", "the message has no value")],
            })),
        };
        if !matches!(read, Err(ReadError::RegistryUnavailable(_)))
            && self.waiting.remove(&partition).is_some()
        {
            self.after_wait();
        }
        let event = match read {
            Ok(event) => content_fingerprint(&event)
                .map(|fp| (event, fp))
                .map_err(|e| {
                    (
                        vec![FieldError::new("value", e.to_string())],
                        "undecodable",
                        UNDECODABLE,
                    )
                }),
            Err(ReadError::Refused(r)) => Err((r.errors, label_of(r.reason), r.reason)),
            Err(ReadError::RegistryUnavailable(e)) => {
                // Neither applied nor skipped: the loop pauses the partition on this record.
                self.blocked = Some((partition, offset, e));
                return Ok(());
            }
        };
        // An amount the ledger cannot hold (a conversion's total beyond decimal(18, 6)) is
        // refused whole, state unchanged, and kept in quarantine.
        let ledger = self.ledgers.get_mut(&partition).expect("checked above");
        let applied = event.and_then(|(event, fingerprint)| {
            let key = conversion_key(&event);
            let at = Position { partition, offset };
            ledger
                .apply(event, key, fingerprint, at, Utc::now(), &self.offers)
                .map_err(|e| {
                    (
                        vec![FieldError::new("value", e.to_string())],
                        "amount_out_of_range",
                        "amount_out_of_range",
                    )
                })
        });
        match applied {
            Ok(outcome) => {
                let outcome_label = match outcome.occurrence() {
                    Occurrence::First => "first",
                    Occurrence::Duplicate => "duplicate",
                    Occurrence::Conflict => "conflict",
                };
                if let Some(entry) = &outcome.entry {
                    let capped_offer = self.capped_offer(partition, entry);
                    let click_route = self.click_route(partition, entry);
                    match encode_entry(entry) {
                        Ok(value) => self.route(entry, &value, capped_offer, click_route)?,
                        Err(e) => {
                            // The event decoded, so its amounts fit; a failure here is a bug,
                            // and the event is kept rather than lost.
                            self.quarantine(
                                m,
                                UNDECODABLE,
                                vec![FieldError::new(
                                    "value",
                                    format!("ledger entry does not encode: {e}"),
                                )],
                            )?
                        }
                    }
                }
                if let Some(receipt) = &outcome.receipt {
                    self.txn.send(
                        &self.config.receipts_topic,
                        partition,
                        receipt.conversion_key.as_bytes(),
                        Some(&encode_receipt(receipt)),
                    )?;
                }
                self.mark_dirty(partition, outcome.changed);
                self.metrics
                    .events
                    .with_label_values(&[outcome_label])
                    .inc();
            }
            Err((errors, label, reason)) => {
                self.quarantine(m, reason, errors)?;
                self.metrics.events.with_label_values(&[label]).inc();
            }
        }
        self.txn.consumed(partition, offset);
        Ok(())
    }

    /// Applies an erasure request: the state goes, and its changelog records become
    /// tombstones in this transaction. A request that does not parse is quarantined.
    fn erase(&mut self, m: &BorrowedMessage<'_>) -> Result<(), TxnError> {
        let partition = m.partition();
        let request = serde_json::from_slice::<ErasureRequest>(m.payload().unwrap_or_default());
        match (request, self.ledgers.get_mut(&partition)) {
            (Ok(r), Some(ledger)) => {
                let changed = ledger.erase(&r.conversion_key, &r.event_ids);
                tracing::info!(
                    partition,
                    offset = m.offset(),
                    erasure_id = %r.erasure_id,
                    events = r.event_ids.len(),
                    "erasure applied"
                );
                self.mark_dirty(partition, changed);
                self.metrics.events.with_label_values(&["erasure"]).inc();
                // A click's IDs are held by the click-ID stage, keyed by click: it forgets them
                // in its own transaction.
                if let Some(click) = click_of_key(&r.conversion_key).filter(|_| self.click_ids) {
                    let headers = OwnedHeaders::new().insert(Header {
                        key: CONTROL_HEADER,
                        value: Some(ERASE),
                    });
                    self.txn.send_with(
                        &self.config.click_ids_topic,
                        -1,
                        click.as_bytes(),
                        m.payload(),
                        Some(headers),
                    )?;
                }
            }
            (Ok(_), None) => {
                tracing::error!(
                    partition,
                    offset = m.offset(),
                    "erasure for a partition without state"
                );
            }
            (Err(e), _) => self.quarantine(
                m,
                UNDECODABLE,
                vec![FieldError::new(
                    "value",
                    format!("erasure request does not parse: {e}"),
                )],
            )?,
        }
        self.txn.consumed(partition, m.offset());
        Ok(())
    }

    /// Writes an encoded entry where it goes: a conversion that takes its click's IDs to the
    /// click-ID stage (which passes it on to the capping stage or the ledger); a capped
    /// offer's to the capping stage; any other to the ledger with its postbacks, and a click
    /// with IDs also to the click-ID stage.
    fn route(
        &self,
        entry: &LedgerEntry,
        value: &[u8],
        capped_offer: Option<String>,
        click_route: ClickRoute,
    ) -> Result<(), TxnError> {
        let to_stage = |click: &str, headers| {
            self.txn.send_with(
                &self.config.click_ids_topic,
                -1,
                click.as_bytes(),
                Some(value),
                headers,
            )
        };
        if let ClickRoute::Conversion(click) = &click_route {
            let headers = capped_offer.map(|offer| {
                OwnedHeaders::new().insert(Header {
                    key: CAPPING_OFFER_HEADER,
                    value: Some(offer.as_bytes()),
                })
            });
            to_stage(click, headers)?;
            self.metrics
                .click_ids_routed
                .with_label_values(&["conversion"])
                .inc();
            return Ok(());
        }
        if let Some(offer) = capped_offer {
            return to_capping(&self.txn, &self.config, &self.metrics, &offer, value);
        }
        to_ledger(
            &self.txn,
            &self.config,
            &self.outbox,
            &self.metrics,
            (entry, value),
            true,
        )?;
        if let ClickRoute::Click(click) = &click_route {
            to_stage(click, None)?;
            self.metrics
                .click_ids_routed
                .with_label_values(&["click"])
                .inc();
        }
        Ok(())
    }

    /// Whether an entry goes to the click-ID stage, when it runs: a click that carries IDs,
    /// and every entry of a conversion whose first routed entry named a click (its state
    /// remembers the click, so a later entry never overtakes an earlier one).
    fn click_route(&mut self, partition: i32, entry: &LedgerEntry) -> ClickRoute {
        if !self.click_ids {
            return ClickRoute::None;
        }
        let e = &entry.event;
        if e.event_name == EventName::Click {
            return match (&e.click_id, &e.platform_ids) {
                (Some(click), Some(ids)) if !ids.is_empty() => ClickRoute::Click(click.clone()),
                _ => ClickRoute::None,
            };
        }
        let conversion = self
            .ledgers
            .get_mut(&partition)
            .and_then(|l| l.conversions.get_mut(&entry.conversion_key));
        let Some(conversion) = conversion else {
            return e
                .click_id
                .clone()
                .map_or(ClickRoute::None, ClickRoute::Conversion);
        };
        if let Some(click) = &conversion.click_ids_from {
            return ClickRoute::Conversion(click.clone());
        }
        let Some(click) = e.click_id.clone() else {
            return ClickRoute::None;
        };
        conversion.click_ids_from = Some(click.clone());
        self.mark_dirty(
            partition,
            vec![StateKey::Conversion(entry.conversion_key.clone())],
        );
        ClickRoute::Conversion(click)
    }

    /// The offer whose capping partition an entry goes to, when the capping stage runs; a
    /// conversion routed once stays routed (its state remembers the offer).
    fn capped_offer(&mut self, partition: i32, entry: &LedgerEntry) -> Option<String> {
        let caps = self.caps_file.as_ref()?.caps();
        let conversion = self
            .ledgers
            .get_mut(&partition)
            .and_then(|l| l.conversions.get_mut(&entry.conversion_key));
        let known = conversion.is_some();
        let offer = caps::route(caps, entry, conversion);
        if offer.is_some() && known {
            self.mark_dirty(
                partition,
                vec![StateKey::Conversion(entry.conversion_key.clone())],
            );
        }
        offer
    }

    fn quarantine(
        &self,
        m: &BorrowedMessage<'_>,
        reason: &str,
        errors: Vec<FieldError>,
    ) -> Result<(), TxnError> {
        quarantine(&self.txn, &self.config.quarantine_topic, m, reason, errors)
    }

    /// Drops expired state and reports orphans, inside the open transaction.
    fn sweep(&mut self) -> Result<(), TxnError> {
        self.txn.begin()?;
        let now = Utc::now();
        let window = chrono::Duration::from_std(self.config.dedup_window()).unwrap_or_default();
        let click_window =
            chrono::Duration::from_std(self.config.click_dedup_window).unwrap_or_default();
        let horizon = chrono::Duration::from_std(self.config.orphan_horizon()).unwrap_or_default();
        let mut partitions: Vec<i32> = self.ledgers.keys().copied().collect();
        partitions.sort_unstable();
        for p in partitions {
            let ledger = self.ledgers.get_mut(&p).expect("listed");
            let expired = ledger.expire(
                (now - window).timestamp_millis(),
                (now - click_window).timestamp_millis(),
            );
            let report = ledger.report_orphans((now - horizon).timestamp_millis(), now);
            self.mark_dirty(p, expired);
            for receipt in &report.receipts {
                self.txn.send(
                    &self.config.receipts_topic,
                    p,
                    receipt.conversion_key.as_bytes(),
                    Some(&encode_receipt(receipt)),
                )?;
                tracing::warn!(event_id = %receipt.event_id, conversion = %receipt.conversion_key, "orphaned reversal");
            }
            self.mark_dirty(p, report.changed);
            self.metrics.orphans.inc_by(report.receipts.len() as u64);
        }
        self.update_state_gauges();
        Ok(())
    }

    /// Pauses the partition of a record whose writer schema the registry could not give, and
    /// rewinds it to that record, to be asked again after a growing wait.
    fn wait_for_registry<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        (partition, offset, error): (i32, i64, String),
    ) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.config.input_topic, partition);
        consumer.pause(&tpl)?;
        consumer.seek(
            &self.config.input_topic,
            partition,
            Offset::Offset(offset),
            KAFKA_TIMEOUT,
        )?;
        let backoff = match self.waiting.get(&partition) {
            Some(w) => (w.backoff * 2).min(REGISTRY_BACKOFF.1),
            None => REGISTRY_BACKOFF.0,
        };
        tracing::warn!(
            partition,
            offset,
            retry_in_ms = backoff.as_millis() as u64,
            error = %error,
            "schema registry unavailable: the partition waits at this record"
        );
        self.waiting.insert(
            partition,
            RegistryWait {
                offset,
                retry_at: Instant::now() + backoff,
                backoff,
            },
        );
        self.ready.store(false, Ordering::SeqCst);
        self.metrics
            .registry_waiting_partitions
            .set(self.waiting.len() as i64);
        Ok(())
    }

    /// Resumes the waiting partitions whose wait is over: their record is read again.
    fn resume_due<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        now: Instant,
    ) -> anyhow::Result<()> {
        for (partition, wait) in &mut self.waiting {
            if wait.retry_at <= now {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&self.config.input_topic, *partition);
                consumer.resume(&tpl)?;
                // Not again until it fails again (which sets a new time).
                wait.retry_at = now + Duration::from_secs(3600);
                tracing::info!(
                    partition,
                    offset = wait.offset,
                    "asking the schema registry again"
                );
            }
        }
        Ok(())
    }

    /// A partition's record was read after a wait: ready again once none waits.
    fn after_wait(&self) {
        self.metrics
            .registry_waiting_partitions
            .set(self.waiting.len() as i64);
        if self.waiting.is_empty() && !self.ledgers.is_empty() {
            tracing::info!("the schema registry answers again: no partition waits");
            self.ready.store(true, Ordering::SeqCst);
        }
    }

    fn commit_due(&self, now: Instant) -> bool {
        self.txn.due(
            now,
            self.config.max_transaction_events,
            self.config.commit_interval(),
        )
    }

    /// Commits the open transaction: the state changes, then the records and input offsets.
    fn commit<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> Result<(), TxnError> {
        if !self.txn.is_open() {
            return Ok(());
        }
        let started = Instant::now();
        let result = self.flush_state().and_then(|()| self.txn.commit(consumer));
        match &result {
            Ok(()) => {
                self.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics
                    .transactions
                    .with_label_values(&["committed"])
                    .inc();
            }
            // The transaction aborted itself.
            Err(TxnError::Aborted(_)) => self
                .metrics
                .transactions
                .with_label_values(&["aborted"])
                .inc(),
            Err(TxnError::Fatal(_)) => {}
        }
        self.dirty.clear();
        result
    }

    fn abort(&mut self) {
        self.dirty.clear();
        if self.txn.is_open() {
            self.txn.abort();
            self.metrics
                .transactions
                .with_label_values(&["aborted"])
                .inc();
        }
    }

    /// After an abort the state in memory is ahead of Kafka: rebuild it from the changelog
    /// and rewind the input to the committed offsets.
    fn rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) -> anyhow::Result<()> {
        let assigned = partitions(&consumer.assignment()?);
        self.restore(&assigned)?;
        seek_to_committed(consumer)?;
        tracing::warn!(partitions = ?assigned, "rewound to the committed offsets after an abort");
        Ok(())
    }

    fn update_lag<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let Ok(position) = consumer.position() else {
            return;
        };
        for elem in position.elements() {
            let Offset::Offset(pos) = elem.offset() else {
                continue;
            };
            if let Ok((_, high)) =
                consumer.fetch_watermarks(elem.topic(), elem.partition(), Duration::from_secs(1))
            {
                self.metrics
                    .lag
                    .with_label_values(&[&elem.partition().to_string()])
                    .set((high - pos).max(0));
            }
        }
    }
}

/// Poison input goes to quarantine inside the transaction, so that it neither blocks its
/// partition nor is lost.
pub(crate) fn quarantine(
    txn: &Transaction,
    topic: &str,
    m: &BorrowedMessage<'_>,
    reason: &str,
    errors: Vec<FieldError>,
) -> Result<(), TxnError> {
    let body = m.payload().unwrap_or_default();
    let kept = &body[..body.len().min(QUARANTINE_BODY_CAP)];
    let record = QuarantineRecord {
        reason: reason.into(),
        errors,
        route: "processor".into(),
        method: "CONSUME".into(),
        received_at: Utc::now(),
        content_type: Some("avro/binary".into()),
        query: Some(format!(
            "topic={}&partition={}&offset={}",
            m.topic(),
            m.partition(),
            m.offset()
        )),
        body_base64: base64::engine::general_purpose::STANDARD.encode(kept),
        body_size: body.len(),
        body_truncated: kept.len() < body.len(),
        ..Default::default()
    };
    tracing::warn!(
        topic = m.topic(),
        partition = m.partition(),
        offset = m.offset(),
        reason,
        "input record quarantined"
    );
    let value = serde_json::to_vec(&record).expect("quarantine records serialize");
    txn.send(topic, -1, record.key().as_bytes(), Some(&value))
}

/// Runs the exactly-once loop until `shutdown` is set, then commits and leaves the group.
pub fn run(
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    caps_file: Option<CapsFile>,
    click_ids: bool,
    shutdown: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let outbox = Outbox::load(config.destinations_file.as_deref())?;
    tracing::info!(destinations = ?outbox.destinations().collect::<Vec<_>>(), "postback routes loaded");
    let offers = Offers::load_or_default(config.offers_file.as_deref(), "PROCESSOR_OFFERS_FILE")
        .map_err(anyhow::Error::msg)?;
    tracing::info!(payout_rules = offers.payout_rules(), "offers loaded");
    let txn = Transaction::init(
        &config.kafka,
        &config.transactional_id(),
        config.transaction_timeout_ms,
        &config.input_topic,
    )?;

    let engine = Arc::new(Mutex::new(Engine {
        config: config.clone(),
        metrics: metrics.clone(),
        reader: EventReader::new(
            config
                .schema_registry
                .client()
                .context("the schema registry settings")?,
            metrics.clone(),
        )?,
        outbox,
        offers,
        txn,
        ledgers: HashMap::new(),
        dirty: HashMap::new(),
        fatal: None,
        ready,
        waiting: HashMap::new(),
        blocked: None,
        caps_file,
        click_ids,
    }));
    let consumer = stage_consumer(
        &config.kafka,
        &config.group_id,
        config.session_timeout_ms,
        &config.input_topic,
        &[
            ("fetch.max.bytes", "52428800"),
            ("queued.max.messages.kbytes", "131072"),
        ],
        RebalanceHook {
            engine: engine.clone(),
        },
    )?;

    let mut last_sweep = Instant::now();
    let mut last_lag = Instant::now();
    let result = loop {
        if shutdown.load(Ordering::SeqCst) {
            break Ok(());
        }
        let polled = consumer.poll(Duration::from_millis(50));
        let mut engine = lock(&engine);
        if let Some(fatal) = engine.fatal.take() {
            break Err(fatal);
        }
        let step = match polled {
            Some(Ok(m)) => engine
                .process(&m)
                .and_then(|()| match engine.blocked.take() {
                    Some(blocked) => engine
                        .wait_for_registry(&consumer, blocked)
                        .map_err(TxnError::Fatal),
                    None => Ok(()),
                }),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                Ok(())
            }
            None => Ok(()),
        };
        // One clock read per event: the clock showed in the profile.
        let now = Instant::now();
        let Engine {
            caps_file, metrics, ..
        } = &mut *engine;
        if let Some(file) = caps_file {
            file.refresh(now, metrics);
        }
        if !engine.waiting.is_empty() {
            if let Err(e) = engine.resume_due(&consumer, now) {
                break Err(e);
            }
        }
        let step = step.and_then(|()| {
            if now.duration_since(last_sweep) >= config.sweep_interval()
                && !engine.ledgers.is_empty()
            {
                last_sweep = now;
                engine.sweep()?;
            }
            if engine.commit_due(now) {
                engine.commit(&consumer)?;
            }
            Ok(())
        });
        match step {
            Ok(()) => {}
            Err(TxnError::Aborted(e)) => {
                tracing::warn!(error = %e, "transaction aborted");
                engine.abort();
                if let Err(e) = patiently("rewinding after an abort", || engine.rewind(&consumer)) {
                    break Err(e);
                }
            }
            Err(TxnError::Fatal(e)) => break Err(e.context("transaction failed")),
        }
        // Serves delivery reports; commit_transaction waits for the outstanding ones.
        engine.txn.producer.poll(Duration::ZERO);
        if now.duration_since(last_lag) >= Duration::from_secs(5) {
            last_lag = now;
            engine.update_lag(&consumer);
            engine.update_state_gauges();
        }
    };

    let mut guard = lock(&engine);
    let closing = guard.commit(&consumer);
    drop(guard);
    consumer.unsubscribe();
    drop(consumer);
    finish("ledger", result, closing)
}
