//! Issue #17's scenario: a click flood from one IP, crawlers, data-centre clicks and a
//! too-fast conversion beside a burst of sales that hits a daily conversion cap mid-burst,
//! sent by two concurrent producers through ingest, with two processor instances and the
//! one deciding the cap killed with SIGKILL during the burst. Then an affiliate's revenue cap
//! is hit, a refund gives its room back, and a later sale fits again; and the operator raises
//! the daily cap in the file, without a restart, and exactly the new room is used.
//!
//! Exact, in ClickHouse and on the wire: the cap counted exactly its limit; every other sale
//! of the burst is in the ledger once, flagged OVER_CAP, and out of the views' money; no
//! postback left for an over-cap conversion (nor for its refund), and every counted one's
//! did. Which sales of the burst come first is up to the race, so the test checks the
//! counts, and that the postbacks are exactly the ledger's counted entries; the affiliate's
//! sequence is sent one entry at a time, so its every verdict is known in advance.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use clickhouse::Row;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;
use tests::pipeline::Pipeline;
use tests::processor::ProcessorTopics;
use tests::service::ServiceProcess;
use tests::sink::{database, wait_rows};

const BROWSER: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const BOT: &str = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";

const OFFERS: &str = r#"
[quality]
flood_clicks_per_minute_per_ip = 3
min_conversion_seconds = 30

[offers.qa]
url = "https://offers.example/qa?cid={click_id}"

[offers.capped]
url = "https://offers.example/capped?cid={click_id}"
"#;

const RANGES: &str = "203.0.113.0/24 example-cloud\n";

/// The daily cap counts in New York's days; the burst is at 10:00-10:01 there.
const CAPS: &str = r#"
[[cap]]
id = "capped-daily"
offer_id = "capped"
period = "daily"
conversions = 25
time_zone = "America/New_York"

[[cap]]
id = "capped-aff9-usd"
offer_id = "capped"
affiliate_id = "aff-9"
period = "total"
revenue = "100.00"
currency = "USD"
reversal_frees_room = true
"#;

const BURST: usize = 60;
const LIMIT: usize = 25;
const PRODUCERS: usize = 2;

/// 2026-11-27 15:00 UTC: 10:00 in New York, the same date in both zones.
fn day1() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 15, 0, 0).unwrap()
}

fn day2() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 15, 0, 0).unwrap()
}

fn at(base: DateTime<Utc>, seconds: i64) -> String {
    (base + chrono::Duration::seconds(seconds)).to_rfc3339()
}

async fn wait_entry(ch: &clickhouse::Client, event_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n: u64 = ch
            .query("SELECT count() FROM ledger WHERE event_id = ?")
            .bind(event_id)
            .fetch_one()
            .await
            .unwrap();
        if n > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{event_id} never reached the ledger"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn caps_metric(p: &ServiceProcess, name: &str, labels: &str) -> f64 {
    let text = p.get("/metrics").unwrap_or_default();
    tests::metric_values(&text, name, labels).iter().sum()
}

