//! The comparison of a payout report with the ledger, line by line. Pure: both sides are
//! [`Line`]s already.
//!
//! Lines pair up by order, payment sequence, and whether they are a sale or a reversal.
//! Within such a group a pair is, in order of preference: the same kind and amount
//! (matched), the same kind (amount differs), or a refund against a chargeback (status
//! differs). Whatever is left is missing on the other side.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::report::Line;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Matched,
    AmountDiffers,
    StatusDiffers,
    MissingInLedger,
    MissingInReport,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Self::Matched,
        Self::AmountDiffers,
        Self::StatusDiffers,
        Self::MissingInLedger,
        Self::MissingInReport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::AmountDiffers => "amount_differs",
            Self::StatusDiffers => "status_differs",
            Self::MissingInLedger => "missing_in_ledger",
            Self::MissingInReport => "missing_in_report",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub category: Category,
    pub report: Option<Line>,
    pub ledger: Option<Line>,
}

impl Finding {
    pub fn line(&self) -> &Line {
        self.report
            .as_ref()
            .or(self.ledger.as_ref())
            .expect("a finding has at least one side")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Comparison {
    pub findings: Vec<Finding>,
}

type GroupKey = (String, Option<i32>, bool);

fn same_money(a: &Line, b: &Line, tolerance: Decimal) -> bool {
    a.currency == b.currency && (a.amount - b.amount).abs() <= tolerance
}

/// Takes the first ledger line that `accept`s `report`, pairing them as `category`.
fn pair_off(
    report: &mut Vec<Line>,
    ledger: &mut Vec<Line>,
    category: Category,
    accept: impl Fn(&Line, &Line) -> bool,
    out: &mut Vec<Finding>,
) {
    let mut unpaired = Vec::new();
    for r in report.drain(..) {
        match ledger.iter().position(|l| accept(&r, l)) {
            Some(i) => out.push(Finding {
                category,
                ledger: Some(ledger.remove(i)),
                report: Some(r),
            }),
            None => unpaired.push(r),
        }
    }
    *report = unpaired;
}

pub fn compare(report: &[Line], ledger: &[Line], tolerance: Decimal) -> Comparison {
    let mut groups: BTreeMap<GroupKey, (Vec<Line>, Vec<Line>)> = BTreeMap::new();
    let key = |l: &Line| (l.order_id.clone(), l.sequence, l.kind.is_reversal());
    for l in report {
        groups.entry(key(l)).or_default().0.push(l.clone());
    }
    for l in ledger {
        groups.entry(key(l)).or_default().1.push(l.clone());
    }
    let mut findings = Vec::new();
    for (_, (mut r, mut l)) in groups {
        pair_off(
            &mut r,
            &mut l,
            Category::Matched,
            |a, b| a.kind == b.kind && same_money(a, b, tolerance),
            &mut findings,
        );
        pair_off(
            &mut r,
            &mut l,
            Category::AmountDiffers,
            |a, b| a.kind == b.kind,
            &mut findings,
        );
        pair_off(
            &mut r,
            &mut l,
            Category::StatusDiffers,
            |_, _| true,
            &mut findings,
        );
        findings.extend(r.into_iter().map(|r| Finding {
            category: Category::MissingInLedger,
            report: Some(r),
            ledger: None,
        }));
        findings.extend(l.into_iter().map(|l| Finding {
            category: Category::MissingInReport,
            report: None,
            ledger: Some(l),
        }));
    }
    Comparison { findings }
}

fn signed(l: &Line) -> Decimal {
    if l.kind.is_reversal() {
        -l.amount
    } else {
        l.amount
    }
}

impl Comparison {
    pub fn count(&self, category: Category) -> usize {
        self.findings
            .iter()
            .filter(|f| f.category == category)
            .count()
    }

    /// Share of compared lines with any discrepancy, in percent (0 when nothing compared).
    pub fn mismatch_percent(&self) -> f64 {
        let total = self.findings.len();
        if total == 0 {
            return 0.0;
        }
        100.0 * (total - self.count(Category::Matched)) as f64 / total as f64
    }

    /// Net amount per day (sales minus reversals) as (report, ledger), by the day each side
    /// says the transaction happened.
    pub fn daily(&self) -> BTreeMap<NaiveDate, (Decimal, Decimal)> {
        let mut days: BTreeMap<NaiveDate, (Decimal, Decimal)> = BTreeMap::new();
        for f in &self.findings {
            if let Some(r) = &f.report {
                days.entry(r.occurred_at.date_naive()).or_default().0 += signed(r);
            }
            if let Some(l) = &f.ledger {
                days.entry(l.occurred_at.date_naive()).or_default().1 += signed(l);
            }
        }
        days
    }

    /// Net totals (report, ledger).
    pub fn totals(&self) -> (Decimal, Decimal) {
        self.daily()
            .values()
            .fold((Decimal::ZERO, Decimal::ZERO), |(a, b), (r, l)| {
                (a + r, b + l)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recon::report::LineKind;
    use chrono::{TimeZone, Utc};

    fn line(order: &str, kind: LineKind, amount: &str) -> Line {
        Line {
            order_id: order.into(),
            sequence: None,
            kind,
            amount: amount.parse().unwrap(),
            currency: "USD".into(),
            occurred_at: Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap(),
            event_id: None,
            received_at: None,
        }
    }

    #[test]
    fn every_category_is_found() {
        use LineKind::*;
        let report = vec![
            line("A", Sale, "10"),
            line("B", Sale, "20"),
            line("C", Sale, "30"),
            line("C", Chargeback, "30"),
            line("D", Sale, "40"),
        ];
        let ledger = vec![
            line("A", Sale, "10"),
            line("B", Sale, "25"),
            line("C", Sale, "30"),
            line("C", Refund, "30"),
            line("E", Sale, "50"),
        ];
        let c = compare(&report, &ledger, Decimal::new(1, 2));
        let counts: Vec<usize> = Category::ALL.iter().map(|k| c.count(*k)).collect();
        // matched A, C; amount B; status C; missing in ledger D; missing in report E.
        assert_eq!(counts, vec![2, 1, 1, 1, 1]);
        assert!((c.mismatch_percent() - 100.0 * 4.0 / 6.0).abs() < 1e-9);
        // Net: report 10 + 20 + 30 - 30 + 40, ledger 10 + 25 + 30 - 30 + 50.
        assert_eq!(c.totals(), (Decimal::from(70), Decimal::from(85)));
    }

    #[test]
    fn repeated_lines_pair_one_to_one() {
        let r = vec![
            line("A", LineKind::Refund, "5"),
            line("A", LineKind::Refund, "5"),
        ];
        let l = vec![line("A", LineKind::Refund, "5")];
        let c = compare(&r, &l, Decimal::ZERO);
        assert_eq!(
            (
                c.count(Category::Matched),
                c.count(Category::MissingInLedger)
            ),
            (1, 1)
        );
    }

    #[test]
    fn a_currency_difference_is_an_amount_difference() {
        let mut eur = line("A", LineKind::Sale, "10");
        eur.currency = "EUR".into();
        let c = compare(&[eur], &[line("A", LineKind::Sale, "10")], Decimal::ONE);
        assert_eq!(c.count(Category::AmountDiffers), 1);
    }
}
