//! The postback destinations file (`config/destinations.toml`, TOML, one `[[destination]]`
//! table each), read the same way by the processor (which routes ledger entries to
//! destinations) and the forwarder (which sends them): one model, one parse, one set of
//! checks, so that the two services can never disagree about the same file.
//!
//! ```toml
//! [[destination]]
//! name = "tracker"
//! kind = "s2s"                                  # s2s | webhook | meta_capi | tiktok | ga4
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
//! require_match_keys = false                     # true: skip entries without match keys
//! pixel_code = "C4ABCDEF"                       # tiktok: the pixel (event_source_id)
//! ```

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::event::EventName;
use crate::ledger::{ConversionStatus, LedgerEntry};
use crate::template::{check_url_template, fill, ledger_macro};

/// How a destination is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// GET on a URL template filled from the ledger entry.
    S2s,
    /// POST of the ledger entry as JSON.
    Webhook,
    /// Meta's Conversions API.
    MetaCapi,
    /// TikTok's Events API (`event/track`).
    Tiktok,
    /// Google Analytics 4's Measurement Protocol.
    Ga4,
    /// Google Ads' offline click-conversion upload and conversion adjustments.
    GoogleAds,
}

impl Kind {
    /// Whether a destination of this kind can send an event of this name.
    pub fn accepts(self, name: EventName) -> bool {
        match self {
            // Meta has events for sales and leads, not for reversals.
            Kind::MetaCapi => matches!(
                name,
                EventName::Sale
                    | EventName::Lead
                    | EventName::QualifiedLead
                    | EventName::ApprovedLead
            ),
            // TikTok's standard events: CompletePayment and SubmitForm.
            Kind::Tiktok => matches!(name, EventName::Sale | EventName::Lead),
            // GA4's purchase, and its refund for a refund or a chargeback.
            Kind::Ga4 => matches!(
                name,
                EventName::Sale | EventName::Refund | EventName::Chargeback
            ),
            // Uploads of sales and leads; refunds and chargebacks as adjustments.
            Kind::GoogleAds => matches!(
                name,
                EventName::Sale | EventName::Lead | EventName::Refund | EventName::Chargeback
            ),
            Kind::S2s | Kind::Webhook => true,
        }
    }

    /// Whether this kind sends the ad platforms' click and browser IDs (`platform_ids`), and
    /// so wants a conversion to carry its click's.
    pub fn uses_platform_ids(self) -> bool {
        matches!(
            self,
            Kind::MetaCapi | Kind::Tiktok | Kind::Ga4 | Kind::GoogleAds
        )
    }

    /// What [`Kind::accepts`] takes, in words.
    pub fn accepted(self) -> &'static str {
        match self {
            Kind::MetaCapi => "SALE, LEAD, QUALIFIED_LEAD and APPROVED_LEAD",
            Kind::Tiktok => "SALE and LEAD",
            Kind::Ga4 => "SALE, REFUND and CHARGEBACK",
            Kind::GoogleAds => "SALE, LEAD, REFUND and CHARGEBACK",
            Kind::S2s | Kind::Webhook => "every event",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::S2s => "s2s",
            Kind::Webhook => "webhook",
            Kind::MetaCapi => "meta_capi",
            Kind::Tiktok => "tiktok",
            Kind::Ga4 => "ga4",
            Kind::GoogleAds => "google_ads",
        }
    }
}

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
    pub kind: Kind,
    pub url: String,
    /// Event names the destination receives; required, so that nothing floods it by default.
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
    /// Only entries whose event carries `match_keys` (consent for ad use, and an e-mail or
    /// phone) go to the destination; the others are not enqueued for it at all.
    #[serde(default)]
    pub require_match_keys: bool,
    /// `tiktok`: the pixel code the events belong to (`event_source_id`).
    #[serde(default)]
    pub pixel_code: Option<String>,
    /// `google_ads` (required there): its `[destination.google_ads]` table.
    #[serde(default)]
    pub google_ads: Option<GoogleAdsSettings>,
}

/// A `google_ads` destination's own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleAdsSettings {
    /// The account the conversions belong to: ten digits, no dashes.
    pub customer_id: Option<String>,
    /// The conversion action's ID (digits) in that account.
    pub conversion_action_id: Option<String>,
    /// The manager account the credentials act through, if any (`login-customer-id`).
    pub login_customer_id: Option<String>,
    /// The variable holding the developer token.
    pub developer_token_env: Option<String>,
    /// The OAuth client's ID (not a secret).
    pub oauth_client_id: Option<String>,
    /// The variable holding the OAuth client secret.
    pub oauth_client_secret_env: Option<String>,
    /// The variable holding the OAuth refresh token.
    pub oauth_refresh_token_env: Option<String>,
    /// Google's token endpoint.
    #[serde(default = "default_token_url")]
    pub oauth_token_url: String,
}

fn default_token_url() -> String {
    "https://oauth2.googleapis.com/token".into()
}

