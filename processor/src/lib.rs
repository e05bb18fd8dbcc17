//! Exactly-once dedup, lifecycle joins and the canonical ledger.
//!
//! [`ledger`] holds the rules (pure), with [`payout`]'s offers' payout rules; [`changelog`]
//! encodes the state; [`restore`] rebuilds
//! it from Kafka; [`outbox`] routes entries to postback destinations; [`events`] reads the input; [`exactly_once`] runs
//! the transactional loop, under [`watchdog`], over a [`transaction`]; [`caps`] holds the
//! conversion caps and their capping stage, [`click_ids`] the click-ID stage through which
//! conversions take their click's ad-platform IDs, both keyed stages run by one driver
//! (`stage`); [`pass_through`] is the benchmark baseline;
//! [`metrics`] feeds the shared `/metrics` endpoint.

pub mod caps;
pub mod changelog;
pub mod click_ids;
pub mod config;
pub mod events;
pub mod exactly_once;
pub mod ledger;
pub mod metrics;
pub mod outbox;
pub mod pass_through;
pub mod payout;
pub mod restore;
mod stage;
pub mod transaction;
pub mod watchdog;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use config::{ClickIdsMode, Config, Mode};
pub use metrics::Metrics;

/// Runs the configured mode on the calling thread until `shutdown` is set; the keyed stages
/// it needs (capping with a caps file, click IDs: `--click-ids`) run beside it on threads of
/// their own, and any one failing stops all.
pub fn run(
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let click_ids = match config.click_ids {
        ClickIdsMode::Always => true,
        ClickIdsMode::Never => false,
        ClickIdsMode::Auto => {
            outbox::Outbox::load(config.destinations_file.as_deref())?.sends_click_ids()
        }
    };
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
    if click_ids {
        topics.extend([&config.click_ids_topic, &config.click_ids_state_topic]);
    }
    let topics: Vec<&str> = topics.into_iter().map(String::as_str).collect();
    config.kafka.check(&topics, Some(&config.group_id))?;
    let config = Arc::new(config);
    match config.mode {
        Mode::ExactlyOnce => {
            let caps_file = config.caps_file().map(caps::CapsFile::load).transpose()?;
            let mut stages = Vec::new();
            if let Some(file) = &caps_file {
                let (config, metrics, file) = (config.clone(), metrics.clone(), file.clone());
                stages.push(beside("capping", &shutdown, move |shutdown| {
                    caps::stage::run(config, metrics, file, shutdown)
                }));
            }
            if click_ids {
                let (config, metrics) = (config.clone(), metrics.clone());
                stages.push(beside("click-ID", &shutdown, move |shutdown| {
                    click_ids::stage::run(config, metrics, shutdown)
                }));
            }
            tracing::info!(click_ids, "ledger stage starting");
            let result = exactly_once::run(
                config.clone(),
                metrics,
                caps_file,
                click_ids,
                shutdown.clone(),
                ready,
            );
            shutdown.store(true, Ordering::SeqCst);
            stages.into_iter().fold(result, |result, (name, stage)| {
                let staged = stage
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("the {name} stage panicked")));
                result.and(staged)
            })
        }
        Mode::PassThrough => pass_through::run((*config).clone(), metrics, shutdown, ready),
    }
}

type StageThread = (&'static str, std::thread::JoinHandle<anyhow::Result<()>>);

/// Starts a keyed stage on a thread of its own; when it ends, for any reason, it sets
/// `shutdown`: no stage runs without the others.
fn beside(
    name: &'static str,
    shutdown: &Arc<AtomicBool>,
    stage: impl FnOnce(Arc<AtomicBool>) -> anyhow::Result<()> + Send + 'static,
) -> StageThread {
    let shutdown = shutdown.clone();
    let handle = std::thread::Builder::new()
        .name(format!("{name}-stage"))
        .spawn(move || {
            let result = stage(shutdown.clone());
            if let Err(e) = &result {
                tracing::error!(stage = name, error = %format!("{e:#}"), "the stage failed");
            }
            shutdown.store(true, Ordering::SeqCst);
            result
        })
        .expect("spawning a stage thread");
    (name, handle)
}
