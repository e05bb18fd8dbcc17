//! `trackctl gate`: the rollout checklist's five KPIs over a window of days, from ClickHouse
//! and the latest `trackctl recon` results, overall and per offer and traffic source (per
//! network for the recon mismatch). Each check is PASS or FAIL (or NO DATA, which neither
//! passes nor fails it); any FAIL fails the gate, and the command exits non-zero, so that a
//! cron job or a CI can hold a rollout back.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::warehouse::Warehouse;

#[derive(Args, Debug, Clone, Serialize)]
pub struct GateArgs {
    /// Days in the window, ending with --to.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,
    /// The window's last day (UTC, inclusive); today by default.
    #[arg(long)]
    pub to: Option<NaiveDate>,
    /// Postbacks delivered, of those routed, at least this percent.
    #[arg(long, default_value_t = 97.0)]
    pub min_postback_success_percent: f64,
    /// The latest recon of each network: lines that differ below this percent.
    #[arg(long, default_value_t = 3.0)]
    pub max_mismatch_percent: f64,
    /// Ledger entries counted twice (an event_id more than once), at most this percent.
    #[arg(long, default_value_t = 0.5)]
    pub max_duplicate_percent: f64,
    /// The longest an accepted event waited before the ledger counted it (received_at to
    /// recorded_at: the queue's recovery after an outage), at most this many minutes.
    #[arg(long, default_value_t = 60)]
    pub max_queue_recovery_minutes: u64,
    /// The longest a refund or chargeback took from happening to reaching the ledger
    /// (occurred_at to received_at), at most this many hours: "daily or faster".
    #[arg(long, default_value_t = 24)]
    pub max_refund_sync_hours: u64,
    /// Also write the checks as JSON to this file.
    #[arg(long)]
    #[serde(skip)]
    pub json: Option<PathBuf>,
}

impl GateArgs {
    /// Every flag at its default: the thresholds of the rollout checklist.
    pub fn defaults() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            gate: GateArgs,
        }
        <Defaults as clap::Parser>::parse_from(["gate"]).gate
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Fail,
    NoData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::NoData => "NO DATA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kpi {
    PostbackSuccess,
    Mismatch,
    DuplicateCounted,
    QueueRecovery,
    RefundSync,
}

impl Kpi {
    pub fn label(self) -> &'static str {
        match self {
            Kpi::PostbackSuccess => "postback success",
            Kpi::Mismatch => "mismatch vs payout report",
            Kpi::DuplicateCounted => "duplicate counted events",
            Kpi::QueueRecovery => "queue recovery",
            Kpi::RefundSync => "refund/chargeback sync",
        }
    }
}

/// One KPI for one scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `all`, `offer <id> / source <id>`, or `network <name>`.
    pub scope: String,
    pub kpi: Kpi,
    /// The measured value, in `unit`; none without data.
    pub value: Option<f64>,
    pub unit: &'static str,
    /// The rule it is held to, e.g. `>= 97`.
    pub threshold: String,
    pub verdict: Verdict,
    /// What the value was computed from.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub thresholds: GateArgs,
    pub checks: Vec<Check>,
    pub verdict: Verdict,
}

/// The ledger's side of a scope.
#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, Deserialize)]
pub struct LedgerFacts {
    pub offer_id: String,
    pub source: String,
    /// Whether the row is one offer and source (else: everything).
    pub per_traffic: bool,
    pub entries: u64,
    pub unique_events: u64,
    pub max_queue_ms: i64,
    pub reversals: u64,
    pub max_reversal_sync_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, Deserialize)]
pub struct PostbackFacts {
    pub offer_id: String,
    pub source: String,
    pub per_traffic: bool,
    pub postbacks: u64,
    pub delivered: u64,
}

#[derive(Debug, Clone, Default, PartialEq, clickhouse::Row, Deserialize)]
pub struct ReconFacts {
    pub network: String,
    pub mismatch_percent: f64,
    pub compared_lines: u64,
    pub mismatched_lines: u64,
    /// When the latest recon ran.
    pub last_run: String,
}

fn scope(per_traffic: bool, offer: &str, source: &str) -> String {
    let name = |s: &str| {
        if s.is_empty() {
            "(none)".to_owned()
        } else {
            s.to_owned()
        }
    };
    if per_traffic {
        format!("offer {} / source {}", name(offer), name(source))
    } else {
        "all".to_owned()
    }
}

