//! `engine`: the sink beside ClickHouse's own Kafka table engine (docs/BENCHMARKS.md,
//! "Peers"), the load a team would set up instead: a `Kafka` table and a materialized view
//! into a copy of the ledger table.
//!
//! The sink loads N ledger entries once; the rows it stored are exported as JSONEachRow and
//! produced to two topics, one row per message (the ledger topic's shape) and `batch` rows
//! per message (the engine's best case). Then the sink and the engine on each topic alternate,
//! each into a fresh database: rows/s, and CPU seconds per million rows with ClickHouse's CPU
//! counted on both sides (the engine's whole cost is ClickHouse's).
//!
//! `--kill`: then each loads again and ClickHouse is killed (SIGKILL) a third of the way in and
//! started again: duplicates and losses, counted by `event_id`, once the count stops moving.
//!
//! The local engine (clickhouse-local from the chdb wheel) refuses to start while a `Kafka`
//! table is defined, so the Kafka table lives only within a run: it is dropped after each run,
//! and after the kill its definition is removed from disk before ClickHouse starts again, then
//! created anew on the same consumer group, which resumes from the offsets it committed (what a
//! server restart does with the table in place).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use tests::host::{cpu_seconds, peak_rss_mib};
use tests::processor::{EventProducer, ProcessorTopics};
use tests::service::ServiceProcess;
use tests::sink::{clickhouse, count, database, plain_columns};
use tests::{clickhouse_url, median, stack, stack_env};

use super::{curl, produce_entries, wait_count};

/// What one load cost.
#[derive(Clone, Copy)]
struct Load {
    rate: f64,
    /// Loader and ClickHouse together.
    cpu_per_million: f64,
    /// ClickHouse's part of `cpu_per_million`.
    clickhouse_per_million: f64,
    /// The sink's peak RSS (ClickHouse's is the server's, shared by every load).
    sink_peak_rss_mib: Option<f64>,
}

impl Load {
    fn describe(&self) -> String {
        let rss = self
            .sink_peak_rss_mib
            .map_or(String::new(), |mib| format!(", sink peak RSS {mib:.0} MiB"));
        format!(
            "{:.0} rows/s, {:.1} CPU-s per M rows ({:.1} of them ClickHouse's){rss}",
            self.rate, self.cpu_per_million, self.clickhouse_per_million
        )
    }
}

fn clickhouse_run_dir() -> PathBuf {
    PathBuf::from(stack_env("STACK_RUN_DIR")).join("clickhouse")
}

/// The stack's ClickHouse process.
fn clickhouse_pid() -> anyhow::Result<u32> {
    let file = clickhouse_run_dir().join("clickhouse.pid");
    Ok(std::fs::read_to_string(&file)?.trim().parse()?)
}

fn sql(query: &str) -> anyhow::Result<()> {
    curl(&[&clickhouse_url(), "--data-binary", query])
}

/// Waits (up to a minute) until ClickHouse runs no merge in `db`: the parts a load left are
/// part of its cost, and small inserts leave more of them.
async fn merged(db: &str) {
    let ch = clickhouse(db);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let merging = ch
            .query("SELECT count() FROM system.merges WHERE database = ?")
            .bind(db)
            .fetch_one::<u64>()
            .await
            .unwrap_or(1);
        if merging == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sink loading `topics`' ledger into a fresh database, from its readiness to the last row.
async fn sink_load(
    topics: &ProcessorTopics,
    rows: u64,
    sink_args: &[&str],
) -> anyhow::Result<(Load, String)> {
    let ch = clickhouse_pid()?;
    let db = database("bench_engine_sink");
    let mut sink = ServiceProcess::sink(topics, &db, sink_args);
    sink.wait_ready(Duration::from_secs(60));
    // From readiness on: the migrations (the database's 20-odd tables and views) are not
    // the load's cost, as the engine's side leaves out creating its tables.
    let (sink_before, ch_before) = (cpu_seconds(sink.pid()), cpu_seconds(ch));
    let ready = Instant::now();
    wait_count(&db, "ledger", rows).await?;
    let seconds = ready.elapsed().as_secs_f64();
    merged(&db).await;
    let (sink_cpu, ch_cpu) = (
        cpu_seconds(sink.pid()) - sink_before,
        cpu_seconds(ch) - ch_before,
    );
    let sink_peak_rss_mib = Some(peak_rss_mib(sink.pid()));
    sink.terminate();
    let per_million = 1e6 / rows as f64;
    Ok((
        Load {
            rate: rows as f64 / seconds,
            cpu_per_million: (sink_cpu + ch_cpu) * per_million,
            clickhouse_per_million: ch_cpu * per_million,
            sink_peak_rss_mib,
        },
        db,
    ))
}

/// A database with a copy of `source`'s ledger table, loaded from `topic` by a Kafka table
/// and a materialized view; the Kafka table is dropped when this is.
struct EngineLoad {
    db: String,
    columns: Vec<(String, String)>,
    topic: String,
    group: String,
}

impl EngineLoad {
    fn create(source: &str, columns: &[(String, String)], topic: &str) -> anyhow::Result<Self> {
        let db = database("bench_engine");
        sql(&format!("CREATE DATABASE {db}"))?;
        sql(&format!("CREATE TABLE {db}.ledger AS {source}.ledger"))?;
        Ok(Self {
            group: db.clone(),
            db,
            columns: columns.to_vec(),
            topic: topic.to_owned(),
        })
    }

    /// Creates the Kafka table and the view: the load starts.
    fn start(&self) -> anyhow::Result<()> {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(name, t)| format!("`{name}` {t}"))
            .collect();
        let create = format!(
            "CREATE TABLE {}.queue ({}) ENGINE = Kafka SETTINGS kafka_broker_list = '{}', \
             kafka_topic_list = '{}', kafka_group_name = '{}', kafka_format = 'JSONEachRow'",
            self.db,
            columns.join(", "),
            tests::kafka_bootstrap(),
            self.topic,
            self.group
        );
        // chdb answers this with "Shutdown was called", yet the table works.
        if let Err(e) = sql(&create) {
            anyhow::ensure!(
                e.to_string().contains("Shutdown was called"),
                "creating the Kafka table: {e}"
            );
        }
        sql(&format!(
            "CREATE MATERIALIZED VIEW {0}.load TO {0}.ledger AS SELECT * FROM {0}.queue",
            self.db
        ))
    }

    fn stop(&self) {
        for table in ["load", "queue"] {
            let _ = sql(&format!("DROP TABLE IF EXISTS {}.{table} SYNC", self.db));
        }
    }

    /// After a SIGKILL: ClickHouse must not see the Kafka table or its view when it starts.
    fn forget(&self) -> anyhow::Result<()> {
        for table in ["load", "queue"] {
            let file = clickhouse_run_dir()
                .join("data/metadata")
                .join(&self.db)
                .join(format!("{table}.sql"));
            std::fs::remove_file(&file)
                .map_err(|e| anyhow::anyhow!("removing {}: {e}", file.display()))?;
        }
        Ok(())
    }
}

