//! `trackctl erase`: one person's data out of the ledger (GDPR Art. 17), found by click ID
//! or e-mail hash.
//!
//! - **ClickHouse**: every row of the person's conversions (their clicks, and every entry of
//!   a conversion that carries their click ID or e-mail hash, refunds included) is replaced
//!   by an anonymised copy. Identifiers (event ID, conversion key, order, transaction, lead
//!   and click IDs) become `erased:` + SHA-256 under a random salt that exists only during
//!   the run, so the copies still group and join among themselves (the views' counts and
//!   sums do not change) but cannot be linked back to anyone. Free-text fields that may hold
//!   personal data (sub IDs, utm_term/content, user agent, attributes) and the IP and e-mail
//!   hashes are cleared. Rows keep their Kafka position, which makes the run idempotent:
//!   a row whose position already has an erased copy is not copied again.
//! - **Processor state**: one erasure request per conversion on the events topic, in that
//!   conversion's partition; the processor drops the dedup entries and the conversion, and
//!   writes tombstones to its compacted changelog in the same transaction.
//! - **Kafka** keeps what it has until retention removes it (docs/OPERATIONS.md).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Args;
use rand::RngCore;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::TopicPartitionList;
use schemas::erasure::{ErasureRequest, CONTROL_HEADER, ERASE};

use crate::warehouse::Warehouse;

#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false, id = "subject")]
pub struct Subject {
    /// The person's click ID (the `tl_click` cookie, or the network's click ID).
    #[arg(long)]
    pub click_id: Option<String>,
    /// The keyed hash of the person's e-mail, as the ledger holds it.
    #[arg(long)]
    pub email_hash: Option<String>,
    /// The person's e-mail; hashed here with INGEST_PII_KEY, never stored or logged.
    #[arg(long)]
    pub email: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct EraseArgs {
    #[command(flatten)]
    pub subject: Subject,
    /// The PII key ingest hashes e-mails with (only for --email).
    #[arg(long, env = "INGEST_PII_KEY", hide_env_values = true)]
    pub pii_key: Option<String>,
    /// The processor's input topic, where erasure requests go.
    #[arg(long, env = "PROCESSOR_INPUT_TOPIC", default_value = schemas::topics::EVENTS)]
    pub events_topic: String,
    /// The processor's consumer group, watched until it has applied the requests.
    #[arg(
        long,
        env = "PROCESSOR_GROUP_ID",
        default_value = "trackledger-processor"
    )]
    pub processor_group: String,
    /// How long to wait for the processor to apply the requests.
    #[arg(long, default_value_t = 120)]
    pub wait_seconds: u64,
    /// Refuse to erase more conversions than this: one person has a few, and more means an
    /// identifier shared by many (a network's placeholder click ID, say).
    #[arg(long, default_value_t = 50)]
    pub max_conversions: usize,
    /// Show what would be erased without changing anything.
    #[arg(long)]
    pub dry_run: bool,

    /// trackctl's Kafka connection (its top-level flags).
    #[arg(skip)]
    pub kafka: telemetry::kafka::KafkaConnection,
}

/// What an erasure found and changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Erasure {
    pub erasure_id: String,
    pub conversions: usize,
    pub events: usize,
    /// Rows replaced by anonymised copies, by table.
    pub rows: BTreeMap<&'static str, u64>,
    /// Erasure requests the processor has committed past.
    pub processor_applied: usize,
}

/// One ledger row of the person: its event, conversion and input partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Owned {
    conversion_key: String,
    partition: i32,
    event_id: String,
}

const ERASED: &str = "erased:";

