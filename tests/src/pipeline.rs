//! The whole pipeline on private topics and a private database: in-process ingest, the real
//! processor, forwarder and sink binaries, and trackctl's view of them.

use std::time::Duration;

use crate::processor::ProcessorTopics;
use crate::service::ServiceProcess;
use crate::sink::database;
use crate::{clickhouse_url, IngestServer};

/// A destinations file that sends SALE and REFUND postbacks to a webhook: trackctl's demo
/// receiver, started here on a free port for the rest of the test.
pub async fn webhook_destinations() -> String {
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = receiver.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(receiver, trackctl::demo::receiver::router()).await });
    format!(
        r#"
[[destination]]
name = "webhook"
kind = "webhook"
url = "http://{addr}/webhook"
events = ["SALE", "REFUND"]
"#
    )
}

pub struct Pipeline {
    pub topics: ProcessorTopics,
    pub database: String,
    pub ingest: IngestServer,
    pub processor: ServiceProcess,
    pub forwarder: ServiceProcess,
    pub sink: ServiceProcess,
}

impl Pipeline {
    /// Starts everything, routing postbacks by `destinations` (a destinations file's text),
    /// and waits until each service is ready.
    pub async fn start(prefix: &str, destinations: &str) -> Self {
        let topics = ProcessorTopics::create(prefix).await;
        Self::start_with(topics, database(prefix), destinations, &|_| Vec::new()).await
    }

    /// Starts everything on `topics` and `database`; each service and ingest also get the
    /// flags `connect` gives for its name ("ingest", "processor", "forwarder", "sink").
    pub async fn start_with(
        topics: ProcessorTopics,
        database: String,
        destinations: &str,
        connect: &dyn Fn(&str) -> Vec<String>,
    ) -> Self {
        std::fs::write(&topics.destinations, destinations).expect("destinations file");
        let sink_flags = connect("sink");
        let sink_flags: Vec<&str> = sink_flags.iter().map(String::as_str).collect();
        let processor_flags = connect("processor");
        let processor_flags: Vec<&str> = processor_flags.iter().map(String::as_str).collect();
        let mut sink = ServiceProcess::sink(&topics, &database, &sink_flags);
        let mut processor = ServiceProcess::processor(&topics, "p1", &processor_flags);
        let mut forwarder =
            ServiceProcess::forwarder_with(&topics, &topics.destinations, &connect("forwarder"));
        for s in [&mut sink, &mut processor, &mut forwarder] {
            s.wait_ready(Duration::from_secs(60));
        }
        // A click waits up to 2 s for Kafka before it is spooled: on a loaded CI machine the
        // default 150 ms spools clicks that then arrive twice, which the erase test would
        // count as the person's receipts.
        let mut ingest_flags = vec![
            format!("--events-topic={}", topics.input),
            format!("--quarantine-topic={}", topics.quarantine),
            "--click-wait-ms=2000".to_owned(),
        ];
        ingest_flags.extend(connect("ingest"));
        let ingest_flags: Vec<&str> = ingest_flags.iter().map(String::as_str).collect();
        let ingest = IngestServer::start(&ingest_flags).await;
        Self {
            topics,
            database,
            ingest,
            processor,
            forwarder,
            sink,
        }
    }

    /// trackctl's connection to the pipeline's database.
    pub fn warehouse(&self) -> trackctl::warehouse::Warehouse {
        trackctl::warehouse::Warehouse {
            clickhouse: telemetry::clickhouse::ClickHouseConnection::new(clickhouse_url()),
            database: self.database.clone(),
        }
    }

    /// The forwarder's topics, as trackctl reads the DLQ.
    pub fn postback_topics(&self) -> ::forwarder::config::Common {
        ::forwarder::config::Common {
            kafka: crate::kafka(),
            outbox_topic: self.topics.outbox.clone(),
            retry_topic: self.topics.retry.clone(),
            attempts_topic: self.topics.attempts.clone(),
            dlq_topic: self.topics.dlq.clone(),
        }
    }

    pub fn clickhouse(&self) -> clickhouse::Client {
        crate::sink::clickhouse(&self.database)
    }

    pub async fn stop(self) {
        self.ingest.stop().await;
        self.forwarder.terminate();
        self.processor.terminate();
        self.sink.terminate();
    }
}
