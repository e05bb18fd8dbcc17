//! Loads the canonical ledger into ClickHouse, exactly once.
//!
//! [`migrations`] owns the DDL; [`rows`] encodes the Kafka records as table rows; [`loader`]
//! batches, inserts and resumes; [`metrics`] feeds the shared `/metrics` endpoint.

pub mod config;
pub mod loader;
pub mod metrics;
pub mod migrations;
pub mod reporting;
pub mod retry;
pub mod rows;

pub use config::Config;
pub use metrics::Metrics;
