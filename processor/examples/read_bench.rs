//! What reading one input record costs the processor, by framing: single-object records
//! (fingerprint lookup, decode, validation) beside Confluent-framed ones (the writer schema
//! from the registry's cache, decode, validation), alternating rounds, median reported. The
//! schema is fetched from the registry once, at warm-up; the run fails if any later record
//! asked the registry again, so the difference is the cache hit's cost.
//!
//!     scripts/stack up && eval "$(scripts/stack env)"
//!     cargo run --release -p processor --example read_bench [records-per-round] [rounds]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use processor::events::EventReader;
use processor::Metrics;
use schemas::avro::framing::encode_confluent;
use schemas::{samples, EventCodec, SingleObjectCodec};
use telemetry::registry::SchemaRegistryConnection;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(200_000, |a| a.parse().expect("records"));
    let rounds: usize = args.next().map_or(5, |a| a.parse().expect("rounds"));
    let url = std::env::var("SCHEMA_REGISTRY_URL")
        .unwrap_or_else(|_| telemetry::registry::DEFAULT_URL.to_owned());
    let registry = SchemaRegistryConnection::new(url).client()?;
    let subject = "bench.read.v1-value";
    let id = tokio::runtime::Runtime::new()?
        .block_on(registry.register(subject, schemas::avro::current_schema_json()))?;

    let event = samples::sale();
    let single = SingleObjectCodec::new().encode(&event)?;
    let confluent = encode_confluent(id, &event)?;
    let metrics = Arc::new(Metrics::new());
    let mut reader = EventReader::new(registry, metrics.clone())?;
    // Warm-up: the one registry request.
    assert_eq!(reader.read(&confluent).ok(), Some(event.clone()));
    assert_eq!(reader.read(&single).ok(), Some(event));

    let mut time = |bytes: &[u8]| {
        let start = Instant::now();
        for _ in 0..n {
            black_box(reader.read(black_box(bytes)).is_ok());
        }
        start.elapsed().as_nanos() as f64 / n as f64
    };
    let (mut s, mut c) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        s.push(time(&single));
        c.push(time(&confluent));
    }
    let codec = SingleObjectCodec::new();
    let decoded = codec.decode(&single)?;
    let (mut d, mut v) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..n {
            black_box(codec.decode(black_box(&single)).is_ok());
        }
        d.push(start.elapsed().as_nanos() as f64 / n as f64);
        let start = Instant::now();
        for _ in 0..n {
            black_box(schemas::validate(black_box(&decoded)).is_ok());
        }
        v.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    let requests = metrics.registry_requests.with_label_values(&["ok"]).get();
    anyhow::ensure!(
        requests == 1,
        "{requests} registry requests: records after warm-up were not all cache hits"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, c) = (median(s), median(c));
    println!(
        "of which: decoding alone {:.0} ns/record, validation alone {:.0} ns/record",
        median(d),
        median(v)
    );
    println!(
        "{n} records x {rounds} rounds, median: single-object {s:.0} ns/record, Confluent {c:.0} ns/record ({:+.0} ns, ratio {:.2}); registry requests: 1 (warm-up)",
        c - s,
        c / s
    );
    Ok(())
}
