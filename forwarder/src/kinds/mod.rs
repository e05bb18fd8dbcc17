//! Destination kinds: how a ledger entry becomes an HTTP request. Adding a kind is one
//! module implementing [`DestinationKind`] and one line in [`kind`].

mod meta_capi;
mod s2s;
mod webhook;

use chrono::Utc;
use schemas::{samples, ConversionStatus, LedgerEntry, OutboxRecord};

use crate::destinations::Destination;

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

pub trait DestinationKind: Send + Sync {
    /// Checks a destination's configuration when the file is loaded.
    fn check(&self, destination: &Destination) -> anyhow::Result<()>;

    /// The request that delivers `record`; `secret` is the destination's access token, if
    /// it has one.
    fn build(
        &self,
        destination: &Destination,
        record: &OutboxRecord,
        secret: Option<&str>,
    ) -> Result<PreparedRequest, BuildError>;
}

/// The kind named in the destinations file.
pub fn kind(name: &str) -> anyhow::Result<&'static dyn DestinationKind> {
    match name {
        "s2s" => Ok(&s2s::S2s),
        "webhook" => Ok(&webhook::Webhook),
        "meta_capi" => Ok(&meta_capi::MetaCapi),
        other => anyhow::bail!("unknown kind {other:?}"),
    }
}

/// A complete entry, to check a destination's templates against when the file is loaded.
pub(crate) fn sample_entry() -> LedgerEntry {
    LedgerEntry::opening(samples::sale(), ConversionStatus::Sold, Utc::now())
        .expect("sample amounts fit decimal(18, 6)")
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
    use schemas::OutboxRecord;

    pub fn record(destination: &str) -> OutboxRecord {
        let entry = super::sample_entry();
        OutboxRecord {
            destination: destination.into(),
            idempotency_key: entry.event.event_id.clone(),
            enqueued_at: Utc::now(),
            entry,
        }
    }

    pub fn destination(kind: &str, url: &str) -> crate::destinations::Destination {
        let text =
            format!("[[destination]]\nname='d'\nkind='{kind}'\nurl='{url}'\nevents=['SALE']\n");
        crate::destinations::parse(&text).unwrap().remove(0)
    }
}
