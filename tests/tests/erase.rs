//! `trackctl erase` against the real pipeline: after erasing one person, nothing in
//! ClickHouse leads back to them, the processor's changelog holds tombstones for their
//! state, another person is untouched, and every aggregate is unchanged.

use std::time::Duration;

use serde_json::json;
use tests::pipeline::Pipeline;
use tests::secrets;
use tests::sink::wait_rows;
use tests::{scan_topic, unique_name};
use trackctl::erase::{EraseArgs, Subject};

struct Person {
    click_id: String,
    order: String,
    email: String,
    event_ids: Vec<String>,
}

async fn click(base: &str) -> String {
    tests::land(base, "keto-vsl", "aff_id=aff12&sub1=someone").await
}

/// A click, a sale with that click and an e-mail, and a partial refund without either.
async fn person(base: &str, name: &str, refund: bool) -> Person {
    let click_id = click(base).await;
    let order = unique_name(name);
    let email = format!("{name}@example.com");
    let sale = json!({"event_id": format!("{order}-sale"), "event_name": "SALE", "order_id": order,
        "click_id": click_id, "email": email, "offer_id": "keto-vsl", "revenue": "50.00", "currency": "USD"});
    tests::post_event(base, sale.clone()).await;
    tests::post_event(base, sale).await; // a retry: a DUPLICATE receipt
    let mut event_ids = vec![click_id.clone(), format!("{order}-sale")];
    if refund {
        tests::post_event(
            base,
            json!({"event_id": format!("{order}-refund"), "event_name": "REFUND",
            "order_id": order, "revenue": "20.00", "currency": "USD"}),
        )
        .await;
        event_ids.push(format!("{order}-refund"));
    }
    Person {
        click_id,
        order,
        email,
        event_ids,
    }
}

async fn strings(ch: &clickhouse::Client, sql: &str) -> Vec<String> {
    ch.query(sql).fetch_all::<String>().await.unwrap()
}

/// Everything an analyst aggregates, as text.
async fn aggregates(ch: &clickhouse::Client) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for sql in [
        "SELECT toString(tuple(*)) FROM daily_stats ORDER BY 1",
        "SELECT toString((sales, gross_revenue, reversed_revenue, reversals, net_revenue, net_payout, status)) FROM conversion_state ORDER BY 1",
        "SELECT toString((kind, event_name, count())) FROM receipts GROUP BY kind, event_name ORDER BY 1",
        "SELECT toString((destination, count(), uniqExact(idempotency_key), countIf(outcome = 'DELIVERED'))) FROM postback_attempts GROUP BY destination ORDER BY 1",
        "SELECT toString((event_name, count(), sum(signed_revenue))) FROM ledger GROUP BY event_name ORDER BY 1",
    ] {
        out.push(strings(ch, sql).await);
    }
    out
}

