//! The forwarder as the real binary, against the real broker and a real HTTP receiver run by
//! the test and scripted per path: successes, 429 and 5xx, timeouts, 400s.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;
use schemas::avro::ledger::{decode_attempt, encode_outbox};
use tests::forwarder::{dead_letters, outbox_record, replay};
use tests::processor::{read_committed, EventProducer, ProcessorTopics};
use tests::service::ServiceProcess;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    key: String,
    at: Instant,
    status: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    /// While set, `/reject` answers 400.
    rejecting: Arc<AtomicBool>,
}

impl Receiver {
    fn hits(&self, path: &str) -> Vec<Hit> {
        let hits = self.hits.lock().unwrap();
        hits.iter().filter(|h| h.path == path).cloned().collect()
    }
}

async fn answer(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> axum::response::Response {
    let key = headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let earlier = r
        .hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.path == path && h.key == key)
        .count();
    let (status, retry_after) = match path.as_str() {
        "ok" => (200, None),
        "flaky" => match earlier {
            0 => (429, Some("1")),
            1 => (503, None),
            _ => (200, None),
        },
        "slow-retry" => match earlier {
            0 => (503, Some("3")),
            _ => (200, None),
        },
        "down" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            (200, None)
        }
        "reject" if r.rejecting.load(Ordering::SeqCst) => (400, None),
        "redirect" => (302, None),
        _ => (200, None),
    };
    r.hits.lock().unwrap().push(Hit {
        path,
        key,
        at: Instant::now(),
        status,
    });
    let mut response = (StatusCode::from_u16(status).unwrap(), "answer").into_response();
    if status == 302 {
        response
            .headers_mut()
            .insert("Location", "/landed".parse().unwrap());
    }
    if let Some(s) = retry_after {
        response
            .headers_mut()
            .insert("Retry-After", s.parse().unwrap());
    }
    response
}

async fn start_receiver() -> (Receiver, u16) {
    let receiver = Receiver::default();
    receiver.rejecting.store(true, Ordering::SeqCst);
    let app = Router::new()
        .route("/{path}", any(answer))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, port)
}

fn enqueue(topics: &ProcessorTopics, destination: &str, n: usize) -> Vec<String> {
    let producer = EventProducer::new(&topics.outbox);
    let ids: Vec<String> = (0..n)
        .map(|i| format!("{}-{destination}-{i}", topics.group))
        .collect();
    for id in &ids {
        producer.send_raw(id, &encode_outbox(&outbox_record(destination, id)).unwrap());
    }
    producer.flush();
    ids
}

