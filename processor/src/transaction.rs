//! One Kafka transaction at a time over a consumer's input: the records it queues, the input
//! offsets it covers, and the commit that makes both visible at once. Every stage runs on
//! it: the ledger's ([`crate::exactly_once`]) and the keyed ones ([`crate::stage`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use telemetry::kafka::KafkaConnection;

use crate::watchdog::Watchdog;

pub(crate) const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a transactional call may block, its own timeout included, before the watchdog
/// ends the process (see [`crate::watchdog`]).
const STALL_LIMIT: Duration = Duration::from_secs(90);
/// The output producer's settings, shared with the pass-through baseline so that the
/// benchmark compares like with like.
pub(crate) const OUTPUT_PRODUCER: [(&str, &str); 6] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "5"),
    ("batch.num.messages", "10000"),
    ("queue.buffering.max.messages", "500000"),
    ("compression.type", "lz4"),
];

/// Why a transaction did not commit.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TxnError {
    /// Aborted; the state in memory is ahead of Kafka and must be rebuilt.
    #[error("transaction aborted: {0}")]
    Aborted(KafkaError),
    /// The producer cannot continue (fenced by a newer instance, or a fatal error).
    #[error("transactional producer failed: {0:#}")]
    Fatal(anyhow::Error),
}

/// Whether `e` ended the processor because its transactional producer was fenced: by the
/// broker, which aborts a transaction left open past its timeout (a coordinator failover can
/// hold one that long) and bumps the producer's epoch, or by a newer instance with the same
/// transactional id. This producer cannot continue; a restarted process can, from the
/// committed offsets.
pub fn fenced(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause
                .downcast_ref::<KafkaError>()
                .and_then(KafkaError::rdkafka_error_code),
            Some(
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
            )
        )
    })
}

pub(crate) fn classify(e: KafkaError) -> TxnError {
    match &e {
        KafkaError::Transaction(rd) if rd.txn_requires_abort() => TxnError::Aborted(e),
        _ => TxnError::Fatal(e.into()),
    }
}

pub(crate) struct Transaction {
    pub producer: BaseProducer,
    watchdog: Watchdog,
    input_topic: String,
    open: bool,
    started: Instant,
    events: usize,
    /// The next input offset per partition, to commit with the open transaction.
    offsets: HashMap<i32, i64>,
}

impl Transaction {
    /// Creates the transactional producer and initialises it, which aborts whatever a
    /// previous incarnation with this transactional id left open.
    pub fn init(
        kafka: &KafkaConnection,
        transactional_id: &str,
        timeout_ms: u64,
        input_topic: &str,
    ) -> anyhow::Result<Self> {
        let timeout = timeout_ms.to_string();
        let transactional = [
            ("transactional.id", transactional_id),
            ("transaction.timeout.ms", timeout.as_str()),
        ];
        let producer: BaseProducer = kafka
            .config(&[&OUTPUT_PRODUCER[..], &transactional].concat())
            .create()
            .context("creating the transactional producer")?;
        let watchdog = Watchdog::exiting(STALL_LIMIT);
        let initialised = watchdog.watch("init_transactions", || {
            producer.init_transactions(KAFKA_TIMEOUT)
        });
        initialised.with_context(|| {
            format!(
                "initialising transactions as transactional id {transactional_id} (on a \
                 secured cluster the principal needs WRITE on it: docs/DEPLOYMENT.md, \"ACLs\")"
            )
        })?;
        tracing::info!(%transactional_id, "transactional producer ready");
        Ok(Self {
            producer,
            watchdog,
            input_topic: input_topic.to_owned(),
            open: false,
            started: Instant::now(),
            events: 0,
            offsets: HashMap::new(),
        })
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn begin(&mut self) -> Result<(), TxnError> {
        if !self.open {
            self.producer.begin_transaction().map_err(classify)?;
            self.open = true;
            self.started = Instant::now();
            self.events = 0;
        }
        Ok(())
    }

    /// Queues one record in the open transaction, waiting while the producer queue is full.
    /// Partition -1 leaves the choice to the key's hash.
    pub fn send(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), TxnError> {
        self.send_with(topic, partition, key, value, None)
    }

    /// [`Self::send`] with headers.
    pub fn send_with(
        &self,
        topic: &str,
        partition: i32,
        key: &[u8],
        value: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), TxnError> {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).key(key);
        if partition >= 0 {
            record = record.partition(partition);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(classify(e)),
            }
        }
    }

    /// The input record at `offset` of `partition` is done with, in this transaction.
    pub fn consumed(&mut self, partition: i32, offset: i64) {
        self.offsets.insert(partition, offset + 1);
        self.events += 1;
    }

    pub fn due(&self, now: Instant, max_events: usize, interval: Duration) -> bool {
        self.open && (self.events >= max_events || now.duration_since(self.started) >= interval)
    }

    /// Commits the open transaction with the input offsets it covers; aborts it when Kafka
    /// says it must be.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), TxnError> {
        if !self.open {
            return Ok(());
        }
        let result = self.try_commit(consumer);
        if let Err(TxnError::Aborted(_)) = &result {
            self.abort();
        }
        self.open = false;
        self.offsets.clear();
        result
    }

    pub fn abort(&mut self) {
        if !self.open {
            return;
        }
        let aborted = self.watchdog.watch("abort_transaction", || {
            self.producer.abort_transaction(KAFKA_TIMEOUT)
        });
        if let Err(e) = aborted {
            tracing::error!(error = %e, "abort failed");
        }
        self.open = false;
        self.offsets.clear();
    }

    fn try_commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), TxnError> {
        self.await_deliveries();
        if !self.offsets.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for (p, o) in &self.offsets {
                tpl.add_partition_offset(&self.input_topic, *p, Offset::Offset(*o))
                    .map_err(|e| TxnError::Fatal(e.into()))?;
            }
            let group = consumer
                .group_metadata()
                .ok_or_else(|| TxnError::Fatal(anyhow!("the consumer has no group metadata")))?;
            self.watchdog
                .watch("send_offsets_to_transaction", || {
                    self.producer
                        .send_offsets_to_transaction(&tpl, &group, KAFKA_TIMEOUT)
                })
                .map_err(classify)?;
        }
        self.watchdog
            .watch("commit_transaction", || {
                self.producer.commit_transaction(KAFKA_TIMEOUT)
            })
            .map_err(classify)
    }

    /// Serves delivery reports until every queued record is acknowledged. Commit would flush
    /// by itself, but rust-rdkafka's flush waits in 100 ms steps for reports it only serves
    /// between them; polling returns the moment the last one arrives.
    fn await_deliveries(&self) {
        let deadline = Instant::now() + KAFKA_TIMEOUT;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            self.producer.poll(Duration::from_millis(1));
        }
    }
}