fn verdict(ok: bool) -> Verdict {
    if ok {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The checks of the facts against the thresholds: pure, so that every boundary is tested.
pub fn evaluate(
    t: &GateArgs,
    ledger: &[LedgerFacts],
    postbacks: &[PostbackFacts],
    recon: &[ReconFacts],
) -> Vec<Check> {
    let mut checks = Vec::new();
    let overall = |per_traffic: bool| !per_traffic;
    // Everything first, then each offer and source.
    let mut ledger: Vec<&LedgerFacts> = ledger.iter().collect();
    ledger.sort_by_key(|f| {
        (
            !overall(f.per_traffic),
            f.offer_id.clone(),
            f.source.clone(),
        )
    });
    let mut postbacks: Vec<&PostbackFacts> = postbacks.iter().collect();
    postbacks.sort_by_key(|f| {
        (
            !overall(f.per_traffic),
            f.offer_id.clone(),
            f.source.clone(),
        )
    });

    for p in &postbacks {
        let value = (p.postbacks > 0).then(|| 100.0 * p.delivered as f64 / p.postbacks as f64);
        checks.push(Check {
            scope: scope(p.per_traffic, &p.offer_id, &p.source),
            kpi: Kpi::PostbackSuccess,
            value: value.map(round2),
            unit: "%",
            threshold: format!(">= {}", t.min_postback_success_percent),
            verdict: value.map_or(Verdict::NoData, |v| {
                verdict(v >= t.min_postback_success_percent)
            }),
            detail: format!("{} of {} postbacks delivered", p.delivered, p.postbacks),
        });
    }
    if postbacks.iter().all(|p| p.per_traffic) {
        checks.push(Check {
            scope: "all".into(),
            kpi: Kpi::PostbackSuccess,
            value: None,
            unit: "%",
            threshold: format!(">= {}", t.min_postback_success_percent),
            verdict: Verdict::NoData,
            detail: "no postback was attempted in the window".into(),
        });
    }

    let worst = recon
        .iter()
        .max_by(|a, b| a.mismatch_percent.total_cmp(&b.mismatch_percent));
    let mismatch_threshold = format!("< {}", t.max_mismatch_percent);
    checks.push(Check {
        scope: "all".into(),
        kpi: Kpi::Mismatch,
        value: worst.map(|r| round2(r.mismatch_percent)),
        unit: "%",
        threshold: mismatch_threshold.clone(),
        // Unlike the other KPIs, no data fails: the checklist expands only after a
        // reconciliation has shown the mismatch.
        verdict: worst.map_or(Verdict::Fail, |r| {
            verdict(r.mismatch_percent < t.max_mismatch_percent)
        }),
        detail: match worst {
            Some(r) => format!("the worst network's latest recon: network {}", r.network),
            None => "no trackctl recon covers the window: run one per network".into(),
        },
    });
    for r in recon {
        checks.push(Check {
            scope: format!("network {}", r.network),
            kpi: Kpi::Mismatch,
            value: Some(round2(r.mismatch_percent)),
            unit: "%",
            threshold: mismatch_threshold.clone(),
            verdict: verdict(r.mismatch_percent < t.max_mismatch_percent),
            detail: format!(
                "{} of {} lines differ (recon of {})",
                r.mismatched_lines, r.compared_lines, r.last_run
            ),
        });
    }

    for l in &ledger {
        let scope = scope(l.per_traffic, &l.offer_id, &l.source);
        let duplicated = l.entries.saturating_sub(l.unique_events);
        let duplicates = (l.entries > 0).then(|| 100.0 * duplicated as f64 / l.entries as f64);
        checks.push(Check {
            scope: scope.clone(),
            kpi: Kpi::DuplicateCounted,
            value: duplicates.map(round2),
            unit: "%",
            threshold: format!("<= {}", t.max_duplicate_percent),
            verdict: duplicates.map_or(Verdict::NoData, |v| verdict(v <= t.max_duplicate_percent)),
            detail: format!("{duplicated} of {} entries repeat an event_id", l.entries),
        });
        let queue_minutes = l.max_queue_ms as f64 / 60_000.0;
        checks.push(Check {
            scope: scope.clone(),
            kpi: Kpi::QueueRecovery,
            value: (l.entries > 0).then(|| round2(queue_minutes)),
            unit: "min",
            threshold: format!("<= {}", t.max_queue_recovery_minutes),
            verdict: if l.entries == 0 {
                Verdict::NoData
            } else {
                verdict(l.max_queue_ms <= t.max_queue_recovery_minutes as i64 * 60_000)
            },
            detail: "longest wait from ingest's acceptance to the ledger".into(),
        });
        checks.push(Check {
            scope,
            kpi: Kpi::RefundSync,
            value: (l.reversals > 0).then(|| round2(l.max_reversal_sync_ms as f64 / 3_600_000.0)),
            unit: "h",
            threshold: format!("<= {}", t.max_refund_sync_hours),
            verdict: if l.reversals == 0 {
                Verdict::NoData
            } else {
                verdict(l.max_reversal_sync_ms <= t.max_refund_sync_hours as i64 * 3_600_000)
            },
            detail: format!(
                "the slowest of {} refunds and chargebacks, from happening to reaching us",
                l.reversals
            ),
        });
    }
    checks
}

fn day(d: NaiveDate) -> String {
    format!("toDate('{}')", d.format("%Y-%m-%d"))
}

/// Reads the facts of the window and evaluates them.
pub async fn run(args: &GateArgs, warehouse: &Warehouse) -> anyhow::Result<Gate> {
    let to = args.to.unwrap_or_else(|| Utc::now().date_naive());
    let from = to - chrono::Duration::days(i64::from(args.days) - 1);
    let ch = warehouse.client()?;
    let ledger: Vec<LedgerFacts> = ch
        .query(&format!(
            "SELECT offer_id, source, grouping(offer_id, source) = 0 AS per_traffic,
                    count() AS entries, uniqExact(event_id) AS unique_events,
                    max(dateDiff('millisecond', received_at, recorded_at)) AS max_queue_ms,
                    countIf(event_name IN ('REFUND', 'CHARGEBACK')) AS reversals,
                    maxIf(dateDiff('millisecond', occurred_at, received_at),
                          event_name IN ('REFUND', 'CHARGEBACK')) AS max_reversal_sync_ms
             FROM credited_entries
             WHERE toDate(received_at) BETWEEN {} AND {}
             GROUP BY GROUPING SETS ((offer_id, source), ())",
            day(from),
            day(to)
        ))
        .fetch_all()
        .await
        .context("reading the ledger (has the sink applied its migrations?)")?;
    let postbacks: Vec<PostbackFacts> = ch
        .query(&format!(
            "SELECT ifNull(c.offer_id, '') AS offer_id, ifNull(c.source, '') AS source,
                    grouping(offer_id, source) = 0 AS per_traffic,
                    uniqExact(a.destination, a.idempotency_key) AS postbacks,
                    uniqExactIf(a.destination, a.idempotency_key, a.outcome = 'DELIVERED') AS delivered
             FROM postback_attempts AS a
             LEFT JOIN
             (
                 SELECT event_id, any(offer_id) AS offer_id, any(source) AS source
                 FROM credited_entries GROUP BY event_id
             ) AS c ON a.idempotency_key = c.event_id
             WHERE toDate(a.attempted_at) BETWEEN {} AND {} AND NOT a.is_test
             GROUP BY GROUPING SETS ((offer_id, source), ())
             HAVING postbacks > 0",
            day(from),
            day(to)
        ))
        .fetch_all()
        .await
        .context("reading postback_attempts")?;
    let recon: Vec<ReconFacts> = ch
        .query(&format!(
            "SELECT network, argMax(mismatch_percent, run_at) AS mismatch_percent,
                    argMax(compared_lines, run_at) AS compared_lines,
                    argMax(mismatched_lines, run_at) AS mismatched_lines,
                    toString(max(run_at)) AS last_run
             FROM recon_results
             WHERE to_day >= {} AND from_day <= {}
             GROUP BY network ORDER BY network",
            day(from),
            day(to)
        ))
        .fetch_all()
        .await
        .context("reading recon_results")?;
    let checks = evaluate(args, &ledger, &postbacks, &recon);
    let verdict = if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    Ok(Gate {
        from,
        to,
        thresholds: args.clone(),
        checks,
        verdict,
    })
}

/// The checks as a table for a terminal.
pub fn table(g: &Gate) -> String {
    let mut out = format!(
        "Gate over {} to {} ({} days)\n\n",
        g.from, g.to, g.thresholds.days
    );
    let width = g
        .checks
        .iter()
        .map(|c| c.scope.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let _ = writeln!(
        out,
        "{:<width$}  {:<26} {:>10}  {:<10} {:<8} detail",
        "scope", "KPI", "value", "threshold", "verdict"
    );
    for c in &g.checks {
        let value = c
            .value
            .map_or("-".to_owned(), |v| format!("{v:.2} {}", c.unit));
        let _ = writeln!(
            out,
            "{:<width$}  {:<26} {:>10}  {:<10} {:<8} {}",
            c.scope,
            c.kpi.label(),
            value,
            format!("{} {}", c.threshold, c.unit),
            c.verdict.as_str(),
            c.detail
        );
    }
    let failed = g
        .checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .count();
    let _ = writeln!(
        out,
        "\nVerdict: {} ({failed} of {} checks failed)",
        g.verdict.as_str(),
        g.checks.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gate: GateArgs,
    }

    fn defaults() -> GateArgs {
        GateArgs::defaults()
    }

    fn verdict_of(checks: &[Check], scope: &str, kpi: Kpi) -> Verdict {
        checks
            .iter()
            .find(|c| c.scope == scope && c.kpi == kpi)
            .unwrap_or_else(|| panic!("no {kpi:?} check for {scope}: {checks:#?}"))
            .verdict
    }

    fn traffic(offer: &str, facts: LedgerFacts) -> LedgerFacts {
        LedgerFacts {
            offer_id: offer.into(),
            source: "fb".into(),
            per_traffic: true,
            ..facts
        }
    }

    #[test]
    fn each_threshold_passes_at_its_bound_and_fails_beyond() {
        let t = defaults();
        let at = LedgerFacts {
            entries: 200,
            unique_events: 199,
            max_queue_ms: 60 * 60_000,
            reversals: 1,
            max_reversal_sync_ms: 24 * 3_600_000,
            ..LedgerFacts::default()
        };
        let beyond = LedgerFacts {
            entries: 1000,
            unique_events: 994,
            max_queue_ms: 60 * 60_000 + 1,
            reversals: 1,
            max_reversal_sync_ms: 24 * 3_600_000 + 1,
            ..LedgerFacts::default()
        };
        let postbacks = [
            PostbackFacts {
                offer_id: "at".into(),
                source: "fb".into(),
                per_traffic: true,
                postbacks: 100,
                delivered: 97,
            },
            PostbackFacts {
                offer_id: "beyond".into(),
                source: "fb".into(),
                per_traffic: true,
                postbacks: 1000,
                delivered: 969,
            },
        ];
        let recon = [
            ReconFacts {
                network: "clickbank".into(),
                mismatch_percent: 2.99,
                ..ReconFacts::default()
            },
            ReconFacts {
                network: "digistore24".into(),
                mismatch_percent: 3.0,
                ..ReconFacts::default()
            },
        ];
        let checks = evaluate(
            &t,
            &[traffic("at", at), traffic("beyond", beyond)],
            &postbacks,
            &recon,
        );
        let (at, beyond) = ("offer at / source fb", "offer beyond / source fb");
        for kpi in [
            Kpi::PostbackSuccess,
            Kpi::DuplicateCounted,
            Kpi::QueueRecovery,
            Kpi::RefundSync,
        ] {
            assert_eq!(verdict_of(&checks, at, kpi), Verdict::Pass, "{kpi:?}");
            assert_eq!(verdict_of(&checks, beyond, kpi), Verdict::Fail, "{kpi:?}");
        }
        assert_eq!(
            verdict_of(&checks, "network clickbank", Kpi::Mismatch),
            Verdict::Pass
        );
        assert_eq!(
            verdict_of(&checks, "network digistore24", Kpi::Mismatch),
            Verdict::Fail
        );
        // The worst network decides the overall mismatch.
        assert_eq!(verdict_of(&checks, "all", Kpi::Mismatch), Verdict::Fail);
    }

    #[test]
    fn no_data_neither_passes_nor_fails_but_a_missing_recon_fails() {
        let t = defaults();
        let quiet = LedgerFacts {
            entries: 10,
            unique_events: 10,
            ..LedgerFacts::default()
        };
        let checks = evaluate(&t, &[quiet], &[], &[]);
        assert_eq!(verdict_of(&checks, "all", Kpi::RefundSync), Verdict::NoData);
        assert_eq!(
            verdict_of(&checks, "all", Kpi::PostbackSuccess),
            Verdict::NoData
        );
        assert_eq!(
            verdict_of(&checks, "all", Kpi::QueueRecovery),
            Verdict::Pass
        );
        assert_eq!(verdict_of(&checks, "all", Kpi::Mismatch), Verdict::Fail);
    }

    #[test]
    fn thresholds_are_configurable() {
        let t = Cli::parse_from([
            "gate",
            "--min-postback-success-percent=99",
            "--max-queue-recovery-minutes=5",
        ])
        .gate;
        let facts = LedgerFacts {
            entries: 1,
            unique_events: 1,
            max_queue_ms: 6 * 60_000,
            ..LedgerFacts::default()
        };
        let postbacks = PostbackFacts {
            postbacks: 100,
            delivered: 98,
            ..PostbackFacts::default()
        };
        let checks = evaluate(&t, &[facts], &[postbacks], &[]);
        assert_eq!(
            verdict_of(&checks, "all", Kpi::QueueRecovery),
            Verdict::Fail
        );
        assert_eq!(
            verdict_of(&checks, "all", Kpi::PostbackSuccess),
            Verdict::Fail
        );
    }
}