async fn traces(ch: &clickhouse::Client, p: &Person, email_hash: &str) -> u64 {
    let keys = [
        format!("click/{}", p.click_id),
        format!("first_party/order/{}", p.order),
    ];
    let mut n = 0;
    for (table, sql) in [
        ("ledger", "SELECT count() FROM ledger WHERE click_id = {c:String} OR email_hash = {h:String} OR order_id = {o:String} OR has({ids:Array(String)}, event_id) OR has({keys:Array(String)}, conversion_key) OR has({ids:Array(String)}, coalesce(linked_event_id, ''))"),
        ("receipts", "SELECT count() FROM receipts WHERE has({ids:Array(String)}, event_id) OR has({keys:Array(String)}, conversion_key)"),
        ("postback_attempts", "SELECT count() FROM postback_attempts WHERE has({ids:Array(String)}, idempotency_key)"),
        ("conversion_state", "SELECT count() FROM conversion_state WHERE has({keys:Array(String)}, conversion_key) OR has({ids:Array(String)}, original_event_id)"),
        ("ledger, any column", "SELECT count() FROM ledger AS l WHERE positionCaseInsensitive(toString(tuple(l.*)), {c:String}) > 0 OR positionCaseInsensitive(toString(tuple(l.*)), {o:String}) > 0"),
    ] {
        let found = ch
            .query(sql)
            .param("c", &p.click_id)
            .param("h", email_hash)
            .param("o", &p.order)
            .param("ids", &p.event_ids)
            .param("keys", keys.to_vec())
            .fetch_one::<u64>()
            .await
            .unwrap();
        println!("{table}: {found} rows lead to the person");
        n += found;
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn an_erased_person_cannot_be_found_and_the_totals_stay() {
    let destinations = tests::pipeline::webhook_destinations().await;
    let pipeline = Pipeline::start("erase", &destinations).await;
    let base = pipeline.ingest.base_url.clone();
    let alice = person(&base, "alice", true).await;
    let bob = person(&base, "bob", false).await;

    let ch = pipeline.clickhouse();
    wait_rows(&ch, "ledger", 5, Duration::from_secs(60)).await;
    wait_rows(&ch, "receipts", 2, Duration::from_secs(60)).await;
    wait_rows(&ch, "postback_attempts", 3, Duration::from_secs(60)).await;
    let before = aggregates(&ch).await;
    let hasher = schemas::privacy::PiiHasher::new(secrets::PII_KEY.as_bytes());
    let alice_hash = hasher.hash(&alice.email);
    let bob_hash = hasher.hash(&bob.email);
    assert_eq!(
        traces(&ch, &alice, &alice_hash).await,
        10,
        "alice is in every table first"
    );

    let args = EraseArgs {
        subject: Subject {
            click_id: None,
            email_hash: None,
            // Written as the person gives it; hashed as ingest does.
            email: Some(" Alice@Example.COM ".into()),
        },
        pii_key: Some(secrets::PII_KEY.into()),
        kafka: tests::kafka(),
        events_topic: pipeline.topics.input.clone(),
        processor_group: pipeline.topics.group.clone(),
        wait_seconds: 60,
        max_conversions: 50,
        dry_run: false,
    };
    // A subject that leads to more conversions than allowed changes nothing.
    let capped = EraseArgs {
        max_conversions: 1,
        ..args.clone()
    };
    let refused = trackctl::erase::run(&capped, &pipeline.warehouse()).await;
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("--max-conversions"));
    assert_eq!(traces(&ch, &alice, &alice_hash).await, 10);

    let erasure = trackctl::erase::run(&args, &pipeline.warehouse())
        .await
        .unwrap();
    assert_eq!((erasure.events, erasure.conversions), (3, 2));
    assert_eq!(erasure.rows["ledger"], 3);
    assert_eq!(erasure.rows["receipts"], 1);
    assert_eq!(erasure.rows["postback_attempts"], 2);
    assert_eq!(erasure.processor_applied, 2);

    assert_eq!(
        traces(&ch, &alice, &alice_hash).await,
        0,
        "alice can still be found"
    );
    assert_eq!(
        aggregates(&ch).await,
        before,
        "erasure changed an aggregate"
    );
    let bob_rows: u64 = ch
        .query("SELECT count() FROM ledger WHERE click_id = ? OR email_hash = ?")
        .bind(&bob.click_id)
        .bind(&bob_hash)
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(bob_rows, 2, "bob's click and sale are untouched");

    // The processor forgot alice: the latest changelog value of her conversion and of each
    // of her events' dedup entries is a tombstone.
    let mut keys: Vec<Vec<u8>> = alice
        .event_ids
        .iter()
        .map(|id| {
            let mut k = vec![b'e'];
            k.extend_from_slice(&processor::ledger::event_key(id).to_be_bytes());
            k
        })
        .collect();
    keys.push(format!("cfirst_party/order/{}", alice.order).into_bytes());
    let state = scan_topic(
        &pipeline.topics.state,
        None,
        usize::MAX,
        Duration::from_secs(10),
        |f| f.key.as_ref().is_some_and(|k| keys.contains(k)),
    );
    for key in &keys {
        let latest = state.iter().rev().find(|f| f.key.as_ref() == Some(key));
        let latest = latest.unwrap_or_else(|| panic!("no changelog record for {key:?}"));
        assert!(
            latest.payload.is_empty(),
            "the state of {key:?} is not a tombstone"
        );
    }

    // Idempotent: a second run finds nothing left to erase.
    let again = trackctl::erase::run(&args, &pipeline.warehouse())
        .await
        .unwrap();
    assert_eq!(again.events, 0);
    pipeline.stop().await;
}