/// The consumer of a transactional stage: `read_committed`, its offsets committed only with
/// the transactions, subscribed to `topic`; `extra` are its other settings.
pub(crate) fn stage_consumer<C: ConsumerContext>(
    kafka: &KafkaConnection,
    group: &str,
    session_timeout_ms: u64,
    topic: &str,
    extra: &[(&str, &str)],
    context: C,
) -> anyhow::Result<BaseConsumer<C>> {
    let session_timeout = session_timeout_ms.to_string();
    let settings = [
        ("group.id", group),
        ("isolation.level", "read_committed"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", session_timeout.as_str()),
    ];
    let consumer: BaseConsumer<C> = kafka
        .config(&[&settings[..], extra].concat())
        .create_with_context(context)
        .with_context(|| format!("creating the consumer of {topic}"))?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// A stage's end: the loop's result, then its final commit's, before it left its group.
pub(crate) fn finish(
    stage: &str,
    result: anyhow::Result<()>,
    closing: Result<(), TxnError>,
) -> anyhow::Result<()> {
    match (result, closing) {
        (Err(e), _) => Err(e),
        (Ok(()), Err(e)) => Err(anyhow!("{stage}: final commit: {e}")),
        (Ok(()), Ok(())) => {
            tracing::info!(stage, "committed and left the group");
            Ok(())
        }
    }
}

/// Rewinds the consumer's assignment to its committed offsets (after an abort, once the state
/// is rebuilt); returns the assigned partitions.
pub(crate) fn seek_to_committed<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
) -> anyhow::Result<Vec<i32>> {
    let assignment = consumer.assignment()?;
    let assigned = partitions(&assignment);
    let committed = consumer.committed_offsets(assignment, KAFKA_TIMEOUT)?;
    for elem in committed.elements() {
        let offset = match elem.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        consumer.seek(elem.topic(), elem.partition(), offset, KAFKA_TIMEOUT)?;
    }
    Ok(assigned)
}

pub(crate) fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

/// Runs `step` again while Kafka fails over (a coordinator or a leader moving can take tens
/// of seconds); gives up after two minutes, and the processor exits to be restarted.
pub(crate) fn patiently(
    what: &str,
    mut step: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match step() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %format!("{e:#}"), "{what} failed; retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e.context(what.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_producer_is_told_apart_from_other_failures() {
        let fenced_error =
            anyhow::Error::from(KafkaError::MessageProduction(RDKafkaErrorCode::Fenced))
                .context("transaction failed");
        assert!(fenced(&fenced_error));
        let epoch = anyhow::Error::from(KafkaError::MessageProduction(
            RDKafkaErrorCode::InvalidProducerEpoch,
        ));
        assert!(fenced(&epoch));
        let other = anyhow::Error::from(KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge,
        ))
        .context("transaction failed");
        assert!(!fenced(&other));
        assert!(!fenced(&anyhow!("the consumer has no group metadata")));
    }
}
