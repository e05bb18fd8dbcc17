//! The reconciliation as a terminal table, a CSV of every compared line, and a
//! self-contained HTML page (inline CSS and SVG, nothing fetched) with the daily chart.

use std::fmt::Write as _;

use rust_decimal::prelude::ToPrimitive;

use super::compare::{Category, Finding};
use super::report::Line;
use super::{Kpis, Recon};

/// DOMAIN.md's healthy targets.
const MISMATCH_TARGET: f64 = 3.0;
const DUPLICATE_TARGET: f64 = 0.5;
const POSTBACK_TARGET: f64 = 97.0;
const REFUND_SYNC_TARGET_HOURS: f64 = 24.0;

struct Kpi {
    name: &'static str,
    value: String,
    target: &'static str,
    healthy: Option<bool>,
}

fn kpi_rows(k: &Kpis) -> Vec<Kpi> {
    vec![
        Kpi {
            name: "Ledger vs report mismatch",
            value: format!("{:.2}%", k.mismatch_percent),
            target: "< 3%",
            healthy: Some(k.mismatch_percent < MISMATCH_TARGET),
        },
        Kpi {
            name: "Duplicate counted events",
            value: format!(
                "{:.2}%; repeats absorbed: {}",
                k.duplicate_counted_percent, k.duplicates_absorbed
            ),
            target: "<= 0.5% (goal 0)",
            healthy: Some(k.duplicate_counted_percent <= DUPLICATE_TARGET),
        },
        Kpi {
            name: "Postback success rate",
            value: k
                .postback_success_percent
                .map_or("no postbacks".into(), |p| format!("{p:.2}%")),
            target: ">= 97%",
            healthy: k.postback_success_percent.map(|p| p >= POSTBACK_TARGET),
        },
        Kpi {
            name: "Refund sync lag",
            value: match k.refund_sync_lag_hours {
                Some((median, max)) => format!(
                    "median {median:.1} h, max {max:.1} h; {} not synced",
                    k.reversals_not_synced
                ),
                None => format!(
                    "no reversals compared; {} not synced",
                    k.reversals_not_synced
                ),
            },
            target: "daily or faster",
            healthy: match k.refund_sync_lag_hours {
                Some((_, max)) => {
                    Some(max <= REFUND_SYNC_TARGET_HOURS && k.reversals_not_synced == 0)
                }
                None => (k.reversals_not_synced > 0).then_some(false),
            },
        },
    ]
}

fn mark(healthy: Option<bool>) -> &'static str {
    match healthy {
        Some(true) => "ok",
        Some(false) => "ATTENTION",
        None => "-",
    }
}

pub fn table(r: &Recon) -> String {
    let mut out = String::new();
    let (report_total, ledger_total) = r.comparison.totals();
    let _ = writeln!(
        out,
        "Reconciliation of {} from {} to {} (UTC days)\n",
        r.network, r.from, r.to
    );
    for c in Category::ALL {
        let _ = writeln!(out, "  {:<18} {:>6}", c.as_str(), r.comparison.count(c));
    }
    let _ = writeln!(
        out,
        "\n  net amount        report {report_total:.2}, ledger {ledger_total:.2}"
    );
    if r.report_lines_outside_range > 0 {
        let _ = writeln!(
            out,
            "  report lines outside the range, not compared: {}",
            r.report_lines_outside_range
        );
    }
    for (kind, n) in &r.skipped {
        let _ = writeln!(out, "  report lines of type {kind:?}, not compared: {n}");
    }
    for u in &r.unreadable {
        let _ = writeln!(out, "  UNREADABLE report line {}: {}", u.line, u.reason);
    }
    let _ = writeln!(out, "\nKPIs");
    for k in kpi_rows(&r.kpis) {
        let _ = writeln!(
            out,
            "  {:<27} {:<42} target {:<17} {}",
            k.name,
            k.value,
            k.target,
            mark(k.healthy)
        );
    }
    out
}

fn side(l: Option<&Line>) -> [String; 4] {
    match l {
        Some(l) => [
            l.kind.as_str().into(),
            l.amount.to_string(),
            l.currency.clone(),
            l.occurred_at.to_rfc3339(),
        ],
        None => Default::default(),
    }
}

