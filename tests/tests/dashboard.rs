//! `trackctl dashboard`, the real binary, over a ledger loaded through the real processor and
//! sink: its token, its numbers (worked out by hand from the events), escaping, and the page
//! as headless Chromium renders it.

use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::Utc;
use rust_decimal::Decimal;
use schemas::{EventName, TrackingEvent, FIRST_PARTY};
use tests::clickhouse_url;
use tests::service::workspace_bin;
use tests::sink::load_through_pipeline;

const TOKEN: &str = "dashboard-token-0123456789";

fn click(id: &str, offer: &str, source: &str) -> TrackingEvent {
    let at = Utc::now() - chrono::Duration::hours(1);
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
    e.source = Some(source.into());
    e
}

/// An event with money on `offer` (keto in dollars, course in euros), naming `click`.
fn money(
    name: EventName,
    id: &str,
    order: &str,
    click: &str,
    amount: Option<&str>,
    currency: &str,
) -> TrackingEvent {
    let at = Utc::now() - chrono::Duration::minutes(30);
    let mut e = TrackingEvent::new(id, name, at, at, FIRST_PARTY, "/v1/events");
    e.order_id = Some(order.into());
    e.offer_id = Some(if currency == "USD" { "keto" } else { "course" }.into());
    e.click_id = Some(click.into());
    e.revenue = amount.map(|a| Decimal::from_str(a).unwrap());
    e.currency = Some(currency.into());
    e
}

struct Dashboard {
    child: Child,
    url: String,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(db: &str) -> Dashboard {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(workspace_bin("trackctl"))
        .arg(format!("--clickhouse-url={}", clickhouse_url()))
        .arg(format!("--database={db}"))
        .args(["dashboard", "--listen", &format!("127.0.0.1:{port}")])
        .env("TRACKCTL_DASHBOARD_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{url}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "the dashboard did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Dashboard { child, url }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_ledger_behind_its_token() {
    let events = vec![
        click("k1", "keto", "fb"),
        click("k2", "keto", "fb"),
        {
            // A crawler's click: counted, and left out of EPC.
            let mut bot = click("k4", "keto", "fb");
            bot.quality_flags = vec![schemas::quality::BOT_USER_AGENT.into()];
            bot
        },
        click("k3", "course", "<script>alert(1)</script>"),
        money(EventName::Sale, "s1", "o1", "k1", Some("40.00"), "USD"),
        money(EventName::Sale, "s2", "o2", "k2", Some("20.00"), "USD"),
        money(EventName::Refund, "r2", "o2", "k2", Some("5.00"), "USD"),
        money(EventName::Sale, "s3", "o3", "k3", Some("30.00"), "EUR"),
        money(EventName::Chargeback, "c3", "o3", "k3", None, "EUR"),
    ];
    let (_, db, ch) = load_through_pipeline("dashboard", &events, events.len() as u64, &[]).await;
    // Three postbacks to a webhook: one delivered, one after a retry, one dead-lettered.
    ch.query(
        "INSERT INTO postback_attempts (destination, idempotency_key, event_name, offer_id, is_test,
             attempt, outcome, dead_lettered, latency_ms, attempted_at, kafka_partition, kafka_offset)
         VALUES ('webhook', 's1', 'SALE', 'keto', false, 1, 'DELIVERED', false, 20, now64(3), 0, 0),
                ('webhook', 's2', 'SALE', 'keto', false, 1, 'TRANSIENT_FAILURE', false, 900, now64(3), 0, 1),
                ('webhook', 's2', 'SALE', 'keto', false, 2, 'DELIVERED', false, 30, now64(3), 0, 2),
                ('webhook', 's3', 'SALE', 'course', false, 1, 'PERMANENT_FAILURE', true, 40, now64(3), 0, 3)",
    )
    .execute()
    .await
    .unwrap();

    let dashboard = start(&db).await;
    let client = reqwest::Client::new();
    // Without the token, or with another one: the same refusal.
    let none = client.get(&dashboard.url).send().await.unwrap();
    let wrong = client
        .get(&dashboard.url)
        .bearer_auth("dashboard-token-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(wrong.status(), 401);
    assert_eq!(none.text().await.unwrap(), wrong.text().await.unwrap());

    let page = client
        .get(&dashboard.url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    // By hand: dollars 40 + 20 - 5 = 55 net; euros 30 - 30 = 0.
    assert!(html.contains("<h3>USD: 55.00 net</h3>"), "{html}");
    assert!(html.contains("<h3>EUR: 0.00 net</h3>"), "{html}");
    // fb: 3 clicks, 1 of them suspect, 55 dollars, EPC 55 / 2 = 27.5; the EUR source 1
    // click, 0 net.
    assert!(
        html.contains("<tr><td>fb</td><td>USD</td><td class=num>3</td><td class=num>1</td><td class=num>55</td><td class=num>27.5</td></tr>"),
        "{html}"
    );
    // A source's name is shown, never run.
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    // keto: 2 sales, 1 refund (rate 0.5), 5 reversed; course: 1 sale charged back, 30.
    assert!(
        html.contains("<tr><td>keto</td><td>USD</td><td class=num>2</td><td class=num>1</td><td class=num>0</td><td class=num>0.5</td><td class=num>0</td><td class=num>5</td></tr>"),
        "{html}"
    );
    assert!(
        html.contains("<tr><td>course</td><td>EUR</td><td class=num>1</td><td class=num>0</td><td class=num>1</td><td class=num>0</td><td class=num>1</td><td class=num>30</td></tr>"),
        "{html}"
    );
    // The webhook: 3 postbacks, 2 delivered, 1 dead-lettered.
    assert!(
        html.contains(
            "<tr><td>webhook</td><td class=num>3</td><td class=num>2</td><td class=num>0.6667</td>"
        ),
        "{html}"
    );
    // No exchange rates: the euro entries are left out of the reporting currency, and said so.
    assert!(
        html.contains("All currencies in USD (2 entries without an exchange rate are left out"),
        "{html}"
    );
    // The gate: no recon yet, so it fails.
    assert!(
        html.contains("Verdict: <span class=FAIL>FAIL</span>"),
        "{html}"
    );
    // ?token= works as well.
    let by_query = client
        .get(format!("{}/?token={TOKEN}", dashboard.url))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);

    // In a real browser: the DOM holds the same numbers, and a screenshot is not blank.
    let browser = ["chromium-headless-shell", "chromium"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("headless Chromium: apt-get install chromium-headless-shell");
    let url = format!("{}/?token={TOKEN}", dashboard.url);
    let dom = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            &url,
        ])
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("USD: 55.00 net"), "{dom}");
    assert!(dom.contains("<rect"), "the charts are drawn: {dom}");
    assert!(!dom.contains("NaN"), "every bar has a size: {dom}");
    tests::screenshot(&url, "1100,1750", "DASHBOARD_SCREENSHOT_OUT");
}
