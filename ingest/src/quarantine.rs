//! Writes refused input to `tracking.quarantine.v1`, so that nothing read is ever lost: a
//! misconfigured passphrase delays real sales, it does not drop them.

use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Utc};
use schemas::quarantine::REDACTED;
use schemas::{FieldError, QuarantineKey, QuarantineRecord};

use crate::metrics::Metrics;
use crate::producer::{EventProducer, ProduceError};

/// The request a refusal is about.
#[derive(Clone, Copy)]
pub struct Refused<'a> {
    pub route: &'a str,
    pub method: &'a str,
    pub received_at: DateTime<Utc>,
    pub content_type: Option<&'a str>,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
    /// Parameters holding a credential, whose values are never stored.
    pub credentials: &'a [&'a str],
    /// The S2S source the request's token authenticated as, if it did.
    pub s2s_source: Option<&'a str>,
}

impl<'a> Refused<'a> {
    /// A request with no credential parameters.
    pub fn new(
        route: &'a str,
        method: &'a str,
        received_at: DateTime<Utc>,
        content_type: Option<&'a str>,
        query: Option<&'a str>,
        body: &'a [u8],
    ) -> Self {
        Self {
            route,
            method,
            received_at,
            content_type,
            query,
            body,
            credentials: &[],
            s2s_source: None,
        }
    }
}

/// `text` (a query string or form body) with the value of every parameter named in
/// `names` replaced by [`REDACTED`], and the names that were. Everything else is kept byte
/// for byte, so that a signature over the rest still verifies on replay.
pub fn redact(text: &[u8], names: &[&str]) -> (Vec<u8>, Vec<String>) {
    let mut found = Vec::new();
    let pairs: Vec<Vec<u8>> = text
        .split(|b| *b == b'&')
        .map(|pair| {
            let raw_name = pair.split(|b| *b == b'=').next().unwrap_or_default();
            let name: String = form_urlencoded::parse(raw_name)
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            if names.contains(&name.as_str()) {
                if !found.contains(&name) {
                    found.push(name);
                }
                [raw_name, b"=", REDACTED.as_bytes()].concat()
            } else {
                pair.to_vec()
            }
        })
        .collect();
    (pairs.join(&b'&'), found)
}

pub struct Quarantine {
    producer: Arc<dyn EventProducer>,
    metrics: Arc<Metrics>,
    topic: String,
    body_cap: usize,
    key: QuarantineKey,
}

impl Quarantine {
    pub fn new(
        producer: Arc<dyn EventProducer>,
        metrics: Arc<Metrics>,
        topic: String,
        body_cap: usize,
        key: QuarantineKey,
    ) -> Self {
        Self {
            producer,
            metrics,
            topic,
            body_cap,
            key,
        }
    }

    /// Stores the refused input durably. The caller answers its 4xx only after this
    /// succeeded, and 503 otherwise, so that the sender retries instead of losing it.
    pub async fn keep(
        &self,
        req: &Refused<'_>,
        reason: &str,
        errors: Vec<FieldError>,
    ) -> Result<(), ProduceError> {
        let (query, body, redacted) = if req.credentials.is_empty() {
            (req.query.map(str::to_owned), req.body.to_vec(), Vec::new())
        } else {
            let (query, mut redacted) =
                redact(req.query.unwrap_or_default().as_bytes(), req.credentials);
            let (body, in_body) = redact(req.body, req.credentials);
            for name in in_body {
                if !redacted.contains(&name) {
                    redacted.push(name);
                }
            }
            let query = req
                .query
                .map(|_| String::from_utf8_lossy(&query).into_owned());
            (query, body, redacted)
        };
        let kept = &body[..body.len().min(self.body_cap)];
        let mut record = QuarantineRecord {
            reason: reason.to_owned(),
            errors,
            route: req.route.to_owned(),
            method: req.method.to_owned(),
            received_at: req.received_at,
            content_type: req.content_type.map(str::to_owned),
            query,
            body_base64: base64::engine::general_purpose::STANDARD.encode(kept),
            body_size: req.body.len(),
            body_truncated: kept.len() < body.len(),
            redacted,
            s2s_source: req.s2s_source.map(str::to_owned),
            sealed: None,
        };
        self.key.seal(&mut record);
        let payload = serde_json::to_vec(&record).expect("record serialises");
        let result = self
            .producer
            .send(&self.topic, record.key(), &payload)
            .await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_and_the_rest_kept_byte_for_byte() {
        let (out, names) = redact(
            b"order_id=B%201&token=s3cret&x=&tok%65n=again&tokens=keep",
            &["token"],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "order_id=B%201&token=REDACTED&x=&tok%65n=REDACTED&tokens=keep"
        );
        assert_eq!(names, ["token"]);
        let (out, names) = redact(b"a=1&b=2", &["token"]);
        assert_eq!((out.as_slice(), names.len()), (&b"a=1&b=2"[..], 0));
        assert_eq!(redact(b"", &["token"]).0, b"");
    }
}
