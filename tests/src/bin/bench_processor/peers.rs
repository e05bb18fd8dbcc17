//! `peers`: the exactly-once processor beside its Kafka Streams peer
//! (benches/peers/kafka-streams, docs/BENCHMARKS.md "Peers"), over one mixed input, alternating
//! which goes first each round; then each one's restore of the state a unique input left.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use chrono::Utc;
use schemas::{EventName, TrackingEvent};
use tests::host::{peak_rss_mib, rss_mib};
use tests::processor::{EventProducer, ProcessorTopics};
use tests::service::ServiceProcess;

use super::{follow, mixed_input, run_on, runtime, Run, Stage};
use tests::median;

/// How to run the peer.
pub struct Peer {
    pub classpath: String,
    pub threads: usize,
}

/// A running peer: the JVM, its log and its local state (RocksDB) directory.
struct PeerProcess {
    child: Child,
    log: PathBuf,
    state_dir: PathBuf,
}

impl Peer {
    fn start(
        &self,
        topics: &ProcessorTopics,
        state_dir: &Path,
        tag: &str,
    ) -> anyhow::Result<PeerProcess> {
        let log = std::env::temp_dir().join(format!("{}-{tag}.peer.log", topics.group));
        let out = std::fs::File::create(&log)?;
        let schemas = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/avro");
        let flag = |name: &str, value: &dyn std::fmt::Display| format!("--{name}={value}");
        let child = Command::new("java")
            .arg("-cp")
            .arg(&self.classpath)
            .arg("dev.trackledger.peers.StreamsPeer")
            .args([
                flag("bootstrap", &tests::kafka_bootstrap()),
                flag("input", &topics.input),
                flag("ledger", &topics.ledger),
                flag("receipts", &topics.receipts),
                flag("outbox", &topics.outbox),
                flag("quarantine", &topics.quarantine),
                flag("app-id", &topics.group),
                flag("state-dir", &state_dir.display()),
                flag("schemas", &schemas.display()),
                flag("threads", &self.threads),
            ])
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        Ok(PeerProcess {
            child,
            log,
            state_dir: state_dir.to_owned(),
        })
    }
}

impl PeerProcess {
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (the peer closes its streams, committing), then its state directory goes.
    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state_dir);
        let _ = std::fs::remove_file(&self.log);
    }
}

fn state_dir(topics: &ProcessorTopics, tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{tag}.streams-state", topics.group))
}

/// Runs the peer over `topics.input` until its application (group) has committed `total`.
fn run_peer(peer: &Peer, topics: &ProcessorTopics, total: i64) -> anyhow::Result<Run> {
    let p = RefCell::new(peer.start(topics, &state_dir(topics, "run"), "run")?);
    let pid = p.borrow().child.id();
    let run = follow(
        "Kafka Streams peer",
        pid,
        &topics.group,
        &topics.input,
        total,
        || p.borrow_mut().alive(),
        |_| true,
    );
    let p = p.into_inner();
    if run.is_err() {
        eprintln!("[bench] the peer's log:\n{}", p.log());
    }
    p.terminate();
    run
}

/// Committed records in `topic`.
fn count(topic: &str) -> usize {
    let n = Cell::new(0);
    tests::scan_topic(topic, None, usize::MAX, Duration::from_secs(600), |_| {
        n.set(n.get() + 1);
        false
    });
    n.get()
}

