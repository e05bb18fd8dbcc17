//! Conversion caps, exact.
//!
//! The ledger stage partitions by conversion key, so no instance sees all of an offer's
//! conversions. A capped offer's conversion entries therefore take a second, transactional
//! stage ([`stage`]) keyed by offer: the ledger stage writes them to `ledger.capping.v1`
//! ([`route`]) instead of the ledger, and the capping stage, which sees each offer's entries
//! in order on one partition, decides each conversion against its caps ([`CapBook`]), writes
//! the entries to the ledger, and routes postbacks only for counted conversions. Its usage
//! counters and verdicts go to a compacted changelog in the same transaction, so a crash or a
//! rebalance re-decides only what was not committed, and no cap overshoots.

pub mod stage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use schemas::caps::{CapRecord, Caps, Limit, Usage, Verdict, TOTAL_PERIOD};
use schemas::ledger::flags;
use schemas::{ConversionStatus, EventName, LedgerEntry, LinkStatus};

use crate::ledger::Conversion;
use crate::metrics::Metrics;

/// The offer a ledger-stage entry goes to the capping stage under, if any: the offer whose
/// caps decided its conversion, or, for a conversion not yet decided, its own offer when a
/// cap names it. Clicks never go.
pub fn route(
    caps: &Caps,
    entry: &LedgerEntry,
    conversion: Option<&mut Conversion>,
) -> Option<String> {
    if entry.event.event_name == EventName::Click {
        return None;
    }
    if let Some(offer) = conversion.as_ref().and_then(|c| c.capped_offer.clone()) {
        return Some(offer);
    }
    let offer = entry.event.offer_id.as_deref()?;
    if !caps.caps_offer(offer) {
        return None;
    }
    if let Some(c) = conversion {
        c.capped_offer = Some(offer.to_owned());
    }
    Some(offer.to_owned())
}

/// What the capping stage does with one entry.
#[derive(Debug, PartialEq)]
pub struct Decision {
    /// Whether its postbacks go out: not for an over-cap conversion.
    pub forward: bool,
    /// The cap a newly decided conversion was over.
    pub over_cap: Option<String>,
    /// Whether this entry was a conversion's decision (counted or over).
    pub decided: bool,
    /// The state records changed, with their new values.
    pub changed: Vec<CapRecord>,
}

/// One capping partition's state: each cap period's usage, each decided conversion's verdict.
#[derive(Debug, Default)]
pub struct CapBook {
    usage: HashMap<(String, String), Usage>,
    verdicts: HashMap<String, Verdict>,
}

/// The opening entry of a conversion: the one its caps decide on.
fn is_opening(entry: &LedgerEntry) -> bool {
    matches!(entry.event.event_name, EventName::Sale | EventName::Lead)
        && entry.link_status == LinkStatus::None
}

/// A reversal that ends its conversion: what gives a conversion cap's room back.
fn ends_conversion(entry: &LedgerEntry) -> bool {
    matches!(
        entry.conversion_status,
        ConversionStatus::Refunded
            | ConversionStatus::ChargedBack
            | ConversionStatus::Canceled
            | ConversionStatus::Rejected
    )
}

impl CapBook {
    pub fn restore(&mut self, record: CapRecord) {
        match record {
            CapRecord::Usage {
                cap,
                period,
                value: Some(u),
            } => {
                self.usage.insert((cap, period), u);
            }
            CapRecord::Usage { cap, period, .. } => {
                self.usage.remove(&(cap, period));
            }
            CapRecord::Verdict {
                conversion_key,
                value: Some(v),
            } => {
                self.verdicts.insert(conversion_key, v);
            }
            CapRecord::Verdict { conversion_key, .. } => {
                self.verdicts.remove(&conversion_key);
            }
        }
    }

    pub fn used(&self, cap: &str, period: &str) -> i64 {
        self.usage
            .get(&(cap.to_owned(), period.to_owned()))
            .map_or(0, |u| u.used)
    }

    pub fn len(&self) -> (usize, usize) {
        (self.usage.len(), self.verdicts.len())
    }

    fn usage_record(&self, cap: &str, period: &str) -> CapRecord {
        CapRecord::Usage {
            cap: cap.to_owned(),
            period: period.to_owned(),
            value: self
                .usage
                .get(&(cap.to_owned(), period.to_owned()))
                .copied(),
        }
    }

    fn verdict_record(&self, key: &str) -> CapRecord {
        CapRecord::Verdict {
            conversion_key: key.to_owned(),
            value: self.verdicts.get(key).cloned(),
        }
    }

