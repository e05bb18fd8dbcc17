//! The rows of the ClickHouse tables, built from the Kafka records, and their columnar
//! `Native` blocks, which cost ClickHouse about a fifth of the same rows in RowBinary
//! (BENCHMARKS.md). Money travels as its scaled integer (`Decimal(18, 6)`), times as
//! milliseconds (`DateTime64(3, 'UTC')`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Utc};
use clickhouse::native::builder::BlockBuilder;
use clickhouse::native::encode::{Encode, ValueWriter};
use clickhouse::native::{Block, DataTypeNode};
use rust_decimal::Decimal;
use schemas::money::{Money, MoneyError};
use schemas::{LedgerEntry, PostbackAttempt, QuarantineRecord, Receipt};

type EncodeError = Box<dyn std::error::Error + Send + Sync>;

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

#[derive(Debug)]
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
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
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

#[derive(Debug)]
pub struct ReceiptRow {
    pub event_id: String,
    pub conversion_key: String,
    pub kind: &'static str,
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
#[derive(Debug)]
pub struct QuarantineRow {
    pub reason: String,
    pub route: String,
    pub method: String,
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

#[derive(Debug)]
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
    pub attempted_at: DateTime<Utc>,
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

/// A value ClickHouse stores as a 64-bit integer under another type, sent as that type.
macro_rules! int64_as {
    ($name:ident, $clickhouse_type:literal, $doc:literal) => {
        #[doc = $doc]
        struct $name(i64);

        impl Encode for $name {
            fn produces() -> DataTypeNode {
                static TYPE: LazyLock<DataTypeNode> = LazyLock::new(|| {
                    DataTypeNode::new($clickhouse_type).expect("a ClickHouse type")
                });
                TYPE.clone()
            }

            fn encode(&self, writer: &mut ValueWriter<'_>) -> Result<(), EncodeError> {
                Ok(writer.write_fixed(&self.0.to_le_bytes())?)
            }
        }
    };
}

int64_as!(
    Millis,
    "DateTime64(3, 'UTC')",
    "A time: milliseconds since the epoch."
);
int64_as!(Micros, "Decimal(18, 6)", "An amount: its scaled integer.");

fn millis(t: &DateTime<Utc>) -> Millis {
    Millis(t.timestamp_millis())
}

/// The columns of a block being built from `rows`, one column at a time.
struct Columns<'r, R> {
    block: BlockBuilder,
    rows: &'r [R],
    /// The first column that could not be built: the block is refused rather than sent
    /// without it (ClickHouse would fill its default).
    failed: Option<String>,
}

impl<'r, R> Columns<'r, R> {
    fn new(rows: &'r [R]) -> Self {
        Self {
            block: BlockBuilder::new(),
            rows,
            failed: None,
        }
    }

