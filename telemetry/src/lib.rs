//! The operator surface every service shares: structured JSON logs, the shutdown signal,
//! Prometheus registries, and the `/metrics`, `/healthz` and `/readyz` endpoints.

pub mod clickhouse;
mod http_url;
pub mod kafka;
pub mod registry;
pub mod secret;
pub mod topic;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::core::Collector;
use prometheus::{Encoder, Registry, TextEncoder};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;
use tracing_subscriber::EnvFilter;

/// JSON logs on stdout, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
}

/// Text logs on stderr for a command-line tool, filtered by `RUST_LOG` (default `warn`), so
/// that stdout carries only the command's output.
pub fn init_cli_tracing() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutting down");
}

/// The Kafka client context of consumers that read to the end of their partitions (state
/// restore, DLQ replay): it logs like rdkafka's default one, except that the end of a
/// partition, which those readers ask to be told about, is not reported as an error.
pub struct KafkaLogs;

impl ClientContext for KafkaLogs {
    fn error(&self, error: KafkaError, reason: &str) {
        match error {
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF) => {
                tracing::debug!("librdkafka: {error}: {reason}")
            }
            _ => tracing::error!("librdkafka: {error}: {reason}"),
        }
    }
}

impl ConsumerContext for KafkaLogs {}

/// A registry whose metric names start with `prefix_`, holding `collectors`.
pub fn registry(prefix: &str, collectors: Vec<Box<dyn Collector>>) -> Registry {
    let registry = Registry::new_custom(Some(prefix.into()), None).expect("registry");
    for c in collectors {
        registry.register(c).expect("unique metric names");
    }
    registry
}

/// The text exposition of every metric of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding");
    String::from_utf8(out).expect("UTF-8")
}

/// What the health endpoints report.
#[derive(Clone)]
pub struct Health {
    pub registry: Registry,
    pub ready: Arc<AtomicBool>,
    /// The body of a 503 from `/readyz`: why the service is not ready.
    pub not_ready: &'static str,
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move {
                // What /readyz says, for alerts: Prometheus scrapes metrics, not /readyz.
                format!(
                    "{}# HELP trackledger_ready 1 while /readyz answers 200\n\
                     # TYPE trackledger_ready gauge\ntrackledger_ready {}\n",
                    render(&h.registry),
                    u8::from(h.ready.load(Ordering::SeqCst))
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(h): State<Health>| async move {
                if h.ready.load(Ordering::SeqCst) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, h.not_ready)
                }
            }),
        )
        .with_state(health)
}
