//! `trackctl replay quarantine`: input refused because of a configuration mistake is kept,
//! and goes through once the mistake is fixed.

use std::collections::BTreeMap;
use std::time::Duration;

use ingest::adapters::digistore24;
use tests::processor::ProcessorTopics;
use tests::{scan_topic, secrets, unique_name, IngestServer};
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

/// Ingest's flags for the test's own events and quarantine topics.
fn topic_flags(topics: &ProcessorTopics) -> [String; 2] {
    [
        format!("--events-topic={}", topics.input),
        format!("--quarantine-topic={}", topics.quarantine),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postback_refused_for_a_wrong_passphrase_goes_through_after_the_fix() {
    let topics = ProcessorTopics::create("replay").await;
    let topic_flags = topic_flags(&topics);
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
    assert_eq!(resp.status(), 401);
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
        quarantine_key: Some(secrets::QUARANTINE_KEY.into()),
    };
    let key = format!("digistore24/order/{order}");
    let sale = |want| {
        scan_topic(&topics.input, None, want, Duration::from_secs(5), |f| {
            f.key.as_deref() == Some(key.as_bytes())
        })
    };
    let listed = quarantine(&tests::kafka(), &args).await.unwrap();
    assert_eq!(listed.accepted, 1);
    assert!(sale(1).is_empty(), "a dry run sends nothing");

    args.dry_run = false;
    let done = quarantine(&tests::kafka(), &args).await.unwrap();
    assert_eq!((done.accepted, done.refused_again, done.skipped), (1, 0, 0));
    assert_eq!(sale(2).len(), 1, "the sale reached the events topic once");

    // A filter that matches nothing replays nothing.
    args.reason = Some("validation".into());
    let none = quarantine(&tests::kafka(), &args).await.unwrap();
    assert_eq!(none.accepted + none.refused_again + none.skipped, 0);
    fixed.stop().await;
}

/// A token network's postback refused after authentication (here: an amount over its
/// ceiling) is quarantined without its token and sealed; after the fix, the operator's replay
/// goes through the replay route on the API key, credited to the same S2S source.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_postback_is_kept_without_its_token_and_replayed_by_the_operator() {
    let topics = ProcessorTopics::create("replay-token").await;
    let topic_flags = topic_flags(&topics);
    let mut flags: Vec<&str> = topic_flags.iter().map(String::as_str).collect();
    flags.push("--max-amount-for=buygoods=100,s2s=100");
    let strict = IngestServer::start(&flags).await;
    let (order, tx) = (unique_name("BG").to_uppercase(), unique_name("TX"));
    let client = reqwest::Client::new();
    let get = |query: String| {
        let url = format!("{}/v1/postbacks/{query}", strict.base_url);
        async { client.get(url).send().await.unwrap().status() }
    };
    let bg = get(format!(
        "buygoods?order_id={order}&action_type=neworder&total_amount_charged=150&currency=USD&email=buyer%40example.com&token={}",
        secrets::BUYGOODS
    ));
    assert_eq!(bg.await, 400);
    let s2s = get(format!(
        "s2s?click_id=c1&event=SALE&txid={tx}&amount=150&currency=USD&token={}",
        secrets::S2S_TOKEN
    ));
    assert_eq!(s2s.await, 400);
    // Forged: a wrong token. Kept, but never replayed: nobody authenticated it.
    let forged = get(format!(
        "buygoods?order_id={order}-F&action_type=neworder&total_amount_charged=15&currency=USD&token=forged-token"
    ));
    assert_eq!(forged.await, 401);
    strict.stop().await;

    let raw: Vec<Vec<u8>> =
        scan_topic(&topics.quarantine, None, 3, Duration::from_secs(10), |_| {
            true
        })
        .into_iter()
        .map(|f| f.payload)
        .collect();
    assert_eq!(raw.len(), 3);
    for payload in &raw {
        let text = String::from_utf8_lossy(payload);
        for secret in [
            secrets::BUYGOODS,
            secrets::S2S_TOKEN,
            "forged-token",
            "buyer@example.com",
            "buyer%40example.com",
        ] {
            assert!(!text.contains(secret), "{secret} stored in {text}");
        }
        let record: schemas::QuarantineRecord = serde_json::from_slice(payload).unwrap();
        assert!(record.sealed.is_some() && record.query.is_none());
        assert_eq!(record.redacted, ["token"]);
    }
    let s2s_record: schemas::QuarantineRecord = raw
        .iter()
        .map(|p| serde_json::from_slice::<schemas::QuarantineRecord>(p).unwrap())
        .find(|r| r.route == "/v1/postbacks/s2s")
        .unwrap();
    assert_eq!(s2s_record.s2s_source.as_deref(), Some("tracker-a"));

    let fixed = IngestServer::start(&flags[..2]).await;
    let mut args = QuarantineReplay {
        ingest: IngestEndpoint {
            ingest_url: fixed.base_url.clone(),
            api_key: vec![secrets::API_KEY.into()],
        },
        quarantine_topic: topics.quarantine.clone(),
        reason: None,
        route: None,
        since: None,
        until: None,
        dry_run: false,
        quarantine_key: None,
    };
    let refused = quarantine(&tests::kafka(), &args).await;
    assert!(
        format!("{:#}", refused.unwrap_err()).contains("INGEST_QUARANTINE_KEY"),
        "sealed records need the key"
    );
    args.quarantine_key = Some(secrets::QUARANTINE_KEY.into());
    let done = quarantine(&tests::kafka(), &args).await.unwrap();
    assert_eq!((done.accepted, done.refused_again, done.skipped), (2, 0, 1));
    let bg_key = format!("buygoods/order/{order}");
    let s2s_id = schemas::postback_event_id("s2s_tracker-a", &tx, "SALE", None).to_string();
    let codec = schemas::SingleObjectCodec::new();
    let arrived = scan_topic(&topics.input, None, 2, Duration::from_secs(10), |f| {
        use schemas::EventCodec;
        f.key.as_deref() == Some(bg_key.as_bytes())
            || codec.decode(&f.payload).is_ok_and(|e| e.event_id == s2s_id)
    });
    assert_eq!(
        arrived.len(),
        2,
        "the BuyGoods sale and the S2S sale, credited to tracker-a"
    );
    fixed.stop().await;
}
