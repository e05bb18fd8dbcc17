//! Destination kinds: how a ledger entry becomes an HTTP request. Adding a kind is one
//! module implementing [`DestinationKind`] and one line in [`kind`].

mod meta_capi;
mod s2s;
mod webhook;

use chrono::Utc;
use schemas::{samples, ConversionStatus, LedgerEntry, LinkStatus, OutboxRecord};

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
    let event = samples::sale();
    LedgerEntry {
        conversion_key: schemas::conversion_key(&event),
        link_status: LinkStatus::None,
        linked_event_id: None,
        adopted_event_ids: vec![],
        signed_revenue: event.revenue.unwrap_or_default(),
        signed_payout: event.payout.unwrap_or_default(),
        conversion_status: ConversionStatus::Sold,
        net_revenue: event.revenue.unwrap_or_default(),
        net_payout: event.payout.unwrap_or_default(),
        flags: vec![],
        recorded_at: Utc::now(),
        input_partition: 0,
        input_offset: 0,
        event,
    }
}

fn idempotency(record: &OutboxRecord) -> (String, String) {
    (
        IDEMPOTENCY_HEADER.to_owned(),
        record.idempotency_key.clone(),
    )
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
