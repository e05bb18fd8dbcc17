//! The Kafka producer accepted events go to, behind a trait (as in PostHog's capture), so the
//! HTTP layer only knows "durably accepted, or not".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use telemetry::kafka::KafkaConnection;

use crate::config::Config;

/// Why a message was not durably accepted. Every variant means "answer 503, retry later".
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    #[error("the producer queue is full")]
    QueueFull,
    #[error("Kafka did not confirm delivery in time")]
    Timeout,
    #[error("Kafka refused the message: {0}")]
    Kafka(String),
}

impl ProduceError {
    /// Label for the produce-error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            ProduceError::QueueFull => "queue_full",
            ProduceError::Timeout => "timeout",
            ProduceError::Kafka(_) => "kafka",
        }
    }
}

/// A durable destination for encoded messages.
pub trait EventProducer: Send + Sync + 'static {
    /// Resolves once the message is durably stored (for Kafka: acknowledged by all in-sync
    /// replicas), or with the reason it is not.
    fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> BoxFuture<'static, Result<(), ProduceError>>;

    /// Resolves once every message is durably stored, or with the first reason one is not.
    /// One wait for the whole batch instead of one per message.
    fn send_batch(
        &self,
        topic: &str,
        messages: &[(String, Vec<u8>)],
    ) -> BoxFuture<'static, Result<(), ProduceError>>;

    /// Whether the sink can currently accept messages.
    fn ready(&self) -> bool;

    /// Waits until everything sent so far is delivered or failed.
    fn flush(&self, timeout: Duration);
}

/// Kafka through an idempotent, `acks=all` producer.
pub struct KafkaProducer {
    producer: FutureProducer,
    ack_timeout: Duration,
    reachable: Arc<AtomicBool>,
}

impl KafkaProducer {
    pub fn new(config: &Config) -> Result<Self, KafkaError> {
        Self::with_settings(
            &config.kafka,
            config.ack_timeout(),
            config.producer_queue_messages,
        )
    }

    pub fn with_settings(
        kafka: &KafkaConnection,
        ack_timeout: Duration,
        queue_messages: usize,
    ) -> Result<Self, KafkaError> {
        // librdkafka gives up on a message after message.timeout.ms, so a delivery report
        // (success or error) always arrives within the ack timeout.
        let message_timeout = ack_timeout.as_millis().max(1000).to_string();
        let queue_messages = queue_messages.to_string();
        let producer: FutureProducer = kafka
            .config(&[
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "2"),
                ("compression.type", "lz4"),
                ("message.timeout.ms", message_timeout.as_str()),
                ("queue.buffering.max.messages", queue_messages.as_str()),
            ])
            .create()?;
        Ok(Self {
            producer,
            ack_timeout,
            reachable: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Probes the broker's metadata for `topic` every `period`, for `/readyz`.
    pub fn spawn_health_probe(&self, topic: &str, period: Duration) {
        let topic = topic.to_owned();
        let producer = self.producer.clone();
        let reachable = self.reachable.clone();
        tokio::spawn(async move {
            loop {
                let p = producer.clone();
                let topic = topic.clone();
                let ok = tokio::task::spawn_blocking(move || {
                    p.client()
                        .fetch_metadata(Some(&topic), Duration::from_secs(2))
                        .map(|m| {
                            m.topics().iter().any(|t| {
                                t.name() == topic
                                    && t.error().is_none()
                                    && !t.partitions().is_empty()
                            })
                        })
                        .unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                reachable.store(ok, Ordering::Relaxed);
                tokio::time::sleep(period).await;
            }
        });
    }
}

impl EventProducer for KafkaProducer {
    fn send(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> BoxFuture<'static, Result<(), ProduceError>> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        let queued = self.producer.send_result(record).map_err(|(e, _)| e);
        let timeout = self.ack_timeout;
        let reachable = self.reachable.clone();
        Box::pin(async move {
            let delivery = match queued {
                Ok(d) => d,
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    return Err(ProduceError::QueueFull)
                }
                Err(e) => return Err(ProduceError::Kafka(e.to_string())),
            };
            match tokio::time::timeout(timeout, delivery).await {
                Err(_) => Err(ProduceError::Timeout),
                Ok(Err(_canceled)) => {
                    Err(ProduceError::Kafka("producer dropped the message".into()))
                }
                Ok(Ok(Err((e, _)))) => {
                    reachable.store(false, Ordering::Relaxed);
                    Err(ProduceError::Kafka(e.to_string()))
                }
                Ok(Ok(Ok(_))) => Ok(()),
            }
        })
    }

    fn send_batch(
        &self,
        topic: &str,
        messages: &[(String, Vec<u8>)],
    ) -> BoxFuture<'static, Result<(), ProduceError>> {
        let mut deliveries = Vec::with_capacity(messages.len());
        let mut refused = None;
        for (key, payload) in messages {
            match self
                .producer
                .send_result(FutureRecord::to(topic).key(key).payload(payload))
            {
                Ok(d) => deliveries.push(d),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    refused = Some(ProduceError::QueueFull);
                    break;
                }
                Err((e, _)) => {
                    refused = Some(ProduceError::Kafka(e.to_string()));
                    break;
                }
            }
        }
        let timeout = self.ack_timeout;
        let reachable = self.reachable.clone();
        Box::pin(async move {
            // Messages queued before a refusal still get their delivery reports; the batch
            // is refused as a whole and the client retries it.
            let all = async {
                for delivery in deliveries {
                    match delivery.await {
                        Err(_canceled) => {
                            return Err(ProduceError::Kafka("producer dropped the message".into()))
                        }
                        Ok(Err((e, _))) => {
                            reachable.store(false, Ordering::Relaxed);
                            return Err(ProduceError::Kafka(e.to_string()));
                        }
                        Ok(Ok(_)) => {}
                    }
                }
                Ok(())
            };
            match tokio::time::timeout(timeout, all).await {
                Err(_) => Err(ProduceError::Timeout),
                Ok(result) => refused.map_or(result, Err),
            }
        })
    }

    fn ready(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "producer flush did not finish");
        }
    }
}
