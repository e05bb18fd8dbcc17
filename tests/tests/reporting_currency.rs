//! The reporting currency: rates imported with the real `trackctl fx import` (the ECB's XML
//! and a CSV), money converted in daily_stats and cohort_stats at the rate of the row's day,
//! a weekend on Friday's rate, a missing rate as NULL and counted, never as 1. Real processor
//! and sink; every expected amount is computed here from the rates, not read from the product.

use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use clickhouse::Row;
use rust_decimal::{Decimal, RoundingStrategy};
use schemas::{EventName, TrackingEvent, FIRST_PARTY};
use serde::Deserialize;
use tests::service::ServiceProcess;
use tests::sink::{load_through_pipeline, trackctl};

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// `amount * numerator / denominator` to 6 places, half away from zero (ClickHouse's
/// rounding of decimals).
fn convert(amount: &str, numerator: &str, denominator: &str) -> String {
    (dec(amount) * dec(numerator) / dec(denominator))
        .round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
        .to_string()
}

/// An event with money on day `day` of November 2026: `(name, id, order, offer)`,
/// `(revenue, payout, currency)`.
fn money(
    day: u32,
    (name, id, order, offer): (EventName, &str, &str, &str),
    (revenue, payout, currency): (&str, &str, &str),
) -> TrackingEvent {
    let at = Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap();
    let mut e = TrackingEvent::new(id, name, at, at, FIRST_PARTY, "/v1/events");
    e.order_id = Some(order.into());
    e.offer_id = Some(offer.into());
    e.affiliate_id = Some("aff".into());
    e.source = Some("fb".into());
    e.revenue = Some(dec(revenue));
    e.payout = (!payout.is_empty()).then(|| dec(payout));
    e.currency = Some(currency.into());
    e
}

const ECB: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
	<gesmes:subject>Reference rates</gesmes:subject>
	<gesmes:Sender><gesmes:name>European Central Bank</gesmes:name></gesmes:Sender>
	<Cube>
		<Cube time="2026-11-20">
			<Cube currency="USD" rate="1.0500"/>
			<Cube currency="GBP" rate="0.8400"/>
			<Cube currency="CAD" rate="1.4700"/>
			<Cube currency="JPY" rate="160.00"/>
		</Cube>
		<Cube time="2026-11-19">
			<Cube currency="USD" rate="1.0400"/>
			<Cube currency="GBP" rate="0.8300"/>
		</Cube>
	</Cube>
</gesmes:Envelope>"#;

#[derive(Debug, Row, Deserialize)]
struct Daily {
    day: String,
    offer_id: String,
    currency: String,
    net_revenue: String,
    net_revenue_rc: Option<String>,
    payout_rc: Option<String>,
    epc_rc: Option<String>,
    missing_rate: u64,
    fx_rate_day: Option<String>,
    reporting_currency: Option<String>,
}

#[derive(Debug, Row, Deserialize)]
struct Cohort {
    sale_day: String,
    offer_id: String,
    currency: String,
    net_revenue_rc: Option<String>,
    missing_rate: u64,
    fx_rate_day: Option<String>,
}

type DailyRow = (String, String, String, Option<String>, u64, Option<String>);

/// daily_stats' rows that match `filter`, decimals as text.
async fn daily_where(ch: &clickhouse::Client, filter: &str) -> Vec<Daily> {
    ch.query(&format!(
        "SELECT toString(day) AS day, offer_id, currency, toString(net_revenue) AS net_revenue, \
         toString(net_revenue_rc) AS net_revenue_rc, toString(payout_rc) AS payout_rc, \
         toString(epc_rc) AS epc_rc, missing_rate, toString(fx_rate_day) AS fx_rate_day, \
         reporting_currency FROM daily_stats WHERE {filter} ORDER BY day, offer_id, currency"
    ))
    .fetch_all()
    .await
    .unwrap()
}

async fn daily(ch: &clickhouse::Client) -> Vec<DailyRow> {
    let rows = daily_where(ch, "currency != ''").await;
    for r in &rows {
        assert_eq!(r.reporting_currency.as_deref(), Some("USD"), "{r:?}");
    }
    rows.into_iter()
        .map(|r| {
            (
                r.day,
                r.offer_id,
                r.currency,
                r.net_revenue_rc.map(|v| dec(&v).normalize().to_string()),
                r.missing_rate,
                r.fx_rate_day,
            )
        })
        .collect()
}

