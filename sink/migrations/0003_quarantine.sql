-- Summaries of refused input (tracking.quarantine.v1): reason, route, time and size only.
-- The raw body (which may hold personal data) stays on the topic for replay, never here.
CREATE TABLE IF NOT EXISTS quarantine
(
    reason LowCardinality(String),
    route LowCardinality(String),
    method LowCardinality(String),
    received_at DateTime64(3, 'UTC'),
    fields Array(LowCardinality(String)),
    body_size UInt32,
    body_truncated Bool,
    kafka_partition Int32,
    kafka_offset Int64 CODEC(Delta, ZSTD(1)),
    PROJECTION loaded_offsets
    (
        SELECT kafka_partition, max(kafka_offset) GROUP BY kafka_partition
    )
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (reason, route, received_at);
