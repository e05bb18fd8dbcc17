//! The ingest service: the only door into the pipeline. It authenticates, validates and
//! minimises input, and answers 2xx only for what Kafka has durably accepted.

pub mod adapters;
pub mod amounts;
pub mod app;
pub mod auth_limit;
pub mod client_ip;
pub mod config;
pub mod error;
pub mod metrics;
pub mod producer;
pub mod quality;
pub mod quarantine;
pub mod routes;
pub mod spool;

pub use app::{router, serve, AppState};
pub use config::Config;
