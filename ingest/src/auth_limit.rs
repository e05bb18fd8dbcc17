//! The failed-authentication limiter: failures are counted per client (a keyed GCRA limiter
//! from `governor`); a client past the configured rate is answered 429 before any of its
//! requests reaches a secret, until its allowance refills. Successful requests are never
//! counted, so a network that authenticates is never slowed down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys kept before forgotten ones are swept from memory.
const SWEEP_AT: usize = 10_000;

pub struct AuthFailureLimiter {
    failures: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Clients over the rate, and until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// One client: an IPv4 address, or an IPv6 /64, which one subscriber usually holds whole.
fn client_key(ip: IpAddr) -> IpAddr {
    match crate::client_ip::canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

impl AuthFailureLimiter {
    /// Allows `per_minute` failures a minute per client, in a burst too; 0 turns it off.
    pub fn new(per_minute: u32) -> Self {
        Self {
            failures: NonZeroU32::new(per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))),
            blocked: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must wait before trying again, if it is over the rate now.
    pub fn retry_after(&self, ip: IpAddr) -> Option<Duration> {
        let key = client_key(ip);
        let mut blocked = self.blocked.lock().expect("not poisoned");
        let until = *blocked.get(&key)?;
        let now = Instant::now();
        if until > now {
            Some(until - now)
        } else {
            blocked.remove(&key);
            None
        }
    }

    /// Counts one failed authentication of `ip`; returns whether it is now over the rate.
    pub fn record_failure(&self, ip: IpAddr) -> bool {
        let Some(failures) = &self.failures else {
            return false;
        };
        let key = client_key(ip);
        let over = match failures.check_key(&key) {
            Ok(()) => return false,
            Err(not_until) => not_until.wait_time_from(DefaultClock::default().now()),
        };
        let mut blocked = self.blocked.lock().expect("not poisoned");
        let now = Instant::now();
        if blocked.len() >= SWEEP_AT {
            blocked.retain(|_, until| *until > now);
        }
        blocked.insert(key, now + over);
        drop(blocked);
        if failures.len() >= SWEEP_AT {
            failures.retain_recent();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_the_rate_waits_and_others_do_not() {
        let limiter = AuthFailureLimiter::new(3);
        let (a, b): (IpAddr, IpAddr) = (
            "198.51.100.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        assert!(!limiter.record_failure(a));
        assert!(!limiter.record_failure(a));
        assert!(!limiter.record_failure(a));
        assert_eq!(limiter.retry_after(a), None);
        assert!(limiter.record_failure(a));
        let wait = limiter.retry_after(a).expect("blocked");
        // 3 a minute: one more failure is allowed 20 s after the burst.
        assert!(
            wait > Duration::from_secs(15) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert_eq!(limiter.retry_after(b), None);
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let limiter = AuthFailureLimiter::new(1);
        limiter.record_failure("2001:db8:1:2::1".parse().unwrap());
        assert!(limiter.record_failure("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert!(limiter
            .retry_after("2001:db8:1:2::77".parse().unwrap())
            .is_some());
        assert!(limiter
            .retry_after("2001:db8:1:3::1".parse().unwrap())
            .is_none());
    }

    #[test]
    fn zero_turns_it_off() {
        let limiter = AuthFailureLimiter::new(0);
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..100 {
            assert!(!limiter.record_failure(ip));
        }
        assert_eq!(limiter.retry_after(ip), None);
    }
}
