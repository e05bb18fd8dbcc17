//! Attribution windows: a conversion is credited to its click's source only within its
//! offer's window (the offers file the sink reads); outside it, or without a known click, it
//! stays in the ledger with its money and is credited to `unattributed`. Real processor and
//! sink; the expected verdicts and sums are worked out here from the event times.

use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use clickhouse::Row;
use rust_decimal::Decimal;
use schemas::{EventName, TrackingEvent, FIRST_PARTY};
use serde::Deserialize;
use tests::sink::load_through_pipeline;

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap()
}

fn click(id: &str, offer: &str, source: &str, at: DateTime<Utc>) -> TrackingEvent {
    let mut e = TrackingEvent::new(
        format!("evt-{id}"),
        EventName::Click,
        at,
        at,
        FIRST_PARTY,
        "/c",
    );
    e.click_id = Some(id.into());
    e.offer_id = Some(offer.into());
    e.affiliate_id = Some(format!("aff-{source}"));
    e.campaign_id = Some(format!("cmp-{source}"));
    e.source = Some(source.into());
    e
}

/// A sale (or refund) of `order` on `offer`, naming `click` (if any), in dollars. Network
/// postbacks name the network as their source and their own affiliate.
fn money(
    (name, id, order): (EventName, &str, &str),
    (offer, click): (&str, Option<&str>),
    amount: &str,
    at: DateTime<Utc>,
) -> TrackingEvent {
    let mut e = TrackingEvent::new(id, name, at, at, "clickbank", "/postbacks/clickbank");
    e.order_id = Some(order.into());
    e.offer_id = Some(offer.into());
    e.click_id = click.map(str::to_owned);
    e.affiliate_id = Some("network-aff".into());
    e.source = Some("clickbank".into());
    e.revenue = Some(Decimal::from_str(amount).unwrap());
    e.currency = Some("USD".into());
    e
}

#[derive(Debug, Row, Deserialize)]
struct Verdict {
    conversion_key: String,
    attribution: String,
    window_days: Option<u32>,
}

