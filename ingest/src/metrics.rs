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
    /// Failed authentications (every route's `401 unauthorized`).
    pub auth_failures: IntCounter,
    /// Requests refused with 429 because their client failed authentication too often.
    pub auth_limited: IntCounter,
    /// Open client connections.
    pub open_connections: IntGauge,
    /// Connections closed by ingest: `max_connections` (refused at accept), `idle`.
    pub connections_closed: IntCounterVec,
    /// Bytes in the click spool.
    pub spool_bytes: IntGauge,
    /// Clicks assessed at the door, by quality: `clean`, or `suspect` (one flag or more).
    pub clicks: IntCounterVec,
    /// Flags set on clicks at the door, by flag (BOT_USER_AGENT, DATACENTER_IP).
    pub click_flags: IntCounterVec,
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
        let auth_failures =
            IntCounter::new("auth_failures_total", "Failed authentications").unwrap();
        let auth_limited = IntCounter::new(
            "auth_limited_total",
            "Requests refused with 429 after too many failed authentications from their client",
        )
        .unwrap();
        let open_connections =
            IntGauge::new("open_connections", "Open client connections").unwrap();
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "connections_closed_total",
                "Connections closed by ingest, by reason (max_connections, idle)",
            ),
            &["reason"],
        )
        .unwrap();
        let spool_bytes = IntGauge::new("spool_bytes", "Bytes in the click spool").unwrap();
        let clicks = IntCounterVec::new(
            Opts::new(
                "clicks_total",
                "Clicks assessed at the door, by quality (clean, suspect)",
            ),
            &["quality"],
        )
        .unwrap();
        let click_flags = IntCounterVec::new(
            Opts::new(
                "click_flags_total",
                "Quality flags set on clicks at the door, by flag",
            ),
            &["flag"],
        )
        .unwrap();
        // Both qualities exist from the start, so that a rate of suspect clicks is 0, not absent.
        for quality in ["clean", "suspect"] {
            clicks.with_label_values(&[quality]);
        }
        for flag in schemas::quality::EVENT_FLAGS {
            click_flags.with_label_values(&[flag]);
        }
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ack_seconds.clone()),
            Box::new(events.clone()),
            Box::new(produce_errors.clone()),
            Box::new(quarantined.clone()),
            Box::new(clicks_spooled.clone()),
            Box::new(spool_pending.clone()),
            Box::new(in_flight.clone()),
            Box::new(auth_failures.clone()),
            Box::new(auth_limited.clone()),
            Box::new(open_connections.clone()),
            Box::new(connections_closed.clone()),
            Box::new(spool_bytes.clone()),
            Box::new(clicks.clone()),
            Box::new(click_flags.clone()),
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
            auth_failures,
            auth_limited,
            open_connections,
            connections_closed,
            spool_bytes,
            clicks,
            click_flags,
        }
    }

    /// One click assessed at the door, with the flags it got.
    pub fn count_click(&self, flags: &[String]) {
        let quality = if flags.is_empty() { "clean" } else { "suspect" };
        self.clicks.with_label_values(&[quality]).inc();
        for flag in flags {
            self.click_flags.with_label_values(&[flag]).inc();
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
