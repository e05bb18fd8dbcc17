//! When to try a failed postback again, and when to give up.
//!
//! Back-off doubles from `initial` up to `max`, with equal jitter (half of it fixed, half
//! random) so that a destination's failures do not come back in lock-step; a `Retry-After`
//! longer than that wins. A postback is given up (dead-lettered) after `max_attempts`, or
//! when its next attempt would fall after `max_age` from the event: Meta, for one, refuses
//! events older than 7 days, and retrying them is pointless.

use std::time::Duration;

use chrono::{DateTime, Utc};
use schemas::destinations::Destination;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
    pub max_age: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    RetryAt(DateTime<Utc>),
    GiveUp(String),
}

impl RetryPolicy {
    /// A destination's policy, from its file settings.
    pub fn of(d: &Destination) -> Self {
        RetryPolicy {
            max_attempts: d.max_attempts,
            initial: Duration::from_millis(d.backoff_initial_ms),
            max: Duration::from_millis(d.backoff_max_ms),
            max_age: Duration::from_secs(d.max_age_hours * 3_600),
        }
    }

    /// The pause after failed attempt number `attempt` (1-based), for a jitter draw
    /// `u` in `[0, 1)`.
    pub fn backoff(&self, attempt: u32, u: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(32);
        let base = self
            .initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(self.max);
        base / 2 + base.mul_f64(u.clamp(0.0, 1.0) / 2.0)
    }

    /// Whether the event is already too old to send at all.
    pub fn too_old(&self, occurred_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        now.signed_duration_since(occurred_at)
            .to_std()
            .is_ok_and(|age| age > self.max_age)
    }

    /// What follows failed attempt number `attempt` of an event that occurred at
    /// `occurred_at`.
    pub fn after_failure(
        &self,
        attempt: u32,
        occurred_at: DateTime<Utc>,
        now: DateTime<Utc>,
        retry_after: Option<Duration>,
        u: f64,
    ) -> Next {
        if attempt >= self.max_attempts {
            return Next::GiveUp(format!("gave up after {attempt} attempts"));
        }
        let pause = self
            .backoff(attempt, u)
            .max(retry_after.unwrap_or_default());
        let at = now + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::MAX);
        if self.too_old(occurred_at, at) {
            return Next::GiveUp(format!(
                "the event would be older than the destination's max age ({} h) at the next attempt",
                self.max_age.as_secs() / 3_600
            ));
        }
        Next::RetryAt(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            max_age: Duration::from_secs(3_600),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let p = policy();
        assert_eq!(p.backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(
            p.backoff(1, 0.999_999),
            Duration::from_micros(999_999) + Duration::from_nanos(500)
        );
        assert_eq!(p.backoff(2, 0.0), Duration::from_secs(1));
        assert_eq!(p.backoff(3, 0.5), Duration::from_secs(3));
        assert_eq!(p.backoff(9, 0.0), Duration::from_secs(5));
        assert_eq!(p.backoff(200, 1.0), Duration::from_secs(10));
    }

    #[test]
    fn retry_after_wins_and_limits_give_up() {
        let p = policy();
        let now = Utc::now();
        assert_eq!(
            p.after_failure(1, now, now, Some(Duration::from_secs(30)), 0.0),
            Next::RetryAt(now + chrono::Duration::seconds(30))
        );
        assert_eq!(
            p.after_failure(2, now, now, None, 0.0),
            Next::RetryAt(now + chrono::Duration::seconds(1))
        );
        assert!(
            matches!(p.after_failure(5, now, now, None, 0.0), Next::GiveUp(r) if r.contains("5 attempts"))
        );
        // 0.2 s short of the max age now, 0.3 s past it at the next attempt (0.5 s away).
        let old = now - chrono::Duration::milliseconds(3_599_800);
        assert!(
            matches!(p.after_failure(1, old, now, None, 0.0), Next::GiveUp(r) if r.contains("max age"))
        );
        assert!(p.too_old(now - chrono::Duration::hours(2), now));
        assert!(!p.too_old(now, now));
    }
}
