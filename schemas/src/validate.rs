//! Validation of events against the contract, with one error per offending field.

use std::fmt;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;

use crate::money::{Money, MoneyError};
use serde::Serialize;

use crate::event::{EventName, TrackingEvent};

/// Longest identifier (event, order, click, lead, offer... IDs), in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest free-text attribution field (UTM, subtags, source...), in bytes.
pub const MAX_TEXT_LEN: usize = 512;
/// Longest user agent kept, in bytes.
pub const MAX_USER_AGENT_LEN: usize = 1024;
/// Most extra attributes one event may carry.
pub const MAX_ATTRIBUTES: usize = 32;
/// Largest money magnitude accepted (exclusive): decimal(18, 6) leaves 12 integer digits.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// How far in the future (relative to `received_at`) an `occurred_at` may be: clock skew.
pub const MAX_FUTURE_SKEW: Duration = Duration::hours(1);

/// The earliest instant the contract accepts for any timestamp.
pub fn earliest_timestamp() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap()
}

/// One field that breaks the contract, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Every contract violation found in one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(transparent)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// The offending field names, in the order found.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.field.as_str()).collect()
    }
}

/// Collects field errors while a value is checked.
#[derive(Default)]
pub(crate) struct Report(Vec<FieldError>);

impl Report {
    pub(crate) fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError::new(field, reason));
    }

    pub(crate) fn finish(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.0))
        }
    }

    pub(crate) fn extend(&mut self, other: ValidationErrors) {
        self.0.extend(other.0);
    }

    pub(crate) fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|e| e.field.as_str())
    }
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '~')
}

fn check_id(r: &mut Report, field: &str, value: &str) {
    if value.is_empty() {
        r.push(field, "must not be empty");
    } else if value.len() > MAX_ID_LEN {
        r.push(field, format!("longer than {MAX_ID_LEN} bytes"));
    } else if let Some(c) = value.chars().find(|c| !is_id_char(*c)) {
        r.push(
            field,
            format!("character {c:?} not allowed (use letters, digits and - _ . : ~)"),
        );
    }
}

fn check_opt_id(r: &mut Report, field: &str, value: &Option<String>) {
    if let Some(v) = value {
        check_id(r, field, v);
    }
}

fn check_text(r: &mut Report, field: &str, value: &Option<String>, max: usize) {
    if let Some(v) = value {
        if v.len() > max {
            r.push(field, format!("longer than {max} bytes"));
        } else if v.chars().any(char::is_control) {
            r.push(field, "contains control characters");
        }
    }
}

fn check_time(r: &mut Report, field: &str, t: DateTime<Utc>, latest: DateTime<Utc>) {
    if t < earliest_timestamp() {
        r.push(field, format!("{} is before 2000-01-01", t.to_rfc3339()));
    } else if t > latest {
        r.push(
            field,
            format!(
                "{} is after the latest accepted {}",
                t.to_rfc3339(),
                latest.to_rfc3339()
            ),
        );
    }
}

/// Checks a money magnitude: non-negative, at most 6 decimals, below 10^12.
pub fn check_amount(field: &str, amount: Decimal) -> Result<(), FieldError> {
    if amount.is_sign_negative() && !amount.is_zero() {
        Err(FieldError::new(
            field,
            "must not be negative (reversals carry a positive amount; the event name gives the sign)",
        ))
    } else {
        match Money::from_decimal(amount) {
            Ok(_) => Ok(()),
            Err(MoneyError::TooPrecise(_)) => Err(FieldError::new(
                field,
                format!("more than {} decimal places", crate::money::SCALE),
            )),
            Err(_) => Err(FieldError::new(
                field,
                format!("must be below {MAX_AMOUNT}"),
            )),
        }
    }
}

/// Checks an ISO-4217 currency code.
pub fn check_currency(code: &str) -> Result<(), FieldError> {
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        Err(FieldError::new(
            "currency",
            format!("{code:?} is not a three-letter upper-case ISO-4217 code"),
        ))
    } else if iso_currency::Currency::from_code(code).is_none() {
        Err(FieldError::new(
            "currency",
            format!("{code:?} is not an ISO-4217 currency"),
        ))
    } else {
        Ok(())
    }
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a complete event against the contract, reporting every offending field.
pub fn validate(e: &TrackingEvent) -> Result<(), ValidationErrors> {
    let mut r = Report::default();
    check_fields(&mut r, e);
    check_conversion_link(&mut r, e);
    r.finish()
}

