//! Sends the demo traffic to ingest over HTTP, as browsers and networks would.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use futures::stream::{self, StreamExt};

use super::traffic::{Method, Request};

/// Requests in flight at once within a phase.
const CONCURRENCY: usize = 16;

pub struct Sender {
    http: reqwest::Client,
    base_url: String,
}

/// What came back, by request kind: (kind, status) → count.
pub type Tally = BTreeMap<(String, u16), u64>;

impl Sender {
    pub fn new(base_url: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Sends the clicks; returns the click IDs ingest minted, by offer.
    pub async fn clicks(
        &self,
        clicks: &[(&'static str, String)],
        tally: &mut Tally,
    ) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
        let answers: Vec<anyhow::Result<(&str, String)>> = stream::iter(clicks)
            .map(|(offer, query)| async move {
                let url = format!("{}/c/{offer}?{query}", self.base_url);
                let resp = self.http.get(&url).send().await.context(url)?;
                if resp.status() != reqwest::StatusCode::FOUND {
                    bail!("click on {offer} answered {}", resp.status());
                }
                let click_id = resp
                    .cookies()
                    .find(|c| c.name() == "tl_click")
                    .map(|c| c.value().to_owned())
                    .context("the click redirect set no tl_click cookie")?;
                Ok((*offer, click_id))
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut by_offer: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for answer in answers {
            let (offer, id) = answer?;
            by_offer.entry(offer.to_owned()).or_default().push(id);
        }
        *tally.entry(("click".into(), 302)).or_default() += clicks.len() as u64;
        Ok(by_offer)
    }

    /// Sends one phase; fails on the first answer that differs from what it must be.
    pub async fn phase(&self, requests: &[Request], tally: &mut Tally) -> anyhow::Result<()> {
        let answers: Vec<(&str, anyhow::Result<u16>)> = stream::iter(requests)
            .map(|r| async move { (r.kind, self.send(r).await) })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for (kind, answer) in answers {
            *tally.entry((kind.to_owned(), answer?)).or_default() += 1;
        }
        Ok(())
    }

    async fn send(&self, r: &Request) -> anyhow::Result<u16> {
        let url = format!("{}{}", self.base_url, r.path);
        // Retried like a network would retry: ingest answers 503 when Kafka is slow.
        for attempt in 1.. {
            let mut builder = match r.method {
                Method::Get => self.http.get(&url),
                Method::Post => self.http.post(&url).body(r.body.clone()),
            };
            if let Some(ct) = r.content_type {
                builder = builder.header(reqwest::header::CONTENT_TYPE, ct);
            }
            if let Some(key) = &r.bearer {
                builder = builder.bearer_auth(key);
            }
            let resp = builder
                .send()
                .await
                .with_context(|| format!("{} {}", r.kind, r.path))?;
            let status = resp.status().as_u16();
            if status == 503 && attempt < 5 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            if status != r.expect_status {
                let body = resp.text().await.unwrap_or_default();
                bail!(
                    "{} request to {} answered {status}, expected {}: {body}",
                    r.kind,
                    r.path.split('?').next().unwrap_or_default(),
                    r.expect_status
                );
            }
            return Ok(status);
        }
        unreachable!("the loop returns")
    }
}
