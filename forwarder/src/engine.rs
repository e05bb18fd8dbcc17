//! The delivery loop.
//!
//! The forwarder consumes the outbox and the retry topic. Each record becomes a task that
//! waits for its time (`not_before`), then for a token of its destination's rate limiter,
//! sends, records the attempt, and then resolves the record: delivered; retried (written to
//! the retry topic with the next attempt number and time); or dead-lettered with the reason.
//! A record's offset is committed only once it and every record before it in its partition
//! are resolved, so a crash or a kill re-reads what was not: a pending retry is never
//! forgotten, and its `not_before` travels with it, so it is never sent early. A record
//! resolved just before a crash may be sent again; the idempotency key makes that harmless.
//!
//! Every destination has its own limiter and concurrency, and every record its own task:
//! a slow or failing destination delays nobody else.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use schemas::avro::ledger::{decode_outbox, encode_attempt};
use schemas::{AttemptOutcome, OutboxRecord, PostbackAttempt};
use telemetry::kafka::lag::{self, LagContext};
use tokio::sync::Semaphore;

use crate::config::{Common, RunArgs};
use crate::dlq::{self, headers};
use crate::kinds::{kind, Credentials, DestinationKind, PreparedRequest, Verdict};
use crate::metrics::Metrics;
use crate::oauth::{TokenError, TokenSource};
use crate::outcome::{classify, Class};
use crate::retry::{Next, RetryPolicy};
use schemas::destinations::{Destination, Destinations};

const SNIPPET: usize = 512;
/// Longest wait for the consumer to leave its group at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(20);

/// A destination ready to send to.
struct Target {
    destination: Destination,
    kind: &'static dyn DestinationKind,
    secret: Option<String>,
    /// Google Ads: the developer token, and the OAuth access tokens.
    developer_token: Option<String>,
    oauth: Option<TokenSource>,
    limiter: DefaultDirectRateLimiter,
    concurrency: Semaphore,
    /// This destination's `token_wait_seconds`, looked up once rather than per attempt.
    token_wait: prometheus::Histogram,
}

/// The value of the environment variable `var` names, warning when it is not set: that
/// destination's postbacks are then dead-lettered with the reason, and replayed once it is.
fn secret_from_env(destination: &str, var: Option<&String>) -> Option<String> {
    let var = var?;
    let value = std::env::var(var).ok();
    if value.is_none() {
        tracing::warn!(
            destination,
            var,
            "secret not set; its postbacks go to the DLQ"
        );
    }
    value
}

/// Unresolved offsets per (topic, partition) this instance owns, and the highest offset seen.
#[derive(Default)]
struct Tracker {
    open: HashMap<(String, i32), Owned>,
    /// Numbers each ownership of a partition: a job of an earlier one is stale.
    next_epoch: u64,
}

struct Owned {
    unresolved: BTreeSet<i64>,
    last: i64,
    epoch: u64,
}

impl Tracker {
    /// Records an offset read; returns the epoch of the partition's ownership.
    fn opened(&mut self, topic: &str, partition: i32, offset: i64) -> u64 {
        let next_epoch = &mut self.next_epoch;
        let owned = self
            .open
            .entry((topic.to_owned(), partition))
            .or_insert_with(|| {
                *next_epoch += 1;
                Owned {
                    unresolved: BTreeSet::new(),
                    last: -1,
                    epoch: *next_epoch,
                }
            });
        owned.unresolved.insert(offset);
        owned.last = owned.last.max(offset);
        owned.epoch
    }

    /// Whether the partition is still owned under `epoch`.
    fn owns(&self, topic: &str, partition: i32, epoch: u64) -> bool {
        self.open
            .get(&(topic.to_owned(), partition))
            .is_some_and(|o| o.epoch == epoch)
    }

    fn resolved(&mut self, topic: &str, partition: i32, offset: i64, epoch: u64) {
        if let Some(owned) = self.open.get_mut(&(topic.to_owned(), partition)) {
            if owned.epoch == epoch {
                owned.unresolved.remove(&offset);
            }
        }
    }

