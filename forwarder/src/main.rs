use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use forwarder::config::{Cli, Command};
use forwarder::http::{router, Health};
use forwarder::metrics::Metrics;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
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
    let destinations = forwarder::destinations::load(&cli.run.destinations_file)?;
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(cli.run.metrics_bind).await?;
    let app = router(Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    forwarder::engine::run(
        cli.common,
        cli.run,
        destinations,
        metrics,
        ready,
        shutdown(),
    )
    .await
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}
