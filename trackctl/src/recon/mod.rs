//! `trackctl recon`: a network's payout report against the ledger, for a date range.

pub mod compare;
pub mod render;
pub mod report;

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Args;
use rust_decimal::Decimal;

use crate::warehouse::{decimal, Warehouse};
use compare::{Category, Comparison};
use report::{Compare, Line, LineKind, Mapping};

#[derive(Args, Debug, Clone)]
pub struct ReconArgs {
    /// The network's CSV export.
    pub report: PathBuf,
    /// Its shape: clickbank, digistore24, or a [report.<name>] table of --config.
    #[arg(long)]
    pub shape: String,
    /// Recon configuration with generic report mappings.
    #[arg(
        long,
        env = "TRACKCTL_RECON_CONFIG",
        default_value = "config/recon.toml"
    )]
    pub config: PathBuf,
    /// First day compared (UTC, inclusive).
    #[arg(long)]
    pub from: NaiveDate,
    /// Last day compared (UTC, inclusive).
    #[arg(long)]
    pub to: NaiveDate,
    /// Largest amount difference still counted as a match.
    #[arg(long, default_value = "0.01")]
    pub tolerance: Decimal,
    /// Where the CSV and HTML reports are written.
    #[arg(long, default_value = "recon")]
    pub out_dir: PathBuf,
}

/// The KPIs of DOMAIN.md, for the network and the range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Kpis {
    /// Compared lines with any discrepancy, percent (target < 3).
    pub mismatch_percent: f64,
    /// Ledger entries counted more than once, percent of entries (target 0).
    pub duplicate_counted_percent: f64,
    /// Repeats the processor absorbed for this network's conversions.
    pub duplicates_absorbed: u64,
    /// Postbacks delivered over postbacks routed, all destinations, percent (target >= 97).
    pub postback_success_percent: Option<f64>,
    /// From the network's reversal time to the ledger receiving it, hours: median and max.
    pub refund_sync_lag_hours: Option<(f64, f64)>,
    /// Reversals in the report that the ledger does not have at all.
    pub reversals_not_synced: usize,
}

#[derive(Debug)]
pub struct Recon {
    pub network: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub comparison: Comparison,
    pub kpis: Kpis,
    pub report_lines_outside_range: usize,
    pub skipped: std::collections::BTreeMap<String, u64>,
    pub unreadable: Vec<report::Unreadable>,
}

fn in_range(t: DateTime<Utc>, from: NaiveDate, to: NaiveDate) -> bool {
    let d = t.date_naive();
    d >= from && d <= to
}

fn day(d: NaiveDate) -> String {
    format!("toDate('{}')", d.format("%Y-%m-%d"))
}

async fn ledger_lines(
    warehouse: &Warehouse,
    mapping: &Mapping,
    from: NaiveDate,
    to: NaiveDate,
) -> anyhow::Result<Vec<Line>> {
    let amount = match mapping.compare {
        Compare::Payout => "payout",
        Compare::Revenue => "revenue",
    };
    let rows = warehouse
        .client()?
        .query(&format!(
            "SELECT order_id, rebill_sequence, event_name, toString(abs(coalesce({amount}, 0))),
                    coalesce(currency, ''), toUnixTimestamp64Milli(occurred_at),
                    toUnixTimestamp64Milli(received_at), event_id
             FROM ledger
             WHERE network = ? AND toDate(occurred_at) BETWEEN {} AND {}
               AND NOT is_test AND NOT status_only AND order_id IS NOT NULL
               AND event_name IN ('SALE', 'REFUND', 'CHARGEBACK')",
            day(from),
            day(to)
        ))
        .bind(&mapping.network)
        .fetch_all::<(
            Option<String>,
            Option<i32>,
            String,
            String,
            String,
            i64,
            i64,
            String,
        )>()
        .await
        .context("reading the ledger")?;
    rows.into_iter()
        .map(
            |(order, seq, name, amount, currency, occurred, received, event_id)| {
                Ok(Line {
                    order_id: order.unwrap_or_default(),
                    sequence: Mapping::sequence_key(&mapping.network, seq),
                    kind: LineKind::from_event_name(&name).context("filtered above")?,
                    amount: decimal(&amount)?,
                    currency,
                    occurred_at: DateTime::from_timestamp_millis(occurred).unwrap_or_default(),
                    event_id: Some(event_id),
                    received_at: DateTime::from_timestamp_millis(received),
                })
            },
        )
        .collect()
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| 100.0 * part as f64 / whole as f64)
}

