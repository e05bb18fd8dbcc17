//! Helpers for the forwarder tests: the real `forwarder` binary on private topics.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use schemas::{samples, ConversionStatus, LedgerEntry, OutboxRecord};

use crate::processor::ProcessorTopics;
use crate::service::ServiceProcess;

fn topic_args(topics: &ProcessorTopics) -> Vec<String> {
    [
        ("--outbox-topic", &topics.outbox),
        ("--retry-topic", &topics.retry),
        ("--attempts-topic", &topics.attempts),
        ("--dlq-topic", &topics.dlq),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_owned(), v.clone()])
    .collect()
}

impl ServiceProcess {
    /// The real forwarder delivering `topics`' outbox to the destinations of `file`.
    pub fn forwarder(topics: &ProcessorTopics, file: &Path) -> Self {
        Self::forwarder_with(topics, file, &[])
    }

    /// The forwarder with `extra` flags (before its own, which a subcommand would not take).
    pub fn forwarder_with(topics: &ProcessorTopics, file: &Path, extra: &[String]) -> Self {
        Self::forwarder_instance(topics, file, "", extra)
    }

    /// `forwarder_with`, logging to its own file: one of several instances in the group.
    pub fn forwarder_instance(
        topics: &ProcessorTopics,
        file: &Path,
        instance: &str,
        extra: &[String],
    ) -> Self {
        let mut args = extra.to_vec();
        args.extend(topic_args(topics));
        args.extend([
            "--destinations-file".to_owned(),
            file.display().to_string(),
            "--group-id".to_owned(),
            format!("{}.forwarder", topics.group),
        ]);
        Self::start(
            "forwarder",
            &format!("{}-forwarder{instance}", topics.group),
            &args,
        )
    }
}

/// Runs `forwarder replay` with `filter` and waits for it; panics if it fails.
pub fn replay(topics: &ProcessorTopics, filter: &[&str]) {
    let mut args = topic_args(topics);
    args.push("replay".to_owned());
    args.extend(filter.iter().map(|a| a.to_string()));
    let status = std::process::Command::new(crate::service::workspace_bin("forwarder"))
        .args(&args)
        .env("KAFKA_BOOTSTRAP_SERVERS", crate::kafka_bootstrap())
        .status()
        .expect("forwarder replay runs");
    assert!(status.success(), "forwarder replay failed");
}

/// An outbox record of a fresh sale with event_id and order ID `id`, for `destination`.
pub fn outbox_record(destination: &str, id: &str) -> OutboxRecord {
    let mut event = samples::sale();
    event.event_id = id.to_owned();
    event.order_id = Some(id.to_owned());
    event.occurred_at = Utc::now();
    OutboxRecord {
        destination: destination.to_owned(),
        idempotency_key: id.to_owned(),
        enqueued_at: Utc::now(),
        entry: LedgerEntry::opening(event, ConversionStatus::Sold, Utc::now())
            .expect("sample amounts fit decimal(18, 6)"),
    }
}

/// Deliveries per event ID, as a [`counting_receiver`] saw them.
pub type Deliveries = Arc<Mutex<HashMap<String, u32>>>;

/// A postback receiver on a free port that counts the deliveries of each `tx` query value
/// (a destination URL `<url>/pb?tx={event_id}`); returns its base URL.
pub async fn counting_receiver() -> (String, Deliveries) {
    use axum::extract::{Query, State};
    async fn postback(
        State(seen): State<Deliveries>,
        Query(q): Query<HashMap<String, String>>,
    ) -> &'static str {
        if let Some(tx) = q.get("tx") {
            *seen.lock().unwrap().entry(tx.clone()).or_default() += 1;
        }
        "ok"
    }
    let seen: Deliveries = Arc::default();
    let app = axum::Router::new()
        .route("/pb", axum::routing::any(postback))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// (destination, reason) of every dead letter.
pub fn dead_letters(topics: &ProcessorTopics) -> Vec<(String, String)> {
    let consumer: rdkafka::consumer::BaseConsumer = crate::kafka()
        .config(&[])
        .set("group.id", crate::unique_name("dlq-read"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..crate::processor::PARTITIONS {
        tpl.add_partition_offset(&topics.dlq, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut pending = crate::processor::PARTITIONS;
    let mut out = Vec::new();
    while pending > 0 {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                let header = |name: &str| {
                    m.headers()
                        .and_then(|h| h.iter().find(|h| h.key == name))
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_default()
                };
                out.push((header("destination"), header("reason")));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => pending -= 1,
            Some(Err(e)) => panic!("{e}"),
            None => panic!("the DLQ did not answer"),
        }
    }
    out
}
