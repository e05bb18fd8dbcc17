//! Destination kinds: how a ledger entry becomes an HTTP request. Adding a kind is one
//! module implementing [`DestinationKind`] and one line in [`kind`].

mod meta_capi;
mod s2s;
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

/// How a destination of one kind is sent to; its configuration was checked when the file
/// was parsed (`schemas::destinations`).
pub trait DestinationKind: Send + Sync {
    /// The request that delivers `record`; `secret` is the destination's access token, if
    /// it has one.
    fn build(
        &self,
        destination: &Destination,
        record: &OutboxRecord,
        secret: Option<&str>,
    ) -> Result<PreparedRequest, BuildError>;
}

/// The sender of a destination kind.
pub fn kind(kind: Kind) -> &'static dyn DestinationKind {
    match kind {
        Kind::S2s => &s2s::S2s,
        Kind::Webhook => &webhook::Webhook,
        Kind::MetaCapi => &meta_capi::MetaCapi,
    }
}

fn idempotency(record: &OutboxRecord) -> (String, String) {
    (
        IDEMPOTENCY_HEADER.to_owned(),
        record.idempotency_key.clone(),
    )
}

/// A JSON POST of `body` to the destination, with the record's idempotency header.
fn json_post(d: &Destination, record: &OutboxRecord, body: &serde_json::Value) -> PreparedRequest {
    PreparedRequest {
        method: "POST",
        url: d.url.clone(),
        headers: vec![
            idempotency(record),
            ("Content-Type".into(), "application/json".into()),
        ],
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
        let text =
            format!("[[destination]]\nname='d'\nkind='{kind}'\nurl='{url}'\nevents=['SALE']\n");
        Destinations::parse(&text)
            .unwrap()
            .into_iter()
            .next()
            .unwrap()
    }
}