impl Destination {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Whether an event of this name, offer and test flag goes to the destination.
    pub fn takes(&self, name: EventName, offer: Option<&str>, is_test: bool) -> bool {
        self.events.contains(&name)
            && (self.include_test || !is_test)
            && (self.offers.is_empty() || offer.is_some_and(|o| self.offers.iter().any(|x| x == o)))
    }

    /// Whether the entry goes to the destination.
    pub fn matches(&self, entry: &LedgerEntry) -> bool {
        let e = &entry.event;
        self.takes(e.event_name, e.offer_id.as_deref(), e.is_test)
            && (!self.require_match_keys || e.match_keys.is_some())
            // GA4 attributes an event only to its client ID: without one it is not sent.
            && (self.kind != Kind::Ga4
                || e.platform_ids.as_ref().is_some_and(|p| p.ga_client_id.is_some()))
            // Google Ads uploads by click ID and adjusts by order ID.
            && (self.kind != Kind::GoogleAds || google_ads_can_take(entry))
    }

    /// Every rule a destination must follow, whichever service reads it.
    fn check(&self) -> Result<(), String> {
        if self.events.is_empty() {
            return Err("lists no events".into());
        }
        check_url_template(&self.url)?;
        if self.max_attempts < 1 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.backoff_initial_ms < 1 || self.backoff_initial_ms > self.backoff_max_ms {
            return Err("backoff_initial_ms must be between 1 and backoff_max_ms".into());
        }
        if let Some(name) = self.events.iter().find(|n| !self.kind.accepts(**n)) {
            return Err(format!(
                "{} takes {}, not {name}",
                self.kind.as_str(),
                self.kind.accepted()
            ));
        }
        match self.kind {
            Kind::S2s => {
                let probe = LedgerEntry::opening(
                    crate::samples::sale(),
                    ConversionStatus::Sold,
                    chrono::Utc::now(),
                )
                .expect("the sample sale's amounts fit");
                fill(&self.url, |n| ledger_macro(&probe, n)).map_err(|e| e.to_string())?;
            }
            Kind::MetaCapi | Kind::Tiktok if self.access_token_env.is_none() => {
                return Err(format!(
                    "{} needs access_token_env, the variable that holds the token",
                    self.kind.as_str()
                ))
            }
            Kind::Ga4 if self.access_token_env.is_none() => {
                return Err(
                    "ga4 needs access_token_env, the variable that holds the API secret".into(),
                )
            }
            Kind::Ga4 if !self.url.contains("measurement_id=") => {
                return Err("ga4's url needs its measurement_id=G-... query parameter".into())
            }
            Kind::Tiktok if self.pixel_code.as_deref().is_none_or(str::is_empty) => {
                return Err("tiktok needs pixel_code, the pixel the events belong to".into())
            }
            Kind::GoogleAds => match &self.google_ads {
                Some(settings) => settings.check()?,
                None => return Err("google_ads needs its [destination.google_ads] table".into()),
            },
            Kind::MetaCapi | Kind::Tiktok | Kind::Ga4 | Kind::Webhook => {}
        }
        Ok(())
    }
}

/// Whether a Google Ads destination can take `entry`: an upload needs one of the click IDs
/// (`gclid`, `gbraid`, `wbraid`), an adjustment the order ID it was uploaded under.
fn google_ads_can_take(entry: &LedgerEntry) -> bool {
    let e = &entry.event;
    if e.event_name.is_reversal() {
        return e.order_id.is_some();
    }
    e.platform_ids
        .as_ref()
        .is_some_and(|p| p.gclid.is_some() || p.gbraid.is_some() || p.wbraid.is_some())
}

impl GoogleAdsSettings {
    fn check(&self) -> Result<(), String> {
        let digits = |field: &str, value: &Option<String>, required: bool| match value {
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
            Some(_) => Err(format!(
                "google_ads: {field} must be digits only (no dashes)"
            )),
            None if required => Err(format!("google_ads needs {field}")),
            None => Ok(()),
        };
        digits("customer_id", &self.customer_id, true)?;
        digits("conversion_action_id", &self.conversion_action_id, true)?;
        digits("login_customer_id", &self.login_customer_id, false)?;
        for (field, value) in [
            ("developer_token_env", &self.developer_token_env),
            ("oauth_client_id", &self.oauth_client_id),
            ("oauth_client_secret_env", &self.oauth_client_secret_env),
            ("oauth_refresh_token_env", &self.oauth_refresh_token_env),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(format!("google_ads needs {field}"));
            }
        }
        if !self.oauth_token_url.starts_with("https://")
            && !self.oauth_token_url.starts_with("http://")
        {
            return Err("google_ads: oauth_token_url must be an http(s) URL".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DestinationsError(String);

#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    destination: Vec<Destination>,
}

/// Every configured destination, checked.
#[derive(Debug, Clone, Default)]
pub struct Destinations(Vec<Destination>);

impl Destinations {
    pub fn parse(text: &str) -> Result<Self, DestinationsError> {
        let file: File = toml::from_str(text).map_err(|e| DestinationsError(e.to_string()))?;
        let mut names = HashSet::new();
        for d in &file.destination {
            let name = &d.name;
            if name.is_empty() {
                return Err(DestinationsError("a destination has an empty name".into()));
            }
            if !names.insert(name) {
                return Err(DestinationsError(format!(
                    "destination {name:?} is listed twice"
                )));
            }
            d.check()
                .map_err(|e| DestinationsError(format!("destination {name:?}: {e}")))?;
        }
        Ok(Self(file.destination))
    }

    pub fn load(path: &Path) -> Result<Self, DestinationsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DestinationsError(format!("reading {}: {e}", path.display())))?;
        Self::parse(&text).map_err(|e| DestinationsError(format!("in {}: {e}", path.display())))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Destination> {
        self.0.iter()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|d| d.name.as_str())
    }

