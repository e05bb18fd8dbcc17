//! Conversion caps: the caps file (TOML), the period a conversion counts in, and the records
//! of the capping stage's state changelog (`processor.caps.v1`), which `trackctl caps status`
//! reads too.
//!
//! ```toml
//! time_zone = "UTC"              # caps without their own; UTC when absent
//!
//! [[cap]]
//! id = "keto-daily"              # unique; letters, digits, `.`, `_`, `:`, `-`
//! offer_id = "keto-vsl"
//! affiliate_id = "aff-7"         # optional: a cap of this affiliate on the offer
//! period = "daily"               # daily | weekly (ISO, from Monday) | total
//! conversions = 100              # or: revenue = "5000.00" with currency = "USD"
//! event = "SALE"                 # the conversions it counts: SALE (default) or LEAD
//! time_zone = "America/New_York" # the zone of the cap's days and weeks
//! from = "2026-12-01T00:00:00Z"  # optional: in force for conversions from then ...
//! until = "2027-01-01T00:00:00Z" # ... and before then
//! reversal_frees_room = false    # a refund, chargeback or cancel gives the room back
//! ```
//!
//! A conversion counts in the period of its `occurred_at`, read in the cap's time zone.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::event::EventName;
use crate::money::Money;

/// The period label of a `total` cap.
pub const TOTAL_PERIOD: &str = "total";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Weekly,
    Total,
}

/// What a cap limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// A number of conversions.
    Conversions(i64),
    /// The conversions' revenue, in one currency: conversions in another are not counted.
    Revenue { amount: Money, currency: String },
}

impl Limit {
    /// The limit in the counter's unit: conversions, or micro-units of the currency.
    pub fn units(&self) -> i64 {
        match self {
            Limit::Conversions(n) => *n,
            Limit::Revenue { amount, .. } => amount.micros(),
        }
    }

    /// A counter value in words: `12` conversions or `350.5 USD`.
    pub fn describe(&self, units: i64) -> String {
        match self {
            Limit::Conversions(_) => units.to_string(),
            Limit::Revenue { currency, .. } => match Money::from_micros(units) {
                Ok(m) => format!("{m} {currency}"),
                Err(_) => format!("{units} micro-{currency}"),
            },
        }
    }
}

/// One checked cap.
#[derive(Debug, Clone, PartialEq)]
pub struct Cap {
    pub id: String,
    pub offer_id: String,
    pub affiliate_id: Option<String>,
    pub period: Period,
    pub limit: Limit,
    /// SALE or LEAD: the opening entries it counts.
    pub event: EventName,
    pub time_zone: Tz,
    pub from: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub reversal_frees_room: bool,
}

impl Cap {
    /// Whether a conversion of this offer, affiliate and kind, at this time, counts in it.
    pub fn applies(
        &self,
        offer_id: &str,
        affiliate_id: Option<&str>,
        event: EventName,
        occurred_at: DateTime<Utc>,
    ) -> bool {
        self.offer_id == offer_id
            && self
                .affiliate_id
                .as_deref()
                .is_none_or(|a| Some(a) == affiliate_id)
            && self.event == event
            && self.from.is_none_or(|from| occurred_at >= from)
            && self.until.is_none_or(|until| occurred_at < until)
    }

