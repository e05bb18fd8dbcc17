//! The sink benchmark (docs/BENCHMARKS.md), run by `scripts/bench-sink` against the running
//! stack with release binaries.
//!
//! `throughput`: N ledger entries (every contract field set) are produced once. The sink
//! binary loads them into a fresh database, alternating with the baseline: the same rows,
//! exported from ClickHouse as one RowBinary file, inserted into an empty copy of the table
//! with `curl` over HTTP, the physical limit of this machine.
//!
//! `engine`: the sink beside ClickHouse's Kafka table engine (`engine.rs`).
//!
//! `latency`: events POSTed one per request to ingest at a fixed rate go through the
//! processor and the sink (real binaries, private output topics); each event's latency is
//! from its ingest acknowledgement to the moment a poll of ClickHouse (every 50 ms) sees its
//! ledger row.

mod engine;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use schemas::avro::ledger::encode_entry;
use schemas::{samples, ConversionStatus, LedgerEntry};
use tests::processor::{EventProducer, ProcessorTopics};
use tests::service::ServiceProcess;
use tests::sink::{clickhouse, count, database};
use tests::{clickhouse_url, secrets, IngestServer};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sink rows/s beside a RowBinary insert of the same rows.
    Throughput {
        #[arg(long, default_value_t = 500_000)]
        rows: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// `sale`: every contract field set (the widest row); `click`: a click with its
        /// attribution (the most common row).
        #[arg(long, default_value = "sale")]
        shape: String,
    },
    /// Sink rows/s and CPU beside ClickHouse's Kafka table engine over the same rows.
    Engine {
        #[arg(long, default_value_t = 500_000)]
        rows: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Rows per message on the engine's batched topic.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// Then kill ClickHouse (SIGKILL) during a load of each: duplicates and losses.
        #[arg(long)]
        kill: bool,
        /// A flag for the sink, as `--name=value`, replacing the tests' own (`tests::sink`
        /// runs it at `--batch-ms=200`); repeat for more.
        #[arg(long, default_value = "--batch-ms=500", allow_hyphen_values = true)]
        sink_arg: Vec<String>,
    },
    /// Ingest acknowledgement to ClickHouse visibility, through the processor and the sink.
    Latency {
        #[arg(long, default_value_t = 1_000)]
        rate: u64,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Throughput {
            rows,
            rounds,
            shape,
        } => throughput(rows, rounds, &shape).await,
        Cmd::Engine {
            rows,
            rounds,
            batch,
            kill,
            sink_arg,
        } => {
            let sink_args: Vec<&str> = sink_arg.iter().map(String::as_str).collect();
            engine::compare(rows, rounds, batch, kill, &sink_args).await
        }
        Cmd::Latency { rate, seconds } => latency(rate, seconds).await,
    }
}

fn bench_entry(i: usize, shape: &str) -> LedgerEntry {
    let mut event = if shape == "click" {
        samples::click()
    } else {
        samples::sale()
    };
    event.event_id = format!("bench-{shape}-{i}");
    if shape == "click" {
        event.click_id = Some(format!("bench-click-{i}"));
    } else {
        event.order_id = Some(format!("bench-order-{i}"));
    }
    event.received_at = chrono::Utc::now();
    let recorded_at = event.received_at;
    let mut entry = LedgerEntry::opening(event, ConversionStatus::Sold, recorded_at)
        .expect("sample amounts fit decimal(18, 6)");
    entry.input_offset = i as i64;
    entry
}

async fn wait_count(db: &str, table: &str, n: u64) -> anyhow::Result<()> {
    let ch = clickhouse(db);
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&ch, table).await != Some(n) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{db}.{table} never reached {n} rows"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

fn curl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(())
}

/// Produces `rows` ledger entries of `shape` to `topics.ledger`.
fn produce_entries(topics: &ProcessorTopics, rows: usize, shape: &str) -> anyhow::Result<()> {
    let producer = EventProducer::new(&topics.ledger);
    for i in 0..rows {
        let entry = bench_entry(i, shape);
        producer.send_raw(&entry.conversion_key, &encode_entry(&entry)?);
    }
    producer.flush();
    eprintln!("[bench] {rows} {shape} ledger entries on {}", topics.ledger);
    Ok(())
}