    /// The destinations an event of this name, offer and test flag is forwarded to.
    pub fn routes_for<'a>(
        &'a self,
        name: EventName,
        offer: Option<&'a str>,
        is_test: bool,
    ) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |d| d.takes(name, offer, is_test))
            .map(|d| d.name.as_str())
    }
}

impl IntoIterator for Destinations {
    type Item = Destination;
    type IntoIter = std::vec::IntoIter<Destination>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../config/destinations.toml");

    #[test]
    fn the_shipped_file_parses_with_defaults() {
        let all = Destinations::parse(SAMPLE).unwrap();
        assert_eq!(
            all.names().collect::<Vec<_>>(),
            ["tracker", "webhook", "meta-capi"]
        );
        let tracker = all.iter().find(|d| d.kind == Kind::S2s).unwrap();
        assert!(tracker.max_attempts >= 1);
        let webhook = all.iter().find(|d| d.kind == Kind::Webhook).unwrap();
        assert_eq!(webhook.timeout_ms, 10_000);
        assert_eq!(
            all.routes_for(EventName::Sale, Some("keto-vsl"), false)
                .collect::<Vec<_>>(),
            ["tracker", "webhook", "meta-capi"]
        );
        assert_eq!(
            all.routes_for(EventName::Refund, None, false)
                .collect::<Vec<_>>(),
            ["tracker", "webhook"]
        );
        assert_eq!(all.routes_for(EventName::Sale, None, true).count(), 0);
    }

    #[test]
    fn mistakes_are_refused_with_the_reason() {
        let base =
            "name='a'\nkind='s2s'\nurl='https://t.example/?id={event_id}'\nevents=['SALE']\n";
        let one = |extra: &str| Destinations::parse(&format!("[[destination]]\n{base}{extra}"));
        let err = |text: &str| Destinations::parse(text).unwrap_err().to_string();
        assert!(one("").is_ok());
        assert!(one("kind2='x'")
            .unwrap_err()
            .to_string()
            .contains("unknown field"));
        assert!(err(&format!("[[destination]]\n{base}[[destination]]\n{base}")).contains("twice"));
        assert!(
            err("[[destination]]\nname='a'\nkind='fax'\nurl='https://x'\nevents=['SALE']")
                .contains("unknown variant")
        );
        assert!(err("[[destination]]\nname='a'\nkind='s2s'\nurl='https://t.example/?x={nope}'\nevents=['SALE']").contains("unknown macro {nope}"));
        assert!(
            err("[[destination]]\nname='a'\nkind='s2s'\nurl='ftp://x'\nevents=['SALE']")
                .contains("http")
        );
        assert!(err(
            "[[destination]]\nname='a'\nkind='s2s'\nurl='https://{sub1}/pb'\nevents=['SALE']"
        )
        .contains("host part"));
        assert!(
            err("[[destination]]\nname='a'\nkind='s2s'\nurl='https://x'\nevents=[]")
                .contains("no events")
        );
        assert!(
            err("[[destination]]\nname='a'\nkind='s2s'\nurl='https://x'\nevents=['PURCHASE']")
                .contains("unknown variant")
        );
        assert!(one("max_attempts=0")
            .unwrap_err()
            .to_string()
            .contains("max_attempts"));
        assert!(one("backoff_initial_ms=5000\nbackoff_max_ms=10")
            .unwrap_err()
            .to_string()
            .contains("backoff"));
        // The forwarder needs kind and url, so the processor does not route without them.
        assert!(err("[[destination]]\nname='a'\nevents=['SALE']").contains("missing field"));
        let meta =
            "[[destination]]\nname='m'\nkind='meta_capi'\nurl='https://g.example/v19.0/1/events'\n";
        assert!(err(&format!("{meta}events=['SALE']")).contains("access_token_env"));
        assert!(
            err(&format!("{meta}access_token_env='T'\nevents=['REFUND']")).contains("not REFUND")
        );
        assert!(Destinations::parse(&format!(
            "{meta}access_token_env='T'\nevents=['SALE', 'LEAD']"
        ))
        .is_ok());
    }
}