    /// Adds the column `name`, its value for each row.
    fn add<T: Encode>(&mut self, name: &str, value: impl Fn(&'r R) -> T) -> &mut Self {
        if self.failed.is_none() {
            let added = match self.block.upsert_column::<T>(name) {
                Ok(mut column) => column.add_all(self.rows.iter().map(value)).map(|_| ()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = added {
                self.failed = Some(format!("column {name}: {e}"));
            }
        }
        self
    }

    fn build(&mut self) -> anyhow::Result<Block> {
        if let Some(failed) = self.failed.take() {
            anyhow::bail!("building a Native block: {failed}");
        }
        self.block
            .build()
            .map_err(|e| anyhow::anyhow!("building a Native block: {e}"))
    }
}

/// A table's rows as one columnar `Native` block: the columns the table's migrations define,
/// by name.
pub trait NativeRows: Sized {
    fn block(rows: &[Self]) -> anyhow::Result<Block>;
}

impl NativeRows for LedgerRow {
    fn block(rows: &[Self]) -> anyhow::Result<Block> {
        Columns::new(rows)
            .add("event_id", |r| r.event_id.as_str())
            .add("event_name", |r| r.event_name)
            .add("conversion_key", |r| r.conversion_key.as_str())
            .add("link_status", |r| r.link_status)
            .add("linked_event_id", |r| r.linked_event_id.as_deref())
            .add("adopted_event_ids", |r| r.adopted_event_ids.as_slice())
            .add("signed_revenue", |r| Micros(r.signed_revenue))
            .add("signed_payout", |r| Micros(r.signed_payout))
            .add("conversion_status", |r| r.conversion_status)
            .add("net_revenue", |r| Micros(r.net_revenue))
            .add("net_payout", |r| Micros(r.net_payout))
            .add("payout_source", |r| r.payout_source)
            .add("payout_rule", |r| r.payout_rule.as_deref())
            .add("flags", |r| r.flags.as_slice())
            .add("occurred_at", |r| millis(&r.occurred_at))
            .add("received_at", |r| millis(&r.received_at))
            .add("recorded_at", |r| millis(&r.recorded_at))
            .add("settled_at", |r| r.settled_at.as_ref().map(millis))
            .add("occurred_at_original", |r| {
                r.occurred_at_original.as_deref()
            })
            .add("source_timezone", |r| r.source_timezone.as_deref())
            .add("network", |r| r.network.as_str())
            .add("order_id", |r| r.order_id.as_deref())
            .add("transaction_id", |r| r.transaction_id.as_deref())
            .add("parent_order_id", |r| r.parent_order_id.as_deref())
            .add("rebill_sequence", |r| r.rebill_sequence)
            .add("lead_id", |r| r.lead_id.as_deref())
            .add("native_event_type", |r| r.native_event_type.as_deref())
            .add("status_only", |r| r.status_only)
            .add("click_id", |r| r.click_id.as_deref())
            .add("affiliate_id", |r| r.affiliate_id.as_deref())
            .add("campaign_id", |r| r.campaign_id.as_deref())
            .add("offer_id", |r| r.offer_id.as_deref())
            .add("source", |r| r.source.as_deref())
            .add("placement", |r| r.placement.as_deref())
            .add("utm_source", |r| r.utm_source.as_deref())
            .add("utm_medium", |r| r.utm_medium.as_deref())
            .add("utm_campaign", |r| r.utm_campaign.as_deref())
            .add("utm_term", |r| r.utm_term.as_deref())
            .add("utm_content", |r| r.utm_content.as_deref())
            .add("sub1", |r| r.sub1.as_deref())
            .add("sub2", |r| r.sub2.as_deref())
            .add("sub3", |r| r.sub3.as_deref())
            .add("sub4", |r| r.sub4.as_deref())
            .add("sub5", |r| r.sub5.as_deref())
            .add("revenue", |r| r.revenue.map(Micros))
            .add("payout", |r| r.payout.map(Micros))
            .add("currency", |r| r.currency.as_deref())
            .add("payout_status", |r| r.payout_status)
            .add("refund_status", |r| r.refund_status)
            .add("is_test", |r| r.is_test)
            .add("consent_state", |r| r.consent_state)
            .add("data_minimization", |r| r.data_minimization.as_slice())
            .add("ip_hash", |r| r.ip_hash.as_deref())
            .add("email_hash", |r| r.email_hash.as_deref())
            .add("user_agent", |r| r.user_agent.as_deref())
            .add("route", |r| r.route.as_str())
            .add("delivery_attempt", |r| r.delivery_attempt)
            .add("attributes", |r| &r.attributes)
            .add("kafka_partition", |r| r.kafka_partition)
            .add("kafka_offset", |r| r.kafka_offset)
            .build()
    }
}

impl NativeRows for ReceiptRow {
    fn block(rows: &[Self]) -> anyhow::Result<Block> {
        Columns::new(rows)
            .add("event_id", |r| r.event_id.as_str())
            .add("conversion_key", |r| r.conversion_key.as_str())
            .add("kind", |r| r.kind)
            .add("event_name", |r| r.event_name.as_str())
            .add("occurrence", |r| r.occurrence)
            .add("route", |r| r.route.as_str())
            .add("delivery_attempt", |r| r.delivery_attempt)
            .add("received_at", |r| millis(&r.received_at))
            .add("first_received_at", |r| millis(&r.first_received_at))
            .add("content_fingerprint", |r| r.content_fingerprint.as_str())
            .add("first_fingerprint", |r| r.first_fingerprint.as_str())
            .add("is_test", |r| r.is_test)
            .add("recorded_at", |r| millis(&r.recorded_at))
            .add("input_partition", |r| r.input_partition)
            .add("input_offset", |r| r.input_offset)
            .add("kafka_partition", |r| r.kafka_partition)
            .add("kafka_offset", |r| r.kafka_offset)
            .build()
    }
}

impl NativeRows for QuarantineRow {
    fn block(rows: &[Self]) -> anyhow::Result<Block> {
        Columns::new(rows)
            .add("reason", |r| r.reason.as_str())
            .add("route", |r| r.route.as_str())
            .add("method", |r| r.method.as_str())
            .add("received_at", |r| millis(&r.received_at))
            .add("fields", |r| r.fields.as_slice())
            .add("body_size", |r| r.body_size)
            .add("body_truncated", |r| r.body_truncated)
            .add("kafka_partition", |r| r.kafka_partition)
            .add("kafka_offset", |r| r.kafka_offset)
            .build()
    }
}

impl NativeRows for AttemptRow {
    fn block(rows: &[Self]) -> anyhow::Result<Block> {
        Columns::new(rows)
            .add("destination", |r| r.destination.as_str())
            .add("idempotency_key", |r| r.idempotency_key.as_str())
            .add("event_name", |r| r.event_name.as_str())
            .add("offer_id", |r| r.offer_id.as_deref())
            .add("is_test", |r| r.is_test)
            .add("attempt", |r| r.attempt)
            .add("outcome", |r| r.outcome)
            .add("dead_lettered", |r| r.dead_lettered)
            .add("http_status", |r| r.http_status)
            .add("error", |r| r.error.as_deref())
            .add("latency_ms", |r| r.latency_ms)
            .add("response_snippet", |r| r.response_snippet.as_str())
            .add("attempted_at", |r| millis(&r.attempted_at))
            .add("next_attempt_at", |r| {
                r.next_attempt_at.as_ref().map(millis)
            })
            .add("kafka_partition", |r| r.kafka_partition)
            .add("kafka_offset", |r| r.kafka_offset)
            .build()
    }
}

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
        let row = row_at_4_99(entry);
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

    /// Each optional text field of an event set to its column's name: a column filled from
    /// another field (two closures swapped in `NativeRows`) shows another name.
    #[test]
    fn each_column_of_a_ledger_block_holds_its_own_field() {
        let mut e = samples::sale();
        let mut names = vec!["linked_event_id", "payout_rule"];
        for (name, field) in [
            ("occurred_at_original", &mut e.occurred_at_original),
            ("source_timezone", &mut e.source_timezone),
            ("order_id", &mut e.order_id),
            ("transaction_id", &mut e.transaction_id),
            ("parent_order_id", &mut e.parent_order_id),
            ("lead_id", &mut e.lead_id),
            ("native_event_type", &mut e.native_event_type),
            ("click_id", &mut e.click_id),
            ("affiliate_id", &mut e.affiliate_id),
            ("campaign_id", &mut e.campaign_id),
            ("offer_id", &mut e.offer_id),
            ("source", &mut e.source),
            ("placement", &mut e.placement),
            ("utm_source", &mut e.utm_source),
            ("utm_medium", &mut e.utm_medium),
            ("utm_campaign", &mut e.utm_campaign),
            ("utm_term", &mut e.utm_term),
            ("utm_content", &mut e.utm_content),
            ("sub1", &mut e.sub1),
            ("sub2", &mut e.sub2),
            ("sub3", &mut e.sub3),
            ("sub4", &mut e.sub4),
            ("sub5", &mut e.sub5),
            ("ip_hash", &mut e.ip_hash),
            ("email_hash", &mut e.email_hash),
            ("user_agent", &mut e.user_agent),
        ] {
            *field = Some(name.to_owned());
            names.push(name);
        }
        let recorded_at = e.received_at;
        let mut entry = LedgerEntry::opening(e, ConversionStatus::Approved, recorded_at).unwrap();
        entry.linked_event_id = Some("linked_event_id".into());
        entry.payout_rule = Some("payout_rule".into());
        let block = LedgerRow::block(&[row_at_4_99(entry)]).unwrap();
        let text = |name: &str| -> Option<String> {
            let column = block.column_by_name(name).expect(name);
            column
                .iter::<Option<String>>()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
        };
        for name in names {
            assert_eq!(text(name).as_deref(), Some(name), "column {name}");
        }
        let int = |name: &str| -> i64 {
            let column = block.column_by_name(name).expect(name);
            column.iter::<i64>().unwrap().next().unwrap().unwrap()
        };
        assert_eq!((int("kafka_offset"), block.num_rows()), (99, 1));
    }

    fn row_at_4_99(entry: LedgerEntry) -> LedgerRow {
        let at = KafkaPosition {
            partition: 4,
            offset: 99,
        };
        LedgerRow::new(entry, at).unwrap()
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