async fn eventually(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn destinations_file(topics: &ProcessorTopics, port: u16) -> std::path::PathBuf {
    let text = format!(
        r#"
[[destination]]
name = "ok"
kind = "webhook"
url = "http://127.0.0.1:{port}/ok"
events = ["SALE"]
rate_per_second = 20
burst = 5

[[destination]]
name = "flaky"
kind = "s2s"
url = "http://127.0.0.1:{port}/flaky?tx={{event_id}}&amount={{revenue}}"
events = ["SALE"]
rate_per_second = 100
burst = 100
backoff_initial_ms = 200
backoff_max_ms = 1000

[[destination]]
name = "down"
kind = "webhook"
url = "http://127.0.0.1:{port}/down"
events = ["SALE"]
timeout_ms = 1000
max_attempts = 3
backoff_initial_ms = 500
backoff_max_ms = 1000

[[destination]]
name = "reject"
kind = "webhook"
url = "http://127.0.0.1:{port}/reject"
events = ["SALE"]

[[destination]]
name = "slow-retry"
kind = "webhook"
url = "http://127.0.0.1:{port}/slow-retry"
events = ["SALE"]
"#
    );
    let path = std::env::temp_dir().join(format!("{}.forwarder.toml", topics.group));
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn postbacks_are_rate_limited_retried_isolated_dead_lettered_and_replayed() {
    let (receiver, port) = start_receiver().await;
    let topics = ProcessorTopics::create("fwd").await;
    let file = destinations_file(&topics, port);
    let ok = enqueue(&topics, "ok", 60);
    let flaky = enqueue(&topics, "flaky", 10);
    let down = enqueue(&topics, "down", 10);
    let reject = enqueue(&topics, "reject", 5);
    // A destination that redirects, and one that hangs up without answering; both URLs carry
    // a secret in their query string, which no stored error may show.
    let hangup = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hangup_port = hangup.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = hangup.accept().await {
            drop(socket);
        }
    });
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .and_then(|mut f| {
            use std::io::Write;
            write!(
                f,
                r#"
[[destination]]
name = "redirect"
kind = "s2s"
url = "http://127.0.0.1:{port}/redirect?tx={{event_id}}&token=s3cret-in-template"
events = ["SALE"]

[[destination]]
name = "hangup"
kind = "s2s"
url = "http://127.0.0.1:{hangup_port}/pb?tx={{event_id}}&token=s3cret-in-template"
events = ["SALE"]
max_attempts = 1
"#
            )
        })
        .unwrap();
    let redirect = enqueue(&topics, "redirect", 3);
    let hung_up = enqueue(&topics, "hangup", 2);

    let forwarder = ServiceProcess::forwarder(&topics, &file);
    eventually(
        "every postback to ok arrives",
        Duration::from_secs(60),
        || receiver.hits("ok").len() >= ok.len(),
    )
    .await;
    eventually(
        "every flaky postback is delivered",
        Duration::from_secs(60),
        || {
            receiver
                .hits("flaky")
                .iter()
                .filter(|h| h.status == 200)
                .count()
                >= flaky.len()
        },
    )
    .await;
    let t = topics.clone();
    let expected = down.len() + reject.len() + redirect.len() + hung_up.len();
    eventually(
        "down and reject are dead-lettered",
        Duration::from_secs(60),
        move || dead_letters(&t).len() >= expected,
    )
    .await;

    // The rate limit holds: never more than rate + burst in any second.
    let hits = receiver.hits("ok");
    assert_eq!(hits.len(), ok.len(), "each postback once");
    let mut keys: Vec<&str> = hits.iter().map(|h| h.key.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), ok.len());
    for h in &hits {
        let in_window = hits
            .iter()
            .filter(|o| o.at >= h.at && o.at < h.at + Duration::from_secs(1))
            .count();
        assert!(in_window <= 20 + 5, "{in_window} requests in one second");
    }
    let span = hits.last().unwrap().at - hits.first().unwrap().at;
    assert!(
        span >= Duration::from_millis(2_400),
        "60 at 20/s after a burst of 5: {span:?}"
    );
    // ... and the down destination, timing out meanwhile, did not slow it down.
    assert!(
        span < Duration::from_secs(6),
        "ok took {span:?} beside a down destination"
    );

    // Transient failures are retried, Retry-After honoured, and delivered once.
    for id in &flaky {
        let mine: Vec<Hit> = receiver
            .hits("flaky")
            .into_iter()
            .filter(|h| &h.key == id)
            .collect();
        let statuses: Vec<u16> = mine.iter().map(|h| h.status).collect();
        assert_eq!(statuses, [429, 503, 200], "{id}");
        assert!(
            mine[1].at - mine[0].at >= Duration::from_millis(950),
            "Retry-After: 1"
        );
    }

    // Permanent failures and exhausted retries are dead letters with their reason.
    let letters = dead_letters(&topics);
    let reasons = |d: &str| -> Vec<String> {
        letters
            .iter()
            .filter(|(dest, _)| dest == d)
            .map(|(_, r)| r.clone())
            .collect()
    };
    assert_eq!(reasons("down").len(), down.len());
    assert!(reasons("down")
        .iter()
        .all(|r| r.contains("gave up after 3 attempts")));
    assert_eq!(reasons("reject").len(), reject.len());
    assert!(reasons("reject").iter().all(|r| r.contains("HTTP 400")));
    assert_eq!(
        receiver.hits("reject").len(),
        reject.len(),
        "a 400 is not retried"
    );

    // Every attempt is recorded.
    let attempts: Vec<_> = read_committed(&topics.attempts)
        .into_iter()
        .map(|(_, _, v)| decode_attempt(&v).unwrap())
        .collect();
    let count = |d: &str| attempts.iter().filter(|a| a.destination == d).count();
    assert_eq!(count("ok"), ok.len());
    assert_eq!(count("flaky"), 3 * flaky.len());
    assert_eq!(count("down"), 3 * down.len());
    assert_eq!(count("reject"), reject.len());

    // A redirect is a failed attempt, never followed; errors keep no URL and no secret.
    assert_eq!(count("redirect"), redirect.len());
    assert!(
        receiver.hits("landed").is_empty(),
        "a redirect was followed"
    );
    assert_eq!(receiver.hits("redirect").len(), redirect.len());
    assert_eq!(reasons("redirect").len(), redirect.len());
    assert!(reasons("redirect")
        .iter()
        .all(|r| r.contains("HTTP 302: redirect not followed")));
    assert_eq!(count("hangup"), hung_up.len());
    for a in attempts
        .iter()
        .filter(|a| a.destination == "redirect" || a.destination == "hangup")
    {
        let error = a.error.as_deref().unwrap_or_default();
        assert!(!error.is_empty(), "{a:?}");
        assert!(
            !error.contains("s3cret") && !error.contains("?tx=") && !error.contains("127.0.0.1"),
            "a stored error shows the URL: {error}"
        );
    }
    for (_, reason) in &letters {
        assert!(
            !reason.contains("s3cret") && !reason.contains("?tx="),
            "{reason}"
        );
    }

    // Replay delivers the rejected ones once the destination takes them, same keys.
    receiver.rejecting.store(false, Ordering::SeqCst);
    let r = topics.clone();
    tokio::task::spawn_blocking(move || replay(&r, &["--destination", "reject"]))
        .await
        .unwrap();
    eventually("replayed postbacks arrive", Duration::from_secs(30), || {
        receiver
            .hits("reject")
            .iter()
            .filter(|h| h.status == 200)
            .count()
            >= reject.len()
    })
    .await;
    let mut delivered: Vec<String> = receiver
        .hits("reject")
        .into_iter()
        .filter(|h| h.status == 200)
        .map(|h| h.key)
        .collect();
    delivered.sort();
    let mut expected_keys = reject.clone();
    expected_keys.sort();
    assert_eq!(delivered, expected_keys);
    // Everything consumed: the outbox's lag shows, per partition, and adds up to 0.
    let outbox_lag = |metrics: &str| {
        tests::metric_values(
            metrics,
            "forwarder_consumer_lag",
            &format!("topic=\"{}\"", topics.outbox),
        )
    };
    eventually("the outbox lag reads 0", Duration::from_secs(20), || {
        let lag = outbox_lag(&forwarder.get("/metrics").unwrap_or_default());
        !lag.is_empty() && lag.iter().sum::<f64>() == 0.0
    })
    .await;
    forwarder.terminate();
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_forwarder_mid_retry_loses_nothing_and_sends_nothing_early() {
    let (receiver, port) = start_receiver().await;
    let topics = ProcessorTopics::create("fwd-kill").await;
    let file = destinations_file(&topics, port);
    let ids = enqueue(&topics, "slow-retry", 10);

    let first = ServiceProcess::forwarder(&topics, &file);
    eventually("every first attempt fails", Duration::from_secs(30), || {
        receiver.hits("slow-retry").len() >= ids.len()
    })
    .await;
    // Every postback now waits 3 s (Retry-After) for its second attempt.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill();
    let second = ServiceProcess::forwarder(&topics, &file);
    eventually(
        "every postback is delivered after the kill",
        Duration::from_secs(60),
        || {
            let hits = receiver.hits("slow-retry");
            ids.iter()
                .all(|id| hits.iter().any(|h| &h.key == id && h.status == 200))
        },
    )
    .await;
    second.terminate();

    let hits = receiver.hits("slow-retry");
    let mut by_key: HashMap<&str, Vec<&Hit>> = HashMap::new();
    for h in &hits {
        by_key.entry(h.key.as_str()).or_default().push(h);
    }
    for id in &ids {
        let mine = &by_key[id.as_str()];
        assert_eq!(mine[0].status, 503, "{id}");
        let success = mine.iter().find(|h| h.status == 200).unwrap();
        assert!(
            success.at - mine[0].at >= Duration::from_millis(2_950),
            "{id} was retried early: {:?} after its failure",
            success.at - mine[0].at
        );
    }
}

