//! Loads the canonical ledger into ClickHouse, exactly once.
//!
//! [`migrations`] owns the DDL; [`rows`] encodes the Kafka records as table rows; [`loader`]
//! batches, inserts and resumes; [`metrics`] and [`http`] serve the operator surface.

pub mod config;
pub mod http;
pub mod loader;
pub mod metrics;
pub mod migrations;
pub mod rows;

pub use config::Config;
pub use metrics::Metrics;