    /// Forgets partitions this instance no longer owns: their next owner commits them, and a
    /// commit from here would move its position (back, or past what it has not resolved).
    fn revoked(&mut self, partitions: &[(String, i32)]) {
        for p in partitions {
            self.open.remove(p);
        }
    }

    /// The offsets that may be committed: before the first unresolved record.
    fn committable(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), owned) in &self.open {
            let next = owned.unresolved.first().copied().unwrap_or(owned.last + 1);
            tpl.add_partition_offset(topic, *partition, Offset::Offset(next))
                .ok();
        }
        tpl
    }
}

/// One record in hand.
struct Job {
    topic: String,
    partition: i32,
    offset: i64,
    /// The ownership of the partition it was read under.
    epoch: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    attempt: u32,
    not_before: Option<DateTime<Utc>>,
}

struct Shared {
    common: Common,
    targets: HashMap<String, Arc<Target>>,
    producer: FutureProducer,
    http: reqwest::Client,
    tracker: Arc<Mutex<Tracker>>,
    metrics: Arc<Metrics>,
}

/// The consumer's context: the lag gauge, and at a revocation, the resolved offsets of the
/// partitions being revoked committed, then forgotten.
struct ForwarderContext {
    lag: LagContext,
    tracker: Arc<Mutex<Tracker>>,
}

impl ClientContext for ForwarderContext {
    fn stats(&self, statistics: Statistics) {
        self.lag.stats(statistics);
    }
}

impl ConsumerContext for ForwarderContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let revoked: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let mut tracker = self.tracker.lock().expect("tracker");
        let mut committable = TopicPartitionList::new();
        for e in tracker.committable().elements() {
            if revoked.contains(&(e.topic().to_owned(), e.partition())) {
                committable
                    .add_partition_offset(e.topic(), e.partition(), e.offset())
                    .ok();
            }
        }
        if committable.count() > 0 {
            // The next owner starts from here; what is still in flight here is sent again
            // by it, under the same idempotency key.
            if let Err(e) = consumer.commit(&committable, CommitMode::Sync) {
                tracing::warn!(error = %e, "committing revoked partitions failed");
            }
        }
        tracker.revoked(&revoked);
        tracing::info!(partitions = revoked.len(), "partitions revoked");
    }
}