pub fn compare(
    peer: &Peer,
    conversions: usize,
    rounds: usize,
    restore_events: usize,
) -> anyhow::Result<()> {
    let (input, scenario) = mixed_input("bench-peers", conversions);
    let total = scenario.events.len() as i64;
    eprintln!(
        "[bench] input: {total} events, {} unique (ledger entries expected)",
        scenario.unique_ids.len()
    );
    let names = ["Trackledger processor", "Kafka Streams peer"];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(), Vec::new()];
    for round in 0..rounds {
        for k in 0..2 {
            let i = (round + k) % 2;
            let mut topics =
                runtime().block_on(ProcessorTopics::create(&format!("bench-peers-{i}")));
            topics.input = input.clone();
            let run = if i == 0 {
                run_on("processor", &topics, total, "exactly-once", Stage::None)?
            } else {
                run_peer(peer, &topics, total)?
            };
            println!("round {}: {}: {}", round + 1, names[i], run.describe());
            if round == 0 {
                // The same work: one ledger entry per unique event, a receipt per repeat.
                println!(
                    "round 1: {}: {} ledger entries, {} receipts, {} outbox records",
                    names[i],
                    count(&topics.ledger),
                    count(&topics.receipts),
                    count(&topics.outbox)
                );
            }
            runs[i].push(run);
        }
    }
    let field = |i: usize, f: fn(&Run) -> f64| median(&runs[i].iter().map(f).collect::<Vec<_>>());
    let (rate, cpu, rss) = (
        |i| field(i, |r| r.rate),
        |i| field(i, |r| r.cpu_per_million),
        |i| field(i, |r| r.peak_rss_mib),
    );
    for (i, name) in names.iter().enumerate() {
        println!(
            "median: {name}: {:.0} events/s, {:.1} CPU-s per M events, {:.0} MiB peak RSS",
            rate(i),
            cpu(i),
            rss(i)
        );
    }
    println!(
        "median ratios, processor / peer: events/s {:.2}, CPU-s per M events {:.2}, peak RSS {:.2}",
        rate(0) / rate(1),
        cpu(0) / cpu(1),
        rss(0) / rss(1)
    );
    if restore_events > 0 {
        restores(peer, restore_events)?;
    }
    Ok(())
}

/// Each side processes `n` unique clicks, stops, and starts again: the restart restores the
/// state the clicks left (the processor always reads its changelog back; the peer is given an
/// empty state directory, as on a new host).
fn restores(peer: &Peer, n: usize) -> anyhow::Result<()> {
    let input = runtime()
        .block_on(ProcessorTopics::create("bench-peers-restore"))
        .input;
    let producer = EventProducer::new(&input);
    let now = Utc::now();
    for i in 0..n {
        let mut click = TrackingEvent::new(
            format!("restore-click-{i:08}"),
            EventName::Click,
            now,
            now,
            schemas::FIRST_PARTY,
            "/v1/events",
        );
        click.click_id = Some(format!("rc{i:08}"));
        click.offer_id = Some("offer-a".into());
        producer.send(&click);
    }
    producer.flush();
    let total = n as i64;

    let mut topics = runtime().block_on(ProcessorTopics::create("bench-restore-ours"));
    topics.input = input.clone();
    run_on("processor", &topics, total, "exactly-once", Stage::None)?;
    let started = Instant::now();
    let mut p =
        ServiceProcess::processor_bin("processor", &topics, "bench", &["--mode", "exactly-once"]);
    p.wait_ready(Duration::from_secs(600));
    let ready = started.elapsed().as_secs_f64();
    let metrics = p.get("/metrics").unwrap_or_default();
    let records = tests::metric(&metrics, "processor_restored_records_total", "");
    let seconds = tests::metric_values(&metrics, "processor_restore_seconds_sum", "")
        .first()
        .copied()
        .unwrap_or(f64::NAN);
    println!(
        "restore: Trackledger processor: {records} records in {seconds:.2} s, ready {ready:.2} s after start, {:.0} MiB RSS, {:.0} MiB peak",
        rss_mib(p.pid()),
        peak_rss_mib(p.pid())
    );
    p.terminate();

    let mut topics = runtime().block_on(ProcessorTopics::create("bench-restore-peer"));
    topics.input = input;
    run_peer(peer, &topics, total)?;
    let mut p = peer.start(&topics, &state_dir(&topics, "restore"), "restore")?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let line = loop {
        if let Some(line) = p.log().lines().find(|l| l.starts_with("peer: running")) {
            break line.to_owned();
        }
        anyhow::ensure!(p.alive(), "the peer exited; its log:\n{}", p.log());
        anyhow::ensure!(Instant::now() < deadline, "the peer did not restore");
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid = p.child.id();
    println!(
        "restore: Kafka Streams peer: {}, {:.0} MiB RSS, {:.0} MiB peak",
        line.trim_start_matches("peer: running after restoring "),
        rss_mib(pid),
        peak_rss_mib(pid)
    );
    p.terminate();
    Ok(())
}
