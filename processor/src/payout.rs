//! Payouts from the offers' rules (`schemas::offers`) for events that carry no payout of
//! their own: a network's commission, or a producer's payout, always wins. Pure, like the
//! ledger that calls it.
//!
//! - A sale pays its offer's (or its affiliate's) revenue share on its revenue, rebills
//!   included, or the fixed CPA on the conversion's first sale only.
//! - An approved lead pays the CPL once; a rejection after it claws it back.
//! - A refund or chargeback of a conversion a rule paid claws back the payout in proportion
//!   to the revenue it reverses, and all that is left of it when nothing of the revenue is;
//!   so a conversion reversed whole has paid exactly nothing, and never less.
//! - A sale that adopts reversals which came before it pays only on the revenue left.
//!
//! Amounts round to the ledger's 6 places, half away from zero.

use rust_decimal::{Decimal, RoundingStrategy};
use schemas::money::{Money, MoneyError, SCALE};
use schemas::offers::{Offers, PayoutRule, SalePayout};
use schemas::{EventName, TrackingEvent};
use serde::{Deserialize, Serialize};

use crate::ledger::Conversion;

/// The rule that paid a conversion, remembered for its clawbacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulePaid {
    pub rule: String,
    pub currency: String,
}

/// What the rules make of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The rules say nothing: the entry keeps what the ledger's own rules give it.
    Silent,
    /// A rule sets the entry's signed payout (possibly 0), in `currency`.
    Paid {
        amount: Money,
        rule: String,
        currency: String,
    },
    /// A fixed amount in another currency than the event's: nothing is paid.
    CurrencyMismatch { rule: String },
}

/// An exact product or quotient as money: 6 places, half away from zero.
fn rounded(exact: Decimal) -> Result<Money, MoneyError> {
    Money::from_decimal(exact.round_dp_with_strategy(SCALE, RoundingStrategy::MidpointAwayFromZero))
}

/// `amount × part / whole`; all of `amount` when `whole` is not positive.
fn share(amount: Money, part: Money, whole: Money) -> Result<Money, MoneyError> {
    if !whole.is_positive() {
        return Ok(amount);
    }
    rounded(amount.to_decimal() * part.to_decimal() / whole.to_decimal())
}

fn percent_of(p: Decimal, amount: Money) -> Result<Money, MoneyError> {
    rounded(amount.to_decimal() * p / Decimal::ONE_HUNDRED)
}

/// A fixed amount of `rule` for an event in `event_currency`: its currency, or the mismatch.
fn fixed_currency(rule: &PayoutRule, event_currency: Option<&str>) -> Result<String, ()> {
    let own = rule.currency.clone().unwrap_or_default();
    match event_currency {
        Some(c) if c != own => Err(()),
        _ => Ok(own),
    }
}

