//! The click spool: when Kafka has not confirmed a click within the click wait, the click is
//! appended to a local file and fsynced before the visitor is redirected, and a background
//! task re-produces spooled clicks until Kafka confirms them. A click may then reach Kafka
//! twice (the original send may still land); both copies carry the same `event_id`, and the
//! processor counts it once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Mutex;

use crate::metrics::Metrics;
use crate::producer::EventProducer;

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

/// Messages re-produced at once while draining: a spool file is read a chunk at a time,
/// never whole, however large an outage made it.
const DRAIN_CHUNK: usize = 1_000;

pub struct Spool {
    dir: PathBuf,
    append_lock: Mutex<()>,
    /// Bytes in the spool's files; appends stop at `max_bytes`.
    bytes: AtomicU64,
    max_bytes: u64,
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut bytes = 0;
        for entry in std::fs::read_dir(dir)? {
            bytes += entry?.metadata()?.len();
        }
        Ok(Self {
            dir: dir.to_owned(),
            append_lock: Mutex::new(()),
            bytes: AtomicU64::new(bytes),
            max_bytes,
        })
    }

    /// Bytes in the spool now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Appends one message and fsyncs it: once this returns, the click survives a crash.
    /// A full spool refuses it (`StorageFull`): the caller answers 503 rather than let the
    /// disk fill up.
    pub async fn append(&self, topic: &str, key: &str, payload: &[u8]) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&Entry {
            topic: topic.into(),
            key: key.into(),
            payload: B64.encode(payload),
        })?;
        line.push(b'\n');
        let _guard = self.append_lock.lock().await;
        let size = line.len() as u64;
        if self.bytes() + size > self.max_bytes {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!("the click spool is full ({} bytes)", self.max_bytes),
            ));
        }
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
        .map_err(std::io::Error::other)??;
        self.bytes.fetch_add(size, Ordering::Relaxed);
        Ok(())
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
    pub async fn drain_once(&self, producer: &dyn EventProducer) -> std::io::Result<Drained> {
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
            let (sent, all_ok) = self.drain_file(&file, producer).await?;
            if all_ok {
                let size = tokio::fs::metadata(&file).await?.len();
                tokio::fs::remove_file(&file).await?;
                self.bytes
                    .fetch_sub(size.min(self.bytes()), Ordering::Relaxed);
                drained.delivered += sent;
            } else {
                drained.pending += sent;
            }
        }
        Ok(drained)
    }

    /// Re-produces one file, a chunk at a time; returns how many messages it holds and
    /// whether Kafka confirmed them all.
    async fn drain_file(
        &self,
        file: &Path,
        producer: &dyn EventProducer,
    ) -> std::io::Result<(usize, bool)> {
        // Split on bytes, not UTF-8 lines: a line torn by a crash must not stop the file.
        let mut lines = tokio::io::BufReader::new(tokio::fs::File::open(file).await?).split(b'\n');
        let (mut count, mut unreadable, mut all_ok) = (0, 0, true);
        let mut chunk: Vec<(Entry, Vec<u8>)> = Vec::with_capacity(DRAIN_CHUNK);
        loop {
            let line = lines.next_segment().await?;
            if let Some(line) = line.as_deref().filter(|l| !l.is_empty()) {
                match serde_json::from_slice::<Entry>(line)
                    .ok()
                    .and_then(|e| B64.decode(&e.payload).ok().map(|p| (e, p)))
                {
                    Some(entry) => chunk.push(entry),
                    None => unreadable += 1,
                }
            }
            if chunk.len() == DRAIN_CHUNK || (line.is_none() && !chunk.is_empty()) {
                let sends = chunk
                    .iter()
                    .map(|(e, p)| producer.send(&e.topic, &e.key, p));
                all_ok &= futures::future::join_all(sends)
                    .await
                    .iter()
                    .all(Result::is_ok);
                count += chunk.len();
                chunk.clear();
            }
            if line.is_none() {
                break;
            }
        }
        if unreadable > 0 {
            tracing::error!(
                file = %file.display(),
                unreadable,
                "spool lines that cannot be read back are skipped"
            );
        }
        Ok((count, all_ok))
    }

    /// Drains the spool every `period` for as long as the process runs.
    pub fn spawn_drainer(
        self: &Arc<Self>,
        producer: Arc<dyn EventProducer>,
        metrics: Arc<Metrics>,
        period: Duration,
    ) {
        let spool = self.clone();
        tokio::spawn(async move {
            loop {
                match spool.drain_once(producer.as_ref()).await {
                    Ok(drained) => {
                        if drained.delivered > 0 {
                            tracing::info!(
                                clicks = drained.delivered,
                                "spooled clicks delivered to Kafka"
                            );
                        }
                        // Clicks appended while this round ran are counted in the next.
                        metrics.spool_pending.set(drained.pending as i64);
                        metrics.spool_bytes.set(spool.bytes() as i64);
                    }
                    Err(e) => tracing::warn!(error = %e, "draining the click spool failed"),
                }
                tokio::time::sleep(period).await;
            }
        });
    }
}
