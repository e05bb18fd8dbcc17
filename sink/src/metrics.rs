//! Prometheus metrics of the sink, served on `GET /metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Rows inserted, by table.
    pub rows: IntCounterVec,
    /// Time to insert a batch (retries included), by table.
    pub insert_seconds: HistogramVec,
    /// Inserts ClickHouse refused or did not answer, by table.
    pub insert_errors: IntCounterVec,
    /// 1 while ClickHouse takes inserts, 0 while the sink is retrying one.
    pub clickhouse_up: IntGauge,
    /// Records that do not decode, by topic (kept on Kafka, skipped).
    pub undecodable: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("sink".into()), None).expect("registry");
        let m = Self {
            rows: IntCounterVec::new(Opts::new("rows_total", "Rows inserted"), &["table"]).unwrap(),
            insert_seconds: HistogramVec::new(
                HistogramOpts::new("insert_seconds", "Time to insert a batch").buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
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
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.rows.clone()),
            Box::new(m.insert_seconds.clone()),
            Box::new(m.insert_errors.clone()),
            Box::new(m.clickhouse_up.clone()),
            Box::new(m.undecodable.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("unique metric names");
        }
        m
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("UTF-8")
    }
}
