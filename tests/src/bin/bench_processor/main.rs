//! The processor benchmark (docs/BENCHMARKS.md), run by `scripts/bench-processor` against the
//! running stack with release binaries.
//!
//! `throughput`: one mixed input (10% duplicates, refunds, chargebacks, lead chains) is
//! produced once; then the processor binary runs over it in pass-through mode (the baseline)
//! and in exactly-once mode, alternating, each run with its own group and output topics.
//! Rate = input offsets committed per second by the group, from its first commit to its last.
//!
//! `framing`: the same input produced twice, in single-object encoding and in the Confluent
//! wire format (writer schema registered in the stack's registry); exactly-once runs over
//! each alternate, and, given `--baseline-bin`, another build's processor (the previous
//! commit's) over the single-object copy.
//!
//! `caps`: exactly-once over the single-object input without caps, with a caps file that caps
//! its one offer (every conversion entry then takes the capping stage: the worst case, one
//! offer's whole traffic through one capping partition), and, given `--baseline-bin`, another
//! build without caps. A capped run is done when the input is committed and the capping
//! stage has written every entry the ledger stage sent it.
//!
//! `click-ids`: exactly-once over an input whose clicks carry a gclid and whose sales name
//! their click, with the click-ID stage off and on (every sale then takes the stage: one more
//! hop and transaction). A run with the stage is done when the input is committed and the
//! stage has passed on every conversion the ledger stage sent it.
//!
//! `soak`: a steady rate of new events (mostly clicks, as affiliate traffic is) for N minutes
//! into one exactly-once processor with short windows, sampling its RSS and state keys: once
//! the windows are full, what expires each sweep matches what arrives, and memory stays flat.
//!
//! `peers`: exactly-once beside the Kafka Streams peer of `benches/peers/kafka-streams`
//! (`peers.rs`).
//!
//! `restore`: a changelog of N dedup keys is written once; the processor's restore reads it
//! back, beside a plain consumer that only reads the same records (the baseline). Memory per
//! key is the allocator's count of live bytes held by the restored state, divided by N.

mod peers;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use processor::changelog;
use processor::ledger::{event_key, Change, Seen};
use processor::restore::{restore, ChangelogSource};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use tests::host::{cpu_seconds, peak_rss_mib, rss_mib};
use tests::processor::{EventProducer, ProcessorTopics, Scenario, PARTITIONS};
use tests::service::ServiceProcess;
use tests::{median, unique_name};

