//! Versioned ClickHouse DDL (`sink/migrations/*.sql`), applied in order and recorded in
//! `schema_migrations`. Running them again is a no-op; an applied file that was edited
//! afterwards is refused, because the database no longer matches it.

use anyhow::Context;
use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

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

#[derive(Debug, Row, Serialize, Deserialize)]
struct Applied {
    version: u32,
    name: String,
    checksum: String,
}

/// Applies what `database` lacks; returns the versions applied now.
pub async fn apply(client: &Client, database: &str) -> anyhow::Result<Vec<u32>> {
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await
        .with_context(|| format!("creating database {database}"))?;
    let client = client.clone().with_database(database);
    client
        .query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version UInt32,
                name String,
                checksum String,
                applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
            ) ENGINE = MergeTree ORDER BY version",
        )
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
                .query(&statement)
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
}
