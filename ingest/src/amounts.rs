//! Amount sanity: a ceiling on every money amount, per network and per first-party source.
//! A sale of a trillion dollars is a typo or an attack, never a sale; it is refused with
//! `amount_out_of_range` and kept in quarantine, where it can be fixed and replayed.

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use schemas::{FieldError, TrackingEvent, FIRST_PARTY};

pub const REASON: &str = "amount_out_of_range";

#[derive(Debug, Clone)]
pub struct AmountCeilings {
    default: Decimal,
    /// By network (`clickbank`…) or, for first-party events, by their `source`.
    by_origin: HashMap<String, Decimal>,
}

impl AmountCeilings {
    /// `entries` are `name=amount`.
    pub fn new(default: Decimal, entries: &[String]) -> Result<Self, String> {
        let mut by_origin = HashMap::new();
        for entry in entries {
            let parsed = entry
                .split_once('=')
                .and_then(|(name, amount)| {
                    Some((name.trim(), Decimal::from_str(amount.trim()).ok()?))
                })
                .filter(|(name, amount)| !name.is_empty() && *amount > Decimal::ZERO);
            let Some((name, amount)) = parsed else {
                return Err(format!(
                    "INGEST_MAX_AMOUNT_FOR entry {entry:?} is not name=amount with a positive amount"
                ));
            };
            by_origin.insert(name.to_owned(), amount);
        }
        if default <= Decimal::ZERO {
            return Err("INGEST_MAX_AMOUNT must be positive".into());
        }
        Ok(Self { default, by_origin })
    }

    /// The ceiling that applies to `event`, and the name it is configured under.
    fn ceiling<'e>(&self, event: &'e TrackingEvent) -> (Decimal, &'e str) {
        let origin = if event.network == FIRST_PARTY {
            event.source.as_deref().unwrap_or(FIRST_PARTY)
        } else {
            event.network.as_str()
        };
        (
            self.by_origin.get(origin).copied().unwrap_or(self.default),
            origin,
        )
    }

    /// Every amount of `event` above its ceiling, as field errors.
    pub fn check(&self, event: &TrackingEvent) -> Result<(), Vec<FieldError>> {
        let (ceiling, origin) = self.ceiling(event);
        let errors: Vec<FieldError> = [("revenue", event.revenue), ("payout", event.payout)]
            .into_iter()
            .filter_map(|(field, amount)| Some((field, amount?)))
            .filter(|(_, amount)| amount.abs() > ceiling)
            .map(|(field, amount)| {
                FieldError::new(
                    field,
                    format!("{amount} is above the ceiling {ceiling} for {origin}"),
                )
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(network: &str, source: Option<&str>, revenue: &str) -> TrackingEvent {
        let mut e = schemas::samples::sale();
        e.network = network.into();
        e.source = source.map(str::to_owned);
        e.revenue = Some(revenue.parse().unwrap());
        e.payout = None;
        e
    }

    #[test]
    fn ceilings_apply_per_network_and_first_party_source() {
        let c = AmountCeilings::new(
            "1000000".parse().unwrap(),
            &["clickbank=500".into(), "checkout=2000000".into()],
        )
        .unwrap();
        assert!(c.check(&event("clickbank", None, "500")).is_ok());
        let over = c.check(&event("clickbank", None, "500.01")).unwrap_err();
        assert_eq!(over[0].field, "revenue");
        assert!(c.check(&event("buygoods", None, "999999.99")).is_ok());
        assert!(c
            .check(&event("buygoods", None, "999999999999.999999"))
            .is_err());
        assert!(c
            .check(&event(FIRST_PARTY, Some("checkout"), "1500000"))
            .is_ok());
        assert!(c
            .check(&event(FIRST_PARTY, Some("crm"), "1500000"))
            .is_err());
    }

    #[test]
    fn bad_entries_are_refused() {
        let d = "1000000".parse().unwrap();
        assert!(AmountCeilings::new(d, &["clickbank".into()]).is_err());
        assert!(AmountCeilings::new(d, &["clickbank=-5".into()]).is_err());
        assert!(AmountCeilings::new(d, &["=5".into()]).is_err());
        assert!(AmountCeilings::new(Decimal::ZERO, &[]).is_err());
    }
}
