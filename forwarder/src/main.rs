use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use forwarder::config::{Cli, Command};
use forwarder::metrics::Metrics;

// Every attempt allocates the decoded outbox record, the request and the attempt record;
// glibc's malloc and free were a sixth of the forwarder's CPU in a profile (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    let cli = Cli::parse_connected();
    if let Some(Command::Replay(filter)) = &cli.command {
        let n = forwarder::dlq::replay(&cli.common, filter).await?;
        let verb = if filter.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        eprintln!("{verb} {n} dead-lettered postbacks");
        return Ok(());
    }
    let destinations = schemas::destinations::Destinations::load(&cli.run.destinations_file)?;
    let c = &cli.common;
    let topics = [
        &c.outbox_topic,
        &c.retry_topic,
        &c.attempts_topic,
        &c.dlq_topic,
    ];
    c.kafka
        .check_async(&topics.map(String::as_str), Some(&cli.run.group_id))
        .await?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(cli.run.metrics_bind).await?;
    let app = telemetry::router(telemetry::Health {
        registry: metrics.registry.clone(),
        ready: ready.clone(),
        not_ready: "starting",
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    forwarder::engine::run(
        cli.common,
        cli.run,
        destinations,
        metrics,
        ready,
        telemetry::shutdown_signal(),
    )
    .await
}
