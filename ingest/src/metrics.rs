//! Prometheus metrics of the ingest service, served on `GET /metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests by route and HTTP status.
    pub requests: IntCounterVec,
    /// Time from reading a request to answering it, by route.
    pub ack_seconds: HistogramVec,
    /// Events by route and outcome (accepted, rejected, duplicate-free counts per event).
    pub events: IntCounterVec,
    /// Messages Kafka did not durably accept, by kind (queue_full, timeout, kafka).
    pub produce_errors: IntCounterVec,
    /// Refused inputs written to the quarantine topic, by route and reason.
    pub quarantined: IntCounterVec,
    /// Clicks written to the local spool because Kafka had not confirmed them in time.
    pub clicks_spooled: IntCounter,
    /// Clicks still waiting in the spool.
    pub spool_pending: IntGauge,
    /// Requests being handled now.
    pub in_flight: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("ingest".into()), None).expect("registry");
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .unwrap();
        let ack_seconds = HistogramVec::new(
            HistogramOpts::new("ack_seconds", "Time from request to answer, by route").buckets(
                vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0,
                ],
            ),
            &["route"],
        )
        .unwrap();
        let events = IntCounterVec::new(
            Opts::new("events_total", "Events by route and outcome"),
            &["route", "outcome"],
        )
        .unwrap();
        let produce_errors = IntCounterVec::new(
            Opts::new(
                "produce_errors_total",
                "Messages Kafka did not durably accept",
            ),
            &["kind"],
        )
        .unwrap();
        let quarantined = IntCounterVec::new(
            Opts::new(
                "quarantined_total",
                "Refused inputs kept on the quarantine topic",
            ),
            &["route", "reason"],
        )
        .unwrap();
        let clicks_spooled = IntCounter::new(
            "clicks_spooled_total",
            "Clicks spooled to disk because Kafka was slow",
        )
        .unwrap();
        let spool_pending = IntGauge::new("spool_pending", "Clicks waiting in the spool").unwrap();
        let in_flight = IntGauge::new("in_flight", "Requests being handled now").unwrap();
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ack_seconds.clone()),
            Box::new(events.clone()),
            Box::new(produce_errors.clone()),
            Box::new(quarantined.clone()),
            Box::new(clicks_spooled.clone()),
            Box::new(spool_pending.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry.register(c).expect("metric registers once");
        }
        Self {
            registry,
            requests,
            ack_seconds,
            events,
            produce_errors,
            quarantined,
            clicks_spooled,
            spool_pending,
            in_flight,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("utf-8")
    }
}
