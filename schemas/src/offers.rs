//! The offers file (`config/offers.toml`), one place for what each service needs to know
//! about an offer: ingest its landing URL, the sink its attribution window, the processor
//! its payout rules.
//!
//! ```toml
//! [attribution]
//! window_days = 30           # offers without their own window; 30 when absent
//!
//! [offers.keto-vsl]
//! url = "https://offer.example/lp?cid={click_id}&s1={sub1}"
//! attribution_window_days = 7
//!
//! [offers.keto-vsl.payout]   # when the event carries no payout of its own
//! revshare_percent = "40"    # or: cpa = "25.00" and currency = "USD"
//!
//! [offers.keto-vsl.payout.affiliates.aff-7]   # replaces the offer's rule for aff-7
//! cpa = "30.00"
//! currency = "USD"
//! ```
//!
//! URL macros: the event macros of `schemas::template` (`{click_id}`, `{offer_id}`,
//! `{affiliate_id}`, `{campaign_id}`, `{source}`, `{placement}`, `{utm_*}`, `{sub1}` ...
//! `{sub5}`, ...). Values are URL-encoded; an absent value becomes empty; an unknown macro,
//! like an unknown key, is refused when the file is loaded.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::money::{parse_decimal, Money};
use crate::template::{check_url_template, event_macro, fill};
use crate::TrackingEvent;

/// The window of offers that do not set theirs, when the file sets no default either.
pub const DEFAULT_ATTRIBUTION_WINDOW_DAYS: u32 = 30;
/// Where services look for the offers file when none is configured.
pub const DEFAULT_OFFERS_FILE: &str = "config/offers.toml";
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
    /// What the offer pays its affiliates where an event carries no payout of its own.
    #[serde(default)]
    pub payout: Option<PayoutFile>,
    /// A conversion sooner than this after its click is flagged too fast (0: never).
    #[serde(default)]
    pub min_conversion_seconds: Option<u32>,
}

/// A payout rule as written in the file: amounts as strings, so that they stay exact. An
/// offer's `payout` table is one, with its affiliates' rules under `affiliates` (no
/// serde(flatten): it would let unknown keys through).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayoutFile {
    #[serde(default)]
    pub cpa: Option<String>,
    #[serde(default)]
    pub revshare_percent: Option<String>,
    #[serde(default)]
    pub cpl: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub affiliates: BTreeMap<String, PayoutFile>,
}

/// What a sale or an approved lead pays when its event carries no payout: a fixed CPA per
/// first sale, or a share of each sale's revenue (rebills included), and a CPL per approved
/// lead. Fixed amounts are in `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRule {
    /// Where it comes from: `offer <id>`, or `offer <id>, affiliate <id>`.
    pub scope: String,
    pub sale: Option<SalePayout>,
    pub cpl: Option<Money>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SalePayout {
    Cpa(Money),
    /// Percent of the sale's revenue.
    Revshare(Decimal),
}

impl PayoutRule {
    fn from_file(scope: String, f: &PayoutFile) -> Result<Self, String> {
        let amount = |field: &str, text: &Option<String>| -> Result<Option<Money>, String> {
            let Some(text) = text else { return Ok(None) };
            let money: Money = text
                .parse()
                .map_err(|e| format!("{scope}: payout {field}: {e}"))?;
            if !money.is_positive() {
                return Err(format!("{scope}: payout {field}: {text} is not positive"));
            }
            Ok(Some(money))
        };
        let cpa = amount("cpa", &f.cpa)?;
        let cpl = amount("cpl", &f.cpl)?;
        let revshare = match &f.revshare_percent {
            None => None,
            Some(text) => {
                let p = parse_decimal(text)
                    .map_err(|e| format!("{scope}: payout revshare_percent: {e}"))?;
                if p <= Decimal::ZERO || p > Decimal::ONE_HUNDRED {
                    return Err(format!(
                        "{scope}: payout revshare_percent: {text} is outside (0, 100]"
                    ));
                }
                Some(p)
            }
        };
        let sale = match (cpa, revshare) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{scope}: payout has both cpa and revshare_percent; a sale pays one of them"
                ))
            }
            (Some(cpa), None) => Some(SalePayout::Cpa(cpa)),
            (None, Some(p)) => Some(SalePayout::Revshare(p)),
            (None, None) => None,
        };
        if sale.is_none() && cpl.is_none() {
            return Err(format!(
                "{scope}: payout sets none of cpa, revshare_percent and cpl"
            ));
        }
        let fixed = cpl.is_some() || matches!(sale, Some(SalePayout::Cpa(_)));
        if let Some(code) = &f.currency {
            crate::validate::check_currency(code)
                .map_err(|e| format!("{scope}: payout currency: {}", e.reason))?;
        } else if fixed {
            return Err(format!(
                "{scope}: payout cpa and cpl need the currency they are in (currency = \"USD\")"
            ));
        }
        Ok(Self {
            scope,
            sale,
            cpl,
            currency: f.currency.clone(),
        })
    }

    /// How the rule reads on a ledger entry: `offer keto, affiliate a7: cpa 30 USD`.
    pub fn describe(&self, what: &str) -> String {
        format!("{}: {what}", self.scope)
    }
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

