//! `trackctl gate` against the real ClickHouse: a crafted ledger, postback history and recon
//! results with one offer exactly at every threshold and one just beyond each, read by the
//! real binary; its table, JSON and exit code.

use serde_json::Value;
use tests::clickhouse_url;
use tests::sink::{database, trackctl};

/// `unique` events of `offer` received two days ago, `duplicates` of them loaded twice; the
/// first is a refund that took `sync_s` seconds to reach us, the second waited `queue_s`
/// seconds before the ledger counted it; `postbacks` of them were routed, `delivered`
/// delivered.
struct Traffic {
    offer: &'static str,
    unique: u64,
    duplicates: u64,
    sync_s: u64,
    queue_s: u64,
    postbacks: u64,
    delivered: u64,
}

async fn load(root: &clickhouse::Client, db: &str, t: &Traffic) {
    let offer = t.offer;
    let rows = |numbers: u64, offset: u64| {
        format!(
            "INSERT INTO {db}.ledger (event_id, event_name, conversion_key, offer_id, signed_revenue,
                 currency, occurred_at, received_at, recorded_at, is_test, status_only,
                 kafka_partition, kafka_offset)
             SELECT concat('{offer}-', toString(number)), if(number = 0, 'REFUND', 'SALE'),
                    concat('first_party/order/{offer}-', toString(number)), '{offer}', 1, 'USD',
                    received - toIntervalSecond(if(number = 0, {sync}, 0)),
                    received,
                    received + toIntervalSecond(if(number = 1, {queue}, 0)),
                    false, false, 0, {offset} + number
             FROM (SELECT number, now64(3) - INTERVAL 2 DAY AS received FROM numbers({numbers}))",
            sync = t.sync_s,
            queue = t.queue_s,
        )
    };
    root.query(&rows(t.unique, 0)).execute().await.unwrap();
    if t.duplicates > 0 {
        root.query(&rows(t.duplicates, t.unique))
            .execute()
            .await
            .unwrap();
    }
    let attempts = format!(
        "INSERT INTO {db}.postback_attempts (destination, idempotency_key, event_name, offer_id,
             is_test, attempt, outcome, dead_lettered, latency_ms, attempted_at, kafka_partition,
             kafka_offset)
         SELECT 'webhook', concat('{offer}-', toString(number)), 'SALE', '{offer}', false, 1,
                if(number < {delivered}, 'DELIVERED', 'PERMANENT_FAILURE'),
                number >= {delivered}, 10, now64(3) - INTERVAL 2 DAY, 0, number
         FROM numbers({postbacks})",
        delivered = t.delivered,
        postbacks = t.postbacks,
    );
    root.query(&attempts).execute().await.unwrap();
}

async fn recon(root: &clickhouse::Client, db: &str, network: &str, mismatch: f64) {
    root.query(&format!(
        "INSERT INTO {db}.recon_results (run_at, network, shape, report, from_day, to_day,
             compared_lines, mismatched_lines, mismatch_percent, reversals_not_synced)
         VALUES (now64(3), '{network}', '{network}', 'report.csv', today() - 6, today(), 1000,
                 {lines}, {mismatch}, 0)",
        lines = (mismatch * 10.0) as u64,
    ))
    .execute()
    .await
    .unwrap();
}

fn verdicts(json: &Value, scope: &str) -> Vec<(String, String)> {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["scope"] == scope)
        .map(|c| {
            (
                c["kpi"].as_str().unwrap().to_owned(),
                c["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Exactly at every threshold: 97 of 100 postbacks, 1 duplicate in 200 entries (0.5 %), a
/// 60-minute queue, a refund 24 hours late.
const AT: Traffic = Traffic {
    offer: "at",
    unique: 199,
    duplicates: 1,
    sync_s: 24 * 3600,
    queue_s: 3600,
    postbacks: 100,
    delivered: 97,
};

/// Just beyond each: 872 of 900 (96.89 %), 6 in 1000 (0.6 %), 61 minutes, 25 hours.
const BEYOND: Traffic = Traffic {
    offer: "beyond",
    unique: 994,
    duplicates: 6,
    sync_s: 25 * 3600,
    queue_s: 61 * 60,
    postbacks: 900,
    delivered: 872,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_gate_fails_beyond_each_threshold_and_passes_at_it() {
    let root = clickhouse::Client::default().with_url(clickhouse_url());
    let db = database("gate");
    sink::migrations::apply(&root, &db, &sink::topology::Topology::Single)
        .await
        .unwrap();
    load(&root, &db, &AT).await;
    load(&root, &db, &BEYOND).await;
    recon(&root, &db, "clickbank", 2.9).await;
    recon(&root, &db, "digistore24", 3.0).await;

    let json_path = std::env::temp_dir().join(tests::unique_name("gate.json"));
    let (ok, out) = trackctl(&db, &["gate", "--json", json_path.to_str().unwrap()]);
    assert!(!ok, "a failed gate exits non-zero:\n{out}");
    assert!(out.contains("the gate failed: hold the rollout"), "{out}");
    assert!(out.contains("Verdict: FAIL"), "{out}");
    let json: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(json["verdict"], "FAIL");
    let pass = [
        ("postback_success", "PASS"),
        ("duplicate_counted", "PASS"),
        ("queue_recovery", "PASS"),
        ("refund_sync", "PASS"),
    ];
    let fail = pass.map(|(k, _)| (k, "FAIL"));
    assert_eq!(
        verdicts(&json, "offer at / source unattributed"),
        owned(&pass)
    );
    assert_eq!(
        verdicts(&json, "offer beyond / source unattributed"),
        owned(&fail)
    );
    assert_eq!(
        verdicts(&json, "network clickbank"),
        owned(&[("mismatch", "PASS")])
    );
    assert_eq!(
        verdicts(&json, "network digistore24"),
        owned(&[("mismatch", "FAIL")])
    );
    // Over everything: 969 of 1000 postbacks, 7 of 1200 entries: both fail, as do the worst
    // queue, refund and network.
    let all = verdicts(&json, "all");
    assert!(all.iter().all(|(_, v)| v == "FAIL"), "{all:?}");
    let postbacks = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["scope"] == "all" && c["kpi"] == "postback_success")
        .unwrap();
    assert_eq!(postbacks["value"], 96.9);
    assert_eq!(postbacks["detail"], "969 of 1000 postbacks delivered");

    // Without the traffic and network beyond: PASS, and exit 0.
    let db = database("gate_pass");
    sink::migrations::apply(&root, &db, &sink::topology::Topology::Single)
        .await
        .unwrap();
    load(&root, &db, &AT).await;
    recon(&root, &db, "clickbank", 2.9).await;
    let (ok, out) = trackctl(&db, &["gate", "--json", json_path.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("Verdict: PASS (0 of"), "{out}");
    let json: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(json["verdict"], "PASS");
    assert_eq!(json["thresholds"]["min_postback_success_percent"], 97.0);

    // Tighter thresholds fail the same data.
    let (ok, out) = trackctl(&db, &["gate", "--max-queue-recovery-minutes=59"]);
    assert!(!ok, "{out}");
    std::fs::remove_file(&json_path).ok();
}
