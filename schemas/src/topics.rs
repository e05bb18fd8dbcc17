//! Topic names and their specification, read from `schemas/topics.conf` (the one list the
//! stack scripts and docker compose also use).

/// Validated tracking events from ingest (Avro single-object values).
pub const EVENTS: &str = "tracking.events.v1";
/// Input that could not be accepted, with the reason and the raw body, for replay.
pub const QUARANTINE: &str = "tracking.quarantine.v1";
/// The canonical ledger written by the processor.
pub const LEDGER: &str = "ledger.v1";
/// Receipt history: every occurrence of an event, duplicates included.
pub const RECEIPTS: &str = "ledger.receipts.v1";
/// The processor's compacted state changelog.
pub const PROCESSOR_STATE: &str = "processor.state.v1";
/// Ledger entries of capped offers' conversions, keyed by offer, on their way through the
/// processor's capping stage to the ledger.
pub const LEDGER_CAPPING: &str = "ledger.capping.v1";
/// The capping stage's compacted state changelog: cap usage and verdicts.
pub const CAPS_STATE: &str = "processor.caps.v1";
/// Ledger entries on their way through the processor's click-ID stage, keyed by click ID:
/// clicks that carry ad-platform IDs, and the conversions that take them.
pub const LEDGER_CLICK_IDS: &str = "ledger.clickids.v1";
/// The click-ID stage's compacted state changelog: each click's ad-platform IDs.
pub const CLICK_IDS_STATE: &str = "processor.clickids.v1";
/// Postbacks to forward, written in the ledger's transaction.
pub const POSTBACK_OUTBOX: &str = "postbacks.outbox.v1";
/// Postbacks waiting for their next attempt (the outbox record, with the attempt number and
/// the earliest time in headers).
pub const POSTBACK_RETRY: &str = "postbacks.retry.v1";
/// Every delivery attempt of a postback.
pub const POSTBACK_ATTEMPTS: &str = "postbacks.attempts.v1";
/// Postbacks that failed permanently or ran out of attempts.
pub const POSTBACK_DLQ: &str = "postbacks.dlq.v1";

/// Every topic the pipeline uses.
pub const ALL: &[&str] = &[
    EVENTS,
    QUARANTINE,
    LEDGER,
    RECEIPTS,
    PROCESSOR_STATE,
    LEDGER_CAPPING,
    CAPS_STATE,
    LEDGER_CLICK_IDS,
    CLICK_IDS_STATE,
    POSTBACK_OUTBOX,
    POSTBACK_RETRY,
    POSTBACK_ATTEMPTS,
    POSTBACK_DLQ,
];

const TOPICS_CONF: &str = include_str!("../topics.conf");

/// One topic as the deployment creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub configs: Vec<(String, String)>,
}

/// Parses `topics.conf`: `name partitions key=value,key=value`, `#` comments.
pub fn parse_specs(text: &str) -> Result<Vec<TopicSpec>, String> {
    let mut specs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(partitions)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "line {}: expected `name partitions [configs]`",
                n + 1
            ));
        };
        let partitions = partitions
            .parse()
            .map_err(|_| format!("line {}: partitions {partitions:?} is not a number", n + 1))?;
        let configs = parts
            .next()
            .map(|c| {
                c.split(',')
                    .map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .ok_or_else(|| {
                                format!("line {}: config {kv:?} is not key=value", n + 1)
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        specs.push(TopicSpec {
            name: name.to_owned(),
            partitions,
            configs,
        });
    }
    Ok(specs)
}

/// The topics of this build, as `topics.conf` declares them.
pub fn specs() -> Vec<TopicSpec> {
    parse_specs(TOPICS_CONF).expect("topics.conf parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_and_conf_list_the_same_topics() {
        let names: Vec<String> = specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ALL);
    }

    #[test]
    fn keyed_topics_share_the_partition_count() {
        let specs = specs();
        let count = |name: &str| specs.iter().find(|s| s.name == name).unwrap().partitions;
        for t in [LEDGER, RECEIPTS, PROCESSOR_STATE, POSTBACK_OUTBOX] {
            assert_eq!(count(t), count(EVENTS), "{t}");
        }
        // The capping stage's state lines up with its own input.
        assert_eq!(count(CAPS_STATE), count(LEDGER_CAPPING));
    }

    #[test]
    fn state_topics_are_compacted() {
        for name in [PROCESSOR_STATE, CAPS_STATE] {
            let state = specs().into_iter().find(|s| s.name == name).unwrap();
            assert!(state
                .configs
                .contains(&("cleanup.policy".to_owned(), "compact".to_owned())));
        }
    }

    #[test]
    fn malformed_lines_are_reported() {
        assert!(parse_specs("t1 six").unwrap_err().contains("line 1"));
        assert!(parse_specs("t1 3 retention")
            .unwrap_err()
            .contains("key=value"));
    }
}
