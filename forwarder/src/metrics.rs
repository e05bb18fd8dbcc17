//! Prometheus metrics of the forwarder, served on `GET /metrics`.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    /// Every metric above, for the `/metrics` endpoint.
    pub registry: Registry,
    /// Attempts by destination and outcome (DELIVERED, TRANSIENT_FAILURE, PERMANENT_FAILURE).
    pub attempts: IntCounterVec,
    /// Postbacks written to the DLQ, by destination.
    pub dead_lettered: IntCounterVec,
    /// Postbacks held now: waiting for their time, a token, or an answer.
    pub in_flight: IntGauge,
    /// Postbacks let go unsent because their partition moved to another instance, which
    /// reads them again.
    pub abandoned: IntCounter,
    /// Time spent waiting for a rate-limiter token, by destination.
    pub token_wait: HistogramVec,
    /// Records not yet consumed from the outbox and retry topics, by topic and partition.
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
            attempts: IntCounterVec::new(
                Opts::new("attempts_total", "Delivery attempts by outcome"),
                &["destination", "outcome"],
            )
            .unwrap(),
            dead_lettered: IntCounterVec::new(
                Opts::new("dead_lettered_total", "Postbacks written to the DLQ"),
                &["destination"],
            )
            .unwrap(),
            in_flight: IntGauge::new("in_flight", "Postbacks held now").unwrap(),
            abandoned: IntCounter::new(
                "abandoned_total",
                "Postbacks let go unsent: their partition moved to another instance",
            )
            .unwrap(),
            token_wait: HistogramVec::new(
                HistogramOpts::new("token_wait_seconds", "Wait for a rate-limiter token").buckets(
                    vec![0.0, 0.001, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0],
                ),
                &["destination"],
            )
            .unwrap(),
            consumer_lag: telemetry::kafka::lag::gauge(),
            registry: Registry::new(),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.attempts.clone()),
            Box::new(m.dead_lettered.clone()),
            Box::new(m.in_flight.clone()),
            Box::new(m.abandoned.clone()),
            Box::new(m.token_wait.clone()),
            Box::new(m.consumer_lag.clone()),
        ];
        m.registry = telemetry::registry("forwarder", collectors);
        m
    }

    pub fn render(&self) -> String {
        telemetry::render(&self.registry)
    }
}
