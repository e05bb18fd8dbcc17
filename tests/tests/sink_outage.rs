//! ClickHouse goes down for more than 30 s under the sink while entries keep arriving: the
//! sink stops consuming, retries, reports not-ready, and when ClickHouse is back every entry
//! arrives exactly once. Its own test binary, because it stops the shared ClickHouse.

use std::time::{Duration, Instant};

use tests::processor::ProcessorTopics;
use tests::service::ServiceProcess;
use tests::sink::{clickhouse, count, database, stream_entries, wait_rows};
use tests::stack;

#[tokio::test(flavor = "multi_thread")]
async fn a_clickhouse_outage_delays_rows_but_loses_and_doubles_none() {
    let topics = ProcessorTopics::create("sink-outage").await;
    let db = database("sink_outage");
    let n = 12_000u64;
    let feeder = stream_entries(&topics.ledger, "outage", n as usize, 50);
    let mut sink = ServiceProcess::sink(&topics, &db, &["--retry-max-ms", "2000"]);
    sink.wait_ready(Duration::from_secs(60));
    let ch = clickhouse(&db);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = count(&ch, "ledger").await.unwrap();
    assert!(before > 0 && before < n, "{before} rows before the outage");

    tokio::task::spawn_blocking(|| stack("down", "clickhouse"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let metrics = sink.get("/metrics").unwrap_or_default();
    assert!(
        metrics.contains("sink_clickhouse_up 0"),
        "the outage shows in the metrics"
    );
    let ledger_lag = |metrics: &str| -> Option<f64> {
        let lag = tests::metric_values(
            metrics,
            "sink_consumer_lag",
            &format!("topic=\"{}\"", topics.ledger),
        );
        (!lag.is_empty()).then(|| lag.iter().sum())
    };
    assert!(
        sink.get("/readyz")
            .is_some_and(|a| a.starts_with("HTTP/1.0 503")),
        "not ready while ClickHouse is down"
    );
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert!(sink.is_running(), "the sink waits out the outage");
    tokio::task::spawn_blocking(|| stack("up", "clickhouse"))
        .await
        .unwrap();

    tokio::task::spawn_blocking(move || feeder.join().unwrap())
        .await
        .unwrap();
    wait_rows(&ch, "ledger", n, Duration::from_secs(120)).await;
    sink.wait_ready(Duration::from_secs(30));
    // Caught up: the lag reads 0 again within a statistics interval or two.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lag = ledger_lag(&sink.get("/metrics").unwrap_or_default());
        if lag == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lag never came back to 0: {lag:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sink.terminate();
    let distinct: u64 = ch
        .query("SELECT uniqExact(event_id) FROM ledger")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(distinct, n);
}
