//! Where the ledger's tables live: one ClickHouse server, or one shard of replicas of a
//! cluster (`--clickhouse-cluster`).
//!
//! The migrations are written once, for one server. On a cluster every statement runs
//! `ON CLUSTER`, every table engine becomes its `Replicated` form (its ZooKeeper path from
//! the servers' `{shard}` and `{replica}` macros), and each table gains a `Distributed`
//! twin, `<table>_all`, that analysts can query through any replica. The sink's own reads
//! and writes then keep the exactly-once load across replicas (docs/DEPLOYMENT.md, "A
//! ClickHouse cluster"): quorum inserts, sequentially consistent offset reads, and a
//! deduplication token per batch.

use anyhow::Context;
use clickhouse::{Client, Row};
use serde::Deserialize;

/// The ZooKeeper path and replica name of every replicated table: one path per shard,
/// database and table, so that each table's replicas find each other.
pub const REPLICA_PATH: &str = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'";

/// The suffix of a table's `Distributed` twin.
pub const DISTRIBUTED_SUFFIX: &str = "_all";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server: the migrations as written.
    Single,
    /// One shard of replicas, the name of the cluster in the servers' `remote_servers`.
    Cluster(String),
}

/// Statement openings the migrations use; the object's name follows each.
const OPENINGS: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS ",
    "CREATE TABLE IF NOT EXISTS ",
    "CREATE VIEW IF NOT EXISTS ",
    "CREATE OR REPLACE VIEW ",
    "CREATE OR REPLACE TABLE ",
    "ALTER TABLE ",
];

impl Topology {
    /// The topology `--clickhouse-cluster` names: empty for one server.
    pub fn from_flag(cluster: &str) -> anyhow::Result<Self> {
        if cluster.is_empty() {
            return Ok(Self::Single);
        }
        anyhow::ensure!(
            cluster
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "--clickhouse-cluster (SINK_CLICKHOUSE_CLUSTER) {cluster:?} is not a cluster name: \
             use letters, digits, '_' and '-', as in the servers' remote_servers"
        );
        Ok(Self::Cluster(cluster.to_owned()))
    }

    pub fn cluster(&self) -> Option<&str> {
        match self {
            Self::Single => None,
            Self::Cluster(name) => Some(name),
        }
    }

    /// `statement` (a migration's, or the sink's own DDL) as this topology runs it.
    pub fn adapt(&self, statement: &str) -> anyhow::Result<String> {
        let Some(cluster) = self.cluster() else {
            return Ok(statement.to_owned());
        };
        let statement = statement.trim();
        let opening = OPENINGS
            .iter()
            .find(|o| statement.starts_with(*o))
            .with_context(|| {
                format!("a statement the cluster topology cannot place: {statement:.60}")
            })?;
        let rest = &statement[opening.len()..];
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '(')
            .unwrap_or(rest.len());
        let (name, tail) = rest.split_at(name_end);
        Ok(format!(
            "{opening}{name} ON CLUSTER `{cluster}`{}",
            replicated_engine(tail)?
        ))
    }

    /// The `Distributed` twins of `tables` in `database`: re-created (`replace`) after a
    /// migration ran, so that they follow the columns of their tables, else created only
    /// where missing. None on one server.
    pub fn distributed_tables(
        &self,
        database: &str,
        tables: &[&str],
        replace: bool,
    ) -> Vec<String> {
        let Some(cluster) = self.cluster() else {
            return Vec::new();
        };
        let create = if replace {
            "CREATE OR REPLACE TABLE"
        } else {
            "CREATE TABLE IF NOT EXISTS"
        };
        tables
            .iter()
            .map(|t| {
                format!(
                    "{create} {t}{DISTRIBUTED_SUFFIX} ON CLUSTER `{cluster}` AS {database}.{t} \
                     ENGINE = Distributed('{cluster}', '{database}', '{t}')"
                )
            })
            .collect()
    }

    /// Refuses a cluster the server does not define, one of several shards, or servers
    /// without the macros the replicated tables' paths need.
    pub async fn check(&self, client: &Client) -> anyhow::Result<()> {
        let Some(cluster) = self.cluster() else {
            return Ok(());
        };
        #[derive(Row, Deserialize)]
        struct Shape {
            replicas: u64,
            shards: u64,
        }
        let shape: Shape = client
            .query(
                "SELECT count() AS replicas, uniqExact(shard_num) AS shards \
                 FROM system.clusters WHERE cluster = ?",
            )
            .bind(cluster)
            .fetch_one()
            .await
            .context("reading system.clusters")?;
        anyhow::ensure!(
            shape.replicas > 0,
            "ClickHouse defines no cluster {cluster:?} (system.clusters): declare it in the \
             servers' remote_servers, or leave --clickhouse-cluster empty for one server"
        );
        anyhow::ensure!(
            shape.shards == 1,
            "cluster {cluster:?} has {} shards; the ledger's tables are one shard of replicas \
             (docs/DEPLOYMENT.md, \"A ClickHouse cluster\"): name a cluster of one shard",
            shape.shards
        );
        for macro_name in ["shard", "replica"] {
            client
                .query("SELECT getMacro(?)")
                .bind(macro_name)
                .fetch_one::<String>()
                .await
                .with_context(|| {
                    format!(
                        "the server defines no {{{macro_name}}} macro, which the replicated \
                         tables' ZooKeeper paths need (<macros> in its configuration)"
                    )
                })?;
        }
        Ok(())
    }

    /// Where running queries are listed: every replica of the cluster, since a dead sink's
    /// insert may still be running on another replica than the one this sink talks to.
    pub fn processes(&self) -> String {
        match self.cluster() {
            None => "system.processes".to_owned(),
            Some(cluster) => format!("clusterAllReplicas('{cluster}', system.processes)"),
        }
    }

    /// Settings of an insert of a batch named `token` (`Batch::token`): on a cluster it
    /// waits for `quorum` replicas, and a retry of the same batch is discarded by any
    /// replica that already holds it.
    pub fn insert_settings(&self, quorum: &str, token: String) -> Vec<(&'static str, String)> {
        match self {
            Self::Single => Vec::new(),
            Self::Cluster(_) => vec![
                ("insert_quorum", quorum.to_owned()),
                ("insert_deduplication_token", token),
            ],
        }
    }

    /// Settings of a read of the stored offsets: on a cluster, a replica that lacks an
    /// acknowledged insert refuses the read instead of answering stale offsets.
    pub fn offsets_settings(&self) -> &'static str {
        match self {
            Self::Single => "",
            Self::Cluster(_) => " SETTINGS select_sequential_consistency = 1",
        }
    }
}