/// The person's rows: those with their click ID or e-mail hash, every other row of the same
/// conversions, and the clicks those conversions name. Erased copies are never matched.
async fn find(
    warehouse: &Warehouse,
    click: Option<&str>,
    email_hash: Option<&str>,
) -> anyhow::Result<Vec<Owned>> {
    let ch = warehouse.client()?;
    let mut clicks: BTreeSet<String> = click.map(str::to_owned).into_iter().collect();
    let mut keys: BTreeSet<String> = BTreeSet::new();
    let hashes: Vec<String> = email_hash.map(str::to_owned).into_iter().collect();
    let mut found = BTreeSet::new();
    // Each round adds the conversions of newly found clicks and the clicks of newly found
    // conversions; a person's graph is small, so this ends in two or three rounds.
    for _ in 0..8 {
        let rows = ch
            .query(
                "SELECT conversion_key, kafka_partition, event_id, coalesce(click_id, '')
                 FROM ledger
                 WHERE NOT startsWith(event_id, ?)
                   AND (has(?, coalesce(click_id, '')) OR has(?, coalesce(email_hash, ''))
                        OR has(?, conversion_key))",
            )
            .bind(ERASED)
            .bind(clicks.iter().collect::<Vec<_>>())
            .bind(&hashes)
            .bind(keys.iter().collect::<Vec<_>>())
            .fetch_all::<(String, i32, String, String)>()
            .await
            .context("searching the ledger")?;
        let before = (found.len(), clicks.len(), keys.len());
        for (conversion_key, partition, event_id, click_id) in rows {
            if !click_id.is_empty() {
                clicks.insert(click_id);
            }
            keys.insert(conversion_key.clone());
            found.insert(Owned {
                conversion_key,
                partition,
                event_id,
            });
        }
        if before == (found.len(), clicks.len(), keys.len()) {
            break;
        }
    }
    Ok(found.into_iter().collect())
}

fn salted(column: &str, salt: &str) -> String {
    format!("concat('{ERASED}', lower(hex(substring(SHA256(concat('{salt}', {column})), 1, 16))))")
}

fn salted_nullable(column: &str, salt: &str) -> String {
    format!(
        "if({column} IS NULL, NULL, {})",
        salted(&format!("assumeNotNull({column})"), salt)
    )
}

/// Copies the matching rows anonymised, then deletes the originals; returns the originals
/// replaced.
async fn anonymise(
    ch: &clickhouse::Client,
    table: &str,
    id_column: &str,
    matching: &str,
    replace: &[String],
    ids: &[String],
    keys: &[String],
) -> anyhow::Result<u64> {
    let not_erased = format!("NOT startsWith({id_column}, '{ERASED}')");
    let count = ch
        .query(&format!(
            "SELECT count() FROM {table} WHERE {matching} AND {not_erased}"
        ))
        .param("ids", ids)
        .param("keys", keys)
        .fetch_one::<u64>()
        .await?;
    if count == 0 {
        return Ok(0);
    }
    ch.query(&format!(
        // The filter sits in a subquery: in ClickHouse, the REPLACE aliases would otherwise
        // shadow the columns of the same name in WHERE and the filter would see the
        // anonymised values.
        "INSERT INTO {table} SELECT * REPLACE ({}) FROM
         (SELECT * FROM {table}
          WHERE {matching} AND {not_erased}
            AND (kafka_partition, kafka_offset) NOT IN
                (SELECT kafka_partition, kafka_offset FROM {table} WHERE NOT {not_erased}))",
        replace.join(", ")
    ))
    .param("ids", ids)
    .param("keys", keys)
    .execute()
    .await
    .with_context(|| format!("copying anonymised rows of {table}"))?;
    ch.query(&format!(
        "ALTER TABLE {table} DELETE WHERE {matching} AND {not_erased} SETTINGS mutations_sync = 2"
    ))
    .param("ids", ids)
    .param("keys", keys)
    .execute()
    .await
    .with_context(|| format!("deleting the original rows of {table}"))?;
    Ok(count)
}