#[derive(Debug, Row, Deserialize)]
struct BySource {
    source: String,
    affiliate_id: String,
    clicks: u64,
    sales: u64,
    net: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn conversions_outside_their_window_or_without_a_click_are_unattributed() {
    let t0 = start();
    let day = Duration::days(1);
    let events = vec![
        // Offer "short" has a 7-day window; "long" takes the file's default, 30 days.
        click("k1", "short", "fb", t0),
        click("k2", "short", "fb", t0),
        click("k3", "long", "tt", t0),
        click("k4", "short", "fb", t0),
        // 4 days after k1: within 7.
        money(
            (EventName::Sale, "s1", "o1"),
            ("short", Some("k1")),
            "40.00",
            t0 + day * 4,
        ),
        // 9 days after k2: outside 7; and its refund follows it to `unattributed`.
        money(
            (EventName::Sale, "s2", "o2"),
            ("short", Some("k2")),
            "50.00",
            t0 + day * 9,
        ),
        money(
            (EventName::Refund, "r2", "o2"),
            ("short", Some("k2")),
            "10.00",
            t0 + day * 11,
        ),
        // 19 days after k3: within the default 30.
        money(
            (EventName::Sale, "s3", "o3"),
            ("long", Some("k3")),
            "30.00",
            t0 + day * 19,
        ),
        // Exactly 7 days after k4: the window's last instant still counts.
        money(
            (EventName::Sale, "s4", "o4"),
            ("short", Some("k4")),
            "20.00",
            t0 + day * 7,
        ),
        // No click ID at all, and a click ID the ledger never saw.
        money(
            (EventName::Sale, "s5", "o5"),
            ("long", None),
            "15.00",
            t0 + day * 2,
        ),
        money(
            (EventName::Sale, "s6", "o6"),
            ("long", Some("k-unknown")),
            "5.00",
            t0 + day * 2,
        ),
        // 7 days and one second after its click: outside.
        click("k5", "short", "fb", t0 + day),
        money(
            (EventName::Sale, "s7", "o7"),
            ("short", Some("k5")),
            "1.00",
            t0 + day * 8 + Duration::seconds(1),
        ),
    ];
    let dir = std::env::temp_dir().join(tests::unique_name("windows"));
    std::fs::create_dir_all(&dir).unwrap();
    let offers = dir.join("offers.toml");
    std::fs::write(
        &offers,
        "[attribution]\nwindow_days = 30\n\n[offers.short]\nurl = \"https://o.example/?c={click_id}\"\nattribution_window_days = 7\n",
    )
    .unwrap();
    let flag = format!("--offers-file={}", offers.display());
    let (_, _, ch) = load_through_pipeline("windows", &events, events.len() as u64, &[&flag]).await;

    let verdicts: Vec<Verdict> = ch
        .query(
            "SELECT conversion_key, attribution, window_days FROM conversion_attribution \
             ORDER BY conversion_key",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<_> = verdicts
        .iter()
        .map(|v| {
            (
                v.conversion_key.rsplit('/').next().unwrap(),
                v.attribution.as_str(),
                v.window_days,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("o1", "click", Some(7)),
            ("o2", "outside_window", Some(7)),
            ("o3", "click", Some(30)),
            ("o4", "click", Some(7)),
            ("o5", "no_click", Some(30)),
            ("o6", "no_click", Some(30)),
            ("o7", "outside_window", Some(7)),
        ],
        "{verdicts:#?}"
    );

    // Every dollar is still in the ledger and in daily_stats; only the credit moves.
    let rows: Vec<BySource> = ch
        .query(
            "SELECT source, affiliate_id, sum(clicks) AS clicks, sum(sales) AS sales, \
             toString(sum(net_revenue)) AS net FROM daily_stats \
             GROUP BY source, affiliate_id ORDER BY source, affiliate_id",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.source.as_str(),
                r.affiliate_id.as_str(),
                r.clicks,
                r.sales,
                Decimal::from_str(&r.net).unwrap().normalize().to_string(),
            )
        })
        .collect();
    // fb: clicks k1, k2, k4, k5; sales s1 (40) and s4 (20). tt: k3 and s3 (30).
    // unattributed, under the postbacks' own affiliate: s2 (50 - 10), s5 (15), s6 (5), s7 (1).
    assert_eq!(
        got,
        vec![
            ("fb", "aff-fb", 4, 2, "60".to_owned()),
            ("tt", "aff-tt", 1, 1, "30".to_owned()),
            ("unattributed", "network-aff", 0, 4, "61".to_owned()),
        ]
    );
    let total: String = ch
        .query("SELECT toString(sum(signed_revenue)) FROM ledger")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        Decimal::from_str(&total).unwrap(),
        Decimal::from(60 + 30 + 61)
    );

    // The EPC by source credits fb only with what came within its window: 60 / 4 clicks.
    let epc: String = ch
        .query(
            "SELECT toString(sum(net_revenue) / sum(clicks)) FROM daily_stats WHERE source = 'fb'",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        Decimal::from_str(&epc).unwrap(),
        Decimal::from_str("15").unwrap()
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_sink_refuses_an_offers_file_with_a_bad_window() {
    let dir = std::env::temp_dir().join(tests::unique_name("windows-bad"));
    std::fs::create_dir_all(&dir).unwrap();
    let offers = dir.join("offers.toml");
    std::fs::write(&offers, "[offers.short]\nattribution_window_days = 0\n").unwrap();
    let out = std::process::Command::new(tests::service::workspace_bin("sink"))
        .arg(format!("--offers-file={}", offers.display()))
        .arg(format!("--clickhouse-url={}", tests::clickhouse_url()))
        .arg(format!("--database={}", tests::unique_name("windows_bad")))
        .arg("--migrate-only")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("offer short: attribution_window_days: 0 days is outside 1..=3650"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
