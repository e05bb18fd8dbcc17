-- Receipt history (ledger.receipts.v1): repeated, conflicting and orphaned occurrences.
CREATE TABLE IF NOT EXISTS receipts
(
    event_id String,
    conversion_key String,
    kind LowCardinality(String),
    event_name LowCardinality(String),
    occurrence Int32,
    route LowCardinality(String),
    delivery_attempt Nullable(Int32),
    received_at DateTime64(3, 'UTC'),
    first_received_at DateTime64(3, 'UTC'),
    content_fingerprint String,
    first_fingerprint String,
    is_test Bool,
    recorded_at DateTime64(3, 'UTC'),
    input_partition Int32,
    input_offset Int64,
    kafka_partition Int32,
    kafka_offset Int64 CODEC(Delta, ZSTD(1)),
    PROJECTION loaded_offsets
    (
        SELECT kafka_partition, max(kafka_offset) GROUP BY kafka_partition
    )
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (kind, event_id, recorded_at);
