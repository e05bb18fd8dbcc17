//! Exactly-once dedup, lifecycle joins and the canonical ledger.
//!
//! [`ledger`] holds the rules (pure), with [`payout`]'s offers' payout rules; [`changelog`]
//! encodes the state; [`restore`] rebuilds
//! it from Kafka; [`outbox`] routes entries to postback destinations; [`events`] reads the input; [`exactly_once`] runs
//! the transactional loop, under [`watchdog`], over a [`transaction`]; [`caps`] holds the
//! conversion caps and their capping stage; [`pass_through`] is the benchmark baseline;
//! [`metrics`] feeds the shared `/metrics` endpoint.

pub mod caps;
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
pub mod transaction;
pub mod watchdog;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use config::{Config, Mode};
pub use metrics::Metrics;

/// Runs the configured mode on the calling thread until `shutdown` is set; with a caps file,
/// the capping stage runs beside it on a thread of its own, and either one failing stops both.
pub fn run(
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut topics = vec![
        &config.input_topic,
        &config.state_topic,
        &config.ledger_topic,
        &config.receipts_topic,
        &config.outbox_topic,
        &config.quarantine_topic,
    ];
    if config.caps_file().is_some() {
        topics.extend([&config.capping_topic, &config.caps_state_topic]);
    }
    let topics: Vec<&str> = topics.into_iter().map(String::as_str).collect();
    config.kafka.check(&topics, Some(&config.group_id))?;
    let config = Arc::new(config);
    match config.mode {
        Mode::ExactlyOnce => {
            let caps_file = config.caps_file().map(caps::CapsFile::load).transpose()?;
            let stage = caps_file.as_ref().map(|file| {
                let (config, metrics, shutdown) =
                    (config.clone(), metrics.clone(), shutdown.clone());
                let file = file.clone();
                std::thread::Builder::new()
                    .name("capping-stage".into())
                    .spawn(move || {
                        let result = caps::stage::run(config, metrics, file, shutdown.clone());
                        if let Err(e) = &result {
                            tracing::error!(error = %format!("{e:#}"), "the capping stage failed");
                        }
                        // Neither stage runs without the other.
                        shutdown.store(true, Ordering::SeqCst);
                        result
                    })
                    .expect("spawning the capping stage")
            });
            let result =
                exactly_once::run(config.clone(), metrics, caps_file, shutdown.clone(), ready);
            shutdown.store(true, Ordering::SeqCst);
            let staged = stage.map_or(Ok(()), |s| {
                s.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the capping stage panicked")))
            });
            result.and(staged)
        }
        Mode::PassThrough => pass_through::run((*config).clone(), metrics, shutdown, ready),
    }
}