fn row(
    day: &str,
    offer: &str,
    currency: &str,
    rc: Option<String>,
    missing: u64,
    fx_day: Option<&str>,
) -> DailyRow {
    (
        day.into(),
        offer.into(),
        currency.into(),
        rc,
        missing,
        fx_day.map(str::to_owned),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn money_is_reported_in_one_currency_at_each_days_rate() {
    // 2026-11-20 is a Friday.
    let events = vec![
        // Friday: euros, part refunded; converted with the ECB's EUR/USD.
        money(
            20,
            (EventName::Sale, "s-eur", "o-eur", "eur"),
            ("20.00", "8.00", "EUR"),
        ),
        money(
            20,
            (EventName::Refund, "r-eur", "o-eur", "eur"),
            ("5.00", "", "EUR"),
        ),
        // Friday: Canadian dollars; the CSV's USD/CAD (an inverse rate) wins over the cross
        // rate through the euro.
        money(
            20,
            (EventName::Sale, "s-cad", "o-cad", "cad"),
            ("14.00", "", "CAD"),
        ),
        // Friday: dollars need no rate.
        money(
            20,
            (EventName::Sale, "s-usd", "o-usd", "usd"),
            ("7.00", "", "USD"),
        ),
        // Thursday: pounds, a cross rate through the euro that does not divide evenly.
        money(
            19,
            (EventName::Sale, "s-gbp19", "o-gbp19", "gbp19"),
            ("3.00", "", "GBP"),
        ),
        // Thursday: yen, whose first rate is Friday's: none yet, so NULL and counted.
        money(
            19,
            (EventName::Sale, "s-jpy", "o-jpy", "jpy"),
            ("1000", "", "JPY"),
        ),
        // Saturday: no rates on weekends; Friday's is used, and named.
        money(
            21,
            (EventName::Sale, "s-gbp", "o-gbp", "gbp"),
            ("10.00", "3.00", "GBP"),
        ),
        // Monday: a refund of Saturday's sale; in its cohort it counts on Saturday.
        money(
            23,
            (EventName::Refund, "r-gbp", "o-gbp", "gbp"),
            ("4.00", "", "GBP"),
        ),
        // Eight days after Friday: the latest rate is too old (7 days by default).
        money(
            28,
            (EventName::Sale, "s-late", "o-late", "late"),
            ("1.00", "", "EUR"),
        ),
    ];
    let (topics, db, ch) = load_through_pipeline("fx", &events, events.len() as u64, &[]).await;

    // Before any rate: only dollars convert, every other row is NULL and counted.
    let before = daily(&ch).await;
    let missing: u64 = before.iter().map(|r| r.4).sum();
    assert_eq!(missing, 8, "{before:#?}");
    assert!(before.iter().all(|r| (r.2 == "USD") == r.3.is_some()));

    let dir = std::env::temp_dir().join(tests::unique_name("fx-files"));
    std::fs::create_dir_all(&dir).unwrap();
    let ecb = dir.join("eurofxref-hist.xml");
    std::fs::write(&ecb, ECB).unwrap();
    let (ok, out) = trackctl(&db, &["fx", "import", "--file", ecb.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Imported 6 rates of 4 currency pairs for 2 days (2026-11-19 to 2026-11-20)"),
        "{out}"
    );
    let csv = dir.join("bank.csv");
    std::fs::write(&csv, "day,base,quote,rate\n2026-11-20,USD,CAD,1.4000\n").unwrap();
    let (ok, out) = trackctl(&db, &["fx", "import", "--file", csv.to_str().unwrap()]);
    assert!(ok, "{out}");

    // A bad file imports nothing and names its line.
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "day,base,quote,rate\n2026-11-23,USD,CAD,1.39\n2026-11-23,USD,GBP,-0.8\n",
    )
    .unwrap();
    let (ok, out) = trackctl(&db, &["fx", "import", "--file", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("line 3: rate -0.8 is not positive"), "{out}");
    assert!(out.contains("nothing imported"), "{out}");

    let got = daily(&ch).await;
    let s = |v: String| Some(v);
    let expected = vec![
        row(
            "2026-11-19",
            "gbp19",
            "GBP",
            s(convert("3.00", "1.0400", "0.8300")),
            0,
            Some("2026-11-19"),
        ),
        row("2026-11-19", "jpy", "JPY", None, 1, None),
        row(
            "2026-11-20",
            "cad",
            "CAD",
            s(convert("14.00", "1", "1.4000")),
            0,
            Some("2026-11-20"),
        ),
        row(
            "2026-11-20",
            "eur",
            "EUR",
            s(convert("15.00", "1.0500", "1")),
            0,
            Some("2026-11-20"),
        ),
        row("2026-11-20", "usd", "USD", s("7".into()), 0, None),
        row(
            "2026-11-21",
            "gbp",
            "GBP",
            s(convert("10.00", "1.0500", "0.8400")),
            0,
            Some("2026-11-20"),
        ),
        row(
            "2026-11-23",
            "gbp",
            "GBP",
            s(convert("-4.00", "1.0500", "0.8400")),
            0,
            Some("2026-11-20"),
        ),
        row("2026-11-28", "late", "EUR", None, 1, None),
    ];
    assert_eq!(got, expected);
    // By hand as well: 3 × 1.04 / 0.83 = 3.7590361445…, 14 / 1.4 = 10, 10 × 1.05 / 0.84 = 12.5.
    assert_eq!(expected[0].3.as_deref(), Some("3.759036"));
    assert_eq!(expected[2].3.as_deref(), Some("10"));
    assert_eq!(expected[5].3.as_deref(), Some("12.5"));

    // Payout and EPC convert the same way; the row of Saturday's pounds has no clicks.
    let eur = daily_where(&ch, "offer_id IN ('eur', 'gbp') AND day <= '2026-11-21'").await;
    let payouts: Vec<_> = eur
        .iter()
        .map(|r| {
            (
                r.offer_id.as_str(),
                r.payout_rc
                    .as_deref()
                    .map(|v| dec(v).normalize().to_string()),
                r.epc_rc.clone(),
            )
        })
        .collect();
    assert_eq!(
        payouts,
        vec![
            ("eur", Some(convert("8.00", "1.0500", "1")), None),
            ("gbp", Some(convert("3.00", "1.0500", "0.8400")), None),
        ]
    );
    assert_eq!(eur[0].net_revenue, "15");

    // The sum over rows, with what it could not convert beside it.
    #[derive(Debug, Row, Deserialize)]
    struct Total {
        net: Option<String>,
        missing: u64,
    }
    let total: Total = ch
        .query("SELECT toString(sum(net_revenue_rc)) AS net, sum(missing_rate) AS missing FROM daily_stats")
        .fetch_one()
        .await
        .unwrap();
    let by_hand: Decimal = expected
        .iter()
        .filter_map(|r| r.3.as_deref())
        .map(dec)
        .sum();
    assert_eq!(total.net.as_deref().map(dec), Some(by_hand));
    assert_eq!(total.missing, 2);

    // Cohorts convert at the sale day's rate: Saturday's pounds net of Monday's refund.
    let cohorts: Vec<Cohort> = ch
        .query(
            "SELECT toString(sale_day) AS sale_day, offer_id, currency, \
             toString(net_revenue_rc) AS net_revenue_rc, missing_rate, \
             toString(fx_rate_day) AS fx_rate_day FROM cohort_stats ORDER BY sale_day, offer_id",
        )
        .fetch_all()
        .await
        .unwrap();
    let got: Vec<_> = cohorts
        .iter()
        .map(|c| {
            (
                c.sale_day.as_str(),
                c.offer_id.as_str(),
                c.currency.as_str(),
                c.net_revenue_rc
                    .as_deref()
                    .map(|v| dec(v).normalize().to_string()),
                c.missing_rate,
                c.fx_rate_day.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "2026-11-19",
                "gbp19",
                "GBP",
                Some(convert("3.00", "1.0400", "0.8300")),
                0,
                Some("2026-11-19")
            ),
            ("2026-11-19", "jpy", "JPY", None, 1, None),
            (
                "2026-11-20",
                "cad",
                "CAD",
                Some(convert("14.00", "1", "1.4000")),
                0,
                Some("2026-11-20")
            ),
            (
                "2026-11-20",
                "eur",
                "EUR",
                Some(convert("15.00", "1.0500", "1")),
                0,
                Some("2026-11-20")
            ),
            ("2026-11-20", "usd", "USD", Some("7".into()), 0, None),
            (
                "2026-11-21",
                "gbp",
                "GBP",
                Some(convert("6.00", "1.0500", "0.8400")),
                0,
                Some("2026-11-20")
            ),
            ("2026-11-28", "late", "EUR", None, 1, None),
        ]
    );

    // Importing a day and pair again replaces its rate, at once.
    std::fs::write(&csv, "day,base,quote,rate\n2026-11-20,USD,CAD,1.2500\n").unwrap();
    let (ok, out) = trackctl(&db, &["fx", "import", "--file", csv.to_str().unwrap()]);
    assert!(ok, "{out}");
    let got = daily(&ch).await;
    let cad = got.iter().find(|r| r.1 == "cad").unwrap();
    assert_eq!(cad.3, Some(convert("14.00", "1", "1.2500")));
    assert_eq!(cad.3.as_deref(), Some("11.2"));

    // A sink started with another reporting currency changes every report: euros now need
    // no rate, dollars convert through the inverse of EUR/USD.
    let mut sink = ServiceProcess::sink(&topics, &db, &["--reporting-currency=EUR"]);
    sink.wait_ready(Duration::from_secs(60));
    sink.terminate();
    let rows = daily_where(&ch, "offer_id IN ('eur', 'usd')").await;
    let got: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.offer_id.as_str(),
                r.reporting_currency.as_deref(),
                r.net_revenue_rc
                    .as_deref()
                    .map(|v| dec(v).normalize().to_string()),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("eur", Some("EUR"), Some("15".into())),
            ("usd", Some("EUR"), Some(convert("7.00", "1", "1.0500"))),
        ]
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_sink_refuses_a_reporting_currency_that_is_not_iso_4217() {
    let out = std::process::Command::new(tests::service::workspace_bin("sink"))
        .args(["--reporting-currency=usd", "--migrate-only"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'usd' for '--reporting-currency <REPORTING_CURRENCY>'")
            && err.contains("three-letter upper-case ISO-4217"),
        "{err}"
    );
}
