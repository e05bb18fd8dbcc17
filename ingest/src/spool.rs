//! The click spool: when Kafka has not confirmed a click within the click wait, the click is
//! appended to a local file and fsynced before the visitor is redirected, and a background
//! task re-produces spooled clicks until Kafka confirms them. A click may then reach Kafka
//! twice (the original send may still land); both copies carry the same `event_id`, and the
//! processor counts it once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::metrics::Metrics;
use crate::sink::EventSink;

const ACTIVE: &str = "clicks.spool";

#[derive(Serialize, Deserialize)]
struct Entry {
    topic: String,
    key: String,
    payload: String,
}

/// What one drain round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Messages Kafka confirmed, whose files were deleted.
    pub delivered: usize,
    /// Messages in files kept for the next round because a send failed.
    pub pending: usize,
}

pub struct Spool {
    dir: PathBuf,
    append_lock: Mutex<()>,
}

impl Spool {
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            append_lock: Mutex::new(()),
        })
    }

    /// Appends one message and fsyncs it: once this returns, the click survives a crash.
    pub async fn append(&self, topic: &str, key: &str, payload: &[u8]) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&Entry {
            topic: topic.into(),
            key: key.into(),
            payload: B64.encode(payload),
        })?;
        line.push(b'\n');
        let _guard = self.append_lock.lock().await;
        let path = self.dir.join(ACTIVE);
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            file.write_all(&line)?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// Moves the active file aside for draining, so appends continue in a fresh one.
    async fn rotate(&self) -> std::io::Result<()> {
        let _guard = self.append_lock.lock().await;
        let active = self.dir.join(ACTIVE);
        if tokio::fs::metadata(&active)
            .await
            .is_ok_and(|m| m.len() > 0)
        {
            let stamp = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
            tokio::fs::rename(&active, self.dir.join(format!("clicks.{stamp}.draining"))).await?;
        }
        Ok(())
    }

    /// Re-produces every spooled message; a file is deleted only when all of it is confirmed.
    /// Lines that cannot be read back (a write torn by a crash) are logged, not retried.
    pub async fn drain_once(&self, sink: &dyn EventSink) -> std::io::Result<Drained> {
        self.rotate().await?;
        let mut drained = Drained::default();
        let mut dir = tokio::fs::read_dir(&self.dir).await?;
        let mut files = Vec::new();
        while let Some(entry) = dir.next_entry().await? {
            if entry.file_name().to_string_lossy().ends_with(".draining") {
                files.push(entry.path());
            }
        }
        files.sort();
        for file in files {
            let text = tokio::fs::read_to_string(&file).await?;
            let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
            let entries: Vec<(Entry, Vec<u8>)> = lines
                .iter()
                .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
                .filter_map(|e| B64.decode(&e.payload).ok().map(|p| (e, p)))
                .collect();
            if entries.len() < lines.len() {
                tracing::error!(
                    file = %file.display(),
                    unreadable = lines.len() - entries.len(),
                    "spool lines that cannot be read back are skipped"
                );
            }
            let sends = entries.iter().map(|(e, p)| sink.send(&e.topic, &e.key, p));
            if futures::future::join_all(sends)
                .await
                .iter()
                .all(Result::is_ok)
            {
                tokio::fs::remove_file(&file).await?;
                drained.delivered += entries.len();
            } else {
                drained.pending += entries.len();
            }
        }
        Ok(drained)
    }

    /// Drains the spool every `period` for as long as the process runs.
    pub fn spawn_drainer(
        self: &Arc<Self>,
        sink: Arc<dyn EventSink>,
        metrics: Arc<Metrics>,
        period: Duration,
    ) {
        let spool = self.clone();
        tokio::spawn(async move {
            loop {
                match spool.drain_once(sink.as_ref()).await {
                    Ok(drained) => {
                        if drained.delivered > 0 {
                            tracing::info!(
                                clicks = drained.delivered,
                                "spooled clicks delivered to Kafka"
                            );
                        }
                        // Clicks appended while this round ran are counted in the next.
                        metrics.spool_pending.set(drained.pending as i64);
                    }
                    Err(e) => tracing::warn!(error = %e, "draining the click spool failed"),
                }
                tokio::time::sleep(period).await;
            }
        });
    }
}
