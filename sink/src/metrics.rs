//! Prometheus metrics of the sink, served on `GET /metrics`.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    /// Every metric above, for the `/metrics` endpoint.
    pub registry: Registry,
    /// Rows inserted, by table.
    pub rows: IntCounterVec,
    /// Time to insert a batch (retries included), by table.
    pub insert_seconds: HistogramVec,
    /// Rows per insert, by table: a backlog loads in larger blocks (`loader`).
    pub insert_rows: HistogramVec,
    /// Inserts ClickHouse refused or did not answer, by table.
    pub insert_errors: IntCounterVec,
    /// 1 while ClickHouse takes inserts, 0 while the sink is retrying one.
    pub clickhouse_up: IntGauge,
    /// Records that do not decode, by topic (kept on Kafka, skipped).
    pub undecodable: IntCounterVec,
    /// Records not yet consumed, by topic and partition (from librdkafka's statistics).
    pub consumer_lag: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Self {
            rows: IntCounterVec::new(Opts::new("rows_total", "Rows inserted"), &["table"]).unwrap(),
            insert_seconds: HistogramVec::new(
                HistogramOpts::new("insert_seconds", "Time to insert a batch").buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
                &["table"],
            )
            .unwrap(),
            insert_rows: HistogramVec::new(
                HistogramOpts::new("insert_rows", "Rows per insert").buckets(vec![
                    1.0,
                    10.0,
                    100.0,
                    1_000.0,
                    10_000.0,
                    50_000.0,
                    100_000.0,
                    500_000.0,
                    1_000_000.0,
                ]),
                &["table"],
            )
            .unwrap(),
            insert_errors: IntCounterVec::new(
                Opts::new("insert_errors_total", "Inserts ClickHouse refused"),
                &["table"],
            )
            .unwrap(),
            clickhouse_up: IntGauge::new("clickhouse_up", "1 while ClickHouse takes inserts")
                .unwrap(),
            undecodable: IntCounterVec::new(
                Opts::new("undecodable_total", "Records that do not decode"),
                &["topic"],
            )
            .unwrap(),
            consumer_lag: telemetry::kafka::lag::gauge(),
            registry: Registry::new(),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.rows.clone()),
            Box::new(m.insert_seconds.clone()),
            Box::new(m.insert_rows.clone()),
            Box::new(m.insert_errors.clone()),
            Box::new(m.clickhouse_up.clone()),
            Box::new(m.undecodable.clone()),
            Box::new(m.consumer_lag.clone()),
        ];
        m.registry = telemetry::registry("sink", collectors);
        m
    }

    pub fn render(&self) -> String {
        telemetry::render(&self.registry)
    }
}