pub fn csv(r: &Recon) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "category",
        "order_id",
        "sequence",
        "report_type",
        "report_amount",
        "report_currency",
        "report_date",
        "ledger_type",
        "ledger_amount",
        "ledger_currency",
        "ledger_date",
        "ledger_event_id",
    ])?;
    for f in &r.comparison.findings {
        let line = f.line();
        let mut row = vec![
            f.category.as_str().to_owned(),
            line.order_id.clone(),
            line.sequence.map(|s| s.to_string()).unwrap_or_default(),
        ];
        row.extend(side(f.report.as_ref()));
        row.extend(side(f.ledger.as_ref()));
        row.push(
            f.ledger
                .as_ref()
                .and_then(|l| l.event_id.clone())
                .unwrap_or_default(),
        );
        w.write_record(&row)?;
    }
    Ok(w.into_inner()?)
}

/// Text made safe inside HTML elements and attributes.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Grouped bars, report beside ledger, per day; negative days go below the axis.
fn chart(r: &Recon) -> String {
    let days = r.comparison.daily();
    let (w, h, pad) = (860.0, 300.0, 48.0);
    if days.is_empty() {
        return "<p>No lines in the range.</p>".into();
    }
    let max = days
        .values()
        .flat_map(|(a, b)| {
            [
                a.to_f64().unwrap_or(0.0).abs(),
                b.to_f64().unwrap_or(0.0).abs(),
            ]
        })
        .fold(1.0_f64, f64::max);
    let has_negative = days
        .values()
        .any(|(a, b)| a.is_sign_negative() || b.is_sign_negative());
    let plot_h = h - 2.0 * pad;
    let zero_y = if has_negative {
        pad + plot_h / 2.0
    } else {
        h - pad
    };
    let scale = if has_negative {
        plot_h / 2.0 / max
    } else {
        plot_h / max
    };
    let slot = (w - 2.0 * pad) / days.len() as f64;
    let bar = (slot * 0.35).min(40.0);
    // Amounts over the bars while they fit; past a fortnight only the tooltips carry them.
    let labelled = days.len() <= 16;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"Daily net amount, ledger vs report\">"
    );
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{zero_y}\" x2=\"{}\" y2=\"{zero_y}\" stroke=\"#555\"/>",
        w - pad
    );
    let _ = write!(
        svg,
        "<text x=\"{pad}\" y=\"{}\" font-size=\"12\" fill=\"#555\">max {max:.2}</text>",
        pad - 16.0
    );
    for (i, (d, (report, ledger))) in days.iter().enumerate() {
        let x = pad + slot * i as f64 + slot / 2.0;
        for (j, (value, color)) in [
            (report.to_f64().unwrap_or(0.0), "#8a63d2"),
            (ledger.to_f64().unwrap_or(0.0), "#2a9d8f"),
        ]
        .into_iter()
        .enumerate()
        {
            let len = value.abs() * scale;
            let y = if value >= 0.0 { zero_y - len } else { zero_y };
            let bx = x - bar + j as f64 * bar;
            let _ = write!(
                svg,
                "<rect x=\"{bx:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{len:.1}\" fill=\"{color}\"><title>{d} {}: {value:.2}</title></rect>",
                bar - 2.0,
                if j == 0 { "report" } else { "ledger" }
            );
            if labelled {
                let ly = if value >= 0.0 {
                    y - 4.0
                } else {
                    y + len + 12.0
                };
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{ly:.1}\" font-size=\"10\" fill=\"#333\" text-anchor=\"middle\">{value:.2}</text>",
                    bx + (bar - 2.0) / 2.0
                );
            }
        }
        let _ = write!(
            svg,
            "<text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            h - pad + 16.0,
            d.format("%m-%d")
        );
    }
    svg += "</svg>";
    svg
}