    /// Decides one entry of a capped offer, flagging it `OVER_CAP` where its conversion is.
    pub fn apply(&mut self, caps: &Caps, entry: &mut LedgerEntry, now_ms: i64) -> Decision {
        let key = entry.conversion_key.clone();
        if let Some(verdict) = self.verdicts.get(&key) {
            if verdict.over_cap.is_some() {
                entry.flags.push(flags::OVER_CAP.into());
                return Decision {
                    forward: false,
                    over_cap: None,
                    decided: false,
                    changed: Vec::new(),
                };
            }
            let changed = self.free_room(caps, entry, now_ms);
            return Decision {
                forward: true,
                over_cap: None,
                decided: false,
                changed,
            };
        }
        if !is_opening(entry) {
            return Decision {
                forward: true,
                over_cap: None,
                decided: false,
                changed: Vec::new(),
            };
        }
        let event = &entry.event;
        let Some(offer) = event.offer_id.as_deref() else {
            return Decision {
                forward: true,
                over_cap: None,
                decided: false,
                changed: Vec::new(),
            };
        };
        let mut counts = Vec::new();
        let mut mismatch = false;
        for cap in caps.iter().filter(|c| {
            c.applies(
                offer,
                event.affiliate_id.as_deref(),
                event.event_name,
                event.occurred_at,
            )
        }) {
            let units = match &cap.limit {
                Limit::Conversions(_) => 1,
                Limit::Revenue { currency, .. } => {
                    if event.currency.as_deref() != Some(currency.as_str()) {
                        mismatch = true;
                        continue;
                    }
                    entry.signed_revenue.micros().max(0)
                }
            };
            counts.push((cap, cap.period_of(event.occurred_at), units));
        }
        if mismatch {
            entry.flags.push(flags::CAP_CURRENCY_MISMATCH.into());
        }
        if counts.is_empty() {
            return Decision {
                forward: true,
                over_cap: None,
                decided: false,
                changed: Vec::new(),
            };
        }
        // Every cap must have room, or none counts it: a conversion is in or out whole.
        let over = counts
            .iter()
            .find(|(cap, period, units)| {
                self.used(&cap.id, period).saturating_add(*units) > cap.limit.units()
            })
            .map(|(cap, _, _)| cap.id.clone());
        let mut changed = Vec::new();
        let verdict = match &over {
            Some(cap) => {
                entry.flags.push(flags::OVER_CAP.into());
                Verdict {
                    over_cap: Some(cap.clone()),
                    counted: Vec::new(),
                    decided_ms: now_ms,
                }
            }
            None => {
                let mut counted = Vec::with_capacity(counts.len());
                for (cap, period, units) in counts {
                    let usage = self
                        .usage
                        .entry((cap.id.clone(), period.clone()))
                        .or_insert(Usage {
                            used: 0,
                            touched_ms: now_ms,
                        });
                    usage.used += units;
                    usage.touched_ms = now_ms;
                    changed.push(self.usage_record(&cap.id, &period));
                    counted.push((cap.id.clone(), period, units));
                }
                Verdict {
                    over_cap: None,
                    counted,
                    decided_ms: now_ms,
                }
            }
        };
        self.verdicts.insert(key.clone(), verdict);
        changed.push(self.verdict_record(&key));
        Decision {
            forward: over.is_none(),
            over_cap: over,
            decided: true,
            changed,
        }
    }

    /// A reversal of a counted conversion gives room back to the caps that say so: a
    /// revenue cap what it reverses (up to what was counted), a conversion cap the whole
    /// conversion once the reversal ends it.
    fn free_room(&mut self, caps: &Caps, entry: &LedgerEntry, now_ms: i64) -> Vec<CapRecord> {
        let name = entry.event.event_name;
        if !(name.is_reversal() || name == EventName::RejectedLead) {
            return Vec::new();
        }
        let key = &entry.conversion_key;
        let Some(verdict) = self.verdicts.get_mut(key) else {
            return Vec::new();
        };
        let mut freed = Vec::new();
        for (cap_id, period, units) in &mut verdict.counted {
            let Some(cap) = caps.get(cap_id) else {
                continue;
            };
            if !cap.reversal_frees_room || *units == 0 {
                continue;
            }
            let free = match cap.limit {
                Limit::Conversions(_) if ends_conversion(entry) => *units,
                Limit::Conversions(_) => 0,
                Limit::Revenue { .. } => (-entry.signed_revenue.micros()).clamp(0, *units),
            };
            if free > 0 {
                *units -= free;
                freed.push((cap_id.clone(), period.clone(), free));
            }
        }
        let mut changed = Vec::new();
        for (cap, period, free) in &freed {
            if let Some(usage) = self.usage.get_mut(&(cap.clone(), period.clone())) {
                usage.used = (usage.used - free).max(0);
                usage.touched_ms = now_ms;
            }
            changed.push(self.usage_record(cap, period));
        }
        if !freed.is_empty() {
            changed.push(self.verdict_record(key));
        }
        changed
    }

