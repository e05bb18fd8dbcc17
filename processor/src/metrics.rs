//! Prometheus metrics of the processor, served on `GET /metrics`.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub struct Metrics {
    /// Every metric above, for the `/metrics` endpoint.
    pub registry: Registry,
    /// Input records by outcome: first, duplicate, conflict, erasure, and the quarantined
    /// ones by reason: undecodable, unknown_schema, incompatible_schema, invalid,
    /// amount_out_of_range.
    pub events: IntCounterVec,
    /// Consumer lag per input partition (high watermark minus position).
    pub lag: IntGaugeVec,
    /// Time to send offsets and commit a transaction.
    pub commit_seconds: Histogram,
    /// Transactions by result: committed, aborted.
    pub transactions: IntCounterVec,
    /// Reversals and lead statuses reported as orphans.
    pub orphans: IntCounter,
    /// State entries held, by kind: dedup, conversion.
    pub state_keys: IntGaugeVec,
    /// Time to restore the state of newly assigned partitions.
    pub restore_seconds: Histogram,
    /// Changelog records read while restoring.
    pub restored_records: IntCounter,
    /// Input partitions this instance owns.
    pub assigned_partitions: IntGauge,
    /// Postbacks written to the outbox, by destination.
    pub outbox_records: IntCounterVec,
    /// Requests to the schema registry (cache misses) by result: ok, not_found, unavailable.
    pub registry_requests: IntCounterVec,
    /// Input partitions paused until the schema registry answers.
    pub registry_waiting_partitions: IntGauge,
    /// Ledger entries of capped offers sent to the capping stage.
    pub capping_routed: IntCounter,
    /// Entries the capping stage wrote to the ledger.
    pub capping_entries: IntCounter,
    /// Conversions the capping stage decided, by verdict: counted, over_cap.
    pub cap_decisions: IntCounterVec,
    /// Conversions over a cap, by the cap.
    pub over_cap: IntCounterVec,
    /// Caps file reloads by result: ok, refused (the caps stay as they were).
    pub caps_reloads: IntCounterVec,
    /// The capping stage's transactions by result: committed, aborted.
    pub caps_transactions: IntCounterVec,
    /// The capping stage's state, by kind: usage (cap periods), verdict (conversions).
    pub caps_state_keys: IntGaugeVec,
    /// Ledger entries sent to the click-ID stage, by kind: click (its IDs, to be kept),
    /// conversion (to take them).
    pub click_ids_routed: IntCounterVec,
    /// Conversions through the click-ID stage, by outcome: inherited, nothing_missing,
    /// click_unknown, consent_denied.
    pub click_ids: IntCounterVec,
    /// The click-ID stage's transactions by result: committed, aborted.
    pub click_ids_transactions: IntCounterVec,
    /// Clicks whose ad-platform IDs the click-ID stage holds.
    pub click_ids_state_keys: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let seconds = [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ];
        let mut m = Self {
            events: IntCounterVec::new(
                Opts::new("events_total", "Input events by outcome"),
                &["outcome"],
            )
            .unwrap(),
            lag: IntGaugeVec::new(
                Opts::new(
                    "consumer_lag",
                    "Input messages not yet processed, by partition",
                ),
                &["partition"],
            )
            .unwrap(),
            commit_seconds: Histogram::with_opts(
                HistogramOpts::new("transaction_commit_seconds", "Time to commit a transaction")
                    .buckets(seconds.to_vec()),
            )
            .unwrap(),
            transactions: IntCounterVec::new(
                Opts::new("transactions_total", "Transactions by result"),
                &["result"],
            )
            .unwrap(),
            orphans: IntCounter::new(
                "orphans_total",
                "Reversals and lead statuses reported as orphans",
            )
            .unwrap(),
            state_keys: IntGaugeVec::new(
                Opts::new("state_keys", "State entries held, by kind"),
                &["kind"],
            )
            .unwrap(),
            restore_seconds: Histogram::with_opts(
                HistogramOpts::new("restore_seconds", "Time to restore assigned partitions")
                    .buckets(seconds.to_vec()),
            )
            .unwrap(),
            restored_records: IntCounter::new(
                "restored_records_total",
                "Changelog records read while restoring",
            )
            .unwrap(),
            assigned_partitions: IntGauge::new(
                "assigned_partitions",
                "Input partitions this instance owns",
            )
            .unwrap(),
            outbox_records: IntCounterVec::new(
                Opts::new("outbox_records_total", "Postbacks written to the outbox"),
                &["destination"],
            )
            .unwrap(),
            registry_requests: IntCounterVec::new(
                Opts::new(
                    "schema_registry_requests_total",
                    "Writer schemas asked of the schema registry, by result",
                ),
                &["result"],
            )
            .unwrap(),
            registry_waiting_partitions: IntGauge::new(
                "schema_registry_waiting_partitions",
                "Input partitions paused until the schema registry answers",
            )
            .unwrap(),
            capping_routed: IntCounter::new(
                "capping_routed_total",
                "Ledger entries of capped offers sent to the capping stage",
            )
            .unwrap(),
            capping_entries: IntCounter::new(
                "capping_entries_total",
                "Entries the capping stage wrote to the ledger",
            )
            .unwrap(),
            cap_decisions: IntCounterVec::new(
                Opts::new(
                    "cap_decisions_total",
                    "Conversions decided against their caps, by verdict",
                ),
                &["verdict"],
            )
            .unwrap(),
            over_cap: IntCounterVec::new(
                Opts::new(
                    "over_cap_conversions_total",
                    "Conversions over a cap, by cap",
                ),
                &["cap"],
            )
            .unwrap(),
            caps_reloads: IntCounterVec::new(
                Opts::new("caps_reloads_total", "Caps file reloads by result"),
                &["result"],
            )
            .unwrap(),
            caps_transactions: IntCounterVec::new(
                Opts::new(
                    "caps_transactions_total",
                    "The capping stage's transactions by result",
                ),
                &["result"],
            )
            .unwrap(),
            caps_state_keys: IntGaugeVec::new(
                Opts::new("caps_state_keys", "The capping stage's state, by kind"),
                &["kind"],
            )
            .unwrap(),
            click_ids_routed: IntCounterVec::new(
                Opts::new(
                    "click_ids_routed_total",
                    "Ledger entries sent to the click-ID stage, by kind",
                ),
                &["kind"],
            )
            .unwrap(),
            click_ids: IntCounterVec::new(
                Opts::new(
                    "click_ids_total",
                    "Conversions through the click-ID stage, by outcome",
                ),
                &["outcome"],
            )
            .unwrap(),
            click_ids_transactions: IntCounterVec::new(
                Opts::new(
                    "click_ids_transactions_total",
                    "The click-ID stage's transactions by result",
                ),
                &["result"],
            )
            .unwrap(),
            click_ids_state_keys: IntGauge::new(
                "click_ids_state_keys",
                "Clicks whose ad-platform IDs the click-ID stage holds",
            )
            .unwrap(),
            registry: Registry::new(),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.events.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.commit_seconds.clone()),
            Box::new(m.transactions.clone()),
            Box::new(m.orphans.clone()),
            Box::new(m.state_keys.clone()),
            Box::new(m.restore_seconds.clone()),
            Box::new(m.restored_records.clone()),
            Box::new(m.assigned_partitions.clone()),
            Box::new(m.outbox_records.clone()),
            Box::new(m.registry_requests.clone()),
            Box::new(m.registry_waiting_partitions.clone()),
            Box::new(m.capping_routed.clone()),
            Box::new(m.capping_entries.clone()),
            Box::new(m.cap_decisions.clone()),
            Box::new(m.over_cap.clone()),
            Box::new(m.caps_reloads.clone()),
            Box::new(m.caps_transactions.clone()),
            Box::new(m.caps_state_keys.clone()),
            Box::new(m.click_ids_routed.clone()),
            Box::new(m.click_ids.clone()),
            Box::new(m.click_ids_transactions.clone()),
            Box::new(m.click_ids_state_keys.clone()),
        ];
        m.registry = telemetry::registry("processor", collectors);
        m
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        telemetry::render(&self.registry)
    }
}
