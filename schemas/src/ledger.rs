//! The canonical ledger, its receipt history, the postback outbox and the delivery attempts:
//! the Rust side of `avro/ledger_entry.v*.avsc`, `avro/receipt.v*.avsc`,
//! `avro/postback_outbox.v*.avsc` and `avro/postback_attempt.v*.avsc`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::{TrackingEvent, UnknownSymbol};
use crate::money::{Money, MoneyError};

contract_enum!(
    /// How an entry relates to the original (SALE or LEAD) of its conversion.
    LinkStatus {
        None => "NONE",
        Linked => "LINKED",
        AwaitingOriginal => "AWAITING_ORIGINAL",
    }
);

contract_enum!(
    /// A conversion's status after an entry.
    ConversionStatus {
        Clicked => "CLICKED",
        Lead => "LEAD",
        Qualified => "QUALIFIED",
        Approved => "APPROVED",
        Rejected => "REJECTED",
        Sold => "SOLD",
        PartiallyRefunded => "PARTIALLY_REFUNDED",
        Refunded => "REFUNDED",
        ChargedBack => "CHARGED_BACK",
        Canceled => "CANCELED",
        AwaitingOriginal => "AWAITING_ORIGINAL",
    }
);

contract_enum!(
    /// Where an entry's payout came from.
    PayoutSource {
        None => "NONE",
        Event => "EVENT",
        Rule => "RULE",
    }
);

contract_enum!(
    /// Why a receipt was written.
    ReceiptKind {
        Duplicate => "DUPLICATE",
        Conflict => "CONFLICT",
        Orphaned => "ORPHANED",
    }
);

contract_enum!(
    /// How a postback delivery attempt ended.
    AttemptOutcome {
        Delivered => "DELIVERED",
        TransientFailure => "TRANSIENT_FAILURE",
        PermanentFailure => "PERMANENT_FAILURE",
    }
);

/// Anomalies an entry is flagged with. Flags are strings on the wire so that a new one is
/// not a schema change.
pub mod flags {
    /// A reversal took more than the conversion had left.
    pub const OVER_REVERSAL: &str = "OVER_REVERSAL";
    /// A lead status arrived that ranks below the current one; the status was kept.
    pub const STATUS_REGRESSION: &str = "STATUS_REGRESSION";
    /// A final lead status replaced the other final status (APPROVED <-> REJECTED).
    pub const STATUS_OVERTURNED: &str = "STATUS_OVERTURNED";
    /// A reversal without an amount arrived before its sale, so its amount is not known yet.
    pub const AMOUNT_UNKNOWN: &str = "AMOUNT_UNKNOWN";
    /// A second LEAD (under another event_id) for a lead that already has one.
    pub const SECOND_ORIGINAL: &str = "SECOND_ORIGINAL";
    /// The offer's payout rule has a fixed amount in another currency than the event's, so
    /// it paid nothing: amounts of two currencies are never mixed on one entry.
    pub const PAYOUT_CURRENCY_MISMATCH: &str = "PAYOUT_CURRENCY_MISMATCH";
    /// The conversion came past one of its caps (`schemas::caps`): recorded, never forwarded.
    /// Its later entries carry the flag too.
    pub const OVER_CAP: &str = "OVER_CAP";
    /// A revenue cap of the conversion's offer is in another currency, so it did not count
    /// there (its other caps still applied).
    pub const CAP_CURRENCY_MISMATCH: &str = "CAP_CURRENCY_MISMATCH";
    /// The conversion took ad-platform IDs (`platform_ids`) it lacked from its click: the
    /// processor's click-ID stage.
    pub const CLICK_IDS_INHERITED: &str = "CLICK_IDS_INHERITED";
    /// The conversion's consent was UNKNOWN (a network does not know it) and it took its
    /// click's, under which the inherited IDs were captured.
    pub const CONSENT_FROM_CLICK: &str = "CONSENT_FROM_CLICK";
}

/// One entry of the canonical ledger: the first occurrence of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub conversion_key: String,
    pub link_status: LinkStatus,
    pub linked_event_id: Option<String>,
    pub adopted_event_ids: Vec<String>,
    pub signed_revenue: Money,
    pub signed_payout: Money,
    pub conversion_status: ConversionStatus,
    pub net_revenue: Money,
    pub net_payout: Money,
    pub flags: Vec<String>,
    pub recorded_at: DateTime<Utc>,
    pub input_partition: i32,
    pub input_offset: i64,
    pub event: TrackingEvent,
    /// Where `signed_payout` came from (ledger_entry v2).
    pub payout_source: PayoutSource,
    /// The rule that set it, when `payout_source` is `Rule`.
    pub payout_rule: Option<String>,
}

impl LedgerEntry {
    /// The entry of an event that opens its own conversion: unlinked, its amounts both the
    /// entry's and the conversion's net, read at input position 0/0. Samples, benchmarks and
    /// tests build entries with it; the processor's rules fill in the rest.
    pub fn opening(
        event: TrackingEvent,
        status: ConversionStatus,
        recorded_at: DateTime<Utc>,
    ) -> Result<Self, MoneyError> {
        let revenue = Money::of(event.revenue)?;
        let payout = Money::of(event.payout)?;
        Ok(LedgerEntry {
            conversion_key: crate::conversion_key(&event),
            link_status: LinkStatus::None,
            linked_event_id: None,
            adopted_event_ids: Vec::new(),
            signed_revenue: revenue,
            signed_payout: payout,
            conversion_status: status,
            net_revenue: revenue,
            net_payout: payout,
            flags: Vec::new(),
            recorded_at,
            input_partition: 0,
            input_offset: 0,
            payout_source: if event.payout.is_some() {
                PayoutSource::Event
            } else {
                PayoutSource::None
            },
            payout_rule: None,
            event,
        })
    }
}

/// A repeated, conflicting or orphaned occurrence of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    pub event_id: String,
    pub conversion_key: String,
    pub kind: ReceiptKind,
    pub event_name: String,
    pub occurrence: i32,
    pub route: String,
    pub delivery_attempt: Option<i32>,
    pub received_at: DateTime<Utc>,
    pub first_received_at: DateTime<Utc>,
    pub content_fingerprint: String,
    pub first_fingerprint: String,
    pub is_test: bool,
    pub recorded_at: DateTime<Utc>,
    pub input_partition: i32,
    pub input_offset: i64,
}

/// A postback to forward: one per ledger entry and matching destination.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRecord {
    pub destination: String,
    /// The entry's `event_id`, sent with every attempt.
    pub idempotency_key: String,
    pub enqueued_at: DateTime<Utc>,
    pub entry: LedgerEntry,
}

/// One delivery attempt of a postback, as the forwarder records it.
#[derive(Debug, Clone, PartialEq)]
pub struct PostbackAttempt {
    pub destination: String,
    pub idempotency_key: String,
    pub event_name: String,
    pub offer_id: Option<String>,
    pub is_test: bool,
    pub attempt: i32,
    pub outcome: AttemptOutcome,
    pub dead_lettered: bool,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub response_snippet: String,
    pub attempted_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}
