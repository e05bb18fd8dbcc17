//! What the dashboard shows, read from the analyst views (docs/ANALYST_GUIDE.md). Amounts
//! stay decimal text, as ClickHouse computed them; nothing is summed across currencies.

use anyhow::Context;
use clickhouse::Row;
use serde::Deserialize;

use crate::gate::{self, Gate, GateArgs};
use crate::warehouse::Warehouse;

#[derive(Debug, Clone, Row, Deserialize)]
pub struct DailyNet {
    pub date: String,
    pub currency: String,
    pub net: String,
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct DailyReported {
    pub date: String,
    pub reporting_currency: Option<String>,
    pub net_rc: Option<String>,
    pub missing: u64,
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct SourceEpc {
    pub source: String,
    pub currency: String,
    pub clicks: u64,
    pub suspect: u64,
    pub net: String,
    pub epc: Option<String>,
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct OfferRates {
    pub offer_id: String,
    pub currency: String,
    pub sales: u64,
    pub refunds: u64,
    pub chargebacks: u64,
    pub refund_rate: Option<String>,
    pub chargeback_rate: Option<String>,
    pub reversed: String,
}

#[derive(Debug, Clone, Row, Deserialize)]
pub struct PostbackHealth {
    pub destination: String,
    pub sent: u64,
    pub delivered: u64,
    pub rate: Option<String>,
    pub p95_ms: f64,
    pub dead_lettered: u64,
}

/// Everything on the page.
#[derive(Debug)]
pub struct View {
    pub days: u32,
    pub daily_net: Vec<DailyNet>,
    pub daily_reported: Vec<DailyReported>,
    pub sources: Vec<SourceEpc>,
    pub offers: Vec<OfferRates>,
    pub postbacks: Vec<PostbackHealth>,
    /// The gate with its default thresholds, or why it could not be evaluated.
    pub gate: Result<Gate, String>,
}

impl View {
    pub async fn read(warehouse: &Warehouse, days: u32) -> anyhow::Result<Self> {
        let ch = warehouse.client()?;
        let since = format!("today() - {}", days.saturating_sub(1));
        let daily_net = ch
            .query(&format!(
                "SELECT toString(day) AS date, currency, toString(sum(net_revenue)) AS net
                 FROM daily_stats WHERE day >= {since} AND currency != ''
                 GROUP BY day, currency ORDER BY currency, day"
            ))
            .fetch_all()
            .await
            .context("net revenue by day")?;
        let daily_reported = ch
            .query(&format!(
                "SELECT toString(day) AS date, any(reporting_currency) AS reporting_currency,
                        toString(sum(net_revenue_rc)) AS net_rc, sum(missing_rate) AS missing
                 FROM daily_stats WHERE day >= {since} GROUP BY day ORDER BY day"
            ))
            .fetch_all()
            .await
            .context("net revenue in the reporting currency")?;
        let sources = ch
            .query(&format!(
                "SELECT c.source AS source, m.currency AS currency, c.clicks AS clicks,
                        c.suspect AS suspect, toString(m.net) AS net,
                        toString(round(m.net / nullIf(c.clicks - c.suspect, 0), 4)) AS epc
                 FROM (SELECT source, sum(clicks) AS clicks, sum(suspect_clicks) AS suspect
                       FROM daily_stats WHERE day >= {since} GROUP BY source) AS c
                 LEFT JOIN (SELECT source, currency, sum(net_revenue) AS net FROM daily_stats
                            WHERE day >= {since} AND currency != '' GROUP BY source, currency) AS m
                     USING (source)
                 ORDER BY currency, source"
            ))
            .fetch_all()
            .await
            .context("EPC by source")?;
        let offers = ch
            .query(&format!(
                "SELECT offer_id, currency, sum(sales) AS sales, sum(refunds) AS refunds,
                        sum(chargebacks) AS chargebacks,
                        toString(round(refunds / nullIf(sales, 0), 4)) AS refund_rate,
                        toString(round(chargebacks / nullIf(sales, 0), 4)) AS chargeback_rate,
                        toString(sum(refund_amount + chargeback_amount)) AS reversed
                 FROM daily_stats WHERE day >= {since} AND currency != ''
                 GROUP BY offer_id, currency ORDER BY offer_id, currency"
            ))
            .fetch_all()
            .await
            .context("refund and chargeback rates")?;
        let postbacks = ch
            .query(
                "SELECT destination, sum(postbacks) AS sent, sum(postbacks_delivered) AS delivered,
                        toString(round(delivered / nullIf(sent, 0), 4)) AS rate,
                        toFloat64(max(p95_latency_ms)) AS p95_ms, sum(dead_lettered) AS dead_lettered
                 FROM postback_health WHERE day >= today() - 6
                 GROUP BY destination ORDER BY destination",
            )
            .fetch_all()
            .await
            .context("postback health")?;
        let gate = gate::run(&GateArgs::defaults(), warehouse)
            .await
            .map_err(|e| format!("{e:#}"));
        Ok(Self {
            days,
            daily_net,
            daily_reported,
            sources,
            offers,
            postbacks,
            gate,
        })
    }
}