    /// The period a conversion at `occurred_at` counts in: its local date (`2026-11-28`), its
    /// ISO week (`2026-W48`), or `total`. Labels, not instants, so that a day is a day in
    /// its zone whatever daylight saving does to its length.
    pub fn period_of(&self, occurred_at: DateTime<Utc>) -> String {
        let local = occurred_at.with_timezone(&self.time_zone).date_naive();
        match self.period {
            Period::Daily => local.format("%Y-%m-%d").to_string(),
            Period::Weekly => {
                let week = local.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Period::Total => TOTAL_PERIOD.to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapsFile {
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default, rename = "cap")]
    caps: Vec<CapFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapFile {
    id: String,
    offer_id: String,
    #[serde(default)]
    affiliate_id: Option<String>,
    period: Period,
    #[serde(default)]
    conversions: Option<i64>,
    #[serde(default)]
    revenue: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    from: Option<DateTime<Utc>>,
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    #[serde(default)]
    reversal_frees_room: bool,
}

/// The caps of a caps file, checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Caps {
    caps: Vec<Cap>,
}

fn zone(name: &str, what: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("{what}: {name:?} is not an IANA time zone"))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

impl Caps {
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: CapsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let default_zone = match &file.time_zone {
            Some(z) => zone(z, "time_zone")?,
            None => Tz::UTC,
        };
        let mut ids = BTreeSet::new();
        let mut caps = Vec::with_capacity(file.caps.len());
        for f in file.caps {
            let scope = format!("cap {:?}", f.id);
            if !valid_id(&f.id) {
                return Err(format!(
                    "{scope}: an id is 1-128 letters, digits, '.', '_', ':' or '-'"
                ));
            }
            if !ids.insert(f.id.clone()) {
                return Err(format!("{scope}: a second cap with this id"));
            }
            if f.offer_id.is_empty() {
                return Err(format!("{scope}: offer_id is empty"));
            }
            let limit = match (f.conversions, &f.revenue, &f.currency) {
                (Some(n), None, None) if n >= 0 => Limit::Conversions(n),
                (Some(n), None, None) => {
                    return Err(format!("{scope}: conversions = {n} is negative"))
                }
                (None, Some(text), Some(currency)) => {
                    let amount: Money =
                        text.parse().map_err(|e| format!("{scope}: revenue: {e}"))?;
                    if amount < Money::ZERO {
                        return Err(format!("{scope}: revenue {text} is negative"));
                    }
                    if iso_currency::Currency::from_code(currency).is_none() {
                        return Err(format!(
                            "{scope}: currency {currency:?} is not an ISO 4217 code"
                        ));
                    }
                    Limit::Revenue {
                        amount,
                        currency: currency.clone(),
                    }
                }
                (None, Some(_), None) => {
                    return Err(format!("{scope}: a revenue cap needs its currency"))
                }
                _ => {
                    return Err(format!(
                        "{scope}: set either conversions, or revenue with currency"
                    ))
                }
            };
            let event = match f.event.as_deref() {
                None | Some("SALE") => EventName::Sale,
                Some("LEAD") => EventName::Lead,
                Some(other) => return Err(format!("{scope}: event {other:?} is not SALE or LEAD")),
            };
            let time_zone = match &f.time_zone {
                Some(z) => zone(z, &format!("{scope}: time_zone"))?,
                None => default_zone,
            };
            if let (Some(from), Some(until)) = (f.from, f.until) {
                if until <= from {
                    return Err(format!("{scope}: until is not after from"));
                }
            }
            caps.push(Cap {
                id: f.id,
                offer_id: f.offer_id,
                affiliate_id: f.affiliate_id,
                period: f.period,
                limit,
                event,
                time_zone,
                from: f.from,
                until: f.until,
                reversal_frees_room: f.reversal_frees_room,
            });
        }
        Ok(Caps { caps })
    }

    /// Reads the file; `setting` names the flag or variable that chose it, for the error.
    pub fn load(path: &Path, setting: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "cannot read the caps file {}: {e} (set {setting})",
                path.display()
            )
        })?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Cap> {
        self.caps.iter()
    }

    pub fn get(&self, id: &str) -> Option<&Cap> {
        self.caps.iter().find(|c| c.id == id)
    }

    /// Whether any cap, in force or not, names this offer: its conversions go through the
    /// capping stage.
    pub fn caps_offer(&self, offer_id: &str) -> bool {
        self.caps.iter().any(|c| c.offer_id == offer_id)
    }

    pub fn is_empty(&self) -> bool {
        self.caps.is_empty()
    }
}

/// One record of the capping stage's changelog, keyed so that compaction keeps the latest.
#[derive(Debug, Clone, PartialEq)]
pub enum CapRecord {
    /// How much of a cap one period has used (conversions, or micro-units of revenue).
    Usage {
        cap: String,
        period: String,
        value: Option<Usage>,
    },
    /// The decision on one conversion, for its later entries.
    Verdict {
        conversion_key: String,
        value: Option<Verdict>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub used: i64,
    /// When it last changed (ms); a daily or weekly period's usage expires a window after.
    pub touched_ms: i64,
}

/// What the capping stage decided for a conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The cap it was over; `None` when it counted.
    pub over_cap: Option<String>,
    /// Where it counted: (cap, period, units still counted).
    pub counted: Vec<(String, String, i64)>,
    pub decided_ms: i64,
}

const USAGE: u8 = b'u';
const VERDICT: u8 = b'v';
/// Between a cap id and its period: neither can hold it.
const SEPARATOR: char = ' ';

impl CapRecord {
    pub fn key(&self) -> Vec<u8> {
        let mut key = Vec::new();
        match self {
            CapRecord::Usage { cap, period, .. } => {
                key.push(USAGE);
                key.extend_from_slice(format!("{cap}{SEPARATOR}{period}").as_bytes());
            }
            CapRecord::Verdict { conversion_key, .. } => {
                key.push(VERDICT);
                key.extend_from_slice(conversion_key.as_bytes());
            }
        }
        key
    }

