//! Where the commands find the pipeline: ClickHouse, for those that read or change the
//! ledger, and ingest, for those that send to it.

use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct Warehouse {
    #[command(flatten)]
    pub clickhouse: telemetry::clickhouse::ClickHouseConnection,
    /// The database the sink loads.
    #[arg(
        long,
        env = "SINK_DATABASE",
        default_value = "trackledger",
        global = true,
        help_heading = "ClickHouse"
    )]
    pub database: String,
}

impl Warehouse {
    pub fn client(&self) -> anyhow::Result<clickhouse::Client> {
        Ok(self.clickhouse.client()?.with_database(&self.database))
    }
}

/// A ClickHouse decimal read as text (`toString(...)`), which keeps it exact.
pub fn decimal(text: &str) -> anyhow::Result<rust_decimal::Decimal> {
    text.parse()
        .map_err(|e| anyhow::anyhow!("ClickHouse returned {text:?}, not a decimal: {e}"))
}

#[derive(Args, Debug, Clone)]
pub struct IngestEndpoint {
    /// Ingest's base URL.
    #[arg(long, env = "INGEST_URL", default_value = "http://127.0.0.1:8080")]
    pub ingest_url: String,
    /// API key for `/v1/events`: the first of ingest's keys is used.
    #[arg(
        long,
        env = "INGEST_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_key: Vec<String>,
}

impl IngestEndpoint {
    pub fn api_key(&self) -> anyhow::Result<String> {
        self.api_key
            .first()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no API key: set INGEST_API_KEYS or --api-key"))
    }
}
