//! `trackctl demo`: realistic traffic through ingest's real endpoints, then the ledger it
//! produced, read back from ClickHouse beside what was sent.

pub mod receiver;
pub mod send;
pub mod summary;
pub mod traffic;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Args;
use rust_decimal::Decimal;

use crate::warehouse::{IngestEndpoint, Warehouse};
use send::{Sender, Tally};
use summary::Summary;
use traffic::{Expected, Secrets, Volume};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    #[command(flatten)]
    pub ingest: IngestEndpoint,
    /// The destinations file the processor and forwarder use.
    #[arg(
        long,
        env = "FORWARDER_DESTINATIONS_FILE",
        default_value = "config/destinations.toml"
    )]
    pub destinations_file: std::path::PathBuf,
    /// Traffic volume: 1 is 200 clicks, 45 conversions and their follow-ups.
    #[arg(long, default_value_t = 1)]
    pub scale: usize,
    /// Seed of the traffic's choices (offers, amounts, which sales are refunded).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// How long to wait for the ledger to settle.
    #[arg(long, default_value_t = 180)]
    pub timeout_seconds: u64,
    #[arg(long, env = "CLICKBANK_SECRET_KEY", hide_env_values = true)]
    pub clickbank_secret_key: String,
    #[arg(long, env = "DIGISTORE24_PASSPHRASE", hide_env_values = true)]
    pub digistore24_passphrase: String,
    #[arg(long, env = "BUYGOODS_TOKEN", hide_env_values = true)]
    pub buygoods_token: String,
    /// S2S sources as `name:token`; the first one sends.
    #[arg(
        long,
        env = "S2S_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub s2s_tokens: Vec<String>,
}

impl DemoArgs {
    fn secrets(&self) -> anyhow::Result<Secrets> {
        Ok(Secrets {
            api_key: self.ingest.api_key()?,
            clickbank_secret_key: self.clickbank_secret_key.clone(),
            digistore24_passphrase: self.digistore24_passphrase.clone(),
            buygoods_token: self.buygoods_token.clone(),
            s2s_source: self
                .s2s_tokens
                .first()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no S2S source: set S2S_TOKENS or --s2s-tokens"))?,
        })
    }
}

/// One demo run: what was sent, what it should give, and what the ledger holds.
#[derive(Debug)]
pub struct Run {
    pub run_id: String,
    pub since: DateTime<Utc>,
    pub sent: Tally,
    pub expected: Expected,
    pub summary: Summary,
    pub settled: bool,
}

pub async fn run(
    args: &DemoArgs,
    warehouse: &Warehouse,
    kafka: &forwarder::config::Common,
    show_progress: bool,
) -> anyhow::Result<Run> {
    let secrets = args.secrets()?;
    // The processor's routing, to know which postbacks to expect.
    let routes = schemas::destinations::Destinations::load(&args.destinations_file)?;
    let volume = Volume {
        scale: args.scale.max(1),
        seed: args.seed,
    };
    let run_id = format!("demo{}", &uuid::Uuid::now_v7().simple().to_string()[20..]);
    // ClickHouse keeps milliseconds; the summary counts what ingest received from here on.
    let since = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).unwrap_or_default();
    let sender = Sender::new(&args.ingest.ingest_url)?;
    let mut sent = Tally::new();
    let step = |text: &str| {
        if show_progress {
            eprintln!("  {text}");
        }
    };

    step("clicks through the redirect /c/{offer}");
    let click_ids = sender.clicks(&traffic::clicks(volume), &mut sent).await?;
    let plan = traffic::plan(volume, &run_id, &click_ids, &secrets, &routes, Utc::now());
    step("refunds and lead decisions that arrive before their original");
    sender.phase(&plan.early, &mut sent).await?;
    step("leads (first-party) and sales (ClickBank, BuyGoods, Digistore24, S2S)");
    sender.phase(&plan.conversions, &mut sent).await?;
    step("lead decisions, refunds, chargebacks and network retries");
    sender.phase(&plan.follow_ups, &mut sent).await?;
    step("malformed and badly signed requests");
    sender.phase(&plan.refused, &mut sent).await?;

    let (summary, settled) = summary::wait_settled(
        warehouse,
        kafka,
        since,
        &plan.expected,
        Duration::from_secs(args.timeout_seconds),
        show_progress,
    )
    .await?;
    Ok(Run {
        run_id,
        since,
        sent,
        expected: plan.expected,
        summary,
        settled,
    })
}

