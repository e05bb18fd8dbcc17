//! `trackctl replay`: sends refused input (quarantine) back through ingest, or dead-lettered
//! postbacks (DLQ) back to the forwarder's outbox.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use schemas::{QuarantineKey, QuarantineRecord};

use crate::warehouse::IngestEndpoint;
use telemetry::kafka::KafkaConnection;
use telemetry::topic::read_to_end;

#[derive(Args, Debug, Clone)]
pub struct QuarantineReplay {
    #[command(flatten)]
    pub ingest: IngestEndpoint,
    #[arg(long, env = "INGEST_QUARANTINE_TOPIC", default_value = schemas::topics::QUARANTINE)]
    pub quarantine_topic: String,
    /// Only records refused for this reason (e.g. bad_signature, validation).
    #[arg(long)]
    pub reason: Option<String>,
    /// Only records refused on this route (e.g. /v1/postbacks/digistore24).
    #[arg(long)]
    pub route: Option<String>,
    /// Only records received at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Only records received before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// List what would be replayed without replaying it.
    #[arg(long)]
    pub dry_run: bool,
    /// The key ingest seals quarantined requests with (ingest's INGEST_QUARANTINE_KEY).
    #[arg(long, env = "INGEST_QUARANTINE_KEY", hide_env_values = true)]
    pub quarantine_key: Option<String>,
}

/// Reasons whose request never authenticated (ingest refuses these before the token is
/// checked, or because of it): a token network's credential is not kept, so replaying one
/// would vouch for a request nobody authenticated.
const UNAUTHENTICATED: [&str; 3] = ["missing_token", "bad_token", "malformed"];

impl QuarantineReplay {
    fn matches(&self, r: &QuarantineRecord) -> bool {
        self.reason.as_ref().is_none_or(|x| *x == r.reason)
            && self.route.as_ref().is_none_or(|x| *x == r.route)
            && self.since.is_none_or(|t| r.received_at >= t)
            && self.until.is_none_or(|t| r.received_at < t)
    }
}

/// What a quarantine replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Accepted by ingest this time.
    pub accepted: usize,
    /// Refused again (and so quarantined again by ingest, with the new reason).
    pub refused_again: usize,
    /// Not replayable: kept truncated, or refused by the processor rather than ingest.
    pub skipped: usize,
}

pub async fn quarantine(
    kafka: &KafkaConnection,
    args: &QuarantineReplay,
) -> anyhow::Result<Replayed> {
    kafka.check_async(&[&args.quarantine_topic], None).await?;
    let (b, topic) = (kafka.clone(), args.quarantine_topic.clone());
    let records = tokio::task::spawn_blocking(move || {
        read_to_end(&b, &topic, "trackctl", Duration::from_secs(30))
    })
    .await??;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = args.ingest.ingest_url.trim_end_matches('/');
    let key = args
        .quarantine_key
        .as_deref()
        .map(QuarantineKey::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("INGEST_QUARANTINE_KEY: {e}"))?;
    let mut done = Replayed::default();
    for record in records {
        let Ok(r) = serde_json::from_slice::<QuarantineRecord>(&record.payload) else {
            done.skipped += 1;
            continue;
        };
        if !args.matches(&r) {
            continue;
        }
        if r.body_truncated || !r.route.starts_with('/') {
            println!("skip\t{}\t{}\t{}", r.received_at, r.route, r.reason);
            done.skipped += 1;
            continue;
        }
        if !r.redacted.is_empty() && UNAUTHENTICATED.contains(&r.reason.as_str()) {
            println!(
                "skip (never authenticated; its credential was not kept)\t{}\t{}\t{}",
                r.received_at, r.route, r.reason
            );
            done.skipped += 1;
            continue;
        }
        if args.dry_run {
            println!(
                "would replay\t{}\t{} {}\t{}",
                r.received_at, r.method, r.route, r.reason
            );
            done.accepted += 1;
            continue;
        }
        let request = match (&key, &r.sealed) {
            (Some(key), _) => key.open(&r),
            (None, Some(_)) => anyhow::bail!(
                "quarantined requests are sealed: set INGEST_QUARANTINE_KEY (or --quarantine-key) to ingest's key"
            ),
            (None, None) => r.plain(),
        }
        .context("opening a quarantined request")?;
        // A request whose credential was redacted goes through the operator's replay route,
        // authenticated by the API key instead.
        let route = if r.redacted.is_empty() {
            r.route.clone()
        } else {
            r.route
                .replacen("/v1/postbacks/", "/v1/replay/postbacks/", 1)
        };
        let url = match &request.query {
            Some(q) if !q.is_empty() => format!("{base}{route}?{q}"),
            _ => format!("{base}{route}"),
        };
        let mut request = if r.method.eq_ignore_ascii_case("GET") {
            http.get(&url)
        } else {
            http.post(&url).body(request.body)
        };
        if let Some(ct) = &r.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if r.route == "/v1/events" || !r.redacted.is_empty() {
            request = request.bearer_auth(args.ingest.api_key()?);
        }
        if let Some(source) = &r.s2s_source {
            request = request.header(ingest::adapters::REPLAY_SOURCE_HEADER, source);
        }
        let status = request
            .send()
            .await
            .with_context(|| format!("replaying to {url}"))?
            .status();
        let outcome = if status.is_success() || status.is_redirection() {
            done.accepted += 1;
            "accepted"
        } else {
            done.refused_again += 1;
            "refused again"
        };
        println!(
            "{outcome}\t{}\t{} {}\t{}\t{status}",
            r.received_at, r.method, r.route, r.reason
        );
    }
    Ok(done)
}
