//! The value of `tracking.quarantine.v1`: input that was refused after its body was read,
//! kept with the reason so that it can be inspected and replayed.
//!
//! JSON rather than Avro: operators read it with ordinary tools, and its producers are the
//! error paths, never the hot path.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::validate::FieldError;

/// One refused request (or one refused event of a batch).
///
/// Ingest seals what the sender wrote (`query` and the body) with the quarantine key before
/// the record is written: it can hold raw e-mails and IPs, which must not sit readable in
/// Kafka. Credentials (postback tokens) are never kept at all: their values are replaced by
/// [`REDACTED`] and their names listed in `redacted`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Names of the parameters whose values were replaced by [`REDACTED`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// The S2S source whose token authenticated the request, when one did: its replay is
    /// credited to the same source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s2s_source: Option<String>,
    /// `query` and the body, sealed (ChaCha20-Poly1305, base64 of nonce and ciphertext);
    /// both plain fields are then empty. Opened with [`QuarantineKey::open`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// What stands in a quarantined request for a credential's value.
pub const REDACTED: &str = "REDACTED";

/// What the sender wrote, as it was received (credentials redacted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub query: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("the sealed request does not open with this quarantine key (another key, or altered)")]
    WrongKey,
    #[error("a quarantine record is damaged: {0}")]
    Damaged(String),
}

/// The key that seals quarantined requests: 32 bytes derived with SHA-256 from an operator
/// secret of at least 16 bytes (`INGEST_QUARANTINE_KEY`). Rotating the secret makes every
/// record sealed under the old one unreadable, which is also how they are erased.
pub struct QuarantineKey(ChaCha20Poly1305);

const KEY_CONTEXT: &[u8] = b"trackledger quarantine key v1\0";
const NONCE_LEN: usize = 12;

impl QuarantineKey {
    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.len() < 16 {
            return Err("the quarantine key must be at least 16 bytes".into());
        }
        let digest = Sha256::new()
            .chain_update(KEY_CONTEXT)
            .chain_update(secret.as_bytes())
            .finalize();
        Ok(Self(ChaCha20Poly1305::new(&digest)))
    }

    /// Moves `record`'s query and body into its sealed field.
    pub fn seal(&self, record: &mut QuarantineRecord) {
        // The body stays in the base64 it already has: no decoding, and no JSON array of
        // numbers four times its size.
        let fields = Fields {
            query: record.query.take(),
            body_base64: std::mem::take(&mut record.body_base64),
        };
        let plain = serde_json::to_vec(&fields).expect("serialises");
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: record.route.as_bytes(),
                },
            )
            .expect("in-memory encryption");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        record.sealed = Some(B64.encode(out));
    }

    /// The request a record holds, sealed or not.
    pub fn open(&self, record: &QuarantineRecord) -> Result<Request, QuarantineError> {
        let Some(sealed) = &record.sealed else {
            return record.plain();
        };
        let bytes = B64
            .decode(sealed)
            .map_err(|_| QuarantineError::Damaged("sealed is not base64".into()))?;
        if bytes.len() < NONCE_LEN {
            return Err(QuarantineError::Damaged("sealed is too short".into()));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = self
            .0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: record.route.as_bytes(),
                },
            )
            .map_err(|_| QuarantineError::WrongKey)?;
        serde_json::from_slice::<Fields>(&plain)
            .map_err(|e| QuarantineError::Damaged(e.to_string()))?
            .request()
    }
}

/// What the sender wrote, as a record holds it: the sealed plaintext, and the plain fields.
#[derive(Serialize, Deserialize)]
struct Fields {
    query: Option<String>,
    body_base64: String,
}

impl Fields {
    fn request(self) -> Result<Request, QuarantineError> {
        Ok(Request {
            query: self.query,
            body: B64
                .decode(&self.body_base64)
                .map_err(|_| QuarantineError::Damaged("body_base64 is not base64".into()))?,
        })
    }
}

impl QuarantineRecord {
    /// The Kafka key: the route, so one route's rejects stay in order.
    pub fn key(&self) -> &str {
        &self.route
    }

    /// The request of a record that is not sealed (the processor's, or an old one).
    pub fn plain(&self) -> Result<Request, QuarantineError> {
        if self.sealed.is_some() {
            return Err(QuarantineError::Damaged(
                "the request is sealed: open it with the quarantine key".into(),
            ));
        }
        Fields {
            query: self.query.clone(),
            body_base64: self.body_base64.clone(),
        }
        .request()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> QuarantineRecord {
        QuarantineRecord {
            reason: "validation".into(),
            route: "/v1/postbacks/buygoods".into(),
            method: "GET".into(),
            query: Some("order_id=1&email=someone%40example.com&token=REDACTED".into()),
            body_base64: B64.encode(b"ip=198.51.100.7"),
            body_size: 15,
            ..Default::default()
        }
    }

    #[test]
    fn a_sealed_request_opens_only_with_its_key() {
        let key = QuarantineKey::new("quarantine-key-0123456789").unwrap();
        let mut r = record();
        let before = r.plain().unwrap();
        key.seal(&mut r);
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            !text.contains("example.com") && !text.contains("198.51"),
            "{text}"
        );
        assert_eq!((r.query.as_deref(), r.body_base64.as_str()), (None, ""));
        assert_eq!(key.open(&r).unwrap(), before);
        let back: QuarantineRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(key.open(&back).unwrap(), before);

        let other = QuarantineKey::new("another-key-0123456789").unwrap();
        assert!(matches!(other.open(&r), Err(QuarantineError::WrongKey)));
        let mut moved = r.clone();
        moved.route = "/v1/events".into();
        assert!(matches!(key.open(&moved), Err(QuarantineError::WrongKey)));
        assert!(r.plain().is_err());
        assert!(QuarantineKey::new("short").is_err());
    }

    #[test]
    fn unsealed_records_open_as_they_are() {
        let key = QuarantineKey::new("quarantine-key-0123456789").unwrap();
        let r = record();
        assert_eq!(key.open(&r).unwrap().body, b"ip=198.51.100.7");
        let old = r#"{"reason":"x","route":"processor","method":"CONSUME","received_at":"2026-11-20T00:00:00Z","content_type":null,"query":null,"body_base64":"","body_size":0,"body_truncated":false}"#;
        let parsed: QuarantineRecord = serde_json::from_str(old).unwrap();
        assert!(parsed.redacted.is_empty() && parsed.sealed.is_none());
    }
}
