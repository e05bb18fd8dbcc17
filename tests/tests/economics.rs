//! The tracker economics together, through the real ingest, processor and sink: sales in
//! Canadian dollars, euros and US dollars; a rebill; partial refunds (one retried); a sale
//! outside its offer's attribution window; payout rules (revenue share, an affiliate's CPA, a
//! CPL) beside a network's own commission; exchange rates from the ECB's XML. Every expected
//! figure below is worked out by hand from the events, not read from the product.

use std::str::FromStr;

use clickhouse::Row;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use serde_json::{json, Value};
use tests::pipeline::{webhook_destinations, Pipeline};
use tests::processor::ProcessorTopics;
use tests::sink::{database, trackctl, wait_rows};

const OFFERS: &str = r#"
[attribution]
window_days = 30

[offers.course]
attribution_window_days = 7

[offers.course.payout]
revshare_percent = "40"

[offers.course.payout.affiliates.aff-cpa]
cpa = "12.50"
currency = "EUR"

[offers.keto-vsl.payout]
revshare_percent = "50"

[offers.solar.payout]
cpl = "6.00"
currency = "USD"
"#;

/// EUR reference rates for the days with money (2026-11-03 is a Tuesday).
const ECB: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
<Cube>
<Cube time="2026-11-13"><Cube currency="USD" rate="1.0600"/><Cube currency="CAD" rate="1.4800"/></Cube>
<Cube time="2026-11-12"><Cube currency="USD" rate="1.0550"/><Cube currency="CAD" rate="1.4750"/></Cube>
<Cube time="2026-11-10"><Cube currency="USD" rate="1.0500"/><Cube currency="CAD" rate="1.4700"/></Cube>
<Cube time="2026-11-03"><Cube currency="USD" rate="1.0400"/><Cube currency="CAD" rate="1.4600"/></Cube>
</Cube></gesmes:Envelope>"#;

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn n(s: &str) -> String {
    dec(s).normalize().to_string()
}

async fn event(base: &str, body: Value) {
    tests::post_event(base, body).await;
}

#[derive(Debug, Row, Deserialize)]
struct Entry {
    event_id: String,
    signed_revenue: String,
    signed_payout: String,
    currency: Option<String>,
    payout_source: String,
    payout_rule: Option<String>,
}

#[derive(Debug, Row, Deserialize)]
struct Payouts {
    currency: String,
    payout_source: String,
    rule: String,
    paid: String,
    clawed_back: String,
    net_payout: String,
}

#[derive(Debug, Row, Deserialize)]
struct Sources {
    source: String,
    currency: String,
    clicks: u64,
    sales: u64,
    net: String,
}

