//! How a destination's answer is classified.
//!
//! - 2xx: delivered.
//! - 408, 429 and 5xx, timeouts and connection errors: transient, retried on schedule;
//!   `Retry-After` (seconds or an HTTP date) is honoured.
//! - Any other answer: permanent, dead-lettered with the status and the start of the body.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::AttemptOutcome;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    Delivered,
    Transient { retry_after: Option<Duration> },
    Permanent,
}

impl Class {
    pub fn outcome(&self) -> AttemptOutcome {
        match self {
            Class::Delivered => AttemptOutcome::Delivered,
            Class::Transient { .. } => AttemptOutcome::TransientFailure,
            Class::Permanent => AttemptOutcome::PermanentFailure,
        }
    }
}

/// `Retry-After` as a pause from `now`: delta-seconds, or an HTTP date.
pub fn retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    at.with_timezone(&Utc)
        .signed_duration_since(now)
        .to_std()
        .ok()
        .or(Some(Duration::ZERO))
}

/// The class of an HTTP answer with `status` and its `Retry-After` header, if any.
pub fn classify(status: u16, retry_after_header: Option<&str>, now: DateTime<Utc>) -> Class {
    match status {
        200..=299 => Class::Delivered,
        408 | 429 | 500..=599 => Class::Transient {
            retry_after: retry_after_header.and_then(|v| retry_after(v, now)),
        },
        _ => Class::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_their_class() {
        let now = Utc::now();
        assert_eq!(classify(200, None, now), Class::Delivered);
        assert_eq!(classify(204, None, now), Class::Delivered);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(s, None, now), Class::Transient { .. }),
                "{s}"
            );
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert_eq!(classify(s, None, now), Class::Permanent, "{s}");
        }
        assert_eq!(
            classify(429, Some("7"), now),
            Class::Transient {
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = DateTime::parse_from_rfc2822("Tue, 24 Nov 2026 08:00:00 GMT")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Tue, 24 Nov 2026 08:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Tue, 24 Nov 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