impl Drop for EngineLoad {
    fn drop(&mut self) {
        self.stop();
        let _ = sql(&format!("DROP DATABASE IF EXISTS {} SYNC", self.db));
    }
}

async fn engine_load(
    source: &str,
    columns: &[(String, String)],
    topic: &str,
    rows: u64,
) -> anyhow::Result<Load> {
    let ch = clickhouse_pid()?;
    let load = EngineLoad::create(source, columns, topic)?;
    let ch_before = cpu_seconds(ch);
    let started = Instant::now();
    load.start()?;
    if let Err(e) = wait_count(&load.db, "ledger", rows).await {
        let consumers = clickhouse(&load.db)
            .query("SELECT exceptions.text FROM system.kafka_consumers WHERE database = ?")
            .bind(&load.db)
            .fetch_all::<Vec<String>>()
            .await
            .unwrap_or_default();
        anyhow::bail!("{e}; the Kafka table's consumer reported {consumers:?}");
    }
    let seconds = started.elapsed().as_secs_f64();
    merged(&load.db).await;
    let ch_cpu = cpu_seconds(ch) - ch_before;
    let per_million = 1e6 / rows as f64;
    Ok(Load {
        rate: rows as f64 / seconds,
        cpu_per_million: ch_cpu * per_million,
        clickhouse_per_million: ch_cpu * per_million,
        sink_peak_rss_mib: None,
    })
}

/// Produces `lines` (ledger rows as JSONEachRow) to a new topic of the ledger's partitions,
/// `batch` rows per message.
async fn json_topic(lines: &[&str], batch: usize) -> anyhow::Result<String> {
    let topic = ProcessorTopics::create(&format!("bench-engine-json{batch}"))
        .await
        .ledger;
    let producer = EventProducer::new(&topic);
    for (i, chunk) in lines.chunks(batch).enumerate() {
        producer.send_raw(&i.to_string(), chunk.join("\n").as_bytes());
    }
    producer.flush();
    Ok(topic)
}