/// The decision for `event`, whose own payout is absent, against conversion `c` as it stood
/// before the event; `signed_revenue` is the entry's, as the ledger computed it.
pub fn decide(
    offers: &Offers,
    c: &Conversion,
    event: &TrackingEvent,
    signed_revenue: Money,
) -> Result<Decision, MoneyError> {
    let rule = || {
        event
            .offer_id
            .as_deref()
            .and_then(|offer| offers.payout_rule(offer, event.affiliate_id.as_deref()))
    };
    let currency = event.currency.as_deref();
    match event.event_name {
        EventName::Sale => {
            let Some(rule) = rule() else {
                return Ok(Decision::Silent);
            };
            let (full, what, currency) = match rule.sale {
                None => return Ok(Decision::Silent),
                Some(SalePayout::Revshare(p)) => (
                    percent_of(p, signed_revenue)?,
                    format!("revshare {}%", p.normalize()),
                    currency.unwrap_or_default().to_owned(),
                ),
                Some(SalePayout::Cpa(amount)) => {
                    let what = format!("cpa {amount} {}", rule.currency.as_deref().unwrap_or(""));
                    let Ok(currency) = fixed_currency(rule, currency) else {
                        return Ok(Decision::CurrencyMismatch {
                            rule: rule.describe(&what),
                        });
                    };
                    if c.sale.is_some() {
                        return Ok(Decision::Paid {
                            amount: Money::ZERO,
                            rule: rule.describe(&format!("{what}, first sale only")),
                            currency,
                        });
                    }
                    (amount, what, currency)
                }
            };
            // Reversals that came before their sale: pay on what is left of its revenue.
            let amount = if c.sale.is_none() && c.reversed_revenue.is_positive() {
                let left = signed_revenue
                    .checked_sub(c.reversed_revenue)?
                    .max(Money::ZERO);
                share(full, left, signed_revenue)?
            } else {
                full
            };
            Ok(Decision::Paid {
                amount,
                rule: rule.describe(&what),
                currency,
            })
        }
        EventName::ApprovedLead => {
            let Some(rule) = rule() else {
                return Ok(Decision::Silent);
            };
            let Some(cpl) = rule.cpl else {
                return Ok(Decision::Silent);
            };
            let what = format!("cpl {cpl} {}", rule.currency.as_deref().unwrap_or(""));
            let Ok(currency) = fixed_currency(rule, currency) else {
                return Ok(Decision::CurrencyMismatch {
                    rule: rule.describe(&what),
                });
            };
            if c.net_payout.is_positive() {
                // Paid already: a second approval pays nothing more.
                return Ok(Decision::Silent);
            }
            Ok(Decision::Paid {
                amount: cpl,
                rule: rule.describe(&what),
                currency,
            })
        }
        EventName::RejectedLead => Ok(match &c.rule_paid {
            Some(paid) if c.net_payout.is_positive() => Decision::Paid {
                amount: -c.net_payout,
                rule: format!("clawback of {}", paid.rule),
                currency: paid.currency.clone(),
            },
            _ => Decision::Silent,
        }),
        EventName::Refund | EventName::Chargeback => {
            let Some(paid) = &c.rule_paid else {
                return Ok(Decision::Silent);
            };
            if !c.net_payout.is_positive() || !(-signed_revenue).is_positive() {
                return Ok(Decision::Silent);
            }
            let left = c.net_revenue.checked_add(signed_revenue)?;
            let clawback = if left.is_positive() {
                share(c.gross_payout, -signed_revenue, c.gross_revenue)?.min(c.net_payout)
            } else {
                c.net_payout
            };
            Ok(Decision::Paid {
                amount: -clawback,
                rule: format!("clawback of {}", paid.rule),
                currency: paid.currency.clone(),
            })
        }
        _ => Ok(Decision::Silent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::samples;

    fn m(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn offers() -> Offers {
        Offers::parse(
            "[offers.rs.payout]\nrevshare_percent = \"33.3333\"\n\
             [offers.half.payout]\nrevshare_percent = \"50\"\n\
             [offers.cpa.payout]\ncpa = \"25\"\ncurrency = \"USD\"\ncpl = \"4\"\n\
             [offers.cpa.payout.affiliates.vip]\ncpa = \"30\"\ncurrency = \"USD\"\n",
        )
        .unwrap()
    }

    fn sale(offer: &str, affiliate: &str, currency: &str) -> TrackingEvent {
        let mut e = samples::sale();
        e.offer_id = Some(offer.into());
        e.affiliate_id = Some(affiliate.into());
        e.currency = Some(currency.into());
        e.payout = None;
        e
    }

    fn paid(amount: &str, rule: &str, currency: &str) -> Decision {
        Decision::Paid {
            amount: m(amount),
            rule: rule.into(),
            currency: currency.into(),
        }
    }

    #[test]
    fn a_revenue_share_rounds_half_away_from_zero() {
        let e = sale("rs", "a", "EUR");
        // 10.000005 × 0.333333 = 3.33333166…: down; 10.000015 × 0.333333 = 3.333334999995: up.
        let d = decide(&offers(), &Conversion::default(), &e, m("10.000005")).unwrap();
        assert_eq!(d, paid("3.333332", "offer rs: revshare 33.3333%", "EUR"));
        let d = decide(&offers(), &Conversion::default(), &e, m("10.000015")).unwrap();
        assert_eq!(d, paid("3.333335", "offer rs: revshare 33.3333%", "EUR"));
        // Half of a millionth is a tie: away from zero.
        let e = sale("half", "a", "EUR");
        let d = decide(&offers(), &Conversion::default(), &e, m("0.000003")).unwrap();
        assert_eq!(d, paid("0.000002", "offer half: revshare 50%", "EUR"));
    }

    #[test]
    fn a_cpa_pays_the_first_sale_in_its_currency_and_the_affiliate_rule_wins() {
        let o = offers();
        let first = Conversion::default();
        let d = decide(&o, &first, &sale("cpa", "a", "USD"), m("99")).unwrap();
        assert_eq!(d, paid("25", "offer cpa: cpa 25 USD", "USD"));
        let d = decide(&o, &first, &sale("cpa", "vip", "USD"), m("99")).unwrap();
        assert_eq!(d, paid("30", "offer cpa, affiliate vip: cpa 30 USD", "USD"));
        let d = decide(&o, &first, &sale("cpa", "a", "EUR"), m("99")).unwrap();
        assert_eq!(
            d,
            Decision::CurrencyMismatch {
                rule: "offer cpa: cpa 25 USD".into()
            }
        );
        let rebill = Conversion {
            sale: Some("first".into()),
            ..Conversion::default()
        };
        let d = decide(&o, &rebill, &sale("cpa", "a", "USD"), m("99")).unwrap();
        assert_eq!(
            d,
            paid("0", "offer cpa: cpa 25 USD, first sale only", "USD")
        );
        let d = decide(&o, &first, &sale("other", "a", "USD"), m("99")).unwrap();
        assert_eq!(d, Decision::Silent);
    }

    #[test]
    fn clawbacks_are_proportional_and_never_exceed_what_was_paid() {
        let paid_by_rule = Conversion {
            sale: Some("s".into()),
            gross_revenue: m("90"),
            gross_payout: m("30"),
            net_revenue: m("90"),
            net_payout: m("30"),
            rule_paid: Some(RulePaid {
                rule: "offer rs: revshare 33.3333%".into(),
                currency: "EUR".into(),
            }),
            ..Conversion::default()
        };
        let mut refund = samples::refund();
        refund.payout = None;
        let d = decide(&offers(), &paid_by_rule, &refund, m("-10")).unwrap();
        // 30 × 10 / 90 = 3.333333…
        assert_eq!(
            d,
            paid(
                "-3.333333",
                "clawback of offer rs: revshare 33.3333%",
                "EUR"
            )
        );
        // What is left after 3.333333 was clawed back, when the rest of the revenue goes.
        let rest = Conversion {
            net_revenue: m("80"),
            net_payout: m("26.666667"),
            reversed_revenue: m("10"),
            ..paid_by_rule.clone()
        };
        let d = decide(&offers(), &rest, &refund, m("-80")).unwrap();
        assert_eq!(
            d,
            paid(
                "-26.666667",
                "clawback of offer rs: revshare 33.3333%",
                "EUR"
            )
        );
        // A conversion a network paid is left to the network's figures.
        let network = Conversion {
            rule_paid: None,
            ..paid_by_rule
        };
        assert_eq!(
            decide(&offers(), &network, &refund, m("-10")).unwrap(),
            Decision::Silent
        );
    }

    #[test]
    fn a_sale_after_its_refund_pays_on_what_is_left() {
        let early = Conversion {
            reversed_revenue: m("40"),
            net_revenue: m("-40"),
            ..Conversion::default()
        };
        let d = decide(&offers(), &early, &sale("cpa", "a", "USD"), m("100")).unwrap();
        assert_eq!(d, paid("15", "offer cpa: cpa 25 USD", "USD"));
    }

    #[test]
    fn a_cpl_pays_once_and_a_rejection_claws_it_back() {
        let mut approved = samples::lead();
        approved.event_name = EventName::ApprovedLead;
        approved.offer_id = Some("cpa".into());
        approved.currency = None;
        approved.payout = None;
        let d = decide(&offers(), &Conversion::default(), &approved, Money::ZERO).unwrap();
        assert_eq!(d, paid("4", "offer cpa: cpl 4 USD", "USD"));
        let paid_lead = Conversion {
            net_payout: m("4"),
            rule_paid: Some(RulePaid {
                rule: "offer cpa: cpl 4 USD".into(),
                currency: "USD".into(),
            }),
            ..Conversion::default()
        };
        assert_eq!(
            decide(&offers(), &paid_lead, &approved, Money::ZERO).unwrap(),
            Decision::Silent
        );
        let mut rejected = approved.clone();
        rejected.event_name = EventName::RejectedLead;
        assert_eq!(
            decide(&offers(), &paid_lead, &rejected, Money::ZERO).unwrap(),
            paid("-4", "clawback of offer cpa: cpl 4 USD", "USD")
        );
    }
}
