//! Forwarder configuration: flags and environment variables, with defaults that work against
//! the local stack (`scripts/stack`).

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use schemas::topics;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "forwarder",
    about = "Delivers postbacks from the outbox: rate-limited, retried, every attempt recorded"
)]
pub struct Cli {
    #[command(flatten)]
    pub kafka: telemetry::kafka::KafkaConnection,
    #[command(flatten)]
    pub common: Common,
    /// Delivery settings (without a subcommand, the forwarder delivers).
    #[command(flatten)]
    pub run: RunArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The command line, with its one Kafka connection handed to the topics' settings.
    pub fn parse_connected() -> Self {
        let mut cli = <Self as Parser>::parse();
        cli.common.kafka = cli.kafka.clone();
        cli
    }
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Send dead-lettered postbacks back to the outbox, with their idempotency keys.
    Replay(ReplayArgs),
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The outbox the processor writes postbacks to.
    #[arg(long, env = "FORWARDER_OUTBOX_TOPIC", default_value = topics::POSTBACK_OUTBOX, global = true)]
    pub outbox_topic: String,
    /// Postbacks waiting for their next attempt.
    #[arg(long, env = "FORWARDER_RETRY_TOPIC", default_value = topics::POSTBACK_RETRY, global = true)]
    pub retry_topic: String,
    /// Every delivery attempt.
    #[arg(long, env = "FORWARDER_ATTEMPTS_TOPIC", default_value = topics::POSTBACK_ATTEMPTS, global = true)]
    pub attempts_topic: String,
    /// Dead-lettered postbacks.
    #[arg(long, env = "FORWARDER_DLQ_TOPIC", default_value = topics::POSTBACK_DLQ, global = true)]
    pub dlq_topic: String,

    /// The program's Kafka connection (its flags are the program's own: see
    /// [`Cli::parse_connected`]).
    #[arg(skip)]
    pub kafka: telemetry::kafka::KafkaConnection,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The destinations file (TOML), the same the processor routes with.
    #[arg(
        long,
        env = "FORWARDER_DESTINATIONS_FILE",
        default_value = "config/destinations.toml"
    )]
    pub destinations_file: PathBuf,
    #[arg(
        long,
        env = "FORWARDER_GROUP_ID",
        default_value = "trackledger-forwarder"
    )]
    pub group_id: String,
    /// Postbacks held at once (waiting for their time, their token or their answer).
    #[arg(long, env = "FORWARDER_MAX_IN_FLIGHT", default_value_t = 10_000)]
    pub max_in_flight: usize,
    /// Concurrent requests per destination.
    #[arg(long, env = "FORWARDER_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    #[arg(long, env = "FORWARDER_METRICS_BIND", default_value = "127.0.0.1:9103")]
    pub metrics_bind: SocketAddr,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ReplayArgs {
    /// Only this destination's postbacks.
    #[arg(long)]
    pub destination: Option<String>,
    /// Only postbacks whose reason contains this text.
    #[arg(long)]
    pub reason: Option<String>,
    /// Only postbacks dead-lettered at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Only postbacks dead-lettered before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// List what would be replayed without replaying it.
    #[arg(long)]
    pub dry_run: bool,
}
