//! Processor configuration: flags and environment variables, with defaults that work against
//! the local stack (`scripts/stack`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use schemas::topics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Transactions, dedup and joins: the canonical ledger.
    ExactlyOnce,
    /// Copies input values to the ledger topic without transactions or state: the
    /// benchmark baseline, never a deployment.
    PassThrough,
}

/// Whether conversions take their click's ad-platform IDs (`--click-ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClickIdsMode {
    /// When a destination sends them: kinds meta_capi, tiktok, ga4 and google_ads.
    Auto,
    Always,
    Never,
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "processor",
    about = "Exactly-once dedup and lifecycle joins: tracking events in, the canonical ledger out"
)]
pub struct Config {
    /// Consumer group shared by all processor instances.
    #[arg(
        long,
        env = "PROCESSOR_GROUP_ID",
        default_value = "trackledger-processor"
    )]
    pub group_id: String,

    /// This instance's stable name, unique among running instances; the transactional ID is
    /// `<group-id>-<instance-id>`. Defaults to the host name.
    #[arg(long, env = "PROCESSOR_INSTANCE_ID")]
    pub instance_id: Option<String>,

    #[arg(
        long,
        env = "PROCESSOR_MODE",
        value_enum,
        default_value = "exactly-once"
    )]
    pub mode: Mode,

    #[arg(long, env = "PROCESSOR_INPUT_TOPIC", default_value = topics::EVENTS)]
    pub input_topic: String,
    #[arg(long, env = "PROCESSOR_LEDGER_TOPIC", default_value = topics::LEDGER)]
    pub ledger_topic: String,
    #[arg(long, env = "PROCESSOR_RECEIPTS_TOPIC", default_value = topics::RECEIPTS)]
    pub receipts_topic: String,
    #[arg(long, env = "PROCESSOR_STATE_TOPIC", default_value = topics::PROCESSOR_STATE)]
    pub state_topic: String,
    #[arg(long, env = "PROCESSOR_QUARANTINE_TOPIC", default_value = topics::QUARANTINE)]
    pub quarantine_topic: String,
    #[arg(long, env = "PROCESSOR_OUTBOX_TOPIC", default_value = topics::POSTBACK_OUTBOX)]
    pub outbox_topic: String,

    /// Destinations file (TOML) routing ledger entries to the postback outbox; without one,
    /// nothing is forwarded.
    #[arg(long, env = "PROCESSOR_DESTINATIONS_FILE")]
    pub destinations_file: Option<PathBuf>,

    /// The offers file (the one ingest and the sink read), for its payout rules. Default:
    /// config/offers.toml when it exists, else no rules (payouts come from the events only).
    #[arg(long, env = "PROCESSOR_OFFERS_FILE")]
    pub offers_file: Option<PathBuf>,

    /// The caps file (TOML; docs/PROCESSOR.md, "Conversion caps"), read again whenever it
    /// changes. Without one (or with an empty value), no conversion is capped and the capping
    /// stage does not run.
    #[arg(long, env = "PROCESSOR_CAPS_FILE")]
    pub caps_file: Option<PathBuf>,

    /// Where the ledger stage sends capped offers' conversion entries, keyed by offer.
    #[arg(long, env = "PROCESSOR_CAPPING_TOPIC", default_value = topics::LEDGER_CAPPING)]
    pub capping_topic: String,

    /// The capping stage's compacted state changelog: cap usage and verdicts.
    #[arg(long, env = "PROCESSOR_CAPS_STATE_TOPIC", default_value = topics::CAPS_STATE)]
    pub caps_state_topic: String,

    /// Whether conversions take the ad-platform IDs (gclid, fbc, ttclid...) of the click
    /// they name, through the click-ID stage (docs/PROCESSOR.md, "Click IDs"): `auto` runs it
    /// when a destination sends them (kinds meta_capi, tiktok, ga4, google_ads).
    #[arg(long, env = "PROCESSOR_CLICK_IDS", value_enum, default_value = "auto")]
    pub click_ids: ClickIdsMode,

    /// Where the ledger stage sends clicks with ad-platform IDs and the conversions that take
    /// them, keyed by click ID.
    #[arg(long, env = "PROCESSOR_CLICK_IDS_TOPIC", default_value = topics::LEDGER_CLICK_IDS)]
    pub click_ids_topic: String,

    /// The click-ID stage's compacted state changelog: each click's ad-platform IDs.
    #[arg(long, env = "PROCESSOR_CLICK_IDS_STATE_TOPIC", default_value = topics::CLICK_IDS_STATE)]
    pub click_ids_state_topic: String,

    /// How long a click's ad-platform IDs are kept for its conversions, from the click's
    /// time (`90days`, `36h`). Google Ads takes a click's conversions for up to 90 days.
    #[arg(
        long,
        env = "PROCESSOR_CLICK_IDS_RETENTION",
        default_value = "90days",
        value_parser = parse_window
    )]
    pub click_ids_retention: Duration,

    /// A transaction commits after this long, or after `max-transaction-events`.
    #[arg(long, env = "PROCESSOR_COMMIT_INTERVAL_MS", default_value_t = 200)]
    pub commit_interval_ms: u64,

    /// A transaction commits after this many input events.
    #[arg(
        long,
        env = "PROCESSOR_MAX_TRANSACTION_EVENTS",
        default_value_t = 20_000
    )]
    pub max_transaction_events: usize,

    /// How long an event ID is remembered for dedup, counted from its first receipt; also how
    /// long an untouched conversion is kept for joins. At least the networks' refund and
    /// chargeback windows (ClickBank 60 days, card chargebacks up to 180).
    /// A number is days; a duration (`36h`) is also taken.
    #[arg(
        long = "dedup-window-days",
        env = "PROCESSOR_DEDUP_WINDOW_DAYS",
        default_value = "200",
        value_parser = parse_days
    )]
    pub dedup_window: Duration,

    /// How long a click's event ID is remembered for dedup, counted from its first receipt
    /// (`7days`, `36h`, `30m`): clicks need no lifecycle joins, and are most of the traffic,
    /// so their window bounds the state. The default covers the events topic's retention, so
    /// a click redelivered from Kafka is still caught.
    #[arg(
        long,
        env = "PROCESSOR_CLICK_DEDUP_WINDOW",
        default_value = "7days",
        value_parser = parse_window
    )]
    pub click_dedup_window: Duration,

    /// A reversal or lead status still waiting for its original this long after it was
    /// received is reported as an orphan (once).
    #[arg(long, env = "PROCESSOR_ORPHAN_HORIZON_HOURS", default_value_t = 72)]
    pub orphan_horizon_hours: u32,

    /// How often expired state is dropped and orphans are reported.
    #[arg(long, env = "PROCESSOR_SWEEP_INTERVAL_SECS", default_value_t = 60)]
    pub sweep_interval_secs: u64,

    /// Consumer group session timeout. A crashed instance's partitions move to the others,
    /// or back to its restarted self, after this long.
    #[arg(long, env = "PROCESSOR_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u64,

    /// Kafka transaction timeout; the broker aborts a transaction left open this long.
    #[arg(
        long,
        env = "PROCESSOR_TRANSACTION_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub transaction_timeout_ms: u64,

    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[arg(long, env = "PROCESSOR_METRICS_BIND", default_value = "127.0.0.1:9101")]
    pub metrics_bind: SocketAddr,

    #[command(flatten)]
    pub kafka: telemetry::kafka::KafkaConnection,

    /// The registry holding the writer schemas of Confluent-framed input records.
    #[command(flatten)]
    pub schema_registry: telemetry::registry::SchemaRegistryConnection,
}