async fn erase_clickhouse(
    warehouse: &Warehouse,
    owned: &[Owned],
    erasure: &mut Erasure,
) -> anyhow::Result<()> {
    let mut salt_bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt: String = salt_bytes.iter().map(|b| format!("{b:02x}")).collect();
    let ids: Vec<String> = owned.iter().map(|o| o.event_id.clone()).collect();
    let keys: Vec<String> = owned
        .iter()
        .map(|o| o.conversion_key.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ch = warehouse.client()?;
    let h = |c: &str| format!("{} AS {c}", salted(c, &salt));
    let hn = |c: &str| format!("{} AS {c}", salted_nullable(c, &salt));
    let null = |c: &str| format!("NULL AS {c}");
    let mut ledger = vec![
        h("event_id"),
        h("conversion_key"),
        hn("linked_event_id"),
        format!(
            "arrayMap(x -> {}, adopted_event_ids) AS adopted_event_ids",
            salted("x", &salt)
        ),
        "arrayPushBack(flags, 'erased') AS flags".to_owned(),
        hn("order_id"),
        hn("transaction_id"),
        hn("parent_order_id"),
        hn("lead_id"),
        hn("click_id"),
        "map() AS attributes".to_owned(),
    ];
    for c in [
        "utm_term",
        "utm_content",
        "sub1",
        "sub2",
        "sub3",
        "sub4",
        "sub5",
        "ip_hash",
        "email_hash",
        "user_agent",
    ] {
        ledger.push(null(c));
    }
    let by_ids =
        "(has({ids:Array(String)}, event_id) OR has({keys:Array(String)}, conversion_key))";
    erasure.rows.insert(
        "ledger",
        anonymise(&ch, "ledger", "event_id", by_ids, &ledger, &ids, &keys).await?,
    );
    let receipts = [h("event_id"), h("conversion_key")];
    erasure.rows.insert(
        "receipts",
        anonymise(&ch, "receipts", "event_id", by_ids, &receipts, &ids, &keys).await?,
    );
    let attempts = [h("idempotency_key"), "'' AS response_snippet".to_owned()];
    let by_key = "has({ids:Array(String)}, idempotency_key)";
    erasure.rows.insert(
        "postback_attempts",
        anonymise(
            &ch,
            "postback_attempts",
            "idempotency_key",
            by_key,
            &attempts,
            &ids,
            &keys,
        )
        .await?,
    );
    Ok(())
}

/// Sends one erasure request per conversion; returns where each landed.
async fn request_processor(
    args: &EraseArgs,
    owned: &[Owned],
    erasure_id: &str,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let mut by_conversion: BTreeMap<(&str, i32), Vec<String>> = BTreeMap::new();
    for o in owned {
        by_conversion
            .entry((&o.conversion_key, o.partition))
            .or_default()
            .push(o.event_id.clone());
    }
    let producer: FutureProducer = args
        .kafka
        .config(&[("enable.idempotence", "true"), ("acks", "all")])
        .create()?;
    let mut landed = Vec::new();
    for ((conversion_key, partition), event_ids) in by_conversion {
        let request = ErasureRequest {
            erasure_id: erasure_id.to_owned(),
            conversion_key: conversion_key.to_owned(),
            event_ids,
        };
        let value = serde_json::to_vec(&request)?;
        let headers = OwnedHeaders::new().insert(Header {
            key: CONTROL_HEADER,
            value: Some(ERASE),
        });
        // The ledger's partition is the input partition the conversion's events came from.
        let delivery = producer
            .send(
                FutureRecord::to(&args.events_topic)
                    .partition(partition)
                    .key(conversion_key)
                    .payload(&value)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .context("sending an erasure request to the processor")?;
        landed.push((delivery.partition, delivery.offset));
    }
    Ok(landed)
}

/// Waits until the processor's group has committed past every request.
fn wait_applied(args: &EraseArgs, landed: &[(i32, i64)]) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = args
        .kafka
        .config(&[
            ("group.id", args.processor_group.as_str()),
            ("enable.auto.commit", "false"),
        ])
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(args.wait_seconds);
    loop {
        let mut tpl = TopicPartitionList::new();
        for (p, _) in landed {
            tpl.add_partition(&args.events_topic, *p);
        }
        let committed = consumer.committed_offsets(tpl, Duration::from_secs(10))?;
        let applied = landed
            .iter()
            .filter(|(p, offset)| {
                committed
                    .find_partition(&args.events_topic, *p)
                    .and_then(|e| e.offset().to_raw())
                    .is_some_and(|c| c > *offset)
            })
            .count();
        if applied == landed.len() || Instant::now() > deadline {
            return Ok(applied);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The subject as the ledger holds it: a click ID, or an e-mail hash. Empty or malformed
/// values are refused: an empty one would match every row without that field.
fn identify(
    subject: &Subject,
    pii_key: Option<&str>,
) -> anyhow::Result<(Option<String>, Option<String>)> {
    let click_id = match subject.click_id.as_deref().map(str::trim) {
        Some("") => bail!("--click-id is empty"),
        other => other.map(str::to_owned),
    };
    let email_hash = match (&subject.email, &subject.email_hash) {
        (Some(email), _) => {
            let email = email.trim().to_lowercase();
            ensure!(email.contains('@'), "--email is not an e-mail address");
            let key = pii_key
                .context("--email needs INGEST_PII_KEY (or --pii-key) to hash it as ingest does")?;
            Some(schemas::privacy::PiiHasher::new(key.as_bytes()).hash(&email))
        }
        (None, Some(hash)) => {
            let hash = hash.trim().to_ascii_lowercase();
            ensure!(
                hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
                "--email-hash must be the 64 hex digits the ledger holds"
            );
            Some(hash)
        }
        (None, None) => None,
    };
    ensure!(
        click_id.is_some() || email_hash.is_some(),
        "give --click-id, --email or --email-hash"
    );
    Ok((click_id, email_hash))
}

pub async fn run(args: &EraseArgs, warehouse: &Warehouse) -> anyhow::Result<Erasure> {
    let (click_id, email_hash) = identify(&args.subject, args.pii_key.as_deref())?;
    let owned = find(warehouse, click_id.as_deref(), email_hash.as_deref()).await?;
    let mut erasure = Erasure {
        erasure_id: uuid::Uuid::new_v4().to_string(),
        conversions: owned
            .iter()
            .map(|o| &o.conversion_key)
            .collect::<BTreeSet<_>>()
            .len(),
        events: owned.len(),
        ..Erasure::default()
    };
    if owned.is_empty() || args.dry_run {
        return Ok(erasure);
    }
    ensure!(
        erasure.conversions <= args.max_conversions,
        "the subject leads to {} conversions, more than --max-conversions {}: check the identifier with --dry-run, and raise the limit only if they are all this person's",
        erasure.conversions,
        args.max_conversions
    );
    // The processor first: once it has forgotten the conversions, nothing it writes later
    // can bring the erased identifiers back into the ledger.
    args.kafka
        .check_async(&[&args.events_topic], Some(&args.processor_group))
        .await?;
    let landed = request_processor(args, &owned, &erasure.erasure_id).await?;
    let wait_args = args.clone();
    erasure.processor_applied =
        tokio::task::spawn_blocking(move || wait_applied(&wait_args, &landed)).await??;
    erase_clickhouse(warehouse, &owned, &mut erasure).await?;
    Ok(erasure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(click: Option<&str>, email: Option<&str>, hash: Option<&str>) -> Subject {
        Subject {
            click_id: click.map(str::to_owned),
            email: email.map(str::to_owned),
            email_hash: hash.map(str::to_owned),
        }
    }

    #[test]
    fn an_empty_or_malformed_subject_is_refused() {
        let key = Some("a-pii-key-of-16-bytes");
        assert!(identify(&subject(Some(" "), None, None), key).is_err());
        assert!(identify(&subject(None, None, Some("")), key).is_err());
        assert!(identify(&subject(None, None, Some("abc")), key).is_err());
        assert!(identify(&subject(None, Some("nobody"), None), key).is_err());
        assert!(identify(&subject(None, Some("a@b.example"), None), None).is_err());
    }

    #[test]
    fn an_email_is_hashed_as_ingest_hashes_it() {
        let key = "a-pii-key-of-16-bytes";
        let (_, hash) = identify(&subject(None, Some(" A@B.Example "), None), Some(key)).unwrap();
        let want = schemas::privacy::PiiHasher::new(key.as_bytes()).hash("a@b.example");
        assert_eq!(hash.as_deref(), Some(want.as_str()));
        let (_, again) = identify(&subject(None, None, Some(&want.to_uppercase())), None).unwrap();
        assert_eq!(again, Some(want));
    }
}