/// Click-quality thresholds of the `[quality]` table, for the sink's views. 0 turns a
/// check off, which is every default: the right thresholds depend on the traffic (one IP can
/// be a carrier's NAT), so the operator sets them (docs/ANALYST_GUIDE.md#traffic-quality).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// More clicks than this from one IP hash within a minute are flagged FLOOD_IP.
    #[serde(default)]
    pub flood_clicks_per_minute_per_ip: u32,
    /// ... from one affiliate's sub1: FLOOD_SUB_ID.
    #[serde(default)]
    pub flood_clicks_per_minute_per_sub_id: u32,
    /// ... from one affiliate: FLOOD_AFFILIATE.
    #[serde(default)]
    pub flood_clicks_per_minute_per_affiliate: u32,
    /// A click this many seconds or less after one with the same IP hash, user agent and
    /// offer is flagged DUPLICATE_CLICK.
    #[serde(default)]
    pub duplicate_click_seconds: u32,
    /// Offers without their own `min_conversion_seconds` use this one.
    #[serde(default)]
    pub min_conversion_seconds: u32,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offers {
    #[serde(default)]
    attribution: Attribution,
    #[serde(default)]
    quality: Quality,
    #[serde(default)]
    offers: BTreeMap<String, Offer>,
    /// Checked payout rules: (offer, None) for the offer's, (offer, Some(affiliate)) for an
    /// affiliate's.
    #[serde(skip)]
    payouts: BTreeMap<(String, Option<String>), PayoutRule>,
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

    /// The file at `path`, or, without one, the file at [`DEFAULT_OFFERS_FILE`] if it exists,
    /// or else no offers (every default).
    pub fn load_or_default(path: Option<&Path>, setting: &str) -> Result<Self, String> {
        match path {
            Some(path) => Self::load(path, setting),
            None if Path::new(DEFAULT_OFFERS_FILE).exists() => {
                Self::load(Path::new(DEFAULT_OFFERS_FILE), setting)
            }
            None => Ok(Self::default()),
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut offers: Offers = toml::from_str(text).map_err(|e| e.to_string())?;
        for (id, offer) in &offers.offers {
            let Some(payout) = &offer.payout else {
                continue;
            };
            let has_own =
                payout.cpa.is_some() || payout.revshare_percent.is_some() || payout.cpl.is_some();
            if has_own || payout.affiliates.is_empty() {
                let rule = PayoutRule::from_file(format!("offer {id}"), payout)?;
                offers.payouts.insert((id.clone(), None), rule);
            }
            for (affiliate, f) in &payout.affiliates {
                let scope = format!("offer {id}, affiliate {affiliate}");
                if !f.affiliates.is_empty() {
                    return Err(format!("{scope}: an affiliate's payout has no affiliates"));
                }
                let rule = PayoutRule::from_file(scope, f)?;
                offers
                    .payouts
                    .insert((id.clone(), Some(affiliate.clone())), rule);
            }
        }
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

    /// The payout rule of an offer for an affiliate: the affiliate's own, else the offer's.
    pub fn payout_rule(&self, offer: &str, affiliate: Option<&str>) -> Option<&PayoutRule> {
        if let Some(affiliate) = affiliate {
            let own = self
                .payouts
                .get(&(offer.to_owned(), Some(affiliate.to_owned())));
            if own.is_some() {
                return own;
            }
        }
        self.payouts.get(&(offer.to_owned(), None))
    }

    /// How many payout rules the file sets.
    pub fn payout_rules(&self) -> usize {
        self.payouts.len()
    }

    /// The landing URL template of an offer that has one.
    pub fn landing(&self, id: &str) -> Option<&str> {
        self.offers.get(id)?.url.as_deref()
    }

    /// The window of offers without their own.
    pub fn default_window_days(&self) -> u32 {
        self.attribution.window_days
    }

    /// The click-quality thresholds.
    pub fn quality(&self) -> Quality {
        self.quality
    }

    /// The offers that set their own least click-to-conversion time.
    pub fn conversion_minimums(&self) -> impl Iterator<Item = (&str, u32)> {
        self.offers
            .iter()
            .filter_map(|(id, o)| Some((id.as_str(), o.min_conversion_seconds?)))
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
    fn quality_thresholds_default_to_off_and_unknown_ones_are_refused() {
        assert_eq!(Offers::parse("").unwrap().quality(), Quality::default());
        let offers = Offers::parse(
            "[quality]\nflood_clicks_per_minute_per_ip = 30\nduplicate_click_seconds = 10\n\
             min_conversion_seconds = 5\n[offers.k]\nmin_conversion_seconds = 60\n[offers.j]\n",
        )
        .unwrap();
        let q = offers.quality();
        assert_eq!(
            (
                q.flood_clicks_per_minute_per_ip,
                q.flood_clicks_per_minute_per_sub_id,
                q.duplicate_click_seconds,
                q.min_conversion_seconds
            ),
            (30, 0, 10, 5)
        );
        assert_eq!(
            offers.conversion_minimums().collect::<Vec<_>>(),
            [("k", 60)]
        );
        let typo = Offers::parse("[quality]\nflood_clicks_per_minute = 3\n").unwrap_err();
        assert!(
            typo.contains("unknown field `flood_clicks_per_minute`"),
            "{typo}"
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
    fn the_repository_offers_file_parses() {
        let offers = Offers::parse(include_str!("../../config/offers.toml")).unwrap();
        assert!(offers.landing("keto-vsl").is_some());
        assert_eq!(offers.default_window_days(), 30);
    }

    #[test]
    fn payout_rules_per_offer_and_affiliate() {
        let offers = Offers::parse(
            "[offers.k.payout]\nrevshare_percent = \"40\"\ncpl = \"2.50\"\ncurrency = \"USD\"\n\
             [offers.k.payout.affiliates.a7]\ncpa = \"30.00\"\ncurrency = \"EUR\"\n\
             [offers.only-aff.payout.affiliates.a1]\nrevshare_percent = \"12.5\"\n",
        )
        .unwrap();
        let k = offers.payout_rule("k", Some("a1")).unwrap();
        assert_eq!(k.scope, "offer k");
        assert_eq!(k.sale, Some(SalePayout::Revshare("40".parse().unwrap())));
        assert_eq!(k.cpl, Some("2.5".parse().unwrap()));
        let a7 = offers.payout_rule("k", Some("a7")).unwrap();
        assert_eq!(a7.scope, "offer k, affiliate a7");
        assert_eq!(a7.sale, Some(SalePayout::Cpa("30".parse().unwrap())));
        assert_eq!(a7.cpl, None);
        assert_eq!(a7.currency.as_deref(), Some("EUR"));
        assert_eq!(offers.payout_rule("k", None).unwrap().scope, "offer k");
        assert!(offers.payout_rule("only-aff", Some("a2")).is_none());
        assert!(offers.payout_rule("only-aff", Some("a1")).is_some());
        assert!(offers.payout_rule("none", Some("a1")).is_none());
        assert_eq!(offers.payout_rules(), 3);
    }

    #[test]
    fn bad_payout_rules_are_refused() {
        let cases = [
            (
                "cpa = \"10\"\nrevshare_percent = \"5\"\ncurrency = \"USD\"",
                "offer k: payout has both cpa and revshare_percent; a sale pays one of them",
            ),
            (
                "cpa = \"10\"",
                "offer k: payout cpa and cpl need the currency they are in (currency = \"USD\")",
            ),
            (
                "revshare_percent = \"120\"",
                "offer k: payout revshare_percent: 120 is outside (0, 100]",
            ),
            (
                "cpl = \"0\"\ncurrency = \"USD\"",
                "offer k: payout cpl: 0 is not positive",
            ),
            (
                "cpa = \"10\"\ncurrency = \"usd\"",
                "offer k: payout currency: \"usd\" is not a three-letter upper-case ISO-4217 code",
            ),
            (
                "currency = \"USD\"",
                "offer k: payout sets none of cpa, revshare_percent and cpl",
            ),
        ];
        for (body, reason) in cases {
            let err = Offers::parse(&format!("[offers.k.payout]\n{body}\n")).unwrap_err();
            assert_eq!(err, reason, "{body}");
        }
        let float =
            Offers::parse("[offers.k.payout]\ncpa = 10.5\ncurrency = \"USD\"\n").unwrap_err();
        assert!(float.contains("invalid type: floating point"), "{float}");
        let typo = Offers::parse("[offers.k.payout]\ncpaa = \"1\"\n").unwrap_err();
        assert!(typo.contains("unknown field `cpaa`"), "{typo}");
        let typo =
            Offers::parse("[offers.k.payout.affiliates.a]\ncpl = \"1\"\ncurency = \"USD\"\n")
                .unwrap_err();
        assert!(typo.contains("unknown field `curency`"), "{typo}");
        let nested = Offers::parse(
            "[offers.k.payout.affiliates.a]\ncpl = \"1\"\ncurrency = \"USD\"\n\
             [offers.k.payout.affiliates.a.affiliates.b]\ncpl = \"2\"\ncurrency = \"USD\"\n",
        )
        .unwrap_err();
        assert_eq!(
            nested,
            "offer k, affiliate a: an affiliate's payout has no affiliates"
        );
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
