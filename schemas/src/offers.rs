//! The offers file (`config/offers.toml`), one place for what each service needs to know
//! about an offer: ingest its landing URL, the sink its attribution window.
//!
//! ```toml
//! [attribution]
//! window_days = 30           # offers without their own window; 30 when absent
//!
//! [offers.keto-vsl]
//! url = "https://offer.example/lp?cid={click_id}&s1={sub1}"
//! attribution_window_days = 7
//! ```
//!
//! URL macros: the event macros of `schemas::template` (`{click_id}`, `{offer_id}`,
//! `{affiliate_id}`, `{campaign_id}`, `{source}`, `{placement}`, `{utm_*}`, `{sub1}` ...
//! `{sub5}`, ...). Values are URL-encoded; an absent value becomes empty; an unknown macro,
//! like an unknown key, is refused when the file is loaded.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::template::{check_url_template, event_macro, fill};
use crate::TrackingEvent;

/// The window of offers that do not set theirs, when the file sets no default either.
pub const DEFAULT_ATTRIBUTION_WINDOW_DAYS: u32 = 30;
/// The longest window accepted: ten years.
pub const MAX_ATTRIBUTION_WINDOW_DAYS: u32 = 3650;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    /// Landing URL template of the click redirect; an offer without one has no redirect.
    #[serde(default)]
    pub url: Option<String>,
    /// Days after a click within which its conversion is credited to it.
    #[serde(default)]
    pub attribution_window_days: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attribution {
    #[serde(default = "default_window")]
    pub window_days: u32,
}

fn default_window() -> u32 {
    DEFAULT_ATTRIBUTION_WINDOW_DAYS
}

impl Default for Attribution {
    fn default() -> Self {
        Self {
            window_days: DEFAULT_ATTRIBUTION_WINDOW_DAYS,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offers {
    #[serde(default)]
    attribution: Attribution,
    #[serde(default)]
    offers: BTreeMap<String, Offer>,
}

fn check_window(days: u32, what: &str) -> Result<(), String> {
    if (1..=MAX_ATTRIBUTION_WINDOW_DAYS).contains(&days) {
        Ok(())
    } else {
        Err(format!(
            "{what}: {days} days is outside 1..={MAX_ATTRIBUTION_WINDOW_DAYS}"
        ))
    }
}

impl Offers {
    /// Reads the file; `setting` names the flag or variable that chose it, for the error.
    pub fn load(path: &Path, setting: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the offers file {}: {e} (set {setting})",
                path.display()
            )
        })?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let offers: Offers = toml::from_str(text).map_err(|e| e.to_string())?;
        check_window(offers.attribution.window_days, "[attribution] window_days")?;
        for (id, offer) in &offers.offers {
            if let Some(url) = &offer.url {
                check_url_template(url).map_err(|e| format!("offer {id}: {e}"))?;
                let probe = crate::samples::click();
                fill(url, |name| event_macro(&probe, name))
                    .map_err(|e| format!("offer {id}: {e}"))?;
            }
            if let Some(days) = offer.attribution_window_days {
                check_window(days, &format!("offer {id}: attribution_window_days"))?;
            }
        }
        Ok(offers)
    }

    /// The landing URL template of an offer that has one.
    pub fn landing(&self, id: &str) -> Option<&str> {
        self.offers.get(id)?.url.as_deref()
    }

    /// The window of offers without their own.
    pub fn default_window_days(&self) -> u32 {
        self.attribution.window_days
    }

    /// The offers that set their own window.
    pub fn windows(&self) -> impl Iterator<Item = (&str, u32)> {
        self.offers
            .iter()
            .filter_map(|(id, o)| Some((id.as_str(), o.attribution_window_days?)))
    }
}

/// The landing URL for one click: `template` with its macros filled in and URL-encoded.
pub fn landing_url(template: &str, click: &TrackingEvent) -> String {
    // The template was checked at load, so every macro is known.
    fill(template, |name| event_macro(click, name)).unwrap_or_else(|_| template.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros_are_filled_and_encoded() {
        let offers = Offers::parse(
            "[offers.k]\nurl = \"https://o.example/lp?cid={click_id}&s1={sub1}&s2={sub2}\"\n",
        )
        .unwrap();
        let mut click = crate::samples::click();
        click.sub1 = Some("a b&c".into());
        assert_eq!(
            landing_url(offers.landing("k").unwrap(), &click),
            "https://o.example/lp?cid=clk%5F01&s1=a%20b%26c&s2="
        );
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(Offers::parse("[offers.k]\nurl = \"javascript:alert(1)\"\n").is_err());
        let unknown = Offers::parse("[offers.k]\nurl = \"https://o.example/?x={clik_id}\"\n");
        assert!(unknown.unwrap_err().contains("unknown macro {clik_id}"));
        let host = Offers::parse("[offers.k]\nurl = \"https://{sub1}.o.example/lp\"\n");
        assert!(host.unwrap_err().contains("host part"));
    }

    #[test]
    fn windows_per_offer_with_a_default() {
        let offers = Offers::parse(
            "[attribution]\nwindow_days = 14\n[offers.a]\nattribution_window_days = 7\n[offers.b]\nurl = \"https://o.example/\"\n",
        )
        .unwrap();
        assert_eq!(offers.default_window_days(), 14);
        assert_eq!(offers.windows().collect::<Vec<_>>(), vec![("a", 7)]);
        assert_eq!(offers.landing("a"), None);
        assert_eq!(offers.landing("b"), Some("https://o.example/"));
        let none = Offers::parse("").unwrap();
        assert_eq!(none.default_window_days(), 30);
    }

    #[test]
    fn bad_windows_and_unknown_keys_are_refused() {
        let zero = Offers::parse("[offers.a]\nattribution_window_days = 0\n").unwrap_err();
        assert_eq!(
            zero,
            "offer a: attribution_window_days: 0 days is outside 1..=3650"
        );
        let typo = Offers::parse("[offers.a]\natribution_window_days = 7\n").unwrap_err();
        assert!(
            typo.contains("unknown field `atribution_window_days`"),
            "{typo}"
        );
        let default = Offers::parse("[attribution]\nwindow_days = 4000\n").unwrap_err();
        assert!(default.contains("[attribution] window_days"), "{default}");
    }
}
