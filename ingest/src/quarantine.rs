//! Writes refused input to `tracking.quarantine.v1`, so that nothing read is ever lost: a
//! misconfigured passphrase delays real sales, it does not drop them.

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use schemas::{FieldError, QuarantineRecord};

use crate::metrics::Metrics;
use crate::sink::{EventSink, SinkError};

/// The request a refusal is about.
pub struct Refused<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub received_at: DateTime<Utc>,
    pub content_type: Option<&'a str>,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

pub struct Quarantine {
    sink: Arc<dyn EventSink>,
    metrics: Arc<Metrics>,
    topic: String,
    body_cap: usize,
}

impl Quarantine {
    pub fn new(
        sink: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        topic: String,
        body_cap: usize,
    ) -> Self {
        Self {
            sink,
            metrics,
            topic,
            body_cap,
        }
    }

    /// Stores the refused input durably. The caller answers its 4xx only after this
    /// succeeded, and 503 otherwise, so that the sender retries instead of losing it.
    pub async fn keep(
        &self,
        req: &Refused<'_>,
        reason: &str,
        errors: Vec<FieldError>,
    ) -> Result<(), SinkError> {
        let kept = &req.body[..req.body.len().min(self.body_cap)];
        let record = QuarantineRecord {
            reason: reason.to_owned(),
            errors,
            route: req.route.to_owned(),
            method: req.method.to_owned(),
            received_at: req.received_at,
            content_type: req.content_type.map(str::to_owned),
            query: req.query.map(str::to_owned),
            body_base64: base64::engine::general_purpose::STANDARD.encode(kept),
            body_size: req.body.len(),
            body_truncated: kept.len() < req.body.len(),
        };
        let payload = serde_json::to_vec(&record).expect("record serialises");
        let result = self.sink.send(&self.topic, record.key(), &payload).await;
        match &result {
            Ok(()) => self
                .metrics
                .quarantined
                .with_label_values(&[req.route, reason])
                .inc(),
            Err(e) => self
                .metrics
                .produce_errors
                .with_label_values(&[e.kind()])
                .inc(),
        }
        result
    }
}
