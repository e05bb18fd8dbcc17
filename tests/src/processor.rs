//! Helpers for the processor tests: private topics, the real `processor` binary as a child
//! process, producing events, and reading the committed ledger back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use schemas::avro::ledger::{decode_entry, decode_outbox, decode_receipt};
use schemas::{
    conversion_key, EventCodec, EventName, LedgerEntry, OutboxRecord, Receipt, SingleObjectCodec,
    TrackingEvent,
};

use crate::service::ServiceProcess;
use crate::unique_name;

/// Input partitions of the private topics (the deployment's keyed topics have 6).
pub const PARTITIONS: i32 = 6;

/// A private set of the processor's topics and consumer group.
#[derive(Clone, Debug)]
pub struct ProcessorTopics {
    pub input: String,
    pub ledger: String,
    pub receipts: String,
    pub state: String,
    pub quarantine: String,
    pub outbox: String,
    /// The capping stage's input and state (used with a caps file: [`Self::caps_args`]).
    pub capping: String,
    pub caps_state: String,
    /// The click-ID stage's input and state (the stage runs with an ad-platform destination).
    pub click_ids: String,
    pub click_ids_state: String,
    /// Not the processor's: the forwarder writes it and the sink reads it.
    pub attempts: String,
    /// The forwarder's retry topic and DLQ.
    pub retry: String,
    pub dlq: String,
    pub group: String,
    /// The destinations file the processor routes postbacks with.
    pub destinations: PathBuf,
}

/// The destinations every processor test routes to: network sales and their reversals
/// (test events left out), and approved leads (test events included). No forwarder runs in
/// these tests, so the URLs are never called.
pub const DESTINATIONS: &str = r#"
[[destination]]
name = "network"
kind = "s2s"
url = "http://127.0.0.1:9/pb?tx={event_id}"
events = ["SALE", "REFUND", "CHARGEBACK"]

[[destination]]
name = "lead-approvals"
kind = "webhook"
url = "http://127.0.0.1:9/leads"
events = ["APPROVED_LEAD"]
include_test = true
"#;

impl ProcessorTopics {
    pub async fn create(prefix: &str) -> Self {
        let name = unique_name(prefix);
        let t = Self {
            input: format!("{name}.events"),
            ledger: format!("{name}.ledger"),
            receipts: format!("{name}.receipts"),
            state: format!("{name}.state"),
            quarantine: format!("{name}.quarantine"),
            outbox: format!("{name}.outbox"),
            capping: format!("{name}.capping"),
            caps_state: format!("{name}.caps"),
            click_ids: format!("{name}.clickids"),
            click_ids_state: format!("{name}.clickids-state"),
            attempts: format!("{name}.attempts"),
            retry: format!("{name}.retry"),
            dlq: format!("{name}.dlq"),
            group: format!("{name}.processor"),
            destinations: std::env::temp_dir().join(format!("{name}.destinations.toml")),
        };
        std::fs::write(&t.destinations, DESTINATIONS).expect("destinations file");
        let admin: AdminClient<DefaultClientContext> =
            crate::kafka().config(&[]).create().expect("admin client");
        let compacted = [("cleanup.policy", "compact")];
        let topics: Vec<NewTopic> = [
            &t.input,
            &t.ledger,
            &t.receipts,
            &t.state,
            &t.quarantine,
            &t.outbox,
            &t.capping,
            &t.caps_state,
            &t.click_ids,
            &t.click_ids_state,
            &t.attempts,
            &t.retry,
            &t.dlq,
        ]
        .into_iter()
        .map(|name| {
            let topic = NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1));
            if [&t.state, &t.caps_state, &t.click_ids_state].contains(&name) {
                compacted
                    .iter()
                    .fold(topic, |topic, (k, v)| topic.set(k, v))
            } else {
                topic
            }
        })
        .collect();
        for result in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .expect("create topics")
        {
            result.expect("topic created");
        }
        t
    }

    /// The processor's flags to run with a caps file, and so its capping stage, on these
    /// topics.
    pub fn caps_args(&self, caps_file: &std::path::Path) -> Vec<String> {
        vec![
            format!("--caps-file={}", caps_file.display()),
            format!("--capping-topic={}", self.capping),
            format!("--caps-state-topic={}", self.caps_state),
        ]
    }

    /// The processor's flags for these topics.
    pub fn args(&self) -> Vec<String> {
        [
            ("--input-topic", &self.input),
            ("--ledger-topic", &self.ledger),
            ("--receipts-topic", &self.receipts),
            ("--state-topic", &self.state),
            ("--quarantine-topic", &self.quarantine),
            ("--outbox-topic", &self.outbox),
            ("--click-ids-topic", &self.click_ids),
            ("--click-ids-state-topic", &self.click_ids_state),
            ("--group-id", &self.group),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v.clone()])
        .chain([
            "--destinations-file".to_owned(),
            self.destinations.display().to_string(),
        ])
        .collect()
    }
}

