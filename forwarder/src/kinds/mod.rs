//! Destination kinds: how a ledger entry becomes an HTTP request. Adding a kind is one
//! module implementing [`DestinationKind`] and one line in [`kind`].

mod ga4;
mod google_ads;
mod meta_capi;
mod s2s;
mod tiktok;
mod webhook;

use schemas::destinations::{Destination, Kind};
use schemas::OutboxRecord;

/// The header every request carries the event_id in.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// A request ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// Why a request cannot be built: permanent, straight to the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// The secrets a request is built with, read from the environment (never the file).
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// The access token (Meta, TikTok), the API secret (GA4), or the OAuth access token
    /// (Google Ads, obtained from its refresh token).
    pub token: Option<&'a str>,
    /// Google Ads' developer token.
    pub developer_token: Option<&'a str>,
}

impl<'a> Credentials<'a> {
    pub fn token(token: Option<&'a str>) -> Self {
        Self {
            token,
            developer_token: None,
        }
    }
}

/// What an answer's body says beyond its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The status decides (`outcome::classify`).
    AsStatus,
    /// Delivered whatever the status says.
    Delivered,
    /// Retried on schedule, for the reason given.
    Transient(String),
    /// Dead-lettered, for the reason given.
    Permanent(String),
}

/// How a destination of one kind is sent to; its configuration was checked when the file
/// was parsed (`schemas::destinations`).
pub trait DestinationKind: Send + Sync {
    /// The request that delivers `record`, with the destination's `credentials`.
    fn build(
        &self,
        destination: &Destination,
        record: &OutboxRecord,
        credentials: &Credentials<'_>,
    ) -> Result<PreparedRequest, BuildError>;

    /// The verdict on an answer, for platforms that answer errors with a 2xx and a code in
    /// the body; by default the status decides.
    fn judge(&self, _status: u16, _body: &str) -> Verdict {
        Verdict::AsStatus
    }
}

/// The sender of a destination kind.
pub fn kind(kind: Kind) -> &'static dyn DestinationKind {
    match kind {
        Kind::S2s => &s2s::S2s,
        Kind::Webhook => &webhook::Webhook,
        Kind::MetaCapi => &meta_capi::MetaCapi,
        Kind::Tiktok => &tiktok::Tiktok,
        Kind::Ga4 => &ga4::Ga4,
        Kind::GoogleAds => &google_ads::GoogleAds,
    }
}

fn idempotency(record: &OutboxRecord) -> (String, String) {
    (
        IDEMPOTENCY_HEADER.to_owned(),
        record.idempotency_key.clone(),
    )
}

/// What an ad-platform request starts from: its secret (`secret_name` when it is missing,
/// e.g. "access token"), and the platform's name for the event (`names`), or why the request
/// cannot be built.
fn platform_request<'a>(
    platform: &str,
    secret_name: &str,
    secret: Option<&'a str>,
    record: &OutboxRecord,
    names: fn(schemas::EventName) -> Option<&'static str>,
) -> Result<(&'a str, &'static str), BuildError> {
    let secret = secret.ok_or_else(|| BuildError(format!("the {secret_name} is not set")))?;
    let name = record.entry.event.event_name;
    let event =
        names(name).ok_or_else(|| BuildError(format!("{platform} takes no {name} events")))?;
    Ok((secret, event))
}

/// An amount as a JSON number, as the ad platforms want `value` (exact decimals print as
/// they are).
fn json_amount(value: impl std::fmt::Display) -> Result<serde_json::Value, BuildError> {
    value
        .to_string()
        .parse::<serde_json::Number>()
        .map(serde_json::Value::Number)
        .map_err(|_| BuildError(format!("amount {value} is not a JSON number")))
}

/// A JSON POST of `body` to the destination, with the record's idempotency header.
fn json_post(d: &Destination, record: &OutboxRecord, body: &serde_json::Value) -> PreparedRequest {
    json_post_to(d.url.clone(), record, Vec::new(), body)
}

/// A JSON POST of `body` to `url`, with the record's idempotency header and `headers`.
fn json_post_to(
    url: String,
    record: &OutboxRecord,
    headers: Vec<(String, String)>,
    body: &serde_json::Value,
) -> PreparedRequest {
    let mut all = vec![
        idempotency(record),
        ("Content-Type".into(), "application/json".into()),
    ];
    all.extend(headers);
    PreparedRequest {
        method: "POST",
        url,
        headers: all,
        body: Some(serde_json::to_vec(body).expect("JSON values serialize")),
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use chrono::Utc;
    use schemas::destinations::{Destination, Destinations};
    use schemas::{samples, ConversionStatus, LedgerEntry, OutboxRecord};

    pub fn record(destination: &str) -> OutboxRecord {
        let entry = LedgerEntry::opening(samples::sale(), ConversionStatus::Sold, Utc::now())
            .expect("sample amounts fit decimal(18, 6)");
        OutboxRecord {
            destination: destination.into(),
            idempotency_key: entry.event.event_id.clone(),
            enqueued_at: Utc::now(),
            entry,
        }
    }

    pub fn destination(kind: &str, url: &str) -> Destination {
        parsed(&format!(
            "[[destination]]\nname='d'\nkind='{kind}'\nurl='{url}'\nevents=['SALE']\n"
        ))
    }

    /// The one destination of a destinations file's `text`.
    pub fn parsed(text: &str) -> Destination {
        Destinations::parse(text)
            .unwrap()
            .into_iter()
            .next()
            .unwrap()
    }
}