/// A second forwarder joins while the first delivers: partitions move between them. Every
/// postback is delivered, the repeats are counted, and the group's committed offsets end at
/// the end of the outbox: the first instance, which stops last, never commits a partition it
/// gave away (which would rewind or skip its new owner's position).
#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_moves_partitions_without_rewinding_their_offsets() {
    let (receiver, port) = start_receiver().await;
    let topics = ProcessorTopics::create("fwd-rebalance").await;
    let file = destinations_file(&topics, port);
    let ids = enqueue(&topics, "ok", 200);

    let first = ServiceProcess::forwarder(&topics, &file);
    eventually("the first deliveries", Duration::from_secs(30), || {
        receiver.hits("ok").len() >= 40
    })
    .await;
    let second = ServiceProcess::forwarder(&topics, &file);
    eventually("every postback delivered", Duration::from_secs(90), || {
        let hits = receiver.hits("ok");
        ids.iter()
            .all(|id| hits.iter().any(|h| &h.key == id && h.status == 200))
    })
    .await;
    // The one that joined stops first; the first instance, stopping last, commits at exit.
    second.terminate();
    first.terminate();

    let hits = receiver.hits("ok");
    let repeats = hits.len() - ids.len();
    println!(
        "{} postbacks, {repeats} sent again across the rebalance",
        ids.len()
    );
    assert!(repeats <= ids.len() / 2, "{repeats} repeats");

    use rdkafka::consumer::Consumer;
    let group: rdkafka::consumer::BaseConsumer = tests::kafka()
        .config(&[])
        .set("group.id", format!("{}.forwarder", topics.group))
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..tests::processor::PARTITIONS {
        tpl.add_partition(&topics.outbox, p);
    }
    let committed = group
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    for e in committed.elements() {
        let (_, high) = group
            .fetch_watermarks(&topics.outbox, e.partition(), Duration::from_secs(10))
            .unwrap();
        let at = match e.offset() {
            rdkafka::Offset::Offset(o) => o,
            _ if high == 0 => 0,
            other => panic!("partition {} committed at {other:?}", e.partition()),
        };
        assert_eq!(
            at,
            high,
            "partition {} committed at {at}, ends at {high}",
            e.partition()
        );
    }
}
