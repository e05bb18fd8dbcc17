//! Offers for the click redirect, from a TOML file:
//!
//! ```toml
//! [offers.keto-vsl]
//! url = "https://offer.example/lp?cid={click_id}&s1={sub1}"
//! ```
//!
//! Macros: the event macros of `schemas::template` (`{click_id}`, `{offer_id}`,
//! `{affiliate_id}`, `{campaign_id}`, `{source}`, `{placement}`, `{utm_*}`, `{sub1}` ...
//! `{sub5}`, ...). Values are URL-encoded; an absent value becomes empty; an unknown macro
//! is refused when the file is loaded.

use std::collections::HashMap;
use std::path::Path;

use schemas::template::{check_url_template, event_macro, fill};
use schemas::TrackingEvent;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Offer {
    /// Landing URL template.
    pub url: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Offers {
    #[serde(default)]
    offers: HashMap<String, Offer>,
}

impl Offers {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the offers file {}: {e} (set INGEST_OFFERS_FILE)",
                path.display()
            )
        })?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let offers: Offers = toml::from_str(text).map_err(|e| e.to_string())?;
        for (id, offer) in &offers.offers {
            check_url_template(&offer.url).map_err(|e| format!("offer {id}: {e}"))?;
            let probe = schemas::samples::click();
            fill(&offer.url, |name| event_macro(&probe, name))
                .map_err(|e| format!("offer {id}: {e}"))?;
        }
        Ok(offers)
    }

    pub fn get(&self, id: &str) -> Option<&Offer> {
        self.offers.get(id)
    }
}

impl Offer {
    /// The landing URL for one click, macros filled in and URL-encoded.
    pub fn landing_url(&self, click: &TrackingEvent) -> String {
        // The template was checked at load, so every macro is known.
        fill(&self.url, |name| event_macro(click, name)).unwrap_or_else(|_| self.url.clone())
    }
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
        let mut click = schemas::samples::click();
        click.sub1 = Some("a b&c".into());
        assert_eq!(
            offers.get("k").unwrap().landing_url(&click),
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
}