    /// Forgets what is older than `horizon_ms`: verdicts decided before it, and daily or
    /// weekly usage last changed before it. A total's usage is kept for good.
    pub fn expire(&mut self, horizon_ms: i64) -> Vec<CapRecord> {
        let mut gone = Vec::new();
        self.verdicts.retain(|key, v| {
            let keep = v.decided_ms >= horizon_ms;
            if !keep {
                gone.push(CapRecord::Verdict {
                    conversion_key: key.clone(),
                    value: None,
                });
            }
            keep
        });
        self.usage.retain(|(cap, period), u| {
            let keep = period == TOTAL_PERIOD || u.touched_ms >= horizon_ms;
            if !keep {
                gone.push(CapRecord::Usage {
                    cap: cap.clone(),
                    period: period.clone(),
                    value: None,
                });
            }
            keep
        });
        gone
    }
}

/// The caps file, read again when it changes, checked at most once a second. A file that no
/// longer parses leaves the caps as they were, and says so. Each stage watches its own clone.
#[derive(Clone)]
pub struct CapsFile {
    path: PathBuf,
    caps: Caps,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// How often the caps file's modification time is looked at.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

impl CapsFile {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let caps = Caps::load(path, "PROCESSOR_CAPS_FILE").map_err(anyhow::Error::msg)?;
        Ok(Self {
            path: path.to_owned(),
            caps,
            modified: std::fs::metadata(path).and_then(|m| m.modified()).ok(),
            checked: Instant::now(),
        })
    }

    /// Reads the file again if it changed since the last look, at most once a second, and
    /// counts the reload in `processor_caps_reloads_total`.
    pub fn refresh(&mut self, now: Instant, metrics: &Metrics) {
        if let Some(result) = self.reload_if_changed(now) {
            let label = if result.is_ok() { "ok" } else { "refused" };
            metrics.caps_reloads.with_label_values(&[label]).inc();
        }
    }

    /// Whether the caps were reloaded (`Some(Ok)`), refused (`Some(Err)`), or not looked at
    /// or unchanged (`None`).
    fn reload_if_changed(&mut self, now: Instant) -> Option<Result<(), String>> {
        if now.duration_since(self.checked) < RELOAD_CHECK {
            return None;
        }
        self.checked = now;
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == self.modified {
            return None;
        }
        self.modified = modified;
        Some(match Caps::load(&self.path, "PROCESSOR_CAPS_FILE") {
            Ok(caps) => {
                tracing::info!(caps = caps.iter().count(), path = %self.path.display(), "caps file reloaded");
                self.caps = caps;
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "caps file refused; the caps stay as they were");
                Err(e)
            }
        })
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use schemas::samples;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().into()
    }

    const CAPS: &str = r#"
[[cap]]
id = "daily-2"
offer_id = "keto"
period = "daily"
conversions = 2
reversal_frees_room = true

[[cap]]
id = "aff7-usd-100"
offer_id = "keto"
affiliate_id = "aff-7"
period = "total"
revenue = "100"
currency = "USD"
reversal_frees_room = true

