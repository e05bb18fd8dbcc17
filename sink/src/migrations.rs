//! Versioned ClickHouse DDL (`sink/migrations/*.sql`), applied in order and recorded in
//! `schema_migrations`. Running them again is a no-op; an applied file that was edited
//! afterwards is refused, because the database no longer matches it.

use anyhow::Context;
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

use crate::topology::Topology;

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $name, ".sql")),
        }
    };
}

/// Every migration, oldest first. A change is a new file, never an edit.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_ledger"),
    migration!(2, "0002_receipts"),
    migration!(3, "0003_quarantine"),
    migration!(4, "0004_views"),
    migration!(5, "0005_postback_attempts"),
    migration!(6, "0006_click_attribution"),
    migration!(7, "0007_cohort_stats"),
    migration!(8, "0008_daily_stats_by_currency"),
    migration!(9, "0009_reporting_currency"),
    migration!(10, "0010_attribution_windows"),
    migration!(11, "0011_payout_source"),
    migration!(12, "0012_gate"),
    migration!(13, "0013_click_quality"),
    migration!(14, "0014_caps"),
];

impl Migration {
    pub fn checksum(&self) -> String {
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(self.sql.as_bytes()))
    }

    /// The statements of the file, comments dropped.
    pub fn statements(&self) -> Vec<String> {
        let text: String = self
            .sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        text.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// The tables the migrations create (views aside): those a cluster gives `Distributed` twins.
pub fn tables() -> Vec<&'static str> {
    const OPENING: &str = "CREATE TABLE IF NOT EXISTS ";
    MIGRATIONS
        .iter()
        .flat_map(|m| m.sql.lines())
        .filter_map(|l| l.trim().strip_prefix(OPENING))
        .filter_map(|rest| rest.split(|c: char| c.is_whitespace() || c == '(').next())
        .filter(|name| !name.is_empty())
        .collect()
}

const SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = MergeTree ORDER BY version";

fn create_database(database: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS {database}")
}

/// Every statement `apply` runs on an empty database, in order, as `topology` runs them.
pub fn plan(topology: &Topology, database: &str) -> anyhow::Result<Vec<String>> {
    let mut plan = vec![
        topology.adapt(&create_database(database))?,
        topology.adapt(SCHEMA_MIGRATIONS)?,
    ];
    for m in MIGRATIONS {
        for statement in m.statements() {
            plan.push(topology.adapt(&statement)?);
        }
    }
    plan.extend(topology.distributed_tables(database, &tables(), true));
    Ok(plan)
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Applied {
    version: u32,
    name: String,
    checksum: String,
}

/// Applies what `database` lacks, placed per `topology`; returns the versions applied now.
pub async fn apply(
    client: &Client,
    database: &str,
    topology: &Topology,
) -> anyhow::Result<Vec<u32>> {
    topology.check(client).await?;
    client
        .query(&topology.adapt(&create_database(database))?)
        .execute()
        .await
        .with_context(|| format!("creating database {database}"))?;
    let client = client.clone().with_database(database);
    client
        .query(&topology.adapt(SCHEMA_MIGRATIONS)?)
        .execute()
        .await
        .context("creating schema_migrations")?;
    let applied: Vec<Applied> = client
        .query("SELECT ?fields FROM schema_migrations ORDER BY version")
        .fetch_all()
        .await
        .context("reading schema_migrations")?;

    let mut now = Vec::new();
    for m in MIGRATIONS {
        if let Some(done) = applied.iter().find(|a| a.version == m.version) {
            anyhow::ensure!(
                done.checksum == m.checksum(),
                "migration {} ({}) was edited after it was applied; add a new migration instead",
                m.version,
                m.name
            );
            continue;
        }
        for statement in m.statements() {
            client
                .query(&topology.adapt(&statement)?)
                .execute()
                .await
                .with_context(|| format!("migration {} ({})", m.version, m.name))?;
        }
        let mut insert = client.insert::<Applied>("schema_migrations").await?;
        insert
            .write(&Applied {
                version: m.version,
                name: m.name.to_owned(),
                checksum: m.checksum(),
            })
            .await?;
        insert.end().await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        now.push(m.version);
    }
    for statement in topology.distributed_tables(database, &tables(), !now.is_empty()) {
        client
            .query(&statement)
            .execute()
            .await
            .context("creating the Distributed tables")?;
    }
    Ok(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_in_order_and_files_split_into_statements() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
            let statements = m.statements();
            assert!(!statements.is_empty(), "{}", m.name);
            for s in statements {
                assert!(!s.contains('?'), "{}: '?' is a bind marker", m.name);
                // Definitions, and columns added where they may already be.
                assert!(
                    s.starts_with("CREATE") || s.contains("ADD COLUMN IF NOT EXISTS"),
                    "{}: {s}",
                    m.name
                );
            }
        }
        assert_eq!(MIGRATIONS[3].statements().len(), 5);
    }

    #[test]
    fn every_statement_can_be_placed_on_a_cluster() {
        assert_eq!(
            tables(),
            [
                "ledger",
                "receipts",
                "quarantine",
                "postback_attempts",
                "fx_rates",
                "reporting_settings",
                "attribution_windows",
                "recon_results",
                "quality_settings",
                "conversion_minimums"
            ]
        );
        let single = plan(&Topology::Single, "db").unwrap();
        let cluster = plan(&Topology::from_flag("tl").unwrap(), "db").unwrap();
        // The same statements, plus one Distributed twin per table.
        assert_eq!(cluster.len(), single.len() + tables().len());
        for s in &cluster {
            assert!(s.contains(" ON CLUSTER `tl`"), "{s}");
            assert!(!s.contains("ENGINE = MergeTree"), "{s}");
        }
        let engines = cluster
            .iter()
            .filter(|s| s.contains("ENGINE = Replicated"))
            .count();
        // The ten tables and schema_migrations.
        assert_eq!(engines, 11);
    }
}