/// `tail` with its `ENGINE = <x>MergeTree[(args)]` made `Replicated<x>MergeTree(path,
/// replica[, args])`; views and statements without an engine are returned as they are.
fn replicated_engine(tail: &str) -> anyhow::Result<String> {
    const ENGINE: &str = "ENGINE = ";
    let Some(at) = tail.find(ENGINE) else {
        return Ok(tail.to_owned());
    };
    let (before, engine) = tail.split_at(at + ENGINE.len());
    let name_end = engine
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(engine.len());
    let (name, after) = engine.split_at(name_end);
    anyhow::ensure!(
        name.ends_with("MergeTree") && !name.starts_with("Replicated"),
        "engine {name} has no replicated form here"
    );
    let (args, after) = match after.strip_prefix('(') {
        Some(inner) => {
            let close = inner
                .find(')')
                .with_context(|| format!("engine {name}: unclosed arguments"))?;
            let args = inner[..close].trim();
            let after = &inner[close + 1..];
            ((!args.is_empty()).then(|| format!(", {args}")), after)
        }
        None => (None, after),
    };
    Ok(format!(
        "{before}Replicated{name}({REPLICA_PATH}{}){after}",
        args.unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Topology {
        Topology::from_flag("tl").unwrap()
    }

    #[test]
    fn one_server_runs_the_migrations_as_written() {
        let t = Topology::from_flag("").unwrap();
        assert_eq!(t, Topology::Single);
        let s = "CREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = MergeTree ORDER BY x";
        assert_eq!(t.adapt(s).unwrap(), s);
        assert!(t.distributed_tables("db", &["a"], true).is_empty());
        assert_eq!(t.processes(), "system.processes");
    }

    #[test]
    fn a_cluster_places_every_statement_on_it_with_replicated_engines() {
        let t = cluster();
        assert_eq!(
            t.adapt("CREATE TABLE IF NOT EXISTS ledger\n(\n x UInt8\n)\nENGINE = MergeTree\nORDER BY x")
                .unwrap(),
            "CREATE TABLE IF NOT EXISTS ledger ON CLUSTER `tl`\n(\n x UInt8\n)\nENGINE = \
             ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')\nORDER BY x"
        );
        assert_eq!(
            t.adapt("CREATE TABLE IF NOT EXISTS fx_rates (d Date) ENGINE = ReplacingMergeTree(imported_at) ORDER BY d")
                .unwrap(),
            "CREATE TABLE IF NOT EXISTS fx_rates ON CLUSTER `tl` (d Date) ENGINE = \
             ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', imported_at) ORDER BY d"
        );
        assert_eq!(
            t.adapt("CREATE OR REPLACE VIEW daily_stats AS SELECT 1")
                .unwrap(),
            "CREATE OR REPLACE VIEW daily_stats ON CLUSTER `tl` AS SELECT 1"
        );
        assert_eq!(
            t.adapt("ALTER TABLE ledger ADD COLUMN IF NOT EXISTS y UInt8")
                .unwrap(),
            "ALTER TABLE ledger ON CLUSTER `tl` ADD COLUMN IF NOT EXISTS y UInt8"
        );
        assert_eq!(
            t.adapt("CREATE DATABASE IF NOT EXISTS trackledger")
                .unwrap(),
            "CREATE DATABASE IF NOT EXISTS trackledger ON CLUSTER `tl`"
        );
        let err = t.adapt("DROP TABLE ledger").unwrap_err().to_string();
        assert!(err.contains("cannot place"), "{err}");
        let err = t
            .adapt("CREATE TABLE IF NOT EXISTS k (x UInt8) ENGINE = Kafka")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no replicated form"), "{err}");
    }

    #[test]
    fn every_table_gets_a_distributed_twin_and_names_are_checked() {
        let t = cluster();
        assert_eq!(
            t.distributed_tables("db", &["ledger"], false),
            [
                "CREATE TABLE IF NOT EXISTS ledger_all ON CLUSTER `tl` AS db.ledger \
              ENGINE = Distributed('tl', 'db', 'ledger')"
            ]
        );
        assert!(t.distributed_tables("db", &["ledger"], true)[0]
            .starts_with("CREATE OR REPLACE TABLE ledger_all "));
        assert_eq!(t.processes(), "clusterAllReplicas('tl', system.processes)");
        let err = Topology::from_flag("a'b").unwrap_err().to_string();
        assert!(err.contains("not a cluster name"), "{err}");
    }
}
