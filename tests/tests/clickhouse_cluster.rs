//! The sink's ClickHouse cluster topology (`--clickhouse-cluster`), validated against the
//! stack's server configured as a one-replica cluster (`trackledger`, with `{shard}` and
//! `{replica}` macros; scripts/clickhouse/config.xml.template).
//!
//! The local engine (clickhouse-local from chdb) cannot run what a real cluster runs: it
//! refuses `ON CLUSTER` ("Replicated DDL queries are disabled"), opens no interserver port,
//! and its replicated tables never leave read-only mode even with a real ZooKeeper. So this
//! proves what one node can: every statement of the cluster plan is valid ClickHouse SQL,
//! the cluster and macros are checked, and the sink's reads that go through the cluster
//! (running inserts on every replica, Distributed twins, sequentially consistent offsets)
//! run against the real engine. docs/DEPLOYMENT.md lists what remains untested.

use std::collections::HashMap;

use sink::migrations;
use sink::rows::{KafkaPosition, NativeRows, QuarantineRow};
use sink::topology::Topology;
use tests::clickhouse_url;
use tests::sink::{clickhouse, database};

const CLUSTER: &str = "trackledger";

fn root() -> clickhouse::Client {
    clickhouse::Client::default().with_url(clickhouse_url())
}

#[tokio::test]
async fn every_statement_of_the_cluster_plan_is_clickhouse_sql() {
    let topology = Topology::from_flag(CLUSTER).unwrap();
    let plan = migrations::plan(&topology, "trackledger").unwrap();
    let mut replicated = 0;
    for statement in &plan {
        // The engine's own parser: a syntax error fails here.
        let formatted: String = root()
            .query("SELECT formatQuery(?)")
            .bind(statement)
            .fetch_one()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{statement}"));
        assert!(formatted.contains("ON CLUSTER trackledger"), "{formatted}");
        if formatted.contains("ENGINE = Replicated") {
            assert!(
                formatted.contains("'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"),
                "{formatted}"
            );
            replicated += 1;
        }
    }
    // schema_migrations and the ten tables of the migrations.
    assert_eq!(replicated, 11);
    let distributed: Vec<&String> = plan.iter().filter(|s| s.contains("Distributed(")).collect();
    assert_eq!(distributed.len(), migrations::tables().len());
}

#[tokio::test]
async fn the_sink_checks_the_cluster_it_is_given() {
    Topology::from_flag(CLUSTER)
        .unwrap()
        .check(&root())
        .await
        .unwrap();
    let err = Topology::from_flag("nowhere")
        .unwrap()
        .check(&root())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ClickHouse defines no cluster \"nowhere\""),
        "{err}"
    );

    // The binary says so before it touches anything, and names the flag for a bad name.
    let sink = |cluster: &str| {
        let out = std::process::Command::new(tests::service::workspace_bin("sink"))
            .arg(format!("--clickhouse-url={}", clickhouse_url()))
            .arg(format!("--database={}", database("cluster_refused")))
            .arg(format!("--clickhouse-cluster={cluster}"))
            .arg("--migrate-only")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = sink("nowhere");
    assert!(
        err.contains("ClickHouse defines no cluster \"nowhere\""),
        "{err}"
    );
    let err = sink("a'b");
    assert!(
        err.contains("--clickhouse-cluster (SINK_CLICKHOUSE_CLUSTER)"),
        "{err}"
    );
}

#[tokio::test]
async fn the_sinks_reads_through_the_cluster_see_what_is_stored() {
    let db = database("cluster_reads");
    let topology = Topology::from_flag(CLUSTER).unwrap();
    migrations::apply(&root(), &db, &Topology::Single)
        .await
        .unwrap();
    let client = clickhouse(&db);
    client
        .query(
            "INSERT INTO quarantine (reason, route, method, received_at, fields, body_size, \
             body_truncated, kafka_partition, kafka_offset) VALUES \
             ('bad_json', '/v1/events', 'POST', '2026-11-28 10:00:00', [], 10, false, 0, 41), \
             ('bad_json', '/v1/events', 'POST', '2026-11-28 10:00:01', [], 10, false, 0, 42), \
             ('bad_json', '/v1/events', 'POST', '2026-11-28 10:00:02', [], 10, false, 3, 7)",
        )
        .execute()
        .await
        .unwrap();

    // The settings of the sink's inserts on a cluster are the engine's own.
    let mut insert = client.insert_native("quarantine");
    for (name, value) in topology.insert_settings("auto", "quarantine:1:5@9".into()) {
        insert = insert.with_setting(name, value);
    }
    let at = KafkaPosition {
        partition: 5,
        offset: 9,
    };
    let row = QuarantineRow::unreadable(chrono::Utc::now(), 4, at);
    insert
        .write(&QuarantineRow::block(&[row]).unwrap())
        .await
        .unwrap();
    insert.end().await.unwrap();

    // The stored offsets, read with sequential consistency.
    let stored = sink::loader::stored_offsets(&client, &topology, "quarantine")
        .await
        .unwrap();
    assert_eq!(stored, HashMap::from([(0, 42), (3, 7), (5, 9)]));
    // Running inserts are looked for on every replica (here the one), and none runs.
    sink::loader::await_running_inserts(&client, &topology, "quarantine", &[0, 3].into())
        .await
        .unwrap();

    // The Distributed twins, created as the plan does but without ON CLUSTER, which this
    // engine refuses: they read the tables through the cluster's replica.
    let on_cluster = format!(" ON CLUSTER `{CLUSTER}`");
    for statement in topology.distributed_tables(&db, &migrations::tables(), false) {
        assert!(statement.contains(&on_cluster), "{statement}");
        client
            .query(&statement.replace(&on_cluster, ""))
            .execute()
            .await
            .unwrap_or_else(|e| panic!("{e}\n{statement}"));
    }
    let through: Vec<(i32, i64)> = client
        .query(
            "SELECT kafka_partition, kafka_offset FROM quarantine_all \
             ORDER BY kafka_partition, kafka_offset",
        )
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(through, [(0, 41), (0, 42), (3, 7), (5, 9)]);
    let empty: u64 = client
        .query("SELECT count() FROM ledger_all")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(empty, 0);
}