impl ServiceProcess {
    /// The real processor binary on `topics`, as instance `instance`.
    pub fn processor(topics: &ProcessorTopics, instance: &str, extra: &[&str]) -> Self {
        Self::processor_bin("processor", topics, instance, extra)
    }

    /// `processor`, but from `bin`: a workspace binary's name, or the path of another build
    /// (a benchmark's previous commit).
    pub fn processor_bin(
        bin: &str,
        topics: &ProcessorTopics,
        instance: &str,
        extra: &[&str],
    ) -> Self {
        let mut args = topics.args();
        args.extend(["--instance-id".into(), instance.into()]);
        args.extend(["--session-timeout-ms".into(), "6000".into()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::start(bin, &format!("{}-{instance}", topics.group), &args)
    }
}

/// An idempotent producer of encoded events, keyed by conversion like ingest.
pub struct EventProducer {
    producer: ThreadedProducer<DefaultProducerContext>,
    codec: SingleObjectCodec,
    topic: String,
}

impl EventProducer {
    pub fn new(topic: &str) -> Self {
        let producer = crate::kafka()
            .config(&[])
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        Self {
            producer,
            codec: SingleObjectCodec::new(),
            topic: topic.to_owned(),
        }
    }

    pub fn send(&self, e: &TrackingEvent) {
        self.send_raw(&conversion_key(e), &self.codec.encode(e).expect("encodes"));
    }

    pub fn send_raw(&self, key: &str, value: &[u8]) {
        let mut record = BaseRecord::<str, [u8]>::to(&self.topic)
            .key(key)
            .payload(value);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(_), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("produce: {e}"),
            }
        }
    }

    pub fn flush(&self) {
        self.producer
            .flush(Duration::from_secs(30))
            .expect("all events delivered");
    }
}