    /// The record's value; `None` is a tombstone.
    pub fn value(&self) -> Option<Vec<u8>> {
        let json = match self {
            CapRecord::Usage { value, .. } => value.as_ref().map(serde_json::to_vec),
            CapRecord::Verdict { value, .. } => value.as_ref().map(serde_json::to_vec),
        };
        json.map(|v| v.expect("cap state serializes"))
    }

    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, String> {
        let text = |b: &[u8]| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| "a caps changelog key is not UTF-8".to_owned())
        };
        let bad = |e: serde_json::Error| format!("a caps changelog value does not parse: {e}");
        match key.split_first() {
            Some((&USAGE, rest)) => {
                let rest = text(rest)?;
                let (cap, period) = rest
                    .split_once(SEPARATOR)
                    .ok_or("a caps usage key has no period")?;
                Ok(CapRecord::Usage {
                    cap: cap.to_owned(),
                    period: period.to_owned(),
                    value: value.map(serde_json::from_slice).transpose().map_err(bad)?,
                })
            }
            Some((&VERDICT, rest)) => Ok(CapRecord::Verdict {
                conversion_key: text(rest)?,
                value: value.map(serde_json::from_slice).transpose().map_err(bad)?,
            }),
            _ => Err("a caps changelog key has an unknown prefix".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    const FILE: &str = r#"
time_zone = "America/New_York"

[[cap]]
id = "keto-daily"
offer_id = "keto-vsl"
period = "daily"
conversions = 3

[[cap]]
id = "keto-aff7-weekly-usd"
offer_id = "keto-vsl"
affiliate_id = "aff-7"
period = "weekly"
revenue = "250.50"
currency = "USD"
time_zone = "UTC"
reversal_frees_room = true

[[cap]]
id = "solar-total"
offer_id = "solar-leads"
period = "total"
conversions = 1000
event = "LEAD"
from = "2026-12-01T00:00:00Z"
until = "2027-01-01T00:00:00Z"
"#;

    #[test]
    fn a_file_parses_with_its_defaults() {
        let caps = Caps::parse(FILE).unwrap();
        let daily = caps.get("keto-daily").unwrap();
        assert_eq!(daily.time_zone, chrono_tz::America::New_York);
        assert_eq!(daily.limit, Limit::Conversions(3));
        assert_eq!(daily.event, EventName::Sale);
        assert!(!daily.reversal_frees_room);
        let weekly = caps.get("keto-aff7-weekly-usd").unwrap();
        assert_eq!(weekly.limit.units(), 250_500_000);
        assert_eq!(weekly.limit.describe(1_500_000), "1.5 USD");
        assert!(caps.caps_offer("solar-leads"));
        assert!(!caps.caps_offer("crypto-course"));
    }

    #[test]
    fn periods_follow_the_caps_zone() {
        let caps = Caps::parse(FILE).unwrap();
        let daily = caps.get("keto-daily").unwrap();
        // 03:30 UTC on the 29th is 22:30 on the 28th in New York (EST, UTC-5).
        assert_eq!(daily.period_of(at("2026-11-29T03:30:00Z")), "2026-11-28");
        assert_eq!(daily.period_of(at("2026-11-29T05:00:00Z")), "2026-11-29");
        // Summer time: UTC-4.
        assert_eq!(daily.period_of(at("2026-07-01T03:59:59Z")), "2026-06-30");
        assert_eq!(daily.period_of(at("2026-07-01T04:00:00Z")), "2026-07-01");
        let weekly = caps.get("keto-aff7-weekly-usd").unwrap();
        // Sunday 2026-11-29 is in ISO week 48; Monday the 30th opens week 49.
        assert_eq!(weekly.period_of(at("2026-11-29T23:59:59Z")), "2026-W48");
        assert_eq!(weekly.period_of(at("2026-11-30T00:00:00Z")), "2026-W49");
        // 2027-01-01 is a Friday of ISO week 53 of 2026.
        assert_eq!(weekly.period_of(at("2027-01-01T12:00:00Z")), "2026-W53");
        let total = caps.get("solar-total").unwrap();
        assert_eq!(total.period_of(at("2026-12-05T00:00:00Z")), TOTAL_PERIOD);
    }

    #[test]
    fn a_cap_applies_to_its_offer_affiliate_kind_and_time() {
        let caps = Caps::parse(FILE).unwrap();
        let t = at("2026-12-10T12:00:00Z");
        let weekly = caps.get("keto-aff7-weekly-usd").unwrap();
        assert!(weekly.applies("keto-vsl", Some("aff-7"), EventName::Sale, t));
        assert!(!weekly.applies("keto-vsl", Some("aff-8"), EventName::Sale, t));
        assert!(!weekly.applies("keto-vsl", None, EventName::Sale, t));
        assert!(!weekly.applies("keto-vsl", Some("aff-7"), EventName::Lead, t));
        let daily = caps.get("keto-daily").unwrap();
        assert!(daily.applies("keto-vsl", None, EventName::Sale, t));
        assert!(!daily.applies("solar-leads", None, EventName::Sale, t));
        let total = caps.get("solar-total").unwrap();
        assert!(total.applies("solar-leads", None, EventName::Lead, t));
        let before = Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 59).unwrap();
        assert!(!total.applies("solar-leads", None, EventName::Lead, before));
        assert!(total.applies(
            "solar-leads",
            None,
            EventName::Lead,
            at("2026-12-01T00:00:00Z")
        ));
        assert!(!total.applies(
            "solar-leads",
            None,
            EventName::Lead,
            at("2027-01-01T00:00:00Z")
        ));
    }

    #[test]
    fn mistakes_are_refused_with_the_cap_named() {
        let one = |body: &str| Caps::parse(&format!("[[cap]]\n{body}")).unwrap_err();
        let base = "id = \"c\"\noffer_id = \"o\"\nperiod = \"daily\"\n";
        assert!(one(base).contains("set either conversions, or revenue"));
        assert!(one(&format!("{base}conversions = -1")).contains("negative"));
        assert!(one(&format!("{base}revenue = \"10\"")).contains("needs its currency"));
        assert!(one(&format!("{base}revenue = \"10\"\ncurrency = \"XYZ\"")).contains("ISO 4217"));
        assert!(one(&format!("{base}conversions = 1\nevent = \"CLICK\"")).contains("SALE or LEAD"));
        assert!(one(&format!("{base}conversions = 1\ntime_zone = \"Mars/Base\"")).contains("IANA"));
        assert!(one(&format!("{base}conversions = 1\nlimit = 3")).contains("unknown field"));
        assert!(
            one("id = \"a b\"\noffer_id = \"o\"\nperiod = \"daily\"\nconversions = 1")
                .contains("cap \"a b\": an id is")
        );
        assert!(one(&format!(
            "{base}conversions = 1\nfrom = \"2026-12-01T00:00:00Z\"\nuntil = \"2026-12-01T00:00:00Z\""
        ))
        .contains("until is not after from"));
        let twice = format!("[[cap]]\n{base}conversions = 1\n[[cap]]\n{base}conversions = 2");
        assert!(Caps::parse(&twice)
            .unwrap_err()
            .contains("a second cap with this id"));
        assert!(one(&format!("{base}conversions = 1\nperiod = \"monthly\"")).contains("period"));
    }

    #[test]
    fn the_example_file_parses() {
        let caps = Caps::parse(include_str!("../../config/caps.example.toml")).unwrap();
        let ids: Vec<&str> = caps.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "keto-vsl-daily",
                "keto-vsl-aff-7-weekly",
                "solar-leads-december"
            ]
        );
        let december = caps.get("solar-leads-december").unwrap();
        assert_eq!(december.from, Some(at("2026-12-01T05:00:00Z")));
        assert_eq!(december.time_zone, Tz::UTC);
    }

    #[test]
    fn changelog_records_round_trip() {
        let usage = CapRecord::Usage {
            cap: "keto-daily".into(),
            period: "2026-11-28".into(),
            value: Some(Usage {
                used: 3,
                touched_ms: 7,
            }),
        };
        let verdict = CapRecord::Verdict {
            conversion_key: "maxweb|o|A-1".into(),
            value: Some(Verdict {
                over_cap: Some("keto-daily".into()),
                counted: vec![("w".into(), "2026-W48".into(), 1)],
                decided_ms: 9,
            }),
        };
        for record in [usage, verdict] {
            let value = record.value();
            assert_eq!(
                CapRecord::decode(&record.key(), value.as_deref()).unwrap(),
                record
            );
        }
        let tombstone = CapRecord::decode(b"uketo-daily 2026-11-28", None).unwrap();
        assert!(matches!(tombstone, CapRecord::Usage { value: None, .. }));
        assert!(CapRecord::decode(b"x", None).is_err());
        assert!(CapRecord::decode(b"uketo-daily", None).is_err());
    }
}
