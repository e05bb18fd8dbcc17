//! Amounts of different currencies are never added together in the analyst views: traffic
//! paid in dollars and euros gets a row per currency in daily_stats, its clicks on a row of
//! their own, and each currency's EPC over all of its clicks; conversions name their
//! currency. Real processor and sink, expected values computed by hand.

use std::str::FromStr;

use chrono::{TimeZone, Utc};
use clickhouse::Row;
use rust_decimal::Decimal;
use schemas::{EventName, TrackingEvent, FIRST_PARTY};
use serde::Deserialize;
use tests::sink::load_through_pipeline;

fn event(id: &str, name: EventName, minute: u32) -> TrackingEvent {
    let at = Utc.with_ymd_and_hms(2026, 11, 20, 10, minute, 0).unwrap();
    TrackingEvent::new(id, name, at, at, FIRST_PARTY, "/v1/events")
}

fn click(id: &str, offer: &str, affiliate: &str, campaign: &str, source: &str) -> TrackingEvent {
    let mut e = event(&format!("evt-{id}"), EventName::Click, 0);
    e.click_id = Some(id.into());
    e.offer_id = Some(offer.into());
    e.affiliate_id = Some(affiliate.into());
    e.campaign_id = Some(campaign.into());
    e.source = Some(source.into());
    e
}

/// An event with money: `(name, id)`, `(order, offer, click)`, `(revenue, payout, currency)`.
fn money(
    (name, id): (EventName, &str),
    (order, offer, click): (&str, &str, &str),
    (revenue, payout, currency): (&str, Option<&str>, &str),
) -> TrackingEvent {
    let mut e = event(id, name, 30);
    e.order_id = Some(order.into());
    e.click_id = Some(click.into());
    // The offer is the conversion's own; affiliate, campaign and source come from its click.
    e.offer_id = Some(offer.into());
    e.revenue = Some(Decimal::from_str(revenue).unwrap());
    e.payout = payout.map(|p| Decimal::from_str(p).unwrap());
    e.currency = Some(currency.into());
    e
}

#[derive(Debug, Row, Deserialize)]
struct Stats {
    offer_id: String,
    currency: String,
    clicks: u64,
    sales: u64,
    net_revenue: String,
    payout: String,
    epc: Option<String>,
    conversion_rate: Option<String>,
    traffic_clicks: u64,
}

#[tokio::test(flavor = "multi_thread")]
async fn currencies_are_never_added_together() {
    let mut events = Vec::new();
    // Traffic "multi": four clicks, a sale in dollars, a sale in euros and part of it refunded.
    for k in ["ka1", "ka2", "ka3", "ka4"] {
        events.push(click(k, "multi", "aff-m", "cmp-m", "fb"));
    }
    events.push(money(
        (EventName::Sale, "s-usd"),
        ("o-usd", "multi", "ka1"),
        ("10.00", Some("4.00"), "USD"),
    ));
    events.push(money(
        (EventName::Sale, "s-eur"),
        ("o-eur", "multi", "ka2"),
        ("20.00", Some("8.00"), "EUR"),
    ));
    events.push(money(
        (EventName::Refund, "r-eur"),
        ("o-eur", "multi", "ka2"),
        ("5.00", None, "EUR"),
    ));
    // Traffic "single": two clicks and a sale in dollars.
    for k in ["kb1", "kb2"] {
        events.push(click(k, "single", "aff-s", "cmp-s", "tt"));
    }
    events.push(money(
        (EventName::Sale, "s-b"),
        ("o-b", "single", "kb1"),
        ("5.00", Some("2.00"), "USD"),
    ));
    // Traffic "clicksonly": three clicks, no money.
    for k in ["kc1", "kc2", "kc3"] {
        events.push(click(k, "clicksonly", "aff-c", "cmp-c", "x"));
    }
    let (_, _, ch) = load_through_pipeline("currencies", &events, events.len() as u64, &[]).await;

    let rows: Vec<Stats> = ch
        .query(
            "SELECT offer_id, currency, clicks, sales, toString(net_revenue) AS net_revenue, \
             toString(payout) AS payout, toString(epc) AS epc, \
             toString(conversion_rate) AS conversion_rate, traffic_clicks \
             FROM daily_stats ORDER BY offer_id, currency",
        )
        .fetch_all()
        .await
        .unwrap();
    let n = |s: &str| Decimal::from_str(s).unwrap().normalize().to_string();
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.offer_id.as_str(),
                r.currency.as_str(),
                r.clicks,
                r.sales,
                n(&r.net_revenue),
                n(&r.payout),
                r.epc.as_deref().map(n),
                r.conversion_rate.as_deref().map(n),
                r.traffic_clicks,
            )
        })
        .collect();
    let s = |v: &str| Some(v.to_owned());
    // By hand: "multi" has 4 clicks; dollars 10.00 net (EPC 10/4), euros 20 - 5 = 15.00 net
    // (EPC 15/4), one sale each in 4 clicks; its clicks row has no EPC of its own.
    assert_eq!(
        got,
        vec![
            (
                "clicksonly",
                "",
                3,
                0,
                "0".into(),
                "0".into(),
                s("0"),
                s("0"),
                3
            ),
            ("multi", "", 4, 0, "0".into(), "0".into(), None, None, 4),
            (
                "multi",
                "EUR",
                0,
                1,
                "15".into(),
                "8".into(),
                s("3.75"),
                s("0.25"),
                4
            ),
            (
                "multi",
                "USD",
                0,
                1,
                "10".into(),
                "4".into(),
                s("2.5"),
                s("0.25"),
                4
            ),
            (
                "single",
                "USD",
                2,
                1,
                "5".into(),
                "2".into(),
                s("2.5"),
                s("0.5"),
                2
            ),
        ]
    );
    // Summing clicks over rows counts each click once.
    let clicks: u64 = ch
        .query("SELECT sum(clicks) FROM daily_stats")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(clicks, 9);

    let conversions: Vec<(String, String, String)> = ch
        .query(
            "SELECT conversion_key, currency, toString(net_revenue) FROM conversion_state \
             ORDER BY conversion_key",
        )
        .fetch_all()
        .await
        .unwrap();
    let conversions: Vec<_> = conversions
        .into_iter()
        .map(|(k, c, net)| (k, c, n(&net)))
        .collect();
    assert_eq!(
        conversions,
        vec![
            (
                "first_party/order/o-b".to_owned(),
                "USD".to_owned(),
                "5".to_owned()
            ),
            (
                "first_party/order/o-eur".to_owned(),
                "EUR".to_owned(),
                "15".to_owned()
            ),
            (
                "first_party/order/o-usd".to_owned(),
                "USD".to_owned(),
                "10".to_owned()
            ),
        ]
    );
}
