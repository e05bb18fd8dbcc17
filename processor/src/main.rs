use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Parser;
use processor::{Config, Metrics};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    telemetry::init_tracing();
    let config = Config::parse();
    let metrics = Arc::new(Metrics::new());
    let shutdown = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(AtomicBool::new(false));

    // The processing loop is blocking (librdkafka transactions); the endpoints and the
    // signal handler live on a small runtime beside it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(config.metrics_bind))?;
    let app = telemetry::router(telemetry::Health {
        registry: metrics.registry.clone(),
        ready: ready.clone(),
        not_ready: "restoring state, not assigned yet, or waiting for the schema registry",
    });
    runtime.spawn(async move { axum::serve(listener, app).await });
    let flag = shutdown.clone();
    runtime.spawn(async move {
        telemetry::shutdown_signal().await;
        flag.store(true, Ordering::SeqCst);
    });

    let result = processor::run(config, metrics, shutdown, ready);
    if let Err(e) = &result {
        if processor::transaction::fenced(e) {
            // Restartable, like a stall: the exit status asks the supervisor to start it again.
            tracing::error!(
                error = %format!("{e:#}"),
                exit_code = processor::watchdog::STALLED_EXIT_CODE,
                "the transactional producer was fenced; exiting to be restarted"
            );
            std::process::exit(processor::watchdog::STALLED_EXIT_CODE);
        }
    }
    result
}