/// Counts live heap bytes, so that the state's footprint is measured, not estimated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The runs of a comparison between variants, rounds rotating their order.
#[derive(clap::Args)]
struct Compared {
    #[arg(long, default_value_t = 200_000)]
    conversions: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Another build's processor binary (e.g. the previous commit's), run without caps over
    /// the single-object input in each round too.
    #[arg(long)]
    baseline_bin: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Exactly-once events/s beside pass-through events/s.
    Throughput {
        /// Conversions in the generated input (about 2 events each, plus repeats).
        #[arg(long, default_value_t = 200_000)]
        conversions: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Exactly-once events/s over Confluent-framed input beside single-object input.
    Framing(Compared),
    /// Exactly-once events/s with every conversion capped, beside no caps and another build.
    Caps(Compared),
    /// Exactly-once events/s with the click-ID stage on, beside off and another build.
    ClickIds(Compared),
    /// RSS and state over a steady rate for a while, with short dedup windows.
    Soak {
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// New events per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// One event in this many is a sale; the others are clicks.
        #[arg(long, default_value_t = 50)]
        sale_every: u64,
        #[arg(long, default_value = "5m")]
        click_window: String,
        #[arg(long, default_value = "10m")]
        window: String,
        #[arg(long, default_value_t = 60)]
        sample_seconds: u64,
    },
    /// Exactly-once against the Kafka Streams peer (benches/peers/kafka-streams), alternating:
    /// events/s, CPU seconds per million events, peak RSS; then each one's restart restore.
    Peers {
        #[arg(long, default_value_t = 1_100_000)]
        conversions: usize,
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// The peer's Java classpath (scripts/bench-peers builds it).
        #[arg(long)]
        peer_classpath: String,
        /// The peer's stream threads (1, Streams' default, was faster and cheaper here than 2).
        #[arg(long, default_value_t = 1)]
        peer_threads: usize,
        /// Unique events (clicks, so one dedup key and one conversion each) in the restore input;
        /// 0 skips the restore comparison.
        #[arg(long, default_value_t = 1_000_000)]
        restore_events: usize,
    },
    /// Restore time and memory per dedup key.
    Restore {
        #[arg(long, default_value_t = 1_000_000)]
        keys: usize,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Throughput {
            conversions,
            rounds,
        } => throughput(conversions, rounds),
        Command::Framing(c) => framing(c.conversions, c.rounds, c.baseline_bin.as_deref()),
        Command::Caps(c) => caps_bench(c.conversions, c.rounds, c.baseline_bin.as_deref()),
        Command::ClickIds(c) => click_ids_bench(c.conversions, c.rounds, c.baseline_bin.as_deref()),
        Command::Soak {
            minutes,
            rate,
            sale_every,
            click_window,
            window,
            sample_seconds,
        } => soak(
            Duration::from_secs(minutes * 60),
            rate,
            sale_every,
            &click_window,
            &window,
            Duration::from_secs(sample_seconds),
        ),
        Command::Peers {
            conversions,
            rounds,
            peer_classpath,
            peer_threads,
            restore_events,
        } => peers::compare(
            &peers::Peer {
                classpath: peer_classpath,
                threads: peer_threads,
            },
            conversions,
            rounds,
            restore_events,
        ),
        Command::Restore { keys } => restore_bench(keys),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("runtime")
}

/// Runs the processor binary `bin` in `mode` over `input` until its group has committed
/// `total` offsets; returns input events per second.
fn run_bin(bin: &str, input: &str, total: i64, mode: &str) -> anyhow::Result<f64> {
    run_with(bin, input, total, mode, Stage::None).map(|r| r.rate)
}

/// The keyed stage a run turns on, besides the ledger stage.
#[derive(Clone, Copy)]
enum Stage<'a> {
    None,
    /// The capping stage, with this caps file.
    Caps(&'a std::path::Path),
    /// The click-ID stage (`--click-ids always`).
    ClickIds,
}

impl Stage<'_> {
    /// Whether the stage has passed on everything the ledger stage sent it, by its metrics.
    fn settled(self, metrics: &str) -> bool {
        let sent_and_done = |sent: f64, done: f64| sent > 0.0 && done >= sent;
        match self {
            Stage::None => true,
            Stage::Caps(_) => sent_and_done(
                tests::metric(metrics, "processor_capping_routed_total", ""),
                tests::metric(metrics, "processor_capping_entries_total", ""),
            ),
            Stage::ClickIds => sent_and_done(
                tests::metric(
                    metrics,
                    "processor_click_ids_routed_total",
                    "kind=\"conversion\"",
                ),
                tests::metric_values(metrics, "processor_click_ids_total", "")
                    .iter()
                    .sum(),
            ),
        }
    }

    /// What the stage did, for the log; `seconds` is the run's length.
    fn report(self, metrics: &str, seconds: f64) {
        match self {
            Stage::None => {}
            Stage::Caps(_) => {
                let entries = tests::metric(metrics, "processor_capping_entries_total", "");
                eprintln!(
                    "[bench] capping stage: {entries} entries decided and written, {:.0} entries/s",
                    entries / seconds
                );
            }
            Stage::ClickIds => {
                let outcome = |o: &str| {
                    tests::metric(
                        metrics,
                        "processor_click_ids_total",
                        &format!("outcome=\"{o}\""),
                    )
                };
                eprintln!(
                    "[bench] click-ID stage: {} conversions took their click's IDs, {} found no click",
                    outcome("inherited"),
                    outcome("click_unknown")
                );
            }
        }
    }
}

