//! The ingest service: shared state, the axum router with its limits, and `serve`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use schemas::{QuarantineKey, SingleObjectCodec};
use tokio::net::TcpListener;

use crate::adapters::buygoods::BuyGoods;
use crate::adapters::clickbank::ClickBank;
use crate::adapters::digistore24::Digistore24;
use crate::adapters::s2s::S2s;
use crate::adapters::PostbackAdapter;
use crate::amounts::AmountCeilings;
use crate::auth_limit::AuthFailureLimiter;
use crate::client_ip::{ClientIp, TrustedProxies};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::producer::{EventProducer, KafkaProducer};
use crate::quarantine::Quarantine;
use crate::routes;
use crate::spool::Spool;
use schemas::offers::Offers;

use crate::quality::ClickQuality;
use schemas::privacy::PiiHasher;

pub use crate::error::{ApiError, AuthFailed, RETRY_AFTER_SECONDS};

pub struct AppState {
    pub config: Config,
    pub producer: Arc<dyn EventProducer>,
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
    pub auth_failures: AuthFailureLimiter,
    pub ceilings: AmountCeilings,
    pub proxies: TrustedProxies,
    pub quality: ClickQuality,
}

impl AppState {
    pub fn new(config: Config, producer: Arc<dyn EventProducer>) -> Result<Self, String> {
        config.check()?;
        let metrics = Arc::new(Metrics::new());
        let offers = Offers::load(&config.offers_file, "INGEST_OFFERS_FILE")?;
        let ceilings = AmountCeilings::new(config.max_amount, &config.max_amount_for)?;
        let quality = ClickQuality::new(&config.datacenter_ranges)?;
        if !config.datacenter_ranges.is_empty() {
            tracing::info!(networks = quality.networks, "data-centre ranges read");
        }
        let quarantine_key = QuarantineKey::new(&config.quarantine_key)?;
        let spool = Arc::new(
            Spool::open(&config.spool_dir, config.spool_max_bytes).map_err(|e| {
                format!(
                    "cannot open the click spool {}: {e}",
                    config.spool_dir.display()
                )
            })?,
        );
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
                producer.clone(),
                metrics.clone(),
                config.quarantine_topic.clone(),
                config.quarantine_body_cap,
                quarantine_key,
            ),
            auth_failures: AuthFailureLimiter::new(config.auth_failures_per_minute),
            proxies: TrustedProxies::new(config.trusted_proxies.clone()),
            ceilings,
            quality,
            hasher: PiiHasher::new(config.pii_key.as_bytes()),
            codec: SingleObjectCodec::new(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight)),
            config,
            producer,
            metrics,
            offers,
            spool,
            adapters,
        })
    }
}

/// The routes that authenticate their callers, and so count failures.
fn authenticates(path: &str) -> bool {
    path == "/v1/events" || path.starts_with("/v1/postbacks/") || path.starts_with("/v1/replay/")
}

/// Attributes the request to a client IP; refuses a client past the failed-authentication
/// rate with 429 before its request reaches any secret, and counts each failure.
async fn guard_authentication(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let client = state.proxies.client_ip(peer, request.headers());
    request.extensions_mut().insert(ClientIp(client));
    let counted = authenticates(request.uri().path());
    if counted {
        if let Some(wait) = state.auth_failures.retry_after(client) {
            state.metrics.auth_limited.inc();
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                "<client>",
                "too many failed authentications from this address",
            )
            .into_response();
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            return response;
        }
    }
    let response = next.run(request).await;
    if counted && response.extensions().get::<AuthFailed>().is_some() {
        state.metrics.auth_failures.inc();
        if state.auth_failures.record_failure(client) {
            tracing::warn!(client = %client, "client over the failed-authentication rate");
        }
    }
    response
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
        .route(
            "/v1/replay/postbacks/{network}",
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
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard_authentication,
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

/// What a connection may take: how many may be open, how long one may stay silent, how
/// long its request headers may take.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub header_timeout: Duration,
}

impl ConnectionLimits {
    pub fn of(config: &Config) -> Self {
        Self {
            max_connections: config.max_connections,
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            header_timeout: Duration::from_millis(config.header_timeout_ms),
        }
    }
}

/// Runs ingest on `listener` until `shutdown` resolves, then drains open connections and
/// flushes the producer.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.kafka.validate()?;
    // The Kafka check runs beside the server: clicks are spooled while Kafka is away, so an
    // unreachable broker must not hold up the start; a refused login or ACL stops ingest.
    let kafka = config.kafka.clone();
    let topics = [config.events_topic.clone(), config.quarantine_topic.clone()];
    let refused: Arc<std::sync::Mutex<Option<anyhow::Error>>> = Default::default();
    let slot = refused.clone();
    let shutdown = async move {
        let refusal = async move {
            let topics = topics.each_ref().map(String::as_str);
            match kafka.check_async(&topics, None).await {
                Err(e) => e,
                Ok(()) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown => {}
            e = refusal => {
                tracing::error!(error = %e, "Kafka refused ingest; stopping");
                *slot.lock().expect("refusal") = Some(e);
            }
        }
    };
    let producer = Arc::new(KafkaProducer::new(&config)?);
    producer.spawn_health_probe(&config.events_topic, Duration::from_secs(2));
    let limits = ConnectionLimits::of(&config);
    let state = Arc::new(AppState::new(config, producer.clone()).map_err(anyhow::Error::msg)?);
    state.spool.spawn_drainer(
        producer.clone(),
        state.metrics.clone(),
        Duration::from_secs(1),
    );
    tracing::info!(addr = %listener.local_addr()?, networks = ?state.adapters.keys().collect::<Vec<_>>(), "ingest listening");
    let metrics = state.metrics.clone();
    serve_connections(router(state), listener, limits, metrics, shutdown).await;
    tracing::info!("flushing the producer");
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10))).await?;
    let refusal = refused.lock().expect("refusal").take();
    refusal.map_or(Ok(()), Err)
}

/// Whether a connection ended because its socket timed out (the idle timeout).
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The accept loop. axum's own `serve` sets no timer, so hyper would never enforce a header
/// read timeout; this one does, and drains connections gracefully on shutdown. Every socket
/// reads and writes under the idle timeout, which also bounds the HTTP/1-or-2 detection that
/// hyper's own timers do not cover (a client that sends nothing, or half a preface), and
/// connections past the cap are closed as they are accepted: the file limit is never the
/// only bound.
async fn serve_connections(
    app: Router,
    listener: TcpListener,
    limits: ConnectionLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
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
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics
                .connections_closed
                .with_label_values(&["max_connections"])
                .inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_read_timeout(Some(limits.idle_timeout));
        stream.set_write_timeout(Some(limits.idle_timeout));
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
            .header_read_timeout(limits.header_timeout);
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(Box::pin(stream)), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let metrics = metrics.clone();
        metrics.open_connections.inc();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                if timed_out(e.as_ref()) {
                    metrics
                        .connections_closed
                        .with_label_values(&["idle"])
                        .inc();
                }
                tracing::debug!(error = %e, "connection ended with an error");
            }
            metrics.open_connections.dec();
            drop(slot);
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
