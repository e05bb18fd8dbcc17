//! The value of `tracking.quarantine.v1`: input that was refused after its body was read,
//! kept with the reason so that it can be inspected and replayed.
//!
//! JSON rather than Avro: operators read it with ordinary tools, and its producers are the
//! error paths, never the hot path.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::validate::FieldError;

/// One refused request (or one refused event of a batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// Short machine-readable reason, e.g. `validation`, `bad_signature`, `malformed_json`.
    pub reason: String,
    /// Field-level detail where there is any.
    #[serde(default)]
    pub errors: Vec<FieldError>,
    /// The route that received it, e.g. `/v1/postbacks/digistore24`.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// When ingest read it.
    pub received_at: DateTime<Utc>,
    /// The request's content type, if it gave one.
    pub content_type: Option<String>,
    /// The query string, if any (postbacks carry their fields there).
    pub query: Option<String>,
    /// The raw body, base64, cut at the configured cap.
    pub body_base64: String,
    /// The body's full size in bytes.
    pub body_size: usize,
    /// Whether `body_base64` holds less than the whole body.
    pub body_truncated: bool,
}

impl QuarantineRecord {
    /// The Kafka key: the route, so one route's rejects stay in order.
    pub fn key(&self) -> &str {
        &self.route
    }
}

impl<'de> Deserialize<'de> for FieldError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            field: String,
            reason: String,
        }
        let raw = Raw::deserialize(d)?;
        Ok(FieldError::new(raw.field, raw.reason))
    }
}
