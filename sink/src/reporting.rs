//! The settings the analyst views read from ClickHouse itself: the reporting currency, how
//! old an exchange rate may be, and the offers' attribution windows, click-quality thresholds
//! and least click-to-conversion times. The sink writes them at each start, after the
//! migrations; the views use the latest start's, so a restart with other settings changes
//! every report at once.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use clickhouse::serde::chrono::datetime64::millis;
use clickhouse::{Client, Row};
use schemas::offers::{Offers, DEFAULT_OFFERS_FILE};
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
    /// The offers file, for its attribution windows and click-quality thresholds (the file
    /// ingest reads). Default: config/offers.toml when it exists, else a 30-day window for
    /// every offer and no quality thresholds.
    #[arg(long, env = "SINK_OFFERS_FILE")]
    pub offers_file: Option<PathBuf>,
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

#[derive(Debug, Row, Serialize)]
struct Window<'a> {
    #[serde(with = "millis")]
    set_at: DateTime<Utc>,
    /// '' for the default.
    offer_id: &'a str,
    window_days: u32,
}

#[derive(Debug, Row, Serialize)]
struct QualitySettings {
    #[serde(with = "millis")]
    set_at: DateTime<Utc>,
    flood_ip_per_minute: u32,
    flood_sub_id_per_minute: u32,
    flood_affiliate_per_minute: u32,
    duplicate_click_seconds: u32,
}

#[derive(Debug, Row, Serialize)]
struct ConversionMinimum<'a> {
    #[serde(with = "millis")]
    set_at: DateTime<Utc>,
    /// '' for the default.
    offer_id: &'a str,
    min_seconds: u32,
}

impl Reporting {
    /// The offers file: the one named, or the default one if it exists, or none.
    pub fn offers(&self) -> anyhow::Result<Offers> {
        if self.offers_file.is_none() && !Path::new(DEFAULT_OFFERS_FILE).exists() {
            tracing::info!(
                "no offers file ({DEFAULT_OFFERS_FILE} is absent, SINK_OFFERS_FILE unset): every offer gets the default attribution window"
            );
        }
        Offers::load_or_default(self.offers_file.as_deref(), "SINK_OFFERS_FILE")
            .map_err(anyhow::Error::msg)
    }

    /// Writes the settings for the views; `client` is on the sink's database.
    pub async fn publish(&self, client: &Client) -> anyhow::Result<()> {
        let offers = self.offers()?;
        let set_at = Utc::now();
        let mut insert = client.insert::<Settings>("reporting_settings").await?;
        insert
            .write(&Settings {
                set_at,
                currency: &self.reporting_currency,
                max_rate_age_days: self.fx_max_rate_age_days,
            })
            .await?;
        insert.end().await.context("writing reporting_settings")?;
        // One insert: the views never see part of a start's windows.
        let mut insert = client.insert::<Window>("attribution_windows").await?;
        let default = ("", offers.default_window_days());
        for (offer_id, window_days) in std::iter::once(default).chain(offers.windows()) {
            insert
                .write(&Window {
                    set_at,
                    offer_id,
                    window_days,
                })
                .await?;
        }
        insert.end().await.context("writing attribution_windows")?;
        let quality = offers.quality();
        let mut insert = client.insert::<QualitySettings>("quality_settings").await?;
        insert
            .write(&QualitySettings {
                set_at,
                flood_ip_per_minute: quality.flood_clicks_per_minute_per_ip,
                flood_sub_id_per_minute: quality.flood_clicks_per_minute_per_sub_id,
                flood_affiliate_per_minute: quality.flood_clicks_per_minute_per_affiliate,
                duplicate_click_seconds: quality.duplicate_click_seconds,
            })
            .await?;
        insert.end().await.context("writing quality_settings")?;
        let mut insert = client
            .insert::<ConversionMinimum>("conversion_minimums")
            .await?;
        let default = ("", quality.min_conversion_seconds);
        for (offer_id, min_seconds) in std::iter::once(default).chain(offers.conversion_minimums())
        {
            insert
                .write(&ConversionMinimum {
                    set_at,
                    offer_id,
                    min_seconds,
                })
                .await?;
        }
        insert.end().await.context("writing conversion_minimums")?;
        tracing::info!(
            reporting_currency = %self.reporting_currency,
            fx_max_rate_age_days = self.fx_max_rate_age_days,
            default_attribution_window_days = offers.default_window_days(),
            offers_with_their_own_window = offers.windows().count(),
            ?quality,
            "reporting settings written"
        );
        Ok(())
    }
}
