//! Backlog recovery (docs/BENCHMARKS.md): the rollout checklist's "queue recovery after an
//! outage under 60 minutes for a normal backlog". With the processor and the sink stopped,
//! an hour of traffic at `--rate` events/s accumulates on the events topic (produced at
//! once: the backlog is what matters, not how it arrived); then both start together, and
//! the run measures how long until the processor has committed every input offset, and
//! until ClickHouse holds every ledger entry.
//!
//!     cargo build --release -p processor -p sink -p tests --bin bench_backlog
//!     target/release/bench_backlog --rate 100

use std::time::{Duration, Instant};

use clap::Parser;
use tests::processor::{wait_caught_up, EventProducer, ProcessorTopics, Scenario};
use tests::service::ServiceProcess;
use tests::sink::{clickhouse, count, database};

#[derive(Parser)]
struct Args {
    /// The steady rate, in input events per second, whose hour of traffic makes the backlog.
    #[arg(long, default_value_t = 100)]
    rate: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let topics = runtime.block_on(ProcessorTopics::create("bench-backlog"));
    let db = database("bench_backlog");
    // Scenario::mixed makes about 1.93 input events per conversion.
    let target = args.rate * 3600;
    let scenario = Scenario::mixed("backlog", target * 100 / 193);
    let producer = EventProducer::new(&topics.input);
    for e in &scenario.events {
        producer.send(e);
    }
    producer.flush();
    let events = scenario.events.len();
    let entries = scenario.unique_ids.len() as u64;
    eprintln!(
        "[bench] backlog: {events} events ({:.0} events/s for an hour), {entries} ledger entries to load",
        events as f64 / 3600.0
    );

    let started = Instant::now();
    let mut sink = ServiceProcess::sink(&topics, &db, &[]);
    let processor = ServiceProcess::processor(&topics, "backlog", &[]);
    let t = topics.clone();
    let caught_up = std::thread::spawn(move || {
        wait_caught_up(&t, Duration::from_secs(1800));
        Instant::now()
    });
    let ch = clickhouse(&db);
    let loaded = loop {
        let rows = runtime.block_on(count(&ch, "ledger")).unwrap_or(0);
        if rows >= entries {
            break Instant::now();
        }
        anyhow::ensure!(sink.is_running(), "the sink exited; see its log");
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "not loaded in 30 minutes: {rows} of {entries}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let processed = caught_up.join().expect("caught up");
    let (p, l) = (
        processed.duration_since(started).as_secs_f64(),
        loaded.duration_since(started).as_secs_f64(),
    );
    println!(
        "backlog of {events} events (an hour at {:.0}/s): processor caught up in {p:.1} s ({:.0} events/s); ClickHouse holds all {entries} entries after {l:.1} s ({:.0} entries/s end to end)",
        events as f64 / 3600.0,
        events as f64 / p,
        entries as f64 / l
    );
    processor.terminate();
    sink.terminate();
    Ok(())
}