/// `sink_args` replace the tests' sink flags (`tests::sink`), e.g. `--batch-ms=500`.
pub async fn compare(
    rows: usize,
    rounds: usize,
    batch: usize,
    kill: bool,
    sink_args: &[&str],
) -> anyhow::Result<()> {
    let topics = ProcessorTopics::create("bench-engine").await;
    produce_entries(&topics, rows, "sale")?;
    let n = rows as u64;
    let (first, source) = sink_load(&topics, n, sink_args).await?;
    eprintln!("[bench] first sink load: {}", first.describe());
    // The Kafka table declares the ledger's columns without `LowCardinality`, which halves
    // the engine's speed when kept and converted in the view (measured for the issue).
    let columns = plain_columns(&source, "ledger").await?;
    let file = std::env::temp_dir().join(format!("{source}.json"));
    let names: Vec<String> = columns.iter().map(|(n, _)| format!("`{n}`")).collect();
    curl(&[
        "-o",
        &file.display().to_string(),
        &clickhouse_url(),
        "--data-binary",
        &format!(
            "SELECT {} FROM {source}.ledger FORMAT JSONEachRow",
            names.join(", ")
        ),
    ])?;
    let json = std::fs::read_to_string(&file)?;
    std::fs::remove_file(&file).ok();
    let lines: Vec<&str> = json.lines().collect();
    anyhow::ensure!(
        lines.len() == rows,
        "exported {} of {rows} rows",
        lines.len()
    );
    eprintln!(
        "[bench] {} columns, {:.0} bytes per JSON row",
        columns.len(),
        json.len() as f64 / rows as f64
    );
    let single = json_topic(&lines, 1).await?;
    let batched = json_topic(&lines, batch).await?;
    drop(lines);
    drop(json);

    let names = [
        "sink".to_owned(),
        "engine, 1 row per message".to_owned(),
        format!("engine, {batch} rows per message"),
    ];
    let mut loads: Vec<Vec<Load>> = vec![Vec::new(); 3];
    for round in 0..rounds {
        for k in 0..3 {
            let i = (round + k) % 3;
            let load = match i {
                0 => {
                    let (load, db) = sink_load(&topics, n, sink_args).await?;
                    sql(&format!("DROP DATABASE IF EXISTS {db} SYNC"))?;
                    load
                }
                1 => engine_load(&source, &columns, &single, n).await?,
                _ => engine_load(&source, &columns, &batched, n).await?,
            };
            println!("round {}: {}: {}", round + 1, names[i], load.describe());
            loads[i].push(load);
        }
    }
    let rate = |i: usize| median(&loads[i].iter().map(|l| l.rate).collect::<Vec<_>>());
    let cpu = |i: usize| {
        median(
            &loads[i]
                .iter()
                .map(|l| l.cpu_per_million)
                .collect::<Vec<_>>(),
        )
    };
    for (i, name) in names.iter().enumerate() {
        println!(
            "median: {name}: {:.0} rows/s, {:.1} CPU-s per M rows",
            rate(i),
            cpu(i)
        );
    }
    for (i, name) in names.iter().enumerate().skip(1) {
        println!(
            "median ratios, sink / {name}: rows/s {:.2}, CPU-s per M rows {:.2}",
            rate(0) / rate(i),
            cpu(0) / cpu(i)
        );
    }
    if kill {
        // The moment the first insert is visible (the engine may not have committed its
        // offsets yet), and mid-load.
        for (moment, at) in [
            ("as the first rows appear", 1),
            ("a third into the load", n / 3),
        ] {
            let outcome = killed_sink(&topics, n, at, sink_args).await?;
            println!("kill -9 of ClickHouse {moment}: sink: {outcome}");
            let outcome = killed_engine(&source, &columns, &batched, n, at).await?;
            println!("kill -9 of ClickHouse {moment}: engine, {batch} rows per message: {outcome}");
        }
    }
    sql(&format!("DROP DATABASE IF EXISTS {source} SYNC"))?;
    Ok(())
}

/// Waits until `db.ledger` holds `at` rows, then kills ClickHouse.
async fn kill_at(db: &str, at: u64) -> anyhow::Result<()> {
    let ch = clickhouse(db);
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&ch, "ledger").await.unwrap_or(0) < at {
        anyhow::ensure!(Instant::now() < deadline, "{db} never reached {at} rows");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = clickhouse_pid()?;
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -9 {pid}");
    // Until the process is gone, its ports are taken.
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Once `db.ledger`'s count has not moved for 20 s: rows, duplicates and losses by event_id.
async fn settled(db: &str, rows: u64) -> anyhow::Result<String> {
    let ch = clickhouse(db);
    let (mut last, mut since) = (u64::MAX, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let n = count(&ch, "ledger").await.unwrap_or(u64::MAX);
        if n != last {
            (last, since) = (n, Instant::now());
        } else if since.elapsed() > Duration::from_secs(20) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{db} never settled");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (total, unique): (u64, u64) = ch
        .query("SELECT count(), uniqExact(event_id) FROM ledger")
        .fetch_one()
        .await?;
    Ok(format!(
        "{total} rows for {rows} entries: {} duplicates, {} lost",
        total - unique,
        rows - unique.min(rows)
    ))
}

async fn killed_sink(
    topics: &ProcessorTopics,
    rows: u64,
    at: u64,
    sink_args: &[&str],
) -> anyhow::Result<String> {
    let db = database("bench_kill_sink");
    let mut sink = ServiceProcess::sink(topics, &db, sink_args);
    sink.wait_ready(Duration::from_secs(60));
    kill_at(&db, at).await?;
    stack("down", "clickhouse");
    stack("up", "clickhouse");
    let outcome = settled(&db, rows).await?;
    sink.terminate();
    let _ = sql(&format!("DROP DATABASE IF EXISTS {db} SYNC"));
    Ok(outcome)
}

async fn killed_engine(
    source: &str,
    columns: &[(String, String)],
    topic: &str,
    rows: u64,
    at: u64,
) -> anyhow::Result<String> {
    let load = EngineLoad::create(source, columns, topic)?;
    load.start()?;
    kill_at(&load.db, at).await?;
    load.forget()?;
    stack("down", "clickhouse");
    stack("up", "clickhouse");
    load.start()?;
    settled(&load.db, rows).await
}
