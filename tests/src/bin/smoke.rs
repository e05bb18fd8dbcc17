//! The demo's smoke check until the pipeline services land: one contract event through the
//! real broker (Avro single-object, keyed by its conversion) and into a ClickHouse table that
//! can be queried afterwards. Exits non-zero, saying what failed, if anything does.

use anyhow::{bail, Context, Result};
use schemas::{conversion_key, samples, topics, EventCodec, SingleObjectCodec};
use tests::{clickhouse_url, produce_and_read_back, unique_name};

#[tokio::main]
async fn main() -> Result<()> {
    let codec = SingleObjectCodec::new();
    let mut event = samples::sale();
    event.event_id = unique_name("smoke");
    let key = conversion_key(&event);
    let payload = codec.encode(&event)?;

    let read = produce_and_read_back(topics::EVENTS, &key, &payload).await?;
    println!(
        "kafka: produced {} ({} bytes, key {key}) to {}[{}]@{} and read it back",
        event.event_id,
        payload.len(),
        topics::EVENTS,
        read.partition,
        read.offset
    );
    let back = codec.decode(&read.payload)?;
    if back != event {
        bail!("the event read back from Kafka differs from the one produced");
    }
    println!("kafka: decoded it, identical to what was produced");

    let ch = clickhouse::Client::default().with_url(clickhouse_url());
    ch.query(
        "CREATE TABLE IF NOT EXISTS default.smoke_events (
            event_id String, event_name LowCardinality(String), conversion_key String,
            revenue Decimal(18, 6), currency LowCardinality(String),
            received_at DateTime64(3, 'UTC') DEFAULT now64(3)
        ) ENGINE = MergeTree ORDER BY event_id",
    )
    .execute()
    .await
    .context("creating default.smoke_events in ClickHouse")?;
    ch.query("INSERT INTO default.smoke_events (event_id, event_name, conversion_key, revenue, currency) VALUES (?, ?, ?, toDecimal64(?, 6), ?)")
        .bind(&back.event_id)
        .bind(back.event_name.as_str())
        .bind(&key)
        .bind(back.revenue.unwrap_or_default().to_string())
        .bind(back.currency.as_deref().unwrap_or(""))
        .execute()
        .await
        .context("inserting into ClickHouse")?;
    let count: u64 = ch
        .query("SELECT count() FROM default.smoke_events WHERE event_id = ?")
        .bind(&back.event_id)
        .fetch_one()
        .await?;
    if count != 1 {
        bail!(
            "expected 1 row for {} in ClickHouse, found {count}",
            back.event_id
        );
    }
    println!("clickhouse: stored it in default.smoke_events");
    println!("smoke check passed");
    Ok(())
}