async fn kpis(
    warehouse: &Warehouse,
    network: &str,
    from: NaiveDate,
    to: NaiveDate,
    comparison: &Comparison,
) -> anyhow::Result<Kpis> {
    let ch = warehouse.client()?;
    let (entries, unique) = ch
        .query(&format!(
            "SELECT count(), uniqExact(event_id) FROM ledger
             WHERE network = ? AND toDate(occurred_at) BETWEEN {} AND {}",
            day(from),
            day(to)
        ))
        .bind(network)
        .fetch_one::<(u64, u64)>()
        .await?;
    let absorbed = ch
        .query(&format!(
            "SELECT count() FROM receipts
             WHERE kind = 'DUPLICATE' AND startsWith(conversion_key, ?)
               AND toDate(received_at) BETWEEN {} AND {}",
            day(from),
            day(to)
        ))
        .bind(format!("{network}/"))
        .fetch_one::<u64>()
        .await?;
    let (postbacks, delivered) = ch
        .query(&format!(
            "SELECT uniqExact(destination, idempotency_key),
                    uniqExactIf(destination, idempotency_key, outcome = 'DELIVERED')
             FROM postback_attempts WHERE toDate(attempted_at) BETWEEN {} AND {}",
            day(from),
            day(to)
        ))
        .fetch_one::<(u64, u64)>()
        .await?;

    let mut lags: Vec<f64> = comparison
        .findings
        .iter()
        .filter(|f| f.line().kind.is_reversal())
        .filter_map(|f| {
            let reported = f.report.as_ref()?.occurred_at;
            let received = f.ledger.as_ref()?.received_at?;
            Some(((received - reported).num_milliseconds().max(0)) as f64 / 3_600_000.0)
        })
        .collect();
    lags.sort_by(f64::total_cmp);
    let refund_sync_lag_hours =
        (!lags.is_empty()).then(|| (lags[lags.len() / 2], lags[lags.len() - 1]));
    Ok(Kpis {
        mismatch_percent: comparison.mismatch_percent(),
        duplicate_counted_percent: percent(entries - unique, entries).unwrap_or(0.0),
        duplicates_absorbed: absorbed,
        postback_success_percent: percent(delivered, postbacks),
        refund_sync_lag_hours,
        reversals_not_synced: comparison
            .findings
            .iter()
            .filter(|f| f.category == Category::MissingInLedger && f.line().kind.is_reversal())
            .count(),
    })
}

/// Reads the report, compares it with the ledger and computes the KPIs.
pub async fn run(args: &ReconArgs, warehouse: &Warehouse) -> anyhow::Result<Recon> {
    anyhow::ensure!(
        args.from <= args.to,
        "--from {} is after --to {}",
        args.from,
        args.to
    );
    let config = args.config.exists().then_some(args.config.as_path());
    let mapping = Mapping::named(&args.shape, config)?;
    let bytes = std::fs::read(&args.report)
        .with_context(|| format!("cannot read the report {}", args.report.display()))?;
    let report = report::read(&bytes, &mapping)
        .with_context(|| format!("{} is not a {} report", args.report.display(), args.shape))?;
    let (inside, outside): (Vec<Line>, Vec<Line>) = report
        .lines
        .into_iter()
        .partition(|l| in_range(l.occurred_at, args.from, args.to));
    let ledger = ledger_lines(warehouse, &mapping, args.from, args.to).await?;
    let comparison = compare::compare(&inside, &ledger, args.tolerance);
    let kpis = kpis(warehouse, &mapping.network, args.from, args.to, &comparison).await?;
    let recon = Recon {
        network: mapping.network,
        from: args.from,
        to: args.to,
        comparison,
        kpis,
        report_lines_outside_range: outside.len(),
        skipped: report.skipped,
        unreadable: report.unreadable,
    };
    store(warehouse, &recon, args).await?;
    Ok(recon)
}

#[derive(Debug, clickhouse::Row, serde::Serialize)]
struct ReconResult<'a> {
    #[serde(with = "clickhouse::serde::chrono::datetime64::millis")]
    run_at: DateTime<Utc>,
    network: &'a str,
    shape: &'a str,
    report: String,
    /// Days since 1970-01-01 (`Date`).
    from_day: u16,
    to_day: u16,
    compared_lines: u64,
    mismatched_lines: u64,
    mismatch_percent: f64,
    reversals_not_synced: u64,
    refund_sync_lag_p50_hours: Option<f64>,
    refund_sync_lag_max_hours: Option<f64>,
}

fn days_since_epoch(d: NaiveDate) -> u16 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
    u16::try_from((d - epoch).num_days().max(0)).unwrap_or(u16::MAX)
}

/// Keeps the run's result in ClickHouse (`recon_results`), where `trackctl gate` reads the
/// latest mismatch of each network.
async fn store(warehouse: &Warehouse, recon: &Recon, args: &ReconArgs) -> anyhow::Result<()> {
    let compared = recon.comparison.findings.len() as u64;
    let matched = recon.comparison.count(Category::Matched) as u64;
    let mut insert = warehouse
        .client()?
        .insert::<ReconResult>("recon_results")
        .await?;
    insert
        .write(&ReconResult {
            run_at: Utc::now(),
            network: &recon.network,
            shape: &args.shape,
            report: args.report.display().to_string(),
            from_day: days_since_epoch(recon.from),
            to_day: days_since_epoch(recon.to),
            compared_lines: compared,
            mismatched_lines: compared - matched,
            mismatch_percent: recon.kpis.mismatch_percent,
            reversals_not_synced: recon.kpis.reversals_not_synced as u64,
            refund_sync_lag_p50_hours: recon.kpis.refund_sync_lag_hours.map(|l| l.0),
            refund_sync_lag_max_hours: recon.kpis.refund_sync_lag_hours.map(|l| l.1),
        })
        .await?;
    insert
        .end()
        .await
        .context("storing the result in recon_results (has the sink applied its migrations?)")
}

/// Writes `<out_dir>/recon-<network>-<from>-<to>.{csv,html}`; returns both paths.
pub fn write_reports(
    recon: &Recon,
    out_dir: &std::path::Path,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let stem = format!("recon-{}-{}-{}", recon.network, recon.from, recon.to);
    let csv_path = out_dir.join(format!("{stem}.csv"));
    let html_path = out_dir.join(format!("{stem}.html"));
    std::fs::write(&csv_path, render::csv(recon)?)
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    std::fs::write(&html_path, render::html(recon))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    Ok((csv_path, html_path))
}
