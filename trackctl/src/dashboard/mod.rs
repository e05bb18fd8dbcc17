//! `trackctl dashboard`: a small read-only page of the business view, served from ClickHouse,
//! for teams without Grafana: net revenue by day and currency, EPC by source, refund and
//! chargeback rates, postback health and the rollout gate. Server-rendered HTML and SVG; no
//! script. [`data`] reads ClickHouse, [`page`] renders.

pub mod data;
pub mod page;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Args;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::warehouse::Warehouse;

#[derive(Args, Debug, Clone)]
pub struct DashboardArgs {
    /// Where the page is served; loopback by default.
    #[arg(
        long,
        env = "TRACKCTL_DASHBOARD_LISTEN",
        default_value = "127.0.0.1:8088"
    )]
    pub listen: SocketAddr,
    /// A token the page then requires, as `Authorization: Bearer <token>` or `?token=`.
    #[arg(long, env = "TRACKCTL_DASHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Days of revenue, EPC and rates shown (the gate and postbacks use 7).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,
}

struct Shared {
    warehouse: Warehouse,
    /// SHA-256 of the token: compared in constant time, whatever its length.
    token: Option<[u8; 32]>,
    days: u32,
}

#[derive(Deserialize)]
struct Params {
    token: Option<String>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn authorized(shared: &Shared, headers: &HeaderMap, params: &Params) -> bool {
    let Some(expected) = &shared.token else {
        return true;
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or(params.token.as_deref()).unwrap_or_default();
    bool::from(digest(given).ct_eq(expected))
}

async fn index(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    if !authorized(&shared, &headers, &params) {
        // One answer for a missing and a wrong token.
        return (StatusCode::UNAUTHORIZED, "a valid token is required\n").into_response();
    }
    match data::View::read(&shared.warehouse, shared.days).await {
        Ok(view) => Html(page::render(&view)).into_response(),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "dashboard query failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "ClickHouse did not answer; see trackctl's log\n",
            )
                .into_response()
        }
    }
}

pub fn router(warehouse: Warehouse, args: &DashboardArgs) -> Router {
    let shared = Arc::new(Shared {
        warehouse,
        token: args.token.as_deref().map(digest),
        days: args.days,
    });
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(shared)
}

/// Serves the page until Ctrl-C or SIGTERM.
pub async fn serve(warehouse: Warehouse, args: &DashboardArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let token = if args.token.is_some() {
        "token required"
    } else {
        "no token"
    };
    println!("Dashboard on http://{} ({token})", args.listen);
    axum::serve(listener, router(warehouse, args))
        .with_graceful_shutdown(telemetry::shutdown_signal())
        .await?;
    Ok(())
}
