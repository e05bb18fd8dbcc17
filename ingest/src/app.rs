//! The ingest service: shared state, the axum router with its limits, and `serve`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use schemas::{FieldError, SingleObjectCodec};
use serde_json::json;
use tokio::net::TcpListener;

use crate::adapters::buygoods::BuyGoods;
use crate::adapters::clickbank::ClickBank;
use crate::adapters::digistore24::Digistore24;
use crate::adapters::s2s::S2s;
use crate::adapters::PostbackAdapter;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::offers::Offers;
use crate::privacy::PiiHasher;
use crate::quarantine::Quarantine;
use crate::routes;
use crate::sink::{EventSink, KafkaSink, SinkError};
use crate::spool::Spool;

/// How long clients are told to wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u64 = 5;

pub struct AppState {
    pub config: Config,
    pub sink: Arc<dyn EventSink>,
    pub codec: SingleObjectCodec,
    pub metrics: Arc<Metrics>,
    pub quarantine: Quarantine,
    pub hasher: PiiHasher,
    pub offers: Offers,
    pub spool: Arc<Spool>,
    /// Configured network adapters by network name (the last path segment of their route).
    pub adapters: HashMap<&'static str, Arc<dyn PostbackAdapter>>,
    /// One permit per request in flight, shared by every route.
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(config: Config, sink: Arc<dyn EventSink>) -> Result<Self, String> {
        config.check()?;
        let metrics = Arc::new(Metrics::new());
        let offers = Offers::load(&config.offers_file)?;
        let spool = Arc::new(Spool::open(&config.spool_dir).map_err(|e| {
            format!(
                "cannot open the click spool {}: {e}",
                config.spool_dir.display()
            )
        })?);
        let mut adapters: HashMap<&'static str, Arc<dyn PostbackAdapter>> = HashMap::new();
        if let Some(secret) = &config.clickbank_secret_key {
            adapters.insert(
                crate::adapters::clickbank::NETWORK,
                Arc::new(ClickBank::new(secret)),
            );
        }
        if let Some(pass) = &config.digistore24_passphrase {
            adapters.insert(
                crate::adapters::digistore24::NETWORK,
                Arc::new(Digistore24::new(pass)),
            );
        }
        if let Some(token) = &config.buygoods_token {
            adapters.insert(
                crate::adapters::buygoods::NETWORK,
                Arc::new(BuyGoods::new(token)),
            );
        }
        if !config.s2s_tokens.is_empty() {
            adapters.insert(
                crate::adapters::s2s::NETWORK,
                Arc::new(S2s::new(&config.s2s_tokens)),
            );
        }
        Ok(Self {
            quarantine: Quarantine::new(
                sink.clone(),
                metrics.clone(),
                config.quarantine_topic.clone(),
                config.quarantine_body_cap,
            ),
            hasher: PiiHasher::new(config.pii_key.as_bytes()),
            codec: SingleObjectCodec::new(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
            config,
            sink,
            metrics,
            offers,
            spool,
            adapters,
        })
    }
}

/// An error answer: status, machine-readable reason, field detail.
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        reason: &'static str,
        field: &str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            reason,
            errors: vec![FieldError::new(field, detail)],
        }
    }

    /// Kafka did not durably accept: the sender must retry.
    pub fn unavailable(e: &SinkError) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "<kafka>",
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.reason, "errors": self.errors})),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

async fn record_metrics(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |p| p.as_str().to_owned());
    let start = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .ack_seconds
        .with_label_values(&[&route])
        .observe(start.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}

/// A request's slot: its permit, and the gauge it holds up until dropped (also when the
/// client goes away mid-request and the handler is cancelled).
struct InFlight {
    gauge: prometheus::IntGauge,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Past `max_in_flight` requests, answer 503 at once rather than queue and grow memory.
async fn limit_in_flight(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "<request>",
            "too many requests in flight",
        )
        .into_response();
    };
    state.metrics.in_flight.inc();
    let _slot = InFlight {
        gauge: state.metrics.in_flight.clone(),
        _permit: permit,
    };
    next.run(request).await
}

pub fn router(state: Arc<AppState>) -> Router {
    // Router::layer wraps each route on its own, so the limits live in the shared state.
    Router::new()
        .route("/v1/events", post(routes::events::post_events))
        .route("/c/{offer_id}", get(routes::click::click))
        .route(
            "/v1/postbacks/{network}",
            get(routes::postbacks::postback).post(routes::postbacks::postback),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "<path>",
                "no such route",
            )
        })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limit_in_flight,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.config.request_timeout(),
        ))
        // Outermost, so that timeouts (408) and overload (503) are counted too.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .with_state(state)
}

/// Runs ingest on `listener` until `shutdown` resolves, then drains open connections and
/// flushes the producer.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sink = Arc::new(KafkaSink::new(&config)?);
    sink.spawn_health_probe(&config.events_topic, Duration::from_secs(2));
    let header_timeout = Duration::from_millis(config.header_timeout_ms);
    let state = Arc::new(AppState::new(config, sink.clone()).map_err(anyhow::Error::msg)?);
    state
        .spool
        .spawn_drainer(sink.clone(), state.metrics.clone(), Duration::from_secs(1));
    tracing::info!(addr = %listener.local_addr()?, networks = ?state.adapters.keys().collect::<Vec<_>>(), "ingest listening");
    serve_connections(router(state), listener, header_timeout, shutdown).await;
    tracing::info!("flushing the producer");
    tokio::task::spawn_blocking(move || sink.flush(Duration::from_secs(10))).await?;
    Ok(())
}

/// The accept loop. axum's own `serve` sets no timer, so hyper would never enforce a header
/// read timeout; this one does, and drains connections gracefully on shutdown.
async fn serve_connections(
    app: Router,
    listener: TcpListener,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), request.map(axum::body::Body::new))
            },
        );
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 10 s; closing");
    }
}