/// Delivers until `shutdown` is set; what is unresolved then is re-read at the next start.
pub async fn run(
    common: Common,
    args: RunArgs,
    destinations: Destinations,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut targets = HashMap::new();
    for d in destinations {
        let secret = secret_from_env(&d.name, d.access_token_env.as_ref());
        let google = d.google_ads.as_ref();
        let developer_token =
            google.and_then(|g| secret_from_env(&d.name, g.developer_token_env.as_ref()));
        let oauth = match google.map(|g| {
            (
                g,
                secret_from_env(&d.name, g.oauth_client_secret_env.as_ref()),
                secret_from_env(&d.name, g.oauth_refresh_token_env.as_ref()),
            )
        }) {
            Some((g, Some(client_secret), Some(refresh_token))) => Some(
                TokenSource::new(
                    &g.oauth_token_url,
                    g.oauth_client_id.as_deref().unwrap_or_default(),
                    client_secret,
                    refresh_token,
                )
                .map_err(|e| anyhow::anyhow!("destination {}: oauth_token_url: {e}", d.name))?,
            ),
            _ => None,
        };
        let quota = Quota::per_second(d.rate_per_second).allow_burst(d.burst);
        targets.insert(
            d.name.clone(),
            Arc::new(Target {
                kind: kind(d.kind),
                secret,
                developer_token,
                oauth,
                limiter: RateLimiter::direct(quota),
                concurrency: Semaphore::new(args.concurrency),
                token_wait: metrics.token_wait.with_label_values(&[&d.name]),
                destination: d,
            }),
        );
    }
    let producer: FutureProducer = common
        .kafka
        .config(&[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
        ])
        .create()
        .context("creating the producer")?;
    let tracker = Arc::new(Mutex::new(Tracker::default()));
    let consumer: StreamConsumer<ForwarderContext> = common
        .kafka
        .config(&[
            ("group.id", args.group_id.as_str()),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
            lag::STATISTICS_INTERVAL,
        ])
        .create_with_context(ForwarderContext {
            lag: LagContext::new(metrics.consumer_lag.clone()),
            tracker: tracker.clone(),
        })
        .context("creating the consumer")?;
    consumer.subscribe(&[&common.outbox_topic, &common.retry_topic])?;
    let shared = Arc::new(Shared {
        common,
        targets,
        producer,
        // A redirect is a failed attempt, never followed: a postback must reach the host the
        // destination names, with its query string, and nowhere else.
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        tracker,
        metrics,
    });
    let in_flight = Arc::new(Semaphore::new(args.max_in_flight));
    ready.store(true, Ordering::SeqCst);

    let mut commit_tick = tokio::time::interval(Duration::from_millis(500));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = commit_tick.tick() => commit(&shared, &consumer),
            permit = in_flight.clone().acquire_owned() => {
                let permit = permit.expect("never closed");
                let m = tokio::select! {
                    _ = &mut shutdown => break,
                    m = consumer.recv() => m,
                };
                match m {
                    Ok(m) => {
                        let job = job(&shared, &m);
                        shared.metrics.in_flight.inc();
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            deliver(&shared, job).await;
                            shared.metrics.in_flight.dec();
                            drop(permit);
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "consumer error"),
                }
            }
        }
    }
    ready.store(false, Ordering::SeqCst);
    commit(&shared, &consumer);
    close(consumer);
    tracing::info!("stopped; unresolved postbacks are re-read at the next start");
    Ok(())
}

/// Leaves the group, within [`CLOSE_TIMEOUT`]. rust-rdkafka's drop of a consumer polls
/// until librdkafka says it is closed, with no bound; once (in CI, after a revocation's commit
/// was refused with UnknownMemberId) that never came, and the forwarder ignored SIGTERM. The
/// offsets are committed by then; a consumer that did not leave is dropped by the group after
/// its session timeout.
fn close(consumer: StreamConsumer<ForwarderContext>) {
    let (closed, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        let _ = closed.send(());
    });
    if wait.recv_timeout(CLOSE_TIMEOUT).is_err() {
        tracing::warn!(
            timeout_seconds = CLOSE_TIMEOUT.as_secs(),
            "the Kafka consumer did not close in time; stopping without it"
        );
    }
}

fn commit(shared: &Shared, consumer: &StreamConsumer<ForwarderContext>) {
    let tpl = shared.tracker.lock().expect("tracker").committable();
    if tpl.count() > 0 {
        if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(error = %e, "commit skipped");
        }
    }
}