/// The longest window taken: a century (a longer one would not fit the clock's arithmetic).
const MAX_WINDOW: Duration = Duration::from_secs(36_500 * 86_400);

/// Days, as a number; or a duration, for tests and soaks that need a window of minutes.
fn parse_days(text: &str) -> Result<Duration, String> {
    match text.parse::<u64>() {
        Ok(days) => checked_window(Duration::from_secs(days.saturating_mul(86_400))),
        Err(_) => parse_window(text),
    }
}

fn parse_window(text: &str) -> Result<Duration, String> {
    checked_window(humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?)
}

fn checked_window(window: Duration) -> Result<Duration, String> {
    if window.is_zero() {
        return Err("a window of 0 would count every repeat again".into());
    }
    if window > MAX_WINDOW {
        return Err("a window is at most 36500 days".into());
    }
    Ok(window)
}

impl Config {
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "processor-0".to_owned())
        })
    }

    pub fn transactional_id(&self) -> String {
        format!("{}-{}", self.group_id, self.instance_id())
    }

    /// The caps file, if one is named (an empty setting, compose's `${VAR:-}`, names none).
    pub fn caps_file(&self) -> Option<&std::path::Path> {
        self.caps_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
    }

    pub fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.commit_interval_ms)
    }

    pub fn dedup_window(&self) -> Duration {
        self.dedup_window
    }

    pub fn orphan_horizon(&self) -> Duration {
        Duration::from_secs(u64::from(self.orphan_horizon_hours) * 3_600)
    }

    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The declared default, whatever the environment of the test run says.
    fn default_of(id: &str) -> String {
        use clap::CommandFactory;
        let command = Config::command();
        let arg = command.get_arguments().find(|a| a.get_id() == id).unwrap();
        arg.get_default_values()[0].to_string_lossy().into_owned()
    }

    #[test]
    fn defaults_match_the_local_stack_and_the_refund_windows() {
        assert_eq!(default_of("bootstrap_servers"), "127.0.0.1:9092");
        assert_eq!(default_of("input_topic"), topics::EVENTS);
        assert_eq!(default_of("mode"), "exactly-once");
        let days: u64 = default_of("dedup_window").parse().unwrap();
        assert!(days >= 180);
        let c = Config::parse_from(["processor", "--dedup-window-days", "30"]);
        assert_eq!(c.dedup_window(), Duration::from_secs(30 * 86_400));
        let c = Config::parse_from(["processor", "--dedup-window-days", "90m"]);
        assert_eq!(c.dedup_window(), Duration::from_secs(90 * 60));
        assert!(Config::try_parse_from(["processor", "--dedup-window-days", "0"]).is_err());
        assert!(
            Config::try_parse_from(["processor", "--dedup-window-days", "99999999999"]).is_err()
        );
    }

    #[test]
    fn the_click_window_is_a_duration_and_never_zero() {
        let c = Config::parse_from(["processor"]);
        assert_eq!(c.click_dedup_window, Duration::from_secs(7 * 86_400));
        assert!(c.click_dedup_window <= c.dedup_window());
        let c = Config::parse_from(["processor", "--click-dedup-window", "36h"]);
        assert_eq!(c.click_dedup_window, Duration::from_secs(36 * 3_600));
        assert!(Config::try_parse_from(["processor", "--click-dedup-window", "0s"]).is_err());
        assert!(Config::try_parse_from(["processor", "--click-dedup-window", "soon"]).is_err());
    }

    #[test]
    fn the_transactional_id_is_the_group_and_the_instance() {
        let c = Config::parse_from(["processor", "--group-id", "g", "--instance-id", "a"]);
        assert_eq!(c.transactional_id(), "g-a");
    }
}
