//! The destinations file (TOML, one `[[destination]]` table each), shared with the
//! processor, which reads only the routing fields (`name`, `events`, `offers`,
//! `include_test`).
//!
//! ```toml
//! [[destination]]
//! name = "tracker"
//! kind = "s2s"                                  # s2s | webhook | meta_capi
//! url = "https://t.example/pb?cid={click_id}&tx={event_id}&amount={revenue}&status={status}"
//! events = ["SALE", "REFUND", "CHARGEBACK"]
//! offers = ["keto-vsl"]                         # optional; every offer when absent
//! include_test = false
//! rate_per_second = 20                           # token bucket ...
//! burst = 10                                     # ... and its size
//! timeout_ms = 10000
//! max_attempts = 8
//! backoff_initial_ms = 1000                      # doubled each attempt, with jitter ...
//! backoff_max_ms = 600000                        # ... up to this
//! max_age_hours = 72                             # older postbacks go to the DLQ unsent
//! access_token_env = "META_ACCESS_TOKEN"         # meta_capi: the variable holding the token
//! ```

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use schemas::EventName;
use serde::Deserialize;

use crate::kinds::kind;
use crate::retry::RetryPolicy;

fn default_rate() -> NonZeroU32 {
    NonZeroU32::new(10).expect("non-zero")
}
fn default_burst() -> NonZeroU32 {
    NonZeroU32::new(10).expect("non-zero")
}
fn default_timeout_ms() -> u64 {
    10_000
}
fn default_max_attempts() -> u32 {
    8
}
fn default_backoff_initial_ms() -> u64 {
    1_000
}
fn default_backoff_max_ms() -> u64 {
    600_000
}
fn default_max_age_hours() -> u64 {
    72
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub name: String,
    pub kind: String,
    pub url: String,
    pub events: Vec<EventName>,
    #[serde(default)]
    pub offers: Vec<String>,
    #[serde(default)]
    pub include_test: bool,
    #[serde(default = "default_rate")]
    pub rate_per_second: NonZeroU32,
    #[serde(default = "default_burst")]
    pub burst: NonZeroU32,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u64,
    /// The environment variable that holds the destination's access token: secrets stay out
    /// of the file.
    #[serde(default)]
    pub access_token_env: Option<String>,
}

impl Destination {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial: Duration::from_millis(self.backoff_initial_ms),
            max: Duration::from_millis(self.backoff_max_ms),
            max_age: Duration::from_secs(self.max_age_hours * 3_600),
        }
    }
}

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    destination: Vec<Destination>,
}

/// Every configured destination, checked: known kind, URL, template macros, retry bounds.
pub fn parse(text: &str) -> anyhow::Result<Vec<Destination>> {
    let file: File = toml::from_str(text)?;
    let mut names = HashSet::new();
    for d in &file.destination {
        let name = &d.name;
        anyhow::ensure!(!name.is_empty(), "a destination has an empty name");
        anyhow::ensure!(names.insert(name), "destination {name:?} is listed twice");
        anyhow::ensure!(!d.events.is_empty(), "destination {name:?} lists no events");
        schemas::template::check_url_template(&d.url)
            .map_err(|e| anyhow::anyhow!("destination {name:?}: {e}"))?;
        anyhow::ensure!(
            d.max_attempts >= 1,
            "destination {name:?}: max_attempts must be at least 1"
        );
        anyhow::ensure!(
            d.backoff_initial_ms >= 1 && d.backoff_initial_ms <= d.backoff_max_ms,
            "destination {name:?}: backoff_initial_ms must be between 1 and backoff_max_ms"
        );
        let k = kind(&d.kind).with_context(|| {
            format!(
                "destination {name:?}: unknown kind {:?} (s2s, webhook, meta_capi)",
                d.kind
            )
        })?;
        k.check(d)
            .with_context(|| format!("destination {name:?}"))?;
    }
    Ok(file.destination)
}

pub fn load(path: &Path) -> anyhow::Result<Vec<Destination>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = include_str!("../../config/destinations.toml");

    #[test]
    fn the_sample_file_parses_with_defaults() {
        let all = parse(SAMPLE).unwrap();
        assert!(all.len() >= 3);
        let tracker = all.iter().find(|d| d.kind == "s2s").unwrap();
        assert!(tracker.max_attempts >= 1);
        assert_eq!(
            tracker.retry_policy().initial,
            Duration::from_millis(tracker.backoff_initial_ms)
        );
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let base =
            "name='a'\nkind='s2s'\nurl='https://t.example/?id={event_id}'\nevents=['SALE']\n";
        let one = |extra: &str| parse(&format!("[[destination]]\n{base}{extra}"));
        assert!(one("").is_ok());
        assert!(one("kind2='x'")
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        let err = |text: &str| format!("{:#}", parse(text).unwrap_err());
        assert!(err(&format!("[[destination]]\n{base}[[destination]]\n{base}")).contains("twice"));
        assert!(
            err("[[destination]]\nname='a'\nkind='fax'\nurl='https://x'\nevents=['SALE']")
                .contains("unknown kind")
        );
        assert!(err("[[destination]]\nname='a'\nkind='s2s'\nurl='https://t.example/?x={nope}'\nevents=['SALE']").contains("unknown macro {nope}"));
        assert!(
            err("[[destination]]\nname='a'\nkind='s2s'\nurl='ftp://x'\nevents=['SALE']")
                .contains("http")
        );
        assert!(err("[[destination]]\nname='a'\nkind='s2s'\nurl='https://x'\nevents=['SALE']\nmax_attempts=0").contains("max_attempts"));
        assert!(err("[[destination]]\nname='a'\nkind='s2s'\nurl='https://{sub1}/pb?id={event_id}'\nevents=['SALE']").contains("host part"));
        assert!(err("[[destination]]\nname='a'\nkind='webhook'\nurl='http://hooks.example{sub2}/x'\nevents=['SALE']").contains("host part"));
    }
}