fn finding_row(f: &Finding) -> String {
    let cell = |l: Option<&Line>| {
        l.map_or("<td>-</td><td></td>".to_owned(), |l| {
            format!(
                "<td>{}</td><td class=num>{:.2} {}</td>",
                l.kind.as_str(),
                l.amount,
                escape(&l.currency)
            )
        })
    };
    format!(
        "<tr class=\"{}\"><td>{}</td><td>{}{}</td>{}{}</tr>",
        f.category.as_str(),
        f.category.as_str().replace('_', " "),
        escape(&f.line().order_id),
        f.line()
            .sequence
            .map(|s| format!(" #{s}"))
            .unwrap_or_default(),
        cell(f.report.as_ref()),
        cell(f.ledger.as_ref()),
    )
}

pub fn html(r: &Recon) -> String {
    let (report_total, ledger_total) = r.comparison.totals();
    let mut page = String::new();
    let title = format!("Reconciliation: {} {} to {}", r.network, r.from, r.to);
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}}\
h1{{font-size:22px;margin:0 0 4px}} .sub{{color:#666;margin-bottom:20px}}\
.cards{{display:flex;gap:12px;flex-wrap:wrap;margin-bottom:20px}}\
.card{{background:#fff;border:1px solid #ddd;border-left:6px solid #999;border-radius:6px;padding:10px 14px;min-width:190px}}\
.card.ok{{border-left-color:#2a9d8f}} .card.bad{{border-left-color:#e76f51}}\
.card .v{{font-size:20px;font-weight:600}} .card .n,.card .t{{color:#666;font-size:12px}}\
.counts td{{padding:2px 12px 2px 0}} table.lines{{border-collapse:collapse;background:#fff;font-size:13px}}\
table.lines td,table.lines th{{border:1px solid #ddd;padding:3px 8px}} .num{{text-align:right}}\
tr.matched{{color:#888}} tr.missing_in_ledger td:first-child,tr.missing_in_report td:first-child{{color:#c0392b;font-weight:600}}\
tr.amount_differs td:first-child,tr.status_differs td:first-child{{color:#d35400;font-weight:600}}\
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}\
</style></head><body><h1>{t}</h1><div class=sub>UTC days, generated {now}. Net amount: report {report_total:.2}, ledger {ledger_total:.2}.</div>",
        t = escape(&title),
        now = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );
    page += "<div class=cards>";
    for k in kpi_rows(&r.kpis) {
        let class = match k.healthy {
            Some(true) => "ok",
            Some(false) => "bad",
            None => "",
        };
        let _ = write!(
            page,
            "<div class=\"card {class}\"><div class=n>{}</div><div class=v>{}</div><div class=t>target {}</div></div>",
            k.name,
            escape(&k.value),
            escape(k.target)
        );
    }
    page += "</div><h2>Daily net amount</h2><div class=legend><span style=\"background:#8a63d2\"></span>report<span style=\"background:#2a9d8f\"></span>ledger</div>";
    page += &chart(r);
    page += "<h2>Lines</h2><table class=counts>";
    for c in Category::ALL {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=num>{}</td></tr>",
            c.as_str().replace('_', " "),
            r.comparison.count(c)
        );
    }
    page += "</table>";
    if !r.unreadable.is_empty() {
        page += "<h2>Unreadable report lines</h2><ul>";
        for u in &r.unreadable {
            let _ = write!(page, "<li>line {}: {}</li>", u.line, escape(&u.reason));
        }
        page += "</ul>";
    }
    page += "<h2>Discrepancies</h2><table class=lines><tr><th>category</th><th>order</th><th colspan=2>report</th><th colspan=2>ledger</th></tr>";
    let mut discrepancies: Vec<&Finding> = r
        .comparison
        .findings
        .iter()
        .filter(|f| f.category != Category::Matched)
        .collect();
    discrepancies.sort_by_key(|f| (f.category, f.line().order_id.clone()));
    for f in discrepancies.iter().take(1000) {
        page += &finding_row(f);
    }
    if discrepancies.len() > 1000 {
        let _ = write!(
            page,
            "<tr><td colspan=6>... {} more in the CSV</td></tr>",
            discrepancies.len() - 1000
        );
    }
    page += "</table></body></html>\n";
    page
}
