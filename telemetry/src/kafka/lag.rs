//! Consumer lag for `/metrics`, from the statistics librdkafka emits every
//! `statistics.interval.ms`: per partition a consumer fetches, its end (the last stable
//! offset under `read_committed`, else the high watermark) minus the position the
//! application reached. [`LagContext`] keeps it in a gauge by topic and partition. No broker
//! round trip, nothing on the consuming path.
//!
//! It counts records on Kafka that the consumer has not fetched yet: the backlog a service
//! has to drain. A service that has read ahead into its own buffers (the sink during a
//! ClickHouse outage) shows 0 here and says so in its own metrics (`sink_clickhouse_up`).
//! Not librdkafka's own `consumer_lag`, which counts from the committed offset: on a topic
//! written in transactions (the ledger, the outbox) that never reaches 0, since the commit
//! markers and aborted records after the last record read are offsets too, which no
//! commit of a record's offset passes.

use prometheus::IntGaugeVec;
use rdkafka::consumer::ConsumerContext;
use rdkafka::{ClientContext, Statistics};

/// How often librdkafka reports the lag: the gauge is at most this old.
pub const STATISTICS_INTERVAL: (&str, &str) = ("statistics.interval.ms", "5000");

/// The gauge `consumer_lag{topic, partition}`, for a service's own registry.
pub fn gauge() -> IntGaugeVec {
    IntGaugeVec::new(
        prometheus::Opts::new(
            "consumer_lag",
            "Records not yet consumed, by topic and partition (high watermark minus position)",
        ),
        &["topic", "partition"],
    )
    .expect("a valid gauge")
}

/// The client context of a consumer whose lag `/metrics` shows; logs as rdkafka's default.
pub struct LagContext {
    gauge: IntGaugeVec,
}

impl LagContext {
    pub fn new(gauge: IntGaugeVec) -> Self {
        Self { gauge }
    }
}

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        // Only the partitions this consumer fetches now: a revoked one leaves the gauge.
        self.gauge.reset();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition < 0 || p.app_offset < 0 || p.fetch_state == "none" {
                    continue;
                }
                let end = if p.ls_offset >= 0 {
                    p.ls_offset
                } else {
                    p.hi_offset
                };
                self.gauge
                    .with_label_values(&[topic.as_str(), &partition.to_string()])
                    .set((end - p.app_offset).max(0));
            }
        }
    }
}

impl ConsumerContext for LagContext {}
