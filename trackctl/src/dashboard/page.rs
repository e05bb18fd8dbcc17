//! The dashboard as one HTML page with inline SVG charts; every value from ClickHouse is
//! escaped (offer, source and destination names come from producers).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::data::View;
use crate::recon::render::escape;

/// Bars per day, negative ones below the axis; the amounts as tooltips and, while they fit,
/// over the bars.
fn bars(label: &str, points: &[(String, f64)]) -> String {
    let (w, h, pad) = (860.0, 220.0, 40.0);
    if points.is_empty() {
        return "<p class=none>No data in the window.</p>".into();
    }
    let max = points.iter().map(|(_, v)| v.abs()).fold(0.0, f64::max);
    // All zero: flat bars on the axis, not a division by zero.
    let max = if max > 0.0 { max } else { 1.0 };
    let negative = points.iter().any(|(_, v)| *v < 0.0);
    let plot = h - 2.0 * pad;
    let zero = if negative { pad + plot / 2.0 } else { h - pad };
    let scale = if negative {
        plot / 2.0 / max
    } else {
        plot / max
    };
    let slot = (w - 2.0 * pad) / points.len() as f64;
    let bar = (slot * 0.7).min(36.0);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">\
         <line x1=\"{pad}\" y1=\"{zero}\" x2=\"{}\" y2=\"{zero}\" stroke=\"#555\"/>",
        escape(label),
        w - pad
    );
    for (i, (day, value)) in points.iter().enumerate() {
        let x = pad + slot * i as f64 + (slot - bar) / 2.0;
        let len = value.abs() * scale;
        let y = if *value >= 0.0 { zero - len } else { zero };
        let color = if *value >= 0.0 { "#2a9d8f" } else { "#e76f51" };
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{len:.1}\" fill=\"{color}\"><title>{}: {value:.2}</title></rect>",
            escape(day)
        );
        if points.len() <= 16 {
            let ly = if *value >= 0.0 {
                y - 4.0
            } else {
                y + len + 12.0
            };
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{ly:.1}\" font-size=\"10\" text-anchor=\"middle\">{value:.2}</text>",
                x + bar / 2.0
            );
        }
        if points.len() <= 16 || i % (points.len() / 8).max(1) == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                x + bar / 2.0,
                h - pad + 14.0,
                escape(day.get(5..).unwrap_or(day))
            );
        }
    }
    svg + "</svg>"
}

fn number(text: &str) -> f64 {
    text.parse().unwrap_or(0.0)
}

fn cell(text: &str) -> String {
    format!("<td class=num>{}</td>", escape(text))
}

fn optional(text: &Option<String>) -> String {
    cell(text.as_deref().unwrap_or("-"))
}