async fn throughput(rows: usize, rounds: usize, shape: &str) -> anyhow::Result<()> {
    let topics = ProcessorTopics::create("bench-sink").await;
    produce_entries(&topics, rows, shape)?;

    let columns = "event_id, event_name, conversion_key, link_status, linked_event_id, \
        adopted_event_ids, signed_revenue, signed_payout, conversion_status, net_revenue, \
        net_payout, flags, occurred_at, received_at, recorded_at, settled_at, \
        occurred_at_original, source_timezone, network, order_id, transaction_id, \
        parent_order_id, rebill_sequence, lead_id, native_event_type, status_only, click_id, \
        affiliate_id, campaign_id, offer_id, source, placement, utm_source, utm_medium, \
        utm_campaign, utm_term, utm_content, sub1, sub2, sub3, sub4, sub5, revenue, payout, \
        currency, payout_status, refund_status, is_test, consent_state, data_minimization, \
        ip_hash, email_hash, user_agent, route, delivery_attempt, attributes, \
        kafka_partition, kafka_offset";
    let file = std::env::temp_dir().join(format!("{}.rowbinary", topics.group));
    let base_db = database("bench_sink_base");
    let url = clickhouse_url();
    let mut results = Vec::new();
    for round in 1..=rounds {
        // The sink: a fresh database, the binary from start to the last row.
        let db = database("bench_sink");
        let started = Instant::now();
        let mut sink = ServiceProcess::sink(&topics, &db, &[]);
        sink.wait_ready(Duration::from_secs(60));
        let ready = Instant::now();
        wait_count(&db, "ledger", rows as u64).await?;
        let sink_rate = rows as f64 / ready.elapsed().as_secs_f64();
        sink.terminate();
        eprintln!(
            "[bench] sink ready after {:.2} s (migrations, assignment)",
            ready.duration_since(started).as_secs_f64()
        );

        if round == 1 {
            // The baseline's input: exactly the rows the sink stored, as RowBinary.
            let export = format!("SELECT {columns} FROM {db}.ledger FORMAT RowBinary");
            curl(&[
                "-o",
                &file.display().to_string(),
                &url,
                "--data-binary",
                &export,
            ])?;
            curl(&[&url, "--data-binary", &format!("CREATE DATABASE {base_db}")])?;
            curl(&[
                &url,
                "--data-binary",
                &format!("CREATE TABLE {base_db}.ledger AS {db}.ledger"),
            ])?;
        }
        curl(&[
            &url,
            "--data-binary",
            &format!("TRUNCATE TABLE {base_db}.ledger"),
        ])?;
        let insert = format!(
            "{url}/?query={}",
            percent(&format!(
                "INSERT INTO {base_db}.ledger ({columns}) FORMAT RowBinary"
            ))
        );
        let t = Instant::now();
        curl(&[&insert, "--data-binary", &format!("@{}", file.display())])?;
        let base_rate = rows as f64 / t.elapsed().as_secs_f64();
        wait_count(&base_db, "ledger", rows as u64).await?;
        let ratio = sink_rate / base_rate;
        println!("round {round}: RowBinary insert {base_rate:.0} rows/s, sink {sink_rate:.0} rows/s, ratio {ratio:.2}");
        results.push((ratio, base_rate, sink_rate));
    }
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, base, sink) = results[results.len() / 2];
    println!(
        "median round: RowBinary insert {base:.0} rows/s, sink {sink:.0} rows/s, ratio {ratio:.2}"
    );
    std::fs::remove_file(&file).ok();
    Ok(())
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn latency(rate: u64, seconds: u64) -> anyhow::Result<()> {
    let ingest = IngestServer::start(&[]).await;
    // The processor reads ingest's topic from where it stood when ingest started, and writes
    // private output topics that the sink loads into a fresh database.
    let mut topics = ProcessorTopics::create("bench-latency").await;
    topics.input = schemas::topics::EVENTS.to_owned();
    let starts: BaseConsumer = tests::kafka()
        .config(&[])
        .set("group.id", &topics.group)
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for (p, o) in &ingest.marks[schemas::topics::EVENTS] {
        tpl.add_partition_offset(&topics.input, *p, Offset::Offset(*o))?;
    }
    starts.commit(&tpl, CommitMode::Sync)?;
    drop(starts);

    let db = database("bench_latency");
    let mut processor = ServiceProcess::processor(&topics, "latency", &[]);
    let mut sink = ServiceProcess::sink(&topics, &db, &[]);
    processor.wait_ready(Duration::from_secs(60));
    sink.wait_ready(Duration::from_secs(60));

    let run = uuid::Uuid::new_v4().simple().to_string();
    let client = reqwest::Client::new();
    let url = format!("{}/v1/events", ingest.base_url);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let total = rate * seconds;
    let sender = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
        let mut inflight = Vec::new();
        for i in 0..total {
            tick.tick().await;
            let (client, url, tx) = (client.clone(), url.clone(), tx.clone());
            let id = format!("lat-{run}-{i}");
            inflight.push(tokio::spawn(async move {
                let body = serde_json::json!({"event_id": id, "event_name": "LEAD", "lead_id": id});
                let r = client
                    .post(&url)
                    .bearer_auth(secrets::API_KEY)
                    .json(&body)
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    tx.send((id, Instant::now())).ok();
                }
            }));
        }
        for t in inflight {
            t.await.ok();
        }
    });

    let ch = clickhouse(&db);
    let mut pending: HashMap<String, Instant> = HashMap::new();
    let mut latencies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Ok((id, at)) = rx.try_recv() {
            pending.insert(id, at);
        }
        if pending.is_empty() {
            continue;
        }
        let ids: Vec<&String> = pending.keys().collect();
        let now = Instant::now();
        let seen: Vec<String> = ch
            .query("SELECT event_id FROM ledger WHERE has(?, event_id)")
            .bind(ids)
            .fetch_all()
            .await
            .unwrap_or_default();
        for id in seen {
            if let Some(at) = pending.remove(&id) {
                latencies.push(now.saturating_duration_since(at).as_secs_f64() * 1000.0);
            }
        }
    }
    sender.await?;
    processor.terminate();
    sink.terminate();
    ingest.stop().await;
    anyhow::ensure!(!latencies.is_empty(), "no event became visible");
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "{} events at {rate}/s for {seconds} s, {} seen in ClickHouse: ack to visible p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms (50 ms polls)",
        total,
        latencies.len(),
        pct(0.5),
        pct(0.95),
        latencies[latencies.len() - 1]
    );
    Ok(())
}