fn row(cells: &[String], widths: &[usize]) -> String {
    cells
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(i, (c, w))| {
            if i == 0 {
                format!("{c:<w$}")
            } else {
                format!("{c:>w$}")
            }
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// The summary as text, expected beside counted.
pub fn render(run: &Run) -> String {
    let mut out = String::new();
    let e = &run.expected;
    let s = &run.summary;
    let requests: u64 = run.sent.values().sum();
    out += &format!(
        "Demo run {} — everything ingest received since {}\n\n",
        run.run_id,
        run.since.format("%H:%M:%S UTC")
    );
    out += &format!("Sent {requests} requests to ingest:\n");
    let mut by_kind: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((kind, status), n) in &run.sent {
        by_kind
            .entry(kind)
            .or_default()
            .push(format!("{n} x {status}"));
    }
    for (kind, answers) in by_kind {
        out += &format!("  {kind:<12} {}\n", answers.join(", "));
    }

    out += "\nLedger (trackledger.ledger):\n";
    let widths = [16, 9, 9];
    out += &format!(
        "  {}\n",
        row(&["event".into(), "sent".into(), "counted".into()], &widths)
    );
    for (name, want) in &e.events {
        let got = s.events.get(name).copied().unwrap_or(0);
        out += &format!(
            "  {}\n",
            row(&[name.clone(), want.to_string(), got.to_string()], &widths)
        );
    }
    out += &format!(
        "\nDuplicates absorbed: {} (network retries and re-sent batches sent: {})\n",
        s.duplicates, e.duplicates
    );
    if s.click_repeats > 0 {
        out += &format!(
            "Clicks ingest delivered twice (spooled while Kafka was slow), counted once: {}\n",
            s.click_repeats
        );
    }
    let reasons = s
        .quarantined
        .iter()
        .map(|(r, n)| format!("{r} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    out += &format!(
        "Rejected and quarantined: {} of {} ({reasons})\n",
        s.quarantined.values().sum::<u64>(),
        e.quarantined_total()
    );

    out += "\nNet revenue by offer (sales - refunds - chargebacks, USD):\n";
    let widths = [16, 12, 12];
    out += &format!(
        "  {}\n",
        row(
            &["offer".into(), "expected".into(), "ledger".into()],
            &widths
        )
    );
    for (offer, want) in &e.net_revenue {
        let got = s.net_revenue.get(offer).copied().unwrap_or_default();
        let money = |d: Decimal| format!("{:.2}", d.round_dp(2));
        out += &format!(
            "  {}\n",
            row(&[offer.clone(), money(*want), money(got)], &widths)
        );
    }

    out += "\nPostbacks (postback_attempts, postbacks.dlq.v1):\n";
    let widths = [12, 9, 10, 9, 13, 8];
    out += &format!(
        "  {}\n",
        row(
            &[
                "destination",
                "routed",
                "delivered",
                "attempts",
                "dead-letters",
                "success"
            ]
            .map(String::from),
            &widths
        )
    );
    for (destination, routed) in &e.postbacks {
        let d = s.postbacks.get(destination).cloned().unwrap_or_default();
        let success = if *routed == 0 {
            "-".to_owned()
        } else {
            format!("{:.0}%", 100.0 * d.delivered as f64 / *routed as f64)
        };
        out += &format!(
            "  {}\n",
            row(
                &[
                    destination.clone(),
                    routed.to_string(),
                    d.delivered.to_string(),
                    d.attempts.to_string(),
                    d.dead_lettered.to_string(),
                    success,
                ],
                &widths
            )
        );
        for (reason, n) in &d.dead_letter_reasons {
            out += &format!("      {n} dead-lettered: {reason}\n");
            if reason.contains("access token") {
                out += &format!(
                    "      (set the token, restart the forwarder, then: trackctl replay dlq --destination {destination})\n"
                );
            }
        }
    }
    if !run.settled {
        out += "\nThe ledger had NOT settled when the wait ended: the counts above are partial.\n";
    }
    out
}