/// Every check that does not depend on the event name.
pub(crate) fn check_fields(r: &mut Report, e: &TrackingEvent) {
    check_id(r, "event_id", &e.event_id);

    check_time(r, "received_at", e.received_at, DateTime::<Utc>::MAX_UTC);
    check_time(
        r,
        "occurred_at",
        e.occurred_at,
        e.received_at + MAX_FUTURE_SKEW,
    );
    if let Some(t) = e.settled_at {
        check_time(r, "settled_at", t, e.received_at + Duration::days(400));
    }

    if e.network.is_empty()
        || e.network.len() > 32
        || !e
            .network
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        r.push("network", "must be 1-32 characters of a-z, 0-9 and _");
    }

    for (field, value) in [
        ("order_id", &e.order_id),
        ("transaction_id", &e.transaction_id),
        ("parent_order_id", &e.parent_order_id),
        ("lead_id", &e.lead_id),
        ("click_id", &e.click_id),
        ("affiliate_id", &e.affiliate_id),
        ("campaign_id", &e.campaign_id),
        ("offer_id", &e.offer_id),
    ] {
        check_opt_id(r, field, value);
    }
    for (field, value) in [
        ("occurred_at_original", &e.occurred_at_original),
        ("source_timezone", &e.source_timezone),
        ("native_event_type", &e.native_event_type),
        ("source", &e.source),
        ("placement", &e.placement),
        ("utm_source", &e.utm_source),
        ("utm_medium", &e.utm_medium),
        ("utm_campaign", &e.utm_campaign),
        ("utm_term", &e.utm_term),
        ("utm_content", &e.utm_content),
        ("sub1", &e.sub1),
        ("sub2", &e.sub2),
        ("sub3", &e.sub3),
        ("sub4", &e.sub4),
        ("sub5", &e.sub5),
    ] {
        check_text(r, field, value, MAX_TEXT_LEN);
    }
    check_text(r, "user_agent", &e.user_agent, MAX_USER_AGENT_LEN);

    for (field, amount) in [("revenue", e.revenue), ("payout", e.payout)] {
        if let Some(a) = amount {
            if let Err(err) = check_amount(field, a) {
                r.0.push(err);
            }
        }
    }
    match &e.currency {
        Some(code) => {
            if let Err(err) = check_currency(code) {
                r.0.push(err);
            }
        }
        None if e.revenue.is_some() || e.payout.is_some() => {
            r.push("currency", "required when revenue or payout is given")
        }
        None => {}
    }

    if matches!(e.rebill_sequence, Some(n) if n < 1) {
        r.push("rebill_sequence", "must be 1 or more");
    }
    if matches!(e.delivery_attempt, Some(n) if n < 0) {
        r.push("delivery_attempt", "must not be negative");
    }
    for (field, value) in [("ip_hash", &e.ip_hash), ("email_hash", &e.email_hash)] {
        if matches!(value, Some(h) if !is_hex_digest(h)) {
            r.push(
                field,
                "must be a lower-case hex HMAC-SHA256 digest (64 characters)",
            );
        }
    }
    if e.route.is_empty() || e.route.len() > MAX_ID_LEN {
        r.push("route", format!("must be 1-{MAX_ID_LEN} bytes"));
    }
    if e.data_minimization.len() > MAX_ATTRIBUTES
        || e.data_minimization.iter().any(|s| s.len() > 64)
    {
        r.push(
            "data_minimization",
            format!("at most {MAX_ATTRIBUTES} entries of at most 64 bytes"),
        );
    }
    if e.attributes.len() > MAX_ATTRIBUTES {
        r.push("attributes", format!("more than {MAX_ATTRIBUTES} entries"));
    }
    check_quality_flags(r, e);
    check_ad_matching(r, e);
    for (k, v) in &e.attributes {
        if k.is_empty() || k.len() > 64 || !k.chars().all(is_id_char) {
            r.push(
                format!("attributes.{k}"),
                "key must be 1-64 characters of letters, digits and - _ . : ~",
            );
        } else if v.len() > MAX_TEXT_LEN {
            r.push(
                format!("attributes.{k}"),
                format!("longer than {MAX_TEXT_LEN} bytes"),
            );
        }
    }
}

