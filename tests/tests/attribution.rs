//! `daily_stats` credits a conversion to the traffic of its click, against the real
//! ClickHouse: a crafted ledger whose expected rows are worked out by hand below. (With no
//! sink started, there are no attribution windows: every known click is within.)

use clickhouse::Row;
use serde::Deserialize;
use tests::clickhouse_url;
use tests::sink::{clickhouse, database};

const DAY: &str = "2026-11-20 10:00:00";

/// (event_id, event_name, conversion_key, click_id, affiliate, campaign, offer, source, signed revenue)
type Entry = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
    Option<&'static str>,
    &'static str,
);

#[rustfmt::skip]
const LEDGER: &[Entry] = &[
    // Two clicks from Facebook (aff1, camp1) and two from search (aff2, camp2).
    ("k1", "CLICK", "click/c1", Some("c1"), Some("aff1"), Some("camp1"), "keto", Some("facebook"), "0"),
    ("k2", "CLICK", "click/c2", Some("c2"), Some("aff1"), Some("camp1"), "keto", Some("facebook"), "0"),
    ("k3", "CLICK", "click/c3", Some("c3"), Some("aff2"), Some("camp2"), "keto", Some("search"), "0"),
    ("k4", "CLICK", "click/c4", Some("c4"), Some("aff2"), Some("camp2"), "keto", Some("search"), "0"),
    // A network sale on c1 naming the network as its source and its own affiliate: credited
    // to c1's traffic. Its refund carries no click ID and follows its sale.
    ("s1", "SALE", "clickbank/order/A", Some("c1"), Some("net-aff"), None, "keto", Some("clickbank"), "100"),
    ("r1", "REFUND", "clickbank/order/A", None, None, None, "keto", None, "-40"),
    // A sale on c3 without any attribution of its own.
    ("s3", "SALE", "s2s/order/B", Some("c3"), None, None, "keto", None, "50"),
    // A sale whose click is not in the ledger is unattributed: its own affiliate and
    // campaign, but not its network's source.
    ("s9", "SALE", "digistore24/order/C", Some("c-unknown"), Some("aff9"), None, "keto", Some("digistore24"), "30"),
];

fn insert(db: &str) -> String {
    let quote = |v: Option<&str>| v.map_or("NULL".to_owned(), |v| format!("'{v}'"));
    let values: Vec<String> = LEDGER
        .iter()
        .enumerate()
        .map(|(i, (id, name, key, click, aff, camp, offer, source, signed))| {
            let amount = signed.trim_start_matches('-');
            format!(
                "('{id}', '{name}', '{key}', {}, {}, {}, '{offer}', {}, {amount}, {signed}, 'USD', '{DAY}', '{DAY}', '{DAY}', false, false, 0, {i})",
                quote(*click),
                quote(*aff),
                quote(*camp),
                quote(*source)
            )
        })
        .collect();
    format!(
        "INSERT INTO {db}.ledger (event_id, event_name, conversion_key, click_id, affiliate_id, campaign_id, offer_id, source, revenue, signed_revenue, currency, occurred_at, received_at, recorded_at, is_test, status_only, kafka_partition, kafka_offset) VALUES {}",
        values.join(", ")
    )
}

#[derive(Debug, Row, Deserialize, PartialEq)]
struct Stats {
    affiliate_id: String,
    campaign_id: String,
    source: String,
    clicks: u64,
    sales: u64,
    refunds: u64,
    net_revenue: String,
    epc: Option<String>,
}

#[tokio::test]
async fn conversions_count_under_their_clicks_traffic() {
    let db = database("attribution");
    let root = clickhouse::Client::default().with_url(clickhouse_url());
    sink::migrations::apply(&root, &db, &sink::topology::Topology::Single)
        .await
        .unwrap();
    root.query(&insert(&db)).execute().await.unwrap();

    let rows: Vec<Stats> = clickhouse(&db)
        .query(
            "SELECT affiliate_id, campaign_id, source, clicks, sales, refunds,
                    toString(net_revenue) AS net_revenue, toString(epc) AS epc
             FROM daily_stats ORDER BY source",
        )
        .fetch_all()
        .await
        .unwrap();
    let row = |aff: &str,
               camp: &str,
               source: &str,
               clicks,
               sales,
               refunds,
               net: &str,
               epc: Option<&str>| Stats {
        affiliate_id: aff.into(),
        campaign_id: camp.into(),
        source: source.into(),
        clicks,
        sales,
        refunds,
        net_revenue: net.into(),
        epc: epc.map(str::to_owned),
    };
    assert_eq!(
        rows,
        vec![
            // 1 sale of 100 less a 40 refund over 2 clicks.
            row("aff1", "camp1", "facebook", 2, 1, 1, "60", Some("30")),
            row("aff2", "camp2", "search", 2, 1, 0, "50", Some("25")),
            row("aff9", "", "unattributed", 0, 1, 0, "30", None),
        ]
    );
    root.query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .unwrap();
}
