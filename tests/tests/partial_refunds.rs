//! Partial refunds and rebills of one order, from ClickBank, Digistore24 and BuyGoods, with
//! the networks' retries interleaved, through ingest's real endpoints, the processor and the
//! sink: each real transaction is counted once, each retry is a duplicate, and ClickHouse
//! holds the money to the cent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ingest::adapters::digistore24::sign;
use rust_decimal::Decimal;
use tests::pipeline::{webhook_destinations, Pipeline};
use tests::secrets;

use tests::post_clickbank as clickbank;

async fn digistore24(
    base: &str,
    event: &str,
    order: &str,
    tx: &str,
    seq: &str,
    brutto: &str,
    affiliate: &str,
) {
    let mut f: BTreeMap<String, String> = [
        ("event", event),
        ("order_id", order),
        ("transaction_id", tx),
        ("pay_sequence_no", seq),
        ("amount_brutto", brutto),
        ("amount_affiliate", affiliate),
        ("currency", "EUR"),
        ("affiliate_name", "aff12"),
        ("product_id", "keto-vsl"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let signature = sign(&f, secrets::DIGISTORE24);
    f.insert("sha_sign".into(), signature);
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/postbacks/digistore24"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&f).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn buygoods(
    base: &str,
    order: &str,
    action: &str,
    at: &str,
    charged: &str,
    commission: &str,
) {
    let url = format!(
        "{base}/v1/postbacks/buygoods?token={}&order_id={order}&action_type={action}&total_amount_charged={charged}&aff_commission={commission}&currency=USD&rr_createdate={at}",
        secrets::BUYGOODS
    );
    let resp = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

async fn s2s(base: &str, event: &str, txid: &str, seq: Option<&str>, amount: &str) {
    let seq = seq.map(|s| format!("&seq={s}")).unwrap_or_default();
    let url = format!(
        "{base}/v1/postbacks/s2s?token={}&click_id=clk-pr&event={event}&txid={txid}{seq}&amount={amount}&currency=CAD",
        secrets::S2S_TOKEN
    );
    let resp = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn partial_refunds_and_rebills_count_once_each_and_retries_never() {
    let destinations = webhook_destinations().await;
    let pipeline = Pipeline::start("partial_refunds", &destinations).await;
    let base = pipeline.ingest.base_url.clone();
    let run = tests::unique_name("PR").to_uppercase().replace('_', "");

    // ClickBank: a sale of 100.00 (40.00 to the account), a rebill, and two partial refunds
    // of the one receipt, each retried, the retries interleaved.
    let cb = format!("CB{}", &run[..12]);
    let rebill = format!("{cb}-B002");
    clickbank(
        &base,
        &cb,
        "SALE",
        "2026-11-10T08:00:00-08:00",
        "100.00",
        "40.00",
    )
    .await;
    clickbank(
        &base,
        &cb,
        "RFND",
        "2026-11-12T09:00:00-08:00",
        "10.00",
        "-4.00",
    )
    .await;
    clickbank(
        &base,
        &rebill,
        "BILL",
        "2026-11-13T08:00:00-08:00",
        "100.00",
        "40.00",
    )
    .await;
    clickbank(
        &base,
        &cb,
        "RFND",
        "2026-11-14T09:00:00-08:00",
        "5.00",
        "-2.00",
    )
    .await;
    clickbank(
        &base,
        &cb,
        "RFND",
        "2026-11-12T09:00:00-08:00",
        "10.00",
        "-4.00",
    )
    .await;
    clickbank(
        &base,
        &rebill,
        "BILL",
        "2026-11-13T08:00:00-08:00",
        "100.00",
        "40.00",
    )
    .await;
    clickbank(
        &base,
        &cb,
        "RFND",
        "2026-11-14T09:00:00-08:00",
        "5.00",
        "-2.00",
    )
    .await;

    // Digistore24: a payment, its rebill (pay_sequence_no 2), two partial refunds, each
    // with its own transaction_id; the first refund and the rebill retried.
    let ds = format!("DS{}", &run[..12]);
    let tx = |n: u32| format!("{ds}-T{n}");
    digistore24(&base, "on_payment", &ds, &tx(1), "1", "59.00", "29.50").await;
    digistore24(&base, "on_payment", &ds, &tx(2), "2", "59.00", "29.50").await;
    digistore24(&base, "on_refund", &ds, &tx(3), "2", "20.00", "10.00").await;
    digistore24(&base, "on_payment", &ds, &tx(2), "2", "59.00", "29.50").await;
    digistore24(&base, "on_refund", &ds, &tx(4), "2", "9.00", "4.50").await;
    digistore24(&base, "on_refund", &ds, &tx(3), "2", "20.00", "10.00").await;

    // BuyGoods: an order, two rebills and a partial refund under the one order_id, told
    // apart by their rr_createdate; a rebill and the refund retried.
    let bg = format!("BG{}", &run[..12]);
    buygoods(
        &base,
        &bg,
        "neworder",
        "2026-11-01+09:00:00",
        "39.00",
        "12.50",
    )
    .await;
    buygoods(
        &base,
        &bg,
        "rebill",
        "2026-11-08+09:00:00",
        "39.00",
        "12.50",
    )
    .await;
    buygoods(&base, &bg, "refund", "2026-11-09+10:00:00", "10.00", "3.00").await;
    buygoods(
        &base,
        &bg,
        "rebill",
        "2026-11-15+09:00:00",
        "39.00",
        "12.50",
    )
    .await;
    buygoods(
        &base,
        &bg,
        "rebill",
        "2026-11-08+09:00:00",
        "39.00",
        "12.50",
    )
    .await;
    buygoods(&base, &bg, "refund", "2026-11-09+10:00:00", "10.00", "3.00").await;

    // S2S: a sale, a rebill (seq 2) and two partial refunds (seq r1, r2) of one txid.
    let txid = format!("S2S{}", &run[..12]);
    s2s(&base, "SALE", &txid, None, "80.00").await;
    s2s(&base, "REFUND", &txid, Some("r1"), "15.00").await;
    s2s(&base, "SALE", &txid, Some("2"), "80.00").await;
    s2s(&base, "REFUND", &txid, Some("r2"), "25.00").await;
    s2s(&base, "REFUND", &txid, Some("r1"), "15.00").await;

    // By hand: ClickBank 100 - 10 + 100 - 5 = 185.00, payouts 40 - 4 + 40 - 2 = 74.00, in
    // 4 entries; Digistore24 59 + 59 - 20 - 9 = 89.00, payouts 29.50 * 2 - 10 - 4.50 = 44.50,
    // 4 entries; BuyGoods 39 * 3 - 10 = 107.00, payouts 12.50 * 3 - 3 = 34.50, 4 entries;
    // S2S 80 - 15 + 80 - 25 = 120.00, no payouts, 4 entries.
    let want = vec![
        (
            "buygoods".to_owned(),
            "USD".to_owned(),
            4,
            "107".to_owned(),
            "34.5".to_owned(),
        ),
        (
            "clickbank".to_owned(),
            "USD".to_owned(),
            4,
            "185".to_owned(),
            "74".to_owned(),
        ),
        (
            "digistore24".to_owned(),
            "EUR".to_owned(),
            4,
            "89".to_owned(),
            "44.5".to_owned(),
        ),
        (
            "s2s".to_owned(),
            "CAD".to_owned(),
            4,
            "120".to_owned(),
            "0".to_owned(),
        ),
    ];
    let ch = pipeline.clickhouse();
    let exact = |s: &str| s.parse::<Decimal>().unwrap().normalize().to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    let got = loop {
        let rows: Vec<(String, String, u64, String, String)> = ch
            .query(
                "SELECT network, ifNull(currency, ''), count(), toString(sum(signed_revenue)), \
                 toString(sum(signed_payout)) FROM ledger GROUP BY network, currency ORDER BY network",
            )
            .fetch_all()
            .await
            .unwrap();
        let rows: Vec<_> = rows
            .into_iter()
            .map(|(n, c, k, r, p)| (n, c, k, exact(&r), exact(&p)))
            .collect();
        let entries: u64 = rows.iter().map(|r| r.2).sum();
        if entries >= 16 || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // Settled: nothing more arrives after a pause.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again: u64 = ch
        .query("SELECT count() FROM ledger")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(got, want);
    assert_eq!(again, 16);

    // Each retry is a duplicate receipt, not an entry: 3 + 2 + 2 + 1.
    let duplicates: u64 = ch
        .query("SELECT count() FROM receipts WHERE kind = 'DUPLICATE'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(duplicates, 8);
    // Every partial refund linked to its order's sale.
    let unlinked: u64 = ch
        .query("SELECT count() FROM ledger WHERE event_name = 'REFUND' AND link_status != 'LINKED'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(unlinked, 0);

    // By sale day: each refund on the day of the sale it reverses, a rebill on its own day.
    // Digistore24 and S2S postbacks carry no usable time: they stand on the day received.
    let today = chrono::Utc::now().date_naive().to_string();
    let cohorts: Vec<(String, String, String, u64, String, String, String)> = ch
        .query(
            "SELECT toString(sale_day), network, currency, sales, toString(gross_revenue), \
             toString(refund_amount), toString(net_revenue) FROM cohort_stats \
             ORDER BY sale_day, network",
        )
        .fetch_all()
        .await
        .unwrap();
    let cohorts: Vec<_> = cohorts
        .into_iter()
        .map(|(d, n, c, k, g, r, net)| (d, n, c, k, exact(&g), exact(&r), exact(&net)))
        .collect();
    let row = |d: &str, n: &str, c: &str, k: u64, g: &str, r: &str, net: &str| {
        (
            d.to_owned(),
            n.to_owned(),
            c.to_owned(),
            k,
            g.to_owned(),
            r.to_owned(),
            net.to_owned(),
        )
    };
    // ClickBank's times are 08:00-08:00 and 09:00-08:00, i.e. 16:00 and 17:00 UTC.
    let want = vec![
        row("2026-11-01", "buygoods", "USD", 1, "39", "10", "29"),
        row("2026-11-08", "buygoods", "USD", 1, "39", "0", "39"),
        row("2026-11-10", "clickbank", "USD", 1, "100", "15", "85"),
        row("2026-11-13", "clickbank", "USD", 1, "100", "0", "100"),
        row("2026-11-15", "buygoods", "USD", 1, "39", "0", "39"),
        row(&today, "digistore24", "EUR", 2, "118", "29", "89"),
        row(&today, "s2s", "CAD", 2, "160", "40", "120"),
    ];
    assert_eq!(cohorts, want);
    pipeline.stop().await;
}
