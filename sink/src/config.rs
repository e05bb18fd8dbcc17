//! Sink configuration: flags and environment variables, with defaults that work against the
//! local stack (`scripts/stack`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use schemas::topics;

/// ClickHouse writes an insert of up to this many rows as one block, atomically; a batch
/// must stay below it for the exactly-once load to hold.
pub const MAX_BATCH_ROWS: usize = 1_000_000;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "sink",
    about = "Loads the ledger, receipts, postback attempts and quarantine summaries into ClickHouse, exactly once"
)]
pub struct Config {
    #[command(flatten)]
    pub clickhouse: telemetry::clickhouse::ClickHouseConnection,
    /// Database of the ledger tables; created by the migrations.
    #[arg(long, env = "SINK_DATABASE", default_value = "trackledger")]
    pub database: String,

    /// A ClickHouse cluster of one shard of replicas, as named in the servers'
    /// `remote_servers`: the migrations then run ON CLUSTER with replicated engines and
    /// `<table>_all` Distributed twins. Empty: one server.
    #[arg(long, env = "SINK_CLICKHOUSE_CLUSTER", default_value = "")]
    pub clickhouse_cluster: String,
    /// On a cluster, how many replicas must hold an insert before it counts as loaded:
    /// `auto` (a majority) keeps the load exactly-once when a replica fails; 1 trades that
    /// for loading while only one replica of two is up (docs/DEPLOYMENT.md).
    #[arg(long, env = "SINK_INSERT_QUORUM", default_value = "auto")]
    pub insert_quorum: String,

    /// Consumer group the sink commits its progress under (for lag monitoring; the load
    /// itself resumes from what ClickHouse holds).
    #[arg(long, env = "SINK_GROUP_ID", default_value = "trackledger-sink")]
    pub group_id: String,

    #[arg(long, env = "SINK_LEDGER_TOPIC", default_value = topics::LEDGER)]
    pub ledger_topic: String,
    #[arg(long, env = "SINK_RECEIPTS_TOPIC", default_value = topics::RECEIPTS)]
    pub receipts_topic: String,
    #[arg(long, env = "SINK_QUARANTINE_TOPIC", default_value = topics::QUARANTINE)]
    pub quarantine_topic: String,
    #[arg(long, env = "SINK_ATTEMPTS_TOPIC", default_value = topics::POSTBACK_ATTEMPTS)]
    pub attempts_topic: String,

    /// A table's batch is inserted at this many rows (at most 1,000,000)...
    #[arg(long, env = "SINK_BATCH_ROWS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=MAX_BATCH_ROWS as u64))]
    pub batch_rows: u64,
    /// ... or this many bytes of Kafka values ...
    #[arg(long, env = "SINK_BATCH_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub batch_bytes: usize,
    /// ... or this long after its first row.
    #[arg(long, env = "SINK_BATCH_MS", default_value_t = 500)]
    pub batch_ms: u64,

    /// Longest pause between two attempts at an insert ClickHouse refused.
    #[arg(long, env = "SINK_RETRY_MAX_MS", default_value_t = 10_000)]
    pub retry_max_ms: u64,

    /// This sink's share when several load one database: partition p of every topic is
    /// loaded by the instance p mod `--instances`. Each share must have exactly one running
    /// sink; to change `--instances`, stop every sink first.
    #[arg(long, env = "SINK_INSTANCE", default_value_t = 0)]
    pub instance: u32,
    /// How many sinks load the database between them (see `--instance`).
    #[arg(long, env = "SINK_INSTANCES", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub instances: u32,

    /// Only apply the migrations, then exit.
    #[arg(long)]
    pub migrate_only: bool,

    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[arg(long, env = "SINK_METRICS_BIND", default_value = "127.0.0.1:9102")]
    pub metrics_bind: SocketAddr,

    #[command(flatten)]
    pub reporting: crate::reporting::Reporting,

    #[command(flatten)]
    pub kafka: telemetry::kafka::KafkaConnection,
}

impl Config {
    /// Whether partition `p` of a topic is this sink's to load.
    pub fn owns(&self, partition: i32) -> bool {
        u32::try_from(partition).is_ok_and(|p| p % self.instances == self.instance)
    }

    pub fn topology(&self) -> anyhow::Result<crate::topology::Topology> {
        crate::topology::Topology::from_flag(&self.clickhouse_cluster)
    }

    /// Checks what clap cannot.
    pub fn check(&self) -> anyhow::Result<()> {
        self.topology()?;
        anyhow::ensure!(
            self.insert_quorum == "auto" || self.insert_quorum.parse::<u8>().is_ok_and(|n| n >= 1),
            "--insert-quorum (SINK_INSERT_QUORUM) {:?} is neither auto nor a number of replicas",
            self.insert_quorum
        );
        anyhow::ensure!(
            self.instance < self.instances,
            "--instance (SINK_INSTANCE) {} is not below --instances (SINK_INSTANCES) {}: instances are numbered from 0",
            self.instance,
            self.instances
        );
        Ok(())
    }

    pub fn batch_age(&self) -> Duration {
        Duration::from_millis(self.batch_ms)
    }

    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }

    pub fn client(&self) -> anyhow::Result<clickhouse::Client> {
        self.clickhouse.client()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_shared_by_their_number_modulo_the_instances() {
        let config = |instance: &str, instances: &str| {
            Config::parse_from(["sink", "--instance", instance, "--instances", instances])
        };
        let second = config("1", "3");
        let owned: Vec<i32> = (0..8).filter(|p| second.owns(*p)).collect();
        assert_eq!(owned, [1, 4, 7]);
        assert!((0..8).all(|p| config("0", "1").owns(p)));
        let err = config("3", "3").check().unwrap_err().to_string();
        assert!(err.contains("instances are numbered from 0"), "{err}");
    }
}
