//! N instances of every service (issue #15 §3): three processors and two forwarders share
//! their consumer groups, and three sinks the partitions (`--instance`, `--instances`), while
//! live traffic goes through ingest. Each instance is
//! restarted in turn (SIGTERM, then started again), then two processors are killed with
//! SIGKILL at once, then a sink and a forwarder. Afterwards ClickHouse holds exactly the
//! acknowledged sales, once each, and every sale's postback was delivered; the repeats, which
//! the forwarder's at-least-once delivery allows, are counted and printed.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::json;
use tests::processor::ProcessorTopics;
use tests::service::ServiceProcess;
use tests::sink::{database, wait_rows};
use tests::IngestServer;

const READY: Duration = Duration::from_secs(90);

/// The revenue of the `i`th sale: cents that differ from sale to sale.
fn revenue(i: usize) -> Decimal {
    Decimal::new(1_000 + (i as i64 * 37) % 9_000, 2)
}

enum Role {
    Processor,
    Sink,
    Forwarder,
}

struct Instance {
    role: Role,
    name: &'static str,
    process: Option<ServiceProcess>,
}

struct Fleet {
    topics: ProcessorTopics,
    database: String,
    instances: Vec<Instance>,
}

impl Fleet {
    fn spawn(&self, role: &Role, name: &str) -> ServiceProcess {
        match role {
            Role::Processor => ServiceProcess::processor(&self.topics, name, &[]),
            Role::Sink => {
                // s1, s2, s3: each its share of the partitions.
                let share = format!("--instance={}", name[1..].parse::<u32>().unwrap() - 1);
                ServiceProcess::sink_instance(
                    &self.topics,
                    &self.database,
                    name,
                    &[&share, "--instances=3"],
                )
            }
            Role::Forwarder => ServiceProcess::forwarder_instance(
                &self.topics,
                &self.topics.destinations,
                name,
                &[],
            ),
        }
    }

    /// One at a time: the first sink applies the migrations before the others start.
    fn start_all(&mut self) {
        for i in 0..self.instances.len() {
            let mut process = self.spawn(&self.instances[i].role, self.instances[i].name);
            process.wait_ready(READY);
            self.instances[i].process = Some(process);
        }
    }

    fn index(&self, name: &str) -> usize {
        self.instances.iter().position(|i| i.name == name).unwrap()
    }

    /// Stops `names` at once (SIGKILL, or SIGTERM), starts them again, and waits until each
    /// is ready.
    fn restart(&mut self, names: &[&str], kill: bool) {
        for name in names {
            let i = self.index(name);
            let process = self.instances[i].process.take().unwrap();
            if kill {
                process.kill();
            } else {
                process.terminate();
            }
        }
        for name in names {
            let i = self.index(name);
            let process = self.spawn(&self.instances[i].role, name);
            self.instances[i].process = Some(process);
        }
        for name in names {
            let i = self.index(name);
            self.instances[i]
                .process
                .as_mut()
                .unwrap()
                .wait_ready(READY);
        }
    }

    fn stop(mut self) {
        for i in &mut self.instances {
            if let Some(p) = i.process.take() {
                p.terminate();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_and_kills_of_several_instances_keep_the_ledger_exact() {
    let topics = ProcessorTopics::create("instances").await;
    let (receiver_url, deliveries) = tests::forwarder::counting_receiver().await;
    std::fs::write(
        &topics.destinations,
        format!(
            "[[destination]]\nname = \"network\"\nkind = \"s2s\"\n\
             url = \"{receiver_url}/pb?tx={{event_id}}\"\nevents = [\"SALE\"]\n\
             rate_per_second = 5000\nburst = 1000\n"
        ),
    )
    .unwrap();
    let mut fleet = Fleet {
        database: database("instances"),
        instances: [
            (Role::Processor, "p1"),
            (Role::Processor, "p2"),
            (Role::Processor, "p3"),
            (Role::Sink, "s1"),
            (Role::Sink, "s2"),
            (Role::Sink, "s3"),
            (Role::Forwarder, "f1"),
            (Role::Forwarder, "f2"),
        ]
        .into_iter()
        .map(|(role, name)| Instance {
            role,
            name,
            process: None,
        })
        .collect(),
        topics,
    };
    fleet.start_all();
    let ingest = IngestServer::start(&[
        &format!("--events-topic={}", fleet.topics.input),
        &format!("--quarantine-topic={}", fleet.topics.quarantine),
    ])
    .await;

    // Live traffic: sales one after another, each retried until ingest acknowledges it, as
    // a producer must.
    let stop = Arc::new(AtomicBool::new(false));
    let run = tests::unique_name("n");
    let load = tokio::spawn({
        let (stop, base, run) = (stop.clone(), ingest.base_url.clone(), run.clone());
        async move {
            let client = reqwest::Client::new();
            let mut acked = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = acked.len();
                let body = json!({
                    "event_id": format!("{run}-{i}"), "event_name": "SALE",
                    "order_id": format!("{run}-order-{i}"), "offer_id": "keto-vsl",
                    "revenue": revenue(i).to_string(), "currency": "USD",
                });
                tests::post_acked(&client, &base, &body).await;
                acked.push(format!("{run}-{i}"));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            acked
        }
    });

    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fleet = tokio::task::spawn_blocking(move || {
        // A rolling restart: each instance in turn.
        for name in ["p1", "p2", "p3", "s1", "s2", "s3", "f1", "f2"] {
            fleet.restart(&[name], false);
            std::thread::sleep(Duration::from_secs(1));
        }
        // Two processors killed at once, then a sink and a forwarder.
        fleet.restart(&["p1", "p2"], true);
        std::thread::sleep(Duration::from_secs(2));
        fleet.restart(&["s1", "f1"], true);
        std::thread::sleep(Duration::from_secs(2));
        fleet
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.unwrap();
    let under_load = started.elapsed();
    assert!(acked.len() > 100, "only {} sales went through", acked.len());

    // Exactly the acknowledged sales, once each, to the cent.
    let ch = tests::sink::clickhouse(&fleet.database);
    let n = acked.len() as u64;
    wait_rows(&ch, "ledger", n, Duration::from_secs(120)).await;
    let (rows, distinct, total): (u64, u64, String) = ch
        .query(
            "SELECT count(), uniqExact(event_id), toString(sum(signed_revenue)) FROM ledger \
             WHERE startsWith(event_id, ?)",
        )
        .bind(format!("{run}-"))
        .fetch_one()
        .await
        .unwrap();
    let expected: Decimal = (0..acked.len()).map(revenue).sum();
    assert_eq!((rows, distinct), (n, n));
    assert_eq!(Decimal::from_str(&total).unwrap(), expected);
    let all: u64 = ch
        .query("SELECT count() FROM ledger")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        all, n,
        "the ledger holds nothing but the acknowledged sales"
    );

    // Every sale's postback arrived; repeats are the at-least-once window's.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing = {
            let seen = deliveries.lock().unwrap();
            acked.iter().filter(|id| !seen.contains_key(*id)).count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {n} sales' postbacks never arrived"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let seen = deliveries.lock().unwrap().clone();
    assert_eq!(
        seen.len() as u64,
        n,
        "a postback for a sale that was never acknowledged"
    );
    let delivered: u32 = seen.values().sum();
    let repeated = seen.values().filter(|c| **c > 1).count();
    println!(
        "[instances] {n} sales in {:.0} s under load; {delivered} postback deliveries: \
         {} repeats, over {repeated} sales",
        under_load.as_secs_f64(),
        u64::from(delivered) - n
    );
    ingest.stop().await;
    fleet.stop();
}
