//! The ingest benchmark's baseline: the same Avro payloads that ingest produces, sent by a
//! bare rdkafka producer with ingest's settings (idempotent, acks=all, lz4, linger 2 ms),
//! every delivery report awaited. No HTTP, no validation: the broker's limit on this machine.
//!
//!     cargo run --release -p ingest --example raw_produce -- [events] [bootstrap]

use std::time::{Duration, Instant};

use futures::future::join_all;
use ingest::producer::{EventProducer, KafkaProducer};
use schemas::{conversion_key, samples, topics, EventCodec, SingleObjectCodec};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let events: usize = args.next().map_or(200_000, |a| a.parse().expect("events"));
    let bootstrap = args.next().unwrap_or_else(|| {
        std::env::var("KAFKA_BOOTSTRAP_SERVERS").unwrap_or("127.0.0.1:9092".into())
    });
    let sink = KafkaProducer::with_settings(
        &telemetry::kafka::KafkaConnection::new(bootstrap),
        Duration::from_secs(30),
        1_000_000,
    )
    .expect("producer");

    let codec = SingleObjectCodec::new();
    let payloads: Vec<(String, Vec<u8>)> = (0..events)
        .map(|i| {
            let mut e = samples::sale();
            e.event_id = format!("bench-{i}");
            e.order_id = Some(format!("bench-order-{}", i % 10_000));
            (conversion_key(&e), codec.encode(&e).expect("encodes"))
        })
        .collect();
    let bytes: usize = payloads.iter().map(|(_, p)| p.len()).sum();

    let start = Instant::now();
    // Chunks bound the futures held at once, as a server's in-flight limit would.
    for chunk in payloads.chunks(20_000) {
        let sends = chunk.iter().map(|(k, p)| sink.send(topics::EVENTS, k, p));
        for r in join_all(sends).await {
            r.expect("delivered");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "raw producer: {events} events ({} bytes each on average) in {secs:.2} s = {:.0} events/s",
        bytes / events,
        events as f64 / secs
    );
}
