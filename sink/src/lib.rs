//! Loads the canonical ledger into ClickHouse, exactly once.
//!
//! [`migrations`] owns the DDL, [`topology`] places it on one server or a cluster; [`rows`] encodes the Kafka records as table rows; [`loader`]
//! batches, inserts and resumes; [`metrics`] feeds the shared `/metrics` endpoint.

pub mod config;
pub mod loader;
pub mod metrics;
pub mod migrations;
pub mod reporting;
pub mod retry;
pub mod rows;
pub mod topology;

pub use config::Config;
pub use metrics::Metrics;
