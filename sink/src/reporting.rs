//! The settings the analyst views read from ClickHouse itself: the reporting currency and how
//! old an exchange rate may be. The sink writes them at each start, after the migrations; the
//! views use the latest row, so a restart with other flags changes every report at once.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use clickhouse::serde::chrono::datetime64::millis;
use clickhouse::{Client, Row};
use serde::Serialize;

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Reporting")]
pub struct Reporting {
    /// The ISO-4217 currency of the views' `*_rc` columns (daily_stats, cohort_stats).
    #[arg(long, env = "REPORTING_CURRENCY", default_value = "USD", value_parser = currency)]
    pub reporting_currency: String,
    /// A day without its own exchange rate (the ECB publishes none on weekends and holidays)
    /// uses the latest earlier rate at most this many days old; beyond, `*_rc` is NULL and
    /// counted in `missing_rate`.
    #[arg(long, env = "FX_MAX_RATE_AGE_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u16).range(0..=366))]
    pub fx_max_rate_age_days: u16,
}

fn currency(code: &str) -> Result<String, String> {
    schemas::validate::check_currency(code)
        .map(|()| code.to_owned())
        .map_err(|e| e.reason)
}

#[derive(Debug, Row, Serialize)]
struct Settings<'a> {
    #[serde(with = "millis")]
    set_at: DateTime<Utc>,
    currency: &'a str,
    max_rate_age_days: u16,
}

impl Reporting {
    /// Writes the settings for the views; `client` is on the sink's database.
    pub async fn publish(&self, client: &Client) -> anyhow::Result<()> {
        let mut insert = client.insert::<Settings>("reporting_settings").await?;
        insert
            .write(&Settings {
                set_at: Utc::now(),
                currency: &self.reporting_currency,
                max_rate_age_days: self.fx_max_rate_age_days,
            })
            .await?;
        insert.end().await.context("writing reporting_settings")?;
        tracing::info!(
            reporting_currency = %self.reporting_currency,
            fx_max_rate_age_days = self.fx_max_rate_age_days,
            "reporting settings written"
        );
        Ok(())
    }
}
