use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use sink::{Config, Metrics};

// Rows are decoded on the load loop's thread and freed on the insert task's: glibc's malloc
// and free were a fifth of the sink's CPU in a profile (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    let config = Config::parse();
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    if !config.migrate_only {
        let listener = tokio::net::TcpListener::bind(config.metrics_bind).await?;
        let app = telemetry::router(telemetry::Health {
            registry: metrics.registry.clone(),
            ready: ready.clone(),
            not_ready: "ClickHouse is not taking inserts, or the sink is starting",
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    sink::loader::run(config, metrics, ready, telemetry::shutdown_signal()).await
}
