//! Network postback adapters. Each network is one module behind [`PostbackAdapter`]: it
//! authenticates the request, maps the network's fields and types to the contract and
//! derives deterministic event IDs. Adding a network touches no other adapter.

pub mod buygoods;
pub mod clickbank;
pub mod digistore24;
pub mod s2s;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use schemas::{RawPii, TrackingEvent};
use subtle::ConstantTimeEq;

/// What an adapter sees of a request.
pub struct PostbackRequest<'a> {
    pub method: &'a str,
    pub query: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub received_at: DateTime<Utc>,
    /// Set on the operator's replay route, after its API key was checked: the quarantined
    /// request's credential was redacted, so token networks take the operator's word (and,
    /// for S2S, the source name the token had authenticated as).
    pub replay: Option<Replay<'a>>,
}

/// The header in which an operator's replay names the S2S source the redacted token had
/// authenticated as (`trackctl replay quarantine` sends it).
pub const REPLAY_SOURCE_HEADER: &str = "trackledger-replay-source";

/// A replay by the operator of a quarantined postback.
#[derive(Debug, Clone, Copy, Default)]
pub struct Replay<'a> {
    pub source: Option<&'a str>,
}

/// An accepted postback.
#[derive(Debug)]
pub enum Outcome {
    /// Events to produce, each with the personal data that came with it (hashed later).
    Events(Vec<(TrackingEvent, RawPii)>),
    /// A valid request that carries nothing to count (e.g. Digistore24's connection test).
    Nothing,
}

/// A refused postback is ingest's one error type: a refusal before the request is
/// authenticated (`authenticated == false`) is answered with one uniform `401 unauthorized`,
/// whatever the cause; the precise reason goes to quarantine and the log.
pub use crate::error::ApiError;

pub trait PostbackAdapter: Send + Sync {
    /// The contract's `network` value for this adapter's events.
    fn network(&self) -> &'static str;
    /// Authenticates and maps one request.
    fn parse(&self, req: &PostbackRequest<'_>) -> Result<Outcome, ApiError>;
    /// The source an authenticated request is credited to, when the network has several
    /// (S2S: the token's name): kept with a quarantined request whose token is redacted, so
    /// that its replay is credited to the same source.
    fn source_of(&self, _req: &PostbackRequest<'_>) -> Option<String> {
        None
    }
    /// Parameters that carry the network's credential: never stored, redacted in
    /// quarantine.
    fn credentials(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether every refusal must look like an authentication failure, also those made
    /// after `parse` (an amount over its ceiling): true where the content is all the
    /// authentication there is (ClickBank).
    fn opaque_refusals(&self) -> bool {
        false
    }
}

/// Query-string and form-body fields together (the body wins on a repeated name). Read
/// before authentication, so a failure is an authentication failure.
pub(crate) fn form_fields(req: &PostbackRequest<'_>) -> Result<BTreeMap<String, String>, ApiError> {
    let mut fields: BTreeMap<String, String> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(req.query)
            .map_err(|e| ApiError::unauthenticated("malformed", "<query>", e.to_string()))?
            .into_iter()
            .collect();
    if !req.body.is_empty() {
        let body: Vec<(String, String)> = serde_urlencoded::from_bytes(req.body).map_err(|e| {
            ApiError::unauthenticated("malformed", "<body>", format!("not form-urlencoded: {e}"))
        })?;
        fields.extend(body);
    }
    Ok(fields)
}

/// A non-empty field value.
pub(crate) fn field<'a>(fields: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    fields.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
}

pub(crate) fn required<'a>(
    fields: &'a BTreeMap<String, String>,
    name: &str,
) -> Result<&'a str, ApiError> {
    field(fields, name).ok_or_else(|| ApiError::missing(name))
}

/// A money amount as a magnitude: networks report reversals as negative numbers, the
/// contract carries the sign in the event name.
pub(crate) fn amount(name: &str, text: Option<&str>) -> Result<Option<Decimal>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    schemas::money::parse_decimal(text)
        .map(|d| Some(d.abs()))
        .map_err(|e| ApiError::invalid(name, e.to_string()))
}

/// Whether two secrets are equal, in time that depends on neither: both are hashed first,
/// so that not even the length of the configured one leaks.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    let (a, b) = (
        Sha256::digest(presented.as_bytes()),
        Sha256::digest(expected.as_bytes()),
    );
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// Compares a presented secret with the configured one in constant time. Missing and wrong
/// secrets are both authentication failures; only the quarantine record tells them apart.
pub(crate) fn check_secret(
    field_name: &str,
    presented: Option<&str>,
    expected: &str,
) -> Result<(), ApiError> {
    match presented {
        None => Err(ApiError::unauthenticated(
            "missing_token",
            field_name,
            "required",
        )),
        Some(p) if same_secret(p, expected) => Ok(()),
        Some(_) => Err(ApiError::unauthenticated(
            "bad_token",
            field_name,
            "does not match the configured token",
        )),
    }
}

/// The outcome of a postback that maps to one event, with the buyer's e-mail (normalised;
/// hashed or dropped later, never stored raw).
pub(crate) fn one_event(event: TrackingEvent, email: Option<&str>) -> Result<Outcome, ApiError> {
    let email = email.map(|s| s.trim().to_lowercase());
    Ok(Outcome::Events(vec![(
        validated(event)?,
        RawPii {
            email,
            ip: None,
            phone: None,
        },
    )]))
}

/// Copies the network's five subtag fields, in order, to `sub1`..`sub5`.
pub(crate) fn set_subtags(
    e: &mut TrackingEvent,
    fields: &BTreeMap<String, String>,
    names: [&str; 5],
) {
    let [s1, s2, s3, s4, s5] = names.map(|n| field(fields, n).map(str::to_owned));
    (e.sub1, e.sub2, e.sub3, e.sub4, e.sub5) = (s1, s2, s3, s4, s5);
}

/// Turns a mapped event into an accepted one, or the contract's field errors.
pub(crate) fn validated(event: TrackingEvent) -> Result<TrackingEvent, ApiError> {
    schemas::validate(&event)
        .map(|()| event)
        .map_err(|e| ApiError::rejected("validation", e.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn secrets_compare_exactly() {
        assert!(check_secret("token", Some("s3cret-token"), "s3cret-token").is_ok());
        let wrong = check_secret("token", Some("s3cret-tokeN"), "s3cret-token").unwrap_err();
        assert_eq!((wrong.status.as_u16(), wrong.reason), (401, "bad_token"));
        assert!(!wrong.authenticated);
        let missing = check_secret("token", None, "s3cret-token").unwrap_err();
        assert_eq!(
            (missing.status.as_u16(), missing.reason),
            (401, "missing_token")
        );
        assert!(check_secret("token", Some("s3cret"), "s3cret-token").is_err());
    }

    #[test]
    fn amounts_are_magnitudes() {
        assert_eq!(
            amount("a", Some("-47.99")).unwrap(),
            Some(Decimal::from_str("47.99").unwrap())
        );
        assert_eq!(amount("a", None).unwrap(), None);
        assert_eq!(amount("a", Some("12,5")).unwrap_err().errors[0].field, "a");
    }
}
