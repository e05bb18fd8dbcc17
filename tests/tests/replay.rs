//! `trackctl replay quarantine`: input refused because of a configuration mistake is kept,
//! and goes through once the mistake is fixed.

use std::collections::BTreeMap;
use std::time::Duration;

use ingest::adapters::digistore24;
use tests::processor::ProcessorTopics;
use tests::{kafka_bootstrap, scan_topic, secrets, unique_name, IngestServer};
use trackctl::replay::{quarantine, QuarantineReplay};
use trackctl::warehouse::IngestEndpoint;

fn signed_ipn(order: &str) -> String {
    let mut fields: BTreeMap<String, String> = [
        ("event", "on_payment"),
        ("order_id", order),
        ("transaction_id", &format!("{order}-T")),
        ("amount_brutto", "59.00"),
        ("amount_affiliate", "29.50"),
        ("currency", "EUR"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let signature = digistore24::sign(&fields, secrets::DIGISTORE24);
    fields.insert("sha_sign".into(), signature);
    fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postback_refused_for_a_wrong_passphrase_goes_through_after_the_fix() {
    let topics = ProcessorTopics::create("replay").await;
    let topic_flags = [
        format!("--events-topic={}", topics.input),
        format!("--quarantine-topic={}", topics.quarantine),
    ];
    let mut flags: Vec<&str> = topic_flags.iter().map(String::as_str).collect();
    flags.push("--digistore24-passphrase=an-outdated-passphrase");
    let misconfigured = IngestServer::start(&flags).await;
    let order = unique_name("DS").to_uppercase();
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v1/postbacks/digistore24",
            misconfigured.base_url
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(signed_ipn(&order))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    misconfigured.stop().await;

    let fixed = IngestServer::start(&flags[..2]).await;
    let mut args = QuarantineReplay {
        ingest: IngestEndpoint {
            ingest_url: fixed.base_url.clone(),
            api_key: vec![secrets::API_KEY.into()],
        },
        quarantine_topic: topics.quarantine.clone(),
        reason: Some("bad_signature".into()),
        route: None,
        since: None,
        until: None,
        dry_run: true,
    };
    let key = format!("digistore24/order/{order}");
    let sale = |want| {
        scan_topic(&topics.input, None, want, Duration::from_secs(5), |f| {
            f.key.as_deref() == Some(key.as_bytes())
        })
    };
    let listed = quarantine(&kafka_bootstrap(), &args).await.unwrap();
    assert_eq!(listed.accepted, 1);
    assert!(sale(1).is_empty(), "a dry run sends nothing");

    args.dry_run = false;
    let done = quarantine(&kafka_bootstrap(), &args).await.unwrap();
    assert_eq!((done.accepted, done.refused_again, done.skipped), (1, 0, 0));
    assert_eq!(sale(2).len(), 1, "the sale reached the events topic once");

    // A filter that matches nothing replays nothing.
    args.reason = Some("validation".into());
    let none = quarantine(&kafka_bootstrap(), &args).await.unwrap();
    assert_eq!(none.accepted + none.refused_again + none.skipped, 0);
    fixed.stop().await;
}
