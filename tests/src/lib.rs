//! Helpers shared by the end-to-end tests in `tests/`. They run against the real Kafka broker
//! and ClickHouse server that `scripts/test` starts; see the README.

/// The address of a service started by `scripts/stack`, from the environment it exports.
///
/// A missing variable fails the test loudly: these tests never pass without the real stack.
pub fn stack_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test, or start the stack with \
             scripts/stack up and eval \"$(scripts/stack env)\""
        )
    })
}

/// The Kafka bootstrap servers of the running stack.
pub fn kafka_bootstrap() -> String {
    stack_env("KAFKA_BOOTSTRAP_SERVERS")
}

/// The ClickHouse HTTP URL of the running stack.
pub fn clickhouse_url() -> String {
    stack_env("CLICKHOUSE_URL")
}

/// A name no other test run uses, for databases, groups and tables.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Where a message landed, and what was read back from exactly there.
pub struct KafkaRoundTrip {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Produces one message with an idempotent `acks=all` producer, then reads back, with a
/// `read_committed` consumer, the message at the partition and offset the delivery report
/// gave.
pub async fn produce_and_read_back(
    topic: &str,
    key: &str,
    payload: &[u8],
) -> anyhow::Result<KafkaRoundTrip> {
    use anyhow::Context;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::Duration;

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let delivery = producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(15),
        )
        .await
        .map_err(|(e, _)| e)
        .with_context(|| format!("producing to {topic}"))?;

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_bootstrap())
        .set("group.id", unique_name("read-back"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, delivery.partition, Offset::Offset(delivery.offset))?;
    consumer.assign(&assignment)?;
    let message = consumer.poll(Duration::from_secs(15)).with_context(|| {
        format!(
            "nothing to read at {topic}[{}]@{} within 15 s",
            delivery.partition, delivery.offset
        )
    })??;
    Ok(KafkaRoundTrip {
        partition: delivery.partition,
        offset: delivery.offset,
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().unwrap_or_default().to_vec(),
    })
}
