//! Click quality through the whole pipeline: ingest flags bot user agents and data-centre IPs
//! at the door (before the IP is hashed and a denied consent drops the user agent), the
//! processor keeps the flags on the ledger entry, and ClickHouse's views add click floods,
//! duplicate clicks and too-fast conversions from the offers file's thresholds. Suspect
//! clicks stay in the ledger and in `clicks`, and leave EPC and conversion rate.
//!
//! Every expected flag below is worked out by hand from the scenario's times, addresses and
//! thresholds, not read back from the views.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use clickhouse::Row;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;
use tests::pipeline::Pipeline;
use tests::processor::ProcessorTopics;
use tests::sink::{database, wait_rows};

const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

const OFFERS: &str = r#"
[quality]
flood_clicks_per_minute_per_ip = 3
flood_clicks_per_minute_per_sub_id = 4
flood_clicks_per_minute_per_affiliate = 6
duplicate_click_seconds = 10
min_conversion_seconds = 30

[offers.qa]
url = "https://offers.example/qa?cid={click_id}"

[offers.qa-slow]
url = "https://offers.example/slow?cid={click_id}"
min_conversion_seconds = 3600
"#;

const RANGES: &str = "# example cloud ranges\n203.0.113.0/24 example-cloud\n2001:db8::/32\n";

struct Click {
    id: &'static str,
    offer: &'static str,
    source: &'static str,
    affiliate: &'static str,
    sub1: &'static str,
    ip: &'static str,
    ua: &'static str,
    /// Seconds after the scenario's start.
    at: i64,
    denied: bool,
    /// What the views must say, worked out by hand.
    flags: &'static [&'static str],
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).unwrap()
}

#[rustfmt::skip]
fn clicks() -> Vec<Click> {
    let c = |id, source, affiliate, sub1, ip, ua, at, flags| Click {
        id, offer: "qa", source, affiliate, sub1, ip, ua, at, denied: false, flags,
    };
    vec![
        // One IP, five clicks in 40 s (each its own user agent and sub1): the 4th and 5th are
        // the 4th and 5th within a minute, past 3.
        c("push-1", "push", "aff-flood", "p1", "198.51.100.50", "UA-1 Mozilla/5.0", 0, &[]),
        c("push-2", "push", "aff-flood", "p2", "198.51.100.50", "UA-2 Mozilla/5.0", 10, &[]),
        c("push-3", "push", "aff-flood", "p3", "198.51.100.50", "UA-3 Mozilla/5.0", 20, &[]),
        c("push-4", "push", "aff-flood", "p4", "198.51.100.50", "UA-4 Mozilla/5.0", 30, &["FLOOD_IP"]),
        c("push-5", "push", "aff-flood", "p5", "198.51.100.50", "UA-5 Mozilla/5.0", 40, &["FLOOD_IP"]),
        // A crawler, once with consent denied: the user agent is dropped, the flag stays.
        c("seo-1", "seo", "aff-seo", "s1", "198.51.100.61", BOT, 600, &["BOT_USER_AGENT"]),
        Click { denied: true, ..c("seo-2", "seo", "aff-seo", "s2", "198.51.100.62", BOT, 700, &["BOT_USER_AGENT"]) },
        // Data-centre addresses, IPv4 and IPv6, and a crawler in one.
        c("native-1", "native", "aff-dc", "n1", "203.0.113.10", BROWSER, 1200, &["DATACENTER_IP"]),
        c("native-2", "native", "aff-dc", "n2", "2001:db8::5", BROWSER, 1300, &["DATACENTER_IP"]),
        c("native-3", "native", "aff-dc", "n3", "203.0.113.99", BOT, 1400, &["BOT_USER_AGENT", "DATACENTER_IP"]),
        // Same IP, user agent and offer: 5 s after the first is a duplicate; 30 s after that
        // is not (the window is 10 s), and three clicks in a minute are not a flood.
        c("search-1", "search", "aff-dup", "d1", "198.51.100.70", BROWSER, 1800, &[]),
        c("search-2", "search", "aff-dup", "d1", "198.51.100.70", BROWSER, 1805, &["DUPLICATE_CLICK"]),
        c("search-3", "search", "aff-dup", "d1", "198.51.100.70", BROWSER, 1835, &[]),
        // One affiliate's sub1 "hot": five clicks in 40 s from five addresses, the 5th past
        // 4; two more of "cold" make the affiliate's 6th and 7th within a minute, the 7th
        // past 6.
        c("social-1", "social", "aff-sub", "hot", "198.51.100.81", BROWSER, 2400, &[]),
        c("social-2", "social", "aff-sub", "hot", "198.51.100.82", BROWSER, 2410, &[]),
        c("social-3", "social", "aff-sub", "hot", "198.51.100.83", BROWSER, 2420, &[]),
        c("social-4", "social", "aff-sub", "hot", "198.51.100.84", BROWSER, 2430, &[]),
        c("social-5", "social", "aff-sub", "hot", "198.51.100.85", BROWSER, 2440, &["FLOOD_SUB_ID"]),
        c("social-6", "social", "aff-sub", "cold", "198.51.100.86", BROWSER, 2445, &[]),
        c("social-7", "social", "aff-sub", "cold", "198.51.100.87", BROWSER, 2450, &["FLOOD_AFFILIATE"]),
        // Clean traffic, an hour apart.
        c("email-1", "email", "aff-clean", "e1", "198.51.100.91", BROWSER, 3600, &[]),
        c("email-2", "email", "aff-clean", "e2", "198.51.100.92", BROWSER, 7200, &[]),
        c("email-3", "email", "aff-clean", "e3", "198.51.100.93", BROWSER, 10800, &[]),
        Click { offer: "qa-slow", ..c("email-4", "email-slow", "aff-clean", "e4", "198.51.100.94", BROWSER, 14400, &[]) },
    ]
}

