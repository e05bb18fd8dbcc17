//! The rows of the ClickHouse tables, in RowBinary through the `clickhouse` crate, built from
//! the Kafka records. Money travels as its scaled integer (`Decimal(18, 6)`), times as
//! milliseconds (`DateTime64(3, 'UTC')`).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use clickhouse::serde::chrono::datetime64::{millis, millis::option as millis_option};
use clickhouse::Row;
use rust_decimal::Decimal;
use schemas::money::{Money, MoneyError};
use schemas::{LedgerEntry, PostbackAttempt, QuarantineRecord, Receipt};
use serde::Serialize;

/// Where a record was read: the sink's resume point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaPosition {
    pub partition: i32,
    pub offset: i64,
}

/// The scaled integer of an event's amount; outside `decimal(18, 6)` the row is refused.
fn scaled(d: Option<Decimal>) -> Result<Option<i64>, MoneyError> {
    d.map(|d| Money::from_decimal(d).map(Money::micros))
        .transpose()
}

/// The month a row's table partition is (`toYYYYMM`): an insert must stay in one.
pub fn month(t: DateTime<Utc>) -> u32 {
    t.year() as u32 * 100 + t.month()
}

#[derive(Debug, Row, Serialize)]
pub struct LedgerRow {
    pub event_id: String,
    pub event_name: &'static str,
    pub conversion_key: String,
    pub link_status: &'static str,
    pub linked_event_id: Option<String>,
    pub adopted_event_ids: Vec<String>,
    pub signed_revenue: i64,
    pub signed_payout: i64,
    pub conversion_status: &'static str,
    pub net_revenue: i64,
    pub net_payout: i64,
    pub payout_source: &'static str,
    pub payout_rule: Option<String>,
    pub flags: Vec<String>,
    #[serde(with = "millis")]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "millis")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "millis")]
    pub recorded_at: DateTime<Utc>,
    #[serde(with = "millis_option")]
    pub settled_at: Option<DateTime<Utc>>,
    pub occurred_at_original: Option<String>,
    pub source_timezone: Option<String>,
    pub network: String,
    pub order_id: Option<String>,
    pub transaction_id: Option<String>,
    pub parent_order_id: Option<String>,
    pub rebill_sequence: Option<i32>,
    pub lead_id: Option<String>,
    pub native_event_type: Option<String>,
    pub status_only: bool,
    pub click_id: Option<String>,
    pub affiliate_id: Option<String>,
    pub campaign_id: Option<String>,
    pub offer_id: Option<String>,
    pub source: Option<String>,
    pub placement: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub sub1: Option<String>,
    pub sub2: Option<String>,
    pub sub3: Option<String>,
    pub sub4: Option<String>,
    pub sub5: Option<String>,
    pub revenue: Option<i64>,
    pub payout: Option<i64>,
    pub currency: Option<String>,
    pub payout_status: Option<&'static str>,
    pub refund_status: Option<&'static str>,
    pub is_test: bool,
    pub consent_state: &'static str,
    pub data_minimization: Vec<String>,
    pub ip_hash: Option<String>,
    pub email_hash: Option<String>,
    pub user_agent: Option<String>,
    pub route: String,
    pub delivery_attempt: Option<i32>,
    pub attributes: BTreeMap<String, String>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl LedgerRow {
    /// The row of a ledger entry; an event amount outside `decimal(18, 6)` is an error (the
    /// entry's own amounts are `Money`, in range by construction).
    pub fn new(entry: LedgerEntry, at: KafkaPosition) -> Result<Self, MoneyError> {
        let e = entry.event;
        Ok(LedgerRow {
            event_id: e.event_id,
            event_name: e.event_name.as_str(),
            conversion_key: entry.conversion_key,
            link_status: entry.link_status.as_str(),
            linked_event_id: entry.linked_event_id,
            adopted_event_ids: entry.adopted_event_ids,
            signed_revenue: entry.signed_revenue.micros(),
            signed_payout: entry.signed_payout.micros(),
            conversion_status: entry.conversion_status.as_str(),
            net_revenue: entry.net_revenue.micros(),
            net_payout: entry.net_payout.micros(),
            payout_source: entry.payout_source.as_str(),
            payout_rule: entry.payout_rule,
            flags: entry.flags,
            occurred_at: e.occurred_at,
            received_at: e.received_at,
            recorded_at: entry.recorded_at,
            settled_at: e.settled_at,
            occurred_at_original: e.occurred_at_original,
            source_timezone: e.source_timezone,
            network: e.network,
            order_id: e.order_id,
            transaction_id: e.transaction_id,
            parent_order_id: e.parent_order_id,
            rebill_sequence: e.rebill_sequence,
            lead_id: e.lead_id,
            native_event_type: e.native_event_type,
            status_only: e.status_only,
            click_id: e.click_id,
            affiliate_id: e.affiliate_id,
            campaign_id: e.campaign_id,
            offer_id: e.offer_id,
            source: e.source,
            placement: e.placement,
            utm_source: e.utm_source,
            utm_medium: e.utm_medium,
            utm_campaign: e.utm_campaign,
            utm_term: e.utm_term,
            utm_content: e.utm_content,
            sub1: e.sub1,
            sub2: e.sub2,
            sub3: e.sub3,
            sub4: e.sub4,
            sub5: e.sub5,
            revenue: scaled(e.revenue)?,
            payout: scaled(e.payout)?,
            currency: e.currency,
            payout_status: e.payout_status.map(|s| s.as_str()),
            refund_status: e.refund_status.map(|s| s.as_str()),
            is_test: e.is_test,
            consent_state: e.consent_state.as_str(),
            data_minimization: e.data_minimization,
            ip_hash: e.ip_hash,
            email_hash: e.email_hash,
            user_agent: e.user_agent,
            route: e.route,
            delivery_attempt: e.delivery_attempt,
            attributes: e.attributes,
            kafka_partition: at.partition,
            kafka_offset: at.offset,
        })
    }
}

#[derive(Debug, Row, Serialize)]
pub struct ReceiptRow {
    pub event_id: String,
    pub conversion_key: String,
    pub kind: &'static str,
    pub event_name: String,
    pub occurrence: i32,
    pub route: String,
    pub delivery_attempt: Option<i32>,
    #[serde(with = "millis")]
    pub received_at: DateTime<Utc>,
    #[serde(with = "millis")]
    pub first_received_at: DateTime<Utc>,
    pub content_fingerprint: String,
    pub first_fingerprint: String,
    pub is_test: bool,
    #[serde(with = "millis")]
    pub recorded_at: DateTime<Utc>,
    pub input_partition: i32,
    pub input_offset: i64,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl ReceiptRow {
    pub fn new(r: Receipt, at: KafkaPosition) -> Self {
        ReceiptRow {
            event_id: r.event_id,
            conversion_key: r.conversion_key,
            kind: r.kind.as_str(),
            event_name: r.event_name,
            occurrence: r.occurrence,
            route: r.route,
            delivery_attempt: r.delivery_attempt,
            received_at: r.received_at,
            first_received_at: r.first_received_at,
            content_fingerprint: r.content_fingerprint,
            first_fingerprint: r.first_fingerprint,
            is_test: r.is_test,
            recorded_at: r.recorded_at,
            input_partition: r.input_partition,
            input_offset: r.input_offset,
            kafka_partition: at.partition,
            kafka_offset: at.offset,
        }
    }
}

/// A refused input, without its body: the body may hold personal data and stays on Kafka.
#[derive(Debug, Row, Serialize)]
pub struct QuarantineRow {
    pub reason: String,
    pub route: String,
    pub method: String,
    #[serde(with = "millis")]
    pub received_at: DateTime<Utc>,
    pub fields: Vec<String>,
    pub body_size: u32,
    pub body_truncated: bool,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl QuarantineRow {
    pub fn new(q: QuarantineRecord, at: KafkaPosition) -> Self {
        QuarantineRow {
            reason: q.reason,
            route: q.route,
            method: q.method,
            received_at: q.received_at,
            fields: q.errors.iter().map(|e| e.field.clone()).collect(),
            body_size: u32::try_from(q.body_size).unwrap_or(u32::MAX),
            body_truncated: q.body_truncated,
            kafka_partition: at.partition,
            kafka_offset: at.offset,
        }
    }

    /// A quarantine record that is not even JSON is still counted, under its own reason.
    pub fn unreadable(received_at: DateTime<Utc>, size: usize, at: KafkaPosition) -> Self {
        QuarantineRow {
            reason: "unreadable_quarantine_record".into(),
            route: String::new(),
            method: String::new(),
            received_at,
            fields: Vec::new(),
            body_size: u32::try_from(size).unwrap_or(u32::MAX),
            body_truncated: false,
            kafka_partition: at.partition,
            kafka_offset: at.offset,
        }
    }
}

#[derive(Debug, Row, Serialize)]
pub struct AttemptRow {
    pub destination: String,
    pub idempotency_key: String,
    pub event_name: String,
    pub offer_id: Option<String>,
    pub is_test: bool,
    pub attempt: i32,
    pub outcome: &'static str,
    pub dead_lettered: bool,
    pub http_status: Option<i32>,
    pub error: Option<String>,
    pub latency_ms: i64,
    pub response_snippet: String,
    #[serde(with = "millis")]
    pub attempted_at: DateTime<Utc>,
    #[serde(with = "millis_option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub kafka_partition: i32,
    pub kafka_offset: i64,
}

impl AttemptRow {
    pub fn new(a: PostbackAttempt, at: KafkaPosition) -> Self {
        AttemptRow {
            destination: a.destination,
            idempotency_key: a.idempotency_key,
            event_name: a.event_name,
            offer_id: a.offer_id,
            is_test: a.is_test,
            attempt: a.attempt,
            outcome: a.outcome.as_str(),
            dead_lettered: a.dead_lettered,
            http_status: a.http_status,
            error: a.error,
            latency_ms: a.latency_ms,
            response_snippet: a.response_snippet,
            attempted_at: a.attempted_at,
            next_attempt_at: a.next_attempt_at,
            kafka_partition: at.partition,
            kafka_offset: at.offset,
        }
    }
}

/// What the loader needs of every row: the table partition it falls in (an insert stays in
/// one month, so that it is one atomic block) and where it was read.
pub trait TableRow {
    fn month(&self) -> u32;
    fn position(&self) -> KafkaPosition;
}

macro_rules! table_row {
    ($row:ty, $time:ident) => {
        impl TableRow for $row {
            fn month(&self) -> u32 {
                month(self.$time)
            }
            fn position(&self) -> KafkaPosition {
                KafkaPosition {
                    partition: self.kafka_partition,
                    offset: self.kafka_offset,
                }
            }
        }
    };
}

table_row!(LedgerRow, recorded_at);
table_row!(ReceiptRow, recorded_at);
table_row!(QuarantineRow, received_at);
table_row!(AttemptRow, attempted_at);

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{samples, ConversionStatus, LinkStatus};

