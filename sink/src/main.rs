use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use sink::http::{router, Health};
use sink::{Config, Metrics};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    if !config.migrate_only {
        let listener = tokio::net::TcpListener::bind(config.metrics_bind).await?;
        let app = router(Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    sink::loader::run(config, metrics, ready, shutdown_signal()).await
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
