-- The canonical ledger: one row per ledger entry (ledger.v1), loaded exactly once.
-- kafka_partition / kafka_offset are the entry's position on ledger.v1: the sink resumes past
-- the highest one stored per partition, and each insert is one atomic block (one month of
-- recorded_at, fewer rows than max_insert_block_size), so a row is never stored twice.
CREATE TABLE IF NOT EXISTS ledger
(
    event_id String,
    event_name LowCardinality(String),
    conversion_key String,
    link_status LowCardinality(String),
    linked_event_id Nullable(String),
    adopted_event_ids Array(String),
    signed_revenue Decimal(18, 6),
    signed_payout Decimal(18, 6),
    conversion_status LowCardinality(String),
    net_revenue Decimal(18, 6),
    net_payout Decimal(18, 6),
    flags Array(LowCardinality(String)),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC'),
    settled_at Nullable(DateTime64(3, 'UTC')),
    occurred_at_original Nullable(String),
    source_timezone LowCardinality(Nullable(String)),
    network LowCardinality(String),
    order_id Nullable(String),
    transaction_id Nullable(String),
    parent_order_id Nullable(String),
    rebill_sequence Nullable(Int32),
    lead_id Nullable(String),
    native_event_type LowCardinality(Nullable(String)),
    status_only Bool,
    click_id Nullable(String),
    affiliate_id LowCardinality(Nullable(String)),
    campaign_id LowCardinality(Nullable(String)),
    offer_id LowCardinality(Nullable(String)),
    source LowCardinality(Nullable(String)),
    placement LowCardinality(Nullable(String)),
    utm_source LowCardinality(Nullable(String)),
    utm_medium LowCardinality(Nullable(String)),
    utm_campaign LowCardinality(Nullable(String)),
    utm_term Nullable(String),
    utm_content Nullable(String),
    sub1 Nullable(String),
    sub2 Nullable(String),
    sub3 Nullable(String),
    sub4 Nullable(String),
    sub5 Nullable(String),
    revenue Nullable(Decimal(18, 6)),
    payout Nullable(Decimal(18, 6)),
    currency LowCardinality(Nullable(String)),
    payout_status LowCardinality(Nullable(String)),
    refund_status LowCardinality(Nullable(String)),
    is_test Bool,
    consent_state LowCardinality(String),
    data_minimization Array(LowCardinality(String)),
    ip_hash Nullable(String) CODEC(ZSTD(1)),
    email_hash Nullable(String) CODEC(ZSTD(1)),
    user_agent Nullable(String) CODEC(ZSTD(1)),
    route LowCardinality(String),
    delivery_attempt Nullable(Int32),
    attributes Map(String, String) CODEC(ZSTD(1)),
    kafka_partition Int32,
    kafka_offset Int64 CODEC(Delta, ZSTD(1)),
    PROJECTION loaded_offsets
    (
        SELECT kafka_partition, max(kafka_offset) GROUP BY kafka_partition
    )
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (toDate(occurred_at), event_name, offer_id, event_id)
SETTINGS allow_nullable_key = 1;