[[cap]]
id = "strict"
offer_id = "strict"
period = "weekly"
conversions = 1
"#;

    fn sale(order: &str, offer: &str, affiliate: &str, revenue: &str, when: &str) -> LedgerEntry {
        let mut e = samples::sale();
        e.order_id = Some(order.into());
        e.offer_id = Some(offer.into());
        e.affiliate_id = Some(affiliate.into());
        e.revenue = Some(revenue.parse().unwrap());
        e.currency = Some("USD".into());
        e.occurred_at = at(when);
        LedgerEntry::opening(e, ConversionStatus::Sold, at(when)).unwrap()
    }

    fn refund(of: &LedgerEntry, revenue: &str, status: ConversionStatus) -> LedgerEntry {
        let mut e = of.event.clone();
        e.event_name = EventName::Refund;
        e.event_id = format!("{}-refund-{revenue}", e.event_id);
        e.revenue = Some(revenue.parse().unwrap());
        let mut entry = LedgerEntry::opening(e, status, of.recorded_at).unwrap();
        entry.conversion_key = of.conversion_key.clone();
        entry.link_status = LinkStatus::Linked;
        entry.signed_revenue = -entry.signed_revenue;
        entry
    }

    #[test]
    fn a_conversion_past_a_cap_is_flagged_and_not_forwarded() {
        let caps = Caps::parse(CAPS).unwrap();
        let mut book = CapBook::default();
        let day = "2026-11-28T10:00:00Z";
        let mut decided = Vec::new();
        for n in 0..3 {
            let mut e = sale(&format!("o{n}"), "keto", "aff-1", "10", day);
            let d = book.apply(&caps, &mut e, n);
            decided.push((d.forward, d.over_cap.clone(), e.flags.clone()));
        }
        assert_eq!(decided[0], (true, None, vec![]));
        assert_eq!(decided[1], (true, None, vec![]));
        assert_eq!(
            decided[2],
            (
                false,
                Some("daily-2".into()),
                vec![flags::OVER_CAP.to_owned()]
            )
        );
        assert_eq!(book.used("daily-2", "2026-11-28"), 2);
        // The next day has room again.
        let mut next = sale("o3", "keto", "aff-1", "10", "2026-11-29T00:00:00Z");
        assert!(book.apply(&caps, &mut next, 4).forward);
        assert_eq!(book.used("daily-2", "2026-11-29"), 1);
    }

    #[test]
    fn later_entries_of_an_over_cap_conversion_stay_over() {
        let caps = Caps::parse(CAPS).unwrap();
        let mut book = CapBook::default();
        let day = "2026-11-28T10:00:00Z";
        let mut first = sale("a", "strict", "x", "10", day);
        assert!(book.apply(&caps, &mut first, 0).forward);
        let mut second = sale("b", "strict", "x", "10", day);
        assert!(!book.apply(&caps, &mut second, 0).forward);
        let mut r = refund(&second, "10", ConversionStatus::Refunded);
        let d = book.apply(&caps, &mut r, 0);
        assert!(!d.forward && !d.decided && d.changed.is_empty());
        assert_eq!(r.flags, [flags::OVER_CAP]);
        // The strict cap does not free room: a refund of the counted one changes nothing.
        let mut r = refund(&first, "10", ConversionStatus::Refunded);
        let d = book.apply(&caps, &mut r, 0);
        assert!(d.forward && d.changed.is_empty());
        assert_eq!(book.used("strict", "2026-W48"), 1);
    }

    #[test]
    fn a_conversion_counts_in_every_cap_or_in_none() {
        let caps = Caps::parse(CAPS).unwrap();
        let mut book = CapBook::default();
        let day = "2026-11-28T10:00:00Z";
        let mut a = sale("a", "keto", "aff-7", "60", day);
        assert!(book.apply(&caps, &mut a, 0).forward);
        // 60 + 50 > 100 USD: over the affiliate's revenue cap, so not counted in the daily one.
        let mut b = sale("b", "keto", "aff-7", "50", day);
        let d = book.apply(&caps, &mut b, 0);
        assert_eq!(d.over_cap.as_deref(), Some("aff7-usd-100"));
        assert_eq!(book.used("daily-2", "2026-11-28"), 1);
        assert_eq!(book.used("aff7-usd-100", TOTAL_PERIOD), 60_000_000);
        // Exactly at the limit is within it.
        let mut c = sale("c", "keto", "aff-7", "40", day);
        assert!(book.apply(&caps, &mut c, 0).forward);
        assert_eq!(book.used("aff7-usd-100", TOTAL_PERIOD), 100_000_000);
        assert_eq!(book.used("daily-2", "2026-11-28"), 2);
    }

    #[test]
    fn reversals_free_room_where_the_cap_says_so() {
        let caps = Caps::parse(CAPS).unwrap();
        let mut book = CapBook::default();
        let day = "2026-11-28T10:00:00Z";
        let mut a = sale("a", "keto", "aff-7", "60", day);
        book.apply(&caps, &mut a, 0);
        // A partial refund gives back its revenue, not the conversion.
        let mut part = refund(&a, "25", ConversionStatus::PartiallyRefunded);
        let d = book.apply(&caps, &mut part, 1);
        assert!(d.forward);
        assert_eq!(book.used("aff7-usd-100", TOTAL_PERIOD), 35_000_000);
        assert_eq!(book.used("daily-2", "2026-11-28"), 1);
        // The rest ends it: the day's conversion comes back, and no more than was counted.
        let mut rest = refund(&a, "50", ConversionStatus::Refunded);
        book.apply(&caps, &mut rest, 2);
        assert_eq!(book.used("aff7-usd-100", TOTAL_PERIOD), 0);
        assert_eq!(book.used("daily-2", "2026-11-28"), 0);
        // Only once.
        let mut again = refund(&a, "5", ConversionStatus::Refunded);
        assert!(book.apply(&caps, &mut again, 3).changed.is_empty());
        assert_eq!(book.used("daily-2", "2026-11-28"), 0);
    }

    #[test]
    fn a_revenue_cap_in_another_currency_does_not_count() {
        let caps = Caps::parse(CAPS).unwrap();
        let mut book = CapBook::default();
        let mut eur = sale("e", "keto", "aff-7", "500", "2026-11-28T10:00:00Z");
        eur.event.currency = Some("EUR".into());
        let d = book.apply(&caps, &mut eur, 0);
        assert!(d.forward);
        assert_eq!(eur.flags, [flags::CAP_CURRENCY_MISMATCH]);
        assert_eq!(book.used("aff7-usd-100", TOTAL_PERIOD), 0);
        assert_eq!(book.used("daily-2", "2026-11-28"), 1);
    }

    #[test]
    fn state_round_trips_through_its_records_and_expires() {
        let caps = Caps::parse(CAPS).unwrap();
        let mut book = CapBook::default();
        let mut records = Vec::new();
        for (n, day) in ["2026-11-27T10:00:00Z", "2026-11-28T10:00:00Z"]
            .iter()
            .enumerate()
        {
            let mut e = sale(&format!("o{n}"), "keto", "aff-7", "1", day);
            records.extend(book.apply(&caps, &mut e, n as i64 * 1000).changed);
        }
        let mut restored = CapBook::default();
        for r in records {
            let value = r.value();
            restored.restore(CapRecord::decode(&r.key(), value.as_deref()).unwrap());
        }
        assert_eq!(restored.used("daily-2", "2026-11-27"), 1);
        assert_eq!(restored.used("aff7-usd-100", TOTAL_PERIOD), 2_000_000);
        assert_eq!(restored.len(), (3, 2));
        let gone = restored.expire(500);
        // The first day's usage and verdict; never the total.
        assert_eq!(gone.len(), 2);
        assert_eq!(restored.used("daily-2", "2026-11-27"), 0);
        assert_eq!(restored.used("aff7-usd-100", TOTAL_PERIOD), 2_000_000);
    }

    #[test]
    fn the_caps_file_is_read_again_when_it_changes_and_kept_when_it_breaks() {
        let path = std::env::temp_dir().join(format!("caps-{}.toml", std::process::id()));
        let cap = |n: u32| {
            format!(
                "[[cap]]\nid = \"c\"\noffer_id = \"o\"\nperiod = \"daily\"\nconversions = {n}\n"
            )
        };
        std::fs::write(&path, cap(5)).unwrap();
        let mut file = CapsFile::load(&path).unwrap();
        let limit = |caps: &Caps| caps.get("c").unwrap().limit.units();
        let start = Instant::now();
        // Unchanged: the same caps, and no reload reported.
        let reloaded = file.reload_if_changed(start + Duration::from_secs(2));
        assert_eq!((limit(file.caps()), reloaded), (5, None));
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, cap(7)).unwrap();
        // Within a second of the last look, the file is not looked at again.
        let reloaded = file.reload_if_changed(start + Duration::from_millis(2500));
        assert_eq!((limit(file.caps()), reloaded), (5, None));
        let reloaded = file.reload_if_changed(start + Duration::from_secs(4));
        assert_eq!((limit(file.caps()), reloaded), (7, Some(Ok(()))));
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "[[cap]]\nid = \"c\"\n").unwrap();
        let reloaded = file.reload_if_changed(start + Duration::from_secs(6));
        assert_eq!(
            limit(file.caps()),
            7,
            "a broken file leaves the caps as they were"
        );
        assert!(reloaded.unwrap().unwrap_err().contains("missing field"));
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn routing_follows_the_conversion_once_decided() {
        let caps = Caps::parse(CAPS).unwrap();
        let s = sale("a", "keto", "aff-1", "1", "2026-11-28T10:00:00Z");
        let mut c = Conversion::default();
        assert_eq!(route(&caps, &s, Some(&mut c)).as_deref(), Some("keto"));
        assert_eq!(c.capped_offer.as_deref(), Some("keto"));
        // A refund that names no offer follows its conversion.
        let mut r = refund(&s, "1", ConversionStatus::Refunded);
        r.event.offer_id = None;
        assert_eq!(route(&caps, &r, Some(&mut c)).as_deref(), Some("keto"));
        assert_eq!(route(&caps, &r, None), None);
        let mut click = s.clone();
        click.event.event_name = EventName::Click;
        assert_eq!(route(&caps, &click, None), None);
        let other = sale("b", "crypto", "aff-1", "1", "2026-11-28T10:00:00Z");
        assert_eq!(route(&caps, &other, None), None);
    }
}