pub fn render(v: &View) -> String {
    let mut p = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Trackledger</title><style>\
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;background:#fafafa}}\
h1{{font-size:22px;margin:0 0 4px}} h2{{font-size:17px;margin:26px 0 8px}} .sub,.none{{color:#666}}\
table{{border-collapse:collapse;background:#fff;font-size:13px}} td,th{{border:1px solid #ddd;padding:3px 8px}}\
.num{{text-align:right}} .PASS{{color:#2a7d4f;font-weight:600}} .FAIL{{color:#c0392b;font-weight:600}}\
.verdict{{font-size:18px;margin:6px 0}}\
</style></head><body><h1>Trackledger</h1><div class=sub>The last {days} UTC days (postbacks and the gate: 7), read from ClickHouse at {now}. Amounts are never added across currencies.</div>",
        days = v.days,
        now = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
    );

    p += "<h2>Net revenue by day</h2>";
    let mut by_currency: BTreeMap<&str, Vec<(String, f64)>> = BTreeMap::new();
    for d in &v.daily_net {
        by_currency
            .entry(d.currency.as_str())
            .or_default()
            .push((d.date.clone(), number(&d.net)));
    }
    if by_currency.is_empty() {
        p += "<p class=none>No money in the window.</p>";
    }
    for (currency, points) in &by_currency {
        let total: f64 = points.iter().map(|(_, v)| v).sum();
        let _ = write!(
            p,
            "<h3>{c}: {total:.2} net</h3>{}",
            bars(&format!("Net revenue per day in {currency}"), points),
            c = escape(currency)
        );
    }
    let reporting = v
        .daily_reported
        .iter()
        .find_map(|d| d.reporting_currency.clone())
        .unwrap_or_default();
    let missing: u64 = v.daily_reported.iter().map(|d| d.missing).sum();
    let _ = write!(
        p,
        "<h3>All currencies in {}{}</h3>",
        escape(&reporting),
        if missing > 0 {
            format!(" ({missing} entries without an exchange rate are left out: import the rates)")
        } else {
            String::new()
        }
    );
    let reported: Vec<(String, f64)> = v
        .daily_reported
        .iter()
        .filter_map(|d| Some((d.date.clone(), number(d.net_rc.as_deref()?))))
        .collect();
    p += &bars(&format!("Net revenue per day in {reporting}"), &reported);

    p += "<h2>EPC by source</h2><p>EPC divides by the clicks that are not suspect (bots, data centres, floods, duplicates).</p><table><tr><th>source</th><th>currency</th><th>clicks</th><th>suspect</th><th>net revenue</th><th>EPC</th></tr>";
    for s in &v.sources {
        let _ = write!(
            p,
            "<tr><td>{}</td><td>{}</td>{}{}{}{}</tr>",
            escape(&s.source),
            escape(&s.currency),
            cell(&s.clicks.to_string()),
            cell(&s.suspect.to_string()),
            cell(&s.net),
            optional(&s.epc)
        );
    }
    p += "</table>";

    p += "<h2>Refunds and chargebacks by offer</h2><table><tr><th>offer</th><th>currency</th><th>sales</th><th>refunds</th><th>chargebacks</th><th>refund rate</th><th>chargeback rate</th><th>reversed</th></tr>";
    for o in &v.offers {
        let _ = write!(
            p,
            "<tr><td>{}</td><td>{}</td>{}{}{}{}{}{}</tr>",
            escape(&o.offer_id),
            escape(&o.currency),
            cell(&o.sales.to_string()),
            cell(&o.refunds.to_string()),
            cell(&o.chargebacks.to_string()),
            optional(&o.refund_rate),
            optional(&o.chargeback_rate),
            cell(&o.reversed)
        );
    }
    p += "</table>";

    p += "<h2>Postback health, 7 days</h2><table><tr><th>destination</th><th>sent</th><th>delivered</th><th>delivery rate</th><th>worst daily p95 (ms)</th><th>dead-lettered</th></tr>";
    for b in &v.postbacks {
        let _ = write!(
            p,
            "<tr><td>{}</td>{}{}{}{}{}</tr>",
            escape(&b.destination),
            cell(&b.sent.to_string()),
            cell(&b.delivered.to_string()),
            optional(&b.rate),
            cell(&format!("{:.0}", b.p95_ms)),
            cell(&b.dead_lettered.to_string())
        );
    }
    p += "</table>";

    p += "<h2>Rollout gate, 7 days</h2>";
    match &v.gate {
        Ok(g) => {
            let verdict = g.verdict.as_str();
            let _ = write!(
                p,
                "<div class=verdict>Verdict: <span class={verdict}>{verdict}</span></div><table><tr><th>scope</th><th>KPI</th><th>value</th><th>threshold</th><th>verdict</th></tr>"
            );
            for c in &g.checks {
                let verdict = c.verdict.as_str();
                let value = c
                    .value
                    .map_or("-".to_owned(), |v| format!("{v:.2} {}", c.unit));
                let _ = write!(
                    p,
                    "<tr><td>{}</td><td>{}</td>{}<td>{} {}</td><td class=\"{}\">{verdict}</td></tr>",
                    escape(&c.scope),
                    c.kpi.label(),
                    cell(&value),
                    escape(&c.threshold),
                    c.unit,
                    verdict.replace(' ', "_")
                );
            }
            p += "</table>";
        }
        Err(e) => {
            let _ = write!(p, "<p class=none>Not evaluated: {}</p>", escape(e));
        }
    }
    p + "</body></html>\n"
}