#[derive(Debug, Row, Deserialize)]
struct Cohort {
    sale_day: String,
    currency: String,
    net_revenue: String,
    net_payout: String,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_month_of_currencies_refunds_rebills_windows_and_payout_rules_to_the_cent() {
    let dir = std::env::temp_dir().join(tests::unique_name("economics"));
    std::fs::create_dir_all(&dir).unwrap();
    let offers = dir.join("offers.toml");
    std::fs::write(&offers, OFFERS).unwrap();
    let offers_flag = format!("--offers-file={}", offers.display());
    let destinations = webhook_destinations().await;
    let topics = ProcessorTopics::create("economics").await;
    let db = database("economics");
    let pipeline = Pipeline::start_with(
        topics,
        db.clone(),
        &destinations,
        &|service| match service {
            "processor" | "sink" => vec![offers_flag.clone()],
            _ => Vec::new(),
        },
    )
    .await;
    let base = pipeline.ingest.base_url.clone();
    let run = tests::unique_name("eco");
    let id = |s: &str| format!("{run}-{s}");

    // Course, revenue share 40%: a click from fb, a sale in CAD two days later (within 7),
    // its rebill, and two partial refunds, the first sent twice.
    event(
        &base,
        json!({"event_id": id("c1"), "event_name": "CLICK", "click_id": id("c1"),
        "offer_id": "course", "affiliate_id": "aff-rs", "source": "fb",
        "occurred_at": "2026-11-01T10:00:00Z"}),
    )
    .await;
    event(
        &base,
        json!({"event_id": id("a-sale"), "event_name": "SALE", "order_id": id("A"),
        "click_id": id("c1"), "offer_id": "course", "affiliate_id": "aff-rs",
        "revenue": "100.00", "currency": "CAD", "occurred_at": "2026-11-03T12:00:00Z"}),
    )
    .await;
    event(
        &base,
        json!({"event_id": id("a-rebill"), "event_name": "SALE", "order_id": id("A"),
        "rebill_sequence": 2, "offer_id": "course", "affiliate_id": "aff-rs",
        "revenue": "100.00", "currency": "CAD", "occurred_at": "2026-11-10T12:00:00Z"}),
    )
    .await;
    let refund1 = json!({"event_id": id("a-refund-1"), "event_name": "REFUND", "order_id": id("A"),
        "revenue": "30.00", "currency": "CAD", "occurred_at": "2026-11-12T12:00:00Z"});
    event(&base, refund1.clone()).await;
    event(
        &base,
        json!({"event_id": id("a-refund-2"), "event_name": "REFUND", "order_id": id("A"),
        "revenue": "20.00", "currency": "CAD", "occurred_at": "2026-11-13T12:00:00Z"}),
    )
    .await;
    event(&base, refund1).await; // the producer's retry: a duplicate

    // Course, affiliate aff-cpa (CPA 12.50 EUR): its click is eleven days older than the sale,
    // outside the 7-day window; then a chargeback of all of it.
    event(
        &base,
        json!({"event_id": id("c2"), "event_name": "CLICK", "click_id": id("c2"),
        "offer_id": "course", "affiliate_id": "aff-cpa", "source": "tt",
        "occurred_at": "2026-11-01T11:00:00Z"}),
    )
    .await;
    event(
        &base,
        json!({"event_id": id("b-sale"), "event_name": "SALE", "order_id": id("B"),
        "click_id": id("c2"), "offer_id": "course", "affiliate_id": "aff-cpa",
        "revenue": "50.00", "currency": "EUR", "occurred_at": "2026-11-12T12:00:00Z"}),
    )
    .await;
    event(
        &base,
        json!({"event_id": id("b-cb"), "event_name": "CHARGEBACK", "order_id": id("B"),
        "occurred_at": "2026-11-13T12:00:00Z"}),
    )
    .await;

    // keto-vsl through ClickBank: the network's commission (accountAmount) wins over the
    // offer's 50% rule, in the sale and in its partial refund.
    let receipt = format!("CB{}", &run.to_uppercase().replace(['_', '-'], "")[..10]);
    tests::post_clickbank(
        &base,
        &receipt,
        "SALE",
        "2026-11-10T08:00:00-08:00",
        "100.00",
        "40.00",
    )
    .await;
    tests::post_clickbank(
        &base,
        &receipt,
        "RFND",
        "2026-11-12T08:00:00-08:00",
        "10.00",
        "-4.00",
    )
    .await;

    // Solar, CPL 6.00 USD: a lead and its approval, without money of their own.
    event(
        &base,
        json!({"event_id": id("lead"), "event_name": "LEAD", "lead_id": id("L"),
        "offer_id": "solar", "affiliate_id": "aff-lead", "occurred_at": "2026-11-12T12:00:00Z"}),
    )
    .await;
    event(
        &base,
        json!({"event_id": id("approved"), "event_name": "APPROVED_LEAD", "lead_id": id("L"),
        "offer_id": "solar", "occurred_at": "2026-11-12T13:00:00Z"}),
    )
    .await;

    let ch = pipeline.clickhouse();
    // 12 ledger entries (2 clicks, 6 course, 2 ClickBank, 2 solar): the duplicate refund is a receipt.
    wait_rows(&ch, "ledger", 12, std::time::Duration::from_secs(60)).await;
    wait_rows(&ch, "receipts", 1, std::time::Duration::from_secs(60)).await;

    let entries: Vec<Entry> = ch
        .query(
            "SELECT event_id, toString(signed_revenue) AS signed_revenue, \
             toString(signed_payout) AS signed_payout, currency, payout_source, payout_rule \
             FROM ledger WHERE event_name != 'CLICK' ORDER BY occurred_at, event_id",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                e.event_id
                    .strip_prefix(&format!("{run}-"))
                    .unwrap_or("clickbank"),
                n(&e.signed_revenue),
                n(&e.signed_payout),
                e.currency.clone().unwrap_or_default(),
                e.payout_source.as_str(),
                e.payout_rule.clone().unwrap_or_default(),
            )
        })
        .collect();
    let row = |id: &'static str, rev: &str, pay: &str, cur: &str, src: &'static str, rule: &str| {
        (id, n(rev), n(pay), cur.to_owned(), src, rule.to_owned())
    };
    let clawback = |rule: &str| format!("clawback of {rule}");
    let (revshare, cpa) = (
        "offer course: revshare 40%",
        "offer course, affiliate aff-cpa: cpa 12.5 EUR",
    );
    #[rustfmt::skip]
    let expected = vec![
        // 100 × 40% = 40; the rebill's own 40.
        row("a-sale", "100", "40", "CAD", "RULE", revshare),
        row("a-rebill", "100", "40", "CAD", "RULE", revshare),
        // The network's commission.
        row("clickbank", "100", "40", "USD", "EVENT", ""),
        // 80 paid on 200: 30 refunded claws back 80 × 30 / 200 = 12 (then 20: 8, below).
        row("a-refund-1", "-30", "-12", "CAD", "RULE", &clawback(revshare)),
        row("b-sale", "50", "12.5", "EUR", "RULE", cpa),
        row("lead", "0", "0", "", "NONE", ""),
        // The CPL names its currency on the approval, which had none.
        row("approved", "0", "6", "USD", "RULE", "offer solar: cpl 6 USD"),
        row("clickbank", "-10", "-4", "USD", "EVENT", ""),
        row("a-refund-2", "-20", "-8", "CAD", "RULE", &clawback(revshare)),
        // The chargeback without an amount takes the rest: 50, and the whole CPA, in the
        // conversion's currency, which it did not name.
        row("b-cb", "-50", "-12.5", "EUR", "RULE", &clawback(cpa)),
    ];
    assert_eq!(got, expected);

    // Totals per currency, by hand: CAD 200 - 50 = 150 revenue, 80 - 20 = 60 paid; EUR 50 -
    // 50 = 0 and 12.50 - 12.50 = 0; USD 100 - 10 = 90, and 40 - 4 + 6 = 42.
    #[derive(Debug, Row, Deserialize)]
    struct Totals {
        currency: String,
        revenue: String,
        payout: String,
    }
    let totals: Vec<Totals> = ch
        .query(
            "SELECT currency, toString(sum(net_revenue)) AS revenue, toString(sum(payout)) AS payout \
             FROM daily_stats WHERE currency != '' GROUP BY currency ORDER BY currency",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<_> = totals
        .iter()
        .map(|t| (t.currency.as_str(), n(&t.revenue), n(&t.payout)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("CAD", n("150"), n("60")),
            ("EUR", n("0"), n("0")),
            ("USD", n("90"), n("42")),
        ]
    );

    // Which source each payout came from.
    let payouts: Vec<Payouts> = ch
        .query(
            "SELECT currency, payout_source, rule, toString(sum(paid)) AS paid, \
             toString(sum(clawed_back)) AS clawed_back, toString(sum(net_payout)) AS net_payout \
             FROM payout_stats GROUP BY currency, payout_source, rule ORDER BY currency, payout_source, rule",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<_> = payouts
        .iter()
        .map(|p| {
            (
                p.currency.as_str(),
                p.payout_source.as_str(),
                p.rule.as_str(),
                n(&p.paid),
                n(&p.clawed_back),
                n(&p.net_payout),
            )
        })
        .collect();
    // Per rule: what it paid, what reversals clawed back, in the conversion's currency.
    #[rustfmt::skip]
    let expected = vec![
        ("CAD", "RULE", revshare, n("80"), n("20"), n("60")),
        ("EUR", "RULE", cpa, n("12.5"), n("12.5"), n("0")),
        ("USD", "EVENT", "", n("40"), n("4"), n("36")),
        ("USD", "RULE", "offer solar: cpl 6 USD", n("6"), n("0"), n("6")),
    ];
    assert_eq!(got, expected);

    // Attribution: fb gets the CAD sale, its rebill and refunds; the euro sale outside its
    // window and the ClickBank sale without a click are unattributed; tt keeps only its click.
    let sources: Vec<Sources> = ch
        .query(
            "SELECT source, currency, sum(clicks) AS clicks, sum(sales) AS sales, \
             toString(sum(net_revenue)) AS net FROM daily_stats \
             GROUP BY source, currency ORDER BY source, currency",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<_> = sources
        .iter()
        .map(|s| {
            (
                s.source.as_str(),
                s.currency.as_str(),
                s.clicks,
                s.sales,
                n(&s.net),
            )
        })
        .collect();
    assert_eq!(
        got,
        // The clicks of 1 November had no money that day: their rows have no currency. The
        // solar lead, without a click, is unattributed with its CPL in dollars.
        vec![
            ("fb", "", 1, 0, n("0")),
            ("fb", "CAD", 0, 2, n("150")),
            ("tt", "", 1, 0, n("0")),
            ("unattributed", "EUR", 0, 1, n("0")),
            ("unattributed", "USD", 0, 1, n("90")),
        ]
    );

    // Cohorts: the refunds count on the first sale's day; the rebill on its own.
    let cohorts: Vec<Cohort> = ch
        .query(
            "SELECT toString(sale_day) AS sale_day, currency, toString(sum(net_revenue)) AS net_revenue, \
             toString(sum(net_payout)) AS net_payout FROM cohort_stats \
             GROUP BY sale_day, currency ORDER BY sale_day, currency",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<_> = cohorts
        .iter()
        .map(|c| {
            (
                c.sale_day.as_str(),
                c.currency.as_str(),
                n(&c.net_revenue),
                n(&c.net_payout),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("2026-11-03", "CAD", n("50"), n("20")),
            ("2026-11-10", "CAD", n("100"), n("40")),
            ("2026-11-10", "USD", n("90"), n("36")),
            ("2026-11-12", "EUR", n("0"), n("0")),
        ]
    );

    // In the reporting currency (USD) with the ECB's rates: each day's net in its currency,
    // converted at that day's rate, by hand.
    let ecb = dir.join("eurofxref-hist.xml");
    std::fs::write(&ecb, ECB).unwrap();
    let (ok, out) = trackctl(&db, &["fx", "import", "--file", ecb.to_str().unwrap()]);
    assert!(ok, "{out}");
    // The rate views: Canadian dollars into US dollars through the euro, on the 3rd.
    let rate: (String, String, String) = ch
        .query(
            "SELECT toString(numerator), toString(denominator), source FROM fx_reporting_rates \
             WHERE day = '2026-11-03' AND currency = 'CAD'",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        (n(&rate.0), n(&rate.1), rate.2.as_str()),
        (n("1.04"), n("1.46"), "ecb")
    );
    // And the credit of each sale: the euro sale outside its window, ClickBank's without a
    // click, the Canadian one to its click.
    let credit: Vec<(String, String, String)> = ch
        .query(
            "SELECT attribution, source, own_currency FROM credited_entries \
             WHERE event_name = 'SALE' ORDER BY attribution, own_currency",
        )
        .fetch_all()
        .await
        .unwrap();
    let credit: Vec<_> = credit
        .iter()
        .map(|(a, s, c)| (a.as_str(), s.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        credit,
        vec![
            ("click", "fb", "CAD"),
            ("click", "fb", "CAD"),
            ("no_click", "unattributed", "USD"),
            ("outside_window", "unattributed", "EUR"),
        ]
    );
    let usd = |amount: &str, eur_usd: &str, eur_cur: &str| {
        (dec(amount) * dec(eur_usd) / dec(eur_cur))
            .round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
    };
    // CAD: +100 on the 3rd, +100 on the 10th, -30 on the 12th, -20 on the 13th. EUR: +50 on
    // the 12th, -50 on the 13th. USD: +100 on the 10th, -10 on the 12th.
    let by_hand: Decimal = [
        usd("100", "1.0400", "1.4600"),
        usd("100", "1.0500", "1.4700"),
        usd("-30", "1.0550", "1.4750"),
        usd("-20", "1.0600", "1.4800"),
        usd("50", "1.0550", "1"),
        usd("-50", "1.0600", "1"),
        dec("90"),
    ]
    .iter()
    .sum();
    #[derive(Debug, Row, Deserialize)]
    struct Reported {
        net: Option<String>,
        missing: u64,
    }
    let reported: Reported = ch
        .query(
            "SELECT toString(sum(net_revenue_rc)) AS net, sum(missing_rate) AS missing FROM daily_stats",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(reported.missing, 0);
    let reported = dec(reported.net.as_deref().unwrap());
    assert_eq!(reported.round_dp(2), by_hand.round_dp(2), "to the cent");
    assert_eq!(reported, by_hand, "and to the millionth, row by row");

    pipeline.stop().await;
    std::fs::remove_dir_all(&dir).ok();
}
