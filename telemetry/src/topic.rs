//! Reading a whole topic as it is now: the DLQ replay and the operator's commands that
//! inspect or replay a topic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::KafkaConnection;
use crate::KafkaLogs;

/// One record of a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// The value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// The low and high watermarks of `topic`/`partition`. Kafka answers "not leader" or "leader
/// not available" for a while after a topic is created or a broker fails over, so errors are
/// retried until `within` has passed; the last one is returned then.
pub fn watermarks<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    within: Duration,
) -> KafkaResult<(i64, i64)> {
    let deadline = Instant::now() + within;
    let mut warned = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.fetch_watermarks(topic, partition, left) {
            Ok(marks) => return Ok(marks),
            Err(e) if Instant::now() + Duration::from_millis(200) < deadline => {
                if !warned {
                    tracing::warn!(topic, partition, error = %e, "watermarks not available yet; retrying");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e),
        }
    }
}

/// How many partitions `topic` has, from the cluster's metadata; 0 when it does not exist.
pub fn partition_count<C, K>(consumer: &K, topic: &str, within: Duration) -> KafkaResult<i32>
where
    C: ConsumerContext + 'static,
    K: Consumer<C>,
{
    let metadata = consumer.fetch_metadata(Some(topic), within)?;
    Ok(metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32))
}

/// Every committed record of `topic` up to the end of each partition when the read started,
/// read by a consumer of `group` that commits nothing; fails when Kafka is silent for
/// `timeout`.
pub fn read_to_end(
    kafka: &KafkaConnection,
    topic: &str,
    group: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<Record>> {
    let bootstrap = &kafka.bootstrap_servers;
    let consumer: BaseConsumer<KafkaLogs> = kafka
        .config(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create_with_context(KafkaLogs)?;
    let partitions = partition_count(&consumer, topic, Duration::from_secs(30))
        .with_context(|| format!("cannot reach Kafka at {bootstrap}"))?;
    anyhow::ensure!(
        partitions > 0,
        "topic {topic} does not exist on {bootstrap}"
    );
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        let (low, high) = watermarks(&consumer, topic, p, Duration::from_secs(30))
            .with_context(|| format!("watermarks of {topic}/{p}"))?;
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
        match consumer.poll(timeout) {
            Some(Ok(m)) => {
                let p = m.partition();
                if let Some(payload) = m.payload() {
                    let headers = m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    out.push(Record {
                        partition: p,
                        offset: m.offset(),
                        key: m.key().unwrap_or_default().to_vec(),
                        payload: payload.to_vec(),
                        headers,
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
            None => anyhow::bail!("{topic} did not answer within {timeout:?}"),
        }
    }
    Ok(out)
}
