//! The benchmark baseline: the same consumer and producer settings, each input value copied
//! to the ledger topic's same partition, with no transactions, no decoding and no state.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::config::Config;
use crate::metrics::Metrics;

pub fn run(
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let producer: BaseProducer = config
        .kafka
        .config(&crate::transaction::OUTPUT_PRODUCER)
        .create()
        .context("creating the producer")?;
    let consumer: BaseConsumer = config
        .kafka
        .config(&[
            ("group.id", config.group_id.as_str()),
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "200"),
            ("auto.offset.reset", "earliest"),
            ("fetch.max.bytes", "52428800"),
            ("queued.max.messages.kbytes", "131072"),
        ])
        .create()
        .context("creating the consumer")?;
    consumer.subscribe(&[&config.input_topic])?;
    ready.store(true, Ordering::SeqCst);
    tracing::warn!("pass-through mode: no transactions, no dedup; for benchmarks only");

    while !shutdown.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(m)) => {
                let mut record = BaseRecord::<[u8], [u8]>::to(&config.ledger_topic)
                    .partition(m.partition())
                    .key(m.key().unwrap_or_default())
                    .payload(m.payload().unwrap_or_default());
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                            record = r;
                            producer.poll(Duration::from_millis(5));
                        }
                        Err((e, _)) => return Err(e).context("producing"),
                    }
                }
                metrics.events.with_label_values(&["first"]).inc();
            }
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30))?;
    Ok(())
}