/// Match keys are SHA-256 digests; platform IDs are the platforms' URL-safe tokens.
fn check_ad_matching(r: &mut Report, e: &TrackingEvent) {
    if let Some(k) = &e.match_keys {
        for (field, value) in [
            ("match_keys.email_sha256", &k.email_sha256),
            ("match_keys.phone_sha256", &k.phone_sha256),
            ("match_keys.phone_digits_sha256", &k.phone_digits_sha256),
        ] {
            if matches!(value, Some(h) if !is_hex_digest(h)) {
                r.push(
                    field,
                    "must be a lower-case hex SHA-256 digest (64 characters)",
                );
            }
        }
    }
    if let Some(ids) = &e.platform_ids {
        let mut ids = ids.clone();
        for name in crate::matching::PlatformIds::FIELDS {
            if let Some(Some(value)) = ids.slot(name).map(|v| v.as_deref()) {
                if !crate::matching::valid_platform_id(value) {
                    r.push(
                        format!("platform_ids.{name}"),
                        "must be 1-512 visible ASCII characters",
                    );
                }
            }
        }
    }
}

fn check_quality_flags(r: &mut Report, e: &TrackingEvent) {
    if e.quality_flags.is_empty() {
        return;
    }
    if e.event_name != EventName::Click {
        r.push("quality_flags", "only a CLICK carries quality flags");
        return;
    }
    for (i, flag) in e.quality_flags.iter().enumerate() {
        if !crate::quality::is_event_flag(flag) {
            let shown: String = flag.chars().take(64).collect();
            r.push(
                "quality_flags",
                format!(
                    "unknown flag {shown:?}; an event may carry {}",
                    crate::quality::EVENT_FLAGS.join(", ")
                ),
            );
        } else if e.quality_flags[..i].contains(flag) {
            r.push("quality_flags", format!("{flag} is repeated"));
        }
    }
}

/// Every event must name the conversion it belongs to, so that it has a partition key and
/// the processor can link it.
pub(crate) fn check_conversion_link(r: &mut Report, e: &TrackingEvent) {
    match e.event_name {
        EventName::Click if e.click_id.is_none() => r.push("click_id", "required for CLICK"),
        EventName::Lead
        | EventName::QualifiedLead
        | EventName::ApprovedLead
        | EventName::RejectedLead
            if e.lead_id.is_none() && e.order_id.is_none() =>
        {
            r.push("lead_id", format!("required for {}", e.event_name))
        }
        EventName::Sale | EventName::Refund | EventName::Chargeback | EventName::Canceled
            if e.order_id.is_none() =>
        {
            r.push("order_id", format!("required for {}", e.event_name))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;
    use std::str::FromStr;

    fn errors(e: &TrackingEvent) -> Vec<String> {
        validate(e)
            .unwrap_err()
            .0
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn sample_events_are_valid() {
        for e in samples::all() {
            validate(&e).unwrap_or_else(|err| panic!("{}: {err}", e.event_id));
        }
    }

    #[test]
    fn missing_event_id_is_named() {
        let mut e = samples::sale();
        e.event_id.clear();
        assert_eq!(errors(&e), ["event_id"]);
        assert_eq!(validate(&e).unwrap_err().0[0].reason, "must not be empty");
    }

    #[test]
    fn every_offending_field_is_reported_at_once() {
        let mut e = samples::sale();
        e.currency = Some("usd".into());
        e.revenue = Some(Decimal::from_str("-1").unwrap());
        e.payout = Some(Decimal::from_str("0.0000001").unwrap());
        e.sub3 = Some("x".repeat(MAX_TEXT_LEN + 1));
        e.occurred_at = e.received_at + Duration::hours(2);
        assert_eq!(
            errors(&e),
            ["occurred_at", "sub3", "revenue", "payout", "currency"]
        );
    }

    #[test]
    fn unknown_currency_and_missing_currency() {
        let mut e = samples::sale();
        e.currency = Some("XYZ".into());
        assert_eq!(
            validate(&e).unwrap_err().0[0].reason,
            "\"XYZ\" is not an ISO-4217 currency"
        );
        e.currency = None;
        assert_eq!(errors(&e), ["currency"]);
    }

    #[test]
    fn timestamps_before_2000_are_out_of_range() {
        let mut e = samples::sale();
        e.occurred_at = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(errors(&e), ["occurred_at"]);
    }

    #[test]
    fn reversals_need_the_order_they_reverse() {
        let mut e = samples::refund();
        e.order_id = None;
        assert_eq!(errors(&e), ["order_id"]);
    }

    #[test]
    fn ids_reject_spaces_and_oversize() {
        let mut e = samples::sale();
        e.order_id = Some("has space".into());
        e.click_id = Some("c".repeat(MAX_ID_LEN + 1));
        assert_eq!(errors(&e), ["order_id", "click_id"]);
    }

    #[test]
    fn pii_hashes_must_be_digests() {
        let mut e = samples::sale();
        e.email_hash = Some("someone@example.com".into());
        assert_eq!(errors(&e), ["email_hash"]);
    }
}
