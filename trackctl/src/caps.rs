//! `trackctl caps status`: how much of each cap its current period has used, read from the
//! capping stage's state changelog (`processor.caps.v1`), which is exact: the counters the
//! processor decides with, as of its last committed transaction.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use schemas::caps::{CapRecord, Caps};
use serde::Serialize;
use telemetry::kafka::KafkaConnection;
use telemetry::topic::read_to_end;

#[derive(Args, Debug, Clone)]
pub struct CapsArgs {
    /// The caps file the processor runs with (its PROCESSOR_CAPS_FILE).
    #[arg(long, env = "PROCESSOR_CAPS_FILE", default_value = "config/caps.toml")]
    pub caps_file: PathBuf,
    /// The capping stage's state changelog.
    #[arg(long, env = "PROCESSOR_CAPS_STATE_TOPIC", default_value = schemas::topics::CAPS_STATE)]
    pub caps_state_topic: String,
    /// The moment whose periods to show (RFC 3339); now by default.
    #[arg(long)]
    pub at: Option<DateTime<Utc>>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One cap's current period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapStatus {
    pub cap: String,
    pub offer_id: String,
    pub affiliate_id: Option<String>,
    pub period: String,
    /// Conversions, or micro-units of the cap's currency.
    pub used_units: i64,
    pub limit_units: i64,
    pub used: String,
    pub limit: String,
    /// Used over limit, in percent; `None` for a limit of 0.
    pub percent: Option<f64>,
    /// Whether the cap is in force at that moment (its `from` and `until`).
    pub in_force: bool,
}

/// The status of every cap of the file at `at`, from the changelog's usage records.
pub fn status(
    caps: &Caps,
    usage: &HashMap<(String, String), i64>,
    at: DateTime<Utc>,
) -> Vec<CapStatus> {
    caps.iter()
        .map(|cap| {
            let period = cap.period_of(at);
            let used = usage
                .get(&(cap.id.clone(), period.clone()))
                .copied()
                .unwrap_or(0);
            let limit = cap.limit.units();
            CapStatus {
                cap: cap.id.clone(),
                offer_id: cap.offer_id.clone(),
                affiliate_id: cap.affiliate_id.clone(),
                used: cap.limit.describe(used),
                limit: cap.limit.describe(limit),
                percent: (limit > 0).then(|| used as f64 * 100.0 / limit as f64),
                in_force: cap.from.is_none_or(|f| at >= f) && cap.until.is_none_or(|u| at < u),
                period,
                used_units: used,
                limit_units: limit,
            }
        })
        .collect()
}

/// The latest usage per (cap, period) in the changelog's records, in their order.
pub fn usage_of(records: &[(Vec<u8>, Vec<u8>)]) -> anyhow::Result<HashMap<(String, String), i64>> {
    let mut usage = HashMap::new();
    for (key, value) in records {
        if let CapRecord::Usage {
            cap,
            period,
            value: Some(u),
        } = CapRecord::decode(key, Some(value)).map_err(anyhow::Error::msg)?
        {
            usage.insert((cap, period), u.used);
        }
    }
    Ok(usage)
}

pub async fn run(kafka: &KafkaConnection, args: &CapsArgs) -> anyhow::Result<Vec<CapStatus>> {
    let caps = Caps::load(&args.caps_file, "--caps-file or PROCESSOR_CAPS_FILE")
        .map_err(anyhow::Error::msg)?;
    kafka.check_async(&[&args.caps_state_topic], None).await?;
    let (k, topic) = (kafka.clone(), args.caps_state_topic.clone());
    let records = tokio::task::spawn_blocking(move || {
        read_to_end(&k, &topic, "trackctl", Duration::from_secs(30))
    })
    .await??;
    let records: Vec<(Vec<u8>, Vec<u8>)> =
        records.into_iter().map(|r| (r.key, r.payload)).collect();
    Ok(status(
        &caps,
        &usage_of(&records)?,
        args.at.unwrap_or_else(Utc::now),
    ))
}

pub fn table(rows: &[CapStatus]) -> String {
    let mut out = format!(
        "{:<24} {:<16} {:<12} {:<10} {:>16} {:>16} {:>7}\n",
        "CAP", "OFFER", "AFFILIATE", "PERIOD", "USED", "LIMIT", "USED%"
    );
    for r in rows {
        let percent = r
            .percent
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}"));
        let note = if r.in_force { "" } else { "  (not in force)" };
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<12} {:<10} {:>16} {:>16} {:>7}{note}",
            r.cap,
            r.offer_id,
            r.affiliate_id.as_deref().unwrap_or("-"),
            r.period,
            r.used,
            r.limit,
            percent
        );
    }
    if rows.is_empty() {
        out.push_str("(the caps file has no caps)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::caps::Usage;

    #[test]
    fn the_current_period_of_each_cap_is_shown_from_the_latest_record() {
        let caps = Caps::parse(
            "[[cap]]\nid = \"d\"\noffer_id = \"o\"\nperiod = \"daily\"\nconversions = 4\n\
             time_zone = \"America/New_York\"\n\
             [[cap]]\nid = \"r\"\noffer_id = \"o\"\naffiliate_id = \"a\"\nperiod = \"total\"\n\
             revenue = \"100\"\ncurrency = \"USD\"\n",
        )
        .unwrap();
        let record = |cap: &str, period: &str, used| {
            let r = CapRecord::Usage {
                cap: cap.into(),
                period: period.into(),
                value: Some(Usage {
                    used,
                    touched_ms: 0,
                }),
            };
            (r.key(), r.value().unwrap())
        };
        let records = [
            record("d", "2026-11-28", 1),
            record("d", "2026-11-28", 3),
            record("d", "2026-11-29", 4),
            record("r", "total", 25_500_000),
        ];
        let usage = usage_of(&records).unwrap();
        // 02:00 UTC on the 29th is still the 28th in New York.
        let at = DateTime::parse_from_rfc3339("2026-11-29T02:00:00Z")
            .unwrap()
            .into();
        let rows = status(&caps, &usage, at);
        assert_eq!(rows[0].period, "2026-11-28");
        assert_eq!((rows[0].used_units, rows[0].limit_units), (3, 4));
        assert_eq!(rows[0].percent, Some(75.0));
        assert_eq!(
            (rows[1].used.as_str(), rows[1].limit.as_str()),
            ("25.5 USD", "100 USD")
        );
        let text = table(&rows);
        assert!(text.contains("25.5 USD"), "{text}");
        assert!(text.lines().nth(1).unwrap().starts_with("d "), "{text}");
    }
}
