//! What the ledger holds after the demo traffic, read back from ClickHouse, and the wait for
//! it to settle.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::traffic::Expected;
use crate::warehouse::{decimal, Warehouse};

/// One destination's postbacks since the run started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    pub postbacks: u64,
    pub delivered: u64,
    pub attempts: u64,
    /// Dead letters, with their reasons, from the DLQ topic.
    pub dead_lettered: u64,
    pub dead_letter_reasons: BTreeMap<String, u64>,
}

/// The ledger since `since`, in the shape of [`Expected`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub events: BTreeMap<String, u64>,
    /// Repeats of the traffic's own retries and re-sent batches (clicks aside).
    pub duplicates: u64,
    /// Clicks that reached Kafka twice because ingest spooled them while Kafka was slow to
    /// confirm (docs/INGEST.md); the processor counts them once.
    pub click_repeats: u64,
    pub quarantined: BTreeMap<String, u64>,
    pub net_revenue: BTreeMap<String, Decimal>,
    pub postbacks: BTreeMap<String, Delivery>,
}

impl Summary {
    pub fn ledger_entries(&self) -> u64 {
        self.events.values().sum()
    }

    /// Postbacks resolved (delivered or dead-lettered) over those routed, for every destination.
    fn resolved(&self, expected: &Expected) -> (u64, u64) {
        expected
            .postbacks
            .iter()
            .map(|(d, want)| {
                let got = self
                    .postbacks
                    .get(d)
                    .map(|p| p.delivered + p.dead_lettered)
                    .unwrap_or(0);
                (got.min(*want), *want)
            })
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }

    /// Whether everything expected has arrived, counting each part.
    pub fn progress(&self, expected: &Expected) -> (u64, u64) {
        let parts = [
            (self.ledger_entries(), expected.ledger_entries()),
            (self.duplicates, expected.duplicates),
            (
                self.quarantined.values().sum(),
                expected.quarantined_total(),
            ),
            self.resolved(expected),
        ];
        parts
            .iter()
            .fold((0, 0), |(a, b), (got, want)| (a + got.min(want), b + want))
    }
}

fn ts(t: DateTime<Utc>) -> String {
    format!(
        "toDateTime64('{}', 3, 'UTC')",
        t.format("%Y-%m-%d %H:%M:%S%.3f")
    )
}

pub async fn read(
    warehouse: &Warehouse,
    dlq: &forwarder::config::Common,
    since: DateTime<Utc>,
) -> anyhow::Result<Summary> {
    let ch = warehouse.client()?;
    let since_sql = ts(since);
    let events = ch
        .query(&format!(
            "SELECT event_name, count() FROM ledger WHERE received_at >= {since_sql} GROUP BY event_name"
        ))
        .fetch_all::<(String, u64)>()
        .await?
        .into_iter()
        .collect();
    let (duplicates, click_repeats) = ch
        .query(&format!(
            "SELECT countIf(event_name != 'CLICK'), countIf(event_name = 'CLICK') FROM receipts
             WHERE kind = 'DUPLICATE' AND received_at >= {since_sql}"
        ))
        .fetch_one::<(u64, u64)>()
        .await?;
    let quarantined = ch
        .query(&format!(
            "SELECT reason, count() FROM quarantine WHERE received_at >= {since_sql} GROUP BY reason"
        ))
        .fetch_all::<(String, u64)>()
        .await?
        .into_iter()
        .collect();
    // Reversals count under the offer of the sale they reverse, as in daily_stats.
    let revenue = ch
        .query(&format!(
            "SELECT coalesce(l.offer_id, a.original_offer_id, a.any_offer_id, '') AS offer,
                    toString(sum(l.signed_revenue))
             FROM ledger AS l
             LEFT JOIN conversion_attribution AS a ON l.conversion_key = a.conversion_key
             WHERE l.received_at >= {since_sql} AND NOT l.is_test
               AND l.event_name IN ('SALE', 'REFUND', 'CHARGEBACK', 'CANCELED')
             GROUP BY offer ORDER BY offer"
        ))
        .fetch_all::<(String, String)>()
        .await?;
    let net_revenue = revenue
        .into_iter()
        .map(|(offer, net)| Ok((offer, decimal(&net)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut postbacks: BTreeMap<String, Delivery> = BTreeMap::new();
    let attempts = ch
        .query(&format!(
            "SELECT destination, uniqExact(idempotency_key),
                    uniqExactIf(idempotency_key, outcome = 'DELIVERED'), count()
             FROM postback_attempts
             WHERE attempted_at >= {since_sql}
               AND idempotency_key IN (SELECT event_id FROM ledger WHERE received_at >= {since_sql})
             GROUP BY destination"
        ))
        .fetch_all::<(String, u64, u64, u64)>()
        .await?;
    for (destination, routed, delivered, count) in attempts {
        let d = postbacks.entry(destination).or_default();
        d.postbacks = routed;
        d.delivered = delivered;
        d.attempts = count;
    }
    let dlq = dlq.clone();
    let letters = tokio::task::spawn_blocking(move || forwarder::dlq::read_all(&dlq)).await??;
    // Only this run's postbacks: the DLQ may hold older ones, of any age.
    for letter in letters.into_iter().filter(|l| {
        l.dead_lettered_at.is_some_and(|t| t >= since)
            && schemas::avro::ledger::decode_outbox(&l.value)
                .is_ok_and(|o| o.entry.event.received_at >= since)
    }) {
        let d = postbacks.entry(letter.destination).or_default();
        d.dead_lettered += 1;
        *d.dead_letter_reasons.entry(letter.reason).or_default() += 1;
    }
    Ok(Summary {
        events,
        duplicates,
        click_repeats,
        quarantined,
        net_revenue,
        postbacks,
    })
}

/// Polls until the ledger holds everything expected, drawing a progress bar on stderr;
/// returns the last summary read, settled or not.
pub async fn wait_settled(
    warehouse: &Warehouse,
    dlq: &forwarder::config::Common,
    since: DateTime<Utc>,
    expected: &Expected,
    timeout: Duration,
    show: bool,
) -> anyhow::Result<(Summary, bool)> {
    let started = Instant::now();
    loop {
        let summary = read(warehouse, dlq, since).await?;
        let (done, total) = summary.progress(expected);
        if show {
            let width = 30;
            let filled = (done * width / total.max(1)) as usize;
            eprint!(
                "\r  settling [{}{}] {done}/{total} facts in ClickHouse ({:.0} s) ",
                "#".repeat(filled),
                " ".repeat(width as usize - filled),
                started.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        }
        if done >= total || started.elapsed() > timeout {
            if show {
                eprintln!();
            }
            return Ok((summary, done >= total));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