#[derive(Debug, Row, Deserialize)]
struct Stats {
    source: String,
    clicks: u64,
    suspect_clicks: u64,
    sales: u64,
    refunds: u64,
    too_fast_conversions: u64,
    over_cap_conversions: u64,
    net: String,
    over_cap_revenue: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cap_hit_mid_burst_under_a_kill_counts_exactly_its_limit_and_forwards_nothing_past_it() {
    let dir = std::env::temp_dir().join(tests::unique_name("caps"));
    std::fs::create_dir_all(&dir).unwrap();
    let (offers, ranges, caps) = (
        dir.join("offers.toml"),
        dir.join("ranges.txt"),
        dir.join("caps.toml"),
    );
    std::fs::write(&offers, OFFERS).unwrap();
    std::fs::write(&ranges, RANGES).unwrap();
    std::fs::write(&caps, CAPS).unwrap();
    let offers_flag = format!("--offers-file={}", offers.display());
    let ranges_flag = format!("--datacenter-ranges={}", ranges.display());

    let (receiver_url, deliveries) = tests::forwarder::counting_receiver().await;
    let destinations = format!(
        "[[destination]]\nname = \"network\"\nkind = \"s2s\"\n\
         url = \"{receiver_url}/pb?tx={{event_id}}\"\nevents = [\"SALE\", \"REFUND\"]\n\
         rate_per_second = 5000\nburst = 1000\n"
    );
    let topics = ProcessorTopics::create("caps").await;
    let caps_flags = topics.caps_args(&caps);
    let mut pipeline =
        Pipeline::start_with(
            topics,
            database("caps"),
            &destinations,
            &|service| match service {
                "ingest" => vec![offers_flag.clone(), ranges_flag.clone()],
                "sink" => vec![offers_flag.clone()],
                "processor" => caps_flags.clone(),
                _ => Vec::new(),
            },
        )
        .await;
    let flags: Vec<&str> = caps_flags.iter().map(String::as_str).collect();
    let mut p2 = ServiceProcess::processor(&pipeline.topics, "p2", &flags);
    p2.wait_ready(Duration::from_secs(60));
    let base = pipeline.ingest.base_url.clone();
    let client = reqwest::Client::new();

    // Traffic quality, on the uncapped offer: an IP's 4th and 5th clicks within a minute
    // (past 3), two crawlers, two data-centre clicks, and a sale 10 s after its clean click.
    let mut clicks = Vec::new();
    for i in 0..5 {
        clicks.push((
            format!("flood-{i}"),
            "push",
            "198.51.100.50",
            BROWSER,
            i * 10,
        ));
    }
    for i in 0..2 {
        clicks.push((
            format!("crawler-{i}"),
            "seo",
            "198.51.100.60",
            BOT,
            600 + i * 100,
        ));
        clicks.push((
            format!("cloud-{i}"),
            "native",
            "203.0.113.10",
            BROWSER,
            900 + i * 100,
        ));
    }
    clicks.push(("fast-click".into(), "email", "198.51.100.70", BROWSER, 1200));
    for (id, source, ip, ua, t) in &clicks {
        let body = json!({
            "event_id": format!("evt-{id}"), "event_name": "CLICK", "click_id": id,
            "occurred_at": at(day1(), *t), "offer_id": "qa", "source": source,
            "affiliate_id": "aff-traffic", "ip": ip, "user_agent": ua,
        });
        tests::post_acked(&client, &base, &body).await;
    }
    let fast = json!({
        "event_id": "sale-fast", "event_name": "SALE", "order_id": "order-fast",
        "click_id": "fast-click", "offer_id": "qa", "occurred_at": at(day1(), 1210),
        "revenue": "30.00", "currency": "USD",
    });
    tests::post_acked(&client, &base, &fast).await;

    // The burst: two producers, 60 sales of 10.00 on the capped offer within a minute.
    let acked = Arc::new(AtomicUsize::new(0));
    let burst = (0..PRODUCERS)
        .map(|producer| {
            let (base, acked) = (base.clone(), acked.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in (producer..BURST).step_by(PRODUCERS) {
                    let body = json!({
                        "event_id": format!("burst-{i}"), "event_name": "SALE",
                        "order_id": format!("burst-order-{i}"), "offer_id": "capped",
                        "affiliate_id": "aff-1", "occurred_at": at(day1(), i as i64),
                        "revenue": "10.00", "currency": "USD",
                    });
                    tests::post_acked(&client, &base, &body).await;
                    acked.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
        .collect::<Vec<_>>();

    // Mid-burst, the instance that holds the cap's counters dies without a word.
    let deadline = Instant::now() + Duration::from_secs(60);
    let owner_is_p1 = loop {
        let usage = |p: &ServiceProcess| {
            caps_metric(p, "processor_cap_decisions_total", "verdict=\"counted\"")
        };
        if acked.load(Ordering::SeqCst) >= BURST / 3 {
            let (u1, u2) = (usage(&pipeline.processor), usage(&p2));
            if u1 > 0.0 || u2 > 0.0 {
                break u1 > 0.0;
            }
        }
        assert!(Instant::now() < deadline, "no processor decided a cap");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed_at = acked.load(Ordering::SeqCst);
    let (name, victim) = if owner_is_p1 {
        ("p1", &mut pipeline.processor)
    } else {
        ("p2", &mut p2)
    };
    tokio::task::block_in_place(|| {
        victim.kill_in_place();
        *victim = ServiceProcess::processor(&pipeline.topics, name, &flags);
        victim.wait_ready(Duration::from_secs(90));
    });
    for producer in burst {
        producer.await.unwrap();
    }
    println!("[caps] killed {name} after {killed_at} of {BURST} sales were acknowledged");
    assert!(killed_at < BURST, "the kill came after the burst");

    let ch = pipeline.clickhouse();
    let before_day2 = (clicks.len() + 1 + BURST) as u64;
    wait_rows(&ch, "ledger", before_day2, Duration::from_secs(120)).await;

    // The affiliate's revenue cap (100 USD in total), one entry at a time: 40 + 40 count,
    // the third 40 would make 120 and is over; refunding the first gives 40 back, so a
    // fourth 40 counts (80); the over-cap sale's refund stays over.
    let sequence = [
        ("aff9-s1", "SALE", "aff9-o1"),
        ("aff9-s2", "SALE", "aff9-o2"),
        ("aff9-s3", "SALE", "aff9-o3"),
        ("aff9-r1", "REFUND", "aff9-o1"),
        ("aff9-s4", "SALE", "aff9-o4"),
        ("aff9-r3", "REFUND", "aff9-o3"),
    ];
    for (n, (id, name, order)) in sequence.iter().enumerate() {
        let body = json!({
            "event_id": id, "event_name": name, "order_id": order, "offer_id": "capped",
            "affiliate_id": "aff-9", "occurred_at": at(day2(), n as i64 * 60),
            "revenue": "40.00", "currency": "USD",
        });
        tests::post_acked(&client, &base, &body).await;
        wait_entry(&ch, id).await;
    }
    // The operator raises the day's cap to 27 without a restart: two more of that day's
    // sales count, the third does not.
    std::fs::write(&caps, CAPS.replace("conversions = 25", "conversions = 27")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = ["late-1", "late-2", "late-3"];
    for (n, id) in late.iter().enumerate() {
        let body = json!({
            "event_id": id, "event_name": "SALE", "order_id": format!("{id}-order"),
            "offer_id": "capped", "affiliate_id": "aff-1",
            "occurred_at": at(day1(), 3600 + n as i64), "revenue": "10.00", "currency": "USD",
        });
        tests::post_acked(&client, &base, &body).await;
        wait_entry(&ch, id).await;
    }
    wait_rows(
        &ch,
        "ledger",
        before_day2 + (sequence.len() + late.len()) as u64,
        Duration::from_secs(60),
    )
    .await;

    // The ledger: every burst sale once; exactly the limit counted.
    let (rows, distinct, over): (u64, u64, u64) = ch
        .query(
            "SELECT count(), uniqExact(event_id), countIf(has(flags, 'OVER_CAP')) FROM ledger \
             WHERE startsWith(event_id, 'burst-')",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!((rows, distinct), (BURST as u64, BURST as u64));
    assert_eq!(
        over,
        (BURST - LIMIT) as u64,
        "the daily cap overshot or undershot"
    );
    #[derive(Debug, Row, Deserialize)]
    struct Flagged {
        event_id: String,
        flags: Vec<String>,
    }
    let aff9: BTreeMap<String, Vec<String>> = ch
        .query(
            "SELECT event_id, flags FROM ledger \
             WHERE startsWith(event_id, 'aff9-') OR startsWith(event_id, 'late-')",
        )
        .fetch_all::<Flagged>()
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.event_id, f.flags))
        .collect();
    let over_cap = vec!["OVER_CAP".to_owned()];
    let want: BTreeMap<String, Vec<String>> = [
        ("aff9-r1", vec![]),
        ("aff9-r3", over_cap.clone()),
        ("aff9-s1", vec![]),
        ("aff9-s2", vec![]),
        ("aff9-s3", over_cap.clone()),
        ("aff9-s4", vec![]),
        ("late-1", vec![]),
        ("late-2", vec![]),
        ("late-3", over_cap.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(aff9, want);

    // The views: over-cap conversions leave sales and money, and are counted apart.
    let stats: Vec<Stats> = ch
        .query(
            "SELECT concat(toString(day), '/', offer_id, '/', source) AS source, \
             sum(clicks) AS clicks, sum(suspect_clicks) AS suspect_clicks, sum(sales) AS sales, \
             sum(refunds) AS refunds, sum(too_fast_conversions) AS too_fast_conversions, \
             sum(over_cap_conversions) AS over_cap_conversions, \
             toString(sum(net_revenue)) AS net, toString(sum(over_cap_revenue)) AS over_cap_revenue \
             FROM daily_stats GROUP BY day, offer_id, source ORDER BY source",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<_> = stats
        .iter()
        .map(|s| {
            (
                s.source.as_str(),
                (
                    s.clicks,
                    s.suspect_clicks,
                    s.sales,
                    s.refunds,
                    s.too_fast_conversions,
                ),
                s.over_cap_conversions,
                Decimal::from_str(&s.net).unwrap().normalize(),
                Decimal::from_str(&s.over_cap_revenue).unwrap().normalize(),
            )
        })
        .collect();
    let d = |s: &str| Decimal::from_str(s).unwrap();
    assert_eq!(
        got,
        vec![
            // 25 + 2 sales of 10.00 counted; 35 + 1 over (360.00).
            (
                "2026-11-27/capped/unattributed",
                (0, 0, 27, 0, 0),
                36,
                d("270"),
                d("360")
            ),
            ("2026-11-27/qa/email", (1, 0, 1, 0, 1), 0, d("30"), d("0")),
            ("2026-11-27/qa/native", (2, 2, 0, 0, 0), 0, d("0"), d("0")),
            ("2026-11-27/qa/push", (5, 2, 0, 0, 0), 0, d("0"), d("0")),
            ("2026-11-27/qa/seo", (2, 2, 0, 0, 0), 0, d("0"), d("0")),
            // s1, s2, s4 counted, r1 refunds 40; s3 and its refund over: 40 - 40.
            (
                "2026-11-28/capped/unattributed",
                (0, 0, 3, 1, 0),
                1,
                d("80"),
                d("0")
            ),
        ]
    );

    // The wire: exactly the counted entries' postbacks, never an over-cap one's.
    let counted: BTreeSet<String> = ch
        .query(
            "SELECT event_id FROM ledger WHERE event_name IN ('SALE', 'REFUND') \
             AND NOT has(flags, 'OVER_CAP')",
        )
        .fetch_all::<String>()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(counted.len(), LIMIT + 2 + 1 + 4);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: BTreeSet<String> = deliveries.lock().unwrap().keys().cloned().collect();
        if seen.is_superset(&counted) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "postbacks missing: {:?}",
            counted.difference(&seen).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Whatever was queued has had its time: nothing else may arrive.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen: BTreeSet<String> = deliveries.lock().unwrap().keys().cloned().collect();
    assert_eq!(seen, counted, "a postback for an over-cap conversion left");

    // trackctl reads the processor's exact counters.
    let status = |at: &str| {
        let (ok, out) = tests::sink::trackctl(
            &pipeline.database,
            &[
                "caps",
                "status",
                "--json",
                &format!("--caps-file={}", caps.display()),
                &format!("--caps-state-topic={}", pipeline.topics.caps_state),
                &format!("--at={at}"),
            ],
        );
        assert!(ok, "{out}");
        let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        rows.iter()
            .map(|r| {
                (
                    r["cap"].as_str().unwrap().to_owned(),
                    r["period"].as_str().unwrap().to_owned(),
                    r["used"].as_str().unwrap().to_owned(),
                    r["limit"].as_str().unwrap().to_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let s = |a: &str, b: &str, c: &str, d: &str| {
        (a.to_owned(), b.to_owned(), c.to_owned(), d.to_owned())
    };
    assert_eq!(
        status("2026-11-27T20:00:00Z"),
        vec![
            s("capped-daily", "2026-11-27", "27", "27"),
            s("capped-aff9-usd", "total", "80 USD", "100 USD"),
        ]
    );
    assert_eq!(
        status("2026-11-28T20:00:00Z")[0],
        s("capped-daily", "2026-11-28", "3", "27")
    );

    // Metrics: the affiliate's over-cap sale was decided after the kill, by one instance.
    let over = |p: &ServiceProcess| {
        caps_metric(
            p,
            "processor_over_cap_conversions_total",
            "cap=\"capped-aff9-usd\"",
        )
    };
    assert_eq!(over(&pipeline.processor) + over(&p2), 1.0);

    p2.terminate();
    pipeline.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
