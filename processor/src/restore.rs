//! Rebuilds the state of assigned partitions from the changelog before processing resumes:
//! each changelog partition is read, `read_committed`, from its start to its end.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use telemetry::KafkaLogs;

use telemetry::kafka::KafkaConnection;

use crate::changelog;
use crate::ledger::PartitionLedger;

/// Where the changelog is.
pub struct ChangelogSource<'a> {
    pub kafka: &'a KafkaConnection,
    pub topic: &'a str,
    pub group_id: &'a str,
}

/// Errors of a broker or a leader going away, which librdkafka recovers from by itself.
fn transient(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::NotLeaderForPartition
            | RDKafkaErrorCode::LeaderNotAvailable
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::NetworkException
            | RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
            | RDKafkaErrorCode::OperationTimedOut
    )
}

/// The state of `partitions`, each as its changelog partition holds it now.
pub fn restore(
    source: &ChangelogSource<'_>,
    partitions: &[i32],
) -> anyhow::Result<(HashMap<i32, PartitionLedger>, u64)> {
    let mut ledgers: HashMap<i32, PartitionLedger> = partitions
        .iter()
        .map(|p| (*p, PartitionLedger::default()))
        .collect();
    let records = read_changelog(source, partitions, |partition, key, value| {
        let change = changelog::decode(key, value)?;
        if let Some(ledger) = ledgers.get_mut(&partition) {
            ledger.restore(change);
        }
        Ok(())
    })?;
    Ok((ledgers, records))
}

/// Reads `partitions` of a changelog from their start to their end, handing each record to
/// `apply`; returns how many were read.
pub fn read_changelog(
    source: &ChangelogSource<'_>,
    partitions: &[i32],
    mut apply: impl FnMut(i32, &[u8], Option<&[u8]>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let group = format!("{}-restore", source.group_id);
    let consumer: BaseConsumer<KafkaLogs> = source
        .kafka
        .config(&[
            ("group.id", group.as_str()),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
            ("fetch.max.bytes", "52428800"),
            ("max.partition.fetch.bytes", "16777216"),
            ("queued.max.messages.kbytes", "262144"),
        ])
        .create_with_context(KafkaLogs)
        .context("creating the restore consumer")?;

    let mut tpl = TopicPartitionList::new();
    let mut pending = HashSet::new();
    for &p in partitions {
        let (low, high) =
            telemetry::topic::watermarks(&consumer, source.topic, p, Duration::from_secs(30))
                .with_context(|| format!("watermarks of {}/{p}", source.topic))?;
        if high > low {
            tpl.add_partition_offset(source.topic, p, Offset::Beginning)?;
            pending.insert(p);
        }
    }
    if pending.is_empty() {
        return Ok(0);
    }
    consumer.assign(&tpl)?;

    let mut records = 0u64;
    let mut last_report = Instant::now();
    while !pending.is_empty() {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                apply(m.partition(), m.key().unwrap_or_default(), m.payload()).with_context(
                    || {
                        format!(
                            "changelog record {}/{}@{}",
                            source.topic,
                            m.partition(),
                            m.offset()
                        )
                    },
                )?;
                records += 1;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            // A broker failing over: librdkafka reconnects and finds the new leaders, and the
            // read goes on from where it was (the progress line below shows a long wait).
            Some(Err(KafkaError::MessageConsumption(code))) if transient(code) => {
                tracing::warn!(error = %code, "changelog read interrupted; retrying");
            }
            Some(Err(e)) => return Err(e).context("reading the changelog"),
            None => {}
        }
        if last_report.elapsed() > Duration::from_secs(10) {
            tracing::info!(records, waiting = ?pending, "restoring state");
            last_report = Instant::now();
        }
    }
    Ok(records)
}
