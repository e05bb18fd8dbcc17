//! `trackctl replay`: sends refused input (quarantine) back through ingest, or dead-lettered
//! postbacks (DLQ) back to the forwarder's outbox.

use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use clap::Args;
use schemas::QuarantineRecord;

use crate::warehouse::IngestEndpoint;
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
}

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

pub async fn quarantine(bootstrap: &str, args: &QuarantineReplay) -> anyhow::Result<Replayed> {
    let (b, topic) = (bootstrap.to_owned(), args.quarantine_topic.clone());
    let records = tokio::task::spawn_blocking(move || {
        read_to_end(&b, &topic, "trackctl", Duration::from_secs(30))
    })
    .await??;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = args.ingest.ingest_url.trim_end_matches('/');
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
        if args.dry_run {
            println!(
                "would replay\t{}\t{} {}\t{}",
                r.received_at, r.method, r.route, r.reason
            );
            done.accepted += 1;
            continue;
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(&r.body_base64)
            .context("a quarantine record's body is not base64")?;
        let url = match &r.query {
            Some(q) if !q.is_empty() => format!("{base}{}?{q}", r.route),
            _ => format!("{base}{}", r.route),
        };
        let mut request = if r.method.eq_ignore_ascii_case("GET") {
            http.get(&url)
        } else {
            http.post(&url).body(body)
        };
        if let Some(ct) = &r.content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if r.route == "/v1/events" {
            if let Some(key) = args.ingest.api_key.first() {
                request = request.bearer_auth(key);
            }
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