/// Sales: (id, click, amount, seconds after their click).
const SALES: [(&str, &str, &str, i64); 4] = [
    // 20 s after its click: under the default 30 s, too fast.
    ("sale-fast", "email-1", "50.00", 20),
    // An hour after: fine.
    ("sale-ok", "email-2", "100.00", 3600),
    // 30 minutes after, on an offer whose least time is an hour: too fast.
    ("sale-slow-offer", "email-4", "70.00", 1800),
    // A sale on the flood's first (clean) click.
    ("sale-push", "push-1", "20.00", 7200),
];

fn at(seconds: i64) -> String {
    (start() + chrono::Duration::seconds(seconds)).to_rfc3339()
}

#[derive(Debug, Row, Deserialize)]
struct Quality {
    click_id: String,
    quality_flags: Vec<String>,
    quality_score: u8,
    suspect: u8,
}

#[derive(Debug, Row, Deserialize)]
struct BySource {
    source: String,
    clicks: u64,
    suspect_clicks: u64,
    sales: u64,
    too_fast_conversions: u64,
    net: String,
    epc: Option<String>,
    conversion_rate: Option<String>,
    suspect_click_rate: Option<String>,
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap().normalize()
}

#[tokio::test(flavor = "multi_thread")]
async fn bots_data_centres_floods_duplicates_and_fast_conversions_are_flagged_exactly() {
    let dir = std::env::temp_dir().join(tests::unique_name("quality"));
    std::fs::create_dir_all(&dir).unwrap();
    let offers = dir.join("offers.toml");
    let ranges = dir.join("ranges.txt");
    std::fs::write(&offers, OFFERS).unwrap();
    std::fs::write(&ranges, RANGES).unwrap();
    let offers_flag = format!("--offers-file={}", offers.display());
    let ranges_flag = format!("--datacenter-ranges={}", ranges.display());

    let topics = ProcessorTopics::create("quality").await;
    let pipeline = Pipeline::start_with(
        topics,
        database("quality"),
        &tests::pipeline::webhook_destinations().await,
        &|service| match service {
            "ingest" => vec![offers_flag.clone(), ranges_flag.clone()],
            "sink" => vec![offers_flag.clone()],
            _ => Vec::new(),
        },
    )
    .await;
    let base = pipeline.ingest.base_url.clone();

    let clicks = clicks();
    for c in &clicks {
        let mut body = json!({
            "event_id": format!("evt-{}", c.id), "event_name": "CLICK", "click_id": c.id,
            "occurred_at": at(c.at), "offer_id": c.offer, "source": c.source,
            "affiliate_id": c.affiliate, "sub1": c.sub1, "ip": c.ip, "user_agent": c.ua,
        });
        if c.denied {
            body["consent_state"] = json!("DENIED");
        }
        tests::post_event(&base, body).await;
    }
    for (id, click, amount, after) in SALES {
        let c = clicks.iter().find(|c| c.id == click).unwrap();
        tests::post_event(
            &base,
            json!({
                "event_id": id, "event_name": "SALE", "order_id": format!("order-{id}"),
                "click_id": click, "offer_id": c.offer, "occurred_at": at(c.at + after),
                "revenue": amount, "currency": "USD",
            }),
        )
        .await;
    }
    // The redirect: a crawler that follows a tracking link is flagged at the click route too.
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/c/qa?affiliate_id=aff-seo&source=seo-live"))
        .header("user-agent", BOT)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 302);

    let ch = pipeline.clickhouse();
    let rows = (clicks.len() + SALES.len() + 1) as u64;
    wait_rows(&ch, "ledger", rows, Duration::from_secs(90)).await;

    // Ingest counted what it flagged: 2 + 3 crawler or data-centre clicks, and the redirect.
    let metrics = pipeline.ingest.metrics().await;
    let count = |labels: &str| tests::metric(&metrics, "ingest_clicks_total", labels);
    assert_eq!(count("quality=\"suspect\""), 6.0);
    assert_eq!(count("quality=\"clean\""), (clicks.len() - 5) as f64);
    let flags = |flag: &str| {
        tests::metric(
            &metrics,
            "ingest_click_flags_total",
            &format!("flag=\"{flag}\""),
        )
    };
    assert_eq!(flags("BOT_USER_AGENT"), 4.0);
    assert_eq!(flags("DATACENTER_IP"), 3.0);

    // The ledger keeps ingest's flags on the click's entry; the denied click kept no user
    // agent and no IP hash, only its flag.
    #[derive(Debug, Row, Deserialize)]
    struct Entry {
        flags: Vec<String>,
        user_agent: Option<String>,
        ip_hash: Option<String>,
    }
    let denied: Entry = ch
        .query("SELECT flags, user_agent, ip_hash FROM ledger WHERE click_id = 'seo-2'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(denied.flags, ["BOT_USER_AGENT"]);
    assert_eq!((denied.user_agent, denied.ip_hash), (None, None));
    let live: Vec<String> = ch
        .query("SELECT flags FROM ledger WHERE source = 'seo-live'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(live, ["BOT_USER_AGENT"]);

    // Every click's flags and score (weights: bot 60, data centre 40, IP flood 40, sub-ID
    // flood 30, duplicate 30, affiliate flood 20; at most 100).
    let got: Vec<Quality> = ch
        .query(
            "SELECT click_id, quality_flags, quality_score, suspect FROM click_quality \
             WHERE source != 'seo-live' ORDER BY click_id",
        )
        .fetch_all()
        .await
        .unwrap();
    let weight = |f: &str| match f {
        "BOT_USER_AGENT" => 60,
        "DATACENTER_IP" | "FLOOD_IP" => 40,
        "FLOOD_SUB_ID" | "DUPLICATE_CLICK" => 30,
        "FLOOD_AFFILIATE" => 20,
        other => panic!("no weight for {other}"),
    };
    let mut want: Vec<_> = clicks
        .iter()
        .map(|c| {
            let score: u32 = c.flags.iter().map(|f| weight(f)).sum();
            (c.id.to_owned(), c.flags.to_vec(), score.min(100) as u8)
        })
        .collect();
    want.sort();
    let got_rows: Vec<_> = got
        .iter()
        .map(|q| {
            assert_eq!(q.suspect == 1, !q.quality_flags.is_empty());
            (
                q.click_id.clone(),
                q.quality_flags
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                q.quality_score,
            )
        })
        .collect();
    assert_eq!(got_rows, want);

    // Too-fast conversions, on the conversion.
    let fast: Vec<(String, u8, u32)> = ch
        .query(
            "SELECT ifNull(click_id, ''), too_fast, min_conversion_seconds \
             FROM conversion_attribution ORDER BY click_id",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(
        fast,
        vec![
            ("email-1".to_owned(), 1, 30),
            ("email-2".to_owned(), 0, 30),
            ("email-4".to_owned(), 1, 3600),
            ("push-1".to_owned(), 0, 30),
        ]
    );

    // By source: suspect clicks stay in clicks and leave EPC and conversion rate.
    let rows: Vec<BySource> = ch
        .query(
            "SELECT source, sum(clicks) AS clicks, sum(suspect_clicks) AS suspect_clicks, \
             sum(sales) AS sales, sum(too_fast_conversions) AS too_fast_conversions, \
             toString(sum(net_revenue)) AS net, \
             toString(any(epc)) AS epc, toString(any(conversion_rate)) AS conversion_rate, \
             toString(any(suspect_click_rate)) AS suspect_click_rate \
             FROM daily_stats WHERE day = '2026-11-27' GROUP BY source ORDER BY source",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: BTreeMap<&str, _> = rows
        .iter()
        .map(|r| {
            (
                r.source.as_str(),
                (
                    r.clicks,
                    r.suspect_clicks,
                    r.sales,
                    r.too_fast_conversions,
                    dec(&r.net),
                    r.epc.as_deref().map(dec),
                    r.conversion_rate.as_deref().map(dec),
                    r.suspect_click_rate.as_deref().map(dec),
                ),
            )
        })
        .collect();
    let d = |s: &str| Some(dec(s));
    // email: 3 clean clicks, 2 sales (50 + 100), one too fast: EPC 150 / 3 = 50.
    // email-slow: 1 click, its sale (70) too fast for its offer.
    // push: 5 clicks, 2 suspect: EPC 20 / 3, conversion rate 1 / 3 (ClickHouse's Decimal
    // division keeps the dividend's 6 places; the counts' divide in Float64).
    let mut want = BTreeMap::new();
    want.insert(
        "email",
        (
            3,
            0,
            2,
            1,
            dec("150"),
            d("50"),
            d("0.6666666666666666"),
            d("0"),
        ),
    );
    want.insert(
        "email-slow",
        (1, 0, 1, 1, dec("70"), d("70"), d("1"), d("0")),
    );
    want.insert("native", (3, 3, 0, 0, dec("0"), None, None, d("1")));
    want.insert(
        "push",
        (
            5,
            2,
            1,
            0,
            dec("20"),
            d("6.666666"),
            d("0.3333333333333333"),
            d("0.4"),
        ),
    );
    want.insert(
        "search",
        (
            3,
            1,
            0,
            0,
            dec("0"),
            d("0"),
            d("0"),
            d("0.3333333333333333"),
        ),
    );
    want.insert("seo", (2, 2, 0, 0, dec("0"), None, None, d("1")));
    want.insert(
        "social",
        (
            7,
            2,
            0,
            0,
            dec("0"),
            d("0"),
            d("0"),
            d("0.2857142857142857"),
        ),
    );
    assert_eq!(got, want);

    pipeline.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
