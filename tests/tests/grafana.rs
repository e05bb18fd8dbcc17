//! The Grafana dashboards of docker/grafana: well-formed, every panel on a provisioned data
//! source, and every SQL panel's query executed against the real ClickHouse, over a ledger
//! loaded through the real processor and sink. (The pipeline dashboard's PromQL is evaluated
//! by the real Prometheus in prometheus.rs.)

use std::collections::BTreeSet;
use std::path::Path;
use std::str::FromStr;

use chrono::Utc;
use rust_decimal::Decimal;
use schemas::{EventName, TrackingEvent, FIRST_PARTY};
use serde_json::Value;
use tests::sink::load_through_pipeline;

fn grafana(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docker/grafana")
            .join(path),
    )
    .unwrap()
}

fn dashboard(name: &str) -> Value {
    serde_json::from_str(&grafana(&format!("dashboards/{name}.json"))).unwrap()
}

/// Every query of a dashboard: (panel title, data source uid, query).
fn queries(d: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for panel in d["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let query = target["rawSql"]
                .as_str()
                .or(target["expr"].as_str())
                .unwrap_or_else(|| panic!("{}: a target without a query", panel["title"]));
            out.push((
                panel["title"].as_str().unwrap().to_owned(),
                target["datasource"]["uid"].as_str().unwrap().to_owned(),
                query.to_owned(),
            ));
        }
    }
    out
}

#[test]
fn the_dashboards_are_well_formed_and_on_provisioned_sources() {
    let sources = grafana("provisioning/datasources/trackledger.yml");
    for (name, source) in [
        ("business", "trackledger-clickhouse"),
        ("pipeline", "trackledger-prometheus"),
    ] {
        assert!(
            sources.contains(&format!("uid: {source}")),
            "{source} is not provisioned"
        );
        let d = dashboard(name);
        assert_eq!(d["uid"], format!("trackledger-{name}"));
        let panels = d["panels"].as_array().unwrap();
        let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
        assert_eq!(ids.len(), panels.len(), "{name}: panel ids repeat");
        for p in panels {
            for key in ["x", "y", "w", "h"] {
                assert!(
                    p["gridPos"][key].is_u64(),
                    "{name}: {} lacks gridPos.{key}",
                    p["title"]
                );
            }
        }
        for (title, uid, _) in queries(&d) {
            assert_eq!(uid, source, "{name}: {title}");
        }
    }
    assert!(
        grafana("provisioning/dashboards/trackledger.yml").contains("/var/lib/grafana/dashboards")
    );
}

fn event(id: &str, name: EventName, amount: Option<&str>) -> TrackingEvent {
    let at = Utc::now() - chrono::Duration::hours(2);
    let mut e = TrackingEvent::new(id, name, at, at, FIRST_PARTY, "/v1/events");
    e.click_id = Some("g-click".into());
    e.offer_id = Some("keto".into());
    e.source = Some("fb".into());
    if name != EventName::Click {
        e.order_id = Some("g-order".into());
        e.revenue = amount.map(|a| Decimal::from_str(a).unwrap());
        e.currency = Some("USD".into());
    }
    e
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sql_panel_runs_against_clickhouse() {
    let events = [
        event("g-click-1", EventName::Click, None),
        event("g-sale", EventName::Sale, Some("40.00")),
        event("g-refund", EventName::Refund, Some("10.00")),
    ];
    let (_, _, ch) = load_through_pipeline("grafana", &events, 3, &[]).await;
    ch.query(
        "INSERT INTO recon_results (run_at, network, shape, report, from_day, to_day,
             compared_lines, mismatched_lines, mismatch_percent, reversals_not_synced)
         VALUES (now64(3), 'clickbank', 'clickbank', 'r.csv', today() - 7, today(), 10, 0, 0, 0)",
    )
    .execute()
    .await
    .unwrap();
    let business = dashboard("business");
    let sql = queries(&business);
    assert_eq!(sql.len(), 8);
    for (title, _, query) in sql {
        // The ClickHouse plugin's macros, as it expands them for the last 30 days.
        let query = query
            .replace("$__fromTime", "toDateTime(now() - INTERVAL 30 DAY)")
            .replace("$__toTime", "now()");
        assert!(!query.contains("$__"), "{title}: a macro left: {query}");
        let rows: Vec<String> = ch
            .query(&format!("SELECT toString(tuple(*)) FROM ({query})"))
            .fetch_all()
            .await
            .unwrap_or_else(|e| panic!("{title}: {e}\n{query}"));
        // Every panel but postback health (no postbacks here) shows this ledger.
        if title != "Postback health" {
            assert!(!rows.is_empty(), "{title} shows nothing:\n{query}");
        }
        if title == "Net revenue by day and currency" {
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert!(rows[0].ends_with(",'USD',30)"), "{rows:?}");
        }
    }
}
