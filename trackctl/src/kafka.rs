//! Reading a whole topic as it is now, for the commands that inspect or replay one.

use std::time::Duration;

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use telemetry::KafkaLogs;

const TIMEOUT: Duration = Duration::from_secs(30);

/// One record of a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub payload: Vec<u8>,
}

/// Every record of `topic` up to the end of each partition when the read started.
pub fn read_to_end(bootstrap: &str, topic: &str) -> anyhow::Result<Vec<Record>> {
    let consumer: BaseConsumer<KafkaLogs> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "trackctl")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create_with_context(KafkaLogs)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("cannot reach Kafka at {bootstrap}"))?;
    let partitions = metadata
        .topics()
        .first()
        .map(|t| t.partitions().len())
        .unwrap_or(0) as i32;
    anyhow::ensure!(
        partitions > 0,
        "topic {topic} does not exist on {bootstrap}"
    );
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(topic, p, TIMEOUT)?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
            ends.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl)?;
    while !ends.is_empty() {
        match consumer.poll(TIMEOUT) {
            Some(Ok(m)) => {
                let p = m.partition();
                if let Some(payload) = m.payload() {
                    out.push(Record {
                        partition: p,
                        offset: m.offset(),
                        payload: payload.to_vec(),
                    });
                }
                // Transaction markers take offsets too, so the last record may sit below
                // the high watermark; the position tells.
                if ends.get(&p).is_some_and(|end| m.offset() + 1 >= *end) {
                    ends.remove(&p);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
            }
            Some(Err(e)) => return Err(e).with_context(|| format!("reading {topic}")),
            None => anyhow::bail!("{topic} did not answer within {TIMEOUT:?}"),
        }
    }
    Ok(out)
}
