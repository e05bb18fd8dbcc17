//! Kafka goes down under ingest: events get 503 with Retry-After, never 2xx; clicks still
//! redirect and are spooled to disk; when Kafka is back, ingest recovers and the spooled
//! clicks arrive. Its own test binary, because it stops the shared broker.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use schemas::{topics, EventCodec, SingleObjectCodec};
use serde_json::json;
use tests::{scan_topic, secrets, stack, unique_name, IngestServer};

async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn on_events_topic(server: &IngestServer, id: &str) -> bool {
    let codec = SingleObjectCodec::new();
    !scan_topic(
        topics::EVENTS,
        Some(&server.marks[topics::EVENTS]),
        1,
        Duration::from_secs(10),
        |f| codec.decode(&f.payload).is_ok_and(|e| e.event_id == id),
    )
    .is_empty()
}

/// Every spool file's text: the active file and those the drainer has moved aside (it
/// rotates the active file at each round, also while Kafka is down).
fn spool_text(server: &IngestServer) -> String {
    let mut files: Vec<_> = std::fs::read_dir(&server.spool_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn kafka_outage_gives_503_then_recovers_without_loss() {
    let server = IngestServer::start(&[
        "--ack-timeout-ms=2000",
        "--click-wait-ms=100",
        "--spool-max-bytes=2000",
    ])
    .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |id: String| {
        client
            .post(format!("{}/v1/events", server.base_url))
            .bearer_auth(secrets::API_KEY)
            .json(&json!({"event_id": id, "event_name": "LEAD", "lead_id": "outage-lead"}))
            .send()
    };
    let before = unique_name("before");
    assert_eq!(post(before.clone()).await.unwrap().status(), StatusCode::OK);

    stack("down", "kafka");
    let during = unique_name("during");
    let resp = post(during.clone()).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no 2xx for data Kafka did not take"
    );
    assert_eq!(resp.headers()["retry-after"], "5");

    let click = client
        .get(format!("{}/c/keto-vsl?sub1=outage", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        click.status(),
        StatusCode::FOUND,
        "the visitor still gets the offer"
    );
    let click_id = click.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .trim_start_matches("tl_click=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(
        spool_text(&server).lines().count(),
        1,
        "the click is on disk before the redirect"
    );

    // The spool is capped: once the next click would not fit, the visitor gets 503 rather
    // than a redirect whose click could be lost, and the spool stays under its cap.
    let mut spooled_ids = vec![click_id.clone()];
    let mut refused = None;
    for _ in 0..20 {
        let r = client
            .get(format!("{}/c/keto-vsl?sub1=outage", server.base_url))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::FOUND {
            let cookie = r.headers()["set-cookie"].to_str().unwrap();
            spooled_ids.push(
                cookie["tl_click=".len()..]
                    .split(';')
                    .next()
                    .unwrap()
                    .to_owned(),
            );
        } else {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("a 2000-byte spool fills within 20 clicks");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()["retry-after"], "5");
    let spooled = spool_text(&server);
    let size = spooled.len() as u64;
    assert!(size <= 2000, "the spool holds {size} bytes, over its cap");
    let line = spooled.lines().map(|l| l.len() as u64 + 1).max().unwrap();
    assert!(size + line > 2000, "refused while another click fitted");
    assert_eq!(spooled.lines().count(), spooled_ids.len());
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(&format!("ingest_spool_bytes {size}")),
        "{metrics}"
    );

    // A crash mid-write leaves a torn line (here not even UTF-8): the drain skips it, and
    // the clicks before it still arrive and the file still goes.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(server.spool_dir.join("clicks.spool"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"topic\":\"t\",\xff\xfe"))
        .unwrap();

    let ready = format!("{}/readyz", server.base_url);
    eventually("readyz turning 503", Duration::from_secs(15), async || {
        client.get(&ready).send().await.unwrap().status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;

    stack("up", "kafka");
    eventually("readyz turning 200", Duration::from_secs(60), async || {
        client.get(&ready).send().await.unwrap().status() == StatusCode::OK
    })
    .await;
    // The sender retries what got 503; now it is accepted.
    eventually(
        "the retried event being accepted",
        Duration::from_secs(60),
        async || post(during.clone()).await.unwrap().status() == StatusCode::OK,
    )
    .await;
    assert!(on_events_topic(&server, &before));
    assert!(on_events_topic(&server, &during));
    for id in &spooled_ids {
        eventually(
            "every spooled click reaching Kafka",
            Duration::from_secs(60),
            async || on_events_topic(&server, id),
        )
        .await;
    }
    eventually("the spool emptying", Duration::from_secs(10), async || {
        std::fs::read_dir(&server.spool_dir).unwrap().count() == 0
    })
    .await;
    server.stop().await;
}