    #[test]
    fn money_is_scaled_and_enums_are_their_symbols() {
        let entry = LedgerEntry {
            conversion_key: "first_party/order/ord-1001".into(),
            link_status: LinkStatus::Linked,
            linked_event_id: Some("s".into()),
            adopted_event_ids: vec![],
            signed_revenue: "-19.99".parse().unwrap(),
            signed_payout: "-8".parse().unwrap(),
            conversion_status: ConversionStatus::PartiallyRefunded,
            net_revenue: "30".parse().unwrap(),
            net_payout: "12".parse().unwrap(),
            flags: vec![],
            recorded_at: samples::refund().received_at,
            input_partition: 1,
            input_offset: 2,
            event: samples::refund(),
            payout_source: schemas::PayoutSource::Rule,
            payout_rule: Some("clawback of offer k: cpa 8 USD".into()),
        };
        let row = LedgerRow::new(
            entry,
            KafkaPosition {
                partition: 4,
                offset: 99,
            },
        )
        .unwrap();
        assert_eq!(row.signed_revenue, -19_990_000);
        assert_eq!(row.net_payout, 12_000_000);
        assert_eq!(row.link_status, "LINKED");
        assert_eq!(row.conversion_status, "PARTIALLY_REFUNDED");
        assert_eq!(row.payout_source, "RULE");
        assert_eq!(
            row.payout_rule.as_deref(),
            Some("clawback of offer k: cpa 8 USD")
        );
        assert_eq!((row.kafka_partition, row.kafka_offset), (4, 99));
        assert_eq!(TableRow::month(&row), 202611);
    }

    #[test]
    fn quarantine_rows_keep_no_body() {
        let q = QuarantineRecord {
            reason: "validation".into(),
            errors: vec![schemas::FieldError::new("email", "not an e-mail")],
            route: "/v1/events".into(),
            method: "POST".into(),
            received_at: samples::sale().received_at,
            content_type: None,
            query: Some("email=someone%40example.com".into()),
            body_base64: "eyJlbWFpbCI6ICJzb21lb25lQGV4YW1wbGUuY29tIn0=".into(),
            body_size: 31,
            body_truncated: false,
            ..Default::default()
        };
        let row = QuarantineRow::new(
            q,
            KafkaPosition {
                partition: 0,
                offset: 1,
            },
        );
        assert_eq!(row.fields, ["email"]);
        assert_eq!(row.body_size, 31);
        let debug = format!("{row:?}");
        assert!(!debug.contains("example.com") && !debug.contains("eyJ"));
    }
}
