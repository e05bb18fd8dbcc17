//! The forwarder benchmark (docs/BENCHMARKS.md), run by `scripts/bench-forwarder` against
//! the running stack with release binaries.
//!
//! A local receiver (axum, answers 200) counts requests. Baseline: a bare HTTP client
//! (reqwest, the forwarder's client) sending N GETs with the forwarder's per-destination
//! concurrency. Forwarder: N outbox records for one destination without a practical rate
//! limit, delivered by the release binary; rate from the receiver's first request to its
//! N-th. The difference of the amortised per-request times (1/rate) is the forwarder's
//! scheduling overhead per attempt (decode, token, attempt record, offset tracking).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use clap::Parser;
use schemas::avro::ledger::encode_outbox;
use tests::forwarder::outbox_record;
use tests::host::cpu_seconds;
use tests::processor::{EventProducer, ProcessorTopics};
use tests::service::ServiceProcess;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The forwarder's per-destination concurrency, used by the baseline too.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

#[derive(Clone, Default)]
struct Counter {
    hits: Arc<AtomicU64>,
    first: Arc<Mutex<Option<Instant>>>,
    last: Arc<Mutex<Option<Instant>>>,
}

impl Counter {
    fn reset(&self) {
        self.hits.store(0, Ordering::SeqCst);
        *self.first.lock().unwrap() = None;
        *self.last.lock().unwrap() = None;
    }

    fn rate(&self) -> f64 {
        let n = self.hits.load(Ordering::SeqCst);
        let (f, l) = (self.first.lock().unwrap(), self.last.lock().unwrap());
        (n.saturating_sub(1)) as f64 / l.unwrap().duration_since(f.unwrap()).as_secs_f64()
    }
}

async fn hit(axum::extract::State(c): axum::extract::State<Counter>) -> &'static str {
    let now = Instant::now();
    c.first.lock().unwrap().get_or_insert(now);
    *c.last.lock().unwrap() = Some(now);
    c.hits.fetch_add(1, Ordering::SeqCst);
    "ok"
}

async fn wait_for(counter: &Counter, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while counter.hits.load(Ordering::SeqCst) < n as u64 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} requests arrived",
            counter.hits.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let counter = Counter::default();
    let app = Router::new()
        .route("/pb", get(hit))
        .with_state(counter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://127.0.0.1:{port}/pb");

    let mut results = Vec::new();
    for round in 1..=args.rounds {
        // Baseline: the bare client, same concurrency.
        counter.reset();
        let me = std::process::id();
        let bench_cpu = cpu_seconds(me);
        let client = reqwest::Client::new();
        let next = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..args.concurrency)
            .map(|_| {
                let (client, url, next) = (client.clone(), url.clone(), next.clone());
                let n = args.requests as u64;
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::SeqCst) < n {
                        client.get(&url).send().await.ok();
                    }
                })
            })
            .collect();
        for w in workers {
            w.await?;
        }
        wait_for(&counter, args.requests).await?;
        let base = counter.rate();
        // This process ran the client and the receiver.
        let baseline_cpu = cpu_seconds(me) - bench_cpu;

        // The forwarder: the same requests as outbox records.
        counter.reset();
        let topics = ProcessorTopics::create("bench-fwd").await;
        let producer = EventProducer::new(&topics.outbox);
        for i in 0..args.requests {
            let id = format!("{}-{i}", topics.group);
            producer.send_raw(&id, &encode_outbox(&outbox_record("bench", &id))?);
        }
        producer.flush();
        let file = std::env::temp_dir().join(format!("{}.toml", topics.group));
        std::fs::write(
            &file,
            format!(
                "[[destination]]\nname='bench'\nkind='s2s'\nurl='{url}?tx={{event_id}}'\nevents=['SALE']\nrate_per_second=1000000000\nburst=1000000000\n"
            ),
        )?;
        let receiver_cpu = cpu_seconds(me);
        let forwarder = ServiceProcess::forwarder(&topics, &file);
        wait_for(&counter, args.requests).await?;
        // This process ran the receiver only: the bare client's own share is the difference.
        let receiver_cpu = cpu_seconds(me) - receiver_cpu;
        let client_us = (baseline_cpu - receiver_cpu) * 1e6 / args.requests as f64;
        let fwd = counter.rate();
        // Its start-up included: a few milliseconds against seconds of delivery.
        let cpu_us = cpu_seconds(forwarder.pid()) * 1e6 / args.requests as f64;
        forwarder.terminate();
        // Amortised: how much longer each attempt takes the whole system than a bare request.
        let overhead_us = (1.0 / fwd - 1.0 / base) * 1e6;
        println!(
            "round {round}: bare client {base:.0} requests/s, forwarder {fwd:.0} requests/s, ratio {:.2}, overhead {overhead_us:.1} µs per attempt (amortised), CPU per request: bare client {client_us:.1} µs, forwarder {cpu_us:.1} µs",
            fwd / base
        );
        results.push((fwd / base, base, fwd, overhead_us));
    }
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, base, fwd, overhead) = results[results.len() / 2];
    println!("median round: bare client {base:.0} requests/s, forwarder {fwd:.0} requests/s, ratio {ratio:.2}, overhead {overhead:.1} µs per attempt (amortised)");
    Ok(())
}
