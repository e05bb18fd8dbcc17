//! A stand-in for the team's tracker and webhook endpoint (`config/destinations.toml` points
//! `tracker` and `webhook` at 127.0.0.1:18090), so that the demo's postbacks have somewhere
//! to go. It answers 200, except that every tenth request gets a 503, which shows the
//! forwarder's retries in `postback_attempts`. `/healthz` always answers 200, and does not
//! count: a health probe must neither see the deliberate 503s nor shift them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::{any, get};
use axum::Router;

pub fn router() -> Router {
    let seen = Arc::new(AtomicU64::new(0));
    let answer = move || {
        let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            if n.is_multiple_of(10) {
                (StatusCode::SERVICE_UNAVAILABLE, "try again")
            } else {
                (StatusCode::OK, "ok")
            }
        }
    };
    Router::new()
        .route("/postback", any(answer.clone()))
        .route("/webhook", any(answer))
        .route("/healthz", get(|| async { "ok" }))
}

pub async fn serve(bind: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
    tracing::info!(%bind, "demo postback receiver listening");
    axum::serve(listener, router())
        .with_graceful_shutdown(telemetry::shutdown_signal())
        .await?;
    Ok(())
}