fn job(shared: &Shared, m: &BorrowedMessage<'_>) -> Job {
    let epoch =
        shared
            .tracker
            .lock()
            .expect("tracker")
            .opened(m.topic(), m.partition(), m.offset());
    let from_retry = m.topic() == shared.common.retry_topic;
    Job {
        topic: m.topic().to_owned(),
        partition: m.partition(),
        offset: m.offset(),
        epoch,
        key: m.key().unwrap_or_default().to_vec(),
        value: m.payload().unwrap_or_default().to_vec(),
        attempt: if from_retry {
            dlq::header(m, dlq::ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(1)
        } else {
            1
        },
        not_before: dlq::header(m, dlq::NOT_BEFORE)
            .and_then(|t| t.parse().ok())
            .and_then(DateTime::from_timestamp_millis),
    }
}

/// Sends one record (once its time and token have come), records the attempt, resolves it.
async fn deliver(shared: &Shared, job: Job) {
    let resolution = attempt(shared, &job).await;
    if let Err(e) = resolution {
        // Kafka refused the attempt, retry or DLQ record: leave the record unresolved, so
        // that it is read again after a restart rather than lost.
        tracing::error!(error = %e, "postback not resolved; it will be re-read after a restart");
        return;
    }
    shared.tracker.lock().expect("tracker").resolved(
        &job.topic,
        job.partition,
        job.offset,
        job.epoch,
    );
}

/// Whether the job's partition went to another instance since it was read: that instance
/// reads the record again from the last commit, so this one lets it be, unsent.
fn abandoned(shared: &Shared, job: &Job) -> bool {
    let gone = !shared
        .tracker
        .lock()
        .expect("tracker")
        .owns(&job.topic, job.partition, job.epoch);
    if gone {
        shared.metrics.abandoned.inc();
    }
    gone
}

async fn attempt(shared: &Shared, job: &Job) -> anyhow::Result<()> {
    let record = match decode_outbox(&job.value) {
        Ok(r) => r,
        Err(e) => {
            return dead_letter(shared, job, "?", &format!("undecodable outbox record: {e}")).await
        }
    };
    let Some(target) = shared.targets.get(&record.destination) else {
        let reason = format!("destination {:?} is not configured", record.destination);
        return give_up_unsent(shared, job, &record, &reason).await;
    };
    if let Some(at) = job.not_before {
        if let Ok(wait) = at.signed_duration_since(Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
    if abandoned(shared, job) {
        return Ok(());
    }
    let policy = RetryPolicy::of(&target.destination);
    let occurred_at = record.entry.event.occurred_at;
    if policy.too_old(occurred_at, Utc::now()) {
        let reason = format!(
            "older than the destination accepts ({} h)",
            target.destination.max_age_hours
        );
        return give_up_unsent(shared, job, &record, &reason).await;
    }
    // Google Ads: an access token from the refresh token first. A refused refresh token
    // is the operator's to fix (dead-lettered); an unreachable endpoint is retried.
    let mut unavailable = None;
    let bearer = match &target.oauth {
        None => None,
        Some(source) => match source.token(&shared.http).await {
            Ok(token) => Some(token),
            Err(TokenError::Refused(reason)) => {
                let reason =
                    format!("the OAuth token endpoint refused the refresh token: {reason}");
                return give_up_unsent(shared, job, &record, &reason).await;
            }
            Err(TokenError::Unavailable(reason)) => {
                unavailable = Some(format!("OAuth: {reason}"));
                None
            }
        },
    };
    let credentials = Credentials {
        token: bearer.as_deref().or(target.secret.as_deref()),
        developer_token: target.developer_token.as_deref(),
    };
    let request = match &unavailable {
        Some(_) => None,
        None => match target
            .kind
            .build(&target.destination, &record, &credentials)
        {
            Ok(r) => Some(r),
            Err(e) => return give_up_unsent(shared, job, &record, &e.0).await,
        },
    };

    let slot = target.concurrency.acquire().await.expect("never closed");
    let waited = Instant::now();
    target.limiter.until_ready().await;
    target.token_wait.observe(waited.elapsed().as_secs_f64());
    if abandoned(shared, job) {
        return Ok(());
    }

    let started = Instant::now();
    let answer = match (request, unavailable) {
        (Some(request), _) => send(shared, &target.destination, request).await,
        (None, reason) => Err(reason.unwrap_or_default()),
    };
    if let (Ok((401, _, _)), Some(source), Some(token)) = (&answer, &target.oauth, &bearer) {
        source.invalidate(token).await;
    }
    let latency = started.elapsed();
    // The slot limits requests to the destination, not the Kafka writes that follow.
    drop(slot);
    let now = Utc::now();
    let (class, http_status, error, snippet) = match answer {
        Ok((status, retry_after, body)) => {
            let (class, error) = match target.kind.judge(status, &body) {
                Verdict::AsStatus => {
                    let class = classify(status, retry_after.as_deref(), now);
                    let error = (class != Class::Delivered).then(|| failure_reason(status));
                    (class, error)
                }
                Verdict::Delivered => (Class::Delivered, None),
                Verdict::Transient(reason) => {
                    (Class::Transient { retry_after: None }, Some(reason))
                }
                Verdict::Permanent(reason) => (Class::Permanent, Some(reason)),
            };
            let snippet: String = body.chars().take(SNIPPET).collect();
            (class, Some(i32::from(status)), error, snippet)
        }
        Err(e) => (
            Class::Transient { retry_after: None },
            None,
            Some(e),
            String::new(),
        ),
    };
    let next = match &class {
        Class::Delivered => None,
        Class::Transient { retry_after } => Some(policy.after_failure(
            job.attempt,
            occurred_at,
            now,
            *retry_after,
            rand::random::<f64>(),
        )),
        Class::Permanent => Some(Next::GiveUp(format!(
            "permanent failure: {}",
            error.clone().unwrap_or_default()
        ))),
    };
    let attempt = PostbackAttempt {
        dead_lettered: matches!(next, Some(Next::GiveUp(_))),
        http_status,
        error,
        latency_ms: i64::try_from(latency.as_millis()).unwrap_or(i64::MAX),
        response_snippet: snippet,
        next_attempt_at: match &next {
            Some(Next::RetryAt(t)) => Some(*t),
            _ => None,
        },
        ..attempt_of(&record, job, class.outcome(), now)
    };
    record_attempt(shared, &attempt).await?;
    match next {
        None => Ok(()),
        Some(Next::RetryAt(at)) => {
            let attempt = (job.attempt + 1).to_string();
            let not_before = at.timestamp_millis().to_string();
            produce(
                shared,
                &shared.common.retry_topic,
                &job.key,
                &job.value,
                headers(&[(dlq::ATTEMPT, &attempt), (dlq::NOT_BEFORE, &not_before)]),
            )
            .await
        }
        Some(Next::GiveUp(reason)) => dead_letter(shared, job, &record.destination, &reason).await,
    }
}

/// The attempt record of `job`, with nothing known yet about the answer.
fn attempt_of(
    record: &OutboxRecord,
    job: &Job,
    outcome: AttemptOutcome,
    at: chrono::DateTime<Utc>,
) -> PostbackAttempt {
    PostbackAttempt {
        destination: record.destination.clone(),
        idempotency_key: record.idempotency_key.clone(),
        event_name: record.entry.event.event_name.as_str().to_owned(),
        offer_id: record.entry.event.offer_id.clone(),
        is_test: record.entry.event.is_test,
        attempt: i32::try_from(job.attempt).unwrap_or(i32::MAX),
        outcome,
        dead_lettered: false,
        http_status: None,
        error: None,
        latency_ms: 0,
        response_snippet: String::new(),
        attempted_at: at,
        next_attempt_at: None,
    }
}

/// Counts the attempt and writes it to the attempts topic.
async fn record_attempt(shared: &Shared, attempt: &PostbackAttempt) -> anyhow::Result<()> {
    shared
        .metrics
        .attempts
        .with_label_values(&[&attempt.destination, attempt.outcome.as_str()])
        .inc();
    produce(
        shared,
        &shared.common.attempts_topic,
        attempt.idempotency_key.as_bytes(),
        &encode_attempt(attempt),
        headers(&[]),
    )
    .await
}

/// A postback given up before any request was made (too old, no token, unconfigured): it is
/// recorded as a failed attempt too, so that delivery rates in ClickHouse count it, then
/// dead-lettered.
async fn give_up_unsent(
    shared: &Shared,
    job: &Job,
    record: &OutboxRecord,
    reason: &str,
) -> anyhow::Result<()> {
    let attempt = PostbackAttempt {
        dead_lettered: true,
        error: Some(format!("not sent: {reason}")),
        ..attempt_of(record, job, AttemptOutcome::PermanentFailure, Utc::now())
    };
    record_attempt(shared, &attempt).await?;
    dead_letter(shared, job, &record.destination, reason).await
}

async fn dead_letter(
    shared: &Shared,
    job: &Job,
    destination: &str,
    reason: &str,
) -> anyhow::Result<()> {
    tracing::warn!(
        destination,
        reason,
        attempt = job.attempt,
        "postback dead-lettered"
    );
    shared
        .metrics
        .dead_lettered
        .with_label_values(&[destination])
        .inc();
    let at = Utc::now().timestamp_millis().to_string();
    let attempt = job.attempt.to_string();
    produce(
        shared,
        &shared.common.dlq_topic,
        &job.key,
        &job.value,
        headers(&[
            (dlq::DESTINATION, destination),
            (dlq::REASON, reason),
            (dlq::ATTEMPT, &attempt),
            (dlq::DEAD_LETTERED_AT, &at),
        ]),
    )
    .await
}

async fn produce(
    shared: &Shared,
    topic: &str,
    key: &[u8],
    value: &[u8],
    headers: rdkafka::message::OwnedHeaders,
) -> anyhow::Result<()> {
    shared
        .producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| anyhow::anyhow!("writing to {topic}: {e}"))
}

/// What a failed attempt's answer is recorded as.
fn failure_reason(status: u16) -> String {
    if (300..400).contains(&status) {
        format!("HTTP {status}: redirect not followed")
    } else {
        format!("HTTP {status}")
    }
}

/// How much of an answer's body a kind's verdict sees.
const BODY_READ: usize = 16 * 1024;

/// The status, `Retry-After` and the body; or why there is no answer.
async fn send(
    shared: &Shared,
    destination: &Destination,
    request: PreparedRequest,
) -> Result<(u16, Option<String>, String), String> {
    let method =
        reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|e| e.to_string())?;
    let mut builder = shared
        .http
        .request(method, &request.url)
        .timeout(destination.timeout());
    for (k, v) in &request.headers {
        builder = builder.header(k, v);
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    // The URL holds the destination's query string, which can hold a secret: never in an
    // error that is stored or logged.
    let response = builder.send().await.map_err(|e| {
        if e.is_timeout() {
            "timeout".to_owned()
        } else if e.is_connect() {
            "connection refused or unreachable".to_owned()
        } else {
            format!("request failed: {}", e.without_url())
        }
    })?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Read whole, its first BODY_READ bytes kept for the kind's verdict (the platforms answer
    // UTF-8 JSON); only its start is recorded.
    let body = response.bytes().await.unwrap_or_default();
    let body = String::from_utf8_lossy(&body[..body.len().min(BODY_READ)]).into_owned();
    Ok((status, retry_after, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_resolved_prefixes_are_committed() {
        let mut t = Tracker::default();
        let mut epoch = 0;
        for o in [10, 11, 12] {
            epoch = t.opened("outbox", 0, o);
        }
        t.resolved("outbox", 0, 11, epoch);
        let at = |t: &Tracker| t.committable().elements()[0].offset();
        assert_eq!(at(&t), Offset::Offset(10));
        t.resolved("outbox", 0, 10, epoch);
        assert_eq!(at(&t), Offset::Offset(12));
        t.resolved("outbox", 0, 12, epoch);
        assert_eq!(at(&t), Offset::Offset(13));
    }

    #[test]
    fn a_revoked_partition_is_never_committed_from_here_again() {
        let mut t = Tracker::default();
        let first = t.opened("outbox", 0, 5);
        t.opened("outbox", 1, 7);
        t.resolved("outbox", 0, 5, first);
        t.revoked(&[("outbox".to_owned(), 0)]);
        assert!(!t.owns("outbox", 0, first));
        let committable: Vec<(String, i32, Offset)> = t
            .committable()
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition(), e.offset()))
            .collect();
        assert_eq!(
            committable,
            vec![("outbox".to_owned(), 1, Offset::Offset(7))]
        );
        // A task of the revoked partition finishing later changes nothing, even once the
        // partition is back: that is another ownership.
        let again = t.opened("outbox", 0, 6);
        assert_ne!(again, first);
        t.resolved("outbox", 0, 6, first);
        assert!(!t.owns("outbox", 0, first) && t.owns("outbox", 0, again));
        assert_eq!(t.committable().count(), 2);
    }
}
