//! `trackctl recon` against the real ClickHouse: a ledger and a crafted ClickBank report
//! whose discrepancies are labelled by hand, so that the expected figures come from the
//! labels, not from the comparison under test. The HTML report is rendered in headless
//! Chromium.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use tests::clickhouse_url;
use tests::sink::database;
use trackctl::recon::{self, ReconArgs};
use trackctl::warehouse::Warehouse;

/// One transaction, as the ledger and the report have it, and what recon must call it.
struct Case {
    order: &'static str,
    /// (type in the ledger, payout, occurred_at, received_at)
    ledger: Option<(&'static str, &'static str, &'static str, &'static str)>,
    /// (ClickBank transaction type, account amount, transaction date)
    report: Option<(&'static str, &'static str, &'static str)>,
    expect: &'static str,
}

const fn case(
    order: &'static str,
    ledger: Option<(&'static str, &'static str, &'static str, &'static str)>,
    report: Option<(&'static str, &'static str, &'static str)>,
    expect: &'static str,
) -> Case {
    Case {
        order,
        ledger,
        report,
        expect,
    }
}

const D20: &str = "2026-11-20 10:00:00";
const D21: &str = "2026-11-21 10:00:00";
const D22: &str = "2026-11-22 10:00:00";

const CASES: &[Case] = &[
    case(
        "CB1",
        Some(("SALE", "30", D20, D20)),
        Some(("SALE", "30.00", D20)),
        "matched",
    ),
    case(
        "CB2",
        Some(("SALE", "45.5", D20, D20)),
        Some(("SALE", "45.50", D20)),
        "matched",
    ),
    case(
        "CB3",
        Some(("SALE", "20", D20, D20)),
        Some(("SALE", "20.00", D20)),
        "matched",
    ),
    case(
        "CB4",
        Some(("SALE", "25", D21, D21)),
        Some(("SALE", "25.00", D21)),
        "matched",
    ),
    case(
        "CB4-B001",
        Some(("SALE", "25", D22, D22)),
        Some(("BILL", "25.00", D22)),
        "matched",
    ),
    case(
        "CB5",
        Some(("SALE", "15", D21, D21)),
        Some(("SALE", "31.00", D21)),
        "amount_differs",
    ),
    case(
        "CB6",
        Some(("SALE", "60", D21, D21)),
        Some(("SALE", "60.00", D21)),
        "matched",
    ),
    case(
        "CB7",
        Some(("SALE", "12", D22, D22)),
        None,
        "missing_in_report",
    ),
    case(
        "CB8",
        Some(("SALE", "80", D22, D22)),
        Some(("SALE", "80.00", D22)),
        "matched",
    ),
    case(
        "CB50",
        None,
        Some(("SALE", "99.00", D22)),
        "missing_in_ledger",
    ),
    // Reversals: synced after 6 h, 2 h and 24 h; one never synced; one of the wrong kind.
    case(
        "CB1",
        Some(("REFUND", "30", D21, "2026-11-21 16:00:00")),
        Some(("RFND", "-30.00", D21)),
        "matched",
    ),
    case(
        "CB2",
        Some((
            "REFUND",
            "45.5",
            "2026-11-22 00:00:00",
            "2026-11-22 02:00:00",
        )),
        Some(("RFND", "-45.50", "2026-11-22 00:00:00")),
        "matched",
    ),
    case(
        "CB3",
        Some((
            "CHARGEBACK",
            "20",
            "2026-11-22 12:00:00",
            "2026-11-23 12:00:00",
        )),
        Some(("RFND", "-20.00", "2026-11-22 12:00:00")),
        "status_differs",
    ),
    case(
        "CB6",
        None,
        Some(("RFND", "-60.00", D22)),
        "missing_in_ledger",
    ),
];

fn ledger_insert(db: &str) -> String {
    let mut values = Vec::new();
    for (i, c) in CASES.iter().enumerate() {
        let Some((name, payout, occurred, received)) = c.ledger else {
            continue;
        };
        let (order, seq) = match c.order.split_once("-B") {
            Some((o, s)) => (o, s.parse::<i32>().unwrap().to_string()),
            None => (c.order, "NULL".to_owned()),
        };
        let sign = if name == "SALE" { "" } else { "-" };
        values.push(format!(
            "('cb-{i}', '{name}', 'clickbank/order/{order}', 'clickbank', '{order}', {seq}, {payout}, {payout}, {sign}{payout}, {sign}{payout}, 'USD', '{occurred}', '{received}', '{received}', false, false, 0, {i})"
        ));
    }
    // Left out by recon: a test sale, another network, and a day outside the range.
    values.push("('t-1', 'SALE', 'clickbank/order/T1', 'clickbank', 'T1', NULL, 5, 5, 5, 5, 'USD', '2026-11-21 10:00:00', '2026-11-21 10:00:00', '2026-11-21 10:00:00', true, false, 1, 0)".into());
    values.push("('d-1', 'SALE', 'digistore24/order/D1', 'digistore24', 'D1', 1, 5, 5, 5, 5, 'USD', '2026-11-21 10:00:00', '2026-11-21 10:00:00', '2026-11-21 10:00:00', false, false, 1, 1)".into());
    values.push("('o-1', 'SALE', 'clickbank/order/O1', 'clickbank', 'O1', NULL, 5, 5, 5, 5, 'USD', '2026-11-25 10:00:00', '2026-11-25 10:00:00', '2026-11-25 10:00:00', false, false, 1, 2)".into());
    format!(
        "INSERT INTO {db}.ledger (event_id, event_name, conversion_key, network, order_id, rebill_sequence, payout, revenue, signed_payout, signed_revenue, currency, occurred_at, received_at, recorded_at, is_test, status_only, kafka_partition, kafka_offset) VALUES {}",
        values.join(", ")
    )
}

fn report_csv() -> String {
    let mut csv = String::from(
        "Transaction Date,Receipt,Transaction Type,Item,Affiliate,Account Amount,Currency\n",
    );
    for c in CASES {
        if let Some((kind, amount, date)) = c.report {
            csv += &format!("{date},{},{kind},keto-vsl,aff12,{amount},USD\n", c.order);
        }
    }
    // Not compared: a cancellation, a line before the range, and one that cannot be read.
    csv += "2026-11-22 11:00:00,CB4,CANCEL-REBILL,keto-vsl,aff12,0.00,USD\n";
    csv += "2026-11-19 09:00:00,CB0,SALE,keto-vsl,aff12,10.00,USD\n";
    csv += "not a date,CB9,SALE,keto-vsl,aff12,10.00,USD\n";
    csv
}

async fn exec(sql: &str) {
    clickhouse::Client::default()
        .with_url(clickhouse_url())
        .query(sql)
        .execute()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_crafted_report_gives_the_labelled_discrepancies_and_kpis() {
    let db = database("recon");
    let client = clickhouse::Client::default().with_url(clickhouse_url());
    sink::migrations::apply(&client, &db, &sink::topology::Topology::Single)
        .await
        .unwrap();
    exec(&ledger_insert(&db)).await;
    // One network retry absorbed, and ten postbacks of which nine were delivered.
    exec(&format!("INSERT INTO {db}.receipts (event_id, conversion_key, kind, event_name, occurrence, route, received_at, first_received_at, recorded_at, kafka_partition, kafka_offset) VALUES ('cb-0', 'clickbank/order/CB1', 'DUPLICATE', 'SALE', 2, '/v1/postbacks/clickbank', '{D20}', '{D20}', '{D20}', 0, 0)")).await;
    let mut attempts = Vec::new();
    for i in 0..10 {
        let outcome = if i == 9 { "FAILED" } else { "DELIVERED" };
        attempts.push(format!(
            "('tracker', 'key-{i}', 'SALE', '{outcome}', '{D21}', 0, {i})"
        ));
    }
    exec(&format!("INSERT INTO {db}.postback_attempts (destination, idempotency_key, event_name, outcome, attempted_at, kafka_partition, kafka_offset) VALUES {}", attempts.join(", "))).await;

    let dir = std::env::temp_dir().join(&db);
    std::fs::create_dir_all(&dir).unwrap();
    let report = dir.join("clickbank.csv");
    std::fs::write(&report, report_csv()).unwrap();
    let args = ReconArgs {
        report,
        shape: "clickbank".into(),
        config: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/recon.toml")),
        from: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        to: NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(),
        tolerance: "0.01".parse().unwrap(),
        out_dir: dir.clone(),
    };
    let warehouse = Warehouse {
        clickhouse: telemetry::clickhouse::ClickHouseConnection::new(clickhouse_url()),
        database: db.clone(),
    };
    let r = recon::run(&args, &warehouse).await.unwrap();
    println!("{}", recon::render::table(&r));

    // The oracle: the hand labels.
    let mut expected: BTreeMap<&str, usize> = BTreeMap::new();
    for c in CASES {
        *expected.entry(c.expect).or_default() += 1;
    }
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &r.comparison.findings {
        *got.entry(f.category.as_str()).or_default() += 1;
    }
    assert_eq!(got, expected);
    let total = CASES.len() as f64;
    let mismatched = CASES.iter().filter(|c| c.expect != "matched").count() as f64;
    assert!((r.kpis.mismatch_percent - 100.0 * mismatched / total).abs() < 1e-9);
    assert_eq!(r.kpis.duplicate_counted_percent, 0.0);
    assert_eq!(r.kpis.duplicates_absorbed, 1);
    assert_eq!(r.kpis.postback_success_percent, Some(90.0));
    assert_eq!(r.kpis.refund_sync_lag_hours, Some((6.0, 24.0)));
    assert_eq!(r.kpis.reversals_not_synced, 1);
    assert_eq!(r.report_lines_outside_range, 1);
    assert_eq!(r.skipped.get("CANCEL-REBILL"), Some(&1));
    assert_eq!(r.unreadable.len(), 1);

    // The result is kept for `trackctl gate`, figures as computed by hand above.
    let ch = clickhouse::Client::default()
        .with_url(clickhouse_url())
        .with_database(&db);
    let stored: (String, String, String, u64, u64, f64, u64, Option<f64>) = ch
        .query(
            "SELECT network, toString(from_day), toString(to_day), compared_lines, \
             mismatched_lines, mismatch_percent, reversals_not_synced, refund_sync_lag_max_hours \
             FROM recon_results",
        )
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        (stored.0.as_str(), stored.1.as_str(), stored.2.as_str()),
        ("clickbank", "2026-11-20", "2026-11-22")
    );
    assert_eq!(stored.3, CASES.len() as u64);
    assert_eq!(stored.4, mismatched as u64);
    assert!((stored.5 - 100.0 * mismatched / total).abs() < 1e-9);
    assert_eq!((stored.6, stored.7), (1, Some(24.0)));

    // The files: a CSV line per compared line, and a self-contained HTML page.
    let (csv_path, html_path) = recon::write_reports(&r, &args.out_dir).unwrap();
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    assert_eq!(csv.lines().count(), 1 + CASES.len());
    assert_eq!(
        csv.lines()
            .filter(|l| l.starts_with("missing_in_ledger,CB50,"))
            .count(),
        1
    );
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(html.contains("<svg") && html.contains("11-20") && html.contains("11-22"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "the page fetches nothing"
    );

    // Rendered by a real browser: headless Chromium (CI installs it).
    tests::screenshot(
        html_path.to_str().unwrap(),
        "1100,1300",
        "RECON_SCREENSHOT_OUT",
    );
}