/// What one run measured: input events per second from the group's first commit to its
/// last, and the process's CPU seconds per million input events and peak RSS, both over its
/// whole life up to the last commit (start-up included).
#[derive(Clone, Copy)]
struct Run {
    rate: f64,
    cpu_per_million: f64,
    peak_rss_mib: f64,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "{:.0} events/s, {:.1} CPU-s per M events, {:.0} MiB peak RSS",
            self.rate, self.cpu_per_million, self.peak_rss_mib
        )
    }
}

/// The input offsets `consumer`'s group has committed on `input`.
fn committed_offsets(consumer: &BaseConsumer, input: &str) -> i64 {
    let mut tpl = TopicPartitionList::new();
    for part in 0..PARTITIONS {
        tpl.add_partition(input, part);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map(|c| {
            c.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Follows process `pid`, consumer group `group`, over `input` until the group has committed
/// `total` offsets and `settled` says the rest of the work is done.
fn follow(
    what: &str,
    pid: u32,
    group: &str,
    input: &str,
    total: i64,
    mut alive: impl FnMut() -> bool,
    mut settled: impl FnMut(Option<f64>) -> bool,
) -> anyhow::Result<Run> {
    let consumer: BaseConsumer = tests::kafka().config(&[]).set("group.id", group).create()?;
    let mut first: Option<(Instant, i64)> = None;
    let deadline = Instant::now() + Duration::from_secs(1200);
    loop {
        let done = committed_offsets(&consumer, input);
        let now = Instant::now();
        if done > 0 && first.is_none() {
            first = Some((now, done));
        }
        if done >= total {
            let (t0, c0) = first.expect("a first commit");
            let seconds = now.duration_since(t0).as_secs_f64();
            if settled(Some(seconds)) {
                return Ok(Run {
                    rate: (done - c0) as f64 / seconds,
                    cpu_per_million: cpu_seconds(pid) * 1e6 / total as f64,
                    peak_rss_mib: peak_rss_mib(pid),
                });
            }
        }
        anyhow::ensure!(alive(), "{what} exited; see its log");
        anyhow::ensure!(now < deadline, "{what} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `run_bin`, with a keyed `stage` on: then the run ends once that stage has passed on every
/// entry the ledger stage sent it, too.
fn run_with(
    bin: &str,
    input: &str,
    total: i64,
    mode: &str,
    stage: Stage<'_>,
) -> anyhow::Result<Run> {
    let mut topics = runtime().block_on(ProcessorTopics::create(&format!("bench-{mode}")));
    topics.input = input.to_owned();
    run_on(bin, &topics, total, mode, stage)
}

/// `run_with` on the given topics.
fn run_on(
    bin: &str,
    topics: &ProcessorTopics,
    total: i64,
    mode: &str,
    stage: Stage<'_>,
) -> anyhow::Result<Run> {
    let mut args: Vec<String> = vec!["--mode".into(), mode.into()];
    match stage {
        Stage::None => {}
        Stage::Caps(caps) => args.extend(topics.caps_args(caps)),
        Stage::ClickIds => args.push("--click-ids=always".into()),
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let p = std::cell::RefCell::new(ServiceProcess::processor_bin(bin, topics, "bench", &args));
    let pid = p.borrow().pid();
    let run = follow(
        &format!("processor ({mode})"),
        pid,
        &topics.group,
        &topics.input,
        total,
        || p.borrow_mut().is_running(),
        |seconds| {
            let metrics = p.borrow().get("/metrics").unwrap_or_default();
            let settled = matches!(stage, Stage::None) || stage.settled(&metrics);
            if let (true, Some(seconds)) = (settled, seconds) {
                stage.report(&metrics, seconds);
            }
            settled
        },
    )?;
    let p = p.into_inner();
    if mode == "exactly-once" {
        let metrics = p.get("/metrics").unwrap_or_default();
        let value = |name: &str| -> f64 {
            tests::metric_values(&metrics, name, "")
                .first()
                .copied()
                .unwrap_or(f64::NAN)
        };
        let (sum, count) = (
            value("processor_transaction_commit_seconds_sum"),
            value("processor_transaction_commit_seconds_count"),
        );
        eprintln!(
            "[bench] exactly-once: {count} transactions, {:.1} ms mean commit",
            1000.0 * sum / count
        );
    }
    p.terminate();
    Ok(run)
}

/// A new input topic holding the mixed scenario of `conversions` conversions.
fn mixed_input(prefix: &str, conversions: usize) -> (String, Scenario) {
    produced(prefix, Scenario::mixed("bench", conversions))
}

/// A new input topic holding `scenario`'s events.
fn produced(prefix: &str, scenario: Scenario) -> (String, Scenario) {
    let input = runtime().block_on(ProcessorTopics::create(prefix)).input;
    let producer = EventProducer::new(&input);
    for e in &scenario.events {
        producer.send(e);
    }
    producer.flush();
    (input, scenario)
}

fn throughput(conversions: usize, rounds: usize) -> anyhow::Result<()> {
    let (input, scenario) = mixed_input("bench-input", conversions);
    let total = scenario.events.len() as i64;
    let repeats = scenario.duplicates + scenario.conflicts;
    eprintln!(
        "[bench] input: {total} events, {} unique, {repeats} repeats ({:.1}%)",
        scenario.unique_ids.len(),
        100.0 * repeats as f64 / total as f64
    );
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let base = run_with("processor", &input, total, "pass-through", Stage::None)?;
        let eos = run_with("processor", &input, total, "exactly-once", Stage::None)?;
        let ratio = eos.rate / base.rate;
        println!(
            "round {round}: pass-through {}; exactly-once {}; ratio {ratio:.2}",
            base.describe(),
            eos.describe()
        );
        ratios.push((ratio, base, eos));
    }
    ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, base, eos) = ratios[ratios.len() / 2];
    println!(
        "median round: pass-through {}; exactly-once {}; ratio {ratio:.2}",
        base.describe(),
        eos.describe()
    );
    Ok(())
}

fn framing(conversions: usize, rounds: usize, baseline_bin: Option<&str>) -> anyhow::Result<()> {
    let single = runtime()
        .block_on(ProcessorTopics::create("bench-single"))
        .input;
    let confluent = runtime()
        .block_on(ProcessorTopics::create("bench-confluent"))
        .input;
    let registry = tests::registry();
    let subject = format!("{confluent}-value");
    let id = runtime().block_on(async {
        registry.set_compatibility(&subject, "BACKWARD").await?;
        registry
            .register(&subject, schemas::avro::current_schema_json())
            .await
    })?;
    let scenario = Scenario::mixed("bench", conversions);
    let (to_single, to_confluent) = (EventProducer::new(&single), EventProducer::new(&confluent));
    for e in &scenario.events {
        to_single.send(e);
        to_confluent.send_raw(
            &schemas::conversion_key(e),
            &schemas::avro::framing::encode_confluent(id, e)?,
        );
    }
    to_single.flush();
    to_confluent.flush();
    let total = scenario.events.len() as i64;
    eprintln!("[bench] input: {total} events in each framing (schema id {id})");
    let mut variants = vec![
        ("single-object", "processor", single.as_str()),
        ("Confluent", "processor", confluent.as_str()),
    ];
    if let Some(bin) = baseline_bin {
        variants.push(("baseline build, single-object", bin, single.as_str()));
    }
    let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    let rates = rotated(rounds, &names, |i| {
        let (_, bin, input) = variants[i];
        run_bin(bin, input, total, "exactly-once")
    })?;
    let (s, c) = (median(&rates[0]), median(&rates[1]));
    println!("median: single-object {s:.0} events/s, Confluent {c:.0} events/s, Confluent / single-object {:.2}", c / s);
    if rates.len() == 3 {
        let b = median(&rates[2]);
        println!(
            "median: baseline build {b:.0} events/s, this build / baseline {:.2}",
            s / b
        );
    }
    Ok(())
}

/// Runs each variant once a round, each round in another order (the machine's drift within a
/// round, Kafka's background work after the topics a run creates, then falls on each in
/// turn), printing each round; returns every variant's rates.
fn rotated(
    rounds: usize,
    names: &[&str],
    mut run: impl FnMut(usize) -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..rounds {
        let mut line = Vec::new();
        for k in 0..names.len() {
            let i = (round + k) % names.len();
            let rate = run(i)?;
            rates[i].push(rate);
            line.push(format!("{} {rate:.0}", names[i]));
        }
        println!("round {}: {} events/s", round + 1, line.join(", "));
    }
    Ok(rates)
}

fn caps_bench(conversions: usize, rounds: usize, baseline_bin: Option<&str>) -> anyhow::Result<()> {
    let (input, scenario) = mixed_input("bench-caps", conversions);
    let total = scenario.events.len() as i64;
    let caps = std::env::temp_dir().join(format!("{input}.caps.toml"));
    // Never reached: every conversion is decided and counted.
    std::fs::write(
        &caps,
        "[[cap]]\nid = \"bench\"\noffer_id = \"offer-a\"\nperiod = \"total\"\nconversions = 1000000000000\n",
    )?;
    eprintln!("[bench] input: {total} events, every conversion on one offer");
    let stage = Stage::Caps(&caps);
    let names = ("no caps", "every conversion capped");
    stage_on_off(&input, total, rounds, names, stage, baseline_bin)?;
    std::fs::remove_file(&caps).ok();
    Ok(())
}

fn click_ids_bench(
    conversions: usize,
    rounds: usize,
    baseline_bin: Option<&str>,
) -> anyhow::Result<()> {
    let (input, scenario) = produced(
        "bench-clickids",
        Scenario::mixed("bench", conversions).with_click_ids(),
    );
    let total = scenario.events.len() as i64;
    eprintln!(
        "[bench] input: {total} events; every click carries a gclid, every sale names a click"
    );
    let names = ("click IDs off", "click IDs on");
    stage_on_off(&input, total, rounds, names, Stage::ClickIds, baseline_bin)
}

/// Exactly-once over `input` with a keyed `stage` off and on, and, given `baseline_bin`,
/// another build with it off, rotated over `rounds`; prints the medians and their ratios.
fn stage_on_off(
    input: &str,
    total: i64,
    rounds: usize,
    (off, on): (&str, &str),
    stage: Stage<'_>,
    baseline_bin: Option<&str>,
) -> anyhow::Result<()> {
    let mut variants: Vec<(&str, &str, Stage<'_>)> =
        vec![(off, "processor", Stage::None), (on, "processor", stage)];
    if let Some(bin) = baseline_bin {
        variants.push(("baseline build", bin, Stage::None));
    }
    let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    let rates = rotated(rounds, &names, |i| {
        let (_, bin, stage) = variants[i];
        run_with(bin, input, total, "exactly-once", stage).map(|r| r.rate)
    })?;
    let (off_rate, on_rate) = (median(&rates[0]), median(&rates[1]));
    println!(
        "median: {off} {off_rate:.0} events/s, {on} {on_rate:.0} events/s, {on} / {off} {:.2}",
        on_rate / off_rate
    );
    if rates.len() == 3 {
        let b = median(&rates[2]);
        println!(
            "median: baseline build {b:.0} events/s, this build ({off}) / baseline {:.2}",
            off_rate / b
        );
    }
    Ok(())
}

fn soak(
    length: Duration,
    rate: u64,
    sale_every: u64,
    click_window: &str,
    window: &str,
    sample: Duration,
) -> anyhow::Result<()> {
    use schemas::{EventName, TrackingEvent, FIRST_PARTY};
    let topics = runtime().block_on(ProcessorTopics::create("bench-soak"));
    let mut p = ServiceProcess::processor(
        &topics,
        "soak",
        &[
            "--click-dedup-window",
            click_window,
            "--dedup-window-days",
            window,
            "--sweep-interval-secs",
            "15",
        ],
    );
    p.wait_ready(Duration::from_secs(60));
    let producer = EventProducer::new(&topics.input);
    let started = Instant::now();
    let mut next_sample = started;
    let mut sent: u64 = 0;
    println!("| minute | events sent | RSS (MiB) | dedup keys | conversions | lag |");
    println!("|---|---|---|---|---|---|");
    while started.elapsed() < length {
        // Paced by the wall clock, so a slow moment is made up and the rate holds.
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let now = chrono::Utc::now();
            let id = format!("soak-{sent}");
            let e = if sent.is_multiple_of(sale_every) {
                let mut e =
                    TrackingEvent::new(&id, EventName::Sale, now, now, FIRST_PARTY, "/v1/events");
                e.order_id = Some(id.clone());
                e.revenue = Some(rust_decimal::Decimal::new(4_990, 2));
                e.currency = Some("USD".into());
                e
            } else {
                let mut e =
                    TrackingEvent::new(&id, EventName::Click, now, now, FIRST_PARTY, "/v1/events");
                e.click_id = Some(id.clone());
                e
            };
            producer.send(&e);
            sent += 1;
        }
        if Instant::now() >= next_sample {
            next_sample += sample;
            let metrics = p.get("/metrics").unwrap_or_default();
            let keys = |kind: &str| {
                tests::metric(
                    &metrics,
                    "processor_state_keys",
                    &format!("kind=\"{kind}\""),
                )
            };
            println!(
                "| {:.1} | {sent} | {:.1} | {:.0} | {:.0} | {:.0} |",
                started.elapsed().as_secs_f64() / 60.0,
                rss_mib(p.pid()),
                keys("dedup"),
                keys("conversion"),
                tests::metric(&metrics, "processor_consumer_lag", "")
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    producer.flush();
    p.terminate();
    Ok(())
}

fn restore_bench(keys: usize) -> anyhow::Result<()> {
    let topics = runtime().block_on(ProcessorTopics::create("bench-restore"));
    let producer: ThreadedProducer<DefaultProducerContext> = tests::kafka()
        .config(&[])
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .create()?;
    let written = Instant::now();
    for i in 0..keys {
        let change = Change::Seen(
            event_key(&format!("bench-event-{i:08}")),
            Some(Seen {
                fingerprint: i as u64,
                first_received_ms: 1_764_000_000_000 + i as i64,
                count: 1,
                click: false,
            }),
        );
        let key = changelog::key(&change);
        let value = changelog::value(&change).expect("a value");
        let mut record = BaseRecord::<[u8], [u8]>::to(&topics.state)
            .partition((i % PARTITIONS as usize) as i32)
            .key(&key)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(_), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    eprintln!(
        "[bench] wrote {keys} changelog records in {:.1} s",
        written.elapsed().as_secs_f64()
    );

    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    // Baseline: the same records read by a plain consumer that decodes nothing.
    let started = Instant::now();
    let read = plain_read(&topics.state)?;
    let baseline = started.elapsed().as_secs_f64();
    anyhow::ensure!(read == keys, "baseline read {read} of {keys} records");

    let before = LIVE.load(Ordering::Relaxed);
    let started = Instant::now();
    let source = ChangelogSource {
        kafka: &tests::kafka(),
        topic: &topics.state,
        group_id: &unique_name("bench-restore"),
    };
    let (ledgers, records) = restore(&source, &partitions)?;
    let restore_seconds = started.elapsed().as_secs_f64();
    // The restore consumer is gone; what is still allocated is the state itself.
    let held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    let restored: usize = ledgers.values().map(|l| l.seen.len()).sum();
    anyhow::ensure!(restored == keys, "restored {restored} of {keys} keys");
    println!(
        "restore of {keys} dedup keys ({records} records): {restore_seconds:.2} s; plain read of the same records: {baseline:.2} s; ratio {:.2}",
        restore_seconds / baseline
    );
    println!(
        "memory: {:.1} MiB held by the restored state, {:.0} bytes per dedup key",
        held as f64 / (1024.0 * 1024.0),
        held as f64 / keys as f64
    );
    drop(ledgers);
    Ok(())
}

fn plain_read(topic: &str) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = tests::kafka()
        .config(&[])
        .set("group.id", unique_name("bench-plain"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "16777216")
        .set("queued.max.messages.kbytes", "262144")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut pending = PARTITIONS;
    let mut read = 0;
    while pending > 0 {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(_)) => read += 1,
            Some(Err(KafkaError::PartitionEOF(_))) => pending -= 1,
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(read)
}