/// Waits until the group has committed every input offset, and its keyed stages every record
/// of theirs (or panics after `timeout`).
pub fn wait_caught_up(topics: &ProcessorTopics, timeout: Duration) {
    let consumer: BaseConsumer = crate::kafka()
        .config(&[])
        .set("group.id", &topics.group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + timeout;
    loop {
        let mut tpl = TopicPartitionList::new();
        let mut highs = HashMap::new();
        for p in 0..PARTITIONS {
            tpl.add_partition(&topics.input, p);
            let (_, high) = consumer
                .fetch_watermarks(&topics.input, p, Duration::from_secs(10))
                .expect("watermarks");
            highs.insert(p, high);
        }
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed offsets");
        let behind: i64 = committed
            .elements()
            .iter()
            .map(|e| {
                let at = match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                };
                highs[&e.partition()] - at
            })
            .sum();
        if behind == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processor still {behind} events behind after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The ledger stage's outputs are committed with its offsets, so the keyed stages' inputs
    // are complete now: wait for the stages to have committed past all of them.
    for (topic, suffix) in [(&topics.capping, "caps"), (&topics.click_ids, "clickids")] {
        let group = format!("{}-{suffix}", topics.group);
        while has_uncommitted(topic, &group) {
            assert!(
                Instant::now() < deadline,
                "the {suffix} stage is still behind after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whether `topic` holds a committed record past what `group` has committed: a keyed stage's
/// input is transactional, so its high watermark counts commit markers and cannot be
/// compared with the committed offsets; reading from them can.
fn has_uncommitted(topic: &str, group: &str) -> bool {
    let committed: BaseConsumer = crate::kafka()
        .config(&[])
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let committed = committed
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    let reader: BaseConsumer = crate::kafka()
        .config(&[])
        .set("group.id", unique_name("behind"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut from = TopicPartitionList::new();
    for e in committed.elements() {
        let offset = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            _ => Offset::Beginning,
        };
        from.add_partition_offset(topic, e.partition(), offset)
            .expect("partition");
    }
    reader.assign(&from).expect("assign");
    let mut at_end = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while at_end.len() < PARTITIONS as usize && Instant::now() < deadline {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => return true,
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            _ => {}
        }
    }
    at_end.len() < PARTITIONS as usize
}

/// Every committed record of `topic`, read `read_committed` to the end of each partition.
pub fn read_committed(topic: &str) -> Vec<(i32, i64, Vec<u8>)> {
    let consumer: BaseConsumer = crate::kafka()
        .config(&[])
        .set("group.id", unique_name("read"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let mut pending = std::collections::HashSet::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
        pending.insert(p);
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{topic} not read to its end in 60 s"
        );
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => out.push((
                m.partition(),
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
            )),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// The committed ledger, in offset order within each partition.
pub fn read_ledger(topics: &ProcessorTopics) -> Vec<LedgerEntry> {
    let mut records = read_committed(&topics.ledger);
    records.sort_by_key(|(p, o, _)| (*p, *o));
    records
        .into_iter()
        .map(|(_, _, v)| decode_entry(&v).expect("ledger entry decodes"))
        .collect()
}

/// The committed outbox records.
pub fn read_outbox(topics: &ProcessorTopics) -> Vec<OutboxRecord> {
    read_committed(&topics.outbox)
        .into_iter()
        .map(|(_, _, v)| decode_outbox(&v).expect("outbox record decodes"))
        .collect()
}

/// The committed receipts.
pub fn read_receipts(topics: &ProcessorTopics) -> Vec<Receipt> {
    read_committed(&topics.receipts)
        .into_iter()
        .map(|(_, _, v)| decode_receipt(&v).expect("receipt decodes"))
        .collect()
}

/// A mixed input stream and what the ledger must hold after it, computed here from the
/// stream's construction rather than by the processor's rules.
pub struct Scenario {
    /// Events in the order they are produced.
    pub events: Vec<TrackingEvent>,
    /// Every event_id that must appear exactly once in the ledger.
    pub unique_ids: std::collections::BTreeSet<String>,
    /// Repeated sends with the same content.
    pub duplicates: usize,
    /// Repeated sends with the same event_id and different content.
    pub conflicts: usize,
    /// Net revenue in micros per sale conversion key, after all its events.
    pub net_revenue: HashMap<String, i64>,
    /// Final status per lead conversion key.
    pub lead_status: HashMap<String, &'static str>,
    /// Reversals and statuses sent before their original: event_id -> original's event_id.
    pub early: HashMap<String, String>,
    /// Reversals sent after their sale: event_id -> the sale's event_id.
    pub linked: HashMap<String, String>,
    /// event_ids of test events.
    pub test_ids: std::collections::BTreeSet<String>,
    /// The event name of every unique event_id.
    pub names: HashMap<String, EventName>,
    /// The revenue magnitude in micros of every unique event_id that carries one.
    pub revenue: HashMap<String, i64>,
}

/// Deterministic choice in [0, 100) for item `i` under `salt`.
fn pct(i: usize, salt: u64) -> u64 {
    let mut x = (i as u64).wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x % 100
}

impl Scenario {
    /// `n` conversions (clicks, sales, leads) with 10% duplicates, 5% refunds, 2%
    /// chargebacks, out-of-order reversals, lead status chains, test events and conflicts.
    pub fn mixed(run: &str, n: usize) -> Self {
        use chrono::Utc;
        use rust_decimal::Decimal;
        use schemas::EventName;

        let now = Utc::now();
        let mut s = Scenario {
            events: Vec::new(),
            unique_ids: Default::default(),
            duplicates: 0,
            conflicts: 0,
            net_revenue: HashMap::new(),
            lead_status: HashMap::new(),
            early: HashMap::new(),
            linked: HashMap::new(),
            test_ids: Default::default(),
            names: HashMap::new(),
            revenue: HashMap::new(),
        };
        let base = |id: String, name: EventName| {
            let mut e = TrackingEvent::new(
                id,
                name,
                now - chrono::Duration::hours(1),
                now,
                schemas::FIRST_PARTY,
                "/v1/events",
            );
            e.offer_id = Some("offer-a".into());
            e.currency = Some("USD".into());
            e
        };
        let mut originals = Vec::new();
        for i in 0..n {
            let mut group = Vec::new();
            match i % 3 {
                0 => {
                    let mut click = base(format!("{run}-click-{i}"), EventName::Click);
                    click.click_id = Some(format!("{run}-c{i}"));
                    group.push(click);
                }
                1 => {
                    let order = format!("{run}-o{i}");
                    let revenue = 10_000_000 + (i as i64 % 50) * 1_000_000;
                    let mut sale = base(format!("{run}-sale-{i}"), EventName::Sale);
                    sale.order_id = Some(order.clone());
                    sale.revenue = Some(Decimal::new(revenue, 6));
                    sale.payout = Some(Decimal::new(revenue / 4, 6));
                    sale.is_test = pct(i, 7) < 3;
                    let key = conversion_key(&sale);
                    let mut net = revenue;
                    // 5% of conversions get a refund, 2% a chargeback (15% and 6% of sales).
                    let reversal = match pct(i, 1) {
                        0..15 => Some((EventName::Refund, revenue / 2)),
                        15..21 => Some((EventName::Chargeback, revenue)),
                        _ => None,
                    };
                    let mut before = Vec::new();
                    let mut after = Vec::new();
                    if let Some((name, amount)) = reversal {
                        let mut r = base(format!("{run}-{name}-{i}"), name);
                        r.order_id = Some(order.clone());
                        r.revenue = Some(Decimal::new(amount, 6));
                        r.is_test = sale.is_test;
                        net -= amount;
                        if pct(i, 2) < 30 {
                            s.early.insert(r.event_id.clone(), sale.event_id.clone());
                            before.push(r);
                        } else {
                            s.linked.insert(r.event_id.clone(), sale.event_id.clone());
                            after.push(r);
                        }
                    }
                    s.net_revenue.insert(key, net);
                    group.extend(before);
                    group.push(sale);
                    group.extend(after);
                }
                _ => {
                    let lead_id = format!("{run}-l{i}");
                    let mut lead = base(format!("{run}-lead-{i}"), EventName::Lead);
                    lead.lead_id = Some(lead_id.clone());
                    let key = conversion_key(&lead);
                    let mut chain = vec![(EventName::QualifiedLead, "q")];
                    let last = if pct(i, 3) < 30 {
                        (EventName::RejectedLead, "r")
                    } else {
                        (EventName::ApprovedLead, "a")
                    };
                    chain.push(last);
                    s.lead_status.insert(
                        key,
                        if last.0 == EventName::RejectedLead {
                            "REJECTED"
                        } else {
                            "APPROVED"
                        },
                    );
                    let statuses: Vec<TrackingEvent> = chain
                        .into_iter()
                        .map(|(name, tag)| {
                            let mut st = base(format!("{run}-lead-{i}-{tag}"), name);
                            st.lead_id = Some(lead_id.clone());
                            st
                        })
                        .collect();
                    if pct(i, 4) < 20 {
                        // The qualification arrives before the lead itself.
                        let mut statuses = statuses.into_iter();
                        let first = statuses.next().unwrap();
                        s.early
                            .insert(first.event_id.clone(), lead.event_id.clone());
                        group.push(first);
                        group.push(lead);
                        group.extend(statuses);
                    } else {
                        group.push(lead);
                        group.extend(statuses);
                    }
                }
            }
            for e in &group {
                s.unique_ids.insert(e.event_id.clone());
                s.names.insert(e.event_id.clone(), e.event_name);
                if let Some(r) = e.revenue {
                    s.revenue.insert(
                        e.event_id.clone(),
                        (r * Decimal::new(1_000_000, 0)).try_into().unwrap(),
                    );
                }
                if e.is_test {
                    s.test_ids.insert(e.event_id.clone());
                }
            }
            originals.extend(group);
        }
        // Duplicates (10%) and conflicts (1%) follow their original in the stream.
        let mut repeats = Vec::new();
        for (i, e) in originals.iter().enumerate() {
            let p = pct(i, 5);
            if p < 10 {
                let mut again = e.clone();
                again.received_at = now + chrono::Duration::seconds(5);
                again.delivery_attempt = Some(2);
                repeats.push((i, again));
                s.duplicates += 1;
            } else if p == 10 {
                let mut changed = e.clone();
                changed.source = Some("changed".into());
                repeats.push((i, changed));
                s.conflicts += 1;
            }
        }
        let mut repeats = repeats.into_iter().peekable();
        for (i, e) in originals.into_iter().enumerate() {
            s.events.push(e);
            while let Some((_, r)) = repeats.next_if(|(j, _)| *j + 5 <= i) {
                s.events.push(r);
            }
        }
        s.events.extend(repeats.map(|(_, r)| r));
        s
    }

    /// The same scenario with ad-platform IDs: each click carries a `gclid` (`G-` and its
    /// click ID), and each sale names the click made just before it in the construction. The
    /// ledger's expectations are unchanged: the conversion key is the order's.
    pub fn with_click_ids(mut self) -> Self {
        for e in &mut self.events {
            match e.event_name {
                EventName::Click => {
                    e.platform_ids = Some(schemas::PlatformIds {
                        gclid: e.click_id.as_ref().map(|c| format!("G-{c}")),
                        ..Default::default()
                    });
                }
                EventName::Sale => {
                    let (run, i) = e.event_id.rsplit_once("-sale-").expect("a mixed sale");
                    let i: usize = i.parse().expect("a mixed sale's number");
                    e.click_id = Some(format!("{run}-c{}", i - 1));
                }
                _ => {}
            }
        }
        self
    }

    /// The outbox records the scenario must produce with [`DESTINATIONS`]: (destination,
    /// event_id), sorted.
    pub fn expected_outbox(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .names
            .iter()
            .filter_map(|(id, name)| match name {
                EventName::Sale | EventName::Refund | EventName::Chargeback
                    if !self.test_ids.contains(id) =>
                {
                    Some(("network".to_owned(), id.clone()))
                }
                EventName::ApprovedLead => Some(("lead-approvals".to_owned(), id.clone())),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Checks the committed ledger, receipts and outbox against the scenario, exactly.
    pub fn check(&self, ledger: &[LedgerEntry], receipts: &[Receipt], outbox: &[OutboxRecord]) {
        use schemas::{LinkStatus, ReceiptKind};

        let mut seen: HashMap<&str, usize> = HashMap::new();
        for e in ledger {
            *seen.entry(e.event.event_id.as_str()).or_default() += 1;
        }
        let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            doubled.is_empty(),
            "{} entries counted more than once, e.g. {:?}",
            doubled.len(),
            &doubled[..doubled.len().min(10)]
        );
        let missing: Vec<_> = self
            .unique_ids
            .iter()
            .filter(|id| !seen.contains_key(id.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "{} entries missing, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert_eq!(ledger.len(), self.unique_ids.len(), "ledger size");

        let by_id: HashMap<&str, &LedgerEntry> = ledger
            .iter()
            .map(|e| (e.event.event_id.as_str(), e))
            .collect();
        for (id, original) in &self.early {
            let e = by_id[id.as_str()];
            assert_eq!(e.link_status, LinkStatus::AwaitingOriginal, "{id}");
            assert!(
                by_id[original.as_str()].adopted_event_ids.contains(id),
                "{original} adopts {id}"
            );
        }
        for (id, sale) in &self.linked {
            let e = by_id[id.as_str()];
            assert_eq!(e.link_status, LinkStatus::Linked, "{id}");
            assert_eq!(e.linked_event_id.as_deref(), Some(sale.as_str()), "{id}");
        }
        for id in &self.unique_ids {
            assert_eq!(
                by_id[id.as_str()].event.is_test,
                self.test_ids.contains(id),
                "{id}"
            );
        }
        // The last entry of a conversion carries its final net and status.
        let mut last: HashMap<&str, &LedgerEntry> = HashMap::new();
        for e in ledger {
            last.insert(e.conversion_key.as_str(), e);
        }
        for (key, net) in &self.net_revenue {
            assert_eq!(
                last[key.as_str()].net_revenue.micros(),
                *net,
                "net revenue of {key}"
            );
        }
        for (key, status) in &self.lead_status {
            assert_eq!(
                last[key.as_str()].conversion_status.as_str(),
                *status,
                "{key}"
            );
        }

        let count = |kind| receipts.iter().filter(|r| r.kind == kind).count();
        assert_eq!(
            count(ReceiptKind::Duplicate),
            self.duplicates,
            "duplicate receipts"
        );
        assert_eq!(
            count(ReceiptKind::Conflict),
            self.conflicts,
            "conflict receipts"
        );
        assert_eq!(count(ReceiptKind::Orphaned), 0, "orphans");

        let mut forwarded: Vec<(String, String)> = outbox
            .iter()
            .map(|o| (o.destination.clone(), o.idempotency_key.clone()))
            .collect();
        forwarded.sort();
        let expected = self.expected_outbox();
        assert!(!expected.is_empty());
        assert_eq!(forwarded.len(), expected.len(), "outbox size");
        assert_eq!(forwarded, expected, "outbox records");
        for o in outbox {
            assert_eq!(o.entry.event.event_id, o.idempotency_key);
        }
    }
}
