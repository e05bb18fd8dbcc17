//! Exactly-once dedup, lifecycle joins and the canonical ledger.
//!
//! [`ledger`] holds the rules (pure), with [`payout`]'s offers' payout rules; [`changelog`]
//! encodes the state; [`restore`] rebuilds
//! it from Kafka; [`outbox`] routes entries to postback destinations; [`events`] reads the input; [`exactly_once`] runs
//! the transactional loop, under [`watchdog`]; [`pass_through`] is the benchmark baseline;
//! [`metrics`] feeds the shared `/metrics` endpoint.

pub mod changelog;
pub mod config;
pub mod events;
pub mod exactly_once;
pub mod ledger;
pub mod metrics;
pub mod outbox;
pub mod pass_through;
pub mod payout;
pub mod restore;
pub mod watchdog;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use config::{Config, Mode};
pub use metrics::Metrics;

/// Runs the configured mode on the calling thread until `shutdown` is set.
pub fn run(
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    config.kafka.check(
        &[
            &config.input_topic,
            &config.state_topic,
            &config.ledger_topic,
            &config.receipts_topic,
            &config.outbox_topic,
            &config.quarantine_topic,
        ],
        Some(&config.group_id),
    )?;
    match config.mode {
        Mode::ExactlyOnce => exactly_once::run(config, metrics, shutdown, ready),
        Mode::PassThrough => pass_through::run(config, metrics, shutdown, ready),
    }
}
