//! The alert and recording rules of docker/prometheus: their unit tests with `promtool test
//! rules`, then the real Prometheus (Debian's package) scraping the real services with them:
//! every target up, every rule evaluated without error, readiness exported, and an alert going
//! pending when a service stops.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::pipeline::{webhook_destinations, Pipeline};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/prometheus")
}

fn tool(name: &str) -> String {
    let found = Command::new(name).arg("--version").output().is_ok();
    assert!(
        found,
        "{name} is not installed: apt-get install prometheus (.ci/run does)"
    );
    name.to_owned()
}

#[test]
fn every_alert_has_a_unit_test_and_they_pass() {
    let dir = rules_dir();
    for args in [
        vec!["check", "rules", "rules.yml"],
        vec!["test", "rules", "rules.test.yml"],
    ] {
        let out = Command::new(tool("promtool"))
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The compose configuration, with the rules where the container mounts them.
    let compose = std::fs::read_to_string(dir.join("prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/rules.yml",
            &dir.join("rules.yml").display().to_string(),
        );
    let copy = std::env::temp_dir().join(tests::unique_name("prometheus.yml"));
    std::fs::write(&copy, compose).unwrap();
    let out = Command::new(tool("promtool"))
        .args(["check", "config"])
        .arg(&copy)
        .output()
        .unwrap();
    std::fs::remove_file(&copy).ok();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each alert is named in the tests.
    let rules = std::fs::read_to_string(dir.join("rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("rules.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 12, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels"
            )),
            "{alert} has no test in which it fires"
        );
    }
}

struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

impl Prometheus {
    /// The real Prometheus, scraping `targets` (job, address) every second with the rules.
    fn start(targets: &[(&str, String)]) -> Self {
        let dir = std::env::temp_dir().join(tests::unique_name("prometheus"));
        std::fs::create_dir_all(&dir).unwrap();
        let scrape: String = targets
            .iter()
            .map(|(job, addr)| {
                format!("  - job_name: {job}\n    static_configs: [{{ targets: [\"{addr}\"] }}]\n")
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n{scrape}",
            rules_dir().join("rules.yml").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(tool("prometheus"))
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    async fn api(&self, path: &str) -> Option<Value> {
        let resp = reqwest::get(format!("{}{path}", self.url)).await.ok()?;
        let body: Value = resp.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// Polls `path` until `done` holds for its data.
    async fn until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(data) = self.api(path).await {
                if done(&data) {
                    return data;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what}: last answer {data:#}\nlog: {}",
                    std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
                );
            } else {
                assert!(
                    Instant::now() < deadline,
                    "{what}: Prometheus does not answer; log: {}",
                    std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn values_by_job(data: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = data["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["job"].as_str().unwrap_or_default().to_owned(),
                s["value"][1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_services_and_evaluates_every_rule() {
    let pipeline = Pipeline::start("prometheus", &webhook_destinations().await).await;
    let ingest = pipeline
        .ingest
        .base_url
        .trim_start_matches("http://")
        .to_owned();
    let prometheus = Prometheus::start(&[
        ("ingest", ingest),
        ("processor", pipeline.processor.metrics_address()),
        ("sink", pipeline.sink.metrics_address()),
        ("forwarder", pipeline.forwarder.metrics_address()),
    ]);
    let all_up = |d: &Value| {
        values_by_job(d)
            == [
                ("forwarder".to_owned(), "1".to_owned()),
                ("ingest".to_owned(), "1".to_owned()),
                ("processor".to_owned(), "1".to_owned()),
                ("sink".to_owned(), "1".to_owned()),
            ]
    };
    prometheus
        .until("/api/v1/query?query=up", "every service scraped", all_up)
        .await;
    // Readiness, as the services' /readyz say it.
    prometheus
        .until(
            "/api/v1/query?query=trackledger_ready",
            "the three services ready",
            |d| {
                values_by_job(d)
                    == [
                        ("forwarder".to_owned(), "1".to_owned()),
                        ("processor".to_owned(), "1".to_owned()),
                        ("sink".to_owned(), "1".to_owned()),
                    ]
            },
        )
        .await;
    // Every rule loaded and evaluated against the real series without an error.
    let rules = prometheus
        .until("/api/v1/rules", "every rule evaluated", |d| {
            d["groups"].as_array().is_some_and(|groups| {
                groups.len() == 2
                    && groups.iter().all(|g| {
                        g["rules"].as_array().unwrap().iter().all(|r| {
                            r["lastEvaluation"]
                                .as_str()
                                .is_some_and(|t| !t.starts_with("0001"))
                        })
                    })
            })
        })
        .await;
    let mut evaluated = 0;
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            assert_eq!(rule["health"], "ok", "{rule:#}");
            evaluated += 1;
        }
    }
    assert_eq!(evaluated, 19);
    // The processor reports lag for partitions it has read from: give it an event.
    tests::post_event(
        &pipeline.ingest.base_url,
        serde_json::json!({"event_id": tests::unique_name("prom"), "event_name": "CLICK",
                           "click_id": tests::unique_name("prom-click")}),
    )
    .await;
    prometheus
        .until(
            "/api/v1/query?query=trackledger:processor_consumer_lag:sum",
            "the processor's lag recorded",
            |d| d["result"].as_array().is_some_and(|r| r.len() == 1),
        )
        .await;
    prometheus
        .until(
            "/api/v1/query?query=sink_clickhouse_up",
            "ClickHouse up, as the sink sees it",
            |d| values_by_job(d) == [("sink".to_owned(), "1".to_owned())],
        )
        .await;

    // Every query of the Grafana pipeline dashboard is valid PromQL over these series.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(rules_dir().join("../grafana/dashboards/pipeline.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let answer: Value = reqwest::Client::new()
                .get(format!("{}/api/v1/query", prometheus.url))
                .query(&[("query", expr)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                answer["status"], "success",
                "{}: Prometheus refuses {expr}: {answer}",
                panel["title"]
            );
            exprs += 1;
        }
    }
    assert_eq!(exprs, 18);

    // The sink stops: its scrapes fail, and the alert is pending (it fires after 2 minutes).
    let Pipeline {
        ingest,
        processor,
        forwarder,
        sink,
        ..
    } = pipeline;
    sink.terminate();
    prometheus
        .until(
            "/api/v1/alerts",
            "TrackledgerServiceDown pending for the sink",
            |d| {
                d["alerts"].as_array().is_some_and(|alerts| {
                    alerts.iter().any(|a| {
                        a["labels"]["alertname"] == "TrackledgerServiceDown"
                            && a["labels"]["job"] == "sink"
                            && a["state"] == "pending"
                    })
                })
            },
        )
        .await;
    // Prometheus's own page of the rules' alerts, as docs/OPERATIONS.md shows it.
    tests::screenshot(
        &format!("{}/classic/alerts", prometheus.url),
        "1000,800",
        "ALERTS_SCREENSHOT_OUT",
    );
    ingest.stop().await;
    forwarder.terminate();
    processor.terminate();
}
