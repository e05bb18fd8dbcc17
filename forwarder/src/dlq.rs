//! The dead-letter queue and the retry topic: the outbox record's bytes as the value, the
//! delivery state in headers, so that a dead letter or a retry is the original record,
//! idempotency key included.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use telemetry::topic::read_to_end;

use crate::config::{Common, ReplayArgs};

pub const ATTEMPT: &str = "attempt";
pub const NOT_BEFORE: &str = "not_before";
pub const DESTINATION: &str = "destination";
pub const REASON: &str = "reason";
pub const DEAD_LETTERED_AT: &str = "dead_lettered_at";

pub fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        })
    })
}

pub fn header(m: &BorrowedMessage<'_>, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// One dead letter as the replay reads it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub destination: String,
    pub reason: String,
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

impl DeadLetter {
    pub fn matches(&self, f: &ReplayArgs) -> bool {
        f.destination
            .as_ref()
            .is_none_or(|d| *d == self.destination)
            && f.reason
                .as_ref()
                .is_none_or(|r| self.reason.contains(r.as_str()))
            && f.since
                .is_none_or(|s| self.dead_lettered_at.is_some_and(|t| t >= s))
            && f.until
                .is_none_or(|u| self.dead_lettered_at.is_some_and(|t| t < u))
    }
}

/// Every dead letter on the topic now, read to the end of each partition.
pub fn read_all(common: &Common) -> anyhow::Result<Vec<DeadLetter>> {
    let records = read_to_end(
        &common.kafka,
        &common.dlq_topic,
        "trackledger-forwarder-replay",
        Duration::from_secs(5),
    )
    .context("reading the DLQ")?;
    Ok(records
        .into_iter()
        .map(|r| DeadLetter {
            destination: r.header(DESTINATION).unwrap_or_default(),
            reason: r.header(REASON).unwrap_or_default(),
            dead_lettered_at: r
                .header(DEAD_LETTERED_AT)
                .and_then(|v| v.parse().ok())
                .and_then(DateTime::from_timestamp_millis),
            key: r.key,
            value: r.payload,
        })
        .collect())
}

/// Sends the matching dead letters back to the outbox; returns how many.
pub async fn replay(common: &Common, filter: &ReplayArgs) -> anyhow::Result<usize> {
    let topics = [common.dlq_topic.as_str(), common.outbox_topic.as_str()];
    common.kafka.check_async(&topics, None).await?;
    let letters: Vec<DeadLetter> = read_all(common)?
        .into_iter()
        .filter(|d| d.matches(filter))
        .collect();
    if filter.dry_run {
        for d in &letters {
            println!(
                "{}\t{}\t{}",
                d.destination,
                String::from_utf8_lossy(&d.key),
                d.reason
            );
        }
        return Ok(letters.len());
    }
    let producer: FutureProducer = common
        .kafka
        .config(&[("enable.idempotence", "true"), ("acks", "all")])
        .create()?;
    for d in &letters {
        producer
            .send(
                FutureRecord::to(&common.outbox_topic)
                    .key(&d.key)
                    .payload(&d.value),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .context("writing to the outbox")?;
    }
    Ok(letters.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(destination: &str, reason: &str, at_ms: i64) -> DeadLetter {
        DeadLetter {
            key: b"k".to_vec(),
            value: vec![],
            destination: destination.into(),
            reason: reason.into(),
            dead_lettered_at: DateTime::from_timestamp_millis(at_ms),
        }
    }

    #[test]
    fn replay_filters_by_destination_reason_and_time() {
        let t = |ms| DateTime::from_timestamp_millis(ms);
        let all = ReplayArgs::default();
        let d = letter("meta", "permanent failure: HTTP 400", 1_000);
        assert!(d.matches(&all));
        let by = |f: ReplayArgs| d.matches(&f);
        assert!(by(ReplayArgs {
            destination: Some("meta".into()),
            ..all.clone()
        }));
        assert!(!by(ReplayArgs {
            destination: Some("tracker".into()),
            ..all.clone()
        }));
        assert!(by(ReplayArgs {
            reason: Some("HTTP 400".into()),
            ..all.clone()
        }));
        assert!(!by(ReplayArgs {
            reason: Some("gave up".into()),
            ..all.clone()
        }));
        assert!(by(ReplayArgs {
            since: t(1_000),
            until: t(1_001),
            ..all.clone()
        }));
        assert!(!by(ReplayArgs {
            since: t(1_001),
            ..all.clone()
        }));
        assert!(!by(ReplayArgs {
            until: t(1_000),
            ..all
        }));
    }
}
