//! The demo flow end to end: trackctl's traffic through in-process ingest, the real
//! processor, forwarder and sink, and its stand-in receiver; the ledger in ClickHouse must
//! hold exactly what the traffic implies.

use std::time::Duration;

use tests::pipeline::Pipeline;
use tests::secrets;
use trackctl::demo::{self, DemoArgs};
use trackctl::warehouse::IngestEndpoint;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_traffic_settles_into_exact_totals() {
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = receiver.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(receiver, demo::receiver::router()).await });
    // The product's own routing, pointed at this test's receiver.
    let destinations = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/destinations.toml"
    ))
    .unwrap()
    .replace("127.0.0.1:18090", &receiver_addr.to_string());
    assert!(
        std::env::var("META_ACCESS_TOKEN").is_err(),
        "the test expects no Meta token"
    );
    let pipeline = Pipeline::start("demo", &destinations).await;

    let args = DemoArgs {
        ingest: IngestEndpoint {
            ingest_url: pipeline.ingest.base_url.clone(),
            api_key: vec![secrets::API_KEY.into()],
        },
        destinations_file: pipeline.topics.destinations.clone(),
        scale: 1,
        seed: 7,
        timeout_seconds: 180,
        clickbank_secret_key: secrets::CLICKBANK.into(),
        digistore24_passphrase: secrets::DIGISTORE24.into(),
        buygoods_token: secrets::BUYGOODS.into(),
        s2s_tokens: vec![secrets::S2S.into()],
    };
    let run = demo::run(
        &args,
        &pipeline.warehouse(),
        &pipeline.postback_topics(),
        false,
    )
    .await
    .unwrap();
    println!("{}", demo::render(&run));
    assert!(run.settled, "the ledger did not settle");
    let (e, s) = (&run.expected, &run.summary);

    // Every answer was the one expected (run() fails otherwise); the refused ones by status.
    assert_eq!(run.sent[&("refused".to_owned(), 400)], 2);
    assert_eq!(run.sent[&("refused".to_owned(), 401)], 3);
    assert_eq!(run.sent[&("click".to_owned(), 302)], 200);

    // Exact, not at least: settling only waits for the expected counts to be reached.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s2 = demo::summary::read(
        &pipeline.warehouse(),
        &pipeline.postback_topics(),
        run.since,
    )
    .await
    .unwrap();
    for s in [s, &s2] {
        assert_eq!(s.events, e.events);
        assert_eq!(s.duplicates, e.duplicates);
        assert_eq!(s.quarantined, e.quarantined);
        assert_eq!(s.net_revenue, e.net_revenue);
    }
    assert_eq!(e.events["SALE"], 30);
    assert_eq!(e.events["CLICK"], 200);
    assert_eq!(e.duplicates, 11);
    assert_eq!(e.quarantined.values().sum::<u64>(), 5);

    let tracker = &s2.postbacks["tracker"];
    let webhook = &s2.postbacks["webhook"];
    let meta = &s2.postbacks["meta-capi"];
    assert_eq!(
        (tracker.delivered, tracker.postbacks),
        (e.postbacks["tracker"], e.postbacks["tracker"])
    );
    assert_eq!(
        (webhook.delivered, webhook.postbacks),
        (e.postbacks["webhook"], e.postbacks["webhook"])
    );
    // The receiver answers every tenth request 503: those postbacks took a second attempt.
    assert!(tracker.attempts + webhook.attempts > tracker.delivered + webhook.delivered);
    assert_eq!((tracker.dead_lettered, webhook.dead_lettered), (0, 0));
    // Without META_ACCESS_TOKEN, Meta's postbacks wait in the DLQ with the reason.
    assert_eq!(meta.dead_lettered, e.postbacks["meta-capi"]);
    assert_eq!(meta.delivered, 0);
    // ... and each is recorded as a failed attempt, so that delivery rates count it.
    assert_eq!(
        (meta.postbacks, meta.attempts),
        (e.postbacks["meta-capi"], e.postbacks["meta-capi"])
    );
    assert!(meta
        .dead_letter_reasons
        .keys()
        .all(|r| r.contains("access token")));

    // The views agree with the summary: daily_stats' net revenue by offer.
    let by_offer: Vec<(String, String)> = pipeline
        .clickhouse()
        .query("SELECT offer_id, toString(sum(net_revenue)) FROM daily_stats WHERE offer_id != 'solar-leads' GROUP BY offer_id ORDER BY offer_id")
        .fetch_all()
        .await
        .unwrap();
    let want: Vec<(String, String)> = e
        .net_revenue
        .iter()
        .map(|(o, v)| (o.clone(), v.normalize().to_string()))
        .collect();
    let got: Vec<(String, String)> = by_offer
        .into_iter()
        .map(|(o, v)| {
            (
                o,
                v.parse::<rust_decimal::Decimal>()
                    .unwrap()
                    .normalize()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(got, want);
    pipeline.stop().await;
}
