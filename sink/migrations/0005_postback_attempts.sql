-- Every delivery attempt of a postback (postbacks.attempts.v1, written by the forwarder).
CREATE TABLE IF NOT EXISTS postback_attempts
(
    destination LowCardinality(String),
    idempotency_key String,
    event_name LowCardinality(String),
    offer_id LowCardinality(Nullable(String)),
    is_test Bool,
    attempt Int32,
    outcome LowCardinality(String),
    dead_lettered Bool,
    http_status Nullable(Int32),
    error Nullable(String),
    latency_ms Int64,
    response_snippet String CODEC(ZSTD(1)),
    attempted_at DateTime64(3, 'UTC'),
    next_attempt_at Nullable(DateTime64(3, 'UTC')),
    kafka_partition Int32,
    kafka_offset Int64 CODEC(Delta, ZSTD(1)),
    PROJECTION loaded_offsets
    (
        SELECT kafka_partition, max(kafka_offset) GROUP BY kafka_partition
    )
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (destination, attempted_at, idempotency_key);

-- Postback health per destination and UTC day: attempts, successes, the share of
-- postbacks delivered, latency and dead letters. Test events excluded.
CREATE VIEW IF NOT EXISTS postback_health AS
SELECT
    destination,
    toDate(attempted_at) AS day,
    count() AS attempts,
    countIf(outcome = 'DELIVERED') AS successes,
    round(successes / attempts, 4) AS attempt_success_rate,
    uniqExact(idempotency_key) AS postbacks,
    uniqExactIf(idempotency_key, outcome = 'DELIVERED') AS postbacks_delivered,
    round(postbacks_delivered / postbacks, 4) AS delivery_rate,
    quantileExact(0.95)(latency_ms) AS p95_latency_ms,
    countIf(dead_lettered) AS dead_lettered
FROM postback_attempts
WHERE NOT is_test
GROUP BY destination, day;
